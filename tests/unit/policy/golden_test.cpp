// Golden decisions: every tests/data/policy/*.yaml holds a policy (the config's policy keys and
// targets) and `cases`, each a request and the decision expected for it. A case gives either SQL
// text (run through sql::analyze_uncached) or a hand-built analysis (`statements`, `parse_error`).
// The format is described in tests/data/policy/README.md. GATEHOUSE_GOLDEN_VERBOSE=1 prints
// every decision (to review messages and hints).
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "config/policy_config.h"
#include "policy/policy.h"
#include "sql/analyzer.h"
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

std::vector<std::string> strings(const YAML::Node& n) {
  std::vector<std::string> out;
  if (!n) return out;
  if (n.IsScalar()) return {n.as<std::string>()};
  for (const auto& e : n) out.push_back(e.as<std::string>());
  return out;
}

void check_keys(const YAML::Node& n, const std::string& where, std::initializer_list<const char*> keys) {
  ASSERT_TRUE(n.IsMap()) << where << ": expected a mapping";
  for (const auto& kv : n) {
    const auto k = kv.first.as<std::string>();
    ASSERT_TRUE(std::any_of(keys.begin(), keys.end(), [&](const char* x) { return k == x; }))
        << where << ": unknown key " << k << " (line " << kv.first.Mark().line + 1 << ")";
  }
}

std::uint8_t access_from(const YAML::Node& n) {
  std::uint8_t bits = 0;
  for (const auto& a : strings(n)) {
    if (a == "read") bits |= sql::kRead;
    else if (a == "insert") bits |= sql::kInsert;
    else if (a == "update") bits |= sql::kUpdate;
    else if (a == "delete") bits |= sql::kDelete;
    else if (a == "truncate") bits |= sql::kTruncate;
    else if (a == "ddl") bits |= sql::kDdl;
    else ADD_FAILURE() << "unknown access " << a;
  }
  return bits;
}

sql::StatementKind kind_from(const std::string& name) {
  auto k = sql::kind_from_name(name);
  EXPECT_TRUE(k) << "unknown statement kind " << name;
  return k.value_or(sql::StatementKind::Unknown);
}

// The hand-built form mirrors sql::to_json's field names.
sql::Statement statement_from(const YAML::Node& n, const std::string& where) {
  check_keys(n, where,
             {"kinds", "relations", "functions", "writes", "settings", "unresolved_columns", "returning", "whole_row",
              "opaque_code", "server_file_access", "server_program", "remote_access", "role_change",
              "transaction_control", "destructive_alter"});
  sql::Statement s;
  for (const auto& k : strings(n["kinds"])) s.kinds.push_back(kind_from(k));
  for (const auto& r : n["relations"]) {
    sql::Relation rel;
    if (r["schema"]) rel.schema = r["schema"].as<std::string>();
    rel.name = r["name"].as<std::string>();
    rel.access = access_from(r["access"]);
    rel.columns_read = strings(r["columns_read"]);
    rel.columns_written = strings(r["columns_written"]);
    rel.all_columns = r["all_columns"] && r["all_columns"].as<bool>();
    s.relations.push_back(std::move(rel));
  }
  s.functions = strings(n["functions"]);
  s.settings = strings(n["settings"]);
  s.unresolved_columns = strings(n["unresolved_columns"]);
  for (const auto& w : n["writes"]) {
    sql::WriteFilter f;
    f.kind = kind_from(w["kind"].as<std::string>());
    f.relation = w["relation"].as<std::string>();
    f.has_where = w["has_where"] && w["has_where"].as<bool>();
    f.where_trivially_true = w["where_trivially_true"] && w["where_trivially_true"].as<bool>();
    s.writes.push_back(std::move(f));
  }
  const auto flag = [&](const char* key, bool& field) { field = n[key] && n[key].as<bool>(); };
  flag("returning", s.returning);
  flag("whole_row", s.whole_row);
  flag("opaque_code", s.opaque_code);
  flag("server_file_access", s.server_file_access);
  flag("server_program", s.server_program);
  flag("remote_access", s.remote_access);
  flag("role_change", s.role_change);
  flag("transaction_control", s.transaction_control);
  flag("destructive_alter", s.destructive_alter);
  return s;
}

// "2024-05-06T10:00:00Z" or "2024-05-06T10:00Z" (UTC only).
std::chrono::system_clock::time_point time_from(const std::string& s) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  char z = 0;
  const int n = std::sscanf(s.c_str(), "%d-%d-%dT%d:%d:%d%c", &y, &mo, &d, &h, &mi, &sec, &z);
  if (n != 7 || z != 'Z') {
    sec = 0;
    EXPECT_EQ(std::sscanf(s.c_str(), "%d-%d-%dT%d:%d%c", &y, &mo, &d, &h, &mi, &z), 6) << "bad time " << s;
  }
  using namespace std::chrono;
  return sys_days{year{y} / month{unsigned(mo)} / day{unsigned(d)}} + hours{h} + minutes{mi} + seconds{sec};
}

class PolicyGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(PolicyGolden, Cases) {
  const std::string path = (data_dir() / GetParam()).string();
  YAML::Node root;
  ASSERT_NO_THROW(root = YAML::LoadFile(path)) << path;
  check_keys(root, path, {"targets", "classification", "policy", "rules", "policy_file", "cases"});
  auto policy = config::read_policy(root, path);
  ASSERT_TRUE(policy) << policy.error().message;
  const auto& cases = root["cases"];
  ASSERT_TRUE(cases && cases.IsSequence() && cases.size() > 0) << path << ": no cases";

  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const std::string name = c["name"] ? c["name"].as<std::string>() : "case " + std::to_string(i);
    SCOPED_TRACE(path + ":" + std::to_string(c.Mark().line + 1) + ": " + name);
    check_keys(c, name,
               {"name", "identity", "target", "environment", "database", "client_address", "now", "sql", "statements",
                "parse_error", "expect"});

    identity::Identity who;
    who.subject = "alice";
    who.email = "alice@example.com";
    if (const auto& id = c["identity"]) {
      check_keys(id, name + ".identity", {"subject", "email", "groups", "kind"});
      if (id["subject"]) who.subject = id["subject"].as<std::string>();
      who.email = id["email"] ? id["email"].as<std::string>() : who.subject + "@example.com";
      who.groups = strings(id["groups"]);
      if (id["kind"]) who.kind = id["kind"].as<std::string>() == "agent" ? identity::Kind::Agent : identity::Kind::Human;
    }

    sql::Analysis analysis;
    const int sources = int(bool(c["sql"])) + int(bool(c["statements"])) + int(bool(c["parse_error"]));
    ASSERT_EQ(sources, 1) << "give exactly one of sql, statements, parse_error";
    if (c["sql"]) {
      analysis = sql::analyze_uncached(c["sql"].as<std::string>());
    } else if (c["statements"]) {
      for (std::size_t s = 0; s < c["statements"].size(); ++s)
        analysis.statements.push_back(statement_from(c["statements"][s], name + ".statements"));
    } else {
      analysis.error = sql::ParseError{c["parse_error"]["message"].as<std::string>(),
                                       c["parse_error"]["cursor"] ? c["parse_error"]["cursor"].as<int>() : 0};
    }

    const std::string target = c["target"] ? c["target"].as<std::string>() : "app";
    const std::string environment = c["environment"] ? c["environment"].as<std::string>() : "";
    const std::string database = c["database"] ? c["database"].as<std::string>() : "app";
    const std::string client = c["client_address"] ? c["client_address"].as<std::string>() : "10.0.0.1";
    Request req;
    req.identity = &who;
    req.target = target;
    req.environment = environment;
    req.database = database;
    req.client_address = client;
    req.analysis = &analysis;
    req.now = c["now"] ? time_from(c["now"].as<std::string>()) : time_from("2024-05-06T10:00:00Z");
    const Decision d = (*policy)->evaluate(req);
    if (const char* v = std::getenv("GATEHOUSE_GOLDEN_VERBOSE"); v && std::string(v) == "1")
      std::printf("%s\n  %s [%s]\n  message: %s\n  hint: %s\n  reason: %s\n", name.c_str(),
                  std::string(action_name(d.action)).c_str(), d.rule.c_str(), d.message.c_str(), d.hint.c_str(),
                  d.reason.c_str());

    const auto& e = c["expect"];
    ASSERT_TRUE(e) << "no expect";
    check_keys(e, name + ".expect",
               {"action", "rule", "matched_rules", "would_have", "mask_tags", "reviewers", "message_contains",
                "hint_contains", "reason_contains"});
    const std::string context = "\n  message: " + d.message + "\n  reason: " + d.reason +
                                (c["sql"] ? "\n  analysis: " + sql::to_json(analysis) : "");
    EXPECT_EQ(std::string(action_name(d.action)), e["action"].as<std::string>()) << context;
    if (e["rule"]) {
      EXPECT_EQ(d.rule, e["rule"].as<std::string>()) << context;
    }
    if (e["matched_rules"]) {
      EXPECT_EQ(d.matched_rules, strings(e["matched_rules"])) << context;
    }
    if (e["would_have"]) {
      std::vector<std::string> got;
      for (const auto& w : d.would_have) got.push_back(w.rule + ":" + std::string(action_name(w.action)));
      EXPECT_EQ(got, strings(e["would_have"])) << context;
    }
    if (e["mask_tags"]) {
      EXPECT_EQ(d.mask_tags, strings(e["mask_tags"])) << context;
    }
    if (const auto& r = e["reviewers"]) {
      EXPECT_EQ(d.reviewers.groups, strings(r["groups"])) << context;
      if (r["approvals"]) {
        EXPECT_EQ(d.reviewers.approvals, r["approvals"].as<int>()) << context;
      }
    }
    for (const auto& [key, text] : {std::pair{"message_contains", &d.message}, std::pair{"hint_contains", &d.hint},
                                    std::pair{"reason_contains", &d.reason}})
      for (const auto& want : strings(e[key]))
        EXPECT_NE(text->find(want), std::string::npos) << key << " \"" << want << "\"" << context << "\n  hint: " << d.hint;
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
