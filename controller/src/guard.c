/*
 * guard.c - failed authentications per client address (guard.h): a hash table of at most
 * max_entries token buckets, chained through 32-bit indices, with an LRU list (most recent
 * failure first) that picks the entry to forget when the table is full.
 *
 * Threading: one thread, no locks.
 */
#include "guard.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "ahg/crypto.h"

#define NIL         UINT32_MAX
#define GUARD_KEY   17u /* family byte + 16 address bytes */
#define GUARD_LIMIT (1u << 24)

struct gent {
    unsigned char key[GUARD_KEY];
    uint32_t chain;        /* next in the hash bucket */
    uint32_t newer, older; /* LRU neighbours */
    double tokens;         /* failures left in the budget */
    uint64_t last_ms;      /* when tokens was last refilled */
    uint64_t locked_until; /* 0 = not locked */
};

struct ctl_guard {
    struct ctl_guard_opts o;
    uint32_t *buckets;
    uint32_t mask;
    struct gent *v;
    uint32_t n, cap; /* entries in use (v[0..n) are all live: freed slots are refilled) */
    uint32_t newest, oldest;
    uint64_t seed;
    uint64_t evictions;
};

/* The address as a table key; IPv6 keeps its /64. */
static void
make_key(const char *addr, unsigned char key[GUARD_KEY])
{
    memset(key, 0, GUARD_KEY);
    unsigned char a[16];
    if (addr && inet_pton(AF_INET, addr, a) == 1) {
        key[0] = 4;
        memcpy(key + 1, a, 4);
    } else if (addr && inet_pton(AF_INET6, addr, a) == 1) {
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, mapped, sizeof(mapped)) == 0) {
            key[0] = 4;
            memcpy(key + 1, a + 12, 4);
        } else {
            key[0] = 6;
            memcpy(key + 1, a, 8);
        }
    }
}

static uint32_t
hash_key(const struct ctl_guard *g, const unsigned char key[GUARD_KEY])
{
    uint64_t h = 1469598103934665603ULL ^ g->seed;
    for (size_t i = 0; i < GUARD_KEY; i++) {
        h ^= key[i];
        h *= 1099511628211ULL;
    }
    return (uint32_t)(h ^ (h >> 32)) & g->mask;
}

struct ctl_guard *
ctl_guard_new(const struct ctl_guard_opts *o)
{
    if (!o || o->max_failures == 0 || o->window_ms == 0 || o->lockout_ms == 0 ||
        o->max_entries == 0 || o->max_entries > GUARD_LIMIT)
        return NULL;
    struct ctl_guard *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->o = *o;
    size_t nb = 16;
    while (nb < o->max_entries)
        nb <<= 1;
    g->buckets = malloc(nb * sizeof(*g->buckets));
    if (!g->buckets) {
        free(g);
        return NULL;
    }
    for (size_t i = 0; i < nb; i++)
        g->buckets[i] = NIL;
    g->mask = (uint32_t)(nb - 1);
    g->newest = g->oldest = NIL;
    (void)ahg_rand_bytes(&g->seed, sizeof(g->seed));
    return g;
}

void
ctl_guard_free(struct ctl_guard *g)
{
    if (!g)
        return;
    free(g->buckets);
    free(g->v);
    free(g);
}

static uint32_t
find(const struct ctl_guard *g, const unsigned char key[GUARD_KEY])
{
    for (uint32_t i = g->buckets[hash_key(g, key)]; i != NIL; i = g->v[i].chain)
        if (memcmp(g->v[i].key, key, GUARD_KEY) == 0)
            return i;
    return NIL;
}

static void
lru_unlink(struct ctl_guard *g, uint32_t i)
{
    struct gent *e = &g->v[i];
    if (e->newer != NIL)
        g->v[e->newer].older = e->older;
    else
        g->newest = e->older;
    if (e->older != NIL)
        g->v[e->older].newer = e->newer;
    else
        g->oldest = e->newer;
    e->newer = e->older = NIL;
}

static void
lru_push_newest(struct ctl_guard *g, uint32_t i)
{
    struct gent *e = &g->v[i];
    e->older = g->newest;
    e->newer = NIL;
    if (g->newest != NIL)
        g->v[g->newest].newer = i;
    g->newest = i;
    if (g->oldest == NIL)
        g->oldest = i;
}

static void
chain_unlink(struct ctl_guard *g, uint32_t i)
{
    uint32_t *p = &g->buckets[hash_key(g, g->v[i].key)];
    while (*p != i)
        p = &g->v[*p].chain;
    *p = g->v[i].chain;
}

/* Every reference to entry from now points to entry to (used to keep v[0..n) dense). */
static void
relink(struct ctl_guard *g, uint32_t from, uint32_t to)
{
    struct gent *e = &g->v[to];
    uint32_t *p = &g->buckets[hash_key(g, e->key)];
    while (*p != from)
        p = &g->v[*p].chain;
    *p = to;
    if (e->newer != NIL)
        g->v[e->newer].older = to;
    else
        g->newest = to;
    if (e->older != NIL)
        g->v[e->older].newer = to;
    else
        g->oldest = to;
}

/* Forgets entry i (the last entry moves into its slot). */
static void
drop(struct ctl_guard *g, uint32_t i)
{
    chain_unlink(g, i);
    lru_unlink(g, i);
    uint32_t last = --g->n;
    if (i != last) {
        g->v[i] = g->v[last];
        relink(g, last, i);
    }
}

/* A new entry for key: a free slot, or the least recently failed address. NIL without memory. */
static uint32_t
insert(struct ctl_guard *g, const unsigned char key[GUARD_KEY])
{
    if (g->n >= g->o.max_entries) {
        drop(g, g->oldest);
        g->evictions++;
    }
    if (g->n == g->cap) {
        uint32_t cap = g->cap ? g->cap * 2 : 64;
        if (cap > g->o.max_entries)
            cap = (uint32_t)g->o.max_entries;
        struct gent *v = realloc(g->v, (size_t)cap * sizeof(*v));
        if (!v)
            return NIL;
        g->v = v;
        g->cap = cap;
    }
    uint32_t i = g->n++;
    struct gent *e = &g->v[i];
    memset(e, 0, sizeof(*e));
    memcpy(e->key, key, GUARD_KEY);
    uint32_t b = hash_key(g, key);
    e->chain = g->buckets[b];
    g->buckets[b] = i;
    e->newer = e->older = NIL;
    lru_push_newest(g, i);
    e->tokens = (double)g->o.max_failures;
    return i;
}

static void
refill(const struct ctl_guard *g, struct gent *e, uint64_t now_ms)
{
    if (now_ms <= e->last_ms)
        return;
    double add = (double)(now_ms - e->last_ms) * (double)g->o.max_failures / (double)g->o.window_ms;
    e->tokens += add;
    if (e->tokens > (double)g->o.max_failures)
        e->tokens = (double)g->o.max_failures;
    e->last_ms = now_ms;
}

unsigned
ctl_guard_check(const struct ctl_guard *g, const char *addr, uint64_t now_ms)
{
    if (!g)
        return 0;
    unsigned char key[GUARD_KEY];
    make_key(addr, key);
    uint32_t i = find(g, key);
    if (i == NIL || g->v[i].locked_until <= now_ms)
        return 0;
    uint64_t left = g->v[i].locked_until - now_ms;
    return (unsigned)((left + 999) / 1000);
}

bool
ctl_guard_fail(struct ctl_guard *g, const char *addr, uint64_t now_ms)
{
    if (!g)
        return false;
    unsigned char key[GUARD_KEY];
    make_key(addr, key);
    uint32_t i = find(g, key);
    if (i == NIL) {
        i = insert(g, key);
        if (i == NIL)
            return false;
        g->v[i].last_ms = now_ms;
    } else {
        lru_unlink(g, i);
        lru_push_newest(g, i);
    }
    struct gent *e = &g->v[i];
    refill(g, e, now_ms);
    if (e->locked_until > now_ms)
        return false; /* already locked out (a request that was let in before the lockout) */
    e->tokens -= 1.0;
    if (e->tokens >= 1.0)
        return false;
    if (e->tokens < 0.0)
        e->tokens = 0.0;
    e->locked_until = now_ms + g->o.lockout_ms;
    return true;
}

size_t
ctl_guard_count(const struct ctl_guard *g)
{
    return g ? g->n : 0;
}

uint64_t
ctl_guard_evictions(const struct ctl_guard *g)
{
    return g ? g->evictions : 0;
}
