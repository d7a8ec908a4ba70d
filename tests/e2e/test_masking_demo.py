"""Result masking against the demo schema (demo/schema.sql) with the demo's own classification
and rules (scripts/demo.py): every lineage case over the demo's customers, through psql, psycopg's
simple protocol and the extended protocol in text and binary format, for bob (an analyst: masked)
and priya (the privacy team: not masked). The bytes each receives are searched for every stored
name, e-mail address and phone number of the demo's customers."""
from __future__ import annotations

import importlib.util
import os
import subprocess

import psycopg
import pytest

from conftest import config_for, psql, target
from test_masking import Tap, run_mode
from tests.harness import Gatehouse, hash_password

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DB = "gh_mask_demo"


def _demo_module():
    spec = importlib.util.spec_from_file_location("gh_demo", os.path.join(REPO, "scripts", "demo.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def demo_proxy(pg, user_hashes, tmp_path_factory):
    demo = _demo_module()
    with psycopg.connect(pg.dsn(), autocommit=True) as d:
        d.execute(f"DROP DATABASE IF EXISTS {DB}")
        d.execute(f"CREATE DATABASE {DB}")
    r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(pg.port), "-U",
                        "postgres", "-d", DB, "-f", os.path.join(REPO, "demo", "schema.sql")],
                       capture_output=True, text=True, env=dict(os.environ, PGPASSWORD=pg.password))
    assert r.returncode == 0, r.stderr
    with psycopg.connect(pg.dsn(DB), autocommit=True) as d:
        # A view over the demo's PII (not its restricted columns, which the demo denies outright):
        # SELECT *, TABLE and whole-row references over customers' personal data go through it.
        d.execute("CREATE VIEW customer_contacts AS SELECT id, full_name, email, phone, date_of_birth FROM customers")
    with psycopg.connect(pg.dsn(DB)) as d:
        raw = [v for row in d.execute("SELECT full_name, email, phone FROM customers") for v in row]
    users = {u["name"]: u for u in demo.USERS}
    cfg = config_for(pg, user_hashes)
    # dana, a developer (not one of the demo's users): masked like bob, but may write, for RETURNING.
    users["dana"] = {"name": "dana", "password": "dana-test-pass", "groups": ["developer"]}
    cfg["users"] = [{"name": n, "password": hash_password(users[n]["password"]), "groups": users[n]["groups"]}
                    for n in ("bob", "priya", "dana")]
    cfg["targets"] = [target("app", pg.port, password=pg.password, database=DB)]
    cfg["classification"] = demo.CLASSIFICATION
    cfg["rules"] = demo.RULES
    cfg["masking"] = {"hash_key": "demo-test-key-0123456789"}
    proxy = Gatehouse(cfg, workdir=tmp_path_factory.mktemp("gh-mask-demo")).start()
    yield proxy, Tap(proxy.port), users, raw
    proxy.stop()


# Over the demo's customers (full_name, email, phone are pii; national_id and card_number are
# refused outright for non-DBAs by the demo's restricted rule, so they are left out).
DEMO_LINEAGE = [
    "SELECT full_name, email, phone FROM customers ORDER BY id LIMIT 20",
    "SELECT lower(email), upper(full_name), phone || '' FROM customers ORDER BY id LIMIT 20",
    "SELECT format('%s <%s>', full_name, email) FROM customers ORDER BY id LIMIT 20",
    "SELECT concat(full_name, ' ', phone) FROM customers ORDER BY id LIMIT 20",
    "SELECT string_agg(email, ',') FROM customers",
    "SELECT array_agg(full_name) FROM customers",
    "SELECT json_agg(phone) FROM customers",
    "SELECT row_to_json(x) FROM (SELECT id, full_name, email FROM customers ORDER BY id LIMIT 20) x",
    "SELECT x FROM (SELECT id, email, phone FROM customers ORDER BY id LIMIT 20) x",
    "SELECT c.email, o.status FROM customers c JOIN orders o ON o.customer_id = c.id ORDER BY o.id LIMIT 20",
    "SELECT (SELECT email FROM customers c WHERE c.id = o.customer_id) FROM orders o ORDER BY o.id LIMIT 20",
    "WITH t AS (SELECT full_name AS n FROM customers) SELECT trim(n) FROM t",
    "SELECT email FROM customers UNION ALL SELECT 'none'",
    "SELECT substr(phone, 1, 20), coalesce(NULL, email) FROM customers ORDER BY id LIMIT 20",
    "SELECT full_name::varchar, email::text, phone::char(40), date_of_birth::text FROM customers ORDER BY id LIMIT 20",
    "SELECT * FROM customer_contacts ORDER BY id LIMIT 20",
    "TABLE customer_contacts",
    "SELECT v FROM customer_contacts v ORDER BY id LIMIT 20",
    "SELECT to_jsonb(v.*), row_to_json(v) FROM customer_contacts v ORDER BY id LIMIT 20",
    "SELECT string_agg(v::text, ';') FROM customer_contacts v",
]


def _run_as(tap: Tap, users: dict, name: str, sql: str, mode: str) -> tuple[int, int]:
    """Runs `sql` as `name` through the tap in `mode` (psql, or run_mode's); returns the rows and
    columns received (psql: the output lines, and 0). psql must exit 0."""
    password = users[name]["password"]
    if mode == "psql":
        out = psql(tap.port, "-A", "-t", "-c", sql, user=name, env={"PGPASSWORD": password}).stdout
        return len(out.splitlines()), 0
    with psycopg.connect(host="127.0.0.1", port=tap.port, user=name, password=password, dbname="app",
                         autocommit=True, connect_timeout=10) as c:
        cur = run_mode(c, sql, mode)
        return len(cur.fetchall()), len(cur.description or [])


def _assert_seen(raw: list[str], data: bytes, masked: bool, what: str) -> None:
    """A masked identity received none of the stored values; an unmasked one some (so the search
    can fail)."""
    seen = [v for v in raw if v.encode() in data]
    if masked:
        assert not seen, f"{what} received {seen[:5]}"
    else:
        assert seen, f"{what} does not see the stored values"


@pytest.mark.parametrize("sql", DEMO_LINEAGE)
@pytest.mark.parametrize("mode", ["psql", "simple", "extended-text", "extended-binary"])
def test_demo_schema_masked_for_analysts_and_not_for_privacy(demo_proxy, pg, sql, mode):
    proxy, tap, users, raw = demo_proxy
    with psycopg.connect(pg.dsn(DB)) as d:
        want = d.execute(sql).fetchall()
    for name, masked in (("bob", True), ("priya", False)):
        tap.take()
        rows, width = _run_as(tap, users, name, sql, mode)
        assert rows >= len(want) if mode == "psql" else (rows, width) == (len(want), len(want[0])), (name, rows)
        _assert_seen(raw, tap.take(), masked, f"{mode}: {sql}: {name}")


@pytest.mark.parametrize("binary", [False, True])
def test_demo_cursors_and_prepared_statements_are_masked_for_analysts(demo_proxy, pg, binary):
    """Cursors (DECLARE/FETCH, as psycopg's server-side cursors send them) and prepared statements
    (SQL PREPARE/EXECUTE and the protocol's named statements) over the demo's customers."""
    proxy, tap, users, raw = demo_proxy
    sql = "SELECT full_name, email, phone FROM customers ORDER BY id LIMIT 20"
    for name, masked in (("bob", True), ("priya", False)):
        tap.take()
        with psycopg.connect(host="127.0.0.1", port=tap.port, user=name, password=users[name]["password"],
                             dbname="app", connect_timeout=10) as c:
            with c.cursor(name="demo_cur", binary=binary) as cur:  # DECLARE ... ; FETCH
                cur.execute(sql)
                assert len(cur.fetchmany(5)) == 5 and len(cur.fetchall()) == 15
            c.commit()
            c.autocommit = True
            for _ in range(3):  # prepared by psycopg after the first run (prepare=True: at once)
                assert len(c.cursor().execute(sql, prepare=True, binary=binary).fetchall()) == 20
            cur = psycopg.ClientCursor(c)
            cur.execute("PREPARE demo_p AS SELECT email, concat(full_name, phone) FROM customers ORDER BY id LIMIT 20")
            assert len(cur.execute("EXECUTE demo_p").fetchall()) == 20
            cur.execute("DEALLOCATE demo_p")
        data = tap.take()
        seen = [v for v in raw if v.encode() in data]
        if masked:
            assert not seen, f"bob received {seen[:5]}"
        else:
            assert seen, "priya does not see the stored values"


@pytest.mark.parametrize("mode", ["psql", "simple", "extended-text", "extended-binary"])
def test_demo_returning_is_masked_for_a_masked_writer(demo_proxy, pg, mode):
    """RETURNING of UPDATE (also in a writable CTE) over the demo's customers, for dana (a developer:
    masked, and allowed to write) and priya (not masked). The updates change nothing."""
    proxy, tap, users, raw = demo_proxy
    # (SET of a masked column from itself would store masked values: refused, tested elsewhere)
    statements = [
        "UPDATE customers SET created_at = created_at WHERE id <= 20 RETURNING full_name, email, phone",
        "WITH u AS (UPDATE customers SET created_at = created_at WHERE id <= 20 RETURNING id, full_name, email, phone) "
        "SELECT lower(email), full_name || '', phone FROM u",
    ]
    for name, masked in (("dana", True), ("priya", False)):
        tap.take()
        for sql in statements:
            _run_as(tap, users, name, sql, mode)
        _assert_seen(raw, tap.take(), masked, f"{mode}: RETURNING: {name}")
