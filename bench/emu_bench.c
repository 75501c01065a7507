/*
 * emu-bench: measures the emulator's relay data plane from the outside, as a listener and a
 * sender would use it.
 *
 *   1. throughput of one spliced rendezvous stream (sender -> relay -> listener), and the
 *      reverse direction;
 *   2. emulator memory with many idle listener control channels.
 *
 * Results go to stdout as one JSON object. bench/emulator.sh starts the emulator and calls this.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "ahg/err.h"
#include "ahg/hcmsg.h"
#include "ahg/log.h"
#include "ahg/net.h"
#include "ahg/sas.h"
#include "ahg/url.h"
#include "ahg/wsconn.h"

#define FRAME (64u * 1024u)

static struct {
    struct ahg_loop *loop;
    int port;
    const char *ns_host;
    char token[AHG_SAS_MAX];
    int emu_pid;
    uint64_t bytes;
    unsigned idle;
    unsigned per_hc;
} g;

/* Runs the loop for ms milliseconds (lets closes and pending work finish). */
static void
settle_fire(struct ahg_timer *t)
{
    ahg_loop_stop(t->loop);
}

static void
settle(uint64_t ms)
{
    struct ahg_timer t;
    ahg_timer_init(&t, g.loop, settle_fire, NULL);
    ahg_timer_start(&t, ms);
    ahg_loop_run(g.loop);
    ahg_timer_stop(&t);
}

/* ---- throughput ---- */

struct tp {
    bool listener_up;
    bool done;
    bool failed;
    bool reverse; /* listener sends, sender receives */
    uint64_t sent, received;
    uint64_t t0, t1;
    struct ahg_wsconn *control, *rendezvous, *sender;
    unsigned char *chunk;
};
static struct tp tp;

static void
pump(struct ahg_wsconn *ws)
{
    while (tp.sent < g.bytes && ahg_wsconn_writable(ws)) {
        size_t n = g.bytes - tp.sent < FRAME ? (size_t)(g.bytes - tp.sent) : FRAME;
        if (ahg_wsconn_send(ws, AHG_WS_BINARY, tp.chunk, n) != AHG_OK) {
            tp.failed = true;
            ahg_loop_stop(g.loop);
            return;
        }
        tp.sent += n;
    }
}

static void
count_frame(struct ahg_wsconn *ws, const unsigned char *p, size_t n)
{
    (void)ws;
    (void)p;
    tp.received += n;
    if (tp.received >= g.bytes && !tp.done) {
        tp.done = true;
        tp.t1 = ahg_now_ms();
        ahg_loop_stop(g.loop);
    }
}

static void
frame_begin(struct ahg_wsconn *ws, enum ahg_ws_opcode op, bool fin, uint64_t len)
{
    (void)ws;
    (void)op;
    (void)fin;
    (void)len;
}

static void
tp_drain(struct ahg_wsconn *ws)
{
    if ((ws == tp.sender) != tp.reverse)
        pump(ws);
}

static void
tp_close(struct ahg_wsconn *ws, uint16_t code)
{
    (void)ws;
    (void)code;
    if (!tp.done) {
        tp.failed = true;
        ahg_loop_stop(g.loop);
    }
}

static void
tp_fail(struct ahg_wsconn *ws, int status, const char *reason, const struct ahg_http_head *h,
        const char *body)
{
    (void)ws;
    (void)h;
    fprintf(stderr, "emu-bench: upgrade failed: %d %s %s\n", status, reason ? reason : "",
            body ? body : "");
    tp.failed = true;
    ahg_loop_stop(g.loop);
}

static void
rdv_open(struct ahg_wsconn *ws, const struct ahg_http_head *h)
{
    (void)h;
    tp.rendezvous = ws;
    if (tp.reverse) {
        tp.t0 = ahg_now_ms();
        pump(ws);
    }
}

static const struct ahg_wsconn_cbs rdv_cbs = {
    .on_open = rdv_open,
    .on_fail = tp_fail,
    .on_frame_begin = frame_begin,
    .on_frame_data = count_frame,
    .on_drain = tp_drain,
    .on_close = tp_close,
};

static void
control_message(struct ahg_wsconn *ws, enum ahg_ws_opcode op, const unsigned char *p, size_t n)
{
    (void)ws;
    (void)op;
    struct ahg_hcmsg m;
    ahg_hcmsg_init(&m, AHG_HCMSG_NONE);
    if (ahg_hcmsg_parse((const char *)p, n, &m) == AHG_OK && m.type == AHG_HCMSG_ACCEPT) {
        struct ahg_wsconn_client_opts o;
        char buf[4096];
        memset(&o, 0, sizeof(o));
        int err = 0;
        if (ahg_wsconn_parse_url(m.address, &o, buf, sizeof(buf)) != AHG_OK ||
            !ahg_wsconn_connect(g.loop, &o, &rdv_cbs, NULL, &err)) {
            tp.failed = true;
            ahg_loop_stop(g.loop);
        }
    }
    ahg_hcmsg_clear(&m);
}

static void control_open(struct ahg_wsconn *ws, const struct ahg_http_head *h);

static const struct ahg_wsconn_cbs control_cbs = {
    .on_open = control_open,
    .on_fail = tp_fail,
    .on_message = control_message,
    .on_close = tp_close,
};

static void
sender_open(struct ahg_wsconn *ws, const struct ahg_http_head *h)
{
    (void)h;
    tp.sender = ws;
    if (!tp.reverse) {
        tp.t0 = ahg_now_ms();
        pump(ws);
    }
}

static const struct ahg_wsconn_cbs sender_cbs = {
    .on_open = sender_open,
    .on_fail = tp_fail,
    .on_frame_begin = frame_begin,
    .on_frame_data = count_frame,
    .on_drain = tp_drain,
    .on_close = tp_close,
};

static struct ahg_wsconn *
dial(const char *hc, const char *action, const struct ahg_wsconn_cbs *cbs, void *ud)
{
    char target[512];
    snprintf(target, sizeof(target), "/$hc/%s?sb-hc-action=%s", hc, action);
    const char *hdrs[] = {"ServiceBusAuthorization", g.token, NULL};
    struct ahg_wsconn_client_opts o = {
        .conn = {.address = "127.0.0.1", .port = g.port},
        .target = target,
        .headers = hdrs,
    };
    int err = 0;
    return ahg_wsconn_connect(g.loop, &o, cbs, ud, &err);
}

static void
control_open(struct ahg_wsconn *ws, const struct ahg_http_head *h)
{
    (void)h;
    tp.control = ws;
    tp.listener_up = true;
    if (!dial("tp", "connect", &sender_cbs, NULL)) {
        tp.failed = true;
        ahg_loop_stop(g.loop);
    }
}

static double
run_throughput(bool reverse)
{
    memset(&tp, 0, sizeof(tp));
    tp.reverse = reverse;
    tp.chunk = malloc(FRAME);
    for (size_t i = 0; i < FRAME; i++)
        tp.chunk[i] = (unsigned char)i;
    if (!dial("tp", "listen", &control_cbs, NULL))
        return -1;
    ahg_loop_run(g.loop);
    free(tp.chunk);
    tp.chunk = NULL;
    double secs = (double)(tp.t1 - tp.t0) / 1000.0;
    if (tp.failed || !tp.done || secs <= 0)
        return -1;
    /* tear the three connections down before the next phase */
    if (tp.sender)
        ahg_wsconn_abort(tp.sender);
    if (tp.rendezvous)
        ahg_wsconn_abort(tp.rendezvous);
    if (tp.control)
        ahg_wsconn_abort(tp.control);
    settle(200);
    return (double)g.bytes / secs / 1e9;
}

/* ---- idle listeners ---- */

static unsigned idle_open, idle_failed, idle_inflight, idle_started;

static void idle_next(void);

static void
idle_opened(struct ahg_wsconn *ws, const struct ahg_http_head *h)
{
    (void)ws;
    (void)h;
    idle_open++;
    idle_inflight--;
    idle_next();
}

static void
idle_fail(struct ahg_wsconn *ws, int status, const char *reason, const struct ahg_http_head *h,
          const char *body)
{
    (void)ws;
    (void)h;
    (void)body;
    if (idle_failed++ < 3)
        fprintf(stderr, "emu-bench: idle listener failed: %d %s\n", status, reason ? reason : "");
    idle_inflight--;
    idle_next();
}

static void
idle_close(struct ahg_wsconn *ws, uint16_t code)
{
    (void)ws;
    (void)code;
}

static const struct ahg_wsconn_cbs idle_cbs = {
    .on_open = idle_opened,
    .on_fail = idle_fail,
    .on_close = idle_close,
};

static void
idle_next(void)
{
    while (idle_started < g.idle && idle_inflight < 200) {
        char hc[64];
        snprintf(hc, sizeof(hc), "idle%u", idle_started / g.per_hc);
        idle_started++;
        idle_inflight++;
        if (!dial(hc, "listen", &idle_cbs, NULL)) {
            idle_inflight--;
            idle_failed++;
        }
    }
    if (idle_open + idle_failed >= g.idle)
        ahg_loop_stop(g.loop);
}

static long
proc_kb(int pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, field, strlen(field)))
            v = strtol(line + strlen(field) + 1, NULL, 10);
    fclose(f);
    return v;
}

int
main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: emu-bench RELAY_PORT NS_HOST KEY EMU_PID BYTES IDLE [PER_HC]\n");
        return AHG_EXIT_USAGE;
    }
    g.port = atoi(argv[1]);
    g.ns_host = argv[2];
    g.emu_pid = atoi(argv[4]);
    g.bytes = strtoull(argv[5], NULL, 10);
    g.idle = (unsigned)strtoul(argv[6], NULL, 10);
    g.per_hc = argc > 7 ? (unsigned)strtoul(argv[7], NULL, 10) : 25;
    ahg_log_setup("bench", AHG_LOG_FORMAT_TEXT, AHG_LOG_LVL_WARN, 2);
    struct rlimit rl = {.rlim_cur = 65536, .rlim_max = 65536};
    setrlimit(RLIMIT_NOFILE, &rl);
    char res[512];
    snprintf(res, sizeof(res), "http://%s/", g.ns_host);
    if (ahg_sas_create(res, "RootManageSharedAccessKey", argv[3], (long long)time(NULL) + 7200,
                       g.token, sizeof(g.token)) != AHG_OK) {
        fprintf(stderr, "emu-bench: cannot make a token\n");
        return 1;
    }
    g.loop = ahg_loop_new(NULL);
    if (!g.loop)
        return 1;
    long rss_start = proc_kb(g.emu_pid, "VmRSS:");
    double up = run_throughput(false);
    double down = run_throughput(true);
    long rss_after_tp = proc_kb(g.emu_pid, "VmRSS:");
    long hwm_tp = proc_kb(g.emu_pid, "VmHWM:");

    uint64_t t0 = ahg_now_ms();
    if (g.idle)
        idle_next();
    if (g.idle)
        ahg_loop_run(g.loop);
    uint64_t t_idle = ahg_now_ms() - t0;
    settle(1000); /* let the emulator settle */
    long rss_idle = proc_kb(g.emu_pid, "VmRSS:");
    long hwm = proc_kb(g.emu_pid, "VmHWM:");
    printf("{\"stream_bytes\":%llu,\"sender_to_listener_GBps\":%.3f,"
           "\"listener_to_sender_GBps\":%.3f,\"emulator_rss_start_kb\":%ld,"
           "\"emulator_rss_after_stream_kb\":%ld,\"emulator_hwm_after_stream_kb\":%ld,"
           "\"idle_listeners_requested\":%u,\"idle_listeners_open\":%u,"
           "\"idle_listeners_failed\":%u,\"idle_connect_ms\":%llu,"
           "\"emulator_rss_idle_kb\":%ld,\"emulator_hwm_kb\":%ld,"
           "\"rss_per_idle_listener_bytes\":%.0f}\n",
           (unsigned long long)g.bytes, up, down, rss_start, rss_after_tp, hwm_tp, g.idle,
           idle_open, idle_failed, (unsigned long long)t_idle, rss_idle, hwm,
           idle_open ? (double)(rss_idle - rss_after_tp) * 1024.0 / idle_open : 0.0);
    ahg_loop_free(g.loop);
    return up > 0 && down > 0 && idle_open == g.idle ? 0 : 1;
}
