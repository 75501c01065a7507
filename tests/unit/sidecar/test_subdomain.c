/*
 * test_subdomain.c - the subdomain derived from the pod (sc_derive_subdomain) and the label
 * check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ahg/err.h"
#include "sc/sidecar.h"

static void
test_subdomain_stable_and_valid(void **state)
{
    (void)state;
    char a[SC_LABEL_MAX + 1], b[SC_LABEL_MAX + 1];
    assert_int_equal(sc_derive_subdomain("web-7d9f8c-x2x4z", "shop", a, sizeof(a)), AHG_OK);
    assert_int_equal(sc_derive_subdomain("web-7d9f8c-x2x4z", "shop", b, sizeof(b)), AHG_OK);
    assert_string_equal(a, b);
    assert_true(sc_label_ok(a));
    assert_int_equal(strncmp(a, "web-7d9f8c-x2x4z-", 17), 0);
    assert_int_equal(strlen(a), 17 + 8);
}

static void
test_subdomain_namespace_matters(void **state)
{
    (void)state;
    char a[SC_LABEL_MAX + 1], b[SC_LABEL_MAX + 1], c[SC_LABEL_MAX + 1];
    assert_int_equal(sc_derive_subdomain("api-0", "team-a", a, sizeof(a)), AHG_OK);
    assert_int_equal(sc_derive_subdomain("api-0", "team-b", b, sizeof(b)), AHG_OK);
    assert_int_equal(sc_derive_subdomain("api-0", NULL, c, sizeof(c)), AHG_OK);
    assert_string_not_equal(a, b);
    assert_string_not_equal(a, c);
    assert_true(sc_label_ok(c));
}

static void
test_subdomain_odd_names(void **state)
{
    (void)state;
    char out[SC_LABEL_MAX + 1];
    static const char *names[] = {
        "My_Pod.Name",
        "--x--",
        "___",
        "UPPER",
        "a",
        "0123",
        "a-very-long-pod-name-that-goes-on-and-on-and-on-well-past-the-dns-limit-of-63",
        "ends-with-dash-at-the-cut-point-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-yyyy"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        assert_int_equal(sc_derive_subdomain(names[i], "ns", out, sizeof(out)), AHG_OK);
        assert_true(sc_label_ok(out));
        assert_true(strlen(out) <= SC_LABEL_MAX);
    }
    assert_int_equal(sc_derive_subdomain("My_Pod.Name", "ns", out, sizeof(out)), AHG_OK);
    assert_int_equal(strncmp(out, "my-pod-name-", 12), 0);
    assert_int_equal(sc_derive_subdomain("___", "ns", out, sizeof(out)), AHG_OK);
    assert_int_equal(strncmp(out, "pod-", 4), 0);
}

static void
test_subdomain_errors(void **state)
{
    (void)state;
    char out[SC_LABEL_MAX + 1], small[8];
    assert_int_equal(sc_derive_subdomain(NULL, "ns", out, sizeof(out)), AHG_EINVAL);
    assert_int_equal(sc_derive_subdomain("", "ns", out, sizeof(out)), AHG_EINVAL);
    assert_int_equal(sc_derive_subdomain("p", "ns", small, sizeof(small)), AHG_EINVAL);
}

static void
test_subdomain_label_ok(void **state)
{
    (void)state;
    assert_true(sc_label_ok("a"));
    assert_true(sc_label_ok("my-app-1"));
    assert_false(sc_label_ok(""));
    assert_false(sc_label_ok("-a"));
    assert_false(sc_label_ok("a-"));
    assert_false(sc_label_ok("A"));
    assert_false(sc_label_ok("a.b"));
    char big[SC_LABEL_MAX + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_false(sc_label_ok(big));
    big[SC_LABEL_MAX] = '\0';
    assert_true(sc_label_ok(big));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subdomain_stable_and_valid),
        cmocka_unit_test(test_subdomain_namespace_matters),
        cmocka_unit_test(test_subdomain_odd_names),
        cmocka_unit_test(test_subdomain_errors),
        cmocka_unit_test(test_subdomain_label_ok),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
