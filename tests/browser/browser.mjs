// Opens the demo app's page through a public URL of the tunnel in Debian's Chromium and waits
// until the page says that its WebSocket echo came back and three Server-Sent Events arrived.
// Usage: node browser.mjs URL SCREENSHOT.png   (exit 0 = the page reached its ready state)
import { chromium } from 'playwright-core';
import { existsSync } from 'node:fs';

const [url, shot] = process.argv.slice(2);
if (!url || !shot) {
  console.error('usage: node browser.mjs URL SCREENSHOT.png');
  process.exit(64);
}
const exe = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
if (!exe) {
  console.error('browser test: Debian chromium is not installed (apt-get install chromium)');
  process.exit(77);
}

const browser = await chromium.launch({
  executablePath: exe,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
let failed = null;
try {
  const page = await browser.newPage();
  const resp = await page.goto(url, { waitUntil: 'load', timeout: 20000 });
  if (!resp || resp.status() !== 200)
    throw new Error(`GET ${url} answered ${resp ? resp.status() : 'nothing'}`);
  try {
    await page.waitForSelector('body[data-ready="1"]', { timeout: 20000 });
  } finally {
    await page.screenshot({ path: shot, fullPage: true });
  }
  const state = await page.evaluate(() => ({
    origin: document.getElementById('origin').textContent,
    ws: document.getElementById('ws-state').textContent,
    sse: Number(document.getElementById('sse-count').textContent),
    last: document.getElementById('sse-last').textContent,
  }));
  console.log(JSON.stringify(state));
  if (state.ws !== 'echo ok') throw new Error(`WebSocket state is "${state.ws}"`);
  if (!(state.sse >= 3)) throw new Error(`only ${state.sse} events arrived`);
  if (!JSON.parse(state.last).n) throw new Error(`last event is "${state.last}"`);
  if (state.origin !== new URL(url).origin)
    throw new Error(`page origin ${state.origin} is not ${new URL(url).origin}`);
} catch (e) {
  failed = e;
} finally {
  await browser.close();
}
if (failed) {
  console.error(`browser test failed: ${failed.message}`);
  process.exit(1);
}
console.log(`browser test passed; screenshot ${shot}`);
