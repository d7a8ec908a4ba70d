"""The audit trail end to end: the real proxy writes its SQLite store while real psql and psycopg
clients run statements against a real PostgreSQL, and `gatehouse audit` reads it back.

- what a statement's records hold (identity, target, decision and rule, rows from CommandComplete,
  outcome, SQLSTATE), through both protocols, a multi-statement Query, COPY, an error, a policy
  refusal; and a failed login;
- kill -9 under load: the chain verifies, the restarted proxy continues it, and (durability
  required) every statement a client saw complete — and every row in the table — is recorded;
  (buffered) what is stored is a consistent prefix of what each session submitted;
- a full disk under the store and the spool: statements are refused with 53100, the proxy stays up,
  sessions work again once space is freed, and the store is intact;
- tampering with a store the proxy wrote is caught by `gatehouse audit verify`;
- retention prunes at start and the chain still verifies from its Retention anchor.
"""
from __future__ import annotations

import copy
import errno
import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
import threading
from pathlib import Path

import psycopg
import pytest

from conftest import connect, psql, target, wait_for
from tests.harness import BINARY, Gatehouse, audit_store

_counter = itertools.count(1)


# ---- helpers --------------------------------------------------------------------------------

def audit_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BINARY), "audit", *map(str, args)], capture_output=True, text=True, timeout=60)


def verify(store: Path, *args: str) -> subprocess.CompletedProcess:
    return audit_cli("verify", "--store", store, *args)


def search(store: Path, *filters: str) -> list[dict]:
    r = audit_cli("search", "--store", store, "--format", "jsonl", "--limit", "10000", *filters)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def db_rows(store: Path, sql: str, params: tuple = ()) -> list[dict]:
    """SQL over the records of the SQLite file (read-only, beside a live or killed proxy), in the
    rows layout's columns whatever its layout (tests/harness/audit_store.py)."""
    return audit_store.db_rows(store, sql, params)


ROWS_LAYOUT = {"sinks": [{"type": "sqlite", "path": "gatehouse-audit.db", "layout": "rows"}]}


def statement_outcomes(store: Path):
    """text -> how that statement ended: its own record, or the result record that names it."""
    hits = {h["sql"]["text"]: h for h in search(store) if h.get("type") == "statement"}

    def outcome(text):
        h = hits[text]
        return h.get("result", h)
    return outcome


def sqlite_cli(store: Path, sql: str) -> None:
    subprocess.run(["sqlite3", str(store), sql], check=True, capture_output=True, text=True, timeout=30)


def store_of(proxy) -> Path:
    """The default store: gatehouse-audit.db beside the configuration file."""
    return proxy.workdir / "gatehouse-audit.db"


def tamper_line(out: str) -> tuple[int, str]:
    m = re.search(r"TAMPERED at seq (\d+) \(([^)]+)\)", out)
    assert m, out
    return int(m.group(1)), m.group(2)


def fresh_table(pg, columns: str = "id int, v text") -> str:
    name = f"audit_e2e_{os.getpid()}_{next(_counter)}"
    pg.psql(f"DROP TABLE IF EXISTS {name}; CREATE TABLE {name} ({columns})")
    return name


# ---- 1. what the records hold ----------------------------------------------------------------

def test_statements_are_recorded_with_identity_decision_rows_outcome_and_sqlstate(make_proxy, pg):
    t = fresh_table(pg)
    prod = target("app", pg.port, password=pg.password)
    prod["environment"] = "production"  # guardrails on
    proxy = make_proxy(targets=[prod])   # no audit section: the default SQLite store, durability required
    store = store_of(proxy)

    # psql: one Query holding two statements; then a script, one Query per statement: COPY, an
    # error, a guardrail refusal.
    psql(proxy, "-c", f"INSERT INTO {t} VALUES (1, 'psql-a'), (2, 'psql-b'); SELECT * FROM {t}")
    r = psql(proxy, "-f", "-", check=False, input=(
        f"COPY {t} (id, v) FROM STDIN;\n100\tcopy-a\n101\tcopy-b\n102\tcopy-c\n\\.\n"
        "SELECT 1/0;\n"
        f"DELETE FROM {t};\n"))
    assert "division by zero" in r.stderr and "guardrail.unbounded_write" in r.stderr, r.stderr

    # psycopg: the extended protocol (with parameters; a binary cursor always uses it), the simple
    # protocol (no parameters), COPY, an error and a refusal in each.
    with connect(proxy, autocommit=True) as c:
        ext = c.cursor(binary=True)
        ext.execute(f"INSERT INTO {t} VALUES (%s, %s)", (10, "psycopg-ext"))
        assert len(ext.execute(f"SELECT * FROM {t} WHERE id < %s", (50,)).fetchall()) == 3
        c.execute(f"UPDATE {t} SET v = 'simple' WHERE id >= 100")
        with c.cursor().copy(f"COPY {t} (id, v) FROM STDIN") as cp:
            cp.write_row((200, "copy-x"))
            cp.write_row((201, "copy-y"))
        with pytest.raises(psycopg.errors.UndefinedTable):
            ext.execute("SELECT * FROM audit_e2e_no_such_table")
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("SELECT 2/0")
        for cur in (c, ext):
            with pytest.raises(psycopg.Error) as ei:
                cur.execute(f"DELETE FROM {t}")
            assert ei.value.sqlstate == "42501" and "guardrail.unbounded_write" in str(ei.value)
        assert c.execute("SELECT 'still here'").fetchone() == ("still here",)
        # A refusal after a BEGIN of the same string: the session is left in a failed block.
        with pytest.raises(psycopg.Error) as ei:
            c.execute(f"BEGIN; DELETE FROM {t}")
        assert ei.value.sqlstate == "42501"
        c.execute("ROLLBACK")

    # A failed login.
    with pytest.raises(psycopg.OperationalError):
        connect(proxy, password="wrong-password")

    assert proxy.stop() == 0
    assert proxy.proc.returncode == 0

    hits = search(store)
    # An Execute the backend skips after a refusal in its batch is not a statement of its own
    # (found by adversarial testing: a phantom record named another statement, or a portal, and
    # carried the refused statement's values).
    phantoms = [h for h in hits if h.get("sql", {}).get("text", "").startswith("<portal")]
    assert not phantoms, phantoms
    by_text: dict[str, list[dict]] = {}
    for h in hits:
        by_text.setdefault(h.get("sql", {}).get("text", ""), []).append(h)

    def one(text: str, protocol: str | None = None) -> dict:
        found = [h for h in by_text.get(text, []) if protocol is None or h["sql"]["protocol"] == protocol]
        assert len(found) == 1, (text, protocol, [h.get("sql", {}).get("text") for h in hits])
        h = found[0]
        assert h["type"] == "statement"
        assert h["identity"]["subject"] == "alice" and h["identity"]["groups"] == ["dba"]
        assert h["target"] == "app" and h["environment"] == "production"
        return h

    multi = one(f"INSERT INTO {t} VALUES (1, 'psql-a'), (2, 'psql-b'); SELECT * FROM {t}", "Q")
    assert [s["kinds"] for s in multi["sql"]["statements"]] == [["insert"], ["select"]]
    assert multi["sql"]["decision"]["action"] == "allow"
    assert multi["result"]["outcome"] == "ok" and multi["result"]["rows"] == 2 + 2  # INSERT 0 2, SELECT 2

    copies = by_text[f"COPY {t} (id, v) FROM STDIN"]  # psql's (3 rows) and psycopg's (2 rows)
    assert sorted((h["result"]["outcome"], h["result"]["rows"]) for h in copies) == [("ok", 2), ("ok", 3)], copies

    div = one("SELECT 1/0", "Q")
    assert div["result"]["outcome"] == "error" and div["result"]["sqlstate"] == "22012"
    assert "division by zero" in div["result"]["message"]

    div2 = one("SELECT 2/0", "Q")
    assert div2["result"]["outcome"] == "error" and div2["result"]["sqlstate"] == "22012"

    refusals = [h for h in by_text[f"DELETE FROM {t}"]]
    # psql and psycopg's simple protocol: a Query; psycopg's binary cursor: refused at its Parse.
    assert sorted(h["sql"]["protocol"] for h in refusals) == ["P", "Q", "Q"], refusals
    for refused in refusals:
        assert refused["identity"]["subject"] == "alice" and refused["target"] == "app"
        assert refused["sql"]["decision"]["action"] == "deny"
        assert refused["sql"]["decision"]["rule"] == "guardrail.unbounded_write"
        assert refused["outcome"] == "refused" and refused["sqlstate"] == "42501", refused
        assert "result" not in refused  # it never reached the database
    in_block = one(f"BEGIN; DELETE FROM {t}", "Q")
    assert in_block["outcome"] == "refused" and in_block["sqlstate"] == "42501", in_block
    assert "rows" not in in_block and "result" not in in_block, in_block

    ext = one(f"INSERT INTO {t} VALUES ($1, $2)", "E")
    assert ext["sql"]["params"] == ["<binary 2 bytes>", "psycopg-ext"]  # psycopg sends ints in binary: size only
    assert ext["result"]["outcome"] == "ok" and ext["result"]["rows"] == 1
    sel = one(f"SELECT * FROM {t} WHERE id < $1", "E")
    assert sel["result"]["rows"] == 3 and sel["sql"]["statements"][0]["relations"] == [t]
    upd = one(f"UPDATE {t} SET v = 'simple' WHERE id >= 100", "Q")  # psycopg without parameters: simple
    assert upd["result"]["rows"] == 3 and upd["sql"]["decision"]["action"] == "allow"
    missing = one("SELECT * FROM audit_e2e_no_such_table", "E")
    assert missing["result"]["outcome"] == "error" and missing["result"]["sqlstate"] == "42P01"

    failed = [h for h in hits if h["type"] == "connect_failed"]
    assert len(failed) == 1, failed
    assert failed[0]["sqlstate"] == "28P01" and failed[0]["outcome"] == "refused"
    assert failed[0]["identity"]["user"] == "alice"
    assert "wrong-password" not in store.read_bytes().decode(errors="replace")
    # A failed login has no subject: searching by the user name the client gave finds it, as
    # does the admin API's search (same reader). Before, --identity alice missed it.
    by_name = [h for h in search(store, "--identity", "ALICE") if h["type"] == "connect_failed"]
    assert [h["seq"] for h in by_name] == [failed[0]["seq"]]
    assert not [h for h in search(store, "--identity", "bob") if h["type"] == "connect_failed"]
    assert [h["seq"] for h in search(store, "--identity", "al*", "--type", "connect_failed")] == [failed[0]["seq"]]

    # The same facts straight from the SQLite columns.
    rows = db_rows(store, "SELECT s.type, s.subject, s.target, s.environment, s.decision, s.rule,"
                          " s.outcome AS s_outcome, s.sqlstate AS s_sqlstate,"
                          " r.outcome, COALESCE(r.rows, s.rows) AS rows, COALESCE(r.sqlstate, s.sqlstate) AS sqlstate,"
                          " s.text FROM audit_records s LEFT JOIN audit_records r"
                          " ON r.type = 'result' AND r.session = s.session AND r.statement = s.statement"
                          " WHERE s.type = 'statement' ORDER BY s.seq")
    direct = {(r["text"], r["s_outcome"] or r["outcome"]): r for r in rows}
    assert direct[(f"COPY {t} (id, v) FROM STDIN", "ok")]["rows"] in (3, 2)
    assert direct[("SELECT 1/0", "error")]["sqlstate"] == "22012"
    den = direct[(f"DELETE FROM {t}", "refused")]
    assert (den["subject"], den["target"], den["environment"], den["decision"], den["rule"], den["s_sqlstate"]) == \
        ("alice", "app", "production", "deny", "guardrail.unbounded_write", "42501")
    assert den["outcome"] is None  # no result record
    # One record per statement: it holds its own outcome (no Result record follows it).
    assert db_rows(store, "SELECT count(*) AS n FROM audit_records WHERE type = 'result'") == [{"n": 0}]
    assert all(r["subject"] == "alice" and r["target"] == "app" for r in rows)
    cf = db_rows(store, "SELECT sqlstate, outcome FROM audit_records WHERE type = 'connect_failed'")
    assert cf == [{"sqlstate": "28P01", "outcome": "refused"}]
    types = [r["type"] for r in db_rows(store, "SELECT type FROM audit_records ORDER BY seq")]
    assert types[0] == "start" and types[-1] == "stop" and "connect" in types and "disconnect" in types

    v = verify(store)
    assert v.returncode == 0 and "intact" in v.stdout, v.stdout + v.stderr


# ---- 2. kill -9 under load -------------------------------------------------------------------

CLIENTS = 4


class Loader(threading.Thread):
    """One psycopg session inserting unique values until the proxy dies; remembers which
    statements it saw complete, and the one in flight when the connection broke."""

    def __init__(self, proxy, table: str, name: str):
        super().__init__(daemon=True)
        self.proxy, self.table, self.name = proxy, table, name
        self.done: list[str] = []
        self.in_flight: str | None = None
        self.error: BaseException | None = None
        self.connected = threading.Event()

    def run(self) -> None:
        try:
            c = connect(self.proxy, autocommit=True)
        except BaseException as e:  # noqa: BLE001
            self.error = e
            self.connected.set()
            return
        self.connected.set()
        try:
            for n in itertools.count():
                value = f"{self.name}-{n}"
                self.in_flight = value
                c.execute(f"INSERT INTO {self.table} VALUES ('{value}')")
                self.done.append(value)
                self.in_flight = None
        except psycopg.Error:
            pass  # the proxy was killed
        finally:
            c.close()


def recorded_values(store: Path, table: str) -> list[str]:
    """The unique values of the INSERT statements the store holds, in chain order."""
    out = []
    for r in db_rows(store, "SELECT text FROM audit_records WHERE type = 'statement' AND text LIKE ? ORDER BY seq",
                     (f"INSERT INTO {table} VALUES %",)):
        m = re.search(r"VALUES \('([^']+)'\)", r["text"])
        assert m, r["text"]
        out.append(m.group(1))
    return out


def test_a_long_pipeline_without_sync_keeps_the_proxy_small(make_proxy, pg):
    """Found by adversarial testing: 1.2 million Executes sent without a Sync took the proxy to
    3.4 GB (each statement in flight held its audit record, the store's queue held the rest), and
    the allocator kept it. Statements in flight are now bounded per session (the client is read
    again once the server answered), the store's queues are bounded, and every record arrives."""
    import struct
    import threading
    import pgwire
    proxy = make_proxy(targets=[target("app", pg.port, password=pg.password)])
    store = store_of(proxy)

    def anon_kib() -> int:
        for line in open(f"/proc/{proxy.proc.pid}/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
        return 0
    c = pgwire.Conn(proxy.port, timeout=300)
    c.startup("alice", "alice-secret", "app")
    n = 150_000
    got = {"rows": 0, "ready": threading.Event(), "errors": []}

    def reader():
        while True:
            t, body = c.read_message()
            if t == b"C":
                got["rows"] += 1
            elif t == b"E":
                got["errors"].append(pgwire.parse_error_fields(body))
            elif t == b"Z":
                got["ready"].set()
                return
    threading.Thread(target=reader, daemon=True).start()
    before = anon_kib()
    peak = before
    c.send(pgwire.message(b"P", b"\0select $1::int, repeat('y', 100)\0" + struct.pack("!H", 0)))
    for i in range(0, n, 2000):
        c.send(b"".join(pgwire.message(b"B", b"\0\0" + struct.pack("!HH", 0, 1) + struct.pack("!i", len(str(j)))
                                       + str(j).encode() + struct.pack("!H", 0))
                        + pgwire.message(b"E", b"\0" + struct.pack("!i", 0)) for j in range(i, i + 2000)))
        peak = max(peak, anon_kib())
    c.send(pgwire.message(b"S"))
    while not got["ready"].wait(0.2):
        peak = max(peak, anon_kib())
    c.close()
    assert not got["errors"] and got["rows"] == n, (got["rows"], got["errors"][:3])
    # ~2.5 KB per statement in flight before: 150,000 of them were ~370 MB.
    assert peak - before < 120 * 1024, (before, peak)
    assert proxy.stop() == 0
    assert verify(store).returncode == 0
    with audit_store.connect_rows(store) as db:
        summary = db.execute("SELECT type, substr(text, 1, 30), outcome, count(*) FROM audit_records"
                             " GROUP BY 1, 2, 3").fetchall()
        assert db.execute("SELECT count(*) FROM audit_records WHERE type = 'statement' AND text LIKE 'select $1::int%'"
                          ).fetchone() == (n,), summary


def test_fast_path_calls_are_recorded_with_their_arguments(make_proxy, pg, tmp_path):
    """psql's \\lo_import writes through fast-path FunctionCalls (lo_open, lowrite, lo_close):
    each is a statement record whose parameters are the call's arguments (binary ones by size).
    Before, the arguments were not recorded at all."""
    proxy = make_proxy(targets=[target("app", pg.port, password=pg.password)])
    store = store_of(proxy)
    data = tmp_path / "blob.bin"
    data.write_bytes(b"x" * 1234)
    r = psql(proxy, "-c", f"\\lo_import {data}", check=False)
    assert r.returncode == 0 and "lo_import" in r.stdout, (r.stdout, r.stderr)
    pg.psql(f"SELECT lo_unlink({int(r.stdout.split()[-1])})")  # the cluster is shared with other tests
    assert proxy.stop() == 0
    calls = [h for h in search(store) if h.get("sql", {}).get("protocol") == "F"]
    assert calls, "no fast-path call recorded"
    params = [p for h in calls for p in h["sql"].get("params", [])]
    assert "<binary 1234 bytes>" in params, [h["sql"] for h in calls]


def test_execute_and_fetch_are_found_by_what_they_run(make_proxy, pg):
    """SQL EXECUTE of a prepared DELETE and FETCH from a cursor are recorded with the kinds and
    relations of what they run, besides their own kind: a search by table or by kind finds them
    (before, they listed only "execute" / "fetch" and no relation)."""
    proxy = make_proxy(targets=[target("app", pg.port, password=pg.password)])
    store = store_of(proxy)
    t = fresh_table(pg)
    pg.psql(f"INSERT INTO {t} VALUES (1, 'a'), (2, 'b')")
    r = psql(proxy, "-c", f"PREPARE del_{t}(int) AS DELETE FROM {t} WHERE id = $1",
             "-c", f"EXECUTE del_{t}(1)",
             "-c", f"BEGIN; DECLARE cur_{t} CURSOR FOR SELECT v FROM {t}; FETCH 1 FROM cur_{t}; COMMIT",
             check=False)
    assert r.returncode == 0, r.stderr
    assert proxy.stop() == 0
    executes = [h for h in search(store, "--table", t) if h["sql"]["text"].startswith("EXECUTE")]
    assert len(executes) == 1, [h["sql"]["text"] for h in search(store, "--table", t)]
    st = executes[0]["sql"]["statements"][0]
    assert st["kinds"] == ["execute", "delete"] and st["relations"] == [t], st
    assert executes[0]["sql"]["text"] == f"EXECUTE del_{t}(1)"
    assert f"EXECUTE del_{t}(1)" in [h["sql"]["text"] for h in search(store, "--kind", "delete", "--table", t)]
    fetches = [h for h in search(store, "--table", t) if "FETCH" in h["sql"]["text"]]
    assert len(fetches) == 1
    kinds = [k for one in fetches[0]["sql"]["statements"] for k in one["kinds"]]
    assert "fetch" in kinds and "select" in kinds, fetches[0]["sql"]


def test_execute_and_fetch_sent_over_the_extended_protocol_are_found_by_what_they_run(make_proxy, pg):
    """The same over the extended protocol (psycopg binary cursors, server-side cursors: JDBC and
    pgx send everything so): they were recorded with kind execute/fetch only, no table or tag, so
    a search by table missed an UPDATE of a pii column (found by adversarial testing)."""
    proxy = make_proxy(targets=[target("app", pg.port, password=pg.password)])
    store = store_of(proxy)
    t = fresh_table(pg)
    pg.psql(f"INSERT INTO {t} VALUES (1, 'a'), (2, 'b')")
    with connect(proxy, autocommit=True) as c:
        c.execute(f"PREPARE upd_{t} AS UPDATE {t} SET v = $1 WHERE id = $2")
        c.cursor(binary=True).execute(f"EXECUTE upd_{t}('x', 1)")
    with connect(proxy) as c:
        with c.cursor(name=f"sc_{t}") as cur:
            cur.execute(f"SELECT v FROM {t}")
            assert len(cur.fetchmany(1)) == 1
    assert proxy.stop() == 0
    texts = [h["sql"]["text"] for h in search(store, "--table", t, "--kind", "update")]
    assert f"EXECUTE upd_{t}('x', 1)" in texts, texts
    fetches = [h for h in search(store, "--table", t) if h["sql"]["text"].startswith("FETCH")]
    assert fetches, [h["sql"]["text"] for h in search(store, "--table", t)]
    kinds = [k for one in fetches[0]["sql"]["statements"] for k in one["kinds"]]
    assert "fetch" in kinds and "select" in kinds, fetches[0]["sql"]
    assert fetches[0]["sql"]["statements"][0]["relations"] == [t], fetches[0]["sql"]


def test_a_sql_cursor_read_with_a_protocol_execute_is_found_by_what_it_reads(make_proxy, pg):
    """DECLARE c CURSOR FOR SELECT ... then a protocol Execute of "c" (a cursor is a portal): its
    record said "<portal "c" not bound in this session>", with no tables or kinds, so a search by
    table missed it (found by differential testing)."""
    import struct
    import pgwire
    from conftest import USERS
    proxy = make_proxy(targets=[target("app", pg.port, password=pg.password)])
    t = fresh_table(pg)
    pg.psql(f"INSERT INTO {t} VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    s = pgwire.connect(proxy.port, "alice", USERS["alice"])
    s.send(pgwire.query(f"BEGIN; DECLARE cur_{t} CURSOR FOR SELECT v FROM {t}"))
    s.until_ready()
    name = f"cur_{t}".encode()
    s.send(pgwire.message(b"E", name + b"\0" + struct.pack("!I", 2)) + pgwire.message(b"S"))
    got = s.until_ready()
    assert [m[0] for m in got] == [b"D", b"D", b"s", b"Z"], got
    s.send(pgwire.query("COMMIT"))
    s.until_ready()
    # A protocol portal of the same name bound earlier, closed by a SQL CLOSE, does not stand in
    # for the cursor (found by adversarial testing: recorded as the harmless SELECT it had bound).
    s.send(pgwire.query("BEGIN"))
    s.until_ready()
    s.send(pgwire.message(b"P", b"\0SELECT 42 AS harmless\0" + struct.pack("!H", 0)) +
           pgwire.message(b"B", b"stale_" + t.encode() + b"\0\0" + struct.pack("!HHH", 0, 0, 0)) + pgwire.message(b"S"))
    s.until_ready()
    s.send(pgwire.query(f"CLOSE stale_{t}"))
    s.until_ready()
    s.send(pgwire.query(f"DECLARE stale_{t} CURSOR FOR SELECT v FROM {t}"))
    s.until_ready()
    s.send(pgwire.message(b"E", f"stale_{t}".encode() + b"\0" + struct.pack("!I", 0)) + pgwire.message(b"S"))
    got = s.until_ready()
    assert [m[0] for m in got].count(b"D") == 3, got
    s.send(pgwire.query("COMMIT"))
    s.until_ready()
    s.close()
    assert proxy.stop() == 0
    store = store_of(proxy)
    stale = [h for h in search(store, "--table", t) if h["sql"]["text"] == f"FETCH (protocol Execute) stale_{t}"]
    assert len(stale) == 1 and stale[0]["rows"] == 3, [h["sql"]["text"] for h in search(store)]
    hits = [h for h in search(store, "--table", t) if h["sql"]["text"] == f"FETCH (protocol Execute) cur_{t}"]
    assert len(hits) == 1, [h["sql"]["text"] for h in search(store)]
    kinds = [k for one in hits[0]["sql"]["statements"] for k in one["kinds"]]
    assert "fetch" in kinds and "select" in kinds, hits[0]["sql"]
    assert hits[0]["rows"] == 2 and hits[0]["sql"]["decision"]["action"] == "allow", hits[0]


@pytest.mark.parametrize("durability", ["required", "buffered"])
def test_kill_9_under_load_keeps_the_chain_and_the_records_clients_saw(make_proxy, pg, durability, tmp_path):
    t = fresh_table(pg, "v text PRIMARY KEY")
    key = tmp_path / "checkpoint.key"
    assert audit_cli("keygen", "--out", key).returncode == 0
    proxy = make_proxy(audit={"durability": durability, "node": "k9",
                              "checkpoint": {"key_file": str(key), "interval": "1h"}})
    store = store_of(proxy)
    loaders = [Loader(proxy, t, f"{durability}-c{i}") for i in range(CLIENTS)]
    for ld in loaders:
        ld.start()
    for ld in loaders:
        assert ld.connected.wait(15) and ld.error is None, ld.error
    wait_for(lambda: all(len(ld.done) >= 25 for ld in loaders), timeout=30, what="every client to finish 25 inserts")
    proxy.proc.send_signal(signal.SIGKILL)
    proxy.proc.wait(10)
    for ld in loaders:
        ld.join(15)
        assert not ld.is_alive()

    # The store as the crash left it: intact; its unclean end is a note, an error only when the
    # verifier is told the proxy stopped cleanly.
    v = verify(store, "--key", key)
    assert v.returncode == 0, v.stdout + v.stderr
    assert "intact" in v.stdout and "clean shutdown" not in v.stdout, v.stdout
    # Signed from its start (a checkpoint right after the Start record); the rest is not covered.
    assert "record(s) after the last checkpoint (seq 2)" in v.stdout, v.stdout
    v = verify(store, "--key", key, "--expect-stopped")
    assert v.returncode == 1 and tamper_line(v.stdout)[1] == "truncated", v.stdout
    head_before = db_rows(store, "SELECT max(seq) AS s FROM audit_records")[0]["s"]

    # Acknowledged records not yet moved into the store are in the journal; the restarted proxy
    # stores them first, then continues the same chain.
    proxy.start()
    with connect(proxy, autocommit=True) as c:
        c.execute(f"INSERT INTO {t} VALUES ('{durability}-after-restart')")
    wait_for(lambda: f"{durability}-after-restart" in recorded_values(store, t), timeout=10,
             what="the record after the restart")

    recorded = recorded_values(store, t)
    assert len(recorded) == len(set(recorded)), "a statement was recorded twice"
    in_table = {r for r in pg.psql(f"SELECT v FROM {t}").splitlines()}
    completed = [v for ld in loaders for v in ld.done]
    assert set(completed) <= in_table
    lost = [v for v in completed if v not in set(recorded)]
    print(f"\n{durability}: {len(completed)} inserts completed, {len(recorded)} recorded, "
          f"{len(lost)} completed but not recorded, {len(in_table - set(recorded))} rows in the table unrecorded")
    if durability == "required":
        # The guarantee: a statement runs only once its record is durable (journaled).
        assert lost == [], lost[:10]
        assert in_table <= set(recorded), sorted(in_table - set(recorded))[:10]
    else:
        # Buffered promises nothing for records still queued in memory at SIGKILL. What holds: each
        # session's records are stored in order with nothing skipped (a prefix of what it sent).
        for ld in loaders:
            sent = ld.done + ([ld.in_flight] if ld.in_flight else [])
            mine = [v for v in recorded if v.startswith(ld.name + "-")]
            assert mine == sent[:len(mine)], (ld.name, mine[-3:], sent[len(mine) - 3:len(mine) + 3])

    starts = db_rows(store, "SELECT seq FROM audit_records WHERE type = 'start' ORDER BY seq")
    assert len(starts) == 2 and starts[1]["seq"] > head_before, (starts, head_before)
    v = verify(store, "--key", key)
    assert v.returncode == 0 and "intact: records 1.." in v.stdout, v.stdout + v.stderr
    assert proxy.stop() == 0
    # A clean stop after the crash: Stop and a signed checkpoint covering it end the trail.
    v = verify(store, "--key", key, "--expect-stopped")
    assert v.returncode == 0 and "ends with a clean shutdown" in v.stdout, v.stdout + v.stderr


# ---- 3. a full disk under the store and the spool --------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs. Listed before make_proxy in a test, so it is unmounted after the proxy is gone."""
    d = tmp_path / "small-disk"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"cannot mount a 2 MiB tmpfs at {d} (the disk-full test needs root and CAP_SYS_ADMIN): "
                    f"{r.stderr.strip()}")
    try:
        yield d
    finally:
        if subprocess.run(["umount", str(d)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(d)], capture_output=True)


def fill(path: Path) -> int:
    """Writes `path` until the file system is full; returns the bytes written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    total, chunk = 0, b"\0" * 65536
    try:
        while True:
            try:
                n = os.write(fd, chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                break
            total += n
    finally:
        os.close(fd)
    return total


def test_full_disk_refuses_statements_and_recovers(small_disk, make_proxy, pg):
    store = small_disk / "audit.db"
    proxy = make_proxy(audit={"durability": "required", "node": "full",
                              "sinks": [{"type": "sqlite", "path": str(store)}],
                              "spool": {"dir": str(small_disk / "spool")}})
    a = connect(proxy, autocommit=True)
    b = connect(proxy, autocommit=True)
    try:
        assert a.execute("SELECT 'before'").fetchone() == ("before",)
        assert b.execute("SELECT 'before'").fetchone() == ("before",)
        filler = small_disk / "filler"
        assert fill(filler) > 0
        # A few small journal writes may still fit the file's last page; the first write that
        # needs a new page (the journal's, or SQLite's in the store thread) fails, and from then on
        # statements are refused.
        ran_while_full = []

        def refused(c, tag: str):
            try:
                c.execute(f"SELECT 'while full {tag}'")
                ran_while_full.append(tag)
                return None
            except psycopg.Error as e:
                return e
        err = wait_for(lambda: refused(a, "a"), timeout=10, interval=0.05, what="a statement refused on a full disk")
        msg = str(err)
        assert err.sqlstate == "53100", (err.sqlstate, msg)
        assert "audit" in msg and "statement not run" in msg, msg
        err = wait_for(lambda: refused(b, "b"), timeout=10, interval=0.05, what="the other session refused too")
        assert err.sqlstate == "53100", (err.sqlstate, str(err))
        assert proxy.proc.poll() is None, "the proxy exited on a full disk:\n" + proxy.log()
        # What an alert would watch: the store failing, or records refused outright.
        m = proxy.metrics()
        assert m["gatehouse_audit_sinks_healthy"] == 0 or m["gatehouse_audit_records_refused_total"] > 0, m

        filler.unlink()

        def runs(c) -> bool:
            try:
                return c.execute("SELECT 'after'").fetchone() == ("after",)
            except psycopg.Error:
                return False
        wait_for(lambda: runs(a), timeout=10, interval=0.2, what="the session to run statements again")
        assert runs(b)
        wait_for(lambda: proxy.metrics()["gatehouse_audit_sinks_healthy"] == 1, timeout=10, what="sinks healthy")
        wait_for(lambda: proxy.metrics()["gatehouse_audit_unstored_records"] == 0, timeout=10,
                 what="the store caught up with the chain head")
        with connect(proxy, autocommit=True) as c:
            assert c.execute("SELECT 'new session'").fetchone() == ("new session",)
        assert proxy.proc.poll() is None
    finally:
        a.close()
        b.close()
    v = verify(store)
    assert v.returncode == 0 and "intact" in v.stdout, v.stdout + v.stderr
    def texts() -> list[str]:
        return [r["text"] for r in db_rows(store, "SELECT text FROM audit_records WHERE type = 'statement' ORDER BY seq")]
    wait_for(lambda: "SELECT 'new session'" in texts(), timeout=10, what="the last records in the store")
    texts = texts()
    assert texts.count("SELECT 'after'") >= 2
    # What ran while the disk filled up is recorded; what was refused either could not be recorded
    # at all or is recorded with its refusal, never as having run.
    for tag in ran_while_full:
        assert f"SELECT 'while full {tag}'" in texts
    # A statement's outcome is in its own record, or (recorded before it ran) in a Result record.
    outcomes = db_rows(store, "SELECT COALESCE(r.outcome, s.outcome) AS outcome, COALESCE(r.sqlstate, s.sqlstate) "
                              "AS sqlstate FROM audit_records s LEFT JOIN audit_records r ON "
                              "r.session = s.session AND r.statement = s.statement AND r.type = 'result' "
                              "WHERE s.type = 'statement' AND s.text LIKE 'SELECT ''while full%' "
                              "AND COALESCE(r.outcome, s.outcome) IS NOT NULL")
    assert sum(1 for o in outcomes if o["outcome"] == "ok") <= len(ran_while_full), outcomes
    assert all(o["outcome"] == "ok" or o["sqlstate"] == "53100" for o in outcomes), outcomes
    assert proxy.stop() == 0
    assert verify(store).returncode == 0


def test_client_text_cannot_forge_log_lines_or_reach_a_terminal(make_proxy):
    """A user name is the client's to choose: with a newline it must not start a log line of its
    own, and an ESC sequence must not reach the log reader's or the auditor's terminal raw."""
    from pgwire import startup_error
    proxy = make_proxy(audit={"node": "esc"})
    forged = "mallory\n2026-12-05T09:40:00.000 info  session 999: admin connected\x1b[2J\x1b[31m"
    fields = startup_error(proxy.port, forged, "whatever")
    assert fields["C"] == "28P01", fields
    assert proxy.stop() == 0
    log = proxy.log_path.read_text(errors="replace")
    assert not any(line.startswith("2026-12-05T09:40:00.000 info  session 999") for line in log.splitlines()), log[-2000:]
    assert "\x1b" not in log and "\\x1b[2J" in log, log[-2000:]
    store = store_of(proxy)
    r = audit_cli("search", "--store", store, "--type", "connect_failed")
    assert r.returncode == 0 and "mallory" in r.stdout, r.stdout + r.stderr
    assert "\x1b" not in r.stdout and "\n2026-12-05T09:40" not in r.stdout, r.stdout


# ---- 4. tampering with a store the proxy wrote -----------------------------------------------

def _tamper_store(make_proxy, tmp_path, **layout):
    """A stopped proxy's store of 8 statements, signed; its log's last checkpoint head."""
    key = tmp_path / "checkpoint.key"
    r = audit_cli("keygen", "--out", key)
    assert r.returncode == 0 and key.exists(), r.stdout + r.stderr
    proxy = make_proxy(audit={"node": "tamper", "checkpoint": {"key_file": str(key), "interval": "1h"}, **layout})
    store = store_of(proxy)
    with connect(proxy, autocommit=True) as c:
        for i in range(8):
            c.execute(f"SELECT 'tamper-{i}'")
    assert proxy.stop() == 0
    heads = re.findall(r"audit checkpoint: node=tamper seq=(\d+) hash=([0-9a-f]{64})", proxy.log())
    assert heads, proxy.log()
    return store, key, f"{heads[-1][0]}:{heads[-1][1]}", int(heads[-1][0])


def _attacked_copy(store: Path, tmp_path: Path, name: str) -> Path:
    """A copy of the store for one attack."""
    p = tmp_path / f"{name}.db"
    shutil.copy(store, p)
    return p


def _caught(p: Path, key: Path, seq: int, kind: str, *extra: str) -> None:
    """verify with the key finds the attack on p, at seq, as kind."""
    r = verify(p, "--key", key, *extra)
    assert r.returncode == 1, r.stdout + r.stderr
    assert tamper_line(r.stdout) == (seq, kind), r.stdout


def test_verify_catches_tampering_with_a_store_of_blocks(make_proxy, tmp_path):
    """The default layout: records in compressed blocks. An attacker who knows the format decodes
    a block, changes its records and writes it back with columns that agree."""
    store, key, head, head_seq = _tamper_store(make_proxy, tmp_path)
    assert audit_store.is_blocks(store)
    ok = verify(store, "--key", key, "--expect-head", head, "--expect-stopped")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    lines = audit_store.block_lines(store)
    first = json.loads(audit_store.line_parts(lines[0])[1])["seq"]
    k = next(json.loads(audit_store.line_parts(x)[1])["seq"] for x in lines if "SELECT 'tamper-3'" in x)
    at = k - first

    def attacked(name: str, new_lines: list[str] | None = None) -> Path:
        p = _attacked_copy(store, tmp_path, name)
        if new_lines is not None:
            audit_store.write_block_lines(p, new_lines)
        return p

    def caught(p: Path, seq: int, kind: str, *extra: str) -> None:
        _caught(p, key, seq, kind, *extra)

    # Rewritten as it was: intact (the attack helpers themselves change nothing).
    assert verify(attacked("same", lines), "--key", key, "--expect-head", head).returncode == 0

    edited = list(lines)
    edited[at] = edited[at].replace("tamper-3", "tamper-X")
    caught(attacked("edited", edited), k, "edited body")

    caught(attacked("deleted", lines[:at] + lines[at + 1:]), k, "deleted")

    swapped = list(lines)
    swapped[at], swapped[at + 1] = swapped[at + 1], swapped[at]
    caught(attacked("swapped", swapped), k, "reordered")

    # Inserted: a forged record k that links to record k-1 and hashes correctly, before the real one.
    h, body = audit_store.line_parts(lines[at])
    fbody = body.replace("tamper-3", "tamper-9")
    forged = audit_store.make_line(hashlib.sha256(bytes.fromhex(json.loads(body)["prev"]) + fbody.encode()).hexdigest(),
                                   fbody)
    caught(attacked("inserted", lines[:at] + [forged] + lines[at:]), k, "inserted")

    # Truncated: consistent on its own; the anchor from the log catches it.
    p = attacked("truncated", lines[:at + 1])
    r = verify(p, "--key", key)
    assert r.returncode == 0 and "note:" in r.stdout, r.stdout
    caught(p, k + 1, "truncated", "--expect-head", head)
    assert head_seq > k + 1

    # An edit with the chain recomputed from there on: the next checkpoint covers another hash.
    p = attacked("rechained", audit_store.rechain(edited, at))
    r = verify(p, "--key", key)
    assert r.returncode == 1 and tamper_line(r.stdout)[1] == "checkpoint does not match the chain", r.stdout

    # The block's own columns: searches skip blocks by their time range, so an edit of it alone
    # is found, and so is an edited count or last hash.
    for col, value in (("min_time_us", "min_time_us + 100000000000"), ("max_time_us", "0"), ("records", "records + 1"),
                       ("last_hash", "'" + "0" * 64 + "'")):
        p = attacked(f"col-{col}")
        sqlite_cli(p, f"UPDATE audit_blocks SET {col} = {value} WHERE first_seq = (SELECT max(first_seq) FROM audit_blocks)")
        r = verify(p, "--key", key)
        assert r.returncode == 1 and "edited column" in r.stdout, (col, r.stdout)

    # Bytes of the compressed data changed: the block cannot be read, which is an edit.
    p = attacked("garbled")
    sqlite_cli(p, "UPDATE audit_blocks SET data = substr(data, 1, length(data) - 4) WHERE first_seq = 1")
    r = verify(p, "--key", key)
    assert r.returncode == 1 and "cannot be read" in r.stdout, r.stdout

    # An index rebuilt without one row (its SQL put back): PRAGMA integrity_check finds it.
    p = attacked("index")
    sqlite_cli(p, "DROP INDEX audit_blocks_time; CREATE INDEX audit_blocks_time ON audit_blocks (max_time_us) "
                  "WHERE first_seq <> 1; PRAGMA writable_schema = ON; UPDATE sqlite_schema SET sql = "
                  "'CREATE INDEX audit_blocks_time ON audit_blocks (max_time_us)' WHERE name = 'audit_blocks_time'")
    r = verify(p, "--key", key)
    assert r.returncode == 1 and "edited store structure" in r.stdout, r.stdout

    # The start deleted and a Retention record forged at the end to explain it: only the key tells.
    last = json.loads(audit_store.line_parts(lines[-1])[1])
    fields = {"anchor": json.loads(audit_store.line_parts(lines[at])[1])["prev"], "pruned_through": str(k - 1),
              "sink": "sqlite:x"}
    fbody = audit_store.canonical({"fields": fields, "node": "tamper", "prev": audit_store.line_parts(lines[-1])[0],
                                   "seq": last["seq"] + 1, "time": last["time"], "time_us": last["time_us"],
                                   "type": "retention", "v": 1})
    fline = audit_store.make_line(hashlib.sha256(bytes.fromhex(audit_store.line_parts(lines[-1])[0]) + fbody.encode())
                                  .hexdigest(), fbody)
    p = attacked("forged-retention", lines[at:] + [fline])
    assert verify(p).returncode == 0  # without the key nothing is signed: consistent, as documented
    caught(p, k - 1, "deleted", "--expect-head", head)


def test_verify_catches_tampering_with_a_proxy_written_store(make_proxy, tmp_path):
    """The rows layout (`layout: rows`, and stores written before blocks): one row per record."""
    store, key, head, head_seq = _tamper_store(make_proxy, tmp_path, **ROWS_LAYOUT)
    assert not audit_store.is_blocks(store)

    ok = verify(store, "--key", key, "--expect-head", head, "--expect-stopped")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ends with a clean shutdown" in ok.stdout and "signature(s) verified" in ok.stdout, ok.stdout
    # The key's algorithm given wrong is a usage error (exit 2) that says which one signed the
    # trail, not a tampered trail (found by adversarial testing).
    wrong = verify(store, "--key", key, "--algorithm", "hmac-sha256")
    assert wrong.returncode == 2 and "signed with ed25519" in wrong.stderr, wrong.stdout + wrong.stderr

    k = db_rows(store, "SELECT seq FROM audit_records WHERE text = ?", ("SELECT 'tamper-3'",))[0]["seq"]

    def attacked(name: str) -> Path:
        return _attacked_copy(store, tmp_path, name)

    def caught(p: Path, seq: int, kind: str, *extra: str) -> None:
        _caught(p, key, seq, kind, *extra)

    p = attacked("edited")
    sqlite_cli(p, f"UPDATE audit_records SET body = replace(body, 'tamper-3', 'tamper-X') WHERE seq = {k}")
    caught(p, k, "edited body")

    p = attacked("deleted")
    sqlite_cli(p, f"DELETE FROM audit_records WHERE seq = {k}")
    caught(p, k, "deleted")

    p = attacked("swapped")
    sqlite_cli(p, f"UPDATE audit_records SET seq = 1000000 WHERE seq = {k};"
                  f"UPDATE audit_records SET seq = {k} WHERE seq = {k + 1};"
                  f"UPDATE audit_records SET seq = {k + 1} WHERE seq = 1000000")
    caught(p, k, "reordered")

    # Inserted: a forged record k that links to record k-1 and hashes correctly, columns matching
    # its body, with the real records moved up by one.
    p = attacked("inserted")
    orig = db_rows(p, "SELECT * FROM audit_records WHERE seq = ?", (k,))[0]
    forged = dict(orig, body=orig["body"].replace("tamper-3", "tamper-9"),
                  text=orig["text"].replace("tamper-3", "tamper-9"))
    forged["hash"] = hashlib.sha256(bytes.fromhex(forged["prev"]) + forged["body"].encode()).hexdigest()
    db = sqlite3.connect(p)
    with db:
        db.execute("UPDATE audit_records SET seq = seq + 1000000 WHERE seq >= ?", (k,))
        db.execute("UPDATE audit_records SET seq = seq - 999999 WHERE seq >= 1000000")
        cols = list(forged)
        db.execute(f"INSERT INTO audit_records ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                   [forged[c] for c in cols])
    db.close()
    caught(p, k, "inserted")

    # Truncated: the tail cut off. Consistent on its own; the anchor from the log catches it.
    p = attacked("truncated")
    sqlite_cli(p, f"DELETE FROM audit_records WHERE seq > {k}")
    r = verify(p, "--key", key)
    assert r.returncode == 0 and "note:" in r.stdout, r.stdout
    caught(p, k + 1, "truncated", "--expect-head", head)
    assert head_seq > k + 1

    # The same bytes stored as a BLOB: searches compare types, so the record would drop out of
    # `--outcome`, `--type`, `--decision` and `--target` searches (found by adversarial testing).
    for col in ("outcome", "type", "decision", "target", "subject"):
        p = attacked(f"blob-{col}")
        sqlite_cli(p, f"UPDATE audit_records SET {col} = CAST({col} AS BLOB) WHERE seq = {k}")
        caught(p, k, "edited column")
        r = verify(p, "--key", key)
        assert f"the {col} column of record {k}" in r.stdout, r.stdout

    # An index rebuilt without one row (its SQL put back as it was): searches over the time index
    # miss the record, PRAGMA integrity_check does not.
    p = attacked("index")
    sqlite_cli(p, f"DROP INDEX audit_records_time; CREATE INDEX audit_records_time ON audit_records (time_us) "
                  f"WHERE seq <> {k}; PRAGMA writable_schema = ON; UPDATE sqlite_schema SET sql = "
                  f"'CREATE INDEX audit_records_time ON audit_records (time_us)' WHERE name = 'audit_records_time'")
    r = verify(p, "--key", key)
    assert r.returncode == 1 and "edited store structure" in r.stdout, r.stdout

    # The start deleted and a Retention record forged at the end to explain it: the hash chain is
    # intact and the forged record is not signed; with the key, a Retention record must be covered
    # by a signed checkpoint of its own run (found by adversarial testing).
    p = attacked("forged-retention")
    db = sqlite3.connect(p)
    with db:
        first_kept = k
        anchor = db.execute("SELECT prev FROM audit_records WHERE seq = ?", (first_kept,)).fetchone()[0]
        last = db.execute("SELECT * FROM audit_records ORDER BY seq DESC LIMIT 1").fetchone()
        names = [d[0] for d in db.execute("SELECT * FROM audit_records LIMIT 1").description]
        last = dict(zip(names, last))
        db.execute("DELETE FROM audit_records WHERE seq < ?", (first_kept,))
        body = json.loads(last["body"])
        forged = {"fields": {"anchor": anchor, "pruned_through": str(first_kept - 1), "sink": "sqlite:x"},
                  "node": "tamper", "prev": last["hash"], "seq": last["seq"] + 1, "time": body["time"],
                  "time_us": body["time_us"], "type": "retention", "v": 1}
        fbody = json.dumps(forged, sort_keys=True, separators=(",", ":"))
        fhash = hashlib.sha256(bytes.fromhex(last["hash"]) + fbody.encode()).hexdigest()
        row = {n: ("" if isinstance(last[n], str) else -1) for n in names}
        row.update(seq=last["seq"] + 1, node="tamper", prev=last["hash"], hash=fhash, body=fbody, time=body["time"],
                   time_us=body["time_us"], type="retention", session=0, statement=0)
        db.execute(f"INSERT INTO audit_records ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                   [row[n] for n in names])
    db.close()
    assert verify(p).returncode == 0  # without the key nothing is signed: consistent, as documented
    caught(p, first_kept - 1, "deleted", "--expect-head", head)


# ---- 5. retention ------------------------------------------------------------------------------

def test_retention_prunes_and_the_chain_still_verifies(make_proxy, tmp_path):
    key = tmp_path / "checkpoint.key"
    assert audit_cli("keygen", "--out", key).returncode == 0
    cfg = {"node": "ret", "retention": {"max_records": 50}, "checkpoint": {"key_file": str(key), "interval": "1h"}}
    proxy = make_proxy(audit=cfg)
    store = store_of(proxy)
    with connect(proxy, autocommit=True) as c:
        for i in range(120):
            c.execute(f"SELECT 'retention-{i}'")
            if i % 10 == 9:
                time.sleep(0.1)  # a store flush: blocks of about 10 records (retention prunes whole blocks)
    assert proxy.stop() == 0
    before = db_rows(store, "SELECT min(seq) AS lo, max(seq) AS hi FROM audit_records")[0]
    assert before["lo"] == 1 and before["hi"] > 120, before  # a record per statement, and start, connect, ...

    # Retention runs when the proxy starts (and hourly after that).
    proxy.start()

    def retention():
        return db_rows(store, "SELECT body FROM audit_records WHERE type = 'retention'")
    rec = wait_for(retention, timeout=5, what="the retention record")
    fields = json.loads(rec[0]["body"])["fields"]
    first = db_rows(store, "SELECT seq, prev FROM audit_records ORDER BY seq LIMIT 1")[0]
    assert int(fields["pruned_through"]) + 1 == first["seq"] and fields["anchor"] == first["prev"], (fields, first)
    assert first["seq"] > 60
    # the proxy signs a checkpoint right after its Retention record (the interval is an hour)
    ret_seq = db_rows(store, "SELECT seq FROM audit_records WHERE type = 'retention'")[0]["seq"]
    wait_for(lambda: db_rows(store, "SELECT seq FROM audit_records WHERE type = 'checkpoint' AND seq > ?", (ret_seq,)),
             timeout=5, what="a checkpoint after the retention record")
    v = verify(store, "--key", key)
    assert v.returncode == 0, v.stdout + v.stderr
    assert f"intact: records {first['seq']}.." in v.stdout, v.stdout
    assert proxy.stop() == 0
    assert verify(store, "--key", key, "--expect-stopped").returncode == 0
    # Deleting one more record at the start than the Retention record accounts for is caught.
    audit_store.write_block_lines(store, audit_store.block_lines(store)[1:])
    r = verify(store)
    assert r.returncode == 1 and tamper_line(r.stdout)[1] == "deleted", r.stdout


# ---- 6. the admin API: search, pages, and who read the trail ------------------------------------

def test_admin_api_searches_in_pages_and_is_itself_audited(make_proxy, pg, oidc):
    import urllib.error
    import urllib.request

    t = fresh_table(pg)
    # Reading the trail takes an auditor's (or admin's) bearer token; test_admin_api.py has the
    # whole authorization matrix.
    proxy = make_proxy(audit={"node": "api"}, admin={"roles": {"auditor": ["compliance"]}},
                       oidc={"allow_loopback_plaintext": True,
                             "issuers": [{"issuer": oidc.issuer, "audience": ["gatehouse", "gatehouse-cli"]}]})
    token = oidc.mint(oidc.standard_claims(sub="carol", email="carol@example.com", groups=["compliance"],
                                           lifetime=1800))
    with connect(proxy, autocommit=True) as c:
        for i in range(5):
            c.execute(f"INSERT INTO {t} VALUES ({i}, 'api-{i}')")
    base = f"http://127.0.0.1:{proxy.admin_port}/api/v1/audit"

    def get(query: str) -> tuple[int, dict]:
        req = urllib.request.Request(f"{base}?{query}", headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def inserts(page: dict) -> list[str]:
        texts = [r.get("sql", {}).get("text", "") for r in page["records"]]
        return [x for x in texts if f"INSERT INTO {t}" in x]

    wait_for(lambda: len(inserts(get(f"table={t}&limit=100")[1])) == 5, timeout=10, what="the records via the API")
    assert len(inserts(get(f"table=public.{t}&limit=100")[1])) == 5  # the schema the name resolves to
    status, first = get(f"table={t}&limit=2")
    assert status == 200 and len(first["records"]) == 2 and first.get("next_cursor"), first
    status, second = get(f"table={t}&limit=2&cursor={first['next_cursor']}")
    assert status == 200 and len(second["records"]) == 2
    assert not set(map(json.dumps, first["records"])) & set(map(json.dumps, second["records"]))
    assert inserts(first)[0].endswith("'api-4')")  # newest first
    status, bad = get("limit=banana")
    assert status == 400 and "error" in bad, bad
    # A value holding "&identity=bob" stays one value in the record of the call (it read as a
    # filter of its own once decoded; found by adversarial testing).
    status, _ = get("text=zz%26identity%3Dbob&limit=1")
    assert status == 200

    # Reading the audit trail is recorded, bad requests too.
    def admin_records() -> list[dict]:
        return [json.loads(r["body"]) for r in db_rows(store_of(proxy), "SELECT body FROM audit_records WHERE type = 'admin'")]
    wait_for(lambda: len(admin_records()) >= 6, timeout=10, what="admin records")
    recs = admin_records()
    assert all(r["fields"]["action"] == "audit.search" and r["fields"]["client"] == "127.0.0.1"
               and r["fields"]["subject"] == "carol" for r in recs), recs
    assert any(r["fields"]["status"] == "400" and r["outcome"] == "error" for r in recs), recs
    assert any(f"table={t}" in r["fields"]["query"] for r in recs), recs
    assert any(r["fields"]["query"] in ("limit=1&text=zz%26identity%3Dbob", "text=zz%26identity%3Dbob&limit=1")
               for r in recs), [r["fields"]["query"] for r in recs]


def test_audit_metrics_say_what_the_store_holds(make_proxy):
    proxy = make_proxy(audit={"node": "metrics"})
    with connect(proxy, autocommit=True) as c:
        for i in range(20):
            c.execute("SELECT %s::int", (i,))
    store = store_of(proxy)

    def caught_up():
        m = proxy.metrics()
        head = db_rows(store, "SELECT max(seq) AS head FROM audit_records")[0]["head"]
        return m if m["gatehouse_audit_unstored_records"] == 0 and m["gatehouse_audit_chain_head_seq"] == head else None
    m = wait_for(caught_up, timeout=10, what="the store to hold the chain head")
    assert m["gatehouse_audit_stored_seq"] == m["gatehouse_audit_chain_head_seq"]
    assert m["gatehouse_audit_records_journaled_total"] >= 20  # a record per statement
    assert m["gatehouse_audit_records_submitted_total"] >= 20
    assert m["gatehouse_audit_sinks_healthy"] == 1 and m["gatehouse_audit_records_refused_total"] == 0
    assert "gatehouse_audit_journal_bytes" in m and "gatehouse_audit_checkpoints_total" in m


def test_check_names_audit_settings_serve_would_fail_on(tmp_path):
    base = ("targets:\n  - name: app\n    backend: {host: 127.0.0.1, port: 5432}\n"
            "    login: {user: x, password: y}\n")
    cases = {
        "audit:\n  checkpoint: {key_file: missing.key}\n": "audit.checkpoint.key_file",
        "audit:\n  sinks: [{type: sqlite, path: /nonexistent/dir/audit.db}]\n": "audit.sinks[0].path",
        "audit:\n  durability: sometimes\n": "audit.durability",
        "audit:\n  sinks: [{type: kafka}]\n": "audit.sinks[0].type",
    }
    for extra, key in cases.items():
        cfg = tmp_path / "gh.yaml"
        cfg.write_text(base + extra)
        r = subprocess.run([str(BINARY), "check", "--config", str(cfg)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and key in r.stderr, (extra, r.stdout, r.stderr)
    pub = tmp_path / "pub.pem"
    key = tmp_path / "key.pem"
    assert audit_cli("keygen", "--out", key).returncode == 0
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)], check=True, capture_output=True)
    cfg = tmp_path / "gh.yaml"
    cfg.write_text(base + f"audit:\n  checkpoint: {{key_file: {pub}}}\n")
    r = subprocess.run([str(BINARY), "check", "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "public key" in r.stderr, r.stderr
    cfg.write_text(base + f"audit:\n  checkpoint: {{key_file: {key}}}\n")
    r = subprocess.run([str(BINARY), "check", "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def test_long_errors_keep_their_sqlstate(make_proxy):
    """An ErrorResponse longer than the part the proxy keeps (4 KiB) still gives the record its
    SQLSTATE and the start of its message (found by adversarial testing: both were empty)."""
    proxy = make_proxy()
    with connect(proxy, autocommit=True) as c:
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            c.execute("SELECT repeat('x', 9000)::int AS long_error")
    proxy.stop()
    hits = [h for h in search(store_of(proxy)) if "long_error" in h.get("sql", {}).get("text", "")]
    assert len(hits) == 1, hits
    h = hits[0]
    outcome = h.get("result", h)
    assert outcome["outcome"] == "error" and outcome["sqlstate"] == "22P02", h
    assert outcome["message"].startswith("invalid input syntax for type integer"), outcome["message"][:100]


def test_expect_stopped_without_a_checkpoint_key(make_proxy):
    """No checkpoint key: nothing is signed, so --expect-stopped checks that the trail ends with the
    proxy's Stop record (and says what that does not prove) instead of reporting a clean stop as
    truncated (found by adversarial testing)."""
    proxy = make_proxy()
    with connect(proxy, autocommit=True) as c:
        c.execute("SELECT 1")
    assert proxy.stop() == 0
    store = store_of(proxy)
    ok = verify(store, "--expect-stopped")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Stop record" in ok.stdout + ok.stderr
    audit_store.write_block_lines(store, audit_store.block_lines(store)[:-1])
    cut = verify(store, "--expect-stopped")
    assert cut.returncode != 0 and "TAMPERED" in cut.stdout + cut.stderr, cut.stdout + cut.stderr


def test_extended_outcomes_commit_failure_not_run_and_suspended_portals(make_proxy, pg):
    """Found by adversarial testing: an autocommit INSERT whose deferred constraint failed at the
    Sync's commit was recorded ok; Executes skipped after an error said error instead of not_run;
    an Execute suspended after max_rows recorded no row count."""
    import pgwire
    import struct
    from conftest import USERS
    with psycopg.connect(pg.dsn(), autocommit=True) as d:
        d.execute("DROP TABLE IF EXISTS aud_child, aud_parent")
        d.execute("CREATE TABLE aud_parent (id int PRIMARY KEY)")
        d.execute("CREATE TABLE aud_child (id int REFERENCES aud_parent DEFERRABLE INITIALLY DEFERRED)")
    proxy = make_proxy()
    with connect(proxy, autocommit=True) as c:
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            c.execute("INSERT INTO aud_child VALUES (%s) -- commit_fails", (42,))
    s = pgwire.connect(proxy.port, "alice", USERS["alice"])
    try:
        def msg(t, body):
            return pgwire.message(t, body)

        def parse(sql):
            return msg(b"P", b"\0" + sql + b"\0" + struct.pack("!H", 0))
        bind = msg(b"B", b"\0\0" + struct.pack("!HHH", 0, 0, 0))

        def execute(n):
            return msg(b"E", b"\0" + struct.pack("!I", n))
        # An error, then an Execute the backend skips.
        s.send(parse(b"SELECT 1/0 AS skip_first") + bind + execute(0) +
               parse(b"SELECT 1 AS skipped_after") + bind + execute(0) + msg(b"S", b""))
        s.until_ready()
        # A portal read 3 rows at a time.
        s.send(pgwire.query("BEGIN"))
        s.until_ready()
        s.send(parse(b"SELECT g AS suspended FROM generate_series(1, 5) g") + bind + execute(3) + msg(b"S", b""))
        types = [t for t, _ in s.until_ready()]
        assert b"s" in types, types
        s.send(pgwire.query("COMMIT"))
        s.until_ready()
        # An INSERT, then a Parse with a syntax error before Sync: the INSERT is rolled back, and
        # its record does not blame the commit alone.
        s.send(parse(b"INSERT INTO aud_parent VALUES (7) -- before_bad_parse") + bind + execute(0) +
               parse(b"SELEC broken") + msg(b"S", b""))
        s.until_ready()
    finally:
        s.close()
    proxy.stop()
    with psycopg.connect(pg.dsn(), autocommit=True) as d:
        assert d.execute("SELECT count(*) FROM aud_parent WHERE id = 7").fetchone() == (0,)
    outcome = statement_outcomes(store_of(proxy))
    gone = outcome("INSERT INTO aud_parent VALUES (7) -- before_bad_parse")
    assert gone["outcome"] == "error" and gone["sqlstate"] == "42601", gone
    assert "a later message of the batch" in gone["message"] and "rolled back" in gone["message"], gone
    failed = outcome("INSERT INTO aud_child VALUES ($1) -- commit_fails")
    assert failed["outcome"] == "error" and failed["sqlstate"] == "23503", failed
    assert "commit" in failed["message"], failed["message"]
    assert outcome("SELECT 1 AS skipped_after")["outcome"] == "not_run"
    assert outcome("SELECT 1/0 AS skip_first")["outcome"] == "error"
    assert outcome("SELECT g AS suspended FROM generate_series(1, 5) g")["rows"] == 3


def test_pipelined_statements_rolled_back_by_a_later_error_are_not_recorded_as_committed(make_proxy, pg):
    """A psycopg pipeline in autocommit (one Sync) runs as one implicit transaction: when its 6th
    INSERT fails, the 5 before it are rolled back, and their records say so (found by adversarial
    testing: they were recorded ok). A batch with its own BEGIN ... COMMIT keeps what it committed.
    A COMMIT of a failed transaction, answered ROLLBACK, says so."""
    with psycopg.connect(pg.dsn(), autocommit=True) as d:
        d.execute("DROP TABLE IF EXISTS aud_pipe")
        d.execute("CREATE TABLE aud_pipe (id int PRIMARY KEY, tag text)")
        d.execute("INSERT INTO aud_pipe VALUES (5, 'existing')")
    proxy = make_proxy()
    with connect(proxy, autocommit=True) as c:
        with pytest.raises(psycopg.errors.UniqueViolation):
            with c.pipeline():
                for i in range(10):
                    c.execute("INSERT INTO aud_pipe VALUES (%s, %s)", (i, f"implicit-{i}"))
        with pytest.raises(psycopg.errors.UniqueViolation):
            with c.pipeline():
                c.execute("BEGIN")
                c.execute("INSERT INTO aud_pipe VALUES (%s, %s)", (100, "explicit"))
                c.execute("COMMIT")
                c.execute("INSERT INTO aud_pipe VALUES (%s, %s)", (5, "dup"))
    with psycopg.connect(pg.dsn(), autocommit=True) as d:
        assert d.execute("SELECT id FROM aud_pipe ORDER BY id").fetchall() == [(5,), (100,)]
    with connect(proxy, autocommit=True) as c:
        c.execute("BEGIN")
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("SELECT 1/0 AS fail_tx")
        psycopg.ClientCursor(c).execute("COMMIT /* of a failed tx */")
        c.execute("COMMIT /* extended */")  # no transaction: a warning, and COMMIT
        # AND CHAIN: rolled back too, and a new block opened (it was recorded as a plain ok)
        c.execute("BEGIN")
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("SELECT 1/0 AS fail_chained_tx")
        psycopg.ClientCursor(c).execute("COMMIT AND CHAIN /* of a failed tx */")
        c.execute("ROLLBACK")
    proxy.stop()
    commits = {h["sql"]["text"]: h.get("result", h) for h in search(store_of(proxy)) if h.get("type") == "statement"
               and h.get("sql", {}).get("text", "").startswith("COMMIT")}
    # COMMIT of the failed transaction answered ROLLBACK
    assert "rolled it back" in commits["COMMIT /* of a failed tx */"].get("message", ""), commits
    assert "rolled it back" not in commits["COMMIT /* extended */"].get("message", ""), commits
    assert "rolled it back" in commits["COMMIT AND CHAIN /* of a failed tx */"].get("message", ""), commits
    hits = [h for h in search(store_of(proxy)) if h.get("type") == "statement"
            and h.get("sql", {}).get("text") == "INSERT INTO aud_pipe VALUES ($1, $2)"]
    results = [h.get("result", h) for h in hits]
    by_outcome: dict[str, int] = {}
    for r in results:
        by_outcome[r["outcome"]] = by_outcome.get(r["outcome"], 0) + 1
    # implicit: 5 rolled back (error 23505), 1 failed (error), up to 4 not run (psycopg stops
    # sending the pipeline's statements once it has seen the error); explicit: 1 ok, 1 error
    not_run = by_outcome.pop("not_run", 0)
    assert by_outcome == {"error": 7, "ok": 1} and 1 <= not_run <= 4, (by_outcome, not_run)
    rolled_back = [r for r in results if "rolled back" in r.get("message", "")]
    assert len(rolled_back) == 5 and all(r["sqlstate"] == "23505" for r in rolled_back), rolled_back


def test_a_statement_whose_backend_is_terminated_is_recorded_as_an_error(make_proxy, pg):
    """pg_terminate_backend while a statement runs: the server answers FATAL 57P01 and closes. The
    record says error 57P01 (it did not complete), not unknown."""
    import threading
    proxy = make_proxy(targets=[target("app", pg.port, password=pg.password)])
    with connect(proxy, autocommit=True) as c:
        pid = c.info.backend_pid
        killer = threading.Timer(1.0, lambda: pg.psql(f"SELECT pg_terminate_backend({pid})"))
        killer.start()
        with pytest.raises(psycopg.OperationalError):
            c.execute("SELECT pg_sleep(30) AS terminated_here")
        killer.join()
    assert proxy.stop() == 0
    hits = [h for h in search(store_of(proxy)) if "terminated_here" in h.get("sql", {}).get("text", "")]
    assert len(hits) == 1, hits
    r = hits[0].get("result", hits[0])
    assert r["outcome"] == "error" and r["sqlstate"] == "57P01", r


def test_role_passwords_stay_out_of_the_trail(make_proxy, pg):
    """CREATE/ALTER ROLE ... PASSWORD: the record keeps the statement's normalized text ($n for the
    literal), so the password is in no record, search result or file of the trail (found by
    adversarial testing: auditors could read it)."""
    proxy = make_proxy(targets=[target("app", pg.port, password=pg.password)])
    store = store_of(proxy)
    secrets = ["Hunter2Secret", "Other2Secret", "Third3Secret"]
    try:
        r = psql(proxy, "-c", f"CREATE ROLE gh_pw_role LOGIN PASSWORD '{secrets[0]}'",
                 "-c", f"SELECT 1; ALTER ROLE gh_pw_role WITH PASSWORD '{secrets[1]}' VALID UNTIL 'infinity'",
                 "-c", f"ALTER USER gh_pw_role ENCRYPTED PASSWORD '{secrets[2]}'", check=False)
        assert r.returncode == 0, r.stderr
    finally:
        pg.psql("DROP ROLE IF EXISTS gh_pw_role")
    assert proxy.stop() == 0
    texts = [h["sql"]["text"] for h in search(store) if "gh_pw_role" in h.get("sql", {}).get("text", "")]
    assert len(texts) == 3 and "PASSWORD $" in texts[0] and "SELECT 1; ALTER ROLE" in texts[1], texts
    for f in [store, *store.parent.glob(store.name + "*"), *store.parent.rglob("*.spool/*"),
              *proxy.workdir.glob("*.log")]:
        if f.is_file():
            data = f.read_bytes()
            assert not any(s.encode() in data for s in secrets), f


def test_rows_returned_before_an_error_are_counted(make_proxy, pg):
    """A SELECT that streamed rows and was then cancelled (statement_timeout) or failed: its record
    counts the rows that left the database (no CommandComplete says how many)."""
    proxy = make_proxy(targets=[target("app", pg.port, password=pg.password)])
    with connect(proxy, autocommit=True) as c:
        c.execute("SET statement_timeout = '1s'")
        for prepare in (False, True):
            with pytest.raises(psycopg.errors.QueryCanceled):
                c.execute("SELECT g, pg_sleep(CASE WHEN g = 1000 THEN 30 ELSE 0 END) AS rows_then_cancel "
                          "FROM generate_series(1, 2000) g", prepare=prepare)
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("SELECT 10 / (500 - g) AS rows_then_error FROM generate_series(1, 1000) g")
    assert proxy.stop() == 0
    def result_of(word):
        hits = [h for h in search(store_of(proxy)) if word in h.get("sql", {}).get("text", "")]
        return [h.get("result", h) for h in hits]
    cancelled = result_of("rows_then_cancel")
    assert [(r["outcome"], r["rows"]) for r in cancelled] == [("cancelled", 999)] * 2, cancelled
    failed = result_of("rows_then_error")
    assert [(r["outcome"], r["sqlstate"], r["rows"]) for r in failed] == [("error", "22012", 499)], failed


def test_a_statement_running_when_the_client_leaves_is_recorded_as_it_ended(make_proxy, pg):
    """The client disconnects while its INSERT runs; the server finishes and commits it. Its record
    said error (found by adversarial testing), then unknown; the session now waits for what is
    running when the client's side closes (a half-close must still get its results), so the
    record says how it really ended: ok, one row."""
    import socket
    import pgwire
    from conftest import USERS
    with psycopg.connect(pg.dsn(), autocommit=True) as d:
        d.execute("DROP TABLE IF EXISTS aud_left")
        d.execute("CREATE TABLE aud_left (id int)")
    proxy = make_proxy()
    s = pgwire.connect(proxy.port, "alice", USERS["alice"])
    s.send(pgwire.query("INSERT INTO aud_left SELECT 1 FROM pg_sleep(1) -- client_leaves"))
    time.sleep(0.3)
    s.sock.shutdown(socket.SHUT_RDWR)
    s.close()
    time.sleep(1.5)
    with psycopg.connect(pg.dsn(), autocommit=True) as d:
        assert d.execute("SELECT count(*) FROM aud_left").fetchone() == (1,)
    proxy.stop()
    hits = [h for h in search(store_of(proxy)) if "client_leaves" in h.get("sql", {}).get("text", "")]
    assert len(hits) == 1, hits
    h = hits[0].get("result", hits[0])
    assert h["outcome"] == "ok" and h["rows"] == 1, h


def test_a_query_skipped_after_an_extended_error_ends_and_is_not_run(make_proxy):
    """A simple Query sent inside an extended-protocol batch, after a message that fails and
    before Sync, is skipped by PostgreSQL: no answer at all. The proxy counted a ReadyForQuery
    for it that never came, so the session never went idle (idle timeout, shutdown and a held or
    estimated statement waited forever) and the audit matched later answers to the wrong
    statements. Both orders: the Query already sent when the error comes, and sent after it."""
    import struct
    import pgwire
    from conftest import USERS
    proxy = make_proxy(limits={"idle_timeout": "2s"})
    s = pgwire.connect(proxy.port, "alice", USERS["alice"])
    try:
        def msg(t, body=b""):
            return pgwire.message(t, body)

        def parse(sql):
            return msg(b"P", b"\0" + sql + b"\0" + struct.pack("!H", 0))
        bind = msg(b"B", b"\0\0" + struct.pack("!HHH", 0, 0, 0))
        execute = msg(b"E", b"\0" + struct.pack("!I", 0))
        # The Query is queued behind the failing Execute.
        s.send(parse(b"SELECT 1/0 AS fails_first") + bind + execute + pgwire.query("SELECT 2 AS skipped_queued") +
               parse(b"SELECT 3 AS skipped_execute") + bind + execute + msg(b"S"))
        types = [t for t, _ in s.until_ready()]
        assert types[-2:] == [b"E", b"Z"] and types.count(b"Z") == 1, types  # (1/0 fails at Bind)
        # The Query comes after the error (Parse + Describe + Flush, as asyncpg prepares).
        s.send(parse(b"SELEC 4 AS bad_parse") + msg(b"D", b"S\0") + msg(b"H"))
        t, _ = s.read_message()
        assert t == b"E"
        s.send(pgwire.query("SELECT 5 AS skipped_later") + msg(b"S"))
        types = [t for t, _ in s.until_ready()]
        assert types == [b"Z"], types
        assert s.simple_query("SELECT 6 AS runs_after") == [["6"]]
        # Nothing is running now: the idle timeout ends the session.
        started = time.monotonic()
        err = s.read_error()
        assert err.get("C") == "57P05", err
        assert time.monotonic() - started < 5
    finally:
        s.close()
    proxy.stop()
    outcome = statement_outcomes(store_of(proxy))
    assert outcome("SELECT 1/0 AS fails_first")["outcome"] == "error"
    assert outcome("SELECT 2 AS skipped_queued")["outcome"] == "not_run"
    assert outcome("SELECT 3 AS skipped_execute")["outcome"] == "not_run"
    assert outcome("SELECT 5 AS skipped_later")["outcome"] == "not_run"
    after = outcome("SELECT 6 AS runs_after")
    assert after["outcome"] == "ok" and after["rows"] == 1, after


def test_a_store_deleted_while_running_fails_closed_and_the_gap_shows(make_proxy):
    """Found by adversarial testing: deleting the SQLite store while the proxy ran went unnoticed
    (records went into the unlinked file, statements kept running, the sink stayed healthy), and
    the restarted proxy began a new chain at record 1 that verify called intact."""
    proxy = make_proxy()  # the default store, durability required
    store = store_of(proxy)
    live = connect(proxy, autocommit=True)
    for i in range(20):
        live.execute(f"SELECT {i} AS before_delete")
    for suffix in ("", "-wal", "-shm"):
        Path(str(store) + suffix).unlink(missing_ok=True)

    def refused():
        try:
            live.execute("SELECT 'after delete'")
            return False
        except psycopg.Error as e:
            assert e.sqlstate == "58030", e
            assert "was deleted" in str(e), e
            return True
    wait_for(refused, timeout=10, what="statements refused once the store is gone")
    with pytest.raises(psycopg.OperationalError, match="was deleted"):
        connect(proxy)  # logins too: the target requires every session to be audited
    live.close()
    assert "was deleted while the proxy was writing to it" in proxy.log()
    proxy.stop()

    # Restarted, it writes a new file, continuing the chain: the new store says records are missing.
    proxy.start()
    with connect(proxy, autocommit=True) as c:
        c.execute("SELECT 'after restart'")
    proxy.stop()
    assert "are in no configured store" in proxy.log() or store.exists()
    v = verify(store)
    assert v.returncode != 0 and "deleted" in v.stdout + v.stderr, v.stdout + v.stderr

    # Deleted while stopped: the next start continues after the saved head, and verify says so.
    for suffix in ("", "-wal", "-shm"):
        Path(str(store) + suffix).unlink(missing_ok=True)
    proxy.start()
    with connect(proxy, autocommit=True) as c:
        c.execute("SELECT 'new store'")
    proxy.stop()
    assert "are in no configured store" in proxy.log()
    v = verify(store)
    assert v.returncode != 0 and "deleted" in v.stdout + v.stderr, v.stdout + v.stderr


def test_a_login_given_up_during_scram_is_recorded(make_proxy):
    """A client that sends its startup and closes the connection after the server's SCRAM challenge
    made no record at all (found by adversarial testing); every attempt is one."""
    import pgwire
    proxy = make_proxy()
    for user in ("alice", "mallory\u202e"):
        s = pgwire.Conn(proxy.port)
        s.send(pgwire.startup_packet({"user": user, "database": "app"}))
        t, body = s.read_message()
        assert t == b"R", (t, body)  # AuthenticationSASL
        s.close()
    with connect(proxy, autocommit=True) as c:  # and a login that completes is not one of them
        c.execute("SELECT 1")
    wait_for(lambda: proxy.log().count("closed the connection before its login completed") >= 2, timeout=10,
             what="both abandoned logins in the log")
    proxy.stop()
    failed = [h for h in search(store_of(proxy)) if h["type"] == "connect_failed"]
    assert sorted(h["identity"]["user"] for h in failed) == ["alice", "mallory\u202e"], failed
    for h in failed:
        assert h["outcome"] == "refused" and h["sqlstate"] == "08006", h
        assert "closed the connection before its login completed" in h["message"], h


def _ignore_errors(fn) -> None:
    try:
        fn()
    except Exception:  # the proxy is killed under these clients: their errors are expected
        pass


def test_a_large_statement_running_at_kill_9_gets_an_unknown_outcome(make_proxy):
    """A statement too large for an intent slot is recorded before it runs; its Result record-to-be
    takes a slot instead, so a proxy killed while it runs records it as unknown at the next start
    (found by adversarial testing: it had no outcome at all). Small statements keep theirs."""
    proxy = make_proxy()
    store = store_of(proxy)
    big = "SELECT pg_sleep(30), '" + "z" * 6000 + "' /*bigkill*/"
    small = "SELECT pg_sleep(30) /*smallkill*/"
    threads, conns = [], []
    for sql in (big, small):
        c = connect(proxy, autocommit=True)
        conns.append(c)
        th = threading.Thread(target=lambda c=c, sql=sql: _ignore_errors(lambda: c.execute(sql)), daemon=True)
        th.start()
        threads.append(th)
    wait_for(lambda: len(db_rows(store, "SELECT seq FROM audit_records WHERE text LIKE '%bigkill%'")) == 1,
             timeout=10, what="the large statement's record (written before it runs)")
    time.sleep(0.5)  # the small one is in its intent slot
    proxy.proc.send_signal(signal.SIGKILL)
    proxy.proc.wait(10)
    # The statements end with the killed proxy's connections; only then are their connections
    # closed, from this thread: libpq is not safe on one connection from two threads at once (a
    # close racing an execute aborted the whole test process twice with a double free).
    for th in threads:
        th.join(30)
        assert not th.is_alive(), "a statement did not end with the killed proxy"
    for c in conns:
        _ignore_errors(c.close)
    proxy.start()
    proxy.stop()
    outcome = statement_outcomes(store)
    for sql in (big, small):
        o = outcome(sql)
        assert o["outcome"] == "unknown" and "stopped before this statement ended" in o["message"], o


def test_a_second_process_on_the_same_audit_trail_does_not_start(make_proxy, tmp_path):
    """Found by adversarial testing: a second `gatehouse serve` on the same configuration (a manual
    start beside a service manager's) started, split the connections with the first one, sealed
    the same sequence numbers and left a chain that verify called tampered. Now the audit spool is
    locked by its writer: the second process refuses to start and says why; the first is unharmed."""
    store = tmp_path / "shared-audit.db"
    cfg = make_proxy.config(audit={"sinks": [{"type": "sqlite", "path": str(store)}]})
    first = make_proxy(copy.deepcopy(cfg))
    with connect(first, autocommit=True) as c:
        c.execute("SELECT 'first'")
    second = Gatehouse(copy.deepcopy(cfg), workdir=tmp_path / "second")
    (tmp_path / "second").mkdir()
    with pytest.raises(RuntimeError) as ei:
        second.start()
    assert "another gatehouse process" in str(ei.value) and "audit" in str(ei.value), str(ei.value)
    with connect(first, autocommit=True) as c:
        assert c.execute("SELECT 'still here'").fetchone() == ("still here",)
    assert first.stop() == 0
    r = verify(store)
    assert r.returncode == 0 and "TAMPERED" not in r.stdout, r.stdout + r.stderr


def _recompute_chain_without(store: Path, dropped_type: str) -> None:
    """What someone with write access and no key can do: drop every record of a type, renumber,
    and recompute every prev and hash so the chain is internally consistent again."""
    if audit_store.is_blocks(store):
        lines = [x for x in audit_store.block_lines(store)
                 if json.loads(audit_store.line_parts(x)[1])["type"] != dropped_type]
        audit_store.write_block_lines(store, audit_store.rechain(lines))
        return
    db = sqlite3.connect(store)
    db.row_factory = sqlite3.Row
    rows = [dict(r) for r in db.execute("SELECT * FROM audit_records ORDER BY seq")]
    keep = [r for r in rows if r["type"] != dropped_type]
    db.execute("DELETE FROM audit_records")
    prev, seq = keep[0]["prev"], keep[0]["seq"]
    for r in keep:
        body = json.loads(r["body"])
        body["seq"], body["prev"] = seq, prev
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        h = hashlib.sha256(bytes.fromhex(prev) + text.encode()).hexdigest()
        r.update(seq=seq, prev=prev, hash=h, body=text)
        db.execute(f"INSERT INTO audit_records ({','.join(r)}) VALUES ({','.join('?' * len(r))})", list(r.values()))
        prev, seq = h, seq + 1
    db.commit()
    db.close()


def test_a_store_with_all_its_checkpoints_deleted_fails_verify_with_the_key(make_proxy, tmp_path):
    """Found by adversarial testing: deleting every checkpoint record and recomputing the chain
    (no key needed) passed `verify --key --expect-stopped` as intact with 0 checkpoints. A keyed
    proxy now signs a checkpoint right after its Start record, and verify with a key refuses a
    trail that holds none."""
    key = tmp_path / "checkpoint.key"
    assert audit_cli("keygen", "--out", key).returncode == 0
    proxy = make_proxy(audit={"node": "unsigned", "checkpoint": {"key_file": str(key), "interval": "1h"}})
    store = store_of(proxy)
    with connect(proxy, autocommit=True) as c:
        c.execute("SELECT 'one statement'")
    proxy.proc.kill()  # no shutdown checkpoint: only the one after Start signs this run
    proxy.proc.wait(10)
    ok = verify(store, "--key", key)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 signature(s) verified" in ok.stdout or "signature(s) verified" in ok.stdout, ok.stdout

    attacked = tmp_path / "no-checkpoints.db"
    src = sqlite3.connect(store)
    dst = sqlite3.connect(attacked)
    src.backup(dst)  # with what is still in the WAL (the proxy was killed)
    src.close()
    dst.close()
    _recompute_chain_without(attacked, "checkpoint")
    assert verify(attacked).returncode == 0  # internally consistent: only the key can tell
    for extra in ((), ("--expect-stopped",)):
        r = verify(attacked, "--key", key, *extra)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "no signed checkpoint" in r.stdout, r.stdout


def test_api_calls_refused_before_any_route_are_audited(make_proxy, oidc):
    """Found by adversarial testing: an unknown path or method (404), a body over 64 KiB (413) and
    a percent-encoded path (400) left no admin record, although every /api call is to be recorded,
    refused ones included. They are recorded as api.refused, with who sent them when the bearer
    token checks out."""
    import urllib.error
    import urllib.request
    proxy = make_proxy(audit={"node": "api-refused"}, admin={"roles": {"auditor": ["compliance"]}},
                       oidc={"allow_loopback_plaintext": True,
                             "issuers": [{"issuer": oidc.issuer, "audience": ["gatehouse", "gatehouse-cli"]}]})
    token = oidc.mint(oidc.standard_claims(sub="carol", email="carol@example.com", groups=["compliance"],
                                           lifetime=600))
    base = f"http://127.0.0.1:{proxy.admin_port}"
    calls = [("GET", "/api/v1/nothing-here", None), ("PUT", "/api/v1/approvals", None),
             ("GET", "/api/v1/approvals/x%2Fapprove", None), ("POST", "/api/v1/access-requests", b"{" + b" " * 70000 + b"}")]
    for method, path, body in calls:
        req = urllib.request.Request(base + path, data=body, method=method,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as ei:
            urllib.request.urlopen(req, timeout=10)
        assert ei.value.code in (400, 404, 405, 413), (path, ei.value.code)

    def refused() -> list[dict]:
        return [json.loads(r["body"]) for r in db_rows(store_of(proxy), "SELECT body FROM audit_records WHERE type = 'admin'")
                if json.loads(r["body"])["fields"].get("action") == "api.refused"]
    wait_for(lambda: len(refused()) >= len(calls), timeout=10, what="api.refused records")
    recs = refused()
    assert all(r["fields"]["subject"] == "carol" and r["fields"]["client"] == "127.0.0.1" for r in recs), recs
    statuses = sorted(r["fields"]["status"] for r in recs)
    assert "413" in statuses and "400" in statuses, statuses


def test_a_named_portal_bind_the_server_refuses_leaves_the_open_portal_in_the_record(make_proxy, pg):
    """Found by adversarial testing: a Bind of an open named portal's name fails (42P03) and leaves
    that portal, which ROLLBACK TO makes usable again; its rows were recorded as the failed Bind's
    harmless SELECT."""
    import struct
    import pgwire
    table = fresh_table(pg)
    pg.psql(f"INSERT INTO {table} SELECT g, 'x' FROM generate_series(1, 5) g")
    proxy = make_proxy(targets=[target("app", pg.port, password=pg.password)])
    c = pgwire.connect(proxy.port, "alice", "alice-secret")
    S = pgwire.message(b"S")

    def parse(name: bytes, sql: str) -> bytes:
        return pgwire.message(b"P", name + b"\0" + sql.encode() + b"\0" + struct.pack("!H", 0))

    def bind(portal: bytes, stmt: bytes) -> bytes:
        return pgwire.message(b"B", portal + b"\0" + stmt + b"\0" + struct.pack("!HHH", 0, 0, 0))

    def execute(portal: bytes, rows: int) -> bytes:
        return pgwire.message(b"E", portal + b"\0" + struct.pack("!I", rows))

    try:
        c.simple_query("BEGIN")
        c.send(parse(b"sa", f"UPDATE {table} SET v = 'upd' RETURNING id /*named-portal*/")
               + parse(b"sb", "SELECT 42 AS harmless /*named-portal*/") + S)
        c.until_ready()
        c.send(bind(b"p1", b"sa") + execute(b"p1", 1) + S)
        c.until_ready()
        c.simple_query("SAVEPOINT s")
        c.send(bind(b"p1", b"sb") + execute(b"p1", 0) + S)
        assert any(t == b"E" and pgwire.parse_error_fields(b)["C"] == "42P03" for t, b in c.until_ready())
        c.simple_query("ROLLBACK TO SAVEPOINT s")
        c.send(execute(b"p1", 0) + S)
        rows = [b for t, b in c.until_ready() if t == b"D"]
        assert len(rows) == 4  # the UPDATE's other rows
        c.simple_query("COMMIT")
    finally:
        c.close()
    proxy.stop()
    executes = [h for h in search(store_of(proxy), "--text", "named-portal")
                if h.get("type") == "statement" and h["sql"].get("protocol") == "E"]
    assert executes, executes
    last = max(executes, key=lambda h: h["seq"])
    assert "UPDATE" in last["sql"]["text"] and "update" in last["sql"]["statements"][0]["kinds"], last


def test_executes_rolled_back_by_a_failing_query_before_sync_say_so(make_proxy, pg):
    """An Execute sent with Flush instead of Sync leaves its implicit transaction open; a simple
    Query that follows runs in that same transaction, so when the Query fails the Execute's
    changes are rolled back with it. Its record said ok (a known limit until now). When the Query
    succeeds, it commits them: ok."""
    import struct
    import pgwire
    from conftest import USERS
    table = fresh_table(pg, "id int")
    proxy = make_proxy()
    s = pgwire.connect(proxy.port, "alice", USERS["alice"])
    try:
        def msg(t, body=b""):
            return pgwire.message(t, body)

        def execute_then_flush(sql):
            s.send(msg(b"P", b"\0" + sql + b"\0" + struct.pack("!H", 0)) +
                   msg(b"B", b"\0\0" + struct.pack("!HHH", 0, 0, 0)) +
                   msg(b"E", b"\0" + struct.pack("!I", 0)) + msg(b"H"))
            types = []
            while not types or types[-1] != b"C":
                types.append(s.read_message()[0])
            assert types == [b"1", b"2", b"C"], types
        execute_then_flush(f"INSERT INTO {table} VALUES (1) -- rolled_back_by_query".encode())
        s.send(pgwire.query("SELECT 1/0 AS query_fails"))
        types = [t for t, _ in s.until_ready()]
        assert b"E" in types, types
        execute_then_flush(f"INSERT INTO {table} VALUES (2) -- committed_by_query".encode())
        assert s.simple_query("SELECT 3 AS query_commits") == [["3"]]
    finally:
        s.close()
    with psycopg.connect(pg.dsn(), autocommit=True) as d:
        assert d.execute(f"SELECT id FROM {table} ORDER BY id").fetchall() == [(2,)]
    proxy.stop()
    outcome = statement_outcomes(store_of(proxy))
    gone = outcome(f"INSERT INTO {table} VALUES (1) -- rolled_back_by_query")
    assert gone["outcome"] == "error" and gone["sqlstate"] == "22012", gone
    assert "rolled back" in gone["message"], gone
    assert outcome("SELECT 1/0 AS query_fails")["outcome"] == "error"
    kept = outcome(f"INSERT INTO {table} VALUES (2) -- committed_by_query")
    assert kept["outcome"] == "ok" and kept["rows"] == 1, kept


def test_rows_a_statement_returned_before_its_session_ended_are_counted(make_proxy, pg):
    """The client leaves while a statement streams large rows: the proxy's next write to it fails
    and the session ends with the statement unanswered. Its record's outcome is unknown, and it
    counts the rows that had left the database by then (it said none)."""
    import socket
    import pgwire
    from conftest import USERS
    proxy = make_proxy()
    s = pgwire.connect(proxy.port, "alice", USERS["alice"])
    s.send(pgwire.query("SELECT g, repeat('x', 300000), pg_sleep(0.2) FROM generate_series(1, 50) g -- mid_result"))
    got = 0
    while got < 3:
        t, _ = s.read_message()
        got += t == b"D"
    s.sock.shutdown(socket.SHUT_RDWR)
    s.close()
    time.sleep(1.5)
    proxy.stop()
    hits = [h for h in search(store_of(proxy)) if "mid_result" in h.get("sql", {}).get("text", "")]
    assert len(hits) == 1, hits
    h = hits[0].get("result", hits[0])
    assert h["outcome"] == "unknown", h
    assert h.get("rows") is not None and h["rows"] >= 3, h


def test_csv_output_does_not_hand_a_spreadsheet_a_formula(make_proxy):
    """Any client can put a statement text starting with = in the trail (refused or not); the CSV an
    auditor opens in a spreadsheet must not run it (found by adversarial testing)."""
    proxy = make_proxy()
    psql(proxy, "-c", '=HYPERLINK("http://evil.example/","x")', check=False)
    psql(proxy, "-c", "-- @SUM(1+1)\nSELECT 1", check=False)
    assert proxy.stop() == 0
    r = audit_cli("search", "--store", str(store_of(proxy)), "--type", "statement", "--format", "csv")
    assert r.returncode == 0, r.stderr
    import csv
    import io
    texts = [row["text"] for row in csv.DictReader(io.StringIO(r.stdout))]
    assert "'=HYPERLINK(\"http://evil.example/\",\"x\")" in texts, texts
    assert all(not t or t[0] not in "=+-@\t\r" for t in texts), texts


def _jsonl_proxy(make_proxy, tmp_path: Path, **jsonl) -> tuple[Gatehouse, Path]:
    """A proxy whose audit goes to an SQLite store and to tmp_path/audit.jsonl (with `jsonl` options)."""
    lines = tmp_path / "audit.jsonl"
    proxy = make_proxy(audit={"sinks": [{"type": "sqlite", "path": str(tmp_path / "audit.db")},
                                        {"type": "jsonl", "path": str(lines), **jsonl}]})
    return proxy, lines


def _follow(lines: Path, out) -> subprocess.Popen:
    """`gatehouse audit tail -f` of `lines`, polling every 200 ms, JSON lines into the open file `out`."""
    return subprocess.Popen([str(BINARY), "audit", "tail", "--store", str(lines), "-n", "1", "-f",
                             "--interval", "200", "--format", "jsonl"], stdout=out, stderr=subprocess.STDOUT)


def test_a_rotated_json_lines_file_verifies_with_the_head_of_the_one_before(make_proxy, tmp_path):
    """Moving the JSON-lines file away is the documented rotation; the new file starts mid-chain,
    and verify called that deleted records with no way to say it was a rotation (found by
    adversarial testing). --continues SEQ:HASH, the head verify printed for the earlier file,
    proves the new file's start; a wrong or missing one is still reported."""
    proxy, lines = _jsonl_proxy(make_proxy, tmp_path)
    psql(proxy, "-c", "SELECT 'before rotation'")
    wait_for(lambda: lines.exists() and "before rotation" in lines.read_text(), timeout=10, what="the first lines")
    old = tmp_path / "audit.jsonl.1"
    lines.rename(old)
    psql(proxy, "-c", "SELECT 'after rotation'")
    assert proxy.stop() == 0
    r = verify(old)
    assert r.returncode == 0, r.stdout + r.stderr
    head = re.search(r"head (\d+:[0-9a-f]{64})", r.stdout).group(1)
    assert verify(lines).returncode == 1  # the missing start, without the earlier head
    r = verify(lines, "--continues", head)
    assert r.returncode == 0 and "intact" in r.stdout, r.stdout + r.stderr
    seq, h = head.split(":")
    r = verify(lines, "--continues", f"{int(seq) - 1}:{h}")
    assert r.returncode == 1 and "missing" in r.stdout, r.stdout
    r = verify(lines, "--continues", f"{seq}:{'0' * 64}")
    assert r.returncode == 1 and "does not follow" in r.stdout, r.stdout


def test_tail_follows_a_json_lines_file_across_a_rotation(make_proxy, tmp_path):
    """tail -f printed nothing more once the file was moved away and a new one written at the
    path (it read on at the old file's offset; found by adversarial testing)."""
    proxy, lines = _jsonl_proxy(make_proxy, tmp_path)
    # The file before is much longer than what follows (the old offset lies past the new file's end).
    psql(proxy, *[a for i in range(60) for a in ("-c", f"SELECT 'tail before rotation {i}'")])
    wait_for(lambda: lines.exists() and "tail before rotation 59" in lines.read_text(), timeout=10,
             what="the first lines")
    out = tmp_path / "tail.out"
    with open(out, "w") as f:
        tail = _follow(lines, f)
    try:
        time.sleep(1)
        lines.rename(tmp_path / "audit.jsonl.1")
        for i in range(3):
            psql(proxy, "-c", f"SELECT 'tail after rotation {i}'")
        wait_for(lambda: "tail after rotation 2" in out.read_text(), timeout=10,
                 what="records of the new file in tail -f's output")
    finally:
        tail.terminate()
        tail.wait(10)
        proxy.stop()


def test_a_query_of_only_comments_is_recorded_with_its_text(make_proxy):
    """A Query with no statement in it (only a comment, or semicolons) was recorded with an empty
    text: what the client sent could not be told (found by adversarial testing)."""
    import pgwire
    from conftest import USERS
    proxy = make_proxy()
    s = pgwire.connect(proxy.port, "alice", USERS["alice"])
    try:
        for text in ("-- only a comment /*x2*/", ";;;"):
            s.send(pgwire.query(text))
            s.until_ready()
    finally:
        s.close()
    assert proxy.stop() == 0
    texts = [h["sql"]["text"] for h in search(store_of(proxy)) if h.get("type") == "statement"]
    assert "-- only a comment /*x2*/" in texts and ";;;" in texts, texts


def test_a_json_lines_sink_rotates_at_its_max_size_and_keeps_a_bounded_number_of_files(make_proxy, tmp_path):
    """audit.sinks[].max_size / keep: the file is rotated before a batch would take it past
    max_size, at most `keep` rotated files stay, and each file verifies with --continues and the
    head of the file before it (the store never grows past what the operator chose)."""
    proxy, lines = _jsonl_proxy(make_proxy, tmp_path, max_size="64KiB", keep=3)
    with connect(proxy, autocommit=True) as c:
        for i in range(400):
            c.execute(f"SELECT {i} AS rotating, repeat('x', 200)")
    assert proxy.stop() == 0
    files = sorted(tmp_path.glob("audit.jsonl*"))
    assert [f.name for f in files] == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2", "audit.jsonl.3"], files
    for f in files:
        assert f.stat().st_size <= 64 * 1024, (f, f.stat().st_size)
    # Oldest to newest: each continues the one before.
    head = None
    for f in [tmp_path / "audit.jsonl.3", tmp_path / "audit.jsonl.2", tmp_path / "audit.jsonl.1", lines]:
        r = verify(f, "--continues", head) if head else verify(f)
        if head is None:
            assert r.returncode == 1 and "deleted" in r.stdout, r.stdout  # its start was rotated away
            r = subprocess.run(["tail", "-n", "1", str(f)], capture_output=True, text=True)
            last = json.loads(r.stdout)
            head = f"{last['body']['seq']}:{last['hash']}"
            continue
        assert r.returncode == 0, (f, r.stdout + r.stderr)
        head = re.search(r"head (\d+:[0-9a-f]{64})", r.stdout).group(1)


def test_a_rotating_json_lines_sink_stopped_right_after_a_rotation_goes_on_where_it_was(make_proxy, tmp_path):
    """A process stopped between moving PATH to PATH.1 and writing the new PATH left an empty file:
    the restart read that as an empty chain and wrote every record still in the journal again,
    rotating real files away (found by adversarial testing). It now continues after PATH.1."""
    proxy, lines = _jsonl_proxy(make_proxy, tmp_path, max_size="64KiB", keep=50)
    with connect(proxy, autocommit=True) as c:
        for i in range(150):
            c.execute(f"SELECT {i} AS before_stop, repeat('x', 200)")
    time.sleep(0.5)  # stored in the sinks, and still in the journal
    proxy.proc.kill()  # as a crash would: the journal keeps what it holds
    proxy.proc.wait(10)
    # The state a stop right after a rotation leaves: PATH.n -> PATH.n+1, PATH -> PATH.1, no PATH.
    rotated = sorted((int(f.name.rsplit(".", 1)[1]), f) for f in tmp_path.glob("audit.jsonl.*"))
    for n, f in reversed(rotated):
        f.rename(tmp_path / f"audit.jsonl.{n + 1}")
    lines.rename(tmp_path / "audit.jsonl.1")
    proxy.start()
    with connect(proxy, autocommit=True) as c:
        c.execute("SELECT 'after restart'")
    assert proxy.stop() == 0
    seqs = []
    for f in sorted(tmp_path.glob("audit.jsonl*")):
        seqs += [json.loads(line)["body"]["seq"] for line in f.read_text().splitlines()]
    assert len(seqs) == len(set(seqs)), "records written twice"
    assert sorted(seqs) == list(range(1, max(seqs) + 1)), "records missing"


def test_tail_prints_every_record_across_automatic_rotations(make_proxy, tmp_path):
    """tail -f skipped the records written to a file after its last poll and before the rotation
    (it went on at the start of the new file; found by adversarial testing)."""
    proxy, lines = _jsonl_proxy(make_proxy, tmp_path, max_size="64KiB", keep=50)
    psql(proxy, "-c", "SELECT 'tail start'")
    wait_for(lambda: lines.exists() and "tail start" in lines.read_text(), timeout=10, what="the first lines")
    out = tmp_path / "tail.out"
    with open(out, "w") as f:
        tail = _follow(lines, f)
    try:
        time.sleep(0.5)
        with connect(proxy, autocommit=True) as c:
            for i in range(200):
                c.execute(f"SELECT {i} AS tailed, repeat('x', 300)")
                time.sleep(0.01)
        assert len(list(tmp_path.glob("audit.jsonl.*"))) >= 2, "expected rotations"
        wait_for(lambda: "SELECT 199 AS tailed" in out.read_text(), timeout=10, what="the last record in tail's output")
        time.sleep(0.5)
        printed = out.read_text()
        missing = [i for i in range(200) if f"SELECT {i} AS tailed" not in printed]
        assert not missing, missing
    finally:
        tail.terminate()
        tail.wait(10)
        proxy.stop()


def test_cancel_requests_are_recorded_with_the_session_they_cancel(make_proxy):
    """A CancelRequest is a connection attempt: it is recorded with the identity and session of the
    statement it cancels and the address it came from; one with a key no session has (someone
    guessing keys) is recorded as refused. Before, neither left any record."""
    import socket
    import struct
    proxy = make_proxy()
    with connect(proxy) as c:
        (session_marker,) = c.execute("SELECT 'cancel-me'").fetchone()
        t = threading.Timer(0.5, c.cancel)
        t.start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            c.execute("SELECT pg_sleep(30) -- cancelled_by_ctrl_c")
        t.join()
    with socket.create_connection(("127.0.0.1", proxy.port)) as s:  # a guessed key
        s.sendall(struct.pack("!iiii", 16, 80877102, 12345, 67890))
        s.settimeout(5)
        assert s.recv(16) == b""  # closed without an answer, as PostgreSQL does
    store = store_of(proxy)
    wait_for(lambda: len(search(store, "--type", "cancel")) == 2, timeout=10)
    cancels = search(store, "--type", "cancel")
    by_outcome = {h["outcome"]: h for h in cancels}
    assert set(by_outcome) == {"ok", "refused"}, cancels
    ok = by_outcome["ok"]
    stmt = [h for h in search(store) if "cancelled_by_ctrl_c" in h.get("sql", {}).get("text", "")]
    assert len(stmt) == 1 and stmt[0].get("result", stmt[0])["outcome"] == "cancelled", stmt
    assert ok["session"] == stmt[0]["session"] and ok["identity"]["subject"] == "alice", ok
    assert ok["fields"]["from"].startswith("127.0.0.1:") and "forwarded" in ok["message"], ok
    refused = by_outcome["refused"]
    assert refused["message"] == "no session has this cancel key" and not refused.get("session"), refused
    assert refused["client"] == "127.0.0.1", refused
    assert verify(store).returncode == 0

    # A flood of guessed keys: one record a second per worker thread, saying how many it held back
    # (6,000 requests made 6,000 records and log lines in 0.6 s: found by adversarial testing).
    def guess(n):
        for i in range(n):
            with socket.create_connection(("127.0.0.1", proxy.port)) as s:
                s.sendall(struct.pack("!iiii", 16, 80877102, 999, i))
                s.settimeout(5)
                s.recv(16)
    guess(100)
    time.sleep(1.2)
    guess(100)
    # Every guess is on record once the burst is over: let through, or counted in a record's
    # held_back, also those held back after the last record (found by an audit trial: a burst
    # that stopped left them nowhere, not even at shutdown).
    def flood():
        return [h for h in search(store, "--type", "cancel") if h["outcome"] == "refused"][:-1]  # less the first one
    # A record of a request says "no session has this cancel key"; one written only for those held
    # back after it says so and stands for its held_back alone.
    def recorded():
        return sum((h["message"] == "no session has this cancel key") + int(h.get("fields", {}).get("held_back", 0))
                   for h in flood())
    wait_for(lambda: recorded() == 200, timeout=5, what="all 200 guesses on record")
    assert 2 <= len(flood()) <= 12, len(flood())
    assert sum(int(h.get("fields", {}).get("held_back", 0)) for h in flood()) > 0, flood()
    with connect(proxy) as c:  # the proxy still serves
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_a_failed_statement_too_large_for_an_intent_slot_verifies(make_proxy):
    """A statement too large for an intent slot is recorded before it runs and its outcome follows
    in a result record sealed from a draft. Its text column was left empty while the signed body
    held the error message, so verify called the untouched store TAMPERED and stopped there, and
    searching the message found nothing (found by differential testing)."""
    proxy = make_proxy()
    with connect(proxy, autocommit=True) as c:
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("SELECT 1/0 /* " + "x" * 6000 + " */")
        c.execute("SELECT 'after the large one'")
    proxy.stop()
    store = store_of(proxy)
    r = verify(store)
    assert r.returncode == 0, r.stdout + r.stderr
    hits = search(store, "--type", "result", "--text", "division by zero")
    assert len(hits) == 1 and hits[0]["outcome"] == "error", hits


def test_rotated_json_lines_files_without_a_checkpoint_of_their_own_verify_with_the_key(make_proxy, tmp_path):
    """Found by an audit trial: more than max_size of records within one checkpoint interval leaves
    rotated files with no checkpoint of their own, and `verify --key --continues` called each such
    untouched file TAMPERED ("no signed checkpoint"). They verify now, with a note that the next
    checkpoint (in a later file) proves them; the last file, stopped cleanly, carries it."""
    key = tmp_path / "checkpoint.key"
    assert audit_cli("keygen", "--out", key).returncode == 0
    lines = tmp_path / "audit.jsonl"
    proxy = make_proxy(audit={"checkpoint": {"key_file": str(key), "interval": "1h"},
                              "sinks": [{"type": "jsonl", "path": str(lines), "max_size": "64KiB", "keep": 20}]})
    with connect(proxy, autocommit=True) as c:
        for i in range(300):
            c.execute(f"SELECT {i} AS rotating, repeat('x', 200)")
    assert proxy.stop() == 0
    rotated = sorted((int(f.name.rsplit(".", 1)[1]) for f in tmp_path.glob("audit.jsonl.*")), reverse=True)
    files = [tmp_path / f"audit.jsonl.{n}" for n in rotated] + [lines]
    assert len(files) >= 4, files
    head, unsigned = None, 0
    for f in files:
        args = ["--key", str(key)] + (["--continues", head] if head else [])
        if f == lines:
            args.append("--expect-stopped")
        r = verify(f, *args)
        assert r.returncode == 0, (f.name, r.stdout + r.stderr)
        unsigned += "holds no signed checkpoint" in r.stdout
        head = re.search(r"head (\d+:[0-9a-f]{64})", r.stdout).group(1)
    assert unsigned >= 2  # the middle files: proven by the last file's checkpoint
    # Still caught: an edited record in a file without a checkpoint breaks its chain.
    middle = files[1]
    text = middle.read_text().replace('rotating', 'rotatinG', 1)
    middle.write_text(text)
    first = re.search(r"head (\d+:[0-9a-f]{64})", verify(files[0], "--key", str(key)).stdout).group(1)
    r = verify(middle, "--key", str(key), "--continues", first)
    assert r.returncode == 1 and "TAMPERED" in r.stdout, r.stdout


def test_a_masked_parameter_is_masked_in_the_error_message_too(make_proxy, pg):
    """Found by an audit trial: with parameters masked (the statement touches a classified column),
    the server's error quoted the value ('invalid input syntax for type integer: "123-45-6789"')
    and the record kept it in clear, in the store and in every search output."""
    t = fresh_table(pg, "id int PRIMARY KEY, ssn int")
    proxy = make_proxy(classification=[{"columns": [f"*.{t}.ssn"], "tags": ["pii"]}])
    with connect(proxy, autocommit=True) as c:
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            c.execute(f"INSERT INTO {t} (id, ssn) VALUES (%s, %s)", (2, "123-45-6789"))
        c.execute(f"INSERT INTO {t} (id, ssn) VALUES (%s, %s)", (3, 987654321))
        with pytest.raises(psycopg.errors.UniqueViolation):
            c.execute(f"INSERT INTO {t} (id, ssn) VALUES (%s, %s)", (3, 987654321))
    assert proxy.stop() == 0
    store = store_of(proxy)
    hits = [h for h in search(store, "--table", t) if h.get("type") == "statement"]
    assert len(hits) == 3, hits
    bad = next(h for h in hits if h.get("sqlstate") == "22P02")
    assert bad["sql"]["params"][1] == "<masked 11 bytes>", bad
    assert bad["outcome"] == "error" and bad["message"] == 'invalid input syntax for type integer: "<masked>"', bad
    raw = subprocess.run(["sqlite3", str(store), ".dump"], capture_output=True, text=True, check=True).stdout
    assert "INSERT INTO audit_blocks" in raw and "123-45-6789" not in raw
    text = "\n".join(audit_store.block_lines(store))  # the records, decompressed
    assert t in text and "123-45-6789" not in text
    r = verify(store)
    assert r.returncode == 0, r.stdout


def test_the_report_counts_masked_reads_as_access_and_unmaskable_statements_as_blocked(make_proxy, pg):
    """A masked SELECT reached the database (sensitive access with the mask decision, not blocked);
    a statement refused because it would carry masked values into a table never did (blocked, by
    masking.unmaskable)."""
    t = fresh_table(pg, "id int, ssn text")
    proxy = make_proxy(classification=[{"columns": [f"*.{t}.ssn"], "tags": ["pii"]}],
                       rules=[{"name": "mask-pii", "when": {"tags": ["pii"]}, "action": "mask"}])
    with connect(proxy, autocommit=True) as c:
        c.execute(f"SELECT ssn FROM {t}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute(f"CREATE TABLE {t}_stolen AS SELECT ssn FROM {t}")
        c.execute(f"SELECT id FROM {t}")
    assert proxy.stop() == 0
    r = audit_cli("report", "--store", store_of(proxy), "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    access = [a for a in doc["sensitive_access"] if a.get("table", "") == t or a.get("table", "").endswith("." + t)]
    assert len(access) == 1 and access[0]["statements"] == 2 and access[0]["denied"] == 1, doc["sensitive_access"]
    assert [b["rule"] for b in doc["blocked"]["by_identity_and_rule"]] == ["masking.unmaskable"], doc["blocked"]
    rows = audit_cli("search", "--store", store_of(proxy), "--format", "jsonl", "--text", "SELECT ssn").stdout
    assert '"action":"mask"' in rows, rows


def test_an_auditor_without_write_access_reads_a_stopped_store(make_proxy, tmp_path):
    """Found by an audit trial: verify, search and report of a stopped store (or a `.backup` copy)
    failed with "attempt to write a readonly database" for a user who may not write the file or
    its directory, and as root they created -wal and -shm files beside the evidence. A store with
    no -wal file beside it (no process has it open) is now read as immutable."""
    import pwd
    proxy = make_proxy()
    with connect(proxy, autocommit=True) as c:
        c.execute("SELECT 'evidence' AS e")
    assert proxy.stop() == 0
    import tempfile
    evidence = Path(tempfile.mkdtemp(prefix="gh-evidence-"))  # pytest's own tmp dirs are root's only
    backup = evidence / "copy.db"
    subprocess.run(["sqlite3", str(store_of(proxy)), f".backup {backup}"], check=True)
    backup.chmod(0o444)
    evidence.chmod(0o555)
    as_other = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    if as_other:
        assert pwd.getpwnam("nobody")
    try:
        for cmd in (["verify", "--store", str(backup)], ["search", "--store", str(backup), "--text", "evidence"],
                    ["report", "--store", str(backup)]):
            r = subprocess.run(as_other + [str(BINARY), "audit", *cmd], capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, (cmd, r.stdout, r.stderr)
            assert "evidence" in r.stdout or cmd[0] != "search", r.stdout
        r = subprocess.run([str(BINARY), "audit", "verify", "--store", str(backup)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        assert sorted(p.name for p in evidence.iterdir()) == ["copy.db"]  # nothing written beside it
    finally:
        evidence.chmod(0o755)
        shutil.rmtree(evidence)


def test_rows_a_copy_to_sent_before_it_failed_are_counted(make_proxy):
    """Found by an audit trial: a SELECT ended by an error is recorded with the rows it had returned
    (they left the database), but a COPY TO was recorded with none: CopyData rows count now."""
    proxy = make_proxy()
    with connect(proxy, autocommit=True) as c:
        got = 0
        with pytest.raises(psycopg.errors.DivisionByZero):
            with c.cursor().copy("COPY (SELECT 10 / (500 - g) AS copy_error FROM generate_series(1, 1000) g) "
                                 "TO STDOUT") as cp:
                for _ in cp.rows():
                    got += 1
        assert got == 499
        with c.cursor().copy("COPY (SELECT g AS copy_whole FROM generate_series(1, 77) g) TO STDOUT (FORMAT csv, "
                             "HEADER)") as cp:
            assert sum(1 for _ in cp) >= 1
    assert proxy.stop() == 0
    by_text = {h["sql"]["text"]: h.get("result", h) for h in search(store_of(proxy), "--type", "statement")}
    failed = next(r for t, r in by_text.items() if "copy_error" in t)
    assert failed["outcome"] == "error" and failed["sqlstate"] == "22012" and failed["rows"] == 499, failed
    whole = next(r for t, r in by_text.items() if "copy_whole" in t)
    assert whole["outcome"] == "ok" and whole["rows"] == 77, whole  # the tag's count, not the messages'


def test_text_search_finds_a_statements_error_message(make_proxy, tmp_path):
    """Found by an audit trial: --text is documented as "substring of the statement text or
    message", but a statement's error message was never matched (its text column holds the SQL)."""
    proxy, lines = _jsonl_proxy(make_proxy, tmp_path)
    with connect(proxy, autocommit=True) as c:
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("SELECT 1/0 AS needle_stmt")
        with pytest.raises(psycopg.errors.UndefinedTable):
            c.execute('SELECT * FROM "no ""such"" table"')
        c.execute("SELECT 'division' AS decoy")
    assert proxy.stop() == 0
    for store in (tmp_path / "audit.db", lines):
        hits = [h["sql"]["text"] for h in search(store, "--text", "DIVISION BY ZERO")]
        assert hits == ["SELECT 1/0 AS needle_stmt"], (store, hits)
        hits = [h["sql"]["text"] for h in search(store, "--text", 'relation "no "such" table" does not')]
        assert len(hits) == 1 and "no" in hits[0], (store, hits)
        assert len(search(store, "--text", "needle_stmt")) == 1  # the SQL still matches


def test_group_and_table_filters_match_whole_names_with_commas(make_proxy, pg, tmp_path):
    """Found by an audit trial: groups and relations are stored as ",a,b,", so --group cn=ops found
    a member of the DN-style group "cn=ops,ou=teams", and --table payroll found "secret,payroll"."""
    from tests.harness import hash_password
    t = fresh_table(pg, "id int")
    pg.psql('DROP TABLE IF EXISTS "secret,payroll"; CREATE TABLE "secret,payroll" (id int)')
    proxy, lines = _jsonl_proxy(make_proxy, tmp_path)
    cfg = proxy.config
    verifier = hash_password("pw-secret")
    cfg["users"] += [{"name": "dn_user", "password": verifier, "groups": ["cn=ops,ou=teams"]},
                     {"name": "two_groups", "password": verifier, "groups": ["cn=ops", "ou=teams"]}]
    proxy.stop()
    proxy.write_config(cfg)
    proxy.start()
    for user in ("dn_user", "two_groups"):
        with psycopg.connect(host="127.0.0.1", port=proxy.port, user=user, password="pw-secret", dbname="app",
                             sslmode="disable", autocommit=True) as c:
            c.execute(f"SELECT id FROM {t}")
            c.execute('SELECT id FROM "secret,payroll"')
    assert proxy.stop() == 0
    for store in (tmp_path / "audit.db", lines):
        def who(*f):
            return sorted({h["identity"]["subject"] for h in search(store, "--type", "statement", *f)})
        assert who("--group", "cn=ops,ou=teams") == ["dn_user"], store
        assert who("--group", "cn=ops") == ["two_groups"], store
        assert who("--group", "ou=teams") == ["two_groups"], store
        tables = lambda *f: sorted(h["sql"]["text"] for h in search(store, "--type", "statement", *f))  # noqa: E731
        assert tables("--table", "secret,payroll", "--identity", "dn_user") == ['SELECT id FROM "secret,payroll"']
        assert tables("--table", "payroll") == [] and tables("--table", "secret") == [], store
        assert tables("--table", t, "--identity", "dn_user") == [f"SELECT id FROM {t}"], store
        assert tables("--table", f"public.{t}", "--identity", "dn_user") == [f"SELECT id FROM {t}"], store


def test_export_writes_a_store_of_blocks_as_json_lines_that_verify(make_proxy, tmp_path):
    """A store of compressed blocks is not readable with sqlite3 alone: `gatehouse audit export`
    writes the chain as JSON lines (the jsonl sink's format), which verify accepts as a store and
    which holds every record, byte for byte as the chain hashed it."""
    key = tmp_path / "checkpoint.key"
    assert audit_cli("keygen", "--out", key).returncode == 0
    proxy = make_proxy(audit={"node": "exp", "checkpoint": {"key_file": str(key), "interval": "1h"}})
    with connect(proxy, autocommit=True) as c:
        for i in range(30):
            c.execute(f"SELECT 'export-{i}'")
    assert proxy.stop() == 0
    store = store_of(proxy)
    assert audit_store.is_blocks(store)
    r = audit_cli("export", "--store", store)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines == audit_store.block_lines(store)
    assert sum("export-" in x for x in lines) == 30
    out = tmp_path / "trail.jsonl"
    out.write_text(r.stdout)
    v = verify(out, "--key", key, "--expect-stopped")
    assert v.returncode == 0 and "intact" in v.stdout, v.stdout + v.stderr
    # From a seq on; a node that is not in the store exports nothing.
    part = audit_cli("export", "--store", store, "--after", "10")
    assert part.returncode == 0 and part.stdout.splitlines() == lines[10:], part.stderr
    other = audit_cli("export", "--store", store, "--node", "nope")
    assert other.returncode == 0 and other.stdout == "", other.stderr
    # A block whose bytes were changed: the export says so and fails.
    bad = tmp_path / "bad.db"
    shutil.copy(store, bad)
    sqlite_cli(bad, "UPDATE audit_blocks SET data = substr(data, 1, length(data) - 4) WHERE first_seq = 1")
    r = audit_cli("export", "--store", bad)
    assert r.returncode == 1 and "run gatehouse audit verify" in r.stderr, r.stderr


def test_tail_follows_a_live_store_of_blocks_and_search_finds_new_blocks(make_proxy, tmp_path):
    """tail -f and repeated searches on the default store while the proxy writes new blocks."""
    proxy = make_proxy()
    store = store_of(proxy)
    psql(proxy, "-c", "SELECT 'blocks before'")
    wait_for(lambda: store.exists() and any("blocks before" in h.get("sql", {}).get("text", "")
                                            for h in search(store)), timeout=10, what="the first record")
    out_path = tmp_path / "tail.out"
    with open(out_path, "w") as out:
        tail = _follow(store, out)
        try:
            time.sleep(1)  # tail read the store's head before the next statements
            for i in range(3):
                psql(proxy, "-c", f"SELECT 'blocks after {i}'")
                time.sleep(0.1)  # a store flush each: more blocks
            wait_for(lambda: all(f"blocks after {i}" in out_path.read_text() for i in range(3)), timeout=10,
                     what="tail -f printing the new records")
        finally:
            tail.terminate()
            tail.wait(10)
    texts = [json.loads(x)["sql"]["text"] for x in out_path.read_text().splitlines()
             if x.startswith("{") and json.loads(x).get("type") == "statement"]
    assert texts.count("SELECT 'blocks before'") <= 1 and [t for t in texts if "after" in t] == \
        [f"SELECT 'blocks after {i}'" for i in range(3)], texts
    hits = search(store, "--text", "blocks after")
    assert sorted(h["sql"]["text"] for h in hits) == [f"SELECT 'blocks after {i}'" for i in range(3)]
