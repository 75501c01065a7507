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

struct px {
    struct th t; /* only loop, port and tick are used */
    struct app app;
    char dir[64];
    char ready[128], emu_out[128], cli_out[128];
    pid_t emu, cli;
};

static void
tick(struct ahg_timer *tm)
{
    ahg_timer_start(tm, 5);
}

static int
free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t l = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    (void)close(fd);
    return ntohs(a.sin_port);
}

static pid_t
spawn(const char *const argv[], const char *out)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            (void)dup2(fd, 1);
            (void)dup2(fd, 2);
            (void)close(fd);
        }
        execv(argv[0], (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    return pid;
}

static bool
file_has(const char *path, const char *needle)
{
    static char buf[65536];
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    (void)fclose(f);
    buf[n] = 0;
    return strstr(buf, needle) != NULL;
}

struct fh {
    const char *path, *needle;
};

static bool
fh_cond(void *arg)
{
    struct fh *x = arg;
    return file_has(x->path, x->needle);
}

static bool
wait_file(struct px *p, const char *path, const char *needle, unsigned ms)
{
    struct fh x = {path, needle};
    return th_wait(&p->t, fh_cond, &x, ms);
}

/* Waits for the child to exit; its exit status, or -1 on timeout. */
static int
wait_exit(struct px *p, pid_t pid, unsigned ms)
{
    uint64_t end = ahg_now_ms() + ms;
    while (ahg_now_ms() < end) {
        int st = 0;
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (p)
            th_run(&p->t, 20);
        else
            (void)nanosleep(&(struct timespec){.tv_nsec = 20000000}, NULL);
    }
    return -1;
}

static void
emu_start(struct px *p)
{
    char port[64], ready[160];
    (void)snprintf(port, sizeof(port), "--emulator-relay-port=%d", p->t.port);
    (void)snprintf(ready, sizeof(ready), "--emulator-ready-file=%s", p->ready);
    (void)unlink(p->ready);
    /* (the admin port flag stands in for the TLS flags when plain) */
    const char *const argv[] = {
        EMULATOR_BIN,
        p->t.tls ? "--emulator-relay-cert=" AHG_TEST_FIXTURES "/certs/server.pem"
                 : "--emulator-admin-port=0",
        p->t.tls ? "--emulator-relay-key=" AHG_TEST_FIXTURES "/certs/server.key"
                 : "--emulator-admin-port=0",
        "--emulator-namespace=" TH_NS,
        port,
        "--emulator-mgmt-port=0",
        "--emulator-identity-port=0",
        "--emulator-admin-port=0",
        "--emulator-hybrid-connections=hc1",
        "--emulator-root-key=" TH_KEY,
        ready,
        NULL};
    p->emu = spawn(argv, p->emu_out);
    assert_true(wait_file(p, p->ready, "ready=1", 10000));
}

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

static int
setup(void **state)
{
    struct px *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    ahg_log_setup("cli-it", AHG_LOG_FORMAT_TEXT, AHG_LOG_LVL_ERROR, 2);
    (void)snprintf(p->dir, sizeof(p->dir), "/tmp/cli-it-XXXXXX");
    assert_non_null(mkdtemp(p->dir));
    (void)snprintf(p->ready, sizeof(p->ready), "%s/ready", p->dir);
    (void)snprintf(p->emu_out, sizeof(p->emu_out), "%s/emu.log", p->dir);
    (void)snprintf(p->cli_out, sizeof(p->cli_out), "%s/cli.log", p->dir);
    p->t.loop = ahg_loop_new(NULL);
    assert_non_null(p->t.loop);
    ahg_timer_init(&p->t.tick, p->t.loop, tick, p);
    ahg_timer_start(&p->t.tick, 5);
    p->t.port = free_port();
    app_start(&p->t, &p->app);
    *state = p;
    return 0;
}

static int
teardown(void **state)
{
    struct px *p = *state;
    if (p->cli > 0) {
        (void)kill(p->cli, SIGKILL);
        (void)wait_exit(NULL, p->cli, 5000);
    }
    if (p->emu > 0) {
        (void)kill(p->emu, SIGKILL);
        (void)wait_exit(NULL, p->emu, 5000);
    }
    ahg_timer_stop(&p->t.tick);
    ahg_loop_free(p->t.loop);
    (void)unlink(p->ready);
    (void)unlink(p->emu_out);
    (void)unlink(p->cli_out);
    (void)rmdir(p->dir);
    free(p);
    return 0;
}

/* Runs the binary with args (NULL-terminated, after the program) and returns its exit code;
 * its output goes to out. */
static int
run_cli(const char *out, const char *const *args)
{
    const char *argv[16] = {AZHEXGATE_BIN};
    int n = 1;
    for (; args[n - 1] && n < 15; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    (void)unlink(out);
    pid_t pid = spawn(argv, out);
    return wait_exit(NULL, pid, 20000);
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
    cli_start(p, free_port());
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
        cmocka_unit_test_setup_teardown(test_cli_usage_and_exit_codes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_tunnel_restart_and_sigint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_warns_when_nothing_listens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_drains_in_flight_then_exits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_second_ctrl_c_exits_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_dead_relay_detected_by_keepalive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_wss_with_ca_file, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
