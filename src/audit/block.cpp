#include "audit/block.h"

#include <zstd.h>

namespace gh::audit {

struct BlockCompressor::Impl {
  ZSTD_CCtx* ctx = ZSTD_createCCtx();
  std::string out;
  ~Impl() { ZSTD_freeCCtx(ctx); }
};

BlockCompressor::BlockCompressor() : impl_(std::make_unique<Impl>()) {}
BlockCompressor::~BlockCompressor() = default;

Result<std::string_view> BlockCompressor::compress(std::string_view text) {
  if (!impl_->ctx) return fail("", "cannot create a Zstandard context");
  impl_->out.resize(ZSTD_compressBound(text.size()));
  const std::size_t n = ZSTD_compressCCtx(impl_->ctx, impl_->out.data(), impl_->out.size(), text.data(), text.size(), 1);
  if (ZSTD_isError(n)) return fail("", std::string("cannot compress an audit block: ") + ZSTD_getErrorName(n));
  return std::string_view(impl_->out.data(), n);
}

Result<std::string> block_text(std::string_view data) {
  if (!data.empty() && data.front() == '[') return std::string(data);
  const unsigned long long size = ZSTD_getFrameContentSize(data.data(), data.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN)
    return fail("", "the block's data is neither a Zstandard frame nor JSON text");
  if (size > kMaxBlockText) return fail("", "the block's data claims " + std::to_string(size) + " bytes of text, more than a block holds");
  std::string out(std::size_t(size), '\0');
  const std::size_t n = ZSTD_decompress(out.data(), out.size(), data.data(), data.size());
  if (ZSTD_isError(n) || n != size) return fail("", std::string("the block's data does not decompress: ") + ZSTD_getErrorName(n));
  return out;
}

}  // namespace gh::audit
