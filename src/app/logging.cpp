#include "app/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace gh::app {

namespace {
// %j: the message as a JSON string body (escaped).
class JsonEscapedMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    for (char c : std::string_view(msg.payload.data(), msg.payload.size())) {
      switch (c) {
        case '"': dest.append(std::string_view("\\\"")); break;
        case '\\': dest.append(std::string_view("\\\\")); break;
        case '\n': dest.append(std::string_view("\\n")); break;
        case '\r': dest.append(std::string_view("\\r")); break;
        case '\t': dest.append(std::string_view("\\t")); break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char b[8];
            std::snprintf(b, sizeof b, "\\u%04x", c);
            dest.append(std::string_view(b));
          } else {
            dest.push_back(c);
          }
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JsonEscapedMessage>(); }
};

// %q: the message with control characters escaped (\n, \x1b, ...), so text a client sent (a user
// name, an application_name) cannot forge log lines or send terminal escapes to whoever reads
// the log. A backslash is doubled, so an escape in the log always came from this formatter.
class TextEscapedMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    for (char c : std::string_view(msg.payload.data(), msg.payload.size())) {
      const auto u = static_cast<unsigned char>(c);
      if (c == '\\') {
        dest.append(std::string_view("\\\\"));
      } else if (c == '\n') {
        dest.append(std::string_view("\\n"));
      } else if (c == '\r') {
        dest.append(std::string_view("\\r"));
      } else if (c == '\t') {
        dest.append(std::string_view("\\t"));
      } else if (u < 0x20 || u == 0x7f) {
        static constexpr char digits[] = "0123456789abcdef";
        const char b[4] = {'\\', 'x', digits[u >> 4], digits[u & 15]};
        dest.append(std::string_view(b, 4));
      } else {
        dest.push_back(c);
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<TextEscapedMessage>(); }
};
}  // namespace

void set_level(const std::string& level) { spdlog::set_level(spdlog::level::from_str(level)); }

void setup_logging(const config::Log& log) {
  auto logger = spdlog::stderr_logger_mt("gatehouse");
  spdlog::set_default_logger(logger);
  if (log.format == "json") {
    auto f = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    f->add_flag<JsonEscapedMessage>('j');
    f->set_pattern(R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","thread":%t,"msg":"%j"})");
    spdlog::set_formatter(std::move(f));
  } else {
    auto f = std::make_unique<spdlog::pattern_formatter>();
    f->add_flag<TextEscapedMessage>('q');
    f->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ %q");
    spdlog::set_formatter(std::move(f));
  }
  set_level(log.level);
  spdlog::flush_on(spdlog::level::info);
}

}  // namespace gh::app
