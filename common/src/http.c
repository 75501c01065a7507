#include "ahg/http.h"

#include "ahg/err.h"

#include <http_parser.h>
#include <stdlib.h>
#include <string.h>

/*
 * Design: a strict byte scanner of our own buffers the head (bounded by max_head)
 * and rejects what http_parser 2.9.4 tolerates (bare LF, bare CR, obs-fold, bad
 * names, CTLs in values, other HTTP versions). The completed head is turned into a
 * struct ahg_http_head, checked for framing (Content-Length, Transfer-Encoding,
 * Host) and then run through http_parser as an independent second check of the
 * start line and the fields (it also knows the registered methods). The body is
 * delimited by our own strict state machine (http_parser's chunked decoder
 * tolerates bare LF in chunk extensions and trailers, and missing CRLF after data
 * when built non-strict as Debian's is).
 */

#define INT64_MAX_U ((uint64_t)INT64_MAX)

/* ---- character classes ------------------------------------------------------ */

static bool
is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-value octets: HTAB, SP, VCHAR, obs-text */
static bool
is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool
is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static int
hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static unsigned char
lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

static bool
ci_eq(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn)
        return false;
    for (size_t i = 0; i < an; i++) {
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    }
    return true;
}

static bool
ci_eqz(const char *a, size_t an, const char *z)
{
    return ci_eq(a, an, z, strlen(z));
}

static bool
is_token(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!is_tchar((unsigned char)s[i]))
            return false;
    }
    return true;
}

static void
trim_ows(const char **s, size_t *n)
{
    while (*n > 0 && is_ows((unsigned char)(*s)[0])) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && is_ows((unsigned char)(*s)[*n - 1]))
        (*n)--;
}

/* Iterates the comma-separated elements of a list value, including empty ones. */
struct list_iter {
    const char *p;
    const char *end;
    bool done;
};

static void
list_init(struct list_iter *it, const char *s, size_t n)
{
    it->p = s;
    it->end = s + n;
    it->done = false;
}

static bool
list_next(struct list_iter *it, const char **e, size_t *en)
{
    if (it->done)
        return false;
    const char *c = memchr(it->p, ',', (size_t)(it->end - it->p));
    const char *stop = c ? c : it->end;
    *e = it->p;
    *en = (size_t)(stop - it->p);
    trim_ows(e, en);
    if (c)
        it->p = c + 1;
    else
        it->done = true;
    return true;
}

/* ---- fields and heads ------------------------------------------------------- */

static size_t
start_line_len(const struct ahg_http_head *h)
{
    if (h->kind == AHG_HTTP_REQUEST)
        return strlen(h->method) + 1 + strlen(h->target) + 1 + 8;
    return 8 + 1 + 3 + 1 + strlen(h->reason);
}

static void
field_clear(struct ahg_http_field *f)
{
    free(f->raw);
    memset(f, 0, sizeof(*f));
}

/* f := a field whose raw line is raw[0, raw_len), name its first name_len bytes and
 * the trimmed value raw[voff, voff + vlen). */
static int
field_from_raw(struct ahg_http_field *f, const char *raw, size_t raw_len, size_t name_len,
               size_t voff, size_t vlen)
{
    char *b = malloc(raw_len + 1 + name_len + 1 + vlen + 1);
    if (!b)
        return AHG_ENOMEM;
    memcpy(b, raw, raw_len);
    b[raw_len] = '\0';
    f->raw = b;
    f->raw_len = raw_len;
    f->name = b + raw_len + 1;
    memcpy(f->name, raw, name_len);
    f->name[name_len] = '\0';
    f->name_len = name_len;
    f->value = f->name + name_len + 1;
    memcpy(f->value, raw + voff, vlen);
    f->value[vlen] = '\0';
    f->value_len = vlen;
    return AHG_OK;
}

/* f := "name: value" */
static int
field_build(struct ahg_http_field *f, const char *name, size_t nl, const char *value, size_t vl)
{
    size_t raw_len = nl + 2 + vl;
    char *b = malloc(raw_len + 1 + nl + 1 + vl + 1);
    if (!b)
        return AHG_ENOMEM;
    memcpy(b, name, nl);
    b[nl] = ':';
    b[nl + 1] = ' ';
    memcpy(b + nl + 2, value, vl);
    b[raw_len] = '\0';
    f->raw = b;
    f->raw_len = raw_len;
    f->name = b + raw_len + 1;
    memcpy(f->name, name, nl);
    f->name[nl] = '\0';
    f->name_len = nl;
    f->value = f->name + nl + 1;
    memcpy(f->value, value, vl);
    f->value[vl] = '\0';
    f->value_len = vl;
    return AHG_OK;
}

static struct ahg_http_head *
head_alloc(enum ahg_http_kind kind)
{
    struct ahg_http_head *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->kind = kind;
    h->version_major = 1;
    h->version_minor = 1;
    h->framing = AHG_HTTP_BODY_NONE;
    h->keep_alive = true;
    return h;
}

static char *
dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* Make room for one more field. */
static int
head_reserve(struct ahg_http_head *h)
{
    if (h->nfields >= AHG_HTTP_HEAD_MAX_FIELDS)
        return AHG_ELIMIT;
    if (h->nfields < h->fields_cap)
        return AHG_OK;
    size_t cap = h->fields_cap ? h->fields_cap * 2 : 16;
    if (cap > AHG_HTTP_HEAD_MAX_FIELDS)
        cap = AHG_HTTP_HEAD_MAX_FIELDS;
    struct ahg_http_field *nf = realloc(h->fields, cap * sizeof(*nf));
    if (!nf)
        return AHG_ENOMEM;
    h->fields = nf;
    h->fields_cap = cap;
    return AHG_OK;
}

static void
head_remove_at(struct ahg_http_head *h, size_t i)
{
    h->bytes -= h->fields[i].raw_len + 2;
    field_clear(&h->fields[i]);
    memmove(&h->fields[i], &h->fields[i + 1], (h->nfields - i - 1) * sizeof(h->fields[0]));
    h->nfields--;
}

void
ahg_http_head_free(struct ahg_http_head *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->nfields; i++)
        field_clear(&h->fields[i]);
    free(h->fields);
    free(h->method);
    free(h->target);
    free(h->reason);
    free(h);
}

static bool
valid_target(const char *t, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c < 0x21 || c > 0x7e || c == '#')
            return false;
    }
    return true;
}

static bool
valid_reason(const char *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!is_value_char((unsigned char)r[i]))
            return false;
    }
    return true;
}

struct ahg_http_head *
ahg_http_head_new_request(const char *method, const char *target, int *err)
{
    int rc = AHG_EINVAL;
    struct ahg_http_head *h = NULL;
    if (!method || !target || !is_token(method, strlen(method)) ||
        !valid_target(target, strlen(target)))
        goto fail;
    rc = AHG_ENOMEM;
    h = head_alloc(AHG_HTTP_REQUEST);
    if (!h)
        goto fail;
    h->method = dup_n(method, strlen(method));
    h->target = dup_n(target, strlen(target));
    if (!h->method || !h->target)
        goto fail;
    rc = AHG_ELIMIT;
    h->bytes = start_line_len(h) + 2 + 2;
    if (h->bytes > AHG_HTTP_HEAD_MAX_BYTES)
        goto fail;
    return h;
fail:
    ahg_http_head_free(h);
    if (err)
        *err = rc;
    return NULL;
}

struct ahg_http_head *
ahg_http_head_new_response(int status, const char *reason, int *err)
{
    int rc = AHG_EINVAL;
    struct ahg_http_head *h = NULL;
    if (status < 100 || status > 599)
        goto fail;
    if (!reason)
        reason = ahg_http_reason(status);
    if (strlen(reason) > 1024 || !valid_reason(reason, strlen(reason)))
        goto fail;
    rc = AHG_ENOMEM;
    h = head_alloc(AHG_HTTP_RESPONSE);
    if (!h)
        goto fail;
    h->status = status;
    h->reason = dup_n(reason, strlen(reason));
    if (!h->reason)
        goto fail;
    h->bytes = start_line_len(h) + 2 + 2;
    return h;
fail:
    ahg_http_head_free(h);
    if (err)
        *err = rc;
    return NULL;
}

/* Validate name/value for add/set; trims the value. */
static int
check_name_value(const char *name, const char **value, size_t *vl)
{
    if (!name || !*value || !is_token(name, strlen(name)))
        return AHG_EINVAL;
    *vl = strlen(*value);
    trim_ows(value, vl);
    if (!valid_reason(*value, *vl))
        return AHG_EINVAL;
    return AHG_OK;
}

int
ahg_http_head_add(struct ahg_http_head *h, const char *name, const char *value)
{
    size_t vl;
    if (!h)
        return AHG_EINVAL;
    int rc = check_name_value(name, &value, &vl);
    if (rc != AHG_OK)
        return rc;
    size_t nl = strlen(name);
    size_t line = nl + 2 + vl + 2;
    if (line > AHG_HTTP_HEAD_MAX_BYTES || h->bytes + line > AHG_HTTP_HEAD_MAX_BYTES)
        return AHG_ELIMIT;
    rc = head_reserve(h);
    if (rc != AHG_OK)
        return rc;
    rc = field_build(&h->fields[h->nfields], name, nl, value, vl);
    if (rc != AHG_OK)
        return rc;
    h->nfields++;
    h->bytes += line;
    return AHG_OK;
}

static size_t
find_index(const struct ahg_http_head *h, const char *name, size_t nl, size_t from)
{
    for (size_t i = from; i < h->nfields; i++) {
        if (ci_eq(h->fields[i].name, h->fields[i].name_len, name, nl))
            return i;
    }
    return SIZE_MAX;
}

/* Replace field i's value (keeping its name case) and remove the later fields
 * with the same name. */
static int
replace_value(struct ahg_http_head *h, size_t i, const char *value, size_t vl)
{
    struct ahg_http_field *f = &h->fields[i];
    size_t nl = f->name_len;
    size_t newline = nl + 2 + vl + 2;
    size_t bytes = h->bytes - (f->raw_len + 2) + newline;
    for (size_t j = find_index(h, f->name, nl, i + 1); j != SIZE_MAX;
         j = find_index(h, f->name, nl, j + 1))
        bytes -= h->fields[j].raw_len + 2;
    if (newline > AHG_HTTP_HEAD_MAX_BYTES || bytes > AHG_HTTP_HEAD_MAX_BYTES)
        return AHG_ELIMIT;
    struct ahg_http_field nf;
    int rc = field_build(&nf, f->name, nl, value, vl);
    if (rc != AHG_OK)
        return rc;
    h->bytes = h->bytes - (f->raw_len + 2) + newline;
    field_clear(f);
    *f = nf;
    for (size_t j = find_index(h, nf.name, nl, i + 1); j != SIZE_MAX;
         j = find_index(h, nf.name, nl, j))
        head_remove_at(h, j);
    return AHG_OK;
}

int
ahg_http_head_set(struct ahg_http_head *h, const char *name, const char *value)
{
    size_t vl;
    if (!h)
        return AHG_EINVAL;
    int rc = check_name_value(name, &value, &vl);
    if (rc != AHG_OK)
        return rc;
    size_t i = find_index(h, name, strlen(name), 0);
    if (i == SIZE_MAX)
        return ahg_http_head_add(h, name, value);
    return replace_value(h, i, value, vl);
}

size_t
ahg_http_head_remove(struct ahg_http_head *h, const char *name)
{
    if (!h || !name)
        return 0;
    size_t nl = strlen(name), n = 0;
    for (size_t i = find_index(h, name, nl, 0); i != SIZE_MAX; i = find_index(h, name, nl, i)) {
        head_remove_at(h, i);
        n++;
    }
    return n;
}

const struct ahg_http_field *
ahg_http_head_find(const struct ahg_http_head *h, const char *name, size_t *pos)
{
    if (!h || !name || !pos)
        return NULL;
    size_t i = find_index(h, name, strlen(name), *pos);
    if (i == SIZE_MAX) {
        *pos = h->nfields;
        return NULL;
    }
    *pos = i + 1;
    return &h->fields[i];
}

const char *
ahg_http_head_get(const struct ahg_http_head *h, const char *name, size_t *len)
{
    size_t pos = 0;
    const struct ahg_http_field *f = ahg_http_head_find(h, name, &pos);
    if (!f)
        return NULL;
    if (len)
        *len = f->value_len;
    return f->value;
}

static bool
has_token_n(const struct ahg_http_head *h, const char *name, const char *tok, size_t tl)
{
    size_t pos = 0;
    const struct ahg_http_field *f;
    while ((f = ahg_http_head_find(h, name, &pos)) != NULL) {
        struct list_iter it;
        const char *e;
        size_t en;
        list_init(&it, f->value, f->value_len);
        while (list_next(&it, &e, &en)) {
            if (ci_eq(e, en, tok, tl))
                return true;
        }
    }
    return false;
}

bool
ahg_http_head_has_token(const struct ahg_http_head *h, const char *name, const char *token)
{
    if (!h || !name || !token)
        return false;
    return has_token_n(h, name, token, strlen(token));
}

/* ---- hop-by-hop ------------------------------------------------------------- */

static const char *const hop_names[] = {
    "Connection", "Keep-Alive",         "Proxy-Connection",    "TE", "Transfer-Encoding", "Upgrade",
    "Trailer",    "Proxy-Authenticate", "Proxy-Authorization",
};

static bool
is_fixed_hop(const char *n, size_t nl)
{
    for (size_t i = 0; i < sizeof(hop_names) / sizeof(hop_names[0]); i++) {
        if (ci_eqz(n, nl, hop_names[i]))
            return true;
    }
    return false;
}

static bool
is_protected(const char *n, size_t nl)
{
    return ci_eqz(n, nl, "Host") || ci_eqz(n, nl, "Content-Length");
}

static uint32_t
ci_hash(const char *s, size_t n)
{
    uint32_t x = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        x ^= lower((unsigned char)s[i]);
        x *= 16777619u;
    }
    return x;
}

struct name_hash {
    uint32_t hash;
    uint32_t idx;
};

static int
cmp_name_hash(const void *a, const void *b)
{
    const struct name_hash *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

/* mask[i] = 1 for each hop-by-hop field i. Sorting the name hashes keeps this
 * O((fields + tokens) log fields) for heads with long Connection lists. */
static int
hop_mask(const struct ahg_http_head *h, unsigned char *mask)
{
    bool conn = false;
    for (size_t i = 0; i < h->nfields; i++) {
        const struct ahg_http_field *f = &h->fields[i];
        mask[i] = is_fixed_hop(f->name, f->name_len);
        if (ci_eqz(f->name, f->name_len, "Connection"))
            conn = true;
    }
    if (!conn)
        return AHG_OK;
    struct name_hash *nh = malloc(h->nfields * sizeof(*nh));
    if (!nh)
        return AHG_ENOMEM;
    for (size_t i = 0; i < h->nfields; i++) {
        nh[i].hash = ci_hash(h->fields[i].name, h->fields[i].name_len);
        nh[i].idx = (uint32_t)i;
    }
    qsort(nh, h->nfields, sizeof(*nh), cmp_name_hash);
    size_t pos = 0;
    const struct ahg_http_field *f;
    while ((f = ahg_http_head_find(h, "Connection", &pos)) != NULL) {
        struct list_iter it;
        const char *e;
        size_t en;
        list_init(&it, f->value, f->value_len);
        while (list_next(&it, &e, &en)) {
            if (en == 0 || is_protected(e, en))
                continue;
            uint32_t th = ci_hash(e, en);
            size_t lo = 0, hi = h->nfields;
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (nh[mid].hash < th)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            for (size_t k = lo; k < h->nfields && nh[k].hash == th; k++) {
                const struct ahg_http_field *g = &h->fields[nh[k].idx];
                if (ci_eq(g->name, g->name_len, e, en))
                    mask[nh[k].idx] = 1;
            }
        }
    }
    free(nh);
    return AHG_OK;
}

int
ahg_http_head_strip_hop_by_hop(struct ahg_http_head *h, size_t *removed)
{
    if (removed)
        *removed = 0;
    if (!h)
        return AHG_EINVAL;
    if (h->nfields == 0)
        return AHG_OK;
    unsigned char *mask = malloc(h->nfields);
    if (!mask)
        return AHG_ENOMEM;
    int rc = hop_mask(h, mask);
    if (rc != AHG_OK) {
        free(mask);
        return rc;
    }
    size_t w = 0, n = 0;
    for (size_t i = 0; i < h->nfields; i++) {
        if (mask[i]) {
            h->bytes -= h->fields[i].raw_len + 2;
            field_clear(&h->fields[i]);
            n++;
        } else {
            h->fields[w++] = h->fields[i];
        }
    }
    h->nfields = w;
    free(mask);
    if (removed)
        *removed = n;
    return AHG_OK;
}

/* ---- serialisation ---------------------------------------------------------- */

typedef int (*sink_fn)(void *ctx, const char *s, size_t n);

struct buf_sink {
    char *out;
    size_t cap;
    size_t len;
};

static int
buf_sink_put(void *ctx, const char *s, size_t n)
{
    struct buf_sink *b = ctx;
    if (n && b->len <= b->cap && n <= b->cap - b->len)
        memcpy(b->out + b->len, s, n);
    b->len += n;
    return AHG_OK;
}

static int
emit_head(const struct ahg_http_head *h, const unsigned char *mask, sink_fn put, void *ctx)
{
    char ver[9] = "HTTP/1.1";
    ver[5] = (char)('0' + h->version_major);
    ver[7] = (char)('0' + h->version_minor);
    int rc;
#define PUT(s, n)                                                                                  \
    do {                                                                                           \
        rc = put(ctx, (s), (n));                                                                   \
        if (rc != AHG_OK)                                                                          \
            return rc;                                                                             \
    } while (0)
    if (h->kind == AHG_HTTP_REQUEST) {
        PUT(h->method, strlen(h->method));
        PUT(" ", 1);
        PUT(h->target, strlen(h->target));
        PUT(" ", 1);
        PUT(ver, 8);
    } else {
        char st[5];
        st[0] = ' ';
        st[1] = (char)('0' + h->status / 100);
        st[2] = (char)('0' + h->status / 10 % 10);
        st[3] = (char)('0' + h->status % 10);
        st[4] = ' ';
        PUT(ver, 8);
        PUT(st, 5);
        PUT(h->reason, strlen(h->reason));
    }
    PUT("\r\n", 2);
    for (size_t i = 0; i < h->nfields; i++) {
        if (mask && mask[i])
            continue;
        PUT(h->fields[i].raw, h->fields[i].raw_len);
        PUT("\r\n", 2);
    }
    PUT("\r\n", 2);
#undef PUT
    return AHG_OK;
}

static bool
head_sane(const struct ahg_http_head *h)
{
    if (h->version_major < 0 || h->version_major > 9 || h->version_minor < 0 ||
        h->version_minor > 9)
        return false;
    if (h->kind == AHG_HTTP_REQUEST)
        return h->method && h->target;
    return h->reason && h->status >= 100 && h->status <= 999;
}

int
ahg_http_head_serialize(const struct ahg_http_head *h, unsigned flags, char *out, size_t outsz,
                        size_t *outlen)
{
    if (!outlen)
        return AHG_EINVAL;
    *outlen = 0;
    if (!h || (!out && outsz) || !head_sane(h))
        return AHG_EINVAL;
    unsigned char *mask = NULL;
    if ((flags & AHG_HTTP_SER_DROP_HOP) && h->nfields) {
        mask = malloc(h->nfields);
        if (!mask)
            return AHG_ENOMEM;
        int rc = hop_mask(h, mask);
        if (rc != AHG_OK) {
            free(mask);
            return rc;
        }
    }
    struct buf_sink b;
    b.out = out;
    b.cap = outsz;
    b.len = 0;
    (void)emit_head(h, mask, buf_sink_put, &b);
    free(mask);
    *outlen = b.len;
    return b.len <= outsz ? AHG_OK : AHG_ELIMIT;
}

/* ---- parser ----------------------------------------------------------------- */

enum pstate { PS_HEAD, PS_BODY, PS_DONE, PS_FAILED };
enum hstate { HS_LEAD, HS_LEAD_CR, HS_LINE, HS_CR };
enum cstate {
    CS_SIZE0,
    CS_SIZE,
    CS_BWS,
    CS_EXT,
    CS_SIZE_LF,
    CS_DATA,
    CS_DATA_CR,
    CS_DATA_LF,
    CS_TSTART,
    CS_TNAME,
    CS_TVALUE,
    CS_TLF,
    CS_END_LF,
};

struct ahg_http_parser {
    enum ahg_http_kind kind;
    struct ahg_http_limits lim;
    enum pstate state;
    int err;

    /* head scanner */
    enum hstate hs;
    char *buf; /* the raw head from the start line on; grows up to max_head */
    size_t buf_cap;
    size_t len;
    size_t line_start;
    size_t nlines;
    size_t nfields;
    unsigned nlead;
    bool req_head; /* response parser: the request was HEAD */

    struct ahg_http_head *head; /* owned until taken */
    enum ahg_http_framing framing;

    /* body */
    uint64_t content_length;
    uint64_t remaining;
    uint64_t decoded;
    enum cstate cs;
    uint64_t chunk_size;
    size_t chunk_line;
    size_t trailer_bytes;
    size_t trailer_fields;
};

/* Head buffer: first allocation, and the largest size kept across reset. */
#define HEAD_BUF_INITIAL 1024u
#define HEAD_BUF_KEEP    4096u

/* Make room for one more head byte (p->len < max_head holds). */
static int
head_buf_grow(struct ahg_http_parser *p)
{
    if (p->len < p->buf_cap)
        return AHG_OK;
    size_t cap = p->buf_cap ? p->buf_cap * 2 : HEAD_BUF_INITIAL;
    if (cap > p->lim.max_head)
        cap = p->lim.max_head;
    char *nb = realloc(p->buf, cap);
    if (!nb)
        return AHG_ENOMEM;
    p->buf = nb;
    p->buf_cap = cap;
    return AHG_OK;
}

void
ahg_http_limits_default(struct ahg_http_limits *lim)
{
    if (!lim)
        return;
    lim->max_head = AHG_HTTP_DEFAULT_MAX_HEAD;
    lim->max_line = AHG_HTTP_DEFAULT_MAX_LINE;
    lim->max_fields = AHG_HTTP_DEFAULT_MAX_FIELDS;
    lim->max_body = 0;
}

struct ahg_http_parser *
ahg_http_parser_new(enum ahg_http_kind kind, const struct ahg_http_limits *lim, int *err)
{
    struct ahg_http_limits l;
    ahg_http_limits_default(&l);
    if (lim) {
        if (lim->max_head)
            l.max_head = lim->max_head;
        if (lim->max_line)
            l.max_line = lim->max_line;
        else if (l.max_line > l.max_head)
            l.max_line = l.max_head;
        if (lim->max_fields)
            l.max_fields = lim->max_fields;
        l.max_body = lim->max_body;
    }
    int rc = AHG_EINVAL;
    struct ahg_http_parser *p = NULL;
    if ((kind != AHG_HTTP_REQUEST && kind != AHG_HTTP_RESPONSE) ||
        l.max_head > AHG_HTTP_MAX_HEAD_CEIL || l.max_line > l.max_head ||
        l.max_fields > AHG_HTTP_MAX_FIELDS_CEIL)
        goto fail;
    rc = AHG_ENOMEM;
    p = calloc(1, sizeof(*p));
    if (!p)
        goto fail;
    p->kind = kind;
    p->lim = l;
    ahg_http_parser_reset(p);
    return p;
fail:
    free(p);
    if (err)
        *err = rc;
    return NULL;
}

void
ahg_http_parser_reset(struct ahg_http_parser *p)
{
    if (!p)
        return;
    ahg_http_head_free(p->head);
    p->head = NULL;
    if (p->buf_cap > HEAD_BUF_KEEP) {
        /* do not pin a large head buffer on an idle keep-alive connection */
        free(p->buf);
        p->buf = NULL;
        p->buf_cap = 0;
    }
    p->state = PS_HEAD;
    p->err = AHG_OK;
    p->hs = HS_LEAD;
    p->len = 0;
    p->line_start = 0;
    p->nlines = 0;
    p->nfields = 0;
    p->nlead = 0;
    p->req_head = false;
    p->framing = AHG_HTTP_BODY_NONE;
    p->content_length = 0;
    p->remaining = 0;
    p->decoded = 0;
    p->cs = CS_SIZE0;
    p->chunk_size = 0;
    p->chunk_line = 0;
    p->trailer_bytes = 0;
    p->trailer_fields = 0;
}

void
ahg_http_parser_free(struct ahg_http_parser *p)
{
    if (!p)
        return;
    ahg_http_head_free(p->head);
    free(p->buf);
    free(p);
}

int
ahg_http_parser_set_request_method(struct ahg_http_parser *p, const char *method)
{
    if (!p || !method || p->kind != AHG_HTTP_RESPONSE || p->state != PS_HEAD ||
        !is_token(method, strlen(method)))
        return AHG_EINVAL;
    if (strcmp(method, "CONNECT") == 0)
        return AHG_ENOTIMPL;
    p->req_head = strcmp(method, "HEAD") == 0;
    return AHG_OK;
}

static int
fail(struct ahg_http_parser *p, int err)
{
    p->state = PS_FAILED;
    p->err = err;
    return err;
}

/* "HTTP/1.0" or "HTTP/1.1"; other versions are AHG_EPROTO (no 505 code yet). */
static int
parse_version(const char *s, size_t n, int *maj, int *min)
{
    if (n != 8 || memcmp(s, "HTTP/", 5) != 0 || s[6] != '.' || s[5] < '0' || s[5] > '9' ||
        s[7] < '0' || s[7] > '9')
        return AHG_EPROTO;
    *maj = s[5] - '0';
    *min = s[7] - '0';
    if (*maj != 1 || *min > 1)
        return AHG_EPROTO;
    return AHG_OK;
}

struct start_line {
    size_t method_len; /* request: method is s[0, method_len) */
    size_t target_off, target_len;
    int maj, min;
    int status;
    size_t reason_off, reason_len;
};

static bool
valid_host(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("-._~!$&'()*+,;=:%[]", c)))
            return false;
    }
    return true;
}

/* origin-form, absolute-form (http/https, no userinfo) or asterisk-form. */
static bool
valid_target_form(const char *m, size_t ml, const char *t, size_t tl)
{
    if (t[0] == '/')
        return true;
    if (tl == 1 && t[0] == '*')
        return ml == 7 && memcmp(m, "OPTIONS", 7) == 0;
    size_t skip;
    if (tl > 7 && ci_eq(t, 7, "http://", 7))
        skip = 7;
    else if (tl > 8 && ci_eq(t, 8, "https://", 8))
        skip = 8;
    else
        return false;
    size_t a = skip;
    while (a < tl && t[a] != '/' && t[a] != '?')
        a++;
    return valid_host(t + skip, a - skip);
}

static int
parse_request_line(const char *s, size_t n, struct start_line *sl)
{
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)s[i]))
        i++;
    if (i == 0 || i == n || s[i] != ' ')
        return AHG_EPROTO;
    sl->method_len = i++;
    sl->target_off = i;
    while (i < n && s[i] != ' ')
        i++;
    sl->target_len = i - sl->target_off;
    if (i == n || !valid_target(s + sl->target_off, sl->target_len))
        return AHG_EPROTO;
    i++;
    int rc = parse_version(s + i, n - i, &sl->maj, &sl->min);
    if (rc != AHG_OK)
        return rc;
    if (sl->method_len == 7 && memcmp(s, "CONNECT", 7) == 0)
        return AHG_ENOTIMPL;
    if (!valid_target_form(s, sl->method_len, s + sl->target_off, sl->target_len))
        return AHG_EPROTO;
    return AHG_OK;
}

/* HTTP-version SP 3DIGIT [ SP reason-phrase ] (the SP before an empty reason may be
 * missing, as many servers do). */
static int
parse_status_line(const char *s, size_t n, struct start_line *sl)
{
    if (n < 12 || s[8] != ' ')
        return AHG_EPROTO;
    int rc = parse_version(s, 8, &sl->maj, &sl->min);
    if (rc != AHG_OK)
        return rc;
    if (s[9] < '1' || s[9] > '5' || s[10] < '0' || s[10] > '9' || s[11] < '0' || s[11] > '9')
        return AHG_EPROTO;
    sl->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    if (n == 12) {
        sl->reason_off = 12;
        sl->reason_len = 0;
        return AHG_OK;
    }
    if (s[12] != ' ' || !valid_reason(s + 13, n - 13))
        return AHG_EPROTO;
    sl->reason_off = 13;
    sl->reason_len = n - 13;
    return AHG_OK;
}

/* name ":" OWS value OWS with a token name and value octets only. */
static int
parse_field_line(const char *s, size_t n, size_t *name_len, size_t *voff, size_t *vlen)
{
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)s[i]))
        i++;
    if (i == 0 || i == n || s[i] != ':')
        return AHG_EPROTO; /* obs-fold, empty/invalid name, space before ':' */
    *name_len = i++;
    for (size_t j = i; j < n; j++) {
        if (!is_value_char((unsigned char)s[j]))
            return AHG_EPROTO;
    }
    const char *v = s + i;
    size_t vl = n - i;
    trim_ows(&v, &vl);
    *voff = (size_t)(v - s);
    *vlen = vl;
    return AHG_OK;
}

/* A complete line buf[line_start, len - 2) arrived. 1 = end of head. */
static int
end_of_line(struct ahg_http_parser *p)
{
    const char *s = p->buf + p->line_start;
    size_t n = p->len - 2 - p->line_start;
    int rc;
    if (p->nlines == 0) {
        struct start_line sl;
        rc = p->kind == AHG_HTTP_REQUEST ? parse_request_line(s, n, &sl)
                                         : parse_status_line(s, n, &sl);
        if (rc != AHG_OK)
            return rc;
    } else if (n == 0) {
        return 1;
    } else {
        size_t nl, vo, vl;
        if (++p->nfields > p->lim.max_fields)
            return AHG_EHDRSIZE;
        rc = parse_field_line(s, n, &nl, &vo, &vl);
        if (rc != AHG_OK)
            return rc;
    }
    p->nlines++;
    p->line_start = p->len;
    return 0;
}

/* Build the head from the validated bytes in p->buf. */
static int
build_head(struct ahg_http_parser *p, struct ahg_http_head **out)
{
    const char *s = p->buf;
    const char *end = p->buf + p->len;
    const char *eol = memchr(s, '\r', (size_t)(end - s));
    size_t n = (size_t)(eol - s);
    struct start_line sl;
    int rc;
    struct ahg_http_head *h = head_alloc(p->kind);
    if (!h)
        return AHG_ENOMEM;
    if (p->kind == AHG_HTTP_REQUEST) {
        rc = parse_request_line(s, n, &sl);
        if (rc == AHG_OK) {
            rc = AHG_ENOMEM;
            h->method = dup_n(s, sl.method_len);
            h->target = dup_n(s + sl.target_off, sl.target_len);
            if (h->method && h->target)
                rc = AHG_OK;
        }
    } else {
        rc = parse_status_line(s, n, &sl);
        if (rc == AHG_OK) {
            h->status = sl.status;
            h->reason = dup_n(s + sl.reason_off, sl.reason_len);
            rc = h->reason ? AHG_OK : AHG_ENOMEM;
        }
    }
    if (rc != AHG_OK)
        goto fail;
    h->version_major = sl.maj;
    h->version_minor = sl.min;
    h->bytes = start_line_len(h) + 2 + 2;
    for (s = eol + 2; s < end; s = eol + 2) {
        eol = memchr(s, '\r', (size_t)(end - s));
        n = (size_t)(eol - s);
        if (n == 0)
            break;
        size_t nl, vo, vl;
        rc = parse_field_line(s, n, &nl, &vo, &vl);
        if (rc == AHG_OK)
            rc = head_reserve(h);
        if (rc == AHG_OK)
            rc = field_from_raw(&h->fields[h->nfields], s, n, nl, vo, vl);
        if (rc != AHG_OK)
            goto fail;
        h->nfields++;
        h->bytes += n + 2;
    }
    *out = h;
    return AHG_OK;
fail:
    ahg_http_head_free(h);
    return rc;
}

/* Content-Length: every element of every field must be the same decimal number;
 * duplicates are merged into the first field. */
static int
check_content_length(struct ahg_http_head *h, bool *has, uint64_t *value)
{
    size_t pos = 0, nfield = 0, nelem = 0, first = 0;
    const struct ahg_http_field *f;
    uint64_t v0 = 0;
    bool raw_canonical = true;
    while ((f = ahg_http_head_find(h, "Content-Length", &pos)) != NULL) {
        if (nfield++ == 0)
            first = pos - 1;
        struct list_iter it;
        const char *e;
        size_t en;
        list_init(&it, f->value, f->value_len);
        while (list_next(&it, &e, &en)) {
            if (en == 0)
                return AHG_EPROTO;
            uint64_t v = 0;
            for (size_t i = 0; i < en; i++) {
                if (e[i] < '0' || e[i] > '9')
                    return AHG_EPROTO; /* also signs, spaces inside, hex */
                unsigned d = (unsigned)(e[i] - '0');
                if (v > (INT64_MAX_U - d) / 10)
                    return AHG_EPROTO; /* overflow */
                v = v * 10 + d;
            }
            if (nelem++ == 0)
                v0 = v;
            else if (v != v0)
                return AHG_EPROTO;
        }
    }
    *has = nfield > 0;
    *value = v0;
    if (nelem > 1)
        raw_canonical = false;
    if (nfield > 1 || !raw_canonical) {
        char num[24];
        size_t k = sizeof(num);
        uint64_t v = v0;
        do {
            num[--k] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        return replace_value(h, first, num + k, sizeof(num) - k);
    }
    return AHG_OK;
}

/* Transfer-Encoding: known codings, chunked at most once and last. */
static int
check_transfer_encoding(const struct ahg_http_head *h, bool *chunked_last)
{
    static const char *const known[] = {"gzip", "x-gzip", "deflate", "compress", "x-compress"};
    size_t pos = 0, nelem = 0;
    bool chunked = false;
    const struct ahg_http_field *f;
    while ((f = ahg_http_head_find(h, "Transfer-Encoding", &pos)) != NULL) {
        struct list_iter it;
        const char *e;
        size_t en;
        list_init(&it, f->value, f->value_len);
        while (list_next(&it, &e, &en)) {
            if (en == 0)
                continue;
            if (!is_token(e, en))
                return AHG_EPROTO; /* parameters or garbage */
            if (chunked)
                return AHG_EPROTO; /* chunked twice, or not last */
            nelem++;
            if (ci_eqz(e, en, "chunked")) {
                chunked = true;
                continue;
            }
            bool ok = false;
            for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
                ok = ok || ci_eqz(e, en, known[i]);
            if (!ok)
                return AHG_ENOTIMPL;
        }
    }
    if (nelem == 0)
        return AHG_EPROTO;
    *chunked_last = chunked;
    return AHG_OK;
}

static int
analyse_head(struct ahg_http_parser *p, struct ahg_http_head *h)
{
    bool req = p->kind == AHG_HTTP_REQUEST;
    bool v11 = h->version_minor == 1;
    int rc;

    if (req) {
        size_t pos = 0, nhost = 0;
        const struct ahg_http_field *f, *host = NULL;
        while ((f = ahg_http_head_find(h, "Host", &pos)) != NULL) {
            host = f;
            nhost++;
        }
        if (nhost > 1 || (nhost == 0 && v11))
            return AHG_EPROTO;
        if (host && !valid_host(host->value, host->value_len))
            return AHG_EPROTO;
    }

    bool has_cl = false, has_te = false, te_chunked = false;
    uint64_t cl = 0;
    rc = check_content_length(h, &has_cl, &cl);
    if (rc != AHG_OK)
        return rc;
    size_t pos = 0;
    has_te = ahg_http_head_find(h, "Transfer-Encoding", &pos) != NULL;
    if (has_te) {
        if (has_cl || !v11)
            return AHG_EPROTO;
        rc = check_transfer_encoding(h, &te_chunked);
        if (rc != AHG_OK)
            return rc;
        if (req && !te_chunked)
            return AHG_EPROTO;
    }

    enum ahg_http_framing fr;
    if (!req && (p->req_head || h->status < 200 || h->status == 204 || h->status == 304))
        fr = AHG_HTTP_BODY_NONE;
    else if (has_te)
        fr = te_chunked ? AHG_HTTP_BODY_CHUNKED : AHG_HTTP_BODY_CLOSE;
    else if (has_cl)
        fr = cl > 0 ? AHG_HTTP_BODY_LENGTH : AHG_HTTP_BODY_NONE;
    else
        fr = req ? AHG_HTTP_BODY_NONE : AHG_HTTP_BODY_CLOSE;

    h->framing = fr;
    h->chunked = fr == AHG_HTTP_BODY_CHUNKED;
    h->content_length = fr == AHG_HTTP_BODY_LENGTH ? cl : 0;
    bool close = has_token_n(h, "Connection", "close", 5);
    if (v11)
        h->keep_alive = !close;
    else
        h->keep_alive = !close && has_token_n(h, "Connection", "keep-alive", 10);
    if (fr == AHG_HTTP_BODY_CLOSE)
        h->keep_alive = false;
    if (req) {
        const char *up = ahg_http_head_get(h, "Upgrade", NULL);
        h->upgrade = v11 && up && *up && has_token_n(h, "Connection", "upgrade", 7);
    } else if (h->status == 101) {
        h->upgrade = true;
        h->keep_alive = false;
    }
    return AHG_OK;
}

/* Second opinion from http_parser on the normalised head. */
struct hp_check {
    http_parser hp;
    bool done;
    unsigned maj, min, status, method, flags;
    uint64_t content_length;
};

static int
hp_headers_complete(http_parser *hp)
{
    struct hp_check *c = hp->data;
    c->done = true;
    c->maj = hp->http_major;
    c->min = hp->http_minor;
    c->status = hp->status_code;
    c->method = hp->method;
    c->flags = hp->flags;
    c->content_length = hp->content_length;
    return 0;
}

static const http_parser_settings hp_settings = {
    .on_headers_complete = hp_headers_complete,
};

static int
hp_errno_to_err(enum http_errno e)
{
    switch (e) {
    case HPE_INVALID_METHOD:
        return AHG_ENOTIMPL;
    case HPE_HEADER_OVERFLOW:
        return AHG_EHDRSIZE;
    default:
        return AHG_EPROTO;
    }
}

static int
hp_sink_put(void *ctx, const char *s, size_t n)
{
    struct hp_check *c = ctx;
    if (c->done || n == 0) /* http_parser takes a 0-length execute as EOF */
        return AHG_OK;
    size_t used = http_parser_execute(&c->hp, &hp_settings, s, n);
    if (HTTP_PARSER_ERRNO(&c->hp) != HPE_OK)
        return hp_errno_to_err(HTTP_PARSER_ERRNO(&c->hp));
    if (used != n && !c->done)
        return AHG_EPROTO;
    return AHG_OK;
}

static int
cross_check(struct ahg_http_parser *p, const struct ahg_http_head *h)
{
    struct hp_check c;
    memset(&c, 0, sizeof(c));
    http_parser_init(&c.hp, p->kind == AHG_HTTP_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE);
    c.hp.data = &c;
    int rc = emit_head(h, NULL, hp_sink_put, &c);
    if (rc != AHG_OK)
        return rc;
    if (!c.done || c.maj != (unsigned)h->version_major || c.min != (unsigned)h->version_minor)
        return AHG_EPROTO;
    if (p->kind == AHG_HTTP_REQUEST) {
        if (strcmp(http_method_str((enum http_method)c.method), h->method) != 0)
            return AHG_ENOTIMPL;
    } else if (c.status != (unsigned)h->status) {
        return AHG_EPROTO;
    }
    if (h->framing == AHG_HTTP_BODY_CHUNKED && !(c.flags & F_CHUNKED))
        return AHG_EPROTO;
    if (h->framing == AHG_HTTP_BODY_LENGTH && c.content_length != h->content_length)
        return AHG_EPROTO;
    return AHG_OK;
}

static int
complete_head(struct ahg_http_parser *p)
{
    struct ahg_http_head *h = NULL;
    int rc = build_head(p, &h);
    if (rc == AHG_OK)
        rc = analyse_head(p, h);
    if (rc == AHG_OK)
        rc = cross_check(p, h);
    if (rc != AHG_OK) {
        ahg_http_head_free(h);
        return fail(p, rc);
    }
    p->head = h;
    p->framing = h->framing;
    p->content_length = h->content_length;
    p->remaining = h->content_length;
    p->state = h->framing == AHG_HTTP_BODY_NONE ? PS_DONE : PS_BODY;
    return AHG_OK;
}

int
ahg_http_parser_feed(struct ahg_http_parser *p, const char *data, size_t len, size_t *consumed)
{
    if (!consumed)
        return AHG_EINVAL;
    *consumed = 0;
    if (!p || (!data && len))
        return AHG_EINVAL;
    if (p->state == PS_FAILED)
        return p->err;
    if (p->state != PS_HEAD)
        return AHG_OK;
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        switch (p->hs) {
        case HS_LEAD:
            if (c == '\r') {
                p->hs = HS_LEAD_CR;
                continue;
            }
            if (c == '\n')
                goto proto; /* bare LF */
            p->hs = HS_LINE;
            break;
        case HS_LEAD_CR:
            if (c != '\n' || ++p->nlead > AHG_HTTP_MAX_LEADING_CRLF)
                goto proto;
            p->hs = HS_LEAD;
            continue;
        case HS_LINE:
            if (c == '\n')
                goto proto; /* bare LF */
            if (c == '\r')
                p->hs = HS_CR;
            break;
        case HS_CR:
            if (c != '\n')
                goto proto; /* bare CR */
            break;
        }
        if (p->nlines == 0 && c != '\r' && c != '\n' && p->len - p->line_start >= p->lim.max_line) {
            *consumed = i;
            return fail(p, p->kind == AHG_HTTP_REQUEST ? AHG_EURISIZE : AHG_EHDRSIZE);
        }
        if (p->len >= p->lim.max_head) {
            *consumed = i;
            return fail(p, AHG_EHDRSIZE);
        }
        if (head_buf_grow(p) != AHG_OK) {
            *consumed = i;
            return fail(p, AHG_ENOMEM);
        }
        p->buf[p->len++] = c;
        if (c == '\n') {
            p->hs = HS_LINE;
            int rc = end_of_line(p);
            if (rc < 0) {
                *consumed = i;
                return fail(p, rc);
            }
            if (rc == 1) {
                *consumed = i + 1;
                return complete_head(p);
            }
        }
        continue;
    proto:
        *consumed = i;
        return fail(p, AHG_EPROTO);
    }
    *consumed = len;
    return AHG_EAGAIN;
}

const struct ahg_http_head *
ahg_http_parser_head(const struct ahg_http_parser *p)
{
    return p ? p->head : NULL;
}

struct ahg_http_head *
ahg_http_parser_head_take(struct ahg_http_parser *p)
{
    if (!p)
        return NULL;
    struct ahg_http_head *h = p->head;
    p->head = NULL;
    return h;
}

enum ahg_http_framing
ahg_http_parser_framing(const struct ahg_http_parser *p)
{
    return p ? p->framing : AHG_HTTP_BODY_NONE;
}

uint64_t
ahg_http_parser_body_bytes(const struct ahg_http_parser *p)
{
    return p ? p->decoded : 0;
}

static int
deliver(struct ahg_http_parser *p, const char *d, size_t n, ahg_http_body_cb cb, void *ud)
{
    if (p->lim.max_body && n > p->lim.max_body - p->decoded)
        return AHG_ELIMIT;
    p->decoded += n;
    if (!cb || n == 0)
        return AHG_OK;
    int rc = cb(ud, d, n);
    if (rc > 0)
        rc = AHG_EINVAL;
    return rc;
}

/* Strict chunked decoding; returns AHG_OK at the end of the message. */
static int
chunked(struct ahg_http_parser *p, const char *data, size_t len, size_t *used, ahg_http_body_cb cb,
        void *ud)
{
    size_t i = 0;
    int rc;
    while (i < len) {
        unsigned char c = (unsigned char)data[i];
        if (p->cs == CS_DATA) {
            size_t n = len - i;
            if (n > p->remaining)
                n = (size_t)p->remaining;
            rc = deliver(p, data + i, n, cb, ud);
            i += n;
            if (rc != AHG_OK) {
                *used = i;
                return rc;
            }
            p->remaining -= n;
            if (p->remaining == 0)
                p->cs = CS_DATA_CR;
            continue;
        }
        if (p->cs <= CS_EXT && c != '\r' && ++p->chunk_line > AHG_HTTP_CHUNK_LINE_MAX)
            goto proto;
        if (p->cs >= CS_TSTART && ++p->trailer_bytes > p->lim.max_head) {
            *used = i;
            return AHG_EHDRSIZE;
        }
        switch (p->cs) {
        case CS_SIZE0:
            if (hex_val(c) < 0)
                goto proto;
            p->chunk_size = (uint64_t)hex_val(c);
            p->cs = CS_SIZE;
            break;
        case CS_SIZE:
            if (hex_val(c) >= 0) {
                uint64_t d = (uint64_t)hex_val(c);
                if (p->chunk_size > (INT64_MAX_U - d) / 16)
                    goto proto; /* chunk-size overflow */
                p->chunk_size = p->chunk_size * 16 + d;
            } else if (c == ';') {
                p->cs = CS_EXT;
            } else if (is_ows(c)) {
                p->cs = CS_BWS;
            } else if (c == '\r') {
                p->cs = CS_SIZE_LF;
            } else {
                goto proto;
            }
            break;
        case CS_BWS:
            if (c == ';')
                p->cs = CS_EXT;
            else if (!is_ows(c))
                goto proto;
            break;
        case CS_EXT:
            if (c == '\r')
                p->cs = CS_SIZE_LF;
            else if (!is_value_char(c))
                goto proto;
            break;
        case CS_SIZE_LF:
            if (c != '\n')
                goto proto; /* bare CR */
            p->chunk_line = 0;
            if (p->chunk_size == 0) {
                p->cs = CS_TSTART;
                break;
            }
            if (p->lim.max_body && p->chunk_size > p->lim.max_body - p->decoded) {
                *used = i;
                return AHG_ELIMIT;
            }
            p->remaining = p->chunk_size;
            p->cs = CS_DATA;
            break;
        case CS_DATA_CR:
            if (c != '\r')
                goto proto;
            p->cs = CS_DATA_LF;
            break;
        case CS_DATA_LF:
            if (c != '\n')
                goto proto;
            p->cs = CS_SIZE0;
            break;
        case CS_TSTART:
            if (c == '\r') {
                p->cs = CS_END_LF;
            } else if (is_tchar(c)) {
                if (++p->trailer_fields > p->lim.max_fields) {
                    *used = i;
                    return AHG_EHDRSIZE;
                }
                p->cs = CS_TNAME;
            } else {
                goto proto; /* obs-fold, bad name */
            }
            break;
        case CS_TNAME:
            if (c == ':')
                p->cs = CS_TVALUE;
            else if (!is_tchar(c))
                goto proto;
            break;
        case CS_TVALUE:
            if (c == '\r')
                p->cs = CS_TLF;
            else if (!is_value_char(c))
                goto proto;
            break;
        case CS_TLF:
            if (c != '\n')
                goto proto;
            p->cs = CS_TSTART;
            break;
        case CS_END_LF:
            if (c != '\n')
                goto proto;
            *used = i + 1;
            return AHG_OK;
        case CS_DATA:
            break; /* handled above */
        }
        i++;
    }
    *used = len;
    return AHG_EAGAIN;
proto:
    *used = i;
    return AHG_EPROTO;
}

int
ahg_http_parser_body(struct ahg_http_parser *p, const char *data, size_t len, size_t *consumed,
                     ahg_http_body_cb cb, void *ud)
{
    if (!consumed)
        return AHG_EINVAL;
    *consumed = 0;
    if (!p || (!data && len))
        return AHG_EINVAL;
    switch (p->state) {
    case PS_FAILED:
        return p->err;
    case PS_HEAD:
        return AHG_EINVAL;
    case PS_DONE:
        return AHG_OK;
    case PS_BODY:
        break;
    }
    int rc;
    size_t n = len;
    switch (p->framing) {
    case AHG_HTTP_BODY_LENGTH:
        if (p->lim.max_body && p->content_length > p->lim.max_body)
            return fail(p, AHG_ELIMIT);
        if (n > p->remaining)
            n = (size_t)p->remaining;
        rc = deliver(p, data, n, cb, ud);
        *consumed = n;
        if (rc != AHG_OK)
            return fail(p, rc);
        p->remaining -= n;
        rc = p->remaining ? AHG_EAGAIN : AHG_OK;
        break;
    case AHG_HTTP_BODY_CLOSE:
        rc = deliver(p, data, n, cb, ud);
        *consumed = n;
        if (rc != AHG_OK)
            return fail(p, rc);
        rc = AHG_EAGAIN;
        break;
    case AHG_HTTP_BODY_CHUNKED:
        rc = chunked(p, data, len, consumed, cb, ud);
        if (rc != AHG_OK && rc != AHG_EAGAIN)
            return fail(p, rc);
        break;
    case AHG_HTTP_BODY_NONE:
    default:
        rc = AHG_OK;
        break;
    }
    if (rc == AHG_OK)
        p->state = PS_DONE;
    return rc;
}

int
ahg_http_parser_eof(struct ahg_http_parser *p)
{
    if (!p)
        return AHG_EINVAL;
    switch (p->state) {
    case PS_FAILED:
        return p->err;
    case PS_DONE:
        return AHG_OK;
    case PS_HEAD:
        return (p->len == 0 && p->hs == HS_LEAD) ? AHG_ECLOSED : AHG_EPROTO;
    case PS_BODY:
        break;
    }
    if (p->framing == AHG_HTTP_BODY_CLOSE) {
        p->state = PS_DONE;
        return AHG_OK;
    }
    return AHG_EPROTO;
}
