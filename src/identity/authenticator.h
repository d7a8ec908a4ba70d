#pragma once
// Client authentication as a message exchange, independent of sockets. The proxy drives it:
// it sends what `start` / `step` return and feeds back the body of each PasswordMessage
// ('p'). SCRAM static users and OIDC token logins (identity/token_auth.h) implement it.
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "identity/identity.h"

namespace gh::identity {

struct AuthStep {
  // Wait: the exchange needs something that takes time (an issuer's keys); the driver calls
  // `wait` with a callback (which may run on another thread), and once it has run, resume().
  enum class State { Continue, Done, Failed, Wait } state = State::Failed;
  std::string to_client;  // complete Authentication* messages to send (may be empty)
  Identity identity;      // valid when Done
  std::string sqlstate = "28P01";
  std::string error;      // client-facing message when Failed (never leaks secrets)
  std::string hint;       // client-facing: what to do about it (may be empty)
  std::string log_reason; // operator-facing detail when Failed
  std::function<void(std::function<void()>)> wait;  // Wait only
};

class AuthExchange {
 public:
  virtual ~AuthExchange() = default;
  virtual AuthStep start() = 0;
  virtual AuthStep step(std::string_view password_message_body) = 0;
  // After a Wait: carries on where step() stopped.
  virtual AuthStep resume() { return {}; }
};

struct AuthContext {
  std::string user;          // startup `user`
  std::string database;      // startup `database`
  bool client_tls = false;
  bool client_loopback = false;
};

class Authenticator {
 public:
  virtual ~Authenticator() = default;
  virtual std::unique_ptr<AuthExchange> begin(const AuthContext& ctx) const = 0;
};

}  // namespace gh::identity
