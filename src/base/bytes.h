#pragma once
// Big-endian integer helpers for wire formats.
#include <cstdint>
#include <cstring>
#include <string>

namespace gh {

inline std::uint32_t load_be32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (std::uint32_t(u[0]) << 24) | (std::uint32_t(u[1]) << 16) | (std::uint32_t(u[2]) << 8) | std::uint32_t(u[3]);
}
inline std::uint16_t load_be16(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return std::uint16_t((u[0] << 8) | u[1]);
}
inline void store_be32(char* p, std::uint32_t v) {
  p[0] = char(v >> 24);
  p[1] = char(v >> 16);
  p[2] = char(v >> 8);
  p[3] = char(v);
}
inline void append_be32(std::string& s, std::uint32_t v) {
  char b[4];
  store_be32(b, v);
  s.append(b, 4);
}
inline void append_be16(std::string& s, std::uint16_t v) {
  s.push_back(char(v >> 8));
  s.push_back(char(v));
}

}  // namespace gh
