"""Real Node.js client libraries through Gatehouse (tests/clients/node_clients.mjs): node-postgres
with pg-cursor and pg-copy-streams, and postgres.js, which pipelines and prepares every
statement. Each runs its checks (parameters, prepared statements, binary results, transactions,
errors, cursors, COPY both ways, LISTEN/NOTIFY, cancel, large results, pools) against the proxy
with a real PostgreSQL behind it; every check must pass.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import USERS

CLIENTS = Path(__file__).resolve().parents[1] / "clients"


@pytest.fixture(scope="module")
def node() -> str:
    exe = shutil.which("node")
    if not exe or not (CLIENTS / "node_modules" / "pg").is_dir() or not (CLIENTS / "node_modules" / "postgres").is_dir():
        pytest.fail("Node.js and the client libraries are needed: run scripts/install-deps.sh "
                    "(it runs `npm ci --prefix tests/clients`)")
    return exe




def run_checks(node: str, proxy, library: str, host: str = "127.0.0.1", **env) -> None:
    e = dict(os.environ, GH_HOST=host, GH_PORT=str(proxy.port), GH_USER="alice", GH_PASSWORD=USERS["alice"],
             GH_DATABASE="app", GH_SUFFIX=f"{library}_{os.getpid()}", **env)
    r = subprocess.run([node, "node_clients.mjs", library], cwd=CLIENTS, env=e, capture_output=True, text=True,
                       timeout=180)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "all ok" in r.stdout, out + "\n--- proxy log ---\n" + proxy.log()[-3000:]
    assert r.stdout.count("ok  ") >= 10, out  # the checks ran


@pytest.mark.parametrize("library", ["pg", "postgres"])
def test_node_client_library_works_through_the_proxy(gh, node, library):
    run_checks(node, gh, library)


@pytest.mark.parametrize("library", ["pg", "postgres"])
def test_node_client_library_over_tls_with_the_certificate_verified(gh_tls, certs, node, library):
    """Node's TLS stack against the proxy's listener, the chain and host name checked (the
    proxy requires TLS: a plaintext client would be refused)."""
    run_checks(node, gh_tls, library, host="localhost", GH_SSL_CA=str(certs / "ca.crt"))
