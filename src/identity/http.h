#pragma once
// Blocking HTTP(S) requests for the identity plane: OIDC discovery, JWKS, the CLI's token
// grants (and the CLI's bearer-token calls to the admin API). cpp-httplib (OpenSSL) underneath;
// never called on a proxy worker thread (the key cache runs it on its own thread, see
// identity/jwks.h; ADR 0006).
#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace gh::identity::http {

struct Options {
  std::string ca_file;                       // https: trust these CAs (default: the system's)
  std::chrono::seconds timeout{5};           // connect, read and write, each
  std::size_t max_body = 1u << 20;           // larger answers are an error
  std::vector<std::pair<std::string, std::string>> headers;
};

struct Response {
  int status = 0;
  std::string body;
  std::string content_type;
  std::string retry_after;  // the Retry-After header as sent ("" when absent)
};

// Builds cpp-httplib's own function-local statics (its URL regex) now. Called before objects that
// must outlive them at exit are built (the key cache's thread keeper): statics are destroyed in
// reverse order of construction.
void prepare();

// Errors carry a message naming the URL and what failed (connect, TLS, timeout, too large).
Result<Response> get(const std::string& url, const Options& opt = {});
Result<Response> post_form(const std::string& url, const std::vector<std::pair<std::string, std::string>>& form,
                           const Options& opt = {});
// POST with a JSON body (`json_text`, sent as application/json). Any HTTP status is a Response.
Result<Response> post_json(const std::string& url, const std::string& json_text, const Options& opt = {});
// POSTs `body` as `content_type` (webhooks). Any status is a response; only transport failures
// (connect, TLS, timeout) are errors.
Result<Response> post_body(const std::string& url, const std::string& body, const std::string& content_type,
                           const Options& opt = {});

// "https://idp.example.com:8443/a/b?c" -> {"https://idp.example.com:8443", "/a/b?c"}; error when
// the scheme is not http or https.
Result<std::pair<std::string, std::string>> split_url(const std::string& url);
// Percent-encoding of everything but RFC 3986's unreserved characters (form values, Basic
// credentials per RFC 6749 §2.3.1, path segments).
std::string url_encode(std::string_view s);
// "Basic <base64>" for an OAuth client's id and secret (RFC 6749 §2.3.1: each form-urlencoded first).
std::string basic_authorization(std::string_view client_id, std::string_view secret);
// True when the URL's host is a loopback address or "localhost".
bool loopback_url(const std::string& url);

}  // namespace gh::identity::http
