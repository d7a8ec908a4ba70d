// Boot and router of the Gatehouse console: the session, the header, hash routes, live updates.
import './style.css';
import { h, badge, replaceChildren, tickTimes } from './dom';
import { ApiError, get, loginUrl, setCsrfToken, setUnauthorizedHandler, subscribe, type LiveHandle, type LiveState, type Session } from './api';
import { hasRole, me, messageRegions, setSession, showError, clearError } from './ui';
import type { Page } from './pages/page';
import { approvalsPage, approvalDetailPage } from './pages/approvals';
import { sessionsPage } from './pages/sessions';
import { auditPage } from './pages/audit';
import { accessPage } from './pages/access';
import { dashboardPage } from './pages/dashboard';

type NavKey = 'approvals' | 'sessions' | 'audit' | 'access' | 'dashboard';

const NAV: Array<{ key: NavKey; label: string; roles: string[] | null }> = [
  { key: 'approvals', label: 'Approvals', roles: null },
  { key: 'sessions', label: 'Sessions', roles: ['admin', 'reviewer', 'auditor'] },
  { key: 'audit', label: 'Audit', roles: ['admin', 'auditor'] },
  { key: 'access', label: 'Access', roles: null },
  { key: 'dashboard', label: 'Dashboard', roles: ['admin', 'auditor'] },
];

const POLL_MS = 10_000;

const app = document.getElementById('app') as HTMLElement;
let main: HTMLElement;
let liveEl: HTMLElement;
let current: Page | null = null;
let currentKey = '';
let live: LiveHandle | null = null;
let pollTimer: number | undefined;
let liveState: LiveState = 'connecting';
let tickTimer: number | undefined;
let redirecting = false;
let navigated = false;

function toLogin(): void {
  if (redirecting) return;
  redirecting = true;
  location.href = loginUrl();
}

interface Route {
  nav: NavKey;
  key: string;
  make: () => Page;
}

function route(): Route {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, qs] = raw.split('?', 2);
  const parts = path.split('/').filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  const params = new URLSearchParams(qs ?? '');
  switch (parts[0]) {
    case 'approvals':
      if (parts[1]) return { nav: parts[1].startsWith('acc_') ? 'access' : 'approvals', key: `approval:${parts[1]}`, make: () => approvalDetailPage(parts[1]) };
      return { nav: 'approvals', key: 'approvals', make: approvalsPage };
    case 'sessions':
      return { nav: 'sessions', key: 'sessions', make: sessionsPage };
    case 'audit':
      return { nav: 'audit', key: 'audit', make: () => auditPage(params) };
    case 'access':
      return { nav: 'access', key: 'access', make: accessPage };
    case 'dashboard':
      return { nav: 'dashboard', key: 'dashboard', make: dashboardPage };
    default:
      return { nav: 'approvals', key: 'approvals', make: approvalsPage };
  }
}

function navigate(): void {
  const r = route();
  if (!location.hash || !/^#\/(approvals|sessions|audit|access|dashboard)(\/|\?|$)/.test(location.hash)) {
    history.replaceState(null, '', '#/approvals');
  }
  // The audit page rewrites its own hash (#/audit?filters) without wanting a new page.
  if (r.key === currentKey && current) return;
  current?.destroy?.();
  clearError();
  currentKey = r.key;
  current = r.make();
  replaceChildren(main, current.el);
  document.querySelectorAll<HTMLAnchorElement>('a[data-nav]').forEach((a) => {
    if (a.dataset.nav === r.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  });
  const title = NAV.find((n) => n.key === r.nav)?.label ?? 'Console';
  document.title = `${title} · Gatehouse`;
  void current.refresh();
  // After a route change keyboard users continue in the content (not on the first load).
  if (navigated) main.focus({ preventScroll: true });
  navigated = true;
}

function onChanged(topics: string[]): void {
  if (current && current.topics.some((t) => topics.includes(t))) void current.refresh();
}

function setLive(state: LiveState): void {
  liveState = state;
  const text: Record<LiveState, string> = { connecting: 'connecting…', live: 'live', reconnecting: 'reconnecting…', unsupported: 'polling' };
  liveEl.textContent = text[state];
  liveEl.className = `live live-${state}`;
}

async function logout(button: HTMLButtonElement): Promise<void> {
  button.disabled = true;
  try {
    const res = await fetch('/console/logout', {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': me().csrf_token, Accept: 'application/json' },
      body: '{}',
    });
    if (!res.ok && res.status !== 401) {
      let msg = `Sign-out failed (HTTP ${res.status})`;
      try {
        const b = (await res.json()) as { message?: string; error?: string };
        msg = b.message || b.error || msg;
      } catch {
        /* not JSON */
      }
      throw new Error(msg);
    }
  } catch (e) {
    button.disabled = false;
    showError(e);
    return;
  }
  stop();
  replaceChildren(app,
    h('div', { class: 'signed-out', 'data-testid': 'signed-out' },
      h('h1', null, 'Gatehouse'),
      h('p', null, 'Signed out — ', h('a', { href: '/console/login', 'data-testid': 'sign-in-again' }, 'Sign in again'))));
}

function stop(): void {
  live?.close();
  live = null;
  window.clearInterval(pollTimer);
  window.clearInterval(tickTimer);
  current?.destroy?.();
  current = null;
  window.removeEventListener('hashchange', navigate);
}

function shell(s: Session): void {
  const nav = h('nav', { class: 'nav', 'aria-label': 'Console' },
    h('ul', null, NAV.filter((n) => !n.roles || hasRole(...n.roles)).map((n) =>
      h('li', null, h('a', { href: `#/${n.key}`, 'data-nav': n.key }, n.label)))));
  const signOut = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'logout' }, 'Sign out');
  signOut.addEventListener('click', () => void logout(signOut));
  liveEl = h('span', { class: 'live', 'data-testid': 'live-status', title: 'Live updates' }, '');
  const who = h('div', { class: 'who' },
    h('span', { 'data-testid': 'whoami', class: 'whoami' },
      h('span', { class: 'person-name' }, s.display_name || s.email || s.subject),
      s.email ? h('span', { class: 'person-email' }, s.email) : null),
    h('span', { class: 'badges', 'data-testid': 'roles', 'aria-label': 'Roles' },
      s.roles.length ? s.roles.map((r) => badge(r, 'role')) : badge('no role', 'warn')),
    liveEl,
    signOut);
  main = h('main', { id: 'main', tabindex: -1, class: 'main' });
  replaceChildren(app,
    h('a', { href: '#main', class: 'skip-link', onclick: (ev: Event) => { ev.preventDefault(); main.focus(); } }, 'Skip to content'),
    h('header', { class: 'top' },
      h('a', { href: '#/approvals', class: 'brand' }, 'Gatehouse'),
      nav, h('span', { class: 'spacer' }), who),
    messageRegions(),
    main);
}

async function boot(): Promise<void> {
  let s: Session;
  try {
    s = await get<Session>('/api/v1/console/session', { quiet401: true });
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      toLogin();
      return;
    }
    const retry = h('button', { type: 'button', class: 'btn' }, 'Try again');
    retry.addEventListener('click', () => void boot());
    replaceChildren(app, h('div', { class: 'boot-error' },
      h('h1', null, 'Gatehouse'),
      h('p', { role: 'alert' }, e instanceof Error ? e.message : String(e)),
      retry));
    return;
  }
  setSession(s);
  setCsrfToken(s.csrf_token);
  setUnauthorizedHandler(toLogin);
  shell(s);
  window.addEventListener('hashchange', navigate);
  navigate();
  live = subscribe(onChanged, setLive, () => void current?.refresh());
  pollTimer = window.setInterval(() => {
    // Only while the live stream is down: every refresh is an audited API call.
    if (current?.poll && liveState !== 'live' && document.visibilityState !== 'hidden') void current.refresh();
  }, POLL_MS);
  tickTimer = window.setInterval(() => tickTimes(app), 1000);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && current?.poll) void current.refresh();
  });
}

void boot();
