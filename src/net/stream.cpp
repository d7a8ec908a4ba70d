#include "net/stream.h"
#include "net/await.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

// Relay reads on plain TCP sockets use their own buffer type so that asio's reactor learns when
// a read drained the socket. asio 1.22 reports a receive as "exhausted" only at end of stream, so
// after every completed read the next async_read_some first tries a speculative recv() that fails
// with EAGAIN: one wasted system call per relayed message.
//
// A short read is not proof of a drained socket (a FIN that came with the last data consumed the
// same epoll edge; an earlier attempt lost ends of stream that way, see docs/adr/0003). The kernel
// can say it exactly: with TCP_INQ on, recvmsg() returns in a control message how many bytes are
// still queued after the read, and reports 1 when a FIN has been received (tcp_inq_hint), so 0
// means "nothing left and no end of stream yet". Anything arriving later raises a new edge on the
// edge-triggered registration, so the reactor may queue the next read without trying it first.
namespace gh::net::detail {
struct InqBuffer : asio::mutable_buffer {
  InqBuffer(void* p, std::size_t n) : asio::mutable_buffer(p, n) {}
};
}  // namespace gh::net::detail

namespace asio::detail {
template <>
class reactive_socket_recv_op_base<gh::net::detail::InqBuffer> : public reactor_op {
 public:
  reactive_socket_recv_op_base(const asio::error_code& success_ec, socket_type socket, socket_ops::state_type,
                               const gh::net::detail::InqBuffer& buffers, socket_base::message_flags flags,
                               func_type complete_func)
      : reactor_op(success_ec, &reactive_socket_recv_op_base::do_perform, complete_func),
        socket_(socket),
        buffers_(buffers),
        flags_(flags) {}

  static status do_perform(reactor_op* base) {
    auto* o = static_cast<reactive_socket_recv_op_base*>(base);
    for (;;) {
      iovec iov{o->buffers_.data(), o->buffers_.size()};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      const ssize_t got = ::recvmsg(o->socket_, &msg, o->flags_);
      if (got > 0) {
        o->bytes_transferred_ = static_cast<std::size_t>(got);
        int inq = 1;  // no hint: assume more may be queued (plain speculative read next time)
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c))
          if (c->cmsg_level == SOL_TCP && c->cmsg_type == TCP_CM_INQ && c->cmsg_len >= CMSG_LEN(sizeof(int)))
            std::memcpy(&inq, CMSG_DATA(c), sizeof inq);
        return inq == 0 ? done_and_exhausted : done;
      }
      if (got == 0) {
        o->ec_ = asio::error::eof;
        o->bytes_transferred_ = 0;
        return done_and_exhausted;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return not_done;
      o->ec_ = asio::error_code(errno, asio::error::get_system_category());
      o->bytes_transferred_ = 0;
      return done;
    }
  }

 private:
  socket_type socket_;
  gh::net::detail::InqBuffer buffers_;
  socket_base::message_flags flags_;
};
}  // namespace asio::detail

namespace gh::net {

namespace {
constexpr auto tuple_awaitable = gh::net::use_tuple;
}

bool Stream::loopback() const {
  std::error_code ec;
  const auto ep = sock_.remote_endpoint(ec);
  if (ec) return false;
  const auto a = ep.address();
  // On a dual-stack listener ("::") an IPv4 client is ::ffff:127.0.0.1 (found by adversarial testing).
  if (a.is_v6() && a.to_v6().is_v4_mapped()) return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).is_loopback();
  return a.is_loopback();
}

std::string Stream::peer() const {
  std::error_code ec;
  const auto ep = sock_.remote_endpoint(ec);
  if (ec) return "unknown";
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

awaitable<std::tuple<std::error_code, std::size_t>> Stream::read_some(char* p, std::size_t n) {
  if (tls_) return tls_->async_read_some(asio::buffer(p, n), tuple_awaitable);
  if (inq_) return sock_.async_read_some(detail::InqBuffer(p, n), tuple_awaitable);
  // Without TCP_INQ asio tries a speculative recv() before waiting for epoll (see above).
  return sock_.async_read_some(asio::buffer(p, n), tuple_awaitable);
}

std::size_t Stream::write_now(const char* p, std::size_t n, std::error_code& ec) {
  ec.clear();
  if (tls_ || !nonblocking_) return 0;
  const std::size_t done = sock_.write_some(asio::buffer(p, n), ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) ec.clear();
  return ec ? 0 : done;
}

awaitable<std::error_code> Stream::write_all(const char* p, std::size_t n) {
  {
    // Try at once: in the common case the whole message fits the socket buffer and no
    // writability registration (epoll_ctl) is needed.
    std::error_code ec;
    const std::size_t done = write_now(p, n, ec);
    if (ec || done == n) co_return ec;
    p += done;
    n -= done;
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

std::string Stream::tls_description() const {
  if (!tls_) return {};
  SSL* ssl = tls_->native_handle();
  if (!SSL_is_init_finished(ssl)) return "handshake not completed";
  std::string out = SSL_get_version(ssl);
  if (const char* cipher = SSL_get_cipher_name(ssl); cipher && *cipher) out += std::string(" ") + cipher;
  return out;
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
  const int on = 1;
  inq_ = !tls_ && ::setsockopt(sock_.native_handle(), SOL_TCP, TCP_INQ, &on, sizeof on) == 0;
}

void Stream::close() {
  std::error_code ec;
  sock_.shutdown(tcp::socket::shutdown_both, ec);
  sock_.close(ec);
}

Result<std::shared_ptr<asio::ssl::context>> make_server_tls(const std::string& cert_file, const std::string& key_file,
                                                            bool tls13_only, const std::string& ciphers) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                   asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
  if (tls13_only && SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_3_VERSION) != 1)
    return fail("", "tls.min_version: this OpenSSL cannot require TLS 1.3");
  if (!ciphers.empty() && SSL_CTX_set_cipher_list(ctx->native_handle(), ciphers.c_str()) != 1) {
    ERR_clear_error();
    return fail("", "tls.ciphers: \"" + ciphers +
                        "\" names no cipher this OpenSSL can use (an OpenSSL cipher list, e.g. "
                        "\"ECDHE+AESGCM:ECDHE+CHACHA20\"; see `openssl ciphers -v 'LIST'`)");
  }
  std::error_code ec;
  ctx->use_certificate_chain_file(cert_file, ec);
  if (ec) return fail("", "tls.cert_file: cannot load TLS certificate " + cert_file + ": " + describe(ec));
  // An encrypted key must not make OpenSSL ask for a passphrase on the terminal: that blocked
  // the start, and a reload thread for good (SIGHUP and SIGTERM then went unheard; found by
  // adversarial testing). No passphrase is given: such a key fails to load, and says why.
  auto asked = std::make_shared<bool>(false);
  ctx->set_password_callback([asked](std::size_t, asio::ssl::context::password_purpose) {
    *asked = true;
    return std::string();
  });
  ctx->use_private_key_file(key_file, asio::ssl::context::pem, ec);
  if (ec && *asked)
    return fail("", "tls.key_file: cannot load TLS key " + key_file +
                        ": it is encrypted (has a passphrase); Gatehouse needs an unencrypted key file (decrypt it "
                        "with `openssl pkey -in KEY -out KEY.plain` and keep it readable by the proxy's user only)");
  if (ec) return fail("", "tls.key_file: cannot load TLS key " + key_file + ": " + describe(ec));
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1)
    return fail("", "tls.key_file: TLS key " + key_file + " does not match certificate " + cert_file);
  // An expired certificate fails every client that verifies it; say so at start and at `check`
  // instead (found by adversarial testing: check said ok).
  if (!ciphers.empty()) {
    // What the list leaves TLS 1.2 clients with this certificate: nothing that runs without
    // encryption or without authentication, and at least one suite for the key's type within
    // OpenSSL's security level (found by adversarial testing: "eNULL" or an ECDSA-only list
    // with an RSA certificate passed check, and every TLS 1.2 handshake then failed; with
    // @SECLEVEL=0 a NULL or anonymous suite was negotiated).
    SSL_CTX* c = ctx->native_handle();
    int key_auth = NID_undef;
    if (X509* cert = SSL_CTX_get0_certificate(c)) {
      const int type = EVP_PKEY_get_base_id(X509_get0_pubkey(cert));
      key_auth = type == EVP_PKEY_EC || type == EVP_PKEY_ED25519 || type == EVP_PKEY_ED448 ? NID_auth_ecdsa
                 : type == EVP_PKEY_RSA || type == EVP_PKEY_RSA_PSS                       ? NID_auth_rsa
                                                                                          : NID_undef;
    }
    // The suites the list and OpenSSL's security level leave (a list such as HIGH names anonymous
    // suites that the default security level never offers: not refused for that).
    bool usable = tls13_only;
    std::string weak;
    if (SSL* probe = SSL_new(c)) {
      if (STACK_OF(SSL_CIPHER)* ok = SSL_get1_supported_ciphers(probe)) {
        for (int i = 0; i < sk_SSL_CIPHER_num(ok); ++i) {
          const SSL_CIPHER* ci = sk_SSL_CIPHER_value(ok, i);
          const int auth = SSL_CIPHER_get_auth_nid(ci);
          if (weak.empty() && (SSL_CIPHER_get_cipher_nid(ci) == NID_undef || auth == NID_auth_null))
            weak = std::string(SSL_CIPHER_get_name(ci)) +
                   (SSL_CIPHER_get_cipher_nid(ci) == NID_undef ? ", which does not encrypt"
                                                               : ", which does not authenticate the proxy");
          usable |= std::string_view(SSL_CIPHER_get_version(ci)) != "TLSv1.3" &&
                    (auth == key_auth || auth == NID_auth_any || key_auth == NID_undef);
        }
        sk_SSL_CIPHER_free(ok);
      }
      SSL_free(probe);
    }
    if (!weak.empty())
      return fail("", std::string("tls.ciphers: \"") + ciphers + "\" allows " + weak +
                          "; remove it (e.g. add :!aNULL:!eNULL)");
    if (!usable)
      return fail("", std::string("tls.ciphers: \"") + ciphers +
                          "\" leaves TLS 1.2 clients no suite this certificate's key and OpenSSL's security level "
                          "allow (see `openssl ciphers -v -s -tls1_2 'LIST'`); every TLS 1.2 handshake would fail. "
                          "Fix the list, or set tls.min_version: TLSv1.3");
  }
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
      return fail("", "tls.cert_file: TLS certificate " + cert_file + " expired on " + when(X509_get0_notAfter(cert)));
    if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0)
      return fail("", "tls.cert_file: TLS certificate " + cert_file + " is not valid before " + when(X509_get0_notBefore(cert)));
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
