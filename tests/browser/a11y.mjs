// a11y.mjs — accessibility, phone-width and keyboard checks of agentd's web UI, driven by
// tests/e2e/test_browser_a11y.py (issue 16: "Accessible (keyboard, labels, contrast), works on a
// phone width, dark and light"; docs/ui.md, Accessible).
// Usage: node a11y.mjs BASE_URL PART; prints one JSON line, exits 0 on pass.
//   PART builtin  — the builtin agents: sign-in/register, Workloads upload and dashboard, the chat
//                   with a thread list and a finished run (tool calls, a markdown table answer), the
//                   edit-message editor, a wide table and a long code line, a keyboard-only pass.
//   PART approval — --llm openai --approve-tools calculator with the stand-in: the approval prompt,
//                   the queued-message tray and its editor, Approve and Stop (keyboard on desktop).
// Every screen is checked in four modes: light and dark (the context's colorScheme, which
// drives prefers-color-scheme) × desktop 1280×800 and phone 390×844 (isMobile, hasTouch).
// axe-core (pinned in package.json) runs its WCAG 2.0/2.1 A and AA rules on each screen: any
// violation of impact serious or critical fails; moderate and minor ones are listed in the output.
// At phone width the page must not scroll sideways, and the composer, Send and Stop must be on
// screen and work by touch. Screenshots go to tests/browser/screenshots/a11y-*.png.
import { launchChromium, waitUntil } from './launch.mjs';
import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const [base, part] = process.argv.slice(2);
const SHOTS = join(dirname(fileURLToPath(import.meta.url)), 'screenshots');
mkdirSync(SHOTS, { recursive: true });
const T = 60000; // generous: a loaded 2-core machine
// axe's own source, evaluated in the page. The page's CSP (script-src 'self', no unsafe-inline or
// unsafe-eval) refuses an inline <script> (page.addScriptTag({content})), and bypassCSP would
// switch the policy off for the whole context, so the checked page would no longer be the page
// users get. page.evaluate(string) goes through the DevTools protocol (Runtime.evaluate), which
// CSP does not govern, and axe itself uses no eval: the page keeps its real policy throughout
// (and the CSP check at the end still sees every violation the app itself would cause).
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];

const MODES = [
  { name: 'light-desktop', colorScheme: 'light', viewport: { width: 1280, height: 800 } },
  { name: 'dark-desktop', colorScheme: 'dark', viewport: { width: 1280, height: 800 } },
  { name: 'light-phone', colorScheme: 'light', viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, phone: true },
  { name: 'dark-phone', colorScheme: 'dark', viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, phone: true },
];

function check(cond, msg) { if (!cond) throw new Error(msg); }
const failures = [];   // serious/critical violations, overflow, focus: reported together at the end
const notes = [];      // moderate/minor violations
const screens = [];

// Poll until fn(arg) holds (launch.mjs says why not page.waitForFunction).
const waitFor = (page, fn, arg, timeout = T) => waitUntil(page, fn, arg, timeout);

async function audit(page, mode, screen) {
  // settled: no CSS transition or animation running (axe's contrast needs the final colours)
  await waitFor(page, () => document.getAnimations().every(a => a.playState !== 'running'));
  if (!(await page.evaluate(() => !!window.axe))) await page.evaluate(AXE);
  const res = await page.evaluate(async tags => {
    const r = await window.axe.run(document, { runOnly: { type: 'tag', values: tags }, resultTypes: ['violations'] });
    return r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help,
      nodes: v.nodes.map(n => ({ target: n.target.join(' '), summary: n.failureSummary.replace(/\s+/g, ' ').slice(0, 300) })) }));
  }, TAGS);
  const where = screen + ' (' + mode.name + ')';
  for (const v of res) {
    const item = { where, id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5) };
    (v.impact === 'serious' || v.impact === 'critical' ? failures : notes).push(item);
  }
  if (mode.phone) {
    const w = await page.evaluate(() => ({ scroll: document.scrollingElement.scrollWidth, inner: window.innerWidth,
      wide: [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 &&
        e.getClientRects().length).slice(0, 5).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
        (e.className && typeof e.className === 'string' ? '.' + e.className.replace(/ /g, '.') : '')) }));
    if (w.scroll > w.inner) failures.push({ where, id: 'horizontal-scroll', help: 'the page scrolls sideways', ...w });
  }
  await page.screenshot({ path: join(SHOTS, 'a11y-' + screen + '-' + mode.name + '.png'), fullPage: true });
  screens.push(where);
}

// The control is on screen (after scrolling into view if it must), not clipped sideways, big
// enough to tap (24×24 CSS px, WCAG 2.2's target size).
async function onScreen(page, sel, mode) {
  const loc = page.locator(sel).first();
  await loc.scrollIntoViewIfNeeded({ timeout: T });
  const b = await loc.boundingBox();
  const vw = mode.viewport.width, vh = mode.viewport.height;
  if (!b || b.x < 0 || b.x + b.width > vw + 0.5 || b.y < 0 || b.y + b.height > vh + 0.5 || b.width < 24 || b.height < 24)
    failures.push({ where: sel + ' (' + mode.name + ')', id: 'not-on-screen', help: 'on screen, visible and big enough to use', box: b });
}

const tap = (page, sel, mode) => mode.phone ? page.tap(sel, { timeout: T }) : page.click(sel, { timeout: T });

// ---- the keyboard: focus moves with Tab / Shift+Tab, and every control focused on the way
// shows a focus indicator (:focus-visible with an outline or a box-shadow).
const focusState = () => {
  const a = document.activeElement;
  if (!a || a === document.body) return { none: true };
  const cs = getComputedStyle(a);
  const ring = (cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) > 0) || cs.boxShadow !== 'none';
  return { desc: a.tagName.toLowerCase() + (a.id ? '#' + a.id : '') + (a.className ? '.' + String(a.className).replace(/ /g, '.') : '') +
    (a.textContent ? ' "' + a.textContent.trim().slice(0, 30) + '"' : ''), visible: a.matches(':focus-visible') && ring };
};
const focusSeen = new Set();
async function tabTo(page, sel, back = false, max = 120) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press(back ? 'Shift+Tab' : 'Tab');
    const f = await page.evaluate(focusState);
    if (!f.none) {
      focusSeen.add(f.desc);
      if (!f.visible) failures.push({ where: 'keyboard', id: 'focus-not-visible', help: 'no focus ring on ' + f.desc });
    }
    if (await page.evaluate(sel => !!document.activeElement?.matches(sel), sel)) return;
  }
  throw new Error('keyboard: ' + sel + ' not reached with ' + (back ? 'Shift+Tab' : 'Tab'));
}

const connected = page => waitFor(page, () => document.getElementById('conn').textContent === 'connected');
const doneRuns = () => window.__agentd.log.filter(e => (e.type === 'agent_completed' && e.agent === 'supervisor') ||
  e.type === 'agent_stopped' || e.type === 'agent_error').length;

async function send(page, mode, text) {
  await page.fill('#input', text);
  await onScreen(page, '#input', mode);
  await onScreen(page, '#send', mode);
  await tap(page, '#send', mode);
}

const CSV = 'timestamp,model,provider,prompt_tokens,completion_tokens,latency_ms,status\n' +
  '2026-01-01T00:00:00Z,gpt-4o,openai,1000,500,800,success\n' +
  '2026-01-01T00:01:00Z,claude-3-5-sonnet,anthropic,2000,300,1200,success\n' +
  '2026-01-02T00:00:00Z,gpt-4o-mini,openai,500,100,300,error\n' +
  '2026-01-02T00:01:00Z,gpt-4o,openai,-5,50,800,success\n';

// A wide table and a long code line, as an answer (stored over the REST API like the page would
// read it back): at phone width they scroll inside their own box, not the page.
const WIDE = 'A wide answer.\n\n| ' + Array.from({ length: 12 }, (_, i) => 'column ' + i).join(' | ') + ' |\n|' +
  '---|'.repeat(12) + '\n| ' + Array.from({ length: 12 }, (_, i) => 'value-' + i + '-longish').join(' | ') + ' |\n\n' +
  '```\n' + 'const x = "' + 'a-very-long-code-line-'.repeat(12) + '";\n```\n';

const parts = {
  async builtin(ctxFor) {
    for (const mode of MODES) {
      const page = await ctxFor(mode);
      await page.goto(base + '/');
      await page.waitForSelector('#auth:not([hidden])', { timeout: T });
      await audit(page, mode, 'sign-in');
      await page.fill('#email', 'a11y-' + mode.name + '-' + Date.now() + '@example.com');
      await page.fill('#password', 'correct horse battery');
      await tap(page, '#register', mode);
      await page.waitForSelector('#chat:not([hidden])', { timeout: T });
      await connected(page);
      await audit(page, mode, 'chat-empty');
      // Workloads: an upload with a rejected line, then the dashboard with data
      await tap(page, '#nav-work', mode);
      await page.setInputFiles('#upload-file', { name: 'calls.csv', mimeType: 'text/csv', buffer: Buffer.from(CSV) });
      await tap(page, '#upload', mode);
      await page.waitForSelector('#upload-result table', { timeout: T });
      await page.waitForSelector('#cost-per-day rect.seg', { timeout: T });
      await audit(page, mode, 'workloads');
      // the chat: a finished run with tool calls and the usage table
      await tap(page, '#nav-chat', mode);
      await send(page, mode, 'What does my LLM usage cost by model?');
      await waitFor(page, () => window.__agentd.log.some(e => e.type === 'agent_completed' && e.agent === 'supervisor'));
      await page.waitForSelector('.run .answer:not([hidden]) table', { timeout: T });
      await page.evaluate(() => { for (const d of document.querySelectorAll('.run .tool details')) d.open = true; });
      await waitFor(page, () => document.querySelectorAll('#thread-list button').length >= 1);
      await audit(page, mode, 'run');
      // a long conversation: the composer, Send and Stop stay on screen at the top of the page too
      await page.evaluate(() => { window.scrollTo(0, 0); document.getElementById('main').scrollTop = 0; });
      const off = await page.evaluate(() => ['#input', '#send', '#stop'].filter(sel => {
        const r = document.querySelector(sel).getBoundingClientRect();
        return !(r.top >= 0 && r.left >= 0 && r.bottom <= window.innerHeight + 0.5 && r.right <= window.innerWidth + 0.5);
      }));
      if (off.length) failures.push({ where: 'run (' + mode.name + ')', id: 'composer-off-screen', help: 'the composer stays on screen', off });
      // the thread list is reachable and opens a thread (a tap at phone width)
      await page.click('#new-thread');
      await waitFor(page, () => !document.querySelector('#timeline .run'));
      await onScreen(page, '#thread-list button', mode);
      await tap(page, '#thread-list button', mode);
      await page.waitForSelector('#thread-list button[aria-current="true"]', { timeout: T });
      await page.waitForSelector('.run .answer:not([hidden]) table', { timeout: T });
      // the edit-message editor
      await tap(page, '.turn button.edit', mode);
      await page.getByLabel('Edit message', { exact: true }).waitFor({ timeout: T });
      await audit(page, mode, 'edit');
      await page.keyboard.press('Escape');
      await waitFor(page, () => !document.querySelector('.turn form'));
      // a wide table and a long code line
      const tid = await page.evaluate(async text => {
        const S = window.__agentd;
        const h = { 'Content-Type': 'application/json', Authorization: 'Bearer ' + S.access };
        const t = await (await fetch('/api/threads', { method: 'POST', headers: h, body: JSON.stringify({ title: 'Wide content' }) })).json();
        await fetch('/api/threads/' + t.id + '/messages', { method: 'POST', headers: h, body: JSON.stringify({ role: 'user', content: 'Show me something wide' }) });
        await fetch('/api/threads/' + t.id + '/messages', { method: 'POST', headers: h, body: JSON.stringify({ role: 'assistant', content: text }) });
        return t.id;
      }, WIDE);
      await page.evaluate(tid => sessionStorage.setItem('agentd.thread', tid), tid);
      await page.reload();
      await page.waitForSelector('.answer pre', { timeout: T });
      await page.waitForSelector('.answer table', { timeout: T });
      await audit(page, mode, 'wide');
      // the scrolling table (display:block in app.css) is still a table to assistive technology
      const cdp = await page.context().newCDPSession(page);
      const ax = (await cdp.send('Accessibility.getFullAXTree')).nodes.map(n => n.role?.value);
      if (!ax.includes('table') || !ax.includes('columnheader'))
        failures.push({ where: 'wide (' + mode.name + ')', id: 'table-semantics', help: 'the answer\'s table is exposed as a table' });
      await cdp.detach();
      if (mode.phone) {
        // each scrolls inside its own box: the element itself scrolls (not the timeline or the page), within the page
        const w = await page.evaluate(() => [...document.querySelectorAll('.answer pre, .answer table')].map(e => {
          let box = e;
          while (box && box.scrollWidth <= box.clientWidth + 1) box = box.parentElement;
          return { tag: e.tagName, box: box ? box.tagName + '.' + box.className : null,
            inPage: box === e && box.getBoundingClientRect().right <= window.innerWidth + 1 };
        }));
        if (!w.every(x => x.inPage)) failures.push({ where: 'wide (' + mode.name + ')', id: 'wide-content', help: 'scrolls in its own box', w });
      }
      await page.context().close();
    }
  },

  // Keyboard only (light desktop): sign in, send, open a thread, expand a tool call's JSON, edit
  // (Escape gives up), open the Workloads view.
  async keyboard(ctxFor) {
    const mode = MODES[0];
    const page = await ctxFor(mode);
    await page.goto(base + '/');
    await page.waitForSelector('#auth:not([hidden])', { timeout: T });
    await tabTo(page, '#email');
    await page.keyboard.type('kbd-' + Date.now() + '@example.com');
    await tabTo(page, '#password');
    await page.keyboard.type('correct horse battery');
    await tabTo(page, '#register');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#chat:not([hidden])', { timeout: T });
    await connected(page);
    await tabTo(page, '#input');
    await page.keyboard.type('What does my LLM usage cost?');
    await page.keyboard.press('Enter');
    await waitFor(page, () => window.__agentd.log.some(e => e.type === 'agent_completed' && e.agent === 'supervisor'));
    await page.waitForSelector('.run .tool details summary', { timeout: T });
    // a tool call's JSON (back from the composer): Enter opens it, Space closes it
    await tabTo(page, '.run .tool details summary', true);
    await page.keyboard.press('Enter');
    check(await page.evaluate(() => document.activeElement.parentElement.open), 'Enter opens the tool call');
    await page.keyboard.press(' ');
    check(await page.evaluate(() => !document.activeElement.parentElement.open), 'Space closes the tool call');
    await waitFor(page, () => document.querySelectorAll('#thread-list button').length >= 1);
    // a new thread, then back to the first one from the list
    await tabTo(page, '#new-thread', true);
    await page.keyboard.press('Enter');
    await waitFor(page, () => !document.querySelector('#timeline .run'));
    await tabTo(page, '#thread-list button');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#thread-list button[aria-current="true"]', { timeout: T });
    await page.waitForSelector('.turn button.edit', { timeout: T });
    // edit a message, give up with Escape: focus returns to its Edit button
    await tabTo(page, '.turn button.edit', true);
    await page.keyboard.press('Enter');
    await page.getByLabel('Edit message', { exact: true }).waitFor({ timeout: T });
    check(await page.evaluate(() => document.activeElement.tagName === 'TEXTAREA'), 'the editor takes the focus');
    await page.keyboard.press('Escape');
    await waitFor(page, () => !document.querySelector('.turn form') && document.activeElement.matches('.turn button.edit'));
    // the Workloads view
    await tabTo(page, '#nav-work', true, 200);
    await page.keyboard.press(' ');
    await page.waitForSelector('#work:not([hidden])', { timeout: T });
    await tabTo(page, '#upload-file');
    await page.screenshot({ path: join(SHOTS, 'a11y-keyboard-workloads.png'), fullPage: true });
    await page.context().close();
  },

  async approval(ctxFor) {
    const gate = (q, expr) => q + ' [[scenario:approval]] [[tool:calculator]] [[args:{"expression":"' + expr + '"}]]';
    for (const mode of MODES) {
      const page = await ctxFor(mode);
      await page.goto(base + '/');
      await page.waitForSelector('#auth:not([hidden])', { timeout: T });
      if (mode.name === 'light-desktop') {   // keyboard only: dev login
        await tabTo(page, '#dev-login');
        await page.keyboard.press('Enter');
      } else await tap(page, '#dev-login', mode);
      await page.waitForSelector('#chat:not([hidden])', { timeout: T });
      await connected(page);
      await page.click('#new-thread');
      await send(page, mode, gate('First question', '6*7'));
      await page.waitForSelector('.approval button', { timeout: T });
      await audit(page, mode, 'approval');
      // a message sent meanwhile waits in the queued tray; its editor
      await send(page, mode, gate('Second question', '2+3'));
      await page.waitForSelector('#queued > li button.edit', { timeout: T });
      await audit(page, mode, 'queued');
      await tap(page, '#queued > li button.edit', mode);
      await page.getByLabel('Edit message', { exact: true }).waitFor({ timeout: T });
      await audit(page, mode, 'queued-edit');
      await page.keyboard.press('Escape');
      await waitFor(page, () => !document.querySelector('#queued form'));
      // approve (keyboard only on the light desktop), the queued turn goes and waits for its approval
      const runs = await page.evaluate(doneRuns);
      const end = Date.now() + T;
      while (await page.evaluate(doneRuns) === runs) {
        check(Date.now() < end, 'the first run did not finish after approvals');
        const b = page.locator('.approval button:text("Approve")');
        if (!(await b.count())) { await new Promise(r => setTimeout(r, 150)); continue; }
        if (mode.name === 'light-desktop') {
          // back from the tray's Edit button: Deny, then Approve
          await tabTo(page, '.approval .row button:first-child', true, 200);
          await page.keyboard.press('Enter');
          await waitFor(page, () => !document.activeElement || !document.activeElement.matches('.approval button'));
        } else await (mode.phone ? b.first().tap() : b.first().click());
      }
      await waitFor(page, () => !document.querySelector('#queued > li'));
      await page.waitForSelector('.run:last-child .approval button', { timeout: T });
      // Stop, on screen and working at every size
      await onScreen(page, '#stop:not([disabled])', mode);
      await tap(page, '#stop', mode);
      await waitFor(page, () => window.__agentd.log.some(e => e.type === 'agent_stopped'));
      await audit(page, mode, 'stopped');
      await page.context().close();
    }
  },
};

const browser = await launchChromium();
let code = 0;
const errors = [];
try {
  const ctxFor = async mode => {
    const { name, phone, ...opts } = mode;
    const ctx = await browser.newContext(opts);
    const page = await ctx.newPage();
    page.on('pageerror', e => errors.push(String(e)));
    page.on('console', m => { if (m.type() === 'error' && !/favicon|status of 404/.test(m.text())) errors.push(m.text()); });
    return page;
  };
  try {
    const todo = part === 'builtin' ? ['builtin', 'keyboard'] : [part];
    for (const p of todo) await parts[p](ctxFor);
    const csp = errors.filter(e => /Content Security Policy/i.test(e));
    check(csp.length === 0, 'CSP violations: ' + csp.join('; '));
    const out = { screens, notes, focus: [...focusSeen] };
    check(failures.length === 0, 'accessibility failures: ' + JSON.stringify(failures, null, 1));
    console.log(JSON.stringify({ ok: true, scenario: part, out, errors }));
  } catch (e) {
    console.log(JSON.stringify({ ok: false, scenario: part, error: String(e && e.stack || e), failures, notes, screens, errors }));
    code = 1;
  }
} finally {
  await browser.close();
}
process.exit(code);
