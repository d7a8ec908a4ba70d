#include "proxy/session.h"
#include "protocol/startup_settings.h"

#include "approvals/approvals.h"

#include <asio/experimental/awaitable_operators.hpp>
#include <spdlog/spdlog.h>

#include "audit/trail.h"
#include "base/bytes.h"
#include "net/await.h"
#include "identity/scram.h"
#include "proxy/server_impl.h"
#include "sql/analyzer.h"

namespace gh::proxy {

using namespace asio::experimental::awaitable_operators;
using asio::awaitable;
using protocol::ErrorFields;
using protocol::fatal;

namespace {
constexpr auto tuple_awaitable = gh::net::use_tuple;
constexpr std::size_t kMaxAuthMessage = 64 * 1024;     // tokens are a few KB
constexpr std::size_t kMaxBackendStartupMessage = 1 << 20;

// Statement texts longer than this are analysed on the analysis pool (libpg_query needs ~2 ms
// per 1 KB of a long INSERT; 500 KB would hold the worker for a second).
constexpr std::size_t kOffloadAnalysis = 16 * 1024;

asio::thread_pool& analysis_pool() {
  static asio::thread_pool pool(2);
  return pool;
}

awaitable<std::shared_ptr<const sql::Analysis>> analyze_on_pool(std::string text) {
  co_return std::make_shared<const sql::Analysis>(sql::analyze_uncached(text));
}

awaitable<std::shared_ptr<const sql::Analysis>> analyze_off_thread(std::string text) {
  co_return co_await asio::co_spawn(analysis_pool(), analyze_on_pool(std::move(text)), asio::use_awaitable);
}

std::string escape_option_value(std::string_view v) {
  // PostgreSQL splits `options` at any whitespace (isspace: also tab, newline, CR, VT, FF), and a
  // backslash makes the next character literal.
  std::string out;
  for (char c : v) {
    if (c == ' ' || c == '\\' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

// gatehouse.identity_groups: names joined with ',', a ',' or '\\' inside a name escaped with '\\'.
std::string joined_groups(const std::vector<std::string>& groups) {
  std::string out;
  for (std::size_t i = 0; i < groups.size(); ++i) {
    if (i > 0) out += ',';
    for (char c : groups[i]) {
      if (c == ',' || c == '\\') out += '\\';
      out += c;
    }
  }
  return out;
}

awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  t.expires_after(d);
  co_await t.async_wait(tuple_awaitable);
}

// Handshake reads go into a growing string; the relay has its own buffers.
awaitable<std::error_code> read_more(net::Stream& s, std::string& buf) {
  constexpr std::size_t kChunk = 2048;
  const std::size_t old = buf.size();
  buf.resize(old + kChunk);
  auto [ec, n] = co_await s.read_some(buf.data() + old, kChunk);
  buf.resize(old + (ec ? 0 : n));
  co_return ec;
}

struct Message {
  char type = 0;
  std::string body;
};

// One whole message from the front of `buf`, reading more as needed. nullopt when the peer went
// away or, with `error` set, when the bytes are not a valid message.
awaitable<std::optional<Message>> read_message(net::Stream& s, std::string& buf, bool from_client, std::size_t max,
                                               std::string& error) {
  for (;;) {
    auto r = from_client ? protocol::decode_frontend(buf, max) : protocol::decode_backend(buf, max);
    if (r.status == protocol::Decode::Message) {
      Message m{r.frame.type, std::string(r.frame.body)};
      buf.erase(0, r.frame.wire_size);
      co_return m;
    }
    if (r.status == protocol::Decode::Error) {
      error = std::move(r.error);
      co_return std::nullopt;
    }
    if (co_await read_more(s, buf)) co_return std::nullopt;
  }
}

bool truthy_replication(const std::string& v) {
  return !(v == "false" || v == "off" || v == "no" || v == "0");
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  return true;
}
}  // namespace

const char* const kUnsafeSettingHint =
    "use client_encoding UTF8 (or another encoding PostgreSQL allows on the server) and keep "
    "standard_conforming_strings on";

// The analyzer reads SQL as PostgreSQL does with standard_conforming_strings on and an
// ASCII-safe encoding. Under standard_conforming_strings = off, or a client-only encoding whose
// multibyte characters may contain the bytes of ' or \ (SJIS, BIG5, GBK, ...), the server would
// split the same bytes into different tokens — a statement hidden in what the analyzer takes for
// a string literal. Such sessions are not relayed.
std::optional<std::string> unsafe_for_analysis(std::string_view name, std::string_view value) {
  if (iequals(name, "standard_conforming_strings") && !iequals(value, "on"))
    return "standard_conforming_strings is off for this session; Gatehouse checks SQL only with it on";
  if (iequals(name, "client_encoding")) {
    static constexpr std::string_view kUnsafe[] = {"SJIS", "SHIFT_JIS_2004", "BIG5", "GBK", "UHC", "GB18030", "JOHAB"};
    for (auto e : kUnsafe)
      if (iequals(value, e))
        return "client_encoding " + std::string(value) +
               " is not supported through Gatehouse: its characters can contain quote and backslash bytes, "
               "so SQL could not be checked reliably";
  }
  return std::nullopt;
}

Session::Session(Server& server, Worker& worker, asio::ip::tcp::socket socket, std::uint32_t id)
    : server_(server),
      worker_(worker),
      metrics_(worker.metrics),
      rt_(server.runtime()),
      id_(id),
      client_(std::make_unique<net::Stream>(std::move(socket))),
      watchdog_timer_(worker.io),
      relay_signal_(worker.io) {
  peer_ = client_->peer();
  {
    std::error_code ec;
    const auto ep = client_->socket().remote_endpoint(ec);
    if (!ec) client_address_ = ep.address().to_string();
  }
  client_loopback_ = client_->loopback();
  std::error_code ec;
  client_->socket().set_option(asio::ip::tcp::no_delay(true), ec);
}

Session::~Session() = default;

void Session::kick() {
  asio::post(worker_.io, [self = shared_from_this()] {
    if (!self->relay_started_) {
      self->watchdog_timer_.cancel();  // still logging in: run() ends it (see there)
      return;
    }
    self->on_watchdog();
  });
}

// ---- top level ------------------------------------------------------------------------------

awaitable<void> Session::run() {
  auto self = shared_from_this();
  metrics_.connections_opened.fetch_add(1, std::memory_order_relaxed);
  const auto& limits = rt_->config->limits;

  bool ok = false;
  bool timed_out = false;
  bool shut_down = server_.draining();  // accepted just before the listener closed
  try {
    // Until the relay starts, the watchdog timer is the shutdown's signal: kick() cancels it, so a
    // login in progress ends at once instead of holding the shutdown for the handshake timeout
    // (found by adversarial testing: a silent connection delayed the exit by handshake_timeout).
    watchdog_timer_.expires_at(Clock::time_point::max());
    if (!shut_down) {
      auto r = co_await (handshake() || sleep_for(limits.handshake_timeout) ||
                         watchdog_timer_.async_wait(tuple_awaitable));
      if (r.index() == 0)
        ok = std::get<0>(r);
      else if (r.index() == 1)
        timed_out = true;
      else
        shut_down = true;
    }
  } catch (const std::exception& e) {
    spdlog::error("session {}: handshake failed: {}", id_, e.what());
  }
  if (shut_down) {
    ending_ = true;
    co_await fail_client(fatal("57P01", "terminating connection because the proxy is shutting down",
                               "reconnect; another proxy instance or the restarted one will serve you"),
                         "shutdown during login");
  }
  if (timed_out) {
    spdlog::info("session {} from {}: handshake not completed within {} ms", id_, peer_, limits.handshake_timeout.count());
    // The handshake may have been cut mid-write; this error is best effort.
    co_await fail_client(fatal("08006", fmt::format("connection handshake not completed within {:g} s",
                                                     limits.handshake_timeout.count() / 1000.0)),
                         "handshake timeout");
  }
  if (!ok && !timed_out && !startup_user_.empty() && !connect_failed_recorded_) {
    // A login given up by the client (closed during authentication, or while the backend was being
    // reached) is an attempt too (found by adversarial testing: SCRAM exchanges abandoned after the
    // server's challenge left no record).
    const char* why = ending_ ? "the proxy ended the session before its login completed"
                              : "the client closed the connection before its login completed";
    spdlog::info("session {} from {}: {}", id_, peer_, why);
    audit_connect_failed(fatal(ending_ ? "57P01" : "08006", why), "");
  }
  if (ok) {
    spdlog::info("session {}: {} connected from {} to target \"{}\" (database \"{}\")", id_, identity_.subject, peer_,
                 target_->name, target_->backend_database(database_));
    spdlog::debug("session {}: on worker {}, client TLS {}, application_name \"{}\"", id_, worker_.index,
                  client_->tls() ? client_->tls_description() : std::string("off"), application_name_);
    last_activity_ = Clock::now();
    start_relay();  // the session lives on in the relay loops; this frame ends here
    co_return;
  }
  client_->close();
  if (backend_) backend_->close();
  finish();
}

void Session::finish() {
  if (registered_cancel_) server_.impl_->cancels.remove(client_key_);
  metrics_.connections_closed.fetch_add(1, std::memory_order_relaxed);
  server_.active_.fetch_sub(1, std::memory_order_relaxed);
  worker_.live.fetch_sub(1, std::memory_order_relaxed);
  worker_.sessions.erase(shared_from_this());
}

awaitable<void> Session::send_to_client(std::string bytes) {
  co_await client_->write_all(bytes.data(), bytes.size());
}

awaitable<void> Session::fail_client(ErrorFields e, std::string log_reason) {
  std::string out;
  protocol::write_error_response(out, e);
  try {
    co_await (client_->write_all(out.data(), out.size()) || sleep_for(std::chrono::seconds(2)));
  } catch (...) {
  }
  if (!log_reason.empty())
    spdlog::info("session {} from {}: refused: {} ({}: {})", id_, peer_, log_reason, e.sqlstate, e.message);
  audit_connect_failed(e, log_reason);
  client_->close();
}

// ---- handshake ------------------------------------------------------------------------------

awaitable<bool> Session::handshake() {
  protocol::StartupMessage startup;
  if (!co_await read_startup(startup)) co_return false;
  if (!co_await authenticate(startup)) co_return false;
  if (!co_await connect_backend(startup)) co_return false;
  co_return true;
}

awaitable<bool> Session::read_startup(protocol::StartupMessage& out) {
  const auto& cfg = *rt_->config;
  for (;;) {
    protocol::StartupResult r;
    for (;;) {
      r = protocol::decode_startup(startup_buf_);
      if (r.status != protocol::Decode::NeedMore) break;
      if (auto ec = co_await read_more(*client_, startup_buf_)) {
        if (!startup_buf_.empty())
          spdlog::info("session {} from {}: closed during startup: {}", id_, peer_, net::describe(ec));
        co_return false;
      }
    }
    if (r.status == protocol::Decode::Error) {
      metrics_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
      co_await fail_client(fatal(r.sqlstate, r.error), "malformed startup packet");
      co_return false;
    }
    startup_buf_.erase(0, r.consumed);
    if (std::holds_alternative<protocol::SSLRequest>(r.packet)) {
      if (client_->tls()) {
        co_await fail_client(fatal("08P01", "SSLRequest received on an encrypted connection"), "protocol");
        co_return false;
      }
      if (!startup_buf_.empty()) {  // CVE-2021-23214: no plaintext may ride along with SSLRequest
        metrics_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
        co_await fail_client(fatal("08P01", "received unencrypted data after SSL request"), "protocol");
        co_return false;
      }
      if (!rt_->client_tls) {
        co_await send_to_client("N");
        continue;
      }
      co_await send_to_client("S");
      if (auto ec = co_await client_->tls_accept(*rt_->client_tls)) {
        spdlog::info("session {} from {}: TLS handshake failed: {}", id_, peer_, net::describe(ec));
        // A failed connection attempt like a refused login (found by adversarial testing: TLS 1.1
        // clients and other failed handshakes left no audit record).
        audit_connect_failed(fatal("08P01", "TLS handshake failed: " + net::describe(ec)), "");
        client_->close();
        co_return false;
      }
      continue;
    }
    if (std::holds_alternative<protocol::GSSENCRequest>(r.packet)) {
      if (!startup_buf_.empty()) {
        co_await fail_client(fatal("08P01", "received unencrypted data after GSSAPI encryption request"), "protocol");
        co_return false;
      }
      co_await send_to_client("N");
      continue;
    }
    if (auto* c = std::get_if<protocol::CancelRequest>(&r.packet)) {
      co_await handle_cancel(*c);
      co_return false;
    }
    out = std::move(std::get<protocol::StartupMessage>(r.packet));
    break;
  }
  if (cfg.tls.mode == config::ClientTlsMode::Require && !client_->tls()) {
    co_await fail_client(fatal("28000", "this proxy requires TLS; connect with sslmode=require (or verify-full)"),
                         "plaintext refused");
    co_return false;
  }
  co_return true;
}

awaitable<void> Session::handle_cancel(protocol::CancelRequest req) {
  // The protocol sends no reply to a CancelRequest: the client takes the closed connection as
  // "delivered" and moves on. So it is closed only once the server took the cancel (as the
  // postmaster does), or it would land on the client's next statement (found by adversarial
  // testing: 27 of 30 cancels sent while idle cancelled the statement after).
  co_await forward_cancel(server_, metrics_, worker_.unknown_cancel_log, peer_, req);
  client_->close();
}

// A Cancel record: of the session whose key it names, or (`session` null) from `peer` alone.
void Session::record_cancel(Server& server, std::shared_ptr<const audit::SessionContext> session,
                            const std::string& peer, const char* outcome, std::string message,
                            std::uint64_t held_back) {
  auto* trail = server.audit();
  if (!trail) return;
  audit::Event e;
  e.type = audit::EventType::Cancel;
  e.time = std::chrono::system_clock::now();
  if (!session) {
    auto ctx = std::make_shared<audit::SessionContext>();
    ctx->client_address = peer.substr(0, peer.rfind(':'));
    session = std::move(ctx);
  }
  e.session = std::move(session);
  e.outcome = outcome;
  e.message = std::move(message);
  e.fields = {{"from", peer}};
  if (held_back > 0) e.fields.emplace_back("held_back", std::to_string(held_back));
  trail->submit(std::move(e));
}

awaitable<void> Session::forward_cancel(Server& server, WorkerMetrics& metrics, Worker::HeldCancels& unknown_keys,
                                        std::string peer, protocol::CancelRequest req) {
  metrics.cancel_requests.fetch_add(1, std::memory_order_relaxed);
  auto route = server.impl_->cancels.find(req.process_id, req.secret_key);
  // Recorded, as any connection attempt is: who asked to cancel which session's statement, and
  // the requests with a key no session has (someone guessing keys).
  auto record = [&](const char* outcome, std::string message, std::uint64_t held_back = 0) {
    if (route && !route->audit) return;
    record_cancel(server, route ? route->audit : nullptr, peer, outcome, std::move(message), held_back);
  };
  if (!route) {
    // Anyone can send these, as fast as they like: one record (and log line) a second per worker
    // thread, with how many were held back since the last (found by adversarial testing: 6,000
    // records and log lines in 0.6 s from one client).
    const auto held = unknown_keys.gate.admit();
    if (!held) {
      // Held back: recorded a second after the last record, unless a later request is let through
      // first and carries the count (found by an audit trial: a burst of guesses that stopped
      // left one record, with the rest nowhere, not even at shutdown).
      unknown_keys.last_from = peer;
      if (unknown_keys.flush_pending) co_return;
      unknown_keys.flush_pending = true;
      auto ex = co_await asio::this_coro::executor;
      asio::co_spawn(
          ex,
          [](Server& server, Worker::HeldCancels& keys) -> awaitable<void> {
            asio::steady_timer t(co_await asio::this_coro::executor);
            t.expires_at(keys.gate.last() + std::chrono::seconds(1));
            co_await t.async_wait(net::use_tuple);
            keys.flush_pending = false;
            const auto n = keys.gate.take_held();
            if (n == 0) co_return;  // a later request was let through and carried the count
            spdlog::info("{} more cancel request(s) for unknown session keys ignored in the last second (the last "
                         "from {})", n, keys.last_from);
            // Stands for the held-back requests only (no request of its own), and says so.
            record_cancel(server, nullptr, keys.last_from, "refused",
                          "cancel requests with keys no session has, held back (fields.held_back)", n);
          }(server, unknown_keys),
          asio::detached);
      co_return;
    }
    spdlog::info("cancel request from {} for an unknown session key ignored{}", peer,
                 *held ? fmt::format(" ({} more since the last one)", *held) : std::string());
    record("refused", "no session has this cancel key", *held);
    co_return;
  }
  if (route->on_cancel && route->on_cancel()) {  // a statement held for approval is cancelled here
    spdlog::info("cancel request from {}: the statement held for approval is cancelled", peer);
    record("ok", "the statement held for approval was cancelled");
    co_return;
  }
  std::string failed;  // why the cancel did not reach the server; "" when it did
  try {
    auto ex = co_await asio::this_coro::executor;
    asio::ip::tcp::resolver resolver(ex);
    auto [rec, endpoints] = co_await resolver.async_resolve(route->host, std::to_string(route->port), tuple_awaitable);
    asio::ip::tcp::socket sock(ex);
    std::error_code cec;
    if (rec) {
      failed = "cannot resolve " + route->host + ": " + rec.message();
    } else {
      std::tie(cec, std::ignore) = co_await asio::async_connect(sock, endpoints, tuple_awaitable);
      if (cec) failed = "cannot connect: " + cec.message();
    }
    if (failed.empty()) {
      net::Stream s(std::move(sock));
      if (route->tls) {
        std::string req_bytes;
        protocol::write_ssl_request(req_bytes);
        char answer = 0;
        std::error_code tec = co_await s.write_all(req_bytes.data(), req_bytes.size());
        if (!tec) tec = co_await s.read_exact(&answer, 1);
        if (tec) {
          failed = "the connection closed during the TLS request";
        } else if (answer == 'S') {
          auto rt = server.runtime();
          auto it = rt->backend_tls.find(route->target);
          if (it == rt->backend_tls.end())
            failed = "the target's TLS settings are gone (reloaded)";
          else if (const auto hec = co_await s.tls_connect(*it->second, route->host, false); hec)
            failed = "the TLS handshake failed: " + hec.message();
        }
      }
      if (failed.empty()) {
        std::string msg;
        protocol::write_cancel_request(msg, {route->backend_key.process_id, route->backend_key.secret_key});
        const std::error_code wec = co_await s.write_all(msg.data(), msg.size());
        if (wec) {
          failed = "the connection closed before the cancel was sent";
        } else {
          char sink[16];
          co_await (s.read_some(sink, sizeof sink) || sleep_for(std::chrono::seconds(2)));  // wait for the server to close
        }
      }
      s.close();
    }
  } catch (const std::exception& e) {
    failed = e.what();
  }
  if (failed.empty()) {
    spdlog::info("cancel request from {} forwarded to target \"{}\"", peer, route->target);
    record("ok", "forwarded to the database server of target \"" + route->target + "\"");
  } else {
    spdlog::warn("cancel for target \"{}\" failed: {}", route->target, failed);
    record("error", "not delivered to the database server of target \"" + route->target + "\": " + failed);
  }
}

awaitable<bool> Session::authenticate(const protocol::StartupMessage& startup) {
  const std::string* user = startup.find("user");
  if (!user || user->empty()) {
    co_await fail_client(fatal("28000", "no PostgreSQL user name specified in startup packet"), "no user");
    co_return false;
  }
  startup_user_ = *user;
  if (const auto* app = startup.find("application_name")) application_name_ = *app;
  const std::string* db = startup.find("database");
  database_ = (db && !db->empty()) ? *db : *user;

  if (const auto* repl = startup.find("replication"); repl && truthy_replication(*repl)) {
    co_await fail_client(fatal("0A000", "replication connections are not supported through Gatehouse",
                               "connect to the database server directly for replication"),
                         "replication refused");
    co_return false;
  }
  // gatehouse.* reach the backend from the proxy only, and the role is the target login's: a
  // client may not set them, under any spelling (startup_settings.h).
  {
    std::string refused;
    for (const auto& [k, v] : startup.parameters) {
      if (k == "user" || k == "database" || k == "replication" || k.rfind("_pq_.", 0) == 0) continue;
      if (k == "options") {
        auto opts = protocol::startup_option_settings(v);
        if (!opts.error.empty()) {
          refused = std::move(opts.error);
          break;
        }
        for (const auto& name : opts.names) {
          if (auto why = protocol::forbidden_startup_setting(name)) {
            refused = "options: " + *why;
            break;
          }
          if (protocol::startup_setting_name(name) == "search_path") search_path_changed_ = true;
        }
      } else if (auto why = protocol::forbidden_startup_setting(k)) {
        refused = std::move(*why);
      } else if (protocol::startup_setting_name(k) == "search_path") {
        search_path_changed_ = true;
      }
      if (!refused.empty()) break;
    }
    if (!refused.empty()) {
      co_await fail_client(fatal("42501", refused, "gatehouse.identity is set by the proxy from your verified identity; "
                                                   "other settings can be passed as -c name=value"),
                           "refused startup setting: " + refused);
      co_return false;
    }
  }
  // Newer protocol minor versions and _pq_ options are negotiated down, as PostgreSQL does.
  std::vector<std::string> unrecognized;
  for (const auto& [k, v] : startup.parameters)
    if (k.rfind("_pq_.", 0) == 0) unrecognized.push_back(k);
  if (startup.minor > 0 || !unrecognized.empty()) {
    std::string out;
    // The newest version as a whole number (3.0 = 0x00030000), as PostgreSQL sends it: libpq
    // compares it with the lowest version it accepts (found by adversarial testing: 0 was sent).
    protocol::write_negotiate_protocol_version(out, 0x00030000, unrecognized);
    co_await send_to_client(std::move(out));
  }

  // Guessing is slowed per user and address: after a few failures each attempt waits for its turn
  // first (login_throttle.h), within half the handshake timeout; beyond that it is refused unchecked.
  {
    const auto& limits = rt_->config->limits;
    const auto max_wait = std::chrono::duration_cast<std::chrono::milliseconds>(limits.handshake_timeout) / 2;
    const auto wait = server_.impl_->login_throttle.admit(
        client_address_, *user, Clock::now(), std::chrono::duration_cast<std::chrono::milliseconds>(limits.failed_login_max_delay),
        max_wait);
    if (!wait) {
      metrics_.auth_failures.fetch_add(1, std::memory_order_relaxed);
      co_await fail_client(fatal("28000", "too many failed logins for user \"" + *user +
                                              "\" (or for many users) from your address; try again in a minute",
                                 "logins after repeated failures are taken one at a time"),
                           "too many failed logins for this user, or for many users, from this address (not checked)");
      co_return false;
    }
    if (wait->count() > 0) co_await sleep_for(*wait);
    if (ending_) co_return false;
  }
  identity::AuthContext ctx{*user, database_, client_->tls(), client_loopback_};
  auto exchange = rt_->authenticator->begin(ctx);
  auto step = exchange->start();
  for (;;) {
    if (!step.to_client.empty()) co_await send_to_client(std::move(step.to_client));
    if (step.state == identity::AuthStep::State::Done) break;
    if (step.state == identity::AuthStep::State::Failed) {
      metrics_.auth_failures.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("session {} from {}: authentication failed for user \"{}\": {}", id_, peer_, *user,
                   step.log_reason.empty() ? step.error : step.log_reason);
      server_.impl_->login_throttle.on_failure(client_address_, *user, Clock::now());  // later attempts wait
      co_await fail_client(fatal(step.sqlstate, step.error, step.hint), "");
      co_return false;
    }
    if (step.state == identity::AuthStep::State::Wait) {
      // The exchange waits for an issuer's keys, fetched on another thread; the callback wakes
      // this coroutine by cancelling its timer. The handshake timeout still bounds the wait.
      auto ex = co_await asio::this_coro::executor;
      auto timer = std::make_shared<asio::steady_timer>(ex, std::chrono::minutes(5));
      step.wait([timer, ex] { asio::post(ex, [timer] { timer->cancel(); }); });
      co_await timer->async_wait(tuple_awaitable);
      step = exchange->resume();
      continue;
    }
    std::string bad;
    auto msg = co_await read_message(*client_, startup_buf_, true, kMaxAuthMessage, bad);
    if (!msg) {
      if (!bad.empty()) {
        metrics_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
        co_await fail_client(fatal("08P01", bad), "malformed message during authentication");
      }
      co_return false;
    }
    if (msg->type != 'p') {
      metrics_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
      co_await fail_client(
          fatal("08P01", std::string("expected a password response during authentication, got message type '") +
                             msg->type + "'"),
          "out-of-phase message");
      co_return false;
    }
    step = exchange->step(msg->body);
  }
  identity_ = std::move(step.identity);
  server_.impl_->login_throttle.on_success(client_address_, *user);

  target_ = rt_->config->find_target(database_);
  if (!target_) {
    co_await fail_client(fatal("3D000", "database \"" + database_ + "\" does not exist",
                               "the database name selects a Gatehouse target; ask your administrator which "
                               "targets you can use"),
                         "unknown target");
    co_return false;
  }
  std::vector<std::string> grants;
  if (target_->logins_use_grants() && server_.approvals()) grants = active_grants(std::chrono::system_clock::now());
  login_ = target_->login_for(identity_, grants);
  if (login_ && !login_->grants.empty() &&
      rt_->config->approvals.on_grant_end == config::Approvals::OnGrantEnd::EndSession) {
    for (const auto& g : login_->grants)
      if (std::find(grants.begin(), grants.end(), g) != grants.end()) login_grant_ = g;
  }
  if (!login_) {
    // The message is built before co_await: g++ 12 mishandles conditional-operator temporaries
    // inside a co_await full-expression (a double free, found by ASan).
    std::string groups;
    for (const auto& g : identity_.groups) groups += (groups.empty() ? "" : ", ") + g;
    if (groups.empty()) groups = "none";
    const std::string& who = identity_.email.empty() ? identity_.subject : identity_.email;
    std::string msg = "no database login on target \"" + target_->name + "\" for " + who + " (groups: " + groups + ")";
    co_await fail_client(
        fatal("28000", std::move(msg),
              "ask your administrator to map one of your groups to a login of this target (targets[].logins)"),
        "no login mapping");
    co_return false;
  }
  // A session ends when its token does, unless the configuration keeps it.
  if (identity_.expires_at.time_since_epoch().count() != 0 &&
      rt_->config->oidc.on_expiry == config::Oidc::OnExpiry::End) {
    const auto left = identity_.expires_at + rt_->config->oidc.expiry_grace - std::chrono::system_clock::now();
    // A token accepted within the issuer's clock leeway still gets a moment before it is cut.
    token_deadline_ = Clock::now() + std::max<Clock::duration>(std::chrono::duration_cast<Clock::duration>(left),
                                                                std::chrono::seconds(1));
  }
  co_return true;
}

awaitable<bool> Session::connect_backend(const protocol::StartupMessage& startup) {
  const auto& t = *target_;
  const auto& limits = rt_->config->limits;
  auto ex = co_await asio::this_coro::executor;
  const std::string where = "target \"" + t.name + "\"";
  auto backend_fail = [&](std::string sqlstate, std::string msg, std::string log) -> awaitable<bool> {
    metrics_.backend_failures.fetch_add(1, std::memory_order_relaxed);
    spdlog::error("session {}: {} ({}:{}): {}", id_, where, t.backend.host, t.backend.port, log);
    co_await fail_client(fatal(std::move(sqlstate), std::move(msg)), "");
    co_return false;
  };

  // TCP connect with a deadline.
  asio::ip::tcp::socket sock(ex);
  {
    asio::ip::tcp::resolver resolver(ex);
    std::error_code err;
    auto connect = [&]() -> awaitable<void> {
      auto [rec, endpoints] = co_await resolver.async_resolve(t.backend.host, std::to_string(t.backend.port),
                                                              tuple_awaitable);
      if (rec) {
        err = rec;
        co_return;
      }
      auto [cec, ep] = co_await asio::async_connect(sock, endpoints, tuple_awaitable);
      err = cec;
    };
    auto r = co_await (connect() || sleep_for(limits.backend_connect_timeout));
    if (r.index() == 1)
      co_return co_await backend_fail("08006", "could not connect to the database server of " + where + ": timed out",
                                      "connect timed out");
    if (err)
      co_return co_await backend_fail("08006",
                                      "could not connect to the database server of " + where + ": " + err.message(),
                                      "connect failed: " + err.message());
  }
  std::error_code ec;
  sock.set_option(asio::ip::tcp::no_delay(true), ec);
  backend_ = std::make_unique<net::Stream>(std::move(sock));
  spdlog::debug("session {}: connected to the database server of {} (backend TLS {}, login user \"{}\")", id_, where,
                t.backend.tls == config::BackendTlsMode::Disable ? "off" : "on", login_->user);

  if (t.backend.tls != config::BackendTlsMode::Disable) {
    std::string req;
    protocol::write_ssl_request(req);
    char answer = 0;
    if (co_await backend_->write_all(req.data(), req.size()) || co_await backend_->read_exact(&answer, 1))
      co_return co_await backend_fail("08006", "lost the connection to the database server of " + where,
                                      "TLS negotiation failed");
    if (answer != 'S')
      co_return co_await backend_fail("08006", "the database server of " + where + " does not accept TLS",
                                      "backend answered SSLRequest with '" + std::string(1, answer) + "'");
    const bool verify = t.backend.tls == config::BackendTlsMode::VerifyFull;
    if (auto tec = co_await backend_->tls_connect(*rt_->backend_tls.at(t.name), t.backend.host, verify)) {
      std::string why = net::describe(tec);
      if (const auto cert = backend_->tls_verify_error(); !cert.empty()) {
        why += " (" + cert;
        if (cert.find("mismatch") != std::string::npos)
          why += "; backend.host \"" + t.backend.host + "\" is not a name in the server's certificate";
        else if (cert.find("issuer") != std::string::npos || cert.find("self-signed") != std::string::npos ||
                 cert.find("unable to verify") != std::string::npos)
          why += "; backend.ca_file does not hold the CA that signed the server's certificate";
        why += ")";
      }
      co_return co_await backend_fail("08006", "TLS with the database server of " + where + " failed: " + why,
                                      "TLS handshake: " + why);
    }
  }

  // StartupMessage: the proxy's own login; the client's parameters pass through.
  std::vector<std::pair<std::string, std::string>> params;
  const config::Login& login = *login_;
  params.emplace_back("user", login.user);
  params.emplace_back("database", t.backend_database(database_));
  std::string options;
  for (const auto& [k, v] : startup.parameters) {
    if (k == "user" || k == "database" || k == "replication" || k.rfind("_pq_.", 0) == 0 ||
        k.rfind("gatehouse.", 0) == 0)
      continue;
    if (k == "options") {
      options = v;
      continue;
    }
    params.emplace_back(k, v);
  }
  const std::string groups = joined_groups(identity_.groups);
  // A trailing backslash escapes nothing for PostgreSQL; before the proxy's settings it would
  // escape the space after it (found by adversarial testing: the login failed with the proxy's
  // own setting in the message). Dropped, so the client's last value reads as PostgreSQL reads it.
  std::size_t slashes = 0;
  while (slashes < options.size() && options[options.size() - 1 - slashes] == '\\') ++slashes;
  if (slashes % 2 == 1) options.pop_back();
  if (!options.empty()) options += ' ';
  options += "-c gatehouse.identity=" + escape_option_value(identity_.subject);
  options += " -c gatehouse.identity_groups=" + escape_option_value(groups);
  options += " -c gatehouse.identity_method=" + escape_option_value(identity_.method);
  options += " -c gatehouse.identity_email=" + escape_option_value(identity_.email);
  options += std::string(" -c gatehouse.identity_kind=") +
             (identity_.kind == identity::Kind::Agent ? "agent" : "human");
  if (!login.role.empty()) options += " -c role=" + escape_option_value(login.role);
  params.emplace_back("options", options);
  {
    std::string msg;
    protocol::write_startup_message(msg, params);
    if (co_await backend_->write_all(msg.data(), msg.size()))
      co_return co_await backend_fail("08006", "lost the connection to the database server of " + where,
                                      "write of startup packet failed");
  }

  // Backend authentication and startup, forwarding ParameterStatus and notices.
  std::string to_client;
  std::unique_ptr<identity::ScramClient> scram;
  for (;;) {
    std::string bad;
    auto m = co_await read_message(*backend_, backend_buf_, false, kMaxBackendStartupMessage, bad);
    if (!m) {
      std::string why = bad.empty() ? "backend closed during startup" : "backend sent " + bad;  // not inside co_await (g++ 12)
      co_return co_await backend_fail("08006", "lost the connection to the database server of " + where, std::move(why));
    }
    auto& [type, body] = *m;
    std::string reply;
    switch (type) {
      case 'R': {
        auto a = protocol::parse_authentication(body);
        if (!a) co_return co_await backend_fail("08P01", "invalid message from the database server of " + where, "bad R");
        switch (a->code) {
          case 0:
            break;
          case 3:
            if (!backend_->tls() && !backend_->loopback())
              co_return co_await backend_fail(  // 08006 as for every problem of the proxy's own login:
                  "08006", "the database server of " + where + " asked for a cleartext password over an unencrypted "
                  "connection; the proxy refused to send it", "cleartext password refused without TLS");
            protocol::write_password_message(reply, login.password);
            break;
          case 5:
            if (a->data.size() != 4)
              co_return co_await backend_fail("08P01", "invalid message from the database server of " + where, "md5 salt");
            protocol::write_password_message(reply,
                                             identity::md5_password_response(login.user, login.password, a->data));
            break;
          case 10: {
            bool has = false;
            for (auto mech : protocol::parse_sasl_mechanisms(a->data)) has |= mech == "SCRAM-SHA-256";
            if (!has)
              co_return co_await backend_fail("28000", "the database server of " + where +
                                                           " offers no SASL mechanism the proxy supports",
                                              "no SCRAM-SHA-256");
            scram = std::make_unique<identity::ScramClient>(login.password);
            protocol::write_sasl_initial_response(reply, "SCRAM-SHA-256", scram->client_first());
            break;
          }
          case 11: {
            if (!scram) co_return co_await backend_fail("08P01", "invalid authentication from " + where, "SASL order");
            auto r = scram->handle_server_first(a->data);
            if (!r) co_return co_await backend_fail("08P01", "SCRAM with the database server of " + where + " failed",
                                                    r.error().message);
            protocol::write_sasl_response(reply, *r);
            break;
          }
          case 12: {
            if (!scram) co_return co_await backend_fail("08P01", "invalid authentication from " + where, "SASL order");
            auto r = scram->handle_server_final(a->data);
            if (!r)
              co_return co_await backend_fail("08P01", "the database server of " + where + " failed SCRAM verification",
                                              r.error().message);
            break;
          }
          default:
            co_return co_await backend_fail("28000", "the database server of " + where +
                                                         " asked for an authentication method the proxy does not support",
                                            "auth code " + std::to_string(a->code));
        }
        break;
      }
      case 'E': {
        auto e = protocol::parse_error_fields(body).value_or(ErrorFields{});
        if (e.sqlstate == "3D000" || e.sqlstate == "55000") {
          // The database the client named (through a pass-through target) does not exist or takes
          // no connections (template0): the client's mistake, passed on as PostgreSQL words it, not
          // a failure of the proxy's login.
          spdlog::warn("session {}: {}: {} ({})", id_, where, e.message, e.sqlstate);
        } else {
          metrics_.backend_failures.fetch_add(1, std::memory_order_relaxed);
          spdlog::error("session {}: {} refused the proxy's login as \"{}\": {} {}", id_, where, login.user,
                        e.sqlstate, e.message);
        }
        ErrorFields out = e;
        out.severity = "FATAL";
        // Backend credential problems are the operator's to fix, not the client's.
        if (e.sqlstate == "28P01" || e.sqlstate == "28000") {
          out.sqlstate = "08006";
          out.message = "the proxy could not log in to the database server of " + where;
          out.hint = "the target's login is misconfigured; the proxy's log has the details";
          out.detail.clear();
        }
        co_await fail_client(std::move(out), "");
        co_return false;
      }
      case 'S':
        if (auto ps = protocol::parse_parameter_status(body)) {
          note_client_encoding(ps->name, ps->value);
          if (auto why = unsafe_for_analysis(ps->name, ps->value)) {
            spdlog::warn("session {}: refused: {}", id_, *why);
            co_await fail_client(fatal("0A000", *why, kUnsafeSettingHint), "");
            co_return false;
          }
        }
        protocol::write_message(to_client, type, body);
        break;
      case 'N':
        protocol::write_message(to_client, type, body);
        break;
      case 'K': {
        auto k = protocol::parse_backend_key_data(body);
        if (!k) co_return co_await backend_fail("08P01", "invalid message from the database server of " + where, "bad K");
        backend_key_ = *k;
        break;
      }
      case 'v':
        break;  // the backend negotiated down a version we never asked for; harmless
      case 'Z': {
        if (body.size() != 1) co_return co_await backend_fail("08P01", "invalid message from " + where, "bad Z");
        CancelRoute route{backend_key_, t.name, t.backend.host, t.backend.port,
                          t.backend.tls != config::BackendTlsMode::Disable, {}};
        route.on_cancel = [weak = weak_from_this(), ex] {
          auto self = weak.lock();
          if (!self || !self->held_now_.load(std::memory_order_acquire)) return false;
          asio::post(ex, [weak] {
            if (auto self = weak.lock()) self->on_client_cancel();
          });
          return true;
        };
        audit_begin();
        if (auditing()) {
          auto connected = audit_event(audit::EventType::Connect);
          if (audit_required_) {
            // Refused before the Connect record is written when the trail already fails: a record
            // kept for a failing sink and then a connect_failed for the same login said both
            // (found by adversarial testing).
            std::optional<Error> err = server_.audit()->failing();
            if (!err) {
              std::vector<audit::Event> one;
              one.push_back(std::move(connected));
              err = co_await audit_durable(std::move(one));
            }
            if (err) {
              audit_ctx_.reset();  // the refusal is recorded as a failed connection attempt
              std::string code = audit_refusal_sqlstate(*err);  // not inside co_await (g++ 12)
              co_return co_await backend_fail(std::move(code),
                                              "login refused: the audit trail cannot record it (" + err->message +
                                                  "); target \"" + t.name + "\" requires every session to be audited",
                                              "audit store unavailable");
            }
          } else {
            server_.audit()->submit(std::move(connected));
          }
        }
        route.audit = audit_ctx_;
        client_key_ = server_.impl_->cancels.add(std::move(route));
        registered_cancel_ = true;
        protocol::write_backend_key_data(to_client, client_key_);
        protocol::write_ready_for_query(to_client, body[0]);
        tx_status_ = body[0];
        if (!backend_buf_.empty())
          co_return co_await backend_fail("08P01", "unexpected data from the database server of " + where,
                                          "data after ReadyForQuery during startup");
        if (auto wec = co_await client_->write_all(to_client.data(), to_client.size())) co_return false;
        if (!startup_buf_.empty()) {  // the client pipelined its first messages: the relay takes them
          cin_.ensure_contiguous(startup_buf_.size());
          std::memcpy(cin_.write_ptr(), startup_buf_.data(), startup_buf_.size());
          cin_.commit(startup_buf_.size());
        }
        std::string().swap(startup_buf_);
        std::string().swap(backend_buf_);
        co_return true;
      }
      default:
        co_return co_await backend_fail("08P01", "unexpected message from the database server of " + where,
                                        std::string("message type '") + type + "' during startup");
    }
    if (!reply.empty() && co_await backend_->write_all(reply.data(), reply.size()))
      co_return co_await backend_fail("08006", "lost the connection to the database server of " + where,
                                      "write failed during authentication");
  }
}

// ---- relay ----------------------------------------------------------------------------------

void Session::copy_in_started() {
  // A COPY started by an Execute: the Syncs the client sent after it arrive while the backend
  // reads COPY data, and are ignored (libpq sends one with the Execute and one after CopyDone).
  // When the client's CopyDone (or CopyFail) went out before this CopyInResponse came, the COPY
  // has all its data and is over for the client: only the Syncs sent before that CopyDone were
  // read by it, and what follows is not COPY data (found by adversarial testing: copy_in_ stayed
  // set, the next Sync was not counted, and the proxy's batch count fell out of step).
  std::uint32_t ignored = syncs_after_execute_;
  std::optional<std::uint32_t> ahead;
  if (!copy_candidates_.empty()) {  // the oldest waiting is the one starting (earlier ones were answered)
    ahead = copy_candidates_.front().end_syncs;
    copy_candidates_.pop_front();
  }
  if (ahead)
    ignored = *ahead;  // syncs_after_execute_ may count Syncs after a later Execute by now
  else
    copy_in_ = true;
  responses_.syncs_ignored(ignored);
  if (masker_) masker_->syncs_ignored(ignored);
  for (; ignored > 0; --ignored) {
    if (!ahead && syncs_after_execute_ > 0) --syncs_after_execute_;
    if (inflight_ > 0) --inflight_;
    if (started_head_ < started_.size()) started_.pop_back();
    if (auditing()) audit_sync_ignored();
    // Counted in syncs_sent_ when forwarded, and no ReadyForQuery will answer it: as if one had
    // (as units_skipped does), so batch groups keep matching ReadyForQuery messages (found by
    // adversarial testing: libpq's PQexecParams of a COPY FROM STDIN left every later batch one
    // behind, a Parse the server refused was taken for a statement's new text, and a statement
    // that needed review ran without one).
    ++ready_seen_;
  }
  relay_signal_.cancel();  // a barrier waiting for this statement lets the COPY data through
}

bool Session::may_copy_in(std::string_view text) {
  // Only a COPY statement starts COPY FROM STDIN, and its keyword cannot be split (a comment
  // separates tokens): a text without "copy" in any case cannot.
  for (std::size_t i = 0; i + 4 <= text.size(); ++i)
    if ((text[i] | 0x20) == 'c' && (text[i + 1] | 0x20) == 'o' && (text[i + 2] | 0x20) == 'p' &&
        (text[i + 3] | 0x20) == 'y')
      return true;
  return false;
}

bool Session::execute_may_copy_in(std::string_view body) const {
  std::size_t pos = 0;
  bool ok = true;
  const auto name = server_name(protocol::c_string_at(body, pos, ok));
  const auto* versions = name.empty() ? &unnamed_portal_.versions : portal_versions(name);
  if (!ok || !versions || versions->empty()) return true;  // not known: it may
  for (const auto& a : *versions) {
    if (!a) return true;
    for (const auto& st : a->statements)
      if (std::find(st.kinds.begin(), st.kinds.end(), sql::StatementKind::CopyFrom) != st.kinds.end()) return true;
  }
  return false;
}

void Session::statement_started(Clock::time_point at) {
  ++inflight_;
  started_.push_back(at);
}

void Session::forwarded(char type) {
  if (!responses_.client(type)) units_skipped(1, true);
  if (type == 'S')
    batch_open_ = false;
  else if (type == 'P' || type == 'B' || type == 'D' || type == 'E' || type == 'C')
    batch_open_ = true;
}

void Session::units_skipped(std::uint32_t n, bool just_forwarded) {
  // They were counted when forwarded; no ReadyForQuery will end them.
  for (std::uint32_t i = 0; i < n; ++i) {
    if (inflight_ > 0) --inflight_;
    if (started_head_ < started_.size()) ++started_head_;
    ++ready_seen_;
  }
  if (started_head_ == started_.size()) {
    started_.clear();
    started_head_ = 0;
  }
  if (auditing()) audit_skipped(n, just_forwarded);
  relay_signal_.cancel();  // a client side waiting for the backend to be idle
}

void Session::statement_finished(char status, Clock::time_point now) {
  if (masker_ && search_path_changed_ && status == 'I' && tx_status_ != 'I') {
    // SET LOCAL search_path (or set_config(..., true)) ends with its transaction: the path the
    // catalog was read with may not be the session's any more (found by an attack round).
    catalog_stale_ = true;
    masker_->set_path_uncertain(true);
  }
  tx_status_ = status;
  if ((status == 'I' && transient_cursors_) || !cursor_closes_.empty() || !deallocs_.empty() || cursor_batch_error_)
      [[unlikely]]
    cursors_at_ready(status);
  if (status == 'I' &&
      (!unnamed_portal_.versions.empty() || !bound_portals_.empty() || portals_overflow_ || !held_portals_.empty()))
    portals_at_ready();
  if (status == 'I' && !portals_.empty()) audit_portals_at_ready();  // the named ones (the unnamed stays)
  if (inflight_ > 0) --inflight_;
  if (started_head_ < started_.size()) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now - started_[started_head_++]);
    metrics_.observe_latency_us(std::uint64_t(us.count()));
    if (started_head_ == started_.size()) {
      started_.clear();
      started_head_ = 0;
    }
  }
}

End Session::client_io_end(const std::error_code& ec) {
  return End{End::Kind::ClientClosed, std::nullopt,
             ec == asio::error::eof ? "client closed the connection" : "client connection: " + net::describe(ec)};
}

End Session::backend_io_end(const std::error_code& ec) {
  if (terminate_forwarded_ && inflight_ == 0) return End{End::Kind::ClientTerminate, std::nullopt, "client sent Terminate"};
  metrics_.backend_failures.fetch_add(1, std::memory_order_relaxed);
  End e{End::Kind::BackendClosed, std::nullopt,
        "lost the backend connection: " + (ec == asio::error::eof ? std::string("closed by the server") : net::describe(ec))};
  // A backend that ends a session says why in a FATAL ErrorResponse (57P01 on shutdown); the
  // client has it already. Otherwise say it ourselves, unless the stream broke off inside a
  // message the client has the start of: an ErrorResponse there would be read as the rest of it
  // (found by adversarial testing: a FATAL inside a cut DataRow). Then the client sees the end of
  // the stream, as it would from the server.
  if (last_backend_type_ != 'E' && scanner_.at_boundary())
    e.to_client = fatal("08006", "lost the connection to the database server of target \"" + target_->name + "\"",
                        "the database server closed the connection or is restarting; reconnect");
  return e;
}

void Session::start_relay() {
  auto ex = worker_.io.get_executor();
  if (!client_->tls()) client_->set_nonblocking();
  if (!backend_->tls()) backend_->set_nonblocking();
  auto self = shared_from_this();
  asio::co_spawn(ex, client_to_backend(), [self](std::exception_ptr e, End end) {
    if (e) end = End{End::Kind::ClientClosed, fatal("XX000", "internal proxy error"), "client relay failed"};
    self->on_loop_done(std::move(end));
  });
  asio::co_spawn(ex, backend_to_client(), [self](std::exception_ptr e, End end) {
    if (e) end = End{End::Kind::BackendClosed, fatal("XX000", "internal proxy error"), "backend relay failed"};
    self->on_loop_done(std::move(end));
  });
  relay_started_ = true;
  on_watchdog();  // a shutdown that arrived during the handshake applies now
}

void Session::end_session(End end) {
  if (ending_) return;
  ending_ = true;
  end_ = std::move(end);
  // Wake whichever loop is waiting; each sees ending_ and stops.
  std::error_code ec;
  client_->socket().cancel(ec);
  if (backend_) backend_->socket().cancel(ec);
  watchdog_timer_.cancel();
  relay_signal_.cancel();
}

void Session::on_loop_done(End end) {
  end_session(std::move(end));
  if (++loops_done_ < 2) return;
  auto self = shared_from_this();
  asio::co_spawn(worker_.io, teardown(), [self](std::exception_ptr) { self->finish(); });
}

void Session::arm_watchdog() {
  if (ending_) return;
  const auto idle = rt_->config->limits.idle_timeout;
  Clock::time_point when;
  if (server_.draining())
    when = Clock::time_point(Clock::duration(server_.impl_->drain_deadline_ns.load()));
  else if (idle.count() > 0)
    when = std::max(last_activity_ + idle, Clock::now() + std::chrono::milliseconds(50));
  else if (!token_deadline_ && login_grant_.empty())
    return;  // nothing to wait for: no pending timer at all
  if (token_deadline_ && (when == Clock::time_point{} || *token_deadline_ < when)) when = *token_deadline_;
  if (!login_grant_.empty()) {  // the grant behind the login is checked every 2 s
    const auto check = Clock::now() + std::chrono::seconds(2);
    if (when == Clock::time_point{} || check < when) when = check;
  }
  const auto gen = ++watchdog_generation_;
  watchdog_timer_.expires_at(when);
  watchdog_timer_.async_wait([self = shared_from_this(), gen](const std::error_code& ec) {
    if (ec || gen != self->watchdog_generation_) return;  // re-armed or cancelled
    self->on_watchdog();
  });
}

void Session::on_watchdog() {
  // Before the relay runs there is nothing to stop; start_relay() calls this again.
  if (ending_ || !relay_started_) return;
  const auto now = Clock::now();
  if (server_.draining()) {
    const auto deadline = Clock::time_point(Clock::duration(server_.impl_->drain_deadline_ns.load()));
    if ((!running() && tx_status_ == 'I') || now >= deadline)
      return end_session(End{End::Kind::Shutdown,
                             fatal("57P01", "terminating connection because the proxy is shutting down",
                                   "reconnect; another proxy instance or the restarted one will serve you"),
                             now >= deadline ? "shutdown deadline reached" : "shutdown while idle"});
  } else if (!login_grant_.empty() && server_.approvals() &&
             [&] {
               auto roles = active_grants(std::chrono::system_clock::now());
               return std::find(roles.begin(), roles.end(), login_grant_) == roles.end();
             }()) {
    return end_session(End{End::Kind::GrantEnded,
                           fatal("57P01", "terminating connection because your access grant of role \"" + login_grant_ +
                                              "\" on target \"" + target_->name + "\" has ended",
                                 "request access again (gatehouse request-access) and reconnect"),
                           "access grant ended"});
  } else if (token_deadline_ && now >= *token_deadline_) {
    return end_session(End{End::Kind::TokenExpired,
                           fatal("57P01", "terminating connection because your login token has expired",
                                 "log in again with a fresh token (for example `gatehouse login`)"),
                           "token expired"});
  } else if (const auto idle = rt_->config->limits.idle_timeout; idle.count() > 0) {
    // Idle: nothing running or being analysed, no COPY data awaited, and quiet since the client's
    // last message or the last ReadyForQuery (found by adversarial testing: the timer ran from the
    // client's last message, during the proxy's analysis, and during an extended COPY).
    // An Execute sent without Sync (pipeline mode's Flush) may still be running: not idle (found
    // by adversarial testing: it was ended mid-run).
    if (!running() && !copy_in_ && !analysing_ && now - last_activity_ >= idle)
      return end_session(End{End::Kind::IdleTimeout, fatal("57P05", "terminating connection due to idle-session timeout"),
                             "idle timeout"});
  }
  arm_watchdog();
}

std::size_t Session::scan_client_messages(std::optional<End>& end, bool& terminate, bool& rewritten) {
  const std::size_t max = rt_->config->limits.max_message_size;
  auto& m = metrics_;
  const std::string_view view(cin_.data(), cin_.size());
  std::size_t pos = 0;
  std::size_t copied = 0;  // with rewritten: bytes of view already in rewrite_
  std::string substitute;
  // The message at [at, at + size) is replaced by `substitute` in what goes to the backend.
  auto splice = [&](std::size_t at, std::size_t size) {
    if (!rewritten) {
      rewrite_.clear();
      rewritten = true;
    }
    rewrite_.append(view.data() + copied, at - copied);
    rewrite_ += substitute;
    copied = at + size;
  };
  // Scanning stops at `at`: the bytes before it are what goes to the backend now.
  auto stop_at = [&](std::size_t at) {
    if (rewritten) rewrite_.append(view.data() + copied, at - copied);
    return at;
  };
  for (;;) {
    auto r = protocol::decode_frontend(view.substr(pos), max);
    if (r.status == protocol::Decode::NeedMore) break;
    if (r.status == protocol::Decode::Error) {
      m.protocol_errors.fetch_add(1, std::memory_order_relaxed);
      end = End{End::Kind::ClientProtocolError, fatal("08P01", r.error), "client protocol error: " + r.error};
      return 0;
    }
    const char type = r.frame.type;
    if (settings_barrier_ == Barrier::CopyIn) {
      // Only COPY data while the statement behind the barrier reads it; then wait again.
      if (type == 'c' || type == 'f') {
        copy_in_ = false;
        settings_barrier_ = Barrier::Wait;
        return stop_at(pos + r.frame.wire_size);
      }
      if (type != 'd' && type != 'H' && type != 'S') {
        m.protocol_errors.fetch_add(1, std::memory_order_relaxed);
        const std::string why = fmt::format("unexpected message type 0x{:02X} during COPY from stdin", int(type));
        end = End{End::Kind::ClientProtocolError, fatal("08P01", why), "client protocol error: " + why};
        return 0;
      }
      pos += r.frame.wire_size;
      continue;
    }
    if (type == 'Q' || type == 'F' || type == 'P' || ((type == 'H' || type == 'S') && !r.frame.body.empty())) {
      if (auto bad_format = protocol::malformed_statement_message(type, r.frame.body); !bad_format.empty()) {
        m.protocol_errors.fetch_add(1, std::memory_order_relaxed);
        end = End{End::Kind::ClientProtocolError, fatal("08P01", bad_format), "client protocol error: " + bad_format};
        return 0;
      }
    }
    if (!client_utf8_ && (type == 'P' || type == 'B' || type == 'E' || type == 'C' || type == 'D') &&
        converted_name_may_differ(type, r.frame.body)) [[unlikely]] {
      // The server converts names to UTF-8 before it cuts them at 63 bytes; the proxy cuts the
      // bytes it sees: two names one to the server, two to the proxy (found by adversarial testing).
      m.protocol_errors.fetch_add(1, std::memory_order_relaxed);
      const std::string why =
          "a statement or portal name with non-ASCII characters longer than 21 bytes is not supported through "
          "Gatehouse with a client_encoding other than UTF8";
      end = End{End::Kind::ClientProtocolError, fatal("0A000", why, "use ASCII names, or client_encoding UTF8"),
                "client protocol error: " + why};
      return 0;
    }
    switch (type) {
      case 'Q':
      case 'F':
      case 'P': {
        if (type != 'F' && r.frame.body.size() > kOffloadAnalysis && !(pos == 0 && front_analysis_)) {
          // Analysed off this thread first; then this message is scanned again.
          if (pos == 0)
            offload_request_ = true;
          else
            rescan_ = true;
          return stop_at(pos);
        }
        if (type == 'Q' && !(pos == 0 && release_front_) && wants_hold(r.frame.body)) {
          // Held for approval: what is before it goes first, then the hold (session_hold.cpp).
          if (pos == 0)
            hold_request_ = true;
          else
            rescan_ = true;
          return stop_at(pos);
        }
        if (masker_ && type != 'F') {
          // A relation the masker's catalog does not know (made since it was read, elsewhere): the
          // catalog is read again first, the backend idle, so the statement is traced, not refused.
          const bool checked = pos == 0 && catalog_front_checked_;
          if (pos == 0) catalog_front_checked_ = false;
          if (!checked && !batch_open_ && mask_unknown_relations(type, r.frame.body)) {
            if (pos == 0)
              catalog_request_ = true;
            else
              rescan_ = true;
            return stop_at(pos);
          }
        }
        if (type == 'Q') {
          const bool estimated = pos == 0 && front_estimated_;
          if (pos == 0) front_estimated_ = false;
          if (!estimated && needs_row_estimate(r.frame.body)) {
            // Stop here: what is before it goes first, then the estimate, then this Query.
            if (pos == 0)
              estimate_request_ = true;
            else
              rescan_ = true;
            return stop_at(pos);
          }
        }
        if (type != 'P') {
          m.statements.fetch_add(1, std::memory_order_relaxed);
          statement_started(last_activity_);  // set at the read it came in
        }
        if (type == 'Q' && may_copy_in(query_text_of(type, r.frame.body)))
          copy_candidates_.push_back(CopyCandidate{syncs_sent_, std::nullopt});
        const bool kept = judge_client_message(type, r.frame.body, substitute);
        if (!kept) splice(pos, r.frame.wire_size);
        if (type != 'P') ++syncs_sent_;
        forwarded(type);
        if (masker_) mask_forwarded(type, r.frame.body, !kept);
        if (type == 'Q') {
          syncs_after_execute_ = 0;
          execute_unsynced_ = false;
        }
        if (settings_barrier_ == Barrier::AfterThis) {
          settings_barrier_ = Barrier::Wait;
          return stop_at(pos + r.frame.wire_size);
        }
        break;
      }
      case 'B': {
        const bool kept = rejudge_bind(r.frame.body, substitute);
        if (!kept)
          splice(pos, r.frame.wire_size);
        else if (auditing())
          audit_bind(r.frame.body);
        forwarded(type);
        if (masker_) mask_forwarded(type, r.frame.body, !kept);
        break;
      }
      case 'D':
        forwarded(type);
        if (masker_) mask_forwarded(type, r.frame.body, false);
        break;
      case 'C':
        forwarded(type);
        if (masker_) mask_forwarded(type, r.frame.body, false);
        if (!r.frame.body.empty() && r.frame.body[0] == 'S') {  // Close statement
          const auto name = server_name(r.frame.body.substr(1, r.frame.body.find('\0', 1) - 1));
          note_close('S', name);
        } else if (!r.frame.body.empty() && r.frame.body[0] == 'P') {
          const auto name = server_name(r.frame.body.substr(1, r.frame.body.find('\0', 1) - 1));
          note_close('C', name);
          // The portal (or the SQL cursor of that name: they share one namespace) is forgotten
          // once the batch's ReadyForQuery comes without an error (cursors_at_ready).
          if (!name.empty())
            cursor_closes_.push_back(CursorClose{syncs_sent_, std::string(name), false, ++portal_ops_});
          if (auditing()) audit_close_portal(name);
        }
        break;
      case 'E':
        // After a refusal in this batch the server skips this Execute: it is not held either (found
        // by adversarial testing: a Bind/Execute after a refused Parse was taken for one of the
        // previous statement, held again, and a phantom approval request recorded).
        if (!held_portals_.empty() && !refused_in_batch_ && wants_hold_execute(r.frame.body)) {
          // The portal's statement needs review: what is before it goes first, then the hold.
          if (pos == 0)
            hold_request_ = true;
          else
            rescan_ = true;
          return stop_at(pos);
        }
        m.statements.fetch_add(1, std::memory_order_relaxed);
        if (execute_may_copy_in(r.frame.body)) copy_candidates_.push_back(CopyCandidate{syncs_sent_, std::nullopt});
        {
        const bool kept = rejudge_execute(r.frame.body, substitute);
        if (!kept)
          splice(pos, r.frame.wire_size);
        else if (auditing())
          audit_execute(r.frame.body);
        syncs_after_execute_ = 0;
        execute_unsynced_ = true;
        forwarded(type);
        if (masker_) mask_forwarded(type, r.frame.body, !kept);
        }
        break;
      case 'c':
      case 'f':
        if (!copy_in_) {
          // Sent before the backend's CopyInResponse came (data pipelined behind the COPY): it
          // ends the oldest COPY sent whose end has not been sent yet (copy_in_started); with
          // none, it is a stray one the server ignores (see copy_candidates_).
          for (auto& cand : copy_candidates_)
            if (!cand.end_syncs) {
              cand.end_syncs = syncs_after_execute_;
              break;
            }
        }
        copy_in_ = false;
        break;
      case 'S':
        if (copy_in_) break;  // ignored by the backend while it reads COPY data
        statement_started(last_activity_);  // set at the read it came in
        if (auditing()) audit_sync();
        forwarded(type);
        if (masker_) mask_forwarded(type, r.frame.body, false);
        execute_unsynced_ = false;  // its ReadyForQuery (inflight_) covers the batch's Executes
        refused_in_batch_ = false;
        ++syncs_after_execute_;
        ++syncs_sent_;
        if (settings_barrier_ == Barrier::AtSync) {
          settings_barrier_ = Barrier::Wait;
          return stop_at(pos + r.frame.wire_size);
        }
        break;
      case 'p':
        m.protocol_errors.fetch_add(1, std::memory_order_relaxed);
        end = End{End::Kind::ClientProtocolError, fatal("08P01", "unexpected password message after authentication"),
                  "client protocol error: out-of-phase password message"};
        return 0;
      case 'X':
        terminate = true;
        return stop_at(pos + r.frame.wire_size);
      default:
        break;
    }
    pos += r.frame.wire_size;
  }
  return stop_at(pos);
}

awaitable<End> Session::client_to_backend() {
  auto& m = metrics_;
  bool pending = !cin_.empty();  // bytes the client pipelined behind its authentication
  for (;;) {
    if (!pending && audit_pending_.size() >= kMaxAuditInflight) {
      // Backpressure: each statement in flight holds its audit record here (1-2.5 KB), while
      // PostgreSQL holds only the bytes of its unread messages (found by adversarial testing: one
      // session without Sync took the proxy to 3.4 GB). Read no more from the client until the
      // server has answered half of them; a Flush makes it send the answers it holds back for a
      // Sync (it has no answer of its own, and is ignored during COPY).
      static constexpr char kFlush[] = {'H', 0, 0, 0, 4};
      if (auto wec = co_await backend_->write_all(kFlush, sizeof kFlush)) co_return backend_io_end(wec);
      audit_backpressure_ = true;
      while (audit_pending_.size() >= kMaxAuditInflight / 2 && !ending_) co_await wait_relay_signal();
      audit_backpressure_ = false;
      if (ending_) co_return End{};
    }
    if (!pending) {
      if (cin_.empty()) cin_.release_if_empty();
      if (cin_.write_room() == 0) cin_.compact();
      char* at = cin_.write_ptr();
      const std::size_t room = cin_.write_room();
      auto [ec, n] = co_await client_->read_some(at, room);
      if (ending_) co_return End{};
      if (ec == asio::error::eof && inflight_ > 0 && !copy_in_) {
        // The client closed its sending side after its last statements (a half-close, as
        // `psql < file | ...` tools and scripts over nc do): their results still go to it, as
        // PostgreSQL sends them, before the session ends. Unless one of them waits for COPY data
        // the client can no longer send: then the session ends now, as PostgreSQL's does at an
        // unexpected EOF (found by adversarial testing: the backend stayed in COPY, holding its
        // locks, until the proxy stopped).
        while (inflight_ > 0 && !ending_ && !copy_in_) co_await wait_relay_signal();
        if (ending_) co_return End{};
      }
      if (ec) co_return client_io_end(ec);
      cin_.commit(n, room);
      last_activity_ = Clock::now();
    }
    pending = false;

    mask_rules_refresh();
    if (masker_ && mask_catalog_due() && inflight_ == 0 && !batch_open_ && !copy_in_ &&
        settings_barrier_ == Barrier::None) {
      // Read while the backend is idle, before the batch that needs it.
      if (auto stop = co_await mask_catalog_refresh()) co_return std::move(*stop);
    }
    std::optional<End> bad;
    bool terminate = false;
    bool rewritten = false;
    const std::size_t pos = scan_client_messages(bad, terminate, rewritten);
    if (bad) co_return std::move(*bad);
    if (!audit_batch_.empty()) {
      co_await audit_submit_batch(rewritten, pos);
      if (ending_) co_return End{};
    }
    if (pos > 0) {
      // A refused statement was replaced: rewrite_ holds the batch to send (rare path).
      std::error_code wec;
      if (rewritten)
        wec = co_await backend_->write_all(rewrite_.data(), rewrite_.size());
      else if (const std::size_t sent = backend_->write_now(cin_.data(), pos, wec); !wec && sent < pos)
        wec = co_await backend_->write_all(cin_.data() + sent, pos - sent);
      if (ending_) co_return End{};
      if (wec) co_return backend_io_end(wec);
      m.bytes_client_to_backend.fetch_add(pos, std::memory_order_relaxed);
      cin_.consume(pos);
    }
    if (terminate) {
      // As PostgreSQL does: what was sent before the Terminate runs to its end, and its results
      // (and audit outcomes) are relayed before the session ends (found by adversarial testing:
      // a Query and a Terminate in one packet committed, the client got nothing and the audit
      // said "unknown"). The server closes after the Terminate: an expected end of stream.
      terminate_forwarded_ = true;
      while (inflight_ > 0 && !ending_) co_await wait_relay_signal();
      co_return End{End::Kind::ClientTerminate, std::nullopt, "client sent Terminate"};
    }
    if (settings_barrier_ == Barrier::Wait) {
      // Wait for the answer (and its ParameterStatus) before judging anything sent after it.
      while (inflight_ > 0 && !ending_ && !copy_in_) co_await wait_relay_signal();
      if (ending_) co_return End{};
      if (copy_in_ && inflight_ > 0) {
        // It reads COPY data (DO ...; COPY t FROM STDIN): that, and only that, goes through.
        settings_barrier_ = Barrier::CopyIn;
        pending = !cin_.empty();
        continue;
      }
      settings_barrier_ = Barrier::None;
      pending = !cin_.empty();
      continue;
    }
    if (offload_request_) {
      offload_request_ = false;
      const std::uint32_t wire = load_be32(cin_.data() + 1) + 1;
      std::string_view body(cin_.data() + 5, wire - 5);
      if (cin_.data()[0] == 'P') body.remove_prefix(std::min(body.size(), body.find('\0') + 1));  // statement name
      std::string text(body.substr(0, body.find('\0')));
      std::shared_ptr<const sql::Analysis> analysis;
      if (const auto limit = rt_->config->limits.max_statement_size; text.size() > limit) {
        auto too_long = std::make_shared<sql::Analysis>();
        too_long->error = sql::ParseError{fmt::format("the statement text of {} bytes is longer than the proxy analyses "
                                                      "(limits.max_statement_size, {} bytes); send large data with COPY "
                                                      "or as parameters",
                                                      text.size(), limit),
                                          0, "54000"};
        analysis = std::move(too_long);
      } else {
        analysing_ = true;
        analysis = co_await analyze_off_thread(std::move(text));
        analysing_ = false;
        last_activity_ = Clock::now();
      }
      if (ending_) co_return End{};
      front_analysis_ = std::move(analysis);
      pending = true;
      continue;
    }
    if (hold_request_) {
      hold_request_ = false;
      auto stop = co_await hold_front_query();
      if (stop) co_return std::move(*stop);
      pending = !cin_.empty();  // go on with what follows (or the released Query) without reading
      continue;
    }
    if (catalog_request_) {
      catalog_request_ = false;
      while (inflight_ > 0 && !ending_) co_await wait_relay_signal();  // the backend answers in order
      if (ending_) co_return End{};
      if (auto stop = co_await mask_catalog_refresh()) co_return std::move(*stop);
      catalog_front_checked_ = true;
      pending = true;
      continue;
    }
    if (estimate_request_) {
      estimate_request_ = false;
      auto stop = co_await estimate_front_query();
      if (stop) co_return std::move(*stop);
      pending = !cin_.empty();  // go on with the held Query without reading
      continue;
    }
    if (rescan_) {  // the scan stopped before a Query that needs an estimate
      rescan_ = false;
      pending = true;
      continue;
    }
    if (!cin_.empty()) {
      if (cin_.size() >= 5)
        cin_.ensure_contiguous(std::size_t(load_be32(cin_.data() + 1)) + 1);
      else
        cin_.compact();
    }
  }
}

void Session::on_backend_event(const protocol::ScanEvent& e, bool& saw_ready) {
  last_backend_type_ = e.type;
  if (const auto skipped = responses_.server(e.type); skipped > 0) units_skipped(skipped, false);
  if (e.type == 'D' || e.type == 'd') {
    // A DataRow, or a CopyData of a COPY TO (one per row; a CSV header line is one too): rows
    // that left the database, counted for a statement that ends before its tag says how many
    // (found by an audit trial: a cancelled COPY TO was recorded with no rows).
    ++data_rows_;
    return;
  }
  if (e.type == 'Z') {
    copy_in_ = false;
    last_activity_ = Clock::now();  // an idle timeout counts from here, as PostgreSQL's does
    statement_finished(e.status, last_activity_);
    saw_ready = true;
    ++ready_seen_;
    // Statements of the batches answered now that did not start a COPY (it failed first, or was
    // no COPY after all) wait for none.
    while (!copy_candidates_.empty() && copy_candidates_.front().group < ready_seen_) copy_candidates_.pop_front();
    if (!name_ops_.empty()) name_ops_ended();
    relay_signal_.cancel();  // a client side waiting for the backend to be idle
    // Substitutes of batches that have ended were skipped by the backend after an earlier error.
    while (!refusals_.empty() && refusals_.front().group < ready_seen_) refusals_.pop_front();
  } else if (e.type == 'E') {
    metrics_.statement_errors.fetch_add(1, std::memory_order_relaxed);
    cursor_batch_error_ = true;
  } else if ((e.type == '1' || e.type == '3') && !name_ops_.empty()) {
    name_op_answered(e.type);
  } else if (e.type == 'G') {
    copy_in_started();
  }
  if (auditing() && (e.type == 'Z' || e.type == 'I' || e.type == 's')) audit_backend(e.type, {}, nullptr);
}

bool Session::converted_name_may_differ(char type, std::string_view body) {
  // Up to 21 bytes a name stays within 63 bytes in UTF-8 (3 bytes per character at most).
  auto risky = [](std::string_view name) {
    if (name.size() <= 21) return false;
    for (unsigned char c : name)
      if (c >= 0x80) return true;
    return false;
  };
  std::size_t pos = (type == 'C' || type == 'D') ? 1 : 0;
  bool ok = true;
  if (risky(protocol::c_string_at(body, pos, ok))) return true;
  return type == 'B' && ok && risky(protocol::c_string_at(body, pos, ok));
}

void Session::note_client_encoding(std::string_view name, std::string_view value) {
  // UTF8, or SQL_ASCII (no conversion): names reach the server as the proxy reads them.
  if (iequals(name, "client_encoding")) client_utf8_ = iequals(value, "UTF8") || iequals(value, "SQL_ASCII");
}

void Session::check_parameter_status(std::string_view body) {
  auto ps = protocol::parse_parameter_status(body);
  if (!ps) return;
  note_client_encoding(ps->name, ps->value);
  if (auto why = unsafe_for_analysis(ps->name, ps->value); why && !unsafe_setting_) unsafe_setting_ = std::move(why);
}

bool Session::relay_backend_slow(std::string_view chunk, std::size_t& consumed, bool& saw_ready) {
  rewrite_back_.clear();
  std::string_view piece;
  auto ev = [&](const protocol::ScanEvent& e) {
    watch_body(e, piece);
    on_backend_event(e, saw_ready);
  };
  const std::size_t n = chunk.size();
  std::size_t pos = 0;
  while (pos < n) {
    if (!scanner_.at_boundary()) {  // finish the message (or header) in progress
      const auto k = std::size_t(std::min<std::uint64_t>(scanner_.until_boundary(), n - pos));
      piece = chunk.substr(pos, k);
      if (!scanner_.scan(piece, ev)) return false;
      rewrite_back_.append(piece);
      pos += k;
      continue;
    }
    if (n - pos < 5) break;  // a partial header waits for the next read
    const char type = chunk[pos];
    const std::uint32_t len = load_be32(chunk.data() + pos + 1);
    if (len < 4 || len > 0x40000000u || !protocol::is_backend_type(type)) return false;
    if (type == 'E' && len <= (1u << 20) && !refusals_.empty()) {
      if (n - pos < std::size_t(len) + 1) break;  // the whole ErrorResponse first
      const std::string_view body = chunk.substr(pos + 5, len - 4);
      // The refusal this error answers: the one whose marker it names (older ones were skipped by
      // the backend), else a probe of this batch (Refusal::probe): a Query's only answer, or the
      // first error of a batch that a probed Parse began.
      auto hit = refusals_.end();
      for (auto it = refusals_.begin(); it != refusals_.end(); ++it)
        if (body.find(it->marker) != std::string_view::npos) hit = it;
      const bool marked = hit != refusals_.end();
      if (!marked)
        for (auto it = refusals_.begin(); it != refusals_.end(); ++it)
          if (it->probe && it->group == ready_seen_) hit = it;
      if (hit != refusals_.end()) {
        // A probe's error is the server's verdict on the client's text, passed on with the
        // position moved back; except, for a Parse, "cannot insert multiple commands into a
        // prepared statement" (42601 without a position, in whatever language the server speaks):
        // the server could parse the text, and the policy's refusal goes as for a marked error.
        std::optional<std::string> own;
        const auto two_statements = [&] {
          const auto f = protocol::parse_error_fields(body);
          return !f || (f->position == 0 && f->sqlstate == "42601");
        };
        if (!marked && !(hit->parse && two_statements())) own = protocol::shift_error_position(body, hit->probe);
        if (own) {
          protocol::write_message(rewrite_back_, 'E', *own);
          if (auditing()) audit_backend('E', *own, nullptr);
        } else {
          protocol::write_error_response(rewrite_back_, hit->error);
          if (auditing()) audit_backend('E', {}, &hit->error);
        }
        refusals_.erase(refusals_.begin(), hit + 1);
        if (masker_) {
          std::string unused;
          if (masker_->on_backend('E', body, unused) == ResultMasker::Verdict::Lost) {
            mask_lost_ = true;
            return false;
          }
        }
        on_backend_event(protocol::ScanEvent{'E', len, 0}, saw_ready);
        pos += std::size_t(len) + 1;
        continue;
      }
    }
    if (masker_) {
      const bool whole = masker_->needs_whole(type);
      if (whole && n - pos < std::size_t(len) + 1) break;  // the whole message first
      const std::string_view body = whole ? chunk.substr(pos + 5, len - 4) : std::string_view();
      switch (masker_->on_backend(type, body, mask_out_)) {
        case ResultMasker::Verdict::Lost:
          mask_lost_ = true;
          return false;
        case ResultMasker::Verdict::Rewritten:
          piece = chunk.substr(pos, std::size_t(len) + 1);
          if (!scanner_.scan(piece, ev)) return false;
          rewrite_back_.append(mask_out_);
          pos += piece.size();
          continue;
        case ResultMasker::Verdict::Pass:
          break;
      }
    }
    const std::size_t k = std::min<std::size_t>(std::size_t(len) + 1, n - pos);
    piece = chunk.substr(pos, k);
    if (!scanner_.scan(piece, ev)) return false;
    rewrite_back_.append(piece);
    pos += k;
  }
  consumed = pos;
  return true;
}

awaitable<End> Session::backend_to_client() {
  auto& m = metrics_;
  for (;;) {
    char* at = bout_.write_ptr();
    const std::size_t room = bout_.write_room();
    auto [ec, n] = co_await backend_->read_some(at, room);
    if (ending_ || ec) {
      bout_.consume(bout_.size());
      bout_.release_if_empty();
      if (ending_) co_return End{};
      co_return backend_io_end(ec);
    }
    bout_.commit(n, room);
    bool saw_ready = false;
    // Usually bout_ holds just what was read; after the slow path it may start with a partial
    // message kept back.
    const std::string_view chunk(bout_.data(), bout_.size());
    std::size_t consumed = chunk.size();
    const bool capture = explain_.active && !explain_.done;
    const bool slow = capture || !refusals_.empty() || masker_;
    if (param_need_ > 0) {  // the rest of a ParameterStatus begun in an earlier read
      const auto take = std::min<std::size_t>(param_need_, chunk.size());
      param_buf_.append(chunk.substr(0, take));
      param_need_ -= std::uint32_t(take);
      if (param_need_ == 0) on_body(param_type_, param_buf_);
    }
    const bool ok = capture ? capture_explain(chunk, consumed)
                    : slow  ? relay_backend_slow(chunk, consumed, saw_ready)
                            : scanner_.scan(chunk, [&](const protocol::ScanEvent& e) {
                                watch_body(e, chunk);
                                on_backend_event(e, saw_ready);
                              });
    if (!ok && mask_lost_) {
      bout_.consume(bout_.size());
      bout_.release_if_empty();
      spdlog::error("session {}: ended: the masking of results lost track of which statement the server answers", id_);
      co_return End{End::Kind::BackendProtocolError,
                    fatal("XX000", "the proxy ended the session: it could not tell which statement a result belongs to, "
                                   "so it could not mask it",
                          "reconnect; if this repeats, report it with the proxy's log"),
                    "masking lost track of results"};
    }
    if (!ok) {
      m.protocol_errors.fetch_add(1, std::memory_order_relaxed);
      bout_.consume(bout_.size());
      bout_.release_if_empty();
      co_return End{End::Kind::BackendProtocolError,
                    fatal("08P01", "the database server of target \"" + target_->name + "\" sent an invalid message"),
                    "backend protocol error"};
    }
    if (unsafe_setting_) {
      // What the backend reports now would make the analyzer misread the next statements.
      spdlog::warn("session {}: ended: {}", id_, *unsafe_setting_);
      bout_.consume(bout_.size());
      bout_.release_if_empty();
      co_return End{End::Kind::UnsafeSetting, fatal("0A000", *unsafe_setting_, kUnsafeSettingHint),
                    "unsafe session setting: " + *unsafe_setting_};
    }
    while (client_writer_ == ClientWriter::Hold && !ending_) co_await wait_relay_signal();  // a hold's notice
    if (ending_) co_return End{};
    std::error_code wec;
    client_writer_ = ClientWriter::Relay;
    if (slow) {
      // As the fast path: what the socket takes now without a trip through the event loop.
      if (!rewrite_back_.empty()) {
        const std::size_t sent = client_->write_now(rewrite_back_.data(), rewrite_back_.size(), wec);
        if (!wec && sent < rewrite_back_.size())
          wec = co_await client_->write_all(rewrite_back_.data() + sent, rewrite_back_.size() - sent);
      }
    } else {
      const std::size_t sent = client_->write_now(chunk.data(), consumed, wec);
      if (!wec && sent < consumed) wec = co_await client_->write_all(chunk.data() + sent, consumed - sent);
    }
    client_writer_ = ClientWriter::None;
    if (client_writer_waiter_) relay_signal_.cancel();
    bout_.consume(consumed);
    if (bout_.empty()) {
      bout_.release_if_empty();
    } else if (bout_.size() >= 5) {  // a kept-back message (an ErrorResponse, a DataRow to mask): room for all of it
      // To the front first: left near the block's end, the next read would only have room for the
      // rest of this message, and a masked result came in reads of a few rows each (measured: 40x
      // the system calls of an unmasked one).
      bout_.compact();
      bout_.grow_if_busy();
      bout_.ensure_contiguous(std::size_t(load_be32(bout_.data() + 1)) + 1);
    } else {
      bout_.compact();
      bout_.grow_if_busy();
    }
    if (ending_) co_return End{};
    if (wec) co_return client_io_end(wec);
    audit_flush_results();
    if (audit_backpressure_ && audit_pending_.size() < kMaxAuditInflight / 2) relay_signal_.cancel();
    m.bytes_backend_to_client.fetch_add(consumed, std::memory_order_relaxed);
    if (saw_ready && server_.draining() && !running() && tx_status_ == 'I')
      co_return End{End::Kind::Shutdown,
                    fatal("57P01", "terminating connection because the proxy is shutting down",
                          "reconnect; another proxy instance or the restarted one will serve you"),
                    "shutdown after the last statement finished"};
  }
}

awaitable<void> Session::teardown() {
  End& end = end_;
  audit_disconnect();
  spdlog::info("session {}: {} disconnected: {}", id_, identity_.subject, end.log);
  if (end.to_client) {
    std::string out;
    protocol::write_error_response(out, *end.to_client);
    try {
      co_await (client_->write_all(out.data(), out.size()) || sleep_for(std::chrono::seconds(2)));
    } catch (...) {
    }
  }
  if (backend_ && registered_cancel_ && running() &&
      (end.kind == End::Kind::TokenExpired || end.kind == End::Kind::GrantEnded || end.kind == End::Kind::Shutdown ||
       end.kind == End::Kind::Administrator)) {
    // The proxy ends the session (the login token expired, the access grant ended, the shutdown
    // deadline passed) while a statement runs: the statement is cancelled, not left to finish and
    // commit after its session ended (the server reads the Terminate only after it; found by
    // adversarial testing: an INSERT after a pg_sleep committed 5 s after the token expired).
    try {
      co_await (forward_cancel(server_, metrics_, worker_.unknown_cancel_log, "the proxy (" + end.log + ")",
                               protocol::CancelRequest{client_key_.process_id, client_key_.secret_key}) ||
                sleep_for(std::chrono::seconds(3)));
    } catch (...) {
    }
  }
  if (backend_ && end.kind != End::Kind::BackendClosed && end.kind != End::Kind::ClientTerminate &&
      end.kind != End::Kind::BackendProtocolError) {
    std::string x;
    protocol::write_terminate(x);
    try {
      co_await (backend_->write_all(x.data(), x.size()) || sleep_for(std::chrono::seconds(1)));
    } catch (...) {
    }
  }
  if (end.to_client && end.kind == End::Kind::ClientProtocolError) {
    // The client may still be sending (the rest of an oversized message): closing with unread
    // bytes makes the kernel answer with a reset, and the client then often loses the error it
    // was sent. Read what it sends until it closes, goes quiet for 250 ms, or 2 s or 1 GiB have
    // passed. No FIN before that: libpq, still sending, would report the end of the stream
    // instead of the error.
    try {
      auto drain = [](net::Stream& s) -> awaitable<void> {
        std::string sink(64 * 1024, '\0');
        for (std::size_t total = 0; total < (1u << 30);) {
          auto got = co_await (s.read_some(sink.data(), sink.size()) || sleep_for(std::chrono::milliseconds(250)));
          if (got.index() != 0) break;  // quiet
          auto [ec, n] = std::get<0>(got);
          if (ec || n == 0) break;
          total += n;
        }
      };
      co_await (drain(*client_) || sleep_for(std::chrono::seconds(2)));
    } catch (...) {
    }
  }
  client_->close();
  if (backend_) backend_->close();
}

}  // namespace gh::proxy

namespace gh::proxy {

std::optional<SessionSnapshot> Session::snapshot() const {
  if (!listed()) return std::nullopt;
  SessionSnapshot s;
  s.id = id_;
  s.identity = identity_;
  s.target = target_->name;
  s.database = database_;
  s.login = login_ ? login_->user : std::string();
  s.client = peer_;
  s.application_name = application_name_;
  s.tls = client_->tls();
  s.started = opened_wall_;
  const auto wall = [this](Clock::time_point t) {
    return opened_wall_ + std::chrono::duration_cast<std::chrono::system_clock::duration>(t - opened_steady_);
  };
  if (held_now_.load(std::memory_order_relaxed))
    s.state = "held";
  else if (running())
    s.state = "active";
  else
    s.state = tx_status_ == 'I' ? "idle" : "idle in transaction";
  if (s.state == "held" || s.state == "active") {
    s.statement = now_text_;
    s.statement_started = wall(now_text_at_);
  }
  return s;
}

void Session::end_by_admin(std::string message) {
  end_session(End{End::Kind::Administrator,
                  fatal("57P01", "terminating connection: " + message,
                        "an administrator ended this session in the Gatehouse console; ask them why before reconnecting"),
                  message});
}

}  // namespace gh::proxy
