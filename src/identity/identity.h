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
// Also the C1 controls (U+0080..U+009F) and the bidirectional overrides and isolates
// (U+202A..U+202E, U+2066..U+2069), which make a name read differently from what it is (found by
// adversarial testing: U+202E in a token's sub reached gatehouse.identity).
inline bool has_control_characters(std::string_view v) {
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  const std::size_t n = v.size();
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned char c = p[i];
    if (c < 0x20 || c == 0x7f) return true;
    if (c == 0xC2 && i + 1 < n && p[i + 1] >= 0x80 && p[i + 1] <= 0x9F) return true;  // C1
    if (c == 0xE2 && i + 2 < n && p[i + 1] == 0x80 && p[i + 2] >= 0xAA && p[i + 2] <= 0xAE) return true;
    if (c == 0xE2 && i + 2 < n && p[i + 1] == 0x81 && p[i + 2] >= 0xA6 && p[i + 2] <= 0xA9) return true;
  }
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
