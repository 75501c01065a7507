#include "ahg/sas.h"
#include "ahg/err.h"
#include "ahg/url.h"

#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

/* hc-protocol.md 6.4 */
#define KEY    "XmNd2Wq7Lr4Tz9Pb1Vc6Ys3Hf8Jk0Ga5Ue2Io7Rw4Q="
#define KNAME  "RootManageSharedAccessKey"
#define RES    "http://contoso.servicebus.windows.net/hyco"
#define SE     1700000000LL
#define SR_UP  "http%3A%2F%2Fcontoso.servicebus.windows.net%2Fhyco"
#define SR_LOW "http%3a%2f%2fcontoso.servicebus.windows.net%2fhyco"
#define SIG_UP "J7nwa%2FoRAtl2Vv%2BQn0IHUnrPax9fAX6O%2FaoeDCh6zIs%3D"
#define TOKEN                                                                                      \
    "SharedAccessSignature sr=" SR_UP "&sig=" SIG_UP "&se=1700000000&skn="                         \
    "RootManageSharedAccessKey"

static void
test_sas_create_reproduces_vector(void **state)
{
    char tok[AHG_SAS_MAX + 1];
    (void)state;

    assert_int_equal(ahg_sas_create(RES, KNAME, KEY, SE, tok, sizeof(tok)), AHG_OK);
    assert_string_equal(tok, TOKEN);
    /* exactly sized buffer works, one less does not */
    assert_int_equal(ahg_sas_create(RES, KNAME, KEY, SE, tok, strlen(TOKEN) + 1), AHG_OK);
    assert_int_equal(ahg_sas_create(RES, KNAME, KEY, SE, tok, strlen(TOKEN)), AHG_ELIMIT);
    assert_string_equal(tok, "");
}

static void
test_sas_parse_vector_fields(void **state)
{
    struct ahg_sas t;
    (void)state;

    assert_int_equal(ahg_sas_parse(TOKEN, &t), AHG_OK);
    assert_string_equal(t.sr_raw, SR_UP);
    assert_string_equal(t.resource, RES);
    assert_string_equal(t.sig, "J7nwa/oRAtl2Vv+Qn0IHUnrPax9fAX6O/aoeDCh6zIs=");
    assert_int_equal(t.se, SE);
    assert_string_equal(t.skn, KNAME);
    assert_int_equal(ahg_sas_verify(&t, KEY, SE - 100, 0), AHG_OK);
}

/* The HMAC covers sr exactly as received: lower-case escapes give another signature. */
static void
test_sas_lower_case_escapes_verify_raw(void **state)
{
    struct ahg_sas t;
    (void)state;

    assert_int_equal(ahg_sas_parse("SharedAccessSignature sr=" SR_LOW
                                   "&sig=Fls6bPPAchorZ4qfT9hvqjIvreFmjBzHc6u5e%2BPq0IQ%3D"
                                   "&se=1700000000&skn=" KNAME,
                                   &t),
                     AHG_OK);
    assert_string_equal(t.sr_raw, SR_LOW);
    assert_string_equal(t.resource, RES);
    assert_int_equal(ahg_sas_verify(&t, KEY, SE, 0), AHG_OK);

    /* the upper-case signature does not verify for the lower-case sr */
    assert_int_equal(ahg_sas_parse("SharedAccessSignature sr=" SR_LOW "&sig=" SIG_UP
                                   "&se=1700000000&skn=" KNAME,
                                   &t),
                     AHG_OK);
    assert_int_equal(ahg_sas_verify(&t, KEY, SE, 0), AHG_EAUTH);
}

static void
test_sas_namespace_scope_vector(void **state)
{
    char tok[AHG_SAS_MAX + 1];
    struct ahg_sas t;
    (void)state;

    assert_int_equal(
        ahg_sas_create("http://contoso.servicebus.windows.net/", KNAME, KEY, SE, tok, sizeof(tok)),
        AHG_OK);
    assert_int_equal(ahg_sas_parse(tok, &t), AHG_OK);
    assert_string_equal(t.sr_raw, "http%3A%2F%2Fcontoso.servicebus.windows.net%2F");
    assert_string_equal(t.sig, "PzzYz6BO6EtXxICS4dJ19NieaijHsdRGQKmM3WHrRD8=");
    assert_int_equal(ahg_sas_verify(&t, KEY, SE, 0), AHG_OK);
    assert_true(ahg_sas_covers(t.resource, "contoso.servicebus.windows.net", NULL, "hyco"));
    assert_true(ahg_sas_covers(t.resource, "contoso.servicebus.windows.net", NULL, "other"));
}

static void
test_sas_round_trip_and_wrong_key(void **state)
{
    static const char *const res[] = {
        "http://ns.example/hc",
        "sb://ns.example/My HC/sub?x=1&y=\xc3\xa9",
        "https://[::1]:8443/a",
        "http://ns.example/",
        "x",
    };
    char tok[AHG_SAS_MAX + 1];
    struct ahg_sas t;
    (void)state;

    for (size_t i = 0; i < sizeof(res) / sizeof(res[0]); i++) {
        assert_int_equal(ahg_sas_create(res[i], "rule&name=x", "k3y+/=", 42, tok, sizeof(tok)),
                         AHG_OK);
        assert_int_equal(ahg_sas_parse(tok, &t), AHG_OK);
        assert_string_equal(t.resource, res[i]);
        assert_string_equal(t.skn, "rule&name=x");
        assert_int_equal(t.se, 42);
        assert_int_equal(ahg_sas_verify(&t, "k3y+/=", 42, 0), AHG_OK);
        assert_int_equal(ahg_sas_verify(&t, "k3y+/", 42, 0), AHG_EAUTH);
        assert_int_equal(ahg_sas_verify(&t, "K3y+/=", 42, 0), AHG_EAUTH);
    }
    /* the key is used as ASCII text, not base64-decoded */
    assert_int_equal(ahg_sas_parse(TOKEN, &t), AHG_OK);
    assert_int_equal(ahg_sas_verify(&t, "XmNd2Wq7Lr4Tz9Pb1Vc6Ys3Hf8Jk0Ga5Ue2Io7Rw4R=", SE, 0),
                     AHG_EAUTH);
}

static void
test_sas_expiry_and_grace(void **state)
{
    struct ahg_sas t;
    (void)state;

    assert_int_equal(ahg_sas_parse(TOKEN, &t), AHG_OK);
    assert_int_equal(ahg_sas_verify(&t, KEY, 0, 0), AHG_OK);
    assert_int_equal(ahg_sas_verify(&t, KEY, SE, 0), AHG_OK);
    assert_int_equal(ahg_sas_verify(&t, KEY, SE + 1, 0), AHG_EEXPIRED);
    assert_int_equal(ahg_sas_verify(&t, KEY, SE + 300, 300), AHG_OK);
    assert_int_equal(ahg_sas_verify(&t, KEY, SE + 301, 300), AHG_EEXPIRED);
    /* no overflow at the extremes */
    assert_int_equal(ahg_sas_verify(&t, KEY, LLONG_MAX, LLONG_MAX), AHG_OK);
    assert_int_equal(ahg_sas_verify(&t, KEY, LLONG_MAX, 0), AHG_EEXPIRED);
    assert_int_equal(ahg_sas_verify(&t, KEY, LLONG_MIN, 0), AHG_OK);
    assert_int_equal(ahg_sas_verify(&t, KEY, SE, -1), AHG_EINVAL);
    /* a wrong key on an expired token is an authentication failure first */
    assert_int_equal(ahg_sas_verify(&t, "nope", SE + 1000, 0), AHG_EAUTH);
}

static void
test_sas_tampered_se_fails_auth(void **state)
{
    struct ahg_sas t;
    (void)state;

    assert_int_equal(ahg_sas_parse("SharedAccessSignature sr=" SR_UP "&sig=" SIG_UP
                                   "&se=1800000000&skn=" KNAME,
                                   &t),
                     AHG_OK);
    assert_int_equal(ahg_sas_verify(&t, KEY, SE, 0), AHG_EAUTH);
    /* tampered into the past: still EAUTH, not EEXPIRED */
    assert_int_equal(ahg_sas_parse("SharedAccessSignature sr=" SR_UP "&sig=" SIG_UP
                                   "&se=1600000000&skn=" KNAME,
                                   &t),
                     AHG_OK);
    assert_int_equal(ahg_sas_verify(&t, KEY, SE, 0), AHG_EAUTH);
    /* tampered resource */
    assert_int_equal(ahg_sas_parse("SharedAccessSignature sr=" SR_UP "x&sig=" SIG_UP
                                   "&se=1700000000&skn=" KNAME,
                                   &t),
                     AHG_OK);
    assert_int_equal(ahg_sas_verify(&t, KEY, SE, 0), AHG_EAUTH);
    /* malformed signatures */
    assert_int_equal(
        ahg_sas_parse("SharedAccessSignature sr=" SR_UP "&sig=J7nwa&se=1700000000&skn=" KNAME, &t),
        AHG_OK);
    assert_int_equal(ahg_sas_verify(&t, KEY, SE, 0), AHG_EAUTH);
    assert_int_equal(ahg_sas_parse("SharedAccessSignature sr=" SR_UP
                                   "&sig=J7nwa/oRAtl2Vv+Qn0IHUnrPax9fAX6O/aoeDCh6zIs&se=1700000000"
                                   "&skn=" KNAME,
                                   &t),
                     AHG_OK);
    assert_int_equal(ahg_sas_verify(&t, KEY, SE, 0), AHG_EAUTH);
}

static void
test_sas_pair_order_permutations(void **state)
{
    static const char *const pairs[4] = {"sr=" SR_UP, "sig=" SIG_UP, "se=1700000000", "skn=" KNAME};
    char tok[512];
    struct ahg_sas t;
    int count = 0;
    (void)state;

    for (int a = 0; a < 4; a++) {
        for (int b = 0; b < 4; b++) {
            for (int c = 0; c < 4; c++) {
                int d = 6 - a - b - c;
                if (a == b || a == c || b == c || d < 0 || d > 3 || d == a || d == b || d == c)
                    continue;
                (void)snprintf(tok, sizeof(tok), "SharedAccessSignature %s&%s&%s&%s", pairs[a],
                               pairs[b], pairs[c], pairs[d]);
                assert_int_equal(ahg_sas_parse(tok, &t), AHG_OK);
                assert_string_equal(t.sr_raw, SR_UP);
                assert_string_equal(t.skn, KNAME);
                assert_int_equal(ahg_sas_verify(&t, KEY, SE, 0), AHG_OK);
                count++;
            }
        }
    }
    assert_int_equal(count, 24);
}

static void
test_sas_case_insensitive_keys_and_prefix(void **state)
{
    static const char *const ok[] = {
        "sharedaccesssignature sr=" SR_UP "&sig=" SIG_UP "&se=1700000000&skn=" KNAME,
        "SHAREDACCESSSIGNATURE SR=" SR_UP "&SIG=" SIG_UP "&SE=1700000000&SKN=" KNAME,
        "SharedAccessSignature Sr=" SR_UP "&sIg=" SIG_UP "&sE=1700000000&Skn=" KNAME,
        "  SharedAccessSignature \t  sr=" SR_UP "&sig=" SIG_UP "&se=1700000000&skn=" KNAME " \t",
        "SharedAccessSignature sr=" SR_UP "&sig=" SIG_UP "&se=1700000000&skn=" KNAME
        "&extra=ignored&x=%zz",
        /* values may be percent-encoded (se, skn) */
        "SharedAccessSignature sr=" SR_UP "&sig=" SIG_UP
        "&se=%31700000000&skn=Root%4DanageSharedAccessKey",
    };
    struct ahg_sas t;
    (void)state;

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int rc = ahg_sas_parse(ok[i], &t);
        if (rc != AHG_OK)
            fail_msg("parse #%zu = %d", i, rc);
        assert_string_equal(t.skn, KNAME);
        assert_int_equal(t.se, SE);
        assert_int_equal(ahg_sas_verify(&t, KEY, SE, 0), AHG_OK);
    }
}

static void
expect_parse(const char *tok, int want)
{
    struct ahg_sas t;
    int rc;

    memset(&t, 0x55, sizeof(t));
    rc = ahg_sas_parse(tok, &t);
    if (rc != want)
        fail_msg("parse(\"%s\") = %d, want %d", tok, rc, want);
    if (rc != AHG_OK) {
        /* nothing half-parsed is left behind */
        assert_string_equal(t.sr_raw, "");
        assert_string_equal(t.sig, "");
        assert_string_equal(t.skn, "");
        assert_int_equal(t.se, 0);
    }
}

#define P   "SharedAccessSignature "
#define SR  "sr=" SR_UP
#define SG  "sig=" SIG_UP
#define SEX "se=1700000000"
#define SK  "skn=" KNAME

static void
test_sas_parse_rejects_malformed(void **state)
{
    static const char *const bad[] = {
        /* missing fields */
        P SG "&" SEX "&" SK,
        P SR "&" SEX "&" SK,
        P SR "&" SG "&" SK,
        P SR "&" SG "&" SEX,
        /* duplicates (also differing in case) */
        P SR "&" SR "&" SG "&" SEX "&" SK,
        P SR "&" SG "&" SEX "&" SK "&SKN=other",
        P SR "&" SG "&" SEX "&se=1700000000&" SK,
        /* empty values */
        P "sr=&" SG "&" SEX "&" SK,
        P SR "&sig=&" SEX "&" SK,
        P SR "&" SG "&se=&" SK,
        P SR "&" SG "&" SEX "&skn=",
        /* garbage and structure */
        "",
        "SharedAccessSignature",
        "SharedAccessSignature ",
        "Bearer abc",
        "SharedAccessSignaturesr=" SR_UP "&" SG "&" SEX "&" SK,
        "SharedAccess Signature " SR "&" SG "&" SEX "&" SK,
        "XSharedAccessSignature " SR "&" SG "&" SEX "&" SK,
        P SR "&&" SG "&" SEX "&" SK,
        P "&" SR "&" SG "&" SEX "&" SK,
        P SR "&" SG "&" SEX "&" SK "&",
        P SR "&" SG "&" SEX "&" SK "&flag",
        P SR "&" SG "&" SEX "&" SK "&=v",
        P SR "&" SG "& " SEX "&" SK,
        P SR " &" SG "&" SEX "&" SK,
        P SR "&" SG "&" SEX "&" SK " trailing",
        P SR "&" SG "&" SEX "&skn=a\x01"
             "b",
        /* bad escapes and NUL bytes */
        P "sr=http%3&" SG "&" SEX "&" SK,
        P SR "&sig=%G0&" SEX "&" SK,
        P SR "&" SG "&" SEX "&skn=a%00b",
        P "sr=a%00b&" SG "&" SEX "&" SK,
        /* se must be a canonical non-negative decimal below 2^63 */
        P SR "&" SG "&se=-1&" SK,
        P SR "&" SG "&se=+1&" SK,
        P SR "&" SG "&se=01700000000&" SK,
        P SR "&" SG "&se=1.7e9&" SK,
        P SR "&" SG "&se=1700000000.5&" SK,
        P SR "&" SG "&se=0x10&" SK,
        P SR "&" SG "&se=9223372036854775808&" SK,
        P SR "&" SG "&se=99999999999999999999&" SK,
    };
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_parse(bad[i], AHG_EINVAL);
    expect_parse(P SR "&" SG "&se=9223372036854775807&" SK, AHG_OK);
    expect_parse(P SR "&" SG "&se=0&" SK, AHG_OK);
    assert_int_equal(ahg_sas_parse(NULL, &(struct ahg_sas){0}), AHG_EINVAL);
    assert_int_equal(ahg_sas_parse(TOKEN, NULL), AHG_EINVAL);
}

static void
test_sas_parse_limits(void **state)
{
    static char tok[2 * AHG_SAS_MAX];
    char name[300];
    size_t n;
    (void)state;

    /* key name: 256 accepted, 257 rejected as malformed */
    memset(name, 'n', 256);
    name[256] = '\0';
    (void)snprintf(tok, sizeof(tok), "%s&skn=%s", P SR "&" SG "&" SEX, name);
    expect_parse(tok, AHG_OK);
    (void)snprintf(tok, sizeof(tok), "%s&skn=%sn", P SR "&" SG "&" SEX, name);
    expect_parse(tok, AHG_EINVAL);

    /* sr raw: 1023 chars fit, 1024 do not */
    n = (size_t)snprintf(tok, sizeof(tok), "%s", P "sr=");
    memset(tok + n, 'r', 1023);
    (void)snprintf(tok + n + 1023, sizeof(tok) - n - 1023, "%s", "&" SG "&" SEX "&" SK);
    expect_parse(tok, AHG_OK);
    memset(tok + n, 'r', 1024);
    (void)snprintf(tok + n + 1024, sizeof(tok) - n - 1024, "%s", "&" SG "&" SEX "&" SK);
    expect_parse(tok, AHG_ELIMIT);

    /* sig longer than 127 decoded chars */
    n = (size_t)snprintf(tok, sizeof(tok), "%s", P SR "&sig=");
    memset(tok + n, 'A', 128);
    (void)snprintf(tok + n + 128, sizeof(tok) - n - 128, "%s", "&" SEX "&" SK);
    expect_parse(tok, AHG_ELIMIT);

    /* whole token: AHG_SAS_MAX chars accepted, one more is ELIMIT */
    n = (size_t)snprintf(tok, sizeof(tok), "%s&pad=", TOKEN);
    memset(tok + n, 'p', AHG_SAS_MAX - n);
    tok[AHG_SAS_MAX] = '\0';
    expect_parse(tok, AHG_OK);
    tok[AHG_SAS_MAX] = 'p';
    tok[AHG_SAS_MAX + 1] = '\0';
    expect_parse(tok, AHG_ELIMIT);
}

/* The token in sb-hc-token is URL-encoded once more; the receiver decodes the query
 * value once (form decoding: '+' is a space, hc-protocol.md 14). */
static void
test_sas_token_via_sb_hc_token_query(void **state)
{
    char enc[3 * AHG_SAS_MAX + 1], query[3 * AHG_SAS_MAX + 64], back[AHG_SAS_MAX + 1];
    struct ahg_sas t;
    char *sp;
    (void)state;

    /* hyco style: encodeURIComponent(token) */
    assert_int_equal(ahg_url_encode(TOKEN, strlen(TOKEN), enc, sizeof(enc)), AHG_OK);
    assert_non_null(strstr(enc, "SharedAccessSignature%20sr%3Dhttp%253A%252F%252F"));
    assert_non_null(strstr(enc, "%252B")); /* the sig's %2B, encoded again */
    (void)snprintf(query, sizeof(query), "?sb-hc-action=listen&sb-hc-id=L1&sb-hc-token=%s", enc);
    assert_int_equal(ahg_url_query_get(query, "sb-hc-token", back, sizeof(back), true), AHG_OK);
    assert_string_equal(back, TOKEN);
    assert_int_equal(ahg_sas_parse(back, &t), AHG_OK);
    assert_int_equal(ahg_sas_verify(&t, KEY, SE, 0), AHG_OK);

    /* .NET form style: the space as '+' */
    sp = strstr(query, "%20");
    assert_non_null(sp);
    sp[0] = '+';
    memmove(sp + 1, sp + 3, strlen(sp + 3) + 1);
    assert_non_null(strstr(query, "SharedAccessSignature+sr"));
    assert_int_equal(ahg_url_query_get(query, "sb-hc-token", back, sizeof(back), true), AHG_OK);
    assert_string_equal(back, TOKEN);
    assert_int_equal(ahg_sas_parse(back, &t), AHG_OK);
    assert_int_equal(ahg_sas_verify(&t, KEY, SE, 0), AHG_OK);

    /* without form decoding the '+' stays and the token is malformed */
    assert_int_equal(ahg_url_query_get(query, "sb-hc-token", back, sizeof(back), false), AHG_OK);
    assert_int_not_equal(ahg_sas_parse(back, &t), AHG_OK);
}

static void
test_sas_create_rejects_bad_input(void **state)
{
    static char big[AHG_SAS_SR_MAX];
    char tok[AHG_SAS_MAX + 1], name[300];
    (void)state;

    assert_int_equal(ahg_sas_create(RES, KNAME, KEY, -1, tok, sizeof(tok)), AHG_EINVAL);
    assert_int_equal(ahg_sas_create("", KNAME, KEY, SE, tok, sizeof(tok)), AHG_EINVAL);
    assert_int_equal(ahg_sas_create(RES, "", KEY, SE, tok, sizeof(tok)), AHG_EINVAL);
    assert_int_equal(ahg_sas_create(RES, KNAME, "", SE, tok, sizeof(tok)), AHG_EINVAL);
    assert_int_equal(ahg_sas_create(NULL, KNAME, KEY, SE, tok, sizeof(tok)), AHG_EINVAL);
    assert_int_equal(ahg_sas_create(RES, NULL, KEY, SE, tok, sizeof(tok)), AHG_EINVAL);
    assert_int_equal(ahg_sas_create(RES, KNAME, NULL, SE, tok, sizeof(tok)), AHG_EINVAL);
    assert_int_equal(ahg_sas_create(RES, KNAME, KEY, SE, NULL, 10), AHG_EINVAL);

    memset(name, 'n', 257);
    name[257] = '\0';
    assert_int_equal(ahg_sas_create(RES, name, KEY, SE, tok, sizeof(tok)), AHG_EINVAL);
    assert_int_equal(ahg_sas_create(RES, KNAME, name, SE, tok, sizeof(tok)), AHG_EINVAL);
    name[256] = '\0';
    assert_int_equal(ahg_sas_create(RES, name, name, SE, tok, sizeof(tok)), AHG_OK);

    /* sr must fit struct ahg_sas.sr_raw once encoded: 1023 chars */
    memset(big, 'a', 1023);
    big[1023] = '\0';
    assert_int_equal(ahg_sas_create(big, KNAME, KEY, SE, tok, sizeof(tok)), AHG_OK);
    big[1022] = '/'; /* -> %2F, 1025 chars */
    assert_int_equal(ahg_sas_create(big, KNAME, KEY, SE, tok, sizeof(tok)), AHG_ELIMIT);
    assert_string_equal(tok, "");
}

static void
test_sas_normalize_audience_net_rule(void **state)
{
    static const char *const vec[][2] = {
        {"sb://Contoso.servicebus.windows.net/hyco", "http://contoso.servicebus.windows.net/hyco/"},
        {"wss://Contoso.servicebus.windows.net:443/$hc/hyco?sb-hc-action=listen",
         "http://contoso.servicebus.windows.net/hyco/"},
        {"http://contoso.servicebus.windows.net", "http://contoso.servicebus.windows.net/"},
        {"https://contoso.servicebus.windows.net/hyco",
         "http://contoso.servicebus.windows.net/hyco/"},
        {"ws://127.0.0.1:9911/$hc/hyco?sb-hc-action=listen", "http://127.0.0.1/hyco/"},
        {"wss://contoso.servicebus.windows.net:443/$hc/My%20HC/sub?x=1",
         "http://contoso.servicebus.windows.net/My%20HC/sub/"},
        {"http://contoso.servicebus.windows.net/hyco/",
         "http://contoso.servicebus.windows.net/hyco/"},
        {"https://NS.example:8443/a/B/#frag", "http://ns.example/a/B/"},
        {"sb://ns.example/$HC/x", "http://ns.example/x/"},
        {"sb://ns.example/$hc", "http://ns.example/"},
        {"sb://ns.example/$hcx/y", "http://ns.example/$hcx/y/"},
        {"sb://ns.example/a/$hc/y", "http://ns.example/a/$hc/y/"},
        {"ws://[::1]:9911/$hc/hyco", "http://[::1]/hyco/"},
    };
    char out[128];
    (void)state;

    for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        int rc = ahg_sas_normalize_audience(vec[i][0], out, sizeof(out));
        if (rc != AHG_OK || strcmp(out, vec[i][1]) != 0)
            fail_msg("normalize(\"%s\") = %d \"%s\", want \"%s\"", vec[i][0], rc, out, vec[i][1]);
    }
    assert_int_equal(ahg_sas_normalize_audience("not a url", out, sizeof(out)), AHG_EINVAL);
    assert_string_equal(out, "");
    /* "http://ns.example/hyco/" is 23 chars */
    assert_int_equal(ahg_sas_normalize_audience("sb://ns.example/hyco", out, 24), AHG_OK);
    assert_string_equal(out, "http://ns.example/hyco/");
    assert_int_equal(ahg_sas_normalize_audience("sb://ns.example/hyco", out, 23), AHG_ELIMIT);
    assert_string_equal(out, "");
    assert_int_equal(ahg_sas_normalize_audience(NULL, out, sizeof(out)), AHG_EINVAL);
}

#define NS "contoso.servicebus.windows.net"

static void
test_sas_covers_table(void **state)
{
    static const struct {
        const char *res, *ns, *req, *entity;
        bool want;
    } vec[] = {
        /* namespace scope */
        {"http://" NS "/", NS, NULL, "hyco", true},
        {"http://" NS, NS, NULL, "any/thing", true},
        {"http://" NS "/$hc/", NS, NULL, "hyco", true},
        /* exact, trailing slash and leading slash ignored, case-insensitive */
        {"http://" NS "/hyco", NS, NULL, "hyco", true},
        {"http://" NS "/hyco/", NS, NULL, "hyco", true},
        {"http://" NS "/hyco", NS, NULL, "/hyco/", true},
        {"http://" NS "/HyCo", NS, NULL, "hyco", true},
        /* segment prefix */
        {"http://" NS "/hyco", NS, NULL, "hyco/sub/x", true},
        {"http://" NS "/hyco/sub", NS, NULL, "hyco/sub/x", true},
        {"http://" NS "/hyco/sub", NS, NULL, "hyco", false},
        {"http://" NS "/hyco", NS, NULL, "hycox", false},
        {"http://" NS "/hy", NS, NULL, "hyco", false},
        {"http://" NS "/hyco/su", NS, NULL, "hyco/sub", false},
        {"http://" NS "/other", NS, NULL, "hyco", false},
        /* host */
        {"http://evil.example/hyco", NS, NULL, "hyco", false},
        {"http://" NS ".evil.example/hyco", NS, NULL, "hyco", false},
        {"http://CONTOSO.servicebus.windows.net/hyco", NS, NULL, "hyco", true},
        {"http://127.0.0.1:9911/hyco", NS, "127.0.0.1:9911", "hyco", true},
        {"http://127.0.0.1/hyco", NS, "127.0.0.1:9911", "hyco", true},
        {"http://localhost:1/hyco", NULL, "LOCALHOST", "hyco", true},
        {"http://[::1]:9911/hyco", NS, "[::1]:9911", "hyco", true},
        {"http://[::1]/hyco", NS, "::1", "hyco", true},
        {"http://127.0.0.2/hyco", NS, "127.0.0.1:9911", "hyco", false},
        {"http://" NS "/hyco", NULL, NULL, "hyco", false},
        {"http://" NS "/hyco", NS ":443", NULL, "hyco", true},
        /* port ignored */
        {"http://" NS ":443/hyco", NS, NULL, "hyco", true},
        {"https://" NS ":8443/hyco", NS, NULL, "hyco", true},
        /* schemes */
        {"https://" NS "/hyco", NS, NULL, "hyco", true},
        {"sb://" NS "/hyco", NS, NULL, "hyco", true},
        {"ws://" NS "/hyco", NS, NULL, "hyco", true},
        {"wss://" NS "/$hc/hyco", NS, NULL, "hyco", true},
        {"ftp://" NS "/hyco", NS, NULL, "hyco", false},
        {"amqp://" NS "/hyco", NS, NULL, "hyco", false},
        /* $hc stripping, only as the first segment */
        {"wss://" NS ":443/$hc/hyco?sb-hc-action=listen", NS, NULL, "hyco", true},
        {"http://" NS "/$HC/hyco", NS, NULL, "hyco", true},
        {"http://" NS "/hyco/$hc/x", NS, NULL, "hyco/x", false},
        /* percent-encoded path compares decoded */
        {"http://" NS "/My%20HC", NS, NULL, "My HC", true},
        {"http://" NS "/My%20HC/sub", NS, NULL, "my hc/sub/deeper", true},
        {"http://" NS "/My%2520HC/sub", NS, NULL, "My HC/sub", false},
        {"http://" NS "/a%2Fb", NS, NULL, "a/b", true},
        {"http://" NS "/bad%zz", NS, NULL, "bad", false},
        {"http://" NS "/a%00", NS, NULL, "a", false},
        /* query and fragment ignored */
        {"http://" NS "/hyco?x=1#y", NS, NULL, "hyco", true},
        /* not a URL */
        {NS "/hyco", NS, NULL, "hyco", false},
        {"", NS, NULL, "hyco", false},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        bool got = ahg_sas_covers(vec[i].res, vec[i].ns, vec[i].req, vec[i].entity);
        if (got != vec[i].want)
            fail_msg("covers(\"%s\", %s, %s, \"%s\") = %d", vec[i].res,
                     vec[i].ns ? vec[i].ns : "NULL", vec[i].req ? vec[i].req : "NULL",
                     vec[i].entity, got);
    }
    assert_false(ahg_sas_covers(NULL, NS, NULL, "hyco"));
    assert_false(ahg_sas_covers("http://" NS "/", NS, NULL, NULL));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sas_create_reproduces_vector),
        cmocka_unit_test(test_sas_parse_vector_fields),
        cmocka_unit_test(test_sas_lower_case_escapes_verify_raw),
        cmocka_unit_test(test_sas_namespace_scope_vector),
        cmocka_unit_test(test_sas_round_trip_and_wrong_key),
        cmocka_unit_test(test_sas_expiry_and_grace),
        cmocka_unit_test(test_sas_tampered_se_fails_auth),
        cmocka_unit_test(test_sas_pair_order_permutations),
        cmocka_unit_test(test_sas_case_insensitive_keys_and_prefix),
        cmocka_unit_test(test_sas_parse_rejects_malformed),
        cmocka_unit_test(test_sas_parse_limits),
        cmocka_unit_test(test_sas_token_via_sb_hc_token_query),
        cmocka_unit_test(test_sas_create_rejects_bad_input),
        cmocka_unit_test(test_sas_normalize_audience_net_rule),
        cmocka_unit_test(test_sas_covers_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
