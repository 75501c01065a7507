#include "rel.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ahg/log.h"
#include "ahg/net.h"

static void
rel_tick(struct ahg_timer *t)
{
    ahg_timer_start(t, 5); /* keeps ahg_loop_run_once() returning */
}

void
rel_init(struct rel *r, const char *tag)
{
    memset(r, 0, sizeof(*r));
    ahg_log_setup("rel-test", AHG_LOG_FORMAT_TEXT, AHG_LOG_LVL_ERROR, 2);
    ts_mkdtemp(r->dir, sizeof(r->dir), tag);
    (void)snprintf(r->ready, sizeof(r->ready), "%s/ready", r->dir);
    (void)snprintf(r->log, sizeof(r->log), "%s/emulator.log", r->dir);
    r->t.loop = ahg_loop_new(NULL);
    assert_non_null(r->t.loop);
    ahg_timer_init(&r->t.tick, r->t.loop, rel_tick, r);
    ahg_timer_start(&r->t.tick, 5);
}

static int
ready_value(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    return p ? (int)strtol(p + strlen(key), NULL, 10) : -1;
}

void
rel_emu_start(struct rel *r, const char *const *extra, const char *const *env)
{
    char readyf[400];
    (void)snprintf(readyf, sizeof(readyf), "--emulator-ready-file=%s", r->ready);
    static const char ns_flag[] = "--emulator-namespace=" TH_NS;
    static const char key_flag[] = "--emulator-root-key=" TH_KEY;
    /* AHG_REL_EMULATOR_BIN: measure another build (e.g. one without sanitizers) */
    const char *bin = getenv("AHG_REL_EMULATOR_BIN");
    const char *argv[32] = {bin && *bin ? bin : EMULATOR_BIN,
                            "--log-level=debug",
                            ns_flag,
                            "--emulator-relay-port=0",
                            "--emulator-mgmt-port=0",
                            "--emulator-identity-port=0",
                            "--emulator-admin-port=0",
                            "--emulator-hybrid-connections=hc1",
                            "--emulator-hybrid-connections=hc2",
                            key_flag,
                            readyf};
    size_t n = 11;
    for (size_t i = 0; extra && extra[i] && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    ts_spawn(&r->emu, argv, env, r->log);
    for (int i = 0; i < 1000 && access(r->ready, F_OK) != 0; i++) {
        if (!ts_alive(&r->emu))
            break;
        struct timespec ts = {.tv_nsec = 10000000};
        (void)nanosleep(&ts, NULL);
    }
    FILE *f = fopen(r->ready, "r");
    if (!f) {
        char *out = ts_output(&r->emu);
        fail_msg("the emulator did not start: %s", out ? out : "");
    }
    char text[1024];
    size_t len = fread(text, 1, sizeof(text) - 1, f);
    (void)fclose(f);
    text[len] = '\0';
    r->relay_port = ready_value(text, "relay_port=");
    r->mgmt_port = ready_value(text, "mgmt_port=");
    r->admin_port = ready_value(text, "admin_port=");
    assert_true(r->relay_port > 0 && r->admin_port > 0 && r->mgmt_port > 0);
    r->t.port = r->relay_port;
}

void
rel_finish(struct rel *r)
{
    if (r->emu.pid > 0 && ts_alive(&r->emu)) {
        ts_signal(&r->emu, SIGTERM);
        int st = ts_wait_exit(&r->emu, 20000);
        if (st != 0) {
            char *out = ts_output(&r->emu);
            ts_kill(&r->emu);
            fail_msg("emulator exit status %d; output:\n%s", st, out ? out : "");
        }
    }
    ahg_timer_stop(&r->t.tick);
    ahg_loop_free(r->t.loop);
    r->t.loop = NULL;
    ts_rmtree(r->dir);
}

long
rel_rss_kb(pid_t pid)
{
    char path[64], line[256];
    (void)snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    (void)fclose(f);
    return kb;
}

long long
rel_metric(struct rel *r, const char *name)
{
    return rel_metric_at(r->admin_port, name);
}

long long
rel_metric_at(int port, const char *name)
{
    char url[128];
    (void)snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", port);
    struct ts_req q = {.url = url, .timeout_ms = 10000};
    struct ts_resp resp;
    ts_http(&q, &resp);
    long long v = -1;
    size_t nl = strlen(name);
    for (const char *p = resp.body; p && *p;) {
        if (strncmp(p, name, nl) == 0 && p[nl] == ' ') {
            v = strtoll(p + nl + 1, NULL, 10);
            break;
        }
        const char *e = strchr(p, '\n');
        p = e ? e + 1 : NULL;
    }
    ts_resp_free(&resp);
    return v;
}

bool
rel_long(void)
{
    const char *v = getenv("AHG_LONG_TESTS");
    return v && strcmp(v, "1") == 0;
}

bool
rel_file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    size_t cap = (size_t)1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    for (;;) {
        if (len == cap) {
            cap *= 2;
            char *nb = realloc(buf, cap + 1);
            assert_non_null(nb);
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        if (got == 0)
            break;
        len += got;
    }
    (void)fclose(f);
    size_t nl = strlen(needle);
    bool hit = false;
    for (size_t i = 0; !hit && nl && i + nl <= len; i++)
        hit = memcmp(buf + i, needle, nl) == 0;
    free(buf);
    return hit;
}

long
rel_count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    long n = 0;
    int ch;
    if (!f)
        return -1;
    while ((ch = fgetc(f)) != EOF)
        n += ch == '\n';
    (void)fclose(f);
    return n;
}

void
rel_listen(struct rel *r, struct tws *c, const char *hc, const char *token)
{
    char target[256];
    (void)snprintf(target, sizeof(target), "/$hc/%s?sb-hc-action=listen", hc);
    const char *hdr[] = {"ServiceBusAuthorization", token, NULL};
    memset(c, 0, sizeof(*c));
    tws_connect(&r->t, c, target, hdr, NULL);
}

bool
rel_settled(void *set)
{
    const struct rel_set *s = set;
    for (size_t i = 0; i < s->n; i++)
        if (!s->c[i].open && !s->c[i].failed && !s->c[i].closed)
            return false;
    return true;
}

int
rel_tcp_connect(int port, bool nonblock)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS) {
        int e = errno;
        (void)close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

long
rel_get_status(int port, const char *path)
{
    char url[128];
    (void)snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    struct ts_req q = {.url = url, .timeout_ms = 10000};
    struct ts_resp resp;
    ts_http(&q, &resp);
    long st = resp.status;
    ts_resp_free(&resp);
    return st;
}

long
rel_fd_count(pid_t pid)
{
    char path[64];
    (void)snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    long n = 0;
    if (!d)
        return -1;
    const struct dirent *de;
    while ((de = readdir(d)))
        n += de->d_name[0] != '.';
    (void)closedir(d);
    return n;
}

/* Handshakes with exactly version ver; returns 0 on success, else the OpenSSL reason code
 * (why gets the message). */
int
rel_tls_try(int port, int ver, char *why, size_t whylen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    /* Let this client offer old versions so the refusal has to come from the server. */
    SSL_CTX_set_security_level(ctx, 0);
    assert_int_equal(SSL_CTX_set_cipher_list(ctx, "ALL:@SECLEVEL=0"), 1);
    assert_int_equal(SSL_CTX_set_min_proto_version(ctx, ver), 1);
    assert_int_equal(SSL_CTX_set_max_proto_version(ctx, ver), 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    int fd = rel_tcp_connect(port, false);
    assert_true(fd >= 0);
    struct timeval tv = {.tv_sec = 10};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    SSL *s = SSL_new(ctx);
    assert_non_null(s);
    assert_int_equal(SSL_set_fd(s, fd), 1);
    int rc = SSL_connect(s);
    int reason = 0;
    why[0] = '\0';
    if (rc == 1) {
        if (SSL_version(s) != ver)
            fail_msg("negotiated 0x%x instead of 0x%x", SSL_version(s), ver);
        (void)snprintf(why, whylen, "%s", SSL_get_version(s));
    } else {
        unsigned long e = ERR_peek_last_error();
        reason = e ? ERR_GET_REASON(e) : -1;
        if (e)
            ERR_error_string_n(e, why, whylen);
    }
    ERR_clear_error();
    SSL_free(s);
    (void)close(fd);
    SSL_CTX_free(ctx);
    return reason;
}

bool
rel_raise_nofile(unsigned long want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return false;
    if (rl.rlim_cur >= want)
        return true;
    if (rl.rlim_max < want) {
        rl.rlim_max = want;
        rl.rlim_cur = want;
        return setrlimit(RLIMIT_NOFILE, &rl) == 0;
    }
    rl.rlim_cur = want;
    return setrlimit(RLIMIT_NOFILE, &rl) == 0;
}

size_t
rel_open_conns(int port, int *fds, size_t n, unsigned ms)
{
    /* batches of 256 (the listen backlog stays short: no SYN retransmission back-off) */
    const size_t batch = 256;
    struct pollfd pf[256];
    uint64_t end = ahg_now_ms() + ms;
    size_t done = 0;
    for (size_t i = 0; i < n; i++)
        fds[i] = -1;
    while (done < n && ahg_now_ms() < end) {
        size_t k = n - done < batch ? n - done : batch, up = 0;
        for (size_t j = 0; j < k; j++) {
            fds[done + j] = rel_tcp_connect(port, true);
            if (fds[done + j] < 0)
                fail_msg("connection %zu: %s", done + j, strerror(errno));
        }
        while (up < k && ahg_now_ms() < end) {
            for (size_t j = 0; j < k; j++)
                pf[j] = (struct pollfd){.fd = fds[done + j], .events = POLLOUT};
            (void)poll(pf, k, 100);
            up = 0;
            for (size_t j = 0; j < k; j++)
                up += (pf[j].revents & POLLOUT) != 0;
        }
        done += up < k ? up : k;
        if (up < k)
            break;
    }
    return done;
}

void
rel_await_408(const int *fds, size_t n, size_t nslow, unsigned ms, struct rel_408 *out)
{
    *out = (struct rel_408){0};
    char *done = calloc(n, 1);
    struct pollfd *pf = calloc(n, sizeof(*pf));
    assert_non_null(done);
    assert_non_null(pf);
    size_t left = n;
    uint64_t start = ahg_now_ms(), end = start + ms;
    while (left > 0 && ahg_now_ms() < end) {
        for (size_t i = 0; i < n; i++)
            pf[i] = (struct pollfd){.fd = done[i] ? -1 : fds[i], .events = POLLIN};
        if (poll(pf, n, 500) <= 0)
            continue;
        for (size_t i = 0; i < n; i++) {
            if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char buf[512];
            ssize_t got = recv(fds[i], buf, sizeof(buf) - 1, 0);
            if (got > 0) {
                buf[got] = '\0';
                if (strncmp(buf, "HTTP/1.1 408", 12) == 0) {
                    out->n408++;
                    out->slow408 += i < nslow;
                }
            } else {
                out->nclosed++;
            }
            done[i] = 1;
            left--;
        }
    }
    out->all_done_ms = left == 0 ? ahg_now_ms() - start : 0;
    for (size_t i = nslow; i < n; i++)
        out->idle_open += !done[i];
    free(pf);
    free(done);
}

void
rel_tls_expect_min_12(const char *name, int port)
{
    const struct {
        const char *name;
        int ver;
        bool ok;
    } vers[] = {{"TLSv1.0", TLS1_VERSION, false},
                {"TLSv1.1", TLS1_1_VERSION, false},
                {"TLSv1.2", TLS1_2_VERSION, true},
                {"TLSv1.3", TLS1_3_VERSION, true}};
    char why[256];
    for (size_t j = 0; j < sizeof(vers) / sizeof(vers[0]); j++) {
        int reason = rel_tls_try(port, vers[j].ver, why, sizeof(why));
        (void)printf("rel: tls %s %s -> %s\n", name, vers[j].name,
                     reason == 0 ? "handshake ok" : why);
        if (vers[j].ok && reason != 0)
            fail_msg("%s %s refused: %s", name, vers[j].name, why);
        /* the server's protocol_version alert, not a local refusal */
        if (!vers[j].ok && reason != SSL_R_TLSV1_ALERT_PROTOCOL_VERSION)
            fail_msg("%s %s: expected the server's protocol_version alert, got %s", name,
                     vers[j].name, reason == 0 ? "a handshake" : why);
    }
}
