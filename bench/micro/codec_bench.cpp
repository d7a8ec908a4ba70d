// Hot functions of the relay path, measured with Google Benchmark.
#include <benchmark/benchmark.h>

#include <string>

#include "protocol/codec.h"

namespace {

std::string pgbench_select_batch() {
  // What pgbench -M prepared sends per transaction: Bind, Execute, Sync.
  std::string out;
  auto msg = [&](char t, const std::string& body) { gh::protocol::write_message(out, t, body); };
  msg('B', std::string("\0P0_1\0\0\0\0\1\0\0\0\x04" "1234\0\0", 22));
  msg('E', std::string("\0\0\0\0\0", 5));
  msg('S', "");
  return out;
}

void BM_DecodeFrontendBatch(benchmark::State& state) {
  const std::string batch = pgbench_select_batch();
  for (auto _ : state) {
    std::string_view v = batch;
    std::size_t n = 0;
    for (;;) {
      auto r = gh::protocol::decode_frontend(v, 64u << 20);
      if (r.status != gh::protocol::Decode::Message) break;
      v.remove_prefix(r.frame.wire_size);
      ++n;
    }
    benchmark::DoNotOptimize(n);
  }
}
BENCHMARK(BM_DecodeFrontendBatch);

void BM_ScanResultStream(benchmark::State& state) {
  // 100 DataRows of ~120 bytes, CommandComplete, ReadyForQuery.
  std::string s;
  auto msg = [&](char t, const std::string& body) { gh::protocol::write_message(s, t, body); };
  for (int i = 0; i < 100; ++i) msg('D', std::string(118, 'x'));
  msg('C', std::string("SELECT 100\0", 11));
  msg('Z', "I");
  for (auto _ : state) {
    gh::protocol::StreamScanner scanner(&gh::protocol::is_backend_type);
    int events = 0;
    scanner.scan(s, [&](const gh::protocol::ScanEvent&) { ++events; });
    benchmark::DoNotOptimize(events);
  }
  state.SetBytesProcessed(std::int64_t(state.iterations()) * std::int64_t(s.size()));
}
BENCHMARK(BM_ScanResultStream);

}  // namespace

BENCHMARK_MAIN();
