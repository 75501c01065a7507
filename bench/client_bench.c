/*
 * cli-bench: the azhexgate client from the outside. It starts the azhexgate binary (direct relay
 * mode) against a running emulator, serves the local app itself and plays the sender:
 *
 *   1. 1 GiB down (GET, local app -> client -> relay -> sender) and 1 GiB up (POST), with the
 *      client's RSS sampled every 50 ms;
 *   2. a slow reader: 256 MiB down while the sender reads at 32 MiB/s (the client must not
 *      buffer what the reader does not take);
 *   3. 1,000 sequential short streams (connect -> accept -> rendezvous -> GET 100 B -> close):
 *      median and p99 cost per stream.
 *
 * Usage: cli-bench AZHEXGATE_BIN RELAY_PORT NAMESPACE_HOST ROOT_KEY HC
 * Results go to stdout as one JSON object (bench/client.sh writes the results files).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ahg/err.h"
#include "ahg/http.h"
#include "ahg/httpd.h"
#include "ahg/log.h"
#include "ahg/net.h"
#include "ahg/sas.h"
#include "ahg/wsconn.h"

#define GIB        ((uint64_t)1024 * 1024 * 1024)
#define SLOW_BYTES ((uint64_t)256 * 1024 * 1024)
#define SLOW_RATE  ((uint64_t)32 * 1024 * 1024) /* bytes per second */
#define NSHORT     1000
#define CHUNK      ((size_t)64 * 1024)

static struct {
    struct ahg_loop *loop;
    int relay_port;
    const char *hc;
    char token[AHG_SAS_MAX];
    pid_t cli;
    long rss_max_kb;
    struct ahg_timer sample;
} g;

static long
proc_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    (void)snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    if (!f)
        return -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, field, fl) && line[fl] == ':')
            v = strtol(line + fl + 1, NULL, 10);
    (void)fclose(f);
    return v;
}

static void
sample_fire(struct ahg_timer *t)
{
    long kb = proc_kb(g.cli, "VmRSS");
    if (kb > g.rss_max_kb)
        g.rss_max_kb = kb;
    ahg_timer_start(t, 50);
}

static double
now_s(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the local app: /size/N streams N bytes, /sink swallows the body ---- */

struct gen {
    uint64_t total, off;
};

static void
gen_pump(struct ahg_httpd_req *r)
{
    struct gen *gn = ahg_httpd_req_ud(r);
    static unsigned char buf[CHUNK];
    while (gn->off < gn->total && ahg_httpd_resp_writable(r)) {
        size_t k = gn->total - gn->off < CHUNK ? (size_t)(gn->total - gn->off) : CHUNK;
        if (ahg_httpd_resp_write(r, buf, k) != AHG_OK)
            return;
        gn->off += k;
    }
    if (gn->off == gn->total && gn->total != UINT64_MAX) {
        gn->total = UINT64_MAX;
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
sink_body(struct ahg_httpd_req *r, const char *p, size_t n)
{
    (void)r;
    (void)p;
    (void)n;
}

static void
sink_end(struct ahg_httpd_req *r)
{
    (void)ahg_httpd_respond(r, 200, "text/plain", "ok", 2, NULL);
}

static const struct ahg_httpd_req_cbs sink_cbs = {.on_body = sink_body, .on_body_end = sink_end};

static void
app_request(struct ahg_httpd_req *r)
{
    const char *path = ahg_httpd_req_path(r);
    if (!strncmp(path, "/size/", 6)) {
        struct gen *gn = calloc(1, sizeof(*gn));
        if (!gn) {
            (void)ahg_httpd_respond_error(r, 500, "internal", "out of memory", false);
            return;
        }
        gn->total = strtoull(path + 6, NULL, 10);
        ahg_httpd_req_set_cbs(r, &gen_cbs, gn);
        struct ahg_http_head *h = ahg_http_head_new_response(200, NULL, NULL);
        if (!h || ahg_httpd_resp_begin(r, h, (int64_t)gn->total) != AHG_OK)
            return;
        gen_pump(r);
        return;
    }
    ahg_httpd_req_set_cbs(r, &sink_cbs, NULL);
}

/* ---- the sender ---- */

struct snd {
    struct ahg_wsconn *ws;
    struct ahg_http_parser *p;
    bool open, failed, gone, head, done;
    int status;
    uint64_t got;
    uint64_t up_total, up_off;
    uint64_t rate; /* slow reader: bytes per second, 0 = as fast as possible */
    double t0;
    struct ahg_timer resume;
};

static int
count_body(void *ud, const char *p, size_t n)
{
    struct snd *s = ud;
    (void)p;
    s->got += n;
    return AHG_OK;
}

static void
resume_fire(struct ahg_timer *t)
{
    struct snd *s = t->ud;
    if (s->ws)
        ahg_wsconn_resume_read(s->ws);
}

static void
snd_message(struct ahg_wsconn *ws, enum ahg_ws_opcode op, const unsigned char *data, size_t n)
{
    struct snd *s = ahg_wsconn_ud(ws);
    const char *p = (const char *)data;
    (void)op;
    while (n && !s->done) {
        size_t used = 0;
        int rc;
        if (!s->head) {
            rc = ahg_http_parser_feed(s->p, p, n, &used);
            if (rc == AHG_EAGAIN)
                return;
            if (rc != AHG_OK) {
                s->failed = s->done = true;
                return;
            }
            s->status = ahg_http_parser_head(s->p)->status;
            s->head = true;
        } else {
            rc = ahg_http_parser_body(s->p, p, n, &used, count_body, s);
            if (rc == AHG_OK)
                s->done = true;
            else if (rc != AHG_EAGAIN)
                s->failed = s->done = true;
        }
        p += used;
        n -= used;
        if (s->head && !s->done && ahg_http_parser_framing(s->p) == AHG_HTTP_BODY_NONE)
            s->done = true;
    }
    if (s->head && !s->done &&
        ahg_http_parser_body(s->p, "", 0, &(size_t){0}, NULL, NULL) == AHG_OK)
        s->done = true;
    if (s->rate && !s->done) {
        double allowed = (now_s() - s->t0) * (double)s->rate;
        if ((double)s->got > allowed) {
            ahg_wsconn_pause_read(ws);
            ahg_timer_start(&s->resume,
                            (uint64_t)(((double)s->got - allowed) * 1000.0 / (double)s->rate) + 1);
        }
    }
}

static void
snd_pump(struct snd *s)
{
    static unsigned char buf[CHUNK];
    while (s->ws && s->up_off < s->up_total && ahg_wsconn_writable(s->ws)) {
        size_t k = s->up_total - s->up_off < CHUNK ? (size_t)(s->up_total - s->up_off) : CHUNK;
        if (ahg_wsconn_send(s->ws, AHG_WS_BINARY, buf, k) != AHG_OK) {
            s->failed = s->done = true;
            return;
        }
        s->up_off += k;
    }
}

static void
snd_drain(struct ahg_wsconn *ws)
{
    snd_pump(ahg_wsconn_ud(ws));
}

static void
snd_open(struct ahg_wsconn *ws, const struct ahg_http_head *resp)
{
    struct snd *s = ahg_wsconn_ud(ws);
    (void)resp;
    s->open = true;
}

static void
snd_fail(struct ahg_wsconn *ws, int status, const char *reason, const struct ahg_http_head *resp,
         const char *body)
{
    struct snd *s = ahg_wsconn_ud(ws);
    (void)status;
    (void)reason;
    (void)resp;
    (void)body;
    s->ws = NULL;
    s->failed = s->gone = true;
}

static void
snd_close(struct ahg_wsconn *ws, uint16_t code)
{
    struct snd *s = ahg_wsconn_ud(ws);
    (void)code;
    s->ws = NULL;
    s->gone = true;
}

static const struct ahg_wsconn_cbs snd_cbs = {.on_open = snd_open,
                                              .on_fail = snd_fail,
                                              .on_message = snd_message,
                                              .on_drain = snd_drain,
                                              .on_close = snd_close};

static bool
run_until(bool *flag1, bool *flag2, double secs)
{
    double end = now_s() + secs;
    while (!*flag1 && !*flag2 && now_s() < end)
        (void)ahg_loop_run_once(g.loop);
    return *flag1;
}

static int
snd_connect(struct snd *s)
{
    memset(s, 0, sizeof(*s));
    s->p = ahg_http_parser_new(AHG_HTTP_RESPONSE, NULL, NULL);
    ahg_timer_init(&s->resume, g.loop, resume_fire, s);
    char target[256];
    (void)snprintf(target, sizeof(target), "/$hc/%s?sb-hc-action=connect", g.hc);
    const char *hdrs[] = {"ServiceBusAuthorization", g.token, NULL};
    struct ahg_wsconn_client_opts o = {.conn = {.address = "127.0.0.1", .port = g.relay_port},
                                       .target = target,
                                       .headers = hdrs,
                                       .max_message = (uint64_t)1 << 20};
    int err = 0;
    s->ws = ahg_wsconn_connect(g.loop, &o, &snd_cbs, s, &err);
    if (!s->ws || !run_until(&s->open, &s->failed, 10))
        return -1;
    return 0;
}

static void
snd_free(struct snd *s)
{
    ahg_timer_stop(&s->resume);
    if (s->ws) {
        ahg_wsconn_set_cbs(s->ws, NULL, NULL);
        ahg_wsconn_abort(s->ws);
    }
    ahg_http_parser_free(s->p);
}

/* One request; returns seconds, or -1. */
static double
exchange(const char *method, const char *path, uint64_t up, uint64_t rate, uint64_t *got)
{
    struct snd s;
    double t0 = now_s();
    if (snd_connect(&s) != 0) {
        snd_free(&s);
        return -1;
    }
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "%s %s HTTP/1.1\r\nHost: bench\r\nContent-Length: %llu\r\n\r\n", method, path,
                     (unsigned long long)up);
    (void)ahg_http_parser_set_request_method(s.p, method);
    s.rate = rate;
    s.t0 = now_s();
    s.up_total = up;
    if (ahg_wsconn_send(s.ws, AHG_WS_BINARY, head, (size_t)n) != AHG_OK) {
        snd_free(&s);
        return -1;
    }
    snd_pump(&s);
    bool ok = run_until(&s.done, &s.gone, 600) && !s.failed && s.status == 200;
    *got = s.got;
    snd_free(&s);
    return ok ? now_s() - t0 : -1;
}

static int
cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
    if (argc != 6) {
        (void)fprintf(stderr,
                      "usage: cli-bench AZHEXGATE_BIN RELAY_PORT NAMESPACE_HOST ROOT_KEY HC\n");
        return 64;
    }
    (void)signal(SIGPIPE, SIG_IGN);
    ahg_log_setup("cli-bench", AHG_LOG_FORMAT_TEXT, AHG_LOG_LVL_ERROR, 2);
    g.relay_port = atoi(argv[2]);
    g.hc = argv[5];
    char uri[512];
    (void)snprintf(uri, sizeof(uri), "http://%s/%s", argv[3], g.hc);
    if (ahg_sas_create(uri, "RootManageSharedAccessKey", argv[4], (long long)time(NULL) + 7200,
                       g.token, sizeof(g.token)) != AHG_OK)
        return 1;
    g.loop = ahg_loop_new(NULL);
    struct ahg_httpd_opts ho = {.name = "app", .port = 0, .on_request = app_request};
    int err = 0;
    struct ahg_httpd *app = ahg_httpd_new(g.loop, &ho, &err);
    if (!app)
        return 1;
    char port[16], ep[64];
    (void)snprintf(port, sizeof(port), "%d", ahg_httpd_port(app));
    (void)snprintf(ep, sizeof(ep), "ws://127.0.0.1:%d", g.relay_port);
    setenv("AZHEXGATE_LISTENER_TOKEN", g.token, 1);
    g.cli = fork();
    if (g.cli == 0) {
        execl(argv[1], argv[1], "start", "--port", port, "--relay-endpoint", ep,
              "--hybrid-connection", g.hc, "--quiet", (char *)NULL);
        _exit(127);
    }
    /* the listener is up once a sender gets through */
    struct snd probe;
    double end = now_s() + 20;
    while (now_s() < end) {
        int rc = snd_connect(&probe);
        snd_free(&probe);
        if (rc == 0)
            break;
        double t = now_s() + 0.2;
        while (now_s() < t)
            (void)ahg_loop_run_once(g.loop);
    }
    long rss_idle = proc_kb(g.cli, "VmRSS");
    ahg_timer_init(&g.sample, g.loop, sample_fire, NULL);
    ahg_timer_start(&g.sample, 50);

    char path[64];
    uint64_t got = 0;
    (void)snprintf(path, sizeof(path), "/size/%llu", (unsigned long long)GIB);
    g.rss_max_kb = 0;
    double down = exchange("GET", path, 0, 0, &got);
    long rss_down = g.rss_max_kb;
    uint64_t got_down = got;
    g.rss_max_kb = 0;
    double up = exchange("POST", "/sink", GIB, 0, &got);
    long rss_up = g.rss_max_kb;
    (void)snprintf(path, sizeof(path), "/size/%llu", (unsigned long long)SLOW_BYTES);
    g.rss_max_kb = 0;
    double slow = exchange("GET", path, 0, SLOW_RATE, &got);
    long rss_slow = g.rss_max_kb;
    uint64_t got_slow = got;

    static double lat[NSHORT];
    int ok = 0;
    double t0 = now_s();
    for (int i = 0; i < NSHORT; i++) {
        double d = exchange("GET", "/size/100", 0, 0, &got);
        if (d >= 0 && got == 100)
            lat[ok++] = d;
    }
    double short_total = now_s() - t0;
    qsort(lat, (size_t)ok, sizeof(double), cmp_d);
    ahg_timer_stop(&g.sample);
    long hwm = proc_kb(g.cli, "VmHWM");
    (void)kill(g.cli, SIGINT);
    int st = 0;
    (void)waitpid(g.cli, &st, 0);

    (void)printf(
        "{\"down_bytes\":%llu,\"down_s\":%.3f,\"down_MBps\":%.1f,\"rss_down_max_kb\":%ld,"
        "\"up_bytes\":%llu,\"up_s\":%.3f,\"up_MBps\":%.1f,\"rss_up_max_kb\":%ld,"
        "\"slow_bytes\":%llu,\"slow_rate_Bps\":%llu,\"slow_s\":%.3f,\"rss_slow_max_kb\":%ld,"
        "\"rss_idle_kb\":%ld,\"client_hwm_kb\":%ld,"
        "\"short_streams\":%d,\"short_ok\":%d,\"short_median_ms\":%.3f,"
        "\"short_p99_ms\":%.3f,\"short_total_s\":%.3f,\"client_exit\":%d}\n",
        (unsigned long long)got_down, down, down > 0 ? (double)GIB / down / 1e6 : 0.0, rss_down,
        (unsigned long long)GIB, up, up > 0 ? (double)GIB / up / 1e6 : 0.0, rss_up,
        (unsigned long long)got_slow, (unsigned long long)SLOW_RATE, slow, rss_slow, rss_idle, hwm,
        NSHORT, ok, ok ? lat[ok / 2] * 1000 : -1.0, ok ? lat[(ok * 99) / 100] * 1000 : -1.0,
        short_total, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    ahg_loop_free(g.loop);
    return 0;
}
