// work.js — the usage dashboard (GET /api/workloads/summary) drawn as our own
// SVG: cost by model (bars), latency percentiles (grouped bars p50/p95/p99) and
// error rates.  Text reaches the SVG through textContent only.
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

export async function renderDashboard(api, root) {
  let s;
  try { s = await api('/api/workloads/summary'); } catch (e) {
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
  root.appendChild(barChart('Cost by model (USD)', models.map(m => ({ label: label(m), values: [m.cost_usd] })), ['cost'],
    v => '$' + v.toFixed(4)));
  root.appendChild(barChart('Latency percentiles (ms)',
    models.map(m => ({ label: label(m), values: [m.latency_p50_ms, m.latency_p95_ms, m.latency_p99_ms] })),
    ['p50', 'p95', 'p99'], v => Math.round(v) + ' ms'));
  root.appendChild(barChart('Error rate', models.map(m => ({ label: label(m), values: [m.error_rate] })), ['errors'],
    v => (v * 100).toFixed(2) + ' %'));
}
