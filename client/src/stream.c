/*
 * stream.c - an accepted stream: the rendezvous WebSocket (frame mode) spliced to a TCP
 * connection to the local app, with backpressure both ways; request and response heads are
 * parsed on the side only to log one line per request.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ahg/err.h"
#include "ahg/http.h"
#include "ahg/log.h"
#include "cli_int.h"

#define LOG_QUEUE 16

struct pending {
    char method[16];
    char path[256];
    uint64_t start;
};

struct cli_stream {
    struct cli_stream *next, *prev;
    struct cli_tunnel *t;
    struct ahg_wsconn *ws;
    struct ahg_conn *tcp;
    bool ws_open, ws_gone, tcp_open, tcp_gone, tcp_failed, sent_502;
    /* request log */
    struct ahg_http_parser *reqp, *resp;
    bool log_off, req_body, resp_body, req_upgrade, cur_upgrade;
    int status;
    struct pending q[LOG_QUEUE];
    unsigned qh, qn;
};

const struct ahg_wsconn_cbs cli_null_ws_cbs = {0};

static void ws_close_now(struct cli_stream *s);

/* Draining: a stream with no request in flight is closed (HTTP streams only). */
static bool
idle(const struct cli_stream *s)
{
    return !s->log_off && !s->req_upgrade && s->qn == 0 && !s->req_body && !s->resp_body;
}

static void
close_if_idle(struct cli_stream *s)
{
    if (s->t->draining && s->ws_open && idle(s)) {
        ws_close_now(s);
        if (s->tcp)
            ahg_conn_close(s->tcp);
    }
}

/* ---- request log ---- */

static void
log_done(struct cli_stream *s, int status, uint64_t bytes)
{
    if (!s->qn)
        return;
    struct pending *pd = &s->q[s->qh];
    struct cli_req_log rec = {
        .method = pd->method,
        .path = pd->path,
        .status = status,
        .duration_ms = ahg_now_ms() - pd->start,
        .bytes = bytes,
    };
    cli_tunnel_log_request(s->t, &rec);
    s->qh = (s->qh + 1) % LOG_QUEUE;
    s->qn--;
}

/* A complete request head: queue its console line; with a Host override, write the head
 * rewritten (the parser kept the raw bytes). */
static int
req_head_done(struct cli_stream *s, const unsigned char *raw, size_t used)
{
    const struct ahg_http_head *h = ahg_http_parser_head(s->reqp);
    if (s->qn < LOG_QUEUE && h) {
        struct pending *pd = &s->q[(s->qh + s->qn) % LOG_QUEUE];
        (void)snprintf(pd->method, sizeof(pd->method), "%s", h->method);
        (void)snprintf(pd->path, sizeof(pd->path), "%s", h->target);
        pd->start = ahg_now_ms();
        s->qn++;
    }
    s->cur_upgrade = h && h->upgrade;
    s->req_body = true;
    if (!s->t->host_header)
        return ahg_conn_write(s->tcp, raw, used);
    struct ahg_http_head *own = ahg_http_parser_head_take(s->reqp);
    if (!own)
        return AHG_EPROTO;
    int rc = ahg_http_head_set(own, "Host", s->t->host_header);
    size_t need = 0;
    if (rc == AHG_OK)
        rc = ahg_http_head_serialize(own, 0, NULL, 0, &need);
    if (rc == AHG_ELIMIT || rc == AHG_OK) {
        char *buf = malloc(need ? need : 1);
        rc = buf ? ahg_http_head_serialize(own, 0, buf, need, &need) : AHG_ENOMEM;
        if (rc == AHG_OK)
            rc = ahg_conn_write(s->tcp, buf, need);
        free(buf);
    }
    ahg_http_head_free(own);
    return rc;
}

/* Forwards request bytes from the rendezvous to the local app, parsing heads on the way for
 * the console line and, when asked, the Host rewrite; bodies and upgraded protocols pass as
 * they are. AHG_OK or the write error. */
static int
req_forward(struct cli_stream *s, const unsigned char *p, size_t n)
{
    while (n || s->req_body) {
        if (s->log_off || !s->reqp || s->req_upgrade)
            return n ? ahg_conn_write(s->tcp, p, n) : AHG_OK;
        size_t used = 0;
        int rc;
        if (!s->req_body) {
            rc = ahg_http_parser_feed(s->reqp, (const char *)p, n, &used);
            if (rc == AHG_EAGAIN)
                return s->t->host_header ? AHG_OK : ahg_conn_write(s->tcp, p, n);
            if (rc != AHG_OK) {
                s->log_off = true;
                /* with a rewrite the head bytes are held by the parser: give up the stream */
                return s->t->host_header ? AHG_EPROTO : ahg_conn_write(s->tcp, p, n);
            }
            rc = req_head_done(s, p, used);
            if (rc != AHG_OK)
                return rc;
        } else {
            rc = ahg_http_parser_body(s->reqp, (const char *)p, n, &used, NULL, NULL);
            if (rc != AHG_OK && rc != AHG_EAGAIN) {
                s->log_off = true;
                return ahg_conn_write(s->tcp, p, n);
            }
            if (used && ahg_conn_write(s->tcp, p, used) != AHG_OK)
                return AHG_ELIMIT;
            if (rc == AHG_EAGAIN)
                return AHG_OK;
            if (s->cur_upgrade)
                s->req_upgrade = true; /* what follows is the upgraded protocol */
            ahg_http_parser_reset(s->reqp);
            s->req_body = false;
        }
        p += used;
        n -= used;
    }
    return AHG_OK;
}

static void
resp_bytes(struct cli_stream *s, const unsigned char *p, size_t n)
{
    while (!s->log_off && s->resp) {
        size_t used = 0;
        int rc;
        if (!s->resp_body) {
            if (!n)
                return;
            if (s->qn)
                (void)ahg_http_parser_set_request_method(s->resp, s->q[s->qh].method);
            rc = ahg_http_parser_feed(s->resp, (const char *)p, n, &used);
            if (rc == AHG_EAGAIN)
                return;
            if (rc != AHG_OK) {
                s->log_off = true;
                return;
            }
            const struct ahg_http_head *h = ahg_http_parser_head(s->resp);
            s->status = h ? h->status : 0;
            if (s->status == 101) {
                log_done(s, 101, 0);
                s->log_off = true;
                return;
            }
            s->resp_body = true;
        } else {
            rc = ahg_http_parser_body(s->resp, (const char *)p, n, &used, NULL, NULL);
            if (rc == AHG_EAGAIN)
                return;
            if (rc != AHG_OK) {
                s->log_off = true;
                return;
            }
            if (s->status >= 200)
                log_done(s, s->status, ahg_http_parser_body_bytes(s->resp));
            ahg_http_parser_reset(s->resp);
            s->resp_body = false;
            if (!n || n == used) {
                close_if_idle(s);
                return;
            }
        }
        p += used;
        n -= used;
    }
}

/* ---- lifetime ---- */

static void
stream_free(struct cli_stream *s)
{
    struct cli_tunnel *t = s->t;
    if (s->prev)
        s->prev->next = s->next;
    else
        t->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    t->nstreams--;
    ahg_http_parser_free(s->reqp);
    ahg_http_parser_free(s->resp);
    free(s);
}

static void
maybe_free(struct cli_stream *s)
{
    if (s->ws_gone && s->tcp_gone)
        stream_free(s);
}

static void
ws_close_now(struct cli_stream *s)
{
    if (s->ws && s->ws_open && !ahg_wsconn_closing(s->ws))
        (void)ahg_wsconn_close(s->ws, 1000, "");
}

static void
send_502(struct cli_stream *s)
{
    char body[512], msg[1024];
    cli_unreachable_body(s->t->local_host, s->t->o.local_port, body, sizeof(body));
    int n = snprintf(msg, sizeof(msg),
                     "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     strlen(body), body);
    s->sent_502 = true;
    (void)ahg_wsconn_send(s->ws, AHG_WS_BINARY, msg, (size_t)n);
    AHG_LOG_WARN("local service %s:%d is not reachable", s->t->local_host, s->t->o.local_port);
    ws_close_now(s);
}

/* ---- TCP side ---- */

static void
tcp_connect_cb(struct ahg_conn *c)
{
    struct cli_stream *s = ahg_conn_ud(c);
    s->tcp_open = true;
}

static size_t
tcp_data_cb(struct ahg_conn *c, const unsigned char *p, size_t n)
{
    struct cli_stream *s = ahg_conn_ud(c);
    if (!s->ws || !s->ws_open || ahg_wsconn_closing(s->ws))
        return n; /* nowhere to go: drop */
    if (!ahg_wsconn_writable(s->ws))
        return 0; /* keep it: read pauses until on_drain */
    if (ahg_wsconn_send(s->ws, AHG_WS_BINARY, p, n) != AHG_OK) {
        ahg_wsconn_abort(s->ws);
        ahg_conn_abort(c);
        return n;
    }
    if (!ahg_wsconn_writable(s->ws))
        ahg_conn_pause_read(c);
    resp_bytes(s, p, n); /* after sending: a drain may close the stream here */
    return n;
}

static void
tcp_drain_cb(struct ahg_conn *c)
{
    struct cli_stream *s = ahg_conn_ud(c);
    if (s->ws && !s->ws_gone)
        ahg_wsconn_resume_read(s->ws);
}

static void
tcp_close_cb(struct ahg_conn *c, enum ahg_conn_end why)
{
    struct cli_stream *s = ahg_conn_ud(c);
    (void)c;
    s->tcp = NULL;
    s->tcp_gone = true;
    if (why == AHG_CONN_END_CONNECT && !s->tcp_open) {
        s->tcp_failed = true;
        if (s->ws_open)
            send_502(s);
    } else {
        if (!s->log_off && s->resp && s->resp_body && ahg_http_parser_eof(s->resp) == AHG_OK &&
            s->status >= 200)
            log_done(s, s->status, ahg_http_parser_body_bytes(s->resp));
        ws_close_now(s);
    }
    maybe_free(s);
}

static const struct ahg_conn_ops tcp_ops = {
    .on_connect = tcp_connect_cb,
    .on_data = tcp_data_cb,
    .on_drain = tcp_drain_cb,
    .on_close = tcp_close_cb,
};

/* ---- WebSocket side ---- */

static void
ws_open_cb(struct ahg_wsconn *ws, const struct ahg_http_head *resp)
{
    struct cli_stream *s = ahg_wsconn_ud(ws);
    (void)resp;
    s->ws_open = true;
    if (s->tcp_failed)
        send_502(s);
    else if (s->tcp)
        ahg_conn_resume_read(s->tcp);
    else
        ws_close_now(s); /* the local app already closed */
}

static void
ws_fail_cb(struct ahg_wsconn *ws, int status, const char *reason, const struct ahg_http_head *resp,
           const char *body)
{
    struct cli_stream *s = ahg_wsconn_ud(ws);
    (void)resp;
    (void)body;
    AHG_LOG_WARN("rendezvous failed: %d %s", status, reason ? reason : "");
    s->ws = NULL;
    s->ws_gone = true;
    if (s->tcp)
        ahg_conn_abort(s->tcp);
    maybe_free(s);
}

static void
ws_frame_begin_cb(struct ahg_wsconn *ws, enum ahg_ws_opcode op, bool fin, uint64_t len)
{
    (void)ws;
    (void)op;
    (void)fin;
    (void)len;
}

static void
ws_frame_data_cb(struct ahg_wsconn *ws, const unsigned char *p, size_t n)
{
    struct cli_stream *s = ahg_wsconn_ud(ws);
    if (!s->tcp || s->tcp_failed)
        return;
    if (req_forward(s, p, n) != AHG_OK) {
        ahg_conn_abort(s->tcp);
        return;
    }
    if (!ahg_conn_writable(s->tcp))
        ahg_wsconn_pause_read(ws);
}

static void
ws_frame_end_cb(struct ahg_wsconn *ws)
{
    (void)ws;
}

static void
ws_drain_cb(struct ahg_wsconn *ws)
{
    struct cli_stream *s = ahg_wsconn_ud(ws);
    if (s->tcp)
        ahg_conn_resume_read(s->tcp);
}

static void
ws_peer_close_cb(struct ahg_wsconn *ws, uint16_t code, const char *reason, size_t rlen)
{
    struct cli_stream *s = ahg_wsconn_ud(ws);
    (void)code;
    (void)reason;
    (void)rlen;
    (void)ahg_wsconn_close(ws, 1000, "");
    if (s->tcp)
        ahg_conn_close(s->tcp);
}

static void
ws_close_cb(struct ahg_wsconn *ws, uint16_t code)
{
    struct cli_stream *s = ahg_wsconn_ud(ws);
    (void)ws;
    (void)code;
    s->ws = NULL;
    s->ws_gone = true;
    if (s->tcp)
        ahg_conn_close(s->tcp);
    maybe_free(s);
}

static const struct ahg_wsconn_cbs ws_cbs = {
    .on_open = ws_open_cb,
    .on_fail = ws_fail_cb,
    .on_frame_begin = ws_frame_begin_cb,
    .on_frame_data = ws_frame_data_cb,
    .on_frame_end = ws_frame_end_cb,
    .on_drain = ws_drain_cb,
    .on_peer_close = ws_peer_close_cb,
    .on_close = ws_close_cb,
};

void
cli_stream_accept(struct cli_tunnel *t, const struct ahg_hcmsg *m)
{
    struct cli_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return;
    s->t = t;
    s->next = t->streams;
    if (t->streams)
        t->streams->prev = s;
    t->streams = s;
    t->nstreams++;
    s->reqp = ahg_http_parser_new(AHG_HTTP_REQUEST, NULL, NULL);
    s->resp = ahg_http_parser_new(AHG_HTTP_RESPONSE, NULL, NULL);
    if (!s->reqp || !s->resp)
        s->log_off = true;

    struct ahg_wsconn_client_opts wo;
    char buf[2048];
    memset(&wo, 0, sizeof(wo));
    int err = 0;
    if (ahg_wsconn_parse_url(m->address, &wo, buf, sizeof(buf)) == AHG_OK) {
        wo.conn.insecure = t->o.insecure;
        cli_tunnel_dial_fixup(t, &wo);
        const char *proto = ahg_hcmsg_header_get(m, "Sec-WebSocket-Protocol");
        char first[128] = "";
        if (proto) {
            size_t k = strcspn(proto, ", ");
            if (k < sizeof(first)) {
                memcpy(first, proto, k);
                first[k] = 0;
            }
        }
        wo.subprotocol = first[0] ? first : NULL;
        s->ws = ahg_wsconn_connect(t->loop, &wo, &ws_cbs, s, &err);
    }
    if (!s->ws) {
        AHG_LOG_WARN("rendezvous dial failed: %s", ahg_strerror(err));
        s->ws_gone = true;
        s->tcp_gone = true;
        stream_free(s);
        return;
    }
    struct ahg_connect_opts co = {
        .address = t->local_host, .port = t->o.local_port, .connect_timeout_ms = 10000};
    s->tcp = ahg_conn_connect(t->loop, &co, &tcp_ops, s, &err);
    if (!s->tcp) {
        s->tcp_gone = true;
        s->tcp_failed = true;
        return;
    }
    ahg_conn_pause_read(s->tcp); /* until the rendezvous is open */
}

void
cli_stream_drain(struct cli_tunnel *t)
{
    for (struct cli_stream *s = t->streams; s; s = s->next)
        close_if_idle(s);
}

void
cli_stream_free_all(struct cli_tunnel *t)
{
    struct cli_stream *next = NULL;
    for (struct cli_stream *s = t->streams; s; s = next) {
        next = s->next;
        if (s->ws) {
            ahg_wsconn_set_cbs(s->ws, &cli_null_ws_cbs, NULL);
            ahg_wsconn_abort(s->ws);
        }
        if (s->tcp) {
            ahg_conn_set_ops(s->tcp, &ahg_conn_null_ops, NULL);
            ahg_conn_abort(s->tcp);
        }
        stream_free(s);
    }
}
