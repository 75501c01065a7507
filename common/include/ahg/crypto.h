/*
 * ahg/crypto.h - the small set of cryptographic primitives AzHexGate needs, on top of
 * OpenSSL 3: random bytes and identifiers, constant-time comparison, SHA-256,
 * HMAC-SHA256 and base64 (standard and URL-safe alphabets).
 *
 * Ownership: every function writes into caller-provided memory; nothing is allocated
 * and nothing has to be freed. Output buffers are never written past the size given.
 *
 * Thread-safety: every function may be called from any thread at the same time
 * (OpenSSL 3 initialises itself and its RNG is thread-safe).
 *
 * Errors: int functions return AHG_OK or a negative enum ahg_err (see ahg/err.h):
 * AHG_EINVAL for a NULL pointer or an impossible argument, AHG_ELIMIT when the output
 * buffer is too small, AHG_EIO when OpenSSL fails. On failure a string output is set to
 * "" when its buffer has room for that.
 */
#ifndef AHG_CRYPTO_H
#define AHG_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>

/* Length of a SHA-256 digest / HMAC-SHA256 tag in bytes. */
#define AHG_CRYPTO_SHA256_LEN 32

/* Fill out[0..n) with bytes from OpenSSL's CSPRNG (RAND_bytes). n == 0 is allowed
 * (out may then be NULL). Errors: AHG_EINVAL (out NULL with n > 0), AHG_EIO (RNG failure). */
int ahg_rand_bytes(void *out, size_t n);

/* Write 2*nbytes random lower-case hex characters plus a NUL to out, which must hold
 * 2*nbytes + 1 chars. Errors: AHG_EINVAL (out NULL, size overflow), AHG_EIO. */
int ahg_rand_hex(char *out, size_t nbytes);

/* Write ndigits uniformly random decimal digits plus a NUL to out (ndigits + 1 chars).
 * The first digit is uniform in 1-9 (never '0'), the others in 0-9; rejection sampling
 * is used, so there is no modulo bias. Errors: AHG_EINVAL (out NULL, ndigits == 0),
 * AHG_EIO. */
int ahg_rand_digits(char *out, size_t ndigits);

/* Write a random RFC 4122 version 4 UUID, lower-case, 36 chars + NUL
 * ("xxxxxxxx-xxxx-4xxx-Nxxx-xxxxxxxxxxxx" with N in 8,9,a,b). Errors: AHG_EINVAL, AHG_EIO. */
int ahg_rand_uuid(char out[37]);

/* True when a[0..alen) and b[0..blen) are byte-for-byte equal. The run time does not
 * depend on the content of either buffer: it depends only on min(alen, blen). Lengths are
 * treated as public: when they differ the result is false (after the same amount of work
 * as comparing min(alen, blen) bytes). A pointer may be NULL only when its length is 0.
 * Use it for every comparison of secrets, MACs and tokens. */
bool ahg_consttime_eq(const void *a, size_t alen, const void *b, size_t blen);

/* out = HMAC-SHA256(key[0..keylen), msg[0..msglen)). key/msg may be NULL when their
 * length is 0. Errors: AHG_EINVAL (NULL with non-zero length, key longer than INT_MAX),
 * AHG_EIO (OpenSSL failure; out is then zeroed). */
int ahg_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen,
                    unsigned char out[32]);

/* out = SHA-256(msg[0..len)). msg may be NULL when len is 0. Cannot fail for valid
 * arguments; on an (unexpected) OpenSSL failure out is zeroed. */
void ahg_sha256(const void *msg, size_t len, unsigned char out[32]);

/* out = lower-case hex of SHA-256(msg[0..len)), 64 chars + NUL.
 * Errors: AHG_EINVAL (out NULL, msg NULL with len > 0), AHG_EIO. */
int ahg_sha256_hex(const void *msg, size_t len, char out[65]);

/* Base64 (RFC 4648 section 4, standard alphabet, '=' padding) of in[0..n) into out as a
 * NUL-terminated string; outsz must be at least 4*ceil(n/3) + 1.
 * Errors: AHG_EINVAL (NULL pointer), AHG_ELIMIT (out too small). */
int ahg_base64_encode(const void *in, size_t n, char *out, size_t outsz);

/* Base64url (RFC 4648 section 5, '-' and '_', NO padding) of in[0..n) into out as a
 * NUL-terminated string; outsz must be at least ceil(4*n/3) + 1 (JWT segments).
 * Errors: AHG_EINVAL, AHG_ELIMIT. */
int ahg_base64url_encode(const void *in, size_t n, char *out, size_t outsz);

/* Strict decode of standard base64 in[0..n) (no NUL needed) into out[0..outsz); the number
 * of bytes written goes to *outlen (outlen may be NULL). Strict means: n is a multiple of 4,
 * only the standard alphabet, '=' only as the last one or two characters of the input, no
 * whitespace, and the unused bits before the padding must be zero (canonical encoding).
 * n == 0 decodes to 0 bytes. No NUL is appended.
 * Errors: AHG_EINVAL (NULL pointer, any violation above), AHG_ELIMIT (outsz too small). */
int ahg_base64_decode(const char *in, size_t n, unsigned char *out, size_t outsz, size_t *outlen);

/* Decode base64url in[0..n) (alphabet '-' '_', as used by JWT segments) into out. Padding
 * is optional; when present it must be complete (length a multiple of 4). A length of
 * 1 mod 4 (without padding), characters outside the alphabet, '+' '/' and non-zero unused
 * bits are rejected. Arguments, output and errors as ahg_base64_decode(). */
int ahg_base64url_decode(const char *in, size_t n, unsigned char *out, size_t outsz,
                         size_t *outlen);

#endif /* AHG_CRYPTO_H */
