#pragma once
// The signing keys of trusted issuers, fetched over HTTP and cached. Each issuer has one
// fetch thread of its own (blocking cpp-httplib calls never run on a proxy worker; ADR 0006):
// discovery, then the JWKS, refreshed every refresh_interval, and again when a login presents
// an unknown `kid` -- at most once per min_refresh_interval, however many logins ask, so a
// flood of bogus kids cannot hammer the IdP. A failed fetch keeps the keys already held, so a
// brief IdP outage does not stop logins.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "identity/jose.h"
#include "identity/oidc.h"

namespace gh::identity {

// Where the key cache reports fetch problems and key changes (the proxy logs them).
using KeyLog = std::function<void(bool is_error, const std::string& message)>;

class IssuerKeys {
 public:
  IssuerKeys(IssuerConfig cfg, KeyLog log);
  ~IssuerKeys();
  IssuerKeys(const IssuerKeys&) = delete;
  IssuerKeys& operator=(const IssuerKeys&) = delete;

  const IssuerConfig& config() const;
  std::shared_ptr<const jose::JwkSet> current() const;
  // Asks for a refetch (a login presented a kid the cache does not hold, or no keys are held
  // yet). `done` runs on the fetch thread once the next fetch attempt has finished, which is
  // no sooner than min_refresh_interval after the previous one.
  void refresh(std::function<void()> done);

  struct Status {
    std::size_t keys = 0;
    std::uint64_t fetches = 0, failures = 0;
    std::string last_error;  // "" after a successful fetch
    std::chrono::system_clock::time_point last_success{};
  };
  Status status() const;

 private:
  struct State;  // shared with the fetch thread, which is joined only at exit: dropping a
                 // cache never waits for a fetch in flight
  std::shared_ptr<State> state_;
};

// Every issuer's keys, kept across configuration reloads: an issuer whose settings did not
// change keeps its cache (and its keys through an IdP outage).
class KeyRegistry {
 public:
  explicit KeyRegistry(KeyLog log) : log_(std::move(log)) {}
  // The caches for these issuers, created or reused; caches of issuers no longer listed are
  // dropped once nobody holds them.
  std::vector<std::shared_ptr<IssuerKeys>> use(const std::vector<IssuerConfig>& issuers);

 private:
  KeyLog log_;
  std::mutex mu_;
  std::map<std::string, std::weak_ptr<IssuerKeys>> by_key_;  // issuer + URLs + CA + intervals
};

}  // namespace gh::identity
