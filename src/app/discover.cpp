// `gatehouse discover`: samples the tables of a target and suggests a classification for the
// configuration. Each column is read as text (up to --sample rows per table, through the target's
// own backend login, so it sees what the proxy sees); the content detectors (masking/detect.h)
// run over every value, and a column where most non-NULL values ARE a detected item (the match
// covers the value) is suggested with that type and the share as its confidence. Columns the
// configuration already classifies are marked. Nothing is written: the operator copies the YAML.
#include "app/discover.h"

#include <libpq-fe.h>

#include <algorithm>
#include <array>
#include <iostream>
#include <map>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "config/config.h"
#include "masking/detect.h"
#include "policy/policy.h"

namespace gh::app {

namespace {

struct PgConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct PgResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Conn = std::unique_ptr<PGconn, PgConnDeleter>;
using Res = std::unique_ptr<PGresult, PgResultDeleter>;

std::string quote_ident(PGconn* c, const std::string& s) {
  char* q = PQescapeIdentifier(c, s.data(), s.size());
  std::string out = q ? q : "\"\"";
  PQfreemem(q);
  return out;
}

std::vector<std::string> tags_for(masking::Detector d) {
  using masking::Detector;
  switch (d) {
    case Detector::Email: return {"pii", "email"};
    case Detector::Phone: return {"pii", "phone"};
    case Detector::Card: return {"financial", "card"};
    case Detector::Ssn: return {"pii", "national_id"};
    case Detector::Iban: return {"financial", "iban"};
    case Detector::Ipv4:
    case Detector::Ipv6: return {"network"};
    default: return {"secret"};
  }
}

struct Finding {
  std::string schema, table, column;
  masking::Detector detector = masking::Detector::Email;
  std::size_t hits = 0, values = 0;
  double confidence() const { return values ? double(hits) / double(values) : 0; }
  std::string name() const { return schema + "." + table + "." + column; }
};

}  // namespace

int cmd_discover(const DiscoverArgs& args) {
  auto cfg = config::load_file(args.config_path);
  if (!cfg) {
    std::cerr << "error: " << cfg.error().message << "\n";
    return 2;
  }
  const config::Target* target = nullptr;
  for (const auto& t : cfg->targets)
    if (t.name == args.target) target = &t;
  if (!target) {
    std::cerr << "error: target \"" << args.target << "\" is not in " << args.config_path << "\n";
    return 2;
  }
  const config::Login* login = nullptr;
  for (const auto& l : target->logins)
    if (args.login.empty() ? true : l.user == args.login) {
      login = &l;
      break;
    }
  if (!login) {
    std::cerr << "error: target \"" << args.target << "\" has no login" << (args.login.empty() ? "" : " " + args.login)
              << "\n";
    return 2;
  }
  const std::string database = !args.database.empty() ? args.database : target->backend.database;
  if (database.empty()) {
    std::cerr << "error: target \"" << args.target << "\" passes the client's database name through: give --database\n";
    return 2;
  }
  const std::string port = std::to_string(target->backend.port);
  const char* sslmode = target->backend.tls == config::BackendTlsMode::Disable   ? "disable"
                        : target->backend.tls == config::BackendTlsMode::Require ? "require"
                                                                                 : "verify-full";
  std::vector<const char*> keys = {"host", "port", "dbname", "user", "password", "sslmode", "application_name",
                                   "connect_timeout"};
  std::vector<const char*> vals = {target->backend.host.c_str(), port.c_str(), database.c_str(), login->user.c_str(),
                                   login->password.c_str(), sslmode, "gatehouse discover", "10"};
  if (!target->backend.ca_file.empty()) {
    keys.push_back("sslrootcert");
    vals.push_back(target->backend.ca_file.c_str());
  }
  keys.push_back(nullptr);
  vals.push_back(nullptr);
  Conn conn(PQconnectdbParams(keys.data(), vals.data(), 0));
  if (!conn || PQstatus(conn.get()) != CONNECTION_OK) {
    std::cerr << "error: cannot connect to target \"" << args.target << "\" (" << target->backend.host << ":" << port
              << ", database " << database << ", user " << login->user
              << "): " << (conn ? PQerrorMessage(conn.get()) : "out of memory");
    return 1;
  }
  // Read-only, and the sample as of one snapshot.
  Res begin(PQexec(conn.get(), "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"));
  Res cols(PQexec(conn.get(),
                  "SELECT n.nspname, c.relname, a.attname FROM pg_catalog.pg_attribute a "
                  "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = "
                  "c.relnamespace WHERE c.relkind IN ('r','p','m','f') AND a.attnum > 0 AND NOT a.attisdropped "
                  "AND n.nspname NOT IN ('pg_catalog','information_schema') AND n.nspname NOT LIKE 'pg_toast%' "
                  "AND n.nspname NOT LIKE 'pg_temp%' AND has_table_privilege(c.oid, 'SELECT') "
                  "ORDER BY 1, 2, a.attnum"));
  if (PQresultStatus(cols.get()) != PGRES_TUPLES_OK) {
    std::cerr << "error: reading the catalog failed: " << PQerrorMessage(conn.get());
    return 1;
  }
  std::map<std::pair<std::string, std::string>, std::vector<std::string>> tables;
  for (int i = 0; i < PQntuples(cols.get()); ++i)
    tables[{PQgetvalue(cols.get(), i, 0), PQgetvalue(cols.get(), i, 1)}].push_back(PQgetvalue(cols.get(), i, 2));

  const masking::Detectors detectors;
  std::vector<Finding> findings;
  std::vector<masking::Match> matches;
  std::size_t tables_read = 0, values_read = 0;
  for (const auto& [key, columns] : tables) {
    std::string sql = "SELECT ";
    for (std::size_t i = 0; i < columns.size(); ++i)
      sql += (i ? ", " : "") + quote_ident(conn.get(), columns[i]) + "::text";
    sql += " FROM " + quote_ident(conn.get(), key.first) + "." + quote_ident(conn.get(), key.second) + " LIMIT " +
           std::to_string(args.sample);
    Res rows(PQexec(conn.get(), sql.c_str()));
    if (PQresultStatus(rows.get()) != PGRES_TUPLES_OK) {
      std::cerr << "warning: " << key.first << "." << key.second << " not sampled: " << PQerrorMessage(conn.get());
      Res rb(PQexec(conn.get(), "ROLLBACK"));
      Res again(PQexec(conn.get(), "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"));
      continue;
    }
    ++tables_read;
    for (std::size_t c = 0; c < columns.size(); ++c) {
      std::array<std::size_t, masking::kDetectorCount> hits{};
      std::size_t values = 0;
      for (int r = 0; r < PQntuples(rows.get()); ++r) {
        if (PQgetisnull(rows.get(), r, int(c))) continue;
        std::string_view v(PQgetvalue(rows.get(), r, int(c)), std::size_t(PQgetlength(rows.get(), r, int(c))));
        while (!v.empty() && (v.front() == ' ' || v.front() == '"')) v.remove_prefix(1);
        while (!v.empty() && (v.back() == ' ' || v.back() == '"')) v.remove_suffix(1);
        if (v.empty()) continue;
        ++values;
        ++values_read;
        matches.clear();
        if (!detectors.find(v, matches)) continue;
        // The value IS the item (the match covers most of it), not a text mentioning one.
        for (const auto& m : matches)
          if (m.length * 10 >= v.size() * 8) {
            ++hits[std::size_t(m.detector)];
            break;
          }
      }
      const auto best = std::max_element(hits.begin(), hits.end());
      if (values == 0 || *best == 0) continue;
      Finding f{key.first, key.second, columns[c], masking::Detector(best - hits.begin()), *best, values};
      if (f.confidence() >= args.threshold) findings.push_back(std::move(f));
    }
  }
  Res end(PQexec(conn.get(), "ROLLBACK"));

  const auto& policy = *cfg->policy;
  auto classified = [&](const Finding& f) {
    for (const auto& e : policy.classification())
      for (const auto& p : e.columns) {
        const bool hit = p.last().matches(f.column) &&
                         (p.size() == 1 || (p.size() == 2 && p.part(0).matches(f.table)) ||
                          (p.size() == 3 && p.part(0).matches(f.schema) && p.part(1).matches(f.table)));
        if (hit) return true;
      }
    return false;
  };

  if (args.format == "json") {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& f : findings)
      out.push_back({{"column", f.name()},
                     {"detected", std::string(masking::detector_name(f.detector))},
                     {"confidence", f.confidence()},
                     {"sampled", f.values},
                     {"tags", tags_for(f.detector)},
                     {"classified", classified(f)}});
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  if (args.format == "yaml") {
    std::cout << "# gatehouse discover --target " << args.target << ": " << tables_read << " tables, " << values_read
              << " values sampled; review before use\nclassification:\n";
    for (const auto& f : findings) {
      if (classified(f)) continue;
      std::string tags;
      for (const auto& t : tags_for(f.detector)) tags += (tags.empty() ? "" : ", ") + t;
      std::cout << fmt::format("  - columns: [\"{}\"]  # {} in {:.0f}% of {} sampled values\n    tags: [{}]\n",
                               f.name(), masking::detector_name(f.detector), f.confidence() * 100, f.values, tags);
    }
    return 0;
  }
  std::cout << fmt::format("{:<48} {:<12} {:>10} {:>8}  {}\n", "column", "detected", "confidence", "sampled", "");
  for (const auto& f : findings)
    std::cout << fmt::format("{:<48} {:<12} {:>9.0f}% {:>8}  {}\n", f.name(), masking::detector_name(f.detector),
                             f.confidence() * 100, f.values, classified(f) ? "(already classified)" : "");
  std::cout << fmt::format("\n{} tables, {} values sampled (at most {} rows per table); {} column{} suggested.\n",
                           tables_read, values_read, args.sample, findings.size(), findings.size() == 1 ? "" : "s");
  std::cout << "For configuration lines: --format yaml\n";
  return 0;
}

}  // namespace gh::app
