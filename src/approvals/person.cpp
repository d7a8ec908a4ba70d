#include "approvals/approvals.h"

namespace gh::approvals {

Person person_of(const identity::Identity& id) {
  Person p;
  p.subject = id.subject;
  p.email = id.email;
  p.groups = id.groups;
  p.kind = id.kind == identity::Kind::Agent ? "agent" : "human";
  return p;
}

}  // namespace gh::approvals
