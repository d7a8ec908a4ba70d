"""The web console (docs/console.md) as tests drive it without a browser: sign-in through the real
OpenID Connect provider (tests/oidc) with the authorization code flow, then the admin API with the
`gh_session` cookie and the CSRF token, as the console's own page does.

    idp = console_provider(admin_port, workdir=...)       # users alice/bob/carol/dave, console client
    proxy = Gatehouse(console_config(pg, idp, admin_port, workdir), workdir=workdir).start()
    bob = console_login(f"http://127.0.0.1:{admin_port}", "bob", CONSOLE_PASSWORDS["bob"])
    status, doc = bob.api("POST", f"/api/v1/approvals/{rid}/approve", {"comment": "ok"})

Redirects are followed by hand (each hop is kept in `hops`), so a test sees every answer of the
sign-in, its `Set-Cookie` headers included. Cookies live in an `http.cookiejar.CookieJar`, which,
as a browser does, sends a cookie to every port of 127.0.0.1 whose path matches.
"""
from __future__ import annotations

import http.client
import http.cookiejar
import json
import os
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness import HELD, Gatehouse, HeldPsql, free_port, wait_for  # noqa: F401 (re-exported)
from tests.harness.oidc import CLIENT_SECRETS, OidcProvider, _Page

CONSOLE_CLIENT_ID = "gatehouse-console"

# Everyone's role comes from their IdP groups through admin.roles (CONSOLE_ROLES).
CONSOLE_PASSWORDS = {"alice": "alice-console-pw", "bob": "bob-console-pw", "carol": "carol-console-pw",
                     "dave": "dave-console-pw"}
CONSOLE_USERS = [
    {"id": "alice", "email": "alice@example.com", "name": "Alice Analyst", "password": CONSOLE_PASSWORDS["alice"],
     "groups": ["analysts"]},                                        # requester (everyone is)
    {"id": "bob", "email": "bob@example.com", "name": "Bob DBA", "password": CONSOLE_PASSWORDS["bob"],
     "groups": ["dba"]},                                             # reviewer
    {"id": "carol", "email": "carol@example.com", "name": "Carol Auditor", "password": CONSOLE_PASSWORDS["carol"],
     "groups": ["auditors"]},                                        # auditor
    {"id": "dave", "email": "dave@example.com", "name": "Dave Admin", "password": CONSOLE_PASSWORDS["dave"],
     "groups": ["admins"]},                                          # admin
]
CONSOLE_ROLES = {"admin": ["admins"], "reviewer": ["dba"], "auditor": ["auditors"]}
ROLES_OF = {"alice": ["requester"], "bob": ["requester", "reviewer"], "carol": ["auditor", "requester"],
            "dave": ["admin", "requester"]}


# The database role every identity logs in as, and the tables the console tests use.
DB_ROLE, DB_ROLE_PASSWORD = "gh_console_app", "gh-console-app-pw"
ACCOUNTS, CUSTOMERS = "console_accounts", "console_customers"


def console_clients(admin_url: str) -> list[dict]:
    """The provider's clients: the console (authorization code, public, PKCE), the CLI (device
    flow: bearer tokens for the API and database logins) and an agent (client credentials)."""
    return [
        {"client_id": CONSOLE_CLIENT_ID, "client_name": "Gatehouse console",
         "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
         "redirect_uris": [f"{admin_url}/console/callback"], "token_endpoint_auth_method": "none"},
        {"client_id": "gatehouse-cli", "client_name": "Gatehouse CLI", "grant_types": ["device_code", "refresh_token"]},
        {"client_id": "etl-agent", "client_secret": CLIENT_SECRETS["etl-agent"], "grant_types": ["client_credentials"]},
    ]


def console_provider(admin_port: int, workdir: Path | None = None) -> OidcProvider:
    """A started provider whose console client redirects to the admin listener on `admin_port`
    (the port must be chosen before the provider starts)."""
    return OidcProvider(users=CONSOLE_USERS, clients=console_clients(f"http://127.0.0.1:{admin_port}"),
                        workdir=workdir).start()


def prepare_database(pg) -> None:
    """The login role and two tables: accounts (writes held for review) and customers (email is a
    sensitive, classified column)."""
    pg.psql(f"do $$ begin create role {DB_ROLE}; exception when duplicate_object then null; end $$")
    pg.psql(f"alter role {DB_ROLE} login password '{DB_ROLE_PASSWORD}'")
    pg.psql(f"drop table if exists {ACCOUNTS}; drop table if exists {CUSTOMERS}")
    pg.psql(f"create table {ACCOUNTS}(id int primary key, balance int not null)")
    pg.psql(f"insert into {ACCOUNTS} select g, 100 from generate_series(1, 50) g")
    pg.psql(f"create table {CUSTOMERS}(id int primary key, name text, email text)")
    pg.psql(f"insert into {CUSTOMERS} select g, 'customer ' || g, 'c' || g || '@example.org' "
            f"from generate_series(1, 20) g")
    pg.psql(f"grant select, insert, update, delete on {ACCOUNTS}, {CUSTOMERS} to {DB_ROLE}")


def console_config(pg, idp: OidcProvider, admin_port: int, workdir: Path, approvals_timeout: str = "300s") -> dict:
    """A gatehouse config with the console on (admin.console.client_id), roles from the IdP's
    groups, a `review` rule on UPDATEs of console_accounts (reviewers: dba or admins) and a
    classified column (console_customers.email, pii)."""
    admin_url = f"http://127.0.0.1:{admin_port}"
    return {
        "threads": 2,
        "log": {"level": "info"},
        "admin": {"address": "127.0.0.1", "port": admin_port, "public_url": admin_url,
                  "roles": dict(CONSOLE_ROLES), "console": {"client_id": CONSOLE_CLIENT_ID}},
        "audit": {"node": "console-e2e"},
        "oidc": {"allow_loopback_plaintext": True,
                 "issuers": [{"issuer": idp.issuer, "audience": ["gatehouse", "gatehouse-cli"]}]},
        "approvals": {"timeout": approvals_timeout, "rerun_window": "1h", "store": str(workdir / "approvals.db"),
                      "max_grant": "8h"},
        "targets": [{
            "name": "app",
            "environment": "test",
            "backend": {"host": "127.0.0.1", "port": pg.port, "database": "postgres"},
            "login": {"user": DB_ROLE, "password": DB_ROLE_PASSWORD},
        }],
        "classification": [{"columns": [f"{CUSTOMERS}.email"], "tags": ["pii"], "sensitivity": "high"}],
        "rules": [
            {"name": "review-balance-changes", "when": {"tables": [ACCOUNTS], "statements": ["update"]},
             "action": "review", "reviewers": {"groups": ["dba", "admins"], "approvals": 1}},
        ],
    }


# ---- HTTP with a cookie jar, redirects by hand ------------------------------------------------

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # the 3xx comes back as an HTTPError, handled as an answer


@dataclass
class Answer:
    method: str
    url: str
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        try:
            return json.loads(self.body) if self.body else {}
        except ValueError:
            raise AssertionError(f"{self.method} {self.url}: HTTP {self.status}, body not JSON: {self.body[:300]!r}")

    def set_cookies(self) -> list[str]:
        return self.headers.get_all("Set-Cookie") or []

    def set_cookie(self, name: str) -> str | None:
        """The Set-Cookie header line that sets `name`, or None."""
        for line in self.set_cookies():
            if line.split("=", 1)[0].strip() == name:
                return line
        return None

    def __repr__(self) -> str:
        return f"<{self.method} {self.url} -> {self.status} {self.text[:300]!r}>"


def cookie_attributes(line: str) -> dict[str, str]:
    """Attributes of one Set-Cookie line, names lower-cased: {"path": "/", "httponly": "", ...}."""
    parts = [p.strip() for p in line.split(";")]
    out = {}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        out[k.strip().lower()] = v.strip()
    return out


@dataclass
class ConsoleClient:
    """A cookie-jar HTTP client for one person at the console."""

    admin_url: str
    jar: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)
    csrf_token: str | None = None
    me: dict | None = None
    hops: list[Answer] = field(default_factory=list)
    timeout: float = 20.0

    def __post_init__(self):
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect())

    # -- plumbing

    def url(self, path_or_url: str) -> str:
        return path_or_url if path_or_url.startswith(("http://", "https://")) else self.admin_url + path_or_url

    def request(self, method: str, path_or_url: str, body=None, headers: dict | None = None,
                raw: bytes | None = None, timeout: float | None = None) -> Answer:
        url = self.url(path_or_url)
        h = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(url, data=data, headers=h, method=method)
        try:
            with self.opener.open(req, timeout=timeout or self.timeout) as r:
                return Answer(method, url, r.status, r.headers, r.read())
        except urllib.error.HTTPError as e:
            with e:
                return Answer(method, url, e.code, e.headers, e.read())

    def follow(self, answer: Answer, limit: int = 15) -> Answer:
        """Follows 3xx answers with GETs (the cookie jar sees every hop); returns the first non-3xx."""
        for _ in range(limit):
            if answer.status not in (301, 302, 303, 307, 308):
                return answer
            location = answer.headers.get("Location")
            if not location:
                raise AssertionError(f"redirect without Location: {answer!r}")
            answer = self.request("GET", urllib.parse.urljoin(answer.url, location))
            self.hops.append(answer)
        raise AssertionError(f"more than {limit} redirects; hops: {self.hops}")

    def cookie(self, name: str) -> str | None:
        for c in self.jar:
            if c.name == name:
                return c.value
        return None

    def drop_cookie(self, name: str) -> None:
        for c in list(self.jar):
            if c.name == name:
                self.jar.clear(c.domain, c.path, c.name)

    def set_cookie(self, name: str, value: str, path: str = "/") -> None:
        """Puts a cookie in the jar as a forger would (host-only, for 127.0.0.1)."""
        self.drop_cookie(name)
        self.jar.set_cookie(http.cookiejar.Cookie(
            version=0, name=name, value=value, port=None, port_specified=False, domain="127.0.0.1",
            domain_specified=False, domain_initial_dot=False, path=path, path_specified=True, secure=False,
            expires=None, discard=True, comment=None, comment_url=None, rest={"HttpOnly": None}))

    # -- sign-in

    def authorize(self, user: str, password: str, next_route: str | None = None) -> str:
        """GET /console/login, the provider's login and consent pages; returns the callback URL the
        provider redirects to (not yet followed). Raises AssertionError when a page refuses."""
        self.hops = []
        path = "/console/login" + (f"?next={urllib.parse.quote(next_route, safe='')}" if next_route else "")
        first = self.request("GET", path)
        self.hops.append(first)
        if first.status not in (302, 303):
            raise AssertionError(f"GET {path} should redirect to the IdP: {first!r}")
        self.login_answer = first
        callback_prefix = self.admin_url + "/console/callback"
        answer = first
        steps: list[str] = []
        for _ in range(12):
            location = answer.headers.get("Location") if answer.status in (301, 302, 303, 307, 308) else None
            if location:
                target = urllib.parse.urljoin(answer.url, location)
                if target.startswith(callback_prefix):
                    return target
                answer = self.request("GET", target)
                self.hops.append(answer)
                continue
            page = _Page(answer.text)
            if answer.status >= 400 or "error" in page.ids or not page.forms:
                msg = page.ids.get("error", "").strip() or page.text()
                raise AssertionError(f"sign-in of {user} stopped at {answer.url} (HTTP {answer.status}, "
                                     f"steps {steps}): {msg}")
            form = page.forms[0]
            values = {i["name"]: i["value"] for i in form["inputs"]}
            if any(i["type"] == "password" for i in form["inputs"]):
                values.update(login=user, password=password)
                steps.append("login")
            elif form["id"] == "consent":
                steps.append("consent")
            else:
                steps.append(f"form {form['id'] or form['action']}")
            action = urllib.parse.urljoin(answer.url, form["action"] or answer.url)
            data = urllib.parse.urlencode(values).encode()
            if form["method"] == "post":
                answer = self.request("POST", action, raw=data,
                                      headers={"Content-Type": "application/x-www-form-urlencoded"})
            else:
                answer = self.request("GET", action + ("&" if "?" in action else "?") + data.decode())
            self.hops.append(answer)
        raise AssertionError(f"sign-in of {user} did not reach {callback_prefix} (steps {steps}, hops {self.hops})")

    def finish(self, callback_url: str) -> Answer:
        """GET the callback; keeps the answer in `callback_answer`."""
        self.callback_answer = self.request("GET", callback_url)
        self.hops.append(self.callback_answer)
        return self.callback_answer

    def login(self, user: str, password: str, next_route: str | None = None) -> "ConsoleClient":
        callback = self.authorize(user, password, next_route)
        answer = self.finish(callback)
        if answer.status >= 400 or not self.cookie("gh_session"):
            raise AssertionError(f"the console callback did not sign {user} in: {answer!r}; "
                                 f"Set-Cookie {answer.set_cookies()}")
        self.refresh_session()
        return self

    def refresh_session(self) -> dict:
        """GET /api/v1/console/session: who is signed in, and the CSRF token for POSTs."""
        answer = self.request("GET", "/api/v1/console/session")
        if answer.status != 200:
            raise AssertionError(f"GET /api/v1/console/session after sign-in: {answer!r}")
        self.me = answer.json()
        self.csrf_token = self.me.get("csrf_token")
        if not self.csrf_token:
            raise AssertionError(f"no csrf_token in {self.me}")
        return self.me

    # -- the API with the cookie

    def api(self, method: str, path: str, body=None, csrf: bool | str = True,
            headers: dict | None = None) -> tuple[int, dict]:
        """(status, JSON body). POSTs carry X-CSRF-Token unless csrf=False; a string is sent as is."""
        h = dict(headers or {})
        if method != "GET" and csrf:
            h["X-CSRF-Token"] = csrf if isinstance(csrf, str) else (self.csrf_token or "")
        if method == "POST" and body is None:
            body = {}
        answer = self.request(method, path, body, h)
        return answer.status, answer.json()

    def logout(self, csrf: bool | str = True) -> Answer:
        h = {}
        if csrf:
            h["X-CSRF-Token"] = csrf if isinstance(csrf, str) else (self.csrf_token or "")
        return self.request("POST", "/console/logout", headers=h, raw=b"")


def console_login(admin_url: str, user: str, password: str, next_route: str | None = None) -> ConsoleClient:
    """A ConsoleClient signed in as `user` through the provider's login and consent pages."""
    return ConsoleClient(admin_url.rstrip("/")).login(user, password, next_route)


# ---- bearer calls ------------------------------------------------------------------------------

def bearer_request(admin_url: str, method: str, path: str, token: str | None, body=None,
                   headers: dict | None = None, timeout: float = 20) -> Answer:
    """One admin API call with a bearer token (no cookies); redirects are not followed."""
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None or method == "POST":
        data = json.dumps(body if body is not None else {}).encode()
        h.setdefault("Content-Type", "application/json")
    url = admin_url + path
    req = urllib.request.Request(url, data=data, headers=h, method=method)
    opener = urllib.request.build_opener(_NoRedirect())
    try:
        with opener.open(req, timeout=timeout) as r:
            return Answer(method, url, r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        with e:
            return Answer(method, url, e.code, e.headers, e.read())


def bearer(admin_url: str, method: str, path: str, token: str | None, body=None,
           headers: dict | None = None, timeout: float = 20) -> tuple[int, dict]:
    """(status, JSON body) of an admin API call with a bearer token."""
    answer = bearer_request(admin_url, method, path, token, body, headers, timeout)
    return answer.status, answer.json()


# ---- database clients -------------------------------------------------------------------------

def psql_env(token: str) -> dict:
    e = dict(os.environ, PGPASSWORD=token, PGSSLMODE="disable", PGCONNECT_TIMEOUT="15")
    return e


class RunningPsql:
    """psql running a long statement (pg_sleep) through the proxy: a session that is active."""

    def __init__(self, port: int, user: str, token: str, sql: str, app: str = "console-e2e"):
        env = psql_env(token)
        env["PGAPPNAME"] = app
        self.proc = subprocess.Popen(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
                                      "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", "app", "-c", sql],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                     start_new_session=True)

    def finish(self, timeout: float = 30) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=10)


# ---- the whole stack ----------------------------------------------------------------------------

class ConsoleStack:
    """The OIDC provider (console client registered for this admin port), a Gatehouse with the
    console on in front of `pg`, and, made on first use, each person's bearer token (device flow
    through the provider's pages) and signed-in console client."""

    def __init__(self, pg, workdir: Path):
        self.pg = pg
        self.workdir = Path(workdir)
        prepare_database(pg)
        self.admin_port = free_port()  # the redirect URI names it: known before the provider starts
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        (self.workdir / "oidc").mkdir(parents=True, exist_ok=True)
        self.idp = console_provider(self.admin_port, workdir=self.workdir / "oidc")
        try:
            self.proxy = Gatehouse(console_config(pg, self.idp, self.admin_port, self.workdir),
                                   workdir=self.workdir).start()
        except BaseException:
            self.idp.stop()
            raise
        if self.proxy.admin_port != self.admin_port:
            self.stop()
            raise RuntimeError(f"admin port {self.admin_port} was taken; the console client's redirect URI names it")
        self._tokens: dict[str, str] = {}
        self._consoles: dict[str, ConsoleClient] = {}

    @property
    def port(self) -> int:
        return self.proxy.port

    def token(self, user: str) -> str:
        """An access token for `user` (device flow with the CLI client), kept for the stack's life;
        "agent" is the etl-agent's client-credentials token."""
        if user not in self._tokens:
            if user == "agent":
                self._tokens[user] = self.idp.client_credentials("etl-agent")["access_token"]
            else:
                self._tokens[user] = self.idp.device_login("gatehouse-cli", user,
                                                           CONSOLE_PASSWORDS[user])["access_token"]
        return self._tokens[user]

    def console(self, user: str) -> ConsoleClient:
        """`user` signed in at the console (one client per person, kept)."""
        if user not in self._consoles:
            self._consoles[user] = console_login(self.admin_url, user, CONSOLE_PASSWORDS[user])
        return self._consoles[user]

    def new_console(self, user: str) -> ConsoleClient:
        return console_login(self.admin_url, user, CONSOLE_PASSWORDS[user])

    def api(self, user: str, method: str, path: str, body=None) -> tuple[int, dict]:
        """A bearer call as `user`."""
        return bearer(self.admin_url, method, path, self.token(user), body)

    def stop(self) -> None:
        try:
            self.proxy.stop()
        finally:
            self.idp.stop()
