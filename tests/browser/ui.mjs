// ui.mjs — browser scenarios for agentd's web UI, driven by tests/e2e/test_browser.py.
// Usage: node ui.mjs BASE_URL SCENARIO [JSON_ARGS]; prints one JSON line, exits 0 on pass.
// Debian's chromium, headless, no sandbox, kept off the network (only 127.0.0.1).
import { launchChromium, waitUntil } from './launch.mjs';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const [base, scenario, argJson] = process.argv.slice(2);
const args = argJson ? JSON.parse(argJson) : {};
const SHOTS = join(dirname(fileURLToPath(import.meta.url)), 'screenshots');
mkdirSync(SHOTS, { recursive: true });
const T = 60000; // generous: a loaded 2-core machine

function check(cond, msg) { if (!cond) throw new Error(msg); }

// Ask test_browser.py to act on the server (e.g. restart it): one JSON line on stdout,
// the answer is one line on stdin.
const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function control(action) {
  console.log(JSON.stringify({ control: action }));
  const { value } = await stdinLines.next();
  check(value === 'ok', 'control ' + action + ': ' + value);
}

// REST from node (not the page: it may be offline), with the page's current token.
async function rest(page, path) {
  const token = await page.evaluate(() => window.__agentd.access);
  const r = await fetch(base + path, { headers: { Authorization: 'Bearer ' + token } });
  check(r.ok, path + ': HTTP ' + r.status);
  return r.json();
}

// The whole-run checks after a disturbance: no seq or step twice, every stored event of
// the run shown once, the answer shown = the stored agent_response.
async function checkRun(page, runId) {
  const st = await rest(page, '/api/events?run_id=' + encodeURIComponent(runId) + '&limit=1000');
  const stored = st.events;
  const r = await page.evaluate(runId => {
    const S = window.__agentd;
    const li = document.querySelector('.run[data-run="' + runId + '"]');
    return {
      seqs: S.log.map(e => e.seq),
      runSeqs: S.log.filter(e => e.run === runId).map(e => e.seq),
      steps: [...li.querySelectorAll('.step > .head')].map(h => h.firstChild.textContent),
      text: S.runs.get(runId)?.text,
      answer: li.querySelector('.answer').textContent,
    };
  }, runId);
  check(new Set(r.seqs).size === r.seqs.length, 'duplicate seq: ' + JSON.stringify(r.seqs));
  check(new Set(r.steps).size === r.steps.length, 'duplicate step: ' + JSON.stringify(r.steps));
  check(JSON.stringify(r.runSeqs) === JSON.stringify(stored.map(e => e.seq)),
    'events shown ' + JSON.stringify(r.runSeqs) + ' != stored ' + JSON.stringify(stored.map(e => e.seq)));
  const resp = stored.find(e => e.type === 'agent_response');
  check(resp && r.text === resp.data.content, 'answer ' + JSON.stringify(r.text) + ' != stored ' + JSON.stringify(resp?.data));
  check(r.answer.length > 0, 'answer shown');
  const agents = new Set(stored.filter(e => e.type === 'agent_started').map(e => e.agent_name));
  check(r.steps.length === agents.size, 'steps ' + JSON.stringify(r.steps) + ' for agents ' + JSON.stringify([...agents]));
  return { events: stored.length, steps: r.steps };
}

const runDoneOf = runId => {
  const S = window.__agentd;
  return S.log.some(e => e.run === runId && ((e.type === 'agent_completed' && e.agent === 'supervisor') ||
    e.type === 'agent_stopped' || e.type === 'agent_error'));
};

// Poll until fn(arg) holds (launch.mjs says why not page.waitForFunction).
const waitFor = (page, fn, arg, timeout = T) => waitUntil(page, fn, arg, timeout);

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
    // cost by model per day: the one good record is a gpt-4o segment on its day
    await page.waitForSelector('#cost-per-day rect.seg[data-date="2026-01-01"][data-model="gpt-4o"]', { timeout: T });
    const seg = await page.textContent('#cost-per-day rect.seg[data-model="gpt-4o"] title');
    check(seg.startsWith('2026-01-01 · gpt-4o: $') && seg.includes('(1 calls)'), 'segment title: ' + seg);
    await page.screenshot({ path: join(SHOTS, 'dashboard.png'), fullPage: true });
    // the range applies: a window after the record shows nothing, then the whole range again
    await page.fill('#range-from', '2026-01-02');
    await page.click('#range-apply');
    await waitFor(page, () => document.getElementById('dashboard').textContent.includes('No workload records'));
    await page.fill('#range-from', '');
    await page.fill('#range-to', '2026-01-01');
    await page.click('#range-apply');
    await page.waitForSelector('#cost-per-day rect.seg[data-date="2026-01-01"]', { timeout: T });
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

  // Edit a sent message (keyboard only), then re-run the last answer: each is a new turn
  // in the same thread; the older turn stays, marked superseded; marks survive a reload.
  async edit(page) {
    await login(page, 'dev');
    await ask(page, 'What does my LLM usage cost?');
    await waitFor(page, runDone);
    const tid = await page.evaluate(() => window.__agentd.thread);
    await page.focus('.turn button.edit');
    await page.keyboard.press('Enter');
    const editor = page.getByLabel('Edit message', { exact: true });
    await editor.waitFor({ timeout: T });
    check(await editor.inputValue() === 'What does my LLM usage cost?', 'the editor holds the text');
    await editor.fill('Which model costs the most?');
    await page.keyboard.press('Enter');
    await waitFor(page, () => document.querySelectorAll('#timeline .run').length === 2 &&
      document.querySelectorAll('#timeline .run .answer:not([hidden])').length === 2 &&
      window.__agentd.log.filter(e => e.type === 'agent_completed' && e.agent === 'supervisor').length === 2);
    const marks = () => page.evaluate(() => [...document.querySelectorAll('#timeline > li')].map(li =>
      (li.classList.contains('turn') ? 'user:' + li.querySelector('.msg').textContent : 'run') +
      (li.classList.contains('superseded') ? ' superseded' : '') +
      [...li.querySelectorAll('.badge')].map(b => ' [' + b.textContent + ']').join('')));
    let m = await marks();
    check(JSON.stringify(m) === JSON.stringify(['user:What does my LLM usage cost? superseded [superseded]',
      'run superseded', 'user:Which model costs the most? [edited]', 'run']), 'after the edit: ' + JSON.stringify(m));
    check(await page.evaluate(() => window.__agentd.thread) === tid, 'same thread');
    await page.screenshot({ path: join(SHOTS, 'edit.png'), fullPage: true });
    // re-run the last answer
    await page.click('#rerun');
    await waitFor(page, () => window.__agentd.log.filter(e => e.type === 'agent_completed' && e.agent === 'supervisor').length === 3);
    await page.waitForSelector('#rerun', { timeout: T });
    m = await marks();
    check(m.length === 6 && m[2] === 'user:Which model costs the most? superseded [superseded] [edited]' &&
      m[3] === 'run superseded' && m[4] === 'user:Which model costs the most? [re-run]' && m[5] === 'run',
      'after the re-run: ' + JSON.stringify(m));
    const stored = await rest(page, '/api/threads/' + tid + '/messages');
    const users = stored.messages.filter(x => x.role === 'user').map(x => x.content);
    check(JSON.stringify(users) === JSON.stringify(['What does my LLM usage cost?', 'Which model costs the most?',
      'Which model costs the most?']), 'stored turns: ' + JSON.stringify(users));
    check(stored.messages.filter(x => x.role === 'assistant').length === 3, 'three answers stored');
    // the marks come back after a reload
    await page.reload();
    await page.waitForSelector('.turn .badge.edited', { timeout: T });
    await waitFor(page, () => document.querySelectorAll('#timeline .run').length === 3);
    const again = await marks();
    check(JSON.stringify(again) === JSON.stringify(m), 'after a reload: ' + JSON.stringify(again));
    return { marks: m };
  },

  // Turns sent while the thread's run is unfinished are held by the page (docs/ui.md, queued
  // turns): shown at once in the tray, badged "queued", editable and cancellable by keyboard,
  // kept across a thread switch and a reload, and sent one at a time, each once the run
  // before it has ended (completed or stopped), so the thread reads Q1, A1, Q2, A2, …
  // Runs are held deterministically by an approval (--llm openai --approve-tools calculator).
  async queue(page) {
    const gate = expr => ' [[scenario:approval]] [[tool:calculator]] [[args:{"expression":"' + expr + '"}]]';
    const Q1 = 'First question' + gate('6*7');
    const Q2 = 'Second question' + gate('2+3');
    const Q3 = 'Third question' + gate('1+1');
    const Q3e = 'Third question, edited' + gate('1+1');
    const Q4 = 'Fourth question, cancelled';
    const Q5 = 'Fifth question';
    const tray = () => page.evaluate(() => ({
      hidden: document.getElementById('queued').hidden,
      items: [...document.querySelectorAll('#queued > li')].map(li => ({
        text: li.querySelector('.msg.user').textContent,
        badge: li.querySelector('.badge.queued')?.textContent || '',
        cancel: li.querySelector('button.cancel')?.getAttribute('aria-label') || '',
        edit: li.querySelector('button.edit')?.getAttribute('aria-label') || '' })),
      turns: [...document.querySelectorAll('#timeline li.turn')].map(li => li.querySelector('.msg.user').textContent),
    }));
    const trayTexts = async () => (await tray()).items.map(i => i.text);
    const stored = async tid => (await rest(page, '/api/threads/' + tid + '/messages?limit=100')).messages;
    const storedUsers = async tid => (await stored(tid)).filter(m => m.role === 'user').map(m => m.content);
    const endIndex = runId => page.evaluate(runId => window.__agentd.log.findIndex(e => e.run === runId &&
      ((e.type === 'agent_completed' && e.agent === 'supervisor') || e.type === 'agent_stopped' || e.type === 'agent_error')), runId);
    const runOfTurn = async i => {
      await waitFor(page, i => !!document.querySelectorAll('#timeline li.turn')[i]?.dataset.run, i);
      return page.evaluate(i => document.querySelectorAll('#timeline li.turn')[i].dataset.run, i);
    };
    const approveAll = async runId => {
      const end = Date.now() + T;
      while (!(await page.evaluate(runDoneOf, runId))) {
        check(Date.now() < end, 'run ' + runId + ' did not finish after approvals');
        const b = page.locator('.run[data-run="' + runId + '"] .approval button:text("Approve")');
        if (await b.count()) await b.first().click(); else await new Promise(r => setTimeout(r, 150));
      }
    };

    await login(page, 'dev');
    await ask(page, Q1);
    await page.waitForSelector('.approval button', { timeout: T }); // run 1 waits for the user
    const run1 = await page.evaluate(() => window.__agentd.currentRun);
    const tid = await page.evaluate(() => window.__agentd.thread);
    for (const q of [Q2, Q3, Q4, Q5]) await ask(page, q);
    await waitFor(page, () => document.querySelectorAll('#queued > li').length === 4);
    let t = await tray();
    check(!t.hidden && JSON.stringify(t.items.map(i => i.text)) === JSON.stringify([Q2, Q3, Q4, Q5]), 'queued: ' + JSON.stringify(t));
    check(t.items.every(i => i.badge === 'queued' && i.cancel.startsWith('Cancel queued message: ') &&
      i.edit.startsWith('Edit message: ')), 'badged and labelled: ' + JSON.stringify(t.items));
    check(JSON.stringify(t.turns) === JSON.stringify([Q1]), 'nothing else in the conversation: ' + JSON.stringify(t.turns));
    check(JSON.stringify(await storedUsers(tid)) === JSON.stringify([Q1]), 'queued turns are not sent');
    // cancel one and edit one, keyboard only
    await page.getByRole('button', { name: 'Cancel queued message: ' + Q4 }).focus();
    await page.keyboard.press('Enter');
    await waitFor(page, () => document.querySelectorAll('#queued > li').length === 3);
    await page.locator('#queued > li').nth(1).locator('button.edit').focus();
    await page.keyboard.press('Enter');
    const editor = page.getByLabel('Edit message', { exact: true });
    await editor.waitFor({ timeout: T });
    check(await editor.inputValue() === Q3, 'the editor holds the queued text');
    await editor.fill(Q3e);
    await page.keyboard.press('Enter');
    await waitFor(page, () => !document.querySelector('#queued form'));
    t = await tray();
    check(JSON.stringify(t.items.map(i => i.text)) === JSON.stringify([Q2, Q3e, Q5]) && t.items[1].badge === 'queued' &&
      t.items[1].cancel === 'Cancel queued message: ' + Q3e.slice(0, 40) + '…', 'after cancel and edit: ' + JSON.stringify(t));
    await page.screenshot({ path: join(SHOTS, 'queue.png'), fullPage: true });
    // another thread has its own (empty) queue; this one's is kept
    await page.click('#new-thread');
    await waitFor(page, () => document.getElementById('queued').hidden && !document.querySelector('#queued > li'));
    await ask(page, 'A question in another thread');
    await waitFor(page, tid => { const S = window.__agentd; return S.thread && S.thread !== tid; }, tid);
    const other = await runOfTurn(0);
    await waitFor(page, runDoneOf, other);
    check(await page.evaluate(() => !document.querySelector('#queued > li') && !document.querySelector('#timeline .badge.queued')),
      'a turn of an idle thread is sent at once');
    await page.click('#thread-list button[data-id="' + tid + '"]');
    await waitFor(page, () => document.querySelectorAll('#queued > li').length === 3);
    check(JSON.stringify(await trayTexts()) === JSON.stringify([Q2, Q3e, Q5]), 'the thread\'s queue is back');
    // a reload keeps the queue; the resumed run still waits, nothing was sent
    await page.reload();
    await page.waitForSelector('#chat:not([hidden])', { timeout: T });
    await page.waitForSelector('.run[data-run="' + run1 + '"] .approval button', { timeout: T });
    t = await tray();
    check(JSON.stringify(t.items.map(i => i.text)) === JSON.stringify([Q2, Q3e, Q5]) && t.items.every(i => i.badge === 'queued'),
      'after the reload: ' + JSON.stringify(t));
    check(JSON.stringify(await storedUsers(tid)) === JSON.stringify([Q1]), 'still not sent after the reload');
    // run 1 ends (approved) → Q2 goes, and only Q2
    await approveAll(run1);
    const run2 = await runOfTurn(1);
    await page.waitForSelector('.run[data-run="' + run2 + '"] .approval button', { timeout: T });
    t = await tray();
    check(JSON.stringify(t.turns) === JSON.stringify([Q1, Q2]) && JSON.stringify(t.items.map(i => i.text)) ===
      JSON.stringify([Q3e, Q5]), 'after run 1: ' + JSON.stringify(t));
    let q = await page.evaluate(() => window.__agentd.qLog);
    const end1 = await endIndex(run1);
    check(q.length === 1 && q[0].text === Q2 && end1 >= 0 && q[0].seen > end1, 'Q2 sent after run 1 ended: ' + JSON.stringify({ q, end1 }));
    check(JSON.stringify(await storedUsers(tid)) === JSON.stringify([Q1, Q2]), 'Q2 stored, Q3 not yet');
    // run 2 ends (approved) → Q3 (edited) goes
    await approveAll(run2);
    const run3 = await runOfTurn(2);
    await page.waitForSelector('.run[data-run="' + run3 + '"] .approval button', { timeout: T });
    check(JSON.stringify(await trayTexts()) === JSON.stringify([Q5]), 'Q5 still queued');
    // Stop stops the running run only; the queue stays, and Q5 goes once the run has stopped
    await page.click('#stop');
    await waitFor(page, runDoneOf, run3);
    const run5 = await runOfTurn(3);
    await waitFor(page, runDoneOf, run5);
    q = await page.evaluate(() => window.__agentd.qLog);
    const end2 = await endIndex(run2), end3 = await endIndex(run3);
    check(JSON.stringify(q.map(x => x.text)) === JSON.stringify([Q2, Q3e, Q5]) && q[1].seen > end2 && q[2].seen > end3,
      'each sent after the run before it: ' + JSON.stringify({ q, end2, end3 }));
    check(await page.evaluate(runId => window.__agentd.log.some(e => e.run === runId && e.type === 'agent_stopped'), run3), 'run 3 stopped');
    t = await tray();
    check(t.hidden && !t.items.length && JSON.stringify(t.turns) === JSON.stringify([Q1, Q2, Q3e, Q5]), 'all sent: ' + JSON.stringify(t));
    // the server's side: the turns in order, each after the answer before it; the cancelled one never
    const msgs = (await stored(tid)).map(m => ({ role: m.role, content: m.content, run: m.run_id }));
    const roles = msgs.map(m => m.role === 'user' ? m.content : 'A');
    check(JSON.stringify(roles) === JSON.stringify([Q1, 'A', Q2, 'A', Q3e, Q5, 'A']), 'stored: ' + JSON.stringify(msgs));
    const runs = {};
    for (const id of [run1, run2, run3, run5]) {
      const ev = (await rest(page, '/api/events?run_id=' + encodeURIComponent(id) + '&limit=1000')).events;
      runs[id] = { first: ev[0].seq, last: ev[ev.length - 1].seq };
    }
    check(runs[run1].last < runs[run2].first && runs[run2].last < runs[run3].first && runs[run3].last < runs[run5].first,
      'the runs did not overlap: ' + JSON.stringify(runs));
    await page.screenshot({ path: join(SHOTS, 'queue-done.png'), fullPage: true });
    return { tid, answers: msgs.filter(m => m.role === 'assistant').map(m => m.content), run2: await checkRun(page, run2),
      run5: await checkRun(page, run5) };
  },

  // The server's run queue (agentd --max-runs 1): a turn in a new thread while another
  // thread's run holds the only run thread is sent at once (its thread is free) and badged
  // "waiting for the server" until its run starts, after the other run has ended.
  async waiting(page) {
    await login(page, 'dev');
    await ask(page, 'Where can I save money?');
    await waitFor(page, () => window.__agentd.log.some(e => e.type === 'agent_started'));
    const first = await page.evaluate(() => window.__agentd.currentRun);
    await page.click('#new-thread');
    await ask(page, 'And which model is slowest?');
    await page.locator('#timeline li.turn .badge.waiting').waitFor({ timeout: T });
    check(!(await page.evaluate(runDoneOf, first)), 'the first run ended before the second turn waited: raise --llm-latency-ms');
    check(await page.textContent('#timeline li.turn .badge.waiting') === 'waiting for the server', 'the badge says so');
    check(await page.evaluate(() => !document.querySelector('#queued > li')), 'not held by the page: another thread');
    await page.screenshot({ path: join(SHOTS, 'waiting.png'), fullPage: true });
    const second = await page.evaluate(() => document.querySelector('#timeline li.turn').dataset.run);
    check(second && second !== first, 'two runs');
    await waitFor(page, runId => window.__agentd.started.has(runId), second);
    const order = await page.evaluate(([a, b]) => {
      const log = window.__agentd.log;
      return { firstEnd: log.findIndex(e => e.run === a && e.type === 'agent_completed' && e.agent === 'supervisor'),
        secondStart: log.findIndex(e => e.run === b) };
    }, [first, second]);
    check(order.firstEnd >= 0 && order.firstEnd < order.secondStart, 'the server held the second run: ' + JSON.stringify(order));
    await waitFor(page, () => !document.querySelector('#timeline .badge.waiting'));
    await waitFor(page, runDoneOf, second);
    check(await page.evaluate(() => document.querySelectorAll('#timeline .run').length === 1), 'the other thread\'s run is not drawn here');
    return { second: await checkRun(page, second) };
  },

  // The network drops mid-run (the page goes offline and its WebSocket is cut); the run
  // finishes on the server meanwhile; back online, the UI reconnects by itself and the
  // timeline completes from the stored events, nothing lost or doubled.
  async netdrop(page) {
    let down = false;
    const open = [];
    await page.routeWebSocket(/\/ws$/, ws => {
      if (down) { ws.close({ code: 4000, reason: 'offline' }); return; }
      const server = ws.connectToServer();
      open.push([ws, server]);
    });
    await login(page, 'dev');
    await ask(page, 'Where can I save money?');
    await waitFor(page, () => window.__agentd.log.some(e => e.type === 'tool_executing'));
    const runId = await page.evaluate(() => window.__agentd.currentRun);
    check(!(await page.evaluate(runDoneOf, runId)), 'run ended before the drop: raise --llm-latency-ms');
    down = true;
    await page.context().setOffline(true);
    for (const [ws, server] of open.splice(0)) { server.close(); ws.close({ code: 4000, reason: 'offline' }); }
    await waitFor(page, () => document.getElementById('conn').dataset.state === 'down');
    const seenAtDrop = await page.evaluate(() => window.__agentd.log.length);
    // the run goes on without us
    const end = Date.now() + T;
    for (;;) {
      const run = await rest(page, '/api/runs/' + runId);
      if (run.status !== 'queued' && run.status !== 'running') break;
      check(Date.now() < end, 'run did not finish on the server');
      await new Promise(r => setTimeout(r, 200));
    }
    check(!(await page.evaluate(runDoneOf, runId)), 'the page saw the end while offline');
    await page.screenshot({ path: join(SHOTS, 'netdrop-offline.png'), fullPage: true });
    down = false;
    await page.context().setOffline(false);
    await waitFor(page, runDoneOf, runId);
    await waitFor(page, () => document.getElementById('conn').textContent === 'connected');
    await page.waitForSelector('.run .answer:not([hidden])', { timeout: T });
    const res = await checkRun(page, runId);
    // and the user can go on
    await ask(page, 'Thanks, and the latency?');
    await waitFor(page, () => window.__agentd.log.filter(e => e.type === 'agent_completed' && e.agent === 'supervisor').length === 2);
    await page.screenshot({ path: join(SHOTS, 'netdrop.png'), fullPage: true });
    return { seenAtDrop, ...res };
  },

  // agentd restarts (same port and data) with a run finished and one waiting for an
  // approval: the UI shows the connection down while reconnects fail, reconnects by
  // itself once the server is back, and the user
  // approves and sees the run finish, then asks again.
  async restart(page) {
    await login(page, 'dev');
    await ask(page, 'Hello there');
    await waitFor(page, runDone);
    const done = await page.evaluate(() => window.__agentd.log.find(e => e.type === 'agent_started').run);
    await ask(page, '[[scenario:approval]] [[tool:calculator]] [[args:{"expression":"6*7"}]]');
    await page.waitForSelector('.approval button', { timeout: T });
    const runId = await page.evaluate(() => window.__agentd.currentRun);
    await page.evaluate(() => { window.__agentd.connLog = []; });
    // down long enough for reconnects to fail (and a token refresh to fail on the network)
    await control('stop');
    await waitFor(page, () => window.__agentd.wsTry >= 3);
    check(await page.evaluate(() => document.getElementById('conn').dataset.state) === 'down', 'shown down');
    await page.screenshot({ path: join(SHOTS, 'restart-down.png'), fullPage: true });
    await control('start');
    await waitFor(page, () => window.__agentd.connLog.includes('down') &&
      document.getElementById('conn').textContent === 'connected');
    await page.screenshot({ path: join(SHOTS, 'restart-reconnected.png'), fullPage: true });
    const end = Date.now() + T;
    while (!(await page.evaluate(runDoneOf, runId))) {
      check(Date.now() < end, 'run did not finish after approvals');
      const b = page.locator('.approval button:text("Approve")');
      if (await b.count()) await b.first().click(); else await new Promise(r => setTimeout(r, 150));
    }
    check(await page.evaluate(runId => window.__agentd.log.some(e => e.run === runId && e.type === 'tool_completed'), runId), 'the tool ran');
    const res = { before: await checkRun(page, done), approved: await checkRun(page, runId) };
    await ask(page, 'And after the restart?');
    await waitFor(page, () => window.__agentd.log.filter(e => e.type === 'agent_completed' && e.agent === 'supervisor').length === 3);
    await page.screenshot({ path: join(SHOTS, 'restart.png'), fullPage: true });
    return res;
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

const browser = await launchChromium();
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
