"""Long statement texts (over 16 KiB) are analysed on the analysis pool instead of the worker
thread; they are judged exactly like short ones, in both protocols."""
from __future__ import annotations

import threading
import time

import psycopg
import pytest

from conftest import config_for, connect, target


@pytest.fixture(scope="module")
def direct(pg):
    c = psycopg.connect(pg.dsn(), autocommit=True)
    c.execute("DROP TABLE IF EXISTS big_t")
    c.execute("CREATE TABLE big_t (id int PRIMARY KEY, v text)")
    yield c
    c.execute("DROP TABLE IF EXISTS big_t")
    c.close()


@pytest.fixture(scope="module")
def proxy(pg, user_hashes, tmp_path_factory):
    from tests.harness import Gatehouse
    cfg = config_for(pg, user_hashes, threads=1)  # one worker: every session shares its thread
    prod = target("app", pg.port, password=pg.password)
    prod["environment"] = "production"
    cfg["targets"] = [prod]
    p = Gatehouse(cfg, workdir=tmp_path_factory.mktemp("gh-big")).start()
    yield p
    p.stop()


def big_insert(first: int, rows: int) -> str:
    return "INSERT INTO big_t VALUES " + ", ".join(f"({i}, 'value number {i} with some padding')"
                                                   for i in range(first, first + rows))


def test_long_insert_runs_both_protocols(proxy, direct):
    direct.execute("TRUNCATE big_t")
    sql = big_insert(1, 8000)
    assert len(sql) > 300_000
    with connect(proxy, autocommit=True) as c:
        psycopg.ClientCursor(c).execute(sql)  # simple protocol
        c.execute(big_insert(100_001, 3000).replace("'value", "%s || 'value", 1), ("x",))  # extended
    assert direct.execute("SELECT count(*) FROM big_t").fetchone() == (11000,)


def test_long_text_with_smuggled_statement_refused(proxy, direct):
    direct.execute("TRUNCATE big_t")
    sql = big_insert(1, 5000) + "; DROP TABLE big_t"
    with connect(proxy, autocommit=True) as c:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as ei:
            psycopg.ClientCursor(c).execute(sql)
        assert ei.value.diag.message_detail == "rule: guardrail.drop"
        assert c.execute("SELECT 1").fetchone() == (1,)
    assert direct.execute("SELECT count(*) FROM big_t").fetchone() == (0,)  # nothing of it ran


def test_other_sessions_keep_working_during_long_analysis(proxy, direct):
    """While one session sends long texts back to back, another on the same worker thread
    keeps getting answers (functional check: its queries complete between the long ones)."""
    direct.execute("TRUNCATE big_t")
    stop = threading.Event()
    errors: list[Exception] = []

    def hammer():
        try:
            with connect(proxy, autocommit=True) as c:
                n = 0
                while not stop.is_set():
                    psycopg.ClientCursor(c).execute(big_insert(1 + n * 2000, 2000))
                    n += 1
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    t = threading.Thread(target=hammer)
    t.start()
    try:
        with connect(proxy, autocommit=True) as c:
            for i in range(50):
                assert c.execute("SELECT %s::int", (i,)).fetchone() == (i,)
    finally:
        stop.set()
        t.join(60)
    assert not errors, errors


def test_statement_over_max_statement_size_is_refused_and_the_session_carries_on(make_proxy, direct):
    """Analysing SQL takes many times its size in memory: a text over limits.max_statement_size is
    refused with a message naming the key, in both protocols, and the session carries on."""
    direct.execute("TRUNCATE big_t")
    proxy = make_proxy(limits={"max_statement_size": "64KiB"})
    sql = big_insert(1, 2000)
    assert len(sql) > 64 * 1024
    with connect(proxy, autocommit=True) as c:
        for prepare in (False, True):
            with pytest.raises(psycopg.Error) as ei:
                c.execute(sql, prepare=prepare)
            assert "limits.max_statement_size" in str(ei.value), ei.value
            assert ei.value.sqlstate == "54000"  # program_limit_exceeded, not a syntax error
            assert c.execute("SELECT 1").fetchone() == (1,)
        c.execute(big_insert(1, 100))  # under the limit: analysed and run
    assert direct.execute("SELECT count(*) FROM big_t").fetchone() == (100,)


def test_memory_goes_back_after_large_statements(make_proxy, tmp_path):
    """A few multi-megabyte statements, parameters and results must not leave the proxy at its peak
    size: glibc's adjustable mmap threshold used to move such blocks into the worker threads'
    arenas, which kept them (RSS 22 -> 112 MiB, never given back; ADR 0003, last addendum)."""
    proxy = make_proxy(audit={"durability": "required", "sinks": [{"type": "sqlite", "path": str(tmp_path / "a.db")}]})
    with connect(proxy, autocommit=True) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
    time.sleep(0.5)
    before = proxy.rss_kib()
    for _ in range(5):
        with connect(proxy, autocommit=True) as c:
            text = "x" * (3 << 20)
            assert c.execute("SELECT length('" + text + "')").fetchone() == (len(text),)
            assert c.execute("SELECT length(%s)", (text * 10,)).fetchone() == (len(text) * 10,)
            assert len(c.execute("SELECT repeat('y', %s)", (3 << 20,)).fetchone()[0]) == 3 << 20
    time.sleep(1.0)  # the audit store thread catches up and gives its batch memory back
    grown = proxy.rss_kib() - before
    assert grown < 24 * 1024, f"the proxy kept {grown} KiB after its sessions ended"
