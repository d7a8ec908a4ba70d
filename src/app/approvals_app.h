#pragma once
// The approval service of a running proxy: its store from `approvals.store`, its settings from
// the configuration, every change of a request or grant recorded in the audit trail, and
// notifications to `approvals.webhooks` (approvals/webhooks.h).
#include <memory>

#include "approvals/approvals.h"

namespace gh::audit {
class Trail;
}
namespace gh::config {
struct Config;
}

namespace gh::app {

Result<std::unique_ptr<approvals::Service>> open_approvals(const config::Config& cfg, audit::Trail* trail,
                                                           const std::string& node);

}  // namespace gh::app
