'use strict';
/*
 * Managed identity, IMDS form (Metadata: true, api-version 2018-02-01), with Microsoft's
 * @azure/identity ManagedIdentityCredential. MSAL's IMDS source takes its base URL from
 * AZURE_POD_IDENTITY_AUTHORITY_HOST (the pod-identity override), which points it at
 * http://127.0.0.1:<identity>/metadata/identity/oauth2/token. MSAL chooses its source once per
 * process, hence this separate file.
 */
const assert = require('node:assert/strict');
const http = require('node:http');
const { after, before, test } = require('node:test');

const { ManagedIdentityCredential } = require('@azure/identity');
const h = require('./harness');

let emu;
let cred;

before(async () => {
    emu = await h.startEmulator({});
    for (const k of ['IDENTITY_ENDPOINT', 'IDENTITY_HEADER', 'MSI_ENDPOINT', 'MSI_SECRET',
                     'IMDS_ENDPOINT', 'IDENTITY_SERVER_THUMBPRINT'])
        delete process.env[k];
    process.env.AZURE_POD_IDENTITY_AUTHORITY_HOST = `http://127.0.0.1:${emu.identityPort}`;
    cred = new ManagedIdentityCredential();
});

after(async () => {
    if (emu)
        await emu.stop();
});

for (const [scope, resource] of [
    ['https://relay.azure.net//.default', 'https://relay.azure.net'],
    ['https://management.azure.com/.default', 'https://management.azure.com'],
    ['https://vault.azure.net/.default', 'https://vault.azure.net'],
]) {
    test(`IMDS getToken for ${scope}`, { timeout: 60000 }, async () => {
        const t = await cred.getToken(scope);
        const claims = h.jwtPayload(t.token);
        const aud = Array.isArray(claims.aud) ? claims.aud[0] : claims.aud;
        assert.equal(aud.replace(/\/+$/, ''), resource);
        assert.ok(t.expiresOnTimestamp > Date.now() + 3000 * 1000);
    });
}

function raw(headers) {
    return new Promise((resolve, reject) => {
        const req = http.request({
            host: '127.0.0.1', port: emu.identityPort, headers,
            path: '/metadata/identity/oauth2/token?api-version=2018-02-01' +
                  '&resource=https%3A%2F%2Fmanagement.azure.com%2F',
        }, (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode,
                                          body: Buffer.concat(chunks).toString() }));
        });
        req.on('error', reject);
        req.end();
    });
}

test('IMDS answers with string-valued fields', async () => {
    const r = await raw({ Metadata: 'true' });
    assert.equal(r.status, 200, r.body);
    const j = JSON.parse(r.body);
    assert.equal(typeof j.access_token, 'string');
    assert.equal(j.token_type, 'Bearer');
    assert.equal(typeof j.expires_in, 'string');
    assert.equal(typeof j.expires_on, 'string');
    assert.equal(j.resource, 'https://management.azure.com/');
});

test('IMDS without Metadata: true: 400 bad_request_102', async () => {
    const r = await raw({});
    assert.equal(r.status, 400, r.body);
    const j = JSON.parse(r.body);
    assert.equal(j.error, 'bad_request_102');
});
