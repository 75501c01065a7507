/*
 * demo.c - the built-in demo app (see cli/demo.h for the routes).
 *
 * Every route streams: /echo hands body bytes back as they arrive and pauses the request body
 * while the response side is full; /sink counts and checksums the body as it arrives; /bytes writes
 * while the connection is writable and resumes on drain; /events and /delay run on per-request
 * timers that stop when the exchange ends.
 */
#include "cli/demo.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ahg/err.h"
#include "ahg/http.h"
#include "ahg/httpd.h"
#include "ahg/net.h"
#include "ahg/wsconn.h"

#define DEMO_MAX_DELAY_MS  600000u
#define DEMO_MIN_EVERY_MS  10u
#define DEMO_MAX_BYTES     ((uint64_t)64 * 1024 * 1024 * 1024)
#define DEMO_CHUNK         ((size_t)16 * 1024)
#define DEMO_MAX_HEADERS_J ((size_t)256 * 1024)

struct cli_demo {
    struct ahg_loop *loop;
    struct ahg_httpd *httpd;
};

enum demo_kind { DEMO_ECHO, DEMO_SINK, DEMO_EVENTS, DEMO_DELAY, DEMO_BYTES };

/* Per-request state of the streaming routes. */
struct demo_req {
    enum demo_kind kind;
    struct ahg_httpd_req *r;
    struct ahg_timer timer;
    bool timer_armed;
    uint64_t every_ms;
    uint64_t left;  /* events or bytes still to send; UINT64_MAX = unbounded events */
    uint64_t sent;  /* events or bytes sent */
    uint64_t pos;   /* pattern offset for /bytes; FNV-1a of the body for /sink */
    bool body_done; /* echo: request body complete */
};

static const char demo_page[] =
    "<!doctype html>\n"
    "<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>AzHexGate demo</title>\n"
    "<style>body{font:16px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:40rem;"
    "padding:0 1rem}code{background:#eee;padding:0 .3em}.ok{color:#070}.bad{color:#a00}"
    "</style></head>\n"
    "<body data-ready=\"0\">\n"
    "<h1>AzHexGate demo app</h1>\n"
    "<p>This page came through your tunnel. It keeps a WebSocket and a Server-Sent Events "
    "stream open through the same URL.</p>\n"
    "<p>Loaded from <code id=\"origin\"></code></p>\n"
    "<p>WebSocket: <b id=\"ws-state\">connecting</b> &mdash; echo: <code id=\"ws-echo\">"
    "</code></p>\n"
    "<p>Events: <b id=\"sse-state\">connecting</b> &mdash; received <b id=\"sse-count\">0"
    "</b>, last <code id=\"sse-last\"></code></p>\n"
    "<script>\n"
    "'use strict';\n"
    "const $ = (id) => document.getElementById(id);\n"
    "$('origin').textContent = location.origin;\n"
    "let echoed = false, events = 0;\n"
    "function ready() { if (echoed && events >= 3) document.body.dataset.ready = '1'; }\n"
    "const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') +\n"
    "                         location.host + '/ws');\n"
    "const probe = 'hello ' + Math.random().toString(36).slice(2);\n"
    "ws.onopen = () => { $('ws-state').textContent = 'open'; ws.send(probe); };\n"
    "ws.onmessage = (m) => {\n"
    "  $('ws-echo').textContent = m.data;\n"
    "  if (m.data === probe) { echoed = true; $('ws-state').textContent = 'echo ok';\n"
    "    $('ws-state').className = 'ok'; ready(); }\n"
    "};\n"
    "ws.onerror = () => { $('ws-state').textContent = 'error'; $('ws-state').className = "
    "'bad'; };\n"
    "ws.onclose = (e) => { if (!echoed) $('ws-state').textContent = 'closed ' + e.code; };\n"
    "const es = new EventSource('/events');\n"
    "es.onopen = () => { $('sse-state').textContent = 'open'; };\n"
    "es.onmessage = (m) => { events++; $('sse-count').textContent = String(events);\n"
    "  $('sse-last').textContent = m.data;\n"
    "  if (events >= 3) { $('sse-state').textContent = 'streaming';\n"
    "    $('sse-state').className = 'ok'; }\n"
    "  ready(); };\n"
    "es.onerror = () => { if (events < 3) { $('sse-state').textContent = 'error';\n"
    "  $('sse-state').className = 'bad'; } };\n"
    "</script>\n"
    "</body></html>\n";

/* ---- helpers ---- */

static bool
path_tail_u64(const char *path, const char *prefix, uint64_t max, uint64_t *out)
{
    size_t pl = strlen(prefix);
    if (strncmp(path, prefix, pl) != 0)
        return false;
    const char *s = path + pl;
    if (*s == '\0' || strlen(s) > 20)
        return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

/* Value of name=digits in a query string; false when absent or malformed. */
static bool
query_u64(const char *q, const char *name, uint64_t *out)
{
    size_t nl = strlen(name);
    const char *p = q;
    while (p && *p) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            uint64_t v = 0;
            size_t i = nl + 1;
            if (i == len || len - i > 19)
                return false;
            for (; i < len; i++) {
                if (p[i] < '0' || p[i] > '9')
                    return false;
                v = v * 10 + (uint64_t)(p[i] - '0');
            }
            *out = v;
            return true;
        }
        p = amp ? amp + 1 : NULL;
    }
    return false;
}

static struct ahg_http_head *
resp_head(int status, const char *ctype)
{
    int err = 0;
    struct ahg_http_head *h = ahg_http_head_new_response(status, NULL, &err);
    if (h && ctype && ahg_http_head_add(h, "Content-Type", ctype) != AHG_OK) {
        ahg_http_head_free(h);
        return NULL;
    }
    return h;
}

static void
dr_stop_timer(struct demo_req *d)
{
    if (d->timer_armed) {
        ahg_timer_stop(&d->timer);
        d->timer_armed = false;
    }
}

static void
dr_finish(struct ahg_httpd_req *r, bool completed)
{
    (void)completed;
    struct demo_req *d = ahg_httpd_req_ud(r);
    if (!d)
        return;
    dr_stop_timer(d);
    free(d);
}

static struct demo_req *
dr_new(struct ahg_httpd_req *r, enum demo_kind kind)
{
    struct demo_req *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->kind = kind;
    d->r = r;
    return d;
}

/* ---- /echo ---- */

static void
echo_body(struct ahg_httpd_req *r, const char *p, size_t n)
{
    if (ahg_httpd_resp_write(r, p, n) != AHG_OK) {
        ahg_httpd_resp_abort(r);
        return;
    }
    if (!ahg_httpd_resp_writable(r))
        ahg_httpd_req_pause_body(r);
}

static void
echo_body_end(struct ahg_httpd_req *r)
{
    struct demo_req *d = ahg_httpd_req_ud(r);
    d->body_done = true;
    (void)ahg_httpd_resp_end(r);
}

static void
echo_drain(struct ahg_httpd_req *r)
{
    struct demo_req *d = ahg_httpd_req_ud(r);
    if (!d->body_done)
        ahg_httpd_req_resume_body(r);
}

static void
route_echo(struct ahg_httpd_req *r)
{
    const struct ahg_http_head *h = ahg_httpd_req_head(r);
    struct demo_req *d = dr_new(r, DEMO_ECHO);
    const char *ct = ahg_http_head_get(h, "Content-Type", NULL);
    struct ahg_http_head *rh = resp_head(200, ct ? ct : "application/octet-stream");
    if (!d || !rh || ahg_http_head_add(rh, "X-Echo-Method", h->method) != AHG_OK) {
        free(d);
        ahg_http_head_free(rh);
        (void)ahg_httpd_respond_error(r, 500, "internal", "out of memory", false);
        return;
    }
    static const struct ahg_httpd_req_cbs cbs = {
        .on_body = echo_body,
        .on_body_end = echo_body_end,
        .on_drain = echo_drain,
        .on_finish = dr_finish,
    };
    ahg_httpd_req_set_cbs(r, &cbs, d);
    int64_t len = AHG_HTTPD_LEN_CHUNKED;
    if (h->framing == AHG_HTTP_BODY_LENGTH || h->framing == AHG_HTTP_BODY_NONE)
        len = (int64_t)h->content_length;
    if (ahg_httpd_resp_begin(r, rh, len) != AHG_OK)
        ahg_httpd_resp_abort(r);
}

/* ---- /sink: takes a body of any size, answers its length and FNV-1a 64 checksum ---- */

static void
sink_body(struct ahg_httpd_req *r, const char *p, size_t n)
{
    struct demo_req *d = ahg_httpd_req_ud(r);
    uint64_t h = d->pos;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    d->pos = h;
    d->sent += n;
}

static void
sink_body_end(struct ahg_httpd_req *r)
{
    struct demo_req *d = ahg_httpd_req_ud(r);
    char txt[96];
    int n = snprintf(txt, sizeof(txt), "{\"bytes\":%llu,\"fnv1a64\":\"%016llx\"}\n",
                     (unsigned long long)d->sent, (unsigned long long)d->pos);
    (void)ahg_httpd_respond(r, 200, "application/json", txt, (size_t)n, NULL);
}

static void
route_sink(struct ahg_httpd_req *r)
{
    struct demo_req *d = dr_new(r, DEMO_SINK);
    if (!d) {
        (void)ahg_httpd_respond_error(r, 500, "internal", "out of memory", false);
        return;
    }
    d->pos = 1469598103934665603ull; /* FNV-1a 64 offset basis */
    static const struct ahg_httpd_req_cbs cbs = {
        .on_body = sink_body,
        .on_body_end = sink_body_end,
        .on_finish = dr_finish,
    };
    ahg_httpd_req_set_cbs(r, &cbs, d);
}

/* ---- /bytes/N ---- */

static void
bytes_pump(struct ahg_httpd_req *r)
{
    struct demo_req *d = ahg_httpd_req_ud(r);
    unsigned char chunk[DEMO_CHUNK];
    while (d->left > 0 && ahg_httpd_resp_writable(r)) {
        size_t n = d->left < DEMO_CHUNK ? (size_t)d->left : DEMO_CHUNK;
        for (size_t i = 0; i < n; i++)
            chunk[i] = (unsigned char)('a' + (d->pos + i) % 26);
        if (ahg_httpd_resp_write(r, chunk, n) != AHG_OK) {
            ahg_httpd_resp_abort(r);
            return;
        }
        d->pos += n;
        d->left -= n;
    }
    if (d->left == 0)
        (void)ahg_httpd_resp_end(r);
}

static void
route_bytes(struct ahg_httpd_req *r, uint64_t n)
{
    struct demo_req *d = dr_new(r, DEMO_BYTES);
    struct ahg_http_head *rh = resp_head(200, "application/octet-stream");
    if (!d || !rh) {
        free(d);
        ahg_http_head_free(rh);
        (void)ahg_httpd_respond_error(r, 500, "internal", "out of memory", false);
        return;
    }
    d->left = n;
    static const struct ahg_httpd_req_cbs cbs = {
        .on_drain = bytes_pump,
        .on_finish = dr_finish,
    };
    ahg_httpd_req_set_cbs(r, &cbs, d);
    if (ahg_httpd_resp_begin(r, rh, (int64_t)n) != AHG_OK) {
        ahg_httpd_resp_abort(r);
        return;
    }
    if (strcmp(ahg_httpd_req_head(r)->method, "HEAD") == 0) {
        (void)ahg_httpd_resp_end(r);
        return;
    }
    bytes_pump(r);
}

/* ---- /events ---- */

static void
events_tick(struct ahg_timer *t)
{
    struct demo_req *d = t->ud;
    d->timer_armed = false;
    char ev[160];
    int n = snprintf(ev, sizeof(ev),
                     "id: %" PRIu64 "\ndata: {\"n\":%" PRIu64 ",\"ms\":%" PRIu64 "}\n\n",
                     d->sent + 1, d->sent + 1, ahg_now_ms());
    if (n <= 0 || ahg_httpd_resp_write(d->r, ev, (size_t)n) != AHG_OK) {
        ahg_httpd_resp_abort(d->r);
        return;
    }
    d->sent++;
    if (d->left != UINT64_MAX)
        d->left--;
    if (d->left == 0) {
        (void)ahg_httpd_resp_end(d->r);
        return;
    }
    ahg_timer_start(&d->timer, d->every_ms);
    d->timer_armed = true;
}

static void
route_events(struct ahg_httpd_req *r)
{
    struct demo_req *d = dr_new(r, DEMO_EVENTS);
    struct ahg_http_head *rh = resp_head(200, "text/event-stream");
    if (!d || !rh || ahg_http_head_add(rh, "Cache-Control", "no-cache") != AHG_OK ||
        ahg_http_head_add(rh, "X-Accel-Buffering", "no") != AHG_OK) {
        free(d);
        ahg_http_head_free(rh);
        (void)ahg_httpd_respond_error(r, 500, "internal", "out of memory", false);
        return;
    }
    uint64_t v;
    d->every_ms = 500;
    if (query_u64(ahg_httpd_req_query(r), "every", &v))
        d->every_ms = v < DEMO_MIN_EVERY_MS ? DEMO_MIN_EVERY_MS
                                            : (v > DEMO_MAX_DELAY_MS ? DEMO_MAX_DELAY_MS : v);
    d->left = UINT64_MAX;
    if (query_u64(ahg_httpd_req_query(r), "count", &v) && v > 0)
        d->left = v;
    static const struct ahg_httpd_req_cbs cbs = {.on_finish = dr_finish};
    ahg_httpd_req_set_cbs(r, &cbs, d);
    if (ahg_httpd_resp_begin(r, rh, AHG_HTTPD_LEN_CHUNKED) != AHG_OK) {
        ahg_httpd_resp_abort(r);
        return;
    }
    /* A comment line first, so that proxies and browsers see the stream open at once. */
    if (ahg_httpd_resp_write(r, ": stream open\n\n", 15) != AHG_OK) {
        ahg_httpd_resp_abort(r);
        return;
    }
    ahg_timer_init(&d->timer, ahg_httpd_loop(ahg_httpd_req_server(r)), events_tick, d);
    ahg_timer_start(&d->timer, 0);
    d->timer_armed = true;
}

/* ---- /delay/MS ---- */

static void
delay_fire(struct ahg_timer *t)
{
    struct demo_req *d = t->ud;
    d->timer_armed = false;
    char body[64];
    int n = snprintf(body, sizeof(body), "delayed %" PRIu64 " ms\n", d->every_ms);
    (void)ahg_httpd_respond(d->r, 200, "text/plain; charset=utf-8", body, n > 0 ? (size_t)n : 0,
                            NULL);
}

static void
route_delay(struct ahg_httpd_req *r, uint64_t ms)
{
    struct demo_req *d = dr_new(r, DEMO_DELAY);
    if (!d) {
        (void)ahg_httpd_respond_error(r, 500, "internal", "out of memory", false);
        return;
    }
    d->every_ms = ms;
    static const struct ahg_httpd_req_cbs cbs = {.on_finish = dr_finish};
    ahg_httpd_req_set_cbs(r, &cbs, d);
    ahg_timer_init(&d->timer, ahg_httpd_loop(ahg_httpd_req_server(r)), delay_fire, d);
    ahg_timer_start(&d->timer, ms);
    d->timer_armed = true;
}

/* ---- /headers ---- */

static void
route_headers(struct ahg_httpd_req *r)
{
    const struct ahg_http_head *h = ahg_httpd_req_head(r);
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = root ? cJSON_AddArrayToObject(root, "headers") : NULL;
    bool ok = arr && cJSON_AddStringToObject(root, "method", h->method) &&
              cJSON_AddStringToObject(root, "target", h->target);
    for (size_t i = 0; ok && i < h->nfields; i++) {
        cJSON *pair = cJSON_CreateArray();
        ok = pair && cJSON_AddItemToArray(arr, pair);
        ok = ok && cJSON_AddItemToArray(pair, cJSON_CreateString(h->fields[i].name)) &&
             cJSON_AddItemToArray(pair, cJSON_CreateString(h->fields[i].value));
    }
    char *txt = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!txt || strlen(txt) > DEMO_MAX_HEADERS_J) {
        cJSON_free(txt);
        (void)ahg_httpd_respond_error(r, 500, "internal", "cannot render the headers", false);
        return;
    }
    (void)ahg_httpd_respond(r, 200, "application/json", txt, strlen(txt), NULL);
    cJSON_free(txt);
}

/* ---- /ws ---- */

static void
ws_message(struct ahg_wsconn *ws, enum ahg_ws_opcode op, const unsigned char *p, size_t n)
{
    if (ahg_wsconn_send(ws, op, p, n) != AHG_OK)
        ahg_wsconn_abort(ws);
}

static void
route_ws(struct ahg_httpd_req *r)
{
    int st = ahg_wsconn_check_upgrade(ahg_httpd_req_head(r));
    if (st != 0) {
        (void)ahg_httpd_respond_error(r, st, "bad_upgrade",
                                      "this path takes a WebSocket upgrade (RFC 6455)", false);
        return;
    }
    static const struct ahg_wsconn_cbs cbs = {.on_message = ws_message};
    int err = 0;
    if (!ahg_wsconn_accept(r, NULL, NULL, &cbs, NULL, &err))
        (void)ahg_httpd_respond_error(r, 500, "internal", "WebSocket accept failed", false);
}

/* ---- dispatch ---- */

static void
demo_request(struct ahg_httpd_req *r)
{
    const struct ahg_http_head *h = ahg_httpd_req_head(r);
    const char *path = ahg_httpd_req_path(r);
    bool get = strcmp(h->method, "GET") == 0 || strcmp(h->method, "HEAD") == 0;
    uint64_t n;

    if (strcmp(path, "/echo") == 0) {
        route_echo(r);
        return;
    }
    if (strcmp(path, "/sink") == 0) {
        if (strcmp(h->method, "POST") == 0 || strcmp(h->method, "PUT") == 0) {
            route_sink(r);
        } else {
            static const char *const allow[] = {"Allow", "POST, PUT", NULL};
            static const char msg[] = "405 Method Not Allowed: /sink takes POST or PUT\n";
            (void)ahg_httpd_respond(r, 405, "text/plain; charset=utf-8", msg, sizeof(msg) - 1,
                                    allow);
        }
        return;
    }
    if (!get) {
        static const char *const allow[] = {"Allow", "GET, HEAD", NULL};
        static const char msg[] = "405 Method Not Allowed: the demo app takes GET here\n";
        (void)ahg_httpd_respond(r, 405, "text/plain; charset=utf-8", msg, sizeof(msg) - 1, allow);
        return;
    }
    if (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0) {
        (void)ahg_httpd_respond(r, 200, "text/html; charset=utf-8", demo_page,
                                sizeof(demo_page) - 1, NULL);
    } else if (strcmp(path, "/ws") == 0) {
        route_ws(r);
    } else if (strcmp(path, "/events") == 0) {
        route_events(r);
    } else if (strcmp(path, "/headers") == 0) {
        route_headers(r);
    } else if (strcmp(path, "/healthz") == 0) {
        (void)ahg_httpd_respond(r, 200, "text/plain; charset=utf-8", "ok\n", 3, NULL);
    } else if (path_tail_u64(path, "/status/", 599, &n) && n >= 200) {
        (void)ahg_httpd_respond(r, (int)n, NULL, NULL, 0, NULL);
    } else if (path_tail_u64(path, "/delay/", DEMO_MAX_DELAY_MS, &n)) {
        route_delay(r, n);
    } else if (path_tail_u64(path, "/bytes/", DEMO_MAX_BYTES, &n)) {
        route_bytes(r, n);
    } else {
        (void)ahg_httpd_respond_error(r, 404, "not_found", "the demo app has no such page", false);
    }
}

struct cli_demo *
cli_demo_new(struct ahg_loop *loop, const struct cli_demo_opts *opts, int *err)
{
    struct cli_demo *d = calloc(1, sizeof(*d));
    if (!d) {
        *err = AHG_ENOMEM;
        return NULL;
    }
    d->loop = loop;
    struct ahg_httpd_opts o = {
        .name = "demo",
        .iface = opts->iface,
        .port = opts->port,
        .on_request = demo_request,
        .ud = d,
    };
    d->httpd = ahg_httpd_new(loop, &o, err);
    if (!d->httpd) {
        free(d);
        return NULL;
    }
    return d;
}

int
cli_demo_port(const struct cli_demo *d)
{
    return ahg_httpd_port(d->httpd);
}

void
cli_demo_free(struct cli_demo *d)
{
    free(d);
}
