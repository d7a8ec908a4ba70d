#pragma once
// Everything a new session needs that can change on reload, built once per config load and
// swapped atomically. Sessions keep the snapshot they started with.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <asio/ssl.hpp>

#include "base/result.h"
#include "config/config.h"
#include "identity/authenticator.h"
#include "identity/jwks.h"

namespace gh::identity {
class LoginAuthenticator;
}

namespace gh::proxy {

struct Runtime {
  std::shared_ptr<const config::Config> config;
  std::unique_ptr<identity::Authenticator> authenticator;
  // The same object as `authenticator`, for checking bearer tokens outside a login (the admin
  // API); valid as long as this Runtime.
  const identity::LoginAuthenticator* login = nullptr;
  std::vector<std::shared_ptr<identity::IssuerKeys>> issuer_keys;  // one per oidc.issuers[] entry
  std::shared_ptr<asio::ssl::context> client_tls;                          // null when tls.mode = disable
  std::map<std::string, std::shared_ptr<asio::ssl::context>> backend_tls;  // by target name
};

// The signing-key caches of OIDC issuers, one per process, kept across reloads.
identity::KeyRegistry& key_registry();

// Loads TLS material and builds the authenticator; fails with a message naming the file.
Result<std::shared_ptr<const Runtime>> build_runtime(std::shared_ptr<const config::Config> cfg);

}  // namespace gh::proxy
