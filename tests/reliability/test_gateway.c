/*
 * The attacks of test_attacks.c / test_load.c against the real gateway binary (memory store, no
 * controller): no TLS below 1.2 on its public HTTPS listener; slowloris and 10,000 idle
 * connections on its public listener while others are served. Measured numbers are printed as
 * "rel: ..." lines (docs/reliability.md).
 */
#include "rel.h"

#include <errno.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ahg/log.h"
#include "ahg/net.h"

#define CERT AHG_TEST_FIXTURES "/certs/server.pem"
#define KEY  AHG_TEST_FIXTURES "/certs/server.key"

struct gw {
    struct ts_proc proc;
    char dir[256], log[320];
    int port, admin;
};

/* Starts the gateway binary on free ports (TLS when tls), with extra flags (may be NULL). */
static void
gw_start(struct gw *g, bool tls, const char *const *extra)
{
    memset(g, 0, sizeof(*g));
    ts_mkdtemp(g->dir, sizeof(g->dir), "rel-gw");
    (void)snprintf(g->log, sizeof(g->log), "%s/gateway.log", g->dir);
    g->port = ts_free_port();
    g->admin = ts_free_port();
    char port[64], admin[64];
    (void)snprintf(port, sizeof(port), "--listen-port=%d", g->port);
    (void)snprintf(admin, sizeof(admin), "--admin-port=%d", g->admin);
    static const char key[] = "--relay-sas-key=" TH_KEY;
    const char *argv[24] = {GATEWAY_BIN,
                            "--domain=gw.test",
                            "--listen-address=127.0.0.1",
                            port,
                            admin,
                            "--store-url=memory:",
                            "--relay-endpoint=ws://127.0.0.1:9",
                            key,
                            "--log-level=debug"};
    size_t n = 9;
    if (tls) {
        argv[n++] = "--tls-cert=" CERT;
        argv[n++] = "--tls-key=" KEY;
    }
    for (size_t i = 0; extra && extra[i] && n < 23; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    ts_spawn(&g->proc, argv, NULL, g->log);
    if (!ts_wait_port(g->admin, 20000) || !ts_wait_port(g->port, 20000)) {
        char *out = ts_output(&g->proc);
        fail_msg("the gateway did not start: %s", out ? out : "");
    }
}

static void
gw_stop(struct gw *g)
{
    ts_signal(&g->proc, SIGTERM);
    int st = ts_wait_exit(&g->proc, 40000);
    if (st != 0) {
        char *out = ts_output(&g->proc);
        ts_kill(&g->proc);
        fail_msg("gateway exit status %d; output:\n%s", st, out ? out : "");
    }
    ts_rmtree(g->dir);
}

static void
test_gateway_tls_minimum_version(void **state)
{
    (void)state;
    struct gw g;
    gw_start(&g, true, NULL);
    rel_tls_expect_min_12("gateway public", g.port);
    gw_stop(&g);
}

static void
test_gateway_slowloris_and_idle_connections(void **state)
{
    (void)state;
    const size_t nidle = 10000, nslow = 50, n = nidle + nslow;
    if (!rel_raise_nofile((unsigned long)n + 512)) {
        (void)printf("rel: SKIP gateway slowloris/idle: cannot raise RLIMIT_NOFILE\n");
        skip();
    }
    struct gw g;
    gw_start(&g, false, NULL);
    long rss0 = rel_rss_kb(g.proc.pid);
    int *fds = calloc(n, sizeof(int));
    assert_non_null(fds);
    uint64_t t0 = ahg_now_ms();
    size_t connected = rel_open_conns(g.port, fds, n, 40000);
    (void)printf("rel: gateway slowloris/idle: %zu of %zu connections up in %llu ms\n", connected,
                 n, (unsigned long long)(ahg_now_ms() - t0));
    assert_int_equal(connected, n);
    static const char part[] = "GET / HTTP/1.1\r\nHost: a.gw.test\r\nX-Slow: ";
    for (size_t i = 0; i < nslow; i++) {
        struct pollfd pw = {.fd = fds[i], .events = POLLOUT};
        assert_int_equal(poll(&pw, 1, 10000), 1);
        assert_true(send(fds[i], part, sizeof(part) - 1, MSG_NOSIGNAL) > 0);
    }
    unsigned ok = 0, asked = 0;
    long rss_peak = 0, fd_peak = 0;
    for (int s = 0; s < 8; s++) {
        for (size_t i = 0; i < nslow; i++)
            (void)send(fds[i], "a", 1, MSG_NOSIGNAL);
        asked++;
        ok += rel_get_status(g.admin, "/healthz") == 200;
        /* a public request from someone else: an unknown tunnel, answered (404) meanwhile */
        struct ts_req q = {.url = "http://nosuch.gw.test/", .timeout_ms = 10000};
        char ct[64];
        (void)snprintf(ct, sizeof(ct), "127.0.0.1:%d", g.port);
        q.connect_to = ct;
        struct ts_resp resp;
        ts_http(&q, &resp);
        asked++;
        ok += resp.status == 404;
        ts_resp_free(&resp);
        long rss = rel_rss_kb(g.proc.pid), nfd = rel_fd_count(g.proc.pid);
        rss_peak = rss > rss_peak ? rss : rss_peak;
        fd_peak = nfd > fd_peak ? nfd : fd_peak;
        struct timespec ts = {.tv_sec = 1};
        (void)nanosleep(&ts, NULL); /* the attacker's pace, not synchronisation */
    }
    struct rel_408 a;
    rel_await_408(fds, n, nslow, 30000, &a);
    for (size_t i = 0; i < n; i++)
        (void)close(fds[i]);
    asked++;
    ok += rel_get_status(g.admin, "/healthz") == 200;
    long rss_after = rel_rss_kb(g.proc.pid);
    (void)printf("rel: gateway slowloris/idle: %zu connections (%zu slowloris); %u/%u other "
                 "requests answered meanwhile; 408 on %zu (%zu of %zu slowloris), closed without "
                 "answer %zu; idle connections still held at the end: %zu of %zu; all answered or "
                 "closed %llu ms after the attack\n",
                 n, nslow, ok, asked, a.n408, a.slow408, nslow, a.nclosed, a.idle_open, nidle,
                 (unsigned long long)a.all_done_ms);
    (void)printf("rel: gateway slowloris/idle: %ld open fds at the peak; RSS baseline %ld KiB, "
                 "with %zu connections %ld KiB (%.1f KiB per connection), after close %ld KiB\n",
                 fd_peak, rss0, n, rss_peak, (double)(rss_peak - rss0) / (double)n, rss_after);
    assert_int_equal(ok, asked);
    assert_int_equal(a.slow408, nslow);
    assert_int_equal(a.idle_open, 0); /* silent connections get the header timeout too */
    assert_true(fd_peak >= (long)n);
    assert_true(rss_peak - rss0 < (long)(n * 64));
    free(fds);
    gw_stop(&g);
}

int
main(void)
{
    (void)signal(SIGPIPE, SIG_IGN);
    (void)setvbuf(stdout, NULL, _IOLBF, 0);
    ahg_log_setup("rel-test", AHG_LOG_FORMAT_TEXT, AHG_LOG_LVL_ERROR, 2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gateway_tls_minimum_version),
        cmocka_unit_test(test_gateway_slowloris_and_idle_connections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
