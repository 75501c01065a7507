/*
 * ahg/wsconn.h - WebSocket connections (RFC 6455) on ahg/net.h, framed with ahg/ws.h: the
 * server side (upgrading an ahg/httpd.h request) and the client side (dialing, handshake).
 *
 * Two ways to receive data:
 *   - message mode (on_message): text/binary messages reassembled up to max_message bytes
 *     (larger ones close the connection with 1009);
 *   - frame mode (on_frame_begin/on_frame_data/on_frame_end): every data frame streamed as it
 *     arrives, unmasked, with its opcode, FIN and length - for splicing two sockets.
 * Control frames are handled here: PING is answered with PONG, PONG is reported (on_pong),
 * CLOSE is reported (on_peer_close) and, if the owner does not handle it, echoed.
 * No extensions are negotiated (no permessage-deflate).
 *
 * Threading: loop thread only. Ownership: the loop owns the connection; the pointer is valid
 * until on_close (or, for a failed client handshake, on_fail) has returned.
 */
#ifndef AHG_WSCONN_H
#define AHG_WSCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ahg/http.h"
#include "ahg/httpd.h"
#include "ahg/net.h"
#include "ahg/ws.h"

struct ahg_wsconn;

#define AHG_WSCONN_DEFAULT_MAX_MESSAGE ((uint64_t)16 * 1024 * 1024)

struct ahg_wsconn_cbs {
    /* Client: the 101 arrived and was validated; resp is borrowed for the call. */
    void (*on_open)(struct ahg_wsconn *ws, const struct ahg_http_head *resp);
    /* Client: the upgrade failed - status 0 when no HTTP answer came (connect/TLS error or
     * timeout), else the HTTP status, its reason phrase, the head (may be NULL) and up to
     * 4 KiB of body. The connection is freed after this returns; on_close does not follow. */
    void (*on_fail)(struct ahg_wsconn *ws, int status, const char *reason,
                    const struct ahg_http_head *resp, const char *body);

    /* Message mode. */
    void (*on_message)(struct ahg_wsconn *ws, enum ahg_ws_opcode op, const unsigned char *p,
                       size_t n);

    /* Frame mode (used when on_frame_begin is set; on_message is then ignored). op is the
     * frame's own opcode (AHG_WS_CONT for continuations). */
    void (*on_frame_begin)(struct ahg_wsconn *ws, enum ahg_ws_opcode op, bool fin, uint64_t len);
    void (*on_frame_data)(struct ahg_wsconn *ws, const unsigned char *p, size_t n);
    void (*on_frame_end)(struct ahg_wsconn *ws);

    /* A PONG arrived (solicited or not). */
    void (*on_pong)(struct ahg_wsconn *ws, const unsigned char *p, size_t n);
    /* The peer sent CLOSE (code 1005 when it carried none). If set, the owner must answer with
     * ahg_wsconn_close() (e.g. after forwarding it); if NULL the close is echoed at once. */
    void (*on_peer_close)(struct ahg_wsconn *ws, uint16_t code, const char *reason, size_t rlen);
    /* Output drained below the high mark. */
    void (*on_drain)(struct ahg_wsconn *ws);
    /* The connection is gone. code: the close code received or sent, 1006 when it ended
     * without a close handshake. */
    void (*on_close)(struct ahg_wsconn *ws, uint16_t code);
};

/* ---- server side ---- */

/*
 * Checks that a request is a valid WebSocket upgrade (GET, HTTP/1.1, Upgrade: websocket,
 * Connection: upgrade, Sec-WebSocket-Version: 13, a valid Sec-WebSocket-Key). Returns 0, or
 * the status to answer: 400 for a malformed upgrade, 426 for a wrong version.
 */
int ahg_wsconn_check_upgrade(const struct ahg_http_head *head);

/* True if the request asks for a WebSocket upgrade at all (Upgrade: websocket). */
bool ahg_wsconn_is_upgrade(const struct ahg_http_head *head);

/*
 * Answers the upgrade with 101 (echoing subprotocol when not NULL, plus extra fields given as
 * a NULL-terminated name/value list) and takes over the connection. The request is gone
 * after this call. NULL with *err: AHG_EINVAL (not a valid upgrade - nothing was sent) or
 * AHG_ENOMEM.
 */
struct ahg_wsconn *ahg_wsconn_accept(struct ahg_httpd_req *r, const char *subprotocol,
                                     const char *const *extra_fields,
                                     const struct ahg_wsconn_cbs *cbs, void *ud, int *err);

/* ---- client side ---- */

struct ahg_wsconn_client_opts {
    struct ahg_connect_opts conn;  /* numeric address, port, tls, tls_host */
    const char *host;              /* Host header; NULL = address:port */
    const char *target;            /* request-target, e.g. "/$hc/hc1?sb-hc-action=listen" */
    const char *subprotocol;       /* Sec-WebSocket-Protocol to ask for, or NULL */
    const char *const *headers;    /* extra fields, NULL-terminated name/value list, or NULL */
    uint64_t handshake_timeout_ms; /* 0 = 20 s, from dial to 101 */
    uint64_t max_message;          /* message mode cap; 0 = AHG_WSCONN_DEFAULT_MAX_MESSAGE */
};

/* Dials and performs the handshake; the outcome arrives through on_open or on_fail. NULL with
 * *err when it could not start (no callback runs then). */
struct ahg_wsconn *ahg_wsconn_connect(struct ahg_loop *loop,
                                      const struct ahg_wsconn_client_opts *opts,
                                      const struct ahg_wsconn_cbs *cbs, void *ud, int *err);

/* Splits a ws:// or wss:// URL into opts fields (address must be numeric in the URL or is
 * left for the caller to resolve). Strings point into buf (size bufsz). */
int ahg_wsconn_parse_url(const char *url, struct ahg_wsconn_client_opts *opts, char *buf,
                         size_t bufsz);

/* ---- both sides ---- */

/* One whole message in one frame. AHG_ECLOSED after close, AHG_ELIMIT beyond the output
 * bound. */
int ahg_wsconn_send(struct ahg_wsconn *ws, enum ahg_ws_opcode op, const void *p, size_t n);

/* Streaming: a frame header announcing len payload bytes, then exactly len bytes through
 * ahg_wsconn_send_data() (masked here on the client side). */
int ahg_wsconn_send_frame(struct ahg_wsconn *ws, enum ahg_ws_opcode op, bool fin, uint64_t len);
int ahg_wsconn_send_data(struct ahg_wsconn *ws, const void *p, size_t n);

int ahg_wsconn_ping(struct ahg_wsconn *ws, const void *p, size_t n);
int ahg_wsconn_pong(struct ahg_wsconn *ws, const void *p, size_t n); /* unsolicited keep-alive */

/* Starts (or answers) the closing handshake: sends CLOSE(code, reason) once; the TCP
 * connection closes when the peer's CLOSE arrives (or was already received), or after 5 s. */
int ahg_wsconn_close(struct ahg_wsconn *ws, uint16_t code, const char *reason);

/* Drops the connection at once (on_close with 1006). */
void ahg_wsconn_abort(struct ahg_wsconn *ws);

bool ahg_wsconn_writable(const struct ahg_wsconn *ws);
void ahg_wsconn_pause_read(struct ahg_wsconn *ws);
void ahg_wsconn_resume_read(struct ahg_wsconn *ws);

void ahg_wsconn_set_cbs(struct ahg_wsconn *ws, const struct ahg_wsconn_cbs *cbs, void *ud);
void *ahg_wsconn_ud(const struct ahg_wsconn *ws);
struct ahg_conn *ahg_wsconn_conn(const struct ahg_wsconn *ws);
/* The subprotocol agreed on ("" when none). */
const char *ahg_wsconn_subprotocol(const struct ahg_wsconn *ws);
/* True once a CLOSE was sent or received. */
bool ahg_wsconn_closing(const struct ahg_wsconn *ws);

#endif /* AHG_WSCONN_H */
