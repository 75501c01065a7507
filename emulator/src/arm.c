/*
 * arm.c - the Microsoft.Relay ARM subset (hc-protocol.md section 8) on the management port.
 *
 * Prefix P = /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Relay:
 *   GET  /subscriptions/{sub}/providers/Microsoft.Relay/namespaces       namespaces (list)
 *   POST /subscriptions/{sub}/providers/Microsoft.Relay/checkNameAvailability
 *   GET  P/namespaces                                                      namespaces (list)
 *   GET|PUT|PATCH P/namespaces/{ns}                                        the namespace
 *   GET  P/namespaces/{ns}/authorizationRules                              rules (list)
 *   PUT|GET|DELETE P/namespaces/{ns}/authorizationRules/{rule}
 *   POST P/namespaces/{ns}/authorizationRules/{rule}/listKeys|regenerateKeys
 *   GET  P/namespaces/{ns}/hybridConnections                               HCs (list, paged)
 *   PUT|GET|DELETE P/namespaces/{ns}/hybridConnections/{hc}
 *   GET  P/namespaces/{ns}/hybridConnections/{hc}/authorizationRules
 *   PUT|GET|DELETE P/namespaces/{ns}/hybridConnections/{hc}/authorizationRules/{rule}
 *   POST P/namespaces/{ns}/hybridConnections/{hc}/authorizationRules/{rule}/listKeys|...
 * Path segments are matched case-insensitively and percent-decoded one by one (an HC name
 * "a/b" arrives as "a%2Fb").
 *
 * Every call: Bearer token from the identity endpoint for https://management.azure.com (401
 * with ARM's error JSON and WWW-Authenticate otherwise), api-version (400
 * MissingApiVersionParameter / NoRegisteredProviderFound), then the injected fault if any,
 * then the operation. Answers are delayed by e->lat.arm_ms (emu_latency_defer); a client that
 * leaves meanwhile cancels the delayed answer through on_finish.
 *
 * Threading: loop thread only. Keys are secrets: never logged.
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

#define ARM_BODY_MAX ((size_t)64 * 1024)
#define ARM_MAX_SEGS 16
#define ARM_SEG_MAX  512
#define ARM_PAGE     100u
#define ARM_AUDIENCE "https://management.azure.com"
#define ARM_PROVIDER "Microsoft.Relay"
#define WWW_AUTH_FMT                                                                               \
    "Bearer authorization_uri=\"https://login.windows.net/\", error=\"invalid_token\", "           \
    "error_description=\"%s\""

enum arm_op {
    OP_NONE = 0,
    OP_NS_LIST,
    OP_NS_CHECKNAME,
    OP_NS,
    OP_RULE_LIST,
    OP_RULE,
    OP_RULE_LISTKEYS,
    OP_RULE_REGEN,
    OP_HC_LIST,
    OP_HC,
};

struct arm_req {
    struct emu *e;
    struct ahg_httpd_req *r; /* NULL once the exchange is over */
    struct ahg_buf body;
    char method[8];
    enum arm_op op;
    bool hc_level; /* rule operations on an HC's rules */
    char hc[EMU_HC_NAME_MAX];
    char rule[ARM_SEG_MAX];
    char api_version[16];

    bool want_body; /* the operation runs at the end of the body */
    bool answered;  /* the response below is final */
    bool deferred;  /* a latency timer holds the response */
    bool in_send;

    /* the prepared response */
    int status;
    char *resp; /* JSON text, may be NULL (empty body) */
    char www_auth[640];
    bool retry_after;
    char req_id[37];
    char corr_id[80];
    char client_req_id[80];
};

/* ---- small helpers ---- */

/* The string of a JSON string value, else NULL. */
static char *
jstr(const cJSON *v)
{
    return v && cJSON_IsString(v) ? v->valuestring : NULL;
}

static void
iso_time(time_t t, uint32_t frac, char out[40])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    char s[24];
    (void)strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
    (void)snprintf(out, 40, "%s.%07uZ", s, (unsigned)(frac % 10000000u));
}

static void
ns_id(const struct emu *e, char *out, size_t outsz)
{
    (void)snprintf(out, outsz,
                   "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Relay/namespaces/%s",
                   e->ns.subscription, e->ns.resource_group, e->ns.name);
}

/* Printable-token check for echoed request ids. */
static bool
safe_id(const char *v, size_t max)
{
    size_t n = v ? strlen(v) : 0;
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':'))
            return false;
    }
    return true;
}

/* ---- JSON shapes (hc-protocol.md 8.2-8.5) ---- */

static cJSON *
ns_json(const struct emu *e)
{
    char id[512], ts[40], ep[300], metric[200];
    ns_id(e, id, sizeof(id));
    iso_time(e->ns.created, e->ns.created_frac, ts);
    (void)snprintf(ep, sizeof(ep), "https://%s:443/", e->ns.host);
    (void)snprintf(metric, sizeof(metric), "%s:%s", e->ns.subscription, e->ns.name);
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    cJSON *sku = cJSON_AddObjectToObject(j, "sku");
    if (sku) {
        cJSON_AddStringToObject(sku, "name", "Standard");
        cJSON_AddStringToObject(sku, "tier", "Standard");
    }
    cJSON_AddStringToObject(j, "id", id);
    cJSON_AddStringToObject(j, "name", e->ns.name);
    cJSON_AddStringToObject(j, "type", "Microsoft.Relay/Namespaces");
    cJSON_AddStringToObject(j, "location", e->ns.location);
    cJSON_AddObjectToObject(j, "tags");
    cJSON *p = cJSON_AddObjectToObject(j, "properties");
    if (p) {
        cJSON_AddStringToObject(p, "provisioningState", "Succeeded");
        cJSON_AddStringToObject(p, "status", "Active");
        cJSON_AddStringToObject(p, "createdAt", ts);
        cJSON_AddStringToObject(p, "updatedAt", ts);
        cJSON_AddStringToObject(p, "serviceBusEndpoint", ep);
        cJSON_AddStringToObject(p, "metricId", metric);
        cJSON_AddArrayToObject(p, "privateEndpointConnections");
        cJSON_AddStringToObject(p, "publicNetworkAccess", "Enabled");
    }
    return j;
}

static cJSON *
hc_json(const struct emu *e, const struct emu_hc *hc)
{
    char id[1024], c[40], u[40];
    ns_id(e, id, sizeof(id));
    size_t n = strlen(id);
    (void)snprintf(id + n, sizeof(id) - n, "/HybridConnections/%s", hc->name);
    iso_time(hc->created, hc->created_frac, c);
    iso_time(hc->updated, hc->updated_frac, u);
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    cJSON_AddStringToObject(j, "id", id);
    cJSON_AddStringToObject(j, "name", hc->name);
    cJSON_AddStringToObject(j, "type", "Microsoft.Relay/Namespaces/HybridConnections");
    cJSON_AddStringToObject(j, "location", e->ns.location);
    cJSON *p = cJSON_AddObjectToObject(j, "properties");
    if (p) {
        cJSON_AddStringToObject(p, "createdAt", c);
        cJSON_AddStringToObject(p, "updatedAt", u);
        cJSON_AddNumberToObject(p, "listenerCount", (double)emu_relay_listener_count(hc));
        cJSON_AddBoolToObject(p, "requiresClientAuthorization", hc->requires_client_auth);
        if (hc->user_metadata)
            cJSON_AddStringToObject(p, "userMetadata", hc->user_metadata);
    }
    return j;
}

static cJSON *
rule_json(const struct emu *e, const struct emu_hc *hc, const struct emu_rule *r)
{
    char id[1200];
    ns_id(e, id, sizeof(id));
    size_t n = strlen(id);
    if (hc)
        (void)snprintf(id + n, sizeof(id) - n, "/HybridConnections/%s/AuthorizationRules/%s",
                       hc->name, r->name);
    else
        (void)snprintf(id + n, sizeof(id) - n, "/AuthorizationRules/%s", r->name);
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    cJSON_AddStringToObject(j, "id", id);
    cJSON_AddStringToObject(j, "name", r->name);
    cJSON_AddStringToObject(j, "type",
                            hc ? "Microsoft.Relay/Namespaces/Hybridconnections/AuthorizationRules"
                               : "Microsoft.Relay/Namespaces/AuthorizationRules");
    cJSON_AddStringToObject(j, "location", e->ns.location);
    cJSON *p = cJSON_AddObjectToObject(j, "properties");
    cJSON *rights = p ? cJSON_AddArrayToObject(p, "rights") : NULL;
    if (rights) {
        if (r->rights & EMU_RIGHT_LISTEN)
            cJSON_AddItemToArray(rights, cJSON_CreateString("Listen"));
        if (r->rights & EMU_RIGHT_MANAGE)
            cJSON_AddItemToArray(rights, cJSON_CreateString("Manage"));
        if (r->rights & EMU_RIGHT_SEND)
            cJSON_AddItemToArray(rights, cJSON_CreateString("Send"));
    }
    return j;
}

static cJSON *
keys_json(const struct emu *e, const struct emu_hc *hc, const struct emu_rule *r)
{
    char ep[1024];
    char cs[2048];
    size_t n = (size_t)snprintf(ep, sizeof(ep), "Endpoint=sb://%s/;SharedAccessKeyName=%s;",
                                e->ns.host, r->name);
    (void)n;
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    const char *keys[2] = {r->primary, r->secondary};
    const char *names[2] = {"primaryConnectionString", "secondaryConnectionString"};
    for (int i = 0; i < 2; i++) {
        if (hc)
            (void)snprintf(cs, sizeof(cs), "%sSharedAccessKey=%s;EntityPath=%s", ep, keys[i],
                           hc->name);
        else
            (void)snprintf(cs, sizeof(cs), "%sSharedAccessKey=%s", ep, keys[i]);
        cJSON_AddStringToObject(j, names[i], cs);
    }
    OPENSSL_cleanse(cs, sizeof(cs));
    cJSON_AddStringToObject(j, "primaryKey", r->primary);
    cJSON_AddStringToObject(j, "secondaryKey", r->secondary);
    cJSON_AddStringToObject(j, "keyName", r->name);
    return j;
}

/* ---- the response ---- */

static void
arm_req_free(struct arm_req *q)
{
    if (q->resp) {
        OPENSSL_cleanse(q->resp, strlen(q->resp)); /* listKeys answers hold keys */
        free(q->resp);
    }
    ahg_buf_free(&q->body);
    free(q);
}

static void
send_now(void *arg)
{
    struct arm_req *q = arg;
    q->deferred = false;
    struct ahg_httpd_req *r = q->r;
    if (!r)
        return; /* cannot happen: on_finish cancels the timer */
    char routing[120], ts[24];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    (void)strftime(ts, sizeof(ts), "%Y%m%dT%H%M%SZ", &tm);
    (void)snprintf(routing, sizeof(routing), "EMULATOR:%s:%s", ts, q->req_id);
    const char *f[24];
    size_t k = 0;
    f[k++] = "Cache-Control";
    f[k++] = "no-cache";
    f[k++] = "Pragma";
    f[k++] = "no-cache";
    f[k++] = "Expires";
    f[k++] = "-1";
    f[k++] = "x-ms-request-id";
    f[k++] = q->req_id;
    f[k++] = "x-ms-correlation-request-id";
    f[k++] = q->corr_id;
    f[k++] = "x-ms-routing-request-id";
    f[k++] = routing;
    if (q->client_req_id[0]) {
        f[k++] = "x-ms-client-request-id";
        f[k++] = q->client_req_id;
    }
    if (q->www_auth[0]) {
        f[k++] = "WWW-Authenticate";
        f[k++] = q->www_auth;
    }
    if (q->retry_after) {
        f[k++] = "Retry-After";
        f[k++] = "1";
    }
    f[k] = NULL;
    size_t len = q->resp ? strlen(q->resp) : 0;
    q->in_send = true;
    ahg_httpd_respond(r, q->status, q->resp ? "application/json; charset=utf-8" : NULL, q->resp,
                      len, f);
    q->in_send = false;
    if (!q->r)
        arm_req_free(q); /* the exchange ended inside respond */
}

/* Takes body (cJSON, consumed; NULL = empty body) as the answer and sends it after the ARM
 * latency. */
static void
answer(struct arm_req *q, int status, cJSON *body)
{
    if (q->answered) {
        cJSON_Delete(body);
        return;
    }
    q->answered = true;
    q->status = status;
    q->resp = body ? cJSON_PrintUnformatted(body) : NULL;
    cJSON_Delete(body);
    if (body && !q->resp) {
        q->status = 500;
        q->resp = strdup("{\"error\":{\"code\":\"InternalServerError\",\"message\":\"out of "
                         "memory\"}}");
    }
    q->deferred = q->e->lat.arm_ms > 0;
    emu_latency_defer(q->e, q->e->lat.arm_ms, send_now, q);
}

static void
answer_error(struct arm_req *q, int status, const char *code, const char *msg)
{
    cJSON *j = cJSON_CreateObject();
    cJSON *err = j ? cJSON_AddObjectToObject(j, "error") : NULL;
    if (err) {
        cJSON_AddStringToObject(err, "code", code);
        cJSON_AddStringToObject(err, "message", msg);
    }
    answer(q, status, j);
}

/* An error raised by the resource provider: its messages carry the service's tracking suffix. */
static void
answer_rp_error(struct arm_req *q, int status, const char *code, const char *msg)
{
    char full[1024];
    emu_auth_describe(q->e, msg, q->hc[0] ? q->hc : "", full, sizeof(full));
    answer_error(q, status, code, full);
}

static void
method_not_allowed(struct arm_req *q)
{
    char msg[128];
    (void)snprintf(msg, sizeof(msg), "The requested resource does not support http method '%s'.",
                   q->method);
    answer_error(q, 405, "MethodNotAllowed", msg);
}

/* ---- authentication, api-version, faults ---- */

static void
utc_long(long long t, char *out, size_t outsz)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    int h12 = tm.tm_hour % 12 ? tm.tm_hour % 12 : 12;
    (void)snprintf(out, outsz, "%d/%d/%04d %d:%02d:%02d %s", tm.tm_mon + 1, tm.tm_mday,
                   tm.tm_year + 1900, h12, tm.tm_min, tm.tm_sec, tm.tm_hour < 12 ? "AM" : "PM");
}

static bool
authenticate(struct arm_req *q)
{
    const char *a = ahg_http_head_get(ahg_httpd_req_head(q->r), "Authorization", NULL);
    if (!a) {
        (void)snprintf(q->www_auth, sizeof(q->www_auth), WWW_AUTH_FMT,
                       "The authentication failed because of missing 'Authorization' header.");
        answer_error(q, 401, "AuthenticationFailed",
                     "Authentication failed. The 'Authorization' header is missing.");
        return false;
    }
    if (strncasecmp(a, "Bearer ", 7) != 0) {
        (void)snprintf(q->www_auth, sizeof(q->www_auth), WWW_AUTH_FMT,
                       "The authentication failed because of invalid 'Authorization' header.");
        answer_error(q, 401, "AuthenticationFailed",
                     "Authentication failed. The 'Authorization' header is provided in an invalid "
                     "format.");
        return false;
    }
    const char *tok = a + 7;
    while (*tok == ' ')
        tok++;
    long long exp = 0;
    int rc = emu_identity_verify(q->e, tok, ARM_AUDIENCE, NULL, &exp);
    if (rc == AHG_OK)
        return true;
    char msg[400];
    const char *code = "InvalidAuthenticationToken";
    if (rc == AHG_EEXPIRED) {
        char a1[40], a2[40];
        utc_long(exp, a1, sizeof(a1));
        utc_long((long long)time(NULL), a2, sizeof(a2));
        (void)snprintf(
            msg, sizeof(msg),
            "The access token expiry UTC time '%s' is earlier than current UTC time '%s'.", a1, a2);
        code = "ExpiredAuthenticationToken";
    } else if (rc == AHG_EFORBIDDEN) {
        (void)snprintf(
            msg, sizeof(msg),
            "The access token has been obtained for wrong audience or resource. It should "
            "exactly match with one of the allowed audiences "
            "'https://management.core.windows.net/','https://management.core.windows.net',"
            "'https://management.azure.com/','https://management.azure.com'.");
        code = "InvalidAuthenticationTokenAudience";
    } else {
        (void)snprintf(msg, sizeof(msg), "The access token is invalid.");
    }
    (void)snprintf(q->www_auth, sizeof(q->www_auth), WWW_AUTH_FMT, msg);
    answer_error(q, 401, code, msg);
    return false;
}

static bool
api_version_ok(struct arm_req *q)
{
    static const char *const ok[] = {"2016-07-01", "2017-04-01", "2021-11-01", "2024-01-01"};
    if (ahg_url_query_get(ahg_httpd_req_query(q->r), "api-version", q->api_version,
                          sizeof(q->api_version), false) != AHG_OK ||
        !q->api_version[0]) {
        q->api_version[0] = '\0';
        answer_error(q, 400, "MissingApiVersionParameter",
                     "The api-version query parameter (?api-version=) is required for all "
                     "requests.");
        return false;
    }
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (strcmp(q->api_version, ok[i]) == 0)
            return true;
    char msg[400];
    (void)snprintf(
        msg, sizeof(msg),
        "No registered resource provider found for location '%s' and API version '%.15s' "
        "for type 'namespaces'. The supported api-versions are '2016-07-01, 2017-04-01, "
        "2021-11-01, 2024-01-01'. The supported locations are '%s'.",
        q->e->ns.location, q->api_version, q->e->ns.location);
    answer_error(q, 400, "NoRegisteredProviderFound", msg);
    return false;
}

static bool
inject_fault(struct arm_req *q)
{
    struct emu_arm_fault *f = &q->e->fault;
    if (!f->remaining || !f->status ||
        (strcmp(f->method, "*") != 0 && strcasecmp(f->method, q->method) != 0))
        return false;
    f->remaining--;
    const char *code;
    const char *msg;
    switch (f->status) {
    case 429:
        code = "MessagingGatewayTooManyRequests";
        msg = "The request was throttled: another conflicting operation is in progress. "
              "SubCode=40901.";
        q->retry_after = true;
        break;
    case 500:
        code = "InternalServerError";
        msg = "An internal error occurred (injected by the emulator).";
        break;
    case 409:
        code = "Conflict";
        msg = "Another conflicting operation is in progress (injected by the emulator).";
        break;
    case 503:
        code = "ServiceUnavailable";
        msg = "The service is unavailable (injected by the emulator).";
        q->retry_after = true;
        break;
    case 400:
        code = "BadRequest";
        msg = "Bad request (injected by the emulator).";
        break;
    case 404:
        code = "NotFound";
        msg = "Not found (injected by the emulator).";
        break;
    default:
        code = f->status >= 500 ? "InternalServerError" : "BadRequest";
        msg = "Injected failure.";
        break;
    }
    answer_rp_error(q, f->status, code, msg);
    return true;
}

/* ---- body parsing ---- */

static void
bad_content(struct arm_req *q, const char *why)
{
    char msg[300];
    (void)snprintf(msg, sizeof(msg),
                   "The request content was invalid and could not be deserialized: "
                   "'%s'.",
                   why);
    answer_error(q, 400, "InvalidRequestContent", msg);
}

/* The request body as a JSON object (NULL after answering 400). An empty body is {} when
 * empty_ok. */
static cJSON *
body_object(struct arm_req *q, bool empty_ok)
{
    size_t n = ahg_buf_len(&q->body);
    if (n == 0 && empty_ok)
        return cJSON_CreateObject();
    cJSON *j = n ? cJSON_ParseWithLength((const char *)ahg_buf_data(&q->body), n) : NULL;
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        bad_content(q, n ? "the body is not a JSON object" : "the request body is empty");
        return NULL;
    }
    return j;
}

/* properties object of body (NULL when absent; *bad set and answered when not an object). */
static const cJSON *
body_props(struct arm_req *q, const cJSON *body, bool *bad)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(body, "properties");
    *bad = false;
    if (!p || cJSON_IsNull(p))
        return NULL;
    if (!cJSON_IsObject(p)) {
        *bad = true;
        bad_content(q, "'properties' must be an object");
        return NULL;
    }
    return p;
}

/* ---- operations ---- */

static struct emu_hc *
need_hc(struct arm_req *q)
{
    struct emu_hc *hc = emu_hc_find(q->e, q->hc);
    if (!hc) {
        char msg[EMU_HC_NAME_MAX + 128];
        (void)snprintf(msg, sizeof(msg),
                       "The HybridConnection '%s' could not be found in namespace "
                       "'%s'.",
                       q->hc, q->e->ns.name);
        answer_rp_error(q, 404, "NotFound", msg);
    }
    return hc;
}

static struct emu_rule *
need_rule(struct arm_req *q, struct emu_hc *hc)
{
    struct emu_rule *r = emu_rule_find(q->e, hc, q->rule);
    if (!r) {
        char msg[ARM_SEG_MAX + 128];
        (void)snprintf(msg, sizeof(msg), "The authorization rule '%s' could not be found.",
                       q->rule);
        answer_rp_error(q, 404, "NotFound", msg);
    }
    return r;
}

static void
op_hc_put(struct arm_req *q)
{
    cJSON *body = body_object(q, false);
    if (!body)
        return;
    bool bad = false;
    const cJSON *p = body_props(q, body, &bad);
    const cJSON *rca =
        p ? cJSON_GetObjectItemCaseSensitive(p, "requiresClientAuthorization") : NULL;
    const cJSON *meta = p ? cJSON_GetObjectItemCaseSensitive(p, "userMetadata") : NULL;
    if (bad) {
        cJSON_Delete(body);
        return;
    }
    if (rca && !cJSON_IsBool(rca) && !cJSON_IsNull(rca)) {
        cJSON_Delete(body);
        bad_content(q, "'requiresClientAuthorization' must be a boolean");
        return;
    }
    if (meta && !cJSON_IsString(meta) && !cJSON_IsNull(meta)) {
        cJSON_Delete(body);
        bad_content(q, "'userMetadata' must be a string");
        return;
    }
    struct emu_hc *old = emu_hc_find(q->e, q->hc);
    /* absent properties keep their value on update, take their default on create */
    bool auth = cJSON_IsBool(rca) ? cJSON_IsTrue(rca) : old ? old->requires_client_auth : true;
    const char *m = jstr(meta);
    if (!m && !(meta && cJSON_IsNull(meta)) && old)
        m = old->user_metadata;
    char *mcopy = m ? strdup(m) : NULL; /* m may be old's, which emu_hc_put replaces */
    int err = AHG_OK;
    bool created = false;
    struct emu_hc *hc = (m && !mcopy) ? NULL : emu_hc_put(q->e, q->hc, auth, mcopy, &created, &err);
    if (m && !mcopy)
        err = AHG_ENOMEM;
    free(mcopy);
    cJSON_Delete(body);
    if (hc) {
        if (created)
            AHG_LOG_INFO("arm: created hybrid connection %s", hc->name);
        emu_state_save(q->e);
        answer(q, 200, hc_json(q->e, hc));
    } else if (err == AHG_EINVAL) {
        char msg[EMU_HC_NAME_MAX + 300];
        (void)snprintf(
            msg, sizeof(msg),
            "The hybrid connection name '%s' or its userMetadata is invalid: names have "
            "1-259 letters, digits, '.', '-', '_' and '/' (no empty segment), userMetadata "
            "at most 1024 characters.",
            q->hc);
        answer_rp_error(q, 400, "BadRequest", msg);
    } else if (err == AHG_ELIMIT) {
        answer_rp_error(q, 400, "QuotaExceeded",
                        "The maximum number of hybrid connections (10000) in the namespace was "
                        "reached.");
    } else {
        answer_error(q, 500, "InternalServerError", "out of memory");
    }
}

static void
op_hc(struct arm_req *q)
{
    if (!strcmp(q->method, "PUT")) {
        op_hc_put(q);
        return;
    }
    if (!strcmp(q->method, "GET")) {
        struct emu_hc *hc = need_hc(q);
        if (hc)
            answer(q, 200, hc_json(q->e, hc));
        return;
    }
    if (!strcmp(q->method, "DELETE")) {
        int rc = emu_hc_delete(q->e, q->hc);
        if (rc == AHG_OK) {
            AHG_LOG_INFO("arm: deleted hybrid connection %s", q->hc);
            emu_state_save(q->e);
        }
        answer(q, rc == AHG_OK ? 200 : 204, NULL);
        return;
    }
    method_not_allowed(q);
}

static long
query_long(struct ahg_httpd_req *r, const char *key, long def, long min, long max)
{
    char v[24];
    if (ahg_url_query_get(ahg_httpd_req_query(r), key, v, sizeof(v), false) != AHG_OK)
        return def;
    char *end = NULL;
    long x = strtol(v, &end, 10);
    if (!v[0] || *end || x < min)
        return def;
    return x > max ? max : x;
}

static void
op_hc_list(struct arm_req *q)
{
    if (strcmp(q->method, "GET") != 0) {
        method_not_allowed(q);
        return;
    }
    long skip = query_long(q->r, "$skip", 0, 0, 1000000);
    long top = query_long(q->r, "$top", 0, 1, 1000);
    size_t page = top ? (size_t)top : ARM_PAGE;
    cJSON *j = cJSON_CreateObject();
    cJSON *arr = j ? cJSON_AddArrayToObject(j, "value") : NULL;
    size_t i = 0, added = 0;
    const struct emu_hc *hc = q->e->ns.hcs;
    for (; hc && i < (size_t)skip; hc = hc->next)
        i++;
    for (; arr && hc && added < page; hc = hc->next, added++)
        cJSON_AddItemToArray(arr, hc_json(q->e, hc));
    if (j && hc) {
        /* more to come: nextLink, absolute, as ARM gives it */
        const char *host = ahg_http_head_get(ahg_httpd_req_head(q->r), "Host", NULL);
        struct ahg_conn *c = ahg_httpd_req_conn(q->r);
        char link[1024];
        (void)snprintf(link, sizeof(link), "%s://%s%s?api-version=%s&$skip=%zu&$top=%zu",
                       c && ahg_conn_is_tls(c) ? "https" : "http", host ? host : "localhost",
                       ahg_httpd_req_path(q->r), q->api_version, (size_t)skip + added, page);
        cJSON_AddStringToObject(j, "nextLink", link);
    }
    answer(q, 200, j);
}

/* rights array -> bits; 0 after answering 400. */
static unsigned
parse_rights(struct arm_req *q, const cJSON *body)
{
    bool bad = false;
    const cJSON *p = body_props(q, body, &bad);
    if (bad)
        return 0;
    const cJSON *arr = p ? cJSON_GetObjectItemCaseSensitive(p, "rights") : NULL;
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0) {
        answer_error(q, 400, "InvalidRequestContent",
                     "The request content was invalid: 'properties.rights' is required and must "
                     "list at least one of Listen, Send, Manage.");
        return 0;
    }
    unsigned bits = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        unsigned b = 0;
        if (cJSON_IsString(it)) {
            if (!strcasecmp(it->valuestring, "Listen"))
                b = EMU_RIGHT_LISTEN;
            else if (!strcasecmp(it->valuestring, "Send"))
                b = EMU_RIGHT_SEND;
            else if (!strcasecmp(it->valuestring, "Manage"))
                b = EMU_RIGHT_MANAGE;
        }
        if (!b) {
            bad_content(q, "'properties.rights' items must be Listen, Send or Manage");
            return 0;
        }
        bits |= b;
    }
    return bits;
}

static void
op_rule(struct arm_req *q)
{
    struct emu_hc *hc = NULL;
    if (q->hc_level && !(hc = need_hc(q)))
        return;
    if (!strcmp(q->method, "GET")) {
        struct emu_rule *r = need_rule(q, hc);
        if (r)
            answer(q, 200, rule_json(q->e, hc, r));
        return;
    }
    if (!strcmp(q->method, "DELETE")) {
        int rc = emu_rule_delete(q->e, hc, q->rule);
        if (rc == AHG_OK)
            emu_state_save(q->e);
        answer(q, rc == AHG_OK ? 200 : 204, NULL);
        return;
    }
    if (strcmp(q->method, "PUT") != 0) {
        method_not_allowed(q);
        return;
    }
    cJSON *body = body_object(q, false);
    if (!body)
        return;
    unsigned rights = parse_rights(q, body);
    cJSON_Delete(body);
    if (!rights)
        return;
    int err = AHG_OK;
    struct emu_rule *r = emu_rule_put(q->e, hc, q->rule, rights, &err);
    if (r) {
        emu_state_save(q->e);
        answer(q, 200, rule_json(q->e, hc, r));
    } else if (err == AHG_ELIMIT) {
        answer_rp_error(q, 400, "QuotaExceeded",
                        "The maximum number of authorization rules (12) for this entity was "
                        "reached.");
    } else if (err == AHG_EINVAL) {
        char msg[ARM_SEG_MAX + 160];
        (void)snprintf(
            msg, sizeof(msg),
            "The authorization rule name '%s' is invalid: 1-63 letters, digits, '.', '-' "
            "and '_'.",
            q->rule);
        answer_rp_error(q, 400, "BadRequest", msg);
    } else {
        answer_error(q, 500, "InternalServerError", "out of memory");
    }
}

static void
op_rule_keys(struct arm_req *q, bool regenerate)
{
    if (strcmp(q->method, "POST") != 0) {
        method_not_allowed(q);
        return;
    }
    struct emu_hc *hc = NULL;
    if (q->hc_level && !(hc = need_hc(q)))
        return;
    struct emu_rule *r = need_rule(q, hc);
    if (!r)
        return;
    if (regenerate) {
        cJSON *body = body_object(q, false);
        if (!body)
            return;
        const cJSON *kt = cJSON_GetObjectItemCaseSensitive(body, "keyType");
        const cJSON *key = cJSON_GetObjectItemCaseSensitive(body, "key");
        const char *kts = jstr(kt);
        char *kv = jstr(key);
        bool primary = kts && !strcasecmp(kts, "PrimaryKey");
        bool secondary = kts && !strcasecmp(kts, "SecondaryKey");
        int rc = AHG_EINVAL;
        if ((primary || secondary) && (!key || cJSON_IsNull(key) || kv))
            rc = emu_rule_regenerate(r, primary, kv);
        if (kv)
            OPENSSL_cleanse(kv, strlen(kv));
        cJSON_Delete(body);
        OPENSSL_cleanse(ahg_buf_data(&q->body), ahg_buf_len(&q->body));
        if (rc != AHG_OK) {
            if (!primary && !secondary)
                bad_content(q, "'keyType' is required and must be PrimaryKey or SecondaryKey");
            else
                answer_rp_error(q, 400, "BadRequest",
                                "The key must be 1-44 printable characters without spaces (a "
                                "base64-encoded 256-bit value).");
            return;
        }
        AHG_LOG_INFO("arm: regenerated the %s key of rule %s%s%s",
                     primary ? "primary" : "secondary", r->name, hc ? " of " : "",
                     hc ? hc->name : "");
        emu_state_save(q->e);
    }
    answer(q, 200, keys_json(q->e, hc, r));
}

static void
op_rule_list(struct arm_req *q)
{
    if (strcmp(q->method, "GET") != 0) {
        method_not_allowed(q);
        return;
    }
    struct emu_hc *hc = NULL;
    if (q->hc_level && !(hc = need_hc(q)))
        return;
    cJSON *j = cJSON_CreateObject();
    cJSON *arr = j ? cJSON_AddArrayToObject(j, "value") : NULL;
    for (struct emu_rule *r = hc ? hc->rules : q->e->ns.rules; arr && r; r = r->next)
        cJSON_AddItemToArray(arr, rule_json(q->e, hc, r));
    answer(q, 200, j);
}

static void
op_ns(struct arm_req *q)
{
    if (!strcmp(q->method, "GET")) {
        answer(q, 200, ns_json(q->e));
    } else if (!strcmp(q->method, "PUT") || !strcmp(q->method, "PATCH")) {
        cJSON *body = body_object(q, false);
        if (!body)
            return;
        cJSON_Delete(body);
        answer(q, 200, ns_json(q->e)); /* the namespace exists: idempotent, settings kept */
    } else if (!strcmp(q->method, "DELETE")) {
        answer_rp_error(q, 409, "Conflict",
                        "The emulated namespace cannot be deleted while the emulator runs.");
    } else {
        method_not_allowed(q);
    }
}

static void
op_ns_list(struct arm_req *q)
{
    if (strcmp(q->method, "GET") != 0) {
        method_not_allowed(q);
        return;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON *arr = j ? cJSON_AddArrayToObject(j, "value") : NULL;
    if (arr)
        cJSON_AddItemToArray(arr, ns_json(q->e));
    answer(q, 200, j);
}

static bool
ns_name_syntax_ok(const char *n)
{
    size_t len = strlen(n);
    if (len < 6 || len > 50 || !((n[0] >= 'a' && n[0] <= 'z') || (n[0] >= 'A' && n[0] <= 'Z')) ||
        n[len - 1] == '-')
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((n[i] >= 'a' && n[i] <= 'z') || (n[i] >= 'A' && n[i] <= 'Z') ||
              (n[i] >= '0' && n[i] <= '9') || n[i] == '-'))
            return false;
    return true;
}

static void
op_checkname(struct arm_req *q)
{
    if (strcmp(q->method, "POST") != 0) {
        method_not_allowed(q);
        return;
    }
    cJSON *body = body_object(q, false);
    if (!body)
        return;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(body, "name");
    if (!cJSON_IsString(name)) {
        cJSON_Delete(body);
        bad_content(q, "'name' is required");
        return;
    }
    cJSON *j = cJSON_CreateObject();
    if (j) {
        if (!ns_name_syntax_ok(name->valuestring)) {
            cJSON_AddBoolToObject(j, "nameAvailable", false);
            cJSON_AddStringToObject(j, "reason", "InvalidName");
            cJSON_AddStringToObject(j, "message",
                                    "The namespace name can contain only letters, numbers, and "
                                    "hyphens; it must start with a letter, end with a letter or "
                                    "number, and be 6-50 characters long.");
        } else if (!strcasecmp(name->valuestring, q->e->ns.name)) {
            cJSON_AddBoolToObject(j, "nameAvailable", false);
            cJSON_AddStringToObject(j, "reason", "NameInUse");
            cJSON_AddStringToObject(j, "message", "The specified name is not available.");
        } else {
            cJSON_AddBoolToObject(j, "nameAvailable", true);
            cJSON_AddStringToObject(j, "reason", "None");
        }
    }
    cJSON_Delete(body);
    answer(q, 200, j);
}

static void
run_op(struct arm_req *q)
{
    switch (q->op) {
    case OP_NS_LIST:
        op_ns_list(q);
        break;
    case OP_NS_CHECKNAME:
        op_checkname(q);
        break;
    case OP_NS:
        op_ns(q);
        break;
    case OP_RULE_LIST:
        op_rule_list(q);
        break;
    case OP_RULE:
        op_rule(q);
        break;
    case OP_RULE_LISTKEYS:
        op_rule_keys(q, false);
        break;
    case OP_RULE_REGEN:
        op_rule_keys(q, true);
        break;
    case OP_HC_LIST:
        op_hc_list(q);
        break;
    case OP_HC:
        op_hc(q);
        break;
    case OP_NONE:
        answer_error(q, 404, "NotFound", "The requested resource was not found.");
        break;
    }
}

/* ---- routing ---- */

static bool
seg_is(const char *seg, const char *kw)
{
    return strcasecmp(seg, kw) == 0;
}

/* Splits path into percent-decoded segments. false for malformed paths. */
static bool
split_path(const char *path, char segs[][ARM_SEG_MAX], size_t *nseg)
{
    *nseg = 0;
    const char *p = path;
    if (*p == '/')
        p++;
    while (*p) {
        const char *s = strchr(p, '/');
        size_t n = s ? (size_t)(s - p) : strlen(p);
        if (*nseg >= ARM_MAX_SEGS || n == 0)
            return false;
        size_t outlen = 0;
        if (ahg_url_decode(p, n, segs[*nseg], ARM_SEG_MAX, false, &outlen) != AHG_OK ||
            outlen != strlen(segs[*nseg]))
            return false;
        (*nseg)++;
        if (!s)
            break;
        p = s + 1;
        if (!*p)
            break; /* one trailing '/' is tolerated */
    }
    return true;
}

/* Fills q->op and names, or answers the 4xx itself (returns false). */
static bool
route(struct arm_req *q)
{
    char segs[ARM_MAX_SEGS][ARM_SEG_MAX];
    size_t n = 0;
    struct emu *e = q->e;
    if (!split_path(ahg_httpd_req_path(q->r), segs, &n) || n < 2) {
        answer_error(q, 404, "NotFound", "The requested resource was not found.");
        return false;
    }
    if (strcasecmp(segs[1], e->ns.subscription) != 0) {
        char msg[ARM_SEG_MAX + 64];
        (void)snprintf(msg, sizeof(msg), "The subscription '%s' could not be found.", segs[1]);
        answer_error(q, 404, "SubscriptionNotFound", msg);
        return false;
    }
    /* subscription-level: /subscriptions/{sub}/providers/Microsoft.Relay/... */
    if (n == 5 && seg_is(segs[2], "providers") && seg_is(segs[3], ARM_PROVIDER)) {
        if (seg_is(segs[4], "namespaces"))
            q->op = OP_NS_LIST;
        else if (seg_is(segs[4], "checkNameAvailability"))
            q->op = OP_NS_CHECKNAME;
        return true; /* OP_NONE answers 404 */
    }
    if (n < 7 || !seg_is(segs[2], "resourceGroups") || !seg_is(segs[4], "providers") ||
        !seg_is(segs[6], "namespaces")) {
        answer_error(q, 404, "NotFound", "The requested resource was not found.");
        return false;
    }
    if (strcasecmp(segs[3], e->ns.resource_group) != 0) {
        char msg[ARM_SEG_MAX + 64];
        (void)snprintf(msg, sizeof(msg), "Resource group '%s' could not be found.", segs[3]);
        answer_error(q, 404, "ResourceGroupNotFound", msg);
        return false;
    }
    if (!seg_is(segs[5], ARM_PROVIDER)) {
        char msg[ARM_SEG_MAX + 64];
        (void)snprintf(msg, sizeof(msg), "The resource namespace '%s' is invalid.", segs[5]);
        answer_error(q, 404, "InvalidResourceNamespace", msg);
        return false;
    }
    if (n == 7) {
        q->op = OP_NS_LIST;
        return true;
    }
    if (strcasecmp(segs[7], e->ns.name) != 0) {
        char msg[2 * ARM_SEG_MAX + 200];
        if (!strcmp(q->method, "PUT"))
            (void)snprintf(msg, sizeof(msg),
                           "The emulator hosts the single namespace '%s'; namespace '%s' cannot be "
                           "created.",
                           e->ns.name, segs[7]);
        else
            (void)snprintf(
                msg, sizeof(msg),
                "The Resource 'Microsoft.Relay/namespaces/%s' under resource group '%s' was "
                "not found. For more details please go to "
                "https://aka.ms/ARMResourceNotFoundFix",
                segs[7], segs[3]);
        answer_error(q, !strcmp(q->method, "PUT") ? 400 : 404,
                     !strcmp(q->method, "PUT") ? "BadRequest" : "ResourceNotFound", msg);
        return false;
    }
    if (n == 8) {
        q->op = OP_NS;
        return true;
    }
    size_t i = 8;
    if (seg_is(segs[8], "hybridConnections")) {
        if (n == 9) {
            q->op = OP_HC_LIST;
            return true;
        }
        if (strlen(segs[9]) >= sizeof(q->hc)) {
            answer_error(q, 400, "BadRequest", "The hybrid connection name is too long.");
            return false;
        }
        memcpy(q->hc, segs[9], strlen(segs[9]) + 1);
        if (n == 10) {
            q->op = OP_HC;
            return true;
        }
        q->hc_level = true;
        i = 10;
    }
    if (!seg_is(segs[i], "authorizationRules")) {
        char msg[ARM_SEG_MAX + 64];
        (void)snprintf(msg, sizeof(msg), "The resource type '%s' is not emulated.", segs[i]);
        answer_error(q, 404, "NotFound", msg);
        return false;
    }
    if (n == i + 1) {
        q->op = OP_RULE_LIST;
        return true;
    }
    (void)snprintf(q->rule, sizeof(q->rule), "%s", segs[i + 1]);
    if (n == i + 2) {
        q->op = OP_RULE;
        return true;
    }
    if (n == i + 3 && seg_is(segs[i + 2], "listKeys")) {
        q->op = OP_RULE_LISTKEYS;
        return true;
    }
    if (n == i + 3 && seg_is(segs[i + 2], "regenerateKeys")) {
        q->op = OP_RULE_REGEN;
        return true;
    }
    answer_error(q, 404, "NotFound", "The requested resource was not found.");
    return false;
}

static bool
op_wants_body(const struct arm_req *q)
{
    bool put = !strcmp(q->method, "PUT"), post = !strcmp(q->method, "POST");
    switch (q->op) {
    case OP_HC:
    case OP_RULE:
        return put;
    case OP_NS:
        return put || !strcmp(q->method, "PATCH");
    case OP_RULE_REGEN:
    case OP_NS_CHECKNAME:
        return post;
    default:
        return false;
    }
}

/* ---- httpd callbacks ---- */

static void
on_body(struct ahg_httpd_req *r, const char *p, size_t n)
{
    struct arm_req *q = ahg_httpd_req_ud(r);
    if (q->answered || !q->want_body)
        return;
    if (ahg_buf_append(&q->body, p, n) != AHG_OK)
        answer_error(q, 413, "RequestEntityTooLarge", "The request content is larger than 64 KiB.");
}

static void
on_body_end(struct ahg_httpd_req *r)
{
    struct arm_req *q = ahg_httpd_req_ud(r);
    if (!q->answered)
        run_op(q);
}

static void
on_finish(struct ahg_httpd_req *r, bool completed)
{
    (void)completed;
    struct arm_req *q = ahg_httpd_req_ud(r);
    q->r = NULL;
    if (q->deferred) {
        emu_latency_cancel(q->e, q); /* the client left before its delayed answer */
        q->deferred = false;
    }
    if (!q->in_send)
        arm_req_free(q);
}

static const struct ahg_httpd_req_cbs arm_cbs = {
    .on_body = on_body,
    .on_body_end = on_body_end,
    .on_finish = on_finish,
};

bool
emu_arm_handle(struct emu *e, struct ahg_httpd_req *r)
{
    const char *path = ahg_httpd_req_path(r);
    if (strncasecmp(path, "/subscriptions/", 15) != 0)
        return false;
    e->m_arm_calls++;
    const struct ahg_http_head *h = ahg_httpd_req_head(r);
    struct arm_req *q = calloc(1, sizeof(*q));
    if (!q) {
        ahg_httpd_respond_error(r, 503, "ServiceUnavailable", "out of memory", true);
        return true;
    }
    q->e = e;
    q->r = r;
    (void)snprintf(q->method, sizeof(q->method), "%s", h->method);
    ahg_buf_init(&q->body, ARM_BODY_MAX);
    if (ahg_rand_uuid(q->req_id) != AHG_OK)
        (void)snprintf(q->req_id, sizeof(q->req_id), "%s", ahg_httpd_req_id(r));
    const char *corr = ahg_http_head_get(h, "x-ms-correlation-request-id", NULL);
    (void)snprintf(q->corr_id, sizeof(q->corr_id), "%s", safe_id(corr, 64) ? corr : q->req_id);
    const char *crid = ahg_http_head_get(h, "x-ms-client-request-id", NULL);
    if (safe_id(crid, 64))
        (void)snprintf(q->client_req_id, sizeof(q->client_req_id), "%s", crid);
    ahg_httpd_req_set_cbs(r, &arm_cbs, q);

    if (!authenticate(q) || !api_version_ok(q) || inject_fault(q) || !route(q))
        return true;
    if (op_wants_body(q)) {
        if (h->framing == AHG_HTTP_BODY_LENGTH && h->content_length > ARM_BODY_MAX) {
            answer_error(q, 413, "RequestEntityTooLarge",
                         "The request content is larger than 64 KiB.");
            return true;
        }
        q->want_body = true; /* run_op at on_body_end */
        return true;
    }
    /* no body needed: answer now (a body sent anyway is read and dropped by the server) */
    run_op(q);
    return true;
}
