#include "identity/scram.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <charconv>
#include <stdexcept>
#include <utility>

// Passwords are used as raw UTF-8 bytes, without SASLprep. PostgreSQL normalises with
// SASLprep when it can, and falls back to the raw bytes when the password is not valid
// UTF-8 or SASLprep rejects it; for ASCII passwords (the common case) both are the same.

namespace gh::identity {
namespace {

constexpr std::size_t kKeyLen = 32;        // SHA-256 output
constexpr std::size_t kRawNonceLen = 18;   // PostgreSQL's SCRAM_RAW_NONCE_LEN
constexpr std::size_t kSaltLen = 16;       // PostgreSQL's SCRAM_DEFAULT_SALT_LEN
constexpr std::uint32_t kMaxIterations = 100'000'000;
constexpr std::string_view kPrefix = "SCRAM-SHA-256$";

const unsigned char* u8(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

std::string random_bytes(std::size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), int(n)) != 1)
    throw std::runtime_error("RAND_bytes failed");  // caught at the session boundary
  return out;
}

std::optional<std::string> hmac_sha256(std::string_view key, std::string_view data) {
  std::string out(EVP_MAX_MD_SIZE, '\0');
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), int(key.size()), u8(data), data.size(),
           reinterpret_cast<unsigned char*>(out.data()), &len) == nullptr)
    return std::nullopt;
  out.resize(len);
  return out;
}

std::optional<std::string> digest(const EVP_MD* md, std::string_view data) {
  std::string out(EVP_MAX_MD_SIZE, '\0');
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), reinterpret_cast<unsigned char*>(out.data()), &len, md, nullptr) != 1)
    return std::nullopt;
  out.resize(len);
  return out;
}

std::optional<std::string> salted_password(std::string_view password, std::string_view salt, std::uint32_t iterations) {
  std::string out(kKeyLen, '\0');
  if (PKCS5_PBKDF2_HMAC(password.data(), int(password.size()), u8(salt), int(salt.size()), int(iterations),
                        EVP_sha256(), int(kKeyLen), reinterpret_cast<unsigned char*>(out.data())) != 1)
    return std::nullopt;
  return out;
}

// The proxy logs in to the same backend with the same password, salt and iteration count for
// every session; PBKDF2 (4096 rounds, ~1 ms) on each login would stall the worker thread.
// SaltedPassword is cached, keyed by a digest of its inputs. It is as sensitive as the password
// the process already holds, and never leaves memory.
std::optional<std::string> cached_salted_password(std::string_view password, std::string_view salt,
                                                  std::uint32_t iterations) {
  static std::mutex mu;
  static std::map<std::string, std::string> cache;
  std::string key(EVP_MAX_MD_SIZE, '\0');
  {
    std::string material;
    material.reserve(password.size() + salt.size() + 16);
    material.append(password).push_back('\0');
    material.append(salt).push_back('\0');
    material.append(std::to_string(iterations));
    unsigned int len = 0;
    if (EVP_Digest(material.data(), material.size(), reinterpret_cast<unsigned char*>(key.data()), &len,
                   EVP_sha256(), nullptr) != 1)
      return salted_password(password, salt, iterations);
    OPENSSL_cleanse(material.data(), material.size());
    key.resize(len);
  }
  {
    std::lock_guard lock(mu);
    if (auto it = cache.find(key); it != cache.end()) return it->second;
  }
  auto salted = salted_password(password, salt, iterations);
  if (salted) {
    std::lock_guard lock(mu);
    if (cache.size() >= 256) cache.clear();  // bounded: targets x logins is small
    cache.emplace(std::move(key), *salted);
  }
  return salted;
}

std::string xor_bytes(std::string_view a, std::string_view b) {
  std::string out(a);
  for (std::size_t i = 0; i < out.size() && i < b.size(); ++i) out[i] = char(out[i] ^ b[i]);
  return out;
}

std::string to_hex(std::string_view raw) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char c : raw) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
  }
  return out;
}

// A strictly decimal unsigned number (no sign, no spaces), as strtol with an end check.
std::optional<std::uint64_t> parse_decimal(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  std::uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

// SCRAM attribute parsing, as auth-scram.c: "<letter>=<value>" separated by ','.
struct Attr {
  char name = 0;
  std::string_view value;
};

bool is_attr_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// Reads one attribute from the front of `in` and consumes the ',' after it, if any.
std::optional<Attr> read_any_attr(std::string_view& in) {
  if (in.size() < 2 || !is_attr_letter(in[0]) || in[1] != '=') return std::nullopt;
  Attr a{in[0], {}};
  in.remove_prefix(2);
  const auto comma = in.find(',');
  if (comma == std::string_view::npos) {
    a.value = in;
    in = {};
  } else {
    a.value = in.substr(0, comma);
    in.remove_prefix(comma + 1);
  }
  return a;
}

std::optional<std::string_view> read_attr(std::string_view& in, char name) {
  auto a = read_any_attr(in);
  if (!a || a->name != name) return std::nullopt;
  return a->value;
}

// RFC 5802 "printable": %x21-2B / %x2D-7E, i.e. visible ASCII except ','.
bool is_scram_printable(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x21 && c <= 0x7e && c != ','; });
}

tl::unexpected<Error> malformed(std::string detail) {
  return fail("08P01", "malformed SCRAM message: " + std::move(detail));
}

bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

}  // namespace

// ---- base64 and comparison -------------------------------------------------------------

std::string base64_encode(std::string_view raw) {
  std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), u8(raw), int(raw.size()));
  out.resize(n < 0 ? 0 : std::size_t(n));
  return out;
}

std::optional<std::string> base64_decode(std::string_view b64) {
  // EVP_DecodeBlock skips surrounding whitespace and does not report padding, so validate
  // strictly here: whole 4-char groups of the standard alphabet, '=' only as final padding.
  if (b64.size() % 4 != 0) return std::nullopt;
  if (b64.empty()) return std::string();
  std::size_t pad = 0;
  if (b64.back() == '=') pad = b64[b64.size() - 2] == '=' ? 2 : 1;
  for (std::size_t i = 0; i < b64.size() - pad; ++i) {
    const char c = b64[i];
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
    if (!ok) return std::nullopt;
  }
  std::string out(b64.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), u8(b64), int(b64.size()));
  if (n < 0 || std::size_t(n) != out.size()) return std::nullopt;
  out.resize(out.size() - pad);
  return out;
}

bool secure_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;  // lengths are public (fixed-size keys)
  return a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

// ---- verifier -----------------------------------------------------------------------------

Result<ScramVerifier> ScramVerifier::parse(std::string_view text) {
  // Config-facing, so no SQLSTATE. The text may hold secrets: never echo it.
  auto bad = [](const char* why) { return fail("", std::string("invalid SCRAM-SHA-256 verifier: ") + why); };
  if (text.substr(0, kPrefix.size()) != kPrefix) return bad("expected prefix \"SCRAM-SHA-256$\"");
  text.remove_prefix(kPrefix.size());
  const auto dollar = text.find('$');
  if (dollar == std::string_view::npos) return bad("expected '$' between salt and keys");
  const auto head = text.substr(0, dollar);
  const auto keys = text.substr(dollar + 1);
  const auto c1 = head.find(':');
  const auto c2 = keys.find(':');
  if (c1 == std::string_view::npos || c2 == std::string_view::npos) return bad("expected ':' separators");

  ScramVerifier v;
  const auto iter = parse_decimal(head.substr(0, c1));
  if (!iter || *iter < 1 || *iter > kMaxIterations) return bad("invalid iteration count");
  v.iterations = std::uint32_t(*iter);
  auto salt = base64_decode(head.substr(c1 + 1));
  if (!salt || salt->empty()) return bad("invalid salt");
  auto stored = base64_decode(keys.substr(0, c2));
  auto server = base64_decode(keys.substr(c2 + 1));
  if (!stored || stored->size() != kKeyLen) return bad("invalid StoredKey");
  if (!server || server->size() != kKeyLen) return bad("invalid ServerKey");
  v.salt = std::move(*salt);
  v.stored_key = std::move(*stored);
  v.server_key = std::move(*server);
  return v;
}

std::string ScramVerifier::to_string() const {
  return std::string(kPrefix) + std::to_string(iterations) + ":" + base64_encode(salt) + "$" +
         base64_encode(stored_key) + ":" + base64_encode(server_key);
}

ScramVerifier ScramVerifier::make(std::string_view password, std::uint32_t iterations) {
  return make_with_salt(password, random_bytes(kSaltLen), iterations);
}

ScramVerifier ScramVerifier::make_with_salt(std::string_view password, std::string_view salt, std::uint32_t iterations) {
  // Used at start-up and by tooling, so failures throw.
  if (iterations < 1 || iterations > kMaxIterations) throw std::invalid_argument("SCRAM iteration count out of range");
  auto salted = salted_password(password, salt, iterations);
  if (!salted) throw std::runtime_error("PBKDF2 failed");
  auto client_key = hmac_sha256(*salted, "Client Key");
  auto server_key = hmac_sha256(*salted, "Server Key");
  if (!client_key || !server_key) throw std::runtime_error("HMAC failed");
  auto stored_key = digest(EVP_sha256(), *client_key);
  if (!stored_key) throw std::runtime_error("SHA-256 failed");
  ScramVerifier v;
  v.iterations = iterations;
  v.salt = std::string(salt);
  v.stored_key = std::move(*stored_key);
  v.server_key = std::move(*server_key);
  return v;
}

// ---- server -------------------------------------------------------------------------------

ScramServer::ScramServer(ScramVerifier v, std::string nonce_override)
    : v_(std::move(v)), server_nonce_override_(std::move(nonce_override)) {}

Result<std::string> ScramServer::handle_client_first(std::string_view in) {
  if (!server_first_.empty()) return fail("08P01", "unexpected SCRAM client-first-message");
  if (has_nul(in)) return malformed("NUL byte in client-first-message");

  // gs2-header: cbind-flag "," [authzid] ","
  if (in.empty()) return malformed("empty client-first-message");
  switch (in[0]) {
    case 'n':
    case 'y':  // client could do channel binding but thinks we can't: true, we offer no -PLUS
      break;
    case 'p':
      return fail("08P01",
                  "malformed SCRAM message: the client selected SCRAM-SHA-256 without channel binding, "
                  "but the SCRAM message includes channel binding data");
    default:
      return malformed("unexpected channel-binding flag");
  }
  if (in.size() < 2 || in[1] != ',') return malformed("comma expected after channel-binding flag");
  if (in.size() >= 3 && in[2] == 'a') return fail("08P01", "client uses authorization identity, but it is not supported");
  if (in.size() < 3 || in[2] != ',') return malformed("unexpected attribute in client-first-message");
  const auto gs2 = in.substr(0, 3);
  auto rest = in.substr(3);
  const auto bare = rest;

  if (!rest.empty() && rest[0] == 'm') return fail("08P01", "client requires an unsupported SCRAM extension");
  // The username attribute is ignored: PostgreSQL (and we) take the name from the startup packet.
  if (!read_any_attr(rest)) return malformed("expected username attribute in client-first-message");
  auto client_nonce = read_attr(rest, 'r');
  if (!client_nonce) return malformed("expected attribute \"r\" in client-first-message");
  if (client_nonce->empty() || !is_scram_printable(*client_nonce))
    return malformed("non-printable characters in SCRAM nonce");
  while (!rest.empty()) {  // optional extensions, ignored
    if (!read_any_attr(rest)) return malformed("invalid attribute in client-first-message");
  }

  const std::string server_nonce =
      server_nonce_override_.empty() ? base64_encode(random_bytes(kRawNonceLen)) : server_nonce_override_;
  gs2_header_ = std::string(gs2);
  client_first_bare_ = std::string(bare);
  nonce_ = std::string(*client_nonce) + server_nonce;
  server_first_ = "r=" + nonce_ + ",s=" + base64_encode(v_.salt) + ",i=" + std::to_string(v_.iterations);
  return server_first_;
}

Result<std::string> ScramServer::handle_client_final(std::string_view in) {
  if (nonce_.empty()) return fail("08P01", "unexpected SCRAM client-final-message");
  const std::string expected_nonce = std::exchange(nonce_, {});  // one final message per exchange
  if (has_nul(in)) return malformed("NUL byte in client-final-message");
  const std::string_view begin = in;

  auto cbind = read_attr(in, 'c');
  if (!cbind) return malformed("expected attribute \"c\" in client-final-message");
  if (*cbind != base64_encode(gs2_header_))
    return fail("08P01", "unexpected SCRAM channel-binding attribute in client-final-message");
  auto nonce = read_attr(in, 'r');
  if (!nonce) return malformed("expected attribute \"r\" in client-final-message");
  if (*nonce != expected_nonce) return fail("08P01", "unexpected SCRAM nonce in client-final-message");

  // Skip extensions until the proof, which must come last.
  std::size_t proof_pos = 0;
  std::optional<Attr> attr;
  do {
    proof_pos = std::size_t(in.data() - begin.data());
    attr = read_any_attr(in);
    if (!attr) return malformed("could not find proof in client-final-message");
  } while (attr->name != 'p');
  auto proof = base64_decode(attr->value);
  if (!proof || proof->size() != kKeyLen) return malformed("malformed proof in client-final-message");
  if (!in.empty() || begin.back() == ',') return malformed("garbage at end of client-final-message");

  // proof_pos is the offset of "p="; the message without proof stops before its ','.
  const auto without_proof = begin.substr(0, proof_pos - 1);
  const std::string auth_message = client_first_bare_ + "," + server_first_ + "," + std::string(without_proof);

  auto client_signature = hmac_sha256(v_.stored_key, auth_message);
  if (!client_signature) return fail("XX000", "HMAC failed");
  const std::string client_key = xor_bytes(*proof, *client_signature);
  auto stored = digest(EVP_sha256(), client_key);
  if (!stored) return fail("XX000", "SHA-256 failed");
  if (!secure_equal(*stored, v_.stored_key)) return fail("28P01", "SCRAM proof does not match");

  auto server_signature = hmac_sha256(v_.server_key, auth_message);
  if (!server_signature) return fail("XX000", "HMAC failed");
  return "v=" + base64_encode(*server_signature);
}

// ---- client -------------------------------------------------------------------------------

ScramClient::ScramClient(std::string password, std::string nonce_override, std::string username)
    : password_(std::move(password)),
      username_(std::move(username)),
      client_nonce_(nonce_override.empty() ? base64_encode(random_bytes(kRawNonceLen)) : std::move(nonce_override)) {}

std::string ScramClient::client_first() {
  std::string saslname;  // RFC 5802: ',' and '=' are escaped in the username
  for (char c : username_) {
    if (c == ',') saslname += "=2C";
    else if (c == '=') saslname += "=3D";
    else saslname += c;
  }
  client_first_bare_ = "n=" + saslname + ",r=" + client_nonce_;
  return "n,," + client_first_bare_;
}

Result<std::string> ScramClient::handle_server_first(std::string_view in) {
  if (client_first_bare_.empty()) return fail("08P01", "unexpected SCRAM server-first-message");
  if (has_nul(in)) return malformed("NUL byte in server-first-message");
  const std::string server_first(in);

  auto nonce = read_attr(in, 'r');
  if (!nonce) return malformed("expected attribute \"r\" in server-first-message");
  if (nonce->size() <= client_nonce_.size() || nonce->substr(0, client_nonce_.size()) != client_nonce_ ||
      !is_scram_printable(*nonce))
    return fail("08P01", "invalid SCRAM response (nonce mismatch)");
  auto salt_b64 = read_attr(in, 's');
  if (!salt_b64) return malformed("expected attribute \"s\" in server-first-message");
  auto salt = base64_decode(*salt_b64);
  if (!salt) return malformed("invalid salt");
  auto iter_text = read_attr(in, 'i');
  if (!iter_text) return malformed("expected attribute \"i\" in server-first-message");
  auto iterations = parse_decimal(*iter_text);
  if (!iterations || *iterations < 1 || *iterations > kMaxIterations) return malformed("invalid iteration count");
  if (!in.empty() || server_first.back() == ',') return malformed("garbage at end of server-first-message");

  auto salted = cached_salted_password(password_, *salt, std::uint32_t(*iterations));
  if (!salted) return fail("XX000", "PBKDF2 failed");
  auto client_key = hmac_sha256(*salted, "Client Key");
  auto server_key = hmac_sha256(*salted, "Server Key");
  if (!client_key || !server_key) return fail("XX000", "HMAC failed");
  auto stored_key = digest(EVP_sha256(), *client_key);
  if (!stored_key) return fail("XX000", "SHA-256 failed");

  // c=biws is base64("n,,"): no channel binding.
  const std::string without_proof = "c=biws,r=" + std::string(*nonce);
  const std::string auth_message = client_first_bare_ + "," + server_first + "," + without_proof;
  auto client_signature = hmac_sha256(*stored_key, auth_message);
  auto server_signature = hmac_sha256(*server_key, auth_message);
  if (!client_signature || !server_signature) return fail("XX000", "HMAC failed");
  expected_server_signature_ = std::move(*server_signature);
  return without_proof + ",p=" + base64_encode(xor_bytes(*client_key, *client_signature));
}

Result<void> ScramClient::handle_server_final(std::string_view in) {
  if (expected_server_signature_.empty()) return fail("08P01", "unexpected SCRAM server-final-message");
  if (has_nul(in)) return malformed("NUL byte in server-final-message");
  if (in.substr(0, 2) == "e=")
    return fail("28P01", "error received from server in SCRAM exchange: " + std::string(in.substr(2)));
  const std::string_view whole = in;
  auto v = read_attr(in, 'v');
  if (!v) return malformed("expected attribute \"v\" in server-final-message");
  auto sig = base64_decode(*v);
  if (!sig || sig->size() != kKeyLen) return malformed("malformed server signature");
  if (!in.empty() || whole.back() == ',') return malformed("garbage at end of server-final-message");
  const bool ok = secure_equal(*sig, expected_server_signature_);
  expected_server_signature_.clear();  // one final message per exchange
  if (!ok) return fail("08P01", "incorrect server signature");
  return {};
}

// ---- md5 ----------------------------------------------------------------------------------

std::string md5_password_response(std::string_view user, std::string_view password, std::string_view salt4) {
  // Empty result only when MD5 is unavailable (e.g. a FIPS-only provider): the login then
  // fails at the server instead of sending something made up.
  auto inner = digest(EVP_md5(), std::string(password) + std::string(user));
  if (!inner) return {};
  auto outer = digest(EVP_md5(), to_hex(*inner) + std::string(salt4));
  if (!outer) return {};
  return "md5" + to_hex(*outer);
}

}  // namespace gh::identity
