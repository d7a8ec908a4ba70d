// `audit verify` against real stores written by the real Trail and sinks, then changed the way an
// attacker with write access to the file would.
#include <gtest/gtest.h>

#include "audit/reader.h"
#include "audit/trail.h"
#include "audit/verify.h"
#include "sql/analyzer.h"
#include "audit_test_util.h"

namespace gh::audit {
namespace {

using namespace gh::audit::testing;
using nlohmann::json;

// An analysed, allowed statement (the record then has kinds, relations and a decision).
Event statement(std::uint64_t n) {
  Event e = text_statement(n);
  e.text.clear();
  auto ctx = std::make_shared<SessionContext>(*e.session);
  ctx->identity.email = "alice@example.com";
  e.session = ctx;
  e.analysis = std::make_shared<sql::Analysis>(sql::analyze_uncached("SELECT * FROM orders WHERE id = " + std::to_string(n)));
  policy::Decision d;
  d.action = policy::Action::Allow;
  d.rule = "default";
  e.decision = std::make_shared<const policy::Decision>(d);
  return e;
}

enum class Kind { Sqlite, Jsonl, Blocks };  // Sqlite: the rows layout

// Two runs of the proxy: Start, 10 statements, Stop, Checkpoint (covers the Stop) each: 26
// records, checkpoints at 13 and 26.
struct Store {
  TempDir dir;
  Kind kind;
  std::string path, key;
  std::optional<CheckpointSigner> signer;

  explicit Store(Kind k, CheckpointSigner::Algorithm alg = CheckpointSigner::Algorithm::HmacSha256) : kind(k) {
    path = dir.file(k == Kind::Jsonl ? "audit.jsonl" : "audit.db");
    key = dir.file("checkpoint.key");
    EXPECT_TRUE(CheckpointSigner::generate(alg, key).has_value());
    for (int run = 0; run < 2; ++run) {
      std::vector<std::unique_ptr<AuditSink>> sinks;
      sinks.push_back(k == Kind::Jsonl     ? *open_jsonl_sink(path, false)
                      : k == Kind::Sqlite ? *open_sqlite_sink(path, false, SqliteLayout::Rows)
                                          : *open_sqlite_sink(path, false, SqliteLayout::Blocks));
      Trail::Options o;
      o.node = "n1";
      o.spool_dir = dir.file("spool");
      o.signer = *CheckpointSigner::load(alg, key);
      o.checkpoint_at_start = false;  // the layout above (TrailCheckpoints.SignedRightAfterStart tests it)
      auto t = Trail::open(std::move(o), std::move(sinks));
      EXPECT_TRUE(t.has_value());
      for (int i = 1; i <= 10; ++i) (*t)->submit(statement(run * 10 + i));
      (*t)->close();
    }
    signer = *CheckpointSigner::load(alg, key);
  }

  VerifyReport verify(VerifyOptions o = {}) {
    if (!o.signer) o.signer = &*signer;
    auto reader = AuditReader::open(path);
    EXPECT_TRUE(reader.has_value()) << reader.error().message;
    auto rep = verify_chain(**reader, "n1", o);
    EXPECT_TRUE(rep.has_value()) << rep.error().message;
    return *rep;
  }
  std::string hash_of(std::uint64_t seq) {
    if (kind == Kind::Sqlite) return column(path, "SELECT hash FROM audit_records WHERE seq = " + std::to_string(seq));
    return lines()[seq - 1].substr(9, 64);
  }
  // JSON lines and blocks: the record lines, and writing them back (blocks: with their columns
  // made to agree, as an attacker who knows the format would).
  std::vector<std::string> lines() const { return kind == Kind::Blocks ? read_block_lines(path) : read_lines(path); }
  void write(const std::vector<std::string>& l) const {
    if (kind == Kind::Blocks)
      write_block_lines(path, l);
    else
      write_lines(path, l);
  }
  void rechain(std::size_t from, const std::function<void(json&)>& edit) const {
    auto l = lines();
    rechain_lines(l, from, edit);
    write(l);
  }
};

void expect_problem(const VerifyReport& r, Problem kind, std::uint64_t seq) {
  ASSERT_TRUE(r.problem.has_value()) << "no problem found";
  EXPECT_EQ(problem_name(r.problem->kind), problem_name(kind)) << r.problem->message;
  EXPECT_EQ(r.problem->seq, seq) << r.problem->message;
}

class VerifyBoth : public ::testing::TestWithParam<Kind> {};

TEST_P(VerifyBoth, IntactTrailPasses) {
  Store s(GetParam());
  auto r = s.verify();
  EXPECT_FALSE(r.problem) << r.problem->message;
  EXPECT_EQ(r.records, 26u);
  EXPECT_EQ(r.first_seq, 1u);
  EXPECT_EQ(r.last_seq, 26u);
  EXPECT_EQ(r.checkpoints, 2u);
  EXPECT_EQ(r.signatures_checked, 2u);
  EXPECT_TRUE(r.clean_end);
  EXPECT_EQ(r.last_hash, s.hash_of(26));
  VerifyOptions o;
  o.expect_stopped = true;
  o.expect_head = VerifyOptions::Head{26, s.hash_of(26)};
  EXPECT_FALSE(s.verify(o).problem);
}

TEST_P(VerifyBoth, EditedBody) {
  Store s(GetParam());
  if (GetParam() == Kind::Sqlite) {
    exec(s.path, "UPDATE audit_records SET body = replace(body, 'id = 5', 'id = 6') WHERE seq = 6");
  } else {
    auto lines = s.lines();
    lines[5].replace(lines[5].find("id = 5"), 6, "id = 6");
    s.write(lines);
  }
  expect_problem(s.verify(), Problem::EditedBody, 6);
}

TEST_P(VerifyBoth, EditedBodyWithItsOwnHashRecomputed) {
  Store s(GetParam());
  if (GetParam() == Kind::Sqlite) {
    auto body = column(s.path, "SELECT body FROM audit_records WHERE seq = 6");
    body.replace(body.find("id = 5"), 6, "id = 6");
    auto rec = record_from_body(body, 6, s.hash_of(5));
    auto db = store::SqliteDb::open(s.path);
    ASSERT_TRUE(db->exec("DELETE FROM audit_records WHERE seq = 6").has_value());
    insert_row(*db, rec);
  } else {
    auto lines = s.lines();
    auto body = jsonl_body(lines[5]);
    body.replace(body.find("id = 5"), 6, "id = 6");
    lines[5] = jsonl_line(record_from_body(body, 6, s.hash_of(5)));
    s.write(lines);
  }
  expect_problem(s.verify(), Problem::EditedBody, 6);
}

TEST_P(VerifyBoth, DeletedRecord) {
  Store s(GetParam());
  if (GetParam() == Kind::Sqlite) {
    exec(s.path, "DELETE FROM audit_records WHERE seq = 7");
  } else {
    auto lines = s.lines();
    lines.erase(lines.begin() + 6);
    s.write(lines);
  }
  expect_problem(s.verify(), Problem::Deleted, 7);
}

TEST_P(VerifyBoth, DeletedFirstRecordsWithoutRetention) {
  Store s(GetParam());
  if (GetParam() == Kind::Sqlite) {
    exec(s.path, "DELETE FROM audit_records WHERE seq <= 3");
  } else {
    auto lines = s.lines();
    lines.erase(lines.begin(), lines.begin() + 3);
    s.write(lines);
  }
  expect_problem(s.verify(), Problem::Deleted, 3);
}

TEST_P(VerifyBoth, InsertedRecord) {
  Store s(GetParam());
  // A forged record 5 that links to record 4 and hashes correctly, put in before the real one.
  std::string body = GetParam() == Kind::Sqlite ? column(s.path, "SELECT body FROM audit_records WHERE seq = 5")
                                                : jsonl_body(s.lines()[4]);
  body.replace(body.find("id = 4"), 6, "id = 9");
  auto forged = record_from_body(body, 5, s.hash_of(4));
  if (GetParam() == Kind::Sqlite) {
    exec(s.path, "UPDATE audit_records SET seq = seq + 1000 WHERE seq >= 5");
    exec(s.path, "UPDATE audit_records SET seq = seq - 999 WHERE seq >= 1000");
    auto db = store::SqliteDb::open(s.path);
    insert_row(*db, forged);
  } else {
    auto lines = s.lines();
    lines.insert(lines.begin() + 4, jsonl_line(forged));
    s.write(lines);
  }
  expect_problem(s.verify(), Problem::Inserted, 5);
}

TEST_P(VerifyBoth, ReorderedRecords) {
  Store s(GetParam());
  if (GetParam() == Kind::Sqlite) {
    exec(s.path, "UPDATE audit_records SET seq = 1000 WHERE seq = 5");
    exec(s.path, "UPDATE audit_records SET seq = 5 WHERE seq = 6");
    exec(s.path, "UPDATE audit_records SET seq = 6 WHERE seq = 1000");
  } else {
    auto lines = s.lines();
    std::swap(lines[4], lines[5]);
    s.write(lines);
  }
  expect_problem(s.verify(), Problem::Reordered, 5);
}

TEST_P(VerifyBoth, TruncatedTailNeedsAnAnchor) {
  Store s(GetParam());
  const std::string head26 = s.hash_of(26);
  if (GetParam() == Kind::Sqlite) {
    exec(s.path, "DELETE FROM audit_records WHERE seq >= 20");
  } else {
    auto lines = s.lines();
    lines.resize(19);
    s.write(lines);
  }
  // Alone, a cut tail looks like a proxy that is still running (or crashed): only a note.
  auto plain = s.verify();
  EXPECT_FALSE(plain.problem);
  EXPECT_FALSE(plain.clean_end);
  EXPECT_EQ(plain.uncovered, 6u);
  EXPECT_FALSE(plain.notes.empty());
  VerifyOptions anchored;
  anchored.expect_head = VerifyOptions::Head{26, head26};
  expect_problem(s.verify(anchored), Problem::Truncated, 20);
  VerifyOptions stopped;
  stopped.expect_stopped = true;
  expect_problem(s.verify(stopped), Problem::Truncated, 20);
}

TEST_P(VerifyBoth, TruncatedAtACleanShutdownOnlyTheAnchorSees) {
  Store s(GetParam());
  const std::string head26 = s.hash_of(26);
  if (GetParam() == Kind::Sqlite) {
    exec(s.path, "DELETE FROM audit_records WHERE seq > 13");
  } else {
    auto lines = s.lines();
    lines.resize(13);
    s.write(lines);
  }
  VerifyOptions stopped;
  stopped.expect_stopped = true;
  EXPECT_FALSE(s.verify(stopped).problem);  // Stop + Checkpoint at 12, 13: indistinguishable from a real end
  VerifyOptions anchored;
  anchored.expect_head = VerifyOptions::Head{26, head26};
  expect_problem(s.verify(anchored), Problem::Truncated, 14);
}

TEST_P(VerifyBoth, ForgedCheckpointSignature) {
  Store s(GetParam());
  auto forge = [](json& j) { j["fields"]["signature"] = std::string(64, 'a'); };
  if (GetParam() == Kind::Sqlite)
    rechain_sqlite(s.path, 13, forge);
  else
    s.rechain(13, forge);
  expect_problem(s.verify(), Problem::BadSignature, 13);
}

TEST_P(VerifyBoth, RecomputedChainAfterAnEditIsCaughtByTheCheckpoint) {
  Store s(GetParam());
  auto edit = [](json& j) { j["sql"]["text"] = "SELECT * FROM orders WHERE id = 999"; };
  if (GetParam() == Kind::Sqlite)
    rechain_sqlite(s.path, 6, edit);
  else
    s.rechain(6, edit);
  expect_problem(s.verify(), Problem::CheckpointMismatch, 13);
  // ... and when the attacker also rewrites what the checkpoint covers, its signature fails.
  auto cover = [&](json& j) { j["fields"]["covers_hash"] = s.hash_of(12); };
  if (GetParam() == Kind::Sqlite)
    rechain_sqlite(s.path, 13, cover);
  else
    s.rechain(13, cover);
  expect_problem(s.verify(), Problem::BadSignature, 13);
}

TEST_P(VerifyBoth, AnchorWithAnotherHash) {
  Store s(GetParam());
  VerifyOptions o;
  o.expect_head = VerifyOptions::Head{20, s.hash_of(21)};
  expect_problem(s.verify(o), Problem::AnchorMismatch, 20);
}

TEST_P(VerifyBoth, WrongKeyFails) {
  Store s(GetParam());
  TempDir d;
  ASSERT_TRUE(CheckpointSigner::generate(CheckpointSigner::Algorithm::HmacSha256, d.file("other.key")));
  auto other = CheckpointSigner::load(CheckpointSigner::Algorithm::HmacSha256, d.file("other.key"));
  VerifyOptions o;
  o.signer = &*other;
  expect_problem(s.verify(o), Problem::BadSignature, 13);
}

INSTANTIATE_TEST_SUITE_P(Stores, VerifyBoth, ::testing::Values(Kind::Sqlite, Kind::Jsonl, Kind::Blocks),
                         [](const auto& info) {
                           return info.param == Kind::Sqlite ? "SqliteRows" : info.param == Kind::Jsonl ? "JsonLines" : "SqliteBlocks";
                         });

// The columns of a block say which records it holds and when: searches skip blocks by them, so an
// edit of them alone is found.
TEST(VerifyBlocks, EditedBlockColumns) {
  for (const std::string& edit : std::vector<std::string>{std::string("UPDATE audit_blocks SET min_time_us = min_time_us + 1000000000 WHERE first_seq = 1"),
                           "UPDATE audit_blocks SET max_time_us = 0 WHERE last_seq = 26",
                           "UPDATE audit_blocks SET records = records + 1 WHERE first_seq = 1",
                           "UPDATE audit_blocks SET last_hash = '" + std::string(64, '0') + "' WHERE last_seq = 26"}) {
    Store s(Kind::Blocks);
    auto before = s.verify();
    ASSERT_FALSE(before.problem) << before.problem->message;
    exec(s.path, edit);
    auto r = s.verify();
    ASSERT_TRUE(r.problem) << edit;
    EXPECT_EQ(problem_name(r.problem->kind), problem_name(Problem::EditedColumn)) << edit << ": " << r.problem->message;
  }
  // Another node's name on the first block takes its records out of this node's chain.
  Store s(Kind::Blocks);
  exec(s.path, "UPDATE audit_blocks SET node = 'n2' WHERE first_seq = 1");
  expect_problem(s.verify(), Problem::Deleted, 1);
}

// Records are written in blocks, one per batch of the store thread, compressed: a trail of 26
// records in two runs makes few rows, much smaller than the records' text.
TEST(VerifyBlocks, BlocksAreCompressed) {
  Store s(Kind::Blocks);
  EXPECT_LT(std::stoi(column(s.path, "SELECT count(*) FROM audit_blocks")), 26);
  std::size_t text = 0;
  for (const auto& l : s.lines()) text += l.size();
  EXPECT_EQ(s.lines().size(), 26u);
  EXPECT_LT(std::stoul(column(s.path, "SELECT sum(length(data)) FROM audit_blocks")), text / 3);
  const auto rows = as_rows(s.path);
  EXPECT_EQ(column(rows, "SELECT type FROM audit_records WHERE seq = 1"), "start");
  EXPECT_EQ(column(rows, "SELECT hash FROM audit_records WHERE seq = 26"), s.hash_of(26));
  EXPECT_EQ(column(rows, "SELECT text FROM audit_records WHERE seq = 6"), "SELECT * FROM orders WHERE id = 5");
}

// Data that is not a block (edited bytes of the compressed frame) is an edited body.
TEST(VerifyBlocks, UnreadableBlockData) {
  Store s(Kind::Blocks);
  exec(s.path, "UPDATE audit_blocks SET data = substr(data, 1, length(data) - 5) WHERE first_seq = 1");
  auto r = s.verify();
  ASSERT_TRUE(r.problem);
  EXPECT_EQ(problem_name(r.problem->kind), problem_name(Problem::EditedBody)) << r.problem->message;
  EXPECT_NE(r.problem->message.find("cannot be read"), std::string::npos) << r.problem->message;
}

TEST(VerifySqlite, EditedSearchColumn) {
  Store s(Kind::Sqlite);
  exec(s.path, "UPDATE audit_records SET subject = 'mallory' WHERE seq = 8");
  auto r = s.verify();
  expect_problem(r, Problem::EditedColumn, 8);
  EXPECT_NE(r.problem->message.find("subject"), std::string::npos) << r.problem->message;
}

TEST(VerifySqlite, EditedSeqColumnAlone) {
  Store s(Kind::Sqlite);
  exec(s.path, "UPDATE audit_records SET seq = 100 WHERE seq = 26");
  expect_problem(s.verify(), Problem::EditedColumn, 26);
}

TEST(VerifySqlite, Ed25519Checkpoints) {
  Store s(Kind::Sqlite, CheckpointSigner::Algorithm::Ed25519);
  auto r = s.verify();
  EXPECT_FALSE(r.problem) << r.problem->message;
  EXPECT_EQ(r.signatures_checked, 2u);
  rechain_sqlite(s.path, 26, [](json& j) { j["fields"]["signature"] = std::string(128, '0'); });
  expect_problem(s.verify(), Problem::BadSignature, 26);
}

TEST(VerifySqlite, WithoutAKeySaysWhatItCannotProve) {
  Store s(Kind::Sqlite);
  auto reader = AuditReader::open(s.path);
  auto r = verify_chain(**reader, "n1", VerifyOptions{});
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->problem);
  EXPECT_EQ(r->signatures_checked, 0u);
  ASSERT_FALSE(r->notes.empty());
  EXPECT_NE(r->notes[0].find("not checked"), std::string::npos);
}

// A key given, no checkpoint stored: nothing proves the chain (its checkpoints were deleted and the
// chain recomputed, or it was written without a key) — found by adversarial testing.
TEST(VerifySqlite, AKeyWithoutAnyCheckpointIsUnsigned) {
  TempDir d;
  const std::string path = d.file("audit.db");
  ChainHead head;
  std::vector<Record> records;
  for (int i = 1; i <= 5; ++i) records.push_back(seal(statement(i), head, SealOptions{"n1"}));
  {
    auto sink = open_sqlite_sink(path, false);
    ASSERT_TRUE((*sink)->write(records).has_value());
  }
  const std::string key = d.file("k");
  ASSERT_TRUE(CheckpointSigner::generate(CheckpointSigner::Algorithm::Ed25519, key).has_value());
  auto signer = *CheckpointSigner::load(CheckpointSigner::Algorithm::Ed25519, key);
  auto reader = AuditReader::open(path);
  VerifyOptions o;
  o.signer = &signer;
  auto r = verify_chain(**reader, "n1", o);
  ASSERT_TRUE(r.has_value());
  expect_problem(*r, Problem::Unsigned, 1);
  EXPECT_FALSE(verify_chain(**reader, "n1", VerifyOptions{})->problem);  // without a key: consistent
}

// A proxy with a key signs a checkpoint right after each Start record.
TEST(TrailCheckpoints, SignedRightAfterStart) {
  TempDir d;
  const std::string path = d.file("audit.db"), key = d.file("k");
  ASSERT_TRUE(CheckpointSigner::generate(CheckpointSigner::Algorithm::HmacSha256, key).has_value());
  {
    std::vector<std::unique_ptr<AuditSink>> sinks;
    sinks.push_back(*open_sqlite_sink(path, false));
    Trail::Options o;
    o.node = "n1";
    o.spool_dir = d.file("spool");
    o.signer = *CheckpointSigner::load(CheckpointSigner::Algorithm::HmacSha256, key);
    auto t = Trail::open(std::move(o), std::move(sinks));
    ASSERT_TRUE(t.has_value());
    (*t)->submit(statement(1));
    (*t)->flush();
  }
  const auto rows = as_rows(path);
  EXPECT_EQ(column(rows, "SELECT type FROM audit_records WHERE seq = 1"), "start");
  EXPECT_EQ(column(rows, "SELECT type FROM audit_records WHERE seq = 2"), "checkpoint");
  EXPECT_EQ(json::parse(column(rows, "SELECT body FROM audit_records WHERE seq = 2"))["fields"]["covers_seq"], "1");
}

// Retention: the oldest records may go, when a Retention record names the new first record's
// predecessor.
TEST(VerifySqlite, PrunedStartIsAcceptedWithARetentionRecord) {
  TempDir d;
  const std::string path = d.file("audit.db");
  ChainHead head;
  std::vector<Record> records;
  for (int i = 1; i <= 10; ++i) records.push_back(seal(statement(i), head, SealOptions{"n1"}));
  Event ret;
  ret.type = EventType::Retention;
  ret.time = std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'100));
  ret.fields = {{"sink", "sqlite:" + path}, {"pruned_through", "3"}, {"anchor", records[2].hash}};
  records.push_back(seal(ret, head, SealOptions{"n1"}));
  {
    auto sink = open_sqlite_sink(path, false, SqliteLayout::Rows);
    ASSERT_TRUE((*sink)->write(records).has_value());
  }
  exec(path, "DELETE FROM audit_records WHERE seq <= 3");
  auto reader = AuditReader::open(path);
  auto r = verify_chain(**reader, "n1", VerifyOptions{});
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->problem) << r->problem->message;
  EXPECT_EQ(r->first_seq, 4u);
  // Deleting one more than the retention record says is caught.
  exec(path, "DELETE FROM audit_records WHERE seq = 4");
  auto again = verify_chain(**AuditReader::open(path), "n1", VerifyOptions{});
  expect_problem(*again, Problem::Deleted, 4);
}

TEST(VerifyHead, ParsesSeqAndHash) {
  auto h = parse_head("120:" + std::string(64, 'A'));
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->seq, 120u);
  EXPECT_EQ(h->hash, std::string(64, 'a'));
  EXPECT_FALSE(parse_head("120"));
  EXPECT_FALSE(parse_head("x:" + std::string(64, 'a')));
  EXPECT_FALSE(parse_head("1:abc"));
}

}  // namespace
}  // namespace gh::audit
