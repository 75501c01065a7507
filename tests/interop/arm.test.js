'use strict';
/*
 * Microsoft.Relay ARM subset with Microsoft's @azure/arm-relay client on
 * https://127.0.0.1:<mgmt>, authenticated by @azure/identity's ManagedIdentityCredential
 * against the emulator's App Service identity endpoint: hybrid connections created, read,
 * listed, updated and deleted; authorization rules on the HC and on the namespace; listKeys;
 * regenerateKeys, after which a token signed with the old key is refused by the relay.
 */
const assert = require('node:assert/strict');
const https = require('node:https');
const { after, before, describe, test } = require('node:test');

const WebSocket = require('ws');
const h = require('./harness');
const az = require('./azure');

let emu;
let client;

const HC = 'armhc';
const KEY_RE = /^[A-Za-z0-9+/]{43}=$/;

function listenPath(hc) {
    return `/$hc/${hc}?sb-hc-action=listen`;
}

async function collect(iter) {
    const out = [];
    for await (const x of iter)
        out.push(x);
    return out;
}

async function rejectsWith(promise, status) {
    await assert.rejects(promise, (e) => {
        assert.equal(e.statusCode, status, `${e.name}: ${e.message}`);
        return true;
    });
}

before(async () => {
    emu = await h.startEmulator({ hcs: ['precreated', 'precreated-open:noauth'] });
    client = az.relayClient(emu);
});

after(async () => {
    if (emu)
        await emu.stop();
});

describe('hybrid connections', () => {
    test('the pre-created HCs are listed with their properties', async () => {
        const all = await collect(client.hybridConnections.listByNamespace(emu.resourceGroup,
                                                                           emu.namespace));
        const byName = Object.fromEntries(all.map((x) => [x.name, x]));
        assert.ok(byName.precreated, `listed: ${all.map((x) => x.name).join(', ')}`);
        assert.ok(byName['precreated-open']);
        assert.equal(byName.precreated.requiresClientAuthorization, true);
        assert.equal(byName['precreated-open'].requiresClientAuthorization, false);
    });

    test('create returns the real resource shape', async () => {
        const hc = await client.hybridConnections.createOrUpdate(
            emu.resourceGroup, emu.namespace, HC,
            { requiresClientAuthorization: true, userMetadata: 'owner=interop' });
        assert.equal(hc.name, HC);
        assert.equal(hc.type, 'Microsoft.Relay/Namespaces/HybridConnections');
        assert.equal(hc.id, `/subscriptions/${emu.subscription}/resourceGroups/${emu.resourceGroup}` +
                            `/providers/Microsoft.Relay/namespaces/${emu.namespace}` +
                            `/HybridConnections/${HC}`);
        assert.equal(hc.requiresClientAuthorization, true);
        assert.equal(hc.userMetadata, 'owner=interop');
        assert.equal(hc.listenerCount, 0);
        assert.ok(hc.createdAt instanceof Date && !isNaN(hc.createdAt), 'createdAt is a date');
        assert.ok(hc.updatedAt instanceof Date && !isNaN(hc.updatedAt), 'updatedAt is a date');
        assert.ok(Math.abs(hc.createdAt.getTime() - Date.now()) < 120000, 'createdAt is now');
    });

    test('get returns it, and the new HC works on the relay at once', async () => {
        const hc = await client.hybridConnections.get(emu.resourceGroup, emu.namespace, HC);
        assert.equal(hc.name, HC);
        assert.equal(hc.userMetadata, 'owner=interop');
        await h.expectAccepted(emu.relayPort, listenPath(HC),
                               { ServiceBusAuthorization: emu.token(HC) });
    });

    test('listenerCount counts connected listeners', { timeout: 20000 }, async () => {
        const ws = new WebSocket(`${emu.relayWs}${listenPath(HC)}`,
                                 { headers: { ServiceBusAuthorization: emu.token(HC) } });
        ws.on('error', () => {});
        await h.once(ws, 'open', 10000, 'the listener');
        try {
            const hc = await client.hybridConnections.get(emu.resourceGroup, emu.namespace, HC);
            assert.equal(hc.listenerCount, 1);
        } finally {
            ws.close(1000);
            await h.once(ws, 'close', 5000, 'close').catch(() => {});
        }
        /* the count drops once the emulator has seen the close */
        let count = -1;
        for (let i = 0; i < 50 && count !== 0; i++) {
            count = (await client.hybridConnections.get(emu.resourceGroup, emu.namespace, HC))
                        .listenerCount;
            if (count !== 0)
                await h.sleep(100);
        }
        assert.equal(count, 0);
    });

    test('update (PUT again) changes userMetadata and keeps createdAt', async () => {
        const before = await client.hybridConnections.get(emu.resourceGroup, emu.namespace, HC);
        const hc = await client.hybridConnections.createOrUpdate(
            emu.resourceGroup, emu.namespace, HC,
            { requiresClientAuthorization: true, userMetadata: 'owner=changed' });
        assert.equal(hc.userMetadata, 'owner=changed');
        assert.equal(hc.createdAt.getTime(), before.createdAt.getTime());
        const again = await client.hybridConnections.get(emu.resourceGroup, emu.namespace, HC);
        assert.equal(again.userMetadata, 'owner=changed');
    });

    test('list contains the new HC', async () => {
        const all = await collect(client.hybridConnections.listByNamespace(emu.resourceGroup,
                                                                           emu.namespace));
        assert.ok(all.some((x) => x.name === HC && x.userMetadata === 'owner=changed'));
    });

    test('get of a missing HC: 404 with an ARM error body', async () => {
        await assert.rejects(
            client.hybridConnections.get(emu.resourceGroup, emu.namespace, 'no-such-hc'),
            (e) => {
                assert.equal(e.statusCode, 404, `${e.name}: ${e.message}`);
                assert.equal(typeof e.code, 'string', 'error.code from the body');
                assert.ok(e.code.length > 0);
                return true;
            });
    });

    test('delete removes it, closes its listeners with 1001, and it is gone from the relay',
         { timeout: 30000 }, async () => {
        const tmp = 'armhc-delete';
        await client.hybridConnections.createOrUpdate(emu.resourceGroup, emu.namespace, tmp,
                                                      { requiresClientAuthorization: true });
        const ws = new WebSocket(`${emu.relayWs}${listenPath(tmp)}`,
                                 { headers: { ServiceBusAuthorization: emu.token(tmp) } });
        ws.on('error', () => {});
        await h.once(ws, 'open', 10000, 'the listener');
        const closed = h.once(ws, 'close', 10000, 'the listener to be closed');
        await client.hybridConnections.delete(emu.resourceGroup, emu.namespace, tmp);
        const [code] = await closed;
        assert.equal(code, 1001);
        await rejectsWith(client.hybridConnections.get(emu.resourceGroup, emu.namespace, tmp), 404);
        const all = await collect(client.hybridConnections.listByNamespace(emu.resourceGroup,
                                                                           emu.namespace));
        assert.ok(!all.some((x) => x.name === tmp));
        await h.expectRefused(emu.relayPort, listenPath(tmp),
                              { ServiceBusAuthorization: emu.token(tmp) }, 404);
    });

    test('delete of a missing HC succeeds (204)', async () => {
        await client.hybridConnections.delete(emu.resourceGroup, emu.namespace, 'never-existed');
    });

    test('the client also works with api-version 2021-11-01', async () => {
        const c = az.relayClient(emu, undefined, { apiVersion: '2021-11-01' });
        const hc = await c.hybridConnections.get(emu.resourceGroup, emu.namespace, HC);
        assert.equal(hc.name, HC);
        assert.equal(hc.userMetadata, 'owner=changed');
    });
});

describe('authorization rules and keys', () => {
    let keys;

    test('create and get an HC-level rule', async () => {
        const rule = await client.hybridConnections.createOrUpdateAuthorizationRule(
            emu.resourceGroup, emu.namespace, HC, 'app', { rights: ['Listen', 'Send'] });
        assert.equal(rule.name, 'app');
        assert.deepEqual([...rule.rights].sort(), ['Listen', 'Send']);
        assert.match(rule.type, /^Microsoft\.Relay\/Namespaces\/HybridConnections\/AuthorizationRules$/i);
        assert.match(rule.id, new RegExp(`/HybridConnections/${HC}/AuthorizationRules/app$`, 'i'));
        const got = await client.hybridConnections.getAuthorizationRule(
            emu.resourceGroup, emu.namespace, HC, 'app');
        assert.deepEqual([...got.rights].sort(), ['Listen', 'Send']);
        const all = await collect(client.hybridConnections.listAuthorizationRules(
            emu.resourceGroup, emu.namespace, HC));
        assert.ok(all.some((r) => r.name === 'app'));
    });

    test('listKeys returns two distinct 256-bit keys and connection strings', async () => {
        keys = await client.hybridConnections.listKeys(emu.resourceGroup, emu.namespace, HC, 'app');
        assert.equal(keys.keyName, 'app');
        assert.match(keys.primaryKey, KEY_RE);
        assert.match(keys.secondaryKey, KEY_RE);
        assert.notEqual(keys.primaryKey, keys.secondaryKey);
        assert.equal(Buffer.from(keys.primaryKey, 'base64').length, 32);
        assert.ok(keys.primaryConnectionString.startsWith(`Endpoint=sb://${emu.nsHost}/;`),
                  keys.primaryConnectionString);
        assert.ok(keys.primaryConnectionString.includes('SharedAccessKeyName=app;'));
        assert.ok(keys.primaryConnectionString.includes(`SharedAccessKey=${keys.primaryKey}`));
        assert.ok(keys.secondaryConnectionString.includes(`SharedAccessKey=${keys.secondaryKey}`));
    });

    test('tokens signed with either key are accepted by the relay', async () => {
        for (const key of [keys.primaryKey, keys.secondaryKey])
            await h.expectAccepted(emu.relayPort, listenPath(HC),
                                   { ServiceBusAuthorization: emu.token(HC, { keyName: 'app', key }) });
    });

    test('the HC-level rule is not valid for another HC', async () => {
        await h.expectRefused(emu.relayPort, listenPath('precreated'), {
            ServiceBusAuthorization: emu.token('precreated', { keyName: 'app',
                                                               key: keys.primaryKey }),
        }, 401);
    });

    test('regenerateKeys(PrimaryKey): new primary, same secondary; the old key is refused',
         async () => {
        const oldToken = emu.token(HC, { keyName: 'app', key: keys.primaryKey });
        const ws = new WebSocket(`${emu.relayWs}${listenPath(HC)}`,
                                 { headers: { ServiceBusAuthorization: oldToken } });
        ws.on('error', () => {});
        await h.once(ws, 'open', 10000, 'a listener with the old key');

        const fresh = await client.hybridConnections.regenerateKeys(
            emu.resourceGroup, emu.namespace, HC, 'app', { keyType: 'PrimaryKey' });
        assert.match(fresh.primaryKey, KEY_RE);
        assert.notEqual(fresh.primaryKey, keys.primaryKey);
        assert.equal(fresh.secondaryKey, keys.secondaryKey);
        const listed = await client.hybridConnections.listKeys(emu.resourceGroup, emu.namespace,
                                                               HC, 'app');
        assert.equal(listed.primaryKey, fresh.primaryKey);

        await h.expectRefused(emu.relayPort, listenPath(HC), { ServiceBusAuthorization: oldToken },
                              401);
        await h.expectAccepted(emu.relayPort, listenPath(HC), {
            ServiceBusAuthorization: emu.token(HC, { keyName: 'app', key: fresh.primaryKey }),
        });
        await h.expectAccepted(emu.relayPort, listenPath(HC), {
            ServiceBusAuthorization: emu.token(HC, { keyName: 'app', key: fresh.secondaryKey }),
        });
        ws.terminate();
        keys = fresh;
    });

    test('regenerateKeys(SecondaryKey) with an explicit value', async () => {
        const value = require('node:crypto').randomBytes(32).toString('base64');
        const oldSecondary = keys.secondaryKey;
        const fresh = await client.hybridConnections.regenerateKeys(
            emu.resourceGroup, emu.namespace, HC, 'app', { keyType: 'SecondaryKey', key: value });
        assert.equal(fresh.secondaryKey, value);
        assert.equal(fresh.primaryKey, keys.primaryKey);
        await h.expectRefused(emu.relayPort, listenPath(HC), {
            ServiceBusAuthorization: emu.token(HC, { keyName: 'app', key: oldSecondary }),
        }, 401);
        await h.expectAccepted(emu.relayPort, listenPath(HC), {
            ServiceBusAuthorization: emu.token(HC, { keyName: 'app', key: value }),
        });
    });

    test('namespace-level rule: create, listKeys, valid for every HC', async () => {
        const rule = await client.namespaces.createOrUpdateAuthorizationRule(
            emu.resourceGroup, emu.namespace, 'ns-listen', { rights: ['Listen'] });
        assert.deepEqual(rule.rights, ['Listen']);
        const all = await collect(client.namespaces.listAuthorizationRules(emu.resourceGroup,
                                                                           emu.namespace));
        const names = all.map((r) => r.name);
        assert.ok(names.includes('ns-listen'), names.join(', '));
        assert.ok(names.includes('RootManageSharedAccessKey'), names.join(', '));
        const k = await client.namespaces.listKeys(emu.resourceGroup, emu.namespace, 'ns-listen');
        assert.equal(k.keyName, 'ns-listen');
        for (const hc of [HC, 'precreated'])
            await h.expectAccepted(emu.relayPort, listenPath(hc), {
                ServiceBusAuthorization: emu.token(hc, { keyName: 'ns-listen', key: k.primaryKey }),
            });
    });

    test('RootManageSharedAccessKey has the configured root key', async () => {
        const k = await client.namespaces.listKeys(emu.resourceGroup, emu.namespace,
                                                   'RootManageSharedAccessKey');
        assert.equal(k.primaryKey, emu.rootKey);
    });

    test('deleting a rule invalidates its tokens', async () => {
        const k = await client.hybridConnections.listKeys(emu.resourceGroup, emu.namespace, HC,
                                                          'app');
        await client.hybridConnections.deleteAuthorizationRule(emu.resourceGroup, emu.namespace,
                                                               HC, 'app');
        await rejectsWith(client.hybridConnections.getAuthorizationRule(
            emu.resourceGroup, emu.namespace, HC, 'app'), 404);
        await h.expectRefused(emu.relayPort, listenPath(HC), {
            ServiceBusAuthorization: emu.token(HC, { keyName: 'app', key: k.primaryKey }),
        }, 401);
    });
});

describe('bearer token required', () => {
    function raw(headers) {
        return new Promise((resolve, reject) => {
            const req = https.request({
                host: '127.0.0.1', port: emu.mgmtPort, method: 'GET', headers,
                path: `/subscriptions/${emu.subscription}/resourceGroups/${emu.resourceGroup}` +
                      `/providers/Microsoft.Relay/namespaces/${emu.namespace}/hybridConnections` +
                      '?api-version=2021-11-01',
            }, (res) => {
                const chunks = [];
                res.on('data', (c) => chunks.push(c));
                res.on('end', () => resolve({ status: res.statusCode, headers: res.headers,
                                              body: Buffer.concat(chunks).toString() }));
            });
            req.on('error', reject);
            req.end();
        });
    }

    test('no Authorization: 401 with an ARM error body', async () => {
        const r = await raw({});
        assert.equal(r.status, 401, r.body);
        const j = JSON.parse(r.body);
        assert.equal(typeof j.error.code, 'string');
        assert.equal(typeof j.error.message, 'string');
    });

    test('a bearer token for another resource (Key Vault): 401', async () => {
        const cred = az.credential(emu);
        const t = await cred.getToken('https://vault.azure.net/.default');
        const r = await raw({ Authorization: `Bearer ${t.token}` });
        assert.equal(r.status, 401, r.body);
    });

    test('a garbage bearer token: 401', async () => {
        const r = await raw({ Authorization: 'Bearer not.a.jwt' });
        assert.equal(r.status, 401, r.body);
    });
});
