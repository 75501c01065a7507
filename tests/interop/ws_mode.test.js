'use strict';
/*
 * WebSocket mode with Microsoft's hyco-ws 1.0.5 as the listener (createRelayedServer) and as
 * the sender (relayedConnect): connect -> accept -> rendezvous -> splice; text and binary
 * messages both ways, including 1 MiB ones; ordering; close codes forwarded end to end;
 * concurrent senders each spliced to their own rendezvous.
 */
const assert = require('node:assert/strict');
const { after, before, test } = require('node:test');

const hycoWs = require('hyco-ws');
const h = require('./harness');

const HC = 'wshc';

let emu;
let server;
const pending = [];  /* connections not yet taken by a test */
const waiters = [];

function nextConnection(ms = 15000) {
    if (pending.length)
        return Promise.resolve(pending.shift());
    return h.withTimeout(new Promise((resolve) => waiters.push(resolve)), ms,
                         'a connection on the hyco-ws listener');
}

/* hyco-ws hands over the rendezvous socket before it is open. */
async function opened(ws, what) {
    if (ws.readyState !== 1 /* OPEN */)
        await h.once(ws, 'open', 15000, `${what} to open`);
    return ws;
}

/* Queues every message of ws as {data, binary}; next() resolves with the next one. */
function inbox(ws) {
    const q = [];
    const w = [];
    ws.on('message', (data, flags) => {
        /* ws 1.1.5: (data, flags); ws >= 6: (data, isBinary) */
        const binary = typeof flags === 'object' ? !!flags.binary : !!flags;
        const m = { data, binary };
        if (w.length)
            w.shift()(m);
        else
            q.push(m);
    });
    return {
        next(ms = 15000) {
            if (q.length)
                return Promise.resolve(q.shift());
            return h.withTimeout(new Promise((resolve) => w.push(resolve)), ms, 'a message');
        },
    };
}

/* A sender through hyco-ws' relayedConnect; resolves once the splice is open. */
async function connect(suffix = '', query = '') {
    const url = emu.connectUrl(HC, suffix, query);
    return new Promise((resolve, reject) => {
        const ws = hycoWs.relayedConnect(url, emu.token(HC), () => resolve(ws));
        ws.on('error', (e) => reject(new Error(`relayedConnect: ${e.message}`)));
    });
}

/* One sender and the listener side of its splice, both open, with inboxes. */
async function pair(suffix, query) {
    const [sender, lconn] = await Promise.all([connect(suffix, query), nextConnection()]);
    await opened(lconn, 'the listener\'s rendezvous');
    return { sender, listener: lconn, sIn: inbox(sender), lIn: inbox(lconn) };
}

function closeQuietly(ws) {
    try {
        if (ws && ws.readyState <= 1)
            ws.terminate();
    } catch {
        /* already gone */
    }
}

before(async () => {
    emu = await h.startEmulator({ hcs: [HC] });
    server = hycoWs.createRelayedServer({ server: emu.listenUrl(HC), token: emu.token(HC) },
                                        (ws) => {
        ws.on('error', () => {});
        if (waiters.length)
            waiters.shift()(ws);
        else
            pending.push(ws);
    });
    /* hyco-ws throws on an unhandled 'error' and reconnects at once on any failure. */
    server.on('error', () => {});
    await h.once(server, 'listening', 15000, 'the hyco-ws listener');
});

after(async () => {
    if (server)
        server.close(() => {});
    await h.sleep(100);
    if (emu)
        await emu.stop();
});

test('text messages both ways', { timeout: 30000 }, async () => {
    const p = await pair();
    p.sender.send('hello from the sender');
    let m = await p.lIn.next();
    assert.equal(m.binary, false);
    assert.equal(m.data.toString(), 'hello from the sender');
    p.listener.send('hello from the listener');
    m = await p.sIn.next();
    assert.equal(m.binary, false);
    assert.equal(m.data.toString(), 'hello from the listener');
    p.sender.close(1000, 'done');
    await h.once(p.listener, 'close', 10000, 'the listener side to close');
});

test('1 MiB binary messages both ways arrive intact', { timeout: 60000 }, async () => {
    const p = await pair();
    const up = h.pattern(h.MiB, 11);
    const down = h.pattern(h.MiB, 12);
    p.sender.send(up, { binary: true });
    const a = await p.lIn.next(30000);
    assert.equal(a.binary, true);
    assert.equal(a.data.length, up.length);
    assert.equal(h.sha256(a.data), h.sha256(up));
    p.listener.send(down, { binary: true });
    const b = await p.sIn.next(30000);
    assert.equal(b.binary, true);
    assert.equal(b.data.length, down.length);
    assert.equal(h.sha256(b.data), h.sha256(down));
    /* and at the same time in both directions */
    p.sender.send(down, { binary: true });
    p.listener.send(up, { binary: true });
    const [c, d] = await Promise.all([p.lIn.next(30000), p.sIn.next(30000)]);
    assert.equal(h.sha256(c.data), h.sha256(down));
    assert.equal(h.sha256(d.data), h.sha256(up));
    p.sender.close(1000);
    await h.once(p.listener, 'close', 10000, 'the listener side to close');
});

test('many messages keep their order and boundaries', { timeout: 60000 }, async () => {
    const p = await pair();
    const sizes = [];
    for (let i = 0; i < 200; i++)
        sizes.push((i * 7919) % 70000);
    for (let i = 0; i < sizes.length; i++)
        p.sender.send(h.pattern(sizes[i], i), { binary: true });
    for (let i = 0; i < sizes.length; i++) {
        const m = await p.lIn.next(30000);
        assert.equal(m.data.length, sizes[i], `message ${i}`);
        assert.equal(h.sha256(m.data), h.sha256(h.pattern(sizes[i], i)), `message ${i}`);
    }
    p.sender.close(1000);
    await h.once(p.listener, 'close', 10000, 'the listener side to close');
});

test('a close from the sender reaches the listener with its code', { timeout: 30000 }, async () => {
    const p = await pair();
    const closed = h.once(p.listener, 'close', 10000, 'the listener side to close');
    p.sender.close(4000, 'bye');
    const [code, reason] = await closed;
    assert.equal(code, 4000);
    assert.equal(String(reason || ''), 'bye');
});

test('a close from the listener reaches the sender with its code', { timeout: 30000 },
     async () => {
    const p = await pair();
    const closed = h.once(p.sender, 'close', 10000, 'the sender to close');
    p.listener.close(1000, 'listener done');
    const [code] = await closed;
    assert.equal(code, 1000);
});

test('the path suffix and query of the sender reach the accept address', { timeout: 30000 },
     async () => {
    const p = await pair('/sub/path', 'app=1&');
    const u = new URL(p.listener.url);
    assert.equal(u.pathname, `/$hc/${HC}/sub/path`);
    assert.equal(u.searchParams.get('app'), '1');
    assert.equal(u.searchParams.get('sb-hc-action'), 'accept');
    p.sender.send('ping');
    assert.equal((await p.lIn.next()).data.toString(), 'ping');
    p.sender.close(1000);
    await h.once(p.listener, 'close', 10000, 'the listener side to close');
});

test('concurrent senders are each spliced to their own rendezvous', { timeout: 60000 },
     async () => {
    const N = 5;
    const pairs = [];
    /* connect one at a time so each listener-side socket is known to belong to its sender */
    for (let i = 0; i < N; i++)
        pairs.push(await pair());
    for (let i = 0; i < N; i++)
        pairs[i].sender.send(`sender ${i}`);
    for (let i = 0; i < N; i++)
        assert.equal((await pairs[i].lIn.next()).data.toString(), `sender ${i}`);
    for (let i = 0; i < N; i++)
        pairs[i].listener.send(`listener ${i}`);
    for (let i = 0; i < N; i++)
        assert.equal((await pairs[i].sIn.next()).data.toString(), `listener ${i}`);
    for (const p of pairs)
        p.sender.close(1000);
    await Promise.all(pairs.map((p) => h.once(p.listener, 'close', 10000, 'close')));
});

test('the sender token may come in sb-hc-token instead of the header', { timeout: 30000 },
     async () => {
    const url = `${emu.relayWs}/$hc/${HC}?sb-hc-action=connect&sb-hc-token=` +
                encodeURIComponent(emu.token(HC));
    const [sender, lconn] = await Promise.all([
        new Promise((resolve, reject) => {
            const ws = hycoWs.relayedConnect(url, null, () => resolve(ws));
            ws.on('error', (e) => reject(e));
        }),
        nextConnection(),
    ]);
    await opened(lconn, 'the listener\'s rendezvous');
    const lIn = inbox(lconn);
    sender.send('via query token');
    assert.equal((await lIn.next()).data.toString(), 'via query token');
    sender.close(1000);
    await h.once(lconn, 'close', 10000, 'the listener side to close');
    closeQuietly(sender);
});
