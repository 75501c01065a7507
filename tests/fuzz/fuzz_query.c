/* Fuzzes the query-string helpers the relay uses on every request target. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ahg/err.h"
#include "ahg/url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char in[8192];
    char out[8192];
    if (size >= sizeof(in))
        size = sizeof(in) - 1;
    memcpy(in, data, size);
    in[size] = '\0';
    const char *q = strchr(in, '?');
    (void)ahg_url_query_get(q ? q + 1 : in, "sb-hc-token", out, sizeof(out), true);
    (void)ahg_url_query_get(q ? q + 1 : in, "sb-hc-action", out, sizeof(out), false);
    if (ahg_url_strip_sbhc(in, out, sizeof(out)) == AHG_OK) {
        /* stripping never adds bytes, and stripping twice changes nothing */
        if (strlen(out) > strlen(in))
            abort();
        char again[8192];
        if (ahg_url_strip_sbhc(out, again, sizeof(again)) != AHG_OK || strcmp(out, again) != 0)
            abort();
    }
    size_t dl = 0;
    (void)ahg_url_decode(in, size, out, sizeof(out), true, &dl);
    struct ahg_url *u = malloc(sizeof(*u));
    if (u) {
        (void)ahg_url_parse(in, u);
        free(u);
    }
    return 0;
}
