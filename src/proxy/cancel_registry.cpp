#include "proxy/cancel_registry.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

namespace gh::proxy {

protocol::BackendKeyData CancelRegistry::add(CancelRoute route) {
  std::uint32_t secret = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&secret), sizeof secret) != 1) secret = std::uint32_t(rng_());
  std::lock_guard lock(mu_);
  std::uint32_t pid = 0;
  do {
    pid = std::uint32_t(rng_() & 0x7fffffff);
  } while (pid == 0 || entries_.count(pid));
  entries_.emplace(pid, Entry{secret, std::move(route)});
  return {pid, secret};
}

void CancelRegistry::remove(std::uint32_t process_id) {
  std::lock_guard lock(mu_);
  entries_.erase(process_id);
}

std::optional<CancelRoute> CancelRegistry::find(std::uint32_t process_id, std::uint32_t secret) const {
  std::lock_guard lock(mu_);
  auto it = entries_.find(process_id);
  if (it == entries_.end()) return std::nullopt;
  if (CRYPTO_memcmp(&it->second.secret, &secret, sizeof secret) != 0) return std::nullopt;
  return it->second.route;
}

}  // namespace gh::proxy
