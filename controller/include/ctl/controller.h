/*
 * ctl/controller.h - the AzHexGate controller: the management API (docs/openapi.yaml), API keys,
 * subdomains, Hybrid Connections through ARM (with a warm pool), Listen SAS tokens signed with
 * keys read through ARM listKeys, and the reconciler (leader-elected through a store lease).
 *
 * The controller is a component on an ahg_loop: azhexgate-controller's main.c runs it with its
 * own API listener; the gateway and the all-in-one server hand it management requests from
 * their own ahg_httpd with ahg_ctl_handle(). State lives in the store (docs/state.md).
 *
 * Threading: loop thread only.
 */
#ifndef CTL_CONTROLLER_H
#define CTL_CONTROLLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ahg/config.h"

struct ahg_loop;
struct ahg_store;
struct ahg_httpd_req;
struct ahg_metrics;
struct ahg_ctl;

/* The controller's options (names under "controller."), for composing option tables. */
extern const struct ahg_opt_def ahg_ctl_opts_table[];
extern const size_t ahg_ctl_nopts;

/*
 * Options. ahg_ctl_new() copies every string and list, so the caller may free its options (and
 * the config they point into) as soon as it returns. Zero numbers mean the documented defaults.
 */
struct ahg_ctl_opts {
    const char *replica;  /* replica name for the lease (NULL = hostname:pid:random) */
    const char *instance; /* ownership marker in userMetadata; NULL = "default" */

    /* public URL template: <scheme>://<id>.<domain>[:<port>] */
    const char *public_scheme; /* "https" */
    const char *public_domain; /* required */
    int public_port;           /* 0 = none in the URL */

    /* relay */
    const char *relay_endpoint; /* wss://<ns host>/ or the emulator's ws://127.0.0.1:P/ */
    const char *relay_host;     /* namespace host for token audiences and route records */
    const char *relay_rule;     /* namespace rule for listKeys; NULL = RootManageSharedAccessKey */
    uint64_t relay_keys_refresh_ms; /* re-read keys; 0 = 5 min */
    uint64_t token_ttl_ms;          /* Listen SAS lifetime; 0 = 1 h */

    /* ARM */
    const char *arm_endpoint; /* NULL = https://management.azure.com */
    const char *subscription, *resource_group, *namespace_name;
    const char *arm_api_version;
    unsigned arm_retries; /* 0 = 4 */
    unsigned arm_backoff_ms;

    /* managed identity (ahg/azid.h) */
    const char *identity_kind; /* auto|appservice|imds|workload; NULL = auto */
    const char *identity_endpoint;
    const char *identity_header;
    const char *identity_client_id;
    const char *ca_file; /* CA bundle for ARM / identity / Key Vault over https */

    /* API keys: inline (comma/newline separated), a file re-read on refresh, a Key Vault secret */
    const char *api_keys;
    const char *api_keys_path;
    const char *keyvault_url;
    const char *keyvault_secret;
    uint64_t api_keys_refresh_ms; /* 0 = 5 min */
    unsigned quota;               /* tunnels per key; 0 = 10 */

    /* API key guessing: each client address may fail auth_max_failures times per
     * auth_failure_window; the failure that spends that budget locks the address out for
     * auth_lockout (429 with Retry-After, key not even looked at). At most
     * auth_tracked_addresses addresses are remembered (least recently failed forgotten first). */
    unsigned auth_max_failures;      /* 0 = 10 */
    uint64_t auth_failure_window_ms; /* 0 = 1 min */
    uint64_t auth_lockout_ms;        /* 0 = 1 min */
    unsigned auth_tracked_addresses; /* 0 = 10000 */
    bool auth_guard_off;             /* no limit at all */

    /* the caller's address */
    const char *const *allow_cidr;      /* NULL-terminated or NULL = everyone */
    const char *const *trusted_proxies; /* NULL = none (the option table's default: loopback) */

    /* subdomains */
    const char *const *reserved; /* extra reserved names, NULL-terminated */
    bool allow_custom_subdomain;

    /* sessions */
    uint64_t default_ttl_ms; /* 0 = 1 h */
    uint64_t max_ttl_ms;     /* 0 = 24 h */

    /* pool and reconciler */
    unsigned pool_size;             /* warm HCs; 0 = none */
    uint64_t reconcile_interval_ms; /* 0 = 30 s */
    uint64_t lease_ttl_ms;          /* 0 = 15 s */
    uint64_t orphan_grace_ms;       /* HCs younger than this are never orphans; 0 = 60 s */
    uint64_t arm_wait_ms;           /* POST waits this long for ARM before 503; 0 = 30 s */
    bool reconciler;                /* take part in leader election (default true) */
    bool reconciler_set;            /* reconciler was given (else true) */

    struct ahg_metrics *metrics; /* register here (NULL = the controller's own registry) */
};

/* Fills o from cfg (which must include ahg_ctl_opts_table). AHG_OK or AHG_ECONFIG with err.
 * The NULL-terminated lists are allocated: free with ahg_ctl_opts_clear(). */
int ahg_ctl_opts_from_config(struct ahg_ctl_opts *o, const struct ahg_config *cfg, char *err,
                             size_t errlen);
void ahg_ctl_opts_clear(struct ahg_ctl_opts *o);
/* Checks what can be checked without the network (required options, CIDR lists). AHG_OK or
 * AHG_ECONFIG with a message in err. ahg_ctl_new() runs it too. */
int ahg_ctl_opts_check(const struct ahg_ctl_opts *o, char *err, size_t errlen);

/*
 * Starts the controller: reads API keys and relay keys, joins leader election, refills the pool.
 * store is borrowed (must outlive the controller). NULL with *err (AHG_ECONFIG, AHG_ENOMEM).
 */
struct ahg_ctl *ahg_ctl_new(struct ahg_loop *loop, struct ahg_store *store,
                            const struct ahg_ctl_opts *opts, int *err);

/*
 * Serves one management request (paths under /api/). Call from the server's on_request; the
 * controller sets the request's callbacks and answers it. peer_addr is the real caller's
 * address (NULL = the connection's peer); X-Forwarded-For is only believed when peer_addr is
 * inside the trusted proxies.
 */
void ahg_ctl_handle(struct ahg_ctl *ctl, struct ahg_httpd_req *r, const char *peer_addr);

/* Ready: store up, API keys loaded, relay keys loaded. */
bool ahg_ctl_ready(const struct ahg_ctl *ctl);
/* Whether this replica holds the reconciler lease now, and its fencing token. */
bool ahg_ctl_is_leader(const struct ahg_ctl *ctl);
uint64_t ahg_ctl_fence(const struct ahg_ctl *ctl);
/* Runs a reconcile pass now (leader only; AHG_EAGAIN when not leader or one is running). */
int ahg_ctl_reconcile_now(struct ahg_ctl *ctl);
/* Completed reconcile passes and the duration of the last one. */
uint64_t ahg_ctl_reconcile_passes(const struct ahg_ctl *ctl);
uint64_t ahg_ctl_last_reconcile_ms(const struct ahg_ctl *ctl);
/* Re-read the relay keys now (e.g. after a rotation). */
void ahg_ctl_refresh_relay_keys(struct ahg_ctl *ctl);
/* The metrics registry in use. */
struct ahg_metrics *ahg_ctl_metrics(struct ahg_ctl *ctl);

/*
 * Drain: new requests get 503, the lease is released (so another replica takes over at once),
 * timers stop. done(ud) runs once in-flight requests have been answered and the store has
 * acknowledged the lease release; from inside this call when nothing is pending.
 */
void ahg_ctl_drain(struct ahg_ctl *ctl, void (*done)(void *ud), void *ud);

/* Frees the controller (pending requests are aborted). Call before freeing the store. */
void ahg_ctl_free(struct ahg_ctl *ctl);

#endif /* CTL_CONTROLLER_H */
