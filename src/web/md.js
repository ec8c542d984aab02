// md.js — a small Markdown renderer, sanitised by construction: it builds DOM
// nodes and only ever assigns model text through textContent / createTextNode.
// Links keep only http(s) URLs; anything else is plain text.
// Covers what the agents write: headings, paragraphs, lists, fenced code,
// tables, **bold**, *em*, `code`, [links](https://…).

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

// Render markdown text into a DocumentFragment.
export function render(text) {
  const frag = document.createDocumentFragment();
  const lines = String(text).replace(/\r\n?/g, '\n').split('\n');
  let i = 0, para = [];
  const flush = () => { if (para.length) { inline(frag.appendChild(el('p')), para.join(' ')); para = []; } };
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if (/^```/.test(line)) {
      flush();
      const body = [];
      i++;
      while (i < lines.length && !/^```/.test(lines[i])) body.push(lines[i++]);
      i++;
      frag.appendChild(el('pre')).appendChild(el('code', body.join('\n')));
    } else if ((m = /^(#{1,6})\s+(.*)$/.exec(line))) {
      flush();
      inline(frag.appendChild(el('h' + Math.min(6, m[1].length + 2))), m[2]);
      i++;
    } else if (line.includes('|') && i + 1 < lines.length && isSep(lines[i + 1])) {
      flush();
      const table = el('table'), thead = table.appendChild(el('thead')), tbody = table.appendChild(el('tbody'));
      const hr = thead.appendChild(el('tr'));
      for (const c of cells(line)) inline(hr.appendChild(el('th')), c);
      i += 2;
      while (i < lines.length && lines[i].includes('|') && lines[i].trim()) {
        const tr = tbody.appendChild(el('tr'));
        for (const c of cells(lines[i])) inline(tr.appendChild(el('td')), c);
        i++;
      }
      frag.appendChild(table);
    } else if (/^\s*([-*+]|\d+[.)])\s+/.test(line)) {
      flush();
      const ordered = /^\s*\d/.test(line);
      const list = el(ordered ? 'ol' : 'ul');
      while (i < lines.length && /^\s*([-*+]|\d+[.)])\s+/.test(lines[i])) {
        inline(list.appendChild(el('li')), lines[i].replace(/^\s*([-*+]|\d+[.)])\s+/, ''));
        i++;
      }
      frag.appendChild(list);
    } else if (!line.trim()) { flush(); i++; }
    else { para.push(line); i++; }
  }
  flush();
  return frag;
}
