#pragma once
// The proxy configuration, parsed once from YAML into typed options. Immutable after load;
// reload builds a new Config and swaps it atomically.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "identity/scram.h"

namespace gh::policy {
class Policy;
}

namespace gh::config {

using Duration = std::chrono::milliseconds;

enum class ClientTlsMode { Disable, Allow, Require };
enum class BackendTlsMode { Disable, Require, VerifyFull };

struct Listen {
  std::string address = "127.0.0.1";
  std::uint16_t port = 6432;
};

struct Admin {
  std::string address = "127.0.0.1";
  std::uint16_t port = 9187;  // 0 disables
};

struct ClientTls {
  ClientTlsMode mode = ClientTlsMode::Disable;
  std::string cert_file;
  std::string key_file;
};

struct Limits {
  std::uint32_t max_connections = 10000;
  std::uint32_t max_message_size = 64u << 20;
  Duration handshake_timeout = std::chrono::seconds(10);
  Duration idle_timeout = Duration::zero();
  Duration shutdown_timeout = std::chrono::seconds(30);
  Duration backend_connect_timeout = std::chrono::seconds(5);
};

struct Log {
  std::string level = "info";
  std::string format = "text";
};

struct User {
  std::string name;
  identity::ScramVerifier verifier;
  std::vector<std::string> groups;
};

struct Backend {
  std::string host = "127.0.0.1";
  std::uint16_t port = 5432;
  std::string database;  // empty: the client's dbname is passed through
  BackendTlsMode tls = BackendTlsMode::Disable;
  std::string ca_file;
};

struct Login {
  std::string user;
  std::string password;  // resolved at load time from password / password_env / password_file
};

struct Target {
  std::string name;  // "*" matches any dbname no other target claims
  std::string environment = "development";
  Backend backend;
  Login login;
  // The database to ask the backend for, given the client's dbname.
  const std::string& backend_database(const std::string& client_dbname) const {
    return backend.database.empty() ? client_dbname : backend.database;
  }
};

struct Config {
  std::string source;  // file name, for messages
  std::vector<std::string> files;  // every file read: the configuration, then policy_file if any
  Listen listen;
  unsigned threads = 0;  // 0: one per core
  Admin admin;
  ClientTls tls;
  Limits limits;
  Log log;
  std::vector<User> users;
  std::vector<Target> targets;
  // Rules, classification, guardrails and per-target policy settings (config/policy_config.h);
  // never null after parse().
  std::shared_ptr<const policy::Policy> policy;

  const Target* find_target(std::string_view dbname) const;
};

// Parses and validates. Errors name the file, line and key path, e.g.
// "gatehouse.yaml:12: targets[0].backend.port: expected a port number (1-65535), got \"abc\"".
Result<Config> parse(std::string_view yaml_text, std::string_view source_name);
Result<Config> load_file(const std::string& path);

// "10s", "500ms", "5m", "1h", "0" -> milliseconds.
Result<Duration> parse_duration(std::string_view text);
// "65536", "64KiB", "64MiB", "1GiB" -> bytes.
Result<std::uint64_t> parse_size(std::string_view text);

}  // namespace gh::config
