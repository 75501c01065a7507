#include "ahg/hcmsg.h"
#include "ahg/err.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* ---- helpers ------------------------------------------------------------------ */

static int
parse_str(const char *json, struct ahg_hcmsg *m)
{
    return ahg_hcmsg_parse(json, strlen(json), m);
}

/* Parse json, expect rc, and check that a failed parse leaves nothing behind. */
static void
expect_parse(const char *json, int rc)
{
    struct ahg_hcmsg m;
    int got = parse_str(json, &m);
    if (got != rc)
        print_error("parse of %s returned %d, expected %d\n", json, got, rc);
    assert_int_equal(got, rc);
    if (rc != AHG_OK) {
        assert_int_equal(m.type, AHG_HCMSG_NONE);
        assert_null(m.address);
        assert_null(m.headers);
        assert_int_equal(m.nheaders, 0);
        assert_int_equal(m.body, -1);
    }
    ahg_hcmsg_clear(&m);
}

static void
assert_str_or_null(const char *a, const char *b)
{
    if (!a || !b)
        assert_ptr_equal(a, b);
    else
        assert_string_equal(a, b);
}

static void
assert_msg_equal(const struct ahg_hcmsg *a, const struct ahg_hcmsg *b)
{
    assert_int_equal(a->type, b->type);
    assert_str_or_null(a->address, b->address);
    assert_str_or_null(a->id, b->id);
    assert_str_or_null(a->request_target, b->request_target);
    assert_str_or_null(a->method, b->method);
    assert_str_or_null(a->remote_address, b->remote_address);
    assert_int_equal(a->remote_port, b->remote_port);
    assert_int_equal(a->nheaders, b->nheaders);
    for (size_t i = 0; i < a->nheaders; i++) {
        assert_string_equal(a->headers[i].name, b->headers[i].name);
        assert_string_equal(a->headers[i].value, b->headers[i].value);
    }
    assert_int_equal(a->body, b->body);
    assert_str_or_null(a->request_id, b->request_id);
    assert_int_equal(a->status_code, b->status_code);
    assert_str_or_null(a->status_description, b->status_description);
    assert_str_or_null(a->token, b->token);
}

/* encode m, expect exactly `expected`, parse it back and compare with m. */
static void
assert_encodes_to(const struct ahg_hcmsg *m, const char *expected)
{
    char *out = NULL;
    size_t len = 0;
    struct ahg_hcmsg back;

    assert_int_equal(ahg_hcmsg_encode(m, &out, &len), AHG_OK);
    assert_non_null(out);
    assert_string_equal(out, expected);
    assert_int_equal(len, strlen(expected));
    assert_int_equal(ahg_hcmsg_parse(out, len, &back), AHG_OK);
    assert_msg_equal(&back, m);
    ahg_hcmsg_clear(&back);
    free(out);
}

/* parse json, encode the result, parse again: both parses must agree. */
static void
assert_parse_roundtrip(const char *json)
{
    struct ahg_hcmsg a, b;
    char *out = NULL;
    size_t len = 0;

    assert_int_equal(parse_str(json, &a), AHG_OK);
    assert_int_equal(ahg_hcmsg_encode(&a, &out, &len), AHG_OK);
    assert_int_equal(ahg_hcmsg_parse(out, len, &b), AHG_OK);
    assert_msg_equal(&a, &b);
    ahg_hcmsg_clear(&a);
    ahg_hcmsg_clear(&b);
    free(out);
}

static void
set_headers(struct ahg_hcmsg *m, const char *const *kv, size_t n)
{
    m->headers = calloc(n, sizeof(*m->headers));
    assert_non_null(m->headers);
    for (size_t i = 0; i < n; i++) {
        m->headers[i].name = strdup(kv[2 * i]);
        m->headers[i].value = strdup(kv[2 * i + 1]);
        assert_non_null(m->headers[i].name);
        assert_non_null(m->headers[i].value);
    }
    m->nheaders = n;
}

static char *
xstrdup(const char *s)
{
    char *d = strdup(s);
    assert_non_null(d);
    return d;
}

/* ---- the documented examples ---------------------------------------------------- */

/* hc-protocol.md 2.1 (with the placeholders filled in). */
static const char doc_accept[] =
    "{ \"accept\": {\n"
    "    \"address\": "
    "\"wss://g63-prod-xxx-001-sb.servicebus.windows.net:443/$hc/myhc?sb-hc-action=accept&sb-hc-id="
    "abc_G0_G1\",\n"
    "    \"id\": \"abc_G0_G1\",\n"
    "    \"connectHeaders\": { \"Sec-WebSocket-Key\": \"l8fWd829IrZbEqUcLejv+Q==\", "
    "\"Sec-WebSocket-Version\": \"13\",\n"
    "                        \"Sec-WebSocket-Protocol\": \"wssubprotocol\", "
    "\"Sec-WebSocket-Extensions\": \"permessage-deflate\",\n"
    "                        \"Connection\": \"Upgrade\", \"Upgrade\": \"websocket\", \"Host\": "
    "\"contoso.servicebus.windows.net:443\",\n"
    "                        \"X-Custom\": \"v\" },\n"
    "    \"remoteEndpoint\": { \"address\": \"10.0.0.1\", \"port\": 1234 } } }";

static void
test_hcmsg_parse_doc_accept(void **state)
{
    struct ahg_hcmsg m;
    static const char *const names[] = {"Sec-WebSocket-Key",
                                        "Sec-WebSocket-Version",
                                        "Sec-WebSocket-Protocol",
                                        "Sec-WebSocket-Extensions",
                                        "Connection",
                                        "Upgrade",
                                        "Host",
                                        "X-Custom"};
    (void)state;

    assert_int_equal(parse_str(doc_accept, &m), AHG_OK);
    assert_int_equal(m.type, AHG_HCMSG_ACCEPT);
    assert_string_equal(m.address, "wss://g63-prod-xxx-001-sb.servicebus.windows.net:443/$hc/"
                                   "myhc?sb-hc-action=accept&sb-hc-id=abc_G0_G1");
    assert_string_equal(m.id, "abc_G0_G1");
    assert_string_equal(m.remote_address, "10.0.0.1");
    assert_int_equal(m.remote_port, 1234);
    assert_int_equal(m.nheaders, 8);
    for (size_t i = 0; i < 8; i++)
        assert_string_equal(m.headers[i].name, names[i]); /* order and case kept */
    assert_string_equal(m.headers[0].value, "l8fWd829IrZbEqUcLejv+Q==");
    assert_string_equal(m.headers[6].value, "contoso.servicebus.windows.net:443");
    assert_int_equal(m.body, -1);
    assert_null(m.method);
    assert_false(ahg_hcmsg_is_rendezvous_only(&m));
    ahg_hcmsg_clear(&m);
    assert_parse_roundtrip(doc_accept);
}

/* hc-protocol.md 3.2. */
static const char doc_request[] =
    "{ \"request\": {\n"
    "    \"address\": \"wss://gw.servicebus.windows.net:443/$hc/myhc?sb-hc-action=request&sb-hc-id="
    "42c34cb5-7a04-4d40-a19f-bdc66441e736_G10\",\n"
    "    \"id\": \"42c34cb5-7a04-4d40-a19f-bdc66441e736_G10\",\n"
    "    \"requestTarget\": \"/myhc/abc/def?myarg=value\",\n"
    "    \"method\": \"GET\",\n"
    "    \"remoteEndpoint\": { \"address\": \"10.0.0.1\", \"port\": 1234 },\n"
    "    \"requestHeaders\": { \"Content-Type\": \"text/plain\", \"User-Agent\": \"curl/8\", "
    "\"X-Custom\": \"a, b\" },\n"
    "    \"body\": true } }";

static void
test_hcmsg_parse_doc_request(void **state)
{
    struct ahg_hcmsg m;
    (void)state;

    assert_int_equal(parse_str(doc_request, &m), AHG_OK);
    assert_int_equal(m.type, AHG_HCMSG_REQUEST);
    assert_string_equal(m.id, "42c34cb5-7a04-4d40-a19f-bdc66441e736_G10");
    assert_string_equal(m.request_target, "/myhc/abc/def?myarg=value");
    assert_string_equal(m.method, "GET");
    assert_string_equal(m.remote_address, "10.0.0.1");
    assert_int_equal(m.remote_port, 1234);
    assert_int_equal(m.body, 1);
    assert_int_equal(m.nheaders, 3);
    assert_string_equal(m.headers[0].name, "Content-Type");
    assert_string_equal(m.headers[1].name, "User-Agent");
    assert_string_equal(m.headers[2].name, "X-Custom");
    assert_string_equal(m.headers[2].value, "a, b");
    assert_false(ahg_hcmsg_is_rendezvous_only(&m));
    ahg_hcmsg_clear(&m);
    assert_parse_roundtrip(doc_request);
}

/* hc-protocol.md 3.4 and the .NET inline sample (statusCode as the string "200"). */
static void
test_hcmsg_parse_doc_response(void **state)
{
    struct ahg_hcmsg m;
    static const char doc[] =
        "{ \"response\": { \"requestId\": \"42c34cb5\", \"statusCode\": 200,\n"
        "                \"statusDescription\": \"OK\",\n"
        "                \"responseHeaders\": { \"Content-Type\": "
        "\"application/json\" },\n"
        "                \"body\": true } }";
    static const char net_sample[] =
        "{\"response\":{\"requestId\":\"42c34cb5\",\"statusCode\":\"200\",\"statusDescription\":"
        "\"OK\",\"responseHeaders\":{\"Content-Type\":\"application/json\",\"Content-Encoding\":"
        "\"gzip\"},\"body\":true}}";
    (void)state;

    assert_int_equal(parse_str(doc, &m), AHG_OK);
    assert_int_equal(m.type, AHG_HCMSG_RESPONSE);
    assert_string_equal(m.request_id, "42c34cb5");
    assert_int_equal(m.status_code, 200);
    assert_string_equal(m.status_description, "OK");
    assert_int_equal(m.nheaders, 1);
    assert_string_equal(ahg_hcmsg_header_get(&m, "content-type"), "application/json");
    assert_int_equal(m.body, 1);
    ahg_hcmsg_clear(&m);
    assert_parse_roundtrip(doc);

    assert_int_equal(parse_str(net_sample, &m), AHG_OK);
    assert_int_equal(m.status_code, 200);
    assert_int_equal(m.nheaders, 2);
    assert_string_equal(m.headers[1].name, "Content-Encoding");
    ahg_hcmsg_clear(&m);
}

/* hc-protocol.md 4 and the .NET inline sample. */
static void
test_hcmsg_parse_doc_renew_token(void **state)
{
    struct ahg_hcmsg m;
    static const char doc[] = "{\"renewToken\":{\"token\":\"SharedAccessSignature "
                              "sr=http%3a%2f%2fcontoso.servicebus.windows.net%2fHybridConnection1%"
                              "2f&sig=XXXXXXXXXX%3d&se=1471633754&skn=SasKeyName\"}}";
    (void)state;

    assert_int_equal(parse_str(doc, &m), AHG_OK);
    assert_int_equal(m.type, AHG_HCMSG_RENEW_TOKEN);
    assert_string_equal(m.token, "SharedAccessSignature "
                                 "sr=http%3a%2f%2fcontoso.servicebus.windows.net%"
                                 "2fHybridConnection1%2f&sig=XXXXXXXXXX%3d&se=1471633754&skn="
                                 "SasKeyName");
    ahg_hcmsg_clear(&m);
    assert_parse_roundtrip(doc);
}

/* .NET DataContract output: alphabetical keys, "\/" escapes, no responseHeaders,
 * statusCode as a string in some shapes. */
static void
test_hcmsg_parse_dotnet_shapes(void **state)
{
    struct ahg_hcmsg m;
    static const char resp[] = "{\"response\":{\"body\":false,\"requestId\":\"r-1_G5\","
                               "\"statusCode\":\"200\",\"statusDescription\":\"OK\"}}";
    static const char acc[] =
        "{\"accept\":{\"address\":\"wss:\\/\\/gw.servicebus.windows.net:443\\/$hc\\/"
        "myhc?sb-hc-action=accept&sb-hc-id=x\",\"connectHeaders\":{\"Host\":\"ns:443\","
        "\"Sec-WebSocket-Key\":\"k==\"},\"id\":\"x\"}}";
    static const char req[] =
        "{\"request\":{\"address\":\"wss:\\/\\/gw\\/$hc\\/h?sb-hc-action=request\","
        "\"body\":false,\"id\":\"i1\",\"method\":\"DELETE\",\"requestHeaders\":{\"Accept\":"
        "\"*\\/*\"},\"requestTarget\":\"\\/h\\/a?b=c\"}}";
    (void)state;

    assert_int_equal(parse_str(resp, &m), AHG_OK);
    assert_int_equal(m.type, AHG_HCMSG_RESPONSE);
    assert_int_equal(m.body, 0);
    assert_string_equal(m.request_id, "r-1_G5");
    assert_int_equal(m.status_code, 200);
    assert_string_equal(m.status_description, "OK");
    assert_int_equal(m.nheaders, 0);
    assert_null(m.headers);
    ahg_hcmsg_clear(&m);

    assert_int_equal(parse_str(acc, &m), AHG_OK);
    assert_string_equal(
        m.address, "wss://gw.servicebus.windows.net:443/$hc/myhc?sb-hc-action=accept&sb-hc-id=x");
    assert_string_equal(m.id, "x");
    assert_int_equal(m.remote_port, -1);
    assert_null(m.remote_address);
    assert_string_equal(ahg_hcmsg_header_get(&m, "sec-websocket-key"), "k==");
    ahg_hcmsg_clear(&m);

    assert_int_equal(parse_str(req, &m), AHG_OK);
    assert_string_equal(m.address, "wss://gw/$hc/h?sb-hc-action=request");
    assert_string_equal(m.request_target, "/h/a?b=c");
    assert_string_equal(m.method, "DELETE");
    assert_string_equal(ahg_hcmsg_header_get(&m, "accept"), "*/*");
    assert_int_equal(m.body, 0);
    ahg_hcmsg_clear(&m);
}

/* hyco-https: lower-cased header names, integer header values, Node reason phrases. */
static void
test_hcmsg_parse_hyco_response(void **state)
{
    struct ahg_hcmsg m;
    static const char json[] =
        "{\"response\":{\"requestId\":\"id-7\",\"statusCode\":201,\"statusDescription\":"
        "\"Created\",\"responseHeaders\":{\"content-type\":\"text/plain\",\"x-count\":5,"
        "\"x-neg\":-12},\"body\":true}}";
    (void)state;

    assert_int_equal(parse_str(json, &m), AHG_OK);
    assert_int_equal(m.status_code, 201);
    assert_string_equal(m.status_description, "Created");
    assert_int_equal(m.nheaders, 3);
    assert_string_equal(m.headers[0].name, "content-type");
    assert_string_equal(ahg_hcmsg_header_get(&m, "Content-Type"), "text/plain");
    assert_string_equal(ahg_hcmsg_header_get(&m, "X-Count"), "5");
    assert_string_equal(ahg_hcmsg_header_get(&m, "X-NEG"), "-12");
    ahg_hcmsg_clear(&m);
}

/* ---- parsing rules -------------------------------------------------------------- */

static void
test_hcmsg_parse_key_order_irrelevant(void **state)
{
    struct ahg_hcmsg a, b;
    static const char reordered[] =
        "{\"request\":{\"body\":true,\"requestHeaders\":{\"Content-Type\":\"text/plain\","
        "\"User-Agent\":\"curl/8\",\"X-Custom\":\"a, b\"},\"remoteEndpoint\":{\"port\":1234,"
        "\"address\":\"10.0.0.1\"},\"method\":\"GET\",\"requestTarget\":\"/myhc/abc/"
        "def?myarg=value\",\"id\":\"42c34cb5-7a04-4d40-a19f-bdc66441e736_G10\",\"address\":\"wss:"
        "//gw.servicebus.windows.net:443/$hc/myhc?sb-hc-action=request&sb-hc-id=42c34cb5-7a04-"
        "4d40-a19f-bdc66441e736_G10\"}}";
    (void)state;

    assert_int_equal(parse_str(doc_request, &a), AHG_OK);
    assert_int_equal(parse_str(reordered, &b), AHG_OK);
    assert_msg_equal(&a, &b);
    ahg_hcmsg_clear(&a);
    ahg_hcmsg_clear(&b);
}

static void
test_hcmsg_parse_decodes_escapes(void **state)
{
    struct ahg_hcmsg m;
    static const char json[] =
        "{\"response\":{\"requestId\":\"caf\\u00e9\\/\\ud83d\\ude00\",\"statusCode\":200,"
        "\"statusDescription\":\"tab\\there \\\"q\\\" \\\\\",\"responseHeaders\":{\"X-\\u0041\":"
        "\"\\u00e9t\\u00e9\"}}}";
    (void)state;

    assert_int_equal(parse_str(json, &m), AHG_OK);
    assert_string_equal(m.request_id, "caf\xc3\xa9/\xf0\x9f\x98\x80");
    assert_string_equal(m.status_description, "tab\there \"q\" \\");
    assert_string_equal(m.headers[0].name, "X-A");
    assert_string_equal(m.headers[0].value, "\xc3\xa9t\xc3\xa9");
    assert_int_equal(m.body, -1);
    ahg_hcmsg_clear(&m);
    assert_parse_roundtrip(json);
}

static void
test_hcmsg_parse_ignores_unknown_fields(void **state)
{
    struct ahg_hcmsg m;
    static const char json[] =
        "{\"accept\":{\"future\":{\"a\":[1,2,{\"b\":null}]},\"address\":\"wss://h/a\","
        "\"statusCode\":\"not-for-accept\",\"id\":\"1\",\"remoteEndpoint\":{\"address\":\"::1\","
        "\"port\":0,\"family\":\"v6\"},\"x\":true,\"y\":3.5}}";
    (void)state;

    assert_int_equal(parse_str(json, &m), AHG_OK);
    assert_int_equal(m.type, AHG_HCMSG_ACCEPT);
    assert_string_equal(m.address, "wss://h/a");
    assert_string_equal(m.id, "1");
    assert_string_equal(m.remote_address, "::1");
    assert_int_equal(m.remote_port, 0);
    assert_int_equal(m.status_code, 0);
    ahg_hcmsg_clear(&m);
}

static void
test_hcmsg_parse_null_is_absent(void **state)
{
    struct ahg_hcmsg m;
    static const char json[] =
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":404,\"statusDescription\":null,"
        "\"responseHeaders\":null,\"body\":null}}";
    (void)state;

    assert_int_equal(parse_str(json, &m), AHG_OK);
    assert_null(m.status_description);
    assert_null(m.headers);
    assert_int_equal(m.body, -1);
    assert_int_equal(m.status_code, 404);
    ahg_hcmsg_clear(&m);
    /* ... but a required field given as null is missing. */
    expect_parse("{\"response\":{\"requestId\":null,\"statusCode\":404}}", AHG_EPROTO);
}

static void
test_hcmsg_parse_rejects_invalid_json(void **state)
{
    static const char *const bad[] = {
        "",
        "   ",
        "{",
        "{\"renewToken\":{\"token\":\"t\"}",
        "{\"renewToken\":{\"token\":\"t\"}}}",
        "{\"renewToken\":{\"token\":\"t\"}} x",
        "{\"renewToken\":{\"token\":\"t\",}}",
        "{renewToken:{\"token\":\"t\"}}",
        "{\"renewToken\":{\"token\":'t'}}",
        "{\"renewToken\":{\"token\":\"t\\x\"}}",
        "{\"renewToken\":{\"token\":\"\\ud800\"}}",
        "{\"renewToken\":{\"token\":\"t",
        "{\"renewToken\":{\"token\":\"a\\",
        "null",
        "[]",
        "\"renewToken\"",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_parse(bad[i], AHG_EPROTO);
}

static void
test_hcmsg_parse_rejects_bad_envelope(void **state)
{
    (void)state;
    expect_parse("{}", AHG_EPROTO);
    expect_parse("{\"injectFault\":{\"delay\":\"00:01:00\"}}", AHG_EPROTO);
    expect_parse("{\"RenewToken\":{\"token\":\"t\"}}", AHG_EPROTO); /* keys are case-sensitive */
    expect_parse("{\"renewToken\":{\"token\":\"t\"},\"renewToken\":{\"token\":\"u\"}}", AHG_EPROTO);
    expect_parse("{\"renewToken\":{\"token\":\"t\"},\"other\":1}", AHG_EPROTO);
    expect_parse("{\"renewToken\":\"t\"}", AHG_EPROTO);
    expect_parse("{\"renewToken\":[{\"token\":\"t\"}]}", AHG_EPROTO);
    expect_parse("{\"renewToken\":null}", AHG_EPROTO);
    expect_parse("{\"renewToken\":{\"token\":\"t\"}}", AHG_OK);
}

static void
test_hcmsg_parse_rejects_wrong_types(void **state)
{
    static const char *const bad[] = {
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":200,\"body\":\"yes\"}}",
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":200,\"body\":1}}",
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":{}}}",
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":[200]}}",
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":true}}",
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":200.5}}",
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":99}}",
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":1000}}",
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":-200}}",
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":1e300}}",
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":\"20x\"}}",
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":\"2000\"}}",
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":\" 200\"}}",
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":\"099\"}}",
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":\"\"}}",
        "{\"response\":{\"requestId\":42,\"statusCode\":200}}",
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":200,\"statusDescription\":1}}",
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":200,\"responseHeaders\":[]}}",
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":200,\"responseHeaders\":\"a: b\"}}",
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":200,\"responseHeaders\":{\"a\":true}}}",
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":200,\"responseHeaders\":{\"a\":null}}}",
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":200,\"responseHeaders\":{\"a\":{}}}}",
        "{\"accept\":{\"address\":\"a\",\"id\":\"i\",\"connectHeaders\":{\"a\":[\"x\"]}}}",
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":200,\"responseHeaders\":{\"a\":1.5}}}",
        "{\"accept\":{\"address\":7,\"id\":\"i\"}}",
        "{\"accept\":{\"address\":\"a\",\"id\":\"i\",\"connectHeaders\":true}}",
        "{\"accept\":{\"address\":\"a\",\"id\":\"i\",\"remoteEndpoint\":\"10.0.0.1:1\"}}",
        "{\"accept\":{\"address\":\"a\",\"id\":\"i\",\"remoteEndpoint\":{\"port\":\"1\"}}}",
        "{\"accept\":{\"address\":\"a\",\"id\":\"i\",\"remoteEndpoint\":{\"port\":70000}}}",
        "{\"accept\":{\"address\":\"a\",\"id\":\"i\",\"remoteEndpoint\":{\"port\":-1}}}",
        "{\"accept\":{\"address\":\"a\",\"id\":\"i\",\"remoteEndpoint\":{\"port\":1.5}}}",
        "{\"accept\":{\"address\":\"a\",\"id\":\"i\",\"remoteEndpoint\":{\"address\":1}}}",
        "{\"renewToken\":{\"token\":false}}",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_parse(bad[i], AHG_EPROTO);
}

static void
test_hcmsg_parse_status_code_forms(void **state)
{
    struct ahg_hcmsg m;
    (void)state;

    assert_int_equal(parse_str("{\"response\":{\"requestId\":\"r\",\"statusCode\":\"999\"}}", &m),
                     AHG_OK);
    assert_int_equal(m.status_code, 999);
    ahg_hcmsg_clear(&m);
    assert_int_equal(parse_str("{\"response\":{\"requestId\":\"r\",\"statusCode\":100.0}}", &m),
                     AHG_OK);
    assert_int_equal(m.status_code, 100);
    ahg_hcmsg_clear(&m);
    assert_int_equal(parse_str("{\"response\":{\"requestId\":\"r\",\"statusCode\":418}}", &m),
                     AHG_OK);
    assert_int_equal(m.status_code, 418);
    ahg_hcmsg_clear(&m);
}

static void
test_hcmsg_parse_rejects_duplicate_known_keys(void **state)
{
    (void)state;
    expect_parse("{\"response\":{\"requestId\":\"r\",\"statusCode\":200,\"statusCode\":500}}",
                 AHG_EPROTO);
    expect_parse("{\"renewToken\":{\"token\":\"a\",\"token\":\"b\"}}", AHG_EPROTO);
    expect_parse("{\"renewToken\":{\"token\":\"a\",\"token\":null}}", AHG_EPROTO);
    expect_parse("{\"accept\":{\"address\":\"a\",\"id\":\"i\",\"remoteEndpoint\":{\"port\":1,"
                 "\"port\":2}}}",
                 AHG_EPROTO);
    /* unknown keys may repeat */
    expect_parse("{\"renewToken\":{\"token\":\"a\",\"x\":1,\"x\":2}}", AHG_OK);
}

static void
test_hcmsg_parse_duplicate_header_names_kept(void **state)
{
    struct ahg_hcmsg m;
    static const char json[] = "{\"response\":{\"requestId\":\"r\",\"statusCode\":200,"
                               "\"responseHeaders\":{\"X-A\":\"1\",\"x-a\":\"2\",\"X-A\":\"3\"}}}";
    (void)state;

    assert_int_equal(parse_str(json, &m), AHG_OK);
    assert_int_equal(m.nheaders, 3);
    assert_string_equal(m.headers[1].name, "x-a");
    assert_string_equal(m.headers[2].value, "3");
    assert_string_equal(ahg_hcmsg_header_get(&m, "x-A"), "1"); /* first match */
    ahg_hcmsg_clear(&m);
}

static void
test_hcmsg_parse_rejects_missing_required(void **state)
{
    static const char *const bad[] = {
        "{\"accept\":{\"id\":\"i\"}}",
        "{\"accept\":{\"address\":\"a\"}}",
        "{\"accept\":{\"address\":\"\",\"id\":\"i\"}}",
        "{\"accept\":{\"address\":\"a\",\"id\":\"\"}}",
        "{\"request\":{}}",
        "{\"request\":{\"id\":\"i\",\"requestTarget\":\"/\",\"method\":\"GET\",\"body\":false}}",
        /* no id; NOLINTNEXTLINE(bugprone-suspicious-missing-comma) */
        "{\"request\":{\"address\":\"a\",\"requestTarget\":\"/"
        "\",\"method\":\"GET\",\"body\":true}}",
        "{\"request\":{\"address\":\"a\",\"id\":\"i\",\"method\":\"GET\",\"body\":false}}",
        "{\"request\":{\"address\":\"a\",\"id\":\"i\",\"requestTarget\":\"\",\"method\":\"GET\","
        "\"body\":false}}",
        /* exactly one of method and body: .NET and hyco-https would disagree */
        "{\"request\":{\"address\":\"a\",\"id\":\"i\",\"requestTarget\":\"/\",\"method\":\"GET\"}}",
        "{\"request\":{\"address\":\"a\",\"id\":\"i\",\"requestTarget\":\"/\",\"body\":true}}",
        "{\"request\":{\"address\":\"a\",\"body\":false}}",
        "{\"response\":{\"statusCode\":200}}",
        "{\"response\":{\"requestId\":\"r\"}}",
        "{\"response\":{\"requestId\":\"\",\"statusCode\":200}}",
        "{\"renewToken\":{}}",
        "{\"renewToken\":{\"token\":\"\"}}",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_parse(bad[i], AHG_EPROTO);
}

static void
test_hcmsg_parse_rejects_embedded_nul(void **state)
{
    struct ahg_hcmsg m;
    static const char raw[] = "{\"renewToken\":{\"token\":\"a\0b\"}}";
    static const char ok_nul[] = "{\"renewToken\":{\"token\":\"ab\"}}";
    (void)state;

    expect_parse("{\"renewToken\":{\"token\":\"a\\u0000b\"}}", AHG_EPROTO);
    expect_parse("{\"renewToken\":{\"tok\\u0000en\":\"a\",\"token\":\"b\"}}", AHG_EPROTO);
    expect_parse("{\"renewToken\":{\"token\":\"a\",\"unknown\":\"\\u0000\"}}", AHG_EPROTO);
    /* an escaped backslash followed by u0000 is text, not a NUL */
    expect_parse("{\"renewToken\":{\"token\":\"a\\\\u0000\"}}", AHG_OK);
    /* a raw NUL byte inside the given length */
    assert_int_equal(ahg_hcmsg_parse(raw, sizeof(raw) - 1, &m), AHG_EPROTO);
    assert_null(m.token);
    /* a raw NUL byte outside strings, e.g. a terminator counted in len */
    assert_int_equal(ahg_hcmsg_parse(ok_nul, sizeof(ok_nul), &m), AHG_EPROTO);
    assert_int_equal(ahg_hcmsg_parse(ok_nul, sizeof(ok_nul) - 1, &m), AHG_OK);
    ahg_hcmsg_clear(&m);
    /* a raw control byte inside a string is invalid JSON */
    expect_parse("{\"renewToken\":{\"token\":\"a\nb\"}}", AHG_EPROTO);
    /* but whitespace between tokens is fine */
    expect_parse("{\n\t\"renewToken\" :\r\n{\"token\":\"ab\"}\n}\n", AHG_OK);
}

static void
test_hcmsg_parse_rejects_forbidden_chars(void **state)
{
    static const char *const bad[] = {
        /* CR/LF injection through header values, names and reason phrases */
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":200,\"responseHeaders\":{\"X-A\":"
        "\"v\\r\\nSet-Cookie: x=1\"}}}",
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":200,\"responseHeaders\":{\"X-A\\r\\nB\":"
        "\"v\"}}}",
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":200,\"responseHeaders\":{\"X A\":\"v\"}}"
        "}",
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":200,\"responseHeaders\":{\"X:A\":\"v\"}}"
        "}",
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":200,\"responseHeaders\":{\"\":\"v\"}}}",
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":200,\"responseHeaders\":{\"X-A\":"
        "\"\\u007f\"}}}",
        "{\"response\":{\"requestId\":\"r\",\"statusCode\":200,\"statusDescription\":\"OK\\r\\n\"}"
        "}",
        "{\"response\":{\"requestId\":\"r\\n\",\"statusCode\":200}}",
        "{\"request\":{\"address\":\"a\",\"id\":\"i\",\"requestTarget\":\"/a "
        "b\",\"method\":\"GET\","
        "\"body\":false}}",
        "{\"request\":{\"address\":\"a\",\"id\":\"i\",\"requestTarget\":\"/\",\"method\":\"GE T\","
        "\"body\":false}}",
        "{\"request\":{\"address\":\"a\",\"id\":\"i\",\"requestTarget\":\"/\",\"method\":\"G\\u00e9"
        "T\",\"body\":false}}",
        "{\"renewToken\":{\"token\":\"a\\tb\"}}",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_parse(bad[i], AHG_EPROTO);
    /* HTAB inside a header value and non-ASCII in a target are fine */
    expect_parse("{\"request\":{\"address\":\"a\",\"id\":\"i\",\"requestTarget\":\"/\\u00e9\","
                 "\"method\":\"GET\",\"requestHeaders\":{\"X-A\":\"a\\tb\"},\"body\":false}}",
                 AHG_OK);
}

static void
test_hcmsg_parse_size_limit(void **state)
{
    static const char head[] = "{\"renewToken\":{\"token\":\"";
    static const char tail[] = "\"}}";
    size_t max = AHG_HCMSG_MAX_LEN;
    char *buf = malloc(max + 2);
    struct ahg_hcmsg m;
    (void)state;

    assert_non_null(buf);
    /* a valid message of exactly AHG_HCMSG_MAX_LEN bytes */
    memcpy(buf, head, sizeof(head) - 1);
    memset(buf + sizeof(head) - 1, 'x', max - (sizeof(head) - 1) - (sizeof(tail) - 1));
    memcpy(buf + max - (sizeof(tail) - 1), tail, sizeof(tail) - 1);
    assert_int_equal(ahg_hcmsg_parse(buf, max, &m), AHG_OK);
    assert_int_equal(strlen(m.token), max - (sizeof(head) - 1) - (sizeof(tail) - 1));
    ahg_hcmsg_clear(&m);
    /* one trailing space more: 64 KiB + 1 */
    buf[max] = ' ';
    assert_int_equal(ahg_hcmsg_parse(buf, max + 1, &m), AHG_ELIMIT);
    assert_null(m.token);
    free(buf);
}

/* A response with n headers "H<i>": "v". Returns a malloc'd string. */
static char *
response_with_headers(size_t n)
{
    size_t cap = 128 + n * 16;
    char *buf = malloc(cap);
    size_t pos;

    assert_non_null(buf);
    pos = (size_t)snprintf(buf, cap,
                           "{\"response\":{\"requestId\":\"r\",\"statusCode\":200,"
                           "\"responseHeaders\":{");
    for (size_t i = 0; i < n; i++)
        pos += (size_t)snprintf(buf + pos, cap - pos, "%s\"H%zu\":\"v\"", i ? "," : "", i);
    (void)snprintf(buf + pos, cap - pos, "}}}");
    return buf;
}

static void
test_hcmsg_parse_header_count_limit(void **state)
{
    struct ahg_hcmsg m;
    char *ok = response_with_headers(AHG_HCMSG_MAX_HEADERS);
    char *over = response_with_headers(AHG_HCMSG_MAX_HEADERS + 1);
    (void)state;

    assert_int_equal(parse_str(ok, &m), AHG_OK);
    assert_int_equal(m.nheaders, AHG_HCMSG_MAX_HEADERS);
    assert_string_equal(m.headers[AHG_HCMSG_MAX_HEADERS - 1].name, "H255");
    ahg_hcmsg_clear(&m);
    assert_int_equal(parse_str(over, &m), AHG_ELIMIT);
    assert_null(m.headers);
    free(ok);
    free(over);
}

static void
test_hcmsg_parse_depth_limit(void **state)
{
    char buf[256];
    int pos;
    (void)state;

    /* envelope (1) + message (2) + unknown nesting up to the limit */
    pos = snprintf(buf, sizeof(buf), "{\"renewToken\":{\"token\":\"t\",\"x\":");
    for (int i = 0; i < AHG_HCMSG_MAX_DEPTH - 2; i++)
        buf[pos++] = '[';
    for (int i = 0; i < AHG_HCMSG_MAX_DEPTH - 2; i++)
        buf[pos++] = ']';
    (void)snprintf(buf + pos, sizeof(buf) - (size_t)pos, "}}");
    expect_parse(buf, AHG_OK);

    pos = snprintf(buf, sizeof(buf), "{\"renewToken\":{\"token\":\"t\",\"x\":");
    for (int i = 0; i < AHG_HCMSG_MAX_DEPTH - 1; i++)
        buf[pos++] = '[';
    for (int i = 0; i < AHG_HCMSG_MAX_DEPTH - 1; i++)
        buf[pos++] = ']';
    (void)snprintf(buf + pos, sizeof(buf) - (size_t)pos, "}}");
    expect_parse(buf, AHG_ELIMIT);

    /* brackets inside strings do not count */
    expect_parse("{\"renewToken\":{\"token\":\"[[[[[[[[[[[[[[[[[[[[{{{{{{{{{{{{{{{{{{{\"}}",
                 AHG_OK);
}

static void
test_hcmsg_parse_respects_len(void **state)
{
    struct ahg_hcmsg m;
    static const char json[] = "{\"renewToken\":{\"token\":\"t\"}}GARBAGE";
    (void)state;

    assert_int_equal(ahg_hcmsg_parse(json, sizeof(json) - 1 - 7, &m), AHG_OK);
    assert_string_equal(m.token, "t");
    ahg_hcmsg_clear(&m);
    assert_int_equal(ahg_hcmsg_parse(json, 10, &m), AHG_EPROTO);
    assert_int_equal(ahg_hcmsg_parse(json, sizeof(json) - 1, &m), AHG_EPROTO);
}

static void
test_hcmsg_parse_invalid_args(void **state)
{
    struct ahg_hcmsg m;
    (void)state;

    assert_int_equal(ahg_hcmsg_parse(NULL, 3, &m), AHG_EINVAL);
    assert_int_equal(m.type, AHG_HCMSG_NONE);
    assert_int_equal(ahg_hcmsg_parse("{}", 2, NULL), AHG_EINVAL);
}

static void
test_hcmsg_parse_failure_frees_partial(void **state)
{
    struct ahg_hcmsg m;
    /* address, id and two headers are allocated before the bad header value */
    static const char json[] =
        "{\"accept\":{\"address\":\"a\",\"id\":\"i\",\"remoteEndpoint\":{\"address\":\"x\"},"
        "\"connectHeaders\":{\"A\":\"1\",\"B\":\"2\",\"C\":false}}}";
    (void)state;

    assert_int_equal(parse_str(json, &m), AHG_EPROTO);
    assert_null(m.address);
    assert_null(m.id);
    assert_null(m.remote_address);
    assert_null(m.headers);
    assert_int_equal(m.nheaders, 0);
    assert_int_equal(m.remote_port, -1);
    /* LeakSanitizer would flag anything still allocated */
}

/* ---- rendezvous-only requests ---------------------------------------------------- */

static void
test_hcmsg_rendezvous_only_detection(void **state)
{
    struct ahg_hcmsg m;
    (void)state;

    assert_int_equal(
        parse_str("{\"request\":{\"address\":\"wss://gw/$hc/h?sb-hc-action=request\"}}", &m),
        AHG_OK);
    assert_true(ahg_hcmsg_is_rendezvous_only(&m));
    assert_null(m.id);
    assert_int_equal(m.body, -1);
    ahg_hcmsg_clear(&m);

    /* section 14: a rendezvous-only request may carry its id */
    assert_int_equal(parse_str("{\"request\":{\"address\":\"wss://gw/x\",\"id\":\"7\"}}", &m),
                     AHG_OK);
    assert_true(ahg_hcmsg_is_rendezvous_only(&m));
    assert_string_equal(m.id, "7");
    ahg_hcmsg_clear(&m);

    assert_int_equal(parse_str(doc_request, &m), AHG_OK);
    assert_false(ahg_hcmsg_is_rendezvous_only(&m));
    ahg_hcmsg_clear(&m);

    /* hand-built structs: both method and body must be absent */
    ahg_hcmsg_init(&m, AHG_HCMSG_REQUEST);
    m.address = xstrdup("wss://gw/x");
    assert_true(ahg_hcmsg_is_rendezvous_only(&m));
    m.body = 0;
    assert_false(ahg_hcmsg_is_rendezvous_only(&m)); /* .NET: body present -> not rendezvous */
    m.body = -1;
    m.method = xstrdup("GET");
    assert_false(ahg_hcmsg_is_rendezvous_only(&m)); /* hyco: method present -> not rendezvous */
    free(m.method);
    m.method = NULL;
    m.type = AHG_HCMSG_ACCEPT;
    assert_false(ahg_hcmsg_is_rendezvous_only(&m));
    m.type = AHG_HCMSG_REQUEST;
    free(m.address);
    m.address = NULL;
    assert_false(ahg_hcmsg_is_rendezvous_only(&m));
    assert_false(ahg_hcmsg_is_rendezvous_only(NULL));
    ahg_hcmsg_clear(&m);
}

static void
test_hcmsg_encode_rendezvous_only(void **state)
{
    struct ahg_hcmsg m;
    static const char *const hdrs[] = {"X-A", "1"};
    (void)state;

    ahg_hcmsg_init(&m, AHG_HCMSG_REQUEST);
    m.address = xstrdup("wss://gw/$hc/h?sb-hc-action=request&sb-hc-id=1");
    assert_encodes_to(&m, "{\"request\":{\"address\":\"wss://gw/$hc/h?sb-hc-action=request&sb-hc-"
                          "id=1\"}}");
    m.id = xstrdup("1");
    assert_encodes_to(&m, "{\"request\":{\"address\":\"wss://gw/$hc/h?sb-hc-action=request&sb-hc-"
                          "id=1\",\"id\":\"1\"}}");
    ahg_hcmsg_clear(&m);

    /* anything else in a rendezvous-only request is not written */
    ahg_hcmsg_init(&m, AHG_HCMSG_REQUEST);
    m.address = xstrdup("wss://gw/r");
    m.request_target = xstrdup("/h/x");
    m.remote_address = xstrdup("10.0.0.1");
    m.remote_port = 5;
    set_headers(&m, hdrs, 1);
    char *out = NULL;
    assert_int_equal(ahg_hcmsg_encode(&m, &out, NULL), AHG_OK);
    assert_string_equal(out, "{\"request\":{\"address\":\"wss://gw/r\"}}");
    free(out);
    ahg_hcmsg_clear(&m);
}

/* ---- encoding ------------------------------------------------------------------- */

static void
test_hcmsg_encode_accept_roundtrip(void **state)
{
    struct ahg_hcmsg m;
    static const char *const hdrs[] = {"Sec-WebSocket-Key", "k==",  "Upgrade",
                                       "websocket",         "Host", "ns:443"};
    (void)state;

    ahg_hcmsg_init(&m, AHG_HCMSG_ACCEPT);
    m.address = xstrdup("wss://gw:443/$hc/h?sb-hc-action=accept&sb-hc-id=A1");
    m.id = xstrdup("A1");
    assert_encodes_to(&m, "{\"accept\":{\"address\":\"wss://gw:443/$hc/"
                          "h?sb-hc-action=accept&sb-hc-id=A1\",\"id\":\"A1\"}}");
    set_headers(&m, hdrs, 3);
    m.remote_address = xstrdup("10.0.0.1");
    m.remote_port = 1234;
    assert_encodes_to(&m, "{\"accept\":{\"address\":\"wss://gw:443/$hc/"
                          "h?sb-hc-action=accept&sb-hc-id=A1\",\"id\":\"A1\",\"connectHeaders\":{"
                          "\"Sec-WebSocket-Key\":\"k==\",\"Upgrade\":\"websocket\",\"Host\":\"ns:"
                          "443\"},\"remoteEndpoint\":{\"address\":\"10.0.0.1\",\"port\":1234}}}");
    ahg_hcmsg_clear(&m);

    /* an endpoint with only a port */
    ahg_hcmsg_init(&m, AHG_HCMSG_ACCEPT);
    m.address = xstrdup("a");
    m.id = xstrdup("b");
    m.remote_port = 0;
    assert_encodes_to(&m, "{\"accept\":{\"address\":\"a\",\"id\":\"b\",\"remoteEndpoint\":{"
                          "\"port\":0}}}");
    ahg_hcmsg_clear(&m);
}

static void
test_hcmsg_encode_request_roundtrip(void **state)
{
    struct ahg_hcmsg m;
    static const char *const hdrs[] = {"content-type", "text/plain", "X-Custom", "a, b"};
    (void)state;

    ahg_hcmsg_init(&m, AHG_HCMSG_REQUEST);
    m.address = xstrdup("wss://gw/$hc/h?sb-hc-action=request&sb-hc-id=R1");
    m.id = xstrdup("R1");
    m.request_target = xstrdup("/h/p?q=1&r=%2F");
    m.method = xstrdup("POST");
    m.remote_address = xstrdup("192.0.2.7");
    m.remote_port = 65535;
    set_headers(&m, hdrs, 2);
    m.body = 1;
    assert_encodes_to(&m, "{\"request\":{\"address\":\"wss://gw/$hc/"
                          "h?sb-hc-action=request&sb-hc-id=R1\",\"id\":\"R1\",\"requestTarget\":\"/"
                          "h/p?q=1&r=%2F\",\"method\":\"POST\",\"remoteEndpoint\":{\"address\":"
                          "\"192.0.2.7\",\"port\":65535},\"requestHeaders\":{\"content-type\":"
                          "\"text/plain\",\"X-Custom\":\"a, b\"},\"body\":true}}");
    m.body = 0;
    assert_encodes_to(&m, "{\"request\":{\"address\":\"wss://gw/$hc/"
                          "h?sb-hc-action=request&sb-hc-id=R1\",\"id\":\"R1\",\"requestTarget\":\"/"
                          "h/p?q=1&r=%2F\",\"method\":\"POST\",\"remoteEndpoint\":{\"address\":"
                          "\"192.0.2.7\",\"port\":65535},\"requestHeaders\":{\"content-type\":"
                          "\"text/plain\",\"X-Custom\":\"a, b\"},\"body\":false}}");
    ahg_hcmsg_clear(&m);
}

static void
test_hcmsg_encode_response_roundtrip(void **state)
{
    struct ahg_hcmsg m;
    static const char *const hdrs[] = {"Content-Type", "application/json", "X-Q", "\"quoted\"\t\\"};
    (void)state;

    ahg_hcmsg_init(&m, AHG_HCMSG_RESPONSE);
    m.request_id = xstrdup("R1");
    m.status_code = 204;
    assert_encodes_to(&m, "{\"response\":{\"requestId\":\"R1\",\"statusCode\":204}}");
    m.status_description = xstrdup("No Content \xc3\xa9");
    m.body = 0;
    set_headers(&m, hdrs, 2);
    m.status_code = 200;
    assert_encodes_to(&m, "{\"response\":{\"requestId\":\"R1\",\"statusCode\":200,"
                          "\"statusDescription\":\"No Content \xc3\xa9\",\"responseHeaders\":{"
                          "\"Content-Type\":\"application/json\",\"X-Q\":"
                          "\"\\\"quoted\\\"\\t\\\\\"},\"body\":false}}");
    ahg_hcmsg_clear(&m);
}

static void
test_hcmsg_encode_renew_token_roundtrip(void **state)
{
    struct ahg_hcmsg m;
    (void)state;

    ahg_hcmsg_init(&m, AHG_HCMSG_RENEW_TOKEN);
    m.token = xstrdup("SharedAccessSignature sr=http%3a%2f%2fns%2fh&sig=a%2Bb%3d&se=1&skn=k");
    assert_encodes_to(&m, "{\"renewToken\":{\"token\":\"SharedAccessSignature "
                          "sr=http%3a%2f%2fns%2fh&sig=a%2Bb%3d&se=1&skn=k\"}}");
    ahg_hcmsg_clear(&m);
}

static void
test_hcmsg_encode_merges_duplicate_headers(void **state)
{
    struct ahg_hcmsg m;
    static const char *const hdrs[] = {
        "X-A",  "1",      "Set-Cookie", "a=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT",
        "x-a",  "2",      "set-cookie", "b=2",
        "Vary", "",       "X-A",        "",
        "VARY", "Accept", "X-A",        "3",
    };
    char *out = NULL;
    struct ahg_hcmsg back;
    (void)state;

    ahg_hcmsg_init(&m, AHG_HCMSG_RESPONSE);
    m.request_id = xstrdup("r");
    m.status_code = 200;
    set_headers(&m, hdrs, 8);
    assert_int_equal(ahg_hcmsg_encode(&m, &out, NULL), AHG_OK);
    assert_string_equal(out, "{\"response\":{\"requestId\":\"r\",\"statusCode\":200,"
                             "\"responseHeaders\":{\"X-A\":\"1, 2, 3\",\"Set-Cookie\":\"a=1; "
                             "Expires=Wed, 21 Oct 2015 07:28:00 GMT\",\"Vary\":\"Accept\"}}}");
    assert_int_equal(ahg_hcmsg_parse(out, strlen(out), &back), AHG_OK);
    assert_int_equal(back.nheaders, 3);
    assert_string_equal(ahg_hcmsg_header_get(&back, "set-cookie"),
                        "a=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT");
    ahg_hcmsg_clear(&back);
    free(out);
    ahg_hcmsg_clear(&m);
}

static void
test_hcmsg_encode_rejects_invalid(void **state)
{
    struct ahg_hcmsg m;
    char *out = (char *)"sentinel";
    static const char *const hdr[] = {"X-A", "1"};
    (void)state;

    ahg_hcmsg_init(&m, AHG_HCMSG_NONE);
    assert_int_equal(ahg_hcmsg_encode(&m, &out, NULL), AHG_EINVAL);
    assert_null(out);
    assert_int_equal(ahg_hcmsg_encode(NULL, &out, NULL), AHG_EINVAL);
    assert_int_equal(ahg_hcmsg_encode(&m, NULL, NULL), AHG_EINVAL);

    /* accept without id */
    ahg_hcmsg_init(&m, AHG_HCMSG_ACCEPT);
    m.address = xstrdup("a");
    assert_int_equal(ahg_hcmsg_encode(&m, &out, NULL), AHG_EINVAL);
    m.id = xstrdup("i");
    assert_int_equal(ahg_hcmsg_encode(&m, &out, NULL), AHG_OK);
    free(out);
    m.remote_port = 65536;
    assert_int_equal(ahg_hcmsg_encode(&m, &out, NULL), AHG_EINVAL);
    m.remote_port = -1;
    m.remote_address = xstrdup("1.2.3.4\n");
    assert_int_equal(ahg_hcmsg_encode(&m, &out, NULL), AHG_EINVAL);
    ahg_hcmsg_clear(&m);

    /* a request with a method but no body (or the reverse) */
    ahg_hcmsg_init(&m, AHG_HCMSG_REQUEST);
    m.address = xstrdup("a");
    m.id = xstrdup("i");
    m.request_target = xstrdup("/");
    m.method = xstrdup("GET");
    assert_int_equal(ahg_hcmsg_encode(&m, &out, NULL), AHG_EINVAL);
    m.body = 2;
    assert_int_equal(ahg_hcmsg_encode(&m, &out, NULL), AHG_EINVAL);
    m.body = 0;
    assert_int_equal(ahg_hcmsg_encode(&m, &out, NULL), AHG_OK);
    free(out);
    free(m.method);
    m.method = xstrdup("G ET");
    assert_int_equal(ahg_hcmsg_encode(&m, &out, NULL), AHG_EINVAL);
    free(m.method);
    m.method = NULL;
    assert_int_equal(ahg_hcmsg_encode(&m, &out, NULL), AHG_EINVAL);
    ahg_hcmsg_clear(&m);

    /* response status range and header validity */
    ahg_hcmsg_init(&m, AHG_HCMSG_RESPONSE);
    m.request_id = xstrdup("r");
    m.status_code = 99;
    assert_int_equal(ahg_hcmsg_encode(&m, &out, NULL), AHG_EINVAL);
    m.status_code = 1000;
    assert_int_equal(ahg_hcmsg_encode(&m, &out, NULL), AHG_EINVAL);
    m.status_code = 200;
    m.status_description = xstrdup("OK\r\nX: y");
    assert_int_equal(ahg_hcmsg_encode(&m, &out, NULL), AHG_EINVAL);
    free(m.status_description);
    m.status_description = NULL;
    set_headers(&m, hdr, 1);
    free(m.headers[0].value);
    m.headers[0].value = xstrdup("1\r\n");
    assert_int_equal(ahg_hcmsg_encode(&m, &out, NULL), AHG_EINVAL);
    free(m.headers[0].value);
    m.headers[0].value = NULL;
    assert_int_equal(ahg_hcmsg_encode(&m, &out, NULL), AHG_EINVAL);
    m.headers[0].value = xstrdup("1");
    free(m.headers[0].name);
    m.headers[0].name = xstrdup("X A");
    assert_int_equal(ahg_hcmsg_encode(&m, &out, NULL), AHG_EINVAL);
    ahg_hcmsg_clear(&m);

    /* renewToken without token */
    ahg_hcmsg_init(&m, AHG_HCMSG_RENEW_TOKEN);
    assert_int_equal(ahg_hcmsg_encode(&m, &out, NULL), AHG_EINVAL);
    assert_null(out);
}

static void
test_hcmsg_encode_limits(void **state)
{
    struct ahg_hcmsg m;
    char *out = NULL;
    size_t len = 0;
    size_t n = AHG_HCMSG_MAX_HEADERS + 1;
    (void)state;

    /* too many headers */
    ahg_hcmsg_init(&m, AHG_HCMSG_RESPONSE);
    m.request_id = xstrdup("r");
    m.status_code = 200;
    m.headers = calloc(n, sizeof(*m.headers));
    assert_non_null(m.headers);
    for (size_t i = 0; i < n; i++) {
        char name[16];
        (void)snprintf(name, sizeof(name), "H%zu", i);
        m.headers[i].name = xstrdup(name);
        m.headers[i].value = xstrdup("v");
    }
    m.nheaders = n;
    assert_int_equal(ahg_hcmsg_encode(&m, &out, NULL), AHG_ELIMIT);
    m.nheaders = AHG_HCMSG_MAX_HEADERS;
    assert_int_equal(ahg_hcmsg_encode(&m, &out, &len), AHG_OK);
    assert_int_equal(len, strlen(out));
    free(out);
    m.nheaders = n; /* so that clear frees them all */
    ahg_hcmsg_clear(&m);

    /* output over AHG_HCMSG_MAX_LEN, and the largest token that fits */
    ahg_hcmsg_init(&m, AHG_HCMSG_RENEW_TOKEN);
    size_t overhead = strlen("{\"renewToken\":{\"token\":\"\"}}");
    m.token = malloc(AHG_HCMSG_MAX_LEN);
    assert_non_null(m.token);
    memset(m.token, 'x', AHG_HCMSG_MAX_LEN - overhead);
    m.token[AHG_HCMSG_MAX_LEN - overhead] = '\0';
    assert_int_equal(ahg_hcmsg_encode(&m, &out, &len), AHG_OK);
    assert_int_equal(len, AHG_HCMSG_MAX_LEN);
    free(out);
    m.token[AHG_HCMSG_MAX_LEN - overhead] = 'x';
    m.token[AHG_HCMSG_MAX_LEN - overhead + 1] = '\0';
    assert_int_equal(ahg_hcmsg_encode(&m, &out, &len), AHG_ELIMIT);
    assert_null(out);
    ahg_hcmsg_clear(&m);

    /* headers far larger than a message: refused before building anything */
    ahg_hcmsg_init(&m, AHG_HCMSG_RESPONSE);
    m.request_id = xstrdup("r");
    m.status_code = 200;
    m.headers = calloc(1, sizeof(*m.headers));
    assert_non_null(m.headers);
    m.headers[0].name = xstrdup("X-Big");
    m.headers[0].value = malloc(AHG_HCMSG_MAX_LEN + 2);
    assert_non_null(m.headers[0].value);
    memset(m.headers[0].value, 'v', AHG_HCMSG_MAX_LEN + 1);
    m.headers[0].value[AHG_HCMSG_MAX_LEN + 1] = '\0';
    m.nheaders = 1;
    assert_int_equal(ahg_hcmsg_encode(&m, &out, NULL), AHG_ELIMIT);
    ahg_hcmsg_clear(&m);
}

/* ---- accessors ------------------------------------------------------------------ */

static void
test_hcmsg_header_get_case_insensitive(void **state)
{
    struct ahg_hcmsg m;
    static const char json[] =
        "{\"request\":{\"address\":\"a\",\"id\":\"i\",\"requestTarget\":\"/\",\"method\":\"GET\","
        "\"requestHeaders\":{\"X-Forwarded-For\":\"1.2.3.4\",\"content-TYPE\":\"text/html\","
        "\"Accept\":\"*/*\"},\"body\":false}}";
    (void)state;

    assert_int_equal(parse_str(json, &m), AHG_OK);
    assert_string_equal(ahg_hcmsg_header_get(&m, "x-forwarded-for"), "1.2.3.4");
    assert_string_equal(ahg_hcmsg_header_get(&m, "X-FORWARDED-FOR"), "1.2.3.4");
    assert_string_equal(ahg_hcmsg_header_get(&m, "Content-Type"), "text/html");
    assert_string_equal(ahg_hcmsg_header_get(&m, "accept"), "*/*");
    assert_null(ahg_hcmsg_header_get(&m, "Accep"));
    assert_null(ahg_hcmsg_header_get(&m, "Accept-Encoding"));
    assert_null(ahg_hcmsg_header_get(&m, NULL));
    assert_null(ahg_hcmsg_header_get(NULL, "Accept"));
    /* header names keep the peer's case */
    assert_string_equal(m.headers[1].name, "content-TYPE");
    ahg_hcmsg_clear(&m);
    assert_null(ahg_hcmsg_header_get(&m, "Accept"));
}

static void
test_hcmsg_clear_and_init(void **state)
{
    struct ahg_hcmsg m;
    (void)state;

    ahg_hcmsg_clear(NULL);
    assert_int_equal(parse_str(doc_accept, &m), AHG_OK);
    ahg_hcmsg_clear(&m);
    assert_int_equal(m.type, AHG_HCMSG_NONE);
    assert_null(m.address);
    assert_null(m.id);
    assert_null(m.remote_address);
    assert_null(m.headers);
    assert_int_equal(m.nheaders, 0);
    assert_int_equal(m.remote_port, -1);
    assert_int_equal(m.body, -1);
    ahg_hcmsg_clear(&m); /* twice is fine */

    ahg_hcmsg_init(&m, AHG_HCMSG_RESPONSE);
    assert_int_equal(m.type, AHG_HCMSG_RESPONSE);
    assert_int_equal(m.body, -1);
    assert_int_equal(m.status_code, 0);
    assert_null(m.request_id);
}

static void
test_hcmsg_type_names(void **state)
{
    (void)state;
    assert_string_equal(ahg_hcmsg_type_name(AHG_HCMSG_ACCEPT), "accept");
    assert_string_equal(ahg_hcmsg_type_name(AHG_HCMSG_REQUEST), "request");
    assert_string_equal(ahg_hcmsg_type_name(AHG_HCMSG_RESPONSE), "response");
    assert_string_equal(ahg_hcmsg_type_name(AHG_HCMSG_RENEW_TOKEN), "renewToken");
    assert_string_equal(ahg_hcmsg_type_name(AHG_HCMSG_NONE), "unknown");
    assert_string_equal(ahg_hcmsg_type_name((enum ahg_hcmsg_type)42), "unknown");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hcmsg_parse_doc_accept),
        cmocka_unit_test(test_hcmsg_parse_doc_request),
        cmocka_unit_test(test_hcmsg_parse_doc_response),
        cmocka_unit_test(test_hcmsg_parse_doc_renew_token),
        cmocka_unit_test(test_hcmsg_parse_dotnet_shapes),
        cmocka_unit_test(test_hcmsg_parse_hyco_response),
        cmocka_unit_test(test_hcmsg_parse_key_order_irrelevant),
        cmocka_unit_test(test_hcmsg_parse_decodes_escapes),
        cmocka_unit_test(test_hcmsg_parse_ignores_unknown_fields),
        cmocka_unit_test(test_hcmsg_parse_null_is_absent),
        cmocka_unit_test(test_hcmsg_parse_rejects_invalid_json),
        cmocka_unit_test(test_hcmsg_parse_rejects_bad_envelope),
        cmocka_unit_test(test_hcmsg_parse_rejects_wrong_types),
        cmocka_unit_test(test_hcmsg_parse_status_code_forms),
        cmocka_unit_test(test_hcmsg_parse_rejects_duplicate_known_keys),
        cmocka_unit_test(test_hcmsg_parse_duplicate_header_names_kept),
        cmocka_unit_test(test_hcmsg_parse_rejects_missing_required),
        cmocka_unit_test(test_hcmsg_parse_rejects_embedded_nul),
        cmocka_unit_test(test_hcmsg_parse_rejects_forbidden_chars),
        cmocka_unit_test(test_hcmsg_parse_size_limit),
        cmocka_unit_test(test_hcmsg_parse_header_count_limit),
        cmocka_unit_test(test_hcmsg_parse_depth_limit),
        cmocka_unit_test(test_hcmsg_parse_respects_len),
        cmocka_unit_test(test_hcmsg_parse_invalid_args),
        cmocka_unit_test(test_hcmsg_parse_failure_frees_partial),
        cmocka_unit_test(test_hcmsg_rendezvous_only_detection),
        cmocka_unit_test(test_hcmsg_encode_rendezvous_only),
        cmocka_unit_test(test_hcmsg_encode_accept_roundtrip),
        cmocka_unit_test(test_hcmsg_encode_request_roundtrip),
        cmocka_unit_test(test_hcmsg_encode_response_roundtrip),
        cmocka_unit_test(test_hcmsg_encode_renew_token_roundtrip),
        cmocka_unit_test(test_hcmsg_encode_merges_duplicate_headers),
        cmocka_unit_test(test_hcmsg_encode_rejects_invalid),
        cmocka_unit_test(test_hcmsg_encode_limits),
        cmocka_unit_test(test_hcmsg_header_get_case_insensitive),
        cmocka_unit_test(test_hcmsg_clear_and_init),
        cmocka_unit_test(test_hcmsg_type_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
