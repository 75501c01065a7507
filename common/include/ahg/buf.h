/*
 * ahg/buf.h - growable byte buffers with a hard cap, and LWS_PRE headroom helpers.
 *
 * struct ahg_buf is embeddable (callers put it inside their own structs) but its fields are
 * managed by this API only: read them through ahg_buf_data()/ahg_buf_len(), never write them.
 *
 * Model: the buffer owns one heap allocation laid out as
 *
 *     mem: [ pre bytes headroom ][ payload: len bytes | cap - len spare ][ 1 byte NUL slot ]
 *
 * - `max` is the hard cap on `len` fixed at init; an operation that would make len exceed max
 *   fails with AHG_ELIMIT and leaves the buffer unchanged. Growth is geometric (doubling) but
 *   never beyond max, so memory is bounded by pre + max + 1 bytes.
 * - `pre` is 0 for plain buffers and LWS_PRE for buffers initialised with ahg_buf_init_lws(),
 *   so ahg_buf_data() can be handed to lws_write() directly.
 * - `cap` is the payload capacity of the current allocation (headroom and NUL slot excluded).
 * - Nothing is allocated until the first byte is needed; an empty, never-grown buffer has
 *   mem == NULL. Once allocated, the byte right after the payload (data[len]) is always NUL,
 *   after every call including failed ones, so the payload can be parsed as a C string.
 * - Every mutating call is all-or-nothing: on any error the contents, length and allocation
 *   are exactly as before the call.
 *
 * Thread-safety: an ahg_buf has no internal locking. It belongs to one thread at a time
 * (normally the lws service thread); hand it over only with external synchronisation.
 * Pointers returned by ahg_buf_data()/ahg_buf_cstr() are invalidated by any call that may
 * grow the buffer (reserve, append*) and by consume/free/take.
 */
#ifndef AHG_BUF_H
#define AHG_BUF_H

#include <stddef.h>

#if defined(__GNUC__) || defined(__clang__)
#define AHG_BUF_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#else
#define AHG_BUF_PRINTF(fmt_idx, arg_idx)
#endif

/* Smallest payload allocation made on first growth (still clamped to max). */
#define AHG_BUF_MIN_ALLOC 64

struct ahg_buf {
    unsigned char *mem; /* allocation start (headroom first); NULL until first growth */
    size_t pre;         /* headroom bytes in front of the payload (0 or LWS_PRE) */
    size_t len;         /* payload bytes in use */
    size_t cap;         /* payload capacity of mem (excludes headroom and the NUL slot) */
    size_t max;         /* hard cap on len */
};

/*
 * Initialise b as an empty plain buffer whose length may never exceed max bytes.
 * Allocates nothing and cannot fail. Any previous contents of *b are overwritten without
 * being freed (call ahg_buf_free() first on a buffer that holds memory).
 */
void ahg_buf_init(struct ahg_buf *b, size_t max);

/*
 * Like ahg_buf_init(), but every allocation keeps LWS_PRE writable bytes in front of the
 * payload, so ahg_buf_data(b) is a valid lws_write() argument (lws may overwrite the
 * headroom). max bounds the payload only; headroom is not counted.
 */
void ahg_buf_init_lws(struct ahg_buf *b, size_t max);

/*
 * Make sure at least `extra` more payload bytes fit without another allocation.
 * Returns AHG_OK; AHG_EINVAL if b is NULL; AHG_ELIMIT if len + extra would exceed max
 * (computed without overflow, so extra may be SIZE_MAX); AHG_ENOMEM if the allocation
 * fails. On error the buffer is unchanged.
 */
int ahg_buf_reserve(struct ahg_buf *b, size_t extra);

/*
 * Append n bytes copied from p. p may be NULL only when n is 0, and must not point into b's
 * own memory (growth may move it). Errors as ahg_buf_reserve(), plus AHG_EINVAL for
 * p == NULL with n > 0. All-or-nothing: on error nothing is appended.
 */
int ahg_buf_append(struct ahg_buf *b, const void *p, size_t n);

/* Append the NUL-terminated string s (without its NUL). Errors as ahg_buf_append(). */
int ahg_buf_append_str(struct ahg_buf *b, const char *s);

/*
 * Append printf-style formatted text (without a trailing NUL in len). Returns AHG_OK;
 * AHG_EINVAL for NULL b/fmt or an output/encoding error of vsnprintf; AHG_ELIMIT if the
 * formatted text does not fit under max; AHG_ENOMEM. On error the buffer's contents and
 * length are unchanged.
 */
int ahg_buf_appendf(struct ahg_buf *b, const char *fmt, ...) AHG_BUF_PRINTF(2, 3);

/*
 * Start of the payload (after any headroom), borrowed from b; NULL while nothing has been
 * allocated (then ahg_buf_len() is 0). The caller may write up to cap bytes there, but only
 * bytes below ahg_buf_len() are part of the contents.
 */
unsigned char *ahg_buf_data(const struct ahg_buf *b);

/* Payload length in bytes; 0 for NULL b. */
size_t ahg_buf_len(const struct ahg_buf *b);

/*
 * NUL-terminated view of the payload, borrowed from b: a NUL is stored right after the len
 * bytes (not counted in len). Returns "" (a static string) for NULL b or an unallocated
 * buffer. Contents with embedded NULs read as truncated strings.
 */
const char *ahg_buf_cstr(struct ahg_buf *b);

/* Drop the first n bytes (all of them if n >= len); keeps the allocation. NULL b: no-op. */
void ahg_buf_consume(struct ahg_buf *b, size_t n);

/* Set len to 0 and keep the allocation for reuse. NULL b: no-op. */
void ahg_buf_reset(struct ahg_buf *b);

/*
 * Release b's memory. Afterwards b is empty and keeps its max and headroom, so it can be
 * used again at once (or re-initialised). NULL b: no-op.
 */
void ahg_buf_free(struct ahg_buf *b);

/*
 * Detach the payload of a plain buffer: returns a heap block of *len + 1 bytes holding the
 * contents plus a NUL, which the caller owns and releases with free(). b becomes empty
 * (as after ahg_buf_free()). An empty buffer yields a fresh 1-byte "" block.
 * Returns NULL (b untouched) for NULL b, for a buffer made by ahg_buf_init_lws() (use
 * ahg_buf_take_lws()), or on allocation failure. len may be NULL.
 */
unsigned char *ahg_buf_take(struct ahg_buf *b, size_t *len);

/*
 * Detach the payload of an LWS_PRE buffer (ahg_buf_init_lws()): returns the payload pointer,
 * with LWS_PRE writable bytes before it and a NUL after *len bytes, which the caller owns
 * and releases with ahg_lwsbuf_free() (never free()). b becomes empty. An empty buffer
 * yields a fresh block with *len == 0. Returns NULL (b untouched) for NULL b, for a plain
 * buffer, or on allocation failure. len may be NULL.
 */
unsigned char *ahg_buf_take_lws(struct ahg_buf *b, size_t *len);

/*
 * Allocate a one-off buffer for lws_write(): returns a pointer to `payload` writable bytes
 * preceded by LWS_PRE writable bytes of headroom (contents uninitialised). The caller owns
 * it and releases it with ahg_lwsbuf_free(). Returns NULL if LWS_PRE + payload overflows
 * or the allocation fails. payload may be 0. Any thread.
 */
unsigned char *ahg_lwsbuf_alloc(size_t payload);

/*
 * Free a payload pointer returned by ahg_lwsbuf_alloc() or ahg_buf_take_lws().
 * NULL: no-op. Any thread.
 */
void ahg_lwsbuf_free(unsigned char *payload);

#endif /* AHG_BUF_H */
