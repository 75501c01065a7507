/*
 * keyvault.c - see ahg/keyvault.h.
 *
 * A get is GET_TOKEN -> SEND -> done, or -> WAIT (backoff) -> GET_TOKEN. azid callbacks cannot
 * be cancelled, so a get orphaned while waiting for a token is freed when that callback comes.
 */
#include "ahg/keyvault.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "ahg/azid.h"
#include "ahg/crypto.h"
#include "ahg/egress.h"
#include "ahg/err.h"
#include "ahg/list.h"
#include "ahg/log.h"
#include "ahg/net.h"

#define KV_URL_MAX  1024
#define KV_AUTH_MAX 8192

struct ahg_kv {
    struct ahg_loop *loop;
    struct ahg_egress *eg;
    struct ahg_azid *id;
    char base[512];
    char api_version[32];
    char resource[256];
    unsigned max_retries, backoff_ms;
    struct ahg_list gets;
};

enum kv_state { KVS_IDLE, KVS_TOKEN, KVS_SEND, KVS_WAIT };

struct kv_get {
    struct ahg_kv *kv; /* NULL when orphaned */
    struct ahg_list_node node;
    enum kv_state state;
    char url[KV_URL_MAX];
    ahg_kv_cb cb;
    void *ud;
    unsigned attempts;
    bool auth_retried;
    unsigned retry_after;
    struct ahg_timer timer;
    struct ahg_egress_call *call;
};

static void get_try(struct kv_get *g);

static void
get_finish(struct kv_get *g, int err, const char *value, size_t len)
{
    ahg_timer_stop(&g->timer);
    if (g->kv)
        ahg_list_remove(&g->kv->gets, &g->node);
    g->kv = NULL;
    ahg_kv_cb cb = g->cb;
    g->cb = NULL;
    if (cb)
        cb(err, value, len, g->ud);
    if (g->state != KVS_TOKEN)
        free(g);
}

static void
retry_or_finish(struct kv_get *g, int err)
{
    struct ahg_kv *kv = g->kv;
    if (g->attempts > kv->max_retries) {
        get_finish(g, err, NULL, 0);
        return;
    }
    uint64_t wait = (uint64_t)kv->backoff_ms << (g->attempts - 1 < 6 ? g->attempts - 1 : 6);
    uint32_t r = 0;
    (void)ahg_rand_bytes(&r, sizeof(r));
    wait = wait / 2 + r % (wait / 2 + 1);
    if (g->retry_after)
        wait = (uint64_t)(g->retry_after > 10 ? 10 : g->retry_after) * 1000u;
    g->state = KVS_WAIT;
    ahg_timer_start(&g->timer, wait);
}

static unsigned
retry_after(const char *headers)
{
    for (const char *p = headers; p && *p;) {
        const char *eol = strstr(p, "\r\n");
        if (strncasecmp(p, "Retry-After:", 12) == 0)
            return (unsigned)strtoul(p + 12, NULL, 10);
        p = eol ? eol + 2 : NULL;
    }
    return 0;
}

static void
on_resp(const struct ahg_egress_resp *resp, void *ud)
{
    struct kv_get *g = ud;
    g->call = NULL;
    g->state = KVS_IDLE;
    g->retry_after = 0;
    if (resp->err != AHG_OK) {
        retry_or_finish(g, resp->err == AHG_ETIMEDOUT ? AHG_ETIMEDOUT : AHG_EUNAVAIL);
        return;
    }
    if (resp->status == 200) {
        cJSON *j = cJSON_ParseWithLength(resp->body, resp->body_len);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "value");
        if (!cJSON_IsString(v) || strlen(v->valuestring) > AHG_KV_VALUE_MAX) {
            cJSON_Delete(j);
            get_finish(g, AHG_EUPSTREAM, NULL, 0);
            return;
        }
        get_finish(g, AHG_OK, v->valuestring, strlen(v->valuestring));
        size_t n = strlen(v->valuestring);
        memset(v->valuestring, 0, n);
        cJSON_Delete(j);
        return;
    }
    if (resp->status == 401 && !g->auth_retried) {
        g->auth_retried = true;
        ahg_azid_invalidate(g->kv->id, g->kv->resource);
        g->attempts--;
        get_try(g);
        return;
    }
    if (resp->status == 429 || resp->status >= 500) {
        g->retry_after = retry_after(resp->headers);
        retry_or_finish(g, AHG_EUNAVAIL);
        return;
    }
    int err = resp->status == 404                          ? AHG_ENOTFOUND
              : resp->status == 401 || resp->status == 403 ? AHG_EAUTH
                                                           : AHG_EUPSTREAM;
    get_finish(g, err, NULL, 0);
}

static void
on_token(int err, const char *token, int64_t expires_on, void *ud)
{
    struct kv_get *g = ud;
    (void)expires_on;
    g->state = KVS_IDLE;
    if (!g->kv) {
        free(g);
        return;
    }
    if (err != AHG_OK) {
        if (err == AHG_EAUTH)
            get_finish(g, AHG_EAUTH, NULL, 0);
        else
            retry_or_finish(g, AHG_EUNAVAIL);
        return;
    }
    char auth[KV_AUTH_MAX];
    int n = snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    if (n < 0 || (size_t)n >= sizeof(auth)) {
        get_finish(g, AHG_EUPSTREAM, NULL, 0);
        return;
    }
    const char *hdrs[] = {auth, "Accept: application/json", NULL};
    struct ahg_egress_req req = {.method = "GET", .url = g->url, .headers = hdrs};
    g->state = KVS_SEND;
    int rc = ahg_egress_request(g->kv->eg, &req, on_resp, g, &g->call);
    memset(auth, 0, sizeof(auth));
    if (rc != AHG_OK) {
        g->state = KVS_IDLE;
        retry_or_finish(g, AHG_EUNAVAIL);
    }
}

static void
get_try(struct kv_get *g)
{
    g->attempts++;
    g->state = KVS_TOKEN;
    if (ahg_azid_get(g->kv->id, g->kv->resource, on_token, g) != AHG_OK) {
        g->state = KVS_IDLE;
        retry_or_finish(g, AHG_EUNAVAIL);
    }
}

static void
on_timer(struct ahg_timer *t)
{
    get_try(t->ud);
}

static bool
name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > AHG_KV_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-'))
            return false;
    }
    return true;
}

int
ahg_kv_get_secret(struct ahg_kv *kv, const char *name, ahg_kv_cb cb, void *ud)
{
    if (!kv || !cb || !name_ok(name))
        return AHG_EINVAL;
    struct kv_get *g = calloc(1, sizeof(*g));
    if (!g)
        return AHG_ENOMEM;
    (void)snprintf(g->url, sizeof(g->url), "%s/secrets/%s?api-version=%s", kv->base, name,
                   kv->api_version);
    g->kv = kv;
    g->cb = cb;
    g->ud = ud;
    ahg_timer_init(&g->timer, kv->loop, on_timer, g);
    ahg_list_node_init(&g->node);
    ahg_list_push_back(&kv->gets, &g->node);
    g->state = KVS_WAIT;
    ahg_timer_start(&g->timer, 0);
    return AHG_OK;
}

struct ahg_kv *
ahg_kv_new(struct ahg_loop *loop, struct ahg_egress *egress, struct ahg_azid *azid,
           const struct ahg_kv_opts *o, int *err)
{
    int dummy;
    if (!err)
        err = &dummy;
    *err = AHG_EINVAL;
    if (!loop || !egress || !azid || !o || !o->vault_url)
        return NULL;
    size_t bl = strlen(o->vault_url);
    while (bl && o->vault_url[bl - 1] == '/')
        bl--;
    const char *apiv = o->api_version ? o->api_version : AHG_KV_DEFAULT_API_VERSION;
    const char *res = o->resource ? o->resource : AHG_KV_DEFAULT_RESOURCE;
    if (bl == 0 || bl >= 512 || strlen(apiv) >= 32 || strlen(res) >= 256 ||
        (strncmp(o->vault_url, "http://", 7) != 0 && strncmp(o->vault_url, "https://", 8) != 0))
        return NULL;
    struct ahg_kv *kv = calloc(1, sizeof(*kv));
    if (!kv) {
        *err = AHG_ENOMEM;
        return NULL;
    }
    memcpy(kv->base, o->vault_url, bl);
    kv->base[bl] = '\0';
    (void)snprintf(kv->api_version, sizeof(kv->api_version), "%s", apiv);
    (void)snprintf(kv->resource, sizeof(kv->resource), "%s", res);
    kv->loop = loop;
    kv->eg = egress;
    kv->id = azid;
    kv->max_retries = o->max_retries ? o->max_retries : 3;
    kv->backoff_ms = o->backoff_ms ? o->backoff_ms : 250;
    ahg_list_init(&kv->gets);
    *err = AHG_OK;
    return kv;
}

void
ahg_kv_free(struct ahg_kv *kv)
{
    if (!kv)
        return;
    struct ahg_list_node *n = kv->gets.head;
    ahg_list_init(&kv->gets);
    while (n) {
        struct kv_get *g = AHG_LIST_ENTRY(n, struct kv_get, node);
        n = n->next;
        ahg_list_node_init(&g->node);
        g->kv = NULL;
        if (g->call) {
            ahg_egress_cancel(g->call);
            g->call = NULL;
        }
        get_finish(g, AHG_ECLOSED, NULL, 0);
    }
    free(kv);
}
