/*
 * The built-in demo app (cli/demo.h) over real sockets: its loop runs in a thread, libcurl
 * calls it from the test thread like any HTTP client would.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "ahg/buf.h"
#include "ahg/net.h"
#include "cli/demo.h"
#include "tbody.h"
#include "tsupport.h"

struct demo_env {
    struct ahg_loop *loop;
    struct cli_demo *demo;
    pthread_t thr;
    int port;
};

static struct demo_env env;

static int
setup(void **state)
{
    (void)state;
    struct ahg_loop_opts lo = {0};
    env.loop = ahg_loop_new(&lo);
    assert_non_null(env.loop);
    int err = 0;
    struct cli_demo_opts o = {.port = 0};
    env.demo = cli_demo_new(env.loop, &o, &err);
    assert_non_null(env.demo);
    env.port = cli_demo_port(env.demo);
    assert_true(env.port > 0);
    tb_loop_thread_start(env.loop, &env.thr);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    tb_loop_thread_stop(env.loop, env.thr);
    ahg_loop_free(env.loop);
    cli_demo_free(env.demo);
    return 0;
}

/* Performs method path with an optional body; returns the status; the answer lands in g (whose
 * previous answer is freed). */
static long
call(const char *method, const char *path, const void *body, size_t blen, const char *extra_header,
     struct ts_resp *g)
{
    char url[256];
    (void)snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", env.port, path);
    const char *hdrs[] = {extra_header, NULL};
    struct ts_req q = {
        .method = method, .url = url, .headers = hdrs, .body = body, .body_len = blen};
    ts_resp_free(g);
    ts_http(&q, g);
    if (g->status == 0)
        fail_msg("%s %s: no answer: %s", method, path, g->err);
    return g->status;
}

static void
test_page(void **state)
{
    (void)state;
    struct ts_resp g = {0};
    assert_int_equal(call("GET", "/", NULL, 0, NULL, &g), 200);
    assert_non_null(strstr(g.body, "AzHexGate demo"));
    assert_non_null(strstr(g.body, "new WebSocket("));
    assert_non_null(strstr(g.body, "new EventSource('/events')"));
    ts_resp_free(&g);
}

static void
test_status_and_404(void **state)
{
    (void)state;
    struct ts_resp g = {0};
    assert_int_equal(call("GET", "/status/418", NULL, 0, NULL, &g), 418);
    assert_int_equal(call("GET", "/status/503", NULL, 0, NULL, &g), 503);
    assert_int_equal(call("GET", "/status/99", NULL, 0, NULL, &g), 404);
    assert_int_equal(call("GET", "/nope", NULL, 0, NULL, &g), 404);
    assert_int_equal(call("DELETE", "/", NULL, 0, NULL, &g), 405);
    assert_int_equal(call("GET", "/healthz", NULL, 0, NULL, &g), 200);
    assert_non_null(strstr(g.body, "ok"));
    ts_resp_free(&g);
}

static void
test_echo_large(void **state)
{
    (void)state;
    size_t n = (size_t)3 * 1024 * 1024 + 17;
    unsigned char *b = malloc(n);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(i * 131u + 7u);
    struct ts_resp g = {0};
    assert_int_equal(call("PUT", "/echo", b, n, "Content-Type: application/x-test", &g), 200);
    assert_int_equal(g.len, n);
    assert_memory_equal(g.body, b, n);
    assert_int_equal(call("POST", "/echo", "", 0, NULL, &g), 200);
    assert_int_equal(g.len, 0);
    ts_resp_free(&g);
    free(b);
}

static void
test_sink(void **state)
{
    (void)state;
    size_t n = (size_t)2 * 1024 * 1024 + 5;
    unsigned char *b = malloc(n);
    assert_non_null(b);
    tb_pat_fill(b, n, 0);
    struct ts_resp g = {0};
    assert_int_equal(call("POST", "/sink", b, n, NULL, &g), 200);
    char want[96];
    (void)snprintf(want, sizeof(want), "{\"bytes\":%zu,\"fnv1a64\":\"%016llx\"}\n", n,
                   (unsigned long long)tb_pat_sum(n));
    assert_string_equal(g.body, want);
    assert_int_equal(call("PUT", "/sink", "", 0, NULL, &g), 200);
    assert_non_null(strstr(g.body, "\"bytes\":0,"));
    assert_int_equal(call("GET", "/sink", NULL, 0, NULL, &g), 405);
    ts_resp_free(&g);
    free(b);
}

static void
test_bytes(void **state)
{
    (void)state;
    struct ts_resp g = {0};
    assert_int_equal(call("GET", "/bytes/1000003", NULL, 0, NULL, &g), 200);
    assert_int_equal(g.len, 1000003);
    for (size_t i = 0; i < g.len; i++)
        if (g.body[i] != (char)('a' + i % 26))
            fail_msg("byte %zu is %d", i, g.body[i]);
    assert_int_equal(call("HEAD", "/bytes/5", NULL, 0, NULL, &g), 200);
    assert_int_equal(g.len, 0);
    ts_resp_free(&g);
}

static void
test_headers_json(void **state)
{
    (void)state;
    struct ts_resp g = {0};
    assert_int_equal(call("GET", "/headers?x=1", NULL, 0, "X-Demo-Test: one, two", &g), 200);
    assert_non_null(strstr(g.body, "\"target\":\"/headers?x=1\""));
    assert_non_null(strstr(g.body, "[\"X-Demo-Test\",\"one, two\"]"));
    ts_resp_free(&g);
}

static void
test_events_and_delay(void **state)
{
    (void)state;
    struct ts_resp g = {0};
    assert_int_equal(call("GET", "/events?count=3&every=10", NULL, 0, NULL, &g), 200);
    int events = 0;
    for (const char *p = g.body; (p = strstr(p, "\ndata: ")) != NULL; p++)
        events++;
    assert_int_equal(events, 3);
    assert_non_null(strstr(g.body, "id: 3\n"));
    assert_int_equal(call("GET", "/delay/30", NULL, 0, NULL, &g), 200);
    assert_non_null(strstr(g.body, "delayed 30 ms"));
    ts_resp_free(&g);
}

int
main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_page),
        cmocka_unit_test(test_status_and_404),
        cmocka_unit_test(test_echo_large),
        cmocka_unit_test(test_sink),
        cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_headers_json),
        cmocka_unit_test(test_events_and_delay),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
