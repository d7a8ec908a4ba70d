#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <deque>
#include <limits>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

#include "approvals/approvals.h"

namespace gh::approvals {

namespace {

constexpr std::string_view kStateNames[] = {"pending", "approved", "rejected", "cancelled", "expired", "consumed"};
constexpr TimeUs kUsPerSecond = 1'000'000;
constexpr TimeUs kGrantCacheMaxAgeUs = 2 * kUsPerSecond;  // another process may share the store
constexpr std::size_t kNoLimit = std::numeric_limits<std::size_t>::max();
constexpr int kAttempts = 3;                    // a change that lost a race with another node is redone
constexpr std::size_t kAnnouncedMax = 4096;     // records whose last announced revision is kept

bool conflict(const Error& e) { return e.sqlstate == kConflict; }

Result<std::string> new_id(std::string_view prefix) {
  static constexpr char kBase32[] = "abcdefghijklmnopqrstuvwxyz234567";
  unsigned char bytes[20];
  if (RAND_bytes(bytes, sizeof bytes) != 1)
    return fail("XX000", "cannot make a request id: the system random generator failed");
  std::string id(prefix);
  for (unsigned char b : bytes) id += kBase32[b & 31];  // 256 is a multiple of 32: uniform
  return id;
}

bool same_email(std::string_view a, std::string_view b) {
  return !a.empty() && a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

bool shares_group(const std::vector<std::string>& mine, const std::vector<std::string>& allowed) {
  auto allowed_group = [&](const std::string& g) {
    return std::find(allowed.begin(), allowed.end(), g) != allowed.end();
  };
  return std::any_of(mine.begin(), mine.end(), allowed_group);
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

std::string human_duration(std::chrono::seconds d) {
  const auto s = d.count();
  if (s % 3600 == 0) return std::to_string(s / 3600) + " h";
  if (s % 60 == 0) return std::to_string(s / 60) + " min";
  return std::to_string(s) + " s";
}

DecideError decide_error(DecideError::Kind kind, std::string message) { return DecideError{kind, std::move(message)}; }

// The rules shared by statement reviews and access requests. `what` names the record for
// messages ("request apr_x", "access request acc_x"). On success returns the vote to add.
template <class R>
tl::expected<Vote, DecideError> check_vote(const R& r, std::string_view what, const Person& reviewer, bool approve,
                                           const std::string& comment, const Settings& settings, TimeUs now) {
  if (r.state != State::Pending)
    return tl::unexpected(decide_error(DecideError::Kind::NotPending,
                                       std::string(what) + " is already " + std::string(state_name(r.state))));
  if ((!r.requester.subject.empty() && reviewer.subject == r.requester.subject) ||
      same_email(reviewer.email, r.requester.email))
    return tl::unexpected(decide_error(DecideError::Kind::SelfApproval,
                                       "no one approves their own request: " + std::string(what) + " was made by " +
                                           r.requester.display()));
  Vote v{reviewer, approve, comment, now, false};
  if (!r.reviewer_groups.empty() && !shares_group(reviewer.groups, r.reviewer_groups)) {
    if (!shares_group(reviewer.groups, settings.break_glass_groups))
      return tl::unexpected(decide_error(DecideError::Kind::NotAReviewer,
                                         reviewer.display() + " may not decide " + std::string(what) +
                                             ": only members of " + join(r.reviewer_groups) + " may"));
    v.break_glass = true;
  }
  // One vote per person: the same subject, or the same email (any case, any issuer) as for
  // self-approval above; two identities of one person were counted as two reviewers (found by
  // adversarial testing: the two-person rule passed with bob's two accounts).
  for (const auto& prior : r.votes)
    if (prior.reviewer.subject == reviewer.subject || same_email(prior.reviewer.email, reviewer.email))
      return tl::unexpected(decide_error(DecideError::Kind::AlreadyVoted,
                                         reviewer.display() + " has already voted on " + std::string(what)));
  return v;
}

// Adds the vote; true when it decided the record (a rejection, or the last approval needed).
template <class R>
bool apply_vote(R& r, Vote v, TimeUs now) {
  const bool approve = v.approve;
  r.votes.push_back(std::move(v));
  if (!approve) {
    r.state = State::Rejected;
    r.decided_us = now;
    return true;
  }
  const auto approvals = std::count_if(r.votes.begin(), r.votes.end(), [](const Vote& x) { return x.approve; });
  if (approvals < std::max(1, r.approvals_required)) return false;
  r.state = State::Approved;
  r.decided_us = now;
  return true;
}

}  // namespace

TimeUs now_us() {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

std::string_view state_name(State s) { return kStateNames[static_cast<std::size_t>(s)]; }

std::optional<State> parse_state(std::string_view name) {
  for (std::size_t i = 0; i < std::size(kStateNames); ++i)
    if (kStateNames[i] == name) return static_cast<State>(i);
  return std::nullopt;
}

// Framing: "<len>:<statement>", then per parameter "N" (null) or "<len>:<value>". Every piece
// is self-delimiting, so no two different inputs frame to the same bytes.
std::string match_key(std::string_view statement, const std::vector<std::optional<std::string>>& parameters) {
  std::string framed;
  framed.reserve(statement.size() + 16);
  framed += std::to_string(statement.size());
  framed += ':';
  framed += statement;
  for (const auto& p : parameters) {
    if (!p) {
      framed += 'N';
      continue;
    }
    framed += std::to_string(p->size());
    framed += ':';
    framed += *p;
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(framed.data(), framed.size(), digest, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 15];
  }
  return hex;
}

struct Service::Impl {
  struct Watch {
    std::uint64_t token = 0;
    std::string id;
    std::function<void(const Request&)> fn;
    std::recursive_mutex m;  // held while `fn` runs; recursive so `fn` may unwatch itself
    bool alive = true;       // guarded by m
  };

  // What a change must announce once the lock is released.
  struct Notes {
    std::vector<Request> requests;
    std::vector<AccessRequest> access;
    std::vector<std::pair<std::shared_ptr<Watch>, Request>> fires;
    bool remote = false;  // made by another node (Changes::Local listeners do not hear it)
  };

  struct Listener {
    std::function<void(const Request*, const AccessRequest*)> fn;
    Changes which;
  };

  struct Grant {
    std::string role;
    TimeUs expires_us;
  };

  std::unique_ptr<Store> store;
  Settings settings;

  // Every read-check-write of a record happens under mu, so two reviewers never both decide.
  std::mutex mu;
  std::uint64_t next_token = 1;
  std::unordered_map<std::uint64_t, std::shared_ptr<Watch>> watches;  // registered or firing
  std::unordered_multimap<std::string, std::uint64_t> waiting_on;     // request id -> tokens not yet fired

  std::mutex listeners_mu;
  std::vector<Listener> listeners;

  // The revision of each record last announced (under mu), so a change is announced once
  // however often the store reports it. Bounded: the oldest entries are forgotten.
  std::unordered_map<std::string, std::int64_t> announced;
  std::deque<std::string> announced_order;

  // Lock order: cache_mu before mu; changes under mu only set cache_dirty.
  std::shared_mutex cache_mu;
  std::atomic<bool> cache_dirty{true};
  TimeUs cache_at = 0;
  std::unordered_map<std::string, std::vector<Grant>> grants;  // subject \x1f target -> grants

  TimeUs now() const { return settings.clock ? settings.clock() : now_us(); }
  TimeUs pending_ttl_us() const { return TimeUs(settings.pending_ttl.count()) * kUsPerSecond; }

  static std::string grant_key(std::string_view subject, std::string_view target) {
    std::string k(subject);
    k += '\x1f';
    k += target;
    return k;
  }

  // ---- under mu

  void note_announced(const std::string& id, std::int64_t revision) {
    auto [it, fresh] = announced.try_emplace(id, revision);
    if (!fresh) {
      it->second = std::max(it->second, revision);
      return;
    }
    announced_order.push_back(id);
    if (announced_order.size() > kAnnouncedMax) {
      announced.erase(announced_order.front());
      announced_order.pop_front();
    }
  }

  bool announced_already(const std::string& id, std::int64_t revision) const {
    auto it = announced.find(id);
    return it != announced.end() && it->second >= revision;
  }

  // Stores a change; on success the record carries its new revision.
  Result<void> save(Request& r) {
    auto p = store->put(r);
    if (p) ++r.revision;
    return p;
  }

  Result<void> save(AccessRequest& a) {
    auto p = store->put_access(a);
    if (p) ++a.revision;
    return p;
  }

  void changed(const Request& r, Notes& n) {
    note_announced(r.id, r.revision);
    n.requests.push_back(r);
    if (r.state == State::Pending) return;
    auto [b, e] = waiting_on.equal_range(r.id);
    for (auto it = b; it != e; ++it) {
      auto w = watches.find(it->second);
      if (w != watches.end()) n.fires.emplace_back(w->second, r);
    }
    waiting_on.erase(b, e);
  }

  void changed(const AccessRequest& a, Notes& n) {
    note_announced(a.id, a.revision);
    n.access.push_back(a);
    cache_dirty = true;
  }

  // Pending past its TTL becomes Expired (persisted); true when it changed.
  Result<bool> expire_if_due(Request& r, TimeUs t, Notes& n) {
    if (r.state != State::Pending || t < r.created_us + pending_ttl_us()) return false;
    r.state = State::Expired;
    r.decided_us = r.created_us + pending_ttl_us();
    r.closed_reason = "not decided within " + human_duration(settings.pending_ttl);
    if (auto p = save(r); !p) return tl::unexpected(p.error());
    changed(r, n);
    return true;
  }

  Result<bool> expire_if_due(AccessRequest& a, TimeUs t, Notes& n) {
    const bool pending_expired = a.state == State::Pending && t >= a.created_us + pending_ttl_us();
    const bool grant_ended = a.state == State::Approved && t >= a.expires_us;
    if (!pending_expired && !grant_ended) return false;
    a.state = State::Expired;
    if (pending_expired) a.decided_us = a.created_us + pending_ttl_us();
    if (auto p = save(a); !p) return tl::unexpected(p.error());
    changed(a, n);
    return true;
  }

  Result<std::optional<Request>> fetch(const std::string& id, const Request*) { return store->get(id); }
  Result<std::optional<AccessRequest>> fetch(const std::string& id, const AccessRequest*) {
    return store->get_access(id);
  }

  // Reads a record, expiring it when due; read again when another node changed it meanwhile.
  template <class R>
  Result<std::optional<R>> load_record(const std::string& id, TimeUs t, Notes& n) {
    for (int attempt = 1;; ++attempt) {
      auto r = fetch(id, static_cast<const R*>(nullptr));
      if (!r || !*r) return r;
      auto e = expire_if_due(**r, t, n);
      if (e) return r;
      if (!conflict(e.error()) || attempt == kAttempts) return tl::unexpected(e.error());
    }
  }

  Result<std::optional<Request>> load(const std::string& id, TimeUs t, Notes& n) {
    return load_record<Request>(id, t, n);
  }
  Result<std::optional<AccessRequest>> load_access(const std::string& id, TimeUs t, Notes& n) {
    return load_record<AccessRequest>(id, t, n);
  }

  Result<void> sweep(TimeUs t, Notes& n) {
    Filter pending;
    pending.state = State::Pending;
    pending.limit = kNoLimit;
    auto rs = store->list(pending);
    if (!rs) return tl::unexpected(rs.error());
    for (auto& r : *rs)  // a record another node changed meanwhile is its to announce
      if (auto e = expire_if_due(r, t, n); !e && !conflict(e.error())) return tl::unexpected(e.error());
    return {};
  }

  Result<void> sweep_access(TimeUs t, Notes& n) {
    for (State s : {State::Pending, State::Approved}) {
      Filter f;
      f.state = s;
      f.limit = kNoLimit;
      auto as = store->list_access(f);
      if (!as) return tl::unexpected(as.error());
      for (auto& a : *as)
        if (auto e = expire_if_due(a, t, n); !e && !conflict(e.error())) return tl::unexpected(e.error());
    }
    return {};
  }

  // Runs `f(notes)` under mu, then announces what it noted (without the lock).
  template <class F>
  auto with_lock(F&& f) {
    Notes n;
    std::unique_lock lock(mu);
    auto out = f(n);
    lock.unlock();
    dispatch(n);
    return out;
  }

  // One reviewer's vote on a statement review or an access request (`what`: "request" or
  // "access request"); `on_approved` completes a record the vote approved. Another node may
  // decide at the same moment: the loser reads again and is told why not.
  template <class R, class OnApproved>
  tl::expected<R, DecideError> decide(const std::string& id, std::string_view what, const Person& reviewer,
                                      bool approve, const std::string& comment, OnApproved on_approved) {
    return with_lock([&](Notes& n) -> tl::expected<R, DecideError> {
      for (int attempt = 1;; ++attempt) {
        const TimeUs t = now();
        auto loaded = load_record<R>(id, t, n);
        if (!loaded) return tl::unexpected(decide_error(DecideError::Kind::Store, loaded.error().message));
        if (!*loaded)
          return tl::unexpected(decide_error(DecideError::Kind::NotFound, "no " + std::string(what) + " " + id));
        R& r = **loaded;
        auto vote = check_vote(r, std::string(what) + " " + id, reviewer, approve, comment, settings, t);
        if (!vote) return tl::unexpected(vote.error());
        if (apply_vote(r, std::move(*vote), t) && r.state == State::Approved) on_approved(r);
        auto p = save(r);
        if (p) {
          changed(r, n);
          return r;
        }
        if (!conflict(p.error()) || attempt == kAttempts)
          return tl::unexpected(decide_error(DecideError::Kind::Store, p.error().message));
      }
    });
  }

  // ---- without any lock held

  void fire(const std::shared_ptr<Watch>& w, const Request& r) {
    {
      std::lock_guard g(w->m);
      if (w->alive) {
        w->alive = false;
        try {
          w->fn(r);
        } catch (...) {  // one waiter's fault must not skip the others
        }
      }
    }
    std::lock_guard lock(mu);
    watches.erase(w->token);
  }

  // Listeners hear a change before its waiters wake: a woken session goes on to change the
  // record again (not waiting, consumed) on its own thread, and its listeners' calls must not
  // overtake this one's (found in CI: the audit recorded an approval, the run, then the same
  // approval again, because the reviewer's thread got to its listener after the session's).
  void dispatch(Notes& n) {
    if (!n.requests.empty() || !n.access.empty()) {
      std::vector<std::function<void(const Request*, const AccessRequest*)>> ls;
      {
        std::lock_guard g(listeners_mu);
        for (const auto& l : listeners)
          if (!n.remote || l.which == Changes::All) ls.push_back(l.fn);
      }
      for (const auto& r : n.requests)
        for (const auto& l : ls) l(&r, nullptr);
      for (const auto& a : n.access)
        for (const auto& l : ls) l(nullptr, &a);
    }
    for (auto& [w, r] : n.fires) fire(w, r);
  }

  // ---- changes another node made (the store's listener thread; no lock of the store held)

  // Under mu: announces the record as it is now unless this revision was announced already.
  void remote_request(const std::string& id, Notes& n) {
    auto r = store->get(id);
    if (r && *r && !announced_already(id, (*r)->revision)) changed(**r, n);
  }

  void remote_change(const std::string& kind, const std::string& id) {
    Notes n;
    n.remote = true;
    {
      std::lock_guard lock(mu);
      if (kind == "request" && !id.empty()) {
        remote_request(id, n);
      } else if (kind == "access" && !id.empty()) {
        cache_dirty = true;
        auto a = store->get_access(id);
        if (a && *a && !announced_already(id, (*a)->revision)) changed(**a, n);
      } else {  // changes may have been missed: every cache and every watched request
        cache_dirty = true;
        std::vector<std::string> ids;
        for (const auto& [watched, token] : waiting_on)
          if (std::find(ids.begin(), ids.end(), watched) == ids.end()) ids.push_back(watched);
        for (const auto& watched : ids) remote_request(watched, n);
      }
    }
    dispatch(n);
  }

  // Under cache_mu (exclusive).
  void refresh_grants(TimeUs t, Notes& n) {
    cache_dirty = false;  // before reading: a change made meanwhile marks it dirty again
    cache_at = t;
    Result<std::vector<AccessRequest>> active;
    {
      std::lock_guard lock(mu);
      Filter f;
      f.state = State::Approved;
      f.limit = kNoLimit;
      active = store->list_access(f);
      // A grant that cannot be marked expired is past its expiry all the same (and is left out).
      if (active)
        for (auto& a : *active) (void)expire_if_due(a, t, n);
    }
    // A store that cannot be read keeps the last grants (each still ends at its expiry) and is
    // asked again after the cache's maximum age, not on every statement.
    if (!active) return;
    grants.clear();
    for (const auto& a : *active)
      if (a.state == State::Approved)
        grants[grant_key(a.requester.subject, a.target)].push_back(Grant{a.role, a.expires_us});
  }
};

Service::Service(std::unique_ptr<Store> store, Settings settings) : impl_(std::make_unique<Impl>()) {
  impl_->store = std::move(store);
  impl_->settings = std::move(settings);
  impl_->store->set_listener(
      [im = impl_.get()](const std::string& kind, const std::string& id) { im->remote_change(kind, id); });
}

// The listener uses the rest of Impl: it stops before anything else goes.
Service::~Service() { impl_->store->set_listener(nullptr); }

const Settings& Service::settings() const { return impl_->settings; }

Result<Request> Service::submit(Request r) {
  auto id = new_id("apr_");
  if (!id) return tl::unexpected(id.error());
  if (r.requester.subject.empty()) return fail("", "an approval request needs a requester");
  r.id = std::move(*id);
  r.state = State::Pending;
  r.created_us = impl_->now();
  r.node = impl_->settings.node;
  r.votes.clear();
  r.decided_us = r.rerun_until_us = 0;
  r.closed_reason.clear();
  r.revision = 0;
  r.approvals_required = std::max(1, r.approvals_required);
  if (r.match_key.empty()) r.match_key = match_key(r.statement, r.parameters);
  Impl::Notes n;
  {
    std::lock_guard lock(impl_->mu);
    // A bounded number of open requests per requester (found by adversarial testing: one session
    // opened 20,000 with SET gatehouse.wait = off, and every listing slowed down).
    Filter mine;
    mine.state = State::Pending;
    mine.requester = r.requester.subject;
    mine.limit = kMaxPendingPerRequester + 1;
    if (auto open = impl_->store->list(mine); !open) {
      return tl::unexpected(open.error());
    } else {
      std::size_t count = 0;
      for (const auto& o : *open) count += o.state == State::Pending && o.requester.subject == r.requester.subject;
      if (count >= kMaxPendingPerRequester)
        return fail("53400", "too many approval requests of yours are still pending (" +
                                 std::to_string(kMaxPendingPerRequester) +
                                 "); wait for reviewers to decide them, or cancel some, before asking again");
    }
    if (auto p = impl_->save(r); !p) return tl::unexpected(p.error());
    impl_->changed(r, n);
  }
  impl_->dispatch(n);
  return r;
}

Result<std::optional<Request>> Service::get(const std::string& id) {
  return impl_->with_lock([&](Impl::Notes& n) { return impl_->load(id, impl_->now(), n); });
}

Result<std::vector<Request>> Service::list(const Filter& f) {
  return impl_->with_lock([&](Impl::Notes& n) -> Result<std::vector<Request>> {
    if (auto s = impl_->sweep(impl_->now(), n); !s) return tl::unexpected(s.error());
    return impl_->store->list(f);
  });
}

tl::expected<Request, DecideError> Service::decide(const std::string& id, const Person& reviewer, bool approve,
                                                   const std::string& comment) {
  const auto rerun_window_us = TimeUs(impl_->settings.rerun_window.count()) * kUsPerSecond;
  return impl_->decide<Request>(id, "request", reviewer, approve, comment,
                                [&](Request& r) { r.rerun_until_us = r.decided_us + rerun_window_us; });
}

Result<void> Service::cancel(const std::string& id, const std::string& why) {
  Impl::Notes n;
  Result<void> out;
  {
    std::lock_guard lock(impl_->mu);
    for (int attempt = 1;; ++attempt) {
      const TimeUs t = impl_->now();
      auto loaded = impl_->load(id, t, n);
      if (!loaded) {
        out = tl::unexpected(loaded.error());
      } else if (!*loaded) {
        out = fail("", "no request " + id);
      } else if (Request& r = **loaded; r.state == State::Pending) {
        r.state = State::Cancelled;
        r.decided_us = t;
        r.closed_reason = why;
        auto p = impl_->save(r);
        if (!p && conflict(p.error()) && attempt < kAttempts) continue;  // decided elsewhere meanwhile?
        if (!p)
          out = tl::unexpected(p.error());
        else
          impl_->changed(r, n);
      }
      break;
    }
  }
  impl_->dispatch(n);
  return out;
}

Result<bool> Service::consume(const std::string& id) {
  Impl::Notes n;
  Result<bool> out = false;
  {
    std::lock_guard lock(impl_->mu);
    for (int attempt = 1;; ++attempt) {
      auto loaded = impl_->load(id, impl_->now(), n);
      if (!loaded) {
        out = tl::unexpected(loaded.error());
      } else if (*loaded && (*loaded)->state == State::Approved) {
        Request& r = **loaded;
        r.state = State::Consumed;
        r.waiting = false;
        auto p = impl_->save(r);
        if (!p && conflict(p.error()) && attempt < kAttempts) continue;  // consumed elsewhere meanwhile?
        if (!p) {
          out = tl::unexpected(p.error());
        } else {
          impl_->changed(r, n);
          out = true;
        }
      }
      break;
    }
  }
  impl_->dispatch(n);
  return out;
}

Result<std::optional<Request>> Service::take_rerun(const std::string& subject, const std::string& target,
                                                   const std::string& key) {
  Impl::Notes n;
  Result<std::optional<Request>> out = std::optional<Request>{};
  {
    std::lock_guard lock(impl_->mu);
    const TimeUs t = impl_->now();
    Filter f;
    f.state = State::Approved;
    f.requester = subject;
    f.target = target;
    f.match_key = key;
    for (int attempt = 1;; ++attempt) {
      bool again = false;
      auto rs = impl_->store->list(f);
      if (!rs) {
        out = tl::unexpected(rs.error());
      } else {
        for (auto& r : *rs) {
          // The filter's requester also matches emails: check the subject exactly.
          if (r.state != State::Approved || r.requester.subject != subject || r.target != target ||
              r.match_key != key || r.rerun_until_us < t || r.waiting)
            continue;
          r.state = State::Consumed;
          if (auto p = impl_->save(r); !p) {
            again = conflict(p.error()) && attempt < kAttempts;  // taken elsewhere meanwhile?
            out = tl::unexpected(p.error());
          } else {
            impl_->changed(r, n);
            out = std::optional<Request>{r};
          }
          break;
        }
      }
      if (!again) break;
      out = std::optional<Request>{};
    }
  }
  impl_->dispatch(n);
  return out;
}

void Service::set_waiting(const std::string& id, bool waiting) {
  Impl::Notes n;
  {
    std::lock_guard lock(impl_->mu);
    auto loaded = impl_->load(id, impl_->now(), n);
    if (loaded && *loaded && (*loaded)->waiting != waiting) {
      (*loaded)->waiting = waiting;
      // Best effort: the flag is information for reviewers (and keeps take_rerun off a request
      // a session is about to consume, which consume() settles anyway).
      if (impl_->save(**loaded)) impl_->changed(**loaded, n);
    }
  }
  impl_->dispatch(n);
}

std::uint64_t Service::watch(const std::string& id, std::function<void(const Request&)> fn) {
  auto w = std::make_shared<Impl::Watch>();
  w->id = id;
  w->fn = std::move(fn);
  Impl::Notes n;
  std::optional<Request> decided;
  {
    std::lock_guard lock(impl_->mu);
    w->token = impl_->next_token++;
    // A store error or an unknown id still registers: a later change through this service fires.
    auto loaded = impl_->load(id, impl_->now(), n);
    if (loaded && *loaded && (*loaded)->state != State::Pending) {
      decided = std::move(**loaded);
    } else {
      impl_->watches.emplace(w->token, w);
      impl_->waiting_on.emplace(id, w->token);
    }
  }
  impl_->dispatch(n);
  if (decided) {
    std::lock_guard g(w->m);
    if (w->alive) {
      w->alive = false;
      try {
        w->fn(*decided);
      } catch (...) {
      }
    }
  }
  return w->token;
}

void Service::unwatch(std::uint64_t token) {
  std::shared_ptr<Impl::Watch> w;
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->watches.find(token);
    if (it == impl_->watches.end()) return;  // fired and finished, or never registered
    w = it->second;
    impl_->watches.erase(it);
    auto [b, e] = impl_->waiting_on.equal_range(w->id);
    for (auto i = b; i != e; ++i)
      if (i->second == token) {
        impl_->waiting_on.erase(i);
        break;
      }
  }
  // Waits for a running callback (another thread's) to return; no new one starts after this.
  std::lock_guard g(w->m);
  w->alive = false;
}

void Service::on_change(std::function<void(const Request*, const AccessRequest*)> fn, Changes which) {
  std::lock_guard g(impl_->listeners_mu);
  impl_->listeners.push_back(Impl::Listener{std::move(fn), which});
}

Result<AccessRequest> Service::request_access(AccessRequest a) {
  if (a.target.empty()) return fail("", "an access request needs a target");
  if (a.role.empty()) return fail("", "an access request needs a role");
  if (a.requester.subject.empty()) return fail("", "an access request needs a requester");
  const auto max = impl_->settings.max_grant.count();
  if (a.duration_s <= 0 || a.duration_s > max)
    return fail("", "an access request's duration must be between 1 s and " +
                        human_duration(impl_->settings.max_grant) + " (" + std::to_string(max) + " s); asked for " +
                        std::to_string(a.duration_s) + " s");
  auto id = new_id("acc_");
  if (!id) return tl::unexpected(id.error());
  a.id = std::move(*id);
  a.state = State::Pending;
  a.created_us = impl_->now();
  a.votes.clear();
  a.decided_us = a.expires_us = a.revoked_us = 0;
  a.revoked_by.clear();
  a.revoke_reason.clear();
  a.revision = 0;
  a.approvals_required = std::max(1, a.approvals_required);
  Impl::Notes n;
  {
    std::lock_guard lock(impl_->mu);
    if (auto p = impl_->save(a); !p) return tl::unexpected(p.error());
    impl_->changed(a, n);
  }
  impl_->dispatch(n);
  return a;
}

tl::expected<AccessRequest, DecideError> Service::decide_access(const std::string& id, const Person& reviewer,
                                                                bool approve, const std::string& comment) {
  return impl_->decide<AccessRequest>(id, "access request", reviewer, approve, comment, [](AccessRequest& a) {
    a.expires_us = a.decided_us + a.duration_s * kUsPerSecond;
  });
}

tl::expected<AccessRequest, DecideError> Service::revoke(const std::string& id, const Person& by,
                                                         const std::string& reason) {
  Impl::Notes n;
  tl::expected<AccessRequest, DecideError> out;
  {
    std::lock_guard lock(impl_->mu);
    for (int attempt = 1;; ++attempt) {
      const TimeUs t = impl_->now();
      auto loaded = impl_->load_access(id, t, n);
      if (!loaded) {
        out = tl::unexpected(decide_error(DecideError::Kind::Store, loaded.error().message));
      } else if (!*loaded) {
        out = tl::unexpected(decide_error(DecideError::Kind::NotFound, "no access request " + id));
      } else if (AccessRequest& a = **loaded; a.state != State::Approved) {
        out = tl::unexpected(decide_error(DecideError::Kind::NotPending, "access request " + id +
                                                                             " is not an active grant (it is " +
                                                                             std::string(state_name(a.state)) + ")"));
      } else {
        a.state = State::Cancelled;
        a.revoked_by = by.display();
        a.revoked_us = t;
        a.revoke_reason = reason;
        auto p = impl_->save(a);
        if (!p && conflict(p.error()) && attempt < kAttempts) continue;
        if (!p) {
          out = tl::unexpected(decide_error(DecideError::Kind::Store, p.error().message));
        } else {
          impl_->changed(a, n);
          out = a;
        }
      }
      break;
    }
  }
  impl_->dispatch(n);
  return out;
}

Result<std::optional<AccessRequest>> Service::get_access(const std::string& id) {
  return impl_->with_lock([&](Impl::Notes& n) { return impl_->load_access(id, impl_->now(), n); });
}

Result<std::vector<AccessRequest>> Service::list_access(const Filter& f) {
  return impl_->with_lock([&](Impl::Notes& n) -> Result<std::vector<AccessRequest>> {
    if (auto s = impl_->sweep_access(impl_->now(), n); !s) return tl::unexpected(s.error());
    return impl_->store->list_access(f);
  });
}

std::vector<std::string> Service::active_roles(const std::string& subject, const std::string& target, TimeUs now) {
  auto& im = *impl_;
  const TimeUs t = im.now();
  auto fresh = [&] { return !im.cache_dirty && t >= im.cache_at && t - im.cache_at < kGrantCacheMaxAgeUs; };
  auto lookup = [&] {
    std::vector<std::string> roles;
    auto it = im.grants.find(Impl::grant_key(subject, target));
    if (it == im.grants.end()) return roles;
    for (const auto& g : it->second)
      if (g.expires_us > now && std::find(roles.begin(), roles.end(), g.role) == roles.end()) roles.push_back(g.role);
    return roles;
  };
  {
    std::shared_lock lock(im.cache_mu);
    if (fresh()) return lookup();
  }
  Impl::Notes n;
  std::vector<std::string> roles;
  {
    std::unique_lock lock(im.cache_mu);
    if (!fresh()) im.refresh_grants(t, n);
    roles = lookup();
  }
  im.dispatch(n);
  return roles;
}

}  // namespace gh::approvals
