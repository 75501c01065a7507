/*
 * azid.c - managed-identity access tokens (App Service, IMDS, AKS workload identity), cached
 * per resource and refreshed in the background (ahg/azid.h).
 */
#include "ahg/azid.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "ahg/egress.h"
#include "ahg/err.h"
#include "ahg/log.h"
#include "ahg/net.h"
#include "ahg/url.h"

#define IMDS_URL       "http://169.254.169.254/metadata/identity/oauth2/token"
#define AUTHORITY_HOST "https://login.microsoftonline.com/"
/* Default per-request timeout. */
#define AZID_TIMEOUT_MS 10000u
/* A token is handed out until this many seconds before its expiry. */
#define FRESH_MARGIN_S 10
/* Refresh this long before expiry (or at half the lifetime when that is shorter). */
#define REFRESH_BEFORE_S 300
/* Retry of a failed background refresh. */
#define RETRY_S 30
/* Federated token file cap. */
#define FED_TOKEN_MAX  ((size_t)16 * 1024)
#define RESOURCE_MAX   512u
#define ASSERTION_TYPE "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

struct ahg_azid;

struct waiter {
    struct waiter *next;
    struct entry *ent;
    ahg_azid_cb cb;
    void *ud;
    int err; /* in the ready list: an error to hand over instead of the token */
};

struct entry {
    struct entry *next;
    struct ahg_azid *id;
    char *resource;
    char *token; /* NULL when none (never fetched, invalidated) */
    int64_t expires_on;
    int64_t obtained;             /* Unix seconds when the token arrived */
    struct ahg_egress_call *call; /* request in flight */
    struct waiter *waiters;       /* waiting for that request */
    struct ahg_timer refresh;
    struct ahg_timer deadline; /* the request in flight gives up (timeout_ms) */
};

/* The posted flush's argument; outlives the client when a flush is still posted at free. */
struct gate {
    struct ahg_azid *id;
    bool posted;
};

struct ahg_azid {
    struct ahg_loop *loop;
    struct ahg_egress *egress;
    enum ahg_azid_kind kind;
    char *endpoint;
    char *identity_header;
    char *client_id;
    char *tenant_id;
    char *token_file;
    unsigned timeout_ms;
    struct entry *entries;
    struct waiter *ready, *ready_tail; /* cached answers waiting for the flush */
    struct gate *gate;
    int depth;  /* callbacks running */
    bool freed; /* ahg_azid_free() ran inside a callback: released when depth drops to 0 */
};

static int64_t
now_s(void)
{
    return (int64_t)time(NULL);
}

static void
wipe_free(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

static char *
dup_or_env(const char *v, const char *env)
{
    const char *s = v && *v ? v : (env ? getenv(env) : NULL);
    return s && *s ? strdup(s) : NULL;
}

const char *
ahg_azid_kind_name(enum ahg_azid_kind k)
{
    switch (k) {
    case AHG_AZID_AUTO:
        return "auto";
    case AHG_AZID_APPSERVICE:
        return "appservice";
    case AHG_AZID_IMDS:
        return "imds";
    case AHG_AZID_WORKLOAD:
        return "workload";
    }
    return "unknown";
}

enum ahg_azid_kind
ahg_azid_kind(const struct ahg_azid *id)
{
    return id ? id->kind : AHG_AZID_AUTO;
}

static void azid_destroy(struct ahg_azid *id);

struct ahg_azid *
ahg_azid_new(struct ahg_loop *loop, struct ahg_egress *egress, const struct ahg_azid_opts *opts,
             int *err)
{
    int e = AHG_EINVAL;
    struct ahg_azid *id = NULL;
    if (!loop || !egress)
        goto fail;
    struct ahg_azid_opts o = opts ? *opts : (struct ahg_azid_opts){0};
    e = AHG_ENOMEM;
    id = calloc(1, sizeof(*id));
    if (!id)
        goto fail;
    id->gate = calloc(1, sizeof(*id->gate));
    if (!id->gate)
        goto fail;
    id->gate->id = id;
    id->loop = loop;
    id->egress = egress;
    id->timeout_ms = o.timeout_ms ? o.timeout_ms : AZID_TIMEOUT_MS;
    enum ahg_azid_kind k = o.kind;
    if (k == AHG_AZID_AUTO) {
        const char *tf = o.token_file ? o.token_file : getenv("AZURE_FEDERATED_TOKEN_FILE");
        const char *ie = getenv("IDENTITY_ENDPOINT"), *ih = getenv("IDENTITY_HEADER");
        if (tf && *tf)
            k = AHG_AZID_WORKLOAD;
        else if ((ie && *ie && ih && *ih) || (o.identity_header && *o.identity_header))
            k = AHG_AZID_APPSERVICE;
        else
            k = AHG_AZID_IMDS;
    }
    id->kind = k;
    e = AHG_ECONFIG;
    switch (k) {
    case AHG_AZID_WORKLOAD:
        id->token_file = dup_or_env(o.token_file, "AZURE_FEDERATED_TOKEN_FILE");
        id->client_id = dup_or_env(o.client_id, "AZURE_CLIENT_ID");
        id->tenant_id = dup_or_env(o.tenant_id, "AZURE_TENANT_ID");
        id->endpoint = dup_or_env(o.endpoint, "AZURE_AUTHORITY_HOST");
        if (!id->endpoint)
            id->endpoint = strdup(AUTHORITY_HOST);
        if (!id->token_file || !id->client_id || !id->tenant_id) {
            AHG_LOG_ERROR("azid: workload identity needs AZURE_FEDERATED_TOKEN_FILE, "
                          "AZURE_CLIENT_ID and AZURE_TENANT_ID");
            goto fail;
        }
        break;
    case AHG_AZID_APPSERVICE:
        id->endpoint = dup_or_env(o.endpoint, "IDENTITY_ENDPOINT");
        id->identity_header = dup_or_env(o.identity_header, "IDENTITY_HEADER");
        id->client_id = dup_or_env(o.client_id, NULL);
        if (!id->endpoint || !id->identity_header) {
            AHG_LOG_ERROR("azid: App Service managed identity needs IDENTITY_ENDPOINT and "
                          "IDENTITY_HEADER");
            goto fail;
        }
        break;
    case AHG_AZID_IMDS:
        id->endpoint = dup_or_env(o.endpoint, NULL);
        if (!id->endpoint)
            id->endpoint = strdup(IMDS_URL);
        id->client_id = dup_or_env(o.client_id, NULL);
        break;
    default:
        AHG_LOG_ERROR("azid: unknown identity kind %d", (int)k);
        goto fail;
    }
    if (!id->endpoint) {
        e = AHG_ENOMEM;
        goto fail;
    }
    if (strncmp(id->endpoint, "http://", 7) != 0 && strncmp(id->endpoint, "https://", 8) != 0) {
        AHG_LOG_ERROR("azid: identity endpoint must be an http:// or https:// URL");
        goto fail;
    }
    AHG_LOG_INFO("azid: managed identity source %s", ahg_azid_kind_name(k));
    if (err)
        *err = AHG_OK;
    return id;
fail:
    if (id)
        azid_destroy(id);
    if (err)
        *err = e;
    return NULL;
}

/* ---- deliveries ---- */

static void start_fetch(struct entry *en);

/* Usable: more than FRESH_MARGIN_S (or a quarter of a short lifetime) before expiry. */
static bool
fresh(const struct entry *en)
{
    int64_t margin = (en->expires_on - en->obtained) / 4;
    if (margin > FRESH_MARGIN_S)
        margin = FRESH_MARGIN_S;
    return en->token && now_s() < en->expires_on - margin;
}

static void release(struct ahg_azid *id);

static void
flush_cb(void *arg)
{
    struct gate *g = arg;
    g->posted = false;
    struct ahg_azid *id = g->id;
    if (!id) {
        free(g);
        return;
    }
    /* only what was queued before this turn; a callback may free the client */
    struct waiter *last = id->ready_tail;
    id->depth++;
    while (id->ready && !id->freed) {
        struct waiter *w = id->ready;
        id->ready = w->next;
        if (!id->ready)
            id->ready_tail = NULL;
        w->next = NULL;
        struct entry *en = w->ent;
        if (w->err != AHG_OK) {
            w->cb(w->err, NULL, 0, w->ud);
            free(w);
        } else if (fresh(en)) {
            w->cb(AHG_OK, en->token, en->expires_on, w->ud);
            free(w);
        } else {
            /* invalidated or expired meanwhile: wait for a new token */
            w->next = en->waiters;
            en->waiters = w;
            if (!en->call)
                start_fetch(en);
        }
        if (w == last)
            break;
    }
    id->depth--;
    if (id->freed) {
        release(id);
        return;
    }
    if (id->ready && !g->posted && ahg_loop_post(id->loop, flush_cb, g) == AHG_OK)
        g->posted = true;
}

/* Hands every waiter of en its result (stops when a callback frees the client). */
static void
answer_waiters(struct entry *en, int err)
{
    struct ahg_azid *id = en->id;
    id->depth++;
    while (en->waiters && !id->freed) {
        struct waiter *w = en->waiters;
        en->waiters = w->next;
        if (err == AHG_OK)
            w->cb(AHG_OK, en->token, en->expires_on, w->ud);
        else
            w->cb(err, NULL, 0, w->ud);
        free(w);
    }
    id->depth--;
}

/* ---- requests ---- */

static int
map_status(int status)
{
    if (status == 400 || status == 401 || status == 403)
        return AHG_EAUTH;
    if (status == 404 || status == 429 || status >= 500)
        return AHG_EUNAVAIL;
    return AHG_EUPSTREAM;
}

static int
map_transport(int err)
{
    switch (err) {
    case AHG_ETIMEDOUT:
        return AHG_ETIMEDOUT;
    case AHG_EUNAVAIL:
    case AHG_ENOTFOUND:
    case AHG_ETLS:
        return AHG_EUNAVAIL;
    default:
        return AHG_EUPSTREAM;
    }
}

/* A JSON number or a numeric string; false when neither. */
static bool
json_int(const cJSON *v, int64_t *out)
{
    if (cJSON_IsNumber(v)) {
        *out = (int64_t)v->valuedouble;
        return true;
    }
    if (cJSON_IsString(v) && v->valuestring[0]) {
        char *end = NULL;
        long long x = strtoll(v->valuestring, &end, 10);
        if (end && *end == '\0') {
            *out = (int64_t)x;
            return true;
        }
    }
    return false;
}

static void
schedule_refresh(struct entry *en, int64_t in_s)
{
    if (in_s < 1)
        in_s = 1;
    ahg_timer_start(&en->refresh, (uint64_t)in_s * 1000u);
}

static void finish(struct entry *en, int err, char *token, int64_t exp);

static void
on_resp(const struct ahg_egress_resp *resp, void *ud)
{
    struct entry *en = ud;
    en->call = NULL;
    ahg_timer_stop(&en->deadline);
    int err = AHG_OK;
    char *token = NULL;
    int64_t exp = 0;
    if (resp->err != AHG_OK) {
        err = map_transport(resp->err);
        AHG_LOG_WARN("azid: token request for %s failed: %s", en->resource, resp->errmsg);
    } else if (resp->status != 200) {
        err = map_status(resp->status);
        char code[64] = "";
        cJSON *j = cJSON_ParseWithLength(resp->body, resp->body_len);
        const cJSON *c = j ? cJSON_GetObjectItemCaseSensitive(j, "error") : NULL;
        if (c && cJSON_IsString(c))
            (void)snprintf(code, sizeof(code), "%s", c->valuestring);
        cJSON_Delete(j);
        AHG_LOG_WARN("azid: identity endpoint answered %d %s for %s", resp->status, code,
                     en->resource);
    } else {
        cJSON *j = cJSON_ParseWithLength(resp->body, resp->body_len);
        const cJSON *at = j ? cJSON_GetObjectItemCaseSensitive(j, "access_token") : NULL;
        int64_t v = 0;
        if (j && json_int(cJSON_GetObjectItemCaseSensitive(j, "expires_on"), &v))
            exp = v;
        else if (j && json_int(cJSON_GetObjectItemCaseSensitive(j, "expires_in"), &v))
            exp = now_s() + v;
        if (at && cJSON_IsString(at) && at->valuestring[0] && exp > now_s())
            token = strdup(at->valuestring);
        if (at && cJSON_IsString(at))
            OPENSSL_cleanse(at->valuestring, strlen(at->valuestring));
        cJSON_Delete(j);
        if (!token) {
            err = AHG_EUPSTREAM;
            AHG_LOG_WARN("azid: identity endpoint sent no usable token for %s", en->resource);
        }
    }
    finish(en, err, token, exp);
}

/* Stores a new token (owned) or handles a failure, then answers the waiters. */
static void
finish(struct entry *en, int err, char *token, int64_t exp)
{
    if (err == AHG_OK) {
        wipe_free(en->token);
        en->token = token;
        en->expires_on = exp;
        en->obtained = now_s();
        int64_t life = exp - now_s();
        schedule_refresh(en,
                         life > (int64_t)2 * REFRESH_BEFORE_S ? life - REFRESH_BEFORE_S : life / 2);
    } else if (fresh(en)) {
        /* a background refresh failed: keep the token we have and try again later */
        int64_t left = en->expires_on - FRESH_MARGIN_S - now_s();
        schedule_refresh(en, left > RETRY_S ? RETRY_S : left / 2);
    }
    struct ahg_azid *id = en->id;
    answer_waiters(en, err);
    if (id->freed && id->depth == 0)
        release(id);
}

static int
build_url(struct ahg_azid *id, const struct entry *en, char *url, size_t usz)
{
    char res[RESOURCE_MAX * 3 + 1], cid[256 * 3 + 1] = "";
    if (ahg_url_encode(en->resource, strlen(en->resource), res, sizeof(res)) != AHG_OK)
        return AHG_EINVAL;
    if (id->client_id &&
        ahg_url_encode(id->client_id, strlen(id->client_id), cid, sizeof(cid)) != AHG_OK)
        return AHG_EINVAL;
    const char *sep = strchr(id->endpoint, '?') ? "&" : "?";
    int n = 0;
    if (id->kind == AHG_AZID_APPSERVICE)
        n = snprintf(url, usz, "%s%sresource=%s&api-version=2019-08-01%s%s", id->endpoint, sep, res,
                     cid[0] ? "&client_id=" : "", cid);
    else if (id->kind == AHG_AZID_IMDS)
        n = snprintf(url, usz, "%s%sapi-version=2018-02-01&resource=%s%s%s", id->endpoint, sep, res,
                     cid[0] ? "&client_id=" : "", cid);
    else {
        size_t el = strlen(id->endpoint);
        bool slash = el && id->endpoint[el - 1] == '/';
        n = snprintf(url, usz, "%s%s%s/oauth2/v2.0/token", id->endpoint, slash ? "" : "/",
                     id->tenant_id);
    }
    return n > 0 && (size_t)n < usz ? AHG_OK : AHG_ELIMIT;
}

/* Reads the federated token (re-read on every exchange: kubelet rotates it). */
static char *
read_token_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(FED_TOKEN_MAX + 1);
    size_t n = buf ? fread(buf, 1, FED_TOKEN_MAX + 1, f) : 0;
    (void)fclose(f);
    if (!buf || n == 0 || n > FED_TOKEN_MAX) {
        free(buf);
        return NULL;
    }
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    buf[n] = '\0';
    return buf;
}

/* The form body of the workload exchange; NULL with *err. */
static char *
workload_body(struct ahg_azid *id, const struct entry *en, int *err)
{
    char *fed = read_token_file(id->token_file);
    if (!fed) {
        AHG_LOG_ERROR("azid: cannot read the federated token file (AZURE_FEDERATED_TOKEN_FILE)");
        *err = AHG_EAUTH;
        return NULL;
    }
    char scope[RESOURCE_MAX + 16];
    size_t rl = strlen(en->resource);
    while (rl && en->resource[rl - 1] == '/')
        rl--;
    (void)snprintf(scope, sizeof(scope), "%.*s/.default", (int)rl, en->resource);
    size_t cap = 3 * (strlen(fed) + strlen(scope) + strlen(id->client_id)) + 256;
    char *body = malloc(cap);
    char *encf = malloc(3 * strlen(fed) + 1);
    char encs[(RESOURCE_MAX + 16) * 3 + 1], encc[256 * 3 + 1];
    *err = AHG_ENOMEM;
    bool ok = body && encf;
    if (ok &&
        (ahg_url_encode(fed, strlen(fed), encf, 3 * strlen(fed) + 1) != AHG_OK ||
         ahg_url_encode(scope, strlen(scope), encs, sizeof(encs)) != AHG_OK ||
         ahg_url_encode(id->client_id, strlen(id->client_id), encc, sizeof(encc)) != AHG_OK)) {
        *err = AHG_EINVAL;
        ok = false;
    }
    if (ok)
        (void)snprintf(body, cap,
                       "grant_type=client_credentials&client_id=%s&client_assertion_type=%s"
                       "&client_assertion=%s&scope=%s",
                       encc, "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer",
                       encf, encs);
    wipe_free(fed);
    wipe_free(encf);
    if (!ok) {
        free(body);
        return NULL;
    }
    *err = AHG_OK;
    return body;
}

static void fail_waiters_later(struct entry *en, int err);

static void
start_fetch(struct entry *en)
{
    struct ahg_azid *id = en->id;
    char url[4096];
    int err = build_url(id, en, url, sizeof(url));
    char *body = NULL;
    char hdr[512];
    const char *headers[3] = {NULL, NULL, NULL};
    if (err == AHG_OK && id->kind == AHG_AZID_WORKLOAD) {
        body = workload_body(id, en, &err);
        headers[0] = "Content-Type: application/x-www-form-urlencoded";
    } else if (err == AHG_OK && id->kind == AHG_AZID_APPSERVICE) {
        (void)snprintf(hdr, sizeof(hdr), "X-IDENTITY-HEADER: %s", id->identity_header);
        headers[0] = hdr;
    } else if (err == AHG_OK) {
        headers[0] = "Metadata: true";
    }
    if (err == AHG_OK) {
        struct ahg_egress_req req = {
            .method = body ? "POST" : "GET",
            .url = url,
            .headers = headers,
            .body = body,
            .body_len = body ? strlen(body) : 0,
        };
        err = ahg_egress_request(id->egress, &req, on_resp, en, &en->call);
        if (err != AHG_OK)
            en->call = NULL;
        else
            ahg_timer_start(&en->deadline, id->timeout_ms);
    }
    OPENSSL_cleanse(hdr, sizeof(hdr));
    wipe_free(body);
    if (err != AHG_OK) {
        AHG_LOG_WARN("azid: cannot start a token request for %s: %s", en->resource,
                     ahg_strerror(err));
        fail_waiters_later(en, err == AHG_ELIMIT ? AHG_EUNAVAIL : err);
    }
}

/* The waiters of en get err from a fresh loop turn (never from inside ahg_azid_get). */
static void
fail_waiters_later(struct entry *en, int err)
{
    struct ahg_azid *id = en->id;
    if (!en->waiters)
        return;
    if (!id->gate->posted) {
        if (ahg_loop_post(id->loop, flush_cb, id->gate) != AHG_OK) {
            answer_waiters(en, err); /* out of memory: answer now rather than never */
            return;
        }
        id->gate->posted = true;
    }
    while (en->waiters) {
        struct waiter *w = en->waiters;
        en->waiters = w->next;
        w->next = NULL;
        w->err = err;
        if (id->ready_tail)
            id->ready_tail->next = w;
        else
            id->ready = w;
        id->ready_tail = w;
    }
}

static void
deadline_cb(struct ahg_timer *t)
{
    struct entry *en = t->ud;
    if (!en->call)
        return;
    ahg_egress_cancel(en->call);
    en->call = NULL;
    AHG_LOG_WARN("azid: token request for %s timed out", en->resource);
    finish(en, AHG_ETIMEDOUT, NULL, 0);
}

static void
refresh_cb(struct ahg_timer *t)
{
    struct entry *en = t->ud;
    if (!en->call)
        start_fetch(en); /* in the background: nobody waits */
}

/* ---- API ---- */

static struct entry *
entry_get(struct ahg_azid *id, const char *resource)
{
    for (struct entry *en = id->entries; en; en = en->next) {
        if (strcmp(en->resource, resource) == 0)
            return en;
    }
    struct entry *en = calloc(1, sizeof(*en));
    if (!en)
        return NULL;
    en->resource = strdup(resource);
    if (!en->resource) {
        free(en);
        return NULL;
    }
    en->id = id;
    ahg_timer_init(&en->refresh, id->loop, refresh_cb, en);
    ahg_timer_init(&en->deadline, id->loop, deadline_cb, en);
    en->next = id->entries;
    id->entries = en;
    return en;
}

int
ahg_azid_get(struct ahg_azid *id, const char *resource, ahg_azid_cb cb, void *ud)
{
    if (!id || !resource || !resource[0] || strlen(resource) >= RESOURCE_MAX || !cb)
        return AHG_EINVAL;
    if (id->freed)
        return AHG_ECLOSED;
    struct entry *en = entry_get(id, resource);
    struct waiter *w = en ? calloc(1, sizeof(*w)) : NULL;
    if (!w)
        return AHG_ENOMEM;
    w->ent = en;
    w->cb = cb;
    w->ud = ud;
    if (fresh(en)) {
        if (!id->gate->posted) {
            if (ahg_loop_post(id->loop, flush_cb, id->gate) != AHG_OK) {
                free(w);
                return AHG_ENOMEM;
            }
            id->gate->posted = true;
        }
        if (id->ready_tail)
            id->ready_tail->next = w;
        else
            id->ready = w;
        id->ready_tail = w;
        return AHG_OK;
    }
    w->next = en->waiters;
    en->waiters = w;
    if (!en->call)
        start_fetch(en);
    return AHG_OK;
}

void
ahg_azid_invalidate(struct ahg_azid *id, const char *resource)
{
    if (!id || !resource)
        return;
    for (struct entry *en = id->entries; en; en = en->next) {
        if (strcmp(en->resource, resource) == 0) {
            wipe_free(en->token);
            en->token = NULL;
            en->expires_on = 0;
            ahg_timer_stop(&en->refresh);
        }
    }
}

static void
azid_destroy(struct ahg_azid *id)
{
    wipe_free(id->endpoint);
    wipe_free(id->identity_header);
    free(id->client_id);
    free(id->tenant_id);
    free(id->token_file);
    if (id->gate) {
        if (id->gate->posted)
            id->gate->id = NULL;
        else
            free(id->gate);
    }
    free(id);
}

/* Frees the entries and the client (no callbacks run). */
static void
release(struct ahg_azid *id)
{
    while (id->entries) {
        struct entry *en = id->entries;
        id->entries = en->next;
        wipe_free(en->token);
        free(en->resource);
        free(en);
    }
    azid_destroy(id);
}

void
ahg_azid_free(struct ahg_azid *id)
{
    if (!id || id->freed)
        return;
    id->freed = true;
    id->depth++;
    for (struct entry *en = id->entries; en; en = en->next) {
        ahg_timer_stop(&en->refresh);
        ahg_timer_stop(&en->deadline);
        if (en->call) {
            ahg_egress_cancel(en->call);
            en->call = NULL;
        }
    }
    while (id->ready) {
        struct waiter *w = id->ready;
        id->ready = w->next;
        w->cb(AHG_ECLOSED, NULL, 0, w->ud);
        free(w);
    }
    id->ready_tail = NULL;
    for (struct entry *en = id->entries; en; en = en->next) {
        while (en->waiters) {
            struct waiter *w = en->waiters;
            en->waiters = w->next;
            w->cb(AHG_ECLOSED, NULL, 0, w->ud);
            free(w);
        }
    }
    id->depth--;
    if (id->depth == 0)
        release(id);
}
