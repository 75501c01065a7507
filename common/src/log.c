/*
 * log.c - structured logging: JSON/text lines, redaction, lws routing, access log.
 *
 * A line is assembled in per-thread buffers (no heap, no big stack frames) and
 * written with one write(2) under `lock`, which also guards the setup values
 * (component, format, fd). The minimum level is an atomic read lock-free by the
 * macros in the header.
 */
#include "ahg/log.h"

#include "ahg/err.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <openssl/rand.h>

#define LINE_CAP      ((size_t)AHG_LOG_LINE_MAX)
#define LINE_RESERVE  ((size_t)64)  /* room kept for the end markers of a line */
#define FIELD_RESERVE ((size_t)32)  /* room kept for the end marker of the fields */
#define MSG_MIN       ((size_t)256) /* bytes the message always gets, however big the fields */
#define KEY_MAX       ((size_t)128) /* longest key the free-text matchers consider */
#define REDACTED_LEN  (sizeof(AHG_LOG_REDACTED) - 1)
#define TRUNC_LEN     (sizeof(AHG_LOG_TRUNCATED) - 1)
#define DROPPED_JSON  ",\"truncated\":\"" AHG_LOG_TRUNCATED "\""
#define DROPPED_TEXT  " " AHG_LOG_TRUNCATED

/* ------------------------------------------------------------------ */
/* Process-wide settings                                                */
/* ------------------------------------------------------------------ */

atomic_int ahg__log_min_level = AHG_LOG_LVL_INFO;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char cfg_comp[AHG_LOG_COMPONENT_MAX] = "ahg";
static enum ahg_log_format cfg_fmt = AHG_LOG_FORMAT_JSON;
static int cfg_fd = 2;

/* Per-thread scratch: the formatted message, a redaction buffer, the rendered
 * fields and the final line. `busy` rejects nested use on the same thread. */
struct tbufs {
    bool busy;
    char msg[AHG_LOG_LINE_MAX];
    char red[AHG_LOG_LINE_MAX];
    char fields[AHG_LOG_LINE_MAX];
    char line[AHG_LOG_LINE_MAX];
};
static _Thread_local struct tbufs tb;

struct snap {
    char comp[AHG_LOG_COMPONENT_MAX];
    enum ahg_log_format fmt;
};

/* ------------------------------------------------------------------ */
/* ASCII helpers (locale independent)                                   */
/* ------------------------------------------------------------------ */

static char
lower(char c)
{
    static const char lo[] = "abcdefghijklmnopqrstuvwxyz";
    if (c >= 'A' && c <= 'Z')
        return lo[c - 'A'];
    return c;
}

static bool
is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool
is_alnum(char c)
{
    return is_alpha(c) || is_digit(c);
}

static bool
is_hex(char c)
{
    return is_digit(c) || (lower(c) >= 'a' && lower(c) <= 'f');
}

static bool
is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Characters of a query/form parameter name. */
static bool
is_keych(char c)
{
    return is_alnum(c) || c == '_' || c == '-';
}

/* base64url alphabet (JWT segments). */
static bool
is_b64url(char c)
{
    return is_alnum(c) || c == '_' || c == '-';
}

/* RFC 6750 token68 characters (without the trailing '=' padding). */
static bool
is_token68(char c)
{
    return is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
}

/* s[0..n) starts with the lowercase literal lit, ASCII case-insensitively. */
static bool
ci_prefix(const char *s, size_t n, const char *lit)
{
    size_t i = 0;
    for (; lit[i] != '\0'; i++) {
        if (i >= n || lower(s[i]) != lit[i])
            return false;
    }
    return true;
}

static bool
ci_equal(const char *a, const char *b)
{
    for (; *a != '\0' && *b != '\0'; a++, b++) {
        if (lower(*a) != lower(*b))
            return false;
    }
    return *a == *b;
}

static bool
ends_with(const char *s, size_t n, const char *suffix)
{
    size_t m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if s[0] starts none. */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xBF;
    size_t len;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0; /* no overlongs */
        if (c == 0xED)
            hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F; /* <= U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    }
    return len;
}

/* Length of s[0..len) without a trailing incomplete UTF-8 sequence. */
static size_t
utf8_trim(const char *s, size_t len)
{
    size_t i = len, cont = 0;
    unsigned char lead;
    size_t need;

    while (i > 0 && cont < 3 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) {
        i--;
        cont++;
    }
    if (i == 0)
        return len;
    lead = (unsigned char)s[i - 1];
    if (lead < 0xC0)
        return len;
    need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
    return need > cont + 1 ? i - 1 : len;
}

/* ------------------------------------------------------------------ */
/* Secret keys                                                          */
/* ------------------------------------------------------------------ */

static const char *const secret_keys[] = {
    "authorization",
    "proxy_authorization",
    "servicebusauthorization",
    "service_bus_authorization",
    "sb_hc_token",
    "token",
    "listener_token",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "x_azhexgate_apikey",
    "x_api_key",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "client_assertion",
    "key",
    "primary_key",
    "secondary_key",
    "primarykey",
    "secondarykey",
    "shared_access_key",
    "sharedaccesskey",
    "private_key",
    "cookie",
    "set_cookie",
    "sig",
    "signature",
    "sas_token",
    "connection_string",
    "connectionstring",
};

static const char *const secret_suffixes[] = {
    "_token", "_key", "_apikey", "_secret", "_password",
};

static bool
normalized_is_secret(const char *k, size_t n)
{
    for (size_t i = 0; i < sizeof(secret_keys) / sizeof(secret_keys[0]); i++) {
        if (strlen(secret_keys[i]) == n && memcmp(secret_keys[i], k, n) == 0)
            return true;
    }
    for (size_t i = 0; i < sizeof(secret_suffixes) / sizeof(secret_suffixes[0]); i++) {
        if (ends_with(k, n, secret_suffixes[i]))
            return true;
    }
    return false;
}

/* Secret test on key[0..n): lowercase with '-' as '_', then the camelCase split. */
static bool
key_is_secret_n(const char *key, size_t n)
{
    char flat[KEY_MAX + 1], camel[2 * KEY_MAX + 1];
    size_t fl = 0, cl = 0;

    if (n > KEY_MAX) { /* only the tail matters for the suffix rules */
        key += n - KEY_MAX;
        n = KEY_MAX;
    }
    for (size_t i = 0; i < n; i++) {
        char c = key[i];
        if (c == '-')
            c = '_';
        flat[fl++] = lower(c);
        if (i > 0 && c >= 'A' && c <= 'Z' &&
            ((key[i - 1] >= 'a' && key[i - 1] <= 'z') || is_digit(key[i - 1])))
            camel[cl++] = '_';
        camel[cl++] = lower(c);
    }
    return normalized_is_secret(flat, fl) || normalized_is_secret(camel, cl);
}

bool
ahg_log_key_is_secret(const char *key)
{
    if (key == NULL)
        return false;
    return key_is_secret_n(key, strlen(key));
}

/* Query/form parameter names whose value is secret (lowercase). */
static const char *const kv_secret_keys[] = {
    "sb-hc-token",
    "sig",
    "code",
    "api_key",
    "apikey",
    "api-key",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "client_assertion",
    "password",
    "passwd",
    "secret",
    "authorization",
    "x-azhexgate-apikey",
    "sharedaccesskey",
};

static const char *const kv_secret_suffixes[] = {
    "_token", "-token", "_secret", "-secret", "_password", "-password",
};

static bool
kv_key_is_secret(const char *k, size_t n)
{
    char low[KEY_MAX];

    if (n == 0 || n > KEY_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        low[i] = lower(k[i]);
    for (size_t i = 0; i < sizeof(kv_secret_keys) / sizeof(kv_secret_keys[0]); i++) {
        if (strlen(kv_secret_keys[i]) == n && memcmp(kv_secret_keys[i], low, n) == 0)
            return true;
    }
    for (size_t i = 0; i < sizeof(kv_secret_suffixes) / sizeof(kv_secret_suffixes[0]); i++) {
        if (ends_with(low, n, kv_secret_suffixes[i]))
            return true;
    }
    return false;
}

/* ------------------------------------------------------------------ */
/* Free-text matchers. Each looks at position i of s[0..n) and, on a    */
/* match, sets [*ks, *ke) to the non-empty secret span (ks >= i).       */
/* ------------------------------------------------------------------ */

static const char *const header_names[] = {
    "authorization:",
    "cookie:",
    "x-azhexgate-apikey:",
    "x-api-key:",
};

static bool
match_header(const char *s, size_t n, size_t i, size_t *ks, size_t *ke)
{
    for (size_t h = 0; h < sizeof(header_names) / sizeof(header_names[0]); h++) {
        size_t j;
        if (!ci_prefix(s + i, n - i, header_names[h]))
            continue;
        j = i + strlen(header_names[h]);
        while (j < n && (s[j] == ' ' || s[j] == '\t'))
            j++;
        *ks = j;
        while (j < n && s[j] != '\r' && s[j] != '\n')
            j++;
        *ke = j;
        return *ke > *ks;
    }
    return false;
}

static bool
match_bearer(const char *s, size_t n, size_t i, size_t *ks, size_t *ke)
{
    size_t j;

    if ((i > 0 && is_alnum(s[i - 1])) || !ci_prefix(s + i, n - i, "bearer"))
        return false;
    j = i + 6;
    if (j >= n || (s[j] != ' ' && s[j] != '\t'))
        return false;
    while (j < n && (s[j] == ' ' || s[j] == '\t'))
        j++;
    *ks = j;
    while (j < n && is_token68(s[j]))
        j++;
    if (j == *ks)
        return false;
    while (j < n && s[j] == '=')
        j++;
    *ke = j;
    return true;
}

static size_t
b64url_run(const char *s, size_t n, size_t j)
{
    while (j < n && is_b64url(s[j]))
        j++;
    return j;
}

static bool
match_jwt(const char *s, size_t n, size_t i, size_t *ks, size_t *ke)
{
    size_t j, k;

    if ((i > 0 && (is_b64url(s[i - 1]) || s[i - 1] == '.')) || n - i < 3 ||
        memcmp(s + i, "eyJ", 3) != 0)
        return false;
    j = b64url_run(s, n, i);
    if (j - i < 4 || j >= n || s[j] != '.')
        return false;
    k = b64url_run(s, n, j + 1);
    if (k == j + 1 || k >= n || s[k] != '.')
        return false;
    j = b64url_run(s, n, k + 1); /* signature; empty for alg "none" */
    while (j + 1 < n && s[j] == '.' && is_b64url(s[j + 1]))
        j = b64url_run(s, n, j + 1); /* JWE has five segments */
    *ks = i;
    *ke = j;
    return true;
}

/* JSON member "key": value, or its escaped form \"key\": \"value\". */
static bool
match_json_member(const char *s, size_t n, size_t i, size_t *ks, size_t *ke)
{
    size_t q, j, kstart, kend;

    if (s[i] == '"')
        q = 1;
    else if (s[i] == '\\' && i + 1 < n && s[i + 1] == '"')
        q = 2;
    else
        return false;
    kstart = j = i + q;
    while (j < n && s[j] != '"' && s[j] != '\\' && j - kstart <= KEY_MAX)
        j++;
    if (j >= n || j - kstart > KEY_MAX)
        return false;
    if (q == 1 ? s[j] != '"' : (s[j] != '\\' || j + 1 >= n || s[j + 1] != '"'))
        return false;
    kend = j;
    j += q;
    while (j < n && (s[j] == ' ' || s[j] == '\t'))
        j++;
    if (j >= n || s[j] != ':')
        return false;
    j++;
    while (j < n && (s[j] == ' ' || s[j] == '\t'))
        j++;
    if (j >= n || kend == kstart || !key_is_secret_n(s + kstart, kend - kstart))
        return false;

    if ((q == 1 && s[j] == '"') || (q == 2 && s[j] == '\\' && j + 1 < n && s[j + 1] == '"')) {
        bool esc = false;
        j += q;
        *ks = j;
        while (j < n) {
            char tok = s[j];
            size_t adv = 1;
            if (q == 2 && tok == '\\' && j + 1 < n) { /* undo the outer escaping */
                tok = s[j + 1];
                adv = 2;
            }
            if (esc) {
                esc = false;
            } else if (tok == '\\' && (q == 1 || adv == 2)) {
                esc = true;
            } else if (tok == '"') {
                break;
            }
            j += adv;
        }
        *ke = j < n ? j : n;
        return *ke > *ks;
    }
    if (s[j] == '{' || s[j] == '[' || s[j] == '"' || s[j] == '\\')
        return false;
    *ks = j;
    while (j < n && s[j] != ',' && s[j] != '}' && s[j] != ']' && s[j] != '\\' && !is_space(s[j]))
        j++;
    *ke = j;
    if ((j - *ks == 4 && (memcmp(s + *ks, "null", 4) == 0 || memcmp(s + *ks, "true", 4) == 0)) ||
        (j - *ks == 5 && memcmp(s + *ks, "false", 5) == 0))
        return false;
    return *ke > *ks;
}

/* Position i may start a parameter name: start of text, after a non-name
 * character, or right after a percent escape ("%26sig", "%2526sig"). */
static bool
kv_boundary(const char *s, size_t i)
{
    if (i == 0 || !is_keych(s[i - 1]))
        return true;
    if (i >= 3 && s[i - 3] == '%' && is_hex(s[i - 2]) && is_hex(s[i - 1]))
        return true;
    if (i >= 5 && s[i - 5] == '%' && s[i - 4] == '2' && s[i - 3] == '5' && is_hex(s[i - 2]) &&
        is_hex(s[i - 1]))
        return true;
    return false;
}

static bool
match_kv(const char *s, size_t n, size_t i, size_t *ks, size_t *ke)
{
    size_t j = i, level;
    bool semicolon;

    if (!is_keych(s[i]) || !kv_boundary(s, i))
        return false;
    while (j < n && is_keych(s[j]) && j - i <= KEY_MAX)
        j++;
    if (!kv_key_is_secret(s + i, j - i))
        return false;
    semicolon = (j - i) == 15 && ci_prefix(s + i, j - i, "sharedaccesskey");
    if (j < n && s[j] == '=') {
        level = 0;
        j += 1;
    } else if (ci_prefix(s + j, n - j, "%3d")) {
        level = 1;
        j += 3;
    } else if (ci_prefix(s + j, n - j, "%253d")) {
        level = 2;
        j += 5;
    } else {
        return false;
    }
    *ks = j;
    while (j < n) {
        char c = s[j];
        if (c == '&' || c == '"' || c == '\'' || is_space(c) || (semicolon && c == ';'))
            break;
        if (level == 1 && ci_prefix(s + j, n - j, "%26"))
            break;
        if (level == 2 && ci_prefix(s + j, n - j, "%2526"))
            break;
        j++;
    }
    *ke = j;
    return *ke > *ks;
}

static bool
find_secret(const char *s, size_t n, size_t i, size_t *ks, size_t *ke)
{
    return match_header(s, n, i, ks, ke) || match_bearer(s, n, i, ks, ke) ||
           match_jwt(s, n, i, ks, ke) || match_json_member(s, n, i, ks, ke) ||
           match_kv(s, n, i, ks, ke);
}

struct rout {
    char *buf;
    size_t len;
    size_t cap; /* bytes available for text (the NUL is extra) */
    bool trunc;
};

static void
rput(struct rout *o, const char *s, size_t n)
{
    size_t room = o->cap - o->len;
    if (n > room) {
        n = room;
        o->trunc = true;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

/* Redact in[0..n) into out (outsz >= 1). Returns the length written. */
static size_t
redact_buf(const char *in, size_t n, char *out, size_t outsz, bool *truncated)
{
    struct rout o = {out, 0, outsz - 1, false};
    size_t i = 0;

    while (i < n && !o.trunc) {
        size_t ks = 0, ke = 0;
        if (find_secret(in, n, i, &ks, &ke)) {
            rput(&o, in + i, ks - i);
            rput(&o, AHG_LOG_REDACTED, REDACTED_LEN);
            i = ke;
            continue;
        }
        rput(&o, in + i, 1);
        i++;
    }
    if (i < n)
        o.trunc = true;
    if (o.trunc)
        o.len = utf8_trim(out, o.len);
    out[o.len] = '\0';
    *truncated = o.trunc;
    return o.len;
}

size_t
ahg_log_redact(const char *in, char *out, size_t outsz)
{
    bool trunc;

    if (out == NULL || outsz == 0)
        return 0;
    if (in == NULL) {
        out[0] = '\0';
        return 0;
    }
    return redact_buf(in, strlen(in), out, outsz, &trunc);
}

/* ------------------------------------------------------------------ */
/* Bounded line writer                                                  */
/* ------------------------------------------------------------------ */

struct wr {
    char *buf;
    size_t len;
    size_t lim;  /* ordinary content stops here */
    size_t cap;  /* markers may use the room up to here */
    bool full;   /* ordinary content was refused */
    bool marked; /* a truncation marker was written */
};

/* Append n bytes entirely or not at all; a refusal makes the writer full. */
static bool
put(struct wr *w, const char *s, size_t n)
{
    if (w->full || w->len > w->lim || n > w->lim - w->len) {
        w->full = true;
        return false;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    return true;
}

static bool
puts_(struct wr *w, const char *s)
{
    return put(w, s, strlen(s));
}

/* Append into the reserve (end markers); clamped to the capacity. */
static void
put_force(struct wr *w, const char *s, size_t n)
{
    if (w->len >= w->cap)
        return;
    if (n > w->cap - w->len)
        n = w->cap - w->len;
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static const char replacement_char[] = "\xEF\xBF\xBD"; /* U+FFFD */

/* JSON string contents: quotes, backslash and controls escaped, valid UTF-8
 * kept, invalid bytes replaced by U+FFFD. Stops (false) when the writer fills. */
static bool
esc_json(struct wr *w, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < n) {
        unsigned char c = p[i];
        bool ok;
        size_t k = 1;
        if (c == '"') {
            ok = put(w, "\\\"", 2);
        } else if (c == '\\') {
            ok = put(w, "\\\\", 2);
        } else if (c < 0x20 || c == 0x7F) {
            char e[8];
            int m = snprintf(e, sizeof(e), "\\u%04x", (unsigned)c);
            ok = put(w, e, (size_t)m);
        } else if (c < 0x80) {
            ok = put(w, s + i, 1);
        } else if ((k = utf8_seq(p + i, n - i)) != 0) {
            ok = put(w, s + i, k);
        } else {
            k = 1;
            ok = put(w, replacement_char, 3);
        }
        if (!ok)
            return false;
        i += k;
    }
    return true;
}

/* Text output: controls as \n, \r, \t or \xNN so an event stays on one line;
 * inside quotes also \" and \\. Invalid UTF-8 bytes become U+FFFD. */
static bool
esc_text(struct wr *w, const char *s, size_t n, bool quoted)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < n) {
        unsigned char c = p[i];
        bool ok;
        size_t k = 1;
        if (quoted && (c == '"' || c == '\\')) {
            char e[2] = {'\\', (char)c};
            ok = put(w, e, 2);
        } else if (c == '\n') {
            ok = put(w, "\\n", 2);
        } else if (c == '\r') {
            ok = put(w, "\\r", 2);
        } else if (c == '\t') {
            ok = put(w, "\\t", 2);
        } else if (c < 0x20 || c == 0x7F) {
            char e[8];
            int m = snprintf(e, sizeof(e), "\\x%02x", (unsigned)c);
            ok = put(w, e, (size_t)m);
        } else if (c < 0x80) {
            ok = put(w, s + i, 1);
        } else if ((k = utf8_seq(p + i, n - i)) != 0) {
            ok = put(w, s + i, k);
        } else {
            k = 1;
            ok = put(w, replacement_char, 3);
        }
        if (!ok)
            return false;
        i += k;
    }
    return true;
}

static bool
text_needs_quotes(const char *s, size_t n)
{
    if (n == 0)
        return true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7F || c == '"' || c == '=' || c == '\\')
            return true;
    }
    return false;
}

/* Text keys: anything that would break key=value parsing becomes '_'. */
static bool
put_text_key(struct wr *w, const char *k)
{
    for (; *k != '\0'; k++) {
        unsigned char c = (unsigned char)*k;
        bool bad = c <= 0x20 || c == 0x7F || c == '"' || c == '=' || c == '\\';
        if (!put(w, bad ? "_" : k, 1))
            return false;
    }
    return true;
}

enum vmode {
    V_JSON,        /* JSON string, with quotes */
    V_TEXT_AUTO,   /* text, quoted only when needed */
    V_TEXT_QUOTED, /* text, always quoted */
    V_TEXT_BARE,   /* text, never quoted */
    V_TEXT_INNER,  /* text escaped as if quoted, quotes written by the caller */
};

static void
put_marker(struct wr *w)
{
    put_force(w, AHG_LOG_TRUNCATED, TRUNC_LEN);
    w->full = true;
    w->marked = true;
}

/*
 * Write the redacted, escaped value s. Returns false when the writer is full:
 * either nothing at all was written, or the value was cut and the truncation
 * marker (plus the closing quote) was written into the reserve.
 */
static bool
put_value(struct wr *w, enum vmode mode, const char *s)
{
    bool rtrunc = false, ok, quoted;
    size_t n = redact_buf(s, strlen(s), tb.red, sizeof(tb.red), &rtrunc);

    quoted = mode == V_JSON || mode == V_TEXT_QUOTED ||
             (mode == V_TEXT_AUTO && text_needs_quotes(tb.red, n));
    if (quoted && !put(w, "\"", 1))
        return false;
    if (mode == V_JSON)
        ok = esc_json(w, tb.red, n);
    else
        ok = esc_text(w, tb.red, n, quoted || mode == V_TEXT_INNER);
    if (!ok || rtrunc)
        put_marker(w);
    if (quoted)
        put_force(w, "\"", 1); /* the reserve always has room for one closing quote */
    return ok && !rtrunc;
}

/*
 * Render one field (key, then the value: null, a number as is, [REDACTED] for a
 * secret key, else the redacted string). If even the start of the field does
 * not fit, the field is rolled back and the writer is left full and unmarked, so
 * end_fields() adds a marker. Returns false when nothing more fits.
 */
static bool
render_field(struct wr *w, enum ahg_log_format fmt, const char *key, const char *val, bool numeric)
{
    size_t mark = w->len, before;
    bool json = fmt == AHG_LOG_FORMAT_JSON;
    bool ok;

    if (json)
        ok = put(w, ",\"", 2) && esc_json(w, key, strlen(key)) && put(w, "\":", 2);
    else
        ok = put(w, " ", 1) && put_text_key(w, key) && put(w, "=", 1);
    if (ok && val == NULL)
        ok = puts_(w, "null");
    else if (ok && numeric)
        ok = puts_(w, val);
    else if (ok && ahg_log_key_is_secret(key))
        ok = puts_(w, json ? "\"" AHG_LOG_REDACTED "\"" : AHG_LOG_REDACTED);
    else if (ok) {
        before = w->len;
        if (put_value(w, json ? V_JSON : V_TEXT_AUTO, val))
            return true;
        if (w->len > before)
            return false; /* cut with a marker */
        ok = false;
    }
    if (ok)
        return true;
    w->len = mark;
    w->full = true;
    return false;
}

/* ------------------------------------------------------------------ */
/* Line assembly                                                        */
/* ------------------------------------------------------------------ */

static void
snapshot(struct snap *s)
{
    pthread_mutex_lock(&lock);
    memcpy(s->comp, cfg_comp, sizeof(s->comp));
    s->fmt = cfg_fmt;
    pthread_mutex_unlock(&lock);
}

static void
write_line(const char *buf, size_t len)
{
    size_t off = 0;

    pthread_mutex_lock(&lock);
    while (off < len) {
        ssize_t w = write(cfg_fd, buf + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* nowhere to report it; the line is lost */
        off += (size_t)w;
    }
    pthread_mutex_unlock(&lock);
}

#define TS_BUF 96 /* room for any int values, so the compiler sees no truncation */

static void
format_ts(char out[TS_BUF])
{
    struct timespec ts;
    struct tm tm;

    if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || gmtime_r(&ts.tv_sec, &tm) == NULL) {
        memcpy(out, "1970-01-01T00:00:00.000Z", 25);
        return;
    }
    (void)snprintf(out, TS_BUF, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                   tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   (int)(ts.tv_nsec / 1000000));
}

static const char *
text_level(enum ahg_log_level lvl)
{
    switch (lvl) {
    case AHG_LOG_LVL_DEBUG:
        return "DEBUG";
    case AHG_LOG_LVL_INFO:
        return "INFO ";
    case AHG_LOG_LVL_WARN:
        return "WARN ";
    case AHG_LOG_LVL_ERROR:
        return "ERROR";
    }
    return "?????";
}

/* ts, level, comp (and type) of a line; never fails with the sizes used. */
static void
begin_line(struct wr *w, enum ahg_log_format fmt, enum ahg_log_level lvl, const char *comp,
           size_t complen, const char *type)
{
    char ts[TS_BUF];

    format_ts(ts);
    if (fmt == AHG_LOG_FORMAT_JSON) {
        puts_(w, "{\"ts\":\"");
        puts_(w, ts);
        puts_(w, "\",\"level\":\"");
        puts_(w, ahg_log_level_name(lvl));
        puts_(w, "\",\"comp\":\"");
        esc_json(w, comp, complen);
        puts_(w, "\"");
        if (type != NULL) {
            puts_(w, ",\"type\":\"");
            puts_(w, type);
            puts_(w, "\"");
        }
    } else {
        puts_(w, ts);
        puts_(w, " ");
        puts_(w, text_level(lvl));
        puts_(w, " ");
        esc_text(w, comp, complen, false);
        puts_(w, ":");
    }
}

/* Start the fields buffer for a line whose header is hdr bytes long. */
static struct wr
fields_writer(size_t hdr)
{
    size_t lim = LINE_CAP - LINE_RESERVE - FIELD_RESERVE - MSG_MIN - hdr;
    struct wr fw = {tb.fields, 0, lim, lim + FIELD_RESERVE, false, false};
    return fw;
}

/* Message (redacted, escaped, bounded to what the fields left), then the fields,
 * then the end of the line; then write it. */
static void
finish_line(struct wr *line, enum ahg_log_format fmt, const char *msg, size_t mlen, bool mtrunc,
            const struct wr *fw)
{
    bool rtrunc = false, ok;
    size_t rlen = redact_buf(msg, mlen, tb.red, sizeof(tb.red), &rtrunc);

    line->lim = LINE_CAP - LINE_RESERVE - fw->len;
    if (fmt == AHG_LOG_FORMAT_JSON) {
        ok = puts_(line, ",\"msg\":\"") && esc_json(line, tb.red, rlen);
    } else {
        ok = (rlen == 0 && !mtrunc) || (puts_(line, " ") && esc_text(line, tb.red, rlen, false));
    }
    if (!ok || mtrunc || rtrunc)
        put_force(line, AHG_LOG_TRUNCATED, TRUNC_LEN);
    if (fmt == AHG_LOG_FORMAT_JSON)
        put_force(line, "\"", 1);
    put_force(line, fw->buf, fw->len);
    if (fmt == AHG_LOG_FORMAT_JSON)
        put_force(line, "}\n", 2);
    else
        put_force(line, "\n", 1);
    if (line->buf[line->len - 1] != '\n')
        line->buf[line->len - 1] = '\n'; /* cannot happen with the reserves above */
    write_line(line->buf, line->len);
}

/* A field left out entirely still leaves a trace of the truncation. */
static void
end_fields(struct wr *fw, enum ahg_log_format fmt)
{
    if (!fw->full || fw->marked)
        return;
    if (fmt == AHG_LOG_FORMAT_JSON)
        put_force(fw, DROPPED_JSON, sizeof(DROPPED_JSON) - 1);
    else
        put_force(fw, DROPPED_TEXT, sizeof(DROPPED_TEXT) - 1);
    fw->marked = true;
}

static void
emit_core(enum ahg_log_level lvl, const struct ahg_log_field *fields, const char *msg, size_t mlen,
          bool mtrunc)
{
    struct snap s;
    struct wr line = {tb.line, 0, LINE_CAP - LINE_RESERVE, LINE_CAP, false, false};
    struct wr fw;
    char comp_buf[AHG_LOG_COMPONENT_MAX];
    const char *comp;
    size_t complen;

    snapshot(&s);
    comp = s.comp;
    complen = strlen(s.comp);
    for (const struct ahg_log_field *f = fields; f != NULL && f->key != NULL; f++) {
        if (strcmp(f->key, "comp") == 0 && f->value != NULL) {
            bool cut; /* a component is a value like any other: redact it */
            complen = redact_buf(f->value, strlen(f->value), comp_buf, sizeof(comp_buf), &cut);
            comp = comp_buf;
        }
    }
    begin_line(&line, s.fmt, lvl, comp, complen, NULL);
    fw = fields_writer(line.len);
    for (const struct ahg_log_field *f = fields; f != NULL && f->key != NULL; f++) {
        char renamed[16];
        const char *key = f->key;
        if (strcmp(key, "comp") == 0)
            continue;
        if (strcmp(key, "ts") == 0 || strcmp(key, "level") == 0 || strcmp(key, "msg") == 0) {
            (void)snprintf(renamed, sizeof(renamed), "x_%s", key);
            key = renamed;
        }
        if (!render_field(&fw, s.fmt, key, f->value, false))
            break;
    }
    end_fields(&fw, s.fmt);
    finish_line(&line, s.fmt, msg, mlen, mtrunc, &fw);
}

/* ------------------------------------------------------------------ */
/* Public API                                                           */
/* ------------------------------------------------------------------ */

void
ahg_log_setup(const char *component, enum ahg_log_format fmt, enum ahg_log_level min_level, int fd)
{
    size_t n;

    if (component == NULL || component[0] == '\0')
        component = "ahg";
    n = strlen(component);
    if (n > AHG_LOG_COMPONENT_MAX - 1)
        n = utf8_trim(component, AHG_LOG_COMPONENT_MAX - 1);
    if (fmt != AHG_LOG_FORMAT_TEXT && fmt != AHG_LOG_FORMAT_JSON)
        fmt = AHG_LOG_FORMAT_JSON;
    if ((int)min_level < AHG_LOG_LVL_DEBUG || (int)min_level > AHG_LOG_LVL_ERROR)
        min_level = AHG_LOG_LVL_INFO;

    pthread_mutex_lock(&lock);
    memcpy(cfg_comp, component, n);
    cfg_comp[n] = '\0';
    cfg_fmt = fmt;
    cfg_fd = fd >= 0 ? fd : 2;
    pthread_mutex_unlock(&lock);
    atomic_store_explicit(&ahg__log_min_level, (int)min_level, memory_order_relaxed);
}

int
ahg_log_level_parse(const char *s, enum ahg_log_level *out)
{
    static const struct {
        const char *name;
        enum ahg_log_level lvl;
    } names[] = {
        {"debug", AHG_LOG_LVL_DEBUG},  {"info", AHG_LOG_LVL_INFO},   {"warn", AHG_LOG_LVL_WARN},
        {"warning", AHG_LOG_LVL_WARN}, {"error", AHG_LOG_LVL_ERROR},
    };

    if (s == NULL || out == NULL)
        return AHG_EINVAL;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (ci_equal(s, names[i].name)) {
            *out = names[i].lvl;
            return AHG_OK;
        }
    }
    return AHG_EINVAL;
}

int
ahg_log_format_parse(const char *s, enum ahg_log_format *out)
{
    if (s == NULL || out == NULL)
        return AHG_EINVAL;
    if (ci_equal(s, "json")) {
        *out = AHG_LOG_FORMAT_JSON;
        return AHG_OK;
    }
    if (ci_equal(s, "text")) {
        *out = AHG_LOG_FORMAT_TEXT;
        return AHG_OK;
    }
    return AHG_EINVAL;
}

const char *
ahg_log_level_name(enum ahg_log_level lvl)
{
    switch (lvl) {
    case AHG_LOG_LVL_DEBUG:
        return "debug";
    case AHG_LOG_LVL_INFO:
        return "info";
    case AHG_LOG_LVL_WARN:
        return "warn";
    case AHG_LOG_LVL_ERROR:
        return "error";
    }
    return "unknown";
}

void
ahg_log_vemit(enum ahg_log_level lvl, const struct ahg_log_field *fields, const char *fmt,
              va_list ap)
{
    int saved_errno = errno;
    size_t mlen = 0;
    bool mtrunc = false;

    if (!ahg_log_enabled(lvl) || tb.busy)
        return;
    tb.busy = true;
    tb.msg[0] = '\0';
    if (fmt != NULL) {
        int n = vsnprintf(tb.msg, sizeof(tb.msg), fmt, ap);
        if (n < 0) {
            tb.msg[0] = '\0';
        } else if ((size_t)n >= sizeof(tb.msg)) {
            mlen = utf8_trim(tb.msg, sizeof(tb.msg) - 1);
            mtrunc = true;
        } else {
            mlen = (size_t)n;
        }
    }
    emit_core(lvl, fields, tb.msg, mlen, mtrunc);
    tb.busy = false;
    errno = saved_errno;
}

void
ahg_log_emit(enum ahg_log_level lvl, const struct ahg_log_field *fields, const char *fmt, ...)
{
    va_list ap;

    if (!ahg_log_enabled(lvl))
        return;
    va_start(ap, fmt);
    ahg_log_vemit(lvl, fields, fmt, ap);
    va_end(ap);
}

/* lws 4.1 hands its sink the bare message; other builds prefix a timestamp
 * ("[2026/11/25 02:07:40:1234] N: " or "[1764036460:1234] N: "). */
static const char *
skip_lws_prefix(const char *p)
{
    const char *q = p + 1;

    if (*p != '[')
        return p;
    while (is_digit(*q) || *q == '/' || *q == ':' || *q == ' ')
        q++;
    if (q == p + 1 || q[0] != ']' || q[1] != ' ' || !(q[2] >= 'A' && q[2] <= 'Z') || q[3] != ':')
        return p;
    q += 4;
    while (*q == ' ')
        q++;
    return q;
}

void
ahg_log_lws_emit(int lws_level, const char *line)
{
    static const struct ahg_log_field lws_fields[] = {{"comp", "lws"}, {NULL, NULL}};
    enum ahg_log_level lvl;
    const char *p;
    size_t n;
    int saved_errno = errno;

    if (line == NULL)
        return;
    if (lws_level & LLL_ERR)
        lvl = AHG_LOG_LVL_ERROR;
    else if (lws_level & LLL_WARN)
        lvl = AHG_LOG_LVL_WARN;
    else if (lws_level & LLL_NOTICE)
        lvl = AHG_LOG_LVL_INFO;
    else
        lvl = AHG_LOG_LVL_DEBUG;
    if (!ahg_log_enabled(lvl) || tb.busy)
        return;
    p = skip_lws_prefix(line);
    n = strlen(p);
    while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r'))
        n--;
    if (n == 0)
        return;
    tb.busy = true;
    emit_core(lvl, lws_fields, p, n, false);
    tb.busy = false;
    errno = saved_errno;
}

/* Text access line: access <peer> "<method> <target>" <status> in=<n> out=<n> <ms>ms
 * req_id=<id> tunnel_id=<id> ua="<agent>" */
static void
render_access_text(struct wr *fw, const struct ahg_log_access_rec *rec, const char *status,
                   const char *bin, const char *bout, const char *dur)
{
    if (put(fw, " ", 1) && put_value(fw, V_TEXT_BARE, rec->peer ? rec->peer : "-") &&
        put(fw, " \"", 2) && put_value(fw, V_TEXT_INNER, rec->method ? rec->method : "-") &&
        put(fw, " ", 1) && put_value(fw, V_TEXT_INNER, rec->target ? rec->target : "-") &&
        put(fw, "\" ", 2) && puts_(fw, status) && puts_(fw, " in=") && puts_(fw, bin) &&
        puts_(fw, " out=") && puts_(fw, bout) && puts_(fw, " ") && puts_(fw, dur) &&
        puts_(fw, "ms") &&
        render_field(fw, AHG_LOG_FORMAT_TEXT, "req_id", rec->req_id ? rec->req_id : "-", false) &&
        render_field(fw, AHG_LOG_FORMAT_TEXT, "tunnel_id", rec->tunnel_id ? rec->tunnel_id : "-",
                     false) &&
        put(fw, " ua=", 4))
        put_value(fw, V_TEXT_QUOTED, rec->user_agent ? rec->user_agent : "-");
}

void
ahg_log_access(const struct ahg_log_access_rec *rec)
{
    struct snap s;
    struct wr line = {tb.line, 0, LINE_CAP - LINE_RESERVE, LINE_CAP, false, false};
    struct wr fw;
    char status[16], bin[24], bout[24], dur[40];
    double d;
    int saved_errno = errno;

    if (rec == NULL || tb.busy)
        return;
    tb.busy = true;
    d = rec->duration_ms;
    if (!(d >= 0.0))
        d = 0.0; /* negative or NaN */
    if (d > 1e15)
        d = 1e15;
    (void)snprintf(status, sizeof(status), "%d", rec->status);
    (void)snprintf(bin, sizeof(bin), "%llu", (unsigned long long)rec->bytes_in);
    (void)snprintf(bout, sizeof(bout), "%llu", (unsigned long long)rec->bytes_out);
    (void)snprintf(dur, sizeof(dur), "%.3f", d);

    snapshot(&s);
    begin_line(&line, s.fmt, AHG_LOG_LVL_INFO, s.comp, strlen(s.comp),
               s.fmt == AHG_LOG_FORMAT_JSON ? "access" : NULL);
    fw = fields_writer(line.len);
    if (s.fmt == AHG_LOG_FORMAT_JSON) {
        const struct {
            const char *key;
            const char *val;
            bool numeric;
        } f[] = {
            {"req_id", rec->req_id, false}, {"tunnel_id", rec->tunnel_id, false},
            {"peer", rec->peer, false},     {"method", rec->method, false},
            {"target", rec->target, false}, {"status", status, true},
            {"bytes_in", bin, true},        {"bytes_out", bout, true},
            {"duration_ms", dur, true},     {"user_agent", rec->user_agent, false},
        };
        for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
            if (!render_field(&fw, s.fmt, f[i].key, f[i].val, f[i].numeric))
                break;
        }
    } else {
        render_access_text(&fw, rec, status, bin, bout, dur);
    }
    end_fields(&fw, s.fmt);
    finish_line(&line, s.fmt, "access", 6, false, &fw);
    tb.busy = false;
    errno = saved_errno;
}

void
ahg_log_new_request_id(char out[AHG_LOG_REQUEST_ID_LEN])
{
    static const char hex[] = "0123456789abcdef";
    static atomic_uint_fast64_t counter;
    /* one RAND_bytes call per 32 ids (it costs ~1 µs; this runs once per request) */
    static _Thread_local unsigned char pool[256];
    static _Thread_local size_t used = sizeof pool;
    unsigned char raw[8];

    if (used + sizeof(raw) <= sizeof pool || RAND_bytes(pool, (int)sizeof pool) == 1) {
        if (used + sizeof(raw) > sizeof pool)
            used = 0;
        memcpy(raw, pool + used, sizeof(raw));
        used += sizeof(raw);
    } else {
        struct timespec ts;
        uint64_t v = atomic_fetch_add(&counter, 1) * UINT64_C(0x9E3779B97F4A7C15);
        if (clock_gettime(CLOCK_MONOTONIC, &ts) == 0)
            v ^= (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
        v ^= (uint64_t)getpid() << 40;
        for (size_t i = 0; i < sizeof(raw); i++)
            raw[i] = (unsigned char)(v >> (8 * i));
    }
    for (size_t i = 0; i < sizeof(raw); i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 0x0F];
    }
    out[AHG_LOG_REQUEST_ID_LEN - 1] = '\0';
}
