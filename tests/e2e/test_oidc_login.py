"""OIDC tokens as database logins, end to end: a real oidc-provider (tests/oidc), real psql and
psycopg clients, a real PostgreSQL behind Gatehouse."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest

import pgwire
from conftest import USERS
from tests.harness import BINARY, Gatehouse
from tests.harness.oidc import CLIENT_SECRETS, OIDC_PASSWORDS, OidcProvider, breakglass, decode_jwt

ROLES = {"gh_analyst": "analyst-pw", "gh_dba": "dba-pw", "gh_etl": "etl-pw"}


@pytest.fixture(scope="module")
def roles(pg):
    for r, pw in ROLES.items():
        # Idempotent: another module may have granted this role rights in its own database,
        # and a role that owns or holds anything cannot be dropped.
        pg.psql(f"do $$ begin create role {r}; exception when duplicate_object then null; end $$")
        pg.psql(f"alter role {r} login password '{pw}'")
    pg.psql("drop role if exists gh_dba_role")
    pg.psql("create role gh_dba_role")
    pg.psql("grant gh_dba_role to gh_dba")
    yield


def oidc_config(pg, user_hashes, idp: OidcProvider, certs: Path | None = None, **oidc_overrides) -> dict:
    issuer = {"issuer": idp.issuer, "audience": ["gatehouse", "gatehouse-cli"], "min_refresh_interval": "1s"}
    issuer.update(oidc_overrides.pop("issuer_overrides", {}))
    oidc = {"allow_loopback_plaintext": True, "issuers": [issuer]}
    oidc.update(oidc_overrides)
    cfg = {
        "threads": 2,
        "log": {"level": "info"},
        "users": [{"name": breakglass(n), "password": h, "groups": ["dba"]} for n, h in user_hashes.items()],
        "oidc": oidc,
        "targets": [{
            "name": "app",
            "environment": "test",
            "backend": {"host": "127.0.0.1", "port": pg.port, "database": "postgres"},
            "logins": [
                {"when": {"groups": ["dba"]}, "user": "gh_dba", "password": ROLES["gh_dba"], "role": "gh_dba_role"},
                {"when": {"groups": ["analysts"]}, "user": "gh_analyst", "password": ROLES["gh_analyst"]},
                {"when": {"kinds": ["agent"]}, "user": "gh_etl", "password": ROLES["gh_etl"]},
                # static users (break-glass) keep the proxy's own login
                {"when": {"subjects": [breakglass(n) for n in USERS]}, "user": pg.user, "password": pg.password},
            ],
        }],
    }
    if certs:
        cfg["tls"] = {"mode": "allow", "cert_file": str(certs / "server.crt"), "key_file": str(certs / "server.key")}
    return cfg


@pytest.fixture(scope="module")
def proxy(pg, user_hashes, oidc, roles, certs, tmp_path_factory):
    p = Gatehouse(oidc_config(pg, user_hashes, oidc, certs), workdir=tmp_path_factory.mktemp("gh-oidc")).start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def bob_tokens(oidc):
    return oidc.device_login("gatehouse-cli", "bob", OIDC_PASSWORDS["bob"])


@pytest.fixture(scope="module")
def alice_tokens(oidc):
    return oidc.device_login("gatehouse-cli", "alice", OIDC_PASSWORDS["alice"])


def run_psql(proxy, user: str, token: str, sql: str, sslmode: str = "disable", check: bool = True,
             dbname: str = "app") -> subprocess.CompletedProcess:
    env = dict(os.environ, PGPASSWORD=token, PGSSLMODE=sslmode, PGCONNECT_TIMEOUT="15")
    r = subprocess.run(["psql", "-X", "-A", "-t", "-h", "127.0.0.1", "-p", str(proxy.port), "-U", user, "-d", dbname,
                        "-c", sql], capture_output=True, text=True, timeout=60, env=env)
    if check:
        assert r.returncode == 0, f"psql failed:\n{r.stderr}\n--- proxy log ---\n{proxy.log()[-3000:]}"
    return r


def token_connect(proxy, user: str, token: str, **kw) -> psycopg.Connection:
    kw.setdefault("sslmode", "disable")
    return psycopg.connect(host="127.0.0.1", port=proxy.port, user=user, password=token, dbname="app",
                           connect_timeout=15, **kw)


def refused(proxy, token: str, user: str = "someone@example.com") -> dict:
    """The ErrorResponse fields of a token login that must fail."""
    return pgwire.startup_error(proxy.port, user, token, timeout=20)


def workdir(base: Path, name: str) -> Path:
    d = base / name
    d.mkdir(parents=True, exist_ok=True)
    return d


# ---- logins that work ------------------------------------------------------------------------

def test_a_person_logs_in_with_psql_using_a_device_flow_access_token(proxy, bob_tokens):
    token = bob_tokens["access_token"]
    header, claims = decode_jwt(token)
    assert header["typ"] == "at+jwt" and claims["aud"] == "gatehouse"
    out = run_psql(proxy, "bob@example.com", token,
                   "select session_user, current_user, current_setting('gatehouse.identity'), "
                   "current_setting('gatehouse.identity_email'), current_setting('gatehouse.identity_groups'), "
                   "current_setting('gatehouse.identity_kind'), current_setting('gatehouse.identity_method')")
    # the DBA group maps to gh_dba, which starts with SET ROLE gh_dba_role
    assert out.stdout.strip() == "gh_dba|gh_dba_role|bob|bob@example.com|dba|human|oidc"
    # and the backend password never reaches the client or the log
    assert ROLES["gh_dba"] not in proxy.log()


def test_an_id_token_works_too_and_the_username_is_free_text(proxy, alice_tokens):
    id_token = alice_tokens["id_token"]
    _, claims = decode_jwt(id_token)
    assert claims["aud"] == "gatehouse-cli"
    out = run_psql(proxy, "whatever-name", id_token,
                   "select session_user, current_setting('gatehouse.identity_email')")
    assert out.stdout.strip() == "gh_analyst|alice@example.com"


def test_an_agent_logs_in_with_a_client_credentials_token_through_psycopg(proxy, oidc):
    token = oidc.client_credentials("etl-agent")["access_token"]
    with token_connect(proxy, "etl-agent", token) as c:
        row = c.execute("select session_user, current_setting('gatehouse.identity'), "
                        "current_setting('gatehouse.identity_kind')").fetchone()
    assert row == ("gh_etl", "etl-agent", "agent")


def test_tls_clients_log_in_with_tokens(proxy, alice_tokens):
    token = alice_tokens["access_token"]
    with token_connect(proxy, "alice@example.com", token, sslmode="require") as c:
        assert c.pgconn.ssl_in_use
        assert c.execute("select session_user").fetchone() == ("gh_analyst",)


def test_tokens_of_several_kilobytes_log_in(proxy, oidc):
    groups = ["analysts"] + [f"team-{i:04d}-{uuid.uuid4().hex}" for i in range(80)]
    token = oidc.mint(oidc.standard_claims(sub="carol", email="carol@example.com", groups=groups))
    assert 3500 < len(token) < 8000, len(token)
    out = run_psql(proxy, "carol@example.com", token, "select session_user")
    assert out.stdout.strip() == "gh_analyst"
    with token_connect(proxy, "carol@example.com", token) as c:
        assert c.execute("select 1").fetchone() == (1,)


@pytest.mark.parametrize("claims", [
    {"sub": "mallory", "email": "bob@example.com\t-c\tgatehouse.identity=bob", "groups": ["analysts"]},
    {"sub": "mallory\u0000role\u0000none", "groups": ["analysts"]},
    {"sub": "mallory", "groups": ["analysts\n-c gatehouse.identity_groups=dba"]},
])
def test_claims_with_control_characters_are_refused(proxy, oidc, claims):
    """Claims reach the database in the startup packet: a tab or newline would start a setting of
    its own there, a NUL would end the parameter. Refused at login (28000), never passed on."""
    fields = refused(proxy, oidc.mint(oidc.standard_claims(**claims)))
    assert fields["C"] == "28000" and "control characters" in fields["M"], fields


def test_a_token_cannot_take_a_static_users_name(proxy, oidc):
    """Found by adversarial testing: a validly signed token with sub "alice" (a static user's
    name) matched login mappings and rules written for the static user, and got its login."""
    fields = refused(proxy, oidc.mint(oidc.standard_claims(sub=breakglass("alice"), groups=[])),
                     user="someone@example.com")
    assert fields["C"] == "28000", fields
    assert f'subject "{breakglass("alice")}" is also the name of a static user' in fields["M"], fields


def test_group_names_with_commas_reach_the_database_escaped(proxy, oidc):
    token = oidc.mint(oidc.standard_claims(sub="erin", email="erin@example.com",
                                           groups=["analysts", "cn=ops,ou=teams", "back\\slash"]))
    with token_connect(proxy, "erin@example.com", token) as c:
        got = c.execute("select current_setting('gatehouse.identity_groups'), current_setting('gatehouse.identity'),"
                        " current_setting('search_path')").fetchone()
    assert got == ("analysts,cn=ops\\,ou=teams,back\\\\slash", "erin", '"$user", public'), got


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "ES384", "EdDSA"])
def test_each_signing_algorithm_of_the_issuer_is_accepted(proxy, oidc, alg):
    token = oidc.mint(oidc.standard_claims(sub="dave", groups=["analysts"]), header={"alg": alg})
    assert decode_jwt(token)[0]["alg"] == alg
    with token_connect(proxy, "dave", token) as c:
        assert c.execute("select session_user").fetchone() == ("gh_analyst",)


def test_static_users_still_log_in_with_scram(proxy):
    c = pgwire.connect(proxy.port, breakglass("alice"), USERS["alice"])
    try:
        assert 10 in c.auth_codes and 3 not in c.auth_codes
        assert c.simple_query("select current_setting('gatehouse.identity_method')") == [["scram-sha-256"]]
    finally:
        c.close()


# ---- logins that are refused, each with a message that says what to fix -------------------------

def test_refusals_name_the_problem(proxy, oidc):
    now = int(time.time())
    cases = {
        "expired": (oidc.mint(oidc.standard_claims(iat=now - 7200, exp=now - 3600)), "28P01", "expired at"),
        "not yet valid": (oidc.mint(oidc.standard_claims(nbf=now + 3600)), "28P01", "not valid before"),
        "wrong audience": (oidc.mint(oidc.standard_claims(aud="billing-api")), "28P01", 'audience "billing-api"'),
        "wrong issuer": (oidc.mint(oidc.standard_claims(iss="https://evil.example.com")), "28P01",
                         'issuer "https://evil.example.com" are not accepted'),
        "alg none": (oidc.mint(oidc.standard_claims(), header={"alg": "none"}), "28P01", "none"),
        "HS256 with the public key": (oidc.mint(oidc.standard_claims(), header={"alg": "HS256"}), "28P01",
                                      "shared secret"),
        "unknown kid": (oidc.mint(oidc.standard_claims(), header={"alg": "RS256", "kid": "no-such-key"}), "28P01",
                        'key "no-such-key"'),
        "not a token": ("hunter2", "28P01", "not an OIDC token"),
    }
    good = oidc.mint(oidc.standard_claims(groups=["analysts"]))
    h, p, s = good.split(".")
    _, claims = decode_jwt(good)
    claims["groups"] = ["dba"]
    import base64
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    cases["tampered payload"] = (f"{h}.{forged}.{s}", "28P01", "signature does not verify")
    for name, (token, code, text) in cases.items():
        err = refused(proxy, token)
        assert err["C"] == code, (name, err)
        assert text in err["M"], (name, err)
        assert token not in err["M"] and token not in err.get("H", ""), name
    log = proxy.log()
    assert good not in log and forged not in log


def test_a_person_without_a_login_mapping_is_refused_clearly(proxy, oidc):
    token = oidc.mint(oidc.standard_claims(sub="mallory", email="mallory@example.com", groups=["interns"]))
    err = refused(proxy, token, "mallory@example.com")
    assert err["C"] == "28000"
    assert 'no database login on target "app" for mallory@example.com (groups: interns)' in err["M"]


def test_plaintext_token_logins_are_refused_before_the_password_is_asked(pg, user_hashes, oidc, roles, certs,
                                                                         tmp_path):
    cfg = oidc_config(pg, user_hashes, oidc, certs, allow_loopback_plaintext=False)
    p = Gatehouse(cfg, workdir=tmp_path).start()
    try:
        token = oidc.client_credentials("etl-agent")["access_token"]
        c = pgwire.Conn(p.port)
        try:
            with pytest.raises(pgwire.WireError) as ei:
                c.startup("etl-agent", token)
            assert c.auth_codes == []  # no AuthenticationCleartextPassword: the token never left the client
        finally:
            c.close()
        assert ei.value.code == "28000"
        assert "require an encrypted connection" in ei.value.message
        assert "sslmode=require" in ei.value.fields.get("H", "")
        # the same token over TLS works
        with token_connect(p, "etl-agent", token, sslmode="require") as conn:
            assert conn.execute("select session_user").fetchone() == ("gh_etl",)
    finally:
        p.stop()


def test_failed_logins_are_audited_and_repeated_failures_slowed_down(proxy, oidc):
    bad = oidc.mint(oidc.standard_claims(aud="nope"))
    durations = []
    for _ in range(6):
        t0 = time.monotonic()
        refused(proxy, bad, "slow@example.com")
        durations.append(time.monotonic() - t0)
    # the first three are answered at once; then 250 ms, 500 ms, 1 s
    assert sum(durations[3:]) >= 1.5, durations
    assert durations[-1] >= 0.9, durations
    store = proxy.workdir / "gatehouse-audit.db"
    deadline = time.time() + 10
    while True:  # records of refused logins reach the store within the flush interval
        r = subprocess.run([str(BINARY), "audit", "search", "--store", str(store), "--format", "jsonl",
                            "--limit", "1000"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        recs = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
        failed = [x for x in recs
                  if x.get("type") == "connect_failed" and x.get("identity", {}).get("user") == "slow@example.com"]
        if len(failed) >= 6 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert len(failed) == 6, [x.get("type") for x in recs][-20:]
    assert all(x.get("sqlstate") == "28P01" and "audience" in x.get("message", "") for x in failed), failed[0]
    assert all(bad not in json.dumps(x) for x in failed)


# ---- keys: rotation, outages, floods ------------------------------------------------------------

@pytest.fixture
def own_idp(tmp_path):
    idp = OidcProvider(workdir=workdir(tmp_path, "idp")).start()
    yield idp
    idp.stop()


def test_key_rotation_at_the_provider_keeps_logins_working(pg, user_hashes, own_idp, roles, tmp_path):
    p = Gatehouse(oidc_config(pg, user_hashes, own_idp), workdir=workdir(tmp_path, "gh")).start()
    try:
        old = own_idp.client_credentials("etl-agent")["access_token"]
        with token_connect(p, "etl-agent", old) as c:
            assert c.execute("select 1").fetchone() == (1,)
        new_kids = own_idp.rotate()
        new = own_idp.client_credentials("etl-agent")["access_token"]
        assert decode_jwt(new)[0]["kid"] in new_kids
        with token_connect(p, "etl-agent", new) as c:  # unknown kid -> the proxy refetches the JWKS
            assert c.execute("select session_user").fetchone() == ("gh_etl",)
        err = refused(p, old, "etl-agent")  # the old key is gone from the JWKS
        assert err["C"] == "28P01" and "does not publish" in err["M"], err
    finally:
        p.stop()


def test_keys_are_kept_through_a_brief_provider_outage(pg, user_hashes, own_idp, roles, tmp_path):
    p = Gatehouse(oidc_config(pg, user_hashes, own_idp, issuer_overrides={"refresh_interval": "10s"}),
                  workdir=workdir(tmp_path, "gh")).start()
    try:
        token = own_idp.client_credentials("etl-agent")["access_token"]
        with token_connect(p, "etl-agent", token) as c:
            assert c.execute("select 1").fetchone() == (1,)
        own_idp.outage(15)
        time.sleep(11)  # past the refresh interval: the periodic refetch fails during the outage
        with token_connect(p, "etl-agent", token) as c:
            assert c.execute("select session_user").fetchone() == ("gh_etl",)
        assert "keeping the keys held" in p.log()
    finally:
        p.stop()


def test_a_flood_of_unknown_kids_does_not_hammer_the_provider(pg, user_hashes, own_idp, roles, tmp_path):
    p = Gatehouse(oidc_config(pg, user_hashes, own_idp, issuer_overrides={"min_refresh_interval": "5s"}),
                  workdir=workdir(tmp_path, "gh")).start()
    try:
        good = own_idp.client_credentials("etl-agent")["access_token"]
        with token_connect(p, "etl-agent", good) as c:
            c.execute("select 1")
        before = own_idp.jwks_requests()
        bogus = [own_idp.mint(own_idp.standard_claims(), header={"alg": "RS256", "kid": f"bogus-{i}"})
                 for i in range(30)]
        errors: list[dict] = []

        def attempt(tok):
            errors.append(refused(p, tok, "flood"))

        threads = [threading.Thread(target=attempt, args=(t,)) for t in bogus]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        elapsed = time.monotonic() - t0
        fetched = own_idp.jwks_requests() - before
        assert len(errors) == 30 and all(e["C"] == "28P01" for e in errors), errors[:3]
        # at most one refetch per min_refresh_interval (5 s), however many logins ask
        assert fetched <= 1 + int(elapsed / 5) + 1, (fetched, elapsed)
    finally:
        p.stop()


# ---- session lifetime ---------------------------------------------------------------------------

def test_a_token_accepted_within_the_leeway_keeps_its_session_until_the_leeway_ends(proxy, oidc):
    """Found by adversarial testing: a token 20 s past exp (leeway 60 s) logged in, and the session
    was cut one second later. The session now ends when the login would be refused: exp + leeway."""
    now = int(time.time())
    token = oidc.mint(oidc.standard_claims(sub="carol", email="carol@example.com", groups=["analysts"],
                                           iat=now - 300, exp=now - 5))
    with token_connect(proxy, "carol@example.com", token) as c:
        c.execute("select 1")
        time.sleep(2.5)
        assert c.execute("select 2").fetchone() == (2,)


def test_a_session_ends_when_its_token_expires(pg, user_hashes, oidc, roles, tmp_path):
    p = Gatehouse(oidc_config(pg, user_hashes, oidc, issuer_overrides={"leeway": "0s"}),
                  workdir=workdir(tmp_path, "gh")).start()
    try:
        token = oidc.client_credentials("short-agent")["access_token"]
        _, claims = decode_jwt(token)
        assert claims["exp"] - claims["iat"] <= 3
        with token_connect(p, "short-agent", token) as c:
            c.execute("select 1")
            time.sleep(max(0.0, claims["exp"] - time.time()) + 2.5)
            with pytest.raises(psycopg.OperationalError) as ei:
                c.execute("select 1")
        assert "token has expired" in str(ei.value), str(ei.value)
    finally:
        p.stop()


def test_a_session_may_outlive_its_token_when_configured(pg, user_hashes, oidc, roles, tmp_path):
    p = Gatehouse(oidc_config(pg, user_hashes, oidc, on_token_expiry="keep_session",
                              issuer_overrides={"leeway": "0s"}), workdir=workdir(tmp_path, "gh")).start()
    try:
        token = oidc.client_credentials("short-agent")["access_token"]
        _, claims = decode_jwt(token)
        with token_connect(p, "short-agent", token) as c:
            time.sleep(max(0.0, claims["exp"] - time.time()) + 2.5)
            assert c.execute("select 1").fetchone() == (1,)
        # but a new login with the expired token is refused
        assert refused(p, token, "short-agent")["C"] == "28P01"
    finally:
        p.stop()


# ---- the commands ---------------------------------------------------------------------------------

def test_gatehouse_login_device_flow_then_psql_and_whoami(proxy, oidc, tmp_path):
    token_file = tmp_path / "cfg" / "token.json"
    login = subprocess.Popen([str(BINARY), "login", "--issuer", oidc.issuer, "--client-id", "gatehouse-cli",
                              "--token-file", str(token_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        first = login.stdout.readline()
        assert first.startswith("To sign in, open http"), first
        url = first.split("open ", 1)[1].strip()
        code_line = login.stdout.readline()
        assert "code:" in code_line
        oidc.device_approve(url, "alice", OIDC_PASSWORDS["alice"])  # the person, in a browser
        out, err = login.communicate(timeout=60)
    finally:
        if login.poll() is None:
            login.kill()
    assert login.returncode == 0, err
    assert "alice@example.com" in err
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    saved = json.loads(token_file.read_text())
    assert decode_jwt(saved["access_token"])[1]["email"] == "alice@example.com"

    r = subprocess.run([str(BINARY), "psql", "app", "--port", str(proxy.port), "--token-file", str(token_file),
                        "--sslmode", "disable", "--", "-X", "-A", "-t", "-c",
                        "select session_user, current_setting('gatehouse.identity_email')"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "gh_analyst|alice@example.com"

    r = subprocess.run([str(BINARY), "token", "--print", "--token-file", str(token_file)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == saved["access_token"]

    r = subprocess.run([str(BINARY), "whoami", "--config", str(proxy.config_path), "--token-file", str(token_file)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "email:    alice@example.com" in r.stdout
    assert "groups:   analysts" in r.stdout
    assert "kind:     human" in r.stdout
    assert "target app: logs in as gh_analyst" in r.stdout


def test_gatehouse_token_client_credentials_for_agents(proxy, oidc, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(CLIENT_SECRETS["etl-agent"] + "\n")
    r = subprocess.run([str(BINARY), "token", "--issuer", oidc.issuer, "--client-id", "etl-agent",
                        "--client-secret-file", str(secret)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert decode_jwt(token)[1]["client_id"] == "etl-agent"
    with token_connect(proxy, "etl-agent", token) as c:
        assert c.execute("select current_setting('gatehouse.identity_kind')").fetchone() == ("agent",)
    r = subprocess.run([str(BINARY), "whoami", "--config", str(proxy.config_path), "--token", token],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "kind:     agent" in r.stdout and "logs in as gh_etl" in r.stdout, r.stdout
    # a wrong secret is refused by the provider with its own error
    secret.write_text("wrong")
    r = subprocess.run([str(BINARY), "token", "--issuer", oidc.issuer, "--client-id", "etl-agent",
                        "--client-secret-file", str(secret)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "invalid_client" in r.stderr, r.stderr
    r = subprocess.run([str(BINARY), "whoami", "--config", str(proxy.config_path), "--token", "not-a-token"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "refused: the password is not an OIDC token" in r.stdout, r.stdout


def test_check_reports_whether_each_issuers_keys_can_be_fetched(proxy, pg, user_hashes, oidc, tmp_path):
    r = subprocess.run([str(BINARY), "check", "--config", str(proxy.config_path)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"oidc issuer {oidc.issuer}: 5 signing key(s)" in r.stdout
    assert "1 OIDC issuer(s)" in r.stdout
    cfg = oidc_config(pg, user_hashes, oidc)
    cfg["oidc"]["issuers"].append({"issuer": "http://127.0.0.1:9", "audience": "x"})  # nothing listens there
    p = Gatehouse(cfg, workdir=tmp_path)
    p.write_config()
    r = subprocess.run([str(BINARY), "check", "--config", str(p.config_path)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "warning: oidc issuer http://127.0.0.1:9: discovery:" in r.stderr, r.stderr


# ---- found by adversarial testing (round 6) ---------------------------------------------------

@pytest.mark.parametrize("claims,why", [
    ({"email": "BREAKGLASS"}, "is also the name of a static user"),                # the email claim
    ({"preferred_username": "BREAKGLASS"}, "is also the name of a static user"),   # a fallback email claim
    # unverified: no email at all, so nothing maps it to the static user's login
    ({"upn": "BREAKGLASS", "email_verified": False}, "no database login"),
])
def test_a_token_cannot_take_a_static_users_name_through_its_email(proxy, oidc, claims, why):
    """Logins (and rules) match a subject or an email: a token whose email (or upn, or
    preferred_username, the fallbacks) was a static user's name got the break-glass account's
    superuser login."""
    claims = {k: (breakglass("alice") if v == "BREAKGLASS" else v) for k, v in claims.items()}
    fields = refused(proxy, oidc.mint(oidc.standard_claims(sub="mallory", groups=[], **claims)))
    assert fields["C"] == "28000", fields
    assert why in fields["M"], fields


def test_an_unverified_email_is_not_taken(proxy, oidc):
    """An address the IdP says it has not verified is anyone's to type: with email_verified false
    the identity has no email (so rules and login mappings cannot match on it)."""
    token = oidc.mint(oidc.standard_claims(sub="eve-unverified", email="bob@example.com", email_verified=False,
                                           groups=["analysts"]))
    with token_connect(proxy, "eve", token) as c:
        assert c.execute("SELECT current_setting('gatehouse.identity'), current_setting('gatehouse.identity_email')"
                         ).fetchone() == ("eve-unverified", "")


def test_a_single_string_audience_is_one_audience(proxy, oidc):
    """RFC 7519: a string aud is one value. "other gatehouse" was split on the space like a scope
    and accepted as "gatehouse"."""
    fields = refused(proxy, oidc.mint(oidc.standard_claims(sub="mallory", aud="other gatehouse", groups=["analysts"])))
    assert fields["C"] == "28P01" and "audience" in fields["M"], fields


@pytest.mark.parametrize("exp", [2 ** 62, 2 ** 63 + 5])
def test_far_future_expiry_times_do_not_overflow(proxy, oidc, exp):
    """exp = 2^62 logged in and the session ended at once as expired (the deadline overflowed);
    a value above INT64_MAX was refused as "expired at -9223372036854775616"."""
    token = oidc.mint(oidc.standard_claims(sub="far-future", groups=["analysts"], exp=exp))
    with token_connect(proxy, "far", token) as c:
        time.sleep(0.5)
        assert c.execute("SELECT current_setting('gatehouse.identity')").fetchone() == ("far-future",)


@pytest.mark.parametrize("sub", ["mallory\u202ealice", "mallory\u0085x", "a\u2066b"])
def test_bidirectional_and_c1_control_characters_are_refused(proxy, oidc, sub):
    fields = refused(proxy, oidc.mint(oidc.standard_claims(sub=sub, groups=["analysts"])))
    assert fields["C"] == "28000" and "control characters" in fields["M"], fields


def test_a_statement_running_when_the_token_expires_is_cancelled(pg, user_hashes, oidc, roles, tmp_path):
    """The session ended at the token's expiry, but its statement ran on and committed afterwards
    (an INSERT after a pg_sleep, 5 s after the session had ended). It is cancelled now."""
    pg.psql("DROP TABLE IF EXISTS oidc_expiry_writes; CREATE TABLE oidc_expiry_writes (x int); "
            "GRANT ALL ON oidc_expiry_writes TO PUBLIC")
    p = Gatehouse(oidc_config(pg, user_hashes, oidc, issuer_overrides={"leeway": "0s"}),
                  workdir=workdir(tmp_path, "gh")).start()
    try:
        token = oidc.client_credentials("short-agent")["access_token"]
        _, claims = decode_jwt(token)
        with token_connect(p, "short-agent", token, autocommit=True) as c:
            wait = max(0.0, claims["exp"] - time.time())
            with pytest.raises(psycopg.OperationalError) as ei:
                c.execute(f"SELECT pg_sleep({wait + 4}); INSERT INTO oidc_expiry_writes VALUES (1)")
            assert "token has expired" in str(ei.value), str(ei.value)
        time.sleep(wait + 5)
        assert pg.psql("SELECT count(*) FROM oidc_expiry_writes") == "0"
        assert pg.psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%oidc_expiry_writes%' "
                       "AND pid <> pg_backend_pid()") == "0"
    finally:
        p.stop()
