/*
 * httpreq.c - HTTP-mode requests (hc-protocol.md 3): a `request` from the control channel (body
 * in the next binary message) or from a rendezvous the relay asked us to dial (rendezvous-only
 * request; further requests may follow on it) is forwarded to the local app as HTTP/1.1; the
 * response goes back inline (`response` + one binary message, at most 64 KiB) or, when larger,
 * over a rendezvous: the `response` JSON, the body as binary/continuation frames, an empty FIN
 * frame at the end.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ahg/err.h"
#include "ahg/http.h"
#include "ahg/log.h"
#include "cli_int.h"
#include "platform.h"

#define INLINE_MAX    ((size_t)64 * 1024)
#define RDV_MAX_MSG   ((uint64_t)1024 * 1024)
#define REQ_HEAD_MAX  ((size_t)AHG_HTTP_HEAD_MAX_BYTES)
#define RESP_HDRS_MAX 256
#define LOCAL_IDLE_MS 65000u

struct cli_hreq {
    struct cli_hreq *next, *prev;
    struct cli_tunnel *t;
    bool persistent;        /* a rendezvous the relay sends requests over */
    struct ahg_wsconn *rdv; /* source rendezvous (persistent) or reply rendezvous */
    bool rdv_open;
    unsigned ctrl_gen; /* control-channel requests: the channel they came on */
    /* the current request */
    bool active, want_body;
    char *id, *address, *method;
    struct ahg_hcmsg *pend; /* a request whose body message comes next */
    char *out;              /* serialised request head + body, sent once connected */
    size_t out_len;
    struct ahg_conn *tcp;
    uint64_t start;
    char path[256];
    struct ahg_http_parser *resp;
    struct ahg_http_head *rhead;
    bool head_done, streaming, resp_sent, frames_sent;
    unsigned char *buf; /* inline body, up to INLINE_MAX */
    size_t blen;
    /* source rendezvous in frame mode: the request JSON (text message, reassembled up to
     * AHG_HCMSG_MAX_LEN) and the body (binary message) streamed to the local app chunked */
    char *text;
    size_t tlen;
    bool in_text, in_body, body_fin, text_fin, text_bad, chunk_open;
    bool connecting, sync_fail; /* inside ahg_conn_connect(), which may report failure at once */
};

static void hreq_finish(struct cli_hreq *h);

static char *
dupstr(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static void
drop_pend(struct cli_hreq *h)
{
    if (h->pend) {
        ahg_hcmsg_clear(h->pend);
        free(h->pend);
        h->pend = NULL;
    }
}

static void
reset_request(struct cli_hreq *h)
{
    drop_pend(h);
    free(h->id);
    free(h->address);
    free(h->method);
    free(h->out);
    free(h->buf);
    ahg_http_parser_free(h->resp);
    ahg_http_head_free(h->rhead);
    h->id = h->address = h->method = h->out = NULL;
    h->buf = NULL;
    h->resp = NULL;
    h->rhead = NULL;
    h->out_len = h->blen = 0;
    h->active = h->want_body = h->head_done = h->streaming = h->resp_sent = h->frames_sent = false;
    if (h->tcp) {
        ahg_conn_set_ops(h->tcp, &ahg_conn_null_ops, NULL);
        ahg_conn_abort(h->tcp);
        h->tcp = NULL;
    }
}

static void
hreq_free(struct cli_hreq *h)
{
    struct cli_tunnel *t = h->t;
    reset_request(h);
    free(h->text);
    if (h->rdv) {
        ahg_wsconn_set_cbs(h->rdv, &cli_null_ws_cbs, NULL);
        ahg_wsconn_abort(h->rdv);
    }
    if (t->ctrl_body_wait == h)
        t->ctrl_body_wait = NULL;
    if (h->prev)
        h->prev->next = h->next;
    else
        t->hreqs = h->next;
    if (h->next)
        h->next->prev = h->prev;
    t->nhreqs--;
    free(h);
}

static struct cli_hreq *
hreq_new(struct cli_tunnel *t)
{
    struct cli_hreq *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->t = t;
    h->next = t->hreqs;
    if (t->hreqs)
        t->hreqs->prev = h;
    t->hreqs = h;
    t->nhreqs++;
    return h;
}

/* The request-target minus the leading "/<hc>" segment. */
static void
local_target(const char *hc, const char *target, char *out, size_t outsz)
{
    size_t n = strlen(hc);
    const char *rest = target;
    if (target[0] == '/' && !strncmp(target + 1, hc, n) &&
        (target[1 + n] == 0 || target[1 + n] == '/' || target[1 + n] == '?'))
        rest = target + 1 + n;
    if (rest[0] == '/')
        (void)snprintf(out, outsz, "%s", rest);
    else
        (void)snprintf(out, outsz, "/%s", rest);
}

static bool
skip_header(const char *name)
{
    static const char *const hop[] = {
        "Connection", "Content-Length",   "Host", "TE", "Trailer", "Transfer-Encoding", "Upgrade",
        "Keep-Alive", "Proxy-Connection", NULL};
    for (size_t i = 0; hop[i]; i++)
        if (!cli_platform_strncasecmp(name, hop[i], (size_t)-1))
            return true;
    return false;
}

/* ---- response back to the relay ---- */

static struct ahg_wsconn *
reply_ws(struct cli_hreq *h)
{
    if (h->rdv)
        return h->rdv_open ? h->rdv : NULL;
    struct cli_tunnel *t = h->t;
    if (t->ctrl && t->ctrl_open && t->ctrl_gen == h->ctrl_gen)
        return t->ctrl;
    return NULL;
}

static bool
has_body(const struct cli_hreq *h, int status)
{
    return strcmp(h->method, "HEAD") != 0 && status != 204 && status != 304;
}

static int
send_response_json(struct cli_hreq *h, struct ahg_wsconn *ws, int status, const char *reason,
                   const struct ahg_http_head *head)
{
    struct ahg_hcmsg m;
    struct ahg_hcmsg_header hdrs[RESP_HDRS_MAX];
    size_t nh = 0;
    ahg_hcmsg_init(&m, AHG_HCMSG_RESPONSE);
    for (size_t i = 0; head && i < head->nfields && nh < RESP_HDRS_MAX; i++) {
        if (skip_header(head->fields[i].name))
            continue;
        hdrs[nh].name = head->fields[i].name;
        hdrs[nh].value = head->fields[i].value;
        nh++;
    }
    m.request_id = h->id;
    m.status_code = status;
    char rbuf[256];
    (void)snprintf(rbuf, sizeof(rbuf), "%s", reason ? reason : "");
    m.status_description = reason ? rbuf : NULL;
    m.headers = nh ? hdrs : NULL;
    m.nheaders = nh;
    m.body = has_body(h, status) ? 1 : 0;
    char *json = NULL;
    size_t len = 0;
    int rc = ahg_hcmsg_encode(&m, &json, &len);
    if (rc == AHG_OK)
        rc = ahg_wsconn_send(ws, AHG_WS_TEXT, json, len);
    free(json);
    return rc;
}

static void
log_it(struct cli_hreq *h, int status, uint64_t bytes)
{
    struct cli_req_log rec = {.method = h->method ? h->method : "-",
                              .path = h->path,
                              .status = status,
                              .duration_ms = ahg_now_ms() - h->start,
                              .bytes = bytes};
    cli_tunnel_log_request(h->t, &rec);
}

/* Inline answer (body <= 64 KiB) on the reply channel. */
static void
answer_inline(struct cli_hreq *h, int status, const char *reason, const struct ahg_http_head *head,
              const void *body, size_t blen)
{
    struct ahg_wsconn *ws = reply_ws(h);
    if (ws && send_response_json(h, ws, status, reason, head) == AHG_OK && has_body(h, status)) {
        if (h->persistent) {
            (void)ahg_wsconn_send_frame(ws, AHG_WS_BINARY, true, blen);
            if (blen)
                (void)ahg_wsconn_send_data(ws, body, blen);
        } else {
            (void)ahg_wsconn_send(ws, AHG_WS_BINARY, body, blen);
        }
    }
    log_it(h, status, blen);
    hreq_finish(h);
}

static void
answer_502(struct cli_hreq *h)
{
    char body[512];
    cli_unreachable_body(h->t->local_host, h->t->o.local_port, body, sizeof(body));
    struct ahg_http_head *head = ahg_http_head_new_response(502, NULL, NULL);
    if (head)
        (void)ahg_http_head_add(head, "Content-Type", "text/plain; charset=utf-8");
    AHG_LOG_WARN("local service %s:%d is not reachable", h->t->local_host, h->t->o.local_port);
    answer_inline(h, 502, "Bad Gateway", head, body, strlen(body));
    ahg_http_head_free(head);
}

/* Streaming: one body piece as a non-final frame. */
static int
stream_piece(struct cli_hreq *h, const void *p, size_t n)
{
    if (!n)
        return AHG_OK;
    int rc = ahg_wsconn_send_frame(h->rdv, h->frames_sent ? AHG_WS_CONT : AHG_WS_BINARY, false, n);
    if (rc == AHG_OK)
        rc = ahg_wsconn_send_data(h->rdv, p, n);
    h->frames_sent = true;
    return rc;
}

static void
stream_end(struct cli_hreq *h)
{
    if (h->rdv && h->rdv_open && has_body(h, h->rhead->status))
        (void)ahg_wsconn_send_frame(h->rdv, h->frames_sent ? AHG_WS_CONT : AHG_WS_BINARY, true, 0);
    log_it(h, h->rhead->status, ahg_http_parser_body_bytes(h->resp));
    if (h->rdv && !h->persistent && h->rdv_open)
        (void)ahg_wsconn_close(h->rdv, 1000, "");
    hreq_finish(h);
}

/* The response head is complete and the buffered body is sent once the rendezvous is open. */
static bool
stream_start(struct cli_hreq *h)
{
    if (send_response_json(h, h->rdv, h->rhead->status, h->rhead->reason, h->rhead) != AHG_OK) {
        hreq_finish(h);
        return false;
    }
    h->resp_sent = true;
    if (has_body(h, h->rhead->status))
        (void)stream_piece(h, h->buf, h->blen);
    h->blen = 0;
    if (h->tcp)
        ahg_conn_resume_read(h->tcp);
    return true;
}

static bool rdv_dial_reply(struct cli_hreq *h);

static int
body_cb(void *ud, const char *p, size_t n)
{
    struct cli_hreq *h = ud;
    if (!h->streaming) {
        memcpy(h->buf + h->blen, p, n); /* checked by the caller: fits */
        h->blen += n;
        return AHG_OK;
    }
    if (!has_body(h, h->rhead->status))
        return AHG_OK;
    return stream_piece(h, p, n);
}

/* ---- local TCP side ---- */

static void
tcp_connect_cb(struct ahg_conn *c)
{
    struct cli_hreq *h = ahg_conn_ud(c);
    if (ahg_conn_write(c, h->out, h->out_len) != AHG_OK)
        ahg_conn_abort(c);
    free(h->out);
    h->out = NULL;
    h->out_len = 0;
    if (h->persistent && h->rdv)
        ahg_wsconn_resume_read(h->rdv); /* body frames may flow now */
}

static size_t
tcp_data_cb(struct ahg_conn *c, const unsigned char *p, size_t n)
{
    struct cli_hreq *h = ahg_conn_ud(c);
    size_t off = 0;
    while (h->active) {
        size_t used = 0;
        int rc;
        if (!h->head_done) {
            if (off == n)
                return n;
            rc = ahg_http_parser_feed(h->resp, (const char *)p + off, n - off, &used);
            if (rc == AHG_EAGAIN)
                return n;
            if (rc != AHG_OK) {
                answer_502(h);
                return n;
            }
            const struct ahg_http_head *hd = ahg_http_parser_head(h->resp);
            if (hd && hd->status < 200) { /* 1xx: skip it */
                ahg_http_parser_reset(h->resp);
                (void)ahg_http_parser_set_request_method(h->resp, h->method);
                off += used;
                continue;
            }
            h->rhead = ahg_http_parser_head_take(h->resp);
            h->head_done = true;
            off += used;
            continue;
        }
        if (off == n && ahg_http_parser_framing(h->resp) != AHG_HTTP_BODY_NONE)
            return n;
        if (h->streaming && !(h->rdv && h->rdv_open && h->resp_sent))
            return off; /* pause until the rendezvous is up */
        if (h->streaming && !ahg_wsconn_writable(h->rdv))
            return off;
        if (!h->streaming && h->blen + (n - off) > INLINE_MAX) {
            h->streaming = true;
            if (!h->rdv) {
                if (!rdv_dial_reply(h))
                    return n;
            } else if (!h->resp_sent && !stream_start(h)) {
                return n;
            }
            continue;
        }
        rc = ahg_http_parser_body(h->resp, (const char *)p + off, n - off, &used, body_cb, h);
        off += used;
        if (rc == AHG_EAGAIN) {
            if (off == n)
                return n;
            continue;
        }
        if (rc != AHG_OK) {
            if (h->resp_sent) {
                hreq_finish(h);
            } else {
                answer_502(h);
            }
            return n;
        }
        /* response complete */
        if (h->streaming)
            stream_end(h);
        else
            answer_inline(h, h->rhead->status, h->rhead->reason, h->rhead, h->buf, h->blen);
        return n;
    }
    return n;
}

static void
tcp_drain_cb(struct ahg_conn *c)
{
    struct cli_hreq *h = ahg_conn_ud(c);
    if (h->persistent && h->rdv)
        ahg_wsconn_resume_read(h->rdv);
}

static void
tcp_close_cb(struct ahg_conn *c, enum ahg_conn_end why)
{
    struct cli_hreq *h = ahg_conn_ud(c);
    h->tcp = NULL;
    if (h->connecting) {
        h->sync_fail = true; /* forward() answers */
        return;
    }
    if (!h->active)
        return;
    if (why == AHG_CONN_END_CONNECT || !h->head_done) {
        answer_502(h);
        return;
    }
    if (ahg_http_parser_eof(h->resp) == AHG_OK) {
        if (h->streaming) {
            if (!h->resp_sent && !h->rdv_open) {
                hreq_finish(h); /* the rest of the body is gone with the connection */
                return;
            }
            if (!h->resp_sent && !stream_start(h))
                return;
            stream_end(h);
        } else {
            answer_inline(h, h->rhead->status, h->rhead->reason, h->rhead, h->buf, h->blen);
        }
        return;
    }
    hreq_finish(h); /* truncated response: drop it */
}

static const struct ahg_conn_ops tcp_ops = {
    .on_connect = tcp_connect_cb,
    .on_data = tcp_data_cb,
    .on_drain = tcp_drain_cb,
    .on_close = tcp_close_cb,
};

/* Builds the HTTP/1.1 request from m (and body) and connects to the local app. */
static void
forward(struct cli_hreq *h, const struct ahg_hcmsg *m, const void *body, size_t blen, bool stream)
{
    struct cli_tunnel *t = h->t;
    char target[8192];
    local_target(t->hc, m->request_target ? m->request_target : "/", target, sizeof(target));
    (void)snprintf(h->path, sizeof(h->path), "%.255s", target);
    int err = 0;
    struct ahg_http_head *head = ahg_http_head_new_request(h->method, target, &err);
    char hostv[300];
    (void)snprintf(hostv, sizeof(hostv), "%s:%d", t->local_host, t->o.local_port);
    if (head)
        err = ahg_http_head_add(head, "Host", hostv);
    for (size_t i = 0; head && err == AHG_OK && i < m->nheaders; i++) {
        if (skip_header(m->headers[i].name))
            continue;
        if (ahg_http_head_add(head, m->headers[i].name, m->headers[i].value) != AHG_OK)
            continue;
    }
    char clen[32];
    (void)snprintf(clen, sizeof(clen), "%zu", blen);
    if (head && stream)
        (void)ahg_http_head_add(head, "Transfer-Encoding", "chunked");
    else if (head && (blen || m->body == 1))
        (void)ahg_http_head_add(head, "Content-Length", clen);
    if (head)
        (void)ahg_http_head_add(head, "Connection", "close");
    h->out = head ? malloc(REQ_HEAD_MAX + blen) : NULL;
    size_t hl = 0;
    if (!h->out || ahg_http_head_serialize(head, 0, h->out, REQ_HEAD_MAX, &hl) != AHG_OK) {
        ahg_http_head_free(head);
        answer_502(h);
        return;
    }
    ahg_http_head_free(head);
    if (blen)
        memcpy(h->out + hl, body, blen);
    h->out_len = hl + blen;
    h->resp = ahg_http_parser_new(AHG_HTTP_RESPONSE, NULL, NULL);
    h->buf = malloc(INLINE_MAX);
    if (!h->resp || !h->buf || ahg_http_parser_set_request_method(h->resp, h->method) != AHG_OK) {
        answer_502(h);
        return;
    }
    struct ahg_connect_opts co = {
        .address = t->local_host, .port = t->o.local_port, .connect_timeout_ms = 10000};
    h->connecting = true;
    h->sync_fail = false;
    h->tcp = ahg_conn_connect(t->loop, &co, &tcp_ops, h, &err);
    h->connecting = false;
    if (!h->tcp || h->sync_fail) {
        h->tcp = NULL;
        answer_502(h);
    } else
        ahg_conn_set_idle_timeout(h->tcp, LOCAL_IDLE_MS); /* the relay gives up after 60 s */
}

/* Takes the fields of a (non rendezvous-only) request message. */
static int
take_request(struct cli_hreq *h, const struct ahg_hcmsg *m)
{
    h->active = true;
    h->start = ahg_now_ms();
    h->id = dupstr(m->id ? m->id : "");
    h->address = dupstr(m->address);
    h->method = dupstr(m->method ? m->method : "GET");
    (void)snprintf(h->path, sizeof(h->path), "%s", m->request_target ? m->request_target : "/");
    return h->id && h->method && (h->address || !m->address) ? AHG_OK : AHG_ENOMEM;
}

static void
hreq_finish(struct cli_hreq *h)
{
    if (h->persistent) {
        reset_request(h);
        if (h->rdv)
            ahg_wsconn_resume_read(h->rdv); /* the rest of a body is dropped, then the next */
        return;
    }
    if (h->rdv) {
        ahg_wsconn_set_cbs(h->rdv, &cli_null_ws_cbs, NULL);
        if (!h->rdv_open)
            ahg_wsconn_abort(h->rdv);
        else if (!ahg_wsconn_closing(h->rdv))
            (void)ahg_wsconn_close(h->rdv, 1000, "");
        h->rdv = NULL; /* a closing handshake finishes on its own */
    }
    hreq_free(h);
}

/* ---- rendezvous ---- */

static void
rdv_open_cb(struct ahg_wsconn *ws, const struct ahg_http_head *resp)
{
    struct cli_hreq *h = ahg_wsconn_ud(ws);
    (void)resp;
    h->rdv_open = true;
    if (!h->persistent && h->active && h->head_done)
        stream_start(h);
}

static void
rdv_fail_cb(struct ahg_wsconn *ws, int status, const char *reason, const struct ahg_http_head *resp,
            const char *body)
{
    struct cli_hreq *h = ahg_wsconn_ud(ws);
    (void)resp;
    (void)body;
    AHG_LOG_WARN("HTTP rendezvous failed: %d %s", status, reason ? reason : "");
    h->rdv = NULL;
    h->persistent = false;
    hreq_free(h);
}

/* A request JSON arrived on the source rendezvous. */
static void
src_request(struct cli_hreq *h, const char *json, size_t n)
{
    if (h->active)
        return;
    struct ahg_hcmsg m;
    ahg_hcmsg_init(&m, AHG_HCMSG_NONE);
    if (ahg_hcmsg_parse(json, n, &m) != AHG_OK || m.type != AHG_HCMSG_REQUEST ||
        ahg_hcmsg_is_rendezvous_only(&m) || take_request(h, &m) != AHG_OK) {
        ahg_hcmsg_clear(&m);
        reset_request(h);
        return;
    }
    bool body = m.body == 1;
    forward(h, &m, NULL, 0, body);
    ahg_hcmsg_clear(&m);
    if (body && h->tcp)
        ahg_wsconn_pause_read(h->rdv); /* until the local app is connected */
}

static void
src_frame_begin(struct ahg_wsconn *ws, enum ahg_ws_opcode op, bool fin, uint64_t len)
{
    struct cli_hreq *h = ahg_wsconn_ud(ws);
    if (op == AHG_WS_TEXT) {
        h->in_text = true;
        h->text_bad = false;
        h->tlen = 0;
    } else if (op == AHG_WS_BINARY) {
        h->in_text = false;
        h->in_body = true;
    }
    h->text_fin = h->in_text && fin;
    h->body_fin = !h->in_text && fin;
    h->chunk_open = false;
    if (!h->in_text && h->in_body && len && h->tcp) {
        h->chunk_open = true;
        char cl[32];
        int k = snprintf(cl, sizeof(cl), "%llx\r\n", (unsigned long long)len);
        if (ahg_conn_write(h->tcp, cl, (size_t)k) != AHG_OK)
            ahg_conn_abort(h->tcp);
    }
}

static void
src_frame_data(struct ahg_wsconn *ws, const unsigned char *p, size_t n)
{
    struct cli_hreq *h = ahg_wsconn_ud(ws);
    if (h->in_text) {
        if (!h->text)
            h->text = malloc(AHG_HCMSG_MAX_LEN);
        if (!h->text || h->tlen + n > AHG_HCMSG_MAX_LEN) {
            h->text_bad = true;
            return;
        }
        memcpy(h->text + h->tlen, p, n);
        h->tlen += n;
        return;
    }
    if (!h->in_body || !h->tcp)
        return; /* no request wants it (e.g. answered early): drop */
    if (ahg_conn_write(h->tcp, p, n) != AHG_OK) {
        ahg_conn_abort(h->tcp);
        return;
    }
    if (!ahg_conn_writable(h->tcp))
        ahg_wsconn_pause_read(ws);
}

static void
src_frame_end(struct ahg_wsconn *ws)
{
    struct cli_hreq *h = ahg_wsconn_ud(ws);
    if (h->in_text) {
        if (h->text_fin) {
            h->in_text = false;
            if (!h->text_bad)
                src_request(h, h->text, h->tlen);
        }
        return;
    }
    if (!h->in_body)
        return;
    if (h->tcp && h->chunk_open && ahg_conn_write(h->tcp, "\r\n", 2) != AHG_OK)
        ahg_conn_abort(h->tcp);
    h->chunk_open = false;
    if (h->tcp && h->body_fin && ahg_conn_write(h->tcp, "0\r\n\r\n", 5) != AHG_OK)
        ahg_conn_abort(h->tcp);
    if (h->body_fin)
        h->in_body = false;
}

static void
rdv_drain_cb(struct ahg_wsconn *ws)
{
    struct cli_hreq *h = ahg_wsconn_ud(ws);
    if (h->tcp)
        ahg_conn_resume_read(h->tcp);
}

static void
rdv_close_cb(struct ahg_wsconn *ws, uint16_t code)
{
    struct cli_hreq *h = ahg_wsconn_ud(ws);
    (void)code;
    h->rdv = NULL;
    h->rdv_open = false;
    h->persistent = false;
    hreq_free(h);
}

/* reply rendezvous: nothing comes back on it */
static const struct ahg_wsconn_cbs rdv_cbs = {
    .on_open = rdv_open_cb,
    .on_fail = rdv_fail_cb,
    .on_drain = rdv_drain_cb,
    .on_close = rdv_close_cb,
};

/* source rendezvous: requests and their bodies arrive on it, streamed */
static const struct ahg_wsconn_cbs src_cbs = {
    .on_open = rdv_open_cb,
    .on_fail = rdv_fail_cb,
    .on_frame_begin = src_frame_begin,
    .on_frame_data = src_frame_data,
    .on_frame_end = src_frame_end,
    .on_drain = rdv_drain_cb,
    .on_close = rdv_close_cb,
};

static struct ahg_wsconn *
rdv_dial(struct cli_hreq *h, const char *address)
{
    struct ahg_wsconn_client_opts wo;
    char buf[2048];
    memset(&wo, 0, sizeof(wo));
    if (!address || ahg_wsconn_parse_url(address, &wo, buf, sizeof(buf)) != AHG_OK)
        return NULL;
    wo.conn.insecure = h->t->o.insecure;
    cli_tunnel_dial_fixup(h->t, &wo);
    wo.max_message = RDV_MAX_MSG;
    int err = 0;
    return ahg_wsconn_connect(h->t->loop, &wo, h->persistent ? &src_cbs : &rdv_cbs, h, &err);
}

static bool
rdv_dial_reply(struct cli_hreq *h)
{
    AHG_LOG_DEBUG("HTTP-mode response over a rendezvous");
    h->rdv = rdv_dial(h, h->address);
    if (!h->rdv) {
        hreq_finish(h);
        return false;
    }
    return true;
}

/* ---- entry points ---- */

void
cli_hreq_from_ctrl(struct cli_tunnel *t, const struct ahg_hcmsg *m)
{
    struct cli_hreq *h = hreq_new(t);
    if (!h)
        return;
    if (ahg_hcmsg_is_rendezvous_only(m)) {
        AHG_LOG_DEBUG("HTTP-mode rendezvous requested by the relay");
        h->persistent = true;
        h->rdv = rdv_dial(h, m->address);
        if (!h->rdv) {
            h->persistent = false;
            hreq_free(h);
        }
        return;
    }
    h->ctrl_gen = t->ctrl_gen;
    if (take_request(h, m) != AHG_OK) {
        hreq_free(h);
        return;
    }
    if (m->body == 1) {
        struct ahg_hcmsg *copy = calloc(1, sizeof(*copy));
        char *json = NULL;
        size_t len = 0;
        if (!copy || ahg_hcmsg_encode(m, &json, &len) != AHG_OK ||
            ahg_hcmsg_parse(json, len, copy) != AHG_OK) {
            free(json);
            if (copy)
                ahg_hcmsg_clear(copy);
            free(copy);
            hreq_free(h);
            return;
        }
        free(json);
        h->want_body = true;
        h->pend = copy;
        t->ctrl_body_wait = h;
        return;
    }
    forward(h, m, NULL, 0, false);
}

void
cli_hreq_ctrl_body(struct cli_tunnel *t, const unsigned char *p, size_t n)
{
    struct cli_hreq *h = t->ctrl_body_wait;
    if (!h)
        return;
    t->ctrl_body_wait = NULL;
    struct ahg_hcmsg *m = h->pend;
    h->pend = NULL;
    h->want_body = false;
    forward(h, m, p, n, false);
    ahg_hcmsg_clear(m);
    free(m);
}

void
cli_hreq_ctrl_gone(struct cli_tunnel *t)
{
    struct cli_hreq *h = t->ctrl_body_wait;
    if (h) {
        t->ctrl_body_wait = NULL;
        hreq_free(h);
    }
}

void
cli_hreq_free_all(struct cli_tunnel *t)
{
    struct cli_hreq *h = t->hreqs;
    while (h) {
        struct cli_hreq *next = h->next;
        hreq_free(h);
        h = next;
    }
}
