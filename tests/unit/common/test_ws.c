#include "ahg/ws.h"
#include "ahg/err.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* ------------------------------------------------------------------------------------------- */
/* A recorder of parser events: a compact text log plus all payload bytes concatenated. */

#define REC_LOG_MAX  8192
#define REC_DATA_MAX ((size_t)256 * 1024)

#define ON_BEGIN 1
#define ON_DATA  2
#define ON_END   4

struct rec {
    char log[REC_LOG_MAX];
    size_t loglen;
    unsigned char *data;
    size_t datalen;
    size_t pieces;
    size_t max_piece;
    unsigned begins;
    unsigned ends;
    unsigned pause_on; /* ON_* events after which the callback returns AHG_WS_PAUSE */
    unsigned fail_on;  /* ON_* events at which the callback returns fail_rc */
    int fail_rc;
};

static void
rec_log(struct rec *r, const char *s)
{
    size_t n = strlen(s);
    assert_true(r->loglen + n < sizeof r->log);
    memcpy(r->log + r->loglen, s, n + 1);
    r->loglen += n;
}

static int
rec_ret(const struct rec *r, unsigned ev)
{
    if (r->fail_on & ev)
        return r->fail_rc;
    return (r->pause_on & ev) ? AHG_WS_PAUSE : 0;
}

static int
rec_begin(void *ud, const struct ahg_ws_frame *f)
{
    struct rec *r = ud;
    char s[64];
    (void)snprintf(s, sizeof s, "B%x/%x%s:%llu;", (unsigned)f->op, (unsigned)f->msg_op,
                   f->fin ? "F" : "", (unsigned long long)f->len);
    rec_log(r, s);
    r->begins++;
    return rec_ret(r, ON_BEGIN);
}

static int
rec_data(void *ud, const unsigned char *p, size_t n)
{
    struct rec *r = ud;
    assert_non_null(p);
    assert_true(n > 0);
    assert_true(r->datalen + n <= REC_DATA_MAX);
    memcpy(r->data + r->datalen, p, n);
    r->datalen += n;
    r->pieces++;
    if (n > r->max_piece)
        r->max_piece = n;
    /* consecutive pieces of one frame log a single D, so logs do not depend on the split */
    if (r->loglen == 0 || r->log[r->loglen - 1] != 'D')
        rec_log(r, "D");
    return rec_ret(r, ON_DATA);
}

static int
rec_end(void *ud)
{
    struct rec *r = ud;
    rec_log(r, "E;");
    r->ends++;
    return rec_ret(r, ON_END);
}

static const struct ahg_ws_parser_cb rec_cb = {rec_begin, rec_data, rec_end};

static struct rec *
rec_new(void)
{
    struct rec *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->data = malloc(REC_DATA_MAX);
    assert_non_null(r->data);
    return r;
}

static void
rec_free(struct rec *r)
{
    if (r != NULL)
        free(r->data);
    free(r);
}

static struct ahg_ws_parser *
parser_new(bool server, struct rec *r)
{
    struct ahg_ws_parser_opts o = {.server_role = server};
    int err = -1;
    struct ahg_ws_parser *p = ahg_ws_parser_new(&o, &rec_cb, r, &err);
    assert_non_null(p);
    assert_int_equal(err, AHG_OK);
    return p;
}

static struct ahg_ws_parser *
parser_new_opts(const struct ahg_ws_parser_opts *o, struct rec *r)
{
    struct ahg_ws_parser *p = ahg_ws_parser_new(o, &rec_cb, r, NULL);
    assert_non_null(p);
    return p;
}

/* Feed buf in chunks of `chunk` bytes (0 = all at once), re-feeding after pauses, until all is
 * consumed or an error (or a close) stops the parser. Returns the last result; *total (optional)
 * gets the bytes consumed. */
static int
feed_chunked(struct ahg_ws_parser *p, const unsigned char *buf, size_t len, size_t chunk,
             size_t *total)
{
    size_t off = 0;
    int rc = AHG_OK;
    if (chunk == 0)
        chunk = len > 0 ? len : 1;
    while (off < len) {
        size_t n = len - off < chunk ? len - off : chunk;
        size_t used = 0;
        rc = ahg_ws_parser_feed(p, buf + off, n, &used);
        assert_true(used <= n);
        off += used;
        if (rc != AHG_OK || ahg_ws_parser_closed(p))
            break;
    }
    if (rc == AHG_OK && !ahg_ws_parser_closed(p)) {
        /* flush callbacks that were pending when the input ran out after a pause */
        size_t used = 1;
        rc = ahg_ws_parser_feed(p, NULL, 0, &used);
        assert_int_equal(used, 0);
    }
    if (total != NULL)
        *total = off;
    return rc;
}

static void
fill_pattern(unsigned char *b, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)((i * 31u + (size_t)seed * 7u + (i >> 8)) & 0xffu);
}

/* ------------------------------------------------------------------------------------------- */
/* RFC 6455 section 5.7 examples */

static const unsigned char hello_unmasked[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
static const unsigned char hello_masked[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                             0x7f, 0x9f, 0x4d, 0x51, 0x58};
static const unsigned char hello_fragmented[] = {0x01, 0x03, 0x48, 0x65, 0x6c,
                                                 0x80, 0x02, 0x6c, 0x6f};
static const unsigned char ping_unmasked[] = {0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
static const unsigned char pong_masked[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                            0x7f, 0x9f, 0x4d, 0x51, 0x58};

static void
test_ws_parse_rfc_unmasked_text(void **state)
{
    (void)state;
    struct rec *r = rec_new();
    struct ahg_ws_parser *p = parser_new(false, r);
    size_t used = 0;
    assert_int_equal(ahg_ws_parser_feed(p, hello_unmasked, sizeof hello_unmasked, &used), AHG_OK);
    assert_int_equal(used, sizeof hello_unmasked);
    assert_string_equal(r->log, "B1/1F:5;DE;");
    assert_int_equal(r->datalen, 5);
    assert_memory_equal(r->data, "Hello", 5);
    assert_int_equal(ahg_ws_parser_close_code(p), 0);
    assert_false(ahg_ws_parser_closed(p));
    ahg_ws_parser_free(p);
    rec_free(r);
}

static void
test_ws_parse_rfc_masked_text_server(void **state)
{
    (void)state;
    struct rec *r = rec_new();
    struct ahg_ws_parser *p = parser_new(true, r);
    size_t used = 0;
    assert_int_equal(ahg_ws_parser_feed(p, hello_masked, sizeof hello_masked, &used), AHG_OK);
    assert_int_equal(used, sizeof hello_masked);
    assert_string_equal(r->log, "B1/1F:5;DE;");
    assert_memory_equal(r->data, "Hello", 5);
    ahg_ws_parser_free(p);
    rec_free(r);
}

static void
test_ws_parse_rfc_fragmented_text(void **state)
{
    (void)state;
    struct rec *r = rec_new();
    struct ahg_ws_parser *p = parser_new(false, r);
    assert_int_equal(feed_chunked(p, hello_fragmented, sizeof hello_fragmented, 0, NULL), AHG_OK);
    /* the continuation reports the message type TEXT */
    assert_string_equal(r->log, "B1/1:3;DE;B0/1F:2;DE;");
    assert_int_equal(r->datalen, 5);
    assert_memory_equal(r->data, "Hello", 5);
    ahg_ws_parser_free(p);
    rec_free(r);
}

static void
test_ws_parse_rfc_ping_pong(void **state)
{
    (void)state;
    struct rec *r = rec_new();
    struct ahg_ws_parser *p = parser_new(false, r);
    assert_int_equal(feed_chunked(p, ping_unmasked, sizeof ping_unmasked, 0, NULL), AHG_OK);
    assert_string_equal(r->log, "B9/9F:5;DE;");
    assert_memory_equal(r->data, "Hello", 5);
    assert_int_equal(r->pieces, 1);
    ahg_ws_parser_free(p);
    rec_free(r);

    r = rec_new();
    p = parser_new(true, r);
    assert_int_equal(feed_chunked(p, pong_masked, sizeof pong_masked, 1, NULL), AHG_OK);
    assert_string_equal(r->log, "Ba/aF:5;DE;");
    assert_memory_equal(r->data, "Hello", 5);
    /* control payloads arrive whole even when fed byte by byte */
    assert_int_equal(r->pieces, 1);
    ahg_ws_parser_free(p);
    rec_free(r);
}

static void
test_ws_parse_rfc_16bit_and_64bit_lengths(void **state)
{
    (void)state;
    const size_t big = 65536;
    unsigned char *buf = malloc(10 + big);
    assert_non_null(buf);

    static const unsigned char h256[] = {0x82, 0x7e, 0x01, 0x00};
    memcpy(buf, h256, sizeof h256);
    fill_pattern(buf + 4, 256, 1);
    struct rec *r = rec_new();
    struct ahg_ws_parser *p = parser_new(false, r);
    assert_int_equal(feed_chunked(p, buf, 4 + 256, 0, NULL), AHG_OK);
    assert_string_equal(r->log, "B2/2F:256;DE;");
    assert_int_equal(r->datalen, 256);
    assert_memory_equal(r->data, buf + 4, 256);
    ahg_ws_parser_free(p);
    rec_free(r);

    static const unsigned char h64k[] = {0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00};
    memcpy(buf, h64k, sizeof h64k);
    fill_pattern(buf + 10, big, 2);
    r = rec_new();
    p = parser_new(false, r);
    assert_int_equal(feed_chunked(p, buf, 10 + big, 0, NULL), AHG_OK);
    assert_string_equal(r->log, "B2/2F:65536;DE;");
    assert_int_equal(r->datalen, big);
    assert_memory_equal(r->data, buf + 10, big);
    /* client role: unmasked payload is passed straight through in one piece */
    assert_int_equal(r->pieces, 1);
    ahg_ws_parser_free(p);
    rec_free(r);
    free(buf);
}

static void
test_ws_parse_masked_large_payload_in_bounded_pieces(void **state)
{
    (void)state;
    const size_t big = 70000;
    const unsigned char key[4] = {0xa1, 0x02, 0xc3, 0x54};
    unsigned char *buf = malloc(AHG_WS_MAX_HEADER + big);
    unsigned char *plain = malloc(big);
    assert_non_null(buf);
    assert_non_null(plain);
    fill_pattern(plain, big, 3);
    size_t hl = ahg_ws_frame_header(buf, AHG_WS_BINARY, true, big, key);
    assert_int_equal(hl, 14);
    memcpy(buf + hl, plain, big);
    ahg_ws_mask(buf + hl, big, key, 0);

    struct rec *r = rec_new();
    struct ahg_ws_parser *p = parser_new(true, r);
    assert_int_equal(feed_chunked(p, buf, hl + big, 0, NULL), AHG_OK);
    assert_string_equal(r->log, "B2/2F:70000;DE;");
    assert_int_equal(r->datalen, big);
    assert_memory_equal(r->data, plain, big);
    assert_true(r->max_piece <= AHG_WS_SCRATCH);
    assert_true(r->pieces >= big / AHG_WS_SCRATCH);
    ahg_ws_parser_free(p);
    rec_free(r);
    free(plain);
    free(buf);
}

static void
test_ws_parse_nonminimal_length_accepted(void **state)
{
    (void)state;
    static const unsigned char f16[] = {0x81, 0x7e, 0x00, 0x05, 'H', 'e', 'l', 'l', 'o'};
    static const unsigned char f64[] = {0x81, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0x02, 'h', 'i'};
    struct rec *r = rec_new();
    struct ahg_ws_parser *p = parser_new(false, r);
    assert_int_equal(feed_chunked(p, f16, sizeof f16, 0, NULL), AHG_OK);
    assert_int_equal(feed_chunked(p, f64, sizeof f64, 0, NULL), AHG_OK);
    assert_string_equal(r->log, "B1/1F:5;DE;B1/1F:2;DE;");
    assert_memory_equal(r->data, "Hellohi", 7);
    ahg_ws_parser_free(p);
    rec_free(r);
}

static void
test_ws_parse_empty_frames_and_control_inside_message(void **state)
{
    (void)state;
    static const unsigned char s[] = {
        0x81, 0x00,             /* empty text */
        0x02, 0x02, 0x01, 0x02, /* binary, not fin */
        0x89, 0x00,             /* empty ping inside the message */
        0x8a, 0x01, 'x',        /* pong inside the message */
        0x00, 0x00,             /* empty continuation */
        0x80, 0x01, 0x03,       /* final continuation */
        0x88, 0x02, 0x03, 0xe8, /* close 1000 */
    };
    struct rec *r = rec_new();
    struct ahg_ws_parser *p = parser_new(false, r);
    size_t used = 0;
    assert_int_equal(feed_chunked(p, s, sizeof s, 0, &used), AHG_OK);
    assert_int_equal(used, sizeof s);
    assert_string_equal(r->log, "B1/1F:0;E;B2/2:2;DE;B9/9F:0;E;Ba/aF:1;DE;B0/2:0;E;B0/2F:1;DE;"
                                "B8/8F:2;DE;");
    assert_int_equal(r->datalen, 6);
    assert_memory_equal(r->data, "\x01\x02x\x03\x03\xe8", 6);
    assert_true(ahg_ws_parser_closed(p));
    ahg_ws_parser_free(p);
    rec_free(r);
}

/* ------------------------------------------------------------------------------------------- */
/* Splitting the input never changes the result */

static size_t
build_stream(unsigned char *out, size_t outsz, bool masked)
{
    size_t n = 0;
    unsigned char key[4] = {0x11, 0x22, 0x33, 0x44};
    struct {
        enum ahg_ws_opcode op;
        bool fin;
        size_t len;
    } frames[] = {
        {AHG_WS_TEXT, true, 5},      {AHG_WS_BINARY, false, 3}, {AHG_WS_PING, true, 4},
        {AHG_WS_CONT, false, 0},     {AHG_WS_CONT, true, 300},  {AHG_WS_BINARY, true, 256},
        {AHG_WS_TEXT, true, 0},      {AHG_WS_PONG, true, 125},  {AHG_WS_BINARY, true, 65536},
        {AHG_WS_BINARY, true, 9000}, {AHG_WS_CLOSE, true, 5},
    };
    for (size_t i = 0; i < sizeof frames / sizeof frames[0]; i++) {
        key[0] = (unsigned char)(key[0] + 13u);
        assert_true(n + AHG_WS_MAX_HEADER + frames[i].len <= outsz);
        size_t hl = ahg_ws_frame_header(out + n, frames[i].op, frames[i].fin, frames[i].len,
                                        masked ? key : NULL);
        assert_true(hl >= 2);
        n += hl;
        if (frames[i].op == AHG_WS_CLOSE) {
            static const unsigned char bye[] = {0x03, 0xe8, 'b', 'y', 'e'};
            memcpy(out + n, bye, sizeof bye);
        } else if (frames[i].op == AHG_WS_TEXT) {
            memcpy(out + n, "Hello", frames[i].len);
        } else {
            fill_pattern(out + n, frames[i].len, (unsigned)i);
        }
        if (masked)
            ahg_ws_mask(out + n, frames[i].len, key, 0);
        n += frames[i].len;
    }
    return n;
}

static void
check_split_invariance(bool server)
{
    const size_t cap = 90000;
    unsigned char *s = malloc(cap);
    assert_non_null(s);
    size_t n = build_stream(s, cap, server);

    struct rec *whole = rec_new();
    struct ahg_ws_parser *p = parser_new(server, whole);
    size_t used = 0;
    assert_int_equal(ahg_ws_parser_feed(p, s, n, &used), AHG_OK);
    assert_int_equal(used, n);
    assert_true(ahg_ws_parser_closed(p));
    assert_int_equal(whole->begins, 11);
    assert_int_equal(whole->ends, 11);
    ahg_ws_parser_free(p);

    static const size_t chunks[] = {1, 2, 3, 7, 13, 100, 4095, 4097, 65537};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        struct rec *r = rec_new();
        p = parser_new(server, r);
        size_t total = 0;
        assert_int_equal(feed_chunked(p, s, n, chunks[c], &total), AHG_OK);
        assert_int_equal(total, n);
        assert_true(ahg_ws_parser_closed(p));
        assert_string_equal(r->log, whole->log);
        assert_int_equal(r->datalen, whole->datalen);
        assert_memory_equal(r->data, whole->data, whole->datalen);
        ahg_ws_parser_free(p);
        rec_free(r);
    }
    rec_free(whole);
    free(s);
}

static void
test_ws_parse_bytewise_equals_whole_client(void **state)
{
    (void)state;
    check_split_invariance(false);
}

static void
test_ws_parse_bytewise_equals_whole_server(void **state)
{
    (void)state;
    check_split_invariance(true);
}

/* ------------------------------------------------------------------------------------------- */
/* Protocol errors */

struct bad_case {
    const char *name;
    size_t n;
    unsigned begins; /* frames begun before the bad one */
    uint16_t code;
    bool server;
    unsigned char bytes[16];
};

static const struct bad_case bad_cases[] = {
    {"reserved data opcode 3", 2, 0, 1002, false, {0x83, 0x00}},
    {"reserved data opcode 7", 2, 0, 1002, false, {0x87, 0x00}},
    {"reserved control opcode B", 2, 0, 1002, false, {0x8b, 0x00}},
    {"reserved control opcode F", 2, 0, 1002, false, {0x8f, 0x00}},
    {"RSV1", 2, 0, 1002, false, {0xc1, 0x00}},
    {"RSV2", 2, 0, 1002, false, {0xa1, 0x00}},
    {"RSV3", 2, 0, 1002, false, {0x91, 0x00}},
    {"ping of 126 bytes", 4, 0, 1002, false, {0x89, 0x7e, 0x00, 0x7e}},
    {"close of 64-bit length", 10, 0, 1002, false, {0x88, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0x05}},
    {"fragmented ping", 2, 0, 1002, false, {0x09, 0x00}},
    {"fragmented close", 2, 0, 1002, false, {0x08, 0x00}},
    {"unmasked frame to server", 2, 0, 1002, true, {0x81, 0x00}},
    {"masked frame to client", 6, 0, 1002, false, {0x81, 0x80, 1, 2, 3, 4}},
    {"continuation without message", 2, 0, 1002, false, {0x80, 0x00}},
    {"fin continuation after message", 4, 1, 1002, false, {0x81, 0x00, 0x80, 0x00}},
    {"text inside fragmented text", 4, 1, 1002, false, {0x01, 0x00, 0x81, 0x00}},
    {"binary inside fragmented text", 4, 1, 1002, false, {0x01, 0x00, 0x02, 0x00}},
    {"64-bit length with MSB", 10, 0, 1002, false, {0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0}},
    {"close of 1 byte", 3, 0, 1002, false, {0x88, 0x01, 0x03}},
    {"close code 999", 4, 0, 1002, false, {0x88, 0x02, 0x03, 0xe7}},
    {"close code 1004", 4, 0, 1002, false, {0x88, 0x02, 0x03, 0xec}},
    {"close code 1005", 4, 0, 1002, false, {0x88, 0x02, 0x03, 0xed}},
    {"close code 1006", 4, 0, 1002, false, {0x88, 0x02, 0x03, 0xee}},
    {"close code 1015", 4, 0, 1002, false, {0x88, 0x02, 0x03, 0xf7}},
    {"close code 1016", 4, 0, 1002, false, {0x88, 0x02, 0x03, 0xf8}},
    {"close code 2999", 4, 0, 1002, false, {0x88, 0x02, 0x0b, 0xb7}},
    {"close code 5000", 4, 0, 1002, false, {0x88, 0x02, 0x13, 0x88}},
    {"close code 0", 4, 0, 1002, false, {0x88, 0x02, 0x00, 0x00}},
    {"close reason not UTF-8", 6, 0, 1007, false, {0x88, 0x04, 0x03, 0xe8, 'a', 0xff}},
    {"masked close code 999 to server",
     8,
     0,
     1002,
     true,
     {0x88, 0x82, 0x10, 0x20, 0x30, 0x40, 0x03 ^ 0x10, 0xe7 ^ 0x20}},
};

static void
test_ws_parse_protocol_errors_have_close_codes(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const struct bad_case *c = &bad_cases[i];
        static const size_t chunks[] = {0, 1};
        for (size_t k = 0; k < 2; k++) {
            struct rec *r = rec_new();
            struct ahg_ws_parser *p = parser_new(c->server, r);
            int rc = feed_chunked(p, c->bytes, c->n, chunks[k], NULL);
            if (rc != AHG_EPROTO || ahg_ws_parser_close_code(p) != c->code ||
                r->begins != c->begins)
                print_error("case '%s' chunk %zu: rc %d code %u begins %u\n", c->name, chunks[k],
                            rc, (unsigned)ahg_ws_parser_close_code(p), r->begins);
            assert_int_equal(rc, AHG_EPROTO);
            assert_int_equal(ahg_ws_parser_close_code(p), c->code);
            assert_int_equal(r->begins, c->begins);
            /* the error is sticky */
            size_t used = 99;
            assert_int_equal(ahg_ws_parser_feed(p, hello_unmasked, 2, &used), AHG_EPROTO);
            assert_int_equal(used, 0);
            assert_int_equal(ahg_ws_parser_feed(p, NULL, 0, &used), AHG_EPROTO);
            assert_false(ahg_ws_parser_closed(p));
            ahg_ws_parser_free(p);
            rec_free(r);
        }
    }
}

static void
test_ws_parse_error_stops_before_bad_frame(void **state)
{
    (void)state;
    /* a good frame then an RSV frame: the good one is delivered, consumed stops at the bad byte */
    static const unsigned char s[] = {0x81, 0x02, 'o', 'k', 0xc2, 0x00, 0x81, 0x00};
    struct rec *r = rec_new();
    struct ahg_ws_parser *p = parser_new(false, r);
    size_t used = 0;
    assert_int_equal(ahg_ws_parser_feed(p, s, sizeof s, &used), AHG_EPROTO);
    assert_int_equal(used, 5);
    assert_string_equal(r->log, "B1/1F:2;DE;");
    assert_int_equal(ahg_ws_parser_close_code(p), 1002);
    ahg_ws_parser_free(p);
    rec_free(r);
}

/* ------------------------------------------------------------------------------------------- */
/* Limits */

static void
test_ws_parse_frame_over_max_is_1009(void **state)
{
    (void)state;
    struct ahg_ws_parser_opts o = {.server_role = false, .max_frame_payload = 5};
    static const unsigned char ok5[] = {0x82, 0x05, 1, 2, 3, 4, 5};
    static const unsigned char big6[] = {0x82, 0x06, 1, 2, 3, 4, 5, 6};
    static const unsigned char huge[] = {0x82, 0x7f, 0, 0, 0x01, 0, 0, 0, 0, 0};

    struct rec *r = rec_new();
    struct ahg_ws_parser *p = parser_new_opts(&o, r);
    assert_int_equal(feed_chunked(p, ok5, sizeof ok5, 0, NULL), AHG_OK);
    assert_int_equal(r->datalen, 5);
    size_t used = 0;
    assert_int_equal(ahg_ws_parser_feed(p, big6, sizeof big6, &used), AHG_EPROTO);
    assert_int_equal(ahg_ws_parser_close_code(p), 1009);
    assert_int_equal(used, 2); /* refused at the header: no payload byte was read */
    assert_int_equal(r->begins, 1);
    ahg_ws_parser_free(p);
    rec_free(r);

    /* a 2^40-byte header is refused before any payload arrives */
    o.max_frame_payload = 1000;
    r = rec_new();
    p = parser_new_opts(&o, r);
    assert_int_equal(feed_chunked(p, huge, sizeof huge, 1, NULL), AHG_EPROTO);
    assert_int_equal(ahg_ws_parser_close_code(p), 1009);
    assert_int_equal(r->begins, 0);
    ahg_ws_parser_free(p);
    rec_free(r);

    /* control frames are bounded by 125 only, whatever the data limit */
    o.max_frame_payload = 1;
    r = rec_new();
    p = parser_new_opts(&o, r);
    assert_int_equal(feed_chunked(p, ping_unmasked, sizeof ping_unmasked, 0, NULL), AHG_OK);
    assert_int_equal(r->ends, 1);
    ahg_ws_parser_free(p);
    rec_free(r);
}

static void
test_ws_parse_message_over_max_is_1009(void **state)
{
    (void)state;
    struct ahg_ws_parser_opts o = {.server_role = false, .max_message_payload = 8};
    static const unsigned char ok8[] = {0x02, 0x05, 1, 2, 3, 4, 5, 0x80, 0x03, 6, 7, 8};
    static const unsigned char big9[] = {0x02, 0x05, 1, 2, 3,    4,    5, 0x00,
                                         0x03, 6,    7, 8, 0x80, 0x01, 9};
    struct rec *r = rec_new();
    struct ahg_ws_parser *p = parser_new_opts(&o, r);
    assert_int_equal(feed_chunked(p, ok8, sizeof ok8, 0, NULL), AHG_OK);
    assert_int_equal(r->datalen, 8);
    /* a new message starts counting from zero */
    assert_int_equal(feed_chunked(p, big9, sizeof big9, 0, NULL), AHG_EPROTO);
    assert_int_equal(ahg_ws_parser_close_code(p), 1009);
    assert_int_equal(r->begins, 2 + 2);
    assert_int_equal(r->datalen, 16);
    ahg_ws_parser_free(p);
    rec_free(r);
}

/* ------------------------------------------------------------------------------------------- */
/* UTF-8 in the parser */

static void
test_ws_parse_text_utf8_validation(void **state)
{
    (void)state;
    struct ahg_ws_parser_opts o = {.server_role = false, .validate_utf8 = true};
    /* "κόσμε" split inside multi-byte sequences across three frames, with a ping in between */
    static const unsigned char good[] = {0x01, 0x03, 0xce, 0xba, 0xe1, 0x89, 0x00, 0x00, 0x04, 0xbd,
                                         0xb9, 0xcf, 0x83, 0x80, 0x04, 0xce, 0xbc, 0xce, 0xb5};
    struct rec *r = rec_new();
    struct ahg_ws_parser *p = parser_new_opts(&o, r);
    assert_int_equal(feed_chunked(p, good, sizeof good, 1, NULL), AHG_OK);
    assert_int_equal(r->datalen, 11);
    assert_memory_equal(r->data, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 11);
    ahg_ws_parser_free(p);
    rec_free(r);

    /* an overlong form fails fast, before the frame's payload is delivered */
    static const unsigned char overlong[] = {0x01, 0x02, 0xc0, 0xaf};
    r = rec_new();
    p = parser_new_opts(&o, r);
    assert_int_equal(feed_chunked(p, overlong, sizeof overlong, 0, NULL), AHG_EPROTO);
    assert_int_equal(ahg_ws_parser_close_code(p), 1007);
    assert_int_equal(r->datalen, 0);
    ahg_ws_parser_free(p);
    rec_free(r);

    /* a message that ends inside a sequence fails at its end, before frame_end */
    static const unsigned char truncated[] = {0x81, 0x03, 'a', 0xe2, 0x82};
    r = rec_new();
    p = parser_new_opts(&o, r);
    assert_int_equal(feed_chunked(p, truncated, sizeof truncated, 0, NULL), AHG_EPROTO);
    assert_int_equal(ahg_ws_parser_close_code(p), 1007);
    assert_int_equal(r->ends, 0);
    ahg_ws_parser_free(p);
    rec_free(r);

    /* binary is never checked, and text is not checked without validate_utf8 */
    static const unsigned char bin[] = {0x82, 0x02, 0xff, 0xfe, 0x81, 0x01, 0xff};
    r = rec_new();
    p = parser_new_opts(&o, r);
    size_t used = 0;
    assert_int_equal(ahg_ws_parser_feed(p, bin, 4, &used), AHG_OK);
    assert_int_equal(ahg_ws_parser_feed(p, bin + 4, 3, &used), AHG_EPROTO);
    assert_int_equal(ahg_ws_parser_close_code(p), 1007);
    ahg_ws_parser_free(p);
    rec_free(r);

    r = rec_new();
    p = parser_new(false, r);
    assert_int_equal(feed_chunked(p, bin, sizeof bin, 0, NULL), AHG_OK);
    assert_int_equal(r->ends, 2);
    ahg_ws_parser_free(p);
    rec_free(r);
}

/* ------------------------------------------------------------------------------------------- */
/* Backpressure, callback errors, close */

static void
test_ws_parse_pause_in_data_and_resume(void **state)
{
    (void)state;
    const size_t big = 20000;
    const unsigned char key[4] = {9, 8, 7, 6};
    unsigned char *buf = malloc(AHG_WS_MAX_HEADER + big + 16);
    unsigned char *plain = malloc(big);
    assert_non_null(buf);
    assert_non_null(plain);
    fill_pattern(plain, big, 5);
    size_t n = ahg_ws_frame_header(buf, AHG_WS_BINARY, true, big, key);
    memcpy(buf + n, plain, big);
    ahg_ws_mask(buf + n, big, key, 0);
    n += big;
    static const unsigned char ping[] = {0x89, 0x81, 1, 2, 3, 4, 'p' ^ 1};
    memcpy(buf + n, ping, sizeof ping);
    n += sizeof ping;

    struct rec *r = rec_new();
    r->pause_on = ON_DATA;
    struct ahg_ws_parser *p = parser_new(true, r);
    size_t off = 0;
    size_t calls = 0;
    while (off < n) {
        size_t used = 0;
        size_t before = r->pieces;
        assert_int_equal(ahg_ws_parser_feed(p, buf + off, n - off, &used), AHG_OK);
        off += used;
        calls++;
        /* each call stops right after one data piece */
        assert_int_equal(r->pieces, before + 1);
        assert_true(calls < 100);
    }
    assert_string_equal(r->log, "B2/2F:20000;DE;B9/9F:1;D");
    size_t used = 1;
    assert_int_equal(ahg_ws_parser_feed(p, NULL, 0, &used), AHG_OK);
    assert_int_equal(used, 0);
    assert_string_equal(r->log, "B2/2F:20000;DE;B9/9F:1;DE;");
    assert_int_equal(r->datalen, big + 1);
    assert_memory_equal(r->data, plain, big);
    assert_int_equal(r->data[big], 'p');
    ahg_ws_parser_free(p);
    rec_free(r);
    free(plain);
    free(buf);
}

static void
test_ws_parse_pause_at_begin_delivers_rest_on_empty_feed(void **state)
{
    (void)state;
    static const unsigned char s[] = {0x81, 0x00, 0x89, 0x02, 'a', 'b', 0x82, 0x01, 'z'};
    struct rec *r = rec_new();
    r->pause_on = ON_BEGIN | ON_END;
    struct ahg_ws_parser *p = parser_new(false, r);
    size_t used = 0;
    assert_int_equal(ahg_ws_parser_feed(p, s, sizeof s, &used), AHG_OK);
    assert_int_equal(used, 2);
    assert_string_equal(r->log, "B1/1F:0;");
    assert_int_equal(ahg_ws_parser_feed(p, NULL, 0, &used), AHG_OK);
    assert_int_equal(used, 0);
    assert_string_equal(r->log, "B1/1F:0;E;");
    assert_int_equal(ahg_ws_parser_feed(p, s + 2, sizeof s - 2, &used), AHG_OK);
    assert_int_equal(used, 4); /* the whole ping was collected before its frame_begin */
    assert_string_equal(r->log, "B1/1F:0;E;B9/9F:2;");
    assert_int_equal(ahg_ws_parser_feed(p, s + 6, sizeof s - 6, &used), AHG_OK);
    assert_int_equal(used, 0);
    assert_string_equal(r->log, "B1/1F:0;E;B9/9F:2;DE;");
    assert_int_equal(ahg_ws_parser_feed(p, s + 6, sizeof s - 6, &used), AHG_OK);
    assert_int_equal(used, 2);
    assert_int_equal(ahg_ws_parser_feed(p, s + 8, 1, &used), AHG_OK);
    assert_int_equal(used, 1);
    assert_int_equal(ahg_ws_parser_feed(p, NULL, 0, &used), AHG_OK);
    assert_string_equal(r->log, "B1/1F:0;E;B9/9F:2;DE;B2/2F:1;DE;");
    assert_memory_equal(r->data, "abz", 3);
    ahg_ws_parser_free(p);
    rec_free(r);
}

static void
test_ws_parse_callback_error_is_returned_and_sticky(void **state)
{
    (void)state;
    struct rec *r = rec_new();
    r->fail_on = ON_DATA;
    r->fail_rc = AHG_ELIMIT;
    struct ahg_ws_parser *p = parser_new(false, r);
    size_t used = 0;
    assert_int_equal(ahg_ws_parser_feed(p, hello_unmasked, sizeof hello_unmasked, &used),
                     AHG_ELIMIT);
    assert_int_equal(used, sizeof hello_unmasked);
    assert_int_equal(ahg_ws_parser_close_code(p), 1011);
    assert_int_equal(r->ends, 0);
    assert_int_equal(ahg_ws_parser_feed(p, hello_unmasked, sizeof hello_unmasked, &used),
                     AHG_ELIMIT);
    assert_int_equal(used, 0);
    assert_int_equal(r->begins, 1);
    ahg_ws_parser_free(p);
    rec_free(r);
}

static void
test_ws_parse_close_stops_the_parser(void **state)
{
    (void)state;
    static const unsigned char s[] = {0x88, 0x05, 0x03, 0xe9, 'b', 'y', 'e', 0x81, 0x00};
    struct rec *r = rec_new();
    struct ahg_ws_parser *p = parser_new(false, r);
    size_t used = 0;
    assert_int_equal(ahg_ws_parser_feed(p, s, sizeof s, &used), AHG_OK);
    assert_int_equal(used, 7); /* the frame after the close is not consumed */
    assert_true(ahg_ws_parser_closed(p));
    assert_int_equal(ahg_ws_parser_close_code(p), 0);
    assert_string_equal(r->log, "B8/8F:5;DE;");
    uint16_t code = 0;
    const char *reason = NULL;
    size_t rlen = 0;
    assert_int_equal(ahg_ws_close_parse(r->data, r->datalen, &code, &reason, &rlen), AHG_OK);
    assert_int_equal(code, 1001);
    assert_int_equal(rlen, 3);
    assert_memory_equal(reason, "bye", 3);
    assert_int_equal(ahg_ws_parser_feed(p, s + 7, 2, &used), AHG_ECLOSED);
    assert_int_equal(used, 0);
    assert_int_equal(r->begins, 1);
    ahg_ws_parser_free(p);
    rec_free(r);

    /* an empty close is valid too */
    static const unsigned char empty_close[] = {0x88, 0x80, 1, 2, 3, 4};
    r = rec_new();
    p = parser_new(true, r);
    assert_int_equal(feed_chunked(p, empty_close, sizeof empty_close, 1, NULL), AHG_OK);
    assert_true(ahg_ws_parser_closed(p));
    assert_string_equal(r->log, "B8/8F:0;E;");
    ahg_ws_parser_free(p);
    rec_free(r);
}

static void
test_ws_parser_new_and_feed_reject_bad_arguments(void **state)
{
    (void)state;
    struct ahg_ws_parser_opts o = {.server_role = true};
    int err = 0;
    assert_null(ahg_ws_parser_new(NULL, &rec_cb, NULL, &err));
    assert_int_equal(err, AHG_EINVAL);
    err = 0;
    assert_null(ahg_ws_parser_new(&o, NULL, NULL, &err));
    assert_int_equal(err, AHG_EINVAL);
    assert_null(ahg_ws_parser_new(NULL, NULL, NULL, NULL));
    ahg_ws_parser_free(NULL);
    assert_int_equal(ahg_ws_parser_close_code(NULL), 0);
    assert_false(ahg_ws_parser_closed(NULL));

    /* NULL callbacks are allowed and behave as "continue" */
    struct ahg_ws_parser_cb none = {NULL, NULL, NULL};
    struct ahg_ws_parser *p = ahg_ws_parser_new(&o, &none, NULL, NULL);
    assert_non_null(p);
    size_t used = 7;
    assert_int_equal(ahg_ws_parser_feed(p, hello_masked, sizeof hello_masked, NULL), AHG_EINVAL);
    assert_int_equal(ahg_ws_parser_feed(p, NULL, 3, &used), AHG_EINVAL);
    assert_int_equal(used, 0);
    assert_int_equal(ahg_ws_parser_feed(NULL, hello_masked, 1, &used), AHG_EINVAL);
    assert_int_equal(ahg_ws_parser_feed(p, hello_masked, sizeof hello_masked, &used), AHG_OK);
    assert_int_equal(used, sizeof hello_masked);
    ahg_ws_parser_free(p);
}

/* ------------------------------------------------------------------------------------------- */
/* Writing */

static void
test_ws_frame_header_encodings(void **state)
{
    (void)state;
    unsigned char h[AHG_WS_MAX_HEADER];
    const unsigned char key[4] = {0x37, 0xfa, 0x21, 0x3d};

    assert_int_equal(ahg_ws_frame_header(h, AHG_WS_TEXT, true, 5, NULL), 2);
    assert_memory_equal(h, "\x81\x05", 2);
    assert_int_equal(ahg_ws_frame_header(h, AHG_WS_TEXT, true, 5, key), 6);
    assert_memory_equal(h, "\x81\x85\x37\xfa\x21\x3d", 6);
    assert_int_equal(ahg_ws_frame_header(h, AHG_WS_TEXT, false, 3, NULL), 2);
    assert_memory_equal(h, "\x01\x03", 2);
    assert_int_equal(ahg_ws_frame_header(h, AHG_WS_CONT, true, 2, NULL), 2);
    assert_memory_equal(h, "\x80\x02", 2);
    assert_int_equal(ahg_ws_frame_header(h, AHG_WS_BINARY, true, 125, NULL), 2);
    assert_memory_equal(h, "\x82\x7d", 2);
    assert_int_equal(ahg_ws_frame_header(h, AHG_WS_BINARY, true, 126, NULL), 4);
    assert_memory_equal(h, "\x82\x7e\x00\x7e", 4);
    assert_int_equal(ahg_ws_frame_header(h, AHG_WS_BINARY, true, 256, NULL), 4);
    assert_memory_equal(h, "\x82\x7e\x01\x00", 4);
    assert_int_equal(ahg_ws_frame_header(h, AHG_WS_BINARY, true, 65535, NULL), 4);
    assert_memory_equal(h, "\x82\x7e\xff\xff", 4);
    assert_int_equal(ahg_ws_frame_header(h, AHG_WS_BINARY, true, 65536, NULL), 10);
    assert_memory_equal(h, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    assert_int_equal(ahg_ws_frame_header(h, AHG_WS_BINARY, true, AHG_WS_MAX_PAYLOAD, key), 14);
    assert_memory_equal(h, "\x82\xff\x7f\xff\xff\xff\xff\xff\xff\xff\x37\xfa\x21\x3d", 14);
    assert_int_equal(ahg_ws_frame_header(h, AHG_WS_PING, true, 125, NULL), 2);
    assert_memory_equal(h, "\x89\x7d", 2);
    assert_int_equal(ahg_ws_frame_header(h, AHG_WS_CLOSE, true, 0, NULL), 2);
    assert_memory_equal(h, "\x88\x00", 2);

    /* invalid frames write nothing useful and return 0 */
    assert_int_equal(ahg_ws_frame_header(h, AHG_WS_PING, true, 126, NULL), 0);
    assert_int_equal(ahg_ws_frame_header(h, AHG_WS_PONG, false, 1, NULL), 0);
    assert_int_equal(ahg_ws_frame_header(h, AHG_WS_CLOSE, false, 0, NULL), 0);
    assert_int_equal(ahg_ws_frame_header(h, (enum ahg_ws_opcode)3, true, 1, NULL), 0);
    assert_int_equal(ahg_ws_frame_header(h, (enum ahg_ws_opcode)0xb, true, 1, NULL), 0);
    assert_int_equal(ahg_ws_frame_header(h, AHG_WS_BINARY, true, AHG_WS_MAX_PAYLOAD + 1, NULL), 0);
    assert_int_equal(ahg_ws_frame_header(NULL, AHG_WS_BINARY, true, 1, NULL), 0);
}

static void
test_ws_frame_header_round_trips_through_parser(void **state)
{
    (void)state;
    static const size_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 70001};
    const unsigned char key[4] = {0xde, 0xad, 0xbe, 0xef};
    unsigned char *buf = malloc(AHG_WS_MAX_HEADER + 70001);
    unsigned char *plain = malloc(70001);
    assert_non_null(buf);
    assert_non_null(plain);
    for (int masked = 0; masked < 2; masked++) {
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
            size_t len = lens[i];
            fill_pattern(plain, len, (unsigned)i);
            size_t hl = ahg_ws_frame_header(buf, AHG_WS_BINARY, true, len, masked ? key : NULL);
            size_t expect = (len <= 125 ? 2u : len <= 65535 ? 4u : 10u) + (masked ? 4u : 0u);
            assert_int_equal(hl, expect);
            memcpy(buf + hl, plain, len);
            /* mask in uneven pieces */
            for (size_t off = 0; masked && off < len; off += 1000 + off % 7) {
                size_t n = len - off < 1000 + off % 7 ? len - off : 1000 + off % 7;
                ahg_ws_mask(buf + hl + off, n, key, off);
            }
            struct rec *r = rec_new();
            struct ahg_ws_parser *p = parser_new(masked != 0, r);
            assert_int_equal(feed_chunked(p, buf, hl + len, 0, NULL), AHG_OK);
            char want[64];
            (void)snprintf(want, sizeof want, "B2/2F:%zu;%sE;", len, len > 0 ? "D" : "");
            assert_string_equal(r->log, want);
            assert_int_equal(r->datalen, len);
            if (len > 0)
                assert_memory_equal(r->data, plain, len);
            ahg_ws_parser_free(p);
            rec_free(r);
        }
    }
    free(plain);
    free(buf);
}

static void
test_ws_mask_rfc_example_and_offsets(void **state)
{
    (void)state;
    const unsigned char key[4] = {0x37, 0xfa, 0x21, 0x3d};
    unsigned char hello[5] = {'H', 'e', 'l', 'l', 'o'};
    ahg_ws_mask(hello, 5, key, 0);
    assert_memory_equal(hello, "\x7f\x9f\x4d\x51\x58", 5);
    ahg_ws_mask(hello, 5, key, 0);
    assert_memory_equal(hello, "Hello", 5);

    /* an offset continues the key where it left off: offset 4 equals offset 0, 1 shifts */
    unsigned char a[3] = {0, 0, 0};
    ahg_ws_mask(a, 3, key, 1);
    assert_memory_equal(a, "\xfa\x21\x3d", 3);
    memset(a, 0, 3);
    ahg_ws_mask(a, 3, key, 4 + 3);
    assert_memory_equal(a, "\x3d\x37\xfa", 3);
    memset(a, 0, 3);
    ahg_ws_mask(a, 3, key, UINT64_C(0x100000001));
    assert_memory_equal(a, "\xfa\x21\x3d", 3);

    enum { N = 1031 };
    unsigned char one[N], pieces[N];
    fill_pattern(one, N, 9);
    memcpy(pieces, one, N);
    ahg_ws_mask(one, N, key, 0);
    static const size_t cuts[] = {1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377};
    size_t off = 0;
    for (size_t i = 0; off < N; i++) {
        size_t n = cuts[i % (sizeof cuts / sizeof cuts[0])];
        if (n > N - off)
            n = N - off;
        ahg_ws_mask(pieces + off, n, key, off);
        off += n;
    }
    assert_memory_equal(one, pieces, N);
    ahg_ws_mask(NULL, 0, key, 0); /* no-op */
}

static void
test_ws_frame_write_whole_frames(void **state)
{
    (void)state;
    unsigned char out[AHG_WS_MAX_HEADER + 200];
    size_t len = 0;

    assert_int_equal(ahg_ws_frame_write(out, sizeof out, AHG_WS_PONG, true,
                                        (const unsigned char *)"Hello", 5, false, &len),
                     AHG_OK);
    assert_int_equal(len, 7);
    assert_memory_equal(out, "\x8a\x05Hello", 7);

    /* client frames are masked with a fresh key and parse back as the payload */
    unsigned char msg[150];
    fill_pattern(msg, sizeof msg, 4);
    assert_int_equal(
        ahg_ws_frame_write(out, sizeof out, AHG_WS_BINARY, true, msg, sizeof msg, true, &len),
        AHG_OK);
    assert_int_equal(len, 4 + 4 + sizeof msg);
    assert_int_equal(out[1], 0x80 | 126);
    struct rec *r = rec_new();
    struct ahg_ws_parser *p = parser_new(true, r);
    assert_int_equal(feed_chunked(p, out, len, 0, NULL), AHG_OK);
    assert_string_equal(r->log, "B2/2F:150;DE;");
    assert_memory_equal(r->data, msg, sizeof msg);
    ahg_ws_parser_free(p);
    rec_free(r);

    /* empty frame */
    assert_int_equal(ahg_ws_frame_write(out, 2, AHG_WS_PING, true, NULL, 0, false, &len), AHG_OK);
    assert_int_equal(len, 2);
    assert_memory_equal(out, "\x89\x00", 2);

    /* too small, exactly enough */
    memset(out, 0xaa, sizeof out);
    assert_int_equal(ahg_ws_frame_write(out, 6, AHG_WS_TEXT, true, (const unsigned char *)"Hello",
                                        5, false, &len),
                     AHG_ELIMIT);
    assert_int_equal(out[0], 0xaa);
    assert_int_equal(ahg_ws_frame_write(out, 10, AHG_WS_TEXT, true, (const unsigned char *)"Hello",
                                        5, true, &len),
                     AHG_ELIMIT);
    assert_int_equal(ahg_ws_frame_write(out, 11, AHG_WS_TEXT, true, (const unsigned char *)"Hello",
                                        5, true, &len),
                     AHG_OK);
    assert_int_equal(len, 11);
    assert_int_equal(out[1], 0x85);
    ahg_ws_mask(out + 6, 5, out + 2, 0);
    assert_memory_equal(out + 6, "Hello", 5);

    /* invalid frames and arguments */
    unsigned char big[126] = {0};
    assert_int_equal(
        ahg_ws_frame_write(out, sizeof out, AHG_WS_PING, true, big, sizeof big, false, &len),
        AHG_EINVAL);
    assert_int_equal(ahg_ws_frame_write(out, sizeof out, AHG_WS_CLOSE, false, NULL, 0, false, &len),
                     AHG_EINVAL);
    assert_int_equal(ahg_ws_frame_write(out, sizeof out, AHG_WS_TEXT, true, NULL, 1, false, &len),
                     AHG_EINVAL);
    assert_int_equal(ahg_ws_frame_write(NULL, 10, AHG_WS_TEXT, true, NULL, 0, false, &len),
                     AHG_EINVAL);
    assert_int_equal(ahg_ws_frame_write(out, 10, AHG_WS_TEXT, true, NULL, 0, false, NULL),
                     AHG_EINVAL);
}

static void
test_ws_mask_key_is_random(void **state)
{
    (void)state;
    unsigned char k[8][4];
    for (int i = 0; i < 8; i++)
        assert_int_equal(ahg_ws_mask_key(k[i]), AHG_OK);
    int distinct = 0;
    for (int i = 1; i < 8; i++)
        distinct += memcmp(k[0], k[i], 4) != 0;
    assert_true(distinct >= 6); /* 8 equal 32-bit draws would be a broken RNG */
    assert_int_equal(ahg_ws_mask_key(NULL), AHG_EINVAL);
}

/* ------------------------------------------------------------------------------------------- */
/* Close payloads */

static void
test_ws_close_payload_round_trip(void **state)
{
    (void)state;
    unsigned char out[AHG_WS_MAX_CONTROL];
    size_t len = 0;
    uint16_t code = 0;
    const char *reason = NULL;
    size_t rlen = 99;

    assert_int_equal(ahg_ws_close_payload(out, sizeof out, 1000, "bye", &len), AHG_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(out,
                        "\x03\xe8"
                        "bye",
                        5);
    assert_int_equal(ahg_ws_close_parse(out, len, &code, &reason, &rlen), AHG_OK);
    assert_int_equal(code, 1000);
    assert_int_equal(rlen, 3);
    assert_memory_equal(reason, "bye", 3);
    assert_ptr_equal(reason, (const char *)out + 2);

    static const uint16_t ok_codes[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                        1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    for (size_t i = 0; i < sizeof ok_codes / sizeof ok_codes[0]; i++) {
        assert_true(ahg_ws_close_code_is_valid(ok_codes[i]));
        assert_int_equal(
            ahg_ws_close_payload(out, sizeof out, ok_codes[i], "\xc3\xa9t\xc3\xa9", &len), AHG_OK);
        assert_int_equal(len, 2 + 5);
        assert_int_equal(ahg_ws_close_parse(out, len, &code, &reason, &rlen), AHG_OK);
        assert_int_equal(code, ok_codes[i]);
        assert_int_equal(rlen, 5);
        assert_memory_equal(reason, "\xc3\xa9t\xc3\xa9", 5);
    }

    /* no reason, and no code at all */
    assert_int_equal(ahg_ws_close_payload(out, 2, 4321, NULL, &len), AHG_OK);
    assert_int_equal(len, 2);
    assert_memory_equal(out, "\x10\xe1", 2);
    assert_int_equal(ahg_ws_close_payload(out, 0, 0, NULL, &len), AHG_OK);
    assert_int_equal(len, 0);
    assert_int_equal(ahg_ws_close_payload(out, 0, 0, "", &len), AHG_OK);
    assert_int_equal(len, 0);
    assert_int_equal(ahg_ws_close_parse(out, 0, &code, &reason, &rlen), AHG_OK);
    assert_int_equal(code, 1005);
    assert_int_equal(rlen, 0);
    assert_non_null(reason);
    assert_int_equal(ahg_ws_close_parse(NULL, 0, &code, &reason, &rlen), AHG_OK);
    assert_int_equal(code, 1005);
}

static void
test_ws_close_payload_truncates_at_utf8_boundary(void **state)
{
    (void)state;
    unsigned char out[AHG_WS_MAX_CONTROL + 10];
    char reason[300];
    size_t len = 0;

    memset(reason, 'a', 200);
    reason[200] = '\0';
    assert_int_equal(ahg_ws_close_payload(out, sizeof out, 1001, reason, &len), AHG_OK);
    assert_int_equal(len, AHG_WS_MAX_CONTROL);

    /* 122 ASCII + a 2-byte character = 124 bytes: the character does not fit in 123 */
    memset(reason, 'a', 122);
    memcpy(reason + 122, "\xc3\xa9", 3);
    assert_int_equal(ahg_ws_close_payload(out, sizeof out, 1001, reason, &len), AHG_OK);
    assert_int_equal(len, 2 + 122);
    assert_true(ahg_ws_utf8_valid(out + 2, len - 2));

    /* 121 ASCII + a 2-byte character = 123 bytes fit exactly */
    memset(reason, 'a', 121);
    memcpy(reason + 121, "\xc3\xa9", 3);
    assert_int_equal(ahg_ws_close_payload(out, sizeof out, 1001, reason, &len), AHG_OK);
    assert_int_equal(len, 2 + 123);
    assert_memory_equal(out + 2 + 121, "\xc3\xa9", 2);

    /* outsz limits too: 3 bytes of room cut "é€" (2 + 3 bytes) after "é" */
    assert_int_equal(ahg_ws_close_payload(out, 5, 1000, "\xc3\xa9\xe2\x82\xac", &len), AHG_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(out + 2, "\xc3\xa9", 2);
    /* a 4-byte character that cannot fit at all leaves an empty reason */
    assert_int_equal(ahg_ws_close_payload(out, 5, 1000, "\xf0\x9f\x98\x80", &len), AHG_OK);
    assert_int_equal(len, 2);
}

static void
test_ws_close_payload_rejects_invalid(void **state)
{
    (void)state;
    unsigned char out[AHG_WS_MAX_CONTROL];
    size_t len = 0;
    static const uint16_t bad_codes[] = {1,    999,  1004, 1005, 1006, 1015,
                                         1016, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof bad_codes / sizeof bad_codes[0]; i++) {
        assert_false(ahg_ws_close_code_is_valid(bad_codes[i]));
        assert_int_equal(ahg_ws_close_payload(out, sizeof out, bad_codes[i], "x", &len),
                         AHG_EINVAL);
    }
    assert_int_equal(ahg_ws_close_payload(out, sizeof out, 0, "x", &len), AHG_EINVAL);
    assert_int_equal(ahg_ws_close_payload(out, sizeof out, 1000, "\xff", &len), AHG_EINVAL);
    assert_int_equal(ahg_ws_close_payload(out, sizeof out, 1000, "\xed\xa0\x80", &len), AHG_EINVAL);
    assert_int_equal(ahg_ws_close_payload(out, 1, 1000, NULL, &len), AHG_ELIMIT);
    assert_int_equal(ahg_ws_close_payload(NULL, 10, 1000, NULL, &len), AHG_EINVAL);
    assert_int_equal(ahg_ws_close_payload(out, 10, 1000, NULL, NULL), AHG_EINVAL);
}

static void
test_ws_close_parse_rejects_invalid(void **state)
{
    (void)state;
    uint16_t code = 0;
    const char *reason = "x";
    size_t rlen = 9;
    unsigned char p[130];

    p[0] = 0x03;
    assert_int_equal(ahg_ws_close_parse(p, 1, &code, &reason, &rlen), AHG_EPROTO);
    assert_int_equal(code, 1002);
    assert_null(reason);
    assert_int_equal(rlen, 0);

    static const uint16_t bad_codes[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000};
    for (size_t i = 0; i < sizeof bad_codes / sizeof bad_codes[0]; i++) {
        p[0] = (unsigned char)(bad_codes[i] >> 8);
        p[1] = (unsigned char)bad_codes[i];
        code = 0;
        assert_int_equal(ahg_ws_close_parse(p, 2, &code, &reason, &rlen), AHG_EPROTO);
        assert_int_equal(code, 1002);
    }

    p[0] = 0x03;
    p[1] = 0xe8;
    static const unsigned char overlong[] = {'o', 'k', 0xc0, 0x80}; /* overlong NUL */
    memcpy(p + 2, overlong, sizeof overlong);
    assert_int_equal(ahg_ws_close_parse(p, 6, &code, &reason, &rlen), AHG_EPROTO);
    assert_int_equal(code, 1007);
    static const unsigned char truncated[] = {'o', 'k', 0xe2, 0x82};
    memcpy(p + 2, truncated, sizeof truncated);
    assert_int_equal(ahg_ws_close_parse(p, 6, &code, &reason, &rlen), AHG_EPROTO);
    assert_int_equal(code, 1007);

    memset(p + 2, 'a', 124);
    assert_int_equal(ahg_ws_close_parse(p, 125, &code, &reason, &rlen), AHG_OK);
    assert_int_equal(rlen, 123);
    assert_int_equal(ahg_ws_close_parse(p, 126, &code, &reason, &rlen), AHG_EPROTO);
    assert_int_equal(code, 1002);

    assert_int_equal(ahg_ws_close_parse(NULL, 2, &code, &reason, &rlen), AHG_EINVAL);
    assert_int_equal(ahg_ws_close_parse(p, 2, NULL, &reason, &rlen), AHG_EINVAL);
    assert_int_equal(ahg_ws_close_parse(p, 2, &code, NULL, &rlen), AHG_EINVAL);
    assert_int_equal(ahg_ws_close_parse(p, 2, &code, &reason, NULL), AHG_EINVAL);
}

/* ------------------------------------------------------------------------------------------- */
/* Handshake keys */

static void
test_ws_accept_key_rfc_vector(void **state)
{
    (void)state;
    char out[AHG_WS_ACCEPT_LEN + 1];
    assert_int_equal(ahg_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), AHG_OK);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    /* a second well-known pair (RFC 6455 section 4.2.2 style, from a 16-byte zero nonce) */
    assert_int_equal(ahg_ws_accept_key("AAAAAAAAAAAAAAAAAAAAAA==", out), AHG_OK);
    assert_int_equal(strlen(out), AHG_WS_ACCEPT_LEN);
    assert_string_not_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

    memcpy(out, "garbage", 8);
    assert_int_equal(ahg_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ", out), AHG_EINVAL);
    assert_string_equal(out, "");
    assert_int_equal(ahg_ws_accept_key(NULL, out), AHG_EINVAL);
    assert_int_equal(ahg_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", NULL), AHG_EINVAL);
}

static void
test_ws_key_validation(void **state)
{
    (void)state;
    assert_true(ahg_ws_key_is_valid("dGhlIHNhbXBsZSBub25jZQ=="));
    assert_true(ahg_ws_key_is_valid("AAAAAAAAAAAAAAAAAAAAAA=="));
    assert_true(ahg_ws_key_is_valid("+/+/+/+/+/+/+/+/+/+/+w=="));
    assert_false(ahg_ws_key_is_valid(NULL));
    assert_false(ahg_ws_key_is_valid(""));
    assert_false(ahg_ws_key_is_valid("dGhlIHNhbXBsZSBub25jZQ")); /* no padding */
    assert_false(ahg_ws_key_is_valid("dGhlIHNhbXBsZSBub25jZQ=="
                                     "x"));                         /* too long */
    assert_false(ahg_ws_key_is_valid(" dGhlIHNhbXBsZSBub25jZQ==")); /* whitespace */
    assert_false(ahg_ws_key_is_valid("dGhlIHNhbXBsZSBub25jZQ== "));
    assert_false(ahg_ws_key_is_valid("dGhlIHNhbXBsZSBub25jZ===")); /* 15 bytes */
    assert_false(ahg_ws_key_is_valid("dGhlIHNhbXBsZSBub25jZQAA")); /* 18 bytes */
    assert_false(ahg_ws_key_is_valid("dGhlIHNhbXBsZSBub25jZ-==")); /* url alphabet */
    assert_false(ahg_ws_key_is_valid("dGhlIHNhbXBsZSBub25jZR==")); /* non-canonical bits */
    assert_false(ahg_ws_key_is_valid("dGhlIHNhbXBsZSBub25j\x80Q=="));
}

static void
test_ws_client_key_is_random_and_valid(void **state)
{
    (void)state;
    char a[AHG_WS_KEY_LEN + 1], b[AHG_WS_KEY_LEN + 1];
    char acc[AHG_WS_ACCEPT_LEN + 1];
    assert_int_equal(ahg_ws_client_key(a), AHG_OK);
    assert_int_equal(ahg_ws_client_key(b), AHG_OK);
    assert_int_equal(strlen(a), AHG_WS_KEY_LEN);
    assert_true(ahg_ws_key_is_valid(a));
    assert_true(ahg_ws_key_is_valid(b));
    assert_string_not_equal(a, b);
    assert_int_equal(ahg_ws_accept_key(a, acc), AHG_OK);
    assert_int_equal(strlen(acc), AHG_WS_ACCEPT_LEN);
    assert_int_equal(ahg_ws_client_key(NULL), AHG_EINVAL);
}

/* ------------------------------------------------------------------------------------------- */
/* UTF-8 */

struct utf8_case {
    const char *s;
    size_t n;
    bool valid;
};

#define U8(lit, ok)                                                                                \
    {                                                                                              \
        lit, sizeof(lit) - 1, ok                                                                   \
    }

static const struct utf8_case utf8_cases[] = {
    U8("", true),
    U8("plain ascii", true),
    U8("nul\0inside", true),
    U8("\xc2\x80", true),                                     /* U+0080 */
    U8("\xdf\xbf", true),                                     /* U+07FF */
    U8("\xe0\xa0\x80", true),                                 /* U+0800 */
    U8("\xed\x9f\xbf", true),                                 /* U+D7FF */
    U8("\xee\x80\x80", true),                                 /* U+E000 */
    U8("\xef\xbf\xbf", true),                                 /* U+FFFF */
    U8("\xf0\x90\x80\x80", true),                             /* U+10000 */
    U8("\xf4\x8f\xbf\xbf", true),                             /* U+10FFFF */
    U8("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", true), /* kosme */
    U8("\xc0\x80", false),                                    /* overlong NUL */
    U8("\xc1\xbf", false),                                    /* overlong U+007F */
    U8("\xe0\x80\x80", false),                                /* overlong 3-byte */
    U8("\xe0\x9f\xbf", false),                                /* overlong U+07FF */
    U8("\xf0\x80\x80\x80", false),                            /* overlong 4-byte */
    U8("\xf0\x8f\xbf\xbf", false),                            /* overlong U+FFFF */
    U8("\xed\xa0\x80", false),                                /* U+D800 surrogate */
    U8("\xed\xbf\xbf", false),                                /* U+DFFF surrogate */
    U8("\xed\xa0\x80\xed\xb0\x80", false),                    /* surrogate pair encoded as CESU-8 */
    U8("\xf4\x90\x80\x80", false),                            /* U+110000 */
    U8("\xf5\x80\x80\x80", false),                            /* lead byte F5 */
    U8("\xfe", false),
    U8("\xff", false),
    U8("\x80", false), /* stray continuation */
    U8("a\xbf"
       "b",
       false),
    U8("\xc2", false), /* truncated */
    U8("\xe2\x82", false),
    U8("\xf0\x90\x80", false),
    U8("\xc2"
       "a",
       false), /* continuation missing */
    U8("\xe2\x82"
       "a",
       false),
    U8("ok\xce\xba\xe1\xbd", false), /* truncated at the end */
};

static void
test_ws_utf8_validator(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof utf8_cases / sizeof utf8_cases[0]; i++) {
        const struct utf8_case *c = &utf8_cases[i];
        const unsigned char *s = (const unsigned char *)c->s;
        if (ahg_ws_utf8_valid(s, c->n) != c->valid)
            print_error("utf8 case %zu\n", i);
        assert_int_equal(ahg_ws_utf8_valid(s, c->n), c->valid);

        /* every two-piece split and byte-by-byte feeding give the same answer */
        for (size_t cut = 0; cut <= c->n; cut++) {
            struct ahg_ws_utf8 u;
            ahg_ws_utf8_init(&u);
            bool ok = ahg_ws_utf8_feed(&u, s, cut);
            ok = ahg_ws_utf8_feed(&u, s + cut, c->n - cut) && ok;
            assert_int_equal(ok && ahg_ws_utf8_done(&u), c->valid);
        }
        struct ahg_ws_utf8 u = {0};
        bool ok = true;
        for (size_t k = 0; k < c->n; k++)
            ok = ahg_ws_utf8_feed(&u, s + k, 1) && ok;
        assert_int_equal(ok && ahg_ws_utf8_done(&u), c->valid);
    }
    assert_true(ahg_ws_utf8_valid(NULL, 0));
}

static void
test_ws_utf8_incremental_fails_fast_and_sticks(void **state)
{
    (void)state;
    struct ahg_ws_utf8 u;
    ahg_ws_utf8_init(&u);
    assert_true(ahg_ws_utf8_feed(&u, (const unsigned char *)"\xe2", 1));
    assert_false(ahg_ws_utf8_done(&u)); /* incomplete, but still a valid prefix */
    assert_true(ahg_ws_utf8_feed(&u, (const unsigned char *)"\x82", 1));
    assert_true(ahg_ws_utf8_feed(&u, (const unsigned char *)"\xac", 1));
    assert_true(ahg_ws_utf8_done(&u));
    /* the first impossible byte fails at once, and the failure sticks */
    assert_false(ahg_ws_utf8_feed(&u, (const unsigned char *)"\xed\xa0", 2));
    assert_false(ahg_ws_utf8_feed(&u, (const unsigned char *)"abc", 3));
    assert_false(ahg_ws_utf8_done(&u));
    ahg_ws_utf8_init(&u);
    assert_true(ahg_ws_utf8_done(&u));
    assert_true(ahg_ws_utf8_feed(&u, (const unsigned char *)"abc", 3));
    assert_false(ahg_ws_utf8_feed(NULL, (const unsigned char *)"a", 1));
    assert_false(ahg_ws_utf8_done(NULL));
    assert_false(ahg_ws_utf8_feed(&u, NULL, 1));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ws_parse_rfc_unmasked_text),
        cmocka_unit_test(test_ws_parse_rfc_masked_text_server),
        cmocka_unit_test(test_ws_parse_rfc_fragmented_text),
        cmocka_unit_test(test_ws_parse_rfc_ping_pong),
        cmocka_unit_test(test_ws_parse_rfc_16bit_and_64bit_lengths),
        cmocka_unit_test(test_ws_parse_masked_large_payload_in_bounded_pieces),
        cmocka_unit_test(test_ws_parse_nonminimal_length_accepted),
        cmocka_unit_test(test_ws_parse_empty_frames_and_control_inside_message),
        cmocka_unit_test(test_ws_parse_bytewise_equals_whole_client),
        cmocka_unit_test(test_ws_parse_bytewise_equals_whole_server),
        cmocka_unit_test(test_ws_parse_protocol_errors_have_close_codes),
        cmocka_unit_test(test_ws_parse_error_stops_before_bad_frame),
        cmocka_unit_test(test_ws_parse_frame_over_max_is_1009),
        cmocka_unit_test(test_ws_parse_message_over_max_is_1009),
        cmocka_unit_test(test_ws_parse_text_utf8_validation),
        cmocka_unit_test(test_ws_parse_pause_in_data_and_resume),
        cmocka_unit_test(test_ws_parse_pause_at_begin_delivers_rest_on_empty_feed),
        cmocka_unit_test(test_ws_parse_callback_error_is_returned_and_sticky),
        cmocka_unit_test(test_ws_parse_close_stops_the_parser),
        cmocka_unit_test(test_ws_parser_new_and_feed_reject_bad_arguments),
        cmocka_unit_test(test_ws_frame_header_encodings),
        cmocka_unit_test(test_ws_frame_header_round_trips_through_parser),
        cmocka_unit_test(test_ws_mask_rfc_example_and_offsets),
        cmocka_unit_test(test_ws_frame_write_whole_frames),
        cmocka_unit_test(test_ws_mask_key_is_random),
        cmocka_unit_test(test_ws_close_payload_round_trip),
        cmocka_unit_test(test_ws_close_payload_truncates_at_utf8_boundary),
        cmocka_unit_test(test_ws_close_payload_rejects_invalid),
        cmocka_unit_test(test_ws_close_parse_rejects_invalid),
        cmocka_unit_test(test_ws_accept_key_rfc_vector),
        cmocka_unit_test(test_ws_key_validation),
        cmocka_unit_test(test_ws_client_key_is_random_and_valid),
        cmocka_unit_test(test_ws_utf8_validator),
        cmocka_unit_test(test_ws_utf8_incremental_fails_fast_and_sticks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
