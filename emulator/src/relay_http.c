/*
 * relay_http.c - Hybrid Connections HTTP mode (hc-protocol.md section 3, 5.2, 5.3, 11.4, 14):
 * a plain HTTP request on /{hc}[/suffix] becomes a `request` message to one listener, with the
 * body inline (one binary message) when request JSON plus body fit 64 KiB and the length is
 * known, else a rendezvous-only `request` and the whole request over the rendezvous socket the
 * listener dials. The `response` comes back on the control channel or on a rendezvous socket and
 * is streamed to the sender with backpressure.
 *
 * Choices where the real service is not documented:
 *   - no listener connected: 404 with the section 2.4 text (the evidence points to 404, §14);
 *   - a rendezvous address of a request is valid once, until the request is answered or timed
 *     out; after a response the emulator closes the rendezvous socket (1000), it never routes a
 *     later request over it (hyco-https never reads it, §3.6; .NET closes it itself);
 *   - a listener that drops before answering: 502; a response status outside 200..599: 502;
 *   - a response started but stalled longer than emulator.response_timeout: the sender's
 *     connection is aborted (the status line is already out);
 *   - Via: 1.1 <namespace host> is added to the request headers the listener sees (§5.3) and to
 *     the response the sender sees; relay-made errors carry no Via.
 *
 * Threading: loop thread only.
 */
#include "relay_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ahg/err.h"
#include "ahg/log.h"
#include "ahg/url.h"

#define TIMER_REARM_MS 500u

enum hstate { H_BODY = 0, H_DISPATCH, H_SENT, H_HOLD, H_RDV, H_DONE };

struct emu_hreq {
    struct emu_idnode idn; /* first: relay.c casts the id table entry */
    struct emu_relay *rl;
    struct emu_rhc *rh;
    struct ahg_list_node hlink; /* on rh->hreqs */
    struct emu_lsn *lsn; /* control channel the request went to (until a rendezvous exists) */
    struct ahg_list_node llink; /* on lsn->hreqs */
    struct ahg_httpd_req *r;    /* the sender's exchange; NULL once answered or gone */
    struct ahg_httpd_req *dial; /* the listener's rendezvous dial during the latency hold */
    struct ahg_wsconn *ws;      /* the rendezvous socket */
    struct emu_reader rd;       /* reads ws */
    struct ahg_timer timer;
    uint64_t armed_at;
    struct emu_defer *df;
    enum hstate st;
    bool dead; /* released: only waits for ws to close */
    bool dispatched;
    bool rdv_only;
    bool is_head;
    char *json; /* the full request message */
    size_t jlen;
    struct ahg_buf body; /* inline body */
    enum ahg_http_framing framing;
    uint64_t clen;
    bool req_frames;  /* a chunked body frame went out on ws */
    bool req_done;    /* the sender's body is complete */
    bool req_off;     /* stop streaming the request body to ws */
    bool body_paused; /* the sender's body is paused until ws drains */
    /* response */
    struct ahg_http_head *resp_head;
    int64_t hint_len;
    bool resp_started;
    bool resp_done;
    bool body_first;
    bool got_all; /* the listener sent its whole response (the sender may not have it yet) */
    struct ahg_wsconn *src;  /* where the response body comes from */
    struct emu_lsn *src_lsn; /* src's control channel when it is one */
    bool src_paused;
    char path[EMU_HC_NAME_MAX + 64];
};

static const char msg_504[] =
    "The request was routed to the listener but the listener did not respond in the required "
    "time.";

static void h_release(struct emu_hreq *h);

/* ---- pure helpers ---- */

static bool
name_in(const char *name, const char *const *set)
{
    for (size_t i = 0; set[i]; i++)
        if (!strcasecmp(name, set[i]))
            return true;
    return false;
}

static const char *const req_drop[] = {
    "Connection",
    "Keep-Alive",
    "Proxy-Connection",
    "Content-Length",
    "Host",
    "TE",
    "Trailer",
    "Transfer-Encoding",
    "Upgrade",
    "Close",
    "Via",
    "ServiceBusAuthorization",
    NULL,
};

static const char *const resp_drop[] = {
    "Connection", "Keep-Alive", "Proxy-Connection", "TE",  "Trailer", "Transfer-Encoding",
    "Upgrade",    "Close",      "Content-Length",   "Via", NULL,
};

/* Joins the values of every field named name with ", " plus " 1.1 host" at the end. */
static char *
via_value(const struct ahg_http_head *h, const struct ahg_hcmsg *m, const char *host)
{
    struct ahg_buf b;
    ahg_buf_init(&b, 8192);
    int rc = AHG_OK;
    if (h) {
        size_t pos = 0;
        const struct ahg_http_field *f;
        while (rc == AHG_OK && (f = ahg_http_head_find(h, "Via", &pos)))
            rc = ahg_buf_appendf(&b, "%s%s", ahg_buf_len(&b) ? ", " : "", f->value);
    }
    for (size_t i = 0; m && rc == AHG_OK && i < m->nheaders; i++)
        if (!strcasecmp(m->headers[i].name, "Via"))
            rc = ahg_buf_appendf(&b, "%s%s", ahg_buf_len(&b) ? ", " : "", m->headers[i].value);
    if (rc == AHG_OK)
        rc = ahg_buf_appendf(&b, "%s1.1 %s", ahg_buf_len(&b) ? ", " : "", host);
    if (rc != AHG_OK) {
        ahg_buf_free(&b);
        size_t n = strlen(host) + 5;
        char *s = malloc(n);
        if (s)
            (void)snprintf(s, n, "1.1 %s", host);
        return s;
    }
    return (char *)ahg_buf_take(&b, NULL);
}

int
emu_relay_request_headers(const struct ahg_http_head *h, bool drop_authorization,
                          const char *via_host, struct ahg_hcmsg *m)
{
    struct ahg_hcmsg_header *hs = calloc(h->nfields + 1, sizeof(*hs));
    if (!hs)
        return AHG_ENOMEM;
    size_t n = 0;
    int rc = AHG_OK;
    for (size_t i = 0; i < h->nfields && rc == AHG_OK; i++) {
        const char *name = h->fields[i].name;
        if (name_in(name, req_drop) || (drop_authorization && !strcasecmp(name, "Authorization")))
            continue;
        hs[n].name = strdup(name);
        hs[n].value = strdup(h->fields[i].value);
        if (!hs[n].name || !hs[n].value)
            rc = AHG_ENOMEM;
        n++;
    }
    if (rc == AHG_OK) {
        hs[n].name = strdup("Via");
        hs[n].value = via_value(h, NULL, via_host);
        if (!hs[n].name || !hs[n].value)
            rc = AHG_ENOMEM;
        n++;
    }
    if (rc != AHG_OK) {
        for (size_t i = 0; i < n; i++) {
            free(hs[i].name);
            free(hs[i].value);
        }
        free(hs);
        return rc;
    }
    m->headers = hs;
    m->nheaders = n;
    return AHG_OK;
}

struct ahg_http_head *
emu_relay_response_head(const struct ahg_hcmsg *m, const char *via_host, int64_t *hint_len)
{
    *hint_len = -1;
    if (m->status_code < 200 || m->status_code > 599)
        return NULL;
    int err = 0;
    const char *reason =
        m->status_description && m->status_description[0] ? m->status_description : NULL;
    struct ahg_http_head *h = ahg_http_head_new_response(m->status_code, reason, &err);
    if (!h && reason)
        h = ahg_http_head_new_response(m->status_code, NULL, &err);
    if (!h)
        return NULL;
    for (size_t i = 0; i < m->nheaders; i++) {
        const char *name = m->headers[i].name;
        const char *value = m->headers[i].value;
        if (!strcasecmp(name, "Content-Length")) {
            char *end = NULL;
            unsigned long long v = strtoull(value, &end, 10);
            if (value[0] >= '0' && value[0] <= '9' && end && !*end && v <= INT64_MAX)
                *hint_len = (int64_t)v;
            continue;
        }
        if (name_in(name, resp_drop))
            continue;
        (void)ahg_http_head_add(h, name, value); /* a field the head refuses is dropped */
    }
    char *via = via_value(NULL, m, via_host);
    if (!via || ahg_http_head_add(h, "Via", via) != AHG_OK) {
        free(via);
        ahg_http_head_free(h);
        return NULL;
    }
    free(via);
    return h;
}

bool
emu_relay_fits_inline(size_t json_len, enum ahg_http_framing framing, uint64_t content_length)
{
    if (json_len > EMU_RELAY_CTL_MAX)
        return false;
    if (framing == AHG_HTTP_BODY_NONE)
        return true;
    if (framing != AHG_HTTP_BODY_LENGTH)
        return false;
    return content_length <= EMU_RELAY_CTL_MAX - json_len;
}

/* ---- lifetime ---- */

static void
h_arm(struct emu_hreq *h)
{
    h->armed_at = ahg_now_ms();
    ahg_timer_start(&h->timer, h->rl->e->response_timeout_ms);
}

static void
lsn_unlink(struct emu_hreq *h)
{
    struct emu_lsn *l = h->lsn;
    if (!l)
        return;
    ahg_list_remove(&l->hreqs, &h->llink);
    h->lsn = NULL;
}

static void
src_forget(struct emu_hreq *h)
{
    struct emu_lsn *l = h->src_lsn;
    if (l) {
        if (l->rd.sink == h) {
            l->rd.sink = NULL;
            if (l->rd.st == EMU_RD_BODY)
                l->rd.st = EMU_RD_SKIP;
        }
        if (h->src_paused)
            emu_relay_lsn_resume(l);
    } else if (h->src_paused && h->src) {
        ahg_wsconn_resume_read(h->src);
    }
    h->src = NULL;
    h->src_lsn = NULL;
    h->src_paused = false;
}

/* Unlinks h from everything; frees it unless its rendezvous socket still has to close. */
static void
h_release(struct emu_hreq *h)
{
    struct emu_relay *rl = h->rl;
    if (!h->dead) {
        h->dead = true;
        h->st = H_DONE;
        emu_relay_id_del(rl, &h->idn);
        if (h->rh) {
            ahg_list_remove(&h->rh->hreqs, &h->hlink);
            h->rh = NULL;
        }
        lsn_unlink(h);
        ahg_timer_stop(&h->timer);
        emu_relay_defer_cancel(h->df);
        h->df = NULL;
        src_forget(h);
        struct ahg_httpd_req *r = emu_take_req(&h->r);
        if (r)
            ahg_httpd_resp_abort(r);
        struct ahg_httpd_req *d = emu_take_req(&h->dial);
        if (d)
            emu_relay_respond_desc(d, 410, "Gone");
        ahg_http_head_free(h->resp_head);
        h->resp_head = NULL;
        free(h->json);
        h->json = NULL;
        ahg_buf_free(&h->body);
        h->rd.st = EMU_RD_DEAD;
        h->rd.sink = NULL;
        if (h->ws) {
            uint16_t code = h->resp_done ? AHG_WS_CLOSE_NORMAL : AHG_WS_CLOSE_GOING_AWAY;
            if (ahg_loop_stopping(rl->e->loop))
                ahg_wsconn_abort(h->ws);
            else
                (void)ahg_wsconn_close(h->ws, code, h->resp_done ? "NormalClosure" : NULL);
            return; /* freed when ws reports its close */
        }
    }
    if (!h->ws) {
        ahg_buf_free(&h->rd.text);
        free(h);
    }
}

/* Ends the sender's exchange with a relay-made error (or an abort once the response started),
 * then releases h. */
static void
h_end(struct emu_hreq *h, int status, const char *msg)
{
    if (h->dead)
        return;
    struct ahg_httpd_req *r = emu_take_req(&h->r);
    if (r) {
        if (h->resp_started || !status)
            ahg_httpd_resp_abort(r);
        else
            emu_relay_fail(h->rl->e, r, status, msg, h->path);
    }
    h_release(h);
}

/* The response was written completely. */
static void
h_complete(struct emu_hreq *h)
{
    struct ahg_httpd_req *r = emu_take_req(&h->r);
    h->resp_done = true;
    if (r)
        (void)ahg_httpd_resp_end(r);
    h_release(h);
}

static void
h_timeout(struct ahg_timer *t)
{
    struct emu_hreq *h = t->ud;
    if (!h->resp_started) {
        h->rl->e->m_http_504++;
        AHG_LOG_INFO("relay: request %s on %s: no response in time, 504", h->idn.id, h->path);
        h_end(h, 504, msg_504);
        return;
    }
    AHG_LOG_INFO("relay: request %s on %s: response stalled, dropping the sender", h->idn.id,
                 h->path);
    h_end(h, 0, NULL);
}

/* ---- sender callbacks ---- */

static void h_dispatch(struct emu_hreq *h);

static void
s_body(struct ahg_httpd_req *r, const char *p, size_t n)
{
    struct emu_hreq *h = ahg_httpd_req_ud(r);
    if (h->dead)
        return;
    if (!h->rdv_only) {
        if (ahg_buf_append(&h->body, p, n) != AHG_OK)
            h_end(h, 500, "Internal error.");
        return;
    }
    if (!h->ws || h->req_off)
        return;
    int rc = AHG_OK;
    if (h->framing != AHG_HTTP_BODY_LENGTH) {
        rc = ahg_wsconn_send_frame(h->ws, h->req_frames ? AHG_WS_CONT : AHG_WS_BINARY, false, n);
        h->req_frames = true;
    }
    if (rc == AHG_OK)
        rc = ahg_wsconn_send_data(h->ws, p, n);
    if (rc != AHG_OK) {
        h->req_off = true;
        return;
    }
    if (!h->body_paused && !ahg_wsconn_writable(h->ws)) {
        h->body_paused = true;
        ahg_httpd_req_pause_body(r);
    }
}

static void
s_body_end(struct ahg_httpd_req *r)
{
    struct emu_hreq *h = ahg_httpd_req_ud(r);
    if (h->dead)
        return;
    h->req_done = true;
    if (!h->rdv_only) {
        h_dispatch(h);
        return;
    }
    if (h->ws && !h->req_off && h->framing == AHG_HTTP_BODY_CHUNKED &&
        ahg_wsconn_send_frame(h->ws, h->req_frames ? AHG_WS_CONT : AHG_WS_BINARY, true, 0) !=
            AHG_OK)
        h->req_off = true;
}

static void
s_drain(struct ahg_httpd_req *r)
{
    struct emu_hreq *h = ahg_httpd_req_ud(r);
    if (!h->src_paused)
        return;
    h->src_paused = false;
    if (h->src_lsn)
        emu_relay_lsn_resume(h->src_lsn);
    else if (h->src)
        ahg_wsconn_resume_read(h->src);
}

static void
s_finish(struct ahg_httpd_req *r, bool completed)
{
    struct emu_hreq *h = ahg_httpd_req_ud(r);
    (void)completed;
    h->r = NULL;
    h_release(h);
}

static const struct ahg_httpd_req_cbs sender_cbs = {
    .on_body = s_body,
    .on_body_end = s_body_end,
    .on_drain = s_drain,
    .on_finish = s_finish,
};

/* ---- dispatch to a listener ---- */

static void
h_dispatch_now(void *arg)
{
    struct emu_hreq *h = arg;
    struct emu_relay *rl = h->rl;
    h->df = NULL;
    if (h->dead || !h->r)
        return;
    bool filtered = false;
    struct emu_lsn *l = emu_relay_pick(h->rh, ahg_httpd_req_head(h->r), &filtered);
    if (!l) {
        h_end(h, 404,
              filtered ? "None of the connected listeners meet the "
                         "AllowedListeners/DisallowedListeners criteria."
                       : "There are no listeners connected for the endpoint.");
        return;
    }
    emu_relay_id_add(rl, &h->idn);
    h->lsn = l;
    ahg_list_push_front(&l->hreqs, &h->llink);
    int rc;
    if (h->rdv_only) {
        struct ahg_hcmsg m;
        ahg_hcmsg_init(&m, AHG_HCMSG_REQUEST);
        struct ahg_hcmsg full;
        ahg_hcmsg_init(&full, AHG_HCMSG_NONE);
        char *json = NULL;
        size_t jlen = 0;
        rc = ahg_hcmsg_parse(h->json, h->jlen, &full);
        if (rc == AHG_OK) {
            m.address = full.address;
            m.id = full.id;
            rc = ahg_hcmsg_encode(&m, &json, &jlen);
        }
        if (rc == AHG_OK)
            rc = emu_relay_ctl_send(l, json, jlen, NULL, 0, false);
        free(json);
        ahg_hcmsg_clear(&full);
    } else {
        rc = emu_relay_ctl_send(l, h->json, h->jlen, ahg_buf_data(&h->body), ahg_buf_len(&h->body),
                                h->framing != AHG_HTTP_BODY_NONE);
        ahg_buf_free(&h->body);
        free(h->json); /* delivered: only a rendezvous-only request needs it again */
        h->json = NULL;
    }
    if (rc != AHG_OK) {
        h_end(h, rc == AHG_ELIMIT ? 503 : 502,
              rc == AHG_ELIMIT ? "The listener is not reading its control channel."
                               : "The listener is gone.");
        return;
    }
    h->st = H_SENT;
    h_arm(h);
}

static void
h_dispatch(struct emu_hreq *h)
{
    if (h->dispatched)
        return;
    h->dispatched = true;
    h->st = H_DISPATCH;
    struct emu *e = h->rl->e;
    h->df = emu_relay_defer(h->rl, e->lat.match_ms + e->lat.listener_lane_ms, h_dispatch_now, h);
    if (!h->df)
        h_dispatch_now(h);
}

/* ---- response ---- */

static void
h_send_nobody(struct emu_hreq *h)
{
    if (h->dead || !h->r)
        return;
    int64_t cl = h->is_head && h->hint_len >= 0 ? h->hint_len : 0;
    struct ahg_http_head *head = h->resp_head;
    h->resp_head = NULL;
    int rc = ahg_httpd_resp_begin(h->r, head, cl);
    if (rc != AHG_OK) {
        h_end(h, 502, "The listener sent an invalid response.");
        return;
    }
    h->resp_started = true;
    h_complete(h);
}

static void
h_lane_done(void *arg)
{
    struct emu_hreq *h = arg;
    h->df = NULL;
    if (h->dead)
        return;
    if (!h->body_first && h->resp_head && !h->resp_started) {
        h_send_nobody(h);
        return;
    }
    if (h->src_paused) {
        h->src_paused = false;
        if (h->src_lsn)
            emu_relay_lsn_resume(h->src_lsn);
        else if (h->src)
            ahg_wsconn_resume_read(h->src);
    }
}

/* A `response` for h arrived on src. Returns true when its body message is to be read. */
static bool
h_response(struct emu_hreq *h, const struct ahg_hcmsg *m, struct ahg_wsconn *src, struct emu_lsn *l)
{
    struct emu *e = h->rl->e;
    if (h->dead || !h->r || h->resp_head || h->resp_started)
        return false;
    struct ahg_http_head *head = emu_relay_response_head(m, e->ns.host, &h->hint_len);
    if (!head) {
        AHG_LOG_WARN("relay: request %s on %s: invalid response (status %d), 502", h->idn.id,
                     h->path, m->status_code);
        h_end(h, 502, "The listener sent an invalid response.");
        return false;
    }
    h->resp_head = head;
    h->src = src;
    h->src_lsn = l;
    h_arm(h);
    unsigned lane = e->lat.sender_lane_ms;
    if (m->body != 1) {
        /* the listener is done with this request: nothing more to read from it */
        h->body_first = false;
        h->got_all = true;
        h->src = NULL;
        h->src_lsn = NULL;
        lsn_unlink(h);
        if (lane) {
            h->df = emu_relay_defer(h->rl, lane, h_lane_done, h);
            if (h->df)
                return false;
        }
        h_send_nobody(h);
        return false;
    }
    h->body_first = true;
    if (lane) {
        h->df = emu_relay_defer(h->rl, lane, h_lane_done, h);
        if (h->df) {
            h->src_paused = true;
            ahg_wsconn_pause_read(src);
        }
    }
    return true;
}

bool
emu_relay_http_ctl_response(struct emu_lsn *l, struct ahg_hcmsg *m, struct emu_hreq **sink)
{
    bool body = m->body == 1;
    *sink = NULL;
    struct emu_idnode *n = emu_relay_id_find(l->rl, m->request_id);
    if (!n || n->kind != EMU_IDK_HREQ) {
        AHG_LOG_INFO("relay: listener %s: response for unknown request %s ignored", l->tracking,
                     m->request_id);
        return body;
    }
    struct emu_hreq *h = (struct emu_hreq *)(void *)n; /* idn is the first member */
    if (h->lsn != l || h->ws || h->dial)
        return body;
    if (h_response(h, m, l->ws, l) && !h->dead)
        *sink = h;
    return body;
}

void
emu_relay_http_body_begin(struct emu_hreq *h, struct ahg_wsconn *src, struct emu_lsn *l, bool fin,
                          uint64_t len)
{
    (void)src;
    (void)l;
    if (h->dead || !h->r || !h->body_first)
        return;
    h->body_first = false;
    int64_t cl = fin && len <= INT64_MAX ? (int64_t)len : AHG_HTTPD_LEN_CHUNKED;
    if (h->is_head && h->hint_len >= 0)
        cl = h->hint_len;
    struct ahg_http_head *head = h->resp_head;
    h->resp_head = NULL;
    if (!head || ahg_httpd_resp_begin(h->r, head, cl) != AHG_OK) {
        h_end(h, 502, "The listener sent an invalid response.");
        return;
    }
    h->resp_started = true;
}

void
emu_relay_http_body_data(struct emu_hreq *h, const unsigned char *p, size_t n)
{
    if (h->dead || !h->r || !h->resp_started)
        return;
    if (ahg_httpd_resp_write(h->r, p, n) != AHG_OK) {
        h_end(h, 0, NULL);
        return;
    }
    if (ahg_now_ms() - h->armed_at >= TIMER_REARM_MS)
        h_arm(h);
    if (!h->src_paused && h->src && !ahg_httpd_resp_writable(h->r)) {
        h->src_paused = true;
        ahg_wsconn_pause_read(h->src);
    }
}

void
emu_relay_http_body_end(struct emu_hreq *h)
{
    if (h->dead || !h->resp_started)
        return;
    h_complete(h);
}

void
emu_relay_http_listener_gone(struct emu_hreq *h)
{
    struct emu_lsn *l = h->lsn;
    bool streaming = h->src_lsn && (h->src_lsn == l || !l);
    lsn_unlink(h);
    if (h->dead)
        return;
    if (streaming) {
        h->src_lsn = NULL;
        h->src = NULL;
        h->src_paused = false;
        h_end(h, 502, "The listener disconnected before completing its response.");
        return;
    }
    if (h->ws || h->dial)
        return; /* the exchange goes on over the rendezvous */
    h_end(h, 502, "The listener disconnected before responding.");
}

void
emu_relay_http_listener_gone_all(struct emu_lsn *l)
{
    while (l->hreqs.head)
        emu_relay_http_listener_gone(AHG_LIST_ENTRY(l->hreqs.head, struct emu_hreq, llink));
}

void
emu_relay_http_hc_deleted(struct emu_rhc *rh)
{
    while (rh->hreqs.head)
        h_end(AHG_LIST_ENTRY(rh->hreqs.head, struct emu_hreq, hlink), 404,
              "Endpoint does not exist.");
}

/* ---- the rendezvous socket ---- */

static void
hr_message(struct emu_hreq *h, struct ahg_wsconn *ws, const char *json, size_t len)
{
    struct ahg_hcmsg m;
    ahg_hcmsg_init(&m, AHG_HCMSG_NONE);
    if (ahg_hcmsg_parse(json, len, &m) != AHG_OK) {
        AHG_LOG_WARN("relay: request %s: ignoring an unrecognised message on the rendezvous",
                     h->idn.id);
        return;
    }
    if (m.type == AHG_HCMSG_RESPONSE && !strcmp(m.request_id, h->idn.id)) {
        if (h_response(h, &m, ws, NULL))
            h->rd.await_body = true;
        else
            h->rd.stray_ok = true;
    } else {
        AHG_LOG_WARN("relay: request %s: ignoring a '%s' message on the rendezvous", h->idn.id,
                     ahg_hcmsg_type_name(m.type));
    }
    ahg_hcmsg_clear(&m);
}

static void
hr_frame_begin(struct ahg_wsconn *ws, enum ahg_ws_opcode op, bool fin, uint64_t len)
{
    struct emu_hreq *h = ahg_wsconn_ud(ws);
    struct emu_reader *rd = &h->rd;
    if (rd->st == EMU_RD_DEAD || h->dead)
        return;
    rd->fin = fin;
    if (op == AHG_WS_TEXT || (op == AHG_WS_CONT && rd->st == EMU_RD_TEXT)) {
        if (op == AHG_WS_TEXT) {
            if (rd->await_body) {
                rd->await_body = false;
                h_end(h, 502, "The listener sent an invalid response.");
                return;
            }
            rd->stray_ok = false;
            ahg_buf_reset(&rd->text);
            rd->st = EMU_RD_TEXT;
        }
        if (len > EMU_RELAY_CTL_MAX - ahg_buf_len(&rd->text)) {
            rd->st = EMU_RD_DEAD;
            (void)ahg_wsconn_close(ws, AHG_WS_CLOSE_TOO_BIG, "control message too large");
            h_end(h, 502, "The listener sent an invalid response.");
        }
        return;
    }
    if (op == AHG_WS_BINARY) {
        rd->stray_ok = false;
        if (!rd->await_body) {
            rd->st = EMU_RD_SKIP;
            return;
        }
        rd->await_body = false;
        rd->st = EMU_RD_BODY;
    }
    if (rd->st == EMU_RD_BODY)
        emu_relay_http_body_begin(h, ws, NULL, fin, len);
}

static void
hr_frame_data(struct ahg_wsconn *ws, const unsigned char *p, size_t n)
{
    struct emu_hreq *h = ahg_wsconn_ud(ws);
    if (h->rd.st == EMU_RD_TEXT) {
        if (ahg_buf_append(&h->rd.text, p, n) != AHG_OK) {
            h->rd.st = EMU_RD_DEAD;
            h_end(h, 502, "Internal error.");
        }
    } else if (h->rd.st == EMU_RD_BODY) {
        emu_relay_http_body_data(h, p, n);
    }
}

static void
hr_frame_end(struct ahg_wsconn *ws)
{
    struct emu_hreq *h = ahg_wsconn_ud(ws);
    struct emu_reader *rd = &h->rd;
    if (!rd->fin || rd->st == EMU_RD_DEAD)
        return;
    enum emu_rd_state st = rd->st;
    rd->st = EMU_RD_IDLE;
    if (st == EMU_RD_TEXT)
        hr_message(h, ws, (const char *)ahg_buf_data(&rd->text), ahg_buf_len(&rd->text));
    else if (st == EMU_RD_BODY)
        emu_relay_http_body_end(h);
}

static void
hr_drain(struct ahg_wsconn *ws)
{
    struct emu_hreq *h = ahg_wsconn_ud(ws);
    if (h->body_paused && h->r) {
        h->body_paused = false;
        ahg_httpd_req_resume_body(h->r);
    }
}

static void
hr_closed(struct ahg_wsconn *ws, uint16_t code)
{
    struct emu_hreq *h = ahg_wsconn_ud(ws);
    h->ws = NULL;
    if (h->src == ws) {
        h->src = NULL;
        h->src_paused = false;
    }
    if (!h->dead && !h->got_all) {
        AHG_LOG_INFO("relay: request %s on %s: rendezvous closed (%u) before the response",
                     h->idn.id, h->path, code);
        h_end(h, 502, "The listener closed the rendezvous before completing its response.");
        return; /* h_end freed h: ws is NULL */
    }
    if (h->dead)
        h_release(h);
    /* else the response waits for its sender lane (latency model), then completes */
}

static const struct ahg_wsconn_cbs hr_cbs = {
    .on_frame_begin = hr_frame_begin,
    .on_frame_data = hr_frame_data,
    .on_frame_end = hr_frame_end,
    .on_drain = hr_drain,
    .on_close = hr_closed,
};

static void
dial_finish(struct ahg_httpd_req *r, bool completed)
{
    struct emu_hreq *h = ahg_httpd_req_ud(r);
    (void)completed;
    h->dial = NULL;
    emu_relay_defer_cancel(h->df);
    h->df = NULL;
    if (h->st == H_HOLD)
        h->st = H_SENT;
}

static const struct ahg_httpd_req_cbs dial_cbs = {.on_finish = dial_finish};

static void
h_dial_complete(void *arg)
{
    struct emu_hreq *h = arg;
    struct emu *e = h->rl->e;
    h->df = NULL;
    if (h->dead || !h->dial)
        return;
    struct ahg_httpd_req *d = emu_take_req(&h->dial);
    char proto[128] = "";
    const char *pv = ahg_http_head_get(ahg_httpd_req_head(d), "Sec-WebSocket-Protocol", NULL);
    if (pv) {
        size_t k = strcspn(pv, ", \t");
        if (k < sizeof(proto)) {
            memcpy(proto, pv, k);
            proto[k] = '\0';
        }
    }
    int err = 0;
    h->ws = ahg_wsconn_accept(d, proto[0] ? proto : NULL, NULL, &hr_cbs, h, &err);
    if (!h->ws) {
        emu_relay_fail(e, d, 500, "Internal error.", h->path);
        h->st = H_SENT;
        return;
    }
    h->st = H_RDV;
    e->m_rendezvous++;
    lsn_unlink(h); /* the response now comes over the rendezvous */
    h_arm(h);
    if (!h->rdv_only)
        return;
    int rc = ahg_wsconn_send(h->ws, AHG_WS_TEXT, h->json, h->jlen);
    if (rc == AHG_OK && h->framing == AHG_HTTP_BODY_LENGTH)
        rc = ahg_wsconn_send_frame(h->ws, AHG_WS_BINARY, true, h->clen);
    if (rc != AHG_OK) {
        h_end(h, 502, "The listener closed the rendezvous before completing its response.");
        return;
    }
    if (h->framing != AHG_HTTP_BODY_NONE && h->r) {
        h->body_paused = false;
        ahg_httpd_req_resume_body(h->r);
    }
}

void
emu_relay_http_dial(struct emu_relay *rl, struct emu_hreq *h, struct ahg_httpd_req *r)
{
    struct emu *e = rl->e;
    if (h->dead || h->ws || h->dial || h->st != H_SENT || h->resp_head || h->resp_started) {
        emu_relay_fail(e, r, 403, "URL is not valid.", h->path);
        return;
    }
    int bad = ahg_wsconn_check_upgrade(ahg_httpd_req_head(r));
    if (bad) {
        emu_relay_fail(e, r, bad, "Bad Request.", h->path);
        return;
    }
    h->dial = r;
    h->st = H_HOLD;
    ahg_httpd_req_set_cbs(r, &dial_cbs, h);
    h->df = emu_relay_defer(rl, emu_latency_rendezvous_ms(e), h_dial_complete, h);
    if (!h->df)
        h_dial_complete(h);
}

/* ---- entry ---- */

static int
build_request(struct emu_hreq *h, struct ahg_httpd_req *r, struct emu_hc *hc, bool drop_auth)
{
    struct emu *e = h->rl->e;
    const struct ahg_http_head *head = ahg_httpd_req_head(r);
    const char *path = ahg_httpd_req_path(r);
    const char *query = ahg_httpd_req_query(r);
    struct ahg_hcmsg m;
    ahg_hcmsg_init(&m, AHG_HCMSG_REQUEST);
    size_t plen = strlen(path), qlen = strlen(query);
    size_t hcap = 5 + 3 * strlen(hc->name) + 1;
    size_t acap = strlen(e->relay_public) + hcap + 3 * EMU_RELAY_ID_MAX + 64;
    char *hcp = malloc(hcap);
    char *target = malloc(plen + qlen + 2);
    m.address = malloc(acap);
    m.request_target = malloc(plen + qlen + 2);
    m.id = strdup(h->idn.id);
    m.method = strdup(head->method ? head->method : "GET");
    int rc =
        hcp && target && m.address && m.request_target && m.id && m.method ? AHG_OK : AHG_ENOMEM;
    if (rc == AHG_OK)
        rc = emu_relay_hc_path(hc->name, hcp, hcap);
    if (rc == AHG_OK)
        rc = emu_relay_address(e->relay_public, hcp, NULL, "request", h->idn.id, m.address, acap);
    if (rc == AHG_OK) {
        (void)snprintf(target, plen + qlen + 2, "%s%s%s", path, qlen ? "?" : "", query);
        rc = ahg_url_strip_sbhc(target, m.request_target, plen + qlen + 2);
    }
    struct ahg_conn *c = ahg_httpd_req_conn(r);
    if (rc == AHG_OK && emu_relay_peer_addr(c)) {
        m.remote_address = strdup(emu_relay_peer_addr(c));
        m.remote_port = ahg_conn_peer_port(c);
        if (!m.remote_address)
            rc = AHG_ENOMEM;
    }
    if (rc == AHG_OK)
        rc = emu_relay_request_headers(head, drop_auth, e->ns.host, &m);
    m.body = h->framing != AHG_HTTP_BODY_NONE ? 1 : 0;
    if (rc == AHG_OK)
        rc = ahg_hcmsg_encode(&m, &h->json, &h->jlen);
    free(hcp);
    free(target);
    ahg_hcmsg_clear(&m);
    return rc;
}

void
emu_relay_http_handle(struct emu_relay *rl, struct ahg_httpd_req *r, const char *dpath)
{
    struct emu *e = rl->e;
    const struct ahg_http_head *head = ahg_httpd_req_head(r);
    const char *rest = NULL;
    struct emu_hc *hc = emu_hc_match(e, dpath, &rest);
    if (!hc) {
        emu_relay_fail(e, r, 404, "Endpoint does not exist.", dpath);
        return;
    }
    bool drop_auth = false;
    if (hc->requires_client_auth) {
        char *tok = malloc(EMU_RELAY_TOKEN_MAX);
        if (!tok) {
            emu_relay_fail(e, r, 500, "Internal error.", dpath);
            return;
        }
        int src = emu_relay_token(head, ahg_httpd_req_query(r), true, tok, EMU_RELAY_TOKEN_MAX);
        if (src < 0)
            (void)snprintf(tok, EMU_RELAY_TOKEN_MAX, "oversized-token");
        struct emu_auth_result res;
        memset(&res, 0, sizeof(res));
        bool ok = emu_auth_check(e, src ? tok : NULL, ahg_http_head_get(head, "Host", NULL), hc,
                                 dpath, EMU_RIGHT_SEND, &res);
        free(tok);
        if (!ok) {
            emu_relay_respond_desc(r, res.status ? res.status : 401,
                                   res.desc[0] ? res.desc : "Unauthorized");
            return;
        }
        drop_auth = src == 3;
    }
    struct emu_rhc *rh = emu_relay_rhc(rl, hc);
    if (!emu_relay_pick_or_fail(e, rh, r, dpath))
        return;
    e->m_http_requests++;
    struct emu_hreq *h = calloc(1, sizeof(*h));
    if (!h) {
        emu_relay_fail(e, r, 500, "Internal error.", dpath);
        return;
    }
    h->rl = rl;
    h->idn.kind = EMU_IDK_HREQ;
    emu_relay_id_new(rl, NULL, h->idn.id);
    (void)snprintf(h->path, sizeof(h->path), "%s", dpath);
    h->framing = head->framing;
    h->clen = head->content_length;
    h->is_head = head->method && !strcmp(head->method, "HEAD");
    ahg_timer_init(&h->timer, e->loop, h_timeout, h);
    ahg_buf_init(&h->rd.text, EMU_RELAY_CTL_MAX);
    int rc = build_request(h, r, hc, drop_auth);
    if (rc != AHG_OK) {
        free(h->json);
        free(h);
        if (rc == AHG_ELIMIT)
            emu_relay_fail(e, r, 431, "Request Header Fields Too Large.", dpath);
        else
            emu_relay_fail(e, r, rc == AHG_ENOMEM ? 500 : 400,
                           rc == AHG_ENOMEM ? "Internal error." : "Bad Request.", dpath);
        return;
    }
    h->rdv_only = !emu_relay_fits_inline(h->jlen, h->framing, h->clen);
    if (!h->rdv_only)
        ahg_buf_init(&h->body, h->framing == AHG_HTTP_BODY_LENGTH ? (size_t)h->clen : 0);
    h->rh = rh;
    ahg_list_push_front(&rh->hreqs, &h->hlink);
    h->r = r;
    ahg_httpd_req_set_cbs(r, &sender_cbs, h);
    if (h->rdv_only) {
        if (h->framing != AHG_HTTP_BODY_NONE) {
            h->body_paused = true;
            ahg_httpd_req_pause_body(r);
        }
        h_dispatch(h);
        return;
    }
    /* inline: dispatched once the body is complete (s_body_end); it may already be when the
     * request was held while its token was validated (latency model) */
    if (ahg_httpd_req_body_done(r))
        s_body_end(r);
}
