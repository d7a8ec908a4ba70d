// The SQL analyzer: a cache hit (the common case, ORMs repeat their texts) and uncached
// analysis of typical statements. Targets: hit <= 2 us, uncached typical <= 60 us.
#include <benchmark/benchmark.h>

#include <string>

#include "sql/analyzer.h"

namespace {

const char* const kSelectByPk = "SELECT id, email, name FROM users WHERE id = $1";

const char* const kThreeTableJoin =
    "SELECT o.id, c.name, p.title, o.total FROM orders o "
    "JOIN customers c ON c.id = o.customer_id JOIN products p ON p.id = o.product_id "
    "WHERE o.created_at > '2024-01-01' AND c.country = 'DE' AND p.active ORDER BY o.id DESC LIMIT 50";

const char* const kOrmInsertReturning =
    "INSERT INTO \"orders\" (\"customer_id\", \"product_id\", \"quantity\", \"total\", \"status\", "
    "\"created_at\", \"updated_at\") VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING \"orders\".\"id\"";

// What psql's \d sends first.
const char* const kPsqlDescribe =
    "SELECT c.oid,\n  n.nspname,\n  c.relname\nFROM pg_catalog.pg_class c\n"
    "     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n"
    "WHERE c.relname OPERATOR(pg_catalog.~) '^(orders)$' COLLATE pg_catalog.default\n"
    "  AND pg_catalog.pg_table_is_visible(c.oid)\nORDER BY 2, 3;";

const char* const kMultiStatement =
    "BEGIN; UPDATE accounts SET balance = balance - 100 WHERE id = 1; "
    "UPDATE accounts SET balance = balance + 100 WHERE id = 2; "
    "INSERT INTO transfers (src, dst, amount) VALUES (1, 2, 100); COMMIT;";

void BM_AnalyzeCachedHit(benchmark::State& state) {
  gh::sql::Analyzer analyzer;
  const std::string text = kThreeTableJoin;
  analyzer.analyze(text);
  for (auto _ : state) {
    auto a = analyzer.analyze(text);
    benchmark::DoNotOptimize(a);
  }
}
BENCHMARK(BM_AnalyzeCachedHit);

void BM_AnalyzeUncached(benchmark::State& state, const char* sql) {
  for (auto _ : state) {
    auto a = gh::sql::analyze_uncached(sql);
    benchmark::DoNotOptimize(a);
  }
}
BENCHMARK_CAPTURE(BM_AnalyzeUncached, select_by_pk, kSelectByPk);
BENCHMARK_CAPTURE(BM_AnalyzeUncached, three_table_join, kThreeTableJoin);
BENCHMARK_CAPTURE(BM_AnalyzeUncached, orm_insert_returning, kOrmInsertReturning);
BENCHMARK_CAPTURE(BM_AnalyzeUncached, psql_describe, kPsqlDescribe);
BENCHMARK_CAPTURE(BM_AnalyzeUncached, multi_statement_5, kMultiStatement);

// A miss through the cache: analysis plus insertion and eviction in a full cache.
void BM_AnalyzeMissFullCache(benchmark::State& state) {
  gh::sql::Analyzer analyzer(1024);
  std::size_t i = 0;
  for (auto _ : state) {
    auto a = analyzer.analyze("SELECT id FROM users WHERE id = " + std::to_string(i++));
    benchmark::DoNotOptimize(a);
  }
}
BENCHMARK(BM_AnalyzeMissFullCache);

}  // namespace
