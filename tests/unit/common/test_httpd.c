/*
 * The HTTP server against a real client on 127.0.0.1: the loop runs on the test thread, a
 * client thread speaks raw HTTP/1.1 over a blocking socket.
 */
#include "ahg/httpd.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ahg/err.h"

/* ---- server side ---- */

static int finished_ok, finished_bad;

static void
echo_body(struct ahg_httpd_req *r, const char *p, size_t n)
{
    assert_int_equal(ahg_httpd_resp_write(r, p, n), AHG_OK);
}

static void
echo_end(struct ahg_httpd_req *r)
{
    ahg_httpd_resp_end(r);
}

static void
note_finish(struct ahg_httpd_req *r, bool completed)
{
    (void)r;
    if (completed)
        finished_ok++;
    else
        finished_bad++;
}

static const struct ahg_httpd_req_cbs echo_cbs = {
    .on_body = echo_body,
    .on_body_end = echo_end,
    .on_finish = note_finish,
};

static const struct ahg_httpd_req_cbs plain_cbs = {.on_finish = note_finish};

static void
on_request(struct ahg_httpd_req *r)
{
    const char *path = ahg_httpd_req_path(r);
    if (!strcmp(path, "/hello")) {
        ahg_httpd_req_set_cbs(r, &plain_cbs, NULL);
        const char *fields[] = {"X-Query", ahg_httpd_req_query(r), NULL};
        ahg_httpd_respond(r, 200, "text/plain", "hello", 5, fields);
    } else if (!strcmp(path, "/echo")) {
        ahg_httpd_req_set_cbs(r, &echo_cbs, NULL);
        int err = 0;
        struct ahg_http_head *h = ahg_http_head_new_response(200, NULL, &err);
        assert_non_null(h);
        assert_int_equal(ahg_httpd_resp_begin(r, h, AHG_HTTPD_LEN_CHUNKED), AHG_OK);
    } else if (!strcmp(path, "/small")) {
        ahg_httpd_req_set_cbs(r, &plain_cbs, NULL);
        ahg_httpd_req_set_max_body(r, 10);
    } else if (!strcmp(path, "/reject")) {
        /* answers before reading the body: the server drains it and keeps the connection */
        ahg_httpd_req_set_cbs(r, &plain_cbs, NULL);
        ahg_httpd_respond_error(r, 401, "AUTH", "no key", true);
    } else {
        ahg_httpd_req_set_cbs(r, &plain_cbs, NULL);
        ahg_httpd_respond_error(r, 404, "NOT_FOUND", "no such path", false);
    }
}

/* ---- client thread ---- */

struct exchange {
    int port;
    const char *const *pieces; /* sent one after another, gap_ms apart (then send is ignored) */
    unsigned gap_ms;
    const char *send;  /* bytes to send */
    size_t send_len;   /* 0 = strlen */
    unsigned pause_ms; /* pause after sending before reading */
    char got[65536];
    size_t got_len;
    bool closed; /* server closed the connection */
    struct ahg_loop *loop;
};

static void *
client_main(void *arg)
{
    struct exchange *x = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)x->port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        if (x->pieces) {
            for (size_t i = 0; x->pieces[i]; i++) {
                if (i) {
                    struct timespec gap = {.tv_sec = x->gap_ms / 1000u,
                                           .tv_nsec = (long)(x->gap_ms % 1000u) * 1000000L};
                    nanosleep(&gap, NULL);
                }
                (void)!write(fd, x->pieces[i], strlen(x->pieces[i]));
            }
        } else {
            size_t len = x->send_len ? x->send_len : strlen(x->send);
            (void)!write(fd, x->send, len);
        }
        if (x->pause_ms) {
            struct timespec ts = {.tv_sec = x->pause_ms / 1000u,
                                  .tv_nsec = (long)(x->pause_ms % 1000u) * 1000000L};
            nanosleep(&ts, NULL);
        }
        struct timeval tv = {.tv_sec = 0, .tv_usec = 700000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        for (;;) {
            ssize_t n = read(fd, x->got + x->got_len, sizeof(x->got) - 1 - x->got_len);
            if (n == 0) {
                x->closed = true;
                break;
            }
            if (n < 0)
                break; /* timeout: connection still open */
            x->got_len += (size_t)n;
        }
        x->got[x->got_len] = '\0';
    }
    close(fd);
    ahg_loop_stop(x->loop);
    return NULL;
}

/* Runs a server with o (name, port and handler filled in here) on a loop of its own until the
 * client thread, which plays x, is done; returns x. */
static struct exchange *
run_exchange(struct ahg_httpd_opts *o, struct exchange *x)
{
    struct ahg_loop *loop = ahg_loop_new(NULL);
    assert_non_null(loop);
    o->name = "t";
    o->port = 0;
    o->on_request = on_request;
    int err = 0;
    struct ahg_httpd *s = ahg_httpd_new(loop, o, &err);
    assert_non_null(s);
    x->port = ahg_httpd_port(s);
    x->loop = loop;
    finished_ok = finished_bad = 0;
    pthread_t th;
    pthread_create(&th, NULL, client_main, x);
    ahg_loop_run(loop);
    pthread_join(th, NULL);
    ahg_loop_free(loop);
    return x;
}

static struct exchange *
run(const char *send, size_t send_len, unsigned pause_ms, uint64_t header_timeout_ms)
{
    struct ahg_httpd_opts o = {.header_timeout_ms = header_timeout_ms};
    o.limits.max_head = 1024;
    o.limits.max_line = 256;
    o.limits.max_fields = 32;
    struct exchange *x = calloc(1, sizeof(*x));
    assert_non_null(x);
    x->send = send;
    x->send_len = send_len;
    x->pause_ms = pause_ms;
    return run_exchange(&o, x);
}

/* Sends pieces gap_ms apart to a server whose idle timeout is idle_ms. */
static struct exchange *
run_trickle(const char *const *pieces, unsigned gap_ms, uint64_t idle_ms)
{
    struct ahg_httpd_opts o = {.idle_timeout_ms = idle_ms};
    struct exchange *x = calloc(1, sizeof(*x));
    assert_non_null(x);
    x->pieces = pieces;
    x->gap_ms = gap_ms;
    return run_exchange(&o, x);
}

static size_t
count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void
test_httpd_keepalive_and_pipelining(void **state)
{
    (void)state;
    struct exchange *x = run("GET /hello?a=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                             "GET /hello?b=2 HTTP/1.1\r\nHost: x\r\n\r\n",
                             0, 0, 0);
    assert_int_equal(count(x->got, "HTTP/1.1 200 OK\r\n"), 2);
    assert_non_null(strstr(x->got, "X-Query: a=1\r\n"));
    assert_non_null(strstr(x->got, "X-Query: b=2\r\n"));
    assert_true(strstr(x->got, "a=1") < strstr(x->got, "b=2")); /* in order */
    assert_false(x->closed);                                    /* kept alive */
    assert_int_equal(finished_ok, 2);
    free(x);
}

static void
test_httpd_echo_chunked_and_content_length(void **state)
{
    (void)state;
    struct exchange *x =
        run("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world"
            "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            "3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer: t\r\n\r\n",
            0, 0, 0);
    assert_int_equal(count(x->got, "Transfer-Encoding: chunked\r\n"), 2);
    assert_non_null(strstr(x->got, "b\r\nhello world\r\n0\r\n\r\n"));
    assert_non_null(strstr(x->got, "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"));
    assert_false(x->closed);
    free(x);
}

static void
test_httpd_smuggling_rejected_and_closed(void **state)
{
    (void)state;
    struct exchange *x = run("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                             "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                             0, 0, 0);
    assert_non_null(strstr(x->got, "HTTP/1.1 400 Bad Request\r\n"));
    assert_non_null(strstr(x->got, "Connection: close\r\n"));
    assert_true(x->closed);
    free(x);
}

static void
test_httpd_limits_431_414_413(void **state)
{
    (void)state;
    char big[2048];
    (void)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %01500d\r\n\r\n", 0);
    struct exchange *x = run(big, 0, 0, 0);
    assert_non_null(strstr(x->got, "HTTP/1.1 431 "));
    assert_true(x->closed);
    free(x);

    (void)snprintf(big, sizeof(big), "GET /%0400d HTTP/1.1\r\nHost: x\r\n\r\n", 0);
    x = run(big, 0, 0, 0);
    assert_non_null(strstr(x->got, "HTTP/1.1 414 "));
    free(x);

    x = run("POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n01234567890123456789", 0,
            0, 0);
    assert_non_null(strstr(x->got, "HTTP/1.1 413 "));
    free(x);
}

static void
test_httpd_expect_continue_and_head(void **state)
{
    (void)state;
    struct exchange *x = run("POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                             "Content-Length: 2\r\n\r\nhi",
                             0, 0, 0);
    assert_true(strncmp(x->got, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0);
    assert_non_null(strstr(x->got, "2\r\nhi\r\n0\r\n\r\n"));
    free(x);

    x = run("HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n", 0, 0, 0);
    assert_non_null(strstr(x->got, "Content-Length: 5\r\n"));
    assert_null(strstr(x->got, "hello"));
    free(x);
}

static void
test_httpd_early_answer_drains_body(void **state)
{
    (void)state;
    struct exchange *x = run("POST /reject HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde"
                             "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n",
                             0, 0, 0);
    assert_non_null(strstr(x->got, "HTTP/1.1 401 Unauthorized\r\n"));
    assert_non_null(strstr(x->got, "{\"error\":{\"code\":\"AUTH\",\"message\":\"no key\"}}"));
    assert_non_null(strstr(x->got, "HTTP/1.1 200 OK\r\n"));
    free(x);
}

static void
test_httpd_http10_closes(void **state)
{
    (void)state;
    struct exchange *x = run("GET /hello HTTP/1.0\r\n\r\n", 0, 0, 0);
    assert_non_null(strstr(x->got, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(x->got, "Connection: close\r\n"));
    assert_true(x->closed);
    free(x);
}

/* The body timeout counts from the last body bytes: a slow but steady upload is not cut off,
 * a stalled one is (408 before an answer began, else the connection closes). */
static void
test_httpd_body_idle_timeout(void **state)
{
    (void)state;
    static const char *const steady[] = {
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n",
        "a",
        "b",
        "c",
        "d",
        "e",
        "f",
        NULL};
    struct exchange *x = run_trickle(steady, 150, 400); /* 900 ms in all, gaps < 400 ms */
    assert_non_null(strstr(x->got, "HTTP/1.1 200 OK\r\n"));
    assert_null(strstr(x->got, "408"));
    assert_non_null(strstr(x->got, "f\r\n0\r\n\r\n")); /* every byte echoed, body complete */
    free(x);
    static const char *const stalled[] = {
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nab", "cdef", NULL};
    x = run_trickle(stalled, 900, 300);
    /* the echo handler had begun its answer, so no 408 can follow: the connection closes
     * before the body (and the answer) completes */
    assert_true(x->closed);
    assert_null(strstr(x->got, "0\r\n\r\n"));
    free(x);
}

/* A connection that never sends a byte is closed after the header timeout, not kept for the
 * (longer) keep-alive idle time. */
static void
test_httpd_silent_connection_closed(void **state)
{
    (void)state;
    struct exchange *x = run("", 0, 600, 200);
    assert_true(x->closed);
    assert_int_equal(x->got_len, 0);
    free(x);
}

static void
test_httpd_slowloris_gets_408(void **state)
{
    (void)state;
    struct exchange *x = run("GET /hello HTTP/1.1\r\nHost: x\r\n", 0, 400, 150);
    assert_non_null(strstr(x->got, "HTTP/1.1 408 Request Timeout\r\n"));
    assert_true(x->closed);
    free(x);
}

static void
test_httpd_absolute_form_target(void **state)
{
    (void)state;
    struct exchange *x = run("GET http://x/hello?abs=1 HTTP/1.1\r\nHost: x\r\n\r\n", 0, 0, 0);
    assert_non_null(strstr(x->got, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(x->got, "X-Query: abs=1\r\n"));
    free(x);
}

static void
test_httpd_not_found_text(void **state)
{
    (void)state;
    struct exchange *x = run("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 0, 0, 0);
    assert_non_null(strstr(x->got, "HTTP/1.1 404 Not Found\r\n"));
    assert_non_null(strstr(x->got, "404 Not Found: no such path\n"));
    free(x);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_httpd_keepalive_and_pipelining),
        cmocka_unit_test(test_httpd_echo_chunked_and_content_length),
        cmocka_unit_test(test_httpd_smuggling_rejected_and_closed),
        cmocka_unit_test(test_httpd_limits_431_414_413),
        cmocka_unit_test(test_httpd_expect_continue_and_head),
        cmocka_unit_test(test_httpd_early_answer_drains_body),
        cmocka_unit_test(test_httpd_http10_closes),
        cmocka_unit_test(test_httpd_slowloris_gets_408),
        cmocka_unit_test(test_httpd_silent_connection_closed),
        cmocka_unit_test(test_httpd_body_idle_timeout),
        cmocka_unit_test(test_httpd_absolute_form_target),
        cmocka_unit_test(test_httpd_not_found_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
