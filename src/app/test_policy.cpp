// `gatehouse test-policy`: policy test files a security team runs before rollout. The policy is
// the configuration's (rules, classification, targets and their environments, guardrails); the
// files hold only `cases`, so what passes here is what the proxy will decide.
#include <fstream>
#include <iostream>
#include <sstream>

#include "app/policy_tools.h"
#include "config/config.h"
#include "config/policy_cases.h"
#include "policy/policy.h"

namespace gh::app {

namespace {

constexpr const char* kIndent = "      ";

// Fills in what the configuration says about the request: the target's environment and backend
// database, and a static user's groups.
Result<void> resolve(const config::Config& cfg, const std::string& config_path, config::PolicyCase& c) {
  const config::Target* target = nullptr;
  for (const auto& t : cfg.targets)
    if (t.name == c.target) target = &t;
  if (!target) {
    std::string names;
    for (const auto& t : cfg.targets) names += (names.empty() ? "" : ", ") + t.name;
    return fail("", c.target_where + ": " + c.path + ".target: no target \"" + c.target + "\" in " + config_path +
                        " (targets: " + names + ")");
  }
  if (!c.environment.empty() && c.environment != target->environment)
    return fail("", c.environment_where + ": " + c.path + ".environment: target \"" + target->name + "\" is \"" +
                        target->environment + "\" in " + config_path +
                        "; a case cannot change a target's environment (leave the key out)");
  c.environment = target->environment;
  c.database = target->backend_database(c.database_given ? c.database : target->name);
  if (!c.groups_given)
    for (const auto& u : cfg.users)
      if (u.name == c.identity.subject) c.identity.groups = u.groups;
  return {};
}

std::string groups_text(const std::vector<std::string>& groups) {
  if (groups.empty()) return " (no groups)";
  std::string out;
  for (const auto& g : groups) out += (out.empty() ? "" : ", ") + g;
  return " (groups: " + out + ")";
}

void print_failure(const config::PolicyCase& c, const config::CaseOutcome& out) {
  std::cout << "FAIL  " << c.name << "  (" << c.where << ")\n";
  for (const auto& m : out.mismatches) std::cout << kIndent << m << "\n";
  const auto& d = out.decision;
  std::cout << kIndent << "decision: " << policy::action_name(d.action) << " by "
            << (d.rule.empty() ? "the target's default action" : "rule " + d.rule) << " for " << c.identity.subject
            << groups_text(c.identity.groups) << " on " << c.target << " (" << c.environment << ")\n";
  if (!d.message.empty()) std::cout << kIndent << "message: " << d.message << "\n";
  if (!d.reason.empty()) std::cout << kIndent << "reason: " << d.reason << "\n";
  if (!c.sql) return;
  if (out.analysis.error) {
    std::cout << kIndent << "sql: does not parse: " << out.analysis.error->message;
    if (out.analysis.error->cursor > 0) std::cout << " at character " << out.analysis.error->cursor;
    std::cout << "\n";
  }
  for (std::size_t i = 0; i < out.analysis.statements.size(); ++i) {
    const auto& st = out.analysis.statements[i];
    std::cout << kIndent << "statement " << i + 1 << ": " << st.text << "\n"
              << kIndent << "  " << statement_summary(st) << "\n";
  }
}

}  // namespace

int cmd_test_policy(const std::string& config_path, const std::vector<std::string>& files) {
  auto cfg = config::load_file(config_path);
  if (!cfg) {
    std::cerr << "error: " << cfg.error().message << "\n";
    return 2;
  }
  // Every file is read and checked before any case runs: a broken file is exit 2, never a
  // partial run that looks like a result.
  std::vector<config::PolicyCase> cases;
  for (const auto& file : files) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      std::cerr << "error: " << file << ": cannot open the policy test file\n";
      return 2;
    }
    std::stringstream text;
    text << in.rdbuf();
    auto parsed = config::parse_policy_cases(text.str(), file, config::PolicyKeys::Refuse);
    if (!parsed) {
      std::cerr << "error: " << parsed.error().message << "\n";
      return 2;
    }
    for (auto& c : *parsed) {
      if (auto r = resolve(*cfg, config_path, c); !r) {
        std::cerr << "error: " << r.error().message << "\n";
        return 2;
      }
      cases.push_back(std::move(c));
    }
  }

  int passed = 0, failed = 0;
  for (const auto& c : cases) {
    const auto out = config::run_case(*cfg->policy, c);
    if (out.mismatches.empty()) {
      ++passed;
      std::cout << "PASS  " << c.name << "\n";
    } else {
      ++failed;
      print_failure(c, out);
    }
  }
  std::cout << passed << " passed, " << failed << " failed\n";
  return failed ? 1 : 0;
}

}  // namespace gh::app
