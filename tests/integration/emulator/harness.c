/*
 * harness.c - see harness.h.
 */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "ahg/config.h"
#include "ahg/err.h"
#include "ahg/log.h"
#include "ahg/sas.h"
#include "emu/emulator.h"

#define TICK_MS 5u

static void
tick(struct ahg_timer *t)
{
    ahg_timer_start(t, TICK_MS); /* keeps ahg_loop_run_once() returning */
}

void
th_start(struct th *t, const char *const *extra)
{
    memset(t, 0, sizeof(*t));
    ahg_log_setup("emu-it", AHG_LOG_FORMAT_TEXT,
                  getenv("EMU_IT_LOG") ? AHG_LOG_LVL_DEBUG : AHG_LOG_LVL_ERROR, 2);
    const char *base[] = {
        "emu-it",
        "--emulator-namespace=" TH_NS,
        "--emulator-relay-port=0",
        "--emulator-mgmt-port=0",
        "--emulator-identity-port=0",
        "--emulator-admin-port=0",
        "--emulator-hybrid-connections=hc1",
        "--emulator-hybrid-connections=open:noauth",
        "--emulator-hybrid-connections=deep/er",
        "--emulator-root-key=" TH_KEY,
    };
    const char *argv[64];
    int argc = 0;
    for (size_t i = 0; i < sizeof(base) / sizeof(base[0]); i++)
        argv[argc++] = base[i];
    for (size_t i = 0; extra && extra[i] && argc < 63; i++) {
        argv[argc++] = extra[i];
        if (!strncmp(extra[i], "--emulator-relay-cert", 21))
            t->tls = true;
    }
    argv[argc] = NULL;
    static struct ahg_config_spec sp = {
        .prog = "emu-it", .summary = "relay integration test", .opts = emu_opts};
    sp.nopts = emu_nopts; /* borrowed by the config: static */
    char *const envp[] = {NULL};
    char err[512] = "";
    int rc =
        ahg_config_load(&t->cfg, &sp, argc, (char *const *)(uintptr_t)argv, envp, err, sizeof(err));
    if (rc != AHG_OK)
        fail_msg("config: %s", err);
    t->loop = ahg_loop_new(NULL);
    assert_non_null(t->loop);
    t->e = emu_new(t->loop, t->cfg, err, sizeof(err));
    if (!t->e)
        fail_msg("emu_new: %s", err);
    t->port = emu_relay_port(t->e);
    assert_true(t->port > 0);
    ahg_timer_init(&t->tick, t->loop, tick, t);
    ahg_timer_start(&t->tick, TICK_MS);
}

void
th_stop(struct th *t)
{
    ahg_timer_stop(&t->tick);
    ahg_loop_stop(t->loop);
    ahg_loop_free(t->loop);
    emu_free(t->e);
    ahg_config_free(t->cfg);
    memset(t, 0, sizeof(*t));
}

bool
th_wait(struct th *t, bool (*cond)(void *arg), void *arg, unsigned ms)
{
    uint64_t end = ahg_now_ms() + ms;
    while (!cond(arg)) {
        if (ahg_now_ms() >= end)
            return cond(arg);
        ahg_loop_run_once(t->loop);
    }
    return true;
}

static bool
never(void *arg)
{
    (void)arg;
    return false;
}

void
th_run(struct th *t, unsigned ms)
{
    (void)th_wait(t, never, NULL, ms);
}

void
th_token(const char *entity, const char *rule, const char *key, long long secs, char *out,
         size_t outsz)
{
    char uri[512];
    snprintf(uri, sizeof(uri), "http://%s/%s", TH_HOST, entity);
    long long se = (long long)time(NULL) + secs;
    assert_int_equal(
        ahg_sas_create(uri, rule ? rule : TH_RULE, key ? key : TH_KEY, se < 0 ? 0 : se, out, outsz),
        AHG_OK);
}

const char *
th_field(const struct ahg_http_head *h, const char *name)
{
    const char *v = h ? ahg_http_head_get(h, name, NULL) : NULL;
    return v ? v : "";
}

/* ---- WebSocket client ---- */

static void
q_push(struct tws *c, struct tmsg *m)
{
    if (c->tail)
        c->tail->next = m;
    else
        c->head = m;
    c->tail = m;
    c->nmsgs++;
}

static void
c_open(struct ahg_wsconn *ws, const struct ahg_http_head *resp)
{
    struct tws *c = ahg_wsconn_ud(ws);
    (void)resp;
    c->open = true;
    snprintf(c->proto, sizeof(c->proto), "%s", ahg_wsconn_subprotocol(ws));
}

static void
c_fail(struct ahg_wsconn *ws, int status, const char *reason, const struct ahg_http_head *resp,
       const char *body)
{
    struct tws *c = ahg_wsconn_ud(ws);
    (void)resp;
    (void)body;
    c->failed = true;
    c->closed = true;
    c->fail_status = status;
    snprintf(c->fail_reason, sizeof(c->fail_reason), "%s", reason ? reason : "");
    c->ws = NULL;
}

static void
c_message(struct ahg_wsconn *ws, enum ahg_ws_opcode op, const unsigned char *p, size_t n)
{
    struct tws *c = ahg_wsconn_ud(ws);
    c->bytes += n;
    if (c->count_only)
        return;
    struct tmsg *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    m->op = op;
    m->fin = true;
    m->len = n;
    m->data = malloc(n + 1);
    assert_non_null(m->data);
    if (n)
        memcpy(m->data, p, n);
    m->data[n] = 0;
    q_push(c, m);
}

static void
c_frame_begin(struct ahg_wsconn *ws, enum ahg_ws_opcode op, bool fin, uint64_t len)
{
    struct tws *c = ahg_wsconn_ud(ws);
    struct tmsg *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    m->op = op;
    m->fin = fin;
    m->data = malloc((size_t)len + 1);
    assert_non_null(m->data);
    c->cur = m;
}

static void
c_frame_data(struct ahg_wsconn *ws, const unsigned char *p, size_t n)
{
    struct tws *c = ahg_wsconn_ud(ws);
    memcpy(c->cur->data + c->cur->len, p, n);
    c->cur->len += n;
    c->bytes += n;
}

static void
c_frame_end(struct ahg_wsconn *ws)
{
    struct tws *c = ahg_wsconn_ud(ws);
    c->cur->data[c->cur->len] = 0;
    q_push(c, c->cur);
    c->cur = NULL;
}

static void
c_pong(struct ahg_wsconn *ws, const unsigned char *p, size_t n)
{
    struct tws *c = ahg_wsconn_ud(ws);
    (void)p;
    (void)n;
    c->pongs++;
}

static void
c_peer_close(struct ahg_wsconn *ws, uint16_t code, const char *reason, size_t rlen)
{
    struct tws *c = ahg_wsconn_ud(ws);
    c->peer_closed = true;
    c->peer_code = code;
    size_t k = rlen < sizeof(c->peer_reason) - 1 ? rlen : sizeof(c->peer_reason) - 1;
    memcpy(c->peer_reason, reason, k);
    c->peer_reason[k] = 0;
    if (!c->hold_close)
        ahg_wsconn_close(ws, code == AHG_WS_CLOSE_NO_STATUS ? AHG_WS_CLOSE_NORMAL : code, NULL);
}

static void
c_close(struct ahg_wsconn *ws, uint16_t code)
{
    struct tws *c = ahg_wsconn_ud(ws);
    c->closed = true;
    c->close_code = code;
    c->ws = NULL;
    if (c->cur) {
        free(c->cur->data);
        free(c->cur);
        c->cur = NULL;
    }
}

static const struct ahg_wsconn_cbs msg_cbs = {
    .on_open = c_open,
    .on_fail = c_fail,
    .on_message = c_message,
    .on_pong = c_pong,
    .on_peer_close = c_peer_close,
    .on_close = c_close,
};

static const struct ahg_wsconn_cbs frame_cbs = {
    .on_open = c_open,
    .on_fail = c_fail,
    .on_frame_begin = c_frame_begin,
    .on_frame_data = c_frame_data,
    .on_frame_end = c_frame_end,
    .on_pong = c_pong,
    .on_peer_close = c_peer_close,
    .on_close = c_close,
};

static void
dial(struct th *t, struct tws *c, struct ahg_wsconn_client_opts *o)
{
    bool frames = c->frames, count = c->count_only, hold = c->hold_close;
    memset(c, 0, sizeof(*c));
    c->t = t;
    c->frames = frames;
    c->count_only = count;
    c->hold_close = hold;
    o->max_message = 32u * 1024u * 1024u;
    int err = 0;
    c->ws = ahg_wsconn_connect(t->loop, o, frames ? &frame_cbs : &msg_cbs, c, &err);
    assert_non_null(c->ws);
}

void
tws_connect(struct th *t, struct tws *c, const char *target, const char *const *headers,
            const char *subprotocol)
{
    struct ahg_wsconn_client_opts o = {0};
    o.conn.address = "127.0.0.1";
    o.conn.port = t->port;
    o.conn.tls = t->tls;
    o.conn.insecure = true; /* the test certificate */
    o.target = target;
    o.headers = headers;
    o.subprotocol = subprotocol;
    dial(t, c, &o);
}

void
tws_connect_url(struct th *t, struct tws *c, const char *url, const char *subprotocol,
                const char *const *headers)
{
    struct ahg_wsconn_client_opts o = {0};
    char buf[8192];
    assert_int_equal(ahg_wsconn_parse_url(url, &o, buf, sizeof(buf)), AHG_OK);
    o.conn.insecure = true;
    o.subprotocol = subprotocol;
    o.headers = headers;
    dial(t, c, &o);
}

static bool
is_open(void *arg)
{
    struct tws *c = arg;
    return c->open || c->failed || c->closed;
}

bool
tws_wait_open(struct tws *c, unsigned ms)
{
    th_wait(c->t, is_open, c, ms);
    return c->open && !c->failed;
}

static bool
is_failed(void *arg)
{
    struct tws *c = arg;
    return c->failed || c->open;
}

bool
tws_wait_fail(struct tws *c, unsigned ms)
{
    th_wait(c->t, is_failed, c, ms);
    return c->failed;
}

static bool
is_closed(void *arg)
{
    struct tws *c = arg;
    return c->closed;
}

bool
tws_wait_close(struct tws *c, unsigned ms)
{
    return th_wait(c->t, is_closed, c, ms);
}

static bool
has_msg(void *arg)
{
    struct tws *c = arg;
    return c->head != NULL;
}

struct tmsg *
tws_next(struct tws *c, unsigned ms)
{
    if (!th_wait(c->t, has_msg, c, ms))
        return NULL;
    struct tmsg *m = c->head;
    c->head = m->next;
    if (!c->head)
        c->tail = NULL;
    c->nmsgs--;
    m->next = NULL;
    return m;
}

void
tmsg_free(struct tmsg *m)
{
    if (m) {
        free(m->data);
        free(m);
    }
}

void
tws_free(struct tws *c)
{
    if (c->ws && !c->closed) {
        ahg_wsconn_set_cbs(c->ws, NULL, NULL);
        ahg_wsconn_abort(c->ws);
        c->ws = NULL;
    }
    while (c->head) {
        struct tmsg *m = c->head;
        c->head = m->next;
        tmsg_free(m);
    }
    c->tail = NULL;
    c->nmsgs = 0;
}

/* ---- HTTP client ---- */

static int
h_body_cb(void *ud, const char *data, size_t len)
{
    struct thttp *h = ud;
    h->got += len;
    if (h->count_only)
        return AHG_OK;
    if (h->blen + len + 1 > h->bcap) {
        size_t cap = h->bcap ? h->bcap : 4096;
        while (cap < h->blen + len + 1)
            cap *= 2;
        unsigned char *b = realloc(h->body, cap);
        assert_non_null(b);
        h->body = b;
        h->bcap = cap;
    }
    memcpy(h->body + h->blen, data, len);
    h->blen += len;
    h->body[h->blen] = 0;
    return AHG_OK;
}

static void
h_connect(struct ahg_conn *c)
{
    struct thttp *h = ahg_conn_ud(c);
    h->connected = true;
    assert_int_equal(ahg_conn_write(c, h->req, h->req_len), AHG_OK);
    free(h->req);
    h->req = NULL;
}

static size_t
h_data(struct ahg_conn *c, const unsigned char *p, size_t n)
{
    struct thttp *h = ahg_conn_ud(c);
    if (h->paused)
        return 0;
    size_t used = 0;
    if (!h->head) {
        size_t k = 0;
        int rc = ahg_http_parser_feed(h->p, (const char *)p, n, &k);
        used += k;
        if (rc == AHG_EAGAIN)
            return used;
        if (rc != AHG_OK) {
            h->failed = true;
            return n;
        }
        const struct ahg_http_head *hd = ahg_http_parser_head(h->p);
        if (hd->status == 100) { /* interim: parse the next head */
            ahg_http_parser_reset(h->p);
            return used + h_data(c, p + used, n - used);
        }
        h->head = ahg_http_parser_head_take(h->p);
    }
    if (h->done)
        return n;
    size_t k = 0;
    int rc = ahg_http_parser_body(h->p, (const char *)p + used, n - used, &k, h_body_cb, h);
    used += k;
    if (rc == AHG_OK)
        h->done = true;
    else if (rc != AHG_EAGAIN)
        h->failed = true;
    return n;
}

static void
h_close(struct ahg_conn *c, enum ahg_conn_end why)
{
    struct thttp *h = ahg_conn_ud(c);
    (void)why;
    h->closed = true;
    if (h->head && !h->done && ahg_http_parser_eof(h->p) == AHG_OK)
        h->done = true;
    h->c = NULL;
}

static const struct ahg_conn_ops h_ops = {
    .on_connect = h_connect,
    .on_data = h_data,
    .on_close = h_close,
};

void
thttp_send(struct th *t, struct thttp *h, const char *method, const void *raw, size_t len)
{
    bool count = h->count_only;
    memset(h, 0, sizeof(*h));
    h->count_only = count;
    h->t = t;
    h->p = ahg_http_parser_new(AHG_HTTP_RESPONSE, NULL, NULL);
    assert_non_null(h->p);
    assert_int_equal(ahg_http_parser_set_request_method(h->p, method), AHG_OK);
    h->req = malloc(len);
    assert_non_null(h->req);
    memcpy(h->req, raw, len);
    h->req_len = len;
    struct ahg_connect_opts o = {
        .address = "127.0.0.1", .port = t->port, .tls = t->tls, .insecure = true};
    int err = 0;
    h->c = ahg_conn_connect(t->loop, &o, &h_ops, h, &err);
    assert_non_null(h->c);
}

void
thttp_again(struct thttp *h, const char *method, const void *raw, size_t len)
{
    assert_true(h->done);
    assert_non_null(h->c);
    ahg_http_parser_reset(h->p);
    assert_int_equal(ahg_http_parser_set_request_method(h->p, method), AHG_OK);
    ahg_http_head_free(h->head);
    h->head = NULL;
    h->blen = 0;
    h->got = 0;
    h->done = false;
    assert_int_equal(ahg_conn_write(h->c, raw, len), AHG_OK);
}

static bool
h_finished(void *arg)
{
    struct thttp *h = arg;
    return h->done || h->failed || h->closed;
}

bool
thttp_wait(struct thttp *h, unsigned ms)
{
    th_wait(h->t, h_finished, h, ms);
    return h->done;
}

void
thttp_free(struct thttp *h)
{
    if (h->c) {
        ahg_conn_set_ops(h->c, NULL, NULL);
        ahg_conn_abort(h->c);
        h->c = NULL;
    }
    ahg_http_parser_free(h->p);
    ahg_http_head_free(h->head);
    free(h->body);
    free(h->req);
    memset(h, 0, sizeof(*h));
}
