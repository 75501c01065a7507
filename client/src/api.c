/*
 * api.c - the management API client (cli/api.h) over ahg/egress.h.
 */
#include "cli/api.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ahg/egress.h"
#include "ahg/err.h"
#include "ahg/list.h"
#include "ahg/url.h"
#include "platform.h"

#define API_KEY_HEADER "X-AzHexGate-ApiKey"
/* Longest API key accepted (header line bound). */
#define API_KEY_MAX 1024
#define API_URL_MAX 2048

enum call_kind { CALL_CREATE, CALL_RENEW, CALL_DELETE };

struct call {
    struct ahg_list_node node;
    struct cli_api *api;
    struct ahg_egress_call *h;
    enum call_kind kind;
    cli_api_cb cb;
    void *ud;
};

struct cli_api {
    struct ahg_egress *eg;
    char base[API_URL_MAX];
    char key_hdr[API_KEY_MAX + sizeof(API_KEY_HEADER) + 4];
    struct ahg_list calls;
};

static int
days_from_civil(long long y, unsigned m, unsigned d, long long *out)
{
    /* H. Hinnant's algorithm: days since 1970-01-01 of a proleptic Gregorian date */
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    *out = era * 146097 + (long long)doe - 719468;
    return 0;
}

static int
num(const char **p, int digits)
{
    int v = 0;
    for (int i = 0; i < digits; i++) {
        if (!isdigit((unsigned char)**p))
            return -1;
        v = v * 10 + (**p - '0');
        (*p)++;
    }
    return v;
}

long long
cli_api_parse_time(const char *s)
{
    if (!s)
        return -1;
    const char *p = s;
    int y = num(&p, 4);
    if (y < 0 || *p++ != '-')
        return -1;
    int mo = num(&p, 2);
    if (mo < 1 || mo > 12 || *p++ != '-')
        return -1;
    int d = num(&p, 2);
    if (d < 1 || d > 31 || (*p != 'T' && *p != 't' && *p != ' '))
        return -1;
    p++;
    int h = num(&p, 2);
    if (h < 0 || h > 23 || *p++ != ':')
        return -1;
    int mi = num(&p, 2);
    if (mi < 0 || mi > 59 || *p++ != ':')
        return -1;
    int se = num(&p, 2);
    if (se < 0 || se > 60)
        return -1;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return -1;
        while (isdigit((unsigned char)*p))
            p++;
    }
    long long off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1;
        int oh = num(&p, 2);
        if (oh < 0 || oh > 23 || *p++ != ':')
            return -1;
        int om = num(&p, 2);
        if (om < 0 || om > 59)
            return -1;
        off = sign * (oh * 3600LL + om * 60LL);
    } else {
        return -1;
    }
    if (*p)
        return -1;
    long long days = 0;
    (void)days_from_civil(y, (unsigned)mo, (unsigned)d, &days);
    return days * 86400 + h * 3600LL + mi * 60LL + se - off;
}

struct cli_api *
cli_api_new(struct ahg_loop *loop, const struct cli_api_opts *o, int *err)
{
    int e = AHG_EINVAL;
    struct cli_api *api = NULL;
    struct ahg_url *u = NULL;
    if (!loop || !o || !o->base_url || !o->api_key || !o->api_key[0] ||
        strlen(o->api_key) > API_KEY_MAX || strpbrk(o->api_key, "\r\n") ||
        strlen(o->base_url) >= API_URL_MAX)
        goto fail;
    e = AHG_ENOMEM;
    u = malloc(sizeof(*u));
    if (!u)
        goto fail;
    e = AHG_EINVAL;
    if (ahg_url_parse(o->base_url, u) != AHG_OK ||
        (strcmp(u->scheme, "http") != 0 && strcmp(u->scheme, "https") != 0))
        goto fail;
    e = AHG_ENOMEM;
    api = calloc(1, sizeof(*api));
    if (!api)
        goto fail;
    (void)snprintf(api->base, sizeof(api->base), "%s", o->base_url);
    size_t bl = strlen(api->base);
    while (bl && api->base[bl - 1] == '/')
        api->base[--bl] = 0;
    (void)snprintf(api->key_hdr, sizeof(api->key_hdr), API_KEY_HEADER ": %s", o->api_key);
    struct ahg_egress_opts eo = {.ca_file = o->ca_file,
                                 .timeout_ms = o->timeout_ms ? o->timeout_ms : 15000,
                                 .max_body = (size_t)256 * 1024};
    e = AHG_EIO;
    api->eg = ahg_egress_new(loop, &eo);
    if (!api->eg)
        goto fail;
    free(u);
    return api;
fail:
    free(u);
    if (api)
        free(api);
    if (err)
        *err = e;
    return NULL;
}

static char *
jdup(const cJSON *obj, const char *name, char *out, size_t outsz)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (cJSON_IsString(v) && v->valuestring) {
        if (out) {
            (void)snprintf(out, outsz, "%s", v->valuestring);
            return out;
        }
        size_t n = strlen(v->valuestring) + 1;
        char *d = malloc(n);
        if (d)
            memcpy(d, v->valuestring, n);
        return d;
    }
    if (out && outsz)
        out[0] = 0;
    return NULL;
}

static long long
retry_after(const char *headers)
{
    const char *p = headers;
    while (p && *p) {
        if (!cli_platform_strncasecmp(p, "Retry-After:", 12))
            return strtoll(p + 12, NULL, 10);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return 0;
}

static void
call_done(const struct ahg_egress_resp *resp, void *ud)
{
    struct call *c = ud;
    struct cli_api *api = c->api;
    ahg_list_remove(&api->calls, &c->node);
    struct cli_api_tunnel tun;
    memset(&tun, 0, sizeof(tun));
    char code[64] = "", message[512] = "";
    struct cli_api_result r = {.err = resp->err,
                               .status = resp->status,
                               .code = code,
                               .message = message,
                               .errmsg = resp->errmsg ? resp->errmsg : ""};
    cJSON *j = NULL;
    if (resp->err == AHG_OK) {
        int want = c->kind == CALL_CREATE ? 201 : c->kind == CALL_RENEW ? 200 : 204;
        bool ok = resp->status == want || (c->kind != CALL_DELETE && resp->status == 200) ||
                  (c->kind == CALL_DELETE && resp->status == 200);
        if (resp->body_len)
            j = cJSON_ParseWithLength(resp->body, resp->body_len);
        if (!ok) {
            r.err = AHG_EUPSTREAM;
            r.retry_after = retry_after(resp->headers);
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
            (void)jdup(e, "code", code, sizeof(code));
            (void)jdup(e, "message", message, sizeof(message));
            if (!message[0] && !j && resp->body_len) {
                /* a plain-text error body: its first line */
                (void)snprintf(message, sizeof(message), "%.*s", (int)strcspn(resp->body, "\r\n"),
                               resp->body);
            }
        } else if (c->kind != CALL_DELETE) {
            (void)jdup(j, "session_id", tun.session_id, sizeof(tun.session_id));
            (void)jdup(j, "subdomain", tun.subdomain, sizeof(tun.subdomain));
            (void)jdup(j, "public_url", tun.public_url, sizeof(tun.public_url));
            (void)jdup(j, "relay_endpoint", tun.relay_endpoint, sizeof(tun.relay_endpoint));
            (void)jdup(j, "hybrid_connection_name", tun.hybrid_connection_name,
                       sizeof(tun.hybrid_connection_name));
            tun.listener_token = jdup(j, "listener_token", NULL, 0);
            char ts[64];
            if (jdup(j, "token_expires_at", ts, sizeof(ts)))
                tun.token_expires_at = cli_api_parse_time(ts);
            if (jdup(j, "expires_at", ts, sizeof(ts)))
                tun.expires_at = cli_api_parse_time(ts);
            if (!tun.session_id[0] || !tun.relay_endpoint[0] || !tun.hybrid_connection_name[0] ||
                !tun.listener_token) {
                r.err = AHG_EPROTO;
                (void)snprintf(message, sizeof(message),
                               "the API answered without session_id, relay_endpoint, "
                               "hybrid_connection_name or listener_token");
            } else {
                r.tunnel = &tun;
            }
        }
    }
    cJSON_Delete(j);
    cli_api_cb cb = c->cb;
    void *cud = c->ud;
    free(c);
    cb(cud, &r);
    if (tun.listener_token) {
        memset(tun.listener_token, 0, strlen(tun.listener_token));
        free(tun.listener_token);
    }
}

static int
start_call(struct cli_api *api, enum call_kind kind, const char *method, const char *path,
           const char *body, cli_api_cb cb, void *ud)
{
    if (!api || !cb)
        return AHG_EINVAL;
    char url[API_URL_MAX + 512];
    (void)snprintf(url, sizeof(url), "%s%s", api->base, path);
    struct call *c = calloc(1, sizeof(*c));
    if (!c)
        return AHG_ENOMEM;
    c->api = api;
    c->kind = kind;
    c->cb = cb;
    c->ud = ud;
    const char *hdrs[] = {api->key_hdr, "Accept: application/json",
                          body ? "Content-Type: application/json" : NULL, NULL};
    struct ahg_egress_req req = {.method = method,
                                 .url = url,
                                 .headers = hdrs,
                                 .body = body,
                                 .body_len = body ? strlen(body) : 0};
    int rc = ahg_egress_request(api->eg, &req, call_done, c, &c->h);
    if (rc != AHG_OK) {
        free(c);
        return rc;
    }
    ahg_list_push_back(&api->calls, &c->node);
    return AHG_OK;
}

int
cli_api_create_tunnel(struct cli_api *api, const struct cli_api_create *req, cli_api_cb cb,
                      void *ud)
{
    if (!api || !req)
        return AHG_EINVAL;
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return AHG_ENOMEM;
    bool ok = true;
    if (req->local_port > 0)
        ok = ok && cJSON_AddNumberToObject(j, "local_port", req->local_port);
    if (req->subdomain && req->subdomain[0])
        ok = ok && cJSON_AddStringToObject(j, "subdomain", req->subdomain);
    if ((req->basic_auth && req->basic_auth[0]) || (req->allow_cidr && req->allow_cidr[0])) {
        cJSON *pol = cJSON_AddObjectToObject(j, "policy");
        ok = ok && pol;
        if (ok && req->basic_auth && req->basic_auth[0])
            ok = cJSON_AddStringToObject(pol, "basic_auth", req->basic_auth) != NULL;
        if (ok && req->allow_cidr && req->allow_cidr[0]) {
            cJSON *arr = cJSON_AddArrayToObject(pol, "allow_cidr");
            ok = arr != NULL;
            for (size_t i = 0; ok && req->allow_cidr[i]; i++) {
                cJSON *s = cJSON_CreateString(req->allow_cidr[i]);
                ok = s && cJSON_AddItemToArray(arr, s);
            }
        }
    }
    char *body = ok ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!body)
        return AHG_ENOMEM;
    int rc = start_call(api, CALL_CREATE, "POST", "/api/tunnels", body, cb, ud);
    /* the body may carry a basic-auth password */
    memset(body, 0, strlen(body));
    cJSON_free(body);
    return rc;
}

static int
sid_path(const char *sid, const char *suffix, char *out, size_t outsz)
{
    if (!sid || !sid[0] || strlen(sid) > 128)
        return AHG_EINVAL;
    char enc[400];
    if (ahg_url_encode(sid, strlen(sid), enc, sizeof(enc)) != AHG_OK)
        return AHG_EINVAL;
    (void)snprintf(out, outsz, "/api/tunnels/%s%s", enc, suffix);
    return AHG_OK;
}

int
cli_api_renew(struct cli_api *api, const char *session_id, bool rejected, cli_api_cb cb, void *ud)
{
    char path[512];
    if (sid_path(session_id, "/token", path, sizeof(path)) != AHG_OK)
        return AHG_EINVAL;
    return start_call(api, CALL_RENEW, "POST", path, rejected ? "{\"rejected\":true}" : "{}", cb,
                      ud);
}

int
cli_api_delete(struct cli_api *api, const char *session_id, cli_api_cb cb, void *ud)
{
    char path[512];
    if (sid_path(session_id, "", path, sizeof(path)) != AHG_OK)
        return AHG_EINVAL;
    return start_call(api, CALL_DELETE, "DELETE", path, NULL, cb, ud);
}

unsigned
cli_api_pending(const struct cli_api *api)
{
    return api ? (unsigned)api->calls.count : 0;
}

void
cli_api_free(struct cli_api *api)
{
    if (!api)
        return;
    ahg_egress_free(api->eg);
    /* the worker is gone: the calls are ours to free (no callback runs any more) */
    struct ahg_list_node *it = api->calls.head;
    while (it) {
        struct ahg_list_node *next = it->next;
        free(AHG_LIST_ENTRY(it, struct call, node));
        it = next;
    }
    ahg_list_init(&api->calls);
    memset(api->key_hdr, 0, sizeof(api->key_hdr));
    free(api);
}
