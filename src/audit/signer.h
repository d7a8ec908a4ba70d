#pragma once
// Signs and verifies checkpoints of the chain head with a key from the configuration:
// Ed25519 (a PEM private key; verifiers may hold only the public key) or HMAC-SHA256 (a file
// of at least 32 secret bytes). OpenSSL EVP does the cryptography.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace gh::audit {

class CheckpointSigner {
 public:
  enum class Algorithm { Ed25519, HmacSha256 };
  // Loads a key file. Ed25519: PEM private key (sign and verify) or public key (verify only).
  [[nodiscard]] static Result<CheckpointSigner> load(Algorithm algorithm, const std::string& key_file);
  // Writes a new key file with mode 0600 (Ed25519 PEM private key or 32 random bytes as hex).
  [[nodiscard]] static Result<void> generate(Algorithm algorithm, const std::string& key_file);
  static std::optional<Algorithm> algorithm_from_name(std::string_view name);  // "ed25519", "hmac-sha256"
  static std::string_view name(Algorithm a);

  CheckpointSigner(CheckpointSigner&&) noexcept;
  CheckpointSigner& operator=(CheckpointSigner&&) noexcept;
  ~CheckpointSigner();

  Algorithm algorithm() const { return algorithm_; }
  bool can_sign() const;
  std::string key_id() const { return key_id_; }  // first 16 hex digits of SHA-256 of the public key / HMAC key
  // The message a checkpoint signs: the node, the sequence number and hash of the record it covers.
  static std::string message(std::string_view node, std::uint64_t seq, std::string_view hash_hex);
  [[nodiscard]] Result<std::string> sign(std::string_view message) const;  // hex signature
  bool verify(std::string_view message, std::string_view signature_hex) const;

 private:
  CheckpointSigner() = default;
  struct Key;
  Algorithm algorithm_ = Algorithm::Ed25519;
  std::unique_ptr<Key> key_;
  std::string key_id_;
};

}  // namespace gh::audit
