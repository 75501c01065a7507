/*
 * azhexgate-gateway: the public HTTP(S)/WebSocket entry of AzHexGate. Options in one table
 * (flags > AZHEXGATE_* env > YAML > defaults); SIGTERM/SIGINT drain, SIGHUP reloads the
 * certificate. Everything else is in the ahg_gateway library (gw/gateway.h).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ahg/azid.h"
#include "ahg/config.h"
#include "ahg/egress.h"
#include "ahg/err.h"
#include "ahg/log.h"
#include "ahg/net.h"
#include "ahg/store.h"
#include "gw/gateway.h"

#define PROG "azhexgate-gateway"

static const struct ahg_opt_def opts[] = {
    {.name = "domain",
     .type = AHG_OPT_STRING,
     .metavar = "DOMAIN",
     .help = "public domain: tunnels are <id>.DOMAIN, the management API api.DOMAIN",
     .flags = AHG_OPT_REQUIRED},
    {.name = "listen.address",
     .type = AHG_OPT_STRING,
     .def = "0.0.0.0",
     .help = "numeric address of the public listener"},
    {.name = "listen.port",
     .short_flag = 'p',
     .type = AHG_OPT_INT,
     .def = "8080",
     .min = 0,
     .max = 65535,
     .help = "port of the public listener (0 = any free port)"},
    {.name = "tls.cert",
     .type = AHG_OPT_STRING,
     .metavar = "FILE",
     .help = "PEM certificate (wildcard *.DOMAIN) for HTTPS; reloaded on SIGHUP"},
    {.name = "tls.key",
     .type = AHG_OPT_STRING,
     .metavar = "FILE",
     .help = "PEM private key of tls.cert"},
    {.name = "admin.address",
     .type = AHG_OPT_STRING,
     .def = "127.0.0.1",
     .help = "numeric address of the admin listener (/healthz /readyz /metrics)"},
    {.name = "admin.port",
     .type = AHG_OPT_INT,
     .def = "9091",
     .min = -1,
     .max = 65535,
     .help = "port of the admin listener (-1 = none)"},
    {.name = "store.url",
     .type = AHG_OPT_STRING,
     .def = "redis://127.0.0.1:6379",
     .help = "state store: redis://[user@]HOST[:port][/db], rediss://... (TLS) or memory:"},
    {.name = "store.password",
     .type = AHG_OPT_STRING,
     .flags = AHG_OPT_SECRET,
     .help = "Redis password (AUTH); prefer --store-password-file"},
    {.name = "store.tls_insecure",
     .type = AHG_OPT_BOOL,
     .def = "false",
     .help = "skip certificate checks on rediss:// (tests only)"},
    {.name = "api.upstream",
     .type = AHG_OPT_STRING,
     .metavar = "ADDRESS:PORT",
     .help = "controller address that api.DOMAIN is proxied to"},
    {.name = "api.allow_cidr",
     .type = AHG_OPT_LIST,
     .metavar = "CIDR",
     .help = "addresses allowed to reach api.DOMAIN (repeatable; empty = everyone)"},
    {.name = "relay.endpoint",
     .type = AHG_OPT_STRING,
     .metavar = "URL",
     .help = "dial every relay here (ws:// or wss:// with a numeric address, e.g. the emulator)"},
    {.name = "relay.map",
     .type = AHG_OPT_LIST,
     .metavar = "HOST=ADDRESS:PORT",
     .help = "plain-ws address of a relay namespace host (repeatable)"},
    {.name = "relay.tls_host",
     .type = AHG_OPT_STRING,
     .help = "TLS server name for relay.endpoint (default: the route's relay host)"},
    {.name = "relay.insecure",
     .type = AHG_OPT_BOOL,
     .def = "false",
     .help = "skip relay certificate checks (tests only)"},
    {.name = "relay.auth",
     .type = AHG_OPT_ENUM,
     .def = "sas",
     .choices = "sas|entra|none",
     .help = "sender credential: a Send SAS from relay.sas_key, an Entra ID token, or none"},
    {.name = "relay.sas_key_name",
     .type = AHG_OPT_STRING,
     .def = "RootManageSharedAccessKey",
     .help = "authorization rule name of relay.sas_key"},
    {.name = "relay.sas_key",
     .type = AHG_OPT_STRING,
     .flags = AHG_OPT_SECRET,
     .help = "namespace key with Send rights; prefer --relay-sas-key-file (a mounted secret)"},
    {.name = "identity.endpoint",
     .type = AHG_OPT_STRING,
     .metavar = "URL",
     .help = "managed identity endpoint for relay.auth=entra (default: from the environment)"},
    {.name = "identity.client_id",
     .type = AHG_OPT_STRING,
     .help = "user-assigned identity client id"},
    {.name = "response_timeout",
     .type = AHG_OPT_DURATION,
     .def = "120s",
     .min = 1000,
     .max = 86400000,
     .help = "time allowed for the local service's response head (-> 504)"},
    {.name = "pool.max_idle",
     .type = AHG_OPT_INT,
     .def = "128",
     .min = 0,
     .max = 1024,
     .help = "idle relay streams kept per tunnel"},
    {.name = "pool.idle_timeout",
     .type = AHG_OPT_DURATION,
     .def = "60s",
     .min = 1000,
     .max = 3600000,
     .help = "an idle relay stream is closed after this"},
    {.name = "pool.prewarm",
     .type = AHG_OPT_BOOL,
     .def = "true",
     .help = "pre-dial relay streams for tunnels active in the last pool.prewarm_window"},
    {.name = "pool.prewarm_window",
     .type = AHG_OPT_DURATION,
     .def = "60s",
     .min = 1000,
     .max = 3600000,
     .help = "how recent activity must be to keep streams warm"},
    {.name = "cache.max",
     .type = AHG_OPT_INT,
     .def = "100000",
     .min = 16,
     .max = 10000000,
     .help = "route cache entries"},
    {.name = "cache.ttl",
     .type = AHG_OPT_DURATION,
     .def = "30s",
     .min = 100,
     .max = 3600000,
     .help = "route cache lifetime of a found route"},
    {.name = "cache.negative_ttl",
     .type = AHG_OPT_DURATION,
     .def = "2s",
     .min = 100,
     .max = 3600000,
     .help = "route cache lifetime of an unknown subdomain"},
    {.name = "header_timeout",
     .type = AHG_OPT_DURATION,
     .def = "10s",
     .min = 100,
     .max = 600000,
     .help = "a request head must arrive within this (-> 408)"},
    {.name = "idle_timeout",
     .type = AHG_OPT_DURATION,
     .def = "75s",
     .min = 100,
     .max = 3600000,
     .help = "keep-alive idle time of a public connection"},
    {.name = "drain_timeout",
     .type = AHG_OPT_DURATION,
     .def = "30s",
     .min = 0,
     .max = 3600000,
     .help = "on SIGTERM, how long in-flight requests may finish"},
    {.name = "access_log",
     .type = AHG_OPT_BOOL,
     .def = "true",
     .help = "one JSON line per request on stderr"},
    AHG_OPTS_LOG("json"),
};

static struct ahg_loop *the_loop;
static volatile sig_atomic_t got_term, got_hup;

static void
on_signal(int sig)
{
    if (sig == SIGHUP)
        got_hup = 1;
    else
        got_term = 1;
    if (the_loop)
        ahg_loop_stop(the_loop);
}

/* Joins a LIST option into one comma-separated string (owned by the caller). */
static char *
join_list(const struct ahg_config *cfg, const char *name)
{
    const char *const *items = NULL;
    size_t n = ahg_config_list(cfg, name, &items);
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(items[i]) + 1;
    char *s = calloc(1, len);
    if (!s)
        return NULL;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(items[i]);
        if (i)
            s[off++] = ',';
        memcpy(s + off, items[i], l);
        off += l;
    }
    s[off] = '\0';
    return s;
}

int
main(int argc, char **argv)
{
    struct ahg_config_spec spec = {
        .prog = PROG,
        .summary = "AzHexGate gateway: public HTTP(S)/WebSocket entry routing <id>.DOMAIN to "
                   "tunnels over Azure Relay",
        .opts = opts,
        .nopts = sizeof(opts) / sizeof(opts[0]),
    };
    struct ahg_config *cfg = NULL;
    int code = ahg_config_main(&cfg, &spec, argc, argv);
    if (code >= 0)
        return code;
    ahg_config_log_setup(cfg, "gateway", AHG_LOG_FORMAT_JSON);

    const char *auth = ahg_config_str(cfg, "relay.auth");
    const char *key = ahg_config_str(cfg, "relay.sas_key");
    if (strcmp(auth, "sas") == 0 && (!key || !*key)) {
        (void)fprintf(stderr,
                      PROG ": relay.auth=sas needs a key: set --relay-sas-key-file "
                           "(or AZHEXGATE_RELAY_SAS_KEY_FILE), or choose --relay-auth entra\n");
        ahg_config_free(cfg);
        return AHG_EXIT_CONFIG;
    }
    if ((ahg_config_str(cfg, "tls.cert") != NULL) != (ahg_config_str(cfg, "tls.key") != NULL)) {
        (void)fprintf(stderr, PROG ": tls.cert and tls.key go together\n");
        ahg_config_free(cfg);
        return AHG_EXIT_CONFIG;
    }

    the_loop = ahg_loop_new(NULL);
    if (!the_loop) {
        AHG_LOG_ERROR("cannot create the event loop");
        ahg_config_free(cfg);
        return AHG_EXIT_FAILURE;
    }
    int e = 0;
    struct ahg_store *store = ahg_store_new_url(the_loop, ahg_config_str(cfg, "store.url"),
                                                ahg_config_str(cfg, "store.password"),
                                                ahg_config_bool(cfg, "store.tls_insecure"), &e);
    if (!store) {
        (void)fprintf(stderr,
                      PROG ": store.url: expected redis://HOST[:PORT][/DB], "
                           "rediss://... or memory: (%s)\n",
                      ahg_strerror(e));
        ahg_loop_free(the_loop);
        ahg_config_free(cfg);
        return AHG_EXIT_CONFIG;
    }
    struct ahg_egress *egress = NULL;
    struct ahg_azid *azid = NULL;
    if (strcmp(auth, "entra") == 0) {
        egress = ahg_egress_new(the_loop, NULL);
        struct ahg_azid_opts ao = {.endpoint = ahg_config_str(cfg, "identity.endpoint"),
                                   .client_id = ahg_config_str(cfg, "identity.client_id")};
        azid = egress ? ahg_azid_new(the_loop, egress, &ao, &e) : NULL;
        if (!azid) {
            (void)fprintf(stderr, PROG ": relay.auth=entra: no managed identity found; set "
                                       "identity.endpoint or IDENTITY_ENDPOINT\n");
            ahg_store_free(store);
            ahg_egress_free(egress);
            ahg_loop_free(the_loop);
            ahg_config_free(cfg);
            return AHG_EXIT_CONFIG;
        }
    }
    char *allow = join_list(cfg, "api.allow_cidr");
    char *map = join_list(cfg, "relay.map");
    struct ahg_gw_opts go = {
        .domain = ahg_config_str(cfg, "domain"),
        .iface = ahg_config_str(cfg, "listen.address"),
        .port = (int)ahg_config_int(cfg, "listen.port"),
        .cert_file = ahg_config_str(cfg, "tls.cert"),
        .key_file = ahg_config_str(cfg, "tls.key"),
        .header_timeout_ms = (uint64_t)ahg_config_int(cfg, "header_timeout"),
        .idle_timeout_ms = (uint64_t)ahg_config_int(cfg, "idle_timeout"),
        .admin_iface = ahg_config_str(cfg, "admin.address"),
        .admin_port = (int)ahg_config_int(cfg, "admin.port"),
        .api_upstream = ahg_config_str(cfg, "api.upstream"),
        .api_allow_cidr = allow,
        .relay_endpoint = ahg_config_str(cfg, "relay.endpoint"),
        .relay_map = map,
        .relay_tls_host = ahg_config_str(cfg, "relay.tls_host"),
        .relay_insecure = ahg_config_bool(cfg, "relay.insecure"),
        .sas_key_name = strcmp(auth, "sas") == 0 ? ahg_config_str(cfg, "relay.sas_key_name") : NULL,
        .sas_key = strcmp(auth, "sas") == 0 ? key : NULL,
        .azid = azid,
        .response_timeout_ms = (uint64_t)ahg_config_int(cfg, "response_timeout"),
        .pool_max_idle = (unsigned)ahg_config_int(cfg, "pool.max_idle"),
        .pool_idle_timeout_ms = (uint64_t)ahg_config_int(cfg, "pool.idle_timeout"),
        .prewarm_window_ms = (uint64_t)ahg_config_int(cfg, "pool.prewarm_window"),
        .prewarm_off = !ahg_config_bool(cfg, "pool.prewarm"),
        .cache_max = (size_t)ahg_config_int(cfg, "cache.max"),
        .cache_ttl_ms = (uint64_t)ahg_config_int(cfg, "cache.ttl"),
        .cache_neg_ttl_ms = (uint64_t)ahg_config_int(cfg, "cache.negative_ttl"),
        .access_log = ahg_config_bool(cfg, "access_log"),
    };
    struct ahg_gw *gw = ahg_gw_new(the_loop, store, &go, &e);
    free(allow);
    free(map);
    if (!gw) {
        ahg_store_free(store);
        ahg_azid_free(azid);
        ahg_egress_free(egress);
        ahg_loop_free(the_loop);
        ahg_config_free(cfg);
        return e == AHG_EINVAL ? AHG_EXIT_CONFIG : AHG_EXIT_FAILURE;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);

    for (;;) {
        ahg_loop_run(the_loop);
        if (got_hup) {
            got_hup = 0;
            if (go.cert_file)
                (void)ahg_gw_reload_certs(gw);
            else
                AHG_LOG_INFO("SIGHUP: no certificate to reload");
        }
        if (got_term)
            break;
    }
    ahg_gw_drain(gw);
    uint64_t deadline = ahg_now_ms() + (uint64_t)ahg_config_int(cfg, "drain_timeout");
    while (ahg_gw_active(gw) > 0 && ahg_now_ms() < deadline)
        ahg_loop_run_once(the_loop);
    /* let the last responses leave the socket buffers before the connections are closed */
    uint64_t linger = ahg_now_ms() + 300;
    while (ahg_now_ms() < linger)
        ahg_loop_run_once(the_loop);
    AHG_LOG_INFO("gateway stopping (%zu exchanges cut)", ahg_gw_active(gw));
    /* the clients that live on the loop first, then the loop (closing every connection), then
     * the gateway's memory */
    ahg_store_free(store);
    ahg_azid_free(azid);
    ahg_egress_free(egress);
    ahg_loop_free(the_loop);
    ahg_gw_free(gw);
    ahg_config_free(cfg);
    return AHG_EXIT_OK;
}
