#include "audit/signer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "audit/record.h"

namespace gh::audit {

struct CheckpointSigner::Key {
  EVP_PKEY* pkey = nullptr;  // Ed25519
  bool is_private = false;
  std::string secret;        // HMAC
  ~Key() {
    if (pkey) EVP_PKEY_free(pkey);
    OPENSSL_cleanse(secret.data(), secret.size());
  }
};

namespace {

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail("", "cannot read the checkpoint key file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::optional<std::string> unhex(std::string_view h) {
  if (h.size() % 2) return std::nullopt;
  std::string out(h.size() / 2, '\0');
  for (std::size_t i = 0; i < out.size(); ++i) {
    unsigned v = 0;
    if (std::sscanf(std::string(h.substr(2 * i, 2)).c_str(), "%2x", &v) != 1) return std::nullopt;
    out[i] = char(v);
  }
  return out;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

CheckpointSigner::CheckpointSigner(CheckpointSigner&&) noexcept = default;
CheckpointSigner& CheckpointSigner::operator=(CheckpointSigner&&) noexcept = default;
CheckpointSigner::~CheckpointSigner() = default;

std::optional<CheckpointSigner::Algorithm> CheckpointSigner::algorithm_from_name(std::string_view n) {
  if (n == "ed25519") return Algorithm::Ed25519;
  if (n == "hmac-sha256") return Algorithm::HmacSha256;
  return std::nullopt;
}

std::string_view CheckpointSigner::name(Algorithm a) { return a == Algorithm::Ed25519 ? "ed25519" : "hmac-sha256"; }

bool CheckpointSigner::can_sign() const { return key_ && (algorithm_ == Algorithm::HmacSha256 || key_->is_private); }

std::string CheckpointSigner::message(std::string_view node, std::uint64_t seq, std::string_view hash_hex) {
  std::string m = "gatehouse-audit-checkpoint/v1\n";
  m += node;
  m += '\n';
  m += std::to_string(seq);
  m += '\n';
  m += hash_hex;
  return m;
}

Result<CheckpointSigner> CheckpointSigner::load(Algorithm algorithm, const std::string& key_file) {
  auto text = read_file(key_file);
  if (!text) return tl::unexpected(text.error());
  CheckpointSigner s;
  s.algorithm_ = algorithm;
  s.key_ = std::make_unique<Key>();
  if (algorithm == Algorithm::HmacSha256) {
    auto raw = unhex(trim(*text));
    std::string secret = raw ? *raw : *text;
    if (secret.size() < 32)
      return fail("", "the HMAC checkpoint key in " + key_file + " is shorter than 32 bytes; make one with `gatehouse audit keygen`");
    s.key_->secret = std::move(secret);
    s.key_id_ = sha256_hex(s.key_->secret).substr(0, 16);
    return s;
  }
  BIO* bio = BIO_new_mem_buf(text->data(), int(text->size()));
  EVP_PKEY* pkey = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  bool is_private = pkey != nullptr;
  if (!pkey) {
    BIO_free(bio);
    bio = BIO_new_mem_buf(text->data(), int(text->size()));
    pkey = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  }
  BIO_free(bio);
  if (!pkey || EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519) {
    if (pkey) EVP_PKEY_free(pkey);
    return fail("", key_file + " is not an Ed25519 PEM key; make one with `gatehouse audit keygen`");
  }
  s.key_->pkey = pkey;
  s.key_->is_private = is_private;
  unsigned char pub[32];
  std::size_t n = sizeof pub;
  EVP_PKEY_get_raw_public_key(pkey, pub, &n);
  s.key_id_ = sha256_hex(std::string_view(reinterpret_cast<char*>(pub), n)).substr(0, 16);
  return s;
}

Result<void> CheckpointSigner::generate(Algorithm algorithm, const std::string& key_file) {
  std::string content;
  if (algorithm == Algorithm::HmacSha256) {
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof raw) != 1) return fail("", "no randomness for the key");
    content = hex(std::string_view(reinterpret_cast<char*>(raw), sizeof raw)) + "\n";
  } else {
    EVP_PKEY* pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
    if (!pkey) return fail("", "cannot generate an Ed25519 key");
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, pkey, nullptr, nullptr, 0, nullptr, nullptr);
    char* p = nullptr;
    const long n = BIO_get_mem_data(bio, &p);
    content.assign(p, std::size_t(n));
    BIO_free(bio);
    EVP_PKEY_free(pkey);
  }
  const int fd = ::open(key_file.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return fail("", "cannot create " + key_file + " (it must not exist yet)");
  const bool ok = ::write(fd, content.data(), content.size()) == ssize_t(content.size());
  ::close(fd);
  if (!ok) return fail("", "cannot write " + key_file);
  return {};
}

Result<std::string> CheckpointSigner::sign(std::string_view msg) const {
  if (!can_sign()) return fail("", "the checkpoint key can only verify (it is a public key)");
  if (algorithm_ == Algorithm::HmacSha256) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    HMAC(EVP_sha256(), key_->secret.data(), int(key_->secret.size()), reinterpret_cast<const unsigned char*>(msg.data()),
         msg.size(), md, &n);
    return hex(std::string_view(reinterpret_cast<char*>(md), n));
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned char sig[64];
  std::size_t n = sizeof sig;
  const bool ok = EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, key_->pkey) == 1 &&
                  EVP_DigestSign(ctx, sig, &n, reinterpret_cast<const unsigned char*>(msg.data()), msg.size()) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) return fail("", "Ed25519 signing failed");
  return hex(std::string_view(reinterpret_cast<char*>(sig), n));
}

bool CheckpointSigner::verify(std::string_view msg, std::string_view signature_hex) const {
  if (!key_) return false;
  auto sig = unhex(signature_hex);
  if (!sig) return false;
  if (algorithm_ == Algorithm::HmacSha256) {
    auto mine = sign(msg);
    return mine && mine->size() == signature_hex.size() &&
           CRYPTO_memcmp(mine->data(), signature_hex.data(), mine->size()) == 0;
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok = EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, key_->pkey) == 1 &&
                  EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig->data()), sig->size(),
                                   reinterpret_cast<const unsigned char*>(msg.data()), msg.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

}  // namespace gh::audit
