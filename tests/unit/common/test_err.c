#include "ahg/err.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

static void
test_err_every_code_has_text_and_name(void **state)
{
    (void)state;
    for (int e = 0; e >= AHG_ERR_MIN; e--) {
        assert_string_not_equal(ahg_strerror(e), "unknown error");
        assert_string_not_equal(ahg_err_name(e), "EUNKNOWN");
    }
    assert_string_equal(ahg_strerror(1), "unknown error");
    assert_string_equal(ahg_strerror(AHG_ERR_MIN - 1), "unknown error");
    assert_string_equal(ahg_err_name(AHG_ENOTFOUND), "ENOTFOUND");
}

static void
test_err_http_status_mapping(void **state)
{
    (void)state;
    assert_int_equal(ahg_err_http_status(AHG_OK), 200);
    assert_int_equal(ahg_err_http_status(AHG_EPROTO), 400);
    assert_int_equal(ahg_err_http_status(AHG_EAUTH), 401);
    assert_int_equal(ahg_err_http_status(AHG_EFORBIDDEN), 403);
    assert_int_equal(ahg_err_http_status(AHG_ENOTFOUND), 404);
    assert_int_equal(ahg_err_http_status(AHG_EEXIST), 409);
    assert_int_equal(ahg_err_http_status(AHG_ELIMIT), 413);
    assert_int_equal(ahg_err_http_status(AHG_EURISIZE), 414);
    assert_int_equal(ahg_err_http_status(AHG_ERATE), 429);
    assert_int_equal(ahg_err_http_status(AHG_EHDRSIZE), 431);
    assert_int_equal(ahg_err_http_status(AHG_ENOTIMPL), 501);
    assert_int_equal(ahg_err_http_status(AHG_EUPSTREAM), 502);
    assert_int_equal(ahg_err_http_status(AHG_EUNAVAIL), 503);
    assert_int_equal(ahg_err_http_status(AHG_ETIMEDOUT), 504);
    assert_int_equal(ahg_err_http_status(-1000), 500);
}

static void
test_err_exit_codes(void **state)
{
    (void)state;
    assert_int_equal(ahg_err_exit_code(AHG_OK), 0);
    assert_int_equal(ahg_err_exit_code(AHG_EUSAGE), 64);
    assert_int_equal(ahg_err_exit_code(AHG_ECONFIG), 78);
    assert_int_equal(ahg_err_exit_code(AHG_EIO), 1);
    assert_int_equal(ahg_err_exit_code(-1000), 1);
}

static void
test_err_reason_phrases(void **state)
{
    (void)state;
    assert_string_equal(ahg_http_reason(404), "Not Found");
    assert_string_equal(ahg_http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(ahg_http_reason(599), "Unknown");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_every_code_has_text_and_name),
        cmocka_unit_test(test_err_http_status_mapping),
        cmocka_unit_test(test_err_exit_codes),
        cmocka_unit_test(test_err_reason_phrases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
