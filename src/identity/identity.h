#pragma once
// Who is acting. Filled in by an authenticator at connection start; read by policy, audit,
// and the backend login mapping.
#include <chrono>
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
  std::string method;              // "scram-sha-256" or "oidc"
  std::string issuer;              // oidc: the token's `iss`
  std::string client_id;           // oidc: the client the token was issued to (azp / client_id)
  // oidc: when the token stops being valid; the epoch (default) for logins that never expire.
  std::chrono::system_clock::time_point expires_at{};
};

}  // namespace gh::identity
