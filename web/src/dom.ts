// A small DOM helper. Everything the server sends is put into the page as text nodes
// (textContent), never as HTML; no inline style attributes (the console's CSP forbids them).

export type Child = Node | string | number | null | undefined | false | Child[];
type AttrValue = string | number | boolean | null | undefined | EventListener;
export type Attrs = Record<string, AttrValue>;

function append(el: Node, c: Child): void {
  if (c === null || c === undefined || c === false) return;
  if (Array.isArray(c)) {
    for (const x of c) append(el, x);
  } else if (c instanceof Node) {
    el.appendChild(c);
  } else {
    el.appendChild(document.createTextNode(String(c)));
  }
}

function setAttrs(el: Element, attrs: Attrs | null | undefined): void {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'style') throw new Error('inline styles are not allowed (CSP)');
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2).toLowerCase(), v);
    } else if (typeof v === 'function') {
      continue;
    } else if (k === 'value' && (el instanceof HTMLInputElement || el instanceof HTMLTextAreaElement || el instanceof HTMLSelectElement)) {
      el.value = String(v);
    } else if (k === 'checked' && el instanceof HTMLInputElement) {
      el.checked = Boolean(v);
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
}

/** Creates an HTML element: h('div', {class: 'x', 'data-testid': 'y'}, 'text', child). */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Creates an SVG element (document.createElementNS). */
export function s<K extends keyof SVGElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Child[]): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

export function replaceChildren(el: Element, ...children: Child[]): void {
  clear(el);
  append(el, children);
}

/**
 * Keyed update of a list: keeps the nodes whose signature did not change (so a reviewer's
 * half-typed comment or the focus survives a live refresh), rebuilds the others, drops what is
 * gone and puts the nodes in the order of `items`. When a rebuilt node held the focus, the
 * element with the same data-testid in its replacement gets it back.
 */
export function reconcile<T>(
  container: Element,
  items: T[],
  key: (item: T) => string,
  signature: (item: T) => string,
  build: (item: T) => Element,
): void {
  const old = new Map<string, Element>();
  for (const el of Array.from(container.children)) {
    const k = (el as HTMLElement).dataset.key;
    if (k !== undefined) old.set(k, el);
    else el.remove();
  }
  let prev: Element | null = null;
  for (const item of items) {
    const k = key(item);
    const sig = signature(item);
    let el = old.get(k);
    old.delete(k);
    if (!el || (el as HTMLElement).dataset.sig !== sig) {
      const fresh = build(item);
      (fresh as HTMLElement).dataset.key = k;
      (fresh as HTMLElement).dataset.sig = sig;
      if (el) {
        const focused = document.activeElement;
        let testid: string | null = null;
        let selStart: number | null = null;
        let selEnd: number | null = null;
        if (focused && el.contains(focused)) {
          testid = focused.getAttribute('data-testid');
          if (focused instanceof HTMLInputElement || focused instanceof HTMLTextAreaElement) {
            selStart = focused.selectionStart;
            selEnd = focused.selectionEnd;
          }
        }
        el.replaceWith(fresh);
        if (testid) {
          const again = fresh.querySelector<HTMLElement>(`[data-testid="${testid}"]`);
          if (again) {
            again.focus();
            if ((again instanceof HTMLInputElement || again instanceof HTMLTextAreaElement) && selStart !== null) {
              try {
                again.setSelectionRange(selStart, selEnd ?? selStart);
              } catch {
                /* not a text input */
              }
            }
          }
        }
      }
      el = fresh;
    }
    const next: Element | null = prev ? prev.nextElementSibling : container.firstElementChild;
    if (next !== el) container.insertBefore(el, next);
    prev = el;
  }
  for (const el of old.values()) el.remove();
}

// ---- times -------------------------------------------------------------------------------

const dateFmt = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
});

export function usToDate(us: number): Date {
  return new Date(Math.floor(us / 1000));
}

export function localTime(us: number | null | undefined): string {
  if (us === null || us === undefined || !Number.isFinite(us)) return '';
  return dateFmt.format(usToDate(us));
}

/** "3 min ago", "in 5 min", "just now". */
export function relative(us: number, nowMs = Date.now()): string {
  const diff = Math.round((us / 1000 - nowMs) / 1000);
  const abs = Math.abs(diff);
  let text: string;
  if (abs < 10) return 'just now';
  if (abs < 60) text = `${abs} s`;
  else if (abs < 3600) text = `${Math.floor(abs / 60)} min`;
  else if (abs < 86400) text = `${Math.floor(abs / 3600)} h ${Math.floor((abs % 3600) / 60)} min`;
  else text = `${Math.floor(abs / 86400)} d ${Math.floor((abs % 86400) / 3600)} h`;
  return diff < 0 ? `${text} ago` : `in ${text}`;
}

/** A <time> with the local time and, kept up to date by tickTimes(), the relative time. */
export function timeEl(us: number | null | undefined, testid?: string): HTMLElement {
  if (us === null || us === undefined) return h('span', { class: 'muted', 'data-testid': testid }, '—');
  const rel = h('span', { class: 'rel', 'data-rel-us': String(us) }, relative(us));
  return h('time', { datetime: usToDate(us).toISOString(), title: usToDate(us).toISOString(), 'data-testid': testid, class: 'when' },
    h('span', { class: 'abs' }, localTime(us)), ' ', h('span', { class: 'muted' }, '(', rel, ')'));
}

/** "59m 58s", "1h 0m 5s", "2d 3h 4m". */
export function countdown(ms: number): string {
  let sec = Math.floor(ms / 1000);
  const d = Math.floor(sec / 86400);
  sec -= d * 86400;
  const hh = Math.floor(sec / 3600);
  sec -= hh * 3600;
  const m = Math.floor(sec / 60);
  sec -= m * 60;
  if (d > 0) return `${d}d ${hh}h ${m}m ${sec}s`;
  if (hh > 0) return `${hh}h ${m}m ${sec}s`;
  if (m > 0) return `${m}m ${sec}s`;
  return `${sec}s`;
}

export function expiresText(expiresUs: number, nowMs = Date.now()): string {
  const left = expiresUs / 1000 - nowMs;
  return left <= 0 ? 'expired' : `expires in ${countdown(left)}`;
}

/** Updates relative times and countdowns under `root`; called every second. */
export function tickTimes(root: ParentNode): void {
  const now = Date.now();
  root.querySelectorAll<HTMLElement>('[data-rel-us]').forEach((el) => {
    const t = relative(Number(el.dataset.relUs), now);
    if (el.textContent !== t) el.textContent = t;
  });
  root.querySelectorAll<HTMLElement>('[data-expires-us]').forEach((el) => {
    const t = expiresText(Number(el.dataset.expiresUs), now);
    if (el.textContent !== t) el.textContent = t;
    el.classList.toggle('expired', t === 'expired');
  });
}

// ---- small widgets -----------------------------------------------------------------------

export function badge(text: string, cls = ''): HTMLElement {
  return h('span', { class: `badge ${cls}`.trim() }, text);
}

/** A row of badges, or '' (left out of a dl) when there are none. */
export function badges(items: string[] | undefined, cls = 'tag'): HTMLElement | string {
  if (!items || !items.length) return '';
  return h('span', { class: 'badges' }, items.map((t) => badge(t, cls)));
}

export function truncate(text: string, max: number): string {
  const t = text.replace(/\s+/g, ' ').trim();
  return t.length > max ? t.slice(0, max - 1) + '…' : t;
}

let idCounter = 0;
export function uid(prefix: string): string {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

/** A label + control pair. */
export function field(label: string, control: HTMLElement, hint?: string): HTMLElement {
  const id = control.id || uid('f');
  control.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, hint ? h('span', { class: 'hint' }, hint) : null);
}

/** A description list from [term, value] pairs (values that are null/'' are left out). */
export function dl(pairs: Array<[string, Child]>, cls = 'kv'): HTMLElement {
  const out = h('dl', { class: cls });
  for (const [k, v] of pairs) {
    if (v === null || v === undefined || v === '' || v === false) continue;
    out.append(h('dt', null, k), h('dd', null, v));
  }
  return out;
}
