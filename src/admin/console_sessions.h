#pragma once
// The web console's sign-ins and sessions, kept in memory (a restart signs everyone out): pending
// sign-ins (state, nonce, PKCE verifier; 10 minutes) under the gh_login cookie, and signed-in
// sessions (identity, CSRF token, expiry) under the gh_session cookie. Thread-safe; ids and
// tokens are 256 random bits from OpenSSL. Pure apart from randomness; time is passed in.
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "identity/identity.h"

namespace gh::admin {

inline constexpr std::string_view kSessionCookie = "gh_session";
inline constexpr std::string_view kLoginCookie = "gh_login";

// The value of cookie `name` in a Cookie header ("" when absent).
std::string cookie_value(std::string_view header, std::string_view name);
// RFC 7636 §4.2: BASE64URL(SHA256(verifier)).
std::string pkce_challenge(std::string_view verifier);
// 32 random bytes, base64url (43 characters).
std::string random_token();

class ConsoleSessions {
 public:
  using Clock = std::chrono::system_clock;
  struct Login {
    std::string state, nonce, verifier, next;
    Clock::time_point expires;
  };
  struct Session {
    identity::Identity who;
    std::string csrf;
    Clock::time_point created, expires;
  };

  explicit ConsoleSessions(std::size_t max_entries = 10000) : max_(max_entries) {}

  // A new pending sign-in with fresh state, nonce and verifier; returns its id (the gh_login cookie) and it.
  std::pair<std::string, Login> begin_login(std::string next, Clock::time_point now,
                                            std::chrono::seconds ttl = std::chrono::minutes(10));
  // Takes (removes) a pending sign-in: it serves one callback only. nullopt: unknown or expired.
  std::optional<Login> take_login(const std::string& id, Clock::time_point now);

  // A new session; returns its id (the gh_session cookie).
  std::string create(identity::Identity who, Clock::time_point now, std::chrono::seconds ttl);
  std::optional<Session> find(const std::string& id, Clock::time_point now = Clock::now());
  void end(const std::string& id);
  std::size_t size() const;

  // Constant-time comparison of two tokens (CSRF, state).
  static bool same_token(std::string_view a, std::string_view b);

 private:
  void prune(Clock::time_point now);  // under mu_
  mutable std::mutex mu_;
  std::size_t max_;
  std::map<std::string, Login, std::less<>> logins_;
  std::map<std::string, Session, std::less<>> sessions_;
};

}  // namespace gh::admin
