#pragma once
// The proxy configuration, parsed once from YAML into typed options. Immutable after load;
// reload builds a new Config and swaps it atomically.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "identity/identity.h"
#include "identity/oidc.h"
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
  std::string public_url;     // base of links in notices and webhooks; default http://address:port
  // API / console roles by group ("*": every authenticated identity). An identity may hold several.
  std::vector<std::string> admin_groups, reviewer_groups, auditor_groups, requester_groups{"*"};
  // The web console's sign-in (admin.console): the OIDC client it signs people in as, at one of
  // oidc.issuers. Empty client_id: the console's pages are served but nobody can sign in.
  struct Console {
    std::string client_id;
    std::string client_secret;  // confidential client (client_secret / _env / _file); "": public, PKCE only
    std::string issuer;         // one of oidc.issuers[].issuer; "": the first
    Duration session_ttl = std::chrono::hours(8);
    std::vector<std::string> scopes{"openid", "email", "profile", "groups"};
  } console;
};

struct Webhook {
  std::string url;
  std::string secret;                  // HMAC-SHA256 key for the signature header ("" = unsigned)
  enum class Format { Json, Slack } format = Format::Json;
};

// Held statements and just-in-time access (`approvals:`).
struct Approvals {
  std::string store;                                  // SQLite file; default gatehouse-approvals.db beside the config
  std::string store_dsn;                             // set: PostgreSQL shared by several nodes (libpq string), not `store`
  Duration timeout = std::chrono::minutes(5);         // how long a client waits for a decision
  Duration rerun_window = std::chrono::hours(1);      // approved after the client stopped waiting
  Duration pending_ttl = std::chrono::hours(24);
  std::vector<std::string> break_glass_groups;
  Duration max_grant = std::chrono::hours(24 * 7);
  // A session whose backend login came from an access grant (targets[].logins[].when.grants)
  // when that grant ends (expiry, revocation): end it, or keep it (requires_grant rules still
  // deny what needed the grant).
  enum class OnGrantEnd { EndSession, KeepSession } on_grant_end = OnGrantEnd::EndSession;
  std::vector<Webhook> webhooks;
};

struct ClientTls {
  ClientTlsMode mode = ClientTlsMode::Disable;
  std::string cert_file;
  std::string key_file;
  bool tls13_only = false;  // min_version: TLSv1.3 (default TLSv1.2)
  std::string ciphers;      // OpenSSL cipher list for TLS 1.2; empty: OpenSSL's defaults
};

struct Limits {
  std::uint32_t max_connections = 10000;
  std::uint32_t max_message_size = 64u << 20;
  // Longest statement text the proxy analyses; longer ones are refused (analysis needs up to ~40x
  // the text's size in memory, on a pool of two threads).
  std::uint32_t max_statement_size = 4u << 20;
  Duration handshake_timeout = std::chrono::seconds(10);
  Duration idle_timeout = Duration::zero();
  Duration shutdown_timeout = std::chrono::seconds(30);
  Duration backend_connect_timeout = std::chrono::seconds(5);
  // Failed logins from one client address: after 3 within a minute, each further failure is
  // answered only after a delay that doubles from 250ms up to this (0: never delay).
  Duration failed_login_max_delay = std::chrono::seconds(5);
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

enum class AuditDurability { Required, Buffered };

struct AuditSink {
  enum class Type { Sqlite, JsonLines, Postgres } type = Type::Sqlite;
  std::string path;        // sqlite, jsonl ("-" = standard output)
  bool fsync = false;      // sqlite, jsonl: survive power loss, not only a killed process
  std::string dsn;         // postgres: libpq connection string (resolved from dsn / dsn_env / dsn_file)
  std::string table = "gatehouse_audit";  // postgres
  std::uint64_t max_size = 0;  // jsonl: rotate the file at this size (0: never; rotate it yourself)
  std::uint32_t keep = 10;     // jsonl: rotated files kept (PATH.1 newest ... PATH.keep)
  bool blocks = true;          // sqlite, a new file: a row per block of records (false: per record)
};

struct Audit {
  bool enabled = true;
  std::string node;                                       // default: the host name
  AuditDurability durability = AuditDurability::Required; // default for targets without their own
  std::vector<AuditSink> sinks;                           // default: sqlite gatehouse-audit.db beside the config file
  std::string spool_dir;                                  // default: beside the first file sink
  std::uint64_t spool_max_size = 1ull << 30;
  std::uint32_t queue_size = 65536;                       // events waiting for the writer, at most
  Duration flush_interval = std::chrono::milliseconds(20); // journal -> sinks, at most this late
  std::uint32_t max_text = 64 * 1024;                     // statement text kept per record, bytes
  enum class Params { Masked, Full, None } parameters = Params::Masked;
  Duration checkpoint_interval = std::chrono::seconds(60);
  std::string checkpoint_key_file;                        // "": no signed checkpoints (a warning at start)
  std::string checkpoint_algorithm = "ed25519";           // or hmac-sha256
  Duration retention_max_age = std::chrono::hours(24 * 365);  // 0: keep by age forever
  std::uint64_t retention_max_records = 0;                    // 0: no count limit
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
  std::string role;      // set: the session starts with SET ROLE to it (startup option role=)
  // Who gets this login (targets[].logins[].when); all empty: everyone.
  std::vector<std::string> groups;    // any of these groups
  std::vector<std::string> subjects;  // or the subject or email is one of these
  std::vector<identity::Kind> kinds;  // and, when given, the identity is of one of these kinds
  std::vector<std::string> grants;    // and, when given, the identity holds an active access grant of one of these roles
  bool matches(const identity::Identity& id, const std::vector<std::string>& active_grants = {}) const;
};

// OIDC token logins (`oidc:`).
struct Oidc {
  std::vector<identity::IssuerConfig> issuers;  // empty: token logins are off
  bool allow_loopback_plaintext = false;
  enum class OnExpiry { End, Keep } on_expiry = OnExpiry::End;
  Duration expiry_grace = std::chrono::minutes(0);
};

struct Target {
  std::string name;  // "*" matches any dbname no other target claims
  std::string environment = "development";
  Backend backend;
  // First match wins; `login:` in the file is one entry that matches everyone.
  std::vector<Login> logins;
  std::optional<AuditDurability> audit_durability;  // unset: audit.durability
  // The database to ask the backend for, given the client's dbname.
  const std::string& backend_database(const std::string& client_dbname) const {
    return backend.database.empty() ? client_dbname : backend.database;
  }
  // The backend login for an identity holding `active_grants` on this target; null when no entry matches.
  const Login* login_for(const identity::Identity& id, const std::vector<std::string>& active_grants = {}) const;
  bool logins_use_grants() const;
};

// Result masking (docs/configuration.md#masking).
struct Masking {
  // Keys the hash and digits strategies (HMAC-SHA256). Empty: a random key per proxy start (the
  // same value masks alike within one run only).
  std::string hash_key;
  std::size_t max_catalog_bytes = 64u << 20;  // a larger catalog answer ends the session's masking (fail closed)
  Duration catalog_ttl{10000};  // the catalog is read again after this long
};

struct Config {
  std::string source;  // file name, for messages
  // The line (1-based) of each value read from the file, by key ("tls.key_file"): errors found
  // after loading (a TLS file that does not load) are located as loading errors are (locate()).
  std::map<std::string, int, std::less<>> key_lines;
  std::vector<std::string> files;  // every file read: the configuration, then policy_file if any
  Listen listen;
  unsigned threads = 0;  // 0: one per core
  Admin admin;
  ClientTls tls;
  Limits limits;
  Log log;
  std::vector<User> users;
  Oidc oidc;
  std::vector<Target> targets;
  Audit audit;
  Approvals approvals;
  Masking masking;
  // Rules, classification, guardrails and per-target policy settings (config/policy_config.h);
  // never null after parse().
  std::shared_ptr<const policy::Policy> policy;

  const Target* find_target(std::string_view dbname) const;
};

// Parses and validates. Errors name the file, line and key path, e.g.
// "gatehouse.yaml:12: targets[0].backend.port: expected a port number (1-65535), got \"abc\"".
Result<Config> parse(std::string_view yaml_text, std::string_view source_name);
// `message` ("tls.key_file: cannot load ...") prefixed with "FILE:LINE: " when it begins with a
// key of `c` read from its file; `message` unchanged otherwise.
std::string locate(const Config& c, const std::string& message);
Result<Config> load_file(const std::string& path);

// "10s", "500ms", "5m", "1h", "0" -> milliseconds.
Result<Duration> parse_duration(std::string_view text);
// "65536", "64KiB", "64MiB", "1GiB" -> bytes.
Result<std::uint64_t> parse_size(std::string_view text);

}  // namespace gh::config
