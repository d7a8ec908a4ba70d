#pragma once
// A TCP connection that may be upgraded to TLS in place (PostgreSQL's SSLRequest dance).
// All operations report errors as error_code values; nothing throws on the hot path.
#include <memory>
#include <string>
#include <system_error>

#include <asio.hpp>
#include <asio/ssl.hpp>

#include "base/result.h"

namespace gh::net {

using asio::awaitable;
using asio::ip::tcp;

class Stream {
 public:
  explicit Stream(tcp::socket s) : sock_(std::move(s)) {}
  Stream(Stream&&) = delete;

  tcp::socket& socket() { return sock_; }
  bool tls() const { return tls_ != nullptr; }
  bool loopback() const;
  std::string peer() const;  // "addr:port"

  // Not a coroutine itself: it returns asio's operation, so a relay read costs one coroutine
  // frame (asio's), not two.
  awaitable<std::tuple<std::error_code, std::size_t>> read_some(char* p, std::size_t n);
  awaitable<std::error_code> write_all(const char* p, std::size_t n);
  // Without a coroutine: what a non-blocking send takes now (plain socket after set_nonblocking;
  // otherwise 0). ec is set on a real error, not when the socket buffer is full. The relay sends
  // with this first and awaits write_all only for the rest.
  std::size_t write_now(const char* p, std::size_t n, std::error_code& ec);
  // Reads exactly n bytes.
  awaitable<std::error_code> read_exact(char* p, std::size_t n);

  // After this, write_all on a plain socket first tries a non-blocking send and only waits
  // for writability when the socket buffer is full, and read_some asks the kernel (TCP_INQ)
  // whether a read drained the socket, so the next read waits for epoll without a wasted recv().
  void set_nonblocking();

  awaitable<std::error_code> tls_accept(asio::ssl::context& ctx);
  // verify_host empty: no certificate verification (sslmode=require semantics).
  awaitable<std::error_code> tls_connect(asio::ssl::context& ctx, const std::string& sni_host, bool verify_host);
  // After a failed tls_connect: why the server's certificate was not accepted, in OpenSSL's words
  // ("IP address mismatch", "unable to get local issuer certificate", "certificate has expired");
  // "" when verification was not the problem.
  std::string tls_verify_error() const;
  // "TLSv1.3" (the protocol and cipher, "TLSv1.3 TLS_AES_256_GCM_SHA384") once a handshake is
  // done; "" on a plain connection.
  std::string tls_description() const;

  void close();
  // The peer closed its sending side or the connection (POLLRDHUP/POLLHUP/POLLERR), also with
  // unread data (a TLS close_notify) still queued. Does not read.
  bool peer_closed() const;

 private:
  tcp::socket sock_;
  std::unique_ptr<asio::ssl::stream<tcp::socket&>> tls_;
  bool nonblocking_ = false;
  bool inq_ = false;  // TCP_INQ is on: reads know when they drained the socket
};

// TLS contexts. Server: certificate chain + key. Client: CA file for verify-full, or none.
// tls13_only: refuse TLS 1.2 (the minimum otherwise). ciphers: OpenSSL cipher list for TLS 1.2
// (empty: OpenSSL's defaults); an error names `tls.ciphers` when nothing in it is usable.
Result<std::shared_ptr<asio::ssl::context>> make_server_tls(const std::string& cert_file, const std::string& key_file,
                                                            bool tls13_only = false, const std::string& ciphers = {});
Result<std::shared_ptr<asio::ssl::context>> make_client_tls(const std::string& ca_file);

std::string describe(const std::error_code& ec);

}  // namespace gh::net
