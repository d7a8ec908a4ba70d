#include "policy/glob.h"

namespace gh::policy {

namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; }

std::string fold(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = lower(c);
  return out;
}

// Iterative match with a single backtrack point per `*`: O(n*m) worst case, no recursion, no
// allocation, safe on hostile input.
bool general_match(std::string_view p, std::string_view s, bool fold_case) {
  std::size_t pi = 0, si = 0, star = std::string_view::npos, mark = 0;
  while (si < s.size()) {
    const char sc = fold_case ? lower(s[si]) : s[si];
    if (pi < p.size() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == sc))) {
      ++pi;
      ++si;
    } else if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = si;
    } else if (star != std::string_view::npos) {
      pi = star + 1;
      si = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

bool equal(std::string_view a, std::string_view b, bool fold_case) {
  if (a.size() != b.size()) return false;
  if (!fold_case) return a == b;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != b[i]) return false;
  return true;
}

}  // namespace

Result<Glob> Glob::parse(std::string_view pattern, bool fold_case) {
  if (pattern.empty()) return fail("", "empty pattern");
  for (char c : pattern) {
    if (c == '[' || c == ']' || c == '{' || c == '}' || c == '\\')
      return fail("", "bad glob \"" + std::string(pattern) + "\": only * and ? are special; '" + std::string(1, c) +
                          "' is not supported");
    if (static_cast<unsigned char>(c) < 0x20) return fail("", "bad glob: control character in pattern");
  }
  Glob g;
  g.pattern_ = std::string(pattern);
  g.fold_case_ = fold_case;
  const std::string body = fold_case ? fold(pattern) : std::string(pattern);
  const auto first_wild = body.find_first_of("*?");
  if (body.find_first_not_of('*') == std::string::npos) {
    g.shape_ = Shape::Any;
  } else if (first_wild == std::string::npos) {
    g.shape_ = Shape::Exact;
    g.body_ = body;
  } else if (first_wild == body.size() - 1 && body.back() == '*') {
    g.shape_ = Shape::Prefix;
    g.body_ = body.substr(0, body.size() - 1);
  } else if (body.front() == '*' && body.find_first_of("*?", 1) == std::string::npos) {
    g.shape_ = Shape::Suffix;
    g.body_ = body.substr(1);
  } else {
    g.shape_ = Shape::General;
    g.body_ = body;
  }
  return g;
}

bool Glob::matches(std::string_view s) const {
  switch (shape_) {
    case Shape::Any:
      return true;
    case Shape::Exact:
      return equal(s, body_, fold_case_);
    case Shape::Prefix:
      return s.size() >= body_.size() && equal(s.substr(0, body_.size()), body_, fold_case_);
    case Shape::Suffix:
      return s.size() >= body_.size() && equal(s.substr(s.size() - body_.size()), body_, fold_case_);
    case Shape::General:
      return general_match(body_, s, fold_case_);
  }
  return false;
}

Result<NamePattern> NamePattern::parse(std::string_view pattern, int min_parts, int max_parts,
                                       std::string_view shapes) {
  NamePattern np;
  np.pattern_ = std::string(pattern);
  if (pattern.empty()) return fail("", "empty pattern");
  std::size_t start = 0;
  while (true) {
    const auto dot = pattern.find('.', start);
    const auto part = pattern.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (part.empty())
      return fail("", "bad name pattern \"" + std::string(pattern) + "\": empty part between dots");
    auto g = Glob::parse(part);
    if (!g) return tl::unexpected(g.error());
    np.parts_.push_back(std::move(*g));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (np.size() < min_parts || np.size() > max_parts)
    return fail("", "bad name pattern \"" + std::string(pattern) + "\": expected " + std::string(shapes));
  return np;
}

bool any_matches(const std::vector<Glob>& globs, std::string_view text) {
  for (const auto& g : globs)
    if (g.matches(text)) return true;
  return false;
}

}  // namespace gh::policy
