/*
 * The emulator component: option table, listeners, request routing, admin endpoints.
 */
#include "emu_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ahg/crypto.h"
#include "ahg/err.h"
#include "ahg/log.h"

#define KB 1024LL

const struct ahg_opt_def emu_opts[] = {
    {.name = "emulator.bind",
     .type = AHG_OPT_STRING,
     .def = "127.0.0.1",
     .metavar = "ADDR",
     .help = "numeric address every emulator listener binds to"},
    {.name = "emulator.namespace",
     .type = AHG_OPT_STRING,
     .def = "ahg-local",
     .metavar = "NAME",
     .help = "name of the emulated Relay namespace"},
    {.name = "emulator.namespace_host",
     .type = AHG_OPT_STRING,
     .metavar = "FQDN",
     .help = "namespace host name used in token audiences (default "
             "<namespace>.servicebus.windows.net)"},
    {.name = "emulator.subscription",
     .type = AHG_OPT_STRING,
     .def = "00000000-0000-0000-0000-000000000000",
     .help = "emulated subscription id"},
    {.name = "emulator.resource_group",
     .type = AHG_OPT_STRING,
     .def = "azhexgate",
     .help = "emulated resource group"},
    {.name = "emulator.location",
     .type = AHG_OPT_STRING,
     .def = "westeurope",
     .help = "emulated region"},
    {.name = "emulator.hybrid_connections",
     .type = AHG_OPT_LIST,
     .metavar = "NAME[:noauth]",
     .help = "hybrid connections created at start (':noauth' = requiresClientAuthorization false)"},
    {.name = "emulator.root_key",
     .type = AHG_OPT_STRING,
     .flags = AHG_OPT_SECRET,
     .metavar = "KEY",
     .help = "primary key of RootManageSharedAccessKey (default: random)"},
    {.name = "emulator.relay.port",
     .type = AHG_OPT_INT,
     .def = "9911",
     .min = 0,
     .max = 65535,
     .metavar = "PORT",
     .help = "relay data plane port (WebSocket and HTTP mode; 0 = any)"},
    {.name = "emulator.relay.cert",
     .type = AHG_OPT_STRING,
     .metavar = "PEM",
     .help = "certificate for wss:// and https:// on the relay port"},
    {.name = "emulator.relay.key",
     .type = AHG_OPT_STRING,
     .metavar = "PEM",
     .help = "private key for emulator.relay.cert"},
    {.name = "emulator.relay.public_url",
     .type = AHG_OPT_STRING,
     .metavar = "URL",
     .help = "base of rendezvous addresses (default ws[s]://<bind>:<relay port>)"},
    {.name = "emulator.mgmt.port",
     .type = AHG_OPT_INT,
     .def = "9912",
     .min = 0,
     .max = 65535,
     .metavar = "PORT",
     .help = "ARM, Key Vault and identity port (0 = any)"},
    {.name = "emulator.mgmt.cert",
     .type = AHG_OPT_STRING,
     .metavar = "PEM",
     .help = "certificate for https:// on the management port (Azure SDKs require https)"},
    {.name = "emulator.mgmt.key",
     .type = AHG_OPT_STRING,
     .metavar = "PEM",
     .help = "private key for emulator.mgmt.cert"},
    {.name = "emulator.identity.port",
     .type = AHG_OPT_INT,
     .def = "9913",
     .min = 0,
     .max = 65535,
     .metavar = "PORT",
     .help = "plain-HTTP managed-identity endpoint port (0 = any)"},
    {.name = "emulator.identity.header",
     .type = AHG_OPT_STRING,
     .flags = AHG_OPT_SECRET,
     .help = "X-IDENTITY-HEADER secret of the App Service form (default: random)"},
    {.name = "emulator.identity.token_lifetime",
     .type = AHG_OPT_DURATION,
     .def = "1h",
     .min = 60000,
     .max = 86400000LL,
     .help = "lifetime of issued access tokens"},
    {.name = "emulator.identity.relay_role",
     .type = AHG_OPT_ENUM,
     .def = "owner",
     .choices = "owner|listener|sender",
     .help = "Azure Relay role of the emulated identity"},
    {.name = "emulator.identity.jwt_secret",
     .type = AHG_OPT_STRING,
     .flags = AHG_OPT_SECRET,
     .help = "secret the emulator signs its JWTs with (HMAC-SHA256 key = SHA-256 of this text; "
             "default: random)"},
    {.name = "emulator.admin.port",
     .type = AHG_OPT_INT,
     .def = "9914",
     .min = 0,
     .max = 65535,
     .metavar = "PORT",
     .help = "admin port: /healthz, /readyz, /metrics (0 = any)"},
    {.name = "emulator.response_timeout",
     .type = AHG_OPT_DURATION,
     .def = "60s",
     .min = 100,
     .max = 3600000LL,
     .help = "HTTP mode: listener response deadline before 504"},
    {.name = "emulator.rendezvous_timeout",
     .type = AHG_OPT_DURATION,
     .def = "30s",
     .min = 100,
     .max = 600000LL,
     .help = "how long a rendezvous address stays valid"},
    {.name = "emulator.token_grace",
     .type = AHG_OPT_DURATION,
     .def = "5m",
     .min = 0,
     .max = 3600000LL,
     .help = "grace after a listener token expires before close 1008"},
    {.name = "emulator.max_listeners",
     .type = AHG_OPT_INT,
     .def = "25",
     .min = 1,
     .max = 10000,
     .help = "concurrent listeners per hybrid connection"},
    {.name = "emulator.latency.profile",
     .type = AHG_OPT_ENUM,
     .def = "off",
     .choices = "off|live",
     .help = "latency model: off, or live (approximates the real service)"},
    {.name = "emulator.latency.lane",
     .type = AHG_OPT_DURATION,
     .def = "0",
     .min = 0,
     .max = 60000,
     .help = "one-way delay added on each side (overrides the profile)"},
    {.name = "emulator.latency.match",
     .type = AHG_OPT_DURATION,
     .def = "0",
     .min = 0,
     .max = 60000,
     .help = "match-making delay before a rendezvous completes"},
    {.name = "emulator.latency.sas",
     .type = AHG_OPT_DURATION,
     .def = "0",
     .min = 0,
     .max = 60000,
     .help = "SAS token validation delay (overrides the profile)"},
    {.name = "emulator.latency.jwt",
     .type = AHG_OPT_DURATION,
     .def = "0",
     .min = 0,
     .max = 60000,
     .help = "Entra ID (JWT) token validation delay (overrides the profile)"},
    {.name = "emulator.latency.slow_fraction",
     .type = AHG_OPT_INT,
     .def = "0",
     .min = 0,
     .max = 1000,
     .help = "per mille of rendezvous held for latency.slow"},
    {.name = "emulator.latency.slow",
     .type = AHG_OPT_DURATION,
     .def = "0",
     .min = 0,
     .max = 600000,
     .help = "hold of a slow rendezvous"},
    {.name = "emulator.latency.arm",
     .type = AHG_OPT_DURATION,
     .def = "0",
     .min = 0,
     .max = 600000,
     .help = "delay added to every ARM call"},
    {.name = "emulator.faults.arm",
     .type = AHG_OPT_STRING,
     .metavar = "METHOD:STATUS:COUNT",
     .help = "answer the next COUNT ARM calls of METHOD ('*' = any) with STATUS"},
    {.name = "emulator.keyvault.secrets",
     .type = AHG_OPT_LIST,
     .flags = 0,
     .metavar = "NAME=FILE",
     .help = "Key Vault secrets loaded at start from files (one trailing newline is dropped)"},
    {.name = "emulator.ready_file",
     .type = AHG_OPT_STRING,
     .metavar = "PATH",
     .help = "write the bound ports here once listening (for scripts and tests)"},
    {.name = "emulator.state_file",
     .type = AHG_OPT_STRING,
     .metavar = "PATH",
     .help = "keep the namespace (hybrid connections, authorization rules and their keys) in "
             "this file, rewritten after every ARM change and loaded at start, so a restart "
             "loses nothing, as on Azure (default: memory only)"},
};
const size_t emu_nopts = sizeof(emu_opts) / sizeof(emu_opts[0]);

/* ---- admin ---- */

static void
admin_request(struct ahg_httpd_req *r)
{
    struct emu *e = ahg_httpd_ud(ahg_httpd_req_server(r));
    const char *path = ahg_httpd_req_path(r);
    if (!strcmp(path, "/healthz") || !strcmp(path, "/readyz")) {
        ahg_httpd_respond(r, 200, "text/plain", "ok\n", 3, NULL);
        return;
    }
    if (!strcmp(path, "/metrics")) {
        char body[4096];
        int n = snprintf(
            body, sizeof(body),
            "# TYPE ahg_emulator_listeners gauge\nahg_emulator_listeners %llu\n"
            "# TYPE ahg_emulator_listen_total counter\nahg_emulator_listen_total %llu\n"
            "# TYPE ahg_emulator_connects_total counter\nahg_emulator_connects_total %llu\n"
            "# TYPE ahg_emulator_rendezvous_total counter\nahg_emulator_rendezvous_total %llu\n"
            "# TYPE ahg_emulator_http_requests_total counter\n"
            "ahg_emulator_http_requests_total %llu\n"
            "# TYPE ahg_emulator_http_timeouts_total counter\n"
            "ahg_emulator_http_timeouts_total %llu\n"
            "# TYPE ahg_emulator_auth_failures_total counter\n"
            "ahg_emulator_auth_failures_total %llu\n"
            "# TYPE ahg_emulator_arm_calls_total counter\nahg_emulator_arm_calls_total %llu\n"
            "# TYPE ahg_emulator_tokens_issued_total counter\n"
            "ahg_emulator_tokens_issued_total %llu\n"
            "# TYPE ahg_emulator_spliced_bytes_total counter\n"
            "ahg_emulator_spliced_bytes_total %llu\n"
            "# TYPE ahg_emulator_hybrid_connections gauge\nahg_emulator_hybrid_connections %zu\n"
            "# TYPE ahg_emulator_connections gauge\nahg_emulator_connections %zu\n",
            (unsigned long long)e->m_listeners, (unsigned long long)e->m_listen_total,
            (unsigned long long)e->m_connects, (unsigned long long)e->m_rendezvous,
            (unsigned long long)e->m_http_requests, (unsigned long long)e->m_http_504,
            (unsigned long long)e->m_auth_failures, (unsigned long long)e->m_arm_calls,
            (unsigned long long)e->m_tokens_issued, (unsigned long long)e->m_bytes_spliced,
            e->ns.nhcs, ahg_loop_conn_count(e->loop));
        ahg_httpd_respond(r, 200, "text/plain; version=0.0.4", body,
                          n > 0 && (size_t)n < sizeof(body) ? (size_t)n : 0, NULL);
        return;
    }
    ahg_httpd_respond_error(r, 404, "NotFound", "no such admin endpoint", false);
}

/* ---- management port: ARM, Key Vault, identity ---- */

static void
mgmt_request(struct ahg_httpd_req *r)
{
    struct emu *e = ahg_httpd_ud(ahg_httpd_req_server(r));
    if (emu_identity_handle(e, r) || emu_kv_handle(e, r) || emu_arm_handle(e, r))
        return;
    ahg_httpd_respond_error(r, 404, "NotFound", "no such management endpoint", true);
}

static void
identity_request(struct ahg_httpd_req *r)
{
    struct emu *e = ahg_httpd_ud(ahg_httpd_req_server(r));
    if (emu_identity_handle(e, r))
        return;
    ahg_httpd_respond_error(r, 404, "NotFound", "no such identity endpoint", true);
}

static void
relay_request(struct ahg_httpd_req *r)
{
    struct emu *e = ahg_httpd_ud(ahg_httpd_req_server(r));
    emu_relay_handle(e, r);
}

/* ---- setup ---- */

static struct ahg_httpd *
listen_on(struct emu *e, const char *name, const char *port_opt, const char *cert_opt,
          const char *key_opt, void (*fn)(struct ahg_httpd_req *r), char *err, size_t errlen)
{
    const char *cert = cert_opt ? ahg_config_str(e->cfg, cert_opt) : NULL;
    const char *key = key_opt ? ahg_config_str(e->cfg, key_opt) : NULL;
    if ((cert && !key) || (key && !cert)) {
        (void)snprintf(err, errlen, "%s and %s must be given together", cert_opt, key_opt);
        return NULL;
    }
    struct ahg_httpd_opts o = {
        .name = name,
        .iface = ahg_config_str(e->cfg, "emulator.bind"),
        .port = (int)ahg_config_int(e->cfg, port_opt),
        .cert_file = cert,
        .key_file = key,
        .idle_timeout_ms = 600000, /* listener control channels idle for minutes */
        .on_request = fn,
        .ud = e,
    };
    int rc = 0;
    struct ahg_httpd *s = ahg_httpd_new(e->loop, &o, &rc);
    if (!s)
        (void)snprintf(err, errlen, "cannot listen on %s:%d for %s (%s)", o.iface, o.port, name,
                       rc == AHG_EIO ? "address in use or not available" : ahg_strerror(rc));
    return s;
}

static int
parse_fault(struct emu *e, const char *spec, char *err, size_t errlen)
{
    if (!spec)
        return AHG_OK;
    /* METHOD:STATUS:COUNT */
    const char *c1 = strchr(spec, ':');
    const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    char *end1 = NULL, *end2 = NULL;
    long st = c2 ? strtol(c1 + 1, &end1, 10) : 0;
    unsigned long cnt = c2 ? strtoul(c2 + 1, &end2, 10) : 0;
    size_t ml = c1 ? (size_t)(c1 - spec) : 0;
    if (!c2 || ml == 0 || ml >= sizeof(e->fault.method) || end1 != c2 || !end2 || *end2 ||
        c2[1] == '\0' || st < 100 || st > 599 || cnt > 1000000) {
        (void)snprintf(err, errlen, "emulator.faults.arm: expected METHOD:STATUS:COUNT, got '%s'",
                       spec);
        return AHG_ECONFIG;
    }
    memcpy(e->fault.method, spec, ml);
    e->fault.method[ml] = '\0';
    e->fault.status = (int)st;
    e->fault.remaining = (unsigned)cnt;
    return AHG_OK;
}

struct emu *
emu_new(struct ahg_loop *loop, const struct ahg_config *cfg, char *err, size_t errlen)
{
    struct emu *e = calloc(1, sizeof(*e));
    if (!e) {
        (void)snprintf(err, errlen, "out of memory");
        return NULL;
    }
    e->loop = loop;
    e->cfg = cfg;
    e->response_timeout_ms = (uint64_t)ahg_config_int(cfg, "emulator.response_timeout");
    e->rendezvous_timeout_ms = (uint64_t)ahg_config_int(cfg, "emulator.rendezvous_timeout");
    e->token_grace_s = (uint64_t)ahg_config_int(cfg, "emulator.token_grace") / 1000u;
    e->max_listeners = (unsigned)ahg_config_int(cfg, "emulator.max_listeners");
    e->token_lifetime_s = (uint64_t)ahg_config_int(cfg, "emulator.identity.token_lifetime") / 1000u;

    if (parse_fault(e, ahg_config_str(cfg, "emulator.faults.arm"), err, errlen) != AHG_OK ||
        emu_state_init(e) != AHG_OK || emu_identity_init(e) != AHG_OK ||
        emu_latency_init(e) != AHG_OK || emu_kv_init(e) != AHG_OK || emu_relay_init(e) != AHG_OK) {
        if (!err[0])
            (void)snprintf(err, errlen, "emulator initialisation failed");
        emu_free(e);
        return NULL;
    }

    e->relay_srv = listen_on(e, "emu-relay", "emulator.relay.port", "emulator.relay.cert",
                             "emulator.relay.key", relay_request, err, errlen);
    if (e->relay_srv)
        e->mgmt_srv = listen_on(e, "emu-mgmt", "emulator.mgmt.port", "emulator.mgmt.cert",
                                "emulator.mgmt.key", mgmt_request, err, errlen);
    if (e->mgmt_srv)
        e->identity_srv = listen_on(e, "emu-identity", "emulator.identity.port", NULL, NULL,
                                    identity_request, err, errlen);
    if (e->identity_srv)
        e->admin_srv = listen_on(e, "emu-admin", "emulator.admin.port", NULL, NULL, admin_request,
                                 err, errlen);
    if (!e->admin_srv) {
        emu_free(e);
        return NULL;
    }
    const char *pub = ahg_config_str(cfg, "emulator.relay.public_url");
    if (pub)
        (void)snprintf(e->relay_public, sizeof(e->relay_public), "%s", pub);
    else
        (void)snprintf(e->relay_public, sizeof(e->relay_public), "%s://%s:%d",
                       ahg_config_str(cfg, "emulator.relay.cert") ? "wss" : "ws",
                       ahg_config_str(cfg, "emulator.bind"), ahg_httpd_port(e->relay_srv));
    AHG_LOG_INFO("emulator up: namespace %s (%s), relay %s, management %s://%s:%d, identity "
                 "http://%s:%d, admin http://%s:%d",
                 e->ns.name, e->ns.host, e->relay_public,
                 ahg_config_str(cfg, "emulator.mgmt.cert") ? "https" : "http",
                 ahg_config_str(cfg, "emulator.bind"), ahg_httpd_port(e->mgmt_srv),
                 ahg_config_str(cfg, "emulator.bind"), ahg_httpd_port(e->identity_srv),
                 ahg_config_str(cfg, "emulator.bind"), ahg_httpd_port(e->admin_srv));
    return e;
}

void
emu_free(struct emu *e)
{
    if (!e)
        return;
    emu_relay_free(e);
    emu_kv_free(e);
    emu_state_free(e);
    emu_latency_free(e);
    free(e);
}

int
emu_relay_port(const struct emu *e)
{
    return ahg_httpd_port(e->relay_srv);
}

int
emu_mgmt_port(const struct emu *e)
{
    return ahg_httpd_port(e->mgmt_srv);
}

int
emu_identity_port(const struct emu *e)
{
    return ahg_httpd_port(e->identity_srv);
}

int
emu_admin_port(const struct emu *e)
{
    return ahg_httpd_port(e->admin_srv);
}

const char *
emu_identity_header(const struct emu *e)
{
    return e->identity_header;
}

const char *
emu_namespace(const struct emu *e)
{
    return e->ns.name;
}

const char *
emu_namespace_host(const struct emu *e)
{
    return e->ns.host;
}

const char *
emu_subscription(const struct emu *e)
{
    return e->ns.subscription;
}

const char *
emu_resource_group(const struct emu *e)
{
    return e->ns.resource_group;
}

int
emu_write_ready_file(const struct emu *e, const char *path)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return AHG_EINVAL;
    FILE *f = fopen(tmp, "w");
    if (!f)
        return AHG_EIO;
    (void)fprintf(f,
                  "relay_port=%d\nmgmt_port=%d\nidentity_port=%d\nadmin_port=%d\nnamespace=%s\n"
                  "namespace_host=%s\nready=1\n",
                  emu_relay_port(e), emu_mgmt_port(e), emu_identity_port(e), emu_admin_port(e),
                  e->ns.name, e->ns.host);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return AHG_EIO;
    }
    return AHG_OK;
}
