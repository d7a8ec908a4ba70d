#include "base/metrics.h"

#include <fmt/format.h>

namespace gh {

Metrics::Metrics(std::size_t workers) {
  for (std::size_t i = 0; i < workers; ++i) workers_.push_back(std::make_unique<WorkerMetrics>());
}

void append_metric(std::string& out, std::string_view name, std::string_view type, std::string_view help,
                   std::uint64_t value) {
  out += fmt::format("# HELP {0} {1}\n# TYPE {0} {2}\n{0} {3}\n", name, help, type, value);
}

std::string Metrics::render_prometheus() const {
  auto sum = [&](auto member) {
    std::uint64_t s = 0;
    for (const auto& w : workers_) s += ((*w).*member).load(std::memory_order_relaxed);
    return s;
  };
  std::string out;
  auto counter = [&](std::string_view name, std::string_view help, std::uint64_t v) {
    append_metric(out, name, "counter", help, v);
  };
  const auto opened = sum(&WorkerMetrics::connections_opened);
  const auto closed = sum(&WorkerMetrics::connections_closed);
  counter("gatehouse_connections_total", "Client connections accepted.", opened);
  append_metric(out, "gatehouse_connections_active", "gauge", "Client connections open now.",
                opened >= closed ? opened - closed : 0);
  out +=
      "# HELP gatehouse_worker_connections_active Client connections open now, per worker thread (sessions are "
      "spread evenly over them).\n"
      "# TYPE gatehouse_worker_connections_active gauge\n";
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    const auto o = workers_[i]->connections_opened.load(std::memory_order_relaxed);
    const auto c = workers_[i]->connections_closed.load(std::memory_order_relaxed);
    out += fmt::format("gatehouse_worker_connections_active{{worker=\"{}\"}} {}\n", i, o >= c ? o - c : 0);
  }
  counter("gatehouse_connections_rejected_total", "Connections refused (limits, draining).",
          sum(&WorkerMetrics::connections_rejected));
  counter("gatehouse_auth_failures_total", "Failed client authentications.", sum(&WorkerMetrics::auth_failures));
  counter("gatehouse_protocol_errors_total", "Sessions ended for malformed or out-of-phase messages.",
          sum(&WorkerMetrics::protocol_errors));
  counter("gatehouse_backend_failures_total", "Backend connect failures and lost backends.",
          sum(&WorkerMetrics::backend_failures));
  counter("gatehouse_cancel_requests_total", "CancelRequests received.", sum(&WorkerMetrics::cancel_requests));
  counter("gatehouse_statements_total", "Query, Execute and FunctionCall messages relayed.", sum(&WorkerMetrics::statements));
  counter("gatehouse_statement_errors_total", "ErrorResponses sent to clients for statements (database errors and refusals).",
          sum(&WorkerMetrics::statement_errors));
  counter("gatehouse_statements_blocked_total", "Statements refused by policy before reaching the database.",
          sum(&WorkerMetrics::statements_blocked));
  counter("gatehouse_statements_review_total", "Statements whose decision was review.",
          sum(&WorkerMetrics::statements_reviewed));
  counter("gatehouse_statements_unknown_total", "Statements that could not be parsed or classified.",
          sum(&WorkerMetrics::statements_unknown));
  counter("gatehouse_bytes_client_to_backend_total", "Bytes relayed from clients to backends.",
          sum(&WorkerMetrics::bytes_client_to_backend));
  counter("gatehouse_bytes_backend_to_client_total", "Bytes relayed from backends to clients.",
          sum(&WorkerMetrics::bytes_backend_to_client));
  out +=
      "# HELP gatehouse_statement_duration_seconds Time from a statement (Query or Sync) to its ReadyForQuery.\n"
      "# TYPE gatehouse_statement_duration_seconds histogram\n";
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i <= kLatencyBucketsSeconds.size(); ++i) {
    std::uint64_t b = 0;
    for (const auto& w : workers_) b += w->latency_buckets[i].load(std::memory_order_relaxed);
    cumulative += b;
    if (i < kLatencyBucketsSeconds.size())
      out += fmt::format("gatehouse_statement_duration_seconds_bucket{{le=\"{}\"}} {}\n", kLatencyBucketsSeconds[i],
                         cumulative);
    else
      out += fmt::format("gatehouse_statement_duration_seconds_bucket{{le=\"+Inf\"}} {}\n", cumulative);
  }
  out += fmt::format("gatehouse_statement_duration_seconds_sum {}\n",
                     double(sum(&WorkerMetrics::latency_sum_us)) / 1e6);
  out += fmt::format("gatehouse_statement_duration_seconds_count {}\n", sum(&WorkerMetrics::latency_count));
  return out;
}

}  // namespace gh
