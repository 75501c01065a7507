/*
 * ws.c - RFC 6455 WebSocket codec (see ahg/ws.h for the model and contracts).
 */
#include "ahg/ws.h"

#include "ahg/err.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

/* Parser states. A state whose work needs no input (BEGIN, CTRL_DATA, END) runs even when the
 * input is exhausted, so callbacks pending after a pause are delivered by the next feed. */
enum pstate {
    ST_HDR,       /* collecting header bytes */
    ST_BEGIN,     /* header (and, for control frames, payload) complete: report frame_begin */
    ST_DATA,      /* streaming a data frame's payload */
    ST_CTRL,      /* collecting a control frame's payload */
    ST_CTRL_DATA, /* report the collected control payload */
    ST_END,       /* report frame_end */
    ST_CLOSED,    /* a close frame was completed */
    ST_FAILED,    /* sticky error */
};

struct ahg_ws_parser {
    struct ahg_ws_parser_opts opts;
    struct ahg_ws_parser_cb cb;
    void *ud;
    enum pstate st;
    int err;
    uint16_t close_code;

    /* current frame */
    unsigned char hdr[AHG_WS_MAX_HEADER];
    size_t hdr_have;
    size_t hdr_need;
    struct ahg_ws_frame f;
    bool masked;
    unsigned char key[4];
    uint64_t done; /* payload bytes of the current frame read so far */

    /* current data message */
    bool in_msg;
    enum ahg_ws_opcode msg_op;
    uint64_t msg_len;
    struct ahg_ws_utf8 utf8;

    unsigned char ctrl[AHG_WS_MAX_CONTROL];
    unsigned char scratch[AHG_WS_SCRATCH];
};

/* ------------------------------------------------------------------------------------------- */
/* UTF-8 */

#define UTF8_BAD 0xffu

void
ahg_ws_utf8_init(struct ahg_ws_utf8 *u)
{
    if (u == NULL)
        return;
    u->need = 0;
    u->lo = 0x80;
    u->hi = 0xbf;
}

bool
ahg_ws_utf8_feed(struct ahg_ws_utf8 *u, const unsigned char *p, size_t n)
{
    if (u == NULL)
        return false;
    if (u->need == UTF8_BAD)
        return false;
    if (p == NULL && n > 0) {
        u->need = UTF8_BAD;
        return false;
    }
    unsigned need = u->need;
    unsigned lo = u->need ? u->lo : 0x80u;
    unsigned hi = u->need ? u->hi : 0xbfu;
    for (size_t i = 0; i < n; i++) {
        unsigned c = p[i];
        if (need > 0) {
            if (c < lo || c > hi)
                goto bad;
            need--;
            lo = 0x80;
            hi = 0xbf;
            continue;
        }
        if (c < 0x80)
            continue;
        if (c < 0xc2 || c > 0xf4)
            goto bad; /* stray continuation, overlong 2-byte lead C0/C1, or beyond U+10FFFF */
        if (c <= 0xdf) {
            need = 1;
        } else if (c <= 0xef) {
            need = 2;
            if (c == 0xe0)
                lo = 0xa0; /* below is an overlong 3-byte form */
            else if (c == 0xed)
                hi = 0x9f; /* above are the surrogates D800-DFFF */
        } else {
            need = 3;
            if (c == 0xf0)
                lo = 0x90; /* below is an overlong 4-byte form */
            else if (c == 0xf4)
                hi = 0x8f; /* above is beyond U+10FFFF */
        }
    }
    u->need = (unsigned char)need;
    u->lo = (unsigned char)lo;
    u->hi = (unsigned char)hi;
    return true;
bad:
    u->need = UTF8_BAD;
    return false;
}

bool
ahg_ws_utf8_done(const struct ahg_ws_utf8 *u)
{
    return u != NULL && u->need == 0;
}

bool
ahg_ws_utf8_valid(const unsigned char *p, size_t n)
{
    struct ahg_ws_utf8 u;
    ahg_ws_utf8_init(&u);
    return ahg_ws_utf8_feed(&u, p, n) && ahg_ws_utf8_done(&u);
}

/* ------------------------------------------------------------------------------------------- */
/* Masking and frame writing */

void
ahg_ws_mask(unsigned char *p, size_t n, const unsigned char key[4], uint64_t offset)
{
    if (p == NULL || key == NULL)
        return;
    unsigned k = (unsigned)(offset & 3u);
    size_t i = 0;
    /* Byte by byte up to an 8-byte boundary, then 8 bytes at a time with the key repeated
     * from the current phase (the bytewise loop was the hot spot of a spliced stream). */
    while (i < n && ((uintptr_t)(p + i) & 7u) != 0) {
        p[i++] ^= key[k];
        k = (k + 1u) & 3u;
    }
    if (n - i >= 8) {
        unsigned char kb[8];
        for (unsigned j = 0; j < 8; j++)
            kb[j] = key[(k + j) & 3u];
        uint64_t kw;
        memcpy(&kw, kb, sizeof(kw));
        for (; n - i >= 8; i += 8) {
            uint64_t w;
            memcpy(&w, p + i, sizeof(w));
            w ^= kw;
            memcpy(p + i, &w, sizeof(w));
        }
    }
    for (; i < n; i++) {
        p[i] ^= key[k];
        k = (k + 1u) & 3u;
    }
}

/* One RAND_bytes call per 64 keys: OpenSSL's DRBG costs ~1 µs a call (locks, cipher init),
 * which was ~5% of the gateway's CPU with a masked frame per request. The keys are still
 * CSPRNG output (RFC 6455 §5.3), taken from a per-thread buffer. */
int
ahg_ws_mask_key(unsigned char key[4])
{
    static _Thread_local unsigned char pool[256];
    static _Thread_local size_t used = sizeof pool;
    if (key == NULL)
        return AHG_EINVAL;
    if (used + 4 > sizeof pool) {
        if (RAND_bytes(pool, (int)sizeof pool) != 1)
            return AHG_EIO;
        used = 0;
    }
    memcpy(key, pool + used, 4);
    used += 4;
    return AHG_OK;
}

static bool
opcode_known(unsigned op)
{
    return op == AHG_WS_CONT || op == AHG_WS_TEXT || op == AHG_WS_BINARY || op == AHG_WS_CLOSE ||
           op == AHG_WS_PING || op == AHG_WS_PONG;
}

size_t
ahg_ws_frame_header(unsigned char out[AHG_WS_MAX_HEADER], enum ahg_ws_opcode op, bool fin,
                    uint64_t len, const unsigned char *mask_key)
{
    if (out == NULL || !opcode_known((unsigned)op) || len > AHG_WS_MAX_PAYLOAD)
        return 0;
    if (AHG_WS_OPCODE_IS_CONTROL(op) && (!fin || len > AHG_WS_MAX_CONTROL))
        return 0;
    size_t n = 0;
    unsigned char mbit = mask_key != NULL ? 0x80 : 0x00;
    out[n++] = (unsigned char)((fin ? 0x80u : 0x00u) | (unsigned)op);
    if (len <= 125) {
        out[n++] = (unsigned char)(mbit | (unsigned char)len);
    } else if (len <= 0xffff) {
        out[n++] = (unsigned char)(mbit | 126u);
        out[n++] = (unsigned char)(len >> 8);
        out[n++] = (unsigned char)len;
    } else {
        out[n++] = (unsigned char)(mbit | 127u);
        for (int shift = 56; shift >= 0; shift -= 8)
            out[n++] = (unsigned char)(len >> shift);
    }
    if (mask_key != NULL) {
        memcpy(out + n, mask_key, 4);
        n += 4;
    }
    return n;
}

int
ahg_ws_frame_write(unsigned char *out, size_t outsz, enum ahg_ws_opcode op, bool fin,
                   const unsigned char *payload, size_t n, bool client_role, size_t *len)
{
    if (out == NULL || len == NULL || (payload == NULL && n > 0))
        return AHG_EINVAL;
    unsigned char key[4];
    unsigned char hdr[AHG_WS_MAX_HEADER];
    /* A zero key only sizes the header; the real key is drawn once the frame is known to fit. */
    memset(key, 0, sizeof key);
    size_t hl = ahg_ws_frame_header(hdr, op, fin, n, client_role ? key : NULL);
    if (hl == 0)
        return AHG_EINVAL;
    if (n > outsz || hl > outsz - n)
        return AHG_ELIMIT;
    if (client_role) {
        int rc = ahg_ws_mask_key(key);
        if (rc != AHG_OK)
            return rc;
        memcpy(hdr + hl - 4, key, 4);
    }
    if (n > 0)
        memmove(out + hl, payload, n);
    memcpy(out, hdr, hl);
    if (client_role)
        ahg_ws_mask(out + hl, n, key, 0);
    *len = hl + n;
    return AHG_OK;
}

/* ------------------------------------------------------------------------------------------- */
/* Close payloads */

bool
ahg_ws_close_code_is_valid(uint16_t code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

int
ahg_ws_close_payload(unsigned char *out, size_t outsz, uint16_t code, const char *reason,
                     size_t *len)
{
    if (out == NULL || len == NULL)
        return AHG_EINVAL;
    size_t rlen = reason != NULL ? strlen(reason) : 0;
    if (code == 0) {
        if (rlen > 0)
            return AHG_EINVAL;
        *len = 0;
        return AHG_OK;
    }
    if (!ahg_ws_close_code_is_valid(code))
        return AHG_EINVAL;
    if (!ahg_ws_utf8_valid((const unsigned char *)reason, rlen))
        return AHG_EINVAL;
    if (outsz < 2)
        return AHG_ELIMIT;
    size_t room = outsz - 2 < AHG_WS_MAX_CLOSE_REASON ? outsz - 2 : AHG_WS_MAX_CLOSE_REASON;
    if (rlen > room) {
        /* reason[rlen] is the first byte left out: back up while it continues a character. */
        rlen = room;
        while (rlen > 0 && ((unsigned char)reason[rlen] & 0xc0u) == 0x80u)
            rlen--;
    }
    out[0] = (unsigned char)(code >> 8);
    out[1] = (unsigned char)(code & 0xffu);
    for (size_t i = 0; i < rlen; i++)
        out[2 + i] = (unsigned char)reason[i];
    *len = 2 + rlen;
    return AHG_OK;
}

int
ahg_ws_close_parse(const unsigned char *p, size_t n, uint16_t *code, const char **reason,
                   size_t *reason_len)
{
    if (code == NULL || reason == NULL || reason_len == NULL || (p == NULL && n > 0))
        return AHG_EINVAL;
    *reason = NULL;
    *reason_len = 0;
    if (n == 0) {
        *code = AHG_WS_CLOSE_NO_STATUS;
        *reason = "";
        return AHG_OK;
    }
    *code = AHG_WS_CLOSE_PROTOCOL_ERROR;
    if (n == 1 || n > AHG_WS_MAX_CONTROL)
        return AHG_EPROTO;
    uint16_t c = (uint16_t)(((unsigned)p[0] << 8) | p[1]);
    if (!ahg_ws_close_code_is_valid(c))
        return AHG_EPROTO;
    if (!ahg_ws_utf8_valid(p + 2, n - 2)) {
        *code = AHG_WS_CLOSE_INVALID_DATA;
        return AHG_EPROTO;
    }
    *code = c;
    *reason = (const char *)(p + 2);
    *reason_len = n - 2;
    return AHG_OK;
}

/* ------------------------------------------------------------------------------------------- */
/* Handshake keys */

static bool
b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

static unsigned
b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return (unsigned)(c - 'A');
    if (c >= 'a' && c <= 'z')
        return (unsigned)(c - 'a') + 26u;
    if (c >= '0' && c <= '9')
        return (unsigned)(c - '0') + 52u;
    return c == '+' ? 62u : 63u;
}

bool
ahg_ws_key_is_valid(const char *key)
{
    if (key == NULL)
        return false;
    const unsigned char *k = (const unsigned char *)key;
    for (size_t i = 0; i < 22; i++) {
        if (!b64_char(k[i]))
            return false; /* also stops at the NUL of a short string */
    }
    if (k[22] != '=' || k[23] != '=' || k[24] != '\0')
        return false;
    /* 16 bytes use 128 of the 132 bits of 22 characters: the last 4 must be zero (canonical). */
    return (b64_value(k[21]) & 0x0fu) == 0;
}

int
ahg_ws_accept_key(const char *sec_websocket_key, char out[AHG_WS_ACCEPT_LEN + 1])
{
    if (out == NULL)
        return AHG_EINVAL;
    out[0] = '\0';
    if (!ahg_ws_key_is_valid(sec_websocket_key))
        return AHG_EINVAL;
    static const char guid[] = AHG_WS_GUID;
    unsigned char msg[AHG_WS_KEY_LEN + sizeof guid - 1];
    memcpy(msg, sec_websocket_key, AHG_WS_KEY_LEN);
    memcpy(msg + AHG_WS_KEY_LEN, guid, sizeof guid - 1);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(msg, sizeof msg, md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20)
        return AHG_EIO;
    /* EVP_EncodeBlock writes 4*ceil(20/3) = 28 characters plus a NUL. */
    if (EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen) != AHG_WS_ACCEPT_LEN) {
        out[0] = '\0';
        return AHG_EIO;
    }
    return AHG_OK;
}

int
ahg_ws_client_key(char out[AHG_WS_KEY_LEN + 1])
{
    if (out == NULL)
        return AHG_EINVAL;
    out[0] = '\0';
    unsigned char nonce[16];
    if (RAND_bytes(nonce, (int)sizeof nonce) != 1)
        return AHG_EIO;
    if (EVP_EncodeBlock((unsigned char *)out, nonce, (int)sizeof nonce) != AHG_WS_KEY_LEN) {
        out[0] = '\0';
        return AHG_EIO;
    }
    return AHG_OK;
}

/* ------------------------------------------------------------------------------------------- */
/* Parser */

struct ahg_ws_parser *
ahg_ws_parser_new(const struct ahg_ws_parser_opts *opts, const struct ahg_ws_parser_cb *cb,
                  void *ud, int *err)
{
    if (opts == NULL || cb == NULL) {
        if (err != NULL)
            *err = AHG_EINVAL;
        return NULL;
    }
    struct ahg_ws_parser *p = calloc(1, sizeof *p);
    if (p == NULL) {
        if (err != NULL)
            *err = AHG_ENOMEM;
        return NULL;
    }
    p->opts = *opts;
    p->cb = *cb;
    p->ud = ud;
    p->st = ST_HDR;
    p->hdr_need = 2;
    ahg_ws_utf8_init(&p->utf8);
    if (err != NULL)
        *err = AHG_OK;
    return p;
}

void
ahg_ws_parser_free(struct ahg_ws_parser *p)
{
    free(p);
}

uint16_t
ahg_ws_parser_close_code(const struct ahg_ws_parser *p)
{
    return p != NULL ? p->close_code : 0;
}

bool
ahg_ws_parser_closed(const struct ahg_ws_parser *p)
{
    return p != NULL && p->st == ST_CLOSED;
}

static int
fail(struct ahg_ws_parser *p, int err, uint16_t close_code)
{
    p->st = ST_FAILED;
    p->err = err;
    p->close_code = close_code;
    return err;
}

/* Checks that need only the first header byte. */
static int
check_byte0(struct ahg_ws_parser *p, unsigned b0)
{
    unsigned op = b0 & 0x0fu;
    bool fin = (b0 & 0x80u) != 0;
    if ((b0 & 0x70u) != 0 || !opcode_known(op))
        return fail(p, AHG_EPROTO, AHG_WS_CLOSE_PROTOCOL_ERROR);
    if (AHG_WS_OPCODE_IS_CONTROL(op)) {
        if (!fin)
            return fail(p, AHG_EPROTO, AHG_WS_CLOSE_PROTOCOL_ERROR);
    } else if (op == AHG_WS_CONT) {
        if (!p->in_msg)
            return fail(p, AHG_EPROTO, AHG_WS_CLOSE_PROTOCOL_ERROR);
    } else if (p->in_msg) {
        return fail(p, AHG_EPROTO, AHG_WS_CLOSE_PROTOCOL_ERROR);
    }
    return AHG_OK;
}

/* Checks that need the second header byte; sets how long the header is. */
static int
check_byte1(struct ahg_ws_parser *p, unsigned b1)
{
    bool masked = (b1 & 0x80u) != 0;
    unsigned len7 = b1 & 0x7fu;
    if (masked != p->opts.server_role)
        return fail(p, AHG_EPROTO, AHG_WS_CLOSE_PROTOCOL_ERROR);
    if (AHG_WS_OPCODE_IS_CONTROL(p->hdr[0] & 0x0fu) && len7 > AHG_WS_MAX_CONTROL)
        return fail(p, AHG_EPROTO, AHG_WS_CLOSE_PROTOCOL_ERROR);
    p->hdr_need = 2u + (len7 == 126 ? 2u : len7 == 127 ? 8u : 0u) + (masked ? 4u : 0u);
    return AHG_OK;
}

/* The whole header is in p->hdr: decode it, check limits, update the message state. */
static int
header_done(struct ahg_ws_parser *p)
{
    unsigned op = p->hdr[0] & 0x0fu;
    unsigned len7 = p->hdr[1] & 0x7fu;
    size_t pos = 2;
    uint64_t len = len7;
    if (len7 == 126) {
        len = ((uint64_t)p->hdr[2] << 8) | p->hdr[3];
        pos = 4;
    } else if (len7 == 127) {
        len = 0;
        for (size_t i = 2; i < 10; i++)
            len = (len << 8) | p->hdr[i];
        pos = 10;
        if (len > AHG_WS_MAX_PAYLOAD)
            return fail(p, AHG_EPROTO, AHG_WS_CLOSE_PROTOCOL_ERROR);
    }
    p->masked = (p->hdr[1] & 0x80u) != 0;
    if (p->masked)
        memcpy(p->key, p->hdr + pos, 4);

    p->f.op = (enum ahg_ws_opcode)op;
    p->f.fin = (p->hdr[0] & 0x80u) != 0;
    p->f.len = len;
    p->done = 0;

    if (AHG_WS_OPCODE_IS_CONTROL(op)) {
        p->f.msg_op = p->f.op;
        p->st = len > 0 ? ST_CTRL : ST_BEGIN;
        return AHG_OK;
    }

    const struct ahg_ws_parser_opts *o = &p->opts;
    if (o->max_frame_payload != 0 && len > o->max_frame_payload)
        return fail(p, AHG_EPROTO, AHG_WS_CLOSE_TOO_BIG);
    if (op == AHG_WS_CONT) {
        if (o->max_message_payload != 0 && len > o->max_message_payload - p->msg_len)
            return fail(p, AHG_EPROTO, AHG_WS_CLOSE_TOO_BIG);
        p->msg_len += len;
    } else {
        if (o->max_message_payload != 0 && len > o->max_message_payload)
            return fail(p, AHG_EPROTO, AHG_WS_CLOSE_TOO_BIG);
        p->msg_op = p->f.op;
        p->msg_len = len;
        ahg_ws_utf8_init(&p->utf8);
    }
    p->in_msg = !p->f.fin;
    p->f.msg_op = p->msg_op;
    p->st = ST_BEGIN;
    return AHG_OK;
}

static bool
checking_text(const struct ahg_ws_parser *p)
{
    return p->opts.validate_utf8 && p->f.msg_op == AHG_WS_TEXT;
}

int
ahg_ws_parser_feed(struct ahg_ws_parser *p, const unsigned char *data, size_t len, size_t *consumed)
{
    if (consumed != NULL)
        *consumed = 0;
    if (p == NULL || consumed == NULL || (data == NULL && len > 0))
        return AHG_EINVAL;
    if (p->st == ST_FAILED)
        return p->err;
    if (p->st == ST_CLOSED)
        return AHG_ECLOSED;

    size_t pos = 0;
    int rc;
    for (;;) {
        rc = 0;
        switch (p->st) {
        case ST_HDR: {
            if (pos == len)
                goto out;
            /* The first byte is taken alone, so an error in it stops right after it. */
            size_t take = p->hdr_have == 0 ? 1 : p->hdr_need - p->hdr_have;
            if (take > len - pos)
                take = len - pos;
            memcpy(p->hdr + p->hdr_have, data + pos, take);
            size_t before = p->hdr_have;
            p->hdr_have += take;
            pos += take;
            if (before < 1 && p->hdr_have >= 1 && check_byte0(p, p->hdr[0]) != AHG_OK)
                goto out;
            /* hdr_need starts at 2, so this sets the real header length before more is taken. */
            if (before < 2 && p->hdr_have >= 2 && check_byte1(p, p->hdr[1]) != AHG_OK)
                goto out;
            if (p->hdr_have == p->hdr_need) {
                p->hdr_have = 0;
                p->hdr_need = 2;
                if (header_done(p) != AHG_OK)
                    goto out;
            }
            continue;
        }
        case ST_BEGIN:
            if (p->f.op == AHG_WS_CLOSE) {
                uint16_t code = AHG_WS_CLOSE_PROTOCOL_ERROR;
                const char *reason;
                size_t rlen;
                if (ahg_ws_close_parse(p->ctrl, (size_t)p->f.len, &code, &reason, &rlen) !=
                    AHG_OK) {
                    fail(p, AHG_EPROTO, code);
                    goto out;
                }
            }
            if (p->f.len == 0)
                p->st = ST_END;
            else
                p->st = AHG_WS_OPCODE_IS_CONTROL(p->f.op) ? ST_CTRL_DATA : ST_DATA;
            if (p->cb.frame_begin != NULL)
                rc = p->cb.frame_begin(p->ud, &p->f);
            break;
        case ST_DATA: {
            if (pos == len)
                goto out;
            uint64_t rem = p->f.len - p->done;
            size_t n = len - pos;
            if ((uint64_t)n > rem)
                n = (size_t)rem;
            const unsigned char *piece = data + pos;
            if (p->masked) {
                if (n > sizeof p->scratch)
                    n = sizeof p->scratch;
                memcpy(p->scratch, piece, n);
                ahg_ws_mask(p->scratch, n, p->key, p->done);
                piece = p->scratch;
            }
            if (checking_text(p) && !ahg_ws_utf8_feed(&p->utf8, piece, n)) {
                fail(p, AHG_EPROTO, AHG_WS_CLOSE_INVALID_DATA);
                goto out;
            }
            pos += n;
            p->done += n;
            if (p->done == p->f.len)
                p->st = ST_END;
            if (p->cb.frame_data != NULL)
                rc = p->cb.frame_data(p->ud, piece, n);
            break;
        }
        case ST_CTRL: {
            if (pos == len)
                goto out;
            size_t want = (size_t)(p->f.len - p->done);
            size_t n = len - pos < want ? len - pos : want;
            memcpy(p->ctrl + p->done, data + pos, n);
            if (p->masked)
                ahg_ws_mask(p->ctrl + p->done, n, p->key, p->done);
            pos += n;
            p->done += n;
            if (p->done == p->f.len)
                p->st = ST_BEGIN;
            continue;
        }
        case ST_CTRL_DATA:
            p->st = ST_END;
            if (p->cb.frame_data != NULL)
                rc = p->cb.frame_data(p->ud, p->ctrl, (size_t)p->f.len);
            break;
        case ST_END:
            if (!AHG_WS_OPCODE_IS_CONTROL(p->f.op) && p->f.fin && checking_text(p) &&
                !ahg_ws_utf8_done(&p->utf8)) {
                fail(p, AHG_EPROTO, AHG_WS_CLOSE_INVALID_DATA);
                goto out;
            }
            p->st = p->f.op == AHG_WS_CLOSE ? ST_CLOSED : ST_HDR;
            if (p->cb.frame_end != NULL)
                rc = p->cb.frame_end(p->ud);
            break;
        case ST_CLOSED:
        case ST_FAILED:
            goto out;
        }
        if (rc < 0) {
            fail(p, rc, AHG_WS_CLOSE_INTERNAL_ERROR);
            goto out;
        }
        if (rc > 0)
            goto out;
    }
out:
    *consumed = pos;
    return p->st == ST_FAILED ? p->err : AHG_OK;
}
