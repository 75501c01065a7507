/*
 * identity.c: JWT issue/verify round trips (claims, audiences, tampering, alg, expiry, nbf,
 * secrets) and the token endpoint over real HTTP on 127.0.0.1 in the App Service (2019-08-01),
 * legacy MSI (2017-09-01) and IMDS forms, with their error answers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "emu_mgmt_testlib.h"

static const char *const id_flags[] = {"--emulator-identity-header=s3cret-header", NULL};

/* ---- JWT ---- */

static void
test_identity_issue_claims(void **state)
{
    (void)state;
    struct emu *e = emu_test_new(NULL, id_flags);
    long long exp = 0;
    long long now = (long long)time(NULL);
    char *t = emu_identity_issue(e, "https://relay.azure.net/", &exp);
    assert_non_null(t);
    assert_true(exp >= now + 3600 && exp <= now + 3601);
    assert_int_equal(e->m_tokens_issued, 1);

    /* header is exactly {"alg":"HS256","typ":"JWT"} */
    const char *d1 = strchr(t, '.');
    unsigned char hdr[128];
    size_t hl = 0;
    assert_int_equal(ahg_base64url_decode(t, (size_t)(d1 - t), hdr, sizeof(hdr) - 1, &hl), AHG_OK);
    hdr[hl] = '\0';
    assert_string_equal((char *)hdr, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}");

    cJSON *p = emu_jwt_payload(t);
    assert_non_null(p);
    assert_string_equal(emu_json_str(p, "aud"), "https://relay.azure.net/");
    char iss[128];
    snprintf(iss, sizeof(iss), "https://sts.windows.net/%s/", e->identity_tenant);
    assert_string_equal(emu_json_str(p, "iss"), iss);
    assert_string_equal(emu_json_str(p, "tid"), e->identity_tenant);
    assert_string_equal(emu_json_str(p, "oid"), e->identity_object_id);
    assert_string_equal(emu_json_str(p, "appid"), e->identity_client_id);
    assert_true(cJSON_IsNumber(emu_json_at(p, "iat")));
    assert_true(cJSON_IsNumber(emu_json_at(p, "nbf")));
    assert_int_equal((long long)emu_json_at(p, "exp")->valuedouble, exp);
    const cJSON *roles = emu_json_at(p, "roles");
    assert_true(cJSON_IsArray(roles));
    assert_int_equal(cJSON_GetArraySize(roles), 1);
    assert_string_equal(cJSON_GetArrayItem(roles, 0)->valuestring, "Owner");
    cJSON_Delete(p);

    unsigned rights = 0;
    long long vexp = 0;
    assert_int_equal(emu_identity_verify(e, t, "https://relay.azure.net", &rights, &vexp), AHG_OK);
    assert_int_equal(rights, EMU_RIGHT_LISTEN | EMU_RIGHT_SEND | EMU_RIGHT_MANAGE);
    assert_int_equal(vexp, exp);
    assert_int_equal(emu_identity_verify(e, t, "https://relay.azure.net/", NULL, NULL), AHG_OK);
    assert_int_equal(emu_identity_verify(e, t, "https://vault.azure.net", NULL, NULL),
                     AHG_EFORBIDDEN);
    assert_int_equal(emu_identity_verify(e, t, NULL, NULL, NULL), AHG_OK);
    free(t);

    /* other resources: no roles claim; the scope form drops "/.default" */
    t = emu_identity_issue(e, "https://management.azure.com/.default", NULL);
    p = emu_jwt_payload(t);
    assert_string_equal(emu_json_str(p, "aud"), "https://management.azure.com");
    assert_null(emu_json_at(p, "roles"));
    cJSON_Delete(p);
    rights = 99;
    assert_int_equal(emu_identity_verify(e, t, "https://management.azure.com/", &rights, NULL),
                     AHG_OK);
    assert_int_equal(rights, 0);
    /* ARM accepts its classic audience name too */
    assert_int_equal(emu_identity_verify(e, t, "https://management.core.windows.net/", NULL, NULL),
                     AHG_OK);
    assert_int_equal(emu_identity_verify(e, t, "https://relay.azure.net", NULL, NULL),
                     AHG_EFORBIDDEN);
    free(t);
    t = emu_identity_issue(e, "https://vault.azure.net", NULL);
    assert_int_equal(emu_identity_verify(e, t, "https://vault.azure.net/", NULL, NULL), AHG_OK);
    free(t);
    t = emu_identity_issue(e, "https://relay.azure.net//.default", NULL);
    p = emu_jwt_payload(t);
    assert_string_equal(emu_json_str(p, "aud"), "https://relay.azure.net/");
    cJSON_Delete(p);
    free(t);

    /* unsupported resources */
    assert_null(emu_identity_issue(e, "https://storage.azure.com/", NULL));
    assert_null(emu_identity_issue(e, "https://127.0.0.1:9912", NULL));
    assert_null(emu_identity_issue(e, "", NULL));
    assert_null(emu_identity_issue(e, "/.default", NULL));
    assert_int_equal(e->m_tokens_issued, 4);
    emu_test_free(e);
}

static void
test_identity_verify_rejects(void **state)
{
    (void)state;
    struct emu *e = emu_test_new(NULL, id_flags);
    char *t = emu_identity_issue(e, "https://relay.azure.net", NULL);
    size_t n = strlen(t);
    const char *d1 = strchr(t, '.'), *d2 = strrchr(t, '.');

    /* every single-character change in any segment breaks it */
    size_t positions[] = {1, (size_t)(d1 - t) + 3, (size_t)(d2 - t) - 2, n - 3};
    for (size_t i = 0; i < sizeof(positions) / sizeof(positions[0]); i++) {
        char *c = strdup(t);
        c[positions[i]] = c[positions[i]] == 'x' ? 'y' : 'x';
        assert_int_equal(emu_identity_verify(e, c, "https://relay.azure.net", NULL, NULL),
                         AHG_EAUTH);
        free(c);
    }
    /* structure */
    assert_int_equal(emu_identity_verify(e, "a.b", NULL, NULL, NULL), AHG_EAUTH);
    assert_int_equal(emu_identity_verify(e, "a.b.c.d", NULL, NULL, NULL), AHG_EAUTH);
    assert_int_equal(emu_identity_verify(e, "", NULL, NULL, NULL), AHG_EAUTH);
    assert_int_equal(emu_identity_verify(e, NULL, NULL, NULL, NULL), AHG_EAUTH);

    /* alg none / RS256 with the same payload, unsigned */
    char *none = malloc(n + 64);
    char h[64];
    const char *nh = "{\"alg\":\"none\",\"typ\":\"JWT\"}";
    ahg_base64url_encode(nh, strlen(nh), h, sizeof(h));
    snprintf(none, n + 64, "%s%.*s.", h, (int)(d2 - d1), d1);
    assert_int_equal(emu_identity_verify(e, none, NULL, NULL, NULL), AHG_EAUTH);
    free(none);
    /* correctly signed with the emulator's key but alg is not HS256: refused */
    char *rs = emu_jwt_forge(e->jwt_secret, "{\"alg\":\"RS256\"}",
                             "{\"aud\":\"https://relay.azure.net\",\"exp\":4102444800}");
    assert_int_equal(emu_identity_verify(e, rs, NULL, NULL, NULL), AHG_EAUTH);
    free(rs);

    /* well signed but expired / not yet valid / no exp / not an object */
    char pl[256];
    long long now = (long long)time(NULL);
    snprintf(pl, sizeof(pl), "{\"aud\":\"https://relay.azure.net\",\"exp\":%lld}", now - 1);
    char *x = emu_jwt_forge(e->jwt_secret, "{\"alg\":\"HS256\"}", pl);
    long long exp = 0;
    assert_int_equal(emu_identity_verify(e, x, "https://relay.azure.net", NULL, &exp),
                     AHG_EEXPIRED);
    assert_int_equal(exp, now - 1);
    free(x);
    snprintf(pl, sizeof(pl), "{\"aud\":\"https://relay.azure.net\",\"exp\":%lld,\"nbf\":%lld}",
             now + 7200, now + 3600);
    x = emu_jwt_forge(e->jwt_secret, "{\"alg\":\"HS256\"}", pl);
    assert_int_equal(emu_identity_verify(e, x, NULL, NULL, NULL), AHG_EAUTH);
    free(x);
    x = emu_jwt_forge(e->jwt_secret, "{\"alg\":\"HS256\"}",
                      "{\"aud\":\"https://relay.azure.net\"}");
    assert_int_equal(emu_identity_verify(e, x, NULL, NULL, NULL), AHG_EAUTH);
    free(x);
    x = emu_jwt_forge(e->jwt_secret, "{\"alg\":\"HS256\"}", "[1,2]");
    assert_int_equal(emu_identity_verify(e, x, NULL, NULL, NULL), AHG_EAUTH);
    free(x);
    /* an aud array works; roles map to rights */
    snprintf(pl, sizeof(pl),
             "{\"aud\":[\"x\",\"https://relay.azure.net/\"],\"exp\":%lld,\"roles\":[\"Sender\","
             "\"Listener\"]}",
             now + 60);
    x = emu_jwt_forge(e->jwt_secret, "{\"alg\":\"HS256\"}", pl);
    unsigned rights = 0;
    assert_int_equal(emu_identity_verify(e, x, "https://relay.azure.net", &rights, NULL), AHG_OK);
    assert_int_equal(rights, EMU_RIGHT_LISTEN | EMU_RIGHT_SEND);
    free(x);

    /* a token of another emulator (other random secret) is refused */
    struct emu *e2 = emu_test_new(NULL, id_flags);
    assert_int_equal(emu_identity_verify(e2, t, NULL, NULL, NULL), AHG_EAUTH);
    emu_test_free(e2);
    free(t);
    emu_test_free(e);
}

static void
test_identity_configured_secret_and_role(void **state)
{
    (void)state;
    const char *flags[] = {"--emulator-identity-jwt-secret=shared",
                           "--emulator-identity-relay-role=listener", NULL};
    struct emu *a = emu_test_new(NULL, flags), *b = emu_test_new(NULL, flags);
    assert_non_null(a);
    assert_non_null(b);
    /* same secret: tokens verify across instances, ids are derived from it */
    unsigned char want[32];
    ahg_sha256("shared", 6, want);
    assert_memory_equal(a->jwt_secret, want, 32);
    assert_string_equal(a->identity_tenant, b->identity_tenant);
    assert_string_equal(a->identity_client_id, b->identity_client_id);
    assert_string_not_equal(a->identity_tenant, a->identity_client_id);
    assert_int_equal(strlen(a->identity_header), 32); /* random header when not configured */
    assert_string_not_equal(a->identity_header, b->identity_header);
    char *t = emu_identity_issue(a, "https://relay.azure.net", NULL);
    unsigned rights = 0;
    assert_int_equal(emu_identity_verify(b, t, "https://relay.azure.net", &rights, NULL), AHG_OK);
    assert_int_equal(rights, EMU_RIGHT_LISTEN);
    cJSON *p = emu_jwt_payload(t);
    assert_string_equal(cJSON_GetArrayItem(emu_json_at(p, "roles"), 0)->valuestring, "Listener");
    cJSON_Delete(p);
    free(t);
    emu_test_free(a);
    emu_test_free(b);
}

/* ---- the endpoint over HTTP ---- */

static struct emu_fixture *fx;

static int
fx_setup(void **state)
{
    (void)state;
    fx = emu_fixture_start(id_flags, false);
    return fx ? 0 : -1;
}

static int
fx_teardown(void **state)
{
    (void)state;
    emu_fixture_stop(fx);
    fx = NULL;
    return 0;
}

/* The token in a 200 answer verifies for aud (e->jwt_secret is read-only after init, so the
 * test thread may verify while the loop runs). */
static void
assert_token_for(const struct emu_resp *r, const char *aud)
{
    const char *tok = emu_json_str(r->json, "access_token");
    assert_non_null(tok);
    assert_int_equal(emu_identity_verify(fx->e, tok, aud, NULL, NULL), AHG_OK);
}

static void
assert_all_strings(const cJSON *j)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, j)
    {
        if (!cJSON_IsString(it))
            fail_msg("member %s is not a string", it->string);
    }
}

static void
test_identity_appservice(void **state)
{
    (void)state;
    const char *hdr[] = {"X-IDENTITY-HEADER: s3cret-header", NULL};
    long long now = (long long)time(NULL);
    struct emu_resp *r = emu_get(
        fx, "/msi/token?resource=https%3A%2F%2Fmanagement.azure.com&api-version=2019-08-01", hdr);
    assert_int_equal(r->status, 200);
    char ct[128];
    assert_true(emu_resp_header(r, "Content-Type", ct, sizeof(ct)));
    assert_string_equal(ct, "application/json; charset=utf-8");
    /* exactly the App Service members, all strings */
    assert_int_equal(cJSON_GetArraySize(r->json), 6);
    assert_all_strings(r->json);
    assert_string_equal(emu_json_str(r->json, "token_type"), "Bearer");
    assert_string_equal(emu_json_str(r->json, "resource"), "https://management.azure.com");
    assert_string_equal(emu_json_str(r->json, "client_id"), fx->e->identity_client_id);
    long long on = atoll(emu_json_str(r->json, "expires_on"));
    assert_true(on >= now + 3600 && on <= now + 3602);
    long long nb = atoll(emu_json_str(r->json, "not_before"));
    assert_true(nb >= now && nb <= now + 2);
    assert_null(emu_json_at(r->json, "expires_in"));
    assert_token_for(r, "https://management.azure.com");
    emu_resp_free(r);

    /* the form @azure/identity (msal-node) sends: trailing slash resource, scope-style too */
    const char *msal[] = {"X-IDENTITY-HEADER: s3cret-header",
                          "Content-Type: application/x-www-form-urlencoded", NULL};
    r = emu_get(fx, "/msi/token?api-version=2019-08-01&resource=https%3A%2F%2Fvault.azure.net",
                msal);
    assert_int_equal(r->status, 200);
    assert_token_for(r, "https://vault.azure.net");
    emu_resp_free(r);
    r = emu_get(fx, "/MSI/token/?api-version=2019-08-01&resource=https://relay.azure.net/", hdr);
    assert_int_equal(r->status, 200);
    assert_string_equal(emu_json_str(r->json, "resource"), "https://relay.azure.net/");
    assert_token_for(r, "https://relay.azure.net");
    emu_resp_free(r);
    /* our own client_id is fine */
    char target[256];
    snprintf(target, sizeof(target),
             "/msi/token?api-version=2019-08-01&resource=https://relay.azure.net&client_id=%s",
             fx->e->identity_client_id);
    r = emu_get(fx, target, hdr);
    assert_int_equal(r->status, 200);
    emu_resp_free(r);
}

static void
assert_appsvc_error(struct emu_resp *r, int status, const char *msg_part)
{
    assert_int_equal(r->status, status);
    assert_non_null(r->json);
    assert_int_equal((int)emu_json_at(r->json, "statusCode")->valuedouble, status);
    const char *m = emu_json_str(r->json, "message");
    assert_non_null(m);
    if (!strstr(m, msg_part))
        fail_msg("message '%s' lacks '%s'", m, msg_part);
    assert_non_null(emu_json_str(r->json, "correlationId"));
    assert_null(emu_json_at(r->json, "access_token"));
    emu_resp_free(r);
}

static void
test_identity_appservice_errors(void **state)
{
    (void)state;
    const char *good[] = {"X-IDENTITY-HEADER: s3cret-header", NULL};
    const char *wrong[] = {"X-IDENTITY-HEADER: s3cret-headeR", NULL};
    const char *q = "/msi/token?resource=https://management.azure.com&api-version=2019-08-01";
    assert_appsvc_error(emu_get(fx, q, wrong), 401, "X-IDENTITY-HEADER");
    assert_appsvc_error(emu_get(fx, q, NULL), 400, "X-IDENTITY-HEADER");
    /* the legacy header does not count for 2019-08-01 */
    const char *legacy_hdr[] = {"secret: s3cret-header", NULL};
    assert_appsvc_error(emu_get(fx, q, legacy_hdr), 400, "X-IDENTITY-HEADER");
    assert_appsvc_error(
        emu_get(fx, "/msi/token?resource=https://storage.azure.com/&api-version=2019-08-01", good),
        400, "AADSTS500011: The resource principal named https://storage.azure.com/ was not found");
    assert_appsvc_error(emu_get(fx, "/msi/token?api-version=2019-08-01", good), 400, "resource");
    assert_appsvc_error(emu_get(fx, "/msi/token?resource=https://relay.azure.net", good), 400,
                        "api-version");
    assert_appsvc_error(
        emu_get(fx, "/msi/token?resource=https://relay.azure.net&api-version=2099-01-01", good),
        400, "api-version");
    assert_appsvc_error(emu_get(fx,
                                "/msi/token?resource=https://relay.azure.net&api-version=2019-08-01"
                                "&client_id=00000000-1111-2222-3333-444444444444",
                                good),
                        400, "Unable to load requested managed identity.");
    assert_appsvc_error(emu_http(fx, "POST", q, good, "x", 1), 405, "method");
    assert_int_equal(fx->e->m_tokens_issued, 0);
}

static void
test_identity_legacy_msi(void **state)
{
    (void)state;
    const char *hdr[] = {"secret: s3cret-header", NULL};
    struct emu_resp *r =
        emu_get(fx, "/msi/token/?resource=https://vault.azure.net&api-version=2017-09-01", hdr);
    assert_int_equal(r->status, 200);
    assert_int_equal(cJSON_GetArraySize(r->json), 4);
    const char *on = emu_json_str(r->json, "expires_on");
    assert_non_null(on);
    /* "MM/dd/yyyy hh:mm:ss AM +00:00" */
    int mo, d, y, h, mi, s;
    char ampm[3];
    assert_int_equal(
        sscanf(on, "%2d/%2d/%4d %2d:%2d:%2d %2s +00:00", &mo, &d, &y, &h, &mi, &s, ampm), 7);
    assert_true(!strcmp(ampm, "AM") || !strcmp(ampm, "PM"));
    assert_token_for(r, "https://vault.azure.net");
    emu_resp_free(r);
    const char *wrong[] = {"secret: nope", NULL};
    assert_appsvc_error(
        emu_get(fx, "/msi/token?resource=https://vault.azure.net&api-version=2017-09-01", wrong),
        401, "secret");
}

static void
test_identity_imds(void **state)
{
    (void)state;
    const char *md[] = {"Metadata: true", NULL};
    long long now = (long long)time(NULL);
    struct emu_resp *r = emu_get(fx,
                                 "/metadata/identity/oauth2/token?api-version=2018-02-01&resource="
                                 "https%3A%2F%2Frelay.azure.net%2F",
                                 md);
    assert_int_equal(r->status, 200);
    assert_int_equal(cJSON_GetArraySize(r->json), 8);
    assert_all_strings(r->json);
    assert_string_equal(emu_json_str(r->json, "refresh_token"), "");
    assert_string_equal(emu_json_str(r->json, "expires_in"), "3600");
    long long on = atoll(emu_json_str(r->json, "expires_on"));
    assert_true(on >= now + 3600 && on <= now + 3602);
    assert_non_null(emu_json_str(r->json, "not_before"));
    assert_string_equal(emu_json_str(r->json, "resource"), "https://relay.azure.net/");
    assert_string_equal(emu_json_str(r->json, "token_type"), "Bearer");
    assert_string_equal(emu_json_str(r->json, "client_id"), fx->e->identity_client_id);
    assert_token_for(r, "https://relay.azure.net/");
    emu_resp_free(r);

    /* missing Metadata header: the SSRF guard */
    r = emu_get(fx,
                "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://"
                "relay.azure.net",
                NULL);
    assert_int_equal(r->status, 400);
    assert_string_equal(emu_json_str(r->json, "error"), "bad_request_102");
    assert_string_equal(emu_json_str(r->json, "error_description"),
                        "Required metadata header not specified");
    emu_resp_free(r);
    const char *mdf[] = {"Metadata: false", NULL};
    r = emu_get(fx,
                "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://"
                "relay.azure.net",
                mdf);
    assert_int_equal(r->status, 400);
    assert_string_equal(emu_json_str(r->json, "error"), "bad_request_102");
    emu_resp_free(r);

    r = emu_get(fx,
                "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://"
                "example.com",
                md);
    assert_int_equal(r->status, 400);
    assert_string_equal(emu_json_str(r->json, "error"), "invalid_resource");
    assert_non_null(strstr(emu_json_str(r->json, "error_description"), "AADSTS500011"));
    emu_resp_free(r);
    r = emu_get(fx, "/metadata/identity/oauth2/token?api-version=2018-02-01", md);
    assert_int_equal(r->status, 400);
    assert_string_equal(emu_json_str(r->json, "error"), "invalid_request");
    emu_resp_free(r);
    r = emu_get(fx, "/metadata/identity/oauth2/token?resource=https://relay.azure.net", md);
    assert_int_equal(r->status, 400);
    assert_string_equal(emu_json_str(r->json, "error"), "invalid_request");
    emu_resp_free(r);
    r = emu_get(fx,
                "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://"
                "relay.azure.net&client_id=nope",
                md);
    assert_int_equal(r->status, 400);
    assert_string_equal(emu_json_str(r->json, "error_description"), "Identity not found");
    emu_resp_free(r);

    /* not an identity path: the router's 404 */
    r = emu_get(fx, "/metadata/instance?api-version=2021-02-01", md);
    assert_int_equal(r->status, 404);
    emu_resp_free(r);
}

/* ---- AKS workload identity exchange ---- */

/* A federated token: base64url(header).base64url(payload).signature. */
static void
fed_token(const char *aud, long long exp, char *out, size_t outsz)
{
    char payload[256], p64[512], h64[128];
    (void)snprintf(payload, sizeof(payload),
                   "{\"aud\":\"%s\",\"exp\":%lld,\"sub\":\"system:serviceaccount:a:b\"}", aud, exp);
    const char *hdr = "{\"alg\":\"RS256\"}";
    assert_int_equal(ahg_base64url_encode(hdr, strlen(hdr), h64, sizeof(h64)), AHG_OK);
    assert_int_equal(ahg_base64url_encode(payload, strlen(payload), p64, sizeof(p64)), AHG_OK);
    (void)snprintf(out, outsz, "%s.%s.c2ln", h64, p64);
}

static struct emu_resp *
wi_post(const char *tenant, const char *client_id, const char *grant, const char *atype,
        const char *assertion, const char *scope)
{
    char target[128], body[4096];
    (void)snprintf(target, sizeof(target), "/%s/oauth2/v2.0/token", tenant);
    (void)snprintf(body, sizeof(body),
                   "grant_type=%s&client_id=%s&client_assertion_type=%s&client_assertion=%s"
                   "&scope=%s",
                   grant, client_id, atype, assertion, scope);
    const char *hdr[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    return emu_http(fx, "POST", target, hdr, body, strlen(body));
}

#define WI_ATYPE "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"

static void
expect_wi_error(struct emu_resp *r, int status, const char *code, int aadsts)
{
    assert_int_equal(r->status, status);
    assert_string_equal(emu_json_str(r->json, "error"), code);
    const cJSON *codes = emu_json_at(r->json, "error_codes");
    assert_true(cJSON_IsArray(codes));
    assert_int_equal((int)cJSON_GetArrayItem(codes, 0)->valuedouble, aadsts);
    char want[32];
    (void)snprintf(want, sizeof(want), "AADSTS%d: ", aadsts);
    assert_true(strncmp(emu_json_str(r->json, "error_description"), want, strlen(want)) == 0);
    emu_resp_free(r);
}

static void
test_identity_workload(void **state)
{
    (void)state;
    const char *tid = fx->e->identity_tenant, *cid = fx->e->identity_client_id;
    long long now = (long long)time(NULL);
    char fed[1024];
    fed_token("api://AzureADTokenExchange", now + 3600, fed, sizeof(fed));
    struct emu_resp *r = wi_post(tid, cid, "client_credentials", WI_ATYPE, fed,
                                 "https%3A%2F%2Frelay.azure.net%2F%2F.default");
    assert_int_equal(r->status, 200);
    assert_string_equal(emu_json_str(r->json, "token_type"), "Bearer");
    const cJSON *in = emu_json_at(r->json, "expires_in");
    assert_true(cJSON_IsNumber(in)); /* numeric, unlike the other forms */
    assert_true(in->valuedouble >= 3598 && in->valuedouble <= 3600);
    assert_token_for(r, "https://relay.azure.net");
    emu_resp_free(r);
    r = wi_post(tid, cid, "client_credentials", WI_ATYPE, fed,
                "https%3A%2F%2Fvault.azure.net%2F.default");
    assert_int_equal(r->status, 200);
    assert_token_for(r, "https://vault.azure.net");
    emu_resp_free(r);

    expect_wi_error(wi_post("other-tenant", cid, "client_credentials", WI_ATYPE, fed,
                            "https%3A%2F%2Fvault.azure.net%2F.default"),
                    400, "invalid_request", 90002);
    expect_wi_error(
        wi_post(tid, cid, "password", WI_ATYPE, fed, "https%3A%2F%2Fvault.azure.net%2F.default"),
        400, "unsupported_grant_type", 70003);
    expect_wi_error(wi_post(tid, "someone-else", "client_credentials", WI_ATYPE, fed,
                            "https%3A%2F%2Fvault.azure.net%2F.default"),
                    400, "unauthorized_client", 700016);
    expect_wi_error(wi_post(tid, cid, "client_credentials", "secret", fed,
                            "https%3A%2F%2Fvault.azure.net%2F.default"),
                    400, "invalid_request", 900144);
    expect_wi_error(wi_post(tid, cid, "client_credentials", WI_ATYPE, "",
                            "https%3A%2F%2Fvault.azure.net%2F.default"),
                    400, "invalid_request", 900144);
    expect_wi_error(wi_post(tid, cid, "client_credentials", WI_ATYPE, "not-a-jwt",
                            "https%3A%2F%2Fvault.azure.net%2F.default"),
                    401, "invalid_client", 700024);
    /* scope without /.default, unknown resource */
    expect_wi_error(
        wi_post(tid, cid, "client_credentials", WI_ATYPE, fed, "https%3A%2F%2Fvault.azure.net"),
        400, "invalid_scope", 70011);
    expect_wi_error(wi_post(tid, cid, "client_credentials", WI_ATYPE, fed,
                            "https%3A%2F%2Fstorage.azure.com%2F.default"),
                    400, "invalid_scope", 70011);
    /* expired federated token; one for another audience */
    fed_token("api://AzureADTokenExchange", now - 5, fed, sizeof(fed));
    expect_wi_error(wi_post(tid, cid, "client_credentials", WI_ATYPE, fed,
                            "https%3A%2F%2Fvault.azure.net%2F.default"),
                    401, "invalid_client", 700024);
    fed_token("https://kubernetes.default.svc", now + 3600, fed, sizeof(fed));
    expect_wi_error(wi_post(tid, cid, "client_credentials", WI_ATYPE, fed,
                            "https%3A%2F%2Fvault.azure.net%2F.default"),
                    401, "invalid_client", 700024);
    /* method and content type */
    char target[128];
    (void)snprintf(target, sizeof(target), "/%s/oauth2/v2.0/token", tid);
    expect_wi_error(emu_get(fx, target, NULL), 405, "invalid_request", 900561);
    const char *json[] = {"Content-Type: application/json", NULL};
    expect_wi_error(emu_http(fx, "POST", target, json, "{}", 2), 400, "invalid_request", 900144);
}

int
main(void)
{
    ahg_log_setup("test", AHG_LOG_FORMAT_TEXT, AHG_LOG_LVL_ERROR, 2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity_issue_claims),
        cmocka_unit_test(test_identity_verify_rejects),
        cmocka_unit_test(test_identity_configured_secret_and_role),
        cmocka_unit_test_setup_teardown(test_identity_appservice, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_identity_appservice_errors, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_identity_legacy_msi, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_identity_imds, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_identity_workload, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
