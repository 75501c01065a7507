/*
 * WebSocket connections over loopback: our client against our server (httpd + accept), in
 * message and frame mode, with large messages, ping/pong, close codes and handshake failures.
 */
#include "ahg/wsconn.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ahg/err.h"

#define CERTS AHG_TEST_FIXTURES "/certs"

/* ---- server: echo in message mode (/echo) or frame mode (/frames) ---- */

struct srv_state {
    int accepted;
    int closed;
    uint16_t close_code;
    bool frame_mode;
};
static struct srv_state srv;

static void
srv_message(struct ahg_wsconn *ws, enum ahg_ws_opcode op, const unsigned char *p, size_t n)
{
    if (n == 5 && !memcmp(p, "close", 5)) {
        ahg_wsconn_close(ws, 4001, "bye");
        return;
    }
    assert_int_equal(ahg_wsconn_send(ws, op, p, n), AHG_OK);
}

static void
srv_frame_begin(struct ahg_wsconn *ws, enum ahg_ws_opcode op, bool fin, uint64_t len)
{
    assert_int_equal(ahg_wsconn_send_frame(ws, op, fin, len), AHG_OK);
}

static void
srv_frame_data(struct ahg_wsconn *ws, const unsigned char *p, size_t n)
{
    assert_int_equal(ahg_wsconn_send_data(ws, p, n), AHG_OK);
}

static void
srv_close(struct ahg_wsconn *ws, uint16_t code)
{
    (void)ws;
    srv.closed++;
    srv.close_code = code;
}

static const struct ahg_wsconn_cbs srv_msg_cbs = {.on_message = srv_message, .on_close = srv_close};
static const struct ahg_wsconn_cbs srv_frame_cbs = {
    .on_frame_begin = srv_frame_begin, .on_frame_data = srv_frame_data, .on_close = srv_close};

static void
on_request(struct ahg_httpd_req *r)
{
    const struct ahg_http_head *h = ahg_httpd_req_head(r);
    const char *path = ahg_httpd_req_path(r);
    if (strcmp(path, "/echo") && strcmp(path, "/frames")) {
        ahg_httpd_respond_error(r, 404, "NotFound", "no such endpoint", false);
        return;
    }
    int st = ahg_wsconn_check_upgrade(h);
    if (st) {
        ahg_httpd_respond_error(r, st, "BadUpgrade", "not a websocket upgrade", false);
        return;
    }
    const char *proto = ahg_http_head_get(h, "Sec-WebSocket-Protocol", NULL);
    int err = 0;
    bool frames = !strcmp(path, "/frames");
    struct ahg_wsconn *ws =
        ahg_wsconn_accept(r, proto, NULL, frames ? &srv_frame_cbs : &srv_msg_cbs, NULL, &err);
    assert_non_null(ws);
    srv.accepted++;
}

/* ---- client ---- */

struct cli {
    struct ahg_loop *loop;
    bool opened;
    int fail_status;
    bool failed;
    char fail_body[256];
    unsigned char *big;
    size_t big_len;
    int echoes;
    bool big_ok;
    bool text_ok;
    bool pong;
    uint16_t close_code;
    bool closed;
    bool send_close_word;
    char proto[64];
};

static void
cli_open(struct ahg_wsconn *ws, const struct ahg_http_head *resp)
{
    struct cli *k = ahg_wsconn_ud(ws);
    (void)resp;
    k->opened = true;
    snprintf(k->proto, sizeof(k->proto), "%s", ahg_wsconn_subprotocol(ws));
    assert_int_equal(ahg_wsconn_send(ws, AHG_WS_TEXT, "hello", 5), AHG_OK);
    assert_int_equal(ahg_wsconn_send(ws, AHG_WS_BINARY, k->big, k->big_len), AHG_OK);
    assert_int_equal(ahg_wsconn_ping(ws, "p1", 2), AHG_OK);
}

static void
cli_message(struct ahg_wsconn *ws, enum ahg_ws_opcode op, const unsigned char *p, size_t n)
{
    struct cli *k = ahg_wsconn_ud(ws);
    k->echoes++;
    if (op == AHG_WS_TEXT && n == 5 && !memcmp(p, "hello", 5))
        k->text_ok = true;
    if (op == AHG_WS_BINARY && n == k->big_len && !memcmp(p, k->big, n))
        k->big_ok = true;
    if (k->echoes == 2) {
        if (k->send_close_word)
            ahg_wsconn_send(ws, AHG_WS_TEXT, "close", 5);
        else
            ahg_wsconn_close(ws, 1000, "done");
    }
}

static void
cli_pong(struct ahg_wsconn *ws, const unsigned char *p, size_t n)
{
    struct cli *k = ahg_wsconn_ud(ws);
    k->pong = n == 2 && !memcmp(p, "p1", 2);
}

static void
cli_fail(struct ahg_wsconn *ws, int status, const char *reason, const struct ahg_http_head *resp,
         const char *body)
{
    struct cli *k = ahg_wsconn_ud(ws);
    (void)reason;
    (void)resp;
    k->failed = true;
    k->fail_status = status;
    snprintf(k->fail_body, sizeof(k->fail_body), "%s", body ? body : "");
    ahg_loop_stop(k->loop);
}

static void
cli_close(struct ahg_wsconn *ws, uint16_t code)
{
    struct cli *k = ahg_wsconn_ud(ws);
    k->closed = true;
    k->close_code = code;
    ahg_loop_stop(k->loop);
}

static const struct ahg_wsconn_cbs cli_cbs = {
    .on_open = cli_open,
    .on_fail = cli_fail,
    .on_message = cli_message,
    .on_pong = cli_pong,
    .on_close = cli_close,
};

static void
run(const char *target, bool tls, const char *proto, bool close_word, struct cli *k)
{
    memset(&srv, 0, sizeof(srv));
    struct ahg_loop_opts lo = {.client_ca_file = CERTS "/ca.pem"};
    struct ahg_loop *loop = ahg_loop_new(&lo);
    assert_non_null(loop);
    struct ahg_httpd_opts o = {.name = "ws",
                               .port = 0,
                               .cert_file = tls ? CERTS "/server.pem" : NULL,
                               .key_file = tls ? CERTS "/server.key" : NULL,
                               .on_request = on_request};
    int err = 0;
    struct ahg_httpd *s = ahg_httpd_new(loop, &o, &err);
    assert_non_null(s);
    k->loop = loop;
    k->big_len = 1024u * 1024u + 7u;
    k->big = malloc(k->big_len);
    for (size_t i = 0; i < k->big_len; i++)
        k->big[i] = (unsigned char)(i * 7u);
    k->send_close_word = close_word;
    struct ahg_wsconn_client_opts co = {
        .conn = {.address = "127.0.0.1",
                 .port = ahg_httpd_port(s),
                 .tls = tls,
                 .tls_host = "localhost"},
        .target = target,
        .subprotocol = proto,
    };
    struct ahg_wsconn *ws = ahg_wsconn_connect(loop, &co, &cli_cbs, k, &err);
    assert_non_null(ws);
    ahg_loop_run(loop);
    ahg_loop_free(loop);
    free(k->big);
}

static void
test_wsconn_message_echo_and_close(void **state)
{
    (void)state;
    struct cli k = {0};
    run("/echo", false, NULL, false, &k);
    assert_true(k.opened);
    assert_true(k.text_ok);
    assert_true(k.big_ok);
    assert_true(k.pong);
    assert_true(k.closed);
    assert_int_equal(k.close_code, 1000);
    assert_int_equal(srv.accepted, 1);
    assert_int_equal(srv.closed, 1);
    assert_int_equal(srv.close_code, 1000);
}

static void
test_wsconn_frame_mode_tls_subprotocol(void **state)
{
    (void)state;
    struct cli k = {0};
    run("/frames", true, "chat", false, &k);
    assert_true(k.opened);
    assert_string_equal(k.proto, "chat");
    assert_true(k.text_ok);
    assert_true(k.big_ok);
    assert_true(k.closed);
}

static void
test_wsconn_server_initiated_close_code(void **state)
{
    (void)state;
    struct cli k = {0};
    run("/echo", false, NULL, true, &k);
    assert_true(k.closed);
    assert_int_equal(k.close_code, 4001);
    assert_int_equal(srv.close_code, 4001);
}

static void
test_wsconn_handshake_failure_reports_status_and_body(void **state)
{
    (void)state;
    struct cli k = {0};
    run("/nope", false, NULL, false, &k);
    assert_true(k.failed);
    assert_false(k.opened);
    assert_int_equal(k.fail_status, 404);
    assert_non_null(strstr(k.fail_body, "no such endpoint"));
}

static void
test_wsconn_parse_url(void **state)
{
    (void)state;
    struct ahg_wsconn_client_opts o;
    char buf[512];
    memset(&o, 0, sizeof(o));
    assert_int_equal(
        ahg_wsconn_parse_url("wss://127.0.0.1:9911/$hc/a?sb-hc-action=accept&sb-hc-id=1", &o, buf,
                             sizeof(buf)),
        AHG_OK);
    assert_string_equal(o.conn.address, "127.0.0.1");
    assert_int_equal(o.conn.port, 9911);
    assert_true(o.conn.tls);
    assert_string_equal(o.host, "127.0.0.1:9911");
    assert_string_equal(o.target, "/$hc/a?sb-hc-action=accept&sb-hc-id=1");
    assert_int_equal(ahg_wsconn_parse_url("ws://[::1]/x", &o, buf, sizeof(buf)), AHG_OK);
    assert_int_equal(o.conn.port, 80);
    assert_string_equal(o.host, "[::1]:80");
    assert_int_equal(ahg_wsconn_parse_url("http://x/", &o, buf, sizeof(buf)), AHG_EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wsconn_message_echo_and_close),
        cmocka_unit_test(test_wsconn_frame_mode_tls_subprotocol),
        cmocka_unit_test(test_wsconn_server_initiated_close_code),
        cmocka_unit_test(test_wsconn_handshake_failure_reports_status_and_body),
        cmocka_unit_test(test_wsconn_parse_url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
