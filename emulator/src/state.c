/*
 * state.c - the emulated namespace: hybrid connections, authorization rules and their keys
 * (hc-protocol.md sections 6.3 and 8), kept in emulator.state_file across restarts when one is
 * given (Azure keeps them through any relay outage).
 *
 * Everything here runs on the loop thread. Keys are secrets: never logged (the state file holds
 * them, mode 0600).
 */
#include "emu_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "ahg/crypto.h"
#include "ahg/err.h"
#include "ahg/log.h"

#define ROOT_RULE         "RootManageSharedAccessKey"
#define MAX_HCS           10000u /* "10,000 relay endpoints per namespace" (relay-faq) */
#define USER_METADATA_MAX 1024u

/* ---- helpers ---- */

static void
now_frac(time_t *sec, uint32_t *frac)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    *sec = ts.tv_sec;
    *frac = (uint32_t)(ts.tv_nsec / 100);
}

static void
rule_free(struct emu_rule *r)
{
    if (!r)
        return;
    OPENSSL_cleanse(r->primary, sizeof(r->primary));
    OPENSSL_cleanse(r->secondary, sizeof(r->secondary));
    free(r);
}

static void
rules_free(struct emu_rule *r)
{
    while (r) {
        struct emu_rule *n = r->next;
        rule_free(r);
        r = n;
    }
}

static void
hc_free(struct emu_hc *hc)
{
    if (!hc)
        return;
    rules_free(hc->rules);
    free(hc->user_metadata);
    free(hc);
}

/* Hybrid connection names: 1..259 chars of letters, digits, '.', '-', '_' and '/', no empty
 * '/'-segment (no leading, trailing or double '/'). */
static bool
hc_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n >= EMU_HC_NAME_MAX || name[0] == '/' || name[n - 1] == '/')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == '_' || c == '/';
        if (!ok || (c == '/' && name[i + 1] == '/'))
            return false;
    }
    return true;
}

/* Rule names: 1..63 chars of letters, digits, '.', '-', '_'. */
static bool
rule_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n >= EMU_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* A key value given by an operator or a regenerateKeys body: printable ASCII, no spaces. */
static bool
key_value_valid(const char *v)
{
    size_t n = v ? strlen(v) : 0;
    if (n == 0 || n > EMU_KEY_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if (v[i] <= ' ' || v[i] > '~')
            return false;
    return true;
}

static struct emu_rule *
rule_new(const char *name, unsigned rights)
{
    struct emu_rule *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    (void)snprintf(r->name, sizeof(r->name), "%s", name);
    r->rights = rights;
    emu_key_generate(r->primary);
    emu_key_generate(r->secondary);
    return r;
}

/* ---- keys ---- */

void
emu_key_generate(char out[EMU_KEY_LEN + 1])
{
    unsigned char raw[32];
    if (ahg_rand_bytes(raw, sizeof(raw)) != AHG_OK) {
        /* The RNG never fails in practice; never hand out a predictable key silently. */
        AHG_LOG_ERROR("emulator: random generator failure while generating a key");
        abort();
    }
    (void)ahg_base64_encode(raw, sizeof(raw), out, EMU_KEY_LEN + 1);
    OPENSSL_cleanse(raw, sizeof(raw));
}

int
emu_rule_regenerate(struct emu_rule *r, bool primary, const char *value)
{
    if (!r)
        return AHG_EINVAL;
    char *dst = primary ? r->primary : r->secondary;
    if (!value) {
        emu_key_generate(dst);
        return AHG_OK;
    }
    if (!key_value_valid(value))
        return AHG_EINVAL;
    OPENSSL_cleanse(dst, EMU_KEY_LEN + 1);
    memcpy(dst, value, strlen(value) + 1);
    return AHG_OK;
}

/* ---- hybrid connections ---- */

struct emu_hc *
emu_hc_find(struct emu *e, const char *name)
{
    if (!e || !name)
        return NULL;
    for (struct emu_hc *hc = e->ns.hcs; hc; hc = hc->next)
        if (strcasecmp(hc->name, name) == 0)
            return hc;
    return NULL;
}

struct emu_hc *
emu_hc_match(struct emu *e, const char *path, const char **rest)
{
    struct emu_hc *best = NULL;
    size_t best_len = 0;
    if (rest)
        *rest = path ? path + strlen(path) : NULL;
    if (!e || !path)
        return NULL;
    for (struct emu_hc *hc = e->ns.hcs; hc; hc = hc->next) {
        size_t n = strlen(hc->name);
        if (n <= best_len || strncasecmp(path, hc->name, n) != 0)
            continue;
        if (path[n] != '\0' && path[n] != '/')
            continue; /* "a" is not a segment prefix of "ab" */
        best = hc;
        best_len = n;
    }
    if (best && rest)
        *rest = path + best_len;
    return best;
}

struct emu_hc *
emu_hc_put(struct emu *e, const char *name, bool requires_client_auth, const char *user_metadata,
           bool *created, int *err)
{
    int dummy;
    if (!err)
        err = &dummy;
    if (created)
        *created = false;
    if (!e || !hc_name_valid(name) ||
        (user_metadata && strlen(user_metadata) > USER_METADATA_MAX)) {
        *err = AHG_EINVAL;
        return NULL;
    }
    char *meta = NULL;
    if (user_metadata) {
        meta = strdup(user_metadata);
        if (!meta) {
            *err = AHG_ENOMEM;
            return NULL;
        }
    }
    struct emu_hc *hc = emu_hc_find(e, name);
    if (hc) {
        free(hc->user_metadata);
        hc->user_metadata = meta;
        hc->requires_client_auth = requires_client_auth;
        now_frac(&hc->updated, &hc->updated_frac);
        *err = AHG_OK;
        return hc;
    }
    if (e->ns.nhcs >= MAX_HCS) {
        free(meta);
        *err = AHG_ELIMIT;
        return NULL;
    }
    hc = calloc(1, sizeof(*hc));
    if (!hc) {
        free(meta);
        *err = AHG_ENOMEM;
        return NULL;
    }
    (void)snprintf(hc->name, sizeof(hc->name), "%s", name);
    hc->requires_client_auth = requires_client_auth;
    hc->user_metadata = meta;
    now_frac(&hc->created, &hc->created_frac);
    hc->updated = hc->created;
    hc->updated_frac = hc->created_frac;
    /* keep creation order: ARM lists them in that order */
    struct emu_hc **tail = &e->ns.hcs;
    while (*tail)
        tail = &(*tail)->next;
    *tail = hc;
    e->ns.nhcs++;
    if (created)
        *created = true;
    *err = AHG_OK;
    return hc;
}

int
emu_hc_delete(struct emu *e, const char *name)
{
    if (!e || !name)
        return AHG_EINVAL;
    for (struct emu_hc **pp = &e->ns.hcs; *pp; pp = &(*pp)->next) {
        struct emu_hc *hc = *pp;
        if (strcasecmp(hc->name, name) != 0)
            continue;
        emu_relay_hc_deleted(e, hc); /* listeners get 1001 while the HC still exists */
        *pp = hc->next;
        e->ns.nhcs--;
        hc_free(hc);
        return AHG_OK;
    }
    return AHG_ENOTFOUND;
}

/* ---- rules ---- */

struct emu_rule *
emu_rule_find(struct emu *e, struct emu_hc *hc, const char *name)
{
    if (!e || !name)
        return NULL;
    for (struct emu_rule *r = hc ? hc->rules : e->ns.rules; r; r = r->next)
        if (strcasecmp(r->name, name) == 0)
            return r;
    return NULL;
}

struct emu_rule *
emu_rule_put(struct emu *e, struct emu_hc *hc, const char *name, unsigned rights, int *err)
{
    int dummy;
    if (!err)
        err = &dummy;
    unsigned all = EMU_RIGHT_LISTEN | EMU_RIGHT_SEND | EMU_RIGHT_MANAGE;
    if (!e || !rule_name_valid(name) || rights == 0 || (rights & ~all)) {
        *err = AHG_EINVAL;
        return NULL;
    }
    struct emu_rule *r = emu_rule_find(e, hc, name);
    if (r) {
        r->rights = rights; /* keys stay */
        *err = AHG_OK;
        return r;
    }
    struct emu_rule **tail = hc ? &hc->rules : &e->ns.rules;
    unsigned n = 0;
    while (*tail) {
        tail = &(*tail)->next;
        n++;
    }
    if (n >= EMU_MAX_RULES) {
        *err = AHG_ELIMIT;
        return NULL;
    }
    r = rule_new(name, rights);
    if (!r) {
        *err = AHG_ENOMEM;
        return NULL;
    }
    *tail = r;
    *err = AHG_OK;
    return r;
}

int
emu_rule_delete(struct emu *e, struct emu_hc *hc, const char *name)
{
    if (!e || !name)
        return AHG_EINVAL;
    for (struct emu_rule **pp = hc ? &hc->rules : &e->ns.rules; *pp; pp = &(*pp)->next) {
        struct emu_rule *r = *pp;
        if (strcasecmp(r->name, name) == 0) {
            *pp = r->next;
            rule_free(r);
            return AHG_OK;
        }
    }
    return AHG_ENOTFOUND;
}

/* ---- the state file (emulator.state_file) ---- */

#define STATE_MAX ((uint64_t)64 * 1024 * 1024)

static const char *
state_path(const struct emu *e)
{
    const char *p = e->cfg ? ahg_config_str(e->cfg, "emulator.state_file") : NULL;
    return p && *p ? p : NULL;
}

static cJSON *
rules_json(const struct emu_rule *r)
{
    cJSON *a = cJSON_CreateArray();
    for (; a && r; r = r->next) {
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddStringToObject(o, "name", r->name) ||
            !cJSON_AddNumberToObject(o, "rights", r->rights) ||
            !cJSON_AddStringToObject(o, "primary", r->primary) ||
            !cJSON_AddStringToObject(o, "secondary", r->secondary)) {
            cJSON_Delete(o);
            cJSON_Delete(a);
            return NULL;
        }
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

static cJSON *
state_json(const struct emu *e)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *hcs = cJSON_AddArrayToObject(root, "hybrid_connections");
    cJSON *rules = rules_json(e->ns.rules);
    if (!root || !hcs || !rules || !cJSON_AddNumberToObject(root, "v", 1)) {
        cJSON_Delete(rules);
        cJSON_Delete(root);
        return NULL;
    }
    cJSON_AddItemToObject(root, "rules", rules);
    for (const struct emu_hc *hc = e->ns.hcs; hc; hc = hc->next) {
        cJSON *o = cJSON_CreateObject();
        cJSON *hr = rules_json(hc->rules);
        if (!o || !hr || !cJSON_AddStringToObject(o, "name", hc->name) ||
            !cJSON_AddBoolToObject(o, "requires_client_auth", hc->requires_client_auth) ||
            (hc->user_metadata &&
             !cJSON_AddStringToObject(o, "user_metadata", hc->user_metadata)) ||
            !cJSON_AddNumberToObject(o, "created", (double)hc->created) ||
            !cJSON_AddNumberToObject(o, "created_frac", hc->created_frac) ||
            !cJSON_AddNumberToObject(o, "updated", (double)hc->updated) ||
            !cJSON_AddNumberToObject(o, "updated_frac", hc->updated_frac)) {
            cJSON_Delete(hr);
            cJSON_Delete(o);
            cJSON_Delete(root);
            return NULL;
        }
        cJSON_AddItemToObject(o, "rules", hr);
        cJSON_AddItemToArray(hcs, o);
    }
    return root;
}

void
emu_state_save(struct emu *e)
{
    const char *path = e ? state_path(e) : NULL;
    if (!path)
        return;
    cJSON *root = state_json(e);
    char *text = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    char tmp[4096];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    bool ok = false;
    if (text && n > 0 && (size_t)n < sizeof(tmp)) {
        /* it holds keys: owner only */
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        size_t len = strlen(text), off = 0;
        while (fd >= 0 && off < len) {
            ssize_t w = write(fd, text + off, len - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            off += (size_t)w;
        }
        ok = fd >= 0 && off == len;
        if (fd >= 0 && close(fd) != 0)
            ok = false;
        ok = ok && rename(tmp, path) == 0;
    }
    int saved = errno;
    bool printed = text != NULL;
    if (text) {
        OPENSSL_cleanse(text, strlen(text));
        free(text);
    }
    if (!ok)
        AHG_LOG_ERROR("emulator: cannot write the state file %s: %s", path,
                      printed ? strerror(saved) : "out of memory");
}

/* Applies saved rules to the namespace (hc NULL) or to an HC. */
static int
load_rules(struct emu *e, struct emu_hc *hc, const cJSON *arr)
{
    const cJSON *o;
    cJSON_ArrayForEach(o, arr)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
        const cJSON *rights = cJSON_GetObjectItemCaseSensitive(o, "rights");
        const cJSON *pk = cJSON_GetObjectItemCaseSensitive(o, "primary");
        const cJSON *sk = cJSON_GetObjectItemCaseSensitive(o, "secondary");
        int err = AHG_EINVAL;
        struct emu_rule *r =
            cJSON_IsString(name) && cJSON_IsNumber(rights)
                ? emu_rule_put(e, hc, name->valuestring, (unsigned)rights->valuedouble, &err)
                : NULL;
        if (!r || !cJSON_IsString(pk) || !cJSON_IsString(sk) ||
            emu_rule_regenerate(r, true, pk->valuestring) != AHG_OK ||
            emu_rule_regenerate(r, false, sk->valuestring) != AHG_OK)
            return AHG_EINVAL;
    }
    return AHG_OK;
}

static double
num_or(const cJSON *o, const char *name, double def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static int
load_hcs(struct emu *e, const cJSON *arr)
{
    const cJSON *o;
    cJSON_ArrayForEach(o, arr)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(o, "user_metadata");
        int err = AHG_EINVAL;
        struct emu_hc *hc =
            cJSON_IsString(name)
                ? emu_hc_put(
                      e, name->valuestring,
                      !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(o, "requires_client_auth")),
                      cJSON_IsString(meta) ? meta->valuestring : NULL, NULL, &err)
                : NULL;
        if (!hc)
            return err;
        hc->created = (time_t)num_or(o, "created", (double)hc->created);
        hc->created_frac = (uint32_t)num_or(o, "created_frac", hc->created_frac);
        hc->updated = (time_t)num_or(o, "updated", (double)hc->updated);
        hc->updated_frac = (uint32_t)num_or(o, "updated_frac", hc->updated_frac);
        if (load_rules(e, hc, cJSON_GetObjectItemCaseSensitive(o, "rules")) != AHG_OK)
            return AHG_EINVAL;
    }
    return AHG_OK;
}

/* Loads the state file when it exists (its rules and keys replace the configured ones), then
 * writes it, so it exists from the start. */
static int
state_load(struct emu *e)
{
    const char *path = state_path(e);
    if (!path)
        return AHG_OK;
    FILE *f = fopen(path, "rb");
    if (!f && errno != ENOENT) {
        AHG_LOG_ERROR("emulator.state_file: cannot open %s: %s", path, strerror(errno));
        return AHG_ECONFIG;
    }
    int rc = AHG_OK;
    if (f) {
        struct stat st;
        char *text = NULL;
        if (fstat(fileno(f), &st) == 0 && st.st_size >= 0 && (uint64_t)st.st_size < STATE_MAX &&
            (text = malloc((size_t)st.st_size + 1)) != NULL) {
            size_t len = fread(text, 1, (size_t)st.st_size, f);
            text[len] = '\0';
        }
        (void)fclose(f);
        cJSON *root = text ? cJSON_Parse(text) : NULL;
        if (text) {
            OPENSSL_cleanse(text, strlen(text));
            free(text);
        }
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "v");
        if (!cJSON_IsNumber(v) || v->valuedouble != 1 ||
            load_rules(e, NULL, cJSON_GetObjectItemCaseSensitive(root, "rules")) != AHG_OK ||
            load_hcs(e, cJSON_GetObjectItemCaseSensitive(root, "hybrid_connections")) != AHG_OK) {
            AHG_LOG_ERROR("emulator.state_file: %s is not a state file of this emulator "
                          "(remove it to start empty)",
                          path);
            rc = AHG_ECONFIG;
        } else {
            AHG_LOG_INFO("emulator: state loaded from %s (%zu hybrid connections)", path,
                         e->ns.nhcs);
        }
        cJSON_Delete(root);
    }
    if (rc == AHG_OK)
        emu_state_save(e);
    return rc;
}

/* ---- init / free ---- */

static int
copy_opt(const struct ahg_config *cfg, const char *opt, char *dst, size_t dstsz,
         const char *fallback)
{
    const char *v = cfg ? ahg_config_str(cfg, opt) : NULL;
    if (!v || !*v)
        v = fallback;
    if (!v || strlen(v) >= dstsz) {
        AHG_LOG_ERROR("%s: value missing or longer than %zu characters", opt, dstsz - 1);
        return AHG_ECONFIG;
    }
    memcpy(dst, v, strlen(v) + 1);
    return AHG_OK;
}

/* Namespace names: 6..50 chars, letters, digits and '-', starting with a letter and ending
 * with a letter or digit (hc-protocol.md 8.1). */
static bool
ns_name_valid(const char *n)
{
    size_t len = strlen(n);
    if (len < 6 || len > 50)
        return false;
    if (!((n[0] >= 'a' && n[0] <= 'z') || (n[0] >= 'A' && n[0] <= 'Z')))
        return false;
    if (n[len - 1] == '-')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-'))
            return false;
    }
    return true;
}

int
emu_state_init(struct emu *e)
{
    if (!e)
        return AHG_EINVAL;
    const struct ahg_config *cfg = e->cfg;
    struct emu_ns *ns = &e->ns;
    if (copy_opt(cfg, "emulator.namespace", ns->name, sizeof(ns->name), "ahg-local") != AHG_OK)
        return AHG_ECONFIG;
    if (!ns_name_valid(ns->name)) {
        AHG_LOG_ERROR("emulator.namespace: '%s' is not a valid namespace name (6-50 letters, "
                      "digits and '-', starting with a letter, not ending with '-')",
                      ns->name);
        return AHG_ECONFIG;
    }
    char host[sizeof(ns->host)];
    (void)snprintf(host, sizeof(host), "%s.servicebus.windows.net", ns->name);
    for (char *p = host; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    if (copy_opt(cfg, "emulator.namespace_host", ns->host, sizeof(ns->host), host) != AHG_OK ||
        copy_opt(cfg, "emulator.subscription", ns->subscription, sizeof(ns->subscription),
                 "00000000-0000-0000-0000-000000000000") != AHG_OK ||
        copy_opt(cfg, "emulator.resource_group", ns->resource_group, sizeof(ns->resource_group),
                 "azhexgate") != AHG_OK ||
        copy_opt(cfg, "emulator.location", ns->location, sizeof(ns->location), "westeurope") !=
            AHG_OK)
        return AHG_ECONFIG;
    now_frac(&ns->created, &ns->created_frac);

    int err = AHG_OK;
    struct emu_rule *root = emu_rule_put(
        e, NULL, ROOT_RULE, EMU_RIGHT_LISTEN | EMU_RIGHT_SEND | EMU_RIGHT_MANAGE, &err);
    if (!root)
        return err;
    const char *rk = cfg ? ahg_config_str(cfg, "emulator.root_key") : NULL;
    if (rk && emu_rule_regenerate(root, true, rk) != AHG_OK) {
        AHG_LOG_ERROR("emulator.root_key: invalid value (1-%d printable characters, no spaces)",
                      EMU_KEY_LEN);
        emu_state_free(e);
        return AHG_ECONFIG;
    }

    const char *const *items = NULL;
    size_t n = cfg ? ahg_config_list(cfg, "emulator.hybrid_connections", &items) : 0;
    for (size_t i = 0; i < n; i++) {
        char name[EMU_HC_NAME_MAX + 8];
        bool auth = true;
        if (strlen(items[i]) >= sizeof(name)) {
            AHG_LOG_ERROR("emulator.hybrid_connections: name too long");
            emu_state_free(e);
            return AHG_ECONFIG;
        }
        memcpy(name, items[i], strlen(items[i]) + 1);
        char *colon = strrchr(name, ':');
        if (colon) {
            if (strcmp(colon + 1, "noauth") != 0) {
                AHG_LOG_ERROR("emulator.hybrid_connections: '%s': the only suffix is ':noauth'",
                              items[i]);
                emu_state_free(e);
                return AHG_ECONFIG;
            }
            *colon = '\0';
            auth = false;
        }
        if (!emu_hc_put(e, name, auth, NULL, NULL, &err)) {
            AHG_LOG_ERROR("emulator.hybrid_connections: '%s' is not a valid hybrid connection "
                          "name (%s)",
                          name, ahg_strerror(err));
            emu_state_free(e);
            return AHG_ECONFIG;
        }
    }
    if (state_load(e) != AHG_OK) {
        emu_state_free(e);
        return AHG_ECONFIG;
    }
    return AHG_OK;
}

void
emu_state_free(struct emu *e)
{
    if (!e)
        return;
    while (e->ns.hcs) {
        struct emu_hc *hc = e->ns.hcs;
        e->ns.hcs = hc->next;
        hc_free(hc);
    }
    e->ns.nhcs = 0;
    rules_free(e->ns.rules);
    e->ns.rules = NULL;
}
