"""Hostile and broken clients, with raw sockets and struct-packed protocol bytes. Every bad
session gets a FATAL ErrorResponse with the right SQLSTATE and is closed; the process and every
other session carry on."""
from __future__ import annotations

import socket
import subprocess
import struct
import threading
import time

import psycopg
import pytest

from conftest import USERS, connect, psql, wait_for
from pgwire import (GSSENC_REQUEST, PROTOCOL_30, SSL_REQUEST, Conn, WireError, message, query,
                    parse_error_fields, startup_error, startup_packet)
from pgwire import connect as raw_connect

ALICE = ("alice", USERS["alice"])


@pytest.fixture
def bystander(gh):
    """A session opened before the abuse; it must keep working afterwards."""
    c = connect(gh, autocommit=True)
    assert c.execute("select 1").fetchone() == (1,)
    yield c
    assert c.execute("select 'unharmed'").fetchone() == ("unharmed",)
    assert gh.proc.poll() is None, "the proxy process died"
    c.close()


def _fatal_after(conn: Conn, data: bytes) -> dict[str, str]:
    conn.send(data)
    fields = conn.read_error()
    assert fields["S"] == "FATAL", fields
    conn.expect_closed()
    return fields


# ---- malformed messages ---------------------------------------------------------------------

@pytest.mark.parametrize("type_byte", [b"\x01", b"z", b"\xff"])
def test_garbage_type_byte_after_startup(gh, bystander, type_byte):
    c = raw_connect(gh.port, *ALICE)
    try:
        assert c.simple_query("select 1") == [["1"]]
        fields = _fatal_after(c, type_byte + struct.pack("!I", 8) + b"abcd")
        assert fields["C"] == "08P01"
        assert "invalid message type" in fields["M"]
        if type_byte == b"\x01":
            assert "0x01" in fields["M"], fields  # hex, not "0x1" in decimal (0xff said 0x255)
        if type_byte == b"\xff":
            assert "0xff" in fields["M"], fields
    finally:
        c.close()
    with raw_connect(gh.port, *ALICE).sock:
        pass


@pytest.mark.parametrize("type_byte,body", [
    (b"Q", b"select 1"),                                  # the text without its terminating NUL
    (b"Q", b"select 1\0trailing"),                        # bytes after the text
    (b"P", b"s1\0select $1\0\0\x02\0\0\0\x17"),           # two parameter types announced, one sent
    (b"P", b"s1\0select 1"),                             # the query without its NUL, no count
    (b"F", b"\0\0\x03\xb8\0\0\0\x01\0\0\0\x09ab"),       # an argument longer than the message
    (b"H", b"x"),                                         # Flush has no body (found by fuzzing: the
    (b"S", b"xyz"),                                       # server skipped to Sync, the proxy did not)
])
def test_malformed_statement_message_is_a_protocol_violation(gh, bystander, type_byte, body):
    """The proxy ends the session with FATAL 08P01 "invalid message format", and nothing of the
    message reaches the database. (PostgreSQL 15 itself answers most of these with a non-fatal
    ERROR 08P01 and reads on; the proxy does not try to resynchronise on a stream it cannot read,
    and a malformed message is a protocol violation the session does not survive: fail closed.)"""
    c = raw_connect(gh.port, *ALICE)
    try:
        assert c.simple_query("select 1") == [["1"]]
        fields = _fatal_after(c, type_byte + struct.pack("!I", len(body) + 4) + body)
        assert fields["C"] == "08P01" and "invalid message format" in fields["M"], fields
    finally:
        c.close()


def test_garbage_during_concurrent_load(gh):
    """Other sessions run queries while bad clients come and go."""
    errors = []
    stop = threading.Event()

    def worker():
        try:
            with connect(gh, autocommit=True) as c:
                n = 0
                while not stop.is_set():
                    assert c.execute("select %s::int", (n,)).fetchone() == (n,)
                    n += 1
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(10):
            c = raw_connect(gh.port, *ALICE)
            try:
                c.send(b"\x00" * 16 if i % 2 else b"#" + struct.pack("!I", 2))
                assert c.read_error()["C"] == "08P01"
            finally:
                c.close()
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not errors, errors


def test_oversized_startup_packet(gh, bystander):
    c = Conn(gh.port, timeout=5)
    try:
        fields = _fatal_after(c, struct.pack("!II", 20000, PROTOCOL_30))
        assert fields["C"] == "08P01"
    finally:
        c.close()


@pytest.mark.parametrize("length", [0, 3, 7])
def test_startup_length_too_small(gh, length):
    c = Conn(gh.port, timeout=5)
    try:
        fields = _fatal_after(c, struct.pack("!II", length, PROTOCOL_30))
        assert fields["C"] == "08P01"
    finally:
        c.close()


def test_unknown_protocol_version(gh):
    c = Conn(gh.port, timeout=5)
    try:
        c.send(startup_packet({"user": "alice", "database": "app"}, version=(2 << 16)))
        fields = c.read_error()
        assert fields["C"] == "0A000", fields  # as PostgreSQL: feature_not_supported
        assert "unsupported frontend protocol 2.0" in fields["M"], fields
        c.expect_closed()
    finally:
        c.close()


@pytest.mark.parametrize("length", [0, 3])
def test_message_length_below_four(gh, bystander, length):
    c = raw_connect(gh.port, *ALICE)
    try:
        fields = _fatal_after(c, b"Q" + struct.pack("!I", length))
        assert fields["C"] == "08P01"
    finally:
        c.close()


def test_message_over_max_message_size(make_proxy):
    proxy = make_proxy(limits={"max_message_size": 65536})
    other = connect(proxy, autocommit=True)
    c = raw_connect(proxy.port, *ALICE)
    try:
        # just under the limit is fine
        q = "select length('" + "a" * 60000 + "')"
        assert c.simple_query(q) == [["60000"]]
        # over it: refused from the length field alone (the body never needs to arrive)
        fields = _fatal_after(c, b"Q" + struct.pack("!I", 100_004) + b"select '")
        assert fields["C"] == "08P01"
        assert "100004" in fields["M"] and "65536" in fields["M"], fields
        assert other.execute("select 2").fetchone() == (2,)
        # results larger than the limit are never limited
        assert len(other.execute("select repeat('r', 500000)").fetchone()[0]) == 500000
    finally:
        c.close()
        other.close()


def test_message_over_max_message_size_reaches_a_real_client(make_proxy):
    """psycopg writes the whole message before it reads: the proxy reads and drops the rest after
    the FATAL instead of resetting the connection, so the client sees why (not only "server
    closed the connection unexpectedly")."""
    proxy = make_proxy(limits={"max_message_size": 65536})
    for size in (200_000, 8 << 20):
        with connect(proxy, autocommit=True) as c:
            with pytest.raises(psycopg.OperationalError) as ei:
                c.execute("select length(%s)", ["x" * size])
            # libpq, still sending, reports the server's FATAL as its connection error: the
            # message, without a SQLSTATE of its own.
            assert "exceeds the limit of 65536 bytes" in str(ei.value), ei.value


def test_password_message_after_authentication(gh, bystander):
    c = raw_connect(gh.port, *ALICE)
    try:
        fields = _fatal_after(c, message(b"p", b"alice-secret\0"))
        assert fields["C"] == "08P01"
    finally:
        c.close()


def test_out_of_phase_message_during_authentication(gh):
    c = Conn(gh.port, timeout=5)
    try:
        c.send(startup_packet({"user": "alice", "database": "app"}))
        t, body = c.read_message()
        assert t == b"R" and struct.unpack("!I", body[:4])[0] == 10  # SASL
        fields = _fatal_after(c, query("select 1"))
        assert fields["C"] == "08P01"
    finally:
        c.close()


def test_a_client_that_half_closes_still_gets_its_results(gh):
    """A client that sends its last statement and then shuts down its sending side (scripts over
    nc, some drivers on exit) gets the results, as from PostgreSQL; the proxy ended the session at
    the EOF and they were lost."""
    c = raw_connect(gh.port, *ALICE)
    try:
        c.send(query("SELECT pg_sleep(0.3), 42 AS answer"))
        c.sock.shutdown(socket.SHUT_WR)
        msgs = c.until_ready()
        rows = [body for t, body in msgs if t == b"D"]
        assert len(rows) == 1 and b"42" in rows[0], msgs
        c.expect_closed()
    finally:
        c.close()


def test_truncated_connection_mid_message(gh, bystander):
    for payload in (b"Q" + struct.pack("!I", 1000) + b"select",  # mid-message
                    b"P" + struct.pack("!I", 50),                   # header only
                    b"Q\x00\x00"):                                  # mid-header
        c = raw_connect(gh.port, *ALICE)
        c.send(payload)
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
    # mid-startup and mid-SCRAM too
    s = socket.create_connection(("127.0.0.1", gh.port), timeout=5)
    s.sendall(startup_packet({"user": "alice", "database": "app"})[:11])
    s.close()
    c = Conn(gh.port, timeout=5)
    c.send(startup_packet({"user": "alice", "database": "app"}))
    c.read_message()
    c.send(b"p\x00\x00\x00")
    c.close()
    with connect(gh) as fresh:
        assert fresh.execute("select 'new session ok'").fetchone() == ("new session ok",)


def test_cancel_request_with_unknown_key(gh, bystander):
    s = socket.create_connection(("127.0.0.1", gh.port), timeout=5)
    try:
        s.sendall(struct.pack("!IIII", 16, 80877102, 12345, 67890))
        assert s.recv(100) == b""  # no reply, just closed
    finally:
        s.close()


# ---- startup refusals -----------------------------------------------------------------------

def test_unknown_database_via_star_target_passes_backend_error(gh):
    fields = startup_error(gh.port, *ALICE, database="no_such_db_here")
    assert fields["C"] == "3D000"
    assert "no_such_db_here" in fields["M"]


def test_unknown_database_without_star_target(make_proxy):
    cfg = make_proxy.config()
    cfg["targets"] = [t for t in cfg["targets"] if t["name"] != "*"]
    proxy = make_proxy(cfg)
    fields = startup_error(proxy.port, *ALICE, database="nosuchtarget")
    assert fields["C"] == "3D000"
    assert fields["S"] == "FATAL"
    assert '"nosuchtarget"' in fields["M"]
    # strangers learn nothing about targets: authentication comes first
    fields = startup_error(proxy.port, "alice", "wrong", database="nosuchtarget")
    assert fields["C"] == "28P01"


def test_wrong_password_and_unknown_user_look_identical(gh):
    c1 = Conn(gh.port, timeout=10)
    c2 = Conn(gh.port, timeout=10)
    try:
        with pytest.raises(WireError) as wrong:
            c1.startup("alice", "not-her-password")
        with pytest.raises(WireError) as unknown:
            c2.startup("mallory", "whatever")
        c1.expect_closed()
        c2.expect_closed()
    finally:
        c1.close()
        c2.close()
    a, b = wrong.value.fields, unknown.value.fields
    assert a["C"] == b["C"] == "28P01"
    assert a["M"] == 'password authentication failed for user "alice"'
    assert b["M"] == a["M"].replace("alice", "mallory")
    assert {k: v for k, v in a.items() if k != "M"} == {k: v for k, v in b.items() if k != "M"}
    # the SCRAM exchange looks the same too: both got SASL, then SASL-continue, then the error
    assert c1.auth_codes == c2.auth_codes == [10, 11]


def test_parallel_password_guessing_is_taken_one_at_a_time(make_proxy):
    """Found by adversarial testing: the delay after a failed login applied to that connection
    only, so 200 parallel guesses were all checked within 5 s. After three failures, attempts of
    the user from the address are checked one at a time at growing intervals, and those that
    would wait longer than half the handshake timeout are refused without being checked."""
    from pgwire import startup_error
    proxy = make_proxy()
    for _ in range(3):
        assert startup_error(proxy.port, "alice", "wrong")["C"] == "28P01"
    results = []

    def guess():
        results.append(startup_error(proxy.port, "alice", "wrong", timeout=20))
    started = time.monotonic()
    threads = [threading.Thread(target=guess) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    checked = [r for r in results if r["C"] == "28P01"]
    turned_away = [r for r in results if "too many failed logins" in r["M"]]
    assert len(results) == 20
    assert len(checked) <= 5, len(checked)  # turns at 0.25, 0.75, 1.75, 3.75 s: within 5 s
    assert len(turned_away) == 20 - len(checked), results
    assert all(r["C"] == "28000" for r in turned_away)
    assert time.monotonic() - started < 15
    assert "too many failed logins for this user, or for many users, from this address" in proxy.log()
    # Other users from the same address (a NAT, an application server) are not held up, and their
    # logins do not clear the record of alice's failures.
    t0 = time.monotonic()
    raw_connect(proxy.port, "bob", USERS["bob"], timeout=20).close()
    assert time.monotonic() - t0 < 1.0
    t0 = time.monotonic()
    assert startup_error(proxy.port, "alice", "wrong", timeout=20)["C"] == "28P01"
    assert time.monotonic() - t0 >= 1.0


def test_password_spraying_from_one_address_is_slowed(make_proxy):
    """One password tried over many user names from one address: each name fails only once, so
    the per-user throttle never starts. After 10 different users failed from an address within a
    minute, every login from that address waits for its turn, and parallel guesses are turned away."""
    from pgwire import startup_error
    proxy = make_proxy()
    t0 = time.monotonic()
    for i in range(10):
        assert startup_error(proxy.port, f"sprayed{i}", "Winter2026!")["C"] == "28P01"
    assert time.monotonic() - t0 < 5  # the first ten are not held up
    # A real user from that address now waits for a turn too (the address is being sprayed).
    t0 = time.monotonic()
    raw_connect(proxy.port, "bob", USERS["bob"], timeout=20).close()
    assert time.monotonic() - t0 >= 0.2
    results = []

    def guess(i):
        results.append(startup_error(proxy.port, f"burst{i}", "Winter2026!", timeout=20))
    threads = [threading.Thread(target=guess, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    checked = [r for r in results if r["C"] == "28P01"]
    assert len(results) == 20 and len(checked) <= 5, results
    assert all(r["C"] == "28000" and "too many failed logins" in r["M"] for r in results if r not in checked)


def test_missing_user_in_startup(gh):
    c = Conn(gh.port, timeout=5)
    try:
        c.send(startup_packet({"database": "app"}))
        fields = c.read_error()
        assert fields["C"] == "28000"
        c.expect_closed()
    finally:
        c.close()


@pytest.mark.parametrize("value", ["database", "true", "on"])
def test_replication_refused(gh, value):
    fields = startup_error(gh.port, *ALICE, replication=value)
    assert fields["C"] == "0A000"
    assert "replication" in fields["M"]


@pytest.mark.parametrize("extra", [
    {"options": "-c gatehouse.identity=x"},
    {"options": "-c search_path=public -c gatehouse.identity_groups=admins"},
    {"options": "--gatehouse.identity=x"},
    {"gatehouse.identity": "x"},
    {"gatehouse.identity_method": "oidc"},
    # PostgreSQL compares setting names without case and applies these after `options`: they
    # would override the proxy's own -c gatehouse.identity=...
    {"GATEHOUSE.IDENTITY": "bob"},
    {"Gatehouse.Identity_Groups": "superadmins"},
    {"options": "-c GATEHOUSE.IDENTITY=x"},
    {"options": "-cgatehouse.identity=x"},
    {"options": "--Gatehouse.Identity-Email=ceo@example.com"},
    # The role is the target login's; SET ROLE is guardrail.privileges'.
    {"role": "postgres"},
    {"session_authorization": "postgres"},
    {"options": "-c role=postgres"},
    {"options": "--Session-Authorization=postgres"},
    # Server switches other than settings are not passed on.
    {"options": "-O"},
])
def test_identity_spoofing_refused(gh, extra):
    fields = startup_error(gh.port, *ALICE, **extra)
    assert fields["C"] == "42501", fields


def test_identity_setting_is_the_user(gh):
    c = raw_connect(gh.port, "bob", USERS["bob"], options="-c search_path=pg_catalog")
    try:
        assert c.simple_query("select current_setting('gatehouse.identity'), current_setting('search_path')") == \
            [["bob", "pg_catalog"]]
        assert c.simple_query("reset all; select current_setting('gatehouse.identity')") == [["bob"]]
    finally:
        c.close()


def test_protocol_3_2_negotiated_down(gh):
    c = Conn(gh.port, timeout=10)
    try:
        before = c.startup("alice", USERS["alice"], "app", {"_pq_.some_option": "1"}, version=(3 << 16) | 2)
        assert before, "no NegotiateProtocolVersion before authentication"
        t, body = before[0]
        assert t == b"v"
        newest, count = struct.unpack("!II", body[:8])
        assert newest == 0x00030000  # 3.0, as PostgreSQL sends it (libpq compares whole versions)
        assert count == 1 and body[8:].split(b"\0")[0] == b"_pq_.some_option"
        assert c.auth_codes[0] == 10  # authentication continued
        assert c.simple_query("select 'negotiated'") == [["negotiated"]]
    finally:
        c.close()


def test_protocol_3_1_without_options(gh):
    c = Conn(gh.port, timeout=10)
    try:
        before = c.startup("alice", USERS["alice"], "app", version=(3 << 16) | 1)
        t, body = before[0]
        assert t == b"v" and struct.unpack("!II", body[:8]) == (0x00030000, 0)
        assert c.simple_query("select 1") == [["1"]]
    finally:
        c.close()


@pytest.mark.parametrize("code", [SSL_REQUEST, GSSENC_REQUEST])
def test_encryption_requests_answered_n(gh, code):
    c = Conn(gh.port, timeout=10)
    try:
        c.send(struct.pack("!II", 8, code))
        assert c.read_bytes(1) == b"N"
        c.startup("alice", USERS["alice"])  # then a normal startup on the same socket
        assert c.simple_query("select 'plain'") == [["plain"]]
    finally:
        c.close()


def test_gssenc_then_ssl_request(gh):
    """libpq with gssencmode=prefer sends GSSENCRequest, then SSLRequest, then startup."""
    c = Conn(gh.port, timeout=10)
    try:
        c.send(struct.pack("!II", 8, GSSENC_REQUEST))
        assert c.read_bytes(1) == b"N"
        c.send(struct.pack("!II", 8, SSL_REQUEST))
        assert c.read_bytes(1) == b"N"
        c.startup("alice", USERS["alice"])
        assert c.simple_query("select 1") == [["1"]]
    finally:
        c.close()


# ---- limits and timeouts ---------------------------------------------------------------------

def _time_until_closed(s: socket.socket, limit: float) -> tuple[float, bytes]:
    s.settimeout(limit)
    t0 = time.time()
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    except socket.timeout:
        raise AssertionError(f"connection still open after {limit}s")
    return time.time() - t0, data


def test_handshake_timeout(make_proxy):
    proxy = make_proxy(limits={"handshake_timeout": "1s"})
    silent = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    # a client stuck in the middle of SCRAM
    stalled = Conn(proxy.port, timeout=5)
    stalled.send(startup_packet({"user": "alice", "database": "app"}))
    assert stalled.read_message()[0] == b"R"
    try:
        elapsed, data = _time_until_closed(silent, 5)
        assert 0.5 < elapsed < 3.0, elapsed
        if data:  # best effort error: FATAL 08006
            assert data[:1] == b"E"
            from pgwire import parse_error_fields
            assert parse_error_fields(data[5:])["C"] == "08006"
        fields = stalled.read_error()
        assert fields["C"] == "08006"
        stalled.expect_closed(3)
    finally:
        silent.close()
        stalled.close()
    # a normal client is not affected (retried: on a heavily loaded machine a whole login, with
    # SCRAM on both sides and a backend fork, can itself take longer than 1s)
    errors = []
    for _ in range(3):
        try:
            c = connect(proxy)
            break
        except psycopg.OperationalError as e:
            errors.append(str(e))
    else:
        raise AssertionError(f"could not log in through a proxy with handshake_timeout 1s: {errors}\n{proxy.log()}")
    with c:
        time.sleep(1.5)  # past the handshake timeout: a ready session is not timed out
        assert c.execute("select 1").fetchone() == (1,)


def test_max_connections(make_proxy):
    proxy = make_proxy(limits={"max_connections": 3})
    held = [connect(proxy) for _ in range(3)]
    try:
        fields = startup_error(proxy.port, *ALICE)
        assert fields["C"] == "53300"
        assert fields["M"] == "sorry, too many clients already"
        held.pop().close()

        def can_connect():
            try:
                c = raw_connect(proxy.port, *ALICE, timeout=5)
            except WireError as e:
                assert e.code == "53300"
                return False
            c.close()
            return True

        wait_for(can_connect, timeout=5, what="a slot after one session closed")
        for c in held:
            assert c.execute("select 1").fetchone() == (1,)
    finally:
        for c in held:
            c.close()


def test_max_connections_reaches_default_libpq_clients_and_is_audited(make_proxy):
    """Found by adversarial testing: at the limit, psql and psycopg with libpq's default
    sslmode=prefer got "server closed the connection unexpectedly" instead of 53300 (the proxy
    closed with the client's startup packet unread, which reset the connection), and the refusal
    was neither logged nor audited. A CancelRequest at the limit must still cancel."""
    import json
    from tests.harness import BINARY
    proxy = make_proxy(limits={"max_connections": 2})
    busy = connect(proxy, autocommit=True)
    held = connect(proxy)
    try:
        r = psql(proxy, "-c", "select 1", check=False, env={"PGSSLMODE": "prefer"})
        assert r.returncode != 0
        assert "sorry, too many clients already" in r.stderr, r.stderr
        with pytest.raises(psycopg.OperationalError, match="too many clients"):
            connect(proxy, sslmode="prefer")
        # Ctrl-C of a running statement opens a connection too: it still cancels.
        cancelled = {}

        def run():
            try:
                busy.execute("select pg_sleep(30)")
            except psycopg.errors.QueryCanceled:
                cancelled["ok"] = time.monotonic()
        t = threading.Thread(target=run)
        t.start()
        time.sleep(0.5)
        started = time.monotonic()
        busy.cancel()
        t.join(timeout=10)
        assert "ok" in cancelled and cancelled["ok"] - started < 5
    finally:
        held.close()
        busy.close()
    assert "refused: sorry, too many clients already (53300)" in proxy.log()
    proxy.stop()
    out = subprocess.run([str(BINARY), "audit", "search", "--store", str(proxy.workdir / "gatehouse-audit.db"),
                          "--format", "jsonl", "--limit", "1000"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    refused = [json.loads(line) for line in out.stdout.splitlines() if '"connect_failed"' in line]
    assert any(r.get("sqlstate") == "53300" and r["identity"].get("user") == "alice" for r in refused), \
        json.dumps(refused)[:2000]


def test_idle_timeout(make_proxy):
    proxy = make_proxy(limits={"idle_timeout": "1s"})
    c = raw_connect(proxy.port, *ALICE)
    busy = raw_connect(proxy.port, *ALICE)
    try:
        # a running statement longer than the idle timeout is not idle
        assert busy.simple_query("select pg_sleep(1.6), 'done'") == [["", "done"]]
        t0 = time.time()
        fields = c.read_error()
        elapsed = time.time() - t0
        assert fields["C"] == "57P05", fields
        assert fields["S"] == "FATAL"
        assert elapsed < 3
        c.expect_closed()
    finally:
        c.close()
        busy.close()


# ---- protocol coverage at the wire level ------------------------------------------------------

def test_function_call_message(gh):
    c = raw_connect(gh.port, *ALICE)
    try:
        (oid,), = c.simple_query("select 'int4pl'::regproc::oid")
        args = [b"40", b"2"]
        body = struct.pack("!IHHH", int(oid), 1, 0, len(args))
        for a in args:
            body += struct.pack("!i", len(a)) + a
        body += struct.pack("!H", 0)
        c.send(message(b"F", body))
        t, resp = c.read_message()
        assert t == b"V", (t, resp)
        (ln,) = struct.unpack("!i", resp[:4])
        assert resp[4:4 + ln] == b"42"
        assert c.read_message()[0] == b"Z"
    finally:
        c.close()


def test_function_call_the_proxy_cannot_name_then_extended_query(gh):
    """A fast-path call of a function the proxy does not know is a settings barrier until its own
    ReadyForQuery, not until a Sync that never comes (found by adversarial testing: the next
    extended-protocol statement was refused as 'in the same batch')."""
    c = raw_connect(gh.port, *ALICE)
    try:
        (oid,), = c.simple_query("select 'pg_backend_pid'::regproc::oid")
        c.send(message(b"F", struct.pack("!IHHH", int(oid), 0, 0, 0)))
        t, resp = c.read_message()
        assert t == b"V", (t, resp)
        assert c.read_message()[0] == b"Z"
        c.send(message(b"P", b"\0select 7\0" + struct.pack("!H", 0)) +
               message(b"B", b"\0\0" + struct.pack("!HHH", 0, 0, 0)) +
               message(b"E", b"\0" + struct.pack("!I", 0)) + message(b"S"))
        got = c.until_ready()
        assert [t for t, _ in got] == [b"1", b"2", b"D", b"C", b"Z"], got
    finally:
        c.close()


def test_extended_query_pipelined_raw(gh):
    """Parse/Bind/Describe/Execute/Close/Flush/Sync sent in one write, twice, with an error between."""
    def parse(name, sql_text):
        return message(b"P", name + b"\0" + sql_text + b"\0" + struct.pack("!H", 0))

    def bind(stmt, *params):
        b = b"\0" + stmt + b"\0" + struct.pack("!H", 0) + struct.pack("!H", len(params))
        for p in params:
            b += struct.pack("!i", len(p)) + p
        return message(b"B", b + struct.pack("!H", 0))

    execute = message(b"E", b"\0" + struct.pack("!I", 0))
    sync = message(b"S")
    c = raw_connect(gh.port, *ALICE)
    try:
        c.send(parse(b"s1", b"select $1::int * 10") + bind(b"s1", b"4") + message(b"D", b"P\0") + execute +
               message(b"H") + bind(b"s1", b"x") + execute + sync +
               bind(b"s1", b"7") + execute + message(b"C", b"Ss1\0") + sync)
        seen = []
        values = []
        while len([t for t in seen if t == b"Z"]) < 2:
            t, body = c.read_message()
            seen.append(t)
            if t == b"D":
                values.append(body[6:].decode())
            if t == b"E":
                from pgwire import parse_error_fields
                assert parse_error_fields(body)["C"] == "22P02"
        assert values == ["40", "70"]
        assert seen[:4] == [b"1", b"2", b"T", b"D"]
        assert b"3" in seen  # CloseComplete
    finally:
        c.close()


def test_cancel_with_wrong_secret_is_ignored(gh):
    c = raw_connect(gh.port, *ALICE)
    try:
        pid, secret = c.backend_key
        c.send(query("select pg_sleep(1.5), 'completed'"))
        time.sleep(0.3)
        for bad in ((pid, secret ^ 1), (pid ^ 1, secret)):
            s = socket.create_connection(("127.0.0.1", gh.port), timeout=5)
            s.sendall(struct.pack("!IIII", 16, 80877102, *bad))
            assert s.recv(10) == b""
            s.close()
        rows, error = [], None
        while True:
            t, body = c.read_message()
            if t == b"D":
                rows.append(body)
            elif t == b"E":
                from pgwire import parse_error_fields
                error = parse_error_fields(body)
            elif t == b"Z":
                break
        assert error is None, f"a CancelRequest with a wrong key cancelled the query: {error}"
        assert len(rows) == 1 and rows[0].endswith(b"completed")
    finally:
        c.close()


def test_cancel_with_right_key_raw(gh):
    c = raw_connect(gh.port, *ALICE)
    try:
        c.send(query("select pg_sleep(20)"))
        time.sleep(0.5)
        s = socket.create_connection(("127.0.0.1", gh.port), timeout=5)
        s.sendall(struct.pack("!IIII", 16, 80877102, *c.backend_key))
        s.close()
        t, body = c.read_message()
        if t == b"T":  # RowDescription comes before the statement runs
            t, body = c.read_message()
        from pgwire import parse_error_fields
        assert t == b"E"
        assert parse_error_fields(body)["C"] == "57014"
        assert c.read_message()[0] == b"Z"
        assert c.simple_query("select 'next'") == [["next"]]
    finally:
        c.close()


def _copy_table(pg, name: str) -> None:
    with psycopg.connect(pg.dsn(), autocommit=True) as d:
        d.execute(f"DROP TABLE IF EXISTS {name}")
        d.execute(f"CREATE TABLE {name} (id int)")
        d.execute(f"GRANT ALL ON {name} TO PUBLIC")


def _extended_copy(c: psycopg.Connection, table: str, data: bytes, wait: float = 0) -> None:
    """COPY table FROM STDIN as libpq sends it with the extended protocol (Sync with the Execute
    and again after CopyDone), waiting `wait` seconds before the data."""
    pgc = c.pgconn
    res = pgc.exec_params(f"COPY {table} FROM STDIN".encode(), [])
    assert res.status == psycopg.pq.ExecStatus.COPY_IN, res.status
    time.sleep(wait)
    pgc.put_copy_data(data)
    pgc.put_copy_end()
    res = pgc.get_result()
    assert res.status == psycopg.pq.ExecStatus.COMMAND_OK, res.error_message
    while pgc.get_result() is not None:
        pass


def _count(pg, name: str) -> int:
    with psycopg.connect(pg.dsn(), autocommit=True) as d:
        return d.execute(f"SELECT count(*) FROM {name}").fetchone()[0]


def test_copy_behind_a_settings_barrier_gets_its_data(gh, pg):
    """DO (which may change how SQL is read) and COPY FROM STDIN in one Query: the proxy waits for
    the Query's answer before judging what follows, but lets the COPY data through (found by
    adversarial testing: the session hung, and held its backend after the client left)."""
    _copy_table(pg, "rb_copy_barrier")
    s = raw_connect(gh.port, "alice", USERS["alice"])
    try:
        s.send(query("DO $$ BEGIN END $$; COPY rb_copy_barrier FROM STDIN"))
        while True:
            t, _ = s.read_message()
            if t == b"G":
                break
            assert t == b"C", t
        s.send(message(b"d", b"1\n2\n3\n") + message(b"c"))
        types = [t for t, _ in s.until_ready()]
        assert types == [b"C", b"Z"], types
        assert s.simple_query("SELECT 1") == [["1"]]  # the barrier is over: the session carries on
    finally:
        s.close()
    assert _count(pg, "rb_copy_barrier") == 3


def test_extended_copy_keeps_the_session_in_step(make_proxy, pg):
    """libpq's COPY with the extended protocol sends Sync with the Execute and again after CopyDone;
    the server ignores the first (it reads COPY data then). Counted as two, the session waited
    for a ReadyForQuery that never came: a later SET client_encoding hung and the idle timeout
    never fired (found by adversarial testing)."""
    _copy_table(pg, "rb_copy_ext")
    proxy = make_proxy(limits={"idle_timeout": "2s"})
    c = connect(proxy, autocommit=True)
    try:
        _extended_copy(c, "rb_copy_ext", b"7\n8\n")
        started = time.monotonic()
        c.execute("SET client_encoding = 'UTF8'")  # waits for its own answer: must not hang
        assert time.monotonic() - started < 5
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("SELECT 1/0 AS rb_after_copy")
        assert c.execute("SELECT 1 AS rb_after_copy").fetchone() == (1,)
        time.sleep(3.5)  # the idle timeout ends the session: nothing counted as still running
        with pytest.raises(psycopg.OperationalError):
            c.execute("SELECT 1")
    finally:
        c.close()
    assert _count(pg, "rb_copy_ext") == 2
    # The audit trail keeps each statement's own outcome (a Sync without its ReadyForQuery shifted
    # every later outcome by one).
    from test_audit import search, store_of
    proxy.stop()
    outcomes = {h["sql"]["text"]: (h.get("outcome") or h.get("result", {}).get("outcome"))
                for h in search(store_of(proxy)) if h.get("type") == "statement"}
    assert outcomes["COPY rb_copy_ext FROM STDIN"] == "ok", outcomes
    assert outcomes["SELECT 1/0 AS rb_after_copy"] == "error", outcomes
    assert outcomes["SELECT 1 AS rb_after_copy"] == "ok", outcomes


def test_refused_connections_do_not_wait_for_silent_clients(make_proxy):
    """Over max_connections, a client that sends nothing is answered and closed after 2 s (found by
    adversarial testing: refused sockets stayed open as long as the client liked)."""
    proxy = make_proxy(limits={"max_connections": 1})
    holder = None
    for _ in range(50):  # the harness's own readiness probe may still hold the one slot
        try:
            holder = connect(proxy)
            break
        except psycopg.OperationalError:
            time.sleep(0.1)
    assert holder is not None
    socks = []
    try:
        for _ in range(20):
            socks.append(socket.create_connection(("127.0.0.1", proxy.port), timeout=10))
        deadline = time.monotonic() + 8
        for s in socks:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            assert b"53300" in data, data  # the error, then the proxy closed the socket
        assert holder.execute("SELECT 1").fetchone() == (1,)
    finally:
        for s in socks:
            s.close()
        holder.close()


def test_idle_timeout_counts_from_ready_for_query_and_spares_copy(make_proxy, pg):
    """The idle timeout counts from the last ReadyForQuery (or client message), as PostgreSQL's
    idle_session_timeout does, and never ends a session whose COPY waits for data (found by
    adversarial testing: a 2 s statement used up a 2.5 s timeout, and an extended COPY was ended)."""
    _copy_table(pg, "rb_copy_idle")
    proxy = make_proxy(limits={"idle_timeout": "2500ms"})
    with connect(proxy, autocommit=True) as c:
        c.execute("SELECT pg_sleep(2)")
        time.sleep(1.5)  # 3.5 s after the client's last message, 1.5 s after the answer
        assert c.execute("SELECT 1").fetchone() == (1,)
        _extended_copy(c, "rb_copy_idle", b"5\n", wait=3.5)  # longer than the idle timeout
    assert _count(pg, "rb_copy_idle") == 1


def test_statements_sent_with_the_terminate_finish_and_answer(gh, pg):
    """Found by adversarial testing: a Query and a Terminate in one packet committed on the server
    but the client got nothing (and the audit said "unknown"). As with PostgreSQL itself, what was
    sent before the Terminate runs, its results reach the client, and then the session ends."""
    direct = psycopg.connect(pg.dsn(), autocommit=True)
    direct.execute("DROP TABLE IF EXISTS rb_term; CREATE TABLE rb_term (id int)")
    c = raw_connect(gh.port, *ALICE)
    c.send(query("INSERT INTO rb_term SELECT g FROM generate_series(1, 3) g, pg_sleep(0.2)") + message(b"X"))
    types = []
    try:
        while True:
            t, _ = c.read_message()
            types.append(t)
    except Exception:  # noqa: BLE001 - the end of the stream
        pass
    assert types == [b"C", b"Z"], types
    assert direct.execute("SELECT count(*) FROM rb_term").fetchone() == (3,)
    direct.execute("DROP TABLE rb_term")
    direct.close()


# ---- found by adversarial testing (round 6) ---------------------------------------------------

@pytest.mark.parametrize("how", ["close", "shutdown"])
def test_a_client_gone_during_copy_from_stdin_ends_its_backend(gh, pg, how):
    """A client that sends COPY ... FROM STDIN and then closes (or half-closes) before the
    CopyInResponse: PostgreSQL ends the backend at the unexpected EOF. Through the proxy the
    backend stayed in COPY, holding its table lock and an open transaction, until the proxy stopped."""
    table = f"rb_copy_gone_{how}"
    _copy_table(pg, table)
    c = raw_connect(gh.port, *ALICE)
    try:
        c.send(query(f"COPY {table} FROM STDIN"))
        if how == "shutdown":
            c.sock.shutdown(socket.SHUT_WR)
        else:
            c.close()
    finally:
        c.close()

    def copies() -> int:
        with psycopg.connect(pg.dsn(), autocommit=True) as d:
            return d.execute("SELECT count(*) FROM pg_stat_activity WHERE query ILIKE %s",
                             (f"COPY {table} FROM STDIN%",)).fetchone()[0]
    wait_for(lambda: copies() == 0, timeout=10, what="the COPY's backend to end")
    with psycopg.connect(pg.dsn(), autocommit=True) as d:
        d.execute("SET lock_timeout = '2s'")
        d.execute(f"ALTER TABLE {table} ADD COLUMN extra int")  # no lock left behind
    assert _count(pg, table) == 0


def test_a_cancel_sent_while_idle_does_not_hit_the_next_statement(gh):
    """libpq takes the closing of the cancel connection for "delivered" and goes on; the proxy
    closed it before it had forwarded the cancel, so the cancel landed on the client's next
    statement (27 of 30 times). PostgreSQL: never."""
    with connect(gh, autocommit=True) as c:
        for _ in range(15):
            c.cancel()
            assert c.execute("SELECT pg_sleep(0.05), 1").fetchone()[1] == 1


def test_an_execute_without_sync_is_not_idle(make_proxy):
    """Pipeline mode sends Execute then Flush, and Sync later: the statement runs meanwhile. The
    idle timeout ended such a session mid-statement (PostgreSQL's idle_session_timeout does not)."""
    proxy = make_proxy(limits={"idle_timeout": "1s"})
    c = raw_connect(proxy.port, *ALICE)
    try:
        c.send(message(b"P", b"\0SELECT pg_sleep(2.2), 7 AS seven\0" + struct.pack("!H", 0)) +
               message(b"B", b"\0\0" + struct.pack("!HHH", 0, 0, 0)) +
               message(b"E", b"\0" + struct.pack("!I", 0)) + message(b"H"))
        got = []
        while not got or got[-1][0] != b"C":
            got.append(c.read_message())
        assert got[-1][1].startswith(b"SELECT 1"), got
        assert any(t == b"D" and b"7" in body for t, body in got), got
        c.send(message(b"S"))
        assert c.until_ready()[-1][0] == b"Z"
        fields = c.read_error()  # idle from here: the timeout applies
        assert fields["C"] == "57P05", fields
    finally:
        c.close()


def test_options_ending_in_a_backslash_read_as_postgresql_reads_them(gh):
    """A trailing backslash in `options` escaped the space before the proxy's own settings and the
    login failed with a message naming them; PostgreSQL takes the value without it."""
    with connect(gh, autocommit=True, options="-c application_name=trail\\") as c:
        assert c.execute("SHOW application_name").fetchone() == ("trail",)
        assert c.execute("SELECT current_setting('gatehouse.identity')").fetchone() == ("alice",)


def test_a_flush_with_a_body_cannot_shift_the_audit_records(make_proxy, pg):
    """Found by fuzzing: a Flush carrying a byte got an ERROR from PostgreSQL, which then skipped
    the pipelined Query without answering it; the proxy still waited for that answer, so every
    later record got the next statement's outcome (a DELETE that ran recorded as failed), the
    session was never released, and a settings barrier hung. Now the proxy ends such a session with
    FATAL 08P01 before anything reaches the server, and the statements recorded stay right."""
    import json
    import subprocess
    from tests.harness import BINARY
    with psycopg.connect(pg.dsn(), autocommit=True) as d:
        d.execute("DROP TABLE IF EXISTS rob_flush; CREATE TABLE rob_flush (id int); INSERT INTO rob_flush VALUES (1), (2)")
    proxy = make_proxy()
    c = raw_connect(proxy.port, *ALICE)
    try:
        fields = _fatal_after(c, b"H" + struct.pack("!I", 5) + b"x" + query("select 'desync'") + b"S" + struct.pack("!I", 4))
        assert fields["C"] == "08P01", fields
    finally:
        c.close()
    c = raw_connect(proxy.port, *ALICE)
    try:
        c.send(query("delete from rob_flush -- flush_case"))
        c.until_ready()
        c.send(query("select 1/0 -- flush_case"))
        c.until_ready()
    finally:
        c.close()
    assert proxy.stop() == 0
    r = subprocess.run([str(BINARY), "audit", "search", "--store", str(proxy.workdir / "gatehouse-audit.db"),
                        "--text", "flush_case", "--format", "jsonl"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    got = {h["sql"]["text"]: h.get("result", h) for h in map(json.loads, r.stdout.splitlines())}
    assert got["delete from rob_flush -- flush_case"]["outcome"] == "ok", got
    assert got["delete from rob_flush -- flush_case"]["rows"] == 2, got
    assert got["select 1/0 -- flush_case"]["outcome"] == "error", got


@pytest.mark.parametrize("stray", [b"c", b"f"])
def test_a_stray_copy_done_before_a_copy_leaves_the_session_in_step(make_proxy, pg, stray):
    """PostgreSQL ignores a CopyDone or CopyFail sent outside COPY. The proxy took one sent before a
    COPY for that COPY's end sent ahead of its CopyInResponse, missed a Sync, and from then on
    every audit record got the next statement's outcome (a DELETE that ran recorded as failed) and
    the session was never released (found by adversarial testing)."""
    import json
    from tests.harness import BINARY
    _copy_table(pg, "rb_stray")
    with psycopg.connect(pg.dsn(), autocommit=True) as d:
        d.execute("DROP TABLE IF EXISTS rb_stray_del; CREATE TABLE rb_stray_del (id int); "
                  "INSERT INTO rb_stray_del VALUES (1), (2), (3); GRANT ALL ON rb_stray_del TO PUBLIC")
    proxy = make_proxy()
    c = raw_connect(proxy.port, *ALICE)
    body = b"" if stray == b"c" else b"stray\0"
    try:
        c.send(message(stray, body) +
               message(b"P", b"\0COPY rb_stray FROM STDIN -- stray_case\0\0\0") + message(b"B", b"\0\0\0\0\0\0\0\0") +
               message(b"E", b"\0\0\0\0\0") + message(b"S", b""))
        t, _ = c.read_message()
        while t != b"G":
            t, _ = c.read_message()
        c.send(message(b"d", b"5\n") + message(b"c", b"") + message(b"S", b""))
        c.until_ready()
        for q in ("delete from rb_stray_del -- stray_case", "select 1/0 -- stray_case", "select 42 -- stray_case"):
            c.send(query(q))
            c.until_ready()
    finally:
        c.close()
    wait_for(lambda: proxy.metrics().get("gatehouse_connections_active", 0) == 0, timeout=10,
             what="the session released once the client closed")
    assert _count(pg, "rb_stray") == 1
    assert proxy.stop() == 0
    r = subprocess.run([str(BINARY), "audit", "search", "--store", str(proxy.workdir / "gatehouse-audit.db"),
                        "--text", "stray_case", "--format", "jsonl"], capture_output=True, text=True, timeout=60)
    got = {h["sql"]["text"]: h.get("result", h) for h in map(json.loads, r.stdout.splitlines())}
    assert got["delete from rb_stray_del -- stray_case"]["outcome"] == "ok", got
    assert got["delete from rb_stray_del -- stray_case"]["rows"] == 3, got
    assert got["select 1/0 -- stray_case"]["outcome"] == "error", got
    assert got["select 42 -- stray_case"]["outcome"] == "ok", got


def test_two_copies_with_their_data_sent_ahead_leave_the_session_in_step(make_proxy, pg):
    """libpq's extended COPY pattern twice in one write, each COPY's data and CopyDone sent before
    its CopyInResponse: the second CopyDone was absorbed, the proxy skipped one Sync too many, and a
    DELETE that ran was recorded not_run (found by adversarial testing). Also a COPY that fails
    before its CopyInResponse ahead of a good one: a later policy refusal reached the client as
    the substitute's raw 22P02 instead of 42501."""
    import json
    from tests.harness import BINARY
    _copy_table(pg, "rb_two")
    with psycopg.connect(pg.dsn(), autocommit=True) as d:
        d.execute("DROP TABLE IF EXISTS rb_two_del; CREATE TABLE rb_two_del (id int); "
                  "INSERT INTO rb_two_del VALUES (1), (2), (3); GRANT ALL ON rb_two_del TO PUBLIC; "
                  "DROP TABLE IF EXISTS rb_forbidden; CREATE TABLE rb_forbidden (id int); GRANT ALL ON rb_forbidden TO PUBLIC")
    proxy = make_proxy(rules=[{"name": "no-rb-forbidden", "when": {"tables": ["rb_forbidden"]}, "action": "deny"}])

    def batch(sql: str) -> bytes:
        return (message(b"P", b"\0" + sql.encode() + b"\0\0\0") + message(b"B", b"\0\0\0\0\0\0\0\0") +
                message(b"E", b"\0\0\0\0\0") + message(b"S", b""))

    def copy_ahead(sql: str, row: bytes) -> bytes:
        return batch(sql) + message(b"d", row) + message(b"c", b"") + message(b"S", b"")

    c = raw_connect(proxy.port, *ALICE)
    try:
        c.send(copy_ahead("COPY rb_two FROM STDIN -- two_case 1", b"1\n") +
               copy_ahead("COPY rb_two FROM STDIN -- two_case 2", b"2\n"))
        for _ in range(2):
            c.until_ready()
        c.send(copy_ahead("COPY rb_nosuch FROM STDIN -- two_case 3", b"3\n") +
               copy_ahead("COPY rb_two FROM STDIN -- two_case 4", b"4\n"))
        types = []
        while types.count(b"Z") < 2:
            types.append(c.read_message()[0])
        assert b"E" in types, types  # rb_nosuch does not exist
        c.until_ready()
        for sql in ("delete from rb_two_del -- two_case 5", "select 1/0 -- two_case 6",
                    "select * from rb_forbidden -- two_case 7", "select 42 -- two_case 8"):
            c.send(batch(sql))
            msgs = c.until_ready()
            if "rb_forbidden" in sql:
                err = parse_error_fields(next(b for t, b in msgs if t == b"E"))
                assert err["C"] == "42501", err
    finally:
        c.close()
    assert _count(pg, "rb_two") == 3
    wait_for(lambda: proxy.metrics().get("gatehouse_connections_active", 0) == 0, timeout=10,
             what="the session released once the client closed")
    assert proxy.stop() == 0
    r = subprocess.run([str(BINARY), "audit", "search", "--store", str(proxy.workdir / "gatehouse-audit.db"),
                        "--text", "two_case", "--format", "jsonl"], capture_output=True, text=True, timeout=60)
    got = {h["sql"]["text"].rsplit("-- ", 1)[1]: h.get("result", h) for h in map(json.loads, r.stdout.splitlines())}
    assert [got[f"two_case {i}"]["outcome"] for i in range(1, 9)] == \
        ["ok", "ok", "error", "ok", "ok", "error", "refused", "ok"], got
    assert [got[f"two_case {i}"].get("rows") for i in (1, 2, 4, 5)] == [1, 1, 1, 3], got


@pytest.mark.parametrize("tls_mode", ["require", "allow"])
def test_max_connections_error_reaches_clients_that_require_tls(make_proxy, certs, tls_mode):
    """Found by an operator trial: with client TLS on, a full proxy answered the SSLRequest with
    'N', so libpq with sslmode=require or verify-full reported "server does not support SSL"
    instead of 53300. The refusal now goes through the TLS handshake first, as PostgreSQL's does."""
    from conftest import tls_listener
    proxy = make_proxy(limits={"max_connections": 1}, tls=tls_listener(certs, tls_mode))
    # The harness's readiness probe (a TCP connect) is a session too until the proxy sees it close:
    # with room for one, wait for it to end (a CI run took the only slot with it).
    wait_for(lambda: proxy.metrics().get("gatehouse_connections_active", 1) == 0, timeout=10,
             what="the readiness probe's session to end")
    held = connect(proxy, sslmode="require")
    try:
        for env in ({"PGSSLMODE": "require"},
                    {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(certs / "ca.crt")},
                    {"PGSSLMODE": "prefer"}):
            r = psql(proxy, "-c", "select 1", check=False, env=env)
            assert r.returncode != 0
            assert "sorry, too many clients already" in r.stderr, (env, r.stderr)
        with pytest.raises(psycopg.OperationalError, match="too many clients"):
            connect(proxy, sslmode="require")
        assert held.execute("select 1").fetchone() == (1,)
    finally:
        held.close()
