// #/approvals: statements held for review; #/approvals/{id}: one request (or an access request,
// whose console_url is /approvals/acc_...) with its votes.
import { h, badge, badges, dl, reconcile, replaceChildren, timeEl } from '../dom';
import { get, query, enc, type ApprovalRequest, type AccessRequest } from '../api';
import { loadFailed, loadOk } from '../ui';
import { sqlBlock } from '../highlight';
import { requestCard, requesterAndTarget } from './decide';
import { accessCard } from './access';
import { serial, type Page } from './page';

let showDecided = false;

function params(p: Array<string | null> | undefined): HTMLElement | string {
  if (!p || !p.length) return '';
  return h('ol', { class: 'params', 'data-testid': 'parameters' },
    p.map((v, i) => h('li', null, h('code', null, `$${i + 1}`), ' = ', v === null ? h('span', { class: 'muted' }, 'NULL') : h('code', { class: 'param' }, v))));
}

export function approvalCard(r: ApprovalRequest, onDone: () => void, detail = false): HTMLElement {
  const estimate = r.row_estimate === null || r.row_estimate === undefined ? 'unknown' : r.row_estimate.toLocaleString();
  return requestCard(r, {
    collection: 'approvals', kind: 'approval', testid: 'approval-row',
    title: ['Statement on ', h('strong', null, r.target)],
    badges: [r.waiting ? badge('client waiting', 'info') : null],
    main: [
      dl([
        ...requesterAndTarget(r),
        ['Environment', h('span', { 'data-testid': 'environment' }, r.environment || '—')],
        ['Database', r.database],
        ['Rule', h('code', { 'data-testid': 'rule' }, r.rule)],
        ['Reason', h('span', { 'data-testid': 'reason' }, r.reason)],
        ['Justification', r.justification ? h('span', { 'data-testid': 'justification' }, r.justification) : h('span', { class: 'muted', 'data-testid': 'justification' }, 'none given')],
      ], 'kv kv-compact'),
      sqlBlock(r.statement, 'statement'),
      dl([
        ['Tables', badges(r.tables, 'tag table')],
        ['Sensitive columns', r.sensitive_columns && r.sensitive_columns.length ? h('span', { 'data-testid': 'sensitive-columns' }, badges(r.sensitive_columns, 'tag sensitive')) : ''],
        ['Row estimate', h('span', { 'data-testid': 'row-estimate' }, estimate)],
        ['Parameters', params(r.parameters)],
        ['Reviewers', badges(r.reviewer_groups, 'tag group')],
        ['Decided', r.decided_us ? timeEl(r.decided_us) : ''],
        ['Re-run until', r.rerun_until_us ? timeEl(r.rerun_until_us) : ''],
        ['Closed', r.closed_reason],
        ['Id', h('code', { class: 'id' }, r.id)],
      ], 'kv kv-compact'),
    ],
  }, onDone, detail);
}

export function approvalsPage(): Page {
  const listEl = h('div', { class: 'cards', 'data-testid': 'approvals-list', 'aria-live': 'off' });
  const empty = h('p', { class: 'empty-note', hidden: true, 'data-testid': 'approvals-empty' }, 'No requests are waiting for a decision.');
  const toggle = h('button', { type: 'button', class: 'btn btn-toggle', 'aria-pressed': String(showDecided), 'data-testid': 'show-decided' }, 'Show recent decided');
  const count = h('span', { class: 'muted count' });
  const refresh = serial(async () => {
    try {
      const path = '/api/v1/approvals' + (showDecided ? query({ limit: 50 }) : query({ state: 'pending' }));
      const data = await get<{ approvals: ApprovalRequest[] }>(path);
      const items = data.approvals ?? [];
      reconcile(listEl, items, (r) => r.id, (r) => JSON.stringify(r), (r) => approvalCard(r, () => void refresh()));
      empty.hidden = items.length > 0;
      empty.textContent = showDecided ? 'No requests yet.' : 'No requests are waiting for a decision.';
      count.textContent = showDecided ? `${items.length} most recent` : `${items.length} pending`;
      loadOk();
    } catch (e) {
      loadFailed(e);
    }
  });
  toggle.addEventListener('click', () => {
    showDecided = !showDecided;
    toggle.setAttribute('aria-pressed', String(showDecided));
    void refresh();
  });
  const el = h('div', { class: 'page page-approvals' },
    h('div', { class: 'page-head' }, h('h1', null, 'Approvals'), count, h('span', { class: 'spacer' }), toggle),
    empty, listEl);
  return { el, topics: ['approvals'], poll: true, refresh };
}

export function approvalDetailPage(id: string): Page {
  const body = h('div', { class: 'detail' });
  const isAccess = id.startsWith('acc_');
  const refresh = serial(async () => {
    try {
      if (isAccess) {
        const r = await get<AccessRequest>(`/api/v1/access-requests/${enc(id)}`);
        one(body, r, () => accessCard(r, () => void refresh(), true));
      } else {
        const r = await get<ApprovalRequest>(`/api/v1/approvals/${enc(id)}`);
        one(body, r, () => approvalCard(r, () => void refresh(), true));
      }
      loadOk();
    } catch (e) {
      replaceChildren(body, h('p', { class: 'empty-note' }, `Request ${id} could not be loaded.`));
      loadFailed(e);
    }
  });
  const el = h('div', { class: 'page page-approval' },
    h('p', { class: 'crumbs' }, h('a', { href: isAccess ? '#/access' : '#/approvals' }, isAccess ? '← Access' : '← Approvals')),
    h('h1', null, isAccess ? 'Access request' : 'Approval request'),
    body);
  return { el, topics: [isAccess ? 'access' : 'approvals'], poll: true, refresh };
}

/** Puts the one card of a detail page through reconcile, so focus and drafts are kept. */
function one<T>(container: HTMLElement, item: T, build: () => HTMLElement): void {
  reconcile(container, [item], () => 'one', (x) => JSON.stringify(x), build);
}
