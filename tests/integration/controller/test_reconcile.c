/*
 * test_reconcile.c - leader election and the reconciler against the emulator's ARM and a real
 * redis-server: two replicas -> exactly one leader; the leader gone -> the other takes over
 * within the lease TTL; a drained leader hands over at once; an orphaned Hybrid Connection
 * carrying our marker is deleted (others are left alone); an expired session is removed with
 * its HC; the pool is refilled.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "ahg/err.h"
#include "ctl_it.h"
#include "emu_int.h"

static struct cit C;

static int
setup(void **state)
{
    (void)state;
    cit_start(&C, NULL);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    cit_stop(&C);
    return 0;
}

static int
leaders(void)
{
    int n = 0;
    for (int i = 0; i < CIT_MAX; i++)
        if (C.c[i].ctl && ahg_ctl_is_leader(C.c[i].ctl))
            n++;
    return n;
}

static bool
one_leader(void *arg)
{
    (void)arg;
    return leaders() == 1;
}

static int
leader_index(void)
{
    for (int i = 0; i < CIT_MAX; i++)
        if (C.c[i].ctl && ahg_ctl_is_leader(C.c[i].ctl))
            return i;
    return -1;
}

static void
test_one_leader_and_takeover(void **state)
{
    (void)state;
    cit_ctl_start(&C, 0, NULL);
    cit_ctl_start(&C, 1, NULL);
    assert_true(th_wait(&C.t, one_leader, NULL, 5000));
    /* over several lease periods there is never more than one */
    uint64_t end = ahg_now_ms() + 3000;
    while (ahg_now_ms() < end) {
        ahg_loop_run_once(C.t.loop);
        assert_true(leaders() <= 1);
    }
    assert_int_equal(leaders(), 1);
    int l = leader_index();
    uint64_t fence = ahg_ctl_fence(C.c[l].ctl);
    /* only the leader reconciles */
    struct ahg_ctl *follower = C.c[1 - l].ctl;
    assert_int_equal(ahg_ctl_reconcile_now(follower), AHG_EAGAIN);
    assert_int_equal(ahg_ctl_reconcile_passes(follower), 0);
    assert_true(ahg_ctl_reconcile_passes(C.c[l].ctl) >= 1);
    /* the leader dies without releasing its lease: the other takes over within the TTL */
    cit_ctl_stop(&C, l, false);
    uint64_t t0 = ahg_now_ms();
    assert_true(th_wait(&C.t, one_leader, NULL, 5000));
    uint64_t took = ahg_now_ms() - t0;
    int l2 = leader_index();
    assert_int_not_equal(l2, l);
    assert_true(ahg_ctl_fence(C.c[l2].ctl) > fence);
    /* lease TTL 900 ms, attempted every 300 ms: the protocol bound is TTL + one attempt;
     * three TTLs leave room for a loaded machine */
    if (took > 2700)
        fail_msg("takeover took %llu ms", (unsigned long long)took);
    /* a drained leader releases at once */
    cit_ctl_start(&C, l, NULL);
    cit_ctl_stop(&C, l2, true);
    assert_true(th_wait(&C.t, one_leader, NULL, 5000));
    assert_int_equal(leader_index(), l);
    cit_ctl_stop(&C, l, true);
}

static bool
passes_grew(void *arg)
{
    uint64_t *before = arg;
    return C.c[0].ctl && ahg_ctl_reconcile_passes(C.c[0].ctl) > *before;
}

static void
run_pass(void)
{
    assert_true(th_wait(&C.t, one_leader, NULL, 5000));
    uint64_t before = ahg_ctl_reconcile_passes(C.c[0].ctl);
    assert_int_equal(ahg_ctl_reconcile_now(C.c[0].ctl), AHG_OK);
    assert_true(th_wait(&C.t, passes_grew, &before, 10000));
}

static void
test_orphans_and_expiry(void **state)
{
    (void)state;
    cit_ctl_start(&C, 0, NULL);
    /* the pass a new leader runs at once is over before anything is planted */
    uint64_t zero = 0;
    assert_true(th_wait(&C.t, passes_grew, &zero, 10000));
    /* planted: one HC with our marker and no session, one with another instance's marker */
    bool created = false;
    int err = 0;
    assert_non_null(emu_hc_put(
        C.t.e, "ahg-orphan1", true,
        "{\"owner\":\"azhexgate\",\"instance\":\"default\",\"sid\":\"pool\"}", &created, &err));
    assert_non_null(emu_hc_put(C.t.e, "ahg-other", true,
                               "{\"owner\":\"azhexgate\",\"instance\":\"elsewhere\",\"sid\":\"x\"}",
                               &created, &err));
    /* a live session (its HC stays) and one that expires */
    struct cit_resp r;
    cit_req(&C, 0, "POST", "/api/tunnels", CIT_KEY_A, NULL, NULL, &r);
    assert_int_equal(r.status, 201);
    char *live_hc = cit_json_str(&r, "hybrid_connection_name");
    cit_resp_free(&r);
    cit_req(&C, 0, "POST", "/api/tunnels", CIT_KEY_A, NULL, NULL, &r);
    assert_int_equal(r.status, 201);
    char *old_hc = cit_json_str(&r, "hybrid_connection_name");
    char *old_sid = cit_json_str(&r, "session_id");
    char *old_id = cit_json_str(&r, "subdomain");
    cit_resp_free(&r);
    /* make the second one past its expiry (as if never renewed) */
    char key[128];
    (void)snprintf(key, sizeof(key), "ahg:session:%s", old_sid);
    char *rec = cit_get(&C, key);
    cJSON *j = cJSON_Parse(rec);
    cJSON_ReplaceItemInObject(j, "expires_at", cJSON_CreateNumber(1000));
    char *txt = cJSON_PrintUnformatted(j);
    cit_set(&C, key, txt, 60000);
    free(txt);
    cJSON_Delete(j);
    free(rec);

    run_pass();
    /* orphans and expired HCs go through ARM DELETE; wait for them */
    for (int i = 0; i < 200 && (cit_hc_exists(&C, "ahg-orphan1") || cit_hc_exists(&C, old_hc)); i++)
        th_run(&C.t, 20);
    assert_false(cit_hc_exists(&C, "ahg-orphan1"));
    assert_false(cit_hc_exists(&C, old_hc));
    assert_true(cit_hc_exists(&C, live_hc));
    assert_true(cit_hc_exists(&C, "ahg-other"));
    assert_true(cit_hc_exists(&C, "hc1"));
    char *gone = cit_get(&C, key);
    assert_null(gone);
    (void)snprintf(key, sizeof(key), "ahg:route:%s", old_id);
    gone = cit_get(&C, key);
    assert_null(gone);
    free(live_hc);
    free(old_hc);
    free(old_sid);
    free(old_id);
    cit_ctl_stop(&C, 0, true);
}

static void
tweak_pool(struct ahg_ctl_opts *o)
{
    o->pool_size = 3;
}

static void
test_pool_refill(void **state)
{
    (void)state;
    cit_ctl_start(&C, 0, tweak_pool);
    for (int i = 0; i < 500 && cit_scard(&C, "ahg:pool") < 3; i++)
        th_run(&C.t, 20);
    assert_int_equal(cit_scard(&C, "ahg:pool"), 3);
    struct cit_resp r;
    cit_req(&C, 0, "POST", "/api/tunnels", CIT_KEY_B, NULL, NULL, &r);
    assert_int_equal(r.status, 201);
    cit_resp_free(&r);
    for (int i = 0; i < 500 && cit_scard(&C, "ahg:pool") < 3; i++)
        th_run(&C.t, 20);
    assert_int_equal(cit_scard(&C, "ahg:pool"), 3);
    /* a pass keeps pool members (they are not orphans) */
    run_pass();
    th_run(&C.t, 200);
    assert_int_equal(cit_scard(&C, "ahg:pool"), 3);
    cit_ctl_stop(&C, 0, true);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_leader_and_takeover),
        cmocka_unit_test(test_orphans_and_expiry),
        cmocka_unit_test(test_pool_refill),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
