#pragma once
// The web console's pages on the admin server (docs/console.md): the built front end under
// /console/, the OpenID Connect sign-in (authorization code + PKCE) at /console/login and
// /console/callback, /console/logout, and the redirect of /approvals/{id} links. Internal to `admin`.
namespace httplib {
class Server;
}

namespace gh::admin {

struct Hooks;

// `hooks` (and its console_sessions) must outlive `server`.
void install_console(httplib::Server& server, const Hooks& hooks);

// The security headers of every console answer (CSP without inline script, nosniff, no framing).
inline constexpr const char* kConsoleCsp =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

}  // namespace gh::admin
