/*
 * tsupport.c - process, redis-server and HTTP helpers for tests (see tsupport.h).
 */
#include "tsupport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

extern char **environ;

static void
nap_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static uint64_t
mono_ms(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Children still running (spawned, not reaped yet), killed at exit: a test that fails midway
 * leaves no process behind. */
static pid_t live[64];

static void
kill_live(void)
{
    for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++) {
        if (live[i] > 0) {
            (void)kill(live[i], SIGKILL);
            (void)waitpid(live[i], NULL, 0);
            live[i] = 0;
        }
    }
}

static void
track(pid_t pid)
{
    static bool registered;
    if (!registered)
        registered = atexit(kill_live) == 0;
    for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++) {
        if (live[i] == 0) {
            live[i] = pid;
            return;
        }
    }
}

static void
untrack(pid_t pid)
{
    for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++)
        if (live[i] == pid)
            live[i] = 0;
}

int
ts_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t l = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    (void)close(fd);
    return ntohs(a.sin_port);
}

void
ts_mkdtemp(char *out, size_t outsz, const char *tag)
{
    const char *tmp = getenv("TMPDIR");
    (void)snprintf(out, outsz, "%s/ahg-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", tag);
    assert_non_null(mkdtemp(out));
}

void
ts_rmtree(const char *dir)
{
    if (!dir || !*dir || strstr(dir, "/ahg-") == NULL)
        return; /* only our own scratch directories */
    pid_t pid = fork();
    if (pid == 0) {
        execlp("rm", "rm", "-rf", "--", dir, (char *)NULL);
        _exit(127);
    }
    if (pid > 0) {
        int st;
        (void)waitpid(pid, &st, 0);
    }
}

static bool
env_overridden(const char *entry, const char *const env[])
{
    const char *eq = strchr(entry, '=');
    size_t n = eq ? (size_t)(eq - entry) : strlen(entry);
    for (size_t i = 0; env && env[i]; i++)
        if (strncmp(env[i], entry, n) == 0 && env[i][n] == '=')
            return true;
    return false;
}

void
ts_spawn(struct ts_proc *p, const char *const argv[], const char *const env[], const char *outfile)
{
    memset(p, 0, sizeof(*p));
    (void)snprintf(p->out, sizeof(p->out), "%s", outfile);
    size_t n = 0, m = 0;
    while (environ[n])
        n++;
    while (env && env[m])
        m++;
    char **envp = calloc(n + m + 1, sizeof(char *));
    assert_non_null(envp);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!env_overridden(environ[i], env))
            envp[k++] = environ[i];
    for (size_t i = 0; i < m; i++)
        envp[k++] = (char *)env[i];
    envp[k] = NULL;

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(outfile, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd < 0)
            _exit(126);
        (void)dup2(fd, STDOUT_FILENO);
        (void)dup2(fd, STDERR_FILENO);
        (void)close(fd);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) {
            (void)dup2(devnull, STDIN_FILENO);
            (void)close(devnull);
        }
        (void)setpgid(0, 0);
        execve(argv[0], (char *const *)argv, envp);
        _exit(127);
    }
    free(envp);
    p->pid = pid;
    track(pid);
}

static bool
reap(struct ts_proc *p, bool block)
{
    if (p->reaped || p->pid <= 0)
        return true;
    int st = 0;
    pid_t r = waitpid(p->pid, &st, block ? 0 : WNOHANG);
    if (r != p->pid)
        return false;
    p->reaped = true;
    untrack(p->pid);
    p->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return true;
}

char *
ts_output(const struct ts_proc *p)
{
    FILE *f = fopen(p->out, "rb");
    if (!f)
        return strdup("");
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t k;
    while ((k = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += k;
        if (cap - len - 1 == 0) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    (void)fclose(f);
    buf[len] = '\0';
    return buf;
}

bool
ts_wait_output(struct ts_proc *p, const char *needle, unsigned ms)
{
    uint64_t end = mono_ms() + ms;
    for (;;) {
        char *o = ts_output(p);
        bool hit = strstr(o, needle) != NULL;
        free(o);
        if (hit)
            return true;
        if (reap(p, false)) {
            o = ts_output(p);
            hit = strstr(o, needle) != NULL;
            free(o);
            return hit;
        }
        if (mono_ms() >= end)
            return false;
        nap_ms(10);
    }
}

int
ts_wait_exit(struct ts_proc *p, unsigned ms)
{
    uint64_t end = mono_ms() + ms;
    while (!reap(p, false)) {
        if (mono_ms() >= end)
            return -1;
        nap_ms(10);
    }
    return p->status;
}

void
ts_signal(struct ts_proc *p, int sig)
{
    if (!p->reaped && p->pid > 0)
        (void)kill(p->pid, sig);
}

void
ts_kill(struct ts_proc *p)
{
    if (p->reaped || p->pid <= 0)
        return;
    (void)kill(p->pid, SIGKILL);
    (void)reap(p, true);
}

bool
ts_alive(struct ts_proc *p)
{
    return !reap(p, false);
}

bool
ts_wait_port(int port, unsigned ms)
{
    uint64_t end = mono_ms() + ms;
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(fd >= 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
        (void)close(fd);
        if (rc == 0)
            return true;
        if (mono_ms() >= end)
            return false;
        nap_ms(20);
    }
}

/* ---- redis-server ---- */

/* Starts redis-server; TLS only on the port when certs_dir is set; the append-only file on
 * when aof. */
static void
redis_start(struct ts_redis *r, int port, const char *password, const char *certs_dir, bool aof)
{
    int keep_port = port;
    char keep_dir[sizeof(r->dir)];
    (void)snprintf(keep_dir, sizeof(keep_dir), "%s", port > 0 ? r->dir : "");
    memset(r, 0, sizeof(*r));
    r->port = keep_port > 0 ? keep_port : ts_free_port();
    if (keep_dir[0]) {
        (void)snprintf(r->dir, sizeof(r->dir), "%s", keep_dir); /* a restart: same dir */
        if (mkdir(r->dir, 0700) != 0 && errno != EEXIST)
            fail_msg("cannot create %s: %s", r->dir, strerror(errno));
    } else
        ts_mkdtemp(r->dir, sizeof(r->dir), "redis");
    if (password)
        (void)snprintf(r->password, sizeof(r->password), "%s", password);
    char portstr[16], out[320], bin[64];
    (void)snprintf(portstr, sizeof(portstr), "%d", r->port);
    (void)snprintf(out, sizeof(out), "%s/redis.log", r->dir);
    /* redis-server from PATH: ts_spawn takes a path, so look it up. */
    const char *cands[] = {"/usr/bin/redis-server", "/usr/local/bin/redis-server", NULL};
    bin[0] = '\0';
    for (size_t i = 0; cands[i]; i++)
        if (access(cands[i], X_OK) == 0) {
            (void)snprintf(bin, sizeof(bin), "%s", cands[i]);
            break;
        }
    if (!bin[0])
        fail_msg("redis-server is not installed (apt-get install redis-server)");
    char cert[320], key[320], ca[320];
    if (certs_dir) {
        (void)snprintf(cert, sizeof(cert), "%s/server.pem", certs_dir);
        (void)snprintf(key, sizeof(key), "%s/server.key", certs_dir);
        (void)snprintf(ca, sizeof(ca), "%s/ca.pem", certs_dir);
    }
    const char *argv[32];
    size_t k = 0;
    argv[k++] = bin;
    argv[k++] = certs_dir ? "--tls-port" : "--port";
    argv[k++] = portstr;
    if (certs_dir) {
        const char *t[] = {"--port",
                           "0",
                           "--tls-cert-file",
                           cert,
                           "--tls-key-file",
                           key,
                           "--tls-ca-cert-file",
                           ca,
                           "--tls-auth-clients",
                           "no"};
        for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
            argv[k++] = t[i];
    }
    /* DEBUG (e.g. DEBUG SLEEP to stall it) from local connections */
    argv[k++] = "--enable-debug-command";
    argv[k++] = "local";
    argv[k++] = "--bind";
    argv[k++] = "127.0.0.1";
    argv[k++] = "--save";
    argv[k++] = "";
    argv[k++] = "--appendonly";
    argv[k++] = aof ? "yes" : "no";
    argv[k++] = "--dir";
    argv[k++] = r->dir;
    if (password) {
        argv[k++] = "--requirepass";
        argv[k++] = r->password;
    }
    argv[k] = NULL;
    ts_spawn(&r->proc, argv, NULL, out);
    if (!ts_wait_port(r->port, 10000))
        fail_msg("redis-server did not start on port %d", r->port);
}

void
ts_redis_start(struct ts_redis *r, int port, const char *password)
{
    redis_start(r, port, password, NULL, false);
}

void
ts_redis_start_aof(struct ts_redis *r, int port, const char *password)
{
    redis_start(r, port, password, NULL, true);
}

void
ts_redis_start_tls(struct ts_redis *r, int port, const char *password, const char *certs_dir)
{
    redis_start(r, port, password, certs_dir, false);
}

void
ts_redis_stop(struct ts_redis *r)
{
    ts_kill(&r->proc);
    ts_rmtree(r->dir); /* a restart on the same port creates it again */
}

void
ts_redis_url(const struct ts_redis *r, char *out, size_t outsz)
{
    (void)snprintf(out, outsz, "redis://127.0.0.1:%d", r->port);
}

/* ---- HTTP ---- */

struct grow {
    char *p;
    size_t len, cap;
};

static size_t
grow_cb(char *data, size_t sz, size_t n, void *ud)
{
    struct grow *g = ud;
    size_t k = sz * n;
    if (g->len + k + 1 > g->cap) {
        size_t cap = (g->len + k + 1) * 2;
        char *np = realloc(g->p, cap);
        if (!np)
            return 0;
        g->p = np;
        g->cap = cap;
    }
    memcpy(g->p + g->len, data, k);
    g->len += k;
    g->p[g->len] = '\0';
    return k;
}

void
ts_http(const struct ts_req *q, struct ts_resp *r)
{
    memset(r, 0, sizeof(*r));
    CURL *c = curl_easy_init();
    assert_non_null(c);
    struct grow body = {0}, hdrs = {0};
    struct curl_slist *hl = NULL, *ct = NULL;
    for (size_t i = 0; q->headers && q->headers[i]; i++)
        hl = curl_slist_append(hl, q->headers[i]);
    hl = curl_slist_append(hl, "Expect:");
    const char *method = q->method ? q->method : "GET";
    curl_easy_setopt(c, CURLOPT_URL, q->url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (q->body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, q->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
    }
    if (q->connect_to) {
        char rule[300];
        (void)snprintf(rule, sizeof(rule), "::%s", q->connect_to);
        ct = curl_slist_append(NULL, rule);
        curl_easy_setopt(c, CURLOPT_CONNECT_TO, ct);
    }
    if (q->ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, q->ca_file);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, grow_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, grow_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &hdrs);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(q->timeout_ms ? q->timeout_ms : 30000));
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    else
        (void)snprintf(r->err, sizeof(r->err), "%s", curl_easy_strerror(rc));
    r->body = body.p ? body.p : strdup("");
    r->len = body.len;
    r->headers = hdrs.p ? hdrs.p : strdup("");
    curl_slist_free_all(hl);
    curl_slist_free_all(ct);
    curl_easy_cleanup(c);
}

char *
ts_resp_header(const struct ts_resp *r, const char *name)
{
    /* The last header block: after the last "\r\n\r\n" that is not at the very end. */
    const char *blk = r->headers;
    for (const char *p = r->headers; (p = strstr(p, "\r\n\r\n")) != NULL; p += 4)
        if (p[4] != '\0')
            blk = p + 4;
    size_t nl = strlen(name);
    for (const char *line = blk; line && *line;) {
        const char *eol = strstr(line, "\r\n");
        size_t ll = eol ? (size_t)(eol - line) : strlen(line);
        if (ll > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            size_t vl = ll - (size_t)(v - line);
            while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                vl--;
            return strndup(v, vl);
        }
        line = eol ? eol + 2 : NULL;
    }
    return NULL;
}

void
ts_resp_free(struct ts_resp *r)
{
    free(r->body);
    free(r->headers);
    memset(r, 0, sizeof(*r));
}

/* ---- ready files and the all-in-one server ---- */

bool
ts_wait_file(const char *path, unsigned ms)
{
    for (unsigned waited = 0; waited < ms; waited += 20) {
        if (access(path, R_OK) == 0)
            return true;
        nap_ms(20);
    }
    return false;
}

int
ts_ready_value(const char *path, const char *key)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[256];
    int v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, key, kl) == 0 && line[kl] == '=')
            v = (int)strtol(line + kl + 1, NULL, 10);
    (void)fclose(f);
    return v;
}

void
ts_server_start(struct ts_server *s, const char *bin, const char *dir, const char *const *extra)
{
    char port[16], ready[320], log[320];
    memset(s, 0, sizeof(*s));
    s->public_port = ts_free_port();
    (void)snprintf(port, sizeof(port), "%d", s->public_port);
    (void)snprintf(ready, sizeof(ready), "%s/server.ready", dir);
    (void)snprintf(log, sizeof(log), "%s/server.log", dir);
    (void)snprintf(s->api_key_file, sizeof(s->api_key_file), "%s/api-key", dir);
    (void)snprintf(s->api_url, sizeof(s->api_url), "http://api.localhost:%d", s->public_port);
    const char *argv[48] = {bin,
                            "--port",
                            port,
                            "--admin-port",
                            "0",
                            "--emulator-relay-port",
                            "0",
                            "--emulator-mgmt-port",
                            "0",
                            "--emulator-identity-port",
                            "0",
                            "--emulator-admin-port",
                            "0",
                            "--api-key-out",
                            s->api_key_file,
                            "--ready-file",
                            ready,
                            "--log-format",
                            "json"};
    size_t k = 19;
    for (size_t i = 0; extra && extra[i] && k < 47; i++)
        argv[k++] = extra[i];
    argv[k] = NULL;
    ts_spawn(&s->proc, argv, NULL, log);
    if (!ts_wait_file(ready, 20000)) {
        char *o = ts_output(&s->proc);
        print_error("%s did not become ready:\n%s\n", bin, o);
        free(o);
        fail();
    }
    s->relay_port = ts_ready_value(ready, "relay_port");
}
