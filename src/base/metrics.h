#pragma once
// Process metrics, sharded per worker thread so the hot path only touches its own cache
// lines (relaxed atomics, no locks). The admin plane sums the shards when scraped.
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace gh {

inline constexpr std::array<double, 14> kLatencyBucketsSeconds = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30};

struct alignas(64) WorkerMetrics {
  using C = std::atomic<std::uint64_t>;
  C connections_opened{0};
  C connections_closed{0};
  C connections_rejected{0};  // over max_connections, during draining
  C auth_failures{0};
  C protocol_errors{0};       // malformed / out-of-phase client or backend messages
  C backend_failures{0};      // connect failure or backend lost mid-session
  C cancel_requests{0};
  C statements{0};            // Query and Execute messages from clients
  C statement_errors{0};      // ErrorResponse from backends
  C statements_blocked{0};    // refused by policy (deny, or review/mask not yet available)
  C statements_reviewed{0};   // decisions of review (held or refused)
  C statements_unknown{0};    // unparseable or unknown statements
  C bytes_client_to_backend{0};
  C bytes_backend_to_client{0};
  std::array<C, kLatencyBucketsSeconds.size() + 1> latency_buckets{};  // last = +Inf
  C latency_sum_us{0};
  C latency_count{0};

  void observe_latency_us(std::uint64_t us) noexcept {
    std::size_t i = 0;
    const double s = double(us) / 1e6;
    while (i < kLatencyBucketsSeconds.size() && s > kLatencyBucketsSeconds[i]) ++i;
    latency_buckets[i].fetch_add(1, std::memory_order_relaxed);
    latency_sum_us.fetch_add(us, std::memory_order_relaxed);
    latency_count.fetch_add(1, std::memory_order_relaxed);
  }
};

// Appends one metric with its HELP and TYPE lines (type "counter" or "gauge") to `out`.
void append_metric(std::string& out, std::string_view name, std::string_view type, std::string_view help,
                   std::uint64_t value);

class Metrics {
 public:
  explicit Metrics(std::size_t workers);
  WorkerMetrics& worker(std::size_t i) { return *workers_[i]; }
  std::size_t workers() const { return workers_.size(); }
  // Prometheus text exposition format 0.0.4.
  std::string render_prometheus() const;

 private:
  std::vector<std::unique_ptr<WorkerMetrics>> workers_;
};

}  // namespace gh
