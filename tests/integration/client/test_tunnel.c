/*
 * test_tunnel.c - the client's tunnel listener end to end over real sockets on 127.0.0.1: the
 * emulator (in-process, tests/integration/emulator/harness), a local test app (ahg_httpd), the
 * tunnel (cli_tunnel) and a sender that connects with sb-hc-action=connect and speaks raw
 * HTTP/1.1 in binary frames (what the gateway does), all on one loop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ahg/err.h"
#include "ahg/http.h"
#include "ahg/httpd.h"
#include "ahg/wsconn.h"
#include "cli/tunnel.h"
#include "cli_it.h"
#include "harness.h"

#define BIG ((uint64_t)32 * 1024 * 1024)

/* ---- the tunnel ---- */

struct fx {
    struct th t;
    struct app app;
    struct cli_tunnel *tun;
    unsigned logs, auth_failed, lost;
    int last_status;
    char hc[32];
};

static void
on_event(void *ud, enum cli_event ev, int status, const char *detail)
{
    struct fx *f = ud;
    (void)detail;
    if (ev == CLI_EV_AUTH_FAILED)
        f->auth_failed++;
    if (ev == CLI_EV_LOST)
        f->lost++;
    (void)status;
}

static void
on_request(void *ud, const struct cli_req_log *r)
{
    struct fx *f = ud;
    f->logs++;
    f->last_status = r->status;
}

static bool
connected(void *arg)
{
    return cli_tunnel_connected(((struct fx *)arg)->tun);
}

static void
tunnel_start(struct fx *f, const char *hc, int local_port, const char *token)
{
    char ep[64], tok[1024];
    (void)snprintf(ep, sizeof(ep), "ws://127.0.0.1:%d", f->t.port);
    if (!token) {
        th_token(hc, NULL, NULL, 3600, tok, sizeof(tok));
        token = tok;
    }
    (void)snprintf(f->hc, sizeof(f->hc), "%s", hc);
    struct cli_tunnel_opts o = {.relay_endpoint = ep,
                                .hc = hc,
                                .token = token,
                                .local_host = "127.0.0.1",
                                .local_port = local_port,
                                .keepalive_ms = 500,
                                .backoff_cap_ms = 1000,
                                .on_event = on_event,
                                .on_request = on_request,
                                .ud = f};
    int err = 0;
    f->tun = cli_tunnel_new(f->t.loop, &o, &err);
    assert_non_null(f->tun);
}

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    th_start(&f->t, NULL);
    app_start(&f->t, &f->app);
    tunnel_start(f, "hc1", f->app.port, NULL);
    assert_true(th_wait(&f->t, connected, f, 5000));
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;
    cli_tunnel_free(f->tun);
    th_stop(&f->t);
    free(f);
    return 0;
}

/* ---- tests ---- */

static void
test_tunnel_methods_and_sizes(void **state)
{
    struct fx *f = *state;
    static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "DELETE"};
    static const uint64_t sizes[] = {0, 1024};
    for (size_t m = 0; m < 5; m++) {
        for (size_t z = 0; z < 2; z++) {
            struct snd s;
            assert_true(snd_connect(&f->t, &s, f->hc));
            snd_request(&s, methods[m], "/echo?x=1", sizes[z], false);
            assert_int_equal(s.status, 200);
            assert_string_equal(s.xmethod, methods[m]);
            if (!strcmp(methods[m], "HEAD"))
                assert_int_equal(s.body_bytes, 0);
            else
                assert_true(s.sum == tb_pat_sum(sizes[z]));
            snd_free(&s);
        }
    }
}

#define NCONC 100

static void
test_tunnel_concurrent_streams(void **state)
{
    struct fx *f = *state;
    snd_concurrent(&f->t, f->hc, NCONC, 30000);
}

static bool
logs_at_least_2(void *arg)
{
    return ((struct fx *)arg)->logs >= 2;
}

static void
test_tunnel_keepalive_stream_logs_each_request(void **state)
{
    struct fx *f = *state;
    struct snd s;
    assert_true(snd_connect(&f->t, &s, f->hc));
    snd_request(&s, "GET", "/echo", 0, false);
    snd_request(&s, "POST", "/echo", 1024, false);
    assert_true(s.sum == tb_pat_sum(1024));
    assert_true(th_wait(&f->t, logs_at_least_2, f, 2000));
    assert_int_equal(f->last_status, 200);
    snd_free(&s);
}

static void
test_tunnel_large_bodies(void **state)
{
    struct fx *f = *state;
    struct snd s;
    assert_true(snd_connect(&f->t, &s, f->hc));
    snd_request(&s, "POST", "/echo", BIG, false);
    assert_int_equal(s.status, 200);
    assert_int_equal(s.body_bytes, BIG);
    assert_true(s.sum == tb_pat_sum(BIG));
    snd_free(&s);

    char path[64];
    (void)snprintf(path, sizeof(path), "/size/%llu", (unsigned long long)BIG);
    assert_true(snd_connect(&f->t, &s, f->hc));
    snd_request(&s, "GET", path, 0, false);
    assert_int_equal(s.body_bytes, BIG);
    assert_true(s.sum == tb_pat_sum(BIG));
    snd_free(&s);
}

static void
test_tunnel_chunked(void **state)
{
    struct fx *f = *state;
    struct snd s;
    assert_true(snd_connect(&f->t, &s, f->hc));
    snd_request(&s, "POST", "/echo", 200000, true);
    assert_int_equal(s.status, 200);
    assert_true(s.sum == tb_pat_sum(200000));
    snd_request(&s, "GET", "/chunked", 0, false);
    assert_string_equal(s.body, "piece\npiece\npiece\npiece\npiece\n");
    snd_free(&s);
}

static void
test_tunnel_sse_event_by_event(void **state)
{
    struct fx *f = *state;
    struct snd s;
    assert_true(snd_connect(&f->t, &s, f->hc));
    snd_request(&s, "GET", "/sse", 0, false);
    assert_string_equal(s.body, "data: event 0\n\ndata: event 1\n\ndata: event 2\n\n");
    assert_true(s.arrivals >= 3);
    assert_true(s.last_ms - s.first_ms >= 300);
    snd_free(&s);
}

static bool
raw_5(void *arg)
{
    return ((struct snd *)arg)->rawlen >= 7;
}

static void
test_tunnel_websocket_upgrade(void **state)
{
    struct fx *f = *state;
    struct snd s;
    assert_true(snd_connect(&f->t, &s, f->hc));
    static const char up[] =
        "GET /ws HTTP/1.1\r\nHost: tunnel.test\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n";
    assert_int_equal(ahg_wsconn_send(s.ws, AHG_WS_BINARY, up, sizeof(up) - 1), AHG_OK);
    assert_true(snd_wait(&s, 5000));
    assert_int_equal(s.status, 101);
    /* a masked text frame "hello" through the pipe */
    unsigned char fr[11] = {0x81, 0x85, 1, 2, 3, 4};
    for (int i = 0; i < 5; i++)
        fr[6 + i] = (unsigned char)("hello"[i] ^ fr[2 + i % 4]);
    assert_int_equal(ahg_wsconn_send(s.ws, AHG_WS_BINARY, fr, sizeof(fr)), AHG_OK);
    assert_true(th_wait(&f->t, raw_5, &s, 5000));
    assert_int_equal(s.rawbuf[0], 0x81);
    assert_int_equal(s.rawbuf[1], 5);
    assert_memory_equal(s.rawbuf + 2, "hello", 5);
    snd_free(&s);
}

static void
test_tunnel_local_down_502(void **state)
{
    struct fx *f = *state;
    cli_tunnel_free(f->tun);
    /* a port where nothing listens: take one from a listener and close it */
    tunnel_start(f, "hc1", 1, NULL);
    assert_true(th_wait(&f->t, connected, f, 5000));
    struct snd s;
    assert_true(snd_connect(&f->t, &s, f->hc));
    snd_request(&s, "GET", "/", 0, false);
    assert_int_equal(s.status, 502);
    char want[128];
    cli_unreachable_body("127.0.0.1", 1, want, sizeof(want));
    assert_string_equal(s.body, want);
    snd_free(&s);
}

static bool
two_established(void *arg)
{
    struct fx *f = arg;
    return cli_tunnel_established_count(f->tun) >= 2 && cli_tunnel_connected(f->tun);
}

static void
test_tunnel_reconnects_after_drop(void **state)
{
    struct fx *f = *state;
    /* the HC disappears (listeners closed with 1001) and comes back */
    assert_int_equal(emu_hc_delete(f->t.e, "hc1"), AHG_OK);
    th_run(&f->t, 300);
    assert_false(cli_tunnel_connected(f->tun));
    bool created = false;
    int err = 0;
    assert_non_null(emu_hc_put(f->t.e, "hc1", true, NULL, &created, &err));
    assert_true(th_wait(&f->t, two_established, f, 10000));
    assert_true(f->lost >= 1);
    struct snd s;
    assert_true(snd_connect(&f->t, &s, f->hc));
    snd_request(&s, "GET", "/echo", 0, false);
    assert_int_equal(s.status, 200);
    snd_free(&s);
}

static bool
auth_failed(void *arg)
{
    return ((struct fx *)arg)->auth_failed >= 1;
}

static void
test_tunnel_auth_failure_reported(void **state)
{
    struct fx *f = *state;
    cli_tunnel_free(f->tun);
    char tok[1024];
    th_token("hc1", NULL, "d3JvbmdrZXl3cm9uZ2tleXdyb25na2V5d3Jvbmc=", 3600, tok, sizeof(tok));
    f->auth_failed = 0;
    tunnel_start(f, "hc1", f->app.port, tok);
    assert_true(th_wait(&f->t, auth_failed, f, 5000));
    /* backed off to the cap: no tight loop */
    th_run(&f->t, 400);
    assert_int_equal(f->auth_failed, 1);
}

static void
short_token(void *ud, struct cli_tunnel *t, bool rejected)
{
    char tok[1024];
    (void)ud;
    (void)rejected;
    th_token("hc1", NULL, NULL, 3, tok, sizeof(tok));
    assert_int_equal(cli_tunnel_set_token(t, tok), AHG_OK);
}

static void
test_tunnel_token_renewal_keeps_channel(void **state)
{
    struct fx *f = *state;
    cli_tunnel_free(f->tun);
    th_stop(&f->t);
    static const char *const extra[] = {"--emulator-token-grace=500ms", NULL};
    th_start(&f->t, extra);
    app_start(&f->t, &f->app);
    char ep[64], tok[1024];
    (void)snprintf(ep, sizeof(ep), "ws://127.0.0.1:%d", f->t.port);
    th_token("hc1", NULL, NULL, 3, tok, sizeof(tok));
    (void)snprintf(f->hc, sizeof(f->hc), "hc1");
    struct cli_tunnel_opts o = {.relay_endpoint = ep,
                                .hc = "hc1",
                                .token = tok,
                                .token_cb = short_token,
                                .local_host = "127.0.0.1",
                                .local_port = f->app.port,
                                .keepalive_ms = 500,
                                .backoff_cap_ms = 1000,
                                .on_event = on_event,
                                .ud = f};
    int err = 0;
    f->tun = cli_tunnel_new(f->t.loop, &o, &err);
    assert_non_null(f->tun);
    assert_true(th_wait(&f->t, connected, f, 5000));
    th_run(&f->t, 8000); /* several token lifetimes */
    assert_true(cli_tunnel_connected(f->tun));
    assert_int_equal(cli_tunnel_established_count(f->tun), 1);
    assert_int_equal(f->lost, 0);
}

/* HTTP mode: a plain HTTP request to the relay's /{hc}/... endpoint. */
static void
test_tunnel_http_mode(void **state)
{
    struct fx *f = *state;
    cli_tunnel_free(f->tun);
    tunnel_start(f, "open", f->app.port, NULL);
    assert_true(th_wait(&f->t, connected, f, 5000));

    struct thttp h;
    memset(&h, 0, sizeof(h));
    static const char small[] = "POST /open/echo?a=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                "\r\nhello";
    thttp_send(&f->t, &h, "POST", small, sizeof(small) - 1);
    assert_true(thttp_wait(&h, 10000));
    assert_int_equal(h.head->status, 200);
    assert_string_equal(th_field(h.head, "X-Method"), "POST");
    assert_int_equal(h.blen, 5);
    assert_memory_equal(h.body, "hello", 5);
    thttp_free(&h);

    memset(&h, 0, sizeof(h));
    static const char big[] = "GET /open/size/300000 HTTP/1.1\r\nHost: x\r\n\r\n";
    thttp_send(&f->t, &h, "GET", big, sizeof(big) - 1);
    assert_true(thttp_wait(&h, 10000));
    assert_int_equal(h.head->status, 200);
    assert_int_equal(h.blen, 300000);
    assert_true(tb_fnv(TB_FNV0, h.body, h.blen) == tb_pat_sum(300000));
    thttp_free(&h);

    /* a request body over 64 KiB: the relay hands it over a rendezvous (rendezvous-only
     * request), the answer goes back there */
    size_t blen = 200000;
    char *req = malloc(blen + 128);
    assert_non_null(req);
    int hl = snprintf(req, 128, "PUT /open/echo HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n",
                      blen);
    for (size_t i = 0; i < blen; i++)
        req[(size_t)hl + i] = (char)tb_pat(i);
    memset(&h, 0, sizeof(h));
    thttp_send(&f->t, &h, "PUT", req, (size_t)hl + blen);
    free(req);
    assert_true(thttp_wait(&h, 10000));
    assert_int_equal(h.head->status, 200);
    assert_string_equal(th_field(h.head, "X-Method"), "PUT");
    assert_int_equal(h.blen, blen);
    assert_true(tb_fnv(TB_FNV0, h.body, h.blen) == tb_pat_sum(blen));
    thttp_free(&h);

    /* the local app is down: 502 with the message, inline and over a rendezvous */
    cli_tunnel_free(f->tun);
    tunnel_start(f, "open", 1, NULL);
    assert_true(th_wait(&f->t, connected, f, 5000));
    char want[128];
    cli_unreachable_body("127.0.0.1", 1, want, sizeof(want));
    memset(&h, 0, sizeof(h));
    static const char down[] = "GET /open/x HTTP/1.1\r\nHost: x\r\n\r\n";
    thttp_send(&f->t, &h, "GET", down, sizeof(down) - 1);
    assert_true(thttp_wait(&h, 10000));
    assert_int_equal(h.head->status, 502);
    assert_int_equal(h.blen, strlen(want));
    assert_memory_equal(h.body, want, h.blen);
    thttp_free(&h);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tunnel_methods_and_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tunnel_keepalive_stream_logs_each_request, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tunnel_large_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tunnel_concurrent_streams, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tunnel_chunked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tunnel_sse_event_by_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tunnel_websocket_upgrade, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tunnel_local_down_502, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tunnel_reconnects_after_drop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tunnel_auth_failure_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tunnel_token_renewal_keeps_channel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tunnel_http_mode, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
