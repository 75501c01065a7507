/*
 * api.c - the management API (docs/openapi.yaml; summary in docs/state.md).
 *
 * Each request is a struct ctl_req that walks through asynchronous store, ARM and relay-key
 * steps. Store callbacks cannot be cancelled, so a request counts the callbacks it waits for
 * (pending) and is freed only when its HTTP exchange is over and nothing is pending. When the
 * controller is freed first, requests are orphaned (ctl = NULL) and their late callbacks only
 * release them.
 *
 * POST /api/tunnels: quota (SMEMBERS keysessions, dead members pruned) -> relay keys -> claim
 * ahg:sub:<id> (SET NX) -> a Hybrid Connection (SPOP ahg:pool, else ARM PUT) -> session,
 * route, sets -> PUBLISH ahg:routes -> 201 with a Listen token.
 *
 * Threading: loop thread only.
 */
#include "ctl_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "ahg/buf.h"
#include "ahg/cidr.h"
#include "ahg/crypto.h"
#include "ahg/err.h"
#include "ahg/httpd.h"
#include "ahg/log.h"
#include "ahg/metrics.h"
#include "ahg/sas.h"
#include "ahg/store.h"
#include "guard.h"

#define CTL_CLAIM_TRIES 8
#define CTL_MAX_CIDRS   64
#define CTL_REC_MAX     ((size_t)16 * 1024)

enum ctl_route { RT_NONE, RT_CREATE, RT_LIST, RT_GET, RT_DELETE, RT_TOKEN };

struct ctl_req {
    struct ahg_ctl *ctl; /* NULL once orphaned */
    struct ahg_list_node node;
    struct ahg_httpd_req *r; /* NULL once the exchange is over */
    unsigned pending;        /* store/ARM/key callbacks still due */
    bool answered;
    int status;       /* the answer's, for the access log */
    unsigned retry_s; /* Retry-After of an error answer; 0 = 5 s for 503, 30 s for 429 */
    bool keywait;
    bool dying;
    enum ctl_route rt;
    char peer[64];
    char keyid[CTL_KEYID_LEN + 1];
    char sid[CTL_SID_LEN + 1];
    struct ahg_buf body;
    uint64_t start_ms;

    /* create */
    int local_port;
    char id[CTL_ID_MAX + 1];
    bool custom;
    int tries;
    uint64_t ttl_ms;
    char *basic_user;
    char *basic_pass;
    cJSON *cidrs; /* array of canonical CIDR strings, or NULL */
    char hc[CTL_HC_MAX + 1];
    bool pooled;
    bool claimed;
    bool took_over; /* a requested subdomain: the take-over check ran once */
    char old_sid[CTL_SID_LEN + 1];
    bool rejected; /* token renewal after the relay rejected a token */
    struct ahg_arm_op *armop;
    struct ahg_timer deadline;

    /* batches */
    unsigned batch;
    int batch_err;
    size_t live;
    cJSON *session; /* the session record being served */
    cJSON *list;    /* GET /api/tunnels: collected tunnels */
};

static void req_maybe_free(struct ctl_req *q);
static void after_answer(struct ctl_req *q);

/* ---- answers ---- */

static void
count_status(struct ahg_ctl *ctl, int status)
{
    if (!ctl || !ctl->metrics)
        return;
    ahg_metric_inc(status >= 500 ? ctl->m_req_5xx : status >= 400 ? ctl->m_req_4xx : ctl->m_req_ok);
}

static void
answer_json(struct ctl_req *q, int status, cJSON *j, const char *const *extra)
{
    char *txt = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (q->answered) {
        free(txt);
        return;
    }
    q->answered = true;
    q->status = status;
    count_status(q->ctl, status);
    q->pending++;
    if (q->r) {
        if (status == 204)
            (void)ahg_httpd_respond(q->r, 204, NULL, NULL, 0, extra);
        else if (txt)
            (void)ahg_httpd_respond(q->r, status, "application/json", txt, strlen(txt), extra);
        else
            (void)ahg_httpd_respond_error(q->r, 500, "internal", "out of memory", true);
    }
    free(txt);
    after_answer(q);
}

static void answer_err(struct ctl_req *q, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
answer_err(struct ctl_req *q, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (q->answered)
        return;
    q->answered = true;
    q->status = status;
    count_status(q->ctl, status);
    if (!q->r)
        return;
    char ra[16];
    (void)snprintf(ra, sizeof(ra), "%u", q->retry_s ? q->retry_s : status == 503 ? 5u : 30u);
    const char *extra[] = {"Retry-After", ra, NULL};
    bool retry = status == 503 || status == 429;
    cJSON *j = cJSON_CreateObject();
    cJSON *e = j ? cJSON_AddObjectToObject(j, "error") : NULL;
    if (e) {
        cJSON_AddStringToObject(e, "code", code);
        cJSON_AddStringToObject(e, "message", msg);
    }
    char *txt = e ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    q->pending++;
    if (txt)
        (void)ahg_httpd_respond(q->r, status, "application/json", txt, strlen(txt),
                                retry ? extra : NULL);
    else
        (void)ahg_httpd_respond_error(q->r, status, code, msg, true);
    free(txt);
    after_answer(q);
}

static void
answer_unavail(struct ctl_req *q, const char *what, int err)
{
    answer_err(q, 503, "unavailable", "%s is unavailable (%s); try again", what, ahg_strerror(err));
}

/* ---- life cycle of a request ---- */

static void
req_free(struct ctl_req *q)
{
    if (q->ctl && ahg_list_is_linked(&q->node))
        ahg_list_remove(&q->ctl->reqs, &q->node);
    ahg_timer_stop(&q->deadline);
    ahg_buf_free(&q->body);
    if (q->basic_pass)
        memset(q->basic_pass, 0, strlen(q->basic_pass));
    free(q->basic_user);
    free(q->basic_pass);
    cJSON_Delete(q->cidrs);
    cJSON_Delete(q->session);
    cJSON_Delete(q->list);
    struct ahg_ctl *ctl = q->ctl;
    free(q);
    if (ctl)
        ctl_maybe_drained(ctl);
}

static void
req_maybe_free(struct ctl_req *q)
{
    if (q->pending == 0 && !q->r && !q->keywait && !q->armop)
        req_free(q);
}

/* A callback came back: false when the request is abandoned (and maybe freed now). */
static bool
req_back(struct ctl_req *q)
{
    q->pending--;
    if (!q->ctl || q->answered) {
        req_maybe_free(q);
        return false;
    }
    return true;
}

/* A store reply came back: false when the request is abandoned, or answered 503 here because
 * the store failed. */
static bool
store_back(struct ctl_req *q, int err)
{
    if (!req_back(q))
        return false;
    if (err != AHG_OK) {
        answer_unavail(q, "the state store", err);
        return false;
    }
    return true;
}

/* Frees on the next loop turn (the caller may still hold q). */
static void
req_defer_free(struct ctl_req *q)
{
    q->dying = true;
    ahg_timer_start(&q->deadline, 0);
}

/* After an answer: the exchange may have finished inside the respond call. */
static void
after_answer(struct ctl_req *q)
{
    q->pending--;
    if (!q->r && q->pending == 0 && !q->keywait && !q->armop)
        req_defer_free(q);
}

/* One call of a batch: counts it when it was queued, else notes the error. */
static void
batch_add(struct ctl_req *q, int rc)
{
    if (rc == AHG_OK) {
        q->pending++;
        q->batch++;
    } else if (!q->batch_err) {
        q->batch_err = rc;
    }
}

/* One reply of a batch came back: true once the last one is in and all succeeded (false when
 * the request is abandoned, the batch is still running, or it was answered 503 here). */
static bool
batch_back(struct ctl_req *q, int err)
{
    if (err != AHG_OK && !q->batch_err)
        q->batch_err = err;
    if (!req_back(q) || --q->batch)
        return false;
    if (q->batch_err) {
        answer_unavail(q, "the state store", q->batch_err);
        return false;
    }
    return true;
}

/* Bookkeeping around a store call. */
#define STORE_CALL(q, call)                                                                        \
    do {                                                                                           \
        (q)->pending++;                                                                            \
        if ((call) != AHG_OK) {                                                                    \
            (q)->pending--;                                                                        \
            answer_unavail((q), "the state store", AHG_EUNAVAIL);                                  \
            return;                                                                                \
        }                                                                                          \
    } while (0)

static void
on_finish(struct ahg_httpd_req *r, bool completed)
{
    struct ctl_req *q = ahg_httpd_req_ud(r);
    const struct ahg_http_head *h = ahg_httpd_req_head(r);
    struct ahg_log_access_rec rec = {
        .req_id = ahg_httpd_req_id(r),
        .peer = q->peer,
        .method = h && h->method ? h->method : "",
        .target = ahg_httpd_req_path(r),
        .status = completed ? q->status : 0,
        .bytes_in = ahg_httpd_req_body_bytes(r),
        .duration_ms = (double)(ahg_now_ms() - q->start_ms),
        .user_agent = h ? ahg_http_head_get(h, "User-Agent", NULL) : NULL,
    };
    ahg_log_access(&rec);
    q->r = NULL;
    /* a caller that left stops the operation at its next step (a half-made HC is collected
     * by the reconciler, a subdomain claim expires with its TTL) */
    q->answered = true;
    if (!q->ctl)
        req_maybe_free(q); /* aborted by ctl_api_abort_all, which no longer touches q */
    else if (q->pending == 0 && !q->keywait && !q->armop && !q->dying)
        req_defer_free(q);
}

void
ctl_api_abort_all(struct ahg_ctl *ctl)
{
    /* detach first: nothing may touch ctl->reqs from here on (q->ctl becomes NULL) */
    struct ahg_list_node *n = ctl->reqs.head;
    ahg_list_init(&ctl->reqs);
    while (n) {
        struct ctl_req *q = AHG_LIST_ENTRY(n, struct ctl_req, node);
        n = n->next;
        ahg_list_node_init(&q->node);
        if (q->keywait) {
            ctl_relay_keys_unwait(ctl, q);
            q->keywait = false;
        }
        if (q->armop) {
            ahg_arm_cancel(q->armop);
            q->armop = NULL;
        }
        ahg_timer_stop(&q->deadline);
        q->ctl = NULL;
        q->answered = true;
        if (q->dying)
            req_free(q);
        else if (q->r)
            ahg_httpd_resp_abort(q->r); /* on_finish frees when nothing is pending */
        else
            req_maybe_free(q);
    }
}

/* ---- records ---- */

static void
public_url(const struct ahg_ctl *ctl, const char *id, char *out, size_t outsz)
{
    if (ctl->o.public_port)
        (void)snprintf(out, outsz, "%s://%s.%s:%d", ctl->o.public_scheme, id, ctl->o.public_domain,
                       ctl->o.public_port);
    else
        (void)snprintf(out, outsz, "%s://%s.%s", ctl->o.public_scheme, id, ctl->o.public_domain);
}

static const char *
jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static long long
jnum(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? (long long)v->valuedouble : 0;
}

/* The tunnel object of the API from a session record (+ token when given). */
static cJSON *
tunnel_json(const struct ahg_ctl *ctl, const cJSON *s, const char *token, long long token_exp)
{
    cJSON *t = cJSON_CreateObject();
    if (!t)
        return NULL;
    char url[512], ts[32];
    const char *id = jstr(s, "id");
    public_url(ctl, id, url, sizeof(url));
    cJSON_AddStringToObject(t, "session_id", jstr(s, "session_id"));
    cJSON_AddStringToObject(t, "subdomain", id);
    cJSON_AddStringToObject(t, "public_url", url);
    cJSON_AddStringToObject(t, "relay_endpoint",
                            ctl->o.relay_endpoint ? ctl->o.relay_endpoint : "");
    cJSON_AddStringToObject(t, "hybrid_connection_name", jstr(s, "hc"));
    if (token) {
        cJSON_AddStringToObject(t, "listener_token", token);
        ctl_rfc3339(token_exp, ts);
        cJSON_AddStringToObject(t, "token_expires_at", ts);
    }
    ctl_rfc3339(jnum(s, "expires_at"), ts);
    cJSON_AddStringToObject(t, "expires_at", ts);
    ctl_rfc3339(jnum(s, "created_at"), ts);
    cJSON_AddStringToObject(t, "created_at", ts);
    long long lp = jnum(s, "local_port");
    if (lp > 0)
        cJSON_AddNumberToObject(t, "local_port", (double)lp);
    return t;
}

/* Route record (docs/state.md) from a session record. */
static char *
route_text(const struct ahg_ctl *ctl, const cJSON *s)
{
    cJSON *r = cJSON_CreateObject();
    if (!r)
        return NULL;
    cJSON_AddNumberToObject(r, "v", 1);
    cJSON_AddStringToObject(r, "id", jstr(s, "id"));
    cJSON_AddStringToObject(r, "session_id", jstr(s, "session_id"));
    cJSON_AddStringToObject(r, "hc", jstr(s, "hc"));
    cJSON_AddStringToObject(r, "relay", ctl->o.relay_host ? ctl->o.relay_host : "");
    const cJSON *pol = cJSON_GetObjectItemCaseSensitive(s, "policy");
    if (cJSON_IsObject(pol))
        cJSON_AddItemToObject(r, "policy", cJSON_Duplicate(pol, 1));
    cJSON_AddNumberToObject(r, "expires_at", (double)jnum(s, "expires_at"));
    char *txt = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return txt;
}

static void
k_session(const char *sid, char *out, size_t n)
{
    (void)snprintf(out, n, "ahg:session:%s", sid);
}

static void
k_route(const char *id, char *out, size_t n)
{
    (void)snprintf(out, n, "ahg:route:%s", id);
}

static void
k_sub(const char *id, char *out, size_t n)
{
    (void)snprintf(out, n, "ahg:sub:%s", id);
}

static void
k_keysessions(const char *keyid, char *out, size_t n)
{
    (void)snprintf(out, n, "ahg:keysessions:%s", keyid);
}

/* Parses a session record reply; NULL when absent or unreadable. */
static cJSON *
parse_session(const struct ahg_store_reply *rep)
{
    if (!rep || rep->type != AHG_STORE_STR || rep->len > CTL_REC_MAX)
        return NULL;
    cJSON *j = cJSON_ParseWithLength(rep->str, rep->len);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "v");
    if (!cJSON_IsNumber(v) || v->valueint != 1 || !jstr(j, "session_id")[0]) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* ---- create ---- */

static void create_claim(struct ctl_req *q);
static void create_hc(struct ctl_req *q);
static void take_over(struct ctl_req *q);
static bool delete_records(struct ctl_req *q, const char *sid, const cJSON *sess, ahg_store_cb cb);
static void create_write(struct ctl_req *q);

static void
on_create_written(struct ahg_store *s, int err, const struct ahg_store_reply *rep, void *ud)
{
    struct ctl_req *q = ud;
    (void)s;
    (void)rep;
    if (!batch_back(q, err))
        return;
    struct ahg_ctl *ctl = q->ctl;
    (void)ahg_store_publish(ctl->store, "ahg:routes", q->id, strlen(q->id), NULL, NULL);
    long long texp = ctl_now_s() + (long long)(ctl->o.token_ttl_ms / 1000);
    long long sexp = jnum(q->session, "expires_at");
    if (texp > sexp + 300)
        texp = sexp + 300;
    char tok[AHG_SAS_MAX + 1];
    int rc = ctl_sign(ctl, q->hc, texp, tok, sizeof(tok));
    if (rc != AHG_OK) {
        answer_unavail(q, "token signing", rc);
        return;
    }
    if (ctl->m_created)
        ahg_metric_inc(ctl->m_created);
    if (ctl->m_create_seconds)
        ahg_metric_observe(ctl->m_create_seconds, (double)(ahg_now_ms() - q->start_ms) / 1000.0);
    AHG_LOG_INFO("tunnel %s created: session %s, hc %s (%s), key %s", q->id, q->sid, q->hc,
                 q->pooled ? "pool" : "new", q->keyid);
    char loc[128];
    (void)snprintf(loc, sizeof(loc), "/api/tunnels/%s", q->sid);
    const char *extra[] = {"Location", loc, NULL};
    answer_json(q, 201, tunnel_json(ctl, q->session, tok, texp), extra);
    memset(tok, 0, sizeof(tok));
}

static void
create_write(struct ctl_req *q)
{
    struct ahg_ctl *ctl = q->ctl;
    long long now = ctl_now_s();
    long long ttl_s = (long long)(q->ttl_ms / 1000);
    cJSON *s = cJSON_CreateObject();
    if (!s) {
        answer_err(q, 500, "internal", "out of memory");
        return;
    }
    cJSON_AddNumberToObject(s, "v", 1);
    cJSON_AddStringToObject(s, "session_id", q->sid);
    cJSON_AddStringToObject(s, "id", q->id);
    cJSON_AddStringToObject(s, "hc", q->hc);
    cJSON_AddStringToObject(s, "keyid", q->keyid);
    cJSON_AddNumberToObject(s, "created_at", (double)now);
    cJSON_AddNumberToObject(s, "renewed_at", (double)now);
    cJSON_AddNumberToObject(s, "expires_at", (double)(now + ttl_s));
    cJSON_AddNumberToObject(s, "ttl", (double)ttl_s);
    if (q->local_port)
        cJSON_AddNumberToObject(s, "local_port", q->local_port);
    cJSON_AddBoolToObject(s, "pooled", q->pooled);
    if (q->basic_user || q->cidrs) {
        cJSON *pol = cJSON_AddObjectToObject(s, "policy");
        if (q->basic_user) {
            char pre[CTL_ID_MAX + 1024 + 2048];
            (void)snprintf(pre, sizeof(pre), "%s:%s:%s", q->id, q->basic_user, q->basic_pass);
            char hex[65];
            (void)ahg_sha256_hex(pre, strlen(pre), hex);
            memset(pre, 0, sizeof(pre));
            cJSON *arr = cJSON_AddArrayToObject(pol, "basic_auth");
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "user", q->basic_user);
            cJSON_AddStringToObject(e, "sha256", hex);
            cJSON_AddItemToArray(arr, e);
        }
        if (q->cidrs) {
            cJSON_AddItemToObject(pol, "allow_cidr", q->cidrs);
            q->cidrs = NULL;
        }
    }
    q->session = s;
    char *stext = cJSON_PrintUnformatted(s);
    char *rtext = route_text(ctl, s);
    if (!stext || !rtext) {
        free(stext);
        free(rtext);
        answer_err(q, 500, "internal", "out of memory");
        return;
    }
    char key[AHG_STORE_MAX_KEY];
    q->batch = 0;
    q->batch_err = 0;
    k_session(q->sid, key, sizeof(key));
    batch_add(q, ahg_store_set(ctl->store, key, stext, strlen(stext), q->ttl_ms, 0,
                               on_create_written, q));
    k_route(q->id, key, sizeof(key));
    batch_add(q, ahg_store_set(ctl->store, key, rtext, strlen(rtext), q->ttl_ms, 0,
                               on_create_written, q));
    batch_add(q, ahg_store_sadd(ctl->store, "ahg:sessions", q->sid, on_create_written, q));
    k_keysessions(q->keyid, key, sizeof(key));
    batch_add(q, ahg_store_sadd(ctl->store, key, q->sid, on_create_written, q));
    free(stext);
    free(rtext);
    if (q->batch == 0)
        answer_unavail(q, "the state store", q->batch_err);
}

static void
release_claim(struct ctl_req *q)
{
    if (!q->claimed || !q->ctl)
        return;
    char key[AHG_STORE_MAX_KEY];
    k_sub(q->id, key, sizeof(key));
    (void)ahg_store_cas_del(q->ctl->store, key, q->sid, NULL, NULL);
    q->claimed = false;
}

static void
on_hc_put(const struct ahg_arm_result *res, void *ud)
{
    struct ctl_req *q = ud;
    q->armop = NULL;
    ahg_timer_stop(&q->deadline);
    if (res->err == AHG_ECLOSED || !q->ctl) {
        req_maybe_free(q);
        return;
    }
    struct ahg_ctl *ctl = q->ctl;
    if (q->answered) { /* the deadline passed: the reconciler collects this HC later */
        req_maybe_free(q);
        return;
    }
    if (res->err != AHG_OK) {
        if (ctl->m_arm_err)
            ahg_metric_inc(ctl->m_arm_err);
        AHG_LOG_WARN("tunnel %s: ARM PUT %s failed: %s (%d %s)", q->id, q->hc,
                     ahg_strerror(res->err), res->status, res->code);
        release_claim(q);
        answer_err(q, 503, "unavailable",
                   "Azure Resource Manager did not create the Hybrid Connection (%s); try again",
                   ahg_strerror(res->err));
        return;
    }
    if (ctl->m_hc_created)
        ahg_metric_inc(ctl->m_hc_created);
    create_write(q);
}

static void
on_deadline(struct ahg_timer *t)
{
    struct ctl_req *q = t->ud;
    if (q->dying) {
        req_free(q);
        return;
    }
    if (q->answered)
        return;
    release_claim(q);
    answer_err(q, 503, "unavailable",
               "Azure Resource Manager is slow to create the Hybrid Connection; try again");
}

static void
on_pool_pop(struct ahg_store *s, int err, const struct ahg_store_reply *rep, void *ud)
{
    struct ctl_req *q = ud;
    (void)s;
    if (!req_back(q))
        return;
    struct ahg_ctl *ctl = q->ctl;
    if (err == AHG_OK && rep->type == AHG_STORE_STR && rep->len > 0 && rep->len <= CTL_HC_MAX) {
        memcpy(q->hc, rep->str, rep->len);
        q->hc[rep->len] = '\0';
        q->pooled = true;
        if (ctl->m_pool_hit)
            ahg_metric_inc(ctl->m_pool_hit);
        ctl_pool_kick(ctl);
        create_write(q);
        return;
    }
    if (err != AHG_OK) {
        release_claim(q);
        answer_unavail(q, "the state store", err);
        return;
    }
    if (ctl->m_pool_miss && ctl->o.pool_size)
        ahg_metric_inc(ctl->m_pool_miss);
    ctl_pool_kick(ctl);
    char rnd[13];
    (void)ahg_rand_hex(rnd, 6);
    (void)snprintf(q->hc, sizeof(q->hc), "ahg-%s", rnd);
    char md[256];
    ctl_metadata(ctl, q->sid, md, sizeof(md));
    int rc = ahg_arm_hc_put(ctl->arm, q->hc, md, on_hc_put, q, &q->armop);
    if (rc != AHG_OK) {
        release_claim(q);
        answer_unavail(q, "Azure Resource Manager", rc);
        return;
    }
    ahg_timer_start(&q->deadline, ctl->o.arm_wait_ms);
}

static void
create_hc(struct ctl_req *q)
{
    STORE_CALL(q, ahg_store_spop(q->ctl->store, "ahg:pool", on_pool_pop, q));
}

/* ---- take-over of a requested subdomain ----
 * A requested subdomain held by a session of the same API key whose Hybrid Connection has no
 * listener (its client was killed, or lost its machine) is taken over: the old session is
 * deleted as by DELETE and the claim tried once more. Otherwise the answer is 409. This lets
 * `azhexgate start --subdomain NAME` come back after a crash without waiting for the old
 * session's TTL, while a connected tunnel of the same key is never displaced. */

static void
taken(struct ctl_req *q, const char *why)
{
    answer_err(q, 409, "conflict", "subdomain '%s' is taken%s", q->id, why);
}

static void
on_take_deleted(struct ahg_store *s, int err, const struct ahg_store_reply *rep, void *ud)
{
    struct ctl_req *q = ud;
    (void)s;
    (void)rep;
    if (!batch_back(q, err))
        return;
    AHG_LOG_INFO("tunnel %s: session %s had no listener; taken over by session %s", q->id,
                 q->old_sid, q->sid);
    cJSON_Delete(q->session);
    q->session = NULL;
    create_claim(q);
}

static void
on_take_hc(const struct ahg_arm_result *res, void *ud)
{
    struct ctl_req *q = ud;
    q->armop = NULL;
    if (res->err == AHG_ECLOSED || !q->ctl || q->answered) {
        req_maybe_free(q);
        return;
    }
    if (res->err != AHG_OK && res->err != AHG_ENOTFOUND) {
        answer_unavail(q, "Azure Resource Manager", res->err);
        return;
    }
    if (res->err == AHG_OK && res->nhcs == 1 && res->hcs[0].listener_count > 0) {
        taken(q, " by a connected tunnel of this API key");
        return;
    }
    if (!delete_records(q, q->old_sid, q->session, on_take_deleted))
        answer_unavail(q, "the state store", q->batch_err);
}

static void
on_take_session(struct ahg_store *s, int err, const struct ahg_store_reply *rep, void *ud)
{
    struct ctl_req *q = ud;
    (void)s;
    if (!store_back(q, err))
        return;
    q->session = parse_session(rep);
    if (!q->session || strcmp(jstr(q->session, "session_id"), q->old_sid) != 0 ||
        strcmp(jstr(q->session, "keyid"), q->keyid) != 0 || !jstr(q->session, "hc")[0]) {
        taken(q, "");
        return;
    }
    int rc = ahg_arm_hc_get(q->ctl->arm, jstr(q->session, "hc"), on_take_hc, q, &q->armop);
    if (rc != AHG_OK)
        answer_unavail(q, "Azure Resource Manager", rc);
}

static void
on_take_sub(struct ahg_store *s, int err, const struct ahg_store_reply *rep, void *ud)
{
    struct ctl_req *q = ud;
    (void)s;
    if (!store_back(q, err))
        return;
    if (rep->type != AHG_STORE_STR) { /* released meanwhile: claim again */
        create_claim(q);
        return;
    }
    if (rep->len == 0 || rep->len > CTL_SID_LEN) {
        taken(q, "");
        return;
    }
    memcpy(q->old_sid, rep->str, rep->len);
    q->old_sid[rep->len] = '\0';
    char key[AHG_STORE_MAX_KEY];
    k_session(q->old_sid, key, sizeof(key));
    STORE_CALL(q, ahg_store_get(q->ctl->store, key, on_take_session, q));
}

static void
take_over(struct ctl_req *q)
{
    if (q->took_over) {
        taken(q, "");
        return;
    }
    q->took_over = true;
    char key[AHG_STORE_MAX_KEY];
    k_sub(q->id, key, sizeof(key));
    STORE_CALL(q, ahg_store_get(q->ctl->store, key, on_take_sub, q));
}

static void
on_claim(struct ahg_store *s, int err, const struct ahg_store_reply *rep, void *ud)
{
    struct ctl_req *q = ud;
    (void)s;
    if (!store_back(q, err))
        return;
    if (rep->type == AHG_STORE_INT && rep->integer == 1) {
        q->claimed = true;
        create_hc(q);
        return;
    }
    if (q->custom) {
        take_over(q);
        return;
    }
    if (++q->tries >= CTL_CLAIM_TRIES) {
        answer_err(q, 503, "unavailable", "no free subdomain found; try again");
        return;
    }
    q->id[0] = '\0';
    create_claim(q);
}

static void
create_claim(struct ctl_req *q)
{
    if (!q->id[0]) {
        unsigned char b = 0;
        (void)ahg_rand_bytes(&b, 1);
        size_t digits = 8 + (size_t)(b % 3);
        (void)ahg_rand_digits(q->id, digits);
    }
    char key[AHG_STORE_MAX_KEY];
    k_sub(q->id, key, sizeof(key));
    STORE_CALL(q, ahg_store_set(q->ctl->store, key, q->sid, strlen(q->sid), q->ttl_ms, AHG_STORE_NX,
                                on_claim, q));
}

/* The relay keys are loaded (or not): false when the request cannot go on (abandoned, or
 * answered 503 here). */
static bool
keys_back(struct ctl_req *q, int err)
{
    q->keywait = false;
    if (!q->ctl || q->answered) {
        req_maybe_free(q);
        return false;
    }
    if (err != AHG_OK) {
        answer_err(q, 503, "unavailable",
                   "the relay keys cannot be read through Azure Resource Manager; try again");
        return false;
    }
    return true;
}

static void
on_create_keys(void *ud, int err)
{
    struct ctl_req *q = ud;
    if (keys_back(q, err))
        create_claim(q);
}

static void
create_after_quota(struct ctl_req *q)
{
    if (ctl_relay_keys_wait(q->ctl, on_create_keys, q) != AHG_OK) {
        answer_err(q, 500, "internal", "out of memory");
        return;
    }
    q->keywait = true;
}

/* GET of a member of ahg:keysessions:<keyid>; the member is pruned when its session is gone
 * (expired by its TTL), then the reply goes on to fn. */
struct member_get {
    struct ctl_req *q;
    ahg_store_cb fn;
    char sid[CTL_SID_LEN + 1];
};

static void
on_member(struct ahg_store *s, int err, const struct ahg_store_reply *rep, void *ud)
{
    struct member_get *m = ud;
    struct ctl_req *q = m->q;
    if (err == AHG_OK && rep->type == AHG_STORE_NIL && q->ctl) {
        char key[AHG_STORE_MAX_KEY];
        k_keysessions(q->keyid, key, sizeof(key));
        (void)ahg_store_srem(q->ctl->store, key, m->sid, NULL, NULL);
    }
    ahg_store_cb fn = m->fn;
    free(m);
    fn(s, err, rep, q);
}

/* Queues a GET of member sid's session for q's batch. */
static int
member_get(struct ctl_req *q, const char *sid, ahg_store_cb fn)
{
    struct member_get *m = malloc(sizeof(*m));
    if (!m)
        return AHG_ENOMEM;
    m->q = q;
    m->fn = fn;
    memcpy(m->sid, sid, CTL_SID_LEN + 1);
    char key[AHG_STORE_MAX_KEY];
    k_session(sid, key, sizeof(key));
    int rc = ahg_store_get(q->ctl->store, key, on_member, m);
    if (rc != AHG_OK)
        free(m);
    return rc;
}

static void
on_quota_check(struct ahg_store *s, int err, const struct ahg_store_reply *rep, void *ud)
{
    struct ctl_req *q = ud;
    (void)s;
    if (err == AHG_OK && rep->type == AHG_STORE_STR && q->ctl)
        q->live++;
    if (err != AHG_OK && !q->batch_err)
        q->batch_err = err;
    if (!req_back(q))
        return;
    if (--q->batch)
        return;
    if (q->batch_err) {
        answer_unavail(q, "the state store", q->batch_err);
        return;
    }
    if (q->live >= q->ctl->o.quota) {
        answer_err(q, 429, "quota_exceeded", "this API key already has %zu live tunnels (quota %u)",
                   q->live, q->ctl->o.quota);
        return;
    }
    create_after_quota(q);
}

static void
on_quota_members(struct ahg_store *s, int err, const struct ahg_store_reply *rep, void *ud)
{
    struct ctl_req *q = ud;
    (void)s;
    if (!store_back(q, err))
        return;
    size_t n = rep->type == AHG_STORE_ARRAY ? rep->n : 0;
    if (n < q->ctl->o.quota) {
        create_after_quota(q);
        return;
    }
    /* at or over the quota: count the members whose session still exists */
    q->batch = 0;
    q->batch_err = 0;
    q->live = 0;
    for (size_t i = 0; i < n; i++) {
        if (rep->lens[i] != CTL_SID_LEN)
            continue;
        batch_add(q, member_get(q, rep->elems[i], on_quota_check));
        if (q->batch_err)
            break;
    }
    if (q->batch == 0) {
        if (q->batch_err)
            answer_unavail(q, "the state store", q->batch_err);
        else
            create_after_quota(q);
    }
}

static bool
label_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CTL_ID_MAX || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

static const char *const builtin_reserved[] = {
    "api",     "www",   "admin",      "mail",  "smtp",    "ftp",     "ns1",  "ns2",
    "gateway", "relay", "controller", "login", "status",  "metrics", "auth", "localhost",
    "app",     "dev",   "static",     "cdn",   "support", "docs",    NULL,
};

static bool
reserved(const struct ahg_ctl *ctl, const char *id)
{
    for (size_t i = 0; builtin_reserved[i]; i++)
        if (!strcmp(builtin_reserved[i], id))
            return true;
    for (size_t i = 0; ctl->o.reserved && ctl->o.reserved[i]; i++)
        if (!strcasecmp(ctl->o.reserved[i], id))
            return true;
    return false;
}

/* Parses and validates the POST body; answers 400/409 itself and returns false then. */
static bool
create_parse(struct ctl_req *q)
{
    struct ahg_ctl *ctl = q->ctl;
    q->ttl_ms = ctl->o.default_ttl_ms;
    size_t len = ahg_buf_len(&q->body);
    if (len == 0)
        return true;
    cJSON *j = cJSON_ParseWithLength((const char *)ahg_buf_data(&q->body), len);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        answer_err(q, 400, "bad_request", "the body is not a JSON object");
        return false;
    }
    bool ok = false;
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(j, "local_port");
    const cJSON *sd = cJSON_GetObjectItemCaseSensitive(j, "subdomain");
    const cJSON *ttl = cJSON_GetObjectItemCaseSensitive(j, "ttl");
    const cJSON *pol = cJSON_GetObjectItemCaseSensitive(j, "policy");
    if (lp && !cJSON_IsNull(lp)) {
        if (!cJSON_IsNumber(lp) || lp->valuedouble != (double)lp->valueint || lp->valueint < 1 ||
            lp->valueint > 65535) {
            answer_err(q, 400, "bad_request", "local_port must be an integer from 1 to 65535");
            goto out;
        }
        q->local_port = lp->valueint;
    }
    if (ttl && !cJSON_IsNull(ttl)) {
        double max_s = (double)ctl->o.max_ttl_ms / 1000.0;
        if (!cJSON_IsNumber(ttl) || ttl->valuedouble < 60 || ttl->valuedouble > max_s ||
            ttl->valuedouble != (double)(long long)ttl->valuedouble) {
            answer_err(q, 400, "bad_request", "ttl must be whole seconds from 60 to %.0f", max_s);
            goto out;
        }
        q->ttl_ms = (uint64_t)ttl->valuedouble * 1000u;
    }
    if (sd && !cJSON_IsNull(sd)) {
        if (!cJSON_IsString(sd)) {
            answer_err(q, 400, "bad_request", "subdomain must be a string");
            goto out;
        }
        if (!ctl->o.allow_custom_subdomain) {
            answer_err(q, 403, "forbidden", "custom subdomains are disabled on this server");
            goto out;
        }
        char lower[CTL_ID_MAX + 2];
        size_t n = strlen(sd->valuestring);
        if (n > CTL_ID_MAX)
            n = CTL_ID_MAX + 1;
        for (size_t i = 0; i < n; i++) {
            char c = sd->valuestring[i];
            lower[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
        lower[n] = '\0';
        if (!label_ok(lower)) {
            answer_err(q, 400, "bad_request",
                       "subdomain must be a DNS label: 1-63 of a-z, 0-9 and '-', not starting or "
                       "ending with '-'");
            goto out;
        }
        if (reserved(ctl, lower)) {
            answer_err(q, 409, "conflict", "subdomain '%s' is reserved", lower);
            goto out;
        }
        memcpy(q->id, lower, n + 1);
        q->custom = true;
    }
    if (pol && !cJSON_IsNull(pol)) {
        if (!cJSON_IsObject(pol)) {
            answer_err(q, 400, "bad_request", "policy must be an object");
            goto out;
        }
        const cJSON *ba = cJSON_GetObjectItemCaseSensitive(pol, "basic_auth");
        const cJSON *ac = cJSON_GetObjectItemCaseSensitive(pol, "allow_cidr");
        if (ba && !cJSON_IsNull(ba)) {
            const char *colon = cJSON_IsString(ba) ? strchr(ba->valuestring, ':') : NULL;
            if (!colon || colon == ba->valuestring || !colon[1] || strlen(ba->valuestring) > 1024) {
                answer_err(q, 400, "bad_request",
                           "policy.basic_auth must be \"user:password\" (both non-empty)");
                goto out;
            }
            size_t ul = (size_t)(colon - ba->valuestring);
            q->basic_user = malloc(ul + 1);
            q->basic_pass = malloc(strlen(colon + 1) + 1);
            if (!q->basic_user || !q->basic_pass) {
                answer_err(q, 500, "internal", "out of memory");
                goto out;
            }
            memcpy(q->basic_user, ba->valuestring, ul);
            q->basic_user[ul] = '\0';
            memcpy(q->basic_pass, colon + 1, strlen(colon + 1) + 1);
        }
        if (ac && !cJSON_IsNull(ac)) {
            if (!cJSON_IsArray(ac) || cJSON_GetArraySize(ac) > CTL_MAX_CIDRS) {
                answer_err(q, 400, "bad_request",
                           "policy.allow_cidr must be an array of at most %d CIDRs", CTL_MAX_CIDRS);
                goto out;
            }
            q->cidrs = cJSON_CreateArray();
            const cJSON *it;
            cJSON_ArrayForEach(it, ac)
            {
                struct ahg_cidr c;
                if (!cJSON_IsString(it) || ahg_cidr_parse(it->valuestring, &c) != AHG_OK) {
                    answer_err(q, 400, "bad_request",
                               "policy.allow_cidr: '%s' is not a CIDR such as 203.0.113.0/24",
                               cJSON_IsString(it) ? it->valuestring : "(not a string)");
                    goto out;
                }
                char canon[64];
                cJSON_AddItemToArray(q->cidrs,
                                     cJSON_CreateString(ahg_cidr_format(&c, canon, sizeof(canon))));
            }
        }
    }
    ok = true;
out:
    if (j) {
        /* wipe a password from the parse tree */
        cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "policy");
        cJSON *b = cJSON_GetObjectItemCaseSensitive(p, "basic_auth");
        if (cJSON_IsString(b))
            memset(b->valuestring, 0, strlen(b->valuestring));
    }
    cJSON_Delete(j);
    return ok;
}

static void
do_create(struct ctl_req *q)
{
    if (!create_parse(q))
        return;
    if (ahg_rand_hex(q->sid, CTL_SID_LEN / 2) != AHG_OK) {
        answer_err(q, 500, "internal", "no randomness");
        return;
    }
    char key[AHG_STORE_MAX_KEY];
    k_keysessions(q->keyid, key, sizeof(key));
    STORE_CALL(q, ahg_store_smembers(q->ctl->store, key, on_quota_members, q));
}

/* ---- get / list / delete / token ---- */

static void on_session_for(struct ahg_store *s, int err, const struct ahg_store_reply *rep,
                           void *ud);

static void
on_list_item(struct ahg_store *s, int err, const struct ahg_store_reply *rep, void *ud)
{
    struct ctl_req *q = ud;
    (void)s;
    if (err != AHG_OK && !q->batch_err)
        q->batch_err = err;
    cJSON *sess = err == AHG_OK && q->ctl ? parse_session(rep) : NULL;
    if (sess && q->list && !strcmp(jstr(sess, "keyid"), q->keyid))
        cJSON_AddItemToArray(q->list, tunnel_json(q->ctl, sess, NULL, 0));
    cJSON_Delete(sess);
    if (!req_back(q))
        return;
    if (--q->batch)
        return;
    if (q->batch_err) {
        answer_unavail(q, "the state store", q->batch_err);
        return;
    }
    cJSON *j = cJSON_CreateObject();
    if (j) {
        cJSON_AddItemToObject(j, "tunnels", q->list);
        q->list = NULL;
    }
    answer_json(q, 200, j, NULL);
}

static void
on_list_members(struct ahg_store *s, int err, const struct ahg_store_reply *rep, void *ud)
{
    struct ctl_req *q = ud;
    (void)s;
    if (!store_back(q, err))
        return;
    q->list = cJSON_CreateArray();
    q->batch = 0;
    q->batch_err = 0;
    size_t n = rep->type == AHG_STORE_ARRAY ? rep->n : 0;
    for (size_t i = 0; i < n; i++) {
        if (rep->lens[i] != CTL_SID_LEN)
            continue;
        batch_add(q, member_get(q, rep->elems[i], on_list_item));
        if (q->batch_err)
            break;
    }
    if (q->batch == 0) {
        if (q->batch_err) {
            answer_unavail(q, "the state store", q->batch_err);
            return;
        }
        cJSON *j = cJSON_CreateObject();
        cJSON_AddItemToObject(j, "tunnels", q->list);
        q->list = NULL;
        answer_json(q, 200, j, NULL);
    }
}

static void
on_deleted(struct ahg_store *s, int err, const struct ahg_store_reply *rep, void *ud)
{
    struct ctl_req *q = ud;
    (void)s;
    (void)rep;
    if (!batch_back(q, err))
        return;
    answer_json(q, 204, NULL, NULL);
}

static void
on_hc_deleted(const struct ahg_arm_result *res, void *ud)
{
    struct ahg_ctl *ctl = ud;
    if (res->err == AHG_ECLOSED)
        return;
    if (res->err != AHG_OK) {
        if (ctl->m_arm_err)
            ahg_metric_inc(ctl->m_arm_err);
        AHG_LOG_WARN("ARM DELETE failed: %s (%d %s); the reconciler retries",
                     ahg_strerror(res->err), res->status, res->code);
        return;
    }
    if (ctl->m_hc_deleted)
        ahg_metric_inc(ctl->m_hc_deleted);
}

/* Deletes the records of session sid (described by sess) in one batch answered to cb, tells
 * the gateways and deletes its Hybrid Connection. False when nothing could be sent. */
static bool
delete_records(struct ctl_req *q, const char *sid, const cJSON *sess, ahg_store_cb cb)
{
    struct ahg_ctl *ctl = q->ctl;
    const char *id = jstr(sess, "id");
    const char *hc = jstr(sess, "hc");
    char key[AHG_STORE_MAX_KEY];
    q->batch = 0;
    q->batch_err = 0;
    k_session(sid, key, sizeof(key));
    batch_add(q, ahg_store_del(ctl->store, key, cb, q));
    k_route(id, key, sizeof(key));
    batch_add(q, ahg_store_del(ctl->store, key, cb, q));
    k_sub(id, key, sizeof(key));
    batch_add(q, ahg_store_cas_del(ctl->store, key, sid, cb, q));
    batch_add(q, ahg_store_srem(ctl->store, "ahg:sessions", sid, cb, q));
    k_keysessions(jstr(sess, "keyid"), key, sizeof(key));
    batch_add(q, ahg_store_srem(ctl->store, key, sid, cb, q));
    if (q->batch == 0)
        return false;
    (void)ahg_store_publish(ctl->store, "ahg:routes", id, strlen(id), NULL, NULL);
    if (hc[0])
        (void)ahg_arm_hc_delete(ctl->arm, hc, on_hc_deleted, ctl, NULL);
    if (ctl->m_deleted)
        ahg_metric_inc(ctl->m_deleted);
    return true;
}

static void
do_delete_session(struct ctl_req *q)
{
    if (!delete_records(q, q->sid, q->session, on_deleted)) {
        answer_unavail(q, "the state store", q->batch_err);
        return;
    }
    AHG_LOG_INFO("tunnel %s deleted: session %s, hc %s", jstr(q->session, "id"), q->sid,
                 jstr(q->session, "hc"));
}

static void
on_renewed(struct ahg_store *s, int err, const struct ahg_store_reply *rep, void *ud)
{
    struct ctl_req *q = ud;
    (void)s;
    if (err != AHG_OK && !q->batch_err)
        q->batch_err = err;
    if (err == AHG_OK && rep->type == AHG_STORE_NIL && !q->batch_err)
        q->batch_err = AHG_ENOTFOUND; /* expired meanwhile */
    if (!req_back(q))
        return;
    if (--q->batch)
        return;
    struct ahg_ctl *ctl = q->ctl;
    if (q->batch_err == AHG_ENOTFOUND) {
        answer_err(q, 404, "not_found", "tunnel %s expired", q->sid);
        return;
    }
    if (q->batch_err) {
        answer_unavail(q, "the state store", q->batch_err);
        return;
    }
    const char *id = jstr(q->session, "id");
    (void)ahg_store_publish(ctl->store, "ahg:routes", id, strlen(id), NULL, NULL);
    long long texp = ctl_now_s() + (long long)(ctl->o.token_ttl_ms / 1000);
    long long sexp = jnum(q->session, "expires_at");
    if (texp > sexp + 300)
        texp = sexp + 300;
    char tok[AHG_SAS_MAX + 1];
    int rc = ctl_sign(ctl, jstr(q->session, "hc"), texp, tok, sizeof(tok));
    if (rc != AHG_OK) {
        answer_unavail(q, "token signing", rc);
        return;
    }
    if (ctl->m_renewed)
        ahg_metric_inc(ctl->m_renewed);
    answer_json(q, 200, tunnel_json(ctl, q->session, tok, texp), NULL);
    memset(tok, 0, sizeof(tok));
}

static void
do_renew(struct ctl_req *q)
{
    struct ahg_ctl *ctl = q->ctl;
    long long now = ctl_now_s();
    long long ttl = jnum(q->session, "ttl");
    if (ttl < 60)
        ttl = (long long)(ctl->o.default_ttl_ms / 1000);
    cJSON_ReplaceItemInObjectCaseSensitive(q->session, "renewed_at",
                                           cJSON_CreateNumber((double)now));
    cJSON_ReplaceItemInObjectCaseSensitive(q->session, "expires_at",
                                           cJSON_CreateNumber((double)(now + ttl)));
    char *stext = cJSON_PrintUnformatted(q->session);
    char *rtext = route_text(ctl, q->session);
    if (!stext || !rtext) {
        free(stext);
        free(rtext);
        answer_err(q, 500, "internal", "out of memory");
        return;
    }
    uint64_t px = (uint64_t)ttl * 1000u;
    const char *id = jstr(q->session, "id");
    char key[AHG_STORE_MAX_KEY];
    q->batch = 0;
    q->batch_err = 0;
    k_session(q->sid, key, sizeof(key));
    batch_add(
        q, ahg_store_set(ctl->store, key, stext, strlen(stext), px, AHG_STORE_XX, on_renewed, q));
    k_route(id, key, sizeof(key));
    batch_add(
        q, ahg_store_set(ctl->store, key, rtext, strlen(rtext), px, AHG_STORE_XX, on_renewed, q));
    k_sub(id, key, sizeof(key));
    batch_add(q, ahg_store_cas_pexpire(ctl->store, key, q->sid, px, on_renewed, q));
    free(stext);
    free(rtext);
    if (q->batch == 0)
        answer_unavail(q, "the state store", q->batch_err);
}

static void
on_renew_keys(void *ud, int err)
{
    struct ctl_req *q = ud;
    if (keys_back(q, err))
        do_renew(q);
}

static void
on_session_for(struct ahg_store *s, int err, const struct ahg_store_reply *rep, void *ud)
{
    struct ctl_req *q = ud;
    (void)s;
    if (!store_back(q, err))
        return;
    q->session = parse_session(rep);
    if (!q->session || strcmp(jstr(q->session, "keyid"), q->keyid) != 0) {
        answer_err(q, 404, "not_found", "no tunnel %s for this API key", q->sid);
        return;
    }
    struct ahg_ctl *ctl = q->ctl;
    switch (q->rt) {
    case RT_GET:
        answer_json(q, 200, tunnel_json(ctl, q->session, NULL, 0), NULL);
        break;
    case RT_DELETE:
        do_delete_session(q);
        break;
    case RT_TOKEN:
        if (q->rejected)
            ctl_relay_keys_rejected(ctl);
        if (ctl_relay_keys_wait(ctl, on_renew_keys, q) != AHG_OK) {
            answer_err(q, 500, "internal", "out of memory");
            return;
        }
        q->keywait = true;
        break;
    default:
        answer_err(q, 500, "internal", "unexpected route");
        break;
    }
}

static void
do_with_session(struct ctl_req *q)
{
    if (q->rt == RT_TOKEN && ahg_buf_len(&q->body)) {
        cJSON *j =
            cJSON_ParseWithLength((const char *)ahg_buf_data(&q->body), ahg_buf_len(&q->body));
        if (!cJSON_IsObject(j)) {
            cJSON_Delete(j);
            answer_err(q, 400, "bad_request", "the body is not a JSON object");
            return;
        }
        const cJSON *rj = cJSON_GetObjectItemCaseSensitive(j, "rejected");
        q->rejected = cJSON_IsTrue(rj);
        cJSON_Delete(j);
    }
    char key[AHG_STORE_MAX_KEY];
    k_session(q->sid, key, sizeof(key));
    STORE_CALL(q, ahg_store_get(q->ctl->store, key, on_session_for, q));
}

/* ---- dispatch ---- */

/* The caller's address: peer, or the right-most X-Forwarded-For entry that is not a trusted
 * proxy when the peer is one. */
static void
client_addr(const struct ahg_ctl *ctl, const struct ahg_http_head *h, const char *peer, char *out,
            size_t outsz)
{
    (void)snprintf(out, outsz, "%s", peer ? peer : "");
    if (!peer || ctl->proxies.n == 0 || !ahg_cidr_list_match(&ctl->proxies, peer))
        return;
    const char *xff = ahg_http_head_get(h, "X-Forwarded-For", NULL);
    if (!xff)
        return;
    char buf[1024];
    (void)snprintf(buf, sizeof(buf), "%s", xff);
    for (;;) {
        char *comma = strrchr(buf, ',');
        char *ent = comma ? comma + 1 : buf;
        while (*ent == ' ' || *ent == '\t')
            ent++;
        size_t n = strlen(ent);
        while (n && (ent[n - 1] == ' ' || ent[n - 1] == '\t'))
            ent[--n] = '\0';
        if (n == 0)
            return;
        (void)snprintf(out, outsz, "%s", ent);
        if (!ahg_cidr_list_match(&ctl->proxies, ent) || !comma)
            return;
        *comma = '\0';
    }
}

static bool
is_sid(const char *s, size_t n)
{
    if (n != CTL_SID_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static void
dispatch(struct ctl_req *q)
{
    struct ahg_ctl *ctl = q->ctl;
    if (ctl->draining) {
        answer_err(q, 503, "unavailable", "the controller is shutting down; try again");
        return;
    }
    if (ctl->allow.n && !ahg_cidr_list_match(&ctl->allow, q->peer)) {
        answer_err(q, 403, "forbidden", "address %s is not allowed to use this API", q->peer);
        return;
    }
    /* a locked-out address is refused before its key is looked at: guessing cannot go on */
    unsigned locked = ctl_guard_check(ctl->guard, q->peer, ahg_now_ms());
    if (locked) {
        if (ctl->m_throttled)
            ahg_metric_inc(ctl->m_throttled);
        q->retry_s = locked;
        answer_err(q, 429, "rate_limited",
                   "too many failed API keys from your address; try again in %u s", locked);
        return;
    }
    const struct ahg_http_head *h = ahg_httpd_req_head(q->r);
    const char *key = ahg_http_head_get(h, "X-AzHexGate-ApiKey", NULL);
    if (!ctl->keys_loaded) {
        answer_err(q, 503, "unavailable", "API keys are not loaded yet; try again");
        return;
    }
    if (!key || !ctl_key_lookup(ctl, key, q->keyid)) {
        if (ctl->m_auth_fail)
            ahg_metric_inc(ctl->m_auth_fail);
        if (ctl_guard_fail(ctl->guard, q->peer, ahg_now_ms())) {
            if (ctl->m_lockouts)
                ahg_metric_inc(ctl->m_lockouts);
            AHG_LOG_WARN("API keys: %s locked out for %u s after %u failed attempts (429 until "
                         "then)",
                         q->peer, (unsigned)((ctl->o.auth_lockout_ms + 999) / 1000),
                         ctl->o.auth_max_failures);
        }
        answer_err(q, 401, "unauthorized",
                   key ? "unknown API key" : "missing X-AzHexGate-ApiKey header");
        return;
    }
    if (!ahg_store_is_up(ctl->store)) {
        answer_unavail(q, "the state store", AHG_EUNAVAIL);
        return;
    }
    switch (q->rt) {
    case RT_CREATE:
        do_create(q);
        break;
    case RT_LIST: {
        char k[AHG_STORE_MAX_KEY];
        k_keysessions(q->keyid, k, sizeof(k));
        STORE_CALL(q, ahg_store_smembers(ctl->store, k, on_list_members, q));
        break;
    }
    default:
        do_with_session(q);
        break;
    }
}

static void
on_body(struct ahg_httpd_req *r, const char *p, size_t n)
{
    struct ctl_req *q = ahg_httpd_req_ud(r);
    (void)ahg_buf_append(&q->body, p, n); /* the cap is max_body: httpd answers 413 */
}

static void
on_body_end(struct ahg_httpd_req *r)
{
    struct ctl_req *q = ahg_httpd_req_ud(r);
    if (!q->ctl || q->answered)
        return;
    dispatch(q);
}

static const struct ahg_httpd_req_cbs req_cbs = {
    .on_body = on_body,
    .on_body_end = on_body_end,
    .on_finish = on_finish,
};

void
ahg_ctl_handle(struct ahg_ctl *ctl, struct ahg_httpd_req *r, const char *peer_addr)
{
    const struct ahg_http_head *h = ahg_httpd_req_head(r);
    const char *path = ahg_httpd_req_path(r);
    const char *method = h->method ? h->method : "";
    struct ctl_req *q = calloc(1, sizeof(*q));
    if (!q) {
        (void)ahg_httpd_respond_error(r, 500, "internal", "out of memory", true);
        return;
    }
    q->ctl = ctl;
    q->r = r;
    q->start_ms = ahg_now_ms();
    ahg_buf_init(&q->body, CTL_BODY_MAX);
    ahg_timer_init(&q->deadline, ctl->loop, on_deadline, q);
    ahg_list_node_init(&q->node);
    ahg_list_push_back(&ctl->reqs, &q->node);
    struct ahg_conn *c = ahg_httpd_req_conn(r);
    client_addr(ctl, h, peer_addr ? peer_addr : (c ? ahg_conn_peer_addr(c) : NULL), q->peer,
                sizeof(q->peer));
    ahg_httpd_req_set_cbs(r, &req_cbs, q);
    ahg_httpd_req_set_max_body(r, CTL_BODY_MAX);

    const char *allow = NULL;
    static const char base[] = "/api/tunnels";
    size_t bl = sizeof(base) - 1;
    if (strcmp(path, base) == 0 || strcmp(path, "/api/tunnels/") == 0) {
        if (!strcmp(method, "POST"))
            q->rt = RT_CREATE;
        else if (!strcmp(method, "GET") || !strcmp(method, "HEAD"))
            q->rt = RT_LIST;
        else
            allow = "GET, POST";
    } else if (strncmp(path, base, bl) == 0 && path[bl] == '/') {
        const char *sid = path + bl + 1;
        const char *slash = strchr(sid, '/');
        size_t sl = slash ? (size_t)(slash - sid) : strlen(sid);
        if (is_sid(sid, sl)) {
            memcpy(q->sid, sid, sl);
            q->sid[sl] = '\0';
            if (!slash) {
                if (!strcmp(method, "GET") || !strcmp(method, "HEAD"))
                    q->rt = RT_GET;
                else if (!strcmp(method, "DELETE"))
                    q->rt = RT_DELETE;
                else
                    allow = "GET, DELETE";
            } else if (!strcmp(slash, "/token")) {
                if (!strcmp(method, "POST"))
                    q->rt = RT_TOKEN;
                else
                    allow = "POST";
            }
        }
    }
    if (allow) {
        q->answered = true;
        q->status = 405;
        count_status(ctl, 405);
        const char *extra[] = {"Allow", allow, NULL};
        char msg[160];
        (void)snprintf(msg, sizeof(msg),
                       "{\"error\":{\"code\":\"method_not_allowed\",\"message\":\"allowed: %s\"}}",
                       allow);
        (void)ahg_httpd_respond(r, 405, "application/json", msg, strlen(msg), extra);
        return;
    }
    if (q->rt == RT_NONE) {
        answer_err(q, 404, "not_found", "no such API resource: %s %s", method, path);
        return;
    }
    /* the rest runs when the body is complete (at once when there is none) */
}
