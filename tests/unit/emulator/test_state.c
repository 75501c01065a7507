/*
 * state.c: the namespace model built from options, hybrid connections (segment-prefix match,
 * create/update/delete), authorization rules (limits, rights, keys).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "emu_mgmt_testlib.h"

static bool
key_ok(const char *k)
{
    unsigned char raw[64];
    size_t n = 0;
    return strlen(k) == EMU_KEY_LEN &&
           ahg_base64_decode(k, strlen(k), raw, sizeof(raw), &n) == AHG_OK && n == 32;
}

static void
test_state_defaults(void **state)
{
    (void)state;
    struct emu *e = emu_test_new(NULL, NULL);
    assert_non_null(e);
    assert_string_equal(e->ns.name, "ahg-local");
    assert_string_equal(e->ns.host, "ahg-local.servicebus.windows.net");
    assert_string_equal(e->ns.subscription, "00000000-0000-0000-0000-000000000000");
    assert_string_equal(e->ns.resource_group, "azhexgate");
    assert_string_equal(e->ns.location, "westeurope");
    assert_true(e->ns.created > 0);
    assert_null(e->ns.hcs);
    assert_int_equal(e->ns.nhcs, 0);
    struct emu_rule *root = emu_rule_find(e, NULL, "RootManageSharedAccessKey");
    assert_non_null(root);
    assert_ptr_equal(root, e->ns.rules);
    assert_null(root->next);
    assert_int_equal(root->rights, EMU_RIGHT_LISTEN | EMU_RIGHT_SEND | EMU_RIGHT_MANAGE);
    assert_true(key_ok(root->primary));
    assert_true(key_ok(root->secondary));
    assert_string_not_equal(root->primary, root->secondary);
    /* rule names are looked up case-insensitively, as the service does */
    assert_ptr_equal(emu_rule_find(e, NULL, "rootmanagesharedaccesskey"), root);
    emu_test_free(e);

    /* a second emulator gets other random keys */
    struct emu *e2 = emu_test_new(NULL, NULL);
    struct emu *e3 = emu_test_new(NULL, NULL);
    assert_string_not_equal(e2->ns.rules->primary, e3->ns.rules->primary);
    emu_test_free(e2);
    emu_test_free(e3);
}

static void
test_state_options(void **state)
{
    (void)state;
    const char *flags[] = {"--emulator-namespace=MyRelay01",
                           "--emulator-subscription=11111111-2222-3333-4444-555555555555",
                           "--emulator-resource-group=rg1",
                           "--emulator-location=northeurope",
                           "--emulator-root-key=XmNd2Wq7Lr4Tz9Pb1Vc6Ys3Hf8Jk0Ga5Ue2Io7Rw4Q=",
                           "--emulator-hybrid-connections=hyco",
                           "--emulator-hybrid-connections=open:noauth",
                           "--emulator-hybrid-connections=tenants/a",
                           NULL};
    struct emu *e = emu_test_new(NULL, flags);
    assert_non_null(e);
    assert_string_equal(e->ns.name, "MyRelay01");
    assert_string_equal(e->ns.host, "myrelay01.servicebus.windows.net"); /* lower-cased */
    assert_string_equal(e->ns.subscription, "11111111-2222-3333-4444-555555555555");
    assert_string_equal(e->ns.resource_group, "rg1");
    assert_string_equal(e->ns.location, "northeurope");
    assert_string_equal(e->ns.rules->primary, "XmNd2Wq7Lr4Tz9Pb1Vc6Ys3Hf8Jk0Ga5Ue2Io7Rw4Q=");
    assert_true(key_ok(e->ns.rules->secondary));
    assert_int_equal(e->ns.nhcs, 3);
    struct emu_hc *hyco = emu_hc_find(e, "hyco"), *open = emu_hc_find(e, "open");
    struct emu_hc *ta = emu_hc_find(e, "tenants/a");
    assert_non_null(hyco);
    assert_non_null(open);
    assert_non_null(ta);
    assert_true(hyco->requires_client_auth);
    assert_false(open->requires_client_auth);
    assert_true(ta->requires_client_auth);
    /* creation order is kept */
    assert_ptr_equal(e->ns.hcs, hyco);
    assert_ptr_equal(hyco->next, open);
    assert_ptr_equal(open->next, ta);
    assert_null(hyco->user_metadata);
    assert_null(hyco->rules);
    emu_test_free(e);

    const char *host[] = {"--emulator-namespace-host=relay.localhost", NULL};
    e = emu_test_new(NULL, host);
    assert_string_equal(e->ns.host, "relay.localhost");
    emu_test_free(e);
}

static void
test_state_bad_options(void **state)
{
    (void)state;
    const char *bad_suffix[] = {"--emulator-hybrid-connections=x:open", NULL};
    assert_null(emu_test_new(NULL, bad_suffix));
    const char *bad_hc[] = {"--emulator-hybrid-connections=a//b", NULL};
    assert_null(emu_test_new(NULL, bad_hc));
    const char *bad_hc2[] = {"--emulator-hybrid-connections=/a", NULL};
    assert_null(emu_test_new(NULL, bad_hc2));
    const char *bad_hc3[] = {"--emulator-hybrid-connections=a b", NULL};
    assert_null(emu_test_new(NULL, bad_hc3));
    const char *bad_ns[] = {"--emulator-namespace=1abcdef", NULL}; /* must start with a letter */
    assert_null(emu_test_new(NULL, bad_ns));
    const char *short_ns[] = {"--emulator-namespace=abc", NULL}; /* 6-50 chars */
    assert_null(emu_test_new(NULL, short_ns));
    const char *bad_key[] = {"--emulator-root-key=has space", NULL};
    assert_null(emu_test_new(NULL, bad_key));
    const char *long_key[] = {"--emulator-root-key=XmNd2Wq7Lr4Tz9Pb1Vc6Ys3Hf8Jk0Ga5Ue2Io7Rw4Q=XY",
                              NULL}; /* 45 chars */
    assert_null(emu_test_new(NULL, long_key));
}

static void
test_state_hc_match_longest_segment_prefix(void **state)
{
    (void)state;
    const char *flags[] = {"--emulator-hybrid-connections=a", "--emulator-hybrid-connections=a/b",
                           "--emulator-hybrid-connections=ab", NULL};
    struct emu *e = emu_test_new(NULL, flags);
    assert_non_null(e);
    struct emu_hc *a = emu_hc_find(e, "a"), *ab_ = emu_hc_find(e, "a/b"),
                  *ab = emu_hc_find(e, "ab");
    const char *rest = NULL;
    assert_ptr_equal(emu_hc_match(e, "a/b/c", &rest), ab_);
    assert_string_equal(rest, "/c");
    assert_ptr_equal(emu_hc_match(e, "a/b", &rest), ab_);
    assert_string_equal(rest, "");
    assert_ptr_equal(emu_hc_match(e, "a/bc", &rest), a);
    assert_string_equal(rest, "/bc");
    assert_ptr_equal(emu_hc_match(e, "a", &rest), a);
    assert_string_equal(rest, "");
    assert_ptr_equal(emu_hc_match(e, "ab", &rest), ab);
    assert_ptr_equal(emu_hc_match(e, "ab/x/y", &rest), ab);
    assert_string_equal(rest, "/x/y");
    assert_ptr_equal(emu_hc_match(e, "A/B/c", &rest), ab_); /* case-insensitive */
    assert_null(emu_hc_match(e, "abc", &rest));
    assert_null(emu_hc_match(e, "b", &rest));
    assert_null(emu_hc_match(e, "", &rest));
    assert_null(emu_hc_match(e, NULL, NULL));
    assert_null(emu_hc_find(e, "a/"));
    emu_test_free(e);
}

static void
test_state_hc_put_update_delete(void **state)
{
    (void)state;
    struct emu *e = emu_test_new(NULL, NULL);
    bool created = false;
    int err = 1;
    struct emu_hc *hc = emu_hc_put(e, "hyco", true, "team=a", &created, &err);
    assert_non_null(hc);
    assert_int_equal(err, AHG_OK);
    assert_true(created);
    assert_string_equal(hc->user_metadata, "team=a");
    assert_int_equal(e->ns.nhcs, 1);
    time_t c = hc->created;
    uint32_t cf = hc->created_frac;
    assert_true(hc->updated == c && hc->updated_frac == cf);

    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
    /* same name, other case: the existing HC is updated */
    struct emu_hc *again = emu_hc_put(e, "HYCO", false, NULL, &created, &err);
    assert_ptr_equal(again, hc);
    assert_false(created);
    assert_string_equal(hc->name, "hyco");
    assert_false(hc->requires_client_auth);
    assert_null(hc->user_metadata);
    assert_true(hc->created == c && hc->created_frac == cf);
    assert_true(hc->updated > c || (hc->updated == c && hc->updated_frac > cf));
    assert_int_equal(e->ns.nhcs, 1);

    /* invalid names and metadata */
    assert_null(emu_hc_put(e, "", true, NULL, &created, &err));
    assert_int_equal(err, AHG_EINVAL);
    assert_null(emu_hc_put(e, "a/", true, NULL, NULL, &err));
    assert_int_equal(err, AHG_EINVAL);
    assert_null(emu_hc_put(e, "a?b", true, NULL, NULL, &err));
    assert_int_equal(err, AHG_EINVAL);
    char name[EMU_HC_NAME_MAX + 1];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    assert_null(emu_hc_put(e, name, true, NULL, NULL, &err)); /* 260 chars */
    name[EMU_HC_NAME_MAX - 1] = '\0';
    assert_non_null(emu_hc_put(e, name, true, NULL, NULL, &err)); /* 259 chars */
    char meta[1100];
    memset(meta, 'm', sizeof(meta) - 1);
    meta[sizeof(meta) - 1] = '\0';
    assert_null(emu_hc_put(e, "m", true, meta, NULL, &err));
    assert_int_equal(err, AHG_EINVAL);
    meta[1024] = '\0';
    assert_non_null(emu_hc_put(e, "m", true, meta, NULL, &err));

    /* delete: the relay hears of it first, while the HC can still be found */
    emu_test_deleted_calls = 0;
    assert_int_equal(emu_hc_delete(e, "Hyco"), AHG_OK);
    assert_int_equal(emu_test_deleted_calls, 1);
    assert_true(emu_test_deleted_was_listed);
    assert_null(emu_hc_find(e, "hyco"));
    assert_int_equal(emu_hc_delete(e, "hyco"), AHG_ENOTFOUND);
    assert_int_equal(emu_test_deleted_calls, 1);
    assert_int_equal(e->ns.nhcs, 2);
    emu_test_free(e);
}

static void
test_state_hc_limit(void **state)
{
    (void)state;
    struct emu *e = emu_test_new(NULL, NULL);
    char name[32];
    int err = 0;
    for (unsigned i = 0; i < 10000; i++) {
        snprintf(name, sizeof(name), "hc%u", i);
        assert_non_null(emu_hc_put(e, name, true, NULL, NULL, &err));
    }
    assert_null(emu_hc_put(e, "one-more", true, NULL, NULL, &err));
    assert_int_equal(err, AHG_ELIMIT);
    assert_non_null(emu_hc_put(e, "hc5", true, "update still works", NULL, &err));
    emu_test_free(e);
}

static void
test_state_rules(void **state)
{
    (void)state;
    struct emu *e = emu_test_new(NULL, NULL);
    int err = 0;
    struct emu_hc *hc = emu_hc_put(e, "hyco", true, NULL, NULL, &err);

    /* namespace level: the root rule + 11 more = 12, the 13th is refused */
    char name[32];
    for (int i = 1; i <= 11; i++) {
        snprintf(name, sizeof(name), "rule%d", i);
        assert_non_null(emu_rule_put(e, NULL, name, EMU_RIGHT_SEND, &err));
    }
    assert_null(emu_rule_put(e, NULL, "rule12", EMU_RIGHT_SEND, &err));
    assert_int_equal(err, AHG_ELIMIT);
    /* updating an existing rule is not a new one; its keys stay */
    struct emu_rule *r1 = emu_rule_find(e, NULL, "rule1");
    char p[EMU_KEY_LEN + 1], s[EMU_KEY_LEN + 1];
    strcpy(p, r1->primary);
    strcpy(s, r1->secondary);
    assert_ptr_equal(emu_rule_put(e, NULL, "RULE1", EMU_RIGHT_LISTEN | EMU_RIGHT_SEND, &err), r1);
    assert_int_equal(r1->rights, EMU_RIGHT_LISTEN | EMU_RIGHT_SEND);
    assert_string_equal(r1->primary, p);
    assert_string_equal(r1->secondary, s);

    /* HC level has its own 12 */
    for (int i = 1; i <= 12; i++) {
        snprintf(name, sizeof(name), "hcrule%d", i);
        assert_non_null(emu_rule_put(e, hc, name, EMU_RIGHT_LISTEN, &err));
    }
    assert_null(emu_rule_put(e, hc, "hcrule13", EMU_RIGHT_LISTEN, &err));
    assert_int_equal(err, AHG_ELIMIT);
    assert_null(emu_rule_find(e, NULL, "hcrule1")); /* not at namespace level */
    assert_non_null(emu_rule_find(e, hc, "hcrule1"));

    /* invalid input */
    assert_null(emu_rule_put(e, hc, "x", 0, &err));
    assert_int_equal(err, AHG_EINVAL);
    assert_null(emu_rule_put(e, hc, "x", 8, &err));
    assert_int_equal(err, AHG_EINVAL);
    assert_null(emu_rule_put(e, NULL, "bad name", EMU_RIGHT_SEND, &err));
    assert_int_equal(err, AHG_EINVAL);
    assert_null(emu_rule_put(e, NULL, "", EMU_RIGHT_SEND, &err));
    assert_int_equal(err, AHG_EINVAL);

    /* delete frees a slot */
    assert_int_equal(emu_rule_delete(e, hc, "hcrule3"), AHG_OK);
    assert_int_equal(emu_rule_delete(e, hc, "hcrule3"), AHG_ENOTFOUND);
    assert_non_null(emu_rule_put(e, hc, "hcrule13", EMU_RIGHT_LISTEN, &err));
    assert_int_equal(emu_rule_delete(e, NULL, "RootManageSharedAccessKey"), AHG_OK);
    assert_null(emu_rule_find(e, NULL, "RootManageSharedAccessKey"));
    emu_test_free(e);
}

static void
test_state_regenerate(void **state)
{
    (void)state;
    struct emu *e = emu_test_new(NULL, NULL);
    struct emu_rule *r = e->ns.rules;
    char p[EMU_KEY_LEN + 1], s[EMU_KEY_LEN + 1];
    strcpy(p, r->primary);
    strcpy(s, r->secondary);
    assert_int_equal(emu_rule_regenerate(r, true, NULL), AHG_OK);
    assert_string_not_equal(r->primary, p);
    assert_true(key_ok(r->primary));
    assert_string_equal(r->secondary, s);
    assert_int_equal(emu_rule_regenerate(r, false, NULL), AHG_OK);
    assert_string_not_equal(r->secondary, s);
    assert_int_equal(emu_rule_regenerate(r, false, "XmNd2Wq7Lr4Tz9Pb1Vc6Ys3Hf8Jk0Ga5Ue2Io7Rw4Q="),
                     AHG_OK);
    assert_string_equal(r->secondary, "XmNd2Wq7Lr4Tz9Pb1Vc6Ys3Hf8Jk0Ga5Ue2Io7Rw4Q=");
    strcpy(p, r->primary);
    assert_int_equal(emu_rule_regenerate(r, true, ""), AHG_EINVAL);
    assert_int_equal(emu_rule_regenerate(r, true, "a b"), AHG_EINVAL);
    assert_int_equal(emu_rule_regenerate(r, true, "XmNd2Wq7Lr4Tz9Pb1Vc6Ys3Hf8Jk0Ga5Ue2Io7Rw4Q==="),
                     AHG_EINVAL);
    assert_string_equal(r->primary, p); /* unchanged after a refusal */
    assert_int_equal(emu_rule_regenerate(NULL, true, NULL), AHG_EINVAL);

    char k1[EMU_KEY_LEN + 1], k2[EMU_KEY_LEN + 1];
    emu_key_generate(k1);
    emu_key_generate(k2);
    assert_true(key_ok(k1));
    assert_string_not_equal(k1, k2);
    emu_test_free(e);
}

/* emulator.state_file: hybrid connections (metadata, times, rules and keys) and the namespace's
 * keys come back after a restart, as they do on Azure; a deleted HC stays deleted; a file that
 * is not a state file stops the start. */
static void
test_state_file_survives_restart(void **state)
{
    (void)state;
    char dir[] = "/tmp/ahg-emu-state-XXXXXX", path[64], flag[96];
    assert_non_null(mkdtemp(dir));
    (void)snprintf(path, sizeof(path), "%s/state.json", dir);
    (void)snprintf(flag, sizeof(flag), "--emulator-state-file=%s", path);
    const char *flags[] = {flag, NULL};
    struct emu *e = emu_test_new(NULL, flags);
    assert_non_null(e);
    assert_int_equal(access(path, R_OK), 0); /* written from the start */
    int err = 0;
    struct emu_hc *a = emu_hc_put(e, "ahg-a", true, "{\"owner\":\"azhexgate\"}", NULL, &err);
    assert_non_null(emu_hc_put(e, "ahg-b", false, NULL, NULL, &err));
    assert_non_null(a);
    struct emu_rule *l = emu_rule_put(e, a, "listen", EMU_RIGHT_LISTEN, &err);
    assert_non_null(l);
    assert_int_equal(emu_rule_regenerate(e->ns.rules, true, NULL), AHG_OK);
    char root[EMU_KEY_LEN + 1], lkey[EMU_KEY_LEN + 1];
    strcpy(root, e->ns.rules->primary);
    strcpy(lkey, l->secondary);
    time_t created = a->created;
    uint32_t frac = a->created_frac;
    emu_state_save(e);
    emu_test_free(e);

    e = emu_test_new(NULL, flags);
    assert_non_null(e);
    assert_int_equal(e->ns.nhcs, 2);
    a = emu_hc_find(e, "ahg-a");
    assert_non_null(a);
    assert_true(a->requires_client_auth);
    assert_string_equal(a->user_metadata, "{\"owner\":\"azhexgate\"}");
    assert_int_equal(a->created, created);
    assert_int_equal(a->created_frac, frac);
    l = emu_rule_find(e, a, "listen");
    assert_non_null(l);
    assert_int_equal(l->rights, EMU_RIGHT_LISTEN);
    assert_string_equal(l->secondary, lkey);
    assert_false(emu_hc_find(e, "ahg-b")->requires_client_auth);
    assert_string_equal(e->ns.rules->primary, root);
    assert_int_equal(emu_hc_delete(e, "ahg-b"), AHG_OK);
    emu_state_save(e);
    emu_test_free(e);

    e = emu_test_new(NULL, flags);
    assert_non_null(e);
    assert_int_equal(e->ns.nhcs, 1);
    assert_null(emu_hc_find(e, "ahg-b"));
    emu_test_free(e);

    FILE *f = fopen(path, "w");
    assert_non_null(f);
    (void)fputs("{\"v\":2}", f);
    (void)fclose(f);
    assert_null(emu_test_new(NULL, flags));
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
}

int
main(void)
{
    ahg_log_setup("test", AHG_LOG_FORMAT_TEXT, AHG_LOG_LVL_ERROR, 2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_defaults),
        cmocka_unit_test(test_state_options),
        cmocka_unit_test(test_state_bad_options),
        cmocka_unit_test(test_state_hc_match_longest_segment_prefix),
        cmocka_unit_test(test_state_hc_put_update_delete),
        cmocka_unit_test(test_state_hc_limit),
        cmocka_unit_test(test_state_rules),
        cmocka_unit_test(test_state_regenerate),
        cmocka_unit_test(test_state_file_survives_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
