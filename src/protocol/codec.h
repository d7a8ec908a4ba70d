#pragma once
// PostgreSQL v3 wire codec: bytes in, typed messages out. No I/O, no logging, no counting.
// Message names follow https://www.postgresql.org/docs/current/protocol-message-formats.html
// Every decoder has three outcomes: a whole message, need more bytes, or a protocol error.
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace gh::protocol {

inline constexpr std::uint32_t kProtocolVersion30 = 196608;  // 3 << 16
inline constexpr std::uint32_t kSSLRequestCode = 80877103;
inline constexpr std::uint32_t kGSSENCRequestCode = 80877104;
inline constexpr std::uint32_t kCancelRequestCode = 80877102;
inline constexpr std::size_t kMaxStartupPacket = 10000;  // as PostgreSQL's MAX_STARTUP_PACKET_LENGTH

enum class Decode { Message, NeedMore, Error };

// ---- typed messages after startup -------------------------------------------------------
struct Frame {
  char type = 0;
  std::string_view body;     // without type byte and length
  std::size_t wire_size = 0; // 1 + 4 + body.size()
};

struct FrameResult {
  Decode status = Decode::NeedMore;
  Frame frame;
  std::string error;         // set when status == Error
};

bool is_frontend_type(char type);  // messages a client may send after startup
bool is_backend_type(char type);   // messages a server may send

// Decodes one whole frontend message from the front of `data`. A message whose length
// field is below 4, above `max_message`, or whose type is unknown is an Error.
FrameResult decode_frontend(std::string_view data, std::size_t max_message);

// The NUL-terminated string at `pos` of a message body, without copying it; `pos` moves past the
// terminator. Without a terminator: `ok` is set false and the result is empty.
inline std::string_view c_string_at(std::string_view body, std::size_t& pos, bool& ok) {
  const auto nul = body.find('\0', pos);
  if (nul == std::string_view::npos) {
    ok = false;
    return {};
  }
  const auto s = body.substr(pos, nul - pos);
  pos = nul + 1;
  return s;
}
// Why a Query, Parse or FunctionCall body does not have the layout the protocol gives it (a string
// without its terminator, bytes after the last field, counts that do not match), or a Flush or Sync
// has a body at all, or empty when it does. The proxy ends the session with 08P01 "invalid message
// format" for these.
std::string malformed_statement_message(char type, std::string_view body);

// Same for backend messages (used during startup, where whole messages are needed).
FrameResult decode_backend(std::string_view data, std::size_t max_message);

// ---- startup packets (no type byte) -------------------------------------------------------
struct SSLRequest {};
struct GSSENCRequest {};
struct CancelRequest {
  std::uint32_t process_id = 0;
  std::uint32_t secret_key = 0;
};
struct StartupMessage {
  std::uint16_t major = 3;
  std::uint16_t minor = 0;
  std::vector<std::pair<std::string, std::string>> parameters;
  const std::string* find(std::string_view name) const;
};
using StartupPacket = std::variant<SSLRequest, GSSENCRequest, CancelRequest, StartupMessage>;

struct StartupResult {
  Decode status = Decode::NeedMore;
  StartupPacket packet;
  std::size_t consumed = 0;
  std::string error;
  std::string sqlstate = "08P01";  // of `error`: 0A000 for a protocol version the proxy does not speak
};
StartupResult decode_startup(std::string_view data, std::size_t max_packet = kMaxStartupPacket);

// ---- backend messages the proxy reads itself -----------------------------------------------
struct Authentication {          // 'R'
  std::uint32_t code = 0;        // 0 ok, 3 cleartext, 5 md5, 10 SASL, 11 continue, 12 final
  std::string_view data;         // salt / SASL payload / mechanism list
};
std::optional<Authentication> parse_authentication(std::string_view body);

struct BackendKeyData {          // 'K'
  std::uint32_t process_id = 0;
  std::uint32_t secret_key = 0;
};
std::optional<BackendKeyData> parse_backend_key_data(std::string_view body);

struct ParameterStatus {         // 'S'
  std::string_view name, value;
};
std::optional<ParameterStatus> parse_parameter_status(std::string_view body);

// ErrorResponse / NoticeResponse fields.
struct ErrorFields {
  std::string severity = "ERROR";
  std::string sqlstate = "XX000";
  std::string message;
  std::string detail;
  std::string hint;
  int position = 0;  // 'P': 1-based character of the statement text the error is at; 0: none
};
std::optional<ErrorFields> parse_error_fields(std::string_view body);
// An ErrorResponse/NoticeResponse body with its position field ('P') moved `shift` characters
// back (a statement text the server saw behind a prefix of that many ASCII characters); a
// position inside the prefix is dropped. Every other field is kept as it is. nullopt: malformed.
std::optional<std::string> shift_error_position(std::string_view body, std::size_t shift);
// The fields of the first bytes of a longer ErrorResponse (a kept prefix): those before the cut,
// the message cut short ending in "..." (severity "" and SQLSTATE "" when cut off).
ErrorFields parse_error_prefix(std::string_view prefix);

// SASL mechanism names listed in AuthenticationSASL.
std::vector<std::string_view> parse_sasl_mechanisms(std::string_view data);

// PasswordMessage / SASLInitialResponse / SASLResponse bodies (frontend 'p').
struct SASLInitialResponse {
  std::string_view mechanism;
  std::string_view data;
};
std::optional<SASLInitialResponse> parse_sasl_initial_response(std::string_view body);

// ---- scanning a stream without buffering bodies --------------------------------------------
// Follows message boundaries in a relayed byte stream chunk by chunk. Bodies are never
// copied, so a 1 GB DataRow costs nothing. Reports each message header; ReadyForQuery is
// reported once its status byte is seen.
struct ScanEvent {
  char type = 0;
  std::uint32_t length = 0;  // length field (includes itself)
  char status = 0;           // ReadyForQuery transaction status ('I', 'T', 'E')
  std::uint32_t body_offset = 0;  // where the body starts in the chunk given to scan()
};

class StreamScanner {
 public:
  explicit StreamScanner(bool (*valid_type)(char)) : valid_(valid_type) {}
  // Calls on_event(const ScanEvent&) for each message. Returns false on a protocol error.
  template <class F>
  bool scan(std::string_view chunk, F&& on_event);
  bool at_boundary() const { return header_len_ == 0 && remaining_ == 0 && !want_status_; }
  // How many more bytes to feed before the current message, or its header, is complete; feeding
  // exactly that much repeatedly reaches a boundary without reading into the next message.
  std::uint64_t until_boundary() const {
    if (want_status_) return remaining_;
    if (header_len_ > 0) return 5u - header_len_;
    return remaining_;
  }

 private:
  bool (*valid_)(char);
  char header_[5] = {};
  std::uint8_t header_len_ = 0;
  std::uint64_t remaining_ = 0;
  bool want_status_ = false;
  ScanEvent pending_;
};

// ---- encoders ---------------------------------------------------------------------------
// Each appends one complete message to `out`.
void write_message(std::string& out, char type, std::string_view body);  // any typed message
void write_error_response(std::string& out, const ErrorFields& e);
void write_notice_response(std::string& out, const ErrorFields& e);
void write_authentication(std::string& out, std::uint32_t code, std::string_view data = {});
void write_authentication_sasl(std::string& out, const std::vector<std::string>& mechanisms);
void write_backend_key_data(std::string& out, BackendKeyData k);
void write_parameter_status(std::string& out, std::string_view name, std::string_view value);
void write_ready_for_query(std::string& out, char status);
// newest: the newest protocol version the server speaks, as PostgreSQL sends it (major << 16 | minor).
void write_negotiate_protocol_version(std::string& out, std::uint32_t newest,
                                      const std::vector<std::string>& unrecognized);
void write_startup_message(std::string& out, const std::vector<std::pair<std::string, std::string>>& params);
void write_ssl_request(std::string& out);
void write_cancel_request(std::string& out, CancelRequest c);
void write_password_message(std::string& out, std::string_view password);  // NUL-terminated
void write_sasl_initial_response(std::string& out, std::string_view mechanism, std::string_view data);
void write_sasl_response(std::string& out, std::string_view data);
void write_terminate(std::string& out);
void write_query(std::string& out, std::string_view sql);

// Convenience for the common FATAL case.
inline ErrorFields fatal(std::string sqlstate, std::string message, std::string hint = {}) {
  ErrorFields e;
  e.severity = "FATAL";
  e.sqlstate = std::move(sqlstate);
  e.message = std::move(message);
  e.hint = std::move(hint);
  return e;
}

// ---- template implementation -------------------------------------------------------------
template <class F>
bool StreamScanner::scan(std::string_view chunk, F&& on_event) {
  const char* p = chunk.data();
  const char* end = p + chunk.size();
  while (p < end) {
    if (want_status_) {
      pending_.status = *p;
      want_status_ = false;
      on_event(static_cast<const ScanEvent&>(pending_));
      ++p;
      remaining_ -= 1;
      continue;
    }
    if (remaining_ > 0) {
      const std::uint64_t take = std::min<std::uint64_t>(remaining_, std::uint64_t(end - p));
      p += take;
      remaining_ -= take;
      continue;
    }
    // header
    while (header_len_ < 5 && p < end) header_[header_len_++] = *p++;
    if (header_len_ < 5) return true;
    header_len_ = 0;
    const auto* u = reinterpret_cast<const unsigned char*>(header_);
    const std::uint32_t len = (std::uint32_t(u[1]) << 24) | (std::uint32_t(u[2]) << 16) |
                              (std::uint32_t(u[3]) << 8) | std::uint32_t(u[4]);
    if (len < 4 || len > 0x40000000u || !valid_(header_[0])) return false;
    pending_ = ScanEvent{header_[0], len, 0, std::uint32_t(p - chunk.data())};
    remaining_ = len - 4;
    if (header_[0] == 'Z') {
      if (len != 5) return false;
      want_status_ = true;
    } else {
      on_event(static_cast<const ScanEvent&>(pending_));
    }
  }
  return true;
}

}  // namespace gh::protocol
