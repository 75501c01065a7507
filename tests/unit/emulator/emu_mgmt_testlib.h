/*
 * emu_mgmt_testlib.h - shared harness of the unit tests of the emulator's management modules
 * (state, auth, identity, arm, keyvault, latency). Header-only: included by exactly one test
 * file per executable.
 *
 * - An option table with the emulator options these modules read (the tests do not link
 *   emulator.c, which pulls in the whole relay).
 * - Doubles of the two relay.c functions the modules call: emu_relay_hc_deleted() records its
 *   calls, emu_relay_listener_count() returns a settable number.
 * - A fixture: a real ahg_loop on a background thread with an HTTP(S) server on 127.0.0.1
 *   routing like the management port (identity, Key Vault, ARM, else 404), and a blocking
 *   HTTP/1.1 client (plain or TLS, verified against the fixture CA) on the test thread.
 *   emu_test_on_loop() runs a function on the loop thread and waits for it, for looking at or
 *   changing emulator state while the loop runs.
 */
#ifndef EMU_MGMT_TESTLIB_H
#define EMU_MGMT_TESTLIB_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "ahg/config.h"
#include "ahg/crypto.h"
#include "ahg/err.h"
#include "ahg/httpd.h"
#include "ahg/log.h"
#include "ahg/net.h"
#include "emu_int.h"

/* ---- options (names, types and defaults as in emulator.c's emu_opts) ---- */

static const struct ahg_opt_def emu_test_opts[] = {
    {.name = "emulator.namespace", .type = AHG_OPT_STRING, .def = "ahg-local"},
    {.name = "emulator.namespace_host", .type = AHG_OPT_STRING},
    {.name = "emulator.subscription",
     .type = AHG_OPT_STRING,
     .def = "00000000-0000-0000-0000-000000000000"},
    {.name = "emulator.resource_group", .type = AHG_OPT_STRING, .def = "azhexgate"},
    {.name = "emulator.location", .type = AHG_OPT_STRING, .def = "westeurope"},
    {.name = "emulator.hybrid_connections", .type = AHG_OPT_LIST},
    {.name = "emulator.root_key", .type = AHG_OPT_STRING, .flags = AHG_OPT_SECRET},
    {.name = "emulator.identity.header", .type = AHG_OPT_STRING, .flags = AHG_OPT_SECRET},
    {.name = "emulator.identity.token_lifetime",
     .type = AHG_OPT_DURATION,
     .def = "1h",
     .min = 60000,
     .max = 86400000LL},
    {.name = "emulator.identity.relay_role",
     .type = AHG_OPT_ENUM,
     .def = "owner",
     .choices = "owner|listener|sender"},
    {.name = "emulator.identity.jwt_secret", .type = AHG_OPT_STRING, .flags = AHG_OPT_SECRET},
    {.name = "emulator.latency.profile", .type = AHG_OPT_ENUM, .def = "off", .choices = "off|live"},
    {.name = "emulator.latency.lane", .type = AHG_OPT_DURATION, .def = "0", .min = 0, .max = 60000},
    {.name = "emulator.latency.match",
     .type = AHG_OPT_DURATION,
     .def = "0",
     .min = 0,
     .max = 60000},
    {.name = "emulator.latency.sas", .type = AHG_OPT_DURATION, .def = "0", .min = 0, .max = 60000},
    {.name = "emulator.latency.jwt", .type = AHG_OPT_DURATION, .def = "0", .min = 0, .max = 60000},
    {.name = "emulator.latency.slow_fraction",
     .type = AHG_OPT_INT,
     .def = "0",
     .min = 0,
     .max = 1000},
    {.name = "emulator.latency.slow",
     .type = AHG_OPT_DURATION,
     .def = "0",
     .min = 0,
     .max = 600000},
    {.name = "emulator.latency.arm", .type = AHG_OPT_DURATION, .def = "0", .min = 0, .max = 600000},
    {.name = "emulator.keyvault.secrets", .type = AHG_OPT_LIST},
    {.name = "emulator.state_file", .type = AHG_OPT_STRING},
};

/* Loads a configuration from argv-style flags ("--emulator-namespace=x", ...); NULL on error
 * (message in err). The environment is not read. */
static inline struct ahg_config *
emu_test_config(const char *const *flags, char *err, size_t errlen)
{
    static const struct ahg_config_spec spec = {
        .prog = "emu-test",
        .opts = emu_test_opts,
        .nopts = sizeof(emu_test_opts) / sizeof(emu_test_opts[0]),
    };
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"emu-test";
    for (size_t i = 0; flags && flags[i] && argc < 31; i++)
        argv[argc++] = (char *)flags[i];
    argv[argc] = NULL;
    char *envp[] = {NULL};
    struct ahg_config *cfg = NULL;
    if (ahg_config_load(&cfg, &spec, argc, argv, envp, err, errlen) != AHG_OK)
        return NULL;
    return cfg;
}

/* ---- doubles of relay.c ---- */

static struct emu_hc *emu_test_deleted_hc; /* last HC passed to emu_relay_hc_deleted */
static bool emu_test_deleted_was_listed;   /* it was still findable by name at that moment */
static unsigned emu_test_deleted_calls;    /* number of calls */
static unsigned emu_test_listener_count;   /* what emu_relay_listener_count returns */

void
emu_relay_hc_deleted(struct emu *e, struct emu_hc *hc)
{
    emu_test_deleted_calls++;
    emu_test_deleted_hc = hc;
    emu_test_deleted_was_listed = emu_hc_find(e, hc->name) == hc;
}

unsigned
emu_relay_listener_count(const struct emu_hc *hc)
{
    (void)hc;
    return emu_test_listener_count;
}

/* ---- an emulator without network ---- */

/* Creates the management state of an emulator (state, identity, latency, Key Vault) from
 * flags; loop may be NULL. NULL on failure. */
static inline struct emu *
emu_test_new(struct ahg_loop *loop, const char *const *flags)
{
    char err[256] = "";
    struct ahg_config *cfg = emu_test_config(flags, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "config: %s\n", err);
        return NULL;
    }
    struct emu *e = calloc(1, sizeof(*e));
    e->loop = loop;
    e->cfg = cfg;
    e->token_lifetime_s = (uint64_t)ahg_config_int(cfg, "emulator.identity.token_lifetime") / 1000u;
    if (emu_state_init(e) != AHG_OK || emu_identity_init(e) != AHG_OK ||
        emu_latency_init(e) != AHG_OK || emu_kv_init(e) != AHG_OK) {
        emu_kv_free(e);
        emu_state_free(e);
        emu_latency_free(e);
        ahg_config_free(cfg);
        free(e);
        return NULL;
    }
    return e;
}

static inline void
emu_test_free(struct emu *e)
{
    if (!e)
        return;
    const struct ahg_config *cfg = e->cfg;
    emu_kv_free(e);
    emu_state_free(e);
    emu_latency_free(e);
    ahg_config_free((struct ahg_config *)cfg);
    free(e);
}

/* ---- the network fixture ---- */

struct emu_fixture {
    struct ahg_loop *loop;
    struct emu *e;
    struct ahg_httpd *srv;
    int port;
    bool tls;
    pthread_t th;
};

static inline void
emu_test_route(struct ahg_httpd_req *r)
{
    struct emu *e = ahg_httpd_ud(ahg_httpd_req_server(r));
    if (emu_identity_handle(e, r) || emu_kv_handle(e, r) || emu_arm_handle(e, r))
        return;
    ahg_httpd_respond_error(r, 404, "NotFound", "no such management endpoint", true);
}

static inline void *
emu_test_loop_main(void *arg)
{
    struct emu_fixture *f = arg;
    ahg_loop_run(f->loop);
    return NULL;
}

/* Starts loop + emulator state + server (TLS with the fixture certificate when tls). */
static inline struct emu_fixture *
emu_fixture_start(const char *const *flags, bool tls)
{
    struct emu_fixture *f = calloc(1, sizeof(*f));
    f->loop = ahg_loop_new(NULL);
    if (!f->loop) {
        free(f);
        return NULL;
    }
    f->e = emu_test_new(f->loop, flags);
    if (!f->e) {
        ahg_loop_free(f->loop);
        free(f);
        return NULL;
    }
    struct ahg_httpd_opts o = {
        .name = "emu-test-mgmt",
        .port = 0,
        .cert_file = tls ? AHG_TEST_FIXTURES "/certs/server.pem" : NULL,
        .key_file = tls ? AHG_TEST_FIXTURES "/certs/server.key" : NULL,
        .on_request = emu_test_route,
        .ud = f->e,
    };
    int err = 0;
    f->srv = ahg_httpd_new(f->loop, &o, &err);
    if (!f->srv) {
        ahg_loop_free(f->loop);
        emu_test_free(f->e);
        free(f);
        return NULL;
    }
    f->port = ahg_httpd_port(f->srv);
    f->tls = tls;
    pthread_create(&f->th, NULL, emu_test_loop_main, f);
    return f;
}

static inline void
emu_fixture_stop(struct emu_fixture *f)
{
    if (!f)
        return;
    ahg_loop_stop(f->loop);
    pthread_join(f->th, NULL);
    ahg_loop_free(f->loop);
    emu_test_free(f->e);
    free(f);
}

/* Runs fn(arg) on the loop thread and waits until it returned. */
struct emu_test_call {
    void (*fn)(void *arg);
    void *arg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
};

static inline void
emu_test_call_run(void *p)
{
    struct emu_test_call *c = p;
    c->fn(c->arg);
    pthread_mutex_lock(&c->mu);
    c->done = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static inline void
emu_test_on_loop(struct emu_fixture *f, void (*fn)(void *arg), void *arg)
{
    struct emu_test_call c = {.fn = fn, .arg = arg};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    if (ahg_loop_post(f->loop, emu_test_call_run, &c) == AHG_OK) {
        pthread_mutex_lock(&c.mu);
        while (!c.done)
            pthread_cond_wait(&c.cv, &c.mu);
        pthread_mutex_unlock(&c.mu);
    }
    pthread_mutex_destroy(&c.mu);
    pthread_cond_destroy(&c.cv);
}

/* ---- the blocking client ---- */

struct emu_resp {
    int status;
    char head[16384]; /* status line and fields, NUL-terminated */
    char *body;       /* NUL-terminated, malloc'd */
    size_t body_len;
    cJSON *json; /* parsed body or NULL */
    double ms;   /* duration */
};

static inline void
emu_resp_free(struct emu_resp *r)
{
    if (!r)
        return;
    free(r->body);
    cJSON_Delete(r->json);
    free(r);
}

/* Value of response field name (case-insensitive) copied into out; false when absent. */
static inline bool
emu_resp_header(const struct emu_resp *r, const char *name, char *out, size_t outsz)
{
    size_t nl = strlen(name);
    const char *p = strstr(r->head, "\r\n");
    while (p && p[2]) {
        p += 2;
        const char *eol = strstr(p, "\r\n");
        if (!eol)
            break;
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = (size_t)(eol - v);
            if (vl >= outsz)
                vl = outsz - 1;
            memcpy(out, v, vl);
            out[vl] = '\0';
            return true;
        }
        p = eol;
    }
    return false;
}

/* String member at a dotted path ("properties.createdAt") of the JSON body, or NULL. */
static inline const cJSON *
emu_json_at(const cJSON *j, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    const cJSON *cur = j;
    for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok && cur;
         tok = strtok_r(NULL, ".", &save))
        cur = cJSON_GetObjectItemCaseSensitive(cur, tok);
    return cur;
}

static inline const char *
emu_json_str(const cJSON *j, const char *path)
{
    const cJSON *v = emu_json_at(j, path);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static inline double
emu_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static inline int
emu_test_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {.tv_sec = 10, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Decodes a chunked body in place; returns the decoded length. */
static inline size_t
emu_dechunk(char *b, size_t n)
{
    size_t in = 0, out = 0;
    while (in < n) {
        char *end = NULL;
        unsigned long sz = strtoul(b + in, &end, 16);
        char *eol = strstr(b + in, "\r\n");
        if (!eol || sz == 0)
            break;
        in = (size_t)(eol - b) + 2;
        if (in + sz > n)
            sz = n - in;
        memmove(b + out, b + in, sz);
        out += sz;
        in += sz + 2;
    }
    b[out] = '\0';
    return out;
}

/*
 * One request on a new connection ("Connection: close" is added). headers: NULL-terminated
 * list of "Name: value" lines. body may be NULL. Returns a response (status 0 on failure).
 */
static inline struct emu_resp *
emu_http(const struct emu_fixture *f, const char *method, const char *target,
         const char *const *headers, const char *body, size_t body_len)
{
    struct emu_resp *r = calloc(1, sizeof(*r));
    double t0 = emu_now_ms();
    size_t cap = 256 * 1024 + body_len;
    char *req = malloc(cap);
    int n = snprintf(req, cap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n",
                     method, target, f->port);
    for (size_t i = 0; headers && headers[i]; i++)
        n += snprintf(req + n, cap - (size_t)n, "%s\r\n", headers[i]);
    if (body)
        n += snprintf(req + n, cap - (size_t)n, "Content-Length: %zu\r\n", body_len);
    n += snprintf(req + n, cap - (size_t)n, "\r\n");
    if (body) {
        memcpy(req + n, body, body_len);
        n += (int)body_len;
    }
    int fd = emu_test_connect(f->port);
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    if (fd >= 0 && f->tls) {
        ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_load_verify_locations(ctx, AHG_TEST_FIXTURES "/certs/ca.pem", NULL);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        SSL_set_tlsext_host_name(ssl, "localhost");
        if (SSL_connect(ssl) != 1) {
            SSL_free(ssl);
            ssl = NULL;
            close(fd);
            fd = -1;
        }
    }
    size_t got = 0, rcap = 1 << 20;
    char *buf = malloc(rcap + 1);
    if (fd >= 0) {
        size_t off = 0;
        while (off < (size_t)n) {
            int w = ssl ? SSL_write(ssl, req + off, (int)((size_t)n - off))
                        : (int)write(fd, req + off, (size_t)n - off);
            if (w <= 0)
                break;
            off += (size_t)w;
        }
        for (;;) {
            if (got == rcap) {
                rcap *= 2;
                buf = realloc(buf, rcap + 1);
            }
            int k = ssl ? SSL_read(ssl, buf + got, (int)(rcap - got))
                        : (int)read(fd, buf + got, rcap - got);
            if (k <= 0)
                break;
            got += (size_t)k;
        }
    }
    buf[got] = '\0';
    if (ssl) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    SSL_CTX_free(ctx);
    if (fd >= 0)
        close(fd);
    free(req);
    char *sep = strstr(buf, "\r\n\r\n");
    if (sep && sscanf(buf, "HTTP/1.%*d %d", &r->status) == 1) {
        size_t hl = (size_t)(sep - buf) + 2;
        if (hl >= sizeof(r->head))
            hl = sizeof(r->head) - 1;
        memcpy(r->head, buf, hl);
        r->head[hl] = '\0';
        r->body_len = got - (size_t)(sep + 4 - buf);
        r->body = malloc(r->body_len + 1);
        memcpy(r->body, sep + 4, r->body_len);
        r->body[r->body_len] = '\0';
        char te[64];
        if (emu_resp_header(r, "Transfer-Encoding", te, sizeof(te)) && strstr(te, "chunked"))
            r->body_len = emu_dechunk(r->body, r->body_len);
        r->json = cJSON_ParseWithLength(r->body, r->body_len);
    } else {
        r->body = calloc(1, 1);
    }
    free(buf);
    r->ms = emu_now_ms() - t0;
    return r;
}

static inline struct emu_resp *
emu_get(const struct emu_fixture *f, const char *target, const char *const *headers)
{
    return emu_http(f, "GET", target, headers, NULL, 0);
}

/* base64url-decodes the payload of a JWT and parses it. */
static inline cJSON *
emu_jwt_payload(const char *jwt)
{
    const char *d1 = strchr(jwt, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d2)
        return NULL;
    unsigned char buf[8192];
    size_t len = 0;
    if (ahg_base64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), buf, sizeof(buf), &len) != AHG_OK)
        return NULL;
    return cJSON_ParseWithLength((const char *)buf, len);
}

/* Builds an HS256 JWT from header and payload JSON texts with key (32 bytes); malloc'd. */
static inline char *
emu_jwt_forge(const unsigned char key[32], const char *header, const char *payload)
{
    size_t cap = 4 * (strlen(header) + strlen(payload)) + 256;
    char *t = malloc(cap);
    ahg_base64url_encode(header, strlen(header), t, cap);
    size_t n = strlen(t);
    t[n++] = '.';
    ahg_base64url_encode(payload, strlen(payload), t + n, cap - n);
    n = strlen(t);
    unsigned char mac[32];
    ahg_hmac_sha256(key, 32, t, n, mac);
    t[n++] = '.';
    ahg_base64url_encode(mac, 32, t + n, cap - n);
    return t;
}

#endif /* EMU_MGMT_TESTLIB_H */
