// md_incremental.mjs — the streamed answer's incremental renderer (md.js MdStream,
// issue 16) against the whole render: markdown documents fed in random-sized
// deltas must, after every delta, show the same DOM as render() of the text so
// far, and once final exactly render(text); a growing table keeps its rows (is
// not rebuilt); links stay inert. Then the same through the app: partial_result
// deltas and agent_response played over routeWebSocket.
// Usage: node md_incremental.mjs BASE_URL (an agentd with --dev-login). Prints one
// JSON line {ok, out|error}; exit status 0 when ok.
import { launchChromium } from './launch.mjs';

const base = process.argv[2];
const browser = await launchChromium();

// Documents: tables (cells with inline markup and links), fenced code holding
// markdown-like lines, lists, a list line that becomes a table head, CRLF line
// ends, a paragraph running into a table, javascript: links.
const DOCS = [
  '# Costs by model\n\nHere is the **table**:\n| model | cost | link |\n|---|---:|---|\n' +
    Array.from({ length: 60 }, (_, i) => `| m${i} | ${i * 3}.5 | [doc](https://example.com/m${i}) \`x\` |`).join('\n') +
    '\n| evil | 0 | [click](javascript:alert(1)) |\n\nDone: *all* good.\n',
  'Intro line\n```sql\nselect * from t;\n| a | b |\n|---|---|\n# not a heading\n- not an item\n```\nafter the code\n\n' +
    '```\nunclosed at first\n```\n1. one\n2. two [x](javascript:alert(2))\n3) three\n- dash\n* star\n',
  '- a | b\n|---|---|\n| c | d |\nplain | text\nnext line\n\n## Heading [ok](http://example.org/x?y=1)\n' +
    '+ item **bold *em* still**\n+ `code | pipe`\n\n| only | head |\n|--|--|\n',
  'CRLF para one\r\nstill one\r\n\r\n| h1 | h2 |\r\n|---|---|\r\n| 1 | 2 |\r\n| 3 | 4 |\r\n\r\n```\r\ncode\r\n```\r\nend\r',
  'text then table\n| x | y |\n|:--|--:|\n| [a](javascript:void(0)) | [b](https://ok.example/) |\n|  |\n\n' +
    '[data:](data:text/html,hi) [rel](/relative) [mail](mailto:a@b.c)\n',
];

// Random documents from a pool of lines that touch every block rule.
const POOL = ['```', '```js', '| a | b |', '|---|---|', '| 1 | 2 |', 'x | y', '- item', '1. first', '2) second',
  '# h1', '### h3', '', '', 'plain **b** *e* `c`', '[l](javascript:alert(1))', '[l](https://example.com/a)',
  'some text', '   ', '|--|', '* star *em*'];
function rng(seed) {
  return () => { seed |= 0; seed = (seed + 0x6d2b79f5) | 0; let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
}
const rand = rng(16);
for (let d = 0; d < 120; d++) {
  const n = 1 + Math.floor(rand() * 25), eol = rand() < 0.2 ? '\r\n' : '\n';
  DOCS.push(Array.from({ length: n }, () => POOL[Math.floor(rand() * POOL.length)]).join(eol) + (rand() < 0.5 ? eol : ''));
}
// Each document cut into random-sized deltas (1 to max characters).
function cut(text, max, r) {
  const out = [];
  for (let i = 0; i < text.length;) { const k = 1 + Math.floor(r() * max); out.push(text.slice(i, i + k)); i += k; }
  return out;
}
const CASES = [];
const r2 = rng(1016);
DOCS.forEach((doc, i) => { for (const max of [1, 7, 40]) CASES.push({ doc: i, deltas: cut(doc, max, r2) }); });

const fail = e => { console.log(JSON.stringify({ ok: false, error: String(e && e.stack || e) })); process.exitCode = 1; };
try {
  const page = await browser.newPage();
  const csp = [];
  page.on('console', m => { if (/Content Security Policy/i.test(m.text())) csp.push(m.text()); });
  let sock;
  await page.routeWebSocket(/\/ws$/, ws => {
    sock = ws;
    ws.send(JSON.stringify({ type: 'system_message', event: 'connection_established', connection_ready: true, data: {} }));
  });
  await page.goto(base + '/');

  // 1. The renderer alone, in the page (md.js as served).
  const unit = await page.evaluate(async ({ DOCS, CASES }) => {
    const md = await import('/assets/md.js');
    const ser = n => n.nodeType === 3 ? JSON.stringify(n.data) : '<' + n.nodeName +
      [...(n.attributes || [])].map(a => ' ' + a.name + '=' + JSON.stringify(a.value)).sort().join('') + '>' +
      [...n.childNodes].map(ser).join('') + '</' + n.nodeName + '>';
    const whole = text => { const d = document.createElement('div'); d.appendChild(md.render(text)); return ser(d); };
    const inert = box => [...box.querySelectorAll('a')].every(a => /^https?:\/\//.test(a.getAttribute('href')));
    let steps = 0;
    for (const c of CASES) {
      const box = document.createElement('div'), s = new md.MdStream(box);
      let text = '';
      for (const d of c.deltas) {
        text += d;
        s.update(text);
        steps++;
        // A trailing \r is held back until the next delta says whether \n follows.
        if (ser(box) !== whole(text.replace(/\r$/, ''))) return { bad: 'step', c, text, got: ser(box), want: whole(text.replace(/\r$/, '')) };
        if (!inert(box)) return { bad: 'link', c, text };
      }
      s.update(text, true);
      if (text !== DOCS[c.doc]) return { bad: 'deltas', c };
      if (ser(box) !== whole(text)) return { bad: 'final', c, got: ser(box), want: whole(text) };
    }
    // A growing table keeps the rows already drawn, and what precedes it.
    const box = document.createElement('div'), s = new md.MdStream(box);
    let text = 'Intro.\n\n| a | b |\n|---|---|\n| 0 | 0 |\n';
    s.update(text);
    const p = box.querySelector('p'), row = box.querySelector('tbody tr'), table = box.querySelector('table');
    for (let i = 1; i < 200; i++) { text += '| ' + i + ' | '; s.update(text); text += i + ' |\n'; s.update(text); }
    const kept = box.contains(p) && box.querySelector('table') === table &&
      box.querySelector('tbody tr') === row && box.querySelectorAll('tbody tr').length === 200;
    s.update(text + '\nafter', true);
    const keptFinal = box.querySelector('tbody tr') === row && box.contains(p) && ser(box) === whole(text + '\nafter');
    // A final text that does not extend the streamed one is drawn afresh.
    s.update('something else', true);
    const fresh = ser(box) === whole('something else');
    return { cases: CASES.length, steps, kept, keptFinal, fresh };
  }, { DOCS, CASES });
  if (unit.bad) throw new Error('MdStream differs from render: ' + JSON.stringify(unit).slice(0, 3000));
  if (!unit.kept || !unit.keptFinal) throw new Error('a growing table was rebuilt: ' + JSON.stringify(unit));
  if (!unit.fresh) throw new Error('a final text not extending the stream: ' + JSON.stringify(unit));

  // 2. Through the app: partial_result deltas, then agent_response.
  await page.click('#dev-login');
  await page.waitForSelector('#chat:not([hidden])');
  for (let k = 0; !sock && k < 200; k++) await new Promise(r => setTimeout(r, 50));
  if (!sock) throw new Error('no WebSocket');
  let seq = 5_000_000;
  const app = [];
  for (const [n, docIdx, final] of [[0, 0, 'same'], [1, 1, 'same'], [2, 3, 'same'], [3, 2, 'other']]) {
    // No thread_id: the page draws only the open thread's runs, and here no thread is
    // open (a new conversation); a run without a thread is drawn in any view.
    const run = 'run_md' + n;
    const ev = (type, data) => JSON.stringify({ type, seq: seq++, run_id: run, agent_name: 'supervisor',
      timestamp: Date.now() / 1000, data });
    const doc = DOCS[docIdx], answer = final === 'same' ? doc : '**replaced** [x](javascript:alert(3))';
    sock.send(ev('agent_started', { agent_name: 'supervisor', status: 'started' }));
    for (const d of cut(doc, 9, rng(n))) {
      sock.send(ev('partial_result', { content: d }));
      if (Math.random() < 0.2) await new Promise(r => setTimeout(r, 5)); // let some frames draw mid-stream
    }
    sock.send(ev('agent_response', { content: answer }));
    sock.send(ev('agent_completed', { agent_name: 'supervisor', status: 'completed' }));
    let same = null;
    for (let k = 0; k < 400 && !same; k++) {
      await new Promise(r => setTimeout(r, 50));
      same = await page.evaluate(async ({ run, answer }) => {
        const md = await import('/assets/md.js');
        const ser = n => n.nodeType === 3 ? JSON.stringify(n.data) : '<' + n.nodeName +
          [...(n.attributes || [])].map(a => ' ' + a.name + '=' + JSON.stringify(a.value)).sort().join('') + '>' +
          [...n.childNodes].map(ser).join('') + '</' + n.nodeName + '>';
        const box = document.querySelector(`.run[data-run="${run}"] .answer`);
        if (!box || !document.querySelector(`.run[data-run="${run}"] .step.completed`)) return null;
        const d = document.createElement('div'); d.appendChild(md.render(answer));
        const got = [...box.childNodes].map(ser).join(''), want = [...d.childNodes].map(ser).join('');
        return got === want ? { ok: true } : null;
      }, { run, answer });
    }
    if (!same) throw new Error('app answer of ' + run + ' differs from render(agent_response)');
    app.push(run);
  }
  const bad = await page.evaluate(() => window.__pwned || [...document.querySelectorAll('a')].filter(a => a.href && !/^https?:/.test(a.href)).length);
  if (bad) throw new Error('an inert link became live');
  if (csp.length) throw new Error('CSP violation: ' + csp[0]);
  console.log(JSON.stringify({ ok: true, out: { unit, app } }));
} catch (e) { fail(e); }
await browser.close();
