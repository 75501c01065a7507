/*
 * test_binary.c - azhexgate-controller as a child process, against the emulator binary and a
 * real redis-server (both child processes): usage and exit codes (--help, --version, unknown
 * flags, --check-config), the admin listener (/healthz, /readyz, /metrics), a tunnel created
 * through the API, JSON logs without secrets, and SIGTERM (drain, exit 0).
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "tsupport.h"

#define KEY "binary-test-key-123456"

static char dir[256];

static int
setup(void **state)
{
    (void)state;
    ts_mkdtemp(dir, sizeof(dir), "ctlbin");
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    ts_rmtree(dir);
    return 0;
}

static int
run(const char *const argv[], const char *tag)
{
    struct ts_proc p;
    char out[512];
    (void)snprintf(out, sizeof(out), "%s/%s.out", dir, tag);
    ts_spawn(&p, argv, NULL, out);
    return ts_wait_exit(&p, 20000);
}

static void
test_usage_and_exit_codes(void **state)
{
    (void)state;
    const char *const help[] = {CONTROLLER_BIN, "--help", NULL};
    assert_int_equal(run(help, "help"), 0);
    const char *const ver[] = {CONTROLLER_BIN, "--version", NULL};
    assert_int_equal(run(ver, "version"), 0);
    const char *const bogus[] = {CONTROLLER_BIN, "--bogus", NULL};
    assert_int_equal(run(bogus, "bogus"), 64);
    const char *const bad[] = {CONTROLLER_BIN, "--check-config", NULL};
    assert_int_equal(run(bad, "check1"), 78);
    const char *const good[] = {CONTROLLER_BIN,
                                "--check-config",
                                "--controller-arm-subscription=s",
                                "--controller-arm-resource-group=g",
                                "--controller-arm-namespace=n",
                                "--controller-auth-keys=" KEY,
                                NULL};
    assert_int_equal(run(good, "check2"), 0);
    const char *const cidr[] = {CONTROLLER_BIN,
                                "--check-config",
                                "--controller-arm-subscription=s",
                                "--controller-arm-resource-group=g",
                                "--controller-arm-namespace=n",
                                "--controller-auth-keys=" KEY,
                                "--controller-allow-cidr=10.0.0.1/8",
                                NULL};
    assert_int_equal(run(cidr, "check3"), 78);
}

static void
sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    (void)nanosleep(&ts, NULL);
}

static bool
read_kv(const char *path, const char *key, char *out, size_t outsz)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char line[256];
    bool found = false;
    size_t kl = strlen(key);
    while (fgets(line, sizeof(line), f)) {
        if (!strncmp(line, key, kl) && line[kl] == '=') {
            line[strcspn(line, "\n")] = '\0';
            (void)snprintf(out, outsz, "%s", line + kl + 1);
            found = true;
        }
    }
    (void)fclose(f);
    return found;
}

static bool
wait_ready(const char *path, unsigned ms)
{
    char v[16];
    for (unsigned i = 0; i < ms / 50; i++) {
        if (read_kv(path, "ready", v, sizeof(v)))
            return true;
        sleep_ms(50);
    }
    return false;
}

static void
get(const char *url, const char *key, const char *method, const char *body, struct ts_resp *r)
{
    char kh[128];
    (void)snprintf(kh, sizeof(kh), "X-AzHexGate-ApiKey: %s", key ? key : "");
    const char *hdrs[] = {kh, "Content-Type: application/json", NULL};
    struct ts_req q = {.method = method,
                       .url = url,
                       .headers = key ? hdrs : NULL,
                       .body = body,
                       .body_len = body ? strlen(body) : 0,
                       .timeout_ms = 20000};
    ts_http(&q, r);
}

static void
test_run_and_sigterm(void **state)
{
    (void)state;
    struct ts_redis rs;
    memset(&rs, 0, sizeof(rs));
    ts_redis_start(&rs, 0, NULL);
    char redis_url[128];
    ts_redis_url(&rs, redis_url, sizeof(redis_url));

    char emu_ready[300], emu_out[300];
    (void)snprintf(emu_ready, sizeof(emu_ready), "%s/emu.ready", dir);
    (void)snprintf(emu_out, sizeof(emu_out), "%s/emu.out", dir);
    char ready_flag[400];
    (void)snprintf(ready_flag, sizeof(ready_flag), "--emulator-ready-file=%s", emu_ready);
    const char *const eargv[] = {EMULATOR_BIN,
                                 "--emulator-namespace=ahg-bin",
                                 "--emulator-relay-port=0",
                                 "--emulator-mgmt-port=0",
                                 "--emulator-identity-port=0",
                                 "--emulator-admin-port=0",
                                 ready_flag,
                                 NULL};
    struct ts_proc emu;
    ts_spawn(&emu, eargv, NULL, emu_out);
    assert_true(wait_ready(emu_ready, 10000));
    char relay[16], mgmt[16], ident[16];
    assert_true(read_kv(emu_ready, "relay_port", relay, sizeof(relay)));
    assert_true(read_kv(emu_ready, "mgmt_port", mgmt, sizeof(mgmt)));
    assert_true(read_kv(emu_ready, "identity_port", ident, sizeof(ident)));

    char f_store[160], f_arm[96], f_id[160], f_ep[96], f_ready[400], ctl_ready[300], ctl_out[300];
    (void)snprintf(f_store, sizeof(f_store), "--controller-store=%s", redis_url);
    (void)snprintf(f_arm, sizeof(f_arm), "--controller-arm-endpoint=http://127.0.0.1:%s", mgmt);
    (void)snprintf(f_id, sizeof(f_id),
                   "--controller-identity-endpoint=http://127.0.0.1:%s/metadata/identity/oauth2/"
                   "token",
                   ident);
    (void)snprintf(f_ep, sizeof(f_ep), "--controller-relay-endpoint=ws://127.0.0.1:%s/", relay);
    (void)snprintf(ctl_ready, sizeof(ctl_ready), "%s/ctl.ready", dir);
    (void)snprintf(ctl_out, sizeof(ctl_out), "%s/ctl.out", dir);
    (void)snprintf(f_ready, sizeof(f_ready), "--controller-ready-file=%s", ctl_ready);
    const char *const cargv[] = {
        CONTROLLER_BIN,
        "--controller-listen-port=0",
        "--controller-admin-port=0",
        f_store,
        f_arm,
        f_id,
        f_ep,
        f_ready,
        "--controller-identity-kind=imds",
        "--controller-arm-subscription=00000000-0000-0000-0000-000000000000",
        "--controller-arm-resource-group=azhexgate",
        "--controller-arm-namespace=ahg-bin",
        "--controller-public-scheme=http",
        "--controller-public-port=8080",
        NULL};
    const char *const env[] = {"AZHEXGATE_CONTROLLER_AUTH_KEYS=" KEY, NULL};
    struct ts_proc ctl;
    ts_spawn(&ctl, cargv, env, ctl_out);
    assert_true(wait_ready(ctl_ready, 10000));
    char api[16], admin[16];
    assert_true(read_kv(ctl_ready, "api_port", api, sizeof(api)));
    assert_true(read_kv(ctl_ready, "admin_port", admin, sizeof(admin)));

    char url[160];
    struct ts_resp r;
    (void)snprintf(url, sizeof(url), "http://127.0.0.1:%s/healthz", admin);
    get(url, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    ts_resp_free(&r);
    (void)snprintf(url, sizeof(url), "http://127.0.0.1:%s/readyz", admin);
    long st = 0;
    for (int i = 0; i < 100 && st != 200; i++) {
        get(url, NULL, NULL, NULL, &r);
        st = r.status;
        ts_resp_free(&r);
        if (st != 200)
            sleep_ms(50);
    }
    assert_int_equal(st, 200);

    (void)snprintf(url, sizeof(url), "http://127.0.0.1:%s/api/tunnels", api);
    get(url, KEY, "POST", "{\"local_port\":3000}", &r);
    if (r.status != 201)
        fail_msg("POST: %ld %s", r.status, r.body ? r.body : r.err);
    assert_non_null(strstr(r.body, "\"public_url\":\"http://"));
    assert_non_null(strstr(r.body, ".localhost:8080\""));
    ts_resp_free(&r);
    get(url, "wrong", "GET", NULL, &r);
    assert_int_equal(r.status, 401);
    ts_resp_free(&r);

    (void)snprintf(url, sizeof(url), "http://127.0.0.1:%s/metrics", admin);
    get(url, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "azhexgate_controller_sessions_total{event=\"created\"} 1"));
    assert_non_null(strstr(r.body, "azhexgate_controller_leader 1"));
    ts_resp_free(&r);

    ts_signal(&ctl, SIGTERM);
    assert_int_equal(ts_wait_exit(&ctl, 15000), 0);
    char *log = ts_output(&ctl);
    assert_non_null(strstr(log, "draining"));
    assert_null(strstr(log, KEY));
    assert_null(strstr(log, "SharedAccessSignature"));
    /* every line is a JSON object */
    for (char *line = log; line && *line;) {
        assert_int_equal(line[0], '{');
        char *nl = strchr(line, '\n');
        line = nl ? nl + 1 : NULL;
    }
    free(log);
    ts_kill(&emu);
    ts_redis_stop(&rs);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage_and_exit_codes),
        cmocka_unit_test(test_run_and_sigterm),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
