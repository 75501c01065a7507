/*
 * Loopback tests of the event loop: a real listener and real client connections on 127.0.0.1,
 * plain and TLS, including backpressure and large transfers.
 */
#include "ahg/net.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ahg/err.h"

#define CERTS AHG_TEST_FIXTURES "/certs"

struct echo_srv {
    int accepted;
    int closed;
    bool paused_once;
    struct ahg_conn *conn;
};

static size_t
srv_data(struct ahg_conn *c, const unsigned char *p, size_t n)
{
    /* Echo as much as the output queue takes; pause when it is full. */
    if (!ahg_conn_writable(c))
        return 0;
    assert_int_equal(ahg_conn_write(c, p, n), AHG_OK);
    return n;
}

static void
srv_drain(struct ahg_conn *c)
{
    ahg_conn_resume_read(c);
}

static void
srv_close(struct ahg_conn *c, enum ahg_conn_end why)
{
    struct echo_srv *s = ahg_conn_ud(c);
    (void)why;
    s->closed++;
    s->conn = NULL;
}

static const struct ahg_conn_ops srv_ops = {
    .on_data = srv_data,
    .on_drain = srv_drain,
    .on_close = srv_close,
};

static void
srv_accept(struct ahg_listener *l, struct ahg_conn *c)
{
    struct echo_srv *s = ahg_listener_ud(l);
    s->accepted++;
    s->conn = c;
    ahg_conn_set_ops(c, &srv_ops, s);
}

struct client {
    struct ahg_loop *loop;
    size_t total;    /* bytes to send */
    size_t sent;     /* bytes queued */
    size_t received; /* bytes echoed back */
    unsigned char pattern_seed;
    bool connected;
    bool mismatch;
    bool closed;
    enum ahg_conn_end why;
};

static unsigned char
pattern(size_t i)
{
    return (unsigned char)((i * 131u + 7u) & 0xffu);
}

static void
cli_pump(struct ahg_conn *c, struct client *k)
{
    unsigned char buf[16384];
    while (k->sent < k->total && ahg_conn_writable(c)) {
        size_t n = k->total - k->sent;
        if (n > sizeof(buf))
            n = sizeof(buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = pattern(k->sent + i);
        assert_int_equal(ahg_conn_write(c, buf, n), AHG_OK);
        k->sent += n;
    }
}

static void
cli_connect(struct ahg_conn *c)
{
    struct client *k = ahg_conn_ud(c);
    k->connected = true;
    cli_pump(c, k);
}

static size_t
cli_data(struct ahg_conn *c, const unsigned char *p, size_t n)
{
    struct client *k = ahg_conn_ud(c);
    for (size_t i = 0; i < n; i++)
        if (p[i] != pattern(k->received + i))
            k->mismatch = true;
    k->received += n;
    if (k->received == k->total)
        ahg_conn_close(c);
    return n;
}

static void
cli_drain(struct ahg_conn *c)
{
    cli_pump(c, ahg_conn_ud(c));
}

static void
cli_close(struct ahg_conn *c, enum ahg_conn_end why)
{
    struct client *k = ahg_conn_ud(c);
    k->closed = true;
    k->why = why;
    ahg_loop_stop(k->loop);
}

static const struct ahg_conn_ops cli_ops = {
    .on_connect = cli_connect,
    .on_data = cli_data,
    .on_drain = cli_drain,
    .on_close = cli_close,
};

static void
run_echo(bool tls, size_t total)
{
    struct ahg_loop_opts lo = {.client_ca_file = CERTS "/ca.pem"};
    struct ahg_loop *loop = ahg_loop_new(&lo);
    assert_non_null(loop);
    struct echo_srv srv = {0};
    struct ahg_listener_opts o = {
        .name = "echo",
        .port = 0,
        .cert_file = tls ? CERTS "/server.pem" : NULL,
        .key_file = tls ? CERTS "/server.key" : NULL,
        .on_accept = srv_accept,
        .ud = &srv,
    };
    int err = 0;
    struct ahg_listener *l = ahg_listener_new(loop, &o, &err);
    assert_non_null(l);
    int port = ahg_listener_port(l);
    assert_true(port > 0 && port < 65536);

    struct client k = {.loop = loop, .total = total};
    struct ahg_connect_opts co = {
        .address = "127.0.0.1", .port = port, .tls = tls, .tls_host = "localhost"};
    struct ahg_conn *c = ahg_conn_connect(loop, &co, &cli_ops, &k, &err);
    assert_non_null(c);
    ahg_loop_run(loop);

    assert_true(k.connected);
    assert_false(k.mismatch);
    assert_int_equal(k.received, total);
    assert_int_equal(srv.accepted, 1);
    ahg_loop_free(loop);
    assert_int_equal(srv.closed, 1);
}

static void
test_net_echo_plain_small(void **state)
{
    (void)state;
    run_echo(false, 1000);
}

static void
test_net_echo_plain_large_with_backpressure(void **state)
{
    (void)state;
    /* Much more than the output high mark: both sides must pause and resume. */
    run_echo(false, 32u * 1024u * 1024u);
}

static void
test_net_echo_tls(void **state)
{
    (void)state;
    run_echo(true, 4u * 1024u * 1024u);
}

static void
fail_close(struct ahg_conn *c, enum ahg_conn_end why)
{
    struct client *k = ahg_conn_ud(c);
    k->closed = true;
    k->why = why;
    ahg_loop_stop(k->loop);
}

static const struct ahg_conn_ops fail_ops = {
    .on_connect = cli_connect,
    .on_data = cli_data,
    .on_close = fail_close,
};

static void
test_net_connect_refused_reports_close(void **state)
{
    (void)state;
    struct ahg_loop *loop = ahg_loop_new(NULL);
    assert_non_null(loop);
    /* Find a port nobody listens on: open a listener, note its port, and close the loop. */
    struct ahg_listener_opts o = {.name = "tmp", .port = 0, .on_accept = srv_accept};
    int err = 0;
    struct ahg_listener *l = ahg_listener_new(loop, &o, &err);
    assert_non_null(l);
    int port = ahg_listener_port(l);
    ahg_loop_free(loop);

    loop = ahg_loop_new(NULL);
    struct client k = {.loop = loop, .total = 10};
    struct ahg_connect_opts co = {.address = "127.0.0.1", .port = port};
    struct ahg_conn *c = ahg_conn_connect(loop, &co, &fail_ops, &k, &err);
    if (c)
        ahg_loop_run(loop);
    assert_true(k.closed);
    assert_false(k.connected);
    assert_int_equal(k.why, AHG_CONN_END_CONNECT);
    ahg_loop_free(loop);
}

static void
test_net_tls_untrusted_cert_rejected(void **state)
{
    (void)state;
    struct ahg_loop_opts lo = {.client_ca_file = CERTS "/ca.pem"};
    struct ahg_loop *loop = ahg_loop_new(&lo);
    struct echo_srv srv = {0};
    struct ahg_listener_opts o = {.name = "bad",
                                  .port = 0,
                                  .cert_file = CERTS "/untrusted.pem",
                                  .key_file = CERTS "/untrusted.key",
                                  .on_accept = srv_accept,
                                  .ud = &srv};
    int err = 0;
    struct ahg_listener *l = ahg_listener_new(loop, &o, &err);
    assert_non_null(l);
    struct client k = {.loop = loop, .total = 10};
    struct ahg_connect_opts co = {
        .address = "127.0.0.1", .port = ahg_listener_port(l), .tls = true, .tls_host = "localhost"};
    struct ahg_conn *c = ahg_conn_connect(loop, &co, &fail_ops, &k, &err);
    if (c)
        ahg_loop_run(loop);
    assert_true(k.closed);
    assert_false(k.connected);
    assert_int_equal(k.received, 0);
    ahg_loop_free(loop);
}

static int posted;

static void
post_fn(void *arg)
{
    posted++;
    ahg_loop_stop(arg);
}

static void
test_net_post_runs_on_loop(void **state)
{
    (void)state;
    struct ahg_loop *loop = ahg_loop_new(NULL);
    posted = 0;
    assert_int_equal(ahg_loop_post(loop, post_fn, loop), AHG_OK);
    ahg_loop_run(loop);
    assert_int_equal(posted, 1);
    /* a stop is consumed: the loop runs again */
    assert_int_equal(ahg_loop_post(loop, post_fn, loop), AHG_OK);
    ahg_loop_run(loop);
    assert_int_equal(posted, 2);
    ahg_loop_free(loop);
}

static int fired;

static void
timer_cb(struct ahg_timer *t)
{
    fired++;
    ahg_loop_stop(t->loop);
}

static void
test_net_timer_fires_and_cancels(void **state)
{
    (void)state;
    struct ahg_loop *loop = ahg_loop_new(NULL);
    struct ahg_timer t1, t2;
    fired = 0;
    ahg_timer_init(&t1, loop, timer_cb, NULL);
    ahg_timer_init(&t2, loop, timer_cb, NULL);
    ahg_timer_start(&t2, 5);
    ahg_timer_stop(&t2);
    ahg_timer_start(&t1, 20);
    uint64_t t0 = ahg_now_ms();
    ahg_loop_run(loop);
    assert_int_equal(fired, 1);
    assert_true(ahg_now_ms() - t0 >= 19);
    ahg_loop_free(loop);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_net_echo_plain_small),
        cmocka_unit_test(test_net_echo_plain_large_with_backpressure),
        cmocka_unit_test(test_net_echo_tls),
        cmocka_unit_test(test_net_connect_refused_reports_close),
        cmocka_unit_test(test_net_tls_untrusted_cert_rejected),
        cmocka_unit_test(test_net_post_runs_on_loop),
        cmocka_unit_test(test_net_timer_fires_and_cancels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
