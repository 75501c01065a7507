#include "ahg/http.h"

#include "ahg/err.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#define S(x) x, (sizeof(x) - 1)

/* ---- helpers ---------------------------------------------------------------- */

struct sink {
    char data[8192];
    size_t len;
    int calls;
};

static int
sink_cb(void *ud, const char *d, size_t n)
{
    struct sink *s = ud;
    assert_true(n > 0);
    assert_true(s->len + n <= sizeof(s->data));
    memcpy(s->data + s->len, d, n);
    s->len += n;
    s->calls++;
    return AHG_OK;
}

static int
failing_cb(void *ud, const char *d, size_t n)
{
    (void)d;
    (void)n;
    (*(int *)ud)++;
    return AHG_ELIMIT;
}

static struct ahg_http_parser *
new_parser(enum ahg_http_kind kind, const struct ahg_http_limits *lim)
{
    int err = 0;
    struct ahg_http_parser *p = ahg_http_parser_new(kind, lim, &err);
    assert_non_null(p);
    return p;
}

/* Feed one byte per call; returns the first result other than AHG_EAGAIN. */
static int
feed_bytewise(struct ahg_http_parser *p, const char *s, size_t n, size_t *consumed)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t c = 99;
        int rc = ahg_http_parser_feed(p, s + i, 1, &c);
        total += c;
        if (rc != AHG_EAGAIN) {
            *consumed = total;
            return rc;
        }
        assert_int_equal(c, 1);
    }
    *consumed = total;
    return AHG_EAGAIN;
}

static int
body_bytewise(struct ahg_http_parser *p, const char *s, size_t n, size_t *consumed,
              struct sink *out)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t c = 99;
        int rc = ahg_http_parser_body(p, s + i, 1, &c, sink_cb, out);
        total += c;
        if (rc != AHG_EAGAIN) {
            *consumed = total;
            return rc;
        }
    }
    *consumed = total;
    return AHG_EAGAIN;
}

/* Parse a complete head in one go; fails the test unless AHG_OK. */
static struct ahg_http_parser *
parse_ok(enum ahg_http_kind kind, const char *s, size_t n)
{
    struct ahg_http_parser *p = new_parser(kind, NULL);
    size_t used = 0;
    int rc = ahg_http_parser_feed(p, s, n, &used);
    if (rc != AHG_OK)
        fail_msg("parse failed: %s for [%.*s]", ahg_err_name(rc), (int)n, s);
    assert_int_equal(used, n);
    return p;
}

static void
assert_same_head(const struct ahg_http_head *a, const struct ahg_http_head *b)
{
    assert_int_equal(a->kind, b->kind);
    if (a->kind == AHG_HTTP_REQUEST) {
        assert_string_equal(a->method, b->method);
        assert_string_equal(a->target, b->target);
    } else {
        assert_int_equal(a->status, b->status);
        assert_string_equal(a->reason, b->reason);
    }
    assert_int_equal(a->version_major, b->version_major);
    assert_int_equal(a->version_minor, b->version_minor);
    assert_int_equal(a->nfields, b->nfields);
    for (size_t i = 0; i < a->nfields; i++) {
        assert_string_equal(a->fields[i].raw, b->fields[i].raw);
        assert_string_equal(a->fields[i].name, b->fields[i].name);
        assert_string_equal(a->fields[i].value, b->fields[i].value);
    }
    assert_int_equal(a->framing, b->framing);
    assert_true(a->content_length == b->content_length);
    assert_int_equal(a->keep_alive, b->keep_alive);
    assert_int_equal(a->upgrade, b->upgrade);
}

static void
assert_serializes_to(const struct ahg_http_head *h, unsigned flags, const char *want)
{
    char out[4096];
    size_t n = 0;
    assert_int_equal(ahg_http_head_serialize(h, flags, out, sizeof(out), &n), AHG_OK);
    if (n != strlen(want) || memcmp(out, want, n) != 0)
        fail_msg("serialized:\n[%.*s]\nwanted:\n[%s]", (int)n, out, want);
}

/* ---- heads: streaming, order, round trip ------------------------------------- */

static const char req1[] = "POST /api/v1/items?x=1&y=%20 HTTP/1.1\r\n"
                           "Host: example.test:8443\r\n"
                           "User-Agent: curl/8.0\r\n"
                           "X-Dup: one\r\n"
                           "x-dup:two\r\n"
                           "X-DUP:   three  \r\n"
                           "Cookie: a=1\r\n"
                           "Content-Length: 4\r\n"
                           "\r\n";

static void
test_http_request_whole_and_bytewise_same(void **state)
{
    (void)state;
    struct ahg_http_parser *a = parse_ok(AHG_HTTP_REQUEST, S(req1));
    struct ahg_http_parser *b = new_parser(AHG_HTTP_REQUEST, NULL);
    size_t used = 0;
    assert_int_equal(feed_bytewise(b, S(req1), &used), AHG_OK);
    assert_int_equal(used, sizeof(req1) - 1);

    const struct ahg_http_head *h = ahg_http_parser_head(a);
    assert_non_null(h);
    assert_same_head(h, ahg_http_parser_head(b));
    assert_string_equal(h->method, "POST");
    assert_string_equal(h->target, "/api/v1/items?x=1&y=%20");
    assert_int_equal(h->version_major, 1);
    assert_int_equal(h->version_minor, 1);
    assert_null(h->reason);
    assert_int_equal(h->nfields, 7);
    assert_int_equal(h->framing, AHG_HTTP_BODY_LENGTH);
    assert_true(h->content_length == 4);
    assert_true(h->keep_alive);
    assert_false(h->upgrade);
    assert_int_equal(ahg_http_parser_framing(a), AHG_HTTP_BODY_LENGTH);

    /* feeding again after completion consumes nothing */
    assert_int_equal(ahg_http_parser_feed(a, "xyz", 3, &used), AHG_OK);
    assert_int_equal(used, 0);
    ahg_http_parser_free(a);
    ahg_http_parser_free(b);
}

static const char resp1[] = "HTTP/1.1 404 Not Found Here\r\n"
                            "Server: test\r\n"
                            "Set-Cookie: a=1\r\n"
                            "Set-Cookie: b=2\r\n"
                            "Transfer-Encoding: chunked\r\n"
                            "\r\n";

static void
test_http_response_whole_and_bytewise_same(void **state)
{
    (void)state;
    struct ahg_http_parser *a = parse_ok(AHG_HTTP_RESPONSE, S(resp1));
    struct ahg_http_parser *b = new_parser(AHG_HTTP_RESPONSE, NULL);
    size_t used = 0;
    assert_int_equal(feed_bytewise(b, S(resp1), &used), AHG_OK);
    assert_int_equal(used, sizeof(resp1) - 1);
    const struct ahg_http_head *h = ahg_http_parser_head(a);
    assert_same_head(h, ahg_http_parser_head(b));
    assert_int_equal(h->status, 404);
    assert_string_equal(h->reason, "Not Found Here");
    assert_null(h->method);
    assert_int_equal(h->framing, AHG_HTTP_BODY_CHUNKED);
    assert_true(h->chunked);
    assert_true(h->keep_alive);
    ahg_http_parser_free(a);
    ahg_http_parser_free(b);
}

static void
test_http_fields_order_duplicates_case(void **state)
{
    (void)state;
    struct ahg_http_parser *p = parse_ok(AHG_HTTP_REQUEST, S(req1));
    const struct ahg_http_head *h = ahg_http_parser_head(p);
    const char *names[] = {"Host",  "User-Agent", "X-Dup",         "x-dup",
                           "X-DUP", "Cookie",     "Content-Length"};
    const char *values[] = {"example.test:8443", "curl/8.0", "one", "two", "three", "a=1", "4"};
    for (size_t i = 0; i < 7; i++) {
        assert_string_equal(h->fields[i].name, names[i]);
        assert_int_equal(h->fields[i].name_len, strlen(names[i]));
        assert_string_equal(h->fields[i].value, values[i]);
        assert_int_equal(h->fields[i].value_len, strlen(values[i]));
    }
    assert_string_equal(h->fields[4].raw, "X-DUP:   three  ");
    assert_string_equal(h->fields[3].raw, "x-dup:two");

    /* case-insensitive iteration in order */
    size_t pos = 0;
    const struct ahg_http_field *f = ahg_http_head_find(h, "x-DUP", &pos);
    assert_non_null(f);
    assert_string_equal(f->value, "one");
    f = ahg_http_head_find(h, "x-DUP", &pos);
    assert_string_equal(f->value, "two");
    f = ahg_http_head_find(h, "x-DUP", &pos);
    assert_string_equal(f->value, "three");
    assert_null(ahg_http_head_find(h, "x-DUP", &pos));
    size_t len = 0;
    assert_string_equal(ahg_http_head_get(h, "HOST", &len), "example.test:8443");
    assert_int_equal(len, 17);
    assert_null(ahg_http_head_get(h, "Missing", NULL));
    ahg_http_parser_free(p);
}

static void
test_http_serialize_round_trip_exact(void **state)
{
    (void)state;
    struct ahg_http_parser *p = parse_ok(AHG_HTTP_REQUEST, S(req1));
    assert_serializes_to(ahg_http_parser_head(p), 0, req1);
    ahg_http_parser_free(p);

    p = parse_ok(AHG_HTTP_RESPONSE, S(resp1));
    assert_serializes_to(ahg_http_parser_head(p), 0, resp1);
    ahg_http_parser_free(p);

    static const char r10[] = "HTTP/1.0 200 \r\nX:\r\nY: \t v \t\r\n\r\n";
    p = parse_ok(AHG_HTTP_RESPONSE, S(r10));
    const struct ahg_http_head *h = ahg_http_parser_head(p);
    assert_string_equal(h->reason, "");
    assert_string_equal(h->fields[0].value, "");
    assert_string_equal(h->fields[1].value, "v");
    assert_serializes_to(h, 0, r10);
    ahg_http_parser_free(p);
}

static void
test_http_serialize_buffer_too_small(void **state)
{
    (void)state;
    struct ahg_http_parser *p = parse_ok(AHG_HTTP_REQUEST, S(req1));
    const struct ahg_http_head *h = ahg_http_parser_head(p);
    size_t need = 0;
    assert_int_equal(ahg_http_head_serialize(h, 0, NULL, 0, &need), AHG_ELIMIT);
    assert_int_equal(need, sizeof(req1) - 1);
    char *out = malloc(need);
    assert_non_null(out);
    size_t n = 0;
    assert_int_equal(ahg_http_head_serialize(h, 0, out, need - 1, &n), AHG_ELIMIT);
    assert_int_equal(n, need);
    assert_int_equal(ahg_http_head_serialize(h, 0, out, need, &n), AHG_OK);
    assert_int_equal(n, need);
    assert_memory_equal(out, req1, need);
    free(out);
    assert_int_equal(ahg_http_head_serialize(NULL, 0, NULL, 0, &n), AHG_EINVAL);
    assert_int_equal(ahg_http_head_serialize(h, 0, NULL, 0, NULL), AHG_EINVAL);
    ahg_http_parser_free(p);
}

/* ---- hop-by-hop --------------------------------------------------------------- */

static const char hop_req[] = "GET /chat HTTP/1.1\r\n"
                              "Host: h\r\n"
                              "Connection: keep-alive, X-Private , Host, content-length\r\n"
                              "connection: x-other\r\n"
                              "Keep-Alive: timeout=5\r\n"
                              "Proxy-Connection: keep-alive\r\n"
                              "TE: trailers\r\n"
                              "Upgrade: websocket\r\n"
                              "Trailer: X-T\r\n"
                              "Proxy-Authorization: Basic eA==\r\n"
                              "Proxy-Authenticate: Basic\r\n"
                              "x-private: 1\r\n"
                              "X-Other: 2\r\n"
                              "X-Kept: 3\r\n"
                              "Content-Length: 0\r\n"
                              "Authorization: Bearer t\r\n"
                              "\r\n";

static void
test_http_serialize_drops_hop_by_hop(void **state)
{
    (void)state;
    struct ahg_http_parser *p = parse_ok(AHG_HTTP_REQUEST, S(hop_req));
    const struct ahg_http_head *h = ahg_http_parser_head(p);
    assert_serializes_to(h, AHG_HTTP_SER_DROP_HOP,
                         "GET /chat HTTP/1.1\r\n"
                         "Host: h\r\n"
                         "X-Kept: 3\r\n"
                         "Content-Length: 0\r\n"
                         "Authorization: Bearer t\r\n"
                         "\r\n");
    /* without the flag nothing is dropped */
    assert_serializes_to(h, 0, hop_req);
    ahg_http_parser_free(p);
}

static void
test_http_strip_hop_by_hop_then_add(void **state)
{
    (void)state;
    struct ahg_http_parser *p = parse_ok(AHG_HTTP_REQUEST, S(hop_req));
    struct ahg_http_head *h = ahg_http_parser_head_take(p);
    assert_non_null(h);
    assert_null(ahg_http_parser_head(p));
    size_t removed = 0;
    assert_int_equal(ahg_http_head_strip_hop_by_hop(h, &removed), AHG_OK);
    assert_int_equal(removed, 11);
    /* a field the proxy adds after stripping survives even though the client
     * listed it in Connection */
    assert_int_equal(ahg_http_head_add(h, "X-Private", "proxy"), AHG_OK);
    assert_int_equal(ahg_http_head_add(h, "Connection", "close"), AHG_OK);
    assert_serializes_to(h, 0,
                         "GET /chat HTTP/1.1\r\n"
                         "Host: h\r\n"
                         "X-Kept: 3\r\n"
                         "Content-Length: 0\r\n"
                         "Authorization: Bearer t\r\n"
                         "X-Private: proxy\r\n"
                         "Connection: close\r\n"
                         "\r\n");
    size_t need = 0;
    assert_int_equal(ahg_http_head_serialize(h, 0, NULL, 0, &need), AHG_ELIMIT);
    assert_int_equal(need, h->bytes);
    ahg_http_head_free(h);
    ahg_http_parser_free(p);
}

/* ---- smuggling and malformed shapes ------------------------------------------ */

struct bad_case {
    enum ahg_http_kind kind;
    const char *in;
    size_t len;
    int err;
    int status;
    const char *what;
};

#define RQ(x) AHG_HTTP_REQUEST, x, sizeof(x) - 1
#define RS(x) AHG_HTTP_RESPONSE, x, sizeof(x) - 1
#define H     "Host: a\r\n"
#define BAD(k, e, st, w)                                                                           \
    {                                                                                              \
        k, e, st, w                                                                                \
    }

static const struct bad_case bad_cases[] = {
    BAD(RQ("POST / HTTP/1.1\r\n" H "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
        AHG_EPROTO, 400, "CL + TE"),
    BAD(RQ("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
        AHG_EPROTO, 400, "TE + CL"),
    BAD(RS("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
        AHG_EPROTO, 400, "CL + TE in response"),
    BAD(RQ("POST / HTTP/1.1\r\n" H "Content-Length: 1\r\nContent-Length: 2\r\n\r\n"), AHG_EPROTO,
        400, "differing CL"),
    BAD(RQ("POST / HTTP/1.1\r\n" H "Content-Length: 1, 2\r\n\r\n"), AHG_EPROTO, 400, "CL list"),
    BAD(RQ("POST / HTTP/1.1\r\n" H "Content-Length: 1,\r\n\r\n"), AHG_EPROTO, 400, "CL empty elem"),
    BAD(RQ("POST / HTTP/1.1\r\n" H "Content-Length: abc\r\n\r\n"), AHG_EPROTO, 400, "CL alpha"),
    BAD(RQ("POST / HTTP/1.1\r\n" H "Content-Length: -1\r\n\r\n"), AHG_EPROTO, 400, "CL signed -"),
    BAD(RQ("POST / HTTP/1.1\r\n" H "Content-Length: +1\r\n\r\n"), AHG_EPROTO, 400, "CL signed +"),
    BAD(RQ("POST / HTTP/1.1\r\n" H "Content-Length: 0x10\r\n\r\n"), AHG_EPROTO, 400, "CL hex"),
    BAD(RQ("POST / HTTP/1.1\r\n" H "Content-Length: 1 2\r\n\r\n"), AHG_EPROTO, 400, "CL space"),
    BAD(RQ("POST / HTTP/1.1\r\n" H "Content-Length:\r\n\r\n"), AHG_EPROTO, 400, "CL empty"),
    BAD(RQ("POST / HTTP/1.1\r\n" H "Content-Length: 9223372036854775808\r\n\r\n"), AHG_EPROTO, 400,
        "CL > INT64_MAX"),
    BAD(RQ("POST / HTTP/1.1\r\n" H "Content-Length: 99999999999999999999999\r\n\r\n"), AHG_EPROTO,
        400, "CL overflow"),
    BAD(RQ("POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip\r\n\r\n"), AHG_EPROTO, 400,
        "TE final not chunked"),
    BAD(RQ("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked, gzip\r\n\r\n"), AHG_EPROTO, 400,
        "TE chunked not last"),
    BAD(RQ("POST / HTTP/1.1\r\n" H "Transfer-Encoding: foo, chunked\r\n\r\n"), AHG_ENOTIMPL, 501,
        "TE unknown coding"),
    BAD(RQ("POST / HTTP/1.1\r\n" H "Transfer-Encoding: identity\r\n\r\n"), AHG_ENOTIMPL, 501,
        "TE identity"),
    BAD(RS("HTTP/1.1 200 OK\r\nTransfer-Encoding: br\r\n\r\n"), AHG_ENOTIMPL, 501,
        "TE unknown in response"),
    BAD(RQ("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked, chunked\r\n\r\n"), AHG_EPROTO, 400,
        "chunked twice"),
    BAD(RQ("POST / HTTP/1.1\r\n" H
           "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
        AHG_EPROTO, 400, "chunked twice, two fields"),
    BAD(RQ("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked;q=1\r\n\r\n"), AHG_EPROTO, 400,
        "TE parameters"),
    BAD(RQ("POST / HTTP/1.1\r\n" H "Transfer-Encoding: \r\n\r\n"), AHG_EPROTO, 400, "TE empty"),
    BAD(RQ("POST / HTTP/1.1\r\n" H "Transfer-Encoding: \"chunked\"\r\n\r\n"), AHG_EPROTO, 400,
        "TE quoted"),
    BAD(RQ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), AHG_EPROTO, 400,
        "TE in HTTP/1.0"),
    BAD(RQ("GET / HTTP/1.1\r\n" H "X-A: b\r\n c\r\n\r\n"), AHG_EPROTO, 400, "obs-fold SP"),
    BAD(RQ("GET / HTTP/1.1\r\n" H "X-A: b\r\n\tc\r\n\r\n"), AHG_EPROTO, 400, "obs-fold HTAB"),
    BAD(RQ("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), AHG_EPROTO, 400, "first field folded"),
    BAD(RQ("GET / HTTP/1.1\n" H "\r\n"), AHG_EPROTO, 400, "bare LF request line"),
    BAD(RQ("GET / HTTP/1.1\r\nHost: a\n\r\n"), AHG_EPROTO, 400, "bare LF field"),
    BAD(RQ("GET / HTTP/1.1\r\n" H "\n"), AHG_EPROTO, 400, "bare LF end of head"),
    BAD(RQ("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"), AHG_EPROTO, 400, "bare CR field"),
    BAD(RQ("GET / HTTP/1.1\r" H "\r\n"), AHG_EPROTO, 400, "bare CR request line"),
    BAD(RQ("GET / HTTP/1.1\r\n" H "\r\r\n"), AHG_EPROTO, 400, "bare CR end of head"),
    BAD(RQ("\nGET / HTTP/1.1\r\n" H "\r\n"), AHG_EPROTO, 400, "leading bare LF"),
    BAD(RQ("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n" H "\r\n"), AHG_EPROTO, 400,
        "9 leading CRLF"),
    BAD(RQ("GET / HTTP/1.1\r\n" H "X Y: z\r\n\r\n"), AHG_EPROTO, 400, "space in name"),
    BAD(RQ("GET / HTTP/1.1\r\n" H "Host : a\r\n\r\n"), AHG_EPROTO, 400, "space before colon"),
    BAD(RQ("GET / HTTP/1.1\r\n" H "X-A\t: a\r\n\r\n"), AHG_EPROTO, 400, "tab before colon"),
    BAD(RQ("GET / HTTP/1.1\r\n" H ": a\r\n\r\n"), AHG_EPROTO, 400, "empty name"),
    BAD(RQ("GET / HTTP/1.1\r\n" H "(a): b\r\n\r\n"), AHG_EPROTO, 400, "non-token name"),
    BAD(RQ("GET / HTTP/1.1\r\n" H "X-\x80: b\r\n\r\n"), AHG_EPROTO, 400, "8-bit name"),
    BAD(RQ("GET / HTTP/1.1\r\n" H "NoColon\r\n\r\n"), AHG_EPROTO, 400, "no colon"),
    BAD(RQ("GET / HTTP/1.1\r\n" H "X-A: a\0b\r\n\r\n"), AHG_EPROTO, 400, "NUL in value"),
    BAD(RQ("GET / HTTP/1.1\r\n" H "X-A: a\x01"
           "b\r\n\r\n"),
        AHG_EPROTO, 400, "CTL in value"),
    BAD(RQ("GET / HTTP/1.1\r\n" H "X-A: a\x7f\r\n\r\n"), AHG_EPROTO, 400, "DEL in value"),
    BAD(RQ("GET / HTTP/1.1\r\n" H "X-A: \x1b[31m\r\n\r\n"), AHG_EPROTO, 400, "ESC in value"),
    BAD(RQ("GET example.com HTTP/1.1\r\n" H "\r\n"), AHG_EPROTO, 400, "target not a form"),
    BAD(RQ("GET * HTTP/1.1\r\n" H "\r\n"), AHG_EPROTO, 400, "asterisk-form not OPTIONS"),
    BAD(RQ("M-SEARCH * HTTP/1.1\r\n" H "\r\n"), AHG_EPROTO, 400, "asterisk-form M-SEARCH"),
    BAD(RQ("POST / HTTP/1.1\r\n" H "Transfer-Encoding: ,chunked\r\n\r\n"), AHG_EPROTO, 400,
        "TE empty element (http_parser disagrees)"),
    BAD(RQ("GET ftp://a/ HTTP/1.1\r\n" H "\r\n"), AHG_EPROTO, 400, "absolute-form ftp"),
    BAD(RQ("GET http:///x HTTP/1.1\r\n" H "\r\n"), AHG_EPROTO, 400, "absolute-form no host"),
    BAD(RQ("GET http://u@a/ HTTP/1.1\r\n" H "\r\n"), AHG_EPROTO, 400, "absolute-form userinfo"),
    BAD(RQ("GET /a#frag HTTP/1.1\r\n" H "\r\n"), AHG_EPROTO, 400, "fragment"),
    BAD(RQ("GET /a\x01 HTTP/1.1\r\n" H "\r\n"), AHG_EPROTO, 400, "CTL in target"),
    BAD(RQ("GET /\xc3\xa9 HTTP/1.1\r\n" H "\r\n"), AHG_EPROTO, 400, "8-bit target"),
    BAD(RQ("GET  / HTTP/1.1\r\n" H "\r\n"), AHG_EPROTO, 400, "double SP"),
    BAD(RQ("GET / HTTP/1.1 \r\n" H "\r\n"), AHG_EPROTO, 400, "trailing SP"),
    BAD(RQ("GET /\r\n" H "\r\n"), AHG_EPROTO, 400, "HTTP/0.9 style"),
    BAD(RQ("GET / HTTP/1.1\r\n\r\n"), AHG_EPROTO, 400, "no Host in 1.1"),
    BAD(RQ("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"), AHG_EPROTO, 400, "two Host"),
    BAD(RQ("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), AHG_EPROTO, 400, "two Host 1.0"),
    BAD(RQ("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), AHG_EPROTO, 400, "Host with slash"),
    BAD(RQ("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"), AHG_EPROTO, 400, "Host with userinfo"),
    BAD(RQ("GET / HTTP/1.1\r\nHost:\r\n\r\n"), AHG_EPROTO, 400, "empty Host"),
    BAD(RQ("GET / HTTP/2.0\r\n" H "\r\n"), AHG_EPROTO, 400, "HTTP/2.0"),
    BAD(RQ("GET / HTTP/1.2\r\n" H "\r\n"), AHG_EPROTO, 400, "HTTP/1.2"),
    BAD(RQ("GET / HTTP/0.9\r\n" H "\r\n"), AHG_EPROTO, 400, "HTTP/0.9"),
    BAD(RQ("GET / HTTP/1.10\r\n" H "\r\n"), AHG_EPROTO, 400, "HTTP/1.10"),
    BAD(RQ("GET / http/1.1\r\n" H "\r\n"), AHG_EPROTO, 400, "lowercase http"),
    BAD(RS("HTTP/2 200 OK\r\n\r\n"), AHG_EPROTO, 400, "response HTTP/2"),
    BAD(RS("HTTP/1.1 099 X\r\n\r\n"), AHG_EPROTO, 400, "status < 100"),
    BAD(RS("HTTP/1.1 600 X\r\n\r\n"), AHG_EPROTO, 400, "status >= 600"),
    BAD(RS("HTTP/1.1 20 OK\r\n\r\n"), AHG_EPROTO, 400, "2-digit status"),
    BAD(RS("HTTP/1.1 2000 OK\r\n\r\n"), AHG_EPROTO, 400, "4-digit status"),
    BAD(RS("HTTP/1.1 200 O\x01K\r\n\r\n"), AHG_EPROTO, 400, "CTL in reason"),
    BAD(RS("HTTP/1.1 200 OK\nServer: x\r\n\r\n"), AHG_EPROTO, 400, "response bare LF"),
    BAD(RQ("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"), AHG_ENOTIMPL, 501, "CONNECT"),
    BAD(RQ("FOO / HTTP/1.1\r\n" H "\r\n"), AHG_ENOTIMPL, 501, "unknown method"),
    BAD(RQ("get / HTTP/1.1\r\n" H "\r\n"), AHG_ENOTIMPL, 501, "lowercase method"),
    BAD(RQ("G(T / HTTP/1.1\r\n" H "\r\n"), AHG_EPROTO, 400, "non-token method"),
    BAD(RQ("HTTP/1.1 200 OK\r\n\r\n"), AHG_EPROTO, 400, "response to request parser"),
};

static void
check_bad_case(const struct bad_case *c, bool bytewise)
{
    struct ahg_http_parser *p = new_parser(c->kind, NULL);
    size_t used = 0;
    int rc = bytewise ? feed_bytewise(p, c->in, c->len, &used)
                      : ahg_http_parser_feed(p, c->in, c->len, &used);
    if (rc != c->err)
        fail_msg("%s (%s): got %s, want %s", c->what, bytewise ? "bytewise" : "whole",
                 ahg_err_name(rc), ahg_err_name(c->err));
    assert_int_equal(ahg_err_http_status(rc), c->status);
    assert_null(ahg_http_parser_head(p));
    /* errors are sticky */
    assert_int_equal(ahg_http_parser_feed(p, "x", 1, &used), c->err);
    assert_int_equal(used, 0);
    ahg_http_parser_free(p);
}

static void
test_http_smuggling_shapes_rejected(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        check_bad_case(&bad_cases[i], false);
        check_bad_case(&bad_cases[i], true);
    }
}

/* Property: for arbitrarily corrupted input, feeding it whole and one byte at a
 * time gives the same result, the same consumed count and the same head. */
static void
test_http_mutations_whole_equals_bytewise(void **state)
{
    (void)state;
    static const char *const seeds[] = {req1, resp1, hop_req};
    uint32_t x = 12345;
    for (int iter = 0; iter < 3000; iter++) {
        const char *seed = seeds[iter % 3];
        enum ahg_http_kind kind = seed == resp1 ? AHG_HTTP_RESPONSE : AHG_HTTP_REQUEST;
        char in[1024];
        size_t n = strlen(seed);
        memcpy(in, seed, n);
        int flips = 1 + iter % 3;
        for (int k = 0; k < flips; k++) {
            x = x * 1103515245u + 12345u;
            size_t at = (x >> 8) % n;
            x = x * 1103515245u + 12345u;
            static const char pool[] = "\r\n \t:,;0aZ\x00\x7f\x80-";
            in[at] = (x >> 20) & 1 ? (char)(x >> 12) : pool[(x >> 12) % (sizeof(pool) - 1)];
        }
        struct ahg_http_parser *a = new_parser(kind, NULL);
        struct ahg_http_parser *b = new_parser(kind, NULL);
        size_t ua = 0, ub = 0;
        int ra = ahg_http_parser_feed(a, in, n, &ua);
        int rb = feed_bytewise(b, in, n, &ub);
        if (ra != rb)
            fail_msg("iter %d: whole %s, bytewise %s", iter, ahg_err_name(ra), ahg_err_name(rb));
        if (ra == AHG_OK) {
            assert_int_equal(ua, ub);
            assert_same_head(ahg_http_parser_head(a), ahg_http_parser_head(b));
        } else if (ra == AHG_EAGAIN) {
            assert_int_equal(ua, n);
            assert_int_equal(ub, n);
        }
        ahg_http_parser_free(a);
        ahg_http_parser_free(b);
    }
}

/* Shapes that look odd but are valid; they must parse. */
static void
test_http_valid_edge_shapes_accepted(void **state)
{
    (void)state;
    static const char *const ok_req[] = {
        "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://Example.COM:8080/p?q HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
        "GET HTTPS://a HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "GET //double/slash HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
        "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "PATCH /x HTTP/1.1\r\nHost: a\r\nX-Obs: caf\xc3\xa9\r\nX-Tab: a\tb\r\nX-Empty:\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, CHUNKED\r\n\r\n",
        ("PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: "
         "chunked\r\n\r\n"),
        "GET /~!$&'()*+,;=:@%zz[]{}|^`\"<>\\ HTTP/1.1\r\nHost: a\r\n\r\n",
        "M-SEARCH /x HTTP/1.1\r\nHost: a\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(ok_req) / sizeof(ok_req[0]); i++) {
        struct ahg_http_parser *p = parse_ok(AHG_HTTP_REQUEST, ok_req[i], strlen(ok_req[i]));
        ahg_http_parser_free(p);
    }
    struct ahg_http_parser *p =
        parse_ok(AHG_HTTP_REQUEST, S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n"
                                     "Transfer-Encoding: chunked\r\n\r\n"));
    assert_int_equal(ahg_http_parser_framing(p), AHG_HTTP_BODY_CHUNKED);
    ahg_http_parser_free(p);
    p = parse_ok(AHG_HTTP_RESPONSE, S("HTTP/1.1 200\r\n\r\n"));
    assert_string_equal(ahg_http_parser_head(p)->reason, "");
    /* the status line gains the SP before the (empty) reason */
    assert_serializes_to(ahg_http_parser_head(p), 0, "HTTP/1.1 200 \r\n\r\n");
    ahg_http_parser_free(p);
}

static void
test_http_duplicate_identical_content_length_merged(void **state)
{
    (void)state;
    static const char in[] = "POST /u HTTP/1.1\r\n"
                             "content-length: 5\r\n"
                             "Host: a\r\n"
                             "Content-Length: 005\r\n"
                             "CONTENT-LENGTH: 5, 5\r\n"
                             "\r\n"
                             "hello";
    struct ahg_http_parser *p = new_parser(AHG_HTTP_REQUEST, NULL);
    size_t used = 0;
    assert_int_equal(ahg_http_parser_feed(p, S(in), &used), AHG_OK);
    assert_int_equal(used, sizeof(in) - 1 - 5);
    const struct ahg_http_head *h = ahg_http_parser_head(p);
    assert_int_equal(h->framing, AHG_HTTP_BODY_LENGTH);
    assert_true(h->content_length == 5);
    assert_serializes_to(h, 0, "POST /u HTTP/1.1\r\ncontent-length: 5\r\nHost: a\r\n\r\n");
    struct sink s = {.len = 0};
    size_t bused = 0;
    assert_int_equal(ahg_http_parser_body(p, in + used, 5, &bused, sink_cb, &s), AHG_OK);
    assert_int_equal(bused, 5);
    assert_int_equal(s.len, 5);
    assert_memory_equal(s.data, "hello", 5);
    ahg_http_parser_free(p);

    /* a single list of identical values is merged too */
    p = parse_ok(AHG_HTTP_RESPONSE, S("HTTP/1.1 200 OK\r\nContent-Length: 7 , 7\r\n\r\n"));
    assert_serializes_to(ahg_http_parser_head(p), 0,
                         "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n");
    assert_true(ahg_http_parser_head(p)->content_length == 7);
    ahg_http_parser_free(p);
}

static void
test_http_header_named_zero_with_colon_value(void **state)
{
    (void)state;
    static const char in[] = "GET /$hc/x HTTP/1.1\r\n"
                             "Host: ns:443\r\n"
                             "0: Sec-WebSocket-Extensions: permessage-deflate\r\n"
                             "\r\n";
    struct ahg_http_parser *p = parse_ok(AHG_HTTP_REQUEST, S(in));
    const struct ahg_http_head *h = ahg_http_parser_head(p);
    assert_int_equal(h->nfields, 2);
    assert_string_equal(h->fields[1].name, "0");
    assert_string_equal(h->fields[1].value, "Sec-WebSocket-Extensions: permessage-deflate");
    assert_string_equal(ahg_http_head_get(h, "0", NULL),
                        "Sec-WebSocket-Extensions: permessage-deflate");
    assert_null(ahg_http_head_get(h, "Sec-WebSocket-Extensions", NULL));
    assert_serializes_to(h, 0, in);
    ahg_http_parser_free(p);
}

/* ---- limits ------------------------------------------------------------------ */

static char *
make_request(size_t target_len, size_t pad_len, size_t extra_fields)
{
    size_t cap = target_len + pad_len + extra_fields * 16 + 128;
    char *b = malloc(cap);
    assert_non_null(b);
    size_t n = 0;
    memcpy(b + n, "GET /", 5);
    n += 5;
    memset(b + n, 'a', target_len - 1);
    n += target_len - 1;
    n += (size_t)snprintf(b + n, cap - n, " HTTP/1.1\r\nHost: a\r\n");
    for (size_t i = 0; i < extra_fields; i++)
        n += (size_t)snprintf(b + n, cap - n, "X-%zu: v\r\n", i % 10);
    if (pad_len) {
        memcpy(b + n, "X-Pad: ", 7);
        n += 7;
        memset(b + n, 'p', pad_len);
        n += pad_len;
        memcpy(b + n, "\r\n", 2);
        n += 2;
    }
    memcpy(b + n, "\r\n", 3);
    return b;
}

static int
parse_with(const struct ahg_http_limits *lim, const char *in)
{
    struct ahg_http_parser *p = new_parser(AHG_HTTP_REQUEST, lim);
    size_t used = 0;
    int rc = ahg_http_parser_feed(p, in, strlen(in), &used);
    if (rc == AHG_OK)
        assert_int_equal(used, strlen(in));
    ahg_http_parser_free(p);
    return rc;
}

static void
test_http_head_size_limit_boundary(void **state)
{
    (void)state;
    struct ahg_http_limits lim = {.max_head = 1024, .max_line = 512, .max_fields = 0};
    char *base = make_request(1, 1, 0);
    size_t pad = 1024 - strlen(base) + 1;
    free(base);
    char *at = make_request(1, pad, 0);
    assert_int_equal(strlen(at), 1024);
    assert_int_equal(parse_with(&lim, at), AHG_OK);
    char *over = make_request(1, pad + 1, 0);
    assert_int_equal(strlen(over), 1025);
    assert_int_equal(parse_with(&lim, over), AHG_EHDRSIZE);
    assert_int_equal(ahg_err_http_status(parse_with(&lim, over)), 431);
    free(at);
    free(over);

    /* the default is 32 KiB */
    base = make_request(1, 1, 0);
    pad = AHG_HTTP_DEFAULT_MAX_HEAD - strlen(base) + 1;
    free(base);
    at = make_request(1, pad, 0);
    over = make_request(1, pad + 1, 0);
    assert_int_equal(parse_with(NULL, at), AHG_OK);
    assert_int_equal(parse_with(NULL, over), AHG_EHDRSIZE);

    /* one parser, big and small heads in turn: the buffer is regrown after reset */
    struct ahg_http_parser *p = new_parser(AHG_HTTP_REQUEST, NULL);
    static const char small[] = "GET /s HTTP/1.1\r\nHost: a\r\n\r\n";
    for (int round = 0; round < 3; round++) {
        size_t used = 0;
        assert_int_equal(ahg_http_parser_feed(p, at, strlen(at), &used), AHG_OK);
        assert_int_equal(used, strlen(at));
        ahg_http_parser_reset(p);
        assert_int_equal(ahg_http_parser_feed(p, S(small), &used), AHG_OK);
        assert_string_equal(ahg_http_parser_head(p)->target, "/s");
        ahg_http_parser_reset(p);
    }
    ahg_http_parser_free(p);
    free(at);
    free(over);
}

static void
test_http_request_line_limit_boundary(void **state)
{
    (void)state;
    struct ahg_http_limits lim = {.max_head = 4096, .max_line = 100, .max_fields = 0};
    /* request line = "GET " + target + " HTTP/1.1" = target + 13 */
    char *at = make_request(87, 0, 0);
    assert_int_equal(strchr(at, '\r') - at, 100);
    assert_int_equal(parse_with(&lim, at), AHG_OK);
    char *over = make_request(88, 0, 0);
    assert_int_equal(parse_with(&lim, over), AHG_EURISIZE);
    assert_int_equal(ahg_err_http_status(parse_with(&lim, over)), 414);
    free(at);
    free(over);

    /* the default is 8 KiB */
    at = make_request(8192 - 13, 0, 0);
    over = make_request(8192 - 12, 0, 0);
    assert_int_equal(parse_with(NULL, at), AHG_OK);
    assert_int_equal(parse_with(NULL, over), AHG_EURISIZE);
    free(at);
    free(over);

    /* a long status line is 431, not 414 */
    struct ahg_http_parser *p = new_parser(AHG_HTTP_RESPONSE, &lim);
    char line[200];
    memset(line, 'r', sizeof(line));
    memcpy(line, "HTTP/1.1 200 ", 13);
    size_t used;
    assert_int_equal(ahg_http_parser_feed(p, line, sizeof(line), &used), AHG_EHDRSIZE);
    ahg_http_parser_free(p);
}

static void
test_http_field_count_limit_boundary(void **state)
{
    (void)state;
    struct ahg_http_limits lim = {.max_head = 0, .max_line = 0, .max_fields = 4};
    char *at = make_request(1, 0, 3); /* Host + 3 */
    char *over = make_request(1, 0, 4);
    assert_int_equal(parse_with(&lim, at), AHG_OK);
    assert_int_equal(parse_with(&lim, over), AHG_EHDRSIZE);
    free(at);
    free(over);
    at = make_request(1, 0, AHG_HTTP_DEFAULT_MAX_FIELDS - 1);
    over = make_request(1, 0, AHG_HTTP_DEFAULT_MAX_FIELDS);
    assert_int_equal(parse_with(NULL, at), AHG_OK);
    assert_int_equal(parse_with(NULL, over), AHG_EHDRSIZE);

    /* one parser, big and small heads in turn: the buffer is regrown after reset */
    struct ahg_http_parser *p = new_parser(AHG_HTTP_REQUEST, NULL);
    static const char small[] = "GET /s HTTP/1.1\r\nHost: a\r\n\r\n";
    for (int round = 0; round < 3; round++) {
        size_t used = 0;
        assert_int_equal(ahg_http_parser_feed(p, at, strlen(at), &used), AHG_OK);
        assert_int_equal(used, strlen(at));
        ahg_http_parser_reset(p);
        assert_int_equal(ahg_http_parser_feed(p, S(small), &used), AHG_OK);
        assert_string_equal(ahg_http_parser_head(p)->target, "/s");
        ahg_http_parser_reset(p);
    }
    ahg_http_parser_free(p);
    free(at);
    free(over);
}

static void
test_http_parser_new_rejects_bad_limits(void **state)
{
    (void)state;
    int err = 0;
    struct ahg_http_limits lim = {.max_head = AHG_HTTP_MAX_HEAD_CEIL + 1};
    assert_null(ahg_http_parser_new(AHG_HTTP_REQUEST, &lim, &err));
    assert_int_equal(err, AHG_EINVAL);
    lim = (struct ahg_http_limits){.max_head = 100, .max_line = 101};
    err = 0;
    assert_null(ahg_http_parser_new(AHG_HTTP_REQUEST, &lim, &err));
    assert_int_equal(err, AHG_EINVAL);
    lim = (struct ahg_http_limits){.max_fields = AHG_HTTP_MAX_FIELDS_CEIL + 1};
    err = 0;
    assert_null(ahg_http_parser_new(AHG_HTTP_REQUEST, &lim, &err));
    assert_int_equal(err, AHG_EINVAL);
    err = 0;
    assert_null(ahg_http_parser_new((enum ahg_http_kind)7, NULL, &err));
    assert_int_equal(err, AHG_EINVAL);
    struct ahg_http_limits d;
    ahg_http_limits_default(&d);
    assert_int_equal(d.max_head, 32768);
    assert_int_equal(d.max_line, 8192);
    assert_int_equal(d.max_fields, 256);
    ahg_http_parser_free(NULL);
    ahg_http_parser_reset(NULL);
    ahg_http_head_free(NULL);
}

/* ---- keep-alive, upgrade, framing ------------------------------------------- */

struct ka_case {
    enum ahg_http_kind kind;
    const char *in;
    size_t len;
    bool keep_alive;
    bool upgrade;
};

static void
test_http_keep_alive_and_upgrade_detection(void **state)
{
    (void)state;
    static const struct ka_case cases[] = {
        {RQ("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), true, false},
        {RQ("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"), false, false},
        {RQ("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, CLOSE\r\n\r\n"), false, false},
        {RQ("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n"), true, false},
        {RQ("GET / HTTP/1.0\r\n\r\n"), false, false},
        {RQ("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), true, false},
        {RQ("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"), false, false},
        {RQ("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
            "Upgrade: websocket\r\n\r\n"),
         true, true},
        {RQ("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"), true, false},
        {RQ("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n"), true, false},
        {RQ("GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"), false, false},
        {RS("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
            "Upgrade: websocket\r\n\r\n"),
         false, true},
        {RS("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), true, false},
        {RS("HTTP/1.1 200 OK\r\n\r\n"), false, false}, /* until close */
        {RS("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n"), false, false},
        {RS("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n"), true, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ahg_http_parser *p = parse_ok(cases[i].kind, cases[i].in, cases[i].len);
        const struct ahg_http_head *h = ahg_http_parser_head(p);
        if (h->keep_alive != cases[i].keep_alive || h->upgrade != cases[i].upgrade)
            fail_msg("case %zu: keep_alive %d upgrade %d", i, h->keep_alive, h->upgrade);
        if (cases[i].upgrade && cases[i].kind == AHG_HTTP_REQUEST)
            assert_true(ahg_http_head_has_token(h, "connection", "UPGRADE"));
        ahg_http_parser_free(p);
    }
}

struct framing_case {
    const char *req_method;
    const char *in;
    size_t len;
    enum ahg_http_framing framing;
    uint64_t content_length;
};

static void
test_http_response_framing(void **state)
{
    (void)state;
#define RF(x) x, sizeof(x) - 1
    static const struct framing_case cases[] = {
        {"HEAD", RF("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"), AHG_HTTP_BODY_NONE, 0},
        {"HEAD", RF("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), AHG_HTTP_BODY_NONE,
         0},
        {"GET", RF("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"), AHG_HTTP_BODY_LENGTH, 10},
        {NULL, RF("HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n"), AHG_HTTP_BODY_NONE, 0},
        {NULL, RF("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"), AHG_HTTP_BODY_NONE,
         0},
        {NULL, RF("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"),
         AHG_HTTP_BODY_NONE, 0},
        {NULL, RF("HTTP/1.1 100 Continue\r\n\r\n"), AHG_HTTP_BODY_NONE, 0},
        {NULL, RF("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"), AHG_HTTP_BODY_NONE, 0},
        {NULL, RF("HTTP/1.1 101 Switching Protocols\r\nUpgrade: ws\r\n\r\n"), AHG_HTTP_BODY_NONE,
         0},
        {NULL, RF("HTTP/1.1 200 OK\r\n\r\n"), AHG_HTTP_BODY_CLOSE, 0},
        {NULL, RF("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), AHG_HTTP_BODY_NONE, 0},
        {NULL, RF("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"), AHG_HTTP_BODY_CLOSE, 0},
        {NULL, RF("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
         AHG_HTTP_BODY_CHUNKED, 0},
        {NULL, RF("HTTP/1.1 404 Not Found\r\nContent-Length: 9223372036854775807\r\n\r\n"),
         AHG_HTTP_BODY_LENGTH, 9223372036854775807ull},
    };
#undef RF
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ahg_http_parser *p = new_parser(AHG_HTTP_RESPONSE, NULL);
        if (cases[i].req_method)
            assert_int_equal(ahg_http_parser_set_request_method(p, cases[i].req_method), AHG_OK);
        size_t used = 0;
        assert_int_equal(ahg_http_parser_feed(p, cases[i].in, cases[i].len, &used), AHG_OK);
        const struct ahg_http_head *h = ahg_http_parser_head(p);
        if (h->framing != cases[i].framing || ahg_http_parser_framing(p) != cases[i].framing)
            fail_msg("case %zu: framing %d", i, h->framing);
        assert_true(h->content_length == cases[i].content_length);
        /* a message without body is complete right away */
        if (cases[i].framing == AHG_HTTP_BODY_NONE) {
            assert_int_equal(ahg_http_parser_body(p, "junk", 4, &used, NULL, NULL), AHG_OK);
            assert_int_equal(used, 0);
        }
        ahg_http_parser_free(p);
    }

    /* the request method is per message: reset forgets HEAD */
    struct ahg_http_parser *p = new_parser(AHG_HTTP_RESPONSE, NULL);
    static const char r[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n";
    size_t used;
    assert_int_equal(ahg_http_parser_set_request_method(p, "HEAD"), AHG_OK);
    assert_int_equal(ahg_http_parser_feed(p, S(r), &used), AHG_OK);
    assert_int_equal(ahg_http_parser_framing(p), AHG_HTTP_BODY_NONE);
    assert_int_equal(ahg_http_parser_set_request_method(p, "GET"), AHG_EINVAL); /* too late */
    ahg_http_parser_reset(p);
    assert_int_equal(ahg_http_parser_feed(p, S(r), &used), AHG_OK);
    assert_int_equal(ahg_http_parser_framing(p), AHG_HTTP_BODY_LENGTH);
    ahg_http_parser_reset(p);
    assert_int_equal(ahg_http_parser_set_request_method(p, "CONNECT"), AHG_ENOTIMPL);
    assert_int_equal(ahg_http_parser_set_request_method(p, "GE T"), AHG_EINVAL);
    ahg_http_parser_free(p);
    p = new_parser(AHG_HTTP_REQUEST, NULL);
    assert_int_equal(ahg_http_parser_set_request_method(p, "HEAD"), AHG_EINVAL);
    ahg_http_parser_free(p);
}

static void
test_http_request_framing(void **state)
{
    (void)state;
    struct ahg_http_parser *p = parse_ok(AHG_HTTP_REQUEST, S("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert_int_equal(ahg_http_parser_framing(p), AHG_HTTP_BODY_NONE);
    ahg_http_parser_free(p);
    p = parse_ok(AHG_HTTP_REQUEST, S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"));
    assert_int_equal(ahg_http_parser_framing(p), AHG_HTTP_BODY_NONE);
    ahg_http_parser_free(p);
    p = parse_ok(AHG_HTTP_REQUEST,
                 S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"));
    assert_int_equal(ahg_http_parser_framing(p), AHG_HTTP_BODY_CHUNKED);
    ahg_http_parser_free(p);
}

/* ---- bodies ------------------------------------------------------------------ */

static const char chunked_head[] = "POST /up HTTP/1.1\r\nHost: a\r\n"
                                   "Transfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n";
static const char chunked_body[] = "5;ext=1;q=\"x y\"\r\nhello\r\n"
                                   "6 ; e\t;f=g\r\n world\r\n"
                                   "00A\r\n0123456789\r\n"
                                   "0;last\r\n"
                                   "X-Sum: abc\r\n"
                                   "x-more:\r\n"
                                   "\r\n";
static const char next_req[] = "GET /next HTTP/1.1\r\nHost: a\r\n\r\n";

static void
test_http_chunked_body_with_extensions_and_trailers(void **state)
{
    (void)state;
    char all[512];
    size_t n = 0;
    memcpy(all + n, chunked_head, sizeof(chunked_head) - 1);
    n += sizeof(chunked_head) - 1;
    memcpy(all + n, chunked_body, sizeof(chunked_body) - 1);
    n += sizeof(chunked_body) - 1;
    memcpy(all + n, next_req, sizeof(next_req) - 1);
    n += sizeof(next_req) - 1;

    for (int bytewise = 0; bytewise < 2; bytewise++) {
        struct ahg_http_parser *p = new_parser(AHG_HTTP_REQUEST, NULL);
        size_t used = 0, bused = 0;
        int rc =
            bytewise ? feed_bytewise(p, all, n, &used) : ahg_http_parser_feed(p, all, n, &used);
        assert_int_equal(rc, AHG_OK);
        assert_int_equal(used, sizeof(chunked_head) - 1);
        assert_int_equal(ahg_http_parser_framing(p), AHG_HTTP_BODY_CHUNKED);
        struct sink s = {.len = 0};
        rc = bytewise ? body_bytewise(p, all + used, n - used, &bused, &s)
                      : ahg_http_parser_body(p, all + used, n - used, &bused, sink_cb, &s);
        assert_int_equal(rc, AHG_OK);
        assert_int_equal(bused, sizeof(chunked_body) - 1);
        assert_int_equal(s.len, 21);
        assert_memory_equal(s.data, "hello world0123456789", 21);
        assert_true(ahg_http_parser_body_bytes(p) == 21);
        if (!bytewise)
            assert_int_equal(s.calls, 3);
        /* trailers are dropped: not added to the head */
        assert_null(ahg_http_head_get(ahg_http_parser_head(p), "X-Sum", NULL));
        /* message complete: nothing more is taken, the rest is the next request */
        size_t more = 9;
        assert_int_equal(ahg_http_parser_body(p, all + used + bused, 4, &more, sink_cb, &s),
                         AHG_OK);
        assert_int_equal(more, 0);
        assert_int_equal(ahg_http_parser_eof(p), AHG_OK);
        ahg_http_parser_reset(p);
        assert_int_equal(ahg_http_parser_feed(p, all + used + bused, n - used - bused, &more),
                         AHG_OK);
        assert_int_equal(more, sizeof(next_req) - 1);
        assert_string_equal(ahg_http_parser_head(p)->target, "/next");
        ahg_http_parser_free(p);
    }
}

struct chunk_case {
    const char *body;
    size_t len;
    int err;
    const char *what;
};

static void
test_http_chunked_bad_framing_rejected(void **state)
{
    (void)state;
#define CB(x) x, sizeof(x) - 1
    static const struct chunk_case cases[] = {
        {CB("g\r\nx\r\n0\r\n\r\n"), AHG_EPROTO, "non-hex size"},
        {CB("\r\n"), AHG_EPROTO, "empty size"},
        {CB(" 1\r\nx\r\n0\r\n\r\n"), AHG_EPROTO, "leading SP"},
        {CB("+1\r\nx\r\n0\r\n\r\n"), AHG_EPROTO, "signed size"},
        {CB("0x1\r\nx\r\n0\r\n\r\n"), AHG_EPROTO, "0x prefix"},
        {CB("1 \r\nx\r\n0\r\n\r\n"), AHG_EPROTO, "BWS without extension"},
        {CB("1\nx\r\n0\r\n\r\n"), AHG_EPROTO, "bare LF after size"},
        {CB("1\rx\r\n0\r\n\r\n"), AHG_EPROTO, "bare CR after size"},
        {CB("1;a\rb\r\nx\r\n0\r\n\r\n"), AHG_EPROTO, "bare CR in extension"},
        {CB("1;a\nb\r\nx\r\n0\r\n\r\n"), AHG_EPROTO, "bare LF in extension"},
        {CB("1;a\x01\r\nx\r\n0\r\n\r\n"), AHG_EPROTO, "CTL in extension"},
        {CB("1\r\nxy\r\n0\r\n\r\n"), AHG_EPROTO, "data longer than size"},
        {CB("1\r\nx0\r\n\r\n"), AHG_EPROTO, "missing CRLF after data"},
        {CB("1\r\nx\n0\r\n\r\n"), AHG_EPROTO, "bare LF after data"},
        {CB("1\r\nx\r0\r\n\r\n"), AHG_EPROTO, "bare CR after data"},
        {CB("8000000000000000\r\n"), AHG_EPROTO, "size > INT64_MAX"},
        {CB("ffffffffffffffffff\r\n"), AHG_EPROTO, "size overflow"},
        {CB("0\r\n X: y\r\n\r\n"), AHG_EPROTO, "trailer obs-fold"},
        {CB("0\r\nX : y\r\n\r\n"), AHG_EPROTO, "trailer space before colon"},
        {CB("0\r\nX\r\n\r\n"), AHG_EPROTO, "trailer without colon"},
        {CB("0\r\nX: y\n\r\n"), AHG_EPROTO, "trailer bare LF"},
        {CB("0\r\nX: \x7f\r\n\r\n"), AHG_EPROTO, "trailer DEL"},
        {CB("0\r\n\n"), AHG_EPROTO, "bare LF at end"},
        {CB("0\r\n\rX"), AHG_EPROTO, "bare CR at end"},
    };
#undef CB
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ahg_http_parser *p = parse_ok(AHG_HTTP_REQUEST, S(chunked_head));
        struct sink s = {.len = 0};
        size_t used = 0;
        int rc = ahg_http_parser_body(p, cases[i].body, cases[i].len, &used, sink_cb, &s);
        if (rc != cases[i].err)
            fail_msg("%s: got %s", cases[i].what, ahg_err_name(rc));
        assert_int_equal(ahg_err_http_status(rc), 400);
        assert_int_equal(ahg_http_parser_body(p, "0\r\n\r\n", 5, &used, sink_cb, &s), rc);
        ahg_http_parser_free(p);
    }
}

static void
test_http_chunk_size_overflow_boundary(void **state)
{
    (void)state;
    struct ahg_http_parser *p = parse_ok(AHG_HTTP_REQUEST, S(chunked_head));
    size_t used = 0;
    /* INT64_MAX is a valid (if huge) size: the parser waits for data */
    assert_int_equal(ahg_http_parser_body(p, S("7fffffffffffffff\r\nab"), &used, NULL, NULL),
                     AHG_EAGAIN);
    assert_int_equal(used, 20);
    assert_true(ahg_http_parser_body_bytes(p) == 2);
    ahg_http_parser_free(p);
    p = parse_ok(AHG_HTTP_REQUEST, S(chunked_head));
    assert_int_equal(ahg_http_parser_body(p, S("8000000000000000\r\n"), &used, NULL, NULL),
                     AHG_EPROTO);
    ahg_http_parser_free(p);
    /* leading zeros are fine, but the size line is bounded */
    p = parse_ok(AHG_HTTP_REQUEST, S(chunked_head));
    char line[AHG_HTTP_CHUNK_LINE_MAX + 8];
    memset(line, '0', sizeof(line));
    line[AHG_HTTP_CHUNK_LINE_MAX - 1] = '1';
    line[AHG_HTTP_CHUNK_LINE_MAX] = '\r';
    line[AHG_HTTP_CHUNK_LINE_MAX + 1] = '\n';
    assert_int_equal(ahg_http_parser_body(p, line, AHG_HTTP_CHUNK_LINE_MAX + 2, &used, NULL, NULL),
                     AHG_EAGAIN);
    ahg_http_parser_free(p);
    p = parse_ok(AHG_HTTP_REQUEST, S(chunked_head));
    assert_int_equal(ahg_http_parser_body(p, line, sizeof(line), &used, NULL, NULL), AHG_EPROTO);
    ahg_http_parser_free(p);
}

static void
test_http_trailer_limits(void **state)
{
    (void)state;
    struct ahg_http_limits lim = {.max_head = 64, .max_line = 0, .max_fields = 2};
    static const char head[] = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    struct ahg_http_parser *p = new_parser(AHG_HTTP_REQUEST, &lim);
    size_t used;
    assert_int_equal(ahg_http_parser_feed(p, S(head), &used), AHG_OK);
    assert_int_equal(ahg_http_parser_body(p, S("0\r\nA: 1\r\nB: 2\r\n\r\n"), &used, NULL, NULL),
                     AHG_OK);
    ahg_http_parser_reset(p);
    assert_int_equal(ahg_http_parser_feed(p, S(head), &used), AHG_OK);
    assert_int_equal(
        ahg_http_parser_body(p, S("0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"), &used, NULL, NULL),
        AHG_EHDRSIZE);
    ahg_http_parser_reset(p);
    assert_int_equal(ahg_http_parser_feed(p, S(head), &used), AHG_OK);
    char big[128];
    memset(big, 'v', sizeof(big));
    memcpy(big, "0\r\nA: ", 6);
    assert_int_equal(ahg_http_parser_body(p, big, sizeof(big), &used, NULL, NULL), AHG_EHDRSIZE);
    ahg_http_parser_free(p);
}

static void
test_http_pipelined_second_request_via_consumed(void **state)
{
    (void)state;
    static const char in[] = "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n"
                             "12345"
                             "GET /b HTTP/1.1\r\nHost: h\r\n\r\n"
                             "GET /c HTTP/1.1\r\n";
    struct ahg_http_parser *p = new_parser(AHG_HTTP_REQUEST, NULL);
    size_t off = 0, used = 0;
    size_t n = sizeof(in) - 1;
    assert_int_equal(ahg_http_parser_feed(p, in, n, &used), AHG_OK);
    assert_int_equal(used, 48);
    off += used;
    struct sink s = {.len = 0};
    assert_int_equal(ahg_http_parser_body(p, in + off, n - off, &used, sink_cb, &s), AHG_OK);
    assert_int_equal(used, 5);
    assert_memory_equal(s.data, "12345", 5);
    off += used;
    assert_int_equal(memcmp(in + off, "GET /b", 6), 0);

    ahg_http_parser_reset(p);
    assert_int_equal(ahg_http_parser_feed(p, in + off, n - off, &used), AHG_OK);
    assert_string_equal(ahg_http_parser_head(p)->target, "/b");
    off += used;
    assert_int_equal(ahg_http_parser_body(p, in + off, n - off, &used, sink_cb, &s), AHG_OK);
    assert_int_equal(used, 0);

    ahg_http_parser_reset(p);
    assert_int_equal(ahg_http_parser_feed(p, in + off, n - off, &used), AHG_EAGAIN);
    assert_int_equal(used, n - off);
    assert_int_equal(ahg_http_parser_eof(p), AHG_EPROTO); /* truncated head */
    ahg_http_parser_free(p);
}

static void
test_http_length_body_split_and_eof(void **state)
{
    (void)state;
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    struct ahg_http_parser *p = parse_ok(AHG_HTTP_RESPONSE, S(head));
    struct sink s = {.len = 0};
    size_t used;
    assert_int_equal(ahg_http_parser_body(p, "0123", 4, &used, sink_cb, &s), AHG_EAGAIN);
    assert_int_equal(used, 4);
    assert_int_equal(ahg_http_parser_eof(p), AHG_EPROTO); /* short body */
    ahg_http_parser_free(p);

    p = parse_ok(AHG_HTTP_RESPONSE, S(head));
    assert_int_equal(ahg_http_parser_body(p, "0123", 4, &used, sink_cb, &s), AHG_EAGAIN);
    assert_int_equal(ahg_http_parser_body(p, "456789HTTP", 10, &used, sink_cb, &s), AHG_OK);
    assert_int_equal(used, 6);
    assert_int_equal(ahg_http_parser_eof(p), AHG_OK);
    ahg_http_parser_free(p);

    /* until-close body ends at EOF */
    p = parse_ok(AHG_HTTP_RESPONSE, S("HTTP/1.1 200 OK\r\n\r\n"));
    s.len = 0;
    assert_int_equal(ahg_http_parser_body(p, "abc", 3, &used, sink_cb, &s), AHG_EAGAIN);
    assert_int_equal(ahg_http_parser_body(p, "def", 3, &used, sink_cb, &s), AHG_EAGAIN);
    assert_int_equal(used, 3);
    assert_int_equal(ahg_http_parser_eof(p), AHG_OK);
    assert_int_equal(ahg_http_parser_body(p, "x", 1, &used, sink_cb, &s), AHG_OK);
    assert_int_equal(used, 0);
    assert_int_equal(s.len, 6);
    assert_memory_equal(s.data, "abcdef", 6);
    ahg_http_parser_free(p);

    /* a clean close between messages; a truncated chunked body */
    p = new_parser(AHG_HTTP_REQUEST, NULL);
    assert_int_equal(ahg_http_parser_eof(p), AHG_ECLOSED);
    assert_int_equal(ahg_http_parser_body(p, "x", 1, &used, NULL, NULL), AHG_EINVAL);
    assert_int_equal(ahg_http_parser_feed(p, "\r", 1, &used), AHG_EAGAIN);
    assert_int_equal(ahg_http_parser_eof(p), AHG_EPROTO);
    ahg_http_parser_reset(p);
    assert_int_equal(ahg_http_parser_feed(p, S(chunked_head), &used), AHG_OK);
    assert_int_equal(ahg_http_parser_body(p, S("5\r\nhel"), &used, NULL, NULL), AHG_EAGAIN);
    assert_int_equal(ahg_http_parser_eof(p), AHG_EPROTO);
    ahg_http_parser_free(p);
}

static void
test_http_body_callback_error_stops(void **state)
{
    (void)state;
    struct ahg_http_parser *p = parse_ok(AHG_HTTP_REQUEST, S(chunked_head));
    int calls = 0;
    size_t used;
    assert_int_equal(ahg_http_parser_body(p, S(chunked_body), &used, failing_cb, &calls),
                     AHG_ELIMIT);
    assert_int_equal(calls, 1);
    assert_int_equal(ahg_http_parser_body(p, S(chunked_body), &used, failing_cb, &calls),
                     AHG_ELIMIT);
    assert_int_equal(calls, 1);
    ahg_http_parser_free(p);
}

static void
test_http_max_body_limit(void **state)
{
    (void)state;
    struct ahg_http_limits lim = {.max_body = 10};
    struct ahg_http_parser *p = new_parser(AHG_HTTP_REQUEST, &lim);
    size_t used;
    assert_int_equal(ahg_http_parser_feed(
                         p, S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n"), &used),
                     AHG_OK);
    int rc = ahg_http_parser_body(p, "x", 1, &used, NULL, NULL);
    assert_int_equal(rc, AHG_ELIMIT);
    assert_int_equal(ahg_err_http_status(rc), 413);
    ahg_http_parser_reset(p);
    assert_int_equal(ahg_http_parser_feed(
                         p, S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n"), &used),
                     AHG_OK);
    assert_int_equal(ahg_http_parser_body(p, "0123456789", 10, &used, NULL, NULL), AHG_OK);
    ahg_http_parser_reset(p);
    assert_int_equal(ahg_http_parser_feed(p, S(chunked_head), &used), AHG_OK);
    assert_int_equal(
        ahg_http_parser_body(p, S("5\r\nhello\r\n5\r\nworld\r\n1\r\n"), &used, NULL, NULL),
        AHG_ELIMIT);
    ahg_http_parser_free(p);
}

static void
test_http_head_take_keeps_body_state(void **state)
{
    (void)state;
    struct ahg_http_parser *p = parse_ok(AHG_HTTP_REQUEST, S(chunked_head));
    struct ahg_http_head *h = ahg_http_parser_head_take(p);
    assert_non_null(h);
    assert_null(ahg_http_parser_head_take(p));
    struct sink s = {.len = 0};
    size_t used;
    assert_int_equal(ahg_http_parser_body(p, S(chunked_body), &used, sink_cb, &s), AHG_OK);
    assert_int_equal(s.len, 21);
    ahg_http_parser_reset(p);
    assert_string_equal(h->target, "/up");
    ahg_http_head_free(h);
    ahg_http_parser_free(p);
}

/* ---- hand-built heads and mutation -------------------------------------------- */

static void
test_http_head_build_and_serialize(void **state)
{
    (void)state;
    int err = 0;
    struct ahg_http_head *h = ahg_http_head_new_request("GET", "/x?y=1", &err);
    assert_non_null(h);
    assert_int_equal(ahg_http_head_add(h, "Host", "example.test"), AHG_OK);
    assert_int_equal(ahg_http_head_add(h, "X-Forwarded-For", "  10.0.0.1 "), AHG_OK);
    assert_serializes_to(h, 0,
                         "GET /x?y=1 HTTP/1.1\r\nHost: example.test\r\n"
                         "X-Forwarded-For: 10.0.0.1\r\n\r\n");
    ahg_http_head_free(h);

    h = ahg_http_head_new_response(200, NULL, &err);
    assert_non_null(h);
    assert_serializes_to(h, 0, "HTTP/1.1 200 OK\r\n\r\n");
    ahg_http_head_free(h);
    h = ahg_http_head_new_response(599, "Custom Thing", &err);
    assert_non_null(h);
    h->version_minor = 0;
    assert_serializes_to(h, 0, "HTTP/1.0 599 Custom Thing\r\n\r\n");
    ahg_http_head_free(h);

    err = 0;
    assert_null(ahg_http_head_new_request("GE T", "/", &err));
    assert_int_equal(err, AHG_EINVAL);
    err = 0;
    assert_null(ahg_http_head_new_request("GET", "/a b", &err));
    assert_int_equal(err, AHG_EINVAL);
    err = 0;
    assert_null(ahg_http_head_new_request("GET", "", &err));
    assert_int_equal(err, AHG_EINVAL);
    err = 0;
    assert_null(ahg_http_head_new_response(99, NULL, &err));
    assert_int_equal(err, AHG_EINVAL);
    err = 0;
    assert_null(ahg_http_head_new_response(200, "a\r\nb", &err));
    assert_int_equal(err, AHG_EINVAL);
}

static void
test_http_head_mutation_helpers(void **state)
{
    (void)state;
    static const char in[] = "GET / HTTP/1.1\r\n"
                             "Host: a\r\n"
                             "Accept: */*\r\n"
                             "X-Multi: 1\r\n"
                             "Cookie: c=1\r\n"
                             "x-multi: 2\r\n"
                             "Connection: Keep-Alive , Upgrade,,x\r\n"
                             "\r\n";
    struct ahg_http_parser *p = parse_ok(AHG_HTTP_REQUEST, S(in));
    struct ahg_http_head *h = ahg_http_parser_head_take(p);

    assert_true(ahg_http_head_has_token(h, "Connection", "upgrade"));
    assert_true(ahg_http_head_has_token(h, "CONNECTION", "keep-alive"));
    assert_true(ahg_http_head_has_token(h, "connection", "X"));
    assert_false(ahg_http_head_has_token(h, "Connection", "close"));
    assert_false(ahg_http_head_has_token(h, "Connection", "Keep"));
    assert_false(ahg_http_head_has_token(h, "Upgrade", "websocket"));

    /* set replaces the first in place (keeping its case) and removes the others */
    assert_int_equal(ahg_http_head_set(h, "X-MULTI", "three"), AHG_OK);
    assert_serializes_to(h, 0,
                         "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-Multi: three\r\n"
                         "Cookie: c=1\r\nConnection: Keep-Alive , Upgrade,,x\r\n\r\n");
    /* set of a missing name appends */
    assert_int_equal(ahg_http_head_set(h, "Via", "1.1 ahg"), AHG_OK);
    assert_string_equal(h->fields[h->nfields - 1].raw, "Via: 1.1 ahg");
    /* remove all, case-insensitively */
    assert_int_equal(ahg_http_head_add(h, "cookie", "d=2"), AHG_OK);
    assert_int_equal(ahg_http_head_remove(h, "COOKIE"), 2);
    assert_int_equal(ahg_http_head_remove(h, "cookie"), 0);
    assert_null(ahg_http_head_get(h, "Cookie", NULL));
    assert_serializes_to(h, 0,
                         "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-Multi: three\r\n"
                         "Connection: Keep-Alive , Upgrade,,x\r\nVia: 1.1 ahg\r\n\r\n");
    size_t need = 0;
    assert_int_equal(ahg_http_head_serialize(h, 0, NULL, 0, &need), AHG_ELIMIT);
    assert_int_equal(need, h->bytes);

    /* invalid names and values are refused, head unchanged */
    size_t before = h->nfields;
    assert_int_equal(ahg_http_head_add(h, "Bad Name", "v"), AHG_EINVAL);
    assert_int_equal(ahg_http_head_add(h, "", "v"), AHG_EINVAL);
    assert_int_equal(ahg_http_head_add(h, "X-Inj", "a\r\nEvil: 1"), AHG_EINVAL);
    assert_int_equal(ahg_http_head_add(h, "X-Nul", "a\nb"), AHG_EINVAL);
    assert_int_equal(ahg_http_head_set(h, "X-Multi", "a\x7f"), AHG_EINVAL);
    assert_int_equal(ahg_http_head_add(NULL, "X", "v"), AHG_EINVAL);
    assert_int_equal(h->nfields, before);
    assert_string_equal(ahg_http_head_get(h, "x-multi", NULL), "three");
    ahg_http_head_free(h);
    ahg_http_parser_free(p);
}

static void
test_http_head_hard_caps(void **state)
{
    (void)state;
    struct ahg_http_head *h = ahg_http_head_new_request("GET", "/", NULL);
    assert_non_null(h);
    for (size_t i = 0; i < AHG_HTTP_HEAD_MAX_FIELDS; i++)
        assert_int_equal(ahg_http_head_add(h, "X", "1"), AHG_OK);
    assert_int_equal(ahg_http_head_add(h, "X", "1"), AHG_ELIMIT);
    assert_int_equal(h->nfields, AHG_HTTP_HEAD_MAX_FIELDS);
    /* set collapses them into one */
    assert_int_equal(ahg_http_head_set(h, "x", "2"), AHG_OK);
    assert_int_equal(h->nfields, 1);
    char *big = malloc(AHG_HTTP_HEAD_MAX_BYTES);
    assert_non_null(big);
    memset(big, 'b', AHG_HTTP_HEAD_MAX_BYTES - 1);
    big[AHG_HTTP_HEAD_MAX_BYTES - 1] = '\0';
    assert_int_equal(ahg_http_head_add(h, "Y", big), AHG_ELIMIT);
    assert_int_equal(ahg_http_head_set(h, "X", big), AHG_ELIMIT);
    assert_string_equal(ahg_http_head_get(h, "X", NULL), "2");
    free(big);
    ahg_http_head_free(h);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_request_whole_and_bytewise_same),
        cmocka_unit_test(test_http_response_whole_and_bytewise_same),
        cmocka_unit_test(test_http_fields_order_duplicates_case),
        cmocka_unit_test(test_http_serialize_round_trip_exact),
        cmocka_unit_test(test_http_serialize_buffer_too_small),
        cmocka_unit_test(test_http_serialize_drops_hop_by_hop),
        cmocka_unit_test(test_http_strip_hop_by_hop_then_add),
        cmocka_unit_test(test_http_smuggling_shapes_rejected),
        cmocka_unit_test(test_http_mutations_whole_equals_bytewise),
        cmocka_unit_test(test_http_valid_edge_shapes_accepted),
        cmocka_unit_test(test_http_duplicate_identical_content_length_merged),
        cmocka_unit_test(test_http_header_named_zero_with_colon_value),
        cmocka_unit_test(test_http_head_size_limit_boundary),
        cmocka_unit_test(test_http_request_line_limit_boundary),
        cmocka_unit_test(test_http_field_count_limit_boundary),
        cmocka_unit_test(test_http_parser_new_rejects_bad_limits),
        cmocka_unit_test(test_http_keep_alive_and_upgrade_detection),
        cmocka_unit_test(test_http_response_framing),
        cmocka_unit_test(test_http_request_framing),
        cmocka_unit_test(test_http_chunked_body_with_extensions_and_trailers),
        cmocka_unit_test(test_http_chunked_bad_framing_rejected),
        cmocka_unit_test(test_http_chunk_size_overflow_boundary),
        cmocka_unit_test(test_http_trailer_limits),
        cmocka_unit_test(test_http_pipelined_second_request_via_consumed),
        cmocka_unit_test(test_http_length_body_split_and_eof),
        cmocka_unit_test(test_http_body_callback_error_stops),
        cmocka_unit_test(test_http_max_body_limit),
        cmocka_unit_test(test_http_head_take_keeps_body_state),
        cmocka_unit_test(test_http_head_build_and_serialize),
        cmocka_unit_test(test_http_head_mutation_helpers),
        cmocka_unit_test(test_http_head_hard_caps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
