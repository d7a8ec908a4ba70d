#pragma once
// One client connection: handshake (TLS, startup, authentication, backend login), then the
// relay, then one teardown path that says why the session ended.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <unordered_map>
#include <unordered_set>
#include <optional>
#include <string>
#include <vector>

#include <asio.hpp>

#include "audit/event.h"
#include "base/once_a_second.h"
#include "base/metrics.h"
#include "identity/identity.h"
#include "net/buffer.h"
#include "net/stream.h"
#include "policy/policy.h"
#include "protocol/codec.h"
#include "protocol/response_tracker.h"
#include "sql/statement_info.h"
#include "proxy/result_masker.h"
#include "proxy/runtime.h"
#include "proxy/server.h"
#include "proxy/worker.h"

namespace gh::proxy {

class Server;
struct Worker;

// Why a session setting would make the analyzer read SQL differently from the server; nullopt
// when the setting is safe (see session.cpp).
std::optional<std::string> unsafe_for_analysis(std::string_view name, std::string_view value);
extern const char* const kUnsafeSettingHint;

struct End {
  enum class Kind {
    ClientClosed, ClientTerminate, ClientProtocolError, BackendClosed, BackendProtocolError,
    IdleTimeout, Shutdown, UnsafeSetting, TokenExpired, GrantEnded, Administrator
  } kind = Kind::ClientClosed;
  std::optional<protocol::ErrorFields> to_client;  // sent to the client before closing
  std::string log;
};

// A prepared statement's or portal's name as the server keys it: the first 63 bytes
// (NAMEDATALEN - 1), so that names that differ only after that are one object to the proxy too
// (found by adversarial testing: a Bind under a longer spelling of a statement's name reached it
// without being judged again).
inline std::string_view server_name(std::string_view name) { return name.substr(0, 63); }

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Server& server, Worker& worker, asio::ip::tcp::socket socket, std::uint32_t id);
  ~Session();
  asio::awaitable<void> run();
  // Wakes the watchdog to re-check shutdown (thread-safe).
  void kick();
  void finish();  // last step of every session: unregister, count, drop
  // The admin console's view and action (this session's worker thread only).
  std::uint32_t id() const { return id_; }
  // Past its login and not ending: what the console lists and may end.
  bool listed() const { return relay_started_ && !ending_ && target_; }
  // nullopt when not listed().
  std::optional<SessionSnapshot> snapshot() const;
  void end_by_admin(std::string message);

 private:
  using Clock = std::chrono::steady_clock;

  // handshake
  asio::awaitable<bool> handshake();
  asio::awaitable<bool> read_startup(protocol::StartupMessage& out);
  asio::awaitable<void> handle_cancel(protocol::CancelRequest req);
 public:
  // Forwards a client's CancelRequest to the backend connection its key names (no reply to the
  // client). Also used for connections refused at the connection limit: a cancel still works then.
  // `unknown_keys`: the worker's limit on records and log lines of requests with a key no session has.
  static asio::awaitable<void> forward_cancel(Server& server, WorkerMetrics& metrics, Worker::HeldCancels& unknown_keys,
                                              std::string peer, protocol::CancelRequest req);
  static void record_cancel(Server& server, std::shared_ptr<const audit::SessionContext> session,
                            const std::string& peer, const char* outcome, std::string message,
                            std::uint64_t held_back = 0);
 private:
  asio::awaitable<bool> authenticate(const protocol::StartupMessage& startup);
  asio::awaitable<bool> connect_backend(const protocol::StartupMessage& startup);
  asio::awaitable<void> send_to_client(std::string bytes);
  asio::awaitable<void> fail_client(protocol::ErrorFields e, std::string log_reason);

  // relay
  // Two relay loops run as their own coroutines; the watchdog is a plain timer handler, armed
  // only when a deadline exists, so an idle session holds two small frames and no pooled blocks.
  void start_relay();
  asio::awaitable<End> client_to_backend();
  asio::awaitable<End> backend_to_client();
  void on_loop_done(End end);
  void end_session(End end);   // first reason wins; stops both loops
  void arm_watchdog();
  void on_watchdog();
  // One pass over the bytes buffered from the client: forwards nothing, returns how many
  // bytes form whole messages to forward, or sets `end` on a protocol violation. Statements
  // the policy refuses are replaced by a substitute (see session_policy.cpp); then the bytes
  // to forward are in rewrite_ instead of cin_ and `rewritten` is set.
  std::size_t scan_client_messages(std::optional<End>& end, bool& terminate, bool& rewritten);
  // Backend bytes while a refusal is pending: whole ErrorResponses are inspected so that the
  // backend's answer to a substitute becomes the client's policy error. Returns the bytes to
  // forward (in rewrite_back_) and how many of bout_ were consumed.
  bool relay_backend_slow(std::string_view chunk, std::size_t& consumed, bool& saw_ready);
  void on_backend_event(const protocol::ScanEvent& e, bool& saw_ready);
  // ParameterStatus bodies are checked for settings that would make the analyzer read SQL
  // differently from the server (unsafe_for_analysis); see watch_body.
  void check_parameter_status(std::string_view body);

  // policy (session_policy.cpp)
  const policy::Policy& live_policy();
  // Judges one Query, Parse or FunctionCall message. Returns true to forward it unchanged;
  // false: `substitute` holds the message to send instead and a refusal is queued.
  bool judge_client_message(char type, std::string_view body, std::string& substitute);
  policy::Decision decide(const sql::Analysis& analysis) { return *judge(analysis); }
  // Who, where and when, for the policy (its analysis left unset); `grants` holds the active
  // access grants it points at, when the policy uses them.
  policy::Request policy_request(std::chrono::system_clock::time_point now, std::vector<std::string>& grants);
  // The same, shared: a statement served from the analysis cache gets the memo's decision object.
  std::shared_ptr<const policy::Decision> judge(const sql::Analysis& analysis);
  static bool may_change_tokenising(const sql::Analysis& a);
  // EXECUTE name -> what was prepared under it, FETCH/MOVE cursor -> the query it was declared
  // for; false when the text has nothing to resolve.
  bool resolve_executes(const sql::Analysis& a, sql::Analysis& out) const;
  // What an EXECUTE or FETCH runs, for its audit record: the resolved statements with EXECUTE/FETCH
  // added to their kinds; `analysis` itself when it names nothing the session knows.
  std::shared_ptr<const sql::Analysis> recorded_analysis(const std::shared_ptr<const sql::Analysis>& analysis) const;
  static std::shared_ptr<const sql::Analysis> as_recorded(const sql::Analysis& analysis, const sql::Analysis& resolved);
  // Judges `a` as the server runs it: EXECUTE and FETCH resolved to what they read (`judged`
  // points at `a` or at `resolved`); a cursor the proxy lost track of is refused.
  std::shared_ptr<const policy::Decision> judge_as_run(const sql::Analysis& a, sql::Analysis& resolved,
                                                       const sql::Analysis*& judged);
  void remember_prepared(const sql::Analysis& a, std::string_view protocol_name = {});
  // DECLARE records a cursor's query (FETCH is judged against it under the policy of the moment);
  // CLOSE, CLOSE ALL and DISCARD ALL forget; the end of a transaction forgets those without HOLD.
  void remember_cursors(const sql::Analysis& a, char type);
  void note_cursor_closes(const sql::Analysis& a);
  void note_cursor_close(const sql::Statement& st);
  void cursors_at_ready(char status);
  // A Bind of a statement judged under an older policy is judged again (false: refused). A Bind
  // of a statement that needs review records its portal and parameters (held_portals_).
  bool rejudge_bind(std::string_view body, std::string& substitute);
  bool judge_bind_of_sql_prepared(std::string_view portal, std::string_view name, std::string& substitute);

  // Row-estimate guardrail (session_estimate.cpp): an allowed simple-protocol UPDATE/DELETE on a
  // target with max_rows_affected is first planned with EXPLAIN on the same backend session.
  bool needs_row_estimate(std::string_view query_body);
  asio::awaitable<std::optional<End>> estimate_front_query();
  bool capture_explain(std::string_view chunk, std::size_t& consumed);
  asio::awaitable<void> wait_relay_signal();
  // `text`: a Query's or Parse's text, for a refusal because the proxy cannot parse it: the server
  // is asked to parse it too (behind a failing statement, so nothing of it runs), and its own
  // error goes to the client when it cannot either.
  void refuse_statement(const policy::Decision& d, const sql::Analysis* analysis, char type, std::string_view name,
                        std::string& substitute, std::string_view sqlstate = {},  // {}: the decision's
                        std::string_view text = {});

  // Approvals (session_hold.cpp): a simple-protocol Query, or the Execute of a portal bound from
  // a statement, that the policy sends for review is held until a reviewer decides, then runs
  // once exactly as submitted, or is refused.
  bool wants_hold(std::string_view query_body);
  bool wants_hold_execute(std::string_view execute_body);
  void approve_held_portal(const std::string& portal, const policy::Decision& by);  // its Executes run
  bool note_held_portal(std::string_view portal, std::string_view bind_body, std::size_t params_at,
                        const std::shared_ptr<const sql::Analysis>& analysis, const std::string& text,
                        const std::vector<std::uint32_t>& param_types);
  // Writes to the client from the client side (a hold's notice) take turns with the relay.
  asio::awaitable<std::error_code> write_client_between_messages(const std::string& bytes);
  asio::awaitable<std::optional<End>> hold_front_query(std::optional<policy::Decision> given = std::nullopt);
  // Refuses the held Query or Execute at the front of cin_ with `d` (a substitute goes to the
  // backend).
  asio::awaitable<std::optional<End>> refuse_front_query(const policy::Decision& d,
                                                         const std::shared_ptr<const sql::Analysis>& analysis,
                                                         std::string_view sqlstate);
  void on_client_cancel();  // a CancelRequest for this session arrived
  // SET gatehouse.wait / gatehouse.reason: options the client gives the proxy.
  void note_proxy_settings(const sql::Analysis& a);
  asio::awaitable<void> teardown();
  End client_io_end(const std::error_code& ec);
  End backend_io_end(const std::error_code& ec);
  // at: when it was sent (the relay passes the time of the read it came in; others: now).
  void statement_started(Clock::time_point at = Clock::now());
  void statement_finished(char status, Clock::time_point now);
  // `type` was forwarded to the backend; a Query or FunctionCall the backend will skip (an
  // earlier error in its extended-protocol batch) is ended at once.
  void forwarded(char type);
  // `n` forwarded Query/FunctionCall messages get no ReadyForQuery: the backend skips them.
  void units_skipped(std::uint32_t n, bool just_forwarded);

  // masking (session_mask.cpp)
  bool masking() const { return masker_ && masker_->active(); }
  // The statement runs: allowed, or allowed with masking while this session masks results (a
  // mask decision without masking in place is refused).
  bool runs(const policy::Decision& d) const {
    return d.action == policy::Action::Allow || (d.action == policy::Action::Mask && masking());
  }
  void mask_rules_refresh();  // before each client batch: the mask rules that apply to this session
  bool mask_catalog_due() const;
  asio::awaitable<std::optional<End>> mask_catalog_refresh();  // the backend idle
  void mask_forwarded(char type, std::string_view body, bool substituted);
  static bool mask_changes_catalog(const sql::Statement& st);  // DDL and the like: the catalog is read again
  void mask_catalog_changed();  // a forwarded statement may change tables or the search_path
  // Portals bound from a statement name SQL PREPARE also used: what they hold is not known.
  std::unordered_set<std::string> mask_untraced_portals_;
  // A statement that moves masked values where masking cannot follow: its refusal (null: none).
  std::shared_ptr<const policy::Decision> mask_refusal(const sql::Analysis& analysis);
  std::unique_ptr<ResultMasker> masker_;
  std::uint64_t mask_generation_ = ~std::uint64_t{0};
  bool catalog_stale_ = true;
  Clock::time_point catalog_at_{};
  bool mask_lost_ = false;
  bool catalog_request_ = false;        // read the catalog before the Query or Parse at the front of cin_
  bool catalog_front_checked_ = false;  // ... done: judge it with what the catalog says now
  std::unordered_set<std::string> unknown_relations_;  // names the catalog was read again for
  // Whether the Query's or Parse's statements name a relation the catalog does not know and was not
  // read again for yet.
  bool mask_unknown_relations(char type, std::string_view body);
  std::shared_ptr<const sql::Analysis> mask_resolved(std::shared_ptr<const sql::Analysis> a) const;
  std::string mask_out_;  // a DataRow rewritten

  // audit (session_audit.cpp)
  bool auditing() const { return audit_ctx_ != nullptr; }
  void audit_begin();  // after login: the session's identity context, durability
  audit::Event audit_event(audit::EventType type) const;
  void audit_connect_failed(const protocol::ErrorFields& e, const std::string& why);
  void audit_disconnect();
  // A Query or FunctionCall was judged (refused: it will not run).
  void audit_query(char type, const std::shared_ptr<const sql::Analysis>& analysis,
                   std::shared_ptr<const policy::Decision> d, bool refused, std::string_view text);
  void audit_query(char type, const std::shared_ptr<const sql::Analysis>& analysis, const policy::Decision& d,
                   bool refused, std::string_view text);
  // A statement refused before it could be analysed (malformed, settings barrier).
  void audit_refused_text(char type, std::string_view body, const policy::Decision& d);
  // The SQL text of a Query or Parse body; "" for other messages.
  static std::string_view query_text_of(char type, std::string_view body);
  void audit_parse_refused(const std::shared_ptr<const sql::Analysis>& analysis, const policy::Decision& d,
                           std::string_view text);
  void audit_bind(std::string_view body);
  static void read_param_values(std::string_view body, std::size_t pos, std::vector<std::optional<std::string>>& out,
                                bool& binary);
  // An Execute held for approval and then refused (session_hold.cpp).
  void audit_execute_refused(std::string_view body, const policy::Decision& d, std::string_view sqlstate);
  void audit_execute(std::string_view body);
  // The SQLSTATE a client gets when the trail cannot record what it asked for.
  static std::string audit_refusal_sqlstate(const Error& error);
  void audit_sync();
  void audit_close_portal(std::string_view name);
  void audit_sync_ignored();
  // Backend side: message bodies of CommandComplete and ErrorResponse, and the other events.
  // `refusal`: the error the client gets instead of the backend's answer to a substitute.
  void audit_backend(char type, std::string_view body, const protocol::ErrorFields* refusal);
  void audit_flush_results();
  // Sends the events of one client batch; with durability required, waits until they are
  // stored. On failure the batch's statements are replaced by substitutes that fail with the
  // audit error, so nothing unrecorded runs.
  asio::awaitable<void> audit_submit_batch(bool& rewritten, std::size_t pos);
  void audit_intend(std::vector<audit::Event>& events);
  void refuse_batch_for_audit(const Error& error, bool& rewritten, std::size_t pos);
  // Durable before it returns: sealed and journaled on this thread, or (fsync) by the writer
  // thread's group commit, awaited. The error when it could not be.
  asio::awaitable<std::optional<Error>> audit_durable(std::vector<audit::Event> events);
  asio::awaitable<std::optional<Error>> audit_wait(std::vector<audit::Event> events);
  // Collects the body of a ParameterStatus (and, when auditing, CommandComplete and
  // ErrorResponse), also across reads; `chunk` is what was given to scan().
  void watch_body(const protocol::ScanEvent& e, std::string_view chunk);
  void on_body(char type, std::string_view body);

  Server& server_;
  Worker& worker_;
  WorkerMetrics& metrics_;
  std::shared_ptr<const Runtime> rt_;
  std::uint32_t id_;
  std::unique_ptr<net::Stream> client_;
  std::unique_ptr<net::Stream> backend_;
  asio::steady_timer watchdog_timer_;
  std::string peer_;
  std::string client_address_;  // IP address text, for policy conditions
  // When it opened (both clocks, to turn steady times into wall times for the console), and the
  // last statement text the client sent (Query or Parse, at most 4 KiB; its capacity is reused).
  std::chrono::system_clock::time_point opened_wall_ = std::chrono::system_clock::now();
  Clock::time_point opened_steady_ = Clock::now();
  std::string now_text_;
  Clock::time_point now_text_at_{};
  void note_statement_text(std::string_view text) {
    now_text_.assign(text.substr(0, 4096));  // no allocation once the capacity is there
    now_text_at_ = last_activity_;
  }
  bool client_loopback_ = false;

  // startup state
  std::string startup_buf_;   // bytes read during the handshake, not yet consumed
  std::string backend_buf_;   // same, backend side
  identity::Identity identity_;
  const config::Target* target_ = nullptr;
  const config::Login* login_ = nullptr;        // the backend login for identity_ on target_
  std::optional<Clock::time_point> token_deadline_;  // the session ends then (token expiry + grace)
  std::string login_grant_;  // the access grant the backend login came from; the session ends with it
  std::string database_;      // as the client asked
  protocol::BackendKeyData backend_key_{};
  protocol::BackendKeyData client_key_{};
  bool registered_cancel_ = false;

  // relay state (touched only on this session's thread)
  net::IoBuffer cin_;
  net::IoBuffer bout_;
  protocol::StreamScanner scanner_{&protocol::is_backend_type};
  char tx_status_ = 'I';
  std::uint32_t inflight_ = 0;   // Query, FunctionCall and Sync messages awaiting ReadyForQuery
  protocol::ResponseTracker responses_;  // which of them the backend skips
  std::vector<Clock::time_point> started_;  // ring of statement start times
  std::size_t started_head_ = 0;
  char last_backend_type_ = 0;
  Clock::time_point last_activity_;
  bool ending_ = false;
  bool relay_started_ = false;
  bool terminate_forwarded_ = false;  // the client's Terminate went to the server, which closes after it
  int loops_done_ = 0;
  std::uint64_t watchdog_generation_ = 0;
  End end_;

  // policy state (this session's thread only)
  struct Refusal {
    std::string marker;   // the substitute's text, unique per refusal
    std::uint64_t group;  // ReadyForQuery count by which its batch has surely ended (never early:
                          // a Sync the backend ignores only makes this later)
    protocol::ErrorFields error;
    // > 0: the substitute's text is "<failing statement>;" (this many characters) + the Query's or
    // Parse's text, which the proxy could not parse. The server parses the whole string before it
    // runs any of it: an error of the substitute without the marker is the server's verdict on the text
    // (a syntax error with its SQLSTATE, message, hint and position), passed on with the
    // position moved back; with the marker, the server could parse it and the policy's error goes.
    std::size_t probe = 0;
    bool parse = false;  // the probe is a Parse (the first message of its batch)
  };
  std::string nonce_;              // marks this session's substitutes; unguessable by the client
  std::uint64_t refusal_seq_ = 0;
  std::deque<Refusal> refusals_;   // substitutes sent whose ErrorResponse has not come back yet
  std::uint64_t syncs_sent_ = 0;   // Query, Sync and FunctionCall messages forwarded
  bool batch_open_ = false;        // an extended-protocol message was forwarded since the last Sync
  std::uint64_t ready_seen_ = 0;   // ReadyForQuery messages relayed
  std::string rewrite_;            // client bytes to forward when a statement was replaced
  std::string rewrite_back_;       // backend bytes to forward on the slow path
  // What was prepared under each name with SQL PREPARE. Every text ever accepted under a name is
  // kept (bounded), because the proxy cannot tell which PREPARE the server actually carried out;
  // EXECUTE is judged against all of them. A DEALLOCATE whose batch ended without an error
  // forgets the name (deallocs_).
  std::unordered_map<std::string, std::vector<std::shared_ptr<const sql::Analysis>>> prepared_;
  bool client_utf8_ = true;  // client_encoding UTF8 or SQL_ASCII: names reach the server as sent
  void note_client_encoding(std::string_view name, std::string_view value);  // a ParameterStatus
  static bool converted_name_may_differ(char type, std::string_view body);
  // An identifier with a byte >= 0x80 (only_long: one of 62 bytes or more, which the server may cut
  // at 63 bytes in another encoding than the proxy reads).
  static bool names_non_ascii(const sql::Analysis& a, bool only_long = false);
  static bool long_non_ascii(std::string_view name);
  std::shared_ptr<const policy::Decision> long_name_refusal();
  // A Bind refused: recorded (the statement it would have bound, when known, and the portal it
  // leaves unbound) and answered in its place. Returns false, for `return refuse_bind(...)`.
  bool refuse_bind(const policy::Decision& d, const std::shared_ptr<const sql::Analysis>& a, std::string_view portal,
                   std::string& substitute);
  std::unordered_set<std::string> sql_prepared_names_;  // names of prepared_ used by SQL PREPARE (not only Parse)
  bool sql_prepared_overflow_ = false;  // a SQL PREPARE was not recorded (kMaxPreparedNames)
  // Cursors declared through the proxy, by name: every DECLARE accepted under the name since it
  // was last closed (bounded; a null entry: too many to keep track of, FETCH is opaque).
  struct Cursor {
    std::vector<std::shared_ptr<const sql::Analysis>> versions;
    bool hold = false;        // WITH HOLD: survives the end of its transaction
    std::uint64_t group = 0;  // syncs_sent_ when last declared: a ReadyForQuery before that one is not its end
    std::uint64_t seq = 0;    // portal_ops_ when last declared: a CLOSE noted before it does not close it
  };
  std::unordered_map<std::string, Cursor> cursors_;
  // The judgment of an Execute of a SQL cursor's name (rejudge_execute), for its audit record.
  struct CursorExecute {
    std::string name;
    std::shared_ptr<const sql::Analysis> analysis;
    std::shared_ptr<const policy::Decision> decision;
  } cursor_execute_;
  bool transient_cursors_ = false;  // a cursor without HOLD is recorded: forget it at the transaction's end
  bool cursors_overflow_ = false;   // a DECLARE was not recorded: FETCH of an unknown name is refused
  // CLOSE / CLOSE ALL / DISCARD ALL sent with the simple protocol: the proxy forgets the cursors
  // when the Query's ReadyForQuery comes without an error in its answer (a CLOSE that failed, or
  // was skipped after an earlier error, closed nothing — found by adversarial testing).
  struct CursorClose {
    std::uint64_t group;
    std::string name;  // "" with all = true
    bool all = false;
    std::uint64_t seq = 0;  // portal_ops_ when sent: a portal bound after it (same batch) stays
  };
  std::vector<CursorClose> cursor_closes_;
  // SQL DEALLOCATE name / DEALLOCATE ALL / DISCARD ALL run (a Query, or an Execute of the unnamed
  // portal bound in the same batch: execute_effects): what it names is forgotten from prepared_ and statements_ once its batch's ReadyForQuery comes
  // without an error (cursors_at_ready), so that sessions which DEALLOCATE what they no longer
  // need (psycopg 3's statement cache) never fill the proxy's tables (found by a psycopg trial:
  // after 100,000 statements every new one was refused). seq orders it against PREPAREs and
  // Parses of the name (prepared_seq_, Judged::seq): what was prepared after it stays.
  struct Dealloc {
    std::uint64_t group;
    std::string name;  // "" with all = true
    bool all = false;
    std::uint64_t seq = 0;
  };
  std::vector<Dealloc> deallocs_;
  std::unordered_map<std::string, std::uint64_t> prepared_seq_;  // the last PREPARE (or Parse) of each prepared_ name
  std::uint64_t untracked_seq_ = 0;  // the last Parse or PREPARE not recorded (the tables were full)
  std::uint64_t sql_untracked_ = 0;  // SQL PREPAREs not recorded, less DEALLOCATEs of names the proxy did not know
  void note_deallocs(const sql::Analysis& a);
  void execute_effects(std::string_view portal);
  void forget_deallocated(const Dealloc& d);
  bool cursor_batch_error_ = false;  // an ErrorResponse since the last ReadyForQuery
  mutable bool untracked_cursor_ = false;  // resolve_executes met a FETCH of a cursor it lost track of
  // Extended-protocol statements by name, with the policy generation that judged them: a Bind
  // after a reload judges the statement again under the new policy.
  struct Judged {
    std::shared_ptr<const sql::Analysis> analysis;
    std::uint64_t generation = 0;
    std::shared_ptr<const policy::Decision> decision;  // for audit (null when audit is off, unless review)
    bool review = false;  // its Executes wait for approval (session_hold.cpp)
    std::string text;     // review only: the statement exactly as parsed, for the request
    std::vector<std::uint32_t> param_types;  // review only: as the Parse gave them (0: unspecified)
    // The session's search_path state when it was judged: the server re-plans a prepared statement
    // for a new search_path, so a Bind after a change is judged again (found by adversarial testing:
    // psycopg's automatic prepare read another schema's table after SET search_path).
    bool search_path_changed = false;
    std::uint64_t seq = 0;  // portal_ops_ at its Parse: a DEALLOCATE sent after it forgets it
  };
  struct NameHash {  // lookups by string_view: no copy of the name per Bind
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, Judged, NameHash, std::equal_to<>> statements_;
  // Portals bound through the proxy, with the policy generation and search_path state that judged
  // their statement: an Execute (or SQL FETCH of a named portal) after a reload or a search_path
  // change judges the statement again, so a rule loaded while a portal is open stops further rows.
  // Every statement bound under a name since it was last closed is kept (a Bind that fails because
  // the name is taken leaves the old portal, which a ROLLBACK TO can make usable again); the end of
  // a transaction ends them all. Without a tracked statement (too many names), a named portal's
  // Execute after a reload is refused.
  struct BoundPortal {
    std::vector<std::shared_ptr<const sql::Analysis>> versions;  // one statement each
    std::uint64_t generation = 0;
    bool search_path_changed = false;
    std::uint64_t group = 0;  // syncs_sent_ at the last Bind: a ReadyForQuery before that one is not its end
    std::uint64_t seq = 0;    // portal_ops_ at the last Bind
  };
  static constexpr std::size_t kMaxPortalNames = 10000;
  static constexpr std::size_t kMaxPortalVersions = 8;
  BoundPortal unnamed_portal_;  // versions: empty, or the one statement of the unnamed portal
  std::unordered_map<std::string, BoundPortal, NameHash, std::equal_to<>> bound_portals_;
  bool portals_overflow_ = false;  // a named portal was not recorded (until the transaction ends)
  // A Parse was not recorded (kMaxProtocolStatements): a Bind of a statement the proxy does not know
  // is refused once the policy generation or search_path state differs from these.
  bool statements_overflow_ = false;
  std::uint64_t statements_overflow_generation_ = 0;
  bool statements_overflow_search_path_ = false;
  std::uint64_t portal_ops_ = 0;
  BoundPortal overflow_portal_;  // stands for every named portal not recorded while portals_overflow_
  static constexpr std::uint64_t kStale = ~std::uint64_t{0};  // BoundPortal::generation: judge again at Execute
  // A Bind of `portal` from `a` (null: a statement the proxy does not know), judged under `generation`.
  void note_portal(std::string_view portal, std::shared_ptr<const sql::Analysis> a, std::uint64_t generation);
  void portals_at_ready();  // idle ReadyForQuery: portals bound up to it are gone
  // false: the Execute is refused (`substitute` holds what to send instead).
  bool rejudge_execute(std::string_view body, std::string& substitute);
  // An approval's match key for a statement's key here: bound to this session's database and
  // search_path state (session_hold.cpp).
  // `search_path`: its value as the server holds it, when known (a Query held).
  std::string scoped_match_key(const std::string& statement_key, const std::string* search_path = nullptr) const;
  // The statements prepared (cursors declared) under the name `st` EXECUTEs (FETCHes); null: none.
  const std::vector<std::shared_ptr<const sql::Analysis>>* prepared_versions(const sql::Statement& st) const;
  const std::vector<std::shared_ptr<const sql::Analysis>>* cursor_versions(const sql::Statement& st) const;
  // Access-grant roles active now on this session's target (and, through a "*" target, on the
  // database the session opened). Needs server_.approvals().
  std::vector<std::string> active_grants(std::chrono::system_clock::time_point now) const;
  // FETCH of a named portal: its statements, as a cursor's (resolve_executes). Null: not a portal.
  const std::vector<std::shared_ptr<const sql::Analysis>>* portal_versions(std::string_view name) const;
  // Parse and Close messages forwarded whose answer (ParseComplete, CloseComplete) has not come
  // back. statements_ shows their effect at once; at the ReadyForQuery that ends their batch,
  // those the backend did not carry out (an error in them or earlier in the batch, a name already
  // in use) are undone. Otherwise a refused or failed Parse, or a Close skipped after an error,
  // would make the proxy judge a name by another statement than the one the server runs under it.
  struct NameOp {
    char kind = 'P';            // 'P' Parse, 'S' Close of a statement, 'C' Close of a portal
    std::uint64_t group = 0;    // as Refusal::group
    std::string name;
    std::optional<Judged> before;  // 'P': the entry it replaced
    std::uint64_t seq = 0;         // 'C': portal_ops_ when sent (a portal held after it stays)
  };
  std::deque<NameOp> name_ops_;
  Judged bound_sql_prepared_;  // judge_bind_of_sql_prepared -> audit_bind: what the Bind was judged as
  void note_parse(std::string_view name, Judged j);
  void note_close(char what, std::string_view name);
  void held_portal_rebound(std::string_view portal);  // a Bind of the name from a statement without review
  // What an unanswered Parse of `name` in an earlier batch replaced (null: none, or in this batch).
  const Judged* replaced_by_pending_parse(std::string_view name) const;
  // A refusal when `a` FETCHes or MOVEs in a portal held for approval (null: none).
  std::shared_ptr<const policy::Decision> held_portal_fetch(const sql::Analysis& a) const;
  void name_op_answered(char reply);  // ParseComplete '1' or CloseComplete '3'
  void name_ops_ended();              // at ReadyForQuery: undo what the backend did not carry out
  // Portals bound from a statement that needs review, with their parameters: their Execute is
  // held (session_hold.cpp). Approved: further Executes of the portal (more rows) run.
  struct HeldPortal {
    std::shared_ptr<const sql::Analysis> analysis;
    std::string text;                                     // the statement as parsed
    std::vector<std::optional<std::string>> params;       // as shown to reviewers
    std::string key;                                      // approvals::match_key over text and exact values
    bool approved = false;
    // Forgotten only once the server is known to have dropped the portal: at its CloseComplete,
    // or at the idle ReadyForQuery that ends its transaction. A Bind of the name from another
    // statement may fail (the name is taken, the batch aborted) and leave this portal, which a
    // ROLLBACK TO makes usable again (found by adversarial testing: forgotten at that Bind, the
    // held DELETE then ran unreviewed); only Executes in the same batch as that Bind are its.
    std::uint64_t group = 0;                  // syncs_sent_ at its Bind
    std::uint64_t seq = 0;                    // portal_ops_ at its Bind
    std::uint64_t rebound_group = kNoGroup;   // syncs_sent_ at a later Bind of the name from another statement
    bool shadows = false;  // bound over a held, unapproved portal of an earlier batch (hold_front_query)
    std::uint64_t approved_generation = 0;  // the policy generation it was approved under
  };
  static constexpr std::uint64_t kNoGroup = ~std::uint64_t{0};
  std::unordered_map<std::string, HeldPortal, NameHash, std::equal_to<>> held_portals_;
  // Who writes to the client right now: the relay (backend_to_client) or a hold's notice.
  enum class ClientWriter : std::uint8_t { None, Relay, Hold };
  ClientWriter client_writer_ = ClientWriter::None;
  bool client_writer_waiter_ = false;  // the client side waits for the relay's write to end

  // hold and row-estimate state
  bool hold_request_ = false;      // the Query or Execute at the front of cin_ waits for approval
  bool release_front_ = false;     // the Query at the front of cin_ was approved: judge lets it pass
  policy::Decision released_decision_;
  bool holding_ = false;           // waiting for a reviewer right now
  std::atomic<bool> held_now_{false};  // holding_, for the cancel handler on another thread
  bool hold_cancelled_ = false;    // the client cancelled (Ctrl-C) while held
  bool hold_decided_ = false;      // the request left pending (set from the approvals' callback)
  bool wait_for_approval_ = true;  // SET gatehouse.wait = off: refuse at once with the request id
  std::string reason_;             // SET gatehouse.reason = '...': the justification of requests
  bool estimate_request_ = false;  // the Query at the front of cin_ waits for its estimate
  bool front_estimated_ = false;   // the Query at the front of cin_ has had it: judge and forward
  bool rescan_ = false;
  bool estimate_skip_logged_ = false;
  std::int64_t last_row_estimate_ = -1;  // the front Query's EXPLAIN estimate (-1: none made)
  // Long statement texts are analysed on the shared analysis pool, not on this worker's thread,
  // so one client's 500 KB INSERT cannot stall every other session of the worker.
  bool offload_request_ = false;
  // CopyIn: the statement behind a Wait barrier reads COPY data; only copy messages pass until
  // CopyDone/CopyFail, then the barrier waits again.
  enum class Barrier { None, AfterThis, AtSync, Wait, CopyIn };
  Barrier settings_barrier_ = Barrier::None;  // see may_change_tokenising
  std::shared_ptr<const sql::Analysis> front_analysis_;  // analysis of the message at the front of cin_
  std::string param_buf_;          // a ParameterStatus (or, when auditing, CommandComplete or
  std::uint32_t param_need_ = 0;   // ErrorResponse) split across reads; bytes of it still to come
  char param_type_ = 0;
  std::optional<std::string> unsafe_setting_;  // set: end the session            // scanning stopped before such a Query: scan again, don't read
  struct ExplainCapture {
    bool active = false;  // EXPLAIN sent: backend messages up to its ReadyForQuery are ours
    bool done = false;
    bool error = false;
    std::string json;         // the plan
    std::string error_bytes;  // ErrorResponse + ReadyForQuery, for the client when planning failed
  };
  ExplainCapture explain_;
  // Runs `sql` (one simple Query) on the backend for the proxy itself, the backend idle: the first
  // column of its rows, or its error, ends up in explain_. An End when the session must end.
  asio::awaitable<std::optional<End>> capture_query(std::string sql);
  asio::steady_timer relay_signal_;  // wakes the client side when the backend side progresses
  std::shared_ptr<const Runtime> policy_rt_;  // the runtime whose policy judges statements

  // audit state (this session's thread only)
  std::shared_ptr<const audit::SessionContext> audit_ctx_;  // null: not auditing
  bool audit_required_ = false;
  std::string startup_user_;
  bool connect_failed_recorded_ = false;  // a login that did not succeed has its audit record
  std::string application_name_;
  std::uint64_t audit_seq_ = 0;             // statements numbered per session
  std::vector<audit::Event> audit_batch_;   // statement events of the client batch being scanned
  std::vector<audit::Event> audit_results_; // result events of the backend read being relayed
  struct AuditPending {
    enum class Kind : std::uint8_t { Query, Execute, Sync } kind = Kind::Query;
    bool refused = false;      // refused by policy: its Statement record already says so
    bool failed = false;
    std::uint64_t statement = 0;
    std::int64_t rows = -1;
    std::uint32_t max_rows = 0;  // Execute: rows asked for (0: all); a PortalSuspended returned that many
    Clock::time_point start;
    std::string sqlstate, message;
    std::vector<std::string> masked;  // result columns masking masked (ResultMasker::take_masked)
    // The statement's record-to-be, written with its outcome when it ends (its intent is in the
    // trail); empty when its Statement record was written before it ran (a Result follows).
    std::optional<audit::Event> event;
  };
  std::deque<AuditPending> audit_pending_;
  // DataRows relayed since the last CommandComplete, ErrorResponse or ReadyForQuery: the rows a
  // statement returned before an error or a cancel ended it (no CommandComplete counts them).
  std::uint64_t data_rows_ = 0;
  void audit_complete(AuditPending& p, const char* outcome);  // its record, with the outcome
  // The next n pending Queries were skipped by the backend; just_forwarded: the one just scanned.
  void audit_skipped(std::uint32_t n, bool just_forwarded);
  // Statements in flight whose audit records wait here: beyond, the client is not read (backpressure).
  static constexpr std::size_t kMaxAuditInflight = 10000;
  bool audit_backpressure_ = false;  // the client side waits for answers (kMaxAuditInflight)
  // Executes of the current extended-protocol batch that ended well: recorded at its
  // ReadyForQuery, because the implicit commit at Sync can still fail (a deferred constraint).
  std::vector<audit::Event> batch_done_;
  struct Portal {
    std::shared_ptr<const sql::Analysis> analysis;
    std::shared_ptr<const policy::Decision> decision;
    std::vector<std::optional<std::string>> params;
    bool binary = false;
    std::uint64_t group = 0;  // syncs_sent_ at its Bind: named portals end with their transaction
  };
  std::unordered_map<std::string, Portal, NameHash, std::equal_to<>> portals_;
  void audit_portals_at_ready();  // idle ReadyForQuery: the named portals bound up to it are gone
  bool batch_failed_ = false;  // an error in the current extended-protocol batch: Executes until Sync are skipped
  std::string batch_error_;    // the SQLSTATE of the Execute that failed it
  bool refused_in_batch_ = false;
  // The session set its search_path (or may have): allow rules no longer take an unqualified name
  // for one in public. Set when a statement that sets it is judged (allowed or not: fail closed).
  bool search_path_changed_ = false;
  static bool changes_search_path(const sql::Statement& st);
  // The backend reads COPY data (CopyInResponse seen, the client's CopyDone/CopyFail not yet sent):
  // it ignores Sync and Flush meanwhile, so a Sync then gets no ReadyForQuery of its own.
  bool copy_in_ = false;
  bool analysing_ = false;  // a long statement is being analysed on the analysis pool
  std::uint32_t syncs_after_execute_ = 0;  // Syncs forwarded since the last Execute (0 after a Query)
  bool execute_unsynced_ = false;  // an Execute was forwarded and no Sync (or Query) after it yet
  // A statement may be running: one answered by a ReadyForQuery not yet seen, or an Execute sent
  // without its Sync (pipeline mode's Flush).
  bool running() const { return inflight_ > 0 || execute_unsynced_; }
  // Statements sent that may start COPY FROM STDIN and have not yet (in the order sent): their
  // batch (syncs_sent_ then: gone once ready_seen_ passes it), and, when the client's CopyDone or
  // CopyFail for it went out before its CopyInResponse came, the Syncs sent between the statement
  // and that CopyDone (syncs_after_execute_ then). A CopyDone or CopyFail with no such statement
  // waiting is ignored by the server, and by the proxy (found by adversarial testing: a stray one,
  // or a second COPY's in one pipeline, shifted the session's Sync count and with it every later
  // audit record).
  struct CopyCandidate {
    std::uint64_t group = 0;
    std::optional<std::uint32_t> end_syncs;
  };
  std::deque<CopyCandidate> copy_candidates_;
  static bool may_copy_in(std::string_view query_text);
  bool execute_may_copy_in(std::string_view execute_body) const;
  void copy_in_started();  // the proxy refused a Parse, Bind or Execute of the batch the client is sending
  std::uint64_t policy_generation_ = 0;
  // Decisions of statements served from the analysis cache, by Analysis::cache_id: the same
  // statement gets the same decision while the policy generation and the search_path state are
  // the same and the policy has no time windows or grant rules (see decide()). Allocated on first
  // use, so idle sessions do not hold it.
  struct Memo {
    std::uint64_t cache_id = 0;
    std::uint64_t generation = 0;
    bool search_path_changed = false;
    std::shared_ptr<const policy::Decision> decision;
  };
  static constexpr std::size_t kMemoSlots = 4;
  std::unique_ptr<std::array<Memo, kMemoSlots>> memo_;
};

}  // namespace gh::proxy
