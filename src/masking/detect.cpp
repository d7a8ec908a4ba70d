// Content detectors. One pass over the text looks each byte up in tables and stops only where a
// detector could start: a digit after a non-digit, the first two letters of a known prefix at a
// word start (AKIA, eyJ, ghp_, sk_live_ ...), "--B" (of "-----BEGIN"), an '@', a ':', and a run
// of token characters reaching 32 bytes. At those few places a cheap C++ check (enough digits,
// the right separator at the right place) rejects most candidates; the survivors are matched by
// an anchored RE2 over a small bounded window and then confirmed in C++ (Luhn, mod-97, SSA rules,
// octet ranges, inet_pton, the JWT header, entropy). RE2 never runs over the whole text, only
// over these windows.
//
// Every window is bounded, and each forward scan that is not bounded (a JWT, an IPv6 run, a
// private key block) starts only at a left boundary that the text after it cannot offer again,
// so the total work stays linear on hostile input.
//
// False-positive decisions (each is covered by a test):
//  - ssn: only AAA-GG-SSSS with dashes. Undashed 9-digit numbers are ordinary ids.
//  - card: the first group has 4 digits when grouped (4-4-4-4, 4-6-5, 4-4-4-4-3 ...), one kind of
//    separator, 13-19 digits, Luhn, first digit 2-6 (ISO 7812 industries 7-9 are not payment
//    cards; 13 digits only from 4, 15 also from 1 for UATP), which keeps epoch timestamps in ms
//    and us out and halves the Luhn coincidences on random ids. Not inside a longer digit or
//    dash/dot-joined number, not a decimal fraction.
//  - phone: '+' and a country code with 8-15 digits (E.164), or North American numbers with
//    separators and NANP rules (area and exchange start with 2-9). A bare 10-digit run is an id.
//  - ipv4: four octets, no leading zeros, not part of a longer dotted number (1.2.3.4.5) and not
//    glued to a letter (v1.2.3.4). A bare four-part version number "1.2.3.4" is indistinguishable
//    and is reported.
//  - ipv6: inet_pton decides; a compressed form needs two non-empty groups (or "::1", or an
//    embedded IPv4) so that "a::" and C++'s "::" are not addresses.
//  - token (generic): a run of [A-Za-z0-9_+/-] (plus '=' padding) of 32-512 bytes with digits and
//    letters, a 16-byte alphanumeric stretch, entropy >= 4.0 bits/byte, and not English-looking
//    (a high vowel share with at most 2 digits). Pure hex (with or without dashes) is never a
//    generic token: that covers UUIDs and the md5/sha1/sha256 digests and commit ids that fill
//    databases; hex secrets with a known prefix are still found by the prefix rules. Runs over
//    512 bytes are encoded payloads (images, documents), not credentials.
//  - aws_key: ids by prefix; a 40-byte secret only within 64 bytes after "aws" or "secret".
#include "masking/detect.h"

#include <arpa/inet.h>
#include <re2/re2.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <string>

namespace gh::masking {

namespace {

constexpr std::array<std::string_view, kDetectorCount> kNames = {
    "email", "phone", "card", "ssn", "iban", "ipv4", "ipv6", "jwt", "aws_key", "private_key", "token"};

enum : std::uint16_t {
  kDigit = 1 << 0,
  kUpper = 1 << 1,
  kLower = 1 << 2,
  kHexLetter = 1 << 3,
  kRun = 1 << 4,     // [A-Za-z0-9_+/-]: characters of a token run
  kB64Url = 1 << 5,  // [A-Za-z0-9_-]
  kAtext = 1 << 6,   // email local part: RFC 5322 atext and '.'
  kV6 = 1 << 7,      // [0-9A-Fa-f:.]
  kAlpha = kUpper | kLower,
  kAlnum = kDigit | kUpper | kLower,
};

struct ClassTable {
  std::array<std::uint16_t, 256> v{};
};

constexpr ClassTable make_table() {
  ClassTable t;
  for (int c = 0; c < 256; ++c) {
    std::uint16_t k = 0;
    const bool digit = c >= '0' && c <= '9';
    const bool upper = c >= 'A' && c <= 'Z';
    const bool lower = c >= 'a' && c <= 'z';
    if (digit) k |= kDigit;
    if (upper) k |= kUpper;
    if (lower) k |= kLower;
    if ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) k |= kHexLetter;
    if (digit || upper || lower || c == '_' || c == '+' || c == '/' || c == '-') k |= kRun;
    if (digit || upper || lower || c == '_' || c == '-') k |= kB64Url;
    if (digit || upper || lower || c >= 0x80) k |= kAtext;
    for (char a : std::string_view("!#$%&'*+/=?^_`{|}~-.")) {
      if (c == a) k |= kAtext;
    }
    if (digit || (k & kHexLetter) || c == ':' || c == '.') k |= kV6;
    t.v[static_cast<std::size_t>(c)] = k;
  }
  return t;
}

constexpr ClassTable kTable = make_table();

// Triggers: the scan keeps the classes of the last three bytes in a 15-bit window and looks up
// whether the byte is a trigger: a digit after a non-digit, the second letter of a known prefix
// at a word start ("ey", "gh", "gi", "gl", "sk", "rk", "xo", "AK", "AS" ...), "--B", '@', ':'.
// The hot loop has no load in its loop-carried chain (shift, or, mask) and one rarely taken
// branch per byte.
enum Cls5 : std::uint8_t {
  kC5Other,
  kC5Sym,  // '_', '+', '/'
  kC5Dash,
  kC5Digit,
  kC5Letter,
  kC5A,
  kC5e,
  kC5g,
  kC5r,
  kC5s,
  kC5x,
  kC5y,
  kC5AwsSecond,  // K S G I R N
  kC5h,
  kC5i,
  kC5l,
  kC5k,
  kC5o,
  kC5B,
  kC5At,
  kC5Colon,
};
constexpr unsigned kWindowMask = 0x7FFF;

struct TriggerTable {
  std::array<std::uint8_t, 256> cls5{};
  std::array<std::uint8_t, 256> run_char{};
  std::array<std::uint8_t, kWindowMask + 1> trigger{};
};

constexpr bool in(char c, std::string_view set) { return set.find(c) != std::string_view::npos; }

constexpr std::uint8_t cls5_of(int u) {
  const char c = static_cast<char>(u);
  const std::uint16_t k = kTable.v[static_cast<std::size_t>(u)];
  if (k & kDigit) return kC5Digit;
  switch (c) {
    case 'A': return kC5A;
    case 'e': return kC5e;
    case 'g': return kC5g;
    case 'r': return kC5r;
    case 's': return kC5s;
    case 'x': return kC5x;
    case 'y': return kC5y;
    case 'K': case 'S': case 'G': case 'I': case 'R': case 'N': return kC5AwsSecond;
    case 'h': return kC5h;
    case 'i': return kC5i;
    case 'l': return kC5l;
    case 'k': return kC5k;
    case 'o': return kC5o;
    case 'B': return kC5B;
    case '@': return kC5At;
    case ':': return kC5Colon;
    case '-': return kC5Dash;
    case '_': case '+': case '/': return kC5Sym;
    default: break;
  }
  return (k & kAlpha) ? kC5Letter : kC5Other;
}

constexpr TriggerTable make_triggers() {
  TriggerTable t;
  for (int u = 0; u < 256; ++u) {
    t.cls5[static_cast<std::size_t>(u)] = cls5_of(u);
    t.run_char[static_cast<std::size_t>(u)] = (kTable.v[static_cast<std::size_t>(u)] & kRun) ? 1 : 0;
  }
  constexpr int kClasses = kC5Colon + 1;
  auto alnum = [](int c) { return c >= kC5Digit && c <= kC5B; };
  for (int a = 0; a < kClasses; ++a) {
    for (int b = 0; b < kClasses; ++b) {
      for (int c = 0; c < kClasses; ++c) {
        bool trig = false;
        if (c == kC5Digit) trig = b != kC5Digit;
        if (c == kC5At || c == kC5Colon) trig = true;
        if (!alnum(a)) {
          trig = trig || (b == kC5A && c == kC5AwsSecond) || (b == kC5e && c == kC5y) ||
                 (b == kC5g && (c == kC5h || c == kC5i || c == kC5l)) || ((b == kC5r || b == kC5s) && c == kC5k) ||
                 (b == kC5x && c == kC5o);
        }
        if (a == kC5Dash && b == kC5Dash && c == kC5B) trig = true;
        t.trigger[static_cast<std::size_t>((a << 10) | (b << 5) | c)] = trig ? 1 : 0;
      }
    }
  }
  return t;
}

constexpr TriggerTable kTriggers = make_triggers();

inline std::uint16_t cls(char c) { return kTable.v[static_cast<unsigned char>(c)]; }
inline bool is_digit(char c) { return (cls(c) & kDigit) != 0; }
inline bool is_alnum(char c) { return (cls(c) & kAlnum) != 0; }
inline bool is_word(char c) { return is_alnum(c) || c == '_'; }

// Industries 2-6 (ISO 7812) issue payment cards; 13 digits are only old Visa (4), 15 digits
// may also be UATP (1). This keeps epoch timestamps in milliseconds (13 digits starting with 1)
// and microseconds (16) out.
bool card_prefix_ok(std::string_view number) {
  const char first = number[0];
  if (number.size() == 13) return first == '4';
  if (number.size() == 15 && first == '1') return true;
  return first >= '2' && first <= '6';
}

bool luhn_ok(std::string_view digits) {
  int sum = 0;
  bool dbl = false;
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
    int d = *it - '0';
    if (dbl) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    dbl = !dbl;
  }
  return sum % 10 == 0;
}

struct IbanCountry {
  char code[3];
  std::uint8_t length;
};

// ISO 13616 registry lengths for the countries seen in practice.
constexpr IbanCountry kIbanCountries[] = {
    {"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16}, {"BG", 22},
    {"BH", 22}, {"BR", 29}, {"BY", 28}, {"CH", 21}, {"CR", 22}, {"CY", 28}, {"CZ", 24}, {"DE", 22},
    {"DK", 18}, {"DO", 28}, {"EE", 20}, {"EG", 29}, {"ES", 24}, {"FI", 18}, {"FO", 18}, {"FR", 27},
    {"GB", 22}, {"GE", 22}, {"GI", 23}, {"GL", 18}, {"GR", 27}, {"GT", 28}, {"HR", 21}, {"HU", 28},
    {"IE", 22}, {"IL", 23}, {"IQ", 23}, {"IS", 26}, {"IT", 27}, {"JO", 30}, {"KW", 30}, {"KZ", 20},
    {"LB", 28}, {"LC", 32}, {"LI", 21}, {"LT", 20}, {"LU", 20}, {"LV", 21}, {"MC", 27}, {"MD", 24},
    {"ME", 22}, {"MK", 19}, {"MR", 27}, {"MT", 31}, {"MU", 30}, {"NL", 18}, {"NO", 15}, {"PK", 24},
    {"PL", 28}, {"PS", 29}, {"PT", 25}, {"QA", 29}, {"RO", 24}, {"RS", 22}, {"SA", 24}, {"SC", 31},
    {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27}, {"ST", 25}, {"SV", 28}, {"TL", 23}, {"TN", 24},
    {"TR", 26}, {"UA", 29}, {"VA", 22}, {"VG", 24}, {"XK", 20},
};

int iban_length(char a, char b) {
  for (const auto& c : kIbanCountries) {
    if (c.code[0] == a && c.code[1] == b) return c.length;
  }
  return 0;
}

bool iban_mod97_ok(std::string_view iban) {
  unsigned r = 0;
  auto feed = [&r](char c) {
    if (is_digit(c)) {
      r = (r * 10 + static_cast<unsigned>(c - '0')) % 97;
    } else {
      r = (r * 100 + static_cast<unsigned>(c - 'A' + 10)) % 97;
    }
  };
  for (char c : iban.substr(4)) feed(c);
  for (char c : iban.substr(0, 4)) feed(c);
  return r == 1;
}

int b64url_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-' || c == '+') return 62;
  if (c == '_' || c == '/') return 63;
  return -1;
}

// Whether a base64url JWT header decodes to a JSON object that names its "alg". Only the first
// 2 KB are decoded: headers are small, and "alg" comes first in practice.
bool jwt_header_ok(std::string_view seg) {
  seg = seg.substr(0, 2048);
  std::string out;
  out.reserve(seg.size() * 3 / 4 + 3);
  unsigned acc = 0;
  int bits = 0;
  for (char c : seg) {
    const int v = b64url_value(c);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  const auto first = out.find_first_not_of(" \t\r\n");
  if (first == std::string::npos || out[first] != '{') return false;
  return out.find("\"alg\"") != std::string::npos;
}

// c * log2(c) for the symbol counts of a run (at most 512 bytes long).
double c_log2_c(std::size_t c) {
  static const std::array<double, 513> table = [] {
    std::array<double, 513> t{};
    for (std::size_t i = 1; i < t.size(); ++i) t[i] = static_cast<double>(i) * std::log2(static_cast<double>(i));
    return t;
  }();
  return table[c];
}

bool ascii_ieq(std::string_view a, std::string_view lower_b) {
  if (a.size() != lower_b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char c = a[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != lower_b[i]) return false;
  }
  return true;
}

RE2::Options re_options(bool longest) {
  RE2::Options o;
  o.set_log_errors(false);
  o.set_longest_match(longest);
  return o;
}

}  // namespace

std::string_view detector_name(Detector d) {
  const auto i = static_cast<std::size_t>(d);
  return i < kNames.size() ? kNames[i] : std::string_view("unknown");
}

std::optional<Detector> detector_from_name(std::string_view name) {
  for (std::size_t i = 0; i < kNames.size(); ++i) {
    if (kNames[i] == name) return static_cast<Detector>(i);
  }
  return std::nullopt;
}

DetectorSet all_detectors() { return DetectorSet().set(); }

namespace {

struct Patterns {
  // Shapes. Each is applied anchored to a bounded window at a candidate position.
  // RFC 5322 dot-atom, plus non-ASCII characters (RFC 6531), which must be valid UTF-8.
  RE2 email_local{R"re((?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]|[^\x00-\x7f])+(?:\.(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]|[^\x00-\x7f])+)*)re",
                  re_options(false)};
  RE2 email_domain{R"re((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59}))re",
                   re_options(true)};
  RE2 phone_intl{R"re(\+[1-9][0-9]{0,2}(?:[ .-]?(?:\([0-9]{1,4}\)|[0-9]{1,6})){1,8})re", re_options(true)};
  RE2 phone_nanp{R"re((?:1[ .-]?)?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-][0-9]{4})re", re_options(true)};
  RE2 card{R"re([0-9]{13,19}|[0-9]{4}(?: [0-9]{3,6}){2,4}|[0-9]{4}(?:-[0-9]{3,6}){2,4})re", re_options(true)};
  RE2 ssn{R"re([0-9]{3}-[0-9]{2}-[0-9]{4})re", re_options(false)};
  RE2 iban{R"re([A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){1,8}(?: ?[A-Z0-9]{1,3})?)re", re_options(true)};
  RE2 ipv4{R"re((?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3})re",
           re_options(false)};
  RE2 ipv6{R"re([0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){1,7}(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3})?)re", re_options(false)};
  RE2 jwt{R"re(eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)re", re_options(false)};
  RE2 aws_id{R"re((?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA)[A-Z0-9]{16})re", re_options(false)};
  RE2 private_key{R"re(-----BEGIN ((?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?)-----)re",
                  re_options(false)};
  RE2 token_prefix{
      R"re(gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}|xox[baprs]-[A-Za-z0-9-]{10,}|[rs]k_(?:live|test)_[A-Za-z0-9]{10,}|glpat-[A-Za-z0-9_-]{20,}|AIza[0-9A-Za-z_-]{35})re",
      re_options(true)};
};

// The hot loop: the first trigger at or after `i`, or `n`. Branch-free but for the exit, and
// nothing but shifts and masks in its loop-carried chain.
std::size_t next_trigger(const char* p, std::size_t n, std::size_t i, unsigned& window, std::size_t& run_start) {
  unsigned w = window;
  std::size_t rs = run_start;
  for (; i < n; ++i) {
    const auto u = static_cast<unsigned char>(p[i]);
    w = ((w << 5) | kTriggers.cls5[u]) & kWindowMask;
    const std::size_t keep = std::size_t{0} - kTriggers.run_char[u];
    rs = (rs & keep) | ((i + 1) & ~keep);
    if ((kTriggers.trigger[w] | static_cast<std::uint8_t>(i + 1 - rs == 32)) != 0) break;
  }
  window = w;
  run_start = rs;
  return i;
}

class Scanner {
 public:
  Scanner(const Patterns& re, DetectorSet enabled, std::string_view text, std::vector<Match>& out,
          bool stop_at_first)
      : re_(re), on_(enabled), t_(text), p_(text.data()), n_(text.size()), out_(out), stop_(stop_at_first) {}

  void run() {
    unsigned window = 0;        // classes of the last three bytes
    std::size_t run_start = 0;  // first byte of the current run of token characters
    for (std::size_t i = next_trigger(p_, n_, 0, window, run_start); i < n_;
         i = next_trigger(p_, n_, i + 1, window, run_start)) {
      if (i + 1 - run_start == 32) long_run(run_start);
      if (kTriggers.trigger[window] && trigger(i)) {  // jumped past a private key block
        i = skip_to_ - 1;
        window = 0;
        run_start = skip_to_;
      }
      if (done_) return;
    }
  }

 private:
  bool on(Detector d) const { return on_.test(static_cast<std::size_t>(d)); }

  // Returns whether the scan jumps to skip_to_.
  bool trigger(std::size_t i) {
    const char c = p_[i];
    if (is_digit(c)) {
      on_digit_start(i);
    } else if (c == '@') {
      if (on(Detector::Email)) on_at(i);
    } else if (c == ':') {
      if (on(Detector::Ipv6)) on_colon(i);
    } else if (c == 'B' && i >= 5) {
      return on_dash(i - 5);
    } else {
      on_word_start(i - 1);
    }
    return false;
  }

  // A run of token characters reached 32 bytes at `start` + 31: find its end.
  void long_run(std::size_t start) {
    if (!on(Detector::Token) && !on(Detector::AwsKey)) return;
    std::size_t e = start + 32;
    while (e < n_ && (cls(p_[e]) & kRun)) ++e;
    on_run(start, e);
  }

  void emit(Detector d, std::size_t off, std::size_t len) {
    if (!on(d) || done_) return;
    out_.push_back(Match{d, off, len});
    if (stop_) done_ = true;
  }

  char at(std::size_t i) const { return i < n_ ? p_[i] : '\0'; }

  // Anchored longest match of `re` at `pos` within at most `max_len` bytes; 0 when none.
  std::size_t match_at(const RE2& re, std::size_t pos, std::size_t max_len) const {
    const std::string_view window = t_.substr(pos, max_len);
    re2::StringPiece m;
    if (!re.Match(window, 0, window.size(), RE2::ANCHOR_START, &m, 1)) return 0;
    return m.size();
  }

  bool full_match(const RE2& re, std::string_view s) const {
    return re.Match(s, 0, s.size(), RE2::ANCHOR_BOTH, nullptr, 0);
  }

  // A number starts at `s` (a digit): not glued to a word, and not the continuation of a number
  // joined by '.', ',', '-', '/' or ':' (a decimal fraction, a longer dashed id, a time).
  bool number_start_ok(std::size_t s) const {
    if (s == 0) return true;
    const char c = p_[s - 1];
    if (is_word(c)) return false;
    if ((c == '.' || c == ',' || c == '-' || c == '/' || c == ':') && s >= 2 && is_digit(p_[s - 2])) return false;
    return true;
  }

  // A number ends at `e`: not glued to a word, and not continued by '.', ',', '-', '/' + digit.
  bool number_end_ok(std::size_t e) const {
    if (e >= n_) return true;
    const char c = p_[e];
    if (is_word(c)) return false;
    if ((c == '.' || c == ',' || c == '-' || c == '/') && is_digit(at(e + 1))) return false;
    return true;
  }

  void on_digit_start(std::size_t s) {
    const char prev = s > 0 ? p_[s - 1] : '\0';
    if (s >= 2 && (cls(p_[s - 1]) & kUpper) && (cls(p_[s - 2]) & kUpper) && (s == 2 || !is_word(p_[s - 3]))) {
      if (on(Detector::Iban)) try_iban(s - 2);
      return;
    }
    if (prev == '+') {
      if (on(Detector::Phone) && (s < 2 || !is_word(p_[s - 2]))) try_intl_phone(s - 1);
      return;
    }
    if (prev == '(') {
      if (on(Detector::Phone) && (s < 2 || !is_word(p_[s - 2]))) try_nanp(s - 1);
      return;
    }
    if (!number_start_ok(s)) return;
    if (on(Detector::Card)) try_card(s);
    if (on(Detector::Ssn)) try_ssn(s);
    if (on(Detector::Phone)) try_nanp(s);
    if (on(Detector::Ipv4)) try_ipv4(s);
  }

  void try_card(std::size_t s) {
    // Cheap: at least 13 digits, single separators between digits.
    std::size_t j = s, digits = 0;
    while (j < n_ && digits <= 19) {
      if (is_digit(p_[j])) {
        ++digits;
        ++j;
      } else if ((p_[j] == ' ' || p_[j] == '-') && is_digit(at(j + 1))) {
        ++j;
      } else {
        break;
      }
    }
    if (digits < 13) return;
    const std::size_t len = match_at(re_.card, s, 48);
    if (len == 0) return;
    const std::string_view m = t_.substr(s, len);
    std::array<char, 40> buf{};
    std::array<std::size_t, 8> group_end{};  // offsets in m just past each group
    std::array<std::size_t, 8> group_digits{};
    std::size_t nd = 0, ng = 0;
    for (std::size_t k = 0; k < m.size() && nd < buf.size(); ++k) {
      if (is_digit(m[k])) {
        buf[nd++] = m[k];
      } else if (ng < group_end.size()) {
        group_end[ng] = k;
        group_digits[ng++] = nd;
      }
    }
    if (ng < group_end.size()) {
      group_end[ng] = m.size();
      group_digits[ng++] = nd;
    }
    // Longest acceptable prefix of whole groups first (a contiguous run is one group).
    for (std::size_t g = ng; g-- > 0;) {
      const std::size_t d = group_digits[g];
      if (d < 13 || d > 19) continue;
      if (ng > 1 && g < 2) break;  // grouped: at least three groups
      const std::string_view number(buf.data(), d);
      if (!card_prefix_ok(number)) continue;
      if (!number_end_ok(s + group_end[g])) continue;
      if (!luhn_ok(number)) continue;
      emit(Detector::Card, s, group_end[g]);
      return;
    }
  }

  void try_ssn(std::size_t s) {
    if (s + 11 > n_ || p_[s + 3] != '-' || p_[s + 6] != '-') return;
    const std::string_view m = t_.substr(s, 11);
    if (!full_match(re_.ssn, m)) return;
    if (!number_end_ok(s + 11)) return;
    const std::string_view area = m.substr(0, 3), group = m.substr(4, 2), serial = m.substr(7, 4);
    if (area == "000" || area == "666" || area[0] == '9') return;
    if (group == "00" || serial == "0000") return;
    emit(Detector::Ssn, s, 11);
  }

  void try_nanp(std::size_t b) {
    // Cheap: 10 or 11 digits within the next 18 bytes of digits and separators.
    std::size_t j = b, digits = 0;
    while (j < n_ && j - b < 18) {
      const char c = p_[j];
      if (is_digit(c)) {
        ++digits;
      } else if (c != ' ' && c != '.' && c != '-' && c != '(' && c != ')') {
        break;
      }
      ++j;
    }
    if (digits < 10) return;
    const std::size_t len = match_at(re_.phone_nanp, b, 20);
    if (len == 0 || !number_end_ok(b + len)) return;
    emit(Detector::Phone, b, len);
  }

  void try_intl_phone(std::size_t b) {
    std::size_t j = b + 1, digits = 0;
    while (j < n_ && j - b < 32) {
      const char c = p_[j];
      if (is_digit(c)) {
        ++digits;
      } else if (c != ' ' && c != '.' && c != '-' && c != '(' && c != ')') {
        break;
      }
      ++j;
    }
    if (digits < 8) return;
    const std::size_t len = match_at(re_.phone_intl, b, 40);
    if (len == 0) return;
    // The longest prefix with 8-15 digits ("(0)" is a trunk prefix, not counted) that ends at the
    // match's end or before a space: a cut before '-' or '.' would split a longer number.
    std::size_t best = 0, count = 0;
    for (std::size_t k = b + 1; k < b + len; ++k) {
      const char c = p_[k];
      if (is_digit(c)) {
        if (!(c == '0' && p_[k - 1] == '(' && at(k + 1) == ')')) ++count;
      } else if ((c == ' ' || c == '(') && (is_digit(p_[k - 1]) || p_[k - 1] == ')') && count >= 8 && count <= 15) {
        best = k;
      }
    }
    if (count >= 8 && count <= 15 && number_end_ok(b + len)) best = b + len;
    if (best == 0) return;
    emit(Detector::Phone, b, best - b);
  }

  void try_ipv4(std::size_t s) {
    if (s >= 2 && p_[s - 1] == '.' && is_alnum(p_[s - 2])) return;
    std::size_t j = s, dots = 0;
    while (j < n_ && j - s <= 20 && (is_digit(p_[j]) || p_[j] == '.')) {
      dots += p_[j] == '.';
      ++j;
    }
    if (dots < 3 || j - s > 20) return;
    std::size_t e = j;
    while (e > s && p_[e - 1] == '.') --e;  // sentence end, ellipsis
    if (j < n_ && is_word(p_[j])) return;
    const std::string_view m = t_.substr(s, e - s);
    if (!full_match(re_.ipv4, m)) return;
    emit(Detector::Ipv4, s, e - s);
  }

  void try_iban(std::size_t b) {
    const int length = iban_length(p_[b], p_[b + 1]);
    if (length == 0) return;
    if (b + static_cast<std::size_t>(length) > n_) return;
    const std::size_t len = match_at(re_.iban, b, static_cast<std::size_t>(length) + 10);
    if (len == 0) return;
    std::array<char, 40> buf{};
    std::size_t got = 0, k = b;
    for (; k < b + len && got < static_cast<std::size_t>(length); ++k) {
      if (p_[k] != ' ') buf[got++] = p_[k];
    }
    if (got != static_cast<std::size_t>(length)) return;
    if (k < n_ && is_word(p_[k])) return;  // cut inside a group: a longer account number
    if (!iban_mod97_ok(std::string_view(buf.data(), got))) return;
    emit(Detector::Iban, b, k - b);
  }

  void on_word_start(std::size_t i) {
    switch (p_[i]) {
      case 'A':
        if (at(i + 1) == 'I' && at(i + 2) == 'z' && at(i + 3) == 'a') {
          if (on(Detector::Token)) try_token_prefix(i);
        } else if (on(Detector::AwsKey) && i + 20 <= n_) {
          const char c = p_[i + 1];
          if ((c == 'K' || c == 'S' || c == 'G' || c == 'I' || c == 'R' || c == 'N') &&
              full_match(re_.aws_id, t_.substr(i, 20)) && !is_word(at(i + 20))) {
            emit(Detector::AwsKey, i, 20);
          }
        }
        break;
      case 'e':
        if (at(i + 1) == 'y' && at(i + 2) == 'J' && on(Detector::Jwt)) try_jwt(i);
        break;
      case 'g':
        if ((at(i + 1) == 'h' || at(i + 1) == 'i' || at(i + 1) == 'l') && on(Detector::Token)) try_token_prefix(i);
        break;
      case 'r':
      case 's':
        if (at(i + 1) == 'k' && at(i + 2) == '_' && on(Detector::Token)) try_token_prefix(i);
        break;
      case 'x':
        if (at(i + 1) == 'o' && at(i + 2) == 'x' && on(Detector::Token)) try_token_prefix(i);
        break;
      default:
        break;
    }
  }

  void try_token_prefix(std::size_t i) {
    if (i > 0 && (cls(p_[i - 1]) & kB64Url)) return;  // inside a longer identifier
    const std::size_t len = match_at(re_.token_prefix, i, 256);
    if (len == 0 || (cls(at(i + len)) & kB64Url)) return;
    emit(Detector::Token, i, len);
  }

  void try_jwt(std::size_t i) {
    if (i > 0 && ((cls(p_[i - 1]) & kB64Url) || p_[i - 1] == '.')) return;
    auto seg_end = [this](std::size_t j) {
      while (j < n_ && (cls(p_[j]) & kB64Url)) ++j;
      return j;
    };
    const std::size_t e1 = seg_end(i);
    if (at(e1) != '.') return;
    const std::size_t e2 = seg_end(e1 + 1);
    if (e2 - e1 < 3 || at(e2) != '.') return;
    const std::size_t e3 = seg_end(e2 + 1);
    const std::string_view m = t_.substr(i, e3 - i);
    if (!full_match(re_.jwt, m)) return;
    if (!jwt_header_ok(t_.substr(i, e1 - i))) return;
    emit(Detector::Jwt, i, e3 - i);
  }

  // A dash run: "-----BEGIN ... PRIVATE KEY-----" up to its END line, or to the end of the text.
  // Returns whether a block was found (the scan then resumes after it).
  bool on_dash(std::size_t i) {
    if (!on(Detector::PrivateKey)) return false;
    if (t_.substr(i, 11) != "-----BEGIN ") return false;
    const std::string_view window = t_.substr(i, 80);
    re2::StringPiece m[2];
    if (!re_.private_key.Match(window, 0, window.size(), RE2::ANCHOR_START, m, 2)) return false;
    const std::size_t header_end = i + m[0].size();
    std::string end_line = "-----END ";
    end_line.append(m[1].data(), m[1].size());
    end_line += "-----";
    const std::size_t e = t_.find(end_line, header_end);
    const std::size_t stop = e == std::string_view::npos ? n_ : e + end_line.size();
    emit(Detector::PrivateKey, i, stop - i);
    skip_to_ = stop;
    return true;
  }

  void on_at(std::size_t a) {
    std::size_t l = a;
    while (l > 0 && a - l <= 64 && (cls(p_[l - 1]) & kAtext)) --l;
    if (a - l > 64 || l == a) return;
    std::string_view local = t_.substr(l, a - l);
    const auto dd = local.rfind("..");
    if (dd != std::string_view::npos) local = local.substr(dd + 2);
    while (!local.empty() && local.front() == '.') local.remove_prefix(1);
    if (local.empty() || local.back() == '.') return;
    if (!is_alnum(at(a + 1))) return;
    const std::size_t dlen = match_at(re_.email_domain, a + 1, 253);
    if (dlen == 0) return;
    const std::size_t end = a + 1 + dlen;
    if (end < n_ && (is_word(p_[end]) || p_[end] == '-')) return;
    if (!full_match(re_.email_local, local)) return;
    const std::size_t start = static_cast<std::size_t>(local.data() - p_);
    emit(Detector::Email, start, end - start);
  }

  void on_colon(std::size_t c) {
    if (c < v6_done_) return;
    std::size_t l = c;
    while (l > 0 && c - l <= 46 && (cls(p_[l - 1]) & kV6)) --l;
    std::size_t r = c + 1;
    while (r < n_ && (cls(p_[r]) & kV6)) ++r;
    v6_done_ = r;
    if (c - l > 46 || r - l > 48) return;
    std::size_t b = l, e = r;
    while (e > b && p_[e - 1] == '.') --e;
    if (e - b >= 2 && p_[e - 1] == ':' && p_[e - 2] != ':') --e;
    if (e - b >= 2 && p_[b] == ':' && p_[b + 1] != ':') ++b;
    if (e - b < 3 || e - b > 45) return;
    if (b > 0 && is_word(p_[b - 1])) return;
    if (e < n_ && is_word(p_[e])) return;
    const std::string_view m = t_.substr(b, e - b);
    const bool compressed = m.find("::") != std::string_view::npos;
    const auto colons = static_cast<std::size_t>(std::count(m.begin(), m.end(), ':'));
    const bool v4 = m.find('.') != std::string_view::npos;
    if (!compressed && !(colons == 7 || (colons == 6 && v4))) return;
    if (!full_match(re_.ipv6, m)) return;
    char buf[64];
    std::memcpy(buf, m.data(), m.size());
    buf[m.size()] = '\0';
    unsigned char addr[16];
    if (inet_pton(AF_INET6, buf, addr) != 1) return;
    if (compressed && !v4 && m != "::1") {
      std::size_t groups = 0;
      for (std::size_t k = 0; k < m.size(); ++k) {
        if (m[k] != ':' && (k == 0 || m[k - 1] == ':')) ++groups;
      }
      if (groups < 2) return;
    }
    emit(Detector::Ipv6, b, e - b);
  }

  // A run of token characters of 32 bytes or more: a generic high-entropy token, or an AWS
  // secret key next to its key word.
  void on_run(std::size_t start, std::size_t end) {
    const std::size_t len = end - start;
    if (len > 512) return;
    std::size_t padded = end;
    while (padded < n_ && padded - end < 2 && p_[padded] == '=') ++padded;
    const std::string_view run = t_.substr(start, len);
    std::array<std::uint16_t, 256> counts{};
    std::array<unsigned char, 64> distinct{};  // the run's alphabet has 65 symbols at most
    std::size_t ndistinct = 0;
    std::size_t digits = 0, letters = 0, vowels = 0, hexish = 0, alnum_stretch = 0, longest = 0;
    bool b64_std = true;  // only [A-Za-z0-9+/], the alphabet of AWS secrets
    for (char ch : run) {
      const auto u = static_cast<unsigned char>(ch);
      if (counts[u]++ == 0 && ndistinct < distinct.size()) distinct[ndistinct++] = u;
      const std::uint16_t k = kTable.v[u];
      if (k & kDigit) ++digits;
      if (k & kAlpha) {
        ++letters;
        const char lc = static_cast<char>(ch | 0x20);
        if (lc == 'a' || lc == 'e' || lc == 'i' || lc == 'o' || lc == 'u') ++vowels;
      }
      if ((k & (kDigit | kHexLetter)) || ch == '-') ++hexish;
      if (k & kAlnum) {
        longest = std::max(longest, ++alnum_stretch);
      } else {
        alnum_stretch = 0;
      }
      if (ch == '_' || ch == '-') b64_std = false;
    }
    if (digits == 0 || letters == 0) return;
    if (hexish == len) return;  // hex digests, UUIDs
    if (longest < 16) return;   // paths, snake_case and dashed identifiers
    if (digits <= 2 && vowels * 10 >= letters * 3) return;  // English-looking words
    // H = log2(len) - sum(c * log2(c)) / len
    double sum = 0;
    for (std::size_t d = 0; d < ndistinct; ++d) sum += c_log2_c(counts[distinct[d]]);
    const double h = std::log2(static_cast<double>(len)) - sum / static_cast<double>(len);
    if (h < 4.0) return;
    if (len == 40 && b64_std && on(Detector::AwsKey) && aws_keyword_before(start)) {
      emit(Detector::AwsKey, start, len);
      return;
    }
    emit(Detector::Token, start, padded - start);
  }

  bool aws_keyword_before(std::size_t start) const {
    const std::size_t from = start > 64 ? start - 64 : 0;
    for (std::size_t k = from; k + 3 <= start; ++k) {
      if (ascii_ieq(t_.substr(k, 3), "aws")) return true;
      if (k + 6 <= start && ascii_ieq(t_.substr(k, 6), "secret")) return true;
    }
    return false;
  }

  const Patterns& re_;
  DetectorSet on_;
  std::string_view t_;
  const char* p_;
  std::size_t n_;
  std::vector<Match>& out_;
  bool stop_;
  bool done_ = false;
  std::size_t skip_to_ = 0;
  std::size_t v6_done_ = 0;
};

}  // namespace

struct Detectors::Impl {
  Patterns re;
};

Detectors::Detectors(DetectorSet enabled) : enabled_(enabled), impl_(std::make_unique<Impl>()) {}

Detectors::~Detectors() = default;

bool Detectors::find(std::string_view text, std::vector<Match>& out) const {
  std::vector<Match> found;
  Scanner(impl_->re, enabled_, text, found, false).run();
  if (found.empty()) return false;
  std::sort(found.begin(), found.end(), [](const Match& a, const Match& b) {
    if (a.offset != b.offset) return a.offset < b.offset;
    if (a.length != b.length) return a.length > b.length;
    return a.detector < b.detector;
  });
  const std::size_t base = out.size();
  for (const Match& m : found) {
    if (out.size() > base) {
      Match& last = out.back();
      if (m.offset < last.offset + last.length) {
        if (m.length > last.length) last = m;
        continue;
      }
    }
    out.push_back(m);
  }
  return true;
}

bool Detectors::any(std::string_view text) const {
  std::vector<Match> found;
  Scanner(impl_->re, enabled_, text, found, true).run();
  return !found.empty();
}

}  // namespace gh::masking
