/*
 * admin.c - /healthz, /readyz and /metrics on an ahg_httpd listener (see ahg/admin.h).
 */
#include "ahg/admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ahg/buf.h"
#include "ahg/err.h"
#include "ahg/httpd.h"
#include "ahg/metrics.h"

/* /metrics bodies beyond this are an error (a registry that large is a bug). */
#define ADMIN_MAX_METRICS ((size_t)8 * 1024 * 1024)

struct admin {
    ahg_admin_ready_fn ready;
    void *ud;
    struct ahg_metrics *metrics;
};

static void
admin_request(struct ahg_httpd_req *r)
{
    struct admin *a = ahg_httpd_ud(ahg_httpd_req_server(r));
    const char *path = ahg_httpd_req_path(r);
    static const char text[] = "text/plain; charset=utf-8";

    if (strcmp(path, "/healthz") == 0) {
        (void)ahg_httpd_respond(r, 200, text, "ok\n", 3, NULL);
    } else if (strcmp(path, "/readyz") == 0) {
        char why[160] = "not ready";
        bool ok = !a->ready || a->ready(a->ud, why, sizeof(why));
        char body[192];
        int n = snprintf(body, sizeof(body), "%s\n", ok ? "ready" : why);
        (void)ahg_httpd_respond(r, ok ? 200 : 503, text, body, n > 0 ? (size_t)n : 0, NULL);
    } else if (strcmp(path, "/metrics") == 0 && a->metrics) {
        struct ahg_buf b;
        ahg_buf_init(&b, ADMIN_MAX_METRICS);
        if (ahg_metrics_render(a->metrics, &b) == AHG_OK)
            (void)ahg_httpd_respond(r, 200, AHG_METRICS_CONTENT_TYPE, ahg_buf_data(&b),
                                    ahg_buf_len(&b), NULL);
        else
            (void)ahg_httpd_respond_error(r, 500, "internal", "metrics could not be rendered",
                                          false);
        ahg_buf_free(&b);
    } else {
        (void)ahg_httpd_respond_error(r, 404, "not_found", "try /healthz, /readyz or /metrics",
                                      false);
    }
}

struct ahg_httpd *
ahg_admin_new(struct ahg_loop *loop, const struct ahg_admin_opts *opts, int *err)
{
    struct admin *a = calloc(1, sizeof(*a)); /* freed with the listener (on_free) */
    if (!a) {
        *err = AHG_ENOMEM;
        return NULL;
    }
    a->ready = opts->ready;
    a->ud = opts->ud;
    a->metrics = opts->metrics;
    struct ahg_httpd_opts ho = {
        .name = opts->name ? opts->name : "admin",
        .iface = opts->iface,
        .port = opts->port,
        .on_request = admin_request,
        .ud = a,
        .on_free = free,
    };
    struct ahg_httpd *s = ahg_httpd_new(loop, &ho, err);
    if (!s)
        free(a);
    return s;
}
