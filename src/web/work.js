// work.js — the usage dashboard (GET /api/workloads/summary?group_by=day) drawn as
// our own SVG: cost by model per day (stacked bars), cost by model (bars), latency
// percentiles (grouped bars p50/p95/p99) and error rates.  Text reaches the SVG through textContent only.
const NS = 'http://www.w3.org/2000/svg';
const svgEl = (tag, attrs, text) => {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs || {}) e.setAttribute(k, String(attrs[k]));
  if (text !== undefined) e.textContent = text;
  return e;
};

// A horizontal bar chart: rows [{label, values:[n…]}], series names, unit formatter.
export function barChart(title, rows, series, fmt) {
  const rowH = 18 * series.length + 8, left = 160, width = 560, top = 24;
  const max = Math.max(1e-12, ...rows.flatMap(r => r.values.map(v => v || 0)));
  const svg = svgEl('svg', { class: 'chart', role: 'img', viewBox: `0 0 ${width} ${top + rows.length * rowH + 8}` });
  svg.appendChild(svgEl('title', {}, title));
  svg.appendChild(svgEl('text', { x: 0, y: 14, 'font-weight': 'bold' }, title));
  rows.forEach((r, i) => {
    const y0 = top + i * rowH;
    svg.appendChild(svgEl('text', { x: 0, y: y0 + 13 }, r.label.length > 24 ? r.label.slice(0, 23) + '…' : r.label));
    r.values.forEach((v, j) => {
      const w = Math.max(1, ((v || 0) / max) * (width - left - 90));
      const y = y0 + j * 18;
      svg.appendChild(svgEl('rect', { class: 'bar', x: left, y, width: w, height: 14, opacity: 1 - j * 0.28 }));
      svg.appendChild(svgEl('text', { x: left + w + 4, y: y + 12 },
        (series.length > 1 ? series[j] + ' ' : '') + (v === null || v === undefined ? '–' : fmt(v))));
    });
  });
  return svg;
}

// Cost per UTC day, stacked by model: rows [{date, model, cost_usd, calls}] (by_day of
// ?group_by=day), days (every date of the window, in order) and the models in
// legend order.  Each segment carries a <title> (date, model, cost) for hover and
// screen readers; the colours are classes (app.css), light and dark.
export function stackedDayChart(title, rows, days, models) {
  const left = 56, top = 24, plotH = 160, width = 560, legendH = 16 * Math.ceil(models.length / 2);
  const plotW = width - left - 8, bottom = top + plotH;
  const perDay = new Map(days.map(d => [d, 0]));
  for (const r of rows) perDay.set(r.date, (perDay.get(r.date) || 0) + (r.cost_usd || 0));
  const max = Math.max(1e-12, ...perDay.values());
  const svg = svgEl('svg', { class: 'chart', role: 'img', viewBox: `0 0 ${width} ${bottom + 22 + legendH}` });
  svg.appendChild(svgEl('title', {}, title));
  svg.appendChild(svgEl('text', { x: 0, y: 14, 'font-weight': 'bold' }, title));
  const decimals = max >= 1 ? 2 : Math.min(8, 1 - Math.floor(Math.log10(max))); // two significant digits
  for (const f of [0, 0.5, 1]) {
    const y = bottom - f * plotH;
    svg.appendChild(svgEl('line', { class: 'grid', x1: left, x2: width - 8, y1: y, y2: y }));
    svg.appendChild(svgEl('text', { x: left - 4, y: y + 4, 'text-anchor': 'end' }, '$' + (max * f).toFixed(decimals)));
  }
  const slot = plotW / Math.max(1, days.length), bw = Math.max(1, Math.min(40, slot * 0.8));
  const x = new Map(days.map((d, i) => [d, left + i * slot + (slot - bw) / 2]));
  const base = new Map();
  const order = new Map(models.map((m, i) => [m, i]));
  const sorted = rows.filter(r => x.has(r.date)).sort((a, b) => (order.get(a.model) ?? 99) - (order.get(b.model) ?? 99));
  for (const r of sorted) {
    const h = ((r.cost_usd || 0) / max) * plotH, y0 = base.get(r.date) || 0;
    base.set(r.date, y0 + h);
    const rect = svgEl('rect', { class: 'seg s' + Math.min(8, order.get(r.model) ?? 8), x: x.get(r.date),
      y: bottom - y0 - h, width: bw, height: Math.max(0, h) });
    rect.dataset.date = r.date;
    rect.dataset.model = r.model;
    rect.appendChild(svgEl('title', {}, `${r.date} · ${r.model}: $${(r.cost_usd || 0).toFixed(4)} (${r.calls} calls)`));
    svg.appendChild(rect);
  }
  if (days.length === 1) {
    svg.appendChild(svgEl('text', { x: x.get(days[0]) + bw / 2, y: bottom + 14, 'text-anchor': 'middle' }, days[0]));
  } else if (days.length) {
    svg.appendChild(svgEl('text', { x: left, y: bottom + 14 }, days[0]));
    svg.appendChild(svgEl('text', { x: width - 8, y: bottom + 14, 'text-anchor': 'end' }, days[days.length - 1]));
  }
  models.forEach((m, i) => {
    const lx = (i % 2) * (width / 2), ly = bottom + 26 + Math.floor(i / 2) * 16;
    svg.appendChild(svgEl('rect', { class: 'seg s' + Math.min(8, i), x: lx, y: ly, width: 10, height: 10 }));
    svg.appendChild(svgEl('text', { x: lx + 14, y: ly + 9 }, m.length > 40 ? m.slice(0, 39) + '…' : m));
  });
  return svg;
}

// The same numbers as a table (a text alternative to the chart), folded.
function dayTable(rows) {
  const d = document.createElement('details');
  d.appendChild(document.createElement('summary')).textContent = 'Cost by model per day (table)';
  const t = d.appendChild(document.createElement('table'));
  t.className = 'data';
  const h = t.appendChild(document.createElement('tr'));
  for (const k of ['Date', 'Model', 'Calls', 'Cost (USD)']) h.appendChild(document.createElement('th')).textContent = k;
  for (const r of rows.slice(-500)) {
    const tr = t.appendChild(document.createElement('tr'));
    for (const v of [r.date, r.model, String(r.calls), (r.cost_usd || 0).toFixed(4)]) tr.appendChild(document.createElement('td')).textContent = v;
  }
  return d;
}

// range: {from, to} as YYYY-MM-DD (either may be empty); to is inclusive (the whole day).
export async function renderDashboard(api, root, range = {}) {
  const q = new URLSearchParams({ group_by: 'day' });
  if (range.from) q.set('from', range.from);
  if (range.to) q.set('to', range.to + 'T23:59:59.999Z');
  let s;
  try { s = await api('/api/workloads/summary?' + q); } catch (e) {
    root.textContent = 'Could not load the summary: ' + e.message;
    return;
  }
  root.replaceChildren();
  const t = s.totals || {};
  const p = document.createElement('p');
  p.textContent = `${t.calls || 0} calls · $${(t.cost_usd || 0).toFixed(4)} · error rate ${((t.error_rate || 0) * 100).toFixed(2)} %`;
  root.appendChild(p);
  const models = (s.by_model || []).slice(0, 12);
  if (!models.length) { root.appendChild(document.createTextNode('No workload records yet: upload a file.')); return; }
  const label = m => m.model + (m.provider ? ' (' + m.provider + ')' : '');
  const days = (s.daily || []).map(d => d.date);
  const byDay = s.by_day || [];
  const dayModels = [...new Set(byDay.map(r => r.model))];
  const costOf = new Map();
  for (const r of byDay) costOf.set(r.model, (costOf.get(r.model) || 0) + r.cost_usd);
  dayModels.sort((a, b) => (a === '(other)') - (b === '(other)') || costOf.get(b) - costOf.get(a));
  const chart = stackedDayChart('Cost by model per day (USD)', byDay, days, dayModels);
  chart.id = 'cost-per-day';
  root.append(chart, dayTable(byDay));
  root.appendChild(barChart('Cost by model (USD)', models.map(m => ({ label: label(m), values: [m.cost_usd] })), ['cost'],
    v => '$' + v.toFixed(4)));
  root.appendChild(barChart('Latency percentiles (ms)',
    models.map(m => ({ label: label(m), values: [m.latency_p50_ms, m.latency_p95_ms, m.latency_p99_ms] })),
    ['p50', 'p95', 'p99'], v => Math.round(v) + ' ms'));
  root.appendChild(barChart('Error rate', models.map(m => ({ label: label(m), values: [m.error_rate] })), ['errors'],
    v => (v * 100).toFixed(2) + ' %'));
}
