#include "net/stream.h"
#include "net/await.h"

#include <poll.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

namespace gh::net {

namespace {
constexpr auto tuple_awaitable = gh::net::use_tuple;
}

bool Stream::loopback() const {
  std::error_code ec;
  const auto ep = sock_.remote_endpoint(ec);
  return !ec && ep.address().is_loopback();
}

std::string Stream::peer() const {
  std::error_code ec;
  const auto ep = sock_.remote_endpoint(ec);
  if (ec) return "unknown";
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

awaitable<std::pair<std::error_code, std::size_t>> Stream::read_some(char* p, std::size_t n) {
  if (tls_) {
    auto [ec, got] = co_await tls_->async_read_some(asio::buffer(p, n), tuple_awaitable);
    co_return std::pair{ec, got};
  }
  // A plain buffer: asio tries a speculative recv() before waiting for epoll. Reporting a short
  // read as "drained" to skip that recv() lost the end of stream when a FIN came with the last
  // data (FATAL + close on a server restart): see docs/adr/0003.
  auto [ec, got] = co_await sock_.async_read_some(asio::buffer(p, n), tuple_awaitable);
  co_return std::pair{ec, got};
}

awaitable<std::error_code> Stream::write_all(const char* p, std::size_t n) {
  if (!tls_ && nonblocking_) {
    // Try at once: in the common case the whole message fits the socket buffer and no
    // writability registration (epoll_ctl) is needed.
    std::error_code ec;
    const std::size_t done = sock_.write_some(asio::buffer(p, n), ec);
    if (!ec && done == n) co_return ec;
    if (ec && ec != asio::error::would_block) co_return ec;
    if (!ec) {
      p += done;
      n -= done;
    }
  }
  if (tls_) {
    auto [ec, w] = co_await asio::async_write(*tls_, asio::buffer(p, n), tuple_awaitable);
    co_return ec;
  }
  auto [ec, w] = co_await asio::async_write(sock_, asio::buffer(p, n), tuple_awaitable);
  co_return ec;
}

awaitable<std::error_code> Stream::read_exact(char* p, std::size_t n) {
  if (tls_) {
    auto [ec, w] = co_await asio::async_read(*tls_, asio::buffer(p, n), tuple_awaitable);
    co_return ec;
  }
  auto [ec, w] = co_await asio::async_read(sock_, asio::buffer(p, n), tuple_awaitable);
  co_return ec;
}

awaitable<std::error_code> Stream::tls_accept(asio::ssl::context& ctx) {
  tls_ = std::make_unique<asio::ssl::stream<tcp::socket&>>(sock_, ctx);
  SSL_set_mode(tls_->native_handle(), SSL_MODE_RELEASE_BUFFERS);
  auto [ec] = co_await tls_->async_handshake(asio::ssl::stream_base::server, tuple_awaitable);
  co_return ec;
}

awaitable<std::error_code> Stream::tls_connect(asio::ssl::context& ctx, const std::string& host, bool verify_host) {
  tls_ = std::make_unique<asio::ssl::stream<tcp::socket&>>(sock_, ctx);
  SSL* ssl = tls_->native_handle();
  SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
  asio::error_code addr_ec;
  asio::ip::make_address(host, addr_ec);
  const bool is_ip = !addr_ec;
  if (!is_ip) SSL_set_tlsext_host_name(ssl, host.c_str());
  if (verify_host) {
    // OpenSSL's own name check (as libpq's verify-full: SAN, or CN without SAN), so that a failure
    // says which check failed: asio's callback reported every failure as "certificate verify
    // failed" (found by adversarial testing: a wrong CA and a wrong host looked the same).
    tls_->set_verify_mode(asio::ssl::verify_peer);
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    if (is_ip) {
      X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
    } else {
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
    }
  } else {
    tls_->set_verify_mode(asio::ssl::verify_none);
  }
  auto [ec] = co_await tls_->async_handshake(asio::ssl::stream_base::client, tuple_awaitable);
  co_return ec;
}

std::string Stream::tls_verify_error() const {
  if (!tls_) return {};
  const long r = SSL_get_verify_result(tls_->native_handle());
  return r == X509_V_OK ? std::string() : std::string(X509_verify_cert_error_string(r));
}

bool Stream::peer_closed() const {
  pollfd p{};
  p.fd = const_cast<tcp::socket&>(sock_).native_handle();
  p.events = POLLRDHUP;
  return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

void Stream::set_nonblocking() {
  std::error_code ec;
  sock_.non_blocking(true, ec);
  nonblocking_ = !ec;
}

void Stream::close() {
  std::error_code ec;
  sock_.shutdown(tcp::socket::shutdown_both, ec);
  sock_.close(ec);
}

Result<std::shared_ptr<asio::ssl::context>> make_server_tls(const std::string& cert_file, const std::string& key_file) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                   asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
  std::error_code ec;
  ctx->use_certificate_chain_file(cert_file, ec);
  if (ec) return fail("", "cannot load TLS certificate " + cert_file + ": " + describe(ec));
  ctx->use_private_key_file(key_file, asio::ssl::context::pem, ec);
  if (ec) return fail("", "cannot load TLS key " + key_file + ": " + describe(ec));
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1)
    return fail("", "TLS key " + key_file + " does not match certificate " + cert_file);
  // An expired certificate fails every client that verifies it; say so at start and at `check`
  // instead (found by adversarial testing: check said ok).
  if (X509* cert = SSL_CTX_get0_certificate(ctx->native_handle())) {
    auto when = [](const ASN1_TIME* t) {
      std::string out;
      if (BIO* b = BIO_new(BIO_s_mem())) {
        if (ASN1_TIME_print(b, t) == 1) {
          char* p = nullptr;
          const long n = BIO_get_mem_data(b, &p);
          if (n > 0) out.assign(p, std::size_t(n));
        }
        BIO_free(b);
      }
      return out;
    };
    if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0)
      return fail("", "TLS certificate " + cert_file + " expired on " + when(X509_get0_notAfter(cert)));
    if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0)
      return fail("", "TLS certificate " + cert_file + " is not valid before " + when(X509_get0_notBefore(cert)));
  }
  return ctx;
}

Result<std::shared_ptr<asio::ssl::context>> make_client_tls(const std::string& ca_file) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                   asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
  if (!ca_file.empty()) {
    std::error_code ec;
    ctx->load_verify_file(ca_file, ec);
    if (ec) return fail("", "cannot load CA file " + ca_file + ": " + describe(ec));
  }
  return ctx;
}

std::string describe(const std::error_code& ec) {
  std::string m = ec.message();
  if (ec.category() == asio::error::get_ssl_category()) {
    const unsigned long e = static_cast<unsigned long>(ec.value());
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    const char* reason = ERR_reason_error_string(e);
    if (reason) m = reason;
  }
  return m;
}

}  // namespace gh::net
