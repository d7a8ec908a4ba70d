#include "config/yaml_load.h"

#include <set>
#include <string>
#include <vector>

namespace gh::config {

namespace {

// Whether the quoted scalar starting at text[pos] (its opening quote) is closed.
bool closed_quote(std::string_view text, std::size_t pos) {
  const char q = text[pos];
  for (std::size_t i = pos + 1; i < text.size(); ++i) {
    if (q == '"' && text[i] == '\\') {
      ++i;  // an escape: the next character is part of the string
    } else if (text[i] == q) {
      if (q == '\'' && i + 1 < text.size() && text[i + 1] == '\'') {
        ++i;  // '' inside single quotes is one quote
        continue;
      }
      return true;
    }
  }
  return false;
}

void check_quotes(std::string_view text, const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Scalar: {
      const auto mark = n.Mark();
      if (mark.pos < 0 || std::size_t(mark.pos) >= text.size()) return;
      const char c = text[std::size_t(mark.pos)];
      if ((c == '"' || c == '\'') && !closed_quote(text, std::size_t(mark.pos)))
        throw YAML::ParserException(mark, std::string("a ") + (c == '"' ? "double" : "single") +
                                              "-quoted string starts here and is never closed");
      return;
    }
    case YAML::NodeType::Sequence:
      for (const auto& item : n) check_quotes(text, item);
      return;
    case YAML::NodeType::Map:
      for (const auto& kv : n) {
        check_quotes(text, kv.first);
        check_quotes(text, kv.second);
      }
      return;
    default:
      return;
  }
}

}  // namespace

YAML::Node load_yaml(std::string_view text) {
  // A UTF-8 byte order mark goes first: yaml-cpp skips it but counts positions without it, so
  // check_quotes looked three bytes early and missed an unclosed quote (found by adversarial
  // testing: a deny rule swallowed with check ok) or saw one that is not there.
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
  // A file that ends with a key and no value ("  max_connections:\n"): yaml-cpp puts the empty
  // value after the final line break, and errors named a line the file does not have (found by an
  // operator trial: "r.yaml:29" in a 28-line file). The trailing line breaks go, so it is the
  // key's line.
  {
    std::string_view t = text;
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ' || t.back() == '\t'))
      t.remove_suffix(1);
    if (t.ends_with(':')) text = t;
  }
  const std::string s(text);
  std::vector<YAML::Node> docs = YAML::LoadAll(s);
  while (docs.size() > 1 && docs.back().IsNull()) docs.pop_back();  // a trailing "---" holds nothing
  if (docs.size() > 1)
    throw YAML::ParserException(docs[1].Mark(),
                                "a second YAML document starts here (a `---` or `...` line ends the first one); a "
                                "Gatehouse file is one document, and everything from here on would be ignored: "
                                "remove that line");
  YAML::Node root = docs.empty() ? YAML::Node() : docs.front();
  check_quotes(s, root);
  return root;
}

std::optional<DuplicateKey> find_duplicate_key(const YAML::Node& n, const std::string& path) {
  if (n.IsMap()) {
    std::set<std::string> seen;
    for (const auto& kv : n) {
      const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : std::string();
      const std::string here = path.empty() ? key : path + "." + key;
      if (!key.empty() && !seen.insert(key).second) return DuplicateKey{kv.first, here};
      if (auto d = find_duplicate_key(kv.second, here)) return d;
    }
  } else if (n.IsSequence()) {
    for (std::size_t i = 0; i < n.size(); ++i)
      if (auto d = find_duplicate_key(n[i], path + "[" + std::to_string(i) + "]")) return d;
  }
  return std::nullopt;
}

}  // namespace gh::config
