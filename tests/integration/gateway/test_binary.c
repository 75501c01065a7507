/*
 * The azhexgate-gateway binary: exit codes of bad configurations, TLS on the public side with
 * the test CA's certificate and its reload on SIGHUP, SIGTERM draining (in-flight requests
 * finish, exit 0), and kill -9 of one gateway under load while another one on the same Redis
 * keeps serving. Also TLS through the library in-process, end to end through a tunnel.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "ahg/err.h"
#include "gw_it.h"

#define CERTS AHG_TEST_FIXTURES "/certs"

extern char **environ;

static pid_t
spawn_gw(const char *const *args, const char *log)
{
    const char *argv[48] = {GATEWAY_BIN};
    int argc = 1;
    for (size_t i = 0; args[i] && argc < 46; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    posix_spawn_file_actions_t fa;
    assert_int_equal(posix_spawn_file_actions_init(&fa), 0);
    assert_int_equal(posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0),
                     0);
    assert_int_equal(posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, log ? log : "/dev/null",
                                                      O_WRONLY | O_CREAT | O_TRUNC, 0600),
                     0);
    pid_t pid = 0;
    assert_int_equal(posix_spawn(&pid, GATEWAY_BIN, &fa, NULL, (char *const *)argv, environ), 0);
    (void)posix_spawn_file_actions_destroy(&fa);
    child_track(pid);
    return pid;
}

static int
wait_exit(pid_t pid)
{
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    child_untrack(pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int
run_gw(const char *const *args)
{
    return wait_exit(spawn_gw(args, NULL));
}

static void
test_gateway_binary_exit_codes(void **state)
{
    (void)state;
    static const char *const help[] = {"--help", NULL};
    assert_int_equal(run_gw(help), 0);
    static const char *const nodomain[] = {"--relay-auth", "none", NULL};
    assert_int_equal(run_gw(nodomain), AHG_EXIT_CONFIG);
    static const char *const badflag[] = {"--domain", "x.test", "--no-such-flag", NULL};
    assert_int_equal(run_gw(badflag), AHG_EXIT_USAGE);
    static const char *const nokey[] = {"--domain", "x.test", "--store-url", "memory:", NULL};
    assert_int_equal(run_gw(nokey), AHG_EXIT_CONFIG);
    static const char *const badep[] = {
        "--domain", "x.test",           "--store-url",           "memory:",      "--relay-auth",
        "none",     "--relay-endpoint", "ws://relay.example:80", "--admin-port", "-1",
        NULL};
    assert_int_equal(run_gw(badep), AHG_EXIT_CONFIG);
    /* the admin port taken: a clean failure (exit 1, and LeakSanitizer finds nothing: the
     * half-built gateway is freed with its public listener) */
    int busy = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(busy >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(busy, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(busy, 1), 0);
    socklen_t sl = sizeof(sa);
    assert_int_equal(getsockname(busy, (struct sockaddr *)&sa, &sl), 0);
    char port[16];
    (void)snprintf(port, sizeof(port), "%d", ntohs(sa.sin_port));
    const char *const taken[] = {
        "--domain", "x.test",        "--store-url", "memory:",      "--relay-auth",
        "none",     "--listen-port", "0",           "--admin-port", port,
        NULL};
    assert_int_equal(run_gw(taken), 1);
    (void)close(busy);
}

static void
copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    assert_non_null(in);
    FILE *out = fopen(to, "wb");
    assert_non_null(out);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    (void)fclose(in);
    assert_int_equal(fclose(out), 0);
}

static void
run_cmd(const char *cmd, char *out, size_t outsz)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, outsz - 1, p);
    out[n] = '\0';
    (void)pclose(p);
}

/* SHA-256 fingerprint of the certificate served on port for name. */
static void
served_fp(int port, char *out, size_t outsz)
{
    char cmd[512];
    (void)snprintf(cmd, sizeof(cmd),
                   "openssl s_client -connect 127.0.0.1:%d -servername t1.localhost </dev/null "
                   "2>/dev/null | openssl x509 -noout -fingerprint -sha256 2>/dev/null",
                   port);
    run_cmd(cmd, out, outsz);
}

static void
file_fp(const char *path, char *out, size_t outsz)
{
    char cmd[512];
    (void)snprintf(cmd, sizeof(cmd), "openssl x509 -in %s -noout -fingerprint -sha256", path);
    run_cmd(cmd, out, outsz);
}

static void
test_gateway_binary_tls_and_reload(void **state)
{
    (void)state;
    char dir[] = "/tmp/gw-it-tls-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cert[128], key[128];
    (void)snprintf(cert, sizeof(cert), "%s/tls.pem", dir);
    (void)snprintf(key, sizeof(key), "%s/tls.key", dir);
    copy_file(CERTS "/server.pem", cert);
    copy_file(CERTS "/server.key", key);
    int port = ts_free_port();
    char ports[16];
    (void)snprintf(ports, sizeof(ports), "%d", port);
    const char *const args[] = {"--domain",
                                "localhost",
                                "--listen-address",
                                "127.0.0.1",
                                "--listen-port",
                                ports,
                                "--store-url",
                                "memory:",
                                "--relay-auth",
                                "none",
                                "--admin-port",
                                "-1",
                                "--tls-cert",
                                cert,
                                "--tls-key",
                                key,
                                NULL};
    pid_t pid = spawn_gw(args, NULL);
    assert_true(ts_wait_port(port, 10000));
    char a[256], b[256];
    served_fp(port, a, sizeof(a));
    file_fp(CERTS "/server.pem", b, sizeof(b));
    assert_true(strlen(b) > 20);
    assert_string_equal(a, b);
    /* a request over TLS, the chain verified against the test CA: an unknown tunnel is a 404 */
    char cmd[512], out[4096];
    (void)snprintf(cmd, sizeof(cmd),
                   "printf 'GET / HTTP/1.1\\r\\nHost: nosuch.localhost\\r\\nConnection: "
                   "close\\r\\n\\r\\n' | openssl s_client -quiet -verify_return_error -CAfile "
                   "%s/ca.pem -connect 127.0.0.1:%d -servername nosuch.localhost 2>/dev/null | "
                   "head -c 12",
                   CERTS, port);
    run_cmd(cmd, out, sizeof(out));
    assert_string_equal(out, "HTTP/1.1 404");
    /* new certificate files + SIGHUP: new handshakes get the new certificate */
    copy_file(CERTS "/untrusted.pem", cert);
    copy_file(CERTS "/untrusted.key", key);
    assert_int_equal(kill(pid, SIGHUP), 0);
    file_fp(CERTS "/untrusted.pem", b, sizeof(b));
    bool changed = false;
    for (int i = 0; i < 200 && !changed; i++) {
        served_fp(port, a, sizeof(a));
        changed = strcmp(a, b) == 0;
        if (!changed)
            sleep_ms(25);
    }
    assert_true(changed);
    assert_int_equal(kill(pid, SIGTERM), 0);
    assert_int_equal(wait_exit(pid), 0);
    (void)unlink(cert);
    (void)unlink(key);
    (void)rmdir(dir);
}

/* ---- with the emulator, a tunnel and Redis (in-process), gateways as processes ---- */

static int
setup(void **state)
{
    struct ahg_gw_opts o = {.admin_port = -1};
    return gfx_setup(state, &o);
}

struct proc {
    pid_t pid;
    int port, admin;
    char keyfile[64];
};

static void
proc_start(struct gfx *f, struct proc *p)
{
    p->port = ts_free_port();
    p->admin = ts_free_port();
    (void)snprintf(p->keyfile, sizeof(p->keyfile), "/tmp/gw-it-key-%d", (int)getpid());
    FILE *k = fopen(p->keyfile, "w");
    assert_non_null(k);
    (void)fputs(TH_KEY "\n", k);
    (void)fclose(k);
    char ports[16], admins[16], ep[64], store[64];
    (void)snprintf(ports, sizeof(ports), "%d", p->port);
    (void)snprintf(admins, sizeof(admins), "%d", p->admin);
    (void)snprintf(ep, sizeof(ep), "ws://127.0.0.1:%d", f->t.port);
    (void)snprintf(store, sizeof(store), "redis://127.0.0.1:%d", f->rs.port);
    const char *const args[] = {"--domain",
                                GW_DOMAIN,
                                "--listen-address",
                                "127.0.0.1",
                                "--listen-port",
                                ports,
                                "--admin-port",
                                admins,
                                "--store-url",
                                store,
                                "--relay-endpoint",
                                ep,
                                "--relay-sas-key-name",
                                TH_RULE,
                                "--relay-sas-key-file",
                                p->keyfile,
                                "--log-level",
                                getenv("GW_IT_LOG") ? "debug" : "warn",
                                getenv("GW_IT_LOG") ? "--access-log=true" : "--access-log=false",
                                NULL};
    p->pid = spawn_gw(args, getenv("GW_IT_LOG") ? "/tmp/gw-it-child.log" : NULL);
    /* keep the loop (relay, tunnel) running while the process starts */
    for (int i = 0; i < 400 && !ts_wait_port(p->port, 0); i++)
        th_run(&f->t, 25);
    assert_true(ts_wait_port(p->port, 0));
}

static void
test_gateway_binary_kill9_under_load(void **state)
{
    struct gfx *f = *state;
    struct proc a, b;
    proc_start(f, &a);
    proc_start(f, &b);
    char raw[] = "GET /size/300000 HTTP/1.1\r\nHost: t1." GW_DOMAIN "\r\n\r\n";
    enum { N = 6 };
    struct hcli h[2 * N];
    for (int i = 0; i < 2 * N; i++)
        hcli_send(&f->t, &h[i], i % 2 ? b.port : a.port, NULL, "GET", raw, 0, false);
    /* both serve */
    for (int i = 0; i < 2 * N; i++) {
        assert_true(hcli_wait(&h[i], 30000));
        assert_int_equal(h[i].status, 200);
        hcli_free(&h[i]);
    }
    /* load on both again, then kill -9 one of them mid-way */
    for (int i = 0; i < 2 * N; i++)
        hcli_send(&f->t, &h[i], i % 2 ? b.port : a.port, NULL, "GET", raw, 0, false);
    th_run(&f->t, 30);
    assert_int_equal(kill(a.pid, SIGKILL), 0);
    (void)wait_exit(a.pid);
    for (int i = 0; i < 2 * N; i++) {
        bool ok = hcli_wait(&h[i], 30000);
        if (i % 2) { /* the survivor's exchanges all complete */
            assert_true(ok);
            assert_int_equal(h[i].status, 200);
            assert_true(h[i].got == 300000);
            assert_true(h[i].sum == tb_pat_sum(300000));
        }
        hcli_free(&h[i]);
    }
    /* and it keeps serving; the tunnel is unharmed */
    for (int i = 0; i < N; i++) {
        hcli_send(&f->t, &h[0], b.port, NULL, "GET", raw, 0, false);
        assert_true(hcli_wait(&h[0], 30000));
        assert_int_equal(h[0].status, 200);
        hcli_free(&h[0]);
    }
    assert_true(cli_tunnel_connected(f->tun));
    assert_int_equal(kill(b.pid, SIGTERM), 0);
    /* the loop must run while b drains (its streams go through the in-process relay) */
    int st = 0;
    for (int i = 0; i < 1000 && waitpid(b.pid, &st, WNOHANG) == 0; i++)
        th_run(&f->t, 10);
    child_untrack(b.pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    (void)unlink(a.keyfile);
}

static bool
has_event0(void *arg)
{
    struct hcli *h = arg;
    return strstr(h->body, "event 0") != NULL || h->closed;
}

static void
test_gateway_binary_sigterm_drains(void **state)
{
    struct gfx *f = *state;
    struct proc a;
    proc_start(f, &a);
    struct hcli s;
    f->app.sse_ack = 0;
    hcli_send(&f->t, &s, a.port, NULL, "GET", "GET /sse HTTP/1.1\r\nHost: t1." GW_DOMAIN "\r\n\r\n",
              0, false);
    assert_true(th_wait(&f->t, has_event0, &s, 20000));
    assert_int_equal(kill(a.pid, SIGTERM), 0);
    /* wait until it says so on /readyz (503 while draining) */
    int ready = 200;
    for (int i = 0; i < 200 && ready != 503; i++) {
        struct hcli r;
        hcli_send(&f->t, &r, a.admin, NULL, "GET", "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n", 0,
                  false);
        (void)hcli_wait(&r, 5000);
        ready = r.status;
        hcli_free(&r);
        if (ready != 503)
            th_run(&f->t, 25);
    }
    assert_int_equal(ready, 503);
    /* draining: a new request is refused with 503 */
    struct hcli h;
    hcli_send(&f->t, &h, a.port, NULL, "GET",
              "GET /echo HTTP/1.1\r\nHost: t1." GW_DOMAIN "\r\n\r\n", 0, false);
    assert_true(hcli_wait(&h, 10000));
    assert_int_equal(h.status, 503);
    hcli_free(&h);
    /* the request in flight finishes */
    f->app.sse_ack = 100;
    assert_true(hcli_wait(&s, 20000));
    assert_int_equal(s.status, 200);
    assert_non_null(strstr(s.body, "event 2"));
    hcli_free(&s);
    f->app.sse_ack = 0;
    int st = 0;
    for (int i = 0; i < 1000 && waitpid(a.pid, &st, WNOHANG) == 0; i++)
        th_run(&f->t, 10);
    child_untrack(a.pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    (void)unlink(a.keyfile);
}

static void
test_gateway_tls_in_process(void **state)
{
    struct gfx *f = *state;
    struct ahg_gw_opts o = {
        .admin_port = -1, .cert_file = CERTS "/server.pem", .key_file = CERTS "/server.key"};
    struct ahg_gw *gw2 = gfx_gw_new(f, &o, gfx_store(f));
    struct hcli h;
    hcli_send(&f->t, &h, ahg_gw_port(gw2), "t1." GW_DOMAIN, "GET",
              "GET /headers HTTP/1.1\r\nHost: t1." GW_DOMAIN "\r\n\r\n", 0, false);
    assert_true(hcli_wait(&h, 20000));
    assert_int_equal(h.status, 200);
    assert_non_null(strstr(h.body, "X-Forwarded-Proto: https\r\n"));
    hcli_free(&h);
    assert_int_equal(ahg_gw_reload_certs(gw2), AHG_OK);
    assert_int_equal(ahg_gw_reload_certs(f->gw), AHG_EINVAL); /* no TLS there */
}

int
main(void)
{
    const struct CMUnitTest alone[] = {
        cmocka_unit_test(test_gateway_binary_exit_codes),
        cmocka_unit_test(test_gateway_binary_tls_and_reload),
    };
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gateway_tls_in_process),
        cmocka_unit_test(test_gateway_binary_kill9_under_load),
        cmocka_unit_test(test_gateway_binary_sigterm_drains),
    };
    int rc = cmocka_run_group_tests(alone, NULL, NULL);
    return rc + cmocka_run_group_tests(tests, setup, gfx_teardown);
}
