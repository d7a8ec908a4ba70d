#!/usr/bin/python3
"""`make demo`: a throwaway PostgreSQL 15 with sample PII, Gatehouse in front of it, and a real
OpenID Connect provider whose people and agent log in to the database with their tokens.

    scripts/demo.sh                 start everything, print how to connect, wait for Ctrl-C
    scripts/demo.sh --check         start everything, run the printed scenarios non-interactively, clean up
    scripts/demo.sh --no-oidc       without the OpenID Connect provider (static users only)

Two people sign in at the provider (tests/oidc: oidc-provider on Node.js) with the device flow —
Ana, an analyst, and Dan, a DBA — and an agent (etl-agent) gets tokens with client credentials.
Their tokens are their database passwords; Gatehouse maps each identity to its own PostgreSQL
login, and its policy gives the analyst and the DBA different decisions on the same statement.
A bulk update (every row of a table) is held until a DBA approves it with `gatehouse approvals`,
and the agent may write only while it holds a read_write grant a DBA approved (just-in-time access).

Everything lives under one temp directory (PostgreSQL data and log, Gatehouse config and log,
the provider's config and log, saved tokens); Ctrl-C (SIGINT), SIGTERM or SIGHUP stops Gatehouse,
the provider and PostgreSQL, and removes it.
Uses the real-parts harness in tests/harness (the same one the end-to-end tests use).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness import BINARY, PG_BIN, Gatehouse, PgCluster, free_port, hash_password, wait_port  # noqa: E402
from tests.harness.oidc import NODE, OIDC_DIR, OidcProvider  # noqa: E402

SCHEMA = REPO / "demo" / "schema.sql"
DATABASE = "app"
# Demo-only static users; printed on screen. Not secrets: the proxy listens on loopback only.
USERS = [
    {"name": "alice", "password": "alice-demo-pass", "groups": ["dba"]},
    {"name": "bob", "password": "bob-demo-pass", "groups": ["analyst"]},
    {"name": "priya", "password": "priya-demo-pass", "groups": ["privacy"]},
]
# The same SELECT seen two ways: masked for bob (an analyst), as stored for priya (privacy team).
MASK_SQL = "SELECT full_name, email, phone, date_of_birth FROM customers WHERE id = 1"
MASK_RULE = "mask-pii-unless-privacy"
# The statement the banner shows being blocked, and the rule that blocks it.
BLOCKED_SQL = "DELETE FROM orders"
BLOCKED_RULE = "guardrail.unbounded_write"

# ---- OpenID Connect: people and an agent at a real provider (demo-only credentials, printed) ----
CLI_CLIENT = "gatehouse-cli"     # `gatehouse login`: a public client using the device flow
AGENT = "etl-agent"              # an agent: client credentials, its secret in a file
CONSOLE_CLIENT = "gatehouse-console"  # the web console: authorization code + PKCE
NODE_MIN = (20, 19)              # oidc-provider 9 (tests/oidc/package.json "engines")
PEOPLE = [
    {"id": "ana", "email": "ana@example.com", "name": "Ana Analyst", "password": "ana-demo-pass",
     "groups": ["analyst"], "role": "demo_analyst"},
    {"id": "dan", "email": "dan@example.com", "name": "Dan DBA", "password": "dan-demo-pass",
     "groups": ["dba"], "role": "demo_dba"},
]
ANALYST, DBA = PEOPLE
# PostgreSQL logins Gatehouse uses for them (created in the demo cluster; passwords random per run).
ROLES = {
    "demo_dba": "all privileges on the demo tables",
    "demo_analyst": "SELECT on the demo tables, UPDATE on products",
    "demo_agent": "SELECT on orders, order_items, products",
    "demo_agent_writer": "SELECT, INSERT, UPDATE on orders, order_items, products; with a read_write grant",
}
ROLE_GRANTS = [
    "GRANT ALL ON ALL TABLES IN SCHEMA public TO demo_dba",
    "GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO demo_dba",
    "GRANT CREATE ON SCHEMA public TO demo_dba",
    "GRANT SELECT ON ALL TABLES IN SCHEMA public TO demo_analyst",
    # What the analyst's bulk update needs once a DBA approves it (the proxy holds it until then).
    "GRANT UPDATE ON products TO demo_analyst",
    "GRANT SELECT ON orders, order_items, products TO demo_agent",
    "GRANT SELECT, INSERT, UPDATE ON orders, order_items, products TO demo_agent_writer",
]
# The same statement for both people: the analyst is refused by RESTRICTED_RULE, the DBA gets the row.
PII_SQL = "SELECT full_name, national_id FROM customers WHERE id = 1"
RESTRICTED_RULE = "restricted-pii-dba-only"
WRITE_SQL = "UPDATE orders SET status = 'shipped' WHERE id = 7"
READ_ONLY_RULE = "analysts-read-only"
# A bulk update (every row, no WHERE): held until a DBA approves it (BULK_RULE), then run once.
BULK_SQL = "UPDATE products SET price = price * 1.05"
BULK_ROWS = 24  # demo/schema.sql: 24 products
BULK_RULE = "bulk-updates-need-a-dba"
AGENT_SQL = "SELECT status, count(*) FROM orders GROUP BY status ORDER BY status"
AGENT_PII_SQL = "SELECT email FROM customers LIMIT 1"
AGENT_PII_RULE = "agents-no-pii"
AGENT_READ_ONLY_RULE = "agents-read-only"
JIT_ROLE = "read_write"          # just-in-time access: the role an agent asks for (gatehouse request-access)
AGENT_WRITE_SQL = "UPDATE orders SET status = 'delivered' WHERE id = 5"
WHO_SQL = "SELECT session_user, current_setting('gatehouse.identity'), current_setting('gatehouse.identity_groups')"

CHECK_SQL = ("SELECT id, full_name, email, national_id, card_number, "
             "current_setting('gatehouse.identity', true) AS identity "
             "FROM customers ORDER BY id LIMIT 3")


class Stop(Exception):
    """Raised from the signal handler so `finally` blocks clean up."""


def _on_signal(signum, _frame):
    raise Stop(signal.Signals(signum).name)


def say(msg: str = "") -> None:
    print(msg, flush=True)


def step(msg: str) -> None:
    say(f"==> {msg}")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_port(requested: int | None, preferred: int | None) -> int:
    if requested:
        if not port_free(requested):
            raise SystemExit(f"demo: port {requested} on 127.0.0.1 is in use")
        return requested
    if preferred and port_free(preferred):
        return preferred
    return free_port()


def node_problem() -> str | None:
    """What is missing for the OpenID Connect provider (Node.js >= 20.19 and tests/oidc's npm packages),
    said so that a person can fix it; None when nothing is."""
    need = (f"the demo's OpenID Connect provider (tests/oidc/provider.mjs, npm oidc-provider 9) needs "
            f"Node.js >= {NODE_MIN[0]}.{NODE_MIN[1]}")
    install = ("install it (Debian 12's own nodejs 18 is too old: e.g. NodeSource's nodejs 22), then run "
               "scripts/install-deps.sh, which runs `npm ci --prefix tests/oidc`")
    without = "Or run `scripts/demo.sh --no-oidc` (`make demo DEMO_ARGS=--no-oidc`) for the demo without OIDC."
    node = shutil.which(NODE)
    if node is None:
        return f"Node.js not found (no `{NODE}` on the PATH): {need}; {install}. {without}"
    try:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
        have = tuple(int(x) for x in version.lstrip("v").split(".")[:2])
    except (OSError, ValueError, subprocess.SubprocessError):
        version, have = "of unknown version", (0, 0)
    if have < NODE_MIN:
        return f"Node.js {version} ({node}) is too old: {need}; {install}. {without}"
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        return (f"{OIDC_DIR / 'node_modules' / 'oidc-provider'} not found: the demo's OpenID Connect provider "
                f"needs its npm packages; run scripts/install-deps.sh (it runs `npm ci --prefix tests/oidc`). "
                f"{without}")
    return None


def preflight(with_oidc: bool = True) -> None:
    problems = []
    if not BINARY.exists():
        problems.append(f"{BINARY} not found (run `make build`, or `make demo` which builds it)")
    if not (PG_BIN / "initdb").exists():
        problems.append(f"{PG_BIN}/initdb not found (Debian package postgresql-15; `scripts/install-deps.sh`)")
    if not shutil.which("psql"):
        problems.append("psql not found (Debian package postgresql-client)")
    if not SCHEMA.exists():
        problems.append(f"{SCHEMA} not found")
    if with_oidc and (problem := node_problem()):
        problems.append(problem)
    if problems:
        raise SystemExit("demo: cannot start:\n  " + "\n  ".join(problems))


def load_schema(pg: PgCluster) -> None:
    pg.psql(f"CREATE DATABASE {DATABASE}")
    env = dict(os.environ, PGPASSWORD=pg.password)
    r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(pg.port),
                        "-U", pg.user, "-d", DATABASE, "-f", str(SCHEMA)],
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"loading {SCHEMA} failed:\n{r.stderr}")


def create_roles(pg: PgCluster) -> dict[str, str]:
    """The PostgreSQL logins Gatehouse maps identities to; returns their (random) passwords."""
    passwords = {role: "demo-" + secrets.token_hex(8) for role in ROLES}
    sql = [f"CREATE ROLE {role} LOGIN PASSWORD '{pw}'" for role, pw in passwords.items()] + ROLE_GRANTS
    env = dict(os.environ, PGPASSWORD=pg.password)
    r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(pg.port),
                        "-U", pg.user, "-d", DATABASE], input=";\n".join(sql) + ";\n",
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"creating the demo roles failed:\n{r.stderr}")
    return passwords


# Policy on top of the production guardrails: what differs between the analyst, the DBA and the
# agent (examples/policy-tests.yaml tests it).
CLASSIFICATION = [
    {"columns": ["public.customers.full_name", "public.customers.email", "public.customers.phone",
                 "public.customers.date_of_birth"], "tags": ["pii"], "sensitivity": "high"},
    {"columns": ["public.customers.national_id", "public.customers.card_number"], "tags": ["pii", "restricted"],
     "sensitivity": "critical"},
]
RULES = [
    {"name": "mask-emails-keep-domain",
     "description": "Outside the privacy team and the DBAs, e-mail addresses show only their domain",
     "when": {"not_groups": ["privacy", "dba"], "columns": ["public.customers.email"]},
     "action": "mask",
     "mask": {"strategy": "keep_domain"}},
    {"name": MASK_RULE,
     "description": "Outside the privacy team and the DBAs, personal data is masked in results",
     "when": {"not_groups": ["privacy", "dba"], "tags": ["pii"]},
     "action": "mask",
     "mask": {"strategy": "redact"}},
    {"name": RESTRICTED_RULE,
     "description": "National ids and card numbers are for DBAs only",
     "when": {"not_groups": ["dba"], "tags": ["restricted"]},
     "action": "deny",
     "message": "only the dba group may read or write customers.national_id and customers.card_number",
     "hint": "Leave those columns out (SELECT * reads them too), or ask a DBA."},
    {"name": READ_ONLY_RULE,
     "description": "Analysts read; the one write they may ask for is a bulk update, which a DBA approves "
                    f"({BULK_RULE})",
     # without_where: false = every statement but an UPDATE or DELETE of every row (those two are
     # left to the bulk rules below).
     "when": {"groups": ["analyst"], "statements": ["write", "ddl"], "without_where": False},
     "action": "deny",
     "message": "analysts have read-only access",
     "hint": "Ask a DBA to make the change."},
    {"name": BULK_RULE,
     "description": "Updating every row of a table in production is held until a DBA approves it",
     "when": {"environment": "production", "statements": ["update"], "without_where": True},
     "action": "review",
     "message": "an UPDATE of every row of a table in production needs a DBA's approval",
     "reviewers": {"groups": ["dba"], "approvals": 1}},
    # Replaces the built-in guardrail of that name, which refuses whole-table UPDATEs too: here those
    # go to review (above) and only whole-table DELETEs are refused.
    {"name": BLOCKED_RULE,
     "when": {"environment": "production", "statements": ["delete"], "without_where": True},
     "action": "deny",
     "message": "a DELETE without a WHERE clause (or with one that is always true) removes every row of the "
                "table, and is not allowed in production",
     "hint": "Add a WHERE clause that selects only the rows you mean to delete."},
    {"name": AGENT_PII_RULE,
     "when": {"identity_kind": "agent", "tags": ["pii"]},
     "action": "deny",
     "message": "agents may not read or write customers' personal data",
     "hint": "Query orders, order_items and products."},
    {"name": AGENT_READ_ONLY_RULE,
     "when": {"identity_kind": "agent", "statements": ["write", "ddl", "role", "call", "do"]},
     # Just-in-time access: while the agent holds an approved read_write grant, this rule does not
     # apply and the agent logs in as demo_agent_writer (backend_logins).
     "requires_grant": JIT_ROLE,
     "action": "deny",
     "message": "agents may only read"},
]


def backend_logins(pg, role_passwords: dict[str, str] | None) -> list[dict]:
    """Which PostgreSQL login each identity uses (first match wins; nobody else gets in)."""
    pw = role_passwords or {role: "not-used" for role in ROLES}
    return [
        # The static users keep the proxy's own login (as before OIDC; a break-glass account).
        {"when": {"subjects": [u["name"] for u in USERS]}, "user": pg.user, "password": pg.password},
        # People from the OpenID Connect provider, by their groups; agents by their kind.
        {"when": {"groups": ["dba"]}, "user": "demo_dba", "password": pw["demo_dba"]},
        {"when": {"groups": ["analyst"]}, "user": "demo_analyst", "password": pw["demo_analyst"]},
        # An agent with an active read_write grant (just-in-time access) writes as demo_agent_writer.
        {"when": {"kinds": ["agent"], "grants": [JIT_ROLE]}, "user": "demo_agent_writer",
         "password": pw["demo_agent_writer"]},
        {"when": {"kinds": ["agent"]}, "user": "demo_agent", "password": pw["demo_agent"]},
    ]


def gatehouse_config(pg: PgCluster, port: int, admin_port: int, audit_key: Path | None = None,
                     oidc_issuer: str | None = None, role_passwords: dict[str, str] | None = None) -> dict:
    backend = {"host": "127.0.0.1", "port": pg.port}
    logins = backend_logins(pg, role_passwords)
    config = {
        "listen": {"address": "127.0.0.1", "port": port},
        "threads": 2,
        # The admin API (docs/api.md): people sign in with their OpenID Connect tokens; DBAs review
        # held statements and access requests, everyone may ask for access.
        # The web console (docs/console.md) at /console/ signs people in at the same provider.
        "admin": {"address": "127.0.0.1", "port": admin_port, "public_url": f"http://127.0.0.1:{admin_port}",
                  "roles": {"reviewer": ["dba"], "auditor": ["dba"], "admin": ["dba"], "requester": ["*"]}},
        # Held statements wait up to 5 minutes; an approved one may be run again (once) within an
        # hour, e.g. after `SET gatehouse.wait = off`. Requests are kept in a SQLite file beside the config.
        "approvals": {"timeout": "5m", "rerun_window": "1h", "store": "approvals.db"},
        "limits": {"shutdown_timeout": "5s"},
        "log": {"level": "info", "format": "text"},
        "users": [{"name": u["name"], "password": hash_password(u["password"]), "groups": u["groups"]}
                  for u in USERS],
        "targets": [
            # Marked production: the built-in guardrail pack is on (docs/policy.md).
            {"name": DATABASE, "environment": "production", "backend": dict(backend, database=DATABASE),
             "logins": logins},
            # Any other dbname (postgres, a database you CREATE, \c otherdb) passes through.
            {"name": "*", "environment": "demo", "backend": dict(backend), "logins": logins},
        ],
        "classification": CLASSIFICATION,
        "rules": RULES,
        # Every login, statement and decision goes to an embedded SQLite store beside the config,
        # hash-chained; the chain head is signed every 10 s and at shutdown.
        "audit": {"durability": "required", "sinks": [{"type": "sqlite", "path": "audit.db"}],
                  **({"checkpoint": {"key_file": str(audit_key), "interval": "10s"}} if audit_key else {})},
    }
    if oidc_issuer:
        # Tokens of this issuer are database passwords. Access tokens have aud "gatehouse"; ID tokens
        # have the CLI's client id. Plain HTTP to the issuer and plaintext logins: loopback only.
        config["oidc"] = {"allow_loopback_plaintext": True,
                          "issuers": [{"issuer": oidc_issuer, "audience": ["gatehouse", CLI_CLIENT]}]}
        config["admin"]["console"] = {"client_id": CONSOLE_CLIENT}
    return config


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def conninfo(gh: Gatehouse, user: str, dbname: str = DATABASE) -> str:
    return f"host=127.0.0.1 port={gh.port} dbname={dbname} user={user}"


class OidcDemo:
    """The provider, the agent's secret file and where each person's token is saved; builds the
    commands the banner prints (and --check runs)."""

    def __init__(self, base: Path, port: int, admin_port: int):
        self.dir = base / "oidc"
        self.dir.mkdir(mode=0o700)
        self.token_dir = base / "tokens"
        self.token_dir.mkdir(mode=0o700)
        self.secret = "etl-" + secrets.token_urlsafe(12)
        self.secret_file = self.dir / f"{AGENT}.secret"
        fd = os.open(self.secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.secret + "\n")
        self.idp = OidcProvider(
            users=[{k: p[k] for k in ("id", "email", "name", "password", "groups")} for p in PEOPLE],
            clients=[
                {"client_id": CLI_CLIENT, "client_name": "Gatehouse CLI",
                 "grant_types": ["device_code", "refresh_token"]},
                {"client_id": AGENT, "client_secret": self.secret, "grant_types": ["client_credentials"]},
                # The web console: authorization code with PKCE, a public client (no secret).
                {"client_id": CONSOLE_CLIENT, "client_name": "Gatehouse console",
                 "grant_types": ["authorization_code"], "response_types": ["code"],
                 "redirect_uris": [f"http://127.0.0.1:{admin_port}/console/callback"],
                 "token_endpoint_auth_method": "none"},
            ],
            port=port, workdir=self.dir, test_endpoints=False, poll_interval=1)

    @property
    def issuer(self) -> str:
        return self.idp.issuer

    def token_file(self, person: dict) -> Path:
        return self.token_dir / f"{person['id']}.json"

    def login_cmd(self, person: dict) -> str:
        return (f"{BINARY} login --issuer {self.issuer} --client-id {CLI_CLIENT} "
                f"--token-file {self.token_file(person)}")

    def psql_cmd(self, gh: Gatehouse, person: dict, sql: str) -> str:
        return f"{BINARY} psql {DATABASE} --port {gh.port} --token-file {self.token_file(person)} -- -c \"{sql}\""

    def whoami_cmd(self, gh: Gatehouse, person: dict) -> str:
        return f"{BINARY} whoami --config {gh.config_path} --token-file {self.token_file(person)}"

    def approvals_cmd(self, gh: Gatehouse, person: dict, args: str) -> str:
        """`gatehouse approvals ...` as `person` (the admin API's URL from the config's admin.public_url)."""
        return (f"{BINARY} approvals {args} --config {gh.config_path} --token-file {self.token_file(person)}")

    def token_cmd(self) -> str:
        return f"{BINARY} token --issuer {self.issuer} --client-id {AGENT} --client-secret-file {self.secret_file}"

    def request_access_cmd(self, gh: Gatehouse) -> str:
        """The agent asks for just-in-time write access with its own (client-credentials) token."""
        return (f"{BINARY} request-access --target {DATABASE} --role {JIT_ROLE} --for 1h "
                f"--reason \"fix order 5\" --config {gh.config_path} --token $({self.token_cmd()})")

    def agent_psql_cmd(self, gh: Gatehouse, sql: str) -> str:
        return f"PGPASSWORD=$({self.token_cmd()}) psql \"{conninfo(gh, AGENT)}\" -c \"{sql}\""


def banner(base: Path, pg: PgCluster, gh: Gatehouse, od: OidcDemo | None) -> None:
    admin = f"http://127.0.0.1:{gh.admin_port}"
    width = 78
    say()
    say("=" * width)
    say(" Gatehouse demo is running")
    say("=" * width)
    say()
    if od is not None:
        banner_oidc(gh, od)
    say(" Static users (SCRAM passwords kept by Gatehouse; they use the proxy's own database login):")
    say()
    for u in USERS:
        say(f"   # {u['name']} (groups: {', '.join(u['groups'])})")
        say(f"   PGPASSWORD={u['password']} psql \"{conninfo(gh, u['name'])}\"")
        say()
    say(" Targets:  dbname=app -> database app (environment production: guardrails on);")
    say("           any other dbname passes through (environment demo)")
    say(" Try:      SELECT full_name, email, national_id, card_number FROM customers LIMIT 5;")
    say(f"           (alice, a dba, reads it; bob, an analyst, is refused by {RESTRICTED_RULE})")
    say(f" Masked:   {MASK_SQL};")
    say(f"           bob sees it masked ({MASK_RULE}), priya (privacy team) as stored:")
    for u in USERS[1:3]:
        say(f"   PGPASSWORD={u['password']} psql \"{conninfo(gh, u['name'])}\" -c \"{MASK_SQL}\"")
    say("           SELECT current_setting('gatehouse.identity');")
    say("           \\d+ customers")
    say()
    say(f" Blocked:  {BLOCKED_SQL};   -- refused with 42501 by {BLOCKED_RULE} (no WHERE clause)")
    say(" Why:")
    say(f"   {BINARY} explain --config {gh.config_path} \\")
    say(f"       --identity alice --target {DATABASE} \"{BLOCKED_SQL}\"")
    say(f"   {BINARY} explain --config {gh.config_path} \\")
    say(f"       --identity {ANALYST['id']} --groups analyst --target {DATABASE} \"{PII_SQL}\"")
    say()
    say(" Audit (every login, statement, decision and result; hash-chained and signed):")
    say(f"   {BINARY} audit search --config {gh.config_path} --limit 20")
    say(f"   {BINARY} audit search --config {gh.config_path} --decision deny")
    say(f"   {BINARY} audit tail -f --config {gh.config_path}")
    say(f"   {BINARY} audit verify --config {gh.config_path}")
    say(f"   {BINARY} audit report --config {gh.config_path}")
    say()
    if od is not None:
        say(f" Web console: {admin}/console/")
        say(f"   sign in as {DBA['id']} / {DBA['password']} (reviewer, auditor, admin) or {ANALYST['id']} / "
            f"{ANALYST['password']} (requester): approvals inbox, live sessions, audit explorer, grants, dashboard")
        say()
    else:
        say(f" Web console: {admin}/console/ (sign-in needs the OpenID Connect provider: run without --no-oidc)")
        say()
    say(" Admin endpoints:")
    say(f"   {admin}/healthz")
    say(f"   {admin}/metrics")
    if od is not None:
        say(f"   the audit search API, for auditors (here {DBA['id']}, once signed in as above):")
        say(f"   curl -H \"Authorization: Bearer $({BINARY} token --token-file {od.token_file(DBA)})\" \\")
        say(f"       '{admin}/api/v1/audit?limit=20'")
    else:
        say(f"   {admin}/api/v1/audit needs an OIDC bearer token (role auditor or admin); without OIDC use")
        say("   `gatehouse audit search` above")
    say()
    say(" Files (removed when the demo stops):")
    say(f"   config        {gh.config_path}")
    say(f"   proxy log     {gh.log_path}     (tail -f it to watch sessions)")
    say(f"   audit store   {gh.workdir / 'audit.db'}")
    say(f"   approvals     {gh.workdir / 'approvals.db'}     (held statements, access requests, grants)")
    if od is not None:
        say(f"   OIDC provider {od.idp.log_path}")
        say(f"   saved tokens  {od.token_dir}")
    say(f"   postgres log  {pg.log}")
    say(f"   sample data   {SCHEMA}")
    say()
    say(f" PostgreSQL 15 (direct, bypassing the proxy): 127.0.0.1:{pg.port}, user {pg.user}, "
        f"password {pg.password}")
    say()
    say(" Press Ctrl-C to stop Gatehouse, the OpenID Connect provider and PostgreSQL and remove the temp data."
        if od is not None else " Press Ctrl-C to stop Gatehouse and PostgreSQL and remove the temp data.")
    say("=" * width, )


def banner_oidc(gh: Gatehouse, od: OidcDemo) -> None:
    say(f" Sign in with OpenID Connect: a real provider (npm oidc-provider) at {od.issuer}")
    say(" Demo-only accounts (the sign-in page takes the username or the e-mail):")
    say()
    say(f"   {'person':<12} {'username':<9} {'password':<14} {'groups':<8} database login")
    for p in PEOPLE:
        say(f"   {p['name']:<12} {p['id']:<9} {p['password']:<14} {', '.join(p['groups']):<8} "
            f"{p['role']} ({ROLES[p['role']]})")
    say(f"   {'agent':<12} {AGENT:<9} client secret {od.secret} (in {od.secret_file})")
    say(f"   {'':<12} {'':<9} {'':<14} {'':<8} demo_agent ({ROLES['demo_agent']})")
    say(f"   {'':<12} {'':<9} {'':<14} {'':<8} demo_agent_writer ({ROLES['demo_agent_writer']})")
    say()
    for n, (p, outcome) in enumerate([
            (ANALYST, f"refused by rule {RESTRICTED_RULE}"),
            (DBA, "allowed: the same statement returns the row")], start=1):
        say(f" {n}. {p['name']} signs in: run this, open the URL it prints in a browser, confirm the code,")
        say(f"    and sign in as {p['id']} / {p['password']}:")
        say(f"   {od.login_cmd(p)}")
        say(f"    then asks for a customer's national id ({outcome}):")
        say(f"   {od.psql_cmd(gh, p, PII_SQL)}")
        say()
    say(f" Also compare ({ANALYST['id']}: refused by {READ_ONLY_RULE}; {DBA['id']}: UPDATE 1):")
    for p in PEOPLE:
        say(f"   {od.psql_cmd(gh, p, WRITE_SQL)}")
    say(" Who am I to Gatehouse, and which database login does each target give me:")
    for p in PEOPLE:
        say(f"   {od.whoami_cmd(gh, p)}")
    say(" Interactive psql with the saved token (the username is the token's e-mail):")
    say(f"   {BINARY} psql {DATABASE} --port {gh.port} --token-file {od.token_file(ANALYST)}")
    say()
    say(f" 3. The agent {AGENT} (client credentials, no browser): its token is its password")
    say(f"   {od.agent_psql_cmd(gh, AGENT_SQL)}")
    say(f"    (reading customers' personal data, e.g. \"{AGENT_PII_SQL}\", is refused by {AGENT_PII_RULE})")
    say(f"   {od.token_cmd()}")
    say(f"    (just prints an access token; paste it into `{BINARY} whoami --config {gh.config_path} --token TOKEN`)")
    say()
    banner_approvals(gh, od)


# What --check and the interactive test put in place of the banner's placeholder.
REQUEST_ID = "REQUEST_ID"


def approve_cmd(gh: Gatehouse, od: OidcDemo, request_id: str = REQUEST_ID) -> str:
    return od.approvals_cmd(gh, DBA, f"approve {request_id}") + ' --comment "ok"'


def reject_cmd(gh: Gatehouse, od: OidcDemo, request_id: str = REQUEST_ID) -> str:
    return od.approvals_cmd(gh, DBA, f"reject {request_id}") + ' --reason "not before the price review"'


def no_wait_cmd(gh: Gatehouse, od: OidcDemo) -> str:
    return od.psql_cmd(gh, ANALYST, "SET gatehouse.wait = off") + f' -c "{BULK_SQL}"'


def banner_approvals(gh: Gatehouse, od: OidcDemo) -> None:
    say(f" 4. A held statement: {ANALYST['name']}'s bulk update (every row, no WHERE) waits for a DBA's approval")
    say(f"    (rule {BULK_RULE}). Terminal 1, as {ANALYST['id']}: psql prints a NOTICE with the request id")
    say("    (apr_...) and waits, up to 5 minutes:")
    say(f"   {od.psql_cmd(gh, ANALYST, BULK_SQL)}")
    say(f"    Terminal 2, as {DBA['id']} (signed in in step 2; dba is the reviewer group): list the pending")
    say(f"    requests, then approve, with {REQUEST_ID} = the apr_... id from terminal 1:")
    say(f"   {od.approvals_cmd(gh, DBA, 'list --state pending')}")
    say(f"   {approve_cmd(gh, od)}")
    say(f"    Terminal 1 then prints UPDATE {BULK_ROWS}: the statement ran once, as submitted. Instead of approving,")
    say(f"    reject it (terminal 1 gets an ERROR with {DBA['id']}'s name and the reason):")
    say(f"   {reject_cmd(gh, od)}")
    say("    Not waiting: with gatehouse.wait off the UPDATE returns at once (SQLSTATE RV001, the request id);")
    say("    once it is approved, run the same UPDATE again within an hour and it runs, once:")
    say(f"   {no_wait_cmd(gh, od)}")
    say("    One request in detail (who asked, the statement, the votes, its state):")
    say(f"   {od.approvals_cmd(gh, DBA, 'show ' + REQUEST_ID)}")
    say()
    say(f" 5. Just-in-time access: the agent may only read ({AGENT_READ_ONLY_RULE}) unless it holds a {JIT_ROLE} grant.")
    say(f"    It asks for one (this prints an acc_... id); {DBA['id']} approves it with the approve line above,")
    say(f"    {REQUEST_ID} = the acc_... id; then the agent's writes run, as demo_agent_writer, for the hour:")
    say(f"   {od.request_access_cmd(gh)}")
    say(f"   {od.agent_psql_cmd(gh, AGENT_WRITE_SQL)}")
    say()


def check(pg: PgCluster, gh: Gatehouse) -> None:
    import psycopg

    admin = f"http://127.0.0.1:{gh.admin_port}"
    status, body = http_get(f"{admin}/healthz")
    say(f"GET {admin}/healthz -> {status} {body.strip()}")
    if status != 200:
        raise RuntimeError("/healthz is not 200")

    user = USERS[0]
    say(f"psycopg: {conninfo(gh, user['name'])}")
    say(f"  {CHECK_SQL}")
    with psycopg.connect(conninfo(gh, user["name"]), password=user["password"], connect_timeout=10) as conn:
        with conn.cursor() as cur:
            cur.execute(CHECK_SQL)
            names = [d.name for d in cur.description]
            rows = cur.fetchall()
            cur.execute("SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM orders), "
                        "(SELECT sum(amount) FROM orders)")
            customers, orders, total = cur.fetchone()
    if len(rows) != 3:
        raise RuntimeError(f"expected 3 rows, got {len(rows)}")
    widths = [max(len(n), *(len(str(r[i])) for r in rows)) for i, n in enumerate(names)]
    say("  " + " | ".join(n.ljust(w) for n, w in zip(names, widths)))
    say("  " + "-+-".join("-" * w for w in widths))
    for r in rows:
        say("  " + " | ".join(str(v).ljust(w) for v, w in zip(r, widths)))
    say(f"  customers={customers} orders={orders} sum(amount)={total}")

    say(f"psycopg: {BLOCKED_SQL}  (must be refused by {BLOCKED_RULE})")
    with psycopg.connect(conninfo(gh, user["name"]), password=user["password"], connect_timeout=10) as conn:
        try:
            conn.execute(BLOCKED_SQL)
            raise RuntimeError(f"{BLOCKED_SQL} was not refused")
        except psycopg.errors.InsufficientPrivilege as e:
            say(f"  refused: {e.diag.sqlstate} {e.diag.message_primary}")
            if BLOCKED_RULE not in (e.diag.message_primary or ""):
                raise RuntimeError(f"refused, but not by {BLOCKED_RULE}: {e}")
        conn.rollback()
        (left,), = conn.execute("SELECT count(*) FROM orders").fetchall()
        say(f"  orders still there: {left}")
    r = subprocess.run([str(BINARY), "explain", "--config", str(gh.config_path), "--identity", "alice",
                        "--target", DATABASE, BLOCKED_SQL], capture_output=True, text=True, timeout=30)
    say(f"gatehouse explain -> exit {r.returncode}")
    for line in r.stdout.splitlines():
        say("  " + line)
    if r.returncode != 0 or BLOCKED_RULE not in r.stdout:
        raise RuntimeError(f"gatehouse explain did not name {BLOCKED_RULE}: {r.stdout}{r.stderr}")

    # The same SELECT, masked for bob and as stored for priya.
    with psycopg.connect(pg.dsn(DATABASE), connect_timeout=10) as direct:
        (raw_email,) = direct.execute("SELECT email FROM customers WHERE id = 1").fetchone()
    seen = {}
    for u in USERS[1:3]:
        with psycopg.connect(conninfo(gh, u["name"]), password=u["password"], connect_timeout=10) as conn:
            seen[u["name"]] = conn.execute(MASK_SQL).fetchone()
        say(f"psycopg as {u['name']}: {MASK_SQL}")
        say(f"  {seen[u['name']]}")
    if seen["priya"][1] != raw_email:
        raise RuntimeError(f"priya does not see the stored e-mail: {seen['priya']}")
    if raw_email in str(seen["bob"]) or not str(seen["bob"][1]).endswith("@" + raw_email.split("@")[1]):
        raise RuntimeError(f"bob's result is not masked as {MASK_RULE} says: {seen['bob']}")

    status, body = http_get(f"{admin}/metrics")
    counters = [line for line in body.splitlines() if line and not line.startswith("#")]
    say(f"GET {admin}/metrics -> {status}, {len(counters)} samples")
    if status != 200:
        raise RuntimeError("/metrics is not 200")

    # The refusal is in the audit trail, and the trail verifies.
    def audit(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BINARY), "audit", *args, "--config", str(gh.config_path)], capture_output=True,
                              text=True, timeout=30)
    deadline = time.time() + 10
    while True:
        r = audit("search", "--decision", "deny", "--format", "jsonl")
        if BLOCKED_RULE in r.stdout or time.time() > deadline:
            break
        time.sleep(0.1)
    say(f"gatehouse audit search --decision deny -> exit {r.returncode}")
    if r.returncode != 0 or BLOCKED_RULE not in r.stdout:
        raise RuntimeError(f"the refusal is not in the audit trail: {r.stdout}{r.stderr}")
    say(f"  {len(r.stdout.splitlines())} record(s), rule {BLOCKED_RULE}")
    r = audit("verify")
    say(f"gatehouse audit verify -> exit {r.returncode}")
    for line in r.stdout.splitlines()[:3]:
        say("  " + line)
    if r.returncode != 0:
        raise RuntimeError(f"audit verify failed: {r.stdout}{r.stderr}")


def run_shell(cmd: str, **env: str) -> subprocess.CompletedProcess:
    """One of the banner's command lines, as a person would paste it into a shell."""
    return subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True, timeout=90,
                          env=dict(os.environ, PGCONNECT_TIMEOUT="15", PSQLRC="/dev/null", **env))


def show(r: subprocess.CompletedProcess) -> None:
    say(f"  -> exit {r.returncode}")
    for line in (r.stdout + r.stderr).splitlines():
        say("     " + line)


def run_step(cmd: str) -> subprocess.CompletedProcess:
    """Prints one command line, runs it as a person would, and prints what it said."""
    say(f"$ {cmd}")
    r = run_shell(cmd)
    show(r)
    return r


def check_oidc(gh: Gatehouse, od: OidcDemo) -> None:
    """The banner's OpenID Connect scenarios, with the browser step scripted through the provider's
    own pages (tests/harness/oidc.py device_login: verification page, login form, consent)."""
    say(f"OIDC provider {od.issuer}: "
        f"discovery lists the device flow: {bool(od.idp.discovery.get('device_authorization_endpoint'))}")
    for person in PEOPLE:
        say(f"device flow for {person['id']} ({person['name']}): "
            f"verification page, sign-in form as {person['id']}, consent (the harness plays the browser)")
        tokens = od.idp.device_login(CLI_CLIENT, person["id"], person["password"])
        # Saved as `gatehouse login` saves it (its token file format: the token response + issuer).
        saved = dict(tokens, issuer=od.issuer, client_id=CLI_CLIENT)
        fd = os.open(od.token_file(person), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(saved, f)
        say(f"  token saved to {od.token_file(person)}")

        cmd = od.whoami_cmd(gh, person)
        r = run_step(cmd)
        if r.returncode != 0 or f"logs in as {person['role']}" not in r.stdout:
            raise RuntimeError(f"whoami for {person['id']} does not map to {person['role']}")

        cmd = od.psql_cmd(gh, person, WHO_SQL) + " -X -A -t"
        r = run_step(cmd)
        expected = f"{person['role']}|{person['id']}|{','.join(person['groups'])}"
        if r.returncode != 0 or r.stdout.strip() != expected:
            raise RuntimeError(f"{person['id']}'s session is not {expected!r}")

    # The same statement, two people, two decisions.
    cmd = od.psql_cmd(gh, ANALYST, PII_SQL)
    say(f"$ {cmd}    # must be refused by {RESTRICTED_RULE}")
    r = run_shell(cmd)
    show(r)
    if r.returncode == 0 or f'Denied by rule "{RESTRICTED_RULE}"' not in r.stderr or \
            next(r for r in RULES if r["name"] == RESTRICTED_RULE)["message"] not in r.stderr:
        raise RuntimeError(f"{ANALYST['id']} was not refused by {RESTRICTED_RULE}")
    cmd = od.psql_cmd(gh, DBA, PII_SQL)
    say(f"$ {cmd}    # must be allowed")
    r = run_shell(cmd)
    show(r)
    if r.returncode != 0 or "national_id" not in r.stdout or "(1 row)" not in r.stdout:
        raise RuntimeError(f"{DBA['id']} did not get the row")

    # Writes: refused for the analyst by policy; the DBA's (in a transaction rolled back) runs.
    cmd = od.psql_cmd(gh, ANALYST, WRITE_SQL)
    say(f"$ {cmd}    # must be refused by {READ_ONLY_RULE}")
    r = run_shell(cmd)
    show(r)
    if r.returncode == 0 or f'Denied by rule "{READ_ONLY_RULE}"' not in r.stderr:
        raise RuntimeError(f"{ANALYST['id']}'s UPDATE was not refused by {READ_ONLY_RULE}")
    cmd = od.psql_cmd(gh, DBA, f"BEGIN; {WRITE_SQL}; ROLLBACK")
    say(f"$ {cmd}    # must run")
    r = run_shell(cmd)
    show(r)
    if r.returncode != 0 or "UPDATE 1" not in r.stdout:
        raise RuntimeError(f"{DBA['id']}'s UPDATE did not run")

    # The agent: client-credentials token from `gatehouse token`, then plain psql.
    cmd = od.agent_psql_cmd(gh, AGENT_SQL)
    r = run_step(cmd)
    if r.returncode != 0 or "shipped" not in r.stdout:
        raise RuntimeError("the agent's query did not run")
    cmd = od.agent_psql_cmd(gh, WHO_SQL) + " -X -A -t"
    r = run_step(cmd)
    if r.returncode != 0 or not r.stdout.strip().startswith(f"demo_agent|{AGENT}|"):
        raise RuntimeError("the agent's session is not demo_agent")
    cmd = od.agent_psql_cmd(gh, AGENT_PII_SQL)
    say(f"$ {cmd}    # must be refused by {AGENT_PII_RULE}")
    r = run_shell(cmd)
    show(r)
    if r.returncode == 0 or f'Denied by rule "{AGENT_PII_RULE}"' not in r.stderr:
        raise RuntimeError(f"the agent was not refused by {AGENT_PII_RULE}")

    # The refusals are in the audit trail with who was refused.
    deadline = time.time() + 10
    while True:
        r = subprocess.run([str(BINARY), "audit", "search", "--config", str(gh.config_path), "--decision", "deny",
                            "--format", "jsonl"], capture_output=True, text=True, timeout=30)
        records = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
        found = [rec for rec in records if RESTRICTED_RULE in json.dumps(rec) and ANALYST["id"] in json.dumps(rec)]
        if found or time.time() > deadline:
            break
        time.sleep(0.1)
    say(f"gatehouse audit search --decision deny -> {len(records)} record(s); "
        f"{len(found)} of {ANALYST['id']} by {RESTRICTED_RULE}")
    if not found:
        raise RuntimeError(f"{ANALYST['id']}'s refusal is not in the audit trail: {r.stdout}{r.stderr}")


class Background:
    """One of the banner's command lines running in the background (a person's terminal 1): its stderr
    is read as it comes, so that a NOTICE can be waited for while the command still runs."""

    def __init__(self, cmd: str):
        self.proc = subprocess.Popen(["/bin/sh", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True,
                                     env=dict(os.environ, PGCONNECT_TIMEOUT="15", PSQLRC="/dev/null"))
        self.err: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.err.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for line in list(self.err):
                if m := re.search(pattern, line):
                    return m
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.1)
        raise RuntimeError(f"no line matching {pattern!r} from the command; its stderr: {self.err}")

    def finish(self, timeout: float = 60) -> subprocess.CompletedProcess:
        try:
            out = self.proc.stdout.read() if self.proc.wait(timeout) is not None else ""
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise RuntimeError(f"the command did not finish within {timeout:.0f} s; its stderr: {self.err}")
        self._reader.join(5)
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, "\n".join(self.err))


HELD = r"statement held for approval: request (apr_[A-Za-z0-9]+) "


def check_console(gh: Gatehouse, od: OidcDemo) -> None:
    """The banner's console: the page is served, and the demo's DBA signs in through the provider's
    own pages (authorization code + PKCE) and gets the roles the banner promises."""
    from tests.harness.console import console_login  # noqa: E402 (repo root is on sys.path)
    admin = f"http://127.0.0.1:{gh.admin_port}"
    status, body = http_get(f"{admin}/console/")
    if status != 200 or "<script" not in body:
        raise RuntimeError(f"GET {admin}/console/ -> {status}: the console is not served: {body[:300]}")
    me = console_login(admin, DBA["id"], DBA["password"]).me
    if not {"admin", "reviewer", "auditor"} <= set(me["roles"]):
        raise RuntimeError(f"{DBA['id']} signed in to the console with roles {me['roles']}")
    say(f"console: {DBA['id']} signed in at {admin}/console/ with roles {', '.join(me['roles'])}")


def check_approvals(gh: Gatehouse, od: OidcDemo) -> None:
    """The banner's held statement: the analyst's bulk update waits in the background until the DBA
    approves it with the printed CLI line; then it runs once and the rows really change."""
    price_sql = "SELECT price FROM products WHERE id = 1"
    r = run_shell(od.psql_cmd(gh, DBA, price_sql) + " -X -A -t")
    if r.returncode != 0:
        raise RuntimeError(f"reading a price failed: {r.stderr}")
    before = Decimal(r.stdout.strip())

    cmd = od.psql_cmd(gh, ANALYST, BULK_SQL)
    say(f"$ {cmd} &    # must be held by {BULK_RULE} until {DBA['id']} approves")
    held = Background(cmd)
    request_id = held.wait_for(HELD).group(1)
    hint = held.wait_for(r"HINT:  ")
    for line in held.err:
        say("     " + line)
    if f"rule \"{BULK_RULE}\"" not in "\n".join(held.err) or \
            f"gatehouse approvals approve {request_id}" not in hint.string:
        raise RuntimeError(f"the hold notice does not name {BULK_RULE} and how to approve: {held.err}")
    if held.proc.poll() is not None:
        raise RuntimeError(f"psql did not wait for the approval: exit {held.proc.returncode}")

    cmd = od.approvals_cmd(gh, DBA, "list --state pending")
    r = run_step(cmd)
    if r.returncode != 0 or request_id not in r.stdout:
        raise RuntimeError(f"{DBA['id']} does not see {request_id} in the pending requests")
    cmd = approve_cmd(gh, od, request_id)
    r = run_step(cmd)
    if r.returncode != 0:
        raise RuntimeError(f"{DBA['id']} could not approve {request_id}")

    r = held.finish()
    say(f"  the held psql -> exit {r.returncode}")
    for line in r.stdout.splitlines():
        say("     " + line)
    if r.returncode != 0 or f"UPDATE {BULK_ROWS}" not in r.stdout:
        raise RuntimeError(f"the approved UPDATE did not run: {r.stdout}{r.stderr}")
    r = run_shell(od.psql_cmd(gh, DBA, price_sql) + " -X -A -t")
    after = Decimal(r.stdout.strip())
    say(f"  products.id=1 price: {before} -> {after}")
    if after != (before * Decimal("1.05")).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP):
        raise RuntimeError(f"the price did not change as the UPDATE says: {before} -> {after}")

    # Rejected instead: the waiting psql gets an ERROR with the reviewer's name and reason.
    cmd = od.psql_cmd(gh, ANALYST, BULK_SQL)
    say(f"$ {cmd} &    # held again; {DBA['id']} rejects it this time")
    held = Background(cmd)
    rejected_id = held.wait_for(HELD).group(1)
    cmd = reject_cmd(gh, od, rejected_id)
    r = run_step(cmd)
    if r.returncode != 0:
        raise RuntimeError(f"{DBA['id']} could not reject {rejected_id}")
    r = held.finish()
    say(f"  the held psql -> exit {r.returncode}")
    for line in r.stderr.splitlines():
        say("     " + line)
    if r.returncode == 0 or f"rejected by {DBA['email']}: not before the price review" not in r.stderr:
        raise RuntimeError(f"the rejected statement's ERROR does not name {DBA['email']} and the reason")

    # Not waiting: refused at once with the request id (RV001); approved, the same line runs it once.
    cmd = no_wait_cmd(gh, od)
    say(f"$ {cmd}    # must return at once, the request open")
    r = run_shell(cmd + " -X -v VERBOSITY=verbose")
    show(r)
    m = re.search(r"request (apr_[A-Za-z0-9]+) is open; the statement was not run", r.stderr)
    if r.returncode == 0 or not m or "RV001" not in r.stderr:
        raise RuntimeError("with gatehouse.wait off the UPDATE did not return at once with RV001 and the request id")
    rerun_id = m.group(1)
    cmd = approve_cmd(gh, od, rerun_id)
    r = run_step(cmd)
    if r.returncode != 0:
        raise RuntimeError(f"{DBA['id']} could not approve {rerun_id}")
    cmd = no_wait_cmd(gh, od)
    say(f"$ {cmd}    # approved: runs now, once")
    r = run_shell(cmd)
    show(r)
    if r.returncode != 0 or f"UPDATE {BULK_ROWS}" not in r.stdout:
        raise RuntimeError(f"the approved {rerun_id} did not run when the UPDATE was run again")

    # The requests, decisions and the runs are in the audit trail.
    want = {request_id: {"pending", "approved", "consumed"}, rejected_id: {"pending", "rejected"},
            rerun_id: {"pending", "approved", "consumed"}}
    deadline = time.time() + 10
    while True:
        r = subprocess.run([str(BINARY), "audit", "search", "--config", str(gh.config_path), "--format", "jsonl"],
                           capture_output=True, text=True, timeout=30)
        records = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
        approvals = [rec for rec in records if rec.get("type") == "approval"]
        states = {rid: {rec.get("fields", {}).get("state") for rec in approvals if rid in json.dumps(rec)}
                  for rid in want}
        if all(want[rid] <= states[rid] for rid in want) or time.time() > deadline:
            break
        time.sleep(0.2)
    say(f"gatehouse audit search --format jsonl -> {len(approvals)} approval record(s)")
    for rid in want:
        say(f"  {rid}: {', '.join(sorted(str(s) for s in states[rid]))}")
    if not all(want[rid] <= states[rid] for rid in want):
        raise RuntimeError(f"the approval records are not in the audit trail: {approvals}")


def check_jit(gh: Gatehouse, od: OidcDemo) -> None:
    """Just-in-time access as the banner prints it: the agent's write is refused, it asks for a
    read_write grant, the DBA approves it with the printed approve line, and the write runs."""
    cmd = od.agent_psql_cmd(gh, AGENT_WRITE_SQL)
    say(f"$ {cmd}    # must be refused by {AGENT_READ_ONLY_RULE} (no grant yet)")
    r = run_shell(cmd)
    show(r)
    if r.returncode == 0 or f'Denied by rule "{AGENT_READ_ONLY_RULE}"' not in r.stderr:
        raise RuntimeError(f"the agent's write was not refused by {AGENT_READ_ONLY_RULE}")
    cmd = od.request_access_cmd(gh)
    r = run_step(cmd)
    m = re.search(r"\b(acc_[A-Za-z0-9]+)\b", r.stdout + r.stderr)
    if r.returncode != 0 or not m:
        raise RuntimeError("the agent's access request was not made")
    cmd = approve_cmd(gh, od, m.group(1))
    r = run_step(cmd)
    if r.returncode != 0:
        raise RuntimeError(f"{DBA['id']} could not approve {m.group(1)}")
    cmd = od.agent_psql_cmd(gh, AGENT_WRITE_SQL)
    say(f"$ {cmd}    # must run now, as demo_agent_writer")
    r = run_shell(cmd)
    show(r)
    if r.returncode != 0 or "UPDATE 1" not in r.stdout:
        raise RuntimeError("the agent's write did not run with the grant")
    r = run_shell(od.agent_psql_cmd(gh, "SELECT session_user") + " -X -A -t")
    say(f"  the agent's database login now: {r.stdout.strip()}")
    if r.stdout.strip() != "demo_agent_writer":
        raise RuntimeError(f"with the grant the agent does not log in as demo_agent_writer: {r.stdout}{r.stderr}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true",
                    help="start everything, run the printed scenarios non-interactively, stop, exit 0")
    ap.add_argument("--port", type=int, help="proxy port (default 6432 if free, else any free port)")
    ap.add_argument("--admin-port", type=int, help="admin HTTP port (default 9187 if free, else any free port)")
    ap.add_argument("--oidc-port", type=int,
                    help="OpenID Connect provider port (default 9188 if free, else any free port)")
    ap.add_argument("--no-oidc", action="store_true",
                    help="without the OpenID Connect provider (no Node.js needed): static users only")
    args = ap.parse_args()

    preflight(with_oidc=not args.no_oidc)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)

    # One directory for everything; world-traversable so the postgres user (when we are root)
    # can reach its data directory below it.
    base = Path(tempfile.mkdtemp(prefix="gatehouse-demo-"))
    os.chmod(base, 0o755)
    pg: PgCluster | None = None
    gh: Gatehouse | None = None
    od: OidcDemo | None = None
    rc = 0
    try:
        step(f"starting a throwaway PostgreSQL 15 cluster in {base / 'postgres'}")
        pg = PgCluster(base=base / "postgres", password="pg-" + secrets.token_hex(8))
        pg.init().start()
        step(f"PostgreSQL listening on 127.0.0.1:{pg.port}; loading {SCHEMA.relative_to(REPO)} into database "
             f"'{DATABASE}'")
        load_schema(pg)
        role_passwords = create_roles(pg)
        step(f"created the database logins {', '.join(ROLES)} (what Gatehouse maps identities to)")

        # --check never takes the well-known ports: CI may run it next to a real demo.
        port = pick_port(args.port, None if args.check else 6432)
        admin_port = pick_port(args.admin_port, None if args.check else 9187)
        if not args.no_oidc:
            od = OidcDemo(base, pick_port(args.oidc_port, None if args.check else 9188), admin_port)
            step(f"starting the OpenID Connect provider (node {OIDC_DIR.relative_to(REPO)}/provider.mjs) "
                 f"at {od.issuer}")
            od.idp.start(timeout=30)
        gh_dir = base / "gatehouse"
        gh_dir.mkdir()
        step(f"starting Gatehouse ({BINARY}) on 127.0.0.1:{port}, admin on 127.0.0.1:{admin_port}")
        audit_key = gh_dir / "audit-checkpoint.key"
        subprocess.run([str(BINARY), "audit", "keygen", "--out", str(audit_key)], check=True, capture_output=True)
        gh = Gatehouse(gatehouse_config(pg, port, admin_port, audit_key, od.issuer if od else None, role_passwords),
                       workdir=gh_dir)
        gh.start()
        os.chmod(gh.config_path, 0o600)  # it holds the backend password
        wait_port(gh.admin_port)

        if args.check:
            check(pg, gh)
            if od is not None:
                check_oidc(gh, od)
                check_console(gh, od)
                check_approvals(gh, od)
                check_jit(gh, od)
            say("demo check: OK")
        else:
            banner(base, pg, gh, od)
            while True:
                code = gh.proc.poll()
                if code is not None:
                    say(f"\ndemo: gatehouse exited with status {code}; last log lines:")
                    say("\n".join(gh.log().splitlines()[-20:]))
                    rc = 1
                    break
                if od is not None and (code := od.idp.proc.poll()) is not None:
                    say(f"\ndemo: the OpenID Connect provider exited with status {code}; last log lines:")
                    say("\n".join(od.idp.log().splitlines()[-20:]))
                    rc = 1
                    break
                time.sleep(0.5)
    except Stop as s:
        say(f"\n==> {s}: stopping")
    except Exception as e:  # noqa: BLE001 - report, clean up, exit non-zero
        say(f"demo: FAILED: {e}")
        if gh is not None:
            say("--- gatehouse log (last 30 lines) ---")
            say("\n".join(gh.log().splitlines()[-30:]))
        if od is not None and od.idp.proc is not None:
            say("--- OpenID Connect provider log (last 15 lines) ---")
            say("\n".join(od.idp.log().splitlines()[-15:]))
        rc = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if gh is not None and gh.proc is not None:
            step("stopping Gatehouse")
            gh.stop(timeout=15)
        if od is not None and od.idp.proc is not None:
            step("stopping the OpenID Connect provider")
            od.idp.stop()
        if pg is not None:
            step("stopping PostgreSQL")
            pg.stop()
        shutil.rmtree(base, ignore_errors=True)
        step(f"removed {base}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
