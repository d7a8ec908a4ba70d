#pragma once
// identity must not depend on protocol, so the few Authentication* ('R') messages the
// authenticators send are built here.
#include <cstdint>
#include <string>
#include <string_view>

#include "base/bytes.h"

namespace gh::identity {

inline constexpr std::uint32_t kAuthOk = 0;
inline constexpr std::uint32_t kAuthCleartextPassword = 3;
inline constexpr std::uint32_t kAuthSASL = 10;
inline constexpr std::uint32_t kAuthSASLContinue = 11;
inline constexpr std::uint32_t kAuthSASLFinal = 12;

inline std::string authentication_message(std::uint32_t code, std::string_view payload = {}) {
  std::string m;
  m.reserve(1 + 4 + 4 + payload.size());
  m.push_back('R');
  append_be32(m, std::uint32_t(4 + 4 + payload.size()));
  append_be32(m, code);
  m.append(payload);
  return m;
}

}  // namespace gh::identity
