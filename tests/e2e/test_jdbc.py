"""The PostgreSQL JDBC driver (Debian's libpostgresql-jdbc-java, as DBeaver and Java services use
it) through Gatehouse: tests/clients/JdbcChecks.java runs the same checks through the proxy and
directly against the server, in the driver's main modes (default: server-side prepare from the
5th execution; prepare and binary transfer from the first; rewritten batch inserts; unnamed
statements only). Every check must pass through the proxy exactly as it does directly.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import USERS

CLIENTS = Path(__file__).resolve().parents[1] / "clients"
DRIVER = Path("/usr/share/java/postgresql.jar")
MODES = {
    "default": "",
    "prepare-and-binary-first": "?prepareThreshold=1&binaryTransfer=true",
    "rewritten-batches": "?reWriteBatchedInserts=true",
    "never-prepared": "?prepareThreshold=0",
}


@pytest.fixture(scope="module")
def checks(tmp_path_factory) -> Path:
    javac = shutil.which("javac")
    if not javac or not DRIVER.exists():
        pytest.fail("a JDK and the JDBC driver are needed: run scripts/install-deps.sh "
                    "(openjdk-17-jdk-headless, libpostgresql-jdbc-java)")
    out = tmp_path_factory.mktemp("jdbc")
    subprocess.run([javac, "-d", str(out), "-cp", str(DRIVER), str(CLIENTS / "JdbcChecks.java")], check=True,
                   timeout=300)
    return out


def run(classes: Path, url: str, user: str, password: str, suffix: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, GH_USER=user, GH_PASSWORD=password, GH_SUFFIX=suffix)
    return subprocess.run(["java", "-cp", f"{DRIVER}:{classes}", "JdbcChecks", url], env=env, capture_output=True,
                          text=True, timeout=300)


def outcomes(stdout: str) -> dict[str, bool]:
    return {line[5:].split(" - ")[0]: line.startswith("ok") for line in stdout.splitlines()
            if line.startswith(("ok   ", "FAIL "))}


@pytest.mark.parametrize("mode", list(MODES))
def test_jdbc_works_through_the_proxy_as_it_does_directly(gh, pg, checks, mode):
    opts = MODES[mode]
    suffix = f"{mode.replace('-', '_')}_{os.getpid()}"
    direct = run(checks, f"jdbc:postgresql://127.0.0.1:{pg.port}/postgres{opts}", pg.user, pg.password, "d_" + suffix)
    proxied = run(checks, f"jdbc:postgresql://127.0.0.1:{gh.port}/app{opts}", "alice", USERS["alice"], "p_" + suffix)
    assert direct.returncode == 0, "directly:\n" + direct.stdout + direct.stderr
    assert len(outcomes(direct.stdout)) >= 10, direct.stdout
    assert outcomes(proxied.stdout) == outcomes(direct.stdout) and proxied.returncode == 0, (
        "through the proxy:\n" + proxied.stdout + proxied.stderr + "\n--- proxy log ---\n" + gh.log()[-3000:])




def test_jdbc_over_tls_with_the_certificate_verified(gh_tls, certs, other_certs, checks):
    """Java's own TLS stack (JSSE) against the proxy's listener: sslmode=verify-full checks the chain
    against the test CA and the host name; a CA that did not sign the proxy's certificate fails."""
    base = f"jdbc:postgresql://localhost:{gh_tls.port}/app?sslmode=verify-full&sslrootcert="
    r = run(checks, base + str(certs / "ca.crt"), "alice", USERS["alice"], f"tls_{os.getpid()}")
    assert r.returncode == 0 and "all ok" in r.stdout, r.stdout + r.stderr + "\n--- proxy log ---\n" + gh_tls.log()[-2000:]
    bad = run(checks, base + str(other_certs / "ca.crt"), "alice", USERS["alice"], f"tlsbad_{os.getpid()}")
    assert bad.returncode != 0 and "all ok" not in bad.stdout
    assert "SSL" in bad.stdout + bad.stderr or "certificate" in (bad.stdout + bad.stderr).lower(), bad.stdout + bad.stderr
