/*
 * The admin listener (ahg/admin.h) over a real socket: its loop runs in a thread, libcurl
 * calls it from the test thread.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "ahg/admin.h"
#include "ahg/httpd.h"
#include "ahg/metrics.h"
#include "ahg/net.h"

static volatile bool g_ready;

static bool
ready_fn(void *ud, char *why, size_t whysz)
{
    (void)ud;
    if (!g_ready)
        (void)snprintf(why, whysz, "store unreachable");
    return g_ready;
}

static void *
loop_thread(void *arg)
{
    (void)ahg_loop_run(arg);
    return NULL;
}

static void
stop_cb(void *arg)
{
    ahg_loop_stop(arg);
}

struct got {
    char buf[4096];
    size_t len;
};

static size_t
on_data(char *p, size_t sz, size_t n, void *ud)
{
    struct got *g = ud;
    size_t k = sz * n;
    if (g->len + k >= sizeof(g->buf))
        return 0;
    memcpy(g->buf + g->len, p, k);
    g->len += k;
    g->buf[g->len] = '\0';
    return k;
}

static long
get(int port, const char *path, struct got *g)
{
    char url[128];
    (void)snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    memset(g, 0, sizeof(*g));
    CURL *c = curl_easy_init();
    assert_non_null(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, g);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    return status;
}

static void
test_admin_endpoints(void **state)
{
    (void)state;
    struct ahg_loop *loop = ahg_loop_new(NULL);
    assert_non_null(loop);
    struct ahg_metrics *m = ahg_metrics_new();
    ahg_metric_inc(ahg_metrics_counter(m, "azhexgate_test_total", "A test counter", NULL));
    int err = 0;
    struct ahg_admin_opts o = {.port = 0, .ready = ready_fn, .metrics = m};
    struct ahg_httpd *a = ahg_admin_new(loop, &o, &err);
    assert_non_null(a);
    struct ahg_admin_opts o2 = {.name = "admin2", .port = 0}; /* no callback, no registry */
    struct ahg_httpd *b = ahg_admin_new(loop, &o2, &err);
    assert_non_null(b);
    int pa = ahg_httpd_port(a), pb = ahg_httpd_port(b);
    pthread_t thr;
    assert_int_equal(pthread_create(&thr, NULL, loop_thread, loop), 0);

    struct got g;
    assert_int_equal(get(pa, "/healthz", &g), 200);
    assert_string_equal(g.buf, "ok\n");
    g_ready = false;
    assert_int_equal(get(pa, "/readyz", &g), 503);
    assert_string_equal(g.buf, "store unreachable\n");
    g_ready = true;
    assert_int_equal(get(pa, "/readyz", &g), 200);
    assert_string_equal(g.buf, "ready\n");
    assert_int_equal(get(pa, "/metrics", &g), 200);
    assert_non_null(strstr(g.buf, "azhexgate_test_total 1\n"));
    assert_int_equal(get(pa, "/other", &g), 404);
    assert_int_equal(get(pb, "/readyz", &g), 200);
    assert_int_equal(get(pb, "/metrics", &g), 404);

    assert_int_equal(ahg_loop_post(loop, stop_cb, loop), 0);
    assert_int_equal(pthread_join(thr, NULL), 0);
    ahg_loop_free(loop); /* frees the listeners and their admin state */
    ahg_metrics_free(m);
}

int
main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_admin_endpoints)};
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
