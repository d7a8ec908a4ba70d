// #/dashboard: statements per minute, blocked / masked / reviewed per target, who touches
// sensitive tables.
import { h, badge, replaceChildren, localTime } from '../dom';
import { get, query, type Stats } from '../api';
import { loadFailed, loadOk, section, emptyRow } from '../ui';
import { perMinuteChart, targetsChart, sensitiveChart } from '../charts';
import { serial, type Page } from './page';

const RANGES = ['1h', '24h', '7d'] as const;
let range: (typeof RANGES)[number] = '1h';

export function dashboardPage(): Page {
  const perMinute = h('div', { class: 'chart-box' });
  const targets = h('div', { class: 'chart-box' });
  const sensitiveChartBox = h('div', { class: 'chart-box' });
  const sensitiveBody = h('tbody');
  const period = h('span', { class: 'muted', 'data-testid': 'stats-period' });
  const totals = h('div', { class: 'totals', 'data-testid': 'totals' });

  const buttons = RANGES.map((r) => {
    const b = h('button', { type: 'button', class: 'btn btn-seg', 'data-range': r, 'aria-pressed': String(r === range), 'data-testid': `range-${r}` }, r);
    b.addEventListener('click', () => {
      range = r;
      for (const x of buttons) x.setAttribute('aria-pressed', String(x.dataset.range === range));
      void refresh();
    });
    return b;
  });

  const refresh = serial(async () => {
    try {
      const st = await get<Stats>('/api/v1/stats' + query({ since: range }));
      const pm = st.per_minute ?? [];
      const sum = (k: 'statements' | 'blocked' | 'masked' | 'reviewed') => pm.reduce((a, r) => a + (r[k] || 0), 0);
      replaceChildren(totals, (['statements', 'blocked', 'masked', 'reviewed'] as const).map((k) =>
        h('div', { class: `total t-${k}`, 'data-testid': `total-${k}` }, h('span', { class: 'total-num' }, sum(k).toLocaleString()), h('span', { class: 'total-label' }, k))));
      period.textContent = st.since_us && st.until_us ? `${localTime(st.since_us)} – ${localTime(st.until_us)}` : '';
      replaceChildren(perMinute, perMinuteChart(pm, st.since_us, st.until_us));
      replaceChildren(targets, targetsChart(st.targets ?? []));
      const top = st.top_sensitive ?? [];
      replaceChildren(sensitiveChartBox, sensitiveChart(top));
      replaceChildren(sensitiveBody, top.length
        ? top.map((r) => h('tr', { 'data-testid': 'sensitive-row' },
            h('td', null, r.identity), h('td', { class: 'num' }, r.statements.toLocaleString()),
            h('td', null, h('span', { class: 'badges' }, (r.tables ?? []).map((t) => badge(t, 'tag sensitive'))))))
        : emptyRow(3, 'Nobody touched sensitive tables in this period.'));
      loadOk();
    } catch (e) {
      loadFailed(e);
    }
  });

  const el = h('div', { class: 'page page-dashboard' },
    h('div', { class: 'page-head' }, h('h1', null, 'Dashboard'), period, h('span', { class: 'spacer' }),
      h('div', { class: 'seg', role: 'group', 'aria-label': 'Period' }, buttons)),
    totals,
    section('Statements per minute', perMinute),
    section('Per target', targets),
    h('section', { class: 'panel' },
      h('h2', null, 'Top identities touching sensitive tables'),
      sensitiveChartBox,
      h('div', { class: 'table-wrap' },
        h('table', { class: 'grid', 'data-testid': 'top-sensitive' },
          h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Identity'), h('th', { scope: 'col', class: 'num' }, 'Statements'), h('th', { scope: 'col' }, 'Tables'))),
          sensitiveBody))));
  return { el, topics: [], poll: true, refresh };
}
