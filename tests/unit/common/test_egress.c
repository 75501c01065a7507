/* Unit tests of ahg/egress.h against an ahg_httpd TLS server on 127.0.0.1. */
#include "ahg/egress.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ahg/err.h"
#include "ahg/httpd.h"
#include "ahg/net.h"

#define CERTS AHG_TEST_FIXTURES "/certs/"
#define MIB   ((size_t)1024 * 1024)

/* ---- the server ---- */

struct sreq {
    char *body;
    size_t len, cap;
};

static void
s_on_body(struct ahg_httpd_req *r, const char *p, size_t n)
{
    struct sreq *s = ahg_httpd_req_ud(r);
    if (s->len + n > s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 4096;
        while (nc < s->len + n)
            nc *= 2;
        char *b = realloc(s->body, nc);
        assert_non_null(b);
        s->body = b;
        s->cap = nc;
    }
    memcpy(s->body + s->len, p, n);
    s->len += n;
}

static void
s_on_body_end(struct ahg_httpd_req *r)
{
    struct sreq *s = ahg_httpd_req_ud(r);
    const struct ahg_http_head *h = ahg_httpd_req_head(r);
    const char *path = ahg_httpd_req_path(r);
    if (strcmp(path, "/hang") == 0)
        return; /* never answers */
    if (strcmp(path, "/teapot") == 0) {
        (void)ahg_httpd_respond(r, 418, "text/plain", "short and stout", 15, NULL);
        return;
    }
    if (strcmp(path, "/big") == 0) {
        size_t n = (size_t)100 * 1024;
        char *b = malloc(n);
        assert_non_null(b);
        memset(b, 'b', n);
        (void)ahg_httpd_respond(r, 200, "application/octet-stream", b, n, NULL);
        free(b);
        return;
    }
    /* /echo: the body back, plus what arrived */
    const char *t = ahg_http_head_get(h, "X-Test", NULL);
    const char *extra[] = {"X-Method", h->method, "X-Got-Test", t ? t : "-", NULL};
    (void)ahg_httpd_respond(r, 200, "application/octet-stream", s->body ? s->body : "", s->len,
                            extra);
}

static void
s_on_finish(struct ahg_httpd_req *r, bool completed)
{
    (void)completed;
    struct sreq *s = ahg_httpd_req_ud(r);
    free(s->body);
    free(s);
}

static const struct ahg_httpd_req_cbs s_cbs = {
    .on_body = s_on_body, .on_body_end = s_on_body_end, .on_finish = s_on_finish};

static void
s_on_request(struct ahg_httpd_req *r)
{
    struct sreq *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    ahg_httpd_req_set_cbs(r, &s_cbs, s);
}

/* ---- the harness ---- */

#define MAXR 8

struct t {
    struct ahg_loop *loop;
    struct ahg_egress *eg;
    int port;
    pthread_t main_thread;
    int want, got, wrong_thread;
    int err[MAXR], status[MAXR];
    size_t body_len[MAXR];
    char *body[MAXR];
    char *headers[MAXR];
};

static struct t *T;

static void
on_resp(const struct ahg_egress_resp *r, void *ud)
{
    (void)ud;
    struct t *t = T;
    if (!pthread_equal(pthread_self(), t->main_thread))
        t->wrong_thread++;
    if (t->got < MAXR) {
        int i = t->got;
        t->err[i] = r->err;
        t->status[i] = r->status;
        t->body_len[i] = r->body_len;
        free(t->body[i]);
        free(t->headers[i]);
        t->body[i] = malloc(r->body_len + 1);
        assert_non_null(t->body[i]);
        memcpy(t->body[i], r->body, r->body_len + 1);
        t->headers[i] = strdup(r->headers);
        assert_non_null(r->errmsg);
    }
    t->got++;
    if (t->got >= t->want)
        ahg_loop_stop(t->loop);
}

static void
guard_fired(struct ahg_timer *tm)
{
    struct t *t = tm->ud;
    ahg_loop_stop(t->loop);
}

static void
start(struct t *t, const struct ahg_egress_opts *eo)
{
    memset(t, 0, sizeof(*t));
    T = t;
    t->main_thread = pthread_self();
    t->loop = ahg_loop_new(NULL);
    assert_non_null(t->loop);
    struct ahg_httpd_opts o = {.name = "egress-test",
                               .port = 0,
                               .cert_file = CERTS "server.pem",
                               .key_file = CERTS "server.key",
                               .on_request = s_on_request};
    int err = 0;
    struct ahg_httpd *s = ahg_httpd_new(t->loop, &o, &err);
    assert_non_null(s);
    t->port = ahg_httpd_port(s);
    t->eg = ahg_egress_new(t->loop, eo);
    assert_non_null(t->eg);
}

static void
run(struct t *t, int want, uint64_t guard_ms)
{
    t->want = want;
    struct ahg_timer tm;
    ahg_timer_init(&tm, t->loop, guard_fired, t);
    ahg_timer_start(&tm, guard_ms);
    (void)ahg_loop_run(t->loop);
    ahg_timer_stop(&tm);
    assert_int_equal(t->wrong_thread, 0);
}

static void
stop(struct t *t)
{
    ahg_egress_free(t->eg);
    ahg_loop_free(t->loop);
    for (int i = 0; i < MAXR; i++) {
        free(t->body[i]);
        free(t->headers[i]);
    }
}

static void
url(const struct t *t, char *out, size_t outsz, const char *path)
{
    (void)snprintf(out, outsz, "https://127.0.0.1:%d%s", t->port, path);
}

static const struct ahg_egress_opts ca_opts = {.ca_file = CERTS "ca.pem", .timeout_ms = 5000};

/* ---- tests ---- */

static void
test_egress_get_post(void **state)
{
    (void)state;
    struct t t;
    start(&t, &ca_opts);
    char u[128];
    url(&t, u, sizeof(u), "/echo");
    const char *hdrs[] = {"X-Test: hello", "Authorization: Bearer secret", NULL};
    struct ahg_egress_req get = {.method = "GET", .url = u, .headers = hdrs};
    assert_int_equal(ahg_egress_request(t.eg, &get, on_resp, NULL, NULL), AHG_OK);
    assert_int_equal(t.got, 0);
    run(&t, 1, 10000);
    assert_int_equal(t.got, 1);
    assert_int_equal(t.err[0], AHG_OK);
    assert_int_equal(t.status[0], 200);
    assert_int_equal(t.body_len[0], 0);
    assert_non_null(strstr(t.headers[0], "X-Method: GET"));
    assert_non_null(strstr(t.headers[0], "X-Got-Test: hello"));

    struct ahg_egress_req post = {
        .method = "POST", .url = u, .headers = hdrs, .body = "{\"a\":1}", .body_len = 7};
    assert_int_equal(ahg_egress_request(t.eg, &post, on_resp, NULL, NULL), AHG_OK);
    t.got = 0;
    run(&t, 1, 10000);
    assert_int_equal(t.err[0] + t.got, 1);
    assert_int_equal(t.status[0], 200);
    assert_int_equal(t.body_len[0], 7);
    assert_string_equal(t.body[0], "{\"a\":1}");
    assert_non_null(strstr(t.headers[0], "X-Method: POST"));
    assert_int_equal(ahg_egress_inflight(t.eg), 0);
    stop(&t);
}

static void
test_egress_status_passthrough(void **state)
{
    (void)state;
    struct t t;
    start(&t, &ca_opts);
    char u[128];
    url(&t, u, sizeof(u), "/teapot");
    struct ahg_egress_req r = {.url = u};
    assert_int_equal(ahg_egress_request(t.eg, &r, on_resp, NULL, NULL), AHG_OK);
    run(&t, 1, 10000);
    assert_int_equal(t.got, 1);
    assert_int_equal(t.err[0], AHG_OK);
    assert_int_equal(t.status[0], 418);
    assert_string_equal(t.body[0], "short and stout");
    stop(&t);
}

static void
test_egress_one_mib(void **state)
{
    (void)state;
    struct t t;
    struct ahg_egress_opts o = ca_opts;
    o.max_body = 2 * MIB;
    start(&t, &o);
    char u[128];
    url(&t, u, sizeof(u), "/echo");
    char *big = malloc(MIB);
    assert_non_null(big);
    for (size_t i = 0; i < MIB; i++)
        big[i] = (char)('a' + (i % 26));
    struct ahg_egress_req r = {.method = "PUT", .url = u, .body = big, .body_len = MIB};
    assert_int_equal(ahg_egress_request(t.eg, &r, on_resp, NULL, NULL), AHG_OK);
    run(&t, 1, 15000);
    assert_int_equal(t.got, 1);
    assert_int_equal(t.err[0], AHG_OK);
    assert_int_equal(t.status[0], 200);
    assert_int_equal(t.body_len[0], MIB);
    assert_memory_equal(t.body[0], big, MIB);
    assert_non_null(strstr(t.headers[0], "X-Method: PUT"));
    free(big);
    stop(&t);
}

static void
test_egress_body_cap(void **state)
{
    (void)state;
    struct t t;
    struct ahg_egress_opts o = ca_opts;
    o.max_body = (size_t)64 * 1024;
    start(&t, &o);
    char u[128];
    url(&t, u, sizeof(u), "/big");
    struct ahg_egress_req r = {.url = u};
    assert_int_equal(ahg_egress_request(t.eg, &r, on_resp, NULL, NULL), AHG_OK);
    run(&t, 1, 10000);
    assert_int_equal(t.got, 1);
    assert_int_equal(t.err[0], AHG_ELIMIT);
    assert_true(t.body_len[0] <= (size_t)64 * 1024);
    stop(&t);
}

static void
test_egress_timeout(void **state)
{
    (void)state;
    struct t t;
    struct ahg_egress_opts o = ca_opts;
    o.timeout_ms = 300;
    start(&t, &o);
    char u[128];
    url(&t, u, sizeof(u), "/hang");
    struct ahg_egress_req r = {.url = u};
    uint64_t t0 = ahg_now_ms();
    assert_int_equal(ahg_egress_request(t.eg, &r, on_resp, NULL, NULL), AHG_OK);
    run(&t, 1, 10000);
    assert_int_equal(t.got, 1);
    assert_int_equal(t.err[0], AHG_ETIMEDOUT);
    assert_true(ahg_now_ms() - t0 < 5000);
    stop(&t);
}

static void
test_egress_connection_refused(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t sl = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    int port = ntohs(sa.sin_port);
    (void)close(fd);
    struct t t;
    start(&t, &ca_opts);
    char u[128];
    (void)snprintf(u, sizeof(u), "http://127.0.0.1:%d/", port);
    struct ahg_egress_req r = {.url = u};
    assert_int_equal(ahg_egress_request(t.eg, &r, on_resp, NULL, NULL), AHG_OK);
    run(&t, 1, 10000);
    assert_int_equal(t.got, 1);
    assert_int_equal(t.err[0], AHG_EUNAVAIL);
    assert_int_equal(t.status[0], 0);
    stop(&t);
}

static void
test_egress_tls_verification(void **state)
{
    (void)state;
    struct t t;
    struct ahg_egress_opts o = {.timeout_ms = 5000}; /* OS store only */
    start(&t, &o);
    char u[128];
    url(&t, u, sizeof(u), "/echo");
    struct ahg_egress_req r = {.url = u};
    assert_int_equal(ahg_egress_request(t.eg, &r, on_resp, NULL, NULL), AHG_OK);
    run(&t, 1, 10000);
    assert_int_equal(t.got, 1);
    assert_int_equal(t.err[0], AHG_ETLS);
    stop(&t);

    start(&t, &ca_opts);
    url(&t, u, sizeof(u), "/echo");
    assert_int_equal(ahg_egress_request(t.eg, &r, on_resp, NULL, NULL), AHG_OK);
    run(&t, 1, 10000);
    assert_int_equal(t.got, 1);
    assert_int_equal(t.err[0], AHG_OK);
    assert_int_equal(t.status[0], 200);
    stop(&t);
}

static void
test_egress_env_proxy_ignored(void **state)
{
    (void)state;
    assert_int_equal(setenv("https_proxy", "http://127.0.0.1:9", 1), 0);
    assert_int_equal(setenv("HTTPS_PROXY", "http://127.0.0.1:9", 1), 0);
    struct t t;
    start(&t, &ca_opts);
    char u[128];
    url(&t, u, sizeof(u), "/teapot");
    struct ahg_egress_req r = {.url = u};
    assert_int_equal(ahg_egress_request(t.eg, &r, on_resp, NULL, NULL), AHG_OK);
    run(&t, 1, 10000);
    (void)unsetenv("https_proxy");
    (void)unsetenv("HTTPS_PROXY");
    assert_int_equal(t.got, 1);
    assert_int_equal(t.err[0], AHG_OK);
    assert_int_equal(t.status[0], 418);
    stop(&t);
}

static struct ahg_egress_call *g_late;

static void
cancel_late(struct ahg_timer *tm)
{
    (void)tm;
    ahg_egress_cancel(g_late);
    g_late = NULL;
}

static void
test_egress_cancel(void **state)
{
    (void)state;
    struct t t;
    start(&t, &ca_opts);
    char u[128];
    url(&t, u, sizeof(u), "/hang");
    struct ahg_egress_req r = {.url = u};
    struct ahg_egress_call *h = NULL;
    assert_int_equal(ahg_egress_request(t.eg, &r, on_resp, NULL, &h), AHG_OK);
    assert_non_null(h);
    ahg_egress_cancel(h); /* before the worker saw it */
    assert_int_equal(ahg_egress_request(t.eg, &r, on_resp, NULL, &g_late), AHG_OK);
    struct ahg_timer tm;
    ahg_timer_init(&tm, t.loop, cancel_late, NULL);
    ahg_timer_start(&tm, 150); /* while the transfer runs */
    run(&t, 1, 800);
    ahg_timer_stop(&tm);
    assert_int_equal(t.got, 0);
    assert_int_equal(ahg_egress_inflight(t.eg), 0);
    stop(&t);
}

static void
test_egress_free_pending(void **state)
{
    (void)state;
    struct t t;
    start(&t, &ca_opts);
    char u[128];
    url(&t, u, sizeof(u), "/hang");
    struct ahg_egress_req r = {.url = u};
    assert_int_equal(ahg_egress_request(t.eg, &r, on_resp, NULL, NULL), AHG_OK);
    /* a response that is posted to the loop but not yet delivered when the client goes */
    char u2[128];
    (void)snprintf(u2, sizeof(u2), "http://127.0.0.1:1/");
    struct ahg_egress_req r2 = {.url = u2};
    assert_int_equal(ahg_egress_request(t.eg, &r2, on_resp, NULL, NULL), AHG_OK);
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 300000000L};
    (void)nanosleep(&ts, NULL);
    ahg_egress_free(t.eg);
    t.eg = NULL;
    run(&t, 1, 200);
    assert_int_equal(t.got, 0);
    stop(&t);
}

static void
test_egress_limits_and_args(void **state)
{
    (void)state;
    struct t t;
    struct ahg_egress_opts o = ca_opts;
    o.max_inflight = 2;
    start(&t, &o);
    char u[128];
    url(&t, u, sizeof(u), "/hang");
    struct ahg_egress_req r = {.url = u};
    assert_int_equal(ahg_egress_request(t.eg, &r, on_resp, NULL, NULL), AHG_OK);
    assert_int_equal(ahg_egress_request(t.eg, &r, on_resp, NULL, NULL), AHG_OK);
    struct ahg_egress_call *h = (struct ahg_egress_call *)&t;
    assert_int_equal(ahg_egress_request(t.eg, &r, on_resp, NULL, &h), AHG_ELIMIT);
    assert_null(h);
    assert_int_equal(ahg_egress_inflight(t.eg), 2);
    struct ahg_egress_req bad = {.url = "ftp://127.0.0.1/"};
    assert_int_equal(ahg_egress_request(t.eg, &bad, on_resp, NULL, NULL), AHG_EINVAL);
    const char *badh[] = {"X-Evil: a\r\nX-Injected: b", NULL};
    struct ahg_egress_req bad2 = {.url = u, .headers = badh};
    assert_int_equal(ahg_egress_request(t.eg, &bad2, on_resp, NULL, NULL), AHG_EINVAL);
    assert_int_equal(ahg_egress_request(t.eg, NULL, on_resp, NULL, NULL), AHG_EINVAL);
    stop(&t);
    assert_int_equal(t.got, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_egress_get_post),
        cmocka_unit_test(test_egress_status_passthrough),
        cmocka_unit_test(test_egress_one_mib),
        cmocka_unit_test(test_egress_body_cap),
        cmocka_unit_test(test_egress_timeout),
        cmocka_unit_test(test_egress_connection_refused),
        cmocka_unit_test(test_egress_tls_verification),
        cmocka_unit_test(test_egress_env_proxy_ignored),
        cmocka_unit_test(test_egress_cancel),
        cmocka_unit_test(test_egress_free_pending),
        cmocka_unit_test(test_egress_limits_and_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
