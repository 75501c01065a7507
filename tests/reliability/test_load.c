/*
 * Connection floods against the real emulator binary over 127.0.0.1: slowloris and 10,000 idle
 * connections on an ahg_httpd listener (the admin port), and a reconnect storm of 1,000
 * listeners with the emulator's RSS before, during and after. Measured numbers are printed as
 * "rel: ..." lines (docs/reliability.md). AHG_LONG_TESTS=1: 20,000 connections, 10 storms.
 */
#include "rel.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ahg/net.h"

/* ---- slowloris and idle connections ---- */

static void
test_slowloris_and_idle_connections(void **state)
{
    (void)state;
    size_t nidle = rel_long() ? 20000 : 10000;
    const size_t nslow = 50;
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rel_long() && !rel_raise_nofile((unsigned long)nidle + nslow + 512) &&
        rl.rlim_max > 10562) {
        nidle = (size_t)rl.rlim_max - nslow - 512; /* as many as the hard limit allows */
        (void)printf("rel: long variant limited to %zu idle connections by RLIMIT_NOFILE\n", nidle);
    }
    const size_t n = nidle + nslow;
    if (!rel_raise_nofile((unsigned long)n + 512)) {
        (void)printf("rel: SKIP slowloris/idle: cannot raise RLIMIT_NOFILE to %zu\n", n + 512);
        skip();
    }
    struct rel r;
    rel_init(&r, "rel-slow");
    rel_emu_start(&r, NULL, NULL);
    long rss0 = rel_rss_kb(r.emu.pid);
    int *fds = calloc(n, sizeof(int));
    assert_non_null(fds);
    uint64_t t0 = ahg_now_ms();
    size_t connected = rel_open_conns(r.admin_port, fds, n, 40000);
    (void)printf("rel: slowloris/idle: %zu of %zu connections up in %llu ms\n", connected, n,
                 (unsigned long long)(ahg_now_ms() - t0));
    assert_int_equal(connected, n);
    /* the slowloris ones: a head that never ends, one byte a second */
    static const char part[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    for (size_t i = 0; i < nslow; i++)
        assert_true(send(fds[i], part, sizeof(part) - 1, MSG_NOSIGNAL) > 0);
    unsigned ok = 0, asked = 0;
    long rss_peak = 0, fd_peak = 0;
    for (int s = 0; s < 8; s++) {
        for (size_t i = 0; i < nslow; i++)
            (void)send(fds[i], "a", 1, MSG_NOSIGNAL);
        asked++;
        ok += rel_get_status(r.admin_port, "/healthz") == 200;
        long rss = rel_rss_kb(r.emu.pid), nfd = rel_fd_count(r.emu.pid);
        rss_peak = rss > rss_peak ? rss : rss_peak;
        fd_peak = nfd > fd_peak ? nfd : fd_peak;
        struct timespec ts = {.tv_sec = 1};
        (void)nanosleep(&ts, NULL); /* the attacker's pace, not synchronisation */
    }
    /* the header timeout (10 s from the first byte) ends every slowloris connection with 408;
     * the idle ones (no byte sent) must start a request within the same 10 s or are closed */
    struct rel_408 a;
    rel_await_408(fds, n, nslow, 30000, &a);
    /* the server still answers after the flood */
    asked++;
    ok += rel_get_status(r.admin_port, "/healthz") == 200;
    long rss_during = rss_peak;
    for (size_t i = 0; i < n; i++)
        (void)close(fds[i]);
    assert_int_equal(rel_get_status(r.admin_port, "/healthz"), 200);
    long rss_after = rel_rss_kb(r.emu.pid);
    (void)printf(
        "rel: slowloris/idle: %zu connections (%zu slowloris); /healthz %u/%u ok "
        "meanwhile; 408 on %zu (%zu of %zu slowloris), closed without answer %zu; idle "
        "connections still held at the end: %zu of %zu; all answered or closed %llu ms after "
        "the attack\n",
        n, nslow, ok, asked, a.n408, a.slow408, nslow, a.nclosed, a.idle_open, nidle,
        (unsigned long long)a.all_done_ms);
    (void)printf("rel: slowloris/idle emulator: %ld open fds at the peak (all %zu accepted); RSS "
                 "baseline %ld KiB, with %zu connections %ld KiB (%.1f KiB per connection), after "
                 "close %ld KiB\n",
                 fd_peak, n, rss0, n, rss_during, (double)(rss_during - rss0) / (double)n,
                 rss_after);
    /* the emulator accepted (holds) every connection: they are not just in the kernel backlog */
    assert_true(fd_peak >= (long)n);
    assert_int_equal(ok, asked);
    assert_int_equal(a.slow408, nslow);
    assert_int_equal(a.idle_open, 0); /* silent connections get the header timeout too */
    /* bounded: well under 64 KiB per idle connection even with the sanitizers */
    assert_true(rss_during - rss0 < (long)(n * 64));
    free(fds);
    rel_finish(&r);
}

/* ---- reconnect storm ---- */

static size_t storm_n;
static struct tws *storm;

static void
test_reconnect_storm(void **state)
{
    (void)state;
    storm_n = 1000;
    unsigned rounds = rel_long() ? 10 : 3;
    if (!rel_raise_nofile((unsigned long)storm_n * 2 + 512))
        skip();
    struct rel r;
    rel_init(&r, "rel-storm");
    const char *extra[] = {"--emulator-max-listeners=1000", NULL};
    /* small ASan quarantine so freed memory can be reused and the RSS means something */
    const char *env[] = {"ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:quarantine_size_mb=4", NULL};
    rel_emu_start(&r, extra, env);
    char tok[1024];
    th_token("hc1", NULL, NULL, 3600, tok, sizeof(tok));
    storm = calloc(storm_n, sizeof(*storm));
    assert_non_null(storm);
    long base = rel_rss_kb(r.emu.pid), first_after = 0, last_after = 0;
    for (unsigned round = 0; round < rounds; round++) {
        for (size_t i = 0; i < storm_n; i++)
            rel_listen(&r, &storm[i], "hc1", tok);
        struct rel_set set = {storm, storm_n};
        assert_true(th_wait(&r.t, rel_settled, &set, 60000));
        size_t opened = 0;
        for (size_t i = 0; i < storm_n; i++)
            opened += storm[i].open && !storm[i].closed;
        long long counted = rel_metric(&r, "ahg_emulator_listeners");
        long peak = rel_rss_kb(r.emu.pid);
        for (size_t i = 0; i < storm_n; i++)
            tws_free(&storm[i]);
        uint64_t end = ahg_now_ms() + 30000;
        while (rel_metric(&r, "ahg_emulator_listeners") != 0 && ahg_now_ms() < end)
            th_run(&r.t, 100);
        long after = rel_rss_kb(r.emu.pid);
        (void)printf("rel: storm round %u: %zu/%zu listeners open (emulator counts %lld), RSS "
                     "baseline %ld KiB, peak %ld KiB, after drop %ld KiB\n",
                     round + 1, opened, storm_n, counted, base, peak, after);
        assert_int_equal(opened, storm_n);
        assert_int_equal(counted, (long long)storm_n);
        assert_int_equal(rel_metric(&r, "ahg_emulator_listeners"), 0);
        if (round == 0)
            first_after = after;
        last_after = after;
    }
    /* no growth from round to round: what one storm leaves behind is reused by the next */
    assert_true(last_after - first_after < 16L * 1024);
    free(storm);
    storm = NULL;
    rel_finish(&r);
}

int
main(void)
{
    (void)signal(SIGPIPE, SIG_IGN);
    (void)setvbuf(stdout, NULL, _IOLBF, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slowloris_and_idle_connections),
        cmocka_unit_test(test_reconnect_storm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
