"""`gatehouse explain` and `gatehouse test-policy`, run as a security team runs them: the real
binary, a configuration file, policy test files. No database is needed (nothing connects)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.harness import BINARY, hash_password, to_yaml  # noqa: E402

EXAMPLE = REPO / "examples" / "policy-tests.yaml"

# One rule on top of the demo's guardrails, so that a static user's groups decide something.
ANALYSTS_NO_CARDS = {
    "name": "analysts-no-card-numbers",
    "when": {"groups": ["analyst"], "columns": ["customers.card_number"]},
    "action": "deny",
}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BINARY), *args], capture_output=True, text=True, timeout=30)


def _demo_module():
    spec = importlib.util.spec_from_file_location("gatehouse_demo", REPO / "scripts" / "demo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def demo_config() -> dict:
    """The configuration scripts/demo.py writes (target `app` is production; alice is in dba, bob
    in analyst), built by the demo's own function so that the example file follows it."""
    demo = _demo_module()
    fake_pg = types.SimpleNamespace(port=5432, user="postgres", password="not-used")
    return demo.gatehouse_config(fake_pg, port=16432, admin_port=19187)


@pytest.fixture
def config_file(tmp_path, demo_config):
    def write(extra: dict | None = None) -> Path:
        cfg = dict(demo_config, **(extra or {}))
        p = tmp_path / "gatehouse.yaml"
        p.write_text(to_yaml(cfg) + "\n")
        return p
    return write


def cases_file(tmp_path: Path, name: str, cases: list[dict], **top) -> Path:
    p = tmp_path / name
    p.write_text(to_yaml(dict(top, cases=cases)) + "\n")
    return p


# ---- explain --------------------------------------------------------------------------------

def test_explain_text(config_file):
    cfg = config_file()
    r = run("explain", "--config", str(cfg), "--identity", "alice", "--target", "app", "DELETE FROM orders")
    assert r.returncode == 0, r.stderr
    assert "decision:  deny" in r.stdout
    assert "rule:      guardrail.unbounded_write" in r.stdout
    assert "identity:  alice (groups: dba)" in r.stdout
    assert "environment production" in r.stdout
    assert "delete on orders: no WHERE" in r.stdout

    r = run("explain", "--config", str(cfg), "--identity", "bob", "--target", "app",
            "SELECT id FROM orders WHERE id = 1")
    assert r.returncode == 0, r.stderr
    assert "decision:  allow" in r.stdout
    assert "(none matched: the target's default action)" in r.stdout


def test_explain_json(config_file):
    cfg = config_file()
    r = run("explain", "--config", str(cfg), "--identity", "alice", "--target", "app", "--json", "DROP TABLE orders")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["action"] == "deny"
    assert d["rule"] == "guardrail.drop"
    assert "guardrail.drop" in d["message"]
    assert d["analysis"]["statements"][0]["kinds"] == ["drop"]


def test_explain_uses_a_static_users_groups(config_file):
    cfg = config_file({"rules": [ANALYSTS_NO_CARDS]})
    sql = "SELECT card_number FROM customers WHERE id = 1"
    bob = json.loads(run("explain", "--config", str(cfg), "--identity", "bob", "--target", "app", "--json", sql).stdout)
    assert (bob["action"], bob["rule"]) == ("deny", "analysts-no-card-numbers")
    alice = json.loads(run("explain", "--config", str(cfg), "--identity", "alice", "--target", "app", "--json",
                           sql).stdout)
    assert (alice["action"], alice["rule"]) == ("allow", "")
    # --groups replaces the static user's groups.
    r = run("explain", "--config", str(cfg), "--identity", "bob", "--groups", "support", "--target", "app", sql)
    assert "decision:  allow" in r.stdout and "groups: support" in r.stdout, r.stdout


def test_explain_unknown_target_lists_the_targets(config_file):
    r = run("explain", "--config", str(config_file()), "--identity", "alice", "--target", "prod", "SELECT 1")
    assert r.returncode == 2
    assert 'target "prod" is not in' in r.stderr
    assert "(targets: app *)" in r.stderr, r.stderr


def test_explain_broken_config(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("targets: [\n")
    r = run("explain", "--config", str(p), "--identity", "alice", "--target", "app", "SELECT 1")
    assert r.returncode == 2
    assert "broken.yaml:" in r.stderr and "invalid YAML" in r.stderr, r.stderr


# ---- test-policy ----------------------------------------------------------------------------

def test_example_file_passes_against_the_demo_config(config_file):
    r = run("test-policy", "--config", str(config_file()), str(EXAMPLE))
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    passes = [ln for ln in lines if ln.startswith("PASS  ")]
    assert len(passes) >= 10
    assert "PASS  DELETE without WHERE is blocked" in lines
    assert lines[-1] == f"{len(passes)} passed, 0 failed"
    assert not any(ln.startswith("FAIL") for ln in lines)


def test_passing_file_with_groups_from_the_config(tmp_path, config_file):
    cfg = config_file({"rules": [ANALYSTS_NO_CARDS]})
    sql = "SELECT card_number FROM customers WHERE id = 1"
    f = cases_file(tmp_path, "cases.yaml", [
        {"name": "bob is an analyst", "identity": {"subject": "bob"}, "target": "app", "sql": sql,
         "expect": {"action": "deny", "rule": "analysts-no-card-numbers"}},
        {"name": "alice is a dba", "identity": {"subject": "alice"}, "target": "app", "sql": sql,
         "expect": {"action": "allow", "rule": ""}},
        {"name": "groups given replace the user's", "identity": {"subject": "bob", "groups": ["support"]},
         "target": "app", "sql": sql, "expect": {"action": "allow"}},
        {"name": "someone not in the config has no groups", "identity": {"subject": "carol"}, "target": "app",
         "sql": sql, "expect": {"action": "allow"}},
    ])
    r = run("test-policy", "--config", str(cfg), str(f))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS  bob is an analyst" in r.stdout
    assert r.stdout.splitlines()[-1].endswith(" passed, 0 failed")


def test_wrong_expectation_fails_with_expected_and_actual(tmp_path, config_file):
    f = cases_file(tmp_path, "wrong.yaml", [
        {"name": "reads are fine", "identity": {"subject": "bob"}, "target": "app",
         "sql": "SELECT id FROM orders WHERE id = 1", "expect": {"action": "allow"}},
        {"name": "someone thinks DROP is allowed", "identity": {"subject": "alice"}, "target": "app",
         "sql": "DROP TABLE orders", "expect": {"action": "allow", "rule": ""}},
    ])
    r = run("test-policy", "--config", str(config_file()), str(f))
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    assert "PASS  reads are fine" in out
    assert "FAIL  someone thinks DROP is allowed  (" + str(f) + ":" in out, out
    assert "      action: expected allow, got deny (rule guardrail.drop)" in out
    assert "      rule: expected \"\" (the target's default action), got \"guardrail.drop\"" in out
    assert "      message: Denied by rule \"guardrail.drop\"" in out
    assert "      statement 1: DROP TABLE orders" in out
    assert "kinds: drop" in out
    assert out.splitlines()[-1] == "1 passed, 1 failed"


def test_case_file_with_rules_is_refused(tmp_path, config_file):
    f = cases_file(tmp_path, "sneaky.yaml",
                   [{"name": "drop", "identity": {"subject": "alice"}, "target": "app", "sql": "DROP TABLE orders",
                     "expect": {"action": "allow"}}],
                   rules=[{"name": "allow-drop", "when": {"statements": ["drop"]}, "action": "allow"}])
    r = run("test-policy", "--config", str(config_file()), str(f))
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{f}:1: rules: a policy test file holds only `cases`" in r.stderr, r.stderr
    assert "PASS" not in r.stdout and "FAIL" not in r.stdout


def test_bad_case_files_exit_2_naming_the_line(tmp_path, config_file):
    cfg = config_file()
    f = tmp_path / "typo.yaml"
    f.write_text("cases:\n  - name: a\n    identity: {subject: bob}\n    target: app\n    sql: SELECT 1\n"
                 "    expect: {action: alow}\n")
    r = run("test-policy", "--config", str(cfg), str(f))
    assert r.returncode == 2
    assert f'{f}:6: cases[0].expect.action: unknown action "alow"' in r.stderr, r.stderr

    f.write_text("cases:\n  - name: a\n    identity: {subject: bob}\n    target: prod\n    sql: SELECT 1\n"
                 "    expect: {action: allow}\n")
    r = run("test-policy", "--config", str(cfg), str(f))
    assert r.returncode == 2
    assert f'{f}:4: cases[0].target: no target "prod" in {cfg} (targets: app, *)' in r.stderr, r.stderr

    r = run("test-policy", "--config", str(cfg), str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "cannot open" in r.stderr


def test_broken_config_exits_2(tmp_path):
    cfg = tmp_path / "gatehouse.yaml"
    cfg.write_text("targets:\n  - name: app\n    environment: production\n    backend: {port: none}\n")
    r = run("test-policy", "--config", str(cfg), str(EXAMPLE))
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{cfg}:4: targets[0].backend.port" in r.stderr, r.stderr
    assert r.stdout == ""


def test_static_users_from_hash_password(tmp_path):
    """A hand-written config (not the demo's): users with hashes from `gatehouse hash-password`."""
    cfg = tmp_path / "gatehouse.yaml"
    cfg.write_text(to_yaml({
        "users": [{"name": "dana", "password": hash_password("dana-secret"), "groups": ["oncall"]}],
        "targets": [{"name": "ledger", "environment": "staging",
                     "backend": {"host": "127.0.0.1", "port": 5432, "database": "ledger"},
                     "login": {"user": "postgres", "password": "x"}}],
        "rules": [{"name": "oncall-may-not-truncate", "when": {"groups": ["oncall"], "statements": ["truncate"]},
                   "action": "review", "reviewers": {"groups": ["dba"]}}],
    }) + "\n")
    f = cases_file(tmp_path, "cases.yaml", [
        {"name": "oncall truncate goes to review", "identity": {"subject": "dana"}, "target": "ledger",
         "sql": "TRUNCATE entries", "expect": {"action": "review", "rule": "oncall-may-not-truncate",
                                               "reviewers": {"groups": ["dba"], "approvals": 1}}},
        {"name": "staging has no guardrails", "identity": {"subject": "dana"}, "target": "ledger",
         "sql": "DELETE FROM entries", "expect": {"action": "allow"}},
    ])
    r = run("test-policy", "--config", str(cfg), str(f))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1] == "2 passed, 0 failed"
