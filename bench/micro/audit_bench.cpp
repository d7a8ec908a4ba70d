// The audit trail's sustained rate into its embedded SQLite store: statement and result events
// as pgbench -S makes them, submitted in groups of 16 (as several sessions do at once), sealed
// (canonical JSON, SHA-256 chain) and committed in batches by the writer thread. Target:
// >= 50,000 records/s on a 2-core machine.
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <filesystem>
#include <thread>

#include "audit/trail.h"
#include "sql/analyzer.h"

namespace {

struct Sample {
  std::shared_ptr<const gh::sql::Analysis> analysis;
  std::shared_ptr<gh::audit::SessionContext> ctx = std::make_shared<gh::audit::SessionContext>();
  std::shared_ptr<const gh::policy::Decision> allow;
  Sample() {
    static gh::sql::Analyzer analyzer;
    analysis = analyzer.analyze("SELECT abalance FROM pgbench_accounts WHERE aid = $1;");
    ctx->session = 42;
    ctx->identity.subject = "bench";
    ctx->identity.email = "bench@example.com";
    ctx->identity.groups = {"bench", "engineering"};
    ctx->identity.method = "scram-sha-256";
    ctx->user = "bench";
    ctx->client_address = "127.0.0.1";
    ctx->target = "app";
    ctx->environment = "production";
    ctx->database = "postgres";
    gh::policy::Decision d;
    d.action = gh::policy::Action::Allow;
    d.reason = "SELECT on pgbench_accounts: no rule matched; the default action of target \"app\" is allow";
    allow = std::make_shared<const gh::policy::Decision>(std::move(d));
  }
  gh::audit::Event statement(std::uint64_t n) const {
    gh::audit::Event s;
    s.type = gh::audit::EventType::Statement;
    s.time = std::chrono::system_clock::now();
    s.session = ctx;
    s.statement = n;
    s.protocol = 'E';
    s.analysis = analysis;
    s.params = {std::string("123456")};
    s.decision = allow;  // shared, as the proxy does
    return s;
  }
};

// Sealing alone: canonical JSON, search columns, SHA-256 chain link.
void BM_AuditSeal(benchmark::State& state) {
  Sample sample;
  gh::audit::ChainHead head;
  const auto e = sample.statement(1);
  for (auto _ : state) benchmark::DoNotOptimize(gh::audit::seal(e, head, gh::audit::SealOptions{"bench"}));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AuditSeal);

// What a `required` statement costs its session's thread: the record-to-be before it runs
// (Trail::intend), then, when it ends, the record sealed from that draft with its outcome.
void BM_AuditDraft(benchmark::State& state) {
  Sample sample;
  const auto e = sample.statement(1);
  for (auto _ : state) benchmark::DoNotOptimize(gh::audit::draft(e, gh::audit::SealOptions{"bench"}));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AuditDraft);

void BM_AuditSealDraft(benchmark::State& state) {
  Sample sample;
  gh::audit::ChainHead head;
  auto e = sample.statement(1);
  const auto d = gh::audit::draft(e, gh::audit::SealOptions{"bench"});
  e.outcome = "ok";
  e.rows = 1;
  e.duration_us = 87;
  for (auto _ : state) benchmark::DoNotOptimize(gh::audit::seal_draft(*d, e, head, gh::audit::SealOptions{"bench"}));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AuditSealDraft);

// The SQLite sink alone: batches of 1,000 sealed records, one transaction each; arg 0: the blocks
// layout (the default), 1: a row per record.
void BM_AuditSqliteWrite(benchmark::State& state) {
  char tmpl[] = "/tmp/gh-audit-bench-XXXXXX";
  const std::filesystem::path dir = ::mkdtemp(tmpl);
  auto sink = std::move(*gh::audit::open_sqlite_sink(
      (dir / "audit.db").string(), false, state.range(0) ? gh::audit::SqliteLayout::Rows : gh::audit::SqliteLayout::Blocks));
  Sample sample;
  gh::audit::ChainHead head;
  std::vector<gh::audit::Record> batch;
  for (auto _ : state) {
    state.PauseTiming();
    batch.clear();
    for (int i = 0; i < 1000; ++i) batch.push_back(gh::audit::seal(sample.statement(i), head, gh::audit::SealOptions{"bench"}));
    state.ResumeTiming();
    if (!sink->write(batch)) state.SkipWithError("write failed");
  }
  state.SetItemsProcessed(state.iterations() * 1000);
  sink.reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_AuditSqliteWrite)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

void BM_AuditTrailSqlite(benchmark::State& state) {
  char tmpl[] = "/tmp/gh-audit-bench-XXXXXX";
  const std::filesystem::path dir = ::mkdtemp(tmpl);
  gh::audit::Trail::Options o;
  o.node = "bench";
  o.spool_dir = (dir / "spool").string();
  std::vector<std::unique_ptr<gh::audit::AuditSink>> sinks;
  sinks.push_back(*gh::audit::open_sqlite_sink((dir / "audit.db").string(), false));
  auto trail = std::move(*gh::audit::Trail::open(std::move(o), std::move(sinks)));

  const Sample sample;
  constexpr int kPerIteration = 10'000;
  constexpr int kGroup = 16;
  std::uint64_t n = 0;
  for (auto _ : state) {
    for (int i = 0; i < kPerIteration; i += kGroup) {
      std::vector<gh::audit::Event> group;
      group.reserve(kGroup);
      for (int k = 0; k < kGroup; k += 2) {
        group.push_back(sample.statement(++n));
        gh::audit::Event r;
        r.type = gh::audit::EventType::Result;
        r.time = std::chrono::system_clock::now();
        r.session = sample.ctx;
        r.statement = n;
        r.outcome = "ok";
        r.rows = 1;
        r.duration_us = 85;
        group.push_back(std::move(r));
      }
      trail->submit(std::move(group), {});
    }
    trail->flush();
    // Sustained means stored in SQLite, not only journaled: wait for the store thread too.
    while (trail->stats().stored < trail->stats().head_seq) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  state.SetItemsProcessed(state.iterations() * kPerIteration);
  const auto stats = trail->stats();
  state.counters["batches"] = double(stats.batches);
  state.counters["records_per_batch"] = stats.batches ? double(stats.journaled) / double(stats.batches) : 0;
  trail->close();
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_AuditTrailSqlite)->Unit(benchmark::kMillisecond)->MinTime(3.0)->UseRealTime();

}  // namespace
