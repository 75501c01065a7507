/*
 * guard.h - protection against API key guessing: failed authentications counted per client
 * address in a bounded table.
 *
 * Each address has a budget of max_failures failed attempts that refills at max_failures per
 * window (a token bucket). The failure that spends the last of it locks the address out for
 * lockout; while locked out, every request from it is refused (429) before its key is looked
 * at, so guessing cannot go on behind the lockout. Successful requests neither refill nor reset
 * the budget. IPv6 addresses count per /64 (one host usually holds a whole /64); v4-mapped IPv6
 * counts as IPv4; a text that is not an address counts as one shared "unknown" address.
 *
 * Memory is bounded: at most max_entries addresses are tracked; beyond that the least recently
 * failed one is forgotten (counted in ctl_guard_evictions). Only failures create entries.
 *
 * Threading: one thread (the controller's loop thread); no locks. Time comes from the caller
 * (monotonic ms), so the module is testable without sleeping.
 */
#ifndef CTL_GUARD_H
#define CTL_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ctl_guard_opts {
    unsigned max_failures; /* budget of failed attempts; must be >= 1 */
    uint64_t window_ms;    /* the budget refills completely in this time; >= 1 */
    uint64_t lockout_ms;   /* refusal after the budget is spent; >= 1 */
    size_t max_entries;    /* addresses tracked at most; >= 1 */
};

struct ctl_guard;

/* New empty table; NULL on bad options or out of memory. Free with ctl_guard_free(). */
struct ctl_guard *ctl_guard_new(const struct ctl_guard_opts *o);
void ctl_guard_free(struct ctl_guard *g);

/* 0 when addr may present a key now; else the whole seconds (>= 1) until its lockout ends,
 * for Retry-After. Creates nothing. */
unsigned ctl_guard_check(const struct ctl_guard *g, const char *addr, uint64_t now_ms);

/* Records a failed authentication from addr. True when this failure spent the budget and
 * started a lockout (the caller logs it: once per lockout). False when memory ran out (the
 * failure is then not counted) or budget remains. */
bool ctl_guard_fail(struct ctl_guard *g, const char *addr, uint64_t now_ms);

/* Addresses tracked now, and addresses forgotten because the table was full. */
size_t ctl_guard_count(const struct ctl_guard *g);
uint64_t ctl_guard_evictions(const struct ctl_guard *g);

#endif /* CTL_GUARD_H */
