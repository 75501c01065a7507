/*
 * test_guard.c - the API key guessing guard (controller/src/guard.h): budget, lockout and
 * Retry-After, refill, successes that do not reset, per-address isolation (IPv6 per /64,
 * v4-mapped), the bounded table and its eviction order. Time is passed in, nothing sleeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "guard.h"

static struct ctl_guard *
mk(unsigned fails, uint64_t window, uint64_t lockout, size_t entries)
{
    struct ctl_guard_opts o = {
        .max_failures = fails, .window_ms = window, .lockout_ms = lockout, .max_entries = entries};
    struct ctl_guard *g = ctl_guard_new(&o);
    assert_non_null(g);
    return g;
}

static void
test_guard_rejects_bad_options(void **state)
{
    (void)state;
    struct ctl_guard_opts o = {
        .max_failures = 0, .window_ms = 1, .lockout_ms = 1, .max_entries = 1};
    assert_null(ctl_guard_new(&o));
    o.max_failures = 1;
    o.max_entries = 0;
    assert_null(ctl_guard_new(&o));
    assert_null(ctl_guard_new(NULL));
    assert_int_equal(ctl_guard_check(NULL, "1.2.3.4", 0), 0);
    assert_false(ctl_guard_fail(NULL, "1.2.3.4", 0));
}

static void
test_guard_budget_then_lockout_with_retry_after(void **state)
{
    (void)state;
    struct ctl_guard *g = mk(5, 60000, 30000, 100);
    uint64_t t = 1000000;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(ctl_guard_check(g, "192.0.2.7", t), 0);
        assert_false(ctl_guard_fail(g, "192.0.2.7", t));
    }
    assert_int_equal(ctl_guard_check(g, "192.0.2.7", t), 0);
    assert_true(ctl_guard_fail(g, "192.0.2.7", t)); /* the 5th spends the budget */
    assert_int_equal(ctl_guard_check(g, "192.0.2.7", t), 30);
    assert_int_equal(ctl_guard_check(g, "192.0.2.7", t + 1), 30); /* rounded up */
    assert_int_equal(ctl_guard_check(g, "192.0.2.7", t + 29001), 1);
    /* a failure recorded while locked (a request already in flight) starts nothing new */
    assert_false(ctl_guard_fail(g, "192.0.2.7", t + 10000));
    assert_int_equal(ctl_guard_check(g, "192.0.2.7", t + 10000), 20);
    /* cooled down */
    assert_int_equal(ctl_guard_check(g, "192.0.2.7", t + 30000), 0);
    /* others were never affected */
    assert_int_equal(ctl_guard_check(g, "192.0.2.8", t), 0);
    ctl_guard_free(g);
}

static void
test_guard_budget_refills_with_time(void **state)
{
    (void)state;
    /* 4 failures per 40 s: one comes back every 10 s */
    struct ctl_guard *g = mk(4, 40000, 60000, 100);
    uint64_t t = 5000;
    for (int i = 0; i < 3; i++)
        assert_false(ctl_guard_fail(g, "198.51.100.1", t));
    /* 1 left; 10 s later 2 */
    t += 10000;
    assert_false(ctl_guard_fail(g, "198.51.100.1", t));
    assert_true(ctl_guard_fail(g, "198.51.100.1", t));
    assert_int_equal(ctl_guard_check(g, "198.51.100.1", t), 60);
    /* the budget refills during the lockout too: full again when it ends */
    t += 60000;
    assert_int_equal(ctl_guard_check(g, "198.51.100.1", t), 0);
    for (int i = 0; i < 3; i++)
        assert_false(ctl_guard_fail(g, "198.51.100.1", t));
    assert_true(ctl_guard_fail(g, "198.51.100.1", t));
    /* a slow guesser (one failure per refill period) is never locked out */
    struct ctl_guard *h = mk(4, 40000, 60000, 100);
    for (int i = 0; i < 100; i++)
        assert_false(ctl_guard_fail(h, "198.51.100.2", (uint64_t)i * 10000));
    ctl_guard_free(h);
    ctl_guard_free(g);
}

static void
test_guard_success_does_not_reset(void **state)
{
    (void)state;
    /* the guard has no "success" call at all: an attacker holding a valid key of its own gains
     * nothing by mixing good requests in; the budget only refills with time */
    struct ctl_guard *g = mk(3, 60000, 60000, 100);
    assert_false(ctl_guard_fail(g, "203.0.113.9", 0));
    assert_int_equal(ctl_guard_check(g, "203.0.113.9", 1), 0); /* a good request: let in */
    assert_false(ctl_guard_fail(g, "203.0.113.9", 2));
    assert_int_equal(ctl_guard_check(g, "203.0.113.9", 3), 0);
    assert_true(ctl_guard_fail(g, "203.0.113.9", 4));
    assert_int_equal(ctl_guard_check(g, "203.0.113.9", 5), 60);
    ctl_guard_free(g);
}

static void
test_guard_address_forms(void **state)
{
    (void)state;
    struct ctl_guard *g = mk(1, 60000, 60000, 100);
    /* one IPv6 /64 is one address */
    assert_true(ctl_guard_fail(g, "2001:db8:1:2::1", 0));
    assert_int_equal(ctl_guard_check(g, "2001:db8:1:2:ffff::9", 0), 60);
    assert_int_equal(ctl_guard_check(g, "2001:db8:1:3::1", 0), 0);
    /* v4-mapped IPv6 is the IPv4 address */
    assert_true(ctl_guard_fail(g, "::ffff:10.1.2.3", 0));
    assert_int_equal(ctl_guard_check(g, "10.1.2.3", 0), 60);
    assert_int_equal(ctl_guard_check(g, "10.1.2.4", 0), 0);
    /* anything else is one shared "unknown" address */
    assert_true(ctl_guard_fail(g, "not-an-address", 0));
    assert_int_equal(ctl_guard_check(g, "", 0), 60);
    assert_int_equal(ctl_guard_check(g, NULL, 0), 60);
    assert_int_equal(ctl_guard_count(g), 3);
    ctl_guard_free(g);
}

static void
test_guard_table_is_bounded_lru(void **state)
{
    (void)state;
    struct ctl_guard *g = mk(2, 60000, 60000, 16);
    char a[32];
    /* 16 addresses with one failure each, then 10.0.0.0 fails again (most recent now) */
    for (int i = 0; i < 16; i++) {
        (void)snprintf(a, sizeof(a), "10.0.0.%d", i);
        assert_false(ctl_guard_fail(g, a, (uint64_t)i));
    }
    assert_int_equal(ctl_guard_count(g), 16);
    assert_true(ctl_guard_fail(g, "10.0.0.0", 100)); /* locked out */
    /* 1,000 more addresses: the table stays at 16, the oldest go first */
    for (int i = 0; i < 1000; i++) {
        (void)snprintf(a, sizeof(a), "172.16.%d.%d", i / 256, i % 256);
        assert_false(ctl_guard_fail(g, a, 200 + (uint64_t)i));
        assert_true(ctl_guard_count(g) <= 16);
    }
    assert_int_equal(ctl_guard_count(g), 16);
    assert_int_equal(ctl_guard_evictions(g), 1000);
    /* the 16 most recent are still known: their second failure locks them out */
    for (int i = 984; i < 1000; i++) {
        (void)snprintf(a, sizeof(a), "172.16.%d.%d", i / 256, i % 256);
        assert_true(ctl_guard_fail(g, a, 5000));
        assert_int_equal(ctl_guard_check(g, a, 5000), 60);
    }
    /* the evicted lockout is forgotten (the price of bounded memory) */
    assert_int_equal(ctl_guard_check(g, "10.0.0.0", 5000), 0);
    ctl_guard_free(g);
}

static void
test_guard_churn_keeps_table_consistent(void **state)
{
    (void)state;
    /* many addresses hashing into few buckets, with evictions from the middle of chains */
    struct ctl_guard *g = mk(3, 60000, 60000, 64);
    char a[32];
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 200; i++) {
            (void)snprintf(a, sizeof(a), "100.64.%d.%d", (i * 7 + round) % 256, i % 256);
            (void)ctl_guard_fail(g, a, (uint64_t)(round * 1000 + i));
            assert_true(ctl_guard_count(g) <= 64);
        }
    }
    /* the newest 64 of the last round are findable */
    for (int i = 136; i < 200; i++) {
        (void)snprintf(a, sizeof(a), "100.64.%d.%d", (i * 7 + 19) % 256, i % 256);
        (void)ctl_guard_fail(g, a, 30000);
        assert_true(ctl_guard_fail(g, a, 30000) || ctl_guard_check(g, a, 30000) > 0);
    }
    ctl_guard_free(g);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_guard_rejects_bad_options),
        cmocka_unit_test(test_guard_budget_then_lockout_with_retry_after),
        cmocka_unit_test(test_guard_budget_refills_with_time),
        cmocka_unit_test(test_guard_success_does_not_reset),
        cmocka_unit_test(test_guard_address_forms),
        cmocka_unit_test(test_guard_table_is_bounded_lru),
        cmocka_unit_test(test_guard_churn_keeps_table_consistent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
