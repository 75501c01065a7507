#include "ahg/crypto.h"
#include "ahg/err.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

static void
hex_of(const unsigned char *b, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[b[i] >> 4];
        out[2 * i + 1] = hx[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static void
test_crypto_sha256_known_vectors(void **state)
{
    unsigned char md[32];
    char hex[65];
    (void)state;

    ahg_sha256("abc", 3, md);
    hex_of(md, sizeof(md), hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    assert_int_equal(ahg_sha256_hex(NULL, 0, hex), AHG_OK);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_int_equal(ahg_sha256_hex("abc", 3, hex), AHG_OK);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(ahg_sha256_hex(NULL, 1, hex), AHG_EINVAL);
    assert_int_equal(ahg_sha256_hex("abc", 3, NULL), AHG_EINVAL);
}

static void
test_crypto_hmac_sha256_rfc4231(void **state)
{
    unsigned char mac[32], key1[20];
    char hex[65];
    (void)state;

    memset(key1, 0x0b, sizeof(key1));
    assert_int_equal(ahg_hmac_sha256(key1, sizeof(key1), "Hi There", 8, mac), AHG_OK);
    hex_of(mac, sizeof(mac), hex);
    assert_string_equal(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

    assert_int_equal(ahg_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac), AHG_OK);
    hex_of(mac, sizeof(mac), hex);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    /* empty key and message */
    assert_int_equal(ahg_hmac_sha256(NULL, 0, NULL, 0, mac), AHG_OK);
    hex_of(mac, sizeof(mac), hex);
    assert_string_equal(hex, "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");

    assert_int_equal(ahg_hmac_sha256(NULL, 1, "x", 1, mac), AHG_EINVAL);
    assert_int_equal(ahg_hmac_sha256("k", 1, NULL, 1, mac), AHG_EINVAL);
    assert_int_equal(ahg_hmac_sha256("k", 1, "x", 1, NULL), AHG_EINVAL);
}

/* The SAS vector of hc-protocol.md 6.4 through the raw primitives. */
static void
test_crypto_hmac_sas_vector(void **state)
{
    static const char key[] = "XmNd2Wq7Lr4Tz9Pb1Vc6Ys3Hf8Jk0Ga5Ue2Io7Rw4Q=";
    static const char msg[] = "http%3A%2F%2Fcontoso.servicebus.windows.net%2Fhyco\n1700000000";
    unsigned char mac[32];
    char b64[45];
    (void)state;

    /* 50 bytes of sr + '\n' + 10 digits (hc-protocol.md 6.4 says "62", which is off by one) */
    assert_int_equal(strlen(msg), 61);
    assert_int_equal(ahg_hmac_sha256(key, strlen(key), msg, strlen(msg), mac), AHG_OK);
    assert_int_equal(ahg_base64_encode(mac, sizeof(mac), b64, sizeof(b64)), AHG_OK);
    assert_string_equal(b64, "J7nwa/oRAtl2Vv+Qn0IHUnrPax9fAX6O/aoeDCh6zIs=");
}

static void
test_crypto_base64_encode_rfc4648(void **state)
{
    static const char *const vec[][2] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    char out[16];
    (void)state;

    for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        size_t need = strlen(vec[i][1]) + 1;
        assert_int_equal(ahg_base64_encode(vec[i][0], strlen(vec[i][0]), out, need), AHG_OK);
        assert_string_equal(out, vec[i][1]);
        if (need > 1) {
            memset(out, 'x', sizeof(out));
            assert_int_equal(ahg_base64_encode(vec[i][0], strlen(vec[i][0]), out, need - 1),
                             AHG_ELIMIT);
            assert_int_equal(out[0], '\0');
        }
    }
    assert_int_equal(ahg_base64_encode("x", 1, NULL, 8), AHG_EINVAL);
    assert_int_equal(ahg_base64_encode(NULL, 1, out, sizeof(out)), AHG_EINVAL);
}

static void
test_crypto_base64_decode_roundtrip(void **state)
{
    static const char *const vec[][2] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    unsigned char out[16], bin[256];
    char enc[400];
    size_t n = 99;
    (void)state;

    for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        size_t want = strlen(vec[i][0]);
        assert_int_equal(ahg_base64_decode(vec[i][1], strlen(vec[i][1]), out, want, &n), AHG_OK);
        assert_int_equal(n, want);
        assert_memory_equal(out, vec[i][0], want);
        if (want > 0)
            assert_int_equal(ahg_base64_decode(vec[i][1], strlen(vec[i][1]), out, want - 1, &n),
                             AHG_ELIMIT);
    }
    /* every byte value survives encode -> decode */
    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = (unsigned char)i;
    for (size_t len = 0; len <= sizeof(bin); len += 37) {
        unsigned char back[256];
        assert_int_equal(ahg_base64_encode(bin, len, enc, sizeof(enc)), AHG_OK);
        assert_int_equal(ahg_base64_decode(enc, strlen(enc), back, sizeof(back), &n), AHG_OK);
        assert_int_equal(n, len);
        assert_memory_equal(back, bin, len);
    }
}

static void
test_crypto_base64_decode_is_strict(void **state)
{
    static const char *const bad[] = {
        "Zg",       /* missing padding */
        "Zg=",      /* incomplete padding */
        "Z===",     /* three pads */
        "====",     /* only padding */
        "Zh==",     /* non-zero unused bits */
        "Zm9=",     /* non-zero unused bits */
        "Zg==Zg==", /* padding in the middle */
        "Zm 9v",    /* whitespace */
        "Zm9v\n",   /* trailing newline */
        "Zm-v",     /* URL alphabet */
        "Zm_v",     /* URL alphabet */
        "Zm9*",     /* not base64 */
        "Z",        /* length 1 */
    };
    unsigned char out[16];
    size_t n = 7;
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(ahg_base64_decode(bad[i], strlen(bad[i]), out, sizeof(out), &n),
                         AHG_EINVAL);
        assert_int_equal(n, 0);
    }
    /* an embedded NUL inside the given length is not base64 either */
    assert_int_equal(ahg_base64_decode("Zm\0v", 4, out, sizeof(out), &n), AHG_EINVAL);
    assert_int_equal(ahg_base64_decode(NULL, 4, out, sizeof(out), &n), AHG_EINVAL);
    assert_int_equal(ahg_base64_decode("Zm9v", 4, out, sizeof(out), NULL), AHG_OK);
    assert_memory_equal(out, "foo", 3);
}

static void
test_crypto_base64url_decode_padding_optional(void **state)
{
    unsigned char out[8];
    size_t n = 0;
    (void)state;

    assert_int_equal(ahg_base64url_decode("-_8", 3, out, sizeof(out), &n), AHG_OK);
    assert_int_equal(n, 2);
    assert_int_equal(out[0], 0xfb);
    assert_int_equal(out[1], 0xff);
    assert_int_equal(ahg_base64url_decode("-_8=", 4, out, sizeof(out), &n), AHG_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ahg_base64url_decode("-__-", 4, out, sizeof(out), &n), AHG_OK);
    assert_int_equal(n, 3);
    assert_int_equal(out[2], 0xfe);
    assert_int_equal(ahg_base64url_decode("Zg", 2, out, sizeof(out), &n), AHG_OK);
    assert_int_equal(n, 1);
    assert_int_equal(out[0], 'f');

    assert_int_equal(ahg_base64url_decode("+/8=", 4, out, sizeof(out), &n), AHG_EINVAL);
    assert_int_equal(ahg_base64url_decode("-_8==", 5, out, sizeof(out), &n), AHG_EINVAL);
    assert_int_equal(ahg_base64url_decode("Zg=", 3, out, sizeof(out), &n), AHG_EINVAL);
    assert_int_equal(ahg_base64url_decode("Zm9vY", 5, out, sizeof(out), &n), AHG_EINVAL);
    assert_int_equal(ahg_base64url_decode("Zh", 2, out, sizeof(out), &n), AHG_EINVAL);
    assert_int_equal(ahg_base64url_decode("Zm9vYmFy", 8, out, 5, &n), AHG_ELIMIT);
}

static void
test_crypto_base64url_encode_unpadded(void **state)
{
    static const unsigned char in[] = {0xfb, 0xff, 0xfe, 0x66};
    char out[16];
    unsigned char back[8];
    size_t n = 0;
    (void)state;

    assert_int_equal(ahg_base64url_encode(in, 3, out, sizeof(out)), AHG_OK);
    assert_string_equal(out, "-__-");
    assert_int_equal(ahg_base64url_encode(in, 4, out, sizeof(out)), AHG_OK);
    assert_string_equal(out, "-__-Zg");
    assert_int_equal(ahg_base64url_decode(out, strlen(out), back, sizeof(back), &n), AHG_OK);
    assert_int_equal(n, 4);
    assert_memory_equal(back, in, 4);
    assert_int_equal(ahg_base64url_encode(in, 4, out, 7), AHG_OK);
    assert_int_equal(ahg_base64url_encode(in, 4, out, 6), AHG_ELIMIT);
}

static void
test_crypto_rand_bytes_and_hex(void **state)
{
    unsigned char a[32], b[32];
    char hex[2 * 20 + 2];
    (void)state;

    assert_int_equal(ahg_rand_bytes(NULL, 0), AHG_OK);
    assert_int_equal(ahg_rand_bytes(NULL, 1), AHG_EINVAL);
    assert_int_equal(ahg_rand_bytes(a, sizeof(a)), AHG_OK);
    assert_int_equal(ahg_rand_bytes(b, sizeof(b)), AHG_OK);
    assert_memory_not_equal(a, b, sizeof(a));

    memset(hex, '#', sizeof(hex));
    assert_int_equal(ahg_rand_hex(hex, 20), AHG_OK);
    assert_int_equal(strlen(hex), 40);
    assert_int_equal(strspn(hex, "0123456789abcdef"), 40);
    assert_int_equal(hex[41], '#'); /* nothing written past 2n+1 */
    assert_int_equal(ahg_rand_hex(hex, 0), AHG_OK);
    assert_string_equal(hex, "");
    assert_int_equal(ahg_rand_hex(NULL, 4), AHG_EINVAL);
}

static void
test_crypto_rand_digits_distribution(void **state)
{
    enum { SAMPLES = 10000, LEN = 6 };
    unsigned first[10] = {0}, rest[10] = {0};
    char d[LEN + 2];
    (void)state;

    for (int s = 0; s < SAMPLES; s++) {
        d[LEN + 1] = '#';
        assert_int_equal(ahg_rand_digits(d, LEN), AHG_OK);
        assert_int_equal(strlen(d), LEN);
        assert_int_equal(d[LEN + 1], '#');
        assert_int_equal(strspn(d, "0123456789"), LEN);
        assert_true(d[0] != '0');
        first[d[0] - '0']++;
        for (int i = 1; i < LEN; i++)
            rest[d[i] - '0']++;
    }
    assert_int_equal(first[0], 0);
    for (int v = 1; v <= 9; v++) {
        /* expected 1111 each; +-7 standard deviations */
        assert_in_range(first[v], 900, 1330);
    }
    for (int v = 0; v <= 9; v++) {
        /* expected 5000 each (5 * SAMPLES / 10) */
        assert_in_range(rest[v], 4500, 5500);
    }
    assert_int_equal(ahg_rand_digits(d, 0), AHG_EINVAL);
    assert_int_equal(ahg_rand_digits(NULL, 3), AHG_EINVAL);
    assert_int_equal(ahg_rand_digits(d, 1), AHG_OK);
    assert_int_equal(strlen(d), 1);
    assert_true(d[0] >= '1' && d[0] <= '9');
}

static void
test_crypto_rand_uuid_v4_format(void **state)
{
    char u1[37], u2[37];
    (void)state;

    assert_int_equal(ahg_rand_uuid(u1), AHG_OK);
    assert_int_equal(ahg_rand_uuid(u2), AHG_OK);
    assert_string_not_equal(u1, u2);
    for (int k = 0; k < 200; k++) {
        assert_int_equal(ahg_rand_uuid(u1), AHG_OK);
        assert_int_equal(strlen(u1), 36);
        for (int i = 0; i < 36; i++) {
            if (i == 8 || i == 13 || i == 18 || i == 23)
                assert_int_equal(u1[i], '-');
            else
                assert_non_null(strchr("0123456789abcdef", u1[i]));
        }
        assert_int_equal(u1[14], '4');
        assert_non_null(strchr("89ab", u1[19]));
    }
    assert_int_equal(ahg_rand_uuid(NULL), AHG_EINVAL);
}

static void
test_crypto_consttime_eq(void **state)
{
    unsigned char a[32], b[32];
    (void)state;

    memset(a, 0x5a, sizeof(a));
    memcpy(b, a, sizeof(b));
    assert_true(ahg_consttime_eq(a, sizeof(a), b, sizeof(b)));
    b[31] ^= 0x01;
    assert_false(ahg_consttime_eq(a, sizeof(a), b, sizeof(b)));
    b[31] ^= 0x01;
    b[0] ^= 0x80;
    assert_false(ahg_consttime_eq(a, sizeof(a), b, sizeof(b)));
    b[0] ^= 0x80;
    /* equal prefix, different lengths */
    assert_false(ahg_consttime_eq(a, sizeof(a), b, sizeof(b) - 1));
    assert_false(ahg_consttime_eq(a, 1, b, 0));
    assert_true(ahg_consttime_eq(NULL, 0, NULL, 0));
    assert_true(ahg_consttime_eq(a, 0, b, 0));
    assert_false(ahg_consttime_eq(NULL, 0, b, 1));
    assert_true(ahg_consttime_eq("abc", 3, "abc", 3));
    assert_false(ahg_consttime_eq("abc", 3, "abd", 3));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crypto_sha256_known_vectors),
        cmocka_unit_test(test_crypto_hmac_sha256_rfc4231),
        cmocka_unit_test(test_crypto_hmac_sas_vector),
        cmocka_unit_test(test_crypto_base64_encode_rfc4648),
        cmocka_unit_test(test_crypto_base64_decode_roundtrip),
        cmocka_unit_test(test_crypto_base64_decode_is_strict),
        cmocka_unit_test(test_crypto_base64url_decode_padding_optional),
        cmocka_unit_test(test_crypto_base64url_encode_unpadded),
        cmocka_unit_test(test_crypto_rand_bytes_and_hex),
        cmocka_unit_test(test_crypto_rand_digits_distribution),
        cmocka_unit_test(test_crypto_rand_uuid_v4_format),
        cmocka_unit_test(test_crypto_consttime_eq),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
