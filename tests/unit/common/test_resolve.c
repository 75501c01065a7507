/* Unit tests of ahg/resolve.h. */
#include "ahg/resolve.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ahg/err.h"
#include "ahg/net.h"

#define MAXRES 300

struct ctx {
    struct ahg_loop *loop;
    pthread_t loop_thread;
    int want;
    int got;
    int errs[MAXRES];
    char addrs[MAXRES][64];
    int wrong_thread;
};

static void
on_res(int err, const char *addr, void *ud)
{
    struct ctx **slot = ud;
    struct ctx *c = *slot;
    if (!pthread_equal(pthread_self(), c->loop_thread))
        c->wrong_thread++;
    if (c->got < MAXRES) {
        c->errs[c->got] = err;
        (void)snprintf(c->addrs[c->got], sizeof(c->addrs[0]), "%s", addr ? addr : "");
    }
    c->got++;
    if (c->got >= c->want)
        ahg_loop_stop(c->loop);
}

static void
guard_fired(struct ahg_timer *t)
{
    struct ctx *c = t->ud;
    ahg_loop_stop(c->loop);
}

static struct ctx *g_c;

static void
setup_ctx(struct ctx *c, int want)
{
    memset(c, 0, sizeof(*c));
    c->loop = ahg_loop_new(NULL);
    assert_non_null(c->loop);
    c->loop_thread = pthread_self();
    c->want = want;
    g_c = c;
}

static void
run_ctx(struct ctx *c, uint64_t guard_ms)
{
    struct ahg_timer t;
    ahg_timer_init(&t, c->loop, guard_fired, c);
    ahg_timer_start(&t, guard_ms);
    (void)ahg_loop_run(c->loop);
    ahg_timer_stop(&t);
}

static void
teardown_ctx(struct ctx *c)
{
    ahg_resolve_shutdown(c->loop);
    ahg_loop_free(c->loop);
}

/* Resolves one name and returns its answer in *err / addr. */
static void
resolve_one(const char *host, int *err, char *addr, size_t addrsz)
{
    struct ctx c;
    setup_ctx(&c, 1);
    assert_int_equal(ahg_resolve(c.loop, host, 443, on_res, &g_c), AHG_OK);
    assert_int_equal(c.got, 0); /* never re-entrant */
    run_ctx(&c, 15000);
    assert_int_equal(c.got, 1);
    assert_int_equal(c.wrong_thread, 0);
    *err = c.errs[0];
    (void)snprintf(addr, addrsz, "%s", c.addrs[0]);
    teardown_ctx(&c);
}

static void
test_resolve_numeric(void **state)
{
    (void)state;
    int err = -1;
    char addr[64];
    resolve_one("192.0.2.7", &err, addr, sizeof(addr));
    assert_int_equal(err, AHG_OK);
    assert_string_equal(addr, "192.0.2.7");
    resolve_one("[::1]", &err, addr, sizeof(addr));
    assert_int_equal(err, AHG_OK);
    assert_string_equal(addr, "::1");
    resolve_one("2001:db8::1", &err, addr, sizeof(addr));
    assert_int_equal(err, AHG_OK);
    assert_string_equal(addr, "2001:db8::1");
}

static void
test_resolve_localhost(void **state)
{
    (void)state;
    int err = -1;
    char addr[64];
    resolve_one("localhost", &err, addr, sizeof(addr));
    assert_int_equal(err, AHG_OK);
    assert_string_equal(addr, "127.0.0.1");
    resolve_one("LocalHost.", &err, addr, sizeof(addr));
    assert_int_equal(err, AHG_OK);
    assert_string_equal(addr, "127.0.0.1");
}

static void
test_resolve_sub_localhost(void **state)
{
    (void)state;
    int err = -1;
    char addr[64];
    resolve_one("relay.localhost", &err, addr, sizeof(addr));
    assert_int_equal(err, AHG_OK);
    assert_string_equal(addr, "127.0.0.1");
    resolve_one("a.b.servicebus.localhost", &err, addr, sizeof(addr));
    assert_int_equal(err, AHG_OK);
    assert_string_equal(addr, "127.0.0.1");
}

/* The first IPv4 entry of /etc/hosts whose name is not localhost; false when none. */
static int
hosts_entry(char *name, size_t namesz, char *ip, size_t ipsz)
{
    FILE *f = fopen("/etc/hosts", "r");
    if (!f)
        return 0;
    char line[512];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f)) {
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *save = NULL;
        char *a = strtok_r(line, " \t\r\n", &save);
        if (!a || !strchr(a, '.') || strchr(a, ':'))
            continue;
        for (char *n = strtok_r(NULL, " \t\r\n", &save); n; n = strtok_r(NULL, " \t\r\n", &save)) {
            size_t len = strlen(n);
            if (strcmp(n, "localhost") == 0 ||
                (len >= 10 && strcmp(n + len - 10, ".localhost") == 0) || strchr(n, '.'))
                continue;
            (void)snprintf(name, namesz, "%s", n);
            (void)snprintf(ip, ipsz, "%s", a);
            found = 1;
            break;
        }
    }
    (void)fclose(f);
    return found;
}

static void
test_resolve_etc_hosts(void **state)
{
    (void)state;
    char name[256], ip[64];
    if (!hosts_entry(name, sizeof(name), ip, sizeof(ip)))
        skip();
    int err = -1;
    char addr[64];
    resolve_one(name, &err, addr, sizeof(addr));
    assert_int_equal(err, AHG_OK);
    assert_string_equal(addr, ip);
}

static void
test_resolve_nonexistent(void **state)
{
    (void)state;
    int err = 0;
    char addr[64];
    resolve_one("no-such-host.invalid", &err, addr, sizeof(addr));
    assert_int_equal(err, AHG_ENOTFOUND);
    assert_string_equal(addr, "");
    /* through getaddrinfo: a name with a reserved TLD nobody serves */
    resolve_one("ahg-no-such-host-7f3a.test", &err, addr, sizeof(addr));
    assert_true(err != AHG_OK);
    assert_string_equal(addr, "");
}

static void
test_resolve_invalid_args(void **state)
{
    (void)state;
    struct ctx c;
    setup_ctx(&c, 1);
    assert_int_equal(ahg_resolve(c.loop, NULL, 80, on_res, &g_c), AHG_EINVAL);
    assert_int_equal(ahg_resolve(c.loop, "", 80, on_res, &g_c), AHG_EINVAL);
    assert_int_equal(ahg_resolve(c.loop, "x", 70000, on_res, &g_c), AHG_EINVAL);
    assert_int_equal(ahg_resolve(NULL, "x", 80, on_res, &g_c), AHG_EINVAL);
    char big[300];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(ahg_resolve(c.loop, big, 80, on_res, &g_c), AHG_EINVAL);
    teardown_ctx(&c);
}

static void
test_resolve_many_concurrent(void **state)
{
    (void)state;
    char name[256], ip[64];
    int have_hosts = hosts_entry(name, sizeof(name), ip, sizeof(ip));
    struct ctx c;
    enum { N = 200 };
    setup_ctx(&c, N);
    for (int i = 0; i < N; i++) {
        const char *h = (i % 3 == 0) ? "127.0.0.2" : (i % 3 == 1) ? "x.localhost" : name;
        if (i % 3 == 2 && !have_hosts)
            h = "10.1.2.3";
        assert_int_equal(ahg_resolve(c.loop, h, 80, on_res, &g_c), AHG_OK);
    }
    run_ctx(&c, 20000);
    assert_int_equal(c.got, N);
    assert_int_equal(c.wrong_thread, 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(c.errs[i], AHG_OK);
    teardown_ctx(&c);
}

static void
test_resolve_shutdown_drops(void **state)
{
    (void)state;
    char name[256], ip[64];
    int have_hosts = hosts_entry(name, sizeof(name), ip, sizeof(ip));
    struct ctx c;
    setup_ctx(&c, 1000);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(ahg_resolve(c.loop, "localhost", 80, on_res, &g_c), AHG_OK);
        if (have_hosts)
            assert_int_equal(ahg_resolve(c.loop, name, 80, on_res, &g_c), AHG_OK);
    }
    ahg_resolve_shutdown(c.loop);
    run_ctx(&c, 300);
    assert_int_equal(c.got, 0);
    ahg_loop_free(c.loop);
    /* the pool stops and starts again */
    ahg_resolve_shutdown(NULL);
    int err = -1;
    char addr[64];
    if (have_hosts) {
        resolve_one(name, &err, addr, sizeof(addr));
        assert_int_equal(err, AHG_OK);
    }
}

/* ahg_resolve_cancel drops exactly the lookups with that cb and ud. */
static void
test_resolve_cancel_one(void **state)
{
    (void)state;
    struct ctx c;
    setup_ctx(&c, 2);
    struct ctx *other = &c; /* a second ud pointing at the same context */
    assert_int_equal(ahg_resolve(c.loop, "localhost", 80, on_res, &g_c), AHG_OK);
    assert_int_equal(ahg_resolve(c.loop, "a.localhost", 80, on_res, &other), AHG_OK);
    assert_int_equal(ahg_resolve(c.loop, "b.localhost", 80, on_res, &other), AHG_OK);
    ahg_resolve_cancel(c.loop, on_res, &g_c);
    run_ctx(&c, 5000);
    assert_int_equal(c.got, 2); /* the two of `other`, not the cancelled one */
    run_ctx(&c, 200);
    assert_int_equal(c.got, 2);
    teardown_ctx(&c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve_numeric),
        cmocka_unit_test(test_resolve_cancel_one),
        cmocka_unit_test(test_resolve_localhost),
        cmocka_unit_test(test_resolve_sub_localhost),
        cmocka_unit_test(test_resolve_etc_hosts),
        cmocka_unit_test(test_resolve_nonexistent),
        cmocka_unit_test(test_resolve_invalid_args),
        cmocka_unit_test(test_resolve_many_concurrent),
        cmocka_unit_test(test_resolve_shutdown_drops),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    ahg_resolve_shutdown(NULL);
    return rc;
}
