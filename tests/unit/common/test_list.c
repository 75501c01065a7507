#include "ahg/list.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

struct item {
    int v;
    struct ahg_list_node link;
};

/* Writes the values of list, head first, into out; returns how many. Checks the links. */
static size_t
values(const struct ahg_list *list, int *out, size_t cap)
{
    size_t n = 0;
    const struct ahg_list_node *prev = NULL;
    ahg_list_foreach (it, list) {
        assert_true(n < cap);
        assert_true(ahg_list_is_linked(it));
        if (prev)
            assert_ptr_equal(it->prev, prev);
        out[n++] = AHG_LIST_ENTRY(it, struct item, link)->v;
        prev = it;
    }
    if (list->head)
        assert_ptr_equal(list->head->prev, prev); /* the head points at the tail */
    assert_int_equal(n, list->count);
    return n;
}

static void
expect(const struct ahg_list *list, const int *want, size_t nwant)
{
    int got[16];
    size_t n = values(list, got, 16);
    assert_int_equal(n, nwant);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(got[i], want[i]);
}

static void
test_list_init_is_empty(void **state)
{
    (void)state;
    struct ahg_list l;
    memset(&l, 0xff, sizeof(l));
    ahg_list_init(&l);
    assert_null(l.head);
    assert_int_equal(l.count, 0);
    assert_true(ahg_list_is_empty(&l));
    expect(&l, NULL, 0);
}

static void
test_list_push_front_and_back_order(void **state)
{
    (void)state;
    struct ahg_list l;
    ahg_list_init(&l);
    struct item it[4] = {{.v = 1}, {.v = 2}, {.v = 3}, {.v = 4}};
    ahg_list_push_front(&l, &it[0].link);
    ahg_list_push_front(&l, &it[1].link);
    ahg_list_push_back(&l, &it[2].link);
    ahg_list_push_front(&l, &it[3].link);
    expect(&l, (const int[]){4, 2, 1, 3}, 4);
    assert_false(ahg_list_is_empty(&l));
}

static void
test_list_remove_head_middle_tail(void **state)
{
    (void)state;
    struct ahg_list l;
    ahg_list_init(&l);
    struct item it[5];
    for (int i = 0; i < 5; i++) {
        it[i].v = i;
        ahg_list_node_init(&it[i].link);
        ahg_list_push_back(&l, &it[i].link);
    }
    expect(&l, (const int[]){0, 1, 2, 3, 4}, 5);
    ahg_list_remove(&l, &it[2].link); /* middle */
    expect(&l, (const int[]){0, 1, 3, 4}, 4);
    ahg_list_remove(&l, &it[0].link); /* head */
    expect(&l, (const int[]){1, 3, 4}, 3);
    ahg_list_remove(&l, &it[4].link); /* tail */
    expect(&l, (const int[]){1, 3}, 2);
    ahg_list_push_back(&l, &it[4].link); /* the tail pointer followed */
    expect(&l, (const int[]){1, 3, 4}, 3);
    ahg_list_remove(&l, &it[1].link);
    ahg_list_remove(&l, &it[3].link);
    ahg_list_remove(&l, &it[4].link); /* the only one */
    assert_true(ahg_list_is_empty(&l));
    expect(&l, NULL, 0);
    for (int i = 0; i < 5; i++) {
        assert_false(ahg_list_is_linked(&it[i].link));
        assert_null(it[i].link.prev);
        assert_null(it[i].link.next);
    }
}

static void
test_list_remove_detached_is_noop(void **state)
{
    (void)state;
    struct ahg_list l;
    ahg_list_init(&l);
    struct item a = {.v = 1}, b; /* a zeroed node is detached */
    memset(&b, 0, sizeof(b));
    assert_false(ahg_list_is_linked(&a.link));
    ahg_list_remove(&l, &a.link);
    assert_int_equal(l.count, 0);
    ahg_list_push_front(&l, &a.link);
    assert_true(ahg_list_is_linked(&a.link)); /* a lone node is linked too */
    ahg_list_remove(&l, &b.link);
    expect(&l, (const int[]){1}, 1);
    ahg_list_remove(&l, &a.link);
    ahg_list_remove(&l, &a.link); /* twice */
    assert_false(ahg_list_is_linked(&a.link));
    assert_int_equal(l.count, 0);
    assert_null(l.head);
}

static void
test_list_foreach_safe_removes_while_iterating(void **state)
{
    (void)state;
    struct ahg_list l;
    ahg_list_init(&l);
    struct item it[6];
    for (int i = 0; i < 6; i++) {
        it[i].v = i;
        ahg_list_node_init(&it[i].link);
        ahg_list_push_back(&l, &it[i].link);
    }
    int seen = 0;
    ahg_list_foreach_safe (n, tmp, &l) {
        struct item *x = AHG_LIST_ENTRY(n, struct item, link);
        seen++;
        if (x->v % 2 == 0)
            ahg_list_remove(&l, n);
    }
    assert_int_equal(seen, 6);
    expect(&l, (const int[]){1, 3, 5}, 3);
    ahg_list_foreach_safe (n, tmp, &l) {
        ahg_list_remove(&l, n);
    }
    assert_true(ahg_list_is_empty(&l));
}

static void
test_list_entry_recovers_container(void **state)
{
    (void)state;
    struct item x = {.v = 42};
    struct ahg_list_node *n = &x.link;
    assert_ptr_equal(AHG_LIST_ENTRY(n, struct item, link), &x);
    assert_int_equal(AHG_LIST_ENTRY(n, struct item, link)->v, 42);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_init_is_empty),
        cmocka_unit_test(test_list_push_front_and_back_order),
        cmocka_unit_test(test_list_remove_head_middle_tail),
        cmocka_unit_test(test_list_remove_detached_is_noop),
        cmocka_unit_test(test_list_foreach_safe_removes_while_iterating),
        cmocka_unit_test(test_list_entry_recovers_container),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
