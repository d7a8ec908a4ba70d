// #/access: ask for a role on a target for a while; pending access requests (reviewers decide);
// grants in force with their expiry counting down; revoke.
import { h, badge, badges, dl, field, reconcile, timeEl, expiresText } from '../dom';
import { get, post, enc, type AccessRequest } from '../api';
import { act, hasRole, isOwn, loadFailed, loadOk, personEl, showError, showStatus, section, emptyRow } from '../ui';
import { reasonAction, requestCard, requesterAndTarget } from './decide';
import { serial, type Page } from './page';

export function accessCard(r: AccessRequest, onDone: () => void, detail = false): HTMLElement {
  return requestCard(r, {
    collection: 'access-requests', kind: 'access', testid: 'access-row',
    title: [h('strong', null, r.role), ' on ', h('strong', null, r.target)],
    badges: [r.active ? badge('active', 'state state-active') : null],
    main: [
      dl([
        ...requesterAndTarget(r),
        ['Role', h('span', { 'data-testid': 'role' }, r.role)],
        ['Duration', h('span', { 'data-testid': 'duration' }, r.duration)],
        ['Reason', h('span', { 'data-testid': 'reason' }, r.reason)],
        ['Reviewers', badges(r.reviewer_groups, 'tag group')],
        ['Decided', r.decided_us ? timeEl(r.decided_us) : ''],
        ['Expires', r.expires_us ? h('span', null, timeEl(r.expires_us), ' ', h('span', { 'data-expires-us': String(r.expires_us), class: 'countdown' }, expiresText(r.expires_us))) : ''],
        ['Revoked', r.revoked_us ? h('span', null, timeEl(r.revoked_us), ` by ${r.revoked_by}: ${r.revoke_reason}`) : ''],
        ['Id', h('code', { class: 'id' }, r.id)],
      ]),
    ],
  }, onDone, detail);
}

const revoke = reasonAction({
  testids: { open: 'revoke', reason: 'revoke-reason', confirm: 'confirm-revoke', cancel: 'cancel-revoke' },
  open: 'Revoke…', label: 'Reason for revoking', placeholder: 'Why (required)', confirm: 'Revoke now',
  missing: 'Give a reason to revoke the grant.',
});

function grantRow(g: AccessRequest, onDone: () => void): HTMLTableRowElement {
  const mayRevoke = hasRole('admin') || isOwn(g.requester) || !hasRole('reviewer', 'auditor');
  const actions = mayRevoke
    ? revoke.controls(g.id,
        async (reason) => {
          await post(`/api/v1/grants/${enc(g.id)}/revoke`, { reason });
        },
        () => {
          showStatus(`Revoked ${g.role} on ${g.target}.`);
          onDone();
        })
    : null;
  return h('tr', { 'data-testid': 'grant-row', 'data-id': g.id },
    h('td', null, h('strong', { 'data-testid': 'role' }, g.role)),
    h('td', { 'data-testid': 'target' }, g.target),
    h('td', null, personEl(g.requester, 'holder')),
    h('td', null, timeEl(g.decided_us)),
    h('td', null,
      g.expires_us
        ? h('span', { 'data-testid': 'expires-in', 'data-expires-us': String(g.expires_us), class: 'countdown' }, expiresText(g.expires_us))
        : h('span', { 'data-testid': 'expires-in' }, '—'),
      h('div', { class: 'muted small' }, g.expires_us ? timeEl(g.expires_us) : '')),
    h('td', null, h('span', { class: 'clip' }, g.reason)),
    h('td', null, actions));
}

export function accessPage(): Page {
  const target = h('input', { name: 'target', type: 'text', required: true, autocomplete: 'off', placeholder: 'prod' });
  const role = h('input', { name: 'role', type: 'text', required: true, autocomplete: 'off', placeholder: 'read_write' });
  const duration = h('input', { name: 'duration', type: 'text', value: '1h', autocomplete: 'off', pattern: '\\s*([0-9]+[smhd]?)+\\s*', placeholder: '1h' });
  const reason = h('textarea', { name: 'reason', required: true, rows: 2, maxlength: 4000, placeholder: 'What for (ticket, task)' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'request-access' }, 'Request access');
  const form = h('form', { class: 'form-grid access-form', 'data-testid': 'access-form', novalidate: true },
    field('Target', target), field('Role', role), field('Duration', duration, 'e.g. 30m, 1h, 1h30m, 2d'),
    h('div', { class: 'field field-wide' }, field('Reason', reason)),
    h('div', { class: 'form-actions' }, submit));

  const pendingList = h('div', { class: 'cards', 'data-testid': 'access-list' });
  const pendingEmpty = h('p', { class: 'empty-note', hidden: true }, 'No access requests are waiting.');
  const grantsBody = h('tbody', { 'data-testid': 'grants' });

  const refresh = serial(async () => {
    try {
      const [reqs, grants] = await Promise.all([
        get<{ access_requests: AccessRequest[] }>('/api/v1/access-requests?state=pending'),
        get<{ grants: AccessRequest[] }>('/api/v1/grants'),
      ]);
      const pending = reqs.access_requests ?? [];
      reconcile(pendingList, pending, (r) => r.id, (r) => JSON.stringify(r), (r) => accessCard(r, () => void refresh()));
      pendingEmpty.hidden = pending.length > 0;
      const gs = grants.grants ?? [];
      reconcile(grantsBody, gs, (g) => g.id, (g) => JSON.stringify(g) + revoke.isOpen(g.id), (g) => grantRow(g, () => void refresh()));
      if (!gs.length) grantsBody.append(emptyRow(7, 'No grants are in force.'));
      loadOk();
    } catch (e) {
      loadFailed(e);
    }
  });

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const body: Record<string, string> = { target: target.value.trim(), role: role.value.trim(), reason: reason.value.trim() };
    const missing = (['target', 'role', 'reason'] as const).filter((k) => !body[k]);
    if (missing.length) {
      showError(`Fill in: ${missing.join(', ')}.`);
      ({ target, role, reason })[missing[0]].focus();
      return;
    }
    const d = duration.value.trim();
    if (d) body.duration = d;
    void act(submit, async () => {
      const r = await post<AccessRequest>('/api/v1/access-requests', body);
      showStatus(`Requested ${r.role || body.role} on ${r.target || body.target} (${r.id ?? 'pending'}); reviewers have been asked.`);
      reason.value = '';
      await refresh();
    });
  });

  const el = h('div', { class: 'page page-access' },
    h('div', { class: 'page-head' }, h('h1', null, 'Access')),
    section('Request access', form),
    section('Pending access requests', pendingEmpty, pendingList),
    section('Grants in force',
      h('div', { class: 'table-wrap' },
        h('table', { class: 'grid', 'data-testid': 'grants-table' },
          h('thead', null, h('tr', null,
            ['Role', 'Target', 'Holder', 'Approved', 'Expires', 'Reason', ''].map((c) => h('th', { scope: 'col' }, c)))),
          grantsBody))));
  return { el, topics: ['access'], poll: true, refresh };
}
