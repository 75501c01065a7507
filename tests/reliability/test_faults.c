/*
 * Fault injection under load on a full stack of real processes on 127.0.0.1: redis-server (AOF
 * on), the emulator (its state in a file), two controller replicas (leader election through
 * Redis), two gateways (gateway A proxies the API to controller A, B to B), two
 * `azhexgate start` clients with fixed subdomains in front of `azhexgate demo`.
 *
 * A load generator (threads of this process, blocking sockets, a new connection per request,
 * alternating between the two gateways like a round-robin load balancer that ejects a backend
 * for 1 s after a refused connection) runs through every fault: kill -9 of a gateway, of the
 * controller leader, of the emulator, of Redis, of a client; each killed process is started
 * again (as a supervisor would). For each fault the test prints what failed and for how long,
 * whether the management API created tunnels meanwhile, and asserts that nothing acknowledged
 * is lost: every tunnel acknowledged (201) before or during the faults still exists after
 * recovery (API, route and session records in Redis, its Hybrid Connection in the emulator),
 * the API key is still accepted and both clients' tunnels serve again.
 *
 * Second case: a reconnect storm of 1,000 tunnels through the controller (sessions created via
 * the API, then 1,000 lightweight listeners of this process connecting at once, dropped and
 * connecting at once again), with the RSS of controller, emulator and gateway before, at the
 * peak and after the sessions are deleted. Numbers are "rel: ..." lines (docs/reliability.md).
 */
#include "rel.h"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <curl/curl.h>

#include "ahg/net.h"

#define API_KEY   "rel-faults-api-key-0123456789abcdef"
#define ID_HEADER "rel-faults-identity-header"
#define JWT_KEY   "rel-faults-jwt-secret"
#define NS_HOST   "ahg-local.servicebus.windows.net"
#define ASAN_ENV  "ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:quarantine_size_mb=4"

static void
nap_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    (void)nanosleep(&ts, NULL);
}

/* ---- the stack ---- */

/* The binary to run: $env when set (e.g. AHG_REL_CONTROLLER_BIN=<a build without sanitizers>
 * to measure memory without ASan), else the one of this build. */
static const char *
bin_of(const char *env, const char *def)
{
    const char *v = getenv(env);
    return v && *v ? v : def;
}

struct stack {
    char dir[256];
    struct ts_redis redis;
    char store[64];
    struct ts_proc emu, ctl[2], gw[2], app;
    int relay_port, mgmt_port, identity_port, emu_admin;
    int ctl_port[2], ctl_admin[2], gw_port[2], app_port;
    char state_file[320];
};

static const char *
path_in(const struct stack *s, char *out, size_t n, const char *name)
{
    (void)snprintf(out, n, "%s/%s", s->dir, name);
    return out;
}

/* redis-server with the append-only file on: every write is in the AOF (written before the
 * reply goes out) so a killed server restarts with everything it acknowledged. */
static void
redis_start(struct stack *s, int port)
{
    ts_redis_start_aof(&s->redis, port, NULL);
    ts_redis_url(&s->redis, s->store, sizeof(s->store));
}

static void
emu_start(struct stack *s)
{
    char ready[320], log[320], relay[16], mgmt[16], ident[16], admin[16], statef[400];
    path_in(s, ready, sizeof(ready), "emu.ready");
    (void)unlink(ready);
    (void)snprintf(relay, sizeof(relay), "%d", s->relay_port);
    (void)snprintf(mgmt, sizeof(mgmt), "%d", s->mgmt_port);
    (void)snprintf(ident, sizeof(ident), "%d", s->identity_port);
    (void)snprintf(admin, sizeof(admin), "%d", s->emu_admin);
    /* its namespace in a file, so a restart keeps the Hybrid Connections as Azure does */
    (void)snprintf(statef, sizeof(statef), "--emulator-state-file=%s", s->state_file);
    const char *argv[] = {bin_of("AHG_REL_EMULATOR_BIN", EMULATOR_BIN),
                          "--emulator-relay-port",
                          relay,
                          "--emulator-mgmt-port",
                          mgmt,
                          "--emulator-identity-port",
                          ident,
                          "--emulator-admin-port",
                          admin,
                          "--emulator-identity-header",
                          ID_HEADER,
                          "--emulator-identity-jwt-secret",
                          JWT_KEY,
                          "--emulator-root-key",
                          TH_KEY,
                          "--emulator-max-listeners",
                          "1000",
                          "--emulator-ready-file",
                          ready,
                          s->state_file[0] ? statef : NULL,
                          NULL};
    const char *env[] = {ASAN_ENV, NULL};
    ts_spawn(&s->emu, argv, env, path_in(s, log, sizeof(log), "emu.log"));
    if (!ts_wait_file(ready, 20000))
        fail_msg("the emulator did not start:\n%s", ts_output(&s->emu));
}

static void
ctl_start(struct stack *s, int i)
{
    char ready[320], log[320], port[16], relay[64], arm[64], ident[96], gwport[16], name[16];
    (void)snprintf(name, sizeof(name), "ctl%d.ready", i);
    path_in(s, ready, sizeof(ready), name);
    (void)unlink(ready);
    (void)snprintf(port, sizeof(port), "%d", s->ctl_port[i]);
    (void)snprintf(relay, sizeof(relay), "ws://127.0.0.1:%d/", s->relay_port);
    (void)snprintf(arm, sizeof(arm), "http://127.0.0.1:%d", s->mgmt_port);
    (void)snprintf(ident, sizeof(ident), "http://127.0.0.1:%d/msi/token", s->identity_port);
    (void)snprintf(gwport, sizeof(gwport), "%d", s->gw_port[0]);
    (void)snprintf(name, sizeof(name), "ctl-%c", 'a' + i);
    const char *argv[] = {bin_of("AHG_REL_CONTROLLER_BIN", CONTROLLER_BIN),
                          "--controller-listen-port",
                          port,
                          "--controller-admin-port",
                          "0",
                          "--controller-store",
                          s->store,
                          "--controller-replica",
                          name,
                          "--controller-public-scheme",
                          "http",
                          "--controller-public-domain",
                          "localhost",
                          "--controller-public-port",
                          gwport,
                          "--controller-relay-endpoint",
                          relay,
                          "--controller-relay-host",
                          NS_HOST,
                          "--controller-arm-endpoint",
                          arm,
                          "--controller-arm-subscription",
                          "00000000-0000-0000-0000-000000000000",
                          "--controller-arm-resource-group",
                          "azhexgate",
                          "--controller-arm-namespace",
                          "ahg-local",
                          "--controller-arm-retries",
                          "1",
                          "--controller-arm-wait",
                          "3s",
                          "--controller-identity-kind",
                          "appservice",
                          "--controller-identity-endpoint",
                          ident,
                          "--controller-identity-header",
                          ID_HEADER,
                          "--controller-quota",
                          "5000",
                          "--controller-default-ttl",
                          "1m",
                          "--controller-token-ttl",
                          "1m",
                          "--controller-reconcile-interval",
                          "2s",
                          "--controller-reconcile-lease-ttl",
                          "3s",
                          "--controller-ready-file",
                          ready,
                          NULL};
    (void)snprintf(name, sizeof(name), "ctl%d.log", i);
    const char *env[] = {"AZHEXGATE_CONTROLLER_AUTH_KEYS=" API_KEY, ASAN_ENV, NULL};
    ts_spawn(&s->ctl[i], argv, env, path_in(s, log, sizeof(log), name));
    if (!ts_wait_file(ready, 30000))
        fail_msg("controller %d did not become ready:\n%s", i, ts_output(&s->ctl[i]));
    s->ctl_admin[i] = ts_ready_value(ready, "admin_port");
    assert_true(s->ctl_admin[i] > 0);
}

static void
gw_start(struct stack *s, int i)
{
    char log[320], port[16], admin[16], up[64], relay[64];
    (void)snprintf(port, sizeof(port), "%d", s->gw_port[i]);
    (void)snprintf(admin, sizeof(admin), "%d", ts_free_port());
    (void)snprintf(up, sizeof(up), "127.0.0.1:%d", s->ctl_port[i]);
    (void)snprintf(relay, sizeof(relay), "ws://127.0.0.1:%d", s->relay_port);
    const char *argv[] = {bin_of("AHG_REL_GATEWAY_BIN", GATEWAY_BIN),
                          "--domain",
                          "localhost",
                          "--listen-address",
                          "127.0.0.1",
                          "--listen-port",
                          port,
                          "--admin-port",
                          admin,
                          "--store-url",
                          s->store,
                          "--api-upstream",
                          up,
                          "--relay-endpoint",
                          relay,
                          "--relay-sas-key=" TH_KEY,
                          "--response-timeout",
                          "5s",
                          "--no-access-log",
                          NULL};
    char name[16];
    (void)snprintf(name, sizeof(name), "gw%d.log", i);
    const char *env[] = {ASAN_ENV, NULL};
    ts_spawn(&s->gw[i], argv, env, path_in(s, log, sizeof(log), name));
    if (!ts_wait_port(s->gw_port[i], 20000))
        fail_msg("gateway %d did not listen:\n%s", i, ts_output(&s->gw[i]));
}

static long long
leader_of(const struct stack *s, int i)
{
    return rel_metric_at(s->ctl_admin[i], "azhexgate_controller_leader");
}

/* The whole stack; the emulator keeps its namespace in a file when emu_state. */
static struct stack *
stack_start(const char *tag, bool emu_state)
{
    struct stack *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    ts_mkdtemp(s->dir, sizeof(s->dir), tag);
    if (emu_state)
        path_in(s, s->state_file, sizeof(s->state_file), "emulator-state.json");
    redis_start(s, 0);
    s->relay_port = ts_free_port();
    s->mgmt_port = ts_free_port();
    s->identity_port = ts_free_port();
    s->emu_admin = ts_free_port();
    for (int i = 0; i < 2; i++) {
        s->ctl_port[i] = ts_free_port();
        s->gw_port[i] = ts_free_port();
    }
    emu_start(s);
    /* controller A first, so it is the leader the controller fault kills */
    ctl_start(s, 0);
    for (int i = 0; i < 100 && leader_of(s, 0) != 1; i++)
        nap_ms(100);
    assert_int_equal(leader_of(s, 0), 1);
    ctl_start(s, 1);
    gw_start(s, 0);
    gw_start(s, 1);
    char port[16], log[320];
    s->app_port = ts_free_port();
    (void)snprintf(port, sizeof(port), "%d", s->app_port);
    const char *argv[] = {bin_of("AHG_REL_CLIENT_BIN", AZHEXGATE_BIN), "demo", "--port", port,
                          NULL};
    ts_spawn(&s->app, argv, NULL, path_in(s, log, sizeof(log), "app.log"));
    assert_true(ts_wait_port(s->app_port, 20000));
    return s;
}

/* SIGTERM, and the exit status (0: clean, and no leak reported by LeakSanitizer). */
static int
term(struct ts_proc *p)
{
    ts_signal(p, SIGTERM);
    int st = ts_wait_exit(p, 30000);
    ts_kill(p);
    return st;
}

/* Stops everything; with clean, each gateway, controller and the emulator must exit 0 on
 * SIGTERM (LeakSanitizer finds nothing left over). */
static void
stack_stop(struct stack *s, bool clean)
{
    ts_kill(&s->app);
    int st[5] = {0};
    for (int i = 0; i < 2; i++) {
        st[i] = term(&s->gw[i]);
        st[2 + i] = term(&s->ctl[i]);
    }
    st[4] = term(&s->emu);
    (void)printf("rel: exit statuses after SIGTERM: gateways %d %d, controllers %d %d, emulator "
                 "%d\n",
                 st[0], st[1], st[2], st[3], st[4]);
    for (int i = 0; clean && i < 5; i++)
        assert_int_equal(st[i], 0);
    ts_redis_stop(&s->redis);
    ts_rmtree(s->dir);
    free(s);
}

/* ---- the management API ---- */

/* A string member of a flat JSON object (no escapes in the values we read). */
static bool
json_str(const char *body, const char *name, char *out, size_t n)
{
    char pat[64];
    (void)snprintf(pat, sizeof(pat), "\"%s\":\"", name);
    const char *p = body ? strstr(body, pat) : NULL;
    if (!p)
        return false;
    p += strlen(pat);
    size_t len = strcspn(p, "\"");
    if (len >= n)
        return false;
    memcpy(out, p, len);
    out[len] = '\0';
    return true;
}

struct tunnel {
    char sid[80], id[80], hc[96], token[1024];
};

/* POST /api/tunnels through gateway gw's api host (timeout 5 s); the status, 0 = no answer. */
static long
api_create(const struct stack *s, int gw, const char *body, struct tunnel *t)
{
    char url[128], ct[64];
    (void)snprintf(url, sizeof(url), "http://api.localhost/api/tunnels");
    (void)snprintf(ct, sizeof(ct), "127.0.0.1:%d", s->gw_port[gw]);
    const char *h[] = {"X-AzHexGate-ApiKey: " API_KEY, "Content-Type: application/json", NULL};
    struct ts_req q = {.method = "POST",
                       .url = url,
                       .headers = h,
                       .body = body,
                       .body_len = strlen(body),
                       .connect_to = ct,
                       .timeout_ms = 5000};
    struct ts_resp r;
    ts_http(&q, &r);
    long st = r.status;
    if (st == 201 && t) {
        assert_true(json_str(r.body, "session_id", t->sid, sizeof(t->sid)));
        assert_true(json_str(r.body, "subdomain", t->id, sizeof(t->id)));
        assert_true(json_str(r.body, "hybrid_connection_name", t->hc, sizeof(t->hc)));
        assert_true(json_str(r.body, "listener_token", t->token, sizeof(t->token)));
    }
    ts_resp_free(&r);
    return st;
}

static long
api_call(const struct stack *s, int gw, const char *method, const char *sid)
{
    char url[160], ct[64];
    (void)snprintf(url, sizeof(url), "http://api.localhost/api/tunnels/%s", sid);
    (void)snprintf(ct, sizeof(ct), "127.0.0.1:%d", s->gw_port[gw]);
    const char *h[] = {"X-AzHexGate-ApiKey: " API_KEY, NULL};
    struct ts_req q = {
        .method = method, .url = url, .headers = h, .connect_to = ct, .timeout_ms = 10000};
    struct ts_resp r;
    ts_http(&q, &r);
    long st = r.status;
    ts_resp_free(&r);
    return st;
}

/* EXISTS key through redis-cli: 1, 0, or -1 when redis-cli failed. */
static int
redis_exists(struct stack *s, const char *key)
{
    char port[16], log[320];
    (void)snprintf(port, sizeof(port), "%d", s->redis.port);
    path_in(s, log, sizeof(log), "redis-cli.out");
    (void)unlink(log);
    const char *argv[] = {"/usr/bin/redis-cli", "-p", port, "EXISTS", key, NULL};
    struct ts_proc p;
    ts_spawn(&p, argv, NULL, log);
    if (ts_wait_exit(&p, 10000) != 0)
        return -1;
    char *o = ts_output(&p);
    int v = o && (o[0] == '0' || o[0] == '1') ? o[0] - '0' : -1;
    free(o);
    return v;
}

/* The Hybrid Connection hc exists in the emulator (ARM GET with a managed-identity token). */
static long
arm_hc_status(const struct stack *s, const char *hc)
{
    char url[512];
    (void)snprintf(url, sizeof(url),
                   "http://127.0.0.1:%d/msi/token?resource=https://management.azure.com/"
                   "&api-version=2019-08-01",
                   s->identity_port);
    const char *ih[] = {"X-IDENTITY-HEADER: " ID_HEADER, NULL};
    struct ts_req q = {.url = url, .headers = ih, .timeout_ms = 10000};
    struct ts_resp r;
    ts_http(&q, &r);
    char tok[2048], bearer[2100];
    assert_int_equal(r.status, 200);
    assert_true(json_str(r.body, "access_token", tok, sizeof(tok)));
    ts_resp_free(&r);
    (void)snprintf(bearer, sizeof(bearer), "Authorization: Bearer %s", tok);
    (void)snprintf(url, sizeof(url),
                   "http://127.0.0.1:%d/subscriptions/00000000-0000-0000-0000-000000000000/"
                   "resourceGroups/azhexgate/providers/Microsoft.Relay/namespaces/ahg-local/"
                   "hybridConnections/%s?api-version=2021-11-01",
                   s->mgmt_port, hc);
    const char *ah[] = {bearer, NULL};
    struct ts_req g = {.url = url, .headers = ah, .timeout_ms = 10000};
    ts_http(&g, &r);
    long st = r.status;
    ts_resp_free(&r);
    return st;
}

/* ---- the clients ---- */

struct client {
    struct ts_proc p;
    char sub[24];
    int gw; /* the gateway whose api host it calls */
    unsigned starts;
};

/* Starts `azhexgate start --subdomain sub` and waits until it forwards; false when it exited
 * (e.g. 409: the subdomain is still held) or timed out. */
static bool
client_start(struct stack *s, struct client *c)
{
    char port[16], api[64], log[320], name[64];
    (void)snprintf(port, sizeof(port), "%d", s->app_port);
    (void)snprintf(api, sizeof(api), "http://api.localhost:%d", s->gw_port[c->gw]);
    (void)snprintf(name, sizeof(name), "cli-%s-%u.log", c->sub, c->starts++);
    const char *argv[] = {bin_of("AHG_REL_CLIENT_BIN", AZHEXGATE_BIN),
                          "start",
                          "--port",
                          port,
                          "--api-url",
                          api,
                          "--subdomain",
                          c->sub,
                          "--keepalive",
                          "2s",
                          NULL};
    const char *env[] = {"AZHEXGATE_API_KEY=" API_KEY, ASAN_ENV, NULL};
    ts_spawn(&c->p, argv, env, path_in(s, log, sizeof(log), name));
    if (ts_wait_output(&c->p, "Forwarding to: ", 20000))
        return true;
    ts_kill(&c->p);
    return false;
}

/* ---- the load generator ---- */

enum { LD_THREADS = 4, LD_NOCONN = 0, LD_NOANSWER = 1 };

struct ld_rec {
    uint32_t t_ms; /* completion, ms since the loader started */
    uint16_t status;
    uint8_t gw, tun;
};

struct loader {
    int gw_port[2];
    char host[2][64];
    unsigned ntun;
    uint64_t t0, deadline;
    atomic_bool stop;
    atomic_uint rr;
    atomic_uint_fast64_t down_until[2]; /* passive health check: ejected until */
    pthread_mutex_t mu;
    struct ld_rec *recs;
    size_t n, cap;
    pthread_t thr[LD_THREADS];
};

/* One GET /healthz on a new connection; the status, LD_NOCONN or LD_NOANSWER. */
static uint16_t
ld_request(int port, const char *host)
{
    int fd = rel_tcp_connect(port, false);
    if (fd < 0)
        return LD_NOCONN;
    struct timeval tv = {.tv_sec = 5};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    char req[256];
    int n = snprintf(req, sizeof(req),
                     "GET /healthz HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host);
    uint16_t st = LD_NOANSWER;
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
        char buf[64];
        size_t got = 0;
        while (got < sizeof(buf) - 1) {
            ssize_t k = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
            if (k <= 0)
                break;
            got += (size_t)k;
        }
        buf[got] = '\0';
        if (got >= 12 && strncmp(buf, "HTTP/1.1 ", 9) == 0)
            st = (uint16_t)strtol(buf + 9, NULL, 10);
    }
    (void)close(fd);
    return st;
}

static void *
ld_thread(void *arg)
{
    struct loader *l = arg;
    while (!atomic_load(&l->stop) && ahg_now_ms() < l->deadline) {
        unsigned i = atomic_fetch_add(&l->rr, 1);
        uint8_t gw = (uint8_t)(i % 2), tun = (uint8_t)((i / 2) % l->ntun);
        uint64_t now = ahg_now_ms();
        if (atomic_load(&l->down_until[gw]) > now && atomic_load(&l->down_until[!gw]) <= now)
            gw = (uint8_t)!gw;
        uint16_t st = ld_request(l->gw_port[gw], l->host[tun]);
        if (st == LD_NOCONN)
            atomic_store(&l->down_until[gw], ahg_now_ms() + 1000);
        (void)pthread_mutex_lock(&l->mu);
        if (l->n < l->cap)
            l->recs[l->n++] = (struct ld_rec){
                .t_ms = (uint32_t)(ahg_now_ms() - l->t0), .status = st, .gw = gw, .tun = tun};
        bool full = l->n >= l->cap;
        (void)pthread_mutex_unlock(&l->mu);
        if (full)
            break;
        nap_ms(10);
    }
    return NULL;
}

static void
ld_start(struct loader *l, const struct stack *s, const struct client *c, unsigned ntun,
         unsigned secs)
{
    memset(l, 0, sizeof(*l));
    for (int i = 0; i < 2; i++)
        l->gw_port[i] = s->gw_port[i];
    for (unsigned i = 0; i < ntun; i++)
        (void)snprintf(l->host[i], sizeof(l->host[i]), "%s.localhost", c[i].sub);
    l->ntun = ntun;
    l->cap = 400000;
    l->recs = calloc(l->cap, sizeof(*l->recs));
    assert_non_null(l->recs);
    (void)pthread_mutex_init(&l->mu, NULL);
    l->t0 = ahg_now_ms();
    l->deadline = l->t0 + (uint64_t)secs * 1000;
    for (int i = 0; i < LD_THREADS; i++)
        assert_int_equal(pthread_create(&l->thr[i], NULL, ld_thread, l), 0);
}

static void
ld_stop(struct loader *l)
{
    atomic_store(&l->stop, true);
    for (int i = 0; i < LD_THREADS; i++)
        (void)pthread_join(l->thr[i], NULL);
    (void)pthread_mutex_destroy(&l->mu);
    free(l->recs);
}

static uint32_t
ld_now(const struct loader *l)
{
    return (uint32_t)(ahg_now_ms() - l->t0);
}

/* True when every request that completed in the last 1.5 s after since succeeded, and there
 * were at least two per tunnel. */
static bool
ld_healthy(struct loader *l, uint32_t since)
{
    uint32_t now = ld_now(l), from = now > 1500 ? now - 1500 : 0;
    from = from > since ? from : since;
    size_t seen = 0;
    bool ok = true;
    (void)pthread_mutex_lock(&l->mu);
    for (size_t i = l->n; i-- > 0 && l->recs[i].t_ms >= from;) {
        seen++;
        ok = ok && l->recs[i].status == 200;
    }
    (void)pthread_mutex_unlock(&l->mu);
    return ok && seen >= 2u * l->ntun && now - from >= 1000;
}

struct window {
    size_t total, ok, noconn, noanswer, s502, s503, s504, s404, other;
    uint32_t first_fail, last_fail, restored; /* ms after the kill; restored = first 200 after
                                                 the last failure */
    bool failed, in_fail;
};

static void
ld_window(struct loader *l, uint32_t from, uint32_t to, struct window *w)
{
    memset(w, 0, sizeof(*w));
    (void)pthread_mutex_lock(&l->mu);
    for (size_t i = 0; i < l->n; i++) {
        const struct ld_rec *r = &l->recs[i];
        if (r->t_ms < from || r->t_ms > to)
            continue;
        w->total++;
        uint32_t at = r->t_ms - from;
        if (r->status == 200) {
            w->ok++;
            if (w->in_fail)
                w->restored = at;
            w->in_fail = false;
            continue;
        }
        if (!w->failed)
            w->first_fail = at;
        w->failed = w->in_fail = true;
        w->last_fail = at;
        switch (r->status) {
        case LD_NOCONN:
            w->noconn++;
            break;
        case LD_NOANSWER:
            w->noanswer++;
            break;
        case 502:
            w->s502++;
            break;
        case 503:
            w->s503++;
            break;
        case 504:
            w->s504++;
            break;
        case 404:
            w->s404++;
            break;
        default:
            w->other++;
            break;
        }
    }
    (void)pthread_mutex_unlock(&l->mu);
}

/* ---- the faults ---- */

enum fault { F_GATEWAY, F_CONTROLLER, F_EMULATOR, F_REDIS, F_CLIENT };
static const char *const fault_name[] = {"gateway A", "controller leader", "emulator", "redis",
                                         "client A"};

#define MAX_ACKED 1024

struct run {
    struct stack *s;
    struct client cli[2];
    struct loader ld;
    struct tunnel acked[MAX_ACKED];
    size_t nacked;
};

/* A tunnel through the API (no listener), TTL 10 min, remembered as acknowledged. */
static long
create_acked(struct run *r, int gw)
{
    struct tunnel t;
    long st = api_create(r->s, gw, "{\"ttl\":600}", &t);
    if (st == 201 && r->nacked < MAX_ACKED)
        r->acked[r->nacked++] = t;
    return st;
}

static void
run_fault(struct run *r, enum fault f)
{
    struct stack *s = r->s;
    /* acknowledged right before the fault */
    assert_int_equal(create_acked(r, f == F_GATEWAY ? 1 : 0), 201);
    size_t acked_before = r->nacked;
    /* the controller fault kills the leader (after a store outage one may still be taking the
     * lease) */
    int lead = -1;
    for (int i = 0; i < 100 && lead < 0; i++) {
        lead = leader_of(s, 0) == 1 ? 0 : leader_of(s, 1) == 1 ? 1 : -1;
        if (lead < 0)
            nap_ms(100);
    }
    assert_true(lead >= 0);
    uint32_t kill_at = ld_now(&r->ld);
    uint64_t kill_ms = ahg_now_ms();
    unsigned restart_after = 1000; /* a supervisor restarting the process */
    switch (f) {
    case F_GATEWAY:
        ts_kill(&s->gw[0]);
        restart_after = 3000;
        break;
    case F_CONTROLLER:
        ts_kill(&s->ctl[lead]);
        break;
    case F_EMULATOR:
        ts_kill(&s->emu);
        break;
    case F_REDIS:
        ts_kill(&s->redis.proc);
        break;
    case F_CLIENT:
        ts_kill(&r->cli[0].p);
        break;
    }
    bool restarted = false;
    long long takeover_ms = -1;
    unsigned api_ok = 0, api_asked = 0, api_fail[4] = {0}; /* no answer, 502, 503, other */
    uint64_t api_last_fail = 0;
    unsigned client_starts = 0;
    uint64_t end = kill_ms + 60000;
    int gw = 0;
    long last_st[2] = {0, 0};
    while (ahg_now_ms() < end) {
        uint64_t now = ahg_now_ms();
        if (f == F_CONTROLLER && takeover_ms < 0 && leader_of(s, !lead) == 1)
            takeover_ms = (long long)(ahg_now_ms() - kill_ms);
        if (!restarted && now - kill_ms >= restart_after &&
            (f != F_CONTROLLER || takeover_ms >= 0)) {
            switch (f) {
            case F_GATEWAY:
                gw_start(s, 0);
                break;
            case F_CONTROLLER:
                ctl_start(s, lead);
                break;
            case F_EMULATOR:
                emu_start(s);
                break;
            case F_REDIS:
                redis_start(s, s->redis.port);
                break;
            case F_CLIENT:
                break;
            }
            restarted = true;
        }
        if (f == F_CLIENT && !ts_alive(&r->cli[0].p)) {
            /* the supervisor restarts it with the same configuration until it runs */
            client_starts++;
            if (!client_start(s, &r->cli[0]))
                nap_ms(500);
        }
        /* the management API meanwhile, alternating between the gateways' api hosts */
        long st = create_acked(r, gw);
        last_st[gw] = st;
        gw = !gw;
        api_asked++;
        if (st == 201) {
            api_ok++;
        } else {
            api_fail[st == 0 ? 0 : st == 502 ? 1 : st == 503 ? 2 : 3]++;
            api_last_fail = ahg_now_ms();
        }
        /* recovered: the tunnels serve, and both controllers (one behind each gateway) create */
        if (restarted && ld_healthy(&r->ld, kill_at) && last_st[0] == 201 && last_st[1] == 201 &&
            (f != F_CLIENT || ts_alive(&r->cli[0].p)))
            break;
        nap_ms(200);
    }
    uint32_t until = ld_now(&r->ld);
    struct window w;
    ld_window(&r->ld, kill_at, until, &w);
    (void)printf("rel: fault %s: %zu requests in %u ms after the kill, %zu ok; failed: %zu no "
                 "connection, %zu no answer, %zu 502, %zu 503, %zu 504, %zu 404, %zu other",
                 fault_name[f], w.total, until - kill_at, w.ok, w.noconn, w.noanswer, w.s502,
                 w.s503, w.s504, w.s404, w.other);
    if (w.failed)
        (void)printf("; failures from +%u to +%u ms, served again from +%u ms\n", w.first_fail,
                     w.last_fail, w.restored);
    else
        (void)printf("; no failed request\n");
    (void)printf("rel: fault %s: API creates %u/%u ok (%u no answer, %u 502, %u 503, %u other)",
                 fault_name[f], api_ok, api_asked, api_fail[0], api_fail[1], api_fail[2],
                 api_fail[3]);
    if (api_last_fail)
        (void)printf(", failing until +%llu ms", (unsigned long long)(api_last_fail - kill_ms));
    (void)printf("\n");
    if (f == F_CONTROLLER)
        (void)printf("rel: fault %s: controller %c (leader) killed, controller %c took the lease "
                     "%lld ms after the kill\n",
                     fault_name[f], 'A' + lead, 'A' + !lead, takeover_ms);
    if (f == F_CLIENT)
        (void)printf("rel: fault %s: started %u time(s) with the same subdomain before it ran "
                     "(the controller takes over a subdomain of the same key without listener)\n",
                     fault_name[f], client_starts);
    assert_true(restarted);
    assert_true(ld_healthy(&r->ld, kill_at));
    assert_true(api_ok > 0);
    if (f == F_CONTROLLER)
        assert_true(takeover_ms >= 0);
    /* the one acknowledged right before the fault is still there */
    const struct tunnel *t = &r->acked[acked_before - 1];
    assert_int_equal(api_call(s, 1, "GET", t->sid), 200);
}

static void
check_acked(struct run *r)
{
    size_t ok = 0, routes = 0, sessions = 0, hcs = 0;
    for (size_t i = 0; i < r->nacked; i++) {
        const struct tunnel *t = &r->acked[i];
        char key[160];
        ok += api_call(r->s, (int)(i % 2), "GET", t->sid) == 200;
        (void)snprintf(key, sizeof(key), "ahg:route:%s", t->id);
        routes += redis_exists(r->s, key) == 1;
        (void)snprintf(key, sizeof(key), "ahg:session:%s", t->sid);
        sessions += redis_exists(r->s, key) == 1;
        hcs += arm_hc_status(r->s, t->hc) == 200;
    }
    (void)printf("rel: faults: %zu tunnels acknowledged (201) before or during the faults; after "
                 "recovery %zu answer GET 200, %zu route records, %zu session records, %zu "
                 "Hybrid Connections in the emulator\n",
                 r->nacked, ok, routes, sessions, hcs);
    assert_int_equal(ok, r->nacked);
    assert_int_equal(routes, r->nacked);
    assert_int_equal(sessions, r->nacked);
    assert_int_equal(hcs, r->nacked);
}

static void
test_faults_under_load(void **state)
{
    (void)state;
    struct run *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->s = stack_start("rel-faults", true);
    const char *subs[] = {"fault-a", "fault-b"};
    for (int i = 0; i < 2; i++) {
        (void)snprintf(r->cli[i].sub, sizeof(r->cli[i].sub), "%s", subs[i]);
        r->cli[i].gw = i;
        if (!client_start(r->s, &r->cli[i]))
            fail_msg("client %s did not start:\n%s", subs[i], ts_output(&r->cli[i].p));
    }
    ld_start(&r->ld, r->s, r->cli, 2, rel_long() ? 900 : 170);
    for (int i = 0; i < 200 && !ld_healthy(&r->ld, 0); i++)
        nap_ms(100);
    assert_true(ld_healthy(&r->ld, 0));
    unsigned rounds = rel_long() ? 3 : 1;
    for (unsigned k = 0; k < rounds; k++)
        for (enum fault f = F_GATEWAY; f <= F_CLIENT; f++)
            run_fault(r, f);
    struct window all;
    ld_window(&r->ld, 0, ld_now(&r->ld), &all);
    ld_stop(&r->ld);
    (void)printf("rel: faults: %zu requests in all, %zu ok\n", all.total, all.ok);
    check_acked(r);
    for (int i = 0; i < 2; i++)
        ts_kill(&r->cli[i].p);
    stack_stop(r->s, true);
    free(r);
}

/* ---- reconnect storm through the controller ---- */

struct storm {
    struct stack *s;
    struct tunnel *t;
    size_t n;
    atomic_size_t next, created;
};

static void *
storm_create(void *arg)
{
    struct storm *st = arg;
    for (size_t i; (i = atomic_fetch_add(&st->next, 1)) < st->n;)
        if (api_create(st->s, (int)(i % 2), "{\"ttl\":600}", &st->t[i]) == 201)
            atomic_fetch_add(&st->created, 1);
    return NULL;
}

static void *
storm_delete(void *arg)
{
    struct storm *st = arg;
    for (size_t i; (i = atomic_fetch_add(&st->next, 1)) < st->n;)
        if (api_call(st->s, (int)(i % 2), "DELETE", st->t[i].sid) == 204)
            atomic_fetch_add(&st->created, 1);
    return NULL;
}

static void
storm_parallel(struct storm *st, void *(*fn)(void *))
{
    pthread_t thr[4];
    atomic_store(&st->next, 0);
    atomic_store(&st->created, 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&thr[i], NULL, fn, st), 0);
    for (int i = 0; i < 4; i++)
        (void)pthread_join(thr[i], NULL);
}

static struct tws *storm_ws;
static size_t storm_nws;

struct rss {
    long ctl, emu, gw;
};

static void
rss_of(const struct stack *s, struct rss *m)
{
    m->ctl = rel_rss_kb(s->ctl[0].pid) + rel_rss_kb(s->ctl[1].pid);
    m->emu = rel_rss_kb(s->emu.pid);
    m->gw = rel_rss_kb(s->gw[0].pid) + rel_rss_kb(s->gw[1].pid);
}

/* One storm round: n listeners (one per session) connect at once; the count that opened. */
static size_t
storm_listen(struct rel *rl, const struct storm *st, uint64_t *ms)
{
    uint64_t t0 = ahg_now_ms();
    for (size_t i = 0; i < st->n; i++)
        rel_listen(rl, &storm_ws[i], st->t[i].hc, st->t[i].token);
    struct rel_set set = {storm_ws, st->n};
    assert_true(th_wait(&rl->t, rel_settled, &set, 60000));
    *ms = ahg_now_ms() - t0;
    size_t opened = 0;
    for (size_t i = 0; i < st->n; i++)
        opened += storm_ws[i].open && !storm_ws[i].closed;
    return opened;
}

/* Drops every listener and waits until the emulator counts none. */
static void
storm_drop(struct rel *rl, const struct stack *s)
{
    for (size_t i = 0; i < storm_nws; i++)
        tws_free(&storm_ws[i]);
    uint64_t end = ahg_now_ms() + 30000;
    while (rel_metric_at(s->emu_admin, "ahg_emulator_listeners") != 0 && ahg_now_ms() < end)
        th_run(&rl->t, 100);
    assert_int_equal(rel_metric_at(s->emu_admin, "ahg_emulator_listeners"), 0);
}

static void
test_storm_through_controller(void **state)
{
    (void)state;
    const size_t n = 1000;
    if (!rel_raise_nofile((unsigned long)n * 2 + 512))
        skip();
    struct storm st = {.n = n};
    st.s = stack_start("rel-fstorm", false);
    st.t = calloc(n, sizeof(*st.t));
    storm_ws = calloc(n, sizeof(*storm_ws));
    assert_non_null(st.t);
    assert_non_null(storm_ws);
    storm_nws = n;
    struct rel rl;
    rel_init(&rl, "rel-fstorm-loop");
    rl.t.port = st.s->relay_port;
    struct rss base, peak = {0}, after = {0}, first = {0};
    rss_of(st.s, &base);
    (void)printf("rel: storm via controller: RSS KiB baseline: controllers %ld, emulator %ld, "
                 "gateways %ld\n",
                 base.ctl, base.emu, base.gw);
    unsigned rounds = rel_long() ? 6 : 2;
    for (unsigned round = 0; round < rounds; round++) {
        /* 1,000 clients create their tunnels through the API (4 at a time) ... */
        uint64_t t0 = ahg_now_ms();
        storm_parallel(&st, storm_create);
        size_t created = atomic_load(&st.created);
        uint64_t create_ms = ahg_now_ms() - t0;
        /* ... connect at once, lose the relay, and reconnect at once */
        uint64_t ms1 = 0, ms2 = 0;
        size_t open1 = storm_listen(&rl, &st, &ms1);
        storm_drop(&rl, st.s);
        size_t open2 = storm_listen(&rl, &st, &ms2);
        long long counted = rel_metric_at(st.s->emu_admin, "ahg_emulator_listeners");
        rss_of(st.s, &peak);
        storm_drop(&rl, st.s);
        /* ... and release them */
        storm_parallel(&st, storm_delete);
        size_t deleted = atomic_load(&st.created);
        rss_of(st.s, &after);
        if (round == 0)
            first = after;
        (void)printf("rel: storm via controller round %u: %zu/%zu tunnels created in %llu ms; "
                     "listeners open %zu (%llu ms), after the reconnect storm %zu (%llu ms, "
                     "emulator counts %lld); %zu deleted; RSS KiB at the peak / after: "
                     "controllers %ld / %ld, emulator %ld / %ld, gateways %ld / %ld\n",
                     round + 1, created, n, (unsigned long long)create_ms, open1,
                     (unsigned long long)ms1, open2, (unsigned long long)ms2, counted, deleted,
                     peak.ctl, after.ctl, peak.emu, after.emu, peak.gw, after.gw);
        assert_int_equal(created, n);
        assert_int_equal(open1, n);
        assert_int_equal(open2, n);
        assert_int_equal(counted, (long long)n);
        assert_int_equal(deleted, n);
    }
    /* what a round leaves behind is reused by the next one (no growth from round to round; the
     * ASan quarantine alone is 4 MB a process, and controllers and gateways are pairs); leaks
     * are LeakSanitizer's job at the SIGTERM below */
    assert_true(after.ctl - first.ctl < 24L * 1024);
    assert_true(after.emu - first.emu < 16L * 1024);
    assert_true(after.gw - first.gw < 24L * 1024);
    free(storm_ws);
    storm_ws = NULL;
    free(st.t);
    ahg_timer_stop(&rl.t.tick);
    ahg_loop_free(rl.t.loop);
    ts_rmtree(rl.dir);
    stack_stop(st.s, true);
}

int
main(void)
{
    (void)signal(SIGPIPE, SIG_IGN);
    (void)setvbuf(stdout, NULL, _IOLBF, 0);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_faults_under_load),
        cmocka_unit_test(test_storm_through_controller),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
