#pragma once
// The proxy's client authenticator: static users (SCRAM-SHA-256) by name, everyone else with
// an OIDC token as the password. A token travels as a cleartext password, so the proxy asks
// for one only over TLS (or on loopback when the configuration allows it); otherwise it
// refuses before asking, saying why.
#include <functional>
#include <memory>
#include <vector>

#include "identity/authenticator.h"
#include "identity/jwks.h"
#include "identity/oidc.h"
#include "identity/static_users.h"

namespace gh::identity {

struct TokenLoginOptions {
  bool allow_loopback_plaintext = false;  // tokens over unencrypted loopback connections
  std::size_t max_token_size = 16 * 1024;
};

class LoginAuthenticator final : public Authenticator {
 public:
  // `caches[i]` holds the keys of `issuers[i]`. With no issuers, every login is a static one.
  LoginAuthenticator(std::unique_ptr<StaticUserAuthenticator> static_users, std::vector<IssuerConfig> issuers,
                     std::vector<std::shared_ptr<IssuerKeys>> caches, TokenLoginOptions options);
  std::unique_ptr<AuthExchange> begin(const AuthContext& ctx) const override;

  // The check a token login makes, without a connection (`gatehouse whoami`). Waits for keys
  // (up to `wait`) when none are held yet or the token's kid is unknown.
  tl::expected<VerifiedToken, TokenError> verify(std::string_view token, std::chrono::seconds wait) const;
  // An ID token from the web console's sign-in at `issuer`: checked as a login token, except
  // that its audience must be `client_id` and its `nonce` claim `nonce`.
  tl::expected<VerifiedToken, TokenError> verify_id_token(std::string_view token, const std::string& issuer,
                                                          const std::string& client_id, const std::string& nonce,
                                                          std::chrono::seconds wait) const;
  // What of a token's identity is a static user's name ("subject", "email"), or "": logins,
  // rules, approvals and grants match subjects and emails, so a token cannot take a static user's
  // identity, at the database login or at the admin API.
  std::string collides_with_static_user(const Identity& id) const;

  const std::vector<IssuerConfig>& issuers() const { return issuers_; }
  const IssuerKeys* cache_for(const std::string& issuer) const;

 private:
  class TokenExchange;
  IssuerKeys* cache_mut(const std::string& issuer) const;
  tl::expected<VerifiedToken, TokenError> verify_now(std::string_view token) const;
  // `check`, and again after the token's issuer's keys were refetched (up to `wait`) when they
  // lacked its key.
  tl::expected<VerifiedToken, TokenError> verify_waiting(
      std::string_view token, std::chrono::seconds wait,
      const std::function<tl::expected<VerifiedToken, TokenError>(std::string_view)>& check) const;
  std::unique_ptr<StaticUserAuthenticator> static_users_;
  std::vector<IssuerConfig> issuers_;
  std::vector<std::shared_ptr<IssuerKeys>> caches_;
  TokenLoginOptions options_;
};

}  // namespace gh::identity
