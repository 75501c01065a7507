/*
 * arm.c over HTTPS on 127.0.0.1 (the fixture CA is verified): bearer-token checks, api-version,
 * hybrid connections (PUT/GET/DELETE/list with paging), namespace and HC authorization rules,
 * listKeys/regenerateKeys (and that a regenerated key invalidates old SAS tokens), the
 * namespace itself, name/body validation, 404/405/413 answers, headers, fault injection and
 * the ARM latency including a client that leaves before its delayed answer.
 * JSON shapes are checked member by member with cJSON (hc-protocol.md 8.2-8.5).
 */
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "ahg/sas.h"
#include "emu_mgmt_testlib.h"

#define SUB  "11111111-2222-3333-4444-555555555555"
#define RG   "rg-emu"
#define NS   "relay-emu"
#define HOST "relay-emu.servicebus.windows.net"
#define P    "/subscriptions/" SUB "/resourceGroups/" RG "/providers/Microsoft.Relay/namespaces/" NS
#define ID   "/subscriptions/" SUB "/resourceGroups/" RG "/providers/Microsoft.Relay/namespaces/" NS
#define V    "?api-version=2021-11-01"

static struct emu_fixture *fx;
static char auth_hdr[4096];      /* "Authorization: Bearer <ARM token>" */
static const char *auth[3];      /* {auth_hdr, NULL} */
static const char *auth_json[4]; /* + Content-Type */

static int
setup(void **state)
{
    (void)state;
    const char *flags[] = {"--emulator-namespace=" NS,          "--emulator-subscription=" SUB,
                           "--emulator-resource-group=" RG,     "--emulator-identity-header=hdr",
                           "--emulator-hybrid-connections=pre", NULL};
    fx = emu_fixture_start(flags, true);
    if (!fx)
        return -1;
    /* a real token from the identity endpoint on the same (TLS) port */
    const char *h[] = {"X-IDENTITY-HEADER: hdr", NULL};
    struct emu_resp *r =
        emu_get(fx, "/msi/token?api-version=2019-08-01&resource=https://management.azure.com", h);
    const char *tok = r->status == 200 ? emu_json_str(r->json, "access_token") : NULL;
    if (!tok) {
        emu_resp_free(r);
        return -1;
    }
    snprintf(auth_hdr, sizeof(auth_hdr), "Authorization: Bearer %s", tok);
    emu_resp_free(r);
    auth[0] = auth_hdr;
    auth[1] = NULL;
    auth_json[0] = auth_hdr;
    auth_json[1] = "Content-Type: application/json; charset=utf-8";
    auth_json[2] = NULL;
    emu_test_listener_count = 0;
    emu_test_deleted_calls = 0;
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    emu_fixture_stop(fx);
    fx = NULL;
    return 0;
}

static struct emu_resp *
arm(const char *method, const char *target, const char *body)
{
    return emu_http(fx, method, target, body ? auth_json : auth, body, body ? strlen(body) : 0);
}

static void
assert_arm_error(struct emu_resp *r, int status, const char *code)
{
    if (r->status != status)
        fail_msg("status %d, want %d; body %s", r->status, status, r->body);
    const char *c = emu_json_str(r->json, "error.code");
    assert_non_null(c);
    assert_string_equal(c, code);
    assert_non_null(emu_json_str(r->json, "error.message"));
}

static void
assert_iso7(const char *ts)
{
    regex_t re;
    assert_int_equal(regcomp(&re,
                             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{7}Z$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    assert_non_null(ts);
    int m = regexec(&re, ts, 0, NULL, 0);
    regfree(&re);
    if (m)
        fail_msg("'%s' is not ISO-8601 with 7 fractional digits", ts);
}

/* ---- authentication and api-version ---- */

static void
test_arm_auth(void **state)
{
    (void)state;
    char www[512];
    struct emu_resp *r = emu_get(fx, P V, NULL);
    assert_arm_error(r, 401, "AuthenticationFailed");
    assert_string_equal(emu_json_str(r->json, "error.message"),
                        "Authentication failed. The 'Authorization' header is missing.");
    assert_true(emu_resp_header(r, "WWW-Authenticate", www, sizeof(www)));
    assert_string_equal(www, "Bearer authorization_uri=\"https://login.windows.net/\", "
                             "error=\"invalid_token\", error_description=\"The authentication "
                             "failed because of missing 'Authorization' header.\"");
    emu_resp_free(r);

    const char *basic[] = {"Authorization: Basic dXNlcjpwYXNz", NULL};
    r = emu_get(fx, P V, basic);
    assert_arm_error(r, 401, "AuthenticationFailed");
    emu_resp_free(r);

    const char *garbage[] = {"Authorization: Bearer abc.def.ghi", NULL};
    r = emu_get(fx, P V, garbage);
    assert_arm_error(r, 401, "InvalidAuthenticationToken");
    assert_string_equal(emu_json_str(r->json, "error.message"), "The access token is invalid.");
    assert_true(emu_resp_header(r, "WWW-Authenticate", www, sizeof(www)));
    assert_non_null(strstr(www, "error=\"invalid_token\""));
    emu_resp_free(r);

    /* a relay token is for another audience */
    char *t = emu_identity_issue(fx->e, "https://relay.azure.net", NULL);
    char h[4096];
    snprintf(h, sizeof(h), "Authorization: Bearer %s", t);
    const char *relay[] = {h, NULL};
    r = emu_get(fx, P V, relay);
    assert_arm_error(r, 401, "InvalidAuthenticationTokenAudience");
    emu_resp_free(r);
    free(t);

    /* expired (properly signed) */
    char pl[200];
    snprintf(pl, sizeof(pl), "{\"aud\":\"https://management.azure.com/\",\"exp\":%lld}",
             (long long)time(NULL) - 10);
    t = emu_jwt_forge(fx->e->jwt_secret, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", pl);
    snprintf(h, sizeof(h), "Authorization: Bearer %s", t);
    r = emu_get(fx, P V, relay);
    assert_arm_error(r, 401, "ExpiredAuthenticationToken");
    assert_non_null(
        strstr(emu_json_str(r->json, "error.message"), "is earlier than current UTC time"));
    emu_resp_free(r);
    free(t);

    /* the classic ARM audience is accepted */
    t = emu_identity_issue(fx->e, "https://management.core.windows.net/", NULL);
    snprintf(h, sizeof(h), "Authorization: Bearer %s", t);
    r = emu_get(fx, P V, relay);
    assert_int_equal(r->status, 200);
    emu_resp_free(r);
    free(t);
}

static void
test_arm_api_version(void **state)
{
    (void)state;
    struct emu_resp *r = arm("GET", P, NULL);
    assert_arm_error(r, 400, "MissingApiVersionParameter");
    assert_string_equal(emu_json_str(r->json, "error.message"),
                        "The api-version query parameter (?api-version=) is required for all "
                        "requests.");
    emu_resp_free(r);
    r = arm("GET", P "?api-version=2099-01-01", NULL);
    assert_arm_error(r, 400, "NoRegisteredProviderFound");
    assert_non_null(strstr(emu_json_str(r->json, "error.message"), "2021-11-01"));
    emu_resp_free(r);
    const char *ok[] = {"2016-07-01", "2017-04-01", "2021-11-01", "2024-01-01"};
    for (size_t i = 0; i < 4; i++) {
        char t[512];
        snprintf(t, sizeof(t), "%s?api-version=%s", P, ok[i]);
        r = arm("GET", t, NULL);
        assert_int_equal(r->status, 200);
        emu_resp_free(r);
    }
}

/* ---- hybrid connections ---- */

static void
assert_hc_json(const cJSON *j, const char *name, bool rca, const char *meta, unsigned listeners)
{
    char id[600];
    snprintf(id, sizeof(id), ID "/HybridConnections/%s", name);
    assert_string_equal(emu_json_str(j, "id"), id);
    assert_string_equal(emu_json_str(j, "name"), name);
    assert_string_equal(emu_json_str(j, "type"), "Microsoft.Relay/Namespaces/HybridConnections");
    const cJSON *p = emu_json_at(j, "properties");
    assert_true(cJSON_IsObject(p));
    assert_iso7(emu_json_str(p, "createdAt"));
    assert_iso7(emu_json_str(p, "updatedAt"));
    const cJSON *lc = emu_json_at(p, "listenerCount");
    assert_true(cJSON_IsNumber(lc));
    assert_int_equal((unsigned)lc->valuedouble, listeners);
    const cJSON *rc = emu_json_at(p, "requiresClientAuthorization");
    assert_true(cJSON_IsBool(rc));
    assert_int_equal(cJSON_IsTrue(rc), rca);
    if (meta)
        assert_string_equal(emu_json_str(p, "userMetadata"), meta);
    else
        assert_null(emu_json_at(p, "userMetadata"));
}

static void
test_arm_hc_lifecycle(void **state)
{
    (void)state;
    emu_test_listener_count = 3;
    struct emu_resp *r = arm("PUT", P "/hybridConnections/t1" V,
                             "{\"properties\":{\"requiresClientAuthorization\":false,"
                             "\"userMetadata\":\"owner=alice\"}}");
    assert_int_equal(r->status, 200);
    assert_hc_json(r->json, "t1", false, "owner=alice", 3);
    char created[64];
    snprintf(created, sizeof(created), "%s", emu_json_str(r->json, "properties.createdAt"));
    emu_resp_free(r);

    /* GET gives the same; the emulator state really has it */
    r = arm("GET", P "/hybridConnections/t1" V, NULL);
    assert_int_equal(r->status, 200);
    assert_hc_json(r->json, "t1", false, "owner=alice", 3);
    assert_string_equal(emu_json_str(r->json, "properties.createdAt"), created);
    emu_resp_free(r);

    /* update (other case in the path): properties not given keep their value */
    r = arm("PUT", P "/HybridConnections/T1" V, "{\"properties\":{\"userMetadata\":\"x\"}}");
    assert_int_equal(r->status, 200);
    assert_hc_json(r->json, "t1", false, "x", 3);
    assert_string_equal(emu_json_str(r->json, "properties.createdAt"), created);
    emu_resp_free(r);
    /* a new one with the SDK's 2017-04-01 body; defaults */
    r = arm("PUT", P "/hybridConnections/t2?api-version=2017-04-01", "{\"properties\":{}}");
    assert_int_equal(r->status, 200);
    assert_hc_json(r->json, "t2", true, NULL, 3);
    emu_resp_free(r);
    /* names with '/' travel encoded */
    r = arm("PUT", P "/hybridConnections/tenants%2Fbob" V, "{}");
    assert_int_equal(r->status, 200);
    assert_hc_json(r->json, "tenants/bob", true, NULL, 3);
    emu_resp_free(r);

    /* list in creation order, no nextLink */
    r = arm("GET", P "/hybridConnections" V, NULL);
    assert_int_equal(r->status, 200);
    const cJSON *v = emu_json_at(r->json, "value");
    assert_int_equal(cJSON_GetArraySize(v), 4);
    assert_string_equal(emu_json_str(cJSON_GetArrayItem(v, 0), "name"), "pre");
    assert_string_equal(emu_json_str(cJSON_GetArrayItem(v, 1), "name"), "t1");
    assert_hc_json(cJSON_GetArrayItem(v, 3), "tenants/bob", true, NULL, 3);
    assert_null(emu_json_at(r->json, "nextLink"));
    emu_resp_free(r);

    /* delete: 200, then 204; the relay is told */
    r = arm("DELETE", P "/hybridConnections/t1" V, NULL);
    assert_int_equal(r->status, 200);
    assert_int_equal(r->body_len, 0);
    emu_resp_free(r);
    assert_int_equal(emu_test_deleted_calls, 1);
    r = arm("DELETE", P "/hybridConnections/t1" V, NULL);
    assert_int_equal(r->status, 204);
    emu_resp_free(r);
    assert_int_equal(emu_test_deleted_calls, 1);
    r = arm("GET", P "/hybridConnections/t1" V, NULL);
    assert_arm_error(r, 404, "NotFound");
    assert_non_null(strstr(emu_json_str(r->json, "error.message"), "TrackingId:"));
    emu_resp_free(r);
}

static void
test_arm_hc_paging(void **state)
{
    (void)state;
    char t[512];
    for (int i = 0; i < 4; i++) {
        snprintf(t, sizeof(t), P "/hybridConnections/p%d" V, i);
        struct emu_resp *r = arm("PUT", t, "{}");
        assert_int_equal(r->status, 200);
        emu_resp_free(r);
    }
    /* 5 HCs (with "pre"), pages of 2 */
    struct emu_resp *r = arm("GET", P "/hybridConnections" V "&$top=2", NULL);
    assert_int_equal(r->status, 200);
    assert_int_equal(cJSON_GetArraySize(emu_json_at(r->json, "value")), 2);
    const char *next = emu_json_str(r->json, "nextLink");
    assert_non_null(next);
    char want[512];
    snprintf(want, sizeof(want), "https://127.0.0.1:%d" P "/hybridConnections", fx->port);
    assert_true(strncmp(next, want, strlen(want)) == 0);
    int names = 0;
    char target[1024];
    while (next) {
        const char *path = strchr(next + strlen("https://"), '/'); /* our client adds the host */
        snprintf(target, sizeof(target), "%s", path);
        emu_resp_free(r);
        r = arm("GET", target, NULL);
        assert_int_equal(r->status, 200);
        names += cJSON_GetArraySize(emu_json_at(r->json, "value"));
        next = emu_json_str(r->json, "nextLink");
    }
    assert_int_equal(names, 3);
    emu_resp_free(r);
}

static void
test_arm_hc_bad_input(void **state)
{
    (void)state;
    struct emu_resp *r = arm("PUT", P "/hybridConnections/x" V, "{not json");
    assert_arm_error(r, 400, "InvalidRequestContent");
    emu_resp_free(r);
    r = arm("PUT", P "/hybridConnections/x" V, "[1]");
    assert_arm_error(r, 400, "InvalidRequestContent");
    emu_resp_free(r);
    r = arm("PUT", P "/hybridConnections/x" V,
            "{\"properties\":{\"requiresClientAuthorization\":\"no\"}}");
    assert_arm_error(r, 400, "InvalidRequestContent");
    emu_resp_free(r);
    r = arm("PUT", P "/hybridConnections/x" V, "{\"properties\":{\"userMetadata\":5}}");
    assert_arm_error(r, 400, "InvalidRequestContent");
    emu_resp_free(r);
    r = arm("PUT", P "/hybridConnections/x" V, "{\"properties\":7}");
    assert_arm_error(r, 400, "InvalidRequestContent");
    emu_resp_free(r);
    r = emu_http(fx, "PUT", P "/hybridConnections/x" V, auth, NULL, 0); /* no body */
    assert_arm_error(r, 400, "InvalidRequestContent");
    emu_resp_free(r);
    r = arm("PUT", P "/hybridConnections/a%20b" V, "{}");
    assert_arm_error(r, 400, "BadRequest");
    emu_resp_free(r);
    r = arm("PUT", P "/hybridConnections/a%2F%2Fb" V, "{}");
    assert_arm_error(r, 400, "BadRequest");
    emu_resp_free(r);
    /* none of these created anything */
    r = arm("GET", P "/hybridConnections" V, NULL);
    assert_int_equal(cJSON_GetArraySize(emu_json_at(r->json, "value")), 1);
    emu_resp_free(r);

    /* a body over 64 KiB */
    size_t big = 70 * 1024;
    char *b = malloc(big + 1);
    memset(b, ' ', big);
    b[0] = '{';
    b[big - 1] = '}';
    b[big] = '\0';
    r = arm("PUT", P "/hybridConnections/big" V, b);
    assert_arm_error(r, 413, "RequestEntityTooLarge");
    emu_resp_free(r);
    free(b);

    /* wrong method, unknown routes */
    r = arm("POST", P "/hybridConnections/pre" V, "{}");
    assert_arm_error(r, 405, "MethodNotAllowed");
    assert_string_equal(emu_json_str(r->json, "error.message"),
                        "The requested resource does not support http method 'POST'.");
    emu_resp_free(r);
    r = arm("GET", P "/wcfRelays" V, NULL);
    assert_arm_error(r, 404, "NotFound");
    emu_resp_free(r);
    r = arm("GET", P "/hybridConnections/pre/unknown" V, NULL);
    assert_arm_error(r, 404, "NotFound");
    emu_resp_free(r);
}

static void
test_arm_scopes_not_found(void **state)
{
    (void)state;
    struct emu_resp *r =
        arm("GET",
            "/subscriptions/99999999-2222-3333-4444-555555555555/resourceGroups/" RG
            "/providers/Microsoft.Relay/namespaces/" NS V,
            NULL);
    assert_arm_error(r, 404, "SubscriptionNotFound");
    emu_resp_free(r);
    r = arm("GET",
            "/subscriptions/" SUB
            "/resourceGroups/other/providers/Microsoft.Relay/namespaces/" NS V,
            NULL);
    assert_arm_error(r, 404, "ResourceGroupNotFound");
    assert_string_equal(emu_json_str(r->json, "error.message"),
                        "Resource group 'other' could not be found.");
    emu_resp_free(r);
    r = arm("GET",
            "/subscriptions/" SUB "/resourceGroups/" RG "/providers/Microsoft.Relay/namespaces/"
            "otherns" V,
            NULL);
    assert_arm_error(r, 404, "ResourceNotFound");
    assert_string_equal(emu_json_str(r->json, "error.message"),
                        "The Resource 'Microsoft.Relay/namespaces/otherns' under resource group "
                        "'" RG "' was not found. For more details please go to "
                        "https://aka.ms/ARMResourceNotFoundFix");
    emu_resp_free(r);
    r = arm("GET",
            "/subscriptions/" SUB "/resourceGroups/" RG
            "/providers/Microsoft.Other/namespaces/" NS V,
            NULL);
    assert_arm_error(r, 404, "InvalidResourceNamespace");
    emu_resp_free(r);
    r = arm("GET", P "/hybridConnections/nope/authorizationRules" V, NULL);
    assert_arm_error(r, 404, "NotFound");
    emu_resp_free(r);
}

/* ---- the namespace ---- */

static void
assert_ns_json(const cJSON *j)
{
    assert_string_equal(emu_json_str(j, "id"), ID);
    assert_string_equal(emu_json_str(j, "name"), NS);
    assert_string_equal(emu_json_str(j, "type"), "Microsoft.Relay/Namespaces");
    assert_string_equal(emu_json_str(j, "location"), "westeurope");
    assert_string_equal(emu_json_str(j, "sku.name"), "Standard");
    assert_string_equal(emu_json_str(j, "sku.tier"), "Standard");
    assert_string_equal(emu_json_str(j, "properties.provisioningState"), "Succeeded");
    assert_string_equal(emu_json_str(j, "properties.serviceBusEndpoint"), "https://" HOST ":443/");
    assert_string_equal(emu_json_str(j, "properties.metricId"), SUB ":" NS);
    assert_iso7(emu_json_str(j, "properties.createdAt"));
    assert_iso7(emu_json_str(j, "properties.updatedAt"));
}

static void
test_arm_namespace(void **state)
{
    (void)state;
    struct emu_resp *r = arm("GET", P V, NULL);
    assert_int_equal(r->status, 200);
    assert_ns_json(r->json);
    emu_resp_free(r);
    r = arm("GET", "/subscriptions/" SUB "/providers/Microsoft.Relay/namespaces" V, NULL);
    assert_int_equal(r->status, 200);
    assert_int_equal(cJSON_GetArraySize(emu_json_at(r->json, "value")), 1);
    assert_ns_json(cJSON_GetArrayItem(emu_json_at(r->json, "value"), 0));
    emu_resp_free(r);
    r = arm("GET",
            "/subscriptions/" SUB "/resourceGroups/" RG "/providers/Microsoft.Relay/namespaces" V,
            NULL);
    assert_int_equal(r->status, 200);
    assert_ns_json(cJSON_GetArrayItem(emu_json_at(r->json, "value"), 0));
    emu_resp_free(r);
    /* PUT of the existing namespace is idempotent (the SDK's LRO ends at once) */
    r = arm("PUT", P V, "{\"location\":\"westeurope\",\"sku\":{\"name\":\"Standard\"}}");
    assert_int_equal(r->status, 200);
    assert_ns_json(r->json);
    emu_resp_free(r);
    r = arm("DELETE", P V, NULL);
    assert_arm_error(r, 409, "Conflict");
    emu_resp_free(r);
    r = arm("POST", "/subscriptions/" SUB "/providers/Microsoft.Relay/checkNameAvailability" V,
            "{\"name\":\"" NS "\"}");
    assert_int_equal(r->status, 200);
    assert_false(cJSON_IsTrue(emu_json_at(r->json, "nameAvailable")));
    assert_string_equal(emu_json_str(r->json, "reason"), "NameInUse");
    emu_resp_free(r);
    r = arm("POST", "/subscriptions/" SUB "/providers/Microsoft.Relay/checkNameAvailability" V,
            "{\"name\":\"fresh-name\"}");
    assert_true(cJSON_IsTrue(emu_json_at(r->json, "nameAvailable")));
    emu_resp_free(r);
    r = arm("POST", "/subscriptions/" SUB "/providers/Microsoft.Relay/checkNameAvailability" V,
            "{\"name\":\"1x\"}");
    assert_string_equal(emu_json_str(r->json, "reason"), "InvalidName");
    emu_resp_free(r);
}

/* ---- rules and keys ---- */

static void
assert_rule_json(const cJSON *j, const char *hc, const char *name, const char *const *rights)
{
    char id[700];
    if (hc)
        snprintf(id, sizeof(id), ID "/HybridConnections/%s/AuthorizationRules/%s", hc, name);
    else
        snprintf(id, sizeof(id), ID "/AuthorizationRules/%s", name);
    assert_string_equal(emu_json_str(j, "id"), id);
    assert_string_equal(emu_json_str(j, "name"), name);
    assert_string_equal(emu_json_str(j, "type"),
                        hc ? "Microsoft.Relay/Namespaces/Hybridconnections/AuthorizationRules"
                           : "Microsoft.Relay/Namespaces/AuthorizationRules");
    const cJSON *arr = emu_json_at(j, "properties.rights");
    assert_true(cJSON_IsArray(arr));
    int n = 0;
    for (; rights[n]; n++)
        assert_string_equal(cJSON_GetArrayItem(arr, n)->valuestring, rights[n]);
    assert_int_equal(cJSON_GetArraySize(arr), n);
}

/* Checks an AccessKeys answer and copies the primary key out. */
static void
assert_keys_json(const cJSON *j, const char *hc, const char *rule, char primary[EMU_KEY_LEN + 1],
                 char secondary[EMU_KEY_LEN + 1])
{
    const char *pk = emu_json_str(j, "primaryKey"), *sk = emu_json_str(j, "secondaryKey");
    assert_non_null(pk);
    assert_non_null(sk);
    assert_int_equal(strlen(pk), EMU_KEY_LEN);
    assert_int_equal(strlen(sk), EMU_KEY_LEN);
    assert_string_equal(emu_json_str(j, "keyName"), rule);
    char want[600];
    snprintf(want, sizeof(want),
             "Endpoint=sb://" HOST "/;SharedAccessKeyName=%s;SharedAccessKey=%s%s%s", rule, pk,
             hc ? ";EntityPath=" : "", hc ? hc : "");
    assert_string_equal(emu_json_str(j, "primaryConnectionString"), want);
    snprintf(want, sizeof(want),
             "Endpoint=sb://" HOST "/;SharedAccessKeyName=%s;SharedAccessKey=%s%s%s", rule, sk,
             hc ? ";EntityPath=" : "", hc ? hc : "");
    assert_string_equal(emu_json_str(j, "secondaryConnectionString"), want);
    assert_int_equal(cJSON_GetArraySize((cJSON *)j), 5);
    if (primary)
        strcpy(primary, pk);
    if (secondary)
        strcpy(secondary, sk);
}

struct sas_check {
    struct emu *e;
    const char *token;
    const char *hc;
    bool ok;
    int status;
};

static void
sas_check_on_loop(void *arg)
{
    struct sas_check *c = arg;
    struct emu_auth_result res;
    c->ok = emu_auth_check(c->e, c->token, NULL, emu_hc_find(c->e, c->hc), c->hc, EMU_RIGHT_LISTEN,
                           &res);
    c->status = res.status;
}

static void
test_arm_rules_and_keys(void **state)
{
    (void)state;
    static const char *const all[] = {"Listen", "Manage", "Send", NULL};
    static const char *const ls[] = {"Listen", "Send", NULL};
    static const char *const l[] = {"Listen", NULL};
    struct emu_resp *r = arm("GET", P "/authorizationRules" V, NULL);
    assert_int_equal(r->status, 200);
    assert_int_equal(cJSON_GetArraySize(emu_json_at(r->json, "value")), 1);
    assert_rule_json(cJSON_GetArrayItem(emu_json_at(r->json, "value"), 0), NULL,
                     "RootManageSharedAccessKey", all);
    emu_resp_free(r);

    r = arm("PUT", P "/authorizationRules/gw" V,
            "{\"properties\":{\"rights\":[\"Send\",\"Listen\"]}}");
    assert_int_equal(r->status, 200);
    assert_rule_json(r->json, NULL, "gw", ls);
    emu_resp_free(r);
    r = arm("GET", P "/authorizationRules/gw" V, NULL);
    assert_int_equal(r->status, 200);
    assert_rule_json(r->json, NULL, "gw", ls);
    emu_resp_free(r);

    char p1[EMU_KEY_LEN + 1], s1[EMU_KEY_LEN + 1], p2[EMU_KEY_LEN + 1], s2[EMU_KEY_LEN + 1];
    r = arm("POST", P "/authorizationRules/gw/listKeys" V, NULL);
    assert_int_equal(r->status, 200);
    assert_keys_json(r->json, NULL, "gw", p1, s1);
    emu_resp_free(r);

    /* a SAS token signed with the listed key works; after regenerating it does not */
    char tok[AHG_SAS_MAX + 1];
    assert_int_equal(ahg_sas_create("http://" HOST "/pre", "gw", p1, (long long)time(NULL) + 600,
                                    tok, sizeof(tok)),
                     AHG_OK);
    struct sas_check c = {fx->e, tok, "pre", false, 0};
    emu_test_on_loop(fx, sas_check_on_loop, &c);
    assert_true(c.ok);
    r = arm("POST", P "/authorizationRules/gw/regenerateKeys" V, "{\"keyType\":\"PrimaryKey\"}");
    assert_int_equal(r->status, 200);
    assert_keys_json(r->json, NULL, "gw", p2, s2);
    assert_string_not_equal(p1, p2);
    assert_string_equal(s1, s2);
    emu_resp_free(r);
    emu_test_on_loop(fx, sas_check_on_loop, &c);
    assert_false(c.ok);
    assert_int_equal(c.status, 401);
    /* explicit key value */
    r = arm(
        "POST", P "/authorizationRules/gw/regenerateKeys" V,
        "{\"keyType\":\"SecondaryKey\",\"key\":\"XmNd2Wq7Lr4Tz9Pb1Vc6Ys3Hf8Jk0Ga5Ue2Io7Rw4Q=\"}");
    assert_int_equal(r->status, 200);
    assert_string_equal(emu_json_str(r->json, "secondaryKey"),
                        "XmNd2Wq7Lr4Tz9Pb1Vc6Ys3Hf8Jk0Ga5Ue2Io7Rw4Q=");
    assert_string_equal(emu_json_str(r->json, "primaryKey"), p2);
    emu_resp_free(r);
    r = arm("POST", P "/authorizationRules/gw/regenerateKeys" V, "{\"keyType\":\"Tertiary\"}");
    assert_arm_error(r, 400, "InvalidRequestContent");
    emu_resp_free(r);
    r = arm("POST", P "/authorizationRules/gw/regenerateKeys" V,
            "{\"keyType\":\"PrimaryKey\",\"key\":\"has spaces in it\"}");
    assert_arm_error(r, 400, "BadRequest");
    emu_resp_free(r);
    r = arm("GET", P "/authorizationRules/gw/listKeys" V, NULL);
    assert_arm_error(r, 405, "MethodNotAllowed");
    emu_resp_free(r);
    r = arm("POST", P "/authorizationRules/nope/listKeys" V, NULL);
    assert_arm_error(r, 404, "NotFound");
    emu_resp_free(r);

    /* HC-level rules: ids, type and EntityPath */
    r = arm("PUT", P "/hybridConnections/pre/authorizationRules/listener" V,
            "{\"properties\":{\"rights\":[\"Listen\"]}}");
    assert_int_equal(r->status, 200);
    assert_rule_json(r->json, "pre", "listener", l);
    emu_resp_free(r);
    r = arm("GET", P "/hybridConnections/pre/authorizationRules" V, NULL);
    assert_int_equal(cJSON_GetArraySize(emu_json_at(r->json, "value")), 1);
    emu_resp_free(r);
    r = arm("POST", P "/hybridConnections/pre/authorizationRules/listener/listKeys" V, NULL);
    assert_int_equal(r->status, 200);
    assert_keys_json(r->json, "pre", "listener", p1, NULL);
    emu_resp_free(r);
    assert_int_equal(ahg_sas_create("http://" HOST "/pre", "listener", p1,
                                    (long long)time(NULL) + 600, tok, sizeof(tok)),
                     AHG_OK);
    emu_test_on_loop(fx, sas_check_on_loop, &c);
    assert_true(c.ok);
    r = arm("POST", P "/hybridConnections/pre/authorizationRules/listener/regenerateKeys" V,
            "{\"keyType\":\"PrimaryKey\"}");
    assert_int_equal(r->status, 200);
    emu_resp_free(r);
    emu_test_on_loop(fx, sas_check_on_loop, &c);
    assert_false(c.ok);

    /* delete: 200 then 204 */
    r = arm("DELETE", P "/hybridConnections/pre/authorizationRules/listener" V, NULL);
    assert_int_equal(r->status, 200);
    emu_resp_free(r);
    r = arm("DELETE", P "/hybridConnections/pre/authorizationRules/listener" V, NULL);
    assert_int_equal(r->status, 204);
    emu_resp_free(r);
    r = arm("GET", P "/hybridConnections/pre/authorizationRules/listener" V, NULL);
    assert_arm_error(r, 404, "NotFound");
    emu_resp_free(r);

    /* bad rule bodies */
    r = arm("PUT", P "/authorizationRules/x" V, "{\"properties\":{\"rights\":[]}}");
    assert_arm_error(r, 400, "InvalidRequestContent");
    emu_resp_free(r);
    r = arm("PUT", P "/authorizationRules/x" V, "{\"properties\":{\"rights\":[\"Read\"]}}");
    assert_arm_error(r, 400, "InvalidRequestContent");
    emu_resp_free(r);
    r = arm("PUT", P "/authorizationRules/x" V, "{}");
    assert_arm_error(r, 400, "InvalidRequestContent");
    emu_resp_free(r);
    r = arm("PUT", P "/authorizationRules/bad%20name" V,
            "{\"properties\":{\"rights\":[\"Send\"]}}");
    assert_arm_error(r, 400, "BadRequest");
    emu_resp_free(r);

    /* 12 rules per namespace */
    char t[512];
    for (int i = 0; i < 10; i++) { /* root + gw + 10 = 12 */
        snprintf(t, sizeof(t), P "/authorizationRules/r%d" V, i);
        r = arm("PUT", t, "{\"properties\":{\"rights\":[\"Send\"]}}");
        assert_int_equal(r->status, 200);
        emu_resp_free(r);
    }
    r = arm("PUT", P "/authorizationRules/r13" V, "{\"properties\":{\"rights\":[\"Send\"]}}");
    assert_arm_error(r, 400, "QuotaExceeded");
    emu_resp_free(r);
}

/* ---- headers, faults, latency ---- */

static void
test_arm_headers(void **state)
{
    (void)state;
    const char *h[] = {auth_hdr,
                       "x-ms-correlation-request-id: 0f0e0d0c-aaaa-bbbb-cccc-000000000001",
                       "x-ms-client-request-id: my-client-1", NULL};
    struct emu_resp *r = emu_get(fx, P "/hybridConnections/pre" V, h);
    assert_int_equal(r->status, 200);
    char v[256];
    assert_true(emu_resp_header(r, "Content-Type", v, sizeof(v)));
    assert_string_equal(v, "application/json; charset=utf-8");
    assert_true(emu_resp_header(r, "x-ms-request-id", v, sizeof(v)));
    assert_int_equal(strlen(v), 36);
    assert_true(emu_resp_header(r, "x-ms-correlation-request-id", v, sizeof(v)));
    assert_string_equal(v, "0f0e0d0c-aaaa-bbbb-cccc-000000000001");
    assert_true(emu_resp_header(r, "x-ms-client-request-id", v, sizeof(v)));
    assert_string_equal(v, "my-client-1");
    assert_true(emu_resp_header(r, "Cache-Control", v, sizeof(v)));
    assert_string_equal(v, "no-cache");
    emu_resp_free(r);
    r = arm("GET", P V, NULL);
    assert_true(emu_resp_header(r, "x-ms-correlation-request-id", v, sizeof(v)));
    char rid[64];
    assert_true(emu_resp_header(r, "x-ms-request-id", rid, sizeof(rid)));
    assert_string_equal(v, rid); /* none sent: the request id */
    emu_resp_free(r);
}

struct fault_set {
    struct emu *e;
    const char *method;
    int status;
    unsigned count;
    uint64_t calls;
};

static void
fault_set_on_loop(void *arg)
{
    struct fault_set *f = arg;
    snprintf(f->e->fault.method, sizeof(f->e->fault.method), "%s", f->method);
    f->e->fault.status = f->status;
    f->e->fault.remaining = f->count;
    f->calls = f->e->m_arm_calls;
}

static void
test_arm_faults(void **state)
{
    (void)state;
    struct fault_set f = {fx->e, "PUT", 429, 2, 0};
    emu_test_on_loop(fx, fault_set_on_loop, &f);
    uint64_t calls0 = f.calls;
    for (int i = 0; i < 2; i++) {
        struct emu_resp *r = arm("PUT", P "/hybridConnections/f1" V, "{}");
        assert_arm_error(r, 429, "MessagingGatewayTooManyRequests");
        assert_non_null(strstr(emu_json_str(r->json, "error.message"), "SubCode=40901"));
        char ra[16];
        assert_true(emu_resp_header(r, "Retry-After", ra, sizeof(ra)));
        assert_string_equal(ra, "1");
        emu_resp_free(r);
        /* other methods are not affected */
        r = arm("GET", P "/hybridConnections/pre" V, NULL);
        assert_int_equal(r->status, 200);
        emu_resp_free(r);
    }
    struct emu_resp *r = arm("PUT", P "/hybridConnections/f1" V, "{}");
    assert_int_equal(r->status, 200);
    emu_resp_free(r);

    f = (struct fault_set){fx->e, "*", 500, 1, 0};
    emu_test_on_loop(fx, fault_set_on_loop, &f);
    r = arm("DELETE", P "/hybridConnections/f1" V, NULL);
    assert_arm_error(r, 500, "InternalServerError");
    emu_resp_free(r);
    f = (struct fault_set){fx->e, "DELETE", 409, 1, 0};
    emu_test_on_loop(fx, fault_set_on_loop, &f);
    r = arm("DELETE", P "/hybridConnections/f1" V, NULL);
    assert_arm_error(r, 409, "Conflict");
    emu_resp_free(r);
    r = arm("DELETE", P "/hybridConnections/f1" V, NULL);
    assert_int_equal(r->status, 200);
    emu_resp_free(r);
    /* faults are answered after authentication: a bad token still gets 401 */
    f = (struct fault_set){fx->e, "*", 500, 1, 0};
    emu_test_on_loop(fx, fault_set_on_loop, &f);
    r = emu_get(fx, P V, NULL);
    assert_int_equal(r->status, 401);
    emu_resp_free(r);
    r = arm("GET", P V, NULL);
    assert_int_equal(r->status, 500);
    emu_resp_free(r);
    emu_test_on_loop(fx, fault_set_on_loop, &f);
    assert_int_equal(f.calls - calls0, 10); /* every call counted, answered or failed */
}

struct lat_set {
    struct emu *e;
    unsigned ms;
};

static void
lat_set_on_loop(void *arg)
{
    struct lat_set *l = arg;
    l->e->lat.arm_ms = l->ms;
}

static void
test_arm_latency_and_leaving_client(void **state)
{
    (void)state;
    struct lat_set l = {fx->e, 300};
    emu_test_on_loop(fx, lat_set_on_loop, &l);
    struct emu_resp *r = arm("GET", P "/hybridConnections/pre" V, NULL);
    assert_int_equal(r->status, 200);
    assert_true(r->ms >= 295.0);
    emu_resp_free(r);
    r = emu_get(fx, P V, NULL); /* errors are delayed too */
    assert_int_equal(r->status, 401);
    assert_true(r->ms >= 295.0);
    emu_resp_free(r);

    /* clients that leave while their answer is held: plain and TLS half-sent */
    for (int i = 0; i < 5; i++) {
        int fd = emu_test_connect(fx->port);
        assert_true(fd >= 0);
        SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
        SSL *ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        assert_int_equal(SSL_connect(ssl), 1);
        char req[8192];
        int n = snprintf(req, sizeof(req),
                         "PUT " P "/hybridConnections/gone%d" V " HTTP/1.1\r\nHost: x\r\n%s\r\n"
                         "Content-Length: 2\r\n\r\n{}",
                         i, auth_hdr);
        assert_int_equal(SSL_write(ssl, req, n), n);
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
        SSL_free(ssl);
        SSL_CTX_free(ctx);
        close(fd); /* gone before the 300 ms are over */
    }
    struct timespec ts = {0, 500000000};
    nanosleep(&ts, NULL);
    /* the emulator is fine; the operations themselves ran */
    l.ms = 0;
    emu_test_on_loop(fx, lat_set_on_loop, &l);
    r = arm("GET", P "/hybridConnections" V, NULL);
    assert_int_equal(r->status, 200);
    assert_int_equal(cJSON_GetArraySize(emu_json_at(r->json, "value")), 6);
    assert_true(r->ms < 290.0); /* the 300 ms hold is gone */
    emu_resp_free(r);
}

int
main(void)
{
    ahg_log_setup("test", AHG_LOG_FORMAT_TEXT, AHG_LOG_LVL_ERROR, 2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_arm_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arm_api_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arm_hc_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arm_hc_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arm_hc_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arm_scopes_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arm_namespace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arm_rules_and_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arm_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arm_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arm_latency_and_leaving_client, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
