#!/usr/bin/env node
// The web console in a real browser: Debian's chromium driven by playwright-core (no downloaded
// browser), against a real gatehouse, PostgreSQL and OpenID Connect provider that
// tests/e2e/test_console_browser.py starts. One scenario per run:
//
//   node console_e2e.mjs <approve|audit|access|sessions|tour>
//
// Environment: GH_URL (the admin listener), GH_USER, GH_PASSWORD (the person signing in at the
// provider's own login page), GH_ARTIFACTS (screenshots, downloads), CHROMIUM (default
// /usr/bin/chromium), and per scenario GH_APPROVAL_ID, GH_STATEMENT, GH_COMMENT, GH_MARKER,
// GH_GRANT_ID, GH_REASON, GH_SESSION_ID, ...
//
// Talking to pytest: a line `WAIT <what>` on stdout asks pytest to do something (start a held
// statement...) and the answer comes back as one line on stdin. The last stdout line is
// `RESULT <json>`: {scenario, problems: [...], screenshots: [...], info: {...}}. Hard failures
// (a selector that never shows up) exit 1 with the reason on stderr, after a screenshot and the
// page's HTML are saved; soft ones (a CSP violation, an unexpected 4xx, an error alert) are
// collected in `problems` and the scenario goes on.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { chromium } from 'playwright-core';

import { Failure, createRun, fail, noAlerts as alertsIn, reportCspViolations, waitUntil as waitFor, watch as watchPage } from './common.mjs';

const env = process.env;
const scenario = process.argv[2];
const GH = (env.GH_URL ?? '').replace(/\/$/, '');
const USER = env.GH_USER ?? '';
const PASSWORD = env.GH_PASSWORD ?? '';
const ARTIFACTS = env.GH_ARTIFACTS ?? path.resolve(path.dirname(new URL(import.meta.url).pathname), '../e2e/artifacts/console');
const CHROMIUM = env.CHROMIUM ?? '/usr/bin/chromium';
const STEP = Number(env.GH_STEP_TIMEOUT_MS ?? 15000);
const TOTAL = Number(env.GH_SCENARIO_TIMEOUT_MS ?? 150000);

if (!GH || !USER || !scenario) {
  console.error('usage: GH_URL=... GH_USER=... GH_PASSWORD=... node console_e2e.mjs <scenario>');
  process.exit(2);
}
const record = createRun(scenario, ARTIFACTS, TOTAL);
const { problem, info } = record;
let signedIn = false;

// ---- talking to pytest ---------------------------------------------------------------------------

const stdinLines = readline.createInterface({ input: process.stdin });
const pendingAnswers = [];
const bufferedAnswers = [];
stdinLines.on('line', (line) => {
  const waiter = pendingAnswers.shift();
  if (waiter) waiter(line);
  else bufferedAnswers.push(line);
});

function ask(what, timeout = 60000) {
  console.log(`WAIT ${what}`);
  if (bufferedAnswers.length) return Promise.resolve(bufferedAnswers.shift());
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Failure(`pytest did not answer "${what}" in ${timeout} ms`)), timeout);
    pendingAnswers.push((line) => {
      clearTimeout(t);
      resolve(line);
    });
  });
}

// ---- helpers -------------------------------------------------------------------------------------

const waitUntil = (fn, what, timeout = STEP, interval = 200) => waitFor(fn, what, timeout, interval);

async function visible(page, selector, what, timeout = STEP) {
  const loc = page.locator(selector).first();
  try {
    await loc.waitFor({ state: 'visible', timeout });
  } catch {
    fail(`${what}: no visible ${selector} after ${timeout} ms on ${page.url()}`);
  }
  return loc;
}

async function within(parent, selector, what, timeout = STEP) {
  const loc = parent.locator(selector).first();
  try {
    await loc.waitFor({ state: 'visible', timeout });
  } catch {
    fail(`${what}: no visible ${selector} inside its row after ${timeout} ms`);
  }
  return loc;
}

async function text(loc) {
  return ((await loc.textContent({ timeout: STEP })) ?? '').replace(/\s+/g, ' ').trim();
}

// A row as it is now (no auto-waiting: a row that re-renders or leaves the list is not waited
// for): null when absent, else its text and its [data-testid=state] text.
async function rowNow(page, selector) {
  return page.evaluate((sel) => {
    const r = document.querySelector(sel);
    if (!r) return null;
    const s = r.querySelector('[data-testid=state]');
    return { text: r.textContent.replace(/\s+/g, ' ').trim(), state: s ? s.textContent.trim() : '' };
  }, selector);
}

const shot = (page, name) => record.shot(page, name, STEP);

// A form field that may be an <input>, a <select> or a <textarea>.
async function setField(loc, value) {
  const { tag, type } = await loc.evaluate((e) => ({
    tag: e.tagName.toLowerCase(), type: (e.getAttribute('type') ?? '').toLowerCase(),
  }));
  if (tag === 'select') {
    const opts = await loc.evaluate((e) => [...e.options].map((o) => ({ value: o.value, label: o.label })));
    const hit = opts.find((o) => o.value === value) ?? opts.find((o) => o.label === value)
      ?? opts.find((o) => o.value.includes(value) || o.label.includes(value));
    if (!hit) fail(`select ${await loc.getAttribute('name')} has no option ${value}: ${JSON.stringify(opts)}`);
    await loc.selectOption(hit.value, { timeout: STEP });
  } else if (type === 'number' && /^\d+[smhd]$/.test(value)) {
    const n = Number(value.slice(0, -1)) * { s: 1, m: 60, h: 3600, d: 86400 }[value.slice(-1)];
    await loc.fill(String(n), { timeout: STEP });
  } else {
    await loc.fill(value, { timeout: STEP });
  }
}

const noAlerts = (page, where) => alertsIn(record, page, where);

async function nav(page, name) {
  const link = await visible(page, `a[data-nav=${name}]`, `the ${name} link in the navigation`);
  await link.click({ timeout: STEP });
  await waitUntil(() => page.url().includes(`#/${name}`), `the URL to show #/${name}`);
}

// ---- the browser ---------------------------------------------------------------------------------

function watch(page) {
  watchPage(page, record, () => signedIn);
}

async function signIn(page, route) {
  // Not signed in: the console sends the browser to /console/login, or offers a link to it.
  await page.goto(`${GH}/console/${route ?? ''}`, { waitUntil: 'domcontentloaded' });
  const signInLink = page.locator('a[href*="/console/login"], button:has-text("Sign in"), a:has-text("Sign in")').first();
  await waitUntil(async () => page.url().includes('/interaction/') || (await signInLink.isVisible()),
    'the console to send an anonymous visitor to the sign-in (redirect or a link to /console/login)', STEP)
    .catch((err) => {
      problem(`${err.message}; going to /console/login directly`);
    });
  if (!page.url().includes('/interaction/')) {
    if (await signInLink.isVisible().catch(() => false)) await signInLink.click({ timeout: STEP });
    else await page.goto(`${GH}/console/login?next=${encodeURIComponent(route ?? '')}`);
  }
  // The provider's own pages: login form, then consent.
  await page.waitForURL(/\/interaction\//, { timeout: STEP });
  await (await visible(page, 'form#login input[name=login]', 'the IdP login form')).fill(USER);
  await page.fill('form#login input[name=password]', PASSWORD, { timeout: STEP });
  await shot(page, 'idp-login');
  await page.click('form#login button[type=submit]', { timeout: STEP });
  await visible(page, 'form#consent button', 'the IdP consent form');
  await page.click('form#consent button', { timeout: STEP });
  // Back through /console/callback to the console.
  await page.waitForURL((u) => u.href.startsWith(`${GH}/console/`) && !u.pathname.startsWith('/console/callback'),
    { timeout: STEP });
  signedIn = true;
  const who = await visible(page, '[data-testid=whoami]', 'who is signed in');
  await waitUntil(async () => (await text(who)).toLowerCase().includes(USER.toLowerCase()),
    `[data-testid=whoami] to name ${USER}`);
  info.whoami = await text(who);
  const cookies = await page.context().cookies(GH);
  const session = cookies.find((c) => c.name === 'gh_session');
  if (!session) fail('no gh_session cookie after the sign-in');
  if (!session.httpOnly || session.sameSite !== 'Strict') {
    problem(`gh_session is not HttpOnly and SameSite=Strict: ${JSON.stringify({ ...session, value: '…' })}`);
  }
  const scriptSees = await page.evaluate(() => document.cookie);
  if (scriptSees.includes('gh_session')) problem('page scripts can read gh_session (document.cookie)');
}

// ---- scenarios -----------------------------------------------------------------------------------

const scenarios = {
  // bob, a reviewer: the held statement is in the inbox; approve it with a comment; a second one
  // held while the page is open shows up by itself (live) and is rejected.
  async approve(page) {
    const id = env.GH_APPROVAL_ID;
    await signIn(page, '#/approvals');
    await nav(page, 'approvals');
    const sel = `[data-testid=approval-row][data-id="${id}"]`;
    const row = page.locator(sel);
    await visible(page, sel, `the held statement ${id} in the inbox`);
    const stmt = await text(await within(row, '[data-testid=statement]', 'the statement'));
    if (!stmt.includes(env.GH_STATEMENT)) problem(`the row shows the statement "${stmt}", not "${env.GH_STATEMENT}"`);
    const state = await text(await within(row, '[data-testid=state]', 'the state'));
    if (!/pending/i.test(state)) problem(`the held request's state shows "${state}", not pending`);
    info.row_text = await text(row);
    await noAlerts(page, 'approvals');
    await shot(page, 'approvals');
    await (await within(row, 'textarea[data-testid=comment]', 'the comment box')).fill(env.GH_COMMENT);
    await (await within(row, '[data-testid=approve]', 'the approve button')).click({ timeout: STEP });
    await waitUntil(async () => {
      const now = await rowNow(page, sel);
      return now === null || /approved|consumed/i.test(now.state);
    }, 'the row to show approved (or leave the pending list)');
    await noAlerts(page, 'approvals after approving');
    await shot(page, 'approvals-approved');

    // Live: a statement held now appears without a reload.
    const second = (await ask('second-held')).trim();
    const sel2 = `[data-testid=approval-row][data-id="${second}"]`;
    const row2 = page.locator(sel2);
    await visible(page, sel2, `the statement ${second} held while the inbox was open (live, no reload)`, 20000);
    // By keyboard only (the issue: keyboard-usable): type the reason, Tab past Approve to Reject, Enter.
    await (await within(row2, 'textarea[data-testid=comment]', 'the comment box')).focus();
    await page.keyboard.type(env.GH_REJECT_REASON);
    for (let i = 0; i < 2; i++) await page.keyboard.press('Tab');
    const focused = await page.evaluate(() => document.activeElement?.getAttribute('data-testid'));
    if (focused !== 'reject') problem(`two Tabs from the comment box reach "${focused}", not the reject button`);
    await shot(page, 'approvals-keyboard');
    await page.keyboard.press('Enter');
    await waitUntil(async () => {
      const now = await rowNow(page, sel2);
      return now === null || /rejected/i.test(now.state);
    }, 'the second row to show rejected (or leave the pending list)');
    await noAlerts(page, 'approvals after rejecting');

    // Live, the other way: another reviewer decides a request this page shows; the row changes
    // without a reload.
    const third = (await ask('third-held')).trim();
    const sel3 = `[data-testid=approval-row][data-id="${third}"]`;
    await visible(page, sel3, `the statement ${third} held while the inbox was open`, 20000);
    const before = await page.evaluate(() => performance.getEntriesByType('navigation').length);
    await ask('decide-third');
    await waitUntil(async () => {
      const now = await rowNow(page, sel3);
      return now === null || /approved|consumed/i.test(now.state);
    }, `the row of ${third} to change when another reviewer approves it (live, no reload)`, 20000);
    if (await page.evaluate(() => performance.getEntriesByType('navigation').length) !== before) {
      problem('the page was reloaded to show the other reviewer\'s decision');
    }

    // The link of notices and webhooks leads to the request's own page, with the vote.
    await page.goto(`${GH}/approvals/${id}`, { waitUntil: 'domcontentloaded' });
    await waitUntil(() => page.url() === `${GH}/console/#/approvals/${id}`,
      `/approvals/${id} to land on /console/#/approvals/${id}`);
    await waitUntil(async () => (await text(page.locator('body'))).includes(env.GH_COMMENT),
      `the request's page to show the vote's comment "${env.GH_COMMENT}"`);
    await noAlerts(page, 'approval detail');
    await shot(page, 'approval-detail');
  },

  // carol, an auditor: search by identity, one record's detail, the verify status, both exports.
  async audit(page) {
    await signIn(page, '#/audit');
    await nav(page, 'audit');
    await visible(page, 'svg[data-testid=timeline]', 'the audit timeline');
    const verify = await visible(page, '[data-testid=verify-status]', 'the chain verification status');
    await waitUntil(async () => (await text(verify)).length > 0, 'the verification status text');
    const vs = await text(verify);
    info.verify_status = vs;
    if (!/\b(ok|verified|intact|valid)\b/i.test(vs) || /fail|broken|tamper|invalid|error/i.test(vs)) {
      problem(`the verification status of an intact store reads "${vs}"`);
    }
    await setField(page.locator('[name=identity]').first(), 'alice');
    await setField(page.locator('[name=text]').first(), env.GH_MARKER);
    await page.click('[data-testid=audit-search]', { timeout: STEP });
    // The page lists recent records before the search; wait for the search's answer.
    const rows = page.locator('[data-testid=audit-row]');
    const found = await waitUntil(async () => {
      const all = await rows.allTextContents();
      return all.length >= 3 && all.every((t) => t.includes(env.GH_MARKER)) ? all : null;
    }, `the search's rows: alice's 3 statements with ${env.GH_MARKER}`);
    info.audit_rows = found.length;
    found.forEach((t, i) => {
      if (!/alice/i.test(t)) problem(`audit row ${i} is not alice's: "${t}"`);
    });
    await noAlerts(page, 'audit search');
    await shot(page, 'audit');
    await rows.first().click({ timeout: STEP });
    const detail = await visible(page, '[data-testid=audit-detail]', "a record's detail");
    await waitUntil(async () => {
      const t = await text(detail);
      return t.includes(env.GH_MARKER) && /alice/i.test(t);
    }, "the detail to show the marker statement and alice");
    await shot(page, 'audit-detail');
    // The export links carry the filters and download what the search found.
    for (const format of ['csv', 'json']) {
      const link = await visible(page, `a[data-testid=export-${format}]`, `the ${format} export link`);
      const href = await link.getAttribute('href');
      if (!/identity=alice/.test(href) || !href.includes(`format=${format}`)) {
        problem(`the ${format} export link does not carry the search: ${href}`);
      }
      const [download] = await Promise.all([page.waitForEvent('download', { timeout: STEP }), link.click({ timeout: STEP })]);
      const file = path.join(ARTIFACTS, `${scenario}-export.${format}`);
      await download.saveAs(file);
      const body = fs.readFileSync(file, 'utf8');
      info[`export_${format}`] = file;
      if (format === 'csv') {
        const first = body.split(/\r?\n/)[0];
        if (first !== env.GH_CSV_HEADER) problem(`the CSV export starts with "${first}"`);
        if (!body.includes(env.GH_MARKER)) problem('the CSV export lacks the marker statement');
      } else {
        let doc;
        try { doc = JSON.parse(body); } catch (err) { problem(`the JSON export is not JSON: ${err.message}`); continue; }
        if (!Array.isArray(doc) || doc.length < 2 || !doc.every((r) => r.identity?.subject === 'alice')) {
          problem(`the JSON export is not alice's records: ${body.slice(0, 300)}`);
        }
      }
    }
    await noAlerts(page, 'audit exports');
  },

  // alice: request access with the form; her grant counts down; she revokes it.
  async access(page) {
    const grant = env.GH_GRANT_ID;
    await signIn(page, '#/access');
    await nav(page, 'access');
    const sel = `[data-testid=grant-row][data-id="${grant}"]`;
    const row = page.locator(sel);
    await visible(page, sel, `alice's grant ${grant}`);
    const expires = await within(row, '[data-testid=expires-in]', "the grant's expiry");
    const t1 = await text(expires);
    info.expires_in = t1;
    if (!t1) problem('the grant shows no expiry');
    await waitUntil(async () => (await text(expires)) !== t1, `the expiry "${t1}" to count down`, 5000)
      .catch((err) => problem(err.message));
    const form = await visible(page, 'form[data-testid=access-form]', 'the access request form');
    for (const [name, value] of [['target', 'app'], ['role', 'read_write'], ['duration', '1h'], ['reason', env.GH_REASON]]) {
      await setField(form.locator(`[name=${name}]`).first(), value);
    }
    await shot(page, 'access');
    await form.locator('[data-testid=request-access]').first().click({ timeout: STEP });
    await waitUntil(async () => (await page.locator('[data-testid=access-row]', { hasText: env.GH_REASON }).count()) > 0,
      `the new request "${env.GH_REASON}" in the list`);
    await noAlerts(page, 'access request');
    await (await within(row, '[data-testid=revoke]', 'the revoke button')).click({ timeout: STEP });
    await (await visible(page, 'input[data-testid=revoke-reason]', 'the revoke reason')).fill(env.GH_REVOKE_REASON);
    await page.locator('[data-testid=confirm-revoke]').first().click({ timeout: STEP });
    await waitUntil(async () => {
      const now = await rowNow(page, sel);
      return now === null || /revoked/i.test(now.text);
    }, 'the grant to leave the list (or show revoked)');
    await noAlerts(page, 'revoke');
    await shot(page, 'access-revoked');
  },

  // dave, an admin: alice's psql session is listed with its statement; he ends it.
  async sessions(page) {
    const id = env.GH_SESSION_ID;
    await signIn(page, '#/sessions');
    await nav(page, 'sessions');
    const row = page.locator(`[data-testid=session-row][data-id="${id}"]`);
    await visible(page, `[data-testid=session-row][data-id="${id}"]`, `alice's session ${id}`);
    const t = await text(row);
    info.session_row = t;
    if (!/alice/i.test(t)) problem(`the session row does not name alice: "${t}"`);
    if (!t.includes(env.GH_STATEMENT)) problem(`the session row does not show the running statement: "${t}"`);
    await noAlerts(page, 'sessions');
    await shot(page, 'sessions');
    await (await within(row, '[data-testid=end-session]', 'the end button')).click({ timeout: STEP });
    await (await visible(page, 'input[data-testid=end-reason]', 'the end reason')).fill(env.GH_END_REASON);
    await shot(page, 'sessions-confirm');
    await page.locator('[data-testid=confirm-end]').first().click({ timeout: STEP });
    await waitUntil(async () => (await row.count()) === 0, 'the ended session to leave the list', 20000);
    await noAlerts(page, 'sessions after ending');
    await shot(page, 'sessions-ended');
  },

  // dave, an admin: the dashboard's charts, then every page once.
  async tour(page) {
    await signIn(page, '#/dashboard');
    await nav(page, 'dashboard');
    for (const chart of ['chart-per-minute', 'chart-targets']) {
      const svg = await visible(page, `svg[data-testid=${chart}]`, `the ${chart} chart`);
      const drawn = (e) => e.querySelectorAll('rect, path, circle, line, polyline, polygon').length > 0;
      await waitUntil(async () => svg.evaluate(drawn),
        `the ${chart} chart to draw something`);
    }
    const top = await visible(page, '[data-testid=top-sensitive]', 'top identities touching sensitive tables');
    await waitUntil(async () => /alice/i.test(await text(top)), 'alice among the top identities touching sensitive tables');
    info.top_sensitive = await text(top);
    await noAlerts(page, 'dashboard');
    await shot(page, 'dashboard');
    for (const name of ['approvals', 'sessions', 'audit', 'access', 'dashboard']) {
      await nav(page, name);
      await page.waitForTimeout(1000); // let the page load its data
      await noAlerts(page, `page ${name}`);
      await shot(page, `page-${name}`);
    }
  },
};

// ---- main ----------------------------------------------------------------------------------------

const play = scenarios[scenario];
if (!play) {
  console.error(`unknown scenario ${scenario}; one of ${Object.keys(scenarios).join(', ')}`);
  process.exit(2);
}
let browser;
let page;
let exitCode = 0;
try {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], timeout: 30000 });
  info.browser_version = browser.version();
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
  await context.addInitScript(reportCspViolations);
  page = await context.newPage();
  page.setDefaultTimeout(STEP);
  page.setDefaultNavigationTimeout(STEP + 5000);
  watch(page);
  await play(page);
} catch (err) {
  exitCode = 1;
  await record.failed(err, page);
} finally {
  if (browser) await browser.close().catch(() => {});
}
record.finish();
stdinLines.close();
process.exit(exitCode);
