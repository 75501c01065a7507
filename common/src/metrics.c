/*
 * metrics.c - Prometheus text exposition (format 0.0.4) for the admin listeners
 * (ahg/metrics.h).
 */
#include "ahg/metrics.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ahg/buf.h"
#include "ahg/err.h"

enum mtype { M_COUNTER, M_GAUGE, M_HISTOGRAM };

struct family;

struct ahg_metric {
    struct ahg_metric *next; /* in its family, creation order */
    struct family *fam;
    char *labels; /* "" when none */
    double value;
    double (*fn)(void *ud); /* computed gauge */
    void *ud;
    uint64_t *counts; /* histogram: per bucket (not cumulative), nb + 1 with +Inf last */
    double sum;
    uint64_t count;
};

struct family {
    struct family *next;
    char *name;
    char *help;
    enum mtype type;
    double *bounds;
    size_t nb;
    struct ahg_metric *head, *tail;
};

struct ahg_metrics {
    struct family *head, *tail;
};

const double ahg_metrics_latency_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                              0.25,   0.5,   1,      2.5,   5,    10,    30,   60};
const size_t ahg_metrics_latency_nbuckets =
    sizeof(ahg_metrics_latency_buckets) / sizeof(ahg_metrics_latency_buckets[0]);

struct ahg_metrics *
ahg_metrics_new(void)
{
    return calloc(1, sizeof(struct ahg_metrics));
}

void
ahg_metrics_free(struct ahg_metrics *m)
{
    if (!m)
        return;
    struct family *f = m->head;
    while (f) {
        struct family *fn = f->next;
        struct ahg_metric *s = f->head;
        while (s) {
            struct ahg_metric *sn = s->next;
            free(s->labels);
            free(s->counts);
            free(s);
            s = sn;
        }
        free(f->name);
        free(f->help);
        free(f->bounds);
        free(f);
        f = fn;
    }
    free(m);
}

static bool
name_ok(const char *n)
{
    if (!n || !*n)
        return false;
    for (const char *p = n; *p; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(p != n && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

static struct family *
family_get(struct ahg_metrics *m, const char *name, const char *help, enum mtype type,
           const double *bounds, size_t nb)
{
    for (struct family *f = m->head; f; f = f->next) {
        if (strcmp(f->name, name) != 0)
            continue;
        if (f->type != type)
            return NULL;
        if (type == M_HISTOGRAM &&
            (f->nb != nb || (nb && memcmp(f->bounds, bounds, nb * sizeof(*bounds)) != 0)))
            return NULL;
        return f;
    }
    struct family *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    f->type = type;
    if (type == M_HISTOGRAM && nb) {
        f->bounds = malloc(nb * sizeof(*bounds));
        if (f->bounds)
            memcpy(f->bounds, bounds, nb * sizeof(*bounds));
    }
    f->nb = nb;
    if (!f->name || !f->help || (type == M_HISTOGRAM && nb && !f->bounds)) {
        free(f->name);
        free(f->help);
        free(f->bounds);
        free(f);
        return NULL;
    }
    if (m->tail)
        m->tail->next = f;
    else
        m->head = f;
    m->tail = f;
    return f;
}

static struct ahg_metric *
series_get(struct ahg_metrics *m, const char *name, const char *help, const char *labels,
           enum mtype type, const double *bounds, size_t nb)
{
    if (!m || !name_ok(name))
        return NULL;
    if (type == M_HISTOGRAM) {
        if (nb && !bounds)
            return NULL;
        for (size_t i = 0; i < nb; i++) {
            if (isnan(bounds[i]) || (i && bounds[i] <= bounds[i - 1]))
                return NULL;
        }
    }
    struct family *f = family_get(m, name, help, type, bounds, nb);
    if (!f)
        return NULL;
    const char *l = labels ? labels : "";
    for (struct ahg_metric *s = f->head; s; s = s->next) {
        if (strcmp(s->labels, l) == 0)
            return s;
    }
    struct ahg_metric *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->fam = f;
    s->labels = strdup(l);
    if (type == M_HISTOGRAM)
        s->counts = calloc(nb + 1, sizeof(*s->counts));
    if (!s->labels || (type == M_HISTOGRAM && !s->counts)) {
        free(s->labels);
        free(s->counts);
        free(s);
        return NULL;
    }
    if (f->tail)
        f->tail->next = s;
    else
        f->head = s;
    f->tail = s;
    return s;
}

struct ahg_metric *
ahg_metrics_counter(struct ahg_metrics *m, const char *name, const char *help, const char *labels)
{
    return series_get(m, name, help, labels, M_COUNTER, NULL, 0);
}

struct ahg_metric *
ahg_metrics_gauge(struct ahg_metrics *m, const char *name, const char *help, const char *labels)
{
    return series_get(m, name, help, labels, M_GAUGE, NULL, 0);
}

struct ahg_metric *
ahg_metrics_histogram(struct ahg_metrics *m, const char *name, const char *help, const char *labels,
                      const double *bounds, size_t n)
{
    return series_get(m, name, help, labels, M_HISTOGRAM, bounds, n);
}

struct ahg_metric *
ahg_metrics_gauge_fn(struct ahg_metrics *m, const char *name, const char *help, const char *labels,
                     double (*fn)(void *ud), void *ud)
{
    if (!fn)
        return NULL;
    struct ahg_metric *s = series_get(m, name, help, labels, M_GAUGE, NULL, 0);
    if (s) {
        s->fn = fn;
        s->ud = ud;
    }
    return s;
}

void
ahg_metric_inc(struct ahg_metric *c)
{
    ahg_metric_add(c, 1);
}

void
ahg_metric_add(struct ahg_metric *c, double v)
{
    if (!c || c->fam->type == M_HISTOGRAM || (c->fam->type == M_COUNTER && !(v >= 0)))
        return;
    c->value += v;
}

void
ahg_metric_set(struct ahg_metric *g, double v)
{
    if (!g || g->fam->type == M_HISTOGRAM)
        return;
    g->value = v;
}

void
ahg_metric_observe(struct ahg_metric *h, double v)
{
    if (!h || h->fam->type != M_HISTOGRAM || isnan(v))
        return;
    size_t i = 0;
    while (i < h->fam->nb && v > h->fam->bounds[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

double
ahg_metric_value(const struct ahg_metric *c)
{
    if (!c)
        return 0;
    if (c->fam->type == M_HISTOGRAM)
        return (double)c->count;
    return c->fn ? c->fn(c->ud) : c->value;
}

/* The shortest text that reads back as v ("1", "0.25", "+Inf", "NaN"). */
static void
fmt_double(double v, char *out, size_t outsz)
{
    if (isnan(v)) {
        (void)snprintf(out, outsz, "NaN");
        return;
    }
    if (isinf(v)) {
        (void)snprintf(out, outsz, "%s", v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == floor(v) && fabs(v) < 1e15) {
        (void)snprintf(out, outsz, "%.0f", v);
        return;
    }
    for (int prec = 6; prec <= 17; prec++) {
        (void)snprintf(out, outsz, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

static int
append_help(struct ahg_buf *out, const char *help)
{
    int e = AHG_OK;
    for (const char *p = help; *p && e == AHG_OK; p++) {
        if (*p == '\\')
            e = ahg_buf_append(out, "\\\\", 2);
        else if (*p == '\n')
            e = ahg_buf_append(out, "\\n", 2);
        else
            e = ahg_buf_append(out, p, 1);
    }
    return e;
}

/* name{labels[,extra]} value\n */
static int
sample(struct ahg_buf *out, const char *name, const char *suffix, const char *labels,
       const char *extra, double v)
{
    char num[64];
    fmt_double(v, num, sizeof(num));
    bool hl = labels && *labels, he = extra && *extra;
    return ahg_buf_appendf(out, "%s%s%s%s%s%s%s %s\n", name, suffix, hl || he ? "{" : "",
                           hl ? labels : "", hl && he ? "," : "", he ? extra : "",
                           hl || he ? "}" : "", num);
}

static const char *
type_name(enum mtype t)
{
    switch (t) {
    case M_COUNTER:
        return "counter";
    case M_GAUGE:
        return "gauge";
    case M_HISTOGRAM:
        return "histogram";
    }
    return "untyped";
}

int
ahg_metrics_render(const struct ahg_metrics *m, struct ahg_buf *out)
{
    if (!m || !out)
        return AHG_EINVAL;
    int e = AHG_OK;
    for (const struct family *f = m->head; f && e == AHG_OK; f = f->next) {
        e = ahg_buf_appendf(out, "# HELP %s ", f->name);
        if (e == AHG_OK)
            e = append_help(out, f->help);
        if (e == AHG_OK)
            e = ahg_buf_appendf(out, "\n# TYPE %s %s\n", f->name, type_name(f->type));
        for (const struct ahg_metric *s = f->head; s && e == AHG_OK; s = s->next) {
            if (f->type != M_HISTOGRAM) {
                e = sample(out, f->name, "", s->labels, NULL, ahg_metric_value(s));
                continue;
            }
            uint64_t cum = 0;
            char le[80], num[64];
            for (size_t i = 0; i <= f->nb && e == AHG_OK; i++) {
                cum += s->counts[i];
                if (i < f->nb)
                    fmt_double(f->bounds[i], num, sizeof(num));
                else
                    (void)snprintf(num, sizeof(num), "+Inf");
                (void)snprintf(le, sizeof(le), "le=\"%s\"", num);
                e = sample(out, f->name, "_bucket", s->labels, le, (double)cum);
            }
            if (e == AHG_OK)
                e = sample(out, f->name, "_sum", s->labels, NULL, s->sum);
            if (e == AHG_OK)
                e = sample(out, f->name, "_count", s->labels, NULL, (double)s->count);
        }
    }
    return e;
}

char *
ahg_metrics_escape(const char *v, char *out, size_t outsz)
{
    if (!out || outsz == 0)
        return out;
    size_t o = 0;
    for (const char *p = v ? v : ""; *p; p++) {
        const char *rep = NULL;
        if (*p == '\\')
            rep = "\\\\";
        else if (*p == '"')
            rep = "\\\"";
        else if (*p == '\n')
            rep = "\\n";
        size_t n = rep ? 2 : 1;
        if (o + n >= outsz)
            break; /* never split an escape */
        if (rep)
            memcpy(out + o, rep, 2);
        else
            out[o] = *p;
        o += n;
    }
    out[o] = '\0';
    return out;
}
