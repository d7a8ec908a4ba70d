"""The database server goes away: clear errors for that session, never for the process."""
from __future__ import annotations

import os
import struct
import signal
import threading
import time

import psycopg
import pytest

from conftest import USERS, connect, target, wait_for
from pgwire import WireError, startup_error
from pgwire import connect as raw_connect
import pgwire
from tests.harness import PgCluster, free_port

ALICE = ("alice", USERS["alice"])


def test_backend_down_at_connect(make_proxy):
    cfg = make_proxy.config()
    cfg["targets"].append(target("down", free_port()))
    proxy = make_proxy(cfg)
    t0 = time.time()
    fields = startup_error(proxy.port, *ALICE, database="down")
    assert time.time() - t0 < 3
    assert fields["C"] == "08006"
    assert fields["S"] == "FATAL"
    assert 'target "down"' in fields["M"], fields
    # psql users see it too
    with pytest.raises(psycopg.OperationalError) as ei:
        connect(proxy, dbname="down")
    assert 'target "down"' in str(ei.value)
    # other targets unaffected
    with connect(proxy) as c:
        assert c.execute("select 1").fetchone() == (1,)


def test_backend_connect_timeout(make_proxy):
    cfg = make_proxy.config(limits={"backend_connect_timeout": "1s"})
    # A non-routable address; where the sandbox answers "unreachable" at once instead of timing
    # out, the client must still get 08006 naming the target.
    cfg["targets"].append(target("blackhole", 5432, host="10.255.255.1"))
    proxy = make_proxy(cfg)
    t0 = time.time()
    fields = startup_error(proxy.port, *ALICE, database="blackhole")
    assert time.time() - t0 < 4
    assert fields["C"] == "08006"
    assert 'target "blackhole"' in fields["M"], fields


def test_backend_login_misconfigured(make_proxy, pg):
    cfg = make_proxy.config()
    cfg["targets"].append(target("badlogin", pg.port, password="definitely-wrong-pw"))
    proxy = make_proxy(cfg)
    fields = startup_error(proxy.port, *ALICE, database="badlogin")
    assert fields["C"] == "08006", fields
    assert 'target "badlogin"' in fields["M"]
    assert "definitely-wrong-pw" not in str(fields) and "definitely-wrong-pw" not in proxy.log()


@pytest.fixture(scope="module")
def own_pg():
    """A cluster of its own: these tests restart and crash it."""
    cluster = PgCluster().init().start()
    yield cluster
    cluster.destroy()


def test_backend_restart_mid_session(make_proxy, own_pg):
    proxy = make_proxy(pg=own_pg)
    idle = raw_connect(proxy.port, *ALICE)
    busy = raw_connect(proxy.port, *ALICE)
    busy_result: dict = {}

    def run_busy():
        try:
            busy.simple_query("select pg_sleep(30)")
            busy_result["ok"] = True
        except WireError as e:
            busy_result["error"] = e.fields
        except Exception as e:  # noqa: BLE001
            busy_result["exc"] = e

    t = threading.Thread(target=run_busy)
    t.start()
    try:
        assert idle.simple_query("select 1") == [["1"]]
        time.sleep(0.5)
        own_pg.restart("fast")
        t.join(15)
        assert not t.is_alive()
        assert "error" in busy_result, busy_result
        assert busy_result["error"]["C"] in ("57P01", "08006"), busy_result
        busy.expect_closed()
        fields = idle.read_error()
        assert fields["C"] in ("57P01", "08006"), fields
        assert fields["S"] == "FATAL"
        idle.expect_closed()
    finally:
        idle.close()
        busy.close()
    assert proxy.proc.poll() is None
    with connect(proxy) as c:
        assert c.execute("select 'after restart'").fetchone() == ("after restart",)


def test_backend_process_killed(make_proxy, own_pg):
    """The backend vanishes without a word (SIGKILL): the proxy says 08006 itself."""
    proxy = make_proxy(pg=own_pg)
    victim = raw_connect(proxy.port, *ALICE)
    try:
        (pid,), = victim.simple_query("select pg_backend_pid()")
        os.kill(int(pid), signal.SIGKILL)
        fields = victim.read_error()
        assert fields["C"] in ("08006", "57P02"), fields  # 57P02 if the postmaster's crash notice wins
        victim.expect_closed()
    finally:
        victim.close()

    def works():
        try:
            with connect(proxy) as c:
                return c.execute("select 1").fetchone() == (1,)
        except psycopg.OperationalError:
            return False

    wait_for(works, timeout=40, interval=0.3, what="the cluster to recover")  # crash recovery restarts every backend


def test_pg_terminate_backend(gh, pg):
    victim = raw_connect(gh.port, *ALICE)
    try:
        (pid,), = victim.simple_query("select pg_backend_pid()")
        with connect(gh) as admin:
            assert admin.execute("select pg_terminate_backend(%s)", (int(pid),)).fetchone() == (True,)
        fields = victim.read_error()
        assert fields["C"] == "57P01", fields
        victim.expect_closed()
    finally:
        victim.close()
    with connect(gh) as c:
        assert c.execute("select 1").fetchone() == (1,)


def test_terminated_backends_end_idle_sessions_every_time(make_proxy, own_pg):
    """pg_terminate_backend: the server sends FATAL 57P01 and closes, usually in one packet. Every
    idle session must pass the error on and end at once. (A read that took a short recv() for "the
    socket is drained" missed the FIN that came with the data and left such sessions hanging.)"""
    proxy = make_proxy(pg=own_pg)
    conns = [raw_connect(proxy.port, *ALICE) for _ in range(12)]
    try:
        pids = [int(c.simple_query("select pg_backend_pid()")[0][0]) for c in conns]
        own_pg.psql("select count(pg_terminate_backend(pid)) from pg_stat_activity where pid in (%s)"
                    % ",".join(map(str, pids)))
        for i, c in enumerate(conns):
            fields = c.read_error()  # within the client's socket timeout, not never
            assert fields["C"] == "57P01" and fields["S"] == "FATAL", (i, fields)
            c.expect_closed()
    finally:
        for c in conns:
            c.close()
    assert proxy.proc.poll() is None


def test_a_stream_cut_inside_a_message_gets_no_error_spliced_into_it(make_proxy, own_pg):
    """Found by adversarial testing: when the server's connection broke off inside a DataRow (its
    backend killed mid-result), the proxy sent its FATAL 08006 right after the partial row, so the
    client read the error as the rest of the row's bytes. The client must see the stream end there,
    as it would from the server itself."""
    proxy = make_proxy(pg=own_pg)
    c = raw_connect(proxy.port, *ALICE)
    pid = int(c.simple_query("select pg_backend_pid()")[0][0])
    c.send(pgwire.query("SELECT repeat('x', 1000) FROM generate_series(1, 3000000)"))
    time.sleep(0.5)  # the server is streaming; the client does not read yet
    os.kill(pid, signal.SIGKILL)
    data = c.buf
    c.sock.settimeout(15)
    while True:
        chunk = c.sock.recv(1 << 20)
        if not chunk:
            break  # end of stream: no hang
        data += chunk
    # Walk the messages: whatever follows the last complete one is the start of a cut message.
    i, types = 0, set()
    while i + 5 <= len(data):
        (length,) = struct.unpack("!I", data[i + 1:i + 5])
        if i + 1 + length > len(data):
            break
        types.add(data[i:i + 1])
        i += 1 + length
    tail = data[i:]
    assert b"D" in types, types
    assert b"08006" not in tail and b"lost the connection" not in tail, tail[-200:]
    if not tail:  # the cut fell between messages: then the proxy says what happened
        assert b"E" in types, types
