"""The web console's side of the admin API (docs/console.md) end to end, without a browser: people
sign in through the real OpenID Connect provider's login and consent pages (authorization code
flow with PKCE, tests/harness/console.py), and every console endpoint is called both with the
`gh_session` cookie (and the CSRF token) and with bearer tokens from the same provider.

People and roles (admin.roles from the IdP's groups): alice [analysts] requester, bob [dba]
reviewer, carol [auditors] auditor, dave [admins] admin; the etl-agent (client credentials) is a
requester.

- sign-in: the cookies' attributes, the roles, a callback with a wrong state or without the
  login cookie (400, no session), a forged session cookie (401), logout (the old cookie is dead);
- CSRF: cookie POSTs need X-CSRF-Token (403 {"error":"csrf"} without or with a wrong one);
  bearer POSTs do not;
- security headers of /console/ (CSP, nosniff, no-referrer);
- sessions: listed for reviewers, auditors and admins; ended by admins only, and the client then
  fails with 57P01; the end is in the audit trail;
- approvals: requesters cannot approve; nobody approves their own request, admins included;
- audit record, export, verify and stats: auditors and admins only; the export's CSV header and
  rows (oldest first, formula cells defused), verify ok per node, stats counting what was run;
- /approvals/{id} links lead into the console; the event stream says when approvals change.
"""
from __future__ import annotations

import csv
import http.client
import io
import json
import re
import threading
import time
import urllib.parse
import uuid

import psycopg
import pytest

import pgwire

from tests.harness.console import (ACCOUNTS, CONSOLE_PASSWORDS, CUSTOMERS, ROLES_OF, ConsoleClient, ConsoleStack,
                                   HeldPsql, RunningPsql, bearer, bearer_request, cookie_attributes, wait_for)

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
CSV_COLUMNS = ["time", "seq", "node", "type", "identity", "email", "groups", "target", "database", "kinds", "tables",
               "tags", "decision", "rule", "outcome", "sqlstate", "rows", "text"]
PEOPLE = ("alice", "bob", "carol", "dave")


@pytest.fixture(scope="module")
def stack(pg, tmp_path_factory):
    s = ConsoleStack(pg, tmp_path_factory.mktemp("gh-console-api"))
    yield s
    s.stop()


def callers(stack, *people):
    """(label, call) for each person twice: with their bearer token and with their console cookie.
    call(method, path, body=None) -> (status, JSON body)."""
    out = []
    for who in people:
        out.append((f"{who} bearer", lambda m, p, b=None, who=who: stack.api(who, m, p, b)))
        out.append((f"{who} cookie", lambda m, p, b=None, who=who: stack.console(who).api(m, p, b)))
    return out


def raw_callers(stack, *people):
    """As callers(), answering the whole Answer (for CSV and headers)."""
    out = []
    for who in people:
        out.append((f"{who} bearer", lambda m, p, who=who: bearer_request(stack.admin_url, m, p, stack.token(who))))
        out.append((f"{who} cookie", lambda m, p, who=who: stack.console(who).request(m, p)))
    return out


def connect(stack, user: str, app: str = "console-e2e") -> psycopg.Connection:
    return psycopg.connect(host="127.0.0.1", port=stack.port, user=user, password=stack.token(user), dbname="app",
                           sslmode="disable", connect_timeout=15, application_name=app, autocommit=True)


def sessions_of(stack, app: str) -> list[dict]:
    status, doc = stack.api("dave", "GET", "/api/v1/sessions")
    assert status == 200, doc
    return [s for s in doc["sessions"] if s.get("application_name") == app]


def audit_search(stack, query: str, who: str = "carol") -> list[dict]:
    status, doc = stack.api(who, "GET", f"/api/v1/audit?{query}")
    assert status == 200, doc
    return doc["records"]


# ---- sign-in ----------------------------------------------------------------------------------

def test_sign_in_through_the_idp_gives_a_session_with_the_roles_of_the_groups(stack):
    for who in PEOPLE:
        me = stack.console(who).me
        assert me["subject"] == who and me["email"] == f"{who}@example.com", me
        assert me["kind"] == "human" and sorted(me["roles"]) == ROLES_OF[who], me
        assert isinstance(me["csrf_token"], str) and len(me["csrf_token"]) >= 16, me
        assert me["expires"].endswith("Z") and me["expires_us"] > time.time() * 1e6, me
    bob = stack.console("bob")
    assert stack.console("alice").csrf_token != bob.csrf_token
    # The sign-in went to the IdP's authorization endpoint with the code flow and PKCE.
    login = bob.login_answer
    where = urllib.parse.urlparse(login.headers["Location"])
    q = urllib.parse.parse_qs(where.query)
    assert f"{where.scheme}://{where.netloc}{where.path}" == stack.idp.discovery["authorization_endpoint"], where
    assert q["response_type"] == ["code"] and q["code_challenge_method"] == ["S256"], q
    assert q["client_id"] == ["gatehouse-console"] and q["redirect_uri"] == [stack.admin_url + "/console/callback"], q
    assert q.get("state") and q.get("nonce") and q.get("code_challenge"), q
    assert "openid" in q["scope"][0].split(), q


def test_the_session_cookies_are_httponly_and_samesite(stack):
    c = ConsoleClient(stack.admin_url)
    callback = c.authorize("bob", CONSOLE_PASSWORDS["bob"])
    gh_login = c.login_answer.set_cookie("gh_login")
    assert gh_login, c.login_answer.set_cookies()
    a = cookie_attributes(gh_login)
    assert "httponly" in a and a.get("samesite", "").lower() == "lax" and a.get("path") == "/console/", gh_login
    assert "secure" not in a, gh_login
    answer = c.finish(callback)
    assert answer.status == 200, answer  # a small page that moves the browser to /console/
    assert "/console/" in answer.text, answer
    line = answer.set_cookie("gh_session")
    assert line, answer.set_cookies()
    a = cookie_attributes(line)
    assert "httponly" in a and a.get("samesite", "").lower() == "strict" and a.get("path") == "/", line
    assert "secure" not in a, f"Secure on a plain-http admin_url: {line}"
    assert answer.headers.get("Content-Security-Policy") == CSP, dict(answer.headers)


def test_a_callback_with_a_wrong_state_or_without_the_login_cookie_makes_no_session(stack):
    # the state changed on the way back
    c = ConsoleClient(stack.admin_url)
    callback = c.authorize("alice", CONSOLE_PASSWORDS["alice"])
    parts = urllib.parse.urlparse(callback)
    q = dict(urllib.parse.parse_qsl(parts.query))
    assert q.get("code") and q.get("state"), callback
    wrong = parts._replace(query=urllib.parse.urlencode({**q, "state": q["state"][:-2] + "xx"})).geturl()
    answer = c.finish(wrong)
    assert answer.status == 400, answer
    assert answer.set_cookie("gh_session") is None and c.cookie("gh_session") is None, answer.set_cookies()
    assert c.request("GET", "/api/v1/console/session").status == 401
    # a callback in a browser that did not start the sign-in (no gh_login cookie)
    c = ConsoleClient(stack.admin_url)
    callback = c.authorize("alice", CONSOLE_PASSWORDS["alice"])
    assert c.cookie("gh_login"), "no gh_login cookie after /console/login"
    c.drop_cookie("gh_login")
    answer = c.finish(callback)
    assert answer.status == 400, answer
    assert answer.set_cookie("gh_session") is None and c.cookie("gh_session") is None, answer.set_cookies()
    assert c.request("GET", "/api/v1/console/session").status == 401
    # no code, no state
    answer = ConsoleClient(stack.admin_url).request("GET", "/console/callback")
    assert answer.status == 400 and answer.set_cookie("gh_session") is None, answer
    # Every sign-in, refused ones included, is in the audit trail.
    def logins():
        recs = audit_search(stack, "type=admin&limit=500")
        return [r for r in recs if r.get("fields", {}).get("action") == "console.login"]
    wait_for(lambda: any(r.get("outcome") == "error" for r in logins())
             and any(r.get("outcome") == "ok" for r in logins()), timeout=10,
             what="console.login records, refused and accepted")


def test_not_signed_in_or_a_forged_session_cookie_is_401(stack):
    c = ConsoleClient(stack.admin_url)
    answer = c.request("GET", "/api/v1/console/session")
    assert answer.status == 401 and answer.json().get("error") == "unauthorized", answer
    real = stack.console("dave").cookie("gh_session")
    assert real
    for forged in ("garbage", "A" * len(real), real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB"),
                   real + "x", ""):
        c.set_cookie("gh_session", forged)
        for path in ("/api/v1/console/session", "/api/v1/approvals", "/api/v1/sessions", "/api/v1/audit/verify"):
            answer = c.request("GET", path)
            assert answer.status == 401 and answer.json().get("error") == "unauthorized", (forged, path, answer)


def test_logout_ends_the_session_and_the_old_cookie_is_dead(stack):
    c = stack.new_console("alice")
    old = c.cookie("gh_session")
    assert c.logout(csrf=False).status == 403  # logout needs the CSRF header too
    assert c.request("GET", "/api/v1/console/session").status == 200
    answer = c.logout()
    assert answer.status < 400, answer
    assert c.request("GET", "/api/v1/console/session").status == 401
    replay = ConsoleClient(stack.admin_url)
    replay.set_cookie("gh_session", old)
    answer = replay.request("GET", "/api/v1/console/session")
    assert answer.status == 401, answer
    assert replay.request("GET", "/api/v1/approvals").status == 401
    # the other sessions of the same person are not touched
    assert stack.console("alice").request("GET", "/api/v1/console/session").status == 200


# ---- CSRF -------------------------------------------------------------------------------------

def test_cookie_posts_need_the_csrf_token_and_bearer_posts_do_not(stack):
    alice = stack.console("alice")
    tag = uuid.uuid4().hex[:8]

    def body(how):
        return {"target": "app", "role": "read_write", "duration": "1h", "reason": f"csrf {how} {tag}"}
    refused = {
        "no token": dict(csrf=False),
        "wrong token": dict(csrf="x" * len(alice.csrf_token)),
        "another session's token": dict(csrf=stack.console("bob").csrf_token),
        "empty token": dict(headers={"X-CSRF-Token": ""}, csrf=False),
    }
    for how, kw in refused.items():
        status, doc = alice.api("POST", "/api/v1/access-requests", body(how), **kw)
        assert status == 403 and doc.get("error") == "csrf", (how, status, doc)
    status, doc = alice.api("POST", "/api/v1/access-requests", body("cookie ok"))
    assert status == 201 and doc["requester"]["subject"] == "alice", doc
    status, doc = stack.api("alice", "POST", "/api/v1/access-requests", body("bearer ok"))
    assert status == 201, doc
    # the refused ones made nothing
    status, doc = stack.api("dave", "GET", "/api/v1/access-requests?limit=1000")
    assert status == 200, doc
    reasons = {r["reason"] for r in doc["access_requests"] if tag in r["reason"]}
    assert reasons == {f"csrf cookie ok {tag}", f"csrf bearer ok {tag}"}, reasons
    # a GET with the cookie needs no token
    assert alice.api("GET", "/api/v1/access-requests")[0] == 200


# ---- headers and links --------------------------------------------------------------------------

def test_console_responses_carry_the_security_headers(stack):
    c = ConsoleClient(stack.admin_url)
    index = c.request("GET", "/console/")
    assert index.status == 200 and "text/html" in index.headers.get("Content-Type", ""), index
    for answer in (index, c.request("GET", "/console/login"), c.request("GET", "/console/callback?code=x&state=y")):
        h = answer.headers
        assert h.get("Content-Security-Policy") == CSP, (answer, dict(h))
        assert h.get("X-Content-Type-Options") == "nosniff", (answer, dict(h))
        assert h.get("Referrer-Policy") == "no-referrer", (answer, dict(h))
    # The page loads its script and style from the console itself (CSP 'self': nothing inline).
    assets = re.findall(r'(?:src|href)="(/console/[^"]+)"', index.text)
    assert any(a.endswith(".js") for a in assets), index.text[:1000]
    assert "<script>" not in index.text and "style=" not in index.text, index.text[:1000]
    for a in assets:
        answer = c.request("GET", a)
        assert answer.status == 200, answer
        assert answer.headers.get("X-Content-Type-Options") == "nosniff", (a, dict(answer.headers))
        if a.endswith(".js"):
            assert "javascript" in answer.headers.get("Content-Type", ""), (a, dict(answer.headers))


def test_approval_links_lead_into_the_console(stack):
    answer = ConsoleClient(stack.admin_url).request("GET", "/approvals/apr_abc123")
    assert answer.status in (301, 302, 303, 307, 308), answer
    assert answer.headers["Location"].endswith("/console/#/approvals/apr_abc123"), dict(answer.headers)


# ---- sessions -----------------------------------------------------------------------------------

def test_sessions_are_listed_for_reviewers_auditors_and_admins_only(stack):
    with connect(stack, "alice", app="console-list") as c:
        c.execute("SELECT 1")
        for label, call in callers(stack, "alice"):
            status, doc = call("GET", "/api/v1/sessions")
            assert status == 403 and "sessions" not in doc, (label, status, doc)
        status, doc = stack.api("agent", "GET", "/api/v1/sessions")
        assert status == 403, doc
        assert bearer(stack.admin_url, "GET", "/api/v1/sessions", None)[0] == 401
        for label, call in callers(stack, "bob", "carol", "dave"):
            status, doc = call("GET", "/api/v1/sessions")
            assert status == 200, (label, doc)
            mine = [s for s in doc["sessions"] if s.get("application_name") == "console-list"]
            assert len(mine) == 1, (label, doc)
            s = mine[0]
            assert s["subject"] == "alice" and s["email"] == "alice@example.com" and s["kind"] == "human", s
            assert s["target"] == "app" and s["database"] in ("app", "postgres") and s["groups"] == ["analysts"], s
            assert s["state"] == "idle" and s["statement"] == "" and s["client"].startswith("127.0.0.1"), s
            assert s["started"].endswith("Z") and s["started_us"] <= time.time() * 1e6, s
            assert s["tls"] is False and s["id"], s
    wait_for(lambda: not sessions_of(stack, "console-list"), what="the closed session to leave the list")


def test_only_admins_end_sessions_and_the_client_gets_57P01(stack):
    app = f"console-end-{uuid.uuid4().hex[:6]}"
    conn = connect(stack, "alice", app=app)
    outcome: dict = {}

    def run():
        try:
            conn.execute("SELECT pg_sleep(60) /* ended by an admin */")
            outcome["result"] = "finished"
        except psycopg.Error as e:
            outcome["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        s = wait_for(lambda: [x for x in sessions_of(stack, app) if x["state"] == "active"], timeout=10,
                     what="the running session")[0]
        assert "pg_sleep(60)" in s["statement"] and s["statement_started"].endswith("Z"), s
        path = f"/api/v1/sessions/{s['id']}/end"
        for label, call in callers(stack, "alice", "bob", "carol"):
            status, doc = call("POST", path, {"reason": "not allowed"})
            assert status == 403, (label, status, doc)
        assert t.is_alive() and sessions_of(stack, app), "a refused end ended the session"
        status, doc = stack.console("dave").api("POST", path, {"reason": "console e2e: leave now"})
        assert status == 200 and doc == {"id": s["id"], "ended": True}, (status, doc)
        t.join(15)
        assert not t.is_alive(), "the client was not ended"
        err = outcome.get("error")
        assert isinstance(err, psycopg.OperationalError), outcome
        # libpq reads a FATAL that closes the connection as a broken connection: psycopg has no
        # sqlstate for it (as for PostgreSQL's own pg_terminate_backend); the text is there. The
        # SQLSTATE itself is checked on the wire and with psql below.
        assert "by an administrator (dave@example.com): console e2e: leave now" in str(err), str(err)
        wait_for(lambda: not sessions_of(stack, app), what="the ended session to leave the list")
    finally:
        conn.close()
    status, doc = stack.console("dave").api("POST", path, {"reason": "again"})
    assert status == 404, doc
    status, doc = stack.api("dave", "POST", "/api/v1/sessions/no-such-session/end", {"reason": "x"})
    assert status == 404, doc

    # On the wire: FATAL 57P01 with who and why, then the connection closes.
    w = pgwire.connect(stack.port, "alice", stack.token("alice"), application_name=app + "-wire")
    try:
        w.send(pgwire.query("SELECT pg_sleep(60)"))
        s2 = wait_for(lambda: [x for x in sessions_of(stack, app + "-wire") if x["state"] == "active"], timeout=10,
                      what="the wire session running")[0]
        status, doc = stack.api("dave", "POST", f"/api/v1/sessions/{s2['id']}/end", {"reason": "wire check"})
        assert status == 200 and doc == {"id": s2["id"], "ended": True}, (status, doc)
        fields = w.read_error()
        assert fields.get("S") == "FATAL" and fields.get("C") == "57P01", fields
        assert "(dave@example.com): wire check" in fields.get("M", ""), fields
        w.expect_closed()
    finally:
        w.close()

    def ends():
        return [r for r in audit_search(stack, "type=admin&identity=dave&limit=500")
                if r.get("fields", {}).get("action") == "sessions.end" and r["fields"].get("status") == "200"
                and str(r["fields"].get("id")) == str(s["id"])]
    rec = wait_for(ends, timeout=10, what=f"the sessions.end record of session {s['id']}")
    assert len(rec) == 1, rec
    assert rec[0]["identity"]["subject"] == "dave" and "leave now" in json.dumps(rec[0]), rec
    # the session's own disconnect record says who ended it
    gone = wait_for(lambda: [r for r in audit_search(stack, "type=disconnect&identity=alice&limit=500")
                             if "dave@example.com" in json.dumps(r)], timeout=10,
                    what="alice's disconnect record naming dave")
    assert any("leave now" in json.dumps(r) for r in gone), gone
    refused = [r for r in audit_search(stack, "type=admin&identity=bob&limit=500")
               if r.get("fields", {}).get("action") == "sessions.end"]
    assert refused and all(r["fields"].get("status") == "403" for r in refused), refused


def test_psql_ended_by_an_admin_with_a_bearer_token_fails_with_57P01(stack):
    app = f"console-psql-{uuid.uuid4().hex[:6]}"
    p = RunningPsql(stack.port, "alice", stack.token("alice"), "SELECT pg_sleep(60)", app=app)
    try:
        s = wait_for(lambda: [x for x in sessions_of(stack, app) if x["state"] == "active"], timeout=15,
                     what="psql's running session")[0]
        assert s["subject"] == "alice" and "pg_sleep" in s["statement"], s
        status, doc = stack.api("dave", "POST", f"/api/v1/sessions/{s['id']}/end", {"reason": "maintenance"})
        assert status == 200 and doc.get("ended") is True, doc
        rc, out, err = p.finish(timeout=20)
        assert rc != 0, (rc, out, err)
        assert "FATAL:  57P01:" in err and "by an administrator (dave@example.com): maintenance" in err, err
    finally:
        p.kill()


def test_the_end_message_is_worded_as_documented(stack):
    """docs/console.md: the client gets FATAL 57P01 "terminating connection: ended by an administrator
    (who): reason"."""
    app = f"console-words-{uuid.uuid4().hex[:6]}"
    w = pgwire.connect(stack.port, "alice", stack.token("alice"), application_name=app)
    try:
        s = wait_for(lambda: sessions_of(stack, app), timeout=10, what="the session")[0]
        status, doc = stack.api("dave", "POST", f"/api/v1/sessions/{s['id']}/end", {"reason": "wording"})
        assert status == 200, doc
        fields = w.read_error()
        assert fields.get("C") == "57P01", fields
        assert fields.get("M") == "terminating connection: ended by an administrator (dave@example.com): wording", \
            fields
    finally:
        w.close()


# ---- approvals ----------------------------------------------------------------------------------

def test_requesters_cannot_approve_and_nobody_approves_their_own_request(stack):
    # alice's also reads a classified column (console_customers.email, tag pii)
    sensitive = f" AND NOT EXISTS (SELECT 1 FROM {CUSTOMERS} WHERE email = 'nobody@example.org')"
    held = {who: HeldPsql(stack.port, who, stack.token(who),
                          f"UPDATE {ACCOUNTS} SET balance = balance + 1 WHERE id = {n}"
                          f"{sensitive if who == 'alice' else ''} RETURNING id, balance")
            for who, n in (("alice", 1), ("bob", 2), ("dave", 3))}
    try:
        path = {who: f"/api/v1/approvals/{h.request_id}/approve" for who, h in held.items()}
        for label, call in callers(stack, "alice", "carol"):  # a requester, an auditor: no deciding
            status, doc = call("POST", path["alice"], {"comment": "mine"})
            assert status == 403 and doc.get("error") == "forbidden", (label, status, doc)
            status, doc = call("POST", path["bob"], {"comment": "x"})
            assert status == 403 and doc.get("error") == "forbidden", (label, status, doc)
        for who in ("bob", "dave"):  # a reviewer, an admin: not their own
            for label, call in callers(stack, who):
                status, doc = call("POST", path[who], {"comment": "my own"})
                assert status == 403 and doc.get("error") == "self_approval", (label, status, doc)
                status, doc = call("POST", f"/api/v1/approvals/{held[who].request_id}/reject", {"reason": "own"})
                assert status == 403 and doc.get("error") == "self_approval", (label, status, doc)
        for who, h in held.items():
            status, doc = stack.api("carol", "GET", f"/api/v1/approvals/{h.request_id}")
            assert status == 200 and doc["state"] == "pending" and doc["votes"] == [], doc
            assert h.proc.poll() is None, f"{who}'s statement stopped waiting"
        # The console's additions to a request.
        status, doc = stack.console("bob").api("GET", f"/api/v1/approvals/{held['alice'].request_id}")
        assert status == 200, doc
        assert ACCOUNTS in " ".join(doc["tables"]) and CUSTOMERS in " ".join(doc["tables"]), doc
        # api.md: "<tag> on <schema.table.column>"; the column as classified (table.column) is taken too
        assert len(doc["sensitive_columns"]) == 1, doc
        assert re.fullmatch(rf"pii on (public\.)?{CUSTOMERS}\.email", doc["sensitive_columns"][0]), doc
        assert doc["row_estimate"] is None or isinstance(doc["row_estimate"], (int, float)), doc
        # Decided by someone else: bob (cookie) approves alice's, dave (cookie) bob's, bob (bearer) dave's.
        for approver, who, call in (("bob", "alice", stack.console("bob").api),
                                    ("dave", "bob", stack.console("dave").api),
                                    ("bob", "dave", lambda m, p, b: stack.api("bob", m, p, b))):
            status, doc = call("POST", path[who], {"comment": f"{approver} checked"})
            assert status == 200 and doc["state"] == "approved", (approver, who, doc)
            assert doc["votes"][0]["comment"] == f"{approver} checked", doc
        for who, n in (("alice", 1), ("bob", 2), ("dave", 3)):
            rc, out, err = held[who].finish()
            assert rc == 0 and out.splitlines()[0] == f"{n}|101", (who, rc, out, err)
    finally:
        for h in held.values():
            h.kill()


# ---- audit --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def marker(stack):
    """A statement alice ran (its text holds a unique marker), and its audit record."""
    m = f"console_marker_{uuid.uuid4().hex[:10]}"
    with connect(stack, "alice") as c:
        assert c.execute(f"SELECT '{m}' AS m, count(*) FROM {ACCOUNTS}").fetchone()[0] == m
    recs = wait_for(lambda: [r for r in audit_search(stack, f"text={m}&type=statement")
                             if m in r.get("sql", {}).get("text", "")], timeout=10, what="the marker's record")
    return m, recs[0]


def test_audit_endpoints_are_for_auditors_and_admins(stack, marker):
    m, rec = marker
    paths = [f"/api/v1/audit?text={m}", f"/api/v1/audit/records/{rec['node']}/{rec['seq']}",
             f"/api/v1/audit/export?format=csv&text={m}", f"/api/v1/audit/export?format=json&text={m}",
             "/api/v1/audit/verify", "/api/v1/stats?since=1h"]
    for label, call in raw_callers(stack, "alice", "bob"):
        for path in paths:
            answer = call("GET", path)
            assert answer.status == 403, (label, path, answer)
            assert m not in answer.text, (label, path, answer)
    for path in paths:
        answer = bearer_request(stack.admin_url, "GET", path, stack.token("agent"))
        assert answer.status == 403, (path, answer)
        answer = bearer_request(stack.admin_url, "GET", path, None)
        assert answer.status == 401, (path, answer)
    for label, call in raw_callers(stack, "carol", "dave"):
        for path in paths:
            answer = call("GET", path)
            assert answer.status == 200, (label, path, answer)
        doc = call("GET", paths[1]).json()
        assert doc["record"]["seq"] == rec["seq"] and doc["record"]["node"] == rec["node"], doc
        assert m in doc["record"]["sql"]["text"] and doc["record"]["identity"]["subject"] == "alice", doc
    status, doc = stack.api("carol", "GET", f"/api/v1/audit/records/{rec['node']}/{rec['seq'] + 10_000_000}")
    assert status == 404, doc
    status, doc = stack.api("carol", "GET", f"/api/v1/audit/records/no-such-node/{rec['seq']}")
    assert status == 404, doc


def test_the_csv_export_has_the_header_row_and_the_records(stack, marker):
    m, rec = marker
    with connect(stack, "alice") as c:
        for i in range(3):
            c.execute(f"SELECT '{m}', {i}, 'a \"quoted\", comma'")
        with pytest.raises(psycopg.Error):  # not SQL: refused, and recorded with its text
            c.execute(f"=HYPERLINK(1) /* {m} */")
    deviations = []  # from docs/console.md, reported together after the records are checked
    for who in ("carol", "dave"):
        def export():
            a = stack.console(who).request("GET", f"/api/v1/audit/export?format=csv&type=statement&text={m}"
                                                  "&identity=alice")
            assert a.status == 200, a
            return a if len(list(csv.reader(io.StringIO(a.text)))) >= 6 else None
        answer = wait_for(export, timeout=10, what="5 statements in the export")
        assert answer.headers.get("Content-Type", "").startswith("text/csv"), dict(answer.headers)
        assert "attachment" in answer.headers.get("Content-Disposition", ""), dict(answer.headers)
        rows = list(csv.reader(io.StringIO(answer.text)))
        if rows[0] != CSV_COLUMNS:
            deviations.append(f"CSV header is {','.join(rows[0])}, docs/console.md says {','.join(CSV_COLUMNS)}")
        body = [dict(zip(rows[0], r)) for r in rows[1:]]
        assert len(body) == 5 and all(len(r) == len(rows[0]) for r in rows[1:]), rows
        assert answer.headers.get("X-Gatehouse-Records") == "5", dict(answer.headers)
        text_of = [r.get("statement", r.get("text", "")) for r in body]
        assert all(r["identity"] == "alice" and r["email"] == "alice@example.com" and r["target"] == "app"
                   and r["type"] == "statement" for r in body) and all(m in t for t in text_of), body
        seqs = [int(r["seq"]) for r in body]
        if seqs != sorted(seqs):
            deviations.append(f"CSV export is not oldest first: seq {seqs}")
        assert str(rec["seq"]) in [r["seq"] for r in body] and all(r["node"] == rec["node"] for r in body), body
        assert any('a "quoted", comma' in t for t in text_of), body
        # a cell a spreadsheet would run as a formula is defused
        assert f"'=HYPERLINK(1) /* {m} */" in text_of, text_of
    answer = stack.console("carol").request("GET", f"/api/v1/audit/export?format=json&type=statement&text={m}")
    assert answer.status == 200 and "json" in answer.headers.get("Content-Type", ""), answer
    assert "attachment" in answer.headers.get("Content-Disposition", ""), dict(answer.headers)
    doc = answer.json()
    assert isinstance(doc, list) and len(doc) == 5, doc
    assert all(m in r["sql"]["text"] and r["identity"]["subject"] == "alice" for r in doc), doc
    assert f"=HYPERLINK(1) /* {m} */" in [r["sql"]["text"] for r in doc], doc  # JSON keeps the text as it was
    seqs = [r["seq"] for r in doc]
    if seqs != sorted(seqs):
        deviations.append(f"JSON export is not oldest first: seq {seqs}")
    answer = stack.console("carol").request("GET", "/api/v1/audit/export?format=xml")
    assert answer.status == 400, answer
    assert not deviations, "\n".join(dict.fromkeys(deviations))


def test_verify_says_ok_on_an_intact_store(stack, marker):
    for label, call in callers(stack, "carol", "dave"):
        status, doc = call("GET", "/api/v1/audit/verify")
        assert status == 200, (label, doc)
        assert doc["ok"] is True and doc["records"] > 0, (label, doc)
        assert doc["checked"].endswith("Z") and doc["checked_us"] > 0 and isinstance(doc["message"], str), doc
        assert doc["signatures_checked"] is False, doc
        nodes = {n["node"]: n for n in doc["nodes"]}
        assert set(nodes) == {"console-e2e"}, doc
        n = nodes["console-e2e"]
        assert n["ok"] is True and "problem" not in n and n["records"] == doc["records"], doc
        assert 1 <= n["first_seq"] <= marker[1]["seq"] and n["last_seq"] >= n["first_seq"], doc
        assert len(n["last_hash"]) == 64 and isinstance(n["checkpoints"], int), doc


def test_stats_count_the_statements_run(stack):
    def app_statements(doc):
        return sum(t["statements"] for t in doc["targets"] if t["target"] == "app")
    status, before = stack.api("carol", "GET", "/api/v1/stats?since=1h")
    assert status == 200, before
    assert before["bucket_s"] == 60, before
    for key in ("since_us", "until_us", "per_minute", "targets", "top_sensitive"):
        assert key in before, before
    with connect(stack, "alice") as c:
        for i in range(5):
            c.execute(f"SELECT {i}")
        c.execute(f"SELECT name, email FROM {CUSTOMERS} WHERE id = 1")
        c.execute(f"SELECT email FROM {CUSTOMERS} WHERE id = 2")

    def counted():
        status, doc = stack.console("dave").api("GET", "/api/v1/stats?since=1h")
        assert status == 200, doc
        return doc if app_statements(doc) >= app_statements(before) + 7 else None
    after = wait_for(counted, timeout=15, what="the 7 statements in the stats")
    assert after["until_us"] - after["since_us"] == pytest.approx(3600e6, rel=0.01), after
    per_minute = sum(p["statements"] for p in after["per_minute"])
    assert per_minute >= app_statements(after), after
    for p in after["per_minute"]:
        assert set(p) >= {"minute_us", "statements", "blocked", "masked", "reviewed"}, p
        assert after["since_us"] - 60e6 <= p["minute_us"] <= after["until_us"], p
    alice = [t for t in after["top_sensitive"] if t["identity"] in ("alice", "alice@example.com")]
    assert alice and alice[0]["statements"] >= 2, after["top_sensitive"]
    assert any(CUSTOMERS in t for t in alice[0]["tables"]), alice
    status, doc = stack.api("carol", "GET", "/api/v1/stats?since=banana")
    assert status == 400, doc


# ---- the event stream ---------------------------------------------------------------------------

class EventStream:
    """GET /api/v1/events read line by line with a socket timeout."""

    def __init__(self, port: int, headers: dict, timeout: float = 20):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.conn.request("GET", "/api/v1/events", headers={"Accept": "text/event-stream", **headers})
        self.resp = self.conn.getresponse()

    def events(self, seconds: float):
        """Yields (event, data) until `seconds` have passed."""
        deadline = time.time() + seconds
        event, data = None, []
        while time.time() < deadline:
            line = self.resp.readline()
            if not line:
                return
            line = line.decode().rstrip("\r\n")
            if line == "":
                if event or data:
                    yield event, "\n".join(data)
                event, data = None, []
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())

    def close(self):
        self.conn.close()


def test_the_event_stream_says_when_approvals_change(stack):
    a = bearer_request(stack.admin_url, "GET", "/api/v1/approvals", None)
    assert a.status == 401
    s = EventStream(stack.admin_port, {})
    try:
        assert s.resp.status == 401, s.resp.status
    finally:
        s.close()
    bob = stack.console("bob")
    s = EventStream(stack.admin_port, {"Cookie": f"gh_session={bob.cookie('gh_session')}"})
    held = None
    try:
        assert s.resp.status == 200, (s.resp.status, s.resp.read(300))
        assert s.resp.getheader("Content-Type", "").startswith("text/event-stream"), s.resp.getheaders()
        held = HeldPsql(stack.port, "alice", stack.token("alice"),
                        f"UPDATE {ACCOUNTS} SET balance = balance + 1 WHERE id = 10 RETURNING id, balance")
        seen = []
        for event, data in s.events(15):
            seen.append((event, data))
            if event == "changed" and "approvals" in json.loads(data).get("topics", []):
                break
        else:
            pytest.fail(f"no `event: changed` with topic approvals within 15 s of the hold; seen {seen}")
    finally:
        s.close()
        if held:
            status, doc = stack.api("bob", "POST", f"/api/v1/approvals/{held.request_id}/reject",
                                    {"reason": "event stream test"})
            assert status == 200, doc
            rc, out, err = held.finish()
            assert rc != 0 and "event stream test" in err, err
