#pragma once
// Users listed in the configuration with SCRAM-SHA-256 verifiers. Speaks PostgreSQL's SASL
// flow; unknown users run a mock exchange so they look exactly like a wrong password.
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "identity/authenticator.h"
#include "identity/scram.h"

namespace gh::identity {

struct StaticUser {
  std::string name;
  ScramVerifier verifier;
  std::vector<std::string> groups;
};

class StaticUserAuthenticator final : public Authenticator {
 public:
  // On duplicate names the first entry wins (config validation should reject duplicates).
  explicit StaticUserAuthenticator(std::vector<StaticUser> users);
  std::unique_ptr<AuthExchange> begin(const AuthContext& ctx) const override;
  bool has(const std::string& name) const { return users_.count(name) != 0; }
  bool empty() const { return users_.empty(); }

 private:
  std::unordered_map<std::string, StaticUser> users_;
};

}  // namespace gh::identity
