/*
 * test_cli.c - the azhexgate binary as a child process against the emulator binary as a child
 * process (fixed relay port, ready file): usage and exit codes, the console output, a request
 * through the tunnel, the emulator killed and restarted (the control channel comes back), and
 * Ctrl+C (exit 0). The local app and the sender run in-process (cli_it.h).
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ahg/err.h"
#include "ahg/log.h"
#include "cli_it.h"
#include "harness.h"

static void
cli_start(struct px *p, int local_port)
{
    char port[32], ep[64], tok[1024];
    (void)snprintf(port, sizeof(port), "%d", local_port);
    (void)snprintf(ep, sizeof(ep), "%s://127.0.0.1:%d", p->t.tls ? "wss" : "ws", p->t.port);
    th_token("hc1", NULL, NULL, 3600, tok, sizeof(tok));
    const char *const argv[] = {AZHEXGATE_BIN,
                                "start",
                                "--port",
                                port,
                                "--local-host",
                                "localhost",
                                "--relay-endpoint",
                                ep,
                                "--hybrid-connection",
                                "hc1",
                                "--listener-token",
                                tok,
                                "--keepalive",
                                "1s",
                                "--relay-ca-file",
                                AHG_TEST_FIXTURES "/certs/ca.pem",
                                NULL};
    p->cli = spawn(argv, p->cli_out);
}

static void
test_cli_usage_and_exit_codes(void **state)
{
    struct px *p = *state;
    const char *version[] = {"version", NULL};
    assert_int_equal(run_cli(p->cli_out, version), 0);
    assert_true(file_has(p->cli_out, "azhexgate "));
    const char *help[] = {"start", "--help", NULL};
    assert_int_equal(run_cli(p->cli_out, help), 0);
    assert_true(file_has(p->cli_out, "--port"));
    assert_true(file_has(p->cli_out, "--listener-token-file"));
    const char *bogus[] = {"bogus", NULL};
    assert_int_equal(run_cli(p->cli_out, bogus), AHG_EXIT_USAGE);
    const char *none[] = {NULL};
    assert_int_equal(run_cli(p->cli_out, none), AHG_EXIT_USAGE);
    const char *badflag[] = {"start", "--port", "3000", "--nope", NULL};
    assert_int_equal(run_cli(p->cli_out, badflag), AHG_EXIT_USAGE);
    const char *noport[] = {"start", "--relay-endpoint", "ws://127.0.0.1:1", NULL};
    assert_int_equal(run_cli(p->cli_out, noport), AHG_EXIT_CONFIG);
    const char *badport[] = {"start", "--port", "abc", NULL};
    assert_int_equal(run_cli(p->cli_out, badport), AHG_EXIT_CONFIG);
    const char *badhost[] = {"start", "--port", "1", "--local-host", "example.com", NULL};
    assert_int_equal(run_cli(p->cli_out, badhost), AHG_EXIT_CONFIG);
    const char *print[] = {"start",           "--port",         "3000", "--listener-token",
                           "SharedSecret123", "--print-config", NULL};
    assert_int_equal(run_cli(p->cli_out, print), 0);
    assert_true(file_has(p->cli_out, "port = 3000"));
    assert_false(file_has(p->cli_out, "SharedSecret123"));
}

static bool
snd_try(struct px *p, struct snd *s)
{
    if (snd_connect(&p->t, s, "hc1"))
        return true;
    snd_free(s);
    return false;
}

static void
request_ok(struct px *p, const char *path)
{
    struct snd s;
    uint64_t end = ahg_now_ms() + 15000;
    bool ok = false;
    while (!(ok = snd_try(p, &s)) && ahg_now_ms() < end)
        th_run(&p->t, 200); /* 404 until the listener is back */
    assert_true(ok);
    snd_request(&s, "GET", path, 0, false);
    assert_int_equal(s.status, 200);
    snd_free(&s);
}

static void
test_cli_tunnel_restart_and_sigint(void **state)
{
    struct px *p = *state;
    emu_start(p);
    cli_start(p, p->app.port);
    assert_true(wait_file(p, p->cli_out, "Tunnel established", 10000));
    char fwd[64];
    (void)snprintf(fwd, sizeof(fwd), "Forwarding to: http://localhost:%d", p->app.port);
    assert_true(file_has(p->cli_out, fwd));
    request_ok(p, "/echo?first");
    assert_true(wait_file(p, p->cli_out, "/echo?first", 5000));

    /* the emulator dies and comes back on the same port */
    (void)kill(p->emu, SIGKILL);
    assert_true(wait_exit(p, p->emu, 5000) >= 0);
    p->emu = 0;
    th_run(&p->t, 500);
    emu_start(p);
    request_ok(p, "/echo?second");
    assert_true(wait_file(p, p->cli_out, "/echo?second", 5000));

    /* Ctrl+C: exit 0 */
    (void)kill(p->cli, SIGINT);
    assert_int_equal(wait_exit(p, p->cli, 10000), 0);
    p->cli = 0;
}

static void
test_cli_warns_when_nothing_listens(void **state)
{
    struct px *p = *state;
    emu_start(p);
    cli_start(p, ts_free_port());
    assert_true(wait_file(p, p->cli_out, "Tunnel established", 10000));
    assert_true(wait_file(p, p->cli_out, "nothing is listening", 5000));
    (void)kill(p->cli, SIGTERM);
    assert_int_equal(wait_exit(p, p->cli, 10000), 0);
    p->cli = 0;
}

static bool
first_event(void *arg)
{
    struct snd *s = arg;
    return s->arrivals >= 1 || s->gone;
}

static void
test_cli_drains_in_flight_then_exits(void **state)
{
    struct px *p = *state;
    emu_start(p);
    cli_start(p, p->app.port);
    assert_true(wait_file(p, p->cli_out, "Tunnel established", 10000));
    struct snd s;
    assert_true(snd_connect(&p->t, &s, "hc1"));
    static const char req[] = "GET /sse HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_int_equal(ahg_http_parser_set_request_method(s.p, "GET"), AHG_OK);
    assert_int_equal(ahg_wsconn_send(s.ws, AHG_WS_BINARY, req, sizeof(req) - 1), AHG_OK);
    assert_true(th_wait(&p->t, first_event, &s, 5000));
    assert_int_equal(s.arrivals, 1);
    /* Ctrl+C while the response streams: it completes, then the client exits 0 well before
     * the 5 s drain deadline */
    uint64_t t0 = ahg_now_ms();
    (void)kill(p->cli, SIGINT);
    assert_true(snd_wait(&s, 5000));
    assert_string_equal(s.body, "data: event 0\n\ndata: event 1\n\ndata: event 2\n\n");
    assert_int_equal(wait_exit(p, p->cli, 10000), 0);
    assert_true(ahg_now_ms() - t0 < 4000);
    p->cli = 0;
    snd_free(&s);
}

static void
test_cli_second_ctrl_c_exits_at_once(void **state)
{
    struct px *p = *state;
    emu_start(p);
    cli_start(p, p->app.port);
    assert_true(wait_file(p, p->cli_out, "Tunnel established", 10000));
    struct snd s;
    assert_true(snd_connect(&p->t, &s, "hc1"));
    /* an upgraded (WebSocket) stream stays until the drain deadline */
    static const char up[] =
        "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n";
    assert_int_equal(ahg_http_parser_set_request_method(s.p, "GET"), AHG_OK);
    assert_int_equal(ahg_wsconn_send(s.ws, AHG_WS_BINARY, up, sizeof(up) - 1), AHG_OK);
    assert_true(snd_wait(&s, 5000));
    assert_int_equal(s.status, 101);
    (void)kill(p->cli, SIGINT);
    th_run(&p->t, 300);
    uint64_t t0 = ahg_now_ms();
    (void)kill(p->cli, SIGINT);
    assert_int_equal(wait_exit(p, p->cli, 3000), 1);
    assert_true(ahg_now_ms() - t0 < 1000);
    p->cli = 0;
    snd_free(&s);
}

static void
test_cli_dead_relay_detected_by_keepalive(void **state)
{
    struct px *p = *state;
    emu_start(p);
    cli_start(p, p->app.port); /* --keepalive 1s */
    assert_true(wait_file(p, p->cli_out, "Tunnel established", 10000));
    /* the relay stops answering (laptop sleep, NAT drop): no pongs */
    (void)kill(p->emu, SIGSTOP);
    assert_true(wait_file(p, p->cli_out, "silent", 8000));
    (void)kill(p->emu, SIGCONT);
    assert_true(wait_file(p, p->cli_out, "re-established", 20000));
    request_ok(p, "/echo?after-sleep");
}

static void
test_cli_wss_with_ca_file(void **state)
{
    struct px *p = *state;
    p->t.tls = true;
    emu_start(p);
    cli_start(p, p->app.port);
    assert_true(wait_file(p, p->cli_out, "Tunnel established", 10000));
    request_ok(p, "/echo?over-tls");
    assert_true(wait_file(p, p->cli_out, "/echo?over-tls", 5000));
}

int
main(void)
{
    (void)signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cli_usage_and_exit_codes, px_setup, px_teardown),
        cmocka_unit_test_setup_teardown(test_cli_tunnel_restart_and_sigint, px_setup, px_teardown),
        cmocka_unit_test_setup_teardown(test_cli_warns_when_nothing_listens, px_setup, px_teardown),
        cmocka_unit_test_setup_teardown(test_cli_drains_in_flight_then_exits, px_setup,
                                        px_teardown),
        cmocka_unit_test_setup_teardown(test_cli_second_ctrl_c_exits_at_once, px_setup,
                                        px_teardown),
        cmocka_unit_test_setup_teardown(test_cli_dead_relay_detected_by_keepalive, px_setup,
                                        px_teardown),
        cmocka_unit_test_setup_teardown(test_cli_wss_with_ca_file, px_setup, px_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
