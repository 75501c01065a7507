/*
 * cli_int.h - internals shared by the client library's files.
 */
#ifndef CLI_INT_H
#define CLI_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ahg/hcmsg.h"
#include "ahg/net.h"
#include "ahg/wsconn.h"
#include "cli/tunnel.h"

struct cli_stream;
struct cli_hreq;

struct cli_tunnel {
    struct ahg_loop *loop;
    struct cli_tunnel_opts o; /* string members point at the copies below */
    char *endpoint, *hc, *local_host, *tls_host, *token, *relay_address, *host_header;
    char relay_host[256]; /* host name of relay_endpoint */
    struct ahg_wsconn *ctrl;
    bool ctrl_open;
    unsigned ctrl_gen; /* bumped when the control channel goes away */
    bool draining;
    unsigned attempt;
    unsigned established;
    uint64_t last_rx;
    struct ahg_timer reconnect_timer, ka_timer, renew_timer;
    struct cli_stream *streams;
    size_t nstreams;
    struct cli_hreq *hreqs;
    size_t nhreqs;
    struct cli_hreq *ctrl_body_wait; /* a control-channel request whose body comes next */
};

extern const struct ahg_wsconn_cbs cli_null_ws_cbs;

/* Rendezvous dials: a URL host equal to the relay endpoint's host name is dialed at the
 * resolved relay_address; tls_host (when set) replaces the certificate name on wss. */
void cli_tunnel_dial_fixup(const struct cli_tunnel *t, struct ahg_wsconn_client_opts *wo);

void cli_tunnel_log_request(struct cli_tunnel *t, const struct cli_req_log *rec);

/* start.c: `azhexgate start` with a loaded configuration; returns the exit code. */
struct ahg_config;
int cli_run_start(const struct ahg_config *cfg);
/* `azhexgate demo`: serves the demo app (cli/demo.h) until Ctrl+C; the exit code. */
int cli_run_demo(const struct ahg_config *cfg);

/* stream.c: an accepted WebSocket stream piped to the local app. */
void cli_stream_accept(struct cli_tunnel *t, const struct ahg_hcmsg *m);
void cli_stream_free_all(struct cli_tunnel *t);
/* Closes the streams that have no request in flight (used while draining). */
void cli_stream_drain(struct cli_tunnel *t);

/* httpreq.c: HTTP-mode requests. */
void cli_hreq_from_ctrl(struct cli_tunnel *t, const struct ahg_hcmsg *m);
void cli_hreq_ctrl_body(struct cli_tunnel *t, const unsigned char *p, size_t n);
void cli_hreq_ctrl_gone(struct cli_tunnel *t);
void cli_hreq_free_all(struct cli_tunnel *t);

#endif /* CLI_INT_H */
