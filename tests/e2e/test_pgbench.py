"""pgbench through the proxy in all three query modes."""
from __future__ import annotations

import os
import re
import subprocess

import pytest

from conftest import USERS


@pytest.fixture(scope="module")
def bench_db(pg):
    pg.psql("drop database if exists bench")
    pg.psql("create database bench")
    env = dict(os.environ, PGPASSWORD=pg.password)
    subprocess.run(["pgbench", "-i", "-s", "1", "-q", "-h", "127.0.0.1", "-p", str(pg.port), "-U", pg.user, "bench"],
                   check=True, capture_output=True, text=True, env=env, timeout=120)
    return "bench"


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_select_only(gh, bench_db, mode):
    env = dict(os.environ, PGPASSWORD=USERS["alice"], PGCONNECT_TIMEOUT="10")
    r = subprocess.run(["pgbench", "-n", "-M", mode, "-S", "-T", "3", "-c", "4", "-j", "2", "-h", "127.0.0.1", "-p",
                        str(gh.port), "-U", "alice", bench_db], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert f"query mode: {mode}" in out
    failed = re.search(r"number of failed transactions: (\d+)", out)
    assert failed and failed.group(1) == "0", out
    processed = re.search(r"number of transactions actually processed: (\d+)", out)
    assert processed and int(processed.group(1)) > 100, out
    assert "error" not in r.stderr.lower(), r.stderr


def test_pgbench_tpcb_writes(gh, bench_db):
    """The default TPC-B-like script (updates, inserts, transactions) through the proxy."""
    env = dict(os.environ, PGPASSWORD=USERS["alice"], PGCONNECT_TIMEOUT="10")
    r = subprocess.run(["pgbench", "-n", "-M", "extended", "-t", "50", "-c", "4", "-j", "2", "-h", "127.0.0.1", "-p",
                        str(gh.port), "-U", "alice", bench_db], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"number of transactions actually processed: 200/200", r.stdout), r.stdout
    assert re.search(r"number of failed transactions: 0", r.stdout), r.stdout
