'use strict';
/*
 * Microsoft's Azure SDK clients pointed at the emulator: @azure/identity's
 * ManagedIdentityCredential in its App Service form (IDENTITY_ENDPOINT + IDENTITY_HEADER) and
 * @azure/arm-relay's RelayAPI on https://127.0.0.1:<mgmt> (trusted through
 * NODE_EXTRA_CA_CERTS). MSAL picks its managed-identity source once per process, so a test
 * file uses one form only.
 */
const { ManagedIdentityCredential } = require('@azure/identity');
const { RelayAPI } = require('@azure/arm-relay');

const ARM_SCOPE = 'https://management.azure.com/.default';

/* Points the App Service managed-identity environment at the emulator. */
function useAppServiceIdentity(emu) {
    process.env.IDENTITY_ENDPOINT = emu.identityEndpoint;
    process.env.IDENTITY_HEADER = emu.identityHeader;
    delete process.env.MSI_ENDPOINT;
    delete process.env.MSI_SECRET;
    delete process.env.IDENTITY_SERVER_THUMBPRINT;
    delete process.env.IMDS_ENDPOINT;
}

function credential(emu) {
    useAppServiceIdentity(emu);
    return new ManagedIdentityCredential();
}

/*
 * A RelayAPI client for the emulator. The SDK would derive its token scope from the endpoint
 * (https://127.0.0.1:PORT/.default); the real ARM audience is given instead, as a client
 * pointed at a sovereign cloud does.
 */
function relayClient(emu, cred = credential(emu), extra = {}) {
    return new RelayAPI(cred, emu.subscription, {
        endpoint: emu.mgmtUrl,
        credentialScopes: [ARM_SCOPE],
        retryOptions: { maxRetries: 1, retryDelayInMs: 100, maxRetryDelayInMs: 500 },
        ...extra,
    });
}

module.exports = { ARM_SCOPE, credential, relayClient, useAppServiceIdentity };
