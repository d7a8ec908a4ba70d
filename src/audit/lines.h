#pragma once
// The one-record-per-line format shared by the JSON-lines sink, the journal and the readers:
//   {"hash":"<64 hex>","body":<the canonical body, byte for byte>}
// A shipper sees plain JSON; a verifier recovers the hashed bytes by position. Also the
// all-or-nothing append both files use.
#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

#include "audit/record.h"
#include "base/result.h"

namespace gh::audit {

constexpr std::size_t kLineBodyAt = 9 + 64 + 9;  // {"hash":" + 64 hex digits + ","body":

std::string record_line(const Record& r);  // with the trailing '\n'
void append_record_line(std::string& out, const Record& r);  // the same, appended to `out`
void append_record_line(std::string& out, std::string_view hash, std::string_view body);  // a stored one's
std::size_t record_line_size(const Record& r);
char* put_record_line(char* out, const Record& r);  // writes record_line_size(r) bytes, returns the end

struct LineParts {
  std::string_view hash;  // 64 lower-case hex digits
  std::string_view body;
};
// A line (without '\n') in that format, or nullopt.
std::optional<LineParts> split_record_line(std::string_view line);

// 53100 for a full disk (ENOSPC, EDQUOT), else 58030; "what: strerror".
Error io_error(const std::string& what, int err);

// Writes all of `data` at the end of `fd`. On failure the file is cut back to `restore_to` (when
// >= 0), so a batch is in the file whole or not at all.
[[nodiscard]] Result<void> append_all(int fd, std::string_view data, off_t restore_to, const std::string& what);

}  // namespace gh::audit
