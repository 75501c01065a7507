/*
 * test_e2e.c - every path of the design's sequence diagrams, with the real binaries as child
 * processes, in both forms of the server side:
 *   - "allinone": azhexgate-server (emulator + controller + gateway, in-memory store);
 *   - "split":    azhexgate-emulator, azhexgate-controller and azhexgate-gateway as separate
 *                 processes sharing a real redis-server.
 * The local app is the built-in demo app (cli/demo.h) on a thread of this process; callers are
 * libcurl from the test thread. Each case asserts the status a caller sees and what the CLI
 * prints (and its exit code).
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "ahg/net.h"
#include "cli/cli.h"
#include "cli/demo.h"
#include "tbody.h"
#include "tsupport.h"

enum mode { ALLINONE, SPLIT };

struct stack {
    enum mode mode;
    char dir[256];
    struct ts_server server; /* ALLINONE */
    struct ts_proc emu, ctl, gw;
    struct ts_redis redis;
    int public_port, relay_port, mgmt_port, identity_port, ctl_port;
    char api_key_file[320];
    char api_url[128];
    char identity_header[40];
};

/* The demo app on its own loop thread. */
static struct {
    struct ahg_loop *loop;
    struct cli_demo *demo;
    pthread_t thr;
    int port;
} app;

static void
app_start(void)
{
    struct ahg_loop_opts lo = {0};
    app.loop = ahg_loop_new(&lo);
    assert_non_null(app.loop);
    int err = 0;
    struct cli_demo_opts o = {.port = 0};
    app.demo = cli_demo_new(app.loop, &o, &err);
    assert_non_null(app.demo);
    app.port = cli_demo_port(app.demo);
    tb_loop_thread_start(app.loop, &app.thr);
}

static void
app_stop(void)
{
    tb_loop_thread_stop(app.loop, app.thr);
    ahg_loop_free(app.loop);
    cli_demo_free(app.demo);
}

static void
nap_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    (void)nanosleep(&ts, NULL);
}

/* ---- the server side ---- */

static void
start_allinone(struct stack *s, const char *extra)
{
    const char *args[] = {"--response-timeout", "2s", extra ? "--emulator-faults-arm" : NULL, extra,
                          NULL};
    ts_server_start(&s->server, SERVER_BIN, s->dir, args);
    s->public_port = s->server.public_port;
    s->relay_port = s->server.relay_port;
}

static void
start_split(struct stack *s, const char *extra)
{
    char ready[320], log[320], hdr[64];
    ts_redis_start(&s->redis, 0, NULL);
    char store[64];
    ts_redis_url(&s->redis, store, sizeof(store));

    /* the emulator */
    (void)snprintf(s->identity_header, sizeof(s->identity_header), "e2e-identity-secret");
    (void)snprintf(ready, sizeof(ready), "%s/emu.ready", s->dir);
    (void)snprintf(log, sizeof(log), "%s/emu.log", s->dir);
    const char *eargv[24] = {EMULATOR_BIN,
                             "--emulator-relay-port",
                             "0",
                             "--emulator-mgmt-port",
                             "0",
                             "--emulator-identity-port",
                             "0",
                             "--emulator-admin-port",
                             "0",
                             "--emulator-identity-header",
                             s->identity_header,
                             "--emulator-ready-file",
                             ready,
                             NULL};
    size_t k = 13;
    if (extra) {
        eargv[k++] = "--emulator-faults-arm";
        eargv[k++] = extra;
    }
    eargv[k] = NULL;
    ts_spawn(&s->emu, eargv, NULL, log);
    assert_true(ts_wait_file(ready, 20000));
    /* the ready file is written atomically once every port listens */
    s->relay_port = ts_ready_value(ready, "relay_port");
    s->mgmt_port = ts_ready_value(ready, "mgmt_port");
    s->identity_port = ts_ready_value(ready, "identity_port");
    assert_true(s->relay_port > 0 && s->mgmt_port > 0 && s->identity_port > 0);

    /* the controller, with a known API key */
    static const char key[] = "e2e-api-key-0123456789abcdef";
    FILE *f = fopen(s->api_key_file, "w");
    assert_non_null(f);
    (void)fprintf(f, "%s\n", key);
    (void)fclose(f);
    char relay[64], arm[64], ident[96], ctlport[16], pubport[16], cready[320], keysenv[96];
    s->ctl_port = ts_free_port();
    s->public_port = ts_free_port();
    (void)snprintf(relay, sizeof(relay), "ws://127.0.0.1:%d/", s->relay_port);
    (void)snprintf(arm, sizeof(arm), "http://127.0.0.1:%d", s->mgmt_port);
    (void)snprintf(ident, sizeof(ident), "http://127.0.0.1:%d/msi/token", s->identity_port);
    (void)snprintf(ctlport, sizeof(ctlport), "%d", s->ctl_port);
    (void)snprintf(pubport, sizeof(pubport), "%d", s->public_port);
    (void)snprintf(cready, sizeof(cready), "%s/ctl.ready", s->dir);
    (void)snprintf(log, sizeof(log), "%s/ctl.log", s->dir);
    (void)snprintf(keysenv, sizeof(keysenv), "AZHEXGATE_CONTROLLER_AUTH_KEYS=%s", key);
    (void)snprintf(hdr, sizeof(hdr), "%s", s->identity_header);
    const char *cargv[] = {CONTROLLER_BIN,
                           "--controller-listen-port",
                           ctlport,
                           "--controller-admin-port",
                           "0",
                           "--controller-store",
                           store,
                           "--controller-public-scheme",
                           "http",
                           "--controller-public-domain",
                           "localhost",
                           "--controller-public-port",
                           pubport,
                           "--controller-relay-endpoint",
                           relay,
                           "--controller-relay-host",
                           "ahg-local.servicebus.windows.net",
                           "--controller-arm-endpoint",
                           arm,
                           "--controller-arm-subscription",
                           "00000000-0000-0000-0000-000000000000",
                           "--controller-arm-resource-group",
                           "azhexgate",
                           "--controller-arm-namespace",
                           "ahg-local",
                           "--controller-identity-kind",
                           "appservice",
                           "--controller-identity-endpoint",
                           ident,
                           "--controller-identity-header",
                           hdr,
                           "--controller-ready-file",
                           cready,
                           NULL};
    const char *cenv[] = {keysenv, NULL};
    ts_spawn(&s->ctl, cargv, cenv, log);
    if (!ts_wait_file(cready, 20000)) {
        char *o = ts_output(&s->ctl);
        fail_msg("azhexgate-controller did not become ready:\n%s", o);
    }

    /* the gateway: Entra ID sender tokens from the (emulated) App Service identity */
    char upstream[64], idenv[160], hdrenv[96];
    (void)snprintf(upstream, sizeof(upstream), "127.0.0.1:%d", s->ctl_port);
    (void)snprintf(idenv, sizeof(idenv), "IDENTITY_ENDPOINT=%s", ident);
    (void)snprintf(hdrenv, sizeof(hdrenv), "IDENTITY_HEADER=%s", s->identity_header);
    (void)snprintf(log, sizeof(log), "%s/gw.log", s->dir);
    const char *gargv[] = {GATEWAY_BIN, "--domain",
                           "localhost", "--listen-port",
                           pubport,     "--admin-port",
                           "0",         "--store-url",
                           store,       "--api-upstream",
                           upstream,    "--relay-endpoint",
                           relay,       "--relay-auth",
                           "entra",     "--response-timeout",
                           "2s",        NULL};
    const char *genv[] = {idenv, hdrenv, NULL};
    ts_spawn(&s->gw, gargv, genv, log);
    if (!ts_wait_port(s->public_port, 20000)) {
        char *o = ts_output(&s->gw);
        fail_msg("azhexgate-gateway did not listen:\n%s", o);
    }
}

static struct stack *
stack_start(enum mode mode, const char *arm_fault)
{
    struct stack *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    s->mode = mode;
    ts_mkdtemp(s->dir, sizeof(s->dir), "e2e");
    (void)snprintf(s->api_key_file, sizeof(s->api_key_file), "%s/api-key", s->dir);
    if (mode == ALLINONE)
        start_allinone(s, arm_fault);
    else
        start_split(s, arm_fault);
    (void)snprintf(s->api_url, sizeof(s->api_url), "http://api.localhost:%d", s->public_port);
    return s;
}

static void
stack_stop(struct stack *s)
{
    ts_kill(&s->server.proc);
    ts_kill(&s->gw);
    ts_kill(&s->ctl);
    ts_kill(&s->emu);
    if (s->mode == SPLIT)
        ts_redis_stop(&s->redis);
    ts_rmtree(s->dir);
    free(s);
}

/* ---- the CLI ---- */

struct cli {
    struct ts_proc p;
    char url[128];
};

/* Starts `azhexgate start` for local port; extra args NULL-terminated (may be NULL). */
static void
cli_spawn(struct stack *s, struct cli *c, int local_port, const char *const *extra, const char *tag)
{
    char port[16], log[320];
    (void)snprintf(port, sizeof(port), "%d", local_port);
    (void)snprintf(log, sizeof(log), "%s/cli-%s.log", s->dir, tag);
    const char *argv[32] = {AZHEXGATE_BIN, "start",          "--port",        port, "--api-url",
                            s->api_url,    "--api-key-file", s->api_key_file, NULL};
    size_t k = 8;
    for (size_t i = 0; extra && extra[i] && k < 30; i++)
        argv[k++] = extra[i];
    argv[k] = NULL;
    memset(c, 0, sizeof(*c));
    ts_spawn(&c->p, argv, NULL, log);
}

static void
cli_start(struct stack *s, struct cli *c, int local_port, const char *tag)
{
    cli_spawn(s, c, local_port, NULL, tag);
    if (!ts_wait_output(&c->p, "Forwarding to: ", 20000)) {
        char *o = ts_output(&c->p);
        fail_msg("azhexgate start did not establish the tunnel:\n%s", o);
    }
    char *o = ts_output(&c->p);
    assert_non_null(strstr(o, "Tunnel established"));
    const char *u = strstr(o, "Public URL: ");
    assert_non_null(u);
    u += strlen("Public URL: ");
    size_t n = strcspn(u, "\r\n");
    assert_true(n > 0 && n < sizeof(c->url));
    memcpy(c->url, u, n);
    c->url[n] = '\0';
    free(o);
    assert_non_null(strstr(c->url, ".localhost:"));
}

static void
get(const char *url, const char *path, struct ts_resp *r)
{
    char full[256];
    (void)snprintf(full, sizeof(full), "%s%s", url, path);
    struct ts_req q = {.url = full, .timeout_ms = 20000};
    ts_http(&q, r);
}

/* GET with a few retries while the route or the control channel settles. */
static long
get_status_eventually(const char *url, const char *path, long want, struct ts_resp *r)
{
    for (int i = 0; i < 100; i++) {
        ts_resp_free(r);
        get(url, path, r);
        if (r->status == want)
            break;
        nap_ms(50);
    }
    return r->status;
}

static bool
contains(const struct ts_proc *p, const char *needle)
{
    char *o = ts_output(p);
    bool hit = strstr(o, needle) != NULL;
    free(o);
    return hit;
}

/* ---- the cases ---- */

/* Happy path: create → serve (bodies, status pass-through, 504) → Ctrl+C releases the tunnel. */
static void
run_happy(enum mode mode)
{
    struct stack *s = stack_start(mode, NULL);
    struct cli c;
    cli_start(s, &c, app.port, "happy");

    struct ts_resp r = {0};
    assert_int_equal(get_status_eventually(c.url, "/headers", 200, &r), 200);
    assert_non_null(strstr(r.body, "\"X-Forwarded-For\",\"127.0.0.1\""));
    assert_non_null(strstr(r.body, "\"X-Forwarded-Proto\",\"http\""));
    ts_resp_free(&r);

    /* a body both ways, 1 MiB, compared */
    size_t n = (size_t)1024 * 1024;
    unsigned char *b = malloc(n);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(i * 7u + 3u);
    char full[256];
    (void)snprintf(full, sizeof(full), "%s/echo", c.url);
    struct ts_req q = {.method = "POST", .url = full, .body = b, .body_len = n};
    ts_http(&q, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, n);
    assert_memory_equal(r.body, b, n);
    ts_resp_free(&r);
    free(b);

    /* the local app's own 500 passes through unchanged */
    get(c.url, "/status/500", &r);
    assert_int_equal(r.status, 500);
    ts_resp_free(&r);

    /* no response head within the gateway's response timeout (2 s) → 504 */
    get(c.url, "/delay/5000", &r);
    assert_int_equal(r.status, 504);
    ts_resp_free(&r);

    /* an unknown subdomain → 404 */
    char other[128];
    (void)snprintf(other, sizeof(other), "http://99999999.localhost:%d", s->public_port);
    get(other, "/", &r);
    assert_int_equal(r.status, 404);
    ts_resp_free(&r);

    /* the CLI logged the requests, ngrok style */
    assert_true(ts_wait_output(&c.p, "/status/500", 5000));

    /* Ctrl+C: drained, released (DELETE), exit 0; the URL is gone */
    ts_signal(&c.p, SIGINT);
    assert_int_equal(ts_wait_exit(&c.p, 20000), 0);
    assert_int_equal(get_status_eventually(c.url, "/", 404, &r), 404);
    ts_resp_free(&r);
    stack_stop(s);
}

/* 401: a wrong API key. */
static void
run_bad_key(enum mode mode)
{
    struct stack *s = stack_start(mode, NULL);
    struct cli c;
    const char *extra[] = {"--api-key", "not-the-key", NULL};
    char port[16];
    (void)snprintf(port, sizeof(port), "%d", app.port);
    const char *argv[] = {AZHEXGATE_BIN, "start",  "--port", port, "--api-url",
                          s->api_url,    extra[0], extra[1], NULL};
    char log[320];
    (void)snprintf(log, sizeof(log), "%s/cli-badkey.log", s->dir);
    ts_spawn(&c.p, argv, NULL, log);
    assert_int_equal(ts_wait_exit(&c.p, 20000), CLI_EXIT_API_AUTH);
    assert_true(contains(&c.p, "Authentication failed"));

    /* the API itself: 401 with a JSON error */
    char url[160];
    (void)snprintf(url, sizeof(url), "%s/api/tunnels", s->api_url);
    const char *h[] = {"X-AzHexGate-ApiKey: not-the-key", "Content-Type: application/json", NULL};
    struct ts_req q = {.method = "POST", .url = url, .headers = h, .body = "{}", .body_len = 2};
    struct ts_resp r;
    ts_http(&q, &r);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.body, "\"error\""));
    ts_resp_free(&r);
    stack_stop(s);
}

/* Hybrid Connection creation fails at ARM → a clean 5xx and "Unable to create tunnel". */
static void
run_arm_failure(enum mode mode)
{
    struct stack *s = stack_start(mode, "PUT:500:1000");
    struct cli c;
    cli_spawn(s, &c, app.port, NULL, "armfail");
    int code = ts_wait_exit(&c.p, 60000);
    assert_int_equal(code, CLI_EXIT_API_ERROR);
    assert_true(contains(&c.p, "Unable to create tunnel"));
    stack_stop(s);
}

/* Relay 403/401: a listener token with a bad signature, used directly against the relay. */
static void
run_bad_listener_token(enum mode mode)
{
    struct stack *s = stack_start(mode, NULL);
    /* a real tunnel, to have a real Hybrid Connection name */
    char url[160], key[128] = "";
    FILE *f = fopen(s->api_key_file, "r");
    assert_non_null(f);
    assert_non_null(fgets(key, sizeof(key), f));
    (void)fclose(f);
    key[strcspn(key, "\r\n")] = '\0';
    char hk[200];
    (void)snprintf(hk, sizeof(hk), "X-AzHexGate-ApiKey: %s", key);
    (void)snprintf(url, sizeof(url), "%s/api/tunnels", s->api_url);
    const char *h[] = {hk, "Content-Type: application/json", NULL};
    struct ts_req q = {.method = "POST", .url = url, .headers = h, .body = "{}", .body_len = 2};
    struct ts_resp r;
    ts_http(&q, &r);
    assert_int_equal(r.status, 201);
    const char *hcp = strstr(r.body, "\"hybrid_connection_name\":\"");
    assert_non_null(hcp);
    hcp += strlen("\"hybrid_connection_name\":\"");
    char hc[96];
    size_t hl = strcspn(hcp, "\"");
    assert_true(hl < sizeof(hc));
    memcpy(hc, hcp, hl);
    hc[hl] = '\0';
    ts_resp_free(&r);

    char relay[64], port[16], log[320], token[512];
    (void)snprintf(relay, sizeof(relay), "ws://127.0.0.1:%d/", s->relay_port);
    (void)snprintf(port, sizeof(port), "%d", app.port);
    (void)snprintf(token, sizeof(token),
                   "SharedAccessSignature sr=http%%3A%%2F%%2Fahg-local.servicebus.windows.net%%2F"
                   "%s&sig=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%%3D&se=4102444800&"
                   "skn=RootManageSharedAccessKey",
                   hc);
    (void)snprintf(log, sizeof(log), "%s/cli-badtoken.log", s->dir);
    const char *argv[] = {AZHEXGATE_BIN,
                          "start",
                          "--port",
                          port,
                          "--relay-endpoint",
                          relay,
                          "--hybrid-connection",
                          hc,
                          "--listener-token",
                          token,
                          NULL};
    struct ts_proc p;
    ts_spawn(&p, argv, NULL, log);
    assert_int_equal(ts_wait_exit(&p, 20000), CLI_EXIT_RELAY_AUTH);
    assert_true(contains(&p, "Relay authentication failed"));
    /* the token itself is never printed */
    assert_false(contains(&p, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    stack_stop(s);
}

/* Nothing listens on the local port: a warning at start, the tunnel stays up, callers get a
 * 502 page that says the local service is not reachable. */
static void
run_local_down(enum mode mode)
{
    struct stack *s = stack_start(mode, NULL);
    struct cli c;
    int dead = ts_free_port();
    cli_start(s, &c, dead, "localdown");
    assert_true(contains(&c.p, "nothing is listening"));
    struct ts_resp r = {0};
    assert_int_equal(get_status_eventually(c.url, "/", 502, &r), 502);
    assert_non_null(strstr(r.body, "not reachable"));
    ts_resp_free(&r);
    assert_true(ts_alive(&c.p));
    ts_signal(&c.p, SIGTERM);
    assert_int_equal(ts_wait_exit(&c.p, 20000), 0);
    stack_stop(s);
}

/* The client is gone (kill -9, so it could not release the tunnel): 502 "tunnel offline". */
static void
run_client_offline(enum mode mode)
{
    struct stack *s = stack_start(mode, NULL);
    struct cli c;
    cli_start(s, &c, app.port, "offline");
    struct ts_resp r = {0};
    assert_int_equal(get_status_eventually(c.url, "/healthz", 200, &r), 200);
    ts_resp_free(&r);
    ts_kill(&c.p);
    /* right after the kill a pooled stream may still be handed out and fail ("the tunnel
     * closed the connection", also a 502); once the relay has dropped the listener every
     * caller gets the "tunnel offline" page */
    bool offline = false;
    for (int i = 0; i < 100 && !offline; i++) {
        ts_resp_free(&r);
        get(c.url, "/healthz", &r);
        offline = r.status == 502 && strstr(r.body, "offline") != NULL;
        if (!offline)
            nap_ms(50);
    }
    ts_resp_free(&r);
    stack_stop(s);
    assert_true(offline);
}

/* A real browser (Debian's Chromium through playwright-core, tests/browser/browser.mjs) opens
 * the public URL of the demo page, whose WebSocket and SSE stream go through the tunnel. */
static void
test_browser(void **state)
{
    (void)state;
    const char *node = access("/usr/bin/node", X_OK) == 0 ? "/usr/bin/node" : NULL;
    if (!node || access(BROWSER_DIR "/node_modules/playwright-core", R_OK) != 0 ||
        access("/usr/bin/chromium", X_OK) != 0) {
        print_message("browser test skipped: needs node, chromium and tests/browser/node_modules "
                      "(scripts/install-deps.sh, scripts/npm-deps.sh)\n");
        skip();
    }
    struct stack *s = stack_start(ALLINONE, NULL);
    struct cli c;
    cli_start(s, &c, app.port, "browser");
    char page[160], shot[] = ARTIFACT_DIR "/browser-demo.png", log[320];
    (void)snprintf(page, sizeof(page), "%s/", c.url);
    (void)snprintf(log, sizeof(log), "%s/browser.log", s->dir);
    const char *argv[] = {node, BROWSER_DIR "/browser.mjs", page, shot, NULL};
    struct ts_proc b;
    ts_spawn(&b, argv, NULL, log);
    int code = ts_wait_exit(&b, 120000);
    char *o = ts_output(&b);
    if (code != 0)
        fail_msg("browser test exited %d:\n%s", code, o);
    assert_non_null(strstr(o, "\"ws\":\"echo ok\""));
    free(o);
    assert_int_equal(access(shot, R_OK), 0);
    /* the CLI saw the page, the WebSocket upgrade and the event stream */
    assert_true(ts_wait_output(&c.p, " 101 ", 5000));
    ts_signal(&c.p, SIGINT);
    assert_int_equal(ts_wait_exit(&c.p, 20000), 0);
    stack_stop(s);
}

#define CASES(X)                                                                                   \
    X(happy)                                                                                       \
    X(bad_key)                                                                                     \
    X(arm_failure)                                                                                 \
    X(bad_listener_token)                                                                          \
    X(local_down)                                                                                  \
    X(client_offline)

#define DEFINE(name)                                                                               \
    static void test_allinone_##name(void **state)                                                 \
    {                                                                                              \
        (void)state;                                                                               \
        run_##name(ALLINONE);                                                                      \
    }                                                                                              \
    static void test_split_##name(void **state)                                                    \
    {                                                                                              \
        (void)state;                                                                               \
        run_##name(SPLIT);                                                                         \
    }
CASES(DEFINE)

#define LIST_A(name) cmocka_unit_test(test_allinone_##name),
#define LIST_S(name) cmocka_unit_test(test_split_##name),

static int
group_setup(void **state)
{
    (void)state;
    app_start();
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    app_stop();
    return 0;
}

/* Usage: test_e2e allinone|split|browser (ctest runs each, in parallel). */
int
main(int argc, char **argv)
{
    (void)signal(SIGPIPE, SIG_IGN);
    if (argc != 2 || (strcmp(argv[1], "allinone") != 0 && strcmp(argv[1], "split") != 0 &&
                      strcmp(argv[1], "browser") != 0)) {
        (void)fprintf(stderr, "usage: %s allinone|split|browser\n", argv[0]);
        return 64;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest allinone[] = {CASES(LIST_A)};
    const struct CMUnitTest split[] = {CASES(LIST_S)};
    const struct CMUnitTest browser[] = {cmocka_unit_test(test_browser)};
    int rc;
    if (strcmp(argv[1], "allinone") == 0)
        rc = cmocka_run_group_tests_name("allinone", allinone, group_setup, group_teardown);
    else if (strcmp(argv[1], "split") == 0)
        rc = cmocka_run_group_tests_name("split", split, group_setup, group_teardown);
    else
        rc = cmocka_run_group_tests_name("browser", browser, group_setup, group_teardown);
    curl_global_cleanup();
    return rc;
}
