"""`make demo` stays working: its non-interactive check starts PostgreSQL with the sample PII
schema and Gatehouse, queries through the proxy, and cleans up."""
from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_check():
    r = subprocess.run([str(REPO / "scripts" / "demo.sh"), "--check"], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "demo check: OK" in r.stdout
    assert "customers=200" in r.stdout
    removed = [line for line in r.stdout.splitlines() if line.startswith("==> removed ")]
    assert removed and not Path(removed[-1].split(" ", 2)[2]).exists()
