/*
 * test_arm_kv.c - ahg/arm.h and ahg/keyvault.h against the emulator's ARM, identity and Key
 * Vault endpoints: hybrid connection PUT/GET/list (several pages)/DELETE with userMetadata,
 * listKeys/regenerateKeys, retries on 429/5xx (with Retry-After) until success or until the
 * retries run out, cancellation, Key Vault secrets (found, absent, rotated), and the controller
 * taking its API keys from Key Vault.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ahg/arm.h"
#include "ahg/azid.h"
#include "ahg/egress.h"
#include "ahg/err.h"
#include "ahg/keyvault.h"
#include "ctl_it.h"
#include "emu_int.h"

static struct cit C;
static struct ahg_azid *ID;
static struct ahg_arm *ARM;
static struct ahg_kv *KV;

static int
setup(void **state)
{
    (void)state;
    cit_start(&C, NULL);
    char idurl[160], arm[128];
    (void)snprintf(idurl, sizeof(idurl), "http://127.0.0.1:%d/metadata/identity/oauth2/token",
                   emu_identity_port(C.t.e));
    (void)snprintf(arm, sizeof(arm), "http://127.0.0.1:%d", emu_mgmt_port(C.t.e));
    struct ahg_azid_opts io = {.kind = AHG_AZID_IMDS, .endpoint = idurl};
    int err = 0;
    ID = ahg_azid_new(C.t.loop, C.eg, &io, &err);
    assert_non_null(ID);
    struct ahg_arm_opts ao = {
        .base_url = arm,
        .subscription = "00000000-0000-0000-0000-000000000000",
        .resource_group = "azhexgate",
        .namespace_name = TH_NS,
        .max_retries = 3,
        .backoff_ms = 10,
        .max_backoff_ms = 1500,
    };
    ARM = ahg_arm_new(C.t.loop, C.eg, ID, &ao, &err);
    assert_non_null(ARM);
    struct ahg_kv_opts ko = {.vault_url = arm, .backoff_ms = 10};
    KV = ahg_kv_new(C.t.loop, C.eg, ID, &ko, &err);
    assert_non_null(KV);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    ahg_kv_free(KV);
    ahg_arm_free(ARM);
    ahg_azid_free(ID);
    cit_stop(&C);
    return 0;
}

struct res {
    bool done;
    int err, status;
    unsigned attempts;
    size_t nhcs;
    char um[1100];
    char name[300];
    char k1[300], k2[300];
};

static void
on_arm(const struct ahg_arm_result *r, void *ud)
{
    struct res *x = ud;
    x->done = true;
    x->err = r->err;
    x->status = r->status;
    x->attempts = r->attempts;
    x->nhcs = r->nhcs;
    if (r->nhcs) {
        (void)snprintf(x->um, sizeof(x->um), "%s", r->hcs[0].user_metadata);
        (void)snprintf(x->name, sizeof(x->name), "%s", r->hcs[0].name);
    }
    (void)snprintf(x->k1, sizeof(x->k1), "%s", r->primary_key);
    (void)snprintf(x->k2, sizeof(x->k2), "%s", r->secondary_key);
}

static bool
res_done(void *arg)
{
    return ((struct res *)arg)->done;
}

static void
wait_res(struct res *x)
{
    assert_true(th_wait(&C.t, res_done, x, 20000));
}

static void
test_arm_hc_crud(void **state)
{
    (void)state;
    struct res x = {0};
    assert_int_equal(ahg_arm_hc_put(ARM, "t-one", "{\"owner\":\"t\"}", on_arm, &x, NULL), AHG_OK);
    assert_false(x.done); /* never from inside the call */
    wait_res(&x);
    assert_int_equal(x.err, AHG_OK);
    assert_string_equal(x.name, "t-one");
    assert_string_equal(x.um, "{\"owner\":\"t\"}");
    assert_true(cit_hc_exists(&C, "t-one"));

    memset(&x, 0, sizeof(x));
    assert_int_equal(ahg_arm_hc_get(ARM, "t-one", on_arm, &x, NULL), AHG_OK);
    wait_res(&x);
    assert_int_equal(x.err, AHG_OK);
    assert_string_equal(x.um, "{\"owner\":\"t\"}");

    memset(&x, 0, sizeof(x));
    assert_int_equal(ahg_arm_hc_get(ARM, "t-absent", on_arm, &x, NULL), AHG_OK);
    wait_res(&x);
    assert_int_equal(x.err, AHG_ENOTFOUND);
    assert_int_equal(x.status, 404);

    /* more than a page (the emulator pages by 100) */
    bool created;
    int err;
    for (int i = 0; i < 130; i++) {
        char n[32];
        (void)snprintf(n, sizeof(n), "bulk-%03d", i);
        assert_non_null(emu_hc_put(C.t.e, n, true, NULL, &created, &err));
    }
    memset(&x, 0, sizeof(x));
    assert_int_equal(ahg_arm_hc_list(ARM, 0, on_arm, &x, NULL), AHG_OK);
    wait_res(&x);
    assert_int_equal(x.err, AHG_OK);
    assert_true(x.nhcs >= 131 + 3);

    memset(&x, 0, sizeof(x));
    assert_int_equal(ahg_arm_hc_delete(ARM, "t-one", on_arm, &x, NULL), AHG_OK);
    wait_res(&x);
    assert_int_equal(x.err, AHG_OK);
    assert_false(cit_hc_exists(&C, "t-one"));
    /* deleting what is gone is success */
    memset(&x, 0, sizeof(x));
    assert_int_equal(ahg_arm_hc_delete(ARM, "t-one", on_arm, &x, NULL), AHG_OK);
    wait_res(&x);
    assert_int_equal(x.err, AHG_OK);
    for (int i = 0; i < 130; i++) {
        char n[32];
        (void)snprintf(n, sizeof(n), "bulk-%03d", i);
        (void)emu_hc_delete(C.t.e, n);
    }
    assert_int_equal(ahg_arm_hc_put(ARM, "", NULL, on_arm, &x, NULL), AHG_EINVAL);
}

static void
test_arm_keys(void **state)
{
    (void)state;
    struct res x = {0};
    assert_int_equal(ahg_arm_list_keys(ARM, TH_RULE, on_arm, &x, NULL), AHG_OK);
    wait_res(&x);
    assert_int_equal(x.err, AHG_OK);
    assert_string_equal(x.k1, TH_KEY);
    char old2[300];
    memcpy(old2, x.k2, sizeof(old2));
    memset(&x, 0, sizeof(x));
    assert_int_equal(ahg_arm_regenerate_keys(ARM, TH_RULE, true, on_arm, &x, NULL), AHG_OK);
    wait_res(&x);
    assert_int_equal(x.err, AHG_OK);
    assert_string_equal(x.k1, TH_KEY);
    assert_string_not_equal(x.k2, old2);
    memset(&x, 0, sizeof(x));
    assert_int_equal(ahg_arm_list_keys(ARM, "NoSuchRule", on_arm, &x, NULL), AHG_OK);
    wait_res(&x);
    assert_int_equal(x.err, AHG_ENOTFOUND);
}

static void
fault(const char *method, int status, unsigned count)
{
    (void)snprintf(C.t.e->fault.method, sizeof(C.t.e->fault.method), "%s", method);
    C.t.e->fault.status = status;
    C.t.e->fault.remaining = count;
}

static void
test_arm_retries(void **state)
{
    (void)state;
    struct res x = {0};
    /* 429 twice (with Retry-After: 1), then success */
    fault("PUT", 429, 2);
    assert_int_equal(ahg_arm_hc_put(ARM, "t-retry", NULL, on_arm, &x, NULL), AHG_OK);
    wait_res(&x);
    assert_int_equal(x.err, AHG_OK);
    assert_int_equal(x.attempts, 3);
    /* 503 more often than the retries: reported */
    memset(&x, 0, sizeof(x));
    fault("GET", 503, 10);
    assert_int_equal(ahg_arm_hc_get(ARM, "t-retry", on_arm, &x, NULL), AHG_OK);
    wait_res(&x);
    assert_int_equal(x.err, AHG_EUNAVAIL);
    assert_int_equal(x.status, 503);
    assert_int_equal(x.attempts, 4);
    /* 400 is not retried */
    memset(&x, 0, sizeof(x));
    fault("DELETE", 400, 1);
    assert_int_equal(ahg_arm_hc_delete(ARM, "t-retry", on_arm, &x, NULL), AHG_OK);
    wait_res(&x);
    assert_int_equal(x.err, AHG_EUPSTREAM);
    assert_int_equal(x.attempts, 1);
    fault("*", 0, 0);
    /* cancelled: the callback never runs */
    memset(&x, 0, sizeof(x));
    struct ahg_arm_op *op = NULL;
    assert_int_equal(ahg_arm_hc_delete(ARM, "t-retry", on_arm, &x, &op), AHG_OK);
    ahg_arm_cancel(op);
    th_run(&C.t, 300);
    assert_false(x.done);
    assert_int_equal(ahg_arm_pending(ARM), 0);
}

struct kres {
    bool done;
    int err;
    char value[256];
};

static void
on_kv(int err, const char *value, size_t len, void *ud)
{
    struct kres *k = ud;
    k->done = true;
    k->err = err;
    if (value)
        (void)snprintf(k->value, sizeof(k->value), "%.*s", (int)len, value);
}

static bool
kres_done(void *arg)
{
    return ((struct kres *)arg)->done;
}

static void
test_keyvault(void **state)
{
    (void)state;
    assert_int_equal(emu_kv_set(C.t.e, "api-keys", "first"), AHG_OK);
    struct kres k = {0};
    assert_int_equal(ahg_kv_get_secret(KV, "api-keys", on_kv, &k), AHG_OK);
    assert_true(th_wait(&C.t, kres_done, &k, 10000));
    assert_int_equal(k.err, AHG_OK);
    assert_string_equal(k.value, "first");
    assert_int_equal(emu_kv_set(C.t.e, "api-keys", "second"), AHG_OK);
    memset(&k, 0, sizeof(k));
    assert_int_equal(ahg_kv_get_secret(KV, "api-keys", on_kv, &k), AHG_OK);
    assert_true(th_wait(&C.t, kres_done, &k, 10000));
    assert_string_equal(k.value, "second");
    memset(&k, 0, sizeof(k));
    assert_int_equal(ahg_kv_get_secret(KV, "absent", on_kv, &k), AHG_OK);
    assert_true(th_wait(&C.t, kres_done, &k, 10000));
    assert_int_equal(k.err, AHG_ENOTFOUND);
    assert_int_equal(ahg_kv_get_secret(KV, "bad/name", on_kv, &k), AHG_EINVAL);
}

static char kv_url[128];

static void
tweak_kv(struct ahg_ctl_opts *o)
{
    (void)snprintf(kv_url, sizeof(kv_url), "http://127.0.0.1:%d", emu_mgmt_port(C.t.e));
    o->api_keys = NULL;
    o->keyvault_url = kv_url;
    o->keyvault_secret = "ctl-keys";
    o->api_keys_refresh_ms = 200;
}

static void
test_controller_keys_from_keyvault(void **state)
{
    (void)state;
    assert_int_equal(emu_kv_set(C.t.e, "ctl-keys", "vault-key-1\nvault-key-2"), AHG_OK);
    cit_ctl_start(&C, 0, tweak_kv);
    struct cit_resp r;
    cit_req(&C, 0, "GET", "/api/tunnels", "vault-key-2", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    cit_resp_free(&r);
    cit_req(&C, 0, "GET", "/api/tunnels", CIT_KEY_A, NULL, NULL, &r);
    assert_int_equal(r.status, 401);
    cit_resp_free(&r);
    /* rotated in the vault: picked up on the next refresh */
    assert_int_equal(emu_kv_set(C.t.e, "ctl-keys", "vault-key-3"), AHG_OK);
    int status = 0;
    for (int i = 0; i < 100 && status != 200; i++) {
        th_run(&C.t, 50);
        cit_req(&C, 0, "GET", "/api/tunnels", "vault-key-3", NULL, NULL, &r);
        status = r.status;
        cit_resp_free(&r);
    }
    assert_int_equal(status, 200);
    cit_req(&C, 0, "GET", "/api/tunnels", "vault-key-1", NULL, NULL, &r);
    assert_int_equal(r.status, 401);
    cit_resp_free(&r);
    cit_ctl_stop(&C, 0, true);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arm_hc_crud),
        cmocka_unit_test(test_arm_keys),
        cmocka_unit_test(test_arm_retries),
        cmocka_unit_test(test_keyvault),
        cmocka_unit_test(test_controller_keys_from_keyvault),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
