#pragma once
// Policy test cases: a request (identity, target, SQL or a hand-built analysis) and the decision
// expected for it. One format for the golden tables (tests/data/policy/*.yaml, policy keys and
// cases in one file) and for `gatehouse test-policy` (cases only; the policy is the deployed
// configuration's). Format: tests/data/policy/README.md and docs/policy.md.
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "identity/identity.h"
#include "policy/policy.h"
#include "sql/statement_info.h"

namespace gh::config {

struct PolicyExpect {
  policy::Action action = policy::Action::Deny;
  std::optional<std::string> rule;  // "" = the target's default action
  std::optional<std::vector<std::string>> matched_rules;
  std::optional<std::vector<std::string>> would_have;  // "rule:action"
  std::optional<std::vector<std::string>> mask_tags;
  std::optional<std::vector<std::string>> reviewer_groups;
  std::optional<int> reviewer_approvals;
  std::vector<std::string> message_contains;
  std::vector<std::string> hint_contains;
  std::vector<std::string> reason_contains;
};

struct PolicyCase {
  std::string name;
  std::string where;  // "file:line" of the case
  std::string path;   // "cases[3]"
  // The request. Defaults: identity alice (alice@example.com, no groups, human), target app,
  // database app, client address 10.0.0.1, now 2024-05-06T10:00:00Z (a Monday).
  identity::Identity identity;
  bool identity_given = false;
  bool groups_given = false;  // false: a tool may fill in a configured static user's groups
  std::string target = "app";
  bool target_given = false;
  std::string target_where;  // "file:line" of `target`
  std::string environment;   // "": the target's configured environment
  std::string environment_where;
  std::string database = "app";
  bool database_given = false;
  std::string client_address = "10.0.0.1";
  std::chrono::system_clock::time_point now;
  // The statement: SQL text (analysed when checked) or, when `sql` is unset, `analysis` as given
  // by `statements` or `parse_error`.
  std::optional<std::string> sql;
  sql::Analysis analysis;
  PolicyExpect expect;
};

// Golden tables hold their own policy next to `cases`; files for a deployed policy must not,
// so that a team cannot test a different policy than the one it rolls out.
enum class PolicyKeys { Refuse, Allow };

// Errors name file:line: key path: reason; unknown keys are refused. With PolicyKeys::Refuse
// every case must also name its `identity` and `target`.
[[nodiscard]] Result<std::vector<PolicyCase>> parse_policy_cases(std::string_view yaml, std::string_view source,
                                                                 PolicyKeys policy_keys = PolicyKeys::Refuse);

struct CaseOutcome {
  policy::Decision decision;
  sql::Analysis analysis;               // the analysis the policy saw
  std::vector<std::string> mismatches;  // empty: the case passes
};

// Evaluates the case as written (environment "" = the policy's target settings); `sql` cases
// go through sql::analyze_uncached.
CaseOutcome run_case(const policy::Policy& policy, const PolicyCase& c);
// The mismatches of run_case: "action: expected deny, got allow", ...; empty = pass.
std::vector<std::string> check_case(const policy::Policy& policy, const PolicyCase& c);

}  // namespace gh::config
