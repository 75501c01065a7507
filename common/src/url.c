#include "ahg/url.h"

#include "ahg/err.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static const char hex_upper[] = "0123456789ABCDEF";

static bool
is_alpha(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static char
to_lower(char c)
{
    if (c >= 'A' && c <= 'Z')
        return (char)(c - 'A' + 'a');
    return c;
}

static int
hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The characters encodeURIComponent leaves alone. */
static bool
is_component_safe(char c)
{
    if (is_alpha(c) || is_digit(c))
        return true;
    switch (c) {
    case '-':
    case '_':
    case '.':
    case '!':
    case '~':
    case '*':
    case '\'':
    case '(':
    case ')':
        return true;
    default:
        return false;
    }
}

static void
clear(char *out, size_t outsz)
{
    if (out != NULL && outsz > 0)
        out[0] = '\0';
}

int
ahg_url_encode(const char *in, size_t n, char *out, size_t outsz)
{
    size_t o = 0;

    if (out == NULL || (in == NULL && n > 0))
        return AHG_EINVAL;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (is_component_safe(c)) {
            if (outsz - o < 2)
                goto too_small;
            out[o++] = c;
        } else {
            unsigned char u = (unsigned char)c;
            if (outsz - o < 4)
                goto too_small;
            out[o++] = '%';
            out[o++] = hex_upper[u >> 4];
            out[o++] = hex_upper[u & 0x0f];
        }
    }
    if (outsz - o < 1)
        goto too_small;
    out[o] = '\0';
    return AHG_OK;
too_small:
    clear(out, outsz);
    return AHG_ELIMIT;
}

/* Decode one unit at in[*i] (a byte, '+' or a %XX escape) into *c; advance *i.
 * Returns false on a bad or truncated escape. */
static bool
decode_one(const char *in, size_t n, size_t *i, bool plus_is_space, char *c)
{
    char ch = in[*i];

    if (ch == '%') {
        int hi, lo;
        if (n - *i < 3)
            return false;
        hi = hex_value(in[*i + 1]);
        lo = hex_value(in[*i + 2]);
        if (hi < 0 || lo < 0)
            return false;
        *c = (char)(unsigned char)(hi << 4 | lo);
        *i += 3;
        return true;
    }
    if (ch == '+' && plus_is_space)
        ch = ' ';
    *c = ch;
    *i += 1;
    return true;
}

int
ahg_url_decode(const char *in, size_t n, char *out, size_t outsz, bool plus_is_space,
               size_t *outlen)
{
    size_t i = 0, o = 0;

    if (outlen != NULL)
        *outlen = 0;
    if (out == NULL || (in == NULL && n > 0))
        return AHG_EINVAL;
    while (i < n) {
        char c;
        if (!decode_one(in, n, &i, plus_is_space, &c)) {
            clear(out, outsz);
            return AHG_EINVAL;
        }
        if (outsz - o < 2) {
            clear(out, outsz);
            return AHG_ELIMIT;
        }
        out[o++] = c;
    }
    if (outsz <= o) {
        clear(out, outsz);
        return AHG_ELIMIT;
    }
    out[o] = '\0';
    if (outlen != NULL)
        *outlen = o;
    return AHG_OK;
}

/* True when in[0..n) decodes exactly to the NUL-terminated key. */
static bool
decoded_equals(const char *in, size_t n, const char *key, bool plus_is_space)
{
    size_t i = 0, k = 0;

    while (i < n) {
        char c;
        if (!decode_one(in, n, &i, plus_is_space, &c))
            return false;
        if (key[k] == '\0' || key[k] != c)
            return false;
        k++;
    }
    return key[k] == '\0';
}

int
ahg_url_query_get(const char *query, const char *key, char *out, size_t outsz, bool plus_is_space)
{
    const char *p, *end;

    if (query == NULL || key == NULL || out == NULL)
        return AHG_EINVAL;
    clear(out, outsz);
    p = query[0] == '?' ? query + 1 : query;
    end = p + strcspn(p, "#");
    while (p <= end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pend = amp != NULL ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pend - p));
        const char *kend = eq != NULL ? eq : pend;

        if (decoded_equals(p, (size_t)(kend - p), key, plus_is_space)) {
            if (eq == NULL) {
                if (outsz == 0)
                    return AHG_ELIMIT;
                out[0] = '\0';
                return AHG_OK;
            }
            return ahg_url_decode(eq + 1, (size_t)(pend - eq - 1), out, outsz, plus_is_space, NULL);
        }
        if (amp == NULL)
            break;
        p = amp + 1;
    }
    return AHG_ENOTFOUND;
}

/* True for a pair the relay strips: key starts with "sb-hc-" and the pair has '='. */
static bool
is_sbhc_pair(const char *p, size_t n)
{
    static const char prefix[] = "sb-hc-";
    size_t plen = sizeof(prefix) - 1;

    if (n < plen || memchr(p, '=', n) == NULL)
        return false;
    for (size_t i = 0; i < plen; i++) {
        if (to_lower(p[i]) != prefix[i])
            return false;
    }
    return true;
}

/* Append s[0..n) to out at *o; false when it (plus a final NUL) does not fit. */
static bool
append(char *out, size_t outsz, size_t *o, const char *s, size_t n)
{
    if (outsz <= *o || outsz - *o <= n)
        return false;
    memcpy(out + *o, s, n);
    *o += n;
    return true;
}

int
ahg_url_strip_sbhc(const char *target, char *out, size_t outsz)
{
    const char *q, *qend, *p;
    size_t o = 0, qmark_at, before_query;
    bool removed = false, first = true;

    if (target == NULL || out == NULL)
        return AHG_EINVAL;
    before_query = strcspn(target, "?#");
    q = target + before_query;
    if (*q != '?') {
        /* No query: copy verbatim. */
        if (!append(out, outsz, &o, target, strlen(target)))
            goto too_small;
        out[o] = '\0';
        return AHG_OK;
    }
    if (!append(out, outsz, &o, target, (size_t)(q - target) + 1))
        goto too_small;
    qmark_at = o - 1;
    qend = q + 1 + strcspn(q + 1, "#");
    p = q + 1;
    for (;;) {
        const char *amp = memchr(p, '&', (size_t)(qend - p));
        const char *pend = amp != NULL ? amp : qend;
        size_t plen = (size_t)(pend - p);

        if (is_sbhc_pair(p, plen)) {
            removed = true;
        } else {
            if (!first && !append(out, outsz, &o, "&", 1))
                goto too_small;
            if (!append(out, outsz, &o, p, plen))
                goto too_small;
            first = false;
        }
        if (amp == NULL)
            break;
        p = amp + 1;
    }
    if (removed && o == qmark_at + 1)
        o = qmark_at; /* the query became empty: drop the '?' */
    if (!append(out, outsz, &o, qend, strlen(qend)))
        goto too_small;
    out[o] = '\0';
    return AHG_OK;
too_small:
    clear(out, outsz);
    return AHG_ELIMIT;
}

/* Copy s[0..n) into a field of size fsz, NUL-terminated; false if it does not fit. */
static bool
set_field(char *field, size_t fsz, const char *s, size_t n)
{
    if (n >= fsz)
        return false;
    memcpy(field, s, n);
    field[n] = '\0';
    return true;
}

static bool
is_regname_char(char c)
{
    if (is_alpha(c) || is_digit(c))
        return true;
    return c != '\0' && strchr("-._~!$&'()*+,;=%", c) != NULL;
}

static int
parse_port(const char *s, size_t n, int *port)
{
    long v = 0;

    if (n == 0) {
        *port = -1;
        return AHG_OK;
    }
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return AHG_EINVAL;
        v = v * 10 + (s[i] - '0');
        if (v > 65535)
            return AHG_EINVAL;
    }
    *port = (int)v;
    return AHG_OK;
}

static int
parse_authority(const char *a, size_t n, struct ahg_url *out)
{
    const char *colon;

    if (memchr(a, '@', n) != NULL)
        return AHG_EINVAL; /* user info is not supported */
    if (n > 0 && a[0] == '[') {
        const char *rb = memchr(a, ']', n);
        size_t hlen;
        struct in6_addr addr;

        if (rb == NULL)
            return AHG_EINVAL;
        hlen = (size_t)(rb - a - 1);
        if (hlen == 0)
            return AHG_EINVAL;
        if (!set_field(out->host, sizeof(out->host), a + 1, hlen))
            return AHG_ELIMIT;
        if (inet_pton(AF_INET6, out->host, &addr) != 1)
            return AHG_EINVAL;
        if (rb + 1 == a + n) {
            out->port = -1;
            return AHG_OK;
        }
        if (rb[1] != ':')
            return AHG_EINVAL;
        return parse_port(rb + 2, (size_t)(a + n - rb - 2), &out->port);
    }
    colon = memchr(a, ':', n);
    {
        size_t hlen = colon != NULL ? (size_t)(colon - a) : n;
        if (hlen == 0)
            return AHG_EINVAL;
        for (size_t i = 0; i < hlen; i++) {
            if (!is_regname_char(a[i]))
                return AHG_EINVAL;
        }
        if (!set_field(out->host, sizeof(out->host), a, hlen))
            return AHG_ELIMIT;
    }
    if (colon == NULL) {
        out->port = -1;
        return AHG_OK;
    }
    return parse_port(colon + 1, (size_t)(a + n - colon - 1), &out->port);
}

static int
parse_url(const char *url, struct ahg_url *out)
{
    const char *p = url, *auth, *aend, *pend;
    size_t slen;
    int rc;

    for (const char *c = url; *c != '\0'; c++) {
        unsigned char u = (unsigned char)*c;
        if (u <= 0x20 || u == 0x7f)
            return AHG_EINVAL;
    }
    if (!is_alpha(*p))
        return AHG_EINVAL;
    while (is_alpha(*p) || is_digit(*p) || *p == '+' || *p == '-' || *p == '.')
        p++;
    if (strncmp(p, "://", 3) != 0)
        return AHG_EINVAL;
    slen = (size_t)(p - url);
    if (slen >= sizeof(out->scheme))
        return AHG_ELIMIT;
    for (size_t i = 0; i < slen; i++)
        out->scheme[i] = to_lower(url[i]);
    out->scheme[slen] = '\0';

    auth = p + 3;
    aend = auth + strcspn(auth, "/?#");
    rc = parse_authority(auth, (size_t)(aend - auth), out);
    if (rc != AHG_OK)
        return rc;

    pend = aend + strcspn(aend, "?#");
    if (!set_field(out->path, sizeof(out->path), aend, (size_t)(pend - aend)))
        return AHG_ELIMIT;
    if (*pend == '?') {
        const char *qs = pend + 1;
        size_t qlen = strcspn(qs, "#");
        if (!set_field(out->query, sizeof(out->query), qs, qlen))
            return AHG_ELIMIT;
    }
    return AHG_OK;
}

int
ahg_url_parse(const char *url, struct ahg_url *out)
{
    int rc;

    if (out == NULL)
        return AHG_EINVAL;
    memset(out, 0, sizeof(*out));
    out->port = -1;
    if (url == NULL)
        return AHG_EINVAL;
    rc = parse_url(url, out);
    if (rc != AHG_OK) {
        memset(out, 0, sizeof(*out));
        out->port = -1;
    }
    return rc;
}
