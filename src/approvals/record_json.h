#pragma once
// Requests and access requests as JSON text: how stores keep a whole record in one column.
// Invalid UTF-8 in a statement or parameter is stored as U+FFFD (JSON text must be UTF-8); the
// match key is computed from the original bytes before storing, so re-runs still match.
#include <string>
#include <string_view>

#include "approvals/approvals.h"

namespace gh::approvals {

std::string encode_request(const Request& r);
std::string encode_access(const AccessRequest& a);
Result<Request> decode_request(std::string_view text);
Result<AccessRequest> decode_access(std::string_view text);

}  // namespace gh::approvals
