/*
 * ahg/httpd.h - an HTTP/1.1 server on ahg/net.h connections, parsed with ahg/http.h.
 *
 * Streaming both ways with backpressure: request bodies are handed over as they arrive and
 * reading pauses on request; responses are written piece by piece and report when the
 * connection can take more. Keep-alive and pipelining (one request at a time is answered;
 * later ones wait unread), Expect: 100-continue, header and idle timeouts (slowloris -> 408),
 * size limits (414, 431, 413), and errors answered with a short text body that says what
 * happened. A request can take over its connection (WebSocket upgrade, byte pipe) with
 * ahg_httpd_req_hijack().
 *
 * Threading: loop thread only. Ownership: the server owns every struct ahg_httpd_req; a
 * request stays valid until its on_finish callback has returned (every request gets exactly
 * one on_finish, unless it was hijacked).
 */
#ifndef AHG_HTTPD_H
#define AHG_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ahg/http.h"
#include "ahg/net.h"

struct ahg_httpd;
struct ahg_httpd_req;

struct ahg_httpd_opts {
    const char *name;      /* listener name, unique per loop */
    const char *iface;     /* numeric bind address; NULL = 127.0.0.1 */
    int port;              /* 0 = any free port */
    const char *cert_file; /* TLS when set */
    const char *key_file;
    struct ahg_http_limits limits; /* zeroed = defaults (32 KiB head, 8 KiB line, 256 fields) */
    uint64_t max_body;             /* default request body cap (0 = unlimited); 413 beyond */
    uint64_t header_timeout_ms;    /* whole head must arrive within this; 0 = 10 s; -> 408 */
    uint64_t idle_timeout_ms;      /* keep-alive idle between requests; 0 = 75 s */
    /* A request head arrived. Inspect it, set callbacks, answer now or later. */
    void (*on_request)(struct ahg_httpd_req *r);
    void *ud;
    /* Called with ud when the server is freed (with its loop), e.g. to free ud. May be NULL. */
    void (*on_free)(void *ud);
    /* A request refused before it became a request (malformed or oversized head, smuggling
     * shapes, header timeout): the status sent (400, 408, 414, 431, 501, 503), its reason and
     * the peer's address. For logs and metrics; the connection is closing. May be NULL. */
    void (*on_reject)(void *ud, int status, const char *reason, const char *peer);
};

/* Per-request callbacks (all optional). */
struct ahg_httpd_req_cbs {
    /* Decoded request body bytes. Call ahg_httpd_req_pause_body() to stop reading. */
    void (*on_body)(struct ahg_httpd_req *r, const char *p, size_t n);
    /* The request body is complete (also called at once for requests without a body). */
    void (*on_body_end)(struct ahg_httpd_req *r);
    /* The response side can take more data (after ahg_httpd_resp_writable() was false). */
    void (*on_drain)(struct ahg_httpd_req *r);
    /* The exchange is over: completed is true when the response was fully sent. After this
     * returns the request is freed. */
    void (*on_finish)(struct ahg_httpd_req *r, bool completed);
};

/* Starts a server. NULL with *err on failure. Lives as long as the loop. */
struct ahg_httpd *ahg_httpd_new(struct ahg_loop *loop, const struct ahg_httpd_opts *opts, int *err);

int ahg_httpd_port(const struct ahg_httpd *s);
void *ahg_httpd_ud(const struct ahg_httpd *s);
struct ahg_loop *ahg_httpd_loop(const struct ahg_httpd *s);

/* ---- the request ---- */

const struct ahg_http_head *ahg_httpd_req_head(const struct ahg_httpd_req *r);
struct ahg_httpd *ahg_httpd_req_server(const struct ahg_httpd_req *r);
/* The connection (borrowed), e.g. for the peer address or TLS state. */
struct ahg_conn *ahg_httpd_req_conn(const struct ahg_httpd_req *r);
/* A request id (16 hex chars) for logs and X-Request-Id. */
const char *ahg_httpd_req_id(const struct ahg_httpd_req *r);
/* Path part of the target (before '?'), NUL-terminated, borrowed. */
const char *ahg_httpd_req_path(const struct ahg_httpd_req *r);
/* Query part (after '?', without it), "" when none. */
const char *ahg_httpd_req_query(const struct ahg_httpd_req *r);
/* Monotonic ms when the head was complete. */
uint64_t ahg_httpd_req_start_ms(const struct ahg_httpd_req *r);

void ahg_httpd_req_set_cbs(struct ahg_httpd_req *r, const struct ahg_httpd_req_cbs *cbs, void *ud);
void *ahg_httpd_req_ud(const struct ahg_httpd_req *r);

/* Request body cap for this request (overrides opts.max_body); 413 when exceeded. */
void ahg_httpd_req_set_max_body(struct ahg_httpd_req *r, uint64_t max);
void ahg_httpd_req_pause_body(struct ahg_httpd_req *r);
void ahg_httpd_req_resume_body(struct ahg_httpd_req *r);
/* True once the whole request body was received. */
bool ahg_httpd_req_body_done(const struct ahg_httpd_req *r);
uint64_t ahg_httpd_req_body_bytes(const struct ahg_httpd_req *r);

/* ---- the response ---- */

#define AHG_HTTPD_LEN_CHUNKED (-1) /* chunked on HTTP/1.1, close-delimited on 1.0 */

/*
 * Sends the response head. head is consumed (freed by the server, also on error); its status,
 * reason and fields are sent as given, except that the server removes any Content-Length,
 * Transfer-Encoding and Connection fields and writes its own from content_length (bytes, or
 * AHG_HTTPD_LEN_CHUNKED) and the keep-alive decision. A response to HEAD and 1xx/204/304
 * responses carry no body. Returns AHG_OK, AHG_EINVAL when a response was already begun,
 * AHG_ECLOSED when the client is gone, AHG_ELIMIT/AHG_ENOMEM.
 */
int ahg_httpd_resp_begin(struct ahg_httpd_req *r, struct ahg_http_head *head,
                         int64_t content_length);

/* Body bytes. AHG_ELIMIT when they exceed the announced Content-Length or the connection's
 * output bound; check ahg_httpd_resp_writable() and wait for on_drain. */
int ahg_httpd_resp_write(struct ahg_httpd_req *r, const void *p, size_t n);
bool ahg_httpd_resp_writable(const struct ahg_httpd_req *r);

/* Ends the response (the terminating chunk for chunked). A Content-Length response that is
 * short of its length is aborted (the connection closes). */
int ahg_httpd_resp_end(struct ahg_httpd_req *r);

/* Aborts the exchange: closes the connection now. on_finish(completed=false) follows. */
void ahg_httpd_resp_abort(struct ahg_httpd_req *r);

/* True once ahg_httpd_resp_begin() succeeded. */
bool ahg_httpd_resp_started(const struct ahg_httpd_req *r);

/* Whole response in one call: status, optional content type (NULL = none), body. Extra
 * fields may be given as a NULL-terminated list of name, value pairs (may be NULL). */
int ahg_httpd_respond(struct ahg_httpd_req *r, int status, const char *content_type,
                      const void *body, size_t len, const char *const *extra_fields);

/* An error answer: "<status> <reason>: <message>\n" as text/plain, or, when json is true,
 * {"error":{"code":code,"message":message}}. Closes the connection afterwards when the
 * request body was not read. */
int ahg_httpd_respond_error(struct ahg_httpd_req *r, int status, const char *code,
                            const char *message, bool json);

/*
 * Takes over the connection (WebSocket upgrade, tunnel byte pipe). Must be called before any
 * response was begun and when the request has no body. Bytes that followed the head are
 * offered to the new ops' on_data first. The request is freed without on_finish; the
 * server no longer knows the connection. Returns the connection, or NULL (AHG_EINVAL cases).
 */
struct ahg_conn *ahg_httpd_req_hijack(struct ahg_httpd_req *r, const struct ahg_conn_ops *ops,
                                      void *ud);

/* Formats the current time as an IMF-fixdate (Date header) into out (>= 30 bytes). */
void ahg_httpd_date(char *out, size_t outsz);

#endif /* AHG_HTTPD_H */
