/*
 * cli_it.c - see cli_it.h.
 */
#include "cli_it.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ahg/err.h"
#include "ahg/log.h"

/* ---- the local test app ---- */

struct gen {
    struct ahg_timer tm;
    struct ahg_httpd_req *r;
    uint64_t total, off;
    unsigned events;
    bool ended;
};

static void
gen_pump(struct ahg_httpd_req *r)
{
    struct gen *g = ahg_httpd_req_ud(r);
    tb_gen_pump(r, &g->off, g->total, &g->ended);
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
    if (th_field(h, "Host")[0])
        assert_int_equal(ahg_http_head_add(resp, "X-Host", th_field(h, "Host")), AHG_OK);
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
    tb_echo(r, resp); /* anything else: echo */
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
    s->sum = tb_fnv(s->sum, (const unsigned char *)p, n);
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
            (void)snprintf(s->xmethod, sizeof(s->xmethod), "%s", th_field(h, "X-Method"));
            (void)snprintf(s->xhost, sizeof(s->xhost), "%s", th_field(h, "X-Host"));
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
            buf[hl + i] = tb_pat(s->up_off + i);
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
    s->sum = TB_FNV0;
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
    s->sum = TB_FNV0;
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

struct sndv {
    struct snd *v;
    int n;
};

static bool
sndv_done(void *arg)
{
    const struct sndv *a = arg;
    for (int i = 0; i < a->n; i++)
        if (!a->v[i].done && !a->v[i].gone)
            return false;
    return true;
}

void
snd_concurrent(struct th *t, const char *hc, int n, unsigned ms)
{
    struct sndv a = {.v = calloc((size_t)n, sizeof(struct snd)), .n = n};
    assert_non_null(a.v);
    for (int i = 0; i < n; i++)
        assert_true(snd_connect(t, &a.v[i], hc));
    for (int i = 0; i < n; i++) {
        char req[128];
        int k = snprintf(req, sizeof(req), "GET /size/%d HTTP/1.1\r\nHost: t\r\n\r\n", 1000 + i);
        assert_int_equal(ahg_http_parser_set_request_method(a.v[i].p, "GET"), AHG_OK);
        assert_int_equal(ahg_wsconn_send(a.v[i].ws, AHG_WS_BINARY, req, (size_t)k), AHG_OK);
    }
    assert_true(th_wait(t, sndv_done, &a, ms));
    for (int i = 0; i < n; i++) {
        assert_true(a.v[i].done);
        assert_int_equal(a.v[i].status, 200);
        assert_true(a.v[i].sum == tb_pat_sum(1000 + (uint64_t)i));
        snd_free(&a.v[i]);
    }
    free(a.v);
}

/* ---- child processes (the azhexgate and emulator binaries) ---- */

static void
px_tick(struct ahg_timer *tm)
{
    ahg_timer_start(tm, 5);
}

pid_t
spawn(const char *const argv[], const char *out)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            (void)dup2(fd, 1);
            (void)dup2(fd, 2);
            (void)close(fd);
        }
        execv(argv[0], (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    return pid;
}

bool
file_has(const char *path, const char *needle)
{
    static char buf[65536];
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    (void)fclose(f);
    buf[n] = 0;
    return strstr(buf, needle) != NULL;
}

struct fh {
    const char *path, *needle;
};

static bool
fh_cond(void *arg)
{
    struct fh *x = arg;
    return file_has(x->path, x->needle);
}

bool
wait_file(struct px *p, const char *path, const char *needle, unsigned ms)
{
    struct fh x = {path, needle};
    return th_wait(&p->t, fh_cond, &x, ms);
}

/* Waits for the child to exit; its exit status, or -1 on timeout. */
int
wait_exit(struct px *p, pid_t pid, unsigned ms)
{
    uint64_t end = ahg_now_ms() + ms;
    while (ahg_now_ms() < end) {
        int st = 0;
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (p)
            th_run(&p->t, 20);
        else
            (void)nanosleep(&(struct timespec){.tv_nsec = 20000000}, NULL);
    }
    return -1;
}

void
emu_start(struct px *p)
{
    char port[64], ready[160];
    (void)snprintf(port, sizeof(port), "--emulator-relay-port=%d", p->t.port);
    (void)snprintf(ready, sizeof(ready), "--emulator-ready-file=%s", p->ready);
    (void)unlink(p->ready);
    /* (the admin port flag stands in for the TLS flags when plain) */
    const char *const argv[] = {
        EMULATOR_BIN,
        p->t.tls ? "--emulator-relay-cert=" AHG_TEST_FIXTURES "/certs/server.pem"
                 : "--emulator-admin-port=0",
        p->t.tls ? "--emulator-relay-key=" AHG_TEST_FIXTURES "/certs/server.key"
                 : "--emulator-admin-port=0",
        "--emulator-namespace=" TH_NS,
        port,
        "--emulator-mgmt-port=0",
        "--emulator-identity-port=0",
        p->emu_flag ? p->emu_flag : "--emulator-admin-port=0",
        "--emulator-hybrid-connections=hc1",
        "--emulator-root-key=" TH_KEY,
        ready,
        NULL};
    p->emu = spawn(argv, p->emu_out);
    assert_true(wait_file(p, p->ready, "ready=1", 10000));
}

int
px_setup(void **state)
{
    struct px *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    ahg_log_setup("cli-it", AHG_LOG_FORMAT_TEXT, AHG_LOG_LVL_ERROR, 2);
    (void)snprintf(p->dir, sizeof(p->dir), "/tmp/cli-it-XXXXXX");
    assert_non_null(mkdtemp(p->dir));
    (void)snprintf(p->ready, sizeof(p->ready), "%s/ready", p->dir);
    (void)snprintf(p->emu_out, sizeof(p->emu_out), "%s/emu.log", p->dir);
    (void)snprintf(p->cli_out, sizeof(p->cli_out), "%s/cli.log", p->dir);
    p->t.loop = ahg_loop_new(NULL);
    assert_non_null(p->t.loop);
    ahg_timer_init(&p->t.tick, p->t.loop, px_tick, p);
    ahg_timer_start(&p->t.tick, 5);
    p->t.port = ts_free_port();
    app_start(&p->t, &p->app);
    *state = p;
    return 0;
}

int
px_teardown(void **state)
{
    struct px *p = *state;
    if (p->cli > 0) {
        (void)kill(p->cli, SIGKILL);
        (void)wait_exit(NULL, p->cli, 5000);
    }
    if (p->emu > 0) {
        (void)kill(p->emu, SIGKILL);
        (void)wait_exit(NULL, p->emu, 5000);
    }
    ahg_timer_stop(&p->t.tick);
    ahg_loop_free(p->t.loop);
    (void)unlink(p->ready);
    (void)unlink(p->emu_out);
    (void)unlink(p->cli_out);
    (void)rmdir(p->dir);
    free(p);
    return 0;
}

/* Runs the binary with args (NULL-terminated, after the program) and returns its exit code;
 * its output goes to out. */
int
run_cli(const char *out, const char *const *args)
{
    return run_cli_in(NULL, out, args);
}

int
run_cli_in(struct px *p, const char *out, const char *const *args)
{
    const char *argv[40] = {AZHEXGATE_BIN};
    int n = 1;
    for (; args[n - 1] && n < 39; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    (void)unlink(out);
    pid_t pid = spawn(argv, out);
    return wait_exit(p, pid, 20000);
}

/* ---- the stand-in management API ---- */

static void
api_json(struct ahg_httpd_req *r, int status, const char *json)
{
    (void)ahg_httpd_respond(r, status, "application/json", json, strlen(json), NULL);
}

static void
api_iso(long long t, char *out, size_t n)
{
    time_t tt = (time_t)t;
    struct tm tmv;
    (void)gmtime_r(&tt, &tmv);
    (void)strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tmv);
}

/* Answers with a tunnel and a fresh listener token for hc1, signed with the emulator's key. */
static void
api_tunnel(struct standin_api *s, struct ahg_httpd_req *r, int status)
{
    char tok[1024], te[40], ex[40], json[4096];
    th_token("hc1", NULL, NULL, s->token_secs, tok, sizeof(tok));
    long long now = (long long)time(NULL);
    api_iso(now + s->token_secs, te, sizeof(te));
    api_iso(now + 3600, ex, sizeof(ex));
    (void)snprintf(json, sizeof(json),
                   "{\"session_id\":\"%s\",\"subdomain\":\"63873749\","
                   "\"public_url\":\"https://63873749.tunnel.test\","
                   "\"relay_endpoint\":\"ws://%s:%d/\",\"hybrid_connection_name\":\"hc1\","
                   "\"listener_token\":\"%s\",\"token_expires_at\":\"%s\",\"expires_at\":\"%s\"}",
                   STANDIN_SID, s->relay_host, s->relay_port, tok, te, ex);
    api_json(r, status, json);
}

static void
api_body(struct ahg_httpd_req *r, const char *p, size_t n)
{
    struct standin_api *s = ahg_httpd_ud(ahg_httpd_req_server(r));
    if (s->blen + n < sizeof(s->last_body)) {
        memcpy(s->last_body + s->blen, p, n);
        s->blen += n;
        s->last_body[s->blen] = 0;
    }
}

static void
api_end(struct ahg_httpd_req *r)
{
    struct standin_api *s = ahg_httpd_ud(ahg_httpd_req_server(r));
    const struct ahg_http_head *h = ahg_httpd_req_head(r);
    const char *path = ahg_httpd_req_path(r);
    (void)snprintf(s->last_key, sizeof(s->last_key), "%s", th_field(h, "X-AzHexGate-ApiKey"));
    if (strcmp(s->last_key, STANDIN_KEY) != 0) {
        api_json(r, 401, "{\"error\":{\"code\":\"unauthorized\",\"message\":\"invalid API key\"}}");
        return;
    }
    if (!strcmp(h->method, "POST") && !strcmp(path, "/api/tunnels")) {
        s->creates++;
        if (s->fail_status) {
            char json[256];
            (void)snprintf(json, sizeof(json),
                           "{\"error\":{\"code\":\"unavailable\",\"message\":\"%s\"}}",
                           "the relay namespace is being provisioned");
            api_json(r, s->fail_status, json);
            return;
        }
        api_tunnel(s, r, 201);
        return;
    }
    if (!strcmp(h->method, "POST") && !strcmp(path, "/api/tunnels/" STANDIN_SID "/token")) {
        s->renews++;
        if (s->renew_gone) {
            api_json(r, 404, "{\"error\":{\"code\":\"not_found\",\"message\":\"no such tunnel\"}}");
            return;
        }
        api_tunnel(s, r, 200);
        return;
    }
    if (!strcmp(h->method, "DELETE") && !strcmp(path, "/api/tunnels/" STANDIN_SID)) {
        s->deletes++;
        (void)ahg_httpd_respond(r, 204, NULL, NULL, 0, NULL);
        return;
    }
    api_json(r, 404, "{\"error\":{\"code\":\"not_found\",\"message\":\"no such tunnel\"}}");
}

static const struct ahg_httpd_req_cbs api_cbs = {.on_body = api_body, .on_body_end = api_end};

static void
api_request(struct ahg_httpd_req *r)
{
    struct standin_api *s = ahg_httpd_ud(ahg_httpd_req_server(r));
    s->blen = 0;
    s->last_body[0] = 0;
    ahg_httpd_req_set_cbs(r, &api_cbs, s);
}

void
standin_api_start(struct th *t, struct standin_api *s, int relay_port)
{
    memset(s, 0, sizeof(*s));
    s->relay_port = relay_port;
    s->relay_host = "relay.localhost";
    s->token_secs = 3600;
    struct ahg_httpd_opts o = {
        .name = "standin-api", .port = 0, .on_request = api_request, .ud = s, .max_body = 65536};
    int err = 0;
    s->srv = ahg_httpd_new(t->loop, &o, &err);
    assert_non_null(s->srv);
    s->port = ahg_httpd_port(s->srv);
}
