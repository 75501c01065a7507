/*
 * keyvault.c over HTTPS on 127.0.0.1: secrets loaded from files, the 401 challenge of the
 * Azure SDKs' challenge flow, GET latest/by version, PUT (set secret = new version), list,
 * api-versions, names, bodies, 404 SecretNotFound, and emu_kv_set.
 */
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "emu_mgmt_testlib.h"

static struct emu_fixture *fx;
static char auth_hdr[4096];
static const char *auth[2];
static char file_a[64], file_b[64];

static void
write_file(char *path, const char *tmpl, const char *content)
{
    strcpy(path, tmpl);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
}

static int
setup(void **state)
{
    (void)state;
    write_file(file_a, "/tmp/emu-kv-a-XXXXXX", "relay-key-value\n");
    write_file(file_b, "/tmp/emu-kv-b-XXXXXX", "line1\nline2\r\n");
    char fa[128], fb[128];
    snprintf(fa, sizeof(fa), "--emulator-keyvault-secrets=relay-key=%s", file_a);
    snprintf(fb, sizeof(fb), "--emulator-keyvault-secrets=Multi-Line=%s", file_b);
    const char *flags[] = {"--emulator-identity-header=hdr", fa, fb, NULL};
    fx = emu_fixture_start(flags, true);
    if (!fx)
        return -1;
    const char *h[] = {"X-IDENTITY-HEADER: hdr", NULL};
    struct emu_resp *r =
        emu_get(fx, "/msi/token?api-version=2019-08-01&resource=https://vault.azure.net", h);
    const char *tok = r->status == 200 ? emu_json_str(r->json, "access_token") : NULL;
    if (!tok) {
        emu_resp_free(r);
        return -1;
    }
    snprintf(auth_hdr, sizeof(auth_hdr), "Authorization: Bearer %s", tok);
    emu_resp_free(r);
    auth[0] = auth_hdr;
    auth[1] = NULL;
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    emu_fixture_stop(fx);
    fx = NULL;
    unlink(file_a);
    unlink(file_b);
    return 0;
}

/* Checks a secret bundle and returns its version (copied to ver). */
static void
assert_bundle(const struct emu_resp *r, const char *name, const char *value, char ver[33])
{
    if (r->status != 200)
        fail_msg("status %d: %s", r->status, r->body);
    assert_string_equal(emu_json_str(r->json, "value"), value);
    char re_txt[256];
    snprintf(re_txt, sizeof(re_txt), "^https://127\\.0\\.0\\.1:%d/secrets/%s/([0-9a-f]{32})$",
             fx->port, name);
    regex_t re;
    regmatch_t m[2];
    assert_int_equal(regcomp(&re, re_txt, REG_EXTENDED), 0);
    const char *id = emu_json_str(r->json, "id");
    assert_non_null(id);
    int rc = regexec(&re, id, 2, m, 0);
    regfree(&re);
    if (rc)
        fail_msg("id '%s' does not match '%s'", id, re_txt);
    if (ver) {
        memcpy(ver, id + m[1].rm_so, 32);
        ver[32] = '\0';
    }
    const cJSON *a = emu_json_at(r->json, "attributes");
    assert_true(cJSON_IsTrue(emu_json_at(a, "enabled")));
    assert_true(cJSON_IsNumber(emu_json_at(a, "created")));
    assert_true(cJSON_IsNumber(emu_json_at(a, "updated")));
    long long created = (long long)emu_json_at(a, "created")->valuedouble;
    assert_true(llabs(created - (long long)time(NULL)) < 60);
    assert_string_equal(emu_json_str(a, "recoveryLevel"), "Recoverable+Purgeable");
}

static void
assert_kv_error(struct emu_resp *r, int status, const char *code)
{
    if (r->status != status)
        fail_msg("status %d, want %d: %s", r->status, status, r->body);
    assert_string_equal(emu_json_str(r->json, "error.code"), code);
    assert_non_null(emu_json_str(r->json, "error.message"));
}

static void
test_kv_get_from_files(void **state)
{
    (void)state;
    struct emu_resp *r = emu_get(fx, "/secrets/relay-key?api-version=7.4", auth);
    char v1[33];
    assert_bundle(r, "relay-key", "relay-key-value", v1); /* trailing newline dropped */
    char ct[64];
    assert_true(emu_resp_header(r, "Content-Type", ct, sizeof(ct)));
    assert_string_equal(ct, "application/json; charset=utf-8");
    assert_true(emu_resp_header(r, "x-ms-request-id", ct, sizeof(ct)));
    emu_resp_free(r);
    /* by version, with a trailing slash, names case-insensitive */
    char t[256];
    snprintf(t, sizeof(t), "/secrets/RELAY-KEY/%s?api-version=7.4", v1);
    r = emu_get(fx, t, auth);
    assert_bundle(r, "relay-key", "relay-key-value", NULL);
    emu_resp_free(r);
    r = emu_get(fx, "/secrets/relay-key/?api-version=7.5", auth);
    assert_bundle(r, "relay-key", "relay-key-value", NULL);
    emu_resp_free(r);
    r = emu_get(fx, "/secrets/Multi-Line?api-version=7.6", auth);
    assert_bundle(r, "Multi-Line", "line1\nline2", NULL); /* one CRLF dropped */
    emu_resp_free(r);
    r = emu_get(fx, "/secrets/multi-line?api-version=2025-07-01", auth);
    assert_int_equal(r->status, 200);
    emu_resp_free(r);
}

static void
test_kv_challenge_and_tokens(void **state)
{
    (void)state;
    struct emu_resp *r = emu_get(fx, "/secrets/relay-key?api-version=7.4", NULL);
    assert_kv_error(r, 401, "Unauthorized");
    assert_string_equal(emu_json_str(r->json, "error.message"),
                        "AKV10000: Request is missing a Bearer or PoP token.");
    char www[512], want[512];
    assert_true(emu_resp_header(r, "WWW-Authenticate", www, sizeof(www)));
    snprintf(want, sizeof(want),
             "Bearer authorization=\"https://login.microsoftonline.com/%s\", "
             "resource=\"https://vault.azure.net\"",
             fx->e->identity_tenant);
    assert_string_equal(www, want);
    assert_null(strstr(r->body, "relay-key-value"));
    emu_resp_free(r);

    /* the SDK's first PUT carries no body and no token: same challenge */
    r = emu_http(fx, "PUT", "/secrets/new?api-version=7.4", NULL, NULL, 0);
    assert_kv_error(r, 401, "Unauthorized");
    assert_true(emu_resp_header(r, "WWW-Authenticate", www, sizeof(www)));
    emu_resp_free(r);

    /* an ARM token is for another audience; garbage is refused; both with the challenge */
    char *t = emu_identity_issue(fx->e, "https://management.azure.com", NULL);
    char h[4096];
    snprintf(h, sizeof(h), "Authorization: Bearer %s", t);
    const char *arm[] = {h, NULL};
    r = emu_get(fx, "/secrets/relay-key?api-version=7.4", arm);
    assert_kv_error(r, 401, "Unauthorized");
    assert_non_null(strstr(emu_json_str(r->json, "error.message"), "audience"));
    assert_true(emu_resp_header(r, "WWW-Authenticate", www, sizeof(www)));
    emu_resp_free(r);
    free(t);
    const char *bad[] = {"Authorization: Bearer a.b.c", NULL};
    r = emu_get(fx, "/secrets/relay-key?api-version=7.4", bad);
    assert_kv_error(r, 401, "Unauthorized");
    emu_resp_free(r);
    /* the scope-form token of the SDK ("https://vault.azure.net/.default") is fine */
    t = emu_identity_issue(fx->e, "https://vault.azure.net/.default", NULL);
    snprintf(h, sizeof(h), "Authorization: Bearer %s", t);
    r = emu_get(fx, "/secrets/relay-key?api-version=7.4", arm);
    assert_int_equal(r->status, 200);
    emu_resp_free(r);
    free(t);
}

static void
test_kv_set_versions(void **state)
{
    (void)state;
    const char *h[] = {auth_hdr, "Content-Type: application/json", NULL};
    const char *b1 = "{\"value\":\"first\",\"contentType\":\"text/plain\"}";
    struct emu_resp *r = emu_http(fx, "PUT", "/secrets/rot?api-version=7.4", h, b1, strlen(b1));
    char v1[33], v2[33];
    assert_bundle(r, "rot", "first", v1);
    assert_string_equal(emu_json_str(r->json, "contentType"), "text/plain");
    emu_resp_free(r);
    const char *b2 = "{\"value\":\"second \\u00e9\"}";
    r = emu_http(fx, "PUT", "/secrets/rot?api-version=7.4", h, b2, strlen(b2));
    assert_bundle(r, "rot", "second \xc3\xa9", v2);
    assert_null(emu_json_at(r->json, "contentType"));
    emu_resp_free(r);
    assert_string_not_equal(v1, v2);

    r = emu_get(fx, "/secrets/rot?api-version=7.4", auth);
    assert_bundle(r, "rot", "second \xc3\xa9", NULL); /* latest wins */
    emu_resp_free(r);
    char t[256];
    snprintf(t, sizeof(t), "/secrets/rot/%s?api-version=7.4", v1);
    r = emu_get(fx, t, auth);
    assert_bundle(r, "rot", "first", NULL); /* older versions are kept */
    emu_resp_free(r);

    /* list: ids without versions, no values */
    r = emu_get(fx, "/secrets?api-version=7.4", auth);
    assert_int_equal(r->status, 200);
    const cJSON *v = emu_json_at(r->json, "value");
    assert_int_equal(cJSON_GetArraySize(v), 3);
    assert_null(strstr(r->body, "\"value\":\"first\""));
    assert_null(strstr(r->body, "relay-key-value"));
    assert_true(cJSON_IsNull(emu_json_at(r->json, "nextLink")));
    emu_resp_free(r);
}

static void
test_kv_errors(void **state)
{
    (void)state;
    struct emu_resp *r = emu_get(fx, "/secrets/nope?api-version=7.4", auth);
    assert_kv_error(r, 404, "SecretNotFound");
    assert_string_equal(emu_json_str(r->json, "error.message"),
                        "A secret with (name/id) nope was not found in this key vault. If you "
                        "recently deleted this secret you may be able to recover it using the "
                        "correct recovery command. For help resolving this issue, please see "
                        "https://go.microsoft.com/fwlink/?linkid=2125182");
    emu_resp_free(r);
    r = emu_get(fx, "/secrets/relay-key/0123456789abcdef0123456789abcdef?api-version=7.4", auth);
    assert_kv_error(r, 404, "SecretNotFound");
    assert_non_null(strstr(emu_json_str(r->json, "error.message"),
                           "relay-key/0123456789abcdef0123456789abcdef"));
    emu_resp_free(r);
    r = emu_get(fx, "/secrets/relay-key", auth);
    assert_kv_error(r, 400, "BadParameter");
    emu_resp_free(r);
    r = emu_get(fx, "/secrets/relay-key?api-version=9.9", auth);
    assert_kv_error(r, 400, "BadParameter");
    emu_resp_free(r);
    r = emu_get(fx, "/secrets/bad_name?api-version=7.4", auth);
    assert_kv_error(r, 400, "BadParameter");
    assert_string_equal(emu_json_str(r->json, "error.message"),
                        "The request URI contains an invalid name: bad_name");
    emu_resp_free(r);
    r = emu_get(fx, "/secrets/a/b/c?api-version=7.4", auth);
    assert_int_equal(r->status, 404);
    emu_resp_free(r);
    r = emu_http(fx, "DELETE", "/secrets/relay-key?api-version=7.4", auth, NULL, 0);
    assert_kv_error(r, 405, "MethodNotAllowed");
    emu_resp_free(r);

    const char *h[] = {auth_hdr, "Content-Type: application/json", NULL};
    r = emu_http(fx, "PUT", "/secrets/x?api-version=7.4", h, "{\"val\":1}", 9);
    assert_kv_error(r, 400, "BadParameter");
    emu_resp_free(r);
    r = emu_http(fx, "PUT", "/secrets/x?api-version=7.4", h, "nope", 4);
    assert_kv_error(r, 400, "BadParameter");
    emu_resp_free(r);
    r = emu_http(fx, "PUT", "/secrets/x?api-version=7.4", h, "{\"value\":5}", 11);
    assert_kv_error(r, 400, "BadParameter");
    emu_resp_free(r);
    /* values over 25 KiB, bodies over 64 KiB */
    size_t n = 26 * 1024;
    char *b = malloc(n + 32);
    strcpy(b, "{\"value\":\"");
    memset(b + 10, 'v', n);
    strcpy(b + 10 + n, "\"}");
    r = emu_http(fx, "PUT", "/secrets/x?api-version=7.4", h, b, strlen(b));
    assert_kv_error(r, 400, "BadParameter");
    emu_resp_free(r);
    free(b);
    n = 70 * 1024;
    b = malloc(n + 32);
    strcpy(b, "{\"value\":\"");
    memset(b + 10, 'v', n);
    strcpy(b + 10 + n, "\"}");
    r = emu_http(fx, "PUT", "/secrets/x?api-version=7.4", h, b, strlen(b));
    assert_kv_error(r, 413, "RequestTooLarge");
    emu_resp_free(r);
    free(b);
    /* nothing was created by the failures */
    r = emu_get(fx, "/secrets/x?api-version=7.4", auth);
    assert_kv_error(r, 404, "SecretNotFound");
    emu_resp_free(r);
    /* not a Key Vault path */
    r = emu_get(fx, "/secretsx?api-version=7.4", auth);
    assert_int_equal(r->status, 404);
    assert_string_equal(emu_json_str(r->json, "error.code"), "NotFound"); /* the router's */
    emu_resp_free(r);
}

static void
kv_set_on_loop(void *arg)
{
    int *rc = arg;
    rc[0] = emu_kv_set(fx->e, "direct", "v1");
    rc[1] = emu_kv_set(fx->e, "bad name", "v");
    rc[2] = emu_kv_set(fx->e, "direct", "v2");
}

static void
test_kv_set_api(void **state)
{
    (void)state;
    int rc[3] = {1, 1, 1};
    emu_test_on_loop(fx, kv_set_on_loop, rc);
    assert_int_equal(rc[0], AHG_OK);
    assert_int_equal(rc[1], AHG_EINVAL);
    assert_int_equal(rc[2], AHG_OK);
    struct emu_resp *r = emu_get(fx, "/secrets/direct?api-version=7.4", auth);
    assert_bundle(r, "direct", "v2", NULL);
    emu_resp_free(r);
}

static void
test_kv_bad_options(void **state)
{
    (void)state;
    const char *missing[] = {"--emulator-keyvault-secrets=a=/nonexistent/file", NULL};
    assert_null(emu_test_new(NULL, missing));
    const char *noeq[] = {"--emulator-keyvault-secrets=just-a-name", NULL};
    assert_null(emu_test_new(NULL, noeq));
    char path[64], flag[128];
    write_file(path, "/tmp/emu-kv-c-XXXXXX", "v");
    snprintf(flag, sizeof(flag), "--emulator-keyvault-secrets=bad_name=%s", path);
    const char *badname[] = {flag, NULL};
    assert_null(emu_test_new(NULL, badname));
    unlink(path);
    /* 25 KiB is the limit */
    strcpy(path, "/tmp/emu-kv-d-XXXXXX");
    int fd = mkstemp(path);
    char *big = calloc(1, 25 * 1024 + 1);
    memset(big, 'x', 25 * 1024 + 1);
    assert_int_equal(write(fd, big, 25 * 1024 + 1), 25 * 1024 + 1);
    close(fd);
    snprintf(flag, sizeof(flag), "--emulator-keyvault-secrets=big=%s", path);
    const char *toobig[] = {flag, NULL};
    assert_null(emu_test_new(NULL, toobig));
    assert_int_equal(truncate(path, 25 * 1024), 0);
    struct emu *e = emu_test_new(NULL, toobig);
    assert_non_null(e);
    emu_test_free(e);
    unlink(path);
    free(big);
}

int
main(void)
{
    ahg_log_setup("test", AHG_LOG_FORMAT_TEXT, AHG_LOG_LVL_ERROR, 2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kv_get_from_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kv_challenge_and_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kv_set_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kv_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kv_set_api, setup, teardown),
        cmocka_unit_test(test_kv_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
