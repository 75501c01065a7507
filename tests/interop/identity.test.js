'use strict';
/*
 * Managed identity, App Service form, with Microsoft's @azure/identity
 * ManagedIdentityCredential (MSAL underneath): IDENTITY_ENDPOINT=http://127.0.0.1:<id>/msi/token
 * and IDENTITY_HEADER=<the emulator's secret>. Tokens for the three resources the product
 * uses; their claims; a relay (Entra) token used by hyco-https as its listener token and by a
 * sender; the header secret enforced.
 */
const assert = require('node:assert/strict');
const http = require('node:http');
const { after, before, test } = require('node:test');

const h = require('./harness');
const az = require('./azure');

let emu;
let cred;

const RESOURCES = [
    ['https://relay.azure.net//.default', 'https://relay.azure.net'],
    ['https://management.azure.com/.default', 'https://management.azure.com'],
    ['https://vault.azure.net/.default', 'https://vault.azure.net'],
];

function sameResource(a, b) {
    return a.replace(/\/+$/, '') === b.replace(/\/+$/, '');
}

before(async () => {
    emu = await h.startEmulator({ hcs: ['idhc'] });
    cred = az.credential(emu);
});

after(async () => {
    if (emu)
        await emu.stop();
});

for (const [scope, resource] of RESOURCES) {
    test(`getToken for ${scope}`, { timeout: 30000 }, async () => {
        const t0 = Math.floor(Date.now() / 1000);
        const t = await cred.getToken(scope);
        assert.ok(t && typeof t.token === 'string', 'an access token');
        const claims = h.jwtPayload(t.token);
        const aud = Array.isArray(claims.aud) ? claims.aud[0] : claims.aud;
        assert.ok(sameResource(aud, resource), `aud ${aud} for ${resource}`);
        /* default lifetime 1 h */
        assert.ok(claims.exp >= t0 + 3500 && claims.exp <= t0 + 3700 + 5, `exp ${claims.exp}`);
        if (claims.nbf !== undefined)
            assert.ok(claims.nbf <= t0 + 5, `nbf ${claims.nbf}`);
        assert.ok(Math.abs(t.expiresOnTimestamp - claims.exp * 1000) <= 2000,
                  `expiresOnTimestamp ${t.expiresOnTimestamp} matches exp ${claims.exp}`);
        const header = JSON.parse(Buffer.from(t.token.split('.')[0], 'base64url').toString());
        assert.equal(header.typ === undefined ? 'JWT' : header.typ.toUpperCase(), 'JWT');
        assert.ok(header.alg, 'alg in the JOSE header');
    });
}

test('tokens for different resources differ', async () => {
    const a = await cred.getToken(RESOURCES[0][0]);
    const b = await cred.getToken(RESOURCES[1][0]);
    assert.notEqual(a.token, b.token);
});

function rawToken(query, headers) {
    return new Promise((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port: emu.identityPort, headers,
                                   path: `/msi/token?${query}` }, (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode,
                                          body: Buffer.concat(chunks).toString() }));
        });
        req.on('error', reject);
        req.end();
    });
}

test('the App Service form answers with the documented JSON', async () => {
    const r = await rawToken('api-version=2019-08-01&resource=https%3A%2F%2Fvault.azure.net',
                             { 'X-IDENTITY-HEADER': emu.identityHeader });
    assert.equal(r.status, 200, r.body);
    const j = JSON.parse(r.body);
    assert.equal(typeof j.access_token, 'string');
    assert.equal(j.token_type, 'Bearer');
    assert.ok(sameResource(j.resource, 'https://vault.azure.net'));
    assert.match(String(j.expires_on), /^\d+$/);
});

test('a wrong or missing X-IDENTITY-HEADER gets no token', async () => {
    for (const headers of [{ 'X-IDENTITY-HEADER': 'wrong' }, {}]) {
        const r = await rawToken('api-version=2019-08-01&resource=https%3A%2F%2Fvault.azure.net',
                                 headers);
        assert.ok(r.status >= 400 && r.status < 500, `status ${r.status}`);
        assert.ok(!r.body.includes('access_token'), r.body);
    }
});

test('a relay token from the credential works as the hyco-https listener token and as the '
     + 'sender token', { timeout: 30000 }, async () => {
    const t = await cred.getToken('https://relay.azure.net//.default');
    const server = await h.startHttpsListener(emu, 'idhc', (req, res) => {
        res.end(`hello ${req.url}`);
    }, { token: t.token });
    try {
        const r = await h.request({ port: emu.relayPort, path: '/idhc/entra',
                                    headers: { ServiceBusAuthorization: t.token } });
        assert.equal(r.status, 200, `${r.status} ${r.statusMessage}`);
        assert.equal(r.body.toString(), 'hello /idhc/entra');
    } finally {
        await h.closeHttpsListener(server);
    }
});

test('a management token is not a relay token', async () => {
    const t = await cred.getToken('https://management.azure.com/.default');
    await h.expectRefused(emu.relayPort, '/$hc/idhc?sb-hc-action=listen',
                          { ServiceBusAuthorization: t.token }, 401);
});
