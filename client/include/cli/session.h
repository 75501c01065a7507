/*
 * cli/session.h - one tunnel session against the management API: create the tunnel
 * (POST /api/tunnels), resolve the relay host off the loop, run the listener (cli/tunnel.h),
 * renew the listener token through the API (and create a new tunnel when the server forgot the
 * session), then drain and release it (DELETE). Used by `azhexgate start` and by
 * azhexgate-sidecar; what to do when a step fails (exit, or retry later) is the owner's call.
 *
 * Also runs a direct session (a relay endpoint, Hybrid Connection and token given, no API).
 *
 * Threading: loop thread only. Ownership: every string of the options is copied; results are
 * borrowed for the callback.
 */
#ifndef CLI_SESSION_H
#define CLI_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli/api.h"
#include "cli/tunnel.h"

struct ahg_loop;
struct cli_session;

struct cli_session_opts {
    /* management API (api_url NULL or "" = a direct session, below) */
    const char *api_url;
    const char *api_key;
    const char *api_ca_file;
    const char *subdomain;         /* NULL = a random one */
    const char *basic_auth;        /* "user:pass" or NULL */
    const char *const *allow_cidr; /* NULL-terminated, may be NULL */
    /* direct session */
    const char *relay_endpoint;
    const char *hybrid_connection;
    const char *listener_token;
    /* the listener */
    bool relay_insecure;
    const char *local_host; /* numeric address of the local app */
    int local_port;
    const char *host_header; /* NULL = as sent */
    uint64_t keepalive_ms;   /* 0 = the tunnel's default */
    /* Callbacks (all optional). */
    /* The API created the tunnel (also again after the server forgot the session). */
    void (*on_created)(void *ud, const struct cli_api_tunnel *t);
    /* POST /api/tunnels failed; cli_session_start() tries again. */
    void (*on_create_failed)(void *ud, const struct cli_api_result *r);
    /* The relay endpoint is unusable: err AHG_EINVAL (not a ws/wss URL), AHG_ENOTFOUND...
     * (the host did not resolve), or the listener could not start. cli_session_start() tries
     * again (the same tunnel). */
    void (*on_relay_failed)(void *ud, int err, const char *what);
    /* Listener events and finished requests, as cli/tunnel.h reports them (the session itself
     * logs CLI_EV_LOST and CLI_EV_CONNECT_FAILED as warnings). */
    void (*on_event)(void *ud, enum cli_event ev, int status, const char *detail);
    void (*on_request)(void *ud, const struct cli_req_log *rec);
    void *ud;
};

/* NULL with *err: AHG_EINVAL (no local port, API mode without a key, direct session without
 * an endpoint or Hybrid Connection, an API URL that is not http(s)), AHG_ENOMEM, AHG_EIO.
 * Nothing starts before cli_session_start(). */
struct cli_session *cli_session_new(struct ahg_loop *loop, const struct cli_session_opts *o,
                                    int *err);

/* Creates the tunnel (API mode), or connects the relay (direct mode, or API mode once the
 * tunnel exists). Call it again after a failure callback. AHG_OK, AHG_EAGAIN (a step is under
 * way or the listener runs), or the error of the API call (no callback then). */
int cli_session_start(struct cli_session *s);

/* True while the relay control channel is open. */
bool cli_session_connected(const struct cli_session *s);
/* Streams and HTTP-mode requests in flight. */
size_t cli_session_active(const struct cli_session *s);
/* The session id and public URL ("" before creation and in direct mode). */
const char *cli_session_id(const struct cli_session *s);
const char *cli_session_public_url(const struct cli_session *s);

/*
 * The way out: stops taking new streams, runs the loop until the in-flight ones finished or
 * drain_ms passed, then releases the tunnel (DELETE, waiting at most release_ms). Call after
 * the loop returned from ahg_loop_run(). Returns true when the tunnel was released (or there
 * was none to release).
 */
bool cli_session_close(struct cli_session *s, uint64_t drain_ms, uint64_t release_ms);

/* Aborts everything and frees the session. NULL is a no-op. A relay host lookup may still be
 * pending: call ahg_resolve_shutdown(loop) first. */
void cli_session_free(struct cli_session *s);

/* Writes the access log record (ahg/log.h) of one finished request; tunnel_id may be NULL. */
void cli_req_log_access(const struct cli_req_log *r, const char *tunnel_id);

/* The answer of cli_probe_local(): reachable is true when the TCP connect succeeded. */
typedef void (*cli_probe_cb)(void *ud, bool reachable);

/* Checks with one TCP connect (then closed at once) whether the local app at host (numeric):port
 * accepts connections. cb runs exactly once on the loop thread (also when the loop is freed
 * first), unless this returns an error: AHG_EINVAL, AHG_ENOMEM, or the error of
 * ahg_conn_connect(). timeout_ms 0 = the connect default. */
int cli_probe_local(struct ahg_loop *loop, const char *host, int port, unsigned timeout_ms,
                    cli_probe_cb cb, void *ud);

#endif /* CLI_SESSION_H */
