#include "ahg/buf.h"
#include "ahg/err.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <stdlib.h>
#include <cmocka.h>

#include <libwebsockets.h>

static void
test_buf_init_allocates_nothing(void **state)
{
    struct ahg_buf b;

    (void)state;
    ahg_buf_init(&b, 128);
    assert_null(b.mem);
    assert_null(ahg_buf_data(&b));
    assert_int_equal(ahg_buf_len(&b), 0);
    assert_string_equal(ahg_buf_cstr(&b), "");
    assert_int_equal(b.pre, 0);
    assert_int_equal(b.max, 128);
    ahg_buf_free(&b);

    ahg_buf_init_lws(&b, 128);
    assert_null(ahg_buf_data(&b));
    assert_int_equal(b.pre, (size_t)LWS_PRE);
    ahg_buf_free(&b);
}

static void
test_buf_append_and_cstr(void **state)
{
    struct ahg_buf b;

    (void)state;
    ahg_buf_init(&b, 1024);
    assert_int_equal(ahg_buf_append(&b, "hello", 5), AHG_OK);
    assert_int_equal(ahg_buf_append_str(&b, ", world"), AHG_OK);
    assert_int_equal(ahg_buf_append(&b, "", 0), AHG_OK);
    assert_int_equal(ahg_buf_len(&b), 12);
    assert_memory_equal(ahg_buf_data(&b), "hello, world", 12);
    assert_int_equal(ahg_buf_data(&b)[12], '\0');
    assert_string_equal(ahg_buf_cstr(&b), "hello, world");

    /* Binary data with an embedded NUL is kept byte for byte. */
    assert_int_equal(ahg_buf_append(&b, "a\0b", 3), AHG_OK);
    assert_int_equal(ahg_buf_len(&b), 15);
    assert_memory_equal(ahg_buf_data(&b) + 12, "a\0b", 3);
    ahg_buf_free(&b);
}

static void
test_buf_growth_is_geometric_and_capped(void **state)
{
    struct ahg_buf b;
    size_t last_cap = 0;
    int reallocs = 0;

    (void)state;
    ahg_buf_init(&b, 1000);
    for (size_t i = 0; i < 1000; i++) {
        unsigned char c = (unsigned char)i;

        assert_int_equal(ahg_buf_append(&b, &c, 1), AHG_OK);
        assert_true(b.cap >= b.len);
        assert_true(b.cap <= b.max);
        if (b.cap != last_cap) {
            reallocs++;
            assert_true(last_cap == 0 || b.cap == 1000 || b.cap == 2 * last_cap);
            last_cap = b.cap;
        }
    }
    /* 64, 128, 256, 512, then clamped to exactly max. */
    assert_int_equal(reallocs, 5);
    assert_int_equal(b.cap, 1000);
    for (size_t i = 0; i < 1000; i++)
        assert_int_equal(ahg_buf_data(&b)[i], (unsigned char)i);

    assert_int_equal(ahg_buf_append(&b, "x", 1), AHG_ELIMIT);
    assert_int_equal(ahg_buf_len(&b), 1000);
    assert_int_equal(b.cap, 1000);
    ahg_buf_free(&b);
}

static void
test_buf_cap_is_exact(void **state)
{
    struct ahg_buf b;

    (void)state;
    ahg_buf_init(&b, 10);
    assert_int_equal(ahg_buf_reserve(&b, 11), AHG_ELIMIT);
    assert_null(ahg_buf_data(&b));
    assert_int_equal(ahg_buf_append(&b, "0123456789", 10), AHG_OK);
    assert_int_equal(b.cap, 10);
    assert_int_equal(ahg_buf_reserve(&b, 0), AHG_OK);
    assert_int_equal(ahg_buf_reserve(&b, 1), AHG_ELIMIT);
    assert_int_equal(ahg_buf_append(&b, "x", 1), AHG_ELIMIT);
    assert_int_equal(ahg_buf_append_str(&b, "x"), AHG_ELIMIT);
    assert_string_equal(ahg_buf_cstr(&b), "0123456789");
    ahg_buf_free(&b);
}

static void
test_buf_append_is_all_or_nothing(void **state)
{
    struct ahg_buf b;
    unsigned char *mem;
    size_t cap;

    (void)state;
    ahg_buf_init(&b, 16);
    assert_int_equal(ahg_buf_append(&b, "abcdefghij", 10), AHG_OK);
    mem = b.mem;
    cap = b.cap;
    /* 10 + 7 > 16: nothing of the 7 bytes may land, not even the 6 that would fit. */
    assert_int_equal(ahg_buf_append(&b, "klmnopq", 7), AHG_ELIMIT);
    assert_int_equal(ahg_buf_len(&b), 10);
    assert_string_equal(ahg_buf_cstr(&b), "abcdefghij");
    assert_ptr_equal(b.mem, mem);
    assert_int_equal(b.cap, cap);
    assert_int_equal(ahg_buf_append(&b, "klmnop", 6), AHG_OK);
    assert_string_equal(ahg_buf_cstr(&b), "abcdefghijklmnop");
    ahg_buf_free(&b);
}

static void
test_buf_appendf_formats_and_grows(void **state)
{
    struct ahg_buf b;
    char big[300];

    (void)state;
    ahg_buf_init(&b, 4096);
    assert_int_equal(ahg_buf_appendf(&b, "%s", ""), AHG_OK);
    assert_int_equal(ahg_buf_len(&b), 0);
    assert_int_equal(ahg_buf_appendf(&b, "%s=%d;", "a", 42), AHG_OK);
    assert_string_equal(ahg_buf_cstr(&b), "a=42;");
    assert_int_equal(ahg_buf_len(&b), 5);

    /* Longer than the spare room: takes the grow-and-retry path. */
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(ahg_buf_appendf(&b, "[%s]%zu", big, (size_t)7), AHG_OK);
    assert_int_equal(ahg_buf_len(&b), 5 + 1 + 299 + 1 + 1);
    assert_memory_equal(ahg_buf_data(&b), "a=42;[zz", 8);
    assert_string_equal(ahg_buf_cstr(&b) + 5 + 1 + 299, "]7");
    ahg_buf_free(&b);
}

static void
test_buf_appendf_beyond_max_keeps_contents(void **state)
{
    struct ahg_buf b;

    (void)state;
    ahg_buf_init(&b, 20);
    assert_int_equal(ahg_buf_append_str(&b, "0123456789"), AHG_OK);
    /* The allocation already spans max, so the first format attempt writes into the spare
     * room and gets truncated; the payload and its NUL must survive. */
    assert_int_equal(b.cap, 20);
    assert_int_equal(ahg_buf_appendf(&b, "%s-%d", "this is too long", 12345), AHG_ELIMIT);
    assert_int_equal(ahg_buf_len(&b), 10);
    assert_int_equal(ahg_buf_data(&b)[10], '\0'); /* restored by appendf itself */
    assert_string_equal(ahg_buf_cstr(&b), "0123456789");

    /* Exactly up to max still fits. */
    assert_int_equal(ahg_buf_appendf(&b, "%05d%s", 42, "abcde"), AHG_OK);
    assert_string_equal(ahg_buf_cstr(&b), "012345678900042abcde");
    assert_int_equal(ahg_buf_appendf(&b, "%c", 'x'), AHG_ELIMIT);
    assert_string_equal(ahg_buf_cstr(&b), "012345678900042abcde");
    ahg_buf_free(&b);

    /* Same on a buffer that has not allocated yet: stays unallocated. */
    ahg_buf_init(&b, 4);
    assert_int_equal(ahg_buf_appendf(&b, "%d", 123456), AHG_ELIMIT);
    assert_null(ahg_buf_data(&b));
    assert_int_equal(ahg_buf_len(&b), 0);
    ahg_buf_free(&b);
}

static void
test_buf_consume_drops_front(void **state)
{
    struct ahg_buf b;
    unsigned char *mem;

    (void)state;
    ahg_buf_init(&b, 64);
    ahg_buf_consume(&b, 5); /* nothing allocated: no-op */
    assert_int_equal(ahg_buf_append_str(&b, "abcdef"), AHG_OK);
    mem = b.mem;
    ahg_buf_consume(&b, 0);
    assert_string_equal(ahg_buf_cstr(&b), "abcdef");
    ahg_buf_consume(&b, 2);
    assert_int_equal(ahg_buf_len(&b), 4);
    assert_int_equal(ahg_buf_data(&b)[4], '\0');
    assert_string_equal(ahg_buf_cstr(&b), "cdef");
    ahg_buf_consume(&b, 3);
    assert_string_equal(ahg_buf_cstr(&b), "f");
    ahg_buf_consume(&b, SIZE_MAX);
    assert_int_equal(ahg_buf_len(&b), 0);
    assert_string_equal(ahg_buf_cstr(&b), "");
    assert_ptr_equal(b.mem, mem);
    /* Consumed room is reusable up to max again. */
    assert_int_equal(ahg_buf_append(&b,
                                    "0123456789012345678901234567890123456789"
                                    "012345678901234567890123",
                                    64),
                     AHG_OK);
    ahg_buf_free(&b);
}

static void
test_buf_reset_keeps_memory(void **state)
{
    struct ahg_buf b;
    unsigned char *data;

    (void)state;
    ahg_buf_init(&b, 256);
    assert_int_equal(ahg_buf_append_str(&b, "some text"), AHG_OK);
    data = ahg_buf_data(&b);
    ahg_buf_reset(&b);
    assert_int_equal(ahg_buf_len(&b), 0);
    assert_ptr_equal(ahg_buf_data(&b), data);
    assert_string_equal(ahg_buf_cstr(&b), "");
    assert_int_equal(ahg_buf_append_str(&b, "xy"), AHG_OK);
    assert_ptr_equal(ahg_buf_data(&b), data);
    assert_string_equal(ahg_buf_cstr(&b), "xy");
    ahg_buf_free(&b);
}

static void
test_buf_free_then_reuse(void **state)
{
    struct ahg_buf b;

    (void)state;
    ahg_buf_init_lws(&b, 8);
    assert_int_equal(ahg_buf_append_str(&b, "12345678"), AHG_OK);
    ahg_buf_free(&b);
    assert_null(b.mem);
    assert_int_equal(ahg_buf_len(&b), 0);
    ahg_buf_free(&b); /* twice is fine */
    /* Same max and headroom after free. */
    assert_int_equal(ahg_buf_append_str(&b, "123456789"), AHG_ELIMIT);
    assert_int_equal(ahg_buf_append_str(&b, "abc"), AHG_OK);
    assert_int_equal(b.pre, (size_t)LWS_PRE);
    assert_string_equal(ahg_buf_cstr(&b), "abc");
    ahg_buf_free(&b);
}

static void
test_buf_take_plain(void **state)
{
    struct ahg_buf b;
    unsigned char *p;
    size_t n = 99;

    (void)state;
    ahg_buf_init(&b, 1024);
    assert_int_equal(ahg_buf_append_str(&b, "payload"), AHG_OK);
    p = ahg_buf_take(&b, &n);
    assert_non_null(p);
    assert_int_equal(n, 7);
    assert_string_equal((const char *)p, "payload");
    assert_null(b.mem);
    assert_int_equal(ahg_buf_len(&b), 0);
    free(p);

    /* b is immediately reusable, and an empty take yields a fresh "" block. */
    p = ahg_buf_take(&b, &n);
    assert_non_null(p);
    assert_int_equal(n, 0);
    assert_int_equal(p[0], '\0');
    free(p);
    assert_int_equal(ahg_buf_append_str(&b, "again"), AHG_OK);
    p = ahg_buf_take(&b, NULL);
    assert_string_equal((const char *)p, "again");
    free(p);

    /* Refused for LWS_PRE buffers: the buffer is left as it was. */
    ahg_buf_init_lws(&b, 64);
    assert_int_equal(ahg_buf_append_str(&b, "lws"), AHG_OK);
    assert_null(ahg_buf_take(&b, &n));
    assert_string_equal(ahg_buf_cstr(&b), "lws");
    ahg_buf_free(&b);
}

static void
test_buf_lws_headroom_is_writable(void **state)
{
    struct ahg_buf b;
    unsigned char *d;
    size_t n = 0;

    (void)state;
    ahg_buf_init_lws(&b, 4096);
    for (int i = 0; i < 100; i++)
        assert_int_equal(ahg_buf_appendf(&b, "line %d\n", i), AHG_OK);
    d = ahg_buf_data(&b);
    assert_ptr_equal(d, b.mem + LWS_PRE);
    /* What lws_write() does: scribble over the LWS_PRE bytes in front (ASan checks them). */
    memset(d - LWS_PRE, 0xA5, LWS_PRE);
    assert_memory_equal(d, "line 0\nline 1\n", 14);
    /* Consume keeps the payload right after the headroom. */
    ahg_buf_consume(&b, 7);
    assert_ptr_equal(ahg_buf_data(&b), d);
    assert_memory_equal(ahg_buf_data(&b), "line 1\n", 7);

    /* take_lws hands out the payload pointer; headroom stays writable until lwsbuf_free. */
    assert_null(ahg_buf_take(&b, NULL));
    d = ahg_buf_take_lws(&b, &n);
    assert_non_null(d);
    assert_true(n > 7);
    assert_memory_equal(d, "line 1\n", 7);
    assert_int_equal(d[n], '\0');
    memset(d - LWS_PRE, 0, LWS_PRE);
    ahg_lwsbuf_free(d);
    assert_null(b.mem);

    /* Empty take_lws: a fresh block with headroom. */
    d = ahg_buf_take_lws(&b, &n);
    assert_non_null(d);
    assert_int_equal(n, 0);
    memset(d - LWS_PRE, 0, LWS_PRE + 1);
    ahg_lwsbuf_free(d);

    /* take_lws refuses plain buffers. */
    ahg_buf_init(&b, 16);
    assert_int_equal(ahg_buf_append_str(&b, "plain"), AHG_OK);
    assert_null(ahg_buf_take_lws(&b, &n));
    assert_string_equal(ahg_buf_cstr(&b), "plain");
    ahg_buf_free(&b);
}

static void
test_buf_lwsbuf_alloc_headroom(void **state)
{
    unsigned char *p;

    (void)state;
    p = ahg_lwsbuf_alloc(100);
    assert_non_null(p);
    memset(p - LWS_PRE, 0x11, LWS_PRE + 100);
    assert_int_equal(p[99], 0x11);
    ahg_lwsbuf_free(p);

    p = ahg_lwsbuf_alloc(0);
    assert_non_null(p);
    memset(p - LWS_PRE, 0, LWS_PRE);
    ahg_lwsbuf_free(p);

    ahg_lwsbuf_free(NULL);
}

static void
test_buf_overflow_sizes_rejected(void **state)
{
    struct ahg_buf b;
    const char src[4] = "abc";

    (void)state;
    ahg_buf_init(&b, 100);
    assert_int_equal(ahg_buf_append_str(&b, "keep"), AHG_OK);
    assert_int_equal(ahg_buf_reserve(&b, SIZE_MAX), AHG_ELIMIT);
    assert_int_equal(ahg_buf_reserve(&b, SIZE_MAX - 3), AHG_ELIMIT);
    /* n is never trusted for reading: the cap check comes first. */
    assert_int_equal(ahg_buf_append(&b, src, SIZE_MAX), AHG_ELIMIT);
    assert_string_equal(ahg_buf_cstr(&b), "keep");
    ahg_buf_free(&b);

    /* With no practical cap the size arithmetic must still not wrap. */
    ahg_buf_init(&b, SIZE_MAX);
    assert_int_equal(ahg_buf_append_str(&b, "keep"), AHG_OK);
    assert_int_equal(ahg_buf_reserve(&b, SIZE_MAX), AHG_ELIMIT);
    assert_int_equal(ahg_buf_reserve(&b, SIZE_MAX - 4), AHG_ENOMEM);
    assert_int_equal(ahg_buf_append(&b, src, SIZE_MAX - 4), AHG_ENOMEM);
    assert_string_equal(ahg_buf_cstr(&b), "keep");
    ahg_buf_free(&b);

    ahg_buf_init_lws(&b, SIZE_MAX);
    assert_int_equal(ahg_buf_reserve(&b, SIZE_MAX - (size_t)LWS_PRE), AHG_ENOMEM);
    assert_int_equal(ahg_buf_reserve(&b, SIZE_MAX - 1), AHG_ENOMEM);
    assert_null(b.mem);
    ahg_buf_free(&b);

    assert_null(ahg_lwsbuf_alloc(SIZE_MAX));
    assert_null(ahg_lwsbuf_alloc(SIZE_MAX - (size_t)LWS_PRE + 1));
}

static void
test_buf_zero_max(void **state)
{
    struct ahg_buf b;

    (void)state;
    ahg_buf_init(&b, 0);
    assert_int_equal(ahg_buf_append(&b, "x", 0), AHG_OK);
    assert_int_equal(ahg_buf_appendf(&b, "%s", ""), AHG_OK);
    assert_int_equal(ahg_buf_append(&b, "x", 1), AHG_ELIMIT);
    assert_int_equal(ahg_buf_appendf(&b, "%c", 'x'), AHG_ELIMIT);
    assert_null(ahg_buf_data(&b));
    assert_string_equal(ahg_buf_cstr(&b), "");
    ahg_buf_free(&b);
}

static void
test_buf_null_args_are_safe(void **state)
{
    struct ahg_buf b;

    (void)state;
    ahg_buf_free(NULL);
    ahg_buf_reset(NULL);
    ahg_buf_consume(NULL, 3);
    assert_int_equal(ahg_buf_len(NULL), 0);
    assert_null(ahg_buf_data(NULL));
    assert_string_equal(ahg_buf_cstr(NULL), "");
    assert_int_equal(ahg_buf_reserve(NULL, 1), AHG_EINVAL);
    assert_int_equal(ahg_buf_append(NULL, "x", 1), AHG_EINVAL);
    assert_int_equal(ahg_buf_append_str(NULL, "x"), AHG_EINVAL);
    assert_int_equal(ahg_buf_appendf(NULL, "%d", 1), AHG_EINVAL);
    assert_null(ahg_buf_take(NULL, NULL));
    assert_null(ahg_buf_take_lws(NULL, NULL));

    ahg_buf_init(&b, 8);
    assert_int_equal(ahg_buf_append(&b, NULL, 0), AHG_OK);
    assert_int_equal(ahg_buf_append(&b, NULL, 1), AHG_EINVAL);
    assert_int_equal(ahg_buf_append_str(&b, NULL), AHG_EINVAL);
    assert_null(b.mem);
    ahg_buf_free(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_init_allocates_nothing),
        cmocka_unit_test(test_buf_append_and_cstr),
        cmocka_unit_test(test_buf_growth_is_geometric_and_capped),
        cmocka_unit_test(test_buf_cap_is_exact),
        cmocka_unit_test(test_buf_append_is_all_or_nothing),
        cmocka_unit_test(test_buf_appendf_formats_and_grows),
        cmocka_unit_test(test_buf_appendf_beyond_max_keeps_contents),
        cmocka_unit_test(test_buf_consume_drops_front),
        cmocka_unit_test(test_buf_reset_keeps_memory),
        cmocka_unit_test(test_buf_free_then_reuse),
        cmocka_unit_test(test_buf_take_plain),
        cmocka_unit_test(test_buf_lws_headroom_is_writable),
        cmocka_unit_test(test_buf_lwsbuf_alloc_headroom),
        cmocka_unit_test(test_buf_overflow_sizes_rejected),
        cmocka_unit_test(test_buf_zero_max),
        cmocka_unit_test(test_buf_null_args_are_safe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
