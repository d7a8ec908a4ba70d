#pragma once
// Text helpers for the CLI's tables.
#include <cstddef>
#include <string>
#include <string_view>

namespace gh::app {

// One table cell: line breaks and tabs become spaces; longer than `max` is cut with "...".
// Text a client or requester chose, for a terminal: control characters other than newline and
// tab shown as \xNN, so an ESC sequence or a carriage return cannot redraw what a reviewer sees.
inline std::string visible(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\n' && c != '\t') || u == 0x7f) {
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
  for (auto& c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    else if (u < 0x20 || u == 0x7f) c = '?';
  }
  if (s.size() > max) s = s.substr(0, max - 3) + "...";
  return s;
}

}  // namespace gh::app
