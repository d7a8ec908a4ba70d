// Golden corpus: every tests/data/sql/<category>/X.sql is analyzed and its JSON compared with
// X.json beside it (to_json's output byte for byte). The expected files were generated and then
// reviewed by hand; where the analyzer was wrong, the .json holds the correct answer (see
// tests/data/sql/README.md).
//
// Regenerate (only after reviewing the differences):
//   GATEHOUSE_UPDATE_GOLDEN=1 ./unit_tests --gtest_filter='*SqlGolden*'
//   tests/data/sql/tools/corrections.py   # re-applies the hand corrections of known bugs
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "sql/analyzer.h"
#include "sql/json.h"

namespace gh::sql {
namespace {

namespace fs = std::filesystem;

fs::path corpus_dir() {
  if (const char* env = std::getenv("GATEHOUSE_SQL_CORPUS"); env && *env) return env;
  // tests/unit/sql/golden_test.cpp -> tests/data/sql
  return fs::path(__FILE__).parent_path().parent_path().parent_path() / "data" / "sql";
}

bool update_mode() {
  const char* env = std::getenv("GATEHOUSE_UPDATE_GOLDEN");
  return env && std::string(env) == "1";
}

std::vector<std::string> corpus_files() {
  std::vector<std::string> out;
  const fs::path root = corpus_dir();
  if (!fs::is_directory(root)) return out;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (entry.is_regular_file() && entry.path().extension() == ".sql") {
      out.push_back(fs::relative(entry.path(), root).generic_string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> lines;
  std::string line;
  std::istringstream in(s);
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

// A line diff (LCS), printed with a little context around each change.
std::string line_diff(const std::string& expected, const std::string& actual) {
  const auto a = split_lines(expected);
  const auto b = split_lines(actual);
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<int>> lcs(n + 1, std::vector<int>(m + 1, 0));
  for (size_t i = n; i-- > 0;)
    for (size_t j = m; j-- > 0;)
      lcs[i][j] = a[i] == b[j] ? lcs[i + 1][j + 1] + 1 : std::max(lcs[i + 1][j], lcs[i][j + 1]);
  struct Op {
    char tag;
    std::string text;
  };
  std::vector<Op> ops;
  size_t i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] == b[j]) {
      ops.push_back({' ', a[i]});
      ++i, ++j;
    } else if (i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1])) {
      ops.push_back({'-', a[i++]});
    } else {
      ops.push_back({'+', b[j++]});
    }
  }
  constexpr size_t kContext = 3;
  std::vector<bool> show(ops.size(), false);
  for (size_t k = 0; k < ops.size(); ++k) {
    if (ops[k].tag == ' ') continue;
    const size_t lo = k >= kContext ? k - kContext : 0;
    const size_t hi = std::min(ops.size(), k + kContext + 1);
    for (size_t x = lo; x < hi; ++x) show[x] = true;
  }
  std::string out = "--- expected\n+++ actual\n";
  bool gap = false;
  for (size_t k = 0; k < ops.size(); ++k) {
    if (!show[k]) {
      gap = true;
      continue;
    }
    if (gap) out += "@@\n";
    gap = false;
    out += ops[k].tag;
    out += ops[k].text;
    out += '\n';
  }
  return out;
}

std::string test_name(const std::string& rel) {
  std::string name;
  for (char c : rel.substr(0, rel.size() - 4))
    name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return name;
}

class SqlGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(SqlGolden, MatchesExpectedJson) {
  const fs::path sql_path = corpus_dir() / GetParam();
  fs::path json_path = sql_path;
  json_path.replace_extension(".json");

  const std::string sql = read_file(sql_path);
  const std::string actual = to_json(analyze_uncached(sql));

  if (update_mode()) {
    std::ofstream out(json_path, std::ios::binary | std::ios::trunc);
    out << actual;
    ASSERT_TRUE(out.good()) << "cannot write " << json_path;
    return;
  }
  ASSERT_TRUE(fs::exists(json_path))
      << json_path << " is missing. Generate it with\n"
      << "  GATEHOUSE_UPDATE_GOLDEN=1 ./unit_tests --gtest_filter='*SqlGolden*"
      << test_name(GetParam()) << "*'\nthen review it by hand.";
  const std::string expected = read_file(json_path);
  if (expected == actual) return;
  ADD_FAILURE() << GetParam() << " differs from its golden file:\n"
                << line_diff(expected, actual)
                << "If the new output is right, regenerate, re-apply the hand "
                   "corrections, review:\n"
                << "  GATEHOUSE_UPDATE_GOLDEN=1 ./unit_tests --gtest_filter='*SqlGolden*"
                << test_name(GetParam()) << "*'\n"
                << "  tests/data/sql/tools/corrections.py\n"
                << "(tests/data/sql/README.md lists the known analyzer bugs behind "
                   "hand-corrected files.)";
}

INSTANTIATE_TEST_SUITE_P(Corpus, SqlGolden, ::testing::ValuesIn(corpus_files()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return test_name(info.param);
                         });

// The corpus must not silently vanish (a wrong path would otherwise run zero cases).
TEST(SqlGoldenCorpus, HasAtLeast300Statements) {
  EXPECT_GE(corpus_files().size(), 300u) << "corpus directory: " << corpus_dir();
}

}  // namespace
}  // namespace gh::sql
