/*
 * latency.c - the optional latency model (hc-protocol.md section 13) and deferred calls.
 *
 * Profile "live" approximates the live service as measured by others: one-way lane latency
 * ~30 ms on each side, SAS validation ~10 ms, Entra JWT validation ~150 ms, and a rendezvous
 * (sender's connect until its 101) of ~0.4-0.75 s: the four lane hops (sender -> relay,
 * relay -> listener accept, listener's rendezvous dial, 101 back = 120 ms) plus a match-making
 * hold of 280 ms + uniform 0..350 ms. 25 per mille of rendezvous are held 3-7 s more.
 * Explicitly configured values override the profile (and make that knob deterministic).
 *
 * Threading: loop thread only.
 */
#include "emu_int.h"

#include <stdlib.h>
#include <string.h>

#include "ahg/crypto.h"
#include "ahg/err.h"
#include "ahg/log.h"

/* live profile (ms) */
#define LIVE_LANE_MS         30u
#define LIVE_SAS_MS          10u
#define LIVE_JWT_MS          150u
#define LIVE_MATCH_MS        280u
#define LIVE_MATCH_JITTER_MS 350u
#define LIVE_SLOW_PERMILLE   25u
#define LIVE_SLOW_MS         3000u
#define LIVE_SLOW_JITTER_MS  4000u

/* One pending deferred call. */
struct lat_call {
    struct ahg_timer timer; /* first: the timer callback gets the call back */
    struct lat_call *prev, *next;
    struct emu *e;
    void (*fn)(void *arg);
    void *arg;
};

struct lat_state {
    struct lat_call *calls;
};

static struct lat_state *
state_of(struct emu *e)
{
    if (!e->latency)
        e->latency = calloc(1, sizeof(struct lat_state));
    return e->latency;
}

static void
unlink_call(struct lat_state *st, struct lat_call *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        st->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void
call_fire(struct ahg_timer *t)
{
    struct lat_call *c = t->ud;
    struct lat_state *st = c->e->latency;
    unlink_call(st, c);
    void (*fn)(void *) = c->fn;
    void *arg = c->arg;
    free(c);
    fn(arg); /* may defer again or cancel other calls: c is already gone */
}

void
emu_latency_defer(struct emu *e, unsigned ms, void (*fn)(void *arg), void *arg)
{
    if (!fn)
        return;
    struct lat_state *st = ms && e && e->loop ? state_of(e) : NULL;
    struct lat_call *c = st ? calloc(1, sizeof(*c)) : NULL;
    if (!c) {
        /* no delay wanted (or no memory for one): run now rather than never */
        fn(arg);
        return;
    }
    c->e = e;
    c->fn = fn;
    c->arg = arg;
    c->next = st->calls;
    if (st->calls)
        st->calls->prev = c;
    st->calls = c;
    ahg_timer_init(&c->timer, e->loop, call_fire, c);
    ahg_timer_start(&c->timer, ms);
}

void
emu_latency_cancel(struct emu *e, void *arg)
{
    struct lat_state *st = e ? e->latency : NULL;
    if (!st)
        return;
    struct lat_call *c = st->calls;
    while (c) {
        struct lat_call *n = c->next;
        if (c->arg == arg) {
            ahg_timer_stop(&c->timer);
            unlink_call(st, c);
            free(c);
        }
        c = n;
    }
}

void
emu_latency_free(struct emu *e)
{
    struct lat_state *st = e ? e->latency : NULL;
    if (!st)
        return;
    /* The loop is gone: its timers are too. Only the memory is left to free. */
    while (st->calls) {
        struct lat_call *c = st->calls;
        st->calls = c->next;
        free(c);
    }
    free(st);
    e->latency = NULL;
}

/* Uniform random in 0..max (inclusive) from the OpenSSL RNG; 0 when max is 0. */
static unsigned
rand_upto(unsigned max)
{
    if (!max)
        return 0;
    uint32_t v = 0;
    if (ahg_rand_bytes(&v, sizeof(v)) != AHG_OK)
        return max / 2;
    return (unsigned)(v % ((uint64_t)max + 1u)); /* bias below 1e-6 for our ranges */
}

unsigned
emu_latency_rendezvous_ms(struct emu *e)
{
    const struct emu_latency *l = &e->lat;
    uint64_t ms = (uint64_t)l->match_ms + rand_upto(l->match_jitter_ms);
    if (l->slow_permille && rand_upto(999) < l->slow_permille)
        ms += (uint64_t)l->slow_ms + rand_upto(l->slow_jitter_ms);
    return ms > 3600000u ? 3600000u : (unsigned)ms;
}

static bool
is_explicit(const struct ahg_config *cfg, const char *name)
{
    return cfg && ahg_config_source(cfg, name) != AHG_SRC_DEFAULT;
}

static unsigned
opt_ms(const struct ahg_config *cfg, const char *name)
{
    long long v = ahg_config_int(cfg, name);
    return v < 0 ? 0u : v > 3600000 ? 3600000u : (unsigned)v;
}

int
emu_latency_init(struct emu *e)
{
    if (!e)
        return AHG_EINVAL;
    const struct ahg_config *cfg = e->cfg;
    struct emu_latency *l = &e->lat;
    memset(l, 0, sizeof(*l));
    const char *profile = cfg ? ahg_config_str(cfg, "emulator.latency.profile") : NULL;
    if (profile && strcmp(profile, "live") == 0) {
        l->sender_lane_ms = l->listener_lane_ms = LIVE_LANE_MS;
        l->sas_validate_ms = LIVE_SAS_MS;
        l->jwt_validate_ms = LIVE_JWT_MS;
        l->match_ms = LIVE_MATCH_MS;
        l->match_jitter_ms = LIVE_MATCH_JITTER_MS;
        l->slow_permille = LIVE_SLOW_PERMILLE;
        l->slow_ms = LIVE_SLOW_MS;
        l->slow_jitter_ms = LIVE_SLOW_JITTER_MS;
    } else if (profile && strcmp(profile, "off") != 0) {
        AHG_LOG_ERROR("emulator.latency.profile: unknown profile '%s'", profile);
        return AHG_ECONFIG;
    }
    if (is_explicit(cfg, "emulator.latency.lane"))
        l->sender_lane_ms = l->listener_lane_ms = opt_ms(cfg, "emulator.latency.lane");
    if (is_explicit(cfg, "emulator.latency.sas"))
        l->sas_validate_ms = opt_ms(cfg, "emulator.latency.sas");
    if (is_explicit(cfg, "emulator.latency.jwt"))
        l->jwt_validate_ms = opt_ms(cfg, "emulator.latency.jwt");
    if (is_explicit(cfg, "emulator.latency.match")) {
        l->match_ms = opt_ms(cfg, "emulator.latency.match");
        l->match_jitter_ms = 0;
    }
    if (is_explicit(cfg, "emulator.latency.slow_fraction")) {
        long long v = ahg_config_int(cfg, "emulator.latency.slow_fraction");
        l->slow_permille = v < 0 ? 0u : v > 1000 ? 1000u : (unsigned)v;
    }
    if (is_explicit(cfg, "emulator.latency.slow")) {
        l->slow_ms = opt_ms(cfg, "emulator.latency.slow");
        l->slow_jitter_ms = 0;
    }
    if (is_explicit(cfg, "emulator.latency.arm"))
        l->arm_ms = opt_ms(cfg, "emulator.latency.arm");
    if (l->slow_permille && !l->slow_ms && !l->slow_jitter_ms)
        AHG_LOG_WARN("emulator.latency.slow_fraction is set but emulator.latency.slow is 0");
    (void)state_of(e);
    return e->latency ? AHG_OK : AHG_ENOMEM;
}
