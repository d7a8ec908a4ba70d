#pragma once
// What `serve` hands the admin plane: the approvals service it opens from the configuration,
// and the hooks (metrics, health, bearer-token checks with the running configuration's OIDC
// issuers, API roles, the audit record of every admin action).
#include <memory>
#include <string>

#include "admin/admin_server.h"
#include "approvals/approvals.h"
#include "base/result.h"

namespace gh {
class Metrics;
}
namespace gh::audit {
class Trail;
}
namespace gh::config {
struct Config;
}
namespace gh::proxy {
class Server;
}

namespace gh::app {

// Hooks reading the server's current runtime on each call, so reloads of oidc, admin.roles and
// admin.public_url apply to the next API call. Everything passed in must outlive the AdminServer.
admin::Hooks admin_hooks(proxy::Server& server, Metrics& metrics, audit::Trail* trail, approvals::Service* approvals,
                         const std::string& audit_store);

}  // namespace gh::app
