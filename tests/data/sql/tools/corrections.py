#!/usr/bin/env python3
"""Hand corrections of the golden files: what the analyzer got wrong in review.

After regenerating the goldens (GATEHOUSE_UPDATE_GOLDEN=1), run

    tests/data/sql/tools/corrections.py            # re-apply every correction
    tests/data/sql/tools/corrections.py --check    # only report, write nothing

Each correction turns the analyzer's output into the expected output. When a correction
changes nothing, the analyzer now produces the expected output for that file: the bug is
fixed there, and the correction can be deleted. A correction that no longer applies (the
output moved elsewhere) fails loudly; re-review that file by hand.

The JSON is re-rendered exactly as gh::sql::to_json lays it out (2-space indents, arrays
of scalars on one line, key order of json.cpp).
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Key order of a statement and of a relation in json.cpp.
STATEMENT_KEYS = ["kinds", "text", "location", "object_name", "normalized", "fingerprint", "relations", "functions",
                  "writes", "settings", "unresolved_columns", "returning", "whole_row", "opaque_code",
                  "server_file_access", "server_program", "remote_access", "role_change",
                  "transaction_control", "destructive_alter"]
RELATION_KEYS = ["schema", "name", "access", "columns_read", "columns_written", "all_columns"]

# Open analyzer bugs, referred to by each correction; keep in step with README.md. Empty: the
# bugs B1-B8 found in the first review were fixed in 925716a, and their files now match.
BUGS = {}


def _dump(v):
    return json.dumps(v, ensure_ascii=False)


def _write(j, indent, out):
    if isinstance(j, dict):
        if not j:
            out.append("{}")
            return
        out.append("{\n")
        for n, (k, v) in enumerate(j.items()):
            if n:
                out.append(",\n")
            out.append(" " * (indent + 2) + _dump(k) + ": ")
            _write(v, indent + 2, out)
        out.append("\n" + " " * indent + "}")
    elif isinstance(j, list):
        if all(not isinstance(v, (dict, list)) for v in j):
            out.append("[" + ", ".join(_dump(v) for v in j) + "]")
            return
        out.append("[\n")
        for n, v in enumerate(j):
            if n:
                out.append(",\n")
            out.append(" " * (indent + 2))
            _write(v, indent + 2, out)
        out.append("\n" + " " * indent + "]")
    else:
        out.append(_dump(j))


def render(j):
    out = []
    _write(j, 0, out)
    return "".join(out) + "\n"


def _ordered(d, keys):
    unknown = [k for k in d if k not in keys]
    if unknown:
        raise ValueError(f"unknown keys {unknown}")
    return {k: d[k] for k in keys if k in d and d[k] not in (None, [], False)}


def normalize(j):
    """Key order and sorted column lists as json.cpp writes them; empty/false fields dropped."""
    statements = []
    for s in j.get("statements", []):
        rels = []
        for r in s.get("relations", []):
            for key in ("columns_read", "columns_written"):
                if key in r:
                    r[key] = sorted(set(r[key]))
            rels.append(_ordered(r, RELATION_KEYS))
        s["relations"] = rels
        if "unresolved_columns" in s:
            s["unresolved_columns"] = sorted(set(s["unresolved_columns"]))
        statements.append(_ordered(s, STATEMENT_KEYS))
    if "statements" in j:
        j["statements"] = statements
    return j


# --- helpers used by the corrections ---------------------------------------------------

def rel(stmt, name, schema=None):
    for r in stmt.get("relations", []):
        if r["name"] == name and r.get("schema") == schema:
            return r
    raise KeyError(f"relation {schema}.{name} not in statement")


def drop_column(stmt, name, column, schema=None):
    r = rel(stmt, name, schema)
    r["columns_read"] = [c for c in r.get("columns_read", []) if c != column]


def drop_unresolved(stmt, *columns):
    stmt["unresolved_columns"] = [c for c in stmt.get("unresolved_columns", []) if c not in columns]


def add_unresolved(stmt, *columns):
    stmt["unresolved_columns"] = sorted(set(stmt.get("unresolved_columns", [])) | set(columns))


def add_relation(stmt, name, access, schema=None, index=None):
    if any(r["name"] == name and r.get("schema") == schema for r in stmt.get("relations", [])):
        return  # already listed: the correction is a no-op
    r = {"name": name, "access": access}
    if schema:
        r = {"schema": schema, **r}
    rels = stmt.setdefault("relations", [])
    rels.insert(len(rels) if index is None else index, r)


# --- the corrections --------------------------------------------------------------------
# (file without .json, bug id, function(json) -> None). Example from the first review:
#
#   def c_admin_042(j):
#       add_relation(j["statements"][0], "orders", ["ddl"])
#   CORRECTIONS = [("admin/042-drop-policy", "B4", c_admin_042)]

CORRECTIONS = []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="report only")
    ap.add_argument("--root", default=ROOT)
    a = ap.parse_args()
    failed = 0
    for name, bug, fix in CORRECTIONS:
        path = os.path.join(a.root, name + ".json")
        text = open(path, encoding="utf-8").read()
        j = json.loads(text)
        try:
            fix(j)
            new = render(normalize(j))
        except (KeyError, ValueError) as e:
            print(f"FAILED  {name} [{bug}]: {e!r}: review by hand")
            failed += 1
            continue
        if new == text:
            print(f"no-op   {name} [{bug}]: output already as expected (fixed, or already corrected)")
        else:
            print(f"{'would fix' if a.check else 'fixed'}   {name} [{bug}]")
            if not a.check:
                with open(path, "w", encoding="utf-8", newline="") as f:
                    f.write(new)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
