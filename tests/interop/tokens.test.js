'use strict';
/*
 * SAS tokens made by hyco's own createRelayToken are accepted on every data-plane operation
 * (listen, WebSocket connect, HTTP send; in the ServiceBusAuthorization header and in
 * sb-hc-token); missing, tampered, expired, wrong-audience, unknown-rule and wrong-right
 * tokens are refused with the real statuses (401, 403 for a missing right). Refusals are
 * observed with Node's raw HTTP client (never with hyco-ws, which reconnect-storms on
 * failure). Listen-only and Send-only rules are created through @azure/arm-relay.
 */
const assert = require('node:assert/strict');
const { after, before, describe, test } = require('node:test');

const hycoWs = require('hyco-ws');
const WebSocket = require('ws');
const h = require('./harness');
const az = require('./azure');

let emu;
let httpListener;  /* hyco-https on tok1 */
let openListener;  /* hyco-https on tokopen (requiresClientAuthorization false) */
let wsListener;    /* hyco-ws on tok2 */
const reached = [];  /* request targets that reached the tok1 listener */

function echo(req, res) {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
        reached.push(req.url);
        res.setHeader('Content-Type', 'text/plain');
        res.end(`ok ${req.method} ${req.url} ${Buffer.concat(chunks).length}`);
    });
}

function tamper(token) {
    /* flip one character of the signature (kept valid base64, still URL-encoded) */
    return token.replace(/sig=([^&]+)/, (_, sig) => {
        const s = decodeURIComponent(sig);
        const c = s[5] === 'A' ? 'B' : 'A';
        return `sig=${encodeURIComponent(s.slice(0, 5) + c + s.slice(6))}`;
    });
}

function listenPath(hc) {
    return `/$hc/${hc}?sb-hc-action=listen`;
}

function connectPath(hc) {
    return `/$hc/${hc}?sb-hc-action=connect`;
}

async function httpSend(hc, token, extraPath = '') {
    const headers = token ? { ServiceBusAuthorization: token } : {};
    return h.request({ port: emu.relayPort, method: 'POST', path: `/${hc}/t${extraPath}`,
                       body: 'payload', headers, timeout: 20000 });
}

/* Asserts an HTTP-mode refusal, and that it never reached the listener. */
async function expectSendRefused(hc, token, status, re, tag) {
    const before = reached.length;
    const r = await httpSend(hc, token, `?tag=${tag}`);
    assert.equal(r.status, status, `HTTP send answered ${r.status} ${r.statusMessage} ` +
                                   `${r.body.toString().slice(0, 300)}`);
    if (re)
        assert.match(`${r.statusMessage} ${r.body}`, re);
    assert.equal(reached.length, before, 'a refused request must not reach the listener');
    assert.ok(!reached.some((u) => u.includes(`tag=${tag}`)));
}

before(async () => {
    emu = await h.startEmulator({ hcs: ['tok1', 'tok2', 'tok3', 'tokopen:noauth'] });
    httpListener = await h.startHttpsListener(emu, 'tok1', echo);
    openListener = await h.startHttpsListener(emu, 'tokopen', echo);
    wsListener = hycoWs.createRelayedServer({ server: emu.listenUrl('tok2'),
                                              token: emu.token('tok2') }, (ws) => {
        ws.on('error', () => {});
        ws.on('message', (data, flags) => ws.send(data, { binary: !!(flags && flags.binary) }));
    });
    wsListener.on('error', () => {});
    await h.once(wsListener, 'listening', 15000, 'the hyco-ws listener on tok2');
});

after(async () => {
    await h.closeHttpsListener(httpListener);
    await h.closeHttpsListener(openListener);
    if (wsListener)
        wsListener.close(() => {});
    await h.sleep(100);
    if (emu)
        await emu.stop();
});

describe('tokens made by createRelayToken are accepted', () => {
    test('listen, token in ServiceBusAuthorization', async () => {
        await h.expectAccepted(emu.relayPort, listenPath('tok3'),
                               { ServiceBusAuthorization: emu.token('tok3') });
    });

    test('listen, token in sb-hc-token', async () => {
        await h.expectAccepted(emu.relayPort, `${listenPath('tok3')}&sb-hc-token=` +
                               encodeURIComponent(emu.token('tok3')));
    });

    test('listen, token signed for the ws://127.0.0.1:PORT listen URI itself', async () => {
        const hyco = require('hyco-https');
        const t = hyco.createRelayToken(emu.listenUrl('tok3'), emu.rootKeyName, emu.rootKey);
        assert.match(decodeURIComponent(/sr=([^&]+)/.exec(t)[1]),
                     new RegExp(`^http://127\\.0\\.0\\.1:${emu.relayPort}/tok3$`));
        await h.expectAccepted(emu.relayPort, listenPath('tok3'), { ServiceBusAuthorization: t });
    });

    test('listen, namespace-wide token (sr=http://<ns>/)', async () => {
        const hyco = require('hyco-https');
        const t = hyco.createRelayToken(`http://${emu.nsHost}`, emu.rootKeyName, emu.rootKey);
        await h.expectAccepted(emu.relayPort, listenPath('tok3'), { ServiceBusAuthorization: t });
    });

    test('HTTP send, token in ServiceBusAuthorization', async () => {
        const r = await httpSend('tok1', emu.token('tok1'));
        assert.equal(r.status, 200, `${r.status} ${r.statusMessage}`);
        assert.equal(r.body.toString(), 'ok POST /tok1/t 7');
    });

    test('HTTP send, token in sb-hc-token', async () => {
        const r = await h.request({
            port: emu.relayPort, method: 'POST', body: 'payload',
            path: `/tok1/t?sb-hc-token=${encodeURIComponent(emu.token('tok1'))}`,
        });
        assert.equal(r.status, 200, `${r.status} ${r.statusMessage}`);
        assert.equal(r.body.toString(), 'ok POST /tok1/t 7');
    });

    test('WebSocket connect, token in ServiceBusAuthorization', { timeout: 20000 }, async () => {
        const ws = new WebSocket(`${emu.relayWs}${connectPath('tok2')}`,
                                 { headers: { ServiceBusAuthorization: emu.token('tok2') } });
        ws.on('error', () => {});
        await h.once(ws, 'open', 15000, 'the sender to open');
        ws.send('echo me');
        const [data] = await h.once(ws, 'message', 10000, 'the echo');
        assert.equal(data.toString(), 'echo me');
        ws.close(1000);
        await h.once(ws, 'close', 10000, 'close');
    });

    test('HTTP send without a token on an HC without client authorization', async () => {
        const r = await httpSend('tokopen', null);
        assert.equal(r.status, 200, `${r.status} ${r.statusMessage}`);
        assert.equal(r.body.toString(), 'ok POST /tokopen/t 7');
    });
});

describe('bad tokens are refused with the real statuses', () => {
    test('missing token: 401 on listen, connect and HTTP send', async () => {
        await h.expectRefused(emu.relayPort, listenPath('tok3'), {}, 401);
        await h.expectRefused(emu.relayPort, connectPath('tok2'), {}, 401);
        await expectSendRefused('tok1', null, 401, null, 'missing');
    });

    test('listeners always need a token, even without client authorization', async () => {
        await h.expectRefused(emu.relayPort, listenPath('tokopen'), {}, 401);
    });

    test('tampered signature: 401 "invalid signature"', async () => {
        await h.expectRefused(emu.relayPort, listenPath('tok3'),
                              { ServiceBusAuthorization: tamper(emu.token('tok3')) }, 401,
                              /invalid signature/i);
        await h.expectRefused(emu.relayPort, connectPath('tok2'),
                              { ServiceBusAuthorization: tamper(emu.token('tok2')) }, 401,
                              /invalid signature/i);
        await expectSendRefused('tok1', tamper(emu.token('tok1')), 401, /invalid signature/i,
                                'tampered');
    });

    test('token signed with another key: 401', async () => {
        const other = require('node:crypto').randomBytes(32).toString('base64');
        await h.expectRefused(emu.relayPort, listenPath('tok3'),
                              { ServiceBusAuthorization: emu.token('tok3', { key: other }) }, 401);
    });

    test('expired token (se an hour ago): 401', async () => {
        const t3 = emu.token('tok3', { seconds: -3600 });
        assert.ok(Number(/se=(\d+)/.exec(t3)[1]) < Date.now() / 1000 - 3000);
        await h.expectRefused(emu.relayPort, listenPath('tok3'), { ServiceBusAuthorization: t3 },
                              401);
        await h.expectRefused(emu.relayPort, connectPath('tok2'),
                              { ServiceBusAuthorization: emu.token('tok2', { seconds: -3600 }) },
                              401);
        await expectSendRefused('tok1', emu.token('tok1', { seconds: -3600 }), 401, null,
                                'expired');
    });

    test('wrong audience (another HC\'s token): 401 InvalidAudience', async () => {
        await h.expectRefused(emu.relayPort, listenPath('tok3'),
                              { ServiceBusAuthorization: emu.token('tok1') }, 401, /audience/i);
        await h.expectRefused(emu.relayPort, connectPath('tok2'),
                              { ServiceBusAuthorization: emu.token('tok3') }, 401, /audience/i);
        await expectSendRefused('tok1', emu.token('tok2'), 401, /audience/i, 'audience');
    });

    test('wrong audience (another namespace): 401', async () => {
        const hyco = require('hyco-https');
        const t = hyco.createRelayToken('http://someone-else.servicebus.windows.net/tok3',
                                        emu.rootKeyName, emu.rootKey);
        await h.expectRefused(emu.relayPort, listenPath('tok3'), { ServiceBusAuthorization: t },
                              401);
    });

    test('unknown rule name: 401', async () => {
        await h.expectRefused(emu.relayPort, listenPath('tok3'), {
            ServiceBusAuthorization: emu.token('tok3', { keyName: 'NoSuchRule' }),
        }, 401);
    });

    test('garbage token: 401', async () => {
        await h.expectRefused(emu.relayPort, listenPath('tok3'),
                              { ServiceBusAuthorization: 'SharedAccessSignature garbage' }, 401);
        await expectSendRefused('tok1', 'not a token at all', 401, null, 'garbage');
    });
});

describe('rights (rules created through @azure/arm-relay)', () => {
    let listenOnly;
    let sendOnly;

    before(async () => {
        const client = az.relayClient(emu);
        await client.namespaces.createOrUpdateAuthorizationRule(
            emu.resourceGroup, emu.namespace, 'listen-only', { rights: ['Listen'] });
        await client.namespaces.createOrUpdateAuthorizationRule(
            emu.resourceGroup, emu.namespace, 'send-only', { rights: ['Send'] });
        listenOnly = await client.namespaces.listKeys(emu.resourceGroup, emu.namespace,
                                                      'listen-only');
        sendOnly = await client.namespaces.listKeys(emu.resourceGroup, emu.namespace,
                                                    'send-only');
    });

    const tok = (hc, keys) => emu.token(hc, { keyName: keys.keyName, key: keys.primaryKey });

    test('a Listen-only rule may listen', async () => {
        await h.expectAccepted(emu.relayPort, listenPath('tok3'),
                               { ServiceBusAuthorization: tok('tok3', listenOnly) });
    });

    test('a Send-only rule may send (HTTP and WebSocket)', { timeout: 20000 }, async () => {
        const r = await httpSend('tok1', tok('tok1', sendOnly));
        assert.equal(r.status, 200, `${r.status} ${r.statusMessage}`);
        const ws = new WebSocket(`${emu.relayWs}${connectPath('tok2')}`,
                                 { headers: { ServiceBusAuthorization: tok('tok2', sendOnly) } });
        ws.on('error', () => {});
        await h.once(ws, 'open', 15000, 'the sender to open');
        ws.close(1000);
    });

    test('a Listen-only rule used to send: 403', async () => {
        await h.expectRefused(emu.relayPort, connectPath('tok2'),
                              { ServiceBusAuthorization: tok('tok2', listenOnly) }, 403);
        await expectSendRefused('tok1', tok('tok1', listenOnly), 403, null, 'listen-only');
    });

    test('a Send-only rule used to listen: 403', async () => {
        await h.expectRefused(emu.relayPort, listenPath('tok3'),
                              { ServiceBusAuthorization: tok('tok3', sendOnly) }, 403);
    });

    test('the secondary key signs valid tokens too', async () => {
        await h.expectAccepted(emu.relayPort, listenPath('tok3'), {
            ServiceBusAuthorization: emu.token('tok3', { keyName: listenOnly.keyName,
                                                         key: listenOnly.secondaryKey }),
        });
    });
});

describe('renewToken on an open control channel', () => {
    async function rawListener() {
        const ws = new WebSocket(`${emu.relayWs}${listenPath('tok3')}`,
                                 { headers: { ServiceBusAuthorization: emu.token('tok3') } });
        ws.on('error', () => {});
        await h.once(ws, 'open', 10000, 'the control channel');
        return ws;
    }

    test('a valid renewal keeps the channel open', { timeout: 20000 }, async () => {
        const ws = await rawListener();
        let closed = null;
        ws.on('close', (code) => { closed = code; });
        ws.send(JSON.stringify({ renewToken: { token: emu.token('tok3', { seconds: 7200 }) } }));
        await h.sleep(1000);
        assert.equal(closed, null, 'the channel stayed open');
        assert.equal(ws.readyState, WebSocket.OPEN);
        ws.close(1000);
    });

    for (const [what, bad] of [
        ['tampered', () => tamper(emu.token('tok3'))],
        ['expired', () => emu.token('tok3', { seconds: -3600 })],
    ]) {
        test(`a ${what} renewal closes the channel with 1008`, { timeout: 20000 }, async () => {
            const ws = await rawListener();
            const closed = h.once(ws, 'close', 10000, 'close 1008');
            ws.send(JSON.stringify({ renewToken: { token: bad() } }));
            const [code] = await closed;
            assert.equal(code, 1008);
        });
    }
});
