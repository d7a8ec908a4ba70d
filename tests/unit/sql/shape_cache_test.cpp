// The analyzer's shape cache: texts that differ only in numeric literals share one parse, and
// what they get is exactly what a parse of their own text gives.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "sql/analyzer.h"
#include "sql/json.h"

using namespace gh::sql;

namespace {

std::string key_of(std::string_view sql) {
  std::string k;
  return shape_key(sql, k) ? k : std::string("<none>");
}

}  // namespace

TEST(ShapeKey, ReplacesPlainNumbersOnly) {
  EXPECT_EQ(key_of("SELECT abalance FROM pgbench_accounts WHERE aid = 12345;"),
            "SELECT abalance FROM pgbench_accounts WHERE aid = \x01;");
  EXPECT_EQ(key_of("select 1.5, 2e10, 3E-2, -4 from t2 where c3>=5"), "select \x02, \x02, \x02, -\x01 from t2 where c3>=\x01");
  // the parser's Integer (int32) and Float nodes are told apart
  EXPECT_EQ(key_of("SELECT 2147483647"), key_of("SELECT 0002147483647"));
  EXPECT_EQ(key_of("SELECT 2147483648"), key_of("SELECT 99999999999999999999"));
  EXPECT_NE(key_of("SELECT 1"), key_of("SELECT 2147483648"));
  // identifiers with digits are kept
  EXPECT_EQ(key_of("SELECT a1 FROM t2 LIMIT 3"), "SELECT a1 FROM t2 LIMIT \x01");
  // nothing to replace: the exact cache serves it
  EXPECT_EQ(key_of("SELECT a FROM t"), "<none>");
}

TEST(ShapeKey, RefusesWhatAPlainScanCannotBeSureOf) {
  for (const char* sql : {"SELECT '1'", "SELECT \"1\" FROM t", "SELECT $1", "SELECT $$1$$", "SELECT 1 -- 2",
                          "SELECT 1 /* 2 */", "SELECT E'\\\\' , 1", "SELECT 0x1f", "SELECT 1_000", "SELECT 123abc",
                          "SELECT .5", "SELECT 1.2.3", "SELECT 5e", "SELECT 1 FROM t\xc3\xa9", "SELECT 1\x01"})
    EXPECT_EQ(key_of(sql), "<none>") << sql;
}

TEST(ShapeIndependent, OnlyWhereLiteralValuesCannotMatter) {
  EXPECT_TRUE(shape_independent(analyze_uncached("SELECT a FROM t WHERE id = 1")));
  EXPECT_TRUE(shape_independent(analyze_uncached("INSERT INTO t VALUES (1, 2)")));
  // the WHERE of an UPDATE/DELETE is evaluated (1 = 1 is trivially true, 1 = 2 is not)
  EXPECT_FALSE(shape_independent(analyze_uncached("DELETE FROM t WHERE 1 = 1")));
  EXPECT_FALSE(shape_independent(analyze_uncached("UPDATE t SET a = 1 WHERE id = 2")));
  EXPECT_FALSE(shape_independent(analyze_uncached("SET statement_timeout = 5")));
  EXPECT_FALSE(shape_independent(analyze_uncached("EXPLAIN (ANALYZE 1) SELECT 1")));
  EXPECT_FALSE(shape_independent(analyze_uncached("SELECT 1; SELECT 2")));
  EXPECT_FALSE(shape_independent(analyze_uncached("SELECT FROM WHERE 1")));
}

TEST(ShapeCache, ServesOtherNumbersExactlyAsTheirOwnParse) {
  const char* templates[] = {
      "SELECT abalance FROM pgbench_accounts WHERE aid = {};",
      "  select * from orders o join customers c on c.id = o.customer_id where o.id > {} limit {}  ;  ",
      "SELECT count(*) FROM t WHERE a IN ({}, {}) AND b < {}",
      "INSERT INTO events (id, amount) VALUES ({}, {})",
      "DELETE FROM t WHERE {} = {}",
      "UPDATE t SET a = {} WHERE id = {}",
      "SELECT {}",
      "SELECT a, count(*) FROM t GROUP BY {} HAVING count(*) > {} ORDER BY {}",  // ordinals stay in normalized
  };
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> pick(0, 3);
  auto number = [&] {
    switch (pick(rng)) {
      case 0: return fmt::format("{}", rng() % 10);
      case 1: return fmt::format("{}", rng());
      case 2: return fmt::format("{}.{}", rng() % 1000, rng() % 100);
      default: return std::string("1");
    }
  };
  Analyzer cached;
  for (int round = 0; round < 40; ++round)
    for (const char* t : templates) {
      const std::string sql = fmt::format(fmt::runtime(t), number(), number(), number());
      const auto got = cached.analyze(sql);
      EXPECT_EQ(to_json(*got), to_json(analyze_uncached(sql))) << sql;
      EXPECT_EQ(to_json(*cached.analyze(sql)), to_json(*got)) << sql;  // and again, from the cache
    }
  const auto st = cached.stats();
  EXPECT_GT(st.shape_hits, 100u);  // the SELECT and INSERT shapes are shared
  EXPECT_LT(st.entries, 4u * 40 + 10);
}

TEST(ShapeCache, TriviallyTrueWhereIsNeverShared) {
  Analyzer cached;
  const auto a = cached.analyze("DELETE FROM t WHERE 1 = 2");
  const auto b = cached.analyze("DELETE FROM t WHERE 1 = 1");
  ASSERT_EQ(a->statements.size(), 1u);
  ASSERT_EQ(b->statements.size(), 1u);
  EXPECT_FALSE(a->statements[0].writes.at(0).where_trivially_true);
  EXPECT_TRUE(b->statements[0].writes.at(0).where_trivially_true);
}

// Every text of the SQL corpus (tests/data/sql) that has a shape, with its numbers changed: the
// cache gives what a parse of the changed text gives.
TEST(ShapeCache, CorpusTextsWithOtherNumbers) {
  namespace fs = std::filesystem;
  const fs::path root = fs::path(__FILE__).parent_path().parent_path().parent_path() / "data" / "sql";
  ASSERT_TRUE(fs::is_directory(root));
  int shaped = 0;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (!entry.is_regular_file() || entry.path().extension() != ".sql") continue;
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string sql((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::string key;
    if (!shape_key(sql, key)) continue;
    ++shaped;
    Analyzer cached;
    cached.analyze(sql);
    for (const char* value : {"7", "1", "0", "123456789012", "2.5"}) {
      std::string variant;
      for (char c : key) {
        if (c == '\x01')
          variant += value;
        else
          variant.push_back(c);
      }
      EXPECT_EQ(to_json(*cached.analyze(variant)), to_json(analyze_uncached(variant))) << entry.path() << "\n" << variant;
    }
  }
  EXPECT_GT(shaped, 10);
}

TEST(ShapeCache, CacheIdsAndSharedResultsForCallersThatReadNoText) {
  Analyzer a;
  const auto first = a.analyze("SELECT abalance FROM pgbench_accounts WHERE aid = 1");
  ASSERT_NE(first->cache_id, 0u);
  // the same statement with other numbers: its own text in a copy, with the entry's id
  const auto own = a.analyze("SELECT abalance FROM pgbench_accounts WHERE aid = 2");
  EXPECT_NE(own.get(), first.get());
  EXPECT_EQ(own->cache_id, first->cache_id);
  EXPECT_EQ(own->statements.front().text, "SELECT abalance FROM pgbench_accounts WHERE aid = 2");
  // a caller that reads no text gets the entry itself
  const auto shared = a.analyze("SELECT abalance FROM pgbench_accounts WHERE aid = 3", /*own_text=*/false);
  EXPECT_EQ(shared.get(), first.get());
  // another statement: another id; an uncached one (too long for the cache): none
  EXPECT_NE(a.analyze("SELECT bid FROM pgbench_branches WHERE bid = 1")->cache_id, first->cache_id);
  Analyzer tiny(16, /*max_cached_text=*/8);
  EXPECT_EQ(tiny.analyze("SELECT abalance FROM pgbench_accounts WHERE aid = 1")->cache_id, 0u);
}

TEST(ShapeCache, AnOrdinalLeftInTheNormalizedTextIsNotShared) {
  // pg_query_normalize keeps ORDER BY ordinals and makes $n of `false`: the counts of numbers and
  // placeholders agree, but the normalized text still holds the first text's ordinal.
  Analyzer a;
  a.analyze("SELECT id, v FROM secret_t WHERE false ORDER BY 2");
  const auto second = a.analyze("SELECT id, v FROM secret_t WHERE false ORDER BY 1");
  EXPECT_EQ(second->statements.front().normalized, analyze_uncached("SELECT id, v FROM secret_t WHERE false ORDER BY 1")
                                                       .statements.front().normalized);
  EXPECT_NE(second->statements.front().normalized.find("ORDER BY 1"), std::string::npos)
      << second->statements.front().normalized;
  // numbers that all became placeholders still share one entry
  const auto x = a.analyze("SELECT v FROM t WHERE id = 1 AND w = 2");
  const auto y = a.analyze("SELECT v FROM t WHERE id = 3 AND w = 4");
  EXPECT_EQ(x->cache_id, y->cache_id);
}
