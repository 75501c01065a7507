/*
 * egress.c - libcurl multi in a worker thread; answers posted back to the loop thread.
 *
 * Ownership of a call: created on the loop thread and put on eg->incoming; the worker adds it
 * to the multi handle, and when it is done (or cancelled) either frees it or posts it back;
 * deliver() on the loop thread frees posted calls. Every live call is on eg->all (under mu) so
 * that ahg_egress_free() can orphan the posted ones (they are then freed without a callback).
 */
#include "ahg/egress.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ahg/err.h"
#include "ahg/log.h"
#include "ahg/net.h"

struct ahg_egress_call {
    struct ahg_egress *eg;                 /* NULL once the client is gone (posted calls) */
    struct ahg_egress_call *aprev, *anext; /* eg->all, under mu */
    struct ahg_egress_call *qnext;         /* eg->incoming (mu) or eg->running (worker) */
    CURL *easy;
    struct curl_slist *hdrs;
    ahg_egress_cb cb;
    void *ud;
    bool cancelled; /* under mu */
    size_t max_body;
    char *body;
    size_t body_len, body_cap;
    bool body_over;
    char *hdr;
    size_t hdr_len, hdr_cap;
    bool hdr_over;
    int status;
    int err;
    char errbuf[CURL_ERROR_SIZE];
};

struct ahg_egress {
    struct ahg_loop *loop;
    CURLM *multi;
    pthread_t thread;
    pthread_mutex_t mu;
    bool stop;                        /* under mu */
    struct ahg_egress_call *incoming; /* under mu */
    struct ahg_egress_call *all;      /* under mu */
    unsigned nall;                    /* under mu */
    struct ahg_egress_call *running;  /* worker only */
    char *ca_file;
    char *proxy;
    unsigned timeout_ms;
    size_t max_body;
    unsigned max_inflight;
};

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_init_rc = CURLE_FAILED_INIT;

static void
curl_init_once(void)
{
    g_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- calls ---- */

static void
all_remove(struct ahg_egress *eg, struct ahg_egress_call *c) /* mu held */
{
    if (c->aprev)
        c->aprev->anext = c->anext;
    else
        eg->all = c->anext;
    if (c->anext)
        c->anext->aprev = c->aprev;
    c->aprev = c->anext = NULL;
    eg->nall--;
}

static void
call_free(struct ahg_egress_call *c)
{
    if (c->easy)
        curl_easy_cleanup(c->easy);
    curl_slist_free_all(c->hdrs);
    free(c->body);
    free(c->hdr);
    free(c);
}

static bool
grow(char **buf, size_t *cap, size_t need, size_t limit)
{
    if (need <= *cap)
        return true;
    size_t ncap = *cap ? *cap : 4096;
    while (ncap < need)
        ncap *= 2;
    if (ncap > limit)
        ncap = limit;
    if (ncap < need)
        return false;
    char *p = realloc(*buf, ncap);
    if (!p)
        return false;
    *buf = p;
    *cap = ncap;
    return true;
}

static size_t
on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    struct ahg_egress_call *c = ud;
    size_t n = size * nmemb;
    if (c->body_len + n > c->max_body) {
        c->body_over = true;
        return 0;
    }
    if (!grow(&c->body, &c->body_cap, c->body_len + n + 1, c->max_body + 1))
        return 0;
    memcpy(c->body + c->body_len, p, n);
    c->body_len += n;
    c->body[c->body_len] = '\0';
    return n;
}

static size_t
on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    struct ahg_egress_call *c = ud;
    size_t n = size * nmemb;
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0)
        c->hdr_len = 0; /* a new response (after 100-continue or a proxy CONNECT) */
    if (c->hdr_len + n > AHG_EGRESS_MAX_HEADERS) {
        c->hdr_over = true;
        return 0;
    }
    if (!grow(&c->hdr, &c->hdr_cap, c->hdr_len + n + 1, AHG_EGRESS_MAX_HEADERS + 1))
        return 0;
    memcpy(c->hdr + c->hdr_len, p, n);
    c->hdr_len += n;
    c->hdr[c->hdr_len] = '\0';
    return n;
}

static int
map_curl(const struct ahg_egress_call *c, CURLcode rc)
{
    switch (rc) {
    case CURLE_OK:
        return AHG_OK;
    case CURLE_OPERATION_TIMEDOUT:
        return AHG_ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
        return AHG_EUNAVAIL;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return AHG_ENOTFOUND;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_USE_SSL_FAILED:
        return AHG_ETLS;
    case CURLE_FILESIZE_EXCEEDED:
        return AHG_ELIMIT;
    case CURLE_WRITE_ERROR:
        return (c->body_over || c->hdr_over) ? AHG_ELIMIT : AHG_ENOMEM;
    case CURLE_OUT_OF_MEMORY:
        return AHG_ENOMEM;
    default:
        return AHG_EUPSTREAM;
    }
}

/* Loop thread (or the drain of ahg_loop_free). */
static void
deliver(void *arg)
{
    struct ahg_egress_call *c = arg;
    struct ahg_egress *eg = c->eg;
    bool cancelled = true;
    if (eg) {
        pthread_mutex_lock(&eg->mu);
        all_remove(eg, c);
        cancelled = c->cancelled;
        pthread_mutex_unlock(&eg->mu);
    }
    if (!cancelled) {
        struct ahg_egress_resp r = {
            .status = c->status,
            .headers = c->hdr ? c->hdr : "",
            .headers_len = c->hdr_len,
            .body = c->body ? c->body : "",
            .body_len = c->body_len,
            .err = c->err,
            .errmsg = c->err == AHG_OK ? "" : c->errbuf,
        };
        c->cb(&r, c->ud);
    }
    call_free(c);
}

/* Worker: the transfer of c ended with rc (c is already out of the multi handle). */
static void
finish(struct ahg_egress *eg, struct ahg_egress_call *c, CURLcode rc)
{
    long status = 0;
    (void)curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    c->status = (int)status;
    c->err = map_curl(c, rc);
    if (c->err == AHG_ELIMIT)
        (void)snprintf(c->errbuf, sizeof(c->errbuf), "%s",
                       c->hdr_over ? "response headers too large" : "response body too large");
    else if (c->err != AHG_OK && c->errbuf[0] == '\0')
        (void)snprintf(c->errbuf, sizeof(c->errbuf), "%s", curl_easy_strerror(rc));
    if (c->err != AHG_OK)
        AHG_LOG_DEBUG("egress: request failed: %s (%s)", ahg_err_name(c->err),
                      curl_easy_strerror(rc));
    pthread_mutex_lock(&eg->mu);
    if (c->cancelled) {
        all_remove(eg, c);
        pthread_mutex_unlock(&eg->mu);
        call_free(c);
        return;
    }
    if (ahg_loop_post(eg->loop, deliver, c) != AHG_OK) {
        AHG_LOG_ERROR("egress: could not post a response to the loop (out of memory)");
        all_remove(eg, c);
        pthread_mutex_unlock(&eg->mu);
        call_free(c);
        return;
    }
    pthread_mutex_unlock(&eg->mu);
}

static void
running_remove(struct ahg_egress *eg, struct ahg_egress_call *c)
{
    for (struct ahg_egress_call **pp = &eg->running; *pp; pp = &(*pp)->qnext) {
        if (*pp == c) {
            *pp = c->qnext;
            c->qnext = NULL;
            return;
        }
    }
}

static void *
worker(void *arg)
{
    struct ahg_egress *eg = arg;
    for (;;) {
        pthread_mutex_lock(&eg->mu);
        bool stop = eg->stop;
        struct ahg_egress_call *in = eg->incoming;
        eg->incoming = NULL;
        /* drop cancelled calls: new ones and running ones */
        struct ahg_egress_call *dropped = NULL;
        struct ahg_egress_call *add = NULL;
        while (in) {
            struct ahg_egress_call *next = in->qnext;
            if (in->cancelled || stop) {
                all_remove(eg, in);
                in->qnext = dropped;
                dropped = in;
            } else {
                in->qnext = add;
                add = in;
            }
            in = next;
        }
        for (struct ahg_egress_call **pp = &eg->running; *pp;) {
            struct ahg_egress_call *c = *pp;
            if (c->cancelled || stop) {
                *pp = c->qnext;
                all_remove(eg, c);
                (void)curl_multi_remove_handle(eg->multi, c->easy);
                c->qnext = dropped;
                dropped = c;
            } else {
                pp = &c->qnext;
            }
        }
        pthread_mutex_unlock(&eg->mu);
        while (dropped) {
            struct ahg_egress_call *next = dropped->qnext;
            call_free(dropped);
            dropped = next;
        }
        if (stop)
            break;
        while (add) {
            struct ahg_egress_call *next = add->qnext;
            if (curl_multi_add_handle(eg->multi, add->easy) != CURLM_OK) {
                (void)snprintf(add->errbuf, sizeof(add->errbuf), "%s", "cannot start transfer");
                add->qnext = NULL;
                finish(eg, add, CURLE_OUT_OF_MEMORY);
            } else {
                add->qnext = eg->running;
                eg->running = add;
            }
            add = next;
        }
        int still = 0;
        (void)curl_multi_perform(eg->multi, &still);
        CURLMsg *m;
        int left = 0;
        while ((m = curl_multi_info_read(eg->multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            CURL *easy = m->easy_handle;
            CURLcode rc = m->data.result;
            struct ahg_egress_call *c = NULL;
            (void)curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&c);
            (void)curl_multi_remove_handle(eg->multi, easy);
            if (c) {
                running_remove(eg, c);
                finish(eg, c, rc);
            }
        }
        (void)curl_multi_poll(eg->multi, NULL, 0, 1000, NULL);
    }
    return NULL;
}

/* ---- public ---- */

struct ahg_egress *
ahg_egress_new(struct ahg_loop *loop, const struct ahg_egress_opts *opts)
{
    if (!loop)
        return NULL;
    (void)pthread_once(&g_curl_once, curl_init_once);
    if (g_curl_init_rc != CURLE_OK) {
        AHG_LOG_ERROR("egress: curl_global_init failed");
        return NULL;
    }
    struct ahg_egress *eg = calloc(1, sizeof(*eg));
    if (!eg)
        return NULL;
    eg->loop = loop;
    eg->timeout_ms = (opts && opts->timeout_ms) ? opts->timeout_ms : AHG_EGRESS_DEFAULT_TIMEOUT_MS;
    eg->max_body = (opts && opts->max_body) ? opts->max_body : AHG_EGRESS_DEFAULT_MAX_BODY;
    eg->max_inflight =
        (opts && opts->max_inflight) ? opts->max_inflight : AHG_EGRESS_DEFAULT_INFLIGHT;
    if (opts && opts->ca_file && !(eg->ca_file = strdup(opts->ca_file)))
        goto fail;
    if (opts && opts->proxy && !(eg->proxy = strdup(opts->proxy)))
        goto fail;
    if (pthread_mutex_init(&eg->mu, NULL) != 0)
        goto fail;
    eg->multi = curl_multi_init();
    if (!eg->multi) {
        (void)pthread_mutex_destroy(&eg->mu);
        goto fail;
    }
    if (pthread_create(&eg->thread, NULL, worker, eg) != 0) {
        (void)curl_multi_cleanup(eg->multi);
        (void)pthread_mutex_destroy(&eg->mu);
        goto fail;
    }
    return eg;
fail:
    AHG_LOG_ERROR("egress: cannot start the client");
    free(eg->ca_file);
    free(eg->proxy);
    free(eg);
    return NULL;
}

static bool
is_token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch <= 32 || ch >= 127 || strchr("\"(),/:;<=>?@[\\]{}", ch))
            return false;
    }
    return true;
}

static int
setup_easy(struct ahg_egress *eg, struct ahg_egress_call *c, const struct ahg_egress_req *req)
{
    CURL *e = c->easy;
    const char *m = req->method ? req->method : (req->body_len ? "POST" : "GET");
    if (!is_token(m))
        return AHG_EINVAL;
    for (const char *const *h = req->headers; h && *h; h++) {
        if (!strchr(*h, ':') || strpbrk(*h, "\r\n"))
            return AHG_EINVAL;
        struct curl_slist *n = curl_slist_append(c->hdrs, *h);
        if (!n)
            return AHG_ENOMEM;
        c->hdrs = n;
    }
    struct curl_slist *n = curl_slist_append(c->hdrs, "Expect:");
    if (!n)
        return AHG_ENOMEM;
    c->hdrs = n;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(e, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_URL, req->url);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PRIVATE, (void *)c);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    if (eg->ca_file)
        SET(CURLOPT_CAINFO, eg->ca_file);
    SET(CURLOPT_PROXY, eg->proxy ? eg->proxy : ""); /* "" = no proxy, environment ignored */
    SET(CURLOPT_TIMEOUT_MS, (long)eg->timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)eg->timeout_ms);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)eg->max_body);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, (void *)c);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, (void *)c);
    SET(CURLOPT_ERRORBUFFER, c->errbuf);
    SET(CURLOPT_HTTPHEADER, c->hdrs);
    if (strcmp(m, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (req->body_len || strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 ||
               strcmp(m, "PATCH") == 0) {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        SET(CURLOPT_COPYPOSTFIELDS, req->body_len ? (const char *)req->body : "");
        if (strcmp(m, "POST") != 0)
            SET(CURLOPT_CUSTOMREQUEST, m);
    } else if (strcmp(m, "GET") == 0) {
        SET(CURLOPT_HTTPGET, 1L);
    } else {
        SET(CURLOPT_CUSTOMREQUEST, m);
    }
#undef SET
    if (rc == CURLE_OUT_OF_MEMORY)
        return AHG_ENOMEM;
    return rc == CURLE_OK ? AHG_OK : AHG_EINVAL;
}

int
ahg_egress_request(struct ahg_egress *eg, const struct ahg_egress_req *req, ahg_egress_cb cb,
                   void *ud, struct ahg_egress_call **handle)
{
    if (handle)
        *handle = NULL;
    if (!eg || !req || !req->url || !cb || (req->body_len && !req->body))
        return AHG_EINVAL;
    if (strncasecmp(req->url, "https://", 8) != 0 && strncasecmp(req->url, "http://", 7) != 0)
        return AHG_EINVAL;
    struct ahg_egress_call *c = calloc(1, sizeof(*c));
    if (!c)
        return AHG_ENOMEM;
    c->eg = eg;
    c->cb = cb;
    c->ud = ud;
    c->max_body = eg->max_body;
    c->easy = curl_easy_init();
    if (!c->easy) {
        call_free(c);
        return AHG_ENOMEM;
    }
    int rc = setup_easy(eg, c, req);
    if (rc != AHG_OK) {
        call_free(c);
        return rc;
    }
    pthread_mutex_lock(&eg->mu);
    if (eg->stop || eg->nall >= eg->max_inflight) {
        rc = eg->stop ? AHG_ECLOSED : AHG_ELIMIT;
        pthread_mutex_unlock(&eg->mu);
        call_free(c);
        return rc;
    }
    c->anext = eg->all;
    if (eg->all)
        eg->all->aprev = c;
    eg->all = c;
    eg->nall++;
    c->qnext = eg->incoming;
    eg->incoming = c;
    pthread_mutex_unlock(&eg->mu);
    (void)curl_multi_wakeup(eg->multi);
    if (handle)
        *handle = c;
    return AHG_OK;
}

void
ahg_egress_cancel(struct ahg_egress_call *call)
{
    if (!call || !call->eg)
        return;
    struct ahg_egress *eg = call->eg;
    pthread_mutex_lock(&eg->mu);
    call->cancelled = true;
    pthread_mutex_unlock(&eg->mu);
    (void)curl_multi_wakeup(eg->multi);
}

unsigned
ahg_egress_inflight(struct ahg_egress *eg)
{
    if (!eg)
        return 0;
    pthread_mutex_lock(&eg->mu);
    unsigned n = eg->nall;
    pthread_mutex_unlock(&eg->mu);
    return n;
}

void
ahg_egress_free(struct ahg_egress *eg)
{
    if (!eg)
        return;
    pthread_mutex_lock(&eg->mu);
    eg->stop = true;
    pthread_mutex_unlock(&eg->mu);
    (void)curl_multi_wakeup(eg->multi);
    (void)pthread_join(eg->thread, NULL);
    /* what is left was posted to the loop: freed there without a callback */
    pthread_mutex_lock(&eg->mu);
    for (struct ahg_egress_call *c = eg->all; c; c = c->anext)
        c->eg = NULL;
    eg->all = NULL;
    pthread_mutex_unlock(&eg->mu);
    (void)curl_multi_cleanup(eg->multi);
    (void)pthread_mutex_destroy(&eg->mu);
    free(eg->ca_file);
    free(eg->proxy);
    free(eg);
}
