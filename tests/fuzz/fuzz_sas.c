/* Fuzzes the SAS token parser and the audience check. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ahg/err.h"
#include "ahg/sas.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char tok[AHG_SAS_MAX + 64];
    if (size >= sizeof(tok))
        size = sizeof(tok) - 1;
    memcpy(tok, data, size);
    tok[size] = '\0';
    struct ahg_sas s;
    if (ahg_sas_parse(tok, &s) == AHG_OK) {
        (void)ahg_sas_verify(&s, "XmNd2Wq7Lr4Tz9Pb1Vc6Ys3Hf8Jk0Ga5Ue2Io7Rw4Q=", 1700000000, 300);
        (void)ahg_sas_covers(s.resource, "contoso.servicebus.windows.net", "127.0.0.1", "hyco/x");
    }
    char norm[1024];
    (void)ahg_sas_normalize_audience(tok, norm, sizeof(norm));
    return 0;
}
