// The PostgreSQL audit sink against a real server. Skipped unless GH_TEST_PG_DSN names a
// superuser connection (the tests create and drop their own schema and role), e.g.
//   GH_TEST_PG_DSN='host=127.0.0.1 port=5432 user=postgres password=... dbname=postgres'
#include <libpq-fe.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "audit_test_util.h"

#include "audit/event.h"
#include "audit/record.h"
#include "audit_test_util.h"
#include "audit/sink.h"
#include "audit/trail.h"

namespace gh::audit {
namespace {

const char* test_dsn() { return std::getenv("GH_TEST_PG_DSN"); }

#define REQUIRE_PG()                                                                       \
  if (!test_dsn()) GTEST_SKIP() << "set GH_TEST_PG_DSN to a superuser libpq connection " \
                                   "string to run the PostgreSQL audit sink tests"

// A direct connection for setting up and checking what the sink stored.
struct Db {
  PGconn* c = PQconnectdb(test_dsn());
  Db() { PQsetNoticeProcessor(c, [](void*, const char*) {}, nullptr); }
  ~Db() { PQfinish(c); }
  std::vector<std::vector<std::string>> rows(const std::string& sql) {
    PGresult* r = PQexec(c, sql.c_str());
    EXPECT_TRUE(PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK)
        << sql << ": " << PQresultErrorMessage(r);
    std::vector<std::vector<std::string>> out;
    for (int i = 0; i < PQntuples(r); ++i) {
      out.emplace_back();
      for (int j = 0; j < PQnfields(r); ++j) out.back().emplace_back(PQgetvalue(r, i, j));
    }
    PQclear(r);
    return out;
  }
  void exec(const std::string& sql) { rows(sql); }
  std::string one(const std::string& sql) {
    auto r = rows(sql);
    return r.empty() || r[0].empty() ? "" : r[0][0];
  }
};

// Each test gets its own schema, dropped afterwards.
struct Schema {
  std::string name = "gh_audit_test_" + std::to_string(::getpid()) + "_" + std::to_string(++counter);
  Db db;
  static inline int counter = 0;
  Schema() {
    db.exec("DROP SCHEMA IF EXISTS " + name + " CASCADE; CREATE SCHEMA " + name);
  }
  ~Schema() { db.exec("DROP SCHEMA IF EXISTS " + name + " CASCADE"); }
  std::string table() const { return name + ".audit"; }
};

Event statement(std::uint64_t n, std::string text = "") { return testing::text_statement(n, std::move(text)); }

std::vector<Record> records(std::uint64_t from, std::uint64_t to, ChainHead& head, std::string node = "n1") {
  std::vector<Record> out;
  for (auto i = from; i <= to; ++i) out.push_back(seal(statement(i), head, SealOptions{node}));
  return out;
}

// Walks the stored chain of `node`: consecutive seqs from `first`, each hash over prev + body.
void expect_chain(Db& db, const std::string& table, const std::string& node, std::uint64_t first, std::uint64_t last) {
  auto rows = db.rows("SELECT seq, prev, hash, body FROM " + table + " WHERE node = '" + node + "' ORDER BY seq");
  ASSERT_EQ(rows.size(), last - first + 1);
  std::string prev = rows[0][1];
  std::uint64_t want = first;
  for (const auto& r : rows) {
    EXPECT_EQ(std::stoull(r[0]), want++);
    EXPECT_EQ(r[1], prev);
    EXPECT_EQ(chain_hash(r[1], r[3]), r[2]) << "seq " << r[0];
    prev = r[2];
  }
}

TEST(PostgresAuditSink, OpenChecksDsnAndTableWithoutConnecting) {
  EXPECT_FALSE(open_postgres_sink("host=x nosuchkeyword=1", "t").has_value());
  EXPECT_FALSE(open_postgres_sink("host=x", "a.b.c").has_value());
  EXPECT_FALSE(open_postgres_sink("host=x", "a..b").has_value());
  EXPECT_FALSE(open_postgres_sink("host=x", "a;drop").has_value());
  auto s = open_postgres_sink("postgresql://u:pw-secret-1@db.example:6543/audit", "s.t");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ((*s)->name(), "postgres:db.example:6543/audit/s.t");
}

TEST(PostgresAuditSink, StoreDownFailsEachCallWithoutRevealingThePassword) {
  REQUIRE_PG();
  // A port nothing listens on: opening works, every call fails fast with 08006.
  auto s = open_postgres_sink("host=127.0.0.1 port=1 dbname=auditdb user=u password=pw-secret-2", "");
  ASSERT_TRUE(s.has_value());
  auto h = (*s)->head("n1");
  ASSERT_FALSE(h.has_value());
  EXPECT_EQ(h.error().sqlstate, "08006");
  EXPECT_NE(h.error().message.find("127.0.0.1:1/auditdb"), std::string::npos) << h.error().message;
  EXPECT_EQ(h.error().message.find("pw-secret-2"), std::string::npos) << h.error().message;
  ChainHead head;
  auto w = (*s)->write(records(1, 3, head));
  ASSERT_FALSE(w.has_value());
  EXPECT_EQ(w.error().sqlstate, "08006");
  EXPECT_EQ(w.error().message.find("pw-secret-2"), std::string::npos);
}

TEST(PostgresAuditSink, StoresBodiesByteForByteAndReportsTheHead) {
  REQUIRE_PG();
  Schema schema;
  auto s = open_postgres_sink(test_dsn(), schema.table());
  ASSERT_TRUE(s.has_value());
  auto h0 = (*s)->head("n1");
  ASSERT_TRUE(h0.has_value()) << h0.error().message;
  EXPECT_FALSE(h0->has_value());

  ChainHead head;
  std::vector<Record> batch;
  // Characters COPY's text format must escape, a line that would end COPY data, and UTF-8.
  for (std::string text : {"SELECT 'a\tb\nc\\d\re'", "\\.", "SELECT 'Zoë ✓ 日本'", "SELECT E'\\\\x00'"})
    batch.push_back(seal(statement(batch.size() + 1, text), head, SealOptions{"n1"}));
  auto w = (*s)->write(batch);
  ASSERT_TRUE(w.has_value()) << w.error().message;

  auto h = (*s)->head("n1");
  ASSERT_TRUE(h.has_value() && h->has_value());
  EXPECT_EQ((*h)->seq, 4u);
  EXPECT_EQ((*h)->hash, head.hash);
  EXPECT_FALSE((*(*s)->head("other")).has_value());

  auto rows = schema.db.rows("SELECT body, text, subject, groups, time, time_us FROM " + schema.table() + " ORDER BY seq");
  ASSERT_EQ(rows.size(), 4u);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i][0], batch[i].body);
    EXPECT_EQ(rows[i][1], batch[i].index.text);
    EXPECT_EQ(rows[i][2], "alice");
    EXPECT_EQ(rows[i][3], ",dba,eng,");
    EXPECT_EQ(rows[i][4], batch[i].index.time);
    EXPECT_EQ(rows[i][5], std::to_string(batch[i].index.time_us));
  }
  expect_chain(schema.db, schema.table(), "n1", 1, 4);
  // The indexes readers rely on exist beside the table.
  EXPECT_EQ(schema.db.one("SELECT count(*) FROM pg_indexes WHERE schemaname = '" + schema.name + "'"), "4");
}

TEST(PostgresAuditSink, ResentRecordsAreAcceptedOnlyWhenIdentical) {
  REQUIRE_PG();
  Schema schema;
  auto s = open_postgres_sink(test_dsn(), schema.table());
  ASSERT_TRUE(s.has_value());
  ChainHead head;
  auto all = records(1, 16, head);
  ASSERT_TRUE((*s)->write(std::span(all).first(10)).has_value());
  // 5..15: 5..10 stored already (an answer lost after COMMIT), 11..15 new.
  auto r = (*s)->write(std::span(all).subspan(4, 11));
  ASSERT_TRUE(r.has_value()) << r.error().message;
  expect_chain(schema.db, schema.table(), "n1", 1, 15);

  // Seq 15 again with another body, plus 16: refused as a whole.
  std::vector<Record> forged{all[14], all[15]};
  forged[0].body += " ";
  auto f = (*s)->write(forged);
  ASSERT_FALSE(f.has_value());
  EXPECT_EQ(f.error().sqlstate, "23505");
  EXPECT_NE(f.error().message.find("different body"), std::string::npos) << f.error().message;
  EXPECT_EQ(schema.db.one("SELECT max(seq) FROM " + schema.table()), "15");
  // The sink reconnects and goes on.
  ASSERT_TRUE((*s)->write(std::span(all).last(1)).has_value());
  expect_chain(schema.db, schema.table(), "n1", 1, 16);
}

TEST(PostgresAuditSink, KeepsOneChainPerNode) {
  REQUIRE_PG();
  Schema schema;
  auto a = open_postgres_sink(test_dsn(), schema.table());
  auto b = open_postgres_sink(test_dsn(), schema.table());
  ChainHead ha, hb;
  ASSERT_TRUE((*a)->write(records(1, 5, ha, "a")).has_value());
  ASSERT_TRUE((*b)->write(records(1, 3, hb, "b")).has_value());
  EXPECT_EQ((*(*a)->head("a"))->seq, 5u);
  EXPECT_EQ((*(*a)->head("b"))->seq, 3u);
  expect_chain(schema.db, schema.table(), "a", 1, 5);
  expect_chain(schema.db, schema.table(), "b", 1, 3);
}

TEST(PostgresAuditSink, PrunesLikeTheSqliteStore) {
  REQUIRE_PG();
  Schema schema;
  auto s = open_postgres_sink(test_dsn(), schema.table());
  ChainHead head;
  auto all = records(1, 20, head);  // times 1'700'000'001 .. 1'700'000'020 s
  ASSERT_TRUE((*s)->write(all).has_value());
  ChainHead other;
  ASSERT_TRUE((*s)->write(records(1, 3, other, "n2")).has_value());

  auto none = (*s)->prune("n1", std::nullopt, 0);
  ASSERT_TRUE(none.has_value());
  EXPECT_FALSE(none->has_value());

  // Older than second ...05: seqs 1..4.
  auto p = (*s)->prune("n1", std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'005)), 0);
  ASSERT_TRUE(p.has_value() && p->has_value()) << (p ? "" : p.error().message);
  EXPECT_EQ((*p)->through, 4u);
  EXPECT_EQ((*p)->hash, all[3].hash);
  // Keep the newest 10 of 5..20: through 10; the larger of both limits wins.
  p = (*s)->prune("n1", std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'007)), 10);
  ASSERT_TRUE(p.has_value() && p->has_value());
  EXPECT_EQ((*p)->through, 10u);
  EXPECT_EQ((*p)->hash, all[9].hash);
  p = (*s)->prune("n1", std::nullopt, 10);
  ASSERT_TRUE(p.has_value());
  EXPECT_FALSE(p->has_value());  // through 10 is gone already
  expect_chain(schema.db, schema.table(), "n1", 11, 20);
  expect_chain(schema.db, schema.table(), "n2", 1, 3);  // other nodes untouched
}

// The trail over this sink while the store refuses connections: records are spooled, the
// acknowledgements say so, and once the store is back they arrive in order, chain intact.
TEST(PostgresAuditSink, TrailSpoolsWhileTheStoreIsDownAndCatchesUp) {
  REQUIRE_PG();
  Schema schema;
  const std::string role = schema.name + "_writer";
  schema.db.exec("DROP ROLE IF EXISTS " + role + "; CREATE ROLE " + role + " LOGIN PASSWORD 'pw-secret-3'; "
                 "GRANT USAGE, CREATE ON SCHEMA " + schema.name + " TO " + role);
  // The test DSN with this role's credentials (later keywords win in a libpq connection string).
  std::string dsn;
  PQconninfoOption* opts = PQconninfoParse(test_dsn(), nullptr);
  for (auto* o = opts; o && o->keyword; ++o)
    if (o->val && std::string_view(o->keyword) != "user" && std::string_view(o->keyword) != "password")
      dsn += std::string(o->keyword) + "='" + o->val + "' ";
  PQconninfoFree(opts);
  dsn += "user=" + role + " password=pw-secret-3";

  char tmpl[] = "/tmp/gh-pg-sink-XXXXXX";
  const std::filesystem::path dir = ::mkdtemp(tmpl);
  Trail::Options o;
  o.node = "n1";
  o.spool_dir = (dir / "spool").string();
  o.retry_interval = std::chrono::milliseconds(50);
  std::vector<std::unique_ptr<AuditSink>> sinks;
  sinks.push_back(*open_postgres_sink(dsn, schema.table()));
  auto t = Trail::open(std::move(o), std::move(sinks));
  ASSERT_TRUE(t.has_value()) << t.error().message;
  int ok = 0, refused = 0;
  std::string last_error;
  auto ack = [&](const Error* e) {
    if (e) ++refused, last_error = e->message;
    else ++ok;
  };
  for (int i = 1; i <= 10; ++i) (*t)->submit(statement(i), ack);
  (*t)->flush();
  EXPECT_EQ(ok, 10);

  schema.db.exec("ALTER ROLE " + role + " NOLOGIN");
  schema.db.exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '" + role + "'");
  // Acknowledged as they reach the journal; the next flush to the store finds it down.
  for (int i = 11; i <= 30; ++i) (*t)->submit(statement(i), ack);
  (*t)->flush();
  for (int i = 0; i < 200 && (*t)->stats().sinks_healthy; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE((*t)->stats().sinks_healthy);
  // (Some of 11..30 may already have been refused: whichever were acknowledged after the first
  // failed flush.) From now on every record is refused until the store is back.
  const int ok_before = ok, refused_before = refused;
  EXPECT_EQ(ok_before + refused_before, 30);
  for (int i = 31; i <= 35; ++i) (*t)->submit(statement(i), ack);
  (*t)->flush();
  EXPECT_EQ(refused - refused_before, 5);  // journaled: safe, but the store is down, so `required` refuses
  EXPECT_EQ(ok, ok_before);
  EXPECT_EQ(last_error.find("pw-secret-3"), std::string::npos) << last_error;

  schema.db.exec("ALTER ROLE " + role + " LOGIN");
  for (int i = 0; i < 200 && schema.db.one("SELECT count(*) FROM " + schema.table()) != "36"; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(schema.db.one("SELECT count(*) FROM " + schema.table()), "36");  // start + 35, in order
  for (int i = 0; i < 200 && !(*t)->stats().sinks_healthy; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  for (int i = 36; i <= 40; ++i) (*t)->submit(statement(i), ack);
  (*t)->flush();
  EXPECT_EQ(ok, ok_before + 5);  // accepted again
  (*t)->close();
  expect_chain(schema.db, schema.table(), "n1", 1, 42);  // start + 40 + stop
  EXPECT_EQ(schema.db.one("SELECT prev FROM " + schema.table() + " WHERE seq = 1"), std::string(kGenesisHash));
  t->reset();
  std::filesystem::remove_all(dir);
  schema.db.exec("DROP OWNED BY " + role + "; DROP ROLE " + role);
}

// Not a test: run with --gtest_also_run_disabled_tests to print the COPY path's rate.
TEST(PostgresAuditSink, DISABLED_CopyThroughput) {
  REQUIRE_PG();
  Schema schema;
  auto s = open_postgres_sink(test_dsn(), schema.table());
  ChainHead head;
  std::vector<std::vector<Record>> batches;
  for (int b = 0; b < 25; ++b) batches.push_back(records(head.seq + 1, head.seq + 4096, head));
  ASSERT_TRUE((*s)->head("n1").has_value());  // connect and create the table outside the timing
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& b : batches) ASSERT_TRUE((*s)->write(b).has_value());
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%zu records in %zu batches of 4096 (body ~%zu bytes): %.3f s, %.0f records/s\n",
              batches.size() * 4096, batches.size(), batches[0][0].body.size(), secs, batches.size() * 4096 / secs);
}

}  // namespace
}  // namespace gh::audit
