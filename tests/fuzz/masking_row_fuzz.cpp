// libFuzzer target for result masking: DataRow rewriting and the COPY TO masker. Any bytes
// must give a clean refusal or a well-formed result, never a crash or undefined behaviour.
// Input: byte 0 picks the mode and the COPY chunk size, byte 1 the column count, then two
// bytes per column (strategy, type and format), then the DataRow body or COPY stream.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.h"
#include "masking/row.h"
#include "masking/value.h"

namespace {

using gh::masking::ColumnMask;
using gh::masking::CopyFormat;
using gh::masking::CopyMasker;
using gh::masking::Format;
using gh::masking::Spec;
using gh::masking::Strategy;

void check(bool ok) {
  if (!ok) std::abort();
}

constexpr std::uint32_t kOids[] = {25, 1043, 1042, 19, 705, 20, 21, 23, 26, 1700, 700, 701, 1082, 1083,
                                   1114, 1184, 114, 3802, 16, 17, 2950, 869, 650, 1009, 0, 99999};
constexpr std::string_view kFixed[] = {"n/a", "42", "-1", "2000-01-01", "{}", "\"x\"", "t", "\\x00",
                                       "00000000-0000-0000-0000-000000000000", "10.0.0.0/8", "", "1.5"};

const std::vector<Spec>& specs() {
  static const std::vector<Spec> all = [] {
    std::vector<Spec> v;
    for (Strategy s : {Strategy::Redact, Strategy::Partial, Strategy::Hash, Strategy::KeepDomain, Strategy::Null,
                       Strategy::Fixed, Strategy::Digits})
      for (int k = 0; k < 12; ++k) {
        Spec spec;
        spec.strategy = s;
        spec.keep_first = k % 3;
        spec.keep_last = (k / 3) % 4 - 1;
        spec.fixed = std::string(kFixed[k]);
        v.push_back(spec);
      }
    return v;
  }();
  return all;
}

bool valid_data_row(std::string_view body, std::size_t columns, std::vector<std::int64_t>* lengths) {
  if (body.size() < 2) return false;
  const auto count = std::int16_t(gh::load_be16(body.data()));
  if (count < 0 || std::size_t(count) != columns) return false;
  std::size_t p = 2;
  for (std::size_t i = 0; i < columns; ++i) {
    if (body.size() - p < 4) return false;
    const auto len = std::int32_t(gh::load_be32(body.data() + p));
    p += 4;
    if (len < -1 || (len > 0 && body.size() - p < std::size_t(len))) return false;
    if (lengths != nullptr) lengths->push_back(len);
    if (len > 0) p += std::size_t(len);
  }
  return p == body.size();
}

// The offset of column i's length word in a valid body.
std::size_t column_offset(std::string_view body, std::size_t i) {
  std::size_t p = 2;
  for (std::size_t k = 0; k < i; ++k) {
    const auto len = std::int32_t(gh::load_be32(body.data() + p));
    p += 4 + (len > 0 ? std::size_t(len) : 0);
  }
  return p;
}

void fuzz_data_row(std::string_view body, const std::vector<ColumnMask>& plan, std::string_view key) {
  std::string out = "pre";
  const bool ok = gh::masking::rewrite_data_row(body, plan, key, out);
  std::vector<std::int64_t> in_lengths;
  check(ok == valid_data_row(body, plan.size(), &in_lengths));
  if (!ok) {
    check(out == "pre");
    return;
  }
  check(out.size() >= 3 + 5 && out[3] == 'D');
  check(gh::load_be32(out.data() + 4) == out.size() - 4);
  const std::string_view new_body = std::string_view(out).substr(8);
  std::vector<std::int64_t> out_lengths;
  check(valid_data_row(new_body, plan.size(), &out_lengths));
  for (std::size_t i = 0; i < plan.size(); ++i) {
    if (in_lengths[i] == -1) check(out_lengths[i] == -1);  // NULL stays NULL
    if (plan[i].spec == nullptr) {
      const std::size_t a = column_offset(body, i), b = column_offset(new_body, i);
      const std::size_t n = 4 + std::size_t(in_lengths[i] > 0 ? in_lengths[i] : 0);
      check(body.substr(a, n) == new_body.substr(b, n));  // unmasked: byte-identical
    } else if (plan[i].spec->strategy == Strategy::Null) {
      check(out_lengths[i] == -1);
    }
  }
  // No plan entry masks: the message is the input, framed.
  std::vector<ColumnMask> pass(plan.size());
  for (std::size_t i = 0; i < plan.size(); ++i) pass[i].type_oid = plan[i].type_oid;
  std::string same;
  check(gh::masking::rewrite_data_row(body, pass, key, same));
  check(std::string_view(same).substr(5) == body);
}

// Runs a COPY stream through a masker in chunks; returns whether it finished cleanly.
bool run_copy(CopyFormat format, const std::vector<ColumnMask>& plan, std::string_view key, std::string_view data,
              std::size_t chunk, std::string& out) {
  gh::masking::CopyOptions opts;
  opts.max_row_bytes = 1 << 16;
  CopyMasker m(format, plan, std::string(key), opts);
  for (std::size_t i = 0; i < data.size(); i += chunk) {
    const std::size_t before = out.size();
    if (!m.feed(data.substr(i, chunk), out)) {
      check(out.size() == before);
      check(m.failed() && !m.finish());
      return false;
    }
    if (format != CopyFormat::Binary && out.size() > before) check(out.back() == '\n');
  }
  return m.finish();
}

void fuzz_copy(CopyFormat format, std::size_t chunk, std::string_view data, const std::vector<ColumnMask>& plan,
               std::string_view key) {
  std::string whole, split;
  const bool a = run_copy(format, plan, key, data, data.size() + 1, whole);
  const bool b = run_copy(format, plan, key, data, chunk, split);
  check(a == b);
  if (a) check(whole == split);  // how the stream is cut never matters
  // Without masks, a stream that is accepted comes out unchanged.
  std::vector<ColumnMask> pass(plan.size());
  std::string same;
  if (run_copy(format, pass, key, data, chunk, same)) check(same == data);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2 || size > 64 * 1024) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const unsigned mode = data[0] % 4;
  const std::size_t chunk = 1 + (data[0] >> 2);
  const std::size_t columns = data[1] % 9;
  if (size < 2 + 2 * columns) return 0;
  std::vector<ColumnMask> plan(columns);
  const std::vector<Spec>& all = specs();
  for (std::size_t i = 0; i < columns; ++i) {
    const std::uint8_t s = data[2 + 2 * i], t = data[3 + 2 * i];
    plan[i].spec = s % 8 == 0 ? nullptr : &all[s % all.size()];
    plan[i].type_oid = kOids[t % std::size(kOids)];
    plan[i].format = (t & 0x80) != 0 ? Format::Binary : Format::Text;
  }
  const std::string_view rest = in.substr(2 + 2 * columns);
  const std::string_view key = "fuzz-key-0123456789abcdef";

  switch (mode) {
    case 0: fuzz_data_row(rest, plan, key); break;
    case 1: fuzz_copy(CopyFormat::Text, chunk, rest, plan, key); break;
    case 2: fuzz_copy(CopyFormat::Csv, chunk, rest, plan, key); break;
    case 3: fuzz_copy(CopyFormat::Binary, chunk, rest, plan, key); break;
  }
  // One value through every strategy, type and format: total, and nothing appended on NULL.
  const std::string_view value = rest.substr(0, 256);
  for (std::size_t s = 0; s < 7; ++s) {
    const Spec& spec = all[s * 12 + data[0] % 12];
    for (std::uint32_t oid : kOids)
      for (Format f : {Format::Text, Format::Binary}) {
        std::string out = "x";
        if (!gh::masking::mask_value(spec, key, oid, f, value, out)) check(out == "x");
      }
  }
  return 0;
}
