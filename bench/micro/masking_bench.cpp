// Result masking on the relay path: one value, one DataRow, a COPY stream.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "base/bytes.h"
#include "masking/row.h"
#include "masking/value.h"

namespace {

using gh::masking::ColumnMask;
using gh::masking::Format;
using gh::masking::Spec;
using gh::masking::Strategy;

constexpr std::string_view kKey = "bench-key-0123456789abcdef012345";
constexpr std::uint32_t kInt4 = 23, kText = 25, kVarchar = 1043, kDate = 1082, kNumeric = 1700;

void BM_MaskRedactText(benchmark::State& state) {
  const Spec spec{Strategy::Redact, 0, 4, {}};
  std::string out;
  for (auto _ : state) {
    out.clear();
    benchmark::DoNotOptimize(gh::masking::mask_value(spec, kKey, kText, Format::Text, "alice.smith@example.com", out));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MaskRedactText);

void BM_MaskHashText(benchmark::State& state) {
  const Spec spec{Strategy::Hash, 0, 4, {}};
  std::string out;
  for (auto _ : state) {
    out.clear();
    benchmark::DoNotOptimize(gh::masking::mask_value(spec, kKey, kText, Format::Text, "alice.smith@example.com", out));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MaskHashText);

void BM_MaskPartialText(benchmark::State& state) {
  const Spec spec{Strategy::Partial, 0, 4, {}};
  std::string out;
  for (auto _ : state) {
    out.clear();
    benchmark::DoNotOptimize(gh::masking::mask_value(spec, kKey, kText, Format::Text, "4111-1111-1111-1111", out));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MaskPartialText);

void BM_MaskDigitsText(benchmark::State& state) {
  const Spec spec{Strategy::Digits, 0, 4, {}};
  std::string out;
  for (auto _ : state) {
    out.clear();
    benchmark::DoNotOptimize(gh::masking::mask_value(spec, kKey, kText, Format::Text, "4111-1111-1111-1111", out));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MaskDigitsText);

// A 10-column row like a customers table: id, name, email, phone, city, country, created, balance,
// notes, status; name, email and phone are masked.
std::string customer_row_body() {
  const std::vector<std::string> v = {"1048576",   "Alice Smith", "alice.smith@example.com", "+1 555 010 9999",
                                      "Springfield", "US",        "2021-06-15",              "1234.56",
                                      "prefers email contact, VIP since 2019", "active"};
  std::string b;
  gh::append_be16(b, std::uint16_t(v.size()));
  for (const std::string& s : v) {
    gh::append_be32(b, std::uint32_t(s.size()));
    b += s;
  }
  return b;
}

std::vector<ColumnMask> customer_plan(const Spec* masked) {
  const std::uint32_t types[] = {kInt4, kText, kText, kText, kVarchar, kVarchar, kDate, kNumeric, kText, kText};
  std::vector<ColumnMask> plan;
  for (int i = 0; i < 10; ++i) plan.push_back({(i >= 1 && i <= 3) ? masked : nullptr, types[i], Format::Text});
  return plan;
}

void rewrite_rows(benchmark::State& state, const Spec* masked) {
  const std::string body = customer_row_body();
  const std::vector<ColumnMask> plan = customer_plan(masked);
  std::string out;
  out.reserve(1 << 16);
  for (auto _ : state) {
    out.clear();
    benchmark::DoNotOptimize(gh::masking::rewrite_data_row(body, plan, kKey, out));
  }
  state.SetItemsProcessed(state.iterations());  // rows/s
  state.SetBytesProcessed(std::int64_t(state.iterations()) * std::int64_t(body.size() + 5));
}

void BM_RewriteDataRow10Cols3Masked(benchmark::State& state) {
  const Spec spec{Strategy::Redact, 0, 4, {}};
  rewrite_rows(state, &spec);
}
BENCHMARK(BM_RewriteDataRow10Cols3Masked);

void BM_RewriteDataRow10Cols3Hashed(benchmark::State& state) {
  const Spec spec{Strategy::Hash, 0, 4, {}};
  rewrite_rows(state, &spec);
}
BENCHMARK(BM_RewriteDataRow10Cols3Hashed);

void BM_RewriteDataRow10ColsNoneMasked(benchmark::State& state) { rewrite_rows(state, nullptr); }
BENCHMARK(BM_RewriteDataRow10ColsNoneMasked);

// 1000 text-format rows per CopyData payload, 3 of 10 columns redacted.
void BM_CopyText(benchmark::State& state) {
  const Spec spec{Strategy::Redact, 0, 4, {}};
  const std::vector<ColumnMask> plan = customer_plan(&spec);
  std::string payload;
  for (int i = 0; i < 1000; ++i)
    payload += std::to_string(i) +
               "\tAlice Smith\talice.smith@example.com\t+1 555 010 9999\tSpringfield\tUS\t2021-06-15\t1234.56\t"
               "prefers email\\tcontact, VIP\tactive\n";
  std::string out;
  out.reserve(payload.size() * 2);
  for (auto _ : state) {
    gh::masking::CopyMasker m(gh::masking::CopyFormat::Text, plan, std::string(kKey));
    out.clear();
    benchmark::DoNotOptimize(m.feed(payload, out));
  }
  state.SetItemsProcessed(std::int64_t(state.iterations()) * 1000);  // rows/s
  state.SetBytesProcessed(std::int64_t(state.iterations()) * std::int64_t(payload.size()));
}
BENCHMARK(BM_CopyText);

}  // namespace
