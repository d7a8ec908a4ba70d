#include "admin/api_json.h"

#include <cctype>
#include <ctime>

#include <fmt/format.h>

namespace gh::admin {

using nlohmann::json;

std::string rfc3339(approvals::TimeUs t) {
  if (t == 0) return {};
  std::int64_t secs = t / 1000000;
  std::int64_t ms = (t % 1000000) / 1000;
  if (t < 0 && t % 1000000 != 0) {  // floor towards the past
    secs -= 1;
    ms = (t - secs * 1000000) / 1000;
  }
  std::time_t tt = secs;
  std::tm tm{};
  gmtime_r(&tt, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

Result<std::int64_t> parse_grant_duration(const json& v) {
  const std::string bad = "duration: expected a number of seconds or a duration such as \"30m\", \"1h\", \"2d\"";
  if (v.is_number_integer()) {
    const auto n = v.get<std::int64_t>();
    if (n <= 0) return fail("", "duration: must be positive");
    return n;
  }
  if (!v.is_string()) return fail("", bad);
  const auto s = v.get<std::string>();
  std::int64_t total = 0;
  std::size_t i = 0;
  bool any = false;
  while (i < s.size()) {
    std::int64_t n = 0;
    std::size_t digits = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      if (n > 100000000) return fail("", "duration: too long");
      n = n * 10 + (s[i++] - '0');
      ++digits;
    }
    if (digits == 0) return fail("", bad);
    std::int64_t unit = 1;
    if (i < s.size()) {
      switch (s[i++]) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        default: return fail("", bad);
      }
    } else if (any) {
      return fail("", bad);  // "1h30": the last number needs a unit
    }
    total += n * unit;
    any = true;
  }
  if (!any) return fail("", bad);
  if (total <= 0) return fail("", "duration: must be positive");
  return total;
}

std::string format_duration(std::int64_t s) {
  if (s <= 0) return "0s";
  std::string out;
  if (s >= 86400 && s % 3600 == 0 && s % 86400 == 0) return std::to_string(s / 86400) + "d";
  if (s >= 3600) out += std::to_string(s / 3600) + "h", s %= 3600;
  if (s >= 60) out += std::to_string(s / 60) + "m", s %= 60;
  if (s > 0) out += std::to_string(s) + "s";
  return out;
}

json person_json(const approvals::Person& p) {
  return {{"subject", p.subject}, {"email", p.email}, {"groups", p.groups}, {"kind", p.kind},
          {"display_name", p.display()}};
}

json identity_json(const identity::Identity& who, const Roles& roles) {
  const auto exp = std::chrono::duration_cast<std::chrono::microseconds>(who.expires_at.time_since_epoch()).count();
  json j{{"subject", who.subject},
         {"email", who.email},
         {"display_name", who.display_name.empty() ? (who.email.empty() ? who.subject : who.email) : who.display_name},
         {"groups", who.groups},
         {"kind", who.kind == identity::Kind::Agent ? "agent" : "human"},
         {"issuer", who.issuer},
         {"client_id", who.client_id},
         {"roles", json::array()}};
  for (const auto& r : roles) j["roles"].push_back(r);
  j["token_expires"] = exp > 0 ? json(rfc3339(exp)) : json(nullptr);
  j["token_expires_us"] = exp > 0 ? json(exp) : json(nullptr);
  return j;
}

namespace {


json votes_json(const std::vector<approvals::Vote>& votes, bool& break_glass, int& approvals) {
  json out = json::array();
  for (const auto& v : votes) {
    json j{{"reviewer", person_json(v.reviewer)},
           {"reviewer_display", v.reviewer.display()},
           {"decision", v.approve ? "approve" : "reject"},
           {"approve", v.approve},
           {"comment", v.comment},
           {"break_glass", v.break_glass}};
    put_time(j, "time", v.time_us);
    out.push_back(std::move(j));
    break_glass = break_glass || v.break_glass;
    approvals += v.approve ? 1 : 0;
  }
  return out;
}

}  // namespace

json request_json(const approvals::Request& r, const std::string& public_url) {
  bool break_glass = false;
  int approvals = 0;
  json params = json::array();
  for (const auto& p : r.parameters) params.push_back(p ? json(*p) : json(nullptr));
  json j{{"id", r.id},
         {"kind", "statement"},
         {"state", std::string(approvals::state_name(r.state))},
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
         {"node", r.node},
         {"waiting", r.waiting},
         {"closed_reason", r.closed_reason},
         {"tables", r.tables},
         {"sensitive_columns", r.sensitive_columns},
         {"row_estimate", r.row_estimate >= 0 ? json(r.row_estimate) : json(nullptr)}};
  j["votes"] = votes_json(r.votes, break_glass, approvals);
  j["approvals_received"] = approvals;
  j["break_glass"] = break_glass;
  put_time(j, "created", r.created_us);
  put_time(j, "decided", r.decided_us);
  put_time(j, "rerun_until", r.rerun_until_us);
  j["console_url"] = public_url + "/approvals/" + r.id;
  return j;
}

void put_time(json& j, const std::string& name, approvals::TimeUs t) {
  j[name] = t ? json(rfc3339(t)) : json(nullptr);
  j[name + "_us"] = t ? json(t) : json(nullptr);
}

bool grant_active(const approvals::AccessRequest& a, approvals::TimeUs now_us) {
  return a.state == approvals::State::Approved && a.revoked_us == 0 && a.expires_us > now_us;
}

json access_json(const approvals::AccessRequest& a, const std::string& public_url, approvals::TimeUs now_us) {
  bool break_glass = false;
  int approvals = 0;
  json j{{"id", a.id},
         {"kind", "access"},
         {"state", std::string(approvals::state_name(a.state))},
         {"requester", person_json(a.requester)},
         {"target", a.target},
         {"role", a.role},
         {"reason", a.reason},
         {"duration_s", a.duration_s},
         {"duration", format_duration(a.duration_s)},
         {"reviewer_groups", a.reviewer_groups},
         {"approvals_required", a.approvals_required}};
  j["votes"] = votes_json(a.votes, break_glass, approvals);
  j["approvals_received"] = approvals;
  j["break_glass"] = break_glass;
  put_time(j, "created", a.created_us);
  put_time(j, "decided", a.decided_us);
  put_time(j, "expires", a.expires_us);
  j["active"] = grant_active(a, now_us);
  j["revoked_by"] = a.revoked_by;
  j["revoke_reason"] = a.revoke_reason;
  put_time(j, "revoked", a.revoked_us);
  j["console_url"] = public_url + "/approvals/" + a.id;
  return j;
}

bool is_own(const approvals::Person& requester, const identity::Identity& who) {
  if (!who.subject.empty() && requester.subject == who.principal()) return true;
  // The same address from the first issuer (or a static user's, set by the operator): another
  // issuer vouches only for its own users (found by adversarial testing: a second issuer's token
  // claiming alice's email read and revoked her requests and grants).
  if (who.qualified || requester.subject.find('#') != std::string::npos) return false;
  if (who.email.empty() || requester.email.size() != who.email.size()) return false;
  for (std::size_t i = 0; i < who.email.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(who.email[i])) !=
        std::tolower(static_cast<unsigned char>(requester.email[i])))
      return false;
  return true;
}

}  // namespace gh::admin
