/*
 * Tests of the Prometheus registry: exact exposition text, cumulative histogram buckets,
 * label escaping, computed gauges, type conflicts.
 */
#include "ahg/metrics.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <math.h>
#include <string.h>
#include <cmocka.h>

#include "ahg/buf.h"
#include "ahg/err.h"

static void
expect_render(const struct ahg_metrics *m, const char *want)
{
    struct ahg_buf b;
    ahg_buf_init(&b, (size_t)1024 * 1024);
    assert_int_equal(ahg_metrics_render(m, &b), AHG_OK);
    assert_string_equal(ahg_buf_cstr(&b), want);
    ahg_buf_free(&b);
}

static double
fn_value(void *ud)
{
    return *(double *)ud;
}

static void
test_metrics_counter_gauge_render(void **state)
{
    (void)state;
    struct ahg_metrics *m = ahg_metrics_new();
    assert_non_null(m);
    struct ahg_metric *ok =
        ahg_metrics_counter(m, "azhexgate_gw_requests_total", "Requests.", "code=\"200\"");
    struct ahg_metric *nf =
        ahg_metrics_counter(m, "azhexgate_gw_requests_total", "Requests.", "code=\"404\"");
    assert_non_null(ok);
    assert_non_null(nf);
    assert_ptr_equal(ahg_metrics_counter(m, "azhexgate_gw_requests_total", "x", "code=\"200\""),
                     ok);
    struct ahg_metric *g = ahg_metrics_gauge(m, "azhexgate_gw_tunnels", "Open tunnels.", NULL);
    assert_non_null(g);
    double conns = 7;
    assert_non_null(ahg_metrics_gauge_fn(m, "azhexgate_gw_connections", "Open connections.", "",
                                         fn_value, &conns));
    ahg_metric_inc(ok);
    ahg_metric_inc(ok);
    ahg_metric_add(ok, 3);
    ahg_metric_add(ok, -1); /* counters never go down */
    ahg_metric_inc(nf);
    ahg_metric_set(g, 4);
    ahg_metric_add(g, -1.5);
    assert_true(ahg_metric_value(ok) == 5);
    assert_true(ahg_metric_value(g) == 2.5);
    conns = 9;
    expect_render(m, "# HELP azhexgate_gw_requests_total Requests.\n"
                     "# TYPE azhexgate_gw_requests_total counter\n"
                     "azhexgate_gw_requests_total{code=\"200\"} 5\n"
                     "azhexgate_gw_requests_total{code=\"404\"} 1\n"
                     "# HELP azhexgate_gw_tunnels Open tunnels.\n"
                     "# TYPE azhexgate_gw_tunnels gauge\n"
                     "azhexgate_gw_tunnels 2.5\n"
                     "# HELP azhexgate_gw_connections Open connections.\n"
                     "# TYPE azhexgate_gw_connections gauge\n"
                     "azhexgate_gw_connections 9\n");
    ahg_metrics_free(m);
}

static void
test_metrics_histogram_cumulative(void **state)
{
    (void)state;
    struct ahg_metrics *m = ahg_metrics_new();
    const double b[] = {0.01, 0.1, 1};
    struct ahg_metric *h =
        ahg_metrics_histogram(m, "azhexgate_x_seconds", "Latency.", "route=\"a\"", b, 3);
    struct ahg_metric *h2 = ahg_metrics_histogram(m, "azhexgate_x_seconds", "Latency.", NULL, b, 3);
    assert_non_null(h);
    assert_non_null(h2);
    ahg_metric_observe(h, 0.005);
    ahg_metric_observe(h, 0.01); /* le is inclusive */
    ahg_metric_observe(h, 0.5);
    ahg_metric_observe(h, 3);
    ahg_metric_observe(h, NAN); /* ignored */
    assert_true(ahg_metric_value(h) == 4);
    expect_render(m, "# HELP azhexgate_x_seconds Latency.\n"
                     "# TYPE azhexgate_x_seconds histogram\n"
                     "azhexgate_x_seconds_bucket{route=\"a\",le=\"0.01\"} 2\n"
                     "azhexgate_x_seconds_bucket{route=\"a\",le=\"0.1\"} 2\n"
                     "azhexgate_x_seconds_bucket{route=\"a\",le=\"1\"} 3\n"
                     "azhexgate_x_seconds_bucket{route=\"a\",le=\"+Inf\"} 4\n"
                     "azhexgate_x_seconds_sum{route=\"a\"} 3.515\n"
                     "azhexgate_x_seconds_count{route=\"a\"} 4\n"
                     "azhexgate_x_seconds_bucket{le=\"0.01\"} 0\n"
                     "azhexgate_x_seconds_bucket{le=\"0.1\"} 0\n"
                     "azhexgate_x_seconds_bucket{le=\"1\"} 0\n"
                     "azhexgate_x_seconds_bucket{le=\"+Inf\"} 0\n"
                     "azhexgate_x_seconds_sum 0\n"
                     "azhexgate_x_seconds_count 0\n");
    /* other bounds for the same family, unsorted bounds */
    const double other[] = {0.5};
    assert_null(ahg_metrics_histogram(m, "azhexgate_x_seconds", "Latency.", "r=\"b\"", other, 1));
    const double unsorted[] = {1, 0.5};
    assert_null(ahg_metrics_histogram(m, "azhexgate_y_seconds", "Y.", NULL, unsorted, 2));
    ahg_metrics_free(m);
}

static void
test_metrics_default_buckets(void **state)
{
    (void)state;
    assert_int_equal(ahg_metrics_latency_nbuckets, 16);
    assert_true(ahg_metrics_latency_buckets[0] == 0.0005);
    assert_true(ahg_metrics_latency_buckets[ahg_metrics_latency_nbuckets - 1] == 60);
    for (size_t i = 1; i < ahg_metrics_latency_nbuckets; i++)
        assert_true(ahg_metrics_latency_buckets[i] > ahg_metrics_latency_buckets[i - 1]);
    struct ahg_metrics *m = ahg_metrics_new();
    struct ahg_metric *h = ahg_metrics_histogram(
        m, "lat_seconds", "L.", NULL, ahg_metrics_latency_buckets, ahg_metrics_latency_nbuckets);
    assert_non_null(h);
    ahg_metric_observe(h, 0.0004);
    struct ahg_buf b;
    ahg_buf_init(&b, 65536);
    assert_int_equal(ahg_metrics_render(m, &b), AHG_OK);
    assert_non_null(strstr(ahg_buf_cstr(&b), "lat_seconds_bucket{le=\"0.0005\"} 1\n"));
    assert_non_null(strstr(ahg_buf_cstr(&b), "lat_seconds_bucket{le=\"2.5\"} 1\n"));
    assert_non_null(strstr(ahg_buf_cstr(&b), "lat_seconds_sum 0.0004\n"));
    ahg_buf_free(&b);
    ahg_metrics_free(m);
}

static void
test_metrics_type_conflict_and_names(void **state)
{
    (void)state;
    struct ahg_metrics *m = ahg_metrics_new();
    assert_non_null(ahg_metrics_counter(m, "a_total", "A.", NULL));
    assert_null(ahg_metrics_gauge(m, "a_total", "A.", NULL));
    assert_null(ahg_metrics_histogram(m, "a_total", "A.", NULL, ahg_metrics_latency_buckets, 3));
    assert_null(ahg_metrics_counter(m, "1abc", "bad name", NULL));
    assert_null(ahg_metrics_counter(m, "a-b", "bad name", NULL));
    assert_null(ahg_metrics_counter(m, "", "bad name", NULL));
    assert_null(ahg_metrics_gauge_fn(m, "g", "G.", NULL, NULL, NULL));
    /* NULL metrics are no-ops */
    ahg_metric_inc(NULL);
    ahg_metric_observe(NULL, 1);
    assert_true(ahg_metric_value(NULL) == 0);
    /* HELP escaping; odd values */
    struct ahg_metric *g = ahg_metrics_gauge(m, "g", "line1\nback\\slash", NULL);
    ahg_metric_set(g, 0.1);
    expect_render(m, "# HELP a_total A.\n"
                     "# TYPE a_total counter\n"
                     "a_total 0\n"
                     "# HELP g line1\\nback\\\\slash\n"
                     "# TYPE g gauge\n"
                     "g 0.1\n");
    ahg_metric_set(g, INFINITY);
    struct ahg_buf b;
    ahg_buf_init(&b, 4096);
    assert_int_equal(ahg_metrics_render(m, &b), AHG_OK);
    assert_non_null(strstr(ahg_buf_cstr(&b), "g +Inf\n"));
    ahg_buf_free(&b);
    ahg_metric_set(g, 1e20);
    ahg_buf_init(&b, 4096);
    assert_int_equal(ahg_metrics_render(m, &b), AHG_OK);
    assert_non_null(strstr(ahg_buf_cstr(&b), "g 1e+20\n"));
    ahg_buf_free(&b);
    /* a buffer too small reports ELIMIT */
    ahg_buf_init(&b, 16);
    assert_int_equal(ahg_metrics_render(m, &b), AHG_ELIMIT);
    ahg_buf_free(&b);
    ahg_metrics_free(m);
    ahg_metrics_free(NULL);
}

static void
test_metrics_escape(void **state)
{
    (void)state;
    char out[64];
    assert_string_equal(ahg_metrics_escape("a\"b\\c\nd", out, sizeof(out)), "a\\\"b\\\\c\\nd");
    assert_string_equal(ahg_metrics_escape("plain", out, sizeof(out)), "plain");
    char small[4];
    assert_string_equal(ahg_metrics_escape("ab\"c", small, sizeof(small)), "ab"); /* no split */
    assert_string_equal(ahg_metrics_escape(NULL, out, sizeof(out)), "");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_counter_gauge_render),
        cmocka_unit_test(test_metrics_histogram_cumulative),
        cmocka_unit_test(test_metrics_default_buckets),
        cmocka_unit_test(test_metrics_type_conflict_and_names),
        cmocka_unit_test(test_metrics_escape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
