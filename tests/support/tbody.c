/*
 * tests/support/tbody.c - generated bodies, their checksum, and the generator and echo pieces of
 * local test apps (see tbody.h).
 */
#include "tbody.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "ahg/err.h"

unsigned char
tb_pat(uint64_t i)
{
    return (unsigned char)((i * 31u + (i >> 11)) & 0xffu);
}

uint64_t
tb_fnv(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

void
tb_pat_fill(unsigned char *buf, size_t n, uint64_t off)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = tb_pat(off + i);
}

uint64_t
tb_pat_sum(uint64_t n)
{
    uint64_t h = TB_FNV0;
    unsigned char buf[8192];
    for (uint64_t off = 0; off < n;) {
        size_t k = n - off < sizeof(buf) ? (size_t)(n - off) : sizeof(buf);
        tb_pat_fill(buf, k, off);
        h = tb_fnv(h, buf, k);
        off += k;
    }
    return h;
}

void
tb_gen_pump(struct ahg_httpd_req *r, uint64_t *off, uint64_t total, bool *ended)
{
    unsigned char buf[16384];
    while (*off < total && ahg_httpd_resp_writable(r)) {
        size_t k = total - *off < sizeof(buf) ? (size_t)(total - *off) : sizeof(buf);
        tb_pat_fill(buf, k, *off);
        if (ahg_httpd_resp_write(r, buf, k) != AHG_OK)
            return;
        *off += k;
    }
    if (*off == total && !*ended) {
        *ended = true;
        (void)ahg_httpd_resp_end(r);
    }
}

static void
echo_body(struct ahg_httpd_req *r, const char *p, size_t n)
{
    if (ahg_httpd_resp_write(r, p, n) != AHG_OK) {
        ahg_httpd_resp_abort(r);
        return;
    }
    if (!ahg_httpd_resp_writable(r))
        ahg_httpd_req_pause_body(r);
}

static void
echo_drain(struct ahg_httpd_req *r)
{
    ahg_httpd_req_resume_body(r);
}

static void
echo_end(struct ahg_httpd_req *r)
{
    (void)ahg_httpd_resp_end(r);
}

static const struct ahg_httpd_req_cbs echo_cbs = {
    .on_body = echo_body, .on_body_end = echo_end, .on_drain = echo_drain};

void
tb_echo(struct ahg_httpd_req *r, struct ahg_http_head *resp)
{
    const struct ahg_http_head *h = ahg_httpd_req_head(r);
    int64_t len = h->framing == AHG_HTTP_BODY_LENGTH ? (int64_t)h->content_length
                  : h->framing == AHG_HTTP_BODY_NONE ? 0
                                                     : AHG_HTTPD_LEN_CHUNKED;
    ahg_httpd_req_set_cbs(r, &echo_cbs, NULL);
    assert_int_equal(ahg_httpd_resp_begin(r, resp, len), AHG_OK);
}

static void *
loop_thread(void *arg)
{
    (void)ahg_loop_run(arg);
    return NULL;
}

static void
loop_stop_cb(void *arg)
{
    ahg_loop_stop(arg);
}

void
tb_loop_thread_start(struct ahg_loop *loop, pthread_t *thr)
{
    assert_int_equal(pthread_create(thr, NULL, loop_thread, loop), 0);
}

void
tb_loop_thread_stop(struct ahg_loop *loop, pthread_t thr)
{
    assert_int_equal(ahg_loop_post(loop, loop_stop_cb, loop), 0);
    assert_int_equal(pthread_join(thr, NULL), 0);
}
