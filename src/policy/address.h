#pragma once
// Client address conditions: IPv4 and IPv6 CIDR blocks. IPv4 is kept as an IPv4-mapped IPv6
// address, so "10.0.0.0/8" also matches a client seen as "::ffff:10.1.2.3".
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace gh::policy {

struct IpAddress {
  std::array<std::uint8_t, 16> bytes{};
  // "10.1.2.3", "::1", "::ffff:10.1.2.3", "fe80::1%eth0" (zone ignored); nullopt otherwise.
  static std::optional<IpAddress> parse(std::string_view text);
};

class Cidr {
 public:
  // "10.0.0.0/8", "2001:db8::/32", or one address ("192.168.1.5" = /32, "::1" = /128). Host
  // bits after the prefix must be zero ("10.1.0.0/8" is refused: it is probably a typo).
  [[nodiscard]] static Result<Cidr> parse(std::string_view text);
  bool contains(const IpAddress& address) const;
  const std::string& text() const { return text_; }

 private:
  std::string text_;
  IpAddress network_;
  int prefix_ = 128;  // in IPv6 bits (IPv4 prefixes + 96)
};

}  // namespace gh::policy
