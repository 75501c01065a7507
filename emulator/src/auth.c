/*
 * auth.c - token validation for the relay data plane, in the order of the service
 * (hc-protocol.md sections 1.2, 5, 6 and 7):
 *
 *   1. token present        else 401 MissingToken (except Send on an HC with
 *                           requiresClientAuthorization false: then no token is evaluated)
 *   2. SAS:  parse          else 401 MalformedToken
 *            rule by skn    (on the HC first, then the namespace) and key (primary or
 *            + signature    secondary)                           else 401 invalid signature
 *            expiry                                              else 401 ExpiredToken
 *            audience       (ahg_sas_covers: ns host or request Host, segment prefix)
 *                                                                else 401 InvalidAudience
 *      JWT:  emulator-issued, audience https://relay.azure.net(/) (same failure texts)
 *   3. rights               Manage implies Listen and Send       else 403
 *
 * Every description carries the service's suffix
 * "TrackingId:<uuid>_G<n>, SystemTracker:sb://<ns host>/<path>, Timestamp:<utc>".
 * Tokens are secrets: never logged. Loop thread only (counters in struct emu).
 */
#include "emu_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "ahg/crypto.h"
#include "ahg/err.h"
#include "ahg/sas.h"

/* Real texts (hc-protocol.md 1.2, 5.2, 12). */
#define TXT_INVALID_SIG "The token has an invalid signature."
#define TXT_AUDIENCE                                                                               \
    "InvalidAudience: The authorization header contains a token with a wrong audience"
/* Service Bus family texts, best knowledge (the relay shares the front end):
 * "MissingToken: The authorization header was not found.",
 * "MalformedToken: The credentials contained in the authorization header are not in the WRAP
 * format.", "ExpiredToken: The token is expired. Expiration time: '<utc>'". */
#define TXT_MISSING "MissingToken: The authorization header was not found."
#define TXT_MALFORMED                                                                              \
    "MalformedToken: The credentials contained in the authorization header are not in the WRAP "   \
    "format."
/* Missing right (403): best knowledge, modelled on Service Bus' "Unauthorized access. 'Send'
 * claim(s) are required to perform this operation. Resource: '<uri>'." */
#define TXT_CLAIM_FMT                                                                              \
    "Unauthorized access. '%s' claim(s) are required to perform this operation. Resource: "        \
    "'sb://%s/%s'."

#define RELAY_AUDIENCE "https://relay.azure.net"

void
emu_auth_describe(const struct emu *e, const char *msg, const char *path, char *out, size_t outsz)
{
    if (!out || !outsz)
        return;
    char uuid[37] = "00000000-0000-0000-0000-000000000000";
    (void)ahg_rand_uuid(uuid);
    unsigned char g = 0;
    (void)ahg_rand_bytes(&g, 1);
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    (void)strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    if (!msg)
        msg = "";
    if (!path)
        path = "";
    while (*path == '/')
        path++;
    size_t ml = strlen(msg);
    const char *sep = ml && msg[ml - 1] == '.' ? " " : ml ? ". " : "";
    (void)snprintf(out, outsz, "%s%sTrackingId:%s_G%u, SystemTracker:sb://%s/%s, Timestamp:%s", msg,
                   sep, uuid, (unsigned)(g % 64u), e ? e->ns.host : "", path, ts);
}

static bool
fail(struct emu *e, struct emu_auth_result *out, int status, const char *msg, const char *path)
{
    e->m_auth_failures++;
    if (out) {
        out->status = status;
        emu_auth_describe(e, msg, path, out->desc, sizeof(out->desc));
    }
    return false;
}

static const char *
skip_ws(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* Three non-empty base64url segments separated by '.'. */
static bool
looks_like_jwt(const char *t)
{
    int dots = 0;
    size_t seg = 0;
    for (const char *p = t; *p; p++) {
        char c = *p;
        if (c == '.') {
            if (!seg)
                return false;
            dots++;
            seg = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '='))
            return false;
        seg++;
    }
    return dots == 2 && seg > 0;
}

static bool
is_sas(const char *t)
{
    static const char kw[] = "SharedAccessSignature";
    return strncasecmp(t, kw, sizeof(kw) - 1) == 0;
}

static unsigned
effective_rights(unsigned rights)
{
    if (rights & EMU_RIGHT_MANAGE)
        rights |= EMU_RIGHT_LISTEN | EMU_RIGHT_SEND;
    return rights;
}

static bool
check_rights(struct emu *e, unsigned have, unsigned need, const char *path,
             struct emu_auth_result *out)
{
    unsigned missing = need & ~effective_rights(have);
    if (!missing)
        return true;
    const char *claim = (missing & EMU_RIGHT_LISTEN) ? "Listen"
                        : (missing & EMU_RIGHT_SEND) ? "Send"
                                                     : "Manage";
    char msg[sizeof(out->desc)];
    const char *p = path ? path : "";
    while (*p == '/')
        p++;
    (void)snprintf(msg, sizeof(msg), TXT_CLAIM_FMT, claim, e->ns.host, p);
    return fail(e, out, 403, msg, path);
}

static void
expired_text(long long se, char *out, size_t outsz)
{
    char ts[40] = "";
    time_t t = (time_t)se;
    struct tm tm;
    if (gmtime_r(&t, &tm))
        (void)strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%SZ", &tm);
    (void)snprintf(out, outsz, "ExpiredToken: The token is expired. Expiration time: '%s'", ts);
}

static bool
check_sas(struct emu *e, const char *token, const char *request_host, struct emu_hc *hc,
          const char *path, unsigned need, struct emu_auth_result *out)
{
    struct ahg_sas tok;
    if (ahg_sas_parse(token, &tok) != AHG_OK)
        return fail(e, out, 401, TXT_MALFORMED, path);
    struct emu_rule *cands[2] = {hc ? emu_rule_find(e, hc, tok.skn) : NULL,
                                 emu_rule_find(e, NULL, tok.skn)};
    long long now = (long long)time(NULL);
    int rc = AHG_EAUTH;
    struct emu_rule *rule = NULL;
    for (int i = 0; i < 2 && !rule; i++) {
        if (!cands[i])
            continue;
        const char *keys[2] = {cands[i]->primary, cands[i]->secondary};
        for (int k = 0; k < 2; k++) {
            int v = ahg_sas_verify(&tok, keys[k], now, 0);
            if (v == AHG_OK || v == AHG_EEXPIRED) { /* the signature is good */
                rc = v;
                rule = cands[i];
                break;
            }
        }
    }
    if (!rule)
        return fail(e, out, 401, TXT_INVALID_SIG, path);
    if (rc == AHG_EEXPIRED) {
        char msg[128];
        expired_text(tok.se, msg, sizeof(msg));
        return fail(e, out, 401, msg, path);
    }
    if (!ahg_sas_covers(tok.resource, e->ns.host, request_host, path ? path : ""))
        return fail(e, out, 401, TXT_AUDIENCE, path);
    return check_rights(e, rule->rights, need, path, out);
}

static bool
check_jwt(struct emu *e, const char *token, const char *path, unsigned need,
          struct emu_auth_result *out)
{
    unsigned rights = 0;
    long long exp = 0;
    int rc = emu_identity_verify(e, token, RELAY_AUDIENCE, &rights, &exp);
    if (rc == AHG_EEXPIRED) {
        char msg[128];
        expired_text(exp, msg, sizeof(msg));
        return fail(e, out, 401, msg, path);
    }
    if (rc == AHG_EFORBIDDEN)
        return fail(e, out, 401, TXT_AUDIENCE, path);
    if (rc != AHG_OK)
        return fail(e, out, 401, TXT_INVALID_SIG, path);
    return check_rights(e, rights, need, path, out);
}

bool
emu_auth_check(struct emu *e, const char *token, const char *request_host, struct emu_hc *hc,
               const char *entity_path, unsigned need, struct emu_auth_result *out)
{
    if (out) {
        out->status = 0;
        out->desc[0] = '\0';
    }
    if (!e)
        return false;
    const char *path = entity_path ? entity_path : (hc ? hc->name : "");
    /* Anonymous senders: the token is not evaluated at all (hc-protocol.md 5.3). */
    if (need == EMU_RIGHT_SEND && hc && !hc->requires_client_auth)
        return true;
    const char *t = token ? skip_ws(token) : "";
    if (!*t)
        return fail(e, out, 401, TXT_MISSING, path);
    if (is_sas(t))
        return check_sas(e, t, request_host, hc, path, need, out);
    if (strncasecmp(t, "Bearer", 6) == 0 && (t[6] == ' ' || t[6] == '\t'))
        t = skip_ws(t + 6);
    if (looks_like_jwt(t))
        return check_jwt(e, t, path, need, out);
    return fail(e, out, 401, TXT_MALFORMED, path);
}

/* exp claim of a JWT payload, without verifying it; -1 if unreadable. */
static long long
jwt_exp_unverified(const char *t)
{
    const char *d1 = strchr(t, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d2 || d2 - d1 - 1 <= 0 || d2 - d1 - 1 > 8192)
        return -1;
    unsigned char buf[8192];
    size_t len = 0;
    if (ahg_base64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), buf, sizeof(buf), &len) != AHG_OK)
        return -1;
    cJSON *j = cJSON_ParseWithLength((const char *)buf, len);
    const cJSON *exp = j ? cJSON_GetObjectItemCaseSensitive(j, "exp") : NULL;
    long long v = -1;
    if (exp && cJSON_IsNumber(exp) && exp->valuedouble >= 0 && exp->valuedouble < 9.2e18)
        v = (long long)exp->valuedouble;
    cJSON_Delete(j);
    return v;
}

long long
emu_auth_expiry(const char *token)
{
    if (!token)
        return -1;
    const char *t = skip_ws(token);
    long long exp = -1;
    if (is_sas(t)) {
        struct ahg_sas tok;
        if (ahg_sas_parse(t, &tok) != AHG_OK)
            return -1;
        exp = tok.se;
    } else {
        if (strncasecmp(t, "Bearer", 6) == 0 && (t[6] == ' ' || t[6] == '\t'))
            t = skip_ws(t + 6);
        if (!looks_like_jwt(t))
            return -1;
        exp = jwt_exp_unverified(t);
        if (exp < 0)
            return -1;
    }
    long long now = (long long)time(NULL);
    return exp > now ? exp - now : 0;
}
