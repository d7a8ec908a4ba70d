#pragma once
// Small RAII and text helpers for libpq, shared by the PostgreSQL stores (audit sink,
// approvals). Users link libpq themselves.
#include <libpq-fe.h>

#include <memory>
#include <string>
#include <string_view>

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

}  // namespace gh::store::pg
