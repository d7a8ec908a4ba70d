#include "protocol/startup_settings.h"

#include <cctype>

namespace gh::protocol {

namespace {
std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}
}  // namespace

std::vector<std::string> split_startup_options(std::string_view options) {
  std::vector<std::string> out;
  std::size_t i = 0;
  const std::size_t n = options.size();
  for (;;) {
    while (i < n && std::isspace(static_cast<unsigned char>(options[i]))) ++i;
    if (i >= n) break;
    std::string arg;
    while (i < n && !std::isspace(static_cast<unsigned char>(options[i]))) {
      if (options[i] == '\\') {
        ++i;
        if (i >= n) break;
      }
      arg.push_back(options[i++]);
    }
    out.push_back(std::move(arg));
  }
  return out;
}

OptionSettings startup_option_settings(std::string_view options) {
  OptionSettings r;
  const auto args = split_startup_options(options);
  auto add = [&](std::string_view assignment, bool dashes) {
    const auto eq = assignment.find('=');
    std::string name = lower(assignment.substr(0, eq));
    if (dashes)
      for (auto& c : name)
        if (c == '-') c = '_';
    r.names.push_back(std::move(name));
  };
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-c") {
      if (i + 1 >= args.size()) {
        r.error = "options: -c needs a name=value after it";
        return r;
      }
      add(args[++i], false);
    } else if (a.rfind("-c", 0) == 0) {
      add(std::string_view(a).substr(2), false);
    } else if (a.rfind("--", 0) == 0 && a.size() > 2) {
      add(std::string_view(a).substr(2), true);
    } else {
      r.error = "options: \"" + a.substr(0, 64) +
                "\" is not accepted through Gatehouse; only settings (-c name=value or --name=value) are";
      return r;
    }
  }
  return r;
}

std::string startup_setting_name(std::string_view name) {
  std::string l = lower(name);
  for (char& c : l)
    if (c == '-') c = '_';
  return l;
}

std::optional<std::string> forbidden_startup_setting(std::string_view name) {
  // PostgreSQL reads '-' as '_' in option names (-c session-authorization=x); found by
  // adversarial testing.
  const std::string l = startup_setting_name(name);
  if (l.rfind("gatehouse.", 0) == 0)
    return "setting \"" + std::string(name.substr(0, 64)) +
           "\" cannot be set by clients: gatehouse.* settings are set by the proxy from your verified identity";
  if (l == "role" || l == "session_authorization")
    return "setting \"" + std::string(name.substr(0, 64)) +
           "\" cannot be set at connection: the database role is the target's login (SET ROLE is checked by "
           "guardrail.privileges)";
  // Replica mode turns off triggers and foreign keys; SET of it is checked by guardrail.privileges,
  // which a connection option would go around (found by adversarial testing).
  if (l == "session_replication_role")
    return "setting \"" + std::string(name.substr(0, 64)) +
           "\" cannot be set at connection: SET it in the session, where guardrail.privileges checks it";
  return std::nullopt;
}

}  // namespace gh::protocol
