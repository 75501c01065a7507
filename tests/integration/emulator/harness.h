/*
 * harness.h - integration harness for the emulator's relay data plane: the emulator runs
 * in-process on the test's loop (ports 0 on 127.0.0.1), and the test drives WebSocket and
 * HTTP/1.1 clients against it over real sockets, running the loop until a condition holds.
 */
#ifndef EMU_IT_HARNESS_H
#define EMU_IT_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ahg/http.h"
#include "ahg/net.h"
#include "ahg/wsconn.h"
#include "emu_int.h"

#define TH_KEY  "XmNd2Wq7Lr4Tz9Pb1Vc6Ys3Hf8Jk0Ga5Ue2Io7Rw4Q="
#define TH_RULE "RootManageSharedAccessKey"
#define TH_NS   "ahg-it"
#define TH_HOST "ahg-it.servicebus.windows.net"

struct th {
    struct ahg_loop *loop;
    struct ahg_config *cfg;
    struct emu *e;
    int port;
    bool tls; /* the relay port speaks TLS (emulator.relay.cert given) */
    struct ahg_timer tick;
};

/* Starts the emulator with HC "hc1" (auth), "open" (noauth), the root key TH_KEY, every port 0,
 * plus extra flags (NULL-terminated, may be NULL). */
void th_start(struct th *t, const char *const *extra);
/* Frees the loop (closing everything) and the emulator. */
void th_stop(struct th *t);
/* Runs the loop until cond(arg) is true or ms passed; returns cond(arg). */
bool th_wait(struct th *t, bool (*cond)(void *arg), void *arg, unsigned ms);
/* Runs the loop for ms. */
void th_run(struct th *t, unsigned ms);
/* A SAS token for http://TH_HOST/<entity>, rule/key (NULL = root), valid secs from now. */
void th_token(const char *entity, const char *rule, const char *key, long long secs, char *out,
              size_t outsz);

/* ---- WebSocket client ---- */

struct tmsg {
    struct tmsg *next;
    enum ahg_ws_opcode op;
    bool fin; /* frame mode: the frame's FIN */
    size_t len;
    unsigned char *data;
};

struct tws {
    struct th *t;
    struct ahg_wsconn *ws;
    bool frames; /* record frames instead of messages */
    bool open, failed, closed;
    int fail_status;
    char fail_reason[600];
    uint16_t close_code;
    char proto[64];
    struct tmsg *head, *tail;
    size_t nmsgs;
    struct tmsg *cur; /* frame mode: the frame being received */
    unsigned pongs;
    uint64_t bytes;  /* payload received */
    bool count_only; /* do not keep payloads (large transfers), only count bytes */
    bool hold_close; /* answer a peer's CLOSE only when the test says so */
    bool peer_closed;
    uint16_t peer_code;
    char peer_reason[128];
};

/* Dials 127.0.0.1:<relay port><target>. headers: NULL-terminated name/value list or NULL. */
void tws_connect(struct th *t, struct tws *c, const char *target, const char *const *headers,
                 const char *subprotocol);
/* Dials a ws:// or wss:// URL (rendezvous addresses), with extra headers (may be NULL). */
void tws_connect_url(struct th *t, struct tws *c, const char *url, const char *subprotocol,
                     const char *const *headers);
bool tws_wait_open(struct tws *c, unsigned ms);  /* true when open, false on failure/timeout */
bool tws_wait_fail(struct tws *c, unsigned ms);  /* true when the upgrade failed */
bool tws_wait_close(struct tws *c, unsigned ms); /* true when the connection is gone */
/* Next queued message (frame in frame mode) within ms, or NULL; free with tmsg_free(). */
struct tmsg *tws_next(struct tws *c, unsigned ms);
void tmsg_free(struct tmsg *m);
/* Frees queued messages (after the connection is gone, or aborts it first). */
void tws_free(struct tws *c);

/* ---- HTTP client ---- */

struct thttp {
    struct th *t;
    struct ahg_conn *c;
    struct ahg_http_parser *p;
    unsigned char *req;
    size_t req_len;
    bool connected, closed, done, failed;
    struct ahg_http_head *head;
    unsigned char *body;
    size_t blen, bcap;
    bool paused;  /* the test stopped reading */
    uint64_t got; /* body bytes received (also when count_only) */
    bool count_only;
};

/* Opens a connection and sends raw (copied) once connected; parses the response to method. */
void thttp_send(struct th *t, struct thttp *h, const char *method, const void *raw, size_t len);
bool thttp_wait(struct thttp *h, unsigned ms); /* true once the response is complete */
/* Sends another request on the same (keep-alive) connection once the last response is done. */
void thttp_again(struct thttp *h, const char *method, const void *raw, size_t len);
void thttp_free(struct thttp *h);

/* A field of a parsed head, or "" when absent. */
const char *th_field(const struct ahg_http_head *h, const char *name);

#endif /* EMU_IT_HARNESS_H */
