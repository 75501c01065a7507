/*
 * redis.c - asynchronous Redis client: our loop's connections for I/O, hiredis for the
 * protocol (ahg/redis.h).
 */
#include "ahg/redis.h"
#include "ahg/resolve.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ahg/crypto.h"
#include "ahg/err.h"
#include "ahg/log.h"
#include "ahg/net.h"

enum link_state {
    LINK_DOWN = 0, /* waiting for the retry timer */
    LINK_CONNECTING,
    LINK_HANDSHAKE, /* AUTH / SELECT sent, replies pending */
    LINK_UP,
};

struct link;

/* One command awaiting its reply (FIFO per link). */
struct pending {
    struct pending *next;
    struct link *link;
    ahg_redis_reply_cb cb; /* NULL for internal handshake commands */
    void *ud;
    bool internal;
    struct ahg_timer timer;
};

struct link {
    struct ahg_redis *r;
    bool is_sub;
    enum link_state state;
    struct ahg_conn *conn;
    redisReader *reader;
    struct pending *head, *tail;
    unsigned npending;
    unsigned backoff_ms;
    unsigned gen;       /* bumped on every reset, to detect resets from inside callbacks */
    unsigned confirmed; /* pub/sub: subscribe confirmations since connect */
    struct ahg_timer retry;
    struct rreq *resolving; /* a name lookup in flight (address is a host name) */
};

/* A lookup of the server's host name on the resolver threads (ahg/resolve.h); cancelled by
 * ahg_redis_free() when still unanswered. */
struct rreq {
    struct link *l;
};

struct sub {
    struct sub *next;
    char *channel;
    ahg_redis_message_cb cb;
    void *ud;
};

struct ahg_redis {
    struct ahg_loop *loop;
    char *address;
    char *tls_host;
    char *username;
    char *password;
    int port;
    bool tls;
    bool tls_insecure;
    int db;
    unsigned timeout_ms;
    unsigned backoff_max_ms;
    unsigned max_pending;
    ahg_redis_state_cb on_state;
    void *ud;
    bool reported_up;
    bool freeing;
    struct link cmd;
    struct link sub;
    struct sub *subs;
    unsigned nsubs;
};

static void link_connect(struct link *l);
static void link_reset(struct link *l, int err);

static char *
dupstr(const char *s)
{
    if (s == NULL)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

/* ---- connection callbacks ---- */

static size_t
dead_data(struct ahg_conn *c, const unsigned char *p, size_t n)
{
    (void)c;
    (void)p;
    return n;
}

static void
dead_close(struct ahg_conn *c, enum ahg_conn_end why)
{
    (void)c;
    (void)why;
}

static const struct ahg_conn_ops dead_ops = {
    .on_data = dead_data,
    .on_close = dead_close,
};

static void
set_state_up(struct link *l)
{
    l->state = LINK_UP;
    l->backoff_ms = 0;
    struct ahg_redis *r = l->r;
    if (!l->is_sub && !r->reported_up) {
        r->reported_up = true;
        AHG_LOG_INFO("redis: connected to %s:%d", r->address, r->port);
        if (r->on_state != NULL)
            r->on_state(r, true, AHG_OK, r->ud);
    }
}

static struct pending *
pop_head(struct link *l)
{
    struct pending *p = l->head;
    if (p != NULL) {
        l->head = p->next;
        if (l->head == NULL)
            l->tail = NULL;
        l->npending--;
        ahg_timer_stop(&p->timer);
    }
    return p;
}

static void
timeout_cb(struct ahg_timer *t)
{
    struct pending *p = t->ud;
    struct link *l = p->link;
    AHG_LOG_WARN("redis: command timed out, resetting the connection");
    /* Take the timed-out command out so it gets AHG_ETIMEDOUT; the rest get AHG_EUNAVAIL. */
    struct pending **pp = &l->head;
    struct pending *prev = NULL;
    while (*pp != NULL && *pp != p) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp == p) {
        *pp = p->next;
        if (l->tail == p)
            l->tail = prev;
        l->npending--;
    }
    bool internal = p->internal;
    ahg_redis_reply_cb cb = p->cb;
    void *ud = p->ud;
    free(p);
    link_reset(l, internal ? AHG_ETIMEDOUT : AHG_EUNAVAIL);
    if (cb != NULL)
        cb(l->r, NULL, AHG_ETIMEDOUT, ud);
}

static int
link_send(struct link *l, char *cmd, int len, ahg_redis_reply_cb cb, void *ud, bool internal,
          bool expect_reply)
{
    if (len < 0)
        return AHG_ENOMEM;
    struct pending *p = NULL;
    if (expect_reply) {
        p = calloc(1, sizeof(*p));
        if (p == NULL) {
            redisFreeCommand(cmd);
            return AHG_ENOMEM;
        }
    }
    int rc = ahg_conn_write(l->conn, cmd, (size_t)len);
    redisFreeCommand(cmd);
    if (rc != AHG_OK) {
        free(p);
        return rc == AHG_ELIMIT ? AHG_ELIMIT : AHG_EUNAVAIL;
    }
    if (p != NULL) {
        p->link = l;
        p->cb = cb;
        p->ud = ud;
        p->internal = internal;
        ahg_timer_init(&p->timer, l->r->loop, timeout_cb, p);
        ahg_timer_start(&p->timer, l->r->timeout_ms);
        if (l->tail != NULL)
            l->tail->next = p;
        else
            l->head = p;
        l->tail = p;
        l->npending++;
    }
    return AHG_OK;
}

static int
send_subscribe(struct link *l, const char *channel)
{
    const char *argv[2] = {"SUBSCRIBE", channel};
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, 2, argv, NULL);
    return link_send(l, cmd, len, NULL, NULL, true, false);
}

static void
handshake_done(struct link *l)
{
    if (l->is_sub) {
        l->confirmed = 0;
        for (struct sub *s = l->r->subs; s != NULL; s = s->next) {
            if (send_subscribe(l, s->channel) != AHG_OK) {
                link_reset(l, AHG_EUNAVAIL);
                return;
            }
        }
    }
    set_state_up(l);
}

static void
on_sub_push(struct link *l, const redisReply *rep)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3)
        return;
    const redisReply *kind = rep->element[0];
    const redisReply *chan = rep->element[1];
    if (kind->type != REDIS_REPLY_STRING || chan->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(kind->str, "subscribe") == 0) {
        l->confirmed++;
        return;
    }
    if (strcmp(kind->str, "message") != 0)
        return;
    const redisReply *msg = rep->element[2];
    if (msg->type != REDIS_REPLY_STRING)
        return;
    for (struct sub *s = l->r->subs; s != NULL; s = s->next) {
        if (strcmp(s->channel, chan->str) == 0) {
            s->cb(l->r, s->channel, msg->str, msg->len, s->ud);
            return;
        }
    }
}

/* Handles one reply; returns false when the link was reset meanwhile. */
static bool
dispatch(struct link *l, redisReply *rep)
{
    unsigned gen = l->gen;
    if (l->is_sub && l->state == LINK_UP) {
        on_sub_push(l, rep);
        freeReplyObject(rep);
        return gen == l->gen;
    }
    struct pending *p = pop_head(l);
    if (p == NULL) {
        freeReplyObject(rep);
        link_reset(l, AHG_EPROTO);
        return false;
    }
    if (p->internal) {
        bool bad = rep->type == REDIS_REPLY_ERROR;
        if (bad)
            AHG_LOG_WARN("redis: handshake refused: %s", rep->str);
        freeReplyObject(rep);
        free(p);
        if (bad) {
            link_reset(l, AHG_EAUTH);
            return false;
        }
        if (l->state == LINK_HANDSHAKE && l->head == NULL)
            handshake_done(l);
        return gen == l->gen;
    }
    ahg_redis_reply_cb cb = p->cb;
    void *ud = p->ud;
    free(p);
    cb(l->r, rep, AHG_OK, ud);
    freeReplyObject(rep);
    return gen == l->gen;
}

static size_t
on_data(struct ahg_conn *c, const unsigned char *p, size_t n)
{
    struct link *l = ahg_conn_ud(c);
    if (redisReaderFeed(l->reader, (const char *)p, n) != REDIS_OK) {
        link_reset(l, AHG_EPROTO);
        return n;
    }
    for (;;) {
        void *rep = NULL;
        if (redisReaderGetReply(l->reader, &rep) != REDIS_OK) {
            AHG_LOG_WARN("redis: protocol error: %s", l->reader->errstr);
            link_reset(l, AHG_EPROTO);
            return n;
        }
        if (rep == NULL)
            break;
        if (!dispatch(l, rep))
            break;
    }
    return n;
}

static int
start_handshake(struct link *l)
{
    struct ahg_redis *r = l->r;
    int rc = AHG_OK;
    if (r->password != NULL) {
        const char *argv[3] = {"AUTH", r->username, r->password};
        char *cmd = NULL;
        int len =
            r->username != NULL
                ? redisFormatCommandArgv(&cmd, 3, argv, NULL)
                : redisFormatCommandArgv(&cmd, 2, (const char *[]){"AUTH", r->password}, NULL);
        rc = link_send(l, cmd, len, NULL, NULL, true, true);
    }
    if (rc == AHG_OK && r->db > 0 && !l->is_sub) {
        char *cmd = NULL;
        int len = redisFormatCommand(&cmd, "SELECT %d", r->db);
        rc = link_send(l, cmd, len, NULL, NULL, true, true);
    }
    if (rc == AHG_OK && l->head == NULL) {
        /* nothing else to check: a PING proves the server answers before we report up */
        char *cmd = NULL;
        int len = redisFormatCommand(&cmd, "PING");
        rc = link_send(l, cmd, len, NULL, NULL, true, true);
    }
    return rc;
}

static void
on_connect(struct ahg_conn *c)
{
    struct link *l = ahg_conn_ud(c);
    l->state = LINK_HANDSHAKE;
    if (start_handshake(l) != AHG_OK) {
        link_reset(l, AHG_EUNAVAIL);
        return;
    }
    if (l->head == NULL)
        handshake_done(l);
}

static void
on_close(struct ahg_conn *c, enum ahg_conn_end why)
{
    struct link *l = ahg_conn_ud(c);
    (void)why;
    l->conn = NULL; /* gone: do not touch it in reset */
    link_reset(l, AHG_EUNAVAIL);
}

static const struct ahg_conn_ops link_ops = {
    .on_connect = on_connect,
    .on_data = on_data,
    .on_close = on_close,
};

/* ---- link lifecycle ---- */

static void
retry_cb(struct ahg_timer *t)
{
    link_connect(t->ud);
}

static void
schedule_retry(struct link *l)
{
    unsigned max = l->r->backoff_max_ms;
    unsigned d = l->backoff_ms == 0 ? AHG_REDIS_BACKOFF_MIN_MS : l->backoff_ms * 2;
    if (d > max)
        d = max;
    l->backoff_ms = d;
    uint32_t rnd = 0;
    if (ahg_rand_bytes(&rnd, sizeof(rnd)) != AHG_OK)
        rnd = 0;
    /* jitter: wait between d/2 and d */
    uint64_t wait = d / 2 + (d / 2 > 0 ? rnd % (d / 2 + 1) : 0);
    l->state = LINK_DOWN;
    ahg_timer_start(&l->retry, wait);
}

static void
fail_all(struct link *l, int err)
{
    struct pending *p;
    while ((p = pop_head(l)) != NULL) {
        ahg_redis_reply_cb cb = p->cb;
        void *ud = p->ud;
        free(p);
        if (cb != NULL)
            cb(l->r, NULL, err, ud);
    }
}

/* Drops the connection, fails pending commands, and schedules a reconnect (unless freeing). */
static void
link_reset(struct link *l, int err)
{
    struct ahg_redis *r = l->r;
    l->gen++;
    if (l->conn != NULL) {
        ahg_conn_set_ops(l->conn, &dead_ops, NULL);
        ahg_conn_abort(l->conn);
        l->conn = NULL;
    }
    if (l->reader != NULL) {
        redisReaderFree(l->reader);
        l->reader = NULL;
    }
    bool was_up = l->state == LINK_UP;
    if (!r->freeing)
        schedule_retry(l);
    else
        l->state = LINK_DOWN;
    if (was_up)
        AHG_LOG_WARN("redis: %s connection to %s:%d lost", l->is_sub ? "pub/sub" : "command",
                     r->address, r->port);
    fail_all(l, r->freeing ? AHG_ECLOSED : AHG_EUNAVAIL);
    if (!l->is_sub && (r->reported_up || err == AHG_EAUTH) && !r->freeing) {
        r->reported_up = false;
        if (r->on_state != NULL)
            r->on_state(r, false, err == AHG_EAUTH ? AHG_EAUTH : AHG_EUNAVAIL, r->ud);
    }
}

static bool
is_numeric(const char *a)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, a, buf) == 1 || inet_pton(AF_INET6, a, buf) == 1;
}

static void link_dial(struct link *l, const char *address);

static void
on_resolved(int err, const char *address, void *ud)
{
    struct rreq *q = ud;
    struct link *l = q->l;
    free(q);
    l->resolving = NULL;
    if (err != AHG_OK) {
        AHG_LOG_WARN("redis: cannot resolve %s: %s; retrying", l->r->address, ahg_strerror(err));
        schedule_retry(l);
        return;
    }
    link_dial(l, address);
}

/* Connects (again): host names are looked up on every attempt, off the loop thread, so a
 * server whose address changes (a managed Redis failing over) is found again. */
static void
link_connect(struct link *l)
{
    struct ahg_redis *r = l->r;
    if (is_numeric(r->address)) {
        link_dial(l, r->address);
        return;
    }
    if (l->resolving != NULL)
        return;
    struct rreq *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        schedule_retry(l);
        return;
    }
    q->l = l;
    l->resolving = q;
    l->state = LINK_CONNECTING;
    if (ahg_resolve(r->loop, r->address, r->port, on_resolved, q) != AHG_OK) {
        l->resolving = NULL;
        free(q);
        schedule_retry(l);
    }
}

static void
link_dial(struct link *l, const char *address)
{
    struct ahg_redis *r = l->r;
    l->reader = redisReaderCreate();
    if (l->reader == NULL) {
        schedule_retry(l);
        return;
    }
    struct ahg_connect_opts co = {
        .address = address,
        .port = r->port,
        .tls = r->tls,
        /* a host name is also the TLS name to verify, unless one was given */
        .tls_host = r->tls_host ? r->tls_host : (is_numeric(r->address) ? NULL : r->address),
        .insecure = r->tls_insecure,
        .connect_timeout_ms = r->timeout_ms,
    };
    int err = 0;
    l->state = LINK_CONNECTING;
    l->conn = ahg_conn_connect(r->loop, &co, &link_ops, l, &err);
    if (l->conn == NULL) {
        redisReaderFree(l->reader);
        l->reader = NULL;
        schedule_retry(l);
    }
}

static void
link_init(struct link *l, struct ahg_redis *r, bool is_sub)
{
    l->r = r;
    l->is_sub = is_sub;
    l->state = LINK_DOWN;
    ahg_timer_init(&l->retry, r->loop, retry_cb, l);
}

/* ---- public API ---- */

struct ahg_redis *
ahg_redis_new(struct ahg_loop *loop, const struct ahg_redis_opts *opts, int *err)
{
    int dummy = 0;
    if (err == NULL)
        err = &dummy;
    if (loop == NULL || opts == NULL || opts->address == NULL || opts->port < 0 ||
        opts->port > 65535 || opts->db < 0) {
        *err = AHG_EINVAL;
        return NULL;
    }
    struct ahg_redis *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        *err = AHG_ENOMEM;
        return NULL;
    }
    r->loop = loop;
    r->address = dupstr(opts->address);
    r->tls_host = dupstr(opts->tls_host);
    r->username = dupstr(opts->username);
    r->password = dupstr(opts->password);
    if (r->address == NULL || (opts->tls_host != NULL && r->tls_host == NULL) ||
        (opts->username != NULL && r->username == NULL) ||
        (opts->password != NULL && r->password == NULL)) {
        free(r->address);
        free(r->tls_host);
        free(r->username);
        free(r->password);
        free(r);
        *err = AHG_ENOMEM;
        return NULL;
    }
    r->port = opts->port == 0 ? 6379 : opts->port;
    r->tls = opts->tls;
    r->tls_insecure = opts->tls_insecure;
    r->db = opts->db;
    r->timeout_ms = opts->command_timeout_ms ? opts->command_timeout_ms : AHG_REDIS_TIMEOUT_MS;
    r->backoff_max_ms = opts->backoff_max_ms ? opts->backoff_max_ms : AHG_REDIS_BACKOFF_MAX_MS;
    if (r->backoff_max_ms < AHG_REDIS_BACKOFF_MIN_MS)
        r->backoff_max_ms = AHG_REDIS_BACKOFF_MIN_MS;
    r->max_pending = opts->max_pending ? opts->max_pending : AHG_REDIS_MAX_PENDING;
    r->on_state = opts->on_state;
    r->ud = opts->ud;
    link_init(&r->cmd, r, false);
    link_init(&r->sub, r, true);
    link_connect(&r->cmd);
    *err = AHG_OK;
    return r;
}

static int
submit(struct ahg_redis *r, ahg_redis_reply_cb cb, void *ud, char *cmd, int len)
{
    struct link *l = &r->cmd;
    if (l->state != LINK_UP || r->freeing) {
        redisFreeCommand(cmd);
        return AHG_EUNAVAIL;
    }
    if (l->npending >= r->max_pending) {
        redisFreeCommand(cmd);
        return AHG_ELIMIT;
    }
    return link_send(l, cmd, len, cb, ud, false, true);
}

int
ahg_redis_command(struct ahg_redis *r, ahg_redis_reply_cb cb, void *ud, int argc, const char **argv,
                  const size_t *argvlen)
{
    if (r == NULL || cb == NULL || argc <= 0 || argv == NULL)
        return AHG_EINVAL;
    if (r->cmd.state != LINK_UP || r->freeing)
        return AHG_EUNAVAIL;
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0)
        return AHG_ENOMEM;
    return submit(r, cb, ud, cmd, len);
}

int
ahg_redis_commandf(struct ahg_redis *r, ahg_redis_reply_cb cb, void *ud, const char *fmt, ...)
{
    if (r == NULL || cb == NULL || fmt == NULL)
        return AHG_EINVAL;
    if (r->cmd.state != LINK_UP || r->freeing)
        return AHG_EUNAVAIL;
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len == -2)
        return AHG_EINVAL;
    if (len < 0)
        return AHG_ENOMEM;
    return submit(r, cb, ud, cmd, len);
}

int
ahg_redis_subscribe(struct ahg_redis *r, const char *channel, ahg_redis_message_cb cb, void *ud)
{
    if (r == NULL || channel == NULL || cb == NULL || r->freeing)
        return AHG_EINVAL;
    for (struct sub *s = r->subs; s != NULL; s = s->next) {
        if (strcmp(s->channel, channel) == 0)
            return AHG_EEXIST;
    }
    struct sub *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return AHG_ENOMEM;
    s->channel = dupstr(channel);
    if (s->channel == NULL) {
        free(s);
        return AHG_ENOMEM;
    }
    s->cb = cb;
    s->ud = ud;
    s->next = r->subs;
    r->subs = s;
    r->nsubs++;
    struct link *l = &r->sub;
    if (l->state == LINK_UP) {
        if (send_subscribe(l, channel) != AHG_OK)
            link_reset(l, AHG_EUNAVAIL); /* re-subscribes everything on reconnect */
    } else if (l->state == LINK_DOWN && l->conn == NULL && l->backoff_ms == 0 &&
               l->reader == NULL) {
        ahg_timer_stop(&l->retry);
        link_connect(l);
    }
    return AHG_OK;
}

bool
ahg_redis_is_up(const struct ahg_redis *r)
{
    return r != NULL && r->cmd.state == LINK_UP;
}

bool
ahg_redis_sub_is_up(const struct ahg_redis *r)
{
    return r != NULL && r->sub.state == LINK_UP && r->sub.confirmed >= r->nsubs;
}

void
ahg_redis_free(struct ahg_redis *r)
{
    if (r == NULL)
        return;
    r->freeing = true;
    struct link *links[2] = {&r->cmd, &r->sub};
    for (int i = 0; i < 2; i++) {
        if (links[i]->resolving != NULL) {
            ahg_resolve_cancel(r->loop, on_resolved, links[i]->resolving);
            free(links[i]->resolving);
            links[i]->resolving = NULL;
        }
        ahg_timer_stop(&links[i]->retry);
        link_reset(links[i], AHG_ECLOSED);
        ahg_timer_stop(&links[i]->retry);
    }
    struct sub *s = r->subs;
    while (s != NULL) {
        struct sub *next = s->next;
        free(s->channel);
        free(s);
        s = next;
    }
    if (r->password != NULL)
        memset(r->password, 0, strlen(r->password));
    free(r->address);
    free(r->tls_host);
    free(r->username);
    free(r->password);
    free(r);
}
