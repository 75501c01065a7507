/*
 * gw-bench: the gateway's own cost, measured in one process on one event loop: the emulator's
 * relay, a client tunnel (cli_tunnel), a local app, the in-memory store and the gateway. Every
 * component shares the one loop thread, so the figures are the cost of the whole chain on one
 * core, compared with the local app reached directly on the same loop:
 *
 *   1. added latency: 2,000 sequential small GETs (one connection each), p50/p99, direct vs
 *      through the gateway;
 *   2. small responses at 64 connections for 5 s (one request per connection), req/s;
 *   3. 1 GiB downloaded through the gateway, MB/s;
 *   4. the process's peak RSS (all components together).
 *
 * Usage: gw-bench [OUT_DIR]   (default bench/results); writes gateway.json and gateway.md.
 *        gw-bench OUT_DIR lookup   only the route-lookup figure (the hot tunnel before and after
 *                                  10,000 more tunnels, as in 4 of the full run); writes
 *                                  gateway-lookup.json (bench/run.sh's many-tunnels step).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "ahg/config.h"
#include "ahg/err.h"
#include "ahg/http.h"
#include "ahg/httpd.h"
#include "ahg/log.h"
#include "ahg/net.h"
#include "ahg/sas.h"
#include "ahg/store.h"
#include "cli/tunnel.h"
#include "emu/emulator.h"
#include "gw/gateway.h"

#define KEY    "XmNd2Wq7Lr4Tz9Pb1Vc6Ys3Hf8Jk0Ga5Ue2Io7Rw4Q="
#define RULE   "RootManageSharedAccessKey"
#define NSHOST "gwbench.servicebus.windows.net"
#define GIB    ((uint64_t)1024 * 1024 * 1024)
#define NSEQ   2000
#define NCONC  64

static struct ahg_loop *loop;
static int app_port, gw_port;

/* ---- local app: /small (100 B), /size/N ---- */

struct gen {
    uint64_t total, off;
};

static void
gen_pump(struct ahg_httpd_req *r)
{
    struct gen *g = ahg_httpd_req_ud(r);
    static unsigned char buf[65536];
    while (g->off < g->total && ahg_httpd_resp_writable(r)) {
        size_t k = g->total - g->off < sizeof(buf) ? (size_t)(g->total - g->off) : sizeof(buf);
        if (ahg_httpd_resp_write(r, buf, k) != AHG_OK)
            return;
        g->off += k;
    }
    if (g->off == g->total) {
        g->off++;
        (void)ahg_httpd_resp_end(r);
    }
}

static void
gen_finish(struct ahg_httpd_req *r, bool completed)
{
    (void)completed;
    free(ahg_httpd_req_ud(r));
}

static const struct ahg_httpd_req_cbs gen_cbs = {.on_drain = gen_pump, .on_finish = gen_finish};

static void
app_request(struct ahg_httpd_req *r)
{
    const char *path = ahg_httpd_req_path(r);
    if (strncmp(path, "/size/", 6) != 0) {
        static const char body[100] = {0};
        (void)ahg_httpd_respond(r, 200, "application/octet-stream", body, sizeof(body), NULL);
        return;
    }
    struct gen *g = calloc(1, sizeof(*g));
    if (!g) {
        (void)ahg_httpd_respond_error(r, 503, "UNAVAILABLE", "out of memory", false);
        return;
    }
    g->total = strtoull(path + 6, NULL, 10);
    ahg_httpd_req_set_cbs(r, &gen_cbs, g);
    struct ahg_http_head *h = ahg_http_head_new_response(200, NULL, NULL);
    (void)ahg_httpd_resp_begin(r, h, (int64_t)g->total);
    gen_pump(r);
}

/* ---- client: one request per connection ---- */

struct req {
    struct ahg_conn *c;
    struct ahg_http_parser *p;
    char raw[256];
    uint64_t start, got;
    bool done, failed;
    int slot;
};

static unsigned done_count, fail_count;
static void (*on_done)(struct req *q);
/* Host of the requests (the hot tunnel unless the many-routes phase says otherwise). */
static char req_host[64] = "b1.bench.test";

static int
body_cb(void *ud, const char *p, size_t n)
{
    (void)p;
    ((struct req *)ud)->got += n;
    return AHG_OK;
}

static void
req_connect(struct ahg_conn *c)
{
    struct req *q = ahg_conn_ud(c);
    (void)ahg_conn_write(c, q->raw, strlen(q->raw));
}

static size_t
req_data(struct ahg_conn *c, const unsigned char *p, size_t n)
{
    struct req *q = ahg_conn_ud(c);
    size_t used = 0;
    if (q->done)
        return n;
    if (!ahg_http_parser_head(q->p)) {
        int rc = ahg_http_parser_feed(q->p, (const char *)p, n, &used);
        if (rc == AHG_EAGAIN)
            return n;
        if (rc != AHG_OK || ahg_http_parser_head(q->p)->status != 200) {
            q->failed = true;
            ahg_conn_close(c);
            return n;
        }
    }
    size_t u2 = 0;
    int rc = ahg_http_parser_body(q->p, (const char *)p + used, n - used, &u2, body_cb, q);
    if (rc == AHG_OK) {
        q->done = true;
        ahg_conn_close(c);
    } else if (rc != AHG_EAGAIN) {
        q->failed = true;
        ahg_conn_close(c);
    }
    return n;
}

static void
req_close(struct ahg_conn *c, enum ahg_conn_end why)
{
    (void)why;
    struct req *q = ahg_conn_ud(c);
    q->c = NULL;
    if (q->done)
        done_count++;
    else
        fail_count++;
    ahg_http_parser_free(q->p);
    q->p = NULL;
    if (on_done)
        on_done(q);
}

static const struct ahg_conn_ops req_ops = {
    .on_connect = req_connect, .on_data = req_data, .on_close = req_close};

static void
req_start(struct req *q, int port, const char *path)
{
    q->done = q->failed = false;
    q->got = 0;
    q->p = ahg_http_parser_new(AHG_HTTP_RESPONSE, NULL, NULL);
    (void)snprintf(q->raw, sizeof(q->raw), "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, req_host);
    q->start = ahg_now_ms();
    struct ahg_connect_opts co = {.address = "127.0.0.1", .port = port};
    int err = 0;
    q->c = ahg_conn_connect(loop, &co, &req_ops, q, &err);
    if (!q->c) {
        ahg_http_parser_free(q->p);
        q->p = NULL;
        fail_count++;
    }
}

static void
run_until(bool (*cond)(void), uint64_t max_ms)
{
    uint64_t end = ahg_now_ms() + max_ms;
    while (!cond() && ahg_now_ms() < end)
        ahg_loop_run_once(loop);
}

/* ---- 1: sequential latency ---- */

static double lat[NSEQ];
static unsigned nlat;
static int seq_port;
static struct req seq_req;

static uint64_t
now_us(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t seq_t0;

static void
seq_done(struct req *q)
{
    if (q->done && nlat < NSEQ)
        lat[nlat++] = (double)(now_us() - seq_t0) / 1000.0;
    if (nlat < NSEQ && fail_count < 100) {
        seq_t0 = now_us();
        req_start(q, seq_port, "/small");
    }
}

static bool
seq_finished(void)
{
    return nlat >= NSEQ || fail_count >= 100;
}

static int
cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void
sequential(int port, double *p50, double *p99)
{
    nlat = 0;
    fail_count = 0;
    seq_port = port;
    on_done = seq_done;
    seq_t0 = now_us();
    req_start(&seq_req, port, "/small");
    run_until(seq_finished, 120000);
    qsort(lat, nlat, sizeof(lat[0]), cmp_d);
    *p50 = nlat ? lat[nlat / 2] : -1;
    *p99 = nlat ? lat[nlat * 99 / 100] : -1;
}

/* ---- 2: 64 connections ---- */

static struct req conc[NCONC];
static int conc_port;
static uint64_t conc_end;

static void
conc_done(struct req *q)
{
    if (ahg_now_ms() < conc_end)
        req_start(q, conc_port, "/small");
}

static bool
conc_finished(void)
{
    if (ahg_now_ms() < conc_end)
        return false;
    for (int i = 0; i < NCONC; i++)
        if (conc[i].c)
            return false;
    return true;
}

static double
concurrent(int port)
{
    done_count = fail_count = 0;
    conc_port = port;
    on_done = conc_done;
    uint64_t t0 = ahg_now_ms();
    conc_end = t0 + 5000;
    for (int i = 0; i < NCONC; i++)
        req_start(&conc[i], port, "/small");
    run_until(conc_finished, 30000);
    return (double)done_count * 1000.0 / (double)(ahg_now_ms() - t0);
}

/* ---- 3: 1 GiB ---- */

static struct req big;
static bool
big_finished(void)
{
    return big.c == NULL;
}

static void
big_done(struct req *q)
{
    (void)q;
}

/* ---- 4: route lookup with many tunnels ---- */

#define NROUTES 10000
static unsigned fill_next;
static struct req fill_req;

/* Visits every other tunnel once, one request after another, so that the gateway's route
 * cache holds NROUTES more entries (their Hybrid Connection does not exist: each answer is a
 * quick 502, and the route stays cached). */
static void
fill_done(struct req *q)
{
    if (fill_next >= NROUTES)
        return;
    (void)snprintf(req_host, sizeof(req_host), "t%05u.bench.test", fill_next++);
    req_start(q, gw_port, "/small");
}

static bool
fill_finished(void)
{
    return fill_next >= NROUTES && !fill_req.c;
}

static void
many_routes(struct ahg_store *store)
{
    for (unsigned i = 0; i < NROUTES; i++) {
        char key[64], rec[160];
        (void)snprintf(key, sizeof(key), "ahg:route:t%05u", i);
        int n = snprintf(rec, sizeof(rec),
                         "{\"v\":1,\"id\":\"t%05u\",\"hc\":\"nohc%05u\",\"relay\":\"" NSHOST "\"}",
                         i, i);
        (void)ahg_store_set(store, key, rec, (size_t)n, 0, 0, NULL, NULL);
    }
    on_done = fill_done;
    fill_next = 0;
    fill_done(&fill_req);
    run_until(fill_finished, 600000);
    (void)snprintf(req_host, sizeof(req_host), "b1.bench.test");
}

static void
teardown(struct cli_tunnel *tun, struct ahg_store *store, struct ahg_gw *gw, struct emu *e,
         struct ahg_config *cfg)
{
    cli_tunnel_free(tun);
    ahg_store_free(store);
    ahg_loop_free(loop);
    ahg_gw_free(gw);
    emu_free(e);
    ahg_config_free(cfg);
}

int
main(int argc, char **argv)
{
    const char *out = argc > 1 ? argv[1] : "bench/results";
    ahg_log_setup("gw-bench", AHG_LOG_FORMAT_TEXT, AHG_LOG_LVL_ERROR, 2);
    loop = ahg_loop_new(NULL);
    static char args[][96] = {"gw-bench",
                              "--emulator-namespace=gwbench",
                              "--emulator-relay-port=0",
                              "--emulator-mgmt-port=0",
                              "--emulator-identity-port=0",
                              "--emulator-admin-port=0",
                              "--emulator-hybrid-connections=hc1",
                              ""};
    (void)snprintf(args[7], sizeof(args[7]), "--emulator-root-key=%s", KEY);
    char *eargv[9];
    for (size_t i = 0; i < 8; i++)
        eargv[i] = args[i];
    eargv[8] = NULL;
    struct ahg_config_spec sp = {
        .prog = "gw-bench", .summary = "bench", .opts = emu_opts, .nopts = emu_nopts};
    struct ahg_config *cfg = NULL;
    char err[512] = "";
    char *const envp[] = {NULL};
    if (ahg_config_load(&cfg, &sp, 8, eargv, envp, err, sizeof(err)) != AHG_OK) {
        (void)fprintf(stderr, "gw-bench: %s\n", err);
        return 1;
    }
    struct emu *e = emu_new(loop, cfg, err, sizeof(err));
    if (!e) {
        (void)fprintf(stderr, "gw-bench: %s\n", err);
        ahg_loop_free(loop);
        ahg_config_free(cfg);
        return 1;
    }
    struct ahg_httpd_opts ao = {.name = "bench-app", .on_request = app_request};
    int rc = 0;
    struct ahg_httpd *app = ahg_httpd_new(loop, &ao, &rc);
    app_port = ahg_httpd_port(app);
    char ep[64], tok[AHG_SAS_MAX];
    (void)snprintf(ep, sizeof(ep), "ws://127.0.0.1:%d", emu_relay_port(e));
    (void)ahg_sas_create("http://" NSHOST "/hc1", RULE, KEY, (long long)time(NULL) + 86400, tok,
                         sizeof(tok));
    struct cli_tunnel_opts to = {.relay_endpoint = ep,
                                 .hc = "hc1",
                                 .token = tok,
                                 .local_host = "127.0.0.1",
                                 .local_port = app_port};
    struct cli_tunnel *tun = cli_tunnel_new(loop, &to, &rc);
    struct ahg_store *store = ahg_store_new_memory(loop);
    static const char rec[] = "{\"v\":1,\"id\":\"b1\",\"hc\":\"hc1\",\"relay\":\"" NSHOST "\"}";
    (void)ahg_store_set(store, "ahg:route:b1", rec, sizeof(rec) - 1, 0, 0, NULL, NULL);
    struct ahg_gw_opts go = {.domain = "bench.test",
                             .admin_port = -1,
                             .relay_endpoint = ep,
                             .sas_key_name = RULE,
                             .sas_key = KEY,
                             .pool_max_idle = 64};
    struct ahg_gw *gw = ahg_gw_new(loop, store, &go, &rc);
    if (!tun || !gw) {
        (void)fprintf(stderr, "gw-bench: setup failed\n");
        return 1;
    }
    gw_port = ahg_gw_port(gw);
    uint64_t wait_end = ahg_now_ms() + 5000;
    while (!cli_tunnel_connected(tun) && ahg_now_ms() < wait_end)
        ahg_loop_run_once(loop);

    if (argc > 2 && !strcmp(argv[2], "lookup")) {
        double w50, w99, b50, b99, m50, m99;
        sequential(gw_port, &w50, &w99); /* the first request pays the rendezvous */
        sequential(gw_port, &b50, &b99);
        many_routes(store);
        sequential(gw_port, &m50, &m99);
        char path[512];
        (void)snprintf(path, sizeof(path), "%s/gateway-lookup.json", out);
        FILE *f = fopen(path, "w");
        bool written = f != NULL;
        if (f) {
            (void)fprintf(f,
                          "{\"requests\":%d,\"routes\":%d,\"p50_1_ms\":%.3f,\"p99_1_ms\":%.3f,"
                          "\"p50_many_ms\":%.3f,\"p99_many_ms\":%.3f}\n",
                          NSEQ, NROUTES, b50, b99, m50, m99);
            (void)fclose(f);
        }
        (void)printf("hot tunnel p50/p99: %.3f/%.3f ms with 1 tunnel, %.3f/%.3f ms with %d more\n",
                     b50, b99, m50, m99, NROUTES);
        teardown(tun, store, gw, e, cfg);
        return written && nlat == NSEQ ? 0 : 1;
    }
    double d50, d99, g50, g99;
    sequential(app_port, &d50, &d99);
    sequential(gw_port, &g50, &g99); /* the first request pays the rendezvous */
    double drps = concurrent(app_port);
    double grps = concurrent(gw_port);
    unsigned gfail = fail_count;
    /* the hot tunnel again, right before and right after NROUTES more tunnels are registered
     * and cached (same sockets open on the loop both times: the 64-connection phase left its
     * pooled streams, and poll() costs grow with open sockets, not with routes) */
    double b50, b99, m50, m99;
    sequential(gw_port, &b50, &b99);
    many_routes(store);
    sequential(gw_port, &m50, &m99);
    on_done = NULL;
    on_done = big_done;
    uint64_t t0 = now_us();
    req_start(&big, gw_port, "/size/1073741824");
    run_until(big_finished, 600000);
    double secs = (double)(now_us() - t0) / 1e6;
    double mbps = big.done ? (double)GIB / 1048576.0 / secs : 0;
    struct rusage ru;
    (void)getrusage(RUSAGE_SELF, &ru);
    double rss_mb = (double)ru.ru_maxrss / 1024.0;

    char path[512];
    (void)snprintf(path, sizeof(path), "%s/gateway.json", out);
    FILE *f = fopen(path, "w");
    if (f) {
        (void)fprintf(f,
                      "{\"p50_direct_ms\":%.3f,\"p99_direct_ms\":%.3f,\"p50_gateway_ms\":%.3f,"
                      "\"p99_gateway_ms\":%.3f,\"p50_added_ms\":%.3f,\"rps_direct_64\":%.0f,"
                      "\"rps_gateway_64\":%.0f,\"gateway_failures_64\":%u,\"gib_mb_per_s\":%.1f,"
                      "\"gib_ok\":%s,\"peak_rss_mb_all_in_one_process\":%.1f,"
                      "\"p50_gateway_10k_routes_ms\":%.3f,\"p99_gateway_10k_routes_ms\":%.3f,"
                      "\"p50_gateway_before_10k_ms\":%.3f,\"p99_gateway_before_10k_ms\":%.3f}\n",
                      d50, d99, g50, g99, g50 - d50, drps, grps, gfail, mbps,
                      big.done ? "true" : "false", rss_mb, m50, m99, b50, b99);
        (void)fclose(f);
    }
    (void)snprintf(path, sizeof(path), "%s/gateway.md", out);
    f = fopen(path, "w");
    if (f) {
        (void)fprintf(
            f,
            "# Gateway benchmark (bench/gw_bench.c)\n\n"
            "One process, one event loop: emulator relay, client tunnel, local app, in-memory "
            "store and gateway all share one core, so these are the costs of the whole chain "
            "(gateway + relay + client) against the app reached directly on the same loop. "
            "Build type as compiled (sanitizer builds are several times slower).\n\n"
            "| measure | direct | through the gateway |\n|---|---|---|\n"
            "| p50 latency, concurrency 1, new connection per request | %.3f ms | %.3f ms "
            "(added %.3f ms) |\n"
            "| p99 latency, same | %.3f ms | %.3f ms |\n"
            "| small responses (100 B), 64 connections, 5 s | %.0f req/s | %.0f req/s |\n"
            "| 1 GiB download | - | %.1f MB/s%s |\n"
            "| peak RSS of the whole process | %.1f MB | |\n"
            "| p50 / p99 latency of the hot tunnel with 10,000 more tunnels registered and in the "
            "route cache | | %.3f ms / %.3f ms (just before, one tunnel: %.3f ms / %.3f ms) |\n\n"
            "Not measured here: the peers of ../shared/docs/peers.md side by side (bench/run.sh "
            "does that) and the cold/warm rendezvous with the live-service latency profile.\n",
            d50, g50, g50 - d50, d99, g99, drps, grps, mbps, big.done ? "" : " (failed)", rss_mb,
            m50, m99, b50, b99);
        (void)fclose(f);
    }
    (void)printf("direct p50 %.3f ms, gateway p50 %.3f ms; %0.f vs %.0f req/s at 64; 1 GiB "
                 "%.1f MB/s; RSS %.1f MB\n",
                 d50, g50, drps, grps, mbps, rss_mb);
    teardown(tun, store, gw, e, cfg);
    return big.done ? 0 : 1;
}
