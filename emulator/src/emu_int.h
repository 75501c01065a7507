/*
 * emu_int.h - internals shared by the emulator's modules.
 *
 *   emulator.c  options, listeners, routing of HTTP requests to the modules, admin endpoints
 *   state.c     the namespace model: hybrid connections, authorization rules and keys
 *   auth.c      SAS and Entra-ID (emulator-issued JWT) validation with the real status texts
 *   relay.c     Hybrid Connections data plane: listen, connect/accept/rendezvous, HTTP mode
 *   arm.c       Microsoft.Relay ARM subset
 *   identity.c  managed-identity token endpoint (App Service and IMDS forms), JWT issuing
 *   keyvault.c  Key Vault secrets subset
 *   latency.c   the optional latency model and fault injection
 *
 * Everything runs on the loop thread. Names: emu_<module>_<verb>.
 */
#ifndef EMU_INT_H
#define EMU_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "ahg/config.h"
#include "ahg/httpd.h"
#include "ahg/net.h"
#include "emu/emulator.h"

#define EMU_NAME_MAX    64  /* namespace, rule names */
#define EMU_HC_NAME_MAX 260 /* hybrid connection names (may contain '/') */
#define EMU_KEY_LEN     44  /* base64 of 32 bytes */
#define EMU_MAX_RULES   12  /* per namespace and per entity, as on Azure */

enum emu_right {
    EMU_RIGHT_LISTEN = 1u,
    EMU_RIGHT_SEND = 2u,
    EMU_RIGHT_MANAGE = 4u,
};

struct emu_rule {
    struct emu_rule *next;
    char name[EMU_NAME_MAX];
    unsigned rights; /* enum emu_right bits */
    char primary[EMU_KEY_LEN + 1];
    char secondary[EMU_KEY_LEN + 1];
};

struct emu_hc {
    struct emu_hc *next;
    char name[EMU_HC_NAME_MAX];
    bool requires_client_auth;
    char *user_metadata; /* may be NULL */
    time_t created;
    time_t updated;
    uint32_t created_frac; /* 100-ns ticks within the second (ARM's 7 fractional digits) */
    uint32_t updated_frac;
    struct emu_rule *rules;
    void *relay; /* relay.c's per-HC state (listeners, pending rendezvous), NULL when none */
};

struct emu_ns {
    char name[EMU_NAME_MAX];
    char host[256]; /* FQDN used in sr audiences and sb:// endpoints */
    char subscription[64];
    char resource_group[96];
    char location[64];
    time_t created;
    uint32_t created_frac;
    struct emu_rule *rules;
    struct emu_hc *hcs;
    size_t nhcs;
};

/* Latency model knobs (milliseconds; all 0 = off). */
struct emu_latency {
    unsigned sender_lane_ms;   /* one-way delay added on the sender side */
    unsigned listener_lane_ms; /* one-way delay added on the listener side */
    unsigned sas_validate_ms;  /* SAS validation cost */
    unsigned jwt_validate_ms;  /* Entra JWT validation cost */
    unsigned match_ms;         /* match-making before the sender's 101 / the request */
    unsigned slow_permille;    /* fraction (per mille) of rendezvous held for slow_ms */
    unsigned slow_ms;
    unsigned arm_ms; /* every ARM call */
    /* random extra (uniform 0..jitter) on top of match_ms / slow_ms; 0 = deterministic */
    unsigned match_jitter_ms;
    unsigned slow_jitter_ms;
};

struct emu_arm_fault {
    char method[8];     /* "PUT", "DELETE", "*" ... */
    int status;         /* status to answer */
    unsigned remaining; /* how many more calls fail */
};

struct emu {
    struct ahg_loop *loop;
    const struct ahg_config *cfg;
    struct emu_ns ns;

    struct ahg_httpd *relay_srv;
    struct ahg_httpd *mgmt_srv;
    struct ahg_httpd *identity_srv;
    struct ahg_httpd *admin_srv;
    char relay_public[256]; /* "ws://127.0.0.1:9911" base for rendezvous addresses */

    /* limits and timings (ms unless noted) */
    uint64_t response_timeout_ms;
    uint64_t rendezvous_timeout_ms;
    uint64_t token_grace_s;
    unsigned max_listeners;

    /* identity */
    unsigned char jwt_secret[32];
    char identity_header[128];
    uint64_t token_lifetime_s;
    unsigned identity_relay_rights; /* rights of emulator-issued relay tokens */
    char identity_tenant[40];       /* tid claim (uuid) */
    char identity_client_id[40];    /* appid claim, client_id of the token responses (uuid) */
    char identity_object_id[40];    /* oid/sub claims (uuid) */

    struct emu_latency lat;
    struct emu_arm_fault fault;

    void *relay;    /* relay.c global state */
    void *keyvault; /* keyvault.c state */
    void *latency;  /* latency.c state (pending deferred calls) */

    /* counters for /metrics */
    uint64_t m_listeners, m_listen_total, m_connects, m_rendezvous, m_http_requests, m_http_504,
        m_auth_failures, m_arm_calls, m_tokens_issued, m_bytes_spliced;
};

/* ---- state.c ---- */
int emu_state_init(struct emu *e);
/* Writes the namespace to emulator.state_file (no-op without one), atomically (temporary file
 * then rename); called after every change ARM acknowledges. Failures are logged. */
void emu_state_save(struct emu *e);
void emu_state_free(struct emu *e);
struct emu_hc *emu_hc_find(struct emu *e, const char *name);
/* Finds the HC whose name is the longest '/'-segment prefix of path (no leading '/');
 * *rest gets what follows the HC name ("" or "/more"). */
struct emu_hc *emu_hc_match(struct emu *e, const char *path, const char **rest);
/* Creates (or, when it exists, updates) an HC. *created tells which. NULL + AHG_E* in *err. */
struct emu_hc *emu_hc_put(struct emu *e, const char *name, bool requires_client_auth,
                          const char *user_metadata, bool *created, int *err);
/* Deletes an HC: its listeners are closed with 1001 and senders fail. AHG_ENOTFOUND. */
int emu_hc_delete(struct emu *e, const char *name);
/* Rules: hc NULL = namespace level. */
struct emu_rule *emu_rule_find(struct emu *e, struct emu_hc *hc, const char *name);
struct emu_rule *emu_rule_put(struct emu *e, struct emu_hc *hc, const char *name, unsigned rights,
                              int *err);
int emu_rule_delete(struct emu *e, struct emu_hc *hc, const char *name);
/* Regenerates one key ("PrimaryKey"/"SecondaryKey"); value NULL = random. */
int emu_rule_regenerate(struct emu_rule *r, bool primary, const char *value);
void emu_key_generate(char out[EMU_KEY_LEN + 1]);
/* Number of listeners currently connected to hc (relay.c). */
unsigned emu_relay_listener_count(const struct emu_hc *hc);

/* ---- auth.c ---- */
struct emu_auth_result {
    int status;     /* 0 = allowed, else 401/403/404 */
    char desc[512]; /* real-service description text incl. TrackingId suffix */
};
/*
 * Checks a token (SAS or emulator-issued JWT; raw, already URL-decoded) for an operation on
 * hc (entity_path = the HC name plus any suffix) needing the rights in need. request_host is
 * the Host the client used (accepted as an audience host besides ns.host). token may be NULL.
 * For SEND on an HC with requires_client_auth false, a missing token is allowed.
 * Returns true when allowed, else fills out.
 */
bool emu_auth_check(struct emu *e, const char *token, const char *request_host, struct emu_hc *hc,
                    const char *entity_path, unsigned need, struct emu_auth_result *out);
/* Seconds until the token expires (SAS se or JWT exp), or -1 if unknown/invalid. */
long long emu_auth_expiry(const char *token);
/* Formats the real-service suffix "TrackingId:<uuid>_G<n>, SystemTracker:sb://<ns>/<path>,
 * Timestamp:<utc>" after msg into out. */
void emu_auth_describe(const struct emu *e, const char *msg, const char *path, char *out,
                       size_t outsz);

/* ---- identity.c ---- */
/* Reads emulator.identity.* (jwt_secret: HMAC key = SHA-256 of the option text, else random;
 * header: else 32 random hex chars; relay_role) and derives the tenant/client/object ids. */
int emu_identity_init(struct emu *e);
/* Issues an HS256 JWT for audience/resource, lifetime e->token_lifetime_s. Returns a malloc'd
 * token (caller frees) and its expiry in *exp. */
char *emu_identity_issue(struct emu *e, const char *resource, long long *exp);
/* Verifies an emulator-issued JWT: signature, exp/nbf, audience. Fills rights from the roles
 * claim (Owner/Listener/Sender). Returns AHG_OK, AHG_EAUTH (malformed, bad signature, not yet
 * valid), AHG_EEXPIRED, or AHG_EFORBIDDEN (valid token for another audience). audience NULL
 * skips the audience check; a trailing '/' on either side is ignored. rights/exp may be NULL. */
int emu_identity_verify(struct emu *e, const char *jwt, const char *audience, unsigned *rights,
                        long long *exp);
bool emu_identity_handle(struct emu *e, struct ahg_httpd_req *r); /* true when handled */

/* ---- arm.c ---- */
bool emu_arm_handle(struct emu *e, struct ahg_httpd_req *r);

/* ---- keyvault.c ---- */
int emu_kv_init(struct emu *e);
void emu_kv_free(struct emu *e);
bool emu_kv_handle(struct emu *e, struct ahg_httpd_req *r);
int emu_kv_set(struct emu *e, const char *name, const char *value);

/* ---- relay.c ---- */
int emu_relay_init(struct emu *e);
void emu_relay_free(struct emu *e);
/* Relay data-plane requests (WebSocket upgrades to /$hc/..., HTTP mode /{hc}/...). */
void emu_relay_handle(struct emu *e, struct ahg_httpd_req *r);
/* An HC is being deleted: close its listeners with 1001, fail its senders. */
void emu_relay_hc_deleted(struct emu *e, struct emu_hc *hc);

/* ---- latency.c ---- */
int emu_latency_init(struct emu *e);
/* Runs fn(arg) after ms on the loop (at once, synchronously, when ms is 0). */
void emu_latency_defer(struct emu *e, unsigned ms, void (*fn)(void *arg), void *arg);
/* The hold before a rendezvous completes: match_ms, plus slow_ms for the slow fraction. */
unsigned emu_latency_rendezvous_ms(struct emu *e);
/* Cancels every pending emu_latency_defer() call made with arg (their fn never runs). */
void emu_latency_cancel(struct emu *e, void *arg);
/* Frees the calls still pending without running them. Call after ahg_loop_free() (emu_free). */
void emu_latency_free(struct emu *e);

#endif /* EMU_INT_H */
