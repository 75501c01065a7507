/*
 * test_e2e_attacks.c - attacks end to end through the full stack of real processes on
 * 127.0.0.1: redis-server, the emulator, azhexgate-controller, two azhexgate-gateway (the second
 * with the api host closed by api.allow_cidr), a real `azhexgate start` client and a local app
 * (in this process) that records every request it receives.
 *
 *   - the request-smuggling matrix: every ambiguous or malformed framing gets 4xx/501 at the
 *     gateway and the app receives nothing; a request hidden in a body stays a body;
 *   - Host tricks: /api/ on a tunnel host goes to the app; absolute-form targets (the authority
 *     wins over Host, RFC 9112 3.2.2, and the api allow-list still applies); X-Forwarded-* and
 *     Forwarded injection; case, trailing dot and ports; missing, double and invalid Host;
 *   - API key guessing: 401s, then 429 with Retry-After for that address only, through the
 *     gateway (X-Forwarded-For of a trusted proxy) and in-process (azhexgate-server, where the
 *     CLI shows it);
 *   - no TLS below 1.2 on the controller's HTTPS listener;
 *   - secrets never in any log line of the whole run (every process at debug level).
 * Measured numbers are printed as "rel: ..." lines (docs/reliability.md). AHG_REL_KEEP=1 keeps
 * the scratch directory with every process's log.
 */
#include "rel.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ahg/httpd.h"
#include "ahg/log.h"
#include "ahg/net.h"
#include "tbody.h"

#define API_KEY   "rel-e2e-api-key-7Qm4Zt9Lx2Vb8Nc1"
#define BASIC_PW  "rel-basic-pw-Hq3Rv7Ws1"
#define WRONG_KEY "rel-wrong-key-%02d-Jd8Kf2Pq"
#define ID_HDR    "rel-identity-header-Xw5Tz3"
#define CERT      AHG_TEST_FIXTURES "/certs/server.pem"
#define KEYPEM    AHG_TEST_FIXTURES "/certs/server.key"

/* ---- the recording app (its own loop thread) ---- */

static struct {
    struct ahg_loop *loop;
    pthread_t thr;
    int port;
    pthread_mutex_t mu;
    char log[256 * 1024]; /* one line per request received */
    size_t len;
    unsigned nreq;
} app;

struct app_req {
    char line[2048];
    size_t len;
};

static void
app_append(const char *s)
{
    (void)pthread_mutex_lock(&app.mu);
    size_t n = strlen(s);
    if (app.len + n + 1 < sizeof(app.log)) {
        memcpy(app.log + app.len, s, n);
        app.len += n;
        app.log[app.len] = '\0';
    }
    app.nreq++;
    (void)pthread_mutex_unlock(&app.mu);
}

static void
app_body(struct ahg_httpd_req *r, const char *p, size_t n)
{
    struct app_req *q = ahg_httpd_req_ud(r);
    for (size_t i = 0; i < n && q->len + 5 < sizeof(q->line); i++) {
        unsigned char c = (unsigned char)p[i];
        q->len += (size_t)snprintf(q->line + q->len, sizeof(q->line) - q->len,
                                   c >= 0x20 && c < 0x7f && c != '\\' ? "%c" : "\\x%02x", c);
    }
}

static void
app_body_end(struct ahg_httpd_req *r)
{
    struct app_req *q = ahg_httpd_req_ud(r);
    (void)snprintf(q->line + q->len, sizeof(q->line) - q->len, "\n");
    app_append(q->line);
    (void)ahg_httpd_respond(r, 200, "text/plain", "app-ok\n", 7, NULL);
}

static void
app_finish(struct ahg_httpd_req *r, bool completed)
{
    (void)completed;
    free(ahg_httpd_req_ud(r));
}

static const struct ahg_httpd_req_cbs app_cbs = {
    .on_body = app_body, .on_body_end = app_body_end, .on_finish = app_finish};

static void
app_request(struct ahg_httpd_req *r)
{
    const struct ahg_http_head *h = ahg_httpd_req_head(r);
    struct app_req *q = calloc(1, sizeof(*q));
    assert_non_null(q);
    const char *host = ahg_http_head_get(h, "Host", NULL);
    const char *xff = ahg_http_head_get(h, "X-Forwarded-For", NULL);
    const char *xfh = ahg_http_head_get(h, "X-Forwarded-Host", NULL);
    const char *fwd = ahg_http_head_get(h, "Forwarded", NULL);
    const char *xfp = ahg_http_head_get(h, "X-Forwarded-Proto", NULL);
    q->len = (size_t)snprintf(
        q->line, sizeof(q->line),
        "REQ %s %s host=%s xff=%s xfh=%s xfp=%s fwd=[%s] auth=%s body=", h->method, h->target,
        host ? host : "-", xff ? xff : "-", xfh ? xfh : "-", xfp ? xfp : "-", fwd ? fwd : "-",
        ahg_http_head_get(h, "Authorization", NULL) ? "yes" : "no");
    ahg_httpd_req_set_cbs(r, &app_cbs, q);
}

static unsigned
app_count(void)
{
    (void)pthread_mutex_lock(&app.mu);
    unsigned n = app.nreq;
    (void)pthread_mutex_unlock(&app.mu);
    return n;
}

/* The app's log from offset `from` (malloc'd). */
static char *
app_log_since(size_t from)
{
    (void)pthread_mutex_lock(&app.mu);
    char *s = strdup(from < app.len ? app.log + from : "");
    (void)pthread_mutex_unlock(&app.mu);
    assert_non_null(s);
    return s;
}

static size_t
app_len(void)
{
    (void)pthread_mutex_lock(&app.mu);
    size_t n = app.len;
    (void)pthread_mutex_unlock(&app.mu);
    return n;
}

static void
nap_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    (void)nanosleep(&ts, NULL);
}

/* Copies tmpl into out with {H} = host, {ID} = id and {P} = port replaced. */
static size_t
expand(const char *tmpl, const char *host, const char *id, int port, char *out, size_t outsz)
{
    char pbuf[16];
    (void)snprintf(pbuf, sizeof(pbuf), "%d", port);
    size_t n = 0;
    for (const char *p = tmpl; *p;) {
        const char *v = NULL;
        if (!strncmp(p, "{H}", 3))
            v = host;
        else if (!strncmp(p, "{ID}", 4))
            v = id;
        else if (!strncmp(p, "{P}", 3))
            v = pbuf;
        if (v) {
            size_t l = strlen(v);
            assert_true(n + l < outsz);
            memcpy(out + n, v, l);
            n += l;
            p = strchr(p, '}') + 1;
        } else {
            assert_true(n + 1 < outsz);
            out[n++] = *p++;
        }
    }
    out[n] = '\0';
    return n;
}

/* ---- the stack ---- */

static struct {
    char dir[256];
    struct ts_redis redis;
    struct ts_proc emu, ctl, gw, gw2, cli, cli2;
    int relay_port, mgmt_port, identity_port, ctl_port, ctl_admin, pub, pub2;
    char id[64], id2[64];
    char keyfile[320], badkeyfile[320];
    char token[1024]; /* a listener token the API handed out */
    char logs[8][320];
    size_t nlogs;
} st;

static const char *
logpath(const char *name)
{
    assert_true(st.nlogs < 8);
    char *p = st.logs[st.nlogs++];
    (void)snprintf(p, sizeof(st.logs[0]), "%s/%s.log", st.dir, name);
    return p;
}

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    (void)fputs(text, f);
    (void)fclose(f);
}

static void
start_gateway(struct ts_proc *p, int port, const char *name, const char *allow)
{
    char pub[16], store[64], up[64], relay[64];
    (void)snprintf(pub, sizeof(pub), "%d", port);
    ts_redis_url(&st.redis, store, sizeof(store));
    (void)snprintf(up, sizeof(up), "127.0.0.1:%d", st.ctl_port);
    (void)snprintf(relay, sizeof(relay), "ws://127.0.0.1:%d", st.relay_port);
    const char *argv[] = {GATEWAY_BIN,
                          "--log-level=debug",
                          "--domain",
                          "localhost",
                          "--listen-address",
                          "127.0.0.1",
                          "--listen-port",
                          pub,
                          "--admin-port",
                          "0",
                          "--store-url",
                          store,
                          "--api-upstream",
                          up,
                          "--relay-endpoint",
                          relay,
                          "--relay-auth",
                          "sas",
                          "--response-timeout",
                          "5s",
                          allow ? "--api-allow-cidr" : NULL,
                          allow,
                          NULL};
    const char *env[] = {"AZHEXGATE_RELAY_SAS_KEY=" TH_KEY, NULL};
    ts_spawn(p, argv, env, logpath(name));
    if (!ts_wait_port(port, 20000)) {
        char *o = ts_output(p);
        fail_msg("%s did not listen:\n%s", name, o);
    }
}

/* `azhexgate start` through the gateway's api host; returns once the tunnel is up. */
static void
start_client(struct ts_proc *p, const char *name, const char *const *extra, char *id, size_t idsz)
{
    char port[16], api[96];
    (void)snprintf(port, sizeof(port), "%d", app.port);
    (void)snprintf(api, sizeof(api), "http://api.localhost:%d", st.pub);
    const char *argv[16] = {AZHEXGATE_BIN, "start", "--port",         port,
                            "--api-url",   api,     "--api-key-file", st.keyfile};
    size_t k = 8;
    for (size_t i = 0; extra && extra[i]; i++)
        argv[k++] = extra[i];
    argv[k] = NULL;
    ts_spawn(p, argv, NULL, logpath(name));
    if (!ts_wait_output(p, "Forwarding to: ", 30000)) {
        char *o = ts_output(p);
        fail_msg("%s: no tunnel:\n%s", name, o);
    }
    char *o = ts_output(p);
    const char *u = strstr(o, "Public URL: http://");
    assert_non_null(u);
    u += strlen("Public URL: http://");
    size_t n = strcspn(u, ".");
    assert_true(n > 0 && n < idsz);
    memcpy(id, u, n);
    id[n] = '\0';
    free(o);
}

static int
stack_up(void **state)
{
    (void)state;
    (void)signal(SIGPIPE, SIG_IGN);
    ahg_log_setup("rel-test", AHG_LOG_FORMAT_TEXT, AHG_LOG_LVL_ERROR, 2);
    ts_mkdtemp(st.dir, sizeof(st.dir), "rel-e2e");

    /* the app */
    (void)pthread_mutex_init(&app.mu, NULL);
    app.loop = ahg_loop_new(NULL);
    assert_non_null(app.loop);
    struct ahg_httpd_opts ao = {.name = "rel-app", .on_request = app_request};
    int err = 0;
    struct ahg_httpd *srv = ahg_httpd_new(app.loop, &ao, &err);
    assert_non_null(srv);
    app.port = ahg_httpd_port(srv);
    tb_loop_thread_start(app.loop, &app.thr);

    ts_redis_start(&st.redis, 0, NULL);

    /* the emulator, with a known namespace key */
    char ready[320];
    (void)snprintf(ready, sizeof(ready), "%s/emu.ready", st.dir);
    char readyf[360];
    (void)snprintf(readyf, sizeof(readyf), "--emulator-ready-file=%s", ready);
    const char *eargv[] = {EMULATOR_BIN,
                           "--log-level=debug",
                           "--emulator-namespace=" TH_NS,
                           "--emulator-root-key=" TH_KEY,
                           "--emulator-relay-port=0",
                           "--emulator-mgmt-port=0",
                           "--emulator-identity-port=0",
                           "--emulator-admin-port=0",
                           "--emulator-identity-header=" ID_HDR,
                           readyf,
                           NULL};
    ts_spawn(&st.emu, eargv, NULL, logpath("emulator"));
    assert_true(ts_wait_file(ready, 20000));
    st.relay_port = ts_ready_value(ready, "relay_port");
    st.mgmt_port = ts_ready_value(ready, "mgmt_port");
    st.identity_port = ts_ready_value(ready, "identity_port");
    assert_true(st.relay_port > 0 && st.mgmt_port > 0 && st.identity_port > 0);

    /* the controller (default trusted proxies: loopback, i.e. the gateways here) */
    (void)snprintf(st.keyfile, sizeof(st.keyfile), "%s/api-key", st.dir);
    write_file(st.keyfile, API_KEY "\n");
    (void)snprintf(st.badkeyfile, sizeof(st.badkeyfile), "%s/bad-key", st.dir);
    write_file(st.badkeyfile, "rel-bad-cli-key-Uy6Gh4\n");
    st.pub = ts_free_port();
    st.pub2 = ts_free_port();
    char store[64], pubport[16], relay[64], arm[64], ident[96], cready[320], creadyf[360];
    ts_redis_url(&st.redis, store, sizeof(store));
    (void)snprintf(pubport, sizeof(pubport), "%d", st.pub);
    (void)snprintf(relay, sizeof(relay), "ws://127.0.0.1:%d/", st.relay_port);
    (void)snprintf(arm, sizeof(arm), "http://127.0.0.1:%d", st.mgmt_port);
    (void)snprintf(ident, sizeof(ident), "http://127.0.0.1:%d/msi/token", st.identity_port);
    (void)snprintf(cready, sizeof(cready), "%s/ctl.ready", st.dir);
    (void)snprintf(creadyf, sizeof(creadyf), "--controller-ready-file=%s", cready);
    const char *cargv[] = {CONTROLLER_BIN,
                           "--log-level=debug",
                           "--controller-listen-port=0",
                           "--controller-admin-port=0",
                           "--controller-store",
                           store,
                           "--controller-public-scheme=http",
                           "--controller-public-domain=localhost",
                           "--controller-public-port",
                           pubport,
                           "--controller-relay-endpoint",
                           relay,
                           "--controller-relay-host=" TH_HOST,
                           "--controller-arm-endpoint",
                           arm,
                           "--controller-arm-subscription=00000000-0000-0000-0000-000000000000",
                           "--controller-arm-resource-group=azhexgate",
                           "--controller-arm-namespace=" TH_NS,
                           "--controller-identity-kind=appservice",
                           "--controller-identity-endpoint",
                           ident,
                           "--controller-auth-max-failures=5",
                           creadyf,
                           NULL};
    const char *cenv[] = {"AZHEXGATE_CONTROLLER_AUTH_KEYS=" API_KEY,
                          "AZHEXGATE_CONTROLLER_IDENTITY_HEADER=" ID_HDR, NULL};
    ts_spawn(&st.ctl, cargv, cenv, logpath("controller"));
    if (!ts_wait_file(cready, 20000)) {
        char *o = ts_output(&st.ctl);
        fail_msg("the controller did not start:\n%s", o);
    }
    st.ctl_port = ts_ready_value(cready, "api_port");
    st.ctl_admin = ts_ready_value(cready, "admin_port");
    for (int i = 0; i < 200 && rel_get_status(st.ctl_admin, "/readyz") != 200; i++)
        nap_ms(50);
    assert_int_equal(rel_get_status(st.ctl_admin, "/readyz"), 200);

    start_gateway(&st.gw, st.pub, "gateway", NULL);
    start_gateway(&st.gw2, st.pub2, "gateway-closed-api", "10.0.0.0/8");

    start_client(&st.cli, "client", NULL, st.id, sizeof(st.id));
    const char *extra[] = {"--basic-auth", "alice:" BASIC_PW, NULL};
    start_client(&st.cli2, "client-basic", extra, st.id2, sizeof(st.id2));
    (void)printf("rel: stack up: tunnels %s and %s (basic auth), gateways :%d and :%d\n", st.id,
                 st.id2, st.pub, st.pub2);
    return 0;
}

static int
stack_down(void **state)
{
    (void)state;
    ts_kill(&st.cli);
    ts_kill(&st.cli2);
    ts_kill(&st.gw);
    ts_kill(&st.gw2);
    ts_kill(&st.ctl);
    ts_kill(&st.emu);
    ts_redis_stop(&st.redis);
    tb_loop_thread_stop(app.loop, app.thr);
    ahg_loop_free(app.loop);
    if (!getenv("AHG_REL_KEEP"))
        ts_rmtree(st.dir);
    return 0;
}

/* ---- raw HTTP ---- */

/* Case-insensitive strstr. */
static const char *
ci_find(const char *s, const char *needle)
{
    size_t n = strlen(needle);
    for (; *s; s++)
        if (strncasecmp(s, needle, n) == 0)
            return s;
    return NULL;
}

struct raw {
    int status; /* of the first response; 0 = none */
    int nresp;  /* "HTTP/1.1 " status lines seen */
    char buf[16384];
    size_t len;
};

/*
 * Sends req (n bytes) from source address src (NULL = any) to 127.0.0.1:port and reads until
 * the server closes, a complete response with a Content-Length arrived and want responses were
 * seen, or 3 s pass without a byte.
 */
static void
raw_send(const char *src, int port, const char *req, size_t n, int want, struct raw *out)
{
    memset(out, 0, sizeof(*out));
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (src) {
        struct sockaddr_in s = {.sin_family = AF_INET};
        assert_int_equal(inet_pton(AF_INET, src, &s.sin_addr), 1);
        assert_int_equal(bind(fd, (struct sockaddr *)&s, sizeof(s)), 0);
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    for (size_t off = 0; off < n;) {
        ssize_t w = send(fd, req + off, n - off, MSG_NOSIGNAL);
        if (w <= 0)
            break; /* the server may close early on a bad head */
        off += (size_t)w;
    }
    for (;;) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 3000) <= 0)
            break;
        ssize_t got = recv(fd, out->buf + out->len, sizeof(out->buf) - 1 - out->len, 0);
        if (got <= 0)
            break;
        out->len += (size_t)got;
        out->buf[out->len] = '\0';
        int nr = 0;
        const char *last = NULL;
        for (const char *p = out->buf; (p = strstr(p, "HTTP/1.1 ")) != NULL; p += 9) {
            nr++;
            last = p;
        }
        out->nresp = nr;
        if (nr >= want && last) {
            const char *eoh = strstr(last, "\r\n\r\n");
            const char *cl = ci_find(last, "\r\nContent-Length:");
            if (eoh && cl && cl < eoh &&
                (size_t)(out->buf + out->len - (eoh + 4)) >= (size_t)strtoul(cl + 17, NULL, 10))
                break;
        }
        if (out->len + 1 >= sizeof(out->buf))
            break;
    }
    (void)close(fd);
    if (strncmp(out->buf, "HTTP/1.1 ", 9) == 0 || strncmp(out->buf, "HTTP/1.0 ", 9) == 0)
        out->status = atoi(out->buf + 9);
}

static void
raw_str(const char *src, int port, const char *req, struct raw *out)
{
    raw_send(src, port, req, strlen(req), 1, out);
}

/* ---- request smuggling ---- */

/* Lines of the file at path holding both needles (0 when it cannot be read). */
static size_t
count_lines_with(const char *path, const char *a, const char *b)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[4096];
    size_t n = 0;
    while (fgets(line, sizeof(line), f))
        n += strstr(line, a) && strstr(line, b);
    (void)fclose(f);
    return n;
}

static void
test_smuggling_matrix(void **state)
{
    (void)state;
    char h[128];
    (void)snprintf(h, sizeof(h), "%s.localhost:%d", st.id, st.pub);
    /* each attack: the bytes (%s = Host), the statuses accepted (the first is the expected) */
    static const struct {
        const char *name;
        const char *fmt;
        int status, alt;
    } cases[] = {
        {"CL + TE",
         "POST /a HTTP/1.1\r\nHost: {H}\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n"
         "0\r\n\r\nGET /smuggled-1 HTTP/1.1\r\nHost: x\r\n\r\n",
         400, 400},
        {"TE + CL",
         "POST /a HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
         "5c\r\nGET /smuggled-2 HTTP/1.1\r\nHost: x\r\n\r\n0\r\n\r\n",
         400, 400},
        {"duplicate Content-Length",
         "POST /a HTTP/1.1\r\nHost: {H}\r\nContent-Length: 4\r\nContent-Length: 43\r\n\r\n"
         "abcdGET /smuggled-3 HTTP/1.1\r\nHost: x\r\n\r\n",
         400, 400},
        {"Content-Length list 4, 43",
         "POST /a HTTP/1.1\r\nHost: {H}\r\nContent-Length: 4, 43\r\n\r\n"
         "abcdGET /smuggled-4 HTTP/1.1\r\nHost: x\r\n\r\n",
         400, 400},
        {"TE chunked, identity",
         "POST /a HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked, identity\r\n\r\n"
         "0\r\n\r\nGET /smuggled-5 HTTP/1.1\r\nHost: x\r\n\r\n",
         400, 501},
        {"TE xchunked",
         "POST /a HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: xchunked\r\n\r\n"
         "0\r\n\r\nGET /smuggled-6 HTTP/1.1\r\nHost: x\r\n\r\n",
         501, 400},
        {"TE chunked twice",
         "POST /a HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n"
         "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled-7 HTTP/1.1\r\nHost: x\r\n\r\n",
         400, 400},
        {"TE obs-fold",
         "POST /a HTTP/1.1\r\nHost: {H}\r\nContent-Length: 43\r\nTransfer-Encoding:\r\n chunked\r\n"
         "\r\n0\r\n\r\nGET /smuggled-8 HTTP/1.1\r\nHost: x\r\n\r\n",
         400, 400},
        {"space before colon",
         "POST /a HTTP/1.1\r\nHost: {H}\r\nContent-Length: 43\r\nTransfer-Encoding : chunked\r\n"
         "\r\n0\r\n\r\nGET /smuggled-9 HTTP/1.1\r\nHost: x\r\n\r\n",
         400, 400},
        {"TE in HTTP/1.0",
         "POST /a HTTP/1.0\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n"
         "0\r\n\r\nGET /smuggled-10 HTTP/1.1\r\nHost: x\r\n\r\n",
         400, 400},
        {"Content-Length +43",
         "POST /a HTTP/1.1\r\nHost: {H}\r\nContent-Length: +43\r\n\r\n"
         "GET /smuggled-11 HTTP/1.1\r\nHost: x\r\n\r\n",
         400, 400},
        {"Content-Length -1",
         "POST /a HTTP/1.1\r\nHost: {H}\r\nContent-Length: -1\r\n\r\n"
         "GET /smuggled-12 HTTP/1.1\r\nHost: x\r\n\r\n",
         400, 400},
        {"Content-Length overflow",
         "POST /a HTTP/1.1\r\nHost: {H}\r\nContent-Length: 99999999999999999999\r\n\r\n"
         "GET /smuggled-13 HTTP/1.1\r\nHost: x\r\n\r\n",
         400, 400},
        {"chunk size not hex",
         "POST /a HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n"
         "zz\r\nGET /smuggled-14 HTTP/1.1\r\nHost: x\r\n\r\n0\r\n\r\n",
         400, 400},
        {"chunk size overflow",
         "POST /a HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n"
         "fffffffffffffffff1\r\nGET /smuggled-15 HTTP/1.1\r\nHost: x\r\n\r\n0\r\n\r\n",
         400, 400},
        {"chunk size +5 / -5",
         "POST /a HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n"
         "-5\r\nGET /smuggled-16 HTTP/1.1\r\nHost: x\r\n\r\n0\r\n\r\n",
         400, 400},
        {"chunk data longer than its size",
         "POST /a HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n"
         "1\r\nAGET /smuggled-17 HTTP/1.1\r\nHost: x\r\n\r\n0\r\n\r\n",
         400, 400},
        {"bare LF line ends", "GET /smuggled-18 HTTP/1.1\nHost: {H}\n\n", 400, 400},
        {"bare LF inside the head",
         "POST /a HTTP/1.1\r\nHost: {H}\nContent-Length: 43\r\n\r\n"
         "GET /smuggled-19 HTTP/1.1\r\nHost: x\r\n\r\n",
         400, 400},
        {"bare CR", "GET /smuggled-20 HTTP/1.1\r\nHost: {H}\rX-A: b\r\n\r\n", 400, 400},
        {"CTL 0x01 in a field value",
         "GET /smuggled-21 HTTP/1.1\r\nHost: {H}\r\nX-A: a\x01"
         "b\r\n\r\n",
         400, 400},
        {"space in a field name",
         "POST /a HTTP/1.1\r\nHost: {H}\r\nTransfer Encoding: chunked\r\nContent-Length: 43\r\n\r\n"
         "GET /smuggled-22 HTTP/1.1\r\nHost: x\r\n\r\n",
         400, 400},
        {"HTTP/1.2", "GET /smuggled-23 HTTP/1.2\r\nHost: {H}\r\n\r\n", 400, 505},
    };
    unsigned before = app_count();
    size_t from = app_len();
    /* refused requests get an access record of their own (no method, no target) */
    size_t rec0 = count_lines_with(st.logs[2], "\"type\":\"access\"", "\"status\":");
    size_t null0 = count_lines_with(st.logs[2], "\"type\":\"access\"", "\"target\":null");
    size_t refused = 0;
    char req[1024];
    struct raw r;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = expand(cases[i].fmt, h, st.id, st.pub, req, sizeof(req));
        raw_send(NULL, st.pub, req, n, 1, &r);
        (void)printf("rel: smuggling '%s' -> %d (%d response%s)\n", cases[i].name, r.status,
                     r.nresp, r.nresp == 1 ? "" : "s");
        if (r.status != cases[i].status && r.status != cases[i].alt)
            fail_msg("'%s': expected %d, got %d:\n%s", cases[i].name, cases[i].status, r.status,
                     r.buf);
        if (r.nresp != 1)
            fail_msg("'%s': %d responses:\n%s", cases[i].name, r.nresp, r.buf);
        refused++;
    }
    /* NUL cannot go through snprintf: by hand */
    static const char nul[] = "GET /smuggled-24 HTTP/1.1\r\nHost: x.localhost\r\nX-A: a\0b\r\n\r\n";
    raw_send(NULL, st.pub, nul, sizeof(nul) - 1, 1, &r);
    (void)printf("rel: smuggling 'NUL byte' -> %d\n", r.status);
    assert_int_equal(r.status, 400);
    /* a NUL in the target */
    static const char nul2[] = "GET /smuggled-25\0x HTTP/1.1\r\nHost: x.localhost\r\n\r\n";
    raw_send(NULL, st.pub, nul2, sizeof(nul2) - 1, 1, &r);
    (void)printf("rel: smuggling 'NUL in the target' -> %d\n", r.status);
    assert_int_equal(r.status, 400);

    refused += 2;

    /* the app received nothing at all */
    nap_ms(300);
    size_t recs = count_lines_with(st.logs[2], "\"type\":\"access\"", "\"status\":") - rec0;
    size_t nulls = count_lines_with(st.logs[2], "\"type\":\"access\"", "\"target\":null") - null0;
    (void)printf("rel: smuggling: %zu access records in the gateway's log for %zu attacks (%zu "
                 "refused by the parser, before a request existed)\n",
                 recs, refused, nulls);
    assert_true(recs >= refused); /* every refused request leaves its access record */
    assert_true(nulls > 0);
    char *seen = app_log_since(from);
    if (app_count() != before)
        fail_msg("the app received %u requests during the attacks:\n%s", app_count() - before,
                 seen);
    free(seen);

    /* a request hidden in a valid body stays a body: one request at the app, with that body */
    char body[128];
    int bl = snprintf(body, sizeof(body), "GET /smuggled-pipe HTTP/1.1\r\nHost: %s\r\n\r\n", h);
    int n =
        snprintf(req, sizeof(req),
                 "POST /carrier HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s", h, bl, body);
    raw_send(NULL, st.pub, req, (size_t)n, 1, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.buf, "app-ok"));
    /* and chunked: the gateway re-frames, the app gets the decoded body */
    n = snprintf(req, sizeof(req),
                 "POST /carrier-chunked HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n"
                 "Connection: close\r\n\r\n%x\r\n%s\r\n0\r\n\r\n",
                 h, (unsigned)bl, body);
    raw_send(NULL, st.pub, req, (size_t)n, 1, &r);
    assert_int_equal(r.status, 200);
    nap_ms(300);
    seen = app_log_since(from);
    assert_int_equal(app_count() - before, 2);
    assert_non_null(strstr(seen, "REQ POST /carrier host="));
    assert_non_null(strstr(seen, "REQ POST /carrier-chunked host="));
    assert_null(strstr(seen, "REQ GET /smuggled"));
    (void)printf("rel: smuggling: %zu attacks + 2 NUL cases all refused; the app received none "
                 "of them; a request hidden in a body (Content-Length and chunked) reached the "
                 "app as a body only\n",
                 sizeof(cases) / sizeof(cases[0]));
    free(seen);
}

/* ---- Host tricks ---- */

struct host_case {
    const char *name;
    const char *req; /* {ID} = tunnel id, {P} = port */
    int status;
    const char *app_sees; /* substring of the app's line, NULL = the app sees nothing */
    const char *body_has; /* substring of the response, or NULL */
};

static void
run_host_case(const struct host_case *c, int port)
{
    char req[1024];
    size_t n = expand(c->req, "", st.id, port, req, sizeof(req));
    unsigned before = app_count();
    size_t from = app_len();
    struct raw r;
    raw_send(NULL, port, req, n, 1, &r);
    nap_ms(100);
    char *seen = app_log_since(from);
    (void)printf("rel: host '%s' -> %d%s%.*s\n", c->name, r.status,
                 app_count() != before ? ", app: " : ", app: nothing", (int)strcspn(seen, "\n"),
                 seen);
    if (r.status != c->status)
        fail_msg("'%s': expected %d, got %d:\n%s", c->name, c->status, r.status, r.buf);
    if (c->app_sees) {
        if (app_count() != before + 1 || !strstr(seen, c->app_sees))
            fail_msg("'%s': the app should have seen '%s', saw:\n%s", c->name, c->app_sees, seen);
    } else if (app_count() != before) {
        fail_msg("'%s': the app should have seen nothing, saw:\n%s", c->name, seen);
    }
    if (c->body_has && !strstr(r.buf, c->body_has))
        fail_msg("'%s': the response lacks '%s':\n%s", c->name, c->body_has, r.buf);
    free(seen);
}

static void
test_host_tricks(void **state)
{
    (void)state;
    const struct host_case cases[] = {
        {"/api/tunnels on a tunnel host",
         "GET /api/tunnels HTTP/1.1\r\nHost: {ID}.localhost:{P}\r\n"
         "X-AzHexGate-ApiKey: " API_KEY "\r\nConnection: close\r\n\r\n",
         200, "REQ GET /api/tunnels host=", "app-ok"},
        {"absolute-form api target, tunnel Host",
         "GET http://api.localhost:{P}/api/tunnels HTTP/1.1\r\nHost: {ID}.localhost:{P}\r\n"
         "Connection: close\r\n\r\n",
         401, NULL, "unauthorized"},
        {"absolute-form tunnel target, api Host",
         "GET http://{ID}.localhost:{P}/abs?q=1 HTTP/1.1\r\nHost: api.localhost:{P}\r\n"
         "Connection: close\r\n\r\n",
         200, "REQ GET /abs?q=1 host=", "app-ok"},
        {"absolute-form: the authority replaces Host at the app",
         "GET http://{ID}.localhost:{P}/abs2 HTTP/1.1\r\nHost: evil.example\r\n"
         "Connection: close\r\n\r\n",
         200, "xfh=", NULL},
        {"absolute-form with userinfo",
         "GET http://user@api.localhost:{P}/api/tunnels HTTP/1.1\r\nHost: {ID}.localhost\r\n\r\n",
         400, NULL, NULL},
        {"X-Forwarded-* / Forwarded injection",
         "GET /fwd HTTP/1.1\r\nHost: {ID}.localhost:{P}\r\nX-Forwarded-For: 6.6.6.6\r\n"
         "X-Forwarded-Host: api.localhost\r\nX-Forwarded-Proto: https\r\n"
         "Forwarded: for=6.6.6.6;host=api.localhost\r\nConnection: close\r\n\r\n",
         200, "xff=127.0.0.1 xfh=", NULL},
        {"X-Forwarded-Host: api on a tunnel host does not reach the API",
         "GET /api/tunnels HTTP/1.1\r\nHost: {ID}.localhost:{P}\r\n"
         "X-Forwarded-Host: api.localhost:{P}\r\nConnection: close\r\n\r\n",
         200, "REQ GET /api/tunnels", "app-ok"},
        {"upper case + trailing dot",
         "GET /case HTTP/1.1\r\nHost: {ID}.LOCALHOST.:{P}\r\nConnection: close\r\n\r\n", 200,
         "REQ GET /case host=", "app-ok"},
        {"api host in upper case with a trailing dot",
         "GET /api/tunnels HTTP/1.1\r\nHost: API.LocalHost.:{P}\r\nConnection: close\r\n\r\n", 401,
         NULL, "unauthorized"},
        {"another port in Host (routing by name)",
         "GET /port HTTP/1.1\r\nHost: {ID}.localhost:1\r\nConnection: close\r\n\r\n", 200,
         "REQ GET /port host=", NULL},
        {"tunnel id under a foreign domain",
         "GET / HTTP/1.1\r\nHost: {ID}.localhost.evil.example\r\nConnection: close\r\n\r\n", 404,
         NULL, NULL},
        {"two labels", "GET / HTTP/1.1\r\nHost: api.{ID}.localhost\r\nConnection: close\r\n\r\n",
         404, NULL, NULL},
        {"missing Host (HTTP/1.1)", "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 400, NULL, NULL},
        {"two Host fields", "GET / HTTP/1.1\r\nHost: {ID}.localhost\r\nHost: api.localhost\r\n\r\n",
         400, NULL, NULL},
        {"empty Host", "GET / HTTP/1.1\r\nHost: \r\n\r\n", 400, NULL, NULL},
        {"invalid Host (slash)", "GET / HTTP/1.1\r\nHost: {ID}.localhost/api\r\n\r\n", 400, NULL,
         NULL},
        {"invalid Host (space)", "GET / HTTP/1.1\r\nHost: {ID} .localhost\r\n\r\n", 400, NULL,
         NULL},
        {"invalid Host (@)", "GET / HTTP/1.1\r\nHost: api.localhost@{ID}.localhost\r\n\r\n", 400,
         NULL, NULL},
        {"HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", 404, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        run_host_case(&cases[i], st.pub);

    /* the injected forwarding headers were replaced by the gateway's own */
    char *seen = app_log_since(0);
    const char *fwd = strstr(seen, "REQ GET /fwd ");
    assert_non_null(fwd);
    char line[1024];
    (void)snprintf(line, sizeof(line), "%.*s", (int)strcspn(fwd, "\n"), fwd);
    assert_null(strstr(line, "6.6.6.6"));
    assert_null(strstr(line, "xfh=api.localhost"));
    assert_non_null(strstr(line, " xfp=http "));
    assert_non_null(strstr(line, "fwd=[for=127.0.0.1;host="));
    const char *abs2 = strstr(seen, "REQ GET /abs2 ");
    assert_non_null(abs2);
    (void)snprintf(line, sizeof(line), "%.*s", (int)strcspn(abs2, "\n"), abs2);
    assert_null(strstr(line, "evil.example"));
    free(seen);

    /* the api allow-list (gateway 2: api host open to 10.0.0.0/8 only) also holds for an
     * absolute-form api target sent with a tunnel Host */
    const struct host_case closed[] = {
        {"closed api host", "GET /api/tunnels HTTP/1.1\r\nHost: api.localhost:{P}\r\n\r\n", 403,
         NULL, NULL},
        {"closed api host via absolute-form",
         "GET http://api.localhost:{P}/api/tunnels HTTP/1.1\r\nHost: {ID}.localhost:{P}\r\n\r\n",
         403, NULL, NULL},
        {"closed api: tunnels still served",
         "GET /open HTTP/1.1\r\nHost: {ID}.localhost:{P}\r\nConnection: close\r\n\r\n", 200,
         "REQ GET /open host=", NULL},
    };
    for (size_t i = 0; i < sizeof(closed) / sizeof(closed[0]); i++)
        run_host_case(&closed[i], st.pub2);
}

/* ---- API key guessing ---- */

static void
api_req(const char *src, const char *key, const char *xff, struct raw *r)
{
    char req[512];
    (void)snprintf(req, sizeof(req),
                   "GET /api/tunnels HTTP/1.1\r\nHost: api.localhost:%d\r\n"
                   "X-AzHexGate-ApiKey: %s\r\n%s%s%sConnection: close\r\n\r\n",
                   st.pub, key, xff ? "X-Forwarded-For: " : "", xff ? xff : "", xff ? "\r\n" : "");
    raw_str(src, st.pub, req, r);
}

static void
test_api_key_guessing_429(void **state)
{
    (void)state;
    /* the controller allows 5 failures per minute per address here */
    struct raw r;
    char key[64], xff[32];
    uint64_t t0 = ahg_now_ms();
    for (int i = 0; i < 5; i++) {
        (void)snprintf(key, sizeof(key), WRONG_KEY, i);
        (void)snprintf(xff, sizeof(xff), "203.0.113.%d", i + 1); /* spoofing attempts */
        api_req("127.0.0.2", key, xff, &r);
        if (r.status != 401)
            fail_msg("guess %d: expected 401, got %d:\n%s", i, r.status, r.buf);
    }
    (void)snprintf(key, sizeof(key), WRONG_KEY, 5);
    api_req("127.0.0.2", key, "198.51.100.77", &r);
    (void)printf("rel: api key guessing: 6th wrong key from 127.0.0.2 (through the gateway, "
                 "X-Forwarded-For rotated) -> %d after %llu ms\n",
                 r.status, (unsigned long long)(ahg_now_ms() - t0));
    assert_int_equal(r.status, 429);
    const char *ra = ci_find(r.buf, "\r\nRetry-After: ");
    assert_non_null(ra);
    long secs = strtol(ra + 15, NULL, 10);
    assert_true(secs >= 1 && secs <= 60);
    assert_non_null(strstr(r.buf, "application/json"));
    assert_non_null(strstr(r.buf, "\"code\":\"rate_limited\""));
    (void)printf("rel: api key guessing: 429 Retry-After %ld, body %s\n", secs,
                 strstr(r.buf, "\r\n\r\n") + 4);
    /* while locked out even the right key is refused from that address */
    api_req("127.0.0.2", API_KEY, NULL, &r);
    assert_int_equal(r.status, 429);
    /* other addresses are not affected */
    api_req("127.0.0.3", API_KEY, NULL, &r);
    assert_int_equal(r.status, 200);
    api_req(NULL, API_KEY, NULL, &r);
    assert_int_equal(r.status, 200);
    /* a valid key does not reset a budget: 4 failures, a success, 1 failure -> locked */
    for (int i = 0; i < 4; i++) {
        (void)snprintf(key, sizeof(key), WRONG_KEY, 10 + i);
        api_req("127.0.0.4", key, NULL, &r);
        assert_int_equal(r.status, 401);
    }
    api_req("127.0.0.4", API_KEY, NULL, &r);
    assert_int_equal(r.status, 200);
    (void)snprintf(key, sizeof(key), WRONG_KEY, 14);
    api_req("127.0.0.4", key, NULL, &r);
    assert_int_equal(r.status, 401);
    api_req("127.0.0.4", API_KEY, NULL, &r);
    assert_int_equal(r.status, 429);
    /* counted in the metrics, logged once per lockout */
    char url[96];
    (void)snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", st.ctl_admin);
    struct ts_req q = {.url = url};
    struct ts_resp m;
    ts_http(&q, &m);
    assert_non_null(strstr(m.body, "azhexgate_controller_auth_lockouts_total 2"));
    assert_non_null(strstr(m.body, "azhexgate_controller_auth_throttled_total 3"));
    ts_resp_free(&m);
    char *o = ts_output(&st.ctl);
    const char *l1 = strstr(o, "127.0.0.2 locked out");
    assert_non_null(l1);
    assert_null(strstr(l1 + 1, "127.0.0.2 locked out"));
    assert_non_null(strstr(o, "127.0.0.4 locked out"));
    free(o);
}

/* In-process (azhexgate-server: the gateway hands the real peer to the controller): the CLI
 * with a wrong key gets 401 twice, then 429 and says so (exit 75). */
static int
cli_run(struct ts_server *s, const char *keyfile, const char *tag, char **out)
{
    char port[16], log[400];
    (void)snprintf(port, sizeof(port), "%d", app.port);
    (void)snprintf(log, sizeof(log), "%s/cli-%s.log", st.dir, tag);
    const char *argv[] = {AZHEXGATE_BIN, "start",          "--port", port, "--api-url",
                          s->api_url,    "--api-key-file", keyfile,  NULL};
    struct ts_proc p;
    ts_spawn(&p, argv, NULL, log);
    int code = ts_wait_exit(&p, 30000);
    *out = ts_output(&p);
    return code;
}

static void
test_cli_sees_429_in_process(void **state)
{
    (void)state;
    char dir[320];
    (void)snprintf(dir, sizeof(dir), "%s/server", st.dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    struct ts_server s;
    const char *extra[] = {"--controller-auth-max-failures=2", NULL};
    ts_server_start(&s, SERVER_BIN, dir, extra);
    char *o = NULL;
    for (int i = 0; i < 2; i++) {
        int code = cli_run(&s, st.badkeyfile, "bad", &o);
        assert_non_null(strstr(o, "Authentication failed (HTTP 401"));
        assert_int_not_equal(code, 0);
        free(o);
    }
    int code = cli_run(&s, st.badkeyfile, "bad3", &o);
    (void)printf("rel: api key guessing, CLI (in-process controller): third attempt exit %d: "
                 "%.*s\n",
                 code, (int)strcspn(strstr(o, "Unable") ? strstr(o, "Unable") : o, "\n"),
                 strstr(o, "Unable") ? strstr(o, "Unable") : o);
    assert_int_equal(code, 75);
    assert_non_null(strstr(o, "Unable to create tunnel: too many failed API keys"));
    assert_non_null(strstr(o, "HTTP 429"));
    assert_null(strstr(o, "rel-bad-cli-key"));
    free(o);
    code = cli_run(&s, s.api_key_file, "good", &o); /* the right key: same address, locked */
    assert_int_equal(code, 75);
    assert_non_null(strstr(o, "HTTP 429"));
    free(o);
    char *so = ts_output(&s.proc);
    assert_non_null(strstr(so, "127.0.0.1 locked out"));
    assert_null(strstr(so, "rel-bad-cli-key"));
    free(so);
    ts_kill(&s.proc);
}

/* ---- TLS on the controller's own listener ---- */

static void
test_controller_tls_minimum(void **state)
{
    (void)state;
    char ready[320], readyf[360], store[64];
    (void)snprintf(ready, sizeof(ready), "%s/ctl-tls.ready", st.dir);
    (void)snprintf(readyf, sizeof(readyf), "--controller-ready-file=%s", ready);
    ts_redis_url(&st.redis, store, sizeof(store));
    const char *argv[] = {CONTROLLER_BIN,
                          "--controller-listen-port=0",
                          "--controller-admin-port=0",
                          "--controller-listen-cert=" CERT,
                          "--controller-listen-key=" KEYPEM,
                          "--controller-store",
                          store,
                          "--controller-arm-subscription=s",
                          "--controller-arm-resource-group=g",
                          "--controller-arm-namespace=n",
                          "--controller-reconcile-enabled=false",
                          "--controller-identity-kind=imds",
                          "--controller-identity-endpoint=http://127.0.0.1:9/token",
                          readyf,
                          NULL};
    const char *env[] = {"AZHEXGATE_CONTROLLER_AUTH_KEYS=" API_KEY, NULL};
    struct ts_proc p;
    ts_spawn(&p, argv, env, logpath("controller-tls"));
    if (!ts_wait_file(ready, 20000)) {
        char *o = ts_output(&p);
        fail_msg("the TLS controller did not start:\n%s", o);
    }
    rel_tls_expect_min_12("controller api (https)", ts_ready_value(ready, "api_port"));
    ts_signal(&p, SIGTERM);
    assert_int_equal(ts_wait_exit(&p, 20000), 0);
}

/* ---- secrets in every log ---- */

static void
test_secrets_never_in_logs(void **state)
{
    (void)state;
    /* traffic that carries secrets: basic auth right and wrong, a bearer, API calls */
    char h2[128], req[1024];
    (void)snprintf(h2, sizeof(h2), "%s.localhost:%d", st.id2, st.pub);
    struct raw r;
    /* alice:<pw> and alice:wrong-<pw> in base64 */
    static const char good[] = "YWxpY2U6cmVsLWJhc2ljLXB3LUhxM1J2N1dzMQ==";
    static const char bad[] = "YWxpY2U6d3JvbmctcmVsLWJhc2ljLXB3LUhxM1J2N1dzMQ==";
    (void)snprintf(req, sizeof(req),
                   "GET /basic HTTP/1.1\r\nHost: %s\r\nAuthorization: Basic %s\r\n"
                   "Connection: close\r\n\r\n",
                   h2, good);
    raw_str(NULL, st.pub, req, &r);
    assert_int_equal(r.status, 200);
    (void)snprintf(req, sizeof(req),
                   "GET /basic HTTP/1.1\r\nHost: %s\r\nAuthorization: Basic %s\r\n"
                   "Connection: close\r\n\r\n",
                   h2, bad);
    raw_str(NULL, st.pub, req, &r);
    assert_int_equal(r.status, 401);
    (void)snprintf(req, sizeof(req),
                   "GET /bearer?sig=rel-query-secret-Pz8 HTTP/1.1\r\nHost: %s.localhost:%d\r\n"
                   "Authorization: Bearer rel-bearer-Mv2Ct6Yb0\r\nConnection: close\r\n\r\n",
                   st.id, st.pub);
    raw_str(NULL, st.pub, req, &r);
    assert_int_equal(r.status, 200);
    /* a tunnel created and deleted through the API: its listener token is a secret too */
    (void)snprintf(req, sizeof(req),
                   "POST /api/tunnels HTTP/1.1\r\nHost: api.localhost:%d\r\n"
                   "X-AzHexGate-ApiKey: " API_KEY "\r\nContent-Type: application/json\r\n"
                   "Content-Length: 2\r\nConnection: close\r\n\r\n{}",
                   st.pub);
    raw_str(NULL, st.pub, req, &r);
    assert_int_equal(r.status, 201);
    const char *t = strstr(r.buf, "\"listener_token\":\"");
    assert_non_null(t);
    t += 18;
    (void)snprintf(st.token, sizeof(st.token), "%.*s", (int)strcspn(t, "\""), t);
    const char *sig = strstr(st.token, "sig=");
    assert_non_null(sig);
    char sigv[128];
    (void)snprintf(sigv, sizeof(sigv), "%.*s", (int)strcspn(sig + 4, "&"), sig + 4);

    /* stop everything (logs complete), then grep every log */
    ts_signal(&st.cli, SIGINT);
    ts_signal(&st.cli2, SIGINT);
    (void)ts_wait_exit(&st.cli, 15000);
    (void)ts_wait_exit(&st.cli2, 15000);
    ts_signal(&st.gw, SIGTERM);
    ts_signal(&st.gw2, SIGTERM);
    ts_signal(&st.ctl, SIGTERM);
    assert_int_equal(ts_wait_exit(&st.gw, 20000), 0);
    assert_int_equal(ts_wait_exit(&st.gw2, 20000), 0);
    assert_int_equal(ts_wait_exit(&st.ctl, 20000), 0);
    ts_signal(&st.emu, SIGTERM);
    assert_int_equal(ts_wait_exit(&st.emu, 20000), 0);

    char wrong[64];
    (void)snprintf(wrong, sizeof(wrong), WRONG_KEY, 3);
    static const char query_secret[] = "rel-query-secret-Pz8";
    const char *secrets[] = {API_KEY,
                             "rel-bad-cli-key-Uy6Gh4",
                             wrong,
                             TH_KEY,
                             "XmNd2Wq7Lr4Tz9Pb1Vc6",
                             st.token,
                             sigv,
                             BASIC_PW,
                             good,
                             bad,
                             "rel-bearer-Mv2Ct6Yb0",
                             query_secret,
                             ID_HDR,
                             NULL};
    long lines = 0;
    size_t nsec = sizeof(secrets) / sizeof(secrets[0]) - 1;
    for (size_t i = 0; i < st.nlogs; i++) {
        for (size_t j = 0; secrets[j]; j++) {
            if (!rel_file_has(st.logs[i], secrets[j]))
                continue;
            fail_msg("%s contains secret #%zu (%.12s...)", st.logs[i], j, secrets[j]);
        }
        long n = rel_count_lines(st.logs[i]);
        lines += n > 0 ? n : 0;
        (void)printf("rel: secrets: %s: %ld lines, none of the %zu secrets\n",
                     strrchr(st.logs[i], '/') + 1, n, nsec);
    }
    /* the logs did record the traffic (so the search was meaningful) */
    assert_true(rel_file_has(st.logs[2], "/basic"));  /* gateway access log */
    assert_true(rel_file_has(st.logs[1], "created")); /* controller: the POST */
    (void)printf("rel: secrets: %ld log lines of %zu processes searched: no secret\n", lines,
                 st.nlogs);
}

int
main(void)
{
    (void)setvbuf(stdout, NULL, _IOLBF, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_smuggling_matrix),
        cmocka_unit_test(test_host_tricks),
        cmocka_unit_test(test_api_key_guessing_429),
        cmocka_unit_test(test_cli_sees_429_in_process),
        cmocka_unit_test(test_controller_tls_minimum),
        cmocka_unit_test(test_secrets_never_in_logs), /* last: stops the stack */
    };
    return cmocka_run_group_tests(tests, stack_up, stack_down);
}
