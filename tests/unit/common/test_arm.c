/*
 * test_arm.c - ahg/arm.h and ahg/keyvault.h against a scripted HTTP server on the loop (which
 * also plays the IMDS identity endpoint): request shape (method, path, api-version, bearer,
 * body), retries and Retry-After, the 401 token refresh, nextLink to another origin refused,
 * answers that cannot be read, cancellation and free with calls pending, and option checks.
 * The emulator-backed tests are in tests/integration/controller/test_arm_kv.c.
 */
#include "ahg/arm.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ahg/azid.h"
#include "ahg/egress.h"
#include "ahg/err.h"
#include "ahg/httpd.h"
#include "ahg/keyvault.h"
#include "ahg/net.h"

#define MAXQ 16

struct scripted {
    int status;
    const char *extra_name, *extra_value;
    const char *body;
};

static struct {
    struct ahg_loop *loop;
    struct ahg_httpd *srv;
    struct ahg_egress *eg;
    struct ahg_azid *id;
    int port;
    char base[64];
    struct scripted q[MAXQ];
    size_t nq, next;
    unsigned tokens; /* identity requests */
    char seen_method[MAXQ][8];
    char seen_target[MAXQ][512];
    char seen_auth[MAXQ][64];
    char seen_body[MAXQ][256];
    size_t nseen;
    struct ahg_timer tick;
} S;

struct srvreq {
    char body[256];
    size_t len;
};

static void
s_body(struct ahg_httpd_req *r, const char *p, size_t n)
{
    struct srvreq *x = ahg_httpd_req_ud(r);
    size_t room = sizeof(x->body) - 1 - x->len;
    if (n > room)
        n = room;
    memcpy(x->body + x->len, p, n);
    x->len += n;
}

static void
s_end(struct ahg_httpd_req *r)
{
    struct srvreq *x = ahg_httpd_req_ud(r);
    const struct ahg_http_head *h = ahg_httpd_req_head(r);
    const char *path = ahg_httpd_req_path(r);
    if (!strcmp(path, "/token")) {
        S.tokens++;
        char tok[160];
        (void)snprintf(tok, sizeof(tok),
                       "{\"access_token\":\"tok%u\",\"expires_on\":\"%lld\",\"token_type\":"
                       "\"Bearer\"}",
                       S.tokens, (long long)time(NULL) + 3600);
        (void)ahg_httpd_respond(r, 200, "application/json", tok, strlen(tok), NULL);
        return;
    }
    if (S.nseen < MAXQ) {
        (void)snprintf(S.seen_method[S.nseen], 8, "%s", h->method);
        (void)snprintf(S.seen_target[S.nseen], 512, "%s?%s", path, ahg_httpd_req_query(r));
        const char *a = ahg_http_head_get(h, "Authorization", NULL);
        (void)snprintf(S.seen_auth[S.nseen], 64, "%s", a ? a : "");
        (void)snprintf(S.seen_body[S.nseen], 256, "%.*s", (int)x->len, x->body);
        S.nseen++;
    }
    if (S.next >= S.nq) {
        (void)ahg_httpd_respond(r, 500, "text/plain", "script over", 11, NULL);
        return;
    }
    const struct scripted *sc = &S.q[S.next++];
    const char *extra[] = {sc->extra_name, sc->extra_value, NULL};
    (void)ahg_httpd_respond(r, sc->status, sc->body ? "application/json" : NULL, sc->body,
                            sc->body ? strlen(sc->body) : 0, sc->extra_name ? extra : NULL);
}

static void
s_finish(struct ahg_httpd_req *r, bool completed)
{
    (void)completed;
    free(ahg_httpd_req_ud(r));
}

static void
s_request(struct ahg_httpd_req *r)
{
    static const struct ahg_httpd_req_cbs cbs = {
        .on_body = s_body, .on_body_end = s_end, .on_finish = s_finish};
    ahg_httpd_req_set_cbs(r, &cbs, calloc(1, sizeof(struct srvreq)));
}

static void
tick(struct ahg_timer *t)
{
    ahg_timer_start(t, 5);
}

static void
script(const struct scripted *v, size_t n)
{
    memcpy(S.q, v, n * sizeof(*v));
    S.nq = n;
    S.next = 0;
    S.nseen = 0;
}

static int
setup(void **state)
{
    (void)state;
    memset(&S, 0, sizeof(S));
    S.loop = ahg_loop_new(NULL);
    assert_non_null(S.loop);
    struct ahg_httpd_opts o = {.name = "arm-fake", .port = 0, .on_request = s_request};
    int err = 0;
    S.srv = ahg_httpd_new(S.loop, &o, &err);
    assert_non_null(S.srv);
    S.port = ahg_httpd_port(S.srv);
    (void)snprintf(S.base, sizeof(S.base), "http://127.0.0.1:%d", S.port);
    S.eg = ahg_egress_new(S.loop, NULL);
    assert_non_null(S.eg);
    char idurl[96];
    (void)snprintf(idurl, sizeof(idurl), "%s/token", S.base);
    struct ahg_azid_opts io = {.kind = AHG_AZID_IMDS, .endpoint = idurl};
    S.id = ahg_azid_new(S.loop, S.eg, &io, &err);
    assert_non_null(S.id);
    ahg_timer_init(&S.tick, S.loop, tick, NULL);
    ahg_timer_start(&S.tick, 5);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    ahg_timer_stop(&S.tick);
    ahg_azid_free(S.id);
    ahg_egress_free(S.eg);
    ahg_loop_free(S.loop);
    return 0;
}

static struct ahg_arm *
arm_new(unsigned retries)
{
    struct ahg_arm_opts o = {
        .base_url = S.base,
        .subscription = "sub",
        .resource_group = "rg",
        .namespace_name = "ns",
        .max_retries = retries,
        .backoff_ms = 5,
        .max_backoff_ms = 50,
    };
    int err = 0;
    struct ahg_arm *a = ahg_arm_new(S.loop, S.eg, S.id, &o, &err);
    assert_non_null(a);
    return a;
}

struct res {
    bool done;
    int err, status;
    unsigned attempts, retry_after;
    size_t nhcs;
    char name[300], um[AHG_ARM_METADATA_MAX + 1], k1[64], k2[64], kn[64], code[64];
};

static void
on_res(const struct ahg_arm_result *r, void *ud)
{
    struct res *x = ud;
    x->done = true;
    x->err = r->err;
    x->status = r->status;
    x->attempts = r->attempts;
    x->retry_after = r->retry_after_s;
    x->nhcs = r->nhcs;
    if (r->nhcs) {
        (void)snprintf(x->name, sizeof(x->name), "%s", r->hcs[r->nhcs - 1].name);
        (void)snprintf(x->um, sizeof(x->um), "%s", r->hcs[r->nhcs - 1].user_metadata);
    }
    (void)snprintf(x->k1, sizeof(x->k1), "%s", r->primary_key);
    (void)snprintf(x->k2, sizeof(x->k2), "%s", r->secondary_key);
    (void)snprintf(x->kn, sizeof(x->kn), "%s", r->key_name);
    (void)snprintf(x->code, sizeof(x->code), "%s", r->code);
}

static void
wait_done(bool *done)
{
    uint64_t end = ahg_now_ms() + 10000;
    while (!*done && ahg_now_ms() < end)
        ahg_loop_run_once(S.loop);
    assert_true(*done);
}

#define HC_JSON(name, um)                                                                          \
    "{\"name\":\"" name "\",\"properties\":{\"userMetadata\":\"" um                                \
    "\",\"listenerCount\":2,\"createdAt\":\"2026-01-02T03:04:05.1234567Z\"}}"

static void
test_arm_put_shape(void **state)
{
    (void)state;
    struct ahg_arm *a = arm_new(0);
    const struct scripted sc[] = {{.status = 200, .body = HC_JSON("a b", "m")}};
    script(sc, 1);
    struct res x = {0};
    assert_int_equal(ahg_arm_hc_put(a, "a b", "m", on_res, &x, NULL), AHG_OK);
    assert_false(x.done);
    wait_done(&x.done);
    assert_int_equal(x.err, AHG_OK);
    assert_string_equal(x.name, "a b");
    assert_string_equal(x.um, "m");
    assert_string_equal(S.seen_method[0], "PUT");
    assert_string_equal(S.seen_target[0], "/subscriptions/sub/resourceGroups/rg/providers/"
                                          "Microsoft.Relay/namespaces/ns/hybridConnections/"
                                          "a%20b?api-version=2021-11-01");
    assert_string_equal(S.seen_auth[0], "Bearer tok1");
    assert_non_null(strstr(S.seen_body[0], "\"userMetadata\":\"m\""));
    assert_non_null(strstr(S.seen_body[0], "\"requiresClientAuthorization\":true"));
    ahg_arm_free(a);
}

static void
test_arm_retry_after_and_limits(void **state)
{
    (void)state;
    struct ahg_arm *a = arm_new(2);
    const struct scripted sc[] = {
        {.status = 429,
         .extra_name = "Retry-After",
         .extra_value = "0",
         .body = "{\"error\":{\"code\":\"TooMany\",\"message\":\"slow down\"}}"},
        {.status = 409, .body = "{\"error\":{\"code\":\"Conflict\",\"message\":\"busy\"}}"},
        {.status = 200, .body = HC_JSON("h", "")},
    };
    script(sc, 3);
    struct res x = {0};
    assert_int_equal(ahg_arm_hc_get(a, "h", on_res, &x, NULL), AHG_OK);
    wait_done(&x.done);
    assert_int_equal(x.err, AHG_OK);
    assert_int_equal(x.attempts, 3);
    /* out of retries: the last status and ARM's error code are reported */
    const struct scripted sc2[] = {
        {.status = 503, .body = "{\"error\":{\"code\":\"Busy\",\"message\":\"m\"}}"},
        {.status = 503, .body = "{\"error\":{\"code\":\"Busy\",\"message\":\"m\"}}"},
        {.status = 429,
         .extra_name = "Retry-After",
         .extra_value = "1",
         .body = "{\"error\":{\"code\":\"Throttled\",\"message\":\"m\"}}"},
    };
    script(sc2, 3);
    memset(&x, 0, sizeof(x));
    assert_int_equal(ahg_arm_hc_get(a, "h", on_res, &x, NULL), AHG_OK);
    wait_done(&x.done);
    assert_int_equal(x.err, AHG_ERATE);
    assert_int_equal(x.status, 429);
    assert_int_equal(x.retry_after, 1);
    assert_string_equal(x.code, "Throttled");
    /* 404 is final at once */
    const struct scripted sc3[] = {{.status = 404, .body = "{\"error\":{\"code\":\"NotFound\"}}"}};
    script(sc3, 1);
    memset(&x, 0, sizeof(x));
    assert_int_equal(ahg_arm_hc_get(a, "h", on_res, &x, NULL), AHG_OK);
    wait_done(&x.done);
    assert_int_equal(x.err, AHG_ENOTFOUND);
    assert_int_equal(x.attempts, 1);
    /* DELETE of something absent is success */
    script(sc3, 1);
    memset(&x, 0, sizeof(x));
    assert_int_equal(ahg_arm_hc_delete(a, "h", on_res, &x, NULL), AHG_OK);
    wait_done(&x.done);
    assert_int_equal(x.err, AHG_OK);
    ahg_arm_free(a);
}

static void
test_arm_401_refreshes_token(void **state)
{
    (void)state;
    struct ahg_arm *a = arm_new(0);
    const struct scripted sc[] = {
        {.status = 401, .body = "{\"error\":{\"code\":\"InvalidAuthenticationToken\"}}"},
        {.status = 200,
         .body = "{\"primaryKey\":\"K1\",\"secondaryKey\":\"K2\",\"keyName\":\"rule\"}"},
    };
    script(sc, 2);
    unsigned before = S.tokens;
    struct res x = {0};
    assert_int_equal(ahg_arm_list_keys(a, "rule", on_res, &x, NULL), AHG_OK);
    wait_done(&x.done);
    assert_int_equal(x.err, AHG_OK);
    assert_string_equal(x.k1, "K1");
    assert_string_equal(x.k2, "K2");
    assert_string_equal(x.kn, "rule");
    assert_int_equal(S.tokens, before + 1); /* a fresh token after the 401 */
    assert_string_equal(S.seen_method[1], "POST");
    assert_non_null(strstr(S.seen_target[1], "/authorizationRules/rule/listKeys?"));
    assert_string_not_equal(S.seen_auth[0], S.seen_auth[1]);
    /* a second 401 in a row is final */
    const struct scripted sc2[] = {{.status = 401}, {.status = 401}};
    script(sc2, 2);
    memset(&x, 0, sizeof(x));
    assert_int_equal(ahg_arm_regenerate_keys(a, "rule", true, on_res, &x, NULL), AHG_OK);
    wait_done(&x.done);
    assert_int_equal(x.err, AHG_EAUTH);
    assert_string_equal(S.seen_body[0], "{\"keyType\":\"SecondaryKey\"}");
    ahg_arm_free(a);
}

static void
test_arm_list_pages_and_origin(void **state)
{
    (void)state;
    struct ahg_arm *a = arm_new(0);
    char page1[512];
    (void)snprintf(
        page1, sizeof(page1),
        "{\"value\":[" HC_JSON(
            "one", "") "],\"nextLink\":\"%s/subscriptions/sub/"
                       "resourceGroups/rg/providers/Microsoft.Relay/namespaces/ns/hybridConnections"
                       "?api-version=2021-11-01&$skip=1\"}",
        S.base);
    const struct scripted sc[] = {
        {.status = 200, .body = page1},
        {.status = 200, .body = "{\"value\":[" HC_JSON("two", "x") "]}"},
    };
    script(sc, 2);
    struct res x = {0};
    assert_int_equal(ahg_arm_hc_list(a, 0, on_res, &x, NULL), AHG_OK);
    wait_done(&x.done);
    assert_int_equal(x.err, AHG_OK);
    assert_int_equal(x.nhcs, 2);
    assert_string_equal(x.name, "two");
    assert_non_null(strstr(S.seen_target[1], "$skip=1"));
    /* a nextLink elsewhere is refused: the token never leaves */
    const struct scripted sc2[] = {
        {.status = 200,
         .body = "{\"value\":[],\"nextLink\":\"http://evil.example/subscriptions/x\"}"},
    };
    script(sc2, 1);
    memset(&x, 0, sizeof(x));
    assert_int_equal(ahg_arm_hc_list(a, 0, on_res, &x, NULL), AHG_OK);
    wait_done(&x.done);
    assert_int_equal(x.err, AHG_EUPSTREAM);
    assert_int_equal(S.nseen, 1);
    /* max_items */
    script(sc, 2);
    memset(&x, 0, sizeof(x));
    assert_int_equal(ahg_arm_hc_list(a, 1, on_res, &x, NULL), AHG_OK);
    wait_done(&x.done);
    assert_int_equal(x.err, AHG_ELIMIT);
    /* garbage */
    const struct scripted sc3[] = {{.status = 200, .body = "not json"}};
    script(sc3, 1);
    memset(&x, 0, sizeof(x));
    assert_int_equal(ahg_arm_hc_get(a, "h", on_res, &x, NULL), AHG_OK);
    wait_done(&x.done);
    assert_int_equal(x.err, AHG_EUPSTREAM);
    ahg_arm_free(a);
}

static void
test_arm_cancel_free_and_options(void **state)
{
    (void)state;
    struct ahg_arm *a = arm_new(0);
    const struct scripted sc[] = {{.status = 200, .body = HC_JSON("h", "")},
                                  {.status = 200, .body = HC_JSON("h", "")}};
    script(sc, 2);
    struct res x = {0}, y = {0};
    struct ahg_arm_op *op = NULL;
    assert_int_equal(ahg_arm_hc_get(a, "h", on_res, &x, &op), AHG_OK);
    assert_non_null(op);
    ahg_arm_cancel(op);
    assert_int_equal(ahg_arm_hc_get(a, "h", on_res, &y, NULL), AHG_OK);
    assert_int_equal(ahg_arm_pending(a), 1);
    ahg_arm_free(a); /* y reports ECLOSED now */
    assert_true(y.done);
    assert_int_equal(y.err, AHG_ECLOSED);
    assert_false(x.done);
    for (int i = 0; i < 50; i++)
        ahg_loop_run_once(S.loop);
    assert_false(x.done);

    int err = 0;
    struct ahg_arm_opts o = {.base_url = S.base, .subscription = "s", .resource_group = "r"};
    assert_null(ahg_arm_new(S.loop, S.eg, S.id, &o, &err));
    assert_int_equal(err, AHG_EINVAL);
    o.namespace_name = "a/b";
    assert_null(ahg_arm_new(S.loop, S.eg, S.id, &o, &err));
    o.namespace_name = "ns";
    o.base_url = "ftp://x";
    assert_null(ahg_arm_new(S.loop, S.eg, S.id, &o, &err));
    a = arm_new(0);
    char longname[AHG_ARM_NAME_MAX + 2];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(ahg_arm_hc_get(a, longname, on_res, &x, NULL), AHG_EINVAL);
    assert_int_equal(ahg_arm_hc_delete(a, "", on_res, &x, NULL), AHG_EINVAL);
    assert_int_equal(ahg_arm_list_keys(a, NULL, on_res, &x, NULL), AHG_EINVAL);
    ahg_arm_free(a);
}

struct kres {
    bool done;
    int err;
    char v[64];
};

static void
on_kv(int err, const char *value, size_t len, void *ud)
{
    struct kres *k = ud;
    k->done = true;
    k->err = err;
    if (value)
        (void)snprintf(k->v, sizeof(k->v), "%.*s", (int)len, value);
}

static void
test_keyvault_get(void **state)
{
    (void)state;
    struct ahg_kv_opts o = {.vault_url = S.base, .backoff_ms = 5};
    int err = 0;
    struct ahg_kv *kv = ahg_kv_new(S.loop, S.eg, S.id, &o, &err);
    assert_non_null(kv);
    const struct scripted sc[] = {
        {.status = 503},
        {.status = 200, .body = "{\"value\":\"s3cret\",\"id\":\"x\"}"},
    };
    script(sc, 2);
    struct kres k = {0};
    assert_int_equal(ahg_kv_get_secret(kv, "api-keys", on_kv, &k), AHG_OK);
    wait_done(&k.done);
    assert_int_equal(k.err, AHG_OK);
    assert_string_equal(k.v, "s3cret");
    assert_string_equal(S.seen_target[1], "/secrets/api-keys?api-version=7.4");
    const struct scripted sc2[] = {{.status = 404}};
    script(sc2, 1);
    memset(&k, 0, sizeof(k));
    assert_int_equal(ahg_kv_get_secret(kv, "nope", on_kv, &k), AHG_OK);
    wait_done(&k.done);
    assert_int_equal(k.err, AHG_ENOTFOUND);
    const struct scripted sc3[] = {{.status = 200, .body = "{\"novalue\":1}"}};
    script(sc3, 1);
    memset(&k, 0, sizeof(k));
    assert_int_equal(ahg_kv_get_secret(kv, "x", on_kv, &k), AHG_OK);
    wait_done(&k.done);
    assert_int_equal(k.err, AHG_EUPSTREAM);
    assert_int_equal(ahg_kv_get_secret(kv, "a/b", on_kv, &k), AHG_EINVAL);
    assert_int_equal(ahg_kv_get_secret(kv, "", on_kv, &k), AHG_EINVAL);
    memset(&k, 0, sizeof(k));
    assert_int_equal(ahg_kv_get_secret(kv, "pending", on_kv, &k), AHG_OK);
    ahg_kv_free(kv);
    assert_true(k.done);
    assert_int_equal(k.err, AHG_ECLOSED);
    struct ahg_kv_opts bad = {.vault_url = "vault"};
    assert_null(ahg_kv_new(S.loop, S.eg, S.id, &bad, &err));
    assert_int_equal(err, AHG_EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arm_put_shape),
        cmocka_unit_test(test_arm_retry_after_and_limits),
        cmocka_unit_test(test_arm_401_refreshes_token),
        cmocka_unit_test(test_arm_list_pages_and_origin),
        cmocka_unit_test(test_arm_cancel_free_and_options),
        cmocka_unit_test(test_keyvault_get),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
