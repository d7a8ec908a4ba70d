// Calls to the admin API with the console's session cookie: same-origin credentials, the CSRF
// token on every POST, the API's error message surfaced, and the live event stream.

export interface Session {
  subject: string;
  email: string;
  display_name: string;
  groups: string[];
  kind: string;
  roles: string[];
  csrf_token: string;
  expires: string | null;
  expires_us: number | null;
}

export class ApiError extends Error {
  constructor(public status: number, public code: string, message: string) {
    super(message);
    this.name = 'ApiError';
  }
}

let csrfToken = '';
let onUnauthorized: (() => void) | null = null;

export function setCsrfToken(token: string): void {
  csrfToken = token;
}

/** Called when a call answers 401 after sign-in (the console session ended). */
export function setUnauthorizedHandler(fn: () => void): void {
  onUnauthorized = fn;
}

export function loginUrl(): string {
  return '/console/login?next=' + encodeURIComponent(location.hash || '#/approvals');
}

async function errorOf(res: Response): Promise<ApiError> {
  let code = '';
  let message = '';
  try {
    const text = await res.text();
    try {
      const body = JSON.parse(text) as { error?: unknown; message?: unknown };
      if (typeof body.error === 'string') code = body.error;
      if (typeof body.message === 'string') message = body.message;
    } catch {
      message = text.slice(0, 300);
    }
  } catch {
    /* no body */
  }
  if (!message) {
    if (code === 'csrf') message = 'The request was refused (CSRF token missing or wrong). Reload the page and try again.';
    else if (code) message = `${code} (HTTP ${res.status})`;
    else message = `HTTP ${res.status} ${res.statusText}`.trim();
  }
  return new ApiError(res.status, code || String(res.status), message);
}

async function call<T>(method: 'GET' | 'POST', path: string, body?: unknown, opts: { quiet401?: boolean } = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  const init: RequestInit = { method, credentials: 'same-origin', headers, cache: 'no-store' };
  if (method === 'POST') {
    headers['Content-Type'] = 'application/json';
    headers['X-CSRF-Token'] = csrfToken;
    init.body = JSON.stringify(body ?? {});
  }
  let res: Response;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'network', `Cannot reach the Gatehouse admin listener (${e instanceof Error ? e.message : String(e)})`);
  }
  if (!res.ok) {
    const err = await errorOf(res);
    if (res.status === 401 && !opts.quiet401 && onUnauthorized) onUnauthorized();
    throw err;
  }
  const text = await res.text();
  if (!text) return {} as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new ApiError(res.status, 'bad_response', `The server's answer to ${path} is not JSON`);
  }
}

export function get<T>(path: string, opts?: { quiet401?: boolean }): Promise<T> {
  return call<T>('GET', path, undefined, opts);
}

export function post<T>(path: string, body: unknown): Promise<T> {
  return call<T>('POST', path, body);
}

/** Builds a query string from the members that are set. */
export function query(params: Record<string, string | number | null | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === null || v === undefined || v === '') continue;
    q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

export const enc = encodeURIComponent;

// ---- live events -------------------------------------------------------------------------

export type LiveState = 'connecting' | 'live' | 'reconnecting' | 'unsupported';

export interface LiveHandle {
  close(): void;
}

/**
 * Subscribes to GET /api/v1/events. `onChanged` gets the topics of each `changed` event;
 * `onReconnected` is called when the stream is open again after a break (changes may have been
 * missed). EventSource reconnects by itself.
 */
export function subscribe(onChanged: (topics: string[]) => void, onState: (s: LiveState) => void, onReconnected: () => void): LiveHandle {
  if (typeof EventSource === 'undefined') {
    onState('unsupported');
    return { close() {} };
  }
  let es: EventSource | null = null;
  let broken = false;
  let retry: number | undefined;
  let closed = false;
  const open = () => {
    if (closed) return;
    onState(broken ? 'reconnecting' : 'connecting');
    es = new EventSource('/api/v1/events', { withCredentials: false });
    es.addEventListener('open', () => {
      onState('live');
      if (broken) onReconnected();
      broken = false;
    });
    es.addEventListener('error', () => {
      broken = true;
      if (es && es.readyState === EventSource.CLOSED) {
        // The server answered with an error status (e.g. 401): EventSource gives up; try later.
        es = null;
        onState('reconnecting');
        retry = window.setTimeout(open, 15000);
      } else {
        onState('reconnecting');
      }
    });
    es.addEventListener('changed', (ev: MessageEvent) => {
      let topics: string[] = [];
      try {
        const data = JSON.parse(String(ev.data)) as { topics?: unknown };
        if (Array.isArray(data.topics)) topics = data.topics.filter((t): t is string => typeof t === 'string');
      } catch {
        /* ignore a malformed event */
      }
      onChanged(topics);
    });
  };
  open();
  return {
    close() {
      closed = true;
      if (retry !== undefined) window.clearTimeout(retry);
      es?.close();
      es = null;
    },
  };
}

// ---- shapes of the API's records ---------------------------------------------------------

export interface Person {
  subject: string;
  email: string;
  groups: string[];
  kind: string;
  display_name: string;
}

export interface Vote {
  reviewer: Person;
  reviewer_display: string;
  decision: string;
  approve: boolean;
  comment: string;
  break_glass: boolean;
  time: string | null;
  time_us: number | null;
}

/** What statement approvals and access requests have in common (the request card shows it). */
export interface ReviewedRequest {
  id: string;
  state: string;
  requester: Person;
  target: string;
  reason: string;
  reviewer_groups: string[];
  approvals_required: number;
  approvals_received: number;
  votes: Vote[];
  break_glass: boolean;
  created_us: number | null;
  decided_us: number | null;
}

export interface ApprovalRequest extends ReviewedRequest {
  kind: 'statement';
  environment: string;
  database: string;
  statement: string;
  parameters: Array<string | null>;
  fingerprint: string;
  rule: string;
  justification: string;
  node: string;
  waiting: boolean;
  created: string | null;
  decided: string | null;
  rerun_until_us: number | null;
  closed_reason: string;
  tables?: string[];
  sensitive_columns?: string[];
  row_estimate?: number | null;
}

export interface AccessRequest extends ReviewedRequest {
  kind: 'access';
  role: string;
  duration_s: number;
  duration: string;
  expires_us: number | null;
  active: boolean;
  revoked_by: string;
  revoke_reason: string;
  revoked_us: number | null;
}

export interface ProxySession {
  id: string | number;
  subject: string;
  email: string;
  display_name: string;
  kind: string;
  groups: string[];
  target: string;
  database: string;
  client: string;
  application_name: string;
  tls: boolean | string;
  started: string | null;
  started_us: number | null;
  state: string;
  statement: string;
  statement_started: string | null;
  statement_started_us: number | null;
}

export interface AuditRecord {
  time?: string;
  time_us?: number;
  type?: string;
  node?: string;
  seq?: number;
  session?: number;
  statement?: number;
  identity?: { subject?: string; email?: string; groups?: string[]; kind?: string; display_name?: string; user?: string };
  client?: string;
  target?: string;
  environment?: string;
  database?: string;
  outcome?: string;
  sqlstate?: string;
  rows?: number;
  duration_us?: number;
  message?: string;
  sql?: {
    text?: string;
    statements?: Array<{ kinds?: string[]; relations?: string[] }>;
    tags?: string[];
    decision?: { action?: string; rule?: string };
  };
  result?: { seq?: number; outcome?: string; sqlstate?: string; rows?: number; duration_us?: number; message?: string };
  hash?: string;
  [k: string]: unknown;
}

export interface VerifyStatus {
  ok: boolean;
  records: number;
  first_seq: number;
  last_seq: number;
  message: string;
  checked: string | null;
  checked_us: number | null;
}

export interface Stats {
  since_us: number;
  until_us: number;
  per_minute: Array<{ minute_us: number; statements: number; blocked: number; masked: number; reviewed: number }>;
  targets: Array<{ target: string; statements: number; blocked: number; masked: number; reviewed: number }>;
  top_sensitive: Array<{ identity: string; statements: number; tables: string[] }>;
}
