/*
 * Tests of the asynchronous Redis client against a real redis-server started here on a free
 * port of 127.0.0.1 (scripts/install-deps.sh installs it).
 */
#include "ahg/redis.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <signal.h>

#include "loop_until.h"
#include "tsupport.h"

#include "ahg/err.h"
#include "ahg/net.h"

#define CERTS AHG_TEST_FIXTURES "/certs"

struct ctx {
    bool up;
    bool down;
    int down_err;
    int ups;
    bool done;
    int nreplies;
    int err;
    int type;
    long long integer;
    char str[64];
    size_t len;
    int order_bad;
    bool got_msg;
    char msg[64];
};

static void
state_cb(struct ahg_redis *r, bool up, int err, void *ud)
{
    (void)r;
    struct ctx *c = ud;
    if (up) {
        c->up = true;
        c->down = false;
        c->ups++;
    } else {
        c->up = false;
        c->down = true;
        c->down_err = err;
    }
}

static void
reply_cb(struct ahg_redis *r, redisReply *rep, int err, void *ud)
{
    (void)r;
    struct ctx *c = ud;
    c->done = true;
    c->nreplies++;
    c->err = err;
    c->type = rep != NULL ? rep->type : -1;
    c->str[0] = '\0';
    c->len = 0;
    if (rep != NULL) {
        c->integer = rep->integer;
        c->len = rep->len;
        if (rep->str != NULL)
            (void)snprintf(c->str, sizeof(c->str), "%.*s", (int)(rep->len < 63 ? rep->len : 63),
                           rep->str);
    }
}

static struct ahg_redis *
client_new(struct ahg_loop *loop, int port, const char *password, unsigned timeout_ms,
           struct ctx *c)
{
    struct ahg_redis_opts o = {
        .address = "127.0.0.1",
        .port = port,
        .password = password,
        .command_timeout_ms = timeout_ms,
        .backoff_max_ms = 300,
        .on_state = state_cb,
        .ud = c,
    };
    int err = -1;
    struct ahg_redis *r = ahg_redis_new(loop, &o, &err);
    assert_non_null(r);
    assert_int_equal(err, AHG_OK);
    return r;
}

/* Sends a command built from a string of space-separated words and waits for its reply. */
static void
cmd_wait(struct ahg_loop *loop, struct ahg_redis *r, struct ctx *c, int argc, const char **argv)
{
    c->done = false;
    assert_int_equal(ahg_redis_command(r, reply_cb, c, argc, argv, NULL), AHG_OK);
    assert_true(run_until(loop, &c->done, 5000));
}

static void
test_redis_set_get_incr_expire(void **state)
{
    (void)state;
    struct ts_redis s = {0};
    ts_redis_start(&s, 0, NULL);
    struct ahg_loop *loop = ahg_loop_new(NULL);
    struct ctx c = {0};
    struct ahg_redis *r = client_new(loop, s.port, NULL, 0, &c);
    assert_int_equal(ahg_redis_command(r, reply_cb, &c, 1, (const char *[]){"PING"}, NULL),
                     AHG_EUNAVAIL);
    assert_true(run_until(loop, &c.up, 5000));
    assert_true(ahg_redis_is_up(r));

    cmd_wait(loop, r, &c, 3, (const char *[]){"SET", "k1", "hello"});
    assert_int_equal(c.err, AHG_OK);
    assert_int_equal(c.type, REDIS_REPLY_STATUS);
    assert_string_equal(c.str, "OK");
    cmd_wait(loop, r, &c, 2, (const char *[]){"GET", "k1"});
    assert_int_equal(c.type, REDIS_REPLY_STRING);
    assert_string_equal(c.str, "hello");
    cmd_wait(loop, r, &c, 2, (const char *[]){"GET", "missing"});
    assert_int_equal(c.type, REDIS_REPLY_NIL);
    cmd_wait(loop, r, &c, 2, (const char *[]){"INCR", "n"});
    assert_int_equal(c.type, REDIS_REPLY_INTEGER);
    assert_int_equal(c.integer, 1);
    cmd_wait(loop, r, &c, 2, (const char *[]){"INCR", "n"});
    assert_int_equal(c.integer, 2);
    cmd_wait(loop, r, &c, 3, (const char *[]){"EXPIRE", "n", "100"});
    assert_int_equal(c.integer, 1);
    cmd_wait(loop, r, &c, 2, (const char *[]){"TTL", "n"});
    assert_true(c.integer > 0 && c.integer <= 100);
    /* binary-safe format variant and an error reply */
    c.done = false;
    assert_int_equal(ahg_redis_commandf(r, reply_cb, &c, "SET %s %b", "bin", "a\0b", (size_t)3),
                     AHG_OK);
    assert_true(run_until(loop, &c.done, 5000));
    cmd_wait(loop, r, &c, 2, (const char *[]){"STRLEN", "bin"});
    assert_int_equal(c.integer, 3);
    cmd_wait(loop, r, &c, 2, (const char *[]){"INCR", "k1"});
    assert_int_equal(c.err, AHG_OK);
    assert_int_equal(c.type, REDIS_REPLY_ERROR);

    ahg_redis_free(r);
    ahg_loop_free(loop);
    ts_redis_stop(&s);
}

struct order {
    int next;
    int bad;
    bool done;
};

static void
order_cb(struct ahg_redis *r, redisReply *rep, int err, void *ud)
{
    (void)r;
    struct order *o = ud;
    if (err != AHG_OK || rep->type != REDIS_REPLY_INTEGER || rep->integer != o->next + 1)
        o->bad++;
    o->next++;
    if (o->next == 100)
        o->done = true;
}

static void
test_redis_pipeline_100_in_order(void **state)
{
    (void)state;
    struct ts_redis s = {0};
    ts_redis_start(&s, 0, NULL);
    struct ahg_loop *loop = ahg_loop_new(NULL);
    struct ctx c = {0};
    struct ahg_redis *r = client_new(loop, s.port, NULL, 0, &c);
    assert_true(run_until(loop, &c.up, 5000));
    struct order o = {0};
    for (int i = 0; i < 100; i++)
        assert_int_equal(
            ahg_redis_command(r, order_cb, &o, 2, (const char *[]){"INCR", "ctr"}, NULL), AHG_OK);
    assert_true(run_until(loop, &o.done, 5000));
    assert_int_equal(o.bad, 0);
    ahg_redis_free(r);
    ahg_loop_free(loop);
    ts_redis_stop(&s);
}

static void
test_redis_pending_bound(void **state)
{
    (void)state;
    struct ts_redis s = {0};
    ts_redis_start(&s, 0, NULL);
    struct ahg_loop *loop = ahg_loop_new(NULL);
    struct ctx c = {0};
    struct ahg_redis_opts ro = {
        .address = "127.0.0.1", .port = s.port, .max_pending = 2, .on_state = state_cb, .ud = &c};
    int err = 0;
    struct ahg_redis *r = ahg_redis_new(loop, &ro, &err);
    assert_non_null(r);
    assert_true(run_until(loop, &c.up, 5000));
    const char *ping[] = {"PING"};
    assert_int_equal(ahg_redis_command(r, reply_cb, &c, 1, ping, NULL), AHG_OK);
    assert_int_equal(ahg_redis_command(r, reply_cb, &c, 1, ping, NULL), AHG_OK);
    assert_int_equal(ahg_redis_command(r, reply_cb, &c, 1, ping, NULL), AHG_ELIMIT);
    /* freeing with commands in flight fails them with AHG_ECLOSED */
    c.nreplies = 0;
    ahg_redis_free(r);
    assert_int_equal(c.nreplies, 2);
    assert_int_equal(c.err, AHG_ECLOSED);
    ahg_loop_free(loop);
    ts_redis_stop(&s);
}

static void
test_redis_auth_ok_and_failure(void **state)
{
    (void)state;
    struct ts_redis s = {0};
    ts_redis_start(&s, 0, "s3cret");
    struct ahg_loop *loop = ahg_loop_new(NULL);

    struct ctx bad = {0};
    struct ahg_redis *rb = client_new(loop, s.port, "wrong", 0, &bad);
    assert_true(run_until(loop, &bad.down, 5000));
    assert_int_equal(bad.down_err, AHG_EAUTH);
    assert_false(ahg_redis_is_up(rb));
    ahg_redis_free(rb);

    struct ctx good = {0};
    struct ahg_redis *r = client_new(loop, s.port, "s3cret", 0, &good);
    assert_true(run_until(loop, &good.up, 5000));
    cmd_wait(loop, r, &good, 3, (const char *[]){"SET", "a", "1"});
    assert_int_equal(good.type, REDIS_REPLY_STATUS);
    ahg_redis_free(r);

    ahg_loop_free(loop);
    ts_redis_stop(&s);
}

static void
msg_cb(struct ahg_redis *r, const char *channel, const char *msg, size_t len, void *ud)
{
    (void)r;
    struct ctx *c = ud;
    assert_string_equal(channel, "news");
    (void)snprintf(c->msg, sizeof(c->msg), "%.*s", (int)(len < 63 ? len : 63), msg);
    c->got_msg = true;
}

static void
sub_wait(struct ahg_loop *loop, struct ahg_redis *r)
{
    uint64_t end = ahg_now_ms() + 5000;
    bool f = false;
    while (!ahg_redis_sub_is_up(r) && ahg_now_ms() < end)
        (void)run_until(loop, &f, 20);
    assert_true(ahg_redis_sub_is_up(r));
}

static void
publish_wait(struct ahg_loop *loop, struct ahg_redis *r, struct ctx *c, struct ctx *sc,
             const char *text)
{
    sc->got_msg = false;
    cmd_wait(loop, r, c, 3, (const char *[]){"PUBLISH", "news", text});
    assert_int_equal(c->integer, 1);
    assert_true(run_until(loop, &sc->got_msg, 5000));
    assert_string_equal(sc->msg, text);
}

static void
test_redis_pubsub_and_restart(void **state)
{
    (void)state;
    struct ts_redis s = {0};
    ts_redis_start(&s, 0, "pw");
    struct ahg_loop *loop = ahg_loop_new(NULL);
    struct ctx c = {0};
    struct ctx sc = {0};
    struct ahg_redis *r = client_new(loop, s.port, "pw", 0, &c);
    assert_true(run_until(loop, &c.up, 5000));
    assert_int_equal(ahg_redis_subscribe(r, "news", msg_cb, &sc), AHG_OK);
    assert_int_equal(ahg_redis_subscribe(r, "news", msg_cb, &sc), AHG_EEXIST);
    sub_wait(loop, r);
    publish_wait(loop, r, &c, &sc, "first");

    /* kill the server: the client reports down and fails fast */
    int port = s.port;
    ts_redis_stop(&s);
    assert_true(run_until(loop, &c.down, 5000));
    assert_int_equal(c.down_err, AHG_EUNAVAIL);
    assert_int_equal(ahg_redis_command(r, reply_cb, &c, 1, (const char *[]){"PING"}, NULL),
                     AHG_EUNAVAIL);
    bool f = false;
    (void)run_until(loop, &f, 400); /* a few failed reconnects */
    assert_false(ahg_redis_is_up(r));

    /* restart: both connections come back, the subscription is restored */
    ts_redis_start(&s, port, "pw");
    assert_true(run_until(loop, &c.up, 5000));
    assert_int_equal(c.ups, 2);
    sub_wait(loop, r);
    publish_wait(loop, r, &c, &sc, "second");

    ahg_redis_free(r);
    ahg_loop_free(loop);
    ts_redis_stop(&s);
}

static void
test_redis_command_timeout_resets(void **state)
{
    (void)state;
    struct ts_redis s = {0};
    ts_redis_start(&s, 0, NULL);
    struct ahg_loop *loop = ahg_loop_new(NULL);
    struct ctx c = {0};
    struct ahg_redis *r = client_new(loop, s.port, NULL, 200, &c);
    assert_true(run_until(loop, &c.up, 5000));
    struct ctx t = {0};
    uint64_t t0 = ahg_now_ms();
    cmd_wait(loop, r, &t, 3, (const char *[]){"DEBUG", "SLEEP", "1"});
    uint64_t took = ahg_now_ms() - t0;
    assert_int_equal(t.err, AHG_ETIMEDOUT);
    assert_int_equal(t.type, -1);
    assert_true(took >= 190); /* not early; ETIMEDOUT itself shows it fired before the 1 s reply */
    assert_false(ahg_redis_is_up(r));
    /* it reconnects (once the server is responsive again) and works */
    c.up = false;
    assert_true(run_until(loop, &c.up, 5000));
    cmd_wait(loop, r, &t, 1, (const char *[]){"PING"});
    assert_int_equal(t.err, AHG_OK);
    assert_string_equal(t.str, "PONG");
    ahg_redis_free(r);
    ahg_loop_free(loop);
    ts_redis_stop(&s);
}

static void
test_redis_large_value(void **state)
{
    (void)state;
    struct ts_redis s = {0};
    ts_redis_start(&s, 0, NULL);
    struct ahg_loop *loop = ahg_loop_new(NULL);
    struct ctx c = {0};
    struct ahg_redis *r = client_new(loop, s.port, NULL, 0, &c);
    assert_true(run_until(loop, &c.up, 5000));
    size_t n = (size_t)1024 * 1024;
    char *big = malloc(n);
    assert_non_null(big);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + i % 26);
    const char *argv[3] = {"SET", "big", big};
    size_t lens[3] = {3, 3, n};
    c.done = false;
    assert_int_equal(ahg_redis_command(r, reply_cb, &c, 3, argv, lens), AHG_OK);
    assert_true(run_until(loop, &c.done, 5000));
    assert_string_equal(c.str, "OK");
    cmd_wait(loop, r, &c, 2, (const char *[]){"GET", "big"});
    assert_int_equal(c.type, REDIS_REPLY_STRING);
    assert_int_equal(c.len, n);
    assert_memory_equal(c.str, big, 63);
    free(big);
    ahg_redis_free(r);
    ahg_loop_free(loop);
    ts_redis_stop(&s);
}

/* Debian's redis-server is built with TLS: AUTH and commands over TLS with a verified cert. */
static void
test_redis_tls(void **state)
{
    (void)state;
    struct ts_redis s = {0};
    ts_redis_start_tls(&s, 0, "pw", AHG_TEST_FIXTURES "/certs");
    struct ahg_loop_opts lo = {.client_ca_file = CERTS "/ca.pem"};
    struct ahg_loop *loop = ahg_loop_new(&lo);
    assert_non_null(loop);
    struct ctx c = {0};
    struct ahg_redis_opts o = {
        .address = "127.0.0.1",
        .port = s.port,
        .tls = true,
        .tls_host = "localhost",
        .password = "pw",
        .db = 2,
        .on_state = state_cb,
        .ud = &c,
    };
    int err = 0;
    struct ahg_redis *r = ahg_redis_new(loop, &o, &err);
    assert_non_null(r);
    assert_true(run_until(loop, &c.up, 5000));
    cmd_wait(loop, r, &c, 3, (const char *[]){"SET", "t", "over-tls"});
    assert_string_equal(c.str, "OK");
    cmd_wait(loop, r, &c, 2, (const char *[]){"GET", "t"});
    assert_string_equal(c.str, "over-tls");
    ahg_redis_free(r);
    ahg_loop_free(loop);
    ts_redis_stop(&s);
}

/* A host name is looked up off the loop on every connect; an unknown one keeps retrying
 * (down, no crash), and freeing with a lookup in flight is safe. */
static void
test_redis_host_name(void **state)
{
    (void)state;
    struct ts_redis s = {0};
    ts_redis_start(&s, 0, NULL);
    struct ahg_loop *loop = ahg_loop_new(NULL);
    struct ctx c = {0};
    struct ahg_redis_opts o = {
        .address = "redis.localhost", /* RFC 6761: resolves to 127.0.0.1 without DNS */
        .port = s.port,
        .backoff_max_ms = 300,
        .on_state = state_cb,
        .ud = &c,
    };
    int err = -1;
    struct ahg_redis *r = ahg_redis_new(loop, &o, &err);
    assert_non_null(r);
    assert_true(run_until(loop, &c.up, 5000));
    cmd_wait(loop, r, &c, 3, (const char *[]){"SET", "named", "yes"});
    assert_int_equal(c.err, AHG_OK);
    /* after a restart it connects again (a fresh lookup each time) */
    ts_redis_stop(&s);
    assert_true(run_until(loop, &c.down, 5000));
    ts_redis_start(&s, s.port, NULL);
    assert_true(run_until(loop, &c.up, 10000));
    ahg_redis_free(r);

    struct ctx c2 = {0};
    o.address = "no-such-redis.invalid";
    o.ud = &c2;
    r = ahg_redis_new(loop, &o, &err);
    assert_non_null(r);
    bool never = false;
    (void)run_until(loop, &never, 800);
    assert_false(c2.up);
    assert_false(ahg_redis_is_up(r));
    ahg_redis_free(r); /* possibly with a lookup in flight */
    ahg_loop_free(loop);
    ts_redis_stop(&s);
}

static void
test_redis_new_rejects_bad_options(void **state)
{
    (void)state;
    struct ahg_loop *loop = ahg_loop_new(NULL);
    int err = 0;
    struct ahg_redis_opts o = {.address = NULL};
    assert_null(ahg_redis_new(loop, &o, &err));
    assert_int_equal(err, AHG_EINVAL);
    o.address = "127.0.0.1";
    o.port = 70000;
    assert_null(ahg_redis_new(loop, &o, &err));
    assert_int_equal(err, AHG_EINVAL);
    ahg_redis_free(NULL);
    ahg_loop_free(loop);
}

int
main(void)
{
    (void)signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redis_new_rejects_bad_options),
        cmocka_unit_test(test_redis_set_get_incr_expire),
        cmocka_unit_test(test_redis_pipeline_100_in_order),
        cmocka_unit_test(test_redis_pending_bound),
        cmocka_unit_test(test_redis_auth_ok_and_failure),
        cmocka_unit_test(test_redis_pubsub_and_restart),
        cmocka_unit_test(test_redis_command_timeout_resets),
        cmocka_unit_test(test_redis_large_value),
        cmocka_unit_test(test_redis_tls),
        cmocka_unit_test(test_redis_host_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
