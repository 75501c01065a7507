/*
 * proxy.c - forwarding: a tunnel's pool of relay sender streams (WebSockets to
 * <relay>/$hc/<hc>?sb-hc-action=connect, each spliced by the client to one connection to the
 * local app) and the exchanges that carry one public request over one of them: request head
 * rewritten, bodies streamed with backpressure both ways, response head parsed and rewritten,
 * 101 turned into a byte pipe. The management API upstream uses the same exchange over a plain
 * TCP connection.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <arpa/inet.h>
#include <openssl/crypto.h>

#include "ahg/azid.h"
#include "ahg/crypto.h"
#include "ahg/err.h"
#include "ahg/log.h"
#include "ahg/metrics.h"
#include "ahg/resolve.h"
#include "ahg/sas.h"
#include "gw_int.h"

#define TARGET_LOG_MAX 512

struct gw_ex {
    struct ahg_list_node node; /* gw->exchanges */
    struct gw *gw;
    struct ahg_httpd_req *r; /* NULL once finished or hijacked */
    struct gw_route_wait wait;
    struct gw_tunnel *tun;
    struct gw_stream *st; /* relay stream (tunnel exchanges) */
    struct ahg_conn *up;  /* TCP connection (API upstream) */
    struct ahg_conn *pub; /* the public connection after a 101 */
    bool api;
    bool ready;       /* head sent */
    bool req_chunked; /* re-chunk the request body */
    bool req_done;    /* the request body was sent completely */
    bool resp_head;   /* response head received */
    bool resp_done;   /* response complete */
    bool reusable;    /* the stream may carry another exchange */
    bool got_bytes;   /* any response byte received on the current stream */
    bool no_body;     /* request without a body (retry is safe) */
    bool upgrade;     /* request asks for an upgrade */
    unsigned attempts;
    int status;
    char id[GW_ID_MAX];
    char peer[64];
    char req_id[AHG_LOG_REQUEST_ID_LEN];
    char method[16];
    char target[TARGET_LOG_MAX];
    char ua[256];
    uint64_t start_ms;
    uint64_t bytes_in, bytes_out;
    struct ahg_http_parser *rp;
    char *head; /* forwarded request head (kept for a retry) */
    size_t head_len;
    struct ahg_timer timer; /* response head deadline */
};

static void ex_rx(struct gw_ex *ex, const unsigned char *p, size_t n);
static void ex_up_closed(struct gw_ex *ex);
static void ex_dial_failed(struct gw_ex *ex, int status);
static void ex_ready(struct gw_ex *ex);
static void ex_acquire(struct gw_ex *ex);
static void st_close(struct gw_stream *st, bool graceful);
static void st_to_idle(struct gw_stream *st);

/* ---------------------------------------------------------------- error pages ---- */

void
gw_error_page(struct ahg_httpd_req *r, int status, const char *title, const char *detail,
              const char *const *extra)
{
    char body[1024];
    int n = snprintf(body, sizeof(body),
                     "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>%d %s</title>"
                     "</head>\n<body><h1>%s</h1>\n<p>%s</p>\n<p><small>azhexgate</small></p>"
                     "</body></html>\n",
                     status, title, title, detail);
    if (n < 0 || (size_t)n >= sizeof(body))
        n = (int)strlen(body);
    static const char *const none[] = {NULL};
    const char *fields[8] = {"Cache-Control", "no-store", NULL};
    size_t k = 2;
    for (const char *const *e = extra ? extra : none; *e && k + 2 < 8; e += 2) {
        fields[k++] = e[0];
        fields[k++] = e[1];
    }
    fields[k] = NULL;
    (void)ahg_httpd_respond(r, status, "text/html; charset=utf-8", body, (size_t)n, fields);
}

/* ---------------------------------------------------------------- tunnels ---- */

static struct gw_tunnel *
tun_get(struct gw *gw, const struct gw_route_info *info)
{
    uint32_t b = gw_hash(info->id) % GW_HASH_SIZE;
    struct gw_tunnel *t = gw->tun_hash[b];
    while (t && strcmp(t->id, info->id) != 0)
        t = t->hnext;
    if (!t) {
        t = calloc(1, sizeof(*t));
        if (!t)
            return NULL;
        t->gw = gw;
        (void)snprintf(t->id, sizeof(t->id), "%s", info->id);
        ahg_list_init(&t->idle);
        ahg_list_init(&t->busy);
        t->hnext = gw->tun_hash[b];
        gw->tun_hash[b] = t;
        ahg_list_push_back(&gw->tunnels, &t->node);
    }
    if (strcmp(t->hc, info->hc) != 0 || strcmp(t->relay, info->relay) != 0) {
        /* the route moved to another Hybrid Connection: the old streams are useless */
        while (!ahg_list_is_empty(&t->idle))
            st_close(AHG_LIST_ENTRY(t->idle.head, struct gw_stream, node), true);
        (void)snprintf(t->hc, sizeof(t->hc), "%s", info->hc);
        (void)snprintf(t->relay, sizeof(t->relay), "%s", info->relay);
        free(t->sas);
        t->sas = NULL;
        t->sas_expiry = 0;
    }
    return t;
}

static void
tun_free(struct gw_tunnel *t)
{
    struct gw *gw = t->gw;
    struct gw_tunnel **pp = &gw->tun_hash[gw_hash(t->id) % GW_HASH_SIZE];
    while (*pp && *pp != t)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = t->hnext;
    ahg_list_remove(&gw->tunnels, &t->node);
    free(t->sas);
    free(t);
}

static bool
tun_unused(const struct gw_tunnel *t, uint64_t now, uint64_t window)
{
    return t->active == 0 && t->dialing == 0 && ahg_list_is_empty(&t->idle) &&
           ahg_list_is_empty(&t->busy) && now - t->last_active_ms > window;
}

/* ---------------------------------------------------------------- streams ---- */

static void
st_unlink(struct gw_stream *st)
{
    struct gw_tunnel *t = st->tun;
    if (!ahg_list_is_linked(&st->node))
        return;
    if (st->state == GW_ST_IDLE)
        ahg_list_remove(&t->idle, &st->node);
    else
        ahg_list_remove(&t->busy, &st->node);
}

static void
st_gone(struct gw_stream *st)
{
    struct gw *gw = st->tun->gw;
    ahg_timer_stop(&st->idle_timer);
    st_unlink(st);
    if (st->prewarm && st->state == GW_ST_DIAL && st->tun->dialing)
        st->tun->dialing--;
    st->state = GW_ST_GONE;
    st->ws = NULL;
    if (gw->m_streams)
        ahg_metric_add(gw->m_streams, -1);
    free(st);
}

static void
st_close(struct gw_stream *st, bool graceful)
{
    st->ex = NULL;
    if (st->state == GW_ST_IDLE) {
        ahg_list_remove(&st->tun->idle, &st->node);
        ahg_list_push_back(&st->tun->busy, &st->node);
        st->state = GW_ST_BUSY;
    }
    ahg_timer_stop(&st->idle_timer);
    if (!st->ws)
        return; /* waiting for a credential: dropped when it arrives */
    if (graceful && !ahg_wsconn_closing(st->ws))
        (void)ahg_wsconn_close(st->ws, 1000, "");
    else
        ahg_wsconn_abort(st->ws);
}

static void
st_idle_timeout(struct ahg_timer *tm)
{
    struct gw_stream *st = tm->ud;
    if (st->state != GW_ST_IDLE)
        return; /* taken from the pool meanwhile (ex_acquire leaves the timer armed) */
    st_close(st, true);
}

static void
ws_open(struct ahg_wsconn *ws, const struct ahg_http_head *resp)
{
    (void)resp;
    struct gw_stream *st = ahg_wsconn_ud(ws);
    if (st->prewarm && st->tun->dialing)
        st->tun->dialing--;
    if (st->ex) {
        st->state = GW_ST_BUSY;
        ex_ready(st->ex);
    } else {
        st->state = GW_ST_BUSY; /* st_to_idle moves it from busy */
        st_to_idle(st);
    }
}

static void
ws_fail(struct ahg_wsconn *ws, int status, const char *reason, const struct ahg_http_head *resp,
        const char *body)
{
    (void)resp;
    (void)body;
    struct gw_stream *st = ahg_wsconn_ud(ws);
    struct gw_ex *ex = st->ex;
    AHG_LOGF(AHG_LOG_LVL_DEBUG, NULL, "relay stream to %s/%s failed: %d %s", st->tun->relay,
             st->tun->hc, status, reason ? reason : "");
    st_gone(st);
    if (ex) {
        ex->st = NULL;
        ex_dial_failed(ex, status);
    }
}

static void
ws_frame_data(struct ahg_wsconn *ws, const unsigned char *p, size_t n)
{
    struct gw_stream *st = ahg_wsconn_ud(ws);
    if (st->ex)
        ex_rx(st->ex, p, n);
    else if (st->state == GW_ST_IDLE)
        st_close(st, false); /* bytes nobody asked for: the stream is out of step */
}

static void
ws_frame_begin(struct ahg_wsconn *ws, enum ahg_ws_opcode op, bool fin, uint64_t len)
{
    (void)ws;
    (void)op;
    (void)fin;
    (void)len;
}

static void ex_tx_drain(struct gw_ex *ex);

static void
ws_drain(struct ahg_wsconn *ws)
{
    struct gw_stream *st = ahg_wsconn_ud(ws);
    if (st->ex)
        ex_tx_drain(st->ex);
}

static void
ws_close(struct ahg_wsconn *ws, uint16_t code)
{
    (void)code;
    struct gw_stream *st = ahg_wsconn_ud(ws);
    struct gw_ex *ex = st->ex;
    st_gone(st);
    if (ex) {
        ex->st = NULL;
        ex_up_closed(ex);
    }
}

static const struct ahg_wsconn_cbs stream_cbs = {
    .on_open = ws_open,
    .on_fail = ws_fail,
    .on_frame_begin = ws_frame_begin,
    .on_frame_data = ws_frame_data,
    .on_drain = ws_drain,
    .on_close = ws_close,
};

static void
st_to_idle(struct gw_stream *st)
{
    struct gw_tunnel *t = st->tun;
    struct gw *gw = t->gw;
    st->ex = NULL;
    if (gw->draining || gw->freeing) {
        st_close(st, true);
        return;
    }
    ahg_list_remove(&t->busy, &st->node);
    st->state = GW_ST_IDLE;
    ahg_list_push_front(&t->idle, &st->node);
    ahg_timer_start(&st->idle_timer,
                    gw->o.pool_idle_timeout_ms ? gw->o.pool_idle_timeout_ms : 60000);
    unsigned max = gw->o.pool_max_idle ? gw->o.pool_max_idle : GW_POOL_MAX_IDLE_DEFAULT;
    while (t->idle.count > max) {
        struct gw_stream *old = AHG_LIST_ENTRY(t->idle.head->prev, struct gw_stream, node);
        st_close(old, true);
    }
}

/* Where a relay host is dialed: fills address/port/tls/tls_host. Returns AHG_OK, AHG_EAGAIN
 * (resolve first), AHG_EINVAL. */
static int
relay_target(struct gw *gw, const char *relay, char *addr, size_t addrsz, int *port, bool *tls)
{
    if (gw->relay_endpoint) {
        (void)snprintf(addr, addrsz, "%s", gw->relay_addr);
        *port = gw->relay_port;
        *tls = gw->relay_tls;
        return AHG_OK;
    }
    if (gw->relay_map) {
        size_t rl = strlen(relay);
        const char *m = gw->relay_map;
        while (*m) {
            m += strspn(m, " ,");
            size_t el = strcspn(m, ",");
            const char *eq = memchr(m, '=', el);
            if (eq && (size_t)(eq - m) == rl && strncasecmp(m, relay, rl) == 0) {
                const char *v = eq + 1;
                size_t vl = el - (size_t)(v - m);
                const char *colon = NULL;
                for (size_t i = vl; i > 0; i--)
                    if (v[i - 1] == ':') {
                        colon = v + i - 1;
                        break;
                    }
                if (!colon || (size_t)(colon - v) >= addrsz)
                    return AHG_EINVAL;
                size_t al = (size_t)(colon - v);
                if (al >= 2 && v[0] == '[') {
                    memcpy(addr, v + 1, al - 2);
                    addr[al - 2] = '\0';
                } else {
                    memcpy(addr, v, al);
                    addr[al] = '\0';
                }
                char *end = NULL;
                long pn = strtol(colon + 1, &end, 10);
                *port = (int)pn;
                *tls = false;
                return end && (*end == '\0' || *end == ',') && pn > 0 && pn < 65536 ? AHG_OK
                                                                                    : AHG_EINVAL;
            }
            m += el;
        }
    }
    unsigned char tmp[16];
    if (inet_pton(AF_INET, relay, tmp) == 1 || inet_pton(AF_INET6, relay, tmp) == 1) {
        (void)snprintf(addr, addrsz, "%s", relay);
        *port = 443;
        *tls = true;
        return AHG_OK;
    }
    return AHG_EAGAIN;
}

static void st_dial_now(struct gw_stream *st, const char *addr, int port, bool tls,
                        const char *token);

static void
dial_fail_early(struct gw_stream *st, int status)
{
    struct gw_ex *ex = st->ex;
    st_gone(st);
    if (ex) {
        ex->st = NULL;
        ex_dial_failed(ex, status);
    }
}

struct resolve_ctx {
    struct gw_stream *st;
    char token[GW_TOKEN_MAX];
};

static void
on_resolved(int err, const char *numeric_address, void *ud)
{
    struct resolve_ctx *c = ud;
    struct gw_stream *st = c->st;
    if (err != AHG_OK || !numeric_address) {
        AHG_LOG_WARN("cannot resolve the relay host %s: %s", st->tun->relay, ahg_strerror(err));
        dial_fail_early(st, 0);
    } else {
        st_dial_now(st, numeric_address, 443, true, c->token[0] ? c->token : NULL);
    }
    OPENSSL_cleanse(c->token, sizeof(c->token));
    free(c);
}

static void
st_with_token(struct gw_stream *st, const char *token)
{
    struct gw *gw = st->tun->gw;
    if (!st->ex && !st->prewarm) { /* the exchange gave up meanwhile: keep it warm */
        st->prewarm = true;
        st->tun->dialing++;
    }
    if (gw->freeing || gw->draining) {
        dial_fail_early(st, 0);
        return;
    }
    char addr[64];
    int port = 0;
    bool tls = false;
    int rc = relay_target(gw, st->tun->relay, addr, sizeof(addr), &port, &tls);
    if (rc == AHG_EAGAIN) {
        struct resolve_ctx *rc2 = calloc(1, sizeof(*rc2));
        if (rc2) {
            rc2->st = st;
            (void)snprintf(rc2->token, sizeof(rc2->token), "%s", token ? token : "");
            if (ahg_resolve(gw->loop, st->tun->relay, 443, on_resolved, rc2) == AHG_OK)
                return;
            free(rc2);
        }
    }
    if (rc != AHG_OK) {
        AHG_LOG_WARN("relay host %s has no address mapping", st->tun->relay);
        dial_fail_early(st, 0);
        return;
    }
    st_dial_now(st, addr, port, tls, token);
}

static void
on_azid_token(int err, const char *token, int64_t expires_on, void *ud)
{
    (void)expires_on;
    struct gw_stream *st = ud;
    if (err == AHG_ECLOSED) { /* the identity client is freed (after the loop) */
        st_unlink(st);
        free(st);
        return;
    }
    if (err != AHG_OK) {
        AHG_LOG_WARN("relay credential unavailable: %s", ahg_strerror(err));
        dial_fail_early(st, 401);
        return;
    }
    char hdr[GW_TOKEN_MAX];
    (void)snprintf(hdr, sizeof(hdr), "Bearer %s", token);
    st_with_token(st, hdr);
}

/* Starts a stream of tunnel t, for ex (NULL: a background pre-dial). False when it could not
 * start (nothing reported to ex then); a dial that fails at once is reported to ex. */
static bool
st_dial(struct gw_tunnel *t, struct gw_ex *ex, bool retried)
{
    struct gw *gw = t->gw;
    struct gw_stream *st = calloc(1, sizeof(*st));
    if (!st)
        return false;
    st->tun = t;
    st->ex = ex;
    st->state = GW_ST_DIAL;
    st->retried = retried;
    st->prewarm = ex == NULL;
    ahg_list_node_init(&st->node);
    ahg_timer_init(&st->idle_timer, gw->loop, st_idle_timeout, st);
    ahg_list_push_back(&t->busy, &st->node);
    if (st->prewarm) {
        t->dialing++;
        if (gw->m_prewarm)
            ahg_metric_inc(gw->m_prewarm);
    }
    if (gw->m_streams)
        ahg_metric_add(gw->m_streams, 1);
    if (ex)
        ex->st = st;
    if (gw->o.azid) {
        int rc = ahg_azid_get(gw->o.azid, gw->azid_resource, on_azid_token, st);
        if (rc != AHG_OK) {
            st->ex = NULL;
            if (ex)
                ex->st = NULL;
            st_gone(st);
            return false;
        }
        return true;
    }
    const char *token = NULL;
    if (gw->sas_key) {
        long long now = (long long)time(NULL);
        if (!t->sas || t->sas_expiry - now < 300) {
            char aud[GW_HOST_MAX + GW_HC_MAX + 16];
            (void)snprintf(aud, sizeof(aud), "http://%s/%s/", t->relay, t->hc);
            for (char *c = aud; *c; c++)
                if (*c >= 'A' && *c <= 'Z')
                    *c = (char)(*c - 'A' + 'a');
            /* kept at its own size: a tunnel the gateway knows costs no 2 KiB token buffer */
            char tok[AHG_SAS_MAX + 1];
            free(t->sas);
            t->sas = NULL;
            if (ahg_sas_create(aud, gw->sas_key_name, gw->sas_key, now + 3600, tok, sizeof(tok)) ==
                    AHG_OK &&
                (t->sas = strdup(tok)) != NULL)
                t->sas_expiry = now + 3600;
            memset(tok, 0, sizeof(tok));
        }
        token = t->sas;
    }
    st_with_token(st, token);
    return true;
}

static void
st_dial_now(struct gw_stream *st, const char *addr, int port, bool tls, const char *token)
{
    struct gw_tunnel *t = st->tun;
    struct gw *gw = t->gw;
    char target[GW_HC_MAX + 64];
    (void)snprintf(target, sizeof(target), "/$hc/%s?sb-hc-action=connect", t->hc);
    const char *hdrs[5] = {NULL};
    size_t k = 0;
    if (token) {
        hdrs[k++] = "ServiceBusAuthorization";
        hdrs[k++] = token;
    }
    hdrs[k] = NULL;
    struct ahg_wsconn_client_opts wo = {
        .conn = {.address = addr,
                 .port = port,
                 .tls = tls,
                 .tls_host = tls ? (gw->relay_tls_host ? gw->relay_tls_host : t->relay) : NULL,
                 .insecure = gw->o.relay_insecure,
                 .connect_timeout_ms = 10000},
        .host = t->relay,
        .target = target,
        .headers = hdrs,
        .handshake_timeout_ms = gw->o.connect_timeout_ms ? gw->o.connect_timeout_ms : 10000,
    };
    int err = 0;
    st->ws = ahg_wsconn_connect(gw->loop, &wo, &stream_cbs, st, &err);
    if (!st->ws)
        dial_fail_early(st, 0);
}

/* ---------------------------------------------------------------- exchange ---- */

static void
ex_free(struct gw_ex *ex)
{
    struct gw *gw = ex->gw;
    gw_route_cancel(gw, &ex->wait);
    ahg_timer_stop(&ex->timer);
    if (ex->tun) {
        if (ex->tun->active)
            ex->tun->active--;
        ex->tun->last_active_ms = ahg_now_ms();
    }
    ahg_list_remove(&gw->exchanges, &ex->node);
    ahg_http_parser_free(ex->rp);
    free(ex->head);
    free(ex);
}

static void
ex_log(struct gw_ex *ex, int status)
{
    struct gw *gw = ex->gw;
    double ms = (double)(ahg_now_ms() - ex->start_ms);
    gw_count_answer(gw, status);
    if (gw->metrics) {
        if (gw->m_latency)
            ahg_metric_observe(gw->m_latency, ms / 1000.0);
        if (gw->m_bytes_in)
            ahg_metric_add(gw->m_bytes_in, (double)ex->bytes_in);
        if (gw->m_bytes_out)
            ahg_metric_add(gw->m_bytes_out, (double)ex->bytes_out);
    }
    if (!gw->o.access_log)
        return;
    struct ahg_log_access_rec rec = {
        .req_id = ex->req_id,
        .tunnel_id = ex->id[0] ? ex->id : NULL,
        .peer = ex->peer,
        .method = ex->method,
        .target = ex->target,
        .status = status,
        .bytes_in = ex->bytes_in,
        .bytes_out = ex->bytes_out,
        .duration_ms = ms,
        .user_agent = ex->ua[0] ? ex->ua : NULL,
    };
    ahg_log_access(&rec);
}

/* Detaches the stream from the exchange: back to the pool when it can carry another one. */
static void
ex_release_stream(struct gw_ex *ex, bool reuse)
{
    struct gw_stream *st = ex->st;
    ex->st = NULL;
    if (ex->up) {
        struct ahg_conn *c = ex->up;
        ex->up = NULL;
        ahg_conn_set_ops(c, &ahg_conn_null_ops, NULL);
        ahg_conn_abort(c);
    }
    if (!st)
        return;
    st->ex = NULL;
    if (st->state == GW_ST_DIAL) {
        if (!st->prewarm) { /* finish the dial in the background: the stream joins the pool */
            st->prewarm = true;
            st->tun->dialing++;
        }
        return;
    }
    st->used = true;
    if (reuse && st->ws && !ahg_wsconn_closing(st->ws))
        st_to_idle(st);
    else
        st_close(st, reuse);
}

static void
on_finish(struct ahg_httpd_req *r, bool completed)
{
    struct gw_ex *ex = ahg_httpd_req_ud(r);
    ex->r = NULL;
    ex->bytes_in = ahg_httpd_req_body_bytes(r);
    if (!completed)
        AHG_LOG_DEBUG("exchange %s ended early (status %d)", ex->req_id, ex->status);
    int status = ex->status ? ex->status : 499;
    if (!completed && ex->status == 0)
        status = 499;
    ex_log(ex, status);
    bool reuse = completed && ex->resp_done && ex->req_done && ex->reusable;
    ex_release_stream(ex, reuse);
    ex_free(ex);
}

static int
tx_send(struct gw_ex *ex, const void *p, size_t n)
{
    if (ex->up)
        return ahg_conn_write(ex->up, p, n);
    if (ex->st && ex->st->ws)
        return ahg_wsconn_send(ex->st->ws, AHG_WS_BINARY, p, n);
    return AHG_ECLOSED;
}

static bool
tx_writable(const struct gw_ex *ex)
{
    if (ex->up)
        return ahg_conn_writable(ex->up);
    if (ex->st && ex->st->ws)
        return ahg_wsconn_writable(ex->st->ws);
    return false;
}

static void
rx_pause(struct gw_ex *ex)
{
    if (ex->up)
        ahg_conn_pause_read(ex->up);
    else if (ex->st && ex->st->ws)
        ahg_wsconn_pause_read(ex->st->ws);
}

static void
rx_resume(struct gw_ex *ex)
{
    if (ex->up)
        ahg_conn_resume_read(ex->up);
    else if (ex->st && ex->st->ws)
        ahg_wsconn_resume_read(ex->st->ws);
}

static void
ex_fail(struct gw_ex *ex, int status, const char *title, const char *detail)
{
    if (!ex->r)
        return;
    ex->status = status;
    ex->reusable = false;
    if (ahg_httpd_resp_started(ex->r)) {
        ahg_httpd_resp_abort(ex->r);
        return;
    }
    gw_error_page(ex->r, status, title, detail, NULL);
}

static void
on_req_body(struct ahg_httpd_req *r, const char *p, size_t n)
{
    struct gw_ex *ex = ahg_httpd_req_ud(r);
    int rc = AHG_OK;
    if (ex->req_chunked) {
        char sz[24];
        int l = snprintf(sz, sizeof(sz), "%zx\r\n", n);
        rc = tx_send(ex, sz, (size_t)l);
        if (rc == AHG_OK)
            rc = tx_send(ex, p, n);
        if (rc == AHG_OK)
            rc = tx_send(ex, "\r\n", 2);
    } else {
        rc = tx_send(ex, p, n);
    }
    if (rc != AHG_OK) {
        AHG_LOG_DEBUG("request body could not be forwarded: %s", ahg_strerror(rc));
        ex->reusable = false;
        return; /* the stream's close reports the failure */
    }
    if (!tx_writable(ex))
        ahg_httpd_req_pause_body(r);
}

static void
on_req_body_end(struct ahg_httpd_req *r)
{
    struct gw_ex *ex = ahg_httpd_req_ud(r);
    if (!ex->ready)
        return; /* a body-less request before the stream was ready: sent with the head */
    if (ex->req_chunked && tx_send(ex, "0\r\n\r\n", 5) != AHG_OK)
        ex->reusable = false;
    ex->req_done = true;
    /* the local service has the whole request: its answer is due within the response timeout */
    if (!ex->resp_head)
        ahg_timer_start(&ex->timer,
                        ex->gw->o.response_timeout_ms ? ex->gw->o.response_timeout_ms : 120000);
}

static void
ex_tx_drain(struct gw_ex *ex)
{
    if (ex->pub) {
        ahg_conn_resume_read(ex->pub);
        return;
    }
    if (ex->r && ex->ready && !ahg_httpd_req_body_done(ex->r))
        ahg_httpd_req_resume_body(ex->r);
}

static void
on_resp_drain(struct ahg_httpd_req *r)
{
    struct gw_ex *ex = ahg_httpd_req_ud(r);
    rx_resume(ex);
}

static const struct ahg_httpd_req_cbs req_cbs = {
    .on_body = on_req_body,
    .on_body_end = on_req_body_end,
    .on_drain = on_resp_drain,
    .on_finish = on_finish,
};

static void
ex_timeout(struct ahg_timer *t)
{
    struct gw_ex *ex = t->ud;
    if (ex->resp_head || !ex->r)
        return;
    ex_release_stream(ex, false);
    ex_fail(ex, 504, "Gateway Timeout",
            ex->api ? "The management API did not answer in time."
                    : "The tunnel's local service did not answer in time.");
}

/* Builds the head sent to the local app. */
static int
ex_build_head(struct gw_ex *ex)
{
    struct gw *gw = ex->gw;
    const struct ahg_http_head *in = ahg_httpd_req_head(ex->r);
    const char *path = ahg_httpd_req_path(ex->r);
    const char *query = ahg_httpd_req_query(ex->r);
    char *target = malloc(strlen(path) + strlen(query) + 2);
    if (!target)
        return AHG_ENOMEM;
    (void)sprintf(target, "%s%s%s", path, *query ? "?" : "", query);
    int err = 0;
    struct ahg_http_head *h = ahg_http_head_new_request(in->method, target, &err);
    free(target);
    if (!h)
        return err;
    int rc = AHG_OK;
    for (size_t i = 0; i < in->nfields && rc == AHG_OK; i++)
        rc = ahg_http_head_add(h, in->fields[i].name, in->fields[i].value);
    const char *upg = ex->upgrade ? ahg_http_head_get(in, "Upgrade", NULL) : NULL;
    char upgbuf[128] = "";
    if (upg)
        (void)snprintf(upgbuf, sizeof(upgbuf), "%s", upg);
    if (rc == AHG_OK)
        rc = ahg_http_head_strip_hop_by_hop(h, NULL);
    static const char *const drop[] = {"X-Forwarded-For",
                                       "X-Forwarded-Proto",
                                       "X-Forwarded-Host",
                                       "Forwarded",
                                       "Expect",
                                       "X-Request-Id",
                                       NULL};
    for (const char *const *d = drop; *d; d++)
        ahg_http_head_remove(h, *d);
    /* an absolute-form target's authority replaces Host (RFC 9112 3.2.2) */
    char hbuf[GW_HOST_MAX];
    const char *host = gw_req_host(ex->r, hbuf, sizeof(hbuf));
    const char *tgt = in->target ? in->target : "/";
    if (rc == AHG_OK && host && tgt[0] != '/' && tgt[0] != '*')
        rc = ahg_http_head_set(h, "Host", host);
    bool tls = ahg_conn_is_tls(ahg_httpd_req_conn(ex->r));
    char fwd[512];
    bool v6 = strchr(ex->peer, ':') != NULL;
    (void)snprintf(fwd, sizeof(fwd), "for=%s%s%s;host=%s;proto=%s", v6 ? "\"[" : "", ex->peer,
                   v6 ? "]\"" : "", host ? host : "", tls ? "https" : "http");
    char via[128];
    const char *prev_via = ahg_http_head_get(in, "Via", NULL);
    (void)snprintf(via, sizeof(via), "1.1 %s", gw->via);
    if (rc == AHG_OK)
        rc = ahg_http_head_add(h, "X-Forwarded-For", ex->peer);
    if (rc == AHG_OK)
        rc = ahg_http_head_add(h, "X-Forwarded-Proto", tls ? "https" : "http");
    if (rc == AHG_OK && host)
        rc = ahg_http_head_add(h, "X-Forwarded-Host", host);
    if (rc == AHG_OK)
        rc = ahg_http_head_add(h, "Forwarded", fwd);
    if (rc == AHG_OK)
        rc = ahg_http_head_add(h, "X-Request-Id", ex->req_id);
    if (rc == AHG_OK) {
        if (prev_via) {
            char *joined = malloc(strlen(prev_via) + strlen(via) + 3);
            if (!joined) {
                rc = AHG_ENOMEM;
            } else {
                (void)sprintf(joined, "%s, %s", prev_via, via);
                rc = ahg_http_head_set(h, "Via", joined);
                free(joined);
            }
        } else {
            rc = ahg_http_head_add(h, "Via", via);
        }
    }
    if (rc == AHG_OK && ex->req_chunked)
        rc = ahg_http_head_add(h, "Transfer-Encoding", "chunked");
    if (rc == AHG_OK && upgbuf[0]) {
        rc = ahg_http_head_add(h, "Connection", "Upgrade");
        if (rc == AHG_OK)
            rc = ahg_http_head_add(h, "Upgrade", upgbuf);
    }
    size_t need = 0;
    if (rc == AHG_OK) {
        rc = ahg_http_head_serialize(h, 0, NULL, 0, &need);
        if (rc == AHG_ELIMIT)
            rc = AHG_OK;
    }
    if (rc == AHG_OK) {
        ex->head = malloc(need);
        rc = ex->head ? ahg_http_head_serialize(h, 0, ex->head, need, &ex->head_len) : AHG_ENOMEM;
    }
    ahg_http_head_free(h);
    return rc;
}

static void
ex_ready(struct gw_ex *ex)
{
    if (!ex->r) {
        ex_release_stream(ex, true);
        return;
    }
    if (!ex->rp) {
        int err = 0;
        ex->rp = ahg_http_parser_new(AHG_HTTP_RESPONSE, NULL, &err);
        if (!ex->rp) {
            ex_release_stream(ex, false);
            ex_fail(ex, 503, "Service Unavailable", "The gateway is out of memory.");
            return;
        }
    }
    ahg_http_parser_reset(ex->rp);
    (void)ahg_http_parser_set_request_method(ex->rp, ex->method);
    ex->got_bytes = false;
    ex->reusable = true;
    if (!ex->head && ex_build_head(ex) != AHG_OK) {
        ex_release_stream(ex, false);
        ex_fail(ex, 502, "Bad Gateway", "The request could not be forwarded.");
        return;
    }
    if (tx_send(ex, ex->head, ex->head_len) != AHG_OK) {
        ex_release_stream(ex, false);
        ex_fail(ex, 502, "Bad Gateway", "The tunnel closed the connection.");
        return;
    }
    ex->ready = true;
    if (ahg_httpd_req_body_done(ex->r)) {
        on_req_body_end(ex->r);
    } else {
        ahg_httpd_req_resume_body(ex->r);
    }
}

/* ---- the byte pipe after a 101 ---- */

static void
pipe_maybe_free(struct gw_ex *ex)
{
    if (!ex->pub && !ex->st)
        ex_free(ex);
}

static size_t
pub_data(struct ahg_conn *c, const unsigned char *p, size_t n)
{
    struct gw_ex *ex = ahg_conn_ud(c);
    if (!ex->st || !ex->st->ws)
        return n;
    if (ahg_wsconn_send(ex->st->ws, AHG_WS_BINARY, p, n) != AHG_OK) {
        ahg_conn_close(c);
        return n;
    }
    ex->bytes_in += n;
    if (!ahg_wsconn_writable(ex->st->ws))
        ahg_conn_pause_read(c);
    return n;
}

static void
pub_drain(struct ahg_conn *c)
{
    struct gw_ex *ex = ahg_conn_ud(c);
    if (ex->st && ex->st->ws)
        ahg_wsconn_resume_read(ex->st->ws);
}

static void
pub_close(struct ahg_conn *c, enum ahg_conn_end why)
{
    (void)c;
    (void)why;
    struct gw_ex *ex = ahg_conn_ud(c);
    ex->pub = NULL;
    if (ex->st) {
        struct gw_stream *st = ex->st;
        ex->st = NULL;
        st->ex = NULL;
        st_close(st, true);
    }
    pipe_maybe_free(ex);
}

static const struct ahg_conn_ops pub_ops = {
    .on_data = pub_data,
    .on_drain = pub_drain,
    .on_close = pub_close,
};

static void
ex_start_pipe(struct gw_ex *ex, struct ahg_http_head *h, const unsigned char *rest, size_t n)
{
    struct gw *gw = ex->gw;
    char via[128];
    (void)snprintf(via, sizeof(via), "1.1 %s", gw->via);
    (void)ahg_http_head_add(h, "Via", via);
    size_t need = 0;
    (void)ahg_http_head_serialize(h, 0, NULL, 0, &need);
    char *buf = malloc(need);
    size_t len = 0;
    if (!buf || ahg_http_head_serialize(h, 0, buf, need, &len) != AHG_OK) {
        free(buf);
        ahg_http_head_free(h);
        ex_release_stream(ex, false);
        ex_fail(ex, 502, "Bad Gateway", "The upgrade answer could not be forwarded.");
        return;
    }
    ahg_http_head_free(h);
    ex->status = 101;
    ex_log(ex, 101);
    struct ahg_httpd_req *r = ex->r;
    ex->r = NULL;
    ex->pub = ahg_httpd_req_hijack(r, &pub_ops, ex);
    if (!ex->pub) {
        free(buf);
        ex->r = r;
        ex_release_stream(ex, false);
        ex_fail(ex, 502, "Bad Gateway", "The upgrade could not be completed.");
        return;
    }
    (void)ahg_conn_write(ex->pub, buf, len);
    free(buf);
    if (n) {
        (void)ahg_conn_write(ex->pub, rest, n);
        ex->bytes_out += n;
    }
}

static int
resp_body_cb(void *ud, const char *data, size_t len)
{
    struct gw_ex *ex = ud;
    if (!ex->r)
        return AHG_ECLOSED;
    ex->bytes_out += len;
    return ahg_httpd_resp_write(ex->r, data, len);
}

/* The response head is complete: forward it. Returns false when the exchange ended. */
static bool
ex_resp_head(struct gw_ex *ex)
{
    struct gw *gw = ex->gw;
    struct ahg_http_head *h = ahg_http_parser_head_take(ex->rp);
    if (!h)
        return false;
    enum ahg_http_framing fr = ahg_http_parser_framing(ex->rp);
    int64_t len = AHG_HTTPD_LEN_CHUNKED;
    if (fr == AHG_HTTP_BODY_LENGTH) {
        len = (int64_t)h->content_length;
    } else if (fr == AHG_HTTP_BODY_NONE) {
        len = 0;
        const char *cl = ahg_http_head_get(h, "Content-Length", NULL);
        if (cl && strcmp(ex->method, "HEAD") == 0)
            len = (int64_t)strtoll(cl, NULL, 10);
    }
    if (!h->keep_alive || fr == AHG_HTTP_BODY_CLOSE)
        ex->reusable = false;
    ex->status = h->status;
    (void)ahg_http_head_strip_hop_by_hop(h, NULL);
    char via[128];
    (void)snprintf(via, sizeof(via), "1.1 %s", gw->via);
    (void)ahg_http_head_add(h, "Via", via);
    h->version_major = 1;
    h->version_minor = 1;
    int rc = ahg_httpd_resp_begin(ex->r, h, len);
    if (rc != AHG_OK) {
        ex->reusable = false;
        ahg_httpd_resp_abort(ex->r);
        return false;
    }
    return true;
}

static void
ex_rx(struct gw_ex *ex, const unsigned char *p, size_t n)
{
    if (ex->pub) { /* the byte pipe after a 101 */
        if (ahg_conn_write(ex->pub, p, n) != AHG_OK) {
            ahg_conn_close(ex->pub);
            return;
        }
        ex->bytes_out += n;
        if (!ahg_conn_writable(ex->pub))
            rx_pause(ex);
        return;
    }
    if (n)
        ex->got_bytes = true;
    while (n > 0 || (ex->resp_head && !ex->resp_done)) {
        if (!ex->r) {
            ex->reusable = false;
            return;
        }
        size_t used = 0;
        if (!ex->resp_head) {
            int rc = ahg_http_parser_feed(ex->rp, (const char *)p, n, &used);
            p += used;
            n -= used;
            if (rc == AHG_EAGAIN)
                return;
            if (rc != AHG_OK) {
                ex_release_stream(ex, false);
                ex_fail(ex, 502, "Bad Gateway", "The local service sent a malformed response.");
                return;
            }
            const struct ahg_http_head *h = ahg_http_parser_head(ex->rp);
            if (h->status >= 100 && h->status < 200 && h->status != 101) {
                ahg_http_parser_reset(ex->rp); /* interim answers are not forwarded */
                (void)ahg_http_parser_set_request_method(ex->rp, ex->method);
                continue;
            }
            ahg_timer_stop(&ex->timer);
            ex->resp_head = true;
            if (h->status == 101) {
                if (!ex->upgrade) {
                    ex_release_stream(ex, false);
                    ex_fail(ex, 502, "Bad Gateway",
                            "The local service switched protocols unasked.");
                    return;
                }
                ex_start_pipe(ex, ahg_http_parser_head_take(ex->rp), p, n);
                return;
            }
            if (!ex_resp_head(ex))
                return;
            continue;
        }
        int rc = ahg_http_parser_body(ex->rp, (const char *)p, n, &used, resp_body_cb, ex);
        n -= used;
        if (rc == AHG_EAGAIN) {
            if (ex->r && !ahg_httpd_resp_writable(ex->r))
                rx_pause(ex);
            return;
        }
        if (rc != AHG_OK) {
            ex->reusable = false;
            if (ex->r)
                ahg_httpd_resp_abort(ex->r);
            return;
        }
        ex->resp_done = true;
        if (n)
            ex->reusable = false; /* more than one answer: out of step */
        rx_resume(ex);            /* the stream may go back to the pool: never leave it paused */
        (void)ahg_httpd_resp_end(ex->r); /* may finish (and free) the exchange */
        return;
    }
}

static void
ex_up_closed(struct gw_ex *ex)
{
    AHG_LOG_DEBUG("exchange %s: the stream closed", ex->req_id);
    ex->reusable = false;
    if (ex->pub) {
        ahg_conn_close(ex->pub);
        return;
    }
    if (!ex->r) {
        if (!ex->pub)
            pipe_maybe_free(ex);
        return;
    }
    if (ex->resp_head && !ex->resp_done) {
        if (ahg_http_parser_eof(ex->rp) == AHG_OK) {
            ex->resp_done = true;
            (void)ahg_httpd_resp_end(ex->r);
        } else {
            ahg_httpd_resp_abort(ex->r);
        }
        return;
    }
    if (ex->resp_done)
        return;
    if (!ex->got_bytes && ex->no_body && ex->attempts < 2 && !ex->api) {
        /* a pooled stream that the local app closed while we sent: try a fresh one */
        ahg_timer_stop(&ex->timer);
        ex->ready = false;
        ex_acquire(ex);
        return;
    }
    ex_fail(ex, 502, "Bad Gateway",
            ex->api ? "The management API closed the connection."
                    : "The tunnel closed the connection before the local service answered.");
}

static void
ex_dial_failed(struct gw_ex *ex, int status)
{
    if (!ex->r)
        return;
    if (status == 0 && ex->attempts < 3) {
        /* connect or handshake failed or stalled (a frontend can blackhole an upgrade): each
         * attempt is bounded by connect_timeout_ms, three in all */
        ex_acquire(ex);
        return;
    }
    if (status == 401 && ex->gw->o.azid && ex->attempts < 2) {
        ahg_azid_invalidate(ex->gw->o.azid, ex->gw->azid_resource);
        ex_acquire(ex);
        return;
    }
    if (status == 404)
        ex_fail(ex, 502, "Tunnel offline",
                "This tunnel exists, but its client is not connected right now. Start the "
                "client again, or try later.");
    else if (status == 401 || status == 403)
        ex_fail(ex, 502, "Bad Gateway", "The gateway could not authenticate to the relay.");
    else if (status == 0)
        ex_fail(ex, 502, "Bad Gateway", "The relay could not be reached.");
    else
        ex_fail(ex, 502, "Bad Gateway", "The relay refused the connection.");
}

static void
ex_acquire(struct gw_ex *ex)
{
    struct gw *gw = ex->gw;
    struct gw_tunnel *t = ex->tun;
    ex->attempts++;
    ex->resp_head = false;
    if (!ahg_list_is_empty(&t->idle)) {
        struct gw_stream *st = AHG_LIST_ENTRY(t->idle.head, struct gw_stream, node);
        /* the idle timer stays armed (st_idle_timeout ignores a busy stream): re-arming it in
         * st_to_idle then costs O(1) instead of an insert into lws's sorted timer list */
        ahg_list_remove(&t->idle, &st->node);
        st->state = GW_ST_BUSY;
        ahg_list_push_back(&t->busy, &st->node);
        st->ex = ex;
        ex->st = st;
        if (gw->m_pool_hit)
            ahg_metric_inc(gw->m_pool_hit);
        ex_ready(ex);
        return;
    }
    if (gw->m_pool_miss)
        ahg_metric_inc(gw->m_pool_miss);
    if (!st_dial(t, ex, false))
        ex_fail(ex, 503, "Service Unavailable", "The gateway could not open a relay stream.");
}

/* ---- entry points ---- */

static struct gw_ex *
ex_new(struct gw *gw, struct ahg_httpd_req *r)
{
    struct gw_ex *ex = calloc(1, sizeof(*ex));
    if (!ex) {
        ahg_httpd_respond_error(r, 503, "UNAVAILABLE", "out of memory", false);
        return NULL;
    }
    ex->gw = gw;
    ex->r = r;
    ex->start_ms = ahg_httpd_req_start_ms(r);
    ahg_timer_init(&ex->timer, gw->loop, ex_timeout, ex);
    ahg_list_node_init(&ex->node);
    ahg_list_node_init(&ex->wait.node);
    ahg_list_push_back(&gw->exchanges, &ex->node);
    const struct ahg_http_head *h = ahg_httpd_req_head(r);
    (void)snprintf(ex->peer, sizeof(ex->peer), "%s", ahg_conn_peer_addr(ahg_httpd_req_conn(r)));
    (void)snprintf(ex->req_id, sizeof(ex->req_id), "%s", ahg_httpd_req_id(r));
    (void)snprintf(ex->method, sizeof(ex->method), "%s", h->method);
    (void)snprintf(ex->target, sizeof(ex->target), "%s", h->target);
    const char *ua = ahg_http_head_get(h, "User-Agent", NULL);
    if (ua)
        (void)snprintf(ex->ua, sizeof(ex->ua), "%s", ua);
    ex->req_chunked = h->framing == AHG_HTTP_BODY_CHUNKED;
    ex->no_body = h->framing == AHG_HTTP_BODY_NONE;
    ahg_httpd_req_set_cbs(r, &req_cbs, ex);
    ahg_httpd_req_pause_body(r);
    return ex;
}

static bool
basic_auth_ok(const struct gw_route_info *info, const struct ahg_http_head *h)
{
    const char *auth = ahg_http_head_get(h, "Authorization", NULL);
    if (!auth || strncasecmp(auth, "Basic ", 6) != 0)
        return false;
    const char *b64 = auth + 6;
    while (*b64 == ' ')
        b64++;
    unsigned char dec[512];
    size_t dl = 0;
    if (ahg_base64_decode(b64, strlen(b64), dec, sizeof(dec) - 1, &dl) != AHG_OK)
        return false;
    dec[dl] = '\0';
    char *colon = memchr(dec, ':', dl);
    if (!colon)
        return false;
    *colon = '\0';
    const char *user = (const char *)dec;
    char msg[GW_ID_MAX + sizeof(dec) + 2];
    (void)snprintf(msg, sizeof(msg), "%s:%s:%s", info->id, user, colon + 1);
    char hex[65];
    (void)ahg_sha256_hex(msg, strlen(msg), hex);
    bool ok = false;
    for (size_t i = 0; i < info->nusers; i++)
        if (strcmp(info->users[i].user, user) == 0 &&
            ahg_consttime_eq(hex, 64, info->users[i].sha256, 64))
            ok = true;
    OPENSSL_cleanse(msg, sizeof(msg));
    OPENSSL_cleanse(dec, sizeof(dec));
    return ok;
}

static void
on_route(struct gw_route_wait *w, int err, const struct gw_route_info *info)
{
    struct gw_ex *ex = AHG_LIST_ENTRY(w, struct gw_ex, wait);
    struct gw *gw = ex->gw;
    if (!ex->r)
        return;
    if (err == AHG_ENOTFOUND) {
        ex->status = 404;
        char detail[256];
        (void)snprintf(detail, sizeof(detail),
                       "There is no tunnel named %s. It may have expired or been closed.", ex->id);
        gw_error_page(ex->r, 404, "Tunnel not found", detail, NULL);
        return;
    }
    if (err != AHG_OK) {
        ex->status = 503;
        static const char *const ra[] = {"Retry-After", "5", NULL};
        gw_error_page(ex->r, 503, "Service Unavailable",
                      "The gateway cannot look up tunnels right now. Try again shortly.", ra);
        return;
    }
    const struct ahg_http_head *h = ahg_httpd_req_head(ex->r);
    if (info->allow.n && !ahg_cidr_list_match(&info->allow, ex->peer)) {
        ex->status = 403;
        gw_error_page(ex->r, 403, "Forbidden", "Your address may not use this tunnel.", NULL);
        return;
    }
    if (info->nusers && !basic_auth_ok(info, h)) {
        ex->status = 401;
        static const char *const wa[] = {"WWW-Authenticate", "Basic realm=\"azhexgate\"", NULL};
        gw_error_page(ex->r, 401, "Unauthorized", "This tunnel needs a user name and password.",
                      wa);
        return;
    }
    ex->tun = tun_get(gw, info);
    if (!ex->tun) {
        ex_fail(ex, 503, "Service Unavailable", "out of memory");
        return;
    }
    ex->tun->active++;
    if (ex->tun->active > ex->tun->peak)
        ex->tun->peak = ex->tun->active;
    ex->tun->last_active_ms = ahg_now_ms();
    ex_acquire(ex);
}

void
gw_proxy_tunnel(struct gw *gw, struct ahg_httpd_req *r, const char *id)
{
    struct gw_ex *ex = ex_new(gw, r);
    if (!ex)
        return;
    (void)snprintf(ex->id, sizeof(ex->id), "%s", id);
    ex->upgrade = ahg_httpd_req_head(r)->upgrade;
    ex->wait.cb = on_route;
    gw_route_lookup(gw, id, &ex->wait);
}

/* ---- management API upstream (plain TCP, one connection per request) ---- */

static void
up_connect(struct ahg_conn *c)
{
    struct gw_ex *ex = ahg_conn_ud(c);
    ex_ready(ex);
}

static size_t
up_data(struct ahg_conn *c, const unsigned char *p, size_t n)
{
    struct gw_ex *ex = ahg_conn_ud(c);
    ex_rx(ex, p, n);
    return n;
}

static void
up_drain(struct ahg_conn *c)
{
    ex_tx_drain(ahg_conn_ud(c));
}

static void
up_close(struct ahg_conn *c, enum ahg_conn_end why)
{
    struct gw_ex *ex = ahg_conn_ud(c);
    ex->up = NULL;
    if (why == AHG_CONN_END_CONNECT && !ex->ready) {
        ex_fail(ex, 502, "Bad Gateway", "The management API is not reachable.");
        return;
    }
    ex_up_closed(ex);
}

static const struct ahg_conn_ops up_ops = {
    .on_connect = up_connect,
    .on_data = up_data,
    .on_drain = up_drain,
    .on_close = up_close,
};

void
gw_proxy_api(struct gw *gw, struct ahg_httpd_req *r)
{
    struct gw_ex *ex = ex_new(gw, r);
    if (!ex)
        return;
    ex->api = true;
    ex->upgrade = false;
    struct ahg_connect_opts co = {
        .address = gw->api_addr, .port = gw->api_port, .connect_timeout_ms = 10000};
    int err = 0;
    ex->up = ahg_conn_connect(gw->loop, &co, &up_ops, ex, &err);
    if (!ex->up)
        ex_fail(ex, 502, "Bad Gateway", "The management API is not reachable.");
}

/* ---- background pre-dial ---- */

static void
prewarm_tick(struct ahg_timer *tm)
{
    struct gw *gw = tm->ud;
    uint64_t now = ahg_now_ms();
    uint64_t window = gw->o.prewarm_window_ms ? gw->o.prewarm_window_ms : 60000;
    bool rotate = now - gw->window_start_ms >= window;
    if (rotate)
        gw->window_start_ms = now;
    unsigned max = gw->o.pool_max_idle ? gw->o.pool_max_idle : GW_POOL_MAX_IDLE_DEFAULT;
    /* background dials started per tick, over all tunnels: with thousands of recently active
     * tunnels the pre-dial must not turn into a rendezvous storm that slows real requests */
    unsigned budget = GW_PREWARM_DIALS_PER_TICK;
    ahg_list_foreach_safe (n, tmp, &gw->tunnels) {
        struct gw_tunnel *t = AHG_LIST_ENTRY(n, struct gw_tunnel, node);
        if (rotate) {
            t->peak_prev = t->peak;
            t->peak = t->active;
        }
        if (tun_unused(t, now, window)) {
            tun_free(t);
            continue;
        }
        if (gw->o.prewarm_off || gw->draining || now - t->last_active_ms > window)
            continue;
        unsigned want = t->peak > t->peak_prev ? t->peak : t->peak_prev;
        if (want == 0)
            want = 1;
        if (want > max)
            want = max;
        unsigned have = (unsigned)t->idle.count + t->dialing;
        for (unsigned k = 0; have < want && k < 4 && budget > 0; k++, have++, budget--)
            (void)st_dial(t, NULL, false);
    }
    ahg_timer_start(tm, 500);
}

void
gw_proxy_init(struct gw *gw)
{
    ahg_list_init(&gw->tunnels);
    ahg_list_init(&gw->exchanges);
    gw->window_start_ms = ahg_now_ms();
    ahg_timer_init(&gw->prewarm_timer, gw->loop, prewarm_tick, gw);
    ahg_timer_start(&gw->prewarm_timer, 500);
}

void
gw_proxy_drain(struct gw *gw)
{
    ahg_list_foreach (n, &gw->tunnels) {
        struct gw_tunnel *t = AHG_LIST_ENTRY(n, struct gw_tunnel, node);
        while (!ahg_list_is_empty(&t->idle))
            st_close(AHG_LIST_ENTRY(t->idle.head, struct gw_stream, node), true);
    }
}

size_t
gw_proxy_active(const struct gw *gw)
{
    return gw->exchanges.count;
}

/* After the loop was freed (every connection closed): only memory is left to free. */
void
gw_proxy_free(struct gw *gw)
{
    ahg_list_foreach_safe (n, tmp, &gw->exchanges) {
        struct gw_ex *ex = AHG_LIST_ENTRY(n, struct gw_ex, node);
        ahg_http_parser_free(ex->rp);
        free(ex->head);
        free(ex);
    }
    ahg_list_init(&gw->exchanges);
    ahg_list_foreach_safe (n, tmp, &gw->tunnels) {
        struct gw_tunnel *t = AHG_LIST_ENTRY(n, struct gw_tunnel, node);
        ahg_list_foreach_safe (m, tmp2, &t->idle) {
            free(AHG_LIST_ENTRY(m, struct gw_stream, node));
        }
        ahg_list_foreach_safe (m, tmp2, &t->busy) {
            free(AHG_LIST_ENTRY(m, struct gw_stream, node));
        }
        free(t->sas);
        free(t);
    }
    ahg_list_init(&gw->tunnels);
    memset(gw->tun_hash, 0, sizeof(gw->tun_hash));
}
