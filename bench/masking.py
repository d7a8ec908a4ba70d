#!/usr/bin/env python3
"""Masking throughput: SELECT of 1,000,000 rows with 10 columns, 3 of them masked, through
Gatehouse for an identity whose results are masked, through the same proxy for one whose are not,
and over a direct connection, side by side in one run (interleaved rounds, medians).

    bench/masking.py [--rows 1000000] [--rounds 5] [--mode simple|extended]

The client is pgbench with a one-statement script (`SELECT * FROM masked_bench`, libpq reads
every row), one client, so the figure is rows per second of one session. Issue 6 asks for masked
≥ 0.7x direct.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from harness import Gatehouse, PgCluster, basic_config, hash_password  # noqa: E402

MASKED = ("bench_analyst", "bench-analyst-pw")
PLAIN = ("bench_privacy", "bench-privacy-pw")


def run(port: int, user: str, password: str, dbname: str, script: Path, transactions: int, mode: str) -> float:
    env = dict(os.environ, PGPASSWORD=password, PGSSLMODE="disable", PGGSSENCMODE="disable")
    cmd = ["pgbench", "-n", "-c", "1", "-t", str(transactions), "-M", mode, "-f", str(script),
           "-h", "127.0.0.1", "-p", str(port), "-U", user, dbname]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    elapsed = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"pgbench failed ({user}@{port}):\n{out.stdout[-1500:]}\n{out.stderr[-1500:]}")
    for line in out.stdout.splitlines():
        if line.strip().startswith("latency average ="):
            return float(line.split("=")[1].split()[0]) / 1000.0
    return elapsed / transactions


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--transactions", type=int, default=2, help="SELECTs per pgbench run")
    p.add_argument("--mode", default="simple", choices=["simple", "extended"])
    p.add_argument("--strategy", default="redact")
    args = p.parse_args()

    root = Path(tempfile.mkdtemp(prefix="gh-mask-bench-"))
    os.chmod(root, 0o711)
    pg = PgCluster(base=root / "pg", settings={"shared_buffers": "256MB"}).init().start()
    gh = None
    try:
        print(f"creating masked_bench: {args.rows} rows x 10 columns", flush=True)
        pg.psql(
            "DROP TABLE IF EXISTS masked_bench; "
            "CREATE TABLE masked_bench AS SELECT g AS id, 'name ' || g AS name, "
            "'user' || g || '@example.com' AS email, lpad((g % 899 + 100)::text, 3, '0') || '-' || "
            "lpad((g % 99 + 1)::text, 2, '0') || '-' || lpad((g % 9999 + 1)::text, 4, '0') AS ssn, "
            "'4111' || lpad(g::text, 12, '0') AS card, g * 3 AS score, now() AS created, "
            "md5(g::text) AS note, g % 7 AS bucket, 'active' AS status "
            f"FROM generate_series(1, {args.rows}) g")
        pg.psql("VACUUM ANALYZE masked_bench")
        size = pg.psql("SELECT pg_size_pretty(pg_total_relation_size('masked_bench'))")
        print(f"table size {size}", flush=True)
        cfg = basic_config(pg, {}, threads=2, log={"level": "info"}, audit={"enabled": False})
        cfg["users"] = [{"name": MASKED[0], "password": hash_password(MASKED[1]), "groups": ["analysts"]},
                        {"name": PLAIN[0], "password": hash_password(PLAIN[1]), "groups": ["privacy"]}]
        cfg["classification"] = [{"columns": ["masked_bench.email", "masked_bench.ssn", "masked_bench.card"],
                                  "tags": ["pii"]}]
        cfg["rules"] = [{"name": "mask-pii", "when": {"not_groups": ["privacy"], "tags": ["pii"]}, "action": "mask",
                         "mask": {"strategy": args.strategy}}]
        cfg["masking"] = {"hash_key": "bench-key-0123456789abcdef"}
        (root / "gh").mkdir()
        gh = Gatehouse(cfg, workdir=root / "gh").start()
        script = root / "select.sql"
        script.write_text("SELECT * FROM masked_bench;\n")
        for user in (MASKED, PLAIN):
            pg.psql(f"DROP ROLE IF EXISTS {user[0]}")
        targets = {
            "direct": (pg.port, pg.user, pg.password, "postgres"),
            "gh_unmasked": (gh.port, PLAIN[0], PLAIN[1], "app"),
            "gh_masked": (gh.port, MASKED[0], MASKED[1], "app"),
        }
        # one warm-up each (and a check that the masked identity does get masked values)
        for name, (port, user, pw, db) in targets.items():
            run(port, user, pw, db, script, 1, args.mode)
        out = subprocess.run(["psql", "-X", "-A", "-t", "-h", "127.0.0.1", "-p", str(gh.port), "-U", MASKED[0], "app",
                              "-c", "SELECT email, ssn, card FROM masked_bench WHERE id = 1"],
                             capture_output=True, text=True, env=dict(os.environ, PGPASSWORD=MASKED[1]))
        print(f"masked identity sees: {out.stdout.strip()!r}", flush=True)
        if "user1@example.com" in out.stdout:
            raise RuntimeError("the masked identity sees raw values: the benchmark would measure nothing")
        times: dict[str, list[float]] = {k: [] for k in targets}
        for r in range(args.rounds):
            for name, (port, user, pw, db) in targets.items():
                t = run(port, user, pw, db, script, args.transactions, args.mode)
                times[name].append(t)
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in times.items()), flush=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        print()
        print(f"| target | s per SELECT of {args.rows} rows | rows/s | vs direct |")
        print("|---|---|---|---|")
        for k, v in med.items():
            print(f"| {k} | {v:.3f} | {args.rows / v:,.0f} | {med['direct'] / v:.3f} |")
        ratios = [times["direct"][i] / times["gh_masked"][i] for i in range(args.rounds)]
        print(f"\nmasked/direct per round: {', '.join(f'{x:.3f}' for x in ratios)}")
        return 0
    finally:
        if gh:
            gh.stop()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
