/*
 * ahg/net.h - the event loop every AzHexGate process runs: one libwebsockets context, raw TCP
 * (and TLS) connections with bounded queues and backpressure, listeners, timers, and a
 * thread-safe way for worker threads to hand work to the loop.
 *
 * Why raw sockets: libwebsockets 4.1 cannot enumerate unknown HTTP headers nor forward every
 * method, so every component parses HTTP itself (ahg/http.h) and frames WebSockets itself
 * (ahg/ws.h) on top of these connections (docs/development.md, style.md 3.4).
 *
 * Threading: everything here runs on the loop thread, except ahg_loop_post() and
 * ahg_loop_stop(), which any thread (and, for ahg_loop_stop, a signal handler) may call.
 *
 * Ownership: the loop owns connections and listeners. A connection lives until its on_close
 * callback has returned; after that the pointer is dangling. Closing is always asynchronous.
 *
 * Cost per request (docs/benchmarks.md, "Profile"): the loop waits with epoll (libev, through
 * lws's evlib plugin, when libev.so.4 and libwebsockets-evlib-ev are installed; lws's poll()
 * otherwise or with AHG_EVENT_LOOP=poll); what a pass wrote to a plain connection is sent with
 * one send() at the end of the pass (no POLLOUT round trip unless the socket is full).
 */
#ifndef AHG_NET_H
#define AHG_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libwebsockets.h>

struct ahg_loop;
struct ahg_conn;
struct ahg_listener;

/* Default queue bounds of a connection. */
/* ahg_conn_writable() turns false above this many queued bytes */
#define AHG_NET_OUT_HIGH ((size_t)256 * 1024)
/* ahg_conn_write() fails beyond this */
#define AHG_NET_OUT_MAX ((size_t)16 * 1024 * 1024)
/* largest single lws_write() */
#define AHG_NET_CHUNK ((size_t)64 * 1024)
/* unconsumed input a paused connection may hold */
#define AHG_NET_RX_PENDING ((size_t)256 * 1024)

struct ahg_loop_opts {
    const char *client_ca_file; /* extra CA bundle for outgoing TLS (tests); NULL = OS store */
    bool client_insecure;       /* skip certificate verification (never in production) */
    unsigned max_fds;           /* 0 = lws default (ulimit) */
};

/* Creates the loop and its lws context. NULL on failure (logged). */
struct ahg_loop *ahg_loop_new(const struct ahg_loop_opts *opts);

/* Runs until ahg_loop_stop(), which it then consumes (the loop may be run again). */
int ahg_loop_run(struct ahg_loop *loop);

/* Runs one service pass; it may block until the next event or timer. */
int ahg_loop_run_once(struct ahg_loop *loop);

/* Asks the loop to return from ahg_loop_run(). Async-signal-safe and thread-safe. */
void ahg_loop_stop(struct ahg_loop *loop);

/* True once ahg_loop_stop() was called. */
bool ahg_loop_stopping(const struct ahg_loop *loop);

/*
 * Runs fn(arg) on the loop thread soon. Any thread may call it. AHG_ENOMEM on failure, in
 * which case fn never runs. Posted callbacks still queued at ahg_loop_free() run then.
 */
int ahg_loop_post(struct ahg_loop *loop, void (*fn)(void *arg), void *arg);

/* Closes every connection and listener and frees the loop. Loop thread, outside callbacks. */
void ahg_loop_free(struct ahg_loop *loop);

/* The lws context, for components that need lws directly. Borrowed. */
struct lws_context *ahg_loop_lws(struct ahg_loop *loop);

/* Monotonic milliseconds. */
uint64_t ahg_now_ms(void);

/* ---- timers (embeddable; cancel before freeing the struct that holds one) ---- */
struct ahg_timer {
    lws_sorted_usec_list_t sul; /* must stay first */
    struct ahg_loop *loop;
    void (*cb)(struct ahg_timer *t);
    void *ud;
    lws_usec_t due; /* when cb runs; the sul may fire earlier and is then moved here */
};

void ahg_timer_init(struct ahg_timer *t, struct ahg_loop *loop, void (*cb)(struct ahg_timer *t),
                    void *ud);
/* (Re)arms the timer to fire once after ms milliseconds. Pushing an armed timer later costs
 * O(1) (lws's timer list is sorted: inserting is O(timers), once per request was measurable). */
void ahg_timer_start(struct ahg_timer *t, uint64_t ms);
/* Disarms it; safe when not armed. */
void ahg_timer_stop(struct ahg_timer *t);

/* ---- connections ---- */

/* Why a connection ended (argument of on_close). */
enum ahg_conn_end {
    AHG_CONN_END_LOCAL = 0,   /* we closed it */
    AHG_CONN_END_PEER = 1,    /* the peer closed or reset it */
    AHG_CONN_END_CONNECT = 2, /* an outgoing connect or TLS handshake failed */
    AHG_CONN_END_ERROR = 3,   /* I/O error or a bound was exceeded */
};

struct ahg_conn_ops {
    /* Outgoing connections only: the TCP (and TLS) connection is up. */
    void (*on_connect)(struct ahg_conn *c);
    /*
     * Bytes arrived. Return how many were consumed. Returning fewer pauses reading: the rest is
     * kept (up to AHG_NET_RX_PENDING, beyond that the connection is closed with ERROR) and
     * offered again after ahg_conn_resume_read(). Must not return more than n.
     */
    size_t (*on_data)(struct ahg_conn *c, const unsigned char *p, size_t n);
    /* The output queue went from above AHG_NET_OUT_HIGH (or non-empty when drain was asked
     * for with ahg_conn_want_drain) to below it. */
    void (*on_drain)(struct ahg_conn *c);
    /* The connection is gone. Called exactly once, also for failed connects. */
    void (*on_close)(struct ahg_conn *c, enum ahg_conn_end why);
};

struct ahg_connect_opts {
    const char *address; /* numeric IPv4/IPv6 address; never a name (no DNS on the loop) */
    int port;
    bool tls;
    const char *tls_host;        /* SNI and certificate name check; NULL = address */
    bool insecure;               /* skip certificate checks for this connection (tests only) */
    unsigned connect_timeout_ms; /* 0 = 20000 */
};

/*
 * Starts an outgoing connection. The result is reported through ops: on_connect, or on_close
 * with AHG_CONN_END_CONNECT. Returns the connection, or NULL with *err set when it could not
 * even start (then no callback runs).
 */
struct ahg_conn *ahg_conn_connect(struct ahg_loop *loop, const struct ahg_connect_opts *opts,
                                  const struct ahg_conn_ops *ops, void *ud, int *err);

/* Queues bytes for sending (copied). AHG_ELIMIT beyond AHG_NET_OUT_MAX, AHG_ECLOSED after
 * close. */
int ahg_conn_write(struct ahg_conn *c, const void *p, size_t n);

/*
 * Writing without a copy: returns the size (1..want) of a contiguous writable span at the end of
 * the output queue and points *p at it; fill it and pass what was written to
 * ahg_conn_write_commit() before any other call on c. Returns 0 when c is closed, the queue is
 * at AHG_NET_OUT_MAX, or memory is short.
 */
size_t ahg_conn_write_span(struct ahg_conn *c, size_t want, unsigned char **p);
void ahg_conn_write_commit(struct ahg_conn *c, size_t n);

/* True while the output queue is below AHG_NET_OUT_HIGH: producers should stop when false and
 * wait for on_drain. */
bool ahg_conn_writable(const struct ahg_conn *c);

/* Bytes queued and not yet handed to the kernel. */
size_t ahg_conn_queued(const struct ahg_conn *c);

/* Asks for one on_drain call once everything queued has been handed to the kernel. */
void ahg_conn_want_drain(struct ahg_conn *c);

/* Stops reading from the socket (backpressure). */
void ahg_conn_pause_read(struct ahg_conn *c);

/* Resumes reading; kept input is offered again first (from a fresh loop callback). */
void ahg_conn_resume_read(struct ahg_conn *c);

/* Closes after the queued output is sent (bounded by a 10 s linger). */
void ahg_conn_close(struct ahg_conn *c);

/* Closes now, dropping queued output. */
void ahg_conn_abort(struct ahg_conn *c);

/* Replaces the callbacks and user data (protocol switch, e.g. HTTP -> byte pipe). */
void ahg_conn_set_ops(struct ahg_conn *c, const struct ahg_conn_ops *ops, void *ud);
/* Ops that discard whatever still arrives and ignore the close: for a connection whose owner
 * is gone while it closes. */
extern const struct ahg_conn_ops ahg_conn_null_ops;

void *ahg_conn_ud(const struct ahg_conn *c);

/* Peer address as text ("127.0.0.1") and port; "" / 0 if unknown. Borrowed. */
const char *ahg_conn_peer_addr(const struct ahg_conn *c);
int ahg_conn_peer_port(const struct ahg_conn *c);

/* Whether the connection runs over TLS. */
bool ahg_conn_is_tls(const struct ahg_conn *c);

/* Totals since the connection started. */
uint64_t ahg_conn_bytes_in(const struct ahg_conn *c);
uint64_t ahg_conn_bytes_out(const struct ahg_conn *c);

/* Sets an idle timeout: the connection is aborted when nothing is received or sent for ms
 * milliseconds (0 disables). */
void ahg_conn_set_idle_timeout(struct ahg_conn *c, uint64_t ms);

/* ---- listeners ---- */

struct ahg_listener_opts {
    const char *name;      /* vhost name, unique per loop */
    const char *iface;     /* numeric address to bind, NULL = 127.0.0.1 */
    int port;              /* 0 = pick a free port (see ahg_listener_port) */
    const char *cert_file; /* TLS when set (PEM); key_file required then */
    const char *key_file;
    /* A connection was accepted: set its callbacks with ahg_conn_set_ops() now, else it is
     * closed. */
    void (*on_accept)(struct ahg_listener *l, struct ahg_conn *c);
    void *ud;
    /* Called with ud when the loop frees the listener (may be NULL). */
    void (*on_free)(void *ud);
};

/* Opens a listening socket. NULL with *err on failure (AHG_EIO when the port is taken). */
struct ahg_listener *ahg_listener_new(struct ahg_loop *loop, const struct ahg_listener_opts *opts,
                                      int *err);

/* The bound port (the real one when 0 was asked for). */
int ahg_listener_port(const struct ahg_listener *l);

void *ahg_listener_ud(const struct ahg_listener *l);

/* Number of connections currently open on this loop. */
size_t ahg_loop_conn_count(const struct ahg_loop *loop);

#endif /* AHG_NET_H */
