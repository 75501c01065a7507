'use strict';
/*
 * Harness of the interop suite: starts the real azhexgate-emulator binary on loopback with
 * every port 0, a known root key, an identity-header secret, TLS on the management port (the
 * test certificates of tests/fixtures/certs) and pre-created hybrid connections; reads the
 * bound ports from its ready file; stops it at the end and checks that it exited cleanly
 * (status 0, no sanitizer report). Also small helpers shared by the *.test.js files: SAS
 * tokens through hyco's own createRelayToken, raw HTTP requests and WebSocket upgrades,
 * hashes, timeouts.
 *
 * Environment (set by run-test.sh / ctest):
 *   AHG_EMULATOR         path of the azhexgate-emulator executable (required)
 *   NODE_EXTRA_CA_CERTS  tests/fixtures/certs/ca.pem, so Node trusts the management port
 *   AHG_INTEROP_LOG_DIR  where the emulator's log of each run is kept (default: a temp dir)
 */
const assert = require('node:assert/strict');
const childProcess = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');

const hycoHttps = require('hyco-https');

const CERTS = path.join(__dirname, '..', 'fixtures', 'certs');
const ROOT_RULE = 'RootManageSharedAccessKey';
const SUBSCRIPTION = '7a1c0de5-0000-4000-8000-00000000c0de';
const RESOURCE_GROUP = 'interop-rg';
const NAMESPACE = 'ahg-interop';
const KiB = 1024;
const MiB = 1024 * 1024;

/* ------------------------------------------------------------------ small helpers */

function sha256(buf) {
    return crypto.createHash('sha256').update(buf).digest('hex');
}

/* Deterministic pseudo-random bytes (so both ends can recompute them). */
function pattern(size, seed = 1) {
    const out = Buffer.allocUnsafe(size);
    let block = crypto.createHash('sha256').update(`seed:${seed}`).digest();
    let off = 0;
    while (off < size) {
        const n = Math.min(block.length, size - off);
        block.copy(out, off, 0, n);
        off += n;
        block = crypto.createHash('sha256').update(block).digest();
    }
    return out;
}

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

/* Resolves with the event's arguments (an array) or rejects after ms. */
function once(emitter, event, ms = 10000, what = event) {
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
            emitter.removeListener(event, on);
            reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
        }, ms);
        function on(...args) {
            clearTimeout(timer);
            resolve(args);
        }
        emitter.once(event, on);
    });
}

function withTimeout(promise, ms, what) {
    let timer;
    return Promise.race([
        promise,
        new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
        }),
    ]).finally(() => clearTimeout(timer));
}

/* Decodes the payload of a JWT (no verification). */
function jwtPayload(token) {
    const parts = token.split('.');
    assert.equal(parts.length, 3, 'a JWT has three dot-separated parts');
    return JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
}

/* ------------------------------------------------------------------ the emulator */

function logDir() {
    const d = process.env.AHG_INTEROP_LOG_DIR || path.join(os.tmpdir(), 'ahg-interop-logs');
    fs.mkdirSync(d, { recursive: true });
    return d;
}

function readReady(file) {
    let text;
    try {
        text = fs.readFileSync(file, 'utf8');
    } catch {
        return null;
    }
    const kv = {};
    for (const line of text.split('\n')) {
        const i = line.indexOf('=');
        if (i > 0)
            kv[line.slice(0, i)] = line.slice(i + 1);
    }
    return kv.ready === '1' ? kv : null;
}

/*
 * Starts azhexgate-emulator. opts:
 *   hcs        hybrid connections to pre-create ("name" or "name:noauth")
 *   args       extra command-line flags
 *   name       label of the log file (default: the test file's name)
 * Resolves with an Emulator (see the class below).
 */
async function startEmulator(opts = {}) {
    const exe = process.env.AHG_EMULATOR;
    assert.ok(exe, 'AHG_EMULATOR must name the azhexgate-emulator executable');
    assert.ok(fs.existsSync(exe), `AHG_EMULATOR=${exe} does not exist (build azhexgate-emulator)`);
    assert.ok(process.env.NODE_EXTRA_CA_CERTS,
              'NODE_EXTRA_CA_CERTS must point at tests/fixtures/certs/ca.pem (run-test.sh sets it)');

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ahg-interop-'));
    const rootKey = crypto.randomBytes(32).toString('base64');
    const identityHeader = crypto.randomBytes(24).toString('hex');
    const rootKeyFile = path.join(dir, 'root-key');
    const identityHeaderFile = path.join(dir, 'identity-header');
    fs.writeFileSync(rootKeyFile, rootKey, { mode: 0o600 });
    fs.writeFileSync(identityHeaderFile, identityHeader, { mode: 0o600 });
    const readyFile = path.join(dir, 'ready');

    const args = [
        '--log-level', 'debug',
        '--emulator-bind', '127.0.0.1',
        '--emulator-namespace', NAMESPACE,
        '--emulator-subscription', SUBSCRIPTION,
        '--emulator-resource-group', RESOURCE_GROUP,
        '--emulator-relay-port', '0',
        '--emulator-mgmt-port', '0',
        '--emulator-identity-port', '0',
        '--emulator-admin-port', '0',
        '--emulator-mgmt-cert', path.join(CERTS, 'server.pem'),
        '--emulator-mgmt-key', path.join(CERTS, 'server.key'),
        '--emulator-root-key-file', rootKeyFile,
        '--emulator-identity-header-file', identityHeaderFile,
        '--emulator-ready-file', readyFile,
    ];
    for (const hc of opts.hcs || [])
        args.push('--emulator-hybrid-connections', hc);
    args.push(...(opts.args || []));

    /* Hermetic: no AZHEXGATE_* from the caller's environment leaks into the emulator. */
    const env = {};
    for (const [k, v] of Object.entries(process.env))
        if (!k.startsWith('AZHEXGATE_'))
            env[k] = v;
    env.ASAN_OPTIONS = env.ASAN_OPTIONS || 'abort_on_error=1:detect_leaks=1';
    env.UBSAN_OPTIONS = env.UBSAN_OPTIONS || 'print_stacktrace=1:halt_on_error=1';

    const label = opts.name || path.basename(require.main ? require.main.filename : 'interop',
                                             '.test.js');
    const logFile = path.join(logDir(), `${label}-${process.pid}-${Date.now()}.log`);
    const log = fs.openSync(logFile, 'w');
    const child = childProcess.spawn(exe, args, { env, stdio: ['ignore', log, log] });
    fs.closeSync(log);

    const exited = new Promise((resolve) => {
        child.once('exit', (code, signal) => resolve({ code, signal }));
    });
    let exitInfo = null;
    exited.then((x) => { exitInfo = x; });

    const deadline = Date.now() + 30000;
    let ready = null;
    while (!(ready = readReady(readyFile))) {
        if (exitInfo) {
            throw new Error(`azhexgate-emulator exited early (${JSON.stringify(exitInfo)}):\n` +
                            tail(logFile));
        }
        if (Date.now() > deadline) {
            child.kill('SIGKILL');
            throw new Error(`azhexgate-emulator wrote no ready file in 30 s:\n${tail(logFile)}`);
        }
        await sleep(25);
    }
    return new Emulator({ child, exited, dir, logFile, ready, rootKey, identityHeader });
}

function tail(file, bytes = 8000) {
    try {
        const buf = fs.readFileSync(file);
        return buf.subarray(Math.max(0, buf.length - bytes)).toString('utf8');
    } catch {
        return '(no log)';
    }
}

class Emulator {
    constructor({ child, exited, dir, logFile, ready, rootKey, identityHeader }) {
        this.child = child;
        this.exited = exited;
        this.dir = dir;
        this.logFile = logFile;
        this.relayPort = Number(ready.relay_port);
        this.mgmtPort = Number(ready.mgmt_port);
        this.identityPort = Number(ready.identity_port);
        this.adminPort = Number(ready.admin_port);
        this.namespace = ready.namespace;
        this.nsHost = ready.namespace_host;
        this.rootKeyName = ROOT_RULE;
        this.rootKey = rootKey;
        this.identityHeader = identityHeader;
        this.subscription = SUBSCRIPTION;
        this.resourceGroup = RESOURCE_GROUP;
        for (const p of [this.relayPort, this.mgmtPort, this.identityPort, this.adminPort])
            assert.ok(Number.isInteger(p) && p > 0, `bad port in ready file: ${JSON.stringify(ready)}`);
    }

    get relayWs() { return `ws://127.0.0.1:${this.relayPort}`; }
    get relayHttp() { return `http://127.0.0.1:${this.relayPort}`; }
    get mgmtUrl() { return `https://127.0.0.1:${this.mgmtPort}`; }
    get identityEndpoint() { return `http://127.0.0.1:${this.identityPort}/msi/token`; }

    listenUrl(hc, query = '') {
        return `${this.relayWs}/$hc/${hc}?sb-hc-action=listen${query}`;
    }

    connectUrl(hc, suffix = '', query = '') {
        return `${this.relayWs}/$hc/${hc}${suffix}?${query}sb-hc-action=connect`;
    }

    /* The entity URI hyco's createRelayToken is given (sr becomes http://<ns host>/<hc>). */
    entityUri(hc) {
        return `http://${this.nsHost}/${hc}`;
    }

    /* A SAS token made by hyco-https' own createRelayToken. */
    token(hc, { keyName = ROOT_RULE, key = this.rootKey, seconds } = {}) {
        return hycoHttps.createRelayToken(this.entityUri(hc), keyName, key, seconds);
    }

    /* Lines of the emulator log so far (for diagnostics). */
    logTail(bytes) {
        return tail(this.logFile, bytes);
    }

    async metrics() {
        const r = await request({ port: this.adminPort, path: '/metrics' });
        assert.equal(r.status, 200);
        const out = {};
        for (const line of r.body.toString('utf8').split('\n')) {
            const m = /^([a-z_]+) (\d+)$/.exec(line);
            if (m)
                out[m[1]] = Number(m[2]);
        }
        return out;
    }

    /*
     * SIGTERM, then waits for the exit. Resolves with {code, signal, log}; throws when the
     * emulator did not exit cleanly (status 0, no sanitizer or runtime-error report).
     */
    async stop() {
        if (this.child.exitCode === null && this.child.signalCode === null)
            this.child.kill('SIGTERM');
        let res;
        try {
            res = await withTimeout(this.exited, 20000, 'azhexgate-emulator to exit after SIGTERM');
        } catch (e) {
            this.child.kill('SIGKILL');
            throw new Error(`${e.message}\n${this.logTail()}`);
        }
        const logText = fs.readFileSync(this.logFile, 'utf8');
        fs.rmSync(this.dir, { recursive: true, force: true });
        const sanitizer = /(ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:|SUMMARY: \w+Sanitizer)/
            .exec(logText);
        if (res.code !== 0 || res.signal !== null || sanitizer) {
            const i = sanitizer ? Math.max(0, sanitizer.index - 200) : logText.length - 8000;
            throw new Error(`azhexgate-emulator did not exit cleanly (code ${res.code}, signal ` +
                            `${res.signal}); log ${this.logFile}:\n` +
                            logText.slice(Math.max(0, i), Math.max(0, i) + 12000));
        }
        return { ...res, log: logText };
    }
}

/* ------------------------------------------------------------------ raw HTTP */

/*
 * One HTTP/1.1 request to 127.0.0.1. opts: port, method, path, headers, body (Buffer or
 * string; or an array of Buffers written as separate chunks with chunked encoding), agent
 * (default: a fresh connection), timeout (ms). Resolves with {status, statusMessage, headers,
 * rawHeaders, body, socketId}.
 */
function request(opts) {
    return new Promise((resolve, reject) => {
        const headers = { ...(opts.headers || {}) };
        const chunked = Array.isArray(opts.body);
        if (opts.body !== undefined && !chunked && headers['Content-Length'] === undefined)
            headers['Content-Length'] = Buffer.byteLength(opts.body);
        const req = http.request({
            host: '127.0.0.1',
            port: opts.port,
            method: opts.method || 'GET',
            path: opts.path || '/',
            headers,
            agent: opts.agent === undefined ? false : opts.agent,
        });
        const timer = setTimeout(() => {
            req.destroy(new Error(`no complete response in ${opts.timeout || 60000} ms ` +
                                  `(${opts.method || 'GET'} ${opts.path})`));
        }, opts.timeout || 60000);
        req.on('error', (e) => {
            clearTimeout(timer);
            reject(e);
        });
        req.on('response', (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('error', (e) => {
                clearTimeout(timer);
                reject(e);
            });
            res.on('end', () => {
                clearTimeout(timer);
                resolve({
                    status: res.statusCode,
                    statusMessage: res.statusMessage,
                    headers: res.headers,
                    rawHeaders: res.rawHeaders,
                    body: Buffer.concat(chunks),
                    socket: req.socket,
                });
            });
        });
        if (chunked) {
            (async () => {
                for (const c of opts.body) {
                    req.write(c);
                    await sleep(opts.chunkDelay || 0);
                }
                req.end();
            })();
        } else {
            req.end(opts.body);
        }
    });
}

/*
 * A raw WebSocket upgrade (Node's http client, no WebSocket library, so a refusal is seen
 * exactly as sent). Resolves with {status, statusMessage, headers, body} for a refusal, or
 * {status: 101, headers, socket} for an accepted upgrade (the caller destroys the socket).
 */
function upgrade(port, pathAndQuery, headers = {}, timeout = 15000) {
    return new Promise((resolve, reject) => {
        const req = http.request({
            host: '127.0.0.1',
            port,
            path: pathAndQuery,
            agent: false,
            headers: {
                Connection: 'Upgrade',
                Upgrade: 'websocket',
                'Sec-WebSocket-Version': '13',
                'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'),
                ...headers,
            },
        });
        const timer = setTimeout(() => req.destroy(new Error(`upgrade ${pathAndQuery}: no answer`)),
                                 timeout);
        req.on('error', (e) => {
            clearTimeout(timer);
            reject(e);
        });
        req.on('upgrade', (res, socket) => {
            clearTimeout(timer);
            resolve({ status: res.statusCode, statusMessage: res.statusMessage,
                      headers: res.headers, socket });
        });
        req.on('response', (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('end', () => {
                clearTimeout(timer);
                resolve({ status: res.statusCode, statusMessage: res.statusMessage,
                          headers: res.headers, body: Buffer.concat(chunks).toString('utf8') });
            });
        });
        req.end();
    });
}

/* Asserts that an upgrade was refused with status (and the description matches re, if given). */
async function expectRefused(port, pathAndQuery, headers, status, re) {
    const r = await upgrade(port, pathAndQuery, headers);
    if (r.socket)
        r.socket.destroy();
    assert.equal(r.status, status,
                 `upgrade ${pathAndQuery.replace(/sb-hc-token=[^&]*/, 'sb-hc-token=…')} answered ` +
                 `${r.status} ${r.statusMessage}, expected ${status}`);
    if (re)
        assert.match(`${r.statusMessage} ${r.body || ''}`, re);
    return r;
}

/* Asserts that an upgrade was accepted (101). */
async function expectAccepted(port, pathAndQuery, headers) {
    const r = await upgrade(port, pathAndQuery, headers);
    if (r.socket)
        r.socket.destroy();
    assert.equal(r.status, 101, `upgrade answered ${r.status} ${r.statusMessage} ${r.body || ''}`);
    return r;
}

/* ------------------------------------------------------------------ hyco-https listener */

/*
 * Starts a hyco-https relayed server on hc and resolves once its control channel is open.
 * token: a string or a function (hyco then renews it hourly). Returns the Server; close it
 * with closeHttpsListener().
 */
async function startHttpsListener(emu, hc, handler, { token, keepAliveTimeout } = {}) {
    const server = hycoHttps.createRelayedServer({
        server: emu.listenUrl(hc),
        token: token || emu.token(hc),
        keepAliveTimeout,
    }, handler);
    const errors = [];
    server.on('error', (e) => errors.push(e));
    server.listen();
    try {
        await once(server, 'listening', 15000, `hyco-https listener on ${hc}`);
    } catch (e) {
        server.close(() => {});
        throw new Error(`${e.message}; errors: ${errors.map((x) => x.message).join('; ')}`);
    }
    server.errors = errors;
    return server;
}

async function closeHttpsListener(server) {
    if (!server)
        return;
    const closed = once(server, 'close', 5000).catch(() => {});
    server.close(() => {});
    await closed;
}

module.exports = {
    KiB,
    MiB,
    ROOT_RULE,
    closeHttpsListener,
    expectAccepted,
    expectRefused,
    jwtPayload,
    once,
    pattern,
    request,
    sha256,
    sleep,
    startEmulator,
    startHttpsListener,
    upgrade,
    withTimeout,
};
