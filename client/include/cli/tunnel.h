/*
 * cli/tunnel.h - the listener side of a tunnel: the Hybrid Connections control channel to the
 * relay (reconnects with backoff and jitter, keep-alive pings, token renewal), a byte pipe per
 * accepted WebSocket stream to the local app (with backpressure both ways), and HTTP-mode
 * requests forwarded to the local app (hc-protocol.md 1-5).
 *
 * Threading: loop thread only. Ownership: the tunnel copies every string of its options; the
 * caller frees it with cli_tunnel_free() (outside tunnel callbacks).
 */
#ifndef CLI_TUNNEL_H
#define CLI_TUNNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ahg/net.h"

struct cli_tunnel;

/* Lifecycle events reported through on_event. */
enum cli_event {
    CLI_EV_ESTABLISHED = 1, /* the control channel is up (first time or after a reconnect) */
    CLI_EV_LOST,            /* the control channel dropped; a reconnect is scheduled */
    CLI_EV_AUTH_FAILED,     /* the relay answered 401/403 ("Relay authentication failed") */
    CLI_EV_CONNECT_FAILED,  /* a connect attempt failed for another reason */
};

/* One finished request on a stream (for the console line). Strings are borrowed for the call. */
struct cli_req_log {
    const char *method;
    const char *path;
    int status; /* 0 when no response came */
    uint64_t duration_ms;
    uint64_t bytes; /* response body bytes */
};

/* Asks for a fresh listener token: for a renewal, or with rejected = true after the relay refused
 * the current one. The answer is asynchronous: the owner calls cli_tunnel_set_token() when it
 * has one (at once from inside the callback is fine too), or never when it has none; the tunnel
 * asks again later. */
typedef void (*cli_token_fn)(void *ud, struct cli_tunnel *t, bool rejected);

struct cli_tunnel_opts {
    const char *relay_endpoint; /* ws:// or wss:// URL (path ignored) */
    const char *relay_address;  /* numeric address to dial when the URL host is a name (the
                                   caller resolved it, ahg/resolve.h); NULL = the URL host */
    const char *tls_host;       /* SNI / certificate name for wss (NULL = the URL host) */
    bool insecure;              /* skip certificate checks (tests only) */
    const char *hc;             /* Hybrid Connection name */
    const char *token;          /* listener token (SharedAccessSignature ...), may be NULL */
    cli_token_fn token_cb;      /* asks for a fresh token (renewals, reconnects), may be NULL */
    void *token_ud;
    const char *local_host; /* numeric address of the local app */
    int local_port;
    const char *host_header; /* Host value sent to the local app on streams; NULL = as sent */
    uint64_t keepalive_ms;   /* ping interval; 0 = 30 s; dead after 2 intervals silent */
    uint64_t backoff_cap_ms; /* 0 = 30 s */
    void (*on_event)(void *ud, enum cli_event ev, int status, const char *detail);
    void (*on_request)(void *ud, const struct cli_req_log *rec);
    void *ud;
};

/* Starts the tunnel (connects at once). NULL with *err: AHG_EINVAL (bad options or URL),
 * AHG_ENOMEM. */
struct cli_tunnel *cli_tunnel_new(struct ahg_loop *loop, const struct cli_tunnel_opts *o, int *err);

/* Replaces the listener token (copied): used by the next connect, and sent as renewToken on an
 * open control channel; schedules the next renewal from its expiry. AHG_OK, AHG_EINVAL (NULL
 * or empty), AHG_ENOMEM. */
int cli_tunnel_set_token(struct cli_tunnel *t, const char *token);

/* Stops taking new streams and requests: closes the control channel and does not reconnect.
 * In-flight streams go on; see cli_tunnel_active(). */
void cli_tunnel_drain(struct cli_tunnel *t);

/* True while the control channel is open. */
bool cli_tunnel_connected(const struct cli_tunnel *t);

/* Streams and HTTP-mode requests in flight. */
size_t cli_tunnel_active(const struct cli_tunnel *t);

/* Number of times the control channel came up. */
unsigned cli_tunnel_established_count(const struct cli_tunnel *t);

/* Aborts everything and frees the tunnel. NULL is a no-op. */
void cli_tunnel_free(struct cli_tunnel *t);

/* The 502 body sent when the local app is unreachable, "The local service at host:port is
 * not reachable." (for tests). */
void cli_unreachable_body(const char *host, int port, char *out, size_t outsz);

#endif /* CLI_TUNNEL_H */
