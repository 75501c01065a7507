/*
 * arm.c - see ahg/arm.h.
 *
 * An operation is a small state machine: GET_TOKEN -> SEND -> (answer) -> done, or -> WAIT
 * (backoff timer) -> GET_TOKEN ... An operation waiting for a token cannot be cancelled at the
 * identity layer (azid has no cancel), so a cancelled or orphaned operation is only freed when
 * that callback arrives.
 */
#include "ahg/arm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "ahg/azid.h"
#include "ahg/crypto.h"
#include "ahg/egress.h"
#include "ahg/err.h"
#include "ahg/list.h"
#include "ahg/log.h"
#include "ahg/net.h"
#include "ahg/url.h"

#define ARM_URL_MAX        2048
#define ARM_DEF_RETRIES    4u
#define ARM_DEF_BACKOFF    250u
#define ARM_DEF_MAXBACKOFF 10000u
#define ARM_DEF_MAX_ITEMS  ((size_t)100000)
#define ARM_AUTH_MAX       8192

enum op_kind { OPK_PUT, OPK_GET, OPK_DELETE, OPK_LIST, OPK_KEYS, OPK_REGEN };
enum op_state { OPS_IDLE, OPS_TOKEN, OPS_SEND, OPS_WAIT };

struct ahg_arm {
    struct ahg_loop *loop;
    struct ahg_egress *eg;
    struct ahg_azid *id;
    char *base;
    char *prefix; /* base + /subscriptions/.../namespaces/{ns} */
    char *api_version;
    char *resource;
    unsigned max_retries, backoff_ms, max_backoff_ms;
    struct ahg_list ops;
    size_t nops;
};

struct ahg_arm_op {
    struct ahg_arm *a; /* NULL once orphaned (client freed while waiting for a token) */
    struct ahg_list_node node;
    enum op_kind kind;
    enum op_state state;
    const char *method;
    char *url;
    char *body;
    ahg_arm_cb cb;
    void *ud;
    bool cancelled;
    bool auth_retried;
    unsigned attempts;
    struct ahg_timer timer;
    struct ahg_egress_call *call;
    size_t max_items;
    struct ahg_arm_hc *hcs;
    size_t nhcs, caphcs;
    /* the last answer */
    int last_err, last_status;
    unsigned retry_after;
    char code[128];
    char message[512];
};

static void op_start_try(struct ahg_arm_op *op);

static char *
xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

static void
op_free(struct ahg_arm_op *op)
{
    free(op->url);
    free(op->body);
    free(op->hcs);
    free(op);
}

static void
op_unlink(struct ahg_arm_op *op)
{
    if (op->a && ahg_list_is_linked(&op->node)) {
        ahg_list_remove(&op->a->ops, &op->node);
        op->a->nops--;
    }
}

/* Reports and frees (unless a token callback is still due: then it frees). */
static void
op_finish(struct ahg_arm_op *op, int err, const char *key_name, const char *k1, const char *k2)
{
    ahg_timer_stop(&op->timer);
    op_unlink(op);
    struct ahg_arm_result res = {
        .err = err,
        .status = op->last_status,
        .code = op->code,
        .message = op->message,
        .retry_after_s = op->retry_after,
        .attempts = op->attempts,
        .hcs = op->hcs,
        .nhcs = op->nhcs,
        .key_name = key_name ? key_name : "",
        .primary_key = k1 ? k1 : "",
        .secondary_key = k2 ? k2 : "",
    };
    ahg_arm_cb cb = op->cancelled ? NULL : op->cb;
    op->cancelled = true;
    bool token_due = op->state == OPS_TOKEN;
    op->a = NULL;
    if (cb)
        cb(&res, op->ud);
    if (!token_due)
        op_free(op);
}

static unsigned
parse_retry_after(const char *headers)
{
    const char *p = headers;
    while (p && *p) {
        const char *eol = strstr(p, "\r\n");
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        if (n > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
            const char *v = p + 12;
            while (*v == ' ' || *v == '\t')
                v++;
            char *end = NULL;
            unsigned long s = strtoul(v, &end, 10);
            if (end != v && s < 3600)
                return (unsigned)s;
            return 0;
        }
        p = eol ? eol + 2 : NULL;
    }
    return 0;
}

static void
read_error(struct ahg_arm_op *op, const char *body)
{
    op->code[0] = op->message[0] = '\0';
    cJSON *j = body ? cJSON_Parse(body) : NULL;
    if (!j)
        return;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (!cJSON_IsObject(e))
        e = j; /* common/v1: flat */
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
    if (cJSON_IsString(c))
        (void)snprintf(op->code, sizeof(op->code), "%s", c->valuestring);
    if (cJSON_IsString(m))
        (void)snprintf(op->message, sizeof(op->message), "%s", m->valuestring);
    cJSON_Delete(j);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static long long
days_from_civil(long long y, unsigned m, unsigned d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long)doe - 719468;
}

/* Reads n decimal digits at s; -1 when one is not a digit. */
static long
digits(const char *s, int n)
{
    long v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* "2017-01-23T20:34:49.4131724Z" (fractions and zone ignored) to Unix seconds; 0 if bad. */
static long long
parse_time(const char *s)
{
    if (!s || strlen(s) < 19 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':')
        return 0;
    long y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
    long h = digits(s + 11, 2), mi = digits(s + 14, 2), se = digits(s + 17, 2);
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 ||
        se < 0 || se > 60)
        return 0;
    return days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + (long long)h * 3600 +
           (long long)mi * 60 + se;
}

static int
add_hc(struct ahg_arm_op *op, const cJSON *item)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(item, "name");
    if (!cJSON_IsString(name) || strlen(name->valuestring) > AHG_ARM_NAME_MAX)
        return AHG_EUPSTREAM;
    if (op->nhcs >= op->max_items)
        return AHG_ELIMIT;
    if (op->nhcs == op->caphcs) {
        size_t cap = op->caphcs ? op->caphcs * 2 : 16;
        struct ahg_arm_hc *n = realloc(op->hcs, cap * sizeof(*n));
        if (!n)
            return AHG_ENOMEM;
        op->hcs = n;
        op->caphcs = cap;
    }
    struct ahg_arm_hc *h = &op->hcs[op->nhcs];
    memset(h, 0, sizeof(*h));
    (void)snprintf(h->name, sizeof(h->name), "%s", name->valuestring);
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(item, "properties");
    const cJSON *um = cJSON_GetObjectItemCaseSensitive(props, "userMetadata");
    if (cJSON_IsString(um))
        (void)snprintf(h->user_metadata, sizeof(h->user_metadata), "%s", um->valuestring);
    const cJSON *lc = cJSON_GetObjectItemCaseSensitive(props, "listenerCount");
    if (cJSON_IsNumber(lc))
        h->listener_count = lc->valueint;
    const cJSON *ca = cJSON_GetObjectItemCaseSensitive(props, "createdAt");
    if (cJSON_IsString(ca))
        h->created_at = parse_time(ca->valuestring);
    op->nhcs++;
    return AHG_OK;
}

/* True when url has the same scheme://host[:port] as the client's base. */
static bool
same_origin(const struct ahg_arm *a, const char *url)
{
    size_t n = strlen(a->base);
    return strncmp(url, a->base, n) == 0 && (url[n] == '/' || url[n] == '\0');
}

/* A 2xx answer; returns true when the operation is over (reported). */
static void
on_success(struct ahg_arm_op *op, const struct ahg_egress_resp *resp)
{
    if (op->kind == OPK_DELETE) {
        op_finish(op, AHG_OK, NULL, NULL, NULL);
        return;
    }
    cJSON *j = cJSON_ParseWithLength(resp->body, resp->body_len);
    if (!j) {
        (void)snprintf(op->message, sizeof(op->message), "ARM answered %d without JSON",
                       resp->status);
        op_finish(op, AHG_EUPSTREAM, NULL, NULL, NULL);
        return;
    }
    int err = AHG_OK;
    switch (op->kind) {
    case OPK_PUT:
    case OPK_GET:
        err = add_hc(op, j);
        break;
    case OPK_LIST: {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "value");
        const cJSON *it;
        if (!cJSON_IsArray(v))
            err = AHG_EUPSTREAM;
        cJSON_ArrayForEach(it, v)
        {
            if (err == AHG_OK)
                err = add_hc(op, it);
        }
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(j, "nextLink");
        if (err == AHG_OK && cJSON_IsString(next) && next->valuestring[0]) {
            if (!same_origin(op->a, next->valuestring) ||
                strlen(next->valuestring) >= ARM_URL_MAX) {
                (void)snprintf(op->message, sizeof(op->message),
                               "nextLink points outside the ARM endpoint");
                err = AHG_EUPSTREAM;
            } else {
                char *u = xstrdup(next->valuestring);
                if (!u) {
                    err = AHG_ENOMEM;
                } else {
                    free(op->url);
                    op->url = u;
                    cJSON_Delete(j);
                    op->attempts = 0;
                    op_start_try(op);
                    return;
                }
            }
        }
        break;
    }
    case OPK_KEYS:
    case OPK_REGEN: {
        const cJSON *k1 = cJSON_GetObjectItemCaseSensitive(j, "primaryKey");
        const cJSON *k2 = cJSON_GetObjectItemCaseSensitive(j, "secondaryKey");
        const cJSON *kn = cJSON_GetObjectItemCaseSensitive(j, "keyName");
        if (!cJSON_IsString(k1) || !cJSON_IsString(k2) ||
            strlen(k1->valuestring) > AHG_ARM_KEY_MAX ||
            strlen(k2->valuestring) > AHG_ARM_KEY_MAX) {
            err = AHG_EUPSTREAM;
            break;
        }
        op_finish(op, AHG_OK, cJSON_IsString(kn) ? kn->valuestring : "", k1->valuestring,
                  k2->valuestring);
        cJSON_Delete(j);
        return;
    }
    case OPK_DELETE:
        break;
    }
    cJSON_Delete(j);
    if (err == AHG_EUPSTREAM && !op->message[0])
        (void)snprintf(op->message, sizeof(op->message), "unexpected ARM answer");
    op_finish(op, err, NULL, NULL, NULL);
}

static bool
retryable_status(int st)
{
    return st == 409 || st == 429 || st >= 500;
}

static int
status_err(int st)
{
    if (st == 404)
        return AHG_ENOTFOUND;
    if (st == 409)
        return AHG_EEXIST;
    if (st == 429)
        return AHG_ERATE;
    if (st == 401 || st == 403)
        return AHG_EAUTH;
    if (st >= 500)
        return AHG_EUNAVAIL;
    return AHG_EUPSTREAM;
}

static void
on_timer(struct ahg_timer *t)
{
    struct ahg_arm_op *op = t->ud;
    op_start_try(op);
}

/* Schedules another try, or reports err when the retries are used up. */
static void
retry_or_finish(struct ahg_arm_op *op, int err)
{
    struct ahg_arm *a = op->a;
    if (op->attempts > a->max_retries) {
        op_finish(op, err, NULL, NULL, NULL);
        return;
    }
    uint64_t cap = a->backoff_ms;
    for (unsigned i = 1; i < op->attempts && cap < a->max_backoff_ms; i++)
        cap *= 2;
    if (cap > a->max_backoff_ms)
        cap = a->max_backoff_ms;
    uint32_t r = 0;
    (void)ahg_rand_bytes(&r, sizeof(r));
    uint64_t wait = cap / 2 + (cap ? r % (cap / 2 + 1) : 0);
    if (op->retry_after) {
        uint64_t ra = (uint64_t)op->retry_after * 1000u;
        wait = ra > a->max_backoff_ms ? a->max_backoff_ms : ra;
    }
    op->state = OPS_WAIT;
    AHG_LOG_DEBUG("arm: %s retry %u in %llu ms (status %d)", op->method, op->attempts,
                  (unsigned long long)wait, op->last_status);
    ahg_timer_start(&op->timer, wait);
}

static void
on_resp(const struct ahg_egress_resp *resp, void *ud)
{
    struct ahg_arm_op *op = ud;
    op->call = NULL;
    op->state = OPS_IDLE;
    op->last_status = resp->status;
    op->retry_after = 0;
    if (resp->err != AHG_OK) {
        op->last_err = resp->err;
        (void)snprintf(op->message, sizeof(op->message), "ARM unreachable: %s", resp->errmsg);
        int err = resp->err == AHG_ETIMEDOUT ? AHG_ETIMEDOUT : AHG_EUNAVAIL;
        retry_or_finish(op, err);
        return;
    }
    if (resp->status >= 200 && resp->status < 300) {
        op->code[0] = op->message[0] = '\0';
        on_success(op, resp);
        return;
    }
    read_error(op, resp->body);
    if (!op->message[0])
        (void)snprintf(op->message, sizeof(op->message), "ARM answered %d", resp->status);
    op->retry_after = parse_retry_after(resp->headers);
    if (op->kind == OPK_DELETE && resp->status == 404) {
        op_finish(op, AHG_OK, NULL, NULL, NULL);
        return;
    }
    if (resp->status == 401 && !op->auth_retried) {
        op->auth_retried = true;
        ahg_azid_invalidate(op->a->id, op->a->resource);
        op->attempts--; /* not a retry of the service's making */
        op_start_try(op);
        return;
    }
    if (retryable_status(resp->status)) {
        retry_or_finish(op, status_err(resp->status));
        return;
    }
    op_finish(op, status_err(resp->status), NULL, NULL, NULL);
}

static void
on_token(int err, const char *token, int64_t expires_on, void *ud)
{
    struct ahg_arm_op *op = ud;
    (void)expires_on;
    bool orphan = op->cancelled || !op->a;
    op->state = OPS_IDLE;
    if (orphan) {
        op_free(op);
        return;
    }
    if (err != AHG_OK) {
        (void)snprintf(op->message, sizeof(op->message), "managed identity: %s", ahg_strerror(err));
        if (err == AHG_EAUTH) {
            op_finish(op, AHG_EAUTH, NULL, NULL, NULL);
            return;
        }
        retry_or_finish(op, AHG_EUNAVAIL);
        return;
    }
    char auth[ARM_AUTH_MAX];
    int n = snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    if (n < 0 || (size_t)n >= sizeof(auth)) {
        op_finish(op, AHG_EUPSTREAM, NULL, NULL, NULL);
        return;
    }
    const char *hdrs[] = {auth, "Accept: application/json",
                          op->body ? "Content-Type: application/json" : NULL, NULL};
    struct ahg_egress_req req = {
        .method = op->method,
        .url = op->url,
        .headers = hdrs,
        .body = op->body,
        .body_len = op->body ? strlen(op->body) : 0,
    };
    op->state = OPS_SEND;
    int rc = ahg_egress_request(op->a->eg, &req, on_resp, op, &op->call);
    memset(auth, 0, sizeof(auth));
    if (rc != AHG_OK) {
        op->state = OPS_IDLE;
        (void)snprintf(op->message, sizeof(op->message), "cannot send: %s", ahg_strerror(rc));
        retry_or_finish(op, rc == AHG_ELIMIT ? AHG_EUNAVAIL : rc);
    }
}

static void
op_start_try(struct ahg_arm_op *op)
{
    op->attempts++;
    op->state = OPS_TOKEN;
    int rc = ahg_azid_get(op->a->id, op->a->resource, on_token, op);
    if (rc != AHG_OK) {
        op->state = OPS_IDLE;
        (void)snprintf(op->message, sizeof(op->message), "managed identity: %s", ahg_strerror(rc));
        retry_or_finish(op, AHG_EUNAVAIL);
    }
}

static bool
name_ok(const char *s)
{
    return s && s[0] && strlen(s) <= AHG_ARM_NAME_MAX;
}

static int
op_new(struct ahg_arm *a, enum op_kind kind, const char *method, const char *suffix_fmt,
       const char *name, const char *tail, char *body, size_t max_items, ahg_arm_cb cb, void *ud,
       struct ahg_arm_op **handle)
{
    if (handle)
        *handle = NULL;
    if (!a || !cb) {
        free(body);
        return AHG_EINVAL;
    }
    char enc[AHG_ARM_NAME_MAX * 3 + 1] = "";
    if (name && ahg_url_encode(name, strlen(name), enc, sizeof(enc)) != AHG_OK) {
        free(body);
        return AHG_EINVAL;
    }
    char url[ARM_URL_MAX];
    int n = snprintf(url, sizeof(url), "%s%s%s%s?api-version=%s", a->prefix, suffix_fmt, enc,
                     tail ? tail : "", a->api_version);
    if (n < 0 || (size_t)n >= sizeof(url)) {
        free(body);
        return AHG_EINVAL;
    }
    struct ahg_arm_op *op = calloc(1, sizeof(*op));
    if (!op || !(op->url = xstrdup(url))) {
        free(op);
        free(body);
        return AHG_ENOMEM;
    }
    op->a = a;
    op->kind = kind;
    op->method = method;
    op->body = body;
    op->cb = cb;
    op->ud = ud;
    op->max_items = max_items ? max_items : ARM_DEF_MAX_ITEMS;
    ahg_timer_init(&op->timer, a->loop, on_timer, op);
    ahg_list_node_init(&op->node);
    ahg_list_push_back(&a->ops, &op->node);
    a->nops++;
    if (handle)
        *handle = op;
    /* start on the next turn so the callback never runs inside this call */
    op->state = OPS_WAIT;
    ahg_timer_start(&op->timer, 0);
    return AHG_OK;
}

int
ahg_arm_hc_put(struct ahg_arm *a, const char *hc, const char *user_metadata, ahg_arm_cb cb,
               void *ud, struct ahg_arm_op **handle)
{
    if (!name_ok(hc) || (user_metadata && strlen(user_metadata) > AHG_ARM_METADATA_MAX))
        return AHG_EINVAL;
    cJSON *j = cJSON_CreateObject();
    cJSON *p = j ? cJSON_AddObjectToObject(j, "properties") : NULL;
    if (!p || !cJSON_AddBoolToObject(p, "requiresClientAuthorization", 1) ||
        (user_metadata && !cJSON_AddStringToObject(p, "userMetadata", user_metadata))) {
        cJSON_Delete(j);
        return AHG_ENOMEM;
    }
    char *body = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!body)
        return AHG_ENOMEM;
    return op_new(a, OPK_PUT, "PUT", "/hybridConnections/", hc, NULL, body, 1, cb, ud, handle);
}

int
ahg_arm_hc_get(struct ahg_arm *a, const char *hc, ahg_arm_cb cb, void *ud,
               struct ahg_arm_op **handle)
{
    if (!name_ok(hc))
        return AHG_EINVAL;
    return op_new(a, OPK_GET, "GET", "/hybridConnections/", hc, NULL, NULL, 1, cb, ud, handle);
}

int
ahg_arm_hc_delete(struct ahg_arm *a, const char *hc, ahg_arm_cb cb, void *ud,
                  struct ahg_arm_op **handle)
{
    if (!name_ok(hc))
        return AHG_EINVAL;
    return op_new(a, OPK_DELETE, "DELETE", "/hybridConnections/", hc, NULL, NULL, 1, cb, ud,
                  handle);
}

int
ahg_arm_hc_list(struct ahg_arm *a, size_t max_items, ahg_arm_cb cb, void *ud,
                struct ahg_arm_op **handle)
{
    return op_new(a, OPK_LIST, "GET", "/hybridConnections", NULL, NULL, NULL, max_items, cb, ud,
                  handle);
}

int
ahg_arm_list_keys(struct ahg_arm *a, const char *rule, ahg_arm_cb cb, void *ud,
                  struct ahg_arm_op **handle)
{
    if (!name_ok(rule))
        return AHG_EINVAL;
    return op_new(a, OPK_KEYS, "POST", "/authorizationRules/", rule, "/listKeys", NULL, 1, cb, ud,
                  handle);
}

int
ahg_arm_regenerate_keys(struct ahg_arm *a, const char *rule, bool secondary, ahg_arm_cb cb,
                        void *ud, struct ahg_arm_op **handle)
{
    if (!name_ok(rule))
        return AHG_EINVAL;
    char *body =
        xstrdup(secondary ? "{\"keyType\":\"SecondaryKey\"}" : "{\"keyType\":\"PrimaryKey\"}");
    if (!body)
        return AHG_ENOMEM;
    return op_new(a, OPK_REGEN, "POST", "/authorizationRules/", rule, "/regenerateKeys", body, 1,
                  cb, ud, handle);
}

void
ahg_arm_cancel(struct ahg_arm_op *op)
{
    if (!op || op->cancelled)
        return;
    op->cancelled = true;
    ahg_timer_stop(&op->timer);
    op_unlink(op);
    if (op->call) {
        ahg_egress_cancel(op->call);
        op->call = NULL;
    }
    op->a = NULL;
    if (op->state != OPS_TOKEN)
        op_free(op);
}

size_t
ahg_arm_pending(const struct ahg_arm *a)
{
    return a ? a->nops : 0;
}

static bool
seg_ok(const char *s)
{
    if (!s || !s[0] || strlen(s) > 128)
        return false;
    for (const char *p = s; *p; p++)
        if (*p == '/' || *p == '?' || *p == '#' || *p == '%' || (unsigned char)*p <= ' ')
            return false;
    return true;
}

struct ahg_arm *
ahg_arm_new(struct ahg_loop *loop, struct ahg_egress *egress, struct ahg_azid *azid,
            const struct ahg_arm_opts *o, int *err)
{
    int dummy;
    if (!err)
        err = &dummy;
    *err = AHG_EINVAL;
    if (!loop || !egress || !azid || !o || !seg_ok(o->subscription) || !seg_ok(o->resource_group) ||
        !seg_ok(o->namespace_name))
        return NULL;
    const char *base = o->base_url ? o->base_url : AHG_ARM_DEFAULT_BASE;
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/')
        bl--;
    if (bl == 0 || bl > 512 ||
        (strncmp(base, "http://", 7) != 0 && strncmp(base, "https://", 8) != 0))
        return NULL;
    const char *apiv = o->api_version ? o->api_version : AHG_ARM_DEFAULT_API_VERSION;
    if (!seg_ok(apiv))
        return NULL;
    struct ahg_arm *a = calloc(1, sizeof(*a));
    char prefix[1024];
    (void)snprintf(prefix, sizeof(prefix),
                   "%.*s/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Relay/"
                   "namespaces/%s",
                   (int)bl, base, o->subscription, o->resource_group, o->namespace_name);
    if (!a || !(a->base = malloc(bl + 1)) || !(a->prefix = xstrdup(prefix)) ||
        !(a->api_version = xstrdup(apiv)) ||
        !(a->resource = xstrdup(o->resource ? o->resource : AHG_ARM_DEFAULT_RESOURCE))) {
        if (a) {
            free(a->base);
            free(a->prefix);
            free(a->api_version);
            free(a);
        }
        *err = AHG_ENOMEM;
        return NULL;
    }
    memcpy(a->base, base, bl);
    a->base[bl] = '\0';
    a->loop = loop;
    a->eg = egress;
    a->id = azid;
    a->max_retries = o->max_retries ? o->max_retries : ARM_DEF_RETRIES;
    a->backoff_ms = o->backoff_ms ? o->backoff_ms : ARM_DEF_BACKOFF;
    a->max_backoff_ms = o->max_backoff_ms ? o->max_backoff_ms : ARM_DEF_MAXBACKOFF;
    ahg_list_init(&a->ops);
    *err = AHG_OK;
    return a;
}

void
ahg_arm_free(struct ahg_arm *a)
{
    if (!a)
        return;
    struct ahg_list_node *n = a->ops.head;
    ahg_list_init(&a->ops);
    a->nops = 0;
    while (n) {
        struct ahg_arm_op *op = AHG_LIST_ENTRY(n, struct ahg_arm_op, node);
        n = n->next;
        ahg_list_node_init(&op->node);
        if (op->call) {
            ahg_egress_cancel(op->call);
            op->call = NULL;
        }
        (void)snprintf(op->message, sizeof(op->message), "ARM client closed");
        op_finish(op, AHG_ECLOSED, NULL, NULL, NULL);
    }
    free(a->base);
    free(a->prefix);
    free(a->api_version);
    free(a->resource);
    free(a);
}
