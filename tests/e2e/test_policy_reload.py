"""Policy hot reload end to end: the policy is picked up per statement, so a session that is
already open follows a rewritten configuration after SIGHUP; a configuration with a broken rule
is refused and the running policy stays in force.

Statements prepared before a reload run after it: they must be judged by the policy in force
when they run (SQL PREPARE/EXECUTE is judged by what was prepared), whatever shape the EXECUTE
takes.
"""
from __future__ import annotations

import itertools
import signal

import psycopg
import pytest
from psycopg.pq import TransactionStatus

from conftest import config_for, connect, target, wait_for

RULE = "no-select-t"
OK = "configuration reloaded"
FAILED = "reload failed"

_counter = itertools.count(1)


@pytest.fixture(scope="module")
def direct(pg):
    c = psycopg.connect(pg.dsn(), autocommit=True)
    yield c
    c.close()


@pytest.fixture
def t(direct):
    name = f"rl_{next(_counter)}"
    direct.execute(f"DROP TABLE IF EXISTS {name}")
    direct.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, v text)")
    direct.execute(f"INSERT INTO {name} VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    yield name
    direct.execute(f"DROP TABLE IF EXISTS {name}")


def deny_select(table: str) -> dict:
    return {"name": RULE, "when": {"tables": [table], "statements": ["select"]}, "action": "deny",
            "message": f"Reading {table} is not allowed"}


def make_config(make_proxy, pg, rules: list[dict]) -> dict:
    cfg = config_for(pg, make_proxy.hashes)
    prod = target("app", pg.port, password=pg.password)
    prod["environment"] = "production"
    cfg["targets"] = [prod, target("dev", pg.port, password=pg.password)]  # dev: environment test
    if rules:
        cfg["rules"] = rules
    return cfg


def reload(proxy, config: dict, expect_ok: bool = True) -> None:
    """Writes the configuration, sends SIGHUP and waits for the proxy to report the outcome."""
    key = OK if expect_ok else FAILED
    before = proxy.log().count(key)
    config["listen"], config["admin"] = proxy.config["listen"], proxy.config["admin"]  # same ports
    proxy.write_config(config)
    proxy.signal(signal.SIGHUP)
    wait_for(lambda: proxy.log().count(key) > before, timeout=10, what=f"{key!r} in the log")


def assert_denied(err: psycopg.Error, rule: str = RULE) -> None:
    assert err.sqlstate == "42501", (err.sqlstate, str(err))
    assert err.diag.message_detail == f"rule: {rule}", (err.diag.message_detail, str(err))


def select_denied(c, sql: str, rule: str = RULE, **kw) -> None:
    with pytest.raises(psycopg.Error) as ei:
        c.execute(sql, **kw)
    assert_denied(ei.value, rule)


# ---- the policy follows the configuration, per statement --------------------------------------

def test_reload_lifts_rule_for_open_session(make_proxy, pg, t):
    proxy = make_proxy(make_config(make_proxy, pg, [deny_select(t)]))
    with connect(proxy, autocommit=True) as c:
        select_denied(c, f"SELECT count(*) FROM {t}")
        select_denied(c, f"SELECT count(*) FROM {t}", prepare=True)
        assert c.execute("SELECT 1").fetchone() == (1,)

        reload(proxy, make_config(make_proxy, pg, []))

        # the same, already open session
        assert c.execute(f"SELECT count(*) FROM {t}").fetchone() == (3,)
        assert psycopg.ClientCursor(c).execute(f"SELECT count(*) FROM {t}").fetchone() == (3,)
        assert c.execute(f"SELECT count(*) FROM {t}", prepare=True).fetchone() == (3,)
    with connect(proxy, autocommit=True) as c:  # and a new one
        assert c.execute(f"SELECT count(*) FROM {t}").fetchone() == (3,)


def test_reload_adds_rule_for_open_session(make_proxy, pg, t):
    proxy = make_proxy(make_config(make_proxy, pg, []))
    with connect(proxy, autocommit=True) as c, connect(proxy) as in_tx:
        assert c.execute(f"SELECT count(*) FROM {t}").fetchone() == (3,)
        in_tx.execute(f"SELECT count(*) FROM {t}")  # a transaction open across the reload
        assert in_tx.info.transaction_status == TransactionStatus.INTRANS

        reload(proxy, make_config(make_proxy, pg, [deny_select(t)]))

        select_denied(c, f"SELECT count(*) FROM {t}")
        with pytest.raises(psycopg.Error) as ei:
            c.execute(f"SELECT v FROM {t} WHERE id = %s", (1,))
        assert_denied(ei.value)
        assert c.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.Error) as ei:
            in_tx.execute(f"SELECT count(*) FROM {t}")
        assert_denied(ei.value)
        assert in_tx.info.transaction_status == TransactionStatus.INERROR
        in_tx.rollback()
    with connect(proxy, autocommit=True) as c:
        select_denied(c, f"SELECT count(*) FROM {t}")


def test_file_change_reloads_without_signal(make_proxy, pg, t):
    """Editing the configuration file is enough: the proxy notices the change (checked every 2 s)."""
    proxy = make_proxy(make_config(make_proxy, pg, []))
    with connect(proxy, autocommit=True) as c:
        assert c.execute(f"SELECT count(*) FROM {t}").fetchone() == (3,)
        before = proxy.log().count("(file changed)")
        cfg = make_config(make_proxy, pg, [deny_select(t)])
        cfg["listen"], cfg["admin"] = proxy.config["listen"], proxy.config["admin"]
        proxy.write_config(cfg)  # no SIGHUP
        wait_for(lambda: proxy.log().count("(file changed)") > before, timeout=10, what="a reload on file change")
        assert "configuration reloaded" in proxy.log()
        select_denied(c, f"SELECT count(*) FROM {t}")
        # a broken edit is reported and changes nothing
        proxy.config_path.write_text(proxy.config_path.read_text() + "bogus_key: 1\n")
        wait_for(lambda: "reload failed (file changed)" in proxy.log(), timeout=10, what="a failed reload on file change")
        select_denied(c, f"SELECT count(*) FROM {t}")
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_broken_rule_keeps_running_policy(make_proxy, pg, t):
    good = make_config(make_proxy, pg, [deny_select(t)])
    proxy = make_proxy(good)
    with connect(proxy, autocommit=True) as c:
        select_denied(c, f"SELECT count(*) FROM {t}")

        # the deny rule removed, but another rule broken: the whole reload is refused
        broken = make_config(make_proxy, pg, [
            {"name": "typo", "when": {"statements": ["selec"]}, "action": "deny"}])
        reload(proxy, broken, expect_ok=False)
        log = proxy.log()
        line = [ln for ln in log.splitlines() if FAILED in ln][-1]
        assert "selec" in line, line
        assert "rules[0]" in line, line
        assert proxy.proc.poll() is None

        select_denied(c, f"SELECT count(*) FROM {t}")  # the old policy still holds
        with connect(proxy, autocommit=True) as c2:
            select_denied(c2, f"SELECT count(*) FROM {t}")
            assert c2.execute("SELECT 2").fetchone() == (2,)

        # an unknown action, an empty condition list, a duplicate name: refused as well
        for bad_rules in ([{"name": "x", "action": "destroy"}],
                          [{"name": "x", "when": {"tables": []}, "action": "deny"}],
                          [deny_select(t), deny_select(t)]):
            reload(proxy, make_config(make_proxy, pg, bad_rules), expect_ok=False)
            select_denied(c, f"SELECT count(*) FROM {t}")
        # a clean configuration without the rule is taken
        reload(proxy, make_config(make_proxy, pg, []))
        assert c.execute(f"SELECT count(*) FROM {t}").fetchone() == (3,)


def test_reload_policy_file(make_proxy, pg, t, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"rules:\n  - name: {RULE}\n    when: {{tables: [{t}], statements: [select]}}\n"
                      "    action: deny\n")
    cfg = make_config(make_proxy, pg, [])
    cfg["policy_file"] = str(policy)
    proxy = make_proxy(cfg)
    with connect(proxy, autocommit=True) as c:
        select_denied(c, f"SELECT count(*) FROM {t}")
        before = proxy.log().count(OK)
        policy.write_text("rules: []\n")
        proxy.signal(signal.SIGHUP)
        wait_for(lambda: proxy.log().count(OK) > before, timeout=10, what="reload")
        assert c.execute(f"SELECT count(*) FROM {t}").fetchone() == (3,)


# ---- statements prepared before the reload ---------------------------------------------------

@pytest.fixture
def prepared(make_proxy, pg, t):
    """A session on the non-production target with `PREPARE p AS SELECT * FROM t` done while
    allowed; then the rule denying SELECT on t is loaded. Yields (proxy, session)."""
    proxy = make_proxy(make_config(make_proxy, pg, []))
    c = connect(proxy, dbname="dev", autocommit=True)
    cur = psycopg.ClientCursor(c)
    cur.execute(f"PREPARE p AS SELECT * FROM {t} ORDER BY id")
    assert cur.execute("EXECUTE p").fetchall() == [(1, "a"), (2, "b"), (3, "c")]
    reload(proxy, make_config(make_proxy, pg, [deny_select(t)]))
    yield proxy, c
    c.close()


def test_sql_execute_judged_by_new_policy(prepared, t):
    proxy, c = prepared
    with pytest.raises(psycopg.Error) as ei:
        psycopg.ClientCursor(c).execute("EXECUTE p")
    assert_denied(ei.value)
    with pytest.raises(psycopg.Error) as ei:  # EXECUTE sent in the extended protocol
        c.execute("EXECUTE p", prepare=True)
    assert_denied(ei.value)
    assert c.execute("SELECT 1").fetchone() == (1,)


def test_sql_execute_in_multi_statement_text(prepared, t):
    """`SELECT 1; EXECUTE p` runs p just as `EXECUTE p` does."""
    proxy, c = prepared
    cur = psycopg.ClientCursor(c)
    with pytest.raises(psycopg.Error) as ei:
        cur.execute("SELECT 1; EXECUTE p")
        cur.nextset()
        leaked = cur.fetchall()
        pytest.fail(f"EXECUTE p ran after the rule was loaded: {leaked}")
    assert_denied(ei.value)


def test_sql_execute_inside_create_table_as(prepared, t, direct):
    """`CREATE TEMP TABLE x AS EXECUTE p` runs p and keeps its rows."""
    proxy, c = prepared
    cur = psycopg.ClientCursor(c)
    try:
        with pytest.raises(psycopg.Error) as ei:
            cur.execute("CREATE TEMP TABLE copied AS EXECUTE p")
            leaked = cur.execute("SELECT * FROM copied").fetchall()
            pytest.fail(f"EXECUTE p ran after the rule was loaded: {leaked}")
        assert_denied(ei.value)
    finally:
        c.execute("DROP TABLE IF EXISTS pg_temp.copied")


def test_sql_execute_inside_explain_analyze(prepared, t):
    """`EXPLAIN ANALYZE EXECUTE p` runs p."""
    proxy, c = prepared
    with pytest.raises(psycopg.Error) as ei:
        psycopg.ClientCursor(c).execute("EXPLAIN ANALYZE EXECUTE p")
    assert_denied(ei.value)


def test_failed_re_prepare_does_not_change_what_execute_runs(prepared, t):
    """`PREPARE p AS SELECT 1` fails on the server (p exists); `EXECUTE p` still runs the old p."""
    proxy, c = prepared
    cur = psycopg.ClientCursor(c)
    with pytest.raises(psycopg.errors.DuplicatePreparedStatement):
        cur.execute("PREPARE p AS SELECT 1")
    with pytest.raises(psycopg.Error) as ei:
        rows = cur.execute("EXECUTE p").fetchall()
        pytest.fail(f"EXECUTE p ran the statement prepared before the reload: {rows}")
    assert_denied(ei.value)


def test_failed_discard_does_not_forget_prepared(prepared, t):
    """`DISCARD ALL` inside a transaction block fails on the server (prepared statements stay);
    `EXECUTE p` afterwards still runs the old p."""
    proxy, c = prepared
    cur = psycopg.ClientCursor(c)
    cur.execute("BEGIN")
    with pytest.raises(psycopg.errors.ActiveSqlTransaction):
        cur.execute("DISCARD ALL")
    cur.execute("ROLLBACK")
    with pytest.raises(psycopg.Error) as ei:
        rows = cur.execute("EXECUTE p").fetchall()
        pytest.fail(f"EXECUTE p ran the statement prepared before the reload: {rows}")
    assert_denied(ei.value)


def test_protocol_prepared_statement_judged_by_new_policy(make_proxy, pg, t):
    """A statement prepared in the extended protocol (Parse with a name; psycopg's prepare=True,
    and what psycopg and JDBC do by themselves after five executions) and executed after the
    reload (Bind/Execute only) is judged by the policy in force when it runs, as SQL EXECUTE is."""
    proxy = make_proxy(make_config(make_proxy, pg, []))
    with connect(proxy, autocommit=True) as c:
        sql = f"SELECT count(*) FROM {t}"
        assert c.execute(sql, prepare=True).fetchone() == (3,)
        assert c.execute(sql, prepare=True).fetchone() == (3,)  # Bind/Execute of the cached statement
        reload(proxy, make_config(make_proxy, pg, [deny_select(t)]))
        with pytest.raises(psycopg.Error) as ei:
            row = c.execute(sql, prepare=True).fetchone()
            pytest.fail(f"the statement prepared before the reload ran: {row}")
        assert_denied(ei.value)


# ---- cursors declared before the reload --------------------------------------------------------

def test_cursor_fetch_judged_by_new_policy(make_proxy, pg, t):
    """A cursor declared while reading t was allowed reads t at each FETCH: after a rule denying it
    is loaded, FETCH and MOVE are refused (simple and extended protocol, WITH HOLD or within the
    transaction), and a CLOSEd name, or one declared again over another table, reads what it names now."""
    proxy = make_proxy(make_config(make_proxy, pg, []))
    with connect(proxy, dbname="dev", autocommit=True) as c, connect(proxy, dbname="dev") as in_tx, \
            connect(proxy, dbname="dev") as in_tx2:
        cur = psycopg.ClientCursor(c)
        cur.execute(f"DECLARE held CURSOR WITH HOLD FOR SELECT * FROM {t} ORDER BY id")
        cur.execute(f"DECLARE  \"Other\"  NO SCROLL CURSOR WITH HOLD FOR SELECT * FROM {t} ORDER BY id")
        assert cur.execute("FETCH 1 FROM held").fetchall() == [(1, "a")]
        in_tx.execute(f"DECLARE tx_cur CURSOR FOR SELECT * FROM {t} ORDER BY id")
        assert in_tx.execute("FETCH NEXT FROM tx_cur").fetchall() == [(1, "a")]
        # psycopg's own server-side cursor (DECLARE ... / FETCH FORWARD n / CLOSE)
        named = in_tx2.cursor(name="psy_cur")
        named.execute(f"SELECT * FROM {t} ORDER BY id")
        assert named.fetchone() == (1, "a")

        reload(proxy, make_config(make_proxy, pg, [deny_select(t)]))

        for sql in ("FETCH 1 FROM held", "FETCH ALL IN held", "MOVE NEXT IN held", 'FETCH "Other"'):
            with pytest.raises(psycopg.Error) as ei:
                cur.execute(sql)
            assert_denied(ei.value)
        with pytest.raises(psycopg.Error) as ei:  # FETCH sent with the extended protocol
            c.execute("FETCH 1 FROM held", prepare=True)
        assert_denied(ei.value)
        with pytest.raises(psycopg.Error) as ei:
            in_tx.execute("FETCH NEXT FROM tx_cur")
        assert_denied(ei.value)
        in_tx.rollback()
        with pytest.raises(psycopg.Error) as ei:
            named.fetchone()
        assert_denied(ei.value)
        in_tx2.rollback()

        # CLOSE forgets the cursor; the same name declared over an allowed query reads that one
        cur.execute("CLOSE held")
        cur.execute("DECLARE held CURSOR WITH HOLD FOR SELECT 42")
        assert cur.execute("FETCH 1 FROM held").fetchall() == [(42,)]
        # a name declared again without CLOSE (the DECLARE fails: it exists) is judged by both
        with pytest.raises(psycopg.Error):
            cur.execute("DECLARE held CURSOR WITH HOLD FOR SELECT 43")
        assert cur.execute("FETCH 1 FROM held").fetchall() == []
        cur.execute("CLOSE ALL")
        assert c.execute("SELECT count(*) FROM pg_cursors").fetchone() == (0,)


def test_cursor_names_follow_transactions(make_proxy, pg, t):
    """A cursor without HOLD ends with its transaction: the name declared again in the next one,
    over another query, is judged by that query only (no refusal from the old one)."""
    proxy = make_proxy(make_config(make_proxy, pg, [deny_select(t)]))
    with connect(proxy, dbname="dev") as c:
        cur = psycopg.ClientCursor(c)
        with pytest.raises(psycopg.Error) as ei:
            cur.execute(f"DECLARE c1 CURSOR FOR SELECT * FROM {t}")
        assert_denied(ei.value)
        c.rollback()
        for i in range(20):  # more than the versions kept per name
            cur.execute(f"DECLARE c1 CURSOR FOR SELECT {i}")
            assert cur.execute("FETCH 1 FROM c1").fetchall() == [(i,)]
            c.commit()


def test_cursor_is_forgotten_only_when_its_close_ran(make_proxy, pg, t):
    """A CLOSE, CLOSE ALL or DISCARD ALL that failed, was skipped after an earlier error, or was only
    parsed closed nothing: the cursor still reads t, and its FETCH is still judged (found by
    adversarial testing: the proxy forgot the cursor when it judged the CLOSE, and FETCH read t)."""
    import pgwire
    from conftest import USERS
    proxy = make_proxy(make_config(make_proxy, pg, []))
    with connect(proxy, dbname="dev", autocommit=True) as c:
        cur = psycopg.ClientCursor(c)
        cur.execute(f"DECLARE h CURSOR WITH HOLD FOR SELECT * FROM {t} ORDER BY id")
        reload(proxy, make_config(make_proxy, pg, [deny_select(t)]))
        for text in ("SELECT 1/0; CLOSE h", "SELECT 1/0; CLOSE ALL", "SELECT 1; DISCARD ALL",
                     "BEGIN; SELECT 1/0; CLOSE h"):
            with pytest.raises(psycopg.Error):
                cur.execute(text)
            if c.info.transaction_status != TransactionStatus.IDLE:
                c.execute("ROLLBACK")
            select_denied(c, "FETCH ALL FROM h")
        # only parsed, never executed
        res = c.pgconn.prepare(b"only_parsed", b"CLOSE h")
        assert res.status == psycopg.pq.ExecStatus.COMMAND_OK, res.error_message
        select_denied(c, "FETCH ALL FROM h")
        # closed for real (simple and extended protocol): forgotten; the name reads what it names now
        cur.execute("CLOSE h")
        cur.execute("DECLARE h CURSOR WITH HOLD FOR SELECT 7")
        assert cur.execute("FETCH ALL FROM h").fetchall() == [(7,)]
        c.execute("CLOSE h")
        cur.execute("DECLARE h CURSOR WITH HOLD FOR SELECT 8")
        assert cur.execute("FETCH ALL FROM h").fetchall() == [(8,)]

    # pipelined: the idle ReadyForQuery of an earlier Query is not the end of a later DECLARE's transaction
    proxy2 = make_proxy(make_config(make_proxy, pg, []))
    s = pgwire.Conn(proxy2.port)
    try:
        s.startup("alice", USERS["alice"], database="dev")
        s.send(pgwire.query("SELECT 1") + pgwire.query(f"BEGIN; DECLARE c CURSOR FOR SELECT * FROM {t} ORDER BY id"))
        s.until_ready()
        s.until_ready()
        reload(proxy2, make_config(make_proxy, pg, [deny_select(t)]))
        s.send(pgwire.query("FETCH ALL FROM c"))
        msgs = s.until_ready()
        errors = [pgwire.parse_error_fields(body) for typ, body in msgs if typ == b"E"]
        assert errors and errors[0].get("C") == "42501", msgs
        assert not [m for m in msgs if m[0] == b"D"], msgs
    finally:
        s.close()


def test_a_cursor_declared_too_often_is_refused_on_every_target(make_proxy, pg, t):
    """More DECLAREs of one name than the proxy keeps (failed ones count: the proxy cannot tell):
    FETCH is refused with policy.untracked_cursor, on a non-production target too (found by
    adversarial testing: as opaque code it ran there). psycopg's named cursors, closed each time,
    are not affected."""
    proxy = make_proxy(make_config(make_proxy, pg, []))
    with connect(proxy, dbname="dev", autocommit=True) as c:
        cur = psycopg.ClientCursor(c)
        cur.execute(f"DECLARE h CURSOR WITH HOLD FOR SELECT * FROM {t}")
        for i in range(9):
            with pytest.raises(psycopg.errors.DuplicateCursor):
                cur.execute(f"DECLARE h CURSOR WITH HOLD FOR SELECT {i}")
        select_denied(c, "FETCH ALL FROM h", rule="policy.untracked_cursor")
        cur.execute("CLOSE h")
        for i in range(12):
            with c.cursor(name="reused", withhold=True) as named:
                named.execute(f"SELECT * FROM {t} WHERE id = %s", (1 + i % 3,))
                assert named.fetchone()[0] == 1 + i % 3


def test_sql_execute_of_a_protocol_fetch_reads_its_cursor(make_proxy, pg, t):
    """A FETCH prepared with the extended protocol and run with SQL EXECUTE reads its cursor: judged
    as the cursor's query (found by adversarial testing: it was judged as a plain FETCH)."""
    proxy = make_proxy(make_config(make_proxy, pg, []))
    with connect(proxy, dbname="dev", autocommit=True) as c:
        cur = psycopg.ClientCursor(c)
        cur.execute(f"DECLARE h CURSOR WITH HOLD FOR SELECT * FROM {t} ORDER BY id")
        res = c.pgconn.prepare(b"sf", b"FETCH 1 FROM h")
        assert res.status == psycopg.pq.ExecStatus.COMMAND_OK, res.error_message
        assert cur.execute("EXECUTE sf").fetchall() == [(1, "a")]
        reload(proxy, make_config(make_proxy, pg, [deny_select(t)]))
        select_denied(c, "EXECUTE sf")
        with pytest.raises(psycopg.Error) as ei:
            cur.execute("SELECT 1; EXECUTE sf")
        assert_denied(ei.value)
        cur.execute("CLOSE h")
        cur.execute("DECLARE h CURSOR WITH HOLD FOR SELECT 5, 'x'")
        assert cur.execute("EXECUTE sf").fetchall() == [(5, "x")]


# ---- protocol portals bound before the reload ----------------------------------------------------

def _wire_helpers():
    import struct

    import pgwire

    def parse(name: bytes, sql: bytes) -> bytes:
        return pgwire.message(b"P", name + b"\0" + sql + b"\0" + struct.pack("!H", 0))

    def bind(portal: bytes, stmt: bytes) -> bytes:
        return pgwire.message(b"B", portal + b"\0" + stmt + b"\0" + struct.pack("!HHH", 0, 0, 0))

    def execute(portal: bytes, n: int) -> bytes:
        return pgwire.message(b"E", portal + b"\0" + struct.pack("!I", n))

    sync = pgwire.message(b"S")
    return pgwire, parse, bind, execute, sync


def _rows_and_error(msgs) -> tuple[list[bytes], dict | None]:
    import pgwire
    rows = [body for t, body in msgs if t == b"D"]
    err = next((pgwire.parse_error_fields(body) for t, body in msgs if t == b"E"), None)
    return rows, err


def test_portal_bound_before_reload_is_judged_again(make_proxy, pg, t):
    """A portal bound while reading t was allowed, and read a few rows at a time (Execute with a row
    limit, as JDBC's fetch size and pipelining drivers do), is judged again at its next Execute
    after a rule denying t is loaded: named and unnamed portals, and SQL FETCH of a named portal's
    name. Before, the rows kept coming under the old policy."""
    pgwire, parse, bind, execute, sync = _wire_helpers()
    proxy = make_proxy(make_config(make_proxy, pg, []))
    from conftest import USERS
    s = pgwire.connect(proxy.port, "alice", USERS["alice"], database="dev")
    try:
        sql = f"SELECT id FROM {t} ORDER BY id".encode()
        for portal in (b"p1", b""):
            reload(proxy, make_config(make_proxy, pg, []))
            s.send(pgwire.query("BEGIN"))
            s.until_ready()
            st = b"st_" + (portal or b"unnamed")
            s.send(parse(st, sql) + bind(portal, st) + execute(portal, 1) + bind(b"other", st) +
                   execute(b"other", 1) + sync)
            rows, err = _rows_and_error(s.until_ready())
            assert err is None and len(rows) == 2, (portal, rows, err)

            reload(proxy, make_config(make_proxy, pg, [deny_select(t)]))

            s.send(execute(portal, 1) + sync)
            rows, err = _rows_and_error(s.until_ready())
            assert rows == [] and err is not None, (portal, rows, err)
            assert err["C"] == "42501" and err.get("D") == f"rule: {RULE}", (portal, err)
            s.send(pgwire.query("ROLLBACK"))
            s.until_ready()
            # bound again under the new policy: the Bind is refused
            s.send(pgwire.query("BEGIN"))
            s.until_ready()
            s.send(parse(b"", sql) + bind(portal, b"") + execute(portal, 1) + sync)
            rows, err = _rows_and_error(s.until_ready())
            assert rows == [] and err is not None and err["C"] == "42501", (portal, rows, err)
            s.send(pgwire.query("ROLLBACK"))
            s.until_ready()
    finally:
        s.close()

    # SQL FETCH of a protocol portal's name reads the portal's statement, under today's policy
    reload(proxy, make_config(make_proxy, pg, []))
    s = pgwire.connect(proxy.port, "alice", USERS["alice"], database="dev")
    try:
        s.send(pgwire.query("BEGIN"))
        s.until_ready()
        s.send(parse(b"st3", f"SELECT id FROM {t} ORDER BY id".encode()) + bind(b"p3", b"st3") + execute(b"p3", 1) +
               sync)
        rows, err = _rows_and_error(s.until_ready())
        assert err is None and len(rows) == 1, (rows, err)
        assert s.simple_query("FETCH 1 FROM p3") == [["2"]]
        reload(proxy, make_config(make_proxy, pg, [deny_select(t)]))
        s.send(pgwire.query("FETCH 1 FROM p3"))
        rows, err = _rows_and_error(s.until_ready())
        assert rows == [] and err is not None and err["C"] == "42501" and err.get("D") == f"rule: {RULE}", (rows, err)
        s.send(pgwire.query("ROLLBACK"))
        s.until_ready()
        # A portal of an unrelated statement keeps running after the reload; portals end with their
        # transaction, so the same name bound again in the next one is judged by what it holds then.
        s.send(pgwire.query("BEGIN"))
        s.until_ready()
        s.send(parse(b"ok", b"SELECT g FROM generate_series(1, 3) g") + bind(b"p3", b"ok") + execute(b"p3", 1) + sync)
        rows, err = _rows_and_error(s.until_ready())
        assert err is None and len(rows) == 1, (rows, err)
        reload(proxy, make_config(make_proxy, pg, [deny_select(t), {"name": "other", "when": {"tables": ["nothing_here"]},
                                                                       "action": "deny"}]))
        s.send(execute(b"p3", 1) + sync)
        rows, err = _rows_and_error(s.until_ready())
        assert err is None and rows and rows[0].endswith(b"2"), (rows, err)
        assert s.simple_query("FETCH 1 FROM p3") == [["3"]]
        s.send(pgwire.query("COMMIT"))
        s.until_ready()
        # A portal closed (protocol Close) and bound again under its name reads only the new statement.
        reload(proxy, make_config(make_proxy, pg, []))
        s.send(pgwire.query("BEGIN"))
        s.until_ready()
        close_p4 = pgwire.message(b"C", b"Pp4\0")
        s.send(bind(b"p4", b"st3") + execute(b"p4", 1) + close_p4 + sync)
        rows, err = _rows_and_error(s.until_ready())
        assert err is None and len(rows) == 1, (rows, err)
        s.send(bind(b"p4", b"ok") + execute(b"p4", 1) + sync)
        rows, err = _rows_and_error(s.until_ready())
        assert err is None and len(rows) == 1, (rows, err)
        reload(proxy, make_config(make_proxy, pg, [deny_select(t)]))
        s.send(execute(b"p4", 1) + sync)
        rows, err = _rows_and_error(s.until_ready())
        assert err is None and rows and rows[0].endswith(b"2"), (rows, err)
        s.send(pgwire.query("COMMIT"))
        s.until_ready()
    finally:
        s.close()


def test_refusals_after_a_reload_stick_on_retry_savepoint_and_cursor_execute(make_proxy, pg, t):
    """Found by adversarial testing (round 2 on the portal fix): a refused Bind of the unnamed
    statement was forgotten and the retry ran it; a refused Execute forgot its portal and, after
    ROLLBACK TO SAVEPOINT (the portal predates the savepoint), the next Execute read it; a SQL
    cursor read with a protocol Execute of its name was never judged again."""
    pgwire, parse, bind, execute, sync = _wire_helpers()
    from conftest import USERS
    proxy = make_proxy(make_config(make_proxy, pg, []))
    s = pgwire.connect(proxy.port, "alice", USERS["alice"], database="dev")
    sql = f"SELECT id FROM {t} ORDER BY id".encode()

    def refused(msgs) -> None:
        rows, err = _rows_and_error(msgs)
        assert rows == [] and err is not None and err["C"] == "42501" and err.get("D") == f"rule: {RULE}", (rows, err)

    try:
        s.send(parse(b"", sql) + sync)
        s.until_ready()
        s.send(pgwire.query("BEGIN"))
        s.until_ready()
        s.send(parse(b"s1", sql) + bind(b"p1", b"s1") + sync)
        s.until_ready()
        s.send(pgwire.query("SAVEPOINT sp"))
        s.until_ready()
        s.send(pgwire.query(f"DECLARE c1 CURSOR WITH HOLD FOR SELECT * FROM {t} ORDER BY id"))
        s.until_ready()

        reload(proxy, make_config(make_proxy, pg, [deny_select(t)]))

        s.send(execute(b"p1", 1) + sync)
        refused(s.until_ready())
        s.send(pgwire.query("ROLLBACK TO SAVEPOINT sp"))
        s.until_ready()
        s.send(execute(b"p1", 1) + sync)
        refused(s.until_ready())
        s.send(pgwire.query("ROLLBACK"))
        s.until_ready()
        for _ in range(2):  # the unnamed statement, bound again and again
            s.send(bind(b"", b"") + execute(b"", 0) + sync)
            refused(s.until_ready())
        s.send(execute(b"c1", 1) + sync)
        refused(s.until_ready())
        s.send(pgwire.query("CLOSE c1"))
        s.until_ready()
        assert s.simple_query("SELECT 'alive'") == [["alive"]]
    finally:
        s.close()


def test_copy_data_pipelined_behind_the_copy_keeps_the_batch_count(make_proxy, pg, t):
    """Found by adversarial testing: CopyData and CopyDone sent in one write with the COPY's
    Execute (before the CopyInResponse came back) left the proxy believing the COPY was still
    reading; the next Sync was not counted, and a later idle ReadyForQuery made it forget a portal
    bound inside a transaction, which then read a table a reloaded rule denied."""
    pgwire, parse, bind, execute, sync = _wire_helpers()
    from conftest import USERS
    pg.psql("DROP TABLE IF EXISTS rl_copy_target; CREATE TABLE rl_copy_target (x int)")
    proxy = make_proxy(make_config(make_proxy, pg, []))
    s = pgwire.connect(proxy.port, "alice", USERS["alice"], database="dev")
    try:
        s.send(parse(b"", b"COPY rl_copy_target FROM STDIN") + bind(b"", b"") + execute(b"", 0) +
               pgwire.message(b"d", b"1\n") + pgwire.message(b"c") + pgwire.message(b"H"))
        got = []
        while not got or got[-1][0] != b"C":
            got.append(s.read_message())
        s.send(sync)
        assert s.until_ready()[-1] == (b"Z", b"I")
        s.send(pgwire.query("SELECT 1") + parse(b"", b"BEGIN") + bind(b"", b"") + execute(b"", 0) +
               parse(b"sx", f"SELECT id FROM {t} ORDER BY id".encode()) + bind(b"px", b"sx") + sync)
        s.until_ready()
        s.until_ready()
        reload(proxy, make_config(make_proxy, pg, [deny_select(t)]))
        s.send(execute(b"px", 1) + sync)
        rows, err = _rows_and_error(s.until_ready())
        assert rows == [] and err is not None and err["C"] == "42501", (rows, err)
        s.send(pgwire.query("ROLLBACK"))
        s.until_ready()
    finally:
        s.close()
    assert pg.psql("SELECT count(*) FROM rl_copy_target") == "1"


def test_names_longer_than_the_server_keeps_are_one_name(make_proxy, pg, t):
    """The server keys prepared statements and portals by their first 63 bytes; the proxy keyed
    them by the whole name, so a Bind (or Execute) under another spelling of the same 63 bytes
    reached a statement (or portal) judged under the old policy without being judged again (found
    by adversarial testing)."""
    pgwire, parse, bind, execute, sync = _wire_helpers()
    from conftest import USERS
    proxy = make_proxy(make_config(make_proxy, pg, []))
    s = pgwire.connect(proxy.port, "alice", USERS["alice"], database="dev")
    sql = f"SELECT id FROM {t} ORDER BY id".encode()
    stmt, portal = b"s" * 63, b"p" * 63
    try:
        s.send(parse(stmt + b"A", sql) + sync)
        s.until_ready()
        s.send(pgwire.query("BEGIN"))
        s.until_ready()
        s.send(bind(portal + b"A", stmt + b"A") + sync)
        s.until_ready()
        reload(proxy, make_config(make_proxy, pg, [deny_select(t)]))
        s.send(execute(portal + b"B", 1) + sync)  # the same portal to the server
        rows, err = _rows_and_error(s.until_ready())
        assert rows == [] and err is not None and err["C"] == "42501", (rows, err)
        s.send(pgwire.query("ROLLBACK"))
        s.until_ready()
        for name in (stmt + b"B", stmt):  # the same statement to the server
            s.send(bind(b"", name) + execute(b"", 0) + sync)
            rows, err = _rows_and_error(s.until_ready())
            assert rows == [] and err is not None and err["C"] == "42501", (name, rows, err)
    finally:
        s.close()


def _session_with_parsed(make_proxy, pg, t: str, name: str):
    """A proxy and a raw session on the dev target that parsed `name` as a SELECT of t."""
    import pgwire
    import struct
    from conftest import USERS
    proxy = make_proxy(make_config(make_proxy, pg, []))
    user, password = next(iter(USERS.items()))
    c = pgwire.connect(proxy.port, user, password, database="dev")
    c.send(pgwire.message(b"P", name.encode() + b"\0SELECT id FROM " + t.encode() + b" WHERE id = $1\0"
                          + struct.pack("!H", 0)) + pgwire.message(b"S"))
    c.until_ready()
    return proxy, c


def _bind_errors(c, name: str) -> list[dict]:
    """Bind of `name` with the value 1 to the unnamed portal, Execute, Sync: the errors."""
    import pgwire
    import struct
    bind = pgwire.message(b"B", b"\0" + name.encode() + b"\0" + struct.pack("!HHi", 0, 1, 1) + b"1" + struct.pack("!H", 0))
    c.send(bind + pgwire.message(b"E", b"\0" + struct.pack("!I", 0)) + pgwire.message(b"S"))
    return [pgwire.parse_error_fields(b) for tp, b in c.until_ready() if tp == b"E"]


def test_a_protocol_statement_name_reused_by_sql_prepare_is_judged_as_both(make_proxy, pg, t, direct):
    """Found by adversarial testing: the session DEALLOCATEs a statement it parsed with the
    extended protocol and PREPAREs an UPDATE under its name with SQL; after a reload denied
    UPDATE, a protocol Bind of the name was judged as the SELECT once parsed and ran the UPDATE."""
    proxy, c = _session_with_parsed(make_proxy, pg, t, "foo")
    try:
        c.simple_query(f"DEALLOCATE foo; PREPARE foo(int) AS UPDATE {t} SET v = 'changed' WHERE id = $1")
        deny_update = {"name": RULE, "when": {"tables": [t], "statements": ["update"]}, "action": "deny"}
        reload(proxy, make_config(make_proxy, pg, [deny_update]))
        errors = _bind_errors(c, "foo")
        assert errors and errors[0]["C"] == "42501", errors
    finally:
        c.close()
    assert direct.execute(f"SELECT v FROM {t} WHERE id = 1").fetchone() == ("a",)


def test_a_protocol_statement_name_prepared_again_too_often_is_refused_at_bind(make_proxy, pg, t, direct):
    """Found by adversarial testing: after nine DEALLOCATE/PREPARE rounds under a protocol
    statement's name the proxy stopped tracking the texts, and the Bind passed as the SELECT."""
    proxy, c = _session_with_parsed(make_proxy, pg, t, "bar")
    try:
        for i in range(9):
            what = f"UPDATE {t} SET v = 'changed' WHERE id = $1" if i == 8 else f"SELECT {i} + $1"
            c.simple_query(f"DEALLOCATE bar; PREPARE bar(int) AS {what}")
        errors = _bind_errors(c, "bar")
        assert errors and errors[0]["C"] == "42501" and "policy.untracked_statement" in errors[0].get("D", ""), errors
    finally:
        c.close()
    assert direct.execute(f"SELECT v FROM {t} WHERE id = 1").fetchone() == ("a",)


def test_a_cursor_declared_again_right_after_its_close_in_one_query_is_judged_by_what_it_reads(make_proxy, pg, t,
                                                                                               direct):
    """`CLOSE h; DECLARE h ... FROM other` in one Query: the CLOSE, applied when the Query ended,
    dropped the cursor the same Query declared after it, so a FETCH of it (and a protocol Execute
    of its name) was no longer judged against what it reads and ran past a rule loaded later
    (found by adversarial testing)."""
    import pgwire
    import struct
    from conftest import USERS
    other = f"{t}_other"
    direct.execute(f"DROP TABLE IF EXISTS {other}")
    direct.execute(f"CREATE TABLE {other} (y int)")
    direct.execute(f"INSERT INTO {other} VALUES (10), (20)")
    proxy = make_proxy(make_config(make_proxy, pg, []))
    s = pgwire.connect(proxy.port, "alice", USERS["alice"], database="dev")
    try:
        s.send(pgwire.query(f"DECLARE h CURSOR WITH HOLD FOR SELECT id FROM {t}"))
        s.until_ready()
        s.send(pgwire.query(f"CLOSE h; DECLARE h CURSOR WITH HOLD FOR SELECT y FROM {other}"))
        s.until_ready()
        reload(proxy, make_config(make_proxy, pg, [deny_select(other)]))
        for msg in (pgwire.query("FETCH 1 FROM h"),
                    pgwire.message(b"E", b"h\0" + struct.pack("!I", 1)) + pgwire.message(b"S")):
            s.send(msg)
            got = s.until_ready()
            errors = [pgwire.parse_error_fields(b) for t_, b in got if t_ == b"E"]
            assert [t_ for t_, _ in got if t_ == b"D"] == [], got  # no row of it left
            assert errors and errors[0]["C"] == "42501" and errors[0].get("D") == f"rule: {RULE}", got
        # Declared in a Query after a CLOSE of its name, and a DECLARE before a CLOSE in one Query:
        # the latter is closed.
        s.send(pgwire.query(f"DECLARE k CURSOR WITH HOLD FOR SELECT id FROM {t}; CLOSE k"))
        s.until_ready()
        s.send(pgwire.query("FETCH 1 FROM k"))
        got = s.until_ready()
        errors = [pgwire.parse_error_fields(b) for t_, b in got if t_ == b"E"]
        assert errors and errors[0]["C"] == "34000", got  # the server's: no such cursor
    finally:
        s.close()
        direct.execute(f"DROP TABLE IF EXISTS {other}")


def test_psycopg_statement_cache_deallocations_do_not_fill_the_proxys_tables(make_proxy, pg, t):
    """Found by a psycopg trial: psycopg 3 keeps 100 prepared statements and DEALLOCATEs the oldest
    with SQL; the proxy forgot a statement only at a protocol Close, so after 100,000 statements
    in a session (about 150 alive on the server) every newly prepared one was refused after a
    SET search_path. A DEALLOCATE that ran now makes the proxy forget the name."""
    proxy = make_proxy(make_config(make_proxy, pg, []))
    n = 100_050
    with connect(proxy, autocommit=True, prepare_threshold=0, dbname="dev") as c:
        for start in range(0, n, 5000):
            with c.pipeline():
                for i in range(start, min(n, start + 5000)):
                    c.execute(f"select {i} + %s::int", (1,))
        assert c.execute("select count(*) from pg_prepared_statements").fetchone()[0] <= 200
        assert c.execute("set search_path = public").statusmessage == "SET"
        assert c.execute("select 'fresh statement', %s::int", (1,)).fetchone() == ("fresh statement", 1)


def test_many_prepare_deallocate_pairs_leave_later_statements_alone(make_proxy, pg, t):
    """Found by a psycopg trial: 10,001 SQL PREPARE/DEALLOCATE pairs (none alive at the end) left
    the proxy believing an unrecorded PREPARE might still hold any name, and every later prepared
    statement of the session was refused."""
    proxy = make_proxy(make_config(make_proxy, pg, []))
    with connect(proxy, autocommit=True, dbname="dev") as c:
        with c.pipeline():
            for i in range(10_001):
                c.execute(f"prepare sp{i} as select {i}")
                c.execute(f"deallocate sp{i}")
        assert [c.execute("select %s::int * 2", (k,)).fetchone()[0] for k in range(7)] == [0, 2, 4, 6, 8, 10, 12]


def test_a_name_prepared_while_the_proxy_kept_too_many_is_not_bound_unjudged(make_proxy, pg, t, direct):
    """With more SQL PREPAREd names than the proxy records, a protocol Bind of a name it does not
    know may run one of the unrecorded statements: refused, as EXECUTE of it is, until a
    DEALLOCATE ALL leaves nothing unrecorded. (A DEALLOCATE now makes the proxy forget a name, so
    this must hold for a name whose protocol statement it forgot too.)"""
    import pgwire
    proxy, c = _session_with_parsed(make_proxy, pg, t, "keep")
    try:
        for start in range(0, 10_000, 1000):
            c.simple_query(";".join(f"PREPARE fill{i} AS SELECT {i}" for i in range(start, start + 1000)))
        c.simple_query("DEALLOCATE keep")  # forgotten: its place in the proxy's table is free
        c.simple_query("PREPARE refill AS SELECT 1")  # taken again
        c.simple_query(f"PREPARE keep(int) AS UPDATE {t} SET v = 'changed' WHERE id = $1")  # not recorded
        deny_update = {"name": RULE, "when": {"tables": [t], "statements": ["update"]}, "action": "deny"}
        reload(proxy, make_config(make_proxy, pg, [deny_update]))
        errors = _bind_errors(c, "keep")
        assert errors and errors[0]["C"] == "42501" and "policy.untracked_statement" in errors[0].get("D", ""), errors
        c.simple_query("DEALLOCATE ALL")
        c.send(pgwire.message(b"P", b"again\0SELECT $1::int\0" + b"\0\0") + pgwire.message(b"S"))
        c.until_ready()
        assert _bind_errors(c, "again") == []
    finally:
        c.close()
    assert direct.execute(f"SELECT v FROM {t} WHERE id = 1").fetchone() == ("a",)


# ---- forgetting names only for what ran (found by an attack round on the DEALLOCATE change) ----

def _msgs():
    import pgwire
    import struct
    m = pgwire.message
    return (lambda name, sql: m(b"P", name.encode() + b"\0" + sql.encode() + b"\0" + struct.pack("!H", 0)),
            lambda portal, name: m(b"B", portal.encode() + b"\0" + name.encode() + b"\0" + struct.pack("!HHH", 0, 0, 0)),
            lambda portal: m(b"E", portal.encode() + b"\0" + struct.pack("!I", 0)),
            m(b"S"))


def _raw_session(make_proxy, pg, database: str):
    """A proxy with no rules and a raw protocol session on `database` (dev: test; app: production)."""
    import pgwire
    from conftest import USERS
    proxy = make_proxy(make_config(make_proxy, pg, []))
    user, password = next(iter(USERS.items()))
    return proxy, pgwire.connect(proxy.port, user, password, database=database)


def _deny_update(table: str) -> dict:
    return {"name": RULE, "when": {"tables": [table], "statements": ["update"]}, "action": "deny"}


def _run(c, data: bytes) -> list[dict]:
    import pgwire
    c.send(data)
    return [pgwire.parse_error_fields(b) for tp, b in c.until_ready() if tp == b"E"]


@pytest.mark.parametrize("setup,only_bound", [
    ("PREPARE x AS UPDATE {t} SET v = 'changed'", "DEALLOCATE x"),
    ("PREPARE x AS UPDATE {t} SET v = 'changed'", "DISCARD ALL"),
    (None, "DEALLOCATE x"),
    (None, "DISCARD ALL"),
])
def test_a_deallocate_only_bound_forgets_nothing(make_proxy, pg, t, direct, setup, only_bound):
    """A Parse and Bind of DEALLOCATE x (or DISCARD ALL) with no Execute runs nothing, yet the proxy
    forgot x while the server kept it; after a reload denied UPDATE, a Bind of x ran it."""
    import pgwire
    parse, bind, execute, sync = _msgs()
    proxy, c = _raw_session(make_proxy, pg, "dev")
    try:
        if setup:
            c.simple_query(setup.format(t=t))
        else:
            assert _run(c, parse("x", f"UPDATE {t} SET v = 'changed'") + sync) == []
        assert _run(c, parse("dx", only_bound) + bind("p", "dx") + sync) == []
        reload(proxy, make_config(make_proxy, pg, [_deny_update(t)]))
        errors = _run(c, bind("", "x") + execute("") + sync)
        assert errors and errors[0]["C"] == "42501", errors
    finally:
        c.close()
    assert direct.execute(f"SELECT v FROM {t} WHERE id = 1").fetchone() == ("a",)


def test_a_prepare_run_again_by_its_portal_is_recorded_again(make_proxy, pg, t, direct):
    """A protocol statement whose text is PREPARE u re-creates u each time it runs: after
    DEALLOCATE u the proxy forgot u, the statement ran again, and a Bind of u after a reload that
    denied UPDATE ran unjudged."""
    import pgwire
    parse, bind, execute, sync = _msgs()
    proxy, c = _raw_session(make_proxy, pg, "dev")
    try:
        assert _run(c, parse("s1", f"PREPARE u AS UPDATE {t} SET v = 'changed'") + bind("", "s1") + execute("") + sync) == []
        c.simple_query("DEALLOCATE u")
        assert _run(c, bind("", "s1") + execute("") + sync) == []  # u again, on the server
        reload(proxy, make_config(make_proxy, pg, [_deny_update(t)]))
        errors = _run(c, bind("", "u") + execute("") + sync)
        assert errors and errors[0]["C"] == "42501", errors
        errors = _run(c, pgwire.query("EXECUTE u"))
        assert errors and errors[0]["C"] == "42501", errors
    finally:
        c.close()
    assert direct.execute(f"SELECT v FROM {t} WHERE id = 1").fetchone() == ("a",)


def test_a_cursor_close_only_bound_keeps_the_cursor_judged(make_proxy, pg, t, direct):
    """A Parse and Bind of CLOSE cur with no Execute made the proxy forget a WITH HOLD cursor, and
    a FETCH of it after a reload denied reading its table returned the rows."""
    import pgwire
    parse, bind, execute, sync = _msgs()
    proxy, c = _raw_session(make_proxy, pg, "dev")
    try:
        c.simple_query(f"DECLARE cur CURSOR WITH HOLD FOR SELECT id, v FROM {t}")
        assert _run(c, parse("cc", "CLOSE cur") + bind("p", "cc") + sync) == []
        reload(proxy, make_config(make_proxy, pg, [deny_select(t)]))
        c.send(pgwire.query("FETCH ALL FROM cur"))
        msgs = c.until_ready()
        assert not [b for tp, b in msgs if tp == b"D"], msgs
        assert [pgwire.parse_error_fields(b)["C"] for tp, b in msgs if tp == b"E"] == ["42501"], msgs
    finally:
        c.close()


@pytest.mark.parametrize("encoding", ["SQL_ASCII", "LATIN1"])
def test_a_long_non_ascii_statement_name_is_refused(make_proxy, pg, direct, encoding):
    """The server cuts names at 63 bytes in the database's encoding, the proxy read them as UTF-8:
    in a SQL_ASCII or LATIN1 database a protocol Bind of a long non-ASCII name ran the UPDATE that
    SQL PREPARE had put under it, after a rule denied UPDATE. Such names are refused (0A000)."""
    import pgwire
    from conftest import USERS
    db = f"enc_{encoding.lower()}"
    direct.execute(f"DROP DATABASE IF EXISTS {db}")
    direct.execute(f"CREATE DATABASE {db} ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    parse, bind, execute, sync = _msgs()
    cfg = make_config(make_proxy, pg, [])
    cfg["targets"].append(target("enc", pg.port, password=pg.password))
    cfg["targets"][-1]["backend"]["database"] = db
    proxy = make_proxy(cfg)
    user, password = next(iter(USERS.items()))
    name = "a" * 61 + "é"  # 63 bytes in UTF-8, 62 in LATIN1
    # client_encoding UTF8 (a LATIN1 database's default would be LATIN1, under which the proxy
    # already refuses long non-ASCII names at the protocol level)
    c = pgwire.connect(proxy.port, user, password, database="enc", client_encoding="UTF8")
    try:
        errors = _run(c, pgwire.query(f'PREPARE "{name}" AS SELECT 1'))
        assert errors and errors[0]["C"] == "0A000" and "62 bytes" in errors[0]["M"], errors
        errors = _run(c, parse(name, "SELECT 1") + sync)
        assert errors and errors[0]["C"] == "0A000", errors
        errors = _run(c, bind("", name) + execute("") + sync)
        assert errors and errors[0]["C"] == "0A000", errors
        # 64 bytes: the proxy cuts it at 63 bytes, in the middle of the "é" (the server then rejects the
        # name's bytes); either way nothing runs under it
        longer = "a" * 62 + "é"
        for data in (pgwire.query(f'PREPARE "{longer}" AS SELECT 1'), parse(longer, "SELECT 1") + sync,
                     bind("", longer) + execute("") + sync):
            errors = _run(c, data)
            assert errors and errors[0]["C"] in ("0A000", "22021"), errors
        assert _run(c, parse("a" * 70, "SELECT 1") + bind("", "a" * 70) + execute("") + sync) == []  # ASCII: fine
    finally:
        c.close()
        direct.execute(f"DROP DATABASE IF EXISTS {db}")


@pytest.mark.parametrize("variant", ["failed_bind_over_a_cursor", "rollback_to_then_declare"])
def test_a_named_portal_out_of_step_with_the_server_forgets_nothing(make_proxy, pg, t, direct, variant):
    """Found by an attack round: a named portal the proxy recorded as DEALLOCATE x while the
    server's portal of that name was a cursor (the Bind failed over an existing cursor, or
    ROLLBACK TO SAVEPOINT dropped it and DECLARE took the name): its Execute made the proxy forget
    x, and after a reload denied UPDATE, EXECUTE x ran the prepared UPDATE."""
    import pgwire
    parse, bind, execute, sync = _msgs()
    proxy, c = _raw_session(make_proxy, pg, "app")  # production: opaque code refused
    try:
        c.simple_query(f"PREPARE x AS UPDATE {t} SET v = 'changed' WHERE id = 1")
        if variant == "failed_bind_over_a_cursor":
            c.simple_query("BEGIN; DECLARE p CURSOR FOR SELECT 1; SAVEPOINT s")
            assert _run(c, parse("dx", "DEALLOCATE x") + bind("p", "dx") + sync)  # 42P03: p exists
            c.simple_query("ROLLBACK TO s")
        else:
            c.simple_query("BEGIN; SAVEPOINT s")
            assert _run(c, parse("dx", "DEALLOCATE x") + bind("p", "dx") + sync) == []
            c.simple_query("ROLLBACK TO s; DECLARE p CURSOR FOR SELECT 1")
        assert _run(c, execute("p") + sync) == []  # reads the cursor
        c.simple_query("COMMIT")
        reload(proxy, make_config(make_proxy, pg, [_deny_update(t)]))
        _run(c, pgwire.query("PREPARE x AS SELECT 1"))  # 42P05 on the server: x still holds the UPDATE
        errors = _run(c, pgwire.query("EXECUTE x"))
        assert errors and errors[0]["C"] == "42501", errors
    finally:
        c.close()
    assert direct.execute(f"SELECT v FROM {t} WHERE id = 1").fetchone() == ("a",)


def test_a_cursor_close_through_a_stale_named_portal_keeps_the_cursor_judged(make_proxy, pg, t, direct):
    """As above, with CLOSE c bound under a portal name that ROLLBACK TO then gave to another cursor:
    its Execute made the proxy forget the WITH HOLD cursor c, and a FETCH of c after a reload
    denied its table returned the rows."""
    import pgwire
    parse, bind, execute, sync = _msgs()
    proxy, c = _raw_session(make_proxy, pg, "dev")
    try:
        c.simple_query(f"DECLARE c CURSOR WITH HOLD FOR SELECT id, v FROM {t}")
        c.simple_query("BEGIN; SAVEPOINT s")
        assert _run(c, parse("cc", "CLOSE c") + bind("p", "cc") + sync) == []
        c.simple_query("ROLLBACK TO s; DECLARE p CURSOR FOR SELECT 1")
        assert _run(c, execute("p") + sync) == []
        c.simple_query("COMMIT")
        reload(proxy, make_config(make_proxy, pg, [deny_select(t)]))
        c.send(pgwire.query("FETCH ALL FROM c"))
        msgs = c.until_ready()
        assert not [b for tp, b in msgs if tp == b"D"], msgs
        assert [pgwire.parse_error_fields(b)["C"] for tp, b in msgs if tp == b"E"] == ["42501"], msgs
    finally:
        c.close()
