/*
 * cli_it.c - see cli_it.h.
 */
#include "cli_it.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ahg/err.h"

unsigned char
pat(uint64_t i)
{
    return (unsigned char)((i * 31u + 7u) & 0xffu);
}

uint64_t
fnv(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* ---- the local test app ---- */

struct gen {
    struct ahg_timer tm;
    struct ahg_httpd_req *r;
    uint64_t total, off;
    unsigned events;
};

static void
echo_body(struct ahg_httpd_req *r, const char *p, size_t n)
{
    if (ahg_httpd_resp_write(r, p, n) != AHG_OK) {
        ahg_httpd_resp_abort(r);
        return;
    }
    if (!ahg_httpd_resp_writable(r))
        ahg_httpd_req_pause_body(r);
}

static void
echo_drain(struct ahg_httpd_req *r)
{
    ahg_httpd_req_resume_body(r);
}

static void
echo_end(struct ahg_httpd_req *r)
{
    (void)ahg_httpd_resp_end(r);
}

static const struct ahg_httpd_req_cbs echo_cbs = {
    .on_body = echo_body, .on_body_end = echo_end, .on_drain = echo_drain};

static void
gen_pump(struct ahg_httpd_req *r)
{
    struct gen *g = ahg_httpd_req_ud(r);
    unsigned char buf[16384];
    while (g->off < g->total && ahg_httpd_resp_writable(r)) {
        size_t k = g->total - g->off < sizeof(buf) ? (size_t)(g->total - g->off) : sizeof(buf);
        for (size_t i = 0; i < k; i++)
            buf[i] = pat(g->off + i);
        if (ahg_httpd_resp_write(r, buf, k) != AHG_OK)
            return;
        g->off += k;
    }
    if (g->off == g->total && g->total != (uint64_t)-1) {
        g->total = (uint64_t)-1;
        (void)ahg_httpd_resp_end(r);
    }
}

static void
gen_finish(struct ahg_httpd_req *r, bool completed)
{
    struct gen *g = ahg_httpd_req_ud(r);
    (void)completed;
    ahg_timer_stop(&g->tm);
    free(g);
}

static const struct ahg_httpd_req_cbs gen_cbs = {.on_drain = gen_pump, .on_finish = gen_finish};

static void
sse_fire(struct ahg_timer *tm)
{
    struct gen *g = tm->ud;
    char ev[64];
    int n = snprintf(ev, sizeof(ev), "data: event %u\n\n", g->events);
    (void)ahg_httpd_resp_write(g->r, ev, (size_t)n);
    if (++g->events == 3)
        (void)ahg_httpd_resp_end(g->r);
    else
        ahg_timer_start(tm, 200);
}

static const struct ahg_httpd_req_cbs sse_cbs = {.on_finish = gen_finish};

static void
wse_message(struct ahg_wsconn *ws, enum ahg_ws_opcode op, const unsigned char *p, size_t n)
{
    (void)ahg_wsconn_send(ws, op, p, n);
}

static const struct ahg_wsconn_cbs wse_cbs = {.on_message = wse_message};

static void
app_request(struct ahg_httpd_req *r)
{
    struct app *a = ahg_httpd_ud(ahg_httpd_req_server(r));
    const struct ahg_http_head *h = ahg_httpd_req_head(r);
    const char *path = ahg_httpd_req_path(r);
    a->requests++;
    if (!strcmp(path, "/ws")) {
        int err = 0;
        assert_non_null(ahg_wsconn_accept(r, NULL, NULL, &wse_cbs, NULL, &err));
        return;
    }
    struct ahg_http_head *resp = ahg_http_head_new_response(200, NULL, NULL);
    assert_non_null(resp);
    assert_int_equal(ahg_http_head_add(resp, "X-Method", h->method), AHG_OK);
    if (!strncmp(path, "/size/", 6)) {
        struct gen *g = calloc(1, sizeof(*g));
        assert_non_null(g);
        g->total = strtoull(path + 6, NULL, 10);
        ahg_httpd_req_set_cbs(r, &gen_cbs, g);
        assert_int_equal(ahg_httpd_resp_begin(r, resp, (int64_t)g->total), AHG_OK);
        gen_pump(r);
        return;
    }
    if (!strcmp(path, "/sse")) {
        struct gen *g = calloc(1, sizeof(*g));
        assert_non_null(g);
        g->r = r;
        (void)ahg_http_head_add(resp, "Content-Type", "text/event-stream");
        ahg_httpd_req_set_cbs(r, &sse_cbs, g);
        assert_int_equal(ahg_httpd_resp_begin(r, resp, AHG_HTTPD_LEN_CHUNKED), AHG_OK);
        ahg_timer_init(&g->tm, ahg_httpd_loop(ahg_httpd_req_server(r)), sse_fire, g);
        ahg_timer_start(&g->tm, 50);
        return;
    }
    if (!strcmp(path, "/chunked")) {
        assert_int_equal(ahg_httpd_resp_begin(r, resp, AHG_HTTPD_LEN_CHUNKED), AHG_OK);
        for (int i = 0; i < 5; i++)
            (void)ahg_httpd_resp_write(r, "piece\n", 6);
        (void)ahg_httpd_resp_end(r);
        return;
    }
    /* echo */
    int64_t len = h->framing == AHG_HTTP_BODY_LENGTH ? (int64_t)h->content_length
                  : h->framing == AHG_HTTP_BODY_NONE ? 0
                                                     : AHG_HTTPD_LEN_CHUNKED;
    ahg_httpd_req_set_cbs(r, &echo_cbs, NULL);
    assert_int_equal(ahg_httpd_resp_begin(r, resp, len), AHG_OK);
}

void
app_start(struct th *t, struct app *a)
{
    memset(a, 0, sizeof(*a));
    struct ahg_httpd_opts o = {.name = "app", .port = 0, .on_request = app_request, .ud = a};
    int err = 0;
    a->srv = ahg_httpd_new(t->loop, &o, &err);
    assert_non_null(a->srv);
    a->port = ahg_httpd_port(a->srv);
}

/* ---- the sender ---- */

static int
snd_body_cb(void *ud, const char *p, size_t n)
{
    struct snd *s = ud;
    s->sum = fnv(s->sum, (const unsigned char *)p, n);
    if (s->blen + n < sizeof(s->body)) {
        memcpy(s->body + s->blen, p, n);
        s->blen += n;
        s->body[s->blen] = 0;
    }
    s->body_bytes += n;
    return AHG_OK;
}

static void
snd_message(struct ahg_wsconn *ws, enum ahg_ws_opcode op, const unsigned char *p, size_t n)
{
    struct snd *s = ahg_wsconn_ud(ws);
    (void)op;
    uint64_t now = ahg_now_ms();
    if (s->raw) {
        if (s->rawlen + n <= sizeof(s->rawbuf)) {
            memcpy(s->rawbuf + s->rawlen, p, n);
            s->rawlen += n;
        }
        return;
    }
    size_t off = 0;
    while (!s->done) {
        size_t used = 0;
        if (!s->head_done) {
            if (off == n)
                return;
            int rc = ahg_http_parser_feed(s->p, (const char *)p + off, n - off, &used);
            off += used;
            if (rc == AHG_EAGAIN)
                return;
            assert_int_equal(rc, AHG_OK);
            const struct ahg_http_head *h = ahg_http_parser_head(s->p);
            s->status = h->status;
            snprintf(s->xmethod, sizeof(s->xmethod), "%s", th_field(h, "X-Method"));
            s->head_done = true;
            if (s->status == 101) {
                s->raw = true;
                s->done = true;
                memcpy(s->rawbuf, p + off, n - off);
                s->rawlen = n - off;
                return;
            }
            continue;
        }
        if (off == n && ahg_http_parser_framing(s->p) != AHG_HTTP_BODY_NONE)
            return;
        if (off < n) {
            s->arrivals++;
            if (!s->first_ms)
                s->first_ms = now;
            s->last_ms = now;
        }
        int rc = ahg_http_parser_body(s->p, (const char *)p + off, n - off, &used, snd_body_cb, s);
        off += used;
        if (rc == AHG_EAGAIN)
            return;
        assert_int_equal(rc, AHG_OK);
        s->done = true;
    }
}

static void
snd_pump(struct snd *s)
{
    unsigned char buf[65536 + 32];
    while (s->ws && s->up_off < s->up_total && ahg_wsconn_writable(s->ws)) {
        uint64_t k = s->up_total - s->up_off;
        if (k > 65536)
            k = 65536;
        size_t hl = 0;
        if (s->up_chunked)
            hl = (size_t)snprintf((char *)buf, 32, "%llx\r\n", (unsigned long long)k);
        for (uint64_t i = 0; i < k; i++)
            buf[hl + i] = pat(s->up_off + i);
        size_t n = hl + (size_t)k;
        if (s->up_chunked) {
            memcpy(buf + n, "\r\n", 2);
            n += 2;
        }
        s->up_off += k;
        if (s->up_chunked && s->up_off == s->up_total) {
            memcpy(buf + n, "0\r\n\r\n", 5);
            n += 5;
        }
        assert_int_equal(ahg_wsconn_send(s->ws, AHG_WS_BINARY, buf, n), AHG_OK);
    }
}

static void
snd_drain(struct ahg_wsconn *ws)
{
    snd_pump(ahg_wsconn_ud(ws));
}

static void
snd_open(struct ahg_wsconn *ws, const struct ahg_http_head *resp)
{
    struct snd *s = ahg_wsconn_ud(ws);
    (void)resp;
    s->open = true;
}

static void
snd_fail(struct ahg_wsconn *ws, int status, const char *reason, const struct ahg_http_head *resp,
         const char *body)
{
    struct snd *s = ahg_wsconn_ud(ws);
    (void)reason;
    (void)resp;
    (void)body;
    s->fail_status = status;
    s->failed = s->gone = true;
    s->ws = NULL;
}

static void
snd_close(struct ahg_wsconn *ws, uint16_t code)
{
    struct snd *s = ahg_wsconn_ud(ws);
    (void)code;
    s->gone = true;
    s->ws = NULL;
}

static const struct ahg_wsconn_cbs snd_cbs = {.on_open = snd_open,
                                              .on_fail = snd_fail,
                                              .on_message = snd_message,
                                              .on_drain = snd_drain,
                                              .on_close = snd_close};

static bool
snd_ready(void *arg)
{
    struct snd *s = arg;
    return s->open || s->failed;
}

static bool
snd_done(void *arg)
{
    struct snd *s = arg;
    return s->done || s->gone;
}

bool
snd_connect(struct th *t, struct snd *s, const char *hc)
{
    memset(s, 0, sizeof(*s));
    s->t = t;
    (void)snprintf(s->hc, sizeof(s->hc), "%s", hc);
    s->sum = FNV0;
    s->p = ahg_http_parser_new(AHG_HTTP_RESPONSE, NULL, NULL);
    assert_non_null(s->p);
    char tok[1024], target[128];
    th_token(hc, NULL, NULL, 3600, tok, sizeof(tok));
    (void)snprintf(target, sizeof(target), "/$hc/%s?sb-hc-action=connect", hc);
    const char *hdrs[] = {"ServiceBusAuthorization", tok, NULL};
    struct ahg_wsconn_client_opts o = {
        .conn = {.address = "127.0.0.1", .port = t->port, .tls = t->tls, .insecure = true},
        .target = target,
        .headers = hdrs,
        .max_message = 1u << 20};
    int err = 0;
    s->ws = ahg_wsconn_connect(t->loop, &o, &snd_cbs, s, &err);
    assert_non_null(s->ws);
    assert_true(th_wait(t, snd_ready, s, 5000));
    return s->open;
}

bool
snd_wait(struct snd *s, unsigned ms)
{
    return th_wait(s->t, snd_done, s, ms) && s->done;
}

/* Sends a request head (and, for size > 0, a generated body) and waits for the response. */
void
snd_request(struct snd *s, const char *method, const char *path, uint64_t size, bool chunked)
{
    char head[512];
    ahg_http_parser_reset(s->p);
    assert_int_equal(ahg_http_parser_set_request_method(s->p, method), AHG_OK);
    s->head_done = s->done = false;
    s->sum = FNV0;
    s->body_bytes = s->blen = 0;
    s->arrivals = 0;
    s->first_ms = s->last_ms = 0;
    int n;
    if (chunked)
        n = snprintf(head, sizeof(head),
                     "%s %s HTTP/1.1\r\nHost: tunnel.test\r\nTransfer-Encoding: chunked\r\n\r\n",
                     method, path);
    else if (size || !strcmp(method, "POST") || !strcmp(method, "PUT"))
        n = snprintf(head, sizeof(head),
                     "%s %s HTTP/1.1\r\nHost: tunnel.test\r\nContent-Length: %llu\r\n\r\n", method,
                     path, (unsigned long long)size);
    else
        n = snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: tunnel.test\r\n\r\n", method,
                     path);
    assert_int_equal(ahg_wsconn_send(s->ws, AHG_WS_BINARY, head, (size_t)n), AHG_OK);
    s->up_total = size;
    s->up_off = 0;
    s->up_chunked = chunked;
    snd_pump(s);
    assert_true(th_wait(s->t, snd_done, s, 60000));
    assert_true(s->done);
}

void
snd_free(struct snd *s)
{
    if (s->ws) {
        ahg_wsconn_set_cbs(s->ws, NULL, NULL);
        ahg_wsconn_abort(s->ws);
    }
    ahg_http_parser_free(s->p);
}

uint64_t
pat_sum(uint64_t n)
{
    uint64_t h = FNV0;
    unsigned char buf[4096];
    for (uint64_t off = 0; off < n;) {
        size_t k = n - off < sizeof(buf) ? (size_t)(n - off) : sizeof(buf);
        for (size_t i = 0; i < k; i++)
            buf[i] = pat(off + i);
        h = fnv(h, buf, k);
        off += k;
    }
    return h;
}
