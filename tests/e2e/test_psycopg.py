"""psycopg 3 through the proxy: both query protocols, binary results, server-side cursors, COPY,
LISTEN/NOTIFY, transactions, pipeline mode, big parameters, cancel."""
from __future__ import annotations

import datetime as dt
import decimal
import threading
import time

import psycopg
import pytest
from psycopg import errors, sql

from conftest import connect


def test_simple_protocol_multi_statement(conn):
    cur = conn.cursor()
    cur.execute("select 1 as a; select 'two' as b, null::int as c")  # no params: simple Query
    assert cur.fetchall() == [(1,)]
    assert cur.nextset()
    assert cur.fetchall() == [("two", None)]
    assert [d.name for d in cur.description] == ["b", "c"]


def test_client_side_binding_simple_protocol(conn):
    cur = psycopg.ClientCursor(conn)
    cur.execute("select %s::int + %s::int, %s::text", (40, 2, "it's"))
    assert cur.fetchone() == (42, "it's")


def test_extended_protocol_parameters(conn):
    row = conn.execute("select %s::int + %s, %s::text || %s, %s::bool, %s::float8, %s::text is null",
                       (1, 2, "a", "b", True, 1.5, None)).fetchone()
    assert row == (3, "ab", True, 1.5, True)


def test_prepared_statements(conn):
    conn.autocommit = True
    for i in range(5):
        assert conn.execute("select %s::int * 2", (i,), prepare=True).fetchone() == (i * 2,)
    names = conn.execute("select statement from pg_prepared_statements").fetchall()
    assert any("$1::int * 2" in s for (s,) in names), names


def test_binary_results(conn):
    cur = conn.cursor(binary=True)
    cur.execute("select 123456789012::int8, 'héllo'::text, '\\x00ff10'::bytea, 3.14159::numeric, "
                "'2024-02-29 12:34:56+00'::timestamptz, array[1,2,3]::int4[], '{\"a\": 1}'::jsonb")
    row = cur.fetchone()
    assert cur.pgresult.fformat(0) == 1  # really binary
    assert row[0] == 123456789012
    assert row[1] == "héllo"
    assert row[2] == b"\x00\xff\x10"
    assert row[3] == decimal.Decimal("3.14159")
    assert row[4] == dt.datetime(2024, 2, 29, 12, 34, 56, tzinfo=dt.timezone.utc)
    assert row[5] == [1, 2, 3]
    assert row[6] == {"a": 1}


def test_server_side_cursor_batches(conn):
    with conn.transaction():
        with conn.cursor(name="big_cursor") as cur:
            cur.itersize = 1000
            cur.execute("select g, md5(g::text) from generate_series(1, 25000) g")
            total, count, batches = 0, 0, 0
            while True:
                rows = cur.fetchmany(4000)
                if not rows:
                    break
                batches += 1
                count += len(rows)
                total += sum(r[0] for r in rows)
            assert count == 25000
            assert total == 25000 * 25001 // 2
            assert batches == 7
            # it was a real server-side cursor
            assert conn.execute("select count(*) from pg_cursors where name = 'big_cursor'").fetchone() == (1,)


def test_copy_in_and_out(conn):
    conn.autocommit = True
    conn.execute("drop table if exists pc_copy; create table pc_copy (id int, name text, amount numeric, "
                 "data bytea)")
    with conn.cursor() as cur:
        with cur.copy("copy pc_copy (id, name, amount, data) from stdin") as cp:
            for i in range(20000):
                cp.write_row((i, f"name\t{i}" if i % 7 == 0 else f"n{i}", decimal.Decimal(i) / 100,
                              bytes([i % 256])))
        assert cur.rowcount == 20000
    assert conn.execute("select count(*), sum(id), count(*) filter (where name like 'name\t%') from pc_copy"
                        ).fetchone() == (20000, 20000 * 19999 // 2, 2858)

    with conn.cursor() as cur:
        got = []
        with cur.copy("copy (select id, name, amount, data from pc_copy where id < 15 order by id) to stdout") as cp:
            cp.set_types(["int4", "text", "numeric", "bytea"])
            got = list(cp.rows())
        assert len(got) == 15
        assert got[7] == (7, "name\t7", decimal.Decimal("0.07"), b"\x07")

    # CSV with a header, raw bytes
    with conn.cursor() as cur:
        data = b""
        with cur.copy("copy (select id, name from pc_copy where id in (1, 2) order by id) to stdout "
                      "with (format csv, header)") as cp:
            for chunk in cp:
                data += bytes(chunk)
        assert data == b"id,name\n1,n1\n2,n2\n"

    # binary format both ways
    conn.execute("drop table if exists pc_copy_bin; create table pc_copy_bin (id int, ts timestamptz, data bytea)")
    now = dt.datetime(2023, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    with conn.cursor() as cur:
        with cur.copy("copy pc_copy_bin from stdin (format binary)") as cp:
            cp.set_types(["int4", "timestamptz", "bytea"])
            for i in range(1000):
                cp.write_row((i, now + dt.timedelta(seconds=i), bytes(range(i % 256))))
        with cur.copy("copy (select * from pc_copy_bin order by id) to stdout (format binary)") as cp:
            cp.set_types(["int4", "timestamptz", "bytea"])
            back = list(cp.rows())
    assert len(back) == 1000
    assert back[300] == (300, now + dt.timedelta(seconds=300), bytes(range(300 % 256)))


def test_copy_error_mid_stream_keeps_session(conn):
    conn.autocommit = True
    conn.execute("drop table if exists pc_copy_err; create table pc_copy_err (id int)")
    with pytest.raises(errors.InvalidTextRepresentation):
        with conn.cursor() as cur:
            with cur.copy("copy pc_copy_err from stdin") as cp:
                cp.write(b"1\n2\nnot-a-number\n3\n")
    assert conn.execute("select count(*) from pc_copy_err").fetchone() == (0,)


def test_listen_notify_between_two_proxy_sessions(gh):
    with connect(gh, autocommit=True) as listener, connect(gh, user="bob", password="bob-secret",
                                                           autocommit=True) as talker:
        got = []
        listener.add_notify_handler(got.append)
        listener.execute("listen e2e_channel")
        talker.execute("select pg_notify('e2e_channel', 'hello through the proxy')")
        talker.execute("notify e2e_channel, 'second'")
        deadline = time.time() + 5
        while len(got) < 2 and time.time() < deadline:
            listener.execute("select 1")
            time.sleep(0.05)
        assert [(n.channel, n.payload) for n in got] == [("e2e_channel", "hello through the proxy"),
                                                          ("e2e_channel", "second")]
        # the pid is the talker's real backend process (the proxy hands clients its own keys)
        assert got[0].pid == talker.execute("select pg_backend_pid()").fetchone()[0]


def test_own_notifications_carry_the_process_id_the_client_was_given(gh):
    """Found by adversarial testing (node-postgres): BackendKeyData carried a process id of the
    proxy's, notifications the backend's, so a client could not tell its own NOTIFY apart. The
    client is now given its server's process id, so all three agree."""
    with connect(gh, autocommit=True) as c:
        got = []
        c.add_notify_handler(got.append)
        c.execute("listen own_channel")
        c.execute("notify own_channel, 'mine'")
        deadline = time.time() + 5
        while not got and time.time() < deadline:
            c.execute("select 1")
        assert got and got[0].payload == "mine"
        assert got[0].pid == c.info.backend_pid  # the id from BackendKeyData
        assert got[0].pid == c.execute("select pg_backend_pid()").fetchone()[0]


def test_listen_notify_delivered_while_idle(gh):
    """A notification must be forwarded to an idle client without it sending anything."""
    with connect(gh, autocommit=True) as listener, connect(gh, autocommit=True) as talker:
        listener.execute("listen idle_channel")
        talker.execute("notify idle_channel, 'ping'")
        gen = listener.notifies()
        result = []

        def consume():
            for n in gen:
                result.append(n)
                break

        t = threading.Thread(target=consume, daemon=True)
        t.start()
        t.join(5)
        if t.is_alive():
            talker.execute("notify idle_channel, 'unblock'")  # let the thread end
            t.join(5)
        assert result and result[0].payload == "ping"


def test_transactions_commit_and_rollback(conn):
    conn.autocommit = True
    conn.execute("drop table if exists pc_tx; create table pc_tx (id int)")
    conn.autocommit = False
    conn.execute("insert into pc_tx values (1)")
    conn.commit()
    conn.execute("insert into pc_tx values (2)")
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    conn.rollback()
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with pytest.raises(ZeroDivisionError):
        with conn.transaction():
            conn.execute("insert into pc_tx values (3)")
            1 / 0
    with conn.transaction():
        conn.execute("savepoint s1")
        conn.execute("insert into pc_tx values (4)")
        conn.execute("rollback to savepoint s1")
        conn.execute("insert into pc_tx values (5)")
    assert conn.execute("select array_agg(id order by id) from pc_tx").fetchone() == ([1, 5],)
    conn.rollback()


def test_error_inside_transaction_then_rollback(conn):
    conn.execute("create temp table pc_err (id int)")
    conn.execute("insert into pc_err values (1)")
    with pytest.raises(errors.DivisionByZero) as ei:
        conn.execute("select 1/0")
    assert ei.value.sqlstate == "22012"
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
    with pytest.raises(errors.InFailedSqlTransaction):
        conn.execute("select 1")
    conn.rollback()
    assert conn.execute("select 42").fetchone() == (42,)
    with pytest.raises(errors.UndefinedTable):  # the temp table went with the rollback
        conn.execute("select * from pc_err")
    conn.rollback()


def test_pipeline_mode(conn):
    conn.autocommit = True
    conn.execute("drop table if exists pc_pipe; create table pc_pipe (id int primary key, v text)")
    with conn.pipeline() as p:
        cur = conn.cursor()
        for i in range(200):
            cur.execute("insert into pc_pipe values (%s, %s)", (i, f"v{i}"))
        c2 = conn.execute("select count(*) from pc_pipe")
        c3 = conn.execute("select v from pc_pipe where id = %s", (150,))
        p.sync()
        assert c2.fetchone() == (200,)
        assert c3.fetchone() == ("v150",)
    # an error inside a pipeline aborts the rest up to the sync; the session carries on
    with pytest.raises(errors.UniqueViolation):
        with conn.pipeline():
            conn.execute("insert into pc_pipe values (1, 'dup')")
            conn.execute("insert into pc_pipe values (1000, 'skipped')")
    assert conn.execute("select count(*) from pc_pipe").fetchone() == (200,)


def test_large_parameter_round_trip(conn):
    big = ("0123456789abcdef" * 65536)  # 1 MiB
    assert len(big) == 1 << 20
    row = conn.execute("select length(%s::text), md5(%s::text), %s::text", (big, big, big)).fetchone()
    assert row[0] == 1 << 20
    import hashlib
    assert row[1] == hashlib.md5(big.encode()).hexdigest()
    assert row[2] == big
    blob = bytes(range(256)) * 4096
    assert conn.execute("select %b::bytea", (blob,)).fetchone()[0] == blob


def test_cancel_from_another_thread(gh):
    with connect(gh) as c:
        timer = threading.Timer(1.0, c.cancel)
        timer.start()
        t0 = time.time()
        try:
            with pytest.raises(errors.QueryCanceled) as ei:
                c.execute("select pg_sleep(30)")
        finally:
            timer.cancel()
        assert time.time() - t0 < 6
        assert "canceling statement due to user request" in str(ei.value)
        c.rollback()
        assert c.execute("select 'alive'").fetchone() == ("alive",)


def test_backend_pid_is_the_servers(gh):
    """Client libraries' own test suites compare conn.info.backend_pid (BackendKeyData) with
    pg_backend_pid() and end or cancel a connection with pg_terminate_backend/pg_cancel_backend
    of that id. The proxy used to give out a process id of its own, so those calls returned false."""
    with connect(gh, autocommit=True) as victim, connect(gh, autocommit=True) as other:
        pid = victim.info.backend_pid
        assert pid == victim.execute("select pg_backend_pid()").fetchone()[0]
        assert other.info.backend_pid != pid
        assert other.execute("select count(*) from pg_stat_activity where pid = %s", (pid,)).fetchone() == (1,)

        timer = threading.Timer(1.0, lambda: other.execute("select pg_cancel_backend(%s)", (pid,)))
        timer.start()
        try:
            with pytest.raises(errors.QueryCanceled):
                victim.execute("select pg_sleep(30)")
        finally:
            timer.cancel()
        assert victim.execute("select 'still here'").fetchone() == ("still here",)
        victim.cancel()  # the protocol's cancel still reaches the server with the proxy's secret
        assert victim.execute("select 'after cancel'").fetchone() == ("after cancel",)

        assert other.execute("select pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        with pytest.raises(psycopg.OperationalError):
            victim.execute("select 1")
        assert other.execute("select 'other lives'").fetchone() == ("other lives",)


@pytest.mark.parametrize("text", ["select 1 +", "selec 1", "select 'unterminated", "select 1 /* open",
                                  "select E'\\xff'"])
def test_refused_syntax_errors_read_as_the_servers(gh, pg, text):
    """Drivers' and their test suites' checks of a syntax error's message must pass through the
    proxy: the text the proxy refuses because it cannot parse it gets the server's own message,
    SQLSTATE, position and hint."""
    def error_of(c, **kw):
        with pytest.raises(psycopg.Error) as ei:
            c.execute(text, **kw)
        d = ei.value.diag
        return d.sqlstate, d.message_primary, d.statement_position, d.message_hint
    with psycopg.connect(pg.dsn(), autocommit=True) as direct:
        want = error_of(direct)
    with connect(gh, autocommit=True) as c:
        # The server parses the text as well (nothing of it runs), and its own error is what the
        # client gets, hint included: simple protocol, and extended (a Parse that begins its batch).
        assert error_of(c) == want
        assert error_of(c, prepare=True) == want


def test_identity_setting_visible_to_database(gh):
    with connect(gh, user="bob", password="bob-secret") as c:
        assert c.execute("select current_setting('gatehouse.identity')").fetchone() == ("bob",)
        assert c.execute("select current_setting('gatehouse.identity_groups')").fetchone() == ("dba",)
        # clients never see the backend login in session_user... they do see who the backend is
        assert c.execute("select session_user").fetchone() == ("postgres",)


def test_parameter_status_and_backend_key(conn):
    assert conn.info.parameter_status("server_version").startswith("15")
    assert conn.info.parameter_status("client_encoding") == "UTF8"
    conn.execute("set application_name = 'e2e-app'")
    assert conn.info.parameter_status("application_name") == "e2e-app"


def test_many_statements_identifier_quoting(conn):
    conn.autocommit = True
    name = 'Weird "Name"'
    conn.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(name)))
    conn.execute(sql.SQL("create table {} (x int)").format(sql.Identifier(name)))
    conn.execute(sql.SQL("insert into {} select generate_series(1, 10)").format(sql.Identifier(name)))
    assert conn.execute(sql.SQL("select sum(x) from {}").format(sql.Identifier(name))).fetchone() == (55,)


def test_notices_relayed(conn):
    got = []
    conn.add_notice_handler(lambda d: got.append((d.severity_nonlocalized, d.message_primary, d.sqlstate)))
    conn.execute("do $$ begin raise notice 'hello %', 42; raise warning 'careful'; end $$")
    assert ("NOTICE", "hello 42", "00000") in got
    assert ("WARNING", "careful", "01000") in got


def test_copy_fail_from_client(conn):
    conn.autocommit = True
    conn.execute("drop table if exists pc_copy_fail; create table pc_copy_fail (id int)")

    class Boom(Exception):
        pass

    with pytest.raises(errors.QueryCanceled):  # psycopg sends CopyFail; the server answers 57014
        with conn.cursor() as cur:
            with cur.copy("copy pc_copy_fail from stdin") as cp:
                cp.write_row((1,))
                raise Boom()
    assert conn.execute("select count(*) from pc_copy_fail").fetchone() == (0,)
