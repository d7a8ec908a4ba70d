#!/usr/bin/python3
"""`make demo`: a throwaway PostgreSQL 15 with sample PII, and Gatehouse in front of it.

    scripts/demo.sh                 start everything, print how to connect, wait for Ctrl-C
    scripts/demo.sh --check         start everything, run one query through the proxy, clean up

Everything lives under one temp directory (PostgreSQL data and log, Gatehouse config and log);
Ctrl-C (SIGINT), SIGTERM or SIGHUP stops Gatehouse, then PostgreSQL, and removes it.
Uses the real-parts harness in tests/harness (the same one the end-to-end tests use).
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness import BINARY, PG_BIN, Gatehouse, PgCluster, free_port, hash_password, wait_port  # noqa: E402

SCHEMA = REPO / "demo" / "schema.sql"
DATABASE = "app"
# Demo-only static users; printed on screen. Not secrets: the proxy listens on loopback only.
USERS = [
    {"name": "alice", "password": "alice-demo-pass", "groups": ["dba"]},
    {"name": "bob", "password": "bob-demo-pass", "groups": ["analyst"]},
]
# The statement the banner shows being blocked, and the rule that blocks it.
BLOCKED_SQL = "DELETE FROM orders"
BLOCKED_RULE = "guardrail.unbounded_write"
CHECK_SQL = ("SELECT id, full_name, email, national_id, card_number, "
             "current_setting('gatehouse.identity', true) AS identity "
             "FROM customers ORDER BY id LIMIT 3")


class Stop(Exception):
    """Raised from the signal handler so `finally` blocks clean up."""


def _on_signal(signum, _frame):
    raise Stop(signal.Signals(signum).name)


def say(msg: str = "") -> None:
    print(msg, flush=True)


def step(msg: str) -> None:
    say(f"==> {msg}")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_port(requested: int | None, preferred: int | None) -> int:
    if requested:
        if not port_free(requested):
            raise SystemExit(f"demo: port {requested} on 127.0.0.1 is in use")
        return requested
    if preferred and port_free(preferred):
        return preferred
    return free_port()


def preflight() -> None:
    problems = []
    if not BINARY.exists():
        problems.append(f"{BINARY} not found (run `make build`, or `make demo` which builds it)")
    if not (PG_BIN / "initdb").exists():
        problems.append(f"{PG_BIN}/initdb not found (Debian package postgresql-15; `scripts/install-deps.sh`)")
    if not shutil.which("psql"):
        problems.append("psql not found (Debian package postgresql-client)")
    if not SCHEMA.exists():
        problems.append(f"{SCHEMA} not found")
    if problems:
        raise SystemExit("demo: cannot start:\n  " + "\n  ".join(problems))


def load_schema(pg: PgCluster) -> None:
    pg.psql(f"CREATE DATABASE {DATABASE}")
    env = dict(os.environ, PGPASSWORD=pg.password)
    r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(pg.port),
                        "-U", pg.user, "-d", DATABASE, "-f", str(SCHEMA)],
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"loading {SCHEMA} failed:\n{r.stderr}")


def gatehouse_config(pg: PgCluster, port: int, admin_port: int, audit_key: Path | None = None) -> dict:
    backend = {"host": "127.0.0.1", "port": pg.port}
    login = {"user": pg.user, "password": pg.password}
    return {
        "listen": {"address": "127.0.0.1", "port": port},
        "threads": 2,
        "admin": {"address": "127.0.0.1", "port": admin_port},
        "limits": {"shutdown_timeout": "5s"},
        "log": {"level": "info", "format": "text"},
        "users": [{"name": u["name"], "password": hash_password(u["password"]), "groups": u["groups"]}
                  for u in USERS],
        "targets": [
            # Marked production: the built-in guardrail pack is on (docs/policy.md).
            {"name": DATABASE, "environment": "production", "backend": dict(backend, database=DATABASE),
             "login": dict(login)},
            # Any other dbname (postgres, a database you CREATE, \c otherdb) passes through.
            {"name": "*", "environment": "demo", "backend": dict(backend), "login": dict(login)},
        ],
        # Every login, statement and decision goes to an embedded SQLite store beside the config,
        # hash-chained; the chain head is signed every 10 s and at shutdown.
        "audit": {"durability": "required", "sinks": [{"type": "sqlite", "path": "audit.db"}],
                  **({"checkpoint": {"key_file": str(audit_key), "interval": "10s"}} if audit_key else {})},
    }


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def conninfo(gh: Gatehouse, user: str, dbname: str = DATABASE) -> str:
    return f"host=127.0.0.1 port={gh.port} dbname={dbname} user={user}"


def banner(base: Path, pg: PgCluster, gh: Gatehouse) -> None:
    admin = f"http://127.0.0.1:{gh.admin_port}"
    width = 78
    say()
    say("=" * width)
    say(" Gatehouse demo is running")
    say("=" * width)
    say()
    say(" Connect through the proxy (another terminal):")
    say()
    for u in USERS:
        say(f"   # {u['name']} (groups: {', '.join(u['groups'])})")
        say(f"   PGPASSWORD={u['password']} psql \"{conninfo(gh, u['name'])}\"")
        say()
    say(" Static users:")
    for u in USERS:
        say(f"   {u['name']:<6} password {u['password']:<17} groups {', '.join(u['groups'])}")
    say()
    say(f" Targets:  dbname=app -> database app (environment production: guardrails on);")
    say(f"           any other dbname passes through (environment demo)")
    say(f" Try:      SELECT full_name, email, national_id, card_number FROM customers LIMIT 5;")
    say(f"           SELECT current_setting('gatehouse.identity');")
    say(f"           \\d+ customers")
    say()
    say(f" Blocked:  {BLOCKED_SQL};   -- refused with 42501 by {BLOCKED_RULE} (no WHERE clause)")
    say(" Why:")
    say(f"   {BINARY} explain --config {gh.config_path} \\")
    say(f"       --identity alice --target {DATABASE} \"{BLOCKED_SQL}\"")
    say()
    say(" Audit (every login, statement, decision and result; hash-chained and signed):")
    say(f"   {BINARY} audit search --config {gh.config_path} --limit 20")
    say(f"   {BINARY} audit search --config {gh.config_path} --decision deny")
    say(f"   {BINARY} audit tail -f --config {gh.config_path}")
    say(f"   {BINARY} audit verify --config {gh.config_path}")
    say(f"   {BINARY} audit report --config {gh.config_path}")
    say()
    say(" Admin endpoints:")
    say(f"   {admin}/healthz")
    say(f"   {admin}/metrics")
    say(f"   {admin}/api/audit?limit=20")
    say()
    say(" Files (removed when the demo stops):")
    say(f"   config        {gh.config_path}")
    say(f"   proxy log     {gh.log_path}     (tail -f it to watch sessions)")
    say(f"   audit store   {gh.workdir / 'audit.db'}")
    say(f"   postgres log  {pg.log}")
    say(f"   sample data   {SCHEMA}")
    say()
    say(f" PostgreSQL 15 (direct, bypassing the proxy): 127.0.0.1:{pg.port}, user {pg.user}, "
        f"password {pg.password}")
    say()
    say(" Press Ctrl-C to stop Gatehouse and PostgreSQL and remove the temp data.")
    say("=" * width, )


def check(pg: PgCluster, gh: Gatehouse) -> None:
    import psycopg

    admin = f"http://127.0.0.1:{gh.admin_port}"
    status, body = http_get(f"{admin}/healthz")
    say(f"GET {admin}/healthz -> {status} {body.strip()}")
    if status != 200:
        raise RuntimeError("/healthz is not 200")

    user = USERS[0]
    say(f"psycopg: {conninfo(gh, user['name'])}")
    say(f"  {CHECK_SQL}")
    with psycopg.connect(conninfo(gh, user["name"]), password=user["password"], connect_timeout=10) as conn:
        with conn.cursor() as cur:
            cur.execute(CHECK_SQL)
            names = [d.name for d in cur.description]
            rows = cur.fetchall()
            cur.execute("SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM orders), "
                        "(SELECT sum(amount) FROM orders)")
            customers, orders, total = cur.fetchone()
    if len(rows) != 3:
        raise RuntimeError(f"expected 3 rows, got {len(rows)}")
    widths = [max(len(n), *(len(str(r[i])) for r in rows)) for i, n in enumerate(names)]
    say("  " + " | ".join(n.ljust(w) for n, w in zip(names, widths)))
    say("  " + "-+-".join("-" * w for w in widths))
    for r in rows:
        say("  " + " | ".join(str(v).ljust(w) for v, w in zip(r, widths)))
    say(f"  customers={customers} orders={orders} sum(amount)={total}")

    say(f"psycopg: {BLOCKED_SQL}  (must be refused by {BLOCKED_RULE})")
    with psycopg.connect(conninfo(gh, user["name"]), password=user["password"], connect_timeout=10) as conn:
        try:
            conn.execute(BLOCKED_SQL)
            raise RuntimeError(f"{BLOCKED_SQL} was not refused")
        except psycopg.errors.InsufficientPrivilege as e:
            say(f"  refused: {e.diag.sqlstate} {e.diag.message_primary}")
            if BLOCKED_RULE not in (e.diag.message_primary or ""):
                raise RuntimeError(f"refused, but not by {BLOCKED_RULE}: {e}")
        conn.rollback()
        (left,), = conn.execute("SELECT count(*) FROM orders").fetchall()
        say(f"  orders still there: {left}")
    r = subprocess.run([str(BINARY), "explain", "--config", str(gh.config_path), "--identity", "alice",
                        "--target", DATABASE, BLOCKED_SQL], capture_output=True, text=True, timeout=30)
    say(f"gatehouse explain -> exit {r.returncode}")
    for line in r.stdout.splitlines():
        say("  " + line)
    if r.returncode != 0 or BLOCKED_RULE not in r.stdout:
        raise RuntimeError(f"gatehouse explain did not name {BLOCKED_RULE}: {r.stdout}{r.stderr}")

    status, body = http_get(f"{admin}/metrics")
    counters = [line for line in body.splitlines() if line and not line.startswith("#")]
    say(f"GET {admin}/metrics -> {status}, {len(counters)} samples")
    if status != 200:
        raise RuntimeError("/metrics is not 200")

    # The refusal is in the audit trail, and the trail verifies.
    def audit(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BINARY), "audit", *args, "--config", str(gh.config_path)], capture_output=True,
                              text=True, timeout=30)
    deadline = time.time() + 10
    while True:
        r = audit("search", "--decision", "deny", "--format", "jsonl")
        if BLOCKED_RULE in r.stdout or time.time() > deadline:
            break
        time.sleep(0.1)
    say(f"gatehouse audit search --decision deny -> exit {r.returncode}")
    if r.returncode != 0 or BLOCKED_RULE not in r.stdout:
        raise RuntimeError(f"the refusal is not in the audit trail: {r.stdout}{r.stderr}")
    say(f"  {len(r.stdout.splitlines())} record(s), rule {BLOCKED_RULE}")
    r = audit("verify")
    say(f"gatehouse audit verify -> exit {r.returncode}")
    for line in r.stdout.splitlines()[:3]:
        say("  " + line)
    if r.returncode != 0:
        raise RuntimeError(f"audit verify failed: {r.stdout}{r.stderr}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true",
                    help="start everything, run one query through the proxy with psycopg, stop, exit 0")
    ap.add_argument("--port", type=int, help="proxy port (default 6432 if free, else any free port)")
    ap.add_argument("--admin-port", type=int, help="admin HTTP port (default 9187 if free, else any free port)")
    args = ap.parse_args()

    preflight()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)

    # One directory for everything; world-traversable so the postgres user (when we are root)
    # can reach its data directory below it.
    base = Path(tempfile.mkdtemp(prefix="gatehouse-demo-"))
    os.chmod(base, 0o755)
    pg: PgCluster | None = None
    gh: Gatehouse | None = None
    rc = 0
    try:
        step(f"starting a throwaway PostgreSQL 15 cluster in {base / 'postgres'}")
        pg = PgCluster(base=base / "postgres", password="pg-" + secrets.token_hex(8))
        pg.init().start()
        step(f"PostgreSQL listening on 127.0.0.1:{pg.port}; loading {SCHEMA.relative_to(REPO)} into database "
             f"'{DATABASE}'")
        load_schema(pg)

        # --check never takes the well-known ports: CI may run it next to a real demo.
        port = pick_port(args.port, None if args.check else 6432)
        admin_port = pick_port(args.admin_port, None if args.check else 9187)
        gh_dir = base / "gatehouse"
        gh_dir.mkdir()
        step(f"starting Gatehouse ({BINARY}) on 127.0.0.1:{port}, admin on 127.0.0.1:{admin_port}")
        audit_key = gh_dir / "audit-checkpoint.key"
        subprocess.run([str(BINARY), "audit", "keygen", "--out", str(audit_key)], check=True, capture_output=True)
        gh = Gatehouse(gatehouse_config(pg, port, admin_port, audit_key), workdir=gh_dir)
        gh.start()
        os.chmod(gh.config_path, 0o600)  # it holds the backend password
        wait_port(gh.admin_port)

        if args.check:
            check(pg, gh)
            say("demo check: OK")
        else:
            banner(base, pg, gh)
            while True:
                code = gh.proc.poll()
                if code is not None:
                    say(f"\ndemo: gatehouse exited with status {code}; last log lines:")
                    say("\n".join(gh.log().splitlines()[-20:]))
                    rc = 1
                    break
                time.sleep(0.5)
    except Stop as s:
        say(f"\n==> {s}: stopping")
    except Exception as e:  # noqa: BLE001 - report, clean up, exit non-zero
        say(f"demo: FAILED: {e}")
        if gh is not None:
            say("--- gatehouse log (last 30 lines) ---")
            say("\n".join(gh.log().splitlines()[-30:]))
        rc = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if gh is not None and gh.proc is not None:
            step("stopping Gatehouse")
            gh.stop(timeout=15)
        if pg is not None:
            step("stopping PostgreSQL")
            pg.stop()
        shutil.rmtree(base, ignore_errors=True)
        step(f"removed {base}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
