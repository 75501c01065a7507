/*
 * ahg/metrics.h - Prometheus metrics (text exposition format 0.0.4) for the admin listeners.
 *
 * A registry holds families (one name, one HELP, one TYPE) of series (one label set each).
 * Series are created once at start-up or on first use and updated on the hot path with plain
 * arithmetic (loop thread only: no atomics, no locks). Gauges may instead be computed when
 * scraped (ahg_metrics_gauge_fn). Rendering walks families in creation order.
 *
 * Names follow Prometheus conventions (azhexgate_<component>_<what>_<unit>, counters end in
 * _total); labels are given pre-rendered, e.g. `code="200",method="GET"` (values must already
 * be escaped; use ahg_metrics_escape for values from the outside world).
 *
 * Threading: loop thread only.
 */
#ifndef AHG_METRICS_H
#define AHG_METRICS_H

#include <stddef.h>

struct ahg_buf;
struct ahg_metrics;
struct ahg_metric;

struct ahg_metrics *ahg_metrics_new(void);
void ahg_metrics_free(struct ahg_metrics *m);

/*
 * Series lookup-or-create. The same name with another label set adds a series to the family;
 * the same name with another type is a programming error (returns NULL). labels may be NULL
 * or "". Returned pointers live as long as the registry. NULL on ENOMEM.
 */
struct ahg_metric *ahg_metrics_counter(struct ahg_metrics *m, const char *name, const char *help,
                                       const char *labels);
struct ahg_metric *ahg_metrics_gauge(struct ahg_metrics *m, const char *name, const char *help,
                                     const char *labels);
/* bounds: ascending upper bounds (le), n of them; +Inf is implied. Copied. */
struct ahg_metric *ahg_metrics_histogram(struct ahg_metrics *m, const char *name, const char *help,
                                         const char *labels, const double *bounds, size_t n);
/* A gauge whose value is fn(ud) at scrape time. */
struct ahg_metric *ahg_metrics_gauge_fn(struct ahg_metrics *m, const char *name, const char *help,
                                        const char *labels, double (*fn)(void *ud), void *ud);

/* Default latency buckets in seconds (0.5 ms … 60 s) for ahg_metrics_histogram. */
extern const double ahg_metrics_latency_buckets[];
extern const size_t ahg_metrics_latency_nbuckets;

void ahg_metric_inc(struct ahg_metric *c);               /* counter += 1 */
void ahg_metric_add(struct ahg_metric *c, double v);     /* counter += v (v >= 0), gauge += v */
void ahg_metric_set(struct ahg_metric *g, double v);     /* gauge = v */
void ahg_metric_observe(struct ahg_metric *h, double v); /* histogram */
double ahg_metric_value(const struct ahg_metric *c);     /* counter/gauge value, hist count */

/* Appends the exposition text to out. AHG_OK or AHG_ELIMIT/AHG_ENOMEM from the buffer. */
int ahg_metrics_render(const struct ahg_metrics *m, struct ahg_buf *out);

/* Escapes a label value (backslash, double quote, newline) into out (NUL-terminated,
 * truncated to outsz). Returns out. */
char *ahg_metrics_escape(const char *v, char *out, size_t outsz);

/* Content-Type of the exposition format. */
#define AHG_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif /* AHG_METRICS_H */
