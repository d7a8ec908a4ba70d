#include "proxy/server.h"

#include <unistd.h>

#include <future>

#include <asio/experimental/awaitable_operators.hpp>
#include <spdlog/spdlog.h>

#include "audit/trail.h"
#include "base/bytes.h"
#include "net/await.h"
#include "net/stream.h"
#include "protocol/codec.h"
#include "proxy/server_impl.h"
#include "proxy/session.h"

namespace gh::proxy {

namespace {
constexpr auto tuple_awaitable = gh::net::use_tuple;

// Refused connections are logged at most once a second per worker (a flood must not flood the log).
void log_refused(Worker& w, const std::string& peer, const protocol::ErrorFields& e, std::string_view who) {
  const auto held = w.refused_log.admit();
  if (!held) return;
  spdlog::warn("connection from {}{} refused: {} ({}){}", peer, who, e.message, e.sqlstate,
               *held > 0 ? fmt::format("; {} more refused since the last such line", *held) : "");
}

// g++ 12 warns (-Wmismatched-new-delete) on this coroutine frame's deallocation, as in
// session_hold.cpp: asio allocates and frees awaitable frames with its own matching operators.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
asio::awaitable<void> refuse(Server& server, Worker& w, asio::ip::tcp::socket sock, protocol::ErrorFields e) {
  // Answered as PostgreSQL answers a connection it cannot serve: the startup packet is read
  // first (an SSLRequest gets the TLS handshake when client TLS is configured, as a session
  // would, else 'N'; a GSSENCRequest gets 'N'), then the error, then our side is closed and the
  // client's close awaited. Closing with the client's bytes unread would reset the connection and
  // the client would lose the error ("server closed the connection unexpectedly": found by
  // adversarial testing with libpq's default sslmode=prefer); answering 'N' to a client that
  // requires TLS made it report "server does not support SSL" instead of the error (found by an
  // operator trial with tls.mode require). A CancelRequest is still forwarded: Ctrl-C must work
  // when the proxy is full. A client that sends nothing gets the error after 2 s, and the whole
  // exchange is bounded: a refused connection must not hold a descriptor for as long as it likes.
  using namespace asio::experimental::awaitable_operators;
  std::error_code ep_ec;
  const auto ep = sock.remote_endpoint(ep_ec);
  const std::string peer = ep_ec ? std::string("unknown") : ep.address().to_string() + ":" + std::to_string(ep.port());
  asio::steady_timer quiet(sock.get_executor(), std::chrono::seconds(2));
  net::Stream s(std::move(sock));
  const auto tls = server.runtime()->client_tls;
  std::string in, out;
  const protocol::StartupMessage* startup = nullptr;
  protocol::StartupResult r;
  for (int answered = 0;;) {
    char buf[1024];
    auto got = co_await (s.read_some(buf, sizeof buf) || quiet.async_wait(tuple_awaitable));
    if (got.index() != 0 || std::get<0>(std::get<0>(got))) break;
    in.append(buf, std::get<1>(std::get<0>(got)));
    r = protocol::decode_startup(in);
    if (r.status == protocol::Decode::NeedMore) continue;
    if (r.status == protocol::Decode::Error) break;
    if (auto* c = std::get_if<protocol::CancelRequest>(&r.packet)) {
      s.close();
      co_await Session::forward_cancel(server, w.metrics, w.unknown_cancel_log, peer, *c);
      co_return;
    }
    if (std::holds_alternative<protocol::StartupMessage>(r.packet) || ++answered > 2) {
      startup = std::get_if<protocol::StartupMessage>(&r.packet);
      break;
    }
    in.erase(0, r.consumed);
    const bool handshake = tls && !s.tls() && in.empty() && std::holds_alternative<protocol::SSLRequest>(r.packet);
    const char answer = handshake ? 'S' : 'N';
    auto sent = co_await (s.write_all(&answer, 1) || quiet.async_wait(tuple_awaitable));
    if (sent.index() != 0 || std::get<0>(sent)) break;
    if (handshake) {
      auto done = co_await (s.tls_accept(*tls) || quiet.async_wait(tuple_awaitable));
      if (done.index() != 0 || std::get<0>(done)) {  // no error can reach this client
        s.close();
        startup = nullptr;
        break;
      }
    }
  }
  if (s.socket().is_open()) {
    protocol::write_error_response(out, e);
    quiet.expires_after(std::chrono::seconds(2));
    co_await (s.write_all(out.data(), out.size()) || quiet.async_wait(tuple_awaitable));
    std::error_code ignore;
    if (!s.tls()) s.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignore);
    for (;;) {  // until the client closes (it has read the error), or 2 s
      char buf[256];
      auto got = co_await (s.read_some(buf, sizeof buf) || quiet.async_wait(tuple_awaitable));
      if (got.index() != 0 || std::get<0>(std::get<0>(got))) break;
    }
    s.close();
  }

  const std::string* user = startup ? startup->find("user") : nullptr;
  const std::string* db = startup ? startup->find("database") : nullptr;
  log_refused(w, peer, e, user ? fmt::format(" (user \"{}\")", *user) : std::string());
  if (auto* trail = server.audit()) {
    auto ctx = std::make_shared<audit::SessionContext>();
    ctx->client_address = ep_ec ? std::string() : ep.address().to_string();
    if (user) ctx->user = *user;
    if (db) ctx->database = *db;
    if (const std::string* app = startup ? startup->find("application_name") : nullptr) ctx->application_name = *app;
    trail->submit(audit::connect_failed_event(std::move(ctx), e.sqlstate, e.message));
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// On w's thread: the session of an accepted connection (counted in w.live and the server's
// active sessions by the caller).
void start_session(Server& server, Worker& w, asio::ip::tcp::socket sock, std::uint32_t id) {
  auto s = std::make_shared<Session>(server, w, std::move(sock), id);
  w.sessions.insert(s);
  asio::co_spawn(w.io, s->run(), asio::detached);
}

asio::awaitable<void> accept_loop(Server& server, Server::Impl& impl, Worker& w) {
  for (;;) {
    auto [ec, sock] = co_await w.acceptor->async_accept(tuple_awaitable);
    if (ec) {
      if (ec == asio::error::operation_aborted || !w.acceptor->is_open()) co_return;
      spdlog::warn("accept failed: {}", ec.message());
      if (ec == asio::error::no_descriptors) {  // EMFILE: back off instead of spinning
        asio::steady_timer t(w.io, std::chrono::milliseconds(100));
        co_await t.async_wait(tuple_awaitable);
      }
      continue;
    }
    const auto rt = server.runtime();
    if (server.draining()) {
      w.metrics.connections_rejected.fetch_add(1, std::memory_order_relaxed);
      asio::co_spawn(w.io, refuse(server, w, std::move(sock), protocol::fatal("57P03", "the proxy is shutting down")),
                     asio::detached);
      continue;
    }
    if (server.active_sessions() >= rt->config->limits.max_connections) {
      w.metrics.connections_rejected.fetch_add(1, std::memory_order_relaxed);
      asio::co_spawn(w.io, refuse(server, w, std::move(sock), protocol::fatal("53300", "sorry, too many clients already")),
                     asio::detached);
      continue;
    }
    server.note_session_opened();
    // Sessions are spread evenly over the workers: the kernel's SO_REUSEPORT hash split 8
    // connections 6/2 or worse about one time in four, and the busier thread then served three
    // quarters of the traffic (pgbench -c 8: ~15% fewer transactions in those runs). A session
    // goes to the worker with the fewest sessions, this one on a tie; its socket moves there.
    Worker* to = &w;
    for (auto& o : impl.workers)
      if (o->live.load(std::memory_order_relaxed) < to->live.load(std::memory_order_relaxed)) to = o.get();
    to->live.fetch_add(1, std::memory_order_relaxed);
    const auto id = impl.next_session_id.fetch_add(1);
    if (to != &w) {
      std::error_code mec;
      const auto protocol = w.acceptor->local_endpoint(mec).protocol();
      const int fd = mec ? -1 : sock.release(mec);
      if (!mec) {
        asio::post(to->io, [&server, to, fd, protocol, id] {
          std::error_code aec;
          asio::ip::tcp::socket moved(to->io);
          moved.assign(protocol, fd, aec);
          if (aec) {
            ::close(fd);
            spdlog::warn("a connection could not be moved to worker {}: {}", to->index, aec.message());
          }
          start_session(server, *to, std::move(moved), id);  // a closed socket: the session ends at once
        });
        continue;
      }
      to->live.fetch_sub(1, std::memory_order_relaxed);  // not released: it is served here
      to = &w;
      to->live.fetch_add(1, std::memory_order_relaxed);
    }
    start_session(server, *to, std::move(sock), id);
  }
}
}  // namespace

Server::Server(std::shared_ptr<const Runtime> rt, Metrics& metrics) : impl_(std::make_unique<Impl>(metrics)) {
  runtime_.store(std::move(rt));
}

Server::~Server() {
  for (auto& w : impl_->workers) {
    w->io.stop();
    if (w->thread.joinable()) w->thread.join();
  }
}

sql::Analyzer::Stats Server::analyzer_stats() const {
  sql::Analyzer::Stats sum;
  for (const auto& w : impl_->workers) {
    const auto s = w->analyzer.stats();
    sum.hits += s.hits;
    sum.shape_hits += s.shape_hits;
    sum.misses += s.misses;
    sum.evictions += s.evictions;
    sum.entries += s.entries;
    sum.bytes += s.bytes;
  }
  return sum;
}

Result<void> Server::start() {
  const auto rt = runtime();
  const auto& cfg = *rt->config;
  const std::size_t n = impl_->metrics.workers();
  std::error_code ec;
  const auto addr = asio::ip::make_address(cfg.listen.address, ec);
  if (ec) return fail("", "listen.address: \"" + cfg.listen.address + "\" is not an IP address");
  std::uint16_t port = cfg.listen.port;
  for (std::size_t i = 0; i < n; ++i) {
    auto w = std::make_unique<Worker>(i, impl_->metrics.worker(i));
    w->acceptor.emplace(w->io);
    auto& a = *w->acceptor;
    const asio::ip::tcp::endpoint ep(addr, port);
    a.open(ep.protocol(), ec);
    if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) {
      int one = 1;
      if (::setsockopt(a.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        ec = std::error_code(errno, std::system_category());
    }
    if (!ec) a.bind(ep, ec);
    if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      return fail("", "cannot listen on " + cfg.listen.address + ":" + std::to_string(port) + ": " + ec.message());
    if (port == 0) port = a.local_endpoint().port();
    impl_->workers.push_back(std::move(w));
  }
  port_ = port;
  for (auto& w : impl_->workers) {
    asio::co_spawn(w->io, accept_loop(*this, *impl_, *w), asio::detached);
    w->thread = std::thread([wp = w.get()] {
      for (;;) {
        try {
          wp->io.run();
          return;
        } catch (const std::exception& e) {
          spdlog::error("worker {}: unexpected exception: {}", wp->index, e.what());
        }
      }
    });
  }
  spdlog::info("listening on {}:{} with {} worker thread(s)", cfg.listen.address, port_, n);
  return {};
}

void Server::note_session_opened() { active_.fetch_add(1, std::memory_order_relaxed); }

void Server::reload(std::shared_ptr<const Runtime> rt) {
  runtime_.store(std::move(rt));
  generation_.fetch_add(1, std::memory_order_acq_rel);
}

void Server::shutdown() {
  if (draining_.exchange(true)) {
    // Asked again while draining (a second SIGTERM, Ctrl-C twice): the deadline is now. Running
    // statements are cancelled and every session ends with 57P01, as at the deadline.
    impl_->drain_deadline_ns.store(std::chrono::steady_clock::now().time_since_epoch().count());
    spdlog::info("shutting down now (asked again): {} session(s) are ended", active_sessions());
  } else {
    const auto timeout = runtime()->config->limits.shutdown_timeout;
    impl_->drain_deadline_ns.store(
        (std::chrono::steady_clock::now() + timeout).time_since_epoch().count());
    spdlog::info("shutting down: no new connections; {} session(s) get up to {} ms to finish (signal again to "
                 "end them now)", active_sessions(), timeout.count());
  }
  for (auto& w : impl_->workers) {
    asio::post(w->io, [wp = w.get()] {
      std::error_code ec;
      if (wp->acceptor) wp->acceptor->close(ec);
      for (const auto& s : wp->sessions) s->kick();
    });
  }
}

void Server::wait() {
  for (auto& w : impl_->workers)
    if (w->thread.joinable()) w->thread.join();
}

// The admin thread asks each worker on its own thread (sessions are touched only there) and waits
// for the answers with one deadline; a worker that does not answer in time is left out. The
// promise is shared: a late answer finds it alive.
std::vector<SessionSnapshot> Server::sessions(std::chrono::milliseconds wait) const {
  std::vector<std::future<std::vector<SessionSnapshot>>> answers;
  for (const auto& w : impl_->workers) {
    auto p = std::make_shared<std::promise<std::vector<SessionSnapshot>>>();
    answers.push_back(p->get_future());
    asio::post(w->io, [p, worker = w.get()] {
      std::vector<SessionSnapshot> out;
      for (const auto& s : worker->sessions)
        if (auto snap = s->snapshot()) out.push_back(std::move(*snap));
      p->set_value(std::move(out));
    });
  }
  std::vector<SessionSnapshot> all;
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (auto& f : answers) {
    if (f.wait_until(deadline) != std::future_status::ready) continue;
    auto part = f.get();
    std::move(part.begin(), part.end(), std::back_inserter(all));
  }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return all;
}

bool Server::end_session(std::uint32_t id, std::string message, std::chrono::milliseconds wait) {
  std::vector<std::future<bool>> answers;
  for (const auto& w : impl_->workers) {
    auto p = std::make_shared<std::promise<bool>>();
    answers.push_back(p->get_future());
    asio::post(w->io, [p, worker = w.get(), id, message] {
      for (const auto& s : worker->sessions)
        if (s->id() == id && s->listed()) {
          s->end_by_admin(message);
          p->set_value(true);
          return;
        }
      p->set_value(false);
    });
  }
  bool found = false;
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (auto& f : answers)
    if (f.wait_until(deadline) == std::future_status::ready && f.get()) found = true;
  return found;
}

}  // namespace gh::proxy
