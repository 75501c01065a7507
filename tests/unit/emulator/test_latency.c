/*
 * latency.c: the "live" profile (hc-protocol.md 13: rendezvous 0.4-0.75 s with the lane hops,
 * 25 per mille held 3-7 s), explicit overrides, and deferred calls on a real loop (timing,
 * synchronous ms=0, cancel, re-deferring from a callback, pending calls freed after the loop).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "emu_mgmt_testlib.h"

static void
test_latency_off(void **state)
{
    (void)state;
    struct emu *e = emu_test_new(NULL, NULL);
    struct emu_latency zero;
    memset(&zero, 0, sizeof(zero));
    assert_memory_equal(&e->lat, &zero, sizeof(zero));
    for (int i = 0; i < 100; i++)
        assert_int_equal(emu_latency_rendezvous_ms(e), 0);
    emu_test_free(e);
}

static void
test_latency_live_profile(void **state)
{
    (void)state;
    const char *flags[] = {"--emulator-latency-profile=live", NULL};
    struct emu *e = emu_test_new(NULL, flags);
    assert_non_null(e);
    const struct emu_latency *l = &e->lat;
    assert_int_equal(l->sender_lane_ms, 30);
    assert_int_equal(l->listener_lane_ms, 30);
    assert_int_equal(l->sas_validate_ms, 10);
    assert_int_equal(l->jwt_validate_ms, 150);
    assert_int_equal(l->slow_permille, 25);
    assert_int_equal(l->arm_ms, 0);
    /* a rendezvous = 4 lane hops + the match hold: 0.4-0.75 s, or 3-7 s more when slow */
    unsigned hops = 2 * l->sender_lane_ms + 2 * l->listener_lane_ms;
    unsigned slow = 0, lo = 1000000, hi = 0;
    const int n = 4000;
    for (int i = 0; i < n; i++) {
        unsigned ms = emu_latency_rendezvous_ms(e) + hops;
        if (ms > 750) {
            slow++;
            assert_true(ms >= 400 + 3000 && ms <= 750 + 7000);
            continue;
        }
        assert_true(ms >= 400);
        lo = ms < lo ? ms : lo;
        hi = ms > hi ? ms : hi;
    }
    /* spread over the whole window; slow fraction ~25 per mille (mean 100, sd ~10) */
    assert_true(lo < 430);
    assert_true(hi > 720);
    assert_true(slow >= 50 && slow <= 160);
    emu_test_free(e);
}

static void
test_latency_explicit_overrides(void **state)
{
    (void)state;
    const char *flags[] = {"--emulator-latency-profile=live",
                           "--emulator-latency-match=100ms",
                           "--emulator-latency-lane=5ms",
                           "--emulator-latency-sas=1ms",
                           "--emulator-latency-jwt=2ms",
                           "--emulator-latency-slow-fraction=1000",
                           "--emulator-latency-slow=2s",
                           "--emulator-latency-arm=250ms",
                           NULL};
    struct emu *e = emu_test_new(NULL, flags);
    assert_non_null(e);
    assert_int_equal(e->lat.sender_lane_ms, 5);
    assert_int_equal(e->lat.listener_lane_ms, 5);
    assert_int_equal(e->lat.sas_validate_ms, 1);
    assert_int_equal(e->lat.jwt_validate_ms, 2);
    assert_int_equal(e->lat.arm_ms, 250);
    for (int i = 0; i < 50; i++)
        assert_int_equal(emu_latency_rendezvous_ms(e), 2100); /* deterministic now */
    emu_test_free(e);

    /* explicit zero beats the profile */
    const char *zero[] = {"--emulator-latency-profile=live", "--emulator-latency-slow-fraction=0",
                          "--emulator-latency-match=0", NULL};
    e = emu_test_new(NULL, zero);
    for (int i = 0; i < 200; i++)
        assert_int_equal(emu_latency_rendezvous_ms(e), 0);
    assert_int_equal(e->lat.sender_lane_ms, 30); /* the rest of the profile stays */
    emu_test_free(e);

    /* without a profile */
    const char *only[] = {"--emulator-latency-match=40ms", NULL};
    e = emu_test_new(NULL, only);
    assert_int_equal(emu_latency_rendezvous_ms(e), 40);
    assert_int_equal(e->lat.sender_lane_ms, 0);
    emu_test_free(e);
}

/* ---- deferred calls on a loop ---- */

struct rec {
    struct emu *e;
    double at[8];
    int n;
    double t0;
};

static struct rec rec;

static void
note(void *arg)
{
    (void)arg;
    if (rec.n < 8)
        rec.at[rec.n++] = emu_now_ms() - rec.t0;
}

static void
never(void *arg)
{
    (void)arg;
    fail_msg("a cancelled call ran");
}

static void
chain(void *arg)
{
    note(arg);
    emu_latency_defer(rec.e, 20, note, NULL); /* re-deferring from a callback */
}

static void
stop(void *arg)
{
    note(arg);
    ahg_loop_stop(rec.e->loop);
}

static void
test_latency_defer(void **state)
{
    (void)state;
    struct ahg_loop *loop = ahg_loop_new(NULL);
    assert_non_null(loop);
    struct emu *e = emu_test_new(loop, NULL);
    memset(&rec, 0, sizeof(rec));
    rec.e = e;
    rec.t0 = emu_now_ms();

    emu_latency_defer(e, 0, note, NULL); /* runs at once */
    assert_int_equal(rec.n, 1);
    int token = 0, token2 = 0;
    emu_latency_defer(e, 30, never, &token);
    emu_latency_defer(e, 60, never, &token);
    emu_latency_defer(e, 50, chain, &token2);
    emu_latency_defer(e, 400, stop, NULL);
    emu_latency_defer(e, 60000, never, &token2); /* still pending when the loop goes */
    emu_latency_cancel(e, &token);
    emu_latency_cancel(e, &rec); /* nothing with that arg: no-op */
    ahg_loop_run(loop);

    assert_int_equal(rec.n, 4); /* now, chain at 50, its child at ~70, stop at 400 */
    assert_true(rec.at[0] < 20);
    assert_true(rec.at[1] >= 49 && rec.at[1] < 380);
    assert_true(rec.at[2] >= rec.at[1] + 19);
    assert_true(rec.at[3] >= 399);
    ahg_loop_free(loop);
    emu_test_free(e); /* frees the 60 s call without running it (LSan checks the memory) */
    emu_latency_free(NULL);
}

int
main(void)
{
    ahg_log_setup("test", AHG_LOG_FORMAT_TEXT, AHG_LOG_LVL_ERROR, 2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_latency_off),
        cmocka_unit_test(test_latency_live_profile),
        cmocka_unit_test(test_latency_explicit_overrides),
        cmocka_unit_test(test_latency_defer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
