#pragma once
// Rewriting result messages: DataRow and COPY TO data, masking the columns a plan names.
// Pure: bytes in, bytes out; a malformed input is reported, never guessed at.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "masking/value.h"

namespace gh::masking {

struct ColumnMask {
  const Spec* spec = nullptr;  // nullptr: the column passes through unchanged
  std::uint32_t type_oid = 0;
  Format format = Format::Text;
};

// Rewrites one DataRow message. `body` is the message after its type byte and length (Int16
// column count, then per column Int32 length (-1 = NULL) and bytes). Appends the whole new
// message ('D', Int32 length, body) to `out`. Returns false, appending nothing, when the body is
// malformed or its column count differs from plan.size().
bool rewrite_data_row(std::string_view body, std::span<const ColumnMask> plan, std::string_view hmac_key,
                      std::string& out);

// COPY ... TO STDOUT data (the payloads of CopyData messages).
enum class CopyFormat : std::uint8_t { Text, Csv, Binary };

// The COPY options that shape the data. Unset: PostgreSQL's default for the format (text:
// delimiter '\t', null "\N"; csv: delimiter ',', quote '"', escape = quote, null ""). Ignored
// for binary.
struct CopyOptions {
  std::optional<char> delimiter;
  std::optional<char> quote;   // csv only
  std::optional<char> escape;  // csv only
  std::optional<std::string> null_string;
  std::size_t max_row_bytes = std::size_t(1) << 30;  // a longer row (or binary field) is refused
  bool header = false;  // HEADER: the first line (column names) passes unchanged (text and csv)
};

// Rewrites the data of one COPY TO, masking the columns the plan names (ColumnMask::format is
// ignored: text and csv values are masked in text format, binary ones in binary format). Rows
// may be split across payloads and a payload may hold several rows: only the unfinished row is
// kept. Each feed appends the rewritten whole rows (for binary, also the header once complete
// and the trailer) to `out`, which stays as it was when nothing is complete yet. A malformed
// stream (bad escape or quoting, a column count other than plan.size(), a bad binary header,
// data after the binary trailer, invalid options) makes feed return false, appending nothing;
// the masker then stays failed. The specs the plan points to must outlive the masker.
class CopyMasker {
 public:
  CopyMasker(CopyFormat format, std::vector<ColumnMask> plan, std::string hmac_key, CopyOptions opts = {});

  [[nodiscard]] bool feed(std::string_view copy_data_payload, std::string& out_copy_data_payload);
  // At CopyDone: false when the stream is failed, ends inside a row, or (binary) has no trailer.
  [[nodiscard]] bool finish() const;
  bool failed() const { return failed_; }

 private:
  bool process(std::string_view buf, std::size_t& consumed, std::string& out);
  bool process_text(std::string_view buf, std::size_t& consumed, std::string& out);
  bool process_binary(std::string_view buf, std::size_t& consumed, std::string& out);
  bool rewrite_text_row(std::string_view row, std::string& out);
  bool rewrite_csv_row(std::string_view row, std::string& out);

  CopyFormat format_;
  std::vector<ColumnMask> plan_;
  std::string key_;
  char delimiter_ = '\t';
  char quote_ = '"';
  char escape_ = '"';
  std::string null_;
  std::size_t max_row_ = 0;
  bool failed_ = false;
  bool header_left_ = false;
  // The unfinished row, and how far it has been scanned (text/csv: the scanner's state there).
  std::string pending_;
  std::size_t scanned_ = 0;
  bool in_quote_ = false;
  bool last_was_escape_ = false;
  // binary
  bool header_done_ = false;
  bool trailer_seen_ = false;
  std::size_t need_ = 0;  // pending_ cannot hold a whole unit before this many bytes
  // scratch, reused across rows
  std::vector<std::string_view> fields_;
  std::vector<bool> quoted_;
  std::string value_;
  std::string masked_;
};

}  // namespace gh::masking
