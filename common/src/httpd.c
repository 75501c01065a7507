#include "ahg/httpd.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ahg/err.h"
#include "ahg/log.h"

#define DEFAULT_HEADER_TIMEOUT_MS 10000u
#define DEFAULT_IDLE_TIMEOUT_MS   75000u
#define BODY_SLICE                16384u
#define DISCARD_MAX               ((uint64_t)4 * 1024 * 1024) /* unread body we drain to keep alive */

struct ahg_httpd {
    struct ahg_loop *loop;
    struct ahg_listener *listener;
    struct ahg_httpd_opts opts;
};

enum hc_state {
    HC_HEAD,  /* waiting for / parsing a request head */
    HC_BODY,  /* reading the request body */
    HC_WAIT,  /* body done, response not finished */
    HC_CLOSED /* connection closing; nothing more is read */
};

struct hconn {
    struct ahg_httpd *srv;
    struct ahg_conn *conn;
    struct ahg_http_parser *parser;
    struct ahg_httpd_req *req;
    struct ahg_timer timer;
    enum hc_state state;
    bool head_bytes;       /* some bytes of the next head arrived */
    uint64_t last_body_ms; /* when request body bytes last arrived (body idle timeout) */
    bool in_data;          /* inside on_data */
    bool dead;             /* free at the end of on_data */
};

struct ahg_httpd_req {
    struct hconn *hc;
    struct ahg_http_head *head;
    char id[AHG_LOG_REQUEST_ID_LEN];
    char *path;
    const char *query;
    uint64_t start_ms;

    const struct ahg_httpd_req_cbs *cbs;
    void *ud;

    uint64_t max_body;
    uint64_t body_bytes;
    bool body_done;
    bool body_paused;
    bool discarding; /* response ended before the body: drain it */

    bool resp_begun;
    bool resp_ended;
    bool resp_chunked;
    bool resp_close_delim;
    bool resp_no_body;
    int64_t resp_len;
    uint64_t resp_sent;
    bool keep_alive;
    bool finished;
    bool expect_continue;
};

static const struct ahg_conn_ops hconn_ops;

/* ---- helpers ---- */

void
ahg_httpd_date(char *out, size_t outsz)
{
    static const char *const wd[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const mo[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    (void)snprintf(out, outsz, "%s, %02d %s %04d %02d:%02d:%02d GMT", wd[tm.tm_wday % 7],
                   tm.tm_mday, mo[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                   tm.tm_sec);
}

static void
timer_arm(struct hconn *hc, uint64_t ms)
{
    if (ms)
        ahg_timer_start(&hc->timer, ms);
    else
        ahg_timer_stop(&hc->timer);
}

/* Writes a complete error response straight to the connection (no request object). */
static void
write_raw_error(struct hconn *hc, int status, const char *msg)
{
    char body[512];
    char date[40];
    char out[1024];
    ahg_httpd_date(date, sizeof(date));
    int bl = snprintf(body, sizeof(body), "%d %s: %s\n", status, ahg_http_reason(status), msg);
    if (bl < 0 || (size_t)bl >= sizeof(body))
        bl = (int)strlen(body);
    int n = snprintf(out, sizeof(out),
                     "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
                     status, ahg_http_reason(status), date, bl, body);
    if (n > 0 && (size_t)n < sizeof(out))
        (void)ahg_conn_write(hc->conn, out, (size_t)n);
    hc->state = HC_CLOSED;
    if (hc->srv->opts.on_reject)
        hc->srv->opts.on_reject(hc->srv->opts.ud, status, msg, ahg_conn_peer_addr(hc->conn));
    ahg_conn_close(hc->conn);
}

static const char *
parse_error_text(int err)
{
    switch (err) {
    case AHG_EHDRSIZE:
        return "the request header block is too large";
    case AHG_EURISIZE:
        return "the request line is too long";
    case AHG_ENOTIMPL:
        return "the request method or transfer coding is not supported";
    case AHG_ELIMIT:
        return "the request body is too large";
    default:
        return "the request is malformed";
    }
}

static void
req_free(struct ahg_httpd_req *r)
{
    ahg_http_head_free(r->head);
    free(r->path);
    free(r);
}

/* The exchange is over: tell the owner, free the request, get ready for the next one. */
static void
req_finish(struct ahg_httpd_req *r, bool completed)
{
    struct hconn *hc = r->hc;
    if (r->finished)
        return;
    r->finished = true;
    if (r->cbs && r->cbs->on_finish)
        r->cbs->on_finish(r, completed);
    if (hc)
        hc->req = NULL;
    req_free(r);
    if (!hc || hc->state == HC_CLOSED)
        return;
    if (!completed) {
        hc->state = HC_CLOSED;
        ahg_conn_abort(hc->conn);
        return;
    }
    ahg_http_parser_reset(hc->parser);
    hc->state = HC_HEAD;
    hc->head_bytes = false;
    timer_arm(hc, hc->srv->opts.idle_timeout_ms);
    ahg_conn_resume_read(hc->conn);
}

static void
maybe_finish(struct ahg_httpd_req *r)
{
    if (r->resp_ended && r->body_done)
        req_finish(r, true);
}

/* ---- body ---- */

static int
body_cb(void *ud, const char *data, size_t len)
{
    struct ahg_httpd_req *r = ud;
    r->body_bytes += len;
    r->hc->last_body_ms = ahg_now_ms();
    if (r->max_body && r->body_bytes > r->max_body)
        return AHG_ELIMIT;
    if (r->discarding)
        return AHG_OK;
    if (r->cbs && r->cbs->on_body)
        r->cbs->on_body(r, data, len);
    return AHG_OK;
}

static void
body_end(struct ahg_httpd_req *r)
{
    struct hconn *hc = r->hc;
    r->body_done = true;
    hc->state = HC_WAIT; /* no timeout while the handler answers (hconn_timeout ignores it) */
    if (!r->discarding && r->cbs && r->cbs->on_body_end)
        r->cbs->on_body_end(r);
    if (hc->req == r)
        maybe_finish(r);
}

static void
body_error(struct ahg_httpd_req *r, int err)
{
    struct hconn *hc = r->hc;
    if (!r->resp_begun && !r->discarding) {
        int st = ahg_err_http_status(err);
        if (err == AHG_ELIMIT)
            st = 413;
        ahg_httpd_respond_error(r, st, ahg_err_name(err), parse_error_text(err), false);
    }
    if (hc->req == r) {
        if (r->resp_ended && hc->state != HC_CLOSED) {
            /* the error answer is queued: let it go out, then close (an abort would drop it) */
            hc->state = HC_CLOSED;
            ahg_conn_close(hc->conn);
        }
        req_finish(r, false);
    }
}

/* ---- connection input ---- */

static void
new_request(struct hconn *hc)
{
    struct ahg_httpd_req *r = calloc(1, sizeof(*r));
    if (!r) {
        write_raw_error(hc, 503, "out of memory");
        return;
    }
    r->hc = hc;
    r->head = ahg_http_parser_head_take(hc->parser);
    ahg_log_new_request_id(r->id);
    r->start_ms = ahg_now_ms();
    r->max_body = hc->srv->opts.max_body;
    r->keep_alive = r->head && r->head->keep_alive;
    const char *t = r->head ? r->head->target : "/";
    /* absolute-form (RFC 9112 3.2.2): the path starts after the authority */
    if (!strncasecmp(t, "http://", 7) || !strncasecmp(t, "https://", 8)) {
        const char *a = strstr(t, "://") + 3;
        const char *slash = a + strcspn(a, "/?");
        t = *slash == '/' ? slash : "/";
        if (*slash == '?')
            t = slash; /* "http://h?q": path "/" is implied; keep the query */
    }
    const char *q = strchr(t, '?');
    size_t pl = q ? (size_t)(q - t) : strlen(t);
    size_t ql = q ? strlen(q) - 1 : 0;
    r->path = malloc(pl + 2 + ql + 1);
    if (!r->head || !r->path) {
        req_free(r);
        write_raw_error(hc, 503, "out of memory");
        return;
    }
    memcpy(r->path, t, pl);
    r->path[pl] = '\0';
    if (pl == 0) { /* "http://h?q" */
        r->path[0] = '/';
        r->path[1] = '\0';
        pl = 1;
    }
    char *qs = r->path + pl + 1;
    memcpy(qs, q ? q + 1 : "", ql);
    qs[ql] = '\0';
    r->query = qs;

    const char *expect = ahg_http_head_get(r->head, "Expect", NULL);
    if (expect) {
        if (strcasecmp(expect, "100-continue") != 0) {
            hc->req = r;
            hc->state = HC_BODY;
            ahg_httpd_respond_error(r, 417, "EXPECTATION", "only 100-continue is supported", false);
            req_finish(r, false);
            return;
        }
        r->expect_continue = ahg_http_parser_framing(hc->parser) != AHG_HTTP_BODY_NONE;
    }
    hc->req = r;
    hc->state = HC_BODY;
    hc->last_body_ms = ahg_now_ms();
    timer_arm(hc, hc->srv->opts.idle_timeout_ms);
    hc->srv->opts.on_request(r);
    /* Ask for the body once the handler has had its say (RFC 9110 10.1.1). */
    if (hc->req == r && r->expect_continue && !r->resp_begun && hc->state == HC_BODY) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        (void)ahg_conn_write(hc->conn, cont, sizeof(cont) - 1);
        r->expect_continue = false;
    }
}

static size_t
hconn_data(struct ahg_conn *c, const unsigned char *p, size_t n)
{
    struct hconn *hc = ahg_conn_ud(c);
    size_t used = 0;
    hc->in_data = true;
    while (used < n && !hc->dead) {
        if (hc->state == HC_CLOSED) {
            used = n; /* drop whatever follows an error */
            break;
        }
        if (hc->state == HC_WAIT)
            break; /* pipelined: wait until the current response is done */
        if (hc->state == HC_HEAD) {
            size_t k = 0;
            if (!hc->head_bytes) {
                hc->head_bytes = true;
                timer_arm(hc, hc->srv->opts.header_timeout_ms);
            }
            int rc = ahg_http_parser_feed(hc->parser, (const char *)p + used, n - used, &k);
            used += k;
            if (rc == AHG_EAGAIN)
                break;
            if (rc != AHG_OK) {
                write_raw_error(hc, ahg_err_http_status(rc), parse_error_text(rc));
                used = n;
                break;
            }
            new_request(hc);
            if (hc->dead)
                break;
            if (hc->state == HC_BODY && hc->req &&
                ahg_http_parser_framing(hc->parser) == AHG_HTTP_BODY_NONE)
                body_end(hc->req);
            continue;
        }
        /* HC_BODY */
        struct ahg_httpd_req *r = hc->req;
        if (!r || r->body_paused)
            break;
        if (ahg_http_parser_framing(hc->parser) == AHG_HTTP_BODY_NONE) {
            body_end(r);
            continue;
        }
        size_t slice = n - used < BODY_SLICE ? n - used : BODY_SLICE;
        size_t k = 0;
        int rc = ahg_http_parser_body(hc->parser, (const char *)p + used, slice, &k, body_cb, r);
        used += k;
        if (rc == AHG_OK) {
            body_end(r);
            continue;
        }
        if (rc != AHG_EAGAIN) {
            body_error(r, rc);
            used = n;
            break;
        }
        if (r->discarding && r->body_bytes > DISCARD_MAX) {
            r->keep_alive = false;
            req_finish(r, false);
            used = n;
            break;
        }
    }
    hc->in_data = false;
    if (hc->dead) {
        /* hijacked or freed during the call: the conn belongs to someone else now */
        free(hc);
        return used;
    }
    return used;
}

static void
hconn_drain(struct ahg_conn *c)
{
    struct hconn *hc = ahg_conn_ud(c);
    struct ahg_httpd_req *r = hc->req;
    if (r && r->resp_begun && !r->resp_ended && r->cbs && r->cbs->on_drain)
        r->cbs->on_drain(r);
}

static void
hconn_close(struct ahg_conn *c, enum ahg_conn_end why)
{
    struct hconn *hc = ahg_conn_ud(c);
    (void)why;
    ahg_timer_stop(&hc->timer);
    hc->state = HC_CLOSED;
    if (hc->req) {
        struct ahg_httpd_req *r = hc->req;
        bool done = r->resp_ended;
        req_finish(r, done && r->body_done);
    }
    ahg_http_parser_free(hc->parser);
    if (hc->in_data)
        hc->dead = true;
    else
        free(hc);
}

static const struct ahg_conn_ops hconn_ops = {
    .on_data = hconn_data,
    .on_drain = hconn_drain,
    .on_close = hconn_close,
};

static void
hconn_timeout(struct ahg_timer *t)
{
    struct hconn *hc = t->ud;
    if (hc->state == HC_WAIT)
        return; /* the response's own timeouts apply; req_finish() re-arms */
    if (hc->state == HC_HEAD && hc->head_bytes) {
        write_raw_error(hc, 408, "the request head did not arrive in time");
        return;
    }
    if (hc->state == HC_BODY && hc->req) {
        /* The body timeout is an idle timeout: it counts from the last body bytes, and not
         * while the handler paused the body (backpressure is not the client's fault). */
        uint64_t idle = hc->srv->opts.idle_timeout_ms, now = ahg_now_ms();
        if (hc->req->body_paused) {
            timer_arm(hc, idle);
            return;
        }
        if (hc->last_body_ms && now - hc->last_body_ms < idle) {
            timer_arm(hc, idle - (now - hc->last_body_ms));
            return;
        }
        if (!hc->req->resp_begun) {
            ahg_httpd_respond_error(hc->req, 408, "TIMEOUT",
                                    "the request body did not arrive in time", false);
            return;
        }
    }
    hc->state = HC_CLOSED;
    ahg_conn_close(hc->conn);
}

static void
on_accept(struct ahg_listener *l, struct ahg_conn *c)
{
    struct ahg_httpd *s = ahg_listener_ud(l);
    struct hconn *hc = calloc(1, sizeof(*hc));
    int err = 0;
    if (!hc)
        return; /* no ops set: the net layer closes it */
    hc->parser = ahg_http_parser_new(AHG_HTTP_REQUEST, &s->opts.limits, &err);
    if (!hc->parser) {
        free(hc);
        return;
    }
    hc->srv = s;
    hc->conn = c;
    hc->state = HC_HEAD;
    ahg_timer_init(&hc->timer, s->loop, hconn_timeout, hc);
    ahg_conn_set_ops(c, &hconn_ops, hc);
    /* A new connection must start its first request within the header timeout (idle
     * connections that never send a byte are not kept for the keep-alive idle time). */
    timer_arm(hc, s->opts.header_timeout_ms);
}

static void
httpd_free(void *ud)
{
    struct ahg_httpd *s = ud;
    if (s->opts.on_free)
        s->opts.on_free(s->opts.ud);
    free(s);
}

struct ahg_httpd *
ahg_httpd_new(struct ahg_loop *loop, const struct ahg_httpd_opts *opts, int *err)
{
    struct ahg_httpd *s = calloc(1, sizeof(*s));
    if (!s) {
        if (err)
            *err = AHG_ENOMEM;
        return NULL;
    }
    s->loop = loop;
    s->opts = *opts;
    if (!s->opts.limits.max_head)
        ahg_http_limits_default(&s->opts.limits);
    if (!s->opts.header_timeout_ms)
        s->opts.header_timeout_ms = DEFAULT_HEADER_TIMEOUT_MS;
    if (!s->opts.idle_timeout_ms)
        s->opts.idle_timeout_ms = DEFAULT_IDLE_TIMEOUT_MS;
    struct ahg_listener_opts lo = {
        .name = opts->name,
        .iface = opts->iface,
        .port = opts->port,
        .cert_file = opts->cert_file,
        .key_file = opts->key_file,
        .on_accept = on_accept,
        .ud = s,
    };
    lo.on_free = httpd_free; /* the server lives as long as its listener */
    s->listener = ahg_listener_new(loop, &lo, err);
    if (!s->listener) {
        free(s);
        return NULL;
    }
    return s;
}

int
ahg_httpd_port(const struct ahg_httpd *s)
{
    return ahg_listener_port(s->listener);
}

void *
ahg_httpd_ud(const struct ahg_httpd *s)
{
    return s->opts.ud;
}

struct ahg_loop *
ahg_httpd_loop(const struct ahg_httpd *s)
{
    return s->loop;
}

/* ---- request accessors ---- */

const struct ahg_http_head *
ahg_httpd_req_head(const struct ahg_httpd_req *r)
{
    return r->head;
}

struct ahg_httpd *
ahg_httpd_req_server(const struct ahg_httpd_req *r)
{
    return r->hc ? r->hc->srv : NULL;
}

struct ahg_conn *
ahg_httpd_req_conn(const struct ahg_httpd_req *r)
{
    return r->hc ? r->hc->conn : NULL;
}

const char *
ahg_httpd_req_id(const struct ahg_httpd_req *r)
{
    return r->id;
}

const char *
ahg_httpd_req_path(const struct ahg_httpd_req *r)
{
    return r->path;
}

const char *
ahg_httpd_req_query(const struct ahg_httpd_req *r)
{
    return r->query;
}

uint64_t
ahg_httpd_req_start_ms(const struct ahg_httpd_req *r)
{
    return r->start_ms;
}

void
ahg_httpd_req_set_cbs(struct ahg_httpd_req *r, const struct ahg_httpd_req_cbs *cbs, void *ud)
{
    r->cbs = cbs;
    r->ud = ud;
}

void *
ahg_httpd_req_ud(const struct ahg_httpd_req *r)
{
    return r->ud;
}

void
ahg_httpd_req_set_max_body(struct ahg_httpd_req *r, uint64_t max)
{
    r->max_body = max;
}

void
ahg_httpd_req_pause_body(struct ahg_httpd_req *r)
{
    r->body_paused = true;
}

void
ahg_httpd_req_resume_body(struct ahg_httpd_req *r)
{
    if (!r->body_paused)
        return;
    r->body_paused = false;
    if (r->hc && r->hc->state == HC_BODY) {
        if (r->expect_continue && !r->resp_begun) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            (void)ahg_conn_write(r->hc->conn, cont, sizeof(cont) - 1);
            r->expect_continue = false;
        }
        ahg_conn_resume_read(r->hc->conn);
    }
}

bool
ahg_httpd_req_body_done(const struct ahg_httpd_req *r)
{
    return r->body_done;
}

uint64_t
ahg_httpd_req_body_bytes(const struct ahg_httpd_req *r)
{
    return r->body_bytes;
}

/* ---- response ---- */

static bool
status_has_no_body(int status)
{
    return (status >= 100 && status < 200) || status == 204 || status == 304;
}

int
ahg_httpd_resp_begin(struct ahg_httpd_req *r, struct ahg_http_head *head, int64_t content_length)
{
    struct hconn *hc = r->hc;
    if (r->resp_begun || !head) {
        ahg_http_head_free(head);
        return AHG_EINVAL;
    }
    if (!hc || hc->state == HC_CLOSED) {
        ahg_http_head_free(head);
        return AHG_ECLOSED;
    }
    ahg_http_head_remove(head, "Content-Length");
    ahg_http_head_remove(head, "Transfer-Encoding");
    ahg_http_head_remove(head, "Connection");
    ahg_http_head_remove(head, "Keep-Alive");

    bool is_head = r->head->method && strcmp(r->head->method, "HEAD") == 0;
    bool http11 = r->head->version_major == 1 && r->head->version_minor >= 1;
    r->resp_no_body = is_head || status_has_no_body(head->status);
    r->resp_len = content_length;
    char num[32];
    int rc = AHG_OK;
    if (content_length >= 0) {
        if (!status_has_no_body(head->status)) {
            (void)snprintf(num, sizeof(num), "%" PRId64, content_length);
            rc = ahg_http_head_add(head, "Content-Length", num);
        }
    } else if (!r->resp_no_body) {
        if (http11) {
            r->resp_chunked = true;
            rc = ahg_http_head_add(head, "Transfer-Encoding", "chunked");
        } else {
            r->resp_close_delim = true;
            r->keep_alive = false;
        }
    }
    if (r->expect_continue && !r->body_done) {
        if (head->status < 400) {
            /* The handler answers and reads the body: the client must still send it. */
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            (void)ahg_conn_write(hc->conn, cont, sizeof(cont) - 1);
        } else {
            r->keep_alive = false; /* the client will not send the body it announced */
        }
    }
    r->expect_continue = false;
    if (rc == AHG_OK && !ahg_http_head_get(head, "Date", NULL)) {
        char date[40];
        ahg_httpd_date(date, sizeof(date));
        rc = ahg_http_head_add(head, "Date", date);
    }
    if (rc == AHG_OK) {
        if (!r->keep_alive)
            rc = ahg_http_head_add(head, "Connection", "close");
        else if (!http11)
            rc = ahg_http_head_add(head, "Connection", "keep-alive");
    }
    size_t need = 0;
    if (rc == AHG_OK) {
        rc = ahg_http_head_serialize(head, 0, NULL, 0, &need);
        if (rc == AHG_ELIMIT)
            rc = AHG_OK;
    }
    char *buf = rc == AHG_OK ? malloc(need) : NULL;
    if (rc == AHG_OK && !buf)
        rc = AHG_ENOMEM;
    size_t len = 0;
    if (rc == AHG_OK)
        rc = ahg_http_head_serialize(head, 0, buf, need, &len);
    if (rc == AHG_OK)
        rc = ahg_conn_write(hc->conn, buf, len);
    free(buf);
    ahg_http_head_free(head);
    if (rc != AHG_OK)
        return rc;
    r->resp_begun = true;
    return AHG_OK;
}

int
ahg_httpd_resp_write(struct ahg_httpd_req *r, const void *p, size_t n)
{
    struct hconn *hc = r->hc;
    if (!r->resp_begun || r->resp_ended)
        return AHG_EINVAL;
    if (!hc || hc->state == HC_CLOSED)
        return AHG_ECLOSED;
    if (n == 0 || r->resp_no_body)
        return AHG_OK;
    if (r->resp_len >= 0 && r->resp_sent + n > (uint64_t)r->resp_len)
        return AHG_ELIMIT;
    int rc;
    if (r->resp_chunked) {
        char line[24];
        int l = snprintf(line, sizeof(line), "%zx\r\n", n);
        rc = ahg_conn_write(hc->conn, line, (size_t)l);
        if (rc == AHG_OK)
            rc = ahg_conn_write(hc->conn, p, n);
        if (rc == AHG_OK)
            rc = ahg_conn_write(hc->conn, "\r\n", 2);
    } else {
        rc = ahg_conn_write(hc->conn, p, n);
    }
    if (rc == AHG_OK)
        r->resp_sent += n;
    return rc;
}

bool
ahg_httpd_resp_writable(const struct ahg_httpd_req *r)
{
    return r->hc && r->hc->state != HC_CLOSED && ahg_conn_writable(r->hc->conn);
}

int
ahg_httpd_resp_end(struct ahg_httpd_req *r)
{
    struct hconn *hc = r->hc;
    if (!r->resp_begun || r->resp_ended)
        return AHG_EINVAL;
    r->resp_ended = true;
    if (!hc || hc->state == HC_CLOSED) {
        req_finish(r, false);
        return AHG_ECLOSED;
    }
    if (!r->resp_no_body && r->resp_len >= 0 && r->resp_sent != (uint64_t)r->resp_len) {
        req_finish(r, false);
        return AHG_EPROTO;
    }
    if (r->resp_chunked && !r->resp_no_body)
        (void)ahg_conn_write(hc->conn, "0\r\n\r\n", 5);
    if (!r->keep_alive) {
        hc->state = HC_CLOSED;
        ahg_conn_close(hc->conn);
        req_finish(r, true);
        return AHG_OK;
    }
    if (!r->body_done) {
        /* Read and drop the rest of the request body, then carry on with keep-alive. */
        r->discarding = true;
        r->body_paused = false;
        ahg_conn_resume_read(hc->conn);
        return AHG_OK;
    }
    maybe_finish(r);
    return AHG_OK;
}

void
ahg_httpd_resp_abort(struct ahg_httpd_req *r)
{
    struct hconn *hc = r->hc;
    if (hc && hc->state != HC_CLOSED) {
        hc->state = HC_CLOSED;
        ahg_conn_abort(hc->conn);
    }
    req_finish(r, false);
}

bool
ahg_httpd_resp_started(const struct ahg_httpd_req *r)
{
    return r->resp_begun;
}

int
ahg_httpd_respond(struct ahg_httpd_req *r, int status, const char *content_type, const void *body,
                  size_t len, const char *const *extra_fields)
{
    int err = 0;
    struct ahg_http_head *h = ahg_http_head_new_response(status, NULL, &err);
    if (!h)
        return err;
    int rc = AHG_OK;
    if (content_type)
        rc = ahg_http_head_add(h, "Content-Type", content_type);
    for (size_t i = 0; rc == AHG_OK && extra_fields && extra_fields[i]; i += 2)
        rc = ahg_http_head_add(h, extra_fields[i], extra_fields[i + 1] ? extra_fields[i + 1] : "");
    if (rc != AHG_OK) {
        ahg_http_head_free(h);
        return rc;
    }
    rc = ahg_httpd_resp_begin(r, h, (int64_t)len);
    if (rc == AHG_OK && len)
        rc = ahg_httpd_resp_write(r, body, len);
    if (rc == AHG_OK)
        rc = ahg_httpd_resp_end(r);
    else if (r->resp_begun && !r->resp_ended)
        ahg_httpd_resp_abort(r);
    return rc;
}

static size_t
json_escape(const char *in, char *out, size_t outsz)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 7 < outsz; p++) {
        if (*p == '"' || *p == '\\') {
            out[o++] = '\\';
            out[o++] = (char)*p;
        } else if (*p < 0x20) {
            o += (size_t)snprintf(out + o, outsz - o, "\\u%04x", *p);
        } else {
            out[o++] = (char)*p;
        }
    }
    out[o] = '\0';
    return o;
}

int
ahg_httpd_respond_error(struct ahg_httpd_req *r, int status, const char *code, const char *message,
                        bool json)
{
    char body[1024];
    int n;
    if (json) {
        char c[128], m[768];
        json_escape(code ? code : ahg_http_reason(status), c, sizeof(c));
        json_escape(message ? message : "", m, sizeof(m));
        n = snprintf(body, sizeof(body), "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}\n", c,
                     m);
    } else {
        n = snprintf(body, sizeof(body), "%d %s: %s\n", status, ahg_http_reason(status),
                     message ? message : "");
    }
    if (n < 0)
        return AHG_EINVAL;
    if ((size_t)n >= sizeof(body))
        n = (int)sizeof(body) - 1;
    if (r->max_body && r->body_bytes > r->max_body)
        r->keep_alive = false;
    static const char *const nocache[] = {"Cache-Control", "no-store", NULL};
    return ahg_httpd_respond(r, status, json ? "application/json" : "text/plain; charset=utf-8",
                             body, (size_t)n, nocache);
}

struct ahg_conn *
ahg_httpd_req_hijack(struct ahg_httpd_req *r, const struct ahg_conn_ops *ops, void *ud)
{
    struct hconn *hc = r->hc;
    if (!hc || hc->state == HC_CLOSED || r->resp_begun ||
        ahg_http_parser_framing(hc->parser) != AHG_HTTP_BODY_NONE)
        return NULL;
    struct ahg_conn *c = hc->conn;
    ahg_timer_stop(&hc->timer);
    r->finished = true;
    hc->req = NULL;
    req_free(r);
    ahg_http_parser_free(hc->parser);
    hc->parser = NULL;
    ahg_conn_set_ops(c, ops, ud);
    ahg_conn_resume_read(c);
    if (hc->in_data)
        hc->dead = true;
    else
        free(hc);
    return c;
}
