/*
 * ctl_it.c - see ctl_it.h.
 */
#include "ctl_it.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "ahg/egress.h"
#include "ahg/err.h"
#include "ahg/httpd.h"
#include "ahg/log.h"
#include "emu_int.h"

void
cit_start(struct cit *c, const char *const *emu_extra)
{
    memset(c, 0, sizeof(*c));
    th_start(&c->t, emu_extra);
    if (getenv("CTL_IT_LOG"))
        ahg_log_setup("ctl-it", AHG_LOG_FORMAT_TEXT, AHG_LOG_LVL_DEBUG, 2);
    ts_redis_start(&c->redis, 0, NULL);
    ts_redis_url(&c->redis, c->redis_url, sizeof(c->redis_url));
    c->eg = ahg_egress_new(c->t.loop, NULL);
    assert_non_null(c->eg);
    int err = 0;
    c->store = ahg_store_new_url(c->t.loop, c->redis_url, NULL, false, &err);
    assert_non_null(c->store);
    uint64_t end = ahg_now_ms() + 5000;
    while (!ahg_store_is_up(c->store) && ahg_now_ms() < end)
        ahg_loop_run_once(c->t.loop);
    assert_true(ahg_store_is_up(c->store));
}

void
cit_stop(struct cit *c)
{
    for (int i = 0; i < CIT_MAX; i++)
        cit_ctl_stop(c, i, false);
    ahg_egress_free(c->eg);
    ahg_store_free(c->store);
    th_stop(&c->t);
    ts_redis_stop(&c->redis);
}

static void
api_request(struct ahg_httpd_req *r)
{
    struct cit_ctl *cc = ahg_httpd_ud(ahg_httpd_req_server(r));
    ahg_ctl_handle(cc->ctl, r, NULL);
}

void
cit_ctl_start(struct cit *c, int i, void (*tweak)(struct ahg_ctl_opts *o))
{
    struct cit_ctl *cc = &c->c[i];
    cit_ctl_stop(c, i, false); /* left over by a test that failed midway */
    memset(cc, 0, sizeof(*cc));
    int err = 0;
    cc->store = ahg_store_new_url(c->t.loop, c->redis_url, NULL, false, &err);
    assert_non_null(cc->store);
    uint64_t end = ahg_now_ms() + 5000;
    while (!ahg_store_is_up(cc->store) && ahg_now_ms() < end)
        ahg_loop_run_once(c->t.loop);
    (void)snprintf(cc->endpoint, sizeof(cc->endpoint), "ws://127.0.0.1:%d/", c->t.port);
    (void)snprintf(cc->arm, sizeof(cc->arm), "http://127.0.0.1:%d", emu_mgmt_port(c->t.e));
    (void)snprintf(cc->identity, sizeof(cc->identity),
                   "http://127.0.0.1:%d/metadata/identity/oauth2/token", emu_identity_port(c->t.e));
    (void)snprintf(cc->replica, sizeof(cc->replica), "replica-%d", i);
    struct ahg_ctl_opts *o = &cc->o;
    o->replica = cc->replica;
    o->public_scheme = "http";
    o->public_domain = "localhost";
    o->public_port = 8080;
    o->relay_endpoint = cc->endpoint;
    o->relay_host = TH_HOST;
    o->arm_endpoint = cc->arm;
    o->subscription = "00000000-0000-0000-0000-000000000000";
    o->resource_group = "azhexgate";
    o->namespace_name = TH_NS;
    o->identity_kind = "imds";
    o->identity_endpoint = cc->identity;
    o->api_keys = CIT_KEY_A "," CIT_KEY_B;
    o->arm_retries = 2;
    o->arm_backoff_ms = 20;
    o->reconciler = true;
    o->reconciler_set = true;
    o->reconcile_interval_ms = 3600000; /* tests trigger passes themselves */
    o->lease_ttl_ms = 900;
    o->orphan_grace_ms = 1;
    o->allow_custom_subdomain = true;
    if (tweak)
        tweak(o);
    cc->ctl = ahg_ctl_new(c->t.loop, cc->store, o, &err);
    assert_non_null(cc->ctl);
    struct ahg_httpd_opts ho = {
        .name = cc->replica, .port = 0, .on_request = api_request, .ud = cc};
    cc->api = ahg_httpd_new(c->t.loop, &ho, &err);
    assert_non_null(cc->api);
    cc->port = ahg_httpd_port(cc->api);
    /* ready: API keys and relay keys loaded */
    end = ahg_now_ms() + 10000;
    while (!ahg_ctl_ready(cc->ctl) && ahg_now_ms() < end)
        ahg_loop_run_once(c->t.loop);
    assert_true(ahg_ctl_ready(cc->ctl));
}

static void
drained(void *ud)
{
    *(bool *)ud = true;
}

void
cit_ctl_stop(struct cit *c, int i, bool drain)
{
    struct cit_ctl *cc = &c->c[i];
    if (!cc->ctl)
        return;
    if (drain) {
        bool done = false;
        ahg_ctl_drain(cc->ctl, drained, &done);
        uint64_t end = ahg_now_ms() + 5000;
        while (!done && ahg_now_ms() < end)
            ahg_loop_run_once(c->t.loop);
        th_run(&c->t, 100); /* the lease release reaches Redis */
    }
    ahg_ctl_free(cc->ctl);
    cc->ctl = NULL;
    ahg_store_free(cc->store);
    cc->store = NULL;
    /* the httpd lives as long as the loop; requests to it now find no controller */
}

static void
on_resp(const struct ahg_egress_resp *resp, void *ud)
{
    struct cit_resp *r = ud;
    r->status = resp->err == AHG_OK ? resp->status : -1;
    r->body = strdup(resp->body ? resp->body : "");
    r->headers = strdup(resp->headers ? resp->headers : "");
    r->done = true;
}

static bool
resp_done(void *arg)
{
    return ((struct cit_resp *)arg)->done;
}

void
cit_req(struct cit *c, int i, const char *method, const char *path, const char *key,
        const char *body, const char *const *extra_headers, struct cit_resp *r)
{
    memset(r, 0, sizeof(*r));
    char url[256], kh[256];
    (void)snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", c->c[i].port, path);
    const char *hdrs[16];
    size_t n = 0;
    if (key) {
        (void)snprintf(kh, sizeof(kh), "X-AzHexGate-ApiKey: %s", key);
        hdrs[n++] = kh;
    }
    if (body)
        hdrs[n++] = "Content-Type: application/json";
    for (size_t k = 0; extra_headers && extra_headers[k] && n < 15; k++)
        hdrs[n++] = extra_headers[k];
    hdrs[n] = NULL;
    struct ahg_egress_req q = {
        .method = method,
        .url = url,
        .headers = hdrs,
        .body = body,
        .body_len = body ? strlen(body) : 0,
    };
    assert_int_equal(ahg_egress_request(c->eg, &q, on_resp, r, NULL), AHG_OK);
    assert_true(th_wait(&c->t, resp_done, r, 30000));
}

void
cit_resp_free(struct cit_resp *r)
{
    free(r->body);
    free(r->headers);
    memset(r, 0, sizeof(*r));
}

char *
cit_json_str(const struct cit_resp *r, const char *member)
{
    cJSON *j = cJSON_Parse(r->body ? r->body : "");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, member);
    char *out = cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
    cJSON_Delete(j);
    return out;
}

const char *
cit_err_code(const struct cit_resp *r, char *out, size_t outsz)
{
    out[0] = '\0';
    cJSON *j = cJSON_Parse(r->body ? r->body : "");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "code");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
    if (cJSON_IsString(code) && cJSON_IsString(msg) && msg->valuestring[0])
        (void)snprintf(out, outsz, "%s", code->valuestring);
    cJSON_Delete(j);
    return out;
}

struct sw {
    bool done;
    int err;
    char *str;
    long long integer;
};

static void
on_store(struct ahg_store *s, int err, const struct ahg_store_reply *rep, void *ud)
{
    (void)s;
    struct sw *w = ud;
    w->err = err;
    if (err == AHG_OK && rep->type == AHG_STORE_STR)
        w->str = strndup(rep->str, rep->len);
    if (err == AHG_OK && rep->type == AHG_STORE_INT)
        w->integer = rep->integer;
    w->done = true;
}

static bool
sw_done(void *arg)
{
    return ((struct sw *)arg)->done;
}

char *
cit_get(struct cit *c, const char *key)
{
    struct sw w = {0};
    assert_int_equal(ahg_store_get(c->store, key, on_store, &w), AHG_OK);
    assert_true(th_wait(&c->t, sw_done, &w, 5000));
    assert_int_equal(w.err, AHG_OK);
    return w.str;
}

long long
cit_scard(struct cit *c, const char *key)
{
    struct sw w = {0};
    assert_int_equal(ahg_store_scard(c->store, key, on_store, &w), AHG_OK);
    assert_true(th_wait(&c->t, sw_done, &w, 5000));
    assert_int_equal(w.err, AHG_OK);
    return w.integer;
}

void
cit_set(struct cit *c, const char *key, const char *val, unsigned long long px)
{
    struct sw w = {0};
    assert_int_equal(ahg_store_set(c->store, key, val, strlen(val), px, 0, on_store, &w), AHG_OK);
    assert_true(th_wait(&c->t, sw_done, &w, 5000));
    assert_int_equal(w.err, AHG_OK);
    free(w.str);
}

bool
cit_hc_exists(struct cit *c, const char *name)
{
    return emu_hc_find(c->t.e, name) != NULL;
}

static bool
ws_settled(void *arg)
{
    struct tws *w = arg;
    return w->open || w->failed || w->closed;
}

bool
cit_listen_open(struct cit *c, struct tws *w, const char *hc, const char *token)
{
    char target[512];
    (void)snprintf(target, sizeof(target), "/$hc/%s?sb-hc-action=listen", hc);
    const char *hdrs[] = {"ServiceBusAuthorization", token, NULL};
    memset(w, 0, sizeof(*w));
    tws_connect(&c->t, w, target, hdrs, NULL);
    (void)th_wait(&c->t, ws_settled, w, 10000);
    return w->open;
}

bool
cit_listen(struct cit *c, const char *hc, const char *token)
{
    struct tws w;
    bool ok = cit_listen_open(c, &w, hc, token);
    tws_free(&w);
    return ok;
}

void
cit_del(struct cit *c, const char *key)
{
    struct sw w = {0};
    assert_int_equal(ahg_store_del(c->store, key, on_store, &w), AHG_OK);
    assert_true(th_wait(&c->t, sw_done, &w, 5000));
    assert_int_equal(w.err, AHG_OK);
}
