/*
 * ahg/redis.h - an asynchronous Redis client on the event loop of ahg/net.h.
 *
 * The socket I/O runs on a connection of our loop (plain TCP or TLS, numeric address only: no
 * DNS on the loop); hiredis 0.14 only formats commands and parses replies. Nothing here blocks.
 *
 * One client owns up to two connections: one for commands (pipelined, replies in order) and,
 * once ahg_redis_subscribe() was called, one for pub/sub. Both reconnect on their own with
 * exponential backoff plus jitter, send AUTH (and SELECT) first, and the pub/sub connection
 * re-subscribes every channel after a reconnect.
 *
 * Threading: every function here runs on the loop thread only. No function here may be called
 * from inside a callback of the same client except ahg_redis_command(), ahg_redis_commandf(),
 * ahg_redis_subscribe() and ahg_redis_is_up().
 */
#ifndef AHG_REDIS_H
#define AHG_REDIS_H

#include <stdbool.h>
#include <stddef.h>

#include <hiredis/hiredis.h>

struct ahg_loop;
struct ahg_redis;

/* Defaults for zero-valued options. */
#define AHG_REDIS_TIMEOUT_MS     5000u
#define AHG_REDIS_BACKOFF_MIN_MS 100u
#define AHG_REDIS_BACKOFF_MAX_MS 10000u
#define AHG_REDIS_MAX_PENDING    4096u

/*
 * Command result. reply is NULL when err is not AHG_OK: AHG_ETIMEDOUT (no reply within the
 * command timeout; the connection is then reset because the reply order is lost),
 * AHG_EUNAVAIL (the connection went down before the reply came), AHG_ECLOSED (the client is
 * being freed). A Redis error reply is a reply (type REDIS_REPLY_ERROR) with err AHG_OK.
 * The reply is borrowed: the module frees it after the callback returns.
 */
typedef void (*ahg_redis_reply_cb)(struct ahg_redis *r, redisReply *reply, int err, void *ud);

/* Connection state of the command connection: up = authenticated and ready. When it goes down,
 * err tells why (AHG_EAUTH when AUTH or SELECT was refused, AHG_EUNAVAIL otherwise). */
typedef void (*ahg_redis_state_cb)(struct ahg_redis *r, bool up, int err, void *ud);

/* A pub/sub message; channel and msg are borrowed for the call. */
typedef void (*ahg_redis_message_cb)(struct ahg_redis *r, const char *channel, const char *msg,
                                     size_t len, void *ud);

struct ahg_redis_opts {
    const char *address;         /* numeric address, or a host name looked up off the loop
                                    on every (re)connect (required) */
    int port;                    /* 0 = 6379 */
    bool tls;                    /* TLS to Redis */
    const char *tls_host;        /* SNI and certificate name; NULL = address */
    bool tls_insecure;           /* skip certificate checks (tests only) */
    const char *username;        /* ACL user for AUTH; NULL = password-only AUTH */
    const char *password;        /* AUTH on connect when set (copied; never logged) */
    int db;                      /* SELECT db on connect when > 0 */
    unsigned command_timeout_ms; /* 0 = AHG_REDIS_TIMEOUT_MS */
    unsigned backoff_max_ms;     /* reconnect backoff ceiling; 0 = AHG_REDIS_BACKOFF_MAX_MS */
    unsigned max_pending;        /* commands awaiting a reply; 0 = AHG_REDIS_MAX_PENDING */
    ahg_redis_state_cb on_state; /* may be NULL */
    void *ud;                    /* passed to on_state */
};

/*
 * Creates the client and starts connecting (the result arrives through on_state). Strings in
 * opts are copied. NULL with *err (AHG_EINVAL bad options, AHG_ENOMEM) on failure.
 */
struct ahg_redis *ahg_redis_new(struct ahg_loop *loop, const struct ahg_redis_opts *opts, int *err);

/*
 * Sends one command (argv/argvlen as for redisCommandArgv; argvlen NULL = strlen of each).
 * On AHG_OK cb runs exactly once, later, from the loop. Errors (cb never runs then):
 * AHG_EINVAL, AHG_EUNAVAIL while the connection is not up, AHG_ELIMIT when max_pending
 * commands are already waiting, AHG_ENOMEM.
 */
int ahg_redis_command(struct ahg_redis *r, ahg_redis_reply_cb cb, void *ud, int argc,
                      const char **argv, const size_t *argvlen);

/* Same with a hiredis format string ("SET %s %b", ...). Same errors. */
int ahg_redis_commandf(struct ahg_redis *r, ahg_redis_reply_cb cb, void *ud, const char *fmt, ...);

/*
 * Subscribes to channel on the pub/sub connection (started on first use); cb gets every
 * message until ahg_redis_free(). Survives reconnects. AHG_EINVAL, AHG_EEXIST when the channel
 * is already subscribed, AHG_ENOMEM.
 */
int ahg_redis_subscribe(struct ahg_redis *r, const char *channel, ahg_redis_message_cb cb,
                        void *ud);

/* True while the command connection is up. */
bool ahg_redis_is_up(const struct ahg_redis *r);

/* True while the pub/sub connection is up and has (re)sent its SUBSCRIBEs. */
bool ahg_redis_sub_is_up(const struct ahg_redis *r);

/*
 * Closes both connections and frees the client. Pending callbacks run first with AHG_ECLOSED.
 * NULL is a no-op. Loop thread, not from a callback of this client.
 */
void ahg_redis_free(struct ahg_redis *r);

#endif /* AHG_REDIS_H */
