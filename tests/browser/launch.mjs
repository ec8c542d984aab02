// tests/browser/launch.mjs — what the browser scripts share.
// launchChromium: the one way they start Debian's chromium: headless, no sandbox (CI
// runs as root), and kept off the network (every host but 127.0.0.1 resolves to
// nothing; background networking, sync and updates off), so a test can only ever talk
// to the agentd under test.
import { chromium } from 'playwright-core';

export const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-default-apps', '--disable-extensions', '--metrics-recording-only',
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
];

export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
  });
}

// page.waitForFunction evaluates a string, which the UI's CSP (no unsafe-eval) rightly
// refuses; poll with page.evaluate (a DevTools protocol call, outside the page's CSP)
// instead, every 100 ms, until fn(arg) is truthy or timeoutMs has passed.
export async function waitUntil(page, fn, arg, timeoutMs) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await page.evaluate(fn, arg).catch(() => false)) return;
    if (Date.now() > end) throw new Error('timed out waiting for ' + String(fn).slice(0, 160));
    await new Promise(r => setTimeout(r, 100));
  }
}
