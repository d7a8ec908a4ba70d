#pragma once
// A person for approvals unit tests (the requester or a reviewer).
#include <string>
#include <utility>
#include <vector>

#include "approvals/approvals.h"

namespace gh::approvals::test {

inline Person person(std::string subject, std::string email, std::vector<std::string> groups) {
  Person p;
  p.subject = std::move(subject);
  p.email = std::move(email);
  p.groups = std::move(groups);
  return p;
}

}  // namespace gh::approvals::test
