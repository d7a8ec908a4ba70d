#pragma once
// Who is acting. Filled in by an authenticator at connection start; read by policy, audit,
// and the backend login mapping.
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace gh::identity {

enum class Kind { Human, Agent };

// A name the identity is made of that cannot be used: it reaches the database's startup packet,
// logs and terminals, where a tab or newline starts a setting of its own, a NUL ends the
// parameter, an ESC redraws a screen.
inline bool has_control_characters(std::string_view v) {
  for (char c : v)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return true;
  return false;
}

struct Identity {
  std::string subject;             // stable id: static user name or token `sub`
  std::string email;
  std::string display_name;
  std::vector<std::string> groups;
  Kind kind = Kind::Human;
  std::string method;              // "scram-sha-256" or "oidc"
  std::string issuer;              // oidc: the token's `iss`
  std::string client_id;           // oidc: the client the token was issued to (azp / client_id)
  // oidc: the token came from the second or a later configured issuer, whose subjects may repeat
  // the first's; principal() then names the issuer too.
  bool qualified = false;
  // oidc: when the token stops being accepted (exp + the issuer's leeway); the epoch (default)
  // for logins that never expire.
  std::chrono::system_clock::time_point expires_at{};

  // Who this is for approvals and access grants, unique across issuers: the subject, or (from a
  // second or later issuer) "<issuer>#<subject>".
  std::string principal() const { return qualified ? issuer + "#" + subject : subject; }
};

}  // namespace gh::identity
