#include "admin/console_sessions.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <stdexcept>

#include "identity/jose.h"

namespace gh::admin {

std::string cookie_value(std::string_view header, std::string_view name) {
  // "a=1; b=2": pairs separated by ';' and optional spaces (RFC 6265 §4.2.1).
  while (!header.empty()) {
    const auto semi = header.find(';');
    std::string_view pair = header.substr(0, semi);
    header = semi == std::string_view::npos ? std::string_view() : header.substr(semi + 1);
    while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
    while (!pair.empty() && pair.back() == ' ') pair.remove_suffix(1);
    const auto eq = pair.find('=');
    if (eq == std::string_view::npos || pair.substr(0, eq) != name) continue;
    auto v = pair.substr(eq + 1);
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
    return std::string(v);
  }
  return {};
}

std::string pkce_challenge(std::string_view verifier) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(verifier.data()), verifier.size(), digest);
  return identity::jose::base64url_encode(std::string_view(reinterpret_cast<const char*>(digest), sizeof digest));
}

std::string random_token() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof bytes) != 1) throw std::runtime_error("no random bytes from OpenSSL");
  return identity::jose::base64url_encode(std::string_view(reinterpret_cast<const char*>(bytes), sizeof bytes));
}

bool ConsoleSessions::same_token(std::string_view a, std::string_view b) {
  if (a.empty() || a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

void ConsoleSessions::prune(Clock::time_point now) {
  for (auto it = logins_.begin(); it != logins_.end();) it = it->second.expires <= now ? logins_.erase(it) : ++it;
  for (auto it = sessions_.begin(); it != sessions_.end();) it = it->second.expires <= now ? sessions_.erase(it) : ++it;
}

std::pair<std::string, ConsoleSessions::Login> ConsoleSessions::begin_login(std::string next, Clock::time_point now,
                                                                            std::chrono::seconds ttl) {
  Login l{random_token(), random_token(), random_token(), std::move(next), now + ttl};
  std::string id = random_token();
  std::lock_guard lk(mu_);
  if (logins_.size() >= max_) prune(now);
  // Still full: the oldest sign-in started gives way (a flood of /console/login cannot lock people out).
  while (logins_.size() >= max_) {
    auto oldest = logins_.begin();
    for (auto it = logins_.begin(); it != logins_.end(); ++it)
      if (it->second.expires < oldest->second.expires) oldest = it;
    logins_.erase(oldest);
  }
  logins_.emplace(id, l);
  return {id, l};
}

std::optional<ConsoleSessions::Login> ConsoleSessions::take_login(const std::string& id, Clock::time_point now) {
  std::lock_guard lk(mu_);
  auto it = logins_.find(id);
  if (it == logins_.end()) return std::nullopt;
  Login l = std::move(it->second);
  logins_.erase(it);
  if (l.expires <= now) return std::nullopt;
  return l;
}

std::string ConsoleSessions::create(identity::Identity who, Clock::time_point now, std::chrono::seconds ttl) {
  std::string id = random_token();
  Session s{std::move(who), random_token(), now, now + ttl};
  std::lock_guard lk(mu_);
  if (sessions_.size() >= max_) prune(now);
  if (sessions_.size() >= max_) {  // still full: the session closest to its end gives way
    auto oldest = sessions_.begin();
    for (auto it = sessions_.begin(); it != sessions_.end(); ++it)
      if (it->second.expires < oldest->second.expires) oldest = it;
    sessions_.erase(oldest);
  }
  sessions_.emplace(id, std::move(s));
  return id;
}

std::optional<ConsoleSessions::Session> ConsoleSessions::find(const std::string& id, Clock::time_point now) {
  std::lock_guard lk(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return std::nullopt;
  if (it->second.expires <= now) {
    sessions_.erase(it);
    return std::nullopt;
  }
  return it->second;
}

void ConsoleSessions::end(const std::string& id) {
  std::lock_guard lk(mu_);
  sessions_.erase(id);
}

std::size_t ConsoleSessions::size() const {
  std::lock_guard lk(mu_);
  return sessions_.size();
}

}  // namespace gh::admin
