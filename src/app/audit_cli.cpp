#include "app/audit_cli.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "app/cli_text.h"
#include "audit/lines.h"
#include "audit/reader.h"
#include "audit/signer.h"
#include "audit/verify.h"
#include "config/config.h"

namespace gh::app {

std::string audit_store_path(const config::Config& cfg);

namespace {

using nlohmann::json;

struct Args {
  CLI::App* audit = nullptr;
  CLI::App *verify = nullptr, *search = nullptr, *tail = nullptr, *report = nullptr, *keygen = nullptr,
           *exporter = nullptr;
  std::int64_t after = 0;  // export
  std::string config, store, node;
  // verify
  std::string key, algorithm, expect_head, continues;
  bool expect_stopped = false;
  // search / tail / report
  std::map<std::string, std::string> filters;  // key -> value, for set_filter
  std::string format = "table";
  bool follow = false;
  std::size_t lines = 20;
  unsigned interval_ms = 1000;
  std::string out;
};

Args& args() {
  static Args a;
  return a;
}

std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The store: --store, else the first SQLite or JSON-lines sink of --config (the default sink is
// gatehouse-audit.db beside the configuration file).
Result<std::string> store_path(const std::optional<config::Config>& cfg) {
  if (!args().store.empty()) return args().store;
  if (!cfg) return fail("", "give --store PATH or --config FILE");
  if (auto p = audit_store_path(*cfg); !p.empty()) return p;
  return fail("", cfg->source + ": audit.sinks has no SQLite or JSON-lines file to read; give --store");
}

Result<std::optional<config::Config>> load_config() {
  if (args().config.empty()) return std::optional<config::Config>{};
  auto c = config::load_file(args().config);
  if (!c) return tl::unexpected(c.error());
  return std::optional<config::Config>{std::move(*c)};
}

Result<std::unique_ptr<audit::AuditReader>> open_reader(const std::optional<config::Config>& cfg) {
  auto path = store_path(cfg);
  if (!path) return tl::unexpected(path.error());
  return audit::AuditReader::open(*path, args().follow);
}

std::string rfc3339(std::int64_t us) {
  const std::time_t secs = static_cast<std::time_t>(us / 1'000'000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec);
}

int usage_error(const std::string& msg) {
  std::cerr << "error: " << msg << "\n";
  return 2;
}

Result<audit::SearchFilter> make_filter() {
  audit::SearchFilter f;
  const auto now = now_us();
  for (const auto& [k, v] : args().filters)
    if (auto r = audit::set_filter(f, k, v, now); !r) return tl::unexpected(r.error());
  if (!args().node.empty()) f.node = args().node;
  return f;
}

// The store and the filter the search-like commands (search, tail, report) start from.
struct Query {
  std::unique_ptr<audit::AuditReader> reader;
  audit::SearchFilter filter;
};

Result<Query> open_query() {
  auto cfg = load_config();
  if (!cfg) return tl::unexpected(cfg.error());
  auto reader = open_reader(*cfg);
  if (!reader) return tl::unexpected(reader.error());
  auto f = make_filter();
  if (!f) return tl::unexpected(f.error());
  return Query{std::move(*reader), std::move(*f)};
}

// ---- output ------------------------------------------------------------------------------------

struct Row {
  std::string time, where, type, identity, target, decision, rule, outcome, rows, ms, text;
};

Row row_of(const audit::SearchHit& h) {
  const auto& x = h.record.index;
  const auto* r = h.result ? &h.result->index : nullptr;
  Row row;
  row.time = x.time.size() >= 19 ? x.time.substr(0, 10) + " " + x.time.substr(11, 8) : x.time;
  row.where = x.node + ":" + std::to_string(h.record.seq);
  row.type = x.type;
  row.identity = !x.email.empty() ? x.email : x.subject;
  row.target = x.target;
  row.decision = x.decision;
  row.rule = x.rule;
  row.outcome = r ? r->outcome : x.outcome;
  const std::int64_t rows = r ? r->rows : x.rows, dur = r ? r->duration_us : x.duration_us;
  if (rows >= 0) row.rows = std::to_string(rows);
  if (dur >= 0) row.ms = fmt::format("{:.1f}", double(dur) / 1000.0);
  row.text = x.text;
  if (x.type == "checkpoint" || x.type == "retention" || x.type == "approval" || x.type == "grant" ||
      x.type == "admin" || x.type == "start" || x.type == "reload" || x.type == "cancel") {
    auto j = json::parse(h.record.body, nullptr, false);
    if (j.is_object() && j.contains("fields") && j["fields"].is_object()) {
      std::string f;
      for (const auto& [k, v] : j["fields"].items())
        f += (f.empty() ? "" : " ") + k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
      row.text = row.text.empty() ? f : row.text + " " + f;
    }
  }
  return row;
}

// RFC 4180 quoting; and a field that a spreadsheet would run as a formula (=, +, -, @, tab or CR
// first: any client can put such a statement text in the trail) gets a leading ' (OWASP's advice
// for CSV injection; found by adversarial testing).
std::string csv_field(const std::string& s) {
  const bool formula = !s.empty() && std::string_view("=+-@\t\r").find(s.front()) != std::string_view::npos;
  const std::string v = formula ? "'" + s : s;
  if (v.find_first_of(",\"\n\r") == std::string::npos) return v;
  std::string out = "\"";
  for (char c : v) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

void print_header(const std::string& format) {
  if (format == "table")
    std::cout << fmt::format("{:<19}  {:<14}  {:<10}  {:<24}  {:<10}  {:<8}  {:<20}  {:<9}  {:>7}  {:>8}  {}\n", "TIME",
                             "NODE:SEQ", "TYPE", "IDENTITY", "TARGET", "DECISION", "RULE", "OUTCOME", "ROWS", "MS",
                             "TEXT");
  else if (format == "csv")
    std::cout << "time,node_seq,type,identity,target,decision,rule,outcome,rows,duration_ms,text\n";
}

void print_hit(const audit::SearchHit& h, const std::string& format) {
  if (format == "jsonl") {
    std::cout << audit::hit_json(h) << "\n";
    return;
  }
  const Row r = row_of(h);
  if (format == "csv") {
    std::cout << csv_field(h.record.index.time) << ',' << csv_field(r.where) << ',' << csv_field(r.type) << ','
              << csv_field(r.identity) << ',' << csv_field(r.target) << ',' << csv_field(r.decision) << ','
              << csv_field(r.rule) << ',' << csv_field(r.outcome) << ',' << r.rows << ',' << r.ms << ','
              << csv_field(r.text) << "\n";
    return;
  }
  std::cout << fmt::format("{:<19}  {:<14}  {:<10}  {:<24}  {:<10}  {:<8}  {:<20}  {:<9}  {:>7}  {:>8}  {}\n", one_line(r.time, 32),
                           one_line(r.where, 14), one_line(r.type, 32), one_line(r.identity, 24), one_line(r.target, 10),
                           one_line(r.decision, 16),
                           one_line(r.rule, 20), one_line(r.outcome, 9), r.rows, r.ms, one_line(r.text, 100));
}

// ---- verify ------------------------------------------------------------------------------------

// One node's chain as JSON lines, in the JSON-lines sink's format ({"hash":...,"body":...} per
// record, the body byte for byte): what `sqlite3` cannot read from a store of compressed blocks,
// for jq, a SIEM, another database, or `verify --store FILE.jsonl`. Exit 1 when a stored record is
// not a record line (verify says more).
int cmd_export() {
  auto cfg = load_config();
  if (!cfg) return usage_error(cfg.error().message);
  auto reader = open_reader(*cfg);
  if (!reader) return usage_error(reader.error().message);
  std::string node = args().node;
  if (node.empty()) {
    auto n = (*reader)->nodes();
    if (!n) return usage_error(n.error().message);
    if (n->empty()) return usage_error(std::string((*reader)->description()) + " holds no audit records");
    if (n->size() > 1) {
      std::string names;
      for (const auto& x : *n) names += (names.empty() ? "" : ", ") + x;
      return usage_error("the store holds the chains of several nodes (" + names + "): give --node");
    }
    node = n->front();
  }
  std::uint64_t bad = 0, written = 0;
  std::string line;
  auto r = (*reader)->scan(node, args().after, [&](const audit::StoredRecord& s) {
    if (!s.well_formed) {
      ++bad;
      return true;
    }
    line.clear();
    audit::append_record_line(line, s.hash, s.body);
    std::cout << line;
    ++written;
    return bool(std::cout);
  });
  std::cout.flush();
  if (!r) return usage_error(r.error().message);
  if (!std::cout) return usage_error("cannot write the records to standard output");
  if (bad) {
    std::cerr << "error: " << bad << " stored record(s) are not record lines and were left out; run gatehouse audit verify\n";
    return 1;
  }
  std::cerr << written << " record(s) of node " << node << "\n";
  return 0;
}

int cmd_verify() {
  auto cfg = load_config();
  if (!cfg) return usage_error(cfg.error().message);
  auto reader = open_reader(*cfg);
  if (!reader) return usage_error(reader.error().message);

  std::optional<audit::CheckpointSigner> signer;
  std::string key_file = args().key, alg_name = args().algorithm;
  if (key_file.empty() && *cfg) {
    key_file = (*cfg)->audit.checkpoint_key_file;
    if (alg_name.empty()) alg_name = (*cfg)->audit.checkpoint_algorithm;
  }
  if (!key_file.empty()) {
    auto alg = audit::CheckpointSigner::algorithm_from_name(alg_name.empty() ? "ed25519" : alg_name);
    if (!alg) return usage_error("--algorithm: expected ed25519 or hmac-sha256");
    auto s = audit::CheckpointSigner::load(*alg, key_file);
    if (!s) return usage_error(s.error().message);
    signer = std::move(*s);
  }
  audit::VerifyOptions o;
  o.signer = signer ? &*signer : nullptr;
  o.expect_stopped = args().expect_stopped;
  if (!args().expect_head.empty()) {
    auto h = audit::parse_head(args().expect_head);
    if (!h) return usage_error(h.error().message);
    o.expect_head = *h;
  }
  if (!args().continues.empty()) {
    auto h = audit::parse_head(args().continues, "--continues");
    if (!h) return usage_error(h.error().message);
    o.continues = *h;
  }
  std::vector<std::string> nodes;
  if (!args().node.empty()) {
    nodes.push_back(args().node);
  } else {
    auto n = (*reader)->nodes();
    if (!n) return usage_error(n.error().message);
    nodes = std::move(*n);
  }
  if (nodes.empty()) return usage_error(std::string((*reader)->description()) + " holds no audit records");
  if (o.expect_head && nodes.size() > 1) return usage_error("--expect-head names one node's record: give --node too");
  if (o.continues && nodes.size() > 1) return usage_error("--continues names one node's record: give --node too");
  int rc = 0;
  for (const auto& node : nodes) {
    auto rep = audit::verify_chain(**reader, node, o);
    if (!rep) return usage_error(rep.error().message);
    if (rep->problem) {
      rc = 1;
      std::cout << fmt::format("node {}: TAMPERED at seq {} ({}): {}\n", node, rep->problem->seq,
                               audit::problem_name(rep->problem->kind), rep->problem->message);
      continue;
    }
    if (rep->records == 0) {
      std::cout << fmt::format("node {}: no records\n", node);
      rc = std::max(rc, args().node.empty() ? 0 : 2);
      continue;
    }
    std::cout << fmt::format("node {}: intact: records {}..{} ({}), {} checkpoint(s), {} signature(s) verified{}; head {}:{}\n",
                             node, rep->first_seq, rep->last_seq, rep->records, rep->checkpoints,
                             rep->signatures_checked, rep->clean_end ? ", ends with a clean shutdown" : "",
                             rep->last_seq, rep->last_hash);
    for (const auto& n : rep->notes) std::cout << "  note: " << n << "\n";
  }
  return rc;
}

// ---- search / tail -----------------------------------------------------------------------------

int cmd_search() {
  auto q = open_query();
  if (!q) return usage_error(q.error().message);
  auto* reader = &q->reader;
  auto* f = &q->filter;
  auto page = (*reader)->search(*f);
  if (!page) return usage_error(page.error().message);
  print_header(args().format);
  for (const auto& h : page->hits) print_hit(h, args().format);
  if (!page->next_cursor.empty()) std::cerr << "more: --cursor " << page->next_cursor << "\n";
  return 0;
}

int cmd_tail() {
  auto q = open_query();
  if (!q) return usage_error(q.error().message);
  auto* reader = &q->reader;
  auto* f = &q->filter;
  f->limit = std::max<std::size_t>(1, args().lines);
  f->cursor.clear();
  auto page = (*reader)->search(*f);
  if (!page) return usage_error(page.error().message);
  print_header(args().format);
  std::reverse(page->hits.begin(), page->hits.end());
  for (const auto& h : page->hits) print_hit(h, args().format);
  std::cout << std::flush;
  if (!args().follow) return 0;

  // Follow: poll each node's chain for records after the newest one seen. Result records are
  // printed as they come (their Statement was printed before the statement ended).
  std::map<std::string, std::int64_t> last;
  auto nodes = (*reader)->nodes();
  if (!nodes) return usage_error(nodes.error().message);
  // The newest seq per node at start.
  for (const auto& n : *nodes) {
    auto max = (*reader)->last_seq(n);
    if (!max) return usage_error(max.error().message);
    last[n] = *max;
  }
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(args().interval_ms));
    if ((*reader)->has_columns()) {
      auto n = (*reader)->nodes();
      if (n)
        for (const auto& x : *n) last.try_emplace(x, 0);
    }
    for (auto& [n, seen] : last) {
      auto r = (*reader)->scan(n, seen, [&](const audit::StoredRecord& s) {
        if (!s.well_formed) return true;
        seen = std::max(seen, s.seq);
        audit::SearchHit h;
        h.record.seq = std::uint64_t(s.seq);
        h.record.hash = s.hash;
        h.record.body = s.body;
        if (s.columns) {
          h.record.index = *s.columns;
        } else {
          auto idx = audit::index_of(s.body);
          if (!idx) return true;
          h.record.index = std::move(*idx);
        }
        audit::SearchFilter g = *f;
        if (g.type.empty() && h.record.index.type == "result") g.type = "result";
        if (!audit::matches(h.record.index, g, h.record.body)) return true;
        print_hit(h, args().format);
        return true;
      });
      if (!r) std::cerr << "error: " << r.error().message << "\n";
    }
    std::cout << std::flush;
  }
}

// ---- report ------------------------------------------------------------------------------------

std::vector<std::string> split_list(const std::string& s) {  // ",a,b," -> {a, b}
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < s.size()) {
    auto j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

int cmd_report() {
  auto q = open_query();
  if (!q) return usage_error(q.error().message);
  auto* reader = &q->reader;
  auto* f = &q->filter;
  const auto now = now_us();
  if (!f->until_us) f->until_us = now;
  if (!f->since_us) f->since_us = *f->until_us - std::int64_t(30) * 86400 * 1'000'000;
  f->type.clear();

  struct Access {
    std::uint64_t statements = 0, denied = 0;
    std::set<std::string> tags, kinds;
    std::string first, last;
    std::int64_t first_us = INT64_MAX, last_us = INT64_MIN;
  };
  std::map<std::tuple<std::string, std::string, std::string>, Access> sensitive;  // identity, target, table
  std::map<std::pair<std::string, std::string>, std::uint64_t> blocked_by;         // identity, rule
  std::vector<json> blocked_recent, reviews, approvals;
  std::map<std::string, std::uint64_t> by_type, by_decision;
  constexpr std::size_t kRecent = 100;

  auto r = (*reader)->each(*f, [&](const audit::Record& rec) {
    const auto& x = rec.index;
    ++by_type[x.type];
    const std::string who = !x.email.empty() ? x.email : x.subject;
    if (x.type == "statement") {
      ++by_decision[x.decision.empty() ? "none" : x.decision];
      // Never reached the database: denied, or refused by the proxy for a decision it could not
      // carry out (a mask, while masking is not built). Found by an audit trial: a refused mask
      // was listed as sensitive-table access and not as blocked.
      const bool blocked = x.decision == "deny" || (x.decision != "review" && x.outcome == "refused");
      if (!x.tags.empty()) {
        auto rels = split_list(x.relations);
        if (rels.empty()) rels.push_back("(unknown)");
        for (const auto& t : rels) {
          auto& a = sensitive[{who, x.target, t}];
          ++a.statements;
          if (blocked) ++a.denied;
          for (const auto& g : split_list(x.tags)) a.tags.insert(g);
          for (const auto& k : split_list(x.kinds)) a.kinds.insert(k);
          // Records come oldest first by seq in some stores, where a statement's time (when it
          // began) can be before that of one sealed earlier.
          if (x.time_us < a.first_us) a.first_us = x.time_us, a.first = x.time;
          if (x.time_us >= a.last_us) a.last_us = x.time_us, a.last = x.time;
        }
      }
      if (!blocked && x.decision != "review" && (x.decision != "allow" || x.rule.empty())) return true;
      json one = {{"time", x.time}, {"node", x.node}, {"seq", rec.seq}, {"identity", who}, {"target", x.target},
                  {"rule", x.rule}, {"text", x.text}};
      if (blocked) {
        ++blocked_by[{who, x.rule.empty() ? x.decision : x.rule}];
        blocked_recent.push_back(std::move(one));
        if (blocked_recent.size() > kRecent) blocked_recent.erase(blocked_recent.begin());
      } else if (x.decision == "review") {
        one["outcome"] = x.outcome.empty() ? "held" : x.outcome;
        reviews.push_back(std::move(one));
        if (reviews.size() > kRecent) reviews.erase(reviews.begin());
      } else if (x.decision == "allow" && !x.rule.empty() &&
                 rec.body.find("\"approval\":") != std::string::npos) {  // parsed only when it may say one
        // Approved after review and run: allowed under its approval request (found by a security
        // team's trial: the report listed only the reviewed statements that were refused).
        auto j = json::parse(rec.body, nullptr, false);
        const json* d = j.is_object() && j.contains("sql") && j["sql"].is_object() && j["sql"].contains("decision")
                            ? &j["sql"]["decision"]
                            : nullptr;
        if (d && d->is_object() && d->contains("approval") && (*d)["approval"].is_string()) {
          one["outcome"] = "approved (" + (*d)["approval"].get<std::string>() + ")";
          reviews.push_back(std::move(one));
          if (reviews.size() > kRecent) reviews.erase(reviews.begin());
        }
      }
    } else if (x.type == "approval") {
      auto j = json::parse(rec.body, nullptr, false);
      json one = {{"time", x.time}, {"node", x.node}, {"seq", rec.seq}, {"identity", who}};
      if (j.is_object() && j.contains("fields")) one["fields"] = j["fields"];
      if (!x.outcome.empty()) one["outcome"] = x.outcome;
      approvals.push_back(std::move(one));  // every approval: the report's purpose
    }
    return true;
  });
  if (!r) return usage_error(r.error().message);

  json out;
  out["store"] = std::string((*reader)->description());
  out["since"] = rfc3339(*f->since_us);
  out["until"] = rfc3339(*f->until_us);
  out["records_by_type"] = by_type;
  out["statements_by_decision"] = by_decision;
  json sens = json::array();
  for (const auto& [k, a] : sensitive)
    sens.push_back({{"identity", std::get<0>(k)}, {"target", std::get<1>(k)}, {"table", std::get<2>(k)},
                    {"statements", a.statements}, {"denied", a.denied}, {"tags", a.tags}, {"kinds", a.kinds},
                    {"first", a.first}, {"last", a.last}});
  out["sensitive_access"] = std::move(sens);
  json blocked = json::array();
  for (const auto& [k, n] : blocked_by) blocked.push_back({{"identity", k.first}, {"rule", k.second}, {"statements", n}});
  out["blocked"] = {{"by_identity_and_rule", std::move(blocked)}, {"recent", blocked_recent}};
  out["reviewed_statements"] = reviews;
  out["approvals"] = approvals;

  if (args().format == "json") {
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << "Audit report for " << (*reader)->description() << "\n";
  std::cout << "Period: " << rfc3339(*f->since_us) << " .. " << rfc3339(*f->until_us) << "\n\n";
  std::cout << "Records by type:";
  for (const auto& [t, n] : by_type) std::cout << " " << t << "=" << n;
  std::cout << "\nStatements by decision:";
  for (const auto& [t, n] : by_decision) std::cout << " " << t << "=" << n;
  std::cout << "\n\nSensitive tables accessed (statements that touched tagged columns):\n";
  if (sensitive.empty()) std::cout << "  none\n";
  for (const auto& [k, a] : sensitive) {
    std::string tags, kinds;
    for (const auto& t : a.tags) tags += (tags.empty() ? "" : ",") + t;
    for (const auto& t : a.kinds) kinds += (kinds.empty() ? "" : ",") + t;
    std::cout << fmt::format("  {:<28} {:<12} {:<28} {:>6} stmt  {:>4} blocked  tags={} kinds={}  {} .. {}\n",
                             std::get<0>(k), std::get<1>(k), std::get<2>(k), a.statements, a.denied, tags, kinds,
                             a.first.substr(0, 19), a.last.substr(0, 19));
  }
  std::cout << "\nBlocked (never reached the database: decision deny, or refused by the proxy):\n";
  if (blocked_by.empty()) std::cout << "  none\n";
  for (const auto& [k, n] : blocked_by)
    std::cout << fmt::format("  {:<28} rule {:<28} {:>6} statement(s)\n", k.first, k.second, n);
  if (!blocked_recent.empty()) std::cout << "  most recent:\n";
  for (const auto& b : blocked_recent)
    std::cout << fmt::format("    {} {} {} {}: {}\n", b["time"].get<std::string>().substr(0, 19),
                             b["identity"].get<std::string>(), b["target"].get<std::string>(),
                             b["rule"].get<std::string>(), one_line(b["text"].get<std::string>(), 100));
  std::cout << "\nHeld for review (decision review, and statements that ran once approved):\n";
  if (reviews.empty()) std::cout << "  none\n";
  for (const auto& b : reviews)
    std::cout << fmt::format("  {} {} {} {} [{}]: {}\n", b["time"].get<std::string>().substr(0, 19),
                             b["identity"].get<std::string>(), b["target"].get<std::string>(),
                             b["rule"].get<std::string>(), b["outcome"].get<std::string>(),
                             one_line(b["text"].get<std::string>(), 100));
  std::cout << "\nApprovals (who approved what):\n";
  if (approvals.empty()) std::cout << "  none recorded\n";
  for (const auto& a : approvals) {
    std::string fields;
    if (a.contains("fields") && a["fields"].is_object())
      for (const auto& [k, v] : a["fields"].items())
        fields += " " + k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
    std::cout << fmt::format("  {} by {}:{}\n", a["time"].get<std::string>().substr(0, 19),
                             a["identity"].get<std::string>(), fields);
  }
  return 0;
}

// ---- keygen ------------------------------------------------------------------------------------

int cmd_keygen() {
  auto alg = audit::CheckpointSigner::algorithm_from_name(args().algorithm.empty() ? "ed25519" : args().algorithm);
  if (!alg) return usage_error("--algorithm: expected ed25519 or hmac-sha256");
  if (auto r = audit::CheckpointSigner::generate(*alg, args().out); !r) return usage_error(r.error().message);
  auto s = audit::CheckpointSigner::load(*alg, args().out);
  if (!s) return usage_error(s.error().message);
  std::cout << "wrote " << audit::CheckpointSigner::name(*alg) << " key " << s->key_id() << " to " << args().out
            << " (mode 0600); set audit.checkpoint.key_file to it\n";
  return 0;
}

void add_store_options(CLI::App* c) {
  auto& a = args();
  c->add_option("-c,--config", a.config, "YAML configuration file (the store is its first SQLite or JSON-lines sink)");
  c->add_option("--store", a.store, "audit store file: SQLite, or JSON lines (.jsonl)");
  c->add_option("--node", a.node, "only this node's records");
}

void add_filter_options(CLI::App* c) {
  auto& f = args().filters;
  auto opt = [&](const char* name, const char* key, const char* help) {
    c->add_option_function<std::string>(name, [&f, key](const std::string& v) { f[key] = v; }, help);
  };
  opt("--identity", "identity", "subject or email, glob (* and ?), case-insensitive");
  opt("--group", "group", "one of the identity's groups");
  opt("--target", "target", "target name");
  opt("--kind", "kind", "statement kind (select, update, drop, ...)");
  opt("--table", "table", "table: name (any schema) or schema.name");
  opt("--tag", "tag", "classification tag touched (pii, ...)");
  opt("--decision", "decision", "allow, mask, review or deny");
  opt("--rule", "rule", "policy rule name");
  opt("--type", "type", "record type (statement, connect, approval, checkpoint, ...); default: all but result");
  opt("--outcome", "outcome", "ok, error, cancelled, refused, not_run (a statement's from its result)");
  opt("--since", "since", "from: 2026-01-02, 2026-01-02T03:04:05Z, or an age (24h, 7d)");
  opt("--until", "until", "before: same forms as --since");
  opt("--text", "text", "substring of the statement text or message, case-insensitive");
}

}  // namespace

void add_audit_commands(CLI::App& app) {
  auto& a = args();
  a.audit = app.add_subcommand("audit", "Verify, search, follow and report on the audit trail");
  a.audit->require_subcommand(1);

  a.verify = a.audit->add_subcommand(
      "verify", "Check the hash chain and checkpoint signatures; exit 0 intact, 1 tampered, 2 usage or I/O error");
  add_store_options(a.verify);
  a.verify->add_option("--key", a.key, "checkpoint key file (default: audit.checkpoint.key_file of --config)");
  a.verify->add_option("--algorithm", a.algorithm, "ed25519 or hmac-sha256 (default: the config's, else ed25519)")
      ->check(CLI::IsMember({"ed25519", "hmac-sha256"}));
  a.verify->add_option("--expect-head", a.expect_head,
                       "SEQ:HASH that must be in the trail (from the log line \"audit checkpoint: ... seq= hash=\")");
  a.verify->add_option("--continues", a.continues,
                       "SEQ:HASH: the store continues an earlier one (a rotated JSON-lines file) whose head this is "
                       "(the \"head\" that verify printed for it): the store must start right after it");
  a.verify->add_flag("--expect-stopped", a.expect_stopped,
                     "the proxy is stopped: the trail must end with a Stop record and a checkpoint covering it");

  a.search = a.audit->add_subcommand("search", "Search records, newest first");
  add_store_options(a.search);
  add_filter_options(a.search);
  a.search->add_option_function<std::string>(
      "--limit", [](const std::string& v) { args().filters["limit"] = v; }, "records per page (default 100)");
  a.search->add_option_function<std::string>(
      "--cursor", [](const std::string& v) { args().filters["cursor"] = v; }, "continue after a previous page");
  a.search->add_option("--format", a.format, "table, jsonl or csv")->check(CLI::IsMember({"table", "jsonl", "csv"}));

  a.tail = a.audit->add_subcommand("tail", "Show the newest records; -f follows new ones");
  add_store_options(a.tail);
  add_filter_options(a.tail);
  a.tail->add_option("-n,--lines", a.lines, "how many records to show first (default 20)");
  a.tail->add_flag("-f,--follow", a.follow, "keep printing records as they are written");
  a.tail->add_option("--interval", a.interval_ms, "poll interval in milliseconds when following (default 1000)")
      ->check(CLI::Range(50u, 60000u));
  a.tail->add_option("--format", a.format, "table, jsonl or csv")->check(CLI::IsMember({"table", "jsonl", "csv"}));

  a.report = a.audit->add_subcommand(
      "report", "Compliance report: sensitive tables accessed, what was blocked, reviews and approvals, over a period");
  add_store_options(a.report);
  a.report->add_option_function<std::string>(
      "--since", [](const std::string& v) { args().filters["since"] = v; }, "from (default: 30 days ago)");
  a.report->add_option_function<std::string>(
      "--until", [](const std::string& v) { args().filters["until"] = v; }, "before (default: now)");
  a.report->add_option_function<std::string>(
      "--target", [](const std::string& v) { args().filters["target"] = v; }, "only this target");
  a.report->add_option("--format", a.format, "text or json")->check(CLI::IsMember({"text", "json"}));

  a.exporter = a.audit->add_subcommand(
      "export", "Write one node's chain as JSON lines ({\"hash\",\"body\"} per record, the jsonl sink's format), oldest first");
  add_store_options(a.exporter);
  a.exporter->add_option("--after", a.after, "only records after this seq (default: all)")->check(CLI::NonNegativeNumber);

  a.keygen = a.audit->add_subcommand("keygen", "Make a new checkpoint signing key");
  a.keygen->add_option("--algorithm", a.algorithm, "ed25519 (default) or hmac-sha256")
      ->check(CLI::IsMember({"ed25519", "hmac-sha256"}));
  a.keygen->add_option("--out", a.out, "key file to create (must not exist)")->required();
}

std::string audit_store_path(const config::Config& cfg) {
  for (const auto& s : cfg.audit.sinks)
    if ((s.type == config::AuditSink::Type::Sqlite || s.type == config::AuditSink::Type::JsonLines) && s.path != "-")
      return s.path;
  return {};
}

std::optional<int> run_audit_command() {
  auto& a = args();
  if (!a.audit || !*a.audit) return std::nullopt;
  if (*a.verify) return cmd_verify();
  if (*a.search) return cmd_search();
  if (*a.tail) return cmd_tail();
  if (*a.report) {
    if (a.format == "table") a.format = "text";
    return cmd_report();
  }
  if (*a.keygen) return cmd_keygen();
  if (*a.exporter) return cmd_export();
  return 2;
}

}  // namespace gh::app
