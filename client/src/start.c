/*
 * start.c - `azhexgate start`: runs one tunnel session (cli/session.h: create, connect, renew,
 * drain, release) with the console output, and turns the first failure into a message and an
 * exit code.
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
#include "cli/api.h"
#include "cli/cli.h"
#include "cli/demo.h"
#include "cli/session.h"
#include "cli/tunnel.h"
#include "cli_int.h"
#include "platform.h"

/* How long the DELETE of the tunnel may take on the way out. */
#define RELEASE_TIMEOUT_MS 5000u

struct app {
    struct ahg_loop *loop;
    struct cli_session *sess;
    const struct ahg_config *cfg;
    bool quiet, json, announced, v6, api_mode;
    const char *local_host, *show_host;
    int port;
    int exit_code;
    struct ahg_timer tick;
    char api_url[1024];
    char host_header[300];
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

/* ---- session events ---- */

static void
on_event(void *ud, enum cli_event ev, int status, const char *detail)
{
    struct app *a = ud;
    (void)detail; /* the session logs drops and failed connects */
    if (ev == CLI_EV_ESTABLISHED) {
        if (!a->announced) {
            a->announced = true;
            if (!a->quiet) {
                const char *url = cli_session_public_url(a->sess);
                (void)printf("Tunnel established\n");
                if (url[0])
                    (void)printf("Public URL: %s\n", url);
                (void)printf("Forwarding to: http://%s%s%s:%d\n", a->v6 ? "[" : "", a->show_host,
                             a->v6 ? "]" : "", a->port);
                (void)fflush(stdout);
            }
            AHG_LOG_INFO("control channel connected");
        } else {
            AHG_LOG_INFO("control channel re-established");
        }
    } else if (ev == CLI_EV_AUTH_FAILED && !a->announced) {
        const char *origin =
            a->api_mode ? "the management API" : ahg_config_origin(a->cfg, "listener_token");
        AHG_LOG_ERROR("Relay authentication failed (HTTP %d): the relay refused the listener "
                      "token%s%s; check the token or the Hybrid Connection name",
                      status, origin ? " from " : "", origin ? origin : "");
        fail(a, CLI_EXIT_RELAY_AUTH);
    } else if (ev == CLI_EV_AUTH_FAILED) {
        AHG_LOG_ERROR("Relay authentication failed (HTTP %d): asking for a new listener token "
                      "and retrying",
                      status);
    }
}

static void
on_request(void *ud, const struct cli_req_log *r)
{
    struct app *a = ud;
    if (a->quiet)
        return;
    if (a->json) {
        cli_req_log_access(r, NULL);
        return;
    }
    struct tm tmv;
    char ts[16] = "";
    if (cli_platform_localtime(time(NULL), &tmv))
        (void)strftime(ts, sizeof(ts), "%H:%M:%S", &tmv);
    char path[512]; /* the request line is user input: no sig=, token or key in the output */
    (void)ahg_log_redact(r->path, path, sizeof(path));
    (void)printf("%s %-7s %-40s %3d %6llums %llu B\n", ts, r->method, path, r->status,
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
probe_done(void *ud, bool reachable)
{
    struct app *a = ud;
    if (!reachable)
        AHG_LOG_WARN("nothing is listening on %s:%d yet; requests get a 502 until it is",
                     a->local_host, a->port);
}

/* ---- failures: the first one ends the run ---- */

static void
on_created(void *ud, const struct cli_api_tunnel *t)
{
    struct app *a = ud;
    (void)t;
    a->announced = false; /* a new tunnel (also after the server forgot the session) */
}

static void
on_relay_failed(void *ud, int err, const char *what)
{
    (void)what; /* the session logged it */
    fail(ud, err == AHG_EINVAL ? AHG_EXIT_CONFIG : AHG_EXIT_FAILURE);
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
on_create_failed(void *ud, const struct cli_api_result *r)
{
    struct app *a = ud;
    char src[1200];
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

static int
start_session(struct app *a)
{
    const char *url = ahg_config_str(a->cfg, "api_url");
    const char *key = ahg_config_str(a->cfg, "api_key");
    const char *hc = ahg_config_str(a->cfg, "hybrid_connection");
    if (a->api_mode && (!url || !url[0])) {
        AHG_LOG_ERROR("no management API URL: pass --api-url URL, set AZHEXGATE_API_URL, or run "
                      "`azhexgate config set api_url URL` (or give --relay-endpoint for a direct "
                      "relay connection)");
        return AHG_EXIT_CONFIG;
    }
    if (a->api_mode && (!key || !key[0])) {
        AHG_LOG_ERROR("no API key: pass --api-key KEY or --api-key-file FILE, set "
                      "AZHEXGATE_API_KEY, or run `azhexgate config set api_key KEY`");
        return AHG_EXIT_CONFIG;
    }
    if (!a->api_mode && (!hc || !hc[0])) {
        AHG_LOG_ERROR("--relay-endpoint needs --hybrid-connection NAME");
        return AHG_EXIT_CONFIG;
    }
    if (a->api_mode)
        (void)snprintf(a->api_url, sizeof(a->api_url), "%s", url);
    const char *const *cidrs = NULL;
    (void)ahg_config_list(a->cfg, "allow_cidr", &cidrs);
    struct cli_session_opts so = {
        .api_url = a->api_mode ? url : NULL,
        .api_key = key,
        .api_ca_file = ahg_config_str(a->cfg, "api_ca_file"),
        .subdomain = ahg_config_str(a->cfg, "subdomain"),
        .basic_auth = ahg_config_str(a->cfg, "basic_auth"),
        .allow_cidr = cidrs,
        .relay_endpoint = ahg_config_str(a->cfg, "relay_endpoint"),
        .hybrid_connection = hc,
        .listener_token = ahg_config_str(a->cfg, "listener_token"),
        .relay_insecure = ahg_config_bool(a->cfg, "relay_insecure"),
        .local_host = a->local_host,
        .local_port = a->port,
        .host_header = a->host_header[0] ? a->host_header : NULL,
        .keepalive_ms = (uint64_t)ahg_config_int(a->cfg, "keepalive"),
        .on_created = on_created,
        .on_create_failed = on_create_failed,
        .on_relay_failed = on_relay_failed,
        .on_event = on_event,
        .on_request = on_request,
        .ud = a,
    };
    int err = 0;
    a->sess = cli_session_new(a->loop, &so, &err);
    if (!a->sess) {
        if (a->api_mode && err == AHG_EINVAL)
            AHG_LOG_ERROR("invalid management API URL '%s': expected http:// or https://", url);
        else
            AHG_LOG_ERROR("cannot start the tunnel: %s", ahg_strerror(err));
        return err == AHG_EINVAL ? AHG_EXIT_CONFIG : AHG_EXIT_FAILURE;
    }
    err = cli_session_start(a->sess);
    if (err != AHG_OK) {
        AHG_LOG_ERROR("cannot call the management API: %s", ahg_strerror(err));
        return AHG_EXIT_FAILURE;
    }
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

    (void)cli_probe_local(a.loop, a.local_host, a.port, 3000, probe_done, &a);

    int code = start_session(&a);
    if (code == AHG_EXIT_OK)
        (void)ahg_loop_run(a.loop);
    else
        a.exit_code = code;

    /* Ctrl+C: stop taking streams, let in-flight ones finish within the drain deadline, then
     * release the tunnel */
    (void)cli_session_close(a.sess, (uint64_t)ahg_config_int(cfg, "drain_timeout"),
                            RELEASE_TIMEOUT_MS);
    ahg_timer_stop(&a.tick);
    ahg_resolve_shutdown(a.loop);
    cli_session_free(a.sess);
    g_loop = NULL;
    ahg_loop_free(a.loop);
    cli_platform_on_interrupt(NULL);
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
