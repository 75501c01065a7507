'use strict';
/*
 * HTTP mode with Microsoft's hyco-https as the listener: requests sent by Node's own HTTP
 * client to http://127.0.0.1:<relay>/<hc>/... with a Send token, bodies of 0 B, 1 KiB, 63 KiB
 * (inline on the control channel), 65 KiB and 10 MiB (rendezvous) both ways, compared by
 * SHA-256 on both ends; status, reason phrase, headers and request target checked.
 */
const assert = require('node:assert/strict');
const { after, before, describe, test } = require('node:test');

const h = require('./harness');

const HC = 'httphc';
const SIZES = [0, 1 * h.KiB, 63 * h.KiB, 65 * h.KiB, 10 * h.MiB];

let emu;
let listener;
const seen = new Map(); /* x-test-id -> what the listener saw */

/* The listener: records what arrived, answers with the request body (POST/PUT) or with
 * pattern(size) for ?size=N, plus headers describing what it received. */
function handler(req, res) {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
        const body = Buffer.concat(chunks);
        const id = req.headers['x-test-id'];
        if (id)
            seen.set(id, { method: req.method, url: req.url, headers: req.headers,
                           length: body.length, sha: h.sha256(body) });
        const u = new URL(req.url, 'http://listener.invalid');
        const size = u.searchParams.get('size');
        const out = size !== null ? h.pattern(Number(size), 7) : body;
        res.statusCode = req.method === 'POST' ? 201 : 200;
        res.setHeader('Content-Type', 'application/octet-stream');
        res.setHeader('X-Req-Method', req.method);
        res.setHeader('X-Req-Length', String(body.length));
        res.setHeader('X-Req-Sha256', h.sha256(body));
        res.setHeader('X-Listener', 'hyco-https');
        if (out.length)
            res.end(out);
        else
            res.end();
    });
}

function send(opts) {
    return h.request({ port: emu.relayPort, ...opts });
}

before(async () => {
    emu = await h.startEmulator({ hcs: [HC] });
    listener = await h.startHttpsListener(emu, HC, handler);
});

after(async () => {
    await h.closeHttpsListener(listener);
    if (emu)
        await emu.stop();
});

describe('GET answered by hyco-https', () => {
    for (const size of SIZES) {
        test(`GET with a ${size}-byte response body`, { timeout: 120000 }, async () => {
            const id = `get-${size}`;
            const m0 = await emu.metrics();
            const r = await send({
                path: `/${HC}/files/data.bin?size=${size}&x=1`,
                headers: { ServiceBusAuthorization: emu.token(HC), 'X-Test-Id': id },
            });
            assert.equal(r.status, 200, `${r.status} ${r.statusMessage} ${r.body.subarray(0, 300)}`);
            assert.equal(r.statusMessage, 'OK');
            assert.equal(r.headers['x-req-method'], 'GET');
            assert.equal(r.headers['x-req-length'], '0');
            assert.equal(r.headers['content-type'], 'application/octet-stream');
            assert.equal(r.body.length, size);
            assert.equal(h.sha256(r.body), h.sha256(h.pattern(size, 7)));
            if (r.headers['content-length'] !== undefined)
                assert.equal(Number(r.headers['content-length']), size);
            const s = seen.get(id);
            assert.ok(s, 'the listener saw the request');
            assert.equal(s.method, 'GET');
            assert.equal(s.url, `/${HC}/files/data.bin?size=${size}&x=1`);
            /* hyco-https answers bodies over 64 KiB through a rendezvous it dials itself */
            const m1 = await emu.metrics();
            assert.equal(m1.ahg_emulator_rendezvous_total - m0.ahg_emulator_rendezvous_total,
                         size > 64 * h.KiB ? 1 : 0, 'rendezvous used');
        });
    }
});

describe('POST and PUT bodies arrive intact and are answered intact', () => {
    for (const method of ['POST', 'PUT']) {
        for (const size of SIZES) {
            test(`${method} with a ${size}-byte body`, { timeout: 120000 }, async () => {
                const id = `${method}-${size}`;
                const body = h.pattern(size, size + method.length);
                const m0 = await emu.metrics();
                const r = await send({
                    method,
                    path: `/${HC}/upload`,
                    body,
                    headers: { ServiceBusAuthorization: emu.token(HC), 'X-Test-Id': id,
                               'Content-Type': 'application/octet-stream' },
                });
                assert.equal(r.status, method === 'POST' ? 201 : 200,
                             `${r.status} ${r.statusMessage} ${r.body.subarray(0, 300)}`);
                assert.equal(r.statusMessage, method === 'POST' ? 'Created' : 'OK');
                assert.equal(r.headers['x-req-method'], method);
                assert.equal(r.headers['x-req-length'], String(size), 'length seen by the listener');
                assert.equal(r.headers['x-req-sha256'], h.sha256(body), 'hash seen by the listener');
                assert.equal(r.body.length, size, 'echoed length');
                assert.equal(h.sha256(r.body), h.sha256(body), 'echoed body');
                const s = seen.get(id);
                assert.ok(s, 'the listener saw the request');
                assert.equal(s.url, `/${HC}/upload`);
                assert.equal(s.headers['content-type'], 'application/octet-stream');
                /* a request over 64 KiB goes rendezvous-only; the answer uses the same socket */
                const m1 = await emu.metrics();
                assert.equal(m1.ahg_emulator_rendezvous_total - m0.ahg_emulator_rendezvous_total,
                             size > 64 * h.KiB ? 1 : 0, 'rendezvous used');
            });
        }
    }
});

test('HEAD: the status and headers arrive, no body', { timeout: 30000 }, async () => {
    const r = await send({
        method: 'HEAD',
        path: `/${HC}/files/x?size=1024`,
        headers: { ServiceBusAuthorization: emu.token(HC), 'X-Test-Id': 'head' },
    });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-req-method'], 'HEAD');
    assert.equal(r.body.length, 0);
    assert.equal(seen.get('head').method, 'HEAD');
});

test('the token in sb-hc-token is accepted and removed from the request target',
     { timeout: 30000 }, async () => {
    const token = encodeURIComponent(emu.token(HC));
    const r = await send({
        path: `/${HC}/q?a=1&sb-hc-token=${token}&b=2`,
        headers: { 'X-Test-Id': 'query-token' },
    });
    assert.equal(r.status, 200, `${r.status} ${r.statusMessage}`);
    const s = seen.get('query-token');
    assert.equal(s.url, `/${HC}/q?a=1&b=2`);
});

test('custom request headers are forwarded; ServiceBusAuthorization is not', { timeout: 30000 },
     async () => {
    const r = await send({
        path: `/${HC}/hdr`,
        headers: { ServiceBusAuthorization: emu.token(HC), 'X-Test-Id': 'headers',
                   'X-Custom': 'abc def', 'User-Agent': 'interop/1' },
    });
    assert.equal(r.status, 200);
    const s = seen.get('headers');
    assert.equal(s.headers['x-custom'], 'abc def');
    assert.equal(s.headers['user-agent'], 'interop/1');
    assert.equal(s.headers.serviceBusAuthorization, undefined);
    for (const k of Object.keys(s.headers))
        assert.notEqual(k.toLowerCase(), 'servicebusauthorization', 'the relay consumes the token');
});

test('the listener\'s status, reason phrase and headers reach the sender', { timeout: 30000 },
     async () => {
    const r = await send({
        method: 'POST',
        path: `/${HC}/status`,
        body: 'x',
        headers: { ServiceBusAuthorization: emu.token(HC) },
    });
    assert.equal(r.status, 201);
    assert.equal(r.statusMessage, 'Created');
    assert.equal(r.headers['x-listener'], 'hyco-https');
    assert.equal(r.body.toString(), 'x');
});

test('a relayed response carries Via with the namespace host', { timeout: 30000 }, async () => {
    const r = await send({ path: `/${HC}/via`, headers: { ServiceBusAuthorization: emu.token(HC) } });
    assert.equal(r.status, 200);
    assert.ok(r.headers.via, 'Via header present');
    assert.match(r.headers.via, new RegExp(emu.nsHost.replace(/\./g, '\\.'), 'i'));
});

test('concurrent requests are all answered correctly', { timeout: 60000 }, async () => {
    const sizes = [10, 2000, 40000, 70000, 200000, 0, 5, 65536, 65537];
    const rs = await Promise.all(sizes.map((size, i) => send({
        method: 'PUT',
        path: `/${HC}/c/${i}`,
        body: h.pattern(size, 100 + i),
        headers: { ServiceBusAuthorization: emu.token(HC) },
    })));
    rs.forEach((r, i) => {
        assert.equal(r.status, 200, `request ${i}`);
        assert.equal(h.sha256(r.body), h.sha256(h.pattern(sizes[i], 100 + i)), `request ${i}`);
    });
});

/* The wording: bodies sent by curl. Skipped only where curl is not installed. */
test('curl: 65 KiB and 10 MiB uploads, a 10 MiB download', { timeout: 120000 }, async (t) => {
    const { execFile } = require('node:child_process');
    const fs = require('node:fs');
    const os = require('node:os');
    const path = require('node:path');
    const run = (args) => new Promise((resolve, reject) => {
        execFile('curl', args, { maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
            if (err)
                reject(Object.assign(err, { stderr }));
            else
                resolve(stdout);
        });
    });
    try {
        await run(['--version']);
    } catch {
        t.skip('curl is not installed');
        return;
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ahg-curl-'));
    try {
        const auth = `ServiceBusAuthorization: ${emu.token(HC)}`;
        const base = `http://127.0.0.1:${emu.relayPort}/${HC}`;
        /* curl sends the 10 MiB one with Expect: 100-continue */
        for (const size of [65 * h.KiB, 10 * h.MiB]) {
            const up = h.pattern(size, 99);
            fs.writeFileSync(path.join(dir, 'up'), up);
            const out = await run(['-sS', '--noproxy', '*', '-o', path.join(dir, 'echo'),
                                   '-w', '%{http_code}', '-H', auth,
                                   '-H', 'Content-Type: application/x-test',
                                   '--data-binary', `@${path.join(dir, 'up')}`, `${base}/curl-up`]);
            assert.equal(out, '201', `upload of ${size} bytes`);
            assert.equal(h.sha256(fs.readFileSync(path.join(dir, 'echo'))), h.sha256(up));
        }
        const out = await run(['-sS', '--noproxy', '*', '-o', path.join(dir, 'down'), '-w', '%{http_code}',
                         '-H', auth, `${base}/curl-down?size=${10 * h.MiB}`]);
        assert.equal(out, '200');
        assert.equal(h.sha256(fs.readFileSync(path.join(dir, 'down'))),
                     h.sha256(h.pattern(10 * h.MiB, 7)));
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});
