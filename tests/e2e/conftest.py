"""End-to-end fixtures: a real PostgreSQL 15 cluster, Gatehouse in front of it, real clients."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.harness import (BINARY, Gatehouse, PgCluster, basic_config, free_port, wait_for,  # noqa: E402
                           hash_password, make_certs)
from tests.harness.oidc import OidcProvider  # noqa: E402

USERS = {"alice": "alice-secret", "bob": "bob-secret"}


def pytest_sessionstart(session):
    if not BINARY.exists():
        raise pytest.UsageError(f"{BINARY} is missing; run `make build` first")


# ---- clusters and certificates ------------------------------------------------------------

@pytest.fixture(scope="session")
def pg():
    cluster = PgCluster().init().start()
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Path:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def other_certs(tmp_path_factory) -> Path:
    """A second, unrelated CA (for "wrong CA" tests)."""
    return make_certs(tmp_path_factory.mktemp("other-certs"))


@pytest.fixture(scope="session")
def pg_tls(certs):
    cluster = PgCluster(ssl_dir=certs).init().start()
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def oidc(tmp_path_factory):
    """A real OpenID Connect provider (tests/oidc) with the default users and clients, shared by the
    session: tests that rotate its keys or take it down start their own OidcProvider."""
    idp = OidcProvider(workdir=tmp_path_factory.mktemp("oidc")).start()
    yield idp
    idp.stop()


# ---- proxies --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def user_hashes() -> dict[str, str]:
    return {n: hash_password(p) for n, p in USERS.items()}


def config_for(pg: PgCluster, hashes: dict[str, str], **overrides) -> dict:
    """basic_config without re-hashing passwords for every proxy."""
    cfg = basic_config(pg, {})
    cfg["users"] = [{"name": n, "password": h, "groups": ["dba"]} for n, h in hashes.items()]
    for k, v in overrides.items():
        cfg[k] = copy.deepcopy(v)
    return cfg


def target(name: str, port: int, user: str = "postgres", password: str = "x", host: str = "127.0.0.1",
           database: str = "postgres", **backend) -> dict:
    """One `targets[]` entry; extra keyword arguments go to `backend` (tls, ca_file)."""
    return {"name": name, "environment": "test",
            "backend": {"host": host, "port": port, "database": database, **backend},
            "login": {"user": user, "password": password}}


@pytest.fixture(scope="session")
def gh(pg, user_hashes, tmp_path_factory):
    proxy = Gatehouse(config_for(pg, user_hashes), workdir=tmp_path_factory.mktemp("gh-main")).start()
    yield proxy
    proxy.stop()


def tls_listener(certs: Path, mode: str) -> dict:
    """The `tls` section for clients: the test CA's server certificate, `mode` require or allow."""
    return {"mode": mode, "cert_file": str(certs / "server.crt"), "key_file": str(certs / "server.key")}


@pytest.fixture(scope="session")
def gh_tls(pg, certs, user_hashes, tmp_path_factory):
    """A proxy that requires TLS from clients (certificate for localhost and 127.0.0.1, `certs/ca.crt`)."""
    proxy = Gatehouse(config_for(pg, user_hashes, tls=tls_listener(certs, "require")),
                      workdir=tmp_path_factory.mktemp("gh-tls")).start()
    yield proxy
    proxy.stop()


class ProxyFactory:
    def __init__(self, pg, hashes, tmp_path_factory):
        self.pg = pg
        self.hashes = hashes
        self.tmp = tmp_path_factory
        self.started: list[Gatehouse] = []

    def config(self, pg=None, **overrides) -> dict:
        return config_for(pg or self.pg, self.hashes, **overrides)

    def __call__(self, config: dict | None = None, pg=None, **overrides) -> Gatehouse:
        cfg = config if config is not None else self.config(pg, **overrides)
        proxy = Gatehouse(cfg, workdir=self.tmp.mktemp("gh"))
        self.started.append(proxy)
        return proxy.start()

    def close(self) -> None:
        for p in self.started:
            if p.proc and p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait(10)


@pytest.fixture
def make_proxy(pg, user_hashes, tmp_path_factory):
    """Fresh gatehouse processes for tests that reconfigure, signal or kill them."""
    f = ProxyFactory(pg, user_hashes, tmp_path_factory)
    yield f
    f.close()


# ---- clients --------------------------------------------------------------------------------

def connect(proxy: Gatehouse, user: str = "alice", password: str | None = None, dbname: str = "app",
            **kw) -> psycopg.Connection:
    if password is None:
        password = USERS[user]
    kw.setdefault("connect_timeout", 10)
    kw.setdefault("host", "127.0.0.1")
    return psycopg.connect(port=proxy.port, user=user, password=password, dbname=dbname, **kw)


def psql(proxy, *args: str, user: str = "alice", dbname: str = "app", input: str | None = None,
         timeout: float = 60, check: bool = True, env: dict | None = None,
         host: str = "127.0.0.1") -> subprocess.CompletedProcess:
    e = dict(os.environ, PGPASSWORD=USERS.get(user, ""), PGCONNECT_TIMEOUT="10")
    e.pop("PGSSLMODE", None)
    e.update(env or {})
    port = proxy if isinstance(proxy, int) else proxy.port
    cmd = ["psql", "-X", "-h", host, "-p", str(port), "-U", user, "-d", dbname, *args]
    r = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, env=e)
    if check and r.returncode != 0:
        raise AssertionError(f"psql {args} exited {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r


@pytest.fixture
def conn(gh):
    c = connect(gh)
    yield c
    c.close()
