/*
 * ahg/url.h - percent-encoding, query strings, the Hybrid Connections `sb-hc-*` query
 * stripping rule (hc-protocol.md section 3.2) and a small bounded absolute-URL parser.
 *
 * Ownership: nothing is allocated; all output goes to caller buffers, which are never
 * written past the size given. Inputs are borrowed for the duration of the call.
 * Thread-safety: every function is pure and may be called from any thread.
 * Errors: AHG_OK or a negative enum ahg_err (ahg/err.h). When a string output fails it is
 * left as "" if its buffer has room for that.
 */
#ifndef AHG_URL_H
#define AHG_URL_H

#include <stdbool.h>
#include <stddef.h>

/* Bounds of struct ahg_url fields (including the NUL). */
#define AHG_URL_SCHEME_MAX 16
#define AHG_URL_HOST_MAX   256
#define AHG_URL_PATH_MAX   2048
#define AHG_URL_QUERY_MAX  4096

/* Percent-encode in[0..n) like JavaScript encodeURIComponent: A-Z a-z 0-9 and
 * - _ . ! ~ * ' ( ) are kept, every other byte becomes %XX with upper-case hex.
 * out receives a NUL-terminated string (at most 3*n + 1 chars are needed).
 * Errors: AHG_EINVAL (NULL pointer; in may be NULL when n == 0), AHG_ELIMIT (out too
 * small). */
int ahg_url_encode(const char *in, size_t n, char *out, size_t outsz);

/* Percent-decode in[0..n) into out, NUL-terminated; *outlen (may be NULL) gets the decoded
 * length, which excludes the NUL and can be smaller than strlen(out) when the input has
 * %00. %XX accepts either hex case. When plus_is_space, '+' decodes to ' ' (form encoding,
 * used for sb-hc-token, hc-protocol.md section 14); otherwise '+' stays '+'.
 * Decoding in place (out == in) is allowed.
 * Errors: AHG_EINVAL (NULL pointer, '%' not followed by two hex digits, including a
 * truncated escape at the end), AHG_ELIMIT (out too small for the decoded text + NUL). */
int ahg_url_decode(const char *in, size_t n, char *out, size_t outsz, bool plus_is_space,
                   size_t *outlen);

/* Find the first pair of the query string whose decoded key equals key (exact, case-
 * sensitive) and write its decoded value, NUL-terminated, to out. query may start with
 * '?', which is skipped; it ends at its NUL or at a '#'. Pairs are separated by '&'; a
 * pair without '=' has the empty value. Keys and values are decoded with plus_is_space as
 * in ahg_url_decode(); a pair whose key cannot be decoded does not match.
 * Errors: AHG_EINVAL (NULL pointer, bad escape in the value found), AHG_ENOTFOUND (no
 * such key), AHG_ELIMIT (value does not fit out). */
int ahg_url_query_get(const char *query, const char *key, char *out, size_t outsz,
                      bool plus_is_space);

/* Copy the request-target `target` (e.g. "/hc/x?sb-hc-id=1&a=b") to out, removing every
 * query pair whose raw key starts with "sb-hc-" (ASCII case-insensitive) and which contains
 * a '='. Everything else is kept byte-for-byte, including empty pairs and their '&'
 * separators ("?a=1&a=2&" and "?&&&" are unchanged, "?sb-hc-undefined" stays,
 * "?sb-hc-id=1&custom=value" -> "?custom=value"). When pairs were removed and nothing of
 * the query is left, the '?' is dropped too ("/hc?sb-hc-id=1" -> "/hc"). A '#' ends the
 * query; it and what follows are kept. out must not overlap target.
 * Errors: AHG_EINVAL (NULL pointer), AHG_ELIMIT (out too small). */
int ahg_url_strip_sbhc(const char *target, char *out, size_t outsz);

/* A parsed absolute URL. All strings are NUL-terminated and bounded; path and query are
 * kept exactly as written (still percent-encoded). */
struct ahg_url {
    char scheme[AHG_URL_SCHEME_MAX]; /* lower-cased, e.g. "https" */
    char host[AHG_URL_HOST_MAX];     /* as written; an IPv6 literal without its brackets
                                        (so a host containing ':' is IPv6) */
    int port;                        /* 0..65535, or -1 when absent or empty ("h:") */
    char path[AHG_URL_PATH_MAX];     /* "" or starts with '/' */
    char query[AHG_URL_QUERY_MAX];   /* without the '?'; "" when absent */
};

/* Parse scheme://host[:port][/path][?query][#fragment] into *out (the fragment is
 * dropped). The scheme is ALPHA *(ALPHA / DIGIT / "+" / "-" / "."); the host is a
 * non-empty reg-name (unreserved, sub-delims, '%') or an IPv6 literal in brackets
 * ("[::1]", checked with inet_pton, no zone ids). User info ("user@host") is rejected.
 * Spaces and control characters anywhere are rejected. *out is zeroed (port -1) on error.
 * Errors: AHG_EINVAL (NULL pointer, malformed URL, port not in 0..65535), AHG_ELIMIT (a
 * component is longer than its field). */
int ahg_url_parse(const char *url, struct ahg_url *out);

#endif /* AHG_URL_H */
