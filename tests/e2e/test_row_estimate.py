"""The row-estimate guardrail (`max_rows_affected`): a simple-protocol UPDATE/DELETE is planned
with EXPLAIN on the same backend session first, and refused when the planner expects it to change
more rows than the limit. Planning errors reach the client as the statement's own error; the
EXPLAIN's answer never does.
"""
from __future__ import annotations

import itertools
import json
import re
import sqlite3
import subprocess

import psycopg
import pytest
from psycopg.pq import TransactionStatus

from conftest import USERS, config_for, connect, target

_n = itertools.count(1)


@pytest.fixture(scope="module")
def direct(pg):
    c = psycopg.connect(pg.dsn(), autocommit=True)
    yield c
    c.close()


@pytest.fixture
def table(direct):
    name = f"re_{next(_n)}"
    direct.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, grp int, v text)")
    direct.execute(f"INSERT INTO {name} SELECT g, g % 10, 'x' FROM generate_series(1, 5000) g")
    direct.execute(f"ANALYZE {name}")
    yield name
    direct.execute(f"DROP TABLE IF EXISTS {name}")


@pytest.fixture(scope="module")
def proxy(pg, user_hashes, tmp_path_factory):
    from tests.harness import Gatehouse
    cfg = config_for(pg, user_hashes)
    limited = target("app", pg.port, password=pg.password)
    limited["policy"] = {"max_rows_affected": 100, "over_limit_action": "deny"}
    review = target("rev", pg.port, password=pg.password)
    review["policy"] = {"max_rows_affected": 100}  # over_limit_action defaults to review
    cfg["targets"] = [limited, review, target("free", pg.port, password=pg.password)]
    p = Gatehouse(cfg, workdir=tmp_path_factory.mktemp("gh-rows")).start()
    yield p
    p.stop()


def count(direct, table, where="true") -> int:
    return direct.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()[0]


def simple(conn):
    return psycopg.ClientCursor(conn)  # simple protocol: values inlined, one Query message


def test_small_write_runs(proxy, direct, table):
    with connect(proxy, autocommit=True) as c:
        cur = simple(c)
        cur.execute(f"DELETE FROM {table} WHERE id <= 10")
        assert cur.rowcount == 10
        cur.execute(f"UPDATE {table} SET v = 'y' WHERE id BETWEEN 20 AND 29")
        assert cur.rowcount == 10
    assert count(direct, table) == 4990
    assert count(direct, table, "v = 'y'") == 10


def test_large_write_refused_and_nothing_changes(proxy, direct, table):
    with connect(proxy, autocommit=True) as c:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as ei:
            simple(c).execute(f"DELETE FROM {table} WHERE grp = 3")  # ~500 rows
        e = ei.value
        assert e.diag.message_detail == "rule: policy.max_rows_affected"
        assert "limit of 100" in e.diag.message_primary and "Denied" in e.diag.message_primary
        assert "batches of at most 100" in (e.diag.message_hint or "")
        # the session goes on, and the EXPLAIN's rows never reached the client
        assert simple(c).execute("SELECT 42").fetchone() == (42,)
    assert count(direct, table) == 5000


def test_over_the_limit_review_opens_an_approval_request(proxy, direct, table):
    with connect(proxy, dbname="rev", autocommit=True) as c:
        c.execute("SET gatehouse.wait = off")
        with pytest.raises(psycopg.Error) as ei:
            simple(c).execute(f"UPDATE {table} SET v = 'z' WHERE grp < 5")
        assert ei.value.sqlstate == "RV001"
        assert 'approval required by rule "policy.max_rows_affected": request apr_' in ei.value.diag.message_primary
    assert count(direct, table, "v = 'z'") == 0
    # The reviewer sees the estimate and the table (the console's inbox shows both).
    rid = re.search(r"request (apr_[a-z0-9]+)", ei.value.diag.message_primary).group(1)
    db = sqlite3.connect(f"file:{proxy.config_path.parent / 'gatehouse-approvals.db'}?mode=ro", uri=True)
    stored = json.loads(db.execute("SELECT json FROM approval_requests WHERE id = ?", (rid,)).fetchone()[0])
    db.close()
    assert stored["row_estimate"] > 100 and stored["tables"] == [table], stored


def test_inside_transaction(proxy, direct, table):
    with connect(proxy) as c:
        cur = simple(c)
        cur.execute(f"DELETE FROM {table} WHERE id = 1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            cur.execute(f"DELETE FROM {table} WHERE grp = 2")
        assert c.info.transaction_status == TransactionStatus.INERROR  # as PostgreSQL after an error
        c.rollback()
        cur.execute(f"DELETE FROM {table} WHERE id = 2")  # small: runs
        c.commit()
    assert count(direct, table) == 4999
    assert count(direct, table, "id = 1") == 1


def test_planning_error_is_the_statements_error(proxy, direct, table):
    with connect(proxy, autocommit=True) as c:
        with pytest.raises(psycopg.errors.UndefinedColumn) as ei:
            simple(c).execute(f"DELETE FROM {table} WHERE nosuchcolumn = 1")
        assert "nosuchcolumn" in str(ei.value)
        assert simple(c).execute("SELECT 1").fetchone() == (1,)
    with connect(proxy) as c:  # in a transaction: aborted, as the statement itself would have done
        simple(c).execute("SELECT 1")
        with pytest.raises(psycopg.errors.UndefinedTable):
            simple(c).execute("DELETE FROM no_such_table_here WHERE id = 1")
        assert c.info.transaction_status == TransactionStatus.INERROR
        c.rollback()


def test_psql_pipelined_lines(proxy, direct, table):
    """psql -c with several statements: one Query; several -c: separate Queries, each estimated."""
    env = {"PGPASSWORD": USERS["alice"], "PGSSLMODE": "disable", "PATH": "/usr/bin:/bin"}
    r = subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(proxy.port), "-U", "alice", "-d", "app",
                        "-c", f"DELETE FROM {table} WHERE id = 3", "-c", f"DELETE FROM {table} WHERE grp = 4",
                        "-c", "SELECT 7"], capture_output=True, text=True, env=env, timeout=30)
    assert "DELETE 1" in r.stdout
    assert "policy.max_rows_affected" in r.stderr
    assert count(direct, table) == 4999


def test_unlimited_target_and_extended_protocol_not_estimated(proxy, direct, table):
    with connect(proxy, dbname="free", autocommit=True) as c:
        assert simple(c).execute(f"DELETE FROM {table} WHERE grp = 5").rowcount == 500
    # extended protocol (parameters): not estimated, runs (documented limitation)
    with connect(proxy, autocommit=True) as c:
        assert c.execute(f"DELETE FROM {table} WHERE grp = %s", (6,)).rowcount == 500
    assert count(direct, table) == 4000
