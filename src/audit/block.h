#pragma once
// The data of a block of the SQLite store (layout "blocks", sqlite_schema.h): the block's text
// ("[\n" + record lines separated by ",\n" + "\n]") compressed as one Zstandard frame. Records
// repeat most of their bytes (the session's identity, the statement's analysis), so a block of a
// few hundred records compresses about 15x at level 1 (~1 GB/s): writing the compressed bytes
// costs less than writing the text (docs/adr/0005-audit-journal.md, "records in blocks").
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"

namespace gh::audit {

class BlockCompressor {
 public:
  BlockCompressor();
  ~BlockCompressor();
  BlockCompressor(const BlockCompressor&) = delete;
  BlockCompressor& operator=(const BlockCompressor&) = delete;
  // The frame of `text`, in a buffer kept for the next call (valid until then).
  [[nodiscard]] Result<std::string_view> compress(std::string_view text);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The text of a block's data: a Zstandard frame is decompressed (at most kMaxBlockText bytes: a
// frame claiming more is refused, not allocated), text that starts with '[' is taken as it is.
inline constexpr std::size_t kMaxBlockText = 64u << 20;
[[nodiscard]] Result<std::string> block_text(std::string_view data);

}  // namespace gh::audit
