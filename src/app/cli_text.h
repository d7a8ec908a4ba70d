#pragma once
// Text helpers for the CLI's tables.
#include <cstddef>
#include <string>
#include <string_view>

namespace gh::app {

// The code point of a character that changes how text around it is shown although it is not
// seen: the C1 controls (U+0080..U+009F; U+009B is CSI to many terminals) and the bidirectional
// formatting characters (U+061C, U+200E/F, U+202A..U+202E, U+2066..U+2069), which reorder a line
// so that a statement reads differently from what runs ("Trojan Source"; found by adversarial
// testing). 0 when `s` does not start with one; `len` gets its length in bytes.
inline unsigned invisible_format(std::string_view s, std::size_t& len) {
  const auto b = [&](std::size_t i) { return i < s.size() ? static_cast<unsigned char>(s[i]) : 0u; };
  if (b(0) == 0xC2 && b(1) >= 0x80 && b(1) <= 0x9F) return len = 2, b(1);
  if (b(0) == 0xD8 && b(1) == 0x9C) return len = 2, 0x061Cu;
  if (b(0) == 0xE2 && b(1) == 0x80 && ((b(2) >= 0x8E && b(2) <= 0x8F) || (b(2) >= 0xAA && b(2) <= 0xAE)))
    return len = 3, 0x2000u + (b(2) - 0x80);
  if (b(0) == 0xE2 && b(1) == 0x81 && b(2) >= 0xA6 && b(2) <= 0xA9) return len = 3, 0x2040u + (b(2) - 0x80);
  return 0;
}

// Text a client or requester chose, for a terminal: control characters other than newline and
// tab shown as \xNN, and invisible formatting characters (above) as \u{NNNN}, so an ESC sequence,
// a carriage return or a bidi override cannot redraw what a reviewer sees.
inline std::string visible(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const auto u = static_cast<unsigned char>(c);
    std::size_t len = 0;
    if (const unsigned cp = u >= 0x80 ? invisible_format(s.substr(i), len) : 0u; cp != 0) {
      static constexpr char hexd[] = "0123456789abcdef";
      out += "\\u{";
      for (int shift = 12; shift >= 0; shift -= 4) out += hexd[(cp >> shift) & 15];
      out += '}';
      i += len - 1;
    } else if ((u < 0x20 && c != '\n' && c != '\t') || u == 0x7f) {
      static constexpr char digits[] = "0123456789abcdef";
      out += "\\x";
      out += digits[u >> 4];
      out += digits[u & 15];
    } else {
      out += c;
    }
  }
  return out;
}

// Text from the trail (what clients sent) for a terminal: on one line, and without control
// characters (an ESC sequence in a user name must not reach the reader's terminal as one).
inline std::string one_line(std::string s, std::size_t max) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    char& c = s[i];
    const auto u = static_cast<unsigned char>(c);
    std::size_t len = 0;
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    else if (u < 0x20 || u == 0x7f) c = '?';
    else if (u >= 0x80 && invisible_format(std::string_view(s).substr(i), len) != 0) s.replace(i, len, "?");
  }
  if (s.size() > max) s = s.substr(0, max - 3) + "...";
  return s;
}

}  // namespace gh::app
