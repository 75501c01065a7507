/*
 * identity.c - the managed-identity token endpoint (hc-protocol.md section 9) and the
 * emulator's own JWTs (HS256, signed with e->jwt_secret).
 *
 *   App Service  GET /msi/token?resource=R&api-version=2019-08-01   X-IDENTITY-HEADER: <secret>
 *   legacy MSI   GET /msi/token?resource=R&api-version=2017-09-01   secret: <secret>
 *   IMDS         GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=R
 *                                                                    Metadata: true
 *   workload     POST /{tenant}/oauth2/v2.0/token  (form: grant_type=client_credentials,
 *                client_id, client_assertion_type=...jwt-bearer, client_assertion, scope)
 *
 * Supported resources: https://relay.azure.net, https://management.azure.com (and the
 * https://management.core.windows.net alias), https://vault.azure.net, each with or without a
 * trailing '/' and also in scope form (".../.default").
 *
 * Threading: loop thread only. Tokens and the identity header are secrets: never logged.
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

#define JWT_MAX       8192u
#define RESOURCE_MAX  512u
#define NBF_SKEW_S    300
#define AUD_RELAY     "https://relay.azure.net"
#define AUD_ARM       "https://management.azure.com"
#define AUD_ARM_CLASS "https://management.core.windows.net"
#define AUD_VAULT     "https://vault.azure.net"

/* ---- helpers ---- */

/* Length of s without one trailing '/'. */
static size_t
len_noslash(const char *s)
{
    size_t n = strlen(s);
    return n && s[n - 1] == '/' ? n - 1 : n;
}

static bool
same_resource(const char *a, const char *b)
{
    size_t la = len_noslash(a), lb = len_noslash(b);
    return la == lb && strncasecmp(a, b, la) == 0;
}

/* Index of the known resource a token audience / resource parameter names, or -1.
 * 0 relay, 1 and 2 ARM (two names of one audience), 3 vault. */
static int
known_resource(const char *res)
{
    static const char *const known[] = {AUD_RELAY, AUD_ARM, AUD_ARM_CLASS, AUD_VAULT};
    for (int i = 0; i < (int)(sizeof(known) / sizeof(known[0])); i++)
        if (same_resource(res, known[i]))
            return i;
    return -1;
}

/* Turns a resource or scope parameter into the audience to issue (".../.default" removed).
 * Returns false for resources the emulator does not issue tokens for. */
static bool
resource_to_aud(const char *in, char *out, size_t outsz)
{
    size_t n = strlen(in);
    static const char dflt[] = "/.default";
    if (n >= sizeof(dflt) - 1 && strcasecmp(in + n - (sizeof(dflt) - 1), dflt) == 0)
        n -= sizeof(dflt) - 1;
    if (n == 0 || n >= outsz)
        return false;
    memcpy(out, in, n);
    out[n] = '\0';
    return known_resource(out) >= 0;
}

/* audience check: equal up to a trailing '/', and ARM's two names are one audience. */
static bool
aud_matches(const char *aud, const char *want)
{
    int ka = known_resource(aud), kw = known_resource(want);
    if (ka >= 0 && kw >= 0)
        return ka == kw || ((ka == 1 || ka == 2) && (kw == 1 || kw == 2));
    return same_resource(aud, want);
}

static void
uuid_from(const struct emu *e, const char *label, char out[40])
{
    unsigned char h[32];
    (void)ahg_hmac_sha256(e->jwt_secret, sizeof(e->jwt_secret), label, strlen(label), h);
    h[6] = (unsigned char)((h[6] & 0x0f) | 0x40);
    h[8] = (unsigned char)((h[8] & 0x3f) | 0x80);
    (void)snprintf(out, 40, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                   h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11], h[12],
                   h[13], h[14], h[15]);
}

static unsigned
rights_of_role(const char *role)
{
    if (!strcasecmp(role, "Owner") || !strcasecmp(role, "Azure Relay Owner"))
        return EMU_RIGHT_LISTEN | EMU_RIGHT_SEND | EMU_RIGHT_MANAGE;
    if (!strcasecmp(role, "Listener") || !strcasecmp(role, "Azure Relay Listener"))
        return EMU_RIGHT_LISTEN;
    if (!strcasecmp(role, "Sender") || !strcasecmp(role, "Azure Relay Sender"))
        return EMU_RIGHT_SEND;
    return 0;
}

static const char *
role_of_rights(unsigned rights)
{
    if (rights & EMU_RIGHT_MANAGE)
        return "Owner";
    if (rights == EMU_RIGHT_LISTEN)
        return "Listener";
    if (rights == EMU_RIGHT_SEND)
        return "Sender";
    return "Owner";
}

/* ---- init ---- */

int
emu_identity_init(struct emu *e)
{
    if (!e)
        return AHG_EINVAL;
    const struct ahg_config *cfg = e->cfg;
    const char *secret = cfg ? ahg_config_str(cfg, "emulator.identity.jwt_secret") : NULL;
    if (secret && *secret) {
        ahg_sha256(secret, strlen(secret), e->jwt_secret);
    } else if (ahg_rand_bytes(e->jwt_secret, sizeof(e->jwt_secret)) != AHG_OK) {
        return AHG_EIO;
    }
    const char *hdr = cfg ? ahg_config_str(cfg, "emulator.identity.header") : NULL;
    if (hdr && *hdr) {
        if (strlen(hdr) >= sizeof(e->identity_header)) {
            AHG_LOG_ERROR("emulator.identity.header: longer than %zu characters",
                          sizeof(e->identity_header) - 1);
            return AHG_ECONFIG;
        }
        memcpy(e->identity_header, hdr, strlen(hdr) + 1);
    } else if (ahg_rand_hex(e->identity_header, 16) != AHG_OK) {
        return AHG_EIO;
    }
    const char *role = cfg ? ahg_config_str(cfg, "emulator.identity.relay_role") : NULL;
    e->identity_relay_rights = rights_of_role(role ? role : "owner");
    if (!e->identity_relay_rights) {
        AHG_LOG_ERROR("emulator.identity.relay_role: unknown role '%s'", role);
        return AHG_ECONFIG;
    }
    if (!e->token_lifetime_s)
        e->token_lifetime_s = 3600;
    uuid_from(e, "tenant", e->identity_tenant);
    uuid_from(e, "client", e->identity_client_id);
    uuid_from(e, "object", e->identity_object_id);
    return AHG_OK;
}

/* ---- JWT ---- */

/* base64url(json) into out; false when it does not fit. */
static bool
seg_encode(const char *json, char *out, size_t outsz)
{
    return ahg_base64url_encode(json, strlen(json), out, outsz) == AHG_OK;
}

char *
emu_identity_issue(struct emu *e, const char *resource, long long *exp)
{
    char aud[RESOURCE_MAX];
    if (!e || !resource || !resource_to_aud(resource, aud, sizeof(aud)))
        return NULL;
    long long now = (long long)time(NULL);
    long long ex = now + (long long)e->token_lifetime_s;
    char iss[128];
    (void)snprintf(iss, sizeof(iss), "https://sts.windows.net/%s/", e->identity_tenant);

    cJSON *c = cJSON_CreateObject();
    if (!c)
        return NULL;
    cJSON_AddStringToObject(c, "aud", aud);
    cJSON_AddStringToObject(c, "iss", iss);
    cJSON_AddNumberToObject(c, "iat", (double)now);
    cJSON_AddNumberToObject(c, "nbf", (double)now);
    cJSON_AddNumberToObject(c, "exp", (double)ex);
    cJSON_AddStringToObject(c, "aio", "emulator");
    cJSON_AddStringToObject(c, "appid", e->identity_client_id);
    cJSON_AddStringToObject(c, "appidacr", "2");
    cJSON_AddStringToObject(c, "idp", iss);
    cJSON_AddStringToObject(c, "idtyp", "app");
    cJSON_AddStringToObject(c, "oid", e->identity_object_id);
    if (same_resource(aud, AUD_RELAY)) {
        cJSON *roles = cJSON_AddArrayToObject(c, "roles");
        if (roles)
            cJSON_AddItemToArray(roles,
                                 cJSON_CreateString(role_of_rights(e->identity_relay_rights)));
    }
    cJSON_AddStringToObject(c, "sub", e->identity_object_id);
    cJSON_AddStringToObject(c, "tid", e->identity_tenant);
    cJSON_AddStringToObject(c, "ver", "1.0");
    char *payload = cJSON_PrintUnformatted(c);
    cJSON_Delete(c);
    if (!payload)
        return NULL;

    size_t cap = 64 + (strlen(payload) * 4) / 3 + 4 + 64;
    char *tok = malloc(cap);
    if (!tok) {
        free(payload);
        return NULL;
    }
    bool ok = seg_encode("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", tok, cap);
    size_t n = ok ? strlen(tok) : 0;
    if (ok) {
        tok[n++] = '.';
        ok = seg_encode(payload, tok + n, cap - n);
    }
    free(payload);
    unsigned char mac[32];
    if (ok) {
        n = strlen(tok);
        ok = ahg_hmac_sha256(e->jwt_secret, sizeof(e->jwt_secret), tok, n, mac) == AHG_OK;
    }
    if (ok && n + 1 < cap) {
        tok[n++] = '.';
        ok = ahg_base64url_encode(mac, sizeof(mac), tok + n, cap - n) == AHG_OK;
    } else {
        ok = false;
    }
    if (!ok) {
        free(tok);
        return NULL;
    }
    if (exp)
        *exp = ex;
    e->m_tokens_issued++;
    return tok;
}

/* Decodes base64url segment [p, p+n) and parses it as a JSON object. */
static cJSON *
seg_json(const char *p, size_t n)
{
    unsigned char buf[JWT_MAX];
    size_t len = 0;
    if (n == 0 || ahg_base64url_decode(p, n, buf, sizeof(buf) - 1, &len) != AHG_OK)
        return NULL;
    buf[len] = '\0';
    if (memchr(buf, '\0', len))
        return NULL;
    cJSON *j = cJSON_ParseWithLength((const char *)buf, len);
    if (j && !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

static bool
num_claim(const cJSON *payload, const char *name, long long *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(payload, name);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9.2e18)
        return false;
    *out = (long long)v->valuedouble;
    return true;
}

/* The audience check of one aud claim (string or array of strings). */
static bool
aud_claim_matches(const cJSON *aud, const char *want)
{
    if (cJSON_IsString(aud))
        return aud_matches(aud->valuestring, want);
    if (cJSON_IsArray(aud)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, aud)
        {
            if (cJSON_IsString(it) && aud_matches(it->valuestring, want))
                return true;
        }
    }
    return false;
}

int
emu_identity_verify(struct emu *e, const char *jwt, const char *audience, unsigned *rights,
                    long long *exp)
{
    if (rights)
        *rights = 0;
    if (exp)
        *exp = 0;
    if (!e || !jwt)
        return AHG_EAUTH;
    size_t n = strlen(jwt);
    const char *d1 = memchr(jwt, '.', n);
    const char *d2 = d1 ? memchr(d1 + 1, '.', n - (size_t)(d1 + 1 - jwt)) : NULL;
    if (n > JWT_MAX || !d1 || !d2 || memchr(d2 + 1, '.', n - (size_t)(d2 + 1 - jwt)))
        return AHG_EAUTH;

    /* header: HS256 only ("none" and every other algorithm are refused) */
    cJSON *hdr = seg_json(jwt, (size_t)(d1 - jwt));
    const cJSON *alg = hdr ? cJSON_GetObjectItemCaseSensitive(hdr, "alg") : NULL;
    bool hs256 = alg && cJSON_IsString(alg) && strcmp(alg->valuestring, "HS256") == 0;
    cJSON_Delete(hdr);
    if (!hs256)
        return AHG_EAUTH;

    /* signature over "header.payload", compared in constant time */
    unsigned char sig[64], mac[32];
    size_t siglen = 0;
    const char *s = d2 + 1;
    if (ahg_base64url_decode(s, n - (size_t)(s - jwt), sig, sizeof(sig), &siglen) != AHG_OK ||
        ahg_hmac_sha256(e->jwt_secret, sizeof(e->jwt_secret), jwt, (size_t)(d2 - jwt), mac) !=
            AHG_OK ||
        !ahg_consttime_eq(sig, siglen, mac, sizeof(mac)))
        return AHG_EAUTH;

    cJSON *pl = seg_json(d1 + 1, (size_t)(d2 - d1 - 1));
    if (!pl)
        return AHG_EAUTH;
    long long ex = 0, nbf = 0, now = (long long)time(NULL);
    int rc = AHG_OK;
    bool early = num_claim(pl, "nbf", &nbf) && nbf > now + NBF_SKEW_S; /* not valid yet */
    if (!num_claim(pl, "exp", &ex) || early)
        rc = AHG_EAUTH;
    else if (now >= ex)
        rc = AHG_EEXPIRED;
    else if (audience && !aud_claim_matches(cJSON_GetObjectItemCaseSensitive(pl, "aud"), audience))
        rc = AHG_EFORBIDDEN;
    if (rc == AHG_OK && rights) {
        const cJSON *roles = cJSON_GetObjectItemCaseSensitive(pl, "roles"), *it;
        cJSON_ArrayForEach(it, roles)
        {
            if (cJSON_IsString(it))
                *rights |= rights_of_role(it->valuestring);
        }
    }
    if (exp)
        *exp = ex;
    cJSON_Delete(pl);
    return rc;
}

/* ---- the HTTP endpoint ---- */

static void
respond_json(struct ahg_httpd_req *r, int status, cJSON *body)
{
    char *txt = body ? cJSON_PrintUnformatted(body) : NULL;
    cJSON_Delete(body);
    static const char *const extra[] = {"Cache-Control", "no-store, no-cache", "Pragma", "no-cache",
                                        NULL};
    if (!txt) {
        ahg_httpd_respond_error(r, 500, "InternalError", "out of memory", true);
        return;
    }
    ahg_httpd_respond(r, status, "application/json; charset=utf-8", txt, strlen(txt), extra);
    OPENSSL_cleanse(txt, strlen(txt)); /* it may hold a token */
    free(txt);
}

/* App Service error body: {"statusCode":N,"message":"...","correlationId":"<uuid>"}. */
static void
appsvc_error(struct ahg_httpd_req *r, int status, const char *msg)
{
    char cid[37] = "";
    (void)ahg_rand_uuid(cid);
    cJSON *j = cJSON_CreateObject();
    if (j) {
        cJSON_AddNumberToObject(j, "statusCode", status);
        cJSON_AddStringToObject(j, "message", msg);
        cJSON_AddStringToObject(j, "correlationId", cid);
    }
    respond_json(r, status, j);
}

/* IMDS error body: {"error":"...","error_description":"..."}. */
static void
imds_error(struct ahg_httpd_req *r, int status, const char *code, const char *desc)
{
    cJSON *j = cJSON_CreateObject();
    if (j) {
        cJSON_AddStringToObject(j, "error", code);
        cJSON_AddStringToObject(j, "error_description", desc);
    }
    respond_json(r, status, j);
}

static bool
query(struct ahg_httpd_req *r, const char *key, char *out, size_t outsz)
{
    return ahg_url_query_get(ahg_httpd_req_query(r), key, out, outsz, true) == AHG_OK;
}

/* A user-assigned identity selector that is not ours: "identity not found". */
static bool
other_identity(struct emu *e, struct ahg_httpd_req *r)
{
    char v[128];
    if ((query(r, "client_id", v, sizeof(v)) || query(r, "clientid", v, sizeof(v))) &&
        strcasecmp(v, e->identity_client_id) != 0)
        return true;
    if ((query(r, "object_id", v, sizeof(v)) || query(r, "principal_id", v, sizeof(v))) &&
        strcasecmp(v, e->identity_object_id) != 0)
        return true;
    return false;
}

static bool
header_equals_secret(const struct ahg_http_head *h, const char *name, const char *secret,
                     bool *present)
{
    size_t len = 0;
    const char *v = ahg_http_head_get(h, name, &len);
    *present = v != NULL;
    return v && ahg_consttime_eq(v, len, secret, strlen(secret));
}

enum form { FORM_APPSVC, FORM_LEGACY, FORM_IMDS };

static void
token_response(struct emu *e, struct ahg_httpd_req *r, enum form form, const char *resource)
{
    char aud[RESOURCE_MAX];
    long long exp = 0;
    char *tok =
        resource_to_aud(resource, aud, sizeof(aud)) ? emu_identity_issue(e, resource, &exp) : NULL;
    if (!tok) {
        char msg[RESOURCE_MAX + 256];
        (void)snprintf(
            msg, sizeof(msg),
            "AADSTS500011: The resource principal named %.*s was not found in the tenant "
            "named %s. This can happen if the application has not been installed by the "
            "administrator of the tenant or consented to by any user in the tenant.",
            (int)RESOURCE_MAX, resource, e->identity_tenant);
        if (form == FORM_IMDS)
            imds_error(r, 400, "invalid_resource", msg);
        else
            appsvc_error(r, 400, msg);
        return;
    }
    long long now = (long long)time(NULL);
    char num[96];
    cJSON *j = cJSON_CreateObject();
    if (!j) {
        OPENSSL_cleanse(tok, strlen(tok));
        free(tok);
        respond_json(r, 500, NULL);
        return;
    }
    cJSON_AddStringToObject(j, "access_token", tok);
    OPENSSL_cleanse(tok, strlen(tok));
    free(tok);
    if (form == FORM_IMDS) {
        cJSON_AddStringToObject(j, "refresh_token", "");
        (void)snprintf(num, sizeof(num), "%lld", exp - now);
        cJSON_AddStringToObject(j, "expires_in", num);
    }
    if (form == FORM_LEGACY) {
        /* 2017-09-01: expires_on as a date string ("MM/dd/yyyy hh:mm:ss tt +00:00") */
        time_t t = (time_t)exp;
        struct tm tm;
        gmtime_r(&t, &tm);
        int h12 = tm.tm_hour % 12 ? tm.tm_hour % 12 : 12;
        (void)snprintf(num, sizeof(num), "%02d/%02d/%04d %02d:%02d:%02d %s +00:00", tm.tm_mon + 1,
                       tm.tm_mday, tm.tm_year + 1900, h12, tm.tm_min, tm.tm_sec,
                       tm.tm_hour < 12 ? "AM" : "PM");
    } else {
        (void)snprintf(num, sizeof(num), "%lld", exp);
    }
    cJSON_AddStringToObject(j, "expires_on", num);
    if (form != FORM_LEGACY) {
        (void)snprintf(num, sizeof(num), "%lld", now);
        cJSON_AddStringToObject(j, "not_before", num);
    }
    cJSON_AddStringToObject(j, "resource", aud);
    cJSON_AddStringToObject(j, "token_type", "Bearer");
    if (form != FORM_LEGACY)
        cJSON_AddStringToObject(j, "client_id", e->identity_client_id);
    respond_json(r, 200, j);
}

static void
handle_appsvc(struct emu *e, struct ahg_httpd_req *r)
{
    const struct ahg_http_head *h = ahg_httpd_req_head(r);
    char ver[32], resource[RESOURCE_MAX];
    if (strcmp(h->method, "GET") != 0) {
        appsvc_error(r, 405, "The requested resource does not support the HTTP method used.");
        return;
    }
    if (!query(r, "api-version", ver, sizeof(ver))) {
        appsvc_error(r, 400, "The api-version parameter is required.");
        return;
    }
    enum form form;
    if (strcmp(ver, "2019-08-01") == 0) {
        form = FORM_APPSVC;
    } else if (strcmp(ver, "2017-09-01") == 0) {
        form = FORM_LEGACY;
    } else {
        appsvc_error(r, 400,
                     "The api-version is not supported. Supported: 2019-08-01, 2017-09-01.");
        return;
    }
    bool present = false;
    const char *hname = form == FORM_APPSVC ? "X-IDENTITY-HEADER" : "secret";
    if (!header_equals_secret(h, hname, e->identity_header, &present)) {
        /* text: best knowledge (the endpoint's exact wording is not documented) */
        if (present)
            appsvc_error(r, 401,
                         form == FORM_APPSVC ? "The X-IDENTITY-HEADER is not valid."
                                             : "The secret header is not valid.");
        else
            appsvc_error(r, 400,
                         form == FORM_APPSVC ? "The X-IDENTITY-HEADER header is missing."
                                             : "The secret header is missing.");
        return;
    }
    if (!query(r, "resource", resource, sizeof(resource)) || !resource[0]) {
        appsvc_error(r, 400, "The resource parameter is required.");
        return;
    }
    if (other_identity(e, r)) {
        appsvc_error(r, 400, "Unable to load requested managed identity.");
        return;
    }
    token_response(e, r, form, resource);
}

/* "YYYY-MM-DD", not before 2018-02-01 (the first version with the token endpoint). */
static bool
imds_version_ok(const char *v)
{
    if (strlen(v) != 10 || v[4] != '-' || v[7] != '-')
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (v[i] < '0' || v[i] > '9'))
            return false;
    int mo = (v[5] - '0') * 10 + (v[6] - '0'), d = (v[8] - '0') * 10 + (v[9] - '0');
    return mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && strcmp(v, "2018-02-01") >= 0;
}

static void
handle_imds(struct emu *e, struct ahg_httpd_req *r)
{
    const struct ahg_http_head *h = ahg_httpd_req_head(r);
    char ver[32], resource[RESOURCE_MAX];
    const char *md = ahg_http_head_get(h, "Metadata", NULL);
    if (!md || strcasecmp(md, "true") != 0) {
        imds_error(r, 400, "bad_request_102", "Required metadata header not specified");
        return;
    }
    if (strcmp(h->method, "GET") != 0) {
        imds_error(r, 405, "invalid_request", "The HTTP method is not allowed");
        return;
    }
    if (!query(r, "api-version", ver, sizeof(ver)) || !ver[0]) {
        imds_error(r, 400, "invalid_request", "Required query variable 'api-version' is missing");
        return;
    }
    if (!imds_version_ok(ver)) {
        imds_error(r, 400, "invalid_request", "Invalid or unsupported api-version");
        return;
    }
    if (!query(r, "resource", resource, sizeof(resource)) || !resource[0]) {
        imds_error(r, 400, "invalid_request", "Required query variable 'resource' is missing");
        return;
    }
    if (other_identity(e, r)) {
        imds_error(r, 400, "invalid_request", "Identity not found");
        return;
    }
    token_response(e, r, FORM_IMDS, resource);
}

static bool
path_is(const char *path, const char *want)
{
    size_t n = strlen(want);
    return strncasecmp(path, want, n) == 0 && (path[n] == '\0' || (path[n] == '/' && !path[n + 1]));
}

/* ---- AKS workload identity: the Entra ID client-credentials exchange (§9.3) ---- */

/* Request body cap of the token exchange (the federated token is a few KiB). */
#define WI_BODY_MAX       ((size_t)32 * 1024)
#define WI_ASSERTION_TYPE "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
/* Audience of a federated (Kubernetes service account) token for Entra ID. */
#define WI_FED_AUDIENCE "api://AzureADTokenExchange"

struct wi_req {
    struct emu *e;
    struct ahg_buf body;
    bool answered;
    char tenant[64];
};

/* Entra ID v2 error body. */
static void
wi_error(struct ahg_httpd_req *r, int status, const char *code, int aadsts, const char *desc)
{
    char cid[37] = "", tid[37] = "", ts[32] = "", text[640];
    (void)ahg_rand_uuid(cid);
    (void)ahg_rand_uuid(tid);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    (void)strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%SZ", &tm);
    (void)snprintf(text, sizeof(text), "AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s",
                   aadsts, desc, tid, cid, ts);
    cJSON *j = cJSON_CreateObject();
    if (j) {
        cJSON_AddStringToObject(j, "error", code);
        cJSON_AddStringToObject(j, "error_description", text);
        cJSON *codes = cJSON_AddArrayToObject(j, "error_codes");
        if (codes)
            cJSON_AddItemToArray(codes, cJSON_CreateNumber(aadsts));
        cJSON_AddStringToObject(j, "timestamp", ts);
        cJSON_AddStringToObject(j, "trace_id", tid);
        cJSON_AddStringToObject(j, "correlation_id", cid);
    }
    respond_json(r, status, j);
}

static bool
form_get(const char *form, const char *key, char *out, size_t outsz)
{
    return ahg_url_query_get(form, key, out, outsz, true) == AHG_OK;
}

/* A federated token the emulator accepts: a JWT (three base64url segments, JSON header and
 * payload), not expired, audience api://AzureADTokenExchange when it names one. The
 * signature is not checked: the emulator has no OIDC issuer to trust. */
static bool
assertion_ok(const char *jwt, const char **why)
{
    size_t n = strlen(jwt);
    const char *d1 = memchr(jwt, '.', n);
    const char *d2 = d1 ? memchr(d1 + 1, '.', n - (size_t)(d1 + 1 - jwt)) : NULL;
    *why = "Client assertion failed signature validation or is not a JWT.";
    if (!d1 || !d2 || d2 + 1 >= jwt + n || memchr(d2 + 1, '.', n - (size_t)(d2 + 1 - jwt)))
        return false;
    cJSON *hdr = seg_json(jwt, (size_t)(d1 - jwt));
    cJSON *pl = hdr ? seg_json(d1 + 1, (size_t)(d2 - d1 - 1)) : NULL;
    bool ok = pl != NULL;
    long long ex = 0;
    if (ok && num_claim(pl, "exp", &ex) && (long long)time(NULL) >= ex) {
        *why = "Client assertion is not within its valid time range.";
        ok = false;
    }
    const cJSON *aud = pl ? cJSON_GetObjectItemCaseSensitive(pl, "aud") : NULL;
    if (ok && aud && !aud_claim_matches(aud, WI_FED_AUDIENCE)) {
        *why = "Client assertion audience claim does not match Realm issuer "
               "(expected api://AzureADTokenExchange).";
        ok = false;
    }
    cJSON_Delete(hdr);
    cJSON_Delete(pl);
    return ok;
}

static void
wi_exchange(struct wi_req *q, struct ahg_httpd_req *r)
{
    struct emu *e = q->e;
    const char *form = ahg_buf_cstr(&q->body);
    char v[128], scope[RESOURCE_MAX], aud[RESOURCE_MAX], msg[RESOURCE_MAX + 200];
    char *assertion = malloc(JWT_MAX + 1);
    if (!assertion || !form) {
        free(assertion);
        respond_json(r, 500, NULL);
        return;
    }
    if (strcasecmp(q->tenant, e->identity_tenant) != 0) {
        (void)snprintf(msg, sizeof(msg), "Tenant '%s' not found.", q->tenant);
        wi_error(r, 400, "invalid_request", 90002, msg);
    } else if (!form_get(form, "grant_type", v, sizeof(v)) ||
               strcmp(v, "client_credentials") != 0) {
        wi_error(r, 400, "unsupported_grant_type", 70003,
                 "The app requested an unsupported grant type (expected client_credentials).");
    } else if (!form_get(form, "client_id", v, sizeof(v)) || !v[0]) {
        wi_error(r, 400, "invalid_request", 900144,
                 "The request body must contain the following parameter: 'client_id'.");
    } else if (strcasecmp(v, e->identity_client_id) != 0) {
        (void)snprintf(msg, sizeof(msg),
                       "Application with identifier '%.64s' was not found in the directory.", v);
        wi_error(r, 400, "unauthorized_client", 700016, msg);
    } else if (!form_get(form, "client_assertion_type", v, sizeof(v)) ||
               strcmp(v, WI_ASSERTION_TYPE) != 0) {
        wi_error(r, 400, "invalid_request", 900144,
                 "The request body must contain client_assertion_type " WI_ASSERTION_TYPE ".");
    } else if (!form_get(form, "client_assertion", assertion, JWT_MAX + 1) || !assertion[0]) {
        wi_error(r, 400, "invalid_request", 900144,
                 "The request body must contain the following parameter: 'client_assertion'.");
    } else if (!form_get(form, "scope", scope, sizeof(scope)) || !scope[0]) {
        wi_error(r, 400, "invalid_request", 900144,
                 "The request body must contain the following parameter: 'scope'.");
    } else {
        const char *why = NULL;
        size_t sl = strlen(scope);
        bool dflt = sl > 9 && strcasecmp(scope + sl - 9, "/.default") == 0;
        if (!assertion_ok(assertion, &why)) {
            wi_error(r, 401, "invalid_client", 700024, why);
        } else if (!dflt || !resource_to_aud(scope, aud, sizeof(aud))) {
            (void)snprintf(msg, sizeof(msg),
                           "The provided value for the input parameter 'scope' is not valid. The "
                           "scope %.*s is not valid.",
                           (int)RESOURCE_MAX, scope);
            wi_error(r, 400, "invalid_scope", 70011, msg);
        } else {
            long long exp = 0;
            char *tok = emu_identity_issue(e, scope, &exp);
            cJSON *j = tok ? cJSON_CreateObject() : NULL;
            if (j) {
                long long in = exp - (long long)time(NULL);
                cJSON_AddStringToObject(j, "token_type", "Bearer");
                cJSON_AddNumberToObject(j, "expires_in", (double)in);
                cJSON_AddNumberToObject(j, "ext_expires_in", (double)in);
                cJSON_AddStringToObject(j, "access_token", tok);
            }
            if (tok) {
                OPENSSL_cleanse(tok, strlen(tok));
                free(tok);
            }
            respond_json(r, j ? 200 : 500, j);
        }
    }
    OPENSSL_cleanse(assertion, JWT_MAX + 1);
    free(assertion);
}

static void
wi_body(struct ahg_httpd_req *r, const char *p, size_t n)
{
    struct wi_req *q = ahg_httpd_req_ud(r);
    if (q->answered)
        return;
    if (ahg_buf_append(&q->body, p, n) != AHG_OK) {
        q->answered = true;
        wi_error(r, 413, "invalid_request", 90020, "The request body is larger than 32 KiB.");
    }
}

static void
wi_body_end(struct ahg_httpd_req *r)
{
    struct wi_req *q = ahg_httpd_req_ud(r);
    if (q->answered)
        return;
    q->answered = true;
    wi_exchange(q, r);
}

static void
wi_finish(struct ahg_httpd_req *r, bool completed)
{
    (void)completed;
    struct wi_req *q = ahg_httpd_req_ud(r);
    if (ahg_buf_data(&q->body))
        OPENSSL_cleanse(ahg_buf_data(&q->body), ahg_buf_len(&q->body));
    ahg_buf_free(&q->body);
    free(q);
}

static const struct ahg_httpd_req_cbs wi_cbs = {
    .on_body = wi_body,
    .on_body_end = wi_body_end,
    .on_finish = wi_finish,
};

/* "/{tenant}/oauth2/v2.0/token": copies the tenant; false for other paths. */
static bool
wi_path(const char *path, char *tenant, size_t tsz)
{
    static const char tail[] = "/oauth2/v2.0/token";
    if (path[0] != '/')
        return false;
    const char *slash = strchr(path + 1, '/');
    size_t tl = slash ? (size_t)(slash - path - 1) : 0;
    if (!slash || tl == 0 || tl >= tsz || strncasecmp(slash, tail, sizeof(tail) - 1) != 0)
        return false;
    const char *end = slash + sizeof(tail) - 1;
    if (*end != '\0' && !(end[0] == '/' && end[1] == '\0'))
        return false;
    memcpy(tenant, path + 1, tl);
    tenant[tl] = '\0';
    return true;
}

static void
handle_workload(struct emu *e, struct ahg_httpd_req *r, const char *tenant)
{
    const struct ahg_http_head *h = ahg_httpd_req_head(r);
    if (strcmp(h->method, "POST") != 0) {
        wi_error(r, 405, "invalid_request", 900561, "The endpoint only accepts POST requests.");
        return;
    }
    const char *ct = ahg_http_head_get(h, "Content-Type", NULL);
    if (!ct || strncasecmp(ct, "application/x-www-form-urlencoded", 33) != 0) {
        wi_error(r, 400, "invalid_request", 900144,
                 "The request body must be application/x-www-form-urlencoded.");
        return;
    }
    if (h->framing == AHG_HTTP_BODY_LENGTH && h->content_length > WI_BODY_MAX) {
        wi_error(r, 413, "invalid_request", 90020, "The request body is larger than 32 KiB.");
        return;
    }
    struct wi_req *q = calloc(1, sizeof(*q));
    if (!q) {
        ahg_httpd_respond_error(r, 503, "ServiceUnavailable", "out of memory", true);
        return;
    }
    q->e = e;
    (void)snprintf(q->tenant, sizeof(q->tenant), "%s", tenant);
    ahg_buf_init(&q->body, WI_BODY_MAX);
    ahg_httpd_req_set_cbs(r, &wi_cbs, q);
}

bool
emu_identity_handle(struct emu *e, struct ahg_httpd_req *r)
{
    const char *path = ahg_httpd_req_path(r);
    char tenant[64];
    if (path_is(path, "/msi/token")) {
        handle_appsvc(e, r);
        return true;
    }
    if (path_is(path, "/metadata/identity/oauth2/token")) {
        handle_imds(e, r);
        return true;
    }
    if (wi_path(path, tenant, sizeof(tenant))) {
        handle_workload(e, r, tenant);
        return true;
    }
    return false;
}
