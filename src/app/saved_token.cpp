#include "app/saved_token.h"

#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "identity/jose.h"

namespace gh::app {

using nlohmann::json;

std::string default_token_file() {
  if (const char* x = std::getenv("GATEHOUSE_TOKEN_FILE"); x && *x) return x;
  std::string dir;
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x && *x)
    dir = x;
  else if (const char* h = std::getenv("HOME"); h && *h)
    dir = std::string(h) + "/.config";
  else
    dir = ".";
  return dir + "/gatehouse/token.json";
}

Result<json> load_saved_token(const std::string& path) {
  std::ifstream in(path);
  if (!in) return fail("", "no saved token at " + path + "; run `gatehouse login` (people) or `gatehouse token` (agents)");
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = json::parse(ss.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return fail("", path + " is not a saved token (JSON)");
  return j;
}

std::string login_token(const json& saved) {
  const std::string at = saved.value("access_token", "");
  if (identity::jose::split_compact(at)) return at;
  return saved.value("id_token", "");
}

json unverified_claims(const std::string& token) {
  auto jws = identity::jose::split_compact(token);
  if (!jws) return json::object();
  auto j = json::parse(jws->payload_json, nullptr, false);
  return j.is_object() ? j : json::object();
}

std::string utc(std::int64_t t) {
  std::time_t tt = t;
  std::tm tm{};
  gmtime_r(&tt, &tm);
  return fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec);
}

}  // namespace gh::app
