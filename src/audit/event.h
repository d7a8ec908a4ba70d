#pragma once
// What happened: one audit event, as the proxy, the admin API and the process report it.
// Events are cheap to make on the hot path: the session's identity context and the statement's
// analysis are shared, not copied; the writer thread turns an event into a sealed record.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "identity/identity.h"
#include "policy/policy.h"
#include "sql/statement_info.h"

namespace gh::audit {

struct Draft;
struct SessionParts;

// A value computed once by whichever thread needs it first, shared after that; a copy of the
// object that holds it starts without it.
template <class T>
class Memo {
 public:
  Memo() = default;
  Memo(const Memo&) {}
  Memo& operator=(const Memo&) {
    value_.store(nullptr);
    return *this;
  }
  std::shared_ptr<const T> get() const { return value_.load(std::memory_order_acquire); }
  void set(std::shared_ptr<const T> v) const { value_.store(std::move(v), std::memory_order_release); }

 private:
  mutable std::atomic<std::shared_ptr<const T>> value_;
};

enum class EventType : std::uint8_t {
  Start,          // the proxy started (fields: version, config)
  Stop,           // the proxy is stopping
  Reload,         // configuration reloaded (fields: files) or refused (outcome error, message why)
  Connect,        // a client logged in
  ConnectFailed,  // a login attempt was refused (message: why; sqlstate)
  Disconnect,     // a session ended (message: why)
  Statement,      // a statement was judged (and, unless refused, is about to run)
  Result,         // how a statement that ran ended: outcome, rows, duration
  Admin,          // an admin API action
  Approval,       // an approval request opened, approved, rejected, expired
  Grant,          // an access grant given or ended
  Retention,      // records were pruned by the retention settings (fields: pruned_through, anchor)
  Checkpoint,     // a signed checkpoint of the chain head (fields: covers_seq, covers_hash, signature, ...)
  Cancel,         // a CancelRequest (fields: from, the address that sent it; outcome: forwarded, refused
                  // for an unknown key, failed); session: the session whose statement it cancels
};
std::string_view type_name(EventType t);
std::optional<EventType> type_from_name(std::string_view name);

// Who and where, fixed for a session once it has logged in; shared by all its events.
struct SessionContext {
  std::uint64_t session = 0;       // proxy-wide session id
  identity::Identity identity;     // empty subject: not (yet) authenticated
  std::string user;                // the user name the client sent
  std::string client_address;      // IP address
  std::string target;
  std::string environment;
  std::string database;
  std::string application_name;
  std::string tls;  // the client connection's TLS ("TLSv1.3 TLS_AES_256_GCM_SHA384"); "" when plain
  // This session's part of every record body, encoded by the first record (record.cpp): the
  // fields above must not change once an event holds the context.
  Memo<SessionParts> encoded;
};

struct Event {
  EventType type = EventType::Statement;
  std::chrono::system_clock::time_point time{};
  std::shared_ptr<const SessionContext> session;  // null for process events (start, stop, reload, ...)

  // Statement and Result
  std::uint64_t statement = 0;  // per-session number; a Result names the Statement it ends
  char protocol = 0;            // 'Q' simple query, 'E' extended (Execute), 'P' Parse refused, 'F' FunctionCall
  std::shared_ptr<const sql::Analysis> analysis;  // null when not analysed
  std::string text;             // the text when `analysis` is null or unparsed (FunctionCall: "function OID n")
  std::vector<std::optional<std::string>> params;  // Bind parameters as sent (text format); nullopt = NULL
  bool params_binary = false;   // some parameters were in binary format (recorded as <binary n bytes>)
  std::shared_ptr<const policy::Policy> policy;    // classifies the statement (tags, parameter masking)
  std::shared_ptr<const policy::Decision> decision;  // shared with the session's prepared statement

  // Result, ConnectFailed, Disconnect, Reload, Admin
  std::string outcome;   // "ok", "error", "cancelled", "refused", "not_run", "unknown" (the proxy stopped first)
  std::string sqlstate;
  std::string message;
  // Result columns masked for the session (docs/policy.md#masking), as "schema.table.column (rule)".
  std::vector<std::string> masked;
  std::int64_t rows = -1;         // from CommandComplete (summed over a multi-statement Query); -1 unknown
  std::int64_t duration_us = -1;

  // Free-form, for admin, approval, grant, reload, start, retention and checkpoint events.
  std::vector<std::pair<std::string, std::string>> fields;

  // The Trail::intend() slot of this statement (0: none), freed once this record is journaled,
  // and the draft of its record (record.h) that its outcome is spliced into.
  std::uint32_t intent = 0;
  std::shared_ptr<const Draft> draft;
};

// A Bind parameter sent in binary format is recorded by its size only, as this placeholder;
// binary_param_size reads the size back (a masked one gives the value's size, not the text's).
std::string binary_param(std::size_t bytes);
std::optional<std::size_t> binary_param_size(std::string_view recorded);

// A connection attempt that was refused: before a session (limit, shutdown) or during its login.
inline Event connect_failed_event(std::shared_ptr<const SessionContext> session, std::string sqlstate,
                                  std::string message) {
  Event e;
  e.type = EventType::ConnectFailed;
  e.time = std::chrono::system_clock::now();
  e.session = std::move(session);
  e.outcome = "refused";
  e.sqlstate = std::move(sqlstate);
  e.message = std::move(message);
  return e;
}

}  // namespace gh::audit
