/*
 * ahg/admin.h - the admin listener every process has: /healthz (liveness), /readyz (the
 * owner's readiness callback, 200 or 503 with its reason), /metrics (a Prometheus registry).
 *
 * Threading: loop thread only. The listener lives as long as the loop (like every listener);
 * the registry and the callback's ud must too.
 */
#ifndef AHG_ADMIN_H
#define AHG_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

struct ahg_loop;
struct ahg_metrics;
struct ahg_httpd;

/* Readiness: true when ready; else writes a short reason (one line) into why. */
typedef bool (*ahg_admin_ready_fn)(void *ud, char *why, size_t whysz);

struct ahg_admin_opts {
    const char *name;            /* listener name, unique per loop (NULL = "admin") */
    const char *iface;           /* numeric bind address; NULL = 127.0.0.1 */
    int port;                    /* 0 = any free port */
    ahg_admin_ready_fn ready;    /* NULL = always ready */
    void *ud;                    /* for ready */
    struct ahg_metrics *metrics; /* NULL = /metrics answers 404 */
};

/* NULL with *err (AHG_EIO when the port is taken). */
struct ahg_httpd *ahg_admin_new(struct ahg_loop *loop, const struct ahg_admin_opts *opts, int *err);

#endif /* AHG_ADMIN_H */
