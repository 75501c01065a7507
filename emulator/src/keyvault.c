/*
 * keyvault.c - the Key Vault secrets subset (hc-protocol.md section 9.4):
 *
 *   GET /secrets/{name}[/{version}]?api-version=7.4   (also 7.0-7.6 and 2025-07-01)
 *   PUT /secrets/{name}?api-version=7.4   {"value":"…","contentType":"…"}  (new version)
 *   GET /secrets?api-version=7.4          (list, values omitted)
 *
 * A bearer token for https://vault.azure.net is required; without one the answer is the 401
 * challenge the Azure SDKs' challenge policy expects (WWW-Authenticate: Bearer
 * authorization="…", resource="https://vault.azure.net"). Versions are kept (latest wins).
 * Secret values are never logged and are wiped when freed.
 *
 * Threading: loop thread only.
 */
#include "emu_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "ahg/buf.h"
#include "ahg/crypto.h"
#include "ahg/err.h"
#include "ahg/log.h"
#include "ahg/url.h"

#define KV_NAME_MAX     127u                /* secret names: 1-127 of [0-9a-zA-Z-] */
#define KV_VALUE_MAX    ((size_t)25 * 1024) /* Key Vault's secret size limit */
#define KV_BODY_MAX     ((size_t)64 * 1024) /* request body bound */
#define KV_MAX_SECRETS  1000u
#define KV_MAX_VERSIONS 100u /* oldest versions beyond this are dropped */
#define KV_CTYPE_MAX    255u
#define KV_AUDIENCE     "https://vault.azure.net"

struct kv_version {
    struct kv_version *next; /* older */
    char id[33];
    char *value;
    size_t len;
    char *content_type; /* may be NULL */
    long long created;
};

struct kv_secret {
    struct kv_secret *next;
    char name[KV_NAME_MAX + 1];
    struct kv_version *versions; /* newest first */
    unsigned nversions;
};

struct kv_state {
    struct kv_secret *secrets;
    unsigned nsecrets;
};

/* One PUT whose body is being read. Lives until the request's on_finish. */
struct kv_req {
    struct emu *e;
    struct ahg_buf body;
    char name[KV_NAME_MAX + 1];
    bool answered;
};

/* ---- the store ---- */

static void
version_free(struct kv_version *v)
{
    if (!v)
        return;
    if (v->value) {
        OPENSSL_cleanse(v->value, v->len);
        free(v->value);
    }
    free(v->content_type);
    free(v);
}

static void
secret_free(struct kv_secret *s)
{
    while (s->versions) {
        struct kv_version *v = s->versions;
        s->versions = v->next;
        version_free(v);
    }
    free(s);
}

static bool
name_valid(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len > KV_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-'))
            return false;
    }
    return true;
}

static struct kv_secret *
secret_find(struct kv_state *st, const char *name)
{
    for (struct kv_secret *s = st ? st->secrets : NULL; s; s = s->next)
        if (strcasecmp(s->name, name) == 0)
            return s;
    return NULL;
}

/* Adds a version (value copied). Returns it, or NULL with *err. */
static struct kv_version *
store_set(struct kv_state *st, const char *name, const char *value, size_t len,
          const char *content_type, int *err)
{
    if (!name_valid(name) || (content_type && strlen(content_type) > KV_CTYPE_MAX)) {
        *err = AHG_EINVAL;
        return NULL;
    }
    if (len > KV_VALUE_MAX) {
        *err = AHG_ELIMIT;
        return NULL;
    }
    struct kv_secret *s = secret_find(st, name);
    if (!s && st->nsecrets >= KV_MAX_SECRETS) {
        *err = AHG_ELIMIT;
        return NULL;
    }
    struct kv_version *v = calloc(1, sizeof(*v));
    if (v)
        v->value = malloc(len + 1);
    if (v && content_type)
        v->content_type = strdup(content_type);
    if (!v || !v->value || (content_type && !v->content_type) ||
        ahg_rand_hex(v->id, 16) != AHG_OK) {
        version_free(v);
        *err = AHG_ENOMEM;
        return NULL;
    }
    memcpy(v->value, value, len);
    v->value[len] = '\0';
    v->len = len;
    v->created = (long long)time(NULL);
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s) {
            version_free(v);
            *err = AHG_ENOMEM;
            return NULL;
        }
        (void)snprintf(s->name, sizeof(s->name), "%s", name);
        s->next = st->secrets;
        st->secrets = s;
        st->nsecrets++;
    }
    v->next = s->versions;
    s->versions = v;
    if (++s->nversions > KV_MAX_VERSIONS) {
        struct kv_version *p = s->versions;
        for (unsigned i = 1; i < KV_MAX_VERSIONS; i++)
            p = p->next;
        while (p->next) {
            struct kv_version *old = p->next;
            p->next = old->next;
            version_free(old);
            s->nversions--;
        }
    }
    *err = AHG_OK;
    return v;
}

int
emu_kv_set(struct emu *e, const char *name, const char *value)
{
    if (!e || !name || !value)
        return AHG_EINVAL;
    if (!e->keyvault && !(e->keyvault = calloc(1, sizeof(struct kv_state))))
        return AHG_ENOMEM;
    int err = AHG_OK;
    (void)store_set(e->keyvault, name, value, strlen(value), NULL, &err);
    return err;
}

/* Reads a NAME=FILE item. The file is read whole (bounded); one trailing newline goes. */
static int
load_item(struct emu *e, const char *item)
{
    const char *eq = strchr(item, '=');
    if (!eq || eq == item || !eq[1] || (size_t)(eq - item) > KV_NAME_MAX) {
        AHG_LOG_ERROR("emulator.keyvault.secrets: expected NAME=FILE, got '%s'", item);
        return AHG_ECONFIG;
    }
    char name[KV_NAME_MAX + 1];
    memcpy(name, item, (size_t)(eq - item));
    name[eq - item] = '\0';
    if (!name_valid(name)) {
        AHG_LOG_ERROR("emulator.keyvault.secrets: '%s' is not a valid secret name (1-127 letters, "
                      "digits and '-')",
                      name);
        return AHG_ECONFIG;
    }
    const char *path = eq + 1;
    FILE *f = fopen(path, "rb");
    if (!f) {
        AHG_LOG_ERROR("emulator.keyvault.secrets: cannot read %s for secret %s", path, name);
        return AHG_ECONFIG;
    }
    char *buf = malloc(KV_VALUE_MAX + 2);
    size_t n = buf ? fread(buf, 1, KV_VALUE_MAX + 2, f) : 0;
    bool bad = !buf || ferror(f);
    (void)fclose(f);
    if (bad) {
        free(buf);
        AHG_LOG_ERROR("emulator.keyvault.secrets: cannot read %s for secret %s", path, name);
        return AHG_ECONFIG;
    }
    if (n && buf[n - 1] == '\n')
        n--;
    if (n && buf[n - 1] == '\r')
        n--;
    int err = AHG_OK;
    if (n > KV_VALUE_MAX || memchr(buf, '\0', n))
        err = AHG_ELIMIT;
    else
        (void)store_set(e->keyvault, name, buf, n, NULL, &err);
    OPENSSL_cleanse(buf, KV_VALUE_MAX + 2);
    free(buf);
    if (err != AHG_OK) {
        AHG_LOG_ERROR("emulator.keyvault.secrets: secret %s from %s: %s", name, path,
                      err == AHG_ELIMIT ? "larger than 25 KiB or contains NUL bytes"
                                        : ahg_strerror(err));
        return AHG_ECONFIG;
    }
    return AHG_OK;
}

int
emu_kv_init(struct emu *e)
{
    if (!e)
        return AHG_EINVAL;
    if (!e->keyvault && !(e->keyvault = calloc(1, sizeof(struct kv_state))))
        return AHG_ENOMEM;
    const char *const *items = NULL;
    size_t n = e->cfg ? ahg_config_list(e->cfg, "emulator.keyvault.secrets", &items) : 0;
    for (size_t i = 0; i < n; i++)
        if (load_item(e, items[i]) != AHG_OK)
            return AHG_ECONFIG;
    return AHG_OK;
}

void
emu_kv_free(struct emu *e)
{
    struct kv_state *st = e ? e->keyvault : NULL;
    if (!st)
        return;
    while (st->secrets) {
        struct kv_secret *s = st->secrets;
        st->secrets = s->next;
        secret_free(s);
    }
    free(st);
    e->keyvault = NULL;
}

/* ---- HTTP ---- */

static void
respond(struct ahg_httpd_req *r, int status, cJSON *body, const char *www_auth)
{
    char rid[37] = "";
    (void)ahg_rand_uuid(rid);
    char *txt = body ? cJSON_PrintUnformatted(body) : NULL;
    cJSON_Delete(body);
    const char *fields[] = {"Cache-Control",
                            "no-cache",
                            "Pragma",
                            "no-cache",
                            "x-ms-request-id",
                            rid,
                            "x-ms-keyvault-service-version",
                            "1.9.0.0",
                            "x-ms-keyvault-network-info",
                            "conn_type=Ipv4;addr=127.0.0.1;act_addr_fam=InterNetwork;",
                            www_auth ? "WWW-Authenticate" : NULL,
                            www_auth,
                            NULL};
    if (!txt) {
        ahg_httpd_respond(r, 500, NULL, NULL, 0, fields);
        return;
    }
    ahg_httpd_respond(r, status, "application/json; charset=utf-8", txt, strlen(txt), fields);
    OPENSSL_cleanse(txt, strlen(txt)); /* it may hold a secret value */
    free(txt);
}

static void
kv_error(struct ahg_httpd_req *r, int status, const char *code, const char *msg,
         const char *www_auth)
{
    cJSON *j = cJSON_CreateObject();
    cJSON *err = j ? cJSON_AddObjectToObject(j, "error") : NULL;
    if (err) {
        cJSON_AddStringToObject(err, "code", code);
        cJSON_AddStringToObject(err, "message", msg);
    }
    respond(r, status, j, www_auth);
}

/* "https://<host the client used>" for ids; the scheme follows the connection. */
static void
vault_base(struct ahg_httpd_req *r, char *out, size_t outsz)
{
    const char *host = ahg_http_head_get(ahg_httpd_req_head(r), "Host", NULL);
    struct ahg_conn *c = ahg_httpd_req_conn(r);
    (void)snprintf(out, outsz, "%s://%s", c && ahg_conn_is_tls(c) ? "https" : "http",
                   host && *host ? host : "localhost");
}

static cJSON *
attributes(const struct kv_version *v)
{
    cJSON *a = cJSON_CreateObject();
    if (a && v) {
        cJSON_AddBoolToObject(a, "enabled", true);
        cJSON_AddNumberToObject(a, "created", (double)v->created);
        cJSON_AddNumberToObject(a, "updated", (double)v->created);
        cJSON_AddStringToObject(a, "recoveryLevel", "Recoverable+Purgeable");
        cJSON_AddNumberToObject(a, "recoverableDays", 90);
    }
    return a;
}

static void
respond_bundle(struct ahg_httpd_req *r, const struct kv_secret *s, const struct kv_version *v)
{
    char base[300], id[600];
    vault_base(r, base, sizeof(base));
    (void)snprintf(id, sizeof(id), "%s/secrets/%s/%s", base, s->name, v->id);
    cJSON *j = cJSON_CreateObject();
    if (j) {
        cJSON_AddStringToObject(j, "value", v->value);
        if (v->content_type)
            cJSON_AddStringToObject(j, "contentType", v->content_type);
        cJSON_AddStringToObject(j, "id", id);
        cJSON_AddItemToObject(j, "attributes", attributes(v));
        cJSON_AddObjectToObject(j, "tags");
    }
    respond(r, 200, j, NULL);
}

static void
respond_list(struct ahg_httpd_req *r, struct kv_state *st)
{
    char base[300], id[600];
    vault_base(r, base, sizeof(base));
    cJSON *j = cJSON_CreateObject();
    cJSON *arr = j ? cJSON_AddArrayToObject(j, "value") : NULL;
    for (struct kv_secret *s = st->secrets; arr && s; s = s->next) {
        cJSON *it = cJSON_CreateObject();
        if (!it)
            break;
        (void)snprintf(id, sizeof(id), "%s/secrets/%s", base, s->name);
        cJSON_AddStringToObject(it, "id", id);
        if (s->versions && s->versions->content_type)
            cJSON_AddStringToObject(it, "contentType", s->versions->content_type);
        cJSON_AddItemToObject(it, "attributes", attributes(s->versions));
        cJSON_AddItemToArray(arr, it);
    }
    if (j)
        cJSON_AddNullToObject(j, "nextLink");
    respond(r, 200, j, NULL);
}

static void
not_found(struct ahg_httpd_req *r, const char *name, const char *version)
{
    char msg[512];
    (void)snprintf(
        msg, sizeof(msg),
        "A secret with (name/id) %s%s%s was not found in this key vault. If you recently "
        "deleted this secret you may be able to recover it using the correct recovery "
        "command. For help resolving this issue, please see "
        "https://go.microsoft.com/fwlink/?linkid=2125182",
        name, version ? "/" : "", version ? version : "");
    kv_error(r, 404, "SecretNotFound", msg, NULL);
}

/* The PUT body is complete: parse it and create the version. The answer is sent last: it
 * may end the exchange, which frees q. */
static void
put_done(struct kv_req *q, struct ahg_httpd_req *r)
{
    struct kv_state *st = q->e->keyvault;
    cJSON *j = cJSON_ParseWithLength((const char *)ahg_buf_data(&q->body), ahg_buf_len(&q->body));
    const cJSON *val = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "value") : NULL;
    const cJSON *ct = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "contentType") : NULL;
    char *vs = val && cJSON_IsString(val) ? val->valuestring : NULL;
    const char *cts = ct && cJSON_IsString(ct) ? ct->valuestring : NULL;
    struct kv_version *v = NULL;
    int status = 400;
    const char *code = "BadParameter", *msg = NULL;
    q->answered = true;
    if (!cJSON_IsObject(j)) {
        msg = "The request body is not valid JSON.";
    } else if (!vs) {
        msg = "Property 'value' is required and must be a string.";
    } else if (ct && !cJSON_IsNull(ct) && !cts) {
        msg = "Property 'contentType' must be a string.";
    } else {
        int err = AHG_OK;
        v = store_set(st, q->name, vs, strlen(vs), cts, &err);
        if (!v && err == AHG_ELIMIT) {
            msg = "The secret value exceeds the maximum size of 25 KiB, or the vault holds too "
                  "many secrets.";
        } else if (!v && err == AHG_EINVAL) {
            msg = "Property 'contentType' is too long.";
        } else if (!v) {
            status = 500;
            code = "InternalError";
            msg = "out of memory";
        }
    }
    if (j) {
        /* wipe the value in the parsed tree and in the body buffer */
        if (vs)
            OPENSSL_cleanse(vs, strlen(vs));
        cJSON_Delete(j);
    }
    OPENSSL_cleanse(ahg_buf_data(&q->body), ahg_buf_len(&q->body));
    if (v)
        respond_bundle(r, secret_find(st, q->name), v);
    else
        kv_error(r, status, code, msg, NULL);
}

static void
put_body(struct ahg_httpd_req *r, const char *p, size_t n)
{
    struct kv_req *q = ahg_httpd_req_ud(r);
    if (q->answered)
        return;
    if (ahg_buf_append(&q->body, p, n) != AHG_OK) {
        q->answered = true;
        kv_error(r, 413, "RequestTooLarge", "The request body is larger than 64 KiB.", NULL);
    }
}

static void
put_end(struct ahg_httpd_req *r)
{
    struct kv_req *q = ahg_httpd_req_ud(r);
    if (!q->answered)
        put_done(q, r);
}

static void
put_finish(struct ahg_httpd_req *r, bool completed)
{
    (void)completed;
    struct kv_req *q = ahg_httpd_req_ud(r);
    if (ahg_buf_data(&q->body))
        OPENSSL_cleanse(ahg_buf_data(&q->body), ahg_buf_len(&q->body));
    ahg_buf_free(&q->body);
    free(q);
}

static const struct ahg_httpd_req_cbs put_cbs = {
    .on_body = put_body,
    .on_body_end = put_end,
    .on_finish = put_finish,
};

static bool
api_version_ok(const char *v)
{
    static const char *const ok[] = {"7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-07-01"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (strcmp(v, ok[i]) == 0)
            return true;
    return false;
}

/* Authorization: Bearer <emulator JWT for the vault>; false after answering 401. */
static bool
authorized(struct emu *e, struct ahg_httpd_req *r)
{
    char chal[256];
    (void)snprintf(chal, sizeof(chal),
                   "Bearer authorization=\"https://login.microsoftonline.com/%s\", "
                   "resource=\"" KV_AUDIENCE "\"",
                   e->identity_tenant);
    const char *a = ahg_http_head_get(ahg_httpd_req_head(r), "Authorization", NULL);
    if (!a || strncasecmp(a, "Bearer ", 7) != 0) {
        kv_error(r, 401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.",
                 chal);
        return false;
    }
    const char *tok = a + 7;
    while (*tok == ' ')
        tok++;
    int rc = emu_identity_verify(e, tok, KV_AUDIENCE, NULL, NULL);
    if (rc == AHG_OK)
        return true;
    /* texts: best knowledge of Key Vault's AKV100xx messages */
    const char *msg = rc == AHG_EEXPIRED     ? "AKV10013: Token has expired."
                      : rc == AHG_EFORBIDDEN ? "AKV10022: Invalid audience. Expected "
                                               "https://vault.azure.net."
                                             : "AKV10032: Invalid issuer or signature.";
    kv_error(r, 401, "Unauthorized", msg, chal);
    return false;
}

bool
emu_kv_handle(struct emu *e, struct ahg_httpd_req *r)
{
    const char *path = ahg_httpd_req_path(r);
    if (strncasecmp(path, "/secrets", 8) != 0 || (path[8] != '\0' && path[8] != '/'))
        return false;
    struct kv_state *st = e->keyvault;
    const struct ahg_http_head *h = ahg_httpd_req_head(r);
    if (!st) {
        kv_error(r, 503, "ServiceUnavailable", "The vault is not initialised.", NULL);
        return true;
    }
    if (!authorized(e, r))
        return true;
    char ver[32];
    if (ahg_url_query_get(ahg_httpd_req_query(r), "api-version", ver, sizeof(ver), false) !=
            AHG_OK ||
        !ver[0]) {
        kv_error(r, 400, "BadParameter", "The request URI must contain the api-version parameter.",
                 NULL);
        return true;
    }
    if (!api_version_ok(ver)) {
        char msg[160];
        (void)snprintf(msg, sizeof(msg),
                       "The specified version (%s) is not recognized. Consider using the latest "
                       "supported version (7.6).",
                       ver);
        kv_error(r, 400, "BadParameter", msg, NULL);
        return true;
    }

    /* /secrets[/] | /secrets/{name}[/] | /secrets/{name}/{version}[/] */
    const char *rest = path + 8;
    while (*rest == '/')
        rest++;
    char name[KV_NAME_MAX + 2] = "", version[64] = "";
    const char *slash = strchr(rest, '/');
    size_t nl = slash ? (size_t)(slash - rest) : strlen(rest);
    const char *vp = slash ? slash + 1 : "";
    size_t vl = strlen(vp);
    if (vl && vp[vl - 1] == '/')
        vl--;
    if (nl > KV_NAME_MAX || vl >= sizeof(version) || memchr(vp, '/', vl)) {
        kv_error(r, 404, "NotFound", "The requested resource does not exist.", NULL);
        return true;
    }
    memcpy(name, rest, nl);
    name[nl] = '\0';
    memcpy(version, vp, vl);
    version[vl] = '\0';
    bool get = strcmp(h->method, "GET") == 0, put = strcmp(h->method, "PUT") == 0;

    if (!name[0]) {
        if (get)
            respond_list(r, st);
        else
            kv_error(r, 405, "MethodNotAllowed",
                     "The requested resource does not support the HTTP method used.", NULL);
        return true;
    }
    if (!name_valid(name)) {
        char msg[KV_NAME_MAX + 80];
        (void)snprintf(msg, sizeof(msg), "The request URI contains an invalid name: %s", name);
        kv_error(r, 400, "BadParameter", msg, NULL);
        return true;
    }
    if (get) {
        struct kv_secret *s = secret_find(st, name);
        struct kv_version *v = s ? s->versions : NULL;
        if (version[0])
            while (v && strcasecmp(v->id, version) != 0)
                v = v->next;
        if (!v)
            not_found(r, name, version[0] ? version : NULL);
        else
            respond_bundle(r, s, v);
        return true;
    }
    if (put && !version[0]) {
        if (h->framing == AHG_HTTP_BODY_LENGTH && h->content_length > KV_BODY_MAX) {
            kv_error(r, 413, "RequestTooLarge", "The request body is larger than 64 KiB.", NULL);
            return true;
        }
        struct kv_req *q = calloc(1, sizeof(*q));
        if (!q) {
            kv_error(r, 503, "ServiceUnavailable", "out of memory", NULL);
            return true;
        }
        q->e = e;
        memcpy(q->name, name, strlen(name) + 1); /* name_valid: at most 127 chars */
        ahg_buf_init(&q->body, KV_BODY_MAX);
        ahg_httpd_req_set_cbs(r, &put_cbs, q);
        return true; /* answered at the end of the body */
    }
    kv_error(r, 405, "MethodNotAllowed",
             "The requested resource does not support the HTTP method used.", NULL);
    return true;
}
