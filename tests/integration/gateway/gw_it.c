/*
 * gw_it.c - shared pieces of the gateway integration tests (see gw_it.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "ahg/err.h"
#include "ahg/log.h"
#include "gw_it.h"

extern char **environ;

void
sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    (void)nanosleep(&ts, NULL);
}

/* ---- child processes: killed at exit, also when a test failed midway ---- */

static pid_t children[32];

static void
kill_children(void)
{
    for (size_t i = 0; i < sizeof(children) / sizeof(children[0]); i++) {
        if (children[i] > 0) {
            (void)kill(children[i], SIGKILL);
            (void)waitpid(children[i], NULL, 0);
            children[i] = 0;
        }
    }
}

void
child_track(pid_t pid)
{
    static bool registered;
    if (!registered) {
        registered = atexit(kill_children) == 0;
    }
    for (size_t i = 0; i < sizeof(children) / sizeof(children[0]); i++) {
        if (children[i] == 0) {
            children[i] = pid;
            return;
        }
    }
}

void
child_untrack(pid_t pid)
{
    for (size_t i = 0; i < sizeof(children) / sizeof(children[0]); i++)
        if (children[i] == pid)
            children[i] = 0;
}

/* ---- redis-server ---- */

/* ---- the local app ---- */

struct job {
    struct ahg_timer tm;
    struct ahg_httpd_req *r;
    struct lapp *a;
    uint64_t total, off, sum;
    unsigned events;
    bool sink, ended;
};

static void
job_finish(struct ahg_httpd_req *r, bool completed)
{
    (void)completed;
    struct job *j = ahg_httpd_req_ud(r);
    ahg_timer_stop(&j->tm);
    free(j);
}

static void
gen_pump(struct ahg_httpd_req *r)
{
    struct job *j = ahg_httpd_req_ud(r);
    tb_gen_pump(r, &j->off, j->total, &j->ended);
}

static const struct ahg_httpd_req_cbs gen_cbs = {.on_drain = gen_pump, .on_finish = job_finish};

static void
sink_body(struct ahg_httpd_req *r, const char *p, size_t n)
{
    struct job *j = ahg_httpd_req_ud(r);
    j->off += n;
    j->sum = tb_fnv(j->sum, (const unsigned char *)p, n);
}

static void
sink_end(struct ahg_httpd_req *r)
{
    struct job *j = ahg_httpd_req_ud(r);
    j->a->sink_bytes = j->off;
    j->a->sink_sum = j->sum;
    char out[64];
    int n = snprintf(out, sizeof(out), "%llu %llu", (unsigned long long)j->off,
                     (unsigned long long)j->sum);
    (void)ahg_httpd_respond(r, 200, "text/plain", out, (size_t)n, NULL);
}

static const struct ahg_httpd_req_cbs sink_cbs = {
    .on_body = sink_body, .on_body_end = sink_end, .on_finish = job_finish};

static void
sse_tick(struct ahg_timer *tm)
{
    struct job *j = tm->ud;
    if (j->a->sse_ack >= j->events) { /* the test saw every event so far: send the next */
        char ev[64];
        int n = snprintf(ev, sizeof(ev), "data: event %u\n\n", j->events);
        (void)ahg_httpd_resp_write(j->r, ev, (size_t)n);
        if (++j->events == 3) {
            (void)ahg_httpd_resp_end(j->r);
            return;
        }
    }
    ahg_timer_start(tm, 5);
}

static const struct ahg_httpd_req_cbs sse_cbs = {.on_finish = job_finish};
static const struct ahg_httpd_req_cbs hang_cbs = {.on_finish = job_finish};

static void
wse_message(struct ahg_wsconn *ws, enum ahg_ws_opcode op, const unsigned char *p, size_t n)
{
    (void)ahg_wsconn_send(ws, op, p, n);
}

static const struct ahg_wsconn_cbs wse_cbs = {.on_message = wse_message};

static struct job *
job_new(struct lapp *a, struct ahg_httpd_req *r)
{
    struct job *j = calloc(1, sizeof(*j));
    assert_non_null(j);
    j->a = a;
    j->r = r;
    j->sum = TB_FNV0;
    return j;
}

static void
app_request(struct ahg_httpd_req *r)
{
    struct lapp *a = ahg_httpd_ud(ahg_httpd_req_server(r));
    const struct ahg_http_head *h = ahg_httpd_req_head(r);
    const char *path = ahg_httpd_req_path(r);
    a->requests++;
    size_t hl = 0;
    (void)ahg_http_head_serialize(h, 0, a->last_head, sizeof(a->last_head) - 1, &hl);
    a->last_head[hl < sizeof(a->last_head) ? hl : 0] = '\0';
    if (!strcmp(path, "/ws")) {
        int err = 0;
        assert_non_null(ahg_wsconn_accept(r, NULL, NULL, &wse_cbs, NULL, &err));
        return;
    }
    if (!strcmp(path, "/hang")) {
        ahg_httpd_req_set_cbs(r, &hang_cbs, job_new(a, r));
        return;
    }
    if (!strcmp(path, "/sink")) {
        ahg_httpd_req_set_cbs(r, &sink_cbs, job_new(a, r));
        return;
    }
    struct ahg_http_head *resp = ahg_http_head_new_response(200, NULL, NULL);
    assert_non_null(resp);
    assert_int_equal(ahg_http_head_add(resp, "X-Method", h->method), AHG_OK);
    if (!strcmp(path, "/headers")) {
        (void)ahg_http_head_add(resp, "Set-Cookie", "a=1; Path=/");
        (void)ahg_http_head_add(resp, "X-Custom", "one");
        (void)ahg_http_head_add(resp, "Set-Cookie", "b=2; HttpOnly");
        (void)ahg_http_head_add(resp, "Set-Cookie", "c=3");
        (void)ahg_http_head_add(resp, "X-Custom", "two, three");
        (void)ahg_http_head_add(resp, "Content-Type", "text/plain");
        size_t n = strlen(a->last_head);
        assert_int_equal(ahg_httpd_resp_begin(r, resp, (int64_t)n), AHG_OK);
        (void)ahg_httpd_resp_write(r, a->last_head, n);
        (void)ahg_httpd_resp_end(r);
        return;
    }
    if (!strncmp(path, "/status/", 8)) {
        resp->status = (int)strtol(path + 8, NULL, 10);
        assert_int_equal(ahg_httpd_resp_begin(r, resp, 3), AHG_OK);
        (void)ahg_httpd_resp_write(r, "abc", 3);
        (void)ahg_httpd_resp_end(r);
        return;
    }
    if (!strncmp(path, "/size/", 6)) {
        struct job *j = job_new(a, r);
        j->total = strtoull(path + 6, NULL, 10);
        ahg_httpd_req_set_cbs(r, &gen_cbs, j);
        assert_int_equal(ahg_httpd_resp_begin(r, resp, (int64_t)j->total), AHG_OK);
        gen_pump(r);
        return;
    }
    if (!strcmp(path, "/sse")) {
        struct job *j = job_new(a, r);
        (void)ahg_http_head_add(resp, "Content-Type", "text/event-stream");
        ahg_httpd_req_set_cbs(r, &sse_cbs, j);
        assert_int_equal(ahg_httpd_resp_begin(r, resp, AHG_HTTPD_LEN_CHUNKED), AHG_OK);
        ahg_timer_init(&j->tm, ahg_httpd_loop(ahg_httpd_req_server(r)), sse_tick, j);
        ahg_timer_start(&j->tm, 5);
        return;
    }
    tb_echo(r, resp); /* anything else: echo */
}

void
lapp_start(struct th *t, struct lapp *a)
{
    memset(a, 0, sizeof(*a));
    static unsigned seq;
    char name[32];
    (void)snprintf(name, sizeof(name), "gwapp%u", seq++);
    struct ahg_httpd_opts o = {.name = name, .port = 0, .on_request = app_request, .ud = a};
    int err = 0;
    a->srv = ahg_httpd_new(t->loop, &o, &err);
    assert_non_null(a->srv);
    a->port = ahg_httpd_port(a->srv);
}

/* ---- fixture ---- */

static bool
tun_up(void *arg)
{
    return cli_tunnel_connected(arg);
}

struct cli_tunnel *
gfx_tunnel(struct gfx *f, const char *hc, int local_port)
{
    char ep[64], tok[1024];
    (void)snprintf(ep, sizeof(ep), "ws://127.0.0.1:%d", f->t.port);
    th_token(hc, NULL, NULL, 3600, tok, sizeof(tok));
    struct cli_tunnel_opts o = {.relay_endpoint = ep,
                                .hc = hc,
                                .token = strcmp(hc, "open") ? tok : NULL,
                                .local_host = "127.0.0.1",
                                .local_port = local_port,
                                .keepalive_ms = 5000,
                                .backoff_cap_ms = 1000};
    int err = 0;
    struct cli_tunnel *tun = cli_tunnel_new(f->t.loop, &o, &err);
    assert_non_null(tun);
    assert_true(th_wait(&f->t, tun_up, tun, 5000));
    return tun;
}

static bool
store_up(void *arg)
{
    return ahg_store_is_up(arg);
}

struct ahg_store *
gfx_store(struct gfx *f)
{
    char url[64];
    (void)snprintf(url, sizeof(url), "redis://127.0.0.1:%d", f->rs.port);
    int err = 0;
    struct ahg_store *s = ahg_store_new_url(f->t.loop, url, NULL, false, &err);
    assert_non_null(s);
    assert_true(th_wait(&f->t, store_up, s, 5000));
    for (size_t i = 0; i < 8; i++)
        if (!f->stores[i]) {
            f->stores[i] = s;
            break;
        }
    return s;
}

void
gfx_gw_opts(struct gfx *f, struct ahg_gw_opts *o)
{
    static char ep[64];
    (void)snprintf(ep, sizeof(ep), "ws://127.0.0.1:%d", f->t.port);
    o->domain = GW_DOMAIN;
    o->relay_endpoint = ep;
    o->sas_key_name = TH_RULE;
    o->sas_key = TH_KEY;
    if (!o->response_timeout_ms)
        o->response_timeout_ms = 10000;
}

void
gfx_start(struct gfx *f, const struct ahg_gw_opts *o)
{
    memset(f, 0, sizeof(*f));
    th_start(&f->t, NULL);
    if (getenv("GW_IT_LOG"))
        ahg_log_setup("gw-it", AHG_LOG_FORMAT_TEXT, AHG_LOG_LVL_DEBUG, 2);
    ts_redis_start(&f->rs, 0, NULL);
    f->store = gfx_store(f);
    f->stores[0] = NULL;
    assert_true(th_wait(&f->t, store_up, f->store, 5000));
    lapp_start(&f->t, &f->app);
    f->tun = gfx_tunnel(f, "hc1", f->app.port);
    struct ahg_gw_opts go = {0};
    if (o)
        go = *o;
    gfx_gw_opts(f, &go);
    int err = 0;
    f->gw = ahg_gw_new(f->t.loop, f->store, &go, &err);
    assert_non_null(f->gw);
    f->port = ahg_gw_port(f->gw);
    route_put(f, "t1", "hc1", NULL);
}

int
gfx_setup(void **state, const struct ahg_gw_opts *o)
{
    struct gfx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    gfx_start(f, o);
    *state = f;
    return 0;
}

int
gfx_teardown(void **state)
{
    struct gfx *f = *state;
    gfx_stop(f);
    free(f);
    return 0;
}

struct ahg_gw *
gfx_gw_new(struct gfx *f, struct ahg_gw_opts *o, struct ahg_store *store)
{
    gfx_gw_opts(f, o);
    return gfx_gw_new_as_is(f, o, store);
}

struct ahg_gw *
gfx_gw_new_as_is(struct gfx *f, const struct ahg_gw_opts *o, struct ahg_store *store)
{
    int err = 0;
    struct ahg_gw *gw = ahg_gw_new(f->t.loop, store ? store : f->store, o, &err);
    assert_non_null(gw);
    for (size_t i = 0; i < 8; i++)
        if (!f->extra[i]) {
            f->extra[i] = gw;
            break;
        }
    return gw;
}

void
gfx_stop(struct gfx *f)
{
    cli_tunnel_free(f->tun);
    /* stores first (they live on the loop), then the loop, then the gateways */
    ahg_store_free(f->store);
    for (size_t i = 0; i < 8; i++)
        ahg_store_free(f->stores[i]);
    ahg_azid_free(f->azid);
    ahg_egress_free(f->egress);
    th_stop(&f->t);
    ahg_gw_free(f->gw);
    for (size_t i = 0; i < 8; i++)
        ahg_gw_free(f->extra[i]);
    ts_redis_stop(&f->rs);
}

struct op {
    bool done;
    int err;
};

static void
op_cb(struct ahg_store *s, int err, const struct ahg_store_reply *reply, void *ud)
{
    (void)s;
    (void)reply;
    struct op *o = ud;
    o->err = err;
    o->done = true;
}

static bool
op_done(void *arg)
{
    return ((struct op *)arg)->done;
}

void
route_put(struct gfx *f, const char *id, const char *hc, const char *extra)
{
    char key[128], val[2048];
    (void)snprintf(key, sizeof(key), "ahg:route:%s", id);
    int n = snprintf(val, sizeof(val),
                     "{\"v\":1,\"id\":\"%s\",\"session_id\":\"00\",\"hc\":\"%s\",\"relay\":\"%s\","
                     "\"expires_at\":4102444800%s%s}",
                     id, hc, TH_HOST, extra ? "," : "", extra ? extra : "");
    struct op o = {0};
    assert_int_equal(ahg_store_set(f->store, key, val, (size_t)n, 0, 0, op_cb, &o), AHG_OK);
    assert_true(th_wait(&f->t, op_done, &o, 5000));
    assert_int_equal(o.err, AHG_OK);
    struct op p = {0};
    assert_int_equal(ahg_store_publish(f->store, "ahg:routes", id, strlen(id), op_cb, &p), AHG_OK);
    assert_true(th_wait(&f->t, op_done, &p, 5000));
}

void
route_put_raw(struct gfx *f, const char *id, const char *val)
{
    char key[128];
    (void)snprintf(key, sizeof(key), "ahg:route:%s", id);
    struct op o = {0};
    assert_int_equal(ahg_store_set(f->store, key, val, strlen(val), 0, 0, op_cb, &o), AHG_OK);
    assert_true(th_wait(&f->t, op_done, &o, 5000));
    struct op p = {0};
    assert_int_equal(ahg_store_publish(f->store, "ahg:routes", id, strlen(id), op_cb, &p), AHG_OK);
    assert_true(th_wait(&f->t, op_done, &p, 5000));
}

void
route_del(struct gfx *f, const char *id)
{
    char key[128];
    (void)snprintf(key, sizeof(key), "ahg:route:%s", id);
    struct op o = {0};
    assert_int_equal(ahg_store_del(f->store, key, op_cb, &o), AHG_OK);
    assert_true(th_wait(&f->t, op_done, &o, 5000));
    struct op p = {0};
    assert_int_equal(ahg_store_publish(f->store, "ahg:routes", id, strlen(id), op_cb, &p), AHG_OK);
    assert_true(th_wait(&f->t, op_done, &p, 5000));
}

/* ---- HTTP client ---- */

static int
hcli_body(void *ud, const char *p, size_t n)
{
    struct hcli *h = ud;
    if (h->blen < sizeof(h->body) - 1) {
        size_t k = sizeof(h->body) - 1 - h->blen < n ? sizeof(h->body) - 1 - h->blen : n;
        memcpy(h->body + h->blen, p, k);
        h->blen += k;
        h->body[h->blen] = '\0';
    }
    h->got += n;
    h->sum = tb_fnv(h->sum, (const unsigned char *)p, n);
    return AHG_OK;
}

static void
hcli_pump(struct hcli *h)
{
    if (!h->c || h->closed)
        return;
    if (h->req_off < h->req_len) {
        (void)ahg_conn_write(h->c, h->req + h->req_off, h->req_len - h->req_off);
        h->req_off = h->req_len;
    }
    unsigned char buf[32768];
    while (h->up_off < h->up_total && ahg_conn_writable(h->c)) {
        size_t k =
            h->up_total - h->up_off < sizeof(buf) ? (size_t)(h->up_total - h->up_off) : sizeof(buf);
        for (size_t i = 0; i < k; i++)
            buf[i] = tb_pat(h->up_off + i);
        if (h->up_chunked) {
            char sz[24];
            int l = snprintf(sz, sizeof(sz), "%zx\r\n", k);
            (void)ahg_conn_write(h->c, sz, (size_t)l);
        }
        (void)ahg_conn_write(h->c, buf, k);
        if (h->up_chunked)
            (void)ahg_conn_write(h->c, "\r\n", 2);
        h->up_off += k;
        if (h->up_off == h->up_total && h->up_chunked)
            (void)ahg_conn_write(h->c, "0\r\n\r\n", 5);
    }
}

static void
hcli_connect(struct ahg_conn *c)
{
    struct hcli *h = ahg_conn_ud(c);
    h->connected = true;
    hcli_pump(h);
}

static size_t
hcli_data(struct ahg_conn *c, const unsigned char *p, size_t n)
{
    struct hcli *h = ahg_conn_ud(c);
    size_t off = 0;
    while (off < n && !h->done && !h->failed) {
        size_t used = 0;
        if (!h->head) {
            int rc = ahg_http_parser_feed(h->p, (const char *)p + off, n - off, &used);
            off += used;
            if (rc == AHG_EAGAIN)
                break;
            if (rc != AHG_OK) {
                h->failed = true;
                break;
            }
            const struct ahg_http_head *hh = ahg_http_parser_head(h->p);
            if (hh->status == 100) {
                ahg_http_parser_reset(h->p);
                (void)ahg_http_parser_set_request_method(h->p, h->method);
                continue;
            }
            h->head = ahg_http_parser_head_take(h->p);
            h->status = h->head->status;
            if (h->status == 101) {
                h->done = true;
                break;
            }
        }
        int rc = ahg_http_parser_body(h->p, (const char *)p + off, n - off, &used, hcli_body, h);
        if (used)
            h->chunks++;
        off += used;
        if (rc == AHG_OK)
            h->done = true;
        else if (rc != AHG_EAGAIN)
            h->failed = true;
        else
            break;
    }
    if (h->head && !h->done && ahg_http_parser_framing(h->p) == AHG_HTTP_BODY_NONE)
        h->done = true;
    return n;
}

static void
hcli_drain(struct ahg_conn *c)
{
    hcli_pump(ahg_conn_ud(c));
}

static void
hcli_close(struct ahg_conn *c, enum ahg_conn_end why)
{
    struct hcli *h = ahg_conn_ud(c);
    if (why == AHG_CONN_END_CONNECT)
        h->connect_failed = true;
    if (h->head && !h->done && ahg_http_parser_eof(h->p) == AHG_OK)
        h->done = true;
    h->closed = true;
    h->c = NULL;
}

static const struct ahg_conn_ops hcli_ops = {.on_connect = hcli_connect,
                                             .on_data = hcli_data,
                                             .on_drain = hcli_drain,
                                             .on_close = hcli_close};

void
hcli_send(struct th *t, struct hcli *h, int port, const char *tls_host, const char *method,
          const char *raw, uint64_t up_total, bool up_chunked)
{
    memset(h, 0, sizeof(*h));
    h->t = t;
    h->sum = TB_FNV0;
    (void)snprintf(h->method, sizeof(h->method), "%s", method);
    h->p = ahg_http_parser_new(AHG_HTTP_RESPONSE, NULL, NULL);
    assert_non_null(h->p);
    (void)ahg_http_parser_set_request_method(h->p, method);
    h->req_len = strlen(raw);
    h->req = malloc(h->req_len + 1);
    assert_non_null(h->req);
    memcpy(h->req, raw, h->req_len + 1);
    h->up_total = up_total;
    h->up_chunked = up_chunked;
    struct ahg_connect_opts co = {.address = "127.0.0.1",
                                  .port = port,
                                  .tls = tls_host != NULL,
                                  .tls_host = tls_host,
                                  .insecure = true};
    int err = 0;
    h->c = ahg_conn_connect(t->loop, &co, &hcli_ops, h, &err);
    assert_non_null(h->c);
}

static bool
hcli_done(void *arg)
{
    struct hcli *h = arg;
    return h->done || h->closed || h->failed;
}

bool
hcli_wait(struct hcli *h, unsigned ms)
{
    (void)th_wait(h->t, hcli_done, h, ms);
    return h->done;
}

static bool
hcli_gone(void *arg)
{
    return ((struct hcli *)arg)->closed;
}

bool
hcli_wait_closed(struct hcli *h, unsigned ms)
{
    return th_wait(h->t, hcli_gone, h, ms);
}

void
hcli_free(struct hcli *h)
{
    if (h->c) {
        ahg_conn_set_ops(h->c, &ahg_conn_null_ops, NULL);
        ahg_conn_abort(h->c);
        h->c = NULL;
    }
    ahg_http_parser_free(h->p);
    ahg_http_head_free(h->head);
    free(h->req);
    h->p = NULL;
    h->head = NULL;
    h->req = NULL;
}

int
hget(struct gfx *f, struct hcli *h, const char *method, const char *host, const char *path,
     const char *extra)
{
    char raw[16384];
    (void)snprintf(raw, sizeof(raw), "%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", method, path, host,
                   extra ? extra : "");
    hcli_send(&f->t, h, f->port, NULL, method, raw, 0, false);
    (void)hcli_wait(h, 15000);
    return h->status;
}

const char *
hfield(const struct ahg_http_head *h, const char *name)
{
    const char *v = h ? ahg_http_head_get(h, name, NULL) : NULL;
    return v ? v : "";
}
