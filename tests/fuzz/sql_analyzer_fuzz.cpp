// libFuzzer target for the SQL analyzer: any byte string must give an Analysis (or a clean
// error), never a crash, a leak, undefined behaviour or a broken invariant.
//   scripts/fuzz.sh [seconds]
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "sql/analyzer.h"
#include "sql/json.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 64 * 1024) return 0;
  std::string_view sql(reinterpret_cast<const char*>(data), size);

  const gh::sql::Analysis a = gh::sql::analyze_uncached(sql);
  check(!a.error || a.statements.empty());
  for (const gh::sql::Statement& s : a.statements) {
    check(!s.kinds.empty());
    check(s.location >= 0 && static_cast<std::size_t>(s.location) + s.text.size() <= sql.size());
    check(sql.substr(static_cast<std::size_t>(s.location), s.text.size()) == s.text);
    for (const gh::sql::Relation& r : s.relations) check(!r.name.empty());
    for (const gh::sql::WriteFilter& w : s.writes) check(w.has_where || !w.where_trivially_true);
  }
  check(!gh::sql::to_json(a).empty());

  // The cache gives exactly the same answer, also when it serves the text by shape (the same
  // statement seen earlier with other numbers), and the same pointer on an exact-text hit.
  static gh::sql::Analyzer analyzer(64, 4096, 1 << 20);
  const auto shape_hits = analyzer.stats().shape_hits;
  auto first = analyzer.analyze(sql);
  auto second = analyzer.analyze(sql);
  const std::string expected = gh::sql::to_json(a);
  check(gh::sql::to_json(*first) == expected);
  check(gh::sql::to_json(*second) == expected);
  if (size <= 4096 && analyzer.stats().shape_hits == shape_hits)
    check(first.get() == second.get() || analyzer.stats().entries == 0);
  return 0;
}
