/*
 * azhexgate-controller: the management API (its own listener), an admin listener with
 * /healthz, /readyz and /metrics, JSON or text logs, and a graceful drain on SIGTERM/SIGINT.
 * Everything else is the ahg_controller library (ctl/controller.h).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ahg/admin.h"
#include "ahg/buf.h"
#include "ahg/config.h"
#include "ahg/err.h"
#include "ahg/httpd.h"
#include "ahg/log.h"
#include "ahg/metrics.h"
#include "ahg/net.h"
#include "ahg/store.h"
#include "ctl/controller.h"

static const struct ahg_opt_def main_opts[] = {
    AHG_OPTS_LOG("json"),
    {.name = "controller.listen.addr",
     .type = AHG_OPT_STRING,
     .def = "127.0.0.1",
     .metavar = "ADDR",
     .help = "numeric address of the management API listener"},
    {.name = "controller.listen.port",
     .type = AHG_OPT_INT,
     .def = "8081",
     .min = 0,
     .max = 65535,
     .help = "management API port (0 = any free port)"},
    {.name = "controller.listen.cert",
     .type = AHG_OPT_STRING,
     .metavar = "PEM",
     .help = "TLS certificate of the management API (plain HTTP when unset)"},
    {.name = "controller.listen.key",
     .type = AHG_OPT_STRING,
     .metavar = "PEM",
     .help = "private key for controller.listen.cert"},
    {.name = "controller.admin.addr",
     .type = AHG_OPT_STRING,
     .def = "127.0.0.1",
     .metavar = "ADDR",
     .help = "numeric address of the admin listener (/healthz, /readyz, /metrics)"},
    {.name = "controller.admin.port",
     .type = AHG_OPT_INT,
     .def = "9090",
     .min = 0,
     .max = 65535,
     .help = "admin port (0 = any free port)"},
    {.name = "controller.store",
     .type = AHG_OPT_STRING,
     .def = "redis://127.0.0.1:6379",
     .metavar = "URL",
     .help = "state store: redis://host[:port][/db], rediss://... or memory:"},
    {.name = "controller.store_password",
     .type = AHG_OPT_STRING,
     .flags = AHG_OPT_SECRET,
     .help = "Redis password (overrides one in the URL)"},
    {.name = "controller.store_tls_insecure",
     .type = AHG_OPT_BOOL,
     .def = "false",
     .help = "rediss:// without certificate verification (tests only)"},
    {.name = "controller.drain_timeout",
     .type = AHG_OPT_DURATION,
     .def = "10s",
     .min = 0,
     .max = 600000,
     .help = "how long SIGTERM waits for requests in flight"},
    {.name = "controller.ready_file",
     .type = AHG_OPT_STRING,
     .metavar = "PATH",
     .help = "write api_port=... and admin_port=... here once listening"},
};

static volatile sig_atomic_t got_signal;

static void
on_signal(int sig)
{
    (void)sig;
    got_signal = 1;
}

struct app {
    struct ahg_loop *loop;
    struct ahg_ctl *ctl;
    struct ahg_store *store;
    struct ahg_timer sig_timer;
    struct ahg_timer drain_timer;
    bool draining;
    uint64_t drain_ms;
};

static void
api_request(struct ahg_httpd_req *r)
{
    struct app *a = ahg_httpd_ud(ahg_httpd_req_server(r));
    const char *path = ahg_httpd_req_path(r);
    if (strncmp(path, "/api/", 5) == 0) {
        ahg_ctl_handle(a->ctl, r, NULL);
        return;
    }
    (void)ahg_httpd_respond_error(r, 404, "not_found", "the management API lives under /api/",
                                  true);
}

static bool
admin_ready(void *ud, char *why, size_t whysz)
{
    struct app *a = ud;
    if (ahg_ctl_ready(a->ctl))
        return true;
    (void)snprintf(why, whysz, "not ready: store, API keys or relay keys not available");
    return false;
}

static void
drained(void *ud)
{
    struct app *a = ud;
    AHG_LOG_INFO("controller: drained");
    ahg_loop_stop(a->loop);
}

static void
on_drain_timeout(struct ahg_timer *t)
{
    struct app *a = t->ud;
    AHG_LOG_WARN("controller: drain timeout; stopping with requests in flight");
    ahg_loop_stop(a->loop);
}

static void
on_sig_timer(struct ahg_timer *t)
{
    struct app *a = t->ud;
    if (got_signal && !a->draining) {
        a->draining = true;
        AHG_LOG_INFO("controller: signal received, draining");
        ahg_timer_start(&a->drain_timer, a->drain_ms);
        ahg_ctl_drain(a->ctl, drained, a);
        return;
    }
    ahg_timer_start(t, 100);
}

static struct ahg_httpd *
listen_on(struct app *a, const char *name, const char *addr, int port, const char *cert,
          const char *key, void (*fn)(struct ahg_httpd_req *))
{
    struct ahg_httpd_opts o = {
        .name = name,
        .iface = addr,
        .port = port,
        .cert_file = cert,
        .key_file = key,
        .on_request = fn,
        .ud = a,
    };
    int rc = 0;
    struct ahg_httpd *s = ahg_httpd_new(a->loop, &o, &rc);
    if (!s)
        AHG_LOG_ERROR("cannot listen on %s:%d for %s (%s)", addr, port, name,
                      rc == AHG_EIO ? "address in use or not available" : ahg_strerror(rc));
    return s;
}

int
main(int argc, char **argv)
{
    size_t nm = sizeof(main_opts) / sizeof(main_opts[0]);
    size_t n = nm + ahg_ctl_nopts;
    struct ahg_opt_def *opts = calloc(n, sizeof(*opts));
    if (!opts)
        return AHG_EXIT_FAILURE;
    memcpy(opts, main_opts, sizeof(main_opts));
    memcpy(opts + nm, ahg_ctl_opts_table, ahg_ctl_nopts * sizeof(*opts));
    struct ahg_config_spec spec = {
        .prog = "azhexgate-controller",
        .summary = "AzHexGate controller: management API, Hybrid Connections through ARM, "
                   "Listen tokens and the reconciler",
        .opts = opts,
        .nopts = n,
    };
    struct ahg_config *cfg = NULL;
    char err[512] = "";
    int rc = ahg_config_load(&cfg, &spec, argc, argv, NULL, err, sizeof(err));
    if (rc != AHG_OK) {
        (void)fprintf(stderr, "azhexgate-controller: %s\n%s", err,
                      rc == AHG_EUSAGE ? "Try 'azhexgate-controller --help'.\n" : "");
        free(opts);
        return ahg_err_exit_code(rc);
    }
    if (ahg_config_action(cfg) == AHG_CONFIG_CHECK) {
        struct ahg_ctl_opts chk;
        rc = ahg_ctl_opts_from_config(&chk, cfg, err, sizeof(err));
        if (rc == AHG_OK)
            rc = ahg_ctl_opts_check(&chk, err, sizeof(err));
        ahg_ctl_opts_clear(&chk);
        if (rc != AHG_OK) {
            (void)fprintf(stderr, "azhexgate-controller: %s\n", err);
            ahg_config_free(cfg);
            free(opts);
            return ahg_err_exit_code(rc);
        }
    }
    int code = ahg_config_run_builtin(cfg, &spec, stdout);
    if (code >= 0) {
        ahg_config_free(cfg);
        free(opts);
        return code;
    }
    enum ahg_log_format lf = AHG_LOG_FORMAT_JSON;
    enum ahg_log_level ll = AHG_LOG_LVL_INFO;
    ahg_log_format_parse(ahg_config_str(cfg, "log_format"), &lf);
    ahg_log_level_parse(ahg_config_str(cfg, "log_level"), &ll);
    ahg_log_setup("controller", lf, ll, 2);

    struct ahg_ctl_opts co;
    rc = ahg_ctl_opts_from_config(&co, cfg, err, sizeof(err));
    if (rc != AHG_OK) {
        (void)fprintf(stderr, "azhexgate-controller: %s\n", err);
        ahg_config_free(cfg);
        free(opts);
        return ahg_err_exit_code(rc);
    }

    struct app a;
    memset(&a, 0, sizeof(a));
    code = AHG_EXIT_FAILURE;
    a.loop = ahg_loop_new(NULL);
    if (!a.loop) {
        AHG_LOG_ERROR("cannot create the event loop");
        goto out;
    }
    a.store = ahg_store_new_url(a.loop, ahg_config_str(cfg, "controller.store"),
                                ahg_config_str(cfg, "controller.store_password"),
                                ahg_config_bool(cfg, "controller.store_tls_insecure"), &rc);
    if (!a.store) {
        AHG_LOG_ERROR("controller.store: cannot use '%s' (%s); give redis://<numeric address or "
                      "localhost>[:port][/db] or memory:",
                      ahg_config_str(cfg, "controller.store"), ahg_strerror(rc));
        code = AHG_EXIT_CONFIG;
        goto out;
    }
    a.ctl = ahg_ctl_new(a.loop, a.store, &co, &rc);
    if (!a.ctl) {
        code = ahg_err_exit_code(rc);
        goto out;
    }
    struct ahg_httpd *api = listen_on(&a, "ctl-api", ahg_config_str(cfg, "controller.listen.addr"),
                                      (int)ahg_config_int(cfg, "controller.listen.port"),
                                      ahg_config_str(cfg, "controller.listen.cert"),
                                      ahg_config_str(cfg, "controller.listen.key"), api_request);
    struct ahg_admin_opts ao = {
        .name = "ctl-admin",
        .iface = ahg_config_str(cfg, "controller.admin.addr"),
        .port = (int)ahg_config_int(cfg, "controller.admin.port"),
        .ready = admin_ready,
        .ud = &a,
        .metrics = ahg_ctl_metrics(a.ctl),
    };
    struct ahg_httpd *admin = api ? ahg_admin_new(a.loop, &ao, &rc) : NULL;
    if (api && !admin)
        AHG_LOG_ERROR("cannot listen on %s:%d for the admin listener (%s)", ao.iface, ao.port,
                      rc == AHG_EIO ? "address in use or not available" : ahg_strerror(rc));
    if (!api || !admin)
        goto out;
    AHG_LOG_INFO("controller: API on %s:%d, admin on %s:%d",
                 ahg_config_str(cfg, "controller.listen.addr"), ahg_httpd_port(api),
                 ahg_config_str(cfg, "controller.admin.addr"), ahg_httpd_port(admin));
    const char *ready = ahg_config_str(cfg, "controller.ready_file");
    if (ready) {
        char tmp[4096];
        (void)snprintf(tmp, sizeof(tmp), "%s.tmp", ready);
        FILE *f = fopen(tmp, "w");
        if (f) {
            (void)fprintf(f, "api_port=%d\nadmin_port=%d\nready=1\n", ahg_httpd_port(api),
                          ahg_httpd_port(admin));
            (void)fclose(f);
            (void)rename(tmp, ready);
        } else {
            AHG_LOG_WARN("cannot write the ready file %s", ready);
        }
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    ahg_timer_init(&a.sig_timer, a.loop, on_sig_timer, &a);
    ahg_timer_init(&a.drain_timer, a.loop, on_drain_timeout, &a);
    a.drain_ms = (uint64_t)ahg_config_int(cfg, "controller.drain_timeout");
    ahg_timer_start(&a.sig_timer, 100);

    ahg_loop_run(a.loop);
    ahg_timer_stop(&a.sig_timer);
    ahg_timer_stop(&a.drain_timer);
    code = AHG_EXIT_OK;
out:
    ahg_ctl_free(a.ctl);
    ahg_store_free(a.store);
    if (a.loop)
        ahg_loop_free(a.loop);
    ahg_ctl_opts_clear(&co);
    ahg_config_free(cfg);
    free(opts);
    AHG_LOG_INFO("controller: stopped");
    return code;
}
