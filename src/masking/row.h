#pragma once
// Rewriting result messages: DataRow and COPY TO data, masking the columns a plan names.
// Pure: bytes in, bytes out; a malformed input is reported, never guessed at.
#include <cstdint>
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

}  // namespace gh::masking
