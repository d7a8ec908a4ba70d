#pragma once
// Installs the /api/v1 routes (docs/api.md) on the admin server. Internal to `admin`.
namespace httplib {
class Server;
}

namespace gh::admin {

struct Hooks;

// `hooks` must outlive `server`.
void install_api_v1(httplib::Server& server, const Hooks& hooks);
// JSON bodies {"error","message"} for errors the HTTP library answers itself (404 of unknown
// paths, 413 payload too large, 400 unparsable requests).
// Those on /api paths are recorded (hooks.on_action, action "api.refused"); `hooks` must outlive `server`.
void install_error_bodies(httplib::Server& server, const Hooks& hooks);
// Refuses (400) a request whose path is percent-encoded, before any route sees it.
void refuse_encoded_paths(httplib::Server& server, const Hooks& hooks);

}  // namespace gh::admin
