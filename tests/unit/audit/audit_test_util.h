#pragma once
// Helpers for the audit read-side tests: temp dirs, real stores written by the real sinks and
// trail, and the edits an attacker with write access to the store could make.
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "audit/block.h"
#include "audit/event.h"
#include "audit/reader.h"
#include "audit/record.h"
#include "audit/sink.h"
#include "audit/sqlite_schema.h"
#include "store/sqlite.h"

namespace gh::audit::testing {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char tmpl[] = "/tmp/gh-audit-read-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// A simple-protocol Statement event of session 7 (alice, groups dba and eng, target app), not
// analysed: only its text.
inline Event text_statement(std::uint64_t n, std::string text = "") {
  Event e;
  e.type = EventType::Statement;
  e.time = std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'000 + n));
  auto ctx = std::make_shared<SessionContext>();
  ctx->session = 7;
  ctx->identity.subject = "alice";
  ctx->identity.groups = {"dba", "eng"};
  ctx->target = "app";
  e.session = ctx;
  e.statement = n;
  e.protocol = 'Q';
  e.text = text.empty() ? "SELECT " + std::to_string(n) : text;
  return e;
}

inline Record record_from_body(const std::string& body, std::uint64_t seq, const std::string& prev) {
  Record r;
  r.seq = seq;
  r.prev = prev;
  r.body = body;
  r.hash = chain_hash(prev, body);
  auto idx = index_of(body);
  EXPECT_TRUE(idx.has_value());
  if (idx) r.index = std::move(*idx);
  return r;
}

inline void insert_row(store::SqliteDb& db, const Record& rec) {
  auto s = db.prepare(kSqliteInsert);
  ASSERT_TRUE(s.has_value()) << s.error().message;
  bind_row(*s, rec);
  auto r = s->step();
  ASSERT_TRUE(r.has_value()) << r.error().message;
}

// A store in the rows layout (one row per record with every search column) for tests that look
// at records with SQL: a store of blocks is copied, read as `gatehouse audit` reads it; a store of
// rows is returned as it is.
inline std::string as_rows(const std::string& path) {
  {
    auto probe = store::SqliteDb::open(path, store::SqliteDb::Mode::ReadOnly);
    if (!probe || probe->query_int("SELECT count(*) FROM sqlite_master WHERE name = 'audit_blocks'")->value_or(0) == 0) return path;
  }
  const std::string copy = path + ".rows.db";
  std::filesystem::remove(copy);
  auto db = store::SqliteDb::open(copy);
  EXPECT_TRUE(db.has_value());
  EXPECT_TRUE(db->exec(kSqliteSchema).has_value());
  auto reader = AuditReader::open(path);
  EXPECT_TRUE(reader.has_value()) << reader.error().message;
  auto r = (*reader)->scan("", 0, [&](const StoredRecord& s) {
    auto rec = record_of(s.hash, s.body);
    EXPECT_TRUE(rec.has_value());
    if (rec) insert_row(*db, *rec);
    return true;
  });
  EXPECT_TRUE(r.has_value());
  return copy;
}

inline void exec(const std::string& path, const std::string& sql) {
  auto db = store::SqliteDb::open(path);
  ASSERT_TRUE(db.has_value());
  auto r = db->exec(sql);
  ASSERT_TRUE(r.has_value()) << r.error().message;
}

inline std::string column(const std::string& path, const std::string& sql) {
  auto db = store::SqliteDb::open(path, store::SqliteDb::Mode::ReadOnly);
  auto st = db->prepare(sql);
  EXPECT_TRUE(st.has_value());
  auto row = st->step();
  EXPECT_TRUE(row.has_value() && *row);
  std::string out(st->column_text(0));
  st->reset();
  return out;
}

// What an attacker who knows the format does after an edit: recompute every hash from `from` on
// (bodies' "prev", the hash, the columns), so that the chain links again.
inline void rechain_sqlite(const std::string& path, std::uint64_t from, const std::function<void(nlohmann::json&)>& edit) {
  auto db = store::SqliteDb::open(path);
  ASSERT_TRUE(db.has_value());
  std::string prev = from == 1 ? std::string(kGenesisHash)
                               : column(path, "SELECT hash FROM audit_records WHERE seq = " + std::to_string(from - 1));
  std::vector<std::pair<std::uint64_t, std::string>> rows;
  {
    auto st = db->prepare("SELECT seq, body FROM audit_records WHERE seq >= ?1 ORDER BY seq");
    st->bind(1, std::int64_t(from));
    while (*st->step()) rows.emplace_back(std::uint64_t(st->column_int(0)), std::string(st->column_text(1)));
  }
  for (auto& [seq, body] : rows) {
    auto j = nlohmann::json::parse(body);
    if (seq == from) edit(j);
    j["prev"] = prev;
    auto rec = record_from_body(j.dump(), seq, prev);
    ASSERT_TRUE(db->exec("DELETE FROM audit_records WHERE seq = " + std::to_string(seq)).has_value());
    insert_row(*db, rec);
    prev = rec.hash;
  }
}

inline std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

inline void write_lines(const std::string& path, const std::vector<std::string>& lines) {
  std::ofstream out(path, std::ios::trunc);
  for (const auto& l : lines) out << l << "\n";
}

inline std::string jsonl_line(const Record& r) { return "{\"hash\":\"" + r.hash + "\",\"body\":" + r.body + "}"; }
inline std::string jsonl_body(const std::string& line) { return line.substr(82, line.size() - 83); }

// A SQLite store of blocks (audit_blocks): every record line, in the order of the blocks.
inline std::vector<std::string> read_block_lines(const std::string& path) {
  auto db = store::SqliteDb::open(path, store::SqliteDb::Mode::ReadOnly);
  std::vector<std::string> out;
  auto st = db->prepare("SELECT data FROM audit_blocks ORDER BY first_seq");
  EXPECT_TRUE(st.has_value());
  while (*st->step()) {
    auto text = block_text(st->column_blob(0));
    EXPECT_TRUE(text.has_value());
    const std::string data = text.value_or("");
    std::size_t at = 0;
    while (at < data.size()) {
      std::size_t end = data.find('\n', at);
      if (end == std::string::npos) end = data.size();
      std::string line = data.substr(at, end - at);
      at = end + 1;
      if (line == "[" || line == "]") continue;
      if (!line.empty() && line.back() == ',') line.pop_back();
      out.push_back(line);
    }
  }
  return out;
}

// What an attacker who knows the format writes back: the lines in blocks of `per_block`, each
// block's columns made to agree with its lines (so that only the chain can tell).
inline void write_block_lines(const std::string& path, const std::vector<std::string>& lines, std::size_t per_block = 8) {
  auto db = store::SqliteDb::open(path);
  ASSERT_TRUE(db.has_value());
  ASSERT_TRUE(db->exec("DELETE FROM audit_blocks").has_value());
  for (std::size_t i = 0; i < lines.size(); i += per_block) {
    std::string data = "[\n";
    std::int64_t lo = INT64_MAX, hi = INT64_MIN;
    std::int64_t first = 0, last = 0;
    std::string node, hash;
    const std::size_t n = std::min(per_block, lines.size() - i);
    for (std::size_t k = 0; k < n; ++k) {
      const auto& l = lines[i + k];
      data += l + (k + 1 < n ? ",\n" : "\n]");
      auto j = nlohmann::json::parse(l.substr(82, l.size() - 83), nullptr, false);
      const std::int64_t seq = j.is_object() ? j.value("seq", std::int64_t(0)) : 0;
      const std::int64_t t = j.is_object() ? j.value("time_us", std::int64_t(0)) : 0;
      if (k == 0) first = seq;
      last = seq;
      lo = std::min(lo, t);
      hi = std::max(hi, t);
      if (j.is_object()) node = j.value("node", std::string());
      hash = l.substr(9, 64);
    }
    auto st = db->prepare(kSqliteBlockInsert);
    ASSERT_TRUE(st.has_value());
    BlockCompressor z;
    auto packed = z.compress(data);
    ASSERT_TRUE(packed.has_value());
    st->bind(1, first).bind(2, last).bind(3, std::int64_t(n)).bind(4, node).bind(5, lo).bind(6, hi).bind(7, hash);
    st->bind_blob_static(8, *packed);
    auto r = st->step();
    ASSERT_TRUE(r.has_value()) << r.error().message;
  }
}

inline void rechain_lines(std::vector<std::string>& lines, std::size_t from_line, const std::function<void(nlohmann::json&)>& edit) {
  std::string prev = from_line == 1 ? std::string(kGenesisHash) : lines[from_line - 2].substr(9, 64);
  for (std::size_t i = from_line - 1; i < lines.size(); ++i) {
    auto j = nlohmann::json::parse(jsonl_body(lines[i]));
    if (i == from_line - 1) edit(j);
    j["prev"] = prev;
    auto rec = record_from_body(j.dump(), j["seq"].get<std::uint64_t>(), prev);
    lines[i] = jsonl_line(rec);
    prev = rec.hash;
  }
}

}  // namespace gh::audit::testing
