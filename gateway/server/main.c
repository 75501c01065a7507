/*
 * azhexgate-server: the all-in-one server. The emulator (Relay, ARM, managed identity, Key
 * Vault), the controller and the gateway as one process on one event loop, sharing one state
 * store (in-memory by default, or Redis) and one metrics registry. The local default of the
 * README's run command, and the App Service image's shape (gateway + controller co-hosted,
 * --no-server-emulator with real Azure).
 *
 * Wiring when the embedded emulator runs: the controller's ARM endpoint, identity endpoint and
 * namespace, and the relay endpoint of controller and gateway, point at the emulator's ports,
 * unless they were configured explicitly. Without an API key configured, one is generated and
 * written to server.api_key_out (mode 0600) for the CLI to read.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ahg/admin.h"
#include "ahg/azid.h"
#include "ahg/buf.h"
#include "ahg/config.h"
#include "ahg/crypto.h"
#include "ahg/egress.h"
#include "ahg/err.h"
#include "ahg/httpd.h"
#include "ahg/log.h"
#include "ahg/metrics.h"
#include "ahg/net.h"
#include "ahg/store.h"
#include "ctl/controller.h"
#include "emu/emulator.h"
#include "gw/gateway.h"

#define PROG "azhexgate-server"

static const struct ahg_opt_def server_opts[] = {
    AHG_OPTS_LOG("text"),
    {.name = "server.bind",
     .flag = "bind",
     .type = AHG_OPT_STRING,
     .def = "127.0.0.1",
     .metavar = "ADDR",
     .help = "numeric address of the public listener (tunnel hosts and api.<domain>)"},
    {.name = "server.port",
     .flag = "port",
     .short_flag = 'p',
     .type = AHG_OPT_INT,
     .def = "8080",
     .min = 0,
     .max = 65535,
     .help = "public port (0 = any free port)"},
    {.name = "server.domain",
     .flag = "domain",
     .type = AHG_OPT_STRING,
     .def = "localhost",
     .metavar = "DOMAIN",
     .help = "public domain: tunnels are <id>.<domain>, the management API is api.<domain>"},
    {.name = "server.cert",
     .flag = "cert",
     .type = AHG_OPT_STRING,
     .metavar = "PEM",
     .help = "TLS certificate (wildcard for *.<domain>) of the public listener; plain HTTP "
             "when unset"},
    {.name = "server.key",
     .flag = "key",
     .type = AHG_OPT_STRING,
     .metavar = "PEM",
     .help = "private key for server.cert"},
    {.name = "server.admin_port",
     .flag = "admin-port",
     .type = AHG_OPT_INT,
     .def = "8090",
     .min = -1,
     .max = 65535,
     .help = "admin port for /healthz, /readyz and /metrics (0 = any free port, -1 = none)"},
    {.name = "server.store",
     .flag = "store",
     .type = AHG_OPT_STRING,
     .def = "memory:",
     .metavar = "URL",
     .help = "state store: memory: (this process only), redis://host[:port][/db] or rediss://"},
    {.name = "server.store_password",
     .flag = "store-password",
     .type = AHG_OPT_STRING,
     .flags = AHG_OPT_SECRET,
     .help = "Redis password (overrides one in the URL)"},
    {.name = "server.emulator",
     .flag = "emulator",
     .type = AHG_OPT_BOOL,
     .def = "true",
     .help = "run the embedded emulator of the Azure services and point the other components "
             "at it"},
    {.name = "server.api_key",
     .flag = "api-key",
     .type = AHG_OPT_STRING,
     .flags = AHG_OPT_SECRET,
     .help = "the API key clients must send (default: controller.auth.* or, with the "
             "emulator, a random key written to server.api_key_out)"},
    {.name = "server.api_key_out",
     .flag = "api-key-out",
     .type = AHG_OPT_STRING,
     .metavar = "PATH",
     .help = "write the generated API key here (mode 0600) for `azhexgate start "
             "--api-key-file`"},
    {.name = "server.response_timeout",
     .flag = "response-timeout",
     .type = AHG_OPT_DURATION,
     .def = "120s",
     .min = 1000,
     .max = 86400000,
     .help = "how long the gateway waits for a local app's response head (then 504)"},
    {.name = "server.drain_timeout",
     .flag = "drain-timeout",
     .type = AHG_OPT_DURATION,
     .def = "10s",
     .min = 0,
     .max = 600000,
     .help = "how long SIGTERM/SIGINT waits for requests in flight"},
    {.name = "server.ready_file",
     .flag = "ready-file",
     .type = AHG_OPT_STRING,
     .metavar = "PATH",
     .help = "write port=..., admin_port=..., relay_port=... and ready=1 here once serving"},
};

static volatile sig_atomic_t got_signal;

static void
on_signal(int sig)
{
    (void)sig;
    if (got_signal) {
        /* a second Ctrl+C: leave at once */
        static const char msg[] = PROG ": second signal, exiting now\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof(msg) - 1);
        (void)w;
        _exit(AHG_EXIT_FAILURE);
    }
    got_signal = 1;
}

struct server {
    struct ahg_loop *loop;
    struct ahg_config *cfg;
    struct emu *emu;
    struct ahg_store *store;
    struct ahg_egress *egress;
    struct ahg_azid *azid;
    struct ahg_metrics *metrics;
    struct ahg_ctl *ctl;
    struct ahg_gw *gw;
    struct ahg_httpd *admin;
    struct ahg_timer sig_timer, drain_timer;
    bool draining, ctl_drained;
    char api_key[80];
    char relay_url[128];
    char arm_url[128];
    char identity_url[160];
    char relay_map[384];
};

static bool
admin_ready(void *ud, char *why, size_t whysz)
{
    struct server *s = ud;
    bool gw = ahg_gw_ready(s->gw), ctl = ahg_ctl_ready(s->ctl);
    if (gw && ctl)
        return true;
    (void)snprintf(why, whysz, "not ready: gateway %s, controller %s", gw ? "ready" : "not ready",
                   ctl ? "ready" : "not ready");
    return false;
}

static void
api_handler(void *ud, struct ahg_httpd_req *r, const char *peer)
{
    struct server *s = ud;
    ahg_ctl_handle(s->ctl, r, peer);
}

static void
maybe_stop(struct server *s)
{
    if (s->ctl_drained && ahg_gw_active(s->gw) == 0) {
        AHG_LOG_INFO("drained; stopping");
        ahg_loop_stop(s->loop);
    }
}

static void
ctl_drained(void *ud)
{
    struct server *s = ud;
    s->ctl_drained = true;
    maybe_stop(s);
}

static void
on_drain_timeout(struct ahg_timer *t)
{
    struct server *s = t->ud;
    AHG_LOG_WARN("drain timeout: stopping with %zu exchanges in flight", ahg_gw_active(s->gw));
    ahg_loop_stop(s->loop);
}

static void
on_sig_timer(struct ahg_timer *t)
{
    struct server *s = t->ud;
    if (got_signal && !s->draining) {
        s->draining = true;
        AHG_LOG_INFO("signal received: draining (no new requests; in-flight ones finish)");
        ahg_timer_start(&s->drain_timer, (uint64_t)ahg_config_int(s->cfg, "server.drain_timeout"));
        ahg_gw_drain(s->gw);
        ahg_ctl_drain(s->ctl, ctl_drained, s);
    } else if (s->draining) {
        maybe_stop(s);
    }
    ahg_timer_start(t, 100);
}

/* Writes content to path atomically with mode 0600. */
static int
write_private(const char *path, const char *content)
{
    char tmp[4096];
    (void)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return AHG_EIO;
    size_t len = strlen(content);
    bool ok = write(fd, content, len) == (ssize_t)len;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        (void)unlink(tmp);
        return AHG_EIO;
    }
    return AHG_OK;
}

static bool
user_set(const struct ahg_config *cfg, const char *name)
{
    return ahg_config_source(cfg, name) != AHG_SRC_DEFAULT;
}

/* Points the controller at the embedded emulator where the user left the defaults. */
static void
wire_controller(struct server *s, struct ahg_ctl_opts *co, int port)
{
    const struct ahg_config *cfg = s->cfg;
    bool tls = ahg_config_str(cfg, "server.cert") != NULL;

    if (!user_set(cfg, "controller.public.scheme"))
        co->public_scheme = tls ? "https" : "http";
    if (!user_set(cfg, "controller.public.domain"))
        co->public_domain = ahg_config_str(cfg, "server.domain");
    if (!user_set(cfg, "controller.public.port"))
        co->public_port = (port == 80 && !tls) || (port == 443 && tls) ? 0 : port;
    if (!s->emu)
        return;
    if (!user_set(cfg, "controller.relay.endpoint"))
        co->relay_endpoint = s->relay_url;
    if (!user_set(cfg, "controller.relay.host"))
        co->relay_host = emu_namespace_host(s->emu);
    if (!user_set(cfg, "controller.arm.endpoint"))
        co->arm_endpoint = s->arm_url;
    if (!user_set(cfg, "controller.arm.subscription"))
        co->subscription = emu_subscription(s->emu);
    if (!user_set(cfg, "controller.arm.resource_group"))
        co->resource_group = emu_resource_group(s->emu);
    if (!user_set(cfg, "controller.arm.namespace"))
        co->namespace_name = emu_namespace(s->emu);
    if (!user_set(cfg, "controller.identity.kind")) {
        co->identity_kind = "appservice";
        co->identity_endpoint = s->identity_url;
        co->identity_header = emu_identity_header(s->emu);
    }
}

static int
setup_api_key(struct server *s, struct ahg_ctl_opts *co)
{
    const struct ahg_config *cfg = s->cfg;
    const char *key = ahg_config_str(cfg, "server.api_key");
    const char *out = ahg_config_str(cfg, "server.api_key_out");
    bool ctl_keys = co->api_keys || co->api_keys_path || co->keyvault_url;

    if (key) {
        (void)snprintf(s->api_key, sizeof(s->api_key), "%s", key);
    } else if (!ctl_keys) {
        /* ahg-local-<32 hex>: recognisable in a config, 128 bits of randomness */
        char hex[33];
        if (ahg_rand_hex(hex, 16) != AHG_OK)
            return AHG_EIO;
        (void)snprintf(s->api_key, sizeof(s->api_key), "ahg-local-%s", hex);
    }
    if (s->api_key[0])
        co->api_keys = s->api_key;
    if (out) {
        if (!s->api_key[0]) {
            AHG_LOG_ERROR("server.api_key_out is set but the API keys come from controller.auth.*;"
                          " nothing to write");
            return AHG_ECONFIG;
        }
        char line[96];
        (void)snprintf(line, sizeof(line), "%s\n", s->api_key);
        if (write_private(out, line) != AHG_OK) {
            AHG_LOG_ERROR("cannot write the API key to %s: %s", out, strerror(errno));
            return AHG_EIO;
        }
    }
    return AHG_OK;
}

static int
write_ready(struct server *s)
{
    const char *path = ahg_config_str(s->cfg, "server.ready_file");
    if (!path)
        return AHG_OK;
    char buf[256];
    (void)snprintf(buf, sizeof(buf),
                   "port=%d\nadmin_port=%d\nrelay_port=%d\nmgmt_port=%d\nready=1\n",
                   ahg_gw_port(s->gw), s->admin ? ahg_httpd_port(s->admin) : -1,
                   s->emu ? emu_relay_port(s->emu) : -1, s->emu ? emu_mgmt_port(s->emu) : -1);
    return write_private(path, buf);
}

static int
start(struct server *s, char *err, size_t errlen)
{
    const struct ahg_config *cfg = s->cfg;
    int rc = AHG_OK;

    s->metrics = ahg_metrics_new();
    if (!s->metrics)
        return AHG_ENOMEM;
    if (ahg_config_bool(cfg, "server.emulator")) {
        s->emu = emu_new(s->loop, cfg, err, errlen);
        if (!s->emu)
            return AHG_EIO;
        (void)snprintf(s->relay_url, sizeof(s->relay_url), "ws://127.0.0.1:%d/",
                       emu_relay_port(s->emu));
        (void)snprintf(s->arm_url, sizeof(s->arm_url), "http://127.0.0.1:%d",
                       emu_mgmt_port(s->emu));
        (void)snprintf(s->identity_url, sizeof(s->identity_url), "http://127.0.0.1:%d/msi/token",
                       emu_identity_port(s->emu));
    }

    s->store = ahg_store_new_url(s->loop, ahg_config_str(cfg, "server.store"),
                                 ahg_config_str(cfg, "server.store_password"), false, &rc);
    if (!s->store) {
        (void)snprintf(err, errlen,
                       "server.store: %s (memory:, redis://HOST[:PORT][/DB] or "
                       "rediss://; HOST numeric or localhost)",
                       ahg_strerror(rc));
        return AHG_ECONFIG;
    }

    /* The gateway's relay credential: an Entra ID token from the (emulated) managed identity. */
    if (s->emu) {
        struct ahg_egress_opts eo = {0};
        s->egress = ahg_egress_new(s->loop, &eo);
        struct ahg_azid_opts ao = {
            .kind = AHG_AZID_APPSERVICE,
            .endpoint = s->identity_url,
            .identity_header = emu_identity_header(s->emu),
        };
        s->azid = s->egress ? ahg_azid_new(s->loop, s->egress, &ao, &rc) : NULL;
        if (!s->azid) {
            (void)snprintf(err, errlen, "managed identity client: %s", ahg_strerror(rc));
            return AHG_EIO;
        }
    }

    int port = (int)ahg_config_int(cfg, "server.port");
    struct ahg_gw_opts go = {
        .domain = ahg_config_str(cfg, "server.domain"),
        .iface = ahg_config_str(cfg, "server.bind"),
        .port = port,
        .cert_file = ahg_config_str(cfg, "server.cert"),
        .key_file = ahg_config_str(cfg, "server.key"),
        .admin_port = -1,
        .relay_endpoint = s->emu ? s->relay_url : NULL,
        .azid = s->azid,
        .metrics_registry = s->metrics,
        .response_timeout_ms = (uint64_t)ahg_config_int(cfg, "server.response_timeout"),
        .access_log = true,
    };
    s->gw = ahg_gw_new(s->loop, s->store, &go, &rc);
    if (!s->gw) {
        (void)snprintf(err, errlen, "gateway on %s:%d: %s", go.iface, port,
                       rc == AHG_EIO ? "address in use or not available" : ahg_strerror(rc));
        return rc;
    }

    struct ahg_ctl_opts co;
    rc = ahg_ctl_opts_from_config(&co, cfg, err, errlen);
    if (rc != AHG_OK)
        return rc;
    wire_controller(s, &co, ahg_gw_port(s->gw)); /* the bound port, also with --port 0 */
    rc = setup_api_key(s, &co);
    co.metrics = s->metrics;
    if (rc == AHG_OK) {
        s->ctl = ahg_ctl_new(s->loop, s->store, &co, &rc);
        if (!s->ctl)
            (void)snprintf(err, errlen, "controller: %s", ahg_strerror(rc));
    }
    ahg_ctl_opts_clear(&co);
    if (!s->ctl)
        return rc == AHG_OK ? AHG_EIO : rc;

    ahg_gw_set_api_handler(s->gw, api_handler, s);

    int admin_port = (int)ahg_config_int(cfg, "server.admin_port");
    if (admin_port >= 0) {
        struct ahg_admin_opts ao = {
            .name = "server-admin",
            .iface = ahg_config_str(cfg, "server.bind"),
            .port = admin_port,
            .ready = admin_ready,
            .ud = s,
            .metrics = s->metrics,
        };
        s->admin = ahg_admin_new(s->loop, &ao, &rc);
        if (!s->admin) {
            (void)snprintf(err, errlen, "admin listener on port %d: %s", admin_port,
                           rc == AHG_EIO ? "address in use or not available" : ahg_strerror(rc));
            return rc;
        }
    }
    return write_ready(s) == AHG_OK ? AHG_OK : AHG_EIO;
}

static void
banner(const struct server *s)
{
    const char *domain = ahg_config_str(s->cfg, "server.domain");
    bool tls = ahg_config_str(s->cfg, "server.cert") != NULL;
    int port = ahg_gw_port(s->gw);
    const char *out = ahg_config_str(s->cfg, "server.api_key_out");
    AHG_LOG_INFO("AzHexGate server: tunnels at %s://<id>.%s:%d, management API at "
                 "%s://api.%s:%d/api/tunnels%s%s%s",
                 tls ? "https" : "http", domain, port, tls ? "https" : "http", domain, port,
                 s->emu ? ", Azure emulated locally" : "", out ? ", API key in " : "",
                 out ? out : "");
}

static void
teardown(struct server *s)
{
    /* Order: components that hold store/azid callbacks first, then the loop (which closes
     * the connections still open), then what the loop's connections pointed into. */
    if (s->ctl)
        ahg_ctl_free(s->ctl);
    if (s->azid)
        ahg_azid_free(s->azid);
    if (s->egress)
        ahg_egress_free(s->egress);
    if (s->store)
        ahg_store_free(s->store);
    ahg_loop_free(s->loop);
    ahg_gw_free(s->gw);
    emu_free(s->emu);
    if (s->metrics)
        ahg_metrics_free(s->metrics);
}

int
main(int argc, char **argv)
{
    size_t ns = sizeof(server_opts) / sizeof(server_opts[0]);
    size_t n = ns + ahg_ctl_nopts + emu_nopts;
    struct ahg_opt_def *opts = calloc(n, sizeof(*opts));
    if (!opts)
        return AHG_EXIT_FAILURE;
    memcpy(opts, server_opts, sizeof(server_opts));
    memcpy(opts + ns, ahg_ctl_opts_table, ahg_ctl_nopts * sizeof(*opts));
    memcpy(opts + ns + ahg_ctl_nopts, emu_opts, emu_nopts * sizeof(*opts));
    struct ahg_config_spec spec = {
        .prog = PROG,
        .summary = "AzHexGate all-in-one server: gateway, controller and (by default) a local "
                   "emulator of the Azure services, in one process",
        .opts = opts,
        .nopts = n,
    };
    struct server s;
    memset(&s, 0, sizeof(s));
    char err[512] = "";
    int code = ahg_config_main(&s.cfg, &spec, argc, argv);
    if (code >= 0) {
        free(opts);
        return code;
    }
    ahg_config_log_setup(s.cfg, "server", AHG_LOG_FORMAT_TEXT);
    int rc;

    s.loop = ahg_loop_new(NULL);
    if (!s.loop) {
        AHG_LOG_ERROR("cannot create the event loop");
        ahg_config_free(s.cfg);
        free(opts);
        return AHG_EXIT_FAILURE;
    }
    rc = start(&s, err, sizeof(err));
    if (rc != AHG_OK) {
        if (err[0])
            (void)fprintf(stderr, PROG ": %s\n", err);
        teardown(&s);
        ahg_config_free(s.cfg);
        free(opts);
        return rc == AHG_ECONFIG ? AHG_EXIT_CONFIG : AHG_EXIT_FAILURE;
    }
    banner(&s);

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    (void)sigaction(SIGINT, &sa, NULL);
    (void)sigaction(SIGTERM, &sa, NULL);
    (void)signal(SIGPIPE, SIG_IGN);
    ahg_timer_init(&s.sig_timer, s.loop, on_sig_timer, &s);
    ahg_timer_init(&s.drain_timer, s.loop, on_drain_timeout, &s);
    ahg_timer_start(&s.sig_timer, 100);

    rc = ahg_loop_run(s.loop);
    ahg_timer_stop(&s.sig_timer);
    ahg_timer_stop(&s.drain_timer);
    teardown(&s);
    ahg_config_free(s.cfg);
    free(opts);
    return rc == AHG_OK ? AHG_EXIT_OK : AHG_EXIT_FAILURE;
}
