/*
 * relay_int.h - internals shared by relay.c (control channels, WebSocket connect/accept/splice,
 * routing) and relay_http.c (HTTP mode), plus the pure helpers the unit tests exercise.
 *
 * Object model (all on the loop thread; hc-protocol.md sections 1-5 and 14):
 *
 *   struct emu_relay   e->relay: the id table of pending rendezvous/requests, deferred calls
 *   struct emu_rhc     hc->relay: the HC's listeners, pending connects, splices, HTTP requests
 *   struct emu_lsn     one listener control channel (owned by its WebSocket)
 *   struct emu_rdv     one pending WebSocket connect (sender held before its 101)
 *   struct emu_pipe    two spliced WebSockets (sender and listener rendezvous)
 *   struct emu_hreq    one HTTP-mode request
 *
 * Lifetimes: an emu_lsn and an emu_pipe live until their WebSockets' on_close; an emu_rdv lives
 * until its rendezvous window ends; an emu_hreq until its sender exchange is over and its
 * rendezvous socket closed. When an HC is deleted its emu_rhc is freed and every object that
 * outlives it has its rh pointer cleared first.
 */
#ifndef EMU_RELAY_INT_H
#define EMU_RELAY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ahg/buf.h"
#include "ahg/hcmsg.h"
#include "ahg/http.h"
#include "ahg/httpd.h"
#include "ahg/list.h"
#include "ahg/wsconn.h"
#include "emu_int.h"

#define EMU_RELAY_CTL_MAX   ((size_t)64 * 1024) /* control message / inline request bound */
#define EMU_RELAY_ID_MAX    ((size_t)128)       /* rendezvous / request ids incl. NUL */
#define EMU_RELAY_TOKEN_MAX 8192u               /* a token, decoded */
/* backlog of a control channel not reading */
#define EMU_RELAY_CTLQ_MAX ((size_t)4 * 1024 * 1024)
#define EMU_RELAY_DESC_MAX 512u

enum emu_relay_action {
    EMU_RELAY_ACT_BAD = -1,
    EMU_RELAY_ACT_LISTEN = 0,
    EMU_RELAY_ACT_CONNECT,
    EMU_RELAY_ACT_ACCEPT,
    EMU_RELAY_ACT_REQUEST,
};

/* Entry of the id table (embedded in emu_rdv and emu_hreq). */
enum { EMU_IDK_RDV = 1, EMU_IDK_HREQ = 2 };
struct emu_idnode {
    struct emu_idnode *next;
    int kind;
    bool linked;
    char id[EMU_RELAY_ID_MAX];
};

struct emu_defer;

struct emu_relay {
    struct emu *e;
    struct emu_idnode **tab;
    size_t tabsz; /* power of two */
    size_t tabn;
    struct ahg_list defers; /* struct emu_defer: emu_latency_defer() calls not yet run */
    uint64_t rng;
};

struct emu_lsn;
struct emu_rdv;
struct emu_pipe;
struct emu_hreq;

struct emu_rhc {
    struct emu_relay *rl;
    struct emu_hc *hc;
    struct ahg_list lsns;  /* struct emu_lsn, by link */
    struct ahg_list rdvs;  /* struct emu_rdv */
    struct ahg_list pipes; /* struct emu_pipe */
    struct ahg_list hreqs; /* struct emu_hreq, by hlink */
};

/* Reads control messages and body messages from a listener-side socket (frame mode). */
enum emu_rd_state { EMU_RD_IDLE = 0, EMU_RD_TEXT, EMU_RD_BODY, EMU_RD_SKIP, EMU_RD_DEAD };
struct emu_reader {
    enum emu_rd_state st;
    struct ahg_buf text;
    struct emu_hreq *sink; /* EMU_RD_BODY: the request whose response body this is */
    bool fin;              /* the current frame ends its message */
    bool first;            /* the next body frame is the message's first */
    bool stray_ok;         /* one empty binary message may follow (hyco body:false) */
    bool await_body;       /* a response said body:true; its binary message is next */
};

struct emu_ctlq; /* queued control-channel output */

struct emu_lsn {
    struct emu_relay *rl;
    struct emu_rhc *rh;        /* NULL once detached */
    struct ahg_list_node link; /* on rh->lsns */
    struct ahg_wsconn *ws;
    char tracking[EMU_RELAY_ID_MAX];
    char path[EMU_HC_NAME_MAX];
    char host[256]; /* Host of the listen request: an audience host for renewToken */
    struct ahg_timer expiry;
    struct emu_reader rd;
    struct emu_ctlq *q_head, *q_tail;
    size_t q_bytes;
    struct ahg_list hreqs;       /* struct emu_hreq (by llink) delivered here, response due */
    struct emu_hreq *paused_for; /* reading paused until this sender drains */
    bool closing;
};

/* ---- relay.c: shared services ---- */

struct emu_relay *emu_relay_of(struct emu *e);
struct emu_rhc *emu_relay_rhc(struct emu_relay *rl, struct emu_hc *hc); /* creates */

/* Id table. */
void emu_relay_id_new(struct emu_relay *rl, const char *base, char out[EMU_RELAY_ID_MAX]);
int emu_relay_id_add(struct emu_relay *rl, struct emu_idnode *n);
void emu_relay_id_del(struct emu_relay *rl, struct emu_idnode *n);
struct emu_idnode *emu_relay_id_find(struct emu_relay *rl, const char *id);

/* Deferred calls (latency model). fn(obj) runs after ms (at once when 0). The returned handle
 * is cancelled with emu_relay_defer_cancel() when obj goes away first. NULL when run at once or
 * on allocation failure (then fn ran at once). */
struct emu_defer *emu_relay_defer(struct emu_relay *rl, unsigned ms, void (*fn)(void *obj),
                                  void *obj);
void emu_relay_defer_cancel(struct emu_defer *d);

/* Picks a listener of rh at random, honouring Microsoft-Relay-AllowedListeners /
 * DisallowedListeners in head (may be NULL). *filtered tells whether listeners exist but none
 * matched the criteria. */
struct emu_lsn *emu_relay_pick(struct emu_rhc *rh, const struct ahg_http_head *head,
                               bool *filtered);

/* emu_relay_pick() for a sender's request r on entity path dpath; when no listener fits, r is
 * answered with the service's 404 text and NULL is returned. rh may be NULL (no listeners). */
struct emu_lsn *emu_relay_pick_or_fail(struct emu *e, struct emu_rhc *rh, struct ahg_httpd_req *r,
                                       const char *dpath);

/* Queues a text message (and, when with_body, one binary message) on a control channel, in
 * order, never interleaved. AHG_ELIMIT when the channel's backlog is full, AHG_ECLOSED. */
int emu_relay_ctl_send(struct emu_lsn *l, const char *json, size_t jlen, const void *body,
                       size_t blen, bool with_body);

/* Answers r with status and a reason phrase made of msg plus the tracking suffix. */
void emu_relay_fail(struct emu *e, struct ahg_httpd_req *r, int status, const char *msg,
                    const char *path);
/* Same with a ready description (used verbatim as the reason phrase and body). */
void emu_relay_respond_desc(struct ahg_httpd_req *r, int status, const char *desc);

/* The token of a request: sb-hc-token query (form-decoded), else ServiceBusAuthorization,
 * else (allow_authorization) Authorization. Returns the source (1 query, 2 SBA, 3
 * Authorization) or 0 when none; out gets the token ("" when none). AHG_ELIMIT when the token
 * does not fit (-1 returned, treat as invalid). */
int emu_relay_token(const struct ahg_http_head *head, const char *query, bool allow_authorization,
                    char *out, size_t outsz);

/* Builds "<base><path_raw>?<query minus sb-hc-* pairs>&sb-hc-action=<action>&sb-hc-id=<id>"
 * (path_raw starts with '/', query may be NULL or ""). AHG_ELIMIT when it does not fit. */
int emu_relay_address(const char *base, const char *path_raw, const char *query, const char *action,
                      const char *id, char *out, size_t outsz);
/* "/$hc/" + the HC name percent-encoded segment by segment. */
int emu_relay_hc_path(const char *name, char *out, size_t outsz);

/* Classifies sb-hc-action (NULL/absent = connect, hc-protocol.md section 14). */
enum emu_relay_action emu_relay_action_parse(const char *query);

/* True when tracking (a listener's id) passes the Allowed/Disallowed header values (each may
 * be NULL = no restriction). */
bool emu_relay_listener_allowed(const char *tracking, const char *allowed, const char *disallowed);

/* True when a sender-supplied sb-hc-id may prefix our ids (<= 64 chars of [A-Za-z0-9._-]). */
bool emu_relay_id_base_ok(const char *s);

/* The peer address of c for remoteEndpoint: an IPv4-mapped IPv6 address ("::ffff:1.2.3.4") is
 * given as plain IPv4. NULL when unknown. */
const char *emu_relay_peer_addr(struct ahg_conn *c);

/* Percent-decodes the path after its leading '/' (or after "/$hc/") into out. */
int emu_relay_decode_path(const char *raw, char *out, size_t outsz);

/* ---- relay_http.c ---- */

/* HTTP mode request on /{hc}[/...]: dpath is the decoded path without its leading '/'. */
void emu_relay_http_handle(struct emu_relay *rl, struct ahg_httpd_req *r, const char *dpath);
/* A listener dialed the rendezvous address of h (sb-hc-action=request). */
void emu_relay_http_dial(struct emu_relay *rl, struct emu_hreq *h, struct ahg_httpd_req *r);
/* A `response` arrived on control channel l. Returns true when a body message follows that
 * the reader must hand to the returned request (*sink, NULL = skip it). */
bool emu_relay_http_ctl_response(struct emu_lsn *l, struct ahg_hcmsg *m, struct emu_hreq **sink);
/* Body message frames from a listener socket for h (src is the socket, l the control channel or
 * NULL). */
void emu_relay_http_body_begin(struct emu_hreq *h, struct ahg_wsconn *src, struct emu_lsn *l,
                               bool fin, uint64_t len);
void emu_relay_http_body_data(struct emu_hreq *h, const unsigned char *p, size_t n);
void emu_relay_http_body_end(struct emu_hreq *h);
/* The control channel of h went away (listener dropped) or was detached. */
void emu_relay_http_listener_gone(struct emu_hreq *h);
/* The same for every request of l->hreqs, which it empties. */
void emu_relay_http_listener_gone_all(struct emu_lsn *l);
/* The HC of rh is being deleted: each request of rh->hreqs is told, which empties the list. */
void emu_relay_http_hc_deleted(struct emu_rhc *rh);
/* A control channel stopped reading for h: resume it (h is done or gone). */
void emu_relay_lsn_resume(struct emu_lsn *l);

/* Pure helpers (unit-tested). */

/* Appends the sender's fields to m as requestHeaders: drops hop-by-hop fields, Host,
 * Content-Length, TE, Trailer, Transfer-Encoding, Upgrade, ServiceBusAuthorization and, when
 * drop_authorization, Authorization; adds/annotates Via with via_host. */
int emu_relay_request_headers(const struct ahg_http_head *h, bool drop_authorization,
                              const char *via_host, struct ahg_hcmsg *m);
/* Builds the sender's response head from a `response` message (status, reason, headers minus
 * hop-by-hop and framing, Via). NULL on error. *hint_len gets a valid Content-Length the
 * listener announced, or -1. */
struct ahg_http_head *emu_relay_response_head(const struct ahg_hcmsg *m, const char *via_host,
                                              int64_t *hint_len);
/* Inline delivery when the body has a known length and JSON + body fit 64 KiB. */
bool emu_relay_fits_inline(size_t json_len, enum ahg_http_framing framing, uint64_t content_length);

/* Takes the request out of *slot (NULL there afterwards) and detaches its callbacks. */
struct ahg_httpd_req *emu_take_req(struct ahg_httpd_req **slot);

#endif /* EMU_RELAY_INT_H */
