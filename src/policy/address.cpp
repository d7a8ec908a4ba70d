#include "policy/address.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace gh::policy {

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  if (const auto pct = text.find('%'); pct != std::string_view::npos) text = text.substr(0, pct);
  char buf[INET6_ADDRSTRLEN + 1];
  if (text.empty() || text.size() >= sizeof buf) return std::nullopt;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  IpAddress a;
  if (text.find(':') == std::string_view::npos) {
    in_addr v4{};
    if (inet_pton(AF_INET, buf, &v4) != 1) return std::nullopt;
    a.bytes[10] = 0xff;
    a.bytes[11] = 0xff;
    std::memcpy(&a.bytes[12], &v4, 4);
    return a;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, buf, &v6) != 1) return std::nullopt;
  std::memcpy(a.bytes.data(), &v6, 16);
  return a;
}

Result<Cidr> Cidr::parse(std::string_view text) {
  const auto bad = [&](const std::string& why) {
    return fail("", "bad CIDR \"" + std::string(text) + "\": " + why);
  };
  const auto slash = text.find('/');
  const auto addr_text = text.substr(0, slash);
  if (addr_text.find('%') != std::string_view::npos) return bad("zone ids are not allowed");
  auto addr = IpAddress::parse(addr_text);
  if (!addr) return bad("not an IPv4 or IPv6 address");
  const bool v4 = addr_text.find(':') == std::string_view::npos;
  int prefix = v4 ? 32 : 128;
  if (slash != std::string_view::npos) {
    const auto p = text.substr(slash + 1);
    int v = -1;
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
    if (p.empty() || ec != std::errc() || end != p.data() + p.size() || v < 0 || v > (v4 ? 32 : 128))
      return bad(std::string("the prefix length must be 0-") + (v4 ? "32" : "128"));
    prefix = v;
  }
  Cidr c;
  c.text_ = std::string(text);
  c.network_ = *addr;
  c.prefix_ = v4 ? prefix + 96 : prefix;
  for (int bit = c.prefix_; bit < 128; ++bit)
    if (c.network_.bytes[std::size_t(bit / 8)] & (0x80 >> (bit % 8)))
      return bad("address bits are set after the prefix length (did you mean the network address?)");
  return c;
}

bool Cidr::contains(const IpAddress& a) const {
  const int full = prefix_ / 8;
  if (std::memcmp(a.bytes.data(), network_.bytes.data(), std::size_t(full)) != 0) return false;
  const int rest = prefix_ % 8;
  if (rest == 0) return true;
  const std::uint8_t mask = std::uint8_t(0xff << (8 - rest));
  return (a.bytes[std::size_t(full)] & mask) == (network_.bytes[std::size_t(full)] & mask);
}

}  // namespace gh::policy
