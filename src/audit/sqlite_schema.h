#pragma once
// The SQLite audit store's schemas, shared by the sink (writer) and the readers. Two layouts
// (docs/adr/0005-audit-journal.md, "records in blocks"):
// - blocks (the default for a new file): one row per block of consecutive records, the records
//   as JSON lines in a JSON array; readers derive the search columns from the bodies;
// - rows (files written before blocks, or `layout: rows`): one row per record; `body` is the
//   canonical JSON the chain hashes, the other columns are copies of its fields for search
//   (verify checks that they agree with the body).
#include "audit/record.h"
#include "store/sqlite.h"

namespace gh::audit {

// One row per block; `data` is the block's text compressed as one Zstandard frame (block.h):
// "[\n" + one record line ({"hash":"<64 hex>","body":<body>}, see lines.h) per record, separated
// by ",\n", + "\n]" (JSON lines that are also one JSON array). first_seq..last_seq are consecutive
// records of one node; min/max_time_us bound their times (records are sealed in order but carry
// the time their event began); last_hash is the hash of record last_seq (where a restart
// continues the chain). Verify checks all of them against the records. Read it with `gatehouse
// audit search|export` (sqlite3 alone cannot decompress it).
inline constexpr const char* kSqliteBlocksSchema = R"sql(
CREATE TABLE IF NOT EXISTS audit_blocks (
  first_seq INTEGER PRIMARY KEY,
  last_seq INTEGER NOT NULL,
  records INTEGER NOT NULL,
  node TEXT NOT NULL,
  min_time_us INTEGER NOT NULL,
  max_time_us INTEGER NOT NULL,
  last_hash TEXT NOT NULL,
  data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_blocks_time ON audit_blocks (max_time_us);
PRAGMA user_version = 3;
)sql";

inline constexpr const char* kSqliteBlockInsert =
    "INSERT INTO audit_blocks (first_seq, last_seq, records, node, min_time_us, max_time_us, last_hash, data) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

inline constexpr const char* kSqliteSchema = R"sql(
CREATE TABLE IF NOT EXISTS audit_records (
  seq INTEGER PRIMARY KEY,  -- the rowid: one node's chain per file (the sink checks the node)
  node TEXT NOT NULL,
  prev TEXT NOT NULL,
  hash TEXT NOT NULL,
  body TEXT NOT NULL,
  time TEXT NOT NULL,
  time_us INTEGER NOT NULL,
  type TEXT NOT NULL,
  session INTEGER NOT NULL,
  statement INTEGER NOT NULL,
  subject TEXT NOT NULL,
  email TEXT NOT NULL,
  groups TEXT NOT NULL,
  kind TEXT NOT NULL,
  client TEXT NOT NULL,
  target TEXT NOT NULL,
  environment TEXT NOT NULL,
  database TEXT NOT NULL,
  kinds TEXT NOT NULL,
  relations TEXT NOT NULL,
  tags TEXT NOT NULL,
  decision TEXT NOT NULL,
  rule TEXT NOT NULL,
  outcome TEXT NOT NULL,
  sqlstate TEXT NOT NULL,
  rows INTEGER NOT NULL,
  duration_us INTEGER NOT NULL,
  text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_records_time ON audit_records (time_us);
-- No index on subject: searches match it case-insensitively with GLOB, which no index serves;
-- they run over the time index instead, and every index costs each insert.
-- Finds the result record of a statement written in two records (statement, then result; see
-- Trail::intend): only those carry type 'result', so a partial index costs the one-record
-- statements nothing. An index on (session, statement) over every row doubled the insert cost
-- (random inserts across sessions: 7.4 -> 4.5 us per record without it, measured). Version 1
-- stores had that index; it is dropped here.
DROP INDEX IF EXISTS audit_records_session;
CREATE INDEX IF NOT EXISTS audit_records_result ON audit_records (session, statement) WHERE type = 'result';
-- Starts of the proxy: a result belongs to the statement of its own run (session ids restart).
CREATE INDEX IF NOT EXISTS audit_records_start ON audit_records (seq) WHERE type = 'start';
PRAGMA user_version = 2;
)sql";

// Binds `rec` to kSqliteInsert's parameters, without copies: `rec` must outlive the step.
void bind_row(store::SqliteStatement& s, const Record& rec);

inline constexpr const char* kSqliteInsert =
    "INSERT INTO audit_records (node, seq, prev, hash, body, time, time_us, type, session, statement, subject, email, "
    "groups, kind, client, target, environment, database, kinds, relations, tags, decision, rule, outcome, sqlstate, "
    "rows, duration_us, text) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, "
    "?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28)";

}  // namespace gh::audit
