/*
 * ahg/store.h - the shared state store: Redis, or in-memory for the all-in-one server.
 *
 * Gateway and controller keep every piece of shared state (routes, sessions, subdomain claims,
 * the warm pool, the leader lease) behind this interface; docs/state.md lists the keys. Two
 * backends implement the same small command set with the same semantics:
 *   - redis:  ahg_redis on the loop (TLS, AUTH, reconnect, pub/sub restored after reconnect);
 *   - memory: a hash table in this process; for the all-in-one server (one process, many
 *             components on one loop), where every component shares one struct ahg_store.
 *
 * Every call is asynchronous: the callback runs later on the loop thread, never from inside
 * the call (the memory backend defers with ahg_loop_post), so code written against one
 * backend behaves the same on the other. A callback receives err = AHG_OK and a reply, or an
 * error (AHG_EUNAVAIL when the store is down, AHG_ETIMEDOUT, AHG_ELIMIT when too many commands
 * are pending, AHG_ECLOSED when the store is freed with the command pending, AHG_EINVAL for a
 * key of the wrong type or INCR of a non-integer, AHG_EUPSTREAM for other Redis error replies).
 * The calls themselves return only AHG_OK, AHG_EINVAL (bad arguments; cb never runs) or
 * AHG_ENOMEM; a store that is down answers through the callback. Several subscribers may
 * share a channel.
 *
 * Threading: loop thread only.
 */
#ifndef AHG_STORE_H
#define AHG_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ahg_loop;
struct ahg_redis_opts;
struct ahg_store;

/* Keys and values are binary-safe; keys are at most this long. */
#define AHG_STORE_MAX_KEY 512u
/* Values (and published messages) are at most this long; more is AHG_EINVAL at the call. */
#define AHG_STORE_MAX_VALUE ((size_t)1024 * 1024)

enum ahg_store_type {
    AHG_STORE_NIL = 0, /* key absent / SET NX not done / nothing */
    AHG_STORE_STR,     /* str, len */
    AHG_STORE_INT,     /* integer */
    AHG_STORE_ARRAY,   /* elems[n], lens[n] (SMEMBERS, SCAN-like results) */
};

/* A reply, borrowed for the duration of the callback. */
struct ahg_store_reply {
    enum ahg_store_type type;
    const char *str; /* NUL-terminated (not counted in len) */
    size_t len;
    long long integer;
    const char *const *elems; /* each NUL-terminated */
    const size_t *lens;
    size_t n;
};

typedef void (*ahg_store_cb)(struct ahg_store *s, int err, const struct ahg_store_reply *reply,
                             void *ud);

/* A published message on a subscribed channel; borrowed for the call. */
typedef void (*ahg_store_msg_cb)(struct ahg_store *s, const char *channel, const char *msg,
                                 size_t len, void *ud);

/* Called when the store goes up or down (redis: the command connection; memory: never down). */
typedef void (*ahg_store_state_cb)(struct ahg_store *s, bool up, void *ud);

/* In-memory store. Keys expire lazily on access and by a periodic sweep (once a second). */
struct ahg_store *ahg_store_new_memory(struct ahg_loop *loop);

/*
 * Redis store; opts as for ahg_redis_new (on_state/ud there are ignored: use
 * ahg_store_on_state). NULL with *err set on bad options.
 */
struct ahg_store *ahg_store_new_redis(struct ahg_loop *loop, const struct ahg_redis_opts *opts,
                                      int *err);

/*
 * Parses a store URL into a new store: "memory:" or "redis://[user:pass@]host[:port][/db]" or
 * "rediss://..." (TLS). host may be a name: it is looked up off the loop on every
 * (re)connect (and is the TLS name checked for rediss://). password overrides the URL's password
 * when non-NULL (it comes from a secret file or env, never from the URL in config). ca/insecure are
 * for rediss. NULL with *err.
 */
struct ahg_store *ahg_store_new_url(struct ahg_loop *loop, const char *url, const char *password,
                                    bool tls_insecure, int *err);

/* Adds a listener for up/down changes (each component sharing the store adds its own; the same
 * cb and ud twice count once). AHG_OK, AHG_EINVAL, or AHG_ELIMIT beyond
 * AHG_STORE_MAX_STATE_CBS listeners. */
#define AHG_STORE_MAX_STATE_CBS 8
int ahg_store_on_state(struct ahg_store *s, ahg_store_state_cb cb, void *ud);
/* Removes the listener added with this cb and ud (no-op when absent). */
void ahg_store_off_state(struct ahg_store *s, ahg_store_state_cb cb, void *ud);
bool ahg_store_is_up(const struct ahg_store *s);
/* "memory" or "redis" */
const char *ahg_store_kind(const struct ahg_store *s);

/* Flags of ahg_store_set. */
#define AHG_STORE_NX 0x1u /* only when absent (reply INT 1 = set, NIL = not set) */
#define AHG_STORE_XX 0x2u /* only when present (reply INT 1 = set, NIL = not set) */

/* GET key -> STR or NIL. */
int ahg_store_get(struct ahg_store *s, const char *key, ahg_store_cb cb, void *ud);
/*
 * SET key val [PX ttl_ms] [NX|XX] -> INT 1 when set, NIL when NX/XX prevented it.
 * ttl_ms = 0: no expiry.
 */
int ahg_store_set(struct ahg_store *s, const char *key, const void *val, size_t len,
                  uint64_t ttl_ms, unsigned flags, ahg_store_cb cb, void *ud);
/* DEL key -> INT number removed (0/1). cb may be NULL (fire and forget). */
int ahg_store_del(struct ahg_store *s, const char *key, ahg_store_cb cb, void *ud);
/* PEXPIRE key ttl_ms -> INT 1 if the key exists, 0 if not. */
int ahg_store_pexpire(struct ahg_store *s, const char *key, uint64_t ttl_ms, ahg_store_cb cb,
                      void *ud);
/* PTTL key -> INT ms left; -1 = no expiry; -2 = absent. */
int ahg_store_pttl(struct ahg_store *s, const char *key, ahg_store_cb cb, void *ud);
/* INCR key -> INT new value. */
int ahg_store_incr(struct ahg_store *s, const char *key, ahg_store_cb cb, void *ud);

/* SADD / SREM key member -> INT number added/removed. SCARD -> INT. SMEMBERS -> ARRAY. */
int ahg_store_sadd(struct ahg_store *s, const char *key, const char *member, ahg_store_cb cb,
                   void *ud);
int ahg_store_srem(struct ahg_store *s, const char *key, const char *member, ahg_store_cb cb,
                   void *ud);
int ahg_store_scard(struct ahg_store *s, const char *key, ahg_store_cb cb, void *ud);
int ahg_store_smembers(struct ahg_store *s, const char *key, ahg_store_cb cb, void *ud);
/* SPOP key -> STR (a member, removed) or NIL when empty. */
int ahg_store_spop(struct ahg_store *s, const char *key, ahg_store_cb cb, void *ud);

/*
 * Compare-and-act, atomic on both backends (a Lua script on Redis), for leases:
 *   cas_pexpire: if GET key == expect then PEXPIRE key ttl_ms -> INT 1, else INT 0;
 *   cas_del:     if GET key == expect then DEL key -> INT 1, else INT 0.
 */
int ahg_store_cas_pexpire(struct ahg_store *s, const char *key, const char *expect, uint64_t ttl_ms,
                          ahg_store_cb cb, void *ud);
int ahg_store_cas_del(struct ahg_store *s, const char *key, const char *expect, ahg_store_cb cb,
                      void *ud);

/* PUBLISH channel msg -> INT receivers (memory: local subscribers; redis: subscribed
 * connections, one per subscribing store). cb may be NULL. */
int ahg_store_publish(struct ahg_store *s, const char *channel, const void *msg, size_t len,
                      ahg_store_cb cb, void *ud);
/*
 * SUBSCRIBE channel: cb for every message until the store is freed. Re-subscribed after a
 * reconnect by itself (messages published while down are lost: callers that cache must
 * drop their caches when the store comes back up; see ahg_store_on_state).
 */
int ahg_store_subscribe(struct ahg_store *s, const char *channel, ahg_store_msg_cb cb, void *ud);

/* Pending callbacks run with AHG_ECLOSED before this returns. The memory store may be freed
 * from inside its own callback; the redis store may not (ahg_redis forbids it). */
void ahg_store_free(struct ahg_store *s);

#endif /* AHG_STORE_H */
