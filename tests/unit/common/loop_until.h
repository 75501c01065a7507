/*
 * loop_until.h - drives an ahg_loop from a test until a flag turns true or a time passes.
 * Header-only; include after "ahg/net.h".
 *
 *   assert_true(run_until(loop, &ctx.done, 2000));
 *   run_for(loop, 300); // let time itself pass (e.g. an expiry)
 */
#ifndef AHG_TEST_LOOP_UNTIL_H
#define AHG_TEST_LOOP_UNTIL_H

#include <stdbool.h>
#include <stdint.h>

#include "ahg/net.h"

static inline void
lu_tick_cb(struct ahg_timer *t)
{
    ahg_timer_start(t, 10);
}

/* Runs the loop until *flag turns true or ms pass; returns *flag. A 10 ms tick keeps
 * ahg_loop_run_once from blocking past the deadline. */
static inline bool
run_until(struct ahg_loop *loop, const bool *flag, uint64_t ms)
{
    struct ahg_timer tick;
    ahg_timer_init(&tick, loop, lu_tick_cb, NULL);
    ahg_timer_start(&tick, 10);
    uint64_t end = ahg_now_ms() + ms;
    while (!*flag && ahg_now_ms() < end)
        ahg_loop_run_once(loop);
    ahg_timer_stop(&tick);
    return *flag;
}

/* Runs the loop for ms (waiting for time itself to pass, e.g. an expiry). */
static inline void
run_for(struct ahg_loop *loop, uint64_t ms)
{
    bool never = false;
    (void)run_until(loop, &never, ms);
}

#endif /* AHG_TEST_LOOP_UNTIL_H */
