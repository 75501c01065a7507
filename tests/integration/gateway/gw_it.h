/*
 * gw_it.h - shared pieces of the gateway integration tests: a real redis-server on a free port,
 * the emulator in-process (the emulator suite's harness), a local app, a client tunnel
 * (cli_tunnel) and the gateway library on one loop, plus a raw HTTP/1.1 client that streams
 * generated bodies and checksums what comes back.
 */
#ifndef GW_IT_H
#define GW_IT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ahg/azid.h"
#include "ahg/egress.h"
#include "ahg/http.h"
#include "ahg/httpd.h"
#include "ahg/net.h"
#include "ahg/store.h"
#include "ahg/wsconn.h"
#include "cli/tunnel.h"
#include "gw/gateway.h"
#include "harness.h"
#include "tbody.h"
#include "tsupport.h"

#define GW_DOMAIN "gw.test"

void sleep_ms(long ms);
/* Child processes killed (SIGKILL) at exit unless untracked (after the test reaped them). */
void child_track(pid_t pid);
void child_untrack(pid_t pid);

/* ---- the local app ---- */
struct lapp {
    struct ahg_httpd *srv;
    int port;
    unsigned requests;
    unsigned sse_ack; /* the test saw this many SSE events (the app sends one more) */
    uint64_t sink_bytes, sink_sum;
    char last_head[8192]; /* the last request head as the app received it */
};
void lapp_start(struct th *t, struct lapp *a);

/* ---- fixture ---- */
struct gfx {
    struct th t;
    struct ts_redis rs;
    struct ahg_store *store;
    struct ahg_gw *gw;
    int port;
    struct lapp app;
    struct cli_tunnel *tun;
    struct ahg_gw *extra[8];     /* more gateways (gfx_gw_new), freed by gfx_stop */
    struct ahg_store *stores[8]; /* more store clients (gfx_store), freed by gfx_stop */
    struct ahg_azid *azid;       /* freed by gfx_stop (before the loop) */
    struct ahg_egress *egress;
};
/* Another gateway on f's loop (options completed by gfx_gw_opts), on store (NULL = f's). */
struct ahg_gw *gfx_gw_new(struct gfx *f, struct ahg_gw_opts *o, struct ahg_store *store);
/* The same with o used as it is (e.g. completed by gfx_gw_opts, then changed). */
struct ahg_gw *gfx_gw_new_as_is(struct gfx *f, const struct ahg_gw_opts *o,
                                struct ahg_store *store);
/* Starts redis, the emulator, the app, a tunnel on hc1 and a gateway (o may adjust options;
 * relay endpoint, SAS key and domain are filled in). */
void gfx_start(struct gfx *f, const struct ahg_gw_opts *o);
void gfx_stop(struct gfx *f);
/* cmocka group fixture: a started gfx (o as for gfx_start) into *state; gfx_teardown stops and
 * frees it. */
int gfx_setup(void **state, const struct ahg_gw_opts *o);
int gfx_teardown(void **state);
/* Options the fixture uses for its gateway (for a second one). */
void gfx_gw_opts(struct gfx *f, struct ahg_gw_opts *o);
struct ahg_store *gfx_store(struct gfx *f); /* a new store client on f's redis */
/* Writes ahg:route:<id> (hc, extra JSON members such as "\"policy\":{...}" or NULL) and
 * publishes the id on ahg:routes, as the controller does. */
void route_put(struct gfx *f, const char *id, const char *hc, const char *extra);
void route_del(struct gfx *f, const char *id);
void route_put_raw(struct gfx *f, const char *id, const char *json);
/* A tunnel on hc to a local port (NULL when hc is "open": no token). */
struct cli_tunnel *gfx_tunnel(struct gfx *f, const char *hc, int local_port);

/* ---- HTTP client ---- */
struct hcli {
    struct th *t;
    struct ahg_conn *c;
    struct ahg_http_parser *p;
    char *req;
    size_t req_len, req_off;
    uint64_t up_total, up_off; /* generated body after the head */
    struct ahg_http_head *head;
    size_t blen;
    uint64_t got, sum;
    int status;
    unsigned chunks; /* on_data calls with body bytes */
    char method[16];
    bool up_chunked;
    bool connected, closed, done, failed, connect_failed;
    char body[65536];
};
/* Connects to port (TLS with tls_host when set) and sends raw, then up_total generated body
 * bytes (chunked-encoded when up_chunked). */
void hcli_send(struct th *t, struct hcli *h, int port, const char *tls_host, const char *method,
               const char *raw, uint64_t up_total, bool up_chunked);
bool hcli_wait(struct hcli *h, unsigned ms); /* true once a response is complete */
bool hcli_wait_closed(struct hcli *h, unsigned ms);
void hcli_free(struct hcli *h);
/* One request "METHOD path" with Host host and extra header lines ("A: b\r\n..."); returns the
 * status (0 when none); h is left for inspection (free it). */
int hget(struct gfx *f, struct hcli *h, const char *method, const char *host, const char *path,
         const char *extra);
const char *hfield(const struct ahg_http_head *h, const char *name);

#endif /* GW_IT_H */
