/*
 * reconcile.c - the leader lease, reconcile passes and the warm pool.
 *
 * Lease (docs/state.md): a replica that is not leader INCRs ahg:leader:fence and tries
 * SET ahg:leader "<replica>:<fence>" NX PX lease_ttl; the leader renews with compare-and-expire
 * every lease_ttl/3 and considers itself leader only until the last successful renewal plus
 * lease_ttl minus a safety margin (so two replicas never act at once even when the store is
 * slow). Destructive steps check that validity right before they start. On drain the lease is
 * released with compare-and-delete so that another replica takes over at once.
 *
 * A pass (leader only): desired state = sessions in the store, actual = Hybrid Connections in
 * ARM carrying our ownership marker.
 *   1. SMEMBERS ahg:sessions; GET every session (bounded concurrency). A session past its
 *      expires_at is removed (records, claim, set members; the route change is published); a
 *      member whose record is gone is dropped from the set.
 *   2. SMEMBERS ahg:pool.
 *   3. ARM list: an HC of ours that is neither a live session's nor in the pool, and older
 *      than orphan_grace, is deleted.
 *   4. The pool is refilled to pool.size (also every second between passes).
 *
 * Store and ARM callbacks may come after the controller is freed (the store outlives it), so
 * they carry a small shared struct ctl_life instead of the controller itself.
 *
 * Threading: loop thread only.
 */
#include "ctl_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ahg/crypto.h"
#include "ahg/err.h"
#include "ahg/log.h"
#include "ahg/metrics.h"
#include "ahg/store.h"

#define REC_INFLIGHT 256u
#define REC_ARM_PAR  8u
#define POOL_PAR     4u
#define POOL_TICK_MS 1000u
#define LEASE_MARGIN 0.2

struct ctl_life {
    struct ahg_ctl *ctl; /* NULL once freed */
    unsigned refs;
};

static struct ctl_life *
life_get(struct ahg_ctl *ctl)
{
    struct ctl_life *l = ctl->life;
    l->refs++;
    return l;
}

/* Drops a reference; returns the controller or NULL when it is gone. */
static struct ahg_ctl *
life_put(struct ctl_life *l)
{
    l->refs--;
    struct ahg_ctl *ctl = l->ctl;
    if (!ctl && l->refs == 0)
        free(l);
    return ctl;
}

static bool
lease_valid(const struct ahg_ctl *ctl)
{
    return ctl->leader && ahg_now_ms() < ctl->lease_valid_until && !ctl->draining;
}

static void
set_leader(struct ahg_ctl *ctl, bool on)
{
    if (ctl->leader == on)
        return;
    ctl->leader = on;
    if (ctl->m_leader)
        ahg_metric_set(ctl->m_leader, on ? 1.0 : 0.0);
    if (on) {
        if (ctl->m_lease_acq)
            ahg_metric_inc(ctl->m_lease_acq);
        AHG_LOG_INFO("reconciler: %s is leader (fence %llu)", ctl->replica,
                     (unsigned long long)ctl->fence);
        ahg_timer_start(&ctl->rec_timer, 0);
        ahg_timer_start(&ctl->pool_timer, 0);
    } else {
        if (ctl->m_lease_lost)
            ahg_metric_inc(ctl->m_lease_lost);
        AHG_LOG_INFO("reconciler: %s is no longer leader", ctl->replica);
        ahg_timer_stop(&ctl->rec_timer);
        ahg_timer_stop(&ctl->pool_timer);
    }
}

/* ---- lease ---- */

static void
lease_next(struct ahg_ctl *ctl)
{
    uint64_t ms = ctl->o.lease_ttl_ms / 3 ? ctl->o.lease_ttl_ms / 3 : 1;
    /* a store that is not up yet (start-up, reconnect): try again soon */
    if (!ahg_store_is_up(ctl->store) && ms > 250)
        ms = 250;
    if (!ctl->draining && ctl->o.reconciler)
        ahg_timer_start(&ctl->lease_timer, ms);
}

static void
on_renew(struct ahg_store *s, int err, const struct ahg_store_reply *rep, void *ud)
{
    (void)s;
    struct ahg_ctl *ctl = life_put(ud);
    if (!ctl)
        return;
    ctl->lease_busy = false;
    if (err == AHG_OK && rep->type == AHG_STORE_INT && rep->integer == 1) {
        ctl->lease_valid_until =
            ctl->lease_sent_ms + (uint64_t)((double)ctl->o.lease_ttl_ms * (1.0 - LEASE_MARGIN));
    } else if (err == AHG_OK || ahg_now_ms() >= ctl->lease_valid_until) {
        set_leader(ctl, false); /* someone else holds it, or the store was away too long */
    }
    lease_next(ctl);
}

static void
on_acquire(struct ahg_store *s, int err, const struct ahg_store_reply *rep, void *ud)
{
    (void)s;
    struct ahg_ctl *ctl = life_put(ud);
    if (!ctl)
        return;
    ctl->lease_busy = false;
    if (err == AHG_OK && rep->type == AHG_STORE_INT && rep->integer == 1 && !ctl->draining) {
        ctl->lease_valid_until =
            ctl->lease_sent_ms + (uint64_t)((double)ctl->o.lease_ttl_ms * (1.0 - LEASE_MARGIN));
        set_leader(ctl, true);
    }
    lease_next(ctl);
}

static void
on_fence(struct ahg_store *s, int err, const struct ahg_store_reply *rep, void *ud)
{
    (void)s;
    struct ahg_ctl *ctl = life_put(ud);
    if (!ctl)
        return;
    if (err != AHG_OK || rep->type != AHG_STORE_INT || ctl->draining) {
        ctl->lease_busy = false;
        lease_next(ctl);
        return;
    }
    ctl->fence = (uint64_t)rep->integer;
    (void)snprintf(ctl->lease_val, sizeof(ctl->lease_val), "%s:%llu", ctl->replica,
                   (unsigned long long)ctl->fence);
    ctl->lease_sent_ms = ahg_now_ms();
    if (ahg_store_set(ctl->store, "ahg:leader", ctl->lease_val, strlen(ctl->lease_val),
                      ctl->o.lease_ttl_ms, AHG_STORE_NX, on_acquire, life_get(ctl)) != AHG_OK) {
        life_put(ctl->life);
        ctl->lease_busy = false;
        lease_next(ctl);
    }
}

static void
on_lease_timer(struct ahg_timer *t)
{
    struct ahg_ctl *ctl = t->ud;
    if (ctl->lease_busy || ctl->draining)
        return;
    ctl->lease_busy = true;
    int rc;
    if (ctl->leader) {
        ctl->lease_sent_ms = ahg_now_ms();
        rc = ahg_store_cas_pexpire(ctl->store, "ahg:leader", ctl->lease_val, ctl->o.lease_ttl_ms,
                                   on_renew, life_get(ctl));
    } else {
        rc = ahg_store_incr(ctl->store, "ahg:leader:fence", on_fence, life_get(ctl));
    }
    if (rc != AHG_OK) {
        life_put(ctl->life);
        ctl->lease_busy = false;
        if (ctl->leader && ahg_now_ms() >= ctl->lease_valid_until)
            set_leader(ctl, false);
        lease_next(ctl);
    }
}

/* ---- pool ---- */

struct pool_put {
    struct ctl_life *life;
    char hc[CTL_HC_MAX + 1];
};

static void
on_pool_added(struct ahg_store *s, int err, const struct ahg_store_reply *rep, void *ud)
{
    (void)s;
    (void)rep;
    struct ahg_ctl *ctl = life_put(ud);
    if (!ctl)
        return;
    ctl->pool_creating--; /* counted until it is in the set, so SCARD + creating is exact */
    if (err != AHG_OK)
        AHG_LOG_WARN("pool: cannot record a new Hybrid Connection (%s); the reconciler collects it",
                     ahg_strerror(err));
    else if (!ctl->freeing)
        ahg_timer_start(&ctl->pool_timer, 0);
}

static void
on_pool_put(const struct ahg_arm_result *res, void *ud)
{
    struct pool_put *p = ud;
    struct ahg_ctl *ctl = life_put(p->life);
    if (!ctl) {
        free(p);
        return;
    }
    if (res->err != AHG_OK) {
        ctl->pool_creating--;
        if (res->err != AHG_ECLOSED) {
            if (ctl->m_arm_err)
                ahg_metric_inc(ctl->m_arm_err);
            AHG_LOG_WARN("pool: ARM PUT failed: %s (%d %s)", ahg_strerror(res->err), res->status,
                         res->code);
        }
        free(p);
        return;
    }
    if (ctl->m_hc_created)
        ahg_metric_inc(ctl->m_hc_created);
    if (ctl->m_pool_created)
        ahg_metric_inc(ctl->m_pool_created);
    if (ahg_store_sadd(ctl->store, "ahg:pool", p->hc, on_pool_added, life_get(ctl)) != AHG_OK) {
        life_put(ctl->life);
        ctl->pool_creating--;
    }
    free(p);
}

static void
pool_fill(struct ahg_ctl *ctl, long long have)
{
    long long want = (long long)ctl->o.pool_size - have - (long long)ctl->pool_creating;
    while (want-- > 0 && ctl->pool_creating < POOL_PAR && lease_valid(ctl)) {
        struct pool_put *p = calloc(1, sizeof(*p));
        if (!p)
            return;
        char rnd[13];
        (void)ahg_rand_hex(rnd, 6);
        (void)snprintf(p->hc, sizeof(p->hc), "ahg-%s", rnd);
        char md[256];
        ctl_metadata(ctl, NULL, md, sizeof(md));
        p->life = life_get(ctl);
        if (ahg_arm_hc_put(ctl->arm, p->hc, md, on_pool_put, p, NULL) != AHG_OK) {
            life_put(p->life);
            free(p);
            return;
        }
        ctl->pool_creating++;
    }
}

static void
on_pool_card(struct ahg_store *s, int err, const struct ahg_store_reply *rep, void *ud)
{
    (void)s;
    struct ahg_ctl *ctl = life_put(ud);
    if (!ctl)
        return;
    ctl->pool_checking = false;
    if (err == AHG_OK && rep->type == AHG_STORE_INT)
        pool_fill(ctl, rep->integer);
    if (ctl->leader && !ctl->draining)
        ahg_timer_start(&ctl->pool_timer, POOL_TICK_MS);
}

static void
on_pool_timer(struct ahg_timer *t)
{
    struct ahg_ctl *ctl = t->ud;
    if (!ctl->o.pool_size || !lease_valid(ctl) || ctl->pool_checking)
        return;
    ctl->pool_checking = true;
    if (ahg_store_scard(ctl->store, "ahg:pool", on_pool_card, life_get(ctl)) != AHG_OK) {
        life_put(ctl->life);
        ctl->pool_checking = false;
        ahg_timer_start(&ctl->pool_timer, POOL_TICK_MS);
    }
}

void
ctl_pool_kick(struct ahg_ctl *ctl)
{
    if (ctl->o.pool_size && ctl->leader && !ctl->pool_checking)
        ahg_timer_start(&ctl->pool_timer, 0);
}

/* ---- reconcile pass ---- */

struct ctl_pass {
    struct ctl_life *life;
    uint64_t start_ms;
    unsigned pending;
    bool failed;
    /* sessions */
    char **sids;
    size_t nsids, next_sid;
    /* names to keep: live sessions' HCs and the pool */
    char **keep;
    size_t nkeep, capkeep;
    /* ARM */
    char **orphan_names; /* names of HCs to delete (decided when the ARM list arrives) */
    size_t nhcs, norphans, next_hc;
    unsigned expired, orphans;
};

static void pass_sessions_step(struct ctl_pass *p);
static void pass_orphans_step(struct ctl_pass *p);

static void
pass_free(struct ctl_pass *p)
{
    for (size_t i = 0; i < p->nsids; i++)
        free(p->sids[i]);
    free(p->sids);
    for (size_t i = 0; i < p->nkeep; i++)
        free(p->keep[i]);
    free(p->keep);
    for (size_t i = 0; i < p->norphans; i++)
        free(p->orphan_names[i]);
    free(p->orphan_names);
    free(p);
}

static void
keep_add(struct ctl_pass *p, const char *name)
{
    if (p->nkeep == p->capkeep) {
        size_t cap = p->capkeep ? p->capkeep * 2 : 64;
        char **v = realloc(p->keep, cap * sizeof(*v));
        if (!v) {
            p->failed = true;
            return;
        }
        p->keep = v;
        p->capkeep = cap;
    }
    size_t n = strlen(name) + 1;
    char *c = malloc(n);
    if (!c) {
        p->failed = true;
        return;
    }
    memcpy(c, name, n);
    p->keep[p->nkeep++] = c;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The pass is over (or abandoned): account and schedule the next. */
static void
pass_end(struct ahg_ctl *ctl, struct ctl_pass *p)
{
    ctl->pass = NULL;
    uint64_t ms = ahg_now_ms() - p->start_ms;
    if (!p->failed) {
        ctl->passes++;
        ctl->last_pass_ms = ms;
        if (ctl->m_passes)
            ahg_metric_inc(ctl->m_passes);
        if (ctl->m_pass_seconds)
            ahg_metric_observe(ctl->m_pass_seconds, (double)ms / 1000.0);
        AHG_LOGF(p->expired || p->orphans ? AHG_LOG_LVL_INFO : AHG_LOG_LVL_DEBUG, NULL,
                 "reconcile: %zu sessions, %zu HCs, %u expired, %u orphans deleted, %llu ms",
                 p->nsids, p->nhcs, p->expired, p->orphans, (unsigned long long)ms);
    } else {
        AHG_LOG_WARN("reconcile: pass abandoned after %llu ms (store or ARM unavailable, or the "
                     "lease was lost)",
                     (unsigned long long)ms);
    }
    life_put(p->life);
    pass_free(p);
    if (ctl->leader && !ctl->draining && !ctl->freeing)
        ahg_timer_start(&ctl->rec_timer, ctl->o.reconcile_interval_ms);
}

/* Common entry of pass callbacks: NULL when the controller is gone (p freed if last). */
static struct ahg_ctl *
pass_back(struct ctl_pass *p)
{
    p->pending--;
    struct ahg_ctl *ctl = p->life->ctl;
    if (!ctl) {
        if (p->pending == 0) {
            life_put(p->life);
            pass_free(p);
        }
        return NULL;
    }
    return ctl;
}

/* -- step 3: orphans -- */

static void
on_orphan_deleted(const struct ahg_arm_result *res, void *ud)
{
    struct ctl_pass *p = ud;
    struct ahg_ctl *ctl = pass_back(p);
    if (!ctl)
        return;
    if (res->err == AHG_OK) {
        p->orphans++;
        if (ctl->m_orphans)
            ahg_metric_inc(ctl->m_orphans);
        if (ctl->m_hc_deleted)
            ahg_metric_inc(ctl->m_hc_deleted);
    } else if (res->err != AHG_ECLOSED) {
        if (ctl->m_arm_err)
            ahg_metric_inc(ctl->m_arm_err);
        AHG_LOG_WARN("reconcile: deleting an orphan failed: %s (%d %s)", ahg_strerror(res->err),
                     res->status, res->code);
    }
    pass_orphans_step(p);
}

static void
pass_orphans_step(struct ctl_pass *p)
{
    struct ahg_ctl *ctl = p->life->ctl;
    while (p->next_hc < p->norphans && p->pending < REC_ARM_PAR && !p->failed) {
        const char *name = p->orphan_names[p->next_hc++];
        if (!lease_valid(ctl)) { /* fencing: never delete without a valid lease */
            p->failed = true;
            break;
        }
        AHG_LOG_INFO("reconcile: deleting orphaned Hybrid Connection %s", name);
        p->pending++;
        if (ahg_arm_hc_delete(ctl->arm, name, on_orphan_deleted, p, NULL) != AHG_OK) {
            p->pending--;
            p->failed = true;
        }
    }
    if (p->pending == 0) {
        if (!p->failed)
            ctl_pool_kick(ctl); /* refilled from a fresh count, not this pass's snapshot */
        pass_end(ctl, p);
    }
}

/* True when h is ours, neither a live session's nor in the pool, and past the grace. */
static bool
is_orphan(const struct ahg_ctl *ctl, const struct ctl_pass *p, const struct ahg_arm_hc *h,
          long long now)
{
    if (!ctl_metadata_ours(ctl, h->user_metadata))
        return false;
    const char *name = h->name;
    if (p->nkeep && bsearch(&name, p->keep, p->nkeep, sizeof(*p->keep), cmp_str))
        return false;
    long long grace_s = (long long)(ctl->o.orphan_grace_ms / 1000);
    if (h->created_at && now - h->created_at < grace_s)
        return false;
    if (ctl->o.orphan_grace_ms >= 1000 && !h->created_at)
        return false; /* age unknown: keep it */
    return true;
}

static void
on_arm_list(const struct ahg_arm_result *res, void *ud)
{
    struct ctl_pass *p = ud;
    struct ahg_ctl *ctl = pass_back(p);
    if (!ctl)
        return;
    if (res->err != AHG_OK) {
        if (ctl->m_arm_err)
            ahg_metric_inc(ctl->m_arm_err);
        AHG_LOG_WARN("reconcile: ARM list failed: %s (%d %s)", ahg_strerror(res->err), res->status,
                     res->code);
        p->failed = true;
        pass_end(ctl, p);
        return;
    }
    p->nhcs = res->nhcs;
    if (p->nkeep)
        qsort(p->keep, p->nkeep, sizeof(*p->keep), cmp_str);
    long long now = ctl_now_s();
    size_t cap = 0;
    for (size_t i = 0; i < res->nhcs && !p->failed; i++) {
        if (!is_orphan(ctl, p, &res->hcs[i], now))
            continue;
        if (p->norphans == cap) {
            cap = cap ? cap * 2 : 16;
            char **v = realloc(p->orphan_names, cap * sizeof(*v));
            if (!v) {
                p->failed = true;
                break;
            }
            p->orphan_names = v;
        }
        size_t n = strlen(res->hcs[i].name) + 1;
        char *c = malloc(n);
        if (!c) {
            p->failed = true;
            break;
        }
        memcpy(c, res->hcs[i].name, n);
        p->orphan_names[p->norphans++] = c;
    }
    pass_orphans_step(p);
}

/* -- step 2: the pool -- */

static void
on_pool_members(struct ahg_store *s, int err, const struct ahg_store_reply *rep, void *ud)
{
    (void)s;
    struct ctl_pass *p = ud;
    struct ahg_ctl *ctl = pass_back(p);
    if (!ctl)
        return;
    if (err != AHG_OK || p->failed) {
        p->failed = true;
        pass_end(ctl, p);
        return;
    }
    size_t n = rep->type == AHG_STORE_ARRAY ? rep->n : 0;
    for (size_t i = 0; i < n; i++)
        keep_add(p, rep->elems[i]);
    if (!lease_valid(ctl)) {
        p->failed = true;
        pass_end(ctl, p);
        return;
    }
    p->pending++;
    if (ahg_arm_hc_list(ctl->arm, 0, on_arm_list, p, NULL) != AHG_OK) {
        p->pending--;
        p->failed = true;
        pass_end(ctl, p);
    }
}

/* -- step 1: sessions -- */

static void
expire_session(struct ahg_ctl *ctl, const cJSON *s, const char *sid)
{
    const cJSON *idj = cJSON_GetObjectItemCaseSensitive(s, "id");
    const cJSON *kj = cJSON_GetObjectItemCaseSensitive(s, "keyid");
    const char *id = cJSON_IsString(idj) ? idj->valuestring : "";
    char key[AHG_STORE_MAX_KEY];
    (void)snprintf(key, sizeof(key), "ahg:session:%s", sid);
    (void)ahg_store_del(ctl->store, key, NULL, NULL);
    if (id[0]) {
        (void)snprintf(key, sizeof(key), "ahg:route:%s", id);
        (void)ahg_store_del(ctl->store, key, NULL, NULL);
        (void)snprintf(key, sizeof(key), "ahg:sub:%s", id);
        (void)ahg_store_cas_del(ctl->store, key, sid, NULL, NULL);
        (void)ahg_store_publish(ctl->store, "ahg:routes", id, strlen(id), NULL, NULL);
    }
    if (cJSON_IsString(kj)) {
        (void)snprintf(key, sizeof(key), "ahg:keysessions:%s", kj->valuestring);
        (void)ahg_store_srem(ctl->store, key, sid, NULL, NULL);
    }
    (void)ahg_store_srem(ctl->store, "ahg:sessions", sid, NULL, NULL);
    if (ctl->m_expired)
        ahg_metric_inc(ctl->m_expired);
    AHG_LOG_INFO("reconcile: session %s (tunnel %s) expired", sid, id);
}

struct sess_get {
    struct ctl_pass *p;
    size_t idx;
};

static void
on_session(struct ahg_store *s, int err, const struct ahg_store_reply *rep, void *ud)
{
    (void)s;
    struct sess_get *g = ud;
    struct ctl_pass *p = g->p;
    size_t idx = g->idx;
    free(g);
    struct ahg_ctl *ctl = pass_back(p);
    if (!ctl)
        return;
    if (err != AHG_OK) {
        p->failed = true;
    } else if (rep->type == AHG_STORE_NIL) {
        (void)ahg_store_srem(ctl->store, "ahg:sessions", p->sids[idx], NULL, NULL);
    } else if (rep->type == AHG_STORE_STR) {
        cJSON *j = cJSON_ParseWithLength(rep->str, rep->len);
        const cJSON *hc = cJSON_GetObjectItemCaseSensitive(j, "hc");
        const cJSON *ex = cJSON_GetObjectItemCaseSensitive(j, "expires_at");
        if (cJSON_IsNumber(ex) && (long long)ex->valuedouble < ctl_now_s()) {
            p->expired++;
            expire_session(ctl, j, p->sids[idx]); /* its HC becomes an orphan below */
        } else if (cJSON_IsString(hc)) {
            keep_add(p, hc->valuestring);
        }
        cJSON_Delete(j);
    }
    pass_sessions_step(p);
}

static void
pass_sessions_step(struct ctl_pass *p)
{
    struct ahg_ctl *ctl = p->life->ctl;
    while (p->sids && !p->failed && p->next_sid < p->nsids && p->pending < REC_INFLIGHT) {
        size_t i = p->next_sid++;
        struct sess_get *g = malloc(sizeof(*g));
        if (!g) {
            p->failed = true;
            break;
        }
        g->p = p;
        g->idx = i;
        char key[AHG_STORE_MAX_KEY];
        (void)snprintf(key, sizeof(key), "ahg:session:%s", p->sids[i]);
        p->pending++;
        if (ahg_store_get(ctl->store, key, on_session, g) != AHG_OK) {
            p->pending--;
            free(g);
            p->failed = true;
        }
    }
    if (p->pending)
        return;
    if (p->failed) {
        pass_end(ctl, p);
        return;
    }
    p->pending++;
    if (ahg_store_smembers(ctl->store, "ahg:pool", on_pool_members, p) != AHG_OK) {
        p->pending--;
        p->failed = true;
        pass_end(ctl, p);
    }
}

static void
on_sessions(struct ahg_store *s, int err, const struct ahg_store_reply *rep, void *ud)
{
    (void)s;
    struct ctl_pass *p = ud;
    struct ahg_ctl *ctl = pass_back(p);
    if (!ctl)
        return;
    if (err != AHG_OK) {
        p->failed = true;
        pass_end(ctl, p);
        return;
    }
    size_t n = rep->type == AHG_STORE_ARRAY ? rep->n : 0;
    p->sids = n ? calloc(n, sizeof(*p->sids)) : NULL;
    if (n && !p->sids) {
        p->failed = true;
        pass_end(ctl, p);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (rep->lens[i] != CTL_SID_LEN)
            continue;
        p->sids[p->nsids] = malloc(CTL_SID_LEN + 1);
        if (!p->sids[p->nsids]) {
            p->failed = true;
            break;
        }
        memcpy(p->sids[p->nsids], rep->elems[i], CTL_SID_LEN + 1);
        p->nsids++;
    }
    pass_sessions_step(p);
}

int
ahg_ctl_reconcile_now(struct ahg_ctl *ctl)
{
    if (!ctl || !lease_valid(ctl) || ctl->pass)
        return AHG_EAGAIN;
    struct ctl_pass *p = calloc(1, sizeof(*p));
    if (!p)
        return AHG_ENOMEM;
    p->life = life_get(ctl);
    p->start_ms = ahg_now_ms();
    p->pending = 1;
    ctl->pass = p;
    if (ahg_store_smembers(ctl->store, "ahg:sessions", on_sessions, p) != AHG_OK) {
        p->pending = 0;
        p->failed = true;
        pass_end(ctl, p);
        return AHG_EUNAVAIL;
    }
    return AHG_OK;
}

static void
on_rec_timer(struct ahg_timer *t)
{
    struct ahg_ctl *ctl = t->ud;
    if (ahg_ctl_reconcile_now(ctl) == AHG_EAGAIN && ctl->leader && !ctl->pass)
        ahg_timer_start(&ctl->rec_timer, ctl->o.reconcile_interval_ms);
}

/* ---- life cycle ---- */

void
ctl_rec_start(struct ahg_ctl *ctl)
{
    ctl->life = calloc(1, sizeof(*ctl->life));
    if (ctl->life)
        ctl->life->ctl = ctl;
    ahg_timer_init(&ctl->lease_timer, ctl->loop, on_lease_timer, ctl);
    ahg_timer_init(&ctl->rec_timer, ctl->loop, on_rec_timer, ctl);
    ahg_timer_init(&ctl->pool_timer, ctl->loop, on_pool_timer, ctl);
    if (ctl->life && ctl->o.reconciler)
        ahg_timer_start(&ctl->lease_timer, 0);
}

static void
on_released(struct ahg_store *s, int err, const struct ahg_store_reply *rep, void *ud)
{
    (void)s;
    (void)err;
    (void)rep;
    struct ahg_ctl *ctl = life_put(ud);
    if (!ctl)
        return;
    ctl->releasing = false;
    ctl_maybe_drained(ctl);
}

void
ctl_rec_release(struct ahg_ctl *ctl)
{
    ahg_timer_stop(&ctl->lease_timer);
    if (!ctl->leader)
        return;
    set_leader(ctl, false);
    if (!ctl->life)
        return;
    ctl->releasing = true;
    if (ahg_store_cas_del(ctl->store, "ahg:leader", ctl->lease_val, on_released, life_get(ctl)) !=
        AHG_OK) {
        life_put(ctl->life);
        ctl->releasing = false;
    }
}

void
ctl_rec_stop(struct ahg_ctl *ctl)
{
    ahg_timer_stop(&ctl->lease_timer);
    ahg_timer_stop(&ctl->rec_timer);
    ahg_timer_stop(&ctl->pool_timer);
    ctl->leader = false;
    if (!ctl->life)
        return;
    struct ctl_life *l = ctl->life;
    ctl->life = NULL;
    l->ctl = NULL;
    ctl->pass = NULL; /* its callbacks free it */
    if (l->refs == 0)
        free(l);
}
