/*
 * gw/gateway.h - the public entry of AzHexGate: an HTTP(S)/WebSocket server that routes
 * <id>.<domain> to the tunnel's Hybrid Connection (as a relay sender), api.<domain> to the
 * management API (an in-process handler when composed with the controller, else a proxy to
 * the controller's address) behind a CIDR allow-list, and everything else to a 404 page.
 *
 * Routes come from the state store (docs/state.md: ahg:route:<id>, channel ahg:routes) through
 * a bounded in-process cache with TTL and negative caching. Requests travel over pooled relay
 * streams: one WebSocket per exchange, kept alive and reused while the local app keeps its
 * connection, pre-dialed for recently active tunnels (docs/gateway.md).
 *
 * Threading: loop thread only. Ownership: the gateway copies every string of its options; the
 * store, the azid client and the metrics registry are borrowed and must outlive the gateway.
 */
#ifndef GW_GATEWAY_H
#define GW_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ahg/httpd.h"
#include "ahg/net.h"

struct ahg_store;
struct ahg_azid;
struct ahg_metrics;
struct ahg_gw;

/* A composed management API handler: answers r (the gateway keeps no hold on it afterwards);
 * peer is the real caller's address (borrowed for the call). */
typedef void (*ahg_gw_api_fn)(void *ud, struct ahg_httpd_req *r, const char *peer);

struct ahg_gw_opts {
    const char *domain; /* public domain, e.g. "tunnels.example.com" (required) */
    /* public listener */
    const char *iface;                /* numeric bind address; NULL = 127.0.0.1 */
    const char *cert_file, *key_file; /* TLS (wildcard certificate) when set */
    /* admin listener (/healthz /readyz /metrics) */
    const char *admin_iface;
    /* management API: the composed handler (ahg_gw_set_api_handler) wins; else proxied to
     * api_upstream "address:port" (numeric); neither = 404 */
    const char *api_upstream;
    const char *api_allow_cidr; /* comma/space separated; NULL or "" = everyone */
    /* relay: every route's relay host is dialed at relay_endpoint when set ("ws://127.0.0.1:9911"
     * or "wss://10.0.0.5:443", numeric), else at relay_map's entry for the host
     * ("ns.servicebus.windows.net=127.0.0.1:9911", comma separated, plain ws), else the host is
     * resolved (off the loop) and dialed with TLS on 443. */
    const char *relay_endpoint;
    const char *relay_map;
    const char *relay_tls_host; /* SNI for relay_endpoint (NULL = the route's relay host) */
    /* sender credential: a Send SAS signed with sas_key (rule sas_key_name), else an Entra ID
     * token for azid_resource from azid, else none (anonymous senders) */
    const char *sas_key_name;
    const char *sas_key; /* secret, copied, never logged */
    struct ahg_azid *azid;
    const char *azid_resource;            /* NULL = "https://relay.azure.net/" */
    const char *via_name;                 /* Via pseudonym; NULL = "azhexgate" */
    struct ahg_metrics *metrics_registry; /* shared registry (borrowed); NULL = own one */
    uint64_t header_timeout_ms;           /* 0 = 10 s (-> 408) */
    uint64_t idle_timeout_ms;             /* keep-alive idle; 0 = 75 s */
    uint64_t response_timeout_ms;         /* response head deadline; 0 = 120 s (-> 504) */
    uint64_t connect_timeout_ms;          /* one relay stream dial to 101; 0 = 10 s (3 attempts) */
    uint64_t pool_idle_timeout_ms;        /* 0 = 60 s */
    uint64_t prewarm_window_ms;           /* a tunnel active within this is pre-dialed; 0 = 60 s */
    uint64_t cache_ttl_ms;                /* 0 = 30 s */
    uint64_t cache_neg_ttl_ms;            /* 0 = 2 s */
    size_t cache_max;                     /* 0 = 100000 entries */
    int port;                             /* public port; 0 = any free port */
    int admin_port;                       /* < 0 = no admin listener, 0 = any free port */
    unsigned pool_max_idle;               /* idle streams kept per tunnel; 0 = 128 */
    bool relay_insecure;                  /* skip relay certificate checks (tests only) */
    bool prewarm_off;                     /* no background pre-dial */
    bool access_log;                      /* one JSON line per request */
};

/*
 * Starts the gateway on loop: listeners, store subscription. metrics may be NULL (the gateway
 * then makes its own registry). NULL with *err: AHG_EINVAL (bad options), AHG_EIO (a port is
 * taken), AHG_ETLS (certificate), AHG_ENOMEM. The listeners live as long as the loop.
 */
struct ahg_gw *ahg_gw_new(struct ahg_loop *loop, struct ahg_store *store,
                          const struct ahg_gw_opts *opts, int *err);

/* Composes an in-process management API handler for api.<domain>. */
void ahg_gw_set_api_handler(struct ahg_gw *gw, ahg_gw_api_fn fn, void *ud);

int ahg_gw_port(const struct ahg_gw *gw);
int ahg_gw_admin_port(const struct ahg_gw *gw);
struct ahg_metrics *ahg_gw_metrics(struct ahg_gw *gw);

/* Ready: the store is up or the route cache is warm, and not draining. */
bool ahg_gw_ready(const struct ahg_gw *gw);

/* Reloads the public certificate and key from their files (SIGHUP): new handshakes use them,
 * open connections are untouched. AHG_OK, AHG_EINVAL (no TLS), AHG_EIO/AHG_ETLS. */
int ahg_gw_reload_certs(struct ahg_gw *gw);

/* Stops taking new requests (503 + Connection: close, /readyz fails) and closes idle pooled
 * streams; in-flight exchanges go on. */
void ahg_gw_drain(struct ahg_gw *gw);
/* Exchanges (HTTP requests, WebSocket pipes) in flight. */
size_t ahg_gw_active(const struct ahg_gw *gw);

/* Drops every cached route (tests, store reconnect). */
void ahg_gw_cache_clear(struct ahg_gw *gw);

/* Frees the gateway's memory. Order at shutdown: free the store and the azid client it was given
 * (their callbacks point at the gateway; they need the loop), then ahg_loop_free() (which closes
 * every connection the gateway still had, calling into it), then this. NULL is a no-op. */
void ahg_gw_free(struct ahg_gw *gw);

#endif /* GW_GATEWAY_H */
