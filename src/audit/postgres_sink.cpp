// Placeholder until the PostgreSQL sink lands (being written now): configuring it fails clearly.
#include "audit/sink.h"

namespace gh::audit {
Result<std::unique_ptr<AuditSink>> open_postgres_sink(const std::string&, const std::string&) {
  return fail("", "the postgres audit sink is not built yet");
}
}  // namespace gh::audit
