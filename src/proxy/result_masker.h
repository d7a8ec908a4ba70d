#pragma once
// Masking of one session's results (docs/policy.md#masking). Follows which statement each of the
// backend's answers belongs to (Query, Describe, Execute, Sync, in the order they were
// forwarded), decides per result column whether it derives from a column a mask rule covers
// (RowDescription's table OID and attribute number through the catalog, and the statement's
// lineage for what the OID cannot say), and rewrites DataRow messages. Pure: no sockets, no
// clock; the session feeds it whole messages.
//
// Fails closed: a column whose origin cannot be told while the statement involves a masked
// column (an unknown relation, lineage the analysis could not decide) is masked; a value of a
// masked column whose type or format is not known becomes NULL, which is valid for every type.
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "masking/detect.h"
#include "masking/row.h"
#include "policy/policy.h"
#include "sql/catalog.h"
#include "sql/lineage.h"
#include "sql/statement_info.h"

namespace gh::proxy {

class ResultMasker {
 public:
  ResultMasker(std::shared_ptr<const policy::Policy> policy, std::vector<std::size_t> rules, std::string hmac_key);

  bool active() const { return !rules_.empty(); }
  const std::vector<std::size_t>& rules() const { return rules_; }
  // A new policy (reload) or a new set of rules for this session.
  void set_rules(std::shared_ptr<const policy::Policy> policy, std::vector<std::size_t> rules);
  void set_catalog(std::shared_ptr<const sql::Catalog> catalog);
  const sql::Catalog* catalog() const { return catalog_.get(); }

  // Client side, in the order messages are forwarded. A refused statement's substitute is
  // forwarded as a statement without analysis (nullptr): it returns no rows.
  void on_query(std::shared_ptr<const sql::Analysis> analysis);  // Query, or FunctionCall (nullptr)
  // `analysis`: the statement bound, when the session knows it (null: fail closed at Execute).
  void on_bind(std::string_view portal, std::string_view statement, std::string_view body,
               std::shared_ptr<const sql::Analysis> analysis);
  void on_describe(char what, std::string_view name);
  void on_execute(std::string_view portal);
  void on_sync();
  void on_close(char what, std::string_view name);
  // A COPY FROM STDIN started (CopyInResponse): the first `n` Syncs forwarded after its statement
  // arrived while the server read COPY data, and get no answer.
  void syncs_ignored(std::uint32_t n);
  void on_ext();  // a substitute Parse: answered by an error
  void on_parse(std::string_view name);
  // The session's search_path changed since the catalog was read: names in statements may resolve
  // elsewhere, so lineage is not trusted (columns without an origin are masked) until it is read again.
  void set_path_uncertain(bool v) { path_uncertain_ = v; }
  bool path_uncertain() const { return path_uncertain_; }
  // path_uncertain(), or the statement names a table that more than one schema of the path holds.
  bool uncertain(const sql::Statement& st);
  // The result columns masked since the last take, as "schema.table.column (rule)" (or "column N
  // (origin unknown)"), for the audit record of the statement that returned them; collected only
  // when the session audits.
  void collect_masked(bool on) { collect_ = on; }
  std::vector<std::string> take_masked() { return std::exchange(masked_, {}); }
  // Tables may have changed (DDL forwarded): Describe answers kept for later Executes are dropped.
  void forget_described();
  // A statement forwarded to the server (after on_query/on_parse): the relations it creates.
  void note_forwarded(const sql::Statement& st);

  // Whether the relay must hand over this backend message whole (its body is needed).
  bool needs_whole(char type) const;
  enum class Verdict : std::uint8_t { Pass, Rewritten, Lost };
  // One backend message. Rewritten: `out` holds the replacement message (type, length, body).
  // Lost: the answers no longer match what was forwarded; the session must end (fail closed).
  Verdict on_backend(char type, std::string_view body, std::string& out);

  // A statement that would move values of masked columns where masking cannot follow (into a
  // table, a file, a view; COPY TO STDOUT, which is not masked yet): why it is refused.
  std::optional<std::string> refusal_for(const sql::Statement& statement);
  // A Bind (its body) of the statement `analysis` under the name `statement` that asks for a
  // column in binary format which a rule with `mask.binary: deny` masks and whose type is not
  // text: why it is refused.
  std::optional<std::string> binary_refusal(const sql::Analysis& analysis, std::string_view statement,
                                            std::string_view bind);


 private:
  struct Unit {
    enum class Kind : std::uint8_t { Query, Describe, Execute, Sync, Ext } kind = Kind::Query;  // Ext: Parse, Bind, Close
    std::shared_ptr<const sql::Analysis> analysis;
    std::size_t statement = 0;  // Query: the statement now answered
    std::string name;           // Describe/Execute: statement or portal
    char describe = 'S';
    std::uint64_t gen = 0;  // Describe: the generation of the name it describes when it was forwarded
    std::uint64_t seq = 0;  // Describe: seq_ when it was forwarded
    bool planned = false;
    std::vector<masking::ColumnMask> plan;
    std::vector<bool> detect;  // per column: scanned by the content detectors (text values not masked by plan)
    bool masks = false;  // some column of plan is masked or scanned
  };
  // A result column as RowDescription gives it.
  struct Field {
    std::uint32_t table = 0;
    std::int16_t attnum = 0;
    std::uint32_t type = 0;
    std::int16_t format = 0;
  };
  static bool parse_row_description(std::string_view body, std::vector<Field>& out);
  const sql::Lineage* lineage(const std::string& text);
  const masking::Spec* spec_of(const sql::SourceColumn& c);
  const masking::Spec* spec_of_relation_column(std::uint32_t oid, std::int16_t attnum, bool& unknown);
  // Whether the statement reads a relation with a masked column, or one the catalog does not know.
  // unknown_counts false: relations the catalog does not know do not count.
  bool involves_masked(const sql::Statement& st, bool unknown_counts = true);
  const masking::Spec* fallback() const;
  // Whether the rule that masks a column with `spec` refuses instead (`what`); for a column of
  // unknown origin, whether any of the session's rules does.
  bool denies(const masking::Spec* spec, bool policy::MaskSpec::*what) const;
  bool any_denies(bool policy::MaskSpec::*what) const;
  std::string rule_of(const masking::Spec* spec) const;
  void note_masked(std::size_t column, const sql::SourceColumn& origin, const masking::Spec* spec);  // "rule <name>", or "a masking rule" (unknown origin)
  // Bind's result format codes (none: all text; one: all; else one per column). false: malformed.
  static bool result_formats(std::string_view bind, std::vector<std::int16_t>& out);
  // trust_origins false: the fields' table OIDs are not taken for the columns' origins.
  void plan_from(Unit& u, const sql::Statement* st, const std::vector<Field>* fields,
                 const std::vector<std::int16_t>* formats, std::size_t columns, bool trust_origins = true);
  const sql::Statement* statement_of(const Unit& u) const;
  // An ErrorResponse or NoticeResponse of a statement that involves a masked column, with what may
  // quote values withheld. false: passed on as it is.
  bool scrub_message(Unit& u, char type, std::string_view body, std::string& out);
  Unit* front();
  void pop();
  void skip_to_sync();

  std::shared_ptr<const policy::Policy> policy_;
  std::vector<std::size_t> rules_;
  bool collect_ = false;
  std::unordered_set<std::string> created_;  // "schema.name" made by this session since the catalog read
  std::vector<std::string> masked_;
  std::string key_;
  std::shared_ptr<const sql::Catalog> catalog_;
  // Per policy rule index (only mask rules filled). The Spec objects live as long as the masker:
  // plans of results still streaming point at them across a reload.
  std::vector<const masking::Spec*> specs_;
  std::vector<std::unique_ptr<masking::Spec>> spec_store_;
  std::unordered_map<const masking::Spec*, std::size_t> spec_rule_;  // Spec -> its rule's index
  std::unordered_map<std::uint64_t, const masking::Spec*> column_specs_;  // (oid << 16 | attnum)
  std::unordered_map<std::uint32_t, std::shared_ptr<const sql::Lineage>> views_;
  std::unordered_map<std::string, std::shared_ptr<const sql::Lineage>> lineages_;
  std::deque<Unit> units_;
  std::unordered_map<std::string, std::vector<std::int16_t>> portal_formats_;
  // Describe answers, kept for Executes without one (found by an attack round: kept past the
  // Parse/Bind or SQL that replaced what they described, they traced another statement's rows).
  // Valid while the name has the generation they were asked for and no SQL since may have remade it.
  struct Described {
    std::vector<Field> fields;
    std::uint64_t gen = 0;
    std::uint64_t seq = 0;
  };
  std::unordered_map<std::string, Described> statement_fields_;  // from Describe of a statement
  std::unordered_map<std::string, Described> portal_fields_;     // from Describe of a portal
  std::unordered_map<std::string, std::uint64_t> statement_gen_;  // Parse of the name
  std::unordered_map<std::string, std::uint64_t> portal_gen_;     // Bind of the name
  const std::vector<Field>* described(const std::unordered_map<std::string, Described>& map,
                                      const std::unordered_map<std::string, std::uint64_t>& gens,
                                      const std::string& name) const;
  std::unordered_map<std::string, std::string> portal_statement_;         // portal -> statement, from Bind
  // What each portal was bound from, and when. SQL (DECLARE, CLOSE, DISCARD) can drop and make a
  // portal of the same name without a Bind (found by an attack round: an Execute of a cursor
  // DECLAREd under a name bound earlier was traced as the earlier statement): a portal's statement
  // is trusted only when it was bound after the last message that may have run such SQL.
  struct BoundStatement {
    std::shared_ptr<const sql::Analysis> analysis;
    std::uint64_t seq = 0;
  };
  std::unordered_map<std::string, BoundStatement> portal_analysis_;
  std::uint64_t seq_ = 0;
  std::uint64_t cursor_seq_ = 0;  // the last Query or Execute that may have made or dropped a portal
  masking::Spec unknown_origin_;
  // Content detectors of the session's rules (mask.detect), and how what they find is masked.
  std::unique_ptr<masking::Detectors> detectors_;
  const masking::Spec* detect_spec_ = nullptr;
  std::vector<masking::Match> matches_;
  // COPY TO STDOUT of masked columns: its rows are rewritten as they come (CopyData).
  std::unique_ptr<masking::CopyMasker> copy_masker_;
  std::string copy_out_;
  // Whether COPY with these options can be rewritten: "" when it can, else why not.
  static std::string copy_unsupported(const sql::CopyOut& c);
  // The masker's options and format for a COPY's (single-character options only: copy_unsupported).
  static masking::CopyOptions copy_options(const sql::CopyOut& c, masking::CopyFormat& format);
  void start_copy(const sql::Lineage& l);
  std::string value_;
  bool rewrite_detecting(std::string_view body, const Unit& u, std::string& out);
  // `v` with matches_ masked by the detecting rule's strategy; json: the value is a JSON document.
  void mask_matches(std::string_view v, bool json, std::string& out);
  bool json_escapes_hide_matches(std::string_view v);  // how columns of unknown origin are masked: redact
  std::vector<Field> fields_;
  std::string row_out_;
  int view_depth_ = 0;
  bool path_uncertain_ = false;
};

}  // namespace gh::proxy
