/*
 * ahg/azid.h - Microsoft Entra ID access tokens from a managed identity, cached.
 *
 * Sources (hc-protocol.md §9), chosen by `kind` or detected in this order when AUTO:
 *   - workload: AKS workload identity; AZURE_FEDERATED_TOKEN_FILE + AZURE_CLIENT_ID +
 *               AZURE_TENANT_ID (+ AZURE_AUTHORITY_HOST): the federated token (re-read from the
 *               file on every exchange, kubelet rotates it) is exchanged at
 *               {authority}/{tenant}/oauth2/v2.0/token (client_credentials, client_assertion);
 *   - appservice: IDENTITY_ENDPOINT + IDENTITY_HEADER (X-IDENTITY-HEADER, api-version 2019-08-01);
 *   - imds:     http://169.254.169.254/metadata/identity/oauth2/token (Metadata: true), or the
 *               endpoint in the options (the emulator).
 * The emulator (docs/emulator.md) serves all three, so every path is tested locally.
 *
 * Tokens are cached per resource and refreshed in the background before they expire (at 5
 * minutes before expiry, or half the lifetime if shorter); concurrent ahg_azid_get() calls for
 * the same resource share one request. ahg_azid_invalidate() drops a token the service
 * rejected (401) so that the next get fetches a new one. Tokens are secrets: never logged.
 * HTTP goes through ahg/egress.h (libcurl on a worker thread), so nothing here blocks the loop.
 *
 * Threading: loop thread only.
 */
#ifndef AHG_AZID_H
#define AHG_AZID_H

#include <stdint.h>

struct ahg_loop;
struct ahg_egress;
struct ahg_azid;

enum ahg_azid_kind {
    AHG_AZID_AUTO = 0,
    AHG_AZID_APPSERVICE,
    AHG_AZID_IMDS,
    AHG_AZID_WORKLOAD,
};

struct ahg_azid_opts {
    enum ahg_azid_kind kind;
    const char *endpoint;        /* overrides IDENTITY_ENDPOINT / IMDS URL / authority host */
    const char *identity_header; /* overrides IDENTITY_HEADER (secret) */
    const char *client_id;       /* user-assigned identity / workload client id */
    const char *tenant_id;       /* workload */
    const char *token_file;      /* workload: federated token file */
    unsigned timeout_ms;         /* per request; 0 = 10 s */
};

/*
 * Reads the environment for fields left NULL. AUTO picks workload, then appservice, and falls
 * back to IMDS (always reachable in principle). NULL with *err = AHG_ECONFIG when the chosen
 * source lacks its settings or the endpoint is not an http(s) URL.
 */
struct ahg_azid *ahg_azid_new(struct ahg_loop *loop, struct ahg_egress *egress,
                              const struct ahg_azid_opts *opts, int *err);

/* Which source is used. */
enum ahg_azid_kind ahg_azid_kind(const struct ahg_azid *id);
const char *ahg_azid_kind_name(enum ahg_azid_kind k);

/*
 * The token for resource (e.g. "https://management.azure.com/", "https://relay.azure.net/",
 * "https://vault.azure.net"). token is borrowed for the callback; expires_on in Unix seconds.
 * err: AHG_OK, AHG_EAUTH (identity endpoint refused), AHG_EUNAVAIL/AHG_ETIMEDOUT (unreachable),
 * AHG_EUPSTREAM (bad answer). The callback never runs from inside the call (a fresh cached
 * token is handed over through ahg_loop_post).
 */
typedef void (*ahg_azid_cb)(int err, const char *token, int64_t expires_on, void *ud);
int ahg_azid_get(struct ahg_azid *id, const char *resource, ahg_azid_cb cb, void *ud);

/* Drops the cached token for resource (after the service answered 401 with it). */
void ahg_azid_invalidate(struct ahg_azid *id, const char *resource);

/* Pending callbacks run with AHG_ECLOSED. Call it before ahg_egress_free(); it may be called
 * from inside an ahg_azid_cb. */
void ahg_azid_free(struct ahg_azid *id);

#endif /* AHG_AZID_H */
