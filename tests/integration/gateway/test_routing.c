/*
 * The gateway's routing and error paths: Host routing (case, trailing dot, port), unknown
 * subdomains, the management API (composed handler, CIDR allow-list, never via a tunnel host),
 * 502 tunnel offline, 504, 431, 414, 400 (a smuggling matrix), 408, 401/403 per-route policy,
 * route invalidation through ahg:routes, negative caching, drain.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ahg/crypto.h"
#include "ahg/err.h"
#include "gw_it.h"

static int
setup(void **state)
{
    struct ahg_gw_opts o = {.header_timeout_ms = 400,
                            .api_allow_cidr = "127.0.0.0/8",
                            .admin_port = 0,
                            .cache_neg_ttl_ms = 60000};
    return gfx_setup(state, &o);
}

static void
test_gateway_routes_by_host(void **state)
{
    struct gfx *f = *state;
    struct hcli h;
    assert_int_equal(hget(f, &h, "GET", "t1." GW_DOMAIN, "/echo", NULL), 200);
    assert_string_equal(hfield(h.head, "X-Method"), "GET");
    assert_string_equal(hfield(h.head, "Via"), "1.1 azhexgate");
    hcli_free(&h);
    /* case-insensitive, trailing dot, port */
    assert_int_equal(hget(f, &h, "GET", "T1.GW.Test.:8080", "/echo", NULL), 200);
    hcli_free(&h);
    /* unknown subdomain: 404 page naming it */
    assert_int_equal(hget(f, &h, "GET", "nosuch." GW_DOMAIN, "/", NULL), 404);
    assert_non_null(strstr(h.body, "no tunnel named nosuch"));
    hcli_free(&h);
    /* other domains, the bare domain and deeper names: 404 */
    assert_int_equal(hget(f, &h, "GET", "example.com", "/", NULL), 404);
    hcli_free(&h);
    assert_int_equal(hget(f, &h, "GET", GW_DOMAIN, "/", NULL), 404);
    hcli_free(&h);
    assert_int_equal(hget(f, &h, "GET", "a.t1." GW_DOMAIN, "/", NULL), 404);
    hcli_free(&h);
    /* HEAD: the length of the body that GET would carry, no body */
    assert_int_equal(hget(f, &h, "HEAD", "t1." GW_DOMAIN, "/size/5000", NULL), 200);
    assert_string_equal(hfield(h.head, "Content-Length"), "5000");
    assert_true(h.got == 0);
    hcli_free(&h);
    /* the app's own statuses pass unchanged */
    assert_int_equal(hget(f, &h, "GET", "t1." GW_DOMAIN, "/status/418", NULL), 418);
    assert_string_equal(h.body, "abc");
    hcli_free(&h);
}

static unsigned want_requests;
static bool
app_saw(void *arg)
{
    return ((struct gfx *)arg)->app.requests >= want_requests;
}

static void
test_gateway_keepalive_pipelined(void **state)
{
    struct gfx *f = *state;
    struct hcli h;
    want_requests = f->app.requests + 3;
    /* three requests in one write: answered in order on one connection */
    hcli_send(&f->t, &h, f->port, NULL, "GET",
              "GET /size/10 HTTP/1.1\r\nHost: t1." GW_DOMAIN "\r\n\r\n"
              "GET /size/20 HTTP/1.1\r\nHost: t1." GW_DOMAIN "\r\n\r\n"
              "GET /size/30 HTTP/1.1\r\nHost: t1." GW_DOMAIN "\r\nConnection: close\r\n\r\n",
              0, false);
    assert_true(hcli_wait(&h, 10000));
    assert_int_equal(h.status, 200);
    assert_true(h.got == 10);
    assert_true(th_wait(&f->t, app_saw, f, 10000));
    assert_true(hcli_wait_closed(&h, 10000)); /* closed after the third, as asked */
    hcli_free(&h);
}

static void
test_gateway_forwards_headers_unchanged(void **state)
{
    struct gfx *f = *state;
    struct hcli h;
    assert_int_equal(hget(f, &h, "GET", "t1." GW_DOMAIN, "/headers?q=1",
                          "X-Custom-In: a  b\r\nX-Dup: 1\r\nX-Dup: 2\r\nConnection: keep-alive, "
                          "X-Hop\r\nX-Hop: secret\r\nX-Forwarded-For: 6.6.6.6\r\n"),
                     200);
    /* response: repeated Set-Cookie and custom headers in order */
    size_t pos = 0;
    const struct ahg_http_field *fl = ahg_http_head_find(h.head, "Set-Cookie", &pos);
    assert_non_null(fl);
    assert_string_equal(fl->value, "a=1; Path=/");
    fl = ahg_http_head_find(h.head, "Set-Cookie", &pos);
    assert_non_null(fl);
    assert_string_equal(fl->value, "b=2; HttpOnly");
    fl = ahg_http_head_find(h.head, "Set-Cookie", &pos);
    assert_non_null(fl);
    assert_string_equal(fl->value, "c=3");
    pos = 0;
    assert_string_equal(ahg_http_head_find(h.head, "X-Custom", &pos)->value, "one");
    assert_string_equal(ahg_http_head_find(h.head, "X-Custom", &pos)->value, "two, three");
    /* request as the app saw it */
    const char *b = h.body;
    assert_non_null(strstr(b, "GET /headers?q=1 HTTP/1.1\r\n"));
    assert_non_null(strstr(b, "X-Custom-In: a  b\r\n"));
    assert_non_null(strstr(b, "X-Dup: 1\r\nX-Dup: 2\r\n"));
    assert_null(strstr(b, "X-Hop"));   /* named in Connection: hop-by-hop */
    assert_null(strstr(b, "6.6.6.6")); /* the caller cannot forge its address */
    assert_non_null(strstr(b, "X-Forwarded-For: 127.0.0.1\r\n"));
    assert_non_null(strstr(b, "X-Forwarded-Proto: http\r\n"));
    assert_non_null(strstr(b, "X-Forwarded-Host: t1." GW_DOMAIN "\r\n"));
    assert_non_null(strstr(b, "Forwarded: for=127.0.0.1;host=t1." GW_DOMAIN ";proto=http\r\n"));
    assert_non_null(strstr(b, "X-Request-Id: "));
    assert_non_null(strstr(b, "Via: 1.1 azhexgate\r\n"));
    hcli_free(&h);
}

static void
api_handler(void *ud, struct ahg_httpd_req *r, const char *peer)
{
    int *calls = ud;
    (*calls)++;
    char body[128];
    int n = snprintf(body, sizeof(body), "{\"peer\":\"%s\"}", peer);
    (void)ahg_httpd_respond(r, 200, "application/json", body, (size_t)n, NULL);
}

static void
test_gateway_management_api(void **state)
{
    struct gfx *f = *state;
    struct hcli h;
    /* nothing composed, no upstream: 404 */
    assert_int_equal(hget(f, &h, "GET", "api." GW_DOMAIN, "/api/tunnels", NULL), 404);
    hcli_free(&h);
    int calls = 0;
    ahg_gw_set_api_handler(f->gw, api_handler, &calls);
    assert_int_equal(hget(f, &h, "GET", "API." GW_DOMAIN, "/api/tunnels", NULL), 200);
    assert_string_equal(h.body, "{\"peer\":\"127.0.0.1\"}");
    assert_int_equal(calls, 1);
    hcli_free(&h);
    /* never through a tunnel host */
    assert_int_equal(hget(f, &h, "GET", "t1." GW_DOMAIN, "/api/tunnels", NULL), 200);
    assert_int_equal(calls, 1);
    hcli_free(&h);
    ahg_gw_set_api_handler(f->gw, NULL, NULL);
}

static void
test_gateway_api_cidr_forbidden(void **state)
{
    struct gfx *f = *state;
    struct ahg_gw_opts o = {.api_allow_cidr = "10.0.0.0/8", .admin_port = -1};
    struct ahg_gw *gw2 = gfx_gw_new(f, &o, gfx_store(f));
    int calls = 0;
    ahg_gw_set_api_handler(gw2, api_handler, &calls);
    struct hcli h;
    char raw[] = "GET /api/tunnels HTTP/1.1\r\nHost: api." GW_DOMAIN "\r\n\r\n";
    hcli_send(&f->t, &h, ahg_gw_port(gw2), NULL, "GET", raw, 0, false);
    assert_true(hcli_wait(&h, 5000));
    assert_int_equal(h.status, 403);
    assert_int_equal(calls, 0);
    assert_non_null(strstr(h.body, "\"forbidden\""));
    hcli_free(&h);
    /* bad allow-list: refused */
    int err = 0;
    o.api_allow_cidr = "10.0.0.0/8, nonsense";
    assert_null(ahg_gw_new(f->t.loop, f->store, &o, &err));
    assert_int_equal(err, AHG_EINVAL);
}

static void
test_gateway_tunnel_offline_502(void **state)
{
    struct gfx *f = *state;
    route_put(f, "off1", "open", NULL); /* an existing HC without a listener */
    route_put(f, "off2", "nohc", NULL); /* a HC the relay does not know */
    struct hcli h;
    assert_int_equal(hget(f, &h, "GET", "off1." GW_DOMAIN, "/", NULL), 502);
    assert_non_null(strstr(h.body, "Tunnel offline"));
    hcli_free(&h);
    assert_int_equal(hget(f, &h, "GET", "off2." GW_DOMAIN, "/", NULL), 502);
    hcli_free(&h);
}

static void
test_gateway_relay_unreachable_502(void **state)
{
    struct gfx *f = *state;
    struct ahg_gw_opts o = {.admin_port = -1};
    gfx_gw_opts(f, &o);
    char ep[64];
    (void)snprintf(ep, sizeof(ep), "ws://127.0.0.1:%d", ts_free_port()); /* nobody listens */
    o.relay_endpoint = ep;
    struct ahg_gw *gw2 = gfx_gw_new_as_is(f, &o, gfx_store(f));
    struct hcli h;
    hcli_send(&f->t, &h, ahg_gw_port(gw2), NULL, "GET",
              "GET /echo HTTP/1.1\r\nHost: t1." GW_DOMAIN "\r\n\r\n", 0, false);
    assert_true(hcli_wait(&h, 20000));
    assert_int_equal(h.status, 502);
    assert_non_null(strstr(h.body, "relay could not be reached"));
    hcli_free(&h);
}

static void
test_gateway_response_timeout_504(void **state)
{
    struct gfx *f = *state;
    struct ahg_gw_opts o = {.response_timeout_ms = 300, .admin_port = -1};
    struct ahg_gw *gw2 = gfx_gw_new(f, &o, gfx_store(f));
    struct hcli h;
    char raw[] = "GET /hang HTTP/1.1\r\nHost: t1." GW_DOMAIN "\r\n\r\n";
    hcli_send(&f->t, &h, ahg_gw_port(gw2), NULL, "GET", raw, 0, false);
    assert_true(hcli_wait(&h, 5000));
    assert_int_equal(h.status, 504);
    hcli_free(&h);
    /* a response that started streams without a cap */
    char raw2[] = "GET /sse HTTP/1.1\r\nHost: t1." GW_DOMAIN "\r\n\r\n";
    f->app.sse_ack = 100;
    hcli_send(&f->t, &h, ahg_gw_port(gw2), NULL, "GET", raw2, 0, false);
    assert_true(hcli_wait(&h, 5000));
    assert_int_equal(h.status, 200);
    hcli_free(&h);
    f->app.sse_ack = 0;
}

static int
raw_status(struct gfx *f, const char *raw, unsigned ms)
{
    struct hcli h;
    hcli_send(&f->t, &h, f->port, NULL, "GET", raw, 0, false);
    (void)hcli_wait(&h, ms);
    int st = h.status;
    hcli_free(&h);
    return st;
}

static void
test_gateway_limits_431_414_408(void **state)
{
    struct gfx *f = *state;
    size_t big = (size_t)40 * 1024;
    size_t line = (size_t)9 * 1024;
    size_t cap = big + 256;
    char *raw = malloc(cap);
    assert_non_null(raw);
    /* 431: a 40 KiB header block */
    int n = snprintf(raw, cap, "GET / HTTP/1.1\r\nHost: t1." GW_DOMAIN "\r\nX-Big: ");
    memset(raw + n, 'a', big);
    (void)snprintf(raw + n + big, cap - (size_t)n - big, "\r\n\r\n");
    assert_int_equal(raw_status(f, raw, 5000), 431);
    /* 414: a 9 KiB request line */
    n = snprintf(raw, cap, "GET /");
    memset(raw + n, 'a', line);
    (void)snprintf(raw + n + line, cap - (size_t)n - line,
                   " HTTP/1.1\r\nHost: t1." GW_DOMAIN "\r\n\r\n");
    assert_int_equal(raw_status(f, raw, 5000), 414);
    free(raw);
    /* 408: a head that never ends (header timeout 400 ms here) */
    assert_int_equal(raw_status(f, "GET / HTTP/1.1\r\nHost: t1." GW_DOMAIN "\r\nX-Slow: 1", 5000),
                     408);
}

static void
test_gateway_smuggling_matrix(void **state)
{
    struct gfx *f = *state;
    static const struct {
        const char *raw;
        int want; /* 400, or 0: cut after the head went out */
    } bad[] = {
        /* CL + TE */
        {"POST /echo HTTP/1.1\r\nHost: t1.gw.test\r\nContent-Length: 3\r\nTransfer-Encoding: "
         "chunked\r\n\r\n0\r\n\r\n",
         400},
        /* two different Content-Length */
        {"POST /echo HTTP/1.1\r\nHost: t1.gw.test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"
         "abcd",
         400},
        /* Content-Length list */
        {"POST /echo HTTP/1.1\r\nHost: t1.gw.test\r\nContent-Length: 3, 4\r\n\r\nabcd", 400},
        /* chunked not last */
        {"POST /echo HTTP/1.1\r\nHost: t1.gw.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
         501},
        /* TE with leading empty element */
        {"POST /echo HTTP/1.1\r\nHost: t1.gw.test\r\nTransfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n",
         400},
        /* space before colon */
        {"POST /echo HTTP/1.1\r\nHost: t1.gw.test\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
         400},
        /* obs-fold */
        {"GET / HTTP/1.1\r\nHost: t1.gw.test\r\nX-A: 1\r\n 2\r\n\r\n", 400},
        /* bare LF */
        {"GET / HTTP/1.1\nHost: t1.gw.test\n\n", 400},
        /* two Host fields */
        {"GET / HTTP/1.1\r\nHost: t1.gw.test\r\nHost: evil.gw.test\r\n\r\n", 400},
        /* no Host */
        {"GET / HTTP/1.1\r\n\r\n", 400},
        /* negative Content-Length */
        {"POST /echo HTTP/1.1\r\nHost: t1.gw.test\r\nContent-Length: -1\r\n\r\n", 400},
        /* TE in HTTP/1.0 */
        {"POST /echo HTTP/1.0\r\nHost: t1.gw.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
         400},
        /* bad chunk size */
        {"POST /echo HTTP/1.1\r\nHost: t1.gw.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n",
         0},
    };
    unsigned before = f->app.requests;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int st = raw_status(f, bad[i].raw, 5000);
        if (bad[i].want == 0) /* the bad chunk comes after the head was forwarded: cut */
            assert_true(st == 0 || st == 400 || st == 502);
        else
            assert_true(st == 400 || st == bad[i].want);
    }
    /* none of the requests that are refused at the head reached the app */
    assert_true(f->app.requests - before <= 1);
}

static void
basic(const char *user, const char *pass, char *out, size_t outsz)
{
    char up[128], b64[256];
    (void)snprintf(up, sizeof(up), "%s:%s", user, pass);
    assert_int_equal(ahg_base64_encode(up, strlen(up), b64, sizeof(b64)), AHG_OK);
    (void)snprintf(out, outsz, "Authorization: Basic %s\r\n", b64);
}

static void
test_gateway_policy_401_403(void **state)
{
    struct gfx *f = *state;
    char hex[65], pol[512], hdr[300];
    const char *msg = "pa:alice:s3cret";
    assert_int_equal(ahg_sha256_hex(msg, strlen(msg), hex), AHG_OK);
    (void)snprintf(pol, sizeof(pol),
                   "\"policy\":{\"basic_auth\":[{\"user\":\"alice\",\"sha256\":\"%s\"}]}", hex);
    route_put(f, "pa", "hc1", pol);
    struct hcli h;
    assert_int_equal(hget(f, &h, "GET", "pa." GW_DOMAIN, "/echo", NULL), 401);
    assert_string_equal(hfield(h.head, "WWW-Authenticate"), "Basic realm=\"azhexgate\"");
    hcli_free(&h);
    basic("alice", "wrong", hdr, sizeof(hdr));
    assert_int_equal(hget(f, &h, "GET", "pa." GW_DOMAIN, "/echo", hdr), 401);
    hcli_free(&h);
    basic("alice", "s3cret", hdr, sizeof(hdr));
    assert_int_equal(hget(f, &h, "GET", "pa." GW_DOMAIN, "/echo", hdr), 200);
    hcli_free(&h);

    route_put(f, "pc", "hc1", "\"policy\":{\"allow_cidr\":[\"10.0.0.0/8\",\"2001:db8::/32\"]}");
    assert_int_equal(hget(f, &h, "GET", "pc." GW_DOMAIN, "/echo", NULL), 403);
    hcli_free(&h);
    /* the controller changes the policy and publishes: the next request sees it */
    route_put(f, "pc", "hc1", "\"policy\":{\"allow_cidr\":[\"127.0.0.0/8\"]}");
    assert_int_equal(hget(f, &h, "GET", "pc." GW_DOMAIN, "/echo", NULL), 200);
    hcli_free(&h);
}

/* Asks for id until the status is want (each answer is a real request; at most 3 s). */
static bool
eventually(struct gfx *f, const char *id, int want)
{
    char host[128];
    (void)snprintf(host, sizeof(host), "%s." GW_DOMAIN, id);
    uint64_t end = ahg_now_ms() + 3000;
    for (;;) {
        struct hcli h;
        int st = hget(f, &h, "GET", host, "/echo", NULL);
        hcli_free(&h);
        if (st == want)
            return true;
        if (ahg_now_ms() > end)
            return false;
        th_run(&f->t, 20);
    }
}

static void
test_gateway_invalidation_and_negative_cache(void **state)
{
    struct gfx *f = *state;
    struct hcli h;
    assert_int_equal(hget(f, &h, "GET", "late." GW_DOMAIN, "/echo", NULL), 404);
    hcli_free(&h);
    /* the route appears and is published: the negative entry (60 s here) is dropped as soon
     * as the message arrives */
    route_put(f, "late", "hc1", NULL);
    assert_true(eventually(f, "late", 200));
    route_del(f, "late");
    assert_true(eventually(f, "late", 404));
}

static void
test_gateway_newer_record_is_absent(void **state)
{
    struct gfx *f = *state;
    struct hcli h;
    route_put(f, "newer", "hc1", "\"x\":1}, \"y\":{\"z\":2");
    assert_int_equal(hget(f, &h, "GET", "newer." GW_DOMAIN, "/echo", NULL), 200);
    hcli_free(&h);
    char val[] = "{\"v\":2,\"id\":\"v2\",\"hc\":\"hc1\",\"relay\":\"" TH_HOST "\"}";
    route_put_raw(f, "v2", val);
    assert_int_equal(hget(f, &h, "GET", "v2." GW_DOMAIN, "/echo", NULL), 404);
    hcli_free(&h);
    route_put_raw(f, "bad", "{not json");
    assert_int_equal(hget(f, &h, "GET", "bad." GW_DOMAIN, "/echo", NULL), 404);
    hcli_free(&h);
}

static void
test_gateway_drain(void **state)
{
    struct gfx *f = *state;
    struct ahg_gw_opts o = {.admin_port = 0};
    struct ahg_gw *gw2 = gfx_gw_new(f, &o, gfx_store(f));
    struct hcli h;
    char raw[] = "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n";
    hcli_send(&f->t, &h, ahg_gw_admin_port(gw2), NULL, "GET", raw, 0, false);
    assert_true(hcli_wait(&h, 5000));
    assert_int_equal(h.status, 200);
    hcli_free(&h);
    char mraw[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    hcli_send(&f->t, &h, ahg_gw_admin_port(gw2), NULL, "GET", mraw, 0, false);
    assert_true(hcli_wait(&h, 5000));
    assert_int_equal(h.status, 200);
    assert_non_null(strstr(h.body, "azhexgate_gateway_"));
    hcli_free(&h);
    /* a request in flight finishes, new ones get 503 */
    char sraw[] = "GET /sse HTTP/1.1\r\nHost: t1." GW_DOMAIN "\r\n\r\n";
    struct hcli s;
    hcli_send(&f->t, &s, ahg_gw_port(gw2), NULL, "GET", sraw, 0, false);
    th_run(&f->t, 200);
    assert_true(ahg_gw_active(gw2) == 1);
    ahg_gw_drain(gw2);
    char raw2[] = "GET /echo HTTP/1.1\r\nHost: t1." GW_DOMAIN "\r\n\r\n";
    hcli_send(&f->t, &h, ahg_gw_port(gw2), NULL, "GET", raw2, 0, false);
    assert_true(hcli_wait(&h, 5000));
    assert_int_equal(h.status, 503);
    hcli_free(&h);
    hcli_send(&f->t, &h, ahg_gw_admin_port(gw2), NULL, "GET", raw, 0, false);
    assert_true(hcli_wait(&h, 5000));
    assert_int_equal(h.status, 503);
    hcli_free(&h);
    f->app.sse_ack = 100;
    assert_true(hcli_wait(&s, 5000));
    assert_int_equal(s.status, 200);
    assert_non_null(strstr(s.body, "event 2"));
    hcli_free(&s);
    f->app.sse_ack = 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gateway_routes_by_host),
        cmocka_unit_test(test_gateway_keepalive_pipelined),
        cmocka_unit_test(test_gateway_forwards_headers_unchanged),
        cmocka_unit_test(test_gateway_management_api),
        cmocka_unit_test(test_gateway_api_cidr_forbidden),
        cmocka_unit_test(test_gateway_tunnel_offline_502),
        cmocka_unit_test(test_gateway_relay_unreachable_502),
        cmocka_unit_test(test_gateway_response_timeout_504),
        cmocka_unit_test(test_gateway_limits_431_414_408),
        cmocka_unit_test(test_gateway_smuggling_matrix),
        cmocka_unit_test(test_gateway_policy_401_403),
        cmocka_unit_test(test_gateway_invalidation_and_negative_cache),
        cmocka_unit_test(test_gateway_newer_record_is_absent),
        cmocka_unit_test(test_gateway_drain),
    };
    return cmocka_run_group_tests(tests, setup, gfx_teardown);
}
