#include "approvals/approvals.h"

namespace gh::approvals {

Person person_of(const identity::Identity& id) {
  Person p;
  p.subject = id.principal();  // unique across issuers: approvals and grants are matched by it
  p.email = id.email;
  p.groups = id.groups;
  p.kind = id.kind == identity::Kind::Agent ? "agent" : "human";
  return p;
}

}  // namespace gh::approvals
