"""The web console in a real browser: Debian's chromium, driven by playwright-core from Node.js
(tests/console/console_e2e.mjs), signs in through the real OpenID Connect provider's login and
consent pages and works against a real Gatehouse and PostgreSQL, with real psql clients.

- a reviewer approves, in the inbox, a statement psql is waiting on (psql then gets its rows); a
  second statement held while the inbox is open shows up by itself and is rejected;
- an auditor searches the audit trail by identity, opens a record, sees the chain verified and
  downloads the CSV and JSON exports;
- a requester asks for access with the form and revokes her grant (the API then shows it revoked);
- an admin ends a psql session from the sessions page (psql fails with 57P01);
- the dashboard draws its charts; every page renders for an admin;
- the same in Firefox (Debian's firefox-esr, driven by puppeteer-core over WebDriver BiDi,
  tests/console/console_firefox.mjs): a reviewer approves a held statement, psql gets its row,
  and an admin visits every page.

Every page is screenshotted (1280x800) into $GH_ARTIFACTS (default tests/e2e/artifacts/console/).
Each scenario also fails on a CSP violation reported in the browser console, an uncaught error,
an error alert, or a request answered with an unexpected 4xx/5xx.

chromium, firefox-esr and tests/console/node_modules come from scripts/install-deps.sh; without them these
tests fail (they are not skipped).
"""
from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.harness import REPO
from tests.harness.console import (ACCOUNTS, CONSOLE_PASSWORDS, CUSTOMERS, ConsoleStack, HeldPsql, RunningPsql,
                                   wait_for)

CONSOLE_DIR = REPO / "tests" / "console"
SCRIPT = CONSOLE_DIR / "console_e2e.mjs"
FIREFOX_SCRIPT = CONSOLE_DIR / "console_firefox.mjs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FIREFOX = os.environ.get("FIREFOX", "/usr/bin/firefox-esr")
NODE = os.environ.get("NODE", "node")
ARTIFACTS = Path(os.environ.get("GH_ARTIFACTS", REPO / "tests" / "e2e" / "artifacts" / "console"))
CSV_HEADER = ("time,seq,node,type,identity,email,groups,target,database,kinds,tables,tags,decision,rule,outcome,"
              "sqlstate,rows,text")
SCENARIO_TIMEOUT = 150  # seconds, for one node run; the script's own watchdog fires first


@pytest.fixture(scope="module")
def browser_ready():
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append(f"{CHROMIUM} (Debian package chromium)")
    if shutil.which(NODE) is None:
        missing.append("node (Node.js >= 20)")
    if not (CONSOLE_DIR / "node_modules" / "playwright-core").is_dir():
        missing.append(f"{CONSOLE_DIR}/node_modules/playwright-core (npm ci --prefix tests/console)")
    if missing:
        pytest.fail("the console browser tests need " + ", ".join(missing) + "; run scripts/install-deps.sh "
                    "(CI installs them)", pytrace=False)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="module")
def firefox_ready(browser_ready):
    missing = []
    if not Path(FIREFOX).exists():
        missing.append(f"{FIREFOX} (Debian package firefox-esr)")
    if not (CONSOLE_DIR / "node_modules" / "puppeteer-core").is_dir():
        missing.append(f"{CONSOLE_DIR}/node_modules/puppeteer-core (npm ci --prefix tests/console)")
    if missing:
        pytest.fail("the console Firefox test needs " + ", ".join(missing) + "; run scripts/install-deps.sh "
                    "(CI installs them)", pytrace=False)


@pytest.fixture(scope="module")
def stack(pg, tmp_path_factory, browser_ready):
    s = ConsoleStack(pg, tmp_path_factory.mktemp("gh-console-browser"))
    yield s
    s.stop()


def connect(stack, user: str, app: str = "console-browser") -> psycopg.Connection:
    return psycopg.connect(host="127.0.0.1", port=stack.port, user=user, password=stack.token(user), dbname="app",
                           sslmode="disable", connect_timeout=15, application_name=app, autocommit=True)


def run_scenario(stack, scenario: str, user: str, answers: dict | None = None, script: Path = SCRIPT,
                 **params) -> dict:
    """Runs console_e2e.mjs <scenario> (or `script`, e.g. console_firefox.mjs) signed in as `user`;
    `answers` maps a `WAIT <what>` line of the script to a function whose return value is sent
    back. Returns the RESULT object; fails the test when the script fails (with its stderr and the
    tail of the proxy's log)."""
    env = dict(os.environ, GH_URL=stack.admin_url, GH_USER=user, GH_PASSWORD=CONSOLE_PASSWORDS[user],
               GH_ARTIFACTS=str(ARTIFACTS), CHROMIUM=CHROMIUM, FIREFOX=FIREFOX, GH_CSV_HEADER=CSV_HEADER,
               GH_SCENARIO_TIMEOUT_MS=str((SCENARIO_TIMEOUT - 10) * 1000))
    env.update({f"GH_{k.upper()}": str(v) for k, v in params.items()})
    started = time.time()
    err_path = ARTIFACTS / f"{scenario}-stderr.txt"
    err_file = open(err_path, "w")
    proc = subprocess.Popen([NODE, str(script), scenario], cwd=CONSOLE_DIR, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=err_file, text=True, bufsize=1)
    out_lines: list[str] = []
    result = None
    try:
        deadline = started + SCENARIO_TIMEOUT
        while True:
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError(f"scenario {scenario} ran longer than {SCENARIO_TIMEOUT}s")
            ready, _, _ = select.select([proc.stdout], [], [], min(left, 1.0))
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            line = proc.stdout.readline()
            if not line:
                break
            line = line.rstrip("\n")
            out_lines.append(line)
            if line.startswith("WAIT "):
                what = line[5:]
                if not answers or what not in answers:
                    raise AssertionError(f"scenario {scenario} asks for {what!r}, which this test does not answer")
                proc.stdin.write(str(answers[what]()) + "\n")
                proc.stdin.flush()
            elif line.startswith("RESULT "):
                result = json.loads(line[7:])
        proc.wait(timeout=max(1.0, deadline - time.time()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        err_file.close()
        stderr = err_path.read_text(errors="replace")
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except OSError:
                pass
    took = time.time() - started
    print(f"scenario {scenario} as {user}: exit {proc.returncode} in {took:.1f}s; result {result}")
    if proc.returncode != 0 or result is None:
        log_tail = "\n".join(stack.proxy.log().splitlines()[-40:])
        pytest.fail(f"console scenario {scenario} (as {user}) failed, exit {proc.returncode}:\n{stderr[-6000:]}\n"
                    f"stdout:\n" + "\n".join(out_lines[-20:]) + f"\n--- gatehouse log (tail):\n{log_tail}",
                    pytrace=False)
    return result


def assert_clean(result: dict) -> None:
    """No CSP violation, uncaught error, error alert or unexpected 4xx/5xx, and every page shot."""
    assert not result["problems"], "\n".join(result["problems"])
    for f in result["screenshots"]:
        assert Path(f).stat().st_size > 1000, f


def assert_approved_by_bob(stack, held, row: str, comment: str) -> None:
    """The held psql got its row once approved, and the request holds bob's one vote with `comment`."""
    rc, out, err = held.finish(timeout=30)
    assert rc == 0 and out.splitlines()[0] == row, (rc, out, err)
    status, doc = stack.api("carol", "GET", f"/api/v1/approvals/{held.request_id}")
    assert status == 200 and doc["state"] in ("approved", "consumed"), doc
    assert [(v["reviewer"]["subject"], v["comment"], v["approve"]) for v in doc["votes"]] == \
        [("bob", comment, True)], doc["votes"]


def test_a_reviewer_approves_the_held_statement_in_the_inbox(stack):
    sql = f"UPDATE {ACCOUNTS} SET balance = balance + 1 WHERE id = 5 RETURNING id, balance"
    held = HeldPsql(stack.port, "alice", stack.token("alice"), sql, app="console-browser-held")
    second: list[HeldPsql] = []

    def hold_another():
        second.append(HeldPsql(stack.port, "alice", stack.token("alice"),
                               f"UPDATE {ACCOUNTS} SET balance = 0 WHERE id = 6", app="console-browser-held2"))
        return second[0].request_id

    def hold_a_third():
        second.append(HeldPsql(stack.port, "alice", stack.token("alice"),
                               f"UPDATE {ACCOUNTS} SET balance = balance + 1 WHERE id = 8 RETURNING id, balance",
                               app="console-browser-held3"))
        return second[1].request_id

    def dave_approves_the_third():  # another reviewer, through the API, while bob's inbox is open
        status, doc = stack.api("dave", "POST", f"/api/v1/approvals/{second[1].request_id}/approve",
                                {"comment": "dave decides"})
        assert status == 200, doc
        return "ok"
    try:
        result = run_scenario(stack, "approve", "bob",
                              answers={"second-held": hold_another, "third-held": hold_a_third,
                                       "decide-third": dave_approves_the_third},
                              approval_id=held.request_id, statement=f"UPDATE {ACCOUNTS} SET balance",
                              comment="checked with the owner, ticket 4711", reject_reason="use the batch job")
        assert_approved_by_bob(stack, held, "5|101", "checked with the owner, ticket 4711")
        assert second, "the scenario never asked for the second held statement"
        rc, out, err = second[0].finish(timeout=30)
        assert rc != 0 and "rejected by bob@example.com: use the batch job" in err, err
        rc, out, err = second[1].finish(timeout=30)
        assert rc == 0 and out.splitlines()[0] == "8|101", (rc, out, err)
        assert stack.pg.psql(f"select balance from {ACCOUNTS} where id = 6") == "100"
        assert_clean(result)
    finally:
        for h in [held, *second]:
            h.kill()


def test_an_auditor_searches_the_audit_trail_and_exports_it(stack):
    marker = f"console_browser_{uuid.uuid4().hex[:8]}"
    with connect(stack, "alice") as c:
        for i in range(3):
            c.execute(f"SELECT '{marker}', {i}")
    with connect(stack, "bob") as c:
        c.execute(f"SELECT '{marker}', 'not alice'")
    wait_for(lambda: len(stack.api("carol", "GET", f"/api/v1/audit?text={marker}&identity=alice")[1]
                         .get("records", [])) >= 3, timeout=10, what="alice's marker statements in the trail")
    result = run_scenario(stack, "audit", "carol", marker=marker)
    assert result["info"]["audit_rows"] >= 3, result
    csv_text = Path(result["info"]["export_csv"]).read_text()
    assert csv_text.count(marker) >= 3 and "not alice" not in csv_text, csv_text[:2000]
    # The console's searches went through the audited API, as carol.
    status, doc = stack.api("dave", "GET", "/api/v1/audit?type=admin&identity=carol&limit=200")
    assert status == 200, doc
    assert any(r["fields"].get("action") == "audit.search" and "identity=alice" in r["fields"].get("query", "")
               for r in doc["records"]), [r["fields"] for r in doc["records"]]
    assert csv_text.splitlines()[0] == CSV_HEADER, csv_text[:2000]
    assert_clean(result)


def test_a_requester_asks_for_access_and_revokes_her_grant(stack):
    status, req = stack.api("alice", "POST", "/api/v1/access-requests",
                            {"target": "app", "role": "read_only", "duration": "2h", "reason": "console revoke test"})
    assert status == 201, req
    status, doc = stack.api("bob", "POST", f"/api/v1/access-requests/{req['id']}/approve", {"comment": "ok"})
    assert status == 200 and doc["active"] is True, doc
    reason = f"console form request {uuid.uuid4().hex[:6]}"
    result = run_scenario(stack, "access", "alice", grant_id=req["id"], reason=reason,
                          revoke_reason="finished early")
    status, doc = stack.api("alice", "GET", f"/api/v1/access-requests/{req['id']}")
    assert status == 200, doc
    assert doc["active"] is False and doc["revoked"] and doc["revoke_reason"] == "finished early", doc
    assert "alice" in doc["revoked_by"], doc
    status, grants = stack.api("dave", "GET", "/api/v1/grants")
    assert req["id"] not in {g["id"] for g in grants["grants"]}, grants
    status, doc = stack.api("dave", "GET", "/api/v1/access-requests?state=pending&limit=1000")
    mine = [r for r in doc["access_requests"] if r["reason"] == reason]
    assert len(mine) == 1, doc
    r = mine[0]
    assert (r["requester"]["subject"], r["target"], r["role"], r["duration_s"]) == \
        ("alice", "app", "read_write", 3600), r
    assert_clean(result)


def test_an_admin_ends_a_psql_session_from_the_sessions_page(stack):
    app = f"console-browser-{uuid.uuid4().hex[:6]}"
    p = RunningPsql(stack.port, "alice", stack.token("alice"), "SELECT pg_sleep(120) /* console browser */", app=app)
    try:
        def running():
            status, doc = stack.api("dave", "GET", "/api/v1/sessions")
            assert status == 200, doc
            return [s for s in doc["sessions"] if s.get("application_name") == app and s["state"] == "active"]
        sid = wait_for(running, timeout=15, what="psql's running session")[0]["id"]
        result = run_scenario(stack, "sessions", "dave", session_id=sid, statement="pg_sleep(120)",
                              end_reason="console browser maintenance")
        rc, out, err = p.finish(timeout=20)
        assert rc != 0 and "FATAL:  57P01:" in err, (rc, err)
        assert "by an administrator (dave@example.com): console browser maintenance" in err, err
        assert_clean(result)
    finally:
        p.kill()


def test_the_dashboard_draws_its_charts_and_every_page_renders(stack):
    with connect(stack, "alice") as c:
        for i in range(5):
            c.execute(f"SELECT {i}")
        c.execute(f"SELECT name, email FROM {CUSTOMERS} WHERE id < 5")
    result = run_scenario(stack, "tour", "dave")
    assert "alice" in result["info"]["top_sensitive"].lower(), result
    names = {Path(f).name for f in result["screenshots"]}
    assert {f"tour-page-{p}.png" for p in ("approvals", "sessions", "audit", "access", "dashboard")} <= names, names
    assert_clean(result)


def test_in_firefox_a_reviewer_approves_the_held_statement_and_every_page_renders(stack, firefox_ready):
    sql = f"UPDATE {ACCOUNTS} SET balance = balance + 1 WHERE id = 7 RETURNING id, balance"
    held = HeldPsql(stack.port, "alice", stack.token("alice"), sql, app="console-firefox-held")
    try:
        result = run_scenario(stack, "firefox", "bob", script=FIREFOX_SCRIPT, approval_id=held.request_id,
                              statement=f"UPDATE {ACCOUNTS} SET balance", comment="checked in Firefox, ticket 4712",
                              tour_user="dave", tour_password=CONSOLE_PASSWORDS["dave"])
        assert_approved_by_bob(stack, held, "7|101", "checked in Firefox, ticket 4712")
        assert result["info"]["browser_version"].lower().startswith("firefox"), result["info"]
        names = {Path(f).name for f in result["screenshots"]}
        assert {f"firefox-{p}.png" for p in ("approvals", "sessions", "audit", "access", "dashboard")} <= names, names
        assert_clean(result)
    finally:
        held.kill()
