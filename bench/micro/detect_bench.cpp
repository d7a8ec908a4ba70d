// Content detectors over text. Target: >= 200 MB/s per core on realistic mixed text; hostile
// inputs (digits, '@' and dots, base64 ...) stay linear and above ~20 MB/s.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <iterator>
#include <string>
#include <vector>

#include "masking/detect.h"

namespace {

using gh::masking::Detectors;
using gh::masking::Match;

struct Rng {
  std::uint64_t s;
  std::uint64_t next() {  // splitmix64: deterministic across platforms
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::size_t below(std::size_t n) { return static_cast<std::size_t>(next() % n); }
};

const char* const kWords[] = {
    "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not",
    "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had", "they", "you", "were",
    "their", "one", "all", "we", "can", "her", "has", "there", "been", "if", "more", "when", "will", "would",
    "who", "so", "no", "customer", "account", "payment", "invoice", "shipping", "address", "delivered",
    "requested", "refund", "because", "package", "arrived", "damaged", "support", "ticket", "escalated",
    "manager", "approved", "credit", "balance", "subscription", "renewal", "cancelled", "upgrade", "version",
    "server", "database", "migration", "deployment", "configuration", "environment", "production", "staging",
    "internationalization", "responsibilities", "straightforward", "acknowledgement", "unfortunately",
    "representative", "satisfaction", "questionnaire", "availability", "warehouse", "quarterly", "reconciliation"};

const char* const kNames[] = {"Alice", "Bob", "Carol", "Dmitri", "Eve", "François", "Günther", "Hiroshi", "Ingrid",
                              "José", "Kwame", "Li", "Mallory", "Nadia", "Oscar", "Priya", "Quentin", "Rosa"};

const char* const kHits[] = {
    "alice.smith@example.com",
    "+1 415 555 2671",
    "(212) 555-0100",
    "4111 1111 1111 1111",
    "5555555555554444",
    "123-45-6789",
    "DE89 3704 0044 0532 0130 00",
    "GB82WEST12345698765432",
    "192.168.10.24",
    "2001:db8::8a2e:370:7334",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "Zx8Kq2LmN9pRt4VwY7bC3dF6gH1jK5sA0eUoIi",
};

void append_number(Rng& r, std::string& out) {
  char buf[64];
  switch (r.below(6)) {
    case 0:  // 9-digit id
      std::snprintf(buf, sizeof buf, "%09llu", static_cast<unsigned long long>(r.below(1000000000)));
      break;
    case 1:  // amount
      std::snprintf(buf, sizeof buf, "%zu,%03zu.%02zu", r.below(100), r.below(1000), r.below(100));
      break;
    case 2:  // date
      std::snprintf(buf, sizeof buf, "20%02zu-%02zu-%02zu", r.below(30), 1 + r.below(12), 1 + r.below(28));
      break;
    case 3:  // version string
      std::snprintf(buf, sizeof buf, "%zu.%zu.%zu", r.below(10), r.below(30), r.below(100));
      break;
    case 4:  // small count
      std::snprintf(buf, sizeof buf, "%zu", r.below(500));
      break;
    default:  // time
      std::snprintf(buf, sizeof buf, "%02zu:%02zu:%02zu", r.below(24), r.below(60), r.below(60));
      break;
  }
  out += buf;
}

// Sentences of words, names and numbers; with `hits`, about one sensitive value per 2 KB.
std::string make_corpus(std::size_t size, bool hits, bool numbers, std::size_t* planted = nullptr) {
  Rng r{42};
  std::string out;
  out.reserve(size + 256);
  std::size_t next_hit = 2048;
  while (out.size() < size) {
    const std::size_t words = 6 + r.below(14);
    for (std::size_t w = 0; w < words; ++w) {
      const std::size_t pick = r.below(20);
      if (pick == 0) {
        out += kNames[r.below(std::size(kNames))];
      } else if (pick == 1 && numbers) {
        append_number(r, out);
      } else {
        out += kWords[r.below(std::size(kWords))];
      }
      if (hits && out.size() >= next_hit) {
        out += ' ';
        out += kHits[r.below(std::size(kHits))];
        if (planted != nullptr) ++*planted;
        next_hit += 1024 + r.below(2048);
      }
      out += w + 1 == words ? ". " : (r.below(8) == 0 ? ", " : " ");
    }
    if (r.below(10) == 0) out += '\n';
  }
  return out;
}

std::string make_from_alphabet(std::size_t size, std::string_view alphabet, std::uint64_t seed) {
  Rng r{seed};
  std::string out(size, ' ');
  for (auto& c : out) c = alphabet[r.below(alphabet.size())];
  return out;
}

std::string repeat(std::string_view unit, std::size_t size) {
  std::string out;
  out.reserve(size + unit.size());
  while (out.size() < size) out += unit;
  return out;
}

void run_find(benchmark::State& state, const std::string& text) {
  const Detectors det;
  std::vector<Match> out;
  std::size_t found = 0;
  for (auto _ : state) {
    out.clear();
    det.find(text, out);
    found = out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
  state.counters["matches"] = static_cast<double>(found);
}

void BM_DetectFindMixed(benchmark::State& state) {
  static std::size_t planted = 0;
  static const std::string text = make_corpus(4u << 20, true, true, &planted);
  run_find(state, text);
  state.counters["planted"] = static_cast<double>(planted);  // every planted value is one match
}
BENCHMARK(BM_DetectFindMixed)->Unit(benchmark::kMillisecond);

// `any` over text without a hit: it has to scan it all (with hits it stops within ~2 KB).
void BM_DetectAnyNoHits(benchmark::State& state) {
  static const std::string text = make_corpus(4u << 20, false, true);
  const Detectors det;
  for (auto _ : state) benchmark::DoNotOptimize(det.any(text));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_DetectAnyNoHits)->Unit(benchmark::kMillisecond);

void BM_DetectFindProseNumbersNoHits(benchmark::State& state) {
  static const std::string text = make_corpus(4u << 20, false, true);
  run_find(state, text);
}
BENCHMARK(BM_DetectFindProseNumbersNoHits)->Unit(benchmark::kMillisecond);

void BM_DetectFindPureProse(benchmark::State& state) {
  static const std::string text = make_corpus(4u << 20, false, false);
  run_find(state, text);
}
BENCHMARK(BM_DetectFindPureProse)->Unit(benchmark::kMillisecond);

void BM_DetectHostileDigits(benchmark::State& state) {
  static const std::string text = make_from_alphabet(1u << 20, "0123456789", 1);
  run_find(state, text);
}
BENCHMARK(BM_DetectHostileDigits)->Unit(benchmark::kMillisecond);

void BM_DetectHostileDigitsSpaced(benchmark::State& state) {
  static const std::string text = make_from_alphabet(1u << 20, "0123456789 -.", 2);
  run_find(state, text);
}
BENCHMARK(BM_DetectHostileDigitsSpaced)->Unit(benchmark::kMillisecond);

void BM_DetectHostileAtDots(benchmark::State& state) {
  static const std::string text = make_from_alphabet(1u << 20, "@.", 3);
  run_find(state, text);
}
BENCHMARK(BM_DetectHostileAtDots)->Unit(benchmark::kMillisecond);

void BM_DetectHostileAtDotsLetters(benchmark::State& state) {
  static const std::string text = make_from_alphabet(1u << 20, "@.ab", 4);
  run_find(state, text);
}
BENCHMARK(BM_DetectHostileAtDotsLetters)->Unit(benchmark::kMillisecond);

void BM_DetectHostileEmails(benchmark::State& state) {  // every 7 bytes a valid email
  static const std::string text = repeat("a@b.cc ", 1u << 20);
  run_find(state, text);
}
BENCHMARK(BM_DetectHostileEmails)->Unit(benchmark::kMillisecond);

void BM_DetectHostileBase64(benchmark::State& state) {
  static const std::string text =
      make_from_alphabet(1u << 20, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 5);
  run_find(state, text);
}
BENCHMARK(BM_DetectHostileBase64)->Unit(benchmark::kMillisecond);

void BM_DetectHostileBase64Lines(benchmark::State& state) {  // a token every 41 bytes
  static const std::string text = [] {
    std::string t =
        make_from_alphabet(1u << 20, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 6);
    for (std::size_t i = 40; i < t.size(); i += 41) t[i] = '\n';
    return t;
  }();
  run_find(state, text);
}
BENCHMARK(BM_DetectHostileBase64Lines)->Unit(benchmark::kMillisecond);

void BM_DetectHostileColonsHex(benchmark::State& state) {
  static const std::string text = make_from_alphabet(1u << 20, "0123456789abcdef:.", 7);
  run_find(state, text);
}
BENCHMARK(BM_DetectHostileColonsHex)->Unit(benchmark::kMillisecond);

void BM_DetectHostilePrefixes(benchmark::State& state) {
  static const std::string text = repeat("eyJ.eyJ. AKIA ghp_ sk_live_ xoxb- -----BEGIN +1 (415) ", 1u << 20);
  run_find(state, text);
}
BENCHMARK(BM_DetectHostilePrefixes)->Unit(benchmark::kMillisecond);

}  // namespace
