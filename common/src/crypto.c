#include "ahg/crypto.h"

#include "ahg/err.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

static const char hex_lower[] = "0123456789abcdef";
static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int
ahg_rand_bytes(void *out, size_t n)
{
    unsigned char *p = out;

    if (n == 0)
        return AHG_OK;
    if (out == NULL)
        return AHG_EINVAL;
    while (n > 0) {
        int chunk = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        if (RAND_bytes(p, chunk) != 1)
            return AHG_EIO;
        p += chunk;
        n -= (size_t)chunk;
    }
    return AHG_OK;
}

int
ahg_rand_hex(char *out, size_t nbytes)
{
    unsigned char buf[64];
    size_t done = 0;

    if (out == NULL || nbytes > (SIZE_MAX - 1) / 2)
        return AHG_EINVAL;
    while (done < nbytes) {
        size_t chunk = nbytes - done < sizeof(buf) ? nbytes - done : sizeof(buf);
        int rc = ahg_rand_bytes(buf, chunk);
        if (rc != AHG_OK) {
            OPENSSL_cleanse(buf, sizeof(buf));
            out[0] = '\0';
            return rc;
        }
        for (size_t i = 0; i < chunk; i++) {
            out[2 * (done + i)] = hex_lower[buf[i] >> 4];
            out[2 * (done + i) + 1] = hex_lower[buf[i] & 0x0f];
        }
        done += chunk;
    }
    out[2 * nbytes] = '\0';
    OPENSSL_cleanse(buf, sizeof(buf));
    return AHG_OK;
}

int
ahg_rand_digits(char *out, size_t ndigits)
{
    unsigned char buf[64];
    size_t used = sizeof(buf);
    size_t i = 0;

    if (out == NULL || ndigits == 0 || ndigits == SIZE_MAX)
        return AHG_EINVAL;
    while (i < ndigits) {
        unsigned b;
        if (used == sizeof(buf)) {
            int rc = ahg_rand_bytes(buf, sizeof(buf));
            if (rc != AHG_OK) {
                OPENSSL_cleanse(buf, sizeof(buf));
                out[0] = '\0';
                return rc;
            }
            used = 0;
        }
        b = buf[used++];
        if (i == 0) {
            /* 252 = 28 * 9: bytes 0..251 map evenly onto 1..9. */
            if (b >= 252)
                continue;
            out[i++] = (char)('1' + b % 9);
        } else {
            /* 250 = 25 * 10: bytes 0..249 map evenly onto 0..9. */
            if (b >= 250)
                continue;
            out[i++] = (char)('0' + b % 10);
        }
    }
    out[ndigits] = '\0';
    OPENSSL_cleanse(buf, sizeof(buf));
    return AHG_OK;
}

int
ahg_rand_uuid(char out[37])
{
    unsigned char b[16];
    size_t o = 0;
    int rc;

    if (out == NULL)
        return AHG_EINVAL;
    rc = ahg_rand_bytes(b, sizeof(b));
    if (rc != AHG_OK) {
        out[0] = '\0';
        return rc;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* variant 10xx */
    for (size_t i = 0; i < sizeof(b); i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex_lower[b[i] >> 4];
        out[o++] = hex_lower[b[i] & 0x0f];
    }
    out[o] = '\0';
    return AHG_OK;
}

bool
ahg_consttime_eq(const void *a, size_t alen, const void *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int diff = 0;

    if (n > 0) {
        if (a == NULL || b == NULL)
            return false;
        diff = CRYPTO_memcmp(a, b, n);
    }
    return (diff == 0) & (alen == blen);
}

int
ahg_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen,
                unsigned char out[32])
{
    static const unsigned char empty[1] = {0};
    unsigned int len = 0;

    if (out == NULL || (key == NULL && keylen > 0) || (msg == NULL && msglen > 0) ||
        keylen > (size_t)INT_MAX)
        return AHG_EINVAL;
    if (keylen == 0)
        key = empty;
    if (msglen == 0)
        msg = empty;
    if (HMAC(EVP_sha256(), key, (int)keylen, msg, msglen, out, &len) == NULL ||
        len != AHG_CRYPTO_SHA256_LEN) {
        memset(out, 0, AHG_CRYPTO_SHA256_LEN);
        return AHG_EIO;
    }
    return AHG_OK;
}

static int
sha256_raw(const void *msg, size_t len, unsigned char out[32])
{
    static const unsigned char empty[1] = {0};
    unsigned int olen = 0;

    if (len == 0)
        msg = empty;
    if (EVP_Digest(msg, len, out, &olen, EVP_sha256(), NULL) != 1 ||
        olen != AHG_CRYPTO_SHA256_LEN) {
        memset(out, 0, AHG_CRYPTO_SHA256_LEN);
        return AHG_EIO;
    }
    return AHG_OK;
}

void
ahg_sha256(const void *msg, size_t len, unsigned char out[32])
{
    if (out == NULL)
        return;
    if (msg == NULL && len > 0) {
        memset(out, 0, AHG_CRYPTO_SHA256_LEN);
        return;
    }
    (void)sha256_raw(msg, len, out);
}

int
ahg_sha256_hex(const void *msg, size_t len, char out[65])
{
    unsigned char md[AHG_CRYPTO_SHA256_LEN];
    int rc;

    if (out == NULL)
        return AHG_EINVAL;
    out[0] = '\0';
    if (msg == NULL && len > 0)
        return AHG_EINVAL;
    rc = sha256_raw(msg, len, md);
    if (rc != AHG_OK)
        return rc;
    for (size_t i = 0; i < sizeof(md); i++) {
        out[2 * i] = hex_lower[md[i] >> 4];
        out[2 * i + 1] = hex_lower[md[i] & 0x0f];
    }
    out[64] = '\0';
    return AHG_OK;
}

/* Shared encoder: alphabet abc, '=' padding when pad. */
static int
b64_encode(const void *in, size_t n, char *out, size_t outsz, const char *abc, bool pad)
{
    const unsigned char *p = in;
    size_t need, o = 0, i = 0;

    if (out == NULL || (in == NULL && n > 0))
        return AHG_EINVAL;
    if (n / 3 > (SIZE_MAX - 8) / 4) {
        if (outsz > 0)
            out[0] = '\0';
        return AHG_ELIMIT;
    }
    need = (n / 3) * 4;
    if (n % 3 != 0)
        need += pad ? 4 : n % 3 + 1;
    if (outsz < need + 1) {
        if (outsz > 0)
            out[0] = '\0';
        return AHG_ELIMIT;
    }
    for (; i + 3 <= n; i += 3) {
        unsigned long v = (unsigned long)p[i] << 16 | (unsigned long)p[i + 1] << 8 | p[i + 2];
        out[o++] = abc[(v >> 18) & 63];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = abc[(v >> 6) & 63];
        out[o++] = abc[v & 63];
    }
    if (n - i == 1) {
        unsigned long v = (unsigned long)p[i] << 16;
        out[o++] = abc[(v >> 18) & 63];
        out[o++] = abc[(v >> 12) & 63];
        if (pad) {
            out[o++] = '=';
            out[o++] = '=';
        }
    } else if (n - i == 2) {
        unsigned long v = (unsigned long)p[i] << 16 | (unsigned long)p[i + 1] << 8;
        out[o++] = abc[(v >> 18) & 63];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = abc[(v >> 6) & 63];
        if (pad)
            out[o++] = '=';
    }
    out[o] = '\0';
    return AHG_OK;
}

int
ahg_base64_encode(const void *in, size_t n, char *out, size_t outsz)
{
    return b64_encode(in, n, out, outsz, b64_std, true);
}

int
ahg_base64url_encode(const void *in, size_t n, char *out, size_t outsz)
{
    return b64_encode(in, n, out, outsz, b64_url, false);
}

/* Value of base64 character c in the chosen alphabet, or -1. */
static int
b64_value(char c, bool url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

/* Shared strict decoder. Padding is mandatory for the standard alphabet and optional
 * (but complete when present) for the URL alphabet. */
static int
b64_decode(const char *in, size_t n, unsigned char *out, size_t outsz, size_t *outlen, bool url)
{
    size_t pad = 0, d, rem, need, o = 0, i;

    if (outlen != NULL)
        *outlen = 0;
    if ((in == NULL && n > 0) || out == NULL)
        return AHG_EINVAL;
    while (pad < n && pad < 3 && in[n - 1 - pad] == '=')
        pad++;
    if (pad > 2)
        return AHG_EINVAL;
    if ((!url || pad > 0) && n % 4 != 0)
        return AHG_EINVAL;
    d = n - pad;
    rem = d % 4;
    if (rem == 1)
        return AHG_EINVAL;
    for (i = 0; i < d; i++) {
        if (b64_value(in[i], url) < 0)
            return AHG_EINVAL;
    }
    /* Unused low bits of the last character must be zero (canonical form). */
    if (rem == 2 && (b64_value(in[d - 1], url) & 0x0f) != 0)
        return AHG_EINVAL;
    if (rem == 3 && (b64_value(in[d - 1], url) & 0x03) != 0)
        return AHG_EINVAL;
    need = d / 4 * 3 + (rem == 0 ? 0 : rem - 1);
    if (need > outsz)
        return AHG_ELIMIT;
    for (i = 0; i + 4 <= d; i += 4) {
        unsigned long v = (unsigned long)b64_value(in[i], url) << 18 |
                          (unsigned long)b64_value(in[i + 1], url) << 12 |
                          (unsigned long)b64_value(in[i + 2], url) << 6 |
                          (unsigned long)b64_value(in[i + 3], url);
        out[o++] = (unsigned char)(v >> 16);
        out[o++] = (unsigned char)(v >> 8);
        out[o++] = (unsigned char)v;
    }
    if (rem >= 2) {
        unsigned long v = (unsigned long)b64_value(in[i], url) << 18 |
                          (unsigned long)b64_value(in[i + 1], url) << 12;
        if (rem == 3)
            v |= (unsigned long)b64_value(in[i + 2], url) << 6;
        out[o++] = (unsigned char)(v >> 16);
        if (rem == 3)
            out[o++] = (unsigned char)(v >> 8);
    }
    if (outlen != NULL)
        *outlen = o;
    return AHG_OK;
}

int
ahg_base64_decode(const char *in, size_t n, unsigned char *out, size_t outsz, size_t *outlen)
{
    return b64_decode(in, n, out, outsz, outlen, false);
}

int
ahg_base64url_decode(const char *in, size_t n, unsigned char *out, size_t outsz, size_t *outlen)
{
    return b64_decode(in, n, out, outsz, outlen, true);
}
