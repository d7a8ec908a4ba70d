#include "identity/jwks.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <thread>

#include <nlohmann/json.hpp>
#include <openssl/ssl.h>

#include "identity/http.h"

namespace gh::identity {

using SteadyClock = std::chrono::steady_clock;

namespace {
// OIDC Discovery §4: an issuer that ends in '/' (Auth0's do) loses it before the well-known path.
std::string without_trailing_slash(std::string s) {
  if (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}
}  // namespace

struct IssuerKeys::State {
  IssuerConfig cfg;
  KeyLog log;
  mutable std::mutex mu;
  std::condition_variable cv;
  std::shared_ptr<const jose::JwkSet> keys;
  std::string jwks_uri;
  std::vector<std::function<void()>> waiters;
  bool stop = false;
  bool refresh_asked = false;
  Status status;
  SteadyClock::time_point last_attempt{};

  void say(bool error, const std::string& m) {
    if (log) log(error, m);
  }

  http::Options options() const {
    http::Options o;
    o.ca_file = cfg.ca_file;
    o.timeout = std::chrono::seconds(5);
    return o;
  }

  // Discovery: the document's issuer must be the configured one (OIDC Discovery §4.3).
  bool discover(std::string& error) {
    const std::string url = cfg.discovery_url.empty() ? without_trailing_slash(cfg.issuer) + "/.well-known/openid-configuration"
                                                      : cfg.discovery_url;
    auto r = http::get(url, options());
    if (!r) return error = "discovery: " + r.error().message, false;
    if (r->status != 200) return error = "discovery: " + url + " answered HTTP " + std::to_string(r->status), false;
    auto doc = nlohmann::json::parse(r->body, nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) return error = "discovery: " + url + " is not a JSON object", false;
    auto iss = doc.find("issuer");
    if (iss == doc.end() || !iss->is_string() || iss->get<std::string>() != cfg.issuer)
      return error = "discovery: " + url + " names issuer " + (iss != doc.end() ? iss->dump() : "(none)") +
                     ", not \"" + cfg.issuer + "\"",
             false;
    auto ju = doc.find("jwks_uri");
    if (ju == doc.end() || !ju->is_string()) return error = "discovery: " + url + " has no jwks_uri", false;
    std::string uri = ju->get<std::string>();
    if (uri.rfind("https://", 0) != 0 && !http::loopback_url(uri))
      return error = "discovery: jwks_uri " + uri + " is not https", false;
    std::lock_guard lk(mu);
    jwks_uri = std::move(uri);
    return true;
  }

  bool fetch(std::string& error) {
    std::string uri;
    {
      std::lock_guard lk(mu);
      uri = cfg.jwks_uri.empty() ? jwks_uri : cfg.jwks_uri;
    }
    if (uri.empty()) {
      if (!discover(error)) return false;
      std::lock_guard lk(mu);
      uri = jwks_uri;
    }
    auto r = http::get(uri, options());
    if (!r || r->status != 200) {
      error = !r ? "keys: " + r.error().message : "keys: " + uri + " answered HTTP " + std::to_string(r->status);
      std::lock_guard lk(mu);
      if (cfg.jwks_uri.empty()) jwks_uri.clear();  // rediscover next time: the URI may have moved
      return false;
    }
    auto set = jose::parse_jwks(r->body);
    if (!set) return error = "keys: " + uri + ": " + set.error().message, false;
    if (set->keys.empty()) return error = "keys: " + uri + " holds no usable signing key", false;
    for (const auto& why : set->skipped) say(false, "issuer " + cfg.issuer + ": skipped a key: " + why);
    std::string kids;
    for (const auto& k : set->keys) kids += (kids.empty() ? "" : ", ") + (k.kid.empty() ? "(no kid)" : k.kid);
    bool changed;
    {
      std::lock_guard lk(mu);
      changed = !keys || keys->keys.size() != set->keys.size() ||
                !std::equal(keys->keys.begin(), keys->keys.end(), set->keys.begin(),
                            [](const jose::Jwk& a, const jose::Jwk& b) { return a.kid == b.kid; });
      keys = std::make_shared<const jose::JwkSet>(std::move(*set));
    }
    if (changed) say(false, "issuer " + cfg.issuer + ": " + std::to_string(keys->keys.size()) + " signing keys (" + kids + ")");
    return true;
  }

  static void run(std::shared_ptr<State> s) {
    std::unique_lock lk(s->mu);
    auto next_periodic = SteadyClock::now();  // first fetch at once
    unsigned failures_in_row = 0;
    while (!s->stop) {
      const auto min_gap = std::chrono::duration_cast<SteadyClock::duration>(s->cfg.min_refresh_interval);
      auto due = next_periodic;
      if (s->refresh_asked) due = std::min(due, s->last_attempt + min_gap);
      if (SteadyClock::now() < due) {
        s->cv.wait_until(lk, due);
        continue;
      }
      s->refresh_asked = false;
      s->last_attempt = SteadyClock::now();
      lk.unlock();
      std::string error;
      const bool ok = s->fetch(error);
      lk.lock();
      ++s->status.fetches;
      if (ok) {
        failures_in_row = 0;
        s->status.last_error.clear();
        s->status.last_success = std::chrono::system_clock::now();
        s->status.keys = s->keys->keys.size();
        next_periodic = SteadyClock::now() + s->cfg.refresh_interval;
      } else {
        ++s->status.failures;
        s->status.last_error = error;
        // Retry soon, backing off: 1 s, 2 s, 4 s ... at most a minute (or the refresh interval).
        const auto backoff = std::min<std::chrono::seconds>(std::chrono::seconds(1u << std::min(failures_in_row, 6u)),
                                                           std::min<std::chrono::seconds>(std::chrono::seconds(60),
                                                                                          s->cfg.refresh_interval));
        ++failures_in_row;
        next_periodic = SteadyClock::now() + backoff;
        lk.unlock();
        s->say(true, "issuer " + s->cfg.issuer + ": " + error + (s->keys ? " (keeping the keys held)" : ""));
        lk.lock();
      }
      auto waiters = std::move(s->waiters);
      s->waiters.clear();
      lk.unlock();
      for (auto& w : waiters) w();
      lk.lock();
    }
    // Stopped: nobody should wait forever on a cache that is gone.
    auto waiters = std::move(s->waiters);
    lk.unlock();
    for (auto& w : waiters) w();
  }
};

namespace {

// Fetch threads are not joined when their cache is dropped (a reload must not wait for a fetch in
// flight), but they must not outlive the process' static objects either: a thread still inside
// OpenSSL or the logger while those are torn down at exit crashes the process. The keeper joins
// them at exit (each has been told to stop by then; a fetch in flight ends within its timeout).
// It initialises OpenSSL and cpp-httplib's statics first, so they are torn down after the keeper
// has joined.
class ThreadKeeper {
 public:
  ThreadKeeper() {
    OPENSSL_init_ssl(0, nullptr);
    http::prepare();
  }
  ~ThreadKeeper() {
    std::lock_guard lk(mu_);
    for (auto& [t, done] : threads_)
      if (t.joinable()) t.join();
  }
  void add(std::thread t, std::shared_ptr<std::atomic<bool>> done) {
    std::lock_guard lk(mu_);
    // Threads whose caches are gone and that have finished are joined now (reloads add threads).
    for (auto it = threads_.begin(); it != threads_.end();) {
      if (it->second->load()) {
        it->first.join();
        it = threads_.erase(it);
      } else {
        ++it;
      }
    }
    threads_.emplace_back(std::move(t), std::move(done));
  }

 private:
  std::mutex mu_;
  std::vector<std::pair<std::thread, std::shared_ptr<std::atomic<bool>>>> threads_;
};

ThreadKeeper& keeper() {
  static ThreadKeeper k;
  return k;
}

}  // namespace

IssuerKeys::IssuerKeys(IssuerConfig cfg, KeyLog log) : state_(std::make_shared<State>()) {
  state_->cfg = std::move(cfg);
  state_->log = std::move(log);
  auto done = std::make_shared<std::atomic<bool>>(false);
  auto& k = keeper();
  k.add(std::thread([s = state_, done] {
          State::run(s);
          done->store(true);
        }),
        done);
}

IssuerKeys::~IssuerKeys() {
  {
    std::lock_guard lk(state_->mu);
    state_->stop = true;
  }
  state_->cv.notify_all();
}

const IssuerConfig& IssuerKeys::config() const { return state_->cfg; }

std::shared_ptr<const jose::JwkSet> IssuerKeys::current() const {
  std::lock_guard lk(state_->mu);
  return state_->keys;
}

void IssuerKeys::refresh(std::function<void()> done) {
  {
    std::lock_guard lk(state_->mu);
    if (!state_->stop) {
      state_->refresh_asked = true;
      state_->waiters.push_back(std::move(done));
      done = nullptr;
    }
  }
  if (done) {
    done();
    return;
  }
  state_->cv.notify_all();
}

IssuerKeys::Status IssuerKeys::status() const {
  std::lock_guard lk(state_->mu);
  return state_->status;
}

std::vector<std::shared_ptr<IssuerKeys>> KeyRegistry::use(const std::vector<IssuerConfig>& issuers) {
  std::lock_guard lk(mu_);
  std::vector<std::shared_ptr<IssuerKeys>> out;
  for (const auto& c : issuers) {
    const std::string key = c.issuer + '\n' + c.discovery_url + '\n' + c.jwks_uri + '\n' + c.ca_file + '\n' +
                            std::to_string(c.refresh_interval.count()) + '\n' +
                            std::to_string(c.min_refresh_interval.count());
    auto& slot = by_key_[key];
    auto cache = slot.lock();
    if (!cache) {
      cache = std::make_shared<IssuerKeys>(c, log_);
      slot = cache;
    }
    out.push_back(std::move(cache));
  }
  for (auto it = by_key_.begin(); it != by_key_.end();) it = it->second.expired() ? by_key_.erase(it) : std::next(it);
  return out;
}

}  // namespace gh::identity
