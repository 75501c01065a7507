/*
 * Tests of CIDR parsing, formatting and matching (IPv4, IPv6, v4-mapped IPv6).
 */
#include "ahg/cidr.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <sys/socket.h>

#include "ahg/err.h"

static void
roundtrip(const char *in, const char *canon)
{
    struct ahg_cidr c;
    assert_int_equal(ahg_cidr_parse(in, &c), AHG_OK);
    char out[64];
    assert_string_equal(ahg_cidr_format(&c, out, sizeof(out)), canon);
}

static void
test_cidr_parse_and_format(void **state)
{
    (void)state;
    roundtrip("10.0.0.0/8", "10.0.0.0/8");
    roundtrip("203.0.113.7", "203.0.113.7/32");
    roundtrip("0.0.0.0/0", "0.0.0.0/0");
    roundtrip("2001:db8::/32", "2001:db8::/32");
    roundtrip("2001:0DB8:0000::/48", "2001:db8::/48");
    roundtrip("::1", "::1/128");
    roundtrip("::/0", "::/0");
    struct ahg_cidr c;
    assert_int_equal(ahg_cidr_parse("192.168.1.0/24", &c), AHG_OK);
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 24);
    assert_memory_equal(c.addr, ((uint8_t[]){192, 168, 1, 0}), 4);
    char small[8];
    assert_string_equal(ahg_cidr_format(&c, small, sizeof(small)), "192.168"); /* truncated */
}

static void
test_cidr_parse_rejects(void **state)
{
    (void)state;
    const char *bad[] = {"",
                         "10.0.0.1/8", /* host bits set */
                         "10.0.0.0/33",
                         "10.0.0.0/",
                         "10.0.0.0/-1",
                         "10.0.0.0/+8",
                         "10.0.0.0/08",
                         "10.0.0.0/8/8",
                         "10.0.0",
                         "010.0.0.0/8",
                         "10.0.0.256",
                         "1.2.3.4 ",
                         "host.example",
                         "2001:db8::1/32",
                         "2001:db8::/129",
                         "fe80::1%eth0",
                         "::ffff:1.2.3.4/129",
                         "0123456789012345678901234567890123456789012345678901234567890123456789"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct ahg_cidr c;
        if (ahg_cidr_parse(bad[i], &c) != AHG_EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
    }
    struct ahg_cidr c;
    assert_int_equal(ahg_cidr_parse(NULL, &c), AHG_EINVAL);
    assert_int_equal(ahg_cidr_parse("1.2.3.4", NULL), AHG_EINVAL);
}

static void
test_cidr_match(void **state)
{
    (void)state;
    struct ahg_cidr c;
    assert_int_equal(ahg_cidr_parse("203.0.113.0/24", &c), AHG_OK);
    assert_true(ahg_cidr_match(&c, "203.0.113.0"));
    assert_true(ahg_cidr_match(&c, "203.0.113.255"));
    assert_false(ahg_cidr_match(&c, "203.0.114.0"));
    assert_false(ahg_cidr_match(&c, "203.0.112.255"));
    assert_true(ahg_cidr_match(&c, "::ffff:203.0.113.9")); /* v4-mapped */
    assert_false(ahg_cidr_match(&c, "::ffff:203.0.114.9"));
    assert_false(ahg_cidr_match(&c, "2001:db8::1"));
    assert_false(ahg_cidr_match(&c, "not-an-ip"));
    assert_false(ahg_cidr_match(&c, ""));
    assert_false(ahg_cidr_match(&c, NULL));
    assert_int_equal(ahg_cidr_parse("10.0.0.0/13", &c), AHG_OK); /* not on a byte boundary */
    assert_true(ahg_cidr_match(&c, "10.7.255.255"));
    assert_false(ahg_cidr_match(&c, "10.8.0.0"));
    assert_int_equal(ahg_cidr_parse("0.0.0.0/0", &c), AHG_OK);
    assert_true(ahg_cidr_match(&c, "255.255.255.255"));
    assert_false(ahg_cidr_match(&c, "::1"));
    assert_int_equal(ahg_cidr_parse("2001:db8::/33", &c), AHG_OK);
    assert_true(ahg_cidr_match(&c, "2001:db8:7fff::1"));
    assert_false(ahg_cidr_match(&c, "2001:db8:8000::1"));
    assert_false(ahg_cidr_match(&c, "32.1.13.184"));
    assert_int_equal(ahg_cidr_parse("::1", &c), AHG_OK);
    assert_true(ahg_cidr_match(&c, "::1"));
    assert_false(ahg_cidr_match(&c, "127.0.0.1"));
    /* a v6 entry for the mapped range matches mapped text literally */
    assert_int_equal(ahg_cidr_parse("::ffff:0:0/96", &c), AHG_OK);
    assert_true(ahg_cidr_match(&c, "::ffff:1.2.3.4"));
}

static void
test_cidr_list(void **state)
{
    (void)state;
    struct ahg_cidr_list l;
    const char *bad = "x";
    assert_int_equal(ahg_cidr_list_parse("", &l, &bad), AHG_OK);
    assert_null(bad);
    assert_int_equal(l.n, 0);
    assert_false(ahg_cidr_list_match(&l, "127.0.0.1"));
    ahg_cidr_list_free(&l);
    assert_int_equal(ahg_cidr_list_parse(" 10.0.0.0/8, ::1\t192.168.0.0/16,,", &l, &bad), AHG_OK);
    assert_int_equal(l.n, 3);
    assert_true(ahg_cidr_list_match(&l, "10.1.2.3"));
    assert_true(ahg_cidr_list_match(&l, "::1"));
    assert_true(ahg_cidr_list_match(&l, "192.168.4.4"));
    assert_true(ahg_cidr_list_match(&l, "::ffff:10.9.9.9"));
    assert_false(ahg_cidr_list_match(&l, "11.0.0.1"));
    assert_int_equal(ahg_cidr_list_add(&l, "11.0.0.0/8"), AHG_OK);
    assert_true(ahg_cidr_list_match(&l, "11.0.0.1"));
    assert_int_equal(ahg_cidr_list_add(&l, "11.0.0.1/8"), AHG_EINVAL);
    assert_int_equal(l.n, 4);
    ahg_cidr_list_free(&l);
    assert_int_equal(l.n, 0);

    const char *in = "10.0.0.0/8, 10.0.0.1/8, ::1";
    assert_int_equal(ahg_cidr_list_parse(in, &l, &bad), AHG_EINVAL);
    assert_ptr_equal(bad, in + 12);
    assert_int_equal(l.n, 0);
    assert_null(l.v);
    assert_int_equal(ahg_cidr_list_parse(NULL, &l, &bad), AHG_EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cidr_parse_and_format),
        cmocka_unit_test(test_cidr_parse_rejects),
        cmocka_unit_test(test_cidr_match),
        cmocka_unit_test(test_cidr_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
