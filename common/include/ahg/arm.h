/*
 * ahg/arm.h - the Microsoft.Relay ARM client (hc-protocol.md section 8) the controller uses to
 * own Hybrid Connections: PUT/GET/DELETE/list hybrid connections (with userMetadata, the
 * ownership marker), listKeys/regenerateKeys on a namespace authorization rule.
 *
 * HTTP goes through ahg/egress.h (libcurl on a worker thread) with a bearer token for
 * https://management.azure.com/ from ahg/azid.h (a 401 drops the cached token and the call is
 * tried once more with a fresh one). 409, 429 and 5xx answers and transport failures are
 * retried with exponential backoff and full jitter, honouring Retry-After (seconds), up to
 * max_retries times; the final answer is reported. List calls follow nextLink, but only to the
 * same origin as base_url (the bearer token never leaves for another host).
 *
 * Keys and tokens are secrets: never logged. Callbacks run on the loop thread, never from
 * inside the call that started the operation.
 *
 * Threading: loop thread only.
 */
#ifndef AHG_ARM_H
#define AHG_ARM_H

#include <stdbool.h>
#include <stddef.h>

struct ahg_loop;
struct ahg_egress;
struct ahg_azid;
struct ahg_arm;

#define AHG_ARM_DEFAULT_BASE        "https://management.azure.com"
#define AHG_ARM_DEFAULT_API_VERSION "2021-11-01"
#define AHG_ARM_DEFAULT_RESOURCE    "https://management.azure.com/"
/* Longest hybrid connection name and userMetadata we handle (bytes, without the NUL). */
#define AHG_ARM_NAME_MAX     260u
#define AHG_ARM_METADATA_MAX 1024u
/* Longest key (the service's are 44 chars; the SAS limit is 256). */
#define AHG_ARM_KEY_MAX 256u

struct ahg_arm_opts {
    const char *base_url;       /* NULL = AHG_ARM_DEFAULT_BASE; the emulator: http://127.0.0.1:P */
    const char *subscription;   /* required */
    const char *resource_group; /* required */
    const char *namespace_name; /* required */
    const char *api_version;    /* NULL = AHG_ARM_DEFAULT_API_VERSION */
    const char *resource;       /* token resource; NULL = AHG_ARM_DEFAULT_RESOURCE */
    unsigned max_retries;       /* retries after the first try; 0 = 4 */
    unsigned backoff_ms;        /* first backoff; 0 = 250 ms (doubles, full jitter) */
    unsigned max_backoff_ms;    /* cap of one wait (also of Retry-After); 0 = 10 s */
};

/* One hybrid connection as ARM describes it. */
struct ahg_arm_hc {
    char name[AHG_ARM_NAME_MAX + 1];
    char user_metadata[AHG_ARM_METADATA_MAX + 1];
    int listener_count;
    long long created_at; /* unix seconds, 0 when unknown */
};

/*
 * The outcome of an operation, borrowed for the callback.
 * err: AHG_OK; AHG_ENOTFOUND (404; DELETE never reports it: absent is success); AHG_EEXIST
 * (409 after the retries); AHG_ERATE (429 after the retries); AHG_EAUTH (401/403, also when
 * the identity endpoint refused); AHG_EUNAVAIL (5xx after the retries, or unreachable);
 * AHG_ETIMEDOUT; AHG_EUPSTREAM (an answer we cannot read); AHG_ECLOSED (client freed).
 * status is the last HTTP status (0 without an answer); code/message the ARM error (never
 * NULL, "" when none); retry_after_s the last Retry-After (0 when none).
 */
struct ahg_arm_result {
    int err;
    int status;
    const char *code;
    const char *message;
    unsigned retry_after_s;
    unsigned attempts;
    /* hc_get / hc_put: one; hc_list: all pages */
    const struct ahg_arm_hc *hcs;
    size_t nhcs;
    /* list_keys / regenerate_keys */
    const char *key_name;
    const char *primary_key;
    const char *secondary_key;
};

typedef void (*ahg_arm_cb)(const struct ahg_arm_result *res, void *ud);

/* Copies opts. NULL with *err = AHG_EINVAL (missing/too long option) or AHG_ENOMEM. egress and
 * azid are borrowed and must outlive the client. */
struct ahg_arm *ahg_arm_new(struct ahg_loop *loop, struct ahg_egress *egress, struct ahg_azid *azid,
                            const struct ahg_arm_opts *opts, int *err);

/*
 * Operations. Each returns AHG_OK (cb runs exactly once later), or AHG_EINVAL (bad name:
 * empty, too long) / AHG_ENOMEM (cb never runs). A handle, when asked for, can cancel the
 * operation (its callback then never runs); it is valid until the callback has started.
 */
struct ahg_arm_op;
int ahg_arm_hc_put(struct ahg_arm *a, const char *hc, const char *user_metadata, ahg_arm_cb cb,
                   void *ud, struct ahg_arm_op **handle);
int ahg_arm_hc_get(struct ahg_arm *a, const char *hc, ahg_arm_cb cb, void *ud,
                   struct ahg_arm_op **handle);
int ahg_arm_hc_delete(struct ahg_arm *a, const char *hc, ahg_arm_cb cb, void *ud,
                      struct ahg_arm_op **handle);
/* Every HC of the namespace (all pages; at most max_items, 0 = 100000). */
int ahg_arm_hc_list(struct ahg_arm *a, size_t max_items, ahg_arm_cb cb, void *ud,
                    struct ahg_arm_op **handle);
/* listKeys of a namespace authorization rule. */
int ahg_arm_list_keys(struct ahg_arm *a, const char *rule, ahg_arm_cb cb, void *ud,
                      struct ahg_arm_op **handle);
/* regenerateKeys: secondary = false regenerates PrimaryKey. */
int ahg_arm_regenerate_keys(struct ahg_arm *a, const char *rule, bool secondary, ahg_arm_cb cb,
                            void *ud, struct ahg_arm_op **handle);

void ahg_arm_cancel(struct ahg_arm_op *op);

/* Operations not yet reported. */
size_t ahg_arm_pending(const struct ahg_arm *a);

/* Pending operations report AHG_ECLOSED, then the client is freed. NULL is ignored. Call before
 * freeing the egress client and azid. */
void ahg_arm_free(struct ahg_arm *a);

#endif /* AHG_ARM_H */
