#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "audit_test_util.h"

#include "audit/lines.h"
#include "sql/analyzer.h"
#include "audit/reader.h"
#include "audit/record.h"
#include "audit/trail.h"
#include "audit/verify.h"
#include "store/sqlite.h"

namespace gh::audit {
namespace {

using testing::TempDir;

Event statement(std::uint64_t n) { return testing::text_statement(n); }

Trail::Options options(const TempDir& d) {
  Trail::Options o;
  o.node = "n1";
  o.spool_dir = d.file("spool");
  return o;
}

std::int64_t count(const std::string& db) {
  auto c = store::SqliteDb::open(testing::as_rows(db), store::SqliteDb::Mode::ReadOnly);
  EXPECT_TRUE(c.has_value());
  return c->query_int("SELECT count(*) FROM audit_records")->value_or(-1);
}

// Every record of the store, in order, chained to the one before; returns how many.
std::uint64_t chained_records(const std::string& db) {
  auto c = store::SqliteDb::open(testing::as_rows(db), store::SqliteDb::Mode::ReadOnly);
  auto st = c->prepare("SELECT seq, prev, hash, body FROM audit_records ORDER BY seq");
  std::string prev(kGenesisHash);
  std::uint64_t expect = 1;
  while (*st->step()) {
    EXPECT_EQ(std::uint64_t(st->column_int(0)), expect++);
    EXPECT_EQ(st->column_text(1), prev);
    EXPECT_EQ(chain_hash(prev, st->column_text(3)), st->column_text(2));
    prev = std::string(st->column_text(2));
  }
  return expect - 1;
}

TEST(AuditTrail, WritesChainedRecordsAndContinuesAfterRestart) {
  TempDir d;
  const std::string db = d.file("a.db");
  {
    std::vector<std::unique_ptr<AuditSink>> sinks;
    sinks.push_back(*open_sqlite_sink(db, false));
    auto t = Trail::open(options(d), std::move(sinks));
    ASSERT_TRUE(t.has_value()) << t.error().message;
    int acked = 0;
    for (int i = 1; i <= 100; ++i) (*t)->submit(statement(i), [&](const Error* e) { acked += e == nullptr; });
    (*t)->flush();
    EXPECT_EQ(acked, 100);
    (*t)->close();
  }
  EXPECT_EQ(count(db), 102);  // start + 100 + stop
  {
    std::vector<std::unique_ptr<AuditSink>> sinks;
    sinks.push_back(*open_sqlite_sink(db, false));
    auto t = Trail::open(options(d), std::move(sinks));
    ASSERT_TRUE(t.has_value());
    (*t)->close();
  }
  EXPECT_EQ(chained_records(db), 104u);
}

std::vector<std::unique_ptr<AuditSink>> sqlite_sinks(const std::string& db) {
  std::vector<std::unique_ptr<AuditSink>> sinks;
  sinks.push_back(*open_sqlite_sink(db, false));
  return sinks;
}

// Runs `body` in a child process that must end killed by SIGKILL (body's last act); a child that
// exits instead fails the test with body's exit code.
template <class Body>
void in_killed_child(Body body) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    body();
    ::_exit(99);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "child exit status " << WEXITSTATUS(status);
}

// The journal is written through a memory mapping and, once the store holds all of it, written
// again from its start, over the old bytes. A process killed after that leaves what it journaled
// since, then an end mark, then leftovers: the next start must store exactly the new records
// (every acknowledged one), nothing left over, and the chain must verify.
void kill_after_reuse(bool mapped) {
  TempDir d;
  const std::string db = d.file("a.db");
  in_killed_child([&] {
    auto o = options(d);
    o.flush_interval = std::chrono::milliseconds(100);
    o.map_journal = mapped;
    auto t = Trail::open(std::move(o), sqlite_sinks(db));
    if (!t) ::_exit(2);
    // Long records, so what is left behind the end mark later holds whole old lines.
    for (int i = 1; i <= 200; ++i) (*t)->submit(testing::text_statement(std::uint64_t(i), std::string(900, 'x')));
    (*t)->flush();
    for (int i = 0; i < 500 && (*t)->stats().stored < (*t)->stats().head_seq; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if ((*t)->stats().stored != 201) ::_exit(3);
    // The journal is emptied and rewritten from its start; these are acknowledged, not yet stored.
    for (int i = 201; i <= 203; ++i) {
      std::vector<Event> one;
      one.push_back(testing::text_statement(std::uint64_t(i)));
      if (!(*t)->write_now(std::move(one))) ::_exit(4);
    }
    ::kill(::getpid(), SIGKILL);
  });
  {
    std::vector<std::unique_ptr<AuditSink>> sinks;
    sinks.push_back(*open_sqlite_sink(db, false));
    auto o = options(d);
    o.map_journal = mapped;
    auto t = Trail::open(std::move(o), std::move(sinks));
    ASSERT_TRUE(t.has_value()) << t.error().message;
    (*t)->close();
  }
  // start + 200 + the 3 acknowledged before the kill + the second start + stop
  EXPECT_EQ(chained_records(db), 206u);
  auto c = store::SqliteDb::open(testing::as_rows(db), store::SqliteDb::Mode::ReadOnly);
  EXPECT_EQ(c->query_int("SELECT count(*) FROM audit_records WHERE type = 'statement' AND statement > 200")->value_or(-1), 3);
}

TEST(AuditTrail, KillAfterTheJournalWasReusedStoresOnlyWhatWasJournaledSince) { kill_after_reuse(true); }

// The same with the journal appended to by write(2) (file systems without fallocate or mmap).
TEST(AuditTrail, KillWithAWrittenJournalStoresEveryAcknowledgedRecord) { kill_after_reuse(false); }

// One record per statement: an intent before it runs, its record (with the outcome) when it
// ends. A process killed with statements running leaves their intents; the next start records
// each as outcome "unknown" exactly once: not one whose record was journaled, not one twice.
TEST(AuditTrail, IntentsOfAKilledProcessBecomeRecordsOnce) {
  TempDir d;
  const std::string db = d.file("a.db");
  in_killed_child([&] {
    auto t = Trail::open(options(d), sqlite_sinks(db));
    if (!t || !(*t)->intents()) ::_exit(2);
    (*t)->flush();  // the Start record (queued, not acknowledged) first
    // Statement 1 ends (its record is journaled, its intent freed); 2 and 3 are still running.
    std::vector<Event> done;
    for (std::uint64_t n = 1; n <= 3; ++n) {
      auto e = testing::text_statement(n);
      if (!(*t)->intend(e)) ::_exit(3);
      if (n == 1) {
        e.outcome = "ok";
        e.rows = 1;
        done.push_back(std::move(e));
      }
    }
    if ((*t)->stats().intents_open != 3) ::_exit(4);
    if (!(*t)->write_now(std::move(done))) ::_exit(5);
    if ((*t)->stats().intents_open != 2) ::_exit(6);
    // A statement too large for a slot gets none: the caller records it before it runs.
    auto large = testing::text_statement(4, std::string(8000, 'y'));
    if ((*t)->intend(large) || large.intent || large.draft) ::_exit(7);
    ::kill(::getpid(), SIGKILL);
  });
  for (int start = 0; start < 2; ++start) {  // a second start finds nothing left to record
    auto t = Trail::open(options(d), sqlite_sinks(db));
    ASSERT_TRUE(t.has_value()) << t.error().message;
    EXPECT_EQ((*t)->stats().intents_recovered, start == 0 ? 2u : 0u);
    EXPECT_EQ((*t)->stats().intents_open, 0u);
    (*t)->close();
  }
  // start, statement 1, the two unfinished, start, stop, start, stop
  EXPECT_EQ(chained_records(db), 8u);
  auto c = store::SqliteDb::open(testing::as_rows(db), store::SqliteDb::Mode::ReadOnly);
  auto st = c->prepare("SELECT statement, outcome, rows, text FROM audit_records WHERE type = 'statement' ORDER BY statement");
  std::vector<std::tuple<std::int64_t, std::string, std::int64_t>> got;
  while (*st->step()) {
    got.emplace_back(st->column_int(0), std::string(st->column_text(1)), st->column_int(2));
    EXPECT_EQ(st->column_text(3), "SELECT " + std::to_string(st->column_int(0)));  // the statement's own text
  }
  EXPECT_EQ(got, (std::vector<std::tuple<std::int64_t, std::string, std::int64_t>>{
                     {1, "ok", 1}, {2, "unknown", -1}, {3, "unknown", -1}}));
  // The unfinished ones say why, and the chain verifies.
  auto b = c->prepare("SELECT body FROM audit_records WHERE statement = 2");
  ASSERT_TRUE(b.has_value() && *b->step());
  EXPECT_NE(std::string(b->column_text(0)).find("the proxy stopped before this statement ended"), std::string::npos);
}

// What a start reads from the journal: each file up to its end mark, and never a line that is
// older than the one before it (left over from before the file was emptied, when a write ended
// before its end mark moved). Here the files hold records 1-3 and 4-5, each followed by such
// leftovers; exactly 1-5 are stored, chained, before the new Start record.
TEST(AuditTrail, JournalReplayStopsAtTheEndMarkAndAtLeftoverLines) {
  TempDir d;
  std::filesystem::create_directories(d.file("spool"));
  ChainHead head;
  std::vector<std::string> lines;
  for (std::uint64_t i = 1; i <= 5; ++i) lines.push_back(record_line(seal(statement(i), head, SealOptions{"n1"})));
  std::ofstream(d.file("spool/journal.0"), std::ios::binary) << lines[0] << lines[1] << lines[2] << '\0' << lines[3];
  std::ofstream(d.file("spool/journal.1"), std::ios::binary) << lines[3] << lines[4] << lines[1] << lines[2];
  const std::string db = d.file("a.db");
  {
    std::vector<std::unique_ptr<AuditSink>> sinks;
    sinks.push_back(*open_sqlite_sink(db, false));
    auto t = Trail::open(options(d), std::move(sinks));
    ASSERT_TRUE(t.has_value()) << t.error().message;
    (*t)->close();
  }
  EXPECT_EQ(chained_records(db), 7u);  // 1-5, start, stop
}

// A store that outgrew audit.retention while the proxy was down is trimmed when the trail opens
// (right after its Start record), not only an hour later; the chain verifies from its anchor.
TEST(AuditTrail, RetentionRunsAtStartAfterTheStartRecord) {
  TempDir d;
  const std::string db = d.file("a.db");
  {
    std::vector<std::unique_ptr<AuditSink>> sinks;
    sinks.push_back(*open_sqlite_sink(db, false, SqliteLayout::Rows));  // record by record (blocks: below)
    auto t = Trail::open(options(d), std::move(sinks));
    ASSERT_TRUE(t.has_value());
    for (int i = 1; i <= 100; ++i) (*t)->submit(statement(i));
    (*t)->close();  // 1 start, 2..101 statements, 102 stop
  }
  {
    std::vector<std::unique_ptr<AuditSink>> sinks;
    sinks.push_back(*open_sqlite_sink(db, false));
    auto o = options(d);
    o.retention_max_records = 10;
    auto t = Trail::open(std::move(o), std::move(sinks));
    ASSERT_TRUE(t.has_value());
    for (int i = 0; i < 500 && (*t)->stats().retentions == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_EQ((*t)->stats().retentions, 1u);
    (*t)->flush();
    (*t)->close();
  }
  auto c = store::SqliteDb::open(testing::as_rows(db), store::SqliteDb::Mode::ReadOnly);
  auto st = c->prepare("SELECT seq, type FROM audit_records ORDER BY seq");
  std::vector<std::pair<std::int64_t, std::string>> rows;
  while (*st->step()) rows.emplace_back(st->column_int(0), std::string(st->column_text(1)));
  ASSERT_EQ(rows.size(), 12u);  // 94..103 kept (103: the new start), then retention and stop
  EXPECT_EQ(rows.front().first, 94);
  EXPECT_EQ(rows[9], (std::pair<std::int64_t, std::string>{103, "start"}));
  EXPECT_EQ(rows[10], (std::pair<std::int64_t, std::string>{104, "retention"}));
  EXPECT_EQ(rows[11], (std::pair<std::int64_t, std::string>{105, "stop"}));
  auto reader = AuditReader::open(db);
  ASSERT_TRUE(reader.has_value());
  auto rep = verify_chain(**reader, "n1", VerifyOptions{});
  ASSERT_TRUE(rep.has_value());
  EXPECT_FALSE(rep->problem) << rep->problem->message;
  EXPECT_EQ(rep->first_seq, 94u);
}

// A store of blocks is pruned a whole block at a time: it keeps at least the records retention
// asks for and less than one block more, and verifies from the Retention record's anchor.
TEST(AuditTrail, RetentionPrunesWholeBlocks) {
  TempDir d;
  const std::string db = d.file("a.db");
  {
    std::vector<std::unique_ptr<AuditSink>> sinks;
    sinks.push_back(*open_sqlite_sink(db, false));
    auto t = Trail::open(options(d), std::move(sinks));
    ASSERT_TRUE(t.has_value());
    for (int i = 1; i <= 2000; ++i) {
      (*t)->submit(statement(i));
      if (i % 100 == 0) (*t)->flush();
    }
    (*t)->close();
  }
  EXPECT_GE(std::stoi(testing::column(db, "SELECT count(*) FROM audit_blocks")), 4);  // at most 512 records each
  {
    std::vector<std::unique_ptr<AuditSink>> sinks;
    sinks.push_back(*open_sqlite_sink(db, false));
    auto o = options(d);
    o.retention_max_records = 300;
    auto t = Trail::open(std::move(o), std::move(sinks));
    ASSERT_TRUE(t.has_value());
    for (int i = 0; i < 500 && (*t)->stats().retentions == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_EQ((*t)->stats().retentions, 1u);
    (*t)->flush();
    (*t)->close();
  }
  const int kept = std::stoi(testing::column(testing::as_rows(db), "SELECT count(*) FROM audit_records"));
  EXPECT_GE(kept, 300 + 3);  // and the new start, retention and stop records
  EXPECT_LT(kept, 300 + 3 + 512);
  const auto ret = nlohmann::json::parse(testing::column(testing::as_rows(db), "SELECT body FROM audit_records WHERE type = 'retention'"));
  const std::string through = ret["fields"]["pruned_through"];
  EXPECT_EQ(testing::column(db, "SELECT min(first_seq) FROM audit_blocks"), std::to_string(std::stoll(through) + 1));
  EXPECT_EQ(testing::column(testing::as_rows(db), "SELECT prev FROM audit_records WHERE seq = " + std::to_string(std::stoll(through) + 1)),
            std::string(ret["fields"]["anchor"]));
  auto reader = AuditReader::open(db);
  ASSERT_TRUE(reader.has_value());
  auto rep = verify_chain(**reader, "n1", VerifyOptions{});
  ASSERT_TRUE(rep.has_value());
  EXPECT_FALSE(rep->problem) << rep->problem->message;
}

// Under steady load the sinks always lag a little behind the newest record; the journal must
// still be emptied as they catch up, not grow until audit.spool.max_size refuses everything.
TEST(AuditTrail, JournalStaysSmallUnderSteadyLoad) {
  TempDir d;
  std::vector<std::unique_ptr<AuditSink>> sinks;
  sinks.push_back(*open_sqlite_sink(d.file("a.db"), false));
  auto o = options(d);
  o.spool_max_size = 64u << 20;
  auto t = Trail::open(std::move(o), std::move(sinks));
  ASSERT_TRUE(t.has_value());
  std::uint64_t max_journal = 0;
  int refused = 0;
  const std::string text = "SELECT " + std::string(400, 'x');
  for (int i = 1; i <= 60'000; ++i) {
    std::vector<Event> one;
    one.push_back(testing::text_statement(std::uint64_t(i), text));
    if (!(*t)->write_now(std::move(one))) ++refused;
    if (i % 1000 == 0) {
      max_journal = std::max(max_journal, (*t)->stats().journal_bytes);
      // A store that keeps up, but never quite catches up with the newest records.
      for (int k = 0; k < 2000 && (*t)->stats().stored + 1500 < (*t)->stats().head_seq; ++k)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  EXPECT_EQ(refused, 0);
  EXPECT_GT((*t)->stats().journaled * 500, 28ull << 20);  // more than the bound below went through
  EXPECT_LT(max_journal, 12ull << 20) << "the journal was not emptied while the store kept up";
  (*t)->close();
}

// A sink that can be made to fail, in front of a real one: while `failing`, every write fails, or
// with `every` = n, every n-th.
class GatedSink final : public AuditSink {
 public:
  GatedSink(std::unique_ptr<AuditSink> inner, std::shared_ptr<std::atomic<bool>> failing, int every = 1)
      : inner_(std::move(inner)), failing_(std::move(failing)), every_(every) {}
  std::string_view name() const override { return inner_->name(); }
  bool needs_index() const override { return inner_->needs_index(); }
  Result<std::optional<ChainHead>> head(std::string_view node) override { return inner_->head(node); }
  Result<void> write(std::span<const Record> batch) override {
    if (failing_->load() && ++calls_ % every_ == 0) return fail("08006", "the store is down (test)");
    return inner_->write(batch);
  }
  Result<std::optional<Pruned>> prune(std::string_view node, std::optional<std::chrono::system_clock::time_point> before,
                                      std::uint64_t keep) override {
    return inner_->prune(node, before, keep);
  }

 private:
  std::unique_ptr<AuditSink> inner_;
  std::shared_ptr<std::atomic<bool>> failing_;
  int every_;
  int calls_ = 0;
};

// A store that fell further behind than memory holds (the newest ~16 MiB of records) reads the
// gap back from the journal while the load goes on, and every record reaches it once, in order.
TEST(AuditTrail, AStoreThatFellBehindCatchesUpWhileTheLoadGoesOn) {
  TempDir d;
  const std::string db = d.file("a.db");
  auto failing = std::make_shared<std::atomic<bool>>(true);
  std::vector<std::unique_ptr<AuditSink>> sinks;
  sinks.push_back(std::make_unique<GatedSink>(*open_sqlite_sink(db, false), failing));
  auto o = options(d);
  o.retry_interval = std::chrono::milliseconds(20);
  o.flush_interval = std::chrono::milliseconds(5);
  auto t = Trail::open(std::move(o), std::move(sinks));
  ASSERT_TRUE(t.has_value()) << t.error().message;
  const std::string text = "SELECT " + std::string(2000, 'x');  // ~4.5k records fill memory's 16 MiB
  std::uint64_t n = 0;
  auto write = [&](int count) {
    for (int i = 0; i < count; ++i) {
      std::vector<Event> one;
      one.push_back(testing::text_statement(++n, text));
      (void)(*t)->write_now(std::move(one));  // journaled; refused while the store is down
    }
  };
  write(12'000);  // the store is down: 12,000 records wait, more than memory holds
  failing->store(false);
  write(12'000);  // it is back while the load goes on
  for (int i = 0; i < 1000 && (*t)->stats().stored < (*t)->stats().head_seq; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const auto st = (*t)->stats();
  EXPECT_EQ(st.journaled, n + 1);
  EXPECT_EQ(st.stored, st.head_seq);
  EXPECT_GT(st.journal_reads, 0u);  // the oldest of the 12,000 came from the journal
  (*t)->close();
  EXPECT_EQ(chained_records(db), n + 2);  // start, the statements, stop
}

// A sink that fails every third write: a store catching up from the journal in pieces goes on
// where it stopped, and what failed is read again, in order.
TEST(AuditTrail, AStoreThatFailsNowAndThenWhileCatchingUpStoresEveryRecordInOrder) {
  TempDir d;
  const std::string db = d.file("a.db");
  std::vector<std::unique_ptr<AuditSink>> sinks;
  auto flaky = std::make_shared<std::atomic<bool>>(true);
  sinks.push_back(std::make_unique<GatedSink>(*open_sqlite_sink(db, false), flaky, 3));
  auto o = options(d);
  o.retry_interval = std::chrono::milliseconds(5);
  o.flush_interval = std::chrono::milliseconds(2);
  auto t = Trail::open(std::move(o), std::move(sinks));
  ASSERT_TRUE(t.has_value()) << t.error().message;
  const std::string text = "SELECT " + std::string(1500, 'y');
  std::uint64_t n = 0;
  for (int round = 0; round < 30; ++round) {
    for (int i = 0; i < 1000; ++i) {
      std::vector<Event> one;
      one.push_back(testing::text_statement(++n, text));
      (void)(*t)->write_now(std::move(one));  // journaled; refused while the store is failing
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
  }
  for (int i = 0; i < 1000 && (*t)->stats().stored < (*t)->stats().head_seq; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ((*t)->stats().stored, (*t)->stats().head_seq);
  flaky->store(false);  // the Stop record at close is stored too
  (*t)->close();
  EXPECT_EQ(chained_records(db), n + 2);
}

// Found by adversarial testing: while the journal was full, the records of statements that had
// already run were dropped (29,960 outcomes missing from the store) and their intents stayed
// taken until a restart. They now wait in memory and are journaled, in order, once the journal
// has room again, also when no session writes anything more.
TEST(AuditTrail, OutcomesRefusedByAFullJournalAreKeptAndWrittenLater) {
  TempDir d;
  const std::string db = d.file("a.db");
  auto failing = std::make_shared<std::atomic<bool>>(false);
  std::vector<std::unique_ptr<AuditSink>> sinks;
  sinks.push_back(std::make_unique<GatedSink>(*open_sqlite_sink(db, false), failing));
  auto o = options(d);
  o.spool_max_size = 1u << 20;
  o.retry_interval = std::chrono::milliseconds(50);
  o.flush_interval = std::chrono::milliseconds(5);
  auto t = Trail::open(std::move(o), std::move(sinks));
  ASSERT_TRUE(t.has_value()) << t.error().message;
  (*t)->flush();
  // Three statements start (intents taken), then the store goes down and the journal fills up.
  std::vector<Event> running;
  for (std::uint64_t n = 1; n <= 3; ++n) {
    auto e = testing::text_statement(n);
    ASSERT_TRUE((*t)->intend(e));
    running.push_back(std::move(e));
  }
  failing->store(true);
  const std::string text = "SELECT " + std::string(2000, 'x');
  std::uint64_t n = 100;
  for (; n < 5000; ++n) {
    std::vector<Event> one;
    one.push_back(testing::text_statement(n, text));
    auto r = (*t)->write_now(std::move(one));  // kept in the journal while the store is down...
    if (!r && r.error().message.find("full") != std::string::npos) break;  // ...until it is full: refused
  }
  ASSERT_LT(n, 5000u) << "the journal never filled";
  for (int k = 0; k < 5000; ++k) {  // to the last byte: the small records of the three do not fit either
    std::vector<Event> one;
    one.push_back(testing::text_statement(++n));
    auto r = (*t)->write_now(std::move(one));
    if (!r && r.error().message.find("full") != std::string::npos) break;
  }
  // The three end now: the journal cannot take their records, which are kept.
  for (auto& e : running) {
    e.outcome = "ok";
    e.rows = 1;
  }
  EXPECT_FALSE((*t)->write_now(std::move(running), true));
  EXPECT_EQ((*t)->stats().intents_open, 3u);
  // The store comes back; nothing else is written, and the kept records still get through.
  failing->store(false);
  for (int i = 0; i < 400 && (*t)->stats().intents_open > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  EXPECT_EQ((*t)->stats().intents_open, 0u);
  (*t)->close();
  chained_records(db);
  auto c = store::SqliteDb::open(testing::as_rows(db), store::SqliteDb::Mode::ReadOnly);
  EXPECT_EQ(c->query_int("SELECT count(*) FROM audit_records WHERE type = 'statement' AND statement <= 3 AND outcome = 'ok'")
                ->value_or(-1),
            3);
}

// A masked binary value gives its own size, not its placeholder's; a long value that is kept is
// cut with its size said (found by adversarial testing: "<masked 16 bytes>" for every integer,
// and a silent cut at 1,024 characters).
TEST(AuditTrail, MaskedBinaryParametersGiveTheirSizeAndCutValuesSaySo) {
  auto e = statement(1);
  e.analysis.reset();
  e.params = {std::string("<binary 8 bytes>"), std::string("<binary 1000 bytes>")};
  e.params_binary = true;
  ChainHead head;
  auto j = nlohmann::json::parse(seal(e, head, SealOptions{"n1"}).body);
  EXPECT_EQ(j["sql"]["params"], nlohmann::json::parse(R"(["<masked 8 bytes>", "<masked 1000 bytes>"])"));
  e = statement(2);
  e.params = {std::string(3000, 'x')};
  SealOptions full{"n1"};
  full.params = SealOptions::Params::Full;
  j = nlohmann::json::parse(seal(e, head, full).body);
  EXPECT_EQ(j["sql"]["params"][0], std::string(1024, 'x') + "... (3000 bytes)");
}

// Parameters of a statement the proxy could not read (a portal of a SQL PREPAREd statement, a
// refused Parse) may be sensitive values: they are masked, as for a classified column (found by
// adversarial testing: an SSN reached the trail as it was sent).
TEST(AuditTrail, ParametersOfAnUnreadStatementAreMasked) {
  auto e = statement(1);
  e.analysis.reset();
  e.text = "<portal \"\" of a statement prepared with SQL PREPARE>";
  e.params = {std::string("123-45-6789"), std::nullopt};
  ChainHead head;
  const auto r = seal(e, head, SealOptions{"n1"});
  EXPECT_EQ(r.body.find("123-45-6789"), std::string::npos) << r.body;
  const auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["sql"]["params"], nlohmann::json::parse(R"(["<masked 11 bytes>", null])")) << r.body;
  SealOptions full{"n1"};
  full.params = SealOptions::Params::Full;  // the operator asked for every value
  EXPECT_NE(seal(e, head, full).body.find("123-45-6789"), std::string::npos);
}

TEST(AuditTrail, SealedIndexComesFromTheBody) {
  ChainHead h;
  auto r = seal(statement(3), h, SealOptions{"n1"});
  EXPECT_EQ(r.seq, 1u);
  EXPECT_EQ(r.index.subject, "alice");
  EXPECT_EQ(r.index.groups, ",dba,eng,");
  EXPECT_EQ(r.index.text, "SELECT 3");
  EXPECT_EQ(r.index.type, "statement");
  EXPECT_EQ(r.index.time, "2023-11-14T22:13:23.000000Z");
  EXPECT_EQ(h.hash, r.hash);
  EXPECT_EQ(r.hash, chain_hash(std::string(kGenesisHash), r.body));
}

std::vector<Record> sealed_one(int i, ChainHead& head) { return {seal(statement(i), head, SealOptions{"n"})}; }

int count_lines(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) ++n;
  return n;
}

TEST(AuditTrail, JsonLinesSinkFollowsItsPathAfterRotation) {
  // logrotate moves the file away: the next records go to a new file at the path (they went into
  // the moved file before, where a shipper following the path never saw them).
  TempDir d;
  const std::string file = d.file("a.jsonl");
  auto sink = *open_jsonl_sink(file, false);
  ChainHead head;
  ASSERT_TRUE(sink->write(sealed_one(1, head)));
  std::filesystem::rename(file, file + ".1");
  ASSERT_TRUE(sink->write(sealed_one(2, head)));
  EXPECT_EQ(count_lines(file + ".1"), 1);
  EXPECT_EQ(count_lines(file), 1);
}

TEST(AuditTrail, SqliteSinkFailsWhenItsFileIsDeleted) {
  TempDir d;
  const std::string file = d.file("a.db");
  auto sink = *open_sqlite_sink(file, false);
  ChainHead head;
  ASSERT_TRUE(sink->write(sealed_one(1, head)));
  std::filesystem::remove(file);
  auto r = sink->write(sealed_one(2, head));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("was deleted"), std::string::npos) << r.error().message;
  EXPECT_EQ(r.error().sqlstate, "58030");
}

TEST(AuditTrail, JsonLinesSinkKeepsOneLinePerRecord) {
  TempDir d;
  const std::string file = d.file("a.jsonl");
  std::vector<std::unique_ptr<AuditSink>> sinks;
  sinks.push_back(*open_jsonl_sink(file, false));
  auto o = options(d);
  o.retry_interval = std::chrono::milliseconds(0);
  auto t = Trail::open(std::move(o), std::move(sinks));
  ASSERT_TRUE(t.has_value());
  (*t)->flush();
  for (int i = 1; i <= 10; ++i) (*t)->submit(statement(i));
  (*t)->close();
  EXPECT_EQ(count_lines(file), 12);
}

}  // namespace
}  // namespace gh::audit

#include <nlohmann/json.hpp>

namespace gh::audit {
namespace {

// The body is canonical (what a sorted re-encoding gives) and the search columns are exactly
// what a verifier derives from the body, for awkward inputs too.
TEST(AuditRecord, BodyIsCanonicalAndIndexMatchesTheBody) {
  std::vector<Event> events;
  auto e = statement(1);
  e.text = std::string("quote\" backslash\\ tab\t nl\n ctl\x01 del\x7f utf8 \xc3\xa9 bad \xff\xfe cut \xe2\x82");
  events.push_back(e);
  auto longer = statement(2);
  longer.text = std::string(300, 'x') + "\xc3\xa9" + std::string(300, 'y');
  events.push_back(longer);
  Event res;
  res.type = EventType::Result;
  res.time = e.time;
  res.session = e.session;
  res.statement = 1;
  res.outcome = "error";
  res.sqlstate = "42P01";
  res.message = "relation \"nope\" does not exist";
  res.rows = 0;
  res.duration_us = 12;
  events.push_back(res);
  Event admin;
  admin.type = EventType::Reload;
  admin.time = e.time;
  admin.fields = {{"zeta", "1"}, {"alpha", "2"}, {"file", "/etc/gh.yaml"}};
  events.push_back(admin);
  auto refused = statement(3);
  refused.outcome = "refused";
  policy::Decision d;
  d.action = policy::Action::Deny;
  d.rule = "guardrail.unbounded_write";
  d.reason = "DELETE without WHERE";
  d.matched_rules = {"guardrail.unbounded_write"};
  d.would_have = {policy::DryRun{"watch", policy::Action::Review, "why"}};
  refused.decision = std::make_shared<const policy::Decision>(d);
  refused.params = {std::string("a"), std::nullopt};
  events.push_back(refused);

  ChainHead head;
  SealOptions o{"n1"};
  o.max_text = 256;
  for (const auto& ev : events) {
    const auto r = seal(ev, head, o);
    const auto parsed = nlohmann::json::parse(r.body);
    EXPECT_EQ(parsed.dump(), r.body);
    auto idx = index_of(r.body);
    ASSERT_TRUE(idx.has_value());
    const auto& a = *idx;
    const auto& b = r.index;
    EXPECT_EQ(a.time, b.time);
    EXPECT_EQ(a.time_us, b.time_us);
    EXPECT_EQ(a.type, b.type);
    EXPECT_EQ(a.node, b.node);
    EXPECT_EQ(a.session, b.session);
    EXPECT_EQ(a.statement, b.statement);
    EXPECT_EQ(a.subject, b.subject);
    EXPECT_EQ(a.email, b.email);
    EXPECT_EQ(a.groups, b.groups);
    EXPECT_EQ(a.kind, b.kind);
    EXPECT_EQ(a.client, b.client);
    EXPECT_EQ(a.target, b.target);
    EXPECT_EQ(a.environment, b.environment);
    EXPECT_EQ(a.database, b.database);
    EXPECT_EQ(a.kinds, b.kinds);
    EXPECT_EQ(a.relations, b.relations);
    EXPECT_EQ(a.tags, b.tags);
    EXPECT_EQ(a.decision, b.decision);
    EXPECT_EQ(a.rule, b.rule);
    EXPECT_EQ(a.outcome, b.outcome);
    EXPECT_EQ(a.sqlstate, b.sqlstate);
    EXPECT_EQ(a.rows, b.rows);
    EXPECT_EQ(a.duration_us, b.duration_us);
    EXPECT_EQ(a.text, b.text);
    EXPECT_TRUE(a == b) << r.body;
  }
  const auto cut = seal(longer, head, o);
  const auto j = nlohmann::json::parse(cut.body);
  EXPECT_EQ(j["sql"]["text_length"], 602);
  EXPECT_LE(j["sql"]["text"].get<std::string>().size(), 256u);
}

}  // namespace
}  // namespace gh::audit

namespace gh::audit {
namespace {

// A statement's record sealed from its draft, with the outcome spliced in, is byte for byte the
// record encoding the finished event gives, for every combination of outcome fields.
TEST(AuditRecord, DraftSplicedWithTheOutcomeEqualsTheWholeEncoding) {
  SealOptions o{"n1"};
  o.max_text = 64;
  auto base = testing::text_statement(5, "SELECT 'quote\" é'");
  auto analysed = base;
  analysed.params = {std::string("p\n1"), std::nullopt};
  policy::Decision d;
  d.action = policy::Action::Allow;
  d.reason = "no rule matched";
  analysed.decision = std::make_shared<const policy::Decision>(d);
  std::vector<std::function<void(Event&)>> outcomes = {
      [](Event& e) { e.outcome = "ok"; e.rows = 1; e.duration_us = 85; },
      [](Event& e) { e.outcome = "ok"; },
      [](Event& e) { e.outcome = "error"; e.sqlstate = "22012"; e.message = "division by zero"; e.rows = 0; e.duration_us = 3; },
      [](Event& e) { e.outcome = "error"; e.sqlstate = "08006"; e.message = std::string(200, 'm') + "\xff"; },  // cut, kept with its sha256
      [](Event& e) { e.outcome = "cancelled"; e.sqlstate = "57014"; e.duration_us = 0; },
      [](Event& e) { e.outcome = "not_run"; e.message = "not run: an earlier message of its batch failed"; },
      // The result columns masking masked, known once the rows came (sorted between identity and message).
      [](Event& e) { e.outcome = "ok"; e.rows = 2; e.masked = {"public.customers.email (mask-pii)", "column 3 (origin unknown)"}; },
      [](Event& e) { e.outcome = "error"; e.sqlstate = "22012"; e.message = "m"; e.masked = {"a.b.c (\"r\")"}; },
  };
  // The Result record of a statement recorded before it ran (too large for an intent slot).
  Event result;
  result.type = EventType::Result;
  result.time = base.time;
  result.session = base.session;
  result.statement = 5;
  for (const auto* start : {&base, &analysed, &result}) {
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
      auto dr = draft(*start, o);
      ASSERT_TRUE(dr) << i;
      // Its intent body is the record-to-be: canonical, and says which statement it is.
      const auto intent = nlohmann::json::parse(draft_body(*dr));
      EXPECT_EQ(intent.dump(), draft_body(*dr));
      EXPECT_EQ(intent["statement"], 5);
      Event done = *start;
      outcomes[i](done);
      ChainHead h1{41, std::string(64, 'a')}, h2 = h1;
      const auto whole = seal(done, h1, o);
      const auto spliced = seal_draft(*dr, done, h2, o);
      EXPECT_EQ(spliced.body, whole.body) << i;
      EXPECT_EQ(nlohmann::json::parse(whole.body).dump(), whole.body) << i;  // canonical: keys in order
      EXPECT_EQ(spliced.hash, whole.hash) << i;
      EXPECT_EQ(spliced.index, whole.index) << i;
      const auto from_body = index_of(spliced.body);  // what verify compares the columns with
      ASSERT_TRUE(from_body.has_value());
      EXPECT_EQ(*from_body, spliced.index) << i << " " << spliced.body;
      EXPECT_EQ(h1.hash, h2.hash);
      done.draft = dr;  // seal() takes the draft when the event has one
      ChainHead h3{41, std::string(64, 'a')};
      EXPECT_EQ(seal(done, h3, o).body, whole.body) << i;
      // Without the search columns (no sink reads them: SQLite blocks, JSON lines) the record is
      // the same bytes, and keeps what a store of blocks reads.
      SealOptions lean = o;
      lean.index = false;
      auto lean_draft = draft(*start, lean);
      ASSERT_TRUE(lean_draft);
      EXPECT_EQ(draft_body(*lean_draft), draft_body(*dr)) << i;
      ChainHead h4{41, std::string(64, 'a')}, h5 = h4;
      const auto lean_whole = seal(done, h4, lean);
      const auto lean_spliced = seal_draft(*lean_draft, done, h5, lean);
      EXPECT_EQ(lean_whole.body, whole.body) << i;
      EXPECT_EQ(lean_spliced.body, whole.body) << i;
      EXPECT_EQ(lean_spliced.hash, whole.hash) << i;
      for (const auto* r : {&lean_whole, &lean_spliced}) {
        EXPECT_EQ(r->index.time_us, whole.index.time_us) << i;
        EXPECT_EQ(r->index.node, whole.index.node) << i;
        EXPECT_EQ(r->index.type, whole.index.type) << i;
        EXPECT_TRUE(r->index.subject.empty() && r->index.text.empty() && r->index.target.empty()) << i;
      }
    }
  }
  auto refused = base;
  refused.outcome = "refused";
  EXPECT_FALSE(draft(refused, o));  // already ended: sealed the ordinary way
}

}  // namespace
}  // namespace gh::audit

namespace gh::audit {
namespace {

// A text that is not UTF-8 (a client_encoding such as LATIN1) keeps the SHA-256 of its bytes as
// sent, so that statements that differ only in those bytes stay told apart (found by adversarial
// testing: 'Müller' and 'Mäller' in LATIN1 were recorded alike).
TEST(AuditRecord, TextThatIsNotUtf8KeepsTheSha256OfItsBytes) {
  ChainHead head;
  auto a = statement(1), b = statement(2), ok = statement(3);
  a.text = "DELETE FROM t WHERE n = 'M\xfcller'";
  b.text = "DELETE FROM t WHERE n = 'M\xe4ller'";
  ok.text = "DELETE FROM t WHERE n = 'M\xc3\xbcller'";
  const auto ja = nlohmann::json::parse(seal(a, head, SealOptions{"n1"}).body);
  const auto jb = nlohmann::json::parse(seal(b, head, SealOptions{"n1"}).body);
  const auto jok = nlohmann::json::parse(seal(ok, head, SealOptions{"n1"}).body);
  EXPECT_EQ(ja["sql"]["text"], jb["sql"]["text"]);  // both shown with U+FFFD
  EXPECT_EQ(ja["sql"]["text_sha256"], sha256_hex(a.text));
  EXPECT_NE(ja["sql"]["text_sha256"], jb["sql"]["text_sha256"]);
  EXPECT_FALSE(jok["sql"].contains("text_sha256"));  // valid UTF-8: the text says it all
}

}  // namespace
}  // namespace gh::audit

namespace gh::audit {
namespace {

// A text of very many statements: the first 1,000 are listed, the rest summed up in one last
// element whose kinds and relations still reach the search columns (found by adversarial testing:
// a 4 MB text of 455,555 statements made a 43 MB record).
TEST(AuditRecord, VeryManyStatementsAreSummedUp) {
  std::string sql;
  for (int i = 0; i < 1200; ++i) sql += "SELECT 1;";
  sql += "DELETE FROM far_away WHERE id = 1";
  auto e = statement(1);
  e.text.clear();
  e.analysis = std::make_shared<sql::Analysis>(sql::analyze_uncached(sql));
  ASSERT_EQ(e.analysis->statements.size(), 1201u);
  ChainHead head;
  const Record r = seal(e, head, SealOptions{"n1"});
  const auto j = nlohmann::json::parse(r.body);
  const auto& st = j["sql"]["statements"];
  ASSERT_EQ(st.size(), 1001u);
  EXPECT_EQ(st.back()["omitted"], 201);
  EXPECT_NE(r.index.relations.find(",far_away,"), std::string::npos) << r.index.relations;
  EXPECT_NE(r.index.kinds.find(",delete,"), std::string::npos) << r.index.kinds;
  EXPECT_LT(r.body.size(), 200u * 1024);
  auto from_body = index_of(r.body);
  ASSERT_TRUE(from_body.has_value());
  EXPECT_EQ(*from_body, r.index);  // what a verifier derives from the body
}

}  // namespace
}  // namespace gh::audit

namespace gh::audit {
namespace {

// The parts of a record that repeat (a session's identity, a prepared statement's analysis and
// decision) are encoded once per thread and reused: what they give is byte for byte what the
// same objects give freshly, a different policy over the same analysis gives its own tags, and
// many statements taking turns in the cache's slots each keep their own parts.
TEST(AuditRecord, RepeatedPartsEncodedOnceEqualFreshOnes) {
  static sql::Analyzer analyzer;
  auto make_policy = [](const char* column, const char* tag) {
    policy::PolicySpec spec;
    policy::ClassificationEntry c;
    c.columns.push_back(*policy::NamePattern::parse(column, 1, 3, "column"));
    c.tags = {tag};
    spec.classification.push_back(c);
    auto p = policy::Policy::build(std::move(spec));
    EXPECT_TRUE(p.has_value());
    return std::make_shared<const policy::Policy>(std::move(*p));
  };
  const auto pii = make_policy("customers.email", "pii");
  const auto fin = make_policy("customers.card", "financial");
  SealOptions o{"n1"};
  auto fresh_copy = [](const Event& e) {  // the same content in new objects: nothing cached
    Event c = e;
    c.session = std::make_shared<SessionContext>(*e.session);
    c.analysis = std::make_shared<const sql::Analysis>(*e.analysis);
    c.policy = std::make_shared<const policy::Policy>(*e.policy);
    if (e.decision) c.decision = std::make_shared<const policy::Decision>(*e.decision);
    return c;
  };
  std::vector<Event> events;
  for (int i = 0; i < 100; ++i) {
    auto e = testing::text_statement(std::uint64_t(i + 1), "");
    e.text.clear();
    e.analysis = analyzer.analyze("SELECT email, card FROM customers WHERE id = " + std::to_string(i % 40));
    e.policy = (i / 40) % 2 ? pii : fin;  // the same analysis (i % 40) under both policies
    policy::Decision d;
    d.action = policy::Action::Allow;
    d.reason = "reason " + std::to_string(i % 7);
    e.decision = std::make_shared<const policy::Decision>(d);
    e.params = {std::string("secret-value")};
    events.push_back(std::move(e));
  }
  for (int round = 0; round < 3; ++round) {
    for (const auto& e : events) {
      ChainHead h1, h2;
      const auto cached = seal(e, h1, o);
      const auto fresh = seal(fresh_copy(e), h2, o);
      ASSERT_EQ(cached.body, fresh.body);
      EXPECT_EQ(cached.index, fresh.index);
      const auto j = nlohmann::json::parse(cached.body);
      EXPECT_EQ(j["sql"]["tags"][0], e.policy == pii ? "pii" : "financial");
      EXPECT_EQ(j["sql"]["params"][0], "<masked 12 bytes>");  // classified columns: values not kept
      EXPECT_EQ(j["identity"]["subject"], "alice");
    }
  }
  // A large statement is not kept by the cache once its event is gone (a 3.5 MB text held by each
  // slot kept a gigabyte alive); a small one is, for the next execution.
  for (const std::size_t size : {std::size_t(100), std::size_t(100000)}) {
    auto big = events[0];
    big.analysis = analyzer.analyze("SELECT email FROM customers WHERE note = '" + std::string(size, 'x') + "'");
    big.decision = nullptr;
    std::weak_ptr<const sql::Analysis> held = big.analysis;
    ChainHead h;
    (void)seal(big, h, o);
    big.analysis.reset();
    analyzer.clear();
    EXPECT_EQ(held.expired(), size > 4096) << size;
  }
  // One analysis under many policies (more than the cache has slots, so some share one): each
  // record has its own policy's tags.
  std::vector<std::shared_ptr<const policy::Policy>> policies;
  for (int i = 0; i < 96; ++i) policies.push_back(i % 2 ? make_policy("customers.email", "pii") : make_policy("customers.card", "financial"));
  auto e = events[0];
  for (int round = 0; round < 2; ++round)
    for (std::size_t i = 0; i < policies.size(); ++i) {
      e.policy = policies[i];
      ChainHead h;
      const auto j = nlohmann::json::parse(seal(e, h, o).body);
      ASSERT_EQ(j["sql"]["tags"][0], i % 2 ? "pii" : "financial") << i;
    }
}

}  // namespace
}  // namespace gh::audit
