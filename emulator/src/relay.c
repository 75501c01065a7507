/*
 * relay.c - the Azure Relay Hybrid Connections data plane of the emulator: request routing,
 * listener control channels (listen, ping, renewToken, token expiry, close codes), WebSocket
 * connect -> accept -> rendezvous -> splice, and the shared services relay_http.c uses (id table,
 * listener choice, control-channel output queue, error answers).
 *
 * Behaviour follows ../shared/docs/hc-protocol.md sections 1, 2, 4, 5, 11.4, 12 and 14. Choices
 * where the real service is not documented:
 *   - a rendezvous address whose sender left before the listener dialed answers 410 Gone (the
 *     connection it names is gone) until the address expires, then 403 like any unknown address;
 *   - a sender whose rendezvous is never dialed within emulator.rendezvous_timeout gets 504;
 *   - too many listeners is 403 with a QuotaExceeded/MaximumListenersPerEndpoint text;
 *   - malformed or unknown control messages from a listener are ignored (as the .NET listener
 *     does with unknown commands); a text message over 64 KiB closes the channel with 1009.
 *
 * Threading: loop thread only.
 */
#include "relay_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ahg/crypto.h"
#include "ahg/err.h"
#include "ahg/log.h"
#include "ahg/url.h"

/* ---- objects local to this file ---- */

struct emu_defer {
    struct ahg_list_node link; /* on rl->defers */
    struct emu_relay *rl;
    void (*fn)(void *obj);
    void *obj; /* NULL once cancelled */
};

struct emu_ctlq {
    struct emu_ctlq *next;
    size_t jlen;
    size_t blen;
    bool with_body;
    unsigned char data[]; /* json then body */
};

enum rdv_state { RDV_WAIT = 0, RDV_HOLD, RDV_GONE };

struct emu_rdv {
    struct emu_idnode idn; /* first */
    struct emu_relay *rl;
    struct emu_rhc *rh;
    struct ahg_list_node link; /* on rh->rdvs */
    enum rdv_state st;
    bool expired;
    struct ahg_httpd_req *sender; /* held before its 101; NULL once gone or answered */
    struct ahg_httpd_req *dial;   /* the listener's rendezvous dial during the latency hold */
    struct ahg_timer timer;
    struct emu_defer *df;
    char path[EMU_HC_NAME_MAX];
};

struct emu_pipe {
    struct emu_relay *rl;
    struct emu_rhc *rh;
    struct ahg_list_node link; /* on rh->pipes */
    struct ahg_wsconn *ws[2];  /* 0 = sender, 1 = listener */
    bool drop[2];              /* the frame now arriving from side i is not forwarded */
    bool paused[2];            /* side i does not read until the other side drains */
};

/* ---- small helpers ---- */

static uint64_t
rng_next(struct emu_relay *rl)
{
    uint64_t x = rl->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rl->rng = x;
    return x;
}

static bool
loop_stopping(const struct emu_relay *rl)
{
    return ahg_loop_stopping(rl->e->loop);
}

/* Closes ws with code, or drops it when the loop is going down. */
static void
ws_close(const struct emu_relay *rl, struct ahg_wsconn *ws, uint16_t code, const char *reason)
{
    if (loop_stopping(rl))
        ahg_wsconn_abort(ws);
    else
        (void)ahg_wsconn_close(ws, code, reason);
}

/* First token of a comma-separated header value, trimmed, into out ("" when none). */
static void
first_token(const char *v, char *out, size_t outsz)
{
    out[0] = '\0';
    if (!v)
        return;
    while (*v == ' ' || *v == '\t' || *v == ',')
        v++;
    size_t n = strcspn(v, ", \t");
    if (n >= outsz)
        return;
    memcpy(out, v, n);
    out[n] = '\0';
}

/* ---- global state ---- */

struct emu_relay *
emu_relay_of(struct emu *e)
{
    return e->relay;
}

int
emu_relay_init(struct emu *e)
{
    struct emu_relay *rl = calloc(1, sizeof(*rl));
    if (!rl)
        return AHG_ENOMEM;
    rl->e = e;
    rl->tabsz = 256;
    rl->tab = calloc(rl->tabsz,
                     sizeof(*rl->tab)); // NOLINT(bugprone-sizeof-expression): array of pointers
    if (!rl->tab) {
        free(rl);
        return AHG_ENOMEM;
    }
    if (ahg_rand_bytes(&rl->rng, sizeof(rl->rng)) != AHG_OK || rl->rng == 0)
        rl->rng = 0x9e3779b97f4a7c15ULL ^ (uint64_t)ahg_now_ms();
    e->relay = rl;
    return AHG_OK;
}

struct emu_rhc *
emu_relay_rhc(struct emu_relay *rl, struct emu_hc *hc)
{
    if (hc->relay)
        return hc->relay;
    struct emu_rhc *rh = calloc(1, sizeof(*rh));
    if (!rh)
        return NULL;
    rh->rl = rl;
    rh->hc = hc;
    hc->relay = rh;
    return rh;
}

unsigned
emu_relay_listener_count(const struct emu_hc *hc)
{
    const struct emu_rhc *rh = hc ? hc->relay : NULL;
    return rh ? (unsigned)rh->lsns.count : 0;
}

/*
 * Called after ahg_loop_free(): every connection has been closed and reported, so what is left
 * are objects waiting for timers that will never fire (expired rendezvous tombstones) and
 * deferred calls. Timers are not touched (the loop is gone).
 */
void
emu_relay_free(struct emu *e)
{
    struct emu_relay *rl = e ? e->relay : NULL;
    if (!rl)
        return;
    for (struct emu_hc *hc = e->ns.hcs; hc; hc = hc->next) {
        struct emu_rhc *rh = hc->relay;
        if (!rh)
            continue;
        ahg_list_foreach_safe (n, tmp, &rh->rdvs) {
            free(AHG_LIST_ENTRY(n, struct emu_rdv, link));
        }
        ahg_list_foreach (n, &rh->lsns) {
            AHG_LIST_ENTRY(n, struct emu_lsn, link)->rh = NULL;
        }
        ahg_list_foreach (n, &rh->pipes) {
            AHG_LIST_ENTRY(n, struct emu_pipe, link)->rh = NULL;
        }
        free(rh);
        hc->relay = NULL;
    }
    ahg_list_foreach_safe (n, tmp, &rl->defers) {
        free(AHG_LIST_ENTRY(n, struct emu_defer, link));
    }
    free(rl->tab);
    free(rl);
    e->relay = NULL;
}

/* ---- id table ---- */

static size_t
id_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return (size_t)h;
}

void
emu_relay_id_new(struct emu_relay *rl, const char *base, char out[EMU_RELAY_ID_MAX])
{
    char uuid[37];
    char hex[17];
    if (!base || !emu_relay_id_base_ok(base)) {
        if (ahg_rand_uuid(uuid) != AHG_OK)
            (void)snprintf(uuid, sizeof(uuid), "%016llx", (unsigned long long)rng_next(rl));
        base = uuid;
    }
    if (ahg_rand_hex(hex, 8) != AHG_OK)
        (void)snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)rng_next(rl));
    (void)snprintf(out, EMU_RELAY_ID_MAX, "%s_G%s", base, hex);
}

static int
id_grow(struct emu_relay *rl)
{
    size_t nsz = rl->tabsz * 2;
    struct emu_idnode **nt = calloc(nsz, sizeof(*nt)); // NOLINT(bugprone-sizeof-expression)
    if (!nt)
        return AHG_ENOMEM;
    for (size_t i = 0; i < rl->tabsz; i++) {
        struct emu_idnode *n = rl->tab[i];
        while (n) {
            struct emu_idnode *next = n->next;
            size_t b = id_hash(n->id) & (nsz - 1);
            n->next = nt[b];
            nt[b] = n;
            n = next;
        }
    }
    free(rl->tab);
    rl->tab = nt;
    rl->tabsz = nsz;
    return AHG_OK;
}

int
emu_relay_id_add(struct emu_relay *rl, struct emu_idnode *n)
{
    if (n->linked)
        return AHG_OK;
    if (rl->tabn >= rl->tabsz * 2 && rl->tabsz < ((size_t)1 << 24))
        (void)id_grow(rl); /* a longer chain is fine when memory is short */
    size_t b = id_hash(n->id) & (rl->tabsz - 1);
    n->next = rl->tab[b];
    rl->tab[b] = n;
    n->linked = true;
    rl->tabn++;
    return AHG_OK;
}

void
emu_relay_id_del(struct emu_relay *rl, struct emu_idnode *n)
{
    if (!n->linked)
        return;
    struct emu_idnode **pp = &rl->tab[id_hash(n->id) & (rl->tabsz - 1)];
    while (*pp && *pp != n)
        pp = &(*pp)->next;
    if (*pp)
        *pp = n->next;
    n->next = NULL;
    n->linked = false;
    rl->tabn--;
}

struct emu_idnode *
emu_relay_id_find(struct emu_relay *rl, const char *id)
{
    if (!id || !*id)
        return NULL;
    for (struct emu_idnode *n = rl->tab[id_hash(id) & (rl->tabsz - 1)]; n; n = n->next)
        if (!strcmp(n->id, id))
            return n;
    return NULL;
}

/* ---- deferred calls ---- */

static void
defer_fire(void *arg)
{
    struct emu_defer *d = arg;
    ahg_list_remove(&d->rl->defers, &d->link);
    void (*fn)(void *) = d->fn;
    void *obj = d->obj;
    free(d);
    if (obj)
        fn(obj);
}

struct emu_defer *
emu_relay_defer(struct emu_relay *rl, unsigned ms, void (*fn)(void *obj), void *obj)
{
    if (!ms)
        return NULL;
    struct emu_defer *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->rl = rl;
    d->fn = fn;
    d->obj = obj;
    ahg_list_push_front(&rl->defers, &d->link);
    emu_latency_defer(rl->e, ms, defer_fire, d);
    return d;
}

void
emu_relay_defer_cancel(struct emu_defer *d)
{
    if (d)
        d->obj = NULL;
}

/* ---- pure helpers ---- */

enum emu_relay_action
emu_relay_action_parse(const char *query)
{
    char v[32];
    int rc = ahg_url_query_get(query ? query : "", "sb-hc-action", v, sizeof(v), true);
    if (rc == AHG_ENOTFOUND)
        return EMU_RELAY_ACT_CONNECT;
    if (rc != AHG_OK)
        return EMU_RELAY_ACT_BAD;
    if (!strcmp(v, "listen"))
        return EMU_RELAY_ACT_LISTEN;
    if (!strcmp(v, "connect"))
        return EMU_RELAY_ACT_CONNECT;
    if (!strcmp(v, "accept"))
        return EMU_RELAY_ACT_ACCEPT;
    if (!strcmp(v, "request"))
        return EMU_RELAY_ACT_REQUEST;
    return EMU_RELAY_ACT_BAD;
}

int
emu_relay_token(const struct ahg_http_head *head, const char *query, bool allow_authorization,
                char *out, size_t outsz)
{
    out[0] = '\0';
    int rc = ahg_url_query_get(query ? query : "", "sb-hc-token", out, outsz, true);
    if (rc == AHG_OK)
        return out[0] ? 1 : 0;
    if (rc != AHG_ENOTFOUND) {
        out[0] = '\0';
        return -1;
    }
    size_t n = 0;
    const char *v = ahg_http_head_get(head, "ServiceBusAuthorization", &n);
    int src = 2;
    if (!v && allow_authorization) {
        v = ahg_http_head_get(head, "Authorization", &n);
        src = 3;
    }
    if (!v)
        return 0;
    if (n >= outsz)
        return -1;
    memcpy(out, v, n);
    out[n] = '\0';
    return n ? src : 0;
}

int
emu_relay_hc_path(const char *name, char *out, size_t outsz)
{
    int n = snprintf(out, outsz, "/$hc/");
    if (n < 0 || (size_t)n >= outsz)
        return AHG_ELIMIT;
    size_t o = (size_t)n;
    const char *s = name;
    for (;;) {
        size_t seg = strcspn(s, "/");
        if (ahg_url_encode(s, seg, out + o, outsz - o) != AHG_OK)
            return AHG_ELIMIT;
        o += strlen(out + o);
        if (!s[seg])
            break;
        if (o + 2 > outsz)
            return AHG_ELIMIT;
        out[o++] = '/';
        out[o] = '\0';
        s += seg + 1;
    }
    return AHG_OK;
}

int
emu_relay_address(const char *base, const char *path_raw, const char *query, const char *action,
                  const char *id, char *out, size_t outsz)
{
    char enc[3 * EMU_RELAY_ID_MAX + 1];
    if (ahg_url_encode(id, strlen(id), enc, sizeof(enc)) != AHG_OK)
        return AHG_ELIMIT;
    const char *q = "";
    char *tmp = NULL;
    if (query && *query) {
        size_t ql = strlen(query);
        tmp = malloc(2 * ql + 8);
        if (!tmp)
            return AHG_ENOMEM;
        char *src = tmp + ql + 4;
        src[0] = '/';
        src[1] = '?';
        memcpy(src + 2, query, ql + 1);
        if (ahg_url_strip_sbhc(src, tmp, ql + 4) != AHG_OK) {
            free(tmp);
            return AHG_ELIMIT;
        }
        q = tmp[1] == '?' ? tmp + 2 : "";
    }
    int n = snprintf(out, outsz, "%s%s?%s%ssb-hc-action=%s&sb-hc-id=%s", base, path_raw, q,
                     *q ? "&" : "", action, enc);
    free(tmp);
    return n < 0 || (size_t)n >= outsz ? AHG_ELIMIT : AHG_OK;
}

bool
emu_relay_id_base_ok(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (!isalnum(c) && c != '-' && c != '_' && c != '.')
            return false;
        if (n >= 64)
            return false;
    }
    return n > 0;
}

/* True when the comma-separated list contains tracking (case-insensitive, trimmed). */
static bool
list_has(const char *list, const char *tracking)
{
    size_t tl = strlen(tracking);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t n = strcspn(p, ",");
        size_t m = n;
        while (m && (p[m - 1] == ' ' || p[m - 1] == '\t'))
            m--;
        if (m && m == tl && !strncasecmp(p, tracking, tl))
            return true;
        p += n;
    }
    return false;
}

bool
emu_relay_listener_allowed(const char *tracking, const char *allowed, const char *disallowed)
{
    if (allowed && *allowed && !list_has(allowed, tracking))
        return false;
    if (disallowed && *disallowed && list_has(disallowed, tracking))
        return false;
    return true;
}

int
emu_relay_decode_path(const char *raw, char *out, size_t outsz)
{
    size_t n = 0;
    int rc = ahg_url_decode(raw, strlen(raw), out, outsz, false, &n);
    if (rc == AHG_OK && strlen(out) != n)
        rc = AHG_EINVAL; /* %00 */
    return rc;
}

const char *
emu_relay_peer_addr(struct ahg_conn *c)
{
    const char *a = c ? ahg_conn_peer_addr(c) : NULL;
    if (!a || !*a)
        return NULL;
    if (!strncasecmp(a, "::ffff:", 7) && strchr(a + 7, '.') && !strchr(a + 7, ':'))
        return a + 7;
    return a;
}

/* ---- answering errors ---- */

void
emu_relay_respond_desc(struct ahg_httpd_req *r, int status, const char *desc)
{
    char reason[EMU_RELAY_DESC_MAX];
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)desc; *p && o + 1 < sizeof(reason); p++)
        reason[o++] = (char)((*p < 0x20 && *p != '\t') || *p == 0x7f ? ' ' : *p);
    reason[o] = '\0';
    int err = 0;
    struct ahg_http_head *h = ahg_http_head_new_response(status, reason, &err);
    if (!h)
        h = ahg_http_head_new_response(status, NULL, &err);
    char body[EMU_RELAY_DESC_MAX + 2];
    int bl = snprintf(body, sizeof(body), "%s\n", reason);
    if (bl < 0 || (size_t)bl >= sizeof(body))
        bl = 0;
    if (!h || ahg_http_head_add(h, "Content-Type", "text/plain; charset=utf-8") != AHG_OK ||
        ahg_httpd_resp_begin(r, h, bl) != AHG_OK) {
        if (!ahg_httpd_resp_started(r)) {
            ahg_http_head_free(h);
            ahg_httpd_resp_abort(r);
        }
        return;
    }
    if (ahg_httpd_resp_write(r, body, (size_t)bl) != AHG_OK) {
        ahg_httpd_resp_abort(r);
        return;
    }
    (void)ahg_httpd_resp_end(r);
}

void
emu_relay_fail(struct emu *e, struct ahg_httpd_req *r, int status, const char *msg,
               const char *path)
{
    char desc[EMU_RELAY_DESC_MAX];
    emu_auth_describe(e, msg, path ? path : "", desc, sizeof(desc));
    if (!desc[0])
        (void)snprintf(desc, sizeof(desc), "%s", msg);
    emu_relay_respond_desc(r, status, desc);
}

static void
fail_auth(struct emu *e, struct ahg_httpd_req *r, const struct emu_auth_result *res)
{
    (void)e; /* emu_auth_check() counted the failure */
    emu_relay_respond_desc(r, res->status ? res->status : 401,
                           res->desc[0] ? res->desc : "Unauthorized");
}

/* ---- listener choice ---- */

struct emu_lsn *
emu_relay_pick(struct emu_rhc *rh, const struct ahg_http_head *head, bool *filtered)
{
    const char *allowed =
        head ? ahg_http_head_get(head, "Microsoft-Relay-AllowedListeners", NULL) : NULL;
    const char *disallowed =
        head ? ahg_http_head_get(head, "Microsoft-Relay-DisallowedListeners", NULL) : NULL;
    struct emu_lsn *pick = NULL;
    unsigned seen = 0, live = 0;
    if (rh) {
        ahg_list_foreach (n, &rh->lsns) {
            struct emu_lsn *l = AHG_LIST_ENTRY(n, struct emu_lsn, link);
            if (l->closing)
                continue;
            live++;
            if (!emu_relay_listener_allowed(l->tracking, allowed, disallowed))
                continue;
            seen++;
            if (rng_next(rh->rl) % seen == 0)
                pick = l;
        }
    }
    if (filtered)
        *filtered = live > 0 && !pick;
    return pick;
}

struct emu_lsn *
emu_relay_pick_or_fail(struct emu *e, struct emu_rhc *rh, struct ahg_httpd_req *r,
                       const char *dpath)
{
    bool filtered = false;
    struct emu_lsn *l = rh ? emu_relay_pick(rh, ahg_httpd_req_head(r), &filtered) : NULL;
    if (!l)
        emu_relay_fail(e, r, 404,
                       filtered ? "None of the connected listeners meet the "
                                  "AllowedListeners/DisallowedListeners criteria."
                                : "There are no listeners connected for the endpoint.",
                       dpath);
    return l;
}

/* ---- control channel output ---- */

int
emu_relay_ctl_send(struct emu_lsn *l, const char *json, size_t jlen, const void *body, size_t blen,
                   bool with_body)
{
    if (l->closing || !l->ws || ahg_wsconn_closing(l->ws))
        return AHG_ECLOSED;
    if (!l->q_head && ahg_wsconn_writable(l->ws)) {
        int rc = ahg_wsconn_send(l->ws, AHG_WS_TEXT, json, jlen);
        if (rc == AHG_OK && with_body)
            rc = ahg_wsconn_send(l->ws, AHG_WS_BINARY, body, blen);
        return rc;
    }
    size_t need = jlen + (with_body ? blen : 0);
    if (l->q_bytes + need > EMU_RELAY_CTLQ_MAX)
        return AHG_ELIMIT;
    struct emu_ctlq *q = malloc(sizeof(*q) + need);
    if (!q)
        return AHG_ENOMEM;
    q->next = NULL;
    q->jlen = jlen;
    q->blen = with_body ? blen : 0;
    q->with_body = with_body;
    memcpy(q->data, json, jlen);
    if (with_body && blen)
        memcpy(q->data + jlen, body, blen);
    if (l->q_tail)
        l->q_tail->next = q;
    else
        l->q_head = q;
    l->q_tail = q;
    l->q_bytes += need;
    return AHG_OK;
}

static void
ctlq_flush(struct emu_lsn *l)
{
    while (l->q_head && l->ws && ahg_wsconn_writable(l->ws)) {
        struct emu_ctlq *q = l->q_head;
        l->q_head = q->next;
        if (!l->q_head)
            l->q_tail = NULL;
        l->q_bytes -= q->jlen + q->blen;
        int rc = ahg_wsconn_send(l->ws, AHG_WS_TEXT, q->data, q->jlen);
        if (rc == AHG_OK && q->with_body)
            rc = ahg_wsconn_send(l->ws, AHG_WS_BINARY, q->data + q->jlen, q->blen);
        free(q);
        if (rc != AHG_OK)
            break;
    }
}

static void
ctlq_free(struct emu_lsn *l)
{
    while (l->q_head) {
        struct emu_ctlq *q = l->q_head;
        l->q_head = q->next;
        free(q);
    }
    l->q_tail = NULL;
    l->q_bytes = 0;
}

/* ---- listener control channel ---- */

static void
lsn_detach(struct emu_lsn *l)
{
    struct emu_rhc *rh = l->rh;
    if (!rh)
        return;
    ahg_list_remove(&rh->lsns, &l->link);
    rh->rl->e->m_listeners--;
    l->rh = NULL;
}

/* Stops giving the listener work and closes its channel. */
static void
lsn_shut(struct emu_lsn *l, uint16_t code, const char *reason)
{
    l->closing = true;
    lsn_detach(l);
    ahg_timer_stop(&l->expiry);
    if (l->ws)
        ws_close(l->rl, l->ws, code, reason);
}

static void
lsn_expired(struct ahg_timer *t)
{
    struct emu_lsn *l = t->ud;
    AHG_LOG_INFO("relay: listener %s on %s: token expired, closing with 1008", l->tracking,
                 l->path);
    lsn_shut(l, AHG_WS_CLOSE_POLICY, "ExpiredToken: the listener's token has expired");
}

static void
lsn_arm_expiry(struct emu_lsn *l, const char *token)
{
    ahg_timer_stop(&l->expiry);
    long long left = token && *token ? emu_auth_expiry(token) : -1;
    if (left < 0)
        return;
    uint64_t ms = ((uint64_t)left + l->rl->e->token_grace_s) * 1000u;
    ahg_timer_start(&l->expiry, ms ? ms : 1);
}

static void
lsn_renew(struct emu_lsn *l, const char *token)
{
    struct emu *e = l->rl->e;
    if (!l->rh || l->closing)
        return;
    struct emu_auth_result res;
    memset(&res, 0, sizeof(res));
    if (!emu_auth_check(e, token, l->host[0] ? l->host : NULL, l->rh->hc, l->rh->hc->name,
                        EMU_RIGHT_LISTEN, &res)) {
        char reason[AHG_WS_MAX_CLOSE_REASON + 1];
        size_t k = strlen(res.desc);
        if (k > sizeof(reason) - 13)
            k = sizeof(reason) - 13;
        memcpy(reason, "renewToken: ", 12);
        memcpy(reason + 12, res.desc, k);
        reason[12 + k] = '\0';
        AHG_LOG_INFO("relay: listener %s on %s: renewToken refused (%d), closing with 1008",
                     l->tracking, l->path, res.status);
        lsn_shut(l, AHG_WS_CLOSE_POLICY, reason);
        return;
    }
    lsn_arm_expiry(l, token);
}

static void
lsn_message(struct emu_lsn *l, const char *json, size_t len)
{
    struct ahg_hcmsg m;
    ahg_hcmsg_init(&m, AHG_HCMSG_NONE);
    int rc = ahg_hcmsg_parse(json, len, &m);
    if (rc != AHG_OK) {
        AHG_LOG_WARN("relay: listener %s on %s: ignoring an unrecognised control message (%zu "
                     "bytes, %s)",
                     l->tracking, l->path, len, ahg_strerror(rc));
        return;
    }
    switch (m.type) {
    case AHG_HCMSG_RESPONSE: {
        struct emu_hreq *sink = NULL;
        if (emu_relay_http_ctl_response(l, &m, &sink)) {
            l->rd.await_body = true;
            l->rd.sink = sink;
        } else {
            l->rd.stray_ok = true;
        }
        break;
    }
    case AHG_HCMSG_RENEW_TOKEN:
        lsn_renew(l, m.token);
        break;
    default:
        AHG_LOG_WARN("relay: listener %s on %s: ignoring a '%s' message", l->tracking, l->path,
                     ahg_hcmsg_type_name(m.type));
        break;
    }
    ahg_hcmsg_clear(&m);
}

static void
lsn_frame_begin(struct ahg_wsconn *ws, enum ahg_ws_opcode op, bool fin, uint64_t len)
{
    struct emu_lsn *l = ahg_wsconn_ud(ws);
    struct emu_reader *rd = &l->rd;
    if (rd->st == EMU_RD_DEAD)
        return;
    rd->fin = fin;
    if (op == AHG_WS_TEXT || (op == AHG_WS_CONT && rd->st == EMU_RD_TEXT)) {
        if (op == AHG_WS_TEXT) {
            if (rd->await_body) {
                /* a response promised a body message and a text message came instead */
                struct emu_hreq *h = rd->sink;
                rd->await_body = false;
                rd->sink = NULL;
                if (h)
                    emu_relay_http_listener_gone(h);
            }
            rd->stray_ok = false;
            ahg_buf_reset(&rd->text);
            rd->st = EMU_RD_TEXT;
        }
        if (len > EMU_RELAY_CTL_MAX - ahg_buf_len(&rd->text)) {
            rd->st = EMU_RD_DEAD;
            AHG_LOG_WARN("relay: listener %s on %s: control message over 64 KiB, closing",
                         l->tracking, l->path);
            lsn_shut(l, AHG_WS_CLOSE_TOO_BIG, "control message too large");
        }
        return;
    }
    if (op == AHG_WS_BINARY) {
        bool stray = rd->stray_ok;
        rd->stray_ok = false;
        if (rd->await_body) {
            rd->await_body = false;
            rd->st = rd->sink ? EMU_RD_BODY : EMU_RD_SKIP;
        } else {
            if (!(stray && fin && len == 0))
                AHG_LOG_WARN("relay: listener %s on %s: ignoring an unexpected binary message",
                             l->tracking, l->path);
            rd->st = EMU_RD_SKIP;
            return;
        }
    }
    if (rd->st == EMU_RD_BODY && rd->sink)
        emu_relay_http_body_begin(rd->sink, ws, l, fin, len);
}

static void
lsn_frame_data(struct ahg_wsconn *ws, const unsigned char *p, size_t n)
{
    struct emu_lsn *l = ahg_wsconn_ud(ws);
    struct emu_reader *rd = &l->rd;
    if (rd->st == EMU_RD_TEXT) {
        if (ahg_buf_append(&rd->text, p, n) != AHG_OK) {
            rd->st = EMU_RD_DEAD;
            lsn_shut(l, AHG_WS_CLOSE_INTERNAL_ERROR, "out of memory");
        }
    } else if (rd->st == EMU_RD_BODY && rd->sink) {
        emu_relay_http_body_data(rd->sink, p, n);
    }
}

static void
lsn_frame_end(struct ahg_wsconn *ws)
{
    struct emu_lsn *l = ahg_wsconn_ud(ws);
    struct emu_reader *rd = &l->rd;
    if (!rd->fin || rd->st == EMU_RD_DEAD)
        return;
    enum emu_rd_state st = rd->st;
    rd->st = EMU_RD_IDLE;
    if (st == EMU_RD_TEXT) {
        lsn_message(l, (const char *)ahg_buf_data(&rd->text), ahg_buf_len(&rd->text));
        if (ahg_buf_len(&rd->text) > 4096)
            ahg_buf_free(&rd->text);
        else
            ahg_buf_reset(&rd->text);
    } else if (st == EMU_RD_BODY) {
        struct emu_hreq *h = rd->sink;
        rd->sink = NULL;
        if (h)
            emu_relay_http_body_end(h);
    }
}

static void
lsn_drain(struct ahg_wsconn *ws)
{
    ctlq_flush(ahg_wsconn_ud(ws));
}

void
emu_relay_lsn_resume(struct emu_lsn *l)
{
    if (l && l->ws)
        ahg_wsconn_resume_read(l->ws);
}

static void
lsn_closed(struct ahg_wsconn *ws, uint16_t code)
{
    struct emu_lsn *l = ahg_wsconn_ud(ws);
    AHG_LOG_INFO("relay: listener %s on %s disconnected (%u)", l->tracking, l->path, code);
    ahg_timer_stop(&l->expiry);
    lsn_detach(l);
    l->ws = NULL;
    l->closing = true;
    ctlq_free(l);
    l->rd.sink = NULL;
    l->rd.st = EMU_RD_DEAD;
    emu_relay_http_listener_gone_all(l);
    ahg_buf_free(&l->rd.text);
    free(l);
}

static const struct ahg_wsconn_cbs lsn_cbs = {
    .on_frame_begin = lsn_frame_begin,
    .on_frame_data = lsn_frame_data,
    .on_frame_end = lsn_frame_end,
    .on_drain = lsn_drain,
    .on_close = lsn_closed,
};

static void
handle_listen(struct emu_relay *rl, struct ahg_httpd_req *r, const char *dpath)
{
    struct emu *e = rl->e;
    const struct ahg_http_head *head = ahg_httpd_req_head(r);
    const char *query = ahg_httpd_req_query(r);
    const char *rest = NULL;
    struct emu_hc *hc = emu_hc_match(e, dpath, &rest);
    if (!hc || (rest && *rest)) {
        emu_relay_fail(e, r, 404, "Endpoint does not exist.", dpath);
        return;
    }
    int bad = ahg_wsconn_check_upgrade(head);
    if (bad) {
        emu_relay_fail(e, r, bad, bad == 426 ? "Unsupported WebSocket version." : "Bad Request.",
                       dpath);
        return;
    }
    char *tok = malloc(EMU_RELAY_TOKEN_MAX);
    if (!tok) {
        emu_relay_fail(e, r, 500, "Internal error.", dpath);
        return;
    }
    int src = emu_relay_token(head, query, false, tok, EMU_RELAY_TOKEN_MAX);
    if (src < 0)
        (void)snprintf(tok, EMU_RELAY_TOKEN_MAX, "oversized-token");
    struct emu_auth_result res;
    memset(&res, 0, sizeof(res));
    if (!emu_auth_check(e, src ? tok : NULL, ahg_http_head_get(head, "Host", NULL), hc, hc->name,
                        EMU_RIGHT_LISTEN, &res)) {
        free(tok);
        fail_auth(e, r, &res);
        return;
    }
    struct emu_rhc *rh = emu_relay_rhc(rl, hc);
    if (!rh) {
        free(tok);
        emu_relay_fail(e, r, 500, "Internal error.", dpath);
        return;
    }
    if (rh->lsns.count >= e->max_listeners) {
        char msg[256];
        (void)snprintf(msg, sizeof(msg),
                       "QuotaExceeded: The number of listeners for the endpoint has reached the "
                       "limit of %u (MaximumListenersPerEndpoint).",
                       e->max_listeners);
        free(tok);
        emu_relay_fail(e, r, 403, msg, dpath);
        return;
    }
    struct emu_lsn *l = calloc(1, sizeof(*l));
    if (!l) {
        free(tok);
        emu_relay_fail(e, r, 500, "Internal error.", dpath);
        return;
    }
    l->rl = rl;
    (void)snprintf(l->path, sizeof(l->path), "%s", hc->name);
    const char *host = ahg_http_head_get(head, "Host", NULL);
    if (host && strlen(host) < sizeof(l->host))
        (void)snprintf(l->host, sizeof(l->host), "%s", host);
    char id[EMU_RELAY_ID_MAX];
    if (ahg_url_query_get(query, "sb-hc-id", id, sizeof(id), true) == AHG_OK && id[0] &&
        strlen(id) < sizeof(l->tracking))
        (void)snprintf(l->tracking, sizeof(l->tracking), "%s", id);
    else if (ahg_rand_uuid(l->tracking) != AHG_OK)
        (void)snprintf(l->tracking, sizeof(l->tracking), "listener");
    ahg_buf_init(&l->rd.text, EMU_RELAY_CTL_MAX);
    ahg_timer_init(&l->expiry, e->loop, lsn_expired, l);
    char proto[128];
    first_token(ahg_http_head_get(head, "Sec-WebSocket-Protocol", NULL), proto, sizeof(proto));
    int err = 0;
    l->ws = ahg_wsconn_accept(r, proto[0] ? proto : NULL, NULL, &lsn_cbs, l, &err);
    if (!l->ws) {
        free(tok);
        free(l);
        emu_relay_fail(e, r, 500, "Internal error.", dpath);
        return;
    }
    l->rh = rh;
    ahg_list_push_front(&rh->lsns, &l->link);
    e->m_listeners++;
    e->m_listen_total++;
    lsn_arm_expiry(l, src ? tok : NULL);
    free(tok);
    AHG_LOG_INFO("relay: listener %s connected to %s from %s (%u listener%s)", l->tracking, l->path,
                 ahg_conn_peer_addr(ahg_wsconn_conn(l->ws)), (unsigned)rh->lsns.count,
                 rh->lsns.count == 1 ? "" : "s");
}

/* ---- WebSocket splice ---- */

static int
pipe_side(const struct emu_pipe *p, const struct ahg_wsconn *ws)
{
    return p->ws[0] == ws ? 0 : 1;
}

static void
pipe_unlink(struct emu_pipe *p)
{
    struct emu_rhc *rh = p->rh;
    if (!rh)
        return;
    ahg_list_remove(&rh->pipes, &p->link);
    p->rh = NULL;
}

static void
pipe_frame_begin(struct ahg_wsconn *ws, enum ahg_ws_opcode op, bool fin, uint64_t len)
{
    struct emu_pipe *p = ahg_wsconn_ud(ws);
    int i = pipe_side(p, ws);
    struct ahg_wsconn *dst = p->ws[1 - i];
    p->drop[i] = !dst || ahg_wsconn_send_frame(dst, op, fin, len) != AHG_OK;
}

static void
pipe_frame_data(struct ahg_wsconn *ws, const unsigned char *d, size_t n)
{
    struct emu_pipe *p = ahg_wsconn_ud(ws);
    int i = pipe_side(p, ws);
    struct ahg_wsconn *dst = p->ws[1 - i];
    if (p->drop[i] || !dst)
        return;
    if (ahg_wsconn_send_data(dst, d, n) != AHG_OK) {
        p->drop[i] = true;
        ws_close(p->rl, dst, AHG_WS_CLOSE_INTERNAL_ERROR, NULL);
        return;
    }
    p->rl->e->m_bytes_spliced += n;
    if (!p->paused[i] && !ahg_wsconn_writable(dst)) {
        p->paused[i] = true;
        ahg_wsconn_pause_read(ws);
    }
}

static void
pipe_drain(struct ahg_wsconn *ws)
{
    struct emu_pipe *p = ahg_wsconn_ud(ws);
    int o = 1 - pipe_side(p, ws);
    if (p->paused[o] && p->ws[o]) {
        p->paused[o] = false;
        ahg_wsconn_resume_read(p->ws[o]);
    }
}

static void
pipe_peer_close(struct ahg_wsconn *ws, uint16_t code, const char *reason, size_t rlen)
{
    struct emu_pipe *p = ahg_wsconn_ud(ws);
    int i = pipe_side(p, ws);
    struct ahg_wsconn *dst = p->ws[1 - i];
    char rs[AHG_WS_MAX_CLOSE_REASON + 1];
    size_t k = rlen < sizeof(rs) - 1 ? rlen : sizeof(rs) - 1;
    memcpy(rs, reason, k);
    rs[k] = '\0';
    if (dst) {
        /* forwarded end to end: ws's own close is answered once dst answers (or goes) */
        ws_close(p->rl, dst, code, rs);
    } else {
        ws_close(p->rl, ws, code, rs);
    }
}

static void
pipe_closed(struct ahg_wsconn *ws, uint16_t code)
{
    struct emu_pipe *p = ahg_wsconn_ud(ws);
    int i = pipe_side(p, ws);
    p->ws[i] = NULL;
    struct ahg_wsconn *o = p->ws[1 - i];
    if (o) {
        uint16_t c = code;
        if (c == AHG_WS_CLOSE_ABNORMAL || c == AHG_WS_CLOSE_NO_STATUS ||
            !ahg_ws_close_code_is_valid(c))
            c = AHG_WS_CLOSE_GOING_AWAY;
        if (p->paused[1 - i]) {
            p->paused[1 - i] = false;
            ahg_wsconn_resume_read(o);
        }
        ws_close(p->rl, o, c, NULL);
        return;
    }
    pipe_unlink(p);
    free(p);
}

static const struct ahg_wsconn_cbs pipe_cbs = {
    .on_frame_begin = pipe_frame_begin,
    .on_frame_data = pipe_frame_data,
    .on_drain = pipe_drain,
    .on_peer_close = pipe_peer_close,
    .on_close = pipe_closed,
};

/* ---- WebSocket connect / accept rendezvous ---- */

static void rdv_sender_finish(struct ahg_httpd_req *r, bool completed);
static void rdv_dial_finish(struct ahg_httpd_req *r, bool completed);

static const struct ahg_httpd_req_cbs rdv_sender_cbs = {.on_finish = rdv_sender_finish};
static const struct ahg_httpd_req_cbs rdv_dial_cbs = {.on_finish = rdv_dial_finish};

struct ahg_httpd_req *
emu_take_req(struct ahg_httpd_req **slot)
{
    struct ahg_httpd_req *r = *slot;
    *slot = NULL;
    if (r)
        ahg_httpd_req_set_cbs(r, NULL, NULL);
    return r;
}

static void
rdv_free(struct emu_rdv *v)
{
    struct emu_relay *rl = v->rl;
    ahg_timer_stop(&v->timer);
    emu_relay_defer_cancel(v->df);
    v->df = NULL;
    emu_relay_id_del(rl, &v->idn);
    struct emu_rhc *rh = v->rh;
    if (rh)
        ahg_list_remove(&rh->rdvs, &v->link);
    struct ahg_httpd_req *s = emu_take_req(&v->sender);
    struct ahg_httpd_req *d = emu_take_req(&v->dial);
    free(v);
    if (s)
        ahg_httpd_resp_abort(s);
    if (d)
        ahg_httpd_resp_abort(d);
}

/* The rendezvous window is over: the waiting sender gets 504, the address becomes unknown. */
static void
rdv_expire(struct emu_rdv *v)
{
    struct emu *e = v->rl->e;
    if (v->st == RDV_HOLD) {
        v->expired = true; /* the dial in progress completes or fails first */
        return;
    }
    struct ahg_httpd_req *s = emu_take_req(&v->sender);
    char path[EMU_HC_NAME_MAX];
    (void)snprintf(path, sizeof(path), "%s", v->path);
    rdv_free(v);
    if (s)
        emu_relay_fail(e, s, 504,
                       "ConnectionNotEstablished: None of the connected listeners accepted the "
                       "connection within the allowed timeout.",
                       path);
}

static void
rdv_timer(struct ahg_timer *t)
{
    rdv_expire(t->ud);
}

static void
rdv_sender_finish(struct ahg_httpd_req *r, bool completed)
{
    struct emu_rdv *v = ahg_httpd_req_ud(r);
    (void)completed;
    v->sender = NULL;
    if (v->st == RDV_HOLD) {
        emu_relay_defer_cancel(v->df);
        v->df = NULL;
        struct ahg_httpd_req *d = emu_take_req(&v->dial);
        v->st = RDV_GONE;
        if (d)
            emu_relay_fail(v->rl->e, d, 410,
                           "The sender closed its connection before the rendezvous completed.",
                           v->path);
        if (v->expired)
            rdv_free(v);
        return;
    }
    v->st = RDV_GONE;
}

static void
rdv_dial_finish(struct ahg_httpd_req *r, bool completed)
{
    struct emu_rdv *v = ahg_httpd_req_ud(r);
    (void)completed;
    v->dial = NULL;
    emu_relay_defer_cancel(v->df);
    v->df = NULL;
    v->st = v->sender ? RDV_WAIT : RDV_GONE;
    if (v->expired)
        rdv_expire(v);
}

static void
rdv_complete(void *arg)
{
    struct emu_rdv *v = arg;
    struct emu_relay *rl = v->rl;
    struct emu *e = rl->e;
    v->df = NULL;
    if (v->st != RDV_HOLD || !v->sender || !v->dial)
        return;
    struct ahg_httpd_req *d = emu_take_req(&v->dial);
    struct ahg_httpd_req *s = emu_take_req(&v->sender);
    char path[EMU_HC_NAME_MAX];
    (void)snprintf(path, sizeof(path), "%s", v->path);
    struct emu_rhc *rh = v->rh;
    rdv_free(v);

    char proto[128];
    first_token(ahg_http_head_get(ahg_httpd_req_head(d), "Sec-WebSocket-Protocol", NULL), proto,
                sizeof(proto));
    struct emu_pipe *p = calloc(1, sizeof(*p));
    int err = 0;
    if (p) {
        p->rl = rl;
        p->ws[1] = ahg_wsconn_accept(d, proto[0] ? proto : NULL, NULL, &pipe_cbs, p, &err);
    }
    if (!p || !p->ws[1]) {
        free(p);
        emu_relay_fail(e, d, 500, "Internal error.", path);
        emu_relay_fail(e, s, 500, "Internal error.", path);
        return;
    }
    p->ws[0] = ahg_wsconn_accept(s, proto[0] ? proto : NULL, NULL, &pipe_cbs, p, &err);
    if (!p->ws[0]) {
        emu_relay_fail(e, s, 500, "Internal error.", path);
        ws_close(rl, p->ws[1], AHG_WS_CLOSE_INTERNAL_ERROR, "the sender is gone");
        return; /* the pipe goes with its listener side */
    }
    if (rh) {
        p->rh = rh;
        ahg_list_push_front(&rh->pipes, &p->link);
    }
    e->m_rendezvous++;
}

static void
rdv_dial(struct emu_rdv *v, struct ahg_httpd_req *r)
{
    struct emu_relay *rl = v->rl;
    struct emu *e = rl->e;
    const char *query = ahg_httpd_req_query(r);
    char sc[16];
    if (ahg_url_query_get(query, "sb-hc-statusCode", sc, sizeof(sc), true) == AHG_OK) {
        /* the listener rejects the connection (hc-protocol.md section 2.3) */
        char desc[EMU_RELAY_DESC_MAX];
        char *end = NULL;
        long code = strtol(sc, &end, 10);
        if (!end || *end || code < 400 || code > 599)
            code = 400;
        if (ahg_url_query_get(query, "sb-hc-statusDescription", desc, sizeof(desc), true) !=
                AHG_OK ||
            !desc[0])
            (void)snprintf(desc, sizeof(desc), "%s", ahg_http_reason((int)code));
        if (v->st == RDV_HOLD) {
            emu_relay_fail(e, r, 403, "URL is not valid.", v->path);
            return;
        }
        struct ahg_httpd_req *s = emu_take_req(&v->sender);
        rdv_free(v);
        emu_relay_respond_desc(r, 410, "Gone");
        if (s)
            emu_relay_respond_desc(s, (int)code, desc);
        return;
    }
    if (v->st == RDV_GONE) {
        emu_relay_fail(e, r, 410,
                       "The sender closed its connection before the rendezvous completed.",
                       v->path);
        return;
    }
    if (v->st == RDV_HOLD) {
        emu_relay_fail(e, r, 403, "URL is not valid.", v->path);
        return;
    }
    int bad = ahg_wsconn_check_upgrade(ahg_httpd_req_head(r));
    if (bad) {
        emu_relay_fail(e, r, bad, "Bad Request.", v->path);
        return;
    }
    v->st = RDV_HOLD;
    v->dial = r;
    ahg_httpd_req_set_cbs(r, &rdv_dial_cbs, v);
    unsigned ms = emu_latency_rendezvous_ms(e) + e->lat.sender_lane_ms + e->lat.listener_lane_ms;
    v->df = emu_relay_defer(rl, ms, rdv_complete, v);
    if (!v->df)
        rdv_complete(v);
}

static int
build_accept(struct emu_relay *rl, struct ahg_httpd_req *r, const char *address, const char *id,
             char **json, size_t *jlen)
{
    const struct ahg_http_head *head = ahg_httpd_req_head(r);
    struct ahg_conn *c = ahg_httpd_req_conn(r);
    struct ahg_hcmsg m;
    ahg_hcmsg_init(&m, AHG_HCMSG_ACCEPT);
    struct ahg_hcmsg_header *hs = calloc(head->nfields ? head->nfields : 1, sizeof(*hs));
    if (!hs)
        return AHG_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < head->nfields; i++) {
        if (!strcasecmp(head->fields[i].name, "ServiceBusAuthorization"))
            continue;
        hs[n].name = head->fields[i].name;
        hs[n].value = head->fields[i].value;
        n++;
    }
    m.address =
        (char *)(uintptr_t)address; // NOLINT(performance-no-int-to-ptr): const dropped, not written
    m.id = (char *)(uintptr_t)id;   // NOLINT(performance-no-int-to-ptr)
    m.headers = hs;
    m.nheaders = n;
    m.remote_address =
        (char *)(uintptr_t)emu_relay_peer_addr(c); // NOLINT(performance-no-int-to-ptr)
    m.remote_port = c && m.remote_address ? ahg_conn_peer_port(c) : -1;
    int rc = ahg_hcmsg_encode(&m, json, jlen);
    free(hs); /* the strings are borrowed: no ahg_hcmsg_clear() */
    (void)rl;
    return rc;
}

static void
handle_connect(struct emu_relay *rl, struct ahg_httpd_req *r, const char *dpath)
{
    struct emu *e = rl->e;
    const struct ahg_http_head *head = ahg_httpd_req_head(r);
    const char *query = ahg_httpd_req_query(r);
    const char *rest = NULL;
    struct emu_hc *hc = emu_hc_match(e, dpath, &rest);
    if (!hc) {
        emu_relay_fail(e, r, 404, "Endpoint does not exist.", dpath);
        return;
    }
    int bad = ahg_wsconn_check_upgrade(head);
    if (bad) {
        emu_relay_fail(e, r, bad, bad == 426 ? "Unsupported WebSocket version." : "Bad Request.",
                       dpath);
        return;
    }
    if (hc->requires_client_auth) {
        char *tok = malloc(EMU_RELAY_TOKEN_MAX);
        if (!tok) {
            emu_relay_fail(e, r, 500, "Internal error.", dpath);
            return;
        }
        int src = emu_relay_token(head, query, false, tok, EMU_RELAY_TOKEN_MAX);
        if (src < 0)
            (void)snprintf(tok, EMU_RELAY_TOKEN_MAX, "oversized-token");
        struct emu_auth_result res;
        memset(&res, 0, sizeof(res));
        bool ok = emu_auth_check(e, src ? tok : NULL, ahg_http_head_get(head, "Host", NULL), hc,
                                 dpath, EMU_RIGHT_SEND, &res);
        free(tok);
        if (!ok) {
            fail_auth(e, r, &res);
            return;
        }
    }
    struct emu_rhc *rh = emu_relay_rhc(rl, hc);
    struct emu_lsn *l = emu_relay_pick_or_fail(e, rh, r, dpath);
    if (!l)
        return;
    e->m_connects++;
    struct emu_rdv *v = calloc(1, sizeof(*v));
    if (!v) {
        emu_relay_fail(e, r, 500, "Internal error.", dpath);
        return;
    }
    v->rl = rl;
    v->idn.kind = EMU_IDK_RDV;
    (void)snprintf(v->path, sizeof(v->path), "%s", dpath);
    char base[EMU_RELAY_ID_MAX];
    if (ahg_url_query_get(query, "sb-hc-id", base, sizeof(base), true) != AHG_OK)
        base[0] = '\0';
    emu_relay_id_new(rl, base[0] ? base : NULL, v->idn.id);
    size_t asz = strlen(e->relay_public) + strlen(ahg_httpd_req_path(r)) + strlen(query) +
                 3 * EMU_RELAY_ID_MAX + 64;
    char *address = malloc(asz);
    char *json = NULL;
    size_t jlen = 0;
    int rc = address ? emu_relay_address(e->relay_public, ahg_httpd_req_path(r), query, "accept",
                                         v->idn.id, address, asz)
                     : AHG_ENOMEM;
    if (rc == AHG_OK)
        rc = build_accept(rl, r, address, v->idn.id, &json, &jlen);
    free(address);
    if (rc != AHG_OK) {
        free(v);
        emu_relay_fail(e, r, rc == AHG_ENOMEM ? 500 : 400,
                       rc == AHG_ENOMEM ? "Internal error." : "Bad Request.", dpath);
        return;
    }
    rc = emu_relay_ctl_send(l, json, jlen, NULL, 0, false);
    free(json);
    if (rc != AHG_OK) {
        free(v);
        emu_relay_fail(e, r, rc == AHG_ELIMIT ? 503 : 502,
                       rc == AHG_ELIMIT ? "The listener is not reading its control channel."
                                        : "The listener is gone.",
                       dpath);
        return;
    }
    emu_relay_id_add(rl, &v->idn);
    v->rh = rh;
    ahg_list_push_front(&rh->rdvs, &v->link);
    v->sender = r;
    ahg_httpd_req_set_cbs(r, &rdv_sender_cbs, v);
    ahg_timer_init(&v->timer, e->loop, rdv_timer, v);
    ahg_timer_start(&v->timer, e->rendezvous_timeout_ms);
}

static void
handle_dial(struct emu_relay *rl, struct ahg_httpd_req *r, enum emu_relay_action act,
            const char *dpath)
{
    struct emu *e = rl->e;
    char id[EMU_RELAY_ID_MAX];
    struct emu_idnode *n = NULL;
    if (ahg_url_query_get(ahg_httpd_req_query(r), "sb-hc-id", id, sizeof(id), true) == AHG_OK)
        n = emu_relay_id_find(rl, id);
    if (n && n->kind == EMU_IDK_RDV && act == EMU_RELAY_ACT_ACCEPT) {
        rdv_dial(AHG_LIST_ENTRY(n, struct emu_rdv, idn), r);
        return;
    }
    if (n && n->kind == EMU_IDK_HREQ && act == EMU_RELAY_ACT_REQUEST) {
        emu_relay_http_dial(rl, (struct emu_hreq *)(void *)n, r); /* idn is its first member */
        return;
    }
    emu_relay_fail(e, r, 403, "URL is not valid.", dpath);
}

/* ---- HC deletion ---- */

void
emu_relay_hc_deleted(struct emu *e, struct emu_hc *hc)
{
    struct emu_rhc *rh = hc ? hc->relay : NULL;
    if (!rh)
        return;
    struct emu_relay *rl = rh->rl;
    AHG_LOG_INFO("relay: hybrid connection %s deleted: closing %u listener(s)", hc->name,
                 (unsigned)rh->lsns.count);
    while (rh->lsns.head)
        lsn_shut(AHG_LIST_ENTRY(rh->lsns.head, struct emu_lsn, link), AHG_WS_CLOSE_GOING_AWAY,
                 "Hybrid connection deleted");
    ahg_list_foreach_safe (n, tmp, &rh->rdvs) {
        struct emu_rdv *v = AHG_LIST_ENTRY(n, struct emu_rdv, link);
        v->rh = NULL; /* the whole list goes: rdv_free need not unlink */
        ahg_list_node_init(&v->link);
        struct ahg_httpd_req *s = emu_take_req(&v->sender);
        struct ahg_httpd_req *d = emu_take_req(&v->dial);
        char path[EMU_HC_NAME_MAX];
        (void)snprintf(path, sizeof(path), "%s", v->path);
        rdv_free(v);
        if (s)
            emu_relay_fail(e, s, 404, "Endpoint does not exist.", path);
        if (d)
            emu_relay_fail(e, d, 404, "Endpoint does not exist.", path);
    }
    ahg_list_init(&rh->rdvs);
    while (rh->pipes.head) {
        struct emu_pipe *p = AHG_LIST_ENTRY(rh->pipes.head, struct emu_pipe, link);
        pipe_unlink(p);
        for (int i = 0; i < 2; i++)
            if (p->ws[i])
                ws_close(rl, p->ws[i], AHG_WS_CLOSE_GOING_AWAY, "Hybrid connection deleted");
    }
    emu_relay_http_hc_deleted(rh);
    hc->relay = NULL;
    free(rh);
}

/* ---- routing ---- */

static void
route(struct emu_relay *rl, struct ahg_httpd_req *r)
{
    struct emu *e = rl->e;
    const char *path = ahg_httpd_req_path(r);
    const char *after = NULL;
    if (!strncmp(path, "/$hc/", 5))
        after = path + 5;
    else if (!strncasecmp(path, "/%24hc/", 7))
        after = path + 7;
    const char *raw = after ? after : (path[0] == '/' ? path + 1 : path);
    size_t cap = strlen(raw) + 1;
    char *dpath = malloc(cap);
    if (!dpath) {
        ahg_httpd_respond_error(r, 503, "ServiceUnavailable", "out of memory", false);
        return;
    }
    if (emu_relay_decode_path(raw, dpath, cap) != AHG_OK) {
        emu_relay_fail(e, r, 400, "Bad Request. The request URL is malformed.", raw);
        free(dpath);
        return;
    }
    if (!after) {
        if (!dpath[0])
            emu_relay_fail(e, r, 404, "Endpoint does not exist.", dpath);
        else
            emu_relay_http_handle(rl, r, dpath);
        free(dpath);
        return;
    }
    enum emu_relay_action act = emu_relay_action_parse(ahg_httpd_req_query(r));
    switch (act) {
    case EMU_RELAY_ACT_LISTEN:
        handle_listen(rl, r, dpath);
        break;
    case EMU_RELAY_ACT_CONNECT:
        handle_connect(rl, r, dpath);
        break;
    case EMU_RELAY_ACT_ACCEPT:
    case EMU_RELAY_ACT_REQUEST:
        handle_dial(rl, r, act, dpath);
        break;
    default:
        emu_relay_fail(e, r, 400, "Bad Request. The sb-hc-action is not recognised.", dpath);
        break;
    }
    free(dpath);
}

/* ---- token validation cost (latency model) ---- */

struct emu_hold {
    struct emu_relay *rl;
    struct ahg_httpd_req *r;
    struct emu_defer *df;
};

static void
hold_gone(struct ahg_httpd_req *r, bool completed)
{
    struct emu_hold *h = ahg_httpd_req_ud(r);
    (void)completed;
    emu_relay_defer_cancel(h->df);
    free(h);
}

static const struct ahg_httpd_req_cbs hold_cbs = {.on_finish = hold_gone};

static void
hold_fire(void *arg)
{
    struct emu_hold *h = arg;
    struct emu_relay *rl = h->rl;
    struct ahg_httpd_req *r = h->r;
    free(h);
    ahg_httpd_req_set_cbs(r, NULL, NULL);
    ahg_httpd_req_resume_body(r);
    route(rl, r);
}

/* What validating the request's token costs: SAS or Entra ID (a JWT), 0 without a token. */
static unsigned
token_cost(struct emu_relay *rl, struct ahg_httpd_req *r)
{
    const struct emu_latency *lat = &rl->e->lat;
    if (!lat->sas_validate_ms && !lat->jwt_validate_ms)
        return 0;
    char *tok = malloc(EMU_RELAY_TOKEN_MAX);
    if (!tok)
        return 0;
    unsigned ms = 0;
    if (emu_relay_token(ahg_httpd_req_head(r), ahg_httpd_req_query(r), true, tok,
                        EMU_RELAY_TOKEN_MAX) > 0) {
        const char *t = tok;
        if (!strncasecmp(t, "Bearer ", 7))
            t += 7;
        const char *d1 = strchr(t, '.');
        if (!strncasecmp(t, "SharedAccessSignature ", 22))
            ms = lat->sas_validate_ms;
        else if (d1 && strchr(d1 + 1, '.'))
            ms = lat->jwt_validate_ms;
    }
    free(tok);
    return ms;
}

void
emu_relay_handle(struct emu *e, struct ahg_httpd_req *r)
{
    struct emu_relay *rl = e->relay;
    unsigned ms = token_cost(rl, r);
    struct emu_hold *h = ms ? calloc(1, sizeof(*h)) : NULL;
    if (!h) {
        route(rl, r);
        return;
    }
    h->rl = rl;
    h->r = r;
    ahg_httpd_req_set_cbs(r, &hold_cbs, h);
    ahg_httpd_req_pause_body(r);
    h->df = emu_relay_defer(rl, ms, hold_fire, h);
    if (!h->df)
        hold_fire(h);
}
