"""TLS towards clients (tls.mode require / allow) and towards the backend (require / verify-full)."""
from __future__ import annotations

import socket
import ssl
import struct

import psycopg
import pytest

from conftest import USERS, config_for, connect, psql, target, tls_listener
from pgwire import SSL_REQUEST, Conn, parse_error_fields, startup_packet
from tests.harness import Gatehouse


def test_psql_sslmode_require(gh_tls):
    r = psql(gh_tls, "-tA", "-c", "select 'over tls'", "-c", r"\conninfo", env={"PGSSLMODE": "require"})
    assert r.stdout.splitlines()[0] == "over tls"
    assert "SSL connection (protocol: TLSv1." in r.stdout, r.stdout


def test_psql_sslmode_verify_full(gh_tls, certs):
    r = psql(gh_tls, "-tA", "-c", "select 1", "-c", r"\conninfo", host="localhost",
             env={"PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(certs / "ca.crt")})
    assert r.stdout.splitlines()[0] == "1"
    assert "SSL connection" in r.stdout


def test_verify_full_with_wrong_ca_is_rejected_by_client(gh_tls, other_certs):
    r = psql(gh_tls, "-c", "select 1", host="localhost", check=False,
             env={"PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(other_certs / "ca.crt")})
    assert r.returncode != 0
    assert "certificate verify failed" in r.stderr, r.stderr


def test_psycopg_over_tls(gh_tls, certs):
    with connect(gh_tls, sslmode="verify-full", sslrootcert=str(certs / "ca.crt"), host="localhost") as c:
        assert c.pgconn.ssl_in_use
        assert c.execute("select count(*) from generate_series(1, 100000)").fetchone() == (100000,)
        big = "y" * 300_000
        assert c.execute("select %s::text", (big,)).fetchone()[0] == big


def test_plaintext_refused_when_tls_required(gh_tls):
    r = psql(gh_tls, "-c", "select 1", check=False, env={"PGSSLMODE": "disable"})
    assert r.returncode != 0
    assert "TLS" in r.stderr and "sslmode=require" in r.stderr, r.stderr
    # the same at the wire level: FATAL 28000
    c = Conn(gh_tls.port, timeout=5)
    try:
        c.send(startup_packet({"user": "alice", "database": "app"}))
        fields = c.read_error()
        assert fields["C"] == "28000"
        assert fields["S"] == "FATAL"
        c.expect_closed()
    finally:
        c.close()


def test_plaintext_sent_with_ssl_request_is_refused(gh_tls):
    """CVE-2021-23214 class: bytes riding along with the SSLRequest must not be buffered."""
    s = socket.create_connection(("127.0.0.1", gh_tls.port), timeout=5)
    try:
        s.sendall(struct.pack("!II", 8, SSL_REQUEST) + startup_packet({"user": "alice", "database": "app"}))
        data = b""
        while True:
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
        assert data[:1] == b"E", data
        assert parse_error_fields(data[5:])["C"] == "08P01"
    finally:
        s.close()


def test_tls_mode_allow_uses_tls_when_asked(pg, certs, make_proxy):
    proxy = make_proxy(tls=tls_listener(certs, "allow"))
    with connect(proxy, sslmode="require", application_name="over-tls") as c:
        assert c.pgconn.ssl_in_use
    with connect(proxy, sslmode="disable", application_name="in-clear") as c:
        assert not c.pgconn.ssl_in_use
        assert c.execute("select 1").fetchone() == (1,)
    assert proxy.stop() == 0
    # Connect records say how the client connected (found by adversarial testing: with mode
    # allow an auditor could not tell plaintext sessions from encrypted ones).
    import json
    import subprocess
    from tests.harness import BINARY
    r = subprocess.run([str(BINARY), "audit", "search", "--store", str(proxy.workdir / "gatehouse-audit.db"),
                        "--type", "connect", "--format", "jsonl"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    tls = {h.get("application_name"): h.get("tls") for h in map(json.loads, r.stdout.splitlines())}
    assert tls["in-clear"] == "none", tls
    assert tls["over-tls"].startswith("TLSv1.3 "), tls


def test_a_failed_tls_handshake_is_a_recorded_connection_attempt(pg, certs, make_proxy):
    """A client that asks for TLS and then fails the handshake (TLS 1.1 only, or garbage instead of
    a ClientHello) is a failed connection attempt: audited with the reason (found by adversarial
    testing: only an info log line)."""
    import json
    import subprocess
    from tests.harness import BINARY
    proxy = make_proxy(tls=tls_listener(certs, "require"))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(struct.pack("!II", 8, SSL_REQUEST))
        assert s.recv(1) == b"S"
        s.sendall(b"\x16\x03\x01\x00\x05garbage, not a ClientHello")
        try:
            s.recv(100)
        except OSError:
            pass
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(struct.pack("!II", 8, SSL_REQUEST))
        assert s.recv(1) == b"S"
        with pytest.raises((ssl.SSLError, OSError)):
            ctx.wrap_socket(s).do_handshake()
    assert proxy.stop() == 0
    r = subprocess.run([str(BINARY), "audit", "search", "--store", str(proxy.workdir / "gatehouse-audit.db"),
                        "--type", "connect_failed", "--format", "jsonl"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    failed = [h for h in map(json.loads, r.stdout.splitlines()) if "TLS handshake failed" in h.get("message", "")]
    assert len(failed) == 2 and all(h["client"] == "127.0.0.1" for h in failed), r.stdout


# ---- backend TLS ----------------------------------------------------------------------------

def _backend_target(name, pg_tls, tls, ca_file=None, host="127.0.0.1"):
    extra = {"ca_file": str(ca_file)} if ca_file else {}
    return target(name, pg_tls.port, pg_tls.user, pg_tls.password, host=host, tls=tls, **extra)


@pytest.fixture(scope="module")
def gh_backend_tls(pg, pg_tls, certs, other_certs, user_hashes, tmp_path_factory):
    cfg = config_for(pg, user_hashes)
    cfg["targets"] = [
        _backend_target("secure", pg_tls, "verify-full", certs / "ca.crt"),
        _backend_target("secure-by-name", pg_tls, "verify-full", certs / "ca.crt", host="localhost"),
        _backend_target("encrypted", pg_tls, "require"),
        _backend_target("wrongca", pg_tls, "verify-full", other_certs / "ca.crt"),
        {"name": "notls", "environment": "test",
         "backend": {"host": "127.0.0.1", "port": pg.port, "database": "postgres", "tls": "require"},
         "login": {"user": pg.user, "password": pg.password}},
        {"name": "plain", "environment": "test",
         "backend": {"host": "127.0.0.1", "port": pg_tls.port, "database": "postgres"},
         "login": {"user": pg_tls.user, "password": pg_tls.password}},
    ]
    proxy = Gatehouse(cfg, workdir=tmp_path_factory.mktemp("gh-btls")).start()
    yield proxy
    proxy.stop()


SSL_IN_USE = "select ssl from pg_stat_ssl where pid = pg_backend_pid()"


@pytest.mark.parametrize("target", ["secure", "secure-by-name", "encrypted"])
def test_backend_tls_in_use(gh_backend_tls, target):
    with connect(gh_backend_tls, dbname=target) as c:
        assert c.execute(SSL_IN_USE).fetchone() == (True,)
        n = c.execute("select count(*) from (select repeat('z', 1000) from generate_series(1, 20000)) s").fetchone()
        assert n == (20000,)


def test_backend_plaintext_when_disabled(gh_backend_tls):
    with connect(gh_backend_tls, dbname="plain") as c:
        assert c.execute(SSL_IN_USE).fetchone() == (False,)


def test_backend_verify_full_wrong_ca_fails_clearly(gh_backend_tls):
    with pytest.raises(psycopg.OperationalError) as ei:
        connect(gh_backend_tls, dbname="wrongca")
    msg = str(ei.value)
    assert 'target "wrongca"' in msg, msg
    assert "TLS" in msg and "certif" in msg.lower(), msg
    # which check failed, in OpenSSL's words, and what to fix (found by adversarial testing: a
    # wrong CA and a wrong host name gave the same bare "certificate verify failed")
    assert "backend.ca_file does not hold the CA" in msg, msg
    # and the proxy keeps serving the good target
    with connect(gh_backend_tls, dbname="secure") as c:
        assert c.execute("select 1").fetchone() == (1,)


def test_backend_tls_required_but_server_refuses(gh_backend_tls):
    with pytest.raises(psycopg.OperationalError) as ei:
        connect(gh_backend_tls, dbname="notls")
    msg = str(ei.value)
    assert 'target "notls"' in msg and "TLS" in msg, msg


def test_cancel_through_tls_backend(gh_backend_tls):
    import threading
    import time
    with connect(gh_backend_tls, dbname="secure") as c:
        timer = threading.Timer(1.0, c.cancel)
        timer.start()
        t0 = time.time()
        try:
            with pytest.raises(psycopg.errors.QueryCanceled):
                c.execute("select pg_sleep(20)")
        finally:
            timer.cancel()
        assert time.time() - t0 < 6


def test_min_version_and_ciphers_are_enforced(pg, certs, make_proxy, tmp_path):
    """tls.min_version TLSv1.3 refuses a TLS 1.2 client; tls.ciphers limits TLS 1.2 to the list;
    `check` names tls.ciphers when nothing in the list is usable, and tls.min_version when the
    value is not a version."""
    import subprocess
    from tests.harness import BINARY
    proxy = make_proxy(tls={**tls_listener(certs, "require"), "min_version": "TLSv1.3"})
    r = psql(proxy, "-c", "select 1", check=False,
             env={"PGSSLMODE": "require", "PGSSLMAXPROTOCOLVERSION": "TLSv1.2"})
    assert r.returncode != 0 and "protocol version" in r.stderr, r.stderr
    r = psql(proxy, "-tA", "-c", r"\conninfo", env={"PGSSLMODE": "require"})
    assert "protocol: TLSv1.3" in r.stdout, r.stdout
    proxy.stop()

    proxy = make_proxy(tls={**tls_listener(certs, "require"), "ciphers": "ECDHE-RSA-CHACHA20-POLY1305"})
    r = psql(proxy, "-tA", "-c", r"\conninfo", env={"PGSSLMODE": "require", "PGSSLMAXPROTOCOLVERSION": "TLSv1.2"})
    assert "protocol: TLSv1.2, cipher: ECDHE-RSA-CHACHA20-POLY1305" in r.stdout, r.stdout
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as raw:
        raw.sendall(struct.pack("!II", 8, SSL_REQUEST))
        assert raw.recv(1) == b"S"
        with pytest.raises(ssl.SSLError):
            ctx.wrap_socket(raw, server_hostname="localhost")
    proxy.stop()

    base = ("targets:\n  - name: app\n    backend: {host: 127.0.0.1, port: 5432}\n"
            "    login: {user: x, password: y}\n"
            f"tls:\n  mode: require\n  cert_file: {certs / 'server.crt'}\n  key_file: {certs / 'server.key'}\n")
    # A list that leaves TLS 1.2 clients nothing for an RSA certificate, or allows suites without
    # encryption or authentication, is refused too (found by adversarial testing).
    for extra, key in {"  ciphers: NOT-A-CIPHER\n": "tls.ciphers", "  min_version: TLSv1.1\n": "tls.min_version",
                       "  ciphers: ECDHE-ECDSA-AES128-GCM-SHA256\n": "leaves TLS 1.2 clients no suite",
                       "  ciphers: \"eNULL:@SECLEVEL=0\"\n": "does not encrypt",
                       "  ciphers: \"aNULL:@SECLEVEL=0\"\n": "does not authenticate"}.items():
        cfg = tmp_path / "gh.yaml"
        cfg.write_text(base + extra)
        r = subprocess.run([str(BINARY), "check", "--config", str(cfg)], capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and key in r.stderr, (extra, r.stdout, r.stderr)
