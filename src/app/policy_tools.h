#pragma once
// Policy tools for security teams: `gatehouse explain` (one decision, and why) and
// `gatehouse test-policy` (policy test files: identity + target + SQL -> expected action).
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "config/config.h"
#include "identity/identity.h"
#include "sql/statement_info.h"

namespace gh::app {

struct IdentityArgs {
  std::string subject;
  std::string email;
  std::vector<std::string> groups;  // empty: the static user's groups when `subject` names one
  std::string kind;                 // "human" (default) or "agent"
};

[[nodiscard]] Result<identity::Identity> identity_for(const config::Config& cfg, const IdentityArgs& args);

int cmd_explain(const std::string& config_path, const IdentityArgs& who, const std::string& target,
                const std::string& database, const std::string& address, const std::string& sql, bool json);

// `gatehouse test-policy`: runs the cases of each file against the configuration's policy.
// Exit 0 when every case passes, 1 when any fails, 2 for a bad configuration or case file.
int cmd_test_policy(const std::string& config_path, const std::vector<std::string>& files);

// "kinds: delete; relations: orders (delete); delete on orders: no WHERE", for people.
std::string statement_summary(const sql::Statement& st);


}  // namespace gh::app
