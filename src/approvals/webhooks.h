#pragma once
// Notifications of approval requests and access requests to webhooks (issue 7): a JSON payload
// for your own receivers, or a Slack incoming-webhook payload. Signed with HMAC-SHA256 when the
// webhook has a secret; retried with exponential backoff; delivered in order per webhook.
//
// The Notifier runs one thread per webhook, each with its own bounded queue, so a receiver that
// is down delays only its own deliveries. notify() never blocks on the network: it copies the
// record and returns. Receivers: docs/webhooks.md (headers, signature scheme, payloads).
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "approvals/approvals.h"

namespace gh::approvals {

struct WebhookTarget {
  std::string url;
  std::string secret;  // HMAC-SHA256 key of X-Gatehouse-Signature; "" sends no signature
  enum class Format { Json, Slack } format = Format::Json;
};

// The event a change is worth sending, or nothing: "approval.pending" (a new request; later
// changes while it stays pending are not events), "approval.approved|rejected|cancelled|expired",
// "access.pending|approved|rejected|revoked|expired". Consumed statements are not sent.
std::optional<std::string> webhook_event(const Request* r, const AccessRequest* a);
// When the change happened: created for pending, revoked for revoked, expiry for an expired
// grant, decided otherwise (0 when unknown).
TimeUs event_time_us(const Request* r, const AccessRequest* a);

// The bodies, exactly as POSTed. `console_base` is admin.public_url (links are
// console_base + "/approvals/" + id).
std::string json_payload(const std::string& event, const std::string& delivery, TimeUs time_us, const Request* r,
                         const AccessRequest* a, const std::string& console_base);
std::string slack_payload(const std::string& event, const Request* r, const AccessRequest* a,
                          const std::string& console_base);
// "sha256=" + hex(HMAC-SHA256(secret, timestamp + "." + body)).
std::string webhook_signature(std::string_view secret, std::int64_t timestamp, std::string_view body);
// Retry-After as a delay: delta-seconds or an HTTP-date (relative to `now_s`); nothing when absent
// or unreadable.
std::optional<std::chrono::seconds> parse_retry_after(std::string_view value, std::int64_t now_s);

struct NotifierOptions {
  std::size_t queue_limit = 10000;                               // per webhook; when full the oldest is dropped
  int max_attempts = 5;                                          // connection errors, 5xx and 429 are retried
  std::chrono::milliseconds first_backoff{1000};                 // then doubled: 1 s, 2 s, 4 s, 8 s
  std::chrono::milliseconds max_delay{std::chrono::minutes(5)};  // cap on backoff and Retry-After
  std::chrono::seconds timeout{5};                               // connect, read and write, each
  std::string ca_file;                                           // https: trust these CAs (default: the system's)
  enum class Level { Debug, Info, Warn, Error };
  std::function<void(Level, const std::string&)> log;  // empty: silent
  // Tests: replaces the wait between attempts (returns false to give up). Default: an
  // interruptible wait that the destructor ends.
  std::function<bool(std::chrono::milliseconds)> wait;
};

class Notifier {
 public:
  Notifier(std::vector<WebhookTarget> targets, std::string console_base, NotifierOptions opt = {});
  // Stops the threads: the attempt in flight finishes (at most `timeout`), retries and queued
  // events are abandoned and counted as dropped (logged).
  ~Notifier();
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  // An on_change listener: queues a copy of the record for every webhook when the change is an
  // event (webhook_event). Thread-safe, never blocks on the network.
  void notify(const Request* r, const AccessRequest* a);

  struct Stats {
    std::uint64_t queued = 0, delivered = 0, failed = 0, dropped = 0, attempts = 0;
  };
  Stats stats() const;  // summed over webhooks
  // Waits until every queued event was delivered or given up; false on timeout (tests).
  bool flush(std::chrono::milliseconds timeout);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gh::approvals
