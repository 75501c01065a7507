/*
 * auth.c: every success and failure path of emu_auth_check with the service's statuses and
 * description texts (SAS: missing, malformed, signature, unknown rule, expiry, audience,
 * rights, HC-level rules, regenerated keys; JWT: valid, tampered, expired, wrong audience,
 * role rights), the description suffix, and emu_auth_expiry.
 */
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "ahg/sas.h"
#include "emu_mgmt_testlib.h"

#define HOST "ahg-local.servicebus.windows.net"

static struct emu *e;

static int
setup(void **state)
{
    (void)state;
    const char *flags[] = {"--emulator-hybrid-connections=hyco",
                           "--emulator-hybrid-connections=open:noauth",
                           "--emulator-hybrid-connections=tenants/a", NULL};
    e = emu_test_new(NULL, flags);
    if (!e)
        return -1;
    int err = 0;
    emu_rule_put(e, NULL, "sendonly", EMU_RIGHT_SEND, &err);
    emu_rule_put(e, NULL, "listenonly", EMU_RIGHT_LISTEN, &err);
    emu_rule_put(e, emu_hc_find(e, "hyco"), "hcrule", EMU_RIGHT_LISTEN, &err);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    emu_test_free(e);
    e = NULL;
    return 0;
}

/* A SAS token for resource signed with rule's primary (or secondary) key. */
static void
sas(char *out, const char *resource, const struct emu_rule *r, bool secondary, long long se)
{
    assert_int_equal(ahg_sas_create(resource, r->name, secondary ? r->secondary : r->primary, se,
                                    out, AHG_SAS_MAX + 1),
                     AHG_OK);
}

static struct emu_rule *
root(void)
{
    return emu_rule_find(e, NULL, "RootManageSharedAccessKey");
}

static long long
now_s(void)
{
    return (long long)time(NULL);
}

/* desc == msg + ". "/" " + the tracking suffix for path. */
static void
assert_desc(const struct emu_auth_result *res, const char *msg, const char *path)
{
    char re_txt[1024];
    snprintf(re_txt, sizeof(re_txt),
             "^%s TrackingId:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}_G"
             "[0-9]+, SystemTracker:sb://" HOST
             "/%s, Timestamp:[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:"
             "[0-9]{2}:[0-9]{2}$",
             msg, path);
    regex_t re;
    assert_int_equal(regcomp(&re, re_txt, REG_EXTENDED | REG_NOSUB), 0);
    int m = regexec(&re, res->desc, 0, NULL, 0);
    regfree(&re);
    if (m != 0)
        fail_msg("description '%s' does not match '%s'", res->desc, re_txt);
}

static void
test_auth_sas_valid(void **state)
{
    (void)state;
    char tok[AHG_SAS_MAX + 1];
    struct emu_auth_result res;
    struct emu_hc *hyco = emu_hc_find(e, "hyco");
    uint64_t fails = e->m_auth_failures;
    sas(tok, "http://" HOST "/hyco", root(), false, now_s() + 600);
    assert_true(emu_auth_check(e, tok, NULL, hyco, "hyco", EMU_RIGHT_LISTEN, &res));
    assert_int_equal(res.status, 0);
    assert_string_equal(res.desc, "");
    assert_true(emu_auth_check(e, tok, NULL, hyco, "hyco/sub/path", EMU_RIGHT_SEND, &res));
    /* the secondary key is as good as the primary */
    sas(tok, "http://" HOST "/hyco", root(), true, now_s() + 600);
    assert_true(emu_auth_check(e, tok, NULL, hyco, "hyco", EMU_RIGHT_LISTEN, &res));
    /* namespace-wide audience, sb:// scheme, hyco's createRelayToken form with $hc and a port */
    sas(tok, "http://" HOST "/", root(), false, now_s() + 600);
    assert_true(emu_auth_check(e, tok, NULL, hyco, "hyco", EMU_RIGHT_LISTEN, &res));
    sas(tok, "sb://" HOST "/hyco", root(), false, now_s() + 600);
    assert_true(emu_auth_check(e, tok, NULL, hyco, "hyco", EMU_RIGHT_LISTEN, &res));
    sas(tok, "https://" HOST ":443/$hc/hyco", root(), false, now_s() + 600);
    assert_true(emu_auth_check(e, tok, NULL, hyco, "hyco", EMU_RIGHT_LISTEN, &res));
    /* signed for the Host the client used (local emulator URLs) */
    sas(tok, "http://127.0.0.1:9911/hyco", root(), false, now_s() + 600);
    assert_true(emu_auth_check(e, tok, "127.0.0.1:9911", hyco, "hyco", EMU_RIGHT_LISTEN, &res));
    /* with leading whitespace, as some clients send it */
    char spaced[AHG_SAS_MAX + 8];
    snprintf(spaced, sizeof(spaced), "  %s", tok);
    assert_true(emu_auth_check(e, spaced, "127.0.0.1:9911", hyco, "hyco", EMU_RIGHT_SEND, &res));
    /* an HC whose name has a '/' and a token for its parent path */
    sas(tok, "http://" HOST "/tenants", root(), false, now_s() + 600);
    assert_true(emu_auth_check(e, tok, NULL, emu_hc_find(e, "tenants/a"), "tenants/a",
                               EMU_RIGHT_LISTEN, &res));
    assert_int_equal(e->m_auth_failures, fails);
}

static void
test_auth_missing_and_anonymous(void **state)
{
    (void)state;
    struct emu_auth_result res;
    struct emu_hc *hyco = emu_hc_find(e, "hyco"), *open = emu_hc_find(e, "open");
    uint64_t fails = e->m_auth_failures;
    assert_false(emu_auth_check(e, NULL, NULL, hyco, "hyco", EMU_RIGHT_SEND, &res));
    assert_int_equal(res.status, 401);
    assert_desc(&res, "MissingToken: The authorization header was not found\\.", "hyco");
    assert_false(emu_auth_check(e, "   ", NULL, hyco, "hyco/x", EMU_RIGHT_LISTEN, &res));
    assert_int_equal(res.status, 401);
    assert_desc(&res, "MissingToken: The authorization header was not found\\.", "hyco/x");
    /* requiresClientAuthorization false: senders need nothing, listeners still do */
    assert_true(emu_auth_check(e, NULL, NULL, open, "open", EMU_RIGHT_SEND, &res));
    assert_int_equal(res.status, 0);
    assert_true(emu_auth_check(e, "SharedAccessSignature garbage", NULL, open, "open",
                               EMU_RIGHT_SEND, &res)); /* not even evaluated */
    assert_false(emu_auth_check(e, NULL, NULL, open, "open", EMU_RIGHT_LISTEN, &res));
    assert_int_equal(res.status, 401);
    assert_int_equal(e->m_auth_failures, fails + 3);
}

static void
test_auth_malformed(void **state)
{
    (void)state;
    struct emu_auth_result res;
    struct emu_hc *hyco = emu_hc_find(e, "hyco");
    const char *bad[] = {"SharedAccessSignature garbage",
                         "SharedAccessSignature sr=x&sig=y",
                         "Basic dXNlcjpwYXNz",
                         "foo",
                         "a.b",
                         "a.b.c.d",
                         "Bearer",
                         NULL};
    for (size_t i = 0; bad[i]; i++) {
        assert_false(emu_auth_check(e, bad[i], NULL, hyco, "hyco", EMU_RIGHT_SEND, &res));
        assert_int_equal(res.status, 401);
        assert_desc(&res,
                    "MalformedToken: The credentials contained in the authorization header are "
                    "not in the WRAP format\\.",
                    "hyco");
    }
}

static void
test_auth_bad_signature_and_rule(void **state)
{
    (void)state;
    char tok[AHG_SAS_MAX + 1];
    struct emu_auth_result res;
    struct emu_hc *hyco = emu_hc_find(e, "hyco");
    /* wrong key */
    assert_int_equal(ahg_sas_create("http://" HOST "/hyco", "RootManageSharedAccessKey",
                                    "XmNd2Wq7Lr4Tz9Pb1Vc6Ys3Hf8Jk0Ga5Ue2Io7Rw4Q=", now_s() + 600,
                                    tok, sizeof(tok)),
                     AHG_OK);
    assert_false(emu_auth_check(e, tok, NULL, hyco, "hyco", EMU_RIGHT_LISTEN, &res));
    assert_int_equal(res.status, 401);
    assert_desc(&res, "The token has an invalid signature\\.", "hyco");
    /* unknown key name */
    assert_int_equal(ahg_sas_create("http://" HOST "/hyco", "NoSuchRule", root()->primary,
                                    now_s() + 600, tok, sizeof(tok)),
                     AHG_OK);
    assert_false(emu_auth_check(e, tok, NULL, hyco, "hyco", EMU_RIGHT_LISTEN, &res));
    assert_int_equal(res.status, 401);
    assert_desc(&res, "The token has an invalid signature\\.", "hyco");
    /* tampered se: still a signature failure, even though it is also in the past */
    sas(tok, "http://" HOST "/hyco", root(), false, now_s() + 600);
    char *se = strstr(tok, "&se=");
    assert_non_null(se);
    se[4] = se[4] == '1' ? '2' : '1';
    assert_false(emu_auth_check(e, tok, NULL, hyco, "hyco", EMU_RIGHT_LISTEN, &res));
    assert_desc(&res, "The token has an invalid signature\\.", "hyco");
    /* tampered sr (audience widened to the namespace) */
    sas(tok, "http://" HOST "/hyco", root(), false, now_s() + 600);
    char *hy = strstr(tok, "%2Fhyco&");
    assert_non_null(hy);
    memmove(hy + 3, hy + 7, strlen(hy + 7) + 1); /* "%2Fhyco&" -> "%2F&" */
    assert_false(emu_auth_check(e, tok, NULL, hyco, "hyco", EMU_RIGHT_LISTEN, &res));
    assert_desc(&res, "The token has an invalid signature\\.", "hyco");
}

static void
test_auth_expired(void **state)
{
    (void)state;
    char tok[AHG_SAS_MAX + 1];
    struct emu_auth_result res;
    struct emu_hc *hyco = emu_hc_find(e, "hyco");
    sas(tok, "http://" HOST "/hyco", root(), false, 1700000000);
    assert_false(emu_auth_check(e, tok, NULL, hyco, "hyco", EMU_RIGHT_LISTEN, &res));
    assert_int_equal(res.status, 401);
    assert_desc(&res,
                "ExpiredToken: The token is expired\\. Expiration time: '2023-11-14 22:13:20Z'\\.",
                "hyco");
    assert_int_equal(emu_auth_expiry(tok), 0);
    sas(tok, "http://" HOST "/hyco", root(), false, now_s() + 100);
    long long left = emu_auth_expiry(tok);
    assert_true(left >= 98 && left <= 100);
    assert_int_equal(emu_auth_expiry("SharedAccessSignature nope"), -1);
    assert_int_equal(emu_auth_expiry("nope"), -1);
    assert_int_equal(emu_auth_expiry(NULL), -1);
}

static void
test_auth_wrong_audience(void **state)
{
    (void)state;
    char tok[AHG_SAS_MAX + 1];
    struct emu_auth_result res;
    struct emu_hc *hyco = emu_hc_find(e, "hyco");
    const char *auds[] = {"http://" HOST "/other", "http://other.servicebus.windows.net/hyco",
                          "http://" HOST "/hy",    "http://" HOST "/hyco/deeper",
                          "ftp://" HOST "/hyco",   NULL};
    for (size_t i = 0; auds[i]; i++) {
        sas(tok, auds[i], root(), false, now_s() + 600);
        assert_false(
            emu_auth_check(e, tok, "127.0.0.1:9911", hyco, "hyco", EMU_RIGHT_LISTEN, &res));
        assert_int_equal(res.status, 401);
        assert_desc(&res,
                    "InvalidAudience: The authorization header contains a token with a wrong "
                    "audience\\.",
                    "hyco");
    }
    /* a token for one sub-path does not cover another */
    sas(tok, "http://" HOST "/hyco/a", root(), false, now_s() + 600);
    assert_true(emu_auth_check(e, tok, NULL, hyco, "hyco/a/b", EMU_RIGHT_SEND, &res));
    assert_false(emu_auth_check(e, tok, NULL, hyco, "hyco/b", EMU_RIGHT_SEND, &res));
    assert_int_equal(res.status, 401);
}

static void
test_auth_rights(void **state)
{
    (void)state;
    char tok[AHG_SAS_MAX + 1];
    struct emu_auth_result res;
    struct emu_hc *hyco = emu_hc_find(e, "hyco");
    sas(tok, "http://" HOST "/hyco", emu_rule_find(e, NULL, "sendonly"), false, now_s() + 600);
    assert_true(emu_auth_check(e, tok, NULL, hyco, "hyco", EMU_RIGHT_SEND, &res));
    assert_false(emu_auth_check(e, tok, NULL, hyco, "hyco", EMU_RIGHT_LISTEN, &res));
    assert_int_equal(res.status, 403);
    assert_desc(&res,
                "Unauthorized access\\. 'Listen' claim\\(s\\) are required to perform this "
                "operation\\. Resource: 'sb://" HOST "/hyco'\\.",
                "hyco");
    sas(tok, "http://" HOST "/hyco", emu_rule_find(e, NULL, "listenonly"), false, now_s() + 600);
    assert_true(emu_auth_check(e, tok, NULL, hyco, "hyco", EMU_RIGHT_LISTEN, &res));
    assert_false(emu_auth_check(e, tok, NULL, hyco, "hyco", EMU_RIGHT_SEND, &res));
    assert_int_equal(res.status, 403);
    assert_non_null(strstr(res.desc, "'Send' claim(s) are required"));
    /* Manage implies Listen and Send */
    int err = 0;
    emu_rule_put(e, NULL, "manageonly", EMU_RIGHT_MANAGE, &err);
    sas(tok, "http://" HOST "/hyco", emu_rule_find(e, NULL, "manageonly"), false, now_s() + 600);
    assert_true(emu_auth_check(e, tok, NULL, hyco, "hyco", EMU_RIGHT_LISTEN, &res));
    assert_true(emu_auth_check(e, tok, NULL, hyco, "hyco", EMU_RIGHT_SEND, &res));
    emu_rule_delete(e, NULL, "manageonly");
    /* a deleted rule no longer validates */
    assert_false(emu_auth_check(e, tok, NULL, hyco, "hyco", EMU_RIGHT_SEND, &res));
    assert_int_equal(res.status, 401);
}

static void
test_auth_hc_level_rule(void **state)
{
    (void)state;
    char tok[AHG_SAS_MAX + 1];
    struct emu_auth_result res;
    struct emu_hc *hyco = emu_hc_find(e, "hyco"), *other = emu_hc_find(e, "tenants/a");
    struct emu_rule *r = emu_rule_find(e, hyco, "hcrule");
    assert_non_null(r);
    sas(tok, "http://" HOST "/hyco", r, false, now_s() + 600);
    assert_true(emu_auth_check(e, tok, NULL, hyco, "hyco", EMU_RIGHT_LISTEN, &res));
    assert_false(emu_auth_check(e, tok, NULL, hyco, "hyco", EMU_RIGHT_SEND, &res));
    assert_int_equal(res.status, 403);
    /* the rule does not exist on another HC, nor at namespace level */
    sas(tok, "http://" HOST "/tenants/a", r, false, now_s() + 600);
    assert_false(emu_auth_check(e, tok, NULL, other, "tenants/a", EMU_RIGHT_LISTEN, &res));
    assert_int_equal(res.status, 401);
    assert_desc(&res, "The token has an invalid signature\\.", "tenants/a");
}

static void
test_auth_regenerated_key_invalidates(void **state)
{
    (void)state;
    char tok[AHG_SAS_MAX + 1], tok2[AHG_SAS_MAX + 1];
    struct emu_auth_result res;
    struct emu_hc *hyco = emu_hc_find(e, "hyco");
    sas(tok, "http://" HOST "/hyco", root(), false, now_s() + 600);
    sas(tok2, "http://" HOST "/hyco", root(), true, now_s() + 600);
    assert_true(emu_auth_check(e, tok, NULL, hyco, "hyco", EMU_RIGHT_LISTEN, &res));
    assert_int_equal(emu_rule_regenerate(root(), true, NULL), AHG_OK);
    assert_false(emu_auth_check(e, tok, NULL, hyco, "hyco", EMU_RIGHT_LISTEN, &res));
    assert_int_equal(res.status, 401);
    assert_desc(&res, "The token has an invalid signature\\.", "hyco");
    /* tokens of the untouched secondary key stay valid; new primary tokens work */
    assert_true(emu_auth_check(e, tok2, NULL, hyco, "hyco", EMU_RIGHT_LISTEN, &res));
    sas(tok, "http://" HOST "/hyco", root(), false, now_s() + 600);
    assert_true(emu_auth_check(e, tok, NULL, hyco, "hyco", EMU_RIGHT_LISTEN, &res));
}

static void
test_auth_jwt(void **state)
{
    (void)state;
    struct emu_auth_result res;
    struct emu_hc *hyco = emu_hc_find(e, "hyco");
    long long exp = 0;
    char *jwt = emu_identity_issue(e, "https://relay.azure.net/", &exp);
    assert_non_null(jwt);
    assert_true(emu_auth_check(e, jwt, NULL, hyco, "hyco", EMU_RIGHT_LISTEN, &res));
    assert_true(emu_auth_check(e, jwt, NULL, hyco, "hyco", EMU_RIGHT_SEND, &res));
    char bearer[4096];
    snprintf(bearer, sizeof(bearer), "Bearer %s", jwt);
    assert_true(emu_auth_check(e, bearer, NULL, hyco, "hyco", EMU_RIGHT_SEND, &res));
    long long left = emu_auth_expiry(jwt);
    assert_true(left > 3500 && left <= 3600);
    assert_int_equal(emu_auth_expiry(bearer), left);

    /* tampered signature */
    size_t n = strlen(jwt);
    jwt[n - 2] = jwt[n - 2] == 'A' ? 'B' : 'A';
    assert_false(emu_auth_check(e, jwt, NULL, hyco, "hyco", EMU_RIGHT_LISTEN, &res));
    assert_int_equal(res.status, 401);
    assert_desc(&res, "The token has an invalid signature\\.", "hyco");
    free(jwt);

    /* a token for another resource */
    jwt = emu_identity_issue(e, "https://management.azure.com/", &exp);
    assert_false(emu_auth_check(e, jwt, NULL, hyco, "hyco", EMU_RIGHT_LISTEN, &res));
    assert_int_equal(res.status, 401);
    assert_desc(&res,
                "InvalidAudience: The authorization header contains a token with a wrong "
                "audience\\.",
                "hyco");
    free(jwt);

    /* expired */
    uint64_t life = e->token_lifetime_s;
    e->token_lifetime_s = 0;
    jwt = emu_identity_issue(e, "https://relay.azure.net", &exp);
    e->token_lifetime_s = life;
    assert_false(emu_auth_check(e, jwt, NULL, hyco, "hyco", EMU_RIGHT_LISTEN, &res));
    assert_int_equal(res.status, 401);
    assert_desc(&res, "ExpiredToken: The token is expired\\. Expiration time: '[0-9: -]+Z'\\.",
                "hyco");
    free(jwt);

    /* roles: a Listener cannot send */
    unsigned rights = e->identity_relay_rights;
    e->identity_relay_rights = EMU_RIGHT_LISTEN;
    jwt = emu_identity_issue(e, "https://relay.azure.net//.default", &exp);
    e->identity_relay_rights = rights;
    assert_true(emu_auth_check(e, jwt, NULL, hyco, "hyco", EMU_RIGHT_LISTEN, &res));
    assert_false(emu_auth_check(e, jwt, NULL, hyco, "hyco", EMU_RIGHT_SEND, &res));
    assert_int_equal(res.status, 403);
    assert_non_null(strstr(res.desc, "'Send' claim(s) are required"));
    free(jwt);
}

static void
test_auth_describe(void **state)
{
    (void)state;
    struct emu_auth_result res;
    emu_auth_describe(e, "Endpoint does not exist.", "/$hc/nope", res.desc, sizeof(res.desc));
    assert_desc(&res, "Endpoint does not exist\\.", "\\$hc/nope");
    emu_auth_describe(e, "no period", "x", res.desc, sizeof(res.desc));
    assert_desc(&res, "no period\\.", "x");
    char small[16];
    emu_auth_describe(e, "a long message that does not fit", "x", small, sizeof(small));
    assert_int_equal(strlen(small), sizeof(small) - 1);
}

int
main(void)
{
    ahg_log_setup("test", AHG_LOG_FORMAT_TEXT, AHG_LOG_LVL_ERROR, 2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_auth_sas_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_missing_and_anonymous, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_bad_signature_and_rule, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_expired, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_wrong_audience, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_rights, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_hc_level_rule, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_regenerated_key_invalidates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_jwt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_describe, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
