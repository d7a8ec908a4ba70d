#pragma once
// Human-in-the-loop: approval requests for held statements, and just-in-time access requests
// that become time-bound grants. The records, the rules (who may approve, how many approvals,
// no self-approval, break-glass), persistence (SQLite, or PostgreSQL shared by several proxy
// nodes, which reports other nodes' changes), and waiting for a decision.
//
// Thread-safe: the proxy's workers submit and wait, the admin API's threads decide. Waiters
// are called back on the thread that made the change (or the store's watcher thread); callers
// post to their own executor.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "identity/identity.h"

namespace gh::approvals {

using TimeUs = std::int64_t;  // microseconds since the Unix epoch
TimeUs now_us();

enum class State { Pending, Approved, Rejected, Cancelled, Expired, Consumed };
std::string_view state_name(State s);  // "pending", "approved", ...
std::optional<State> parse_state(std::string_view name);

// Who asked or who decided.
struct Person {
  std::string subject;
  std::string email;
  std::vector<std::string> groups;
  std::string kind = "human";  // human | agent
  std::string display() const { return email.empty() ? subject : email; }
};

struct Vote {
  Person reviewer;
  bool approve = false;
  std::string comment;  // a rejection's reason
  TimeUs time_us = 0;
  bool break_glass = false;  // the reviewer acted through a break-glass group (always flagged)
};

// One held statement.
struct Request {
  std::string id;  // "apr_" + 20 random base32 characters
  State state = State::Pending;
  Person requester;
  std::string target, environment, database;
  std::string statement;                               // exactly as submitted
  std::vector<std::optional<std::string>> parameters;  // bind parameters as text ("<binary N bytes>" for binary)
  std::string fingerprint;                             // the statement's fingerprint
  std::string match_key;                               // SHA-256 over statement and parameters (hex)
  std::string rule, reason, justification;
  std::vector<std::string> reviewer_groups;  // empty: any reviewer
  int approvals_required = 1;
  std::vector<Vote> votes;
  TimeUs created_us = 0, decided_us = 0;  // decided_us: when it left Pending (for any reason)
  TimeUs rerun_until_us = 0;  // approved: the requester may run it (once) until then
  std::string node;           // proxy node that received it
  bool waiting = false;       // a client session is holding on it right now
  std::string closed_reason;  // cancelled: why (as given to cancel()); expired: "not decided within ..."
  // For the reviewer: the tables the statement touches, its classified columns ("pii on
  // public.customers.email"), and the planner's row estimate when one was made (-1: none).
  std::vector<std::string> tables, sensitive_columns;
  std::int64_t row_estimate = -1;
  std::int64_t revision = 0;  // the store's version of the record (0: never stored); see Store
};

// A person or an agent asks for a role on a target for a bounded time.
struct AccessRequest {
  std::string id;  // "acc_" + 20 random base32 characters
  // Approved = the grant is active (until expires_us); Cancelled = revoked; Expired = not decided
  // within pending_ttl, or an approved grant past expires_us (marked lazily: compare the times).
  State state = State::Pending;
  Person requester;
  std::string target, role, reason;
  std::int64_t duration_s = 3600;
  std::vector<std::string> reviewer_groups;
  int approvals_required = 1;
  std::vector<Vote> votes;
  TimeUs created_us = 0, decided_us = 0;
  TimeUs expires_us = 0;  // set when approved: decided_us + duration
  std::string revoked_by, revoke_reason;
  TimeUs revoked_us = 0;
  std::int64_t revision = 0;  // as Request::revision
};

struct Filter {
  std::optional<State> state;
  std::string requester;  // subject or email
  std::string target;
  std::string match_key;  // statement reviews only; empty: any
  std::size_t limit = 100;
};

// Why a decision was refused; `message` is for the person (HTTP 4xx / CLI).
struct DecideError {
  enum class Kind { NotFound, NotPending, SelfApproval, NotAReviewer, AlreadyVoted, Store } kind = Kind::NotFound;
  std::string message;
};

// What an approval service needs to know from the configuration.
struct Settings {
  std::string node;                                  // this proxy's node name
  std::chrono::seconds rerun_window{3600};           // approved after the client stopped waiting
  std::chrono::seconds pending_ttl{24 * 3600};       // pending requests expire after this
  std::vector<std::string> break_glass_groups;       // may approve anything; always flagged
  std::chrono::seconds max_grant{7 * 24 * 3600};     // longest access grant that can be asked for
  std::function<TimeUs()> clock;                     // empty: now_us(); tests inject their own
};

// Persistence. One implementation per store; all methods are called with the service's lock
// held or from its threads, and must be safe to call from any thread.
//
// A store shared by several processes (PostgreSQL) versions each record: get/list return the
// stored `revision`, put() stores the record as revision + 1 only if the stored one still has
// `revision` (0: a new record) and otherwise fails with SQLSTATE kConflict, so two nodes never
// both decide or both consume a record. A store that is not shared may ignore revisions.
inline constexpr std::string_view kConflict = "40001";

// Told about changes made through other stores on the same data: kind "request" or "access"
// and the record's id; kind and id empty when changes may have been missed (the store lost its
// connection): re-read what matters.
using StoreListener = std::function<void(const std::string& kind, const std::string& id)>;

class Store {
 public:
  virtual ~Store() = default;
  virtual Result<void> put(const Request& r) = 0;  // insert or replace by id
  virtual Result<std::optional<Request>> get(const std::string& id) = 0;
  virtual Result<std::vector<Request>> list(const Filter& f) = 0;  // newest first
  virtual Result<void> put_access(const AccessRequest& a) = 0;
  virtual Result<std::optional<AccessRequest>> get_access(const std::string& id) = 0;
  virtual Result<std::vector<AccessRequest>> list_access(const Filter& f) = 0;  // newest first
  // Installs (or, with an empty function, removes) the listener, called on a thread of the
  // store's own. Once set_listener returns, a previous listener is not running and will not
  // start; do not call it from within the listener. Default: the store reports nothing (SQLite).
  virtual void set_listener(StoreListener fn) { (void)fn; }
};

// SQLite at `path` (WAL; created if missing).
Result<std::unique_ptr<Store>> open_sqlite_store(const std::string& path);

// PostgreSQL (libpq connection string) shared by several proxy nodes: tables
// <prefix>approval_requests and <prefix>access_requests (created if missing), every change
// announced with NOTIFY <prefix>approvals, '<kind>:<id>'. Connects lazily: opening checks the
// connection string and the prefix only ([A-Za-z0-9_], at most 32 characters).
Result<std::unique_ptr<Store>> open_postgres_store(const std::string& dsn, const std::string& table_prefix = "gatehouse_");

class Service {
 public:
  Service(std::unique_ptr<Store> store, Settings settings);
  ~Service();

  // ---- statement reviews
  // Open (pending) requests one requester may have at once; submit() refuses more (53400).
  static constexpr std::size_t kMaxPendingPerRequester = 100;
  // Stores a new pending request (id, created_us, node, state filled in) and returns it.
  Result<Request> submit(Request r);
  Result<std::optional<Request>> get(const std::string& id);
  Result<std::vector<Request>> list(const Filter& f);
  // One reviewer's vote. Refused: unknown id, not pending, the requester's own request (by
  // subject or email), reviewer not in the rule's reviewer groups nor break-glass, a second vote
  // by the same reviewer. A rejection decides at once; approvals decide when enough are in.
  tl::expected<Request, DecideError> decide(const std::string& id, const Person& reviewer, bool approve,
                                            const std::string& comment);
  // The requester gave up (Ctrl-C) or the session ended: pending -> cancelled.
  Result<void> cancel(const std::string& id, const std::string& why);
  // The session that held it runs it now: approved -> consumed (true once; false otherwise).
  Result<bool> consume(const std::string& id);
  // A request of this requester for exactly this statement and parameters on this target that
  // was approved after its client stopped waiting, still within the re-run window: consumed
  // and returned, so it runs once.
  Result<std::optional<Request>> take_rerun(const std::string& subject, const std::string& target,
                                            const std::string& match_key);
  // Marks whether a client session is waiting on it (shown to reviewers).
  void set_waiting(const std::string& id, bool waiting);

  // Calls `fn` once with the request when it leaves Pending (decided, cancelled, expired), on
  // whatever thread made the change, outside the service's lock. When the request has already
  // left Pending, `fn` runs at once on the calling thread, before watch() returns. Changes made
  // by other nodes are seen when the store reports them (PostgreSQL; then `fn` runs on the
  // store's listener thread). Returns a token; unwatch(token) before `fn`'s captures
  // die: once unwatch returns, `fn` is not running and will not start (unwatch from inside `fn`
  // is allowed). `fn` must not throw (exceptions are swallowed).
  std::uint64_t watch(const std::string& id, std::function<void(const Request&)> fn);
  void unwatch(std::uint64_t token);
  // Change listeners for everything (the console's live updates, webhooks): called after every
  // change of any request or access request, on the changing thread. With Changes::All they also
  // hear changes other nodes made to a shared store (on the store's listener thread); with
  // Changes::Local only those made through this Service, so that what every node does once per
  // change (an audit record, a webhook) is done by the node that made it.
  enum class Changes { All, Local };
  void on_change(std::function<void(const Request*, const AccessRequest*)> fn, Changes which = Changes::All);

  // ---- just-in-time access
  Result<AccessRequest> request_access(AccessRequest a);
  tl::expected<AccessRequest, DecideError> decide_access(const std::string& id, const Person& reviewer, bool approve,
                                                         const std::string& comment);
  tl::expected<AccessRequest, DecideError> revoke(const std::string& id, const Person& by, const std::string& reason);
  Result<std::optional<AccessRequest>> get_access(const std::string& id);
  Result<std::vector<AccessRequest>> list_access(const Filter& f);
  // Roles granted to this person on this target and active at `now` (approved, not expired,
  // not revoked). Cached in memory; cheap enough to call per statement.
  std::vector<std::string> active_roles(const std::string& subject, const std::string& target, TimeUs now);

  const Settings& settings() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The requester or reviewer record of an authenticated identity.
Person person_of(const identity::Identity& id);

// SHA-256 (hex) over the statement text and parameters, unambiguously framed.
std::string match_key(std::string_view statement, const std::vector<std::optional<std::string>>& parameters);

}  // namespace gh::approvals
