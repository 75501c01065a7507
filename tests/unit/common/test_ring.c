#include "ahg/ring.h"
#include "ahg/buf.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include <libwebsockets.h>

/* Deterministic xorshift64 so the randomized test is reproducible everywhere. */
static uint64_t
next_rand(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

static size_t
rand_below(uint64_t *s, size_t n)
{
    return (size_t)(next_rand(s) % n);
}

/* Store n bytes of s at w, as a recv() into a write span would. */
static void
fill(unsigned char *w, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        w[i] = (unsigned char)s[i];
}

static void
test_ring_new_rejects_bad_args(void **state)
{
    struct ahg_ring *r;

    (void)state;
    assert_null(ahg_ring_new(0, 0, 0));
    assert_null(ahg_ring_new(0, 0, 1));
    assert_null(ahg_ring_new(SIZE_MAX, 1, 2));
    assert_null(ahg_ring_new(AHG_RING_CAPACITY_MAX + 1, 1, 2));
    assert_null(ahg_ring_new(16, 8, 8));        /* low == high: no hysteresis */
    assert_null(ahg_ring_new(16, 9, 8));        /* low > high */
    assert_null(ahg_ring_new(16, 4, 17));       /* high beyond capacity */
    assert_null(ahg_ring_new(16, 4, SIZE_MAX)); /* huge mark */

    r = ahg_ring_new(16, 0, 16);
    assert_non_null(r);
    assert_int_equal(ahg_ring_capacity(r), 16);
    assert_int_equal(ahg_ring_used(r), 0);
    assert_int_equal(ahg_ring_space(r), 16);
    assert_false(ahg_ring_should_pause(r));
    assert_int_equal(ahg_ring_poll_flow(r), AHG_RING_FLOW_NONE);
    ahg_ring_free(r);
}

static void
test_ring_null_args_are_safe(void **state)
{
    struct ahg_ring *r;
    unsigned char dummy = 0;
    const unsigned char *cp = &dummy;
    unsigned char *wp = &dummy;
    unsigned char tmp[4];

    (void)state;
    ahg_ring_free(NULL);
    ahg_ring_consume(NULL, 1);
    ahg_ring_commit(NULL, 1);
    ahg_ring_reset(NULL);
    assert_int_equal(ahg_ring_used(NULL), 0);
    assert_int_equal(ahg_ring_space(NULL), 0);
    assert_int_equal(ahg_ring_capacity(NULL), 0);
    assert_int_equal(ahg_ring_write(NULL, "abc", 3), 0);
    assert_int_equal(ahg_ring_read(NULL, tmp, 3), 0);
    assert_int_equal(ahg_ring_read_lws(NULL, tmp, 3), 0);
    assert_int_equal(ahg_ring_peek(NULL, &cp), 0);
    assert_null(cp);
    assert_int_equal(ahg_ring_write_span(NULL, &wp), 0);
    assert_null(wp);
    assert_false(ahg_ring_should_pause(NULL));
    assert_int_equal(ahg_ring_poll_flow(NULL), AHG_RING_FLOW_NONE);

    r = ahg_ring_new(8, 2, 6);
    assert_non_null(r);
    assert_int_equal(ahg_ring_write(r, NULL, 3), 0);
    assert_int_equal(ahg_ring_write(r, "abc", 3), 3);
    assert_int_equal(ahg_ring_read(r, NULL, 3), 0);
    assert_int_equal(ahg_ring_used(r), 3);
    ahg_ring_free(r);
}

static void
test_ring_write_read_basic(void **state)
{
    struct ahg_ring *r;
    char out[16];

    (void)state;
    r = ahg_ring_new(16, 4, 12);
    assert_non_null(r);
    assert_int_equal(ahg_ring_write(r, "hello", 5), 5);
    assert_int_equal(ahg_ring_used(r), 5);
    assert_int_equal(ahg_ring_space(r), 11);
    assert_int_equal(ahg_ring_read(r, out, 3), 3);
    assert_memory_equal(out, "hel", 3);
    assert_int_equal(ahg_ring_read(r, out, sizeof(out)), 2);
    assert_memory_equal(out, "lo", 2);
    assert_int_equal(ahg_ring_read(r, out, sizeof(out)), 0);
    assert_int_equal(ahg_ring_used(r), 0);
    ahg_ring_free(r);
}

static void
test_ring_write_is_bounded_by_space(void **state)
{
    struct ahg_ring *r;
    const char src[13] = "0123456789ab";
    char out[8];

    (void)state;
    r = ahg_ring_new(8, 1, 8);
    assert_non_null(r);
    assert_int_equal(ahg_ring_write(r, src, 12), 8);
    assert_int_equal(ahg_ring_space(r), 0);
    assert_int_equal(ahg_ring_write(r, src, 1), 0);
    /* A huge n only ever copies the free space: nothing here, then exactly 3 bytes. */
    assert_int_equal(ahg_ring_write(r, src, SIZE_MAX), 0);
    assert_int_equal(ahg_ring_read(r, out, 3), 3);
    assert_int_equal(ahg_ring_write(r, "xyz", SIZE_MAX), 3);
    assert_int_equal(ahg_ring_used(r), 8);
    assert_int_equal(ahg_ring_read(r, out, SIZE_MAX), 8);
    assert_memory_equal(out, "34567xyz", 8);
    ahg_ring_free(r);
}

static void
test_ring_peek_and_consume_across_wrap(void **state)
{
    struct ahg_ring *r;
    const unsigned char *p;
    unsigned char out[8];

    (void)state;
    r = ahg_ring_new(8, 1, 8);
    assert_non_null(r);
    assert_int_equal(ahg_ring_peek(r, &p), 0);
    assert_null(p);
    assert_int_equal(ahg_ring_write(r, "ABCDEF", 6), 6);
    assert_int_equal(ahg_ring_read(r, out, 4), 4); /* tail now at index 4 */
    assert_int_equal(ahg_ring_write(r, "GHIJK", 5), 5);
    assert_int_equal(ahg_ring_used(r), 7);

    /* Stored: E F G H | I J K (wrapped): the first span stops at the end of storage. */
    assert_int_equal(ahg_ring_peek(r, &p), 4);
    assert_memory_equal(p, "EFGH", 4);
    ahg_ring_consume(r, 1);
    assert_int_equal(ahg_ring_peek(r, &p), 3);
    assert_memory_equal(p, "FGH", 3);
    ahg_ring_consume(r, 3);
    assert_int_equal(ahg_ring_peek(r, &p), 3);
    assert_memory_equal(p, "IJK", 3);
    /* Consume spanning the wrap point is fine too. */
    assert_int_equal(ahg_ring_write(r, "LMNOP", 5), 5);
    ahg_ring_consume(r, 6);
    assert_int_equal(ahg_ring_used(r), 2);
    assert_int_equal(ahg_ring_read(r, out, 8), 2);
    assert_memory_equal(out, "OP", 2);
    ahg_ring_consume(r, SIZE_MAX);
    assert_int_equal(ahg_ring_used(r), 0);
    ahg_ring_free(r);
}

static void
test_ring_write_span_and_commit(void **state)
{
    struct ahg_ring *r;
    unsigned char *w;
    unsigned char out[8];

    (void)state;
    r = ahg_ring_new(8, 1, 8);
    assert_non_null(r);
    assert_int_equal(ahg_ring_write_span(r, &w), 8);
    fill(w, "abcde", 5);
    ahg_ring_commit(r, 5);
    assert_int_equal(ahg_ring_used(r), 5);
    assert_int_equal(ahg_ring_read(r, out, 4), 4); /* tail 4, head 5 */
    assert_memory_equal(out, "abcd", 4);

    assert_int_equal(ahg_ring_write_span(r, &w), 3); /* indexes 5..7 */
    fill(w, "fgh", 3);
    ahg_ring_commit(r, 3);
    assert_int_equal(ahg_ring_write_span(r, &w), 4); /* wrapped: 0..3 up to the tail */
    fill(w, "ijkl", 4);
    ahg_ring_commit(r, 4);
    assert_int_equal(ahg_ring_space(r), 0);
    assert_int_equal(ahg_ring_write_span(r, &w), 0);
    assert_null(w);
    ahg_ring_commit(r, 1); /* nothing to commit into: clamped */
    assert_int_equal(ahg_ring_used(r), 8);
    assert_int_equal(ahg_ring_read(r, out, 8), 8);
    assert_memory_equal(out, "efghijkl", 8);

    /* Emptied ring restarts at the front: the whole capacity is one span again. */
    assert_int_equal(ahg_ring_write_span(r, &w), 8);

    /* Over-commit is clamped to the current contiguous span. */
    assert_int_equal(ahg_ring_write(r, "123456", 6), 6);
    assert_int_equal(ahg_ring_read(r, out, 5), 5); /* tail 5, head 6 */
    assert_int_equal(ahg_ring_write_span(r, &w), 2);
    fill(w, "78", 2);
    ahg_ring_commit(r, SIZE_MAX);
    assert_int_equal(ahg_ring_used(r), 3);
    assert_int_equal(ahg_ring_read(r, out, 8), 3);
    assert_memory_equal(out, "678", 3);
    ahg_ring_free(r);
}

/* Reference model: a plain FIFO in a big linear array. */
struct model {
    unsigned char data[1 << 16];
    size_t start;
    size_t end;
};

static void
model_compact(struct model *m)
{
    if (m->start > sizeof(m->data) / 2) {
        memmove(m->data, m->data + m->start, m->end - m->start);
        m->end -= m->start;
        m->start = 0;
    }
}

static void
test_ring_randomized_against_model(void **state)
{
    static struct model m;
    enum { CAP = 97, ROUNDS = 200000 };
    struct ahg_ring *r;
    uint64_t seed = 0x9E3779B97F4A7C15ULL;
    unsigned char src[256];
    unsigned char dst[256];
    unsigned char counter = 0;
    size_t total = 0;
    bool paused = false; /* model of the 30/70 hysteresis */

    (void)state;
    m.start = m.end = 0;
    r = ahg_ring_new(CAP, 30, 70);
    assert_non_null(r);
    for (int round = 0; round < ROUNDS; round++) {
        size_t used = m.end - m.start;
        size_t n = rand_below(&seed, (size_t)2 * CAP);
        size_t k;

        switch (rand_below(&seed, 4)) {
        case 0: /* write */
            for (size_t i = 0; i < n; i++)
                src[i] = counter++;
            k = ahg_ring_write(r, src, n);
            assert_int_equal(k, n < CAP - used ? n : CAP - used);
            counter = (unsigned char)(counter - (n - k)); /* unwritten bytes are reused */
            memcpy(m.data + m.end, src, k);
            m.end += k;
            break;
        case 1: /* read */
            k = ahg_ring_read(r, dst, n);
            assert_int_equal(k, n < used ? n : used);
            assert_memory_equal(dst, m.data + m.start, k);
            m.start += k;
            total += k;
            break;
        case 2: { /* peek + partial consume */
            const unsigned char *p;

            k = ahg_ring_peek(r, &p);
            assert_true(k <= used);
            assert_true(used == 0 || k > 0);
            if (k > 0)
                assert_memory_equal(p, m.data + m.start, k);
            k = n < k ? n : k;
            ahg_ring_consume(r, k);
            m.start += k;
            total += k;
            break;
        }
        default: { /* write span + partial commit */
            unsigned char *w;
            size_t span = ahg_ring_write_span(r, &w);

            assert_true(span <= CAP - used);
            assert_true(used == CAP || span > 0);
            k = n < span ? n : span;
            for (size_t i = 0; i < k; i++) {
                w[i] = counter;
                m.data[m.end + i] = counter++;
            }
            ahg_ring_commit(r, k);
            m.end += k;
            break;
        }
        }
        used = m.end - m.start;
        if (used >= 70)
            paused = true;
        else if (used <= 30)
            paused = false;
        assert_int_equal(ahg_ring_used(r), used);
        assert_int_equal(ahg_ring_space(r), CAP - used);
        assert_true(ahg_ring_should_pause(r) == paused);
        model_compact(&m);
    }
    /* Drain and compare the tail end too. */
    {
        size_t k = ahg_ring_read(r, dst, sizeof(dst));

        assert_int_equal(k, m.end - m.start);
        assert_memory_equal(dst, m.data + m.start, k);
        total += k;
    }
    assert_true(total > (size_t)ROUNDS); /* the sequence really moved data */
    ahg_ring_free(r);
}

static void
test_ring_watermark_hysteresis(void **state)
{
    struct ahg_ring *r;
    unsigned char src[100];
    unsigned char *w;

    (void)state;
    memset(src, 'x', sizeof(src));
    r = ahg_ring_new(100, 20, 80);
    assert_non_null(r);

    assert_int_equal(ahg_ring_write(r, src, 79), 79);
    assert_false(ahg_ring_should_pause(r));
    assert_int_equal(ahg_ring_poll_flow(r), AHG_RING_FLOW_NONE);
    assert_int_equal(ahg_ring_write(r, src, 1), 1); /* used == high */
    assert_true(ahg_ring_should_pause(r));
    assert_int_equal(ahg_ring_poll_flow(r), AHG_RING_FLOW_PAUSE);
    assert_int_equal(ahg_ring_poll_flow(r), AHG_RING_FLOW_NONE); /* reported once */

    /* Draining to just above low keeps it paused, even after refilling below high. */
    ahg_ring_consume(r, 59); /* used 21 */
    assert_true(ahg_ring_should_pause(r));
    assert_int_equal(ahg_ring_write(r, src, 10), 10); /* used 31 */
    assert_true(ahg_ring_should_pause(r));
    assert_int_equal(ahg_ring_read(r, src, 11), 11); /* used 20 == low */
    assert_false(ahg_ring_should_pause(r));
    assert_int_equal(ahg_ring_poll_flow(r), AHG_RING_FLOW_RESUME);
    assert_int_equal(ahg_ring_poll_flow(r), AHG_RING_FLOW_NONE);

    /* Running again: refilling to just below high keeps it running. */
    assert_int_equal(ahg_ring_write(r, src, 59), 59); /* used 79 */
    assert_false(ahg_ring_should_pause(r));
    ahg_ring_consume(r, 70);                          /* used 9 */
    assert_int_equal(ahg_ring_write(r, src, 70), 70); /* used 79 */
    assert_false(ahg_ring_should_pause(r));

    /* Commit crosses high too. */
    assert_true(ahg_ring_write_span(r, &w) >= 1);
    ahg_ring_commit(r, 1); /* used 80 */
    assert_true(ahg_ring_should_pause(r));
    assert_int_equal(ahg_ring_poll_flow(r), AHG_RING_FLOW_PAUSE);

    /* Reset while paused: running, and the resume edge is reported. */
    ahg_ring_reset(r);
    assert_int_equal(ahg_ring_used(r), 0);
    assert_false(ahg_ring_should_pause(r));
    assert_int_equal(ahg_ring_poll_flow(r), AHG_RING_FLOW_RESUME);

    /* Pause and resume between two polls cancel out. */
    assert_int_equal(ahg_ring_write(r, src, 90), 90);
    assert_true(ahg_ring_should_pause(r));
    ahg_ring_consume(r, 85);
    assert_false(ahg_ring_should_pause(r));
    assert_int_equal(ahg_ring_poll_flow(r), AHG_RING_FLOW_NONE);
    ahg_ring_free(r);
}

static void
test_ring_watermark_at_capacity(void **state)
{
    struct ahg_ring *r;
    unsigned char src[16];

    (void)state;
    memset(src, 'y', sizeof(src));
    r = ahg_ring_new(16, 0, 16);
    assert_non_null(r);
    /* A truncated write that fills the ring reaches high == capacity. */
    assert_int_equal(ahg_ring_write(r, src, 15), 15);
    assert_false(ahg_ring_should_pause(r));
    assert_int_equal(ahg_ring_write(r, src, 16), 1);
    assert_true(ahg_ring_should_pause(r));
    ahg_ring_consume(r, 15);
    assert_true(ahg_ring_should_pause(r)); /* used 1 > low 0 */
    assert_int_equal(ahg_ring_read(r, src, 16), 1);
    assert_false(ahg_ring_should_pause(r));
    assert_int_equal(ahg_ring_poll_flow(r), AHG_RING_FLOW_NONE);
    ahg_ring_free(r);
}

static void
test_ring_read_lws_leaves_headroom(void **state)
{
    struct ahg_ring *r;
    unsigned char *payload;

    (void)state;
    r = ahg_ring_new(32, 8, 24);
    assert_non_null(r);
    payload = ahg_lwsbuf_alloc(16);
    assert_non_null(payload);
    memset(payload - LWS_PRE, 0x5A, LWS_PRE + 16);

    assert_int_equal(ahg_ring_write(r, "0123456789abcdefghij", 20), 20);
    assert_int_equal(ahg_ring_read_lws(r, payload, 16), 16);
    assert_memory_equal(payload, "0123456789abcdef", 16);
    for (size_t i = 0; i < (size_t)LWS_PRE; i++)
        assert_int_equal((payload - LWS_PRE)[i], 0x5A);
    assert_int_equal(ahg_ring_used(r), 4);
    assert_int_equal(ahg_ring_read_lws(r, payload, 16), 4);
    assert_memory_equal(payload, "ghij", 4);
    /* The headroom belongs to lws: it must be writable (ASan checks the bounds). */
    memset(payload - LWS_PRE, 0, LWS_PRE);
    ahg_lwsbuf_free(payload);
    ahg_ring_free(r);
}

static void
test_ring_reset_empties(void **state)
{
    struct ahg_ring *r;
    unsigned char *w;
    unsigned char out[4];

    (void)state;
    r = ahg_ring_new(10, 2, 8);
    assert_non_null(r);
    assert_int_equal(ahg_ring_write(r, "abcdefg", 7), 7);
    assert_int_equal(ahg_ring_read(r, out, 3), 3);
    ahg_ring_reset(r);
    assert_int_equal(ahg_ring_used(r), 0);
    assert_int_equal(ahg_ring_space(r), 10);
    assert_int_equal(ahg_ring_write_span(r, &w), 10);
    assert_int_equal(ahg_ring_read(r, out, 4), 0);
    assert_int_equal(ahg_ring_write(r, "zz", 2), 2);
    assert_int_equal(ahg_ring_read(r, out, 4), 2);
    assert_memory_equal(out, "zz", 2);
    ahg_ring_free(r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_new_rejects_bad_args),
        cmocka_unit_test(test_ring_null_args_are_safe),
        cmocka_unit_test(test_ring_write_read_basic),
        cmocka_unit_test(test_ring_write_is_bounded_by_space),
        cmocka_unit_test(test_ring_peek_and_consume_across_wrap),
        cmocka_unit_test(test_ring_write_span_and_commit),
        cmocka_unit_test(test_ring_randomized_against_model),
        cmocka_unit_test(test_ring_watermark_hysteresis),
        cmocka_unit_test(test_ring_watermark_at_capacity),
        cmocka_unit_test(test_ring_read_lws_leaves_headroom),
        cmocka_unit_test(test_ring_reset_empties),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
