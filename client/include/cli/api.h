/*
 * cli/api.h - the management API client of azhexgate (docs/state.md): create, renew and
 * delete a tunnel over ahg/egress.h (libcurl on a worker thread), so the loop never blocks.
 *
 * Threading: loop thread only. Ownership: every string is copied; results are borrowed for
 * the callback. The API key travels in X-AzHexGate-ApiKey and is never logged.
 */
#ifndef CLI_API_H
#define CLI_API_H

#include <stdbool.h>
#include <stddef.h>

struct ahg_loop;
struct cli_api;

/* A tunnel as the API returns it (strings NUL-terminated, "" when absent). */
struct cli_api_tunnel {
    char session_id[80];
    char subdomain[80];
    char public_url[512];
    char relay_endpoint[512];
    char hybrid_connection_name[260];
    char *listener_token;       /* heap; NULL when absent */
    long long token_expires_at; /* Unix seconds; 0 when absent */
    long long expires_at;       /* Unix seconds; 0 when absent */
};

/*
 * The outcome of one call, borrowed for the callback. err is AHG_OK when the server answered
 * with the expected status (tunnel set for create/renew); otherwise err is the transport error
 * of ahg/egress.h (AHG_EUNAVAIL connection refused, AHG_ENOTFOUND name not resolved,
 * AHG_ETIMEDOUT, AHG_ETLS...) with status 0, or AHG_EUPSTREAM with the server's status, error
 * code and message ("" when it sent none) and retry_after (seconds, 0 when absent).
 */
struct cli_api_result {
    int err;
    int status;
    const char *code;
    const char *message;
    const char *errmsg; /* transport error text */
    long long retry_after;
    const struct cli_api_tunnel *tunnel;
};

typedef void (*cli_api_cb)(void *ud, const struct cli_api_result *r);

struct cli_api_opts {
    const char *base_url; /* http(s)://host[:port][/prefix] */
    const char *api_key;
    const char *ca_file; /* extra CA bundle (tests); NULL = the OS store */
    unsigned timeout_ms; /* per call; 0 = 15 s */
};

/* What POST /api/tunnels asks for. */
struct cli_api_create {
    int local_port;
    const char *subdomain;         /* NULL = a random one */
    const char *basic_auth;        /* "user:pass" or NULL */
    const char *const *allow_cidr; /* NULL-terminated, may be NULL */
};

/* NULL with *err = AHG_EINVAL (bad URL, no key) or AHG_ENOMEM / AHG_EIO (worker). */
struct cli_api *cli_api_new(struct ahg_loop *loop, const struct cli_api_opts *o, int *err);

/* Each starts one call; cb runs exactly once on the loop thread unless cli_api_free() comes
 * first. AHG_OK, or the error of ahg_egress_request() (cb never runs then). */
int cli_api_create_tunnel(struct cli_api *api, const struct cli_api_create *req, cli_api_cb cb,
                          void *ud);
/* rejected: the relay refused the current token (the controller then re-reads the relay keys). */
int cli_api_renew(struct cli_api *api, const char *session_id, bool rejected, cli_api_cb cb,
                  void *ud);
int cli_api_delete(struct cli_api *api, const char *session_id, cli_api_cb cb, void *ud);

/* Calls in flight. */
unsigned cli_api_pending(const struct cli_api *api);

/* Cancels every call (no callbacks) and frees the client. NULL is a no-op. */
void cli_api_free(struct cli_api *api);

/* "2026-11-25T05:00:00Z" (also with fractions or +hh:mm) to Unix seconds; -1 when malformed. */
long long cli_api_parse_time(const char *s);

#endif /* CLI_API_H */
