#pragma once
// Name patterns used by policy conditions, compiled once at load. `*` matches any run of
// characters (also none), `?` exactly one; everything else is literal. A NamePattern is a
// dotted name ("schema.table.column") with one glob per part, so `*` never crosses a dot.
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace gh::policy {

class Glob {
 public:
  // fold_case: compare in ASCII lower case (e-mail addresses); SQL names are compared as the
  // analyzer reports them (already case-folded like PostgreSQL does).
  [[nodiscard]] static Result<Glob> parse(std::string_view pattern, bool fold_case = false);
  bool matches(std::string_view text) const;
  const std::string& pattern() const { return pattern_; }

 private:
  enum class Shape : unsigned char { Any, Exact, Prefix, Suffix, General };
  std::string pattern_;  // as written
  std::string body_;     // folded when fold_case_; the literal part for Exact/Prefix/Suffix
  Shape shape_ = Shape::Exact;
  bool fold_case_ = false;
};

class NamePattern {
 public:
  // min_parts..max_parts dot-separated parts, none empty. `shapes` names the accepted forms for
  // the error message, e.g. "schema.table or table".
  [[nodiscard]] static Result<NamePattern> parse(std::string_view pattern, int min_parts, int max_parts,
                                                 std::string_view shapes);
  int size() const { return int(parts_.size()); }
  const Glob& part(int i) const { return parts_[std::size_t(i)]; }
  const Glob& last() const { return parts_.back(); }
  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  std::vector<Glob> parts_;
};

// True when any glob of the list matches.
bool any_matches(const std::vector<Glob>& globs, std::string_view text);

}  // namespace gh::policy
