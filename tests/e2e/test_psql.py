"""psql through the proxy: meta-commands, multi-statement, errors, \\copy, \\c, Ctrl-C."""
from __future__ import annotations

import os
import signal
import subprocess
import time

from conftest import USERS, connect, psql


def test_describe_commands(gh):
    psql(gh, "-v", "ON_ERROR_STOP=1", "-c",
         "drop table if exists psql_desc; create table psql_desc (id int primary key, name text not null, "
         "note varchar(20) default 'n/a')")
    out = psql(gh, "-c", r"\d").stdout
    assert "psql_desc" in out and "table" in out

    out = psql(gh, "-c", r"\dt").stdout
    assert "psql_desc" in out
    assert "List of relations" in out

    out = psql(gh, "-c", r"\d+ psql_desc").stdout
    assert 'Table "public.psql_desc"' in out
    for piece in ("id", "integer", "name", "text", "not null", "character varying(20)", "'n/a'::character varying",
                  "Storage", '"psql_desc_pkey" PRIMARY KEY, btree (id)', "Access method: heap"):
        assert piece in out, f"{piece!r} missing from \\d+ output:\n{out}"


def test_multi_statement_c(gh):
    r = psql(gh, "-tA", "-c", "select 1; select 2")
    assert r.stdout.split() == ["1", "2"]


def test_error_then_session_continues(gh):
    script = "\\set VERBOSITY verbose\nselect 1/0;\nselect 'still ' || 'here' as answer;\nselect pg_backend_pid();\n"
    r = psql(gh, "-tA", input=script, check=False)
    assert r.returncode == 0, r.stderr  # without ON_ERROR_STOP psql carries on
    assert "ERROR:  22012: division by zero" in r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "still here"
    assert lines[1].isdigit()


def test_error_stops_with_on_error_stop(gh):
    r = psql(gh, "-tA", "-v", "ON_ERROR_STOP=1", input="select 1/0;\nselect 'not reached';\n", check=False)
    assert r.returncode == 3
    assert "division by zero" in r.stderr
    assert "not reached" not in r.stdout


def test_copy_from_and_to_file(gh, tmp_path):
    src = tmp_path / "in.tsv"
    rows = [f"{i}\tname {i}\t{'x' * (i % 50)}" for i in range(1, 5001)]
    rows.append("5001\t\\N\ttab\\there")
    src.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out.tsv"
    csv_out = tmp_path / "out.csv"
    script = f"""
drop table if exists psql_copy;
create table psql_copy (id int, name text, pad text);
\\copy psql_copy from '{src}'
\\copy (select * from psql_copy order by id) to '{out}'
\\copy (select id, name from psql_copy where id <= 3 or id = 5001 order by id) to '{csv_out}' with (format csv, header)
select count(*), count(name), max(id) from psql_copy;
"""
    r = psql(gh, "-tA", "-v", "ON_ERROR_STOP=1", input=script)
    assert "COPY 5001" in r.stdout
    assert "5001|5000|5001" in r.stdout
    assert out.read_text() == src.read_text()
    assert csv_out.read_text().splitlines() == ["id,name", "1,name 1", "2,name 2", "3,name 3", "5001,"]


def test_connect_to_other_database_via_star_target(gh):
    psql(gh, "-v", "ON_ERROR_STOP=1", "-c", "drop database if exists e2e_other")
    psql(gh, "-v", "ON_ERROR_STOP=1", "-c", "create database e2e_other")
    script = "select current_database();\n\\c e2e_other\nselect current_database();\n" \
             "create table made_here (x int);\nselect count(*) from made_here;\n"
    r = psql(gh, "-q", "-tA", "-v", "ON_ERROR_STOP=1", input=script)
    assert r.stdout.split() == ["postgres", "e2e_other", "0"], r.stdout + r.stderr
    # and directly by name
    with connect(gh, dbname="e2e_other") as c:
        assert c.execute("select current_database(), to_regclass('made_here') is not null").fetchone() == \
            ("e2e_other", True)


def test_ctrl_c_cancels_running_statement(gh):
    env = dict(os.environ, PGPASSWORD=USERS["alice"], PGCONNECT_TIMEOUT="10")
    p = subprocess.Popen(["psql", "-X", "-h", "127.0.0.1", "-p", str(gh.port), "-U", "alice", "-d", "app", "-c",
                          "select pg_sleep(60)"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(1.5)
        assert p.poll() is None, "psql ended before it was interrupted: " + p.stderr.read()
        t0 = time.time()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=10)
        elapsed = time.time() - t0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert "canceling statement due to user request" in err, err
    assert elapsed < 5, f"cancel took {elapsed:.1f}s"
    assert p.returncode != 0


def test_large_object_import_export_function_call(gh, tmp_path):
    """\\lo_import / \\lo_export go through libpq's fast-path FunctionCall messages."""
    src = tmp_path / "blob.bin"
    src.write_bytes(bytes(range(256)) * 2000)  # 512,000 bytes
    dst = tmp_path / "blob.out"
    r = psql(gh, "-v", "ON_ERROR_STOP=1", "-c", f"\\lo_import '{src}'")
    oid = r.stdout.strip().split()[-1]
    assert oid.isdigit(), r.stdout
    psql(gh, "-v", "ON_ERROR_STOP=1", "-c", f"\\lo_export {oid} '{dst}'")
    assert dst.read_bytes() == src.read_bytes()
    psql(gh, "-v", "ON_ERROR_STOP=1", "-c", f"\\lo_unlink {oid}")


def test_pg_dump_and_pg_restore_through_the_proxy(gh, tmp_path):
    """A DBA's round trip through the proxy: pg_dump (custom format, and the directory format with
    two parallel workers sharing an exported snapshot), then pg_restore with two jobs into a new
    database reached through the `*` target."""
    psql(gh, "-v", "ON_ERROR_STOP=1", "-c",
         "drop table if exists dump_src; create table dump_src (id int primary key, v text, j jsonb); "
         "insert into dump_src select g, 'v' || g, jsonb_build_object('g', g) from generate_series(1, 20000) g; "
         "create index dump_src_v on dump_src (v)")
    psql(gh, "-c", "drop database if exists e2e_restored")
    psql(gh, "-c", "create database e2e_restored")
    env = dict(os.environ, PGPASSWORD=USERS["alice"], PGCONNECT_TIMEOUT="10")
    env.pop("PGSSLMODE", None)
    conn = ["-h", "127.0.0.1", "-p", str(gh.port), "-U", "alice"]
    for args in (["pg_dump", "-Fc", "-t", "dump_src", "-f", str(tmp_path / "dump.fc")],
                 ["pg_dump", "-Fd", "-j", "2", "-f", str(tmp_path / "dump.dir")]):
        r = subprocess.run(args + conn + ["app"], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"{args}: {r.stderr}\n--- proxy log ---\n{gh.log()[-2000:]}"
    assert (tmp_path / "dump.dir" / "toc.dat").exists()
    r = subprocess.run(["pg_restore", "-j", "2", "-d", "e2e_restored", *conn, str(tmp_path / "dump.fc")], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr + "\n--- proxy log ---\n" + gh.log()[-2000:]
    out = psql(gh, "-tA", "-c", "select count(*), sum(id), sum((j->>'g')::int) from dump_src; "
                                "select indexname from pg_indexes where tablename = 'dump_src' order by 1",
               dbname="e2e_restored").stdout.split()
    assert out == ["20000|200010000|200010000", "dump_src_pkey", "dump_src_v"], out
    psql(gh, "-c", "drop database e2e_restored")
