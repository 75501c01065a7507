/*
 * start.c - `azhexgate start`: asks the management API for a tunnel (or takes a relay endpoint
 * given directly), resolves the relay host off the loop, runs the tunnel with the console
 * output, renews the listener token through the API, and releases the tunnel on Ctrl+C.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ahg/config.h"
#include "ahg/err.h"
#include "ahg/log.h"
#include "ahg/net.h"
#include "ahg/resolve.h"
#include "ahg/url.h"
#include "cli/api.h"
#include "cli/cli.h"
#include "cli/demo.h"
#include "cli/tunnel.h"
#include "cli_int.h"
#include "platform.h"

/* How long the DELETE of the tunnel may take on the way out. */
#define RELEASE_TIMEOUT_MS 5000u

struct app {
    struct ahg_loop *loop;
    struct cli_tunnel *tun;
    struct cli_api *api;
    const struct ahg_config *cfg;
    bool quiet, json, announced, v6, api_mode, stopping, released;
    const char *local_host, *show_host;
    int port;
    int exit_code;
    struct ahg_timer tick;
    char api_url[1024];
    char sid[80];
    char public_url[512];
    char relay_endpoint[512];
    char hc[260];
    char tls_host[256];
    char host_header[300];
    char *token;
    bool renewing;
};

static struct ahg_loop *volatile g_loop;

static void
on_interrupt(unsigned count)
{
    if (count >= 2)
        cli_platform_exit_now(AHG_EXIT_FAILURE);
    if (g_loop)
        ahg_loop_stop(g_loop);
}

/* Ends the run with code (the loop stops; cleanup follows in cli_run_start). */
static void
fail(struct app *a, int code)
{
    if (!a->exit_code)
        a->exit_code = code;
    ahg_loop_stop(a->loop);
}

static void
set_token(struct app *a, const char *tok)
{
    if (a->token) {
        memset(a->token, 0, strlen(a->token));
        free(a->token);
        a->token = NULL;
    }
    if (tok) {
        size_t n = strlen(tok) + 1;
        a->token = malloc(n);
        if (a->token)
            memcpy(a->token, tok, n);
    }
}

/* ---- tunnel events ---- */

static void
on_event(void *ud, enum cli_event ev, int status, const char *detail)
{
    struct app *a = ud;
    switch (ev) {
    case CLI_EV_ESTABLISHED:
        if (!a->announced) {
            a->announced = true;
            if (!a->quiet) {
                (void)printf("Tunnel established\n");
                if (a->public_url[0])
                    (void)printf("Public URL: %s\n", a->public_url);
                (void)printf("Forwarding to: http://%s%s%s:%d\n", a->v6 ? "[" : "", a->show_host,
                             a->v6 ? "]" : "", a->port);
                (void)fflush(stdout);
            }
            AHG_LOG_INFO("control channel connected");
        } else {
            AHG_LOG_INFO("control channel re-established");
        }
        break;
    case CLI_EV_LOST:
        AHG_LOG_WARN("connection to the relay lost (%s); reconnecting", detail ? detail : "");
        break;
    case CLI_EV_AUTH_FAILED: {
        const char *origin =
            a->api_mode ? "the management API" : ahg_config_origin(a->cfg, "listener_token");
        if (!a->announced) {
            AHG_LOG_ERROR("Relay authentication failed (HTTP %d): the relay refused the listener "
                          "token%s%s; check the token or the Hybrid Connection name",
                          status, origin ? " from " : "", origin ? origin : "");
            fail(a, CLI_EXIT_RELAY_AUTH);
        } else {
            AHG_LOG_ERROR("Relay authentication failed (HTTP %d): asking for a new listener "
                          "token and retrying",
                          status);
        }
        break;
    }
    case CLI_EV_CONNECT_FAILED:
        if (status > 0)
            AHG_LOG_WARN("cannot connect to the relay: it answered HTTP %d%s%s; retrying", status,
                         detail && *detail ? " " : "", detail ? detail : "");
        else
            AHG_LOG_WARN("cannot connect to the relay: %s; retrying",
                         detail && *detail ? detail : "no answer");
        break;
    }
}

static void
on_request(void *ud, const struct cli_req_log *r)
{
    struct app *a = ud;
    if (a->quiet)
        return;
    if (a->json) {
        struct ahg_log_access_rec rec = {.method = r->method,
                                         .target = r->path,
                                         .status = r->status,
                                         .bytes_out = r->bytes,
                                         .duration_ms = (double)r->duration_ms};
        ahg_log_access(&rec);
        return;
    }
    struct tm tmv;
    char ts[16] = "";
    if (cli_platform_localtime(time(NULL), &tmv))
        (void)strftime(ts, sizeof(ts), "%H:%M:%S", &tmv);
    (void)printf("%s %-7s %-40s %3d %6llums %llu B\n", ts, r->method, r->path, r->status,
                 (unsigned long long)r->duration_ms, (unsigned long long)r->bytes);
    (void)fflush(stdout);
}

static void
tick_cb(struct ahg_timer *t)
{
    ahg_timer_start(t, 100);
}

/* ---- the local-port probe: warn when nothing listens (the tunnel stays up) ---- */

static void
probe_connect(struct ahg_conn *c)
{
    ahg_conn_close(c);
}

static size_t
probe_data(struct ahg_conn *c, const unsigned char *p, size_t n)
{
    (void)c;
    (void)p;
    return n;
}

static void
probe_close(struct ahg_conn *c, enum ahg_conn_end why)
{
    struct app *a = ahg_conn_ud(c);
    if (why == AHG_CONN_END_CONNECT)
        AHG_LOG_WARN("nothing is listening on %s:%d yet; requests get a 502 until it is",
                     a->local_host, a->port);
}

static const struct ahg_conn_ops probe_ops = {
    .on_connect = probe_connect, .on_data = probe_data, .on_close = probe_close};

/* ---- token renewal through the API ---- */

static int request_create(struct app *a);

static void
renew_done(void *ud, const struct cli_api_result *r)
{
    struct app *a = ud;
    a->renewing = false;
    if (r->err == AHG_OK && r->tunnel && r->tunnel->listener_token) {
        if (a->tun)
            (void)cli_tunnel_set_token(a->tun, r->tunnel->listener_token);
        AHG_LOG_DEBUG("listener token renewed through the management API");
        return;
    }
    if (r->err == AHG_EUPSTREAM && r->status == 404 && !a->stopping) {
        /* the session expired (laptop asleep longer than its TTL): ask for a new tunnel */
        AHG_LOG_WARN("tunnel %s expired on the server; creating a new one (the public URL "
                     "changes)",
                     a->sid);
        cli_tunnel_free(a->tun);
        a->tun = NULL;
        a->sid[0] = 0;
        a->announced = false;
        if (request_create(a) != AHG_OK)
            fail(a, AHG_EXIT_FAILURE);
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
    struct app *a = ud;
    (void)t;
    if (!a->api || a->renewing || !a->sid[0])
        return;
    if (cli_api_renew(a->api, a->sid, rejected, renew_done, a) == AHG_OK)
        a->renewing = true;
}

/* ---- starting the tunnel ---- */

static void
start_tunnel(struct app *a, const char *relay_address)
{
    struct cli_tunnel_opts to = {
        .relay_endpoint = a->relay_endpoint,
        .relay_address = relay_address,
        .tls_host = a->tls_host[0] ? a->tls_host : NULL,
        .insecure = ahg_config_bool(a->cfg, "relay_insecure"),
        .hc = a->hc,
        .token = a->token,
        .token_cb = a->api_mode ? want_token : NULL,
        .token_ud = a,
        .local_host = a->local_host,
        .local_port = a->port,
        .host_header = a->host_header[0] ? a->host_header : NULL,
        .keepalive_ms = (uint64_t)ahg_config_int(a->cfg, "keepalive"),
        .on_event = on_event,
        .on_request = on_request,
        .ud = a,
    };
    int err = 0;
    a->tun = cli_tunnel_new(a->loop, &to, &err);
    if (!a->tun) {
        AHG_LOG_ERROR("cannot start the tunnel to %s: %s", a->relay_endpoint, ahg_strerror(err));
        fail(a, AHG_EXIT_FAILURE);
    }
}

static void
resolved(int err, const char *addr, void *ud)
{
    struct app *a = ud;
    if (a->stopping)
        return;
    if (err != AHG_OK) {
        AHG_LOG_ERROR("cannot resolve the relay host %s (%s): check the relay endpoint %s",
                      a->tls_host, ahg_strerror(err), a->relay_endpoint);
        fail(a, AHG_EXIT_FAILURE);
        return;
    }
    start_tunnel(a, addr);
}

/* Resolves the relay endpoint's host (numeric hosts come back as they are). */
static void
connect_relay(struct app *a)
{
    struct ahg_url *u = malloc(sizeof(*u));
    if (!u) {
        fail(a, AHG_EXIT_FAILURE);
        return;
    }
    int rc = ahg_url_parse(a->relay_endpoint, u);
    if (rc != AHG_OK || (strcmp(u->scheme, "ws") != 0 && strcmp(u->scheme, "wss") != 0)) {
        AHG_LOG_ERROR("invalid relay endpoint '%s': expected a ws:// or wss:// URL",
                      a->relay_endpoint);
        free(u);
        fail(a, AHG_EXIT_CONFIG);
        return;
    }
    (void)snprintf(a->tls_host, sizeof(a->tls_host), "%s", u->host);
    int port = u->port > 0 ? u->port : (!strcmp(u->scheme, "wss") ? 443 : 80);
    free(u);
    if (cli_platform_is_numeric_addr(a->tls_host)) {
        a->tls_host[0] = 0;
        start_tunnel(a, NULL);
        return;
    }
    rc = ahg_resolve(a->loop, a->tls_host, port, resolved, a);
    if (rc != AHG_OK) {
        AHG_LOG_ERROR("cannot resolve the relay host %s: %s", a->tls_host, ahg_strerror(rc));
        fail(a, AHG_EXIT_FAILURE);
    }
}

/* Where the API key came from, for messages. */
static const char *
key_source(const struct app *a, char *buf, size_t n)
{
    const char *o = ahg_config_origin(a->cfg, "api_key");
    switch (ahg_config_source(a->cfg, "api_key")) {
    case AHG_SRC_FLAG:
        (void)snprintf(buf, n, "the %s flag", o ? o : "--api-key");
        break;
    case AHG_SRC_ENV:
        (void)snprintf(buf, n, "the environment variable %s", o ? o : "AZHEXGATE_API_KEY");
        break;
    case AHG_SRC_FILE:
        (void)snprintf(buf, n, "the config file %s", o ? o : "");
        break;
    default:
        (void)snprintf(buf, n, "the default");
        break;
    }
    return buf;
}

static void
created(void *ud, const struct cli_api_result *r)
{
    struct app *a = ud;
    if (a->stopping)
        return;
    char src[1200];
    if (r->err == AHG_OK && r->tunnel) {
        const struct cli_api_tunnel *t = r->tunnel;
        (void)snprintf(a->sid, sizeof(a->sid), "%s", t->session_id);
        (void)snprintf(a->public_url, sizeof(a->public_url), "%s", t->public_url);
        (void)snprintf(a->relay_endpoint, sizeof(a->relay_endpoint), "%s", t->relay_endpoint);
        (void)snprintf(a->hc, sizeof(a->hc), "%s", t->hybrid_connection_name);
        set_token(a, t->listener_token);
        AHG_LOG_INFO("tunnel %s created (%s)", a->sid, a->public_url);
        connect_relay(a);
        return;
    }
    if (r->err == AHG_EUPSTREAM && (r->status == 401 || r->status == 403)) {
        AHG_LOG_ERROR("Authentication failed (HTTP %d%s%s): the API key from %s was refused by %s; "
                      "check the key, or set it with `azhexgate config set api_key KEY`",
                      r->status, r->message[0] ? ": " : "", r->message,
                      key_source(a, src, sizeof(src)), a->api_url);
        fail(a, CLI_EXIT_API_AUTH);
    } else if (r->err == AHG_EUPSTREAM && (r->status >= 500 || r->status == 429)) {
        AHG_LOG_ERROR("Unable to create tunnel: %s (HTTP %d%s%s)%s",
                      r->message[0] ? r->message : "the server gave no reason", r->status,
                      r->code[0] ? ", " : "", r->code,
                      r->retry_after > 0 ? "; try again in a moment" : "; try again later");
        fail(a, CLI_EXIT_API_ERROR);
    } else if (r->err == AHG_EUPSTREAM) {
        AHG_LOG_ERROR("Unable to create tunnel: %s (HTTP %d%s%s)",
                      r->message[0] ? r->message : "the request was refused", r->status,
                      r->code[0] ? ", " : "", r->code);
        fail(a, CLI_EXIT_API_REJECTED);
    } else if (r->err == AHG_EPROTO) {
        AHG_LOG_ERROR("Unable to create tunnel: %s", r->message);
        fail(a, CLI_EXIT_API_ERROR);
    } else {
        const char *why = r->err == AHG_EUNAVAIL    ? "connection refused"
                          : r->err == AHG_ENOTFOUND ? "host name not found"
                          : r->err == AHG_ETIMEDOUT ? "timed out"
                          : r->err == AHG_ETLS      ? "TLS failed"
                                                    : ahg_strerror(r->err);
        AHG_LOG_ERROR("The management API at %s is unreachable (%s%s%s): check --api-url and "
                      "your network%s",
                      a->api_url, why, r->errmsg[0] ? ": " : "", r->errmsg,
                      r->err == AHG_ETLS ? ", or pass the server's CA with --api-ca-file" : "");
        fail(a, CLI_EXIT_API_UNREACHABLE);
    }
}

static void
released(void *ud, const struct cli_api_result *r)
{
    struct app *a = ud;
    a->released = true;
    if (r->err == AHG_OK)
        AHG_LOG_INFO("tunnel %s released", a->sid);
    else
        AHG_LOG_WARN("could not release tunnel %s (%s%d); it expires on its own", a->sid,
                     r->status ? "HTTP " : "error ", r->status ? r->status : r->err);
}

static int
request_create(struct app *a)
{
    const char *const *cidrs = NULL;
    (void)ahg_config_list(a->cfg, "allow_cidr", &cidrs);
    struct cli_api_create req = {.local_port = a->port,
                                 .subdomain = ahg_config_str(a->cfg, "subdomain"),
                                 .basic_auth = ahg_config_str(a->cfg, "basic_auth"),
                                 .allow_cidr = cidrs};
    return cli_api_create_tunnel(a->api, &req, created, a);
}

static int
start_api(struct app *a)
{
    const char *url = ahg_config_str(a->cfg, "api_url");
    const char *key = ahg_config_str(a->cfg, "api_key");
    if (!url || !url[0]) {
        AHG_LOG_ERROR("no management API URL: pass --api-url URL, set AZHEXGATE_API_URL, or run "
                      "`azhexgate config set api_url URL` (or give --relay-endpoint for a direct "
                      "relay connection)");
        return AHG_EXIT_CONFIG;
    }
    if (!key || !key[0]) {
        AHG_LOG_ERROR("no API key: pass --api-key KEY or --api-key-file FILE, set "
                      "AZHEXGATE_API_KEY, or run `azhexgate config set api_key KEY`");
        return AHG_EXIT_CONFIG;
    }
    (void)snprintf(a->api_url, sizeof(a->api_url), "%s", url);
    struct cli_api_opts ao = {
        .base_url = url, .api_key = key, .ca_file = ahg_config_str(a->cfg, "api_ca_file")};
    int err = 0;
    a->api = cli_api_new(a->loop, &ao, &err);
    if (!a->api) {
        AHG_LOG_ERROR("invalid management API URL '%s': expected http:// or https://", url);
        return err == AHG_EINVAL ? AHG_EXIT_CONFIG : AHG_EXIT_FAILURE;
    }
    err = request_create(a);
    if (err != AHG_OK) {
        AHG_LOG_ERROR("cannot call the management API: %s", ahg_strerror(err));
        return AHG_EXIT_FAILURE;
    }
    return AHG_EXIT_OK;
}

static int
start_direct(struct app *a)
{
    const char *hc = ahg_config_str(a->cfg, "hybrid_connection");
    if (!hc || !hc[0]) {
        AHG_LOG_ERROR("--relay-endpoint needs --hybrid-connection NAME");
        return AHG_EXIT_CONFIG;
    }
    (void)snprintf(a->relay_endpoint, sizeof(a->relay_endpoint), "%s",
                   ahg_config_str(a->cfg, "relay_endpoint"));
    (void)snprintf(a->hc, sizeof(a->hc), "%s", hc);
    set_token(a, ahg_config_str(a->cfg, "listener_token"));
    connect_relay(a);
    return AHG_EXIT_OK;
}

static void
host_header_value(struct app *a)
{
    const char *hh = ahg_config_str(a->cfg, "host_header");
    if (!hh || !strcmp(hh, "preserve"))
        return;
    if (!strcmp(hh, "rewrite"))
        (void)snprintf(a->host_header, sizeof(a->host_header), "%s%s%s:%d", a->v6 ? "[" : "",
                       a->show_host, a->v6 ? "]" : "", a->port);
    else
        (void)snprintf(a->host_header, sizeof(a->host_header), "%s", hh);
}

int
cli_run_start(const struct ahg_config *cfg)
{
    struct app a;
    memset(&a, 0, sizeof(a));
    a.cfg = cfg;
    a.quiet = ahg_config_bool(cfg, "quiet");
    a.json = ahg_config_int(cfg, "log_format") == 1;
    a.port = (int)ahg_config_int(cfg, "port");
    ahg_log_setup("azhexgate", a.json ? AHG_LOG_FORMAT_JSON : AHG_LOG_FORMAT_TEXT,
                  a.quiet ? AHG_LOG_LVL_WARN : AHG_LOG_LVL_INFO, 2);
    a.local_host = ahg_config_str(cfg, "local_host");
    if (!strcmp(a.local_host, "localhost"))
        a.local_host = "127.0.0.1";
    a.show_host = !strcmp(a.local_host, "127.0.0.1") ? "localhost" : a.local_host;
    a.v6 = strchr(a.local_host, ':') != NULL;
    host_header_value(&a);
    const char *ep = ahg_config_str(cfg, "relay_endpoint");
    a.api_mode = !ep || !ep[0];

    struct ahg_loop_opts lo = {.client_insecure = ahg_config_bool(cfg, "relay_insecure"),
                               .client_ca_file = ahg_config_str(cfg, "relay_ca_file")};
    a.loop = ahg_loop_new(&lo);
    if (!a.loop)
        return AHG_EXIT_FAILURE;
    g_loop = a.loop;
    cli_platform_on_interrupt(on_interrupt);
    ahg_timer_init(&a.tick, a.loop, tick_cb, &a);
    ahg_timer_start(&a.tick, 100);

    int err = 0;
    struct ahg_connect_opts co = {
        .address = a.local_host, .port = a.port, .connect_timeout_ms = 3000};
    (void)ahg_conn_connect(a.loop, &co, &probe_ops, &a, &err);

    int code = a.api_mode ? start_api(&a) : start_direct(&a);
    if (code == AHG_EXIT_OK)
        (void)ahg_loop_run(a.loop);
    else
        a.exit_code = code;
    a.stopping = true;

    /* Ctrl+C: stop taking streams, let in-flight ones finish within the drain deadline. */
    if (a.tun) {
        cli_tunnel_drain(a.tun);
        uint64_t deadline = ahg_now_ms() + (uint64_t)ahg_config_int(cfg, "drain_timeout");
        if (cli_tunnel_active(a.tun))
            AHG_LOG_INFO("shutting down: waiting for %zu stream(s)", cli_tunnel_active(a.tun));
        while (cli_tunnel_active(a.tun) && ahg_now_ms() < deadline)
            (void)ahg_loop_run_once(a.loop);
    }
    /* release the tunnel */
    if (a.api && a.sid[0] && cli_api_delete(a.api, a.sid, released, &a) == AHG_OK) {
        uint64_t deadline = ahg_now_ms() + RELEASE_TIMEOUT_MS;
        while (!a.released && ahg_now_ms() < deadline)
            (void)ahg_loop_run_once(a.loop);
    }
    ahg_timer_stop(&a.tick);
    cli_tunnel_free(a.tun);
    cli_api_free(a.api);
    ahg_resolve_shutdown(a.loop);
    g_loop = NULL;
    ahg_loop_free(a.loop);
    cli_platform_on_interrupt(NULL);
    set_token(&a, NULL);
    if (!a.exit_code)
        AHG_LOG_INFO("tunnel closed");
    return a.exit_code;
}

int
cli_run_demo(const struct ahg_config *cfg)
{
    ahg_log_setup("azhexgate", AHG_LOG_FORMAT_TEXT, AHG_LOG_LVL_INFO, 2);
    struct ahg_loop *loop = ahg_loop_new(NULL);
    if (!loop)
        return AHG_EXIT_FAILURE;
    int port = (int)ahg_config_int(cfg, "port");
    const char *iface = ahg_config_str(cfg, "listen");
    if (!strcmp(iface, "localhost"))
        iface = "127.0.0.1";
    struct cli_demo_opts o = {.iface = iface, .port = port};
    int err = 0;
    struct cli_demo *d = cli_demo_new(loop, &o, &err);
    if (!d) {
        AHG_LOG_ERROR("cannot serve the demo app on %s:%d: %s", iface, port,
                      err == AHG_EIO ? "the port is taken (choose another with --port)"
                                     : ahg_strerror(err));
        ahg_loop_free(loop);
        return AHG_EXIT_FAILURE;
    }
    struct ahg_timer tick;
    ahg_timer_init(&tick, loop, tick_cb, NULL);
    ahg_timer_start(&tick, 100);
    g_loop = loop;
    cli_platform_on_interrupt(on_interrupt);
    (void)printf("Demo app on http://%s:%d/ (Ctrl+C stops it)\n",
                 !strcmp(iface, "127.0.0.1") ? "localhost" : iface, cli_demo_port(d));
    (void)fflush(stdout);
    (void)ahg_loop_run(loop);
    ahg_timer_stop(&tick);
    g_loop = NULL;
    ahg_loop_free(loop);
    cli_demo_free(d);
    cli_platform_on_interrupt(NULL);
    return AHG_EXIT_OK;
}
