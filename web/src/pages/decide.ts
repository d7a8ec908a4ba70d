// Approve / reject controls shared by statement approvals and access requests.
import { h, field } from '../dom';
import { post, enc } from '../api';
import { act, showError, showStatus, canReview } from '../ui';

/** Comments being typed, by request id: they survive live refreshes and page changes. */
const drafts = new Map<string, string>();

/**
 * The comment box and the approve / reject buttons for a pending request.
 * `collection`: "approvals" or "access-requests".
 */
export function decideControls(collection: 'approvals' | 'access-requests', id: string, onDone: () => void): HTMLElement | null {
  if (!canReview()) return null;
  const comment = h('textarea', {
    'data-testid': 'comment', rows: 2, maxlength: 4000, class: 'comment',
    placeholder: 'Comment (required to reject)',
    value: drafts.get(id) ?? '',
  });
  comment.addEventListener('input', () => drafts.set(id, comment.value));
  const send = async (approve: boolean, button: HTMLButtonElement) => {
    const text = comment.value.trim();
    if (!approve && !text) {
      showError('Give a reason in the comment to reject.');
      comment.focus();
      return;
    }
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

