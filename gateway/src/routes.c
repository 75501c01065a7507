/*
 * routes.c - the route cache: ahg:route:<id> records from the store, kept in a bounded hash
 * table with an LRU list, a TTL for positive and a shorter one for negative entries. A lookup
 * that misses asks the store once, however many requests wait for it. Entries are dropped when
 * the controller publishes the id on ahg:routes, and all of them when the store comes back
 * after an outage. While the store is down an expired entry is still served (stale).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ahg/err.h"
#include "ahg/log.h"
#include "ahg/metrics.h"
#include "ahg/store.h"
#include "gw_int.h"

struct gw_route {
    struct gw_route *hnext;
    struct ahg_list_node lru;
    struct gw *gw;
    char id[GW_ID_MAX];
    bool valid;    /* info/neg hold data (possibly expired) */
    bool neg;      /* the store said: no such route */
    bool fetching; /* a GET is in flight */
    bool refetch;  /* dropped while fetching: the reply is stale, ask again */
    bool calling;  /* waiters are being called: do not evict */
    uint64_t expires_ms;
    struct ahg_list waiters;
    struct gw_route_info info;
};

struct gw_fetch {
    struct gw *gw;
    char id[GW_ID_MAX];
};

uint32_t
gw_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

static struct gw_route *
rt_find(struct gw *gw, const char *id)
{
    for (struct gw_route *e = gw->rt_hash[gw_hash(id) % GW_HASH_SIZE]; e; e = e->hnext)
        if (strcmp(e->id, id) == 0)
            return e;
    return NULL;
}

static void
rt_unlink(struct gw *gw, struct gw_route *e)
{
    struct gw_route **pp = &gw->rt_hash[gw_hash(e->id) % GW_HASH_SIZE];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    ahg_list_remove(&gw->rt_lru, &e->lru);
    gw->rt_count--;
}

static void
rt_free(struct gw_route *e)
{
    ahg_cidr_list_free(&e->info.allow);
    free(e);
}

/* Removes e unless a fetch or waiters still need it (then it is only invalidated). */
static void
rt_drop(struct gw *gw, struct gw_route *e)
{
    if (e->fetching || e->calling || !ahg_list_is_empty(&e->waiters)) {
        e->valid = false;
        if (e->fetching)
            e->refetch = true;
        return;
    }
    rt_unlink(gw, e);
    rt_free(e);
}

static void
rt_evict(struct gw *gw)
{
    size_t max = gw->o.cache_max ? gw->o.cache_max : 100000;
    struct ahg_list_node *n = gw->rt_lru.head ? gw->rt_lru.head->prev : NULL; /* tail */
    while (gw->rt_count >= max && n) {
        struct ahg_list_node *prev = n == gw->rt_lru.head ? NULL : n->prev;
        struct gw_route *e = AHG_LIST_ENTRY(n, struct gw_route, lru);
        if (!e->fetching && !e->calling && ahg_list_is_empty(&e->waiters)) {
            rt_unlink(gw, e);
            rt_free(e);
        }
        n = prev;
    }
}

/* Parses a route record into e->info. Returns AHG_OK, AHG_ENOTFOUND (a newer version), or
 * AHG_EPROTO. */
static int
rt_parse(struct gw_route *e, const char *json, size_t len)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return AHG_EPROTO;
    }
    int rc = AHG_OK;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "v");
    const cJSON *hc = cJSON_GetObjectItemCaseSensitive(root, "hc");
    const cJSON *relay = cJSON_GetObjectItemCaseSensitive(root, "relay");
    if (cJSON_IsNumber(v) && v->valuedouble > 1) {
        rc = AHG_ENOTFOUND;
        goto out;
    }
    if (!cJSON_IsString(hc) || !cJSON_IsString(relay) || !*hc->valuestring ||
        strlen(hc->valuestring) >= sizeof(e->info.hc) ||
        strlen(relay->valuestring) >= sizeof(e->info.relay)) {
        rc = AHG_EPROTO;
        goto out;
    }
    ahg_cidr_list_free(&e->info.allow);
    memset(&e->info, 0, sizeof(e->info));
    (void)snprintf(e->info.id, sizeof(e->info.id), "%s", e->id);
    (void)snprintf(e->info.hc, sizeof(e->info.hc), "%s", hc->valuestring);
    (void)snprintf(e->info.relay, sizeof(e->info.relay), "%s", relay->valuestring);
    const cJSON *pol = cJSON_GetObjectItemCaseSensitive(root, "policy");
    if (cJSON_IsObject(pol)) {
        const cJSON *ba = cJSON_GetObjectItemCaseSensitive(pol, "basic_auth");
        const cJSON *it;
        cJSON_ArrayForEach(it, ba)
        {
            const cJSON *u = cJSON_GetObjectItemCaseSensitive(it, "user");
            const cJSON *h = cJSON_GetObjectItemCaseSensitive(it, "sha256");
            if (!cJSON_IsString(u) || !cJSON_IsString(h) || strlen(h->valuestring) != 64 ||
                strlen(u->valuestring) >= sizeof(e->info.users[0].user)) {
                rc = AHG_EPROTO;
                goto out;
            }
            if (e->info.nusers == GW_MAX_USERS)
                break;
            struct gw_user *gu = &e->info.users[e->info.nusers++];
            (void)snprintf(gu->user, sizeof(gu->user), "%s", u->valuestring);
            for (size_t i = 0; i < 64; i++) {
                char c = h->valuestring[i];
                gu->sha256[i] = (char)(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
            }
            gu->sha256[64] = '\0';
        }
        const cJSON *cidrs = cJSON_GetObjectItemCaseSensitive(pol, "allow_cidr");
        cJSON_ArrayForEach(it, cidrs)
        {
            if (!cJSON_IsString(it) ||
                ahg_cidr_list_add(&e->info.allow, it->valuestring) != AHG_OK) {
                rc = AHG_EPROTO;
                goto out;
            }
        }
    }
out:
    cJSON_Delete(root);
    return rc;
}

static void rt_fetch(struct gw *gw, struct gw_route *e);

/* Calls every waiter of e with the entry's current state (or err). */
static void
rt_notify(struct gw *gw, struct gw_route *e, int err)
{
    e->calling = true;
    while (!ahg_list_is_empty(&e->waiters)) {
        struct ahg_list_node *n = e->waiters.head;
        ahg_list_remove(&e->waiters, n);
        struct gw_route_wait *w = AHG_LIST_ENTRY(n, struct gw_route_wait, node);
        w->route = NULL;
        if (err == AHG_OK && e->valid && !e->neg)
            w->cb(w, AHG_OK, &e->info);
        else
            w->cb(w, err == AHG_OK ? AHG_ENOTFOUND : err, NULL);
    }
    e->calling = false;
    if (!e->valid && !e->fetching)
        rt_drop(gw, e);
}

static void
rt_reply(struct ahg_store *s, int err, const struct ahg_store_reply *reply, void *ud)
{
    (void)s;
    struct gw_fetch *f = ud;
    struct gw *gw = f->gw;
    struct gw_route *e = gw->freeing || err == AHG_ECLOSED ? NULL : rt_find(gw, f->id);
    free(f);
    if (!e || !e->fetching)
        return;
    e->fetching = false;
    if (e->refetch) {
        e->refetch = false;
        rt_fetch(gw, e);
        return;
    }
    uint64_t now = ahg_now_ms();
    if (err != AHG_OK) {
        if (e->valid) { /* the store is down: serve what we had for a little longer */
            e->expires_ms = now + (gw->o.cache_neg_ttl_ms ? gw->o.cache_neg_ttl_ms : 2000);
            rt_notify(gw, e, AHG_OK);
        } else {
            rt_notify(gw, e, AHG_EUNAVAIL);
        }
        return;
    }
    int rc = AHG_ENOTFOUND;
    if (reply && reply->type == AHG_STORE_STR) {
        rc = rt_parse(e, reply->str, reply->len);
        if (rc == AHG_ENOTFOUND)
            AHG_LOG_WARN(
                "route %s: record version newer than this gateway knows; treated as absent", e->id);
        else if (rc != AHG_OK)
            AHG_LOG_WARN("route %s: malformed record; treated as absent", e->id);
    }
    e->valid = true;
    e->neg = rc != AHG_OK;
    if (!e->neg)
        gw->cache_warm = true;
    e->expires_ms = now + (e->neg ? (gw->o.cache_neg_ttl_ms ? gw->o.cache_neg_ttl_ms : 2000)
                                  : (gw->o.cache_ttl_ms ? gw->o.cache_ttl_ms : 30000));
    rt_notify(gw, e, AHG_OK);
}

static void
rt_fetch(struct gw *gw, struct gw_route *e)
{
    struct gw_fetch *f = calloc(1, sizeof(*f));
    char key[GW_ID_MAX + 16];
    (void)snprintf(key, sizeof(key), "ahg:route:%s", e->id);
    int rc = AHG_ENOMEM;
    if (f) {
        f->gw = gw;
        (void)snprintf(f->id, sizeof(f->id), "%s", e->id);
        e->fetching = true;
        rc = ahg_store_get(gw->store, key, rt_reply, f);
    }
    if (rc != AHG_OK) {
        free(f);
        e->fetching = false;
        e->refetch = false;
        if (e->valid) {
            e->expires_ms = ahg_now_ms() + (gw->o.cache_neg_ttl_ms ? gw->o.cache_neg_ttl_ms : 2000);
            rt_notify(gw, e, AHG_OK);
        } else {
            rt_notify(gw, e, AHG_EUNAVAIL);
        }
    }
}

void
gw_route_lookup(struct gw *gw, const char *id, struct gw_route_wait *w)
{
    ahg_list_node_init(&w->node);
    w->route = NULL;
    struct gw_route *e = rt_find(gw, id);
    if (e && e->valid && !e->fetching && ahg_now_ms() < e->expires_ms) {
        ahg_list_remove(&gw->rt_lru, &e->lru);
        ahg_list_push_front(&gw->rt_lru, &e->lru);
        if (gw->m_cache_hit)
            ahg_metric_inc(gw->m_cache_hit);
        if (e->neg)
            w->cb(w, AHG_ENOTFOUND, NULL);
        else
            w->cb(w, AHG_OK, &e->info);
        return;
    }
    if (gw->m_cache_miss)
        ahg_metric_inc(gw->m_cache_miss);
    if (!e) {
        rt_evict(gw);
        e = calloc(1, sizeof(*e));
        if (!e) {
            w->cb(w, AHG_ENOMEM, NULL);
            return;
        }
        e->gw = gw;
        (void)snprintf(e->id, sizeof(e->id), "%s", id);
        ahg_list_init(&e->waiters);
        uint32_t b = gw_hash(id) % GW_HASH_SIZE;
        e->hnext = gw->rt_hash[b];
        gw->rt_hash[b] = e;
        ahg_list_push_front(&gw->rt_lru, &e->lru);
        gw->rt_count++;
    }
    w->route = e;
    ahg_list_push_back(&e->waiters, &w->node);
    if (!e->fetching)
        rt_fetch(gw, e);
}

void
gw_route_cancel(struct gw *gw, struct gw_route_wait *w)
{
    (void)gw;
    if (w->route) {
        ahg_list_remove(&w->route->waiters, &w->node);
        w->route = NULL;
    }
}

void
gw_routes_drop(struct gw *gw, const char *id)
{
    struct gw_route *e = rt_find(gw, id);
    if (e)
        rt_drop(gw, e);
}

void
gw_routes_clear(struct gw *gw)
{
    for (size_t b = 0; b < GW_HASH_SIZE; b++) {
        struct gw_route *e = gw->rt_hash[b];
        while (e) {
            struct gw_route *next = e->hnext;
            rt_drop(gw, e);
            e = next;
        }
    }
    gw->cache_warm = false;
}

static void
on_routes_msg(struct ahg_store *s, const char *channel, const char *msg, size_t len, void *ud)
{
    (void)s;
    (void)channel;
    struct gw *gw = ud;
    char id[GW_ID_MAX];
    if (gw->freeing || len == 0 || len >= sizeof(id))
        return;
    memcpy(id, msg, len);
    id[len] = '\0';
    gw_routes_drop(gw, id);
}

static void
on_store_state(struct ahg_store *s, bool up, void *ud)
{
    (void)s;
    struct gw *gw = ud;
    if (gw->freeing)
        return;
    if (up && gw->ever_up && !gw->store_up) {
        AHG_LOG_INFO("store reconnected: dropping the route cache");
        gw_routes_clear(gw);
    }
    if (!up && gw->store_up)
        AHG_LOG_WARN("store down: serving cached routes only");
    gw->store_up = up;
    if (up)
        gw->ever_up = true;
}

int
gw_routes_init(struct gw *gw)
{
    ahg_list_init(&gw->rt_lru);
    gw->store_up = ahg_store_is_up(gw->store);
    gw->ever_up = gw->store_up;
    ahg_store_on_state(gw->store, on_store_state, gw);
    return ahg_store_subscribe(gw->store, "ahg:routes", on_routes_msg, gw);
}

void
gw_routes_free(struct gw *gw)
{
    for (size_t b = 0; b < GW_HASH_SIZE; b++) {
        struct gw_route *e = gw->rt_hash[b];
        while (e) {
            struct gw_route *next = e->hnext;
            rt_free(e);
            e = next;
        }
        gw->rt_hash[b] = NULL;
    }
    ahg_list_init(&gw->rt_lru);
    gw->rt_count = 0;
}
