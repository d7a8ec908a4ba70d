#include "masking/row.h"

#include <cstring>
#include <limits>
#include <utility>

#include "base/bytes.h"

namespace gh::masking {

namespace {

constexpr std::size_t kMaxInt32 = std::size_t(std::numeric_limits<std::int32_t>::max());

std::int32_t load_i32(const char* p) { return std::int32_t(load_be32(p)); }
std::int16_t load_i16(const char* p) { return std::int16_t(load_be16(p)); }

// Appends a masked field (Int32 length + bytes, or -1 when the value becomes NULL).
void append_masked_field(const ColumnMask& col, Format format, std::string_view key, std::string_view value,
                         std::string& out) {
  const std::size_t hdr = out.size();
  out.append(4, '\0');
  if (mask_value(*col.spec, key, col.type_oid, format, value, out) && out.size() - hdr - 4 <= kMaxInt32)
    store_be32(out.data() + hdr, std::uint32_t(out.size() - hdr - 4));
  else {
    out.resize(hdr + 4);
    store_be32(out.data() + hdr, 0xffffffffU);
  }
}

// COPY text format: the value behind PostgreSQL's backslash escapes (CopyReadAttributesText).
void decode_text(std::string_view raw, std::string& v) {
  v.clear();
  for (std::size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    if (c != '\\' || i + 1 >= raw.size()) {
      v.push_back(c);
      continue;
    }
    c = raw[++i];
    auto octal = [](char d) { return d >= '0' && d <= '7'; };
    auto hex = [](char d) -> int {
      if (d >= '0' && d <= '9') return d - '0';
      if (d >= 'a' && d <= 'f') return d - 'a' + 10;
      if (d >= 'A' && d <= 'F') return d - 'A' + 10;
      return -1;
    };
    if (octal(c)) {
      int n = c - '0';
      for (int k = 0; k < 2 && i + 1 < raw.size() && octal(raw[i + 1]); ++k) n = n * 8 + (raw[++i] - '0');
      v.push_back(char(n & 0377));
    } else if (c == 'x' && i + 1 < raw.size() && hex(raw[i + 1]) >= 0) {
      int n = hex(raw[++i]);
      if (i + 1 < raw.size() && hex(raw[i + 1]) >= 0) n = n * 16 + hex(raw[++i]);
      v.push_back(char(n));
    } else {
      switch (c) {
        case 'b': v.push_back('\b'); break;
        case 'f': v.push_back('\f'); break;
        case 'n': v.push_back('\n'); break;
        case 'r': v.push_back('\r'); break;
        case 't': v.push_back('\t'); break;
        case 'v': v.push_back('\v'); break;
        default: v.push_back(c); break;  // \\, \<delimiter>, and any other character stands for itself
      }
    }
  }
}

// COPY text format: escapes as CopyAttributeOutText does.
void encode_text(std::string_view v, char delimiter, std::string& out) {
  for (char c : v) {
    if (static_cast<unsigned char>(c) < 0x20) {
      switch (c) {
        case '\b': out.append("\\b"); continue;
        case '\f': out.append("\\f"); continue;
        case '\n': out.append("\\n"); continue;
        case '\r': out.append("\\r"); continue;
        case '\t': out.append("\\t"); continue;
        case '\v': out.append("\\v"); continue;
        default: break;
      }
    }
    if (c == '\\' || c == delimiter) out.push_back('\\');
    out.push_back(c);
  }
}

// COPY csv format: quotes as CopyAttributeOutCSV does (when needed, escaping quote and escape).
void encode_csv(std::string_view v, char delimiter, char quote, char escape, std::string_view null,
                std::string& out) {
  bool need = v == null || v == "\\.";
  for (char c : v) need = need || c == delimiter || c == quote || c == '\n' || c == '\r';
  if (!need) {
    out.append(v);
    return;
  }
  out.push_back(quote);
  for (char c : v) {
    if (c == quote || c == escape) out.push_back(escape);
    out.push_back(c);
  }
  out.push_back(quote);
}

}  // namespace

bool rewrite_data_row(std::string_view body, std::span<const ColumnMask> plan, std::string_view hmac_key,
                      std::string& out) {
  if (body.size() < 2) return false;
  const std::int16_t count = load_i16(body.data());
  if (count < 0 || std::size_t(count) != plan.size()) return false;
  const std::size_t at = out.size();
  out.push_back('D');
  out.append(4, '\0');
  const char* const end = body.data() + body.size();
  const char* p = body.data() + 2;
  const char* run = body.data();  // the start of bytes still to copy verbatim (the count included)
  for (const ColumnMask& col : plan) {
    if (end - p < 4) goto malformed;
    const char* const field = p;
    const std::int32_t len = load_i32(p);
    p += 4;
    if (len < -1 || (len > 0 && end - p < len)) goto malformed;
    if (len == -1 || col.spec == nullptr) {
      if (len > 0) p += len;
      continue;
    }
    out.append(run, std::size_t(field - run));
    append_masked_field(col, col.format, hmac_key, std::string_view(p, std::size_t(len)), out);
    p += len;
    run = p;
  }
  if (p != end) goto malformed;
  out.append(run, std::size_t(end - run));
  if (out.size() - at - 1 > kMaxInt32) goto malformed;
  store_be32(out.data() + at + 1, std::uint32_t(out.size() - at - 1));
  return true;
malformed:
  out.resize(at);
  return false;
}

CopyMasker::CopyMasker(CopyFormat format, std::vector<ColumnMask> plan, std::string hmac_key, CopyOptions opts)
    : format_(format), plan_(std::move(plan)), key_(std::move(hmac_key)), max_row_(opts.max_row_bytes) {
  const bool csv = format_ == CopyFormat::Csv;
  delimiter_ = opts.delimiter.value_or(csv ? ',' : '\t');
  quote_ = opts.quote.value_or('"');
  escape_ = opts.escape.value_or(quote_);
  null_ = opts.null_string.value_or(csv ? "" : "\\N");
  header_left_ = opts.header && format_ != CopyFormat::Binary;
  if (format_ == CopyFormat::Binary) return;
  // The checks COPY itself makes on these options (ProcessCopyOptions).
  auto has_newline = [](std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; };
  bool ok = delimiter_ != '\n' && delimiter_ != '\r' && !has_newline(null_) &&
            null_.find(delimiter_) == std::string::npos && static_cast<unsigned char>(delimiter_) < 0x80;
  if (csv) {
    ok = ok && quote_ != delimiter_ && null_.find(quote_) == std::string::npos && quote_ != '\n' && quote_ != '\r' &&
         static_cast<unsigned char>(quote_) < 0x80 && static_cast<unsigned char>(escape_) < 0x80;
  } else {
    ok = ok && std::string_view("\\.abcdefghijklmnopqrstuvwxyz0123456789").find(delimiter_) == std::string_view::npos;
  }
  failed_ = !ok;
}

bool CopyMasker::feed(std::string_view data, std::string& out) {
  if (failed_) return false;
  const std::size_t out_at = out.size();
  std::size_t consumed = 0;
  bool ok;
  if (pending_.empty()) {
    ok = process(data, consumed, out);  // the common case: whole rows, no copy into pending_
    if (ok) pending_.assign(data.substr(consumed));
  } else {
    pending_.append(data);
    ok = process(pending_, consumed, out);
    if (ok) pending_.erase(0, consumed);
  }
  if (ok && pending_.size() > max_row_) ok = false;
  if (!ok) {
    failed_ = true;
    out.resize(out_at);
    pending_.clear();
  }
  return ok;
}

bool CopyMasker::finish() const {
  if (failed_ || !pending_.empty()) return false;
  return format_ != CopyFormat::Binary || trailer_seen_;
}

bool CopyMasker::process(std::string_view buf, std::size_t& consumed, std::string& out) {
  return format_ == CopyFormat::Binary ? process_binary(buf, consumed, out) : process_text(buf, consumed, out);
}

// Finds whole rows (text: an unescaped '\n'; csv: a '\n' outside quotes, as CopyReadLineText
// scans them), resuming where the previous feed stopped scanning the unfinished row.
bool CopyMasker::process_text(std::string_view buf, std::size_t& consumed, std::string& out) {
  const bool csv = format_ == CopyFormat::Csv;
  const bool escape_differs = escape_ != quote_;  // same: the quote simply toggles
  std::size_t row = 0;
  std::size_t i = scanned_;
  const std::size_t n = buf.size();
  for (;;) {
    std::size_t end = std::string_view::npos;
    if (!csv) {
      if (!last_was_escape_ && i < n) {
        // Fast path: a line with no backslash and no carriage return ends at the first newline.
        const void* nl = std::memchr(buf.data() + i, '\n', n - i);
        const std::size_t lim = nl != nullptr ? std::size_t(static_cast<const char*>(nl) - buf.data()) : n;
        if (std::memchr(buf.data() + i, '\\', lim - i) == nullptr && std::memchr(buf.data() + i, '\r', lim - i) == nullptr)
          i = lim;
      }
      for (; i < n; ++i) {
        const char c = buf[i];
        if (last_was_escape_) {
          last_was_escape_ = false;  // a backslash quotes the next character, even a newline
        } else if (c == '\\') {
          last_was_escape_ = true;
        } else if (c == '\n') {
          end = i;
          break;
        } else if (c == '\r') {
          return false;  // COPY TO escapes it; a bare one would end the row for a reader
        }
      }
    } else {
      for (; i < n; ++i) {
        const char c = buf[i];
        if (escape_differs && in_quote_ && c == escape_) last_was_escape_ = !last_was_escape_;
        if (c == quote_ && !last_was_escape_) in_quote_ = !in_quote_;
        if (!escape_differs || c != escape_) last_was_escape_ = false;
        if (!in_quote_ && c == '\n') {
          end = i;
          break;
        }
        if (!in_quote_ && c == '\r') return false;
      }
    }
    if (end == std::string_view::npos) {
      if (i - row > max_row_) return false;
      scanned_ = i - row;
      consumed = row;
      return true;
    }
    if (end - row > max_row_) return false;
    const std::string_view line = buf.substr(row, end - row);
    if (header_left_) {
      header_left_ = false;  // HEADER: the column names pass as they are
      out.append(line);
    } else if (!(csv ? rewrite_csv_row(line, out) : rewrite_text_row(line, out))) {
      return false;
    }
    out.push_back('\n');
    row = end + 1;
    i = row;
    in_quote_ = false;
    last_was_escape_ = false;
  }
}

bool CopyMasker::rewrite_text_row(std::string_view row, std::string& out) {
  fields_.clear();
  if (!(row.empty() && plan_.empty())) {  // a table without columns sends empty lines
    std::size_t start = 0;
    for (std::size_t i = 0; i < row.size(); ++i) {
      if (row[i] == '\\') {
        ++i;
      } else if (row[i] == delimiter_) {
        fields_.push_back(row.substr(start, i - start));
        start = i + 1;
      }
    }
    fields_.push_back(row.substr(start));
  }
  if (fields_.size() != plan_.size()) return false;
  for (std::size_t f = 0; f < fields_.size(); ++f) {
    if (f > 0) out.push_back(delimiter_);
    const std::string_view raw = fields_[f];
    if (plan_[f].spec == nullptr || raw == null_) {
      out.append(raw);
      continue;
    }
    decode_text(raw, value_);
    masked_.clear();
    if (mask_value(*plan_[f].spec, key_, plan_[f].type_oid, Format::Text, value_, masked_))
      encode_text(masked_, delimiter_, out);
    else
      out.append(null_);
  }
  return true;
}

// Splits a csv row as CopyReadAttributesCSV does: a field is a run of unquoted and quoted
// segments; inside quotes, the escape character quotes a following quote or escape.
bool CopyMasker::rewrite_csv_row(std::string_view row, std::string& out) {
  fields_.clear();
  quoted_.clear();
  if (!(row.empty() && plan_.empty())) {
    std::size_t i = 0, start = 0;
    bool saw_quote = false, in_quote = false;
    for (;;) {
      if (i == row.size()) {
        if (in_quote) return false;  // unterminated quoted field
        fields_.push_back(row.substr(start));
        quoted_.push_back(saw_quote);
        break;
      }
      const char c = row[i];
      if (in_quote) {
        if (c == escape_ && i + 1 < row.size() && (row[i + 1] == quote_ || row[i + 1] == escape_)) {
          i += 2;
          continue;
        }
        if (c == quote_) in_quote = false;
        ++i;
        continue;
      }
      if (c == delimiter_) {
        fields_.push_back(row.substr(start, i - start));
        quoted_.push_back(saw_quote);
        start = ++i;
        saw_quote = false;
        continue;
      }
      if (c == quote_) saw_quote = in_quote = true;
      ++i;
    }
  }
  if (fields_.size() != plan_.size()) return false;
  for (std::size_t f = 0; f < fields_.size(); ++f) {
    if (f > 0) out.push_back(delimiter_);
    const std::string_view raw = fields_[f];
    if (plan_[f].spec == nullptr || (!quoted_[f] && raw == null_)) {
      out.append(raw);
      continue;
    }
    value_.clear();
    bool in_quote = false;
    for (std::size_t i = 0; i < raw.size(); ++i) {
      const char c = raw[i];
      if (in_quote && c == escape_ && i + 1 < raw.size() && (raw[i + 1] == quote_ || raw[i + 1] == escape_)) {
        value_.push_back(raw[++i]);
      } else if (c == quote_) {
        in_quote = !in_quote;
      } else {
        value_.push_back(c);
      }
    }
    masked_.clear();
    if (mask_value(*plan_[f].spec, key_, plan_[f].type_oid, Format::Text, value_, masked_))
      encode_csv(masked_, delimiter_, quote_, escape_, null_, out);
    else
      out.append(null_);
  }
  return true;
}

// Binary COPY: the header (signature, flags, extension area) once, then tuples (Int16 field
// count, per field Int32 length or -1, bytes) until the trailer (count -1).
bool CopyMasker::process_binary(std::string_view buf, std::size_t& consumed, std::string& out) {
  static constexpr std::string_view kSignature("PGCOPY\n\377\r\n\0", 11);
  std::size_t pos = 0;
  const std::size_t n = buf.size();
  if (n < need_) {
    consumed = 0;
    return true;
  }
  need_ = 0;
  if (!header_done_) {
    const std::size_t fixed = kSignature.size() + 8;
    if (n < fixed) {
      if (buf.substr(0, std::min(n, kSignature.size())) != kSignature.substr(0, std::min(n, kSignature.size())))
        return false;
      need_ = fixed;
      consumed = 0;
      return true;
    }
    if (buf.substr(0, kSignature.size()) != kSignature) return false;
    const std::uint32_t flags = load_be32(buf.data() + 11);
    if ((flags & 0xffff0000U) != 0) return false;  // bit 16: OIDs (gone since PostgreSQL 12); 17-31: critical
    const std::int32_t ext = load_i32(buf.data() + 15);
    if (ext < 0 || fixed + std::size_t(ext) > max_row_) return false;
    if (n - fixed < std::size_t(ext)) {
      need_ = fixed + std::size_t(ext);
      consumed = 0;
      return true;
    }
    pos = fixed + std::size_t(ext);
    out.append(buf.data(), pos);
    header_done_ = true;
  }
  for (;;) {
    if (pos == n) break;
    if (trailer_seen_) return false;  // data after the trailer
    if (n - pos < 2) {
      need_ = 2;
      break;
    }
    const std::int16_t count = load_i16(buf.data() + pos);
    if (count == -1) {
      out.append(buf.data() + pos, 2);
      pos += 2;
      trailer_seen_ = true;
      continue;
    }
    if (count < 0 || std::size_t(count) != plan_.size()) return false;
    // Find the whole tuple first: nothing of it is written before it is complete.
    std::size_t q = pos + 2;
    bool complete = true;
    for (int f = 0; f < count; ++f) {
      if (n - q < 4) {
        need_ = q - pos + 4;
        complete = false;
        break;
      }
      const std::int32_t len = load_i32(buf.data() + q);
      if (len < -1 || (len > 0 && std::size_t(len) > max_row_)) return false;
      q += 4;
      if (len > 0) {
        if (n - q < std::size_t(len)) {
          need_ = q - pos + std::size_t(len);
          complete = false;
          break;
        }
        q += std::size_t(len);
      }
    }
    if (!complete) break;
    if (q - pos > max_row_) return false;
    const char* run = buf.data() + pos;
    const char* p = run + 2;
    for (const ColumnMask& col : plan_) {
      const char* const field = p;
      const std::int32_t len = load_i32(p);
      p += 4;
      if (len == -1 || col.spec == nullptr) {
        if (len > 0) p += len;
        continue;
      }
      out.append(run, std::size_t(field - run));
      append_masked_field(col, Format::Binary, key_, std::string_view(p, std::size_t(len)), out);
      p += len;
      run = p;
    }
    out.append(run, std::size_t(buf.data() + q - run));
    pos = q;
  }
  consumed = pos;
  return true;
}

}  // namespace gh::masking
