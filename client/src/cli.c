/*
 * cli.c - the azhexgate command line (cli/cli.h): option table, `start` (tunnel + console
 * output + graceful shutdown) and `version`.
 */
#include "cli/cli.h"

#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ahg/config.h"
#include "ahg/err.h"
#include "ahg/log.h"
#include "ahg/net.h"
#include "cli/tunnel.h"

#define PROG "azhexgate"

static int
validate_host(const char *v, char *err, size_t errlen)
{
    unsigned char a[16];
    if (!strcmp(v, "localhost") || inet_pton(AF_INET, v, a) == 1 || inet_pton(AF_INET6, v, a) == 1)
        return AHG_OK;
    (void)snprintf(err, errlen, "expected a numeric IP address or localhost");
    return AHG_ECONFIG;
}

static int
validate_endpoint(const char *v, char *err, size_t errlen)
{
    if (!strncmp(v, "ws://", 5) || !strncmp(v, "wss://", 6))
        return AHG_OK;
    (void)snprintf(err, errlen, "expected a ws:// or wss:// URL");
    return AHG_ECONFIG;
}

static const struct ahg_opt_def start_opts[] = {
    {.name = "port",
     .short_flag = 'p',
     .type = AHG_OPT_INT,
     .min = 1,
     .max = 65535,
     .metavar = "PORT",
     .help = "Local port to expose.",
     .flags = AHG_OPT_REQUIRED},
    {.name = "local_host",
     .type = AHG_OPT_STRING,
     .def = "127.0.0.1",
     .metavar = "ADDR",
     .help = "Address of the local service (numeric; localhost means 127.0.0.1).",
     .validate = validate_host},
    {.name = "relay_endpoint",
     .type = AHG_OPT_STRING,
     .metavar = "URL",
     .help = "Relay endpoint, ws:// or wss:// with a numeric host (until the management API "
             "provides it).",
     .validate = validate_endpoint,
     .flags = AHG_OPT_REQUIRED},
    {.name = "hybrid_connection",
     .type = AHG_OPT_STRING,
     .metavar = "NAME",
     .help = "Hybrid Connection to listen on.",
     .flags = AHG_OPT_REQUIRED},
    {.name = "listener_token",
     .type = AHG_OPT_STRING,
     .metavar = "TOKEN",
     .help = "Listener SAS token (SharedAccessSignature ...).",
     .flags = AHG_OPT_SECRET},
    {.name = "relay_ca_file",
     .type = AHG_OPT_STRING,
     .metavar = "FILE",
     .help = "Extra CA bundle (PEM) to verify wss:// relay certificates with (tests)."},
    {.name = "relay_insecure",
     .type = AHG_OPT_BOOL,
     .def = "false",
     .help = "Skip certificate checks on wss:// (tests only)."},
    {.name = "drain_timeout",
     .type = AHG_OPT_DURATION,
     .def = "5s",
     .min = 0,
     .max = 3600000,
     .help = "How long in-flight requests may finish after Ctrl+C."},
    {.name = "keepalive",
     .type = AHG_OPT_DURATION,
     .def = "30s",
     .min = 100,
     .max = 3600000,
     .help = "Interval of keep-alive pings on the control channel."},
    {.name = "log_format",
     .type = AHG_OPT_ENUM,
     .def = "text",
     .choices = "text|json",
     .help = "Log format."},
    {.name = "quiet",
     .short_flag = 'q',
     .type = AHG_OPT_BOOL,
     .def = "false",
     .help = "Print only warnings and errors."},
};

/* ---- start ---- */

struct app {
    struct ahg_loop *loop;
    struct cli_tunnel *tun;
    const struct ahg_config *cfg;
    bool quiet, json, announced, v6;
    const char *show_host;
    int port;
    struct ahg_timer tick;
};

static struct ahg_loop *volatile g_loop;
static volatile sig_atomic_t g_signals;

static void
on_signal(int sig)
{
    (void)sig;
    g_signals++;
    if (g_signals >= 2)
        _exit(AHG_EXIT_FAILURE);
    if (g_loop)
        ahg_loop_stop(g_loop);
}

static void
on_event(void *ud, enum cli_event ev, int status, const char *detail)
{
    struct app *a = ud;
    switch (ev) {
    case CLI_EV_ESTABLISHED:
        if (!a->announced) {
            a->announced = true;
            if (!a->quiet) {
                (void)printf("Tunnel established\nForwarding to: http://%s%s%s:%d\n",
                             a->v6 ? "[" : "", a->show_host, a->v6 ? "]" : "", a->port);
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
        const char *origin = ahg_config_origin(a->cfg, "listener_token");
        AHG_LOG_ERROR("Relay authentication failed (HTTP %d): check the listener token%s%s", status,
                      origin ? " from " : "", origin ? origin : "");
        break;
    }
    case CLI_EV_CONNECT_FAILED:
        AHG_LOG_WARN("cannot connect to the relay (%d %s); retrying", status, detail ? detail : "");
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
    time_t now = time(NULL);
    struct tm tmv;
    char ts[16] = "";
    if (localtime_r(&now, &tmv))
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

/* The local-port probe: warn when nothing listens (the tunnel stays up). */
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
                     ahg_config_str(a->cfg, "local_host"), a->port);
}

static const struct ahg_conn_ops probe_ops = {
    .on_connect = probe_connect, .on_data = probe_data, .on_close = probe_close};

static int
run_start(const struct ahg_config *cfg)
{
    struct app a;
    memset(&a, 0, sizeof(a));
    a.cfg = cfg;
    a.quiet = ahg_config_bool(cfg, "quiet");
    a.json = ahg_config_int(cfg, "log_format") == 1;
    a.port = (int)ahg_config_int(cfg, "port");
    ahg_log_setup(PROG, a.json ? AHG_LOG_FORMAT_JSON : AHG_LOG_FORMAT_TEXT,
                  a.quiet ? AHG_LOG_LVL_WARN : AHG_LOG_LVL_INFO, 2);
    const char *host = ahg_config_str(cfg, "local_host");
    if (!strcmp(host, "localhost"))
        host = "127.0.0.1";
    a.show_host = !strcmp(host, "127.0.0.1") ? "localhost" : host;
    a.v6 = strchr(host, ':') != NULL;
    struct ahg_loop_opts lo = {.client_insecure = ahg_config_bool(cfg, "relay_insecure"),
                               .client_ca_file = ahg_config_str(cfg, "relay_ca_file")};
    a.loop = ahg_loop_new(&lo);
    if (!a.loop)
        return AHG_EXIT_FAILURE;
    g_loop = a.loop;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    (void)sigemptyset(&sa.sa_mask);
    (void)sigaction(SIGINT, &sa, NULL);
    (void)sigaction(SIGTERM, &sa, NULL);
    (void)signal(SIGPIPE, SIG_IGN);

    int err = 0;
    struct ahg_connect_opts co = {.address = host, .port = a.port, .connect_timeout_ms = 3000};
    (void)ahg_conn_connect(a.loop, &co, &probe_ops, &a, &err);

    struct cli_tunnel_opts to = {
        .relay_endpoint = ahg_config_str(cfg, "relay_endpoint"),
        .insecure = ahg_config_bool(cfg, "relay_insecure"),
        .hc = ahg_config_str(cfg, "hybrid_connection"),
        .token = ahg_config_str(cfg, "listener_token"),
        .local_host = host,
        .local_port = a.port,
        .keepalive_ms = (uint64_t)ahg_config_int(cfg, "keepalive"),
        .on_event = on_event,
        .on_request = on_request,
        .ud = &a,
    };
    a.tun = cli_tunnel_new(a.loop, &to, &err);
    if (!a.tun) {
        AHG_LOG_ERROR("cannot start the tunnel: %s", ahg_strerror(err));
        g_loop = NULL;
        ahg_loop_free(a.loop);
        return AHG_EXIT_FAILURE;
    }
    ahg_timer_init(&a.tick, a.loop, tick_cb, &a);
    ahg_timer_start(&a.tick, 100);
    (void)ahg_loop_run(a.loop);

    /* Ctrl+C: stop taking streams, let in-flight ones finish within the drain deadline. */
    cli_tunnel_drain(a.tun);
    uint64_t deadline = ahg_now_ms() + (uint64_t)ahg_config_int(cfg, "drain_timeout");
    if (cli_tunnel_active(a.tun))
        AHG_LOG_INFO("shutting down: waiting for %zu stream(s)", cli_tunnel_active(a.tun));
    while (cli_tunnel_active(a.tun) && ahg_now_ms() < deadline)
        (void)ahg_loop_run_once(a.loop);
    ahg_timer_stop(&a.tick);
    cli_tunnel_free(a.tun);
    g_loop = NULL;
    ahg_loop_free(a.loop);
    AHG_LOG_INFO("tunnel closed");
    return AHG_EXIT_OK;
}

static char *
default_config_file(char *buf, size_t n)
{
    const char *x = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");
    if (x && x[0] == '/')
        (void)snprintf(buf, n, "%s/azhexgate/config.yaml", x);
    else if (home && home[0])
        (void)snprintf(buf, n, "%s/.config/azhexgate/config.yaml", home);
    else
        return NULL;
    return buf;
}

static void
usage(FILE *out)
{
    (void)fprintf(out, "Usage: " PROG " <command> [OPTIONS]\n\n"
                       "Expose a local port through an AzHexGate tunnel.\n\n"
                       "Commands:\n"
                       "  start     Start a tunnel to a local port (see " PROG " start --help)\n"
                       "  version   Print the version\n");
}

int
cli_main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return AHG_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return AHG_EXIT_OK;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        (void)printf(PROG " %s\n", AHG_VERSION);
        return AHG_EXIT_OK;
    }
    if (strcmp(cmd, "start") != 0) {
        (void)fprintf(stderr, PROG ": unknown command '%s'\n", cmd);
        usage(stderr);
        return AHG_EXIT_USAGE;
    }
    char path[1024];
    static const struct ahg_config_spec spec_tmpl = {
        .prog = PROG " start",
        .summary = "Expose a local port through the relay.",
        .usage = "--port PORT [OPTIONS]",
        .opts = start_opts,
        .nopts = sizeof(start_opts) / sizeof(start_opts[0]),
    };
    struct ahg_config_spec spec = spec_tmpl;
    spec.default_file = default_config_file(path, sizeof(path));
    struct ahg_config *cfg = NULL;
    char err[512] = "";
    int rc = ahg_config_load(&cfg, &spec, argc - 1, argv + 1, NULL, err, sizeof(err));
    if (rc != AHG_OK) {
        (void)fprintf(stderr, PROG " start: %s\n", err);
        return ahg_err_exit_code(rc);
    }
    int code = ahg_config_run_builtin(cfg, &spec, stdout);
    if (code < 0)
        code = run_start(cfg);
    ahg_config_free(cfg);
    return code;
}
