#pragma once
// Maps the BackendKeyData the proxy hands to clients onto the real backend's key and address.
// Touched at connect, disconnect and cancel only — never per statement.
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>

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
};

class CancelRegistry {
 public:
  // Returns a fresh key (unique process id, random secret) for `route`.
  protocol::BackendKeyData add(CancelRoute route);
  void remove(std::uint32_t process_id);
  // The route when both process id and secret match.
  std::optional<CancelRoute> find(std::uint32_t process_id, std::uint32_t secret) const;

 private:
  struct Entry {
    std::uint32_t secret;
    CancelRoute route;
  };
  mutable std::mutex mu_;
  std::unordered_map<std::uint32_t, Entry> entries_;
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace gh::proxy
