/*
 * Tests of the state store. The same cases run against both backends: the in-memory one and
 * the Redis one talking to a real redis-server started on a free port of 127.0.0.1.
 */
#include "ahg/store.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "loop_until.h"
#include "tsupport.h"

#include "ahg/err.h"
#include "ahg/net.h"
#include "ahg/redis.h"

/* The backend the current group runs against. */
static bool use_redis;

struct fix {
    struct ahg_loop *loop;
    struct ahg_store *s;
    struct ts_redis srv;
};

struct res {
    bool done;
    bool returned; /* set by the test right after the call returned */
    bool inside;   /* the callback ran before the call returned */
    int calls;
    int err;
    enum ahg_store_type type;
    long long integer;
    char str[256];
    size_t len;
    size_t n;
    char elems[16][64];
};

static void
res_cb(struct ahg_store *s, int err, const struct ahg_store_reply *r, void *ud)
{
    (void)s;
    struct res *x = ud;
    x->done = true;
    x->calls++;
    x->inside = !x->returned;
    x->err = err;
    x->type = r ? r->type : AHG_STORE_NIL;
    x->integer = r ? r->integer : 0;
    x->len = 0;
    x->str[0] = '\0';
    x->n = 0;
    if (r && r->type == AHG_STORE_STR) {
        x->len = r->len;
        memcpy(x->str, r->str, r->len < sizeof(x->str) ? r->len : sizeof(x->str) - 1);
        assert_int_equal(r->str[r->len], '\0');
    }
    if (r && r->type == AHG_STORE_ARRAY) {
        x->n = r->n;
        for (size_t i = 0; i < r->n && i < 16; i++)
            (void)snprintf(x->elems[i], sizeof(x->elems[i]), "%s", r->elems[i]);
    }
}

/* Issues a call (an expression using &R as ud) and waits for its reply. */
#define CALL(f, R, expr)                                                                           \
    do {                                                                                           \
        memset(&(R), 0, sizeof(R));                                                                \
        assert_int_equal((expr), AHG_OK);                                                          \
        (R).returned = true;                                                                       \
        assert_true(run_until((f)->loop, &(R).done, 5000));                                        \
        assert_false((R).inside);                                                                  \
        assert_int_equal((R).calls, 1);                                                            \
    } while (0)

static void
expect_int(struct fix *f, struct res *r, long long v)
{
    (void)f;
    assert_int_equal(r->err, AHG_OK);
    assert_int_equal(r->type, AHG_STORE_INT);
    assert_int_equal(r->integer, v);
}

static void
expect_nil(struct res *r)
{
    assert_int_equal(r->err, AHG_OK);
    assert_int_equal(r->type, AHG_STORE_NIL);
}

static void
state_cb(struct ahg_store *s, bool up, void *ud)
{
    (void)s;
    int *ups = ud;
    *ups += up ? 1 : -1000;
}

static int
setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->loop = ahg_loop_new(NULL);
    assert_non_null(f->loop);
    if (!use_redis) {
        f->s = ahg_store_new_memory(f->loop);
        assert_non_null(f->s);
        assert_string_equal(ahg_store_kind(f->s), "memory");
        assert_true(ahg_store_is_up(f->s));
    } else {
        ts_redis_start(&f->srv, 0, NULL);
        char url[64];
        (void)snprintf(url, sizeof(url), "redis://127.0.0.1:%d", f->srv.port);
        int err = -1;
        f->s = ahg_store_new_url(f->loop, url, NULL, false, &err);
        assert_non_null(f->s);
        assert_int_equal(err, AHG_OK);
        assert_string_equal(ahg_store_kind(f->s), "redis");
        int ups = 0;
        assert_int_equal(ahg_store_on_state(f->s, state_cb, &ups), AHG_OK);
        assert_int_equal(ahg_store_on_state(f->s, state_cb, &ups), AHG_OK); /* counted once */
        for (uint64_t end = ahg_now_ms() + 5000; !ahg_store_is_up(f->s) && ahg_now_ms() < end;)
            ahg_loop_run_once(f->loop);
        assert_true(ahg_store_is_up(f->s));
        assert_int_equal(ups, 1);
        ahg_store_off_state(f->s, state_cb, &ups);
    }
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fix *f = *state;
    ahg_store_free(f->s);
    ahg_loop_free(f->loop);
    ts_redis_stop(&f->srv);
    free(f);
    return 0;
}

/* ---- cases (both backends) ---- */

static void
test_store_set_get_del(void **state)
{
    struct fix *f = *state;
    struct res r;
    CALL(f, r, ahg_store_get(f->s, "k", res_cb, &r));
    expect_nil(&r);
    const char bin[] = {'a', '\0', 'b'};
    CALL(f, r, ahg_store_set(f->s, "k", bin, sizeof(bin), 0, 0, res_cb, &r));
    expect_int(f, &r, 1);
    CALL(f, r, ahg_store_get(f->s, "k", res_cb, &r));
    assert_int_equal(r.type, AHG_STORE_STR);
    assert_int_equal(r.len, 3);
    assert_memory_equal(r.str, bin, 3);
    CALL(f, r, ahg_store_set(f->s, "k", "", 0, 0, 0, res_cb, &r));
    CALL(f, r, ahg_store_get(f->s, "k", res_cb, &r));
    assert_int_equal(r.type, AHG_STORE_STR);
    assert_int_equal(r.len, 0);
    CALL(f, r, ahg_store_del(f->s, "k", res_cb, &r));
    expect_int(f, &r, 1);
    CALL(f, r, ahg_store_del(f->s, "k", res_cb, &r));
    expect_int(f, &r, 0);
    /* fire and forget, then observed by a later command (replies stay in order) */
    assert_int_equal(ahg_store_set(f->s, "k2", "v", 1, 0, 0, NULL, NULL), AHG_OK);
    assert_int_equal(ahg_store_del(f->s, "k2", NULL, NULL), AHG_OK);
    CALL(f, r, ahg_store_get(f->s, "k2", res_cb, &r));
    expect_nil(&r);
}

static void
test_store_set_nx_xx(void **state)
{
    struct fix *f = *state;
    struct res r;
    CALL(f, r, ahg_store_set(f->s, "lease", "a", 1, 0, AHG_STORE_XX, res_cb, &r));
    expect_nil(&r);
    CALL(f, r, ahg_store_set(f->s, "lease", "a", 1, 0, AHG_STORE_NX, res_cb, &r));
    expect_int(f, &r, 1);
    CALL(f, r, ahg_store_set(f->s, "lease", "b", 1, 0, AHG_STORE_NX, res_cb, &r));
    expect_nil(&r);
    CALL(f, r, ahg_store_get(f->s, "lease", res_cb, &r));
    assert_string_equal(r.str, "a");
    CALL(f, r, ahg_store_set(f->s, "lease", "c", 1, 0, AHG_STORE_XX, res_cb, &r));
    expect_int(f, &r, 1);
    CALL(f, r, ahg_store_get(f->s, "lease", res_cb, &r));
    assert_string_equal(r.str, "c");
}

static void
test_store_ttl_and_expiry(void **state)
{
    struct fix *f = *state;
    struct res r;
    CALL(f, r, ahg_store_pttl(f->s, "t", res_cb, &r));
    expect_int(f, &r, -2);
    CALL(f, r, ahg_store_pexpire(f->s, "t", 1000, res_cb, &r));
    expect_int(f, &r, 0);
    CALL(f, r, ahg_store_set(f->s, "t", "v", 1, 0, 0, res_cb, &r));
    CALL(f, r, ahg_store_pttl(f->s, "t", res_cb, &r));
    expect_int(f, &r, -1);
    CALL(f, r, ahg_store_set(f->s, "t", "v", 1, 60000, 0, res_cb, &r));
    CALL(f, r, ahg_store_pttl(f->s, "t", res_cb, &r));
    assert_true(r.integer > 0 && r.integer <= 60000);
    CALL(f, r, ahg_store_pexpire(f->s, "t", 150, res_cb, &r));
    expect_int(f, &r, 1);
    CALL(f, r, ahg_store_pttl(f->s, "t", res_cb, &r));
    assert_true(r.integer > 0 && r.integer <= 150);
    /* wait for the expiry itself: the key must be gone after its TTL */
    run_for(f->loop, 250);
    CALL(f, r, ahg_store_get(f->s, "t", res_cb, &r));
    expect_nil(&r);
    CALL(f, r, ahg_store_pttl(f->s, "t", res_cb, &r));
    expect_int(f, &r, -2);
    /* a SET without TTL clears an earlier TTL */
    CALL(f, r, ahg_store_set(f->s, "t", "v", 1, 100, 0, res_cb, &r));
    CALL(f, r, ahg_store_set(f->s, "t", "w", 1, 0, 0, res_cb, &r));
    CALL(f, r, ahg_store_pttl(f->s, "t", res_cb, &r));
    expect_int(f, &r, -1);
    /* PEXPIRE 0 deletes */
    CALL(f, r, ahg_store_pexpire(f->s, "t", 0, res_cb, &r));
    expect_int(f, &r, 1);
    CALL(f, r, ahg_store_get(f->s, "t", res_cb, &r));
    expect_nil(&r);
}

static void
test_store_incr(void **state)
{
    struct fix *f = *state;
    struct res r;
    CALL(f, r, ahg_store_incr(f->s, "n", res_cb, &r));
    expect_int(f, &r, 1);
    CALL(f, r, ahg_store_incr(f->s, "n", res_cb, &r));
    expect_int(f, &r, 2);
    CALL(f, r, ahg_store_get(f->s, "n", res_cb, &r));
    assert_string_equal(r.str, "2");
    CALL(f, r, ahg_store_set(f->s, "n", "-7", 2, 0, 0, res_cb, &r));
    CALL(f, r, ahg_store_incr(f->s, "n", res_cb, &r));
    expect_int(f, &r, -6);
    CALL(f, r, ahg_store_set(f->s, "n", "abc", 3, 0, 0, res_cb, &r));
    CALL(f, r, ahg_store_incr(f->s, "n", res_cb, &r));
    assert_int_equal(r.err, AHG_EINVAL);
    CALL(f, r, ahg_store_set(f->s, "n", "9223372036854775807", 19, 0, 0, res_cb, &r));
    CALL(f, r, ahg_store_incr(f->s, "n", res_cb, &r));
    assert_int_not_equal(r.err, AHG_OK);
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void
test_store_sets(void **state)
{
    struct fix *f = *state;
    struct res r;
    CALL(f, r, ahg_store_scard(f->s, "pool", res_cb, &r));
    expect_int(f, &r, 0);
    CALL(f, r, ahg_store_smembers(f->s, "pool", res_cb, &r));
    assert_int_equal(r.type, AHG_STORE_ARRAY);
    assert_int_equal(r.n, 0);
    CALL(f, r, ahg_store_spop(f->s, "pool", res_cb, &r));
    expect_nil(&r);
    const char *m[] = {"c", "a", "b"};
    for (size_t i = 0; i < 3; i++) {
        CALL(f, r, ahg_store_sadd(f->s, "pool", m[i], res_cb, &r));
        expect_int(f, &r, 1);
    }
    CALL(f, r, ahg_store_sadd(f->s, "pool", "a", res_cb, &r));
    expect_int(f, &r, 0);
    CALL(f, r, ahg_store_scard(f->s, "pool", res_cb, &r));
    expect_int(f, &r, 3);
    CALL(f, r, ahg_store_smembers(f->s, "pool", res_cb, &r));
    assert_int_equal(r.n, 3);
    qsort(r.elems, 3, sizeof(r.elems[0]), cmp_str);
    assert_string_equal(r.elems[0], "a");
    assert_string_equal(r.elems[1], "b");
    assert_string_equal(r.elems[2], "c");
    CALL(f, r, ahg_store_srem(f->s, "pool", "b", res_cb, &r));
    expect_int(f, &r, 1);
    CALL(f, r, ahg_store_srem(f->s, "pool", "b", res_cb, &r));
    expect_int(f, &r, 0);
    /* SPOP hands out each remaining member once */
    char got[2][64];
    for (size_t i = 0; i < 2; i++) {
        CALL(f, r, ahg_store_spop(f->s, "pool", res_cb, &r));
        assert_int_equal(r.type, AHG_STORE_STR);
        (void)snprintf(got[i], sizeof(got[i]), "%.63s", r.str);
    }
    qsort(got, 2, sizeof(got[0]), cmp_str);
    assert_string_equal(got[0], "a");
    assert_string_equal(got[1], "c");
    CALL(f, r, ahg_store_spop(f->s, "pool", res_cb, &r));
    expect_nil(&r);
    /* an emptied set is no key at all */
    CALL(f, r, ahg_store_pttl(f->s, "pool", res_cb, &r));
    expect_int(f, &r, -2);
    /* many members: the table grows */
    char name[32];
    for (int i = 0; i < 200; i++) {
        (void)snprintf(name, sizeof(name), "m%d", i);
        assert_int_equal(ahg_store_sadd(f->s, "big", name, NULL, NULL), AHG_OK);
    }
    CALL(f, r, ahg_store_scard(f->s, "big", res_cb, &r));
    expect_int(f, &r, 200);
}

static void
test_store_wrong_type(void **state)
{
    struct fix *f = *state;
    struct res r;
    CALL(f, r, ahg_store_sadd(f->s, "set", "x", res_cb, &r));
    CALL(f, r, ahg_store_get(f->s, "set", res_cb, &r));
    assert_int_equal(r.err, AHG_EINVAL);
    CALL(f, r, ahg_store_set(f->s, "str", "v", 1, 0, 0, res_cb, &r));
    CALL(f, r, ahg_store_sadd(f->s, "str", "x", res_cb, &r));
    assert_int_equal(r.err, AHG_EINVAL);
    CALL(f, r, ahg_store_scard(f->s, "str", res_cb, &r));
    assert_int_equal(r.err, AHG_EINVAL);
    /* SET replaces a set */
    CALL(f, r, ahg_store_set(f->s, "set", "v", 1, 0, 0, res_cb, &r));
    expect_int(f, &r, 1);
    CALL(f, r, ahg_store_get(f->s, "set", res_cb, &r));
    assert_string_equal(r.str, "v");
}

static void
test_store_cas(void **state)
{
    struct fix *f = *state;
    struct res r;
    CALL(f, r, ahg_store_cas_pexpire(f->s, "leader", "me", 5000, res_cb, &r));
    expect_int(f, &r, 0);
    CALL(f, r, ahg_store_set(f->s, "leader", "me", 2, 1000, AHG_STORE_NX, res_cb, &r));
    expect_int(f, &r, 1);
    CALL(f, r, ahg_store_cas_pexpire(f->s, "leader", "other", 60000, res_cb, &r));
    expect_int(f, &r, 0);
    CALL(f, r, ahg_store_pttl(f->s, "leader", res_cb, &r));
    assert_true(r.integer > 0 && r.integer <= 1000);
    CALL(f, r, ahg_store_cas_pexpire(f->s, "leader", "me", 60000, res_cb, &r));
    expect_int(f, &r, 1);
    CALL(f, r, ahg_store_pttl(f->s, "leader", res_cb, &r));
    assert_true(r.integer > 1000 && r.integer <= 60000);
    CALL(f, r, ahg_store_cas_del(f->s, "leader", "m", res_cb, &r));
    expect_int(f, &r, 0);
    CALL(f, r, ahg_store_cas_del(f->s, "leader", "me", res_cb, &r));
    expect_int(f, &r, 1);
    CALL(f, r, ahg_store_get(f->s, "leader", res_cb, &r));
    expect_nil(&r);
    CALL(f, r, ahg_store_cas_del(f->s, "leader", "me", res_cb, &r));
    expect_int(f, &r, 0);
}

struct msgs {
    int n;
    bool got;
    char last[64];
    char chan[64];
};

static void
msg_cb(struct ahg_store *s, const char *channel, const char *msg, size_t len, void *ud)
{
    (void)s;
    struct msgs *m = ud;
    m->n++;
    m->got = true;
    (void)snprintf(m->last, sizeof(m->last), "%.*s", (int)len, msg);
    (void)snprintf(m->chan, sizeof(m->chan), "%s", channel);
}

static void
test_store_pubsub(void **state)
{
    struct fix *f = *state;
    struct res r;
    struct msgs a = {0}, b = {0}, other = {0};
    assert_int_equal(ahg_store_subscribe(f->s, "routes", msg_cb, &a), AHG_OK);
    assert_int_equal(ahg_store_subscribe(f->s, "routes", msg_cb, &b), AHG_OK);
    assert_int_equal(ahg_store_subscribe(f->s, "other", msg_cb, &other), AHG_OK);
    /* Redis confirms the subscription later: publish until the first message arrives */
    for (int i = 0; i < 100 && !a.got; i++) {
        CALL(f, r, ahg_store_publish(f->s, "routes", "hello", 5, res_cb, &r));
        assert_int_equal(r.err, AHG_OK);
        if (r.integer == 0)
            run_for(f->loop, 20);
        else
            assert_true(run_until(f->loop, &a.got, 2000));
    }
    assert_true(a.got);
    assert_true(run_until(f->loop, &b.got, 2000));
    assert_string_equal(a.last, "hello");
    assert_string_equal(a.chan, "routes");
    assert_string_equal(b.last, "hello");
    a = (struct msgs){0};
    b = (struct msgs){0};
    CALL(f, r, ahg_store_publish(f->s, "routes", "x\0y", 3, res_cb, &r));
    assert_true(r.integer >= 1);
    assert_true(run_until(f->loop, &b.got, 2000));
    assert_int_equal(a.n, 1);
    assert_int_equal(b.n, 1);
    assert_int_equal(other.n, 0);
    CALL(f, r, ahg_store_publish(f->s, "nobody", "z", 1, res_cb, &r));
    expect_int(f, &r, 0);
}

static void
test_store_bad_args(void **state)
{
    struct fix *f = *state;
    struct res r = {0};
    char longkey[AHG_STORE_MAX_KEY + 2];
    memset(longkey, 'k', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = '\0';
    assert_int_equal(ahg_store_get(f->s, longkey, res_cb, &r), AHG_EINVAL);
    assert_int_equal(ahg_store_get(f->s, "", res_cb, &r), AHG_EINVAL);
    assert_int_equal(ahg_store_get(f->s, NULL, res_cb, &r), AHG_EINVAL);
    assert_int_equal(ahg_store_set(f->s, "k", "v", 1, 0, AHG_STORE_NX | AHG_STORE_XX, res_cb, &r),
                     AHG_EINVAL);
    assert_int_equal(ahg_store_set(f->s, "k", "v", AHG_STORE_MAX_VALUE + 1, 0, 0, res_cb, &r),
                     AHG_EINVAL);
    assert_int_equal(ahg_store_publish(f->s, "", "v", 1, res_cb, &r), AHG_EINVAL);
    assert_int_equal(ahg_store_subscribe(f->s, "c", NULL, NULL), AHG_EINVAL);
    assert_int_equal(ahg_store_cas_del(f->s, "k", NULL, res_cb, &r), AHG_EINVAL);
    run_for(f->loop, 30);
    assert_int_equal(r.calls, 0); /* refused calls never call back */
}

static void
test_store_large_value(void **state)
{
    struct fix *f = *state;
    struct res r;
    size_t n = AHG_STORE_MAX_VALUE;
    char *big = malloc(n);
    assert_non_null(big);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + i % 26);
    CALL(f, r, ahg_store_set(f->s, "big", big, n, 0, 0, res_cb, &r));
    expect_int(f, &r, 1);
    free(big);
    CALL(f, r, ahg_store_get(f->s, "big", res_cb, &r));
    assert_int_equal(r.type, AHG_STORE_STR);
    assert_int_equal(r.len, n);
    assert_memory_equal(r.str, "abcdef", 6);
}

/* Replies come in the order the commands were issued. */
struct order {
    int next;
    int bad;
};

static void
order_cb(struct ahg_store *s, int err, const struct ahg_store_reply *r, void *ud)
{
    (void)s;
    (void)err;
    struct order *o = ud;
    if (!r || r->type != AHG_STORE_INT || r->integer != o->next + 1)
        o->bad++;
    o->next++;
}

static void
test_store_replies_in_order(void **state)
{
    struct fix *f = *state;
    struct order o = {0};
    for (int i = 0; i < 100; i++)
        assert_int_equal(ahg_store_incr(f->s, "seq", order_cb, &o), AHG_OK);
    assert_int_equal(o.next, 0);
    for (uint64_t end = ahg_now_ms() + 5000; o.next < 100 && ahg_now_ms() < end;)
        ahg_loop_run_once(f->loop);
    assert_int_equal(o.next, 100);
    assert_int_equal(o.bad, 0);
}

/* Freeing the store runs pending callbacks with AHG_ECLOSED before it returns. */
static void
test_store_free_pending(void **state)
{
    struct fix *f = *state;
    struct res r1 = {0}, r2 = {0};
    assert_int_equal(ahg_store_set(f->s, "k", "v", 1, 0, 0, res_cb, &r1), AHG_OK);
    assert_int_equal(ahg_store_get(f->s, "k", res_cb, &r2), AHG_OK);
    assert_int_equal(r1.calls, 0);
    ahg_store_free(f->s);
    f->s = NULL;
    assert_int_equal(r1.calls, 1);
    assert_int_equal(r1.err, AHG_ECLOSED);
    assert_int_equal(r2.calls, 1);
    assert_int_equal(r2.err, AHG_ECLOSED);
    run_for(f->loop, 30); /* a flush posted before the free must not touch the store */
}

/* A callback may free the store. */
static void
free_in_cb(struct ahg_store *s, int err, const struct ahg_store_reply *r, void *ud)
{
    (void)err;
    (void)r;
    struct res *x = ud;
    x->done = true;
    x->calls++;
    ahg_store_free(s);
}

static void
test_store_free_from_callback(void **state)
{
    struct fix *f = *state;
    if (use_redis) {
        skip(); /* ahg_redis forbids freeing the client from its own callback */
        return;
    }
    struct res r = {0}, r2 = {0};
    assert_int_equal(ahg_store_set(f->s, "k", "v", 1, 0, 0, free_in_cb, &r), AHG_OK);
    assert_int_equal(ahg_store_get(f->s, "k", res_cb, &r2), AHG_OK);
    assert_true(run_until(f->loop, &r.done, 2000));
    f->s = NULL;
    assert_int_equal(r2.calls, 1);
    assert_int_equal(r2.err, AHG_ECLOSED);
}

/* ---- redis only ---- */

static void
test_store_redis_down_and_back(void **state)
{
    struct fix *f = *state;
    if (!use_redis) {
        skip();
        return;
    }
    int ups = 0, ups2 = 0;
    assert_int_equal(ahg_store_on_state(f->s, state_cb, &ups), AHG_OK);
    /* a second component sharing the store hears the same changes */
    assert_int_equal(ahg_store_on_state(f->s, state_cb, &ups2), AHG_OK);
    int port = f->srv.port;
    ts_redis_stop(&f->srv);
    for (uint64_t end = ahg_now_ms() + 5000; ahg_store_is_up(f->s) && ahg_now_ms() < end;)
        ahg_loop_run_once(f->loop);
    assert_false(ahg_store_is_up(f->s));
    assert_true(ups < 0);
    struct res r;
    CALL(f, r, ahg_store_get(f->s, "k", res_cb, &r));
    assert_int_equal(r.err, AHG_EUNAVAIL);
    ts_redis_start(&f->srv, port, NULL);
    for (uint64_t end = ahg_now_ms() + 15000; !ahg_store_is_up(f->s) && ahg_now_ms() < end;)
        ahg_loop_run_once(f->loop);
    assert_true(ahg_store_is_up(f->s));
    assert_int_equal(ups, -1000 + 1);
    assert_int_equal(ups2, -1000 + 1);
    ahg_store_off_state(f->s, state_cb, &ups);
    ahg_store_off_state(f->s, state_cb, &ups2);
    CALL(f, r, ahg_store_set(f->s, "k", "v", 1, 0, 0, res_cb, &r));
    expect_int(f, &r, 1);
}

static void
test_store_url(void **state)
{
    (void)state;
    struct ahg_loop *loop = ahg_loop_new(NULL);
    assert_non_null(loop);
    int err = 0;
    struct ahg_store *s = ahg_store_new_url(loop, "memory:", NULL, false, &err);
    assert_non_null(s);
    assert_string_equal(ahg_store_kind(s), "memory");
    ahg_store_free(s);
    const char *bad[] = {"",
                         "mem:",
                         "http://127.0.0.1",
                         "redis://bad_host!:6379",
                         "redis://127.0.0.1:99999",
                         "redis://127.0.0.1/x",
                         "redis://127.0.0.1/1/2",
                         "redis://127.0.0.1?db=1",
                         "redis://"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err = 0;
        assert_null(ahg_store_new_url(loop, bad[i], NULL, false, &err));
        assert_int_equal(err, AHG_EINVAL);
    }
    /* a host name is fine: the Redis client looks it up off the loop when it connects */
    s = ahg_store_new_url(loop, "redis://redis.example.invalid:6379/2", NULL, false, &err);
    assert_non_null(s);
    assert_string_equal(ahg_store_kind(s), "redis");
    ahg_store_free(s);
    if (!use_redis) {
        ahg_loop_free(loop);
        return;
    }
    /* password and db from the URL; the password argument overrides the URL's */
    struct ts_redis srv = {0};
    ts_redis_start(&srv, 0, "s3cr%t");
    char url[128];
    const char *pw_args[] = {NULL, "s3cr%t"};
    for (size_t i = 0; i < 2; i++) {
        if (i == 0)
            (void)snprintf(url, sizeof(url), "redis://:s3cr%%25t@localhost:%d/2", srv.port);
        else
            (void)snprintf(url, sizeof(url), "redis://:wrong@127.0.0.1:%d/2", srv.port);
        s = ahg_store_new_url(loop, url, pw_args[i], false, &err);
        assert_non_null(s);
        for (uint64_t end = ahg_now_ms() + 5000; !ahg_store_is_up(s) && ahg_now_ms() < end;)
            ahg_loop_run_once(loop);
        assert_true(ahg_store_is_up(s));
        struct fix f = {.loop = loop, .s = s};
        struct res r;
        CALL(&f, r, ahg_store_incr(s, "db2", res_cb, &r));
        expect_int(&f, &r, (long long)i + 1);
        ahg_store_free(s);
    }
    /* rediss://: TLS; the test CA is not trusted, so only tls_insecure comes up */
    struct ts_redis tsrv = {0};
    ts_redis_start_tls(&tsrv, 0, NULL, AHG_TEST_FIXTURES "/certs");
    for (int insecure = 1; insecure >= 0; insecure--) {
        (void)snprintf(url, sizeof(url), "rediss://localhost:%d", tsrv.port);
        s = ahg_store_new_url(loop, url, NULL, insecure != 0, &err);
        assert_non_null(s);
        if (insecure) {
            for (uint64_t end = ahg_now_ms() + 5000; !ahg_store_is_up(s) && ahg_now_ms() < end;)
                ahg_loop_run_once(loop);
            assert_true(ahg_store_is_up(s));
            struct fix f = {.loop = loop, .s = s};
            struct res r;
            CALL(&f, r, ahg_store_set(s, "tls", "yes", 3, 0, 0, res_cb, &r));
            expect_int(&f, &r, 1);
        } else {
            run_for(loop, 300);
            assert_false(ahg_store_is_up(s));
        }
        ahg_store_free(s);
    }
    ts_redis_stop(&tsrv);
    /* a wrong password never comes up */
    (void)snprintf(url, sizeof(url), "redis://:nope@127.0.0.1:%d", srv.port);
    s = ahg_store_new_url(loop, url, NULL, false, &err);
    assert_non_null(s);
    run_for(loop, 300);
    assert_false(ahg_store_is_up(s));
    ahg_store_free(s);
    ts_redis_stop(&srv);
    ahg_loop_free(loop);
}

#define BOTH(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

static int
group_memory(void **state)
{
    (void)state;
    use_redis = false;
    return 0;
}

static int
group_redis(void **state)
{
    (void)state;
    use_redis = true;
    return 0;
}

int
main(void)
{
    (void)signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        BOTH(test_store_set_get_del),
        BOTH(test_store_set_nx_xx),
        BOTH(test_store_ttl_and_expiry),
        BOTH(test_store_incr),
        BOTH(test_store_sets),
        BOTH(test_store_wrong_type),
        BOTH(test_store_cas),
        BOTH(test_store_pubsub),
        BOTH(test_store_bad_args),
        BOTH(test_store_large_value),
        BOTH(test_store_replies_in_order),
        BOTH(test_store_free_pending),
        BOTH(test_store_free_from_callback),
        BOTH(test_store_redis_down_and_back),
        cmocka_unit_test(test_store_url),
    };
    int failed = cmocka_run_group_tests_name("memory", tests, group_memory, NULL);
    failed += cmocka_run_group_tests_name("redis", tests, group_redis, NULL);
    return failed;
}
