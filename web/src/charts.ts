// Charts drawn as SVG with DOM calls (no chart library, nothing inline: colours come from
// classes in style.css). Every bar carries a <title> so hovering or a screen reader tells its
// numbers.
import { s, usToDate } from './dom';

const W = 960;

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmtNum(n: number): string {
  if (n >= 1e6) return `${+(n / 1e6).toFixed(1)}M`;
  if (n >= 1e4) return `${+(n / 1e3).toFixed(1)}k`;
  return String(Math.round(n * 100) / 100);
}

function timeLabel(us: number, spanUs: number): string {
  const d = usToDate(us);
  const hm = d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
  if (spanUs <= 36 * 3600e6) return hm;
  return `${d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' })} ${hm}`;
}

function frame(testid: string, height: number, label: string): SVGSVGElement {
  return s('svg', {
    'data-testid': testid, viewBox: `0 0 ${W} ${height}`, class: 'chart', role: 'img', 'aria-label': label,
    preserveAspectRatio: 'xMidYMid meet',
  }, s('title', null, label));
}

function noData(svg: SVGSVGElement, height: number, text = 'No data for this period'): SVGSVGElement {
  svg.append(s('text', { x: W / 2, y: height / 2, class: 'chart-empty', 'text-anchor': 'middle' }, text));
  return svg;
}

interface Plot {
  left: number;
  right: number;
  top: number;
  bottom: number;
}

function yAxis(svg: SVGSVGElement, p: Plot, max: number): (v: number) => number {
  const y = (v: number) => p.bottom - (v / max) * (p.bottom - p.top);
  const g = s('g', { class: 'axis axis-y' });
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    const yy = y(v);
    g.append(
      s('line', { x1: p.left, x2: p.right, y1: yy, y2: yy, class: i === 0 ? 'axis-line' : 'grid-line' }),
      s('text', { x: p.left - 6, y: yy + 4, 'text-anchor': 'end' }, fmtNum(v)));
  }
  svg.append(g);
  return y;
}

function timeAxis(svg: SVGSVGElement, p: Plot, from: number, to: number): void {
  const g = s('g', { class: 'axis axis-x' });
  const span = Math.max(1, to - from);
  const n = 6;
  for (let i = 0; i <= n; i++) {
    const t = from + (span * i) / n;
    const x = p.left + ((p.right - p.left) * i) / n;
    g.append(
      s('line', { x1: x, x2: x, y1: p.bottom, y2: p.bottom + 4, class: 'axis-line' }),
      s('text', { x, y: p.bottom + 18, 'text-anchor': i === 0 ? 'start' : i === n ? 'end' : 'middle' }, timeLabel(t, span)));
  }
  svg.append(g);
}

function legend(svg: SVGSVGElement, items: Array<[string, string]>, x: number, y: number, line = new Set<string>()): void {
  const g = s('g', { class: 'legend' });
  let xx = x;
  for (const [label, cls] of items) {
    if (line.has(cls)) g.append(s('line', { x1: xx, x2: xx + 14, y1: y - 4, y2: y - 4, class: `series-line ${cls}` }));
    else g.append(s('rect', { x: xx, y: y - 10, width: 12, height: 12, rx: 2, class: `fill ${cls}` }));
    g.append(s('text', { x: xx + 18, y }, label));
    xx += 30 + label.length * 8;
  }
  svg.append(g);
}

// ---- audit timeline ----------------------------------------------------------------------

export const DECISIONS = ['allow', 'mask', 'review', 'deny', 'none'] as const;
export type DecisionKey = (typeof DECISIONS)[number];

/** Records per time bucket, stacked by decision ("none": records without one, logins...). */
export function timeline(points: Array<{ time_us: number; decision: string }>): SVGSVGElement {
  const H = 170;
  const svg = frame('timeline', H, `Timeline of ${points.length} records by decision`);
  if (!points.length) return noData(svg, H, 'No records');
  let from = Math.min(...points.map((p) => p.time_us));
  let to = Math.max(...points.map((p) => p.time_us));
  if (to - from < 60e6) {
    const mid = (from + to) / 2;
    from = mid - 30e6;
    to = mid + 30e6;
  }
  const n = 48;
  const width = (to - from) / n;
  const buckets = Array.from({ length: n }, () => ({ allow: 0, mask: 0, review: 0, deny: 0, none: 0 } as Record<DecisionKey, number>));
  for (const p of points) {
    const i = Math.min(n - 1, Math.max(0, Math.floor((p.time_us - from) / width)));
    const k: DecisionKey = (DECISIONS as readonly string[]).includes(p.decision) ? (p.decision as DecisionKey) : 'none';
    buckets[i][k] += 1;
  }
  const p: Plot = { left: 48, right: W - 12, top: 26, bottom: H - 28 };
  const max = niceMax(Math.max(...buckets.map((b) => DECISIONS.reduce((a, k) => a + b[k], 0))));
  const y = yAxis(svg, p, max);
  const bw = (p.right - p.left) / n;
  const bars = s('g', { class: 'bars' });
  buckets.forEach((b, i) => {
    let base = 0;
    const total = DECISIONS.reduce((a, k) => a + b[k], 0);
    if (!total) return;
    const t0 = from + i * width;
    const tip = `${timeLabel(t0, to - from)}–${timeLabel(t0 + width, to - from)}: ${total} record${total === 1 ? '' : 's'}` +
      DECISIONS.filter((k) => b[k]).map((k) => `, ${k} ${b[k]}`).join('');
    for (const k of DECISIONS) {
      if (!b[k]) continue;
      const y1 = y(base + b[k]);
      const y0 = y(base);
      bars.append(s('rect', { x: p.left + i * bw + 1, y: y1, width: Math.max(1, bw - 2), height: Math.max(1, y0 - y1), class: `fill d-${k}` }, s('title', null, tip)));
      base += b[k];
    }
  });
  svg.append(bars);
  timeAxis(svg, p, from, to);
  legend(svg, DECISIONS.map((k) => [k === 'none' ? 'no decision' : k, `d-${k}`]), p.left, 16);
  return svg;
}

// ---- dashboard ---------------------------------------------------------------------------

export interface MinuteRow {
  minute_us: number;
  statements: number;
  blocked: number;
  masked: number;
  reviewed: number;
}

const SERIES: Array<[keyof Omit<MinuteRow, 'minute_us'>, string]> = [
  ['statements', 'statements'], ['blocked', 'blocked'], ['masked', 'masked'], ['reviewed', 'reviewed'],
];

/** Statements per minute as bars, blocked / masked / reviewed as lines over them. */
export function perMinuteChart(rows: MinuteRow[], sinceUs: number, untilUs: number): SVGSVGElement {
  const H = 260;
  const svg = frame('chart-per-minute', H, 'Statements, blocked, masked and reviewed per minute');
  const from = sinceUs || (rows.length ? Math.min(...rows.map((r) => r.minute_us)) : 0);
  const to = untilUs || (rows.length ? Math.max(...rows.map((r) => r.minute_us)) + 60e6 : 0);
  if (!rows.length || to <= from) return noData(svg, H);
  const minutes = Math.max(1, Math.ceil((to - from) / 60e6));
  const per = Math.max(1, Math.ceil(minutes / 120)); // minutes per bucket
  const n = Math.ceil(minutes / per);
  const bucketUs = per * 60e6;
  const b = Array.from({ length: n }, () => ({ statements: 0, blocked: 0, masked: 0, reviewed: 0 }));
  for (const r of rows) {
    const i = Math.floor((r.minute_us - from) / bucketUs);
    if (i < 0 || i >= n) continue;
    b[i].statements += r.statements;
    b[i].blocked += r.blocked;
    b[i].masked += r.masked;
    b[i].reviewed += r.reviewed;
  }
  // Per minute: a bucket of several minutes shows its average.
  const avg = b.map((x) => ({ statements: x.statements / per, blocked: x.blocked / per, masked: x.masked / per, reviewed: x.reviewed / per }));
  const p: Plot = { left: 52, right: W - 12, top: 30, bottom: H - 28 };
  const max = niceMax(Math.max(1, ...avg.map((x) => Math.max(x.statements, x.blocked, x.masked, x.reviewed))));
  const y = yAxis(svg, p, max);
  const bw = (p.right - p.left) / n;
  const bars = s('g', { class: 'bars' });
  avg.forEach((x, i) => {
    const t = from + i * bucketUs;
    const tip = `${timeLabel(t, to - from)}${per > 1 ? ` (${per} min, per minute)` : ''}: ${fmtNum(x.statements)} statements, ` +
      `${fmtNum(x.blocked)} blocked, ${fmtNum(x.masked)} masked, ${fmtNum(x.reviewed)} reviewed`;
    const yy = y(x.statements);
    bars.append(s('rect', { x: p.left + i * bw + (bw > 4 ? 1 : 0), y: yy, width: Math.max(0.5, bw - (bw > 4 ? 2 : 0)), height: Math.max(0, p.bottom - yy), class: 'fill s-statements' },
      s('title', null, tip)));
  });
  svg.append(bars);
  for (const [key, cls] of SERIES.slice(1)) {
    const pts = avg.map((x, i) => `${(p.left + (i + 0.5) * bw).toFixed(1)},${y(x[key]).toFixed(1)}`).join(' ');
    svg.append(s('polyline', { points: pts, class: `series-line s-${cls}` }));
  }
  timeAxis(svg, p, from, to);
  legend(svg, SERIES.map(([k, c]) => [k, `s-${c}`]), p.left, 18, new Set(['s-blocked', 's-masked', 's-reviewed']));
  svg.append(s('text', { x: p.right, y: 18, 'text-anchor': 'end', class: 'chart-note' }, per > 1 ? `per minute, averaged over ${per} min` : 'per minute'));
  return svg;
}

/** Grouped bars per target: statements, blocked, masked, reviewed. */
export function targetsChart(targets: Array<{ target: string; statements: number; blocked: number; masked: number; reviewed: number }>): SVGSVGElement {
  const H = 260;
  const svg = frame('chart-targets', H, 'Statements, blocked, masked and reviewed per target');
  if (!targets.length) return noData(svg, H);
  const shown = targets.slice(0, 16);
  const p: Plot = { left: 52, right: W - 12, top: 30, bottom: H - 32 };
  const max = niceMax(Math.max(1, ...shown.map((t) => Math.max(t.statements, t.blocked, t.masked, t.reviewed))));
  const y = yAxis(svg, p, max);
  const gw = (p.right - p.left) / shown.length;
  const inner = Math.min(gw * 0.8, 160);
  const bw = inner / SERIES.length;
  const g = s('g', { class: 'bars' });
  shown.forEach((t, i) => {
    const gx = p.left + i * gw + (gw - inner) / 2;
    SERIES.forEach(([k, cls], j) => {
      const v = t[k];
      const yy = y(v);
      g.append(s('rect', { x: gx + j * bw, y: yy, width: Math.max(1, bw - 2), height: Math.max(v > 0 ? 1 : 0, p.bottom - yy), class: `fill s-${cls}` },
        s('title', null, `${t.target}: ${v} ${k}`)));
    });
    g.append(s('text', { x: p.left + i * gw + gw / 2, y: p.bottom + 18, 'text-anchor': 'middle', class: 'axis-label' },
      t.target.length > 18 ? t.target.slice(0, 17) + '…' : t.target));
  });
  svg.append(g);
  legend(svg, SERIES.map(([k, c]) => [k, `s-${c}`]), p.left, 18);
  return svg;
}

/** Horizontal bars: statements on sensitive tables per identity. */
export function sensitiveChart(rows: Array<{ identity: string; statements: number }>): SVGSVGElement {
  const shown = rows.slice(0, 10);
  const rowH = 26;
  const H = Math.max(60, shown.length * rowH + 20);
  const svg = frame('chart-sensitive', H, 'Statements touching sensitive tables per identity');
  if (!shown.length) return noData(svg, H, 'Nobody touched sensitive tables');
  const left = 260;
  const right = W - 70;
  const max = niceMax(Math.max(1, ...shown.map((r) => r.statements)));
  const g = s('g', { class: 'bars' });
  shown.forEach((r, i) => {
    const yy = 10 + i * rowH;
    const w = ((right - left) * r.statements) / max;
    g.append(
      s('text', { x: left - 8, y: yy + 15, 'text-anchor': 'end', class: 'axis-label' }, r.identity.length > 36 ? r.identity.slice(0, 35) + '…' : r.identity),
      s('rect', { x: left, y: yy + 3, width: Math.max(1, w), height: rowH - 8, rx: 2, class: 'fill s-sensitive' }, s('title', null, `${r.identity}: ${r.statements} statements`)),
      s('text', { x: left + w + 6, y: yy + 15, class: 'axis-label' }, fmtNum(r.statements)));
  });
  svg.append(g);
  return svg;
}
