/*
 * ctl_int.h - the controller's internals, shared by its source files:
 *   controller.c  options, life cycle, API keys, relay keys and tokens, metrics
 *   api.c         the management API (requests, sessions, subdomains)
 *   reconcile.c   leader lease, reconcile passes, the warm pool
 *
 * Threading: loop thread only.
 */
#ifndef CTL_INT_H
#define CTL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ahg/arm.h"
#include "ahg/cidr.h"
#include "ahg/list.h"
#include "ahg/net.h"
#include "ctl/controller.h"

struct ahg_egress;
struct ahg_azid;
struct ctl_guard;
struct ahg_kv;
struct ahg_metric;

#define CTL_SID_LEN     32
#define CTL_ID_MAX      63
#define CTL_HC_MAX      64
#define CTL_KEYID_LEN   16
#define CTL_BODY_MAX    ((size_t)16 * 1024)
#define CTL_REPLICA_MAX 128

struct ctl_apikey {
    unsigned char hash[32];
    char keyid[CTL_KEYID_LEN + 1];
};

/* Someone waiting for the relay keys (a request about to sign a token). */
struct ctl_keywait {
    struct ahg_list_node node;
    void (*cb)(void *ud, int err);
    void *ud;
};

struct ahg_ctl {
    struct ahg_loop *loop;
    struct ahg_store *store;
    struct ahg_ctl_opts o;
    void **owned; /* strings and lists copied from the options */
    size_t nowned, capowned;
    char replica[CTL_REPLICA_MAX];
    const char *instance;
    void (*drain_done)(void *ud);
    void *drain_ud;

    struct ahg_egress *eg;
    struct ahg_azid *azid;
    struct ahg_arm *arm;
    struct ahg_kv *kv;

    /* API keys (hashed) */
    struct ctl_apikey *keys;
    size_t nkeys;
    struct ahg_timer keys_timer;

    /* relay keys */
    char rk_name[AHG_ARM_KEY_MAX + 1];
    char rk_primary[AHG_ARM_KEY_MAX + 1];
    char rk_secondary[AHG_ARM_KEY_MAX + 1];
    int rk_last_err;
    uint64_t rk_fetched_ms;
    uint64_t rk_forced_ms; /* last refresh forced by a rejection (rate limit) */
    struct ahg_timer rk_timer;
    struct ahg_timer rk_wake;
    struct ahg_list rk_waiters;

    /* API key guessing: failed authentications per client address (guard.h) */
    struct ctl_guard *guard;

    /* cidr */
    struct ahg_cidr_list allow;
    struct ahg_cidr_list proxies;

    /* requests in flight */
    struct ahg_list reqs;

    /* lease and reconciler */
    struct ctl_life *life;
    uint64_t lease_sent_ms;
    uint64_t fence;
    char lease_val[CTL_REPLICA_MAX + 32];
    uint64_t lease_valid_until; /* monotonic ms */
    struct ahg_timer lease_timer;
    struct ahg_timer rec_timer;
    struct ahg_timer pool_timer;
    struct ctl_pass *pass; /* the running reconcile pass */
    unsigned pool_creating;
    uint64_t passes;
    uint64_t last_pass_ms;

    /* metrics */
    struct ahg_metrics *metrics;
    struct ahg_metric *m_req_ok, *m_req_4xx, *m_req_5xx;
    struct ahg_metric *m_created, *m_deleted, *m_renewed, *m_expired;
    struct ahg_metric *m_pool_hit, *m_pool_miss, *m_pool_created;
    struct ahg_metric *m_hc_created, *m_hc_deleted, *m_orphans, *m_arm_err;
    struct ahg_metric *m_passes, *m_pass_seconds, *m_leader, *m_lease_acq, *m_lease_lost;
    struct ahg_metric *m_keys_refresh, *m_keys_rotated, *m_auth_fail, *m_create_seconds;
    struct ahg_metric *m_lockouts, *m_throttled;

    /* flags */
    bool draining;
    bool freeing;
    bool keys_loaded;
    bool keys_loading;
    bool rk_loaded;
    bool rk_loading;
    bool rk_use_secondary;
    bool pool_checking;
    bool leader;
    bool lease_busy;
    bool own_metrics;
    bool releasing; /* the lease release is on its way to the store */
};

/* controller.c */
/* Looks a presented API key up (constant time over all keys); writes its keyid. */
bool ctl_key_lookup(const struct ahg_ctl *ctl, const char *key, char keyid[CTL_KEYID_LEN + 1]);
/* Calls cb(ud, err) when relay keys are loaded (at once via the loop when they are). */
int ctl_relay_keys_wait(struct ahg_ctl *ctl, void (*cb)(void *ud, int err), void *ud);
void ctl_relay_keys_unwait(struct ahg_ctl *ctl, void *ud);
/* Reports a rejected token: re-read the keys now (at most every 5 s). */
void ctl_relay_keys_rejected(struct ahg_ctl *ctl);
/* Listen SAS for hc, expiring at se. */
int ctl_sign(const struct ahg_ctl *ctl, const char *hc, long long se, char *out, size_t outsz);
/* userMetadata marking ownership ("pool" or a session id). */
void ctl_metadata(const struct ahg_ctl *ctl, const char *sid, char *out, size_t outsz);
/* Whether userMetadata says we own the HC; *sid gets the session (or "" for pool). */
bool ctl_metadata_ours(const struct ahg_ctl *ctl, const char *um);
void ctl_maybe_drained(struct ahg_ctl *ctl);
void ctl_rfc3339(long long t, char out[32]);
int64_t ctl_now_s(void);

/* api.c */
void ctl_api_abort_all(struct ahg_ctl *ctl);

/* reconcile.c */
void ctl_rec_start(struct ahg_ctl *ctl);
void ctl_rec_stop(struct ahg_ctl *ctl);
void ctl_rec_release(struct ahg_ctl *ctl);
void ctl_pool_kick(struct ahg_ctl *ctl);

#endif /* CTL_INT_H */
