/*
 * ahg/egress.h - the HTTP(S) client for calls to Azure (ARM, managed identity, Key Vault)
 * without blocking the loop.
 *
 * One worker thread per client owns a libcurl multi handle and sleeps in curl_multi_poll();
 * ahg_egress_request() queues the transfer and wakes it with curl_multi_wakeup(); results come
 * back with ahg_loop_post(), so every callback runs on the loop thread (style.md 2). Name
 * resolution happens in that worker, never on the loop thread.
 *
 * Safety: CURLOPT_NOSIGNAL; only http and https; no redirects are followed; the proxy is the
 * one in the options or none (proxy environment variables are ignored); TLS peer and host
 * name are always verified. Header values (Authorization!) and bodies are never logged.
 *
 * Threading: every function here is for the loop thread of the loop given to ahg_egress_new().
 */
#ifndef AHG_EGRESS_H
#define AHG_EGRESS_H

#include <stddef.h>

struct ahg_loop;
struct ahg_egress;
struct ahg_egress_call;

/* Defaults used for zero option fields. */
#define AHG_EGRESS_DEFAULT_TIMEOUT_MS 30000u
#define AHG_EGRESS_DEFAULT_MAX_BODY   ((size_t)4 * 1024 * 1024)
#define AHG_EGRESS_DEFAULT_INFLIGHT   64u
/* Response header block cap; more is AHG_ELIMIT. */
#define AHG_EGRESS_MAX_HEADERS ((size_t)64 * 1024)

struct ahg_egress_opts {
    const char *ca_file;   /* PEM CA bundle (copied); NULL = the OS store */
    unsigned timeout_ms;   /* whole transfer, connect included; 0 = default */
    size_t max_body;       /* response body cap in bytes; 0 = default; more -> AHG_ELIMIT */
    unsigned max_inflight; /* requests not yet answered; 0 = default; more -> AHG_ELIMIT */
    const char *proxy;     /* explicit proxy URL (copied); NULL = direct, never from env */
};

struct ahg_egress_req {
    const char *method;         /* "GET", "POST", ...; NULL = GET (or POST with a body) */
    const char *url;            /* http:// or https:// */
    const char *const *headers; /* NULL-terminated "Name: value" list, may be NULL */
    const void *body;           /* request body, may be NULL */
    size_t body_len;
};

/*
 * The answer, borrowed for the duration of the callback. err is AHG_OK when a response
 * arrived (status is then the server's status, whatever it is), else: AHG_ETIMEDOUT,
 * AHG_EUNAVAIL (connect refused/failed), AHG_ENOTFOUND (name not resolved), AHG_ETLS
 * (handshake or verification failed), AHG_ELIMIT (body or headers beyond the caps; status
 * may be set), AHG_ENOMEM, AHG_EUPSTREAM (anything else). errmsg is a short text (never NULL,
 * "" on success). headers is the raw response header block ("Name: value\r\n" lines, status
 * line included; NUL-terminated), body is NUL-terminated too (not counted in body_len).
 */
struct ahg_egress_resp {
    int status;
    const char *headers;
    size_t headers_len;
    const char *body;
    size_t body_len;
    int err;
    const char *errmsg;
};

typedef void (*ahg_egress_cb)(const struct ahg_egress_resp *resp, void *ud);

/* Starts a client and its worker thread. opts may be NULL (defaults). NULL on failure (logged).
 * Loop thread. */
struct ahg_egress *ahg_egress_new(struct ahg_loop *loop, const struct ahg_egress_opts *opts);

/*
 * Starts a request (everything in req is copied). cb(resp, ud) runs exactly once on the loop
 * thread, unless the call is cancelled or the client freed first. When handle is not NULL it
 * receives the call for ahg_egress_cancel(); the handle is valid until cb has started or
 * ahg_egress_cancel() returned. Returns AHG_OK, AHG_EINVAL (NULL arguments, URL not http(s),
 * header line without ':' or with CR/LF), AHG_ELIMIT (max_inflight reached), AHG_ENOMEM,
 * AHG_ECLOSED (worker gone). On error cb never runs and *handle is NULL.
 */
int ahg_egress_request(struct ahg_egress *eg, const struct ahg_egress_req *req, ahg_egress_cb cb,
                       void *ud, struct ahg_egress_call **handle);

/* Cancels a call: its callback will not run and its transfer is aborted. NULL is ignored. */
void ahg_egress_cancel(struct ahg_egress_call *call);

/* Calls started whose resources are not released yet: answered calls leave when their callback
 * returns, cancelled ones shortly after ahg_egress_cancel() (when the worker drops them). */
unsigned ahg_egress_inflight(struct ahg_egress *eg);

/* Aborts every transfer, joins the worker and frees the client; pending callbacks are not
 * called. NULL is ignored. Call it before ahg_loop_free(). */
void ahg_egress_free(struct ahg_egress *eg);

#endif /* AHG_EGRESS_H */
