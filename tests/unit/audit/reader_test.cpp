// Search over a SQLite store and the same records in a JSON-lines file: both must answer alike.
#include <algorithm>

#include <gtest/gtest.h>

#include "audit/reader.h"
#include "audit/signer.h"
#include "audit_test_util.h"

namespace gh::audit {
namespace {

using namespace gh::audit::testing;
using nlohmann::json;

struct Spec {
  std::int64_t t = 0;  // seconds after 2026-01-01T00:00:00Z
  std::string type = "statement";
  std::string subject = "alice", email = "Alice@Example.com", user;
  std::vector<std::string> groups = {"eng"};
  std::string target = "prod";
  std::int64_t session = 1, statement = 0;
  std::vector<std::string> kinds = {"select"}, relations = {"public.orders"}, tags;
  std::string decision = "allow", rule = "default", text = "SELECT 1", outcome;
  std::int64_t rows = -1;
  json fields;
};

constexpr std::int64_t kBase = 1767225600;  // 2026-01-01T00:00:00Z

std::vector<Record> make(const std::vector<Spec>& specs) {
  ChainHead h;
  std::vector<Record> out;
  for (const auto& s : specs) {
    json j = {{"v", 1}, {"seq", h.seq + 1}, {"prev", h.hash}, {"time", "t" + std::to_string(s.t)},
              {"time_us", (kBase + s.t) * 1'000'000}, {"type", s.type}, {"node", "n1"}};
    j["session"] = s.session;
    j["identity"] = {{"subject", s.subject}, {"email", s.email}, {"groups", s.groups}, {"kind", "human"}};
    if (!s.user.empty()) j["identity"]["user"] = s.user;
    j["target"] = s.target;
    if (s.statement) j["statement"] = s.statement;
    if (s.type == "statement") {
      json sql = {{"text", s.text}, {"statements", json::array({{{"kinds", s.kinds}, {"relations", s.relations}}})}};
      if (!s.tags.empty()) sql["tags"] = s.tags;
      sql["decision"] = {{"action", s.decision}, {"rule", s.rule}};
      j["sql"] = sql;
    } else if (!s.text.empty()) {
      j["message"] = s.text;
    }
    if (!s.outcome.empty()) j["outcome"] = s.outcome;
    if (s.rows >= 0) j["rows"] = s.rows;
    if (s.fields.is_object()) j["fields"] = s.fields;
    auto r = record_from_body(j.dump(), h.seq + 1, h.hash);
    h.seq = r.seq;
    h.hash = r.hash;
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<Spec> sample() {
  std::vector<Spec> v;
  Spec s;
  s.t = 10, s.statement = 1, s.text = "SELECT * FROM orders";
  v.push_back(s);
  Spec r = s;
  r.t = 11, r.type = "result", r.outcome = "ok", r.rows = 42, r.text = "";
  v.push_back(r);
  s = {};
  s.t = 20, s.subject = "bob", s.email = "bob@corp.test", s.groups = {"dba", "ops"}, s.statement = 1, s.session = 2;
  s.kinds = {"update"}, s.relations = {"public.customers"}, s.tags = {"pii"}, s.decision = "review";
  s.rule = "review-writes", s.text = "UPDATE customers SET email = 'x'";
  v.push_back(s);
  r = s, r.t = 21, r.type = "result", r.outcome = "error", r.text = "permission denied";
  v.push_back(r);
  s = {};
  s.t = 30, s.statement = 2, s.kinds = {"drop"}, s.relations = {"billing.cards"}, s.decision = "deny";
  s.rule = "no-drop", s.text = "DROP TABLE billing.cards", s.target = "staging";
  v.push_back(s);
  s = {};
  s.t = 40, s.type = "approval", s.subject = "carol", s.email = "carol@example.com", s.text = "";
  s.fields = {{"request", "r-1"}, {"state", "approved"}};
  v.push_back(s);
  s = {};
  s.t = 50, s.statement = 3, s.relations = {"customers"}, s.tags = {"pii"}, s.decision = "mask", s.rule = "mask-pii";
  s.text = "select email from customers";
  v.push_back(s);
  return v;
}

struct Stores {
  TempDir dir;
  std::unique_ptr<AuditReader> sqlite, jsonl, blocks;
  explicit Stores(const std::vector<Spec>& specs = sample()) {
    auto records = make(specs);
    const auto db = dir.file("a.db"), file = dir.file("a.jsonl"), bdb = dir.file("b.db");
    {
      auto s = open_sqlite_sink(db, false, SqliteLayout::Rows);
      EXPECT_TRUE((*s)->write(records).has_value());
      // Blocks: in two writes, so that the store has more than one block.
      auto b = open_sqlite_sink(bdb, false);
      const std::size_t half = records.size() / 2;
      EXPECT_TRUE((*b)->write(std::span<const Record>(records).first(half)).has_value());
      EXPECT_TRUE((*b)->write(std::span<const Record>(records).subspan(half)).has_value());
      auto j = open_jsonl_sink(file, false);
      EXPECT_TRUE((*j)->write(records).has_value());
    }
    sqlite = std::move(*AuditReader::open(db));
    jsonl = std::move(*AuditReader::open(file));
    blocks = std::move(*AuditReader::open(bdb));
    EXPECT_TRUE(sqlite->has_columns());
    EXPECT_FALSE(jsonl->has_columns());
    EXPECT_FALSE(blocks->has_columns());
  }
};

std::vector<std::uint64_t> seqs(AuditReader& r, const SearchFilter& f) {
  auto page = r.search(f);
  EXPECT_TRUE(page.has_value()) << page.error().message;
  std::vector<std::uint64_t> out;
  for (const auto& h : page->hits) out.push_back(h.record.seq);
  return out;
}

SearchFilter filter(std::initializer_list<std::pair<std::string, std::string>> kv) {
  SearchFilter f;
  for (const auto& [k, v] : kv) EXPECT_TRUE(set_filter(f, k, v, (kBase + 100) * 1'000'000).has_value()) << k;
  return f;
}

void expect_both(Stores& s, const SearchFilter& f, std::vector<std::uint64_t> want) {
  EXPECT_EQ(seqs(*s.sqlite, f), want) << "sqlite";
  EXPECT_EQ(seqs(*s.jsonl, f), want) << "jsonl";
  EXPECT_EQ(seqs(*s.blocks, f), want) << "sqlite blocks";
}

TEST(AuditSearch, NewestFirstWithoutResultRecords) {
  Stores s;
  expect_both(s, {}, {7, 6, 5, 3, 1});
  expect_both(s, filter({{"type", "result"}}), {4, 2});
}

TEST(AuditSearch, Filters) {
  Stores s;
  expect_both(s, filter({{"identity", "ALICE*"}}), {7, 5, 1});
  expect_both(s, filter({{"identity", "*@corp.test"}}), {3});
  expect_both(s, filter({{"group", "dba"}}), {3});
  expect_both(s, filter({{"group", "db"}}), {});
  expect_both(s, filter({{"target", "staging"}}), {5});
  expect_both(s, filter({{"kind", "UPDATE"}}), {3});
  expect_both(s, filter({{"table", "customers"}}), {7, 3});
  expect_both(s, filter({{"table", "public.customers"}}), {7, 3});  // also the unqualified name (search_path)
  expect_both(s, filter({{"table", "billing.customers"}}), {});
  expect_both(s, filter({{"table", "cards"}}), {5});
  expect_both(s, filter({{"tag", "pii"}}), {7, 3});
  expect_both(s, filter({{"decision", "deny"}}), {5});
  expect_both(s, filter({{"rule", "mask-pii"}}), {7});
  expect_both(s, filter({{"type", "approval"}}), {6});
  expect_both(s, filter({{"since", "2026-01-01T00:00:20Z"}, {"until", "2026-01-01T00:00:40Z"}}), {5, 3});
  expect_both(s, filter({{"text", "drop table"}}), {5});
  expect_both(s, filter({{"identity", "alice*"}, {"decision", "allow"}}), {1});
}

TEST(AuditSearch, IdentityFindsAFailedLoginByTheUserNameGiven) {
  // A failed login has no subject (nobody was authenticated); the name the client gave is in
  // identity.user. Searching for that name must find it, in both stores.
  std::vector<Spec> v = sample();
  Spec f;
  f.t = 60, f.type = "connect_failed", f.subject = "", f.email = "", f.groups = {}, f.user = "Mallory";
  f.text = "password authentication failed";
  v.push_back(f);
  Spec ok;  // a logged-in session whose client gave another name: found by its subject only
  ok.t = 70, ok.type = "connect", ok.subject = "alice", ok.user = "mallory", ok.text = "";
  v.push_back(ok);
  Stores s(v);
  expect_both(s, filter({{"identity", "mallory"}}), {8});
  expect_both(s, filter({{"identity", "MALL*"}, {"type", "connect_failed"}}), {8});
  expect_both(s, filter({{"identity", "alice"}, {"type", "connect"}}), {9});
  expect_both(s, filter({{"identity", "bob"}, {"type", "connect_failed"}}), {});
}

TEST(AuditSearch, OutcomeComesFromTheResultRecord) {
  Stores s;
  expect_both(s, filter({{"outcome", "error"}}), {3});
  expect_both(s, filter({{"outcome", "ok"}}), {1});
}

TEST(AuditSearch, StatementJoinedWithItsResult) {
  Stores s;
  for (auto* r : {s.sqlite.get(), s.jsonl.get(), s.blocks.get()}) {
    auto page = r->search(filter({{"decision", "allow"}}));
    ASSERT_TRUE(page.has_value());
    ASSERT_EQ(page->hits.size(), 1u);
    ASSERT_TRUE(page->hits[0].result.has_value());
    EXPECT_EQ(page->hits[0].result->index.rows, 42);
    auto j = json::parse(hit_json(page->hits[0]));
    EXPECT_EQ(j["result"]["outcome"], "ok");
    EXPECT_EQ(j["result"]["rows"], 42);
    EXPECT_EQ(j["seq"], 1);
    EXPECT_EQ(j["hash"], page->hits[0].record.hash);
  }
}

// Session ids begin again at 1 when the proxy restarts: a statement of the second run is not given
// the result of the first run's statement with the same (session, statement) (found by
// adversarial testing: search showed a later run's SELECT as the earlier one's error).
TEST(AuditSearch, AResultBelongsToTheStatementOfItsOwnRun) {
  std::vector<Spec> v;
  Spec st;
  st.t = 10, st.statement = 1, st.text = "SELECT 'run1'::int";
  v.push_back(st);
  Spec r = st;
  r.t = 11, r.type = "result", r.outcome = "error", r.text = "";
  v.push_back(r);
  Spec start;
  start.t = 20, start.type = "start", start.text = "";
  v.push_back(start);
  st.t = 30, st.text = "SELECT 'run2'";  // no result yet (or lost in a crash)
  v.push_back(st);
  TempDir dir;
  const auto records = make(v);
  const auto db = dir.file("a.db"), file = dir.file("a.jsonl"), bdb = dir.file("b.db");
  {
    auto sq = open_sqlite_sink(db, false, SqliteLayout::Rows);
    ASSERT_TRUE((*sq)->write(records).has_value());
    auto j = open_jsonl_sink(file, false);
    ASSERT_TRUE((*j)->write(records).has_value());
    auto b = open_sqlite_sink(bdb, false);
    ASSERT_TRUE((*b)->write(records).has_value());
  }
  for (const auto& path : {db, file, bdb}) {
    auto reader = AuditReader::open(path);
    ASSERT_TRUE(reader.has_value());
    auto page = (*reader)->search(filter({{"text", "run"}}));
    ASSERT_TRUE(page.has_value());
    ASSERT_EQ(page->hits.size(), 2u) << path;
    EXPECT_EQ(page->hits[0].record.seq, 4u);
    EXPECT_FALSE(page->hits[0].result.has_value()) << path;
    ASSERT_TRUE(page->hits[1].result.has_value()) << path;
    EXPECT_EQ(page->hits[1].result->seq, 2u);
    auto errors = (*reader)->search(filter({{"outcome", "error"}}));
    ASSERT_TRUE(errors.has_value());
    ASSERT_EQ(errors->hits.size(), 1u) << path;
    EXPECT_EQ(errors->hits[0].record.seq, 1u);
  }
}

// The (session, statement) index covers result records only: a one-record statement (the common
// case) pays nothing for it at insert, and the lookups of a statement's result still use it.
TEST(AuditSqliteSchema, ResultLookupUsesThePartialIndex) {
  Stores s;
  const auto db = s.dir.file("a.db");
  EXPECT_EQ(column(db, "PRAGMA user_version"), "2");
  EXPECT_EQ(column(db, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'audit_records_session'"), "0");
  std::string plan;
  {
    auto ro = store::SqliteDb::open(db, store::SqliteDb::Mode::ReadOnly);
    ASSERT_TRUE(ro.has_value());
    auto st = ro->prepare("EXPLAIN QUERY PLAN SELECT seq FROM audit_records a WHERE a.session = 2 AND a.statement = 1 "
                          "AND a.node = 'n1' AND a.type = 'result' ORDER BY a.seq LIMIT 1");
    ASSERT_TRUE(st.has_value());
    while (*st->step()) plan += std::string(st->column_text(3)) + "\n";  // id, parent, notused, detail
  }
  EXPECT_NE(plan.find("audit_records_result"), std::string::npos) << plan;
  // Statements are not in it; results are.
  EXPECT_EQ(column(db, "SELECT count(*) FROM audit_records INDEXED BY audit_records_result WHERE type = 'result' AND session > 0"), "2");
}

TEST(AuditSqliteSchema, AVersion1StoreLosesItsFullSessionIndex) {
  TempDir dir;
  const auto db = dir.file("old.db");
  exec(db, "CREATE TABLE audit_records (seq INTEGER PRIMARY KEY, node TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL, "
           "body TEXT NOT NULL, time TEXT NOT NULL, time_us INTEGER NOT NULL, type TEXT NOT NULL, session INTEGER NOT NULL, "
           "statement INTEGER NOT NULL, subject TEXT NOT NULL, email TEXT NOT NULL, groups TEXT NOT NULL, kind TEXT NOT NULL, "
           "client TEXT NOT NULL, target TEXT NOT NULL, environment TEXT NOT NULL, database TEXT NOT NULL, kinds TEXT NOT NULL, "
           "relations TEXT NOT NULL, tags TEXT NOT NULL, decision TEXT NOT NULL, rule TEXT NOT NULL, outcome TEXT NOT NULL, "
           "sqlstate TEXT NOT NULL, rows INTEGER NOT NULL, duration_us INTEGER NOT NULL, text TEXT NOT NULL);"
           "CREATE INDEX audit_records_time ON audit_records (time_us);"
           "CREATE INDEX audit_records_session ON audit_records (session, statement);"
           "PRAGMA user_version = 1;");
  {
    auto store = store::SqliteDb::open(db);
    ASSERT_TRUE(store.has_value());
    for (const auto& r : make(sample())) insert_row(*store, r);
  }
  { ASSERT_TRUE(open_sqlite_sink(db, false).has_value()); }
  EXPECT_EQ(column(db, "PRAGMA user_version"), "2");
  EXPECT_EQ(column(db, "SELECT group_concat(name, ' ') FROM (SELECT name FROM sqlite_master WHERE type = 'index' ORDER BY name)"),
            "audit_records_result audit_records_start audit_records_time");
  auto reader = AuditReader::open(db);
  ASSERT_TRUE(reader.has_value());
  auto page = (*reader)->search(filter({{"outcome", "error"}}));
  ASSERT_TRUE(page.has_value());
  ASSERT_EQ(page->hits.size(), 1u);
  EXPECT_EQ(page->hits[0].record.seq, 3u);
  ASSERT_TRUE(page->hits[0].result.has_value());
  EXPECT_EQ(page->hits[0].result->index.outcome, "error");
}

TEST(AuditSearch, PaginatesWithACursor) {
  Stores s;
  for (auto* r : {s.sqlite.get(), s.jsonl.get(), s.blocks.get()}) {
    SearchFilter f;
    f.limit = 2;
    std::vector<std::uint64_t> all;
    for (int pages = 0; pages < 10; ++pages) {
      auto page = r->search(f);
      ASSERT_TRUE(page.has_value()) << page.error().message;
      for (const auto& h : page->hits) all.push_back(h.record.seq);
      if (page->next_cursor.empty()) break;
      f.cursor = page->next_cursor;
    }
    EXPECT_EQ(all, (std::vector<std::uint64_t>{7, 6, 5, 3, 1})) << r->description();
  }
}

TEST(AuditSearch, UserInputIsNeverSql) {
  Stores s;
  expect_both(s, filter({{"target", "prod' OR '1'='1"}}), {});
  expect_both(s, filter({{"text", "%"}}), {});
  expect_both(s, filter({{"group", "_"}}), {});
}

TEST(AuditSearch, EachStreamsOldestFirst) {
  Stores s;
  for (auto* r : {s.sqlite.get(), s.jsonl.get(), s.blocks.get()}) {
    std::vector<std::uint64_t> got;
    auto ok = r->each(filter({{"tag", "pii"}}), [&](const Record& rec) {
      got.push_back(rec.seq);
      return true;
    });
    ASSERT_TRUE(ok.has_value());
    EXPECT_EQ(got, (std::vector<std::uint64_t>{3, 7}));
  }
}

TEST(AuditSearch, NodesAndScan) {
  Stores s;
  for (auto* r : {s.sqlite.get(), s.jsonl.get(), s.blocks.get()}) {
    auto n = r->nodes();
    ASSERT_TRUE(n.has_value());
    EXPECT_EQ(*n, std::vector<std::string>{"n1"});
    std::vector<std::int64_t> got;
    ASSERT_TRUE(r->scan("n1", 4, [&](const StoredRecord& x) {
                   got.push_back(x.seq);
                   return true;
                 }).has_value());
    EXPECT_EQ(got, (std::vector<std::int64_t>{5, 6, 7}));
  }
}

TEST(AuditSearch, BadFiltersAreRefused) {
  SearchFilter f;
  EXPECT_FALSE(set_filter(f, "decision", "maybe", 0));
  EXPECT_FALSE(set_filter(f, "type", "nope", 0));
  EXPECT_FALSE(set_filter(f, "limit", "0", 0));
  EXPECT_FALSE(set_filter(f, "limit", "abc", 0));
  EXPECT_FALSE(set_filter(f, "identity", "[a]", 0));
  EXPECT_FALSE(set_filter(f, "cursor", "x", 0));
  EXPECT_FALSE(set_filter(f, "colour", "red", 0));
  EXPECT_FALSE(set_filter(f, "since", "yesterday", 0));
  // Found by adversarial testing: accepted, and matched nothing.
  EXPECT_FALSE(set_filter(f, "kind", "nonsense", 0));
  EXPECT_FALSE(set_filter(f, "outcome", "weird", 0));
  EXPECT_FALSE(set_filter(f, "table", "\"unclosed", 0));
  EXPECT_TRUE(set_filter(f, "kind", "UPDATE", 0));
  EXPECT_EQ(f.kind, "update");
  EXPECT_TRUE(set_filter(f, "outcome", "not_run", 0));
  EXPECT_TRUE(set_filter(f, "outcome", "OK", 0));
  EXPECT_EQ(f.outcome, "ok");
  EXPECT_FALSE(set_filter(f, "table", "", 0));  // matched every record
  EXPECT_FALSE(set_filter(f, "table", ".", 0));
  EXPECT_FALSE(set_filter(f, "table", "a.", 0));
}

TEST(AuditSearch, TableNamesFoldAsSqlReadsThem) {
  SearchFilter f;
  ASSERT_TRUE(set_filter(f, "table", "T1", 0));
  EXPECT_EQ(f.table, "t1");
  ASSERT_TRUE(set_filter(f, "table", "Public.\"Mixed\"\"Case\"", 0));
  EXPECT_EQ(f.table, "public.Mixed\"Case");
  ASSERT_TRUE(set_filter(f, "table", "\"S.x\".t", 0));
  EXPECT_EQ(f.table, "S.x.t");
}

TEST(AuditSearch, ParsesTimes) {
  const std::int64_t now = (kBase + 86400) * 1'000'000;
  EXPECT_EQ(*parse_time("2026-01-01", now), kBase * 1'000'000);
  EXPECT_EQ(*parse_time("2026-01-01T00:00:10Z", now), (kBase + 10) * 1'000'000);
  EXPECT_EQ(*parse_time("2026-01-01T00:00:10.5Z", now), (kBase + 10) * 1'000'000 + 500000);
  EXPECT_EQ(*parse_time("2026-01-01T01:00:00+01:00", now), kBase * 1'000'000);
  EXPECT_EQ(*parse_time("24h", now), kBase * 1'000'000);
  EXPECT_EQ(*parse_time("1d", now), kBase * 1'000'000);
  EXPECT_EQ(*parse_time("now", now), now);
  // Not a real day or time (found by adversarial testing: accepted before).
  for (const char* bad : {"2026-02-30", "2025-02-29", "2026-04-31", "2026-01-02T24:00:00Z", "2026-01-02T99:99:99Z",
                          "2026-01-02T12:60:00Z"}) {
    SearchFilter f;
    EXPECT_FALSE(set_filter(f, "since", bad, 0).has_value()) << bad;
  }
  SearchFilter leap;
  EXPECT_TRUE(set_filter(leap, "since", "2024-02-29", 0).has_value());
}

TEST(AuditReaderOpen, MissingFileIsAnError) {
  TempDir d;
  EXPECT_FALSE(AuditReader::open(d.file("none.db")));
}

// Checkpoint signer: both algorithms sign and verify; another key or another message fails.
class SignerTest : public ::testing::TestWithParam<CheckpointSigner::Algorithm> {};

TEST_P(SignerTest, SignsAndVerifies) {
  TempDir d;
  ASSERT_TRUE(CheckpointSigner::generate(GetParam(), d.file("k1")));
  ASSERT_TRUE(CheckpointSigner::generate(GetParam(), d.file("k2")));
  EXPECT_FALSE(CheckpointSigner::generate(GetParam(), d.file("k1")));  // never overwrites a key
  auto k1 = CheckpointSigner::load(GetParam(), d.file("k1"));
  auto k2 = CheckpointSigner::load(GetParam(), d.file("k2"));
  ASSERT_TRUE(k1 && k2);
  EXPECT_TRUE(k1->can_sign());
  EXPECT_NE(k1->key_id(), k2->key_id());
  const auto msg = CheckpointSigner::message("n1", 12, std::string(64, 'a'));
  auto sig = k1->sign(msg);
  ASSERT_TRUE(sig.has_value());
  EXPECT_TRUE(k1->verify(msg, *sig));
  EXPECT_FALSE(k2->verify(msg, *sig));
  EXPECT_FALSE(k1->verify(CheckpointSigner::message("n1", 13, std::string(64, 'a')), *sig));
  EXPECT_FALSE(k1->verify(CheckpointSigner::message("n2", 12, std::string(64, 'a')), *sig));
  EXPECT_FALSE(k1->verify(msg, "zz"));
  auto bad = *sig;
  bad[0] = bad[0] == '0' ? '1' : '0';
  EXPECT_FALSE(k1->verify(msg, bad));
}

INSTANTIATE_TEST_SUITE_P(Algorithms, SignerTest,
                         ::testing::Values(CheckpointSigner::Algorithm::Ed25519, CheckpointSigner::Algorithm::HmacSha256),
                         [](const auto& info) {
                           return info.param == CheckpointSigner::Algorithm::Ed25519 ? "Ed25519" : "HmacSha256";
                         });

TEST(SignerTest, KeyOfTheWrongKindIsRefused) {
  TempDir d;
  ASSERT_TRUE(CheckpointSigner::generate(CheckpointSigner::Algorithm::HmacSha256, d.file("hmac")));
  EXPECT_FALSE(CheckpointSigner::load(CheckpointSigner::Algorithm::Ed25519, d.file("hmac")));
}

}  // namespace
}  // namespace gh::audit

namespace gh::audit {
namespace {

// 600 statements with mostly rising times, every 7th 500 s in the past, so that blocks of 20 have
// time ranges that overlap (a statement's record carries the time it began).
std::vector<Record> overlapping_records() {
  std::vector<Spec> specs;
  for (int i = 0; i < 600; ++i) {
    Spec s;
    s.t = i % 7 == 0 ? i - 500 : i;
    s.statement = i + 1;
    s.session = 1 + i % 5;
    s.target = i % 3 == 0 ? "prod" : "dev";
    s.text = "SELECT " + std::to_string(i);
    s.outcome = i % 4 == 0 ? "error" : "ok";
    if (i % 10 == 0) s.tags = {"pii"};
    specs.push_back(s);
  }
  return make(specs);
}

// The records in the rows layout at `rows` and as 30 blocks of 20 at `blocks`.
void write_rows_and_blocks(const std::vector<Record>& records, const std::string& rows, const std::string& blocks) {
  auto r = open_sqlite_sink(rows, false, SqliteLayout::Rows);
  ASSERT_TRUE((*r)->write(records).has_value());
  auto b = open_sqlite_sink(blocks, false);
  for (std::size_t i = 0; i < records.size(); i += 20)
    ASSERT_TRUE((*b)->write(std::span<const Record>(records).subspan(i, std::min<std::size_t>(20, records.size() - i))));
}

// A store of many blocks is searched newest first, reading blocks until the page is full and no
// unread block can hold a newer record: pages, cursors, filters and time ranges must answer as the
// rows layout does, also when a later block holds older times than an earlier one.
TEST(AuditSearchBlocks, PagesOverManyBlocksAnswerAsRows) {
  TempDir dir;
  const auto rows = dir.file("rows.db"), blocks = dir.file("blocks.db");
  write_rows_and_blocks(overlapping_records(), rows, blocks);
  EXPECT_EQ(column(blocks, "SELECT count(*) FROM audit_blocks"), "30");
  for (const auto& f : {filter({{"limit", "7"}}), filter({{"limit", "50"}, {"target", "prod"}}),
                        filter({{"limit", "3"}, {"since", "2026-01-01T00:05:00Z"}}),
                        filter({{"limit", "25"}, {"until", "2026-01-01T00:03:00Z"}}), filter({{"limit", "1000"}})}) {
    auto a = AuditReader::open(rows), b = AuditReader::open(blocks);
    ASSERT_TRUE(a && b);
    SearchFilter fa = f, fb = f;
    for (int page = 0; page < 200; ++page) {
      auto pa = (*a)->search(fa), pb = (*b)->search(fb);
      ASSERT_TRUE(pa.has_value() && pb.has_value());
      std::vector<std::uint64_t> sa, sb;
      for (const auto& h : pa->hits) sa.push_back(h.record.seq);
      for (const auto& h : pb->hits) sb.push_back(h.record.seq);
      ASSERT_EQ(sa, sb) << "page " << page << " limit " << f.limit;
      ASSERT_EQ(pa->next_cursor, pb->next_cursor);
      if (pa->next_cursor.empty()) break;
      fa.cursor = pa->next_cursor;
      fb.cursor = pb->next_cursor;
    }
  }
}

}  // namespace
}  // namespace gh::audit

namespace gh::audit {
namespace {

// A store of blocks reads only the lines that can match into its temporary table (LineFilter):
// texts with characters JSON escapes, other cases, a statement's outcome from its Result record
// and one reader asked with one filter after another must answer as the other stores do.
TEST(AuditSearchBlocks, LinesReadForAFilterAnswerAsRows) {
  std::vector<Spec> v = sample();
  Spec odd;
  odd.t = 60, odd.statement = 4, odd.text = "SELECT 'Tab\there', \"Quoted\"\nnext line \\ back";
  odd.relations = {"My.Table"}, odd.rule = "r \"1\"", odd.target = "t\\1";
  v.push_back(odd);
  Stores s(v);
  expect_both(s, filter({{"text", "tab\there"}}), {8});
  expect_both(s, filter({{"text", "\"QUOTED\"\nNEXT"}}), {8});
  expect_both(s, filter({{"text", "\\ back"}}), {8});
  expect_both(s, filter({{"rule", "r \"1\""}}), {8});
  expect_both(s, filter({{"target", "t\\1"}}), {8});
  expect_both(s, filter({{"table", "\"My.Table\""}}), {8});
  expect_both(s, filter({{"text", "nothing has this"}}), {});
  // Outcomes live in Result records, which every line filter keeps.
  // (the Result record of 3 says "permission denied", not "customers")
  expect_both(s, filter({{"text", "customers"}, {"outcome", "error"}}), {3});
  expect_both(s, {}, {8, 7, 6, 5, 3, 1});
}

}  // namespace
}  // namespace gh::audit

namespace gh::audit {
namespace {

// each() over a store of blocks reads the blocks of the time range in chain order and matches each
// record as it is parsed (no temporary table): it must give the records the other stores give, in
// seq order, also when later blocks hold older times, and stop when asked to.
TEST(AuditSearchBlocks, EachAnswersAsTheOtherStores) {
  const auto records = overlapping_records();
  TempDir dir;
  const auto rows = dir.file("rows.db"), blocks = dir.file("blocks.db"), lines = dir.file("a.jsonl");
  write_rows_and_blocks(records, rows, blocks);
  {
    auto j = open_jsonl_sink(lines, false);
    ASSERT_TRUE((*j)->write(records).has_value());
  }
  auto a = AuditReader::open(rows), b = AuditReader::open(blocks), l = AuditReader::open(lines);
  ASSERT_TRUE(a && b && l);
  auto all = [](AuditReader& r, const SearchFilter& f, std::size_t stop_after = SIZE_MAX) {
    std::vector<std::uint64_t> got;
    auto ok = r.each(f, [&](const Record& rec) {
      EXPECT_FALSE(rec.index.type.empty());  // the index is filled
      got.push_back(rec.seq);
      return got.size() < stop_after;
    });
    EXPECT_TRUE(ok.has_value()) << ok.error().message;
    return got;
  };
  std::size_t nonempty = 0;
  for (const auto& f : {filter({}), filter({{"target", "prod"}}), filter({{"since", "2026-01-01T00:05:00Z"}}),
                        filter({{"until", "2026-01-01T00:03:00Z"}}),
                        filter({{"since", "2026-01-01T00:01:00Z"}, {"until", "2026-01-01T00:02:00Z"}}),
                        filter({{"outcome", "error"}, {"tag", "pii"}}), filter({{"text", "select 59"}}),
                        filter({{"text", "nothing has this"}})}) {
    auto from_rows = all(**a, f);  // by time
    const auto from_blocks = all(**b, f), from_lines = all(**l, f);
    EXPECT_TRUE(std::is_sorted(from_blocks.begin(), from_blocks.end()));
    EXPECT_EQ(from_blocks, from_lines);
    std::sort(from_rows.begin(), from_rows.end());
    EXPECT_EQ(from_blocks, from_rows);
    if (!from_rows.empty()) ++nonempty;
  }
  EXPECT_EQ(nonempty, 7u);
  EXPECT_EQ(all(**b, filter({}), 45).size(), 45u);  // stopped in its third block
}

}  // namespace
}  // namespace gh::audit
