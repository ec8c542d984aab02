// ui.mjs — browser scenarios for agentd's web UI, driven by tests/e2e/test_browser.py.
// Usage: node ui.mjs BASE_URL SCENARIO [JSON_ARGS]; prints one JSON line, exits 0 on pass.
// Debian's chromium, headless, no sandbox, kept off the network (only 127.0.0.1).
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const [base, scenario, argJson] = process.argv.slice(2);
const args = argJson ? JSON.parse(argJson) : {};
const SHOTS = join(dirname(fileURLToPath(import.meta.url)), 'screenshots');
mkdirSync(SHOTS, { recursive: true });
const T = 60000; // generous: a loaded 2-core machine

function check(cond, msg) { if (!cond) throw new Error(msg); }

// page.waitForFunction evaluates a string, which the UI's CSP (no unsafe-eval)
// rightly refuses; poll with page.evaluate (a CDP function call) instead.
async function waitFor(page, fn, arg, timeout = T) {
  const end = Date.now() + timeout;
  for (;;) {
    if (await page.evaluate(fn, arg).catch(() => false)) return;
    if (Date.now() > end) throw new Error('timed out waiting for ' + String(fn).slice(0, 160));
    await new Promise(r => setTimeout(r, 100));
  }
}

async function login(page, how) {
  await page.goto(base + '/');
  if (how === 'register') {
    await page.fill('#email', 'u' + Date.now() + '@example.com');
    await page.fill('#password', 'correct horse battery');
    await page.click('#register');
  } else {
    await page.click('#dev-login');
  }
  await page.waitForSelector('#chat:not([hidden])', { timeout: T });
  await waitFor(page, () => document.getElementById('conn').textContent === 'connected');
}

async function ask(page, text) {
  await page.fill('#input', text);
  await page.press('#input', 'Enter');
}

const runDone = () => {
  const S = window.__agentd;
  return S.log.some(e => (e.type === 'agent_completed' && e.agent === 'supervisor') || e.type === 'agent_stopped' || e.type === 'agent_error');
};

const scenarios = {
  async chat(page) {
    await login(page, 'register');
    // Upload a CSV (one good row, one bad) and see the per-line reject.
    await page.click('#nav-work');
    await page.setInputFiles('#upload-file', { name: 'calls.csv', mimeType: 'text/csv', buffer: Buffer.from(
      'timestamp,model,provider,prompt_tokens,completion_tokens,latency_ms\n' +
      '2026-01-01T00:00:00Z,gpt-4o,openai,100,50,800\n' +
      '2026-01-01T00:01:00Z,gpt-4o,openai,-5,50,800\n') });
    await page.click('#upload');
    await page.waitForSelector('#upload-result table', { timeout: T });
    const res = await page.textContent('#upload-result');
    check(res.includes('1 records inserted') && res.includes('1 rejected'), 'upload result: ' + res);
    await page.waitForSelector('#dashboard svg', { timeout: T });
    await page.screenshot({ path: join(SHOTS, 'dashboard.png'), fullPage: true });
    await page.click('#nav-chat');
    await ask(page, 'What does my LLM usage cost by model?');
    await waitFor(page, runDone);
    await page.waitForSelector('.run .answer:not([hidden])', { timeout: T });
    const log = await page.evaluate(() => window.__agentd.log.map(e => e.type));
    const order = ['agent_started', 'agent_thinking', 'tool_executing', 'tool_completed', 'agent_completed'];
    let at = -1;
    for (const k of order) { const i = log.indexOf(k, at + 1); check(i > at, 'event order ' + JSON.stringify(log)); at = i; }
    check(await page.locator('.run .step').count() >= 2, 'steps');
    check(await page.locator('.run .tool details').count() >= 2, 'tool parameters/result');
    check(await page.locator('.run .think').count() >= 1, 'thinking');
    check((await page.textContent('.run .answer')).length > 10, 'answer');
    await page.screenshot({ path: join(SHOTS, 'chat.png'), fullPage: true });
    return { events: log.length };
  },

  async stop(page) {
    await login(page, 'dev');
    await ask(page, 'Analyse my costs in depth');
    await page.waitForSelector('#stop:not([disabled])', { timeout: T });
    await page.waitForSelector('.run .step', { timeout: T });
    await page.click('#stop');
    await waitFor(page, () => window.__agentd.log.some(e => e.type === 'agent_stopped'));
    await page.waitForSelector('.run .note', { timeout: T });
    check((await page.textContent('.run .note')).startsWith('stopped'), 'stopped note');
    await page.screenshot({ path: join(SHOTS, 'stop.png'), fullPage: true });
    return {};
  },

  async reload(page) {
    await login(page, 'dev');
    await ask(page, 'Where can I save money?');
    await waitFor(page, () => window.__agentd.log.some(e => e.type === 'tool_executing'));
    check(!(await page.evaluate(runDone)), 'run ended before the reload: raise --llm-latency-ms');
    await page.reload();
    await page.waitForSelector('#chat:not([hidden])', { timeout: T });
    await waitFor(page, runDone);
    await page.waitForSelector('.run .answer:not([hidden])', { timeout: T });
    const r = await page.evaluate(() => {
      const seqs = window.__agentd.log.map(e => e.seq);
      const runs = [...document.querySelectorAll('.run')].map(li => [...li.querySelectorAll('.step > .head')]
        .map(h => h.firstChild.textContent));
      return { seqs, runs, started: window.__agentd.log.filter(e => e.type === 'agent_started').length };
    });
    check(new Set(r.seqs).size === r.seqs.length, 'duplicate seq');
    for (const steps of r.runs) check(new Set(steps).size === steps.length, 'duplicate step: ' + JSON.stringify(r.runs));
    check(r.runs.some(s => s.includes('supervisor')), 'the run after the reload shows its supervisor step: ' + JSON.stringify(r.runs));
    await page.screenshot({ path: join(SHOTS, 'reload.png'), fullPage: true });
    return r;
  },

  async approval(page) {
    await login(page, 'dev');
    await ask(page, '[[scenario:approval]] [[tool:calculator]] [[args:{"expression":"6*7"}]]');
    await page.waitForSelector('.approval button', { timeout: T });
    await page.screenshot({ path: join(SHOTS, 'approval.png'), fullPage: true });
    // Through the supervisor more than one model step may ask: approve each until the run ends.
    const end = Date.now() + T;
    while (!(await page.evaluate(runDone))) {
      check(Date.now() < end, 'run did not finish after approvals');
      const b = page.locator('.approval button:text("Approve")');
      if (await b.count()) await b.first().click(); else await new Promise(r => setTimeout(r, 150));
    }
    check(await page.evaluate(() => window.__agentd.log.some(e => e.type === 'tool_completed')), 'a tool ran');
    const r = await page.textContent('.run .tool');
    check(r.includes('calculator'), 'tool shown: ' + r);
    return {};
  },

  async xss(page) {
    let dialogs = 0;
    page.on('dialog', d => { dialogs++; d.dismiss(); });
    await login(page, 'dev');
    const evil = '<img src=x onerror="window.__pwned=1;alert(1)"> [click](javascript:window.__pwned=2) ' +
      '<script>window.__pwned=3</script>';
    // A user message, and a stored assistant message rendered as markdown.
    const tid = await page.evaluate(async evil => {
      const S = window.__agentd;
      const h = { 'Content-Type': 'application/json', Authorization: 'Bearer ' + S.access };
      const t = await (await fetch('/api/threads', { method: 'POST', headers: h, body: JSON.stringify({ title: evil }) })).json();
      for (const role of ['user', 'assistant'])
        await fetch('/api/threads/' + t.id + '/messages', { method: 'POST', headers: h,
          body: JSON.stringify({ role, content: evil + '\n\n| a | b |\n|---|---|\n| ' + evil.replace(/\|/g, '') + ' | x |' }) });
      return t.id;
    }, evil);
    await page.evaluate(tid => sessionStorage.setItem('agentd.thread', tid), tid);
    await page.reload();
    await page.waitForSelector('.msg.user', { timeout: T });
    await page.waitForSelector('.run .answer:not([hidden])', { timeout: T });
    // Also through the live timeline: a tool call's parameters carry it.
    await ask(page, 'calculate ' + evil);
    await waitFor(page, runDone);
    const r = await page.evaluate(() => ({
      imgs: document.querySelectorAll('main img').length,
      scripts: document.querySelectorAll('main script').length,
      jsLinks: [...document.querySelectorAll('a')].filter(a => !/^https?:/.test(a.href)).length,
      pwned: window.__pwned || 0,
      text: document.getElementById('timeline').textContent.includes('<img src=x'),
    }));
    await page.screenshot({ path: join(SHOTS, 'xss.png'), fullPage: true });
    check(r.imgs === 0 && r.scripts === 0 && r.jsLinks === 0 && r.pwned === 0 && dialogs === 0, JSON.stringify(r));
    check(r.text, 'the markup shows as text');
    return r;
  },
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--disable-default-apps', '--disable-extensions', '--metrics-recording-only',
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'],
});
let code = 0;
try {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', e => errors.push(String(e)));
  page.on('console', m => { if (m.type() === 'error' && !/favicon|status of 404/.test(m.text())) errors.push(m.text()); });
  try {
    const out = await scenarios[scenario](page, args);
    const csp = errors.filter(e => /Content Security Policy/i.test(e));
    check(csp.length === 0, 'CSP violations: ' + csp.join('; '));
    console.log(JSON.stringify({ ok: true, scenario, out, errors }));
  } catch (e) {
    await page.screenshot({ path: join(SHOTS, scenario + '-failed.png'), fullPage: true }).catch(() => {});
    console.log(JSON.stringify({ ok: false, scenario, error: String(e && e.stack || e), errors }));
    code = 1;
  }
} finally {
  await browser.close();
}
process.exit(code);
