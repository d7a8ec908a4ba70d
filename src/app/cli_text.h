#pragma once
// Text helpers for the CLI's tables.
#include <cstddef>
#include <string>

namespace gh::app {

// One table cell: line breaks and tabs become spaces; longer than `max` is cut with "...".
inline std::string one_line(std::string s, std::size_t max) {
  for (auto& c : s)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  if (s.size() > max) s = s.substr(0, max - 3) + "...";
  return s;
}

}  // namespace gh::app
