#include "audit/lines.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace gh::audit {

namespace {
constexpr std::string_view kHashAt = "{\"hash\":\"", kBodyAt = "\",\"body\":", kEnd = "}\n";
}

std::size_t record_line_size(const Record& r) {
  return kHashAt.size() + r.hash.size() + kBodyAt.size() + r.body.size() + kEnd.size();
}

char* put_record_line(char* out, const Record& r) {
  for (std::string_view piece : {kHashAt, std::string_view(r.hash), kBodyAt, std::string_view(r.body), kEnd}) {
    std::memcpy(out, piece.data(), piece.size());
    out += piece.size();
  }
  return out;
}

void append_record_line(std::string& out, const Record& r) {
  const std::size_t at = out.size();
  out.resize(at + record_line_size(r));
  put_record_line(out.data() + at, r);
}

void append_record_line(std::string& out, std::string_view hash, std::string_view body) {
  for (std::string_view piece : {kHashAt, hash, kBodyAt, body, kEnd}) out.append(piece);
}

std::string record_line(const Record& r) {
  std::string s;
  append_record_line(s, r);
  return s;
}

std::optional<LineParts> split_record_line(std::string_view line) {
  if (line.size() < kLineBodyAt + 1 || line.substr(0, 9) != "{\"hash\":\"" || line.substr(73, 9) != "\",\"body\":" ||
      line.back() != '}')
    return std::nullopt;
  const auto hash = line.substr(9, 64);
  if (!std::all_of(hash.begin(), hash.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }))
    return std::nullopt;
  return LineParts{hash, line.substr(kLineBodyAt, line.size() - kLineBodyAt - 1)};
}

Error io_error(const std::string& what, int err) {
  return Error{err == ENOSPC || err == EDQUOT ? "53100" : "58030", what + ": " + std::strerror(err)};
}

Result<void> append_all(int fd, std::string_view data, off_t restore_to, const std::string& what) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : ENOSPC;
      if (restore_to >= 0 && ::ftruncate(fd, restore_to) != 0) {
        // Nothing more to do: the torn tail is cut when the file is next opened.
      }
      return tl::unexpected(io_error(what, err));
    }
    done += std::size_t(n);
  }
  return {};
}

}  // namespace gh::audit
