/*
 * store.c - the shared state store (ahg/store.h): an in-memory backend (hash table, lazy and
 * periodic expiry, sets, local pub/sub) and a Redis backend on ahg_redis. Both answer through
 * callbacks that never run from inside the call.
 */
#include "ahg/store.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <openssl/crypto.h>

#include "ahg/crypto.h"
#include "ahg/err.h"
#include "ahg/log.h"
#include "ahg/net.h"
#include "ahg/redis.h"
#include "ahg/url.h"

/* The memory backend's expiry sweep period. */
#define SWEEP_MS 1000u
/* Initial and minimum bucket count of a hash table (a power of two). */
#define TAB_MIN 16u

enum store_kind { KIND_MEMORY, KIND_REDIS };

/* ---- deferred deliveries (both backends) ---- */

/* A reply or a message waiting to be handed to its callback on a fresh loop turn. */
struct op {
    struct op *next;
    ahg_store_cb cb;
    ahg_store_msg_cb msg_cb; /* set for a pub/sub message */
    void *ud;
    int err;
    enum ahg_store_type type;
    long long integer;
    char *str; /* STR reply / message (owned, NUL-terminated) */
    size_t len;
    char *channel; /* message: the channel (owned) */
    char **elems;  /* ARRAY reply (owned) */
    size_t *lens;
    size_t n;
};

/*
 * The argument of the posted flush. It outlives the store when a flush is still posted at
 * ahg_store_free(): the flush then only frees the gate.
 */
struct gate {
    struct ahg_store *s; /* NULL once the store is freed */
    bool posted;
};

/* ---- memory backend data ---- */

struct ent;

struct tab {
    struct ent **b;
    size_t nb; /* power of two, or 0 before first use */
    size_t n;
};

enum ent_type { ENT_STR, ENT_SET };

struct ent {
    struct ent *next;
    uint64_t hash;
    char *key; /* NUL-terminated */
    size_t klen;
    enum ent_type type;
    char *val; /* ENT_STR: value plus a NUL */
    size_t vlen;
    uint64_t expire_at; /* monotonic ms; 0 = none */
    struct tab set;     /* ENT_SET: members (their val unused) */
};

/* A local subscriber (both backends). */
struct ssub {
    struct ssub *next;
    char *channel;
    ahg_store_msg_cb cb;
    void *ud;
};

/* A Redis command in flight. */
enum rkind { RK_PLAIN, RK_SET };

struct rcmd {
    struct ahg_store *s;
    ahg_store_cb cb;
    void *ud;
    enum rkind kind;
};

struct ahg_store {
    struct ahg_loop *loop;
    enum store_kind kind;
    /* state listeners: every component sharing the store (all-in-one server) registers one */
    ahg_store_state_cb state_cb[AHG_STORE_MAX_STATE_CBS];
    void *state_ud[AHG_STORE_MAX_STATE_CBS];
    size_t nstate;

    struct op *head, *tail;
    struct gate *gate;
    bool in_flush;
    bool freed; /* ahg_store_free() ran inside a flush: the flush frees the struct */

    struct ssub *subs;

    /* memory */
    struct tab tab;
    struct ahg_timer sweep;

    /* redis */
    struct ahg_redis *redis;
    bool up;
};

/* ---- deferral ---- */

static void flush_cb(void *arg);

static void
op_free(struct op *o)
{
    free(o->str);
    free(o->channel);
    if (o->elems) {
        for (size_t i = 0; i < o->n; i++)
            free(o->elems[i]);
    }
    free(o->elems);
    free(o->lens);
    free(o);
}

static void
enqueue(struct ahg_store *s, struct op *o)
{
    if (s->tail)
        s->tail->next = o;
    else
        s->head = o;
    s->tail = o;
    if (!s->gate->posted) {
        if (ahg_loop_post(s->loop, flush_cb, s->gate) == AHG_OK)
            s->gate->posted = true;
        /* on ENOMEM the op waits for the next successful post or for ahg_store_free */
    }
}

static void
deliver(struct ahg_store *s, struct op *o)
{
    if (o->msg_cb) {
        o->msg_cb(s, o->channel, o->str, o->len, o->ud);
        return;
    }
    if (!o->cb)
        return;
    if (o->err != AHG_OK) {
        o->cb(s, o->err, NULL, o->ud);
        return;
    }
    struct ahg_store_reply r = {.type = o->type,
                                .str = o->str,
                                .len = o->len,
                                .integer = o->integer,
                                .elems = (const char *const *)o->elems,
                                .lens = o->lens,
                                .n = o->n};
    o->cb(s, AHG_OK, &r, o->ud);
}

static void
flush_cb(void *arg)
{
    struct gate *g = arg;
    struct ahg_store *s = g->s;
    g->posted = false;
    if (!s) {
        free(g);
        return;
    }
    /* Only what was queued before this turn: callbacks that issue commands wait a turn. */
    struct op *last = s->tail;
    s->in_flush = true;
    while (s->head && !s->freed) {
        struct op *o = s->head;
        s->head = o->next;
        if (!s->head)
            s->tail = NULL;
        deliver(s, o);
        op_free(o);
        if (o == last)
            break;
    }
    s->in_flush = false;
    if (s->freed) {
        free(s);
        return;
    }
    if (s->head && !g->posted && ahg_loop_post(s->loop, flush_cb, g) == AHG_OK)
        g->posted = true;
}

static struct op *
op_new(ahg_store_cb cb, void *ud)
{
    struct op *o = calloc(1, sizeof(*o));
    if (o) {
        o->cb = cb;
        o->ud = ud;
    }
    return o;
}

static int
reply_err(struct ahg_store *s, int err, ahg_store_cb cb, void *ud)
{
    struct op *o = op_new(cb, ud);
    if (!o)
        return AHG_ENOMEM;
    o->err = err;
    enqueue(s, o);
    return AHG_OK;
}

static int
reply_int(struct ahg_store *s, long long v, ahg_store_cb cb, void *ud)
{
    struct op *o = op_new(cb, ud);
    if (!o)
        return AHG_ENOMEM;
    o->type = AHG_STORE_INT;
    o->integer = v;
    enqueue(s, o);
    return AHG_OK;
}

static int
reply_nil(struct ahg_store *s, ahg_store_cb cb, void *ud)
{
    struct op *o = op_new(cb, ud);
    if (!o)
        return AHG_ENOMEM;
    o->type = AHG_STORE_NIL;
    enqueue(s, o);
    return AHG_OK;
}

static char *
dup_bytes(const void *p, size_t n)
{
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    if (n)
        memcpy(d, p, n);
    d[n] = '\0';
    return d;
}

static int
reply_str(struct ahg_store *s, const void *p, size_t n, ahg_store_cb cb, void *ud)
{
    struct op *o = op_new(cb, ud);
    if (!o)
        return AHG_ENOMEM;
    o->type = AHG_STORE_STR;
    o->str = dup_bytes(p, n);
    if (!o->str) {
        free(o);
        return AHG_ENOMEM;
    }
    o->len = n;
    enqueue(s, o);
    return AHG_OK;
}

/* ---- argument checks ---- */

static bool
key_ok(const char *key)
{
    return key && key[0] != '\0' && strlen(key) <= AHG_STORE_MAX_KEY;
}

/* ---- memory backend: hash table ---- */

static uint64_t
hash_bytes(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static void tab_clear(struct tab *t);

static void
ent_free(struct ent *e)
{
    free(e->key);
    free(e->val);
    tab_clear(&e->set);
    free(e);
}

static void
tab_clear(struct tab *t)
{
    for (size_t i = 0; i < t->nb; i++) {
        struct ent *e = t->b[i];
        while (e) {
            struct ent *next = e->next;
            ent_free(e);
            e = next;
        }
    }
    free(t->b);
    t->b = NULL;
    t->nb = t->n = 0;
}

static struct ent **
tab_slot(const struct tab *t, const char *key, size_t klen, uint64_t h)
{
    if (t->nb == 0)
        return NULL;
    struct ent **pp = &t->b[h & (t->nb - 1)];
    while (*pp) {
        if ((*pp)->hash == h && (*pp)->klen == klen && memcmp((*pp)->key, key, klen) == 0)
            return pp;
        pp = &(*pp)->next;
    }
    return NULL;
}

static int
tab_grow(struct tab *t)
{
    size_t nb = t->nb ? t->nb * 2 : TAB_MIN;
    struct ent **b = calloc(nb, sizeof(struct ent *));
    if (!b)
        return AHG_ENOMEM;
    for (size_t i = 0; i < t->nb; i++) {
        struct ent *e = t->b[i];
        while (e) {
            struct ent *next = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
            e = next;
        }
    }
    free(t->b);
    t->b = b;
    t->nb = nb;
    return AHG_OK;
}

/* Inserts a new entry for key (which must be absent). NULL on ENOMEM. */
static struct ent *
tab_insert(struct tab *t, const char *key, size_t klen)
{
    if ((t->nb == 0 || t->n >= t->nb) && tab_grow(t) != AHG_OK)
        return NULL;
    struct ent *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->key = dup_bytes(key, klen);
    if (!e->key) {
        free(e);
        return NULL;
    }
    e->klen = klen;
    e->hash = hash_bytes(key, klen);
    size_t i = e->hash & (t->nb - 1);
    e->next = t->b[i];
    t->b[i] = e;
    t->n++;
    return e;
}

static void
tab_unlink(struct tab *t, struct ent **pp)
{
    struct ent *e = *pp;
    *pp = e->next;
    t->n--;
    ent_free(e);
}

static bool
expired(const struct ent *e, uint64_t now)
{
    return e->expire_at != 0 && e->expire_at <= now;
}

/* The live entry for key (expired ones are removed on the way), or NULL. */
static struct ent **
mem_find(struct ahg_store *s, const char *key)
{
    size_t klen = strlen(key);
    struct ent **pp = tab_slot(&s->tab, key, klen, hash_bytes(key, klen));
    if (pp && expired(*pp, ahg_now_ms())) {
        tab_unlink(&s->tab, pp);
        return NULL;
    }
    return pp;
}

static void
sweep_cb(struct ahg_timer *t)
{
    struct ahg_store *s = t->ud;
    uint64_t now = ahg_now_ms();
    for (size_t i = 0; i < s->tab.nb; i++) {
        struct ent **pp = &s->tab.b[i];
        while (*pp) {
            if (expired(*pp, now))
                tab_unlink(&s->tab, pp);
            else
                pp = &(*pp)->next;
        }
    }
    ahg_timer_start(t, SWEEP_MS);
}

/* ---- construction ---- */

static struct ahg_store *
store_alloc(struct ahg_loop *loop, enum store_kind kind)
{
    struct ahg_store *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->gate = calloc(1, sizeof(*s->gate));
    if (!s->gate) {
        free(s);
        return NULL;
    }
    s->gate->s = s;
    s->loop = loop;
    s->kind = kind;
    return s;
}

struct ahg_store *
ahg_store_new_memory(struct ahg_loop *loop)
{
    if (!loop)
        return NULL;
    struct ahg_store *s = store_alloc(loop, KIND_MEMORY);
    if (!s)
        return NULL;
    s->up = true;
    ahg_timer_init(&s->sweep, loop, sweep_cb, s);
    ahg_timer_start(&s->sweep, SWEEP_MS);
    return s;
}

static void
redis_state_cb(struct ahg_redis *r, bool up, int err, void *ud)
{
    (void)r;
    struct ahg_store *s = ud;
    if (up == s->up)
        return;
    s->up = up;
    if (!up)
        AHG_LOG_WARN("store: redis down: %s", ahg_strerror(err));
    else
        AHG_LOG_INFO("store: redis up");
    for (size_t i = 0; i < s->nstate; i++)
        s->state_cb[i](s, up, s->state_ud[i]);
}

struct ahg_store *
ahg_store_new_redis(struct ahg_loop *loop, const struct ahg_redis_opts *opts, int *err)
{
    int e = AHG_EINVAL;
    if (!loop || !opts)
        goto fail;
    e = AHG_ENOMEM;
    struct ahg_store *s = store_alloc(loop, KIND_REDIS);
    if (!s)
        goto fail;
    struct ahg_redis_opts o = *opts;
    o.on_state = redis_state_cb;
    o.ud = s;
    s->redis = ahg_redis_new(loop, &o, &e);
    if (!s->redis) {
        free(s->gate);
        free(s);
        goto fail;
    }
    return s;
fail:
    if (err)
        *err = e;
    return NULL;
}

/* Splits "user:pass" (percent-encoded) into its parts. */
static int
parse_userinfo(const char *ui, size_t n, char *user, size_t usz, char *pass, size_t psz)
{
    const char *colon = memchr(ui, ':', n);
    size_t ulen = colon ? (size_t)(colon - ui) : n;
    if (ahg_url_decode(ui, ulen, user, usz, false, NULL) != AHG_OK)
        return AHG_EINVAL;
    if (colon) {
        size_t plen = n - ulen - 1;
        if (ahg_url_decode(colon + 1, plen, pass, psz, false, NULL) != AHG_OK)
            return AHG_EINVAL;
    }
    return AHG_OK;
}

/* A numeric address, or a DNS name: letters, digits, '-' and '.', at most 253 chars. */
static bool
host_ok(const char *h)
{
    unsigned char tmp[16];
    if (inet_pton(AF_INET, h, tmp) == 1 || inet_pton(AF_INET6, h, tmp) == 1)
        return true;
    size_t n = strlen(h);
    if (n == 0 || n > 253 || h[0] == '-' || h[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.'))
            return false;
    }
    return true;
}

struct ahg_store *
ahg_store_new_url(struct ahg_loop *loop, const char *url, const char *password, bool tls_insecure,
                  int *err)
{
    int e = AHG_EINVAL;
    struct ahg_store *s = NULL;
    char user[256] = "", pass[512] = "", rest[1024];
    bool logged = false;
    if (!loop || !url)
        goto out;
    if (strcmp(url, "memory:") == 0 || strcmp(url, "memory://") == 0 ||
        strcmp(url, "memory") == 0) {
        s = ahg_store_new_memory(loop);
        e = s ? AHG_OK : AHG_ENOMEM;
        goto out;
    }
    bool tls;
    const char *p;
    if (strncmp(url, "redis://", 8) == 0) {
        tls = false;
        p = url + 8;
    } else if (strncmp(url, "rediss://", 9) == 0) {
        tls = true;
        p = url + 9;
    } else {
        AHG_LOG_ERROR("store URL must start with memory:, redis:// or rediss://");
        logged = true;
        goto out;
    }
    /* user info: up to the last '@' before the path */
    size_t auth_end = strcspn(p, "/?#");
    const char *at = NULL;
    for (const char *q = p; q < p + auth_end; q++) {
        if (*q == '@')
            at = q;
    }
    if (at) {
        if (parse_userinfo(p, (size_t)(at - p), user, sizeof(user), pass, sizeof(pass)) != AHG_OK)
            goto out;
        p = at + 1;
    }
    int n = snprintf(rest, sizeof(rest), "%s://%s", tls ? "rediss" : "redis", p);
    if (n < 0 || (size_t)n >= sizeof(rest))
        goto out;
    struct ahg_url u;
    if (ahg_url_parse(rest, &u) != AHG_OK || u.query[0] != '\0')
        goto out;
    int db = 0;
    if (u.path[0] != '\0' && strcmp(u.path, "/") != 0) {
        char *end = NULL;
        long v = strtol(u.path + 1, &end, 10);
        if (!end || *end != '\0' || end == u.path + 1 || v < 0 || v > 65535)
            goto out;
        db = (int)v;
    }
    /* host names are resolved by the Redis client, off the loop, on every (re)connect */
    const char *addr = u.host;
    if (strcmp(u.host, "localhost") == 0)
        addr = "127.0.0.1";
    else if (!host_ok(u.host)) {
        AHG_LOG_ERROR("store URL host is neither an address nor a host name");
        logged = true;
        goto out;
    }
    struct ahg_redis_opts o = {
        .address = addr,
        .port = u.port > 0 ? u.port : 6379,
        .tls = tls,
        .tls_host = tls && addr != u.host ? "localhost" : NULL,
        .tls_insecure = tls_insecure,
        .username = user[0] ? user : NULL,
        .password = password ? password : (pass[0] ? pass : NULL),
        .db = db,
    };
    s = ahg_store_new_redis(loop, &o, &e);
    if (s)
        e = AHG_OK;
out:
    if (!s && e == AHG_EINVAL && !logged)
        AHG_LOG_ERROR("invalid store URL: expected memory: or "
                      "redis[s]://[user:password@]host[:port][/db]");
    OPENSSL_cleanse(pass, sizeof(pass));
    if (err)
        *err = e;
    return s;
}

int
ahg_store_on_state(struct ahg_store *s, ahg_store_state_cb cb, void *ud)
{
    if (!s || !cb)
        return AHG_EINVAL;
    for (size_t i = 0; i < s->nstate; i++)
        if (s->state_cb[i] == cb && s->state_ud[i] == ud)
            return AHG_OK;
    if (s->nstate == AHG_STORE_MAX_STATE_CBS)
        return AHG_ELIMIT;
    s->state_cb[s->nstate] = cb;
    s->state_ud[s->nstate] = ud;
    s->nstate++;
    return AHG_OK;
}

void
ahg_store_off_state(struct ahg_store *s, ahg_store_state_cb cb, void *ud)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nstate; i++) {
        if (s->state_cb[i] == cb && s->state_ud[i] == ud) {
            for (size_t j = i + 1; j < s->nstate; j++) {
                s->state_cb[j - 1] = s->state_cb[j];
                s->state_ud[j - 1] = s->state_ud[j];
            }
            s->nstate--;
            return;
        }
    }
}

bool
ahg_store_is_up(const struct ahg_store *s)
{
    return s && s->up;
}

const char *
ahg_store_kind(const struct ahg_store *s)
{
    return s && s->kind == KIND_REDIS ? "redis" : "memory";
}

/* ---- redis backend: commands ---- */

static int
redis_error_code(const redisReply *rep)
{
    if (rep->str &&
        (strncmp(rep->str, "WRONGTYPE", 9) == 0 || strncmp(rep->str, "ERR value is not", 16) == 0))
        return AHG_EINVAL;
    return AHG_EUPSTREAM;
}

static void
redis_reply_cb(struct ahg_redis *r, redisReply *rep, int err, void *ud)
{
    (void)r;
    struct rcmd *rc = ud;
    struct ahg_store *s = rc->s;
    ahg_store_cb cb = rc->cb;
    void *cud = rc->ud;
    enum rkind kind = rc->kind;
    free(rc);
    if (!cb)
        return;
    if (err != AHG_OK || !rep) {
        cb(s, err != AHG_OK ? err : AHG_EUPSTREAM, NULL, cud);
        return;
    }
    struct ahg_store_reply out = {.type = AHG_STORE_NIL};
    switch (rep->type) {
    case REDIS_REPLY_ERROR:
        cb(s, redis_error_code(rep), NULL, cud);
        return;
    case REDIS_REPLY_STATUS:
        if (kind == RK_SET) {
            out.type = AHG_STORE_INT;
            out.integer = 1;
            break;
        }
        /* fall through */
    case REDIS_REPLY_STRING:
        out.type = AHG_STORE_STR;
        out.str = rep->str ? rep->str : "";
        out.len = rep->str ? rep->len : 0;
        break;
    case REDIS_REPLY_INTEGER:
        out.type = AHG_STORE_INT;
        out.integer = rep->integer;
        break;
    case REDIS_REPLY_ARRAY: {
        size_t n = rep->elements;
        const char **elems = calloc(n ? n : 1, sizeof(*elems));
        size_t *lens = calloc(n ? n : 1, sizeof(*lens));
        if (!elems || !lens) {
            free(elems);
            free(lens);
            cb(s, AHG_ENOMEM, NULL, cud);
            return;
        }
        for (size_t i = 0; i < n; i++) {
            const redisReply *e = rep->element[i];
            bool text = e && (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS);
            elems[i] = text && e->str ? e->str : "";
            lens[i] = text && e->str ? e->len : 0;
        }
        out.type = AHG_STORE_ARRAY;
        out.elems = elems;
        out.lens = lens;
        out.n = n;
        cb(s, AHG_OK, &out, cud);
        free(elems);
        free(lens);
        return;
    }
    default:
        break;
    }
    cb(s, AHG_OK, &out, cud);
}

static int
rcmd(struct ahg_store *s, enum rkind kind, ahg_store_cb cb, void *ud, int argc, const char **argv,
     const size_t *lens)
{
    struct rcmd *rc = calloc(1, sizeof(*rc));
    if (!rc)
        return AHG_ENOMEM;
    rc->s = s;
    rc->cb = cb;
    rc->ud = ud;
    rc->kind = kind;
    int e = ahg_redis_command(s->redis, redis_reply_cb, rc, argc, argv, lens);
    if (e == AHG_OK)
        return AHG_OK;
    free(rc);
    if (e == AHG_EUNAVAIL || e == AHG_ELIMIT || e == AHG_ETIMEDOUT)
        return cb ? reply_err(s, e, cb, ud) : AHG_OK;
    return e;
}

static int
rcmd1(struct ahg_store *s, const char *cmd, const char *key, ahg_store_cb cb, void *ud)
{
    const char *argv[] = {cmd, key};
    return rcmd(s, RK_PLAIN, cb, ud, 2, argv, NULL);
}

static int
rcmd2(struct ahg_store *s, const char *cmd, const char *key, const char *arg, ahg_store_cb cb,
      void *ud)
{
    const char *argv[] = {cmd, key, arg};
    return rcmd(s, RK_PLAIN, cb, ud, 3, argv, NULL);
}

/* ---- the commands ---- */

int
ahg_store_get(struct ahg_store *s, const char *key, ahg_store_cb cb, void *ud)
{
    if (!s || !key_ok(key))
        return AHG_EINVAL;
    if (s->kind == KIND_REDIS)
        return rcmd1(s, "GET", key, cb, ud);
    struct ent **pp = mem_find(s, key);
    if (!pp)
        return reply_nil(s, cb, ud);
    if ((*pp)->type != ENT_STR)
        return reply_err(s, AHG_EINVAL, cb, ud);
    return reply_str(s, (*pp)->val, (*pp)->vlen, cb, ud);
}

int
ahg_store_set(struct ahg_store *s, const char *key, const void *val, size_t len, uint64_t ttl_ms,
              unsigned flags, ahg_store_cb cb, void *ud)
{
    if (!s || !key_ok(key) || (!val && len) || len > AHG_STORE_MAX_VALUE ||
        (flags & ~(AHG_STORE_NX | AHG_STORE_XX)) != 0 ||
        (flags & (AHG_STORE_NX | AHG_STORE_XX)) == (AHG_STORE_NX | AHG_STORE_XX))
        return AHG_EINVAL;
    if (s->kind == KIND_REDIS) {
        char ttl[24];
        const char *argv[6] = {"SET", key, val ? val : ""};
        size_t lens[6] = {3, strlen(key), len};
        int argc = 3;
        if (ttl_ms > 0) {
            (void)snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)ttl_ms);
            argv[argc] = "PX";
            lens[argc++] = 2;
            argv[argc] = ttl;
            lens[argc++] = strlen(ttl);
        }
        if (flags & (AHG_STORE_NX | AHG_STORE_XX)) {
            argv[argc] = (flags & AHG_STORE_NX) ? "NX" : "XX";
            lens[argc++] = 2;
        }
        return rcmd(s, RK_SET, cb, ud, argc, argv, lens);
    }
    struct ent **pp = mem_find(s, key);
    if (((flags & AHG_STORE_NX) && pp) || ((flags & AHG_STORE_XX) && !pp))
        return reply_nil(s, cb, ud);
    char *v = dup_bytes(val ? val : "", len);
    if (!v)
        return AHG_ENOMEM;
    struct ent *e = pp ? *pp : tab_insert(&s->tab, key, strlen(key));
    if (!e) {
        free(v);
        return AHG_ENOMEM;
    }
    tab_clear(&e->set);
    free(e->val);
    e->type = ENT_STR;
    e->val = v;
    e->vlen = len;
    e->expire_at = ttl_ms ? ahg_now_ms() + ttl_ms : 0;
    return reply_int(s, 1, cb, ud);
}

int
ahg_store_del(struct ahg_store *s, const char *key, ahg_store_cb cb, void *ud)
{
    if (!s || !key_ok(key))
        return AHG_EINVAL;
    if (s->kind == KIND_REDIS)
        return rcmd1(s, "DEL", key, cb, ud);
    struct ent **pp = mem_find(s, key);
    if (pp)
        tab_unlink(&s->tab, pp);
    return cb ? reply_int(s, pp ? 1 : 0, cb, ud) : AHG_OK;
}

int
ahg_store_pexpire(struct ahg_store *s, const char *key, uint64_t ttl_ms, ahg_store_cb cb, void *ud)
{
    if (!s || !key_ok(key) || ttl_ms > (uint64_t)INT64_MAX / 2)
        return AHG_EINVAL;
    if (s->kind == KIND_REDIS) {
        char ttl[24];
        (void)snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)ttl_ms);
        return rcmd2(s, "PEXPIRE", key, ttl, cb, ud);
    }
    struct ent **pp = mem_find(s, key);
    if (!pp)
        return reply_int(s, 0, cb, ud);
    if (ttl_ms == 0)
        tab_unlink(&s->tab, pp); /* an expiry in the past deletes, as Redis does */
    else
        (*pp)->expire_at = ahg_now_ms() + ttl_ms;
    return reply_int(s, 1, cb, ud);
}

int
ahg_store_pttl(struct ahg_store *s, const char *key, ahg_store_cb cb, void *ud)
{
    if (!s || !key_ok(key))
        return AHG_EINVAL;
    if (s->kind == KIND_REDIS)
        return rcmd1(s, "PTTL", key, cb, ud);
    struct ent **pp = mem_find(s, key);
    if (!pp)
        return reply_int(s, -2, cb, ud);
    if ((*pp)->expire_at == 0)
        return reply_int(s, -1, cb, ud);
    return reply_int(s, (long long)((*pp)->expire_at - ahg_now_ms()), cb, ud);
}

int
ahg_store_incr(struct ahg_store *s, const char *key, ahg_store_cb cb, void *ud)
{
    if (!s || !key_ok(key))
        return AHG_EINVAL;
    if (s->kind == KIND_REDIS)
        return rcmd1(s, "INCR", key, cb, ud);
    struct ent **pp = mem_find(s, key);
    long long v = 0;
    if (pp) {
        struct ent *e = *pp;
        if (e->type != ENT_STR || e->vlen == 0 || e->vlen > 20)
            return reply_err(s, AHG_EINVAL, cb, ud);
        char *end = NULL;
        errno = 0;
        v = strtoll(e->val, &end, 10);
        if (!end || *end != '\0' || errno != 0 || v == LLONG_MAX ||
            (e->val[0] == '0' && e->vlen > 1) || e->val[0] == '+' || e->val[0] == ' ')
            return reply_err(s, AHG_EINVAL, cb, ud);
    }
    v++;
    char num[24];
    int n = snprintf(num, sizeof(num), "%lld", v);
    char *nv = dup_bytes(num, (size_t)n);
    if (!nv)
        return AHG_ENOMEM;
    struct ent *e = pp ? *pp : tab_insert(&s->tab, key, strlen(key));
    if (!e) {
        free(nv);
        return AHG_ENOMEM;
    }
    free(e->val);
    e->type = ENT_STR;
    e->val = nv;
    e->vlen = (size_t)n;
    return reply_int(s, v, cb, ud);
}

static bool
member_ok(const char *m)
{
    return m && strlen(m) <= AHG_STORE_MAX_VALUE;
}

/* The set at key: NULL and *wrong = false when absent, *wrong = true for another type. */
static struct ent *
mem_set(struct ahg_store *s, const char *key, bool *wrong)
{
    struct ent **pp = mem_find(s, key);
    *wrong = pp && (*pp)->type != ENT_SET;
    return pp && !*wrong ? *pp : NULL;
}

int
ahg_store_sadd(struct ahg_store *s, const char *key, const char *member, ahg_store_cb cb, void *ud)
{
    if (!s || !key_ok(key) || !member_ok(member))
        return AHG_EINVAL;
    if (s->kind == KIND_REDIS)
        return rcmd2(s, "SADD", key, member, cb, ud);
    bool wrong;
    struct ent *e = mem_set(s, key, &wrong);
    if (wrong)
        return reply_err(s, AHG_EINVAL, cb, ud);
    size_t mlen = strlen(member);
    if (e && tab_slot(&e->set, member, mlen, hash_bytes(member, mlen)))
        return reply_int(s, 0, cb, ud);
    bool created = false;
    if (!e) {
        e = tab_insert(&s->tab, key, strlen(key));
        if (!e)
            return AHG_ENOMEM;
        e->type = ENT_SET;
        created = true;
    }
    if (!tab_insert(&e->set, member, mlen)) {
        if (created)
            tab_unlink(&s->tab, mem_find(s, key));
        return AHG_ENOMEM;
    }
    return reply_int(s, 1, cb, ud);
}

int
ahg_store_srem(struct ahg_store *s, const char *key, const char *member, ahg_store_cb cb, void *ud)
{
    if (!s || !key_ok(key) || !member_ok(member))
        return AHG_EINVAL;
    if (s->kind == KIND_REDIS)
        return rcmd2(s, "SREM", key, member, cb, ud);
    bool wrong;
    struct ent *e = mem_set(s, key, &wrong);
    if (wrong)
        return reply_err(s, AHG_EINVAL, cb, ud);
    size_t mlen = strlen(member);
    struct ent **mp = e ? tab_slot(&e->set, member, mlen, hash_bytes(member, mlen)) : NULL;
    if (!mp)
        return reply_int(s, 0, cb, ud);
    tab_unlink(&e->set, mp);
    if (e->set.n == 0)
        tab_unlink(&s->tab, mem_find(s, key));
    return reply_int(s, 1, cb, ud);
}

int
ahg_store_scard(struct ahg_store *s, const char *key, ahg_store_cb cb, void *ud)
{
    if (!s || !key_ok(key))
        return AHG_EINVAL;
    if (s->kind == KIND_REDIS)
        return rcmd1(s, "SCARD", key, cb, ud);
    bool wrong;
    struct ent *e = mem_set(s, key, &wrong);
    if (wrong)
        return reply_err(s, AHG_EINVAL, cb, ud);
    return reply_int(s, e ? (long long)e->set.n : 0, cb, ud);
}

int
ahg_store_smembers(struct ahg_store *s, const char *key, ahg_store_cb cb, void *ud)
{
    if (!s || !key_ok(key))
        return AHG_EINVAL;
    if (s->kind == KIND_REDIS)
        return rcmd1(s, "SMEMBERS", key, cb, ud);
    bool wrong;
    struct ent *e = mem_set(s, key, &wrong);
    if (wrong)
        return reply_err(s, AHG_EINVAL, cb, ud);
    struct op *o = op_new(cb, ud);
    if (!o)
        return AHG_ENOMEM;
    o->type = AHG_STORE_ARRAY;
    size_t n = e ? e->set.n : 0;
    o->elems = calloc(n ? n : 1, sizeof(*o->elems));
    o->lens = calloc(n ? n : 1, sizeof(*o->lens));
    if (!o->elems || !o->lens) {
        op_free(o);
        return AHG_ENOMEM;
    }
    for (size_t i = 0; e && i < e->set.nb; i++) {
        for (const struct ent *m = e->set.b[i]; m; m = m->next) {
            o->elems[o->n] = dup_bytes(m->key, m->klen);
            if (!o->elems[o->n]) {
                op_free(o);
                return AHG_ENOMEM;
            }
            o->lens[o->n++] = m->klen;
        }
    }
    enqueue(s, o);
    return AHG_OK;
}

int
ahg_store_spop(struct ahg_store *s, const char *key, ahg_store_cb cb, void *ud)
{
    if (!s || !key_ok(key))
        return AHG_EINVAL;
    if (s->kind == KIND_REDIS)
        return rcmd1(s, "SPOP", key, cb, ud);
    bool wrong;
    struct ent *e = mem_set(s, key, &wrong);
    if (wrong)
        return reply_err(s, AHG_EINVAL, cb, ud);
    if (!e)
        return reply_nil(s, cb, ud);
    uint32_t r = 0;
    (void)ahg_rand_bytes(&r, sizeof(r));
    size_t start = r & (e->set.nb - 1);
    struct ent **mp = NULL;
    for (size_t i = 0; i < e->set.nb && !mp; i++) {
        size_t b = (start + i) & (e->set.nb - 1);
        if (e->set.b[b])
            mp = &e->set.b[b];
    }
    if (!mp)
        return reply_nil(s, cb, ud);
    int rc = reply_str(s, (*mp)->key, (*mp)->klen, cb, ud);
    if (rc != AHG_OK)
        return rc;
    tab_unlink(&e->set, mp);
    if (e->set.n == 0)
        tab_unlink(&s->tab, mem_find(s, key));
    return AHG_OK;
}

static const char cas_pexpire_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
static const char cas_del_lua[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                                  "return redis.call('DEL', KEYS[1]) else return 0 end";

/* Whether key holds exactly expect (memory). *wrong for a set. */
static struct ent **
mem_cas(struct ahg_store *s, const char *key, const char *expect, bool *wrong)
{
    struct ent **pp = mem_find(s, key);
    *wrong = pp && (*pp)->type != ENT_STR;
    if (!pp || *wrong)
        return NULL;
    size_t n = strlen(expect);
    return (*pp)->vlen == n && memcmp((*pp)->val, expect, n) == 0 ? pp : NULL;
}

int
ahg_store_cas_pexpire(struct ahg_store *s, const char *key, const char *expect, uint64_t ttl_ms,
                      ahg_store_cb cb, void *ud)
{
    if (!s || !key_ok(key) || !expect || ttl_ms == 0 || ttl_ms > (uint64_t)INT64_MAX / 2)
        return AHG_EINVAL;
    if (s->kind == KIND_REDIS) {
        char ttl[24];
        (void)snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)ttl_ms);
        const char *argv[] = {"EVAL", cas_pexpire_lua, "1", key, expect, ttl};
        return rcmd(s, RK_PLAIN, cb, ud, 6, argv, NULL);
    }
    bool wrong;
    struct ent **pp = mem_cas(s, key, expect, &wrong);
    if (wrong)
        return reply_err(s, AHG_EINVAL, cb, ud);
    if (pp)
        (*pp)->expire_at = ahg_now_ms() + ttl_ms;
    return reply_int(s, pp ? 1 : 0, cb, ud);
}

int
ahg_store_cas_del(struct ahg_store *s, const char *key, const char *expect, ahg_store_cb cb,
                  void *ud)
{
    if (!s || !key_ok(key) || !expect)
        return AHG_EINVAL;
    if (s->kind == KIND_REDIS) {
        const char *argv[] = {"EVAL", cas_del_lua, "1", key, expect};
        return rcmd(s, RK_PLAIN, cb, ud, 5, argv, NULL);
    }
    bool wrong;
    struct ent **pp = mem_cas(s, key, expect, &wrong);
    if (wrong)
        return reply_err(s, AHG_EINVAL, cb, ud);
    if (pp)
        tab_unlink(&s->tab, pp);
    return reply_int(s, pp ? 1 : 0, cb, ud);
}

/* ---- pub/sub ---- */

static bool
channel_ok(const char *ch)
{
    return ch && ch[0] != '\0' && strlen(ch) <= AHG_STORE_MAX_KEY;
}

int
ahg_store_publish(struct ahg_store *s, const char *channel, const void *msg, size_t len,
                  ahg_store_cb cb, void *ud)
{
    if (!s || !channel_ok(channel) || (!msg && len) || len > AHG_STORE_MAX_VALUE)
        return AHG_EINVAL;
    if (s->kind == KIND_REDIS) {
        const char *argv[] = {"PUBLISH", channel, msg ? msg : ""};
        size_t lens[] = {7, strlen(channel), len};
        return rcmd(s, RK_PLAIN, cb, ud, 3, argv, lens);
    }
    long long receivers = 0;
    for (struct ssub *sb = s->subs; sb; sb = sb->next) {
        if (strcmp(sb->channel, channel) != 0)
            continue;
        struct op *o = op_new(NULL, sb->ud);
        if (!o)
            return AHG_ENOMEM;
        o->msg_cb = sb->cb;
        o->channel = dup_bytes(channel, strlen(channel));
        o->str = dup_bytes(msg ? msg : "", len);
        o->len = len;
        if (!o->channel || !o->str) {
            op_free(o);
            return AHG_ENOMEM;
        }
        enqueue(s, o);
        receivers++;
    }
    return cb ? reply_int(s, receivers, cb, ud) : AHG_OK;
}

static void
redis_msg_cb(struct ahg_redis *r, const char *channel, const char *msg, size_t len, void *ud)
{
    (void)r;
    struct ahg_store *s = ud;
    for (struct ssub *sb = s->subs; sb; sb = sb->next) {
        if (strcmp(sb->channel, channel) == 0)
            sb->cb(s, channel, msg, len, sb->ud);
    }
}

int
ahg_store_subscribe(struct ahg_store *s, const char *channel, ahg_store_msg_cb cb, void *ud)
{
    if (!s || !channel_ok(channel) || !cb)
        return AHG_EINVAL;
    bool known = false;
    for (const struct ssub *sb = s->subs; sb; sb = sb->next)
        known = known || strcmp(sb->channel, channel) == 0;
    struct ssub *sb = calloc(1, sizeof(*sb));
    if (!sb)
        return AHG_ENOMEM;
    sb->channel = dup_bytes(channel, strlen(channel));
    if (!sb->channel) {
        free(sb);
        return AHG_ENOMEM;
    }
    sb->cb = cb;
    sb->ud = ud;
    if (s->kind == KIND_REDIS && !known) {
        int e = ahg_redis_subscribe(s->redis, channel, redis_msg_cb, s);
        if (e != AHG_OK) {
            free(sb->channel);
            free(sb);
            return e;
        }
    }
    /* appended, so subscribers of one channel hear messages in subscription order */
    struct ssub **pp = &s->subs;
    while (*pp)
        pp = &(*pp)->next;
    *pp = sb;
    return AHG_OK;
}

/* ---- teardown ---- */

void
ahg_store_free(struct ahg_store *s)
{
    if (!s || s->freed)
        return;
    if (s->kind == KIND_MEMORY)
        ahg_timer_stop(&s->sweep);
    /* deferred replies first (they were issued before anything still in Redis) */
    while (s->head) {
        struct op *o = s->head;
        s->head = o->next;
        if (!s->head)
            s->tail = NULL;
        if (!o->msg_cb && o->cb)
            o->cb(s, AHG_ECLOSED, NULL, o->ud);
        op_free(o);
    }
    if (s->redis) {
        ahg_redis_free(s->redis);
        s->redis = NULL;
    }
    while (s->subs) {
        struct ssub *sb = s->subs;
        s->subs = sb->next;
        free(sb->channel);
        free(sb);
    }
    tab_clear(&s->tab);
    if (s->gate->posted)
        s->gate->s = NULL; /* the posted flush frees it */
    else
        free(s->gate);
    s->gate = NULL;
    if (s->in_flush) {
        s->freed = true; /* flush_cb frees the struct when the callback returns */
        return;
    }
    free(s);
}
