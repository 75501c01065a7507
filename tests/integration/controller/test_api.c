/*
 * test_api.c - the management API against the emulator's ARM and identity endpoints and a real
 * redis-server: the tunnel life cycle (create, listen with the issued token, get, list, renew,
 * delete), the error paths (400/401/403/404/405/409/429/503) and relay key rotation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "ahg/err.h"
#include "ctl_it.h"
#include "emu_int.h"

static struct cit C;

static int
setup(void **state)
{
    (void)state;
    cit_start(&C, NULL);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    cit_stop(&C);
    return 0;
}

static void
sid_path(const char *sid, const char *suffix, char *out, size_t n)
{
    (void)snprintf(out, n, "/api/tunnels/%s%s", sid, suffix ? suffix : "");
}

static void
expect_err(struct cit_resp *r, int status, const char *code)
{
    char got[64];
    if (r->status != status)
        fail_msg("expected %d, got %d: %s", status, r->status, r->body);
    assert_string_equal(cit_err_code(r, got, sizeof(got)), code);
}

/* create -> the token opens a listener -> get -> list -> renew -> delete -> gone */
static void
test_lifecycle(void **state)
{
    (void)state;
    cit_ctl_start(&C, 0, NULL);
    struct cit_resp r;
    cit_req(&C, 0, "POST", "/api/tunnels", CIT_KEY_A, "{\"local_port\":3000}", NULL, &r);
    if (r.status != 201)
        fail_msg("POST: %d %s", r.status, r.body);
    char *sid = cit_json_str(&r, "session_id");
    char *sub = cit_json_str(&r, "subdomain");
    char *url = cit_json_str(&r, "public_url");
    char *hc = cit_json_str(&r, "hybrid_connection_name");
    char *tok = cit_json_str(&r, "listener_token");
    char *ep = cit_json_str(&r, "relay_endpoint");
    assert_non_null(sid);
    assert_int_equal(strlen(sid), 32);
    assert_non_null(sub);
    assert_true(strlen(sub) >= 8 && strlen(sub) <= 10);
    assert_int_equal(strspn(sub, "0123456789"), strlen(sub));
    char want[128];
    (void)snprintf(want, sizeof(want), "http://%s.localhost:8080", sub);
    assert_string_equal(url, want);
    assert_string_equal(ep, C.c[0].endpoint);
    char *exp = cit_json_str(&r, "expires_at");
    assert_non_null(exp);
    free(exp);
    assert_true(cit_hc_exists(&C, hc));
    cit_resp_free(&r);

    /* the route record the gateway reads */
    char key[128];
    (void)snprintf(key, sizeof(key), "ahg:route:%s", sub);
    char *route = cit_get(&C, key);
    assert_non_null(route);
    cJSON *rj = cJSON_Parse(route);
    assert_string_equal(cJSON_GetObjectItem(rj, "hc")->valuestring, hc);
    assert_string_equal(cJSON_GetObjectItem(rj, "relay")->valuestring, TH_HOST);
    cJSON_Delete(rj);
    free(route);

    /* the token opens a listener on that HC, and only that HC */
    assert_true(cit_listen(&C, hc, tok));
    assert_false(cit_listen(&C, "hc1", tok));

    char path[128];
    sid_path(sid, NULL, path, sizeof(path));
    cit_req(&C, 0, "GET", path, CIT_KEY_A, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_null(cit_json_str(&r, "listener_token"));
    cit_resp_free(&r);
    /* another key does not see it */
    cit_req(&C, 0, "GET", path, CIT_KEY_B, NULL, NULL, &r);
    expect_err(&r, 404, "not_found");
    cit_resp_free(&r);

    cit_req(&C, 0, "GET", "/api/tunnels", CIT_KEY_A, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    cJSON *lj = cJSON_Parse(r.body);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(lj, "tunnels")), 1);
    cJSON_Delete(lj);
    cit_resp_free(&r);

    sid_path(sid, "/token", path, sizeof(path));
    cit_req(&C, 0, "POST", path, CIT_KEY_A, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    char *tok2 = cit_json_str(&r, "listener_token");
    assert_non_null(tok2);
    assert_true(cit_listen(&C, hc, tok2));
    cit_resp_free(&r);

    sid_path(sid, NULL, path, sizeof(path));
    cit_req(&C, 0, "DELETE", path, CIT_KEY_A, NULL, NULL, &r);
    assert_int_equal(r.status, 204);
    cit_resp_free(&r);
    cit_req(&C, 0, "GET", path, CIT_KEY_A, NULL, NULL, &r);
    expect_err(&r, 404, "not_found");
    cit_resp_free(&r);
    assert_null(cit_get(&C, key));
    /* the HC goes away through ARM */
    for (int i = 0; i < 200 && cit_hc_exists(&C, hc); i++)
        th_run(&C.t, 20);
    assert_false(cit_hc_exists(&C, hc));

    free(sid);
    free(sub);
    free(url);
    free(hc);
    free(tok);
    free(tok2);
    free(ep);
    cit_ctl_stop(&C, 0, true);
}

static void
test_auth_and_bad_requests(void **state)
{
    (void)state;
    cit_ctl_start(&C, 0, NULL);
    struct cit_resp r;
    cit_req(&C, 0, "POST", "/api/tunnels", NULL, "{}", NULL, &r);
    expect_err(&r, 401, "unauthorized");
    cit_resp_free(&r);
    cit_req(&C, 0, "GET", "/api/tunnels", "not-a-key", NULL, NULL, &r);
    expect_err(&r, 401, "unauthorized");
    cit_resp_free(&r);
    cit_req(&C, 0, "POST", "/api/tunnels", CIT_KEY_A, "{nope", NULL, &r);
    expect_err(&r, 400, "bad_request");
    cit_resp_free(&r);
    cit_req(&C, 0, "POST", "/api/tunnels", CIT_KEY_A, "{\"ttl\":5}", NULL, &r);
    expect_err(&r, 400, "bad_request");
    cit_resp_free(&r);
    cit_req(&C, 0, "POST", "/api/tunnels", CIT_KEY_A, "{\"local_port\":70000}", NULL, &r);
    expect_err(&r, 400, "bad_request");
    cit_resp_free(&r);
    cit_req(&C, 0, "POST", "/api/tunnels", CIT_KEY_A, "{\"subdomain\":\"-bad-\"}", NULL, &r);
    expect_err(&r, 400, "bad_request");
    cit_resp_free(&r);
    cit_req(&C, 0, "POST", "/api/tunnels", CIT_KEY_A,
            "{\"policy\":{\"allow_cidr\":[\"10.0.0.1/8\"]}}", NULL, &r);
    expect_err(&r, 400, "bad_request");
    cit_resp_free(&r);
    cit_req(&C, 0, "POST", "/api/tunnels", CIT_KEY_A, "{\"policy\":{\"basic_auth\":\"nopass\"}}",
            NULL, &r);
    expect_err(&r, 400, "bad_request");
    cit_resp_free(&r);
    cit_req(&C, 0, "GET", "/api/tunnels/xyz", CIT_KEY_A, NULL, NULL, &r);
    expect_err(&r, 404, "not_found");
    cit_resp_free(&r);
    cit_req(&C, 0, "GET", "/api/tunnels/0123456789abcdef0123456789abcdef", CIT_KEY_A, NULL, NULL,
            &r);
    expect_err(&r, 404, "not_found");
    cit_resp_free(&r);
    cit_req(&C, 0, "PUT", "/api/tunnels", CIT_KEY_A, "{}", NULL, &r);
    expect_err(&r, 405, "method_not_allowed");
    cit_resp_free(&r);
    cit_ctl_stop(&C, 0, true);
}

static void
tweak_cidr(struct ahg_ctl_opts *o)
{
    static const char *const allow[] = {"10.0.0.0/8", NULL};
    static const char *const proxies[] = {"127.0.0.1", NULL};
    o->allow_cidr = allow;
    o->trusted_proxies = proxies;
}

static void
test_cidr_allow_list(void **state)
{
    (void)state;
    cit_ctl_start(&C, 0, tweak_cidr);
    struct cit_resp r;
    /* the peer 127.0.0.1 is a trusted proxy: the address it forwards counts */
    cit_req(&C, 0, "GET", "/api/tunnels", CIT_KEY_A, NULL, NULL, &r);
    expect_err(&r, 403, "forbidden");
    cit_resp_free(&r);
    const char *xff_in[] = {"X-Forwarded-For: 198.51.100.7, 10.1.2.3", NULL};
    cit_req(&C, 0, "GET", "/api/tunnels", CIT_KEY_A, NULL, xff_in, &r);
    assert_int_equal(r.status, 200);
    cit_resp_free(&r);
    const char *xff_out[] = {"X-Forwarded-For: 10.1.2.3, 198.51.100.7", NULL};
    cit_req(&C, 0, "GET", "/api/tunnels", CIT_KEY_A, NULL, xff_out, &r);
    expect_err(&r, 403, "forbidden");
    cit_resp_free(&r);
    cit_ctl_stop(&C, 0, true);
}

static void
tweak_quota(struct ahg_ctl_opts *o)
{
    o->quota = 2;
}

static void
test_subdomains_and_quota(void **state)
{
    (void)state;
    cit_ctl_start(&C, 0, tweak_quota);
    struct cit_resp r;
    cit_req(&C, 0, "POST", "/api/tunnels", CIT_KEY_A,
            "{\"subdomain\":\"MyApp\",\"policy\":{\"basic_auth\":\"alice:s3cret\","
            "\"allow_cidr\":[\"203.0.113.0/24\"]}}",
            NULL, &r);
    if (r.status != 201)
        fail_msg("POST: %d %s", r.status, r.body);
    char *sub = cit_json_str(&r, "subdomain");
    assert_string_equal(sub, "myapp");
    free(sub);
    char *sid1 = cit_json_str(&r, "session_id");
    cit_resp_free(&r);
    char *route = cit_get(&C, "ahg:route:myapp");
    assert_non_null(route);
    assert_null(strstr(route, "s3cret"));
    assert_non_null(strstr(route, "\"user\":\"alice\""));
    assert_non_null(strstr(route, "203.0.113.0/24"));
    free(route);
    /* taken, by anyone */
    cit_req(&C, 0, "POST", "/api/tunnels", CIT_KEY_B, "{\"subdomain\":\"myapp\"}", NULL, &r);
    expect_err(&r, 409, "conflict");
    cit_resp_free(&r);
    cit_req(&C, 0, "POST", "/api/tunnels", CIT_KEY_B, "{\"subdomain\":\"api\"}", NULL, &r);
    expect_err(&r, 409, "conflict");
    cit_resp_free(&r);
    /* the same key takes over its own subdomain whose HC has no listener (a crashed client
     * coming back): the old session is gone, a new one holds the name */
    cit_req(&C, 0, "POST", "/api/tunnels", CIT_KEY_A, "{\"subdomain\":\"myapp\"}", NULL, &r);
    if (r.status != 201)
        fail_msg("take-over: %d %s", r.status, r.body);
    char *sid2 = cit_json_str(&r, "session_id");
    char *hc2 = cit_json_str(&r, "hybrid_connection_name");
    char *tok2 = cit_json_str(&r, "listener_token");
    cit_resp_free(&r);
    assert_string_not_equal(sid1, sid2);
    char path[128];
    sid_path(sid1, NULL, path, sizeof(path));
    cit_req(&C, 0, "GET", path, CIT_KEY_A, NULL, NULL, &r);
    expect_err(&r, 404, "not_found");
    cit_resp_free(&r);
    char subkey[64];
    (void)snprintf(subkey, sizeof(subkey), "ahg:sub:myapp");
    char *holder = cit_get(&C, subkey);
    assert_non_null(holder);
    assert_string_equal(holder, sid2);
    free(holder);
    /* a connected tunnel of the same key is never displaced */
    struct tws lw;
    assert_true(cit_listen_open(&C, &lw, hc2, tok2));
    cit_req(&C, 0, "POST", "/api/tunnels", CIT_KEY_A, "{\"subdomain\":\"myapp\"}", NULL, &r);
    expect_err(&r, 409, "conflict");
    assert_non_null(strstr(r.body, "connected"));
    cit_resp_free(&r);
    tws_free(&lw);
    free(sid1);
    free(sid2);
    free(hc2);
    free(tok2);
    /* quota 2 per key */
    cit_req(&C, 0, "POST", "/api/tunnels", CIT_KEY_A, NULL, NULL, &r);
    assert_int_equal(r.status, 201);
    cit_resp_free(&r);
    cit_req(&C, 0, "POST", "/api/tunnels", CIT_KEY_A, NULL, NULL, &r);
    expect_err(&r, 429, "quota_exceeded");
    cit_resp_free(&r);
    /* the other key has its own */
    cit_req(&C, 0, "POST", "/api/tunnels", CIT_KEY_B, NULL, NULL, &r);
    assert_int_equal(r.status, 201);
    cit_resp_free(&r);
    cit_ctl_stop(&C, 0, true);
}

static void
tweak_pool(struct ahg_ctl_opts *o)
{
    o->pool_size = 2;
    o->arm_wait_ms = 20000;
}

static void
test_warm_pool_with_slow_arm(void **state)
{
    (void)state;
    cit_ctl_start(&C, 0, tweak_pool);
    for (int i = 0; i < 500 && cit_scard(&C, "ahg:pool") < 2; i++)
        th_run(&C.t, 20);
    assert_int_equal(cit_scard(&C, "ahg:pool"), 2);
    C.t.e->lat.arm_ms = 2000;
    struct cit_resp r;
    cit_req(&C, 0, "POST", "/api/tunnels", CIT_KEY_B, NULL, NULL, &r);
    assert_int_equal(r.status, 201);
    char *sid = cit_json_str(&r, "session_id");
    cit_resp_free(&r);
    char key[128];
    (void)snprintf(key, sizeof(key), "ahg:session:%s", sid);
    char *rec = cit_get(&C, key);
    assert_non_null(strstr(rec, "\"pooled\":true"));
    free(rec);
    free(sid);
    C.t.e->lat.arm_ms = 0;
    cit_ctl_stop(&C, 0, true);
}

static void
tweak_fast_fail(struct ahg_ctl_opts *o)
{
    o->arm_retries = 1;
    o->arm_backoff_ms = 10;
}

static void
test_arm_failure_then_recovery(void **state)
{
    (void)state;
    cit_ctl_start(&C, 0, tweak_fast_fail);
    cit_del(&C, "ahg:pool"); /* no warm HC left from before: POST must go to ARM */
    (void)snprintf(C.t.e->fault.method, sizeof(C.t.e->fault.method), "PUT");
    C.t.e->fault.status = 500;
    C.t.e->fault.remaining = 100;
    struct cit_resp r;
    cit_req(&C, 0, "POST", "/api/tunnels", CIT_KEY_B, NULL, NULL, &r);
    C.t.e->fault.remaining = 0;
    expect_err(&r, 503, "unavailable");
    assert_non_null(strstr(r.headers, "Retry-After:"));
    cit_resp_free(&r);
    cit_req(&C, 0, "POST", "/api/tunnels", CIT_KEY_B, NULL, NULL, &r);
    assert_int_equal(r.status, 201);
    cit_resp_free(&r);
    cit_ctl_stop(&C, 0, true);
}

static void
test_relay_key_rotation(void **state)
{
    (void)state;
    cit_ctl_start(&C, 0, NULL);
    struct cit_resp r;
    cit_req(&C, 0, "POST", "/api/tunnels", CIT_KEY_B, NULL, NULL, &r);
    assert_int_equal(r.status, 201);
    char *sid = cit_json_str(&r, "session_id");
    char *hc = cit_json_str(&r, "hybrid_connection_name");
    char *tok = cit_json_str(&r, "listener_token");
    cit_resp_free(&r);
    assert_true(cit_listen(&C, hc, tok));
    /* the operator rotates the primary key */
    struct emu_rule *rule = emu_rule_find(C.t.e, NULL, TH_RULE);
    assert_non_null(rule);
    assert_int_equal(emu_rule_regenerate(rule, true, NULL), AHG_OK);
    assert_false(cit_listen(&C, hc, tok));
    /* the client reports the rejection while renewing: the new token works */
    char path[128];
    sid_path(sid, "/token", path, sizeof(path));
    cit_req(&C, 0, "POST", path, CIT_KEY_B, "{\"rejected\":true}", NULL, &r);
    assert_int_equal(r.status, 200);
    char *tok2 = cit_json_str(&r, "listener_token");
    cit_resp_free(&r);
    assert_true(cit_listen(&C, hc, tok2));
    free(sid);
    free(hc);
    free(tok);
    free(tok2);
    cit_ctl_stop(&C, 0, true);
}

static char keyfile[] = "/tmp/ctl-it-keys-XXXXXX";

static void
tweak_keyfile(struct ahg_ctl_opts *o)
{
    o->api_keys = NULL;
    o->api_keys_path = keyfile;
    o->api_keys_refresh_ms = 100;
}

static void
write_keys(const char *text)
{
    FILE *f = fopen(keyfile, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

static int
status_with(const char *key)
{
    struct cit_resp r;
    cit_req(&C, 0, "GET", "/api/tunnels", key, NULL, NULL, &r);
    int st = r.status;
    cit_resp_free(&r);
    return st;
}

static void
test_keys_from_file_refreshed(void **state)
{
    (void)state;
    int fd = mkstemp(keyfile);
    assert_true(fd >= 0);
    (void)close(fd);
    write_keys("# operators\nfile-key-one\n\n  file-key-two  \n");
    cit_ctl_start(&C, 0, tweak_keyfile);
    assert_int_equal(status_with("file-key-one"), 200);
    assert_int_equal(status_with("file-key-two"), 200);
    assert_int_equal(status_with("# operators"), 401);
    write_keys("file-key-three\n");
    int st = 0;
    for (int i = 0; i < 100 && st != 200; i++) {
        th_run(&C.t, 20);
        st = status_with("file-key-three");
    }
    assert_int_equal(st, 200);
    assert_int_equal(status_with("file-key-one"), 401);
    /* an unreadable file keeps the keys we have */
    assert_int_equal(unlink(keyfile), 0);
    th_run(&C.t, 300);
    assert_int_equal(status_with("file-key-three"), 200);
    cit_ctl_stop(&C, 0, true);
}

static char **heap_reserved;

static void
tweak_heap_reserved(struct ahg_ctl_opts *o)
{
    heap_reserved = calloc(2, sizeof(char *));
    assert_non_null(heap_reserved);
    heap_reserved[0] = strdup("blocked");
    o->reserved = (const char *const *)heap_reserved;
}

/* The controller copies its options: the caller may free them at once (ASan would see a use
 * after free otherwise). */
static void
test_options_copied(void **state)
{
    (void)state;
    cit_ctl_start(&C, 0, tweak_heap_reserved);
    C.c[0].o.reserved = NULL;
    free(heap_reserved[0]);
    free(heap_reserved);
    struct cit_resp r;
    cit_req(&C, 0, "POST", "/api/tunnels", CIT_KEY_A, "{\"subdomain\":\"blocked\"}", NULL, &r);
    expect_err(&r, 409, "conflict");
    assert_non_null(strstr(r.body, "reserved"));
    cit_resp_free(&r);
    cit_ctl_stop(&C, 0, true);
}

static bool
ready_is(void *arg)
{
    return ahg_ctl_ready(C.c[0].ctl) == *(bool *)arg;
}

/* Redis goes away: 503 and not ready; it comes back on the same port: served again. */
static void
test_store_outage_and_recovery(void **state)
{
    (void)state;
    cit_ctl_start(&C, 0, NULL);
    ts_redis_stop(&C.redis);
    bool want = false;
    assert_true(th_wait(&C.t, ready_is, &want, 10000));
    struct cit_resp r;
    cit_req(&C, 0, "POST", "/api/tunnels", CIT_KEY_A, NULL, NULL, &r);
    expect_err(&r, 503, "unavailable");
    assert_non_null(strstr(r.headers, "Retry-After:"));
    cit_resp_free(&r);
    ts_redis_start(&C.redis, C.redis.port, NULL);
    want = true;
    assert_true(th_wait(&C.t, ready_is, &want, 20000));
    cit_req(&C, 0, "POST", "/api/tunnels", CIT_KEY_A, NULL, NULL, &r);
    assert_int_equal(r.status, 201);
    cit_resp_free(&r);
    cit_ctl_stop(&C, 0, true);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_auth_and_bad_requests),
        cmocka_unit_test(test_cidr_allow_list),
        cmocka_unit_test(test_subdomains_and_quota),
        cmocka_unit_test(test_warm_pool_with_slow_arm),
        cmocka_unit_test(test_arm_failure_then_recovery),
        cmocka_unit_test(test_relay_key_rotation),
        cmocka_unit_test(test_keys_from_file_refreshed),
        cmocka_unit_test(test_store_outage_and_recovery),
        cmocka_unit_test(test_options_copied),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
