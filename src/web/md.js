// md.js — a small Markdown renderer, sanitised by construction: it builds DOM
// nodes and only ever assigns model text through textContent / createTextNode.
// Links keep only http(s) URLs; anything else is plain text.
// Covers what the agents write: headings, paragraphs, lists, fenced code,
// tables, **bold**, *em*, `code`, [links](https://…).
// render() draws a whole text; MdStream draws a text that grows (a streamed
// answer) redrawing only what may still change: the same DOM, built once.

const el = (tag, text) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; return e; };

export function safeUrl(u) {
  try {
    const url = new URL(u, 'http://invalid.invalid/');
    if ((url.protocol === 'http:' || url.protocol === 'https:') && /^https?:\/\//i.test(u.trim())) return url.href;
  } catch (e) { /* not a URL */ }
  return null;
}

// Inline spans into `parent`.
export function inline(parent, text) {
  const re = /(`[^`]+`)|(\*\*[^*]+\*\*)|(\*[^*\s][^*]*\*)|(\[[^\]]+\]\([^)\s]+\))/g;
  let last = 0, m;
  while ((m = re.exec(text)) !== null) {
    if (m.index > last) parent.appendChild(document.createTextNode(text.slice(last, m.index)));
    const t = m[0];
    if (m[1]) parent.appendChild(el('code', t.slice(1, -1)));
    else if (m[2]) inline(parent.appendChild(el('strong')), t.slice(2, -2));
    else if (m[3]) inline(parent.appendChild(el('em')), t.slice(1, -1));
    else {
      const close = t.indexOf('](');
      const label = t.slice(1, close), href = safeUrl(t.slice(close + 2, -1));
      if (href) {
        const a = el('a', label);
        a.href = href; a.rel = 'noopener noreferrer nofollow'; a.target = '_blank';
        parent.appendChild(a);
      } else parent.appendChild(document.createTextNode(label));
    }
    last = m.index + t.length;
  }
  if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
}

const cells = line => line.trim().replace(/^\|/, '').replace(/\|$/, '').split('|').map(c => c.trim());
const isSep = line => /^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$/.test(line);
const FENCE = /^```/, HEADING = /^(#{1,6})\s+(.*)$/, ITEM = /^\s*([-*+]|\d+[.)])\s+/;
const isRow = line => line.includes('|') && line.trim() !== '';
const tableAt = (lines, i) => lines[i].includes('|') && i + 1 < lines.length && isSep(lines[i + 1]);
// Does line i open a block other than a paragraph (or is it blank)?
const breaksPara = (lines, i) => FENCE.test(lines[i]) || HEADING.test(lines[i]) || tableAt(lines, i) ||
  ITEM.test(lines[i]) || !lines[i].trim();

// The block that starts at line i (nothing pending before it): its kind, the
// line after it (`end`) and the last line whose text decided it (`dep`;
// lines.length when "no more lines" decided it). While dep is a complete line
// of a growing text, more text cannot change the block.
function scan(lines, i) {
  const n = lines.length, line = lines[i];
  let j = i + 1;
  if (FENCE.test(line)) {
    while (j < n && !FENCE.test(lines[j])) j++;
    return { kind: 'code', start: i, end: Math.min(j + 1, n), dep: j, body: j }; // body: the lines i+1 … j-1
  }
  if (HEADING.test(line)) return { kind: 'h', start: i, end: i + 1, dep: i };
  if (tableAt(lines, i)) {
    j = i + 2;
    while (j < n && isRow(lines[j])) j++;
    return { kind: 'table', start: i, end: j, dep: j };
  }
  if (ITEM.test(line)) {
    while (j < n && ITEM.test(lines[j])) j++;
    return { kind: 'list', start: i, end: j, dep: j };
  }
  if (!line.trim()) return { kind: 'blank', start: i, end: i + 1, dep: i };
  while (j < n && !breaksPara(lines, j)) j++;
  // Deciding whether line j opens a table looked at line j + 1 too.
  return { kind: 'p', start: i, end: j, dep: j < n && lines[j].includes('|') ? j + 1 : j };
}

// Tables and lists are drawn one element per line, so a growing one keeps the
// rows of its complete lines and redraws only the row of its last line.
function tableRow(line) {
  const tr = el('tr');
  for (const c of cells(line)) inline(tr.appendChild(el('td')), c);
  return tr;
}
const listItem = line => { const li = el('li'); inline(li, line.replace(ITEM, '')); return li; };
// An empty table or list for block b: its element, where its rows go, how
// many lines precede the first row, how a row is drawn.
function shell(lines, b) {
  if (b.kind === 'table') {
    const table = el('table'), hr = table.appendChild(el('thead')).appendChild(el('tr'));
    table.tabIndex = 0; // a wide table scrolls in its own box (app.css): the keyboard must reach it to scroll it
    for (const c of cells(lines[b.start])) inline(hr.appendChild(el('th')), c);
    return { kind: b.kind, el: table, body: table.appendChild(el('tbody')), skip: 2, row: tableRow };
  }
  const list = el(/^\s*\d/.test(lines[b.start]) ? 'ol' : 'ul');
  return { kind: b.kind, el: list, body: list, skip: 0, row: listItem };
}

// The element for block b of lines (null for a blank line).
function build(lines, b) {
  const line = lines[b.start];
  switch (b.kind) {
    case 'code': {
      const pre = el('pre');
      pre.tabIndex = 0; // a long line scrolls in the box (app.css): the keyboard must reach it to scroll it
      pre.appendChild(el('code', lines.slice(b.start + 1, b.body).join('\n')));
      return pre;
    }
    case 'h': { const m = HEADING.exec(line); const h = el('h' + Math.min(6, m[1].length + 2)); inline(h, m[2]); return h; }
    case 'table': case 'list': {
      const g = shell(lines, b);
      for (let j = b.start + g.skip; j < b.end; j++) g.body.appendChild(g.row(lines[j]));
      return g.el;
    }
    case 'blank': return null;
    default: { const p = el('p'); inline(p, lines.slice(b.start, b.end).join(' ')); return p; }
  }
}

const splitLines = text => String(text).replace(/\r\n?/g, '\n').split('\n');

// Render markdown text into a DocumentFragment.
export function render(text) {
  const frag = document.createDocumentFragment();
  const lines = splitLines(text);
  for (let i = 0; i < lines.length;) {
    const b = scan(lines, i), node = build(lines, b);
    if (node) frag.appendChild(node);
    i = b.end;
  }
  return frag;
}

// A markdown text drawn into `box` as it grows: update(text) with each longer
// text, update(text, true) once it is complete. Blocks that more text cannot
// change (all but the last one or two) are committed: drawn once and kept. The
// open rest is redrawn each update, except that an open table or list keeps
// the rows of its complete lines and only appends new ones. A text that does
// not extend the previous one is drawn afresh. Once final, box holds exactly
// what render(text) gives (tests/browser/md_incremental.mjs checks).
export class MdStream {
  constructor(box) { this.box = box; this.reset(); }

  reset() {
    this.box.replaceChildren();
    this.raw = '';      // the text as given
    this.norm = '';     // its line ends normalised; a trailing \r is held back (it may be half of a \r\n)
    this.cr = false;
    this.final = false;
    this.done = 0;      // offset in norm of the first open line (all before it is committed)
    this.open = [];     // the nodes drawn for the open blocks, but grow's
    this.grow = null;   // the first open block, when a table or list whose kind is settled: shell() + rows, prov
  }

  update(text, final = false) {
    text = String(text);
    if (!text.startsWith(this.raw) || (this.final && text !== this.raw)) this.reset();
    let add = (this.cr ? '\r' : '') + text.slice(this.raw.length);
    this.raw = text;
    this.cr = !final && add.endsWith('\r');
    if (this.cr) add = add.slice(0, -1);
    this.norm += add.replace(/\r\n?/g, '\n');
    this.final = final;
    this.draw();
  }

  // Bring grow's rows up to block b: append the rows of complete lines not yet
  // drawn, redraw the row of the last (incomplete) line.
  fill(lines, b, complete) {
    const g = this.grow, first = b.start + g.skip, last = Math.min(b.end, complete);
    if (g.prov) { g.prov.remove(); g.prov = null; }
    for (; first + g.rows < last; g.rows++) g.body.appendChild(g.row(lines[first + g.rows]));
    if (b.end > last) g.prov = g.body.appendChild(g.row(lines[last]));
    return g.el;
  }

  draw() {
    const lines = this.norm.slice(this.done).split('\n');
    const complete = this.final ? Infinity : lines.length - 1; // lines before this one cannot change
    for (const node of this.open) node.remove();
    this.open = [];
    let i = 0;
    for (; i < lines.length; ) { // commit what is settled
      const b = scan(lines, i);
      if (b.dep >= complete) break;
      if (i === 0 && this.grow) this.fill(lines, b, complete); // already in place
      else { const node = build(lines, b); if (node) this.box.appendChild(node); }
      this.grow = null;
      for (; i < b.end; i++) this.done += lines[i].length + 1;
    }
    for (const at = i; i < lines.length; ) { // draw the open rest
      const b = scan(lines, i);
      if (i === at && (this.grow || ((b.kind === 'table' || b.kind === 'list') && b.start + 1 < complete))) {
        // Its first two lines are complete: it stays a table (list) of this head.
        if (!this.grow) { this.grow = Object.assign(shell(lines, b), { rows: 0, prov: null }); this.box.appendChild(this.grow.el); }
        this.fill(lines, b, complete);
      } else {
        const node = build(lines, b);
        if (node) this.open.push(this.box.appendChild(node));
      }
      i = b.end;
    }
  }
}
