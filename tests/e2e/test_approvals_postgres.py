"""Approvals in PostgreSQL, shared by several proxy nodes (approvals.store_dsn): the store's
GoogleTests against the e2e cluster (two Services on one database, LISTEN/NOTIFY, a terminated
listener backend), and a real proxy that keeps its held statements there."""
from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import wait_for
from tests.harness import BINARY, Gatehouse
from tests.harness.oidc import OIDC_PASSWORDS

# The GoogleTest binary built beside the gatehouse binary (GATEHOUSE_UNIT_TESTS overrides).
UNIT_TESTS = Path(os.environ.get("GATEHOUSE_UNIT_TESTS", BINARY.parent / "unit_tests"))


def fresh_database(pg, name: str) -> str:
    pg.psql(f"drop database if exists {name} with (force)")
    pg.psql(f"create database {name}")
    return pg.dsn(name)


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
    from test_approvals import ROLES, HeldPsql, approvals_config  # the held-statement helpers
    for role, pw in ROLES.items():
        pg.psql(f"drop role if exists {role}; create role {role} login password '{pw}'")
    pg.psql("drop table if exists appr_pg_accounts; create table appr_pg_accounts(id int primary key, balance int)")
    pg.psql("insert into appr_pg_accounts values (1, 100)")
    for role in ROLES:
        pg.psql(f"grant select, update on appr_pg_accounts to {role}")
    dsn = fresh_database(pg, "gh_approvals_e2e")
    cfg = approvals_config(pg, user_hashes, oidc, tmp_path)
    del cfg["approvals"]["store"]
    cfg["approvals"]["store_dsn_env"] = "GH_APPROVALS_DSN"
    cfg["rules"] = [{"name": "review-pg-balance", "when": {"tables": ["appr_pg_accounts"], "statements": ["update"]},
                     "action": "review", "reviewers": {"groups": ["dba"], "approvals": 1}}]
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
