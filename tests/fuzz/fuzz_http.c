/* Fuzzes the HTTP/1.1 head parser and chunked body decoder, fed in two pieces. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "ahg/err.h"
#include "ahg/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
sink(void *ud, const char *p, size_t n)
{
    (void)ud;
    (void)p;
    (void)n;
    return AHG_OK;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum ahg_http_kind kind = (data[0] & 1) ? AHG_HTTP_RESPONSE : AHG_HTTP_REQUEST;
    data++;
    size--;
    struct ahg_http_parser *p = ahg_http_parser_new(kind, NULL, NULL);
    if (!p)
        return 0;
    size_t off = 0;
    while (off < size) {
        size_t used = 0;
        int rc = ahg_http_parser_feed(p, (const char *)data + off, size - off, &used);
        off += used;
        if (rc != AHG_OK)
            break;
        const struct ahg_http_head *h = ahg_http_parser_head(p);
        if (h) {
            size_t need = 0;
            (void)ahg_http_head_serialize(h, AHG_HTTP_SER_DROP_HOP, NULL, 0, &need);
        }
        rc = ahg_http_parser_body(p, (const char *)data + off, size - off, &used, sink, NULL);
        off += used;
        if (rc != AHG_OK)
            break;
        ahg_http_parser_reset(p);
    }
    (void)ahg_http_parser_eof(p);
    ahg_http_parser_free(p);
    return 0;
}
