#pragma once
// Client authentication as a message exchange, independent of sockets. The proxy drives it:
// it sends what `start` / `step` return and feeds back the body of each PasswordMessage
// ('p'). SCRAM static users implement it now; OIDC tokens slot in later.
#include <memory>
#include <string>
#include <string_view>

#include "identity/identity.h"

namespace gh::identity {

struct AuthStep {
  enum class State { Continue, Done, Failed } state = State::Failed;
  std::string to_client;  // complete Authentication* messages to send (may be empty)
  Identity identity;      // valid when Done
  std::string sqlstate = "28P01";
  std::string error;      // client-facing message when Failed (never leaks secrets)
  std::string log_reason; // operator-facing detail when Failed
};

class AuthExchange {
 public:
  virtual ~AuthExchange() = default;
  virtual AuthStep start() = 0;
  virtual AuthStep step(std::string_view password_message_body) = 0;
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
