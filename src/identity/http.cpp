#include "identity/http.h"

#include <cctype>

#include <httplib.h>

#include "identity/jose.h"

namespace gh::identity::http {
namespace {

std::string host_of(const std::string& origin) {
  auto p = origin.find("://");
  std::string h = origin.substr(p == std::string::npos ? 0 : p + 3);
  if (!h.empty() && h[0] == '[') return h.substr(1, h.find(']') - 1);
  auto colon = h.rfind(':');
  return colon == std::string::npos ? h : h.substr(0, colon);
}

template <class Call>
Result<Response> request_unguarded(const std::string& url, const Options& opt, Call&& call);

// cpp-httplib may throw (its constructor parses the URL with std::regex); callers get an error.
template <class Call>
Result<Response> request(const std::string& url, const Options& opt, Call&& call) {
  try {
    return request_unguarded(url, opt, std::forward<Call>(call));
  } catch (const std::exception& e) {
    return fail("", url + ": " + e.what());
  }
}

template <class Call>
Result<Response> request_unguarded(const std::string& url, const Options& opt, Call&& call) {
  auto parts = split_url(url);
  if (!parts) return tl::unexpected(parts.error());
  httplib::Client cli(parts->first);
  if (!cli.is_valid()) return fail("", url + ": not a usable URL");
  const auto t = static_cast<time_t>(opt.timeout.count());
  cli.set_connection_timeout(t, 0);
  cli.set_read_timeout(t, 0);
  cli.set_write_timeout(t, 0);
  cli.set_follow_location(false);
  if (!opt.ca_file.empty()) cli.set_ca_cert_path(opt.ca_file.c_str());
  cli.enable_server_certificate_verification(true);
  httplib::Headers headers{{"Accept", "application/json"}};
  for (const auto& [k, v] : opt.headers) headers.emplace(k, v);
  std::string body;
  bool too_large = false;
  auto receiver = [&](const char* data, size_t n) {
    if (body.size() + n > opt.max_body) {
      too_large = true;
      return false;
    }
    body.append(data, n);
    return true;
  };
  httplib::Result res = call(cli, parts->second, headers, receiver);
  if (too_large) return fail("", url + ": the answer is larger than " + std::to_string(opt.max_body) + " bytes");
  if (!res) {
    std::string why = httplib::to_string(res.error());
    if (res.error() == httplib::Error::SSLServerVerification)
      why += " (the server's certificate is not trusted; set ca_file)";
    return fail("", url + ": " + why);
  }
  Response out;
  out.status = res->status;
  out.body = body.empty() ? res->body : std::move(body);
  out.content_type = res->get_header_value("Content-Type");
  out.retry_after = res->get_header_value("Retry-After");
  return out;
}

}  // namespace

void prepare() { httplib::Client warm("http://127.0.0.1:9"); }

Result<std::pair<std::string, std::string>> split_url(const std::string& url) {
  std::size_t start;
  if (url.rfind("https://", 0) == 0)
    start = 8;
  else if (url.rfind("http://", 0) == 0)
    start = 7;
  else
    return fail("", "\"" + url + "\" is not an http or https URL");
  auto slash = url.find('/', start);
  if (slash == start) return fail("", "\"" + url + "\" has no host");
  if (slash == std::string::npos) return std::make_pair(url, std::string("/"));
  return std::make_pair(url.substr(0, slash), url.substr(slash));
}

std::string url_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(char(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

bool loopback_url(const std::string& url) {
  auto parts = split_url(url);
  if (!parts) return false;
  auto h = host_of(parts->first);
  return h == "localhost" || h == "::1" || h.rfind("127.", 0) == 0;
}

Result<Response> get(const std::string& url, const Options& opt) {
  return request(url, opt, [](httplib::Client& cli, const std::string& path, const httplib::Headers& h,
                              const httplib::ContentReceiver& recv) { return cli.Get(path, h, recv); });
}

Result<Response> post_form(const std::string& url, const std::vector<std::pair<std::string, std::string>>& form,
                           const Options& opt) {
  httplib::Params params;
  for (const auto& [k, v] : form) params.emplace(k, v);
  return request(url, opt, [&](httplib::Client& cli, const std::string& path, const httplib::Headers& h,
                               const httplib::ContentReceiver&) { return cli.Post(path, h, params); });
}

Result<Response> post_json(const std::string& url, const std::string& json_text, const Options& opt) {
  return post_body(url, json_text, "application/json", opt);
}

Result<Response> post_body(const std::string& url, const std::string& body, const std::string& content_type,
                           const Options& opt) {
  return request(url, opt, [&](httplib::Client& cli, const std::string& path, const httplib::Headers& h,
                               const httplib::ContentReceiver&) { return cli.Post(path, h, body, content_type); });
}

std::string basic_authorization(std::string_view client_id, std::string_view secret) {
  const std::string cred = url_encode(client_id) + ":" + url_encode(secret);
  // base64 (standard alphabet) from base64url: swap the two characters and pad.
  std::string b = jose::base64url_encode(cred);
  for (auto& c : b) c = c == '-' ? '+' : c == '_' ? '/' : c;
  while (b.size() % 4) b.push_back('=');
  return "Basic " + b;
}

}  // namespace gh::identity::http
