/*
 * ahg/keyvault.h - Azure Key Vault secrets (hc-protocol.md section 9.4): GET the latest version
 * of a secret with a bearer token for https://vault.azure.net from ahg/azid.h.
 *
 * GET {vault_url}/secrets/{name}?api-version=7.4 -> {"value": "..."}. A 401 drops the cached
 * token and tries once more; 429 and 5xx and transport failures are retried with backoff (up
 * to 3 retries, honouring Retry-After). Secret values are never logged.
 *
 * Threading: loop thread only. Callbacks never run from inside the call that started them.
 */
#ifndef AHG_KEYVAULT_H
#define AHG_KEYVAULT_H

#include <stddef.h>

struct ahg_loop;
struct ahg_egress;
struct ahg_azid;
struct ahg_kv;

#define AHG_KV_DEFAULT_API_VERSION "7.4"
#define AHG_KV_DEFAULT_RESOURCE    "https://vault.azure.net"
/* Longest secret name (Key Vault: 127) and value we accept. */
#define AHG_KV_NAME_MAX  127u
#define AHG_KV_VALUE_MAX ((size_t)64 * 1024)

struct ahg_kv_opts {
    const char *vault_url;   /* https://<vault>.vault.azure.net (or the emulator's mgmt URL) */
    const char *api_version; /* NULL = AHG_KV_DEFAULT_API_VERSION */
    const char *resource;    /* token resource; NULL = AHG_KV_DEFAULT_RESOURCE */
    unsigned max_retries;    /* 0 = 3 */
    unsigned backoff_ms;     /* 0 = 250 */
};

/* Copies opts; egress and azid are borrowed. NULL with *err (AHG_EINVAL, AHG_ENOMEM). */
struct ahg_kv *ahg_kv_new(struct ahg_loop *loop, struct ahg_egress *egress, struct ahg_azid *azid,
                          const struct ahg_kv_opts *opts, int *err);

/*
 * err: AHG_OK (value/len valid for the callback: the secret, NUL-terminated), AHG_ENOTFOUND
 * (404), AHG_EAUTH (401/403), AHG_EUNAVAIL/AHG_ETIMEDOUT (after the retries), AHG_EUPSTREAM
 * (unreadable answer, or longer than AHG_KV_VALUE_MAX), AHG_ECLOSED (client freed).
 */
typedef void (*ahg_kv_cb)(int err, const char *value, size_t len, void *ud);

/* AHG_OK (cb runs once later), AHG_EINVAL (bad name: 1-127 of [A-Za-z0-9-]), AHG_ENOMEM. */
int ahg_kv_get_secret(struct ahg_kv *kv, const char *name, ahg_kv_cb cb, void *ud);

/* Pending gets report AHG_ECLOSED. Call before freeing egress and azid. NULL is ignored. */
void ahg_kv_free(struct ahg_kv *kv);

#endif /* AHG_KEYVAULT_H */
