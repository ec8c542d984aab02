// app.js — agentd's web UI (SPEC §14, docs/ui.md).  Plain ES modules, no
// framework.  Model and user text only ever reaches the DOM as text nodes
// (md.js builds elements; nothing here assigns HTML strings).
import { MdStream } from './md.js';
import { renderDashboard } from './work.js';

const $ = id => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};

// The access token lives in memory only; the refresh token and the resume
// point are kept in sessionStorage so a reload of this tab can carry on.
const S = {
  access: null,
  refresh: sessionStorage.getItem('agentd.refresh'),
  thread: sessionStorage.getItem('agentd.thread'),
  threads: [],
  ws: null, wsTry: 0,
  lastSeq: Number(sessionStorage.getItem('agentd.seq') || 0),
  seen: new Set(),
  runs: new Map(),      // run_id → run view
  openRuns: new Map(),  // run_id → first seq seen (unfinished runs)
  currentRun: null,
  log: [],             // {seq, type, run} of each event shown (tests, debugging)
  frameId: 0,
  sent: new Map(),     // frame id → user message <li> awaiting message_received
  userOfRun: new Map(), // run_id → the user message <li> that started it
  started: new Set(),  // run_ids whose first event has arrived
  connLog: [],         // connection states shown (tests)
};
window.__agentd = S; // for the browser tests

// Called on every event: sessionStorage is written only when the point moves
// (while a run is open it stays before the run's first event), a write per
// event cost more than drawing the event (docs/ui.md, Budget).
let savedResume = null;
function saveResume() {
  let from = S.lastSeq;
  for (const s of S.openRuns.values()) from = Math.min(from, s - 1);
  const v = String(Math.max(0, from));
  if (v === savedResume && sessionStorage.getItem('agentd.seq') === v) return;
  sessionStorage.setItem('agentd.seq', v);
  savedResume = v;
}

// ---- REST ----
async function api(path, opts = {}, retried = false) {
  const headers = Object.assign({}, opts.headers || {});
  if (S.access) headers.Authorization = 'Bearer ' + S.access;
  if (opts.json !== undefined) { headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(opts.json); }
  const r = await fetch(path, { method: opts.method || 'GET', headers, body: opts.body });
  if (r.status === 401 && !retried && S.refresh && !path.startsWith('/auth/')) {
    if (await refresh()) return api(path, opts, true);
  }
  const body = r.headers.get('content-type')?.includes('json') ? await r.json() : null;
  if (!r.ok) {
    const msg = body?.error?.message || body?.message || body?.detail || ('HTTP ' + r.status);
    throw Object.assign(new Error(msg), { status: r.status, body });
  }
  return body;
}

function setTokens(t) {
  S.access = t.access_token;
  S.refresh = t.refresh_token;
  sessionStorage.setItem('agentd.refresh', S.refresh);
}

// Only an answer that refuses the token forgets it: a network failure or a 5xx
// (the server restarting, the network down) keeps it for the next try.
async function refresh() {
  let r;
  try {
    r = await fetch('/auth/refresh', { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ refresh_token: S.refresh }) });
    if (r.ok) { setTokens(await r.json()); return true; }
  } catch (e) { return false; }
  if (r.status >= 500 || r.status === 429) return false;
  S.access = null; S.refresh = null; sessionStorage.removeItem('agentd.refresh');
  return false;
}

// ---- auth ----
async function authWith(path, body) {
  $('auth-err').textContent = '';
  try {
    setTokens(await api(path, { method: 'POST', json: body }));
    await enter();
  } catch (e) { $('auth-err').textContent = e.message; }
}

function creds() { return { email: $('email').value.trim(), password: $('password').value }; }

async function enter() {
  $('auth').hidden = true;
  $('views').hidden = false;
  show('chat');
  connect();
  await loadThreads();
  if (S.thread) await openThread(S.thread); else newConversation();
  $('input').focus();
}

function show(view) {
  $('chat').hidden = view !== 'chat';
  $('work').hidden = view !== 'work';
  $('nav-chat').setAttribute('aria-pressed', String(view === 'chat'));
  $('nav-work').setAttribute('aria-pressed', String(view === 'work'));
  if (view === 'work') dashboard();
}

function dashboard() {
  return renderDashboard(api, $('dashboard'), { from: $('range-from').value, to: $('range-to').value });
}

// ---- threads ----
async function loadThreads() {
  const r = await api('/api/threads?limit=100');
  S.threads = r.threads || [];
  drawThreads();
}

function drawThreads() {
  const q = $('thread-search').value.trim().toLowerCase();
  const ul = $('thread-list');
  ul.replaceChildren();
  for (const t of S.threads) {
    const title = t.title || 'Untitled';
    if (q && !title.toLowerCase().includes(q)) continue;
    const b = el('button', '', title);
    b.type = 'button';
    b.dataset.id = t.id;
    if (t.id === S.thread) b.setAttribute('aria-current', 'true');
    b.addEventListener('click', () => openThread(t.id));
    ul.appendChild(el('li')).appendChild(b);
  }
}

function setThread(id) {
  S.thread = id;
  if (id) sessionStorage.setItem('agentd.thread', id); else sessionStorage.removeItem('agentd.thread');
  drawThreads();
}

function newConversation() {
  setThread(null);
  S.runs.clear();
  $('timeline').replaceChildren();
  $('thread-title').textContent = 'New conversation';
}

async function openThread(id) {
  let t;
  try { t = await api('/api/threads/' + encodeURIComponent(id)); } catch (e) { newConversation(); return; }
  setThread(id);
  $('thread-title').textContent = t.title || 'Untitled';
  S.runs.clear();
  const tl = $('timeline');
  tl.replaceChildren();
  const r = await api('/api/threads/' + encodeURIComponent(id) + '/messages?limit=100');
  for (const m of r.messages || []) {
    if (m.role === 'user') addUser(m.content).dataset.msg = m.id;
    else if (m.role === 'assistant') {
      const v = runView(m.run_id || m.id);
      setAnswer(v, m.content, true);
      v.done = true;
      v.li.dataset.state = 'done';
    }
  }
  applyEdits();
  placeRerun();
  scrollDown();
}

// ---- timeline ----
// Scroll to the end at most once per frame: reading scrollHeight after every
// event would force a layout per event (a 2,000-event run: docs/ui.md).
let scrollPending = false;
function scrollDown() {
  if (scrollPending) return;
  scrollPending = true;
  requestAnimationFrame(() => { scrollPending = false; const tl = $('timeline'); tl.scrollTop = tl.scrollHeight; });
}

// A user message: its text, then a line of badges (queued, edited, …) and an Edit button.
function addUser(text) {
  const li = el('li', 'turn');
  li.appendChild(el('div', 'msg user', text));
  const meta = el('div', 'meta');
  const edit = el('button', 'edit', 'Edit');
  edit.type = 'button';
  edit.setAttribute('aria-label', 'Edit message: ' + (text.length > 40 ? text.slice(0, 40) + '…' : text));
  edit.addEventListener('click', () => startEdit(li));
  meta.appendChild(edit);
  li.appendChild(meta);
  $('timeline').appendChild(li);
  return li;
}

function badge(li, kind, text) {
  let b = li.querySelector('.badge.' + kind);
  if (!b) {
    b = el('span', 'badge ' + kind, text);
    li.querySelector('.meta').prepend(b);
  }
  return b;
}

function unbadge(li, kind) { li?.querySelector('.badge.' + kind)?.remove(); }

// Send a chat turn in the open thread.  from/kind: the message this one edits or re-runs.
// A turn sent while another run of the thread is unfinished, or whose run has not
// started a second after the server took it (the server's run queue is full), shows
// "queued" until its run's first event.
function sendUser(text, kind, from) {
  const id = 'u' + (++S.frameId);
  const payload = { content: text };
  if (S.thread) payload.thread_id = S.thread;
  const busy = [...S.runs.values()].some(v => !v.done && !v.ended);
  if (!send({ type: 'user_message', payload, id })) return null;
  const li = addUser(text);
  placeRerun(); // the last answer is no longer last
  li.dataset.state = 'sent';
  S.sent.set(id, li);
  if (busy) badge(li, 'queued', 'queued');
  if (from) {
    badge(li, 'edited', kind === 'rerun' ? 're-run' : 'edited');
    li.dataset.editOf = from.dataset.msg || '';
    li.dataset.editKind = kind;
    li.editFrom = from;
    supersede(from, true);
  }
  scrollDown();
  return li;
}

// The server took a turn (message_received with our frame id).
function accepted(replyTo, d) {
  const li = S.sent.get(replyTo);
  if (!li) return;
  S.sent.delete(replyTo);
  li.dataset.msg = d.message_id || '';
  li.dataset.state = 'accepted';
  if (li.dataset.editOf && d.message_id) rememberEdit(d.message_id, li.dataset.editOf, li.dataset.editKind);
  if (!d.run_id) return;
  li.dataset.run = d.run_id;
  S.userOfRun.set(d.run_id, li);
  if (S.started.has(d.run_id)) { unbadge(li, 'queued'); return; }
  setTimeout(() => { if (!S.started.has(d.run_id) && li.isConnected) badge(li, 'queued', 'queued'); }, 1000);
}

// The first event of a run: its turn is no longer queued.
function runStarted(runId) {
  if (S.started.has(runId)) return;
  S.started.add(runId);
  unbadge(S.userOfRun.get(runId), 'queued');
}

// An error frame answering one of our turns: it was not taken.
function refused(replyTo, message) {
  const li = S.sent.get(replyTo);
  if (!li) return false;
  S.sent.delete(replyTo);
  unbadge(li, 'queued');
  li.dataset.state = 'refused';
  badge(li, 'failed', 'not sent: ' + message);
  if (li.editFrom) supersede(li.editFrom, false); // the edit did not happen
  return true;
}

// ---- edit and re-run ----
// An edited message (or a re-run of one) is a new turn in the same thread; the
// old message and the answers that followed it stay, marked superseded.  Which
// message replaced which is remembered in this browser (localStorage), so the
// marks come back with the thread.
function supersede(li, on) {
  li.classList.toggle('superseded', on);
  if (on) badge(li, 'superseded', 'superseded'); else unbadge(li, 'superseded');
  for (let n = li.nextElementSibling; n && !n.classList.contains('turn'); n = n.nextElementSibling)
    if (n.classList.contains('run')) n.classList.toggle('superseded', on);
}

function edits() {
  try { return JSON.parse(localStorage.getItem('agentd.edits') || '{}') || {}; } catch (e) { return {}; }
}

function rememberEdit(newId, oldId, kind) {
  const e = edits();
  e[newId] = { of: oldId, kind };
  const keys = Object.keys(e);
  for (const k of keys.slice(0, Math.max(0, keys.length - 500))) delete e[k]; // bounded
  try { localStorage.setItem('agentd.edits', JSON.stringify(e)); } catch (x) { /* full: marks are a nicety */ }
}

function applyEdits() {
  const e = edits();
  const byId = new Map([...document.querySelectorAll('#timeline li.turn')].map(li => [li.dataset.msg, li]));
  for (const [id, li] of byId) {
    const m = e[id];
    if (!m) continue;
    badge(li, 'edited', m.kind === 'rerun' ? 're-run' : 'edited');
    const old = byId.get(m.of);
    if (old) supersede(old, true);
  }
}

function startEdit(li) {
  if (li.querySelector('form')) return;
  const bubble = li.querySelector('.msg.user');
  const f = el('form', 'edit-form');
  const n = ++S.frameId;
  const label = el('label', 'sr', 'Edit message');
  label.htmlFor = 'edit-' + n;
  const ta = el('textarea');
  ta.id = 'edit-' + n;
  ta.rows = 3;
  ta.value = bubble.textContent;
  const save = el('button', 'primary', 'Save and send');
  save.type = 'submit';
  const cancel = el('button', '', 'Cancel');
  cancel.type = 'button';
  const row = el('div', 'row');
  row.append(save, cancel);
  f.append(label, ta, row);
  bubble.hidden = true;
  li.insertBefore(f, bubble.nextSibling);
  const close = () => { f.remove(); bubble.hidden = false; li.querySelector('button.edit').focus(); };
  cancel.addEventListener('click', close);
  ta.addEventListener('keydown', e => {
    if (e.key === 'Escape') { e.preventDefault(); close(); }
    if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); f.requestSubmit(); }
  });
  f.addEventListener('submit', e => {
    e.preventDefault();
    const text = ta.value.trim();
    if (!text || text === bubble.textContent) { close(); return; }
    if (!sendUser(text, 'edited', li)) return; // not connected: keep the editor open
    f.remove();
    bubble.hidden = false;
    $('input').focus();
  });
  ta.focus();
}

// One Re-run button, under the last finished answer of the thread: asks its question again.
function placeRerun() {
  let b = $('rerun');
  if (!b) {
    b = el('button', '', 'Re-run');
    b.id = 'rerun';
    b.type = 'button';
    b.setAttribute('aria-label', 'Re-run: ask the last question again');
    b.addEventListener('click', () => {
      const run = b.closest('li.run');
      let u = run?.previousElementSibling;
      while (u && !u.classList.contains('turn')) u = u.previousElementSibling;
      if (u) sendUser(u.querySelector('.msg.user').textContent, 'rerun', u);
    });
  }
  const li = $('timeline').lastElementChild;
  const v = li?.classList.contains('run') ? S.runs.get(li.dataset.run) : null;
  if (!v || !(v.done || v.ended) || !v.text) { b.remove(); return; }
  v.copy.parentNode.appendChild(b);
}

function runView(runId) {
  let v = S.runs.get(runId);
  if (v) return v;
  const li = el('li', 'run');
  li.dataset.run = runId;
  const steps = el('div', 'steps');
  const answer = el('div', 'msg answer');
  answer.hidden = true;
  const actions = el('div', 'row');
  const copy = el('button', '', 'Copy answer');
  copy.type = 'button';
  copy.hidden = true;
  copy.addEventListener('click', () => navigator.clipboard?.writeText(v.text));
  actions.appendChild(copy);
  li.append(steps, answer, actions);
  $('timeline').appendChild(li);
  v = { li, steps, answer, copy, text: '', agents: new Map(), tools: new Map(), done: false, pending: false,
    md: new MdStream(answer), final: false };
  S.runs.set(runId, v);
  return v;
}

// The answer is drawn at most once per frame, incrementally (md.js MdStream:
// only the blocks still open are redrawn, a streaming table gains rows), so a
// frame's cost does not grow with the answer (docs/ui.md, Budget).
function setAnswer(v, text, final) {
  v.text = text;
  v.final = v.final || final;
  if (v.pending) return;
  v.pending = true;
  requestAnimationFrame(() => {
    v.pending = false;
    v.answer.hidden = !v.text;
    v.md.update(v.text, v.final);
    v.copy.hidden = !v.text;
  });
}

function step(v, name) {
  let s = v.agents.get(name);
  if (!s) {
    s = el('div', 'step');
    const head = el('div', 'head', name || 'agent');
    head.appendChild(el('span', 'st', 'started'));
    s.appendChild(head);
    v.steps.appendChild(s);
    v.agents.set(name, s);
  }
  return s;
}

function setStatus(s, text, cls) {
  s.querySelector('.st').textContent = text;
  if (cls) s.classList.add(cls);
}

function jsonBlock(label, value) {
  const d = el('details');
  d.appendChild(el('summary', '', label));
  d.appendChild(el('pre', '', JSON.stringify(value, null, 2)));
  return d;
}

function onEvent(ev) {
  if (typeof ev.seq === 'number') {
    if (S.seen.has(ev.seq)) return;
    S.seen.add(ev.seq);
    if (ev.seq > S.lastSeq) S.lastSeq = ev.seq;
  }
  if (S.log.length < 10000) S.log.push({ seq: ev.seq, type: ev.type, run: ev.run_id, agent: ev.agent_name });
  const runId = ev.run_id;
  const d = ev.data || {};
  const finished = ['agent_response', 'agent_error', 'agent_stopped'];
  if (runId && !S.openRuns.has(runId) && !finished.includes(ev.type) && ev.seq) S.openRuns.set(runId, ev.seq);
  if (ev.type === 'agent_stopped' || ev.type === 'agent_error' ||
      (ev.type === 'agent_completed' && ev.agent_name === 'supervisor')) S.openRuns.delete(runId);
  saveResume();
  if (!runId || (S.thread && ev.thread_id && ev.thread_id !== S.thread)) return;
  if (!S.thread && ev.thread_id) setThread(ev.thread_id);
  const existing = S.runs.get(runId);
  if (existing && existing.done) return; // shown complete from the stored messages
  const v = runView(runId);
  const agent = ev.agent_name || d.agent_name;
  switch (ev.type) {
    case 'agent_started': S.currentRun = runId; $('stop').disabled = false; step(v, agent); break;
    case 'agent_thinking': step(v, agent).appendChild(el('div', 'think', d.reasoning || '…')); break;
    case 'tool_executing': {
      const t = el('div', 'tool');
      t.dataset.call = d.call_id || '';
      t.appendChild(el('div', '', '🔧 ' + (d.tool_name || 'tool') + ' — running'));
      t.appendChild(jsonBlock('parameters', d.parameters));
      step(v, agent).appendChild(t);
      v.tools.set(d.call_id, t);
      break;
    }
    case 'tool_completed': {
      const t = v.tools.get(d.call_id) || step(v, agent).appendChild(el('div', 'tool'));
      t.firstChild.textContent = '🔧 ' + (d.tool_name || 'tool') + ' — ' + (d.status || 'completed') +
        (d.execution_time_ms !== undefined ? ' (' + d.execution_time_ms + ' ms)' : '');
      if (d.status === 'error') t.classList.add('bad');
      t.appendChild(jsonBlock('result', d.result));
      break;
    }
    case 'approval_required': {
      const box = el('div', 'approval');
      box.appendChild(el('div', '', 'Approve tool call ' + (d.tool_name || '') + '?'));
      box.appendChild(jsonBlock('parameters', d.parameters));
      const row = el('div', 'row');
      for (const [label, ok] of [['Approve', true], ['Deny', false]]) {
        const b = el('button', '', label);
        b.type = 'button';
        b.addEventListener('click', () => {
          send({ type: 'approve_tool', payload: { run_id: runId, call_id: d.call_id, approved: ok } });
          row.replaceChildren(el('span', 'note', ok ? 'approved' : 'denied'));
        });
        row.appendChild(b);
      }
      box.appendChild(row);
      step(v, agent).appendChild(box);
      break;
    }
    case 'partial_result': setAnswer(v, v.text + (d.content || ''), false); break;
    case 'agent_response': setAnswer(v, d.content || v.text, true); break;
    case 'agent_completed': setStatus(step(v, agent), 'completed' +
      (d.execution_time_ms !== undefined ? ' in ' + d.execution_time_ms + ' ms' : ''), 'completed');
      if (agent === 'supervisor') runEnded(runId); break;
    case 'agent_error':
      setStatus(step(v, agent), 'error: ' + (d.error_message || d.error_code || ''), 'error');
      runEnded(runId); break;
    case 'agent_stopped': v.steps.appendChild(el('div', 'note', 'stopped: ' + (d.reason || ''))); runEnded(runId); break;
    default: break;
  }
  scrollDown();
}

function runEnded(runId) {
  const v = S.runs.get(runId);
  if (v) v.ended = true;
  unbadge(S.userOfRun.get(runId), 'queued');
  placeRerun();
  if (S.currentRun === runId) { S.currentRun = null; $('stop').disabled = true; }
  loadThreads().catch(() => {});
}

// ---- WebSocket ----
function b64url(s) { return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, ''); }

function setConn(text, state) {
  $('conn').textContent = text;
  $('conn').dataset.state = state || '';
  if (S.connLog.length < 1000) S.connLog.push(state || '');
}

function connect() {
  if (!S.access) return;
  const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
  const ws = new WebSocket(url, ['jwt-auth', 'jwt.' + b64url(S.access)]);
  S.ws = ws;
  setConn(S.wsTry ? 'reconnecting…' : 'connecting…', 'down');
  ws.onmessage = m => {
    let f;
    try { f = JSON.parse(m.data); } catch (e) { return; }
    if (f.type === 'system_message' && f.event === 'connection_established') {
      S.wsTry = 0;
      setConn('connected', 'up');
      if (S.lastSeq > 0) send({ type: 'resume', payload: { after_seq: Number(sessionStorage.getItem('agentd.seq') || S.lastSeq) } });
      return;
    }
    if (f.type === 'message_received') {
      const d = f.data || {};
      if (f.reply_to !== undefined) accepted(f.reply_to, d);
      if (d.thread_id && !S.thread) { setThread(d.thread_id); loadThreads().catch(() => {}); }
      if (d.run_id) { S.currentRun = d.run_id; $('stop').disabled = false; runView(d.run_id); }
      return;
    }
    if (f.type === 'error') {
      if (f.reply_to === undefined || !refused(f.reply_to, f.message || f.code)) setConn('error: ' + (f.message || f.code), 'up');
      return;
    }
    if (f.seq !== undefined && f.run_id) { runStarted(f.run_id); onEvent(f); }
  };
  ws.onclose = async ev => {
    if (S.ws !== ws) return;
    S.ws = null;
    if (!S.refresh && !S.access) return;
    const delay = Math.min(10000, 500 * 2 ** S.wsTry++);
    setConn('disconnected: reconnecting in ' + Math.round(delay / 1000) + ' s…', 'down');
    // 1008: the token expired or was revoked; after a failed try it may have
    // expired meanwhile.  A refresh that fails on the network keeps the token.
    if (ev.code === 1008 || S.wsTry > 1) await refresh();
    setTimeout(connect, delay);
  };
}

function send(frame) {
  if (S.ws && S.ws.readyState === WebSocket.OPEN) { S.ws.send(JSON.stringify(frame)); return true; }
  setConn('not connected: try again', 'down');
  return false;
}

// ---- wiring ----
function wire() {
  $('auth-form').addEventListener('submit', e => { e.preventDefault(); authWith('/auth/login', creds()); });
  $('register').addEventListener('click', () => {
    if (!$('auth-form').reportValidity()) return;
    authWith('/auth/register', creds());
  });
  $('dev-login').addEventListener('click', () => authWith('/auth/dev/login', {}));
  $('logout').addEventListener('click', async () => {
    try { await api('/auth/logout', { method: 'POST', json: {} }); } catch (e) { /* gone anyway */ }
    S.access = S.refresh = null;
    sessionStorage.clear();
    const ws = S.ws; S.ws = null; ws?.close();
    location.reload();
  });
  $('nav-chat').addEventListener('click', () => show('chat'));
  $('nav-work').addEventListener('click', () => show('work'));
  $('new-thread').addEventListener('click', newConversation);
  $('thread-search').addEventListener('input', drawThreads);
  $('rename').addEventListener('click', async () => {
    if (!S.thread) return;
    const title = prompt('New title', $('thread-title').textContent);
    if (!title) return;
    await api('/api/threads/' + encodeURIComponent(S.thread), { method: 'PATCH', json: { title } });
    $('thread-title').textContent = title;
    await loadThreads();
  });
  $('archive').addEventListener('click', async () => {
    if (!S.thread) return;
    await api('/api/threads/' + encodeURIComponent(S.thread), { method: 'DELETE' });
    newConversation();
    await loadThreads();
  });
  $('composer').addEventListener('submit', e => {
    e.preventDefault();
    const text = $('input').value.trim();
    if (!text) return;
    if (!sendUser(text)) return;
    $('input').value = '';
  });
  $('input').addEventListener('keydown', e => {
    if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); $('composer').requestSubmit(); }
  });
  $('stop').addEventListener('click', () => {
    send({ type: 'stop_agent', payload: S.currentRun ? { run_id: S.currentRun } : {} });
  });
  $('upload-form').addEventListener('submit', e => { e.preventDefault(); upload(); });
  $('range').addEventListener('submit', e => { e.preventDefault(); dashboard(); });
}

function upload() {
  const f = $('upload-file').files[0];
  const out = $('upload-result');
  if (!f) { out.textContent = 'Choose a file first.'; return; }
  const name = f.name.toLowerCase();
  const type = name.endsWith('.csv') ? 'text/csv' : name.endsWith('.jsonl') || name.endsWith('.ndjson')
    ? 'application/x-ndjson' : 'application/json';
  const xhr = new XMLHttpRequest();
  const bar = $('upload-progress');
  bar.hidden = false; bar.value = 0;
  xhr.upload.onprogress = e => { if (e.lengthComputable) bar.value = Math.round(100 * e.loaded / e.total); };
  xhr.onload = () => {
    bar.value = 100;
    let b = null;
    try { b = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
    out.replaceChildren();
    if (xhr.status !== 201 || !b) { out.appendChild(el('p', 'err', 'Upload failed: ' + (b?.error?.message || xhr.status))); return; }
    out.appendChild(el('p', '', b.inserted + ' records inserted, ' + (b.rejected || []).length + ' rejected.'));
    if ((b.rejected || []).length) {
      const t = el('table', 'data');
      const h = t.appendChild(el('tr'));
      h.append(el('th', '', 'Line'), el('th', '', 'Error'));
      for (const r of b.rejected.slice(0, 200)) {
        const tr = t.appendChild(el('tr'));
        tr.append(el('td', '', String(r.line)), el('td', '', r.error));
      }
      out.appendChild(t);
    }
    dashboard();
  };
  xhr.onerror = () => { out.textContent = 'Upload failed: network error'; };
  xhr.open('POST', '/api/workloads');
  xhr.setRequestHeader('Authorization', 'Bearer ' + S.access);
  xhr.setRequestHeader('Content-Type', type);
  xhr.send(f);
}

async function start() {
  wire();
  try {
    const c = await (await fetch('/auth/config')).json();
    $('dev-login').hidden = !c.dev_login;
    $('register').hidden = c.registration === false;
  } catch (e) { /* defaults */ }
  if (S.refresh && await refresh()) await enter();
}

start();
