#include "audit/record.h"

#include <array>
#include <ctime>

#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include "audit/event.h"

namespace gh::audit {

namespace {

using nlohmann::json;

constexpr std::array<std::string_view, 13> kTypeNames = {
    "start", "stop", "reload", "connect", "connect_failed", "disconnect", "statement",
    "result", "admin", "approval", "grant", "retention", "checkpoint"};

bool raw_from_hex(std::string_view hex_text, unsigned char* out, std::size_t n) {
  if (hex_text.size() != n * 2) return false;
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < n; ++i) {
    const int hi = val(hex_text[2 * i]), lo = val(hex_text[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  return true;
}

std::string rfc3339(std::int64_t us) {
  const std::time_t secs = static_cast<std::time_t>(us / 1'000'000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, int(us % 1'000'000));
  return buf;
}

using policy::action_name;

std::string relation_name(const sql::Relation& r) { return r.schema.empty() ? r.name : r.schema + "." + r.name; }

// Cut at a UTF-8 boundary no later than `max` bytes.
std::string_view cut(std::string_view s, std::size_t max) {
  if (s.size() <= max) return s;
  std::size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

void put_text(json& j, const char* key, std::string_view text, std::size_t max) {
  if (text.size() <= max) {
    j[key] = text;
    return;
  }
  j[key] = cut(text, max);
  j[std::string(key) + "_length"] = text.size();
  j[std::string(key) + "_sha256"] = sha256_hex(text);
}

json statement_json(const Event& e, const SealOptions& o, std::vector<std::string>& tags) {
  json s = json::object();
  s["protocol"] = std::string(1, e.protocol ? e.protocol : '?');
  if (e.analysis && !e.analysis->error) {
    std::string text;
    json stmts = json::array();
    for (const auto& st : e.analysis->statements) {
      if (!text.empty()) text += "; ";
      text += st.text;
      json one = json::object();
      json kinds = json::array();
      for (auto k : st.kinds) kinds.push_back(sql::kind_name(k));
      one["kinds"] = std::move(kinds);
      json rels = json::array();
      for (const auto& r : st.relations) rels.push_back(relation_name(r));
      one["relations"] = std::move(rels);
      if (!st.functions.empty()) one["functions"] = st.functions;
      put_text(one, "normalized", st.normalized, o.max_text);
      char fp[17];
      std::snprintf(fp, sizeof fp, "%016llx", static_cast<unsigned long long>(st.fingerprint));
      one["fingerprint"] = fp;
      stmts.push_back(std::move(one));
    }
    put_text(s, "text", e.text.empty() ? std::string_view(text) : std::string_view(e.text), o.max_text);
    s["statements"] = std::move(stmts);
  } else {
    put_text(s, "text", e.text, o.max_text);
    if (e.analysis && e.analysis->error) s["parse_error"] = e.analysis->error->message;
  }
  if (e.policy && e.analysis && !e.analysis->error) tags = e.policy->touched_tags(*e.analysis);
  if (!tags.empty()) s["tags"] = tags;
  if (!e.params.empty() && o.params != SealOptions::Params::None) {
    // Values of statements that touch classified columns are not kept (which parameter feeds
    // which column is not known for every statement shape): only their size.
    const bool mask = o.params == SealOptions::Params::Masked && !tags.empty();
    json ps = json::array();
    for (const auto& p : e.params) {
      if (!p) {
        ps.push_back(nullptr);
      } else if (mask) {
        ps.push_back("<masked " + std::to_string(p->size()) + " bytes>");
      } else {
        ps.push_back(cut(*p, 1024));
      }
    }
    s["params"] = std::move(ps);
  }
  if (e.decision) {
    const auto& d = *e.decision;
    json dj = json::object();
    dj["action"] = action_name(d.action);
    dj["rule"] = d.rule;
    if (!d.reason.empty()) dj["reason"] = d.reason;
    if (!d.matched_rules.empty()) dj["matched_rules"] = d.matched_rules;
    if (!d.mask_tags.empty()) dj["mask_tags"] = d.mask_tags;
    if (!d.would_have.empty()) {
      json w = json::array();
      for (const auto& x : d.would_have) {
        json one = json::object();
        one["rule"] = x.rule;
        one["action"] = action_name(x.action);
        one["reason"] = x.reason;
        w.push_back(std::move(one));
      }
      dj["audit_only"] = std::move(w);
    }
    s["decision"] = std::move(dj);
  }
  return s;
}

std::string joined(const json& arr) {
  if (!arr.is_array() || arr.empty()) return {};
  std::string out = ",";
  for (const auto& v : arr)
    if (v.is_string()) out += v.get<std::string>() + ",";
  return out;
}

std::string str_at(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::int64_t int_at(const json& j, const char* key, std::int64_t dflt) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<std::int64_t>() : dflt;
}

}  // namespace

std::string_view type_name(EventType t) { return kTypeNames[static_cast<std::size_t>(t)]; }

std::optional<EventType> type_from_name(std::string_view name) {
  for (std::size_t i = 0; i < kTypeNames.size(); ++i)
    if (kTypeNames[i] == name) return static_cast<EventType>(i);
  return std::nullopt;
}

std::string hex(std::string_view raw) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(raw.size() * 2, '0');
  for (std::size_t i = 0; i < raw.size(); ++i) {
    out[2 * i] = digits[static_cast<unsigned char>(raw[i]) >> 4];
    out[2 * i + 1] = digits[static_cast<unsigned char>(raw[i]) & 15];
  }
  return out;
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  return hex(std::string_view(reinterpret_cast<const char*>(md), n));
}

std::string chain_hash(std::string_view prev_hex, std::string_view body) {
  unsigned char prev[32];
  if (!raw_from_hex(prev_hex, prev, sizeof prev)) return {};
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  EVP_DigestUpdate(ctx, prev, sizeof prev);
  EVP_DigestUpdate(ctx, body.data(), body.size());
  EVP_DigestFinal_ex(ctx, md, &n);
  EVP_MD_CTX_free(ctx);
  return hex(std::string_view(reinterpret_cast<const char*>(md), n));
}

Record seal(const Event& e, ChainHead& head, const SealOptions& o) {
  json j = json::object();
  const std::int64_t us =
      std::chrono::duration_cast<std::chrono::microseconds>(e.time.time_since_epoch()).count();
  j["v"] = 1;
  j["seq"] = head.seq + 1;
  j["prev"] = head.hash;
  j["time"] = rfc3339(us);
  j["time_us"] = us;
  j["type"] = type_name(e.type);
  j["node"] = o.node;
  if (e.session) {
    const auto& s = *e.session;
    j["session"] = s.session;
    json who = json::object();
    who["subject"] = s.identity.subject;
    who["email"] = s.identity.email;
    if (!s.identity.display_name.empty()) who["name"] = s.identity.display_name;
    who["groups"] = s.identity.groups;
    who["kind"] = s.identity.kind == identity::Kind::Agent ? "agent" : "human";
    if (!s.identity.method.empty()) who["method"] = s.identity.method;
    if (!s.user.empty()) who["user"] = s.user;
    j["identity"] = std::move(who);
    j["client"] = s.client_address;
    if (!s.target.empty()) j["target"] = s.target;
    if (!s.environment.empty()) j["environment"] = s.environment;
    if (!s.database.empty()) j["database"] = s.database;
    if (!s.application_name.empty()) j["application_name"] = s.application_name;
  }
  if (e.statement) j["statement"] = e.statement;
  std::vector<std::string> tags;
  if (e.type == EventType::Statement) j["sql"] = statement_json(e, o, tags);
  if (!e.outcome.empty()) j["outcome"] = e.outcome;
  if (!e.sqlstate.empty()) j["sqlstate"] = e.sqlstate;
  if (!e.message.empty()) put_text(j, "message", e.message, o.max_text);
  if (e.rows >= 0) j["rows"] = e.rows;
  if (e.duration_us >= 0) j["duration_us"] = e.duration_us;
  if (!e.fields.empty()) {
    json f = json::object();
    for (const auto& [k, v] : e.fields) f[k] = v;
    j["fields"] = std::move(f);
  }
  Record r;
  r.seq = head.seq + 1;
  r.prev = head.hash;
  r.body = j.dump(-1, ' ', false, json::error_handler_t::replace);
  r.hash = chain_hash(r.prev, r.body);
  auto idx = index_of(r.body);
  if (idx) r.index = std::move(*idx);
  head.seq = r.seq;
  head.hash = r.hash;
  return r;
}

Result<RecordIndex> index_of(std::string_view body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return fail("", "record body is not a JSON object");
  RecordIndex x;
  x.time = str_at(j, "time");
  x.time_us = int_at(j, "time_us", 0);
  x.type = str_at(j, "type");
  x.node = str_at(j, "node");
  x.session = int_at(j, "session", 0);
  x.statement = int_at(j, "statement", 0);
  if (auto it = j.find("identity"); it != j.end() && it->is_object()) {
    x.subject = str_at(*it, "subject");
    x.email = str_at(*it, "email");
    if (auto g = it->find("groups"); g != it->end()) x.groups = joined(*g);
    x.kind = str_at(*it, "kind");
  }
  x.client = str_at(j, "client");
  x.target = str_at(j, "target");
  x.environment = str_at(j, "environment");
  x.database = str_at(j, "database");
  x.outcome = str_at(j, "outcome");
  x.sqlstate = str_at(j, "sqlstate");
  x.rows = int_at(j, "rows", -1);
  x.duration_us = int_at(j, "duration_us", -1);
  x.text = str_at(j, "message");
  if (auto it = j.find("sql"); it != j.end() && it->is_object()) {
    const auto& s = *it;
    x.text = str_at(s, "text");
    if (auto st = s.find("statements"); st != s.end() && st->is_array()) {
      json kinds = json::array(), rels = json::array();
      for (const auto& one : *st) {
        if (auto k = one.find("kinds"); k != one.end() && k->is_array())
          for (const auto& v : *k)
            if (std::find(kinds.begin(), kinds.end(), v) == kinds.end()) kinds.push_back(v);
        if (auto r = one.find("relations"); r != one.end() && r->is_array())
          for (const auto& v : *r)
            if (std::find(rels.begin(), rels.end(), v) == rels.end()) rels.push_back(v);
      }
      x.kinds = joined(kinds);
      x.relations = joined(rels);
    }
    if (auto t = s.find("tags"); t != s.end()) x.tags = joined(*t);
    if (auto d = s.find("decision"); d != s.end() && d->is_object()) {
      x.decision = str_at(*d, "action");
      x.rule = str_at(*d, "rule");
    }
  }
  return x;
}

}  // namespace gh::audit
