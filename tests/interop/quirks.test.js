'use strict';
/*
 * Every hyco quirk of hc-protocol.md §11.4 is tolerated by the emulator:
 *  1 hyco-https dies on an `accept`: the sender fails cleanly, the emulator stays healthy
 *  2 one request body = one WebSocket message (chunked uploads, small and large)
 *  3 stray empty binary frame after a body:false (204) response; bodies sent for HEAD
 *  4 lower-cased response header names, Content-Length dropped; fragmented bodies
 *  5 response-upgrade rendezvous never closed nor read: the response still ends at its FIN
 *    and later requests are not routed over it
 *  6 permessage-deflate offered on the control channel: declined
 *  7 hyco-ws' literal "0: Sec-WebSocket-Extensions: ..." header line on the accept rendezvous
 *  8 hyco-ws' reconnect storm on a bad token: the emulator survives it
 * 10 token as a function (renewToken timer); unsolicited pongs (keepAliveTimeout)
 * (9, the broken rejection path and `id` option, only crash the client; nothing to tolerate.)
 */
const assert = require('node:assert/strict');
const childProcess = require('node:child_process');
const http = require('node:http');
const path = require('node:path');
const { after, before, describe, test } = require('node:test');

const moment = require('moment');
const hycoWs = require('hyco-ws');
const WebSocket = require('ws');
const h = require('./harness');

let emu;
let listener; /* hyco-https on qhttp */

function handler(req, res) {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
        const body = Buffer.concat(chunks);
        const u = new URL(req.url, 'http://listener.invalid');
        const what = u.pathname.split('/')[2];
        switch (what) {
        case 'nocontent':
            res.statusCode = 204;
            res.end();
            break;
        case 'size': {
            const out = h.pattern(Number(u.searchParams.get('n')), 3);
            if (out.length)
                res.end(out);
            else
                res.end();
            break;
        }
        case 'head':
            res.setHeader('Content-Type', 'text/plain');
            res.end('hello');  /* hyco-https sends these 5 bytes even for HEAD */
            break;
        case 'mixed':
            res.setHeader('X-Mixed-Case', 'Value');
            res.setHeader('Content-Length', '5');  /* silently dropped by hyco-https */
            res.end('hello');
            break;
        case 'stream':
            res.writeHead(201, { 'Content-Type': 'text/plain' });
            res.write('aa');
            res.write('bb');
            res.end('cc');
            break;
        case 'bigstream':
            res.write(h.pattern(40000, 1));
            res.write(h.pattern(40000, 2));
            res.end();
            break;
        case 'echo':
            res.setHeader('X-Req-Sha256', h.sha256(body));
            if (body.length)
                res.end(body);
            else
                res.end();
            break;
        default:
            res.statusCode = 404;
            res.end('unknown');
        }
    });
}

function get(p, opts = {}) {
    return h.request({ port: emu.relayPort, path: p, timeout: 20000, ...opts,
                       headers: { ServiceBusAuthorization: emu.token('qhttp'),
                                  ...(opts.headers || {}) } });
}

before(async () => {
    emu = await h.startEmulator({
        hcs: ['qhttp', 'qws', 'qfunc', 'qkeep', 'qstorm', 'qaccept', 'qctl'],
        args: ['--emulator-rendezvous-timeout', '5s'],
    });
    listener = await h.startHttpsListener(emu, 'qhttp', handler);
});

after(async () => {
    await h.closeHttpsListener(listener);
    await h.sleep(100);
    if (emu)
        await emu.stop();
});

describe('quirk 3: stray empty frame after body:false; bodies for HEAD', () => {
    test('204 with the stray empty frame gives a clean 204, and the next response is intact',
         { timeout: 30000 }, async () => {
        for (let i = 0; i < 5; i++) {
            const a = await get('/qhttp/nocontent');
            assert.equal(a.status, 204);
            assert.equal(a.statusMessage, 'No Content');
            assert.equal(a.body.length, 0);
            const b = await get('/qhttp/size?n=100');
            assert.equal(b.status, 200);
            assert.equal(h.sha256(b.body), h.sha256(h.pattern(100, 3)),
                         'the stray frame must not become the next response body');
        }
    });

    test('204s and bodies interleaved concurrently', { timeout: 30000 }, async () => {
        const rs = await Promise.all([
            get('/qhttp/nocontent'), get('/qhttp/size?n=1000'), get('/qhttp/nocontent'),
            get('/qhttp/size?n=0'), get('/qhttp/size?n=5000'), get('/qhttp/nocontent'),
        ]);
        assert.deepEqual(rs.map((r) => r.status), [204, 200, 204, 200, 200, 204]);
        assert.deepEqual(rs.map((r) => r.body.length), [0, 1000, 0, 0, 5000, 0]);
        assert.equal(h.sha256(rs[4].body), h.sha256(h.pattern(5000, 3)));
    });

    test('HEAD: the body hyco-https sends is dropped; the connection stays usable',
         { timeout: 30000 }, async () => {
        const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
        try {
            const a = await get('/qhttp/head', { method: 'HEAD', agent });
            assert.equal(a.status, 200);
            assert.equal(a.headers['content-type'], 'text/plain');
            assert.equal(a.body.length, 0);
            const b = await get('/qhttp/size?n=321', { agent });
            assert.equal(b.status, 200);
            assert.equal(h.sha256(b.body), h.sha256(h.pattern(321, 3)));
            assert.equal(b.socket, a.socket, 'the keep-alive connection was reused');
        } finally {
            agent.destroy();
        }
    });
});

describe('quirk 4: lower-cased headers, no Content-Length, fragmented bodies', () => {
    test('lower-cased response headers arrive; the body is framed by the relay',
         { timeout: 30000 }, async () => {
        const r = await get('/qhttp/mixed');
        assert.equal(r.status, 200);
        assert.equal(r.headers['x-mixed-case'], 'Value');
        const names = [];
        for (let i = 0; i < r.rawHeaders.length; i += 2)
            names.push(r.rawHeaders[i].toLowerCase());
        assert.equal(names.filter((n) => n === 'x-mixed-case').length, 1);
        assert.equal(r.body.toString(), 'hello');
        if (r.headers['content-length'] !== undefined)
            assert.equal(r.headers['content-length'], '5');
        else
            assert.equal(r.headers['transfer-encoding'], 'chunked');
    });

    test('write/write/end (one fragmented binary message) arrives whole', { timeout: 30000 },
         async () => {
        const r = await get('/qhttp/stream');
        assert.equal(r.status, 201);
        assert.equal(r.body.toString(), 'aabbcc');
    });
});

describe('quirk 5: listener-initiated rendezvous never closed', () => {
    test('a 70,000-byte response via rendezvous ends at its FIN, well before any timeout',
         { timeout: 30000 }, async () => {
        const t0 = Date.now();
        const r = await get('/qhttp/size?n=70000');
        assert.equal(r.status, 200);
        assert.equal(h.sha256(r.body), h.sha256(h.pattern(70000, 3)));
        assert.ok(Date.now() - t0 < 4000, `took ${Date.now() - t0} ms`);
    });

    test('a streamed response that outgrows the control channel mid-way arrives whole',
         { timeout: 30000 }, async () => {
        const r = await get('/qhttp/bigstream');
        assert.equal(r.status, 200);
        assert.equal(r.body.length, 80000);
        assert.equal(h.sha256(r.body),
                     h.sha256(Buffer.concat([h.pattern(40000, 1), h.pattern(40000, 2)])));
    });

    test('later requests on the same sender connection are still answered', { timeout: 60000 },
         async () => {
        const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
        try {
            for (const n of [70000, 10, 90000, 0, 66000, 5]) {
                const r = await get(`/qhttp/size?n=${n}`, { agent, timeout: 8000 });
                assert.equal(r.status, 200, `size ${n}`);
                assert.equal(h.sha256(r.body), h.sha256(h.pattern(n, 3)), `size ${n}`);
            }
        } finally {
            agent.destroy();
        }
    });
});

describe('quirk 2: a request body is exactly one WebSocket message', () => {
    for (const [label, parts] of [['3 x 1000 B', [1000, 1000, 1000]],
                                  ['3 x 40000 B', [40000, 40000, 40000]]]) {
        test(`chunked upload (${label}) arrives as one body`, { timeout: 30000 }, async () => {
            const chunks = parts.map((n, i) => h.pattern(n, 50 + i));
            const all = Buffer.concat(chunks);
            const r = await get('/qhttp/echo', { method: 'POST', body: chunks, chunkDelay: 50 });
            assert.equal(r.status, 200, `${r.status} ${r.statusMessage}`);
            assert.equal(r.headers['x-req-sha256'], h.sha256(all));
            assert.equal(h.sha256(r.body), h.sha256(all));
        });
    }
});

describe('quirk 6: permessage-deflate is declined', () => {
    test('on a raw listener control channel that offers it', { timeout: 20000 }, async () => {
        const ws = new WebSocket(emu.listenUrl('qctl'), {
            perMessageDeflate: true,
            headers: { ServiceBusAuthorization: emu.token('qctl') },
        });
        ws.on('error', () => {});
        const upgraded = h.once(ws, 'upgrade', 10000, 'the 101');
        const open = h.once(ws, 'open', 10000, 'open');
        const [res] = await upgraded;
        await open;
        assert.equal(res.headers['sec-websocket-extensions'], undefined);
        assert.equal(ws.extensions, '');
        ws.close(1000);
    });

    test('on the hyco-https control channel (ws 6.2.7)', () => {
        assert.equal(listener.controlChannel.extensions, '');
    });

    test('on the hyco-ws control channel (ws 1.1.5)', { timeout: 20000 }, async () => {
        const s = hycoWs.createRelayedServer({ server: emu.listenUrl('qctl'),
                                               token: emu.token('qctl') }, () => {});
        s.on('error', () => {});
        try {
            await h.once(s, 'listening', 10000, 'the hyco-ws listener');
            assert.deepEqual(Object.keys(s.controlChannel.extensions), []);
        } finally {
            s.close(() => {});
        }
    });
});

describe('quirk 7: "0: Sec-WebSocket-Extensions" on the accept rendezvous', () => {
    let server;
    before(async () => {
        server = hycoWs.createRelayedServer({ server: emu.listenUrl('qws'),
                                              token: emu.token('qws') }, (ws) => {
            ws.on('error', () => {});
            ws.on('message', (data, flags) => ws.send(data, { binary: !!(flags && flags.binary) }));
        });
        server.on('error', () => {});
        await h.once(server, 'listening', 10000, 'the hyco-ws listener');
    });
    after(() => {
        if (server)
            server.close(() => {});
    });

    test('hyco-ws sender offering deflate to a hyco-ws listener: no extension, data intact',
         { timeout: 30000 }, async () => {
        const ws = await new Promise((resolve, reject) => {
            const c = hycoWs.relayedConnect(emu.connectUrl('qws'), emu.token('qws'),
                                            () => resolve(c));
            c.on('error', reject);
        });
        assert.deepEqual(Object.keys(ws.extensions), []);
        const big = Buffer.alloc(200000, 'a');  /* compressible: would break if deflate leaked */
        ws.send(big, { binary: true });
        const [data] = await h.once(ws, 'message', 10000, 'the echo');
        assert.equal(h.sha256(data), h.sha256(big));
        ws.close(1000);
    });

    test('ws 8 sender offering deflate: the 101 carries no extension', { timeout: 30000 },
         async () => {
        const ws = new WebSocket(emu.connectUrl('qws'), {
            perMessageDeflate: true,
            headers: { ServiceBusAuthorization: emu.token('qws') },
        });
        ws.on('error', () => {});
        const upgraded = h.once(ws, 'upgrade', 10000, 'the 101');
        const open = h.once(ws, 'open', 10000, 'open');
        const [res] = await upgraded;
        await open;
        assert.equal(res.headers['sec-websocket-extensions'], undefined);
        assert.equal(ws.extensions, '');
        ws.send('text through');
        const [data] = await h.once(ws, 'message', 10000, 'the echo');
        assert.equal(data.toString(), 'text through');
        ws.close(1000);
    });
});

describe('quirk 10: token function and unsolicited pongs', () => {
    test('hyco-https with token as a function', { timeout: 30000 }, async () => {
        let calls = 0;
        const s = await h.startHttpsListener(emu, 'qfunc', (req, res) => res.end('func'), {
            token: () => {
                calls++;
                return emu.token('qfunc');
            },
        });
        try {
            assert.ok(calls >= 1);
            const r = await h.request({ port: emu.relayPort, path: '/qfunc/x',
                                        headers: { ServiceBusAuthorization: emu.token('qfunc') } });
            assert.equal(r.status, 200);
            assert.equal(r.body.toString(), 'func');
        } finally {
            await h.closeHttpsListener(s);
        }
    });

    test('hyco-https keepAliveTimeout (unsolicited pongs every 100 ms)', { timeout: 30000 },
         async () => {
        const s = await h.startHttpsListener(emu, 'qkeep', (req, res) => res.end('alive'), {
            keepAliveTimeout: moment.duration(100, 'milliseconds'),
        });
        let closed = false;
        s.controlChannel.on('close', () => { closed = true; });
        try {
            await h.sleep(1500);
            assert.equal(closed, false, 'the control channel survived the pongs');
            const r = await h.request({ port: emu.relayPort, path: '/qkeep/x',
                                        headers: { ServiceBusAuthorization: emu.token('qkeep') } });
            assert.equal(r.status, 200);
            assert.equal(r.body.toString(), 'alive');
        } finally {
            await h.closeHttpsListener(s);
        }
    });
});

/* Runs JavaScript in a child node (from this directory, so require() finds node_modules). */
function child(code, args) {
    return childProcess.spawn(process.execPath, ['-e', code, ...args],
                              { cwd: __dirname, stdio: ['ignore', 'pipe', 'pipe'] });
}

function killed(c) {
    return new Promise((resolve) => {
        if (c.exitCode !== null || c.signalCode !== null)
            return resolve();
        c.once('exit', () => resolve());
        c.kill('SIGKILL');
    });
}

describe('quirk 8: hyco-ws reconnect storm', () => {
    test('a hyco-ws listener with a bad token storms for 1.5 s; the emulator survives',
         { timeout: 60000 }, async () => {
        const before = await emu.metrics();
        const bad = emu.token('qstorm', { key: 'd3Jvbmcgd3Jvbmcgd3Jvbmcgd3Jvbmcgd3Jvbmc=' });
        const c = child(`
            const hycoWs = require('hyco-ws');
            process.on('uncaughtException', () => {});
            const s = hycoWs.createRelayedServer({ server: process.argv[1], token: process.argv[2] },
                                                 () => {});
            s.on('error', () => {});`, [emu.listenUrl('qstorm'), bad]);
        await h.sleep(1500);
        await killed(c);
        const r = await h.withTimeout(h.request({ port: emu.adminPort, path: '/healthz' }), 10000,
                                      '/healthz after the storm');
        assert.equal(r.status, 200);
        const m = await emu.metrics();
        assert.ok(m.ahg_emulator_auth_failures_total - before.ahg_emulator_auth_failures_total >= 10,
                  `auth failures counted: ${m.ahg_emulator_auth_failures_total}`);
        /* the HC still works for a well-behaved listener */
        const s = await h.startHttpsListener(emu, 'qstorm', (req, res) => res.end('calm'));
        try {
            const x = await h.request({ port: emu.relayPort, path: '/qstorm/',
                                        headers: { ServiceBusAuthorization: emu.token('qstorm') } });
            assert.equal(x.status, 200);
            assert.equal(x.body.toString(), 'calm');
        } finally {
            await h.closeHttpsListener(s);
        }
    });
});

describe('quirk 1: hyco-https dies on an accept message', () => {
    test('the sender fails cleanly when its listener crashes; the emulator stays healthy',
         { timeout: 60000 }, async () => {
        const c = child(`
            const https = require('hyco-https');
            const s = https.createRelayedServer({ server: process.argv[1], token: process.argv[2] },
                                                (req, res) => res.end('x'));
            s.on('listening', () => console.log('LISTENING'));
            s.listen();`, [emu.listenUrl('qaccept'), emu.token('qaccept')]);
        let out = '';
        let err = '';
        c.stdout.on('data', (d) => { out += d; });
        c.stderr.on('data', (d) => { err += d; });
        try {
            for (let i = 0; i < 100 && !out.includes('LISTENING'); i++)
                await h.sleep(100);
            assert.ok(out.includes('LISTENING'), `the child listener did not connect: ${err}`);
            const exited = h.once(c, 'exit', 20000, 'the hyco-https child to crash');
            const t0 = Date.now();
            const r = await h.upgrade(emu.relayPort, '/$hc/qaccept?sb-hc-action=connect',
                                      { ServiceBusAuthorization: emu.token('qaccept') }, 20000);
            if (r.socket)
                r.socket.destroy();
            assert.notEqual(r.status, 101, 'no splice without a rendezvous');
            assert.ok(r.status >= 400, `status ${r.status}`);
            assert.ok(Date.now() - t0 < 15000, `the sender waited ${Date.now() - t0} ms`);
            await exited;
            assert.match(err, /Extensions is not defined/, 'the known hyco-https crash');
        } finally {
            await killed(c);
        }
        const hz = await h.request({ port: emu.adminPort, path: '/healthz' });
        assert.equal(hz.status, 200);
    });
});
