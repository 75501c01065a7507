/*
 * list.h - intrusive doubly-linked list (header-only).
 *
 * Embed a struct ahg_list_node in the element and get the element back with AHG_LIST_ENTRY().
 * The list owns nothing: it never allocates or frees, and elements stay owned by their caller.
 * A list and its nodes have no lock; each is used by the one thread that owns the structs that
 * embed them (for the event-loop objects, the loop thread).
 *
 * Shape: a NULL-terminated chain from head. A linked node's prev is never NULL: the head's prev
 * is the last node (so push_back is O(1)); a detached node has prev == next == NULL, which is
 * also what a zero-initialised node holds, so a node from calloc()/memset() is detached.
 */
#ifndef AHG_LIST_H
#define AHG_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct ahg_list_node {
    struct ahg_list_node *prev, *next;
};

struct ahg_list {
    struct ahg_list_node *head;
    size_t count;
};

/* The element of type `type` whose member `member` is the node ptr. */
#define AHG_LIST_ENTRY(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* Iterates over the nodes of list, head first; `it` (struct ahg_list_node *) is declared by the
 * macro. The body must not remove `it` (use ahg_list_foreach_safe). */
#define ahg_list_foreach(it, list)                                                                 \
    for (struct ahg_list_node * (it) = (list)->head; (it); (it) = (it)->next)

/* Same, but the body may remove (or free) `it`; `tmp` holds the next node. */
#define ahg_list_foreach_safe(it, tmp, list)                                                       \
    for (struct ahg_list_node * (it) = (list)->head, *(tmp) = (it) ? (it)->next : NULL; (it);      \
         (it) = (tmp), (tmp) = (it) ? (it)->next : NULL)

/* Makes list empty (does not touch nodes that were on it). Any thread owning list; no errors. */
static inline void
ahg_list_init(struct ahg_list *list)
{
    list->head = NULL;
    list->count = 0;
}

/* Makes n detached. Any thread owning n; no errors. */
static inline void
ahg_list_node_init(struct ahg_list_node *n)
{
    n->prev = n->next = NULL;
}

/* True when n is on a list. */
static inline bool
ahg_list_is_linked(const struct ahg_list_node *n)
{
    return n->prev != NULL;
}

/* True when list has no node. */
static inline bool
ahg_list_is_empty(const struct ahg_list *list)
{
    return list->head == NULL;
}

/* Links the detached node n first on list (borrowed: the list does not own n). No errors. */
static inline void
ahg_list_push_front(struct ahg_list *list, struct ahg_list_node *n)
{
    struct ahg_list_node *h = list->head;
    n->next = h;
    if (h) {
        n->prev = h->prev;
        h->prev = n;
    } else {
        n->prev = n;
    }
    list->head = n;
    list->count++;
}

/* Links the detached node n last on list (borrowed). No errors. */
static inline void
ahg_list_push_back(struct ahg_list *list, struct ahg_list_node *n)
{
    struct ahg_list_node *h = list->head;
    if (!h) {
        ahg_list_push_front(list, n);
        return;
    }
    struct ahg_list_node *tail = h->prev;
    tail->next = n;
    n->prev = tail;
    n->next = NULL;
    h->prev = n;
    list->count++;
}

/* Unlinks n from list, which must be the list n is on, and leaves n detached. A no-op when n is
 * already detached. No errors. */
static inline void
ahg_list_remove(struct ahg_list *list, struct ahg_list_node *n)
{
    if (!n->prev)
        return;
    if (n == list->head) {
        list->head = n->next;
        if (n->next)
            n->next->prev = n->prev; /* the new head keeps pointing at the tail */
    } else {
        n->prev->next = n->next;
        if (n->next)
            n->next->prev = n->prev;
        else
            list->head->prev = n->prev; /* n was the tail */
    }
    n->prev = n->next = NULL;
    list->count--;
}

#endif /* AHG_LIST_H */
