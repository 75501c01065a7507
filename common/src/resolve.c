/*
 * resolve.c - getaddrinfo() in a small worker pool, answers posted back to the loop thread.
 */
#include "ahg/resolve.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "ahg/err.h"
#include "ahg/log.h"
#include "ahg/net.h"

struct rreq {
    struct rreq *qnext;         /* queue link (waiting for a worker) */
    struct rreq *lprev, *lnext; /* live list (not yet answered) */
    struct ahg_loop *loop;
    ahg_resolve_cb cb;
    void *ud;
    int err;
    bool cancelled;
    char host[AHG_RESOLVE_HOST_MAX + 1];
    char addr[INET6_ADDRSTRLEN];
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static struct rreq *g_qhead, *g_qtail;
static size_t g_qlen;
static struct rreq *g_live;
static pthread_t g_threads[AHG_RESOLVE_THREADS];
static size_t g_nthreads;
static bool g_stopping;

/* ---- helpers (callers hold g_mu where noted) ---- */

static void
live_add(struct rreq *r) /* g_mu held */
{
    r->lprev = NULL;
    r->lnext = g_live;
    if (g_live)
        g_live->lprev = r;
    g_live = r;
}

static void
live_remove(struct rreq *r) /* g_mu held */
{
    if (r->lprev)
        r->lprev->lnext = r->lnext;
    else
        g_live = r->lnext;
    if (r->lnext)
        r->lnext->lprev = r->lprev;
    r->lprev = r->lnext = NULL;
}

static bool
ends_with_ci(const char *s, size_t n, const char *suffix)
{
    size_t m = strlen(suffix);
    return n >= m && strncasecmp(s + n - m, suffix, m) == 0;
}

/* Fills r->addr/r->err without DNS when the input allows it; returns true then. */
static bool
answer_locally(struct rreq *r)
{
    char tmp[AHG_RESOLVE_HOST_MAX + 1];
    size_t n = strlen(r->host);
    const char *h = r->host;
    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
        memcpy(tmp, h + 1, n - 2);
        tmp[n - 2] = '\0';
        h = tmp;
    }
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, h, &a4) == 1) {
        if (!inet_ntop(AF_INET, &a4, r->addr, sizeof(r->addr)))
            return false;
        r->err = AHG_OK;
        return true;
    }
    if (inet_pton(AF_INET6, h, &a6) == 1) {
        if (!inet_ntop(AF_INET6, &a6, r->addr, sizeof(r->addr)))
            return false;
        r->err = AHG_OK;
        return true;
    }
    if (h != r->host) { /* brackets around something that is not IPv6 */
        r->err = AHG_EINVAL;
        return true;
    }
    /* a trailing dot (absolute name) does not change the answer */
    if (n > 1 && r->host[n - 1] == '.')
        n--;
    if ((n == 9 && strncasecmp(r->host, "localhost", 9) == 0) ||
        ends_with_ci(r->host, n, ".localhost")) {
        (void)snprintf(r->addr, sizeof(r->addr), "%s", "127.0.0.1");
        r->err = AHG_OK;
        return true;
    }
    if ((n == 7 && strncasecmp(r->host, "invalid", 7) == 0) ||
        ends_with_ci(r->host, n, ".invalid")) {
        r->err = AHG_ENOTFOUND;
        return true;
    }
    return false;
}

static int
map_gai(int rc)
{
    switch (rc) {
    case EAI_NONAME:
    case EAI_FAMILY:
    case EAI_SERVICE:
        return AHG_ENOTFOUND;
    case EAI_AGAIN:
        return AHG_EUNAVAIL;
    case EAI_MEMORY:
        return AHG_ENOMEM;
    default:
        return AHG_EIO;
    }
}

static void
lookup(struct rreq *r)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(r->host, NULL, &hints, &res);
    if (rc != 0) {
        r->err = map_gai(rc);
        return;
    }
    const struct addrinfo *v4 = NULL, *v6 = NULL;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET && !v4)
            v4 = ai;
        else if (ai->ai_family == AF_INET6 && !v6)
            v6 = ai;
    }
    r->err = AHG_ENOTFOUND;
    if (v4) {
        const struct sockaddr_in *sa = (const struct sockaddr_in *)(const void *)v4->ai_addr;
        if (inet_ntop(AF_INET, &sa->sin_addr, r->addr, sizeof(r->addr)))
            r->err = AHG_OK;
    } else if (v6) {
        const struct sockaddr_in6 *sa = (const struct sockaddr_in6 *)(const void *)v6->ai_addr;
        if (inet_ntop(AF_INET6, &sa->sin6_addr, r->addr, sizeof(r->addr)))
            r->err = AHG_OK;
    }
    freeaddrinfo(res);
}

/* Loop thread (or ahg_loop_free's drain): hand the answer over unless it was dropped. */
static void
deliver(void *arg)
{
    struct rreq *r = arg;
    pthread_mutex_lock(&g_mu);
    live_remove(r);
    bool cancelled = r->cancelled;
    pthread_mutex_unlock(&g_mu);
    if (!cancelled)
        r->cb(r->err, r->err == AHG_OK ? r->addr : NULL, r->ud);
    free(r);
}

/* g_mu held. Posts r, or drops it when that fails (then its callback never runs). */
static void
post_locked(struct rreq *r)
{
    if (ahg_loop_post(r->loop, deliver, r) != AHG_OK) {
        AHG_LOG_ERROR("resolve: could not post an answer to the loop (out of memory)");
        live_remove(r);
        free(r);
    }
}

static void *
worker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g_mu);
    for (;;) {
        while (!g_stopping && !g_qhead)
            pthread_cond_wait(&g_cv, &g_mu);
        if (g_stopping)
            break;
        struct rreq *r = g_qhead;
        g_qhead = r->qnext;
        if (!g_qhead)
            g_qtail = NULL;
        g_qlen--;
        r->qnext = NULL;
        pthread_mutex_unlock(&g_mu);
        lookup(r);
        pthread_mutex_lock(&g_mu);
        if (r->cancelled) {
            live_remove(r);
            free(r);
        } else {
            post_locked(r);
        }
    }
    pthread_mutex_unlock(&g_mu);
    return NULL;
}

/* g_mu held. */
static int
start_threads_locked(void)
{
    while (g_nthreads < AHG_RESOLVE_THREADS) {
        if (pthread_create(&g_threads[g_nthreads], NULL, worker, NULL) != 0)
            break;
        g_nthreads++;
    }
    return g_nthreads > 0 ? AHG_OK : AHG_EIO;
}

int
ahg_resolve(struct ahg_loop *loop, const char *host, int port, ahg_resolve_cb cb, void *ud)
{
    if (!loop || !host || !cb || port < 0 || port > 65535)
        return AHG_EINVAL;
    size_t n = strlen(host);
    if (n == 0 || n > AHG_RESOLVE_HOST_MAX)
        return AHG_EINVAL;
    struct rreq *r = calloc(1, sizeof(*r));
    if (!r)
        return AHG_ENOMEM;
    memcpy(r->host, host, n + 1);
    r->loop = loop;
    r->cb = cb;
    r->ud = ud;
    if (answer_locally(r)) {
        pthread_mutex_lock(&g_mu);
        live_add(r);
        if (ahg_loop_post(loop, deliver, r) != AHG_OK) {
            live_remove(r);
            pthread_mutex_unlock(&g_mu);
            free(r);
            return AHG_ENOMEM;
        }
        pthread_mutex_unlock(&g_mu);
        return AHG_OK;
    }
    pthread_mutex_lock(&g_mu);
    int rc = AHG_OK;
    if (g_stopping)
        rc = AHG_ECLOSED;
    else if (g_qlen >= AHG_RESOLVE_QUEUE_MAX)
        rc = AHG_ELIMIT;
    else
        rc = start_threads_locked();
    if (rc != AHG_OK) {
        pthread_mutex_unlock(&g_mu);
        free(r);
        return rc;
    }
    if (g_qtail)
        g_qtail->qnext = r;
    else
        g_qhead = r;
    g_qtail = r;
    g_qlen++;
    live_add(r);
    pthread_cond_signal(&g_cv);
    pthread_mutex_unlock(&g_mu);
    return AHG_OK;
}

void
ahg_resolve_cancel(struct ahg_loop *loop, ahg_resolve_cb cb, void *ud)
{
    pthread_mutex_lock(&g_mu);
    for (struct rreq *r = g_live; r; r = r->lnext)
        if (r->loop == loop && r->cb == cb && r->ud == ud)
            r->cancelled = true;
    pthread_mutex_unlock(&g_mu);
}

void
ahg_resolve_shutdown(struct ahg_loop *loop)
{
    pthread_mutex_lock(&g_mu);
    /* drop queued requests */
    struct rreq **pp = &g_qhead;
    g_qtail = NULL;
    while (*pp) {
        struct rreq *r = *pp;
        if (!loop || r->loop == loop) {
            *pp = r->qnext;
            g_qlen--;
            live_remove(r);
            free(r);
        } else {
            g_qtail = r;
            pp = &r->qnext;
        }
    }
    /* running or posted ones are discarded when they come back */
    for (struct rreq *r = g_live; r; r = r->lnext)
        if (!loop || r->loop == loop)
            r->cancelled = true;
    if (loop) {
        pthread_mutex_unlock(&g_mu);
        return;
    }
    g_stopping = true;
    pthread_cond_broadcast(&g_cv);
    size_t nt = g_nthreads;
    pthread_mutex_unlock(&g_mu);
    for (size_t i = 0; i < nt; i++)
        (void)pthread_join(g_threads[i], NULL);
    pthread_mutex_lock(&g_mu);
    g_nthreads = 0;
    g_stopping = false;
    pthread_mutex_unlock(&g_mu);
}
