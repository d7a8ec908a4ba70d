#pragma once
// Small RAII and text helpers for libpq, shared by the PostgreSQL stores (audit sink,
// approvals). Users link libpq themselves.
#include <libpq-fe.h>

#include <algorithm>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace gh::store::pg {

struct ConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Conn = std::unique_ptr<PGconn, ConnDeleter>;
using Res = std::unique_ptr<PGresult, ResultDeleter>;

// libpq messages span lines and indent with tabs; logs and ErrorResponses want one line.
inline std::string one_line(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\n' || c == '\t' || c == '\r') c = ' ';
    if (c != ' ' || (!out.empty() && out.back() != ' ')) out += c;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// Connection parameters parsed once with libpq's parser (its messages quote keywords, never a
// password), with the defaults every Gatehouse store wants: a store that does not answer must
// not hold a thread for long (connect, keepalives and unacknowledged sends give up in seconds),
// and bodies are UTF-8, stored byte for byte.
struct ConnParams {
  std::vector<std::string> keys, values;
  std::string where;  // host:port/dbname, for messages
};

inline Result<ConnParams> parse_dsn(const std::string& dsn, const std::string& application_name) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(dsn.c_str(), &err);
  if (!opts) {
    std::string msg = err ? one_line(err) : "out of memory";
    PQfreemem(err);
    return fail("", msg);
  }
  ConnParams t;
  std::string host, hostaddr, port = "5432", db, user;
  for (auto* o = opts; o->keyword; ++o) {
    if (!o->val) continue;
    const std::string_view k = o->keyword;
    if (k == "host") host = o->val;
    if (k == "hostaddr") hostaddr = o->val;
    if (k == "port") port = o->val;
    if (k == "dbname") db = o->val;
    if (k == "user") user = o->val;
    if (k == "client_encoding") continue;  // forced to UTF8 below
    t.keys.emplace_back(k), t.values.emplace_back(o->val);
  }
  PQconninfoFree(opts);
  auto set_default = [&](const std::string& k, const std::string& v) {
    if (std::find(t.keys.begin(), t.keys.end(), k) == t.keys.end()) t.keys.push_back(k), t.values.push_back(v);
  };
  set_default("connect_timeout", "5");
  set_default("keepalives_idle", "10");
  set_default("keepalives_interval", "5");
  set_default("keepalives_count", "3");
  set_default("tcp_user_timeout", "30000");
  set_default("application_name", application_name);
  t.keys.push_back("client_encoding"), t.values.push_back("UTF8");
  if (host.empty()) host = hostaddr.empty() ? "localhost" : hostaddr;
  t.where = host + ":" + port + "/" + (db.empty() ? (user.empty() ? "postgres" : user) : db);
  return t;
}

}  // namespace gh::store::pg
