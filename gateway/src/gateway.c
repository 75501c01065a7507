/*
 * gateway.c - the gateway object: the public server and its Host routing, the management API
 * (composed handler or upstream, behind a CIDR allow-list), the admin listener, metrics,
 * draining and certificate reload. Forwarding lives in proxy.c, the route cache in routes.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <libwebsockets.h>
#include <openssl/crypto.h>

#include "ahg/admin.h"
#include "ahg/buf.h"
#include "ahg/err.h"
#include "ahg/log.h"
#include "ahg/metrics.h"
#include "ahg/store.h"
#include "ahg/wsconn.h"
#include "gw_int.h"

static char *
dup_opt(const char *s)
{
    return s && *s ? strdup(s) : NULL;
}

/* Splits "address:port" (numeric; IPv6 in brackets) into addr/port. */
static int
split_hostport(const char *s, char *addr, size_t addrsz, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon)
        return AHG_EINVAL;
    size_t al = (size_t)(colon - s);
    const char *a = s;
    if (al >= 2 && s[0] == '[' && s[al - 1] == ']') {
        a++;
        al -= 2;
    }
    if (al == 0 || al >= addrsz)
        return AHG_EINVAL;
    memcpy(addr, a, al);
    addr[al] = '\0';
    char *end = NULL;
    long p = strtol(colon + 1, &end, 10);
    if (!end || *end || p <= 0 || p > 65535)
        return AHG_EINVAL;
    unsigned char tmp[16];
    if (inet_pton(AF_INET, addr, tmp) != 1 && inet_pton(AF_INET6, addr, tmp) != 1)
        return AHG_EINVAL;
    *port = (int)p;
    return AHG_OK;
}

/* Parses ws://addr:port or wss://addr:port (numeric) for relay_endpoint. */
static int
parse_relay_endpoint(struct gw *gw, const char *url)
{
    const char *rest;
    if (strncasecmp(url, "ws://", 5) == 0) {
        gw->relay_tls = false;
        rest = url + 5;
    } else if (strncasecmp(url, "wss://", 6) == 0) {
        gw->relay_tls = true;
        rest = url + 6;
    } else {
        return AHG_EINVAL;
    }
    char hp[128];
    size_t l = strcspn(rest, "/?");
    if (l == 0 || l >= sizeof(hp))
        return AHG_EINVAL;
    memcpy(hp, rest, l);
    hp[l] = '\0';
    if (!strrchr(hp, ':') || (hp[0] == '[' && hp[l - 1] == ']')) {
        char tmp[140];
        (void)snprintf(tmp, sizeof(tmp), "%s:%d", hp, gw->relay_tls ? 443 : 80);
        return split_hostport(tmp, gw->relay_addr, sizeof(gw->relay_addr), &gw->relay_port);
    }
    return split_hostport(hp, gw->relay_addr, sizeof(gw->relay_addr), &gw->relay_port);
}

/* Normalises the Host value: lower case, port and trailing dot removed. Returns false when it
 * does not fit. */
static bool
norm_host(const char *in, char *out, size_t outsz)
{
    size_t n = 0;
    if (in[0] == '[') { /* IP literal: never one of our names */
        (void)snprintf(out, outsz, "%s", in);
        return true;
    }
    for (const char *p = in; *p && *p != ':'; p++) {
        if (n + 1 >= outsz)
            return false;
        char c = *p;
        out[n++] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    while (n > 0 && out[n - 1] == '.')
        n--;
    out[n] = '\0';
    return true;
}

static bool
valid_label(const char *s, size_t n)
{
    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

const char *
gw_req_host(const struct ahg_httpd_req *r, char *buf, size_t bufsz)
{
    const struct ahg_http_head *h = ahg_httpd_req_head(r);
    const char *t = h && h->target ? h->target : "";
    const char *v;
    size_t n;
    if (!strncasecmp(t, "http://", 7) || !strncasecmp(t, "https://", 8)) {
        v = strstr(t, "://") + 3;
        n = strcspn(v, "/?");
    } else {
        v = h ? ahg_http_head_get(h, "Host", &n) : NULL;
        if (!v)
            return NULL;
    }
    if (n == 0 || n >= bufsz)
        return NULL;
    memcpy(buf, v, n);
    buf[n] = '\0';
    return buf;
}

void
gw_count_answer(struct gw *gw, int status)
{
    if (!gw->metrics)
        return;
    char labels[64];
    (void)snprintf(labels, sizeof(labels), "code=\"%d\"", status);
    struct ahg_metric *m = ahg_metrics_counter(gw->metrics, "azhexgate_gateway_requests_total",
                                               "Requests answered, by status", labels);
    if (m)
        ahg_metric_inc(m);
}

/* A request refused by the HTTP parser (smuggling shapes, oversized or malformed heads, header
 * timeout) never reaches on_public_request: count it and give it an access record too, so such
 * attacks show in the logs and metrics like any other answer. */
static void
on_public_reject(void *ud, int status, const char *reason, const char *peer)
{
    struct gw *gw = ud;
    gw_count_answer(gw, status);
    if (!gw->o.access_log)
        return;
    char id[AHG_LOG_REQUEST_ID_LEN];
    ahg_log_new_request_id(id);
    struct ahg_log_access_rec rec = {.req_id = id, .peer = peer, .status = status};
    ahg_log_access(&rec);
    AHG_LOG_DEBUG("request %s from %s refused with %d: %s", id, peer ? peer : "?", status,
                  reason ? reason : "");
}

/* Why a listener could not be made, for a person. */
static const char *
listen_err(int err)
{
    return err == AHG_EIO ? "the address is in use or not available (another process on that "
                            "port?)"
                          : ahg_strerror(err);
}

/* The public listener is freed with the loop: before ahg_gw_free() (gw lives on), or after
 * it (gw waited for this, as an orphan). */
static void
on_public_freed(void *ud)
{
    struct gw *gw = ud;
    gw->pub_alive = false;
    gw->pub = NULL;
    if (gw->orphan)
        free(gw);
}

static void
on_public_request(struct ahg_httpd_req *r)
{
    struct gw *gw = ahg_httpd_ud(ahg_httpd_req_server(r));
    if (gw->draining || gw->freeing) {
        static const char *const f[] = {"Retry-After", "1", NULL};
        (void)ahg_httpd_respond(r, 503, "text/plain; charset=utf-8",
                                "503 Service Unavailable: this gateway is shutting down\n", 55, f);
        return;
    }
    char hbuf[GW_HOST_MAX];
    const char *hv = gw_req_host(r, hbuf, sizeof(hbuf));
    char host[GW_HOST_MAX];
    if (!hv || !norm_host(hv, host, sizeof(host))) {
        gw_error_page(r, 404, "Not found", "This address is not served here.", NULL);
        return;
    }
    size_t hl = strlen(host);
    size_t dl = gw->domain_len;
    if (hl <= dl + 1 || host[hl - dl - 1] != '.' || strcmp(host + hl - dl, gw->domain) != 0 ||
        !valid_label(host, hl - dl - 1)) {
        gw_error_page(r, 404, "Not found", "This address is not served here.", NULL);
        return;
    }
    char label[GW_ID_MAX];
    size_t ll = hl - dl - 1;
    memcpy(label, host, ll);
    label[ll] = '\0';
    if (strcmp(label, "api") == 0) {
        const char *peer = ahg_conn_peer_addr(ahg_httpd_req_conn(r));
        if (gw->api_allow.n && !ahg_cidr_list_match(&gw->api_allow, peer)) {
            (void)ahg_httpd_respond_error(r, 403, "forbidden",
                                          "the management API is not open to your address", true);
            return;
        }
        if (gw->api_fn) {
            gw->api_fn(gw->api_ud, r, peer);
            return;
        }
        if (gw->api_upstream) {
            gw_proxy_api(gw, r);
            return;
        }
        (void)ahg_httpd_respond_error(r, 404, "not_found",
                                      "the management API is not served by this gateway", true);
        return;
    }
    gw_proxy_tunnel(gw, r, label);
}

/* ---- admin ---- */

static bool
admin_ready(void *ud, char *why, size_t whysz)
{
    struct gw *gw = ud;
    if (ahg_gw_ready((const struct ahg_gw *)gw))
        return true;
    (void)snprintf(why, whysz, "%s", gw->draining ? "draining" : "store unreachable");
    return false;
}

static double
g_active(void *ud)
{
    return (double)gw_proxy_active(ud);
}

static double
g_routes(void *ud)
{
    return (double)((struct gw *)ud)->rt_count;
}

static double
g_store_up(void *ud)
{
    return ((struct gw *)ud)->store_up ? 1.0 : 0.0;
}

static void
metrics_init(struct gw *gw)
{
    struct ahg_metrics *m = gw->metrics;
    gw->m_latency =
        ahg_metrics_histogram(m, "azhexgate_gateway_request_duration_seconds",
                              "Time from the request head to the end of the response", NULL,
                              ahg_metrics_latency_buckets, ahg_metrics_latency_nbuckets);
    gw->m_bytes_in = ahg_metrics_counter(m, "azhexgate_gateway_bytes_total", "Body bytes forwarded",
                                         "direction=\"in\"");
    gw->m_bytes_out = ahg_metrics_counter(m, "azhexgate_gateway_bytes_total",
                                          "Body bytes forwarded", "direction=\"out\"");
    gw->m_pool_hit =
        ahg_metrics_counter(m, "azhexgate_gateway_pool_total",
                            "Relay streams taken from the pool or dialed", "result=\"hit\"");
    gw->m_pool_miss =
        ahg_metrics_counter(m, "azhexgate_gateway_pool_total",
                            "Relay streams taken from the pool or dialed", "result=\"miss\"");
    gw->m_prewarm = ahg_metrics_counter(m, "azhexgate_gateway_prewarm_dials_total",
                                        "Relay streams dialed in the background", NULL);
    gw->m_cache_hit =
        ahg_metrics_counter(m, "azhexgate_gateway_route_cache_total",
                            "Route lookups answered by the cache or the store", "result=\"hit\"");
    gw->m_cache_miss =
        ahg_metrics_counter(m, "azhexgate_gateway_route_cache_total",
                            "Route lookups answered by the cache or the store", "result=\"miss\"");
    gw->m_streams = ahg_metrics_gauge(m, "azhexgate_gateway_relay_streams",
                                      "Relay streams open or being dialed", NULL);
    (void)ahg_metrics_gauge_fn(m, "azhexgate_gateway_active_exchanges",
                               "Requests and WebSocket pipes in flight", NULL, g_active, gw);
    (void)ahg_metrics_gauge_fn(m, "azhexgate_gateway_routes_cached", "Route cache entries", NULL,
                               g_routes, gw);
    (void)ahg_metrics_gauge_fn(m, "azhexgate_gateway_store_up", "1 when the state store is up",
                               NULL, g_store_up, gw);
}

/* ---- the object ---- */

static void
free_strings(struct gw *gw)
{
    free(gw->domain);
    free(gw->iface);
    free(gw->cert_file);
    free(gw->key_file);
    free(gw->admin_iface);
    free(gw->api_upstream);
    free(gw->relay_endpoint);
    free(gw->relay_map);
    free(gw->relay_tls_host);
    free(gw->sas_key_name);
    if (gw->sas_key) {
        OPENSSL_cleanse(gw->sas_key, strlen(gw->sas_key));
        free(gw->sas_key);
    }
    free(gw->azid_resource);
    free(gw->via);
}

struct ahg_gw *
ahg_gw_new(struct ahg_loop *loop, struct ahg_store *store, const struct ahg_gw_opts *opts, int *err)
{
    int dummy = 0;
    if (!err)
        err = &dummy;
    *err = AHG_EINVAL;
    if (!loop || !store || !opts || !opts->domain || !*opts->domain) {
        AHG_LOG_ERROR("gateway: a domain and a store are required");
        return NULL;
    }
    struct gw *gw = calloc(1, sizeof(*gw));
    if (!gw) {
        *err = AHG_ENOMEM;
        return NULL;
    }
    gw->loop = loop;
    gw->store = store;
    gw->o = *opts;
    gw->domain = malloc(strlen(opts->domain) + 1);
    if (gw->domain && !norm_host(opts->domain, gw->domain, strlen(opts->domain) + 1)) {
        free(gw->domain);
        gw->domain = NULL;
    }
    gw->domain_len = gw->domain ? strlen(gw->domain) : 0;
    gw->iface = dup_opt(opts->iface);
    gw->cert_file = dup_opt(opts->cert_file);
    gw->key_file = dup_opt(opts->key_file);
    gw->admin_iface = dup_opt(opts->admin_iface);
    gw->api_upstream = dup_opt(opts->api_upstream);
    gw->relay_endpoint = dup_opt(opts->relay_endpoint);
    gw->relay_map = dup_opt(opts->relay_map);
    gw->relay_tls_host = dup_opt(opts->relay_tls_host);
    gw->sas_key_name = dup_opt(opts->sas_key_name);
    gw->sas_key = dup_opt(opts->sas_key);
    gw->azid_resource =
        strdup(opts->azid_resource ? opts->azid_resource : "https://relay.azure.net/");
    gw->via = strdup(opts->via_name ? opts->via_name : "azhexgate");
    if (!gw->domain || !gw->azid_resource || !gw->via) {
        *err = gw->domain ? AHG_ENOMEM : AHG_EINVAL;
        goto fail;
    }
    if (gw->sas_key && !gw->sas_key_name) {
        AHG_LOG_ERROR("gateway: a SAS key needs its rule name");
        goto fail;
    }
    if (gw->relay_endpoint && parse_relay_endpoint(gw, gw->relay_endpoint) != AHG_OK) {
        AHG_LOG_ERROR("gateway: relay endpoint must be ws://ADDRESS:PORT or wss://ADDRESS:PORT "
                      "with a numeric address");
        goto fail;
    }
    if (gw->api_upstream && split_hostport(gw->api_upstream, gw->api_addr, sizeof(gw->api_addr),
                                           &gw->api_port) != AHG_OK) {
        AHG_LOG_ERROR("gateway: the API upstream must be ADDRESS:PORT with a numeric address");
        goto fail;
    }
    if (opts->api_allow_cidr && *opts->api_allow_cidr) {
        const char *bad = NULL;
        if (ahg_cidr_list_parse(opts->api_allow_cidr, &gw->api_allow, &bad) != AHG_OK) {
            AHG_LOG_ERROR("gateway: bad CIDR in the API allow-list near '%.40s'", bad ? bad : "");
            goto fail;
        }
    }
    if (gw->cert_file && !gw->key_file) {
        AHG_LOG_ERROR("gateway: a certificate needs its key file");
        goto fail;
    }
    gw->metrics = opts->metrics_registry ? opts->metrics_registry : ahg_metrics_new();
    gw->own_metrics = !opts->metrics_registry;
    if (!gw->metrics) {
        *err = AHG_ENOMEM;
        goto fail;
    }
    metrics_init(gw);
    gw_proxy_init(gw);

    static unsigned seq;
    char name[64];
    (void)snprintf(name, sizeof(name), "gw-public-%u", seq++);
    struct ahg_httpd_opts ho = {
        .name = name,
        .iface = gw->iface,
        .port = opts->port,
        .cert_file = gw->cert_file,
        .key_file = gw->key_file,
        .header_timeout_ms = opts->header_timeout_ms,
        .idle_timeout_ms = opts->idle_timeout_ms,
        .on_request = on_public_request,
        .on_reject = on_public_reject,
        .on_free = on_public_freed,
        .ud = gw,
    };
    gw->pub = ahg_httpd_new(loop, &ho, err);
    gw->pub_alive = gw->pub != NULL;
    if (!gw->pub) {
        AHG_LOG_ERROR("gateway: cannot listen on %s:%d: %s", gw->iface ? gw->iface : "127.0.0.1",
                      opts->port, listen_err(*err));
        goto fail_started;
    }
    if (opts->admin_port >= 0) {
        char aname[64];
        (void)snprintf(aname, sizeof(aname), "gw-admin-%u", seq++);
        struct ahg_admin_opts ao = {
            .name = aname,
            .iface = gw->admin_iface,
            .port = opts->admin_port,
            .ready = admin_ready,
            .ud = gw,
            .metrics = gw->metrics,
        };
        gw->admin = ahg_admin_new(loop, &ao, err);
        if (!gw->admin) {
            AHG_LOG_ERROR("gateway: cannot open the admin listener on port %d: %s",
                          opts->admin_port, listen_err(*err));
            goto fail_started;
        }
    }
    if (gw_routes_init(gw) != AHG_OK)
        AHG_LOG_WARN("gateway: cannot subscribe to ahg:routes; relying on the cache TTL");
    *err = AHG_OK;
    AHG_LOG_INFO("gateway for *.%s listening on port %d%s", gw->domain, ahg_httpd_port(gw->pub),
                 gw->cert_file ? " (TLS)" : "");
    return (struct ahg_gw *)gw;

fail_started:
    ahg_timer_stop(&gw->prewarm_timer);
    if (gw->pub) { /* the listener lives as long as the loop: gw goes with it */
        ahg_gw_free((struct ahg_gw *)gw);
        return NULL;
    }
    gw_proxy_free(gw);
    if (gw->own_metrics)
        ahg_metrics_free(gw->metrics);
fail:
    ahg_cidr_list_free(&gw->api_allow);
    free_strings(gw);
    free(gw);
    return NULL;
}

void
ahg_gw_set_api_handler(struct ahg_gw *g, ahg_gw_api_fn fn, void *ud)
{
    struct gw *gw = (struct gw *)g;
    gw->api_fn = fn;
    gw->api_ud = ud;
}

int
ahg_gw_port(const struct ahg_gw *g)
{
    const struct gw *gw = (const struct gw *)g;
    return gw->pub ? ahg_httpd_port(gw->pub) : 0;
}

int
ahg_gw_admin_port(const struct ahg_gw *g)
{
    const struct gw *gw = (const struct gw *)g;
    return gw->admin ? ahg_httpd_port(gw->admin) : 0;
}

struct ahg_metrics *
ahg_gw_metrics(struct ahg_gw *g)
{
    return ((struct gw *)g)->metrics;
}

bool
ahg_gw_ready(const struct ahg_gw *g)
{
    const struct gw *gw = (const struct gw *)g;
    return !gw->draining && (ahg_store_is_up(gw->store) || gw->cache_warm);
}

/* Reads a whole (small) file; NULL on error. */
static char *
slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = (size_t)256 * 1024;
    char *buf = malloc(cap + 1);
    size_t n = buf ? fread(buf, 1, cap, f) : 0;
    bool eof = buf && feof(f);
    (void)fclose(f);
    if (!buf || !eof || n == 0) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int
ahg_gw_reload_certs(struct ahg_gw *g)
{
    struct gw *gw = (struct gw *)g;
    if (!gw->cert_file || !gw->key_file)
        return AHG_EINVAL;
    size_t cl = 0, kl = 0;
    char *cert = slurp(gw->cert_file, &cl);
    char *key = slurp(gw->key_file, &kl);
    int rc = AHG_OK;
    if (!cert || !key) {
        AHG_LOG_ERROR("certificate reload: cannot read %s or %s", gw->cert_file, gw->key_file);
        rc = AHG_EIO;
    } else if (lws_tls_cert_updated(ahg_loop_lws(gw->loop), gw->cert_file, gw->key_file, cert, cl,
                                    key, kl) != 0) {
        AHG_LOG_ERROR("certificate reload: %s / %s rejected", gw->cert_file, gw->key_file);
        rc = AHG_ETLS;
    } else {
        AHG_LOG_INFO("certificate reloaded from %s", gw->cert_file);
    }
    free(cert);
    if (key) {
        OPENSSL_cleanse(key, kl);
        free(key);
    }
    return rc;
}

void
ahg_gw_drain(struct ahg_gw *g)
{
    struct gw *gw = (struct gw *)g;
    if (gw->draining)
        return;
    gw->draining = true;
    AHG_LOG_INFO("gateway draining: %zu exchanges in flight", gw_proxy_active(gw));
    gw_proxy_drain(gw);
}

size_t
ahg_gw_active(const struct ahg_gw *g)
{
    return gw_proxy_active((const struct gw *)g);
}

void
ahg_gw_cache_clear(struct ahg_gw *g)
{
    gw_routes_clear((struct gw *)g);
}

void
ahg_gw_free(struct ahg_gw *g)
{
    struct gw *gw = (struct gw *)g;
    if (!gw)
        return;
    gw->freeing = true;
    gw_proxy_free(gw);
    gw_routes_free(gw);
    ahg_cidr_list_free(&gw->api_allow);
    if (gw->own_metrics)
        ahg_metrics_free(gw->metrics);
    gw->metrics = NULL;
    free_strings(gw);
    if (gw->pub_alive) { /* freed with the listener, when the loop goes */
        gw->orphan = true;
        return;
    }
    free(gw);
}
