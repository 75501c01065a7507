/*
 * test_sidecar.c - azhexgate-sidecar as a child process, configured by environment variables
 * only, against the all-in-one server (azhexgate-server), with the demo app (cli/demo.h) on a
 * thread of this process standing in for the pod's app:
 *   - readiness is false while the app is down (public callers get 502) and true once it is up;
 *   - a request through the public URL reaches the app; /healthz and /metrics answer;
 *   - the subdomain is derived from POD_NAME/POD_NAMESPACE, a valid DNS label, and the same
 *     after a restart;
 *   - SIGTERM releases the tunnel (the URL answers 404 afterwards) and exits 0;
 *   - a Basic auth policy from a mounted file is enforced by the gateway;
 *   - a request in flight when SIGTERM comes still completes (drain delay, drain);
 *   - a bad API key keeps readiness false, logs a clear line, and is retried.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "ahg/err.h"
#include "ahg/net.h"
#include "cli/demo.h"
#include "sc/sidecar.h"
#include "tbody.h"
#include "tsupport.h"

#define POD "checkout-7d9f8c5b4-x2x4z"
#define NS  "shop"

static struct {
    char dir[256];
    struct ts_server srv;
    char label[SC_LABEL_MAX + 1];
} g;

/* ---- the app: the demo app on its own loop thread, on a chosen port ---- */

struct app {
    struct ahg_loop *loop;
    struct cli_demo *demo;
    pthread_t thr;
};

static void
app_up(struct app *a, int port)
{
    struct ahg_loop_opts lo = {0};
    a->loop = ahg_loop_new(&lo);
    assert_non_null(a->loop);
    int err = 0;
    struct cli_demo_opts o = {.port = port};
    a->demo = cli_demo_new(a->loop, &o, &err);
    assert_non_null(a->demo);
    tb_loop_thread_start(a->loop, &a->thr);
}

static void
app_down(struct app *a)
{
    tb_loop_thread_stop(a->loop, a->thr);
    ahg_loop_free(a->loop);
    cli_demo_free(a->demo);
}

static void
nap_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    (void)nanosleep(&ts, NULL);
}

/* ---- the sidecar ---- */

struct sidecar {
    struct ts_proc p;
    int admin_port;
    char url[256];
};

/* Starts the sidecar with nothing but environment variables. */
static void
sc_spawn(struct sidecar *s, const char *tag, int app_port, const char *key_file,
         const char *extra_env)
{
    char port[48], admin[48], url[192], key[400], log[320], pod[96], ns[64];
    memset(s, 0, sizeof(*s));
    s->admin_port = ts_free_port();
    (void)snprintf(port, sizeof(port), "AZHEXGATE_PORT=%d", app_port);
    (void)snprintf(admin, sizeof(admin), "AZHEXGATE_ADMIN_PORT=%d", s->admin_port);
    (void)snprintf(url, sizeof(url), "AZHEXGATE_API_URL=%s", g.srv.api_url);
    (void)snprintf(key, sizeof(key), "AZHEXGATE_API_KEY_FILE=%s", key_file);
    (void)snprintf(log, sizeof(log), "%s/sidecar-%s.log", g.dir, tag);
    (void)snprintf(pod, sizeof(pod), "POD_NAME=%s", POD);
    (void)snprintf(ns, sizeof(ns), "POD_NAMESPACE=%s", NS);
    const char *env[] = {port,
                         admin,
                         url,
                         key,
                         "AZHEXGATE_PROBE_INTERVAL=200ms",
                         "AZHEXGATE_RETRY_MAX=1s",
                         "AZHEXGATE_DRAIN_TIMEOUT=5s",
                         pod,
                         ns,
                         extra_env,
                         NULL};
    const char *argv[] = {SIDECAR_BIN, NULL};
    ts_spawn(&s->p, argv, env, log);
}

/* Waits for the tunnel and reads the public URL from the log. */
static void
sc_established(struct sidecar *s)
{
    if (!ts_wait_output(&s->p, "Tunnel established", 20000)) {
        char *o = ts_output(&s->p);
        fail_msg("the sidecar did not establish the tunnel:\n%s", o);
    }
    char *o = ts_output(&s->p);
    const char *u = strstr(o, "public URL ");
    assert_non_null(u);
    u += strlen("public URL ");
    size_t n = strcspn(u, " \"");
    assert_true(n > 0 && n < sizeof(s->url));
    memcpy(s->url, u, n);
    s->url[n] = '\0';
    free(o);
}

static void
admin_get(const struct sidecar *s, const char *path, struct ts_resp *r)
{
    char url[128];
    (void)snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", s->admin_port, path);
    struct ts_req q = {.url = url, .timeout_ms = 5000};
    ts_http(&q, r);
}

/* Polls an admin path until it answers want (10 s at most); returns the last status. */
static long
admin_status_eventually(const struct sidecar *s, const char *path, long want, struct ts_resp *r)
{
    for (int i = 0; i < 200; i++) {
        ts_resp_free(r);
        admin_get(s, path, r);
        if (r->status == want)
            break;
        nap_ms(50);
    }
    return r->status;
}

/* Fails with the sidecar's output when got is not want. */
static void
expect_status(const struct sidecar *s, long got, long want, const struct ts_resp *r)
{
    if (got == want)
        return;
    char *o = ts_output(&s->p);
    size_t n = strlen(o);
    print_error("sidecar output (last lines):\n%s\n", o + (n > 1500 ? n - 1500 : 0));
    free(o);
    fail_msg("expected HTTP %ld, got %ld (%s)", want, got, r->body ? r->body : r->err);
}

static long
public_status_eventually(const char *base, const char *path, long want, struct ts_resp *r)
{
    char url[384];
    (void)snprintf(url, sizeof(url), "%s%s", base, path);
    for (int i = 0; i < 200; i++) {
        ts_resp_free(r);
        struct ts_req q = {.url = url, .timeout_ms = 10000};
        ts_http(&q, r);
        if (r->status == want)
            break;
        nap_ms(50);
    }
    return r->status;
}

static size_t
count_in_output(const struct ts_proc *p, const char *needle)
{
    char *o = ts_output(p);
    size_t n = 0;
    for (const char *q = strstr(o, needle); q; q = strstr(q + 1, needle))
        n++;
    free(o);
    return n;
}

static void
sc_terminate(struct sidecar *s)
{
    ts_signal(&s->p, SIGTERM);
    int rc = ts_wait_exit(&s->p, 30000);
    if (rc != 0) {
        char *o = ts_output(&s->p);
        fail_msg("the sidecar exited with %d after SIGTERM:\n%s", rc, o);
    }
}

/* ---- the cases ---- */

static void
test_sidecar_lifecycle(void **state)
{
    (void)state;
    int app_port = ts_free_port();
    struct sidecar s;
    sc_spawn(&s, "life", app_port, g.srv.api_key_file, NULL);
    sc_established(&s);

    /* the derived subdomain is the public URL's label, and a valid DNS label */
    char want[128];
    (void)snprintf(want, sizeof(want), "http://%s.", g.label);
    assert_int_equal(strncmp(s.url, want, strlen(want)), 0);
    assert_true(sc_label_ok(g.label));

    /* JSON logs by default */
    char *o = ts_output(&s.p);
    assert_non_null(strstr(o, "{\""));
    free(o);

    struct ts_resp r = {0};
    admin_get(&s, "/healthz", &r);
    assert_int_equal(r.status, 200);

    /* the control channel is up but the app is down: not ready, callers get 502 */
    expect_status(&s, admin_status_eventually(&s, "/readyz", 503, &r), 503, &r);
    assert_non_null(strstr(r.body, "not reachable"));
    expect_status(&s, public_status_eventually(s.url, "/headers", 502, &r), 502, &r);

    /* the app comes up: ready, and a request through the public URL reaches it */
    struct app app;
    app_up(&app, app_port);
    expect_status(&s, admin_status_eventually(&s, "/readyz", 200, &r), 200, &r);
    assert_string_equal(r.body, "ready\n");
    expect_status(&s, public_status_eventually(s.url, "/headers", 200, &r), 200, &r);
    assert_non_null(strstr(r.body, "\"method\":\"GET\""));

    ts_resp_free(&r);
    admin_get(&s, "/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "azhexgate_sidecar_ready 1"));
    assert_non_null(strstr(r.body, "azhexgate_sidecar_control_channel_up 1"));
    assert_null(strstr(r.body, "azhexgate_sidecar_requests_total 0\n"));
    ts_resp_free(&r);

    /* SIGTERM: drain, DELETE, exit 0; the URL is gone */
    sc_terminate(&s);
    assert_true(count_in_output(&s.p, "released") >= 1);
    assert_int_equal(public_status_eventually(s.url, "/headers", 404, &r), 404);

    /* a restarted pod gets the same URL; this time with a Basic auth policy from a mounted
     * file */
    char auth_file[320], auth_env[400];
    (void)snprintf(auth_file, sizeof(auth_file), "%s/basic-auth", g.dir);
    FILE *f = fopen(auth_file, "w");
    assert_non_null(f);
    (void)fputs("shop:s3cret\n", f);
    (void)fclose(f);
    (void)snprintf(auth_env, sizeof(auth_env), "AZHEXGATE_BASIC_AUTH_FILE=%s", auth_file);
    struct sidecar s2;
    sc_spawn(&s2, "restart", app_port, g.srv.api_key_file, auth_env);
    sc_established(&s2);
    assert_string_equal(s2.url, s.url);
    expect_status(&s2, public_status_eventually(s2.url, "/headers", 401, &r), 401, &r);
    char full[320];
    (void)snprintf(full, sizeof(full), "%s/headers", s2.url);
    const char *hdrs[] = {"Authorization: Basic c2hvcDpzM2NyZXQ=", NULL}; /* shop:s3cret */
    struct ts_req q = {.url = full, .headers = hdrs, .timeout_ms = 10000};
    ts_resp_free(&r);
    ts_http(&q, &r);
    assert_int_equal(r.status, 200);
    o = ts_output(&s2.p);
    assert_null(strstr(o, "s3cret"));
    free(o);
    sc_terminate(&s2);
    ts_resp_free(&r);
    app_down(&app);
}

static void
test_sidecar_bad_api_key(void **state)
{
    (void)state;
    char bad[320];
    (void)snprintf(bad, sizeof(bad), "%s/bad-key", g.dir);
    FILE *f = fopen(bad, "w");
    assert_non_null(f);
    (void)fputs("ahg_not-the-right-key-0123456789\n", f);
    (void)fclose(f);

    struct sidecar s;
    sc_spawn(&s, "badkey", ts_free_port(), bad, NULL);
    if (!ts_wait_output(&s.p, "Authentication failed", 20000)) {
        char *o = ts_output(&s.p);
        fail_msg("no authentication error logged:\n%s", o);
    }
    /* it keeps retrying (a sidecar never gives up) and stays not ready */
    for (int i = 0; i < 200 && count_in_output(&s.p, "Authentication failed") < 2; i++)
        nap_ms(50);
    assert_true(count_in_output(&s.p, "Authentication failed") >= 2);
    assert_true(ts_alive(&s.p));
    struct ts_resp r = {0};
    admin_get(&s, "/readyz", &r);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "control channel down"));
    ts_resp_free(&r);
    admin_get(&s, "/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_null(strstr(r.body, "azhexgate_sidecar_api_errors_total 0\n"));
    ts_resp_free(&r);
    char *o = ts_output(&s.p);
    assert_non_null(strstr(o, "AZHEXGATE_API_KEY_FILE"));
    assert_null(strstr(o, "not-the-right-key")); /* secrets never logged */
    free(o);
    sc_terminate(&s);
}

/* A Server-Sent Events call on its own thread (libcurl): `started` turns true with the first
 * bytes of the answer, so the test knows the request is in flight in the sidecar. */
struct slow_call {
    char url[320];
    atomic_bool started;
    long status;
    size_t events;
    char tail[8];
};

static size_t
slow_call_data(char *p, size_t size, size_t n, void *ud)
{
    struct slow_call *c = ud;
    size_t len = size * n;
    /* count "data:" across chunk borders with the last bytes of the previous chunk */
    char buf[4096 + sizeof(c->tail)];
    for (size_t off = 0; off < len;) {
        size_t take = len - off < 4096 ? len - off : 4096;
        size_t tl = strlen(c->tail);
        memcpy(buf, c->tail, tl);
        memcpy(buf + tl, p + off, take);
        buf[tl + take] = '\0';
        for (const char *q = strstr(buf, "data:"); q; q = strstr(q + 1, "data:"))
            c->events++;
        size_t keep = tl + take < 4 ? tl + take : 4;
        memcpy(c->tail, buf + tl + take - keep, keep);
        c->tail[keep] = '\0';
        off += take;
    }
    atomic_store(&c->started, true);
    return len;
}

static void *
slow_call_run(void *arg)
{
    struct slow_call *c = arg;
    CURL *h = curl_easy_init();
    if (!h)
        return NULL;
    (void)curl_easy_setopt(h, CURLOPT_URL, c->url);
    (void)curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, slow_call_data);
    (void)curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    (void)curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 30000L);
    (void)curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (curl_easy_perform(h) == CURLE_OK)
        (void)curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &c->status);
    curl_easy_cleanup(h);
    atomic_store(&c->started, true);
    return NULL;
}

/* SIGTERM with a drain delay (classic two-container pods): a request in flight when the signal
 * comes still gets its answer, readiness turns false at once, and the tunnel is released. */
static void
test_sidecar_drain(void **state)
{
    (void)state;
    int app_port = ts_free_port();
    struct app app;
    app_up(&app, app_port);
    struct sidecar s;
    sc_spawn(&s, "drain", app_port, g.srv.api_key_file, "AZHEXGATE_SIDECAR_DRAIN_DELAY=1s");
    sc_established(&s);
    struct ts_resp r = {0};
    expect_status(&s, admin_status_eventually(&s, "/readyz", 200, &r), 200, &r);

    /* 20 events 100 ms apart: the answer is still streaming when SIGTERM comes */
    struct slow_call c;
    memset(&c, 0, sizeof(c));
    atomic_init(&c.started, false);
    (void)snprintf(c.url, sizeof(c.url), "%s/events?count=20&every=100", s.url);
    pthread_t thr;
    assert_int_equal(pthread_create(&thr, NULL, slow_call_run, &c), 0);
    for (int i = 0; i < 400 && !atomic_load(&c.started); i++)
        nap_ms(25);
    assert_true(atomic_load(&c.started));

    ts_signal(&s.p, SIGTERM);
    assert_true(ts_wait_output(&s.p, "before draining", 10000));
    ts_resp_free(&r);
    admin_get(&s, "/readyz", &r);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "draining"));
    ts_resp_free(&r);

    int rc = ts_wait_exit(&s.p, 30000);
    assert_int_equal(pthread_join(thr, NULL), 0);
    assert_int_equal(rc, 0);
    assert_int_equal(c.status, 200);
    assert_int_equal(c.events, 20); /* the whole stream arrived */
    assert_true(count_in_output(&s.p, "released") >= 1);
    assert_int_equal(public_status_eventually(s.url, "/headers", 404, &r), 404);
    ts_resp_free(&r);
    app_down(&app);
}

static int
setup(void **state)
{
    (void)state;
    ts_mkdtemp(g.dir, sizeof(g.dir), "sidecar");
    ts_server_start(&g.srv, SERVER_BIN, g.dir, NULL);
    assert_int_equal(sc_derive_subdomain(POD, NS, g.label, sizeof(g.label)), AHG_OK);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    ts_kill(&g.srv.proc);
    ts_rmtree(g.dir);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sidecar_lifecycle),
        cmocka_unit_test(test_sidecar_bad_api_key),
        cmocka_unit_test(test_sidecar_drain),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
