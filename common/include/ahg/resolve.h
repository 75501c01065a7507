/*
 * ahg/resolve.h - host names resolved off the loop thread.
 *
 * getaddrinfo() blocks, and nothing may block the loop thread (style.md 2, 3.6). Requests go to
 * a small process-wide pool of worker threads (AHG_RESOLVE_THREADS, started on first use) that
 * runs getaddrinfo(); the answer comes back with ahg_loop_post(), so the callback always runs on
 * the loop thread, never re-entrantly from inside ahg_resolve().
 *
 * Answers without DNS (still delivered through ahg_loop_post()):
 *  - numeric IPv4/IPv6 input (also "[v6]") is returned as given (brackets stripped);
 *  - "localhost" and every "*.localhost" name give "127.0.0.1" (RFC 6761 6.3);
 *  - "*.invalid" names fail with AHG_ENOTFOUND (RFC 6761 6.4).
 * Otherwise an IPv4 address is preferred; IPv6 is used only when the name has no IPv4 address.
 *
 * Lifetime: the pool is shared by all loops and lives for the process (ahg_resolve_shutdown(NULL)
 * stops it). Before ahg_loop_free(loop), call ahg_resolve_shutdown(loop): it drops every
 * request of that loop that has not been answered yet (their callbacks are never called) and
 * does not block. A lookup already running in a worker finishes there and is discarded.
 */
#ifndef AHG_RESOLVE_H
#define AHG_RESOLVE_H

#include <stddef.h>

struct ahg_loop;

/* Worker threads of the pool. */
#define AHG_RESOLVE_THREADS 2
/* Requests waiting for a worker; beyond this ahg_resolve() fails with AHG_ELIMIT. */
#define AHG_RESOLVE_QUEUE_MAX 256
/* Longest host name accepted (RFC 1035 presentation form, brackets for IPv6 allowed). */
#define AHG_RESOLVE_HOST_MAX 255

/* Answer of one lookup: err is AHG_OK and numeric_address a numeric IPv4/IPv6 address
 * (borrowed, valid during the call), or err is AHG_ENOTFOUND (no such name / no address),
 * AHG_EUNAVAIL (temporary DNS failure), AHG_ENOMEM or AHG_EIO, and numeric_address is NULL. */
typedef void (*ahg_resolve_cb)(int err, const char *numeric_address, void *ud);

/*
 * Resolves host (copied) for port (0..65535; only checked, the answer carries no port). cb(ud)
 * runs exactly once on loop's thread, unless ahg_resolve_shutdown(loop) comes first. Any thread
 * may call it; usually the loop thread. Returns AHG_OK, AHG_EINVAL (NULL argument, empty or too
 * long host, bad port), AHG_ELIMIT (queue full), AHG_ENOMEM or AHG_EIO (no thread could be
 * started); cb never runs on error.
 */
int ahg_resolve(struct ahg_loop *loop, const char *host, int port, ahg_resolve_cb cb, void *ud);

/*
 * With a loop: forgets every unanswered request of that loop (no callbacks), without blocking.
 * Call it on the loop thread before ahg_loop_free(). With NULL: additionally stops the pool and
 * joins its threads (waits for lookups in progress); call it only once no loop uses the
 * resolver any more (process exit, tests). The pool restarts on the next ahg_resolve().
 */
void ahg_resolve_shutdown(struct ahg_loop *loop);

/* Cancels the unanswered lookups of loop with this cb and ud: their callbacks will not run,
 * so the caller may free ud at once. Safe when none is pending. */
void ahg_resolve_cancel(struct ahg_loop *loop, ahg_resolve_cb cb, void *ud);

#endif /* AHG_RESOLVE_H */
