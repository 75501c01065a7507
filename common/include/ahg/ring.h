/*
 * ahg/ring.h - fixed-capacity byte ring for tunnel streams, with backpressure watermarks.
 *
 * The ring is allocated once at ahg_ring_new() and never grows: writes copy at most the free
 * space and report how much they took, so a fast peer can never make it allocate.
 *
 * Backpressure (hysteresis between two watermarks, low < high):
 * - The ring is "paused" or "running"; a new ring runs.
 * - Whenever a call that adds data (write, commit) leaves used >= high, the ring pauses.
 * - Whenever a call that removes data (read, read_lws, consume, reset) leaves used <= low, it
 *   runs again.
 * - In between (low < used < high) the state does not change, so the producer is not toggled
 *   on and off at every byte.
 * Level query: ahg_ring_should_pause() returns the current state: true means "stop reading the
 * source" (e.g. lws_rx_flow_control(src, 0)). Edge query: ahg_ring_poll_flow() reports each
 * state change once, so callers act only on transitions (there is no separate
 * "should_resume": a resume is the AHG_RING_FLOW_RESUME edge, or should_pause() turning false).
 *
 * Thread-safety: none inside. A ring belongs to one thread (normally the lws service thread);
 * every call, including the read-only ones, must come from that thread or be externally
 * serialised. Pointers returned through peek/write_span stay valid until the next call that
 * changes the ring (write, read, consume, commit, reset, free).
 */
#ifndef AHG_RING_H
#define AHG_RING_H

#include <stdbool.h>
#include <stddef.h>

/* Largest capacity ahg_ring_new() accepts (1 GiB): anything bigger is a configuration bug. */
#define AHG_RING_CAPACITY_MAX ((size_t)1 << 30)

struct ahg_ring; /* opaque */

/* Flow-control transitions reported by ahg_ring_poll_flow(). */
enum ahg_ring_flow {
    AHG_RING_FLOW_NONE = 0, /* no change since the last poll */
    AHG_RING_FLOW_PAUSE,    /* the ring paused: stop reading the source */
    AHG_RING_FLOW_RESUME,   /* the ring runs again: resume reading the source */
};

/*
 * Create an empty, running ring holding up to capacity bytes, pausing at high_mark and
 * resuming at low_mark. Requires 0 < capacity <= AHG_RING_CAPACITY_MAX and
 * low_mark < high_mark <= capacity. Returns NULL on bad arguments or allocation failure.
 * The caller owns the ring and releases it with ahg_ring_free(). Any thread.
 */
struct ahg_ring *ahg_ring_new(size_t capacity, size_t low_mark, size_t high_mark);

/* Free the ring and its storage. NULL: no-op. */
void ahg_ring_free(struct ahg_ring *r);

/* Bytes stored (0 for NULL r). */
size_t ahg_ring_used(const struct ahg_ring *r);

/* Bytes that can still be written: capacity - used (0 for NULL r). */
size_t ahg_ring_space(const struct ahg_ring *r);

/* The capacity given at creation (0 for NULL r). */
size_t ahg_ring_capacity(const struct ahg_ring *r);

/*
 * Copy min(n, space) bytes from p into the ring (wrapping as needed) and return that count;
 * 0 if r or p is NULL. Never fails otherwise and never allocates. May pause the ring.
 */
size_t ahg_ring_write(struct ahg_ring *r, const void *p, size_t n);

/*
 * Copy up to n bytes, oldest first, into dst, remove them from the ring and return the
 * count; 0 if r or dst is NULL. May resume the ring.
 */
size_t ahg_ring_read(struct ahg_ring *r, void *dst, size_t n);

/*
 * Set *p to the oldest stored byte and return how many bytes are readable contiguously from
 * there (less than used when the data wraps; read the rest after ahg_ring_consume()).
 * Sets *p to NULL and returns 0 when the ring is empty or r is NULL. The span is borrowed
 * and is not removed; p must not be NULL.
 */
size_t ahg_ring_peek(const struct ahg_ring *r, const unsigned char **p);

/* Remove the n oldest bytes (all of them if n >= used). NULL r: no-op. May resume. */
void ahg_ring_consume(struct ahg_ring *r, size_t n);

/*
 * Set *p to the start of the free space and return how many bytes may be written there
 * contiguously (e.g. recv(fd, *p, len, 0) straight into the ring); then call
 * ahg_ring_commit() with the number actually written. Sets *p to NULL and returns 0 when
 * the ring is full or r is NULL. p must not be NULL.
 */
size_t ahg_ring_write_span(struct ahg_ring *r, unsigned char **p);

/*
 * Add n bytes just written into the span from ahg_ring_write_span() to the stored data.
 * n larger than the current contiguous span is clamped to it (a caller bug, but never
 * corrupts the ring). NULL r: no-op. May pause the ring.
 */
void ahg_ring_commit(struct ahg_ring *r, size_t n);

/*
 * ahg_ring_read() for lws_write(): dst_payload is the payload pointer of a buffer that has
 * LWS_PRE bytes of headroom before it (from ahg_lwsbuf_alloc() or ahg_buf_data() of an
 * ahg_buf_init_lws() buffer) and room for max bytes. Only dst_payload[0..ret) is written;
 * the headroom is left to lws. Returns the count moved, 0 if r or dst_payload is NULL.
 */
size_t ahg_ring_read_lws(struct ahg_ring *r, unsigned char *dst_payload, size_t max);

/*
 * Current flow state: true while paused (the source must not be read), false while running.
 * See the file comment for the exact hysteresis. false for NULL r.
 */
bool ahg_ring_should_pause(const struct ahg_ring *r);

/*
 * Report the flow state change since the previous poll (or since creation): PAUSE if the
 * ring is paused and the last report was "running", RESUME in the opposite case, NONE if the
 * state equals the last report (including a pause and resume that both happened between two
 * polls). Marks the current state as reported. NONE for NULL r.
 */
enum ahg_ring_flow ahg_ring_poll_flow(struct ahg_ring *r);

/*
 * Drop all stored data (used = 0), which sets the state to running. The last reported state
 * is kept, so a ring reset while paused reports RESUME on the next poll. NULL r: no-op.
 */
void ahg_ring_reset(struct ahg_ring *r);

#endif /* AHG_RING_H */
