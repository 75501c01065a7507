/*
 * controller.c - options, life cycle, API keys, relay keys and Listen tokens, metrics.
 *
 * API keys come from up to three sources merged together: inline (controller.auth.keys, a
 * secret: flag, env or *_FILE), a file re-read on every refresh (controller.auth.keys_path),
 * and a Key Vault secret read with the managed identity (controller.auth.keyvault_*). Only
 * SHA-256 hashes are kept; a lookup hashes the presented key and compares it with every entry
 * in constant time. A failed refresh keeps the previous set.
 *
 * Relay keys: ARM listKeys on the namespace rule, kept in memory, re-read every
 * relay.keys_refresh and at once (rate-limited) when a client reports a rejected token. A
 * rejection with unchanged keys switches the signing key between primary and secondary.
 */
#include "ctl_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "ahg/azid.h"
#include "ahg/buf.h"
#include "ahg/crypto.h"
#include "ahg/egress.h"
#include "ahg/err.h"
#include "ahg/keyvault.h"
#include "ahg/log.h"
#include "ahg/metrics.h"
#include "ahg/sas.h"
#include "ahg/store.h"
#include "guard.h"

#define CTL_KEYS_MAX       4096u
#define CTL_KEYFILE_MAX    ((size_t)1024 * 1024)
#define CTL_FORCED_REFRESH 5000u
#define CTL_RK_RETRY_MS    2000u
#define CTL_OWNER          "azhexgate"

/* ---- options ---- */

const struct ahg_opt_def ahg_ctl_opts_table[] = {
    {.name = "controller.replica",
     .type = AHG_OPT_STRING,
     .help = "replica name in the reconciler lease (default: host:pid:random)"},
    {.name = "controller.instance",
     .type = AHG_OPT_STRING,
     .def = "default",
     .help = "deployment name in the ownership marker of Hybrid Connections"},
    {.name = "controller.public.scheme",
     .type = AHG_OPT_ENUM,
     .def = "https",
     .choices = "http|https",
     .help = "scheme of public tunnel URLs"},
    {.name = "controller.public.domain",
     .type = AHG_OPT_STRING,
     .def = "localhost",
     .metavar = "DOMAIN",
     .help = "public tunnel URLs are <scheme>://<id>.<domain>[:<port>]"},
    {.name = "controller.public.port",
     .type = AHG_OPT_INT,
     .def = "0",
     .min = 0,
     .max = 65535,
     .help = "port in public tunnel URLs (0 = none)"},
    {.name = "controller.relay.endpoint",
     .type = AHG_OPT_STRING,
     .metavar = "URL",
     .help = "relay WebSocket base URL handed to clients (default wss://<relay host>/)"},
    {.name = "controller.relay.host",
     .type = AHG_OPT_STRING,
     .metavar = "FQDN",
     .help = "Relay namespace host (default <namespace>.servicebus.windows.net)"},
    {.name = "controller.relay.rule",
     .type = AHG_OPT_STRING,
     .def = "RootManageSharedAccessKey",
     .help = "namespace authorization rule whose keys sign Listen tokens (needs Listen)"},
    {.name = "controller.relay.keys_refresh",
     .type = AHG_OPT_DURATION,
     .def = "5m",
     .min = 1000,
     .max = 86400000LL,
     .help = "how often the relay keys are re-read through ARM listKeys"},
    {.name = "controller.token_ttl",
     .type = AHG_OPT_DURATION,
     .def = "1h",
     .min = 60000,
     .max = 86400000LL,
     .help = "lifetime of issued Listen tokens"},
    {.name = "controller.arm.endpoint",
     .type = AHG_OPT_STRING,
     .def = "https://management.azure.com",
     .metavar = "URL",
     .help = "Azure Resource Manager endpoint"},
    {.name = "controller.arm.subscription",
     .type = AHG_OPT_STRING,
     .help = "subscription id of the Relay namespace"},
    {.name = "controller.arm.resource_group",
     .type = AHG_OPT_STRING,
     .help = "resource group of the Relay namespace"},
    {.name = "controller.arm.namespace", .type = AHG_OPT_STRING, .help = "Relay namespace name"},
    {.name = "controller.arm.api_version",
     .type = AHG_OPT_STRING,
     .def = "2021-11-01",
     .help = "Microsoft.Relay api-version"},
    {.name = "controller.arm.retries",
     .type = AHG_OPT_INT,
     .def = "4",
     .min = 0,
     .max = 20,
     .help = "retries of an ARM call answered 409/429/5xx"},
    {.name = "controller.arm.wait",
     .type = AHG_OPT_DURATION,
     .def = "30s",
     .min = 100,
     .max = 600000,
     .help = "how long a request waits for ARM before answering 503"},
    {.name = "controller.identity.kind",
     .type = AHG_OPT_ENUM,
     .def = "auto",
     .choices = "auto|appservice|imds|workload",
     .help = "managed identity source"},
    {.name = "controller.identity.endpoint",
     .type = AHG_OPT_STRING,
     .metavar = "URL",
     .help = "identity endpoint (overrides IDENTITY_ENDPOINT / IMDS / authority host)"},
    {.name = "controller.identity.header",
     .type = AHG_OPT_STRING,
     .flags = AHG_OPT_SECRET,
     .help = "App Service X-IDENTITY-HEADER (overrides IDENTITY_HEADER)"},
    {.name = "controller.identity.client_id",
     .type = AHG_OPT_STRING,
     .help = "client id of a user-assigned identity"},
    {.name = "controller.ca_file",
     .type = AHG_OPT_STRING,
     .metavar = "PEM",
     .help = "CA bundle for ARM, identity and Key Vault calls (default: the OS store)"},
    {.name = "controller.auth.keys",
     .type = AHG_OPT_STRING,
     .flags = AHG_OPT_SECRET,
     .help = "API keys, separated by commas or newlines"},
    {.name = "controller.auth.keys_path",
     .type = AHG_OPT_STRING,
     .metavar = "PATH",
     .help = "file of API keys (one a line, '#' comments), re-read on every refresh"},
    {.name = "controller.auth.keyvault_url",
     .type = AHG_OPT_STRING,
     .metavar = "URL",
     .help = "Key Vault holding the API keys (https://<vault>.vault.azure.net)"},
    {.name = "controller.auth.keyvault_secret",
     .type = AHG_OPT_STRING,
     .metavar = "NAME",
     .help = "Key Vault secret with the API keys (comma or newline separated)"},
    {.name = "controller.auth.refresh",
     .type = AHG_OPT_DURATION,
     .def = "5m",
     .min = 1000,
     .max = 86400000LL,
     .help = "how often API keys are re-read from the file and Key Vault"},
    {.name = "controller.auth.max_failures",
     .type = AHG_OPT_INT,
     .def = "10",
     .min = 0,
     .max = 100000,
     .help = "failed API keys a client address may send per failure_window before it is locked "
             "out (429); 0 = no limit"},
    {.name = "controller.auth.failure_window",
     .type = AHG_OPT_DURATION,
     .def = "1m",
     .min = 1000,
     .max = 86400000LL,
     .help = "time in which a client address's budget of failed API keys refills completely"},
    {.name = "controller.auth.lockout",
     .type = AHG_OPT_DURATION,
     .def = "1m",
     .min = 1000,
     .max = 86400000LL,
     .help = "how long an address that spent its budget of failed API keys gets 429"},
    {.name = "controller.auth.tracked_addresses",
     .type = AHG_OPT_INT,
     .def = "10000",
     .min = 16,
     .max = 1000000,
     .help = "client addresses with failed API keys remembered at most (oldest forgotten)"},
    {.name = "controller.quota",
     .type = AHG_OPT_INT,
     .def = "10",
     .min = 1,
     .max = 100000,
     .help = "live tunnels per API key"},
    {.name = "controller.allow_cidr",
     .type = AHG_OPT_LIST,
     .metavar = "CIDR",
     .help = "callers allowed to use the API (default: everyone)"},
    {.name = "controller.trusted_proxies",
     .type = AHG_OPT_LIST,
     .def = "127.0.0.0/8,::1/128",
     .metavar = "CIDR",
     .help = "proxies (e.g. the gateways) whose X-Forwarded-For gives the client address; "
             "empty = none"},
    {.name = "controller.reserved",
     .type = AHG_OPT_LIST,
     .metavar = "NAME",
     .help = "subdomains never granted, in addition to the built-in list"},
    {.name = "controller.custom_subdomains",
     .type = AHG_OPT_BOOL,
     .def = "true",
     .help = "grant requested subdomain names"},
    {.name = "controller.default_ttl",
     .type = AHG_OPT_DURATION,
     .def = "1h",
     .min = 60000,
     .max = 604800000LL,
     .help = "session lifetime without renewal when the request gives none"},
    {.name = "controller.max_ttl",
     .type = AHG_OPT_DURATION,
     .def = "24h",
     .min = 60000,
     .max = 604800000LL,
     .help = "longest session lifetime a request may ask for"},
    {.name = "controller.pool.size",
     .type = AHG_OPT_INT,
     .def = "0",
     .min = 0,
     .max = 1000,
     .help = "pre-created Hybrid Connections kept ready (warm pool)"},
    {.name = "controller.reconcile.enabled",
     .type = AHG_OPT_BOOL,
     .def = "true",
     .help = "take part in the reconciler's leader election"},
    {.name = "controller.reconcile.interval",
     .type = AHG_OPT_DURATION,
     .def = "30s",
     .min = 100,
     .max = 86400000LL,
     .help = "time between reconcile passes"},
    {.name = "controller.reconcile.lease_ttl",
     .type = AHG_OPT_DURATION,
     .def = "15s",
     .min = 300,
     .max = 600000,
     .help = "reconciler lease lifetime (renewed at a third of it)"},
    {.name = "controller.reconcile.orphan_grace",
     .type = AHG_OPT_DURATION,
     .def = "60s",
     .min = 0,
     .max = 86400000LL,
     .help = "Hybrid Connections younger than this are never deleted as orphans"},
};
const size_t ahg_ctl_nopts = sizeof(ahg_ctl_opts_table) / sizeof(ahg_ctl_opts_table[0]);

static const char *const *
list_opt(const struct ahg_config *cfg, const char *name, int *err)
{
    const char *const *items = NULL;
    size_t n = ahg_config_list(cfg, name, &items);
    if (n == 0)
        return NULL;
    const char **v = calloc(n + 1, sizeof(*v));
    if (!v) {
        *err = AHG_ENOMEM;
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = items[i];
    return v;
}

int
ahg_ctl_opts_from_config(struct ahg_ctl_opts *o, const struct ahg_config *cfg, char *err,
                         size_t errlen)
{
    memset(o, 0, sizeof(*o));
    o->replica = ahg_config_str(cfg, "controller.replica");
    o->instance = ahg_config_str(cfg, "controller.instance");
    o->public_scheme = ahg_config_str(cfg, "controller.public.scheme");
    o->public_domain = ahg_config_str(cfg, "controller.public.domain");
    o->public_port = (int)ahg_config_int(cfg, "controller.public.port");
    o->relay_endpoint = ahg_config_str(cfg, "controller.relay.endpoint");
    o->relay_host = ahg_config_str(cfg, "controller.relay.host");
    o->relay_rule = ahg_config_str(cfg, "controller.relay.rule");
    o->relay_keys_refresh_ms = (uint64_t)ahg_config_int(cfg, "controller.relay.keys_refresh");
    o->token_ttl_ms = (uint64_t)ahg_config_int(cfg, "controller.token_ttl");
    o->arm_endpoint = ahg_config_str(cfg, "controller.arm.endpoint");
    o->subscription = ahg_config_str(cfg, "controller.arm.subscription");
    o->resource_group = ahg_config_str(cfg, "controller.arm.resource_group");
    o->namespace_name = ahg_config_str(cfg, "controller.arm.namespace");
    o->arm_api_version = ahg_config_str(cfg, "controller.arm.api_version");
    o->arm_retries = (unsigned)ahg_config_int(cfg, "controller.arm.retries");
    o->arm_wait_ms = (uint64_t)ahg_config_int(cfg, "controller.arm.wait");
    o->identity_kind = ahg_config_str(cfg, "controller.identity.kind");
    o->identity_endpoint = ahg_config_str(cfg, "controller.identity.endpoint");
    o->identity_header = ahg_config_str(cfg, "controller.identity.header");
    o->identity_client_id = ahg_config_str(cfg, "controller.identity.client_id");
    o->ca_file = ahg_config_str(cfg, "controller.ca_file");
    o->api_keys = ahg_config_str(cfg, "controller.auth.keys");
    o->api_keys_path = ahg_config_str(cfg, "controller.auth.keys_path");
    o->keyvault_url = ahg_config_str(cfg, "controller.auth.keyvault_url");
    o->keyvault_secret = ahg_config_str(cfg, "controller.auth.keyvault_secret");
    o->api_keys_refresh_ms = (uint64_t)ahg_config_int(cfg, "controller.auth.refresh");
    o->quota = (unsigned)ahg_config_int(cfg, "controller.quota");
    o->auth_max_failures = (unsigned)ahg_config_int(cfg, "controller.auth.max_failures");
    o->auth_guard_off = o->auth_max_failures == 0;
    o->auth_failure_window_ms = (uint64_t)ahg_config_int(cfg, "controller.auth.failure_window");
    o->auth_lockout_ms = (uint64_t)ahg_config_int(cfg, "controller.auth.lockout");
    o->auth_tracked_addresses = (unsigned)ahg_config_int(cfg, "controller.auth.tracked_addresses");
    o->allow_custom_subdomain = ahg_config_bool(cfg, "controller.custom_subdomains");
    o->default_ttl_ms = (uint64_t)ahg_config_int(cfg, "controller.default_ttl");
    o->max_ttl_ms = (uint64_t)ahg_config_int(cfg, "controller.max_ttl");
    o->pool_size = (unsigned)ahg_config_int(cfg, "controller.pool.size");
    o->reconciler = ahg_config_bool(cfg, "controller.reconcile.enabled");
    o->reconciler_set = true;
    o->reconcile_interval_ms = (uint64_t)ahg_config_int(cfg, "controller.reconcile.interval");
    o->lease_ttl_ms = (uint64_t)ahg_config_int(cfg, "controller.reconcile.lease_ttl");
    o->orphan_grace_ms = (uint64_t)ahg_config_int(cfg, "controller.reconcile.orphan_grace");
    int rc = AHG_OK;
    o->allow_cidr = list_opt(cfg, "controller.allow_cidr", &rc);
    o->trusted_proxies = list_opt(cfg, "controller.trusted_proxies", &rc);
    o->reserved = list_opt(cfg, "controller.reserved", &rc);
    if (rc != AHG_OK) {
        ahg_ctl_opts_clear(o);
        (void)snprintf(err, errlen, "out of memory");
        return rc;
    }
    if (o->default_ttl_ms > o->max_ttl_ms) {
        ahg_ctl_opts_clear(o);
        (void)snprintf(err, errlen, "controller.default_ttl is longer than controller.max_ttl");
        return AHG_ECONFIG;
    }
    return AHG_OK;
}

void
ahg_ctl_opts_clear(struct ahg_ctl_opts *o)
{
    union {
        const char *const *c;
        void *p;
    } u;
    u.c = o->allow_cidr;
    free(u.p);
    u.c = o->trusted_proxies;
    free(u.p);
    u.c = o->reserved;
    free(u.p);
    o->allow_cidr = o->trusted_proxies = o->reserved = NULL;
}

/* ---- small helpers ---- */

int64_t
ctl_now_s(void)
{
    return (int64_t)time(NULL);
}

void
ctl_rfc3339(long long t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm)) {
        (void)snprintf(out, 32, "1970-01-01T00:00:00Z");
        return;
    }
    (void)strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void
ctl_metadata(const struct ahg_ctl *ctl, const char *sid, char *out, size_t outsz)
{
    (void)snprintf(out, outsz, "{\"owner\":\"" CTL_OWNER "\",\"instance\":\"%s\",\"sid\":\"%s\"}",
                   ctl->instance, sid && sid[0] ? sid : "pool");
}

bool
ctl_metadata_ours(const struct ahg_ctl *ctl, const char *um)
{
    if (!um || !um[0])
        return false;
    cJSON *j = cJSON_Parse(um);
    const cJSON *ow = cJSON_GetObjectItemCaseSensitive(j, "owner");
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(j, "instance");
    bool ours = cJSON_IsString(ow) && strcmp(ow->valuestring, CTL_OWNER) == 0 &&
                cJSON_IsString(in) && strcmp(in->valuestring, ctl->instance) == 0;
    cJSON_Delete(j);
    return ours;
}

/* ---- API keys ---- */

struct keyset {
    struct ctl_apikey *v;
    size_t n, cap;
};

static void
keyset_add(struct keyset *ks, const char *k, size_t n)
{
    while (n && (k[0] == ' ' || k[0] == '\t' || k[0] == '\r')) {
        k++;
        n--;
    }
    while (n && (k[n - 1] == ' ' || k[n - 1] == '\t' || k[n - 1] == '\r'))
        n--;
    if (n == 0 || k[0] == '#' || ks->n >= CTL_KEYS_MAX)
        return;
    if (ks->n == ks->cap) {
        size_t cap = ks->cap ? ks->cap * 2 : 8;
        struct ctl_apikey *v = realloc(ks->v, cap * sizeof(*v));
        if (!v)
            return;
        ks->v = v;
        ks->cap = cap;
    }
    struct ctl_apikey *e = &ks->v[ks->n++];
    ahg_sha256(k, n, e->hash);
    char hex[65];
    static const char xd[] = "0123456789abcdef";
    for (size_t i = 0; i < 32; i++) {
        hex[2 * i] = xd[e->hash[i] >> 4];
        hex[2 * i + 1] = xd[e->hash[i] & 15];
    }
    memcpy(e->keyid, hex, CTL_KEYID_LEN);
    e->keyid[CTL_KEYID_LEN] = '\0';
}

/* Splits text on commas and newlines. */
static void
keyset_add_text(struct keyset *ks, const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && s[j] != ',' && s[j] != '\n')
            j++;
        keyset_add(ks, s + i, j - i);
        i = j + 1;
    }
}

static int
keyset_add_file(struct keyset *ks, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return AHG_ENOTFOUND;
    char *buf = malloc(CTL_KEYFILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, CTL_KEYFILE_MAX + 1, f) : 0;
    int ferr = ferror(f);
    (void)fclose(f);
    if (!buf)
        return AHG_ENOMEM;
    int rc = AHG_OK;
    if (ferr)
        rc = AHG_EIO;
    else if (n > CTL_KEYFILE_MAX)
        rc = AHG_ELIMIT;
    else
        keyset_add_text(ks, buf, n);
    memset(buf, 0, n < CTL_KEYFILE_MAX ? n : CTL_KEYFILE_MAX);
    free(buf);
    return rc;
}

static void
keys_install(struct ahg_ctl *ctl, struct keyset *ks)
{
    if (ctl->keys)
        memset(ctl->keys, 0, ctl->nkeys * sizeof(*ctl->keys));
    free(ctl->keys);
    ctl->keys = ks->v;
    ctl->nkeys = ks->n;
    ctl->keys_loaded = true;
}

bool
ctl_key_lookup(const struct ahg_ctl *ctl, const char *key, char keyid[CTL_KEYID_LEN + 1])
{
    keyid[0] = '\0';
    if (!key || !key[0] || strlen(key) > 1024)
        return false;
    unsigned char h[32];
    ahg_sha256(key, strlen(key), h);
    size_t found = SIZE_MAX;
    for (size_t i = 0; i < ctl->nkeys; i++) {
        bool eq = ahg_consttime_eq(h, sizeof(h), ctl->keys[i].hash, sizeof(h));
        if (eq && found == SIZE_MAX)
            found = i;
    }
    if (found == SIZE_MAX)
        return false;
    memcpy(keyid, ctl->keys[found].keyid, CTL_KEYID_LEN + 1);
    return true;
}

/* Local sources; with kv_value (Key Vault's text) when given. */
static void
keys_reload(struct ahg_ctl *ctl, const char *kv_value, size_t kv_len)
{
    struct keyset ks = {0};
    if (ctl->o.api_keys)
        keyset_add_text(&ks, ctl->o.api_keys, strlen(ctl->o.api_keys));
    if (ctl->o.api_keys_path) {
        int rc = keyset_add_file(&ks, ctl->o.api_keys_path);
        if (rc != AHG_OK) {
            AHG_LOG_WARN("API keys: cannot read %s (%s); keeping the previous keys",
                         ctl->o.api_keys_path, ahg_strerror(rc));
            free(ks.v);
            return;
        }
    }
    if (kv_value)
        keyset_add_text(&ks, kv_value, kv_len);
    size_t before = ctl->nkeys;
    keys_install(ctl, &ks);
    if (before != ctl->nkeys)
        AHG_LOG_INFO("API keys: %zu loaded", ctl->nkeys);
    if (ctl->m_keys_refresh)
        ahg_metric_inc(ctl->m_keys_refresh);
}

static void
on_kv_keys(int err, const char *value, size_t len, void *ud)
{
    struct ahg_ctl *ctl = ud;
    ctl->keys_loading = false;
    if (err == AHG_ECLOSED)
        return;
    if (err != AHG_OK) {
        AHG_LOG_WARN("API keys: Key Vault secret %s: %s; %s", ctl->o.keyvault_secret,
                     ahg_strerror(err),
                     ctl->keys_loaded ? "keeping the previous keys" : "retrying");
        ahg_timer_start(&ctl->keys_timer, ctl->keys_loaded ? ctl->o.api_keys_refresh_ms : 2000);
        return;
    }
    keys_reload(ctl, value, len);
    ahg_timer_start(&ctl->keys_timer, ctl->o.api_keys_refresh_ms);
}

static void
keys_refresh(struct ahg_ctl *ctl)
{
    if (ctl->kv) {
        if (ctl->keys_loading)
            return;
        ctl->keys_loading = true;
        if (ahg_kv_get_secret(ctl->kv, ctl->o.keyvault_secret, on_kv_keys, ctl) != AHG_OK) {
            ctl->keys_loading = false;
            ahg_timer_start(&ctl->keys_timer, 2000);
        }
        return;
    }
    keys_reload(ctl, NULL, 0);
    ahg_timer_start(&ctl->keys_timer, ctl->o.api_keys_refresh_ms);
}

static void
on_keys_timer(struct ahg_timer *t)
{
    keys_refresh(t->ud);
}

/* ---- relay keys ---- */

static void
rk_notify(struct ahg_ctl *ctl, int err)
{
    /* detach first: callbacks may queue new waiters */
    struct ahg_list_node *n = ctl->rk_waiters.head;
    ahg_list_init(&ctl->rk_waiters);
    while (n) {
        struct ctl_keywait *w = AHG_LIST_ENTRY(n, struct ctl_keywait, node);
        n = n->next;
        void (*cb)(void *, int) = w->cb;
        void *ud = w->ud;
        free(w);
        cb(ud, err);
    }
}

static void
on_list_keys(const struct ahg_arm_result *res, void *ud)
{
    struct ahg_ctl *ctl = ud;
    ctl->rk_loading = false;
    if (res->err == AHG_ECLOSED)
        return;
    ctl->rk_last_err = res->err;
    if (res->err != AHG_OK) {
        if (ctl->m_arm_err)
            ahg_metric_inc(ctl->m_arm_err);
        AHG_LOG_WARN("relay keys: listKeys %s failed: %s (%d %s)", ctl->o.relay_rule,
                     ahg_strerror(res->err), res->status, res->code);
        ahg_timer_start(&ctl->rk_timer,
                        ctl->rk_loaded ? ctl->o.relay_keys_refresh_ms : CTL_RK_RETRY_MS);
        if (!ctl->rk_loaded)
            rk_notify(ctl, AHG_EUNAVAIL);
        else
            rk_notify(ctl, AHG_OK); /* sign with what we have */
        return;
    }
    bool changed = ctl->rk_loaded && (strcmp(ctl->rk_primary, res->primary_key) != 0 ||
                                      strcmp(ctl->rk_secondary, res->secondary_key) != 0);
    bool forced = ctl->rk_forced_ms && ahg_now_ms() - ctl->rk_forced_ms < CTL_FORCED_REFRESH;
    if (changed) {
        AHG_LOG_INFO("relay keys: rotation noticed on rule %s", ctl->o.relay_rule);
        if (ctl->m_keys_rotated)
            ahg_metric_inc(ctl->m_keys_rotated);
        ctl->rk_use_secondary = false;
    } else if (forced && ctl->rk_loaded) {
        /* the relay rejected a token signed with unchanged keys: try the other one */
        ctl->rk_use_secondary = !ctl->rk_use_secondary;
        AHG_LOG_WARN("relay keys: a token was rejected with unchanged keys; signing with the %s "
                     "key now",
                     ctl->rk_use_secondary ? "secondary" : "primary");
    }
    (void)snprintf(ctl->rk_name, sizeof(ctl->rk_name), "%s",
                   res->key_name[0] ? res->key_name : ctl->o.relay_rule);
    (void)snprintf(ctl->rk_primary, sizeof(ctl->rk_primary), "%s", res->primary_key);
    (void)snprintf(ctl->rk_secondary, sizeof(ctl->rk_secondary), "%s", res->secondary_key);
    ctl->rk_loaded = true;
    ctl->rk_fetched_ms = ahg_now_ms();
    ahg_timer_start(&ctl->rk_timer, ctl->o.relay_keys_refresh_ms);
    rk_notify(ctl, AHG_OK);
}

static void
rk_refresh(struct ahg_ctl *ctl)
{
    if (ctl->rk_loading || ctl->freeing)
        return;
    ctl->rk_loading = true;
    if (ahg_arm_list_keys(ctl->arm, ctl->o.relay_rule, on_list_keys, ctl, NULL) != AHG_OK) {
        ctl->rk_loading = false;
        ahg_timer_start(&ctl->rk_timer, CTL_RK_RETRY_MS);
    }
}

static void
on_rk_timer(struct ahg_timer *t)
{
    rk_refresh(t->ud);
}

static void
on_rk_wake(struct ahg_timer *t)
{
    struct ahg_ctl *ctl = t->ud;
    if (ctl->rk_loaded && !ctl->rk_loading)
        rk_notify(ctl, AHG_OK);
}

void
ahg_ctl_refresh_relay_keys(struct ahg_ctl *ctl)
{
    rk_refresh(ctl);
}

void
ctl_relay_keys_rejected(struct ahg_ctl *ctl)
{
    uint64_t now = ahg_now_ms();
    if (ctl->rk_forced_ms && now - ctl->rk_forced_ms < CTL_FORCED_REFRESH)
        return;
    ctl->rk_forced_ms = now;
    rk_refresh(ctl);
}

int
ctl_relay_keys_wait(struct ahg_ctl *ctl, void (*cb)(void *ud, int err), void *ud)
{
    struct ctl_keywait *w = calloc(1, sizeof(*w));
    if (!w)
        return AHG_ENOMEM;
    w->cb = cb;
    w->ud = ud;
    ahg_list_node_init(&w->node);
    ahg_list_push_back(&ctl->rk_waiters, &w->node);
    if (!ctl->rk_loaded || ctl->rk_loading) {
        rk_refresh(ctl);
        return AHG_OK;
    }
    /* keys are here: answer on the next turn */
    ahg_timer_start(&ctl->rk_wake, 0);
    return AHG_OK;
}

void
ctl_relay_keys_unwait(struct ahg_ctl *ctl, void *ud)
{
    struct ctl_keywait *found = NULL;
    ahg_list_foreach (it, &ctl->rk_waiters) {
        struct ctl_keywait *w = AHG_LIST_ENTRY(it, struct ctl_keywait, node);
        if (w->ud == ud) {
            found = w;
            break;
        }
    }
    if (found) {
        ahg_list_remove(&ctl->rk_waiters, &found->node);
        free(found);
    }
}

int
ctl_sign(const struct ahg_ctl *ctl, const char *hc, long long se, char *out, size_t outsz)
{
    if (!ctl->rk_loaded)
        return AHG_EUNAVAIL;
    char uri[512];
    int n = snprintf(uri, sizeof(uri), "http://%s/%s", ctl->o.relay_host, hc);
    if (n < 0 || (size_t)n >= sizeof(uri))
        return AHG_ELIMIT;
    return ahg_sas_create(uri, ctl->rk_name,
                          ctl->rk_use_secondary ? ctl->rk_secondary : ctl->rk_primary, se, out,
                          outsz);
}

/* ---- metrics ---- */

static double
g_keys(void *ud)
{
    return (double)((struct ahg_ctl *)ud)->nkeys;
}

static double
g_relay_keys_age(void *ud)
{
    struct ahg_ctl *ctl = ud;
    return ctl->rk_loaded ? (double)(ahg_now_ms() - ctl->rk_fetched_ms) / 1000.0 : -1.0;
}

static double
g_guard_tracked(void *ud)
{
    return (double)ctl_guard_count(((struct ahg_ctl *)ud)->guard);
}

static double
g_arm_pending(void *ud)
{
    return (double)ahg_arm_pending(((struct ahg_ctl *)ud)->arm);
}

static void
metrics_setup(struct ahg_ctl *ctl)
{
    struct ahg_metrics *m = ctl->metrics;
    const char *rq = "azhexgate_controller_requests_total";
    const char *rqh = "Management API requests by status class";
    ctl->m_req_ok = ahg_metrics_counter(m, rq, rqh, "class=\"2xx\"");
    ctl->m_req_4xx = ahg_metrics_counter(m, rq, rqh, "class=\"4xx\"");
    ctl->m_req_5xx = ahg_metrics_counter(m, rq, rqh, "class=\"5xx\"");
    const char *se = "azhexgate_controller_sessions_total";
    const char *seh = "Session life-cycle events";
    ctl->m_created = ahg_metrics_counter(m, se, seh, "event=\"created\"");
    ctl->m_deleted = ahg_metrics_counter(m, se, seh, "event=\"deleted\"");
    ctl->m_renewed = ahg_metrics_counter(m, se, seh, "event=\"renewed\"");
    ctl->m_expired = ahg_metrics_counter(m, se, seh, "event=\"expired\"");
    const char *po = "azhexgate_controller_pool_total";
    const char *poh = "Warm pool events";
    ctl->m_pool_hit = ahg_metrics_counter(m, po, poh, "event=\"hit\"");
    ctl->m_pool_miss = ahg_metrics_counter(m, po, poh, "event=\"miss\"");
    ctl->m_pool_created = ahg_metrics_counter(m, po, poh, "event=\"refilled\"");
    const char *hc = "azhexgate_controller_hybrid_connections_total";
    const char *hch = "Hybrid Connections created and deleted through ARM";
    ctl->m_hc_created = ahg_metrics_counter(m, hc, hch, "op=\"created\"");
    ctl->m_hc_deleted = ahg_metrics_counter(m, hc, hch, "op=\"deleted\"");
    ctl->m_orphans =
        ahg_metrics_counter(m, "azhexgate_controller_orphans_deleted_total",
                            "Orphaned Hybrid Connections deleted by the reconciler", NULL);
    ctl->m_arm_err = ahg_metrics_counter(m, "azhexgate_controller_arm_errors_total",
                                         "ARM operations that failed after their retries", NULL);
    ctl->m_passes = ahg_metrics_counter(m, "azhexgate_controller_reconcile_passes_total",
                                        "Completed reconcile passes", NULL);
    ctl->m_pass_seconds = ahg_metrics_histogram(
        m, "azhexgate_controller_reconcile_seconds", "Duration of reconcile passes", NULL,
        ahg_metrics_latency_buckets, ahg_metrics_latency_nbuckets);
    ctl->m_leader = ahg_metrics_gauge(m, "azhexgate_controller_leader",
                                      "1 when this replica holds the reconciler lease", NULL);
    ctl->m_lease_acq = ahg_metrics_counter(m, "azhexgate_controller_lease_acquired_total",
                                           "Reconciler lease acquisitions", NULL);
    ctl->m_lease_lost = ahg_metrics_counter(m, "azhexgate_controller_lease_lost_total",
                                            "Reconciler leases lost or released", NULL);
    ctl->m_keys_refresh = ahg_metrics_counter(m, "azhexgate_controller_api_key_refresh_total",
                                              "API key set reloads", NULL);
    ctl->m_keys_rotated = ahg_metrics_counter(m, "azhexgate_controller_relay_key_rotations_total",
                                              "Relay key rotations noticed through listKeys", NULL);
    ctl->m_auth_fail =
        ahg_metrics_counter(m, "azhexgate_controller_auth_failures_total",
                            "Requests refused for a missing or unknown API key", NULL);
    ctl->m_lockouts =
        ahg_metrics_counter(m, "azhexgate_controller_auth_lockouts_total",
                            "Client addresses locked out after too many failed API keys", NULL);
    ctl->m_throttled =
        ahg_metrics_counter(m, "azhexgate_controller_auth_throttled_total",
                            "Requests refused with 429 because their address was locked out", NULL);
    ctl->m_create_seconds = ahg_metrics_histogram(
        m, "azhexgate_controller_create_seconds", "Time to answer POST /api/tunnels", NULL,
        ahg_metrics_latency_buckets, ahg_metrics_latency_nbuckets);
    (void)ahg_metrics_gauge_fn(m, "azhexgate_controller_api_keys", "API keys loaded", NULL, g_keys,
                               ctl);
    (void)ahg_metrics_gauge_fn(m, "azhexgate_controller_relay_keys_age_seconds",
                               "Age of the cached relay keys (-1 before the first read)", NULL,
                               g_relay_keys_age, ctl);
    (void)ahg_metrics_gauge_fn(m, "azhexgate_controller_arm_pending", "ARM operations in progress",
                               NULL, g_arm_pending, ctl);
    (void)ahg_metrics_gauge_fn(m, "azhexgate_controller_auth_tracked_addresses",
                               "Client addresses with recent failed API keys", NULL,
                               g_guard_tracked, ctl);
}

/* ---- life cycle ---- */

static enum ahg_azid_kind
kind_of(const char *s)
{
    if (!s)
        return AHG_AZID_AUTO;
    if (!strcmp(s, "appservice"))
        return AHG_AZID_APPSERVICE;
    if (!strcmp(s, "imds"))
        return AHG_AZID_IMDS;
    if (!strcmp(s, "workload"))
        return AHG_AZID_WORKLOAD;
    return AHG_AZID_AUTO;
}

static void
defaults(struct ahg_ctl_opts *o, char *relay_host_buf, size_t rhsz, char *endpoint_buf, size_t epsz)
{
    if (!o->instance)
        o->instance = "default";
    if (!o->public_scheme)
        o->public_scheme = "https";
    if (!o->relay_rule)
        o->relay_rule = "RootManageSharedAccessKey";
    if (!o->relay_keys_refresh_ms)
        o->relay_keys_refresh_ms = 300000;
    if (!o->token_ttl_ms)
        o->token_ttl_ms = 3600000;
    if (!o->api_keys_refresh_ms)
        o->api_keys_refresh_ms = 300000;
    if (!o->quota)
        o->quota = 10;
    if (!o->auth_max_failures)
        o->auth_max_failures = 10;
    if (!o->auth_failure_window_ms)
        o->auth_failure_window_ms = 60000;
    if (!o->auth_lockout_ms)
        o->auth_lockout_ms = 60000;
    if (!o->auth_tracked_addresses)
        o->auth_tracked_addresses = 10000;
    if (!o->default_ttl_ms)
        o->default_ttl_ms = 3600000;
    if (!o->max_ttl_ms)
        o->max_ttl_ms = 86400000;
    if (!o->reconcile_interval_ms)
        o->reconcile_interval_ms = 30000;
    if (!o->lease_ttl_ms)
        o->lease_ttl_ms = 15000;
    if (!o->orphan_grace_ms)
        o->orphan_grace_ms = 60000;
    if (!o->arm_wait_ms)
        o->arm_wait_ms = 30000;
    if (!o->reconciler_set)
        o->reconciler = true;
    if (!o->relay_host && o->namespace_name) {
        (void)snprintf(relay_host_buf, rhsz, "%s.servicebus.windows.net", o->namespace_name);
        o->relay_host = relay_host_buf;
    }
    if (!o->relay_endpoint && o->relay_host) {
        (void)snprintf(endpoint_buf, epsz, "wss://%s/", o->relay_host);
        o->relay_endpoint = endpoint_buf;
    }
}

int
ahg_ctl_opts_check(const struct ahg_ctl_opts *o, char *err, size_t errlen)
{
    const char *why = NULL;
    if (!o->public_domain || !o->public_domain[0])
        why = "controller.public.domain is required";
    else if (!o->subscription || !o->resource_group || !o->namespace_name)
        why = "controller.arm.subscription, controller.arm.resource_group and "
              "controller.arm.namespace are required";
    else if (!o->api_keys && !o->api_keys_path && !o->keyvault_secret)
        why = "no API keys: set controller.auth.keys, controller.auth.keys_path or "
              "controller.auth.keyvault_secret";
    else if ((o->keyvault_url == NULL) != (o->keyvault_secret == NULL))
        why = "controller.auth.keyvault_url and controller.auth.keyvault_secret go together";
    else if (o->default_ttl_ms && o->max_ttl_ms && o->default_ttl_ms > o->max_ttl_ms)
        why = "controller.default_ttl is longer than controller.max_ttl";
    if (why) {
        (void)snprintf(err, errlen, "%s", why);
        return AHG_ECONFIG;
    }
    const char *const *lists[] = {o->allow_cidr, o->trusted_proxies};
    const char *names[] = {"controller.allow_cidr", "controller.trusted_proxies"};
    for (size_t l = 0; l < 2; l++) {
        for (size_t i = 0; lists[l] && lists[l][i]; i++) {
            struct ahg_cidr c;
            if (ahg_cidr_parse(lists[l][i], &c) != AHG_OK) {
                (void)snprintf(err, errlen,
                               "%s: '%s' is not a CIDR (e.g. 10.0.0.0/8, 2001:db8::/32; host bits "
                               "below the prefix must be zero)",
                               names[l], lists[l][i]);
                return AHG_ECONFIG;
            }
        }
    }
    if (o->relay_endpoint && strncmp(o->relay_endpoint, "ws://", 5) != 0 &&
        strncmp(o->relay_endpoint, "wss://", 6) != 0) {
        (void)snprintf(err, errlen, "controller.relay.endpoint must start with wss:// or ws://");
        return AHG_ECONFIG;
    }
    return AHG_OK;
}

/* Deep copies of the caller's strings and lists (the caller may free its options at once). */
static void **
owned_slot(struct ahg_ctl *ctl)
{
    if (ctl->nowned == ctl->capowned) {
        size_t cap = ctl->capowned ? ctl->capowned * 2 : 64;
        void **v = realloc(ctl->owned, cap * sizeof(*v));
        if (!v)
            return NULL;
        ctl->owned = v;
        ctl->capowned = cap;
    }
    return &ctl->owned[ctl->nowned];
}

static const char *
own_str(struct ahg_ctl *ctl, const char *v, bool *oom)
{
    if (!v)
        return NULL;
    size_t n = strlen(v) + 1;
    char *c = malloc(n);
    void **slot = owned_slot(ctl);
    if (!c || !slot) {
        free(c);
        *oom = true;
        return NULL;
    }
    memcpy(c, v, n);
    *slot = c;
    ctl->nowned++;
    return c;
}

static const char *const *
own_list(struct ahg_ctl *ctl, const char *const *v, bool *oom)
{
    if (!v)
        return NULL;
    size_t n = 0;
    while (v[n])
        n++;
    const char **c = calloc(n + 1, sizeof(*c));
    void **slot = owned_slot(ctl);
    if (!c || !slot) {
        free(c);
        *oom = true;
        return NULL;
    }
    *slot = c;
    ctl->nowned++;
    for (size_t i = 0; i < n; i++)
        c[i] = own_str(ctl, v[i], oom);
    return c;
}

static bool
own_opts(struct ahg_ctl *ctl)
{
    struct ahg_ctl_opts *o = &ctl->o;
    bool oom = false;
    const char **strs[] = {
        &o->replica,         &o->instance,          &o->public_scheme,   &o->public_domain,
        &o->relay_endpoint,  &o->relay_host,        &o->relay_rule,      &o->arm_endpoint,
        &o->subscription,    &o->resource_group,    &o->namespace_name,  &o->arm_api_version,
        &o->identity_kind,   &o->identity_endpoint, &o->identity_header, &o->identity_client_id,
        &o->ca_file,         &o->api_keys,          &o->api_keys_path,   &o->keyvault_url,
        &o->keyvault_secret,
    };
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        *strs[i] = own_str(ctl, *strs[i], &oom);
    o->allow_cidr = own_list(ctl, o->allow_cidr, &oom);
    o->trusted_proxies = own_list(ctl, o->trusted_proxies, &oom);
    o->reserved = own_list(ctl, o->reserved, &oom);
    return !oom;
}

static void
free_owned(struct ahg_ctl *ctl)
{
    for (size_t i = 0; i < ctl->nowned; i++) {
        /* secrets among them (inline API keys, identity header) are wiped */
        char *p = ctl->owned[i];
        if (p && (p == ctl->o.api_keys || p == ctl->o.identity_header))
            memset(p, 0, strlen(p));
        free(ctl->owned[i]);
    }
    free(ctl->owned);
    ctl->owned = NULL;
    ctl->nowned = ctl->capowned = 0;
}

struct ctl_bufs {
    char relay_host[256];
    char endpoint[300];
};

struct ahg_ctl *
ahg_ctl_new(struct ahg_loop *loop, struct ahg_store *store, const struct ahg_ctl_opts *opts,
            int *err)
{
    int dummy;
    if (!err)
        err = &dummy;
    *err = AHG_ECONFIG;
    if (!loop || !store || !opts)
        return NULL;
    struct ahg_ctl *ctl = calloc(1, sizeof(*ctl) + sizeof(struct ctl_bufs));
    if (!ctl) {
        *err = AHG_ENOMEM;
        return NULL;
    }
    struct ctl_bufs *bufs = (struct ctl_bufs *)(void *)(ctl + 1);
    ctl->loop = loop;
    ctl->store = store;
    ctl->o = *opts;
    if (!own_opts(ctl)) {
        free_owned(ctl);
        free(ctl);
        *err = AHG_ENOMEM;
        return NULL;
    }
    defaults(&ctl->o, bufs->relay_host, sizeof(bufs->relay_host), bufs->endpoint,
             sizeof(bufs->endpoint));
    ctl->instance = ctl->o.instance;
    ahg_list_init(&ctl->rk_waiters);
    ahg_list_init(&ctl->reqs);
    ahg_timer_init(&ctl->keys_timer, loop, on_keys_timer, ctl);
    ahg_timer_init(&ctl->rk_timer, loop, on_rk_timer, ctl);
    ahg_timer_init(&ctl->rk_wake, loop, on_rk_wake, ctl);

    if (ctl->o.replica) {
        (void)snprintf(ctl->replica, sizeof(ctl->replica), "%s", ctl->o.replica);
    } else {
        char host[64] = "host";
        (void)gethostname(host, sizeof(host) - 1);
        host[sizeof(host) - 1] = '\0';
        char rnd[9];
        (void)ahg_rand_hex(rnd, 4);
        (void)snprintf(ctl->replica, sizeof(ctl->replica), "%s:%ld:%s", host, (long)getpid(), rnd);
    }

    char why[256];
    if (ahg_ctl_opts_check(&ctl->o, why, sizeof(why)) != AHG_OK) {
        AHG_LOG_ERROR("controller: %s", why);
        free_owned(ctl);
        free(ctl);
        return NULL;
    }
    for (size_t i = 0; ctl->o.allow_cidr && ctl->o.allow_cidr[i]; i++)
        (void)ahg_cidr_list_add(&ctl->allow, ctl->o.allow_cidr[i]);
    for (size_t i = 0; ctl->o.trusted_proxies && ctl->o.trusted_proxies[i]; i++)
        (void)ahg_cidr_list_add(&ctl->proxies, ctl->o.trusted_proxies[i]);

    if (!ctl->o.auth_guard_off) {
        struct ctl_guard_opts go = {.max_failures = ctl->o.auth_max_failures,
                                    .window_ms = ctl->o.auth_failure_window_ms,
                                    .lockout_ms = ctl->o.auth_lockout_ms,
                                    .max_entries = ctl->o.auth_tracked_addresses};
        ctl->guard = ctl_guard_new(&go);
        if (!ctl->guard) {
            AHG_LOG_ERROR("controller: out of memory for the API key guard");
            *err = AHG_ENOMEM;
            ahg_cidr_list_free(&ctl->allow);
            ahg_cidr_list_free(&ctl->proxies);
            free_owned(ctl);
            free(ctl);
            return NULL;
        }
    }

    struct ahg_egress_opts eo = {.ca_file = ctl->o.ca_file};
    ctl->eg = ahg_egress_new(loop, &eo);
    struct ahg_azid_opts io = {
        .kind = kind_of(ctl->o.identity_kind),
        .endpoint = ctl->o.identity_endpoint,
        .identity_header = ctl->o.identity_header,
        .client_id = ctl->o.identity_client_id,
    };
    int rc = AHG_OK;
    ctl->azid = ctl->eg ? ahg_azid_new(loop, ctl->eg, &io, &rc) : NULL;
    struct ahg_arm_opts ao = {
        .base_url = ctl->o.arm_endpoint,
        .subscription = ctl->o.subscription,
        .resource_group = ctl->o.resource_group,
        .namespace_name = ctl->o.namespace_name,
        .api_version = ctl->o.arm_api_version,
        .max_retries = ctl->o.arm_retries,
        .backoff_ms = ctl->o.arm_backoff_ms,
    };
    ctl->arm = ctl->azid ? ahg_arm_new(loop, ctl->eg, ctl->azid, &ao, &rc) : NULL;
    if (ctl->arm && ctl->o.keyvault_url) {
        struct ahg_kv_opts ko = {.vault_url = ctl->o.keyvault_url};
        ctl->kv = ahg_kv_new(loop, ctl->eg, ctl->azid, &ko, &rc);
    }
    if (!ctl->arm || (ctl->o.keyvault_url && !ctl->kv)) {
        AHG_LOG_ERROR("controller: %s", !ctl->eg ? "cannot start the HTTP client for Azure"
                                        : !ctl->azid
                                            ? "no managed identity (set controller.identity.*, "
                                              "IDENTITY_ENDPOINT, or run where IMDS answers)"
                                        : !ctl->arm ? "invalid ARM options (controller.arm.*)"
                                                    : "invalid controller.auth.keyvault_url");
        *err = rc == AHG_ENOMEM ? AHG_ENOMEM : AHG_ECONFIG;
        ctl->freeing = true;
        ahg_ctl_free(ctl);
        return NULL;
    }
    if (ctl->o.metrics) {
        ctl->metrics = ctl->o.metrics;
    } else {
        ctl->metrics = ahg_metrics_new();
        ctl->own_metrics = true;
    }
    if (ctl->metrics)
        metrics_setup(ctl);

    /* API keys: local sources now, Key Vault asynchronously */
    keys_reload(ctl, NULL, 0);
    if (ctl->kv) {
        ctl->keys_loaded = false;
        keys_refresh(ctl);
    } else {
        ahg_timer_start(&ctl->keys_timer, ctl->o.api_keys_refresh_ms);
    }
    rk_refresh(ctl);
    ctl_rec_start(ctl);
    AHG_LOG_INFO("controller: replica %s, namespace %s, pool %u, relay %s", ctl->replica,
                 ctl->o.namespace_name, ctl->o.pool_size, ctl->o.relay_endpoint);
    *err = AHG_OK;
    return ctl;
}

bool
ahg_ctl_ready(const struct ahg_ctl *ctl)
{
    return ctl && !ctl->draining && ahg_store_is_up(ctl->store) && ctl->keys_loaded &&
           ctl->rk_loaded;
}

bool
ahg_ctl_is_leader(const struct ahg_ctl *ctl)
{
    return ctl && ctl->leader;
}

uint64_t
ahg_ctl_fence(const struct ahg_ctl *ctl)
{
    return ctl ? ctl->fence : 0;
}

uint64_t
ahg_ctl_reconcile_passes(const struct ahg_ctl *ctl)
{
    return ctl ? ctl->passes : 0;
}

uint64_t
ahg_ctl_last_reconcile_ms(const struct ahg_ctl *ctl)
{
    return ctl ? ctl->last_pass_ms : 0;
}

struct ahg_metrics *
ahg_ctl_metrics(struct ahg_ctl *ctl)
{
    return ctl ? ctl->metrics : NULL;
}

void
ctl_maybe_drained(struct ahg_ctl *ctl)
{
    if (!ctl->draining || !ctl->drain_done || !ahg_list_is_empty(&ctl->reqs) || ctl->releasing)
        return;
    void (*done)(void *) = ctl->drain_done;
    ctl->drain_done = NULL;
    done(ctl->drain_ud);
}

void
ahg_ctl_drain(struct ahg_ctl *ctl, void (*done)(void *ud), void *ud)
{
    if (!ctl)
        return;
    ctl->draining = true;
    ctl->drain_done = done;
    ctl->drain_ud = ud;
    ahg_timer_stop(&ctl->keys_timer);
    ctl_rec_release(ctl);
    AHG_LOG_INFO("controller: draining (%zu requests in flight)", ctl->reqs.count);
    ctl_maybe_drained(ctl);
}

void
ahg_ctl_free(struct ahg_ctl *ctl)
{
    if (!ctl)
        return;
    ctl->freeing = true;
    ctl->drain_done = NULL;
    ctl_rec_stop(ctl);
    ctl_api_abort_all(ctl);
    ahg_timer_stop(&ctl->keys_timer);
    ahg_timer_stop(&ctl->rk_timer);
    ahg_timer_stop(&ctl->rk_wake);
    rk_notify(ctl, AHG_ECLOSED);
    ahg_arm_free(ctl->arm);
    ahg_kv_free(ctl->kv);
    ahg_azid_free(ctl->azid);
    ahg_egress_free(ctl->eg);
    if (ctl->own_metrics)
        ahg_metrics_free(ctl->metrics);
    if (ctl->keys)
        memset(ctl->keys, 0, ctl->nkeys * sizeof(*ctl->keys));
    free(ctl->keys);
    memset(ctl->rk_primary, 0, sizeof(ctl->rk_primary));
    memset(ctl->rk_secondary, 0, sizeof(ctl->rk_secondary));
    ahg_cidr_list_free(&ctl->allow);
    ahg_cidr_list_free(&ctl->proxies);
    ctl_guard_free(ctl->guard);
    free_owned(ctl);
    free(ctl);
}
