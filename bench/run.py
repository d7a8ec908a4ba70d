#!/usr/bin/python3
"""Gatehouse benchmark: pgbench through direct / pgbouncer / Gatehouse, interleaved, plus idle
connection memory. `make bench` runs it; `bench/README.md` explains the output.

One PostgreSQL 15 cluster (`pgbench -i -s 10`), one pgbouncer (session mode) and one Gatehouse in
front of the same database. For every client count and query mode, each round runs pgbench
against the three targets back to back (the order rotates each round), and the table shows the
median TPS per target, the ratios, and each proxy's CPU time per transaction. Then N idle,
fully authenticated client connections are opened to each proxy and their resident memory is
compared before and after.

Only the standard library and the test harness (tests/harness) are used.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import datetime
import hashlib
import hmac
import json
import os
import platform
import pwd
import resource
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from harness import BINARY, Gatehouse, PgCluster, basic_config, free_port, hash_password, wait_port  # noqa: E402

BENCH_USER = "bench"
BENCH_PASSWORD = "bench-password"
TARGET_DB = "app"  # the dbname clients use for both proxies (mapped to the backend's "postgres")
IDLE_APP_NAME = "gh-bench-idle"
# "gatehouse" runs with audit off (the proxy alone, as pgbouncer); "gh_audit" is a second instance
# with audit on, durability required, into its embedded SQLite store: every statement waits for
# its record to be committed before it is forwarded.
TARGETS = ("direct", "pgbouncer", "gatehouse", "gh_audit")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- small process helpers -----------------------------------------------------------------

def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise KeyError("VmRSS")


def established_on_port(port: int) -> int:
    """Established TCP connections whose local port is `port` (a proxy's accepted clients)."""
    want = f":{port:04X}"
    n = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split(None, 4)
                    if parts[3] == "01" and parts[1].endswith(want):
                        n += 1
        except FileNotFoundError:
            pass
    return n


def raise_nofile() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as e:
            log(f"could not raise RLIMIT_NOFILE to {hard}: {e}")
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def first_line(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.splitlines()[0].strip()
    except Exception:  # noqa: BLE001 - informational only
        return "?"


# ---- pgbouncer -----------------------------------------------------------------------------

class PgBouncer:
    """pgbouncer in session mode in front of `pg`, run as the postgres user when we are root."""

    def __init__(self, workdir: Path, pg: PgCluster, password: str, max_client_conn: int, pool_size: int):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.ini = self.dir / "pgbouncer.ini"
        self.log_path = self.dir / "pgbouncer.log"
        self.proc: subprocess.Popen | None = None
        # A SCRAM verifier would be the fairer secret, but pgbouncer 1.18 then reuses the client's
        # SCRAM keys for the server login of the forced user and fails; a plain password works.
        (self.dir / "userlist.txt").write_text(f'"{BENCH_USER}" "{password}"\n')
        self.ini.write_text(f"""[databases]
{TARGET_DB} = host=127.0.0.1 port={pg.port} dbname=postgres user={pg.user} password={pg.password}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {self.dir / 'userlist.txt'}
pool_mode = session
max_client_conn = {max_client_conn}
default_pool_size = {pool_size}
max_db_connections = 0
max_user_connections = 0
server_reset_query = DISCARD ALL
ignore_startup_parameters = extra_float_digits
logfile = {self.log_path}
pidfile = {self.dir / 'pgbouncer.pid'}
""")
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            pw = pwd.getpwnam("postgres")
            for p in [self.dir, *self.dir.iterdir()]:
                os.chown(p, pw.pw_uid, pw.pw_gid)
            os.chmod(self.dir / "userlist.txt", 0o600)
            os.chmod(self.ini, 0o600)

    def start(self) -> "PgBouncer":
        kw: dict = {}
        if self.as_postgres:
            kw = {"user": "postgres", "group": "postgres", "extra_groups": []}
        out = open(self.dir / "pgbouncer.stdout", "ab")
        # Own session: a Ctrl-C on the terminal reaches us, and we stop pgbouncer ourselves.
        self.proc = subprocess.Popen(["pgbouncer", str(self.ini)], stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=self.dir, **kw)
        try:
            wait_port(self.port, timeout=15)
        except TimeoutError:
            self.stop()
            raise RuntimeError("pgbouncer did not start:\n" + self.log())
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        text = ""
        for name in ("pgbouncer.stdout", "pgbouncer.log"):
            try:
                text += (self.dir / name).read_text(errors="replace")
            except FileNotFoundError:
                pass
        return text

    def stop(self) -> None:
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # 1.18: immediate shutdown
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---- pgbench runs --------------------------------------------------------------------------

class Target:
    def __init__(self, name: str, port: int, user: str, password: str, dbname: str, cpu=None, prepare=None):
        self.name, self.port, self.user, self.password, self.dbname = name, port, user, password, dbname
        self.cpu = cpu  # callable -> CPU seconds of the proxy process, or None
        self.prepare = prepare  # callable(clients) run before each pgbench run, outside the measurement


def parse_pgbench(out: str) -> dict:
    res: dict = {}
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("number of transactions actually processed:"):
            res["transactions"] = int(line.split(":")[1].split("/")[0].strip())
        elif line.startswith("number of failed transactions:"):
            res["failed"] = int(line.split(":")[1].split()[0])
        elif line.startswith("tps =") and "without initial connection time" in line:
            res["tps"] = float(line.split("=")[1].split()[0])
        elif line.startswith("initial connection time ="):
            res["connect_ms"] = float(line.split("=")[1].split()[0])
        elif line.startswith("latency average ="):
            res["latency_ms"] = float(line.split("=")[1].split()[0])
    return res


def run_pgbench(t: Target, clients: int, mode: str, duration: int, jobs: int, connect_allowance: int = 0) -> dict:
    """One pgbench run. pgbench's -T clock starts before its clients connect, so -T is
    `duration` plus an allowance for connecting (the caller's estimate from earlier runs), so every
    target gets about `duration` seconds of transactions."""
    env = dict(os.environ, PGPASSWORD=t.password, PGSSLMODE="disable", PGGSSENCMODE="disable",
               PGAPPNAME="gh-bench")
    cmd = ["pgbench", "-n", "-S", "-T", str(duration + connect_allowance), "-c", str(clients), "-j", str(jobs),
           "-M", mode,
           "-h", "127.0.0.1", "-p", str(t.port), "-U", t.user, t.dbname]
    if t.prepare:
        t.prepare(clients)
    cpu_start = t.cpu() if t.cpu else None
    cpu_connected = None
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if t.cpu:
        # Sample the proxy's CPU once every client is connected, so the per-transaction figure
        # covers the steady state and not the logins (pgbench connects all clients first; when the
        # last TCP connection is up at most `jobs` logins are still in flight).
        deadline = time.time() + 30
        while proc.poll() is None and time.time() < deadline:
            if established_on_port(t.port) >= clients:
                cpu_connected = t.cpu()
                break
            time.sleep(0.005)
    try:
        out, err = proc.communicate(timeout=duration + 120)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise RuntimeError(f"pgbench against {t.name} did not finish")
    cpu_end = t.cpu() if t.cpu else None
    res = parse_pgbench(out)
    res["T"] = duration + connect_allowance
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench -c {clients} -M {mode} against {t.name} failed (exit {proc.returncode}):\n"
                           f"{out[-1500:]}\n{err[-1500:]}")
    if "tps" not in res:
        # pgbench's -T clock starts before its clients connect: when connecting takes longer than
        # -T, no transaction runs. Record the run as empty instead of failing the whole benchmark.
        log(f"warning: no transactions against {t.name} (-c {clients} -M {mode}, -T {res['T']}): "
            f"connecting took longer than -T")
        res.update({"tps": None, "transactions": 0})
        return res
    if res.get("failed"):
        log(f"warning: {res['failed']} failed transactions against {t.name} (-c {clients} -M {mode})")
    n = max(res.get("transactions", 0), 1)
    if t.cpu:
        steady_from = cpu_connected if cpu_connected is not None else cpu_start
        res["cpu_us_per_txn"] = (cpu_end - steady_from) / n * 1e6
        res["cpu_us_per_txn_incl_connect"] = (cpu_end - cpu_start) / n * 1e6
        res["cpu_connect_phase_s"] = (cpu_connected - cpu_start) if cpu_connected is not None else None
        res["cpu_sampled_after_connect"] = cpu_connected is not None
    return res


def median_or_none(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ---- idle connections: a minimal PostgreSQL login with SCRAM-SHA-256 ------------------------

def _msg(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("!i", len(payload) + 4) + payload


class ScramClient:
    """Client side of SCRAM-SHA-256 (RFC 5802/7677) as libpq does it; caches SaltedPassword per
    (salt, iterations) so thousands of logins cost one PBKDF2."""

    def __init__(self, password: str):
        self.password = password.encode()
        self.cache: dict[tuple[bytes, int], bytes] = {}

    def salted(self, salt: bytes, iterations: int) -> bytes:
        key = (salt, iterations)
        if key not in self.cache:
            self.cache[key] = hashlib.pbkdf2_hmac("sha256", self.password, salt, iterations)
        return self.cache[key]


async def pg_login(host: str, port: int, user: str, database: str, scram: ScramClient):
    """Opens one connection and logs in; returns (reader, writer) at ReadyForQuery."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        params = b"".join(k + b"\0" + v + b"\0" for k, v in (
            (b"user", user.encode()), (b"database", database.encode()), (b"application_name", IDLE_APP_NAME.encode())))
        body = struct.pack("!i", 196608) + params + b"\0"
        writer.write(struct.pack("!i", len(body) + 4) + body)
        nonce = client_first_bare = auth_message = salted = None
        while True:
            hdr = await reader.readexactly(5)
            kind, length = hdr[:1], struct.unpack("!i", hdr[1:])[0]
            payload = await reader.readexactly(length - 4)
            if kind == b"R":
                code = struct.unpack("!i", payload[:4])[0]
                if code == 0:
                    continue
                if code == 10:  # AuthenticationSASL
                    mechs = payload[4:].split(b"\0")
                    if b"SCRAM-SHA-256" not in mechs:
                        raise RuntimeError(f"server offers {mechs}, not SCRAM-SHA-256")
                    nonce = base64.b64encode(os.urandom(18))
                    client_first_bare = b"n=,r=" + nonce
                    first = b"n,," + client_first_bare
                    writer.write(_msg(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first))
                elif code == 11:  # AuthenticationSASLContinue: server-first-message
                    server_first = payload[4:]
                    attrs = dict(kv.split(b"=", 1) for kv in server_first.split(b","))
                    r, salt, iters = attrs[b"r"], base64.b64decode(attrs[b"s"]), int(attrs[b"i"])
                    if not r.startswith(nonce):
                        raise RuntimeError("SCRAM: server nonce does not extend ours")
                    salted = scram.salted(salt, iters)
                    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
                    stored_key = hashlib.sha256(client_key).digest()
                    without_proof = b"c=biws,r=" + r
                    auth_message = client_first_bare + b"," + server_first + b"," + without_proof
                    signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
                    proof = bytes(a ^ b for a, b in zip(client_key, signature))
                    writer.write(_msg(b"p", without_proof + b",p=" + base64.b64encode(proof)))
                elif code == 12:  # AuthenticationSASLFinal
                    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
                    expect = base64.b64encode(hmac.new(server_key, auth_message, hashlib.sha256).digest())
                    if payload[4:].strip() != b"v=" + expect:
                        raise RuntimeError("SCRAM: wrong server signature")
                else:
                    raise RuntimeError(f"unsupported authentication request {code}")
            elif kind == b"E":
                fields = {f[:1]: f[1:].decode(errors="replace") for f in payload.split(b"\0") if f}
                raise RuntimeError(f"{fields.get(b'C', '?')} {fields.get(b'M', '?')}")
            elif kind == b"Z":
                return reader, writer
            # S (ParameterStatus), K (BackendKeyData), N (notice): nothing to do
    except BaseException:
        writer.close()
        raise


async def open_idle(port: int, n: int, concurrency: int, scram: ScramClient, pid: int | None = None):
    """Opens up to n logged-in connections; stops early after repeated failures."""
    conns: list = []
    errors: list[str] = []
    sem = asyncio.Semaphore(concurrency)
    stop = False
    started = time.time()
    next_report = 1000

    async def one():
        nonlocal stop, next_report
        if stop:
            return
        async with sem:
            if stop:
                return
            try:
                conns.append(await asyncio.wait_for(pg_login("127.0.0.1", port, BENCH_USER, TARGET_DB, scram), 30))
            except Exception as e:  # noqa: BLE001 - counted and reported
                errors.append(f"{type(e).__name__}: {e}")
                if len(errors) >= 20:
                    stop = True
                return
            if len(conns) >= next_report:
                rss = f", proxy RSS {proc_rss_kib(pid)} KiB" if pid else ""
                log(f"  {len(conns)} connections open ({time.time() - started:.1f}s{rss})")
                next_report += 1000

    await asyncio.gather(*(one() for _ in range(n)))
    return conns, errors, time.time() - started


async def simple_query(reader, writer, sql: str) -> None:
    writer.write(_msg(b"Q", sql.encode() + b"\0"))
    while True:
        hdr = await reader.readexactly(5)
        payload = await reader.readexactly(struct.unpack("!i", hdr[1:])[0] - 4)
        if hdr[:1] == b"E":
            raise RuntimeError(f"query {sql!r} failed: {payload!r}")
        if hdr[:1] == b"Z":
            return


def refresh_pgbouncer_pool(pg: PgCluster, port: int, clients: int, scram: ScramClient) -> None:
    """Gives pgbouncer's pool `clients` freshly started server connections before a run.

    Direct and Gatehouse runs always get backends PostgreSQL has just forked; a pooled backend that
    already served earlier runs is faster (warm caches, page tables: on the development VM a fresh
    backend needs ~10 s to reach full speed). Leaving pgbouncer's pool warm would compare backend age,
    not the proxies; letting pgbouncer open servers during the run would put its server logins inside
    the measured window. So: end the pooled backends (nothing else runs now), then have `clients`
    clients log in and each run one `SELECT 1` while all are connected, which makes pgbouncer open
    one new server each, and disconnect; the new servers wait idle in the pool for pgbench."""
    async def body():
        conns = []
        try:
            for c in asyncio.as_completed([pg_login("127.0.0.1", port, BENCH_USER, TARGET_DB, scram)
                                           for _ in range(clients)]):
                conns.append(await c)
            await asyncio.gather(*(simple_query(r, w, "SELECT 1") for r, w in conns))
        finally:
            await close_idle(conns)

    for attempt in range(1, 4):
        time.sleep(0.5)  # pgbouncer resets (DISCARD ALL) the servers the last run released
        try:
            pg.psql("select count(pg_terminate_backend(pid)) from pg_stat_activity "
                    "where backend_type = 'client backend' and pid <> pg_backend_pid()")
            time.sleep(0.3)  # let pgbouncer notice its servers are gone
            asyncio.run(body())
            return
        except Exception as e:  # noqa: BLE001 - a race with pgbouncer's own clean-up; try again
            log(f"refreshing pgbouncer's pool failed (attempt {attempt}): {e}")
    log("warning: pgbouncer's pool could not be refreshed; this run uses whatever the pool holds")


async def close_idle(conns: list) -> None:
    for _, w in conns:
        try:
            w.write(b"X\0\0\0\4")  # Terminate, as a polite client would
            w.close()
        except Exception:  # noqa: BLE001
            pass

    async def closed(w):
        try:
            await w.wait_closed()
        except Exception:  # noqa: BLE001
            pass

    try:
        await asyncio.wait_for(asyncio.gather(*(closed(w) for _, w in conns)), 30)
    except asyncio.TimeoutError:
        pass


def pg_count(pg: PgCluster, where: str) -> int:
    return int(pg.psql(f"select count(*) from pg_stat_activity where {where}"))


def wait_until(pred, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return pred()


def idle_test(name: str, port: int, pid: int, n: int, pg: PgCluster, scram: ScramClient, concurrency: int) -> dict:
    log(f"idle: opening {n} authenticated connections to {name}")
    cpu_logins = 0.0
    backends_before = pg_count(pg, "backend_type = 'client backend'")
    time.sleep(0.5)
    rss_before = proc_rss_kib(pid)
    cpu_before = proc_cpu_seconds(pid)

    async def body():
        nonlocal cpu_logins
        conns, errors, secs = await open_idle(port, n, concurrency, scram, pid)
        cpu_logins = proc_cpu_seconds(pid) - cpu_before
        await asyncio.sleep(1.0)  # let the proxy settle (freed handshake memory, timers)
        rss_after = proc_rss_kib(pid)
        backends_during = pg_count(pg, "backend_type = 'client backend'")
        idle_backends = pg_count(pg, f"application_name = '{IDLE_APP_NAME}'")
        log(f"idle: {name}: closing {len(conns)} connections")
        await close_idle(conns)
        return conns, errors, secs, rss_after, backends_during, idle_backends

    conns, errors, secs, rss_after, backends_during, idle_backends = asyncio.run(body())
    opened = len(conns)
    # Wait for the proxy to drop its client sessions (not for PostgreSQL's backends to exit:
    # thousands of exiting backends take a while and matter to nothing measured here).
    wait_until(lambda: established_on_port(port) == 0, 60)
    time.sleep(0.5)
    rss_closed = proc_rss_kib(pid)
    res = {
        "requested": n,
        "opened": opened,
        "errors": len(errors),
        "first_errors": errors[:5],
        "open_seconds": round(secs, 2),
        "logins_per_second": round(opened / secs, 1) if secs > 0 else None,
        "proxy_cpu_ms_per_login": round(cpu_logins / opened * 1e3, 3) if opened else None,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "rss_after_close_kib": rss_closed,
        "kib_per_connection": round((rss_after - rss_before) / opened, 2) if opened else None,
        "server_connections_added": backends_during - backends_before,
        "server_connections_for_idle_clients": idle_backends,
    }
    log(f"idle: {name}: {opened}/{n} open in {secs:.1f}s, RSS {rss_before} -> {rss_after} KiB "
        f"({res['kib_per_connection']} KiB/conn), {idle_backends} server connections for them")
    if errors:
        log(f"idle: {name}: {len(errors)} failed logins, first: {errors[0]}")
    return res


# ---- report --------------------------------------------------------------------------------

def fmt(x, spec: str = ".0f", none: str = "-") -> str:
    return none if x is None else format(x, spec)


def print_report(results: dict) -> None:
    m = results["meta"]
    print()
    print(f"Gatehouse benchmark  ({m['started']}, {m['cpus']} CPUs, commit {m['commit']})")
    print(f"pgbench -n -S, scale {m['scale']}, -T {m['duration_s']}s x {m['rounds']} round(s) per target "
          f"(median), -j {m['pgbench_jobs']}; gatehouse threads={m['gatehouse_threads']}; "
          f"pgbouncer session mode, single-threaded, "
          + ("server pool kept warm between runs" if m["pgbouncer_warm_pool"] else "pool refilled with fresh backends before each run"))
    print(f"placement: {m.get('placement', 'all processes share every CPU')}")
    head = (f"{'mode':<9}{'clients':>8}{'direct':>10}{'pgbouncer':>11}{'gatehouse':>11}{'gh/direct':>11}"
            f"{'gh/pgb':>8}{'pgb µs/tx':>11}{'gh µs/tx':>10}")
    print()
    print(f"{'':<17}{'--------- TPS (median) ---------':>32}{'--- ratio ---':>19}{'- CPU per txn -':>21}")
    print(head)
    print("-" * len(head))
    for row in results["pgbench"]:
        med = {t: row["targets"][t]["tps_median"] for t in TARGETS}
        print(f"{row['mode']:<9}{row['clients']:>8}{fmt(med['direct']):>10}{fmt(med['pgbouncer']):>11}"
              f"{fmt(med['gatehouse']):>11}{fmt(row['ratio_gatehouse_direct'], '.3f'):>11}"
              f"{fmt(row['ratio_gatehouse_pgbouncer'], '.3f'):>8}"
              f"{fmt(row['targets']['pgbouncer']['cpu_us_per_txn_median'], '.1f'):>11}"
              f"{fmt(row['targets']['gatehouse']['cpu_us_per_txn_median'], '.1f'):>10}")
    print()
    print("with audit on (durability required, SQLite; one record per statement):")
    head2 = f"{'mode':<9}{'clients':>8}{'gatehouse':>11}{'gh+audit':>10}{'audit/off':>11}{'gh+audit/pgb':>14}{'µs/tx':>8}"
    print(head2)
    print("-" * len(head2))
    for row in results["pgbench"]:
        med = {t: row["targets"][t]["tps_median"] for t in TARGETS}
        print(f"{row['mode']:<9}{row['clients']:>8}{fmt(med['gatehouse']):>11}{fmt(med['gh_audit']):>10}"
              f"{fmt(row.get('ratio_audit_required_vs_off'), '.3f'):>11}{fmt(row.get('ratio_gh_audit_pgbouncer'), '.3f'):>14}"
              f"{fmt(row['targets']['gh_audit']['cpu_us_per_txn_median'], '.1f'):>8}")
    if results["pgbench"]:
        ok = [r for r in results["pgbench"] if (r.get("ratio_audit_required_vs_off") or 0) >= 0.9]
        print(f"target audit required >= 0.9x audit off: {len(ok)}/{len(results['pgbench'])} rows meet it")
    print()
    print("ratios are of the medians; µs/tx is the proxy process' user+system CPU time divided by the")
    print("transactions pgbench completed, measured from the moment all clients were connected.")
    rows = results["pgbench"]
    if rows:
        ok = [r for r in rows if (r["ratio_gatehouse_pgbouncer"] or 0) >= 1.0]
        print(f"target gatehouse/pgbouncer >= 1.0 in every mode: {len(ok)}/{len(rows)} rows meet it"
              + ("" if len(ok) == len(rows) else " -> NOT MET: " + ", ".join(
                  f"{r['mode']}/c{r['clients']}" for r in rows if r not in ok)))

    idle = results.get("idle")
    if idle:
        print()
        n = idle["requested"]
        print(f"Idle connections: {n} requested, each fully logged in (SCRAM) and then left idle")
        if idle.get("note"):
            print("  " + idle["note"])
        head = (f"{'':<11}{'opened':>8}{'RSS before':>13}{'RSS after':>12}{'KiB/conn':>10}{'after close':>13}"
                f"{'server conns':>14}{'logins/s':>10}{'CPU ms/login':>14}")
        print(head)
        print("-" * len(head))
        for name in ("gatehouse", "pgbouncer"):
            r = idle.get(name)
            if not r:
                continue
            print(f"{name:<11}{r['opened']:>8}{r['rss_before_kib']:>9} KiB{r['rss_after_kib']:>8} KiB"
                  f"{fmt(r['kib_per_connection'], '.2f'):>10}{r['rss_after_close_kib']:>9} KiB"
                  f"{r['server_connections_for_idle_clients']:>14}{fmt(r['logins_per_second'], '.0f'):>10}"
                  f"{fmt(r['proxy_cpu_ms_per_login'], '.2f'):>14}")
        print("server conns = PostgreSQL backends serving the idle clients. Gatehouse logs every client in to")
        print("the database at once (one backend each, part of the login); pgbouncer in session mode assigns")
        print("a server connection only at the client's first query, so its idle clients hold none.")
        g = idle.get("gatehouse")
        if g and g["kib_per_connection"] is not None:
            verdict = "met" if g["kib_per_connection"] <= 16 else "NOT MET"
            print(f"target gatehouse <= 16 KiB per idle connection: {g['kib_per_connection']:.2f} KiB -> {verdict}")
    print()
    print(f"results: {results['meta']['json']}")


# ---- main ----------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", "-T", type=int, default=None, help="seconds per pgbench run (default 5; --quick 3)")
    p.add_argument("--rounds", type=int, default=None, help="rounds per target (default 5; --quick 1)")
    p.add_argument("--quick", action="store_true", help="short run: -T 3, 1 round, 1000 idle connections")
    p.add_argument("--clients", default="8,64", help="comma-separated pgbench -c values (default 8,64)")
    p.add_argument("--modes", default="simple,extended,prepared", help="comma-separated pgbench -M values")
    p.add_argument("--jobs", type=int, default=2, help="pgbench -j (default 2)")
    p.add_argument("--scale", type=int, default=10, help="pgbench -i -s (default 10)")
    p.add_argument("--shared-buffers", default="16MB", help="PostgreSQL shared_buffers (default 16MB; see bench/README.md)")
    p.add_argument("--pgbouncer-warm-pool", action="store_true",
                   help="let pgbouncer keep its warm server connections between runs (default: before each "
                        "run its pool is refilled with fresh backends, as direct and Gatehouse runs get)")
    p.add_argument("--threads", type=int, default=2, help="gatehouse worker threads (default 2)")
    p.add_argument("--idle", type=int, default=None, help="idle connections per proxy (default 5000; --quick 1000; 0 skips)")
    p.add_argument("--idle-concurrency", type=int, default=32, help="logins in flight while opening idle connections")
    p.add_argument("--no-pgbench", action="store_true", help="skip the pgbench part (idle test only)")
    p.add_argument("--pin", action="store_true",
                   help="give the proxies (both Gatehouse instances and pgbouncer) the last CPU and PostgreSQL "
                        "and pgbench the others, as when a proxy runs on a host of its own (default: all share "
                        "every CPU)")
    p.add_argument("--json", default=str(REPO / "build" / "bench-results.json"), help="where to write the results")
    a = p.parse_args(argv)
    a.duration = a.duration or (3 if a.quick else 5)
    a.rounds = a.rounds or (1 if a.quick else 5)
    a.idle = (1000 if a.quick else 5000) if a.idle is None else a.idle
    a.clients = [int(c) for c in a.clients.split(",") if c]
    a.modes = [m for m in a.modes.split(",") if m]
    for m in a.modes:
        if m not in ("simple", "extended", "prepared"):
            p.error(f"unknown mode {m}")
    return a


def pin_process(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` (sched_setaffinity applies to one thread, and the proxies start theirs
    before we can pin them)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), cpus)


def idle_capacity(requested: int, nofile: int) -> tuple[int, str | None]:
    """The largest idle count this machine can hold: Gatehouse needs two descriptors per idle
    client (client + backend), this script one, PostgreSQL one process each."""
    limits = {"open files (gatehouse needs 2 per connection)": (nofile - 200) // 2}
    try:
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
        running = len([d for d in os.listdir("/proc") if d.isdigit()])
        limits["pid_max (one PostgreSQL backend each)"] = pid_max - running - 500
    except OSError:
        pass
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    if nproc != resource.RLIM_INFINITY and os.geteuid() != 0:
        limits["RLIMIT_NPROC"] = nproc - 500
    n = requested
    why = None
    for reason, cap in limits.items():
        if cap < n:
            n, why = max(cap, 0), reason
    note = None if n == requested else f"capped at {n} of {requested} requested by {why}"
    return n, note


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    for tool in ("pgbench", "pgbouncer"):
        if not shutil.which(tool):
            print(f"bench: {tool} not found (apt-get install postgresql-client-15 pgbouncer)", file=sys.stderr)
            return 2
    if not Path(BINARY).exists():
        print(f"bench: {BINARY} missing; run `make build`", file=sys.stderr)
        return 2

    nofile = raise_nofile()[0]
    all_cpus = sorted(os.sched_getaffinity(0))
    proxy_cpus = db_cpus = None
    if args.pin:
        if len(all_cpus) < 2:
            print("bench: --pin needs at least 2 CPUs", file=sys.stderr)
            return 2
        proxy_cpus, db_cpus = {all_cpus[-1]}, set(all_cpus[:-1])
        os.sched_setaffinity(0, db_cpus)  # PostgreSQL and pgbench inherit it; the proxies are moved
    idle_n, idle_note = idle_capacity(args.idle, nofile) if args.idle > 0 else (0, None)
    if idle_note:
        log(f"idle: {idle_note}")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks on SIGTERM too

    json_path = Path(args.json)
    logs_dir = REPO / "build" / "bench-logs"
    root = Path(tempfile.mkdtemp(prefix="gh-bench-"))
    os.chmod(root, 0o711)  # the postgres user must reach its directories below
    pg = gh = gha = pgb = None
    t0 = time.time()
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "?"
    results: dict = {
        "meta": {
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "commit": commit,
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "duration_s": args.duration,
            "rounds": args.rounds,
            "scale": args.scale,
            "pgbench_jobs": args.jobs,
            "gatehouse_threads": args.threads,
            "pgbouncer_warm_pool": args.pgbouncer_warm_pool,
            "shared_buffers": args.shared_buffers,
            "placement": (f"proxies on CPU {sorted(proxy_cpus)}, PostgreSQL and pgbench on CPUs {sorted(db_cpus)}"
                          if args.pin else "all processes share every CPU"),
            "rlimit_nofile": nofile,
            "pgbench_version": first_line(["pgbench", "--version"]),
            "pgbouncer_version": first_line(["pgbouncer", "--version"]),
            "json": str(json_path),
        },
        "pgbench": [],
    }
    try:
        max_clients = max(args.clients) if args.clients else 8
        max_conn = max(idle_n + 200, 3 * max_clients + 50, 200)
        log(f"PostgreSQL: initdb (max_connections={max_conn})")
        pg = PgCluster(base=root / "pg", settings={
            "max_connections": str(max_conn),
            "shared_buffers": args.shared_buffers,
            "max_wal_size": "4GB",
            "checkpoint_timeout": "30min",
        }).init().start()
        results["meta"]["postgres_version"] = pg.psql("show server_version")

        if not args.no_pgbench:
            log(f"pgbench -i -s {args.scale}")
            subprocess.run(["pgbench", "-i", "-q", "-s", str(args.scale), "-h", "127.0.0.1", "-p", str(pg.port),
                            "-U", pg.user, "postgres"], check=True, capture_output=True,
                           env=dict(os.environ, PGPASSWORD=pg.password, PGSSLMODE="disable"))
            pg.psql("vacuum analyze")
            rows = pg.psql("select count(*) from pgbench_accounts")
            size = pg.psql("select pg_size_pretty(pg_database_size('postgres'))")
            log(f"pgbench_accounts: {rows} rows, database {size}")

        verifier = hash_password(BENCH_PASSWORD)
        gh_dir = root / "gatehouse"
        gh_dir.mkdir()
        cfg = basic_config(pg, {}, threads=args.threads, log={"level": "info"},
                           limits={"max_connections": max(idle_n + 500, 10000)}, audit={"enabled": False})
        cfg["users"] = [{"name": BENCH_USER, "password": verifier, "groups": ["bench"]}]
        gh = Gatehouse(cfg, workdir=gh_dir).start()
        log(f"gatehouse: port {gh.port}, {args.threads} thread(s), pid {gh.proc.pid}, audit off")
        gha_dir = root / "gatehouse-audit"
        gha_dir.mkdir()
        acfg = copy.deepcopy(cfg)
        acfg.pop("listen", None)
        acfg.pop("admin", None)
        acfg["audit"] = {"durability": "required", "sinks": [{"type": "sqlite", "path": str(gha_dir / "audit.db")}]}
        gha = Gatehouse(acfg, workdir=gha_dir).start()
        log(f"gatehouse with audit (required, SQLite): port {gha.port}, pid {gha.proc.pid}")

        pgb = PgBouncer(root / "pgbouncer", pg, BENCH_PASSWORD, max_client_conn=idle_n + 500,
                        pool_size=max_clients + 16).start()
        log(f"pgbouncer: port {pgb.port}, pid {pgb.pid}")
        if proxy_cpus:
            for pid in (gh.proc.pid, gha.proc.pid, pgb.pid):
                pin_process(pid, proxy_cpus)
            log(f"placement: {results['meta']['placement']}")

        scram = ScramClient(BENCH_PASSWORD)
        targets = {
            "direct": Target("direct", pg.port, pg.user, pg.password, "postgres"),
            "pgbouncer": Target("pgbouncer", pgb.port, BENCH_USER, BENCH_PASSWORD, TARGET_DB,
                                cpu=lambda: proc_cpu_seconds(pgb.pid),
                                prepare=None if args.pgbouncer_warm_pool else
                                lambda c: refresh_pgbouncer_pool(pg, pgb.port, c, scram)),
            "gatehouse": Target("gatehouse", gh.port, BENCH_USER, BENCH_PASSWORD, TARGET_DB, cpu=gh.cpu_seconds),
            "gh_audit": Target("gh_audit", gha.port, BENCH_USER, BENCH_PASSWORD, TARGET_DB, cpu=gha.cpu_seconds),
        }

        if not args.no_pgbench and args.clients and args.modes:
            # Warm-up (not recorded): the OS page cache, the proxies' allocators and buffer pools, and
            # (with --pgbouncer-warm-pool) pgbouncer's server pool at the largest client count.
            log("warm-up")
            # Seconds each target needs to connect c clients, learnt as we go (see run_pgbench).
            allowance: dict[tuple[str, int], int] = {}

            def learn(t: str, c: int, r: dict) -> None:
                if r.get("connect_ms") is not None:
                    allowance[(t, c)] = min(30, int(r["connect_ms"] * 1.5 / 1000 + 0.999))
                elif not r.get("tps"):
                    allowance[(t, c)] = min(30, allowance.get((t, c), 0) * 2 + 5)

            for t in TARGETS:
                learn(t, max_clients, run_pgbench(targets[t], max_clients, "simple", 2, args.jobs, 4))

            combos = [(c, m) for c in args.clients for m in args.modes]
            runs: dict[tuple[int, str, str], list[dict]] = {}
            total = len(combos) * len(TARGETS) * args.rounds
            done = 0
            for rnd in range(args.rounds):
                k = rnd % len(TARGETS)
                order = TARGETS[k:] + TARGETS[:k]  # rotate so no target always goes first
                for c, m in combos:
                    line = []
                    for t in order:
                        r = run_pgbench(targets[t], c, m, args.duration, args.jobs, allowance.get((t, c), 1))
                        learn(t, c, r)
                        r["round"] = rnd + 1
                        r["position"] = order.index(t)
                        runs.setdefault((c, m, t), []).append(r)
                        done += 1
                        line.append(f"{t} {fmt(r['tps'])}")
                    log(f"round {rnd + 1}/{args.rounds} -c {c} -M {m}: " + ", ".join(line)
                        + f"  [{done}/{total}]")

            for c, m in combos:
                row: dict = {"mode": m, "clients": c, "targets": {}}
                for t in TARGETS:
                    rs = runs[(c, m, t)]
                    row["targets"][t] = {
                        "tps": [r["tps"] for r in rs],
                        "tps_median": median_or_none([r["tps"] for r in rs]),
                        "empty_runs": sum(1 for r in rs if not r["tps"]),
                        "transactions": [r.get("transactions") for r in rs],
                        "failed": sum(r.get("failed", 0) for r in rs),
                        "latency_ms_median": median_or_none([r.get("latency_ms") for r in rs]),
                        "connect_ms_median": median_or_none([r.get("connect_ms") for r in rs]),
                        "cpu_us_per_txn": [r.get("cpu_us_per_txn") for r in rs],
                        "cpu_us_per_txn_median": median_or_none([r.get("cpu_us_per_txn") for r in rs]),
                        "cpu_us_per_txn_incl_connect_median":
                            median_or_none([r.get("cpu_us_per_txn_incl_connect") for r in rs]),
                    }
                med = {t: row["targets"][t]["tps_median"] for t in TARGETS}
                row["ratio_gatehouse_direct"] = med["gatehouse"] / med["direct"] if med["direct"] else None
                row["ratio_gatehouse_pgbouncer"] = med["gatehouse"] / med["pgbouncer"] if med["pgbouncer"] else None
                # Same-round ratios, less sensitive to drift on a noisy machine.
                per_round = [g["tps"] / p["tps"] if g["tps"] and p["tps"] else None
                             for g, p in zip(runs[(c, m, "gatehouse")], runs[(c, m, "pgbouncer")])]
                row["ratio_gatehouse_pgbouncer_per_round"] = per_round
                row["ratio_audit_required_vs_off"] = (med["gh_audit"] / med["gatehouse"]
                                                      if med["gatehouse"] and med["gh_audit"] else None)
                row["ratio_gh_audit_pgbouncer"] = med["gh_audit"] / med["pgbouncer"] if med["pgbouncer"] else None
                results["pgbench"].append(row)

        if idle_n > 0:
            idle = {"requested": idle_n, "note": idle_note}
            # pgbouncer first: its idle clients need no PostgreSQL backends, so it runs before the
            # thousands of backends Gatehouse's clients bring (and their slow exit) load the machine.
            idle["pgbouncer"] = idle_test("pgbouncer", pgb.port, pgb.pid, idle_n, pg, scram, args.idle_concurrency)
            idle["gatehouse"] = idle_test("gatehouse", gh.port, gh.proc.pid, idle_n, pg, scram, args.idle_concurrency)
            short = [n for n in ("gatehouse", "pgbouncer") if idle[n]["opened"] < idle_n]
            if short:
                extra = "; ".join(f"{n} held {idle[n]['opened']} ({idle[n]['first_errors'][:1]})" for n in short)
                idle["note"] = ((idle_note + "; ") if idle_note else "") + "fewer than requested: " + extra
            results["idle"] = idle
            try:
                results["gatehouse_metrics"] = {k: v for k, v in gh.metrics().items()
                                                if not k.startswith("gatehouse_statement_duration_seconds_bucket")}
            except Exception as e:  # noqa: BLE001
                results["gatehouse_metrics"] = {"error": str(e)}

        results["meta"]["total_seconds"] = round(time.time() - t0, 1)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2) + "\n")
        print_report(results)
        print(f"total time {results['meta']['total_seconds']:.0f}s; logs in {logs_dir}")
        return 0
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        # Keep the logs (small) for a look afterwards, then remove everything else.
        try:
            logs_dir.mkdir(parents=True, exist_ok=True)
            for src, name in ((gh.log_path if gh else None, "gatehouse.log"),
                              (pgb.log_path if pgb else None, "pgbouncer.log"),
                              (pg.log if pg else None, "postgres.log")):
                if src and Path(src).exists():
                    shutil.copy(src, logs_dir / name)
        except Exception:  # noqa: BLE001
            pass
        for stop in ((lambda: pgb.stop()) if pgb else None, (lambda: gh.stop(10)) if gh else None,
                     (lambda: gha.stop(10)) if gha else None,
                     (lambda: pg.destroy()) if pg else None):
            if stop is None:
                continue
            try:
                stop()
            except BaseException as e:  # noqa: BLE001 - keep cleaning up
                log(f"cleanup: {e}")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
