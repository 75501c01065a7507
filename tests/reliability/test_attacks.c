/*
 * Attacks that need no gateway, against the real emulator (and client) binaries over
 * 127.0.0.1: listener tokens used on another HC, expired and forged tokens; no TLS below 1.2 on
 * any TLS listener; oversized WebSocket control messages (close 1009); secrets never in the logs
 * of a full tunnel session (test_load.c has the connection floods).
 * Measured numbers are printed as "rel: ..." lines (docs/reliability.md).
 */
#include "rel.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ahg/err.h"
#include "ahg/httpd.h"
#include "ahg/url.h"
#include "ahg/wsconn.h"

#define CERT AHG_TEST_FIXTURES "/certs/server.pem"
#define KEY  AHG_TEST_FIXTURES "/certs/server.key"

/* ---- helpers ---- */

static void
expect_rejected(struct tws *c, int status, const char *why)
{
    if (!tws_wait_fail(c, 10000))
        fail_msg("%s: the listener was accepted", why);
    if (c->fail_status != status)
        fail_msg("%s: expected %d, got %d '%s'", why, status, c->fail_status, c->fail_reason);
    (void)printf("rel: token attack '%s' -> %d %.80s\n", why, c->fail_status, c->fail_reason);
    tws_free(c);
}

/* Replaces the first occurrence of from in s (size ssz) with to. */
static void
replace(char *s, size_t ssz, const char *from, const char *to)
{
    size_t fl = strlen(from);
    char *p = s;
    while (*p && strncasecmp(p, from, fl) != 0)
        p++;
    assert_true(*p != '\0');
    char rest[2048];
    (void)snprintf(rest, sizeof(rest), "%s", p + strlen(from));
    size_t off = (size_t)(p - s);
    (void)snprintf(s + off, ssz - off, "%s%s", to, rest);
}

/* ---- listener tokens ---- */

static void
test_tokens_cross_hc_expired_forged(void **state)
{
    (void)state;
    struct rel r;
    rel_init(&r, "rel-tok");
    rel_emu_start(&r, NULL, NULL);
    char tok[1024], other[1024];
    struct tws c;

    /* the control: a token for hc1 listens on hc1 */
    th_token("hc1", NULL, NULL, 3600, tok, sizeof(tok));
    rel_listen(&r, &c, "hc1", tok);
    assert_true(tws_wait_open(&c, 10000));
    tws_free(&c);

    /* the same token on hc2 */
    rel_listen(&r, &c, "hc2", tok);
    expect_rejected(&c, 401, "hc1 token on hc2");

    /* hc1's signature with the audience rewritten to hc2 */
    (void)snprintf(other, sizeof(other), "%s", tok);
    replace(other, sizeof(other), "%2fhc1", "%2fhc2");
    rel_listen(&r, &c, "hc2", other);
    expect_rejected(&c, 401, "audience rewritten to hc2");

    /* expired a minute ago */
    th_token("hc1", NULL, NULL, -60, other, sizeof(other));
    rel_listen(&r, &c, "hc1", other);
    expect_rejected(&c, 401, "expired");

    /* the expiry pushed out by a year, signature kept */
    (void)snprintf(other, sizeof(other), "%s", tok);
    char se[64], se2[64];
    const char *p = strstr(tok, "se=");
    assert_non_null(p);
    long long exp = strtoll(p + 3, NULL, 10);
    (void)snprintf(se, sizeof(se), "se=%lld", exp);
    (void)snprintf(se2, sizeof(se2), "se=%lld", exp + 365LL * 86400);
    replace(other, sizeof(other), se, se2);
    rel_listen(&r, &c, "hc1", other);
    expect_rejected(&c, 401, "expiry extended");

    /* signed with a key the namespace does not have */
    th_token("hc1", NULL, "AAAAd2Wq7Lr4Tz9Pb1Vc6Ys3Hf8Jk0Ga5Ue2Io7Rw4Q=", 3600, other,
             sizeof(other));
    rel_listen(&r, &c, "hc1", other);
    expect_rejected(&c, 401, "forged key");

    /* the right key under a rule name that does not exist */
    th_token("hc1", "NoSuchRule", NULL, 3600, other, sizeof(other));
    rel_listen(&r, &c, "hc1", other);
    expect_rejected(&c, 401, "unknown rule");

    /* no signature at all */
    (void)snprintf(
        other, sizeof(other),
        "SharedAccessSignature sr=http%%3a%%2f%%2f" TH_HOST "%%2fhc1&se=%lld&skn=" TH_RULE, exp);
    rel_listen(&r, &c, "hc1", other);
    expect_rejected(&c, 401, "no signature");

    assert_true(rel_metric(&r, "ahg_emulator_auth_failures_total") >= 7 ||
                rel_metric(&r, "ahg_emulator_auth_failures_total") == -1);
    rel_finish(&r);
}

/* ---- TLS versions ---- */

static void
test_tls_minimum_version(void **state)
{
    (void)state;
    struct rel r;
    rel_init(&r, "rel-tls");
    const char *extra[] = {"--emulator-relay-cert=" CERT, "--emulator-relay-key=" KEY,
                           "--emulator-mgmt-cert=" CERT, "--emulator-mgmt-key=" KEY, NULL};
    rel_emu_start(&r, extra, NULL);
    const struct {
        const char *name;
        int port;
    } ports[] = {{"relay (wss/https)", r.relay_port}, {"management (https)", r.mgmt_port}};
    for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++)
        rel_tls_expect_min_12(ports[i].name, ports[i].port);
    rel_finish(&r);
}

/* ---- oversized WebSocket messages ---- */

static void
test_oversized_control_message_closes_1009(void **state)
{
    (void)state;
    struct rel r;
    rel_init(&r, "rel-big");
    rel_emu_start(&r, NULL, NULL);
    char tok[1024];
    th_token("hc1", NULL, NULL, 3600, tok, sizeof(tok));
    struct tws c;
    rel_listen(&r, &c, "hc1", tok);
    assert_true(tws_wait_open(&c, 10000));
    size_t n = (size_t)80 * 1024;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, 'x', n);
    big[0] = '{';
    assert_int_equal(ahg_wsconn_send(c.ws, AHG_WS_TEXT, big, n), AHG_OK);
    free(big);
    assert_true(tws_wait_close(&c, 10000));
    (void)printf("rel: 80 KiB control message -> close %u\n", (unsigned)c.close_code);
    assert_int_equal(c.close_code, 1009);
    tws_free(&c);
    /* the relay still serves listeners */
    rel_listen(&r, &c, "hc1", tok);
    assert_true(tws_wait_open(&c, 10000));
    tws_free(&c);
    rel_finish(&r);
}

/* ---- secrets in logs ---- */

static void
app_request(struct ahg_httpd_req *q)
{
    (void)ahg_httpd_respond(q, 200, "text/plain", "tunnel-ok\n", 10, NULL);
}

struct sess {
    struct tws *s;
    char got[8192];
    size_t len;
};

static bool
sess_done(void *arg)
{
    struct sess *x = arg;
    struct tmsg *m;
    while ((m = x->s->head)) {
        x->s->head = m->next;
        if (!x->s->head)
            x->s->tail = NULL;
        size_t take = m->len < sizeof(x->got) - 1 - x->len ? m->len : sizeof(x->got) - 1 - x->len;
        memcpy(x->got + x->len, m->data, take);
        x->len += take;
        x->got[x->len] = '\0';
        tmsg_free(m);
    }
    return strstr(x->got, "tunnel-ok") != NULL || x->s->closed || x->s->failed;
}

static void
check_no_secrets(const char *path, const char *const *secrets)
{
    for (size_t i = 0; secrets[i]; i++)
        if (rel_file_has(path, secrets[i]))
            fail_msg("%s contains secret #%zu", path, i);
}

static void
test_secrets_never_in_logs(void **state)
{
    (void)state;
    struct rel r;
    rel_init(&r, "rel-sec");
    rel_emu_start(&r, NULL, NULL);
    struct ahg_httpd_opts ao = {.name = "rel-app", .on_request = app_request};
    int err = 0;
    struct ahg_httpd *app = ahg_httpd_new(r.t.loop, &ao, &err);
    assert_non_null(app);

    char ltok[1024], stok[1024], port[32], relay[64], cli_log[400], tokarg[1100];
    th_token("hc1", NULL, NULL, 3600, ltok, sizeof(ltok));
    th_token("hc1", NULL, NULL, 1800, stok, sizeof(stok));
    (void)snprintf(port, sizeof(port), "--port=%d", ahg_httpd_port(app));
    (void)snprintf(relay, sizeof(relay), "--relay-endpoint=ws://127.0.0.1:%d", r.relay_port);
    (void)snprintf(tokarg, sizeof(tokarg), "--listener-token=%s", ltok);
    (void)snprintf(cli_log, sizeof(cli_log), "%s/client.log", r.dir);
    const char *argv[] = {AZHEXGATE_BIN, "start", port, relay, "--hybrid-connection=hc1",
                          tokarg,        NULL};
    /* (the client has no debug level; its info log is what a user keeps) */
    struct ts_proc cli;
    ts_spawn(&cli, argv, NULL, cli_log);
    /* the tunnel is up when the emulator counts its listener */
    uint64_t end = ahg_now_ms() + 20000;
    while (rel_metric(&r, "ahg_emulator_listeners") < 1 && ahg_now_ms() < end && ts_alive(&cli))
        th_run(&r.t, 50);
    if (rel_metric(&r, "ahg_emulator_listeners") < 1) {
        char *out = ts_output(&cli);
        fail_msg("the client did not connect: %s", out ? out : "");
    }
    /* a sender (as the gateway will be) does a full request through the tunnel, twice */
    for (int i = 0; i < 2; i++) {
        struct tws s;
        memset(&s, 0, sizeof(s));
        const char *hdr[] = {"ServiceBusAuthorization", stok, NULL};
        tws_connect(&r.t, &s, "/$hc/hc1?sb-hc-action=connect", hdr, NULL);
        assert_true(tws_wait_open(&s, 20000));
        static const char req[] = "GET /secret-test HTTP/1.1\r\nHost: demo.example\r\n"
                                  "Authorization: Bearer sensitive-bearer-0123456789\r\n\r\n";
        assert_int_equal(ahg_wsconn_send(s.ws, AHG_WS_BINARY, req, sizeof(req) - 1), AHG_OK);
        struct sess x = {.s = &s};
        assert_true(th_wait(&r.t, sess_done, &x, 20000));
        if (!strstr(x.got, "tunnel-ok"))
            fail_msg("no answer through the tunnel: '%s'", x.got);
        tws_free(&s);
    }
    ts_signal(&cli, SIGINT);
    for (int i = 0; i < 400 && ts_alive(&cli); i++)
        th_run(&r.t, 25);
    assert_int_equal(ts_wait_exit(&cli, 10000), 0);
    ts_signal(&r.emu, SIGTERM);
    assert_int_equal(ts_wait_exit(&r.emu, 20000), 0);
    /* the logs are complete; they did record the session */
    assert_true(rel_file_has(r.log, "listen") || rel_file_has(r.log, "listener"));
    if (getenv("AHG_REL_SHOW_LOGS")) {
        char *out = ts_output(&cli);
        (void)printf("rel: client log:\n%s\n", out ? out : "");
        free(out);
    }
    assert_true(rel_file_has(cli_log, "/secret-test")); /* its access log saw the requests */
    /* no key, no token, no signature (raw or URL-encoded), no bearer value */
    char lsig[256], ssig[256], lsig_raw[256], ssig_raw[256];
    const char *a = strstr(ltok, "sig="), *b = strstr(stok, "sig=");
    assert_non_null(a);
    assert_non_null(b);
    (void)snprintf(lsig, sizeof(lsig), "%.*s", (int)strcspn(a + 4, "&"), a + 4);
    (void)snprintf(ssig, sizeof(ssig), "%.*s", (int)strcspn(b + 4, "&"), b + 4);
    assert_int_equal(ahg_url_decode(lsig, strlen(lsig), lsig_raw, sizeof(lsig_raw), false, NULL),
                     AHG_OK);
    assert_int_equal(ahg_url_decode(ssig, strlen(ssig), ssig_raw, sizeof(ssig_raw), false, NULL),
                     AHG_OK);
    const char *secrets[] = {
        TH_KEY,   "XmNd2Wq7Lr4Tz9Pb1Vc6",        ltok, stok, lsig, ssig, lsig_raw,
        ssig_raw, "sensitive-bearer-0123456789", NULL};
    check_no_secrets(r.log, secrets);
    check_no_secrets(cli_log, secrets);
    long emu_lines = rel_count_lines(r.log), cli_lines = rel_count_lines(cli_log);
    (void)printf("rel: secrets: %ld emulator log lines (debug) and %ld client log lines "
                 "searched for 9 secrets: none found\n",
                 emu_lines, cli_lines);
    rel_finish(&r);
}

int
main(void)
{
    (void)signal(SIGPIPE, SIG_IGN);
    (void)setvbuf(stdout, NULL, _IOLBF, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokens_cross_hc_expired_forged),
        cmocka_unit_test(test_tls_minimum_version),
        cmocka_unit_test(test_oversized_control_message_closes_1009),
        cmocka_unit_test(test_secrets_never_in_logs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
