#pragma once
// Content detectors: find sensitive values inside text that column lineage cannot reach (a
// free-text notes column, a function's result, a JSON document). RE2 only (linear time on
// hostile input), each candidate confirmed by its checksum or validity rules so that false
// positives stay low (a plain 9-digit id is not an SSN). Pure and thread-safe after construction.
#include <bitset>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

namespace gh::masking {

enum class Detector : std::uint8_t {
  Email,
  Phone,       // international (+CC ...) and North American formats with separators
  Card,        // payment card numbers, 13-19 digits with optional space/dash groups, Luhn-checked
  Ssn,         // US SSN: AAA-GG-SSSS with the SSA's validity rules (no 000/666/9xx area, no 00 group, no 0000 serial)
  Iban,        // mod-97 checked, country length checked
  Ipv4,
  Ipv6,
  Jwt,         // three base64url parts, the first decoding to a JSON header with "alg"
  AwsKey,      // access key ids (AKIA/ASIA...) and secret keys next to one
  PrivateKey,  // -----BEGIN ... PRIVATE KEY----- blocks
  Token,       // high-entropy API tokens (long base64/hex runs with enough entropy, or known prefixes: ghp_, xox., sk_live_ ...)
};
inline constexpr std::size_t kDetectorCount = 11;
using DetectorSet = std::bitset<kDetectorCount>;
std::string_view detector_name(Detector d);  // "email", "phone", "card", "ssn", "iban", "ipv4", "ipv6", "jwt", "aws_key", "private_key", "token"
std::optional<Detector> detector_from_name(std::string_view name);
DetectorSet all_detectors();

struct Match {
  Detector detector;
  std::size_t offset = 0;  // byte offset in the scanned text
  std::size_t length = 0;
};

class Detectors {
 public:
  explicit Detectors(DetectorSet enabled = all_detectors());
  ~Detectors();
  Detectors(const Detectors&) = delete;
  Detectors& operator=(const Detectors&) = delete;

  // Appends the confirmed matches in `text` to `out`, ordered by offset, not overlapping (when two
  // overlap, the longer wins). Returns whether any was found.
  bool find(std::string_view text, std::vector<Match>& out) const;
  // Whether `text` holds any confirmed match (may stop at the first).
  bool any(std::string_view text) const;
  DetectorSet enabled() const { return enabled_; }

 private:
  struct Impl;
  DetectorSet enabled_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gh::masking
