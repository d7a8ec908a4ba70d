"""Real parts for tests, the demo and the benchmark: a throwaway PostgreSQL cluster, TLS
certificates, and a Gatehouse process. Nothing here is a mock.

PostgreSQL refuses to run as root, so when we are root the cluster runs as the `postgres`
system user (created by Debian's package) in a directory it owns.
"""
from __future__ import annotations

import json
import os
import re
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("GATEHOUSE_BIN", REPO / "build" / "gatehouse"))
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.05, what: str = "condition"):
    """The predicate's first true value, polled every `interval`; AssertionError after `timeout`."""
    deadline = time.time() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.time() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


HELD = re.compile(r"request (apr_[a-z0-9]+)")


class HeldPsql:
    """psql running one statement that the proxy holds for review; reads the request id from the
    hold notice. `proxy`: a Gatehouse or its port; `before`: statements run first in the session."""

    def __init__(self, proxy, user: str, token: str, sql: str, env: dict | None = None, before: list[str] = (),
                 app: str | None = None):
        port = getattr(proxy, "port", proxy)
        e = dict(os.environ, PGPASSWORD=token, PGSSLMODE="disable", PGCONNECT_TIMEOUT="15")
        if app:
            e["PGAPPNAME"] = app
        e.update(env or {})
        first = [a for c in before for a in ("-c", c)]
        self.proc = subprocess.Popen(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
                                      str(port), "-U", user, "-d", "app", *first, "-c", sql],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e,
                                     start_new_session=True)
        self.stderr_lines: list[str] = []
        self.request_id: str | None = None
        deadline = time.time() + 20
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.stderr_lines.append(line)
            m = HELD.search(line)
            if m and "held for approval" in line:
                self.request_id = m.group(1)
                return
        self.kill()
        raise AssertionError(f"no hold notice from psql; stderr so far: {self.stderr_lines}")

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, "".join(self.stderr_lines) + err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0, host: str = "127.0.0.1") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def _run_as_pg(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    kw.setdefault("timeout", 180)
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def _chown_pg(path: Path) -> None:
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(path, pw.pw_uid, pw.pw_gid)


class PgCluster:
    """initdb into a temp dir, start on a free loopback port, SCRAM passwords."""

    def __init__(self, base: Path | None = None, password: str = "postgres-secret", port: int | None = None,
                 settings: dict[str, str] | None = None, ssl_dir: Path | None = None):
        self.base = Path(base or tempfile.mkdtemp(prefix="gh-pg-"))
        self.base.mkdir(parents=True, exist_ok=True)
        _chown_pg(self.base)
        self.data = self.base / "data"
        self.port = port or free_port()
        self.user = "postgres"
        self.password = password
        self.settings = settings or {}
        self.ssl_dir = ssl_dir
        self.log = self.base / "postgres.log"

    def init(self) -> "PgCluster":
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        _chown_pg(pwfile)
        _run_as_pg([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=scram-sha-256",
                    f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8"])
        pwfile.unlink()
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.base}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "128MB",
        }
        if self.ssl_dir:
            for name in ("server.crt", "server.key", "ca.crt"):
                dst = self.data / name
                shutil.copy(self.ssl_dir / name, dst)
                _chown_pg(dst)
                os.chmod(dst, 0o600)
            conf.update({"ssl": "on", "ssl_cert_file": "'server.crt'", "ssl_key_file": "'server.key'"})
        conf.update(self.settings)
        with open(self.data / "postgresql.conf", "a") as f:
            for k, v in conf.items():
                f.write(f"{k} = {v}\n")
        return self

    def start(self) -> "PgCluster":
        _run_as_pg([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start"])
        return self

    def stop(self, mode: str = "fast") -> None:
        try:
            _run_as_pg([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])
        except subprocess.CalledProcessError:
            pass

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} password={self.password} dbname={dbname}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        env = dict(os.environ, PGPASSWORD=self.password)
        r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA", "-h", "127.0.0.1", "-p",
                            str(self.port), "-U", self.user, "-d", dbname, "-c", sql],
                           check=True, capture_output=True, text=True, env=env, timeout=120)
        return r.stdout.strip()


def make_certs(directory: Path, hosts: tuple[str, ...] = ("localhost",), ips: tuple[str, ...] = ("127.0.0.1",)) -> Path:
    """A CA and a server certificate signed by it (SAN: the given hosts and IPs)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)

    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Gatehouse Test CA",
         "-keyout", "ca.key", "-out", "ca.crt")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={hosts[0]}", "-keyout", "server.key",
         "-out", "server.csr")
    san = ",".join([f"DNS:{h}" for h in hosts] + [f"IP:{i}" for i in ips])
    (d / "ext.cnf").write_text(f"subjectAltName={san}\n")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
         "-extfile", "ext.cnf", "-out", "server.crt")
    os.chmod(d / "server.key", 0o600)
    return d


def hash_password(password: str) -> str:
    r = subprocess.run([str(BINARY), "hash-password"], input=password + "\n", capture_output=True, text=True,
                       check=True)
    return r.stdout.strip()


def to_yaml(value, indent: int = 0) -> str:
    """Small YAML emitter (JSON scalars are valid YAML), so tests need no PyYAML."""
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return "{}"
        lines = []
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:\n{to_yaml(v, indent + 1)}")
            else:
                lines.append(f"{pad}{k}: {to_yaml(v, 0)}")
        return "\n".join(lines)
    if isinstance(value, list):
        if not value:
            return "[]"
        lines = []
        for item in value:
            if isinstance(item, dict) and item:
                body = to_yaml(item, indent + 1).lstrip()
                lines.append(f"{pad}- {body}")
            else:
                lines.append(f"{pad}- {to_yaml(item, 0)}")
        return "\n".join(lines)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(str(value))


class Gatehouse:
    """A `gatehouse serve` process with a generated config file."""

    def __init__(self, config: dict, workdir: Path | None = None):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="gh-proxy-"))
        self.config = config
        self.config.setdefault("listen", {}).setdefault("address", "127.0.0.1")
        self.config["listen"].setdefault("port", free_port())
        self.config.setdefault("admin", {}).setdefault("port", free_port())
        self.config_path = self.workdir / "gatehouse.yaml"
        self.log_path = self.workdir / "gatehouse.log"
        self.proc: subprocess.Popen | None = None

    @property
    def port(self) -> int:
        return int(self.config["listen"]["port"])

    @property
    def admin_port(self) -> int:
        return int(self.config["admin"]["port"])

    def write_config(self, config: dict | None = None) -> None:
        if config is not None:
            self.config = config
        self.config_path.write_text(to_yaml(self.config) + "\n")

    def start(self, extra_env: dict | None = None) -> "Gatehouse":
        # A port free when it was picked may be taken by another process before the proxy binds
        # it; then the proxy exits ("Address already in use") while the other process answers on
        # the port, and a test talks to that (seen once in CI, while other test environments ran
        # on the machine). Wait for the proxy's own "listening on" line; on such a clash, retry
        # with new ports.
        for attempt in range(5):
            self.write_config()
            env = dict(os.environ, **(extra_env or {}))
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            self._log = open(self.log_path, "ab")
            self.proc = subprocess.Popen([str(BINARY), "serve", "--config", str(self.config_path)], stdout=self._log,
                                         stderr=subprocess.STDOUT, env=env)
            deadline = time.time() + 15
            while time.time() < deadline:
                listening = f"listening on {self.config['listen'].get('address', '127.0.0.1')}:{self.port} "
                if self.proc.poll() is not None or listening in self.log()[log_start:]:
                    break
                time.sleep(0.05)
            clash = "Address already in use" in self.log()[log_start:]
            if self.proc.poll() is not None and clash and attempt < 4:
                self._log.close()
                self.config["listen"]["port"] = free_port()
                self.config["admin"]["port"] = free_port()
                continue
            try:
                wait_port(self.port, timeout=max(1.0, deadline - time.time()))
            except TimeoutError:
                self.proc.kill()
                raise RuntimeError("gatehouse did not start:\n" + self.log())
            if self.proc.poll() is not None:
                raise RuntimeError("gatehouse exited at start:\n" + self.log())
            return self
        raise RuntimeError("gatehouse did not start:\n" + self.log())

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def rss_kib(self) -> int:
        return _status_kib(self.proc.pid, "VmRSS")

    def hwm_kib(self) -> int:
        return _status_kib(self.proc.pid, "VmHWM")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def metrics(self) -> dict[str, float]:
        import urllib.request
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=5).read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def basic_config(pg: PgCluster, users: dict[str, str], **overrides) -> dict:
    """A one-target config in front of `pg` with static users {name: password}."""
    cfg = {
        "threads": 2,
        "log": {"level": "info"},
        "users": [{"name": n, "password": hash_password(p), "groups": ["dba"]} for n, p in users.items()],
        "targets": [{
            "name": "app",
            "environment": "test",
            "backend": {"host": "127.0.0.1", "port": pg.port, "database": "postgres"},
            "login": {"user": pg.user, "password": pg.password},
        }, {
            "name": "*",
            "environment": "test",
            "backend": {"host": "127.0.0.1", "port": pg.port},
            "login": {"user": pg.user, "password": pg.password},
        }],
    }
    cfg.update(overrides)
    return cfg
