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

# The bugs, referred to by each correction. Keep in step with README.md.
BUGS = {
    "B1": "ORDER BY names an output column (select-list alias); the analyzer takes it for a table column",
    "B2": "unqualified column in a subquery is given only to the subquery's one relation; it may be an "
          "outer query's column (PostgreSQL binds it outward when the inner relation lacks it), so it "
          "must also be listed in unresolved_columns",
    "B3": "whole_row set for a bare reference to a function-in-FROM alias (the function's output column)",
    "B4": "DROP POLICY/TRIGGER/RULE ... ON t: the table t is not listed (expected access ddl)",
    "B5": "CREATE TABLE ... (LIKE src): src marked ddl; it is only read (PostgreSQL checks SELECT on it)",
    "B6": "SET TRANSACTION / SET SESSION CHARACTERISTICS: settings holds the grammar's pseudo-name "
          "('transaction', 'session characteristics') instead of the parameter it changes",
    "B7": "EXECUTE of a statement PREPAREd earlier in the same text is marked opaque; its target is visible",
    "B8": "CREATE MATERIALIZED VIEW ... WITH NO DATA: the view gets insert access though no row is written",
}


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

def c_orm_016(j):
    drop_unresolved(j["statements"][0], "spent")


def c_orm_089(j):
    drop_column(j["statements"][0], "shop_order", "total_spent")


def c_psql_010(j):
    drop_column(j["statements"][0], "pg_statistic_ext", "nsp", "pg_catalog")


def c_psql_019(j):
    drop_unresolved(j["statements"][0], "sametable")


def c_psql_059(j):
    drop_unresolved(j["statements"][0], "Name", "Schema", "Type")


def c_adversarial_034(j):
    add_unresolved(j["statements"][0], "ssn")


def c_adversarial_035(j):
    add_unresolved(j["statements"][0], "customer_id", "status")


def c_psql_009(j):
    add_unresolved(j["statements"][0], "oid", "rolname")


def c_psql_037_038(j):
    add_unresolved(j["statements"][0], "attacl", "attisdropped", "attname", "attrelid", "oid", "polcmd",
                   "polname", "polpermissive", "polqual", "polrelid", "polroles", "polwithcheck", "rolname")


def c_psql_068(j):
    add_unresolved(j["statements"][0], "condeferrable", "condeferred", "conindid", "conrelid", "contype")


def c_dangerous_027(j):
    add_unresolved(j["statements"][0], "customer_id")


def c_psql_011_015(j):
    j["statements"][0].pop("whole_row", None)


def c_admin_042(j):
    add_relation(j["statements"][0], "orders", ["ddl"])


def c_pg_dump_051_053(j):
    add_relation(j["statements"][0], "orders", ["ddl"], "public")


def c_pg_dump_082(j):
    for s in j["statements"]:
        if s["text"].startswith(("DROP POLICY", "DROP TRIGGER")):
            add_relation(s, "orders", ["ddl"], "public")


def c_dangerous_095_098(j):
    add_relation(j["statements"][0], "customers", ["ddl"])


def c_migrations_039(j):
    rel(j["statements"][0], "orders")["access"] = ["read"]


def c_dangerous_076(j):
    j["statements"][0]["settings"] = ["transaction_read_only"]


def c_dangerous_097(j):
    j["statements"][0]["settings"] = ["default_transaction_read_only"]


def c_admin_062(j):
    j["statements"][0]["settings"] = ["transaction_isolation"]


def c_dangerous_033(j):
    s = j["statements"][1]
    s["kinds"] = ["execute", "select"]
    s.pop("opaque_code", None)
    add_relation(s, "customers", ["read"])
    rel(s, "customers")["columns_read"] = ["ssn"]


def c_pg_dump_027(j):
    rel(j["statements"][0], "order_totals", "public")["access"] = ["ddl"]


CORRECTIONS = [
    ("orm/016-django-aggregate-annotate", "B1", c_orm_016),
    ("orm/089-django-annotate-order-by-alias", "B1", c_orm_089),
    ("psql/010-d-orders-q9", "B1", c_psql_010),
    ("psql/019-d-billing-invoices-q6", "B1", c_psql_019),
    ("psql/059-dp-partitioned-q1", "B1", c_psql_059),
    ("adversarial/034-correlated-subquery-outer-column", "B2", c_adversarial_034),
    ("adversarial/035-correlated-exists-unqualified", "B2", c_adversarial_035),
    ("psql/009-d-orders-q8", "B2", c_psql_009),
    ("psql/037-dp-privileges-q1", "B2", c_psql_037_038),
    ("psql/038-dp-orders-q1", "B2", c_psql_037_038),
    ("psql/068-d-orders-pending-idx-q4", "B2", c_psql_068),
    ("dangerous/027-cte-nested-in-subquery", "B2", c_dangerous_027),
    ("psql/011-d-orders-q10", "B3", c_psql_011_015),
    ("psql/015-d-plus-customers-q2", "B3", c_psql_011_015),
    ("admin/042-drop-policy", "B4", c_admin_042),
    ("pg_dump/051-clean-drop-policy-public-orders", "B4", c_pg_dump_051_053),
    ("pg_dump/053-clean-drop-trigger-public-orders", "B4", c_pg_dump_051_053),
    ("pg_dump/082-clean-all-drops", "B4", c_pg_dump_082),
    ("dangerous/095-drop-trigger-audit", "B4", c_dangerous_095_098),
    ("dangerous/098-drop-rule", "B4", c_dangerous_095_098),
    ("migrations/039-create-table-like", "B5", c_migrations_039),
    ("dangerous/076-set-transaction-read-write", "B6", c_dangerous_076),
    ("dangerous/097-set-session-characteristics-read-write", "B6", c_dangerous_097),
    ("admin/062-set-transaction-isolation", "B6", c_admin_062),
    ("dangerous/033-prepare-execute-same-text", "B7", c_dangerous_033),
    ("pg_dump/027-materialized-view-order-totals", "B8", c_pg_dump_027),
]


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
