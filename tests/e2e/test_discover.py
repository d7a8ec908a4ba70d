"""`gatehouse discover`: samples a real target's tables with the content detectors and suggests a
classification; plain ids, free text and already classified columns are told apart."""
from __future__ import annotations

import json
import subprocess

import psycopg
import yaml

from conftest import config_for, target
from tests.harness import BINARY, Gatehouse

SETUP = """
DROP SCHEMA IF EXISTS disc CASCADE;
CREATE SCHEMA disc;
CREATE TABLE disc.people (id int, customer_no bigint, contact text, ssn text, card text, note text, iban text,
                          known_email text);
INSERT INTO disc.people
SELECT g, 100000000 + g * 7919,
       'person' || g || '@example.com',
       lpad((100 + g % 600)::text, 3, '0') || '-' || lpad((1 + g % 98)::text, 2, '0') || '-' || lpad((1 + g)::text, 4, '0'),
       CASE g % 2 WHEN 0 THEN '4111 1111 1111 1111' ELSE '5500 0055 5555 5559' END,
       'order ' || g || ' shipped on time',
       'DE89370400440532013000',
       'k' || g || '@example.org'
FROM generate_series(1, 300) g;
"""


def run(cfg_path, *args):
    return subprocess.run([str(BINARY), "discover", "--config", str(cfg_path), "--target", "app", *args],
                          capture_output=True, text=True, timeout=60)


def test_discover_suggests_what_the_detectors_find(pg, user_hashes, tmp_path):
    with psycopg.connect(pg.dsn(), autocommit=True) as d:
        d.execute(SETUP)
    cfg = config_for(pg, user_hashes)
    cfg["targets"] = [target("app", pg.port, password=pg.password)]
    cfg["classification"] = [{"columns": ["disc.people.known_email"], "tags": ["pii"]}]
    proxy = Gatehouse(cfg, workdir=tmp_path)
    proxy.write_config()
    r = run(proxy.config_path, "--format", "json")
    assert r.returncode == 0, r.stderr
    found = {f["column"]: f for f in json.loads(r.stdout)}
    assert found["disc.people.contact"]["detected"] == "email" and found["disc.people.contact"]["confidence"] == 1.0
    assert found["disc.people.ssn"]["detected"] == "ssn"
    assert found["disc.people.card"]["detected"] == "card"
    assert found["disc.people.iban"]["detected"] == "iban"
    assert found["disc.people.known_email"]["classified"] is True
    assert found["disc.people.contact"]["classified"] is False
    for plain in ("disc.people.id", "disc.people.customer_no", "disc.people.note"):
        assert plain not in found, found[plain]
    # YAML for the configuration: what is not classified yet, and it parses
    r = run(proxy.config_path, "--format", "yaml")
    assert r.returncode == 0, r.stderr
    doc = yaml.safe_load(r.stdout)
    cols = {c for e in doc["classification"] for c in e["columns"]}
    assert "disc.people.contact" in cols and "disc.people.known_email" not in cols
    assert {"pii", "email"} <= set(next(e for e in doc["classification"] if "disc.people.contact" in e["columns"])["tags"])
    r = run(proxy.config_path)
    assert r.returncode == 0 and "(already classified)" in r.stdout and "disc.people.ssn" in r.stdout, r.stdout


def test_discover_says_why_it_cannot_connect(pg, user_hashes, tmp_path):
    cfg = config_for(pg, user_hashes)
    cfg["targets"] = [target("app", pg.port, password="wrong-password")]
    proxy = Gatehouse(cfg, workdir=tmp_path)
    proxy.write_config()
    r = run(proxy.config_path)
    assert r.returncode == 1 and "cannot connect to target \"app\"" in r.stderr, r.stderr
    r = subprocess.run([str(BINARY), "discover", "--config", str(proxy.config_path), "--target", "nope"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "target \"nope\"" in r.stderr
