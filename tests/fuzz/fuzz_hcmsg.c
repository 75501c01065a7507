/* Fuzzes the Hybrid Connections control-message parser and the encoder round trip. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ahg/err.h"
#include "ahg/hcmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ahg_hcmsg m;
    ahg_hcmsg_init(&m, AHG_HCMSG_NONE);
    if (ahg_hcmsg_parse((const char *)data, size, &m) == AHG_OK) {
        char *out = NULL;
        size_t len = 0;
        (void)ahg_hcmsg_is_rendezvous_only(&m);
        (void)ahg_hcmsg_header_get(&m, "content-type");
        if (ahg_hcmsg_encode(&m, &out, &len) == AHG_OK) {
            struct ahg_hcmsg back;
            ahg_hcmsg_init(&back, AHG_HCMSG_NONE);
            /* what we encode we must be able to parse again */
            if (ahg_hcmsg_parse(out, len, &back) != AHG_OK)
                abort();
            if (back.type != m.type)
                abort();
            ahg_hcmsg_clear(&back);
            free(out);
        }
    }
    ahg_hcmsg_clear(&m);
    return 0;
}
