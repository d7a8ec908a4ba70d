"""The PostgreSQL audit store: the proxy writes its records into a second, real cluster, and
keeps its promises when that cluster goes away (buffered: statements run and records are
kept in the local journal, then stored in order; required: statements are refused once the proxy
has found the store down, until it is back)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import psycopg
import pytest

from conftest import connect, wait_for
from tests.harness import BINARY, PgCluster

# The GoogleTest binary built beside the gatehouse binary (GATEHOUSE_UNIT_TESTS overrides).
UNIT_TESTS = Path(os.environ.get("GATEHOUSE_UNIT_TESTS", BINARY.parent / "unit_tests"))

GENESIS = "0" * 64


@pytest.fixture
def store():
    """The audit store: its own cluster, so stopping it leaves the proxy's backend alone."""
    cluster = PgCluster().init().start()
    yield cluster
    cluster.destroy()


def audit_config(store: PgCluster, durability: str, table: str | None = None, node: str = "e2e-node") -> dict:
    sink = {"type": "postgres", "dsn": store.dsn()}
    if table:
        sink["table"] = table
    return {"node": node, "durability": durability, "sinks": [sink]}


def rows(store: PgCluster, table: str = "gatehouse_audit") -> list[dict]:
    with psycopg.connect(store.dsn(), connect_timeout=5) as c:
        if c.execute("SELECT to_regclass(%s)", [table]).fetchone()[0] is None:
            return []  # the proxy creates it once it reaches the store
        cur = c.execute(f"SELECT node, seq, prev, hash, body, type, subject, target, text FROM {table} ORDER BY node, seq")
        names = [d.name for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]


def statements(recs: list[dict]) -> list[str]:
    return [r["text"] for r in recs if r["type"] == "statement"]


def check_chain(recs: list[dict]) -> None:
    """Consecutive seqs from 1, each hash over the previous hash and the stored body."""
    prev = GENESIS
    for i, r in enumerate(recs, start=1):
        assert r["seq"] == i, (i, r["seq"])
        assert r["prev"] == prev, f"seq {i}: prev does not link to the record before"
        assert hashlib.sha256(bytes.fromhex(r["prev"]) + r["body"].encode()).hexdigest() == r["hash"], f"seq {i}"
        body = json.loads(r["body"])
        assert body["seq"] == i and body["prev"] == prev and body["node"] == r["node"]
        prev = r["hash"]


def test_records_appear_in_the_table(make_proxy, store):
    store.psql("CREATE SCHEMA audit")
    proxy = make_proxy(audit=audit_config(store, "required", table="audit.records"))
    with connect(proxy) as c:
        assert c.execute("SELECT 41 + 1 AS answer").fetchone() == (42,)
        c.execute("SELECT 'tab\there', E'back\\\\slash', 'Zoë'")
    proxy.stop()
    recs = rows(store, "audit.records")
    assert recs[0]["type"] == "start" and recs[-1]["type"] == "stop"
    texts = statements(recs)
    assert "SELECT 41 + 1 AS answer" in texts
    assert "SELECT 'tab\there', E'back\\\\slash', 'Zoë'" in texts
    stmt = next(r for r in recs if r["text"] == "SELECT 41 + 1 AS answer")
    assert stmt["subject"] == "alice" and stmt["target"] == "app"
    assert {r["node"] for r in recs} == {"e2e-node"}
    check_chain(recs)
    # The table and the indexes readers rely on, created by the proxy on first connection.
    idx = store.psql("SELECT string_agg(indexdef, ';') FROM pg_indexes WHERE schemaname = 'audit'")
    assert "(node, seq)" in idx and "(time_us)" in idx and "(subject, time_us)" in idx


def test_buffered_spools_while_the_store_is_down_and_forwards_in_order(make_proxy, store):
    proxy = make_proxy(audit=audit_config(store, "buffered"))
    with connect(proxy, autocommit=True) as c:
        c.execute("SELECT 'before'")
        wait_for(lambda: "SELECT 'before'" in statements(rows(store)), timeout=10, what="the first record")
        store.stop()
        for i in range(20):
            assert c.execute(f"SELECT {i} AS during").fetchone() == (i,)  # statements still run
        wait_for(lambda: "records wait in the journal" in proxy.log(), timeout=10, what="the sink failure in the log")
        assert "postgres-secret" not in proxy.log()
        store.start()
        c.execute("SELECT 'after'")
        want = ["SELECT 'before'"] + [f"SELECT {i} AS during" for i in range(20)] + ["SELECT 'after'"]
        wait_for(lambda: statements(rows(store)) == want, timeout=20, what="the journaled records in the store")
    assert "the journaled records were stored in order" in proxy.log()
    proxy.stop()
    recs = rows(store)
    assert statements(recs) == want
    assert recs[-1]["type"] == "stop"
    check_chain(recs)


def test_required_refuses_statements_while_the_store_is_down(make_proxy, store):
    proxy = make_proxy(audit=audit_config(store, "required"))
    with connect(proxy, autocommit=True) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
        store.stop()
        # Statements are journaled (durable) at once and stored within audit.flush_interval; the
        # first flush that finds the store down makes the next statements fail.
        ran_while_down = []

        def refused() -> psycopg.Error | None:
            try:
                c.execute("SELECT 'while down'")
                ran_while_down.append(1)
                return None
            except psycopg.Error as e:
                return e
        err = wait_for(refused, timeout=10, interval=0.02, what="a statement refused while the store is down")
        msg = str(err)
        assert "statement not run: the audit trail could not record it" in msg, msg
        assert "127.0.0.1" in msg and "postgres-secret" not in msg, msg
        # 58030, not the store connection's own 08006 (a pool drops a connection on class 08;
        # found by adversarial testing)
        assert err.sqlstate == "58030", err.sqlstate
        # A login while it is down is refused with one record, connect_failed (it also got a
        # connect record, kept for the store: found by adversarial testing).
        with pytest.raises(psycopg.OperationalError) as login:
            connect(proxy, application_name="login-while-down")
        assert "login refused: the audit trail cannot record it" in str(login.value), login.value
        store.start()

        # Once the journal is stored the session runs statements again, unchanged.
        def runs() -> bool:
            try:
                return c.execute("SELECT 'back'").fetchone() == ("back",)
            except psycopg.Error:
                return False
        wait_for(runs, timeout=20, interval=0.5, what="statements to run again")
    proxy.stop()
    recs = rows(store)
    texts = statements(recs)
    assert texts[0] == "SELECT 1" and "SELECT 'while down'" in texts and texts[-1] == "SELECT 'back'"
    check_chain(recs)
    down = [json.loads(r["body"]) for r in recs if "login-while-down" in r["body"]]
    assert [d["type"] for d in down] == ["connect_failed"], down


def test_store_down_at_start_does_not_stop_the_proxy(make_proxy, store):
    store.stop()
    proxy = make_proxy(audit=audit_config(store, "buffered"))
    with connect(proxy, autocommit=True) as c:
        assert c.execute("SELECT 'no store yet'").fetchone() == ("no store yet",)
        store.start()
        wait_for(lambda: "SELECT 'no store yet'" in statements(rows(store)), timeout=20, what="the spooled records")
    proxy.stop()
    recs = rows(store)
    assert recs[0]["type"] == "start"
    check_chain(recs)


def test_postgres_sink_unit_tests_run_against_a_real_server(pg, tmp_path):
    """The PostgresAuditSink GoogleTests skip without GH_TEST_PG_DSN; here they get the session's
    real server (they make and drop their own schema and role), and every one of them must run and
    pass: none skipped."""
    assert UNIT_TESTS.exists(), f"{UNIT_TESTS} is missing; build the unit_tests target"
    report = tmp_path / "gtest.json"
    r = subprocess.run([str(UNIT_TESTS), "--gtest_filter=PostgresAuditSink.*", f"--gtest_output=json:{report}"],
                       env=dict(os.environ, GH_TEST_PG_DSN=pg.dsn()), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    tests = [t for suite in json.loads(report.read_text())["testsuites"] for t in suite["testsuite"]
             if not t["name"].startswith("DISABLED_")]
    assert len(tests) >= 5, [t["name"] for t in tests]
    assert all(t["classname"] == "PostgresAuditSink" for t in tests)
    not_run = [(t["name"], t.get("result"), t.get("status")) for t in tests
               if t.get("result") != "COMPLETED" or t.get("status") != "RUN" or t.get("failures")]
    assert not_run == [], not_run
    assert "SKIPPED" not in r.stdout, r.stdout[-4000:]


def test_a_postgres_store_exported_as_documented_verifies(make_proxy, store, tmp_path):
    """docs/operations.md: a PostgreSQL sink is verified by exporting one node's chain with psql in
    the JSON-lines format. The command as documented works, and an edited row is caught."""
    proxy = make_proxy(audit=audit_config(store, "required", node="export-node"))
    with connect(proxy, autocommit=True) as c:
        for i in range(5):
            c.execute(f"SELECT {i} AS exported")
    proxy.stop()
    sql = ("SELECT '{\"hash\":\"' || hash || '\",\"body\":' || body || '}' "
           "FROM gatehouse_audit WHERE node = 'export-node' ORDER BY seq")

    def export() -> Path:
        out = tmp_path / "trail.jsonl"
        r = subprocess.run(["psql", "-XAt", "-d", store.dsn(), "-c", sql], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        out.write_text(r.stdout)
        return out
    r = subprocess.run([str(BINARY), "audit", "verify", "--store", str(export())], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "intact" in r.stdout, r.stdout + r.stderr
    with psycopg.connect(store.dsn(), autocommit=True) as c:
        c.execute("UPDATE gatehouse_audit SET body = replace(body, '3 AS exported', '4 AS exported') "
                  "WHERE body LIKE '%3 AS exported%'")
    r = subprocess.run([str(BINARY), "audit", "verify", "--store", str(export())], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and "TAMPERED" in r.stdout, r.stdout + r.stderr
    # A connection string given as --store is not echoed: it may hold the password.
    r = subprocess.run([str(BINARY), "audit", "search", "--store", store.dsn()], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0 and "connection string" in r.stderr, r.stderr
    assert "postgres-secret" not in r.stdout + r.stderr
