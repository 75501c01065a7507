#include "ahg/buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

#include "ahg/err.h"

#define LWS_HEADROOM ((size_t)LWS_PRE)

/* Bytes allocated for a payload capacity of cap, or 0 if that would overflow size_t. */
static size_t
alloc_size(size_t pre, size_t cap)
{
    if (cap > SIZE_MAX - pre - 1)
        return 0;
    return pre + cap + 1;
}

/* Next payload capacity: double from the current one (or the minimum) until need fits. */
static size_t
grown_cap(const struct ahg_buf *b, size_t need)
{
    size_t c = b->cap ? b->cap : AHG_BUF_MIN_ALLOC;

    while (c < need) {
        if (c > b->max / 2) {
            c = b->max;
            break;
        }
        c *= 2;
    }
    if (c > b->max)
        c = b->max;
    return c;
}

/* Make the payload capacity at least need (need <= max already checked). */
static int
grow_to(struct ahg_buf *b, size_t need)
{
    size_t need_sz;
    size_t newcap;
    size_t sz;
    unsigned char *m;

    if (b->mem != NULL && need <= b->cap)
        return AHG_OK;
    if (b->mem == NULL && need == 0)
        return AHG_OK;

    need_sz = alloc_size(b->pre, need);
    if (need_sz == 0)
        return AHG_ENOMEM;
    newcap = grown_cap(b, need);
    sz = alloc_size(b->pre, newcap);
    if (sz == 0) {
        newcap = need;
        sz = need_sz;
    }
    m = realloc(b->mem, sz);
    if (m == NULL && newcap > need) {
        /* The geometric step was too greedy; settle for exactly what is needed. */
        newcap = need;
        m = realloc(b->mem, need_sz);
    }
    if (m == NULL)
        return AHG_ENOMEM;
    b->mem = m;
    b->cap = newcap;
    b->mem[b->pre + b->len] = '\0';
    return AHG_OK;
}

static void
buf_setup(struct ahg_buf *b, size_t pre, size_t max)
{
    b->mem = NULL;
    b->pre = pre;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void
ahg_buf_init(struct ahg_buf *b, size_t max)
{
    if (b == NULL)
        return;
    buf_setup(b, 0, max);
}

void
ahg_buf_init_lws(struct ahg_buf *b, size_t max)
{
    if (b == NULL)
        return;
    buf_setup(b, LWS_HEADROOM, max);
}

int
ahg_buf_reserve(struct ahg_buf *b, size_t extra)
{
    if (b == NULL)
        return AHG_EINVAL;
    /* len <= max always holds, so this cannot wrap. */
    if (extra > b->max - b->len)
        return AHG_ELIMIT;
    return grow_to(b, b->len + extra);
}

/* Reserve n > 0 more bytes and return where they go (the byte after the payload), or NULL
 * with *rc set. */
static unsigned char *
room_for(struct ahg_buf *b, size_t n, int *rc)
{
    *rc = ahg_buf_reserve(b, n);
    if (*rc != AHG_OK)
        return NULL;
    if (b->mem == NULL) { /* cannot happen for n > 0; keeps analyzers convinced */
        *rc = AHG_ENOMEM;
        return NULL;
    }
    return b->mem + b->pre + b->len;
}

int
ahg_buf_append(struct ahg_buf *b, const void *p, size_t n)
{
    unsigned char *dst;
    int rc;

    if (b == NULL)
        return AHG_EINVAL;
    if (n == 0)
        return AHG_OK;
    if (p == NULL)
        return AHG_EINVAL;
    dst = room_for(b, n, &rc);
    if (dst == NULL)
        return rc;
    memcpy(dst, p, n);
    dst[n] = '\0';
    b->len += n;
    return AHG_OK;
}

int
ahg_buf_append_str(struct ahg_buf *b, const char *s)
{
    if (s == NULL)
        return AHG_EINVAL;
    return ahg_buf_append(b, s, strlen(s));
}

int
ahg_buf_appendf(struct ahg_buf *b, const char *fmt, ...)
{
    va_list ap;
    size_t room;
    size_t n;
    char *dst;
    int w;
    int rc;

    if (b == NULL || fmt == NULL)
        return AHG_EINVAL;

    /* First try to format straight into the spare room (plus the NUL slot). */
    room = b->mem != NULL ? b->cap - b->len : 0;
    dst = b->mem != NULL ? (char *)(b->mem + b->pre + b->len) : NULL;
    va_start(ap, fmt);
    w = vsnprintf(dst, b->mem != NULL ? room + 1 : 0, fmt, ap);
    va_end(ap);
    if (w < 0) {
        if (b->mem != NULL)
            b->mem[b->pre + b->len] = '\0';
        return AHG_EINVAL;
    }
    n = (size_t)w;
    if (b->mem != NULL && n <= room) {
        b->len += n;
        return AHG_OK;
    }

    if (n == 0) /* nothing allocated and nothing to add */
        return AHG_OK;
    /* Did not fit: the payload is untouched, only the spare room was scribbled on. */
    if (b->mem != NULL)
        b->mem[b->pre + b->len] = '\0';
    dst = (char *)room_for(b, n, &rc);
    if (dst == NULL)
        return rc;
    va_start(ap, fmt);
    w = vsnprintf(dst, n + 1, fmt, ap);
    va_end(ap);
    if (w < 0 || (size_t)w != n) {
        dst[0] = '\0';
        return AHG_EINVAL;
    }
    b->len += n;
    return AHG_OK;
}

unsigned char *
ahg_buf_data(const struct ahg_buf *b)
{
    if (b == NULL || b->mem == NULL)
        return NULL;
    return b->mem + b->pre;
}

size_t
ahg_buf_len(const struct ahg_buf *b)
{
    return b != NULL ? b->len : 0;
}

const char *
ahg_buf_cstr(struct ahg_buf *b)
{
    if (b == NULL || b->mem == NULL)
        return "";
    b->mem[b->pre + b->len] = '\0';
    return (const char *)(b->mem + b->pre);
}

void
ahg_buf_consume(struct ahg_buf *b, size_t n)
{
    if (b == NULL || b->mem == NULL)
        return;
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->mem + b->pre, b->mem + b->pre + n, b->len - n);
        b->len -= n;
    }
    b->mem[b->pre + b->len] = '\0';
}

void
ahg_buf_reset(struct ahg_buf *b)
{
    if (b == NULL)
        return;
    b->len = 0;
    if (b->mem != NULL)
        b->mem[b->pre] = '\0';
}

void
ahg_buf_free(struct ahg_buf *b)
{
    if (b == NULL)
        return;
    free(b->mem);
    b->mem = NULL;
    b->len = 0;
    b->cap = 0;
}

unsigned char *
ahg_buf_take(struct ahg_buf *b, size_t *len)
{
    unsigned char *out;
    size_t n;

    if (b == NULL || b->pre != 0)
        return NULL;
    n = b->len;
    if (b->mem == NULL) {
        out = malloc(1);
        if (out == NULL)
            return NULL;
        out[0] = '\0';
    } else {
        out = b->mem;
        out[n] = '\0';
        if (b->cap > n) {
            /* Shrink to fit; keeping the larger block is fine if this fails. */
            unsigned char *s = realloc(out, n + 1);
            if (s != NULL)
                out = s;
        }
    }
    b->mem = NULL;
    b->len = 0;
    b->cap = 0;
    if (len != NULL)
        *len = n;
    return out;
}

unsigned char *
ahg_buf_take_lws(struct ahg_buf *b, size_t *len)
{
    unsigned char *out;
    size_t n;

    if (b == NULL || b->pre != LWS_HEADROOM)
        return NULL;
    n = b->len;
    if (b->mem == NULL) {
        out = ahg_lwsbuf_alloc(1);
        if (out == NULL)
            return NULL;
        out[0] = '\0';
    } else {
        out = b->mem + b->pre;
        out[n] = '\0';
    }
    b->mem = NULL;
    b->len = 0;
    b->cap = 0;
    if (len != NULL)
        *len = n;
    return out;
}

unsigned char *
ahg_lwsbuf_alloc(size_t payload)
{
    unsigned char *m;

    if (payload > SIZE_MAX - LWS_HEADROOM)
        return NULL;
    m = malloc(LWS_HEADROOM + payload);
    if (m == NULL)
        return NULL;
    return m + LWS_HEADROOM;
}

void
ahg_lwsbuf_free(unsigned char *payload)
{
    if (payload == NULL)
        return;
    free(payload - LWS_HEADROOM);
}
