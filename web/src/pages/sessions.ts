// #/sessions: client sessions through the proxy now; admins can end one.
import { h, badge, reconcile, timeEl, truncate } from '../dom';
import { get, post, enc, type ProxySession } from '../api';
import { hasRole, loadFailed, loadOk, personEl, showStatus, stateBadge, emptyRow } from '../ui';
import { sqlBlock } from '../highlight';
import { reasonAction } from './decide';
import { serial, type Page } from './page';

const end = reasonAction({
  testids: { open: 'end-session', reason: 'end-reason', confirm: 'confirm-end', cancel: 'cancel-end' },
  open: 'End…', label: 'Reason', placeholder: 'Told to the client', confirm: 'End session',
  missing: 'Give a reason for ending the session (the client is told).',
});
const STATEMENT_SHOWN = 1000; // the cell shows the first lines (CSS); the row keeps this much text

function tlsText(tls: boolean | string): string {
  if (tls === true) return 'yes';
  if (tls === false || tls === '' || tls === null || tls === undefined) return 'no';
  return String(tls);
}

function sessionRow(s: ProxySession, onDone: () => void): HTMLTableRowElement {
  const id = String(s.id);
  const actions = hasRole('admin')
    ? end.controls(id,
        async (reason) => {
          await post(`/api/v1/sessions/${enc(id)}/end`, { reason });
        },
        () => {
          showStatus(`Ended session ${id} of ${s.display_name || s.email || s.subject}.`);
          onDone();
        })
    : null;
  const stmt = s.statement
    ? h('div', { class: 'stmt-cell' },
        sqlBlock(s.statement.length > STATEMENT_SHOWN ? truncate(s.statement, STATEMENT_SHOWN) : s.statement, 'session-statement', 'sql-small'),
        s.statement_started_us ? h('div', { class: 'muted small' }, 'running since ', timeEl(s.statement_started_us)) : null)
    : h('span', { class: 'muted' }, '—');
  return h('tr', { 'data-testid': 'session-row', 'data-id': id },
    h('td', null, personEl(s, 'identity'), s.groups?.length ? h('div', { class: 'muted small' }, s.groups.join(', ')) : null),
    h('td', { 'data-testid': 'target' }, s.target),
    h('td', null, s.database),
    h('td', null, h('code', null, s.client)),
    h('td', null, s.application_name || h('span', { class: 'muted' }, '—')),
    h('td', null, badge(tlsText(s.tls), s.tls === false ? 'warn' : 'tag')),
    h('td', null, timeEl(s.started_us, 'since')),
    h('td', null, stateBadge(s.state)),
    h('td', { class: 'stmt-col' }, stmt),
    hasRole('admin') ? h('td', null, actions) : null);
}

export function sessionsPage(): Page {
  const admin = hasRole('admin');
  const body = h('tbody');
  const count = h('span', { class: 'muted count' });
  const cols = ['Identity', 'Target', 'Database', 'Client', 'Application', 'TLS', 'Since', 'State', 'Statement now running'];
  if (admin) cols.push('');
  const refresh = serial(async () => {
    try {
      const data = await get<{ sessions: ProxySession[] }>('/api/v1/sessions');
      const items = data.sessions ?? [];
      reconcile(body, items, (x) => String(x.id), (x) => JSON.stringify(x) + end.isOpen(String(x.id)), (x) => sessionRow(x, () => void refresh()));
      if (!items.length) body.append(emptyRow(cols.length, 'No client sessions are connected.'));
      count.textContent = `${items.length} connected`;
      loadOk();
    } catch (e) {
      loadFailed(e);
    }
  });
  const el = h('div', { class: 'page page-sessions' },
    h('div', { class: 'page-head' }, h('h1', null, 'Sessions'), count),
    h('div', { class: 'table-wrap' },
      h('table', { class: 'grid sessions', 'data-testid': 'sessions-table' },
        h('thead', null, h('tr', null, cols.map((c) => h('th', { scope: 'col' }, c)))),
        body)));
  return { el, topics: ['sessions'], poll: true, refresh };
}
