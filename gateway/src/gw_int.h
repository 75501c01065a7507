/*
 * gw_int.h - internals of the gateway shared by its source files: the gateway object, the
 * route cache (routes.c), tunnels with their pools of relay streams and the exchanges that
 * forward one request each (proxy.c).
 */
#ifndef GW_INT_H
#define GW_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ahg/cidr.h"
#include "ahg/http.h"
#include "ahg/httpd.h"
#include "ahg/list.h"
#include "ahg/net.h"
#include "ahg/wsconn.h"
#include "gw/gateway.h"

/* Idle relay streams kept per tunnel by default: enough that a burst of a few dozen
 * concurrent visitors finds warm streams (16 made most requests at 64 connections pay a
 * rendezvous in bench/run.sh). */
#define GW_POOL_MAX_IDLE_DEFAULT 128u
/* Background pre-dials started per 500 ms tick across all tunnels. */
#define GW_PREWARM_DIALS_PER_TICK 64u

#define GW_ID_MAX    64
#define GW_HC_MAX    128
#define GW_HOST_MAX  256
#define GW_HASH_SIZE 4096u
#define GW_TOKEN_MAX 4096
#define GW_MAX_USERS 16

/* ---- route cache ---- */

struct gw_user {
    char user[128];
    char sha256[65];
};

/* A resolved route (copied out of the cache for one request). */
struct gw_route_info {
    char id[GW_ID_MAX];
    char hc[GW_HC_MAX];
    char relay[GW_HOST_MAX];
    struct gw_user users[GW_MAX_USERS];
    size_t nusers;
    struct ahg_cidr_list allow; /* owned by the cache entry; borrowed here */
};

struct gw_route;

/* Waiter for a route lookup (embedded in the requester). */
struct gw_route_wait {
    struct ahg_list_node node;
    struct gw_route *route;
    /* err: AHG_OK (info valid for the call), AHG_ENOTFOUND, AHG_EUNAVAIL */
    void (*cb)(struct gw_route_wait *w, int err, const struct gw_route_info *info);
};

/* ---- relay streams and tunnels ---- */

struct gw_ex;
struct gw_tunnel;

enum gw_stream_state { GW_ST_DIAL = 0, GW_ST_IDLE, GW_ST_BUSY, GW_ST_GONE };

struct gw_stream {
    struct ahg_list_node node; /* on the tunnel's idle or busy list */
    struct gw_tunnel *tun;
    struct ahg_wsconn *ws;
    enum gw_stream_state state;
    struct gw_ex *ex; /* the exchange using it (BUSY, or DIAL for an exchange's own dial) */
    struct ahg_timer idle_timer;
    bool used;    /* carried an exchange before */
    bool retried; /* credential refreshed once after a 401 */
    bool prewarm; /* dialed in the background */
};

struct gw_tunnel {
    struct gw_tunnel *hnext;
    struct ahg_list_node node; /* gw->tunnels */
    struct gw *gw;
    char id[GW_ID_MAX];
    char hc[GW_HC_MAX];
    char relay[GW_HOST_MAX];
    struct ahg_list idle; /* struct gw_stream, most recently used first */
    struct ahg_list busy; /* BUSY and DIAL streams */
    unsigned dialing;     /* background dials in progress */
    unsigned active;      /* exchanges in flight */
    unsigned peak;        /* highest `active` in the current window */
    unsigned peak_prev;   /* highest `active` in the previous window */
    uint64_t last_active_ms;
    char *sas; /* cached Send SAS (malloc'd, its own size), NULL when none */
    long long sas_expiry;
};

/* ---- the gateway ---- */

struct gw {
    struct ahg_loop *loop;
    struct ahg_store *store;
    struct ahg_gw_opts o; /* strings below are owned copies */
    char *domain, *iface, *cert_file, *key_file, *admin_iface, *api_upstream, *relay_endpoint,
        *relay_map, *relay_tls_host, *sas_key_name, *sas_key, *azid_resource, *via;
    size_t domain_len;
    /* relay_endpoint parsed */
    char relay_addr[64];
    int relay_port;
    bool relay_tls;
    /* api upstream parsed */
    char api_addr[64];
    int api_port;
    struct ahg_cidr_list api_allow;
    ahg_gw_api_fn api_fn;
    void *api_ud;

    struct ahg_httpd *pub, *admin;
    struct ahg_metrics *metrics;
    bool own_metrics;
    bool draining;
    bool freeing;
    bool pub_alive; /* the public listener (freed with the loop) still points at this */
    bool orphan;    /* ahg_gw_free() ran first: the listener's on_free frees the struct */
    bool store_up;
    bool ever_up;

    /* route cache */
    struct gw_route *rt_hash[GW_HASH_SIZE];
    struct ahg_list rt_lru; /* most recently used first */
    size_t rt_count;
    bool cache_warm;

    /* tunnels */
    struct gw_tunnel *tun_hash[GW_HASH_SIZE];
    struct ahg_list tunnels;
    struct ahg_timer prewarm_timer;
    uint64_t window_start_ms;

    /* exchanges */
    struct ahg_list exchanges;

    /* metrics */
    struct ahg_metric *m_latency, *m_bytes_in, *m_bytes_out, *m_pool_hit, *m_pool_miss,
        *m_cache_hit, *m_cache_miss, *m_prewarm, *m_streams;
};

uint32_t gw_hash(const char *s);
/* Counts one answer with this status in azhexgate_gateway_requests_total. */
void gw_count_answer(struct gw *gw, int status);
/* The host a request is for: the authority of an absolute-form target (RFC 9112 3.2.2: it
 * wins over Host, which is then ignored), else the Host field; copied into buf (NULL when
 * there is none or it does not fit). */
const char *gw_req_host(const struct ahg_httpd_req *r, char *buf, size_t bufsz);

/* routes.c */
int gw_routes_init(struct gw *gw);
void gw_routes_free(struct gw *gw);
void gw_routes_clear(struct gw *gw);
void gw_routes_drop(struct gw *gw, const char *id);
/* Resolves id; cb runs now (cache hit) or later. */
void gw_route_lookup(struct gw *gw, const char *id, struct gw_route_wait *w);
/* Cancels a pending lookup (safe when none is pending). */
void gw_route_cancel(struct gw *gw, struct gw_route_wait *w);

/* proxy.c */
void gw_proxy_tunnel(struct gw *gw, struct ahg_httpd_req *r, const char *id);
void gw_proxy_api(struct gw *gw, struct ahg_httpd_req *r);
void gw_proxy_init(struct gw *gw);
void gw_proxy_free(struct gw *gw);
void gw_proxy_drain(struct gw *gw);
size_t gw_proxy_active(const struct gw *gw);
/* An error page (text/html for browsers, with a one-line text explanation). */
void gw_error_page(struct ahg_httpd_req *r, int status, const char *title, const char *detail,
                   const char *const *extra);

#endif /* GW_INT_H */
