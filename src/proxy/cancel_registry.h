#pragma once
// Maps the BackendKeyData the proxy hands to clients onto the real backend's key and address.
// The client is given the server's own process id (so pg_backend_pid(), pg_stat_activity,
// NOTIFY senders and pg_terminate_backend/pg_cancel_backend agree with what the client was told,
// as client libraries and their test suites expect) with a secret of the proxy's own: the
// server's secret never leaves the proxy. Process ids of different servers can be equal, so an
// entry is found by the pair. Touched at connect, disconnect and cancel only, never per statement.
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>

#include "audit/event.h"
#include "protocol/codec.h"

namespace gh::proxy {

struct CancelRoute {
  protocol::BackendKeyData backend_key;
  std::string target;
  std::string host;
  std::uint16_t port = 0;
  bool tls = false;  // send the cancel over TLS (backend tls != disable)
  // Told about the cancel first, from any thread; true: a statement held for approval, which the
  // proxy cancels itself, so nothing is sent to the server (a cancel sent there would land on
  // whatever the session runs next).
  std::function<bool()> on_cancel;
  // The session's audit context: a cancel is recorded as acting on that session (null: not audited).
  std::shared_ptr<const audit::SessionContext> audit;
};

class CancelRegistry {
 public:
  // Returns the key to give the client for `route`: the server's process id (a random one when
  // the server sent none) and a fresh random secret, unique as a pair.
  protocol::BackendKeyData add(CancelRoute route);
  void remove(const protocol::BackendKeyData& key);
  // The route when both process id and secret match.
  std::optional<CancelRoute> find(std::uint32_t process_id, std::uint32_t secret) const;

 private:
  struct Entry {
    std::uint32_t secret;
    CancelRoute route;
  };
  bool taken(std::uint32_t process_id, std::uint32_t secret) const;  // under mu_
  mutable std::mutex mu_;
  std::unordered_multimap<std::uint32_t, Entry> entries_;  // by process id
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace gh::proxy
