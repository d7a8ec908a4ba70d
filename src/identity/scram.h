#pragma once
// SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL uses it: the server side for static users,
// the client side for the proxy's own backend logins, and verifier generation.
// Channel binding is not offered (mechanism SCRAM-SHA-256 only, gs2 flag 'n' or 'y').
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace gh::identity {

// "SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>" as in pg_authid.
struct ScramVerifier {
  std::uint32_t iterations = 4096;
  std::string salt;        // raw bytes
  std::string stored_key;  // raw 32 bytes
  std::string server_key;  // raw 32 bytes

  static Result<ScramVerifier> parse(std::string_view text);
  std::string to_string() const;
  // Builds a verifier for `password` with a random 16-byte salt.
  static ScramVerifier make(std::string_view password, std::uint32_t iterations = 4096);
  static ScramVerifier make_with_salt(std::string_view password, std::string_view salt, std::uint32_t iterations);
};

// Server side of one exchange.
class ScramServer {
 public:
  // `nonce_override` is for tests (RFC vectors); empty means random.
  explicit ScramServer(ScramVerifier v, std::string nonce_override = {});
  // client-first-message -> server-first-message
  Result<std::string> handle_client_first(std::string_view client_first);
  // client-final-message -> server-final-message ("v=..."); error when the proof is wrong
  Result<std::string> handle_client_final(std::string_view client_final);

 private:
  ScramVerifier v_;
  std::string server_nonce_override_;
  std::string client_first_bare_;
  std::string server_first_;
  std::string nonce_;  // combined
  std::string gs2_header_;
};

// Client side (proxy -> backend).
class ScramClient {
 public:
  // `username` is only for the RFC test vectors: PostgreSQL's libpq sends an empty n= and
  // the server takes the name from the startup packet.
  ScramClient(std::string password, std::string nonce_override = {}, std::string username = {});
  std::string client_first();  // "n,,n=,r=<nonce>"
  Result<std::string> handle_server_first(std::string_view server_first);  // -> client-final
  Result<void> handle_server_final(std::string_view server_final);          // checks signature

 private:
  std::string password_;
  std::string username_;
  std::string client_nonce_;
  std::string client_first_bare_;
  std::string expected_server_signature_;
};

// PostgreSQL md5 password response: "md5" + md5(md5(password + user) + salt).
std::string md5_password_response(std::string_view user, std::string_view password, std::string_view salt4);

std::string base64_encode(std::string_view raw);
std::optional<std::string> base64_decode(std::string_view b64);
// Constant-time comparison.
bool secure_equal(std::string_view a, std::string_view b);

}  // namespace gh::identity
