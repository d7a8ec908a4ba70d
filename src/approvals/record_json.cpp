#include "approvals/record_json.h"

#include <nlohmann/json.hpp>

namespace gh::approvals {

namespace {

using Json = nlohmann::json;

Json person_json(const Person& p) {
  return Json{{"subject", p.subject}, {"email", p.email}, {"groups", p.groups}, {"kind", p.kind}};
}

Person person_from(const Json& j) {
  Person p;
  p.subject = j.at("subject").get<std::string>();
  p.email = j.value("email", std::string());
  p.groups = j.value("groups", std::vector<std::string>());
  p.kind = j.value("kind", std::string("human"));
  return p;
}

Json votes_json(const std::vector<Vote>& votes) {
  Json a = Json::array();
  for (const auto& v : votes)
    a.push_back(Json{{"reviewer", person_json(v.reviewer)},
                     {"approve", v.approve},
                     {"comment", v.comment},
                     {"time_us", v.time_us},
                     {"break_glass", v.break_glass}});
  return a;
}

std::vector<Vote> votes_from(const Json& j) {
  std::vector<Vote> out;
  for (const auto& x : j) {
    Vote v;
    v.reviewer = person_from(x.at("reviewer"));
    v.approve = x.at("approve").get<bool>();
    v.comment = x.value("comment", std::string());
    v.time_us = x.value("time_us", TimeUs{0});
    v.break_glass = x.value("break_glass", false);
    out.push_back(std::move(v));
  }
  return out;
}

State state_from(const Json& j) {
  auto s = parse_state(j.get<std::string>());
  if (!s) throw std::invalid_argument("unknown state \"" + j.get<std::string>() + "\"");
  return *s;
}

std::string id_of(const Json& j) {
  auto it = j.find("id");
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string("?");
}

std::string dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

}  // namespace

std::string encode_request(const Request& r) {
  Json params = Json::array();
  for (const auto& p : r.parameters) params.push_back(p ? Json(*p) : Json(nullptr));
  return dump(Json{{"id", r.id},
                   {"state", state_name(r.state)},
                   {"requester", person_json(r.requester)},
                   {"target", r.target},
                   {"environment", r.environment},
                   {"database", r.database},
                   {"statement", r.statement},
                   {"parameters", std::move(params)},
                   {"fingerprint", r.fingerprint},
                   {"match_key", r.match_key},
                   {"rule", r.rule},
                   {"reason", r.reason},
                   {"justification", r.justification},
                   {"reviewer_groups", r.reviewer_groups},
                   {"approvals_required", r.approvals_required},
                   {"votes", votes_json(r.votes)},
                   {"created_us", r.created_us},
                   {"decided_us", r.decided_us},
                   {"rerun_until_us", r.rerun_until_us},
                   {"node", r.node},
                   {"waiting", r.waiting},
                   {"closed_reason", r.closed_reason},
                   {"tables", r.tables},
                   {"sensitive_columns", r.sensitive_columns},
                   {"row_estimate", r.row_estimate}});
}

std::string encode_access(const AccessRequest& a) {
  return dump(Json{{"id", a.id},
                   {"state", state_name(a.state)},
                   {"requester", person_json(a.requester)},
                   {"target", a.target},
                   {"role", a.role},
                   {"reason", a.reason},
                   {"duration_s", a.duration_s},
                   {"reviewer_groups", a.reviewer_groups},
                   {"approvals_required", a.approvals_required},
                   {"votes", votes_json(a.votes)},
                   {"created_us", a.created_us},
                   {"decided_us", a.decided_us},
                   {"expires_us", a.expires_us},
                   {"revoked_by", a.revoked_by},
                   {"revoke_reason", a.revoke_reason},
                   {"revoked_us", a.revoked_us}});
}

// Stored records are our own, but the file may be damaged or edited: a bad record is an error
// value naming it, never an exception out of the store.
Result<Request> decode_request(std::string_view text) {
  auto j = Json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return fail("XX000", "a stored approval request is not valid JSON");
  try {
    Request r;
    r.id = j.at("id").get<std::string>();
    r.state = state_from(j.at("state"));
    r.requester = person_from(j.at("requester"));
    r.target = j.value("target", std::string());
    r.environment = j.value("environment", std::string());
    r.database = j.value("database", std::string());
    r.statement = j.value("statement", std::string());
    for (const auto& p : j.value("parameters", Json::array()))
      r.parameters.push_back(p.is_null() ? std::nullopt : std::optional<std::string>(p.get<std::string>()));
    r.fingerprint = j.value("fingerprint", std::string());
    r.match_key = j.value("match_key", std::string());
    r.rule = j.value("rule", std::string());
    r.reason = j.value("reason", std::string());
    r.justification = j.value("justification", std::string());
    r.reviewer_groups = j.value("reviewer_groups", std::vector<std::string>());
    r.approvals_required = j.value("approvals_required", 1);
    r.votes = votes_from(j.value("votes", Json::array()));
    r.created_us = j.value("created_us", TimeUs{0});
    r.decided_us = j.value("decided_us", TimeUs{0});
    r.rerun_until_us = j.value("rerun_until_us", TimeUs{0});
    r.node = j.value("node", std::string());
    r.waiting = j.value("waiting", false);
    r.closed_reason = j.value("closed_reason", std::string());
    r.tables = j.value("tables", std::vector<std::string>());  // absent in records stored before they existed
    r.sensitive_columns = j.value("sensitive_columns", std::vector<std::string>());
    r.row_estimate = j.value("row_estimate", std::int64_t{-1});
    return r;
  } catch (const std::exception& e) {
    return fail("XX000", "stored approval request " + id_of(j) + " is damaged: " + e.what());
  }
}

Result<AccessRequest> decode_access(std::string_view text) {
  auto j = Json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return fail("XX000", "a stored access request is not valid JSON");
  try {
    AccessRequest a;
    a.id = j.at("id").get<std::string>();
    a.state = state_from(j.at("state"));
    a.requester = person_from(j.at("requester"));
    a.target = j.value("target", std::string());
    a.role = j.value("role", std::string());
    a.reason = j.value("reason", std::string());
    a.duration_s = j.value("duration_s", std::int64_t{0});
    a.reviewer_groups = j.value("reviewer_groups", std::vector<std::string>());
    a.approvals_required = j.value("approvals_required", 1);
    a.votes = votes_from(j.value("votes", Json::array()));
    a.created_us = j.value("created_us", TimeUs{0});
    a.decided_us = j.value("decided_us", TimeUs{0});
    a.expires_us = j.value("expires_us", TimeUs{0});
    a.revoked_by = j.value("revoked_by", std::string());
    a.revoke_reason = j.value("revoke_reason", std::string());
    a.revoked_us = j.value("revoked_us", TimeUs{0});
    return a;
  } catch (const std::exception& e) {
    return fail("XX000", "stored access request " + id_of(j) + " is damaged: " + e.what());
  }
}

}  // namespace gh::approvals
