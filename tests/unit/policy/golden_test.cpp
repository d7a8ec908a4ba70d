// Golden decisions: every tests/data/policy/*.yaml holds a policy (the config's policy keys and
// targets) and `cases`, each a request and the decision expected for it. A case gives either SQL
// text (run through sql::analyze_uncached) or a hand-built analysis (`statements`, `parse_error`).
// The format is described in tests/data/policy/README.md; parsing and checking are
// config::parse_policy_cases / run_case, shared with `gatehouse test-policy`.
// GATEHOUSE_GOLDEN_VERBOSE=1 prints every decision (to review messages and hints).
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "config/policy_cases.h"
#include "config/policy_config.h"
#include "policy/policy.h"
#include "sql/json.h"

namespace gh::policy {
namespace {

namespace fs = std::filesystem;

fs::path data_dir() {
  // tests/unit/policy/golden_test.cpp -> tests/data/policy
  return fs::path(__FILE__).parent_path().parent_path().parent_path() / "data" / "policy";
}

std::vector<std::string> golden_files() {
  std::vector<std::string> out;
  if (!fs::is_directory(data_dir())) return out;
  for (const auto& e : fs::directory_iterator(data_dir()))
    if (e.is_regular_file() && e.path().extension() == ".yaml") out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

class PolicyGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(PolicyGolden, Cases) {
  const std::string path = (data_dir() / GetParam()).string();
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in) << path;
  std::stringstream text;
  text << in.rdbuf();

  auto cases = config::parse_policy_cases(text.str(), path, config::PolicyKeys::Allow);
  ASSERT_TRUE(cases) << cases.error().message;
  YAML::Node root;
  ASSERT_NO_THROW(root = YAML::Load(text.str())) << path;
  auto policy = config::read_policy(root, path);
  ASSERT_TRUE(policy) << policy.error().message;

  const char* verbose = std::getenv("GATEHOUSE_GOLDEN_VERBOSE");
  for (const auto& c : *cases) {
    SCOPED_TRACE(c.where + ": " + c.name);
    const auto out = config::run_case(**policy, c);
    const auto& d = out.decision;
    if (verbose && std::string(verbose) == "1")
      std::printf("%s\n  %s [%s]\n  message: %s\n  hint: %s\n  reason: %s\n", c.name.c_str(),
                  std::string(action_name(d.action)).c_str(), d.rule.c_str(), d.message.c_str(), d.hint.c_str(),
                  d.reason.c_str());
    std::string report;
    for (const auto& m : out.mismatches) report += "\n  " + m;
    EXPECT_TRUE(out.mismatches.empty()) << report << "\n  message: " << d.message << "\n  reason: " << d.reason
                                        << "\n  hint: " << d.hint
                                        << (c.sql ? "\n  analysis: " + sql::to_json(out.analysis) : "");
  }
}

INSTANTIATE_TEST_SUITE_P(Files, PolicyGolden, ::testing::ValuesIn(golden_files()), [](const auto& info) {
  std::string n = info.param.substr(0, info.param.size() - 5);
  for (auto& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
});
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(PolicyGolden);

}  // namespace
}  // namespace gh::policy
