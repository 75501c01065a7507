/*
 * session.c - one tunnel session: create -> resolve the relay -> listen -> renew -> drain ->
 * release (see cli/session.h).
 */
#include "cli/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ahg/err.h"
#include "ahg/log.h"
#include "ahg/net.h"
#include "ahg/resolve.h"
#include "ahg/url.h"
#include "platform.h"

struct cli_session {
    struct ahg_loop *loop;
    struct cli_session_opts o; /* string members point at the copies below */
    char *api_url, *api_key, *api_ca_file, *subdomain, *basic_auth, *local_host, *host_header;
    char **allow_cidr;
    struct cli_api *api;
    struct cli_tunnel *tun;
    bool creating, resolving, renewing, closing, released;
    char sid[80];
    char public_url[512];
    char relay_endpoint[512];
    char hc[260];
    char tls_host[256];
    char *token;
};

static char *
dup_opt(const char *s, bool *ok)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (!d)
        *ok = false;
    else
        memcpy(d, s, n);
    return d;
}

/* Replaces the held listener token (the old one is wiped). */
static void
set_token(struct cli_session *s, const char *tok)
{
    if (s->token) {
        memset(s->token, 0, strlen(s->token));
        free(s->token);
        s->token = NULL;
    }
    bool ok = true;
    s->token = dup_opt(tok, &ok);
}

/* ---- tunnel callbacks ---- */

static void
tun_event(void *ud, enum cli_event ev, int status, const char *detail)
{
    struct cli_session *s = ud;
    if (ev == CLI_EV_LOST)
        AHG_LOG_WARN("connection to the relay lost (%s); reconnecting", detail ? detail : "");
    else if (ev == CLI_EV_CONNECT_FAILED && status > 0)
        AHG_LOG_WARN("cannot connect to the relay: it answered HTTP %d%s%s; retrying", status,
                     detail && *detail ? " " : "", detail ? detail : "");
    else if (ev == CLI_EV_CONNECT_FAILED)
        AHG_LOG_WARN("cannot connect to the relay: %s; retrying",
                     detail && *detail ? detail : "no answer");
    if (s->o.on_event)
        s->o.on_event(s->o.ud, ev, status, detail);
}

static void
tun_request(void *ud, const struct cli_req_log *rec)
{
    struct cli_session *s = ud;
    if (s->o.on_request)
        s->o.on_request(s->o.ud, rec);
}

static int request_create(struct cli_session *s);

static void
renew_done(void *ud, const struct cli_api_result *r)
{
    struct cli_session *s = ud;
    s->renewing = false;
    if (r->err == AHG_OK && r->tunnel && r->tunnel->listener_token) {
        if (s->tun)
            (void)cli_tunnel_set_token(s->tun, r->tunnel->listener_token);
        AHG_LOG_DEBUG("listener token renewed through the management API");
        return;
    }
    if (r->err == AHG_EUPSTREAM && r->status == 404 && !s->closing) {
        /* the session expired (laptop asleep longer than its TTL): ask for a new tunnel */
        AHG_LOG_WARN("tunnel %s expired on the server; creating a new one%s", s->sid,
                     s->subdomain ? "" : " (the public URL changes)");
        cli_tunnel_free(s->tun);
        s->tun = NULL;
        s->sid[0] = 0;
        if (request_create(s) != AHG_OK && s->o.on_relay_failed)
            s->o.on_relay_failed(s->o.ud, AHG_EIO, "the management API call could not start");
        return;
    }
    if (r->err == AHG_EUPSTREAM)
        AHG_LOG_WARN("token renewal failed (HTTP %d%s%s); retrying", r->status,
                     r->message[0] ? ": " : "", r->message);
    else
        AHG_LOG_WARN("token renewal failed (%s); retrying",
                     r->errmsg[0] ? r->errmsg : ahg_strerror(r->err));
}

static void
want_token(void *ud, struct cli_tunnel *t, bool rejected)
{
    struct cli_session *s = ud;
    (void)t;
    if (!s->api || s->renewing || !s->sid[0] || s->closing)
        return;
    if (cli_api_renew(s->api, s->sid, rejected, renew_done, s) == AHG_OK)
        s->renewing = true;
}

/* ---- connecting the relay ---- */

static void
relay_failed(struct cli_session *s, int err, const char *what)
{
    if (s->o.on_relay_failed)
        s->o.on_relay_failed(s->o.ud, err, what);
}

static void
start_tunnel(struct cli_session *s, const char *relay_address)
{
    struct cli_tunnel_opts to = {
        .relay_endpoint = s->relay_endpoint,
        .relay_address = relay_address,
        .tls_host = s->tls_host[0] ? s->tls_host : NULL,
        .insecure = s->o.relay_insecure,
        .hc = s->hc,
        .token = s->token,
        .token_cb = s->api ? want_token : NULL,
        .token_ud = s,
        .local_host = s->local_host,
        .local_port = s->o.local_port,
        .host_header = s->host_header,
        .keepalive_ms = s->o.keepalive_ms,
        .on_event = tun_event,
        .on_request = tun_request,
        .ud = s,
    };
    int err = 0;
    s->tun = cli_tunnel_new(s->loop, &to, &err);
    if (!s->tun) {
        AHG_LOG_ERROR("cannot start the tunnel to %s: %s", s->relay_endpoint, ahg_strerror(err));
        relay_failed(s, err, "the listener could not start");
    }
}

static void
resolved(int err, const char *addr, void *ud)
{
    struct cli_session *s = ud;
    s->resolving = false;
    if (s->closing)
        return;
    if (err != AHG_OK) {
        AHG_LOG_ERROR("cannot resolve the relay host %s (%s): check the relay endpoint %s",
                      s->tls_host, ahg_strerror(err), s->relay_endpoint);
        relay_failed(s, err, "the relay host did not resolve");
        return;
    }
    start_tunnel(s, addr);
}

/* Resolves the relay endpoint's host (numeric hosts are dialed as they are). */
static void
connect_relay(struct cli_session *s)
{
    struct ahg_url *u = malloc(sizeof(*u));
    if (!u) {
        relay_failed(s, AHG_ENOMEM, "out of memory");
        return;
    }
    int rc = ahg_url_parse(s->relay_endpoint, u);
    if (rc != AHG_OK || (strcmp(u->scheme, "ws") != 0 && strcmp(u->scheme, "wss") != 0)) {
        AHG_LOG_ERROR("invalid relay endpoint '%s': expected a ws:// or wss:// URL",
                      s->relay_endpoint);
        free(u);
        relay_failed(s, AHG_EINVAL, "the relay endpoint is not a ws:// or wss:// URL");
        return;
    }
    (void)snprintf(s->tls_host, sizeof(s->tls_host), "%s", u->host);
    int port = u->port > 0 ? u->port : (!strcmp(u->scheme, "wss") ? 443 : 80);
    free(u);
    if (cli_platform_is_numeric_addr(s->tls_host)) {
        s->tls_host[0] = 0;
        start_tunnel(s, NULL);
        return;
    }
    s->resolving = true;
    rc = ahg_resolve(s->loop, s->tls_host, port, resolved, s);
    if (rc != AHG_OK) {
        s->resolving = false;
        AHG_LOG_ERROR("cannot resolve the relay host %s: %s", s->tls_host, ahg_strerror(rc));
        relay_failed(s, rc, "the relay host could not be resolved");
    }
}

/* ---- creating the tunnel ---- */

static void
created(void *ud, const struct cli_api_result *r)
{
    struct cli_session *s = ud;
    s->creating = false;
    if (s->closing)
        return;
    if (r->err != AHG_OK || !r->tunnel) {
        if (s->o.on_create_failed)
            s->o.on_create_failed(s->o.ud, r);
        return;
    }
    const struct cli_api_tunnel *t = r->tunnel;
    (void)snprintf(s->sid, sizeof(s->sid), "%s", t->session_id);
    (void)snprintf(s->public_url, sizeof(s->public_url), "%s", t->public_url);
    (void)snprintf(s->relay_endpoint, sizeof(s->relay_endpoint), "%s", t->relay_endpoint);
    (void)snprintf(s->hc, sizeof(s->hc), "%s", t->hybrid_connection_name);
    set_token(s, t->listener_token);
    AHG_LOG_INFO("tunnel %s created (%s)", s->sid, s->public_url);
    if (s->o.on_created)
        s->o.on_created(s->o.ud, t);
    if (!s->closing)
        connect_relay(s);
}

static int
request_create(struct cli_session *s)
{
    struct cli_api_create req = {.local_port = s->o.local_port,
                                 .subdomain = s->subdomain,
                                 .basic_auth = s->basic_auth,
                                 .allow_cidr = (const char *const *)s->allow_cidr};
    int rc = cli_api_create_tunnel(s->api, &req, created, s);
    if (rc == AHG_OK)
        s->creating = true;
    return rc;
}

/* ---- public ---- */

struct cli_session *
cli_session_new(struct ahg_loop *loop, const struct cli_session_opts *o, int *err)
{
    int dummy = 0;
    if (!err)
        err = &dummy;
    *err = AHG_EINVAL;
    if (!loop || !o || !o->local_host || o->local_port <= 0)
        return NULL;
    bool api_mode = o->api_url && o->api_url[0];
    if (api_mode && (!o->api_key || !o->api_key[0]))
        return NULL;
    if (!api_mode && (!o->relay_endpoint || !o->relay_endpoint[0] || !o->hybrid_connection ||
                      !o->hybrid_connection[0]))
        return NULL;
    struct cli_session *s = calloc(1, sizeof(*s));
    if (!s) {
        *err = AHG_ENOMEM;
        return NULL;
    }
    s->loop = loop;
    s->o = *o;
    bool ok = true;
    s->api_url = dup_opt(api_mode ? o->api_url : NULL, &ok);
    s->api_key = dup_opt(api_mode ? o->api_key : NULL, &ok);
    s->api_ca_file = dup_opt(o->api_ca_file, &ok);
    s->subdomain = dup_opt(o->subdomain && o->subdomain[0] ? o->subdomain : NULL, &ok);
    s->basic_auth = dup_opt(o->basic_auth && o->basic_auth[0] ? o->basic_auth : NULL, &ok);
    s->local_host = dup_opt(o->local_host, &ok);
    s->host_header = dup_opt(o->host_header && o->host_header[0] ? o->host_header : NULL, &ok);
    size_t n = 0;
    while (o->allow_cidr && o->allow_cidr[n])
        n++;
    if (n) {
        s->allow_cidr = calloc(n + 1, sizeof(*s->allow_cidr));
        if (!s->allow_cidr)
            ok = false;
        for (size_t i = 0; s->allow_cidr && i < n; i++)
            s->allow_cidr[i] = dup_opt(o->allow_cidr[i], &ok);
    }
    if (!api_mode) {
        (void)snprintf(s->relay_endpoint, sizeof(s->relay_endpoint), "%s", o->relay_endpoint);
        (void)snprintf(s->hc, sizeof(s->hc), "%s", o->hybrid_connection);
        set_token(s, o->listener_token);
        if (o->listener_token && !s->token)
            ok = false;
    }
    if (!ok) {
        cli_session_free(s);
        *err = AHG_ENOMEM;
        return NULL;
    }
    if (api_mode) {
        struct cli_api_opts ao = {
            .base_url = s->api_url, .api_key = s->api_key, .ca_file = s->api_ca_file};
        s->api = cli_api_new(loop, &ao, err);
        if (!s->api) {
            cli_session_free(s);
            return NULL;
        }
    }
    *err = AHG_OK;
    return s;
}

int
cli_session_start(struct cli_session *s)
{
    if (!s || s->closing || s->creating || s->resolving || s->tun)
        return AHG_EAGAIN;
    if (!s->api || s->sid[0]) {
        /* direct, or the tunnel exists and only the relay connection failed: connect again */
        connect_relay(s);
        return AHG_OK;
    }
    return request_create(s);
}

bool
cli_session_connected(const struct cli_session *s)
{
    return s && s->tun && cli_tunnel_connected(s->tun);
}

size_t
cli_session_active(const struct cli_session *s)
{
    return s && s->tun ? cli_tunnel_active(s->tun) : 0;
}

const char *
cli_session_id(const struct cli_session *s)
{
    return s ? s->sid : "";
}

const char *
cli_session_public_url(const struct cli_session *s)
{
    return s ? s->public_url : "";
}

static void
released(void *ud, const struct cli_api_result *r)
{
    struct cli_session *s = ud;
    s->released = true;
    if (r->err == AHG_OK)
        AHG_LOG_INFO("tunnel %s released", s->sid);
    else
        AHG_LOG_WARN("could not release tunnel %s (%s%d); it expires on its own", s->sid,
                     r->status ? "HTTP " : "error ", r->status ? r->status : r->err);
}

bool
cli_session_close(struct cli_session *s, uint64_t drain_ms, uint64_t release_ms)
{
    if (!s)
        return true;
    s->closing = true;
    if (s->tun) {
        cli_tunnel_drain(s->tun);
        uint64_t deadline = ahg_now_ms() + drain_ms;
        if (cli_tunnel_active(s->tun))
            AHG_LOG_INFO("shutting down: waiting for %zu stream(s)", cli_tunnel_active(s->tun));
        while (cli_tunnel_active(s->tun) && ahg_now_ms() < deadline)
            (void)ahg_loop_run_once(s->loop);
        if (cli_tunnel_active(s->tun))
            AHG_LOG_WARN("drain deadline passed with %zu stream(s) still open",
                         cli_tunnel_active(s->tun));
    }
    if (!s->api || !s->sid[0])
        return true;
    s->released = false;
    bool called = false;
    if (cli_api_delete(s->api, s->sid, released, s) == AHG_OK) {
        called = true;
        uint64_t deadline = ahg_now_ms() + release_ms;
        while (!s->released && ahg_now_ms() < deadline)
            (void)ahg_loop_run_once(s->loop);
    }
    return called && s->released;
}

void
cli_session_free(struct cli_session *s)
{
    if (!s)
        return;
    cli_tunnel_free(s->tun);
    cli_api_free(s->api);
    set_token(s, NULL);
    if (s->api_key) {
        memset(s->api_key, 0, strlen(s->api_key));
        free(s->api_key);
    }
    if (s->basic_auth) {
        memset(s->basic_auth, 0, strlen(s->basic_auth));
        free(s->basic_auth);
    }
    free(s->api_url);
    free(s->api_ca_file);
    free(s->subdomain);
    free(s->local_host);
    free(s->host_header);
    for (size_t i = 0; s->allow_cidr && s->allow_cidr[i]; i++)
        free(s->allow_cidr[i]);
    free(s->allow_cidr);
    free(s);
}

void
cli_req_log_access(const struct cli_req_log *r, const char *tunnel_id)
{
    struct ahg_log_access_rec rec = {.tunnel_id = tunnel_id,
                                     .method = r->method,
                                     .target = r->path,
                                     .status = r->status,
                                     .bytes_out = r->bytes,
                                     .duration_ms = (double)r->duration_ms};
    ahg_log_access(&rec);
}

/* ---- the local app probe ---- */

struct probe {
    cli_probe_cb cb;
    void *ud;
    bool ok;
};

static void
probe_connect(struct ahg_conn *c)
{
    struct probe *p = ahg_conn_ud(c);
    p->ok = true;
    ahg_conn_close(c);
}

static size_t
probe_data(struct ahg_conn *c, const unsigned char *data, size_t n)
{
    (void)c;
    (void)data;
    return n;
}

static void
probe_close(struct ahg_conn *c, enum ahg_conn_end why)
{
    struct probe *p = ahg_conn_ud(c);
    (void)why;
    p->cb(p->ud, p->ok);
    free(p);
}

static const struct ahg_conn_ops probe_ops = {
    .on_connect = probe_connect, .on_data = probe_data, .on_close = probe_close};

int
cli_probe_local(struct ahg_loop *loop, const char *host, int port, unsigned timeout_ms,
                cli_probe_cb cb, void *ud)
{
    if (!loop || !host || port <= 0 || !cb)
        return AHG_EINVAL;
    struct probe *p = calloc(1, sizeof(*p));
    if (!p)
        return AHG_ENOMEM;
    p->cb = cb;
    p->ud = ud;
    struct ahg_connect_opts co = {.address = host, .port = port, .connect_timeout_ms = timeout_ms};
    int err = 0;
    if (!ahg_conn_connect(loop, &co, &probe_ops, p, &err)) {
        free(p);
        return err ? err : AHG_EIO;
    }
    return AHG_OK;
}
