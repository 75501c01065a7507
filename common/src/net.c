#include "ahg/net.h"
#include "ahg/resolve.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <ev.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "ahg/err.h"
#include "ahg/list.h"
#include "ahg/log.h"

#define PROTO_NAME "ahg-raw"

struct post_item {
    struct post_item *next;
    void (*fn)(void *arg);
    void *arg;
};

struct outchunk {
    struct outchunk *next;
    size_t off; /* first unsent byte of the payload */
    size_t len; /* payload bytes */
    size_t cap; /* payload capacity */
    unsigned char mem[];
};

struct ahg_conn {
    struct ahg_loop *loop;
    struct lws *wsi;
    const struct ahg_conn_ops *ops;
    void *ud;
    struct ahg_list_node link;       /* on loop->conns */
    struct ahg_list_node flush_link; /* on loop->flush while it has output to send */

    struct outchunk *out_head, *out_tail;
    size_t queued;

    unsigned char *rx_pend;
    size_t rx_pend_len;
    size_t rx_pend_cap;

    struct ahg_timer resume_timer;
    struct ahg_timer idle_timer;
    uint64_t idle_ms;
    uint64_t last_activity;

    uint64_t bytes_in, bytes_out;
    char peer[INET6_ADDRSTRLEN];
    int peer_port;

    bool is_client;
    bool connected;
    bool paused;
    bool closing;
    bool killed;
    bool ended; /* on_close was delivered */
    bool above_high;
    bool want_drain;
    bool tls;

    /* Outgoing TLS runs in memory BIOs over the raw socket (lws 4.1 cannot start TLS on a
     * RAW client connection), which also lets us choose groups and resume sessions. */
    SSL *ssl;
    BIO *rbio, *wbio;
    bool hs_done;
    char tls_host[256];
};

struct ahg_listener {
    struct ahg_loop *loop;
    struct lws_vhost *vh;
    struct ahg_listener *next;
    void (*on_accept)(struct ahg_listener *l, struct ahg_conn *c);
    void *ud;
    void (*on_free)(void *ud);
    int port;
};

/*
 * The epoll event loop. lws 4.1's own loop is poll(), whose cost per turn grows with the open
 * sockets (every pooled relay stream is one): a fifth of the emulator's and the client's CPU at
 * 64 busy connections. Debian builds lws with event-library plugins; we hand lws a foreign
 * libev loop (epoll) when libev and lws's plugin (libwebsockets-evlib-ev) are installed, and
 * fall back to poll() when they are not or AHG_EVENT_LOOP=poll. libev is opened at run time
 * (its header comes with libwebsockets-dev), so the binaries need neither package.
 */
static struct ev_api {
    struct ev_loop *(*loop_new)(unsigned flags);
    void (*loop_destroy)(struct ev_loop *l);
    int (*run)(struct ev_loop *l, int flags);
    unsigned (*backend)(struct ev_loop *l);
    void (*timer_start)(struct ev_loop *l, ev_timer *w);
    void (*timer_stop)(struct ev_loop *l, ev_timer *w);
    void (*now_update)(struct ev_loop *l);
} ev_api;
static pthread_once_t ev_api_once = PTHREAD_ONCE_INIT;

struct ahg_loop {
    struct lws_context *ctx;
    struct ev_loop *ev; /* NULL: lws's poll() loop */
    /* lws 4.1's libev glue services timers from an idle watcher (starved while events keep
     * coming) and re-arms its timer with ev_timer_set() on an active watcher (which libev
     * ignores: a new earliest timer fires late). `wake` fires at the earliest lws timer (the
     * head of lws's sorted lists, which start at `sul_owner`, learnt from our first timer)
     * and services the ripe ones as lws's timer callback does. */
    ev_timer wake;
    lws_usec_t wake_us;
    lws_dll2_owner_t *sul_owner;
    struct lws_vhost *client_vh;
    SSL_CTX *cli_ctx;          /* verifying */
    SSL_CTX *cli_ctx_insecure; /* tests only */
    bool insecure;
    struct tls_session {
        char host[256];
        bool insecure; /* made without verification: never resumed by a verifying conn */
        SSL_SESSION *sess;
    } sessions[16];
    unsigned next_session;
    pthread_mutex_t post_mu;
    struct post_item *post_head, *post_tail;
    volatile sig_atomic_t stop;
    struct ahg_list conns; /* struct ahg_conn, by link */
    struct ahg_list flush; /* struct ahg_conn, by flush_link: written during this pass */
    struct ahg_listener *listeners;
    bool destroyed; /* lws context gone: timers must not be touched */
    unsigned char scratch[LWS_PRE + 2 * AHG_NET_CHUNK]; /* TLS ciphertext staging */
};

static int net_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len);

static const struct lws_protocols net_protocols[] = {
    {PROTO_NAME, net_cb, 0, (size_t)AHG_NET_CHUNK, 0, NULL, (size_t)AHG_NET_CHUNK},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

uint64_t
ahg_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- timers ---- */

static void
timer_fire(lws_sorted_usec_list_t *sul)
{
    struct ahg_timer *t = (struct ahg_timer *)(void *)sul; /* sul is the first member */
    lws_usec_t now = lws_now_usecs();
    if (t->due > now) { /* pushed later while armed: move it there */
        lws_sul_schedule(t->loop->ctx, 0, &t->sul, timer_fire, t->due - now);
        return;
    }
    t->cb(t);
}

void
ahg_timer_init(struct ahg_timer *t, struct ahg_loop *loop, void (*cb)(struct ahg_timer *t),
               void *ud)
{
    memset(t, 0, sizeof(*t));
    t->loop = loop;
    t->cb = cb;
    t->ud = ud;
}

void
ahg_timer_start(struct ahg_timer *t, uint64_t ms)
{
    lws_usec_t us = (lws_usec_t)ms * LWS_US_PER_MS;
    t->due = lws_now_usecs() + us;
    if (t->sul.list.owner && t->sul.us <= t->due)
        return; /* armed to fire no later: timer_fire() moves it */
    lws_sul_schedule(t->loop->ctx, 0, &t->sul, timer_fire, us);
    t->loop->sul_owner = t->sul.list.owner;
}

void
ahg_timer_stop(struct ahg_timer *t)
{
    if (t->loop && !t->loop->destroyed)
        lws_sul_cancel(&t->sul);
}

/* ---- posting from other threads ---- */

int
ahg_loop_post(struct ahg_loop *loop, void (*fn)(void *arg), void *arg)
{
    struct post_item *it = calloc(1, sizeof(*it));
    if (!it)
        return AHG_ENOMEM;
    it->fn = fn;
    it->arg = arg;
    pthread_mutex_lock(&loop->post_mu);
    if (loop->post_tail)
        loop->post_tail->next = it;
    else
        loop->post_head = it;
    loop->post_tail = it;
    pthread_mutex_unlock(&loop->post_mu);
    lws_cancel_service(loop->ctx);
    return AHG_OK;
}

static void
drain_posts(struct ahg_loop *loop)
{
    pthread_mutex_lock(&loop->post_mu);
    struct post_item *it = loop->post_head;
    loop->post_head = loop->post_tail = NULL;
    pthread_mutex_unlock(&loop->post_mu);
    while (it) {
        struct post_item *next = it->next;
        it->fn(it->arg);
        free(it);
        it = next;
    }
}

/* ---- connections ---- */

static struct ahg_conn *
conn_new(struct ahg_loop *loop)
{
    struct ahg_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->loop = loop;
    c->last_activity = ahg_now_ms();
    ahg_list_push_front(&loop->conns, &c->link);
    return c;
}

static void
conn_free(struct ahg_conn *c)
{
    struct ahg_loop *loop = c->loop;
    ahg_timer_stop(&c->resume_timer);
    ahg_timer_stop(&c->idle_timer);
    ahg_list_remove(&loop->conns, &c->link);
    ahg_list_remove(&loop->flush, &c->flush_link);
    struct outchunk *o = c->out_head;
    while (o) {
        struct outchunk *n = o->next;
        free(o);
        o = n;
    }
    free(c->rx_pend);
    if (c->ssl)
        SSL_free(c->ssl); /* frees both BIOs */
    free(c);
}

static void
conn_end(struct ahg_conn *c, enum ahg_conn_end why)
{
    if (c->ended)
        return;
    c->ended = true;
    c->wsi = NULL;
    if (c->ops && c->ops->on_close)
        c->ops->on_close(c, why);
}

static void
conn_kill(struct ahg_conn *c)
{
    if (c->killed || !c->wsi)
        return;
    c->killed = true;
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

static void
fill_peer(struct ahg_conn *c)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int fd = (int)lws_get_socket_fd(c->wsi);
    if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &s4->sin_addr, c->peer, sizeof(c->peer));
        c->peer_port = ntohs(s4->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) /* "::ffff:127.0.0.1" -> "127.0.0.1" */
            inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], c->peer, sizeof(c->peer));
        else
            inet_ntop(AF_INET6, &s6->sin6_addr, c->peer, sizeof(c->peer));
        c->peer_port = ntohs(s6->sin6_port);
    }
}

static int
keep_pending(struct ahg_conn *c, const unsigned char *p, size_t n)
{
    if (n > AHG_NET_RX_PENDING - c->rx_pend_len)
        return AHG_ELIMIT;
    if (c->rx_pend_len + n > c->rx_pend_cap) {
        size_t cap = c->rx_pend_cap ? c->rx_pend_cap : 4096;
        while (cap < c->rx_pend_len + n)
            cap *= 2;
        if (cap > AHG_NET_RX_PENDING)
            cap = AHG_NET_RX_PENDING;
        unsigned char *m = realloc(c->rx_pend, cap);
        if (!m)
            return AHG_ENOMEM;
        c->rx_pend = m;
        c->rx_pend_cap = cap;
    }
    memcpy(c->rx_pend + c->rx_pend_len, p, n);
    c->rx_pend_len += n;
    return AHG_OK;
}

/* Offers data to the user; keeps what it does not take and pauses reading. */
static void
deliver(struct ahg_conn *c, const unsigned char *p, size_t n)
{
    size_t used = 0;
    const struct ahg_conn_ops *before = c->ops;
    if (!c->paused && !c->killed && c->ops && c->ops->on_data) {
        used = c->ops->on_data(c, p, n);
        if (used > n)
            used = n;
    }
    if (used < n && !c->killed && c->ops != before && !c->paused) {
        /* The connection changed hands (protocol switch): the new owner gets the rest. */
        if (keep_pending(c, p + used, n - used) != AHG_OK) {
            conn_kill(c);
            return;
        }
        c->paused = true;
        if (c->wsi)
            lws_rx_flow_control(c->wsi, 0);
        ahg_conn_resume_read(c);
        return;
    }
    if (used < n && !c->killed) {
        if (keep_pending(c, p + used, n - used) != AHG_OK) {
            AHG_LOG_WARN("connection from %s: input backlog over %zu bytes, closing", c->peer,
                         AHG_NET_RX_PENDING);
            conn_kill(c);
            return;
        }
        if (!c->paused) {
            c->paused = true;
            if (c->wsi)
                lws_rx_flow_control(c->wsi, 0);
        }
    }
}

/* New input (plaintext): keep it behind earlier kept input, or hand it to the user. */
static void
ingest(struct ahg_conn *c, const unsigned char *p, size_t n)
{
    if (c->paused || c->rx_pend_len) {
        if (keep_pending(c, p, n) != AHG_OK) {
            AHG_LOG_WARN("connection to %s: input backlog over %zu bytes, closing", c->peer,
                         AHG_NET_RX_PENDING);
            conn_kill(c);
        }
        return;
    }
    deliver(c, p, n);
}

/* ---- client TLS over memory BIOs ---- */

static int
session_new_cb(SSL *ssl, SSL_SESSION *sess)
{
    struct ahg_conn *c = SSL_get_app_data(ssl);
    if (!c || !c->tls_host[0])
        return 0;
    struct ahg_loop *loop = c->loop;
    bool insecure = SSL_get_SSL_CTX(ssl) == loop->cli_ctx_insecure;
    struct tls_session *slot = NULL;
    for (size_t i = 0; i < sizeof(loop->sessions) / sizeof(loop->sessions[0]); i++)
        if (loop->sessions[i].insecure == insecure && !strcmp(loop->sessions[i].host, c->tls_host))
            slot = &loop->sessions[i];
    if (!slot) {
        slot = &loop->sessions[loop->next_session++ % 16u];
        (void)snprintf(slot->host, sizeof(slot->host), "%s", c->tls_host);
        slot->insecure = insecure;
    }
    if (slot->sess)
        SSL_SESSION_free(slot->sess);
    slot->sess = sess;
    return 1; /* we keep the reference */
}

static SSL_CTX *
client_ctx_new(const char *ca_file, bool verify)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* The relay's frontends want P-384: offering it first saves a HelloRetryRequest. */
    if (SSL_CTX_set1_groups_list(ctx, "P-384:X25519:P-256") != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, session_new_cb);
    if (verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if (SSL_CTX_set_default_verify_paths(ctx) != 1 ||
            (ca_file && SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1)) {
            AHG_LOG_ERROR("cannot load CA certificates%s%s", ca_file ? " from " : "",
                          ca_file ? ca_file : "");
            SSL_CTX_free(ctx);
            return NULL;
        }
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    return ctx;
}

static bool
is_ip_literal(const char *h)
{
    struct in6_addr a6;
    struct in_addr a4;
    return inet_pton(AF_INET, h, &a4) == 1 || inet_pton(AF_INET6, h, &a6) == 1;
}

static int
tls_start(struct ahg_conn *c, bool insecure)
{
    SSL_CTX *ctx = insecure ? c->loop->cli_ctx_insecure : c->loop->cli_ctx;
    c->ssl = SSL_new(ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (!c->ssl || !c->rbio || !c->wbio) {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        c->rbio = c->wbio = NULL;
        return AHG_ENOMEM;
    }
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_app_data(c->ssl, c);
    SSL_set_connect_state(c->ssl);
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_set_alpn_protos(c->ssl, alpn, sizeof(alpn) - 1);
    if (is_ip_literal(c->tls_host)) {
        if (!insecure)
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->tls_host);
    } else {
        SSL_set_tlsext_host_name(c->ssl, c->tls_host);
        if (!insecure)
            SSL_set1_host(c->ssl, c->tls_host);
    }
    for (size_t i = 0; i < 16; i++)
        if (c->loop->sessions[i].sess && c->loop->sessions[i].insecure == insecure &&
            !strcmp(c->loop->sessions[i].host, c->tls_host))
            SSL_set_session(c->ssl, c->loop->sessions[i].sess);
    return AHG_OK;
}

static void
tls_handshake_failed(struct ahg_conn *c, int r)
{
    long v = SSL_get_verify_result(c->ssl);
    unsigned long e = ERR_get_error();
    char eb[256] = "";
    if (e)
        ERR_error_string_n(e, eb, sizeof(eb));
    AHG_LOG_WARN("TLS handshake with %s (%s:%d) failed: %s%s%s", c->tls_host, c->peer, c->peer_port,
                 v != X509_V_OK ? X509_verify_cert_error_string(v) : "handshake error",
                 eb[0] ? "; " : "", eb);
    (void)r;
    ERR_clear_error();
}

/* Feeds ciphertext; returns -1 when the connection must close. */
static int
tls_rx(struct ahg_conn *c, const unsigned char *in, size_t len)
{
    if (BIO_write(c->rbio, in, (int)len) != (int)len)
        return -1;
    if (!c->hs_done) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                tls_handshake_failed(c, r);
                return -1;
            }
        } else {
            c->hs_done = true;
            c->connected = true;
            if (c->ops && c->ops->on_connect)
                c->ops->on_connect(c);
        }
        if (c->wsi && (BIO_ctrl_pending(c->wbio) || (c->hs_done && c->out_head)))
            lws_callback_on_writable(c->wsi);
        if (!c->hs_done || c->killed)
            return c->killed ? -1 : 0;
    }
    unsigned char buf[16384];
    for (;;) {
        int n = SSL_read(c->ssl, buf, (int)sizeof(buf));
        if (n > 0) {
            ingest(c, buf, (size_t)n);
            if (c->killed)
                return -1;
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ)
            break;
        ERR_clear_error();
        return -1; /* close_notify or a TLS error: the stream is over */
    }
    if (BIO_ctrl_pending(c->wbio))
        lws_callback_on_writable(c->wsi);
    return 0;
}

/* n bytes of the first output chunk are gone (sent, or handed to lws or OpenSSL). */
static void
out_consumed(struct ahg_conn *c, size_t n)
{
    struct outchunk *o = c->out_head;
    c->bytes_out += n;
    c->queued -= n;
    o->off += n;
    if (o->off < o->len)
        return;
    c->out_head = o->next;
    if (!c->out_head)
        c->out_tail = NULL;
    free(o);
}

/* One lws_write of pending ciphertext, after encrypting the next plaintext chunk. */
static int
tls_writeable(struct ahg_conn *c)
{
    unsigned char *scratch = c->loop->scratch;
    if (c->hs_done && c->out_head && !BIO_ctrl_pending(c->wbio)) {
        struct outchunk *o = c->out_head;
        size_t n = o->len - o->off;
        if (SSL_write(c->ssl, o->mem + LWS_PRE + o->off, (int)n) <= 0) {
            ERR_clear_error();
            return -1;
        }
        out_consumed(c, n);
    }
    size_t pend = BIO_ctrl_pending(c->wbio);
    if (pend) {
        if (pend > sizeof(c->loop->scratch) - LWS_PRE)
            pend = sizeof(c->loop->scratch) - LWS_PRE;
        int r = BIO_read(c->wbio, scratch + LWS_PRE, (int)pend);
        if (r <= 0 || lws_write(c->wsi, scratch + LWS_PRE, (size_t)r, LWS_WRITE_RAW) < 0)
            return -1;
        c->last_activity = ahg_now_ms();
    }
    if (BIO_ctrl_pending(c->wbio) || (c->hs_done && c->out_head))
        lws_callback_on_writable(c->wsi);
    return 0;
}

static void
resume_fire(struct ahg_timer *t)
{
    struct ahg_conn *c = t->ud;
    if (c->killed || !c->wsi || c->paused)
        return;
    if (c->rx_pend_len) {
        /* Hand the kept bytes over; anything not taken stays kept. */
        unsigned char *buf = c->rx_pend;
        size_t n = c->rx_pend_len;
        c->rx_pend = NULL;
        c->rx_pend_len = 0;
        c->rx_pend_cap = 0;
        deliver(c, buf, n);
        free(buf);
    }
    if (!c->paused && !c->killed && c->wsi)
        lws_rx_flow_control(c->wsi, 1 | LWS_RXFLOW_REASON_FLAG_PROCESS_NOW);
}

void
ahg_conn_pause_read(struct ahg_conn *c)
{
    if (c->paused)
        return;
    c->paused = true;
    ahg_timer_stop(&c->resume_timer);
    if (c->wsi && !c->killed)
        lws_rx_flow_control(c->wsi, 0 | LWS_RXFLOW_REASON_FLAG_PROCESS_NOW);
}

void
ahg_conn_resume_read(struct ahg_conn *c)
{
    if (!c->paused)
        return;
    c->paused = false;
    ahg_timer_init(&c->resume_timer, c->loop, resume_fire, c);
    ahg_timer_start(&c->resume_timer, 0);
}

size_t
ahg_conn_write_span(struct ahg_conn *c, size_t want, unsigned char **p)
{
    if (c->killed || c->closing || !c->wsi || !want || c->queued >= AHG_NET_OUT_MAX)
        return 0;
    if (want > AHG_NET_OUT_MAX - c->queued)
        want = AHG_NET_OUT_MAX - c->queued;
    struct outchunk *t = c->out_tail;
    if (!t || t->len == t->cap) {
        size_t cap = want < AHG_NET_CHUNK ? (want < 4096 ? 4096 : want) : AHG_NET_CHUNK;
        if (t && cap < AHG_NET_CHUNK && t->cap >= 4096)
            cap = AHG_NET_CHUNK; /* a stream of writes: use full chunks */
        t = malloc(sizeof(*t) + LWS_PRE + cap);
        if (!t)
            return 0;
        t->next = NULL;
        t->off = t->len = 0;
        t->cap = cap;
        if (c->out_tail)
            c->out_tail->next = t;
        else
            c->out_head = t;
        c->out_tail = t;
    }
    size_t k = t->cap - t->len;
    *p = t->mem + LWS_PRE + t->len;
    return k < want ? k : want;
}

void
ahg_conn_write_commit(struct ahg_conn *c, size_t n)
{
    struct outchunk *t = c->out_tail;
    if (!n || !t || n > t->cap - t->len)
        return;
    t->len += n;
    c->queued += n;
    if (c->queued > AHG_NET_OUT_HIGH)
        c->above_high = true;
    /* Sent at the end of this loop pass (flush_pass), with everything else written to c
     * meanwhile: no POLLOUT round trip (an extra poll/epoll_ctl pair per write). */
    if (!ahg_list_is_linked(&c->flush_link))
        ahg_list_push_back(&c->loop->flush, &c->flush_link);
}

int
ahg_conn_write(struct ahg_conn *c, const void *p, size_t n)
{
    const unsigned char *src = p;
    if (c->killed || c->closing || !c->wsi)
        return AHG_ECLOSED;
    if (n > AHG_NET_OUT_MAX - c->queued)
        return AHG_ELIMIT;
    while (n) {
        unsigned char *dst = NULL;
        size_t k = ahg_conn_write_span(c, n, &dst);
        if (!k)
            return AHG_ENOMEM;
        memcpy(dst, src, k);
        ahg_conn_write_commit(c, k);
        src += k;
        n -= k;
    }
    return AHG_OK;
}

bool
ahg_conn_writable(const struct ahg_conn *c)
{
    return c->wsi && !c->killed && c->queued <= AHG_NET_OUT_HIGH;
}

size_t
ahg_conn_queued(const struct ahg_conn *c)
{
    return c->queued;
}

void
ahg_conn_want_drain(struct ahg_conn *c)
{
    c->want_drain = true;
    if (c->wsi && !c->killed)
        lws_callback_on_writable(c->wsi);
}

/* Plain connections: send() straight from our queue, keeping an unsent tail in it (o->off).
 * lws_write() would keep the tail itself and then stop reading the connection until it is
 * sent, which deadlocks two peers that both write faster than the other reads. */
static int
plain_send(struct ahg_conn *c)
{
    int fd = (int)lws_get_socket_fd(c->wsi);
    struct outchunk *o;
    while ((o = c->out_head) != NULL) {
        size_t n = o->len - o->off;
        ssize_t w = send(fd, o->mem + LWS_PRE + o->off, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                break;
            return -1;
        }
        c->last_activity = ahg_now_ms();
        out_consumed(c, (size_t)w);
        if ((size_t)w < n)
            break;
    }
    if (c->out_head)
        lws_callback_on_writable(c->wsi);
    return 0;
}

static int
on_writeable(struct ahg_conn *c)
{
    if (c->killed)
        return -1;
    struct outchunk *o = c->ssl || !c->tls ? NULL : c->out_head;
    if (c->ssl && tls_writeable(c) < 0) {
        c->killed = true;
        return -1;
    }
    if (!c->ssl && !c->tls && plain_send(c) < 0) {
        c->killed = true;
        return -1;
    }
    if (o) { /* TLS done by lws (our listeners): one lws_write a callback */
        size_t n = o->len - o->off;
        unsigned char *p = o->mem + LWS_PRE + o->off;
        int w = lws_write(c->wsi, p, n, LWS_WRITE_RAW);
        if (w < 0) {
            c->killed = true;
            return -1;
        }
        /* lws keeps any unsent tail of this write itself (truncated send). */
        c->last_activity = ahg_now_ms();
        out_consumed(c, n);
        if (c->out_head)
            lws_callback_on_writable(c->wsi);
    }
    if (c->above_high && c->queued <= AHG_NET_OUT_HIGH) {
        c->above_high = false;
        if (c->ops && c->ops->on_drain && !c->closing)
            c->ops->on_drain(c);
    }
    if (c->want_drain && c->queued == 0 && !c->killed) {
        c->want_drain = false;
        if (c->ops && c->ops->on_drain && !c->closing)
            c->ops->on_drain(c);
    }
    if (c->closing && c->queued == 0 && !(c->ssl && BIO_ctrl_pending(c->wbio)))
        return -1;
    if (c->killed)
        return -1;
    return 0;
}

void
ahg_conn_close(struct ahg_conn *c)
{
    if (c->closing || c->killed || !c->wsi)
        return;
    c->closing = true;
    if (c->queued == 0) {
        conn_kill(c);
        return;
    }
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, 10);
    lws_callback_on_writable(c->wsi);
}

void
ahg_conn_abort(struct ahg_conn *c)
{
    conn_kill(c);
}

void
ahg_conn_set_ops(struct ahg_conn *c, const struct ahg_conn_ops *ops, void *ud)
{
    c->ops = ops;
    c->ud = ud;
}

void *
ahg_conn_ud(const struct ahg_conn *c)
{
    return c->ud;
}

const char *
ahg_conn_peer_addr(const struct ahg_conn *c)
{
    return c->peer;
}

int
ahg_conn_peer_port(const struct ahg_conn *c)
{
    return c->peer_port;
}

bool
ahg_conn_is_tls(const struct ahg_conn *c)
{
    return c->tls;
}

uint64_t
ahg_conn_bytes_in(const struct ahg_conn *c)
{
    return c->bytes_in;
}

uint64_t
ahg_conn_bytes_out(const struct ahg_conn *c)
{
    return c->bytes_out;
}

static void
idle_fire(struct ahg_timer *t)
{
    struct ahg_conn *c = t->ud;
    if (!c->idle_ms || c->killed || !c->wsi)
        return;
    uint64_t now = ahg_now_ms();
    if (now - c->last_activity >= c->idle_ms) {
        conn_kill(c);
        return;
    }
    ahg_timer_start(&c->idle_timer, c->idle_ms - (now - c->last_activity));
}

void
ahg_conn_set_idle_timeout(struct ahg_conn *c, uint64_t ms)
{
    c->idle_ms = ms;
    ahg_timer_stop(&c->idle_timer);
    if (!ms)
        return;
    c->last_activity = ahg_now_ms();
    ahg_timer_init(&c->idle_timer, c->loop, idle_fire, c);
    ahg_timer_start(&c->idle_timer, ms);
}

struct ahg_conn *
ahg_conn_connect(struct ahg_loop *loop, const struct ahg_connect_opts *opts,
                 const struct ahg_conn_ops *ops, void *ud, int *err)
{
    struct in6_addr a6;
    struct in_addr a4;
    if (!opts->address || opts->port <= 0 || opts->port > 65535 ||
        (inet_pton(AF_INET, opts->address, &a4) != 1 &&
         inet_pton(AF_INET6, opts->address, &a6) != 1)) {
        if (err)
            *err = AHG_EINVAL;
        return NULL;
    }
    struct ahg_conn *c = conn_new(loop);
    if (!c) {
        if (err)
            *err = AHG_ENOMEM;
        return NULL;
    }
    c->ops = ops;
    c->ud = ud;
    c->is_client = true;
    c->tls = opts->tls;
    (void)snprintf(c->peer, sizeof(c->peer), "%s", opts->address);
    c->peer_port = opts->port;

    struct lws_client_connect_info i;
    memset(&i, 0, sizeof(i));
    i.context = loop->ctx;
    i.address = opts->address;
    i.port = opts->port;
    i.path = "";
    i.host = opts->tls_host ? opts->tls_host : opts->address;
    i.origin = i.host;
    i.method = "RAW";
    i.protocol = PROTO_NAME;
    i.local_protocol_name = PROTO_NAME;
    i.vhost = loop->client_vh;
    i.opaque_user_data = c;
    i.pwsi = &c->wsi;
    (void)snprintf(c->tls_host, sizeof(c->tls_host), "%s", i.host);
    if (opts->tls && tls_start(c, opts->insecure || loop->insecure) != AHG_OK) {
        c->ended = true;
        conn_free(c);
        if (err)
            *err = AHG_ENOMEM;
        return NULL;
    }
    struct lws *w = lws_client_connect_via_info(&i);
    if (!w) {
        /* lws may already have reported CLIENT_CONNECTION_ERROR (and ended c). */
        if (!c->ended) {
            c->ended = true;
            conn_free(c);
            if (err)
                *err = AHG_EIO;
            return NULL;
        }
        /* on_close ran: per our contract the connection "started"; it is freed already. */
        if (err)
            *err = AHG_EIO;
        return NULL;
    }
    return c;
}

/* ---- listeners ---- */

struct ahg_listener *
ahg_listener_new(struct ahg_loop *loop, const struct ahg_listener_opts *opts, int *err)
{
    struct ahg_listener *l = calloc(1, sizeof(*l));
    if (!l) {
        if (err)
            *err = AHG_ENOMEM;
        return NULL;
    }
    l->loop = loop;
    l->on_accept = opts->on_accept;
    l->ud = opts->ud;
    l->on_free = opts->on_free;

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.vhost_name = opts->name;
    info.iface = opts->iface ? opts->iface : "127.0.0.1";
    info.port = opts->port;
    info.protocols = net_protocols;
    info.options =
        LWS_SERVER_OPTION_ADOPT_APPLY_LISTEN_ACCEPT_CONFIG | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.listen_accept_role = "raw-skt";
    info.listen_accept_protocol = PROTO_NAME;
    info.user = l;
    info.alpn = "http/1.1";
    if (opts->cert_file) {
        info.ssl_cert_filepath = opts->cert_file;
        info.ssl_private_key_filepath = opts->key_file;
        info.ssl_options_set = SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1;
    }
    l->vh = lws_create_vhost(loop->ctx, &info);
    if (!l->vh) {
        free(l);
        if (err)
            *err = AHG_EIO;
        return NULL;
    }
    l->port = lws_get_vhost_listen_port(l->vh);
    l->next = loop->listeners;
    loop->listeners = l;
    return l;
}

int
ahg_listener_port(const struct ahg_listener *l)
{
    return l->port;
}

void *
ahg_listener_ud(const struct ahg_listener *l)
{
    return l->ud;
}

size_t
ahg_loop_conn_count(const struct ahg_loop *loop)
{
    return loop->conns.count;
}

/* ---- the lws callback ---- */

static int
net_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct ahg_conn *c = lws_get_opaque_user_data(wsi);
    (void)user;

    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED: {
        struct lws_context *ctx = lws_get_context(wsi);
        struct ahg_loop *loop = lws_context_user(ctx);
        if (loop)
            drain_posts(loop);
        return 0;
    }
    case LWS_CALLBACK_RAW_ADOPT: {
        if (c) /* outgoing connection, handled at RAW_CONNECTED */
            return 0;
        struct lws_vhost *vh = lws_get_vhost(wsi);
        struct ahg_listener *l = lws_get_vhost_user(vh);
        if (!l)
            return -1;
        c = conn_new(l->loop);
        if (!c)
            return -1;
        c->wsi = wsi;
        c->connected = true;
        c->tls = lws_is_ssl(wsi) != 0;
        lws_set_opaque_user_data(wsi, c);
        fill_peer(c);
        if (l->on_accept)
            l->on_accept(l, c);
        if (!c->ops) {
            c->killed = true;
            return -1;
        }
        return 0;
    }
    case LWS_CALLBACK_RAW_CONNECTED:
        if (!c)
            return -1;
        c->wsi = wsi;
        if (c->ssl) {
            /* Send the ClientHello; on_connect follows the handshake. */
            int r = SSL_do_handshake(c->ssl);
            if (r != 1 && SSL_get_error(c->ssl, r) != SSL_ERROR_WANT_READ) {
                tls_handshake_failed(c, r);
                return -1;
            }
            lws_callback_on_writable(wsi);
            return 0;
        }
        c->connected = true;
        if (c->ops && c->ops->on_connect)
            c->ops->on_connect(c);
        if (c->out_head)
            lws_callback_on_writable(wsi);
        return c->killed ? -1 : 0;

    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (!c)
            return 0;
        AHG_LOG_DEBUG("connect to %s:%d failed: %s", c->peer, c->peer_port,
                      in ? (const char *)in : "unknown error");
        lws_set_opaque_user_data(wsi, NULL);
        /* lws also lands here when the owner closed the connection from inside on_connect
         * (RAW_CONNECTED returned -1): that is a local close of a connected connection */
        conn_end(c, !c->connected             ? AHG_CONN_END_CONNECT
                    : c->killed || c->closing ? AHG_CONN_END_LOCAL
                                              : AHG_CONN_END_PEER);
        conn_free(c);
        return 0;

    case LWS_CALLBACK_RAW_RX:
        if (!c || c->killed)
            return c && c->killed ? -1 : 0;
        c->bytes_in += len;
        c->last_activity = ahg_now_ms();
        if (c->ssl)
            return tls_rx(c, in, len) < 0 || c->killed ? -1 : 0;
        ingest(c, in, len);
        return c->killed ? -1 : 0;

    case LWS_CALLBACK_RAW_WRITEABLE:
        if (!c)
            return 0;
        return on_writeable(c);

    case LWS_CALLBACK_RAW_CLOSE:
        if (!c)
            return 0;
        lws_set_opaque_user_data(wsi, NULL);
        conn_end(c, c->killed || c->closing ? AHG_CONN_END_LOCAL
                    : c->connected          ? AHG_CONN_END_PEER
                                            : AHG_CONN_END_CONNECT);
        conn_free(c);
        return 0;

    default:
        return 0;
    }
}

/* ---- loop ---- */

static void
ev_api_load(void)
{
    const char *want = getenv("AHG_EVENT_LOOP");
    if (want && strcmp(want, "poll") == 0)
        return;
    void *h = dlopen("libev.so.4", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return;
    struct ev_api a;
    *(void **)&a.loop_new = dlsym(h, "ev_loop_new");
    *(void **)&a.loop_destroy = dlsym(h, "ev_loop_destroy");
    *(void **)&a.run = dlsym(h, "ev_run");
    *(void **)&a.backend = dlsym(h, "ev_backend");
    *(void **)&a.timer_start = dlsym(h, "ev_timer_start");
    *(void **)&a.timer_stop = dlsym(h, "ev_timer_stop");
    *(void **)&a.now_update = dlsym(h, "ev_now_update");
    if (a.loop_new && a.loop_destroy && a.run && a.backend && a.timer_start && a.timer_stop &&
        a.now_update)
        ev_api = a; /* the handle stays open for the life of the process */
    else
        dlclose(h);
}

/* An epoll libev loop, or NULL (then lws runs its own poll() loop). */
static struct ev_loop *
ev_loop_open(void)
{
    pthread_once(&ev_api_once, ev_api_load);
    if (!ev_api.loop_new)
        return NULL;
    struct ev_loop *l = ev_api.loop_new(EVFLAG_AUTO);
    if (l && ev_api.backend(l) != EVBACKEND_EPOLL) {
        ev_api.loop_destroy(l); /* no gain over lws's poll() */
        l = NULL;
    }
    return l;
}

/* Sends what was written to each connection during the pass that just ended: one send per
 * connection, or lws's writeable callback when the socket is not ready for it. */
static void
flush_pass(struct ahg_loop *loop)
{
    unsigned budget = 4096; /* on_drain callbacks may write again: bounded */
    while (!ahg_list_is_empty(&loop->flush)) {
        struct ahg_list_node *n = loop->flush.head;
        struct ahg_conn *c = AHG_LIST_ENTRY(n, struct ahg_conn, flush_link);
        ahg_list_remove(&loop->flush, n);
        if (c->killed || !c->wsi)
            continue;
        if (!budget || !c->connected || c->closing || c->ssl || c->tls) {
            lws_callback_on_writable(c->wsi);
            continue;
        }
        budget--;
        int r = on_writeable(c);
        if (r < 0) {
            if (c->closing && !c->killed) {
                lws_callback_on_writable(c->wsi); /* drained: close from the callback */
            } else {
                c->killed = true;
                if (c->wsi)
                    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
            }
        }
    }
}

static lws_usec_t
first_sul_us(const struct ahg_loop *loop)
{
    const lws_dll2_owner_t *own = loop->sul_owner;
    if (!own || !own->head)
        return 0;
    return lws_container_of(own->head, lws_sorted_usec_list_t, list)->us;
}

static void
wake_fire(struct ev_loop *l, ev_timer *w, int revents)
{
    struct ahg_loop *loop = w->data;
    (void)l;
    (void)revents;
    /* what lws's own timer callback does; wake_arm() re-arms after this pass */
    (void)__lws_sul_service_ripe(loop->sul_owner, LWS_COUNT_PT_SUL_OWNERS, lws_now_usecs());
}

/* Arms `wake` for lws's earliest timer (now, when it is due already). */
static void
wake_arm(struct ahg_loop *loop)
{
    lws_usec_t first = first_sul_us(loop);
    if (!first || (ev_is_active(&loop->wake) && loop->wake_us <= first))
        return;
    lws_usec_t now = lws_now_usecs(), at = first > now ? first : now;
    ev_api.timer_stop(loop->ev, &loop->wake);
    ev_api.now_update(loop->ev);
    ev_timer_set(&loop->wake, (ev_tstamp)(at - now) / 1e6, 0.);
    ev_api.timer_start(loop->ev, &loop->wake);
    loop->wake_us = at;
}

/* One pass: wait for the next events or timer, service them, send what they wrote. */
static int
loop_pass(struct ahg_loop *loop)
{
    int r = 0;
    flush_pass(loop); /* written outside the loop (setup, tests) */
    if (loop->ev) {
        wake_arm(loop);
        ev_api.run(loop->ev, EVRUN_ONCE);
        /* what lws's idle watcher does (starved while events keep coming): connections with
         * input lws already holds (TLS records it decrypted) */
        if (!lws_service_adjust_timeout(loop->ctx, 1, 0))
            (void)_lws_plat_service_forced_tsi(loop->ctx, 0);
    } else {
        r = lws_service(loop->ctx, 0);
    }
    flush_pass(loop);
    return r;
}

struct ahg_loop *
ahg_loop_new(const struct ahg_loop_opts *opts)
{
    struct ahg_loop *loop = calloc(1, sizeof(*loop));
    if (!loop)
        return NULL;
    pthread_mutex_init(&loop->post_mu, NULL);

    /* style.md 3.6: lws applies http_proxy to every vhost; our egress is explicit. */
    unsetenv("http_proxy");
    unsetenv("https_proxy");
    lws_set_log_level(LLL_ERR | LLL_WARN, ahg_log_lws_emit);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = net_protocols;
    info.user = loop;
    info.pt_serv_buf_size = AHG_NET_CHUNK;
    if (opts && opts->max_fds)
        info.fd_limit_per_thread = opts->max_fds;
    loop->ev = ev_loop_open();
    if (loop->ev) {
        void *foreign[1] = {loop->ev};
        info.options |= LWS_SERVER_OPTION_LIBEV;
        info.foreign_loops = foreign;
        loop->ctx = lws_create_context(&info);
        if (!loop->ctx) {
            AHG_LOG_WARN("libwebsockets' libev plugin did not load: using poll()");
            ev_api.loop_destroy(loop->ev);
            loop->ev = NULL;
            info.options &= ~(uint64_t)LWS_SERVER_OPTION_LIBEV;
            info.foreign_loops = NULL;
        }
    }
    if (!loop->ctx)
        loop->ctx = lws_create_context(&info);
    if (loop->ev && loop->ctx) {
        ev_timer_init(&loop->wake, wake_fire, 0., 0.);
        loop->wake.data = loop;
    }
    if (!loop->ctx) {
        pthread_mutex_destroy(&loop->post_mu);
        free(loop);
        return NULL;
    }

    struct lws_context_creation_info vi;
    memset(&vi, 0, sizeof(vi));
    vi.vhost_name = "ahg-client";
    vi.port = CONTEXT_PORT_NO_LISTEN;
    vi.protocols = net_protocols;
    loop->client_vh = lws_create_vhost(loop->ctx, &vi);
    loop->cli_ctx = client_ctx_new(opts ? opts->client_ca_file : NULL, true);
    loop->cli_ctx_insecure = client_ctx_new(NULL, false);
    loop->insecure = opts && opts->client_insecure;
    if (!loop->client_vh || !loop->cli_ctx || !loop->cli_ctx_insecure) {
        ahg_loop_free(loop);
        return NULL;
    }
    return loop;
}

int
ahg_loop_run(struct ahg_loop *loop)
{
    while (!loop->stop) {
        if (loop_pass(loop) < 0)
            break;
    }
    loop->stop = 0; /* the request is consumed: the loop can be run again */
    return AHG_OK;
}

int
ahg_loop_run_once(struct ahg_loop *loop)
{
    return loop_pass(loop) < 0 ? AHG_EIO : AHG_OK;
}

void
ahg_loop_stop(struct ahg_loop *loop)
{
    loop->stop = 1;
    lws_cancel_service(loop->ctx);
}

bool
ahg_loop_stopping(const struct ahg_loop *loop)
{
    return loop->stop != 0;
}

struct lws_context *
ahg_loop_lws(struct ahg_loop *loop)
{
    return loop->ctx;
}

void
ahg_loop_free(struct ahg_loop *loop)
{
    if (!loop)
        return;
    /* lookups of this loop still queued or running are dropped (never answered) */
    ahg_resolve_shutdown(loop);
    lws_context_destroy(loop->ctx);
    loop->destroyed = true;
    if (loop->ev) {
        ev_api.timer_stop(loop->ev, &loop->wake);
        ev_api.loop_destroy(loop->ev);
    }
    /* Connections lws never reported closed (e.g. connects still pending). */
    ahg_list_foreach_safe (n, next, &loop->conns) {
        struct ahg_conn *c = AHG_LIST_ENTRY(n, struct ahg_conn, link);
        conn_end(c, AHG_CONN_END_LOCAL);
        conn_free(c);
    }
    drain_posts(loop);
    while (loop->listeners) {
        struct ahg_listener *l = loop->listeners;
        loop->listeners = l->next;
        if (l->on_free)
            l->on_free(l->ud);
        free(l);
    }
    for (size_t i = 0; i < sizeof(loop->sessions) / sizeof(loop->sessions[0]); i++)
        if (loop->sessions[i].sess)
            SSL_SESSION_free(loop->sessions[i].sess);
    SSL_CTX_free(loop->cli_ctx);
    SSL_CTX_free(loop->cli_ctx_insecure);
    pthread_mutex_destroy(&loop->post_mu);
    free(loop);
}

static size_t
null_data(struct ahg_conn *c, const unsigned char *p, size_t n)
{
    (void)c;
    (void)p;
    return n;
}

static void
null_close(struct ahg_conn *c, enum ahg_conn_end why)
{
    (void)c;
    (void)why;
}

const struct ahg_conn_ops ahg_conn_null_ops = {.on_data = null_data, .on_close = null_close};
