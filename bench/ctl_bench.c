/*
 * ctl-bench: measures azhexgate-controller (a child process) against the emulator (in this
 * process, so the bench can set its ARM latency and plant Hybrid Connections) and a real
 * redis-server (a child process):
 *
 *   1. POST /api/tunnels latency with a warm pool while every ARM call takes 2 s;
 *   2. the same without a pool (every POST waits for ARM PUT);
 *   3. 10,000 live sessions (records in Redis, HCs in the emulator): the controller's RSS and
 *      the duration of reconcile passes.
 *
 *   ctl-bench CONTROLLER_BIN OUT_DIR [SESSIONS] [SAMPLES]
 * writes OUT_DIR/controller.json and OUT_DIR/controller.md. bench/controller.sh runs it.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "ahg/config.h"
#include "ahg/egress.h"
#include "ahg/err.h"
#include "ahg/log.h"
#include "ahg/net.h"
#include "ahg/store.h"
#include "emu/emulator.h"
#include "emu_int.h"

extern char **environ;

#define KEY "bench-key-0123456789"

static struct {
    struct ahg_loop *loop;
    struct ahg_config *cfg;
    struct emu *e;
    struct ahg_egress *eg;
    struct ahg_store *store;
    pid_t redis, ctl;
    int redis_port, api_port, admin_port;
    char dir[256];
    const char *ctl_bin;
} g;

static void
die(const char *msg)
{
    (void)fprintf(stderr, "ctl-bench: %s\n", msg);
    if (g.ctl > 0)
        (void)kill(g.ctl, SIGKILL);
    if (g.redis > 0)
        (void)kill(g.redis, SIGKILL);
    exit(1);
}

static int
free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        die("no free port");
    (void)close(fd);
    return ntohs(a.sin_port);
}

/* Runs the loop until cond() or ms passed. */
static bool
run_until(bool (*cond)(void *), void *arg, uint64_t ms)
{
    uint64_t end = ahg_now_ms() + ms;
    while (!(cond && cond(arg))) {
        if (ahg_now_ms() >= end)
            return cond ? cond(arg) : true;
        ahg_loop_run_once(g.loop);
    }
    return true;
}

static void
tick(struct ahg_timer *t)
{
    ahg_timer_start(t, 5);
}

static pid_t
spawn(const char *const argv[], const char *out)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid = 0;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)(uintptr_t)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        die("cannot spawn a child process");
    return pid;
}

static bool
file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    (void)fclose(f);
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

static int
kv_int(const char *path, const char *key)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[256];
    int v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, key, kl) && line[kl] == '=')
            v = atoi(line + kl + 1);
    (void)fclose(f);
    return v;
}

/* ---- HTTP through egress ---- */

struct hresp {
    bool done;
    int status;
    char *body;
};

static void
on_http(const struct ahg_egress_resp *r, void *ud)
{
    struct hresp *h = ud;
    h->status = r->err == AHG_OK ? r->status : -1;
    h->body = strdup(r->body ? r->body : "");
    h->done = true;
}

static bool
hdone(void *arg)
{
    return ((struct hresp *)arg)->done;
}

static void
http(const char *method, int port, const char *path, struct hresp *h)
{
    memset(h, 0, sizeof(*h));
    char url[256];
    (void)snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    const char *hdrs[] = {"X-AzHexGate-ApiKey: " KEY, NULL};
    struct ahg_egress_req q = {.method = method, .url = url, .headers = hdrs};
    if (ahg_egress_request(g.eg, &q, on_http, h, NULL) != AHG_OK)
        die("egress");
    if (!run_until(hdone, h, 60000))
        die("no HTTP answer");
}

static double
metric(const char *text, const char *name)
{
    const char *p = text;
    size_t n = strlen(name);
    while ((p = strstr(p, name)) != NULL) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p += n;
    }
    return -1;
}

/* ---- store ---- */

struct sw {
    unsigned pending;
    long long integer;
    int err;
};

static void
on_store(struct ahg_store *s, int err, const struct ahg_store_reply *rep, void *ud)
{
    (void)s;
    struct sw *w = ud;
    w->pending--;
    if (err)
        w->err = err;
    if (err == AHG_OK && rep->type == AHG_STORE_INT)
        w->integer = rep->integer;
}

static bool
sw_idle(void *arg)
{
    return ((struct sw *)arg)->pending == 0;
}

static long long
scard(const char *key)
{
    struct sw w = {.pending = 1};
    if (ahg_store_scard(g.store, key, on_store, &w) != AHG_OK || !run_until(sw_idle, &w, 5000))
        die("redis");
    return w.integer;
}

static void
del(const char *key)
{
    struct sw w = {.pending = 1};
    if (ahg_store_del(g.store, key, on_store, &w) != AHG_OK || !run_until(sw_idle, &w, 5000))
        die("redis");
}

/* ---- the controller ---- */

static void
ctl_start(unsigned pool, const char *interval)
{
    char ready[300], out[300], f_ready[400], f_store[128], f_arm[96], f_id[160], f_ep[96],
        f_pool[64], f_int[64];
    (void)snprintf(ready, sizeof(ready), "%s/ctl.ready", g.dir);
    (void)unlink(ready);
    (void)snprintf(out, sizeof(out), "%s/ctl.log", g.dir);
    (void)snprintf(f_ready, sizeof(f_ready), "--controller-ready-file=%s", ready);
    (void)snprintf(f_store, sizeof(f_store), "--controller-store=redis://127.0.0.1:%d",
                   g.redis_port);
    (void)snprintf(f_arm, sizeof(f_arm), "--controller-arm-endpoint=http://127.0.0.1:%d",
                   emu_mgmt_port(g.e));
    (void)snprintf(f_id, sizeof(f_id),
                   "--controller-identity-endpoint=http://127.0.0.1:%d/metadata/identity/oauth2/"
                   "token",
                   emu_identity_port(g.e));
    (void)snprintf(f_ep, sizeof(f_ep), "--controller-relay-endpoint=ws://127.0.0.1:%d/",
                   emu_relay_port(g.e));
    (void)snprintf(f_pool, sizeof(f_pool), "--controller-pool-size=%u", pool);
    (void)snprintf(f_int, sizeof(f_int), "--controller-reconcile-interval=%s", interval);
    const char *argv[] = {g.ctl_bin,
                          "--controller-listen-port=0",
                          "--controller-admin-port=0",
                          "--controller-identity-kind=imds",
                          "--controller-arm-subscription=00000000-0000-0000-0000-000000000000",
                          "--controller-arm-resource-group=azhexgate",
                          "--controller-arm-namespace=ahg-bench",
                          "--controller-auth-keys=" KEY,
                          "--controller-quota=100000",
                          "--controller-arm-wait=60s",
                          "--controller-reconcile-lease-ttl=3s",
                          "--log-level=warn",
                          f_ready,
                          f_store,
                          f_arm,
                          f_id,
                          f_ep,
                          f_pool,
                          f_int,
                          NULL};
    g.ctl = spawn(argv, out);
    uint64_t end = ahg_now_ms() + 15000;
    while (!file_has(ready, "ready=1")) {
        if (ahg_now_ms() > end)
            die("the controller did not start (see its log)");
        (void)run_until(NULL, NULL, 50);
    }
    g.api_port = kv_int(ready, "api_port");
    g.admin_port = kv_int(ready, "admin_port");
    /* ready = keys loaded and leader */
    for (;;) {
        struct hresp h;
        http("GET", g.admin_port, "/metrics", &h);
        double leader = metric(h.body, "azhexgate_controller_leader");
        double age = metric(h.body, "azhexgate_controller_relay_keys_age_seconds");
        free(h.body);
        if (leader == 1 && age >= 0)
            break;
        if (ahg_now_ms() > end)
            die("the controller did not become ready");
        (void)run_until(NULL, NULL, 100);
    }
}

static void
ctl_stop(void)
{
    (void)kill(g.ctl, SIGTERM);
    int st = 0;
    for (int i = 0; i < 200; i++) {
        (void)run_until(NULL, NULL, 50); /* the emulator keeps answering meanwhile */
        if (waitpid(g.ctl, &st, WNOHANG) == g.ctl) {
            g.ctl = 0;
            return;
        }
    }
    (void)kill(g.ctl, SIGKILL);
    (void)waitpid(g.ctl, &st, 0);
    g.ctl = 0;
}

static long
rss_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    (void)snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, field, n))
            v = strtol(line + n + 1, NULL, 10);
    if (f)
        (void)fclose(f);
    return v;
}

static int
cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double
pct(double *v, size_t n, double p)
{
    qsort(v, n, sizeof(*v), cmp_d);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i];
}

/* POSTs n tunnels one after the other; latencies in ms into v. */
static void
post_series(double *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct hresp h;
        uint64_t t0 = ahg_now_ms();
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        http("POST", g.api_port, "/api/tunnels", &h);
        clock_gettime(CLOCK_MONOTONIC, &b);
        (void)t0;
        if (h.status != 201) {
            (void)fprintf(stderr, "POST: %d %s\n", h.status, h.body);
            die("POST failed");
        }
        free(h.body);
        v[i] = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    }
}

static bool
pool_at_least(void *arg)
{
    static uint64_t last;
    if (ahg_now_ms() - last < 200)
        return false;
    last = ahg_now_ms();
    return scard("ahg:pool") >= *(long long *)arg;
}

int
main(int argc, char **argv)
{
    if (argc < 3) {
        (void)fprintf(stderr, "usage: ctl-bench CONTROLLER_BIN OUT_DIR [SESSIONS] [SAMPLES]\n");
        return 64;
    }
    g.ctl_bin = argv[1];
    const char *outdir = argv[2];
    unsigned sessions = argc > 3 ? (unsigned)atoi(argv[3]) : 10000;
    unsigned samples = argc > 4 ? (unsigned)atoi(argv[4]) : 20;
    if (samples < 3 || samples > 200 || sessions > 100000)
        return 64;
    ahg_log_setup("ctl-bench", AHG_LOG_FORMAT_TEXT, AHG_LOG_LVL_ERROR, 2);
    (void)snprintf(g.dir, sizeof(g.dir), "/tmp/ctl-bench-XXXXXX");
    if (!mkdtemp(g.dir))
        die("mkdtemp");

    /* the emulator, in this process */
    const char *eargv[] = {"emu",
                           "--emulator-namespace=ahg-bench",
                           "--emulator-relay-port=0",
                           "--emulator-mgmt-port=0",
                           "--emulator-identity-port=0",
                           "--emulator-admin-port=0",
                           NULL};
    static struct ahg_config_spec sp = {.prog = "emu", .summary = "bench", .opts = emu_opts};
    sp.nopts = emu_nopts;
    char err[512];
    char *const envp[] = {NULL};
    if (ahg_config_load(&g.cfg, &sp, 6, (char *const *)(uintptr_t)eargv, envp, err, sizeof(err)) !=
        AHG_OK)
        die(err);
    g.loop = ahg_loop_new(NULL);
    g.e = emu_new(g.loop, g.cfg, err, sizeof(err));
    if (!g.e)
        die(err);
    struct ahg_timer t;
    ahg_timer_init(&t, g.loop, tick, NULL);
    ahg_timer_start(&t, 5);
    g.eg = ahg_egress_new(g.loop, NULL);

    /* redis-server */
    g.redis_port = free_port();
    char port[16], rlog[300];
    (void)snprintf(port, sizeof(port), "%d", g.redis_port);
    (void)snprintf(rlog, sizeof(rlog), "%s/redis.log", g.dir);
    const char *rargv[] = {"redis-server", "--port", port,           "--bind", "127.0.0.1",
                           "--save",       "",       "--appendonly", "no",     NULL};
    g.redis = spawn(rargv, rlog);
    char rurl[64];
    (void)snprintf(rurl, sizeof(rurl), "redis://127.0.0.1:%d", g.redis_port);
    int rc = 0;
    g.store = ahg_store_new_url(g.loop, rurl, NULL, false, &rc);
    uint64_t end = ahg_now_ms() + 10000;
    while (g.store && !ahg_store_is_up(g.store) && ahg_now_ms() < end)
        ahg_loop_run_once(g.loop);
    if (!g.store || !ahg_store_is_up(g.store))
        die("redis-server did not start");

    /* 1. warm pool, ARM at 2 s */
    g.e->lat.arm_ms = 2000;
    double *pool_ms = calloc(samples, sizeof(double));
    double *nopool_ms = calloc(samples, sizeof(double));
    ctl_start(samples + 2, "1h");
    long long want = samples;
    if (!run_until(pool_at_least, &want, 120000))
        die("the pool did not fill");
    post_series(pool_ms, samples);
    ctl_stop();

    /* 2. no pool, ARM at 2 s */
    del("ahg:pool");
    ctl_start(0, "1h");
    unsigned nsamples_nopool = samples < 5 ? samples : 5;
    post_series(nopool_ms, nsamples_nopool);
    ctl_stop();

    /* 3. many sessions: HCs planted in the emulator, records in Redis; ARM without delay */
    g.e->lat.arm_ms = 0;
    while (g.e->ns.hcs) /* the namespace holds at most 10,000 HCs */
        (void)emu_hc_delete(g.e, g.e->ns.hcs->name);
    del("ahg:sessions");
    del("ahg:pool");
    ctl_start(0, "2s");
    long rss0 = rss_kb(g.ctl, "VmRSS:");
    struct sw w = {0};
    char md[160];
    for (unsigned i = 0; i < sessions; i++) {
        char sid[40], hc[40], key[80], rec[400];
        (void)snprintf(sid, sizeof(sid), "%032x", i + 1);
        (void)snprintf(hc, sizeof(hc), "ahg-b%07u", i);
        (void)snprintf(md, sizeof(md),
                       "{\"owner\":\"azhexgate\",\"instance\":\"default\",\"sid\":\"%s\"}", sid);
        bool created = false;
        int e2 = 0;
        if (!emu_hc_put(g.e, hc, true, md, &created, &e2))
            die("emu_hc_put");
        long long now = (long long)time(NULL);
        (void)snprintf(rec, sizeof(rec),
                       "{\"v\":1,\"session_id\":\"%s\",\"id\":\"%u\",\"hc\":\"%s\","
                       "\"keyid\":\"0000000000000000\",\"created_at\":%lld,\"renewed_at\":%lld,"
                       "\"expires_at\":%lld,\"ttl\":3600}",
                       sid, 10000000u + i, hc, now, now, now + 3600);
        (void)snprintf(key, sizeof(key), "ahg:session:%s", sid);
        w.pending += 2;
        if (ahg_store_set(g.store, key, rec, strlen(rec), 3600000, 0, on_store, &w) != AHG_OK ||
            ahg_store_sadd(g.store, "ahg:sessions", sid, on_store, &w) != AHG_OK)
            die("redis");
        if (w.pending > 512 && !run_until(sw_idle, &w, 10000))
            die("redis");
    }
    if (!run_until(sw_idle, &w, 10000) || w.err)
        die("redis");
    /* wait for three passes after the load */
    struct hresp h;
    http("GET", g.admin_port, "/metrics", &h);
    double c0 = metric(h.body, "azhexgate_controller_reconcile_seconds_count");
    double s0 = metric(h.body, "azhexgate_controller_reconcile_seconds_sum");
    free(h.body);
    double c1 = c0, s1 = s0;
    long rss_max = 0;
    end = ahg_now_ms() + 120000;
    while (c1 < c0 + 3 && ahg_now_ms() < end) {
        (void)run_until(NULL, NULL, 100);
        long r = rss_kb(g.ctl, "VmRSS:");
        if (r > rss_max)
            rss_max = r;
        http("GET", g.admin_port, "/metrics", &h);
        c1 = metric(h.body, "azhexgate_controller_reconcile_seconds_count");
        s1 = metric(h.body, "azhexgate_controller_reconcile_seconds_sum");
        free(h.body);
    }
    if (c1 < c0 + 3)
        die("no reconcile passes");
    /* the first pass after the load may have started before it: skip it */
    double pass_ms = (s1 - s0) / (c1 - c0) * 1000.0;
    long rss1 = rss_kb(g.ctl, "VmRSS:");
    long hwm = rss_kb(g.ctl, "VmHWM:");
    size_t hcs_left = 0;
    for (struct emu_hc *x = g.e->ns.hcs; x; x = x->next)
        hcs_left++;
    ctl_stop();

    double p50_pool = pct(pool_ms, samples, 0.5), p90_pool = pct(pool_ms, samples, 0.9);
    double max_pool = pool_ms[samples - 1];
    double p50_nopool = pct(nopool_ms, nsamples_nopool, 0.5);
    char path[512];
    (void)snprintf(path, sizeof(path), "%s/controller.json", outdir);
    FILE *f = fopen(path, "w");
    if (!f)
        die("cannot write the results");
    (void)fprintf(f,
                  "{\"arm_latency_ms\":2000,\"post_samples\":%u,"
                  "\"post_warm_pool_ms\":{\"p50\":%.2f,\"p90\":%.2f,\"max\":%.2f},"
                  "\"post_no_pool_ms\":{\"samples\":%u,\"p50\":%.2f},"
                  "\"sessions\":%u,\"rss_kb_idle\":%ld,\"rss_kb_after_passes\":%ld,"
                  "\"rss_kb_max_sampled\":%ld,\"rss_kb_hwm\":%ld,\"reconcile_pass_ms_avg\":%.1f,"
                  "\"reconcile_passes_measured\":%.0f,\"hcs_kept\":%zu}\n",
                  samples, p50_pool, p90_pool, max_pool, nsamples_nopool, p50_nopool, sessions,
                  rss0, rss1, rss_max, hwm, pass_ms, c1 - c0, hcs_left);
    (void)fclose(f);
    (void)snprintf(path, sizeof(path), "%s/controller.md", outdir);
    f = fopen(path, "w");
    if (!f)
        die("cannot write the results");
    (void)fprintf(f,
                  "# Controller benchmark\n\n"
                  "Emulator in the bench process, `redis-server` and `azhexgate-controller` as "
                  "child processes on 127.0.0.1 (`bench/controller.sh`).\n\n"
                  "| measure | value |\n|---|---|\n"
                  "| ARM latency (every call) | 2000 ms |\n"
                  "| `POST /api/tunnels` p50, warm pool (%u samples) | %.2f ms |\n"
                  "| `POST /api/tunnels` p90 / max, warm pool | %.2f / %.2f ms |\n"
                  "| `POST /api/tunnels` p50, no pool (%u samples) | %.2f ms |\n"
                  "| live sessions (records in Redis, HCs in ARM) | %u |\n"
                  "| controller RSS idle / after passes / HWM | %ld / %ld / %ld KiB |\n"
                  "| reconcile pass (mean of %.0f, %u sessions, ARM list of %zu HCs) | %.1f ms |\n",
                  samples, p50_pool, p90_pool, max_pool, nsamples_nopool, p50_nopool, sessions,
                  rss0, rss1, hwm, c1 - c0, sessions, hcs_left, pass_ms);
    (void)fclose(f);
    (void)printf("warm pool p50 %.2f ms, no pool p50 %.2f ms, %u sessions: RSS %ld KiB (HWM %ld), "
                 "pass %.1f ms\n",
                 p50_pool, p50_nopool, sessions, rss1, hwm, pass_ms);

    free(pool_ms);
    free(nopool_ms);
    (void)kill(g.redis, SIGKILL);
    (void)waitpid(g.redis, NULL, 0);
    ahg_timer_stop(&t);
    ahg_store_free(g.store);
    ahg_egress_free(g.eg);
    ahg_loop_free(g.loop);
    emu_free(g.e);
    ahg_config_free(g.cfg);
    (void)unlink(rlog);
    char cl[300];
    (void)snprintf(cl, sizeof(cl), "%s/ctl.log", g.dir);
    (void)unlink(cl);
    (void)snprintf(cl, sizeof(cl), "%s/ctl.ready", g.dir);
    (void)unlink(cl);
    (void)rmdir(g.dir);
    return 0;
}
