// bench_timeline.mjs — the issue-16 budget benchmark (not a test): a 2,000-event run
// streamed into the timeline, frame times from the browser's performance API.
// Usage: node bench_timeline.mjs BASE_URL [EVENTS] (an agentd with --dev-login; only
// REST is used from it: the WebSocket is played by playwright's routeWebSocket).
// BENCH_FLOOR=1: the app ignores the frames (the harness's own cost: the floor).
import { launchChromium } from './launch.mjs';

const base = process.argv[2];
const N = Number(process.argv[3] || 2000);
const browser = await launchChromium();
const page = await browser.newPage();
let sock;
await page.routeWebSocket(/\/ws$/, ws => {
  sock = ws;
  ws.send(JSON.stringify({ type: 'system_message', event: 'connection_established', connection_ready: true, data: {} }));
});
const t0 = Date.now();
await page.goto(base + '/');
await page.click('#dev-login');
await page.waitForSelector('#chat:not([hidden])');
// Signed in once the composer has the focus (the end of app.js enter()): a run
// streamed before that would be wiped by newConversation() on a loaded machine.
for (let k = 0; k < 200 && !(await page.evaluate(() => document.activeElement?.id === 'input')); k++) await new Promise(r => setTimeout(r, 50));
while (!sock) await new Promise(r => setTimeout(r, 50));
await page.evaluate(() => {
  window.__frames = [];
  let last = performance.now();
  const tick = now => { window.__frames.push(now - last); last = now; if (!window.__stop) requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  window.__long = [];
  new PerformanceObserver(l => { for (const e of l.getEntries()) window.__long.push(e.duration); }).observe({ type: 'longtask' });
});
// No thread_id: the page draws only the open thread's runs, and no thread is open here
// (a new conversation); a run without a thread is drawn in any view.
const run = 'run_bench';
const agents = ['supervisor', 'triage', 'data', 'optimization', 'reporting'];
let seq = 1_000_000;
const ev = (type, agent, data) => JSON.stringify({ type, seq: seq++, run_id: run, agent_name: agent,
  timestamp: Date.now() / 1000, data });
const frames = [];
frames.push(ev('agent_started', 'supervisor', { agent_name: 'supervisor', status: 'started' }));
let i = 0;
while (frames.length < N - 2) {
  const a = agents[1 + (i % 4)];
  const k = i % 5;
  if (k === 0) frames.push(ev('agent_thinking', a, { reasoning: 'step ' + i + ': looking at the costs by model', step_number: i }));
  else if (k === 1) frames.push(ev('tool_executing', a, { tool_name: 'query', call_id: 'c' + i, parameters: { sql: 'select ' + i } }));
  else if (k === 2) frames.push(ev('tool_completed', a, { tool_name: 'query', call_id: 'c' + (i - 1), result: { rows: [[i, i * 2]] }, status: 'completed', execution_time_ms: 3 }));
  else frames.push(ev('partial_result', 'reporting', { content: k === 3 ? '| model | cost |\n|---|---|\n' : '| m' + i + ' | ' + i + ' |\n' }));
  i++;
}
frames.push(ev('agent_response', 'supervisor', { content: 'done' }));
frames.push(ev('agent_completed', 'supervisor', { agent_name: 'supervisor', status: 'completed' }));
const floor = !!process.env.BENCH_FLOOR;
if (floor) await page.evaluate(() => { window.__agentd.ws.onmessage = () => {}; });
const start = Date.now();
for (let j = 0; j < frames.length; j += 20) { // 20 events every 10 ms: ~2,000 events/s
  for (const f of frames.slice(j, j + 20)) sock.send(f);
  await new Promise(r => setTimeout(r, 10));
}
if (!floor) await page.waitForSelector('.run .step.completed');
while (!floor && (await page.evaluate(() => window.__agentd.log.length)) < frames.length) await new Promise(r => setTimeout(r, 50));
const streamed = Date.now() - start;
await page.waitForTimeout(300);
const r = await page.evaluate(() => { window.__stop = 1; return { frames: window.__frames, long: window.__long }; });
const f = r.frames.slice(1).sort((a, b) => a - b);
const q = p => f[Math.min(f.length - 1, Math.floor(p * f.length))].toFixed(1);
console.log(JSON.stringify({ events: frames.length, stream_ms: streamed, frames: f.length, frame_p50_ms: q(0.5),
  frame_p95_ms: q(0.95), frame_p99_ms: q(0.99), frame_max_ms: f[f.length - 1].toFixed(1),
  long_tasks: r.long.length, long_task_max_ms: r.long.length ? Math.max(...r.long).toFixed(1) : 0,
  dom_nodes: await page.evaluate(() => document.getElementsByTagName('*').length), setup_ms: start - t0 }));
await browser.close();
