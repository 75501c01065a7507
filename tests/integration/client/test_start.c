/*
 * test_start.c - `azhexgate start` through the management API: the azhexgate and emulator
 * binaries as child processes, the stand-in management API (cli_it.h; the controller replaces
 * it in the final acceptance), the local app and the senders in-process. Covers the console
 * output, the API error paths and their exit codes, token renewal, Ctrl+C releasing the
 * tunnel, the emulator restarting under a live tunnel, the data plane through the binary
 * (methods and sizes with checksums, chunked, SSE, WebSocket, 200 concurrent requests), the
 * Host rewrite, and the config and completion subcommands.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "ahg/err.h"
#include "ahg/log.h"
#include "cli/cli.h"
#include "cli_it.h"
#include "harness.h"

#define BIG ((uint64_t)100 * 1024 * 1024)

struct fx {
    struct px *p; /* from px_setup */
    struct standin_api api;
    char api_url[64], port[16], xdg[128];
};

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    void *pp = NULL;
    assert_int_equal(px_setup(&pp), 0);
    f->p = pp;
    standin_api_start(&f->p->t, &f->api, f->p->t.port);
    /* a *.localhost name (RFC 6761): resolved to 127.0.0.1 without DNS */
    (void)snprintf(f->api_url, sizeof(f->api_url), "http://api.localhost:%d", f->api.port);
    (void)snprintf(f->port, sizeof(f->port), "%d", f->p->app.port);
    /* an empty config home: no user config file leaks into the tests */
    (void)snprintf(f->xdg, sizeof(f->xdg), "%s/xdg", f->p->dir);
    (void)setenv("XDG_CONFIG_HOME", f->xdg, 1);
    (void)unsetenv("AZHEXGATE_API_KEY");
    (void)unsetenv("AZHEXGATE_CONFIG");
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;
    char cfg[200];
    (void)snprintf(cfg, sizeof(cfg), "%s/azhexgate/config.yaml", f->xdg);
    (void)unlink(cfg);
    (void)snprintf(cfg, sizeof(cfg), "%s/azhexgate", f->xdg);
    (void)rmdir(cfg);
    (void)rmdir(f->xdg);
    (void)snprintf(cfg, sizeof(cfg), "%s/key", f->p->dir);
    (void)unlink(cfg);
    (void)snprintf(cfg, sizeof(cfg), "%s/out", f->p->dir);
    (void)unlink(cfg);
    void *pp = f->p;
    free(f);
    return px_teardown(&pp);
}

/* Starts `azhexgate start --port <app> --keepalive 1s` plus extra args (NULL-terminated). */
static void
cli_spawn(struct fx *f, const char *const *extra)
{
    const char *argv[40] = {AZHEXGATE_BIN, "start", "--port", f->port, "--keepalive", "1s"};
    int n = 6;
    for (; extra && *extra && n < 39; extra++)
        argv[n++] = *extra;
    argv[n] = NULL;
    f->p->cli = spawn(argv, f->p->cli_out);
}

static void
cli_spawn_api(struct fx *f, const char *const *extra)
{
    const char *argv[40] = {"--api-url", f->api_url, "--api-key", STANDIN_KEY};
    int n = 4;
    for (; extra && *extra && n < 39; extra++)
        argv[n++] = *extra;
    argv[n] = NULL;
    cli_spawn(f, argv);
}

/* Waits for needle in the client's output; on failure the output goes to stderr. */
static bool
wait_out(struct fx *f, const char *needle, unsigned ms)
{
    if (wait_file(f->p, f->p->cli_out, needle, ms))
        return true;
    FILE *in = fopen(f->p->cli_out, "r");
    char buf[4096];
    size_t n = in ? fread(buf, 1, sizeof(buf) - 1, in) : 0;
    if (in)
        (void)fclose(in);
    buf[n] = 0;
    print_error("no '%s' in the client's output:\n%s\n", needle, buf);
    return false;
}

static bool
snd_try(struct fx *f, struct snd *s)
{
    if (snd_connect(&f->p->t, s, "hc1"))
        return true;
    snd_free(s);
    return false;
}

/* A sender connected once the listener is there (404 until it is). */
static void
snd_ready(struct fx *f, struct snd *s)
{
    uint64_t end = ahg_now_ms() + 15000;
    bool ok = false;
    while (!(ok = snd_try(f, s)) && ahg_now_ms() < end)
        th_run(&f->p->t, 200);
    assert_true(ok);
}

static void
request_ok(struct fx *f, const char *path)
{
    struct snd s;
    snd_ready(f, &s);
    snd_request(&s, "GET", path, 0, false);
    assert_int_equal(s.status, 200);
    snd_free(&s);
}

static void
stop_cli(struct fx *f, int want)
{
    (void)kill(f->p->cli, SIGINT);
    assert_int_equal(wait_exit(f->p, f->p->cli, 15000), want);
    f->p->cli = 0;
}

/* ---- tests ---- */

static void
test_start_output_request_and_release(void **state)
{
    struct fx *f = *state;
    emu_start(f->p);
    static const char *const extra[] = {"--subdomain",  "demo",         "--basic-auth",
                                        "alice:s3cret", "--allow-cidr", "127.0.0.0/8",
                                        "--allow-cidr", "::1/128",      NULL};
    cli_spawn_api(f, extra);
    assert_true(wait_out(f, "Tunnel established", 20000));
    assert_true(file_has(f->p->cli_out, "Public URL: https://63873749.tunnel.test\n"));
    char fwd[64];
    (void)snprintf(fwd, sizeof(fwd), "Forwarding to: http://localhost:%d\n", f->p->app.port);
    assert_true(file_has(f->p->cli_out, fwd));
    assert_int_equal(f->api.creates, 1);
    /* what the API was asked for */
    assert_non_null(strstr(f->api.last_body, "\"local_port\":"));
    assert_non_null(strstr(f->api.last_body, "\"subdomain\":\"demo\""));
    assert_non_null(strstr(f->api.last_body, "\"basic_auth\":\"alice:s3cret\""));
    assert_non_null(strstr(f->api.last_body, "\"allow_cidr\":[\"127.0.0.0/8\",\"::1/128\"]"));
    request_ok(f, "/echo?through-the-api");
    assert_true(wait_file(f->p, f->p->cli_out, "/echo?through-the-api", 5000));
    assert_true(file_has(f->p->cli_out, " 200 "));
    /* Ctrl+C: DELETE, exit 0 */
    stop_cli(f, 0);
    assert_int_equal(f->api.deletes, 1);
    /* no secret in the output */
    assert_false(file_has(f->p->cli_out, STANDIN_KEY));
    assert_false(file_has(f->p->cli_out, "s3cret"));
    assert_false(file_has(f->p->cli_out, "SharedAccessSignature"));
}

static void
test_start_api_key_refused_names_the_source(void **state)
{
    struct fx *f = *state;
    /* flag */
    const char *flag[] = {"start",    "--port",    f->port,     "--api-url",
                          f->api_url, "--api-key", "wrong-key", NULL};
    assert_int_equal(run_cli_in(f->p, f->p->cli_out, flag), CLI_EXIT_API_AUTH);
    assert_true(file_has(f->p->cli_out, "Authentication failed"));
    assert_true(file_has(f->p->cli_out, "--api-key"));
    assert_false(file_has(f->p->cli_out, "wrong-key"));
    assert_string_equal(f->api.last_key, "wrong-key");
    /* environment */
    (void)setenv("AZHEXGATE_API_KEY", "wrong-env-key", 1);
    const char *env[] = {"start", "--port", f->port, "--api-url", f->api_url, NULL};
    assert_int_equal(run_cli_in(f->p, f->p->cli_out, env), CLI_EXIT_API_AUTH);
    (void)unsetenv("AZHEXGATE_API_KEY");
    assert_true(file_has(f->p->cli_out, "Authentication failed"));
    assert_true(file_has(f->p->cli_out, "environment variable AZHEXGATE_API_KEY"));
    /* key file */
    char kf[160];
    (void)snprintf(kf, sizeof(kf), "%s/key", f->p->dir);
    FILE *k = fopen(kf, "w");
    assert_non_null(k);
    (void)fputs("wrong-file-key\n", k);
    (void)fclose(k);
    const char *file[] = {"start",    "--port",         f->port, "--api-url",
                          f->api_url, "--api-key-file", kf,      NULL};
    assert_int_equal(run_cli_in(f->p, f->p->cli_out, file), CLI_EXIT_API_AUTH);
    assert_true(file_has(f->p->cli_out, "--api-key-file"));
    /* config file, written by `config set` */
    const char *set[] = {"config", "set", "api_key", "wrong-config-key", NULL};
    assert_int_equal(run_cli_in(f->p, f->p->cli_out, set), 0);
    const char *cfg[] = {"start", "--port", f->port, "--api-url", f->api_url, NULL};
    assert_int_equal(run_cli_in(f->p, f->p->cli_out, cfg), CLI_EXIT_API_AUTH);
    assert_true(file_has(f->p->cli_out, "the config file"));
    assert_true(file_has(f->p->cli_out, "config.yaml"));
    assert_false(file_has(f->p->cli_out, "wrong-config-key"));
    assert_int_equal(f->api.creates, 0);
}

static void
test_start_api_5xx_and_unreachable(void **state)
{
    struct fx *f = *state;
    f->api.fail_status = 503;
    const char *args[] = {"start",    "--port",    f->port,     "--api-url",
                          f->api_url, "--api-key", STANDIN_KEY, NULL};
    assert_int_equal(run_cli_in(f->p, f->p->cli_out, args), CLI_EXIT_API_ERROR);
    assert_true(file_has(f->p->cli_out,
                         "Unable to create tunnel: the relay namespace is being provisioned"));
    assert_int_equal(f->api.creates, 1);

    char dead[64];
    (void)snprintf(dead, sizeof(dead), "http://127.0.0.1:%d", ts_free_port());
    const char *down[] = {"start", "--port",    f->port,     "--api-url",
                          dead,    "--api-key", STANDIN_KEY, NULL};
    assert_int_equal(run_cli_in(f->p, f->p->cli_out, down), CLI_EXIT_API_UNREACHABLE);
    assert_true(file_has(f->p->cli_out, "is unreachable"));
    assert_true(file_has(f->p->cli_out, dead));

    /* no URL, no key: configuration errors that say what to do */
    const char *nourl[] = {"start", "--port", f->port, "--api-key", STANDIN_KEY, NULL};
    assert_int_equal(run_cli_in(f->p, f->p->cli_out, nourl), AHG_EXIT_CONFIG);
    assert_true(file_has(f->p->cli_out, "--api-url"));
    const char *nokey[] = {"start", "--port", f->port, "--api-url", f->api_url, NULL};
    assert_int_equal(run_cli_in(f->p, f->p->cli_out, nokey), AHG_EXIT_CONFIG);
    assert_true(file_has(f->p->cli_out, "config set api_key"));
}

static void
test_start_relay_refuses_token(void **state)
{
    struct fx *f = *state;
    emu_start(f->p);
    /* the API hands out a token the relay refuses (expired a minute ago) */
    const char *args[] = {"start",    "--port",    f->port,     "--api-url",
                          f->api_url, "--api-key", STANDIN_KEY, NULL};
    f->api.token_secs = -60; /* an expired token */
    assert_int_equal(run_cli_in(f->p, f->p->cli_out, args), CLI_EXIT_RELAY_AUTH);
    assert_true(file_has(f->p->cli_out, "Relay authentication failed"));
    assert_int_equal(f->api.deletes, 1); /* the tunnel is released anyway */
}

static void
test_start_renewal_keeps_tunnel(void **state)
{
    struct fx *f = *state;
    f->p->emu_flag = "--emulator-token-grace=500ms";
    emu_start(f->p);
    f->api.token_secs = 3;
    cli_spawn_api(f, NULL);
    assert_true(wait_out(f, "Tunnel established", 20000));
    th_run(&f->p->t, 8000); /* several token lifetimes */
    assert_true(f->api.renews >= 2);
    assert_false(file_has(f->p->cli_out, "lost"));
    assert_false(file_has(f->p->cli_out, "re-established"));
    request_ok(f, "/echo?after-renewals");
    stop_cli(f, 0);
    assert_int_equal(f->api.creates, 1);
}

/* The session expired on the server (404 on renewal): a new tunnel is created and announced. */
static void
test_start_expired_session_recreated(void **state)
{
    struct fx *f = *state;
    emu_start(f->p);
    f->api.token_secs = 3;
    f->api.renew_gone = true;
    cli_spawn_api(f, NULL);
    assert_true(wait_out(f, "Tunnel established", 20000));
    assert_true(wait_file(f->p, f->p->cli_out, "expired on the server", 10000));
    f->api.renew_gone = false;
    f->api.token_secs = 3600;
    th_run(&f->p->t, 1000);
    assert_int_equal(f->api.creates, 2);
    request_ok(f, "/echo?new-session");
    stop_cli(f, 0);
    assert_int_equal(f->api.deletes, 1);
}

static void
test_start_relay_restart_same_url(void **state)
{
    struct fx *f = *state;
    emu_start(f->p);
    cli_spawn_api(f, NULL);
    assert_true(wait_out(f, "Tunnel established", 20000));
    request_ok(f, "/echo?before");
    (void)kill(f->p->emu, SIGKILL);
    assert_true(wait_exit(f->p, f->p->emu, 5000) >= 0);
    f->p->emu = 0;
    th_run(&f->p->t, 500);
    emu_start(f->p);
    assert_true(wait_file(f->p, f->p->cli_out, "re-established", 20000));
    request_ok(f, "/echo?after");
    /* the same tunnel: no new one was asked for */
    assert_int_equal(f->api.creates, 1);
    stop_cli(f, 0);
    assert_int_equal(f->api.deletes, 1);
}

#define NCONC 200

static bool
raw_echo(void *arg)
{
    return ((struct snd *)arg)->rawlen >= 7;
}

static void
test_start_data_plane(void **state)
{
    struct fx *f = *state;
    emu_start(f->p);
    cli_spawn_api(f, NULL);
    assert_true(wait_out(f, "Tunnel established", 20000));
    struct snd s;
    snd_ready(f, &s);
    snd_free(&s);

    static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "DELETE"};
    static const uint64_t sizes[] = {0, 1024, BIG};
    for (size_t m = 0; m < 5; m++) {
        for (size_t z = 0; z < 3; z++) {
            bool body = !strcmp(methods[m], "POST") || !strcmp(methods[m], "PUT");
            if (z == 2 && !body && strcmp(methods[m], "GET") != 0)
                continue; /* 100 MiB: up with POST/PUT, down with GET */
            assert_true(snd_connect(&f->p->t, &s, "hc1"));
            char path[64];
            if (!strcmp(methods[m], "GET") && z == 2)
                (void)snprintf(path, sizeof(path), "/size/%llu", (unsigned long long)BIG);
            else
                (void)snprintf(path, sizeof(path), "/echo?m=%s&z=%zu", methods[m], z);
            snd_request(&s, methods[m], path, (body || z < 2) ? sizes[z] : 0, false);
            assert_int_equal(s.status, 200);
            assert_string_equal(s.xmethod, methods[m]);
            if (!strcmp(methods[m], "HEAD"))
                assert_int_equal(s.body_bytes, 0);
            else
                assert_true(s.sum == tb_pat_sum(sizes[z]));
            snd_free(&s);
        }
    }

    /* chunked up (echoed back chunked) and chunked down */
    assert_true(snd_connect(&f->p->t, &s, "hc1"));
    snd_request(&s, "POST", "/echo", 300000, true);
    assert_int_equal(s.status, 200);
    assert_true(s.sum == tb_pat_sum(300000));
    snd_request(&s, "GET", "/chunked", 0, false);
    assert_string_equal(s.body, "piece\npiece\npiece\npiece\npiece\n");
    snd_free(&s);

    /* SSE: three events 200 ms apart arrive one by one */
    assert_true(snd_connect(&f->p->t, &s, "hc1"));
    snd_request(&s, "GET", "/sse", 0, false);
    assert_string_equal(s.body, "data: event 0\n\ndata: event 1\n\ndata: event 2\n\n");
    assert_true(s.arrivals >= 3);
    assert_true(s.last_ms - s.first_ms >= 300);
    snd_free(&s);

    /* WebSocket echo */
    assert_true(snd_connect(&f->p->t, &s, "hc1"));
    static const char up[] =
        "GET /ws HTTP/1.1\r\nHost: tunnel.test\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n";
    assert_int_equal(ahg_http_parser_set_request_method(s.p, "GET"), AHG_OK);
    assert_int_equal(ahg_wsconn_send(s.ws, AHG_WS_BINARY, up, sizeof(up) - 1), AHG_OK);
    assert_true(snd_wait(&s, 5000));
    assert_int_equal(s.status, 101);
    unsigned char fr[11] = {0x81, 0x85, 1, 2, 3, 4};
    for (int i = 0; i < 5; i++)
        fr[6 + i] = (unsigned char)("hello"[i] ^ fr[2 + i % 4]);
    s.rawlen = 0;
    assert_int_equal(ahg_wsconn_send(s.ws, AHG_WS_BINARY, fr, sizeof(fr)), AHG_OK);
    assert_true(th_wait(&f->p->t, raw_echo, &s, 5000));
    assert_int_equal(s.rawbuf[0], 0x81);
    assert_int_equal(s.rawbuf[1], 5);
    assert_memory_equal(s.rawbuf + 2, "hello", 5);
    snd_free(&s);

    /* 200 concurrent requests */
    snd_concurrent(&f->p->t, "hc1", NCONC, 30000);
    stop_cli(f, 0);
}

static void
test_start_host_header(void **state)
{
    struct fx *f = *state;
    emu_start(f->p);
    static const char *const rw[] = {"--host-header", "rewrite", NULL};
    cli_spawn_api(f, rw);
    assert_true(wait_out(f, "Tunnel established", 20000));
    struct snd s;
    snd_ready(f, &s);
    snd_request(&s, "POST", "/echo", 1024, false); /* keep-alive: two requests, both rewritten */
    char want[64];
    (void)snprintf(want, sizeof(want), "localhost:%d", f->p->app.port);
    assert_string_equal(s.xhost, want);
    assert_true(s.sum == tb_pat_sum(1024));
    snd_request(&s, "GET", "/echo", 0, false);
    assert_string_equal(s.xhost, want);
    snd_free(&s);
    stop_cli(f, 0);

    static const char *const val[] = {"--host-header", "app.internal:8080", NULL};
    cli_spawn_api(f, val);
    snd_ready(f, &s);
    snd_request(&s, "GET", "/echo", 0, false);
    assert_string_equal(s.xhost, "app.internal:8080");
    snd_free(&s);
    stop_cli(f, 0);

    cli_spawn_api(f, NULL); /* preserve */
    snd_ready(f, &s);
    snd_request(&s, "GET", "/echo", 0, false);
    assert_string_equal(s.xhost, "tunnel.test");
    snd_free(&s);
    stop_cli(f, 0);
}

static void
test_config_and_completion(void **state)
{
    struct fx *f = *state;
    const char *out = f->p->cli_out;
    const char *set_url[] = {"config", "set", "api-url", f->api_url, NULL};
    assert_int_equal(run_cli_in(f->p, out, set_url), 0);
    const char *set_key[] = {"config", "set", "api_key", STANDIN_KEY, NULL};
    assert_int_equal(run_cli_in(f->p, out, set_key), 0);
    assert_false(file_has(out, STANDIN_KEY));
    const char *set_cidr[] = {"config", "set", "allow_cidr", "10.0.0.0/8,192.168.0.0/16", NULL};
    assert_int_equal(run_cli_in(f->p, out, set_cidr), 0);
    const char *set_quiet[] = {"config", "set", "quiet", "false", NULL};
    assert_int_equal(run_cli_in(f->p, out, set_quiet), 0);
    /* overwrite keeps one entry */
    const char *set_url2[] = {"config", "set", "api_url", f->api_url, NULL};
    assert_int_equal(run_cli_in(f->p, out, set_url2), 0);
    char cfgpath[200];
    (void)snprintf(cfgpath, sizeof(cfgpath), "%s/azhexgate/config.yaml", f->xdg);
    struct stat st;
    assert_int_equal(stat(cfgpath, &st), 0);
    assert_int_equal(st.st_mode & 077, 0); /* holds a secret: owner only */

    const char *show[] = {"config", "show", NULL};
    assert_int_equal(run_cli_in(f->p, out, show), 0);
    char line[160];
    (void)snprintf(line, sizeof(line), "api_url = %s", f->api_url);
    assert_true(file_has(out, line));
    assert_true(file_has(out, "api_key = [REDACTED]"));
    assert_true(file_has(out, "allow_cidr = [10.0.0.0/8, 192.168.0.0/16]"));
    assert_false(file_has(out, STANDIN_KEY));
    /* precedence: flag > env > file */
    (void)setenv("AZHEXGATE_SUBDOMAIN", "fromenv", 1);
    const char *show2[] = {"config", "show", "--subdomain", "fromflag", NULL};
    assert_int_equal(run_cli_in(f->p, out, show2), 0);
    assert_true(file_has(out, "subdomain = fromflag"));
    const char *show3[] = {"config", "show", NULL};
    assert_int_equal(run_cli_in(f->p, out, show3), 0);
    (void)unsetenv("AZHEXGATE_SUBDOMAIN");
    assert_true(file_has(out, "subdomain = fromenv"));

    /* a secret from a file replaces the direct value (never both in the file) */
    char kf[160];
    (void)snprintf(kf, sizeof(kf), "%s/key", f->p->dir);
    FILE *k = fopen(kf, "w");
    assert_non_null(k);
    (void)fputs(STANDIN_KEY "\n", k);
    (void)fclose(k);
    const char *set_kf[] = {"config", "set", "api_key_file", kf, NULL};
    assert_int_equal(run_cli_in(f->p, out, set_kf), 0);
    const char *show_kf[] = {"config", "show", NULL};
    assert_int_equal(run_cli_in(f->p, out, show_kf), 0);
    assert_true(file_has(out, "api_key = [REDACTED]"));
    assert_true(file_has(out, "_FILE") || file_has(out, "config.yaml:"));
    const char *set_nokf[] = {"config", "set", "api_key_file", "/nonexistent/key", NULL};
    assert_int_equal(run_cli_in(f->p, out, set_nokf), AHG_EXIT_CONFIG);
    const char *set_portf[] = {"config", "set", "port_file", kf, NULL};
    assert_int_equal(run_cli_in(f->p, out, set_portf), AHG_EXIT_USAGE);

    const char *badkey[] = {"config", "set", "nope", "1", NULL};
    assert_int_equal(run_cli_in(f->p, out, badkey), AHG_EXIT_USAGE);
    assert_true(file_has(out, "unknown key"));
    const char *badval[] = {"config", "set", "port", "abc", NULL};
    assert_int_equal(run_cli_in(f->p, out, badval), AHG_EXIT_CONFIG);
    const char *badsub[] = {"config", "set", "subdomain", "-x-", NULL};
    assert_int_equal(run_cli_in(f->p, out, badsub), AHG_EXIT_CONFIG);
    const char *noargs[] = {"config", "set", "port", NULL};
    assert_int_equal(run_cli_in(f->p, out, noargs), AHG_EXIT_USAGE);
    const char *chelp[] = {"config", "--help", NULL};
    assert_int_equal(run_cli_in(f->p, out, chelp), 0);
    assert_true(file_has(out, "config set KEY VALUE"));

    static const char *const shells[] = {"bash", "zsh", "fish"};
    for (int i = 0; i < 3; i++) {
        const char *comp[] = {"completion", shells[i], NULL};
        assert_int_equal(run_cli_in(f->p, out, comp), 0);
        assert_true(file_has(out, "api-key"));
        assert_true(file_has(out, "host-header"));
    }
    const char *badsh[] = {"completion", "tcsh", NULL};
    assert_int_equal(run_cli_in(f->p, out, badsh), AHG_EXIT_USAGE);
    const char *comphelp[] = {"completion", "--help", NULL};
    assert_int_equal(run_cli_in(f->p, out, comphelp), 0);
    const char *help[] = {"--help", NULL};
    assert_int_equal(run_cli_in(f->p, out, help), 0);
    assert_true(file_has(out, "completion"));
    const char *shelp[] = {"start", "--help", NULL};
    assert_int_equal(run_cli_in(f->p, out, shelp), 0);
    assert_true(file_has(out, "--api-url"));
    assert_true(file_has(out, "--host-header"));
    assert_true(file_has(out, "--allow-cidr"));

    /* the demo app */
    const char *dhelp[] = {"demo", "--help", NULL};
    assert_int_equal(run_cli_in(f->p, out, dhelp), 0);
    assert_true(file_has(out, "--port"));
    const char *const demo[] = {AZHEXGATE_BIN, "demo", "--port", "0", NULL};
    (void)unlink(out);
    f->p->cli = spawn(demo, out);
    assert_true(wait_out(f, "Demo app on http://localhost:", 10000));
    stop_cli(f, 0);

    /* the config file (URL and key file) is enough to start */
    (void)unlink(out);
    emu_start(f->p);
    cli_spawn(f, NULL);
    assert_true(wait_file(f->p, out, "Public URL: https://63873749.tunnel.test", 15000));
    assert_string_equal(f->api.last_key, STANDIN_KEY);
    assert_false(file_has(out, STANDIN_KEY));
    stop_cli(f, 0);
}

int
main(void)
{
    (void)signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_start_output_request_and_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_api_key_refused_names_the_source, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_start_api_5xx_and_unreachable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_relay_refuses_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_renewal_keeps_tunnel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_expired_session_recreated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_relay_restart_same_url, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_data_plane, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_host_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_and_completion, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
