#include "proxy/cancel_registry.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

namespace gh::proxy {

namespace {
std::uint32_t random_secret(std::mt19937_64& rng) {
  std::uint32_t secret = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&secret), sizeof secret) != 1) secret = std::uint32_t(rng());
  return secret;
}
}  // namespace

bool CancelRegistry::taken(std::uint32_t process_id, std::uint32_t secret) const {
  const auto [from, to] = entries_.equal_range(process_id);
  for (auto it = from; it != to; ++it)
    if (it->second.secret == secret) return true;
  return false;
}

protocol::BackendKeyData CancelRegistry::add(CancelRoute route) {
  std::lock_guard lock(mu_);
  std::uint32_t pid = route.backend_key.process_id;
  if (pid == 0) {  // a server that sent no BackendKeyData: an id no server process has here
    do {
      pid = std::uint32_t(rng_() & 0x7fffffff);
    } while (pid == 0 || entries_.count(pid));
  }
  std::uint32_t secret = 0;
  do {
    secret = random_secret(rng_);
  } while (taken(pid, secret) || secret == route.backend_key.secret_key);
  entries_.emplace(pid, Entry{secret, std::move(route)});
  return {pid, secret};
}

void CancelRegistry::remove(const protocol::BackendKeyData& key) {
  std::lock_guard lock(mu_);
  const auto [from, to] = entries_.equal_range(key.process_id);
  for (auto it = from; it != to; ++it)
    if (it->second.secret == key.secret_key) {
      entries_.erase(it);
      return;
    }
}

std::optional<CancelRoute> CancelRegistry::find(std::uint32_t process_id, std::uint32_t secret) const {
  std::lock_guard lock(mu_);
  const auto [from, to] = entries_.equal_range(process_id);
  std::optional<CancelRoute> found;
  for (auto it = from; it != to; ++it)  // every candidate compared in constant time
    if (CRYPTO_memcmp(&it->second.secret, &secret, sizeof secret) == 0) found = it->second.route;
  return found;
}

}  // namespace gh::proxy
