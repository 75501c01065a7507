#include "ahg/wsconn.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ahg/buf.h"
#include "ahg/err.h"
#include "ahg/log.h"
#include "ahg/url.h"

#define CLOSE_LINGER_MS 5000u
#define HANDSHAKE_MS    20000u
#define FAIL_BODY_MAX   4096u
#define CLIENT_REQ_MAX  ((size_t)64 * 1024)

enum ws_state { WS_HANDSHAKE, WS_FAIL_BODY, WS_OPEN, WS_DONE };

struct ahg_wsconn {
    struct ahg_loop *loop;
    struct ahg_conn *conn;
    const struct ahg_wsconn_cbs *cbs;
    void *ud;
    bool client;
    enum ws_state state;

    /* client handshake */
    struct ahg_http_parser *hs;
    struct ahg_http_head *fail_head;
    struct ahg_buf fail_body;
    uint64_t fail_body_want;
    char accept_expect[AHG_WS_ACCEPT_LEN + 1];
    char want_proto[128];
    struct ahg_buf req;
    struct ahg_timer hs_timer;
    bool failed; /* on_fail delivered: no on_close */

    /* receiving */
    struct ahg_ws_parser *parser;
    struct ahg_ws_frame cur;
    unsigned char ctl[AHG_WS_MAX_CONTROL];
    size_t ctl_len;
    struct ahg_buf msg;
    enum ahg_ws_opcode msg_op;
    uint64_t max_message;
    bool paused;

    /* sending */
    uint64_t send_left; /* payload bytes still due for the current streamed frame */
    uint64_t send_off;
    unsigned char send_key[4];

    /* closing */
    bool close_sent;
    bool close_received;
    uint16_t close_code;
    struct ahg_timer close_timer;

    char proto[128];
};

static const struct ahg_conn_ops ws_conn_ops;

/* ---- helpers ---- */

static int
put_frame_header(struct ahg_wsconn *ws, enum ahg_ws_opcode op, bool fin, uint64_t len,
                 unsigned char key[4])
{
    unsigned char hdr[AHG_WS_MAX_HEADER];
    if (ws->client && ahg_ws_mask_key(key) != AHG_OK)
        return AHG_EIO;
    size_t hl = ahg_ws_frame_header(hdr, op, fin, len, ws->client ? key : NULL);
    if (!hl)
        return AHG_EINVAL;
    return ahg_conn_write(ws->conn, hdr, hl);
}

/* Writes payload, masked from offset off with key on the client side. */
static int
put_payload(struct ahg_wsconn *ws, const unsigned char *p, size_t n, const unsigned char key[4],
            uint64_t off)
{
    if (!ws->client)
        return ahg_conn_write(ws->conn, p, n);
    /* Mask straight into the output queue (no intermediate copy). */
    while (n) {
        unsigned char *d = NULL;
        size_t k = ahg_conn_write_span(ws->conn, n, &d);
        if (!k)
            return ws->state != WS_OPEN ? AHG_ECLOSED : AHG_ELIMIT;
        memcpy(d, p, k);
        ahg_ws_mask(d, k, key, off);
        ahg_conn_write_commit(ws->conn, k);
        p += k;
        n -= k;
        off += k;
    }
    return AHG_OK;
}

static int
send_control(struct ahg_wsconn *ws, enum ahg_ws_opcode op, const void *p, size_t n)
{
    unsigned char key[4];
    if (n > AHG_WS_MAX_CONTROL)
        return AHG_EINVAL;
    int rc = put_frame_header(ws, op, true, n, key);
    if (rc == AHG_OK && n)
        rc = put_payload(ws, p, n, key, 0);
    return rc;
}

static void
close_linger_fire(struct ahg_timer *t)
{
    struct ahg_wsconn *ws = t->ud;
    ahg_conn_abort(ws->conn);
}

/* ---- the frame parser's callbacks ---- */

static int
paused_rc(struct ahg_wsconn *ws)
{
    return ws->paused || ws->state != WS_OPEN ? AHG_WS_PAUSE : 0;
}

static int
p_frame_begin(void *ud, const struct ahg_ws_frame *f)
{
    struct ahg_wsconn *ws = ud;
    ws->cur = *f;
    if (AHG_WS_OPCODE_IS_CONTROL(f->op)) {
        ws->ctl_len = 0;
        return 0;
    }
    if (ws->cbs && ws->cbs->on_frame_begin) {
        ws->cbs->on_frame_begin(ws, f->op, f->fin, f->len);
        return paused_rc(ws);
    }
    if (f->op != AHG_WS_CONT) {
        ahg_buf_reset(&ws->msg);
        ws->msg_op = f->op;
    }
    return 0;
}

static int
p_frame_data(void *ud, const unsigned char *p, size_t n)
{
    struct ahg_wsconn *ws = ud;
    if (AHG_WS_OPCODE_IS_CONTROL(ws->cur.op)) {
        if (ws->ctl_len + n <= sizeof(ws->ctl)) {
            memcpy(ws->ctl + ws->ctl_len, p, n);
            ws->ctl_len += n;
        }
        return 0;
    }
    if (ws->cbs && ws->cbs->on_frame_begin) {
        if (ws->cbs->on_frame_data)
            ws->cbs->on_frame_data(ws, p, n);
        return paused_rc(ws);
    }
    if (ahg_buf_append(&ws->msg, p, n) != AHG_OK)
        return AHG_ELIMIT;
    return 0;
}

static int
p_frame_end(void *ud)
{
    struct ahg_wsconn *ws = ud;
    switch (ws->cur.op) {
    case AHG_WS_PING:
        if (!ws->close_sent)
            (void)send_control(ws, AHG_WS_PONG, ws->ctl, ws->ctl_len);
        return paused_rc(ws);
    case AHG_WS_PONG:
        if (ws->cbs && ws->cbs->on_pong)
            ws->cbs->on_pong(ws, ws->ctl, ws->ctl_len);
        return paused_rc(ws);
    case AHG_WS_CLOSE: {
        uint16_t code = AHG_WS_CLOSE_NO_STATUS;
        const char *reason = "";
        size_t rlen = 0;
        if (ws->ctl_len &&
            ahg_ws_close_parse(ws->ctl, ws->ctl_len, &code, &reason, &rlen) != AHG_OK)
            code = AHG_WS_CLOSE_PROTOCOL_ERROR;
        ws->close_received = true;
        if (!ws->close_sent)
            ws->close_code = code;
        if (ws->close_sent) {
            ahg_timer_stop(&ws->close_timer);
            ahg_conn_close(ws->conn);
        } else if (ws->cbs && ws->cbs->on_peer_close) {
            ws->cbs->on_peer_close(ws, code, reason, rlen);
        } else {
            ahg_wsconn_close(ws, code == AHG_WS_CLOSE_NO_STATUS ? AHG_WS_CLOSE_NORMAL : code, NULL);
        }
        return AHG_WS_PAUSE;
    }
    default:
        break;
    }
    if (ws->cbs && ws->cbs->on_frame_begin) {
        if (ws->cbs->on_frame_end)
            ws->cbs->on_frame_end(ws);
        return paused_rc(ws);
    }
    if (ws->cur.fin && ws->cbs && ws->cbs->on_message)
        ws->cbs->on_message(ws, ws->msg_op, ahg_buf_data(&ws->msg), ahg_buf_len(&ws->msg));
    if (ws->cur.fin && ahg_buf_len(&ws->msg) > 65536)
        ahg_buf_free(&ws->msg); /* don't keep a big buffer around */
    return paused_rc(ws);
}

static int
make_parser(struct ahg_wsconn *ws)
{
    struct ahg_ws_parser_opts po = {
        .server_role = !ws->client,
        .max_message_payload = ws->cbs && ws->cbs->on_frame_begin ? 0 : ws->max_message,
        .validate_utf8 = false,
    };
    static const struct ahg_ws_parser_cb pcb = {
        .frame_begin = p_frame_begin,
        .frame_data = p_frame_data,
        .frame_end = p_frame_end,
    };
    int err = 0;
    ws->parser = ahg_ws_parser_new(&po, &pcb, ws, &err);
    ahg_buf_init(&ws->msg, ws->max_message);
    return ws->parser ? AHG_OK : err;
}

static struct ahg_wsconn *
ws_new(struct ahg_loop *loop, bool client, const struct ahg_wsconn_cbs *cbs, void *ud)
{
    struct ahg_wsconn *ws = calloc(1, sizeof(*ws));
    if (!ws)
        return NULL;
    ws->loop = loop;
    ws->client = client;
    ws->cbs = cbs;
    ws->ud = ud;
    ws->max_message = AHG_WSCONN_DEFAULT_MAX_MESSAGE;
    ahg_timer_init(&ws->close_timer, loop, close_linger_fire, ws);
    ahg_timer_init(&ws->hs_timer, loop, close_linger_fire, ws);
    ahg_buf_init(&ws->msg, ws->max_message);
    ahg_buf_init(&ws->req, CLIENT_REQ_MAX);
    ahg_buf_init(&ws->fail_body, FAIL_BODY_MAX);
    return ws;
}

static void
ws_free(struct ahg_wsconn *ws)
{
    ahg_timer_stop(&ws->close_timer);
    ahg_timer_stop(&ws->hs_timer);
    ahg_ws_parser_free(ws->parser);
    ahg_http_parser_free(ws->hs);
    ahg_http_head_free(ws->fail_head);
    ahg_buf_free(&ws->msg);
    ahg_buf_free(&ws->req);
    ahg_buf_free(&ws->fail_body);
    free(ws);
}

static void
fail(struct ahg_wsconn *ws, int status, const char *reason)
{
    if (ws->failed)
        return;
    ws->failed = true;
    ws->state = WS_DONE;
    ahg_timer_stop(&ws->hs_timer);
    if (ws->cbs && ws->cbs->on_fail)
        ws->cbs->on_fail(ws, status, reason, ws->fail_head, ahg_buf_cstr(&ws->fail_body));
    ahg_conn_abort(ws->conn);
}

/* ---- connection callbacks ---- */

static size_t
open_data(struct ahg_wsconn *ws, const unsigned char *p, size_t n)
{
    size_t used = 0;
    int rc = ahg_ws_parser_feed(ws->parser, p, n, &used);
    if (rc == AHG_ECLOSED)
        return n; /* nothing may follow a close frame: drop it */
    if (rc != AHG_OK) {
        uint16_t code = ahg_ws_parser_close_code(ws->parser);
        if (!code)
            code = AHG_WS_CLOSE_INTERNAL_ERROR;
        if (rc == AHG_ELIMIT)
            code = AHG_WS_CLOSE_TOO_BIG;
        ahg_wsconn_close(ws, code, NULL);
        return n;
    }
    if (ahg_ws_parser_closed(ws->parser))
        return n;
    return used;
}

static int
hs_body_cb(void *ud, const char *data, size_t len)
{
    struct ahg_wsconn *ws = ud;
    size_t room = FAIL_BODY_MAX - ahg_buf_len(&ws->fail_body);
    (void)ahg_buf_append(&ws->fail_body, data, len < room ? len : room);
    return AHG_OK;
}

static bool
validate_101(struct ahg_wsconn *ws, const struct ahg_http_head *h, const char **why)
{
    const char *acc = ahg_http_head_get(h, "Sec-WebSocket-Accept", NULL);
    const char *proto = ahg_http_head_get(h, "Sec-WebSocket-Protocol", NULL);
    if (!ahg_http_head_has_token(h, "Upgrade", "websocket")) {
        *why = "101 without Upgrade: websocket";
        return false;
    }
    if (!ahg_http_head_has_token(h, "Connection", "upgrade")) {
        *why = "101 without Connection: upgrade";
        return false;
    }
    if (!acc || strcmp(acc, ws->accept_expect) != 0) {
        *why = "bad Sec-WebSocket-Accept";
        return false;
    }
    if (ahg_http_head_get(h, "Sec-WebSocket-Extensions", NULL)) {
        *why = "server sent an extension we did not offer";
        return false;
    }
    if (proto && (!ws->want_proto[0] || strcmp(proto, ws->want_proto) != 0)) {
        *why = "server sent a subprotocol we did not ask for";
        return false;
    }
    if (!proto && ws->want_proto[0]) {
        *why = "server sent no subprotocol";
        return false;
    }
    (void)snprintf(ws->proto, sizeof(ws->proto), "%s", proto ? proto : "");
    return true;
}

static size_t
handshake_data(struct ahg_wsconn *ws, const unsigned char *p, size_t n)
{
    size_t used = 0;
    if (ws->state == WS_FAIL_BODY) {
        size_t k = 0;
        int rc = ahg_http_parser_body(ws->hs, (const char *)p, n, &k, hs_body_cb, ws);
        if (rc != AHG_EAGAIN || ahg_buf_len(&ws->fail_body) >= FAIL_BODY_MAX)
            fail(ws, ws->fail_head->status, ws->fail_head->reason);
        return n;
    }
    int rc = ahg_http_parser_feed(ws->hs, (const char *)p, n, &used);
    if (rc == AHG_EAGAIN)
        return n;
    if (rc != AHG_OK) {
        fail(ws, 0, "malformed handshake response");
        return n;
    }
    const struct ahg_http_head *h = ahg_http_parser_head(ws->hs);
    if (h->status != 101) {
        ws->fail_head = ahg_http_parser_head_take(ws->hs);
        ws->state = WS_FAIL_BODY;
        if (ahg_http_parser_framing(ws->hs) == AHG_HTTP_BODY_NONE) {
            fail(ws, ws->fail_head->status, ws->fail_head->reason);
            return n;
        }
        return used + handshake_data(ws, p + used, n - used);
    }
    const char *why = NULL;
    if (!validate_101(ws, h, &why)) {
        fail(ws, 0, why);
        return n;
    }
    ahg_timer_stop(&ws->hs_timer);
    if (make_parser(ws) != AHG_OK) {
        fail(ws, 0, "out of memory");
        return n;
    }
    ws->state = WS_OPEN;
    if (ws->cbs && ws->cbs->on_open)
        ws->cbs->on_open(ws, h);
    ahg_http_parser_free(ws->hs);
    ws->hs = NULL;
    if (ws->state != WS_OPEN || used == n)
        return n;
    return used + open_data(ws, p + used, n - used);
}

static size_t
ws_on_data(struct ahg_conn *c, const unsigned char *p, size_t n)
{
    struct ahg_wsconn *ws = ahg_conn_ud(c);
    if (ws->paused)
        return 0;
    switch (ws->state) {
    case WS_HANDSHAKE:
    case WS_FAIL_BODY:
        return handshake_data(ws, p, n);
    case WS_OPEN:
        return open_data(ws, p, n);
    default:
        return n;
    }
}

static void
ws_on_connect(struct ahg_conn *c)
{
    struct ahg_wsconn *ws = ahg_conn_ud(c);
    if (ahg_conn_write(c, ahg_buf_data(&ws->req), ahg_buf_len(&ws->req)) != AHG_OK)
        fail(ws, 0, "cannot send the handshake");
    ahg_buf_free(&ws->req);
}

static void
ws_on_drain(struct ahg_conn *c)
{
    struct ahg_wsconn *ws = ahg_conn_ud(c);
    if (ws->state == WS_OPEN && ws->cbs && ws->cbs->on_drain)
        ws->cbs->on_drain(ws);
}

static void
ws_on_close(struct ahg_conn *c, enum ahg_conn_end why)
{
    struct ahg_wsconn *ws = ahg_conn_ud(c);
    ahg_timer_stop(&ws->close_timer);
    ahg_timer_stop(&ws->hs_timer);
    if (ws->client && (ws->state == WS_HANDSHAKE || ws->state == WS_FAIL_BODY) && !ws->failed) {
        if (ws->state == WS_FAIL_BODY)
            fail(ws, ws->fail_head->status, ws->fail_head->reason);
        else
            fail(ws, 0,
                 why == AHG_CONN_END_CONNECT ? "connection failed" : "closed during the handshake");
    } else if (!ws->failed) {
        uint16_t code = ws->close_code && (ws->close_sent || ws->close_received)
                            ? ws->close_code
                            : AHG_WS_CLOSE_ABNORMAL;
        ws->state = WS_DONE;
        if (ws->cbs && ws->cbs->on_close)
            ws->cbs->on_close(ws, code);
    }
    ws_free(ws);
}

static const struct ahg_conn_ops ws_conn_ops = {
    .on_connect = ws_on_connect,
    .on_data = ws_on_data,
    .on_drain = ws_on_drain,
    .on_close = ws_on_close,
};

/* ---- server side ---- */

bool
ahg_wsconn_is_upgrade(const struct ahg_http_head *head)
{
    return head && ahg_http_head_has_token(head, "Upgrade", "websocket");
}

int
ahg_wsconn_check_upgrade(const struct ahg_http_head *head)
{
    if (!head || !head->method || strcmp(head->method, "GET") != 0 || head->version_major != 1 ||
        head->version_minor < 1)
        return 400;
    if (!ahg_http_head_has_token(head, "Upgrade", "websocket") ||
        !ahg_http_head_has_token(head, "Connection", "upgrade"))
        return 400;
    const char *v = ahg_http_head_get(head, "Sec-WebSocket-Version", NULL);
    if (!v || strcmp(v, "13") != 0)
        return 426;
    const char *k = ahg_http_head_get(head, "Sec-WebSocket-Key", NULL);
    if (!k || !ahg_ws_key_is_valid(k))
        return 400;
    return 0;
}

struct ahg_wsconn *
ahg_wsconn_accept(struct ahg_httpd_req *r, const char *subprotocol, const char *const *extra_fields,
                  const struct ahg_wsconn_cbs *cbs, void *ud, int *err)
{
    const struct ahg_http_head *h = ahg_httpd_req_head(r);
    char accept[AHG_WS_ACCEPT_LEN + 1];
    if (ahg_wsconn_check_upgrade(h) != 0 ||
        ahg_ws_accept_key(ahg_http_head_get(h, "Sec-WebSocket-Key", NULL), accept) != AHG_OK) {
        if (err)
            *err = AHG_EINVAL;
        return NULL;
    }
    struct ahg_buf resp;
    ahg_buf_init(&resp, 16384);
    int rc = ahg_buf_appendf(&resp,
                             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n",
                             accept);
    if (rc == AHG_OK && subprotocol && subprotocol[0])
        rc = ahg_buf_appendf(&resp, "Sec-WebSocket-Protocol: %s\r\n", subprotocol);
    for (size_t i = 0; rc == AHG_OK && extra_fields && extra_fields[i] && extra_fields[i + 1];
         i += 2) {
        if (strpbrk(extra_fields[i], "\r\n:") || strpbrk(extra_fields[i + 1], "\r\n"))
            rc = AHG_EINVAL;
        else
            rc = ahg_buf_appendf(&resp, "%s: %s\r\n", extra_fields[i], extra_fields[i + 1]);
    }
    if (rc == AHG_OK)
        rc = ahg_buf_append(&resp, "\r\n", 2);
    struct ahg_httpd *srv = ahg_httpd_req_server(r);
    struct ahg_wsconn *ws = rc == AHG_OK ? ws_new(ahg_httpd_loop(srv), false, cbs, ud) : NULL;
    if (ws && make_parser(ws) != AHG_OK) {
        ws_free(ws);
        ws = NULL;
    }
    if (!ws) {
        ahg_buf_free(&resp);
        if (err)
            *err = rc == AHG_OK ? AHG_ENOMEM : rc;
        return NULL;
    }
    if (subprotocol)
        (void)snprintf(ws->proto, sizeof(ws->proto), "%s", subprotocol);
    ws->state = WS_OPEN;
    ws->conn = ahg_httpd_req_hijack(r, &ws_conn_ops, ws);
    if (!ws->conn) {
        ahg_buf_free(&resp);
        ws_free(ws);
        if (err)
            *err = AHG_EINVAL;
        return NULL;
    }
    ahg_conn_set_idle_timeout(ws->conn, 0);
    rc = ahg_conn_write(ws->conn, ahg_buf_data(&resp), ahg_buf_len(&resp));
    ahg_buf_free(&resp);
    if (rc != AHG_OK)
        ahg_conn_abort(ws->conn); /* on_close follows */
    return ws;
}

/* ---- client side ---- */

static bool
field_ok(const char *s, bool name)
{
    if (!s || (name && !*s))
        return false;
    for (; *s; s++)
        if (*s == '\r' || *s == '\n' || (name && (*s == ':' || *s == ' ')))
            return false;
    return true;
}

struct ahg_wsconn *
ahg_wsconn_connect(struct ahg_loop *loop, const struct ahg_wsconn_client_opts *opts,
                   const struct ahg_wsconn_cbs *cbs, void *ud, int *err)
{
    int rc = AHG_OK;
    char key[AHG_WS_KEY_LEN + 1];
    if (!opts || !opts->target || opts->target[0] != '/' || !field_ok(opts->target, false) ||
        (opts->host && !field_ok(opts->host, false)) ||
        (opts->subprotocol && !field_ok(opts->subprotocol, false))) {
        if (err)
            *err = AHG_EINVAL;
        return NULL;
    }
    for (size_t i = 0; opts->headers && opts->headers[i]; i += 2)
        if (!field_ok(opts->headers[i], true) || !field_ok(opts->headers[i + 1], false)) {
            if (err)
                *err = AHG_EINVAL;
            return NULL;
        }
    struct ahg_wsconn *ws = ws_new(loop, true, cbs, ud);
    if (!ws) {
        if (err)
            *err = AHG_ENOMEM;
        return NULL;
    }
    if (opts->max_message)
        ws->max_message = opts->max_message;
    int perr = 0;
    ws->hs = ahg_http_parser_new(AHG_HTTP_RESPONSE, NULL, &perr);
    if (!ws->hs || ahg_ws_client_key(key) != AHG_OK ||
        ahg_ws_accept_key(key, ws->accept_expect) != AHG_OK)
        rc = ws->hs ? AHG_EIO : perr;
    if (rc == AHG_OK)
        rc = ahg_http_parser_set_request_method(ws->hs, "GET");
    char hostbuf[300];
    const char *host = opts->host;
    if (!host) {
        bool v6 = strchr(opts->conn.address, ':') != NULL;
        (void)snprintf(hostbuf, sizeof(hostbuf), v6 ? "[%s]:%d" : "%s:%d", opts->conn.address,
                       opts->conn.port);
        host = hostbuf;
    }
    if (rc == AHG_OK)
        rc = ahg_buf_appendf(&ws->req,
                             "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                             "Sec-WebSocket-Version: 13\r\n",
                             opts->target, host, key);
    if (rc == AHG_OK && opts->subprotocol && opts->subprotocol[0]) {
        (void)snprintf(ws->want_proto, sizeof(ws->want_proto), "%s", opts->subprotocol);
        rc = ahg_buf_appendf(&ws->req, "Sec-WebSocket-Protocol: %s\r\n", opts->subprotocol);
    }
    for (size_t i = 0; rc == AHG_OK && opts->headers && opts->headers[i]; i += 2)
        rc = ahg_buf_appendf(&ws->req, "%s: %s\r\n", opts->headers[i], opts->headers[i + 1]);
    if (rc == AHG_OK)
        rc = ahg_buf_append(&ws->req, "\r\n", 2);
    if (rc == AHG_OK) {
        ws->conn = ahg_conn_connect(loop, &opts->conn, &ws_conn_ops, ws, &rc);
        if (!ws->conn && rc == AHG_OK)
            rc = AHG_EIO;
    }
    if (rc != AHG_OK) {
        ws_free(ws);
        if (err)
            *err = rc;
        return NULL;
    }
    ahg_timer_start(&ws->hs_timer,
                    opts->handshake_timeout_ms ? opts->handshake_timeout_ms : HANDSHAKE_MS);
    return ws;
}

int
ahg_wsconn_parse_url(const char *url, struct ahg_wsconn_client_opts *opts, char *buf, size_t bufsz)
{
    struct ahg_url *u = malloc(sizeof(*u));
    if (!u)
        return AHG_ENOMEM;
    int rc = ahg_url_parse(url, u);
    if (rc == AHG_OK && strcmp(u->scheme, "ws") != 0 && strcmp(u->scheme, "wss") != 0)
        rc = AHG_EINVAL;
    if (rc == AHG_OK) {
        bool tls = !strcmp(u->scheme, "wss");
        int port = u->port > 0 ? u->port : (tls ? 443 : 80);
        bool v6 = strchr(u->host, ':') != NULL;
        size_t hl = strlen(u->host) + 1;
        /* layout: address\0host-header\0target\0 */
        int n = snprintf(buf, bufsz, "%s%c%s%s%s:%d%c%s%s%s", u->host, 0, v6 ? "[" : "", u->host,
                         v6 ? "]" : "", port, 0, u->path[0] ? u->path : "/", u->query[0] ? "?" : "",
                         u->query);
        if (n < 0 || (size_t)n >= bufsz) {
            rc = AHG_ELIMIT;
        } else {
            memset(&opts->conn, 0, sizeof(opts->conn));
            opts->conn.address = buf;
            opts->conn.port = port;
            opts->conn.tls = tls;
            opts->conn.tls_host = buf;
            opts->host = buf + hl;
            opts->target = opts->host + strlen(opts->host) + 1;
        }
    }
    free(u);
    return rc;
}

/* ---- both sides ---- */

int
ahg_wsconn_send(struct ahg_wsconn *ws, enum ahg_ws_opcode op, const void *p, size_t n)
{
    unsigned char key[4];
    if (ws->state != WS_OPEN || ws->close_sent || ws->send_left)
        return AHG_ECLOSED;
    int rc = put_frame_header(ws, op, true, n, key);
    if (rc == AHG_OK && n)
        rc = put_payload(ws, p, n, key, 0);
    return rc;
}

int
ahg_wsconn_send_frame(struct ahg_wsconn *ws, enum ahg_ws_opcode op, bool fin, uint64_t len)
{
    if (ws->state != WS_OPEN || ws->close_sent || ws->send_left)
        return ws->send_left ? AHG_EINVAL : AHG_ECLOSED;
    int rc = put_frame_header(ws, op, fin, len, ws->send_key);
    if (rc == AHG_OK) {
        ws->send_left = len;
        ws->send_off = 0;
    }
    return rc;
}

int
ahg_wsconn_send_data(struct ahg_wsconn *ws, const void *p, size_t n)
{
    if (ws->state != WS_OPEN)
        return AHG_ECLOSED;
    if (n > ws->send_left)
        return AHG_EINVAL;
    int rc = put_payload(ws, p, n, ws->send_key, ws->send_off);
    if (rc == AHG_OK) {
        ws->send_left -= n;
        ws->send_off += n;
    }
    return rc;
}

int
ahg_wsconn_ping(struct ahg_wsconn *ws, const void *p, size_t n)
{
    if (ws->state != WS_OPEN || ws->close_sent || ws->send_left)
        return AHG_ECLOSED;
    return send_control(ws, AHG_WS_PING, p, n);
}

int
ahg_wsconn_pong(struct ahg_wsconn *ws, const void *p, size_t n)
{
    if (ws->state != WS_OPEN || ws->close_sent || ws->send_left)
        return AHG_ECLOSED;
    return send_control(ws, AHG_WS_PONG, p, n);
}

int
ahg_wsconn_close(struct ahg_wsconn *ws, uint16_t code, const char *reason)
{
    if (ws->state != WS_OPEN || ws->close_sent)
        return AHG_OK;
    unsigned char pl[AHG_WS_MAX_CONTROL];
    size_t len = 0;
    if (code == AHG_WS_CLOSE_NO_STATUS || code == AHG_WS_CLOSE_ABNORMAL)
        code = AHG_WS_CLOSE_NORMAL;
    if (ahg_ws_close_payload(pl, sizeof(pl), code, reason ? reason : "", &len) != AHG_OK) {
        code = AHG_WS_CLOSE_NORMAL; /* an invalid code from the caller */
        (void)ahg_ws_close_payload(pl, sizeof(pl), code, "", &len);
    }
    ws->close_sent = true;
    if (!ws->close_received)
        ws->close_code = code;
    if (ws->send_left) {
        /* a streamed frame is unfinished: no clean close is possible */
        ahg_conn_abort(ws->conn);
        return AHG_OK;
    }
    unsigned char key[4];
    int rc = put_frame_header(ws, AHG_WS_CLOSE, true, len, key);
    if (rc == AHG_OK)
        rc = put_payload(ws, pl, len, key, 0);
    if (rc != AHG_OK || ws->close_received) {
        ahg_conn_close(ws->conn);
        return AHG_OK;
    }
    ahg_timer_start(&ws->close_timer, CLOSE_LINGER_MS);
    return AHG_OK;
}

void
ahg_wsconn_abort(struct ahg_wsconn *ws)
{
    ahg_conn_abort(ws->conn);
}

bool
ahg_wsconn_writable(const struct ahg_wsconn *ws)
{
    return ws->state == WS_OPEN && ahg_conn_writable(ws->conn);
}

void
ahg_wsconn_pause_read(struct ahg_wsconn *ws)
{
    ws->paused = true;
    ahg_conn_pause_read(ws->conn);
}

void
ahg_wsconn_resume_read(struct ahg_wsconn *ws)
{
    if (!ws->paused)
        return;
    ws->paused = false;
    ahg_conn_resume_read(ws->conn);
}

void
ahg_wsconn_set_cbs(struct ahg_wsconn *ws, const struct ahg_wsconn_cbs *cbs, void *ud)
{
    ws->cbs = cbs;
    ws->ud = ud;
}

void *
ahg_wsconn_ud(const struct ahg_wsconn *ws)
{
    return ws->ud;
}

struct ahg_conn *
ahg_wsconn_conn(const struct ahg_wsconn *ws)
{
    return ws->conn;
}

const char *
ahg_wsconn_subprotocol(const struct ahg_wsconn *ws)
{
    return ws->proto;
}

bool
ahg_wsconn_closing(const struct ahg_wsconn *ws)
{
    return ws->close_sent || ws->close_received;
}
