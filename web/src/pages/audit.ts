// #/audit: the audit trail explorer: filters, results with "load more", a timeline by decision,
// one record's detail, export links and the hash chain's verification status.
import { h, dl, field, replaceChildren, timeEl, truncate, clear, badges } from '../dom';
import { get, query, enc, type AuditRecord, type VerifyStatus } from '../api';
import { act, decisionBadge, loadFailed, loadOk, section, showError, emptyRow } from '../ui';
import { sqlBlock } from '../highlight';
import { timeline } from '../charts';
import { serial, type Page } from './page';

const FILTERS = ['identity', 'group', 'target', 'decision', 'rule', 'table', 'since', 'until', 'text'] as const;
type Filter = (typeof FILTERS)[number];
type Filters = Record<Filter, string>;

const DEFAULTS: Filters = { identity: '', group: '', target: '', decision: '', rule: '', table: '', since: '24h', until: '', text: '' };
const PAGE_SIZE = 100;

let remembered: Filters = { ...DEFAULTS };

function identityOf(r: AuditRecord): string {
  const i = r.identity;
  if (!i) return '';
  return i.email || i.subject || i.display_name || (typeof i.user === 'string' ? i.user : '') || '';
}

function kindsOf(r: AuditRecord): string {
  const out: string[] = [];
  for (const st of r.sql?.statements ?? []) for (const k of st.kinds ?? []) if (!out.includes(k)) out.push(k);
  return out.join(', ');
}

function tablesOf(r: AuditRecord): string[] {
  const out: string[] = [];
  for (const st of r.sql?.statements ?? []) for (const t of st.relations ?? []) if (!out.includes(t)) out.push(t);
  return out;
}

function textOf(r: AuditRecord): string {
  return r.sql?.text ?? (typeof r.message === 'string' ? r.message : '') ?? '';
}

function outcomeOf(r: AuditRecord): string {
  return r.result?.outcome || r.outcome || '';
}

function timeUs(r: AuditRecord): number | null {
  if (typeof r.time_us === 'number') return r.time_us;
  if (typeof r.time === 'string') {
    const ms = Date.parse(r.time);
    if (Number.isFinite(ms)) return ms * 1000;
  }
  return null;
}

function recordKey(r: AuditRecord): string {
  return `${r.node ?? ''}/${r.seq ?? ''}`;
}

export function auditPage(initial: URLSearchParams): Page {
  // Filters from the route (#/audit?decision=deny&since=7d) or those of the last visit.
  const filters: Filters = { ...remembered };
  if ([...initial.keys()].some((k) => (FILTERS as readonly string[]).includes(k))) {
    Object.assign(filters, DEFAULTS);
    for (const k of FILTERS) {
      const v = initial.get(k);
      if (v !== null) filters[k] = v;
    }
  }

  const inputs = {} as Record<Filter, HTMLInputElement | HTMLSelectElement>;
  const mkInput = (name: Filter, placeholder: string) => {
    const el = h('input', { name, type: 'text', value: filters[name], placeholder, autocomplete: 'off', spellcheck: 'false' });
    inputs[name] = el;
    return el;
  };
  const decision = h('select', { name: 'decision' },
    h('option', { value: '' }, 'any'),
    ['allow', 'deny', 'mask', 'review'].map((d) => h('option', { value: d }, d)));
  decision.value = filters.decision;
  inputs.decision = decision;

  const searchBtn = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'audit-search' }, 'Search');
  const resetBtn = h('button', { type: 'button', class: 'btn', 'data-testid': 'audit-reset' }, 'Reset');
  const form = h('form', { class: 'form-grid audit-form', 'data-testid': 'audit-form', role: 'search' },
    field('Identity', mkInput('identity', '*@example.com')),
    field('Group', mkInput('group', 'analysts')),
    field('Target', mkInput('target', 'prod')),
    field('Decision', decision),
    field('Rule', mkInput('rule', 'rule name')),
    field('Table', mkInput('table', 'public.orders')),
    field('Since', mkInput('since', '24h, 7d, 2026-01-02')),
    field('Until', mkInput('until', 'now')),
    h('div', { class: 'field field-wide' }, field('Text', mkInput('text', 'statement or message contains'))),
    h('div', { class: 'form-actions' }, searchBtn, resetBtn));

  const csv = h('a', { 'data-testid': 'export-csv', class: 'btn btn-small', download: 'gatehouse-audit.csv', href: '#' }, 'Export CSV');
  const jsonLink = h('a', { 'data-testid': 'export-json', class: 'btn btn-small', download: 'gatehouse-audit.json', href: '#' }, 'Export JSON');

  const verifyText = h('span', { 'data-testid': 'verify-status', class: 'verify-text' }, 'Checking the hash chain…');
  const verifyWhen = h('span', { class: 'muted small' });
  const verifyBtn = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'verify-again' }, 'Check again');
  const verifyBox = h('div', { class: 'verify', 'data-testid': 'verify' }, verifyText, verifyWhen, verifyBtn);

  const timelineBox = h('div', { class: 'chart-box' });
  const tbody = h('tbody');
  const summary = h('span', { class: 'muted', 'data-testid': 'audit-count' });
  const more = h('button', { type: 'button', class: 'btn', 'data-testid': 'audit-more', hidden: true }, 'Load more');
  const detail = h('div', { class: 'audit-detail-box' });

  let records: AuditRecord[] = [];
  let cursor: string | null = null;
  let applied: Filters = { ...filters };
  let selected = '';
  let generation = 0;

  const readForm = (): Filters => {
    const f = { ...DEFAULTS };
    for (const k of FILTERS) f[k] = inputs[k].value.trim();
    return f;
  };

  const filterQuery = (f: Filters) => {
    const q: Record<string, string> = {};
    for (const k of FILTERS) if (f[k]) q[k] = f[k];
    return q;
  };

  const updateExports = () => {
    csv.href = '/api/v1/audit/export' + query({ format: 'csv', ...filterQuery(applied) });
    jsonLink.href = '/api/v1/audit/export' + query({ format: 'json', ...filterQuery(applied) });
  };

  const drawTimeline = () => {
    const pts: Array<{ time_us: number; decision: string }> = [];
    for (const r of records) {
      const t = timeUs(r);
      if (t !== null) pts.push({ time_us: t, decision: r.sql?.decision?.action ?? '' });
    }
    replaceChildren(timelineBox, timeline(pts));
  };

  const showDetail = async (r: AuditRecord, row: HTMLElement) => {
    const key = recordKey(r);
    selected = key;
    tbody.querySelectorAll('tr.is-selected').forEach((x) => {
      x.classList.remove('is-selected');
      x.setAttribute('aria-selected', 'false');
    });
    row.classList.add('is-selected');
    row.setAttribute('aria-selected', 'true');
    layout.classList.add('has-detail');
    replaceChildren(detail, h('p', { class: 'panel muted' }, 'Loading the record…'));
    try {
      const data = await get<{ record: AuditRecord }>(`/api/v1/audit/records/${enc(String(r.node ?? ''))}/${enc(String(r.seq ?? ''))}`);
      if (selected !== key) return;
      renderDetail(data.record ?? r);
    } catch (e) {
      if (selected !== key) return;
      clear(detail);
      layout.classList.remove('has-detail');
      showError(e);
    }
  };

  const renderDetail = (r: AuditRecord) => {
    const decisionAction = r.sql?.decision?.action;
    const tags = r.sql?.tags ?? [];
    const tables = tablesOf(r);
    const res = r.result;
    const close = h('button', { type: 'button', class: 'link-button', 'data-testid': 'audit-detail-close' }, 'Close');
    close.addEventListener('click', () => {
      selected = '';
      clear(detail);
      layout.classList.remove('has-detail');
      tbody.querySelectorAll('tr.is-selected').forEach((x) => x.classList.remove('is-selected'));
    });
    const text = r.sql?.text;
    replaceChildren(detail,
      h('div', { class: 'panel audit-detail', 'data-testid': 'audit-detail', tabindex: -1 },
        h('div', { class: 'detail-head' }, h('h2', null, `Record ${r.node ?? ''} #${r.seq ?? ''}`), h('span', { class: 'spacer' }), close),
        dl([
          ['Time', timeEl(timeUs(r))],
          ['Type', r.type ?? ''],
          ['Identity', identityOf(r)],
          ['Groups', r.identity?.groups?.length ? r.identity.groups.join(', ') : ''],
          ['Client', r.client ?? ''],
          ['Target', [r.target ?? '', r.environment ? ` (${r.environment})` : ''].join('')],
          ['Database', r.database ?? ''],
          ['Session', r.session ? `${r.session}${r.statement ? ` / statement ${r.statement}` : ''}` : ''],
          ['Kind', kindsOf(r)],
          ['Tables', tables.join(', ')],
          ['Tags', badges(tags, 'tag sensitive')],
          ['Decision', decisionAction ? h('span', null, decisionBadge(decisionAction), r.sql?.decision?.rule ? [' rule ', h('code', null, r.sql.decision.rule)] : '') : ''],
          ['Outcome', [outcomeOf(r), res?.sqlstate || r.sqlstate ? ` (${res?.sqlstate || r.sqlstate})` : ''].join('')],
          ['Rows', res?.rows ?? r.rows ?? ''],
          ['Duration', (res?.duration_us ?? r.duration_us) !== undefined ? `${(((res?.duration_us ?? r.duration_us) as number) / 1000).toFixed(1)} ms` : ''],
          ['Message', !text ? (r.message as string | undefined) ?? '' : res?.message && res.message !== text ? res.message : ''],
          ['Hash', r.hash ? h('code', { class: 'hash' }, r.hash) : ''],
        ]),
        text ? sqlBlock(text, 'audit-statement') : null,
        h('details', { class: 'raw', open: true },
          h('summary', null, 'Full record (JSON)'),
          h('pre', { class: 'json', 'data-testid': 'audit-json' }, JSON.stringify(r, null, 2)))));
    layout.classList.add('has-detail');
  };

  const row = (r: AuditRecord): HTMLTableRowElement => {
    const key = recordKey(r);
    const tr = h('tr', {
      'data-testid': 'audit-row', 'data-node': r.node ?? '', 'data-seq': String(r.seq ?? ''), tabindex: 0,
      class: key === selected ? 'clickable is-selected' : 'clickable', 'aria-selected': String(key === selected),
      'aria-label': `Record ${r.node ?? ''} ${r.seq ?? ''}, ${r.type ?? ''} by ${identityOf(r) || 'nobody'}; open the detail`,
    },
      h('td', { class: 'nowrap' }, timeEl(timeUs(r))),
      h('td', null, identityOf(r)),
      h('td', null, r.target ?? ''),
      h('td', null, r.type ?? ''),
      h('td', null, kindsOf(r)),
      h('td', null, decisionBadge(r.sql?.decision?.action)),
      h('td', null, r.sql?.decision?.rule ? h('code', null, r.sql.decision.rule) : ''),
      h('td', { class: 'excerpt' }, h('code', { title: truncate(textOf(r), 300) }, truncate(textOf(r), 2000))),
      h('td', null, outcomeOf(r)));
    tr.addEventListener('click', () => void showDetail(r, tr));
    tr.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' || ev.key === ' ') {
        ev.preventDefault();
        void showDetail(r, tr);
      }
    });
    return tr;
  };

  const renderRows = (append: AuditRecord[] | null) => {
    if (append === null) {
      clear(tbody);
      for (const r of records) tbody.append(row(r));
    } else {
      tbody.querySelector('tr.empty')?.remove();
      for (const r of append) tbody.append(row(r));
    }
    if (!records.length) tbody.append(emptyRow(9, 'No records match.'));
    summary.textContent = `${records.length} record${records.length === 1 ? '' : 's'}${cursor ? ' (more available)' : ''}`;
    more.hidden = !cursor;
    drawTimeline();
  };

  const search = async (f: Filters) => {
    const gen = ++generation;
    applied = f;
    remembered = { ...f };
    updateExports();
    const q = filterQuery(f);
    const hash = '#/audit' + query(q);
    if (location.hash !== hash) history.replaceState(null, '', hash);
    summary.textContent = 'Searching…';
    try {
      const data = await get<{ records: AuditRecord[]; next_cursor: string | null }>('/api/v1/audit' + query({ ...q, limit: PAGE_SIZE }));
      if (gen !== generation) return;
      records = data.records ?? [];
      cursor = data.next_cursor ?? null;
      renderRows(null);
      loadOk();
    } catch (e) {
      if (gen !== generation) return;
      records = [];
      cursor = null;
      renderRows(null);
      summary.textContent = 'The search failed.';
      loadFailed(e);
    }
  };

  const verify = async () => {
    verifyBox.classList.remove('ok', 'broken');
    verifyText.textContent = 'Checking the hash chain…';
    try {
      const v = await get<VerifyStatus>('/api/v1/audit/verify');
      verifyBox.classList.add(v.ok ? 'ok' : 'broken');
      verifyText.textContent = v.ok ? `Chain verified: ${v.records} records` : `Chain BROKEN: ${v.message || 'verification failed'}`;
      replaceChildren(verifyWhen, v.checked_us ? ['checked ', timeEl(v.checked_us)] : '',
        v.ok && v.message ? ` · ${v.message}` : '');
    } catch (e) {
      verifyBox.classList.add('broken');
      verifyText.textContent = `Chain status unknown: ${e instanceof Error ? e.message : String(e)}`;
      clear(verifyWhen);
    }
  };

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    searchBtn.disabled = true;
    void search(readForm()).finally(() => {
      searchBtn.disabled = false;
    });
  });
  resetBtn.addEventListener('click', () => {
    for (const k of FILTERS) inputs[k].value = DEFAULTS[k];
    void search(readForm());
  });
  more.addEventListener('click', () => {
    if (!cursor) return;
    const gen = generation;
    void act(more, async () => {
      const data = await get<{ records: AuditRecord[]; next_cursor: string | null }>(
        '/api/v1/audit' + query({ ...filterQuery(applied), limit: PAGE_SIZE, cursor }));
      if (gen !== generation) return;
      const page = data.records ?? [];
      records = records.concat(page);
      cursor = data.next_cursor ?? null;
      renderRows(page);
    });
  });
  verifyBtn.addEventListener('click', () => {
    verifyBtn.disabled = true;
    void verify().finally(() => {
      verifyBtn.disabled = false;
    });
  });

  updateExports();
  const layout = h('div', { class: 'audit-layout' },
    h('section', { class: 'panel audit-results' },
      h('div', { class: 'panel-head' }, h('h2', null, 'Records'), summary, h('span', { class: 'spacer' }), csv, jsonLink),
      timelineBox,
      h('div', { class: 'table-wrap' },
        h('table', { class: 'grid audit', 'data-testid': 'audit-table' },
          h('thead', null, h('tr', null,
            ['Time', 'Identity', 'Target', 'Type', 'Kind', 'Decision', 'Rule', 'Statement', 'Outcome'].map((c) => h('th', { scope: 'col' }, c)))),
          tbody)),
      h('div', { class: 'more' }, more)),
    detail);
  const el = h('div', { class: 'page page-audit' },
    h('div', { class: 'page-head' }, h('h1', null, 'Audit'), h('span', { class: 'spacer' }), verifyBox),
    section('Filters', form),
    layout);

  let first = true;
  const refresh = serial(async () => {
    // Only the first load searches on its own: later searches are the user's.
    if (!first) return;
    first = false;
    await Promise.all([search(applied), verify()]);
  });
  return { el, topics: [], poll: false, refresh };
}
