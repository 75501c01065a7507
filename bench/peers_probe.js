'use strict';
/*
 * Node helpers of bench/run.sh (modules from tests/interop/node_modules: hyco-https, ws).
 *   peers_probe.js token NS_HOST HC KEY_NAME KEY            print a SAS token (hyco's own)
 *   peers_probe.js hyco RELAY_WS NS_HOST KEY HC=PORT...     hyco-https listeners (HTTP mode)
 *                                                           proxying each HC to 127.0.0.1:PORT;
 *                                                           prints "ready" once all listen
 *   peers_probe.js sse URL HOST N [TIMEOUT_S]               SSE: stream-open and first-event
 *                                                           latency (N runs, each given
 *                                                           TIMEOUT_S, default 15), JSON on stdout
 *   peers_probe.js ws URL HOST N                            WebSocket: handshake time and echo
 *                                                           round trip of N 32-byte messages
 *   peers_probe.js coldwarm URL HOST N IDLE_MS DIRECT_URL  N rounds of: IDLE_MS without traffic;
 *                                                           "cold" = GET on a new connection;
 *                                                           0.3 s; "recent" = GET on a new
 *                                                           connection; 0.3 s; "warm" = GET on a
 *                                                           kept-alive connection; 0.3 s; "warm_new"
 *                                                           = GET on a new connection to the hot
 *                                                           tunnel; then "direct_new"
 *                                                           and "direct_warm", the same two against
 *                                                           DIRECT_URL (no Host). JSON: samples
 * HOST ("-" = none) is sent as the Host header. Latencies are in microseconds.
 */
const http = require('node:http');
const path = require('node:path');

const mods = path.join(__dirname, '..', 'tests', 'interop', 'node_modules');
const need = (m) => require(path.join(mods, m));

function pct(sorted, p) {
    if (!sorted.length)
        return null;
    const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
    return sorted[Math.max(0, i)];
}

function summary(xs) {
    const s = [...xs].sort((a, b) => a - b);
    return { n: s.length, p50: pct(s, 50), p90: pct(s, 90), p99: pct(s, 99), min: s[0],
             max: s[s.length - 1] };
}

const nowUs = () => Number(process.hrtime.bigint() / 1000n);

function token(nsHost, hc, keyName, key) {
    return need('hyco-https').createRelayToken(`http://${nsHost}/${hc}`, keyName, key, 86400);
}

function hyco(relayWs, nsHost, key, pairs) {
    const hycoHttps = need('hyco-https');
    /* hyco-https lets some rendezvous errors escape as uncaught 'error' events: log them (the
     * bench reports the count from this log) and keep serving, as a supervised listener would. */
    process.on('uncaughtException', (e) => {
        process.stderr.write(`hyco-https uncaught exception: ${e.message}\n`);
    });
    let pending = pairs.length;
    for (const pair of pairs) {
        const [hc, port] = pair.split('=');
        const prefix = `/${hc}`;
        const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });
        const server = hycoHttps.createRelayedServer({
            server: `${relayWs}/$hc/${hc}?sb-hc-action=listen`,
            token: token(nsHost, hc, 'RootManageSharedAccessKey', key),
        }, (req, res) => {
            let url = req.url;
            if (url.startsWith(prefix))
                url = url.slice(prefix.length) || '/';
            const headers = { ...req.headers };
            delete headers.host;
            const up = http.request({ host: '127.0.0.1', port: Number(port), method: req.method,
                                      path: url, headers, agent }, (ur) => {
                res.writeHead(ur.statusCode, ur.headers);
                ur.pipe(res);
            });
            up.on('error', (e) => {
                res.statusCode = 502;
                res.end(`origin: ${e.message}\n`);
            });
            req.pipe(up);
        });
        server.on('error', (e) => process.stderr.write(`hyco ${hc}: ${e.message}\n`));
        server.on('listening', () => {
            if (--pending === 0)
                process.stdout.write('ready\n');
        });
        server.listen();
    }
}

function sseOnce(url, host, timeoutS) {
    return new Promise((resolve, reject) => {
        const t0 = nowUs();
        let open = null;
        const headers = { Accept: 'text/event-stream' };
        if (host !== '-')
            headers.Host = host;
        const req = http.get(url, { headers, agent: false }, (res) => {
            if (res.statusCode !== 200) {
                reject(new Error(`status ${res.statusCode}`));
                res.destroy();
                return;
            }
            let text = '';
            res.on('data', (c) => {
                if (open === null)
                    open = nowUs() - t0;
                text += c.toString('utf8');
                if (/(^|\n)data:/.test(text)) {
                    const first = nowUs() - t0;
                    req.destroy();
                    resolve({ open, first });
                }
            });
        });
        req.on('error', (e) => { if (e.code !== 'ECONNRESET') reject(e); });
        req.setTimeout(timeoutS * 1000, () => req.destroy(new Error(`no event in ${timeoutS} s`)));
    });
}

async function sse(url, host, n, timeoutS) {
    const opens = [], firsts = [];
    for (let i = 0; i < n; i++) {
        const r = await sseOnce(url, host, timeoutS);
        opens.push(r.open);
        firsts.push(r.first);
    }
    return { open_us: summary(opens), first_event_us: summary(firsts) };
}

function wsOpen(url, host) {
    const WebSocket = need('ws');
    const opts = { perMessageDeflate: false, handshakeTimeout: 15000 };
    if (host !== '-')
        opts.headers = { Host: host };
    return new WebSocket(url, opts);
}

/* Opens and closes a WebSocket; resolves with the handshake time in µs. */
function wsHandshake(url, host) {
    return new Promise((resolve, reject) => {
        const t0 = nowUs();
        const sock = wsOpen(url, host);
        sock.on('open', () => {
            const t = nowUs() - t0;
            sock.close();
            resolve(t);
        });
        sock.on('unexpected-response', (req, res) => reject(new Error(`status ${res.statusCode}`)));
        sock.on('error', reject);
    });
}

async function ws(url, host, n) {
    const hs = [];
    for (let i = 0; i < 5; i++)
        hs.push(await wsHandshake(url, host));
    const r = await wsEcho(url, host, n);
    r.handshake_us = summary(hs).p50;
    r.handshakes_us = hs;
    return r;
}

function wsEcho(url, host, n) {
    return new Promise((resolve, reject) => {
        const t0 = nowUs();
        const sock = wsOpen(url, host);
        const rtts = [];
        let sent = 0, handshake = 0;
        const msg = Buffer.alloc(32, 0x61);
        const timer = setTimeout(() => { sock.terminate(); reject(new Error('timed out')); }, 60000);
        const next = () => { sent = nowUs(); sock.send(msg); };
        sock.on('open', () => { handshake = nowUs() - t0; next(); });
        sock.on('message', () => {
            rtts.push(nowUs() - sent);
            /* at most 15 s of samples: a slow peer (PageKite, ~100 ms) would take minutes */
            if (rtts.length === n || nowUs() - t0 > 15e6) {
                clearTimeout(timer);
                sock.close();
                resolve({ handshake_us: handshake, rtt_us: summary(rtts) });
            } else {
                next();
            }
        });
        sock.on('unexpected-response', (req, res) => {
            clearTimeout(timer);
            reject(new Error(`status ${res.statusCode}`));
        });
        sock.on('error', (e) => { clearTimeout(timer); reject(e); });
    });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* One GET of url (whole body read); resolves with its time in µs, rejects on a non-200. */
function getOnce(url, host, agent) {
    return new Promise((resolve, reject) => {
        const headers = host !== '-' ? { Host: host } : {};
        const t0 = nowUs();
        const req = http.get(url, { headers, agent }, (res) => {
            res.on('data', () => {});
            res.on('end', () => (res.statusCode === 200 ? resolve(nowUs() - t0)
                : reject(new Error(`status ${res.statusCode}`))));
        });
        req.on('error', reject);
        req.setTimeout(30000, () => req.destroy(new Error('no answer in 30 s')));
    });
}

async function coldwarm(url, host, n, idleMs, directUrl) {
    const keep = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const keepDirect = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const out = { cold: [], recent: [], warm: [], warm_new: [], direct_new: [], direct_warm: [],
        errors: [] };
    const take = async (k, p) => {
        try {
            out[k].push(await p);
        } catch (e) {
            out.errors.push(`${k}: ${e.message}`);
        }
    };
    await take('warm', getOnce(url, host, keep)); /* opens the kept-alive connections */
    await take('direct_warm', getOnce(directUrl, '-', keepDirect));
    out.warm.length = out.direct_warm.length = 0;
    const start = nowUs();
    for (let i = 0; i < n; i++) {
        if (nowUs() - start > 400e6) { /* stalls: report what was measured */
            out.errors.push(`stopped after ${i} rounds: 400 s time budget`);
            break;
        }
        await sleep(idleMs);
        await take('cold', getOnce(url, host, false));
        await sleep(300);
        await take('recent', getOnce(url, host, false));
        await sleep(300);
        await take('warm', getOnce(url, host, keep));
        await sleep(300);
        await take('warm_new', getOnce(url, host, false));
        await sleep(300);
        await take('direct_new', getOnce(directUrl, '-', false));
        await sleep(300);
        await take('direct_warm', getOnce(directUrl, '-', keepDirect));
    }
    keep.destroy();
    keepDirect.destroy();
    return out;
}

async function main() {
    const [cmd, ...a] = process.argv.slice(2);
    if (cmd === 'token' && a.length === 4) {
        process.stdout.write(`${token(a[0], a[1], a[2], a[3])}\n`);
    } else if (cmd === 'hyco' && a.length >= 4) {
        hyco(a[0], a[1], a[2], a.slice(3));
        return;
    } else if (cmd === 'sse' && (a.length === 3 || a.length === 4)) {
        const to = a.length === 4 ? Number(a[3]) : 15;
        process.stdout.write(`${JSON.stringify(await sse(a[0], a[1], Number(a[2]), to))}\n`);
    } else if (cmd === 'coldwarm' && a.length === 5) {
        const r = await coldwarm(a[0], a[1], Number(a[2]), Number(a[3]), a[4]);
        process.stdout.write(`${JSON.stringify(r)}\n`);
    } else if (cmd === 'ws' && a.length === 3) {
        process.stdout.write(`${JSON.stringify(await ws(a[0], a[1], Number(a[2])))}\n`);
    } else {
        process.stderr.write('usage: peers_probe.js token|hyco|sse|ws ... (see the header)\n');
        process.exit(64);
    }
}

main().catch((e) => {
    process.stderr.write(`${e.message}\n`);
    process.exit(1);
});
