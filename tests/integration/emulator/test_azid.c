/*
 * ahg/azid.h against the real emulator (in-process, on the test's loop, HTTP over 127.0.0.1):
 * App Service, IMDS and AKS workload-identity sources; the cache, the shared in-flight request,
 * invalidation, background refresh, errors. Tokens are checked with the emulator's own
 * verifier, i.e. the relay and ARM would accept them.
 */
#include "ahg/azid.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ahg/crypto.h"
#include "ahg/egress.h"
#include "ahg/err.h"
#include "emu_int.h"
#include "harness.h"

struct fx {
    struct th t;
    struct ahg_egress *eg;
    struct ahg_azid *id;
    char url[128];
    char token_file[64];
};

struct got {
    bool done;
    bool returned;
    bool inside;
    int calls;
    int err;
    char token[8192];
    int64_t exp;
};

static void
got_cb(int err, const char *token, int64_t expires_on, void *ud)
{
    struct got *g = ud;
    g->done = true;
    g->calls++;
    g->inside = !g->returned;
    g->err = err;
    g->exp = expires_on;
    (void)snprintf(g->token, sizeof(g->token), "%s", token ? token : "");
}

static bool
cond_done(void *arg)
{
    return ((struct got *)arg)->done;
}

/* ahg_azid_get and wait for its answer. */
static void
get_wait(struct fx *f, const char *resource, struct got *g)
{
    memset(g, 0, sizeof(*g));
    assert_int_equal(ahg_azid_get(f->id, resource, got_cb, g), AHG_OK);
    g->returned = true;
    assert_true(th_wait(&f->t, cond_done, g, 15000));
    assert_false(g->inside);
    assert_int_equal(g->calls, 1);
}

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    th_start(&f->t, NULL);
    f->eg = ahg_egress_new(f->t.loop, NULL);
    assert_non_null(f->eg);
    (void)snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d",
                   ahg_httpd_port(f->t.e->identity_srv));
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;
    ahg_azid_free(f->id);
    ahg_egress_free(f->eg);
    th_stop(&f->t);
    if (f->token_file[0])
        (void)unlink(f->token_file);
    free(f);
    return 0;
}

static void
new_id(struct fx *f, const struct ahg_azid_opts *o)
{
    int err = -1;
    f->id = ahg_azid_new(f->t.loop, f->eg, o, &err);
    assert_non_null(f->id);
    assert_int_equal(err, AHG_OK);
    assert_int_equal(ahg_azid_kind(f->id), o->kind);
}

static void
new_appservice(struct fx *f, const char *header)
{
    char ep[160];
    (void)snprintf(ep, sizeof(ep), "%s/msi/token", f->url);
    struct ahg_azid_opts o = {
        .kind = AHG_AZID_APPSERVICE, .endpoint = ep, .identity_header = header};
    new_id(f, &o);
}

static void
expect_valid(struct fx *f, const struct got *g, const char *audience)
{
    assert_int_equal(g->err, AHG_OK);
    assert_true(g->exp > (int64_t)time(NULL));
    unsigned rights = 0;
    long long exp = 0;
    assert_int_equal(emu_identity_verify(f->t.e, g->token, audience, &rights, &exp), AHG_OK);
    assert_int_equal((int64_t)exp, g->exp);
}

static void
test_azid_appservice_cache_and_shared_request(void **state)
{
    struct fx *f = *state;
    new_appservice(f, f->t.e->identity_header);
    assert_string_equal(ahg_azid_kind_name(ahg_azid_kind(f->id)), "appservice");
    uint64_t issued = f->t.e->m_tokens_issued;
    struct got a, b;
    get_wait(f, "https://relay.azure.net/", &a);
    expect_valid(f, &a, "https://relay.azure.net");
    assert_int_equal(f->t.e->m_tokens_issued, issued + 1);
    /* cached: same token, no new request, still answered from a later loop turn */
    get_wait(f, "https://relay.azure.net/", &b);
    assert_string_equal(a.token, b.token);
    assert_int_equal(f->t.e->m_tokens_issued, issued + 1);
    /* two gets for a new resource share one request */
    struct got c = {0}, d = {0};
    assert_int_equal(ahg_azid_get(f->id, "https://management.azure.com/", got_cb, &c), AHG_OK);
    assert_int_equal(ahg_azid_get(f->id, "https://management.azure.com/", got_cb, &d), AHG_OK);
    c.returned = d.returned = true;
    assert_true(th_wait(&f->t, cond_done, &c, 15000));
    assert_true(th_wait(&f->t, cond_done, &d, 15000));
    assert_string_equal(c.token, d.token);
    expect_valid(f, &c, "https://management.azure.com/");
    assert_int_equal(f->t.e->m_tokens_issued, issued + 2);
    /* invalidate: the next get fetches again */
    ahg_azid_invalidate(f->id, "https://relay.azure.net/");
    get_wait(f, "https://relay.azure.net/", &b);
    expect_valid(f, &b, "https://relay.azure.net");
    assert_int_equal(f->t.e->m_tokens_issued, issued + 3);
}

static void
test_azid_imds(void **state)
{
    struct fx *f = *state;
    char ep[160];
    (void)snprintf(ep, sizeof(ep), "%s/metadata/identity/oauth2/token", f->url);
    struct ahg_azid_opts o = {.kind = AHG_AZID_IMDS, .endpoint = ep};
    new_id(f, &o);
    struct got g;
    get_wait(f, "https://vault.azure.net", &g);
    expect_valid(f, &g, "https://vault.azure.net");
    /* a user-assigned identity the emulator does not have */
    ahg_azid_free(f->id);
    o.client_id = "00000000-0000-0000-0000-000000000000";
    new_id(f, &o);
    get_wait(f, "https://vault.azure.net", &g);
    assert_int_equal(g.err, AHG_EAUTH);
    ahg_azid_free(f->id);
    o.client_id = f->t.e->identity_client_id;
    new_id(f, &o);
    get_wait(f, "https://vault.azure.net", &g);
    expect_valid(f, &g, "https://vault.azure.net");
}

/* Writes a federated (service account) token: header.payload.signature, aud and exp set. */
static void
write_fed_token(struct fx *f, const char *aud, long long exp)
{
    if (!f->token_file[0])
        (void)snprintf(f->token_file, sizeof(f->token_file), "/tmp/ahg-azid-fed-%d", (int)getpid());
    char payload[256], p64[512], h64[128];
    (void)snprintf(payload, sizeof(payload),
                   "{\"aud\":[\"%s\"],\"exp\":%lld,\"iss\":\"https://oidc.example\","
                   "\"sub\":\"system:serviceaccount:ahg:gateway\"}",
                   aud, exp);
    const char *hdr = "{\"alg\":\"RS256\",\"kid\":\"k1\"}";
    assert_int_equal(ahg_base64url_encode(hdr, strlen(hdr), h64, sizeof(h64)), AHG_OK);
    assert_int_equal(ahg_base64url_encode(payload, strlen(payload), p64, sizeof(p64)), AHG_OK);
    FILE *fp = fopen(f->token_file, "w");
    assert_non_null(fp);
    (void)fprintf(fp, "%s.%s.c2lnbmF0dXJl\n", h64, p64);
    assert_int_equal(fclose(fp), 0);
}

static void
new_workload(struct fx *f, const char *tenant)
{
    char ep[160];
    (void)snprintf(ep, sizeof(ep), "%s/", f->url); /* trailing '/' as AKS sets it */
    struct ahg_azid_opts o = {.kind = AHG_AZID_WORKLOAD,
                              .endpoint = ep,
                              .client_id = f->t.e->identity_client_id,
                              .tenant_id = tenant,
                              .token_file = f->token_file};
    new_id(f, &o);
}

static void
test_azid_workload(void **state)
{
    struct fx *f = *state;
    write_fed_token(f, "api://AzureADTokenExchange", (long long)time(NULL) + 3600);
    new_workload(f, f->t.e->identity_tenant);
    struct got g;
    get_wait(f, "https://relay.azure.net/", &g);
    expect_valid(f, &g, "https://relay.azure.net");
    get_wait(f, "https://management.azure.com/", &g);
    expect_valid(f, &g, "https://management.azure.com");
    /* the file is re-read on every exchange: an expired federated token is refused */
    write_fed_token(f, "api://AzureADTokenExchange", (long long)time(NULL) - 10);
    get_wait(f, "https://vault.azure.net", &g);
    assert_int_equal(g.err, AHG_EAUTH);
    /* and a token for another audience */
    write_fed_token(f, "https://kubernetes.default.svc", (long long)time(NULL) + 3600);
    get_wait(f, "https://vault.azure.net", &g);
    assert_int_equal(g.err, AHG_EAUTH);
    /* a missing file */
    (void)unlink(f->token_file);
    get_wait(f, "https://vault.azure.net", &g);
    assert_int_equal(g.err, AHG_EAUTH);
    /* another tenant */
    write_fed_token(f, "api://AzureADTokenExchange", (long long)time(NULL) + 3600);
    ahg_azid_free(f->id);
    new_workload(f, "11111111-2222-3333-4444-555555555555");
    get_wait(f, "https://vault.azure.net", &g);
    assert_int_equal(g.err, AHG_EAUTH);
}

static void
test_azid_errors(void **state)
{
    struct fx *f = *state;
    new_appservice(f, "wrong-header");
    struct got g;
    get_wait(f, "https://relay.azure.net/", &g);
    assert_int_equal(g.err, AHG_EAUTH);
    assert_string_equal(g.token, "");
    ahg_azid_free(f->id);
    new_appservice(f, f->t.e->identity_header);
    get_wait(f, "https://storage.azure.com/", &g); /* a resource the emulator does not know */
    assert_int_equal(g.err, AHG_EAUTH);
    ahg_azid_free(f->id);
    /* nothing listens there */
    struct ahg_azid_opts o = {.kind = AHG_AZID_IMDS,
                              .endpoint = "http://127.0.0.1:1/metadata/identity/oauth2/token"};
    new_id(f, &o);
    get_wait(f, "https://relay.azure.net/", &g);
    assert_int_equal(g.err, AHG_EUNAVAIL);
    ahg_azid_free(f->id);
    /* a server that accepts and never answers: the request times out */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(lfd, 8), 0);
    socklen_t alen = sizeof(a);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);
    char ep[128];
    (void)snprintf(ep, sizeof(ep), "http://127.0.0.1:%d/metadata/identity/oauth2/token",
                   ntohs(a.sin_port));
    o.endpoint = ep;
    o.timeout_ms = 300;
    new_id(f, &o);
    get_wait(f, "https://relay.azure.net/", &g);
    assert_int_equal(g.err, AHG_ETIMEDOUT);
    (void)close(lfd);
    /* bad arguments */
    assert_int_equal(ahg_azid_get(f->id, "", got_cb, &g), AHG_EINVAL);
    assert_int_equal(ahg_azid_get(f->id, "https://relay.azure.net/", NULL, NULL), AHG_EINVAL);
}

static void
test_azid_config(void **state)
{
    struct fx *f = *state;
    (void)unsetenv("IDENTITY_ENDPOINT");
    (void)unsetenv("IDENTITY_HEADER");
    (void)unsetenv("AZURE_FEDERATED_TOKEN_FILE");
    (void)unsetenv("AZURE_CLIENT_ID");
    (void)unsetenv("AZURE_TENANT_ID");
    int err = 0;
    struct ahg_azid_opts o = {.kind = AHG_AZID_APPSERVICE};
    assert_null(ahg_azid_new(f->t.loop, f->eg, &o, &err));
    assert_int_equal(err, AHG_ECONFIG);
    o.kind = AHG_AZID_WORKLOAD;
    o.token_file = "/nonexistent";
    assert_null(ahg_azid_new(f->t.loop, f->eg, &o, &err));
    assert_int_equal(err, AHG_ECONFIG);
    o = (struct ahg_azid_opts){.kind = AHG_AZID_IMDS, .endpoint = "ftp://x"};
    assert_null(ahg_azid_new(f->t.loop, f->eg, &o, &err));
    assert_int_equal(err, AHG_ECONFIG);
    /* AUTO: environment decides */
    o = (struct ahg_azid_opts){0};
    struct ahg_azid *id = ahg_azid_new(f->t.loop, f->eg, &o, &err);
    assert_non_null(id);
    assert_int_equal(ahg_azid_kind(id), AHG_AZID_IMDS);
    ahg_azid_free(id);
    assert_int_equal(setenv("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token", 1), 0);
    assert_int_equal(setenv("IDENTITY_HEADER", "h", 1), 0);
    id = ahg_azid_new(f->t.loop, f->eg, &o, &err);
    assert_non_null(id);
    assert_int_equal(ahg_azid_kind(id), AHG_AZID_APPSERVICE);
    ahg_azid_free(id);
    assert_int_equal(setenv("AZURE_FEDERATED_TOKEN_FILE", "/tmp/x", 1), 0);
    assert_int_equal(setenv("AZURE_CLIENT_ID", "c", 1), 0);
    assert_int_equal(setenv("AZURE_TENANT_ID", "t", 1), 0);
    id = ahg_azid_new(f->t.loop, f->eg, &o, &err);
    assert_non_null(id);
    assert_int_equal(ahg_azid_kind(id), AHG_AZID_WORKLOAD);
    ahg_azid_free(id);
    (void)unsetenv("IDENTITY_ENDPOINT");
    (void)unsetenv("IDENTITY_HEADER");
    (void)unsetenv("AZURE_FEDERATED_TOKEN_FILE");
    (void)unsetenv("AZURE_CLIENT_ID");
    (void)unsetenv("AZURE_TENANT_ID");
}

static bool
cond_issued(void *arg)
{
    struct fx *f = arg;
    return f->t.e->m_tokens_issued >= 2;
}

/* A short-lived token is refreshed in the background, before anyone asks. */
static void
test_azid_background_refresh(void **state)
{
    struct fx *f = *state;
    f->t.e->token_lifetime_s = 4; /* below the option's minimum, set in-process for the test */
    new_appservice(f, f->t.e->identity_header);
    f->t.e->m_tokens_issued = 0;
    struct got a, b;
    get_wait(f, "https://relay.azure.net/", &a);
    expect_valid(f, &a, "https://relay.azure.net");
    assert_int_equal(f->t.e->m_tokens_issued, 1);
    /* refresh at half the lifetime: wait for the emulator to issue the second token */
    assert_true(th_wait(&f->t, cond_issued, f, 10000));
    th_run(&f->t, 100); /* its answer reaches the cache */
    get_wait(f, "https://relay.azure.net/", &b);
    expect_valid(f, &b, "https://relay.azure.net");
    assert_int_equal(f->t.e->m_tokens_issued, 2); /* served from the refreshed cache */
    assert_true(b.exp >= a.exp);
}

/* Freeing runs pending callbacks with AHG_ECLOSED. */
static void
test_azid_free_pending(void **state)
{
    struct fx *f = *state;
    new_appservice(f, f->t.e->identity_header);
    struct got a = {0}, b = {0};
    get_wait(f, "https://relay.azure.net/", &a);
    memset(&a, 0, sizeof(a));
    assert_int_equal(ahg_azid_get(f->id, "https://relay.azure.net/", got_cb, &a), AHG_OK);
    assert_int_equal(ahg_azid_get(f->id, "https://vault.azure.net", got_cb, &b), AHG_OK);
    ahg_azid_free(f->id);
    f->id = NULL;
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.err, AHG_ECLOSED);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.err, AHG_ECLOSED);
    th_run(&f->t, 200); /* nothing else arrives */
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_azid_appservice_cache_and_shared_request, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_azid_imds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_azid_workload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_azid_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_azid_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_azid_background_refresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_azid_free_pending, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
