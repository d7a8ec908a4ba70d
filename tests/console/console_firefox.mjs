#!/usr/bin/env node
// The web console in Firefox: Debian's firefox-esr driven by puppeteer-core over WebDriver BiDi
// (playwright-core drives only its own patched Firefox builds), against the real gatehouse,
// PostgreSQL and OpenID Connect provider that tests/e2e/test_console_browser.py starts.
//
//   node console_firefox.mjs
//
// One scenario: GH_USER (a reviewer) signs in at the provider's login and consent pages, approves
// the held statement GH_APPROVAL_ID with GH_COMMENT in the inbox; then, in a fresh browser context,
// GH_TOUR_USER (an admin, who sees every page) signs in and visits sessions, audit, access and the
// dashboard, each screenshotted to $GH_ARTIFACTS/firefox-<page>.png (1280x800).
//
// Environment as for console_e2e.mjs: GH_URL, GH_USER, GH_PASSWORD, GH_TOUR_USER, GH_TOUR_PASSWORD,
// GH_ARTIFACTS, GH_APPROVAL_ID, GH_STATEMENT, GH_COMMENT, FIREFOX (default /usr/bin/firefox-esr).
// The last stdout line is `RESULT <json>`: {scenario, problems, screenshots, info}; a hard failure
// exits 1 with the reason on stderr (after a screenshot); problems (an uncaught error, a CSP
// violation, a visible error alert, an unexpected 4xx/5xx) are collected and the run goes on.
import * as path from 'node:path';
import puppeteer from 'puppeteer-core';

import { createRun, fail, noAlerts as alertsIn, reportCspViolations, waitUntil as waitFor, watch as watchPage } from './common.mjs';

const env = process.env;
const scenario = 'firefox';
const GH = (env.GH_URL ?? '').replace(/\/$/, '');
const ARTIFACTS = env.GH_ARTIFACTS ?? path.resolve(path.dirname(new URL(import.meta.url).pathname), '../e2e/artifacts/console');
const FIREFOX = env.FIREFOX ?? '/usr/bin/firefox-esr';
const STEP = Number(env.GH_STEP_TIMEOUT_MS ?? 15000);
const TOTAL = Number(env.GH_SCENARIO_TIMEOUT_MS ?? 150000);

if (!GH || !env.GH_USER || !env.GH_TOUR_USER || !env.GH_APPROVAL_ID) {
  console.error('usage: GH_URL=... GH_USER=... GH_PASSWORD=... GH_TOUR_USER=... GH_APPROVAL_ID=... node console_firefox.mjs');
  process.exit(2);
}
const record = createRun(scenario, ARTIFACTS, TOTAL);
const { problem, info } = record;

// ---- helpers -------------------------------------------------------------------------------------

const waitUntil = (fn, what, timeout = STEP, interval = 200) => waitFor(fn, what, timeout, interval);

// The first visible element matching `selector` (polled, so it survives navigations).
async function visible(page, selector, what, timeout = STEP) {
  await waitUntil(() => page.$eval(selector, (e) => e.getClientRects().length > 0).catch(() => false),
    `${what} (visible ${selector} on ${page.url()})`, timeout);
  return page.$(selector);
}

const norm = (s) => (s ?? '').replace(/\s+/g, ' ').trim();
const textOf = (page, selector) => page.$eval(selector, (e) => e.textContent).then(norm).catch(() => '');

const shot = (page, name) => record.shot(page, name, STEP);
const noAlerts = (page, where) => alertsIn(record, page, where);

async function nav(page, name) {
  const link = await visible(page, `a[data-nav=${name}]`, `the ${name} link in the navigation`);
  await link.click();
  await waitUntil(() => page.url().includes(`#/${name}`), `the URL to show #/${name}`);
}

function watch(page, state) {
  // Firefox asks every page's origin for /favicon.ico when the page names no icon, as the
  // provider's login and consent pages do (the console names /favicon.svg).
  const idpFavicon = (url) => url.pathname === '/favicon.ico' && url.origin !== new URL(GH).origin;
  watchPage(page, record, () => state.signedIn, idpFavicon);
}

// A fresh browser context (its own cookies) signed in as `user` through the provider's pages.
async function signIn(browser, user, password, route) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.setViewport({ width: 1280, height: 800 });
  page.setDefaultTimeout(STEP);
  page.setDefaultNavigationTimeout(STEP + 5000);
  await page.evaluateOnNewDocument(reportCspViolations);
  const state = { signedIn: false };
  watch(page, state);
  // Not signed in: the console sends the browser to /console/login and on to the provider.
  await page.goto(`${GH}/console/${route}`, { waitUntil: 'domcontentloaded' });
  await waitUntil(() => page.url().includes('/interaction/'), 'the console to send an anonymous visitor to the IdP')
    .catch(async (err) => {
      problem(`${err.message}; going to /console/login directly`);
      await page.goto(`${GH}/console/login?next=${encodeURIComponent(route)}`, { waitUntil: 'domcontentloaded' });
    });
  const login = await visible(page, 'form#login input[name=login]', 'the IdP login form');
  await login.type(user);
  await (await page.$('form#login input[name=password]')).type(password);
  await shot(page, `idp-login-${user}`);
  await page.click('form#login button[type=submit]');
  await (await visible(page, 'form#consent button', 'the IdP consent form')).click();
  // Back through /console/callback to the console.
  await waitUntil(() => {
    const u = new URL(page.url());
    return u.href.startsWith(`${GH}/console/`) && !u.pathname.startsWith('/console/callback');
  }, 'the way back to the console');
  state.signedIn = true;
  await visible(page, '[data-testid=whoami]', 'who is signed in');
  await waitUntil(async () => (await textOf(page, '[data-testid=whoami]')).toLowerCase().includes(user.toLowerCase()),
    `[data-testid=whoami] to name ${user}`);
  info[`whoami_${user}`] = await textOf(page, '[data-testid=whoami]');
  const session = (await page.cookies(GH)).find((c) => c.name === 'gh_session');
  if (!session) fail(`no gh_session cookie after ${user}'s sign-in`);
  if (!session.httpOnly || session.sameSite !== 'Strict') {
    problem(`gh_session is not HttpOnly and SameSite=Strict: ${JSON.stringify({ ...session, value: '…' })}`);
  }
  if ((await page.evaluate(() => document.cookie)).includes('gh_session')) problem('page scripts can read gh_session');
  return page;
}

// ---- the scenario --------------------------------------------------------------------------------

async function approve(browser) {
  const id = env.GH_APPROVAL_ID;
  const page = await signIn(browser, env.GH_USER, env.GH_PASSWORD ?? '', '#/approvals');
  current = page;
  await nav(page, 'approvals');
  const sel = `[data-testid=approval-row][data-id="${id}"]`;
  await visible(page, sel, `the held statement ${id} in the inbox`);
  const stmt = await textOf(page, `${sel} [data-testid=statement]`);
  if (!stmt.includes(env.GH_STATEMENT ?? '')) problem(`the row shows the statement "${stmt}", not "${env.GH_STATEMENT}"`);
  const state = await textOf(page, `${sel} [data-testid=state]`);
  if (!/pending/i.test(state)) problem(`the held request's state shows "${state}", not pending`);
  info.row_text = await textOf(page, sel);
  await noAlerts(page, 'approvals');
  await shot(page, 'approvals');
  await (await visible(page, `${sel} textarea[data-testid=comment]`, 'the comment box')).type(env.GH_COMMENT ?? '');
  await (await visible(page, `${sel} [data-testid=approve]`, 'the approve button')).click();
  await waitUntil(() => page.evaluate((s) => {
    const r = document.querySelector(s);
    return r === null || /approved|consumed/i.test(r.querySelector('[data-testid=state]')?.textContent ?? '');
  }, sel), 'the row to show approved (or leave the pending list)');
  await noAlerts(page, 'approvals after approving');
  await shot(page, 'approvals-approved');
  await page.browserContext().close();
}

async function tour(browser) {
  const page = await signIn(browser, env.GH_TOUR_USER, env.GH_TOUR_PASSWORD ?? '', '#/sessions');
  current = page;
  const pages = {
    sessions: '[data-testid=sessions-table]',
    audit: '[data-testid=verify-status]',
    access: 'form[data-testid=access-form]',
    dashboard: 'svg[data-testid=chart-per-minute]',
  };
  for (const [name, key] of Object.entries(pages)) {
    await nav(page, name);
    await visible(page, key, `the ${name} page's ${key}`);
    if (name === 'audit') {
      await waitUntil(() => textOf(page, key), 'the verification status text');
      info.verify_status = await textOf(page, key);
    }
    if (name === 'dashboard') {
      await waitUntil(() => page.$eval(key, (e) => e.querySelectorAll('rect, path, circle, line, polyline, polygon').length > 0),
        'the per-minute chart to draw something');
    }
    await new Promise((r) => setTimeout(r, 500)); // let the page load its data
    await noAlerts(page, `page ${name}`);
    await shot(page, name);
  }
}

let browser;
let current;
let exitCode = 0;
const started = Date.now();
try {
  browser = await puppeteer.launch({
    browser: 'firefox', executablePath: FIREFOX, headless: true, protocol: 'webDriverBiDi', timeout: 30000,
  });
  info.browser_version = await browser.version();
  await approve(browser);
  await tour(browser);
} catch (err) {
  exitCode = 1;
  await record.failed(err, current);
} finally {
  if (browser) await browser.close().catch(() => {});
}
info.seconds = (Date.now() - started) / 1000;
record.finish();
process.exit(exitCode);
