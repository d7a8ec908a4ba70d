#include "protocol/codec.h"

#include <charconv>

#include "base/bytes.h"

namespace gh::protocol {

bool is_frontend_type(char t) {
  switch (t) {
    case 'Q': case 'P': case 'B': case 'D': case 'E': case 'C': case 'H': case 'S':
    case 'F': case 'd': case 'c': case 'f': case 'X': case 'p':
      return true;
    default:
      return false;
  }
}

bool is_backend_type(char t) {
  switch (t) {
    case 'R': case 'K': case 'S': case 'Z': case 'E': case 'N': case 'A': case 'C':
    case 'D': case 'T': case 't': case 'n': case '1': case '2': case '3': case 'I':
    case 's': case 'G': case 'H': case 'W': case 'd': case 'c': case 'v': case 'V':
      return true;
    default:
      return false;
  }
}

namespace {
FrameResult decode_typed(std::string_view data, std::size_t max_message, bool (*valid)(char)) {
  FrameResult r;
  if (data.empty()) return r;
  if (!valid(data[0])) {
    r.status = Decode::Error;
    const unsigned char c = static_cast<unsigned char>(data[0]);
    r.error = (c >= 0x20 && c < 0x7f) ? std::string("invalid message type '") + char(c) + "'"
                                      : std::string("invalid message type 0x") + "0123456789abcdef"[c >> 4] +
                                            "0123456789abcdef"[c & 15];
    return r;
  }
  if (data.size() < 5) return r;
  const std::uint32_t len = load_be32(data.data() + 1);
  if (len < 4) {
    r.status = Decode::Error;
    r.error = "invalid message length " + std::to_string(len);
    return r;
  }
  if (len > max_message) {
    r.status = Decode::Error;
    r.error = "message of " + std::to_string(len) + " bytes exceeds the limit of " + std::to_string(max_message) +
              " bytes";
    return r;
  }
  if (data.size() < std::size_t(len) + 1) return r;
  r.status = Decode::Message;
  r.frame.type = data[0];
  r.frame.body = data.substr(5, len - 4);
  r.frame.wire_size = std::size_t(len) + 1;
  return r;
}
}  // namespace

FrameResult decode_frontend(std::string_view data, std::size_t max_message) {
  return decode_typed(data, max_message, &is_frontend_type);
}
FrameResult decode_backend(std::string_view data, std::size_t max_message) {
  return decode_typed(data, max_message, &is_backend_type);
}

const std::string* StartupMessage::find(std::string_view name) const {
  for (const auto& [k, v] : parameters)
    if (k == name) return &v;
  return nullptr;
}

StartupResult decode_startup(std::string_view data, std::size_t max_packet) {
  StartupResult r;
  if (data.size() < 4) return r;
  const std::uint32_t len = load_be32(data.data());
  auto error = [&](std::string msg) {
    r.status = Decode::Error;
    r.error = std::move(msg);
    return r;
  };
  if (len < 8) return error("invalid length of startup packet");
  // As PostgreSQL: the limit is on what follows the length word.
  if (len - 4 > max_packet)
    return error("startup packet of " + std::to_string(len - 4) + " bytes (after its length) exceeds the limit of " +
                 std::to_string(max_packet) + " bytes");
  if (data.size() < len) return r;
  const std::uint32_t code = load_be32(data.data() + 4);
  r.consumed = len;
  r.status = Decode::Message;
  if (code == kSSLRequestCode || code == kGSSENCRequestCode) {
    if (len != 8) return error("invalid length of encryption request packet");
    if (code == kSSLRequestCode)
      r.packet = SSLRequest{};
    else
      r.packet = GSSENCRequest{};
    return r;
  }
  if (code == kCancelRequestCode) {
    if (len != 16) return error("invalid length of cancel request packet");
    r.packet = CancelRequest{load_be32(data.data() + 8), load_be32(data.data() + 12)};
    return r;
  }
  StartupMessage m;
  m.major = std::uint16_t(code >> 16);
  m.minor = std::uint16_t(code & 0xffff);
  if (m.major != 3) {
    r.sqlstate = "0A000";  // feature_not_supported, as PostgreSQL answers it
    return error("unsupported frontend protocol " + std::to_string(m.major) + "." + std::to_string(m.minor) +
                 ": server supports 3.0 to 3.0");
  }
  // name\0value\0 ... \0
  std::string_view rest = data.substr(8, len - 8);
  while (true) {
    if (rest.empty()) return error("invalid startup packet layout: expected terminator as last byte");
    if (rest[0] == '\0') {
      if (rest.size() != 1) return error("invalid startup packet layout: data after terminator");
      break;
    }
    const auto n = rest.find('\0');
    if (n == std::string_view::npos) return error("invalid startup packet layout: unterminated parameter name");
    std::string name(rest.substr(0, n));
    rest.remove_prefix(n + 1);
    const auto v = rest.find('\0');
    if (v == std::string_view::npos) return error("invalid startup packet layout: missing value for \"" + name + "\"");
    m.parameters.emplace_back(std::move(name), std::string(rest.substr(0, v)));
    rest.remove_prefix(v + 1);
  }
  r.packet = std::move(m);
  return r;
}

std::optional<Authentication> parse_authentication(std::string_view body) {
  if (body.size() < 4) return std::nullopt;
  return Authentication{load_be32(body.data()), body.substr(4)};
}

std::optional<BackendKeyData> parse_backend_key_data(std::string_view body) {
  if (body.size() != 8) return std::nullopt;
  return BackendKeyData{load_be32(body.data()), load_be32(body.data() + 4)};
}

std::optional<ParameterStatus> parse_parameter_status(std::string_view body) {
  const auto a = body.find('\0');
  if (a == std::string_view::npos) return std::nullopt;
  const auto b = body.find('\0', a + 1);
  if (b == std::string_view::npos || b + 1 != body.size()) return std::nullopt;
  return ParameterStatus{body.substr(0, a), body.substr(a + 1, b - a - 1)};
}

namespace {
// One field of an ErrorResponse/NoticeResponse into `e` (V, the untranslated severity, wins over S).
void set_error_field(ErrorFields& e, char code, std::string_view value) {
  switch (code) {
    case 'V': e.severity = value; break;
    case 'S': if (e.severity.empty()) e.severity = value; break;
    case 'C': e.sqlstate = value; break;
    case 'M': e.message = value; break;
    case 'D': e.detail = value; break;
    case 'H': e.hint = value; break;
    case 'P': {
      int pos = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), pos);
      if (ec == std::errc() && end == value.data() + value.size() && pos > 0) e.position = pos;
      break;
    }
    default: break;
  }
}
}  // namespace

ErrorFields parse_error_prefix(std::string_view body) {
  ErrorFields e;
  e.severity.clear();
  e.sqlstate.clear();
  while (!body.empty() && body[0] != '\0') {
    const char code = body[0];
    body.remove_prefix(1);
    const auto n = body.find('\0');
    if (n == std::string_view::npos) {
      if (code == 'M') e.message = std::string(body) + "...";
      break;
    }
    const std::string_view value = body.substr(0, n);
    body.remove_prefix(n + 1);
    set_error_field(e, code, value);
  }
  return e;
}

namespace {
// Calls fn(code, value) for each field of a whole ErrorResponse/NoticeResponse body, in order,
// while fn returns true. False: malformed (a field without its terminator, no final NUL), or fn
// refused a field.
template <class Fn>
bool each_error_field(std::string_view body, Fn&& fn) {
  while (true) {
    if (body.empty()) return false;
    const char code = body[0];
    if (code == '\0') return true;
    body.remove_prefix(1);
    const auto n = body.find('\0');
    if (n == std::string_view::npos) return false;
    if (!fn(code, body.substr(0, n))) return false;
    body.remove_prefix(n + 1);
  }
}
}  // namespace

std::optional<ErrorFields> parse_error_fields(std::string_view body) {
  ErrorFields e;
  e.severity.clear();
  e.sqlstate.clear();
  if (!each_error_field(body, [&](char code, std::string_view value) {
        set_error_field(e, code, value);
        return true;
      }))
    return std::nullopt;
  return e;
}

std::optional<std::string> shift_error_position(std::string_view body, std::size_t shift) {
  std::string out;
  out.reserve(body.size());
  const bool ok = each_error_field(body, [&](char code, std::string_view value) {
    if (code == 'P') {
      std::uint64_t pos = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), pos);
      if (ec != std::errc() || end != value.data() + value.size()) return false;
      if (pos <= shift) return true;  // in the prefix: not a place in the client's text
      out.push_back('P');
      out += std::to_string(pos - shift);
      out.push_back('\0');
      return true;
    }
    out.push_back(code);
    out.append(value);
    out.push_back('\0');
    return true;
  });
  if (!ok) return std::nullopt;
  out.push_back('\0');
  return out;
}

std::vector<std::string_view> parse_sasl_mechanisms(std::string_view data) {
  std::vector<std::string_view> out;
  while (!data.empty() && data[0] != '\0') {
    const auto n = data.find('\0');
    if (n == std::string_view::npos) break;
    out.push_back(data.substr(0, n));
    data.remove_prefix(n + 1);
  }
  return out;
}

std::optional<SASLInitialResponse> parse_sasl_initial_response(std::string_view body) {
  const auto n = body.find('\0');
  if (n == std::string_view::npos) return std::nullopt;
  SASLInitialResponse r;
  r.mechanism = body.substr(0, n);
  body.remove_prefix(n + 1);
  if (body.size() < 4) return std::nullopt;
  const std::int32_t len = std::int32_t(load_be32(body.data()));
  body.remove_prefix(4);
  if (len == -1) {
    if (!body.empty()) return std::nullopt;  // as PostgreSQL: no bytes may follow
    return r;
  }
  if (len < 0 || std::size_t(len) != body.size()) return std::nullopt;
  r.data = body;
  return r;
}

// ---- encoders -------------------------------------------------------------------------------
namespace {
// Appends the type byte and a length placeholder; returns the offset of the length.
std::size_t begin(std::string& out, char type) {
  out.push_back(type);
  const std::size_t at = out.size();
  out.append(4, '\0');
  return at;
}
void finish(std::string& out, std::size_t at) { store_be32(out.data() + at, std::uint32_t(out.size() - at)); }
void cstr(std::string& out, std::string_view s) {
  out.append(s);
  out.push_back('\0');
}
void error_like(std::string& out, char type, const ErrorFields& e) {
  const auto at = begin(out, type);
  out.push_back('S');
  cstr(out, e.severity);
  out.push_back('V');
  cstr(out, e.severity);
  out.push_back('C');
  cstr(out, e.sqlstate);
  out.push_back('M');
  cstr(out, e.message);
  if (!e.detail.empty()) {
    out.push_back('D');
    cstr(out, e.detail);
  }
  if (e.position > 0) {
    out.push_back('P');
    cstr(out, std::to_string(e.position));
  }
  if (!e.hint.empty()) {
    out.push_back('H');
    cstr(out, e.hint);
  }
  out.push_back('\0');
  finish(out, at);
}
}  // namespace

void write_message(std::string& out, char type, std::string_view body) {
  const auto at = begin(out, type);
  out.append(body);
  finish(out, at);
}

void write_error_response(std::string& out, const ErrorFields& e) { error_like(out, 'E', e); }
void write_notice_response(std::string& out, const ErrorFields& e) { error_like(out, 'N', e); }

void write_authentication(std::string& out, std::uint32_t code, std::string_view data) {
  const auto at = begin(out, 'R');
  append_be32(out, code);
  out.append(data);
  finish(out, at);
}

void write_authentication_sasl(std::string& out, const std::vector<std::string>& mechanisms) {
  const auto at = begin(out, 'R');
  append_be32(out, 10);
  for (const auto& m : mechanisms) cstr(out, m);
  out.push_back('\0');
  finish(out, at);
}

void write_backend_key_data(std::string& out, BackendKeyData k) {
  const auto at = begin(out, 'K');
  append_be32(out, k.process_id);
  append_be32(out, k.secret_key);
  finish(out, at);
}

void write_parameter_status(std::string& out, std::string_view name, std::string_view value) {
  const auto at = begin(out, 'S');
  cstr(out, name);
  cstr(out, value);
  finish(out, at);
}

void write_ready_for_query(std::string& out, char status) {
  const auto at = begin(out, 'Z');
  out.push_back(status);
  finish(out, at);
}

void write_negotiate_protocol_version(std::string& out, std::uint32_t newest,
                                      const std::vector<std::string>& unrecognized) {
  const auto at = begin(out, 'v');
  append_be32(out, newest);
  append_be32(out, std::uint32_t(unrecognized.size()));
  for (const auto& o : unrecognized) cstr(out, o);
  finish(out, at);
}

void write_startup_message(std::string& out, const std::vector<std::pair<std::string, std::string>>& params) {
  const std::size_t at = out.size();
  out.append(4, '\0');
  append_be32(out, kProtocolVersion30);
  for (const auto& [k, v] : params) {
    cstr(out, k);
    cstr(out, v);
  }
  out.push_back('\0');
  store_be32(out.data() + at, std::uint32_t(out.size() - at));
}

void write_ssl_request(std::string& out) {
  append_be32(out, 8);
  append_be32(out, kSSLRequestCode);
}

void write_cancel_request(std::string& out, CancelRequest c) {
  append_be32(out, 16);
  append_be32(out, kCancelRequestCode);
  append_be32(out, c.process_id);
  append_be32(out, c.secret_key);
}

void write_password_message(std::string& out, std::string_view password) {
  const auto at = begin(out, 'p');
  cstr(out, password);
  finish(out, at);
}

void write_sasl_initial_response(std::string& out, std::string_view mechanism, std::string_view data) {
  const auto at = begin(out, 'p');
  cstr(out, mechanism);
  append_be32(out, std::uint32_t(data.size()));
  out.append(data);
  finish(out, at);
}

void write_sasl_response(std::string& out, std::string_view data) {
  const auto at = begin(out, 'p');
  out.append(data);
  finish(out, at);
}

void write_terminate(std::string& out) {
  const auto at = begin(out, 'X');
  finish(out, at);
}

void write_query(std::string& out, std::string_view sql) {
  const auto at = begin(out, 'Q');
  cstr(out, sql);
  finish(out, at);
}

std::string malformed_statement_message(char type, std::string_view body) {
  std::size_t pos = 0;
  bool ok = true;
  auto be16 = [&](std::size_t at) { return load_be16(body.data() + at); };
  switch (type) {
    case 'Q':
      c_string_at(body, pos, ok);
      if (!ok) return "invalid message format: the Query text has no terminating NUL";
      if (pos != body.size()) return "invalid message format: bytes after the Query text";
      return {};
    case 'P': {
      c_string_at(body, pos, ok);
      if (ok) c_string_at(body, pos, ok);
      if (!ok) return "invalid message format: a Parse string has no terminating NUL";
      if (body.size() - pos < 2) return "invalid message format: Parse has no parameter count";
      const std::size_t n = be16(pos);
      if (body.size() - pos - 2 != 4 * n) return "invalid message format: Parse parameter types do not match their count";
      return {};
    }
    case 'F': {
      // oid, format codes, arguments (each a length and bytes), result format.
      if (body.size() < 6) return "invalid message format: FunctionCall is too short";
      pos = 4;
      const std::size_t nfmt = be16(pos);
      pos += 2;
      if (body.size() - pos < 2 * nfmt + 2) return "invalid message format: FunctionCall format codes are cut short";
      pos += 2 * nfmt;
      const std::size_t nargs = be16(pos);
      pos += 2;
      for (std::size_t i = 0; i < nargs; ++i) {
        if (body.size() - pos < 4) return "invalid message format: a FunctionCall argument is cut short";
        const auto len = std::int32_t(load_be32(body.data() + pos));
        pos += 4;
        if (len > 0 && body.size() - pos < std::size_t(len)) return "invalid message format: a FunctionCall argument is cut short";
        if (len > 0) pos += std::size_t(len);
      }
      if (body.size() - pos != 2) return "invalid message format: FunctionCall has no result format, or bytes after it";
      return {};
    }
    case 'H':
    case 'S':
      // No body. PostgreSQL answers one with an ERROR and then skips everything up to the next
      // Sync, a Query included, without a word: the proxy would match every later answer to the
      // wrong statement (found by fuzzing: a successful DELETE recorded as failed).
      if (!body.empty())
        return std::string("invalid message format: ") + (type == 'H' ? "Flush" : "Sync") + " carries " +
               std::to_string(body.size()) + " byte(s); it has no body";
      return {};
    default:
      return {};
  }
}

}  // namespace gh::protocol
