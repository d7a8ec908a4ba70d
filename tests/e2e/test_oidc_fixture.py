"""The OpenID Connect provider fixture itself (tests/oidc, tests/harness/oidc.py): what Gatehouse's
OIDC tests build on must work first. No Gatehouse binary is involved. Signatures are checked with
jose (tests/oidc/verify.mjs), an implementation independent of the one that signed."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.harness.oidc import (AUDIENCE, CLIENT_SECRETS, DEVICE_GRANT, NODE, OIDC_DIR,  # noqa: E402
                                OIDC_PASSWORDS, SIGNING_ALGS, OidcError, OidcProvider, decode_jwt)

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k"}


def verify(jwks: dict, tokens: list[str]) -> list[dict]:
    r = subprocess.run([NODE, str(OIDC_DIR / "verify.mjs")], input=json.dumps({"jwks": jwks, "tokens": tokens}),
                       capture_output=True, text=True, timeout=30, cwd=OIDC_DIR, check=True)
    return json.loads(r.stdout)


def status_of(url: str, data: bytes | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def describe(name: str, token: str) -> None:
    header, payload = decode_jwt(token)
    print(f"{name}: {len(token)} bytes; header {header}; payload keys {sorted(payload)}")


@pytest.fixture
def own_idp(tmp_path):
    """A provider of the test's own, for tests that rotate keys or cause outages."""
    idp = OidcProvider(workdir=tmp_path).start()
    yield idp
    idp.stop()


# ---- metadata ---------------------------------------------------------------------------------

def test_discovery(oidc):
    d = oidc.discovery
    assert d["issuer"] == oidc.issuer == f"http://127.0.0.1:{oidc.port}"
    assert d["jwks_uri"] == oidc.issuer + "/jwks"
    assert d["token_endpoint"] == oidc.issuer + "/token"
    assert d["device_authorization_endpoint"] == oidc.issuer + "/device/auth"
    assert {"client_credentials", DEVICE_GRANT, "refresh_token"} <= set(d["grant_types_supported"])
    assert set(SIGNING_ALGS) <= set(d["id_token_signing_alg_values_supported"])
    assert {"openid", "email", "profile", "groups"} <= set(d["scopes_supported"])
    assert {"email", "name", "groups"} <= set(d["claims_supported"])


def test_jwks_has_one_key_per_algorithm(oidc):
    jwks = oidc.jwks()
    keys = {k["alg"]: k for k in jwks["keys"]}
    assert sorted(keys) == sorted(SIGNING_ALGS) and len(jwks["keys"]) == 5
    assert len({k["kid"] for k in jwks["keys"]}) == 5
    assert keys["RS256"]["kty"] == keys["PS256"]["kty"] == "RSA"
    assert (keys["ES256"]["kty"], keys["ES256"]["crv"]) == ("EC", "P-256")
    assert (keys["ES384"]["kty"], keys["ES384"]["crv"]) == ("EC", "P-384")
    assert (keys["EdDSA"]["kty"], keys["EdDSA"]["crv"]) == ("OKP", "Ed25519")
    for k in jwks["keys"]:
        assert k["use"] == "sig"
        assert not PRIVATE_MEMBERS & set(k), f"private material published: {k['kid']}"
    assert oidc.keys() == jwks


def test_startup_is_quick(tmp_path):
    t0 = time.monotonic()
    idp = OidcProvider(workdir=tmp_path).start()
    took = time.monotonic() - t0
    idp.stop()
    print(f"provider startup (process, 5 key pairs, discovery answered): {took:.2f}s")
    assert took < 5


# ---- client credentials ------------------------------------------------------------------------

def test_client_credentials_token(oidc):
    r = oidc.client_credentials("etl-agent", CLIENT_SECRETS["etl-agent"])
    assert r["token_type"] == "Bearer" and r["expires_in"] == 3600
    token = r["access_token"]
    assert token.count(".") == 2
    header, payload = decode_jwt(token)
    describe("client-credentials access token", token)
    assert header["typ"] == "at+jwt" and header["alg"] == "RS256"
    assert header["kid"] in {k["kid"] for k in oidc.keys()["keys"]}
    assert payload["aud"] == AUDIENCE
    assert payload["iss"] == oidc.issuer
    assert payload["sub"] == payload["client_id"] == "etl-agent"
    assert payload["exp"] - payload["iat"] == 3600
    assert set(payload) == {"jti", "sub", "iat", "exp", "client_id", "iss", "aud"}
    assert verify(oidc.keys(), [token]) == [{"ok": True, "alg": "RS256", "kid": header["kid"]}]


def test_client_credentials_wrong_secret(oidc):
    with pytest.raises(OidcError) as e:
        oidc.client_credentials("etl-agent", "not-the-secret")
    assert e.value.status == 401 and e.value.error == "invalid_client"


def test_short_lived_client(oidc):
    r = oidc.client_credentials("short-agent")
    _h, payload = decode_jwt(r["access_token"])
    assert r["expires_in"] == 3
    assert payload["exp"] - payload["iat"] == 3
    assert abs(payload["iat"] - time.time()) < 5


# ---- device flow ---------------------------------------------------------------------------------

def test_device_flow(oidc):
    r = oidc.device_login("gatehouse-cli", "alice", OIDC_PASSWORDS["alice"])
    at, idt = r["access_token"], r["id_token"]
    describe("device-flow access token", at)
    describe("device-flow ID token", idt)
    ah, ap = decode_jwt(at)
    ih, ip = decode_jwt(idt)
    assert ah["typ"] == "at+jwt" and ah["alg"] == "RS256"
    assert ap["aud"] == AUDIENCE and ap["iss"] == oidc.issuer and ap["client_id"] == "gatehouse-cli"
    assert (ap["sub"], ap["email"], ap["name"], ap["groups"]) == ("alice", "alice@example.com", "Alice Analyst",
                                                                  ["analysts"])
    assert ap["exp"] - ap["iat"] == 3600 == r["expires_in"]
    assert "typ" not in ih and ih["alg"] == "RS256"
    assert ip["aud"] == "gatehouse-cli" and ip["iss"] == oidc.issuer
    assert (ip["sub"], ip["email"], ip["email_verified"], ip["groups"]) == ("alice", "alice@example.com", True,
                                                                             ["analysts"])
    assert [v["ok"] for v in verify(oidc.keys(), [at, idt])] == [True, True]


def test_device_flow_by_email_via_verification_uri_complete(oidc):
    start = oidc.device_start("gatehouse-cli")
    assert start["interval"] == 1 and start["expires_in"] == 600
    assert start["verification_uri_complete"].startswith(oidc.issuer + "/device?user_code=")
    with pytest.raises(OidcError) as e:  # the person has not approved yet
        oidc.device_poll("gatehouse-cli", start, timeout=0.5, wait_first=False)
    assert "no token" in str(e.value)
    oidc.device_approve(start["verification_uri_complete"], "bob@example.com", OIDC_PASSWORDS["bob"])
    _h, p = decode_jwt(oidc.device_poll("gatehouse-cli", start)["access_token"])
    assert (p["sub"], p["groups"]) == ("bob", ["dba"])


def test_device_flow_bare_user_code_and_refresh(oidc):
    start = oidc.device_start("gatehouse-cli", scope="openid email profile groups offline_access")
    oidc.device_approve(start["user_code"], "bob", OIDC_PASSWORDS["bob"])
    r = oidc.device_poll("gatehouse-cli", start, wait_first=False)
    assert r["refresh_token"]
    r2 = oidc.refresh("gatehouse-cli", r["refresh_token"])
    _h, p = decode_jwt(r2["access_token"])
    assert (p["sub"], p["aud"], p["groups"]) == ("bob", AUDIENCE, ["dba"])


def test_device_flow_refuses_wrong_password_and_code(oidc):
    start = oidc.device_start("gatehouse-cli")
    with pytest.raises(OidcError, match="wrong user or password") as e:
        oidc.device_approve(start, "alice", "guess")
    assert e.value.status == 401
    with pytest.raises(OidcError, match="incorrect"):
        oidc.device_approve("BCDF-GHJK", "alice", OIDC_PASSWORDS["alice"])


def test_device_polling_too_fast_gets_slow_down(oidc):
    start = oidc.device_start("gatehouse-cli")
    form = {"grant_type": DEVICE_GRANT, "device_code": start["device_code"]}
    errors = []
    for _ in range(3):
        with pytest.raises(OidcError) as e:
            oidc._form_post(oidc.token_endpoint, form, "gatehouse-cli")
        errors.append(e.value.error)
    assert errors == ["authorization_pending", "slow_down", "slow_down"]


# ---- test endpoints -------------------------------------------------------------------------------

def test_mint_each_algorithm(oidc):
    keys = {k["alg"]: k["kid"] for k in oidc.keys()["keys"]}
    claims = oidc.standard_claims(sub="mallory", email="m@example.com", groups=["x"])
    tokens = [oidc.mint(claims, {"alg": alg}) for alg in SIGNING_ALGS]
    for alg, token in zip(SIGNING_ALGS, tokens):
        header, payload = decode_jwt(token)
        assert header == {"alg": alg, "typ": "at+jwt", "kid": keys[alg]}
        assert payload == claims
        print(f"minted {alg}: {len(token)} bytes")
    assert [v["ok"] for v in verify(oidc.keys(), tokens)] == [True] * 5

    # kid overridden or left out; alg none; HS256 keyed with the RS256 public key (alg confusion)
    odd = oidc.mint(claims, {"alg": "ES256", "kid": "nope"})
    assert decode_jwt(odd)[0]["kid"] == "nope"
    assert "kid" not in decode_jwt(oidc.mint(claims, {"alg": "RS256", "kid": None}))[0]
    assert oidc.mint(claims, {"alg": "none"}).endswith(".")
    assert decode_jwt(oidc.mint(claims, {"alg": "HS256"}))[0]["alg"] == "HS256"
    # header says RS256, the ES256 key signed: must not verify
    forged = oidc.mint(claims, {"alg": "RS256"}, sign_with="ES256")
    assert verify(oidc.keys(), [forged])[0]["ok"] is False


def test_rotate_replaces_keys(own_idp):
    before = {k["kid"] for k in own_idp.jwks()["keys"]}
    old_token = own_idp.client_credentials("etl-agent")["access_token"]
    new_kids = own_idp.rotate()
    after = {k["kid"] for k in own_idp.jwks()["keys"]}
    assert after == set(new_kids) and len(after) == 5 and not before & after
    assert own_idp.discovery["issuer"] == own_idp.issuer  # same port, same issuer
    token = own_idp.client_credentials("etl-agent")["access_token"]
    assert decode_jwt(token)[0]["kid"] in after
    assert [v["ok"] for v in verify(own_idp.keys(), [token, old_token])] == [True, False]
    r = own_idp.device_login("gatehouse-cli", "alice", OIDC_PASSWORDS["alice"])
    assert decode_jwt(r["id_token"])[0]["kid"] in after


def test_outage_then_recovery(own_idp):
    own_idp.outage(1.5)
    assert status_of(own_idp.discovery_url) == 503
    assert status_of(own_idp.jwks_uri) == 503
    assert status_of(own_idp.token_endpoint, b"grant_type=client_credentials") == 503
    with pytest.raises(OidcError) as e:
        own_idp.client_credentials("etl-agent")
    assert e.value.status == 503
    assert own_idp.stats()["outage_rejections"] >= 4  # the test endpoints stay up
    time.sleep(1.6)
    assert status_of(own_idp.discovery_url) == 200
    assert own_idp.client_credentials("etl-agent")["access_token"]


def test_jwks_requests_are_counted(own_idp):
    n = own_idp.jwks_requests()
    own_idp.jwks()
    own_idp.jwks()
    own_idp.keys()  # the test view does not count
    assert own_idp.jwks_requests() == n + 2
    assert own_idp.log().count(" JWKS") == n + 2


def test_keys_file_survives_restart(tmp_path):
    keys_file = tmp_path / "keys.json"
    idp = OidcProvider(workdir=tmp_path, keys_file=keys_file).start()
    first = idp.keys()
    idp.stop()
    assert keys_file.stat().st_mode & 0o077 == 0
    idp = OidcProvider(workdir=tmp_path, keys_file=keys_file, port=idp.port).start()
    try:
        assert idp.keys() == first
    finally:
        idp.stop()
