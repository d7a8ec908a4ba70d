#include "identity/token_auth.h"

#include <condition_variable>
#include <mutex>

#include <nlohmann/json.hpp>

#include "identity/auth_message.h"

namespace gh::identity {
namespace {

AuthStep failed(std::string sqlstate, std::string error, std::string hint, std::string log) {
  AuthStep s;
  s.state = AuthStep::State::Failed;
  s.sqlstate = std::move(sqlstate);
  s.error = std::move(error);
  s.hint = std::move(hint);
  s.log_reason = std::move(log);
  return s;
}

bool retry_after_refresh(TokenError::Kind k) {
  return k == TokenError::Kind::UnknownKey || k == TokenError::Kind::KeysUnavailable;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\n' || s.front() == '\r' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n' || s.back() == '\r' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

}  // namespace

class LoginAuthenticator::TokenExchange final : public AuthExchange {
 public:
  TokenExchange(const LoginAuthenticator& owner, AuthContext ctx) : owner_(owner), ctx_(std::move(ctx)) {}

  AuthStep start() override {
    if (!ctx_.client_tls && !(ctx_.client_loopback && owner_.options_.allow_loopback_plaintext))
      return failed("28000", "token logins require an encrypted connection; this one is not encrypted",
                    "connect with sslmode=require (or verify-full); the proxy did not ask for your token, so it "
                    "was not sent",
                    "token login over plaintext refused before the password");
    AuthStep s;
    s.state = AuthStep::State::Continue;
    s.to_client = authentication_message(kAuthCleartextPassword);
    return s;
  }

  AuthStep step(std::string_view body) override {
    if (stepped_) return failed("08P01", "unexpected password message", "", "second password message");
    stepped_ = true;
    if (!body.empty() && body.back() == '\0') body.remove_suffix(1);
    auto tok = trim(body);
    if (tok.empty())
      return failed("28P01", "token login failed for user \"" + ctx_.user + "\": the password is empty",
                    "use an OIDC token as the password (for example from `gatehouse login`)", "empty password");
    if (tok.size() > owner_.options_.max_token_size)
      return failed("28P01", "token login failed for user \"" + ctx_.user + "\": the token is larger than " +
                                 std::to_string(owner_.options_.max_token_size) + " bytes",
                    "", "oversized token");
    token_.assign(tok);
    return check(true);
  }

  AuthStep resume() override { return check(false); }

 private:
  AuthStep check(bool may_wait) {
    auto r = owner_.verify_now(token_);
    if (!r && may_wait && retry_after_refresh(r.error().kind)) {
      if (auto* cache = owner_.cache_mut(peek_issuer(token_))) {
        AuthStep s;
        s.state = AuthStep::State::Wait;
        s.wait = [cache](std::function<void()> done) { cache->refresh(std::move(done)); };
        return s;
      }
    }
    if (!r) {
      const auto& e = r.error();
      const bool unavailable = e.kind == TokenError::Kind::KeysUnavailable;
      std::string hint;
      if (e.kind == TokenError::Kind::Malformed && e.message.rfind("the password is not an OIDC token", 0) == 0)
        hint = "this proxy takes an OIDC token as the password; get one with `gatehouse login` or "
               "`gatehouse token`";
      // 28000 for an identity the token makes that cannot be used (invalid authorization), 28P01
      // for a token that does not prove one.
      const char* sqlstate = unavailable ? "57P03" : e.kind == TokenError::Kind::BadClaim ? "28000" : "28P01";
      if (e.kind == TokenError::Kind::BadClaim)
        hint = "ask your identity provider's administrator to fix the account's claims";
      return failed(sqlstate, "token login failed for user \"" + ctx_.user + "\": " + e.message,
                    std::move(hint), e.detail.empty() ? e.message : e.detail);
    }
    if (const auto what = owner_.collides_with_static_user(r->identity); !what.empty()) {
      // Rules and logins match static users and token identities by the same subject or email: a
      // token whose subject (or email: upn, preferred_username) is a static user's name would get
      // that user's login and rules (the break-glass account's superuser login; found by
      // adversarial testing).
      const std::string& value = what == "subject" ? r->identity.subject : r->identity.email;
      return failed("28000",
                    "token login failed for user \"" + ctx_.user + "\": the token's " + what + " \"" + value +
                        "\" is also the name of a static user, and a token cannot take a static user's identity",
                    "ask the operator to rename the static user in the configuration (users[].name)",
                    "token " + what + " collides with static user \"" + value + "\"");
    }
    AuthStep s;
    s.state = AuthStep::State::Done;
    s.identity = std::move(r->identity);
    s.to_client = authentication_message(kAuthOk);
    return s;
  }

  const LoginAuthenticator& owner_;
  AuthContext ctx_;
  std::string token_;
  bool stepped_ = false;
};

LoginAuthenticator::LoginAuthenticator(std::unique_ptr<StaticUserAuthenticator> static_users,
                                       std::vector<IssuerConfig> issuers,
                                       std::vector<std::shared_ptr<IssuerKeys>> caches, TokenLoginOptions options)
    : static_users_(std::move(static_users)),
      issuers_(std::move(issuers)),
      caches_(std::move(caches)),
      options_(options) {}

std::unique_ptr<AuthExchange> LoginAuthenticator::begin(const AuthContext& ctx) const {
  if (issuers_.empty() || static_users_->has(ctx.user)) return static_users_->begin(ctx);
  return std::make_unique<TokenExchange>(*this, ctx);
}

const IssuerKeys* LoginAuthenticator::cache_for(const std::string& issuer) const { return cache_mut(issuer); }

IssuerKeys* LoginAuthenticator::cache_mut(const std::string& issuer) const {
  for (std::size_t i = 0; i < issuers_.size() && i < caches_.size(); ++i)
    if (issuers_[i].issuer == issuer) return caches_[i].get();
  return nullptr;
}

std::string LoginAuthenticator::collides_with_static_user(const Identity& id) const {
  if (static_users_->has(id.subject)) return "subject";
  if (!id.email.empty() && static_users_->has(id.email)) return "email";
  return {};
}

tl::expected<VerifiedToken, TokenError> LoginAuthenticator::verify_now(std::string_view token) const {
  KeyLookup lookup = [this](const std::string& iss) -> std::shared_ptr<const jose::JwkSet> {
    auto* c = cache_mut(iss);
    return c ? c->current() : nullptr;
  };
  return verify_token(token, issuers_, lookup, std::chrono::system_clock::now());
}

tl::expected<VerifiedToken, TokenError> LoginAuthenticator::verify(std::string_view token,
                                                                  std::chrono::seconds wait) const {
  return verify_waiting(token, wait, [this](std::string_view t) { return verify_now(t); });
}

tl::expected<VerifiedToken, TokenError> LoginAuthenticator::verify_id_token(std::string_view token,
                                                                           const std::string& issuer,
                                                                           const std::string& client_id,
                                                                           const std::string& nonce,
                                                                           std::chrono::seconds wait) const {
  std::vector<IssuerConfig> only;
  for (const auto& i : issuers_)
    if (i.issuer == issuer) {
      only.push_back(i);
      only.back().audiences = {client_id};  // an ID token is for the client that asked for it
    }
  if (only.empty())
    return tl::unexpected(TokenError{TokenError::Kind::UnknownIssuer, "the console's issuer is not in oidc.issuers",
                                     "issuer " + issuer});
  auto r = verify_waiting(token, wait, [this, &only](std::string_view t) {
    KeyLookup lookup = [this](const std::string& iss) -> std::shared_ptr<const jose::JwkSet> {
      auto* c = cache_mut(iss);
      return c ? c->current() : nullptr;
    };
    return verify_token(t, only, lookup, std::chrono::system_clock::now());
  });
  if (!r) return r;
  // The nonce binds the token to this sign-in (OIDC Core 3.1.3.7 step 11): a token from another
  // sign-in, replayed into this one, is refused.
  auto jws = jose::split_compact(token);
  std::string got;
  if (jws) {
    auto claims = nlohmann::json::parse(jws->payload_json, nullptr, false);
    if (claims.is_object())
      if (auto it = claims.find("nonce"); it != claims.end() && it->is_string()) got = it->get<std::string>();
  }
  if (got.empty() || got != nonce)
    return tl::unexpected(TokenError{TokenError::Kind::BadClaim, "the ID token's nonce does not match this sign-in",
                                     "nonce mismatch"});
  return r;
}

tl::expected<VerifiedToken, TokenError> LoginAuthenticator::verify_waiting(
    std::string_view token, std::chrono::seconds wait,
    const std::function<tl::expected<VerifiedToken, TokenError>(std::string_view)>& check) const {
  auto r = check(token);
  if (r || !retry_after_refresh(r.error().kind)) return r;
  auto* cache = cache_mut(peek_issuer(token));
  if (!cache) return r;
  struct Flag {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
  };
  auto flag = std::make_shared<Flag>();
  cache->refresh([flag] {
    std::lock_guard lk(flag->mu);
    flag->done = true;
    flag->cv.notify_all();
  });
  std::unique_lock lk(flag->mu);
  flag->cv.wait_for(lk, wait, [&] { return flag->done; });
  return check(token);
}

}  // namespace gh::identity
