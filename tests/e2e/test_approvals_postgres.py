"""Approvals in PostgreSQL, shared by several proxy nodes (approvals.store_dsn): the store's
GoogleTests against the e2e cluster (two Services on one database, LISTEN/NOTIFY, a terminated
listener backend), a real proxy that keeps its held statements there, and two proxies: a statement
held on one is released by an approval given through the other's admin API."""
from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from conftest import wait_for
from tests.harness import BINARY, Gatehouse
from tests.harness.oidc import OIDC_PASSWORDS

# The GoogleTest binary built beside the gatehouse binary (GATEHOUSE_UNIT_TESTS overrides).
UNIT_TESTS = Path(os.environ.get("GATEHOUSE_UNIT_TESTS", BINARY.parent / "unit_tests"))


def fresh_database(pg, name: str) -> str:
    pg.psql(f"drop database if exists {name} with (force)")
    pg.psql(f"create database {name}")
    return pg.dsn(name)


def accounts_table(pg) -> None:
    """appr_pg_accounts (id 1..3, balance 100), writable by the logins the approvals config uses."""
    from test_approvals import ROLES
    pg.psql("drop table if exists appr_pg_accounts; create table appr_pg_accounts(id int primary key, balance int)")
    for role, pw in ROLES.items():  # kept when they exist: test_approvals.py's tables may be granted to them
        if not pg.psql(f"select 1 from pg_roles where rolname = '{role}'"):
            pg.psql(f"create role {role} login")
        pg.psql(f"alter role {role} password '{pw}'")
    pg.psql("insert into appr_pg_accounts select g, 100 from generate_series(1, 3) g")
    for role in ROLES:
        pg.psql(f"grant select, update on appr_pg_accounts to {role}")


def shared_store_config(pg, user_hashes, oidc, workdir: Path, node: str) -> dict:
    """The held-statement config of test_approvals.py, its store in PostgreSQL (DSN from the
    environment), its own audit node name."""
    from test_approvals import approvals_config
    cfg = approvals_config(pg, user_hashes, oidc, workdir)
    del cfg["approvals"]["store"]
    cfg["approvals"]["store_dsn_env"] = "GH_APPROVALS_DSN"
    cfg["rules"] = [{"name": "review-pg-balance", "when": {"tables": ["appr_pg_accounts"], "statements": ["update"]},
                     "action": "review", "reviewers": {"groups": ["dba"], "approvals": 1}}]
    cfg["audit"] = {"node": node}
    return cfg


def audited_states(proxy) -> list[tuple[str, str]]:
    """(request id, state) of the approval records in this node's own audit store."""
    r = subprocess.run([str(BINARY), "audit", "search", "--store", str(proxy.workdir / "gatehouse-audit.db"),
                        "--format", "jsonl", "--limit", "5000"], capture_output=True, text=True, timeout=60)
    recs = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    return [(x["fields"].get("request"), x["fields"].get("state")) for x in recs if x.get("type") == "approval"]


def test_postgres_store_unit_tests_run_against_a_real_server(pg, tmp_path):
    """The ApprovalsPostgres GoogleTests skip without GH_TEST_PG_DSN; here they get the session's
    real server (a database of their own), and every one of them must run and pass: none skipped."""
    assert UNIT_TESTS.exists(), f"{UNIT_TESTS} is missing; build the unit_tests target"
    dsn = fresh_database(pg, "gh_approvals_unit")
    report = tmp_path / "gtest.json"
    r = subprocess.run([str(UNIT_TESTS), "--gtest_filter=ApprovalsPostgres*", f"--gtest_output=json:{report}"],
                       env=dict(os.environ, GH_TEST_PG_DSN=dsn), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    tests = [t for suite in json.loads(report.read_text())["testsuites"] for t in suite["testsuite"]
             if not t["name"].startswith("DISABLED_")]
    assert len(tests) >= 7, [t["name"] for t in tests]
    assert all(t["classname"] == "ApprovalsPostgres" for t in tests)
    not_run = [(t["name"], t.get("result"), t.get("status")) for t in tests
               if t.get("result") != "COMPLETED" or t.get("status") != "RUN" or t.get("failures")]
    assert not_run == [], not_run
    assert "SKIPPED" not in r.stdout, r.stdout[-4000:]


def test_a_held_statement_is_kept_in_the_shared_store(pg, user_hashes, oidc, tmp_path):
    """One node with approvals.store_dsn_env: the request it holds is a row of the PostgreSQL table
    (named after the node), Ctrl-C cancels it there, and the DSN's password stays out of the log."""
    from test_approvals import HeldPsql
    accounts_table(pg)
    dsn = fresh_database(pg, "gh_approvals_e2e")
    cfg = shared_store_config(pg, user_hashes, oidc, tmp_path, "gh-single")
    proxy = Gatehouse(cfg, workdir=tmp_path).start(extra_env={"GH_APPROVALS_DSN": dsn})
    try:
        token = oidc.device_login("gatehouse-cli", "alice", OIDC_PASSWORDS["alice"])["access_token"]
        held = HeldPsql(proxy, "alice@example.com", token, "UPDATE appr_pg_accounts SET balance = 1 WHERE id = 1")
        row = pg.psql(f"select state || '|' || requester_email || '|' || target from gatehouse_approval_requests "
                      f"where id = '{held.request_id}'", dbname="gh_approvals_e2e")
        assert row == "pending|alice@example.com|app", row
        os.killpg(held.proc.pid, signal.SIGINT)
        rc, _, err = held.finish()
        assert rc != 0, err

        def state() -> str:
            return pg.psql(f"select state from gatehouse_approval_requests where id = '{held.request_id}'",
                           dbname="gh_approvals_e2e")
        wait_for(lambda: state() == "cancelled", timeout=10, what="the request cancelled in the shared store")
        assert pg.psql("select balance from appr_pg_accounts where id = 1") == "100"
        assert "approvals: store PostgreSQL" in proxy.log()
        assert pg.password not in proxy.log()
    finally:
        proxy.stop()


def test_a_statement_held_on_one_node_is_released_by_an_approval_on_another(pg, user_hashes, oidc, tmp_path):
    """Two proxies, one PostgreSQL approvals store: psql holds on node 1, a reviewer approves through
    node 2's admin API, node 1 hears it (NOTIFY) and runs the statement once. Each node audits the
    steps it made itself, and only those."""
    from test_approvals import HeldPsql, api
    accounts_table(pg)
    env = {"GH_APPROVALS_DSN": fresh_database(pg, "gh_approvals_two_nodes")}
    nodes = []
    try:
        for name in ("gh-node-1", "gh-node-2"):
            workdir = tmp_path / name
            workdir.mkdir()
            nodes.append(Gatehouse(shared_store_config(pg, user_hashes, oidc, workdir, name), workdir=workdir)
                         .start(extra_env=env))
        node1, node2 = nodes
        alice = oidc.device_login("gatehouse-cli", "alice", OIDC_PASSWORDS["alice"])["access_token"]
        bob = oidc.device_login("gatehouse-cli", "bob", OIDC_PASSWORDS["bob"])["access_token"]

        held = HeldPsql(node1, "alice@example.com", alice, "UPDATE appr_pg_accounts SET balance = 2 WHERE id = 2")
        rid = held.request_id
        status, req = api(node2, "GET", f"/api/v1/approvals/{rid}", bob)
        assert status == 200, req
        assert req["state"] == "pending" and req["node"] == "gh-node-1", req
        assert pg.psql("select balance from appr_pg_accounts where id = 2") == "100"  # still held

        status, body = api(node2, "POST", f"/api/v1/approvals/{rid}/approve", bob, {"comment": "ok from node 2"})
        assert status == 200 and body["state"] == "approved", body
        rc, out, err = held.finish(timeout=30)
        assert rc == 0, err
        assert "UPDATE 1" in out
        assert pg.psql("select balance from appr_pg_accounts where id = 2") == "2"
        status, req = api(node2, "GET", f"/api/v1/approvals/{rid}", bob)
        assert req["state"] == "consumed", req  # consumed by node 1, read through node 2

        # Approved once, through node 2, and not again: a second vote is refused on either node.
        for node in (node1, node2):
            status, body = api(node, "POST", f"/api/v1/approvals/{rid}/approve", bob, {})
            assert status == 409, body

        def steps(node) -> list[str]:
            return [state for r, state in audited_states(node) if r == rid]
        # Node 2 made one step: the approval. Node 1 made the others: opened it (pending), its session
        # stopped waiting once released (the waiting flag: one "approved" record), consumed it. Had
        # either node audited the other's changes, node 2 would show them and node 1 two approvals.
        wait_for(lambda: steps(node2) == ["approved"] and "consumed" in steps(node1), timeout=15,
                 what="each node's own steps in its audit store")
        assert sorted(set(steps(node1))) == ["approved", "consumed", "pending"], steps(node1)
        assert steps(node1).count("approved") == 1 and steps(node1).count("consumed") == 1, steps(node1)
    finally:
        for n in nodes:
            n.stop()
