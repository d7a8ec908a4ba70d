"""The SQLite audit store as tests read and attack it, in both layouts (src/audit/sqlite_schema.h):
`blocks` (the default: one row per block of records, a Zstandard frame of JSON lines) and `rows`
(one row per record with search columns). Tests that look at records with SQL get the same
`audit_records` columns from either: a store of blocks is decoded into an in-memory table."""
from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import zstandard

COLUMNS = ("seq", "node", "prev", "hash", "body", "time", "time_us", "type", "session", "statement", "subject", "email",
           "groups", "kind", "client", "target", "environment", "database", "kinds", "relations", "tags", "decision",
           "rule", "outcome", "sqlstate", "rows", "duration_us", "text")


def _ro(store: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10)


def is_blocks(store: Path) -> bool:
    c = _ro(store)
    try:
        return c.execute("SELECT count(*) FROM sqlite_master WHERE name = 'audit_blocks'").fetchone()[0] > 0
    finally:
        c.close()


def block_text(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    return zstandard.ZstdDecompressor().decompress(data).decode()


def split_block(text: str) -> list[str]:
    out = []
    for line in text.split("\n"):
        if line in ("[", "]", ""):
            continue
        out.append(line[:-1] if line.endswith(",") else line)
    return out


def block_lines(store: Path) -> list[str]:
    """Every record line ({"hash":...,"body":...}) of a store of blocks, in the blocks' order."""
    c = _ro(store)
    try:
        out = []
        for (data,) in c.execute("SELECT data FROM audit_blocks ORDER BY first_seq"):
            out += split_block(block_text(data))
        return out
    finally:
        c.close()


def line_parts(line: str) -> tuple[str, str]:
    """(hash, body bytes as text) of a record line."""
    return line[9:73], line[82:-1]


def make_line(h: str, body: str) -> str:
    return '{"hash":"' + h + '","body":' + body + "}"


def write_block_lines(store: Path, lines: list[str], per_block: int = 8) -> None:
    """What an attacker who knows the format writes back: the lines in blocks, each block's columns
    made to agree with its lines, so that only the chain can tell."""
    c = sqlite3.connect(store, timeout=10)
    with c:
        c.execute("DELETE FROM audit_blocks")
        for i in range(0, len(lines), per_block):
            chunk = lines[i:i + per_block]
            bodies = [json.loads(line_parts(x)[1]) for x in chunk]
            text = "[\n" + ",\n".join(chunk) + "\n]"
            c.execute("INSERT INTO audit_blocks (first_seq, last_seq, records, node, min_time_us, max_time_us, last_hash, "
                      "data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (bodies[0]["seq"], bodies[-1]["seq"], len(chunk), bodies[-1]["node"],
                       min(b["time_us"] for b in bodies), max(b["time_us"] for b in bodies), line_parts(chunk[-1])[0],
                       zstandard.ZstdCompressor(level=1).compress(text.encode())))
    c.close()


def canonical(body: dict) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def rechain(lines: list[str], start: int = 0) -> list[str]:
    """Every record from index `start` on renumbered after the one before it and re-hashed (what
    someone with write access and no key can do after an edit)."""
    out = list(lines[:start])
    if start:
        prev_hash, seq = line_parts(out[-1])[0], json.loads(line_parts(out[-1])[1])["seq"] + 1
    else:
        b0 = json.loads(line_parts(lines[0])[1])
        prev_hash, seq = b0["prev"], b0["seq"]
    for x in lines[start:]:
        body = json.loads(line_parts(x)[1])
        body["seq"], body["prev"] = seq, prev_hash
        text = canonical(body)
        h = hashlib.sha256(bytes.fromhex(prev_hash) + text.encode()).hexdigest()
        out.append(make_line(h, text))
        prev_hash, seq = h, seq + 1
    return out


def _row(line: str) -> dict:
    h, text = line_parts(line)
    b = json.loads(text)
    ident = b.get("identity") or {}
    sql = b.get("sql") or {}
    dec = sql.get("decision") or {}
    stmts = sql.get("statements") or []
    kinds = sorted({k for s in stmts for k in s.get("kinds", [])})
    rels = sorted({r for s in stmts for r in s.get("relations", [])})
    lst = lambda v: ("," + ",".join(v) + ",") if v else ""  # noqa: E731
    return {"seq": b.get("seq"), "node": b.get("node", ""), "prev": b.get("prev", ""), "hash": h, "body": text,
            "time": b.get("time", ""), "time_us": b.get("time_us", 0), "type": b.get("type", ""),
            "session": b.get("session", 0), "statement": b.get("statement", 0), "subject": ident.get("subject", ""),
            "email": ident.get("email", ""), "groups": lst(ident.get("groups", [])), "kind": ident.get("kind", ""),
            "client": b.get("client", ""), "target": b.get("target", ""), "environment": b.get("environment", ""),
            "database": b.get("database", ""), "kinds": lst(kinds), "relations": lst(rels), "tags": lst(sql.get("tags", [])),
            "decision": dec.get("action", ""), "rule": dec.get("rule", ""), "outcome": b.get("outcome", ""),
            "sqlstate": b.get("sqlstate", ""), "rows": b.get("rows", -1), "duration_us": b.get("duration_us", -1),
            "text": sql.get("text", b.get("message", "")) if sql else b.get("message", "")}


def connect_rows(store: Path) -> sqlite3.Connection:
    """A read-only connection on which `audit_records` has the rows layout's columns."""
    if not is_blocks(store):
        return _ro(store)
    c = sqlite3.connect(":memory:")
    c.execute(f"CREATE TABLE audit_records ({', '.join(COLUMNS)})")
    c.executemany(f"INSERT INTO audit_records VALUES ({', '.join('?' * len(COLUMNS))})",
                  [tuple(_row(x)[k] for k in COLUMNS) for x in block_lines(store)])
    return c


def db_rows(store: Path, sql: str, params: tuple = ()) -> list[dict]:
    """SQL over the store's records (read-only, beside a live or killed proxy), either layout."""
    c = connect_rows(store)
    try:
        c.row_factory = sqlite3.Row
        return [dict(r) for r in c.execute(sql, params).fetchall()]
    finally:
        c.close()
