#include "ahg/sas.h"

#include "ahg/crypto.h"
#include "ahg/err.h"
#include "ahg/url.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

static const char sas_prefix[] = "SharedAccessSignature";

enum sas_field { F_SR, F_SIG, F_SE, F_SKN, F_COUNT };

static char
to_lower(char c)
{
    if (c >= 'A' && c <= 'Z')
        return (char)(c - 'A' + 'a');
    return c;
}

/* ASCII case-insensitive equality of a[0..n) and b[0..n). */
static bool
ci_equal(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (to_lower(a[i]) != to_lower(b[i]))
            return false;
    }
    return true;
}

static bool
is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static void
clear(char *out, size_t outsz)
{
    if (out != NULL && outsz > 0)
        out[0] = '\0';
}

int
ahg_sas_create(const char *resource_uri, const char *key_name, const char *key, long long expiry,
               char *out, size_t outsz)
{
    char sr[AHG_SAS_SR_MAX];
    char se[24];
    char tosign[sizeof(sr) + 1 + sizeof(se)];
    unsigned char mac[AHG_CRYPTO_SHA256_LEN];
    char sig[48];
    char sig_enc[3 * sizeof(sig)];
    char skn_enc[3 * AHG_SAS_KEYNAME_MAX + 1];
    size_t rlen, klen, nlen, srlen, selen;
    int rc, n;

    if (out == NULL)
        return AHG_EINVAL;
    clear(out, outsz);
    if (resource_uri == NULL || key_name == NULL || key == NULL || expiry < 0)
        return AHG_EINVAL;
    rlen = strlen(resource_uri);
    klen = strnlen(key, AHG_SAS_KEY_MAX + 1);
    nlen = strnlen(key_name, AHG_SAS_KEYNAME_MAX + 1);
    if (rlen == 0 || klen == 0 || klen > AHG_SAS_KEY_MAX || nlen == 0 || nlen > AHG_SAS_KEYNAME_MAX)
        return AHG_EINVAL;

    rc = ahg_url_encode(resource_uri, rlen, sr, sizeof(sr));
    if (rc != AHG_OK)
        return rc;
    rc = ahg_url_encode(key_name, nlen, skn_enc, sizeof(skn_enc));
    if (rc != AHG_OK)
        return rc;
    n = snprintf(se, sizeof(se), "%lld", expiry);
    if (n < 0 || (size_t)n >= sizeof(se))
        return AHG_EINVAL;
    selen = (size_t)n;
    srlen = strlen(sr);

    /* string to sign: sr + "\n" + se */
    memcpy(tosign, sr, srlen);
    tosign[srlen] = '\n';
    memcpy(tosign + srlen + 1, se, selen);
    rc = ahg_hmac_sha256(key, klen, tosign, srlen + 1 + selen, mac);
    if (rc == AHG_OK)
        rc = ahg_base64_encode(mac, sizeof(mac), sig, sizeof(sig));
    OPENSSL_cleanse(mac, sizeof(mac));
    if (rc == AHG_OK)
        rc = ahg_url_encode(sig, strlen(sig), sig_enc, sizeof(sig_enc));
    if (rc != AHG_OK)
        return rc;

    n = snprintf(out, outsz, "%s sr=%s&sig=%s&se=%s&skn=%s", sas_prefix, sr, sig_enc, se, skn_enc);
    if (n < 0) {
        clear(out, outsz);
        return AHG_EIO;
    }
    if ((size_t)n > AHG_SAS_MAX || (size_t)n >= outsz) {
        clear(out, outsz);
        return AHG_ELIMIT;
    }
    return AHG_OK;
}

static int
field_of(const char *k, size_t n)
{
    static const char *const names[F_COUNT] = {"sr", "sig", "se", "skn"};

    for (int f = 0; f < F_COUNT; f++) {
        if (strlen(names[f]) == n && ci_equal(k, names[f], n))
            return f;
    }
    return -1;
}

/* Percent-decode v[0..n) ('+' literal) into out; reject embedded NUL bytes. */
static int
decode_value(const char *v, size_t n, char *out, size_t outsz, size_t *outlen)
{
    int rc = ahg_url_decode(v, n, out, outsz, false, outlen);

    if (rc != AHG_OK)
        return rc;
    if (strlen(out) != *outlen)
        return AHG_EINVAL;
    return AHG_OK;
}

/* Canonical decimal 0..2^63-1, no sign, no leading zeros. */
static int
parse_se(const char *s, size_t n, long long *se)
{
    unsigned long long v = 0;
    const unsigned long long max = 9223372036854775807ULL;

    if (n == 0 || (n > 1 && s[0] == '0'))
        return AHG_EINVAL;
    for (size_t i = 0; i < n; i++) {
        unsigned d;
        if (s[i] < '0' || s[i] > '9')
            return AHG_EINVAL;
        d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10)
            return AHG_EINVAL;
        v = v * 10 + d;
    }
    *se = (long long)v;
    return AHG_OK;
}

static int
parse_pair(int field, const char *v, size_t vlen, struct ahg_sas *out)
{
    char scratch[AHG_SAS_MAX + 1];
    size_t dlen = 0;
    int rc;

    if (vlen == 0)
        return AHG_EINVAL;
    switch (field) {
    case F_SR:
        if (vlen >= sizeof(out->sr_raw))
            return AHG_ELIMIT;
        memcpy(out->sr_raw, v, vlen);
        out->sr_raw[vlen] = '\0';
        /* decoded text is never longer than the raw text, so it fits */
        return decode_value(v, vlen, out->resource, sizeof(out->resource), &dlen);
    case F_SIG:
        rc = decode_value(v, vlen, scratch, sizeof(scratch), &dlen);
        if (rc != AHG_OK)
            return rc;
        if (dlen >= sizeof(out->sig))
            return AHG_ELIMIT;
        memcpy(out->sig, scratch, dlen + 1);
        return AHG_OK;
    case F_SE:
        rc = decode_value(v, vlen, scratch, sizeof(scratch), &dlen);
        if (rc != AHG_OK)
            return rc;
        return parse_se(scratch, dlen, &out->se);
    default: /* F_SKN */
        rc = decode_value(v, vlen, scratch, sizeof(scratch), &dlen);
        if (rc != AHG_OK)
            return rc;
        if (dlen > AHG_SAS_KEYNAME_MAX)
            return AHG_EINVAL;
        memcpy(out->skn, scratch, dlen + 1);
        return AHG_OK;
    }
}

static int
parse_token(const char *token, size_t len, struct ahg_sas *out)
{
    const char *p = token, *end = token + len;
    const size_t plen = sizeof(sas_prefix) - 1;
    bool seen[F_COUNT] = {false};

    while (p < end && is_ows(*p))
        p++;
    while (end > p && is_ows(end[-1]))
        end--;
    if ((size_t)(end - p) < plen || !ci_equal(p, sas_prefix, plen))
        return AHG_EINVAL;
    p += plen;
    if (p == end || !is_ows(*p))
        return AHG_EINVAL;
    while (p < end && is_ows(*p))
        p++;

    for (const char *c = p; c < end; c++) {
        unsigned char u = (unsigned char)*c;
        if (u <= 0x20 || u == 0x7f)
            return AHG_EINVAL;
    }
    for (;;) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pend = amp != NULL ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pend - p));
        int field, rc;

        if (eq == NULL || eq == p)
            return AHG_EINVAL; /* empty pair, no '=' or empty key */
        field = field_of(p, (size_t)(eq - p));
        if (field >= 0) {
            if (seen[field])
                return AHG_EINVAL;
            seen[field] = true;
            rc = parse_pair(field, eq + 1, (size_t)(pend - eq - 1), out);
            if (rc != AHG_OK)
                return rc;
        }
        if (amp == NULL)
            break;
        p = amp + 1;
    }
    for (int f = 0; f < F_COUNT; f++) {
        if (!seen[f])
            return AHG_EINVAL;
    }
    return AHG_OK;
}

int
ahg_sas_parse(const char *token, struct ahg_sas *out)
{
    size_t len;
    int rc;

    if (out == NULL)
        return AHG_EINVAL;
    memset(out, 0, sizeof(*out));
    if (token == NULL)
        return AHG_EINVAL;
    len = strnlen(token, AHG_SAS_MAX + 1);
    if (len > AHG_SAS_MAX)
        return AHG_ELIMIT;
    rc = parse_token(token, len, out);
    if (rc != AHG_OK)
        memset(out, 0, sizeof(*out));
    return rc;
}

int
ahg_sas_verify(const struct ahg_sas *tok, const char *key, long long now, long long grace_seconds)
{
    char msg[sizeof(tok->sr_raw) + 1 + 24];
    unsigned char mac[AHG_CRYPTO_SHA256_LEN];
    unsigned char got[sizeof(tok->sig)];
    size_t klen, srlen, siglen, glen = 0;
    bool ok;
    int n, rc;

    if (tok == NULL || key == NULL || grace_seconds < 0 || tok->se < 0)
        return AHG_EINVAL;
    klen = strnlen(key, AHG_SAS_KEY_MAX + 1);
    if (klen == 0 || klen > AHG_SAS_KEY_MAX)
        return AHG_EINVAL;
    srlen = strnlen(tok->sr_raw, sizeof(tok->sr_raw));
    siglen = strnlen(tok->sig, sizeof(tok->sig));
    if (srlen == 0 || srlen == sizeof(tok->sr_raw) || siglen == sizeof(tok->sig))
        return AHG_EINVAL;

    memcpy(msg, tok->sr_raw, srlen);
    msg[srlen] = '\n';
    n = snprintf(msg + srlen + 1, sizeof(msg) - srlen - 1, "%lld", tok->se);
    if (n < 0 || (size_t)n >= sizeof(msg) - srlen - 1)
        return AHG_EINVAL;
    rc = ahg_hmac_sha256(key, klen, msg, srlen + 1 + (size_t)n, mac);
    if (rc != AHG_OK)
        return rc;

    rc = ahg_base64_decode(tok->sig, siglen, got, sizeof(got), &glen);
    ok = rc == AHG_OK && ahg_consttime_eq(got, glen, mac, sizeof(mac));
    OPENSSL_cleanse(mac, sizeof(mac));
    if (!ok)
        return AHG_EAUTH;
    if (now > tok->se && now - tok->se > grace_seconds)
        return AHG_EEXPIRED;
    return AHG_OK;
}

/* If path (after an optional leading '/') starts with a "$hc" segment, return a pointer
 * just past that segment (at its '/' or at the end); otherwise return path. */
static const char *
skip_hc_segment(const char *path)
{
    const char *p = path[0] == '/' ? path + 1 : path;

    if (ci_equal(p, "$hc", 3) && (p[3] == '/' || p[3] == '\0'))
        return p + 3;
    return path;
}

int
ahg_sas_normalize_audience(const char *uri, char *out, size_t outsz)
{
    struct ahg_url u;
    const char *path;
    size_t plen;
    bool v6;
    int rc, n;

    if (out == NULL)
        return AHG_EINVAL;
    clear(out, outsz);
    if (uri == NULL)
        return AHG_EINVAL;
    rc = ahg_url_parse(uri, &u);
    if (rc != AHG_OK)
        return rc;
    for (char *h = u.host; *h != '\0'; h++)
        *h = to_lower(*h);
    v6 = strchr(u.host, ':') != NULL;
    path = skip_hc_segment(u.path);
    plen = strlen(path);
    n = snprintf(out, outsz, "http://%s%s%s%s%s", v6 ? "[" : "", u.host, v6 ? "]" : "", path,
                 (plen > 0 && path[plen - 1] == '/') ? "" : "/");
    if (n < 0 || (size_t)n >= outsz) {
        clear(out, outsz);
        return n < 0 ? AHG_EIO : AHG_ELIMIT;
    }
    return AHG_OK;
}

/* host (no port, IPv6 without brackets) against given, which may be "h", "h:port",
 * "[v6]", "[v6]:port" or a bare IPv6 literal. */
static bool
host_matches(const char *host, const char *given)
{
    const char *h = given;
    size_t n;

    if (given == NULL)
        return false;
    if (h[0] == '[') {
        const char *rb = strchr(h, ']');
        if (rb == NULL)
            return false;
        h++;
        n = (size_t)(rb - h);
    } else {
        const char *colon = strchr(h, ':');
        if (colon != NULL && strchr(colon + 1, ':') == NULL)
            n = (size_t)(colon - h); /* "host:port" */
        else
            n = strlen(h); /* no port, or a bare IPv6 literal */
    }
    return n > 0 && strlen(host) == n && ci_equal(host, h, n);
}

static bool
allowed_scheme(const char *s)
{
    static const char *const ok[] = {"http", "https", "sb", "ws", "wss"};

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        if (strcmp(s, ok[i]) == 0)
            return true;
    }
    return false;
}

/* Trim one leading and one trailing '/' of s[0..*n); returns the new start. */
static const char *
trim_slashes(const char *s, size_t *n)
{
    if (*n > 0 && s[0] == '/') {
        s++;
        (*n)--;
    }
    if (*n > 0 && s[*n - 1] == '/')
        (*n)--;
    return s;
}

bool
ahg_sas_covers(const char *resource, const char *namespace_host, const char *request_host,
               const char *entity_path)
{
    struct ahg_url u;
    char path[AHG_URL_PATH_MAX];
    const char *tp, *ep;
    size_t dlen = 0, tlen, elen;

    if (resource == NULL || entity_path == NULL)
        return false;
    if (ahg_url_parse(resource, &u) != AHG_OK || !allowed_scheme(u.scheme))
        return false;
    if (!host_matches(u.host, namespace_host) && !host_matches(u.host, request_host))
        return false;
    if (ahg_url_decode(u.path, strlen(u.path), path, sizeof(path), false, &dlen) != AHG_OK ||
        strlen(path) != dlen)
        return false;

    tp = skip_hc_segment(path);
    tlen = strlen(tp);
    tp = trim_slashes(tp, &tlen);
    elen = strlen(entity_path);
    ep = trim_slashes(entity_path, &elen);

    if (tlen == 0)
        return true; /* namespace scope */
    if (tlen > elen || !ci_equal(tp, ep, tlen))
        return false;
    return tlen == elen || ep[tlen] == '/';
}
