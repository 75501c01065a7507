/*
 * hcmsg.c - Hybrid Connections control-channel messages (accept, request,
 * response, renewToken) to and from JSON with cJSON. See ahg/hcmsg.h for the rules.
 */
#include "ahg/hcmsg.h"

#include "ahg/err.h"

#include <cjson/cJSON.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest integer a double holds exactly; JSON integers beyond it are rejected. */
#define MAX_EXACT_INT 9007199254740992.0

/* Every field the four messages know, independent of its JSON key. */
enum fid {
    F_ADDRESS,
    F_ID,
    F_TARGET,
    F_METHOD,
    F_REMOTE,
    F_HEADERS,
    F_BODY,
    F_REQID,
    F_STATUS,
    F_DESC,
    F_TOKEN,
};

/* Which characters a string field may hold. */
enum chars {
    C_TEXT,   /* no control characters (C0, DEL) */
    C_FIELD,  /* like C_TEXT but HTAB allowed (header values, reason phrases) */
    C_TOKEN,  /* RFC 9110 token: one or more tchar */
    C_TARGET, /* no control characters and no space */
};

struct field {
    const char *key;
    enum fid id;
};

/* Tables in the documented encoding order. */
static const struct field accept_fields[] = {
    {"address", F_ADDRESS},
    {"id", F_ID},
    {"connectHeaders", F_HEADERS},
    {"remoteEndpoint", F_REMOTE},
};

static const struct field request_fields[] = {
    {"address", F_ADDRESS},
    {"id", F_ID},
    {"requestTarget", F_TARGET},
    {"method", F_METHOD},
    {"remoteEndpoint", F_REMOTE},
    {"requestHeaders", F_HEADERS},
    {"body", F_BODY},
};

static const struct field response_fields[] = {
    {"requestId", F_REQID},         {"statusCode", F_STATUS}, {"statusDescription", F_DESC},
    {"responseHeaders", F_HEADERS}, {"body", F_BODY},
};

static const struct field renew_fields[] = {
    {"token", F_TOKEN},
};

static const char *const type_names[] = {
    [AHG_HCMSG_ACCEPT] = "accept",
    [AHG_HCMSG_REQUEST] = "request",
    [AHG_HCMSG_RESPONSE] = "response",
    [AHG_HCMSG_RENEW_TOKEN] = "renewToken",
};

static const struct field *
fields_of(enum ahg_hcmsg_type type, size_t *n)
{
    switch (type) {
    case AHG_HCMSG_ACCEPT:
        *n = sizeof(accept_fields) / sizeof(accept_fields[0]);
        return accept_fields;
    case AHG_HCMSG_REQUEST:
        *n = sizeof(request_fields) / sizeof(request_fields[0]);
        return request_fields;
    case AHG_HCMSG_RESPONSE:
        *n = sizeof(response_fields) / sizeof(response_fields[0]);
        return response_fields;
    case AHG_HCMSG_RENEW_TOKEN:
        *n = sizeof(renew_fields) / sizeof(renew_fields[0]);
        return renew_fields;
    case AHG_HCMSG_NONE:
        break;
    }
    *n = 0;
    return NULL;
}

/* The struct member of a plain string field, NULL for other fields. */
static char **
str_slot(struct ahg_hcmsg *m, enum fid id)
{
    switch (id) {
    case F_ADDRESS:
        return &m->address;
    case F_ID:
        return &m->id;
    case F_TARGET:
        return &m->request_target;
    case F_METHOD:
        return &m->method;
    case F_REQID:
        return &m->request_id;
    case F_DESC:
        return &m->status_description;
    case F_TOKEN:
        return &m->token;
    case F_REMOTE:
    case F_HEADERS:
    case F_BODY:
    case F_STATUS:
        break;
    }
    return NULL;
}

static const char *
str_get(const struct ahg_hcmsg *m, enum fid id)
{
    switch (id) {
    case F_ADDRESS:
        return m->address;
    case F_ID:
        return m->id;
    case F_TARGET:
        return m->request_target;
    case F_METHOD:
        return m->method;
    case F_REQID:
        return m->request_id;
    case F_DESC:
        return m->status_description;
    case F_TOKEN:
        return m->token;
    case F_REMOTE:
    case F_HEADERS:
    case F_BODY:
    case F_STATUS:
        break;
    }
    return NULL;
}

static enum chars
chars_of(enum fid id)
{
    switch (id) {
    case F_METHOD:
        return C_TOKEN;
    case F_TARGET:
        return C_TARGET;
    case F_DESC:
        return C_FIELD;
    default:
        return C_TEXT;
    }
}

static bool
is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool
chars_ok(const char *s, enum chars cls)
{
    const unsigned char *p = (const unsigned char *)s;

    if (cls == C_TOKEN && *p == '\0')
        return false;
    for (; *p; p++) {
        unsigned char c = *p;
        if (cls == C_TOKEN) {
            if (!is_tchar(c))
                return false;
            continue;
        }
        if (c == 0x7f || (c < 0x20 && !(c == '\t' && cls == C_FIELD)))
            return false;
        if (c == ' ' && cls == C_TARGET)
            return false;
    }
    return true;
}

/* ASCII case-insensitive equality, independent of the locale. */
static bool
ieq(const char *a, const char *b)
{
    for (;; a++, b++) {
        unsigned char ca = (unsigned char)*a, cb = (unsigned char)*b;
        if (ca >= 'A' && ca <= 'Z')
            ca = (unsigned char)(ca - 'A' + 'a');
        if (cb >= 'A' && cb <= 'Z')
            cb = (unsigned char)(cb - 'A' + 'a');
        if (ca != cb)
            return false;
        if (ca == '\0')
            return true;
    }
}

static char *
dupstr(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* True when v is an integer a double represents exactly; *out receives it. */
static bool
exact_int(double v, long long *out)
{
    if (!(v >= -MAX_EXACT_INT && v <= MAX_EXACT_INT))
        return false; /* also rejects NaN */
    long long i = (long long)v;
    if ((double)i != v)
        return false;
    *out = i;
    return true;
}

void
ahg_hcmsg_init(struct ahg_hcmsg *m, enum ahg_hcmsg_type type)
{
    memset(m, 0, sizeof(*m));
    m->type = type;
    m->remote_port = -1;
    m->body = -1;
}

void
ahg_hcmsg_clear(struct ahg_hcmsg *m)
{
    if (!m)
        return;
    free(m->address);
    free(m->id);
    free(m->request_target);
    free(m->method);
    free(m->remote_address);
    for (size_t i = 0; i < m->nheaders; i++) {
        free(m->headers[i].name);
        free(m->headers[i].value);
    }
    free(m->headers);
    free(m->request_id);
    free(m->status_description);
    free(m->token);
    ahg_hcmsg_init(m, AHG_HCMSG_NONE);
}

const char *
ahg_hcmsg_type_name(enum ahg_hcmsg_type type)
{
    if (type >= AHG_HCMSG_ACCEPT && type <= AHG_HCMSG_RENEW_TOKEN)
        return type_names[type];
    return "unknown";
}

bool
ahg_hcmsg_is_rendezvous_only(const struct ahg_hcmsg *m)
{
    return m && m->type == AHG_HCMSG_REQUEST && m->address && !m->method && m->body < 0;
}

const char *
ahg_hcmsg_header_get(const struct ahg_hcmsg *m, const char *name)
{
    if (!m || !name || !m->headers)
        return NULL;
    for (size_t i = 0; i < m->nheaders; i++) {
        if (m->headers[i].name && ieq(m->headers[i].name, name))
            return m->headers[i].value;
    }
    return NULL;
}

/* ---- parsing ---------------------------------------------------------------- */

/*
 * One pass over the raw text before cJSON sees it: bounds the nesting depth (cJSON's
 * own limit is 1000 recursive calls), and rejects NUL bytes, \u0000 escapes and raw
 * control bytes inside strings, none of which survive as C strings.
 */
static int
prescan(const char *s, size_t len)
{
    size_t depth = 0;
    bool in_str = false;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\0')
            return AHG_EPROTO;
        if (in_str) {
            if (c == '\\') {
                if (i + 1 >= len)
                    return AHG_EPROTO;
                if (s[i + 1] == 'u' && len - i >= 6 && memcmp(s + i + 2, "0000", 4) == 0)
                    return AHG_EPROTO;
                i++; /* skip the escaped character; \uXXXX digits are plain */
            } else if (c == '"') {
                in_str = false;
            } else if (c < 0x20) {
                return AHG_EPROTO;
            }
            continue;
        }
        if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            if (++depth > AHG_HCMSG_MAX_DEPTH)
                return AHG_ELIMIT;
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
        }
    }
    return AHG_OK;
}

static int
take_string(const cJSON *item, enum chars cls, char **slot)
{
    if (!cJSON_IsString(item) || !item->valuestring)
        return AHG_EPROTO;
    if (!chars_ok(item->valuestring, cls))
        return AHG_EPROTO;
    *slot = dupstr(item->valuestring);
    return *slot ? AHG_OK : AHG_ENOMEM;
}

static int
parse_headers(const cJSON *obj, struct ahg_hcmsg *m)
{
    size_t n = 0;
    const cJSON *h;
    char num[32];

    if (!cJSON_IsObject(obj))
        return AHG_EPROTO;
    for (h = obj->child; h; h = h->next) {
        if (++n > AHG_HCMSG_MAX_HEADERS)
            return AHG_ELIMIT;
    }
    if (n == 0)
        return AHG_OK;
    m->headers = calloc(n, sizeof(*m->headers));
    if (!m->headers)
        return AHG_ENOMEM;

    for (h = obj->child; h; h = h->next) {
        const char *value;
        long long iv;

        if (!h->string || !chars_ok(h->string, C_TOKEN))
            return AHG_EPROTO;
        if (cJSON_IsString(h) && h->valuestring) {
            value = h->valuestring;
            if (!chars_ok(value, C_FIELD))
                return AHG_EPROTO;
        } else if (cJSON_IsNumber(h) && exact_int(h->valuedouble, &iv)) {
            (void)snprintf(num, sizeof(num), "%lld", iv);
            value = num;
        } else {
            return AHG_EPROTO;
        }
        struct ahg_hcmsg_header *dst = &m->headers[m->nheaders];
        dst->name = dupstr(h->string);
        dst->value = dupstr(value);
        if (dst->name || dst->value)
            m->nheaders++; /* so that clear() frees a half-filled entry */
        if (!dst->name || !dst->value)
            return AHG_ENOMEM;
    }
    return AHG_OK;
}

static int
parse_remote(const cJSON *obj, struct ahg_hcmsg *m)
{
    bool seen_addr = false, seen_port = false;

    if (!cJSON_IsObject(obj))
        return AHG_EPROTO;
    for (const cJSON *it = obj->child; it; it = it->next) {
        if (!it->string)
            continue;
        if (strcmp(it->string, "address") == 0) {
            if (seen_addr)
                return AHG_EPROTO;
            seen_addr = true;
            if (cJSON_IsNull(it))
                continue;
            int rc = take_string(it, C_TEXT, &m->remote_address);
            if (rc != AHG_OK)
                return rc;
        } else if (strcmp(it->string, "port") == 0) {
            long long port;
            if (seen_port)
                return AHG_EPROTO;
            seen_port = true;
            if (cJSON_IsNull(it))
                continue;
            if (!cJSON_IsNumber(it) || !exact_int(it->valuedouble, &port) || port < 0 ||
                port > 65535)
                return AHG_EPROTO;
            m->remote_port = (int)port;
        }
    }
    return AHG_OK;
}

static int
parse_status(const cJSON *item, int *out)
{
    long long v;

    if (cJSON_IsNumber(item)) {
        if (!exact_int(item->valuedouble, &v))
            return AHG_EPROTO;
    } else if (cJSON_IsString(item) && item->valuestring) {
        const char *s = item->valuestring;
        if (strlen(s) != 3)
            return AHG_EPROTO;
        v = 0;
        for (int i = 0; i < 3; i++) {
            if (s[i] < '0' || s[i] > '9')
                return AHG_EPROTO;
            v = v * 10 + (s[i] - '0');
        }
    } else {
        return AHG_EPROTO;
    }
    if (v < 100 || v > 999)
        return AHG_EPROTO;
    *out = (int)v;
    return AHG_OK;
}

static int
parse_field(const cJSON *item, enum fid id, struct ahg_hcmsg *m)
{
    switch (id) {
    case F_REMOTE:
        return parse_remote(item, m);
    case F_HEADERS:
        return parse_headers(item, m);
    case F_BODY:
        if (!cJSON_IsBool(item))
            return AHG_EPROTO;
        m->body = cJSON_IsTrue(item) ? 1 : 0;
        return AHG_OK;
    case F_STATUS:
        return parse_status(item, &m->status_code);
    default:
        return take_string(item, chars_of(id), str_slot(m, id));
    }
}

static bool
present(const char *s)
{
    return s && *s;
}

/* The required-field rules of ahg/hcmsg.h, shared by parse and encode. */
static bool
required_ok(const struct ahg_hcmsg *m)
{
    switch (m->type) {
    case AHG_HCMSG_ACCEPT:
        return present(m->address) && present(m->id);
    case AHG_HCMSG_REQUEST:
        if (!present(m->address))
            return false;
        if (ahg_hcmsg_is_rendezvous_only(m))
            return true;
        return present(m->id) && present(m->request_target) && present(m->method) && m->body >= 0;
    case AHG_HCMSG_RESPONSE:
        return present(m->request_id) && m->status_code >= 100 && m->status_code <= 999;
    case AHG_HCMSG_RENEW_TOKEN:
        return present(m->token);
    case AHG_HCMSG_NONE:
        break;
    }
    return false;
}

static int
parse_message(const cJSON *msg, struct ahg_hcmsg *m)
{
    size_t nf;
    const struct field *fields = fields_of(m->type, &nf);
    unsigned seen = 0;

    if (!cJSON_IsObject(msg))
        return AHG_EPROTO;
    for (const cJSON *it = msg->child; it; it = it->next) {
        const struct field *f = NULL;
        if (!it->string)
            continue;
        for (size_t i = 0; i < nf; i++) {
            if (strcmp(it->string, fields[i].key) == 0) {
                f = &fields[i];
                break;
            }
        }
        if (!f)
            continue; /* unknown: ignored for forward compatibility */
        if (seen & (1u << f->id))
            return AHG_EPROTO;
        seen |= 1u << f->id;
        if (cJSON_IsNull(it))
            continue;
        int rc = parse_field(it, f->id, m);
        if (rc != AHG_OK)
            return rc;
    }
    return required_ok(m) ? AHG_OK : AHG_EPROTO;
}

int
ahg_hcmsg_parse(const char *json, size_t len, struct ahg_hcmsg *out)
{
    if (!out)
        return AHG_EINVAL;
    ahg_hcmsg_init(out, AHG_HCMSG_NONE);
    if (!json)
        return AHG_EINVAL;
    if (len > AHG_HCMSG_MAX_LEN)
        return AHG_ELIMIT;
    int rc = prescan(json, len);
    if (rc != AHG_OK)
        return rc;

    /* cJSON wants a terminated buffer to be sure it never reads past the input. */
    char *copy = malloc(len + 1);
    if (!copy)
        return AHG_ENOMEM;
    memcpy(copy, json, len);
    copy[len] = '\0';
    cJSON *root = cJSON_ParseWithOpts(copy, NULL, 1);
    free(copy);
    if (!root)
        return AHG_EPROTO;

    rc = AHG_EPROTO;
    const cJSON *msg = root->child;
    if (cJSON_IsObject(root) && msg && !msg->next && msg->string) {
        for (int t = AHG_HCMSG_ACCEPT; t <= AHG_HCMSG_RENEW_TOKEN; t++) {
            if (strcmp(msg->string, type_names[t]) == 0) {
                out->type = (enum ahg_hcmsg_type)t;
                rc = parse_message(msg, out);
                break;
            }
        }
    }
    cJSON_Delete(root);
    if (rc != AHG_OK)
        ahg_hcmsg_clear(out);
    return rc;
}

/* ---- encoding --------------------------------------------------------------- */

static int
check_encodable(const struct ahg_hcmsg *m)
{
    size_t nf;
    const struct field *fields = fields_of(m->type, &nf);
    size_t total = 0;

    if (!fields)
        return AHG_EINVAL;
    if (m->body < -1 || m->body > 1 || m->remote_port < -1 || m->remote_port > 65535)
        return AHG_EINVAL;
    if (m->type == AHG_HCMSG_RESPONSE && (m->status_code < 100 || m->status_code > 999))
        return AHG_EINVAL;
    for (size_t i = 0; i < nf; i++) {
        const char *s = str_get(m, fields[i].id);
        if (s && !chars_ok(s, chars_of(fields[i].id)))
            return AHG_EINVAL;
    }
    if (m->remote_address && !chars_ok(m->remote_address, C_TEXT))
        return AHG_EINVAL;
    if (!required_ok(m))
        return AHG_EINVAL;
    if (m->nheaders > AHG_HCMSG_MAX_HEADERS)
        return AHG_ELIMIT;
    if (m->nheaders > 0 && !m->headers)
        return AHG_EINVAL;
    for (size_t i = 0; i < m->nheaders; i++) {
        const struct ahg_hcmsg_header *h = &m->headers[i];
        if (!h->name || !h->value || !chars_ok(h->name, C_TOKEN) || !chars_ok(h->value, C_FIELD))
            return AHG_EINVAL;
        total += strlen(h->name) + strlen(h->value);
        if (total > AHG_HCMSG_MAX_LEN)
            return AHG_ELIMIT; /* could never fit; don't build it */
    }
    return AHG_OK;
}

/* The value to write for the first header named like headers[first]: later values
 * joined with ", " (empty ones skipped), or only the first for Set-Cookie. */
static char *
merged_value(const struct ahg_hcmsg *m, size_t first)
{
    const char *name = m->headers[first].name;
    size_t len = 0;

    if (ieq(name, "set-cookie"))
        return dupstr(m->headers[first].value);
    for (size_t k = first; k < m->nheaders; k++) {
        if (ieq(m->headers[k].name, name))
            len += strlen(m->headers[k].value) + 2;
    }
    char *v = malloc(len + 1);
    if (!v)
        return NULL;
    size_t pos = 0;
    for (size_t k = first; k < m->nheaders; k++) {
        const char *val = m->headers[k].value;
        size_t vl = strlen(val);
        if (!ieq(m->headers[k].name, name) || (vl == 0 && k != first))
            continue;
        if (pos > 0) {
            memcpy(v + pos, ", ", 2);
            pos += 2;
        }
        memcpy(v + pos, val, vl);
        pos += vl;
    }
    v[pos] = '\0';
    return v;
}

static int
add_headers(cJSON *msg, const char *key, const struct ahg_hcmsg *m)
{
    cJSON *obj = cJSON_AddObjectToObject(msg, key);
    if (!obj)
        return AHG_ENOMEM;
    for (size_t i = 0; i < m->nheaders; i++) {
        bool dup = false;
        for (size_t j = 0; j < i && !dup; j++)
            dup = ieq(m->headers[j].name, m->headers[i].name);
        if (dup)
            continue;
        char *v = merged_value(m, i);
        if (!v)
            return AHG_ENOMEM;
        cJSON *item = cJSON_AddStringToObject(obj, m->headers[i].name, v);
        free(v);
        if (!item)
            return AHG_ENOMEM;
    }
    return AHG_OK;
}

static int
add_field(cJSON *msg, const struct field *f, const struct ahg_hcmsg *m)
{
    switch (f->id) {
    case F_REMOTE: {
        if (!m->remote_address && m->remote_port < 0)
            return AHG_OK;
        cJSON *obj = cJSON_AddObjectToObject(msg, f->key);
        if (!obj)
            return AHG_ENOMEM;
        if (m->remote_address && !cJSON_AddStringToObject(obj, "address", m->remote_address))
            return AHG_ENOMEM;
        if (m->remote_port >= 0 && !cJSON_AddNumberToObject(obj, "port", m->remote_port))
            return AHG_ENOMEM;
        return AHG_OK;
    }
    case F_HEADERS:
        return m->nheaders > 0 ? add_headers(msg, f->key, m) : AHG_OK;
    case F_BODY:
        if (m->body < 0)
            return AHG_OK;
        return cJSON_AddBoolToObject(msg, f->key, m->body) ? AHG_OK : AHG_ENOMEM;
    case F_STATUS:
        return cJSON_AddNumberToObject(msg, f->key, m->status_code) ? AHG_OK : AHG_ENOMEM;
    default: {
        const char *s = str_get(m, f->id);
        if (!s)
            return AHG_OK;
        return cJSON_AddStringToObject(msg, f->key, s) ? AHG_OK : AHG_ENOMEM;
    }
    }
}

int
ahg_hcmsg_encode(const struct ahg_hcmsg *m, char **out, size_t *outlen)
{
    if (out)
        *out = NULL;
    if (!m || !out)
        return AHG_EINVAL;
    int rc = check_encodable(m);
    if (rc != AHG_OK)
        return rc;

    size_t nf;
    const struct field *fields = fields_of(m->type, &nf);
    bool rv_only = ahg_hcmsg_is_rendezvous_only(m);
    cJSON *root = cJSON_CreateObject();
    cJSON *msg = root ? cJSON_AddObjectToObject(root, ahg_hcmsg_type_name(m->type)) : NULL;
    if (!msg) {
        cJSON_Delete(root);
        return AHG_ENOMEM;
    }
    for (size_t i = 0; i < nf && rc == AHG_OK; i++) {
        if (rv_only && fields[i].id != F_ADDRESS && fields[i].id != F_ID)
            continue;
        rc = add_field(msg, &fields[i], m);
    }
    char *text = rc == AHG_OK ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (rc != AHG_OK)
        return rc;
    if (!text)
        return AHG_ENOMEM;

    /* Copy out of cJSON's allocator so that the caller can always use free(). */
    size_t len = strlen(text);
    if (len > AHG_HCMSG_MAX_LEN) {
        cJSON_free(text);
        return AHG_ELIMIT;
    }
    char *res = malloc(len + 1);
    if (res)
        memcpy(res, text, len + 1);
    cJSON_free(text);
    if (!res)
        return AHG_ENOMEM;
    *out = res;
    if (outlen)
        *outlen = len;
    return AHG_OK;
}
