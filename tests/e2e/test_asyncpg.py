"""asyncpg through Gatehouse: tests/clients/asyncpg_checks.py runs the same checks through the proxy
and directly (binary types, prepared statements, executemany, transactions and savepoints, cursors,
binary COPY in and CSV COPY out, errors, LISTEN/NOTIFY, a timeout that cancels, a pool of 8 with
200 concurrent queries); every check must pass both ways.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import USERS

CHECKS = Path(__file__).resolve().parents[1] / "clients" / "asyncpg_checks.py"


def run(dsn: str, suffix: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECKS), dsn, suffix], capture_output=True, text=True, timeout=300)


def test_asyncpg_works_through_the_proxy_as_it_does_directly(gh, pg):
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        pytest.fail("asyncpg is needed: run scripts/install-deps.sh (python3-asyncpg)")
    direct = run(f"postgresql://{pg.user}:{pg.password}@127.0.0.1:{pg.port}/postgres?sslmode=disable",
                 f"d{os.getpid()}")
    assert direct.returncode == 0 and "all ok" in direct.stdout, direct.stdout + direct.stderr
    proxied = run(f"postgresql://alice:{USERS['alice']}@127.0.0.1:{gh.port}/app?sslmode=disable", f"p{os.getpid()}")
    assert proxied.returncode == 0 and "all ok" in proxied.stdout, (
        proxied.stdout + proxied.stderr + "\n--- proxy log ---\n" + gh.log()[-3000:])
    assert proxied.stdout.count("ok  ") == direct.stdout.count("ok  ") >= 10
