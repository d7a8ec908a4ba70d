"""`make demo` stays working: its non-interactive check starts PostgreSQL with the sample PII
schema, a real OpenID Connect provider and Gatehouse, runs the banner's scenarios through the
proxy (static users, an analyst and a DBA signed in with the device flow, an agent with client
credentials, a bulk update held until the DBA approves it, just-in-time access for the agent), and
cleans up. The interactive demo's printed commands work as printed, and Ctrl-C stops everything."""
from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.harness import free_port  # noqa: E402
from tests.harness.oidc import OidcProvider  # noqa: E402

DEMO = REPO / "scripts" / "demo.sh"


def removed_dir(stdout: str) -> Path:
    removed = [line for line in stdout.splitlines() if line.startswith("==> removed ")]
    assert removed, stdout
    return Path(removed[-1].split(" ", 2)[2])


def test_demo_check():
    r = subprocess.run([str(DEMO), "--check"], capture_output=True, text=True, timeout=240)
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    assert "demo check: OK" in out
    assert "customers=200" in out
    assert "Traceback" not in out + r.stderr
    # Each identity gets its own database login (the whoami command and the session agree).
    assert "target app: logs in as demo_analyst" in out and "target app: logs in as demo_dba" in out
    assert "demo_analyst|ana|analyst" in out
    assert "demo_dba|dan|dba" in out
    assert "demo_agent|etl-agent|" in out
    # The same statement: the analyst is refused with the rule's message, the DBA gets the row.
    assert ('ERROR:  Denied by rule "restricted-pii-dba-only": only the dba group may read or write '
            'customers.national_id and customers.card_number.') in out
    assert "national_id" in out and "(1 row)" in out
    assert 'Denied by rule "analysts-read-only"' in out and "UPDATE 1" in out
    # The agent's client-credentials token works with plain psql, within its rules.
    assert "(6 rows)" in out and 'Denied by rule "agents-no-pii"' in out
    assert "1 of ana by restricted-pii-dba-only" in out
    # The analyst's bulk update is held (psql waits), the DBA approves it with the printed CLI line,
    # and it runs once; rejected, psql gets the DBA's name and reason; with gatehouse.wait off it
    # returns at once (RV001), and once approved the same line runs it.
    m = re.search(r'NOTICE:  statement held for approval: request (apr_[a-z0-9]+) \(rule "bulk-updates-need-a-dba"\); '
                  r"waiting up to 5 min for a member of dba \(1 approval\)", out)
    assert m, out
    rid = m.group(1)
    assert f"or with `gatehouse approvals approve {rid}`; Ctrl-C cancels the request" in out
    assert re.search(rf"{rid}  statement  pending  ana@example.com  app", out), out
    assert f"approve {rid} --config " in out and f"approved {rid}: now approved" in out
    assert "  the held psql -> exit 0\n     UPDATE 24\n" in out
    assert "products.id=1 price: 18.50 -> 19.43" in out
    assert "ERROR:  RV001: approval required by rule \"bulk-updates-need-a-dba\": request apr_" in out
    assert re.search(r"rejected apr_[a-z0-9]+: now rejected", out), out
    assert "statement rejected by dan@example.com: not before the price review" in out
    assert "# approved: runs now, once\n  -> exit 0\n     SET\n     UPDATE 24\n" in out
    assert f"  {rid}: approved, consumed, pending\n" in out
    # Just-in-time access: the agent's write is refused until the DBA approves its read_write grant.
    assert 'Denied by rule "agents-read-only": agents may only read. It needs an active access grant' in out
    assert re.search(r"approved acc_[a-z0-9]+: now approved, granted until ", out), out
    assert "the agent's database login now: demo_agent_writer" in out
    assert "==> stopping the OpenID Connect provider" in out
    assert not removed_dir(out).exists()


def test_demo_without_node_says_what_is_missing_and_how_to_get_it(tmp_path):
    env = dict(os.environ, NODE=str(tmp_path / "no-such-node"))
    r = subprocess.run([str(DEMO), "--check"], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 1
    msg = r.stdout + r.stderr
    assert "Traceback" not in msg
    assert "Node.js not found" in msg and "Node.js >= 20.19" in msg
    assert "scripts/install-deps.sh" in msg and "--no-oidc" in msg
    assert "==> starting" not in msg  # nothing was started

    old = tmp_path / "node"
    old.write_text("#!/bin/sh\necho v18.19.0\n")
    old.chmod(0o755)
    r = subprocess.run([str(DEMO), "--check"], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, NODE=str(old)))
    assert r.returncode == 1
    assert f"Node.js v18.19.0 ({old}) is too old" in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def test_demo_check_without_oidc_needs_no_node(tmp_path):
    env = dict(os.environ, NODE=str(tmp_path / "no-such-node"))
    r = subprocess.run([str(DEMO), "--check", "--no-oidc"], capture_output=True, text=True, timeout=180, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "demo check: OK" in r.stdout and "OpenID Connect" not in r.stdout
    assert not removed_dir(r.stdout).exists()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{d.name}: {cmdline}")
    return found


def _shell(cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True, timeout=90,
                          env=dict(os.environ, PSQLRC="/dev/null", PGCONNECT_TIMEOUT="15"))


def test_interactive_demo_commands_work_as_printed_and_ctrl_c_stops_everything(tmp_path):
    port, admin_port, oidc_port = free_port(), free_port(), free_port()
    log = tmp_path / "demo.out"
    with open(log, "wb") as out:
        demo = subprocess.Popen([str(DEMO), "--port", str(port), "--admin-port", str(admin_port),
                                 "--oidc-port", str(oidc_port)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while "Press Ctrl-C" not in log.read_text() and demo.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        banner = log.read_text()
        assert "Press Ctrl-C" in banner, banner
        lines = [line.strip() for line in banner.splitlines()]

        def command(*parts: str) -> str:
            found = [line for line in lines if all(p in line for p in parts)]
            assert len(found) == 1, (parts, found)
            return found[0]

        assert f"at http://127.0.0.1:{oidc_port}" in banner
        people = {"ana": ("ana-demo-pass", 1), "dan": ("dan-demo-pass", 0)}
        for who, (password, psql_rc) in people.items():
            assert f"sign in as {who} / {password}" in banner
            # The person runs `gatehouse login`, opens the URL it prints and signs in.
            login_cmd = command(" login --issuer ", f"tokens/{who}.json")
            login = subprocess.Popen(shlex.split(login_cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
            try:
                first = login.stdout.readline()
                assert first.startswith("To sign in, open http"), first
                url = first.split("open ", 1)[1].strip()
                OidcProvider(port=oidc_port, workdir=tmp_path).device_approve(url, who, password)
                _out, err = login.communicate(timeout=60)
            finally:
                if login.poll() is None:
                    login.kill()
            assert login.returncode == 0, err
            assert f"for {who}@example.com" in err
            # The same statement: ana is refused by the rule, dan gets the row.
            r = _shell(command(" psql app ", f"tokens/{who}.json", "national_id"))
            assert r.returncode == psql_rc, r.stdout + r.stderr
            if psql_rc:
                assert 'Denied by rule "restricted-pii-dba-only"' in r.stderr
            else:
                assert "(1 row)" in r.stdout
            r = _shell(command(" whoami --config ", f"tokens/{who}.json"))
            assert r.returncode == 0 and f"email:    {who}@example.com" in r.stdout, r.stdout + r.stderr

        r = _shell(command("PGPASSWORD=$(", "user=etl-agent", "GROUP BY status"))
        assert r.returncode == 0 and "(6 rows)" in r.stdout, r.stdout + r.stderr
        # The held statement, as the banner prints it: terminal 1 (ana) waits, terminal 2 (dan) lists
        # the pending requests and approves; terminal 1 then gets the UPDATE's result.
        held = subprocess.Popen(["/bin/sh", "-c", command(" psql app ", "tokens/ana.json", '-- -c "UPDATE products')],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                                env=dict(os.environ, PSQLRC="/dev/null", PGCONNECT_TIMEOUT="15"))
        try:
            notice = held.stderr.readline()
            m = re.search(r"statement held for approval: request (apr_[a-z0-9]+) ", notice)
            assert m, notice
            rid = m.group(1)
            r = _shell(command(" approvals list ", "tokens/dan.json"))
            assert r.returncode == 0 and rid in r.stdout and "pending" in r.stdout, r.stdout + r.stderr
            assert held.poll() is None  # still waiting
            r = _shell(command(" approvals approve REQUEST_ID ", "tokens/dan.json").replace("REQUEST_ID", rid))
            assert r.returncode == 0 and f"approved {rid}" in r.stdout, r.stdout + r.stderr
            out, err = held.communicate(timeout=60)
        finally:
            if held.poll() is None:
                os.killpg(held.pid, signal.SIGKILL)
                held.wait()
        assert held.returncode == 0 and "UPDATE 24" in out, out + err
        r = _shell(command(" approvals show REQUEST_ID").replace("REQUEST_ID", rid))
        assert r.returncode == 0 and "consumed" in r.stdout, r.stdout + r.stderr
        # Not waiting: refused at once with the request id; the printed reject line closes it.
        r = _shell(command("SET gatehouse.wait = off", "tokens/ana.json"))
        m = re.search(r"request (apr_[a-z0-9]+) is open; the statement was not run", r.stderr)
        assert r.returncode != 0 and m, r.stdout + r.stderr
        r = _shell(command(" approvals reject REQUEST_ID ", "tokens/dan.json").replace("REQUEST_ID", m.group(1)))
        assert r.returncode == 0 and f"rejected {m.group(1)}" in r.stdout, r.stdout + r.stderr
        for static in ("alice", "bob", "priya"):
            login = [line for line in lines if line.endswith(f"user={static}\"")]
            assert len(login) == 1, (static, login)
            r = _shell(login[0] + " -X -A -t -c 'SELECT session_user'")
            assert r.returncode == 0 and r.stdout.strip() == "postgres", r.stdout + r.stderr
        # The masked SELECT as printed: priya (privacy team) sees the stored row, bob (an analyst) the
        # e-mail's domain only and the rest redacted.
        seen = {}
        for static in ("bob", "priya"):
            r = _shell(command(f"user={static}\" -c", "SELECT full_name, email") + " -X -A -t")
            assert r.returncode == 0, r.stdout + r.stderr
            seen[static] = r.stdout.strip().split("|")
        name, email, phone, born = seen["priya"]
        assert "@" in email and "*" not in email, seen
        assert name not in seen["bob"][0] and email not in seen["bob"][1], seen
        assert seen["bob"][1].endswith("@" + email.split("@")[1]) and seen["bob"][1] != email, seen
        assert phone not in "|".join(seen["bob"]) and born not in "|".join(seen["bob"]), seen
        assert _listening(oidc_port) and _listening(port)
    finally:
        demo.send_signal(signal.SIGINT)  # Ctrl-C
        rc = demo.wait(60)
    out = log.read_text()
    assert rc == 0, out
    assert "==> SIGINT: stopping" in out and "==> stopping the OpenID Connect provider" in out
    base = removed_dir(out)
    assert not base.exists()
    assert not _processes_mentioning(str(base)), _processes_mentioning(str(base))
    assert not _listening(oidc_port) and not _listening(port) and not _listening(admin_port)
