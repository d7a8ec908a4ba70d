// What every page shares: the signed-in session, the alert and status regions, badges.
import { h, badge, type Child } from './dom';
import type { Session, Person, Vote } from './api';
import { ApiError } from './api';
import { timeEl } from './dom';

let session: Session | null = null;

export function setSession(s: Session): void {
  session = s;
}

export function me(): Session {
  if (!session) throw new Error('no session');
  return session;
}

export function hasRole(...roles: string[]): boolean {
  return !!session && session.roles.some((r) => roles.includes(r));
}

export function canReview(): boolean {
  return hasRole('admin', 'reviewer');
}

/** The request or grant is the signed-in person's own (by subject or email). */
export function isOwn(p: Person): boolean {
  if (!session) return false;
  if (p.subject && p.subject === session.subject) return true;
  return !!p.email && !!session.email && p.email.toLowerCase() === session.email.toLowerCase();
}

// ---- alert / status ----------------------------------------------------------------------

let alertEl: HTMLElement | null = null;
let alertBox: HTMLElement | null = null;
let statusEl: HTMLElement | null = null;
let statusTimer: number | undefined;

/** The one [role=alert] element of the page (hidden while there is nothing to say). */
export function messageRegions(): HTMLElement {
  alertEl = h('div', { role: 'alert', class: 'alert-text', 'data-testid': 'alert' });
  const close = h('button', { type: 'button', class: 'link-button', 'aria-label': 'Dismiss the message', onclick: () => clearError() }, 'Dismiss');
  alertBox = h('div', { class: 'alert', hidden: true }, alertEl, close);
  statusEl = h('div', { role: 'status', class: 'status', 'aria-live': 'polite', 'data-testid': 'status' });
  return h('div', { class: 'messages' }, alertBox, statusEl);
}

export function showError(e: unknown): void {
  const msg = e instanceof ApiError || e instanceof Error ? e.message : String(e);
  if (!alertEl || !alertBox) {
    console.error(msg);
    return;
  }
  alertEl.textContent = msg;
  alertBox.hidden = false;
  loadError = false;
}

let loadError = false;

/** A page's data could not be fetched: shown until a later fetch succeeds (or it is dismissed). */
export function loadFailed(e: unknown): void {
  showError(e);
  loadError = true;
}

/** A page's data was fetched: a message left by an earlier failed fetch goes. */
export function loadOk(): void {
  if (loadError) clearError();
}

export function clearError(): void {
  loadError = false;
  if (alertEl && alertBox) {
    alertEl.textContent = '';
    alertBox.hidden = true;
  }
}

export function showStatus(msg: string): void {
  if (!statusEl) return;
  statusEl.textContent = msg;
  window.clearTimeout(statusTimer);
  statusTimer = window.setTimeout(() => {
    if (statusEl) statusEl.textContent = '';
  }, 6000);
}

/** Runs an action from a button: disables it meanwhile, shows the API's message on failure. */
export async function act(button: HTMLButtonElement | null, fn: () => Promise<void>): Promise<boolean> {
  if (button) button.disabled = true;
  try {
    await fn();
    clearError();
    return true;
  } catch (e) {
    showError(e);
    return false;
  } finally {
    if (button && button.isConnected) button.disabled = false;
  }
}

// ---- badges ------------------------------------------------------------------------------

export function stateBadge(state: string, testid = 'state'): HTMLElement {
  const b = badge(state, `state state-${state.replace(/[^a-z_]/g, '')}`);
  b.setAttribute('data-testid', testid);
  return b;
}

export function decisionBadge(decision: string | undefined): HTMLElement | string {
  if (!decision) return '';
  return badge(decision, `decision d-${decision.replace(/[^a-z]/g, '')}`);
}

export function personEl(p: { display_name?: string; email?: string; subject?: string; kind?: string }, testid?: string): HTMLElement {
  const name = p.display_name || p.email || p.subject || '(unknown)';
  const extra = p.email && p.email !== name ? p.email : !p.email && p.subject && p.subject !== name ? p.subject : '';
  return h('span', { class: 'person', 'data-testid': testid },
    h('span', { class: 'person-name' }, name),
    extra ? h('span', { class: 'person-email' }, extra) : null,
    p.kind === 'agent' ? badge('agent', 'kind') : null);
}

export function votesEl(votes: Vote[], required: number, received: number): HTMLElement {
  const head = h('p', { class: 'votes-head' }, `Approvals ${received} of ${required}`);
  if (!votes.length) return h('div', { class: 'votes', 'data-testid': 'votes' }, head, h('p', { class: 'muted' }, 'No votes yet.'));
  return h('div', { class: 'votes', 'data-testid': 'votes' }, head,
    h('ul', { class: 'vote-list' }, votes.map((v) =>
      h('li', { class: 'vote', 'data-testid': 'vote' },
        badge(v.approve ? 'approved' : 'rejected', v.approve ? 'state state-approved' : 'state state-rejected'),
        ' ', h('strong', null, v.reviewer_display || v.reviewer.display_name || v.reviewer.subject),
        v.break_glass ? [' ', badge('break-glass', 'warn')] : null,
        ' ', timeEl(v.time_us),
        v.comment ? h('q', { class: 'vote-comment' }, v.comment) : null))));
}

export function section(title: string, ...children: Child[]): HTMLElement {
  return h('section', { class: 'panel' }, h('h2', null, title), children);
}

export function emptyRow(cols: number, text: string): HTMLTableRowElement {
  return h('tr', { class: 'empty' }, h('td', { colspan: cols }, text));
}
