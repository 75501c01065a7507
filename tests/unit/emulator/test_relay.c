/*
 * Unit tests of the relay's pure helpers (relay_int.h): action parsing, token precedence,
 * rendezvous addresses, header filtering both ways, the inline/rendezvous decision, listener
 * choice with Allowed/DisallowedListeners, and the id table. The socket behaviour is covered by
 * tests/integration/emulator.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cmocka.h>

#include "ahg/err.h"
#include "ahg/hcmsg.h"
#include "ahg/http.h"
#include "emu_int.h"
#include "relay_int.h"

static struct ahg_http_head *
req_head(const char *const *fields)
{
    int err = 0;
    struct ahg_http_head *h = ahg_http_head_new_request("POST", "/hc/x", &err);
    assert_non_null(h);
    for (size_t i = 0; fields && fields[i]; i += 2)
        assert_int_equal(ahg_http_head_add(h, fields[i], fields[i + 1]), AHG_OK);
    return h;
}

static void
test_relay_action_parse(void **state)
{
    (void)state;
    assert_int_equal(emu_relay_action_parse(NULL), EMU_RELAY_ACT_CONNECT);
    assert_int_equal(emu_relay_action_parse(""), EMU_RELAY_ACT_CONNECT);
    assert_int_equal(emu_relay_action_parse("x=1"), EMU_RELAY_ACT_CONNECT);
    assert_int_equal(emu_relay_action_parse("sb-hc-action=listen"), EMU_RELAY_ACT_LISTEN);
    assert_int_equal(emu_relay_action_parse("a=1&sb-hc-action=connect&b"), EMU_RELAY_ACT_CONNECT);
    assert_int_equal(emu_relay_action_parse("sb-hc-action=accept&sb-hc-id=1"),
                     EMU_RELAY_ACT_ACCEPT);
    assert_int_equal(emu_relay_action_parse("sb-hc-action=request"), EMU_RELAY_ACT_REQUEST);
    assert_int_equal(emu_relay_action_parse("sb-hc-action=%6Cisten"), EMU_RELAY_ACT_LISTEN);
    assert_int_equal(emu_relay_action_parse("sb-hc-action=bogus"), EMU_RELAY_ACT_BAD);
    assert_int_equal(emu_relay_action_parse("sb-hc-action="), EMU_RELAY_ACT_BAD);
    assert_int_equal(emu_relay_action_parse("sb-hc-action=%zz"), EMU_RELAY_ACT_BAD);
    assert_int_equal(emu_relay_action_parse("sb-hc-action=Listen"), EMU_RELAY_ACT_BAD);
}

static void
test_relay_token_precedence(void **state)
{
    (void)state;
    char out[64];
    const char *both[] = {"ServiceBusAuthorization", "sba", "Authorization", "auth", NULL};
    struct ahg_http_head *h = req_head(both);
    /* the query wins, form-decoded */
    assert_int_equal(
        emu_relay_token(h, "a=1&sb-hc-token=Shared+Access%26x", true, out, sizeof(out)), 1);
    assert_string_equal(out, "Shared Access&x");
    assert_int_equal(emu_relay_token(h, "", true, out, sizeof(out)), 2);
    assert_string_equal(out, "sba");
    ahg_http_head_free(h);
    const char *auth_only[] = {"Authorization", "auth", NULL};
    h = req_head(auth_only);
    assert_int_equal(emu_relay_token(h, NULL, true, out, sizeof(out)), 3);
    assert_string_equal(out, "auth");
    /* WebSockets do not take Authorization */
    assert_int_equal(emu_relay_token(h, NULL, false, out, sizeof(out)), 0);
    assert_string_equal(out, "");
    /* too long, or a bad escape: -1 (an invalid token) */
    char longq[200];
    snprintf(longq, sizeof(longq), "sb-hc-token=%0100d", 7);
    assert_int_equal(emu_relay_token(h, longq, true, out, sizeof(out)), -1);
    assert_int_equal(emu_relay_token(h, "sb-hc-token=%z", true, out, sizeof(out)), -1);
    ahg_http_head_free(h);
    const char *long_sba[] = {"ServiceBusAuthorization",
                              "0123456789012345678901234567890123456789012345678901234567890123"
                              "456789",
                              NULL};
    h = req_head(long_sba);
    assert_int_equal(emu_relay_token(h, NULL, true, out, sizeof(out)), -1);
    ahg_http_head_free(h);
    h = req_head(NULL);
    assert_int_equal(emu_relay_token(h, "sb-hc-token=", true, out, sizeof(out)), 0);
    ahg_http_head_free(h);
}

static void
test_relay_address(void **state)
{
    (void)state;
    char out[512];
    assert_int_equal(emu_relay_address("ws://127.0.0.1:9", "/$hc/hc/sub", "app=1&sb-hc-id=s&b=%2B",
                                       "accept", "s_G1", out, sizeof(out)),
                     AHG_OK);
    assert_string_equal(
        out, "ws://127.0.0.1:9/$hc/hc/sub?app=1&b=%2B&sb-hc-action=accept&sb-hc-id=s_G1");
    /* only sb-hc-* pairs: no stray separator */
    assert_int_equal(emu_relay_address("wss://h", "/$hc/hc", "sb-hc-action=connect&sb-hc-token=x",
                                       "accept", "a b", out, sizeof(out)),
                     AHG_OK);
    assert_string_equal(out, "wss://h/$hc/hc?sb-hc-action=accept&sb-hc-id=a%20b");
    assert_int_equal(emu_relay_address("ws://h", "/$hc/hc", NULL, "request", "i", out, sizeof(out)),
                     AHG_OK);
    assert_string_equal(out, "ws://h/$hc/hc?sb-hc-action=request&sb-hc-id=i");
    /* "sb-hc-undefined" has no '=': it stays (hc-protocol.md 3.2) */
    assert_int_equal(emu_relay_address("ws://h", "/$hc/hc", "sb-hc-undefined&x", "accept", "i", out,
                                       sizeof(out)),
                     AHG_OK);
    assert_string_equal(out, "ws://h/$hc/hc?sb-hc-undefined&x&sb-hc-action=accept&sb-hc-id=i");
    assert_int_equal(emu_relay_address("ws://h", "/$hc/hc", "x=1", "accept", "i", out, 20),
                     AHG_ELIMIT);

    assert_int_equal(emu_relay_hc_path("a/b c/d%", out, sizeof(out)), AHG_OK);
    assert_string_equal(out, "/$hc/a/b%20c/d%25");
    assert_int_equal(emu_relay_hc_path("hc1", out, sizeof(out)), AHG_OK);
    assert_string_equal(out, "/$hc/hc1");
    assert_int_equal(emu_relay_hc_path("abcdef", out, 8), AHG_ELIMIT);
}

static void
test_relay_ids_and_paths(void **state)
{
    (void)state;
    assert_true(emu_relay_id_base_ok("0f3c-Aa_b.9"));
    assert_false(emu_relay_id_base_ok(""));
    assert_false(emu_relay_id_base_ok("a b"));
    assert_false(emu_relay_id_base_ok("a&sb-hc-action=x"));
    char longid[80];
    memset(longid, 'a', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = 0;
    assert_false(emu_relay_id_base_ok(longid));
    longid[64] = 0;
    assert_true(emu_relay_id_base_ok(longid));

    char out[64];
    assert_int_equal(emu_relay_decode_path("a%2Fb%20c", out, sizeof(out)), AHG_OK);
    assert_string_equal(out, "a/b c");
    assert_int_equal(emu_relay_decode_path("a+b", out, sizeof(out)), AHG_OK);
    assert_string_equal(out, "a+b");
    assert_int_not_equal(emu_relay_decode_path("a%00b", out, sizeof(out)), AHG_OK);
    assert_int_not_equal(emu_relay_decode_path("a%zz", out, sizeof(out)), AHG_OK);

    assert_true(emu_relay_listener_allowed("L1", NULL, NULL));
    assert_true(emu_relay_listener_allowed("L1", "", ""));
    assert_true(emu_relay_listener_allowed("L1", "x, l1 ,y", NULL));
    assert_false(emu_relay_listener_allowed("L1", "x,L10", NULL));
    assert_false(emu_relay_listener_allowed("L1", NULL, " L1"));
    assert_true(emu_relay_listener_allowed("L1", NULL, "L2,L11"));
    assert_false(emu_relay_listener_allowed("L1", "L1", "l1"));
}

static void
test_relay_request_headers(void **state)
{
    (void)state;
    const char *f[] = {"Host",
                       "ns",
                       "Connection",
                       "keep-alive",
                       "Content-Length",
                       "3",
                       "TE",
                       "trailers",
                       "Upgrade",
                       "h2c",
                       "Keep-Alive",
                       "5",
                       "ServiceBusAuthorization",
                       "tok",
                       "Authorization",
                       "app",
                       "X-A",
                       "1",
                       "x-a",
                       "2",
                       "Via",
                       "1.0 proxy",
                       "Content-Type",
                       "a/b",
                       NULL};
    struct ahg_http_head *h = req_head(f);
    struct ahg_hcmsg m;
    ahg_hcmsg_init(&m, AHG_HCMSG_REQUEST);
    assert_int_equal(emu_relay_request_headers(h, false, "ns.example", &m), AHG_OK);
    assert_string_equal(ahg_hcmsg_header_get(&m, "Authorization"), "app");
    assert_string_equal(ahg_hcmsg_header_get(&m, "Content-Type"), "a/b");
    assert_string_equal(ahg_hcmsg_header_get(&m, "Via"), "1.0 proxy, 1.1 ns.example");
    for (size_t i = 0; i < m.nheaders; i++) {
        const char *n = m.headers[i].name;
        assert_true(strcasecmp(n, "Host") && strcasecmp(n, "Connection") &&
                    strcasecmp(n, "Content-Length") && strcasecmp(n, "TE") &&
                    strcasecmp(n, "Upgrade") && strcasecmp(n, "Keep-Alive") &&
                    strcasecmp(n, "ServiceBusAuthorization"));
    }
    /* duplicates are comma-joined once encoded */
    m.address = strdup("ws://h/$hc/hc?sb-hc-action=request&sb-hc-id=i");
    m.id = strdup("i");
    m.request_target = strdup("/hc/x");
    m.method = strdup("POST");
    m.body = 1;
    char *json = NULL;
    assert_int_equal(ahg_hcmsg_encode(&m, &json, NULL), AHG_OK);
    assert_non_null(strstr(json, "\"X-A\":\"1, 2\""));
    free(json);
    ahg_hcmsg_clear(&m);
    ahg_hcmsg_init(&m, AHG_HCMSG_REQUEST);
    assert_int_equal(emu_relay_request_headers(h, true, "ns.example", &m), AHG_OK);
    assert_null(ahg_hcmsg_header_get(&m, "Authorization"));
    ahg_hcmsg_clear(&m);
    ahg_http_head_free(h);
}

static struct ahg_hcmsg
response(int status, const char *desc, const char *const *hdrs)
{
    struct ahg_hcmsg m;
    ahg_hcmsg_init(&m, AHG_HCMSG_RESPONSE);
    m.status_code = status;
    m.status_description = (char *)(uintptr_t)desc;
    static struct ahg_hcmsg_header hs[16];
    size_t n = 0;
    for (size_t i = 0; hdrs && hdrs[i]; i += 2, n++) {
        hs[n].name = (char *)(uintptr_t)hdrs[i];
        hs[n].value = (char *)(uintptr_t)hdrs[i + 1];
    }
    m.headers = n ? hs : NULL;
    m.nheaders = n;
    return m;
}

static void
test_relay_response_head(void **state)
{
    (void)state;
    const char *hd[] = {"content-type",
                        "text/html",
                        "Content-Length",
                        "42",
                        "Connection",
                        "close",
                        "Transfer-Encoding",
                        "chunked",
                        "Keep-Alive",
                        "1",
                        "Set-Cookie",
                        "a=1",
                        "Set-Cookie",
                        "b=2",
                        "Via",
                        "1.1 app",
                        NULL};
    struct ahg_hcmsg m = response(201, "Made it", hd);
    int64_t hint = 0;
    struct ahg_http_head *h = emu_relay_response_head(&m, "ns.example", &hint);
    assert_non_null(h);
    assert_int_equal(h->status, 201);
    assert_string_equal(h->reason, "Made it");
    assert_int_equal(hint, 42);
    assert_string_equal(ahg_http_head_get(h, "content-type", NULL), "text/html");
    assert_null(ahg_http_head_get(h, "Content-Length", NULL));
    assert_null(ahg_http_head_get(h, "Connection", NULL));
    assert_null(ahg_http_head_get(h, "Transfer-Encoding", NULL));
    assert_null(ahg_http_head_get(h, "Keep-Alive", NULL));
    assert_string_equal(ahg_http_head_get(h, "Via", NULL), "1.1 app, 1.1 ns.example");
    size_t pos = 0, cookies = 0;
    while (ahg_http_head_find(h, "Set-Cookie", &pos))
        cookies++;
    assert_int_equal(cookies, 2);
    ahg_http_head_free(h);

    /* no description: the standard reason; a bogus Content-Length gives no hint */
    const char *bogus[] = {"Content-Length", "12x", NULL};
    m = response(404, NULL, bogus);
    h = emu_relay_response_head(&m, "ns.example", &hint);
    assert_non_null(h);
    assert_string_equal(h->reason, "Not Found");
    assert_int_equal(hint, -1);
    assert_string_equal(ahg_http_head_get(h, "Via", NULL), "1.1 ns.example");
    ahg_http_head_free(h);

    /* statuses a sender cannot get from a listener */
    m = response(101, NULL, NULL);
    assert_null(emu_relay_response_head(&m, "ns", &hint));
    m = response(199, NULL, NULL);
    assert_null(emu_relay_response_head(&m, "ns", &hint));
    m = response(600, NULL, NULL);
    assert_null(emu_relay_response_head(&m, "ns", &hint));
    m = response(599, NULL, NULL);
    h = emu_relay_response_head(&m, "ns", &hint);
    assert_non_null(h);
    ahg_http_head_free(h);
}

static void
test_relay_fits_inline(void **state)
{
    (void)state;
    assert_true(emu_relay_fits_inline(500, AHG_HTTP_BODY_NONE, 0));
    assert_true(emu_relay_fits_inline(65536, AHG_HTTP_BODY_NONE, 0));
    assert_false(emu_relay_fits_inline(65537, AHG_HTTP_BODY_NONE, 0));
    assert_true(emu_relay_fits_inline(500, AHG_HTTP_BODY_LENGTH, 65036));
    assert_false(emu_relay_fits_inline(500, AHG_HTTP_BODY_LENGTH, 65037));
    assert_false(emu_relay_fits_inline(500, AHG_HTTP_BODY_LENGTH, UINT64_MAX));
    assert_false(emu_relay_fits_inline(10, AHG_HTTP_BODY_CHUNKED, 0));
}

static void
test_relay_id_table(void **state)
{
    (void)state;
    struct emu *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    assert_int_equal(emu_relay_init(e), AHG_OK);
    struct emu_relay *rl = emu_relay_of(e);
    enum { N = 3000 };
    struct emu_idnode *nodes = calloc(N, sizeof(*nodes));
    assert_non_null(nodes);
    for (int i = 0; i < N; i++) {
        emu_relay_id_new(rl, i % 2 ? "sender-7" : NULL, nodes[i].id);
        nodes[i].kind = EMU_IDK_HREQ;
        assert_int_equal(emu_relay_id_add(rl, &nodes[i]), AHG_OK);
    }
    assert_true(strncmp(nodes[1].id, "sender-7_G", 10) == 0);
    assert_int_equal(strlen(nodes[1].id), 10 + 16);
    assert_int_equal(strlen(nodes[0].id), 36 + 2 + 16); /* uuid_G<16 hex> */
    assert_string_not_equal(nodes[1].id, nodes[3].id);
    assert_true(rl->tabsz > 256); /* it grew */
    for (int i = 0; i < N; i++)
        assert_ptr_equal(emu_relay_id_find(rl, nodes[i].id), &nodes[i]);
    for (int i = 0; i < N; i += 2)
        emu_relay_id_del(rl, &nodes[i]);
    emu_relay_id_del(rl, &nodes[0]); /* twice: no-op */
    for (int i = 0; i < N; i++)
        assert_ptr_equal(emu_relay_id_find(rl, nodes[i].id), i % 2 ? &nodes[i] : NULL);
    assert_int_equal(rl->tabn, N / 2);
    assert_null(emu_relay_id_find(rl, ""));
    assert_null(emu_relay_id_find(rl, NULL));
    assert_null(emu_relay_id_find(rl, "nope"));
    free(nodes);
    emu_relay_free(e);
    assert_null(e->relay);
    free(e);
}

static void
test_relay_pick(void **state)
{
    (void)state;
    struct emu *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    assert_int_equal(emu_relay_init(e), AHG_OK);
    struct emu_rhc rh = {.rl = emu_relay_of(e)};
    struct emu_lsn l[4];
    memset(l, 0, sizeof(l));
    const char *ids[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++) {
        snprintf(l[i].tracking, sizeof(l[i].tracking), "%s", ids[i]);
        ahg_list_push_back(&rh.lsns, &l[i].link);
    }
    l[3].closing = true; /* never picked */
    bool filtered = true;
    int count[4] = {0};
    for (int i = 0; i < 3000; i++) {
        struct emu_lsn *p = emu_relay_pick(&rh, NULL, &filtered);
        assert_non_null(p);
        assert_false(filtered);
        count[p - l]++;
    }
    assert_int_equal(count[3], 0);
    for (int i = 0; i < 3; i++)
        assert_true(count[i] > 800); /* spread at random */

    const char *allow[] = {"Microsoft-Relay-AllowedListeners", "c", NULL};
    struct ahg_http_head *h = req_head(allow);
    for (int i = 0; i < 50; i++)
        assert_ptr_equal(emu_relay_pick(&rh, h, &filtered), &l[2]);
    ahg_http_head_free(h);
    const char *deny[] = {"Microsoft-Relay-DisallowedListeners", "a,b", NULL};
    h = req_head(deny);
    for (int i = 0; i < 50; i++)
        assert_ptr_equal(emu_relay_pick(&rh, h, &filtered), &l[2]);
    ahg_http_head_free(h);
    const char *none[] = {"Microsoft-Relay-AllowedListeners", "d", NULL};
    h = req_head(none);
    assert_null(emu_relay_pick(&rh, h, &filtered));
    assert_true(filtered);
    ahg_http_head_free(h);
    struct emu_rhc empty = {.rl = emu_relay_of(e)};
    assert_null(emu_relay_pick(&empty, NULL, &filtered));
    assert_false(filtered);
    emu_relay_free(e);
    free(e);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relay_action_parse),
        cmocka_unit_test(test_relay_token_precedence),
        cmocka_unit_test(test_relay_address),
        cmocka_unit_test(test_relay_ids_and_paths),
        cmocka_unit_test(test_relay_request_headers),
        cmocka_unit_test(test_relay_response_head),
        cmocka_unit_test(test_relay_fits_inline),
        cmocka_unit_test(test_relay_id_table),
        cmocka_unit_test(test_relay_pick),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
