"""A real OpenID Connect provider for tests and the demo: tests/oidc/provider.mjs (panva/oidc-provider
on Node.js) in a subprocess, and standard-library clients for it.

Nothing is mocked: client credentials and device-flow tokens come from oidc-provider's own token
endpoint; `device_approve` drives the verification page, the login form (with the user's password)
and the consent page over HTTP, reading each page's form as a browser would. The /test/ endpoints
(mint, rotate, outage, stats) exist only because `test_endpoints` is on.

    with OidcProvider() as idp:
        tokens = idp.device_login("gatehouse-cli", "alice", OIDC_PASSWORDS["alice"])
        header, claims = decode_jwt(tokens["access_token"])
"""
from __future__ import annotations

import base64
import html.parser
import http.cookiejar
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tests.harness import REPO, free_port

OIDC_DIR = REPO / "tests" / "oidc"
PROVIDER_JS = OIDC_DIR / "provider.mjs"
NODE = os.environ.get("NODE", "node")

AUDIENCE = "gatehouse"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
USER_SCOPE = "openid email profile groups"
SIGNING_ALGS = ("RS256", "PS256", "ES256", "ES384", "EdDSA")

OIDC_PASSWORDS = {"alice": "alice-oidc-pw", "bob": "bob-oidc-pw"}


def breakglass(name: str) -> str:
    """The static (break-glass) user's name for a person who also has an IdP account: a token
    whose subject is a static user's name is refused, so the two must differ."""
    return f"{name}-breakglass"
DEFAULT_USERS = [
    {"id": "alice", "email": "alice@example.com", "name": "Alice Analyst", "password": OIDC_PASSWORDS["alice"],
     "groups": ["analysts"]},
    {"id": "bob", "email": "bob@example.com", "name": "Bob DBA", "password": OIDC_PASSWORDS["bob"],
     "groups": ["dba"]},
]
CLIENT_SECRETS = {"etl-agent": "etl-agent-secret", "short-agent": "short-agent-secret"}
DEFAULT_CLIENTS = [
    # `gatehouse login`: a public client (no secret) using the device flow.
    {"client_id": "gatehouse-cli", "client_name": "Gatehouse CLI", "grant_types": ["device_code", "refresh_token"]},
    # Machines: client credentials with a secret (HTTP Basic at the token endpoint).
    {"client_id": "etl-agent", "client_secret": CLIENT_SECRETS["etl-agent"], "grant_types": ["client_credentials"]},
    {"client_id": "short-agent", "client_secret": CLIENT_SECRETS["short-agent"], "grant_types": ["client_credentials"],
     "access_token_ttl": 3},
]


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def decode_jwt(token: str) -> tuple[dict, dict]:
    """(header, payload) of a compact JWS, without verifying anything."""
    header, payload, _sig = token.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(payload))


class OidcError(RuntimeError):
    """An error response (token endpoint JSON error, or a page that did not go where expected)."""

    def __init__(self, message: str, status: int | None = None, error: str | None = None,
                 body: dict | str | None = None):
        super().__init__(message)
        self.status = status
        self.error = error
        self.body = body


def _http(method: str, url: str, data: bytes | None = None, headers: dict | None = None,
          opener: urllib.request.OpenerDirector | None = None, timeout: float = 10.0):
    """(status, final url, headers, body bytes); HTTP errors are returned, not raised."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with (opener.open if opener else urllib.request.urlopen)(req, timeout=timeout) as r:
            return r.status, r.geturl(), r.headers, r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.geturl(), e.headers, e.read()


class _Page(html.parser.HTMLParser):
    """Forms (action, method, inputs), and the text of elements with an id, from one HTML page."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.forms: list[dict] = []
        self.ids: dict[str, str] = {}
        self._form: dict | None = None
        self._open: list[tuple[str, str]] = []
        self.raw = text
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        if tag == "form":
            self._form = {"id": a.get("id", ""), "action": a.get("action", ""),
                          "method": a.get("method", "get").lower(), "inputs": []}
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None and a.get("name"):
            self._form["inputs"].append({"name": a["name"], "type": a.get("type", "text").lower(),
                                         "value": a.get("value", "")})
        if "id" in a and tag not in ("input", "form"):
            self.ids[a["id"]] = ""
            self._open.append((tag, a["id"]))

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        if self._open and self._open[-1][0] == tag:
            self._open.pop()

    def handle_data(self, data):
        for _tag, i in self._open:
            self.ids[i] += data

    def text(self) -> str:
        return " ".join(re.sub(r"<[^>]*>", " ", self.raw).split())[:2000]


class Browser:
    """urllib with a cookie jar: follows redirects (303 after POST becomes GET), submits forms."""

    def __init__(self):
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, url: str):
        status, final, _h, body = _http("GET", url, opener=self.opener)
        return status, final, body.decode("utf-8", "replace")

    def submit(self, base_url: str, form: dict, values: dict[str, str]):
        url = urllib.parse.urljoin(base_url, form["action"] or base_url)
        data = urllib.parse.urlencode(values).encode()
        if form["method"] == "post":
            status, final, _h, body = _http("POST", url, data, {"Content-Type": "application/x-www-form-urlencoded"},
                                            opener=self.opener)
        else:
            sep = "&" if "?" in url else "?"
            status, final, _h, body = _http("GET", url + sep + data.decode(), opener=self.opener)
        return status, final, body.decode("utf-8", "replace")


class OidcProvider:
    """tests/oidc/provider.mjs on a free loopback port with a config written to a temp dir."""

    def __init__(self, users: list[dict] | None = None, clients: list[dict] | None = None,
                 audience: str = AUDIENCE, port: int | None = None, workdir: Path | None = None,
                 test_endpoints: bool = True, poll_interval: int = 1, keys_file: Path | None = None,
                 **extra):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="gh-oidc-"))
        self._own_workdir = workdir is None
        self.port = port or free_port()
        self.config = {
            "host": "127.0.0.1",
            "port": self.port,
            "issuer": f"http://127.0.0.1:{self.port}",
            "audience": audience,
            "users": users if users is not None else DEFAULT_USERS,
            "clients": clients if clients is not None else DEFAULT_CLIENTS,
            "test_endpoints": test_endpoints,
            "device_poll_interval": poll_interval,
            **extra,
        }
        if keys_file:
            self.config["keys_file"] = str(keys_file)
        self.config_path = self.workdir / "oidc-provider.json"
        self.log_path = self.workdir / "oidc-provider.log"
        self.proc: subprocess.Popen | None = None
        self._discovery: dict | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> "OidcProvider":
        if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
            raise RuntimeError(f"{OIDC_DIR}/node_modules is missing; run scripts/install-deps.sh "
                               f"(npm ci --prefix tests/oidc)")
        if shutil.which(NODE) is None:
            raise RuntimeError(f"{NODE} (Node.js) is not installed")
        self.config_path.write_text(json.dumps(self.config, indent=2) + "\n")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([NODE, str(PROVIDER_JS), "--config", str(self.config_path)],
                                     stdout=self._log, stderr=subprocess.STDOUT, cwd=OIDC_DIR)
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"oidc provider exited with {self.proc.returncode}:\n{self.log()}")
            try:
                status, _u, _h, body = _http("GET", self.issuer + "/.well-known/openid-configuration", timeout=2)
                if status == 200:
                    self._discovery = json.loads(body)
                    return self
            except OSError:
                pass
            if time.time() > deadline:
                self.stop()
                raise RuntimeError(f"oidc provider did not answer discovery in {timeout}s:\n{self.log()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def destroy(self) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "OidcProvider":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.destroy()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # ---- metadata --------------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        return self.config["issuer"]

    @property
    def audience(self) -> str:
        return self.config["audience"]

    @property
    def discovery_url(self) -> str:
        return self.issuer + "/.well-known/openid-configuration"

    @property
    def discovery(self) -> dict:
        if self._discovery is None:
            self._discovery = self._json("GET", self.discovery_url)
        return self._discovery

    @property
    def jwks_uri(self) -> str:
        return self.discovery["jwks_uri"]

    @property
    def token_endpoint(self) -> str:
        return self.discovery["token_endpoint"]

    @property
    def device_authorization_endpoint(self) -> str:
        return self.discovery["device_authorization_endpoint"]

    def jwks(self) -> dict:
        """The JWKS as a verifier fetches it (counts as a JWKS request)."""
        return self._json("GET", self.jwks_uri)

    # ---- plumbing --------------------------------------------------------------------------

    def _json(self, method: str, url: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        status, _u, _h, raw = _http(method, url, data, headers)
        if status != 200:
            raise OidcError(f"{method} {url}: HTTP {status}: {raw[:500]!r}", status)
        return json.loads(raw)

    def _form_post(self, url: str, form: dict, client_id: str | None = None, secret: str | None = None) -> dict:
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        form = {k: v for k, v in form.items() if v is not None}
        if secret is not None:
            # RFC 6749 2.3.1: form-urlencode the id and secret, then Basic.
            cred = f"{urllib.parse.quote(client_id, safe='')}:{urllib.parse.quote(secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
        elif client_id is not None:
            form["client_id"] = client_id
        status, _u, _h, raw = _http("POST", url, urllib.parse.urlencode(form).encode(), headers)
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        if status != 200:
            error = body.get("error") if isinstance(body, dict) else None
            desc = body.get("error_description", "") if isinstance(body, dict) else body[:300]
            raise OidcError(f"POST {url}: HTTP {status} {error}: {desc}", status, error, body)
        return body

    # ---- grants ----------------------------------------------------------------------------

    def client_credentials(self, client_id: str, secret: str | None = None, scope: str | None = None,
                           resource: str | None = None) -> dict:
        """Token response ({access_token, expires_in, token_type, ...}) for a client-credentials grant."""
        if secret is None:
            secret = CLIENT_SECRETS.get(client_id)
        return self._form_post(self.token_endpoint, {"grant_type": "client_credentials", "scope": scope,
                                                     "resource": resource}, client_id, secret)

    def device_start(self, client_id: str, scope: str = USER_SCOPE, secret: str | None = None) -> dict:
        """Device authorization response: device_code, user_code, verification_uri(_complete),
        expires_in, interval."""
        return self._form_post(self.device_authorization_endpoint, {"scope": scope}, client_id, secret)

    def device_approve(self, verification: str | dict, user: str, password: str) -> None:
        """What the person at the browser does: open the verification page, type the user code (or
        follow verification_uri_complete), confirm the device, sign in, allow. `verification` is the
        device_start response (the code is typed into verification_uri), a verification_uri_complete,
        or a bare user code. Raises OidcError if any page refuses (wrong password, bad code...)."""
        if isinstance(verification, dict):
            url, code = verification["verification_uri"], verification["user_code"]
        elif verification.startswith(("http://", "https://")):
            url, code = verification, urllib.parse.parse_qs(urllib.parse.urlparse(verification).query).get(
                "user_code", [None])[0]
        else:
            url, code = self.issuer + "/device", verification
        browser = Browser()
        status, where, text = browser.get(url)
        seen = []
        for _ in range(12):
            page = _Page(text)
            if "device-success" in page.ids:
                missing = {"login", "consent"} - set(seen)
                if missing:
                    raise OidcError(f"device approval finished without {missing} (steps {seen})")
                return
            if status >= 400 or "error" in page.ids or not page.forms:
                msg = page.ids.get("error", "").strip() or page.text()
                raise OidcError(f"device approval failed at {where} (HTTP {status}, steps {seen}): {msg}", status)
            form = page.forms[0]
            values = {i["name"]: i["value"] for i in form["inputs"]}
            types = {i["name"]: i["type"] for i in form["inputs"]}
            if types.get("user_code") == "text":
                if not code:
                    raise OidcError("the verification page asks for a user code and none was given")
                values["user_code"] = code
                seen.append("user_code")
            elif "password" in types.values():
                values["login"] = user
                values["password"] = password
                seen.append("login")
            elif form["id"] == "consent":
                seen.append("consent")
            elif values.get("confirm") == "yes":
                seen.append("confirm")
            else:
                seen.append("post")  # the auto-submitting form behind verification_uri_complete
            status, where, text = browser.submit(where, form, values)
        raise OidcError(f"device approval did not finish (steps {seen})")

    def device_poll(self, client_id: str, start: dict, timeout: float = 60.0, wait_first: bool = True,
                    secret: str | None = None) -> dict:
        """Poll the token endpoint as RFC 8628 says: every `interval` s, +5 s after slow_down."""
        interval = float(start.get("interval", 5))
        deadline = time.time() + timeout
        delay = interval if wait_first else 0.0
        while True:
            time.sleep(delay)
            try:
                return self._form_post(self.token_endpoint, {"grant_type": DEVICE_GRANT,
                                                             "device_code": start["device_code"]}, client_id, secret)
            except OidcError as e:
                if e.error == "slow_down":
                    interval += 5
                elif e.error != "authorization_pending":
                    raise
            if time.time() + interval > deadline:
                raise OidcError(f"device flow: no token after {timeout}s")
            delay = interval

    def device_login(self, client_id: str, user: str, password: str, scope: str = USER_SCOPE) -> dict:
        """The whole device flow; returns the token response (access_token, id_token, ...)."""
        start = self.device_start(client_id, scope)
        self.device_approve(start, user, password)
        return self.device_poll(client_id, start, wait_first=False)

    def refresh(self, client_id: str, refresh_token: str, secret: str | None = None) -> dict:
        return self._form_post(self.token_endpoint, {"grant_type": "refresh_token", "refresh_token": refresh_token},
                               client_id, secret)

    # ---- test endpoints --------------------------------------------------------------------

    def standard_claims(self, sub: str = "alice", lifetime: int = 300, **overrides) -> dict:
        """iss/aud/sub/iat/exp/jti claims as the provider would issue; overrides replace or add."""
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.audience, "sub": sub, "iat": now, "exp": now + lifetime,
                  "jti": base64.urlsafe_b64encode(os.urandom(12)).decode().rstrip("=")}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def mint(self, claims: dict, header: dict | None = None, sign_with: str | None = None,
             hmac_key: str | None = None) -> str:
        """A JWS signed by the provider's own key for header['alg'] (default RS256, typ at+jwt unless
        given; kid: the key's, unless given; kid=None leaves it out). alg 'none' gives an unsigned
        token; HS* is keyed with `hmac_key`, by default the RS256 public key PEM (alg confusion)."""
        header = dict(header or {})
        header.setdefault("alg", "RS256")
        header.setdefault("typ", "at+jwt")
        body = {"header": header, "claims": claims}
        if sign_with is not None:
            body["sign_with"] = sign_with
        if hmac_key is not None:
            body["hmac_key"] = hmac_key
        return self._json("POST", self.issuer + "/test/mint", body)["token"]

    def rotate(self) -> list[str]:
        """New signing keys (new kids); the old ones leave the JWKS. Returns the new kids."""
        return self._json("POST", self.issuer + "/test/rotate", {})["kids"]

    def keys(self) -> dict:
        """The public JWKS being served (not counted as a JWKS request)."""
        return self._json("GET", self.issuer + "/test/keys")

    def outage(self, seconds: float) -> None:
        """Every non-test endpoint answers 503 for `seconds`."""
        self._json("POST", self.issuer + "/test/outage", {"seconds": seconds})

    def stats(self) -> dict:
        return self._json("GET", self.issuer + "/test/stats")

    def jwks_requests(self) -> int:
        return int(self.stats()["jwks_requests"])
