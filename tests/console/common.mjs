// What the two browser scripts (console_e2e.mjs: Chromium through playwright-core;
// console_firefox.mjs: Firefox through puppeteer-core) share: the run's record of problems and
// screenshots and its RESULT line, waiting, and the checks every page gets (CSP violations,
// uncaught errors, error alerts, unexpected 4xx/5xx answers). Both libraries' pages have the
// same `on`, `evaluate` and `screenshot` calls used here.
import * as fs from 'node:fs';
import * as path from 'node:path';

export class Failure extends Error {}
export function fail(message) {
  throw new Failure(message);
}

// For the page's init script: the browser reports a CSP violation as an event; make it a console
// message, which `watch` turns into a problem.
export function reportCspViolations() {
  document.addEventListener('securitypolicyviolation', (e) => {
    console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI} at ${e.sourceFile}:${e.lineNumber}`);
  });
}

// One scenario's record. `total`: a watchdog prints the RESULT line and exits 3 after that long.
export function createRun(scenario, artifacts, total) {
  fs.mkdirSync(artifacts, { recursive: true });
  const run = { scenario, artifacts, problems: [], screenshots: [], info: {}, consoleLog: [] };
  run.problem = (message) => {
    run.problems.push(message);
    console.error(`problem: ${message}`);
  };
  run.shot = async (page, name, step = 15000) => {
    const file = path.join(artifacts, `${scenario}-${name}.png`);
    await page.screenshot({ path: file, timeout: step });
    run.screenshots.push(file);
  };
  run.result = () => console.log(`RESULT ${JSON.stringify({ scenario, problems: run.problems, screenshots: run.screenshots, info: run.info })}`);
  const watchdog = setTimeout(() => {
    console.error(`watchdog: scenario ${scenario} took more than ${total} ms`);
    run.problems.push(`scenario timed out after ${total} ms`);
    run.result();
    process.exit(3);
  }, total);
  // A hard failure: the reason, and the page as it was (screenshot and HTML).
  run.failed = async (err, page) => {
    console.error(`FAILED ${scenario}: ${err instanceof Failure ? err.message : err.stack}`);
    if (!page) return;
    try {
      await page.screenshot({ path: path.join(artifacts, `${scenario}-failure.png`), timeout: 5000 });
      fs.writeFileSync(path.join(artifacts, `${scenario}-failure.html`), await page.content());
      console.error(`at ${page.url()}; screenshot and HTML in ${artifacts}/${scenario}-failure.*`);
    } catch (e) {
      console.error(`(no failure screenshot: ${e.message})`);
    }
  };
  run.finish = () => {
    fs.writeFileSync(path.join(artifacts, `${scenario}-console.log`), `${run.consoleLog.join('\n')}\n`);
    run.result();
    clearTimeout(watchdog);
  };
  return run;
}

export async function waitUntil(fn, what, timeout = 15000, interval = 200) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err.message; // e.g. the page navigated while we asked
    }
    if (Date.now() > deadline) fail(`timed out after ${timeout} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

// Error alerts the console shows now are problems.
export async function noAlerts(run, page, where) {
  const shown = await page.evaluate(() => [...document.querySelectorAll('[role=alert]')]
    .filter((e) => e.getClientRects().length > 0)
    .map((e) => e.textContent.replace(/\s+/g, ' ').trim())
    .filter(Boolean));
  for (const t of shown) run.problem(`${where}: error shown: [role=alert] "${t}"`);
}

// Console messages are logged; CSP violations, uncaught errors, failed requests and 4xx/5xx answers
// are problems, except the 401s of the console's own session check before sign-in
// (`signedIn()` false) and what `ignore(url, status)` accepts.
export function watch(page, run, signedIn, ignore = () => false) {
  page.on('console', (msg) => {
    const t = msg.text();
    run.consoleLog.push(`${msg.type()}: ${t}`);
    if (/Content[- ]Security[- ]Policy|CSP violation|Refused to (load|execute|apply|connect|frame|evaluate)/i.test(t)) {
      run.problem(`CSP violation on ${page.url()}: ${t}`);
    }
  });
  page.on('pageerror', (err) => run.problem(`uncaught error in the page ${page.url()}: ${err.message ?? err}`));
  page.on('response', (res) => {
    const status = res.status();
    if (status < 400) return;
    const url = new URL(res.url());
    const before = !signedIn() && status === 401 && ['/api/v1/console/session', '/api/v1/events'].includes(url.pathname);
    if (!before && !ignore(url, status)) run.problem(`${res.request().method()} ${res.url()} answered ${status}`);
  });
  page.on('requestfailed', (req) => {
    const why = req.failure()?.errorText ?? '';
    if (!/ERR_ABORTED|NS_BINDING_ABORTED/.test(why)) run.problem(`${req.method()} ${req.url()} failed: ${why}`);
  });
}
