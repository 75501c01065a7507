#include "ahg/ring.h"

#include <stdlib.h>
#include <string.h>

struct ahg_ring {
    unsigned char *mem;
    size_t cap;    /* bytes in mem */
    size_t tail;   /* index of the oldest byte; 0 whenever the ring is empty */
    size_t used;   /* bytes stored */
    size_t low;    /* resume at used <= low */
    size_t high;   /* pause at used >= high */
    bool paused;   /* current flow state */
    bool reported; /* flow state as last returned by ahg_ring_poll_flow() */
};

/* Index one past the newest byte. tail < cap and used <= cap <= AHG_RING_CAPACITY_MAX. */
static size_t
head_index(const struct ahg_ring *r)
{
    size_t h = r->tail + r->used;

    return h >= r->cap ? h - r->cap : h;
}

/* Contiguous free bytes starting at head_index(). */
static size_t
free_span(const struct ahg_ring *r)
{
    size_t h;

    if (r->used == r->cap)
        return 0;
    h = head_index(r);
    return h >= r->tail ? r->cap - h : r->tail - h;
}

/* Contiguous stored bytes starting at tail. */
static size_t
data_span(const struct ahg_ring *r)
{
    size_t to_end = r->cap - r->tail;

    return r->used < to_end ? r->used : to_end;
}

static void
added(struct ahg_ring *r, size_t n)
{
    r->used += n;
    if (r->used >= r->high)
        r->paused = true;
}

static void
removed(struct ahg_ring *r, size_t n)
{
    r->used -= n;
    r->tail += n;
    if (r->tail >= r->cap)
        r->tail -= r->cap;
    if (r->used == 0)
        r->tail = 0; /* empty: restart at 0 so the next write span is the whole ring */
    if (r->used <= r->low)
        r->paused = false;
}

struct ahg_ring *
ahg_ring_new(size_t capacity, size_t low_mark, size_t high_mark)
{
    struct ahg_ring *r;

    if (capacity == 0 || capacity > AHG_RING_CAPACITY_MAX)
        return NULL;
    if (low_mark >= high_mark || high_mark > capacity)
        return NULL;
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->mem = malloc(capacity);
    if (r->mem == NULL) {
        free(r);
        return NULL;
    }
    r->cap = capacity;
    r->low = low_mark;
    r->high = high_mark;
    return r;
}

void
ahg_ring_free(struct ahg_ring *r)
{
    if (r == NULL)
        return;
    free(r->mem);
    free(r);
}

size_t
ahg_ring_used(const struct ahg_ring *r)
{
    return r != NULL ? r->used : 0;
}

size_t
ahg_ring_space(const struct ahg_ring *r)
{
    return r != NULL ? r->cap - r->used : 0;
}

size_t
ahg_ring_capacity(const struct ahg_ring *r)
{
    return r != NULL ? r->cap : 0;
}

size_t
ahg_ring_write(struct ahg_ring *r, const void *p, size_t n)
{
    const unsigned char *src = p;
    size_t done = 0;

    if (r == NULL || p == NULL)
        return 0;
    /* At most two pieces: up to the end of mem, then from its start. */
    while (done < n) {
        size_t span = free_span(r);
        size_t k = n - done < span ? n - done : span;

        if (k == 0)
            break;
        memcpy(r->mem + head_index(r), src + done, k);
        added(r, k);
        done += k;
    }
    return done;
}

size_t
ahg_ring_read(struct ahg_ring *r, void *dst, size_t n)
{
    unsigned char *out = dst;
    size_t done = 0;

    if (r == NULL || dst == NULL)
        return 0;
    while (done < n) {
        size_t span = data_span(r);
        size_t k = n - done < span ? n - done : span;

        if (k == 0)
            break;
        memcpy(out + done, r->mem + r->tail, k);
        removed(r, k);
        done += k;
    }
    return done;
}

size_t
ahg_ring_peek(const struct ahg_ring *r, const unsigned char **p)
{
    if (r == NULL || r->used == 0) {
        *p = NULL;
        return 0;
    }
    *p = r->mem + r->tail;
    return data_span(r);
}

void
ahg_ring_consume(struct ahg_ring *r, size_t n)
{
    if (r == NULL)
        return;
    removed(r, n < r->used ? n : r->used);
}

size_t
ahg_ring_write_span(struct ahg_ring *r, unsigned char **p)
{
    size_t span;

    if (r == NULL) {
        *p = NULL;
        return 0;
    }
    span = free_span(r);
    *p = span != 0 ? r->mem + head_index(r) : NULL;
    return span;
}

void
ahg_ring_commit(struct ahg_ring *r, size_t n)
{
    size_t span;

    if (r == NULL)
        return;
    span = free_span(r);
    added(r, n < span ? n : span);
}

size_t
ahg_ring_read_lws(struct ahg_ring *r, unsigned char *dst_payload, size_t max)
{
    return ahg_ring_read(r, dst_payload, max);
}

bool
ahg_ring_should_pause(const struct ahg_ring *r)
{
    return r != NULL && r->paused;
}

enum ahg_ring_flow
ahg_ring_poll_flow(struct ahg_ring *r)
{
    if (r == NULL || r->paused == r->reported)
        return AHG_RING_FLOW_NONE;
    r->reported = r->paused;
    return r->paused ? AHG_RING_FLOW_PAUSE : AHG_RING_FLOW_RESUME;
}

void
ahg_ring_reset(struct ahg_ring *r)
{
    if (r == NULL)
        return;
    r->used = 0;
    r->tail = 0;
    r->paused = false;
}
