// Decision UI the pages share: the card of a request (statement approval or access request) with
// its approve / reject controls, and the widget for an action that needs a reason (end a session,
// revoke a grant).
import { h, badge, field, timeEl, type Child } from '../dom';
import { post, enc, type ReviewedRequest } from '../api';
import { act, showError, showStatus, canReview, personEl, stateBadge, votesEl } from '../ui';

type Collection = 'approvals' | 'access-requests';

/** The trimmed text of a box that must not be empty; if it is, says `missing` in the alert, focuses it, gives null. */
function required(box: HTMLInputElement | HTMLTextAreaElement, missing: string): string | null {
  const text = box.value.trim();
  if (text) return text;
  showError(missing);
  box.focus();
  return null;
}

/** Comments being typed, by request id: they survive live refreshes and page changes. */
const drafts = new Map<string, string>();

/**
 * The comment box and the approve / reject buttons for a pending request.
 * `collection`: "approvals" or "access-requests".
 */
export function decideControls(collection: Collection, id: string, onDone: () => void): HTMLElement | null {
  if (!canReview()) return null;
  const comment = h('textarea', {
    'data-testid': 'comment', rows: 2, maxlength: 4000, class: 'comment',
    placeholder: 'Comment (required to reject)',
    value: drafts.get(id) ?? '',
  });
  comment.addEventListener('input', () => drafts.set(id, comment.value));
  const send = async (approve: boolean, button: HTMLButtonElement) => {
    const text = approve ? comment.value.trim() : required(comment, 'Give a reason in the comment to reject.');
    if (text === null) return;
    const ok = await act(button, async () => {
      const path = `/api/v1/${collection}/${enc(id)}/${approve ? 'approve' : 'reject'}`;
      await post(path, approve ? { comment: text } : { reason: text });
    });
    if (ok) {
      drafts.delete(id);
      showStatus(`${approve ? 'Approved' : 'Rejected'} ${id}.`);
      onDone();
    }
  };
  const approve = h('button', { type: 'button', class: 'btn btn-approve', 'data-testid': 'approve' }, 'Approve');
  const reject = h('button', { type: 'button', class: 'btn btn-reject', 'data-testid': 'reject' }, 'Reject');
  approve.addEventListener('click', () => void send(true, approve));
  reject.addEventListener('click', () => void send(false, reject));
  return h('div', { class: 'decide' },
    field('Comment', comment),
    h('div', { class: 'buttons' }, approve, reject));
}

export interface CardParts {
  collection: Collection;
  /** Class of the card next to `card` ("approval", "access") and its data-testid ("approval-row", ...). */
  kind: string;
  testid: string;
  /** The title's content: a link to the request's own page in a list, a heading on that page. */
  title: Child[];
  /** Badges after the state's and before break-glass's. */
  badges: Child[];
  /** The body's main column (the votes and the decide controls are the side column). */
  main: Child[];
}

/** The card of a request: header (title, badges, when requested), the request's details, its votes and, while pending, the decide controls. */
export function requestCard(r: ReviewedRequest, parts: CardParts, onDone: () => void, detail: boolean): HTMLElement {
  const pending = r.state === 'pending';
  const title = detail
    ? h('h2', { class: 'card-title' }, parts.title)
    : h('h3', { class: 'card-title' }, h('a', { href: `#/approvals/${enc(r.id)}`, class: 'card-link' }, parts.title));
  return h('article', { class: `card ${parts.kind} ${pending ? 'is-pending' : 'is-decided'}`, 'data-testid': parts.testid, 'data-id': r.id },
    h('header', { class: 'card-head' },
      title,
      stateBadge(r.state),
      parts.badges,
      r.break_glass ? badge('break-glass', 'warn') : null,
      h('span', { class: 'spacer' }),
      h('span', { class: 'card-time' }, 'requested ', timeEl(r.created_us, 'created'))),
    h('div', { class: 'card-body' },
      h('div', { class: 'card-main' }, parts.main),
      h('div', { class: 'card-side' },
        votesEl(r.votes, r.approvals_required, r.approvals_received),
        pending ? decideControls(parts.collection, r.id, onDone) : null)));
}

/** The first rows of a card's details: who asks, and on which target. */
export function requesterAndTarget(r: ReviewedRequest): Array<[string, Child]> {
  return [
    ['Requester', personEl(r.requester, 'requester')],
    ['Target', h('span', { 'data-testid': 'target' }, r.target)],
  ];
}

export interface ReasonActionText {
  /** data-testids of the button that opens the form, the reason box, the confirm and the cancel buttons. */
  testids: { open: string; reason: string; confirm: string; cancel: string };
  /** The opening button's text ("Revoke…"), the reason's label, its placeholder, the confirm button's text. */
  open: string;
  label: string;
  placeholder: string;
  confirm: string;
  /** The alert when the reason is left empty. */
  missing: string;
}

export interface ReasonAction {
  /** Whether the form for `id` is open (a row's reconcile key includes it, so a refresh keeps it open). */
  isOpen(id: string): boolean;
  /**
   * The button that reveals a reason box with confirm and cancel. Confirm (or Enter in the box)
   * refuses an empty reason, else runs `send(reason)` with the confirm button disabled; after it
   * succeeded the form's state is forgotten and `done()` runs.
   */
  controls(id: string, send: (reason: string) => Promise<void>, done: () => void): HTMLElement;
}

/** An action that needs a reason, such as ending a session; open forms and typed reasons are kept by id across refreshes. */
export function reasonAction(text: ReasonActionText): ReasonAction {
  const opened = new Set<string>();
  const typed = new Map<string, string>();
  const controls = (id: string, send: (reason: string) => Promise<void>, done: () => void): HTMLElement => {
    const open = opened.has(id);
    const opener = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': text.testids.open, 'aria-expanded': String(open), hidden: open }, text.open);
    const reason = h('input', { type: 'text', 'data-testid': text.testids.reason, placeholder: text.placeholder, value: typed.get(id) ?? '', maxlength: 1000 });
    const confirm = h('button', { type: 'button', class: 'btn btn-danger btn-small', 'data-testid': text.testids.confirm }, text.confirm);
    const cancel = h('button', { type: 'button', class: 'link-button', 'data-testid': text.testids.cancel }, 'Cancel');
    const form = h('div', { class: 'inline-form', hidden: !open }, field(text.label, reason), confirm, cancel);
    const show = (on: boolean) => {
      if (on) opened.add(id);
      else opened.delete(id);
      form.hidden = !on;
      opener.hidden = on;
      opener.setAttribute('aria-expanded', String(on));
      (on ? reason : opener).focus();
    };
    reason.addEventListener('input', () => typed.set(id, reason.value));
    opener.addEventListener('click', () => show(true));
    cancel.addEventListener('click', () => show(false));
    const submit = async () => {
      const why = required(reason, text.missing);
      if (why === null) return;
      if (await act(confirm, () => send(why))) {
        opened.delete(id);
        typed.delete(id);
        done();
      }
    };
    confirm.addEventListener('click', () => void submit());
    reason.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') {
        ev.preventDefault();
        void submit();
      }
    });
    return h('div', { class: 'row-actions' }, opener, form);
  };
  return { isOpen: (id) => opened.has(id), controls };
}
