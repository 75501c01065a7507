/*
 * sidecar.c - azhexgate-sidecar's run: the tunnel session (cli/session.h) kept up forever,
 * the app probe, the admin listener and the SIGTERM drain.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ahg/admin.h"
#include "ahg/config.h"
#include "ahg/crypto.h"
#include "ahg/err.h"
#include "ahg/httpd.h"
#include "ahg/log.h"
#include "ahg/metrics.h"
#include "ahg/net.h"
#include "ahg/resolve.h"
#include "cli/session.h"
#include "sc/sidecar.h"

/* The first API retry waits about this long; each failure doubles it up to retry_max. */
#define SC_RETRY_BASE_MS 500u
/* How long the DELETE of the tunnel may take on the way out. */
#define SC_RELEASE_TIMEOUT_MS 5000u
/* The service account's namespace file of a Kubernetes pod. */
#define SC_SA_NAMESPACE_FILE "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

struct sc {
    struct ahg_loop *loop;
    const struct ahg_config *cfg;
    struct cli_session *sess;
    struct ahg_httpd *admin;
    struct ahg_metrics *metrics;
    struct ahg_metric *m_requests, *m_api_errors, *m_connects, *m_lost, *m_duration;
    const char *local_host;
    int port;
    bool app_up, app_known, probing, draining, announced;
    struct ahg_timer probe_timer, retry_timer, wake_timer;
    uint64_t probe_ms, retry_max_ms;
    unsigned failures; /* management API / relay setup failures in a row */
    char subdomain[SC_LABEL_MAX + 1];
};

static struct ahg_loop *volatile g_loop;
static volatile sig_atomic_t g_signals;

static void
on_signal(int sig)
{
    (void)sig;
    if (g_signals++) {
        static const char msg[] = "azhexgate-sidecar: second signal, exiting now\n";
        (void)!write(2, msg, sizeof(msg) - 1);
        _exit(AHG_EXIT_FAILURE);
    }
    if (g_loop)
        ahg_loop_stop(g_loop);
}

static bool
ready(const struct sc *s)
{
    return !s->draining && s->app_up && cli_session_connected(s->sess);
}

static void
inc(struct ahg_metric *m)
{
    if (m)
        ahg_metric_inc(m);
}

/* ---- retries (a sidecar never gives up) ---- */

static uint64_t
next_delay(struct sc *s, long long retry_after_s)
{
    unsigned shift = s->failures < 16 ? s->failures : 16;
    uint64_t d = (uint64_t)SC_RETRY_BASE_MS << shift;
    if (d > s->retry_max_ms)
        d = s->retry_max_ms;
    unsigned r = 0;
    (void)ahg_rand_bytes(&r, sizeof(r));
    d = d / 2 + (d / 2 ? r % (d / 2 + 1) : 0); /* jitter: half fixed, half random */
    if (retry_after_s > 0 && (uint64_t)retry_after_s * 1000u > d)
        d = (uint64_t)retry_after_s * 1000u;
    s->failures++;
    return d;
}

static void
retry_cb(struct ahg_timer *t)
{
    struct sc *s = t->ud;
    if (s->draining)
        return;
    int rc = cli_session_start(s->sess);
    if (rc != AHG_OK && rc != AHG_EAGAIN) {
        AHG_LOG_WARN("cannot call the management API (%s); retrying", ahg_strerror(rc));
        ahg_timer_start(&s->retry_timer, next_delay(s, 0));
    }
}

/* ---- session callbacks ---- */

static void
on_created(void *ud, const struct cli_api_tunnel *t)
{
    struct sc *s = ud;
    (void)t;
    s->announced = false;
}

static void
on_create_failed(void *ud, const struct cli_api_result *r)
{
    struct sc *s = ud;
    inc(s->m_api_errors);
    uint64_t d = next_delay(s, r->retry_after);
    double sec = (double)d / 1000.0;
    const char *url = ahg_config_str(s->cfg, "api_url");
    if (r->err == AHG_EUPSTREAM && (r->status == 401 || r->status == 403)) {
        const char *o = ahg_config_origin(s->cfg, "api_key");
        AHG_LOG_ERROR("Authentication failed (HTTP %d%s%s): the API key from %s was refused by "
                      "%s; check the mounted key (AZHEXGATE_API_KEY_FILE); retrying in %.1fs",
                      r->status, r->message[0] ? ": " : "", r->message, o ? o : "the configuration",
                      url, sec);
    } else if (r->err == AHG_EUPSTREAM && r->status == 409) {
        AHG_LOG_ERROR("Unable to create tunnel: %s (HTTP 409): subdomain '%s' is held by another "
                      "tunnel (a previous instance of this pod releases it or its session "
                      "expires); retrying in %.1fs",
                      r->message[0] ? r->message : "conflict", s->subdomain, sec);
    } else if (r->err == AHG_EUPSTREAM) {
        AHG_LOG_ERROR("Unable to create tunnel: %s (HTTP %d%s%s); retrying in %.1fs",
                      r->message[0] ? r->message : "the server gave no reason", r->status,
                      r->code[0] ? ", " : "", r->code, sec);
    } else if (r->err == AHG_EPROTO) {
        AHG_LOG_ERROR("Unable to create tunnel: %s; retrying in %.1fs", r->message, sec);
    } else {
        AHG_LOG_ERROR("The management API at %s is unreachable (%s%s%s): check "
                      "AZHEXGATE_API_URL%s; retrying in %.1fs",
                      url, ahg_strerror(r->err), r->errmsg[0] ? ": " : "", r->errmsg,
                      r->err == AHG_ETLS ? " and AZHEXGATE_CA_FILE" : "", sec);
    }
    ahg_timer_start(&s->retry_timer, d);
}

static void
on_relay_failed(void *ud, int err, const char *what)
{
    struct sc *s = ud;
    uint64_t d = next_delay(s, 0);
    AHG_LOG_ERROR("cannot connect the tunnel: %s (%s); retrying in %.1fs", what, ahg_strerror(err),
                  (double)d / 1000.0);
    ahg_timer_start(&s->retry_timer, d);
}

static void
on_event(void *ud, enum cli_event ev, int status, const char *detail)
{
    struct sc *s = ud;
    (void)detail;
    switch (ev) {
    case CLI_EV_ESTABLISHED:
        s->failures = 0;
        inc(s->m_connects);
        if (!s->announced) {
            s->announced = true;
            AHG_LOG_INFO("Tunnel established: public URL %s forwarding to %s:%d",
                         cli_session_public_url(s->sess), s->local_host, s->port);
        } else {
            AHG_LOG_INFO("control channel re-established");
        }
        break;
    case CLI_EV_LOST:
        inc(s->m_lost);
        break;
    case CLI_EV_AUTH_FAILED:
        AHG_LOG_ERROR("Relay authentication failed (HTTP %d): asking the management API for a "
                      "new listener token and retrying",
                      status);
        break;
    case CLI_EV_CONNECT_FAILED: /* logged by the session */
        break;
    }
}

static void
on_request(void *ud, const struct cli_req_log *r)
{
    struct sc *s = ud;
    inc(s->m_requests);
    if (s->m_duration)
        ahg_metric_observe(s->m_duration, (double)r->duration_ms / 1000.0);
    cli_req_log_access(r, s->subdomain[0] ? s->subdomain : NULL);
}

/* ---- the app probe: a TCP connect every probe_interval ---- */

static void
app_state(struct sc *s, bool up)
{
    if (!s->app_known || up != s->app_up) {
        if (up)
            AHG_LOG_INFO("the app at %s:%d is reachable", s->local_host, s->port);
        else
            AHG_LOG_WARN("nothing is listening on %s:%d (the app); not ready, public requests get "
                         "a 502 until it is",
                         s->local_host, s->port);
    }
    s->app_known = true;
    s->app_up = up;
}

static void
probe_done(void *ud, bool reachable)
{
    struct sc *s = ud;
    s->probing = false;
    if (!s->draining) /* (a probe cut short by the shutdown says nothing) */
        app_state(s, reachable);
}

static void
probe_cb(struct ahg_timer *t)
{
    struct sc *s = t->ud;
    if (!s->probing) {
        uint64_t to = s->probe_ms < 2000 ? s->probe_ms : 2000;
        s->probing = true;
        if (cli_probe_local(s->loop, s->local_host, s->port, (unsigned)to, probe_done, s) !=
            AHG_OK) {
            s->probing = false;
            app_state(s, false);
        }
    }
    ahg_timer_start(t, s->probe_ms);
}

/* ---- admin listener (ahg/admin.h) ---- */

static bool
admin_ready(void *ud, char *why, size_t whysz)
{
    struct sc *s = ud;
    if (ready(s))
        return true;
    char app[96] = "";
    if (!s->app_up)
        (void)snprintf(app, sizeof(app), " app %s:%d not reachable;", s->local_host, s->port);
    (void)snprintf(why, whysz, "not ready:%s%s%s", s->draining ? " draining;" : "",
                   cli_session_connected(s->sess) ? "" : " control channel down;", app);
    return false;
}

static double
g_ready(void *ud)
{
    return ready(ud) ? 1 : 0;
}

static double
g_channel(void *ud)
{
    return cli_session_connected(((struct sc *)ud)->sess) ? 1 : 0;
}

static double
g_app(void *ud)
{
    return ((struct sc *)ud)->app_up ? 1 : 0;
}

static double
g_active(void *ud)
{
    return (double)cli_session_active(((struct sc *)ud)->sess);
}

static void
metrics_setup(struct sc *s)
{
    struct ahg_metrics *m = s->metrics;
    s->m_requests = ahg_metrics_counter(m, "azhexgate_sidecar_requests_total",
                                        "requests forwarded to the app", NULL);
    s->m_api_errors = ahg_metrics_counter(m, "azhexgate_sidecar_api_errors_total",
                                          "failed tunnel creations (retried)", NULL);
    s->m_connects = ahg_metrics_counter(m, "azhexgate_sidecar_relay_connects_total",
                                        "times the relay control channel came up", NULL);
    s->m_lost = ahg_metrics_counter(m, "azhexgate_sidecar_relay_disconnects_total",
                                    "times the relay control channel dropped", NULL);
    s->m_duration = ahg_metrics_histogram(
        m, "azhexgate_sidecar_request_duration_seconds", "time to the app's full response", NULL,
        ahg_metrics_latency_buckets, ahg_metrics_latency_nbuckets);
    (void)ahg_metrics_gauge_fn(m, "azhexgate_sidecar_ready", "1 when /readyz answers 200", NULL,
                               g_ready, s);
    (void)ahg_metrics_gauge_fn(m, "azhexgate_sidecar_control_channel_up",
                               "1 while the relay control channel is open", NULL, g_channel, s);
    (void)ahg_metrics_gauge_fn(m, "azhexgate_sidecar_app_reachable",
                               "1 when the last TCP probe of the app succeeded", NULL, g_app, s);
    (void)ahg_metrics_gauge_fn(m, "azhexgate_sidecar_streams_active",
                               "streams and requests in flight", NULL, g_active, s);
}

/* ---- configuration pieces ---- */

static const char *
env_get(char *const envp[], const char *name)
{
    if (!envp)
        return getenv(name);
    size_t n = strlen(name);
    for (size_t i = 0; envp[i]; i++)
        if (!strncmp(envp[i], name, n) && envp[i][n] == '=')
            return envp[i] + n + 1;
    return NULL;
}

static const char *
nonempty(const char *s)
{
    return s && s[0] ? s : NULL;
}

/* The subdomain: explicit, else derived from the pod, else "" (the server picks one). */
static void
pick_subdomain(struct sc *s, char *const envp[])
{
    const char *sd = nonempty(ahg_config_str(s->cfg, "subdomain"));
    if (sd) {
        (void)snprintf(s->subdomain, sizeof(s->subdomain), "%s", sd);
        return;
    }
    const char *pod = nonempty(ahg_config_str(s->cfg, "pod_name"));
    if (!pod)
        pod = nonempty(env_get(envp, "POD_NAME"));
    if (!pod)
        pod = nonempty(env_get(envp, "HOSTNAME"));
    const char *ns = nonempty(ahg_config_str(s->cfg, "pod_namespace"));
    if (!ns)
        ns = nonempty(env_get(envp, "POD_NAMESPACE"));
    char nsbuf[256] = "";
    if (!ns) {
        FILE *f = fopen(SC_SA_NAMESPACE_FILE, "r");
        if (f) {
            if (fgets(nsbuf, sizeof(nsbuf), f))
                nsbuf[strcspn(nsbuf, "\r\n")] = '\0';
            (void)fclose(f);
        }
        ns = nonempty(nsbuf);
    }
    if (!pod || sc_derive_subdomain(pod, ns, s->subdomain, sizeof(s->subdomain)) != AHG_OK) {
        s->subdomain[0] = '\0';
        AHG_LOG_WARN("no AZHEXGATE_SUBDOMAIN and no pod name (AZHEXGATE_POD_NAME, POD_NAME, "
                     "HOSTNAME): the server picks a random subdomain, which changes on restart");
        return;
    }
    AHG_LOG_INFO("subdomain %s derived from pod %s%s%s", s->subdomain, ns ? ns : "", ns ? "/" : "",
                 pod);
}

static void
wake_cb(struct ahg_timer *t)
{
    (void)t;
}

/* SIGTERM: optionally keep serving for drain_delay, then drain and release. */
static void
shut_down(struct sc *s)
{
    s->draining = true;
    ahg_timer_stop(&s->retry_timer);
    uint64_t delay = (uint64_t)ahg_config_int(s->cfg, "drain_delay");
    if (delay > 0) {
        AHG_LOG_INFO("signal received: serving for %.1fs more before draining "
                     "(AZHEXGATE_SIDECAR_DRAIN_DELAY)",
                     (double)delay / 1000.0);
        uint64_t deadline = ahg_now_ms() + delay;
        ahg_timer_start(&s->wake_timer, delay);
        while (ahg_now_ms() < deadline)
            (void)ahg_loop_run_once(s->loop);
    }
    AHG_LOG_INFO("draining: no new streams; in-flight ones have %.1fs to finish",
                 (double)ahg_config_int(s->cfg, "drain_timeout") / 1000.0);
    (void)cli_session_close(s->sess, (uint64_t)ahg_config_int(s->cfg, "drain_timeout"),
                            SC_RELEASE_TIMEOUT_MS);
}

int
sc_run(const struct ahg_config *cfg, char *const envp[])
{
    struct sc s;
    memset(&s, 0, sizeof(s));
    s.cfg = cfg;
    enum ahg_log_format lf = AHG_LOG_FORMAT_JSON;
    enum ahg_log_level ll = AHG_LOG_LVL_INFO;
    (void)ahg_log_format_parse(ahg_config_str(cfg, "log_format"), &lf);
    (void)ahg_log_level_parse(ahg_config_str(cfg, "log_level"), &ll);
    ahg_log_setup("sidecar", lf, ll, 2);

    s.port = (int)ahg_config_int(cfg, "port");
    s.local_host = ahg_config_str(cfg, "local_host");
    if (!strcmp(s.local_host, "localhost"))
        s.local_host = "127.0.0.1";
    s.probe_ms = (uint64_t)ahg_config_int(cfg, "probe_interval");
    s.retry_max_ms = (uint64_t)ahg_config_int(cfg, "retry_max");
    pick_subdomain(&s, envp);

    const char *ca = nonempty(ahg_config_str(cfg, "ca_file"));
    struct ahg_loop_opts lo = {.client_ca_file = ca};
    s.loop = ahg_loop_new(&lo);
    if (!s.loop)
        return AHG_EXIT_FAILURE;
    ahg_timer_init(&s.probe_timer, s.loop, probe_cb, &s);
    ahg_timer_init(&s.retry_timer, s.loop, retry_cb, &s);
    ahg_timer_init(&s.wake_timer, s.loop, wake_cb, &s);
    int code = AHG_EXIT_OK;
    s.metrics = ahg_metrics_new();
    if (!s.metrics) {
        code = AHG_EXIT_FAILURE;
        goto out;
    }
    metrics_setup(&s);

    const char *const *cidrs = NULL;
    (void)ahg_config_list(cfg, "allow_cidr", &cidrs);
    struct cli_session_opts so = {
        .api_url = ahg_config_str(cfg, "api_url"),
        .api_key = ahg_config_str(cfg, "api_key"),
        .api_ca_file = ca,
        .subdomain = s.subdomain[0] ? s.subdomain : NULL,
        .basic_auth = ahg_config_str(cfg, "basic_auth"),
        .allow_cidr = cidrs,
        .local_host = s.local_host,
        .local_port = s.port,
        .keepalive_ms = (uint64_t)ahg_config_int(cfg, "keepalive"),
        .on_created = on_created,
        .on_create_failed = on_create_failed,
        .on_relay_failed = on_relay_failed,
        .on_event = on_event,
        .on_request = on_request,
        .ud = &s,
    };
    int err = 0;
    s.sess = cli_session_new(s.loop, &so, &err);
    if (!s.sess) {
        AHG_LOG_ERROR("cannot set up the tunnel session: %s", ahg_strerror(err));
        code = err == AHG_EINVAL ? AHG_EXIT_CONFIG : AHG_EXIT_FAILURE;
        goto out;
    }
    struct ahg_admin_opts ao = {.name = "sidecar-admin",
                                .iface = ahg_config_str(cfg, "admin_address"),
                                .port = (int)ahg_config_int(cfg, "admin_port"),
                                .ready = admin_ready,
                                .ud = &s,
                                .metrics = s.metrics};
    s.admin = ahg_admin_new(s.loop, &ao, &err);
    if (!s.admin) {
        AHG_LOG_ERROR("cannot listen on the admin address %s:%lld (%s): set AZHEXGATE_ADMIN_PORT "
                      "to a free port",
                      ao.iface, ahg_config_int(cfg, "admin_port"), ahg_strerror(err));
        code = AHG_EXIT_FAILURE;
        goto out;
    }
    AHG_LOG_INFO("admin listener on http://%s:%d (/healthz, /readyz, /metrics)", ao.iface,
                 ahg_httpd_port(s.admin));

    g_signals = 0;
    g_loop = s.loop;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    (void)sigaction(SIGTERM, &sa, NULL);
    (void)sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    (void)sigaction(SIGPIPE, &sa, NULL);

    probe_cb(&s.probe_timer);
    err = cli_session_start(s.sess);
    if (err != AHG_OK)
        ahg_timer_start(&s.retry_timer, next_delay(&s, 0));
    (void)ahg_loop_run(s.loop);
    shut_down(&s);
    AHG_LOG_INFO("sidecar stopped");

out:
    ahg_timer_stop(&s.probe_timer);
    ahg_timer_stop(&s.retry_timer);
    ahg_timer_stop(&s.wake_timer);
    ahg_resolve_shutdown(s.loop);
    cli_session_free(s.sess);
    g_loop = NULL;
    ahg_loop_free(s.loop);
    ahg_metrics_free(s.metrics);
    return code;
}
