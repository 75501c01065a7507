/*
 * Forwarding through the gateway: WebSocket and SSE, 100 MiB up and down with checksums, a
 * chunked upload echoed back, pooled relay streams, two gateways on one Redis, and a Redis
 * restart (cached routes keep working, unknown ones get 503, new routes after reconnect).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ahg/err.h"
#include "ahg/metrics.h"
#include "emu/emulator.h"
#include "gw_it.h"

#define MIB ((uint64_t)1024 * 1024)

static int
setup(void **state)
{
    struct ahg_gw_opts o = {.admin_port = 0};
    return gfx_setup(state, &o);
}

/* ---- WebSocket ---- */

struct wsc {
    struct ahg_wsconn *ws;
    bool open, failed, closed;
    int fail_status;
    unsigned msgs;
    size_t last_len;
    uint64_t last_sum;
    char last[64];
};

static void
wsc_open(struct ahg_wsconn *ws, const struct ahg_http_head *resp)
{
    (void)resp;
    ((struct wsc *)ahg_wsconn_ud(ws))->open = true;
}

static void
wsc_fail(struct ahg_wsconn *ws, int status, const char *reason, const struct ahg_http_head *resp,
         const char *body)
{
    (void)reason;
    (void)resp;
    (void)body;
    struct wsc *c = ahg_wsconn_ud(ws);
    c->failed = true;
    c->fail_status = status;
    c->ws = NULL;
}

static void
wsc_message(struct ahg_wsconn *ws, enum ahg_ws_opcode op, const unsigned char *p, size_t n)
{
    (void)op;
    struct wsc *c = ahg_wsconn_ud(ws);
    c->msgs++;
    c->last_len = n;
    c->last_sum = tb_fnv(TB_FNV0, p, n);
    (void)snprintf(c->last, sizeof(c->last), "%.*s", (int)(n < 63 ? n : 63), (const char *)p);
}

static void
wsc_close(struct ahg_wsconn *ws, uint16_t code)
{
    (void)code;
    struct wsc *c = ahg_wsconn_ud(ws);
    c->closed = true;
    c->ws = NULL;
}

static const struct ahg_wsconn_cbs wsc_cbs = {
    .on_open = wsc_open, .on_fail = wsc_fail, .on_message = wsc_message, .on_close = wsc_close};

static bool
wsc_settled(void *arg)
{
    struct wsc *c = arg;
    return c->open || c->failed;
}

static unsigned want_msgs;
static bool
wsc_got(void *arg)
{
    struct wsc *c = arg;
    return c->msgs >= want_msgs || c->closed;
}

static bool
wsc_closed(void *arg)
{
    return ((struct wsc *)arg)->closed;
}

static void
test_gateway_websocket(void **state)
{
    struct gfx *f = *state;
    struct wsc c = {0};
    struct ahg_wsconn_client_opts o = {
        .conn = {.address = "127.0.0.1", .port = f->port},
        .host = "t1." GW_DOMAIN,
        .target = "/ws",
    };
    int err = 0;
    c.ws = ahg_wsconn_connect(f->t.loop, &o, &wsc_cbs, &c, &err);
    assert_non_null(c.ws);
    assert_true(th_wait(&f->t, wsc_settled, &c, 10000));
    assert_true(c.open);
    assert_int_equal(ahg_wsconn_send(c.ws, AHG_WS_TEXT, "hello", 5), AHG_OK);
    want_msgs = 1;
    assert_true(th_wait(&f->t, wsc_got, &c, 10000));
    assert_string_equal(c.last, "hello");
    /* a large binary message both ways */
    size_t n = (size_t)3 * MIB;
    unsigned char *buf = malloc(n);
    assert_non_null(buf);
    for (size_t i = 0; i < n; i++)
        buf[i] = tb_pat(i);
    assert_int_equal(ahg_wsconn_send(c.ws, AHG_WS_BINARY, buf, n), AHG_OK);
    want_msgs = 2;
    assert_true(th_wait(&f->t, wsc_got, &c, 30000));
    assert_int_equal(c.last_len, n);
    assert_true(c.last_sum == tb_fnv(TB_FNV0, buf, n));
    free(buf);
    assert_int_equal(ahg_gw_active(f->gw), 1);
    (void)ahg_wsconn_close(c.ws, 1000, "bye");
    assert_true(th_wait(&f->t, wsc_closed, &c, 10000));
    /* the pipe's exchange is gone once both sides closed */
    for (int i = 0; i < 100 && ahg_gw_active(f->gw) != 0; i++)
        th_run(&f->t, 20);
    assert_int_equal(ahg_gw_active(f->gw), 0);

    /* an upgrade to an unknown tunnel is a plain 404 */
    struct wsc d = {0};
    o.host = "nosuch." GW_DOMAIN;
    d.ws = ahg_wsconn_connect(f->t.loop, &o, &wsc_cbs, &d, &err);
    assert_non_null(d.ws);
    assert_true(th_wait(&f->t, wsc_settled, &d, 10000));
    assert_true(d.failed);
    assert_int_equal(d.fail_status, 404);
}

/* ---- SSE ---- */

static bool
body_has(void *arg)
{
    struct hcli *h = arg;
    static char want[32];
    (void)snprintf(want, sizeof(want), "event %u", h->chunks > 1000 ? 0 : (unsigned)h->up_off);
    return strstr(h->body, want) != NULL || h->closed;
}

static void
test_gateway_sse_unbuffered(void **state)
{
    struct gfx *f = *state;
    struct hcli h;
    f->app.sse_ack = 0;
    hcli_send(&f->t, &h, f->port, NULL, "GET",
              "GET /sse HTTP/1.1\r\nHost: t1." GW_DOMAIN "\r\nAccept: text/event-stream\r\n\r\n", 0,
              false);
    /* the app sends event N only after the test saw event N-1 through the gateway */
    for (unsigned i = 0; i < 3; i++) {
        h.up_off = i; /* which event body_has looks for */
        assert_true(th_wait(&f->t, body_has, &h, 10000));
        assert_false(h.closed);
        if (i < 2)
            assert_false(h.done);
        f->app.sse_ack = i + 1;
    }
    assert_true(hcli_wait(&h, 10000));
    assert_int_equal(h.status, 200);
    assert_string_equal(hfield(h.head, "Content-Type"), "text/event-stream");
    hcli_free(&h);
    f->app.sse_ack = 0;
}

/* ---- big bodies ---- */

static void
test_gateway_100mib_up_and_down(void **state)
{
    struct gfx *f = *state;
    uint64_t n = 100 * MIB;
    uint64_t sum = tb_pat_sum(n);
    struct hcli h;
    char raw[256];
    (void)snprintf(raw, sizeof(raw),
                   "POST /sink HTTP/1.1\r\nHost: t1." GW_DOMAIN "\r\nContent-Length: %llu\r\n\r\n",
                   (unsigned long long)n);
    hcli_send(&f->t, &h, f->port, NULL, "POST", raw, n, false);
    assert_true(hcli_wait(&h, 120000));
    assert_int_equal(h.status, 200);
    char want[64];
    (void)snprintf(want, sizeof(want), "%llu %llu", (unsigned long long)n, (unsigned long long)sum);
    assert_string_equal(h.body, want);
    hcli_free(&h);

    hcli_send(&f->t, &h, f->port, NULL, "GET",
              "GET /size/104857600 HTTP/1.1\r\nHost: t1." GW_DOMAIN "\r\n\r\n", 0, false);
    assert_true(hcli_wait(&h, 120000));
    assert_int_equal(h.status, 200);
    assert_true(h.got == n);
    assert_true(h.sum == sum);
    hcli_free(&h);
}

static void
test_gateway_chunked_upload_echoed(void **state)
{
    struct gfx *f = *state;
    uint64_t n = 4 * MIB + 123;
    struct hcli h;
    hcli_send(&f->t, &h, f->port, NULL, "PUT",
              "PUT /echo HTTP/1.1\r\nHost: t1." GW_DOMAIN
              "\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
              n, true);
    assert_true(hcli_wait(&h, 60000));
    assert_int_equal(h.status, 200);
    assert_string_equal(hfield(h.head, "X-Method"), "PUT");
    assert_true(h.got == n);
    assert_true(h.sum == tb_pat_sum(n));
    hcli_free(&h);
}

/* ---- pool ---- */

static double
counter(struct gfx *f, const char *name, const char *labels)
{
    struct ahg_metric *m = ahg_metrics_counter(ahg_gw_metrics(f->gw), name, "", labels);
    return m ? ahg_metric_value(m) : -1;
}

static void
test_gateway_pools_relay_streams(void **state)
{
    struct gfx *f = *state;
    double hits0 = counter(f, "azhexgate_gateway_pool_total", "result=\"hit\"");
    for (int i = 0; i < 5; i++) {
        struct hcli h;
        assert_int_equal(hget(f, &h, "GET", "t1." GW_DOMAIN, "/size/100", NULL), 200);
        assert_true(h.got == 100);
        hcli_free(&h);
    }
    /* after the first request every one found a warm stream */
    assert_true(counter(f, "azhexgate_gateway_pool_total", "result=\"hit\"") - hits0 >= 4);
}

/* ---- two gateways, Redis restart ---- */

static void
test_gateway_two_gateways_one_redis(void **state)
{
    struct gfx *f = *state;
    struct ahg_gw_opts o = {.admin_port = -1};
    struct ahg_gw *gw2 = gfx_gw_new(f, &o, gfx_store(f));
    route_put(f, "shared", "hc1", NULL);
    char raw[] = "GET /echo HTTP/1.1\r\nHost: shared." GW_DOMAIN "\r\n\r\n";
    int ports[2] = {f->port, ahg_gw_port(gw2)};
    for (int i = 0; i < 4; i++) {
        struct hcli h;
        hcli_send(&f->t, &h, ports[i % 2], NULL, "GET", raw, 0, false);
        assert_true(hcli_wait(&h, 10000));
        assert_int_equal(h.status, 200);
        hcli_free(&h);
    }
    /* deleted by the controller: both stop serving it once the message arrives */
    route_del(f, "shared");
    for (int i = 0; i < 2; i++) {
        int st = 0;
        for (int k = 0; k < 100 && st != 404; k++) {
            struct hcli h;
            hcli_send(&f->t, &h, ports[i], NULL, "GET", raw, 0, false);
            (void)hcli_wait(&h, 10000);
            st = h.status;
            hcli_free(&h);
            if (st != 404)
                th_run(&f->t, 20);
        }
        assert_int_equal(st, 404);
    }
}

static bool
store_down(void *arg)
{
    return !ahg_store_is_up(arg);
}

static bool
store_is_up(void *arg)
{
    return ahg_store_is_up(arg);
}

static void
test_gateway_redis_restart(void **state)
{
    struct gfx *f = *state;
    struct hcli h;
    assert_int_equal(hget(f, &h, "GET", "t1." GW_DOMAIN, "/echo", NULL), 200);
    hcli_free(&h);
    int port = f->rs.port;
    ts_redis_stop(&f->rs);
    assert_true(th_wait(&f->t, store_down, f->store, 10000));
    /* known routes keep working from the cache, unknown ones are 503 */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(hget(f, &h, "GET", "t1." GW_DOMAIN, "/echo", NULL), 200);
        hcli_free(&h);
    }
    assert_int_equal(hget(f, &h, "GET", "unknown9." GW_DOMAIN, "/echo", NULL), 503);
    assert_string_equal(hfield(h.head, "Retry-After"), "5");
    hcli_free(&h);
    assert_true(ahg_gw_ready(f->gw)); /* the cache is warm */
    ts_redis_start(&f->rs, port, NULL);
    assert_true(th_wait(&f->t, store_is_up, f->store, 20000));
    route_put(f, "fresh", "hc1", NULL);
    assert_int_equal(hget(f, &h, "GET", "fresh." GW_DOMAIN, "/echo", NULL), 200);
    hcli_free(&h);
    /* this redis-server keeps nothing on disk: t1 is gone with it, and the gateway dropped its
     * cache on reconnect, so it knows */
    assert_int_equal(hget(f, &h, "GET", "t1." GW_DOMAIN, "/echo", NULL), 404);
    hcli_free(&h);
    route_put(f, "t1", "hc1", NULL);
}

/* ---- Entra ID sender credential from the emulator's managed identity (IMDS form) ---- */

static void
test_gateway_entra_credential(void **state)
{
    struct gfx *f = *state;
    f->egress = ahg_egress_new(f->t.loop, NULL);
    assert_non_null(f->egress);
    char ep[128];
    (void)snprintf(ep, sizeof(ep), "http://127.0.0.1:%d/metadata/identity/oauth2/token",
                   emu_identity_port(f->t.e));
    struct ahg_azid_opts ao = {.kind = AHG_AZID_IMDS, .endpoint = ep};
    int err = 0;
    f->azid = ahg_azid_new(f->t.loop, f->egress, &ao, &err);
    assert_non_null(f->azid);
    struct ahg_gw_opts o = {.admin_port = -1};
    gfx_gw_opts(f, &o);
    o.sas_key = NULL;
    o.sas_key_name = NULL;
    o.azid = f->azid;
    struct ahg_gw *gw2 = gfx_gw_new_as_is(f, &o, gfx_store(f));
    for (int i = 0; i < 3; i++) {
        struct hcli h;
        hcli_send(&f->t, &h, ahg_gw_port(gw2), NULL, "GET",
                  "GET /size/1000 HTTP/1.1\r\nHost: t1." GW_DOMAIN "\r\n\r\n", 0, false);
        assert_true(hcli_wait(&h, 20000));
        assert_int_equal(h.status, 200);
        assert_true(h.got == 1000);
        hcli_free(&h);
    }
    /* without any credential the relay refuses the sender: 502, the page says why */
    struct ahg_gw_opts n = {.admin_port = -1};
    gfx_gw_opts(f, &n);
    n.sas_key = NULL;
    n.sas_key_name = NULL;
    struct ahg_gw *gw3 = gfx_gw_new_as_is(f, &n, gfx_store(f));
    struct hcli h;
    hcli_send(&f->t, &h, ahg_gw_port(gw3), NULL, "GET",
              "GET /echo HTTP/1.1\r\nHost: t1." GW_DOMAIN "\r\n\r\n", 0, false);
    assert_true(hcli_wait(&h, 20000));
    assert_int_equal(h.status, 502);
    assert_non_null(strstr(h.body, "authenticate"));
    hcli_free(&h);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gateway_websocket),
        cmocka_unit_test(test_gateway_sse_unbuffered),
        cmocka_unit_test(test_gateway_100mib_up_and_down),
        cmocka_unit_test(test_gateway_chunked_upload_echoed),
        cmocka_unit_test(test_gateway_pools_relay_streams),
        cmocka_unit_test(test_gateway_two_gateways_one_redis),
        cmocka_unit_test(test_gateway_redis_restart),
        cmocka_unit_test(test_gateway_entra_credential),
    };
    return cmocka_run_group_tests(tests, setup, gfx_teardown);
}
