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

const QUEUE_MAX = 50; // queued turns per tab, every thread's (docs/ui.md)

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
  // Queued turns (docs/ui.md): held here while a run of their thread is unfinished.
  queue: loadQueue(),  // {q, t: thread_id|null, text, kind?, of?} in order, every thread's (sessionStorage)
  active: new Map(),   // run_id → thread_id of the runs not known to have ended, every thread's
  ended: new Set(),    // run_ids whose last event was seen (or the server says are over)
  pending: new Map(),  // frame id → thread_id|null of a user_message awaiting its reply
  draining: new Set(), // threads whose next queued turn is being checked with the server
  topAgent: new Map(), // run_id → its first agent (the one whose agent_completed ends it)
  qLog: [],            // {text, thread, seen: S.log.length} of each queued turn sent (tests)
  loaded: false,       // the open thread is drawn: queued turns may go
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
  // The socket opens once the open thread is drawn: the resume replays the open run's
  // events into it (openThread would wipe a run drawn before it, and a run waiting for
  // an approval sends nothing more to draw it again).  Queued turns go after that.
  try {
    await loadThreads();
    if (S.thread) await openThread(S.thread); else newConversation();
  } finally {
    S.loaded = true;
    connect();
  }
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
  drawQueue();
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
function addUser(text, list = $('timeline')) {
  const li = el('li', 'turn');
  li.appendChild(el('div', 'msg user', text));
  const meta = el('div', 'meta');
  const edit = el('button', 'edit', 'Edit');
  edit.type = 'button';
  edit.setAttribute('aria-label', 'Edit message: ' + short(text));
  edit.addEventListener('click', () => startEdit(li));
  meta.appendChild(edit);
  li.appendChild(meta);
  list.appendChild(li);
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
// While a run of the thread is unfinished (or turns of it already wait), the turn is
// queued instead: held here, shown "queued", and sent once the thread's runs have ended
// (see "queued turns" below).  Returns its <li>, or null when it was neither sent nor
// queued (not connected, or too many queued).
function sendUser(text, kind, from) {
  const thread = S.thread;
  if (busy(thread) || S.draining.has(thread) || S.queue.some(i => i.t === thread)) return enqueue(text, kind, from);
  return transmit(text, thread, null, kind, from, from?.dataset.msg);
}

// The user_message frame of a turn in `thread`.  li: the turn's queued <li>, moved into the
// timeline; without one a new <li> when the thread is open (a queued turn of another
// thread has none: its thread is drawn from the server when opened).  of/from: the
// message it edits or re-runs (from: its <li>, when shown).  Returns the <li> (or true
// without one), null when not connected.
function transmit(text, thread, li, kind, from, of) {
  const id = 'u' + (++S.frameId);
  const payload = { content: text };
  if (thread) payload.thread_id = thread;
  if (!send({ type: 'user_message', payload, id })) return null;
  S.pending.set(id, thread);
  if (li) {
    const focused = li.contains(document.activeElement);
    unbadge(li, 'queued');
    li.querySelector('button.cancel')?.remove();
    delete li.dataset.q;
    $('timeline').appendChild(li);
    trayShown();
    if (focused) li.querySelector('button.edit').focus();
  } else if (thread === S.thread) li = addUser(text);
  if (!li) return true;
  placeRerun(); // the last answer is no longer last
  li.dataset.state = 'sent';
  S.sent.set(id, li);
  if (kind) {
    badge(li, 'edited', kind === 'rerun' ? 're-run' : 'edited');
    li.dataset.editOf = of || '';
    li.dataset.editKind = kind;
    if (from) { li.editFrom = from; supersede(from, true); }
  }
  scrollDown();
  return li;
}

// The server took a turn (message_received with our frame id).  A turn whose run has
// not started a second later waits in the server's run queue (every run thread busy,
// --max-runs): badged "waiting for the server" until its run's first event.
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
  if (S.started.has(d.run_id)) return;
  setTimeout(() => {
    if (!S.started.has(d.run_id) && !S.ended.has(d.run_id) && li.isConnected) badge(li, 'waiting', 'waiting for the server');
  }, 1000);
}

// The first event of a run: its turn no longer waits for the server.
function runStarted(runId) {
  if (S.started.has(runId)) return;
  S.started.add(runId);
  unbadge(S.userOfRun.get(runId), 'waiting');
}

// An error frame answering one of our turns: it was not taken.
function refused(replyTo, message) {
  const li = S.sent.get(replyTo);
  if (!li) return false;
  S.sent.delete(replyTo);
  unbadge(li, 'waiting');
  li.dataset.state = 'refused';
  badge(li, 'failed', 'not sent: ' + message);
  if (li.editFrom) supersede(li.editFrom, false); // the edit did not happen
  return true;
}

// ---- queued turns ----
// A turn the user sends while a run of its thread is unfinished is held by the page
// (agentd would start a second run of the thread at once, beside the first, and that
// run would not see the first one's answer).  It shows at once in the tray under the
// conversation, badged "queued", with Edit and Cancel; when every run of its thread
// has ended (completed, failed or stopped) the first queued turn of the thread is sent,
// and the next one when that turn's run has ended, and so on.  The queue is kept in
// sessionStorage like the resume point, so a reload keeps it; each thread has its own.
//
// What is busy: the runs the page has seen start (message_received, events of every
// thread) and not end, and the turns sent but not yet answered.  Before a queued turn
// goes, GET /api/agents/status (the caller's active runs) confirms the thread is free:
// it catches runs the page has not seen (another tab, a run seen before a reload) and
// forgets ones that ended unseen.  agentd stores a run's row before message_received
// and its end before the last event, so the answer is never older than what the page saw.
function loadQueue() {
  try {
    const q = JSON.parse(sessionStorage.getItem('agentd.queue') || '[]');
    return Array.isArray(q) ? q.filter(i => i && typeof i.q === 'string' && typeof i.text === 'string' &&
      (i.t === null || typeof i.t === 'string')).slice(0, QUEUE_MAX) : [];
  } catch (e) { return []; }
}

function saveQueue() {
  const q = S.queue.map(({ q, t, text, kind, of }) => ({ q, t, text, kind, of }));
  try { sessionStorage.setItem('agentd.queue', JSON.stringify(q)); } catch (e) { /* full: kept in memory */ }
}

function busy(thread) {
  for (const t of S.active.values()) if (t === thread) return true;
  for (const t of S.pending.values()) if (t === thread) return true;
  return false;
}

const short = text => text.length > 40 ? text.slice(0, 40) + '…' : text;

function enqueue(text, kind, from) {
  if (S.queue.length >= QUEUE_MAX) { setConn('too many queued messages: cancel some first', S.ws ? 'up' : 'down'); return null; }
  const item = { q: 'q' + Date.now().toString(36) + '.' + (++S.frameId), t: S.thread, text };
  if (kind) { item.kind = kind; item.of = from?.dataset.msg || ''; item.from = from; }
  S.queue.push(item);
  saveQueue();
  const li = queuedItem(item);
  $('queued').appendChild(li);
  trayShown();
  drain(item.t); // free already when the first queued turn was held by its editor or the socket was down
  return li;
}

// A queued turn's <li>: the message, badged "queued", with Edit (startEdit) and Cancel.
function queuedItem(item) {
  const li = addUser(item.text, $('queued'));
  li.dataset.state = 'queued';
  li.dataset.q = item.q;
  const cancel = el('button', 'cancel', 'Cancel');
  cancel.type = 'button';
  cancel.setAttribute('aria-label', 'Cancel queued message: ' + short(item.text));
  cancel.addEventListener('click', () => cancelQueued(li));
  li.querySelector('.meta').appendChild(cancel);
  if (item.kind) badge(li, 'edited', item.kind === 'rerun' ? 're-run' : 'edited');
  badge(li, 'queued', 'queued');
  return li;
}

function trayShown() { $('queued').hidden = !$('queued').children.length; }

// The open thread's queued turns in the tray (their <li>s kept, with any open editor).
function drawQueue() {
  const tray = $('queued');
  const have = new Map([...tray.children].map(li => [li.dataset.q, li]));
  tray.replaceChildren(...S.queue.filter(i => i.t === S.thread).map(i => have.get(i.q) || queuedItem(i)));
  trayShown();
}

const queuedOf = li => S.queue.find(i => i.q === li.dataset.q);

function cancelQueued(li) {
  const item = queuedOf(li);
  if (!item) return;
  S.queue.splice(S.queue.indexOf(item), 1);
  saveQueue();
  const next = li.nextElementSibling || li.previousElementSibling;
  const focused = li.contains(document.activeElement);
  li.remove();
  trayShown();
  if (focused) (next?.querySelector('button.cancel') || $('input')).focus();
  drain(item.t); // the turns after it may go now
}

// An open editor holds its queued turn (and the ones after it): it goes as saved.
function holdQueued(li, on) {
  const item = queuedOf(li);
  if (!item) return;
  item.editing = on;
  if (!on) drain(item.t);
}

function editQueued(li, text) {
  const item = queuedOf(li);
  if (!item) return;
  item.text = text;
  saveQueue();
  li.querySelector('.msg.user').textContent = text;
  li.querySelector('button.edit').setAttribute('aria-label', 'Edit message: ' + short(text));
  li.querySelector('button.cancel').setAttribute('aria-label', 'Cancel queued message: ' + short(text));
}

// Every frame with a run_id: which runs of which threads are unfinished.  A run ends
// with its top agent's agent_completed, agent_error or agent_stopped (SPEC §5).
function track(f) {
  const id = f.run_id;
  if (!id || S.ended.has(id)) return;
  if (f.type === 'agent_started' && !S.topAgent.has(id)) S.topAgent.set(id, f.agent_name);
  const top = S.topAgent.get(id) || 'supervisor';
  if (f.type === 'agent_stopped' || f.type === 'agent_error' || (f.type === 'agent_completed' && f.agent_name === top)) {
    const thread = S.active.has(id) ? S.active.get(id) : f.thread_id || null;
    S.active.delete(id);
    S.topAgent.delete(id);
    S.ended.add(id);
    if (S.ended.size > 10000) S.ended.delete(S.ended.values().next().value); // bounded: the oldest
    drain(thread);
  } else if (f.thread_id) S.active.set(id, f.thread_id);
}

// The server answered a user_message frame: its run is the thread's, until it ends.
function turnTaken(frame, d) {
  const thread = S.pending.get(frame);
  S.pending.delete(frame);
  if (thread === null && d.thread_id && S.queue.some(i => i.t === null)) {
    for (const i of S.queue) if (i.t === null) i.t = d.thread_id; // queued in the conversation it created
    saveQueue();
  }
  if (d.run_id && d.thread_id && !S.ended.has(d.run_id)) S.active.set(d.run_id, d.thread_id);
  drain(d.thread_id || thread);
}

// Send the thread's next queued turn if the thread is free (checked with the server).
async function drain(thread) {
  const head = S.queue.find(i => i.t === thread);
  if (!head || head.editing || !S.loaded || busy(thread) || S.draining.has(thread)) return;
  if (!S.ws || S.ws.readyState !== WebSocket.OPEN) return; // again at the next connection
  S.draining.add(thread);
  const known = [...S.active.keys()];
  let runs = null;
  try { runs = (await api('/api/agents/status')).runs || []; } catch (e) { /* again at the next run's end or connection */ }
  S.draining.delete(thread);
  if (!runs) return;
  const live = new Set(runs.map(r => r.id));
  const freed = new Set();
  for (const id of known) {
    if (live.has(id) || !S.active.has(id)) continue;
    freed.add(S.active.get(id)); // it ended unseen
    S.active.delete(id);
    S.ended.add(id);
  }
  for (const r of runs) if (!S.ended.has(r.id) && r.thread_id) S.active.set(r.id, r.thread_id);
  if (!busy(thread)) sendQueued(thread);
  for (const t of freed) if (t !== thread) drain(t);
}

function sendQueued(thread) {
  const item = S.queue.find(i => i.t === thread);
  if (!item || item.editing) return;
  const li = thread === S.thread ? [...$('queued').children].find(x => x.dataset.q === item.q) || null : null;
  let from = item.from?.isConnected ? item.from : null;
  if (!from && item.of && thread === S.thread)
    from = [...document.querySelectorAll('#timeline li.turn')].find(x => x.dataset.msg === item.of) || null;
  const seen = S.log.length;
  if (!transmit(item.text, thread, li, item.kind, from, item.of)) return; // not connected: stays queued
  S.queue.splice(S.queue.indexOf(item), 1);
  saveQueue();
  if (S.qLog.length < 1000) S.qLog.push({ text: item.text, thread, seen });
}

// After a (re)connection or the first drawing: every thread's queue may go.
function drainAll() {
  for (const t of new Set(S.queue.map(i => i.t))) drain(t);
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
  const queued = li.dataset.state === 'queued'; // edited in place, held until saved or given up
  if (queued) holdQueued(li, true);
  const close = () => {
    f.remove();
    bubble.hidden = false;
    li.querySelector('button.edit').focus();
    if (queued) holdQueued(li, false);
  };
  cancel.addEventListener('click', close);
  ta.addEventListener('keydown', e => {
    if (e.key === 'Escape') { e.preventDefault(); close(); }
    if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); f.requestSubmit(); }
  });
  f.addEventListener('submit', e => {
    e.preventDefault();
    const text = ta.value.trim();
    if (!text || text === bubble.textContent) { close(); return; }
    if (queued) { editQueued(li, text); close(); return; }
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
  const pre = d.appendChild(el('pre', '', JSON.stringify(value, null, 2)));
  pre.tabIndex = 0; // it scrolls (app.css): reachable by keyboard to scroll it
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
  // Only the open thread's runs are drawn: a new conversation gets its thread from
  // message_received, which comes before its run's events (another thread's run must
  // not take over the new conversation).
  if (!runId || (ev.thread_id && ev.thread_id !== S.thread)) return;
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
  unbadge(S.userOfRun.get(runId), 'waiting');
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
      // A saved resume point, even 0 (the user's first run is open), replays from it.
      const from = sessionStorage.getItem('agentd.seq');
      if (from !== null || S.lastSeq > 0) send({ type: 'resume', payload: { after_seq: Number(from || S.lastSeq) } });
      drainAll();
      return;
    }
    if (f.type === 'message_received') {
      const d = f.data || {};
      // a queued turn of another thread, sent while this one is open, is not drawn here
      const own = f.reply_to !== undefined && S.pending.has(f.reply_to);
      const to = S.pending.get(f.reply_to);
      if (own) turnTaken(f.reply_to, d);
      if (f.reply_to !== undefined) accepted(f.reply_to, d);
      if (d.thread_id && !S.thread && (!own || to === null)) { setThread(d.thread_id); loadThreads().catch(() => {}); }
      if (d.run_id && (!d.thread_id || d.thread_id === S.thread)) { S.currentRun = d.run_id; $('stop').disabled = false; runView(d.run_id); }
      return;
    }
    if (f.type === 'error') {
      if (f.reply_to !== undefined && S.pending.has(f.reply_to)) { // a turn not taken: its thread is free
        const t = S.pending.get(f.reply_to);
        S.pending.delete(f.reply_to);
        drain(t);
      }
      if (f.reply_to === undefined || !refused(f.reply_to, f.message || f.code)) setConn('error: ' + (f.message || f.code), 'up');
      return;
    }
    if (f.seq !== undefined && f.run_id) { runStarted(f.run_id); onEvent(f); track(f); }
  };
  ws.onclose = async ev => {
    if (S.ws !== ws) return;
    S.ws = null;
    S.pending.clear(); // unanswered: whether they were taken is asked again before a queued turn goes
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
    S.queue = S.queue.filter(i => i.t !== S.thread); // nowhere to send them
    saveQueue();
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
