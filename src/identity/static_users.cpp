#include "identity/static_users.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <utility>

#include "base/bytes.h"
#include "identity/auth_message.h"

namespace gh::identity {
namespace {

constexpr std::string_view kMechanism = "SCRAM-SHA-256";
// Iterations of the mock verifier: PostgreSQL's default scram_iterations, which is also
// what ScramVerifier::make uses, so real and mock server-first messages look alike.
constexpr std::uint32_t kMockIterations = 4096;

std::string authentication(std::uint32_t code, std::string_view payload = {}) {
  return authentication_message(code, payload);
}

// Per-process secret for mock verifiers, as PostgreSQL's mock_auth_nonce: the same unknown
// name always gets the same salt within a process, and nobody can tell it from a real one.
const std::string& mock_key() {
  static const std::string key = [] {
    std::string k(32, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(k.data()), int(k.size())) != 1)
      throw std::runtime_error("RAND_bytes failed");
    return k;
  }();
  return key;
}

std::string mock_hmac(std::string_view label, std::string_view user) {
  std::string data(label);
  data.push_back('\0');
  data.append(user);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  const auto& key = mock_key();
  if (HMAC(EVP_sha256(), key.data(), int(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
           data.size(), out, &len) == nullptr)
    throw std::runtime_error("HMAC failed");
  return std::string(reinterpret_cast<const char*>(out), len);
}

ScramVerifier mock_verifier(std::string_view user) {
  ScramVerifier v;
  v.iterations = kMockIterations;
  v.salt = mock_hmac("salt", user).substr(0, 16);
  // Keys nobody knows a password for; the exchange is failed at the end regardless.
  v.stored_key = mock_hmac("stored", user);
  v.server_key = mock_hmac("server", user);
  return v;
}

// Reads a NUL-terminated string from the front of `in`.
std::optional<std::string_view> read_cstring(std::string_view& in) {
  const auto nul = in.find('\0');
  if (nul == std::string_view::npos) return std::nullopt;
  auto s = in.substr(0, nul);
  in.remove_prefix(nul + 1);
  return s;
}

class StaticUserExchange final : public AuthExchange {
 public:
  StaticUserExchange(std::string user, const StaticUser* known)
      : user_(std::move(user)),
        known_(known != nullptr),
        groups_(known ? known->groups : std::vector<std::string>{}),
        scram_(known ? known->verifier : mock_verifier(user_)) {}

  AuthStep start() override {
    if (phase_ != Phase::NotStarted) return protocol_error("authentication already started");
    phase_ = Phase::AwaitInitial;
    AuthStep s;
    s.state = AuthStep::State::Continue;
    std::string mechanisms(kMechanism);
    mechanisms.push_back('\0');
    mechanisms.push_back('\0');  // end of list
    s.to_client = authentication(kAuthSASL, mechanisms);
    return s;
  }

  AuthStep step(std::string_view body) override {
    switch (phase_) {
      case Phase::AwaitInitial:
        return initial_response(body);
      case Phase::AwaitClientFirst:
        return client_first(body);  // SASLResponse carrying the client-first-message
      case Phase::AwaitClientFinal:
        return client_final(body);  // SASLResponse
      case Phase::NotStarted:
      case Phase::Finished:
        break;
    }
    return protocol_error("unexpected password message");
  }

 private:
  enum class Phase { NotStarted, AwaitInitial, AwaitClientFirst, AwaitClientFinal, Finished };

  // SASLInitialResponse: mechanism cstring, int32 length (-1: no initial response), data.
  AuthStep initial_response(std::string_view body) {
    auto mechanism = read_cstring(body);
    if (!mechanism) return protocol_error("invalid SASLInitialResponse message");
    if (*mechanism != kMechanism) return protocol_error("client selected an invalid SASL authentication mechanism");
    if (body.size() < 4) return protocol_error("invalid SASLInitialResponse message");
    const auto len = std::int32_t(load_be32(body.data()));
    body.remove_prefix(4);
    if (len == -1 && body.empty()) {
      // No initial response: send an empty challenge and wait for the client-first message.
      phase_ = Phase::AwaitClientFirst;
      return cont(authentication(kAuthSASLContinue));
    }
    if (len < 0 || std::size_t(len) != body.size()) return protocol_error("invalid SASLInitialResponse message");
    return client_first(body);
  }

  AuthStep client_first(std::string_view data) {
    auto r = scram_.handle_client_first(data);
    if (!r) return scram_error(r.error());
    phase_ = Phase::AwaitClientFinal;
    return cont(authentication(kAuthSASLContinue, *r));
  }

  AuthStep client_final(std::string_view data) {
    auto r = scram_.handle_client_final(data);
    if (!r) return scram_error(r.error());
    if (!known_) return password_failed("unknown user");  // cannot happen with a mock key; be sure
    phase_ = Phase::Finished;
    AuthStep s;
    s.state = AuthStep::State::Done;
    s.to_client = authentication(kAuthSASLFinal, *r) + authentication(kAuthOk);
    s.identity.subject = user_;
    s.identity.groups = groups_;
    s.identity.kind = Kind::Human;
    s.identity.method = "scram-sha-256";
    s.sqlstate.clear();
    return s;
  }

  static AuthStep cont(std::string to_client) {
    AuthStep s;
    s.state = AuthStep::State::Continue;
    s.to_client = std::move(to_client);
    s.sqlstate.clear();
    return s;
  }

  AuthStep scram_error(const Error& e) {
    if (e.sqlstate == "28P01") return password_failed(known_ ? "wrong password" : "unknown user");
    phase_ = Phase::Finished;
    AuthStep s;
    s.state = AuthStep::State::Failed;
    s.sqlstate = e.sqlstate.empty() ? "08P01" : e.sqlstate;
    s.error = e.message;
    s.log_reason = e.message;
    return s;
  }

  AuthStep password_failed(std::string reason) {
    phase_ = Phase::Finished;
    AuthStep s;
    s.state = AuthStep::State::Failed;
    s.sqlstate = "28P01";
    s.error = "password authentication failed for user \"" + user_ + "\"";
    s.log_reason = std::move(reason);
    return s;
  }

  AuthStep protocol_error(std::string message) {
    phase_ = Phase::Finished;
    AuthStep s;
    s.state = AuthStep::State::Failed;
    s.sqlstate = "08P01";
    s.log_reason = message;
    s.error = std::move(message);
    return s;
  }

  std::string user_;
  bool known_;
  std::vector<std::string> groups_;
  ScramServer scram_;
  Phase phase_ = Phase::NotStarted;
};

}  // namespace

StaticUserAuthenticator::StaticUserAuthenticator(std::vector<StaticUser> users) {
  for (auto& u : users) {
    auto name = u.name;
    users_.emplace(std::move(name), std::move(u));
  }
}

std::unique_ptr<AuthExchange> StaticUserAuthenticator::begin(const AuthContext& ctx) const {
  const auto it = users_.find(ctx.user);
  return std::make_unique<StaticUserExchange>(ctx.user, it == users_.end() ? nullptr : &it->second);
}

}  // namespace gh::identity
