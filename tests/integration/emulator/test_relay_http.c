/*
 * The relay's HTTP mode over real sockets: an HTTP/1.1 client sends requests to /{hc}/..., a
 * listener written here answers on its control channel or over rendezvous sockets. Inline and
 * rendezvous-only requests, chunked uploads, a 10 MiB upload and download, HEAD/204 framing and
 * the hyco stray frame, token handling, 404/502/503/504, and backpressure both ways.
 */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ahg/err.h"
#include "ahg/hcmsg.h"
#include "ahg/url.h"

#define BIG (10u * 1024u * 1024u)

/* ---- listener side helpers ---- */

static void
listener(struct th *t, struct tws *l, const char *hc)
{
    char tok[1024], target[256];
    th_token(hc, NULL, NULL, 3600, tok, sizeof(tok));
    snprintf(target, sizeof(target), "/$hc/%s?sb-hc-action=listen", hc);
    const char *hdr[] = {"ServiceBusAuthorization", tok, NULL};
    tws_connect(t, l, target, hdr, NULL);
    assert_true(tws_wait_open(l, 5000));
}

/* Reads the next `request` (and its body message when it has one) from socket l. */
static void
next_request(struct tws *l, struct ahg_hcmsg *m, struct tmsg **body)
{
    struct tmsg *raw = tws_next(l, 5000);
    assert_non_null(raw);
    assert_int_equal(raw->op, AHG_WS_TEXT);
    if (ahg_hcmsg_parse((const char *)raw->data, raw->len, m) != AHG_OK)
        fail_msg("bad request message: %s", raw->data);
    tmsg_free(raw);
    assert_int_equal(m->type, AHG_HCMSG_REQUEST);
    if (body)
        *body = NULL;
    if (m->body == 1) {
        assert_non_null(body);
        *body = tws_next(l, 10000);
        assert_non_null(*body);
        assert_int_equal((*body)->op, AHG_WS_BINARY);
    }
}

/* Sends a `response` (and, when body is not NULL, one binary message) on socket ws. */
static void
respond(struct ahg_wsconn *ws, const char *id, int status, const char *desc,
        const char *const *headers, const void *body, size_t n)
{
    struct ahg_hcmsg m;
    ahg_hcmsg_init(&m, AHG_HCMSG_RESPONSE);
    struct ahg_hcmsg_header hs[8];
    size_t k = 0;
    for (size_t i = 0; headers && headers[i] && k < 8; i += 2, k++) {
        hs[k].name = (char *)(uintptr_t)headers[i];
        hs[k].value = (char *)(uintptr_t)headers[i + 1];
    }
    m.request_id = (char *)(uintptr_t)id;
    m.status_code = status;
    m.status_description = (char *)(uintptr_t)desc;
    m.headers = k ? hs : NULL;
    m.nheaders = k;
    m.body = body ? 1 : 0;
    char *json = NULL;
    size_t jlen = 0;
    assert_int_equal(ahg_hcmsg_encode(&m, &json, &jlen), AHG_OK);
    assert_int_equal(ahg_wsconn_send(ws, AHG_WS_TEXT, json, jlen), AHG_OK);
    free(json);
    if (body)
        assert_int_equal(ahg_wsconn_send(ws, AHG_WS_BINARY, body, n), AHG_OK);
}

static void
get(struct th *t, struct thttp *h, const char *target, const char *extra_headers)
{
    char req[4096];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", target, TH_HOST,
                     extra_headers ? extra_headers : "");
    thttp_send(t, h, "GET", req, (size_t)n);
}

static char *
auth_header(const char *name, const char *hc)
{
    static char buf[1200];
    char tok[1024];
    th_token(hc, NULL, NULL, 3600, tok, sizeof(tok));
    snprintf(buf, sizeof(buf), "%s: %s\r\n", name, tok);
    return buf;
}

static unsigned char *
pattern(size_t n, unsigned seed)
{
    unsigned char *p = malloc(n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)((i * 31u + seed) ^ (i >> 9));
    return p;
}

/* ---- tests ---- */

static void
test_relay_http_get_inline(void **state)
{
    (void)state;
    struct th t;
    th_start(&t, NULL);
    struct tws l;
    memset(&l, 0, sizeof(l));
    listener(&t, &l, "hc1");

    char tok[1024], enc[2048], target[2600];
    th_token("hc1", NULL, NULL, 3600, tok, sizeof(tok));
    assert_int_equal(ahg_url_encode(tok, strlen(tok), enc, sizeof(enc)), AHG_OK);
    snprintf(target, sizeof(target), "/hc1/a/b?x=1&sb-hc-token=%s&sb-hc-id=9&y=%%2B", enc);
    struct thttp h;
    memset(&h, 0, sizeof(h));
    get(&t, &h, target,
        "X-A: 1\r\nX-A: 2\r\nAuthorization: Basic Zm9vOmJhcg==\r\nConnection: keep-alive\r\n"
        "User-Agent: it/1\r\nTE: trailers\r\n");

    struct ahg_hcmsg m;
    next_request(&l, &m, NULL);
    assert_false(ahg_hcmsg_is_rendezvous_only(&m));
    assert_string_equal(m.method, "GET");
    assert_string_equal(m.request_target, "/hc1/a/b?x=1&y=%2B");
    assert_int_equal(m.body, 0);
    char prefix[128];
    snprintf(prefix, sizeof(prefix),
             "ws://127.0.0.1:%d/$hc/hc1?sb-hc-action=request&sb-hc-id=", t.port);
    assert_true(strncmp(m.address, prefix, strlen(prefix)) == 0);
    assert_non_null(strstr(m.address, m.id));
    assert_string_equal(ahg_hcmsg_header_get(&m, "X-A"), "1, 2");
    /* the token came in the query: Authorization is the app's and is forwarded */
    assert_string_equal(ahg_hcmsg_header_get(&m, "Authorization"), "Basic Zm9vOmJhcg==");
    assert_string_equal(ahg_hcmsg_header_get(&m, "User-Agent"), "it/1");
    assert_string_equal(ahg_hcmsg_header_get(&m, "Via"), "1.1 " TH_HOST);
    assert_null(ahg_hcmsg_header_get(&m, "Host"));
    assert_null(ahg_hcmsg_header_get(&m, "Connection"));
    assert_null(ahg_hcmsg_header_get(&m, "TE"));
    assert_string_equal(m.remote_address, "127.0.0.1");

    const char *rh[] = {"Content-Type", "text/plain",        "X-R",     "y", "Connection",
                        "close",        "Transfer-Encoding", "chunked", NULL};
    respond(l.ws, m.id, 200, "OK fine", rh, "hello", 5);
    ahg_hcmsg_clear(&m);
    assert_true(thttp_wait(&h, 5000));
    assert_int_equal(h.head->status, 200);
    assert_string_equal(h.head->reason, "OK fine");
    assert_string_equal(th_field(h.head, "Content-Length"), "5");
    assert_string_equal(th_field(h.head, "X-R"), "y");
    assert_string_equal(th_field(h.head, "Via"), "1.1 " TH_HOST);
    assert_string_equal(th_field(h.head, "Connection"), "");
    assert_int_equal(h.blen, 5);
    assert_memory_equal(h.body, "hello", 5);
    thttp_free(&h);

    /* the token as Authorization (no other token): consumed, not forwarded */
    get(&t, &h, "/hc1/c", auth_header("Authorization", "hc1"));
    next_request(&l, &m, NULL);
    assert_null(ahg_hcmsg_header_get(&m, "Authorization"));
    assert_string_equal(m.request_target, "/hc1/c");
    respond(l.ws, m.id, 204, NULL, NULL, NULL, 0);
    ahg_hcmsg_clear(&m);
    assert_true(thttp_wait(&h, 5000));
    assert_int_equal(h.head->status, 204);
    thttp_free(&h);

    /* ServiceBusAuthorization is consumed, Authorization then passes untouched */
    char hdrs[1400];
    snprintf(hdrs, sizeof(hdrs), "%sAuthorization: Bearer app\r\n",
             auth_header("ServiceBusAuthorization", "hc1"));
    get(&t, &h, "/hc1", hdrs);
    next_request(&l, &m, NULL);
    assert_null(ahg_hcmsg_header_get(&m, "ServiceBusAuthorization"));
    assert_string_equal(ahg_hcmsg_header_get(&m, "Authorization"), "Bearer app");
    respond(l.ws, m.id, 200, NULL, NULL, "", 0); /* body:true + empty FIN = empty body */
    ahg_hcmsg_clear(&m);
    assert_true(thttp_wait(&h, 5000));
    assert_int_equal(h.head->status, 200);
    assert_string_equal(th_field(h.head, "Content-Length"), "0");
    thttp_free(&h);
    assert_int_equal(t.e->m_http_requests, 3);

    /* keep-alive: two requests, one connection */
    static const char r1[] = "GET /open/one HTTP/1.1\r\nHost: x\r\n\r\n";
    static const char r2[] = "GET /open/two HTTP/1.1\r\nHost: x\r\n\r\n";
    struct tws lo;
    memset(&lo, 0, sizeof(lo));
    listener(&t, &lo, "open");
    thttp_send(&t, &h, "GET", r1, sizeof(r1) - 1);
    next_request(&lo, &m, NULL);
    assert_string_equal(m.request_target, "/open/one");
    respond(lo.ws, m.id, 200, NULL, NULL, "1", 1);
    ahg_hcmsg_clear(&m);
    assert_true(thttp_wait(&h, 5000));
    assert_string_equal(th_field(h.head, "Connection"), "");
    struct ahg_conn *first = h.c;
    thttp_again(&h, "GET", r2, sizeof(r2) - 1);
    next_request(&lo, &m, NULL);
    assert_string_equal(m.request_target, "/open/two");
    respond(lo.ws, m.id, 200, NULL, NULL, "2", 1);
    ahg_hcmsg_clear(&m);
    assert_true(thttp_wait(&h, 5000));
    assert_ptr_equal(h.c, first);
    assert_memory_equal(h.body, "2", 1);
    thttp_free(&h);
    tws_free(&lo);
    tws_free(&l);
    th_stop(&t);
}

static void
test_relay_http_errors(void **state)
{
    (void)state;
    struct th t;
    th_start(&t, NULL);
    struct thttp h;
    memset(&h, 0, sizeof(h));
    get(&t, &h, "/hc1/x", auth_header("ServiceBusAuthorization", "hc1"));
    assert_true(thttp_wait(&h, 5000));
    assert_int_equal(h.head->status, 404);
    assert_non_null(strstr(h.head->reason, "There are no listeners connected for the endpoint."));
    assert_string_equal(th_field(h.head, "Via"), ""); /* relay-made: no Via */
    thttp_free(&h);
    get(&t, &h, "/nohc/x", auth_header("ServiceBusAuthorization", "nohc"));
    assert_true(thttp_wait(&h, 5000));
    assert_int_equal(h.head->status, 404);
    assert_non_null(strstr(h.head->reason, "Endpoint does not exist."));
    thttp_free(&h);
    get(&t, &h, "/hc1/x", NULL);
    assert_true(thttp_wait(&h, 5000));
    assert_int_equal(h.head->status, 401);
    assert_non_null(strstr(h.head->reason, "TrackingId:"));
    thttp_free(&h);
    get(&t, &h, "/open/x", NULL); /* requiresClientAuthorization false: no token needed */
    assert_true(thttp_wait(&h, 5000));
    assert_int_equal(h.head->status, 404);
    assert_non_null(strstr(h.head->reason, "There are no listeners"));
    thttp_free(&h);
    get(&t, &h, "/hc1/%zz", NULL);
    assert_true(thttp_wait(&h, 5000));
    assert_int_equal(h.head->status, 400);
    thttp_free(&h);
    th_stop(&t);
}

static void
test_relay_http_post_inline(void **state)
{
    (void)state;
    struct th t;
    th_start(&t, NULL);
    struct tws l;
    memset(&l, 0, sizeof(l));
    listener(&t, &l, "open");
    /* 60000 bytes: request JSON plus body still fit 64 KiB */
    size_t n = 60000;
    unsigned char *body = pattern(n, 1);
    char head[256];
    int hl = snprintf(head, sizeof(head),
                      "POST /open/up HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-it\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      n);
    unsigned char *req = malloc((size_t)hl + n);
    assert_non_null(req);
    memcpy(req, head, (size_t)hl);
    memcpy(req + hl, body, n);
    struct thttp h;
    memset(&h, 0, sizeof(h));
    thttp_send(&t, &h, "POST", req, (size_t)hl + n);
    free(req);
    struct ahg_hcmsg m;
    struct tmsg *b = NULL;
    next_request(&l, &m, &b);
    assert_string_equal(m.method, "POST");
    assert_int_equal(m.body, 1);
    assert_null(ahg_hcmsg_header_get(&m, "Content-Length"));
    assert_string_equal(ahg_hcmsg_header_get(&m, "Content-Type"), "application/x-it");
    assert_int_equal(b->len, n);
    assert_memory_equal(b->data, body, n);
    respond(l.ws, m.id, 201, "Created", NULL, b->data, b->len);
    tmsg_free(b);
    ahg_hcmsg_clear(&m);
    assert_true(thttp_wait(&h, 5000));
    assert_int_equal(h.head->status, 201);
    assert_int_equal(h.blen, n);
    assert_memory_equal(h.body, body, n);
    thttp_free(&h);
    free(body);
    tws_free(&l);
    th_stop(&t);
}

static void
test_relay_http_large_via_rendezvous(void **state)
{
    (void)state;
    struct th t;
    th_start(&t, NULL);
    struct tws l, r;
    memset(&l, 0, sizeof(l));
    memset(&r, 0, sizeof(r));
    listener(&t, &l, "open");
    unsigned char *body = pattern(BIG, 2);
    char head[256];
    int hl = snprintf(head, sizeof(head),
                      "PUT /open/big?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: %u\r\n\r\n", BIG);
    unsigned char *req = malloc((size_t)hl + BIG);
    assert_non_null(req);
    memcpy(req, head, (size_t)hl);
    memcpy(req + hl, body, BIG);
    struct thttp h;
    memset(&h, 0, sizeof(h));
    thttp_send(&t, &h, "PUT", req, (size_t)hl + BIG);
    free(req);

    /* over 64 KiB: a rendezvous-only request on the control channel */
    struct ahg_hcmsg m;
    next_request(&l, &m, NULL);
    assert_true(ahg_hcmsg_is_rendezvous_only(&m));
    assert_non_null(m.id);
    tws_connect_url(&t, &r, m.address, NULL, NULL);
    char id[256];
    snprintf(id, sizeof(id), "%s", m.id);
    ahg_hcmsg_clear(&m);
    assert_true(tws_wait_open(&r, 5000));
    /* the whole request comes over the rendezvous */
    struct tmsg *b = NULL;
    next_request(&r, &m, &b);
    assert_string_equal(m.id, id);
    assert_string_equal(m.method, "PUT");
    assert_string_equal(m.request_target, "/open/big?q=1");
    assert_int_equal(b->len, BIG);
    assert_memory_equal(b->data, body, BIG);
    tmsg_free(b);
    ahg_hcmsg_clear(&m);

    respond(r.ws, id, 200, "OK", NULL, NULL, 0);
    assert_true(thttp_wait(&h, 5000));
    assert_int_equal(h.head->status, 200);
    assert_int_equal(h.blen, 0);
    assert_true(tws_wait_close(&r, 5000));
    assert_int_equal(r.close_code, 1000); /* the relay closes the rendezvous after a response */
    tws_free(&r);
    thttp_free(&h);

    /* a chunked request goes over a rendezvous too; the response comes back as 10 MiB in
     * eleven non-final frames and an empty final one */
    unsigned char *out = pattern(BIG, 3);
    static const char creq[] = "POST /open/dl HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                               "\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    thttp_send(&t, &h, "POST", creq, sizeof(creq) - 1);
    next_request(&l, &m, NULL);
    assert_true(ahg_hcmsg_is_rendezvous_only(&m));
    tws_connect_url(&t, &r, m.address, NULL, NULL);
    ahg_hcmsg_clear(&m);
    assert_true(tws_wait_open(&r, 5000));
    next_request(&r, &m, &b);
    assert_int_equal(b->len, 11);
    assert_memory_equal(b->data, "hello world", 11);
    tmsg_free(b);
    struct ahg_hcmsg resp;
    ahg_hcmsg_init(&resp, AHG_HCMSG_RESPONSE);
    resp.request_id = m.id;
    resp.status_code = 200;
    resp.body = 1;
    char *json = NULL;
    size_t jlen = 0;
    assert_int_equal(ahg_hcmsg_encode(&resp, &json, &jlen), AHG_OK);
    assert_int_equal(ahg_wsconn_send(r.ws, AHG_WS_TEXT, json, jlen), AHG_OK);
    free(json);
    ahg_hcmsg_clear(&m);
    size_t k = BIG / 10;
    for (size_t i = 0; i < 10; i++) {
        assert_int_equal(ahg_wsconn_send_frame(r.ws, i ? AHG_WS_CONT : AHG_WS_BINARY, false, k),
                         AHG_OK);
        assert_int_equal(ahg_wsconn_send_data(r.ws, out + i * k, k), AHG_OK);
        th_run(&t, 5);
    }
    assert_int_equal(ahg_wsconn_send_frame(r.ws, AHG_WS_CONT, false, BIG - 10 * k), AHG_OK);
    assert_int_equal(ahg_wsconn_send_data(r.ws, out + 10 * k, BIG - 10 * k), AHG_OK);
    assert_int_equal(ahg_wsconn_send_frame(r.ws, AHG_WS_CONT, true, 0), AHG_OK);
    assert_true(thttp_wait(&h, 20000));
    assert_int_equal(h.head->status, 200);
    assert_string_equal(th_field(h.head, "Transfer-Encoding"), "chunked");
    assert_int_equal(h.blen, BIG);
    assert_memory_equal(h.body, out, BIG);
    assert_true(tws_wait_close(&r, 5000));
    assert_int_equal(r.close_code, 1000);
    tws_free(&r);
    thttp_free(&h);
    free(out);
    free(body);
    tws_free(&l);
    th_stop(&t);
}

static void
test_relay_http_response_over_listener_rendezvous(void **state)
{
    (void)state;
    struct th t;
    th_start(&t, NULL);
    struct tws l, r;
    memset(&l, 0, sizeof(l));
    memset(&r, 0, sizeof(r));
    listener(&t, &l, "open");
    struct thttp h;
    memset(&h, 0, sizeof(h));
    get(&t, &h, "/open/page", NULL);
    struct ahg_hcmsg m;
    next_request(&l, &m, NULL);
    /* hyco-https upgrades a large response: it dials the request's address itself */
    tws_connect_url(&t, &r, m.address, NULL, NULL);
    assert_true(tws_wait_open(&r, 5000));
    size_t n = 100000;
    unsigned char *out = pattern(n, 4);
    const char *rh[] = {"content-type", "application/octet-stream", NULL};
    respond(r.ws, m.id, 200, "OK", rh, out, n);
    /* a late answer on the control channel is ignored */
    respond(l.ws, m.id, 500, "late", NULL, "zz", 2);
    ahg_hcmsg_clear(&m);
    assert_true(thttp_wait(&h, 5000));
    assert_int_equal(h.head->status, 200);
    assert_string_equal(th_field(h.head, "Content-Length"), "100000");
    assert_string_equal(th_field(h.head, "content-type"), "application/octet-stream");
    assert_int_equal(h.blen, n);
    assert_memory_equal(h.body, out, n);
    assert_true(tws_wait_close(&r, 5000));
    thttp_free(&h);
    tws_free(&r);
    /* the control channel still works */
    get(&t, &h, "/open/again", NULL);
    next_request(&l, &m, NULL);
    respond(l.ws, m.id, 200, NULL, NULL, "ok", 2);
    ahg_hcmsg_clear(&m);
    assert_true(thttp_wait(&h, 5000));
    assert_int_equal(h.head->status, 200);
    assert_memory_equal(h.body, "ok", 2);
    thttp_free(&h);
    free(out);
    tws_free(&l);
    th_stop(&t);
}

static void
test_relay_http_head_204_and_stray_frame(void **state)
{
    (void)state;
    struct th t;
    th_start(&t, NULL);
    struct tws l;
    memset(&l, 0, sizeof(l));
    listener(&t, &l, "open");
    struct thttp h;
    memset(&h, 0, sizeof(h));
    static const char hreq[] = "HEAD /open/h HTTP/1.1\r\nHost: x\r\n\r\n";
    thttp_send(&t, &h, "HEAD", hreq, sizeof(hreq) - 1);
    struct ahg_hcmsg m;
    next_request(&l, &m, NULL);
    assert_string_equal(m.method, "HEAD");
    respond(l.ws, m.id, 200, NULL, NULL, "hello", 5); /* hyco-https sends a body for HEAD */
    ahg_hcmsg_clear(&m);
    assert_true(thttp_wait(&h, 5000));
    assert_int_equal(h.head->status, 200);
    assert_string_equal(th_field(h.head, "Content-Length"), "5");
    assert_int_equal(h.blen, 0);
    thttp_free(&h);

    /* 204 with body:false, then hyco's stray empty binary frame, then the next request */
    get(&t, &h, "/open/nc", NULL);
    next_request(&l, &m, NULL);
    respond(l.ws, m.id, 204, "No Content", NULL, NULL, 0);
    assert_int_equal(ahg_wsconn_send(l.ws, AHG_WS_BINARY, "", 0), AHG_OK);
    ahg_hcmsg_clear(&m);
    assert_true(thttp_wait(&h, 5000));
    assert_int_equal(h.head->status, 204);
    thttp_free(&h);
    get(&t, &h, "/open/after", NULL);
    next_request(&l, &m, NULL);
    respond(l.ws, m.id, 200, NULL, NULL, "fine", 4);
    ahg_hcmsg_clear(&m);
    assert_true(thttp_wait(&h, 5000));
    assert_int_equal(h.head->status, 200);
    assert_memory_equal(h.body, "fine", 4);
    thttp_free(&h);

    /* a 304 with a body from the listener: none reaches the sender; a bad status is 502 */
    get(&t, &h, "/open/nm", NULL);
    next_request(&l, &m, NULL);
    respond(l.ws, m.id, 304, NULL, NULL, "junk", 4);
    ahg_hcmsg_clear(&m);
    assert_true(thttp_wait(&h, 5000));
    assert_int_equal(h.head->status, 304);
    assert_int_equal(h.blen, 0);
    thttp_free(&h);
    get(&t, &h, "/open/bad", NULL);
    next_request(&l, &m, NULL);
    respond(l.ws, m.id, 101, NULL, NULL, NULL, 0);
    ahg_hcmsg_clear(&m);
    assert_true(thttp_wait(&h, 5000));
    assert_int_equal(h.head->status, 502);
    thttp_free(&h);
    tws_free(&l);
    th_stop(&t);
}

static void
test_relay_http_timeout_504_and_drop_502(void **state)
{
    (void)state;
    struct th t;
    const char *extra[] = {"--emulator-response-timeout=400ms", NULL};
    th_start(&t, extra);
    struct tws l;
    memset(&l, 0, sizeof(l));
    listener(&t, &l, "open");
    struct thttp h;
    memset(&h, 0, sizeof(h));
    get(&t, &h, "/open/slow", NULL);
    struct ahg_hcmsg m;
    next_request(&l, &m, NULL);
    uint64_t t0 = ahg_now_ms();
    assert_true(thttp_wait(&h, 5000));
    assert_true(ahg_now_ms() - t0 >= 300);
    assert_int_equal(h.head->status, 504);
    assert_non_null(strstr(h.head->reason, "The request was routed to the listener but the "
                                           "listener did not respond in the required time."));
    assert_int_equal(t.e->m_http_504, 1);
    thttp_free(&h);
    /* the late answer is ignored, the listener stays */
    respond(l.ws, m.id, 200, NULL, NULL, "late", 4);
    ahg_hcmsg_clear(&m);
    th_run(&t, 100);
    assert_false(l.closed);

    /* the listener drops with a request in flight: 502 */
    get(&t, &h, "/open/drop", NULL);
    next_request(&l, &m, NULL);
    ahg_hcmsg_clear(&m);
    ahg_wsconn_abort(l.ws);
    assert_true(thttp_wait(&h, 5000));
    assert_int_equal(h.head->status, 502);
    thttp_free(&h);
    tws_free(&l);

    /* a response that starts and then stalls: the sender's connection is dropped */
    listener(&t, &l, "open");
    get(&t, &h, "/open/stall", NULL);
    next_request(&l, &m, NULL);
    struct ahg_hcmsg resp;
    ahg_hcmsg_init(&resp, AHG_HCMSG_RESPONSE);
    resp.request_id = m.id;
    resp.status_code = 200;
    resp.body = 1;
    char *json = NULL;
    size_t jlen = 0;
    assert_int_equal(ahg_hcmsg_encode(&resp, &json, &jlen), AHG_OK);
    assert_int_equal(ahg_wsconn_send(l.ws, AHG_WS_TEXT, json, jlen), AHG_OK);
    free(json);
    ahg_hcmsg_clear(&m);
    assert_int_equal(ahg_wsconn_send_frame(l.ws, AHG_WS_BINARY, false, 3), AHG_OK);
    assert_int_equal(ahg_wsconn_send_data(l.ws, "abc", 3), AHG_OK);
    assert_false(thttp_wait(&h, 5000));
    assert_true(h.closed);
    assert_int_equal(h.head->status, 200);
    thttp_free(&h);
    tws_free(&l);
    th_stop(&t);
}

static void
test_relay_http_slow_listener_is_bounded(void **state)
{
    (void)state;
    struct th t;
    th_start(&t, NULL);
    struct tws l;
    memset(&l, 0, sizeof(l));
    listener(&t, &l, "open");
    ahg_wsconn_pause_read(l.ws); /* never reads its control channel */
    enum { N = 400 };
    static struct thttp hs[N];
    size_t n = 60000;
    unsigned char *body = pattern(n, 5);
    char head[256];
    int hl = snprintf(head, sizeof(head),
                      "POST /open/q HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", n);
    unsigned char *req = malloc((size_t)hl + n);
    assert_non_null(req);
    memcpy(req, head, (size_t)hl);
    memcpy(req + hl, body, n);
    for (int i = 0; i < N; i++) {
        memset(&hs[i], 0, sizeof(hs[i]));
        thttp_send(&t, &hs[i], "POST", req, (size_t)hl + n);
        if (i % 20 == 19)
            th_run(&t, 20);
    }
    free(req);
    free(body);
    /* N * 60 kB = 24 MB of requests: more than the control channel backlog may hold */
    int busy = 0;
    uint64_t end = ahg_now_ms() + 10000;
    while (ahg_now_ms() < end) {
        busy = 0;
        for (int i = 0; i < N; i++)
            if (hs[i].head && hs[i].head->status == 503)
                busy++;
        if (busy)
            break;
        th_run(&t, 20);
    }
    assert_true(busy > 0);
    for (int i = 0; i < N; i++)
        if (hs[i].head) {
            assert_int_equal(hs[i].head->status, 503);
            assert_non_null(strstr(hs[i].head->reason, "not reading"));
        }
    for (int i = 0; i < N; i++)
        thttp_free(&hs[i]);
    tws_free(&l);
    th_stop(&t);
}

static void
test_relay_http_download_backpressure(void **state)
{
    (void)state;
    struct th t;
    th_start(&t, NULL);
    struct tws l, r;
    memset(&l, 0, sizeof(l));
    memset(&r, 0, sizeof(r));
    listener(&t, &l, "open");
    struct thttp h;
    memset(&h, 0, sizeof(h));
    h.count_only = true;
    get(&t, &h, "/open/huge", NULL);
    struct ahg_hcmsg m;
    next_request(&l, &m, NULL);
    tws_connect_url(&t, &r, m.address, NULL, NULL);
    assert_true(tws_wait_open(&r, 5000));
    struct ahg_hcmsg resp;
    ahg_hcmsg_init(&resp, AHG_HCMSG_RESPONSE);
    resp.request_id = m.id;
    resp.status_code = 200;
    resp.body = 1;
    char *json = NULL;
    size_t jlen = 0;
    assert_int_equal(ahg_hcmsg_encode(&resp, &json, &jlen), AHG_OK);
    assert_int_equal(ahg_wsconn_send(r.ws, AHG_WS_TEXT, json, jlen), AHG_OK);
    free(json);
    ahg_hcmsg_clear(&m);

    /* the sender stops reading: the listener's rendezvous must stop draining */
    h.paused = true;
    ahg_conn_pause_read(h.c);
    size_t chunk = 64u * 1024u;
    unsigned char *buf = calloc(1, chunk);
    assert_non_null(buf);
    uint64_t sent = 0, stuck_since = 0;
    bool first = true;
    for (;;) {
        while (ahg_wsconn_writable(r.ws) && sent < 512ull * 1024 * 1024) {
            assert_int_equal(
                ahg_wsconn_send_frame(r.ws, first ? AHG_WS_BINARY : AHG_WS_CONT, false, chunk),
                AHG_OK);
            assert_int_equal(ahg_wsconn_send_data(r.ws, buf, chunk), AHG_OK);
            first = false;
            sent += chunk;
            stuck_since = 0;
        }
        if (!stuck_since)
            stuck_since = ahg_now_ms();
        else if (ahg_now_ms() - stuck_since > 1000)
            break;
        ahg_loop_run_once(t.loop);
    }
    if (sent > 64ull * 1024 * 1024)
        fail_msg("%llu bytes accepted while the sender did not read", (unsigned long long)sent);
    assert_int_equal(ahg_wsconn_send_frame(r.ws, AHG_WS_CONT, true, 0), AHG_OK);
    h.paused = false;
    ahg_conn_resume_read(h.c);
    assert_true(thttp_wait(&h, 30000));
    assert_int_equal(h.got, sent);
    free(buf);
    thttp_free(&h);
    tws_free(&r);
    tws_free(&l);
    th_stop(&t);
}

static void
test_relay_http_sender_gone(void **state)
{
    (void)state;
    struct th t;
    th_start(&t, NULL);
    struct tws l, r;
    memset(&l, 0, sizeof(l));
    memset(&r, 0, sizeof(r));
    listener(&t, &l, "open");
    /* a rendezvous-only request whose sender leaves: the rendezvous closes with 1001 */
    struct thttp h;
    memset(&h, 0, sizeof(h));
    static const char creq[] = "POST /open/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                               "\r\n5\r\nhello\r\n";
    thttp_send(&t, &h, "POST", creq, sizeof(creq) - 1);
    struct ahg_hcmsg m;
    next_request(&l, &m, NULL);
    tws_connect_url(&t, &r, m.address, NULL, NULL);
    ahg_hcmsg_clear(&m);
    assert_true(tws_wait_open(&r, 5000));
    struct tmsg *f = tws_next(&r, 5000); /* the request JSON; the body is still open */
    assert_non_null(f);
    tmsg_free(f);
    thttp_free(&h);
    assert_true(tws_wait_close(&r, 5000));
    assert_int_equal(r.close_code, 1001);
    tws_free(&r);
    /* an inline request whose sender left: its address is no longer valid */
    get(&t, &h, "/open/y", NULL);
    next_request(&l, &m, NULL);
    thttp_free(&h);
    th_run(&t, 100);
    tws_connect_url(&t, &r, m.address, NULL, NULL);
    assert_true(tws_wait_fail(&r, 5000));
    assert_int_equal(r.fail_status, 403);
    ahg_hcmsg_clear(&m);
    tws_free(&r);
    tws_free(&l);
    th_stop(&t);
}

static void
send_response_json(struct ahg_wsconn *ws, const char *id, int status, bool body, bool split)
{
    struct ahg_hcmsg resp;
    ahg_hcmsg_init(&resp, AHG_HCMSG_RESPONSE);
    resp.request_id = (char *)(uintptr_t)id;
    resp.status_code = status;
    resp.body = body ? 1 : 0;
    char *json = NULL;
    size_t jlen = 0;
    assert_int_equal(ahg_hcmsg_encode(&resp, &json, &jlen), AHG_OK);
    if (split) { /* a fragmented text message */
        assert_int_equal(ahg_wsconn_send_frame(ws, AHG_WS_TEXT, false, 5), AHG_OK);
        assert_int_equal(ahg_wsconn_send_data(ws, json, 5), AHG_OK);
        assert_int_equal(ahg_wsconn_ping(ws, "p", 1), AHG_OK);
        assert_int_equal(ahg_wsconn_send_frame(ws, AHG_WS_CONT, true, jlen - 5), AHG_OK);
        assert_int_equal(ahg_wsconn_send_data(ws, json + 5, jlen - 5), AHG_OK);
    } else {
        assert_int_equal(ahg_wsconn_send(ws, AHG_WS_TEXT, json, jlen), AHG_OK);
    }
    free(json);
}

static void
test_relay_http_fragments_and_hc_delete(void **state)
{
    (void)state;
    struct th t;
    th_start(&t, NULL);
    struct tws l;
    memset(&l, 0, sizeof(l));
    listener(&t, &l, "open");
    struct thttp h;
    memset(&h, 0, sizeof(h));
    get(&t, &h, "/open/frag", NULL);
    struct ahg_hcmsg m;
    next_request(&l, &m, NULL);
    /* the response JSON in two fragments, the body in three, pings in between */
    send_response_json(l.ws, m.id, 200, true, true);
    ahg_hcmsg_clear(&m);
    assert_int_equal(ahg_wsconn_send_frame(l.ws, AHG_WS_BINARY, false, 2), AHG_OK);
    assert_int_equal(ahg_wsconn_send_data(l.ws, "ab", 2), AHG_OK);
    assert_int_equal(ahg_wsconn_ping(l.ws, "q", 1), AHG_OK);
    assert_int_equal(ahg_wsconn_send_frame(l.ws, AHG_WS_CONT, false, 2), AHG_OK);
    assert_int_equal(ahg_wsconn_send_data(l.ws, "cd", 2), AHG_OK);
    assert_int_equal(ahg_wsconn_send_frame(l.ws, AHG_WS_CONT, true, 1), AHG_OK);
    assert_int_equal(ahg_wsconn_send_data(l.ws, "e", 1), AHG_OK);
    assert_true(thttp_wait(&h, 5000));
    assert_int_equal(h.head->status, 200);
    assert_string_equal(th_field(h.head, "Transfer-Encoding"), "chunked");
    assert_int_equal(h.blen, 5);
    assert_memory_equal(h.body, "abcde", 5);
    thttp_free(&h);
    th_run(&t, 50);
    assert_int_equal(l.pongs, 2);

    /* a response promising a body followed by another text message: 502 */
    get(&t, &h, "/open/broken", NULL);
    next_request(&l, &m, NULL);
    send_response_json(l.ws, m.id, 200, true, false);
    assert_int_equal(ahg_wsconn_send(l.ws, AHG_WS_TEXT, "{}", 2), AHG_OK);
    ahg_hcmsg_clear(&m);
    assert_true(thttp_wait(&h, 5000));
    assert_int_equal(h.head->status, 502);
    thttp_free(&h);

    /* the HC is deleted with a request in flight: the sender gets 404, the listener 1001 */
    get(&t, &h, "/open/gone", NULL);
    next_request(&l, &m, NULL);
    ahg_hcmsg_clear(&m);
    assert_int_equal(emu_hc_delete(t.e, "open"), AHG_OK);
    assert_true(thttp_wait(&h, 5000));
    assert_int_equal(h.head->status, 404);
    assert_non_null(strstr(h.head->reason, "Endpoint does not exist."));
    assert_true(tws_wait_close(&l, 5000));
    assert_int_equal(l.close_code, 1001);
    thttp_free(&h);
    tws_free(&l);
    th_stop(&t);
}

static void
test_relay_http_latency_lanes(void **state)
{
    (void)state;
    struct th t;
    const char *extra[] = {"--emulator-latency-lane=100ms", "--emulator-latency-sas=100ms", NULL};
    th_start(&t, extra);
    struct tws l;
    memset(&l, 0, sizeof(l));
    listener(&t, &l, "hc1");
    struct thttp h;
    memset(&h, 0, sizeof(h));
    for (int i = 0; i < 2; i++) {
        uint64_t t0 = ahg_now_ms();
        get(&t, &h, "/hc1/slow", auth_header("ServiceBusAuthorization", "hc1"));
        struct ahg_hcmsg m;
        next_request(&l, &m, NULL);
        assert_true(ahg_now_ms() - t0 >= 190); /* token check + listener lane */
        if (i)
            respond(l.ws, m.id, 200, NULL, NULL, "body", 4);
        else
            respond(l.ws, m.id, 204, NULL, NULL, NULL, 0);
        ahg_hcmsg_clear(&m);
        assert_true(thttp_wait(&h, 5000));
        assert_true(ahg_now_ms() - t0 >= 290); /* + the sender lane */
        assert_int_equal(h.head->status, i ? 200 : 204);
        assert_int_equal(h.blen, i ? 4 : 0);
        thttp_free(&h);
    }
    /* a request whose sender leaves during the token check */
    static const char req[] = "GET /hc1/x HTTP/1.1\r\nHost: x\r\n"
                              "ServiceBusAuthorization: SharedAccessSignature sr=x&sig=y&se=1&skn=z"
                              "\r\n\r\n";
    thttp_send(&t, &h, "GET", req, sizeof(req) - 1);
    th_run(&t, 30);
    thttp_free(&h);
    th_run(&t, 150);
    assert_int_equal(l.nmsgs, 0);
    tws_free(&l);
    th_stop(&t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relay_http_get_inline),
        cmocka_unit_test(test_relay_http_errors),
        cmocka_unit_test(test_relay_http_post_inline),
        cmocka_unit_test(test_relay_http_large_via_rendezvous),
        cmocka_unit_test(test_relay_http_response_over_listener_rendezvous),
        cmocka_unit_test(test_relay_http_head_204_and_stray_frame),
        cmocka_unit_test(test_relay_http_timeout_504_and_drop_502),
        cmocka_unit_test(test_relay_http_slow_listener_is_bounded),
        cmocka_unit_test(test_relay_http_download_backpressure),
        cmocka_unit_test(test_relay_http_sender_gone),
        cmocka_unit_test(test_relay_http_fragments_and_hc_delete),
        cmocka_unit_test(test_relay_http_latency_lanes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
