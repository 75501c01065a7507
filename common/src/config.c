/*
 * config.c - option table driven configuration: defaults < YAML file < environment < flags.
 * See ahg/config.h for the contract. No global mutable state; all parsing is bounded.
 */
#include "ahg/config.h"

#include "ahg/err.h"
#include "ahg/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#ifndef AHG_VERSION
#define AHG_VERSION "0.0.0"
#endif

#if defined(__GNUC__)
#define ATTR_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define ATTR_PRINTF(a, b)
#endif

/* POSIX: the application declares environ itself. */
extern char **environ;

#define DERIVED_MAX  (AHG_CONFIG_MAX_NAME + 32u) /* room for prefix and "_FILE"/"-file" */
#define YAML_DEPTH   16                          /* nesting limit of YAML mappings */
#define SHOWN_MAX    ((size_t)64)                /* bytes of a bad value echoed in errors */
#define SHOWN_BUF    ((size_t)64 * 4 + 8)        /* room for SHOWN_MAX escaped bytes */
#define MSG_MAX      512                         /* one error message fragment */
#define WHERE_MAX    4200                        /* "path:line" of a YAML value */
#define BUILTIN_NONE 0

struct value {
    bool set;
    enum ahg_opt_source src;
    char *where; /* "--port", "AZHEXGATE_PORT", "cfg.yaml:7"; NULL for defaults */
    char *text;  /* scalar text as given; NULL for LIST */
    long long num;
    bool b;
    char **items; /* LIST: NULL-terminated */
    size_t nitems;
};

struct ahg_config {
    const struct ahg_config_spec *spec;
    enum ahg_config_action action;
    char **flags; /* derived long flag per option, "" if none */
    char **envs;  /* derived environment variable per option, "" if none */
    struct value *vals;
    char *file; /* config file read, or NULL */
    const char *file_origin;
    char **pos; /* NULL-terminated */
    size_t npos;
};

/* What the command line said about one option (pointers borrow argv or literals). */
struct flagval {
    const char *val;  /* last scalar value */
    const char *file; /* last <flag>-file path (secrets) */
    const char **list;
    size_t nlist;
};

struct loader {
    const struct ahg_config_spec *spec;
    struct ahg_config *cfg;
    char *const *envp;
    char *err;
    size_t errlen;
};

static const char *const empty_list[] = {NULL};

static const char *const builtin_flags[] = {"config", "print-config", "check-config",
                                            "help",   "version",      "help-markdown"};

/* ---------------------------------------------------------------- helpers */

static void seterr(char *err, size_t errlen, const char *fmt, ...) ATTR_PRINTF(3, 4);

static void
seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    (void)vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int lfail(struct loader *ld, int rc, const char *fmt, ...) ATTR_PRINTF(3, 4);

static int
lfail(struct loader *ld, int rc, const char *fmt, ...)
{
    va_list ap;

    if (!ld->err || ld->errlen == 0)
        return rc;
    va_start(ap, fmt);
    (void)vsnprintf(ld->err, ld->errlen, fmt, ap);
    va_end(ap);
    return rc;
}

static bool
is_lower(char c)
{
    return c >= 'a' && c <= 'z';
}

static bool
is_upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static char
to_lower(char c)
{
    if (is_upper(c))
        return (char)(c - 'A' + 'a');
    return c;
}

static bool
str_ieq(const char *a, const char *b)
{
    while (*a && *b) {
        if (to_lower(*a) != to_lower(*b))
            return false;
        a++;
        b++;
    }
    return *a == *b;
}

static bool
has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n > m && memcmp(s + n - m, suffix, m) == 0;
}

static void
wipe(char *s)
{
    volatile char *p = s;

    if (!s)
        return;
    while (*p)
        *p++ = '\0';
}

static char *
concat(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);

    if (!s)
        return NULL;
    memcpy(s, a, la);
    memcpy(s + la, b, lb);
    s[la + lb] = '\0';
    return s;
}

/* Copies s into buf for an error message: at most SHOWN_MAX bytes, control bytes escaped. */
static void
shown(char *buf, size_t n, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, i;

    for (i = 0; s[i] && o + 8 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i >= SHOWN_MAX) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (c < 0x20 || c == 0x7f || c == '\'') {
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[c >> 4];
            buf[o++] = hex[c & 15];
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o] = '\0';
}

static void
strerr(int e, char *buf, size_t n)
{
    if (strerror_r(e, buf, n) != 0)
        (void)snprintf(buf, n, "error %d", e);
}

/* Reads a whole file of at most max bytes into a NUL-terminated heap buffer. Returns 0, or
 * an errno value, EFBIG if larger than max, EILSEQ if it contains a NUL byte (nul_ok false). */
static int
read_file(const char *path, size_t max, bool nul_ok, char **out, size_t *outlen)
{
    char *buf;
    size_t len = 0;
    int fd, e = 0;

    *out = NULL;
    *outlen = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    /* Sized from fstat (pipes and /proc report 0: start small) and grown up to max + 1, so a
     * small file costs a small buffer, not max. */
    struct stat st;
    size_t cap = 4096;
    if (fstat(fd, &st) == 0 && st.st_size > 0)
        cap = (uintmax_t)st.st_size < max ? (size_t)st.st_size + 1 : max + 1;
    if (cap > max + 1)
        cap = max + 1;
    buf = malloc(cap + 1);
    if (!buf) {
        (void)close(fd);
        return ENOMEM;
    }
    for (;;) {
        if (len == cap) {
            /* grow by copying (not realloc) so no stray copy of a secret is left unwiped */
            size_t ncap = cap > (max + 1) / 2 ? max + 1 : cap * 2;
            char *nb = malloc(ncap + 1);
            if (!nb) {
                e = ENOMEM;
                break;
            }
            memcpy(nb, buf, len);
            memset(buf, 0, len);
            free(buf);
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            e = errno;
            break;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > max) {
            e = EFBIG;
            break;
        }
    }
    (void)close(fd);
    if (!e && !nul_ok && memchr(buf, '\0', len))
        e = EILSEQ;
    if (e) {
        memset(buf, 0, len);
        free(buf);
        return e;
    }
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    return 0;
}

/* ------------------------------------------------------------- derivation */

static void
derive_flag(const struct ahg_opt_def *o, char *buf, size_t n)
{
    size_t i;

    if (o->flag) {
        (void)snprintf(buf, n, "%s", o->flag);
        return;
    }
    for (i = 0; o->name[i] && i + 1 < n; i++) {
        char c = o->name[i];
        if (c == '.' || c == '_')
            c = '-';
        buf[i] = c;
    }
    buf[i] = '\0';
}

static void
derive_env(const struct ahg_opt_def *o, char *buf, size_t n)
{
    size_t i, p = strlen(AHG_CONFIG_ENV_PREFIX);

    if (o->env) {
        (void)snprintf(buf, n, "%s", o->env);
        return;
    }
    (void)snprintf(buf, n, "%s", AHG_CONFIG_ENV_PREFIX);
    for (i = 0; o->name[i] && p + i + 1 < n; i++) {
        char c = o->name[i];
        if (c == '.' || c == '-')
            c = '_';
        else if (is_lower(c))
            c = (char)(c - 'a' + 'A');
        buf[p + i] = c;
    }
    buf[p + i] = '\0';
}

static const char *
default_metavar(const struct ahg_opt_def *o)
{
    if (o->metavar)
        return o->metavar;
    switch (o->type) {
    case AHG_OPT_INT:
        return "N";
    case AHG_OPT_DURATION:
        return "DURATION";
    case AHG_OPT_SIZE:
        return "SIZE";
    case AHG_OPT_ENUM:
        return o->choices ? o->choices : "VALUE";
    case AHG_OPT_BOOL:
        return "BOOL";
    case AHG_OPT_STRING:
    case AHG_OPT_LIST:
        break;
    }
    return "VALUE";
}

/* ---------------------------------------------------------- value parsing */

/* Unsigned decimal digits at *s (at least one); advances *s. False on overflow. */
static bool
parse_digits(const char **s, unsigned long long *out)
{
    const char *p = *s;
    unsigned long long v = 0;

    if (!is_digit(*p))
        return false;
    for (; is_digit(*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (ULLONG_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *s = p;
    *out = v;
    return true;
}

static bool
parse_int(const char *s, long long *out)
{
    bool neg = false;
    unsigned long long v;

    if (*s == '+' || *s == '-')
        neg = *s++ == '-';
    if (!parse_digits(&s, &v) || *s)
        return false;
    if (neg) {
        if (v > (unsigned long long)LLONG_MAX + 1)
            return false;
        *out = v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v;
    } else {
        if (v > (unsigned long long)LLONG_MAX)
            return false;
        *out = (long long)v;
    }
    return true;
}

struct unit {
    const char *suffix;
    unsigned long long mul;
};

static const struct unit duration_units[] = {
    {"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
};

static const struct unit size_units[] = {
    {"", 1},
    {"b", 1},
    {"k", 1ull << 10},
    {"kb", 1ull << 10},
    {"kib", 1ull << 10},
    {"m", 1ull << 20},
    {"mb", 1ull << 20},
    {"mib", 1ull << 20},
    {"g", 1ull << 30},
    {"gb", 1ull << 30},
    {"gib", 1ull << 30},
    {"t", 1ull << 40},
    {"tb", 1ull << 40},
    {"tib", 1ull << 40},
};

static bool
parse_unit(const char *s, const struct unit *units, size_t nunits, bool nocase, long long *out)
{
    unsigned long long v;
    size_t i;

    if (!parse_digits(&s, &v))
        return false;
    for (i = 0; i < nunits; i++) {
        if (nocase ? str_ieq(s, units[i].suffix) : strcmp(s, units[i].suffix) == 0)
            break;
    }
    if (i == nunits || v > (unsigned long long)LLONG_MAX / units[i].mul)
        return false;
    *out = (long long)(v * units[i].mul);
    return true;
}

static bool
parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    size_t i;

    for (i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (str_ieq(s, yes[i])) {
            *out = true;
            return true;
        }
        if (str_ieq(s, no[i])) {
            *out = false;
            return true;
        }
    }
    return false;
}

static bool
enum_index(const char *choices, const char *s, long long *out)
{
    size_t len = strlen(s);
    long long idx = 0;
    const char *p = choices;

    for (;;) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && memcmp(p, s, n) == 0) {
            *out = idx;
            return true;
        }
        if (!bar)
            return false;
        p = bar + 1;
        idx++;
    }
}

/* Formats a quantity with the largest unit that divides it exactly. */
static void
fmt_units(char *buf, size_t n, long long v, const struct unit *units, size_t nunits,
          const char *const *names)
{
    size_t i, best = 0;

    for (i = 0; i < nunits; i++) {
        long long mul = (long long)units[i].mul;
        if (v != 0 && v % mul == 0 && mul > (long long)units[best].mul)
            best = i;
    }
    (void)snprintf(buf, n, "%lld%s", v / (long long)units[best].mul, names[best]);
}

static void
fmt_duration(char *buf, size_t n, long long ms)
{
    static const struct unit u[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    static const char *const names[] = {"ms", "s", "m", "h", "d"};
    fmt_units(buf, n, ms, u, 5, names);
}

static void
fmt_size(char *buf, size_t n, long long bytes)
{
    static const struct unit u[] = {{"", 1},
                                    {"KiB", 1ull << 10},
                                    {"MiB", 1ull << 20},
                                    {"GiB", 1ull << 30},
                                    {"TiB", 1ull << 40}};
    static const char *const names[] = {"", "KiB", "MiB", "GiB", "TiB"};
    fmt_units(buf, n, bytes, u, 5, names);
}

static bool
has_bounds(const struct ahg_opt_def *o)
{
    return (o->type == AHG_OPT_INT || o->type == AHG_OPT_DURATION || o->type == AHG_OPT_SIZE) &&
           o->min < o->max;
}

/* "an integer in 1..65535", "one of json|text", ... */
static void
describe(const struct ahg_opt_def *o, char *buf, size_t n)
{
    char lo[40], hi[40];

    lo[0] = hi[0] = '\0';
    if (has_bounds(o)) {
        if (o->type == AHG_OPT_DURATION) {
            fmt_duration(lo, sizeof lo, o->min);
            fmt_duration(hi, sizeof hi, o->max);
        } else if (o->type == AHG_OPT_SIZE) {
            fmt_size(lo, sizeof lo, o->min);
            fmt_size(hi, sizeof hi, o->max);
        } else {
            (void)snprintf(lo, sizeof lo, "%lld", o->min);
            (void)snprintf(hi, sizeof hi, "%lld", o->max);
        }
    }
    switch (o->type) {
    case AHG_OPT_INT:
        (void)snprintf(buf, n, "an integer%s%s%s%s", lo[0] ? " in " : "", lo, lo[0] ? ".." : "",
                       hi);
        break;
    case AHG_OPT_DURATION:
        (void)snprintf(buf, n, "a duration (e.g. 250ms, 30s, 5m, 1h, 1d)%s%s%s%s",
                       lo[0] ? " in " : "", lo, lo[0] ? ".." : "", hi);
        break;
    case AHG_OPT_SIZE:
        (void)snprintf(buf, n, "a size (e.g. 512, 64k, 1MiB, 2g)%s%s%s%s", lo[0] ? " in " : "", lo,
                       lo[0] ? ".." : "", hi);
        break;
    case AHG_OPT_BOOL:
        (void)snprintf(buf, n, "a boolean (true/false, yes/no, on/off, 1/0)");
        break;
    case AHG_OPT_ENUM:
        (void)snprintf(buf, n, "one of %s", o->choices ? o->choices : "");
        break;
    case AHG_OPT_STRING:
    case AHG_OPT_LIST:
        (void)snprintf(buf, n, "a string");
        break;
    }
}

/* Parses and validates one textual value of o. On failure writes a reason (never the value
 * of a secret) into msg and returns AHG_ECONFIG. */
static int
check_value(const struct ahg_opt_def *o, const char *s, long long *num, bool *bv, char *msg,
            size_t msglen)
{
    bool ok = true, b = false;
    long long v = 0;

    if (strlen(s) > AHG_CONFIG_MAX_VALUE) {
        seterr(msg, msglen, "value longer than %zu bytes", AHG_CONFIG_MAX_VALUE);
        return AHG_ECONFIG;
    }
    switch (o->type) {
    case AHG_OPT_STRING:
    case AHG_OPT_LIST:
        break;
    case AHG_OPT_INT:
        ok = parse_int(s, &v);
        break;
    case AHG_OPT_DURATION:
        ok = parse_unit(s, duration_units, sizeof duration_units / sizeof duration_units[0], false,
                        &v);
        break;
    case AHG_OPT_SIZE:
        ok = parse_unit(s, size_units, sizeof size_units / sizeof size_units[0], true, &v);
        break;
    case AHG_OPT_BOOL:
        ok = parse_bool(s, &b);
        v = b;
        break;
    case AHG_OPT_ENUM:
        ok = enum_index(o->choices, s, &v);
        break;
    }
    if (ok && has_bounds(o) && (v < o->min || v > o->max))
        ok = false;
    if (!ok) {
        char want[160], got[SHOWN_BUF];
        describe(o, want, sizeof want);
        if (o->flags & AHG_OPT_SECRET) {
            seterr(msg, msglen, "invalid value (expected %s)", want);
        } else {
            shown(got, sizeof got, s);
            seterr(msg, msglen, "expected %s, got '%s'", want, got);
        }
        return AHG_ECONFIG;
    }
    if (o->validate) {
        char why[256];
        why[0] = '\0';
        if (o->validate(s, why, sizeof why) != AHG_OK) {
            char got[SHOWN_BUF];
            why[sizeof why - 1] = '\0';
            if (o->flags & AHG_OPT_SECRET) {
                seterr(msg, msglen, "invalid value");
            } else if (why[0]) {
                seterr(msg, msglen, "%s", why);
            } else {
                shown(got, sizeof got, s);
                seterr(msg, msglen, "invalid value '%s'", got);
            }
            return AHG_ECONFIG;
        }
    }
    *num = v;
    *bv = b;
    return AHG_OK;
}

/* ------------------------------------------------------------ value store */

static void
value_clear(struct value *v, bool secret)
{
    size_t i;

    if (secret)
        wipe(v->text);
    free(v->text);
    for (i = 0; i < v->nitems; i++) {
        if (secret)
            wipe(v->items[i]);
        free(v->items[i]);
    }
    free(v->items);
    free(v->where);
    memset(v, 0, sizeof *v);
}

static int
assign_fail(struct loader *ld, size_t i, enum ahg_opt_source src, const char *where,
            const char *msg)
{
    const char *name = ld->spec->opts[i].name;

    switch (src) {
    case AHG_SRC_DEFAULT:
        return lfail(ld, AHG_EINVAL, "spec: default of %s: %s", name, msg);
    case AHG_SRC_FILE:
        return lfail(ld, AHG_ECONFIG, "%s: %s: %s", where, name, msg);
    case AHG_SRC_ENV:
    case AHG_SRC_FLAG:
        break;
    }
    return lfail(ld, AHG_ECONFIG, "%s: %s", where, msg);
}

/* Validates and stores a value of option i, replacing any value from a lower source.
 * Scalar options take text; LIST options take items[0..nitems). */
static int
assign(struct loader *ld, size_t i, enum ahg_opt_source src, const char *where, const char *text,
       const char *const *items, size_t nitems)
{
    const struct ahg_opt_def *o = &ld->spec->opts[i];
    bool secret = (o->flags & AHG_OPT_SECRET) != 0;
    struct value nv;
    char msg[MSG_MAX];
    size_t k;
    int rc;

    memset(&nv, 0, sizeof nv);
    nv.set = true;
    nv.src = src;
    if (o->type == AHG_OPT_LIST) {
        if (nitems > AHG_CONFIG_MAX_LIST) {
            seterr(msg, sizeof msg, "more than %zu items", AHG_CONFIG_MAX_LIST);
            return assign_fail(ld, i, src, where, msg);
        }
        for (k = 0; k < nitems; k++) {
            rc = check_value(o, items[k], &nv.num, &nv.b, msg, sizeof msg);
            if (rc != AHG_OK)
                return assign_fail(ld, i, src, where, msg);
        }
        nv.num = 0;
        nv.items = calloc(nitems + 1, sizeof *nv.items);
        if (!nv.items)
            return AHG_ENOMEM;
        for (k = 0; k < nitems; k++) {
            nv.items[k] = strdup(items[k]);
            if (!nv.items[k]) {
                nv.nitems = k;
                value_clear(&nv, secret);
                return AHG_ENOMEM;
            }
        }
        nv.nitems = nitems;
    } else {
        if (!text)
            return AHG_EINVAL;
        rc = check_value(o, text, &nv.num, &nv.b, msg, sizeof msg);
        if (rc != AHG_OK)
            return assign_fail(ld, i, src, where, msg);
        nv.text = strdup(text);
        if (!nv.text)
            return AHG_ENOMEM;
    }
    if (where) {
        nv.where = strdup(where);
        if (!nv.where) {
            value_clear(&nv, secret);
            return AHG_ENOMEM;
        }
    }
    value_clear(&ld->cfg->vals[i], secret);
    ld->cfg->vals[i] = nv;
    return AHG_OK;
}

/* Reads a secret file for option i and assigns its content (trailing newlines stripped). */
static int
assign_secret_file(struct loader *ld, size_t i, enum ahg_opt_source src, const char *where,
                   const char *label, const char *path)
{
    char *buf, why[128];
    size_t len;
    int e, rc;

    e = read_file(path, AHG_CONFIG_MAX_SECRET_FILE, false, &buf, &len);
    if (e == ENOMEM)
        return AHG_ENOMEM;
    if (e) {
        char p[SHOWN_BUF];
        shown(p, sizeof p, path);
        if (e == EFBIG)
            (void)snprintf(why, sizeof why, "larger than %zu KiB",
                           AHG_CONFIG_MAX_SECRET_FILE / 1024);
        else if (e == EILSEQ)
            (void)snprintf(why, sizeof why, "contains a NUL byte");
        else
            strerr(e, why, sizeof why);
        return lfail(ld, AHG_ECONFIG, "%s: cannot use secret file '%s': %s", label, p, why);
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        buf[--len] = '\0';
    rc = assign(ld, i, src, where, buf, NULL, 0);
    wipe(buf);
    free(buf);
    return rc;
}

/* ----------------------------------------------------------- spec checks */

static bool
valid_name(const char *s)
{
    size_t n = strlen(s), i;

    if (n == 0 || n > AHG_CONFIG_MAX_NAME || s[0] == '.' || s[n - 1] == '.')
        return false;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.' && s[i + 1] == '.')
            return false;
        if (!is_lower(c) && !is_digit(c) && c != '_' && c != '.')
            return false;
    }
    return true;
}

static bool
valid_flag(const char *s)
{
    size_t n = strlen(s), i;

    if (n == 0 || n > AHG_CONFIG_MAX_NAME || s[0] == '-')
        return false;
    for (i = 0; i < n; i++) {
        if (!is_lower(s[i]) && !is_digit(s[i]) && s[i] != '-')
            return false;
    }
    return true;
}

static bool
valid_env(const char *s)
{
    size_t n = strlen(s), i;

    if (n == 0 || n > AHG_CONFIG_MAX_NAME + sizeof AHG_CONFIG_ENV_PREFIX || is_digit(s[0]))
        return false;
    for (i = 0; i < n; i++) {
        if (!is_upper(s[i]) && !is_lower(s[i]) && !is_digit(s[i]) && s[i] != '_')
            return false;
    }
    return true;
}

struct namelist {
    char **v;
    size_t n, cap;
};

static int
names_add(struct namelist *l, const char *a, const char *b)
{
    char *s;

    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **nv = realloc(l->v, cap * sizeof *nv);
        if (!nv)
            return AHG_ENOMEM;
        l->v = nv;
        l->cap = cap;
    }
    s = concat(a, b);
    if (!s)
        return AHG_ENOMEM;
    l->v[l->n++] = s;
    return AHG_OK;
}

static void
names_free(struct namelist *l)
{
    size_t i;

    for (i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

static const char *
names_dup(const struct namelist *l)
{
    size_t i, j;

    for (i = 0; i < l->n; i++) {
        for (j = i + 1; j < l->n; j++) {
            if (strcmp(l->v[i], l->v[j]) == 0)
                return l->v[i];
        }
    }
    return NULL;
}

/* Checks the table and fills cfg->flags / cfg->envs. */
static int
check_spec(struct loader *ld)
{
    const struct ahg_config_spec *spec = ld->spec;
    struct namelist flags = {0}, envs = {0}, keys = {0};
    const char *dup;
    char buf[DERIVED_MAX];
    size_t i, j;
    int rc = AHG_OK;

    for (i = 0; i < sizeof builtin_flags / sizeof builtin_flags[0] && rc == AHG_OK; i++)
        rc = names_add(&flags, builtin_flags[i], "");
    if (rc == AHG_OK)
        rc = names_add(&envs, AHG_CONFIG_ENV_FILE, "");
    for (i = 0; i < spec->nopts && rc == AHG_OK; i++) {
        const struct ahg_opt_def *o = &spec->opts[i];
        bool secret = (o->flags & AHG_OPT_SECRET) != 0;

        if (!o->name || !valid_name(o->name)) {
            rc = lfail(ld, AHG_EINVAL, "spec: option %zu: invalid name '%s'", i,
                       o->name ? o->name : "(null)");
            break;
        }
        if ((unsigned)o->type > (unsigned)AHG_OPT_LIST ||
            (o->type == AHG_OPT_ENUM && (!o->choices || !o->choices[0])) ||
            (o->type == AHG_OPT_LIST && secret)) {
            rc = lfail(ld, AHG_EINVAL, "spec: %s: invalid type, choices or flags", o->name);
            break;
        }
        if (o->short_flag &&
            (o->short_flag == 'c' || o->short_flag == 'h' ||
             !(is_lower(o->short_flag) || is_upper(o->short_flag) || is_digit(o->short_flag)))) {
            rc = lfail(ld, AHG_EINVAL, "spec: %s: invalid short flag", o->name);
            break;
        }
        for (j = 0; j < i; j++) {
            if (o->short_flag && spec->opts[j].short_flag == o->short_flag) {
                rc = lfail(ld, AHG_EINVAL, "spec: %s: duplicate short flag", o->name);
                break;
            }
        }
        if (rc != AHG_OK)
            break;

        derive_flag(o, buf, sizeof buf);
        ld->cfg->flags[i] = strdup(buf);
        if (!ld->cfg->flags[i]) {
            rc = AHG_ENOMEM;
            break;
        }
        if (buf[0]) {
            if (!valid_flag(buf)) {
                rc = lfail(ld, AHG_EINVAL, "spec: %s: invalid flag '%s'", o->name, buf);
                break;
            }
            rc = names_add(&flags, buf, "");
            if (rc == AHG_OK && o->type == AHG_OPT_BOOL)
                rc = names_add(&flags, "no-", buf);
            if (rc == AHG_OK && secret)
                rc = names_add(&flags, buf, "-file");
        }
        derive_env(o, buf, sizeof buf);
        ld->cfg->envs[i] = strdup(buf);
        if (rc == AHG_OK && !ld->cfg->envs[i])
            rc = AHG_ENOMEM;
        if (rc == AHG_OK && buf[0]) {
            if (!valid_env(buf)) {
                rc = lfail(ld, AHG_EINVAL, "spec: %s: invalid environment variable '%s'", o->name,
                           buf);
                break;
            }
            rc = names_add(&envs, buf, "");
            if (rc == AHG_OK && secret)
                rc = names_add(&envs, buf, "_FILE");
        }
        if (rc == AHG_OK)
            rc = names_add(&keys, o->name, "");
        if (rc == AHG_OK && secret)
            rc = names_add(&keys, o->name, "_file");
    }
    if (rc == AHG_OK && (dup = names_dup(&flags)) != NULL)
        rc = lfail(ld, AHG_EINVAL, "spec: flag --%s is defined twice", dup);
    if (rc == AHG_OK && (dup = names_dup(&envs)) != NULL)
        rc = lfail(ld, AHG_EINVAL, "spec: environment variable %s is defined twice", dup);
    if (rc == AHG_OK && (dup = names_dup(&keys)) != NULL)
        rc = lfail(ld, AHG_EINVAL, "spec: option %s is defined twice", dup);
    for (i = 0; i < keys.n && rc == AHG_OK; i++) {
        for (j = 0; j < keys.n && rc == AHG_OK; j++) {
            size_t n = strlen(keys.v[i]);
            if (i != j && strncmp(keys.v[i], keys.v[j], n) == 0 && keys.v[j][n] == '.')
                rc = lfail(ld, AHG_EINVAL, "spec: option %s is also a section of %s", keys.v[i],
                           keys.v[j]);
        }
    }
    names_free(&flags);
    names_free(&envs);
    names_free(&keys);
    return rc;
}

/* ----------------------------------------------------------- lookups */

static long
find_opt(const struct ahg_config_spec *spec, const char *name)
{
    size_t i;

    if (!name)
        return -1;
    for (i = 0; i < spec->nopts; i++) {
        if (strcmp(spec->opts[i].name, name) == 0)
            return (long)i;
    }
    return -1;
}

static const char *
env_lookup(const struct loader *ld, const char *name)
{
    size_t n = strlen(name);
    char *const *e;

    if (!ld->envp || n == 0)
        return NULL;
    for (e = ld->envp; *e; e++) {
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    }
    return NULL;
}

/* ----------------------------------------------------------- command line */

enum flagkind { FK_DIRECT, FK_NEG, FK_FILE };

static long
find_long(const struct ahg_config *cfg, const char *s, size_t n, enum flagkind *kind)
{
    const struct ahg_config_spec *spec = cfg->spec;
    size_t i;

    for (i = 0; i < spec->nopts; i++) {
        const char *f = cfg->flags[i];
        size_t fl = strlen(f);
        if (fl == 0)
            continue;
        if (fl == n && memcmp(f, s, n) == 0) {
            *kind = FK_DIRECT;
            return (long)i;
        }
        if (spec->opts[i].type == AHG_OPT_BOOL && n == fl + 3 && memcmp(s, "no-", 3) == 0 &&
            memcmp(s + 3, f, fl) == 0) {
            *kind = FK_NEG;
            return (long)i;
        }
        if ((spec->opts[i].flags & AHG_OPT_SECRET) && n == fl + 5 && memcmp(s, f, fl) == 0 &&
            memcmp(s + fl, "-file", 5) == 0) {
            *kind = FK_FILE;
            return (long)i;
        }
    }
    return -1;
}

static long
find_short(const struct ahg_config_spec *spec, char c)
{
    size_t i;

    for (i = 0; i < spec->nopts; i++) {
        if (spec->opts[i].short_flag == c)
            return (long)i;
    }
    return -1;
}

struct argstate {
    int argc;
    char *const *argv;
    struct flagval *fv;
    const char *config; /* --config value */
    bool cfg_given;
    bool help, version, print, check, markdown;
};

static int
record(struct loader *ld, struct argstate *as, size_t i, enum flagkind kind, const char *val)
{
    struct flagval *f = &as->fv[i];

    if (kind == FK_FILE) {
        f->file = val;
        return AHG_OK;
    }
    if (ld->spec->opts[i].type != AHG_OPT_LIST) {
        f->val = val;
        return AHG_OK;
    }
    if (!f->list) {
        f->list = calloc((size_t)as->argc + 1, sizeof *f->list);
        if (!f->list)
            return AHG_ENOMEM;
    }
    f->list[f->nlist++] = val;
    return AHG_OK;
}

static int
add_positional(struct loader *ld, const char *a)
{
    struct ahg_config *cfg = ld->cfg;

    if (!ld->spec->allow_positional) {
        char s[SHOWN_BUF];
        shown(s, sizeof s, a);
        return lfail(ld, AHG_EUSAGE, "unexpected argument '%s'", s);
    }
    cfg->pos[cfg->npos] = strdup(a);
    if (!cfg->pos[cfg->npos])
        return AHG_ENOMEM;
    cfg->npos++;
    return AHG_OK;
}

static int
parse_long(struct loader *ld, struct argstate *as, int *idx)
{
    const char *a = as->argv[*idx] + 2;
    const char *eq = strchr(a, '=');
    size_t n = eq ? (size_t)(eq - a) : strlen(a);
    enum flagkind kind = FK_DIRECT;
    const char *val;
    char shownname[SHOWN_BUF];
    long i;

    if (n == 6 && memcmp(a, "config", 6) == 0) {
        if (eq) {
            as->config = eq + 1;
        } else if (*idx + 1 < as->argc) {
            as->config = as->argv[++*idx];
        } else {
            return lfail(ld, AHG_EUSAGE, "--config: missing value");
        }
        as->cfg_given = true;
        return AHG_OK;
    }
    {
        static const char *const names[] = {"help", "version", "print-config", "check-config",
                                            "help-markdown"};
        bool *dst[] = {&as->help, &as->version, &as->print, &as->check, &as->markdown};
        size_t k;
        for (k = 0; k < 5; k++) {
            if (n == strlen(names[k]) && memcmp(a, names[k], n) == 0) {
                if (eq)
                    return lfail(ld, AHG_EUSAGE, "--%s takes no value", names[k]);
                *dst[k] = true;
                return AHG_OK;
            }
        }
    }
    i = find_long(ld->cfg, a, n, &kind);
    if (i < 0) {
        char tmp[DERIVED_MAX + 1];
        (void)snprintf(tmp, sizeof tmp, "%.*s", (int)(n < DERIVED_MAX ? n : DERIVED_MAX), a);
        shown(shownname, sizeof shownname, tmp);
        return lfail(ld, AHG_EUSAGE, "unknown option '--%s'", shownname);
    }
    if (kind == FK_NEG) {
        if (eq)
            return lfail(ld, AHG_EUSAGE, "--%.*s takes no value", (int)n, a);
        val = "false";
    } else if (kind == FK_DIRECT && ld->spec->opts[i].type == AHG_OPT_BOOL) {
        val = eq ? eq + 1 : "true";
    } else if (eq) {
        val = eq + 1;
    } else if (*idx + 1 < as->argc) {
        val = as->argv[++*idx];
    } else {
        return lfail(ld, AHG_EUSAGE, "--%.*s: missing value", (int)n, a);
    }
    return record(ld, as, (size_t)i, kind, val);
}

static int
parse_short(struct loader *ld, struct argstate *as, int *idx)
{
    const char *a = as->argv[*idx];
    size_t j;

    for (j = 1; a[j]; j++) {
        char c = a[j];
        long i;
        const char *val;

        if (c == 'h') {
            as->help = true;
            continue;
        }
        if (c == 'c') {
            if (a[j + 1])
                as->config = a + j + 1;
            else if (*idx + 1 < as->argc)
                as->config = as->argv[++*idx];
            else
                return lfail(ld, AHG_EUSAGE, "-c: missing value");
            as->cfg_given = true;
            return AHG_OK;
        }
        i = find_short(ld->spec, c);
        if (i < 0) {
            char one[2], s[16];
            one[0] = c;
            one[1] = '\0';
            shown(s, sizeof s, one);
            return lfail(ld, AHG_EUSAGE, "unknown option '-%s'", s);
        }
        if (ld->spec->opts[i].type == AHG_OPT_BOOL) {
            int rc = record(ld, as, (size_t)i, FK_DIRECT, "true");
            if (rc != AHG_OK)
                return rc;
            continue;
        }
        if (a[j + 1])
            val = a + j + 1;
        else if (*idx + 1 < as->argc)
            val = as->argv[++*idx];
        else
            return lfail(ld, AHG_EUSAGE, "-%c: missing value", c);
        return record(ld, as, (size_t)i, FK_DIRECT, val);
    }
    return AHG_OK;
}

static int
parse_argv(struct loader *ld, struct argstate *as)
{
    bool opts_done = false;
    int k, rc = AHG_OK;

    for (k = 1; k < as->argc && rc == AHG_OK; k++) {
        const char *a = as->argv[k];
        if (!a)
            break;
        if (opts_done || a[0] != '-' || a[1] == '\0')
            rc = add_positional(ld, a);
        else if (strcmp(a, "--") == 0)
            opts_done = true;
        else if (a[1] == '-')
            rc = parse_long(ld, as, &k);
        else
            rc = parse_short(ld, as, &k);
    }
    return rc;
}

/* Canonical spelling of option i's flag for messages: "--port" or "-p". */
static void
flag_label(const struct loader *ld, size_t i, const char *suffix, char *buf, size_t n)
{
    if (ld->cfg->flags[i][0])
        (void)snprintf(buf, n, "--%s%s", ld->cfg->flags[i], suffix);
    else
        (void)snprintf(buf, n, "-%c", ld->spec->opts[i].short_flag);
}

static int
apply_flags(struct loader *ld, const struct flagval *fv)
{
    size_t i;
    int rc;

    for (i = 0; i < ld->spec->nopts; i++) {
        const struct flagval *f = &fv[i];
        char label[DERIVED_MAX + 8], flabel[DERIVED_MAX + 8];

        flag_label(ld, i, "", label, sizeof label);
        flag_label(ld, i, "-file", flabel, sizeof flabel);
        if (f->file && f->val)
            return lfail(ld, AHG_ECONFIG, "%s and %s are both given", label, flabel);
        if (f->file) {
            rc = assign_secret_file(ld, i, AHG_SRC_FLAG, flabel, flabel, f->file);
            if (rc != AHG_OK)
                return rc;
        } else if (f->val) {
            rc = assign(ld, i, AHG_SRC_FLAG, label, f->val, NULL, 0);
            if (rc != AHG_OK)
                return rc;
        } else if (f->nlist) {
            rc = assign(ld, i, AHG_SRC_FLAG, label, NULL, f->list, f->nlist);
            if (rc != AHG_OK)
                return rc;
        }
    }
    return AHG_OK;
}

/* ----------------------------------------------------------- environment */

/* Splits a comma-separated list; items are trimmed of blanks, empty items are dropped. */
static int
assign_csv(struct loader *ld, size_t i, enum ahg_opt_source src, const char *where, const char *s)
{
    char *copy = strdup(s), *p, **items;
    size_t n = 0, cap = 1;
    int rc;

    if (!copy)
        return AHG_ENOMEM;
    for (p = copy; *p; p++)
        cap += *p == ',';
    items = calloc(cap, sizeof *items);
    if (!items) {
        free(copy);
        return AHG_ENOMEM;
    }
    p = copy;
    for (;;) {
        char *comma = strchr(p, ','), *end;
        if (comma)
            *comma = '\0';
        while (*p == ' ' || *p == '\t')
            p++;
        end = p + strlen(p);
        while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (*p)
            items[n++] = p;
        if (!comma)
            break;
        p = comma + 1;
    }
    rc = assign(ld, i, src, where, NULL, (const char *const *)items, n);
    free(items);
    free(copy);
    return rc;
}

static int
apply_env(struct loader *ld)
{
    size_t i;
    int rc = AHG_OK;

    for (i = 0; i < ld->spec->nopts && rc == AHG_OK; i++) {
        const struct ahg_opt_def *o = &ld->spec->opts[i];
        const char *env = ld->cfg->envs[i];
        const char *direct, *viafile = NULL;
        char fname[DERIVED_MAX + 8];

        if (!env[0])
            continue;
        direct = env_lookup(ld, env);
        (void)snprintf(fname, sizeof fname, "%s_FILE", env);
        if (o->flags & AHG_OPT_SECRET)
            viafile = env_lookup(ld, fname);
        if (direct && viafile)
            return lfail(ld, AHG_ECONFIG, "%s and %s are both set", env, fname);
        if (viafile)
            rc = assign_secret_file(ld, i, AHG_SRC_ENV, fname, fname, viafile);
        else if (direct && o->type == AHG_OPT_LIST)
            rc = assign_csv(ld, i, AHG_SRC_ENV, env, direct);
        else if (direct)
            rc = assign(ld, i, AHG_SRC_ENV, env, direct, NULL, 0);
    }
    return rc;
}

/* ----------------------------------------------------------- YAML file */

#define SEEN_DIRECT 1u
#define SEEN_FILE   2u

struct yload {
    struct loader *ld;
    const char *path;
    yaml_document_t *doc;
    unsigned char *seen; /* per option: SEEN_* */
};

static unsigned long
mark_line(const yaml_node_t *n)
{
    return (unsigned long)n->start_mark.line + 1;
}

static const char *
node_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    case YAML_SCALAR_NODE:
        return "a scalar";
    case YAML_NO_NODE:
        break;
    }
    return "nothing";
}

/* A plain empty, "~" or "null" scalar: leaves the option unset. */
static bool
is_null_scalar(const yaml_node_t *n)
{
    const char *s = (const char *)n->data.scalar.value;

    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

static bool
scalar_has_nul(const yaml_node_t *n)
{
    return strlen((const char *)n->data.scalar.value) != n->data.scalar.length;
}

static int yfail(struct yload *y, const yaml_node_t *at, const char *fmt, ...) ATTR_PRINTF(3, 4);

static int
yfail(struct yload *y, const yaml_node_t *at, const char *fmt, ...)
{
    char msg[MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lfail(y->ld, AHG_ECONFIG, "%s:%lu: %s", y->path, mark_line(at), msg);
}

static int
seen_check(struct yload *y, size_t i, unsigned what, const yaml_node_t *at)
{
    const char *name = y->ld->spec->opts[i].name;

    if (y->seen[i] & what)
        return yfail(y, at, "%s%s is set more than once", name, what == SEEN_FILE ? "_file" : "");
    if (y->seen[i])
        return yfail(y, at, "both %s and %s_file are set", name, name);
    y->seen[i] |= (unsigned char)what;
    return AHG_OK;
}

static int
yaml_set(struct yload *y, size_t i, const yaml_node_t *key, const yaml_node_t *v)
{
    const struct ahg_opt_def *o = &y->ld->spec->opts[i];
    char where[WHERE_MAX];
    int rc;

    if (is_null_scalar(v))
        return AHG_OK;
    rc = seen_check(y, i, SEEN_DIRECT, key);
    if (rc != AHG_OK)
        return rc;
    if (o->type == AHG_OPT_LIST && v->type == YAML_SEQUENCE_NODE) {
        size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start), k;
        const char **items;

        if (n > AHG_CONFIG_MAX_LIST)
            return yfail(y, v, "%s: more than %zu items", o->name, AHG_CONFIG_MAX_LIST);
        items = calloc(n + 1, sizeof *items);
        if (!items)
            return AHG_ENOMEM;
        for (k = 0; k < n; k++) {
            yaml_node_t *it = yaml_document_get_node(y->doc, v->data.sequence.items.start[k]);
            if (!it || it->type != YAML_SCALAR_NODE || scalar_has_nul(it)) {
                free(items);
                return yfail(y, it ? it : v, "%s: expected a list of strings", o->name);
            }
            items[k] = (const char *)it->data.scalar.value;
        }
        (void)snprintf(where, sizeof where, "%s:%lu", y->path, mark_line(v));
        rc = assign(y->ld, i, AHG_SRC_FILE, where, NULL, items, n);
        free(items);
        return rc;
    }
    if (v->type != YAML_SCALAR_NODE)
        return yfail(y, v, "%s: expected %s, got %s", o->name,
                     o->type == AHG_OPT_LIST ? "a list" : "a scalar value", node_kind(v));
    if (scalar_has_nul(v))
        return yfail(y, v, "%s: value contains a NUL byte", o->name);
    (void)snprintf(where, sizeof where, "%s:%lu", y->path, mark_line(v));
    if (o->type == AHG_OPT_LIST) {
        const char *one[1];
        one[0] = (const char *)v->data.scalar.value;
        return assign(y->ld, i, AHG_SRC_FILE, where, NULL, one, 1);
    }
    return assign(y->ld, i, AHG_SRC_FILE, where, (const char *)v->data.scalar.value, NULL, 0);
}

/* YAML "<key>_file: path" of a secret; relative paths are relative to the config file. */
static int
yaml_set_file(struct yload *y, size_t i, const yaml_node_t *key, const yaml_node_t *v)
{
    const char *name = y->ld->spec->opts[i].name;
    const char *p, *slash;
    char where[WHERE_MAX], label[WHERE_MAX + AHG_CONFIG_MAX_NAME + 16], *path;
    int rc;

    if (is_null_scalar(v))
        return AHG_OK;
    rc = seen_check(y, i, SEEN_FILE, key);
    if (rc != AHG_OK)
        return rc;
    if (v->type != YAML_SCALAR_NODE || scalar_has_nul(v))
        return yfail(y, v, "%s_file: expected a file name", name);
    p = (const char *)v->data.scalar.value;
    slash = strrchr(y->path, '/');
    if (p[0] != '/' && slash) {
        size_t dl = (size_t)(slash - y->path) + 1, pl = strlen(p);
        path = malloc(dl + pl + 1);
        if (path) {
            memcpy(path, y->path, dl);
            memcpy(path + dl, p, pl + 1);
        }
    } else {
        path = strdup(p);
    }
    if (!path)
        return AHG_ENOMEM;
    (void)snprintf(where, sizeof where, "%s:%lu", y->path, mark_line(v));
    (void)snprintf(label, sizeof label, "%s: %s_file", where, name);
    rc = assign_secret_file(y->ld, i, AHG_SRC_FILE, where, label, path);
    free(path);
    return rc;
}

static bool
is_section(const struct ahg_config_spec *spec, const char *prefix)
{
    size_t n = strlen(prefix), i;

    for (i = 0; i < spec->nopts; i++) {
        if (strncmp(spec->opts[i].name, prefix, n) == 0 && spec->opts[i].name[n] == '.')
            return true;
    }
    return false;
}

static int
yaml_walk(struct yload *y, const yaml_node_t *map, const char *prefix, int depth)
{
    const struct ahg_config_spec *spec = y->ld->spec;
    yaml_node_pair_t *pair;
    int rc;

    if (depth > YAML_DEPTH)
        return yfail(y, map, "mappings nested too deeply");
    for (pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(y->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(y->doc, pair->value);
        char full[2 * AHG_CONFIG_MAX_NAME + 2], shownkey[SHOWN_BUF];
        const char *key;
        size_t pl, kl;
        long i;

        if (!k || !v)
            return yfail(y, map, "malformed mapping");
        if (k->type != YAML_SCALAR_NODE || scalar_has_nul(k))
            return yfail(y, k, "keys must be plain strings");
        key = (const char *)k->data.scalar.value;
        pl = strlen(prefix);
        kl = strlen(key);
        if (pl + kl + 2 > sizeof full) {
            shown(shownkey, sizeof shownkey, key);
            return yfail(y, k, "unknown key '%s'", shownkey);
        }
        memcpy(full, prefix, pl);
        if (pl)
            full[pl++] = '.';
        memcpy(full + pl, key, kl + 1);
        i = find_opt(spec, full);
        if (i >= 0) {
            rc = yaml_set(y, (size_t)i, k, v);
        } else if (has_suffix(full, "_file")) {
            char stem[sizeof full];
            size_t sl = strlen(full) - 5;
            memcpy(stem, full, sl);
            stem[sl] = '\0';
            i = find_opt(spec, stem);
            if (i >= 0 && (spec->opts[i].flags & AHG_OPT_SECRET)) {
                rc = yaml_set_file(y, (size_t)i, k, v);
            } else {
                shown(shownkey, sizeof shownkey, full);
                rc = yfail(y, k, "unknown key '%s'", shownkey);
            }
        } else if (is_section(spec, full)) {
            if (v->type == YAML_MAPPING_NODE)
                rc = yaml_walk(y, v, full, depth + 1);
            else if (is_null_scalar(v))
                rc = AHG_OK;
            else
                rc = yfail(y, v, "%s: expected a mapping, got %s", full, node_kind(v));
        } else {
            shown(shownkey, sizeof shownkey, full);
            rc = yfail(y, k, "unknown key '%s'", shownkey);
        }
        if (rc != AHG_OK)
            return rc;
    }
    return AHG_OK;
}

static int
yaml_syntax(struct loader *ld, const char *path, const yaml_parser_t *p)
{
    const char *problem = p->problem ? p->problem : "invalid YAML";

    if (p->error == YAML_MEMORY_ERROR)
        return AHG_ENOMEM;
    if (p->error == YAML_READER_ERROR)
        return lfail(ld, AHG_ECONFIG, "%s: YAML error at byte %zu: %s", path, p->problem_offset,
                     problem);
    if (p->context)
        return lfail(ld, AHG_ECONFIG, "%s:%lu: YAML syntax error: %s %s", path,
                     (unsigned long)p->problem_mark.line + 1, problem, p->context);
    return lfail(ld, AHG_ECONFIG, "%s:%lu: YAML syntax error: %s", path,
                 (unsigned long)p->problem_mark.line + 1, problem);
}

static int
load_yaml(struct loader *ld, const char *path, const char *origin)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    struct yload y;
    yaml_node_t *root;
    bool had_root;
    char *buf, why[128], p[SHOWN_BUF];
    size_t len;
    int e, rc = AHG_OK;

    e = read_file(path, AHG_CONFIG_MAX_FILE, true, &buf, &len);
    if (e == ENOMEM || (!e && !buf))
        return AHG_ENOMEM;
    if (e) {
        shown(p, sizeof p, path);
        if (e == EFBIG)
            (void)snprintf(why, sizeof why, "larger than %zu MiB", AHG_CONFIG_MAX_FILE >> 20);
        else
            strerr(e, why, sizeof why);
        return lfail(ld, AHG_ECONFIG, "%s: cannot read config file '%s': %s", origin, p, why);
    }
    if (!yaml_parser_initialize(&parser)) {
        free(buf);
        return AHG_ENOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = yaml_syntax(ld, path, &parser);
        goto out;
    }
    memset(&y, 0, sizeof y);
    y.ld = ld;
    y.path = path;
    y.doc = &doc;
    y.seen = calloc(ld->spec->nopts + 1, 1);
    root = yaml_document_get_root_node(&doc);
    had_root = root != NULL;
    if (!y.seen)
        rc = AHG_ENOMEM;
    else if (!root || is_null_scalar(root))
        rc = AHG_OK;
    else if (root->type != YAML_MAPPING_NODE)
        rc = yfail(&y, root, "the top level must be a mapping, got %s", node_kind(root));
    else
        rc = yaml_walk(&y, root, "", 0);
    free(y.seen);
    yaml_document_delete(&doc);
    if (rc == AHG_OK && had_root) {
        /* Only one document per file. */
        if (!yaml_parser_load(&parser, &doc)) {
            rc = yaml_syntax(ld, path, &parser);
        } else {
            root = yaml_document_get_root_node(&doc);
            if (root)
                rc = lfail(ld, AHG_ECONFIG, "%s:%lu: only one YAML document is allowed", path,
                           mark_line(root));
            yaml_document_delete(&doc);
        }
    }
out:
    yaml_parser_delete(&parser);
    memset(buf, 0, len); /* may hold secrets */
    free(buf);
    return rc;
}

static int
apply_file(struct loader *ld, const struct argstate *as)
{
    const char *path = NULL, *origin = NULL, *e;
    struct stat st;

    if (as->cfg_given) {
        path = as->config;
        origin = "--config";
    } else if ((e = env_lookup(ld, AHG_CONFIG_ENV_FILE)) != NULL) {
        path = e;
        origin = AHG_CONFIG_ENV_FILE;
    } else if (ld->spec->default_file && stat(ld->spec->default_file, &st) == 0) {
        path = ld->spec->default_file;
        origin = "default config file";
    }
    if (!path || !path[0])
        return AHG_OK;
    ld->cfg->file = strdup(path);
    if (!ld->cfg->file)
        return AHG_ENOMEM;
    ld->cfg->file_origin = origin;
    return load_yaml(ld, ld->cfg->file, origin);
}

/* ----------------------------------------------------------- load */

static int
apply_defaults(struct loader *ld)
{
    size_t i;
    int rc;

    for (i = 0; i < ld->spec->nopts; i++) {
        const struct ahg_opt_def *o = &ld->spec->opts[i];
        if (!o->def)
            continue;
        if (o->type == AHG_OPT_LIST) {
            rc = assign_csv(ld, i, AHG_SRC_DEFAULT, NULL, o->def);
        } else {
            rc = assign(ld, i, AHG_SRC_DEFAULT, NULL, o->def, NULL, 0);
        }
        if (rc != AHG_OK)
            return rc;
    }
    return AHG_OK;
}

static int
check_required(struct loader *ld)
{
    size_t i;

    for (i = 0; i < ld->spec->nopts; i++) {
        const struct ahg_opt_def *o = &ld->spec->opts[i];
        char how[3 * DERIVED_MAX + 64];
        size_t n = 0;

        if (!(o->flags & AHG_OPT_REQUIRED) || ld->cfg->vals[i].set)
            continue;
        how[0] = '\0';
        if (ld->cfg->flags[i][0])
            n += (size_t)snprintf(how + n, sizeof how - n, "--%s, ", ld->cfg->flags[i]);
        else if (o->short_flag)
            n += (size_t)snprintf(how + n, sizeof how - n, "-%c, ", o->short_flag);
        if (ld->cfg->envs[i][0])
            n += (size_t)snprintf(how + n, sizeof how - n, "%s, ", ld->cfg->envs[i]);
        (void)snprintf(how + n, sizeof how - n, "or '%s' in the config file", o->name);
        return lfail(ld, AHG_ECONFIG, "missing required option %s (set %s)", o->name, how);
    }
    return AHG_OK;
}

int
ahg_config_load(struct ahg_config **out, const struct ahg_config_spec *spec, int argc,
                char *const argv[], char *const envp[], char *err, size_t errlen)
{
    struct ahg_config *cfg = NULL;
    struct argstate as;
    struct loader ld;
    size_t i;
    int rc;

    seterr(err, errlen, "%s", "");
    if (!out) {
        seterr(err, errlen, "ahg_config_load: out is NULL");
        return AHG_EINVAL;
    }
    *out = NULL;
    if (!spec || !spec->prog || (spec->nopts && !spec->opts) || argc < 0 || (argc && !argv)) {
        seterr(err, errlen, "ahg_config_load: invalid arguments");
        return AHG_EINVAL;
    }
    memset(&as, 0, sizeof as);
    memset(&ld, 0, sizeof ld);
    ld.spec = spec;
    ld.envp = envp ? envp : environ;
    ld.err = err;
    ld.errlen = errlen;
    as.argc = argc;
    as.argv = argv;

    cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return AHG_ENOMEM;
    ld.cfg = cfg;
    cfg->spec = spec;
    cfg->flags = calloc(spec->nopts + 1, sizeof *cfg->flags);
    cfg->envs = calloc(spec->nopts + 1, sizeof *cfg->envs);
    cfg->vals = calloc(spec->nopts + 1, sizeof *cfg->vals);
    cfg->pos = calloc((size_t)argc + 1, sizeof *cfg->pos);
    as.fv = calloc(spec->nopts + 1, sizeof *as.fv);
    if (!cfg->flags || !cfg->envs || !cfg->vals || !cfg->pos || !as.fv) {
        rc = AHG_ENOMEM;
        goto fail;
    }
    rc = check_spec(&ld);
    if (rc != AHG_OK)
        goto fail;
    rc = parse_argv(&ld, &as);
    if (rc != AHG_OK)
        goto fail;
    if (as.markdown)
        cfg->action = AHG_CONFIG_MARKDOWN;
    else if (as.help)
        cfg->action = AHG_CONFIG_HELP;
    else if (as.version)
        cfg->action = AHG_CONFIG_VERSION;
    else if (as.print)
        cfg->action = AHG_CONFIG_PRINT;
    else if (as.check)
        cfg->action = AHG_CONFIG_CHECK;
    else
        cfg->action = AHG_CONFIG_RUN;

    rc = apply_defaults(&ld);
    if (rc == AHG_OK && cfg->action != AHG_CONFIG_HELP && cfg->action != AHG_CONFIG_VERSION &&
        cfg->action != AHG_CONFIG_MARKDOWN) {
        rc = apply_file(&ld, &as);
        if (rc == AHG_OK)
            rc = apply_env(&ld);
        if (rc == AHG_OK)
            rc = apply_flags(&ld, as.fv);
        if (rc == AHG_OK && cfg->action != AHG_CONFIG_PRINT)
            rc = check_required(&ld);
    }
    if (rc != AHG_OK)
        goto fail;
    for (i = 0; i < spec->nopts; i++)
        free(as.fv[i].list);
    free(as.fv);
    *out = cfg;
    return AHG_OK;

fail:
    if (rc == AHG_ENOMEM)
        seterr(err, errlen, "out of memory");
    if (as.fv) {
        for (i = 0; i < spec->nopts; i++)
            free(as.fv[i].list);
    }
    free(as.fv);
    ahg_config_free(cfg);
    return rc;
}

void
ahg_config_free(struct ahg_config *cfg)
{
    size_t i;

    if (!cfg)
        return;
    for (i = 0; i < cfg->spec->nopts; i++) {
        if (cfg->vals)
            value_clear(&cfg->vals[i], (cfg->spec->opts[i].flags & AHG_OPT_SECRET) != 0);
        if (cfg->flags)
            free(cfg->flags[i]);
        if (cfg->envs)
            free(cfg->envs[i]);
    }
    for (i = 0; i < cfg->npos; i++)
        free(cfg->pos[i]);
    free(cfg->pos);
    free(cfg->vals);
    free(cfg->flags);
    free(cfg->envs);
    free(cfg->file);
    free(cfg);
}

/* ----------------------------------------------------------- getters */

static const struct value *
get(const struct ahg_config *cfg, const char *name, const struct ahg_opt_def **def)
{
    long i;

    if (!cfg)
        return NULL;
    i = find_opt(cfg->spec, name);
    if (i < 0)
        return NULL;
    if (def)
        *def = &cfg->spec->opts[i];
    return &cfg->vals[i];
}

enum ahg_config_action
ahg_config_action(const struct ahg_config *cfg)
{
    return cfg ? cfg->action : AHG_CONFIG_RUN;
}

const char *
ahg_config_str(const struct ahg_config *cfg, const char *name)
{
    const struct value *v = get(cfg, name, NULL);
    return v && v->set ? v->text : NULL;
}

long long
ahg_config_int(const struct ahg_config *cfg, const char *name)
{
    const struct value *v = get(cfg, name, NULL);
    return v && v->set ? v->num : 0;
}

bool
ahg_config_bool(const struct ahg_config *cfg, const char *name)
{
    const struct ahg_opt_def *o = NULL;
    const struct value *v = get(cfg, name, &o);
    return v && v->set && o->type == AHG_OPT_BOOL && v->b;
}

size_t
ahg_config_list(const struct ahg_config *cfg, const char *name, const char *const **items)
{
    const struct ahg_opt_def *o = NULL;
    const struct value *v = get(cfg, name, &o);
    bool ok = v && v->set && o->type == AHG_OPT_LIST && v->items;

    if (items)
        *items = ok ? (const char *const *)v->items : empty_list;
    return ok ? v->nitems : 0;
}

bool
ahg_config_is_set(const struct ahg_config *cfg, const char *name)
{
    const struct value *v = get(cfg, name, NULL);
    return v && v->set;
}

enum ahg_opt_source
ahg_config_source(const struct ahg_config *cfg, const char *name)
{
    const struct value *v = get(cfg, name, NULL);
    return v && v->set ? v->src : AHG_SRC_DEFAULT;
}

const char *
ahg_config_origin(const struct ahg_config *cfg, const char *name)
{
    const struct value *v = get(cfg, name, NULL);
    return v && v->set ? v->where : NULL;
}

const char *
ahg_config_source_name(enum ahg_opt_source src)
{
    switch (src) {
    case AHG_SRC_DEFAULT:
        return "default";
    case AHG_SRC_FILE:
        return "file";
    case AHG_SRC_ENV:
        return "env";
    case AHG_SRC_FLAG:
        return "flag";
    }
    return "unknown";
}

const char *
ahg_config_file(const struct ahg_config *cfg)
{
    return cfg ? cfg->file : NULL;
}

size_t
ahg_config_positional(const struct ahg_config *cfg, const char *const **args)
{
    if (args)
        *args = cfg && cfg->pos ? (const char *const *)cfg->pos : empty_list;
    return cfg ? cfg->npos : 0;
}

/* ----------------------------------------------------------- output */

static void
put_escaped(FILE *out, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            (void)fprintf(out, "\\x%02x", c);
        else
            (void)fputc(c, out);
    }
}

void
ahg_config_print(const struct ahg_config *cfg, FILE *out)
{
    size_t i, k;

    if (!cfg || !out)
        return;
    (void)fputs("# config file: ", out);
    if (cfg->file) {
        put_escaped(out, cfg->file);
        (void)fprintf(out, " (from %s)\n", cfg->file_origin);
    } else {
        (void)fputs("(none)\n", out);
    }
    for (i = 0; i < cfg->spec->nopts; i++) {
        const struct ahg_opt_def *o = &cfg->spec->opts[i];
        const struct value *v = &cfg->vals[i];

        (void)fprintf(out, "%s = ", o->name);
        if (!v->set) {
            (void)fputs((o->flags & AHG_OPT_REQUIRED) ? "(unset, required)\n" : "(unset)\n", out);
            continue;
        }
        if (o->flags & AHG_OPT_SECRET) {
            (void)fputs("[REDACTED]", out);
        } else if (o->type == AHG_OPT_LIST) {
            (void)fputc('[', out);
            for (k = 0; k < v->nitems; k++) {
                if (k)
                    (void)fputs(", ", out);
                put_escaped(out, v->items[k]);
            }
            (void)fputc(']', out);
        } else {
            put_escaped(out, v->text);
        }
        (void)fprintf(out, "  (%s", ahg_config_source_name(v->src));
        if (v->where) {
            (void)fputc(' ', out);
            put_escaped(out, v->where);
        }
        (void)fputs(")\n", out);
    }
}

void
ahg_config_usage(const struct ahg_config_spec *spec, FILE *out)
{
    size_t i;

    if (!spec || !out)
        return;
    (void)fprintf(out, "Usage: %s %s\n", spec->prog ? spec->prog : "",
                  spec->usage ? spec->usage : "[OPTIONS]");
    if (spec->summary)
        (void)fprintf(out, "%s\n", spec->summary);
    if (spec->nopts)
        (void)fputs("\nOptions:\n", out);
    for (i = 0; i < spec->nopts && spec->opts; i++) {
        const struct ahg_opt_def *o = &spec->opts[i];
        bool secret = (o->flags & AHG_OPT_SECRET) != 0;
        char flag[DERIVED_MAX], env[DERIVED_MAX];
        const char *mv = default_metavar(o);

        derive_flag(o, flag, sizeof flag);
        derive_env(o, env, sizeof env);
        (void)fputs("  ", out);
        if (o->short_flag)
            (void)fprintf(out, "-%c%s", o->short_flag, flag[0] ? ", " : "");
        if (flag[0])
            (void)fprintf(out, "--%s", flag);
        if (!o->short_flag && !flag[0])
            (void)fprintf(out, "(config file%s only)", env[0] ? " and environment" : "");
        else if (o->type == AHG_OPT_BOOL && flag[0])
            (void)fprintf(out, "[=BOOL], --no-%s", flag);
        else if (o->type != AHG_OPT_BOOL)
            (void)fprintf(out, " %s", mv);
        if (secret && flag[0])
            (void)fprintf(out, ", --%s-file FILE", flag);
        if (o->type == AHG_OPT_LIST && (o->short_flag || flag[0]))
            (void)fputs("  (repeatable)", out);
        const char *help = o->help ? o->help : "";
        size_t hl = strlen(help);
        (void)fprintf(out, "\n      %s%s", help, hl && help[hl - 1] != '.' ? "." : "");
        if (o->flags & AHG_OPT_REQUIRED)
            (void)fputs(" Required.", out);
        if (secret)
            (void)fputs(" Secret.", out);
        if (o->def && !secret)
            (void)fprintf(out, " Default: %s.", o->def);
        if (env[0]) {
            (void)fprintf(out, " Env: %s", env);
            if (secret)
                (void)fprintf(out, " or %s_FILE", env);
            if (o->type == AHG_OPT_LIST)
                (void)fputs(" (comma-separated)", out);
            (void)fputc('.', out);
        }
        (void)fprintf(out, " YAML: %s", o->name);
        if (secret)
            (void)fprintf(out, " or %s_file", o->name);
        (void)fputs(".\n", out);
    }
    (void)fputs("\nBuilt-in options:\n", out);
    (void)fprintf(out, "  -c, --config FILE\n      Read the YAML configuration FILE. Env: %s.",
                  AHG_CONFIG_ENV_FILE);
    if (spec->default_file)
        (void)fprintf(out, " Default: %s (if it exists).", spec->default_file);
    (void)fputs("\n  --print-config\n      Print the effective configuration and where each "
                "value comes from (secrets redacted), then exit.\n"
                "  --check-config\n      Validate the configuration and exit (0 valid, 78 "
                "invalid).\n"
                "  -h, --help\n      Show this help and exit.\n"
                "  --version\n      Show the version and exit.\n"
                "  --help-markdown\n      Print the options as a Markdown table and exit.\n"
                "\nPrecedence: flags > environment > config file > defaults.\n",
                out);
}

/* Writes s into a Markdown table cell ('|' escaped, newlines as spaces). */
static void
md_cell(FILE *out, const char *s)
{
    for (; s && *s; s++) {
        if (*s == '|')
            (void)fputs("\\|", out);
        else if (*s == '\n')
            (void)fputc(' ', out);
        else
            (void)fputc(*s, out);
    }
}

void
ahg_config_markdown(const struct ahg_config_spec *spec, FILE *out)
{
    size_t i;

    if (!spec || !out)
        return;
    (void)fprintf(out, "### `%s`\n\n", spec->prog ? spec->prog : "");
    if (spec->summary)
        (void)fprintf(out, "%s\n\n", spec->summary);
    (void)fputs("| YAML key | flag | environment | default | description |\n"
                "|---|---|---|---|---|\n",
                out);
    for (i = 0; i < spec->nopts && spec->opts; i++) {
        const struct ahg_opt_def *o = &spec->opts[i];
        bool secret = (o->flags & AHG_OPT_SECRET) != 0;
        char flag[DERIVED_MAX], env[DERIVED_MAX];

        derive_flag(o, flag, sizeof flag);
        derive_env(o, env, sizeof env);
        (void)fprintf(out, "| `%s`%s | ", o->name, secret ? " (`_file`)" : "");
        if (o->short_flag)
            (void)fprintf(out, "`-%c` ", o->short_flag);
        if (flag[0])
            (void)fprintf(out, "`--%s`%s", flag, secret ? " / `--" : "");
        if (flag[0] && secret)
            (void)fprintf(out, "%s-file`", flag);
        (void)fputs(" | ", out);
        if (env[0])
            (void)fprintf(out, "`%s`%s%s%s", env, secret ? " / `" : "", secret ? env : "",
                          secret ? "_FILE`" : "");
        (void)fputs(" | ", out);
        if (o->def && o->def[0] && !secret) {
            (void)fputc('`', out);
            md_cell(out, o->def);
            (void)fputc('`', out);
        }
        (void)fputs(" | ", out);
        md_cell(out, o->help);
        if (o->help && o->help[0] && o->help[strlen(o->help) - 1] != '.')
            (void)fputc('.', out);
        if (o->type == AHG_OPT_ENUM && o->choices) {
            (void)fputs(" One of `", out);
            md_cell(out, o->choices);
            (void)fputs("`.", out);
        }
        if (o->flags & AHG_OPT_REQUIRED)
            (void)fputs(" **Required.**", out);
        if (secret)
            (void)fputs(" Secret (also read from a file; never logged).", out);
        (void)fputs(" |\n", out);
    }
    (void)fputc('\n', out);
}

int
ahg_config_run_builtin(const struct ahg_config *cfg, const struct ahg_config_spec *spec, FILE *out)
{
    const char *prog;

    if (!cfg)
        return -1;
    if (!spec)
        spec = cfg->spec;
    prog = spec->prog ? spec->prog : "";
    switch (cfg->action) {
    case AHG_CONFIG_RUN:
        return -1;
    case AHG_CONFIG_HELP:
        ahg_config_usage(spec, out);
        break;
    case AHG_CONFIG_MARKDOWN:
        ahg_config_markdown(spec, out);
        break;
    case AHG_CONFIG_VERSION:
        (void)fprintf(out, "%s %s\n", prog, AHG_VERSION);
        break;
    case AHG_CONFIG_PRINT:
        ahg_config_print(cfg, out);
        break;
    case AHG_CONFIG_CHECK:
        (void)fprintf(out, "%s: configuration OK\n", prog);
        break;
    }
    (void)fflush(out);
    return AHG_EXIT_OK;
}

int
ahg_config_main(struct ahg_config **out, const struct ahg_config_spec *spec, int argc,
                char *const argv[])
{
    char err[512] = "";
    const char *prog = spec->prog ? spec->prog : "";

    *out = NULL;
    int rc = ahg_config_load(out, spec, argc, argv, NULL, err, sizeof err);
    if (rc != AHG_OK) {
        (void)fprintf(stderr, "%s: %s\n", prog, err);
        if (rc == AHG_EUSAGE)
            (void)fprintf(stderr, "Try '%s --help'.\n", prog);
        *out = NULL;
        return ahg_err_exit_code(rc);
    }
    int code = ahg_config_run_builtin(*out, spec, stdout);
    if (code >= 0) {
        ahg_config_free(*out);
        *out = NULL;
        return code;
    }
    return -1;
}

void
ahg_config_log_setup(const struct ahg_config *cfg, const char *comp, int default_format)
{
    enum ahg_log_format lf = (enum ahg_log_format)default_format;
    enum ahg_log_level ll = AHG_LOG_LVL_INFO;
    const char *f = ahg_config_str(cfg, "log_format");
    const char *l = ahg_config_str(cfg, "log_level");
    if (f)
        (void)ahg_log_format_parse(f, &lf);
    if (l)
        (void)ahg_log_level_parse(l, &ll);
    ahg_log_setup(comp, lf, ll, 2);
}
