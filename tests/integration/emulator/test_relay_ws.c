/*
 * The relay's WebSocket side over real sockets: listener control channels (auth failures with
 * the real statuses, quota, subprotocol, ping/pong, renewToken, token expiry, HC deletion) and
 * sender connect -> accept -> rendezvous -> splice (held 101, echo both ways, 1 MiB and
 * fragmented messages, close propagation, rejection, expired/unknown addresses, backpressure).
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

/* ---- helpers ---- */

static void
listen_on(struct th *t, struct tws *l, const char *hc, const char *id, const char *token)
{
    char target[512];
    snprintf(target, sizeof(target), "/$hc/%s?sb-hc-action=listen%s%s", hc, id ? "&sb-hc-id=" : "",
             id ? id : "");
    const char *hdr[] = {"ServiceBusAuthorization", token, NULL};
    tws_connect(t, l, target, token ? hdr : NULL, NULL);
}

static void
listener(struct th *t, struct tws *l, const char *id)
{
    char tok[1024];
    th_token("hc1", NULL, NULL, 3600, tok, sizeof(tok));
    listen_on(t, l, "hc1", id, tok);
    assert_true(tws_wait_open(l, 5000));
}

/* A sender with one optional extra header (xname NULL = none). */
static void
sender(struct th *t, struct tws *s, const char *target, const char *xname, const char *xvalue,
       const char *proto)
{
    char tok[1024];
    th_token("hc1", NULL, NULL, 3600, tok, sizeof(tok));
    const char *hdr[] = {"ServiceBusAuthorization", tok, xname, xvalue, NULL};
    tws_connect(t, s, target, hdr, proto);
}

/* Waits for the accept message on control channel l. */
static void
next_accept(struct tws *l, struct ahg_hcmsg *m)
{
    struct tmsg *raw = tws_next(l, 5000);
    assert_non_null(raw);
    assert_int_equal(raw->op, AHG_WS_TEXT);
    assert_int_equal(ahg_hcmsg_parse((const char *)raw->data, raw->len, m), AHG_OK);
    assert_int_equal(m->type, AHG_HCMSG_ACCEPT);
    tmsg_free(raw);
}

static void
expect_fail(struct tws *c, int status, const char *reason_part)
{
    assert_true(tws_wait_fail(c, 5000));
    if (c->fail_status != status || !strstr(c->fail_reason, reason_part))
        fail_msg("expected %d '%s', got %d '%s'", status, reason_part, c->fail_status,
                 c->fail_reason);
    if (status != 410)
        assert_non_null(strstr(c->fail_reason, "TrackingId:"));
}

/* A listener, a sender and the spliced rendezvous between them. */
struct trio {
    struct tws l, s, r;
};

static void
splice(struct th *t, struct trio *x, bool frames)
{
    listener(t, &x->l, "L1");
    sender(t, &x->s, "/$hc/hc1?sb-hc-action=connect", NULL, NULL, NULL);
    struct ahg_hcmsg m;
    next_accept(&x->l, &m);
    x->r.frames = frames;
    tws_connect_url(t, &x->r, m.address, NULL, NULL);
    ahg_hcmsg_clear(&m);
    assert_true(tws_wait_open(&x->r, 5000));
    assert_true(tws_wait_open(&x->s, 5000));
}

static void
trio_free(struct trio *x)
{
    tws_free(&x->l);
    tws_free(&x->s);
    tws_free(&x->r);
}

/* ---- listener control channel ---- */

static void
test_relay_listen_auth_failures(void **state)
{
    (void)state;
    struct th t;
    th_start(&t, NULL);
    char tok[1024];
    struct tws c;

    /* no token */
    memset(&c, 0, sizeof(c));
    listen_on(&t, &c, "hc1", NULL, NULL);
    expect_fail(&c, 401, "");
    tws_free(&c);

    /* a token signed with another key */
    th_token("hc1", NULL, "AAAAd2Wq7Lr4Tz9Pb1Vc6Ys3Hf8Jk0Ga5Ue2Io7Rw4Q=", 3600, tok, sizeof(tok));
    listen_on(&t, &c, "hc1", NULL, tok);
    expect_fail(&c, 401, "signature");
    tws_free(&c);

    /* expired */
    th_token("hc1", NULL, NULL, -60, tok, sizeof(tok));
    listen_on(&t, &c, "hc1", NULL, tok);
    expect_fail(&c, 401, "xpired");
    tws_free(&c);

    /* a token for another HC (wrong audience) */
    th_token("other", NULL, NULL, 3600, tok, sizeof(tok));
    listen_on(&t, &c, "hc1", NULL, tok);
    expect_fail(&c, 401, "udience");
    tws_free(&c);

    /* a rule without Listen */
    int err = 0;
    struct emu_hc *hc = emu_hc_find(t.e, "hc1");
    assert_non_null(hc);
    struct emu_rule *r = emu_rule_put(t.e, hc, "sendonly", EMU_RIGHT_SEND, &err);
    assert_non_null(r);
    th_token("hc1", "sendonly", r->primary, 3600, tok, sizeof(tok));
    listen_on(&t, &c, "hc1", NULL, tok);
    expect_fail(&c, 403, "Listen");
    tws_free(&c);

    /* unknown HC, and a path below an HC */
    th_token("nohc", NULL, NULL, 3600, tok, sizeof(tok));
    listen_on(&t, &c, "nohc", NULL, tok);
    expect_fail(&c, 404, "Endpoint does not exist.");
    tws_free(&c);
    th_token("hc1", NULL, NULL, 3600, tok, sizeof(tok));
    listen_on(&t, &c, "hc1/below", NULL, tok);
    expect_fail(&c, 404, "Endpoint does not exist.");
    tws_free(&c);

    /* unknown action */
    const char *hdr[] = {"ServiceBusAuthorization", tok, NULL};
    tws_connect(&t, &c, "/$hc/hc1?sb-hc-action=bogus", hdr, NULL);
    expect_fail(&c, 400, "sb-hc-action");
    tws_free(&c);

    /* the token in the query, form-encoded ('+' is a space) */
    char enc[2048], target[2400];
    assert_int_equal(ahg_url_encode(tok, strlen(tok), enc, sizeof(enc)), AHG_OK);
    for (char *p = enc; (p = strstr(p, "%20")); p++)
        memmove(p + 1, p + 3, strlen(p + 3) + 1), *p = '+';
    snprintf(target, sizeof(target), "/$hc/hc1?sb-hc-action=listen&sb-hc-token=%s", enc);
    tws_connect(&t, &c, target, NULL, NULL);
    assert_true(tws_wait_open(&c, 5000));
    assert_int_equal(emu_relay_listener_count(hc), 1);
    assert_int_equal(t.e->m_listeners, 1);
    tws_free(&c);
    th_run(&t, 100);
    assert_int_equal(emu_relay_listener_count(hc), 0);
    assert_int_equal(t.e->m_listeners, 0);

    /* not an upgrade at all */
    struct thttp h;
    memset(&h, 0, sizeof(h));
    static const char req[] = "GET /$hc/hc1?sb-hc-action=listen HTTP/1.1\r\nHost: x\r\n\r\n";
    thttp_send(&t, &h, "GET", req, sizeof(req) - 1);
    assert_true(thttp_wait(&h, 5000));
    assert_int_equal(h.head->status, 400);
    thttp_free(&h);
    assert_true(t.e->m_auth_failures >= 5);
    th_stop(&t);
}

static void
test_relay_listen_quota(void **state)
{
    (void)state;
    struct th t;
    const char *extra[] = {"--emulator-max-listeners=2", NULL};
    th_start(&t, extra);
    struct tws a, b, c;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    memset(&c, 0, sizeof(c));
    listener(&t, &a, "A");
    listener(&t, &b, "B");
    char tok[1024];
    th_token("hc1", NULL, NULL, 3600, tok, sizeof(tok));
    listen_on(&t, &c, "hc1", "C", tok);
    expect_fail(&c, 403, "MaximumListenersPerEndpoint");
    tws_free(&c);
    assert_int_equal(emu_relay_listener_count(emu_hc_find(t.e, "hc1")), 2);
    /* a listener leaving makes room */
    ahg_wsconn_close(a.ws, 1000, NULL);
    assert_true(tws_wait_close(&a, 5000));
    th_run(&t, 50);
    listener(&t, &c, "C");
    assert_int_equal(emu_relay_listener_count(emu_hc_find(t.e, "hc1")), 2);
    tws_free(&a);
    tws_free(&b);
    tws_free(&c);
    th_stop(&t);
}

static void
test_relay_listen_subprotocol_ping_pong(void **state)
{
    (void)state;
    struct th t;
    th_start(&t, NULL);
    char tok[1024];
    th_token("hc1", NULL, NULL, 3600, tok, sizeof(tok));
    const char *hdr[] = {"ServiceBusAuthorization", tok, "Sec-WebSocket-Extensions",
                         "permessage-deflate; client_max_window_bits", NULL};
    struct tws l;
    memset(&l, 0, sizeof(l));
    /* the client rejects a 101 with extensions or a wrong/missing subprotocol */
    tws_connect(&t, &l, "/$hc/hc1?sb-hc-action=listen", hdr, "hc-test");
    assert_true(tws_wait_open(&l, 5000));
    assert_string_equal(l.proto, "hc-test");
    assert_int_equal(ahg_wsconn_ping(l.ws, "p1", 2), AHG_OK);
    assert_int_equal(ahg_wsconn_pong(l.ws, "keepalive", 9), AHG_OK); /* unsolicited */
    th_run(&t, 200);
    assert_int_equal(l.pongs, 1);
    assert_false(l.closed);
    assert_int_equal(emu_relay_listener_count(emu_hc_find(t.e, "hc1")), 1);
    /* a client close is answered */
    ahg_wsconn_close(l.ws, 1000, "bye");
    assert_true(tws_wait_close(&l, 5000));
    assert_int_equal(l.close_code, 1000);
    tws_free(&l);
    th_stop(&t);
}

static bool
any_msg(void *arg)
{
    struct tws **c = arg;
    return c[0]->nmsgs + c[1]->nmsgs > 0;
}

static bool
peer_closed(void *arg)
{
    struct tws *c = arg;
    return c->peer_closed;
}

static bool
closed_both(void *arg)
{
    struct tws **c = arg;
    return c[0]->closed && c[1]->closed;
}

static void
test_relay_listen_token_expiry_and_renew(void **state)
{
    (void)state;
    struct th t;
    const char *extra[] = {"--emulator-token-grace=0", NULL};
    th_start(&t, extra);
    char tok[1024], good[1024], bad[1024], msg[2048];
    struct tws a, b, c;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    memset(&c, 0, sizeof(c));
    th_token("hc1", NULL, NULL, 2, tok, sizeof(tok));
    listen_on(&t, &a, "hc1", "A", tok); /* never renews */
    listen_on(&t, &b, "hc1", "B", tok); /* renews with a good token */
    listen_on(&t, &c, "hc1", "C", tok); /* renews with a bad one */
    assert_true(tws_wait_open(&a, 5000));
    assert_true(tws_wait_open(&b, 5000));
    assert_true(tws_wait_open(&c, 5000));

    th_token("hc1", NULL, NULL, 3600, good, sizeof(good));
    snprintf(msg, sizeof(msg), "{\"renewToken\":{\"token\":\"%s\"}}", good);
    assert_int_equal(ahg_wsconn_send(b.ws, AHG_WS_TEXT, msg, strlen(msg)), AHG_OK);
    th_token("hc1", NULL, "BBBBd2Wq7Lr4Tz9Pb1Vc6Ys3Hf8Jk0Ga5Ue2Io7Rw4Q=", 3600, bad, sizeof(bad));
    snprintf(msg, sizeof(msg), "{\"renewToken\":{\"token\":\"%s\"}}", bad);
    assert_int_equal(ahg_wsconn_send(c.ws, AHG_WS_TEXT, msg, strlen(msg)), AHG_OK);
    assert_true(tws_wait_close(&c, 2000));
    assert_int_equal(c.close_code, 1008);
    assert_true(c.peer_closed);
    assert_false(a.closed);

    struct tws *ab[2] = {&a, &b};
    th_wait(&t, closed_both, ab, 4500);
    assert_true(a.closed);
    assert_int_equal(a.close_code, 1008);
    assert_false(b.closed);
    assert_int_equal(emu_relay_listener_count(emu_hc_find(t.e, "hc1")), 1);
    tws_free(&a);
    tws_free(&b);
    tws_free(&c);
    th_stop(&t);
}

static void
test_relay_hc_delete_closes_with_1001(void **state)
{
    (void)state;
    struct th t;
    th_start(&t, NULL);
    struct trio x;
    memset(&x, 0, sizeof(x));
    splice(&t, &x, false);
    /* a second sender held before its 101 */
    struct tws s2;
    memset(&s2, 0, sizeof(s2));
    sender(&t, &s2, "/$hc/hc1?sb-hc-action=connect", NULL, NULL, NULL);
    struct ahg_hcmsg m;
    next_accept(&x.l, &m);
    ahg_hcmsg_clear(&m);

    assert_int_equal(emu_hc_delete(t.e, "hc1"), AHG_OK);
    assert_true(tws_wait_close(&x.l, 5000));
    assert_int_equal(x.l.close_code, 1001);
    assert_true(tws_wait_close(&x.s, 5000));
    assert_int_equal(x.s.close_code, 1001);
    assert_true(tws_wait_close(&x.r, 5000));
    assert_int_equal(x.r.close_code, 1001);
    expect_fail(&s2, 404, "Endpoint does not exist.");

    struct tws l2;
    memset(&l2, 0, sizeof(l2));
    char tok[1024];
    th_token("hc1", NULL, NULL, 3600, tok, sizeof(tok));
    listen_on(&t, &l2, "hc1", NULL, tok);
    expect_fail(&l2, 404, "Endpoint does not exist.");
    tws_free(&l2);
    tws_free(&s2);
    trio_free(&x);
    th_stop(&t);
}

/* ---- sender connect ---- */

static void
test_relay_connect_failures(void **state)
{
    (void)state;
    struct th t;
    th_start(&t, NULL);
    struct tws s;
    memset(&s, 0, sizeof(s));
    sender(&t, &s, "/$hc/hc1?sb-hc-action=connect", NULL, NULL, NULL);
    expect_fail(&s, 404, "There are no listeners connected for the endpoint.");
    tws_free(&s);
    sender(&t, &s, "/$hc/nohc?sb-hc-action=connect", NULL, NULL, NULL);
    expect_fail(&s, 404, "Endpoint does not exist.");
    tws_free(&s);
    tws_connect(&t, &s, "/$hc/hc1?sb-hc-action=connect", NULL, NULL);
    expect_fail(&s, 401, "");
    tws_free(&s);

    /* Allowed/DisallowedListeners */
    struct tws l1, l2;
    memset(&l1, 0, sizeof(l1));
    memset(&l2, 0, sizeof(l2));
    listener(&t, &l1, "aaaa-1");
    listener(&t, &l2, "bbbb-2");
    sender(&t, &s, "/$hc/hc1?sb-hc-action=connect", "Microsoft-Relay-AllowedListeners", "cccc-3",
           NULL);
    expect_fail(&s, 404, "AllowedListeners/DisallowedListeners");
    tws_free(&s);
    for (int i = 0; i < 6; i++) {
        if (i % 2)
            sender(&t, &s, "/$hc/hc1?sb-hc-action=connect", "Microsoft-Relay-AllowedListeners",
                   "cccc-3, BBBB-2", NULL);
        else
            sender(&t, &s, "/$hc/hc1?sb-hc-action=connect", "Microsoft-Relay-DisallowedListeners",
                   "bbbb-2", NULL);
        struct ahg_hcmsg m;
        next_accept(i % 2 ? &l2 : &l1, &m);
        ahg_hcmsg_clear(&m);
        tws_free(&s);
    }
    th_run(&t, 100);
    assert_int_equal(l1.nmsgs + l2.nmsgs, 0);

    /* no sb-hc-action on /$hc/ is a connect (and "open" needs no token) */
    tws_connect(&t, &s, "/$hc/open", NULL, NULL);
    expect_fail(&s, 404, "There are no listeners");
    tws_free(&s);
    sender(&t, &s, "/$hc/hc1/x?y=1", NULL, NULL, NULL);
    struct tws *both[2] = {&l1, &l2};
    assert_true(th_wait(&t, any_msg, both, 5000));
    assert_int_equal(l1.nmsgs + l2.nmsgs, 1);
    tws_free(&s);
    tws_free(&l1);
    tws_free(&l2);
    th_stop(&t);
}

static void
test_relay_connect_splice_echo(void **state)
{
    (void)state;
    struct th t;
    th_start(&t, NULL);
    struct tws l, s, r;
    memset(&l, 0, sizeof(l));
    memset(&s, 0, sizeof(s));
    memset(&r, 0, sizeof(r));
    listener(&t, &l, "L1");
    sender(&t, &s, "/$hc/hc1/sub/path?app=1&sb-hc-id=S1&sb-hc-action=connect", "X-Custom", "v1",
           "chat");
    struct ahg_hcmsg m;
    next_accept(&l, &m);
    /* address: base, sender path and app query, then action and id */
    char prefix[256];
    snprintf(prefix, sizeof(prefix),
             "ws://127.0.0.1:%d/$hc/hc1/sub/path?app=1&sb-hc-action=accept&sb-hc-id=S1_G", t.port);
    if (strncmp(m.address, prefix, strlen(prefix)) != 0)
        fail_msg("address %s", m.address);
    assert_true(strncmp(m.id, "S1_G", 4) == 0);
    assert_non_null(ahg_hcmsg_header_get(&m, "Sec-WebSocket-Key"));
    assert_string_equal(ahg_hcmsg_header_get(&m, "X-Custom"), "v1");
    assert_string_equal(ahg_hcmsg_header_get(&m, "Sec-WebSocket-Protocol"), "chat");
    assert_null(ahg_hcmsg_header_get(&m, "ServiceBusAuthorization"));
    assert_string_equal(m.remote_address, "127.0.0.1");
    assert_true(m.remote_port > 0);

    /* the sender's 101 is held until the listener dials */
    th_run(&t, 150);
    assert_false(s.open);
    assert_false(s.failed);
    r.frames = true;
    /* hyco-ws (ws 1.1.5) puts a header line named "0" on its rendezvous dial */
    const char *quirk[] = {"0", "Sec-WebSocket-Extensions: permessage-deflate", NULL};
    tws_connect_url(&t, &r, m.address, "chat", quirk);
    assert_true(tws_wait_open(&r, 5000));
    assert_true(tws_wait_open(&s, 5000));
    assert_string_equal(s.proto, "chat");
    assert_string_equal(r.proto, "chat");
    assert_int_equal(t.e->m_rendezvous, 1);
    /* the address is one-shot */
    struct tws again;
    memset(&again, 0, sizeof(again));
    tws_connect_url(&t, &again, m.address, NULL, NULL);
    expect_fail(&again, 403, "URL is not valid");
    tws_free(&again);
    ahg_hcmsg_clear(&m);

    /* text both ways */
    assert_int_equal(ahg_wsconn_send(s.ws, AHG_WS_TEXT, "hello", 5), AHG_OK);
    struct tmsg *f = tws_next(&r, 5000);
    assert_non_null(f);
    assert_int_equal(f->op, AHG_WS_TEXT);
    assert_true(f->fin);
    assert_string_equal((char *)f->data, "hello");
    tmsg_free(f);
    assert_int_equal(ahg_wsconn_send(r.ws, AHG_WS_TEXT, "world", 5), AHG_OK);
    f = tws_next(&s, 5000);
    assert_non_null(f);
    assert_string_equal((char *)f->data, "world");
    tmsg_free(f);

    /* fragments keep their opcodes, FIN bits and boundaries */
    assert_int_equal(ahg_wsconn_send_frame(s.ws, AHG_WS_BINARY, false, 3), AHG_OK);
    assert_int_equal(ahg_wsconn_send_data(s.ws, "abc", 3), AHG_OK);
    assert_int_equal(ahg_wsconn_ping(s.ws, "x", 1), AHG_OK); /* answered by the relay */
    assert_int_equal(ahg_wsconn_send_frame(s.ws, AHG_WS_CONT, false, 0), AHG_OK);
    assert_int_equal(ahg_wsconn_send_frame(s.ws, AHG_WS_CONT, true, 2), AHG_OK);
    assert_int_equal(ahg_wsconn_send_data(s.ws, "de", 2), AHG_OK);
    static const struct {
        enum ahg_ws_opcode op;
        bool fin;
        const char *d;
    } want[] = {{AHG_WS_BINARY, false, "abc"}, {AHG_WS_CONT, false, ""}, {AHG_WS_CONT, true, "de"}};
    for (size_t i = 0; i < 3; i++) {
        f = tws_next(&r, 5000);
        assert_non_null(f);
        assert_int_equal(f->op, want[i].op);
        assert_int_equal(f->fin, want[i].fin);
        assert_int_equal(f->len, strlen(want[i].d));
        assert_memory_equal(f->data, want[i].d, f->len);
        tmsg_free(f);
    }
    th_run(&t, 50);
    assert_int_equal(s.pongs, 1);

    /* 1 MiB both ways, as one frame and as 16 fragments */
    size_t big = 1024u * 1024u;
    unsigned char *buf = malloc(big);
    assert_non_null(buf);
    for (size_t i = 0; i < big; i++)
        buf[i] = (unsigned char)(i * 7u + 3u);
    assert_int_equal(ahg_wsconn_send(s.ws, AHG_WS_BINARY, buf, big), AHG_OK);
    f = tws_next(&r, 10000);
    assert_non_null(f);
    assert_int_equal(f->len, big);
    assert_memory_equal(f->data, buf, big);
    tmsg_free(f);
    for (size_t i = 0; i < 16; i++) {
        size_t k = big / 16;
        assert_int_equal(ahg_wsconn_send_frame(r.ws, i ? AHG_WS_CONT : AHG_WS_BINARY, i == 15, k),
                         AHG_OK);
        assert_int_equal(ahg_wsconn_send_data(r.ws, buf + i * k, k), AHG_OK);
    }
    f = tws_next(&s, 10000); /* message mode: reassembled */
    assert_non_null(f);
    assert_int_equal(f->op, AHG_WS_BINARY);
    assert_int_equal(f->len, big);
    assert_memory_equal(f->data, buf, big);
    tmsg_free(f);
    free(buf);
    assert_true(t.e->m_bytes_spliced >= 2 * big);

    /* the sender closes: the code and reason reach the listener, whose answer ends both */
    r.hold_close = true;
    assert_int_equal(ahg_wsconn_close(s.ws, 4000, "bye"), AHG_OK);
    assert_true(th_wait(&t, peer_closed, &r, 5000));
    th_run(&t, 100);
    assert_int_equal(r.peer_code, 4000);
    assert_string_equal(r.peer_reason, "bye");
    assert_false(s.closed); /* half-closed: waits for the listener's answer */
    assert_int_equal(ahg_wsconn_send(r.ws, AHG_WS_TEXT, "late", 4), AHG_OK);
    f = tws_next(&s, 5000); /* data after a close still flows the other way */
    assert_non_null(f);
    assert_string_equal((char *)f->data, "late");
    tmsg_free(f);
    assert_int_equal(ahg_wsconn_close(r.ws, 4000, NULL), AHG_OK);
    struct tws *sr[2] = {&s, &r};
    assert_true(th_wait(&t, closed_both, sr, 5000));
    assert_int_equal(s.close_code, 4000);
    assert_false(l.closed); /* the control channel is not affected */
    tws_free(&l);
    tws_free(&s);
    tws_free(&r);
    th_stop(&t);
}

static void
test_relay_connect_listener_closes_first(void **state)
{
    (void)state;
    struct th t;
    th_start(&t, NULL);
    struct trio x;
    memset(&x, 0, sizeof(x));
    splice(&t, &x, false);
    assert_int_equal(ahg_wsconn_close(x.r.ws, 1000, "done"), AHG_OK);
    struct tws *sr[2] = {&x.s, &x.r};
    assert_true(th_wait(&t, closed_both, sr, 5000));
    assert_true(x.s.peer_closed);
    assert_int_equal(x.s.peer_code, 1000);
    assert_string_equal(x.s.peer_reason, "done");
    assert_int_equal(x.r.close_code, 1000);

    /* an abrupt drop of one side closes the other with 1001 */
    trio_free(&x);
    memset(&x, 0, sizeof(x));
    splice(&t, &x, false);
    ahg_wsconn_abort(x.s.ws);
    assert_true(tws_wait_close(&x.r, 5000));
    assert_int_equal(x.r.close_code, 1001);
    trio_free(&x);
    th_stop(&t);
}

static void
test_relay_connect_listener_rejects(void **state)
{
    (void)state;
    struct th t;
    th_start(&t, NULL);
    struct tws l, s, d;
    memset(&l, 0, sizeof(l));
    memset(&s, 0, sizeof(s));
    memset(&d, 0, sizeof(d));
    listener(&t, &l, "L1");
    sender(&t, &s, "/$hc/hc1?sb-hc-action=connect", NULL, NULL, NULL);
    struct ahg_hcmsg m;
    next_accept(&l, &m);
    char url[4096];
    snprintf(url, sizeof(url), "%s&sb-hc-statusCode=401&sb-hc-statusDescription=Nope+go%%20away",
             m.address);
    tws_connect_url(&t, &d, url, NULL, NULL);
    assert_true(tws_wait_fail(&d, 5000));
    assert_int_equal(d.fail_status, 410); /* a correct rejection */
    assert_true(tws_wait_fail(&s, 5000));
    assert_int_equal(s.fail_status, 401);
    assert_string_equal(s.fail_reason, "Nope go away");
    tws_free(&d);
    /* the address is gone after the rejection */
    tws_connect_url(&t, &d, m.address, NULL, NULL);
    expect_fail(&d, 403, "URL is not valid");
    tws_free(&d);
    ahg_hcmsg_clear(&m);
    tws_free(&s);
    tws_free(&l);
    th_stop(&t);
}

static void
test_relay_rendezvous_window(void **state)
{
    (void)state;
    struct th t;
    const char *extra[] = {"--emulator-rendezvous-timeout=400ms", NULL};
    th_start(&t, extra);
    struct tws l, s, d;
    memset(&l, 0, sizeof(l));
    memset(&s, 0, sizeof(s));
    memset(&d, 0, sizeof(d));
    listener(&t, &l, "L1");

    /* never dialed: the sender gets 504 when the window ends, the address is then unknown */
    sender(&t, &s, "/$hc/hc1?sb-hc-action=connect", NULL, NULL, NULL);
    struct ahg_hcmsg m;
    next_accept(&l, &m);
    uint64_t t0 = ahg_now_ms();
    expect_fail(&s, 504, "within the allowed timeout");
    assert_true(ahg_now_ms() - t0 >= 250);
    tws_free(&s);
    tws_connect_url(&t, &d, m.address, NULL, NULL);
    expect_fail(&d, 403, "URL is not valid");
    tws_free(&d);
    ahg_hcmsg_clear(&m);

    /* the sender leaves before the dial: 410 while the window lasts */
    sender(&t, &s, "/$hc/hc1?sb-hc-action=connect", NULL, NULL, NULL);
    next_accept(&l, &m);
    tws_free(&s);
    th_run(&t, 50);
    tws_connect_url(&t, &d, m.address, NULL, NULL);
    expect_fail(&d, 410, "");
    tws_free(&d);
    th_run(&t, 500);
    tws_connect_url(&t, &d, m.address, NULL, NULL);
    expect_fail(&d, 403, "URL is not valid");
    tws_free(&d);
    ahg_hcmsg_clear(&m);

    /* unknown ids and ids of the wrong kind */
    char url[512];
    snprintf(url, sizeof(url), "ws://127.0.0.1:%d/$hc/hc1?sb-hc-action=accept&sb-hc-id=nope",
             t.port);
    tws_connect_url(&t, &d, url, NULL, NULL);
    expect_fail(&d, 403, "URL is not valid");
    tws_free(&d);
    snprintf(url, sizeof(url), "ws://127.0.0.1:%d/$hc/hc1?sb-hc-action=request", t.port);
    tws_connect_url(&t, &d, url, NULL, NULL);
    expect_fail(&d, 403, "URL is not valid");
    tws_free(&d);
    tws_free(&l);
    th_stop(&t);
}

static void
test_relay_splice_backpressure(void **state)
{
    (void)state;
    struct th t;
    th_start(&t, NULL);
    struct trio x;
    memset(&x, 0, sizeof(x));
    x.r.count_only = true;
    listener(&t, &x.l, "L1");
    sender(&t, &x.s, "/$hc/hc1?sb-hc-action=connect", NULL, NULL, NULL);
    struct ahg_hcmsg m;
    next_accept(&x.l, &m);
    x.r.count_only = true;
    tws_connect_url(&t, &x.r, m.address, NULL, NULL);
    ahg_hcmsg_clear(&m);
    assert_true(tws_wait_open(&x.r, 5000));
    assert_true(tws_wait_open(&x.s, 5000));

    /* the listener stops reading: the sender must soon be unable to write, whatever it does */
    ahg_wsconn_pause_read(x.r.ws);
    size_t chunk = 64u * 1024u;
    unsigned char *buf = calloc(1, chunk);
    assert_non_null(buf);
    uint64_t sent = 0, stuck_since = 0;
    for (;;) {
        while (ahg_wsconn_writable(x.s.ws) && sent < 512ull * 1024 * 1024) {
            assert_int_equal(ahg_wsconn_send(x.s.ws, AHG_WS_BINARY, buf, chunk), AHG_OK);
            sent += chunk;
            stuck_since = 0;
        }
        if (!stuck_since)
            stuck_since = ahg_now_ms();
        else if (ahg_now_ms() - stuck_since > 1000)
            break;
        ahg_loop_run_once(t.loop);
    }
    /* kernel buffers on two loopback hops plus the relay's bounded queues */
    if (sent > 64ull * 1024 * 1024)
        fail_msg("%llu bytes accepted while the listener did not read", (unsigned long long)sent);
    assert_int_equal(x.r.bytes, 0);
    /* reading again: everything arrives */
    ahg_wsconn_resume_read(x.r.ws);
    uint64_t end = ahg_now_ms() + 20000;
    while (x.r.bytes < sent && ahg_now_ms() < end)
        ahg_loop_run_once(t.loop);
    assert_int_equal(x.r.bytes, sent);
    free(buf);
    trio_free(&x);
    th_stop(&t);
}

static void
test_relay_listen_bad_control_messages(void **state)
{
    (void)state;
    struct th t;
    th_start(&t, NULL);
    struct tws l;
    memset(&l, 0, sizeof(l));
    listener(&t, &l, "L1");
    /* garbage, unknown commands and stray binary messages are ignored */
    static const char *junk[] = {"not json", "{\"accept\":{}}", "{\"bogus\":{\"x\":1}}",
                                 "{\"response\":{\"requestId\":\"nope\",\"statusCode\":200}}",
                                 "{\"renewToken\":{}}"};
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
        assert_int_equal(ahg_wsconn_send(l.ws, AHG_WS_TEXT, junk[i], strlen(junk[i])), AHG_OK);
    assert_int_equal(ahg_wsconn_send(l.ws, AHG_WS_BINARY, "zz", 2), AHG_OK);
    th_run(&t, 200);
    assert_false(l.closed);
    /* it still gets work */
    struct tws s;
    memset(&s, 0, sizeof(s));
    sender(&t, &s, "/$hc/hc1?sb-hc-action=connect", NULL, NULL, NULL);
    struct ahg_hcmsg m;
    next_accept(&l, &m);
    ahg_hcmsg_clear(&m);
    tws_free(&s);
    /* a control message over 64 KiB (here in two fragments) closes the channel with 1009 */
    size_t n = 40000;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, ' ', n);
    assert_int_equal(ahg_wsconn_send_frame(l.ws, AHG_WS_TEXT, false, n), AHG_OK);
    assert_int_equal(ahg_wsconn_send_data(l.ws, big, n), AHG_OK);
    assert_int_equal(ahg_wsconn_send_frame(l.ws, AHG_WS_CONT, true, n), AHG_OK);
    assert_int_equal(ahg_wsconn_send_data(l.ws, big, n), AHG_OK);
    free(big);
    assert_true(tws_wait_close(&l, 5000));
    assert_int_equal(l.close_code, 1009);
    assert_int_equal(emu_relay_listener_count(emu_hc_find(t.e, "hc1")), 0);
    tws_free(&l);
    th_stop(&t);
}

static void
test_relay_tls(void **state)
{
    (void)state;
    struct th t;
    const char *extra[] = {"--emulator-relay-cert=" AHG_TEST_FIXTURES "/certs/server.pem",
                           "--emulator-relay-key=" AHG_TEST_FIXTURES "/certs/server.key", NULL};
    th_start(&t, extra);
    assert_true(t.tls);
    struct trio x;
    memset(&x, 0, sizeof(x));
    listener(&t, &x.l, "L1");
    sender(&t, &x.s, "/$hc/hc1?sb-hc-action=connect", NULL, NULL, NULL);
    struct ahg_hcmsg m;
    next_accept(&x.l, &m);
    assert_true(strncmp(m.address, "wss://127.0.0.1:", 16) == 0);
    tws_connect_url(&t, &x.r, m.address, NULL, NULL);
    ahg_hcmsg_clear(&m);
    assert_true(tws_wait_open(&x.r, 5000));
    assert_true(tws_wait_open(&x.s, 5000));
    assert_int_equal(ahg_wsconn_send(x.s.ws, AHG_WS_TEXT, "over tls", 8), AHG_OK);
    struct tmsg *f = tws_next(&x.r, 5000);
    assert_non_null(f);
    assert_string_equal((char *)f->data, "over tls");
    tmsg_free(f);
    trio_free(&x);
    th_stop(&t);
}

static void
test_relay_latency_model(void **state)
{
    (void)state;
    struct th t;
    const char *extra[] = {"--emulator-latency-match=300ms", "--emulator-latency-sas=150ms", NULL};
    th_start(&t, extra);
    struct trio x;
    memset(&x, 0, sizeof(x));
    uint64_t t0 = ahg_now_ms();
    listener(&t, &x.l, "L1"); /* SAS validation */
    assert_true(ahg_now_ms() - t0 >= 140);
    sender(&t, &x.s, "/$hc/hc1?sb-hc-action=connect", NULL, NULL, NULL);
    struct ahg_hcmsg m;
    next_accept(&x.l, &m);
    tws_connect_url(&t, &x.r, m.address, NULL, NULL);
    ahg_hcmsg_clear(&m);
    t0 = ahg_now_ms();
    assert_true(tws_wait_open(&x.s, 5000));
    assert_true(ahg_now_ms() - t0 >= 290); /* match-making before the 101 */
    assert_true(tws_wait_open(&x.r, 5000));
    trio_free(&x);

    /* a sender that leaves while its rendezvous is held */
    memset(&x, 0, sizeof(x));
    listener(&t, &x.l, "L2");
    sender(&t, &x.s, "/$hc/hc1?sb-hc-action=connect", NULL, NULL, NULL);
    next_accept(&x.l, &m);
    tws_connect_url(&t, &x.r, m.address, NULL, NULL);
    ahg_hcmsg_clear(&m);
    th_run(&t, 100);
    tws_free(&x.s);
    expect_fail(&x.r, 410, "");
    trio_free(&x);
    th_stop(&t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relay_listen_auth_failures),
        cmocka_unit_test(test_relay_listen_quota),
        cmocka_unit_test(test_relay_listen_subprotocol_ping_pong),
        cmocka_unit_test(test_relay_listen_token_expiry_and_renew),
        cmocka_unit_test(test_relay_hc_delete_closes_with_1001),
        cmocka_unit_test(test_relay_connect_failures),
        cmocka_unit_test(test_relay_connect_splice_echo),
        cmocka_unit_test(test_relay_connect_listener_closes_first),
        cmocka_unit_test(test_relay_connect_listener_rejects),
        cmocka_unit_test(test_relay_rendezvous_window),
        cmocka_unit_test(test_relay_splice_backpressure),
        cmocka_unit_test(test_relay_listen_bad_control_messages),
        cmocka_unit_test(test_relay_tls),
        cmocka_unit_test(test_relay_latency_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
