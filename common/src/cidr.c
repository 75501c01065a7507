/*
 * cidr.c - CIDR allow-lists for IPv4 and IPv6 (ahg/cidr.h).
 */
#include "ahg/cidr.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <sys/socket.h>

#include "ahg/err.h"

/* Longest entry text we accept ("ffff:...:ffff/128" plus slack). */
#define CIDR_TEXT_MAX 64u

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Parses a bare address into family/bytes. */
static int
parse_addr(const char *s, int *family, uint8_t out[16])
{
    memset(out, 0, 16);
    if (strchr(s, ':')) {
        if (inet_pton(AF_INET6, s, out) != 1)
            return AHG_EINVAL;
        *family = AF_INET6;
        return AHG_OK;
    }
    /* inet_pton(AF_INET) accepts only dotted-quad decimal, which is what we want */
    if (inet_pton(AF_INET, s, out) != 1)
        return AHG_EINVAL;
    *family = AF_INET;
    return AHG_OK;
}

/* Whether the first prefix bits of a and b are equal. */
static bool
prefix_eq(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
    unsigned full = prefix / 8, rem = prefix % 8;
    if (full && memcmp(a, b, full) != 0)
        return false;
    if (rem == 0)
        return true;
    uint8_t mask = (uint8_t)(0xffu << (8 - rem));
    return (a[full] & mask) == (b[full] & mask);
}

int
ahg_cidr_parse(const char *s, struct ahg_cidr *out)
{
    if (!s || !out)
        return AHG_EINVAL;
    memset(out, 0, sizeof(*out));
    size_t n = strlen(s);
    if (n == 0 || n >= CIDR_TEXT_MAX)
        return AHG_EINVAL;
    char addr[CIDR_TEXT_MAX];
    memcpy(addr, s, n + 1);
    char *slash = strchr(addr, '/');
    unsigned prefix = 0;
    bool has_prefix = slash != NULL;
    if (slash) {
        *slash = '\0';
        const char *p = slash + 1;
        if (*p == '\0' || strlen(p) > 3)
            return AHG_EINVAL;
        for (const char *q = p; *q; q++) {
            if (!isdigit((unsigned char)*q))
                return AHG_EINVAL;
        }
        if (p[0] == '0' && p[1] != '\0')
            return AHG_EINVAL; /* no leading zeros */
        prefix = (unsigned)strtoul(p, NULL, 10);
    }
    int family = 0;
    uint8_t bytes[16];
    if (parse_addr(addr, &family, bytes) != AHG_OK)
        return AHG_EINVAL;
    unsigned maxp = family == AF_INET ? 32u : 128u;
    if (!has_prefix)
        prefix = maxp;
    if (prefix > maxp)
        return AHG_EINVAL;
    /* host bits must be zero */
    size_t alen = family == AF_INET ? 4 : 16;
    for (unsigned bit = prefix; bit < alen * 8; bit++) {
        if (bytes[bit / 8] & (0x80u >> (bit % 8)))
            return AHG_EINVAL;
    }
    out->family = family;
    memcpy(out->addr, bytes, 16);
    out->prefix = prefix;
    return AHG_OK;
}

char *
ahg_cidr_format(const struct ahg_cidr *c, char *out, size_t outsz)
{
    if (!out || outsz == 0)
        return out;
    out[0] = '\0';
    if (!c)
        return out;
    char a[INET6_ADDRSTRLEN];
    if (!inet_ntop(c->family == AF_INET ? AF_INET : AF_INET6, c->addr, a, sizeof(a)))
        return out;
    (void)snprintf(out, outsz, "%s/%u", a, c->prefix);
    return out;
}

bool
ahg_cidr_match(const struct ahg_cidr *c, const char *addr)
{
    if (!c || !addr)
        return false;
    int family = 0;
    uint8_t b[16];
    if (parse_addr(addr, &family, b) != AHG_OK)
        return false;
    if (family == AF_INET6 && c->family == AF_INET &&
        memcmp(b, v4mapped_prefix, sizeof(v4mapped_prefix)) == 0) {
        memmove(b, b + 12, 4);
        family = AF_INET;
    }
    if (family != c->family)
        return false;
    return prefix_eq(b, c->addr, c->prefix);
}

int
ahg_cidr_list_add(struct ahg_cidr_list *l, const char *s)
{
    if (!l)
        return AHG_EINVAL;
    struct ahg_cidr c;
    int e = ahg_cidr_parse(s, &c);
    if (e != AHG_OK)
        return e;
    struct ahg_cidr *v = realloc(l->v, (l->n + 1) * sizeof(*v));
    if (!v)
        return AHG_ENOMEM;
    v[l->n++] = c;
    l->v = v;
    return AHG_OK;
}

static bool
is_sep(char ch)
{
    return ch == ',' || isspace((unsigned char)ch);
}

int
ahg_cidr_list_parse(const char *s, struct ahg_cidr_list *out, const char **bad)
{
    if (bad)
        *bad = NULL;
    if (!out)
        return AHG_EINVAL;
    out->v = NULL;
    out->n = 0;
    if (!s)
        return AHG_EINVAL;
    const char *p = s;
    while (*p) {
        while (*p && is_sep(*p))
            p++;
        if (!*p)
            break;
        const char *start = p;
        while (*p && !is_sep(*p))
            p++;
        size_t n = (size_t)(p - start);
        char tok[CIDR_TEXT_MAX];
        int e = AHG_EINVAL;
        if (n < sizeof(tok)) {
            memcpy(tok, start, n);
            tok[n] = '\0';
            e = ahg_cidr_list_add(out, tok);
        }
        if (e != AHG_OK) {
            if (bad)
                *bad = start;
            ahg_cidr_list_free(out);
            return e;
        }
    }
    return AHG_OK;
}

bool
ahg_cidr_list_match(const struct ahg_cidr_list *l, const char *addr)
{
    if (!l)
        return false;
    for (size_t i = 0; i < l->n; i++) {
        if (ahg_cidr_match(&l->v[i], addr))
            return true;
    }
    return false;
}

void
ahg_cidr_list_free(struct ahg_cidr_list *l)
{
    if (!l)
        return;
    free(l->v);
    l->v = NULL;
    l->n = 0;
}
