#include "ahg/url.h"
#include "ahg/err.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

static void
test_url_encode_like_encode_uri_component(void **state)
{
    static const char *const vec[][2] = {
        {"", ""},
        {"Hello World!", "Hello%20World!"},
        {"AZaz09-_.!~*'()", "AZaz09-_.!~*'()"},
        {"/?:@&=+$,#", "%2F%3F%3A%40%26%3D%2B%24%2C%23"},
        {"%", "%25"},
        {"\xc3\xb8", "%C3%B8"},
        {"http://contoso.servicebus.windows.net/hyco",
         "http%3A%2F%2Fcontoso.servicebus.windows.net%2Fhyco"},
        {"a\"<>\\^`{|}", "a%22%3C%3E%5C%5E%60%7B%7C%7D"},
    };
    char out[128];
    (void)state;

    for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        assert_int_equal(ahg_url_encode(vec[i][0], strlen(vec[i][0]), out, sizeof(out)), AHG_OK);
        assert_string_equal(out, vec[i][1]);
    }
    /* length-delimited: an embedded NUL is encoded */
    assert_int_equal(ahg_url_encode("a\0b", 3, out, sizeof(out)), AHG_OK);
    assert_string_equal(out, "a%00b");
    assert_int_equal(ahg_url_encode(NULL, 0, out, sizeof(out)), AHG_OK);
    assert_string_equal(out, "");
    assert_int_equal(ahg_url_encode(NULL, 1, out, sizeof(out)), AHG_EINVAL);
    assert_int_equal(ahg_url_encode("a", 1, NULL, 4), AHG_EINVAL);
}

static void
test_url_encode_limit(void **state)
{
    char out[8];
    (void)state;

    /* "a%20b" + NUL = 6 */
    assert_int_equal(ahg_url_encode("a b", 3, out, 6), AHG_OK);
    assert_string_equal(out, "a%20b");
    memset(out, 'x', sizeof(out));
    assert_int_equal(ahg_url_encode("a b", 3, out, 5), AHG_ELIMIT);
    assert_int_equal(out[0], '\0');
    assert_int_equal(ahg_url_encode("a b", 3, out, 3), AHG_ELIMIT);
    assert_int_equal(ahg_url_encode("ab", 2, out, 2), AHG_ELIMIT);
    assert_int_equal(ahg_url_encode("ab", 2, out, 0), AHG_ELIMIT);
    assert_int_equal(ahg_url_encode("", 0, out, 0), AHG_ELIMIT);
}

static void
test_url_decode_basics_and_plus(void **state)
{
    char out[64];
    size_t n = 0;
    (void)state;

    assert_int_equal(ahg_url_decode("%41%2b%2B%c3%B8", 15, out, sizeof(out), false, &n), AHG_OK);
    assert_string_equal(out, "A++\xc3\xb8");
    assert_int_equal(n, 5);
    assert_int_equal(ahg_url_decode("a+b%20c", 7, out, sizeof(out), true, &n), AHG_OK);
    assert_string_equal(out, "a b c");
    assert_int_equal(ahg_url_decode("a+b%20c", 7, out, sizeof(out), false, &n), AHG_OK);
    assert_string_equal(out, "a+b c");
    /* %2B is always a literal plus, even in form mode */
    assert_int_equal(ahg_url_decode("%2B+", 4, out, sizeof(out), true, &n), AHG_OK);
    assert_string_equal(out, "+ ");
    /* %00 decodes; the length tells */
    assert_int_equal(ahg_url_decode("a%00b", 5, out, sizeof(out), false, &n), AHG_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "a\0b", 4);
    /* length-delimited input: only the first 3 chars */
    assert_int_equal(ahg_url_decode("abc%41", 3, out, sizeof(out), false, &n), AHG_OK);
    assert_string_equal(out, "abc");
    assert_int_equal(ahg_url_decode("", 0, out, sizeof(out), false, NULL), AHG_OK);
    assert_string_equal(out, "");
}

static void
test_url_decode_rejects_bad_escapes(void **state)
{
    static const char *const bad[] = {"%", "%4", "abc%2", "%G1", "%1G", "%%41", "a%-1", "% 20"};
    char out[32];
    size_t n = 5;
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        out[0] = 'x';
        assert_int_equal(ahg_url_decode(bad[i], strlen(bad[i]), out, sizeof(out), true, &n),
                         AHG_EINVAL);
        assert_int_equal(n, 0);
        assert_int_equal(out[0], '\0');
    }
    /* an escape cut by the length limit is truncated too */
    assert_int_equal(ahg_url_decode("%41", 2, out, sizeof(out), false, &n), AHG_EINVAL);
    assert_int_equal(ahg_url_decode(NULL, 1, out, sizeof(out), false, &n), AHG_EINVAL);
    assert_int_equal(ahg_url_decode("a", 1, NULL, 4, false, &n), AHG_EINVAL);
}

static void
test_url_decode_limit_and_in_place(void **state)
{
    char out[8];
    char buf[] = "x%41y+z%2f";
    size_t n = 0;
    (void)state;

    assert_int_equal(ahg_url_decode("%41%42%43", 9, out, 4, false, &n), AHG_OK);
    assert_string_equal(out, "ABC");
    assert_int_equal(ahg_url_decode("%41%42%43", 9, out, 3, false, &n), AHG_ELIMIT);
    assert_int_equal(out[0], '\0');
    assert_int_equal(ahg_url_decode("", 0, out, 0, false, &n), AHG_ELIMIT);

    assert_int_equal(ahg_url_decode(buf, strlen(buf), buf, sizeof(buf), true, &n), AHG_OK);
    assert_string_equal(buf, "xAy z/");
    assert_int_equal(n, 6);
}

static void
test_url_query_get_values(void **state)
{
    static const char q[] =
        "?sb-hc-action=listen&sb-hc-id=L1&flag&a%20b=sp&x=1&x=2&p=a+b%2Bc&empty=&sb-hc-token=t";
    char out[64];
    (void)state;

    assert_int_equal(ahg_url_query_get(q, "sb-hc-action", out, sizeof(out), true), AHG_OK);
    assert_string_equal(out, "listen");
    assert_int_equal(ahg_url_query_get(q, "sb-hc-id", out, sizeof(out), true), AHG_OK);
    assert_string_equal(out, "L1");
    assert_int_equal(ahg_url_query_get(q, "sb-hc-token", out, sizeof(out), true), AHG_OK);
    assert_string_equal(out, "t");
    assert_int_equal(ahg_url_query_get(q, "x", out, sizeof(out), true), AHG_OK);
    assert_string_equal(out, "1"); /* first value wins */
    assert_int_equal(ahg_url_query_get(q, "flag", out, sizeof(out), true), AHG_OK);
    assert_string_equal(out, "");
    assert_int_equal(ahg_url_query_get(q, "empty", out, sizeof(out), true), AHG_OK);
    assert_string_equal(out, "");
    assert_int_equal(ahg_url_query_get(q, "a b", out, sizeof(out), true), AHG_OK);
    assert_string_equal(out, "sp");
    assert_int_equal(ahg_url_query_get(q, "p", out, sizeof(out), true), AHG_OK);
    assert_string_equal(out, "a b+c");
    assert_int_equal(ahg_url_query_get(q, "p", out, sizeof(out), false), AHG_OK);
    assert_string_equal(out, "a+b+c");

    /* without the leading '?' too */
    assert_int_equal(ahg_url_query_get(q + 1, "sb-hc-action", out, sizeof(out), true), AHG_OK);
    assert_string_equal(out, "listen");
}

static void
test_url_query_get_errors(void **state)
{
    char out[8];
    (void)state;

    out[0] = 'x';
    assert_int_equal(ahg_url_query_get("?a=1&b=2", "c", out, sizeof(out), true), AHG_ENOTFOUND);
    assert_int_equal(out[0], '\0');
    /* keys match exactly: no prefix, no case folding */
    assert_int_equal(ahg_url_query_get("sb-hc-id=1", "sb-hc-i", out, sizeof(out), true),
                     AHG_ENOTFOUND);
    assert_int_equal(ahg_url_query_get("sb-hc-id=1", "sb-hc-id=", out, sizeof(out), true),
                     AHG_ENOTFOUND);
    assert_int_equal(ahg_url_query_get("A=1", "a", out, sizeof(out), true), AHG_ENOTFOUND);
    assert_int_equal(ahg_url_query_get("", "a", out, sizeof(out), true), AHG_ENOTFOUND);
    /* the fragment is not part of the query */
    assert_int_equal(ahg_url_query_get("a=1#b=2", "b", out, sizeof(out), true), AHG_ENOTFOUND);
    assert_int_equal(ahg_url_query_get("a=1#b=2", "a", out, sizeof(out), true), AHG_OK);
    assert_string_equal(out, "1");
    /* bad escape in the wanted value; fine elsewhere */
    assert_int_equal(ahg_url_query_get("a=%zz&b=1", "a", out, sizeof(out), true), AHG_EINVAL);
    assert_int_equal(ahg_url_query_get("a=%zz&b=1", "b", out, sizeof(out), true), AHG_OK);
    assert_string_equal(out, "1");
    assert_int_equal(ahg_url_query_get("a=12345678", "a", out, sizeof(out), true), AHG_ELIMIT);
    assert_int_equal(ahg_url_query_get("a=1234567", "a", out, sizeof(out), true), AHG_OK);
    assert_int_equal(ahg_url_query_get(NULL, "a", out, sizeof(out), true), AHG_EINVAL);
    assert_int_equal(ahg_url_query_get("a=1", NULL, out, sizeof(out), true), AHG_EINVAL);
    assert_int_equal(ahg_url_query_get("a=1", "a", NULL, 8, true), AHG_EINVAL);
}

static void
check_strip(const char *in, const char *want)
{
    char out[256];
    int rc = ahg_url_strip_sbhc(in, out, sizeof(out));

    if (rc != AHG_OK || strcmp(out, want) != 0)
        fail_msg("strip(\"%s\") = %d \"%s\", want \"%s\"", in, rc, out, want);
}

/* Every example of hc-protocol.md 3.2 and of the .NET live test it cites. */
static void
test_url_strip_sbhc_protocol_examples(void **state)
{
    static const char *const vec[][2] = {
        {"?a=1&a=2", "?a=1&a=2"},
        {"?a=1&a=2&", "?a=1&a=2&"},
        {"?&&&", "?&&&"},
        {"?foo=bar", "?foo=bar"},
        {"?foo=bar&", "?foo=bar&"},
        {"?&foo=bar", "?&foo=bar"},
        {"?sb-hc-id=1", ""},
        {"?sb-hc-id=1&custom=value", "?custom=value"},
        {"?custom=value&sb-hc-id=1", "?custom=value"},
        {"?sb-hc-undefined", "?sb-hc-undefined"},
        {"?sb-hc-undefined=true", ""},
        {"?sb-hc-whatever=", ""},
        {"?sb-hc-whatever=&foo=bar", "?foo=bar"},
        {"?CustomValue", "?CustomValue"},
        {"?custom-Value", "?custom-Value"},
        {"?custom&value", "?custom&value"},
        {"?&custom&value&", "?&custom&value&"},
        {"?&&value&&", "?&&value&&"},
        {"?+", "?+"},
        {"?%2B", "?%2B"},
        {"?%20", "?%20"},
        {"?%2f%3a%3d%26", "?%2f%3a%3d%26"},
        {"?key='value'", "?key='value'"},
        {"?api-version=abc", "?api-version=abc"},
    };
    char in[128], want[128];
    (void)state;

    for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        /* bare query and behind a request path */
        (void)snprintf(in, sizeof(in), "/hyco/abc%s", vec[i][0]);
        (void)snprintf(want, sizeof(want), "/hyco/abc%s", vec[i][1]);
        check_strip(in, want);
        check_strip(vec[i][0], vec[i][1]);
    }
}

static void
test_url_strip_sbhc_more_cases(void **state)
{
    char out[16];
    (void)state;

    check_strip("/hyco", "/hyco");
    check_strip("/hyco?", "/hyco?"); /* nothing removed: kept byte-for-byte */
    check_strip("/", "/");
    check_strip("", "");
    check_strip("/h?a=1&sb-hc-action=request&b=2", "/h?a=1&b=2");
    check_strip("/h?sb-hc-action=request&sb-hc-id=x&sb-hc-token=SharedAccessSignature%20sr", "/h");
    check_strip("/h?&sb-hc-id=1", "/h");             /* the rest of the query is empty */
    check_strip("/h?sb-hc-id=1&", "/h");             /* idem */
    check_strip("/h?sb-hc-id=1&&x", "/h?&x");        /* kept separators stay */
    check_strip("/h?SB-HC-TOKEN=t&a=1", "/h?a=1");   /* case-insensitive prefix */
    check_strip("/h?xsb-hc-id=1", "/h?xsb-hc-id=1"); /* prefix only at the start */
    check_strip("/h?sb-hc=1", "/h?sb-hc=1");         /* "sb-hc" is not "sb-hc-" */
    check_strip("/h?sb-hc-=1", "/h");                /* empty suffix still matches */
    check_strip("/h?a=%3D&sb-hc-id=1#sb-hc-id=2", "/h?a=%3D#sb-hc-id=2"); /* fragment kept */
    check_strip("/h?sb-hc-id=1#f", "/h#f");
    check_strip("/h#f?sb-hc-id=1", "/h#f?sb-hc-id=1"); /* '?' inside the fragment */

    assert_int_equal(ahg_url_strip_sbhc("/abc?x=1&sb-hc-id=2", out, 9), AHG_OK);
    assert_string_equal(out, "/abc?x=1");
    assert_int_equal(ahg_url_strip_sbhc("/abc?x=1&sb-hc-id=2", out, 8), AHG_ELIMIT);
    assert_string_equal(out, "");
    assert_int_equal(ahg_url_strip_sbhc("/abcdefghijklmnop", out, sizeof(out)), AHG_ELIMIT);
    assert_int_equal(ahg_url_strip_sbhc(NULL, out, sizeof(out)), AHG_EINVAL);
    assert_int_equal(ahg_url_strip_sbhc("/", NULL, 4), AHG_EINVAL);
}

static void
test_url_parse_components(void **state)
{
    struct ahg_url u;
    (void)state;

    assert_int_equal(ahg_url_parse("wss://Contoso.servicebus.windows.net:443/$hc/hyco"
                                   "?sb-hc-action=listen&sb-hc-id=1#frag",
                                   &u),
                     AHG_OK);
    assert_string_equal(u.scheme, "wss");
    assert_string_equal(u.host, "Contoso.servicebus.windows.net");
    assert_int_equal(u.port, 443);
    assert_string_equal(u.path, "/$hc/hyco");
    assert_string_equal(u.query, "sb-hc-action=listen&sb-hc-id=1");

    assert_int_equal(ahg_url_parse("HTTP://example.com", &u), AHG_OK);
    assert_string_equal(u.scheme, "http");
    assert_string_equal(u.host, "example.com");
    assert_int_equal(u.port, -1);
    assert_string_equal(u.path, "");
    assert_string_equal(u.query, "");

    assert_int_equal(ahg_url_parse("http://h:/p?", &u), AHG_OK);
    assert_int_equal(u.port, -1);
    assert_string_equal(u.path, "/p");
    assert_string_equal(u.query, "");

    assert_int_equal(ahg_url_parse("http://h?q=/x#y", &u), AHG_OK);
    assert_string_equal(u.path, "");
    assert_string_equal(u.query, "q=/x");

    assert_int_equal(ahg_url_parse("https://h:0/My%20HC/%2F", &u), AHG_OK);
    assert_int_equal(u.port, 0);
    assert_string_equal(u.path, "/My%20HC/%2F");

    assert_int_equal(ahg_url_parse("svn+ssh.v2-x://h:65535", &u), AHG_OK);
    assert_string_equal(u.scheme, "svn+ssh.v2-x");
    assert_int_equal(u.port, 65535);
}

static void
test_url_parse_ipv6(void **state)
{
    struct ahg_url u;
    (void)state;

    assert_int_equal(ahg_url_parse("ws://[::1]:9911/$hc/hyco", &u), AHG_OK);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 9911);
    assert_string_equal(u.path, "/$hc/hyco");
    assert_int_equal(ahg_url_parse("http://[2001:DB8::a:1]", &u), AHG_OK);
    assert_string_equal(u.host, "2001:DB8::a:1");
    assert_int_equal(u.port, -1);
    assert_int_equal(ahg_url_parse("http://[::ffff:10.0.0.1]/x", &u), AHG_OK);
    assert_string_equal(u.host, "::ffff:10.0.0.1");

    assert_int_equal(ahg_url_parse("http://[::1/x", &u), AHG_EINVAL);
    assert_int_equal(ahg_url_parse("http://[zz]/", &u), AHG_EINVAL);
    assert_int_equal(ahg_url_parse("http://[]/", &u), AHG_EINVAL);
    assert_int_equal(ahg_url_parse("http://[::1]x/", &u), AHG_EINVAL);
    assert_int_equal(ahg_url_parse("http://[fe80::1%25eth0]/", &u), AHG_EINVAL);
    assert_int_equal(ahg_url_parse("http://::1/", &u), AHG_EINVAL);
}

static void
test_url_parse_rejects_malformed(void **state)
{
    static const char *const bad[] = {
        "",
        "example.com",
        "/path/only",
        "http:/x",
        "http:x",
        "1http://h",
        "ht tp://h",
        "://h",
        "http://",
        "http:///p",
        "http://:80/",
        "http://h:99999/",
        "http://h:65536/",
        "http://h:-1/",
        "http://h:8a/",
        "http://h:80:81/",
        "http://user@h/",
        "http://user:pw@h/",
        "http://h/a b",
        "http://h/a\tb",
        "http://h/\x7f",
        "http://h\"/",
        "http://h</",
        "http://h{}/",
    };
    struct ahg_url u;
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = ahg_url_parse(bad[i], &u);
        if (rc != AHG_EINVAL)
            fail_msg("parse(\"%s\") = %d, want EINVAL", bad[i], rc);
        assert_int_equal(u.port, -1);
        assert_string_equal(u.host, "");
    }
    assert_int_equal(ahg_url_parse(NULL, &u), AHG_EINVAL);
    assert_int_equal(ahg_url_parse("http://h/", NULL), AHG_EINVAL);
}

static void
test_url_parse_limits(void **state)
{
    static char url[8192];
    struct ahg_url u;
    size_t n;
    (void)state;

    /* host of 255 chars fits, 256 does not */
    n = (size_t)snprintf(url, sizeof(url), "http://");
    memset(url + n, 'h', 255);
    url[n + 255] = '\0';
    assert_int_equal(ahg_url_parse(url, &u), AHG_OK);
    assert_int_equal(strlen(u.host), 255);
    url[n + 255] = 'h';
    url[n + 256] = '\0';
    assert_int_equal(ahg_url_parse(url, &u), AHG_ELIMIT);
    assert_string_equal(u.host, "");

    /* path of 2047 chars fits, 2048 does not */
    n = (size_t)snprintf(url, sizeof(url), "http://h/");
    memset(url + n, 'p', 2046);
    url[n + 2046] = '\0';
    assert_int_equal(ahg_url_parse(url, &u), AHG_OK);
    assert_int_equal(strlen(u.path), 2047);
    url[n + 2046] = 'p';
    url[n + 2047] = '\0';
    assert_int_equal(ahg_url_parse(url, &u), AHG_ELIMIT);

    /* query of 4095 chars fits, 4096 does not */
    n = (size_t)snprintf(url, sizeof(url), "http://h/?");
    memset(url + n, 'q', 4095);
    url[n + 4095] = '\0';
    assert_int_equal(ahg_url_parse(url, &u), AHG_OK);
    assert_int_equal(strlen(u.query), 4095);
    url[n + 4095] = 'q';
    url[n + 4096] = '\0';
    assert_int_equal(ahg_url_parse(url, &u), AHG_ELIMIT);

    /* scheme of 15 chars fits, 16 does not */
    assert_int_equal(ahg_url_parse("abcdefghijklmno://h", &u), AHG_OK);
    assert_int_equal(ahg_url_parse("abcdefghijklmnop://h", &u), AHG_ELIMIT);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_encode_like_encode_uri_component),
        cmocka_unit_test(test_url_encode_limit),
        cmocka_unit_test(test_url_decode_basics_and_plus),
        cmocka_unit_test(test_url_decode_rejects_bad_escapes),
        cmocka_unit_test(test_url_decode_limit_and_in_place),
        cmocka_unit_test(test_url_query_get_values),
        cmocka_unit_test(test_url_query_get_errors),
        cmocka_unit_test(test_url_strip_sbhc_protocol_examples),
        cmocka_unit_test(test_url_strip_sbhc_more_cases),
        cmocka_unit_test(test_url_parse_components),
        cmocka_unit_test(test_url_parse_ipv6),
        cmocka_unit_test(test_url_parse_rejects_malformed),
        cmocka_unit_test(test_url_parse_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
