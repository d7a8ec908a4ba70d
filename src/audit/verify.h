#pragma once
// Verifies one node's hash chain as a reader returns it, and reports the FIRST problem found,
// naming the sequence number and what kind of change explains it.
//
// What is proved: every record from the first stored one to the last is the one the proxy
// sealed, in its place, with nothing removed or added between them; search columns agree with
// the signed body; each checkpoint's signature is valid and covers the hash the chain has at
// that point (so a chain recomputed after an edit is caught at the next checkpoint); records
// missing at the start are explained by a Retention record that names the new first record's
// predecessor (with a key: one that a signed checkpoint of the same run covers, as the proxy
// writes one right after each Retention record). What is not proved without an external anchor: that no records were removed from
// the END after the last checkpoint (see VerifyOptions::expect_head and expect_stopped).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "audit/reader.h"
#include "audit/signer.h"
#include "base/result.h"

namespace gh::audit {

enum class Problem {
  EditedBody,          // a body does not hash to its stored hash, does not parse, or was re-hashed
  EditedColumn,        // a search column (or node/prev) disagrees with the body (SQLite)
  Deleted,             // records are missing (a gap in seq, or missing at the start without Retention)
  Inserted,            // an extra record claims a place in the chain that another already holds
  Reordered,           // records are stored out of order
  Truncated,           // records are missing at the end (against --expect-head, or a stopped proxy)
  BadSignature,        // a checkpoint's signature does not verify with the given key
  CheckpointMismatch,  // a checkpoint covers a hash the chain does not have (chain recomputed)
  AnchorMismatch,      // the record named by --expect-head has another hash
  EditedStore,         // the store's own structure disagrees with its rows (SQLite: an index that
                       // misses rows, found by PRAGMA integrity_check): searches would not see them
  Unsigned,            // a key was given but no checkpoint is stored: nothing proves the chain
};
std::string_view problem_name(Problem p);  // "edited body", "deleted", ...

struct Finding {
  Problem kind;
  std::uint64_t seq = 0;  // the record the problem is at (for Deleted: the first missing one)
  std::string message;
};

struct VerifyOptions {
  const CheckpointSigner* signer = nullptr;  // null: checkpoint signatures are not checked
  struct Head {
    std::uint64_t seq = 0;
    std::string hash;
  };
  std::optional<Head> expect_head;  // an external anchor: this record must exist with this hash
  // The store continues an earlier one (a rotated JSON-lines file) whose last record is this: the
  // store's first record must be the next one and name it as its predecessor.
  std::optional<Head> continues;
  bool expect_stopped = false;      // the proxy is stopped: the trail must end with Stop + Checkpoint
};

struct VerifyReport {
  std::string node;
  std::uint64_t records = 0;
  std::uint64_t first_seq = 0, last_seq = 0;
  std::string last_hash;
  std::uint64_t checkpoints = 0;           // checkpoint records seen
  std::uint64_t signatures_checked = 0;    // ... whose signature was verified
  std::uint64_t last_checkpoint_seq = 0;   // seq of the last checkpoint record (0: none)
  std::uint64_t uncovered = 0;             // records after the last checkpoint record
  bool clean_end = false;                  // ends with a Stop record and a checkpoint covering it
  std::optional<Finding> problem;          // the first problem; none: intact
  std::vector<std::string> notes;          // what could not be proved (not evidence of tampering)
};

// Parses "SEQ:HASH" (e.g. from the log line "audit checkpoint: node=n seq=120 hash=ab12...").
[[nodiscard]] Result<VerifyOptions::Head> parse_head(std::string_view text, std::string_view option = "--expect-head");

// IO errors are errors; tampering is a report with `problem` set.
[[nodiscard]] Result<VerifyReport> verify_chain(AuditReader& reader, std::string_view node, const VerifyOptions& options);

}  // namespace gh::audit
