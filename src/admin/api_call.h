#pragma once
// One /api/v1 call as its handlers see it, and the helpers they share (api_v1.cpp, api_console.cpp).
// Internal to `admin`.
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "admin/admin_server.h"

namespace gh::admin::api {

using nlohmann::json;

struct Call {
  const httplib::Request& req;
  httplib::Response& res;
  const Hooks& h;
  identity::Identity who;
  Roles roles;
  Action act;
  std::string console_session;  // set: authenticated by the console's session cookie (not a bearer token)
};

void reply(Call& c, int status, const json& body);
// Errors are {"error": code, "message": what to do about it}.
void reply_error(Call& c, int status, std::string_view code, const std::string& message);
// 403 unless the caller's roles allow `p`.
bool require(Call& c, Permission p);
approvals::Service* service(Call& c);  // 503 when approvals are off
std::string public_url(const Call& c);
// The request body as a JSON object (empty body: {}); nullopt when answered with 400/415.
std::optional<json> body_object(Call& c);
bool only_members(Call& c, const json& body, std::initializer_list<std::string_view> allowed);
std::optional<std::string> string_member(Call& c, const json& body, const char* key, bool required);
std::string query_encode(std::string_view s);

using Handler = void (*)(Call&);
// Installs `fn` at `pattern`: authentication (bearer token or console cookie + CSRF), the audit
// record of the call (`action`), exceptions turned into 500.
void route(httplib::Server& s, bool post, const std::string& pattern, const char* action, const Hooks& h, Handler fn);

// The console's additions (api_console.cpp): live sessions, audit record/export/verify, stats.
void install_console_api(httplib::Server& s, const Hooks& h);
// Ends the open live-update streams within a second (before the server stops: each holds a thread).
void stop_event_streams();

}  // namespace gh::admin::api
