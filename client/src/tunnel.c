/*
 * tunnel.c - the control channel of cli/tunnel.h: connect, reconnect with backoff, keep-alive,
 * token renewal, dispatch of accept/request messages (stream.c, httpreq.c).
 */
#include "cli/tunnel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ahg/err.h"
#include "ahg/hcmsg.h"
#include "ahg/log.h"
#include "ahg/sas.h"
#include "ahg/wsconn.h"
#include "cli_int.h"
#include "platform.h"

#define CTRL_MAX_MESSAGE ((uint64_t)256 * 1024)
#define BACKOFF_BASE_MS  500u

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

void
cli_unreachable_body(const char *host, int port, char *out, size_t outsz)
{
    (void)snprintf(out, outsz, "The local service at %s:%d is not reachable.\n", host, port);
}

static void
emit(struct cli_tunnel *t, enum cli_event ev, int status, const char *detail)
{
    if (t->o.on_event)
        t->o.on_event(t->o.ud, ev, status, detail);
}

void
cli_tunnel_log_request(struct cli_tunnel *t, const struct cli_req_log *rec)
{
    if (t->o.on_request)
        t->o.on_request(t->o.ud, rec);
}

/* ---- token renewal ---- */

static void
renew_schedule(struct cli_tunnel *t)
{
    ahg_timer_stop(&t->renew_timer);
    if (!t->o.token_cb || !t->token)
        return;
    struct ahg_sas sas;
    if (ahg_sas_parse(t->token, &sas) != AHG_OK)
        return;
    long long now_ms = cli_platform_wall_ms();
    long long left = sas.se * 1000 - now_ms;
    /* renew when 80% of the remaining lifetime passed (at most 5 min before expiry), and no
     * sooner than 1 s from now */
    long long in = left - left / 5;
    if (left / 5 > 300000)
        in = left - 300000;
    if (in < 1000)
        in = 1000;
    ahg_timer_start(&t->renew_timer, (uint64_t)in);
}

/* Asks the owner for a fresh token; the answer comes through cli_tunnel_set_token(). Re-arms
 * the renewal timer as a retry in case no answer comes. */
static void
request_token(struct cli_tunnel *t, bool rejected)
{
    if (!t->o.token_cb || t->draining)
        return;
    uint64_t retry = 10000;
    struct ahg_sas sas;
    if (t->token && ahg_sas_parse(t->token, &sas) == AHG_OK) {
        long long left = sas.se * 1000 - cli_platform_wall_ms();
        if (left / 4 < (long long)retry)
            retry = left / 4 > 1000 ? (uint64_t)(left / 4) : 1000;
    }
    ahg_timer_start(&t->renew_timer, retry);
    t->o.token_cb(t->o.token_ud, t, rejected);
}

static void
renew_fire(struct ahg_timer *tm)
{
    request_token(tm->ud, false);
}

int
cli_tunnel_set_token(struct cli_tunnel *t, const char *token)
{
    if (!t || !token || !token[0])
        return AHG_EINVAL;
    char *n = dupstr(token);
    if (!n)
        return AHG_ENOMEM;
    if (t->token) {
        memset(t->token, 0, strlen(t->token));
        free(t->token);
    }
    t->token = n;
    if (t->draining)
        return AHG_OK;
    if (t->ctrl && t->ctrl_open) {
        struct ahg_hcmsg m;
        ahg_hcmsg_init(&m, AHG_HCMSG_RENEW_TOKEN);
        m.token = t->token;
        char *json = NULL;
        size_t len = 0;
        if (ahg_hcmsg_encode(&m, &json, &len) == AHG_OK) {
            (void)ahg_wsconn_send(t->ctrl, AHG_WS_TEXT, json, len);
            AHG_LOG_DEBUG("listener token renewed");
        }
        if (json) {
            memset(json, 0, len);
            free(json);
        }
    }
    renew_schedule(t);
    return AHG_OK;
}

/* ---- control channel ---- */

static void ctrl_connect(struct cli_tunnel *t);

static void
reconnect_fire(struct ahg_timer *tm)
{
    ctrl_connect(tm->ud);
}

static void
schedule_reconnect(struct cli_tunnel *t, bool to_cap)
{
    if (t->draining)
        return;
    uint64_t cap = t->o.backoff_cap_ms;
    uint64_t d = BACKOFF_BASE_MS;
    for (unsigned i = 0; i < t->attempt && d < cap; i++)
        d *= 2;
    if (d > cap || to_cap)
        d = cap;
    /* full jitter in [d/2, d] */
    uint64_t j = d / 2 ? (uint64_t)rand() % (d / 2 + 1) : 0;
    d = d / 2 + j;
    if (t->attempt < 32)
        t->attempt++;
    ahg_timer_start(&t->reconnect_timer, d);
}

static void
ka_fire(struct ahg_timer *tm)
{
    struct cli_tunnel *t = tm->ud;
    if (!t->ctrl || !t->ctrl_open)
        return;
    uint64_t now = ahg_now_ms();
    if (now - t->last_rx > 2 * t->o.keepalive_ms + 1000) {
        AHG_LOG_WARN("control channel silent for %llu ms: reconnecting",
                     (unsigned long long)(now - t->last_rx));
        ahg_wsconn_abort(t->ctrl);
        return;
    }
    (void)ahg_wsconn_ping(t->ctrl, "ka", 2);
    ahg_timer_start(&t->ka_timer, t->o.keepalive_ms);
}

static void
ctrl_open_cb(struct ahg_wsconn *ws, const struct ahg_http_head *resp)
{
    struct cli_tunnel *t = ahg_wsconn_ud(ws);
    (void)resp;
    t->ctrl_open = true;
    t->attempt = 0;
    t->established++;
    t->last_rx = ahg_now_ms();
    ahg_timer_start(&t->ka_timer, t->o.keepalive_ms);
    renew_schedule(t);
    emit(t, CLI_EV_ESTABLISHED, 101, NULL);
}

static void
ctrl_fail_cb(struct ahg_wsconn *ws, int status, const char *reason,
             const struct ahg_http_head *resp, const char *body)
{
    struct cli_tunnel *t = ahg_wsconn_ud(ws);
    (void)resp;
    (void)body;
    t->ctrl = NULL;
    t->ctrl_open = false;
    bool auth = status == 401 || status == 403;
    if (auth)
        emit(t, CLI_EV_AUTH_FAILED, status, reason ? reason : "");
    else
        emit(t, CLI_EV_CONNECT_FAILED, status, reason ? reason : "");
    schedule_reconnect(t, auth);
    if (auth)
        request_token(t, true);
}

static void
ctrl_message_cb(struct ahg_wsconn *ws, enum ahg_ws_opcode op, const unsigned char *p, size_t n)
{
    struct cli_tunnel *t = ahg_wsconn_ud(ws);
    t->last_rx = ahg_now_ms();
    if (op == AHG_WS_BINARY) {
        cli_hreq_ctrl_body(t, p, n);
        return;
    }
    if (op != AHG_WS_TEXT)
        return;
    struct ahg_hcmsg m;
    ahg_hcmsg_init(&m, AHG_HCMSG_NONE);
    int rc = ahg_hcmsg_parse((const char *)p, n, &m);
    if (rc != AHG_OK) {
        AHG_LOG_WARN("control channel: unparsable message (%s)", ahg_strerror(rc));
        ahg_hcmsg_clear(&m);
        return;
    }
    if (m.type == AHG_HCMSG_ACCEPT && !t->draining)
        cli_stream_accept(t, &m);
    else if (m.type == AHG_HCMSG_REQUEST && !t->draining)
        cli_hreq_from_ctrl(t, &m);
    ahg_hcmsg_clear(&m);
}

static void
ctrl_pong_cb(struct ahg_wsconn *ws, const unsigned char *p, size_t n)
{
    struct cli_tunnel *t = ahg_wsconn_ud(ws);
    (void)p;
    (void)n;
    t->last_rx = ahg_now_ms();
}

static void
ctrl_close_cb(struct ahg_wsconn *ws, uint16_t code)
{
    struct cli_tunnel *t = ahg_wsconn_ud(ws);
    bool was_open = t->ctrl_open;
    t->ctrl = NULL;
    t->ctrl_open = false;
    t->ctrl_gen++;
    ahg_timer_stop(&t->ka_timer);
    cli_hreq_ctrl_gone(t);
    if (t->draining)
        return;
    char d[32];
    (void)snprintf(d, sizeof(d), "close code %u", (unsigned)code);
    if (was_open)
        emit(t, CLI_EV_LOST, 0, d);
    schedule_reconnect(t, false);
}

static const struct ahg_wsconn_cbs ctrl_cbs = {
    .on_open = ctrl_open_cb,
    .on_fail = ctrl_fail_cb,
    .on_message = ctrl_message_cb,
    .on_pong = ctrl_pong_cb,
    .on_close = ctrl_close_cb,
};

/* Percent-encodes s into out, keeping unreserved characters and '/'. */
static void
encode_path(const char *s, char *out, size_t outsz)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s && o + 4 < outsz; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = 0;
}

static void
ctrl_connect(struct cli_tunnel *t)
{
    if (t->draining || t->ctrl)
        return;
    struct ahg_wsconn_client_opts wo;
    char buf[1024];
    memset(&wo, 0, sizeof(wo));
    if (ahg_wsconn_parse_url(t->o.relay_endpoint, &wo, buf, sizeof(buf)) != AHG_OK) {
        emit(t, CLI_EV_CONNECT_FAILED, 0, "invalid relay endpoint");
        schedule_reconnect(t, true);
        return;
    }
    char path[512], target[700];
    encode_path(t->o.hc, path, sizeof(path));
    (void)snprintf(target, sizeof(target), "/$hc/%s?sb-hc-action=listen", path);
    wo.target = target;
    wo.max_message = CTRL_MAX_MESSAGE;
    wo.conn.insecure = t->o.insecure;
    if (t->relay_address)
        wo.conn.address = t->relay_address;
    if (t->o.tls_host)
        wo.conn.tls_host = t->o.tls_host;
    wo.handshake_timeout_ms = 15000;
    const char *hdrs[] = {"ServiceBusAuthorization", t->token ? t->token : "", NULL};
    wo.headers = t->token ? hdrs : NULL;
    int err = 0;
    t->ctrl = ahg_wsconn_connect(t->loop, &wo, &ctrl_cbs, t, &err);
    if (!t->ctrl) {
        emit(t, CLI_EV_CONNECT_FAILED, 0, ahg_strerror(err));
        schedule_reconnect(t, false);
    }
}

void
cli_tunnel_dial_fixup(const struct cli_tunnel *t, struct ahg_wsconn_client_opts *wo)
{
    if (t->relay_address && !strcmp(wo->conn.address, t->relay_host))
        wo->conn.address = t->relay_address;
    if (t->o.tls_host && wo->conn.tls)
        wo->conn.tls_host = t->o.tls_host;
}

/* ---- public ---- */

struct cli_tunnel *
cli_tunnel_new(struct ahg_loop *loop, const struct cli_tunnel_opts *o, int *err)
{
    int e = AHG_EINVAL;
    struct cli_tunnel *t = NULL;
    if (!loop || !o || !o->relay_endpoint || !o->hc || !o->hc[0] || !o->local_host ||
        o->local_port <= 0 || o->local_port > 65535)
        goto fail;
    struct ahg_wsconn_client_opts wo;
    char buf[1024];
    if (ahg_wsconn_parse_url(o->relay_endpoint, &wo, buf, sizeof(buf)) != AHG_OK)
        goto fail;
    e = AHG_ENOMEM;
    t = calloc(1, sizeof(*t));
    if (!t)
        goto fail;
    (void)snprintf(t->relay_host, sizeof(t->relay_host), "%s", wo.conn.address);
    t->loop = loop;
    t->o = *o;
    t->o.relay_endpoint = t->endpoint = dupstr(o->relay_endpoint);
    t->o.hc = t->hc = dupstr(o->hc);
    t->o.local_host = t->local_host = dupstr(o->local_host);
    t->o.tls_host = t->tls_host = dupstr(o->tls_host);
    t->o.relay_address = t->relay_address = dupstr(o->relay_address);
    t->o.host_header = t->host_header = dupstr(o->host_header);
    t->token = dupstr(o->token);
    t->o.token = NULL;
    if (!t->endpoint || !t->hc || !t->local_host || (o->tls_host && !t->tls_host) ||
        (o->relay_address && !t->relay_address) || (o->host_header && !t->host_header) ||
        (o->token && !t->token))
        goto fail;
    if (!t->o.keepalive_ms)
        t->o.keepalive_ms = 30000;
    if (!t->o.backoff_cap_ms)
        t->o.backoff_cap_ms = 30000;
    ahg_timer_init(&t->reconnect_timer, loop, reconnect_fire, t);
    ahg_timer_init(&t->ka_timer, loop, ka_fire, t);
    ahg_timer_init(&t->renew_timer, loop, renew_fire, t);
    srand((unsigned)(ahg_now_ms() ^ (uint64_t)(uintptr_t)t));
    if (!t->token)
        request_token(t, false);
    ctrl_connect(t);
    return t;
fail:
    if (t) {
        free(t->endpoint);
        free(t->hc);
        free(t->local_host);
        free(t->tls_host);
        free(t->relay_address);
        free(t->host_header);
        free(t->token);
        free(t);
    }
    if (err)
        *err = e;
    return NULL;
}

void
cli_tunnel_drain(struct cli_tunnel *t)
{
    if (!t || t->draining)
        return;
    t->draining = true;
    ahg_timer_stop(&t->reconnect_timer);
    ahg_timer_stop(&t->ka_timer);
    ahg_timer_stop(&t->renew_timer);
    cli_stream_drain(t);
    if (t->ctrl) {
        if (t->ctrl_open && !ahg_wsconn_closing(t->ctrl))
            (void)ahg_wsconn_close(t->ctrl, 1000, "shutdown");
        else if (!t->ctrl_open) {
            ahg_wsconn_set_cbs(t->ctrl, &cli_null_ws_cbs, NULL);
            ahg_wsconn_abort(t->ctrl);
            t->ctrl = NULL;
        }
    }
}

bool
cli_tunnel_connected(const struct cli_tunnel *t)
{
    return t && t->ctrl && t->ctrl_open;
}

size_t
cli_tunnel_active(const struct cli_tunnel *t)
{
    return t ? t->nstreams + t->nhreqs : 0;
}

unsigned
cli_tunnel_established_count(const struct cli_tunnel *t)
{
    return t ? t->established : 0;
}

void
cli_tunnel_free(struct cli_tunnel *t)
{
    if (!t)
        return;
    t->draining = true;
    ahg_timer_stop(&t->reconnect_timer);
    ahg_timer_stop(&t->ka_timer);
    ahg_timer_stop(&t->renew_timer);
    if (t->ctrl) {
        ahg_wsconn_set_cbs(t->ctrl, &cli_null_ws_cbs, NULL);
        ahg_wsconn_abort(t->ctrl);
        t->ctrl = NULL;
    }
    cli_stream_free_all(t);
    cli_hreq_free_all(t);
    free(t->endpoint);
    free(t->hc);
    free(t->local_host);
    free(t->tls_host);
    free(t->relay_address);
    free(t->host_header);
    if (t->token)
        memset(t->token, 0, strlen(t->token));
    free(t->token);
    free(t);
}
