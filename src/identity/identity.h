#pragma once
// Who is acting. Filled in by an authenticator at connection start; read by policy, audit,
// and the backend login mapping.
#include <string>
#include <vector>

namespace gh::identity {

enum class Kind { Human, Agent };

struct Identity {
  std::string subject;             // stable id: static user name or token `sub`
  std::string email;
  std::string display_name;
  std::vector<std::string> groups;
  Kind kind = Kind::Human;
  std::string method;              // "scram-sha-256", later "oidc"
};

}  // namespace gh::identity
