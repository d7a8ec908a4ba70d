"""The admin API v1 and the approvals CLI end to end: a real OpenID Connect provider issues the
tokens (device flow for people, client credentials for agents, minted ones for other groups),
a real Gatehouse checks them as bearer tokens and keeps requests in its SQLite approvals store.

- identity and roles (admin.roles: reviewer [dba], admin [secops], auditor [compliance],
  requester: everyone);
- just-in-time access: an agent asks, a reviewer approves, the grant is listed, then revoked;
- the authorization matrix: missing, invalid and expired tokens (401), roles that lack a
  permission (403), nobody approves their own request, requesters see only their own;
- statement approvals (no API creates them): unknown ids and authorization;
- bad input: malformed JSON, the 64 KiB payload limit, bad filters and durations;
- every call, refused ones included, in the audit trail with who made it;
- the CLI (`approvals`, `request-access --wait`, `grants`) against the running proxy.
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.harness import BINARY, Gatehouse, audit_store
from tests.harness.oidc import OIDC_PASSWORDS

ROLES = {"reviewer": ["dba"], "admin": ["secops"], "auditor": ["compliance"]}


def api_config(pg, idp, **admin_overrides) -> dict:
    admin = {"roles": dict(ROLES)}
    admin.update(admin_overrides)
    return {
        "threads": 2,
        "log": {"level": "info"},
        "admin": admin,
        "oidc": {"allow_loopback_plaintext": True,
                 "issuers": [{"issuer": idp.issuer, "audience": ["gatehouse", "gatehouse-cli"],
                              "min_refresh_interval": "1s"}]},
        "approvals": {"max_grant": "8h"},
        "targets": [{
            "name": "app",
            "environment": "test",
            "backend": {"host": "127.0.0.1", "port": pg.port, "database": "postgres"},
            "login": {"user": pg.user, "password": pg.password},
        }],
    }


@pytest.fixture(scope="module")
def proxy(pg, oidc, tmp_path_factory):
    p = Gatehouse(api_config(pg, oidc), workdir=tmp_path_factory.mktemp("gh-api")).start()
    yield p
    p.stop()


class Tokens:
    def __init__(self, idp):
        self.idp = idp
        self.bob = idp.device_login("gatehouse-cli", "bob", OIDC_PASSWORDS["bob"])["access_token"]  # dba: reviewer
        self.alice = idp.device_login("gatehouse-cli", "alice", OIDC_PASSWORDS["alice"])["access_token"]  # requester
        self.agent = idp.client_credentials("etl-agent")["access_token"]
        self.sam = self.person("sam", ["secops"])        # admin
        self.carol = self.person("carol", ["compliance"])  # auditor
        self.dave = self.person("dave", ["dba"])         # a second reviewer

    def person(self, sub: str, groups: list[str], **claims) -> str:
        return self.idp.mint(self.idp.standard_claims(sub=sub, email=f"{sub}@example.com", groups=groups,
                                                      lifetime=1800, **claims))


@pytest.fixture(scope="module")
def tok(oidc) -> Tokens:
    return Tokens(oidc)


def call(proxy, method: str, path: str, token: str | None = None, body=None, raw: bytes | None = None,
         headers: dict | None = None) -> tuple[int, dict, dict]:
    """(status, headers, JSON body) of one admin API call."""
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
    if data is not None:
        h.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(f"http://127.0.0.1:{proxy.admin_port}{path}", data=data, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            status, hdrs, text = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, text = e.code, dict(e.headers), e.read()
    try:
        doc = json.loads(text) if text else {}
    except ValueError:
        pytest.fail(f"{method} {path}: HTTP {status} with a body that is not JSON: {text[:300]!r}")
    return status, hdrs, doc


def get(proxy, path, token=None):
    return call(proxy, "GET", path, token)


def post(proxy, path, token=None, body=None, **kw):
    return call(proxy, "POST", path, token, body if body is not None else ({} if "raw" not in kw else None), **kw)


def request_access(proxy, token, target="app", role="read_write", duration="1h", reason="nightly backfill") -> dict:
    status, hdrs, doc = post(proxy, "/api/v1/access-requests", token,
                             {"target": target, "role": role, "duration": duration, "reason": reason})
    assert status == 201, doc
    assert hdrs.get("Location") == f"/api/v1/access-requests/{doc['id']}"
    return doc


def ids(items: list[dict]) -> set[str]:
    return {x["id"] for x in items}


# ---- identity and roles -----------------------------------------------------------------------

def test_whoami_shows_the_identity_and_the_roles_from_its_groups(proxy, tok):
    status, _, me = get(proxy, "/api/v1/whoami", tok.bob)
    assert status == 200, me
    assert me["subject"] == "bob" and me["email"] == "bob@example.com" and me["kind"] == "human"
    assert me["groups"] == ["dba"] and me["roles"] == ["requester", "reviewer"]
    assert me["issuer"] == tok.idp.issuer and me["token_expires"].endswith("Z")
    _, _, agent = get(proxy, "/api/v1/whoami", tok.agent)
    assert agent["subject"] == "etl-agent" and agent["kind"] == "agent" and agent["roles"] == ["requester"]
    assert get(proxy, "/api/v1/whoami", tok.sam)[2]["roles"] == ["admin", "requester"]
    assert get(proxy, "/api/v1/whoami", tok.carol)[2]["roles"] == ["auditor", "requester"]
    assert get(proxy, "/api/v1/whoami", tok.alice)[2]["roles"] == ["requester"]


ENDPOINTS = [
    ("GET", "/api/v1/whoami"), ("GET", "/api/v1/approvals"), ("GET", "/api/v1/approvals/apr_x"),
    ("POST", "/api/v1/approvals/apr_x/approve"), ("POST", "/api/v1/approvals/apr_x/reject"),
    ("POST", "/api/v1/access-requests"), ("GET", "/api/v1/access-requests"), ("GET", "/api/v1/access-requests/acc_x"),
    ("POST", "/api/v1/access-requests/acc_x/approve"), ("POST", "/api/v1/access-requests/acc_x/reject"),
    ("GET", "/api/v1/grants"), ("POST", "/api/v1/grants/acc_x/revoke"), ("GET", "/api/v1/audit"),
    # the web console's (docs/console.md); they take bearer tokens too
    ("GET", "/api/v1/console/session"), ("GET", "/api/v1/sessions"), ("POST", "/api/v1/sessions/7/end"),
    ("GET", "/api/v1/audit/records/n1/7"), ("GET", "/api/v1/audit/export"), ("GET", "/api/v1/audit/verify"),
    ("GET", "/api/v1/stats"), ("GET", "/api/v1/events"),
]


def example_path(path: str) -> str:
    """An OpenAPI path with its parameters filled in as ENDPOINTS spells them."""
    if "/sessions/" in path:
        return path.replace("{id}", "7")
    path = path.replace("{node}", "n1").replace("{seq}", "7")
    return path.replace("{id}", "apr_x" if "/approvals/" in path else "acc_x")


def test_every_endpoint_needs_a_bearer_token(proxy):
    for method, path in ENDPOINTS:
        status, hdrs, doc = call(proxy, method, path, body={} if method == "POST" else None)
        assert status == 401, (method, path, doc)
        assert hdrs.get("WWW-Authenticate", "").startswith("Bearer"), hdrs
        assert doc["error"] == "unauthorized" and "gatehouse login" in doc["message"], doc


def test_invalid_and_expired_tokens_are_refused_with_the_reason(proxy, tok, oidc):
    now = int(time.time())
    cases = {
        "expired": (oidc.mint(oidc.standard_claims(sub="bob", groups=["dba"], iat=now - 7200, exp=now - 3600)),
                    "expired"),
        "wrong audience": (oidc.mint(oidc.standard_claims(sub="bob", groups=["dba"], aud="billing")), "audience"),
        "foreign issuer": (oidc.mint(oidc.standard_claims(iss="https://evil.example.com", groups=["secops"])),
                           "not accepted"),
        "not a token": ("hunter2", "not an OIDC token"),
        "tampered": (tok.bob[:-4] + ("AAAA" if not tok.bob.endswith("AAAA") else "BBBB"), "signature"),
    }
    for name, (token, text) in cases.items():
        status, hdrs, doc = get(proxy, "/api/v1/approvals", token)
        assert status == 401, (name, doc)
        assert doc["error"] == "invalid_token" and text in doc["message"], (name, doc)
        assert 'error="invalid_token"' in hdrs.get("WWW-Authenticate", ""), (name, hdrs)
    status, hdrs, doc = call(proxy, "GET", "/api/v1/whoami", headers={"Authorization": "Basic Ym9iOnB3"})
    assert status == 401 and "Bearer" in doc["message"], doc
    # The body's error and the challenge agree (found by an operator trial: body "unauthorized",
    # header invalid_token): no bearer token sent, no error code in the challenge (RFC 6750 3.1).
    assert doc["error"] == "unauthorized" and hdrs.get("WWW-Authenticate") == 'Bearer realm="gatehouse"', (doc, hdrs)
    status, hdrs, doc = call(proxy, "GET", "/api/v1/whoami", headers={"Authorization": "Bearer  "})
    assert status == 401 and doc["error"] == "invalid_token", doc
    assert 'error="invalid_token"' in hdrs.get("WWW-Authenticate", ""), hdrs


def test_the_openapi_description_lists_exactly_the_endpoints_served(proxy):
    import yaml  # python3-yaml, installed by scripts/install-deps.sh
    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml").read_text())
    described = {(m.upper(), example_path(p)) for p, ops in spec["paths"].items() for m in ops if m in ("get", "post")}
    assert described == set(ENDPOINTS)


# ---- just-in-time access: request, approve, grant, revoke ---------------------------------------

def test_request_bodies_are_json_with_each_member_once(proxy, tok):
    """A form or text/plain body (what a cross-site form post sends) is refused with 415; a member
    given twice is refused (which one counted would be the parser's choice)."""
    body = b'{"target": "app", "role": "read_write", "duration": "1h", "reason": "a"}'
    status, _, doc = call(proxy, "POST", "/api/v1/access-requests", tok.agent, raw=body,
                          headers={"Content-Type": "text/plain"})
    assert status == 415 and doc["error"] == "unsupported_media_type", doc
    twice = b'{"target": "app", "role": "read_write", "duration": "1h", "reason": "a", "reason": "b"}'
    status, _, doc = call(proxy, "POST", "/api/v1/access-requests", tok.agent, raw=twice)
    assert status == 400 and '"reason" is given twice' in doc["message"], doc
    nested_ok = b'{"target": "app", "role": "read_write", "duration": "1h", "reason": "ok"}'
    status, _, doc = call(proxy, "POST", "/api/v1/access-requests", tok.agent, raw=nested_ok)
    assert status == 201, doc


def test_an_agent_requests_access_a_reviewer_approves_and_the_grant_is_listed_then_revoked(proxy, tok):
    req = request_access(proxy, tok.agent, duration="2h", reason="backfill of the orders table")
    rid = req["id"]
    assert rid.startswith("acc_") and req["state"] == "pending" and req["kind"] == "access"
    assert req["requester"]["subject"] == "etl-agent" and req["requester"]["kind"] == "agent"
    assert req["duration_s"] == 7200 and req["duration"] == "2h" and req["role"] == "read_write"
    assert req["created"].endswith("Z") and isinstance(req["created_us"], int) and req["decided"] is None
    assert req["console_url"] == f"http://127.0.0.1:{proxy.admin_port}/approvals/{rid}"

    # the agent sees its own request; another requester does not; reviewers see all pending ones
    assert get(proxy, f"/api/v1/access-requests/{rid}", tok.agent)[2]["id"] == rid
    assert get(proxy, f"/api/v1/access-requests/{rid}", tok.alice)[0] == 404
    assert rid not in ids(get(proxy, "/api/v1/access-requests", tok.alice)[2]["access_requests"])
    status, _, pending = get(proxy, "/api/v1/access-requests?state=pending", tok.bob)
    assert status == 200 and rid in ids(pending["access_requests"])
    assert all(x["state"] == "pending" for x in pending["access_requests"])
    assert rid not in ids(get(proxy, "/api/v1/grants", tok.bob)[2]["grants"])  # not granted yet

    # a requester cannot decide, not even someone else's request
    status, _, doc = post(proxy, f"/api/v1/access-requests/{rid}/approve", tok.alice, {"comment": "sure"})
    assert status == 403 and doc["error"] == "forbidden" and "reviewer" in doc["message"], doc

    status, _, done = post(proxy, f"/api/v1/access-requests/{rid}/approve", tok.bob, {"comment": "ticket OPS-12"})
    assert status == 200, done
    assert done["state"] == "approved" and done["active"] is True
    assert done["votes"][0]["reviewer_display"] == "bob@example.com" and done["votes"][0]["decision"] == "approve"
    assert done["votes"][0]["comment"] == "ticket OPS-12" and done["votes"][0]["break_glass"] is False
    assert done["expires_us"] - done["decided_us"] == 7200 * 1_000_000
    # decided once: a second vote is a conflict
    status, _, doc = post(proxy, f"/api/v1/access-requests/{rid}/approve", tok.dave, {})
    assert status == 409 and doc["error"] == "not_pending", doc

    # the grant: the holder, reviewers, auditors and admins see it; another requester does not
    for who in (tok.agent, tok.bob, tok.carol, tok.sam):
        status, _, grants = get(proxy, "/api/v1/grants", who)
        assert status == 200 and rid in ids(grants["grants"]), grants
    assert rid not in ids(get(proxy, "/api/v1/grants", tok.alice)[2]["grants"])
    assert all(g["active"] for g in get(proxy, "/api/v1/grants", tok.sam)[2]["grants"])

    # revoking: not by a reviewer who is neither admin nor holder; by an admin
    status, _, doc = post(proxy, f"/api/v1/grants/{rid}/revoke", tok.bob, {"reason": "done"})
    assert status == 403 and "admin or the grant's holder" in doc["message"], doc
    assert post(proxy, f"/api/v1/grants/{rid}/revoke", tok.alice, {"reason": "x"})[0] == 404
    assert post(proxy, f"/api/v1/grants/{rid}/revoke", tok.sam, {})[0] == 400  # a reason is required
    status, _, revoked = post(proxy, f"/api/v1/grants/{rid}/revoke", tok.sam, {"reason": "backfill finished"})
    assert status == 200, revoked
    assert revoked["active"] is False and revoked["revoke_reason"] == "backfill finished" and revoked["revoked"]
    assert rid not in ids(get(proxy, "/api/v1/grants", tok.sam)[2]["grants"])
    status, _, doc = post(proxy, f"/api/v1/grants/{rid}/revoke", tok.sam, {"reason": "again"})
    assert status == 409 and doc["error"] == "not_active", doc


def test_the_holder_may_give_up_their_own_grant(proxy, tok):
    rid = request_access(proxy, tok.alice, role="read_only", duration=1800)["id"]
    assert post(proxy, f"/api/v1/access-requests/{rid}/approve", tok.bob, {})[0] == 200
    assert rid in ids(get(proxy, "/api/v1/grants", tok.alice)[2]["grants"])
    status, _, doc = post(proxy, f"/api/v1/grants/{rid}/revoke", tok.alice, {"reason": "no longer needed"})
    assert status == 200 and doc["active"] is False, doc


def test_nobody_approves_their_own_request(proxy, tok):
    rid = request_access(proxy, tok.bob, role="ddl", reason="schema change")["id"]
    status, _, doc = post(proxy, f"/api/v1/access-requests/{rid}/approve", tok.bob, {"comment": "me"})
    assert status == 403 and doc["error"] == "self_approval", doc
    # an admin is no exception
    rid2 = request_access(proxy, tok.sam, role="ddl", reason="hotfix")["id"]
    status, _, doc = post(proxy, f"/api/v1/access-requests/{rid2}/approve", tok.sam, {})
    assert status == 403 and doc["error"] == "self_approval", doc
    # someone else may
    assert post(proxy, f"/api/v1/access-requests/{rid}/approve", tok.dave, {})[2]["state"] == "approved"


def test_a_rejection_needs_a_reason_and_gives_no_grant(proxy, tok):
    rid = request_access(proxy, tok.agent, role="superuser", reason="just because")["id"]
    status, _, doc = post(proxy, f"/api/v1/access-requests/{rid}/reject", tok.bob, {})
    assert status == 400 and "reason" in doc["message"], doc
    status, _, doc = post(proxy, f"/api/v1/access-requests/{rid}/reject", tok.bob, {"reason": "too broad"})
    assert status == 200 and doc["state"] == "rejected", doc
    assert doc["votes"][0]["decision"] == "reject" and doc["votes"][0]["comment"] == "too broad"
    assert rid not in ids(get(proxy, "/api/v1/grants", tok.sam)[2]["grants"])
    assert post(proxy, f"/api/v1/grants/{rid}/revoke", tok.sam, {"reason": "x"})[0] == 409


def test_an_auditor_reads_everything_and_decides_nothing(proxy, tok):
    rid = request_access(proxy, tok.agent, reason="audit matrix")["id"]
    assert rid in ids(get(proxy, "/api/v1/access-requests", tok.carol)[2]["access_requests"])
    assert get(proxy, f"/api/v1/access-requests/{rid}", tok.carol)[0] == 200
    assert get(proxy, "/api/v1/approvals", tok.carol)[0] == 200
    for path in (f"/api/v1/access-requests/{rid}/approve", f"/api/v1/access-requests/{rid}/reject"):
        status, _, doc = post(proxy, path, tok.carol, {"reason": "no"})
        assert status == 403 and doc["error"] == "forbidden", doc
    assert get(proxy, f"/api/v1/access-requests/{rid}", tok.carol)[2]["state"] == "pending"


def test_access_request_input_is_checked(proxy, tok):
    cases = [
        ({"target": "app", "role": "r", "reason": "x", "duration": "1w"}, "duration"),
        ({"target": "app", "role": "r", "reason": "x", "duration": -1}, "duration"),
        ({"target": "app", "role": "r", "reason": "x", "duration": "2d"}, "longest grant"),  # max_grant 8h
        ({"target": "nope", "role": "r", "reason": "x"}, "no target \"nope\""),
        ({"target": "app", "reason": "x"}, "role: missing"),
        ({"target": "app", "role": "r"}, "reason: missing"),
        ({"target": "app", "role": "r", "reason": "  "}, "reason: must not be empty"),
        ({"target": 5, "role": "r", "reason": "x"}, "target: expected a string"),
        ({"target": "app", "role": "r", "reason": "x", "extra": 1}, "unknown member \"extra\""),
        # found by adversarial testing: null passed as an absent string, a NUL was stored
        ({"target": "app", "role": None, "reason": "x"}, "role: expected a string"),
        ({"target": "app", "role": "read_write\u0000x", "reason": "x"}, "role: must not contain a NUL"),
    ]
    for body, text in cases:
        status, _, doc = post(proxy, "/api/v1/access-requests", tok.agent, body)
        assert status == 400 and doc["error"] == "bad_request" and text in doc["message"], (body, doc)


def test_malformed_json_and_oversized_bodies_are_refused(proxy, tok):
    status, _, doc = post(proxy, "/api/v1/access-requests", tok.agent, raw=b'{"target": "app",')
    assert status == 400 and "not valid JSON" in doc["message"], doc
    status, _, doc = post(proxy, "/api/v1/access-requests", tok.agent, raw=b'["app"]')
    assert status == 400 and "JSON object" in doc["message"], doc
    big = json.dumps({"target": "app", "role": "r", "reason": "x" * (70 * 1024)}).encode()
    status, _, doc = post(proxy, "/api/v1/access-requests", tok.agent, raw=big)
    assert status == 413 and doc["error"] == "payload_too_large", doc
    status, _, doc = get(proxy, "/api/v1/no-such-thing", tok.bob)
    assert status == 404 and doc["error"] == "not_found", doc


# ---- statement approvals (created by the proxy's hold path; none exist here) ---------------------

def test_statement_approvals_unknown_ids_filters_and_authorization(proxy, tok):
    status, _, doc = get(proxy, "/api/v1/approvals?state=pending&target=app&limit=10", tok.bob)
    assert status == 200 and isinstance(doc["approvals"], list), doc
    assert get(proxy, "/api/v1/approvals", tok.alice)[0] == 200  # requesters list (their own)
    status, _, doc = get(proxy, "/api/v1/approvals/apr_doesnotexist", tok.bob)
    assert status == 404 and doc["error"] == "not_found" and "apr_doesnotexist" in doc["message"], doc
    status, _, doc = post(proxy, "/api/v1/approvals/apr_doesnotexist/approve", tok.bob, {"comment": "ok"})
    assert status == 404 and doc["error"] == "not_found", doc
    status, _, doc = post(proxy, "/api/v1/approvals/apr_doesnotexist/reject", tok.sam, {"reason": "no"})
    assert status == 404, doc
    # the role is checked before the id: a requester or an auditor learns nothing
    for who in (tok.alice, tok.agent, tok.carol):
        status, _, doc = post(proxy, "/api/v1/approvals/apr_doesnotexist/approve", who, {})
        assert status == 403 and doc["error"] == "forbidden", doc
    # an access request is not a statement approval
    rid = request_access(proxy, tok.agent, reason="wrong endpoint")["id"]
    assert post(proxy, f"/api/v1/approvals/{rid}/approve", tok.bob, {})[0] == 404
    for query, text in [("state=maybe", "state:"), ("limit=0", "limit:"), ("limit=abc", "limit:"),
                        ("colour=red", "unknown query parameter"), ("state=%FF", "state:"),
                        # parameter pollution: a filter in front may read the other value
                        ("state=pending&state=approved", "given more than once"),
                        ("target=a&limit=5&target=b", "given more than once")]:
        status, _, doc = get(proxy, f"/api/v1/approvals?{query}", tok.bob)
        assert status == 400 and text in doc["message"], (query, doc)
    assert post(proxy, "/api/v1/approvals/apr_x/reject", tok.bob, {})[0] == 400  # no reason
    # Found by adversarial testing: routes matched the decoded path, so an encoded slash reached
    # the approve action past any front proxy filtering by path.
    for path in ("/api/v1/approvals/apr_x%2Fapprove", "/api/v1/%61pprovals/apr_x/approve"):
        status, _, doc = post(proxy, path, tok.bob, {})
        assert status == 400 and "percent-encoded" in doc["message"], (path, doc)


def test_the_other_admin_endpoints_still_answer(proxy):
    base = f"http://127.0.0.1:{proxy.admin_port}"
    assert urllib.request.urlopen(base + "/healthz", timeout=5).read() == b"ok\n"
    assert b"gatehouse_" in urllib.request.urlopen(base + "/metrics", timeout=5).read()


def test_the_audit_trail_is_read_by_auditors_and_admins_only(proxy, tok):
    # It holds every statement's text and parameters: no token, no records; the old path too.
    for path in ("/api/v1/audit?limit=1", "/api/audit?limit=1"):
        status, hdrs, doc = get(proxy, path)
        assert status == 401 and hdrs.get("WWW-Authenticate", "").startswith("Bearer"), (path, status, doc)
        assert "records" not in doc
    for who in (tok.alice, tok.bob, tok.agent):  # requester, reviewer, agent
        status, _, doc = get(proxy, "/api/v1/audit?limit=1", who)
        assert status == 403 and "read the audit trail" in doc["message"], doc
    for who in (tok.carol, tok.sam):  # auditor, admin
        status, _, doc = get(proxy, "/api/v1/audit?limit=5&type=admin", who)
        assert status == 200 and isinstance(doc["records"], list) and "next_cursor" in doc, doc
    # a filter given twice is refused (not read as one of its values), after the caller is known
    status, _, doc = get(proxy, "/api/v1/audit?identity=alice&identity=bob", tok.carol)
    assert status == 400 and "given more than once" in doc["message"], doc
    assert get(proxy, "/api/v1/audit?identity=alice&identity=bob")[0] == 401
    # Refused reads are recorded with who tried, and so are the reads themselves.
    def reads(status: str, subject: str) -> list[dict]:
        _, _, d = get(proxy, "/api/v1/audit?limit=200&type=admin", tok.sam)
        return [r for r in d["records"] if r["fields"].get("action") == "audit.search"
                and r["fields"].get("status") == status and r["fields"].get("subject") == subject]
    deadline = time.time() + 10
    while not (reads("403", "alice") and reads("200", "carol")) and time.time() < deadline:
        time.sleep(0.2)
    assert reads("403", "alice") and reads("200", "carol")


def test_every_call_is_in_the_audit_trail_with_who_made_it(proxy, tok):
    rid = request_access(proxy, tok.agent, reason="audited")["id"]
    post(proxy, f"/api/v1/access-requests/{rid}/approve", tok.bob, {"comment": "audited ok"})
    get(proxy, "/api/v1/grants", tok.carol)
    get(proxy, "/api/v1/whoami")  # refused: no token

    def admin_records() -> list[dict]:
        c = audit_store.connect_rows(proxy.workdir / 'gatehouse-audit.db')
        try:
            return [json.loads(r[0]) for r in c.execute("SELECT body FROM audit_records WHERE type = 'admin'")]
        finally:
            c.close()

    def found() -> list[dict]:
        recs = admin_records()
        want = [
            lambda f: f["action"] == "access.request" and f.get("subject") == "etl-agent" and f.get("id") == rid,
            lambda f: f["action"] == "access.approve" and f.get("email") == "bob@example.com" and f.get("id") == rid
            and f["status"] == "200",
            lambda f: f["action"] == "grants.list" and f.get("subject") == "carol",
            lambda f: f["action"] == "whoami" and f["status"] == "401" and "subject" not in f,
        ]
        return [w for w in want if not any(w(r["fields"]) for r in recs)]

    deadline = time.time() + 10
    while found() and time.time() < deadline:
        time.sleep(0.2)
    assert not found(), admin_records()[-10:]
    recs = admin_records()
    approve = next(r for r in recs if r["fields"]["action"] == "access.approve" and r["fields"].get("id") == rid)
    assert approve["outcome"] == "ok" and approve.get("message") == "audited ok", approve
    refused = [r for r in recs if r["fields"]["status"] in ("401", "403")]
    assert refused and all(r["outcome"] == "error" for r in refused)


def test_roles_follow_a_configuration_reload(pg, oidc, tok, tmp_path):
    """admin.roles and requester groups apply to the next call after a reload; with no role at all,
    every approvals endpoint answers 403 (whoami still answers)."""
    cfg = api_config(pg, oidc)
    p = Gatehouse(cfg, workdir=tmp_path).start()
    try:
        assert post(p, "/api/v1/access-requests", tok.agent, {"target": "app", "role": "r", "reason": "x"})[0] == 201
        cfg["admin"]["roles"]["requester"] = ["analysts"]
        p.write_config(cfg)
        import signal as _signal
        p.signal(_signal.SIGHUP)
        deadline = time.time() + 10
        while time.time() < deadline and get(p, "/api/v1/whoami", tok.agent)[2].get("roles") != []:
            time.sleep(0.1)
        assert get(p, "/api/v1/whoami", tok.agent)[2]["roles"] == []
        status, _, doc = post(p, "/api/v1/access-requests", tok.agent, {"target": "app", "role": "r", "reason": "x"})
        assert status == 403 and "roles held: none" in doc["message"], doc
        for path in ("/api/v1/approvals", "/api/v1/access-requests", "/api/v1/grants"):
            assert get(p, path, tok.agent)[0] == 403, path
        assert post(p, "/api/v1/access-requests", tok.alice, {"target": "app", "role": "r", "reason": "x"})[0] == 201
    finally:
        p.stop()


# ---- the CLI ----------------------------------------------------------------------------------

def cli(*args, token: str | None = None, token_file: Path | None = None, timeout: float = 60,
        **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("GATEHOUSE_ADMIN_URL", None)
    if token_file is not None:
        env["GATEHOUSE_TOKEN_FILE"] = str(token_file)
    argv = [str(BINARY), *map(str, args)]
    if token is not None:
        argv += ["--token", token]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, **kw)


def test_cli_request_access_wait_approve_list_show_revoke(proxy, tok, tmp_path):
    url = ["--admin-url", f"http://127.0.0.1:{proxy.admin_port}"]
    # bob's token where `gatehouse login` saves it
    bob_file = tmp_path / "bob" / "token.json"
    bob_file.parent.mkdir()
    bob_file.write_text(json.dumps({"access_token": tok.bob, "token_type": "Bearer"}))

    env = dict(os.environ, GATEHOUSE_TOKEN_FILE=str(tmp_path / "missing.json"))
    waiter = subprocess.Popen([str(BINARY), "request-access", *url, "--token", tok.agent, "--target", "app",
                               "--role", "read_write", "--for", "30m", "--reason", "cli backfill", "--wait",
                               "--poll-interval", "0.2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        rid = None
        deadline = time.time() + 20
        while rid is None and time.time() < deadline:
            r = cli("approvals", "list", "--state", "pending", "--kind", "access", "--json", *url,
                    token_file=bob_file)
            assert r.returncode == 0, r.stderr
            rid = next((x["id"] for x in json.loads(r.stdout) if x["reason"] == "cli backfill"), None)
            time.sleep(0.2)
        assert rid, "the waiting request never showed up"
        # the table for people
        r = cli("approvals", "list", "--state", "pending", *url, token_file=bob_file)
        assert r.returncode == 0 and rid in r.stdout and "etl-agent (agent)" in r.stdout, r.stdout
        assert r.stdout.splitlines()[0].split()[:3] == ["ID", "KIND", "STATE"]
        r = cli("approvals", "show", rid, *url, token_file=bob_file)
        assert r.returncode == 0 and "read_write" in r.stdout and "30m" in r.stdout and "cli backfill" in r.stdout
        assert waiter.poll() is None  # still waiting
        # the agent cannot approve its own (nor anyone's) request
        r = cli("approvals", "approve", rid, *url, token=tok.agent)
        assert r.returncode == 1 and "may not approve" in r.stderr and "HTTP 403" in r.stderr, r.stderr
        r = cli("approvals", "approve", rid, "--comment", "go ahead", *url, token_file=bob_file)
        assert r.returncode == 0 and f"approved {rid}: now approved" in r.stdout, (r.stdout, r.stderr)
        out, err = waiter.communicate(timeout=20)
        assert waiter.returncode == 0, (out, err)
        assert "granted: role read_write on app until" in out and rid in out
    finally:
        if waiter.poll() is None:
            waiter.kill()

    r = cli("grants", "list", *url, token=tok.agent)
    assert r.returncode == 0 and rid in r.stdout and "bob@example.com" in r.stdout, r.stdout
    r = cli("grants", "list", "--json", *url, token=tok.sam)
    assert rid in {g["id"] for g in json.loads(r.stdout)}
    r = cli("grants", "revoke", rid, "--reason", "done", *url, token=tok.dave)  # a reviewer, not admin
    assert r.returncode == 1 and "admin or the grant's holder" in r.stderr, r.stderr
    r = cli("grants", "revoke", rid, "--reason", "done", *url, token=tok.sam)
    assert r.returncode == 0 and f"revoked {rid}" in r.stdout, r.stderr
    r = cli("grants", "list", *url, token=tok.agent)
    assert rid not in r.stdout
    r = cli("approvals", "show", rid, "--json", *url, token=tok.agent)
    doc = json.loads(r.stdout)
    assert doc["state"] != "approved" or doc["active"] is False
    assert doc["revoke_reason"] == "done"


def test_cli_rejection_ends_the_wait_with_exit_1_and_reads_the_url_from_the_config(proxy, tok):
    env = dict(os.environ)
    waiter = subprocess.Popen([str(BINARY), "request-access", "--config", str(proxy.config_path), "--token",
                               tok.alice, "--target", "app", "--role", "owner", "--reason", "cli reject",
                               "--wait", "--poll-interval", "0.2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        rid = None
        deadline = time.time() + 20
        while rid is None and time.time() < deadline:
            _, _, doc = get(proxy, "/api/v1/access-requests?state=pending", tok.bob)
            rid = next((x["id"] for x in doc["access_requests"] if x["reason"] == "cli reject"), None)
            time.sleep(0.2)
        assert rid
        r = cli("approvals", "reject", rid, "--config", proxy.config_path, token=tok.bob)
        assert r.returncode != 0 and "--reason" in r.stderr  # required by the CLI too
        r = cli("approvals", "reject", rid, "--reason", "owner is too much", "--config", proxy.config_path,
                token=tok.bob)
        assert r.returncode == 0 and "now rejected" in r.stdout, r.stderr
        out, err = waiter.communicate(timeout=20)
        assert waiter.returncode == 1 and "rejected" in err and "owner is too much" in err, (out, err)
    finally:
        if waiter.poll() is None:
            waiter.kill()


def test_cli_errors_print_the_api_message(proxy, tok, tmp_path):
    url = ["--admin-url", f"http://127.0.0.1:{proxy.admin_port}"]
    r = cli("approvals", "show", "apr_nothere", *url, token=tok.bob)
    assert r.returncode == 1 and "no approval request apr_nothere" in r.stderr and "HTTP 404" in r.stderr, r.stderr
    r = cli("approvals", "list", *url, token="not-a-token")
    assert r.returncode == 1 and "not an OIDC token" in r.stderr, r.stderr
    r = cli("approvals", "list", *url, token_file=tmp_path / "none.json")
    assert r.returncode == 1 and "gatehouse login" in r.stderr, r.stderr
    r = cli("request-access", "--target", "app", "--role", "r", "--for", "3d", "--reason", "x", *url, token=tok.alice)
    assert r.returncode == 1 and "longest grant" in r.stderr, r.stderr
    r = cli("grants", "list", "--admin-url", "http://127.0.0.1:1", token=tok.alice)
    assert r.returncode == 1 and "127.0.0.1:1" in r.stderr, r.stderr
    # A token is not sent over plain HTTP to another machine (found by adversarial testing).
    for where in ("http://192.0.2.1:9187", "http://proxy.example.com"):
        r = cli("approvals", "list", "--admin-url", where, token=tok.alice)
        assert r.returncode == 1 and "refusing to send your token over plain HTTP" in r.stderr, r.stderr
