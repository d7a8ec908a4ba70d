#include "masking/detect.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace gh::masking {
namespace {

DetectorSet only(Detector d) { return DetectorSet().set(static_cast<std::size_t>(d)); }

std::vector<Match> scan(const Detectors& det, std::string_view text) {
  std::vector<Match> out;
  det.find(text, out);
  return out;
}

// The whole of `value`, surrounded by prose, is found as exactly one match of `d` (all detectors
// on, so that a competing detector taking it would fail too).
void expect_found(Detector d, const std::string& value) {
  static const Detectors all;
  const std::string text = "Note: value " + value + " was entered.";
  const auto got = scan(all, text);
  ASSERT_EQ(got.size(), 1u) << detector_name(d) << " '" << value << "'";
  EXPECT_EQ(got[0].detector, d) << value << " taken as " << detector_name(got[0].detector);
  EXPECT_EQ(got[0].offset, 12u) << value;
  EXPECT_EQ(got[0].length, value.size()) << value << " -> '" << text.substr(got[0].offset, got[0].length) << "'";
}

// No match of `d` anywhere in `value` surrounded by prose.
void expect_not_found(Detector d, const std::string& value) {
  const Detectors det(only(d));
  const std::string text = "Note: value " + value + " was entered.";
  const auto got = scan(det, text);
  for (const auto& m : got) {
    ADD_FAILURE() << detector_name(d) << " found '" << text.substr(m.offset, m.length) << "' in '" << value << "'";
  }
  EXPECT_FALSE(det.any(text)) << value;
}

TEST(DetectorNames, RoundTrip) {
  for (std::size_t i = 0; i < kDetectorCount; ++i) {
    const auto d = static_cast<Detector>(i);
    const auto name = detector_name(d);
    EXPECT_FALSE(name.empty());
    EXPECT_EQ(detector_from_name(name), d) << name;
  }
  EXPECT_EQ(detector_name(Detector::AwsKey), "aws_key");
  EXPECT_EQ(detector_name(Detector::PrivateKey), "private_key");
  EXPECT_EQ(detector_from_name("EMAIL"), std::nullopt);
  EXPECT_EQ(detector_from_name(""), std::nullopt);
  EXPECT_EQ(detector_from_name("credit_card"), std::nullopt);
  EXPECT_EQ(all_detectors().count(), kDetectorCount);
}

TEST(Detect, EmptyInput) {
  const Detectors det;
  std::vector<Match> out;
  EXPECT_FALSE(det.find("", out));
  EXPECT_TRUE(out.empty());
  EXPECT_FALSE(det.any(""));
  EXPECT_FALSE(det.any("just some ordinary words, nothing to see"));
}

TEST(Detect, FindAppendsToOut) {
  const Detectors det;
  std::vector<Match> out{Match{Detector::Ssn, 999, 1}};
  EXPECT_TRUE(det.find("mail bob@example.com", out));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].offset, 999u);
  EXPECT_EQ(out[1].detector, Detector::Email);
  EXPECT_EQ(out[1].offset, 5u);
}

TEST(Email, Positives) {
  for (const char* v : {"john.doe@example.com", "a@b.co", "first.last+tag@sub.example.co.uk", "user_name-1@my-domain.org",
                        "x!#$%&'*+/=?^_`{|}~-@example.io", "UPPER@EXAMPLE.COM", "o'brien@example.ie",
                        "jürgen@example.de", "user@example.xn--p1ai", "1234@numbers.net"}) {
    expect_found(Detector::Email, v);
  }
}

TEST(Email, Negatives) {
  for (const char* v : {"@example.com", "user@", "user@localhost", "user@.com", "user@example", "user@example.c",
                        "user.@example.com", "user..@example.com", "user@-example.com", "user@example.com1",
                        "a@b@c", "@@@", "user@exa_mple.com"}) {
    expect_not_found(Detector::Email, v);
  }
}

TEST(Email, TrimsDotsAndStopsAtDelimiters) {
  const Detectors det(only(Detector::Email));
  auto got = scan(det, "<mailto:bob@example.com>, .alice@example.org.");
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].offset, 8u);
  EXPECT_EQ(got[0].length, std::string_view("bob@example.com").size());
  EXPECT_EQ(got[1].offset, 27u);
  EXPECT_EQ(got[1].length, std::string_view("alice@example.org").size());
}

TEST(Phone, Positives) {
  for (const char* v : {"+1 415 555 2671", "+14155552671", "(415) 555-2671", "415-555-2671", "415.555.2671",
                        "+44 20 7946 0958", "+44 (0)20 7946 0958", "+49 30 12345678", "1-800-555-0199",
                        "+33 1 23 45 67 89", "1 (212) 555-0100"}) {
    expect_found(Detector::Phone, v);
  }
}

TEST(Phone, Negatives) {
  for (const char* v : {"4155552671", "123-456-7890", "415-155-2671", "+1 234", "12345", "2024-01-15",
                        "+1234567890123456", "415-555-26710", "415-555-2671-3", "x+14155552671", "555-2671"}) {
    expect_not_found(Detector::Phone, v);
  }
}

TEST(Card, Positives) {
  for (const char* v : {"4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111", "5555555555554444",
                        "378282246310005", "3782 822463 10005", "6011111111111117", "3530111333300000",
                        "30569309025904", "2223003122003222", "4222222222222", "6759 6498 2643 8453"}) {
    expect_found(Detector::Card, v);
  }
}

TEST(Card, Negatives) {
  for (const char* v : {
           "4111111111111112",           // Luhn
           "4111 1111 1111 1112",        // Luhn, grouped
           "5555555555554445",           // Luhn
           "7111111111111114",           // Luhn-valid, but not a payment card industry
           "41111111111111111111",       // inside a longer digit run
           "94111111111111111",          // inside a longer digit run
           "x4111111111111111",          // glued to a word
           "4111111111111111x",          // glued to a word
           "0.4111111111111111",         // a decimal fraction
           "4111-1111-1111-1111-1111",   // a longer dashed number
           "4111 11 11 1111 1111",       // not card grouping
           "4111-1111 1111-1111",        // mixed separators
           "123456789",                  // an id
           "411111111111",               // 12 digits
           "1700000000004",              // epoch milliseconds (Luhn-valid)
           "1700000000000001",           // epoch microseconds (Luhn-valid)
       }) {
    expect_not_found(Detector::Card, v);
  }
}

TEST(Card, GroupedCardFollowedByAnotherNumber) {
  const Detectors det(only(Detector::Card));
  const auto got = scan(det, "card 4111 1111 1111 1111 2024 exp");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].offset, 5u);
  EXPECT_EQ(got[0].length, 19u);
}

TEST(Ssn, Positives) {
  for (const char* v : {"123-45-6789", "001-01-0001", "899-99-9999", "665-12-3456", "667-12-3456", "123-01-0001",
                        "219-09-9999", "772-34-5678"}) {
    expect_found(Detector::Ssn, v);
  }
}

TEST(Ssn, Negatives) {
  for (const char* v : {"123456789", "000-12-3456", "666-12-3456", "900-12-3456", "999-99-9999", "123-00-4567",
                        "123-45-0000", "123-45-67890", "1123-45-6789", "123 45 6789", "a123-45-6789", "123-45-6789-1"}) {
    expect_not_found(Detector::Ssn, v);
  }
}

TEST(Ssn, NineDigitIdsAreNotSsns) {
  const Detectors det;
  const std::string text =
      "customer 123456789 placed order 987654321; account 555443333 and id=078051120, ref #219099999.";
  EXPECT_FALSE(det.any(text));
  std::vector<Match> out;
  EXPECT_FALSE(det.find(text, out));
}

TEST(Iban, Positives) {
  for (const char* v : {"DE89 3704 0044 0532 0130 00", "DE89370400440532013000", "GB82 WEST 1234 5698 7654 32",
                        "GB82WEST12345698765432", "FR14 2004 1010 0505 0001 3M02 606", "NL91 ABNA 0417 1643 00",
                        "ES91 2100 0418 4502 0005 1332", "IT60 X054 2811 1010 0000 0123 456", "CH93 0076 2011 6238 5295 7",
                        "BE68 5390 0754 7034", "NO93 8601 1117 947", "PL61 1090 1014 0000 0712 1981 2874"}) {
    expect_found(Detector::Iban, v);
  }
}

TEST(Iban, Negatives) {
  for (const char* v : {"DE89 3704 0044 0532 0130 01",  // checksum
                        "DE88 3704 0044 0532 0130 00",  // checksum
                        "XX89 3704 0044 0532 0130 00",  // unknown country
                        "DE89 3704 0044 0532 0130",     // too short for DE
                        "DE89370400440532013000123",    // too long for DE
                        "de89 3704 0044 0532 0130 00",  // lowercase
                        "GB82 WEST 1234 5698 7654 3",   // too short
                        "XDE89370400440532013000",      // glued to a word
                        "DE8937 0400 4405 3201 3000"}) {
    expect_not_found(Detector::Iban, v);
  }
}

TEST(Ipv4, PositivesAndNegatives) {
  for (const char* v : {"192.168.1.1", "10.0.0.1", "255.255.255.255", "0.0.0.0", "8.8.8.8", "172.16.254.3"}) {
    expect_found(Detector::Ipv4, v);
  }
  for (const char* v : {"999.1.1.1", "256.1.1.1", "1.2.3", "1.2.3.4.5", "1.2.3.4.5.6", "01.2.3.4", "1.2.03.4",
                        "v1.2.3.4", "1.2.3.4a", "3.14159", "1.2.3.4.", /* "1.2.3.4." is a sentence end: checked below */}) {
    if (std::string_view(v) == "1.2.3.4.") continue;
    expect_not_found(Detector::Ipv4, v);
  }
}

TEST(Ipv4, DelimitersAndVersions) {
  const Detectors det(only(Detector::Ipv4));
  auto got = scan(det, "connect to 10.0.0.1:5432 (or [192.168.0.1]). Ends 8.8.4.4.");
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].offset, 11u);
  EXPECT_EQ(got[0].length, 8u);
  EXPECT_EQ(got[2].length, 7u);
  EXPECT_FALSE(det.any("upgraded from 1.2.3.4.5 to 2.0.0.1.7, see 999.1.1.1 and 10.0.0.256"));
}

TEST(Ipv6, PositivesAndNegatives) {
  for (const char* v : {"2001:db8::8a2e:370:7334", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "::1",
                        "::ffff:192.0.2.128", "fe80::1ff:fe23:4567:890a", "2001:db8::1"}) {
    expect_found(Detector::Ipv6, v);
  }
  for (const char* v : {"12:30:45", "std::vector", "::", "a::", "00:1a:2b:3c:4d:5e", "1:2:3:4:5:6:7:8:9",
                        "2001:db8:::1", "2001:db8::g", "dead:beef"}) {
    expect_not_found(Detector::Ipv6, v);
  }
}

TEST(Ipv6, BracketsAndTrailingPunctuation) {
  const Detectors det(only(Detector::Ipv6));
  auto got = scan(det, "listen [2001:db8::1]:8080, address: fe80::1.");
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].offset, 8u);
  EXPECT_EQ(got[0].length, 11u);
  EXPECT_EQ(got[1].length, 7u);
}

const char* const kJwt =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

TEST(Jwt, PositivesAndNegatives) {
  expect_found(Detector::Jwt, kJwt);
  expect_found(Detector::Jwt, "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.");  // alg none, empty signature
  expect_not_found(Detector::Jwt, "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxIn0.abc");   // header without alg
  expect_not_found(Detector::Jwt, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0");  // two parts
  expect_not_found(Detector::Jwt, "xeyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.abc");
  expect_not_found(Detector::Jwt, "eyJhbGc!.eyJzdWIiOiIxIn0.abc");
  const Detectors det;
  const std::string text = std::string("Authorization: Bearer ") + kJwt + "\n";
  auto got = scan(det, text);
  ASSERT_EQ(got.size(), 1u);  // its parts are also high-entropy runs: the whole JWT wins
  EXPECT_EQ(got[0].detector, Detector::Jwt);
  EXPECT_EQ(got[0].offset, 22u);
}

TEST(AwsKey, IdsAndSecrets) {
  expect_found(Detector::AwsKey, "AKIAIOSFODNN7EXAMPLE");
  expect_found(Detector::AwsKey, "ASIAY34FZKBOKMUTVV7A");
  expect_not_found(Detector::AwsKey, "AKIAIOSFODNN7EXAMPL");
  expect_not_found(Detector::AwsKey, "AKIAIOSFODNN7EXAMPLEX");
  expect_not_found(Detector::AwsKey, "XAKIAIOSFODNN7EXAMPLE");
  expect_not_found(Detector::AwsKey, "akiaiosfodnn7example");
  expect_not_found(Detector::AwsKey, "ABCDIOSFODNN7EXAMPLE");
  const Detectors det;
  const std::string text = "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n";
  auto got = scan(det, text);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].detector, Detector::AwsKey);
  EXPECT_EQ(got[0].offset, 24u);
  EXPECT_EQ(got[0].length, 40u);
  // Without its key word the same run is a generic token.
  got = scan(det, "value = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].detector, Detector::Token);
}

TEST(PrivateKey, Blocks) {
  const std::string block =
      "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq3sRXjZ0k1a2b3c4d5e6f7g8h9i0jKLMNOPQRSTUVWXYZ\n"
      "abcdefghijklmnopqrstuvwxyz0123456789+/ABCDEFGHIJKLMNOPQRSTUVWX==\n-----END RSA PRIVATE KEY-----";
  const Detectors det;
  auto got = scan(det, "key:\n" + block + "\ntrailer");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].detector, Detector::PrivateKey);
  EXPECT_EQ(got[0].offset, 5u);
  EXPECT_EQ(got[0].length, block.size());

  // No END line: to the end of the text.
  const std::string open = "x -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\nmore";
  got = scan(det, open);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].offset, 2u);
  EXPECT_EQ(got[0].length, open.size() - 2);

  // Inside a JSON string, with escaped newlines.
  const std::string json = R"({"key":"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----\n"})";
  got = scan(det, json);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].detector, Detector::PrivateKey);
  EXPECT_EQ(json.substr(got[0].offset, 11), "-----BEGIN ");
  EXPECT_EQ(json.substr(got[0].offset + got[0].length - 5), "-----\\n\"}");

  for (const char* v : {"-----BEGIN PUBLIC KEY-----", "-----BEGIN CERTIFICATE-----", "-----BEGIN RSA PUBLIC KEY-----",
                        "----BEGIN PRIVATE KEY-----", "-----BEGIN FOO PRIVATE KEY-----"}) {
    expect_not_found(Detector::PrivateKey, v);
  }
}

TEST(Token, Positives) {
  for (const char* v : {
           "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
           "gho_16C7e42F292c6912E7710c838347Ae178B4a",
           "github_pat_11ABCDEFG0abcdefghijkl_mnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghij",
           "xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
           "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
           "rk_live_51H8x2kLmN0pQrStUvWxYz",
           "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
           "glpat-xT4r9Kp2LmQ8vW3zYb6N",
           "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
           "Zx8Kq2LmN9pRt4VwY7bC3dF6gH1jK5sA0eUoIi",       // generic: random base64
           "a9f8e7d6c5b4a3q2w1e0r9t8y7u6i5o4p3l2k1j0",     // generic: lowercase and digits
           "mF3+kQ9/zX2rT8vB1nL6yW4pH7cJ5sD0gA==",         // generic with padding
       }) {
    expect_found(Detector::Token, v);
  }
}

TEST(Token, Negatives) {
  for (const char* v : {
           "123e4567-e89b-12d3-a456-426614174000",                              // UUID
           "da39a3ee5e6b4b0d3255bfef95601890afd80709",                          // sha1
           "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",  // sha256
           "pneumonoultramicroscopicsilicovolcanoconiosis",                     // a long word
           "/usr/local/lib/x86_64-linux-gnu/libre2.so.9",                       // a path
           "internationalization_localization_2024_release",                   // an identifier
           "getUserAccountSettingsForOrganization2",                            // camelCase
           "aB3dE5fG7h",                                                        // short
           "ghp_short1234",                                                     // prefix, too short
           "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1",                            // low entropy
           "1234567890123456789012345678901234567890",                          // digits only
           "--------------------------------------------",                      // dashes
       }) {
    expect_not_found(Detector::Token, v);
  }
}

TEST(Overlap, LongerWinsAndOrder) {
  const Detectors det;
  // The embedded IPv4 is also an IPv4 match; the IPv6 address is longer.
  auto got = scan(det, "peer ::ffff:1.2.3.4 then 10.1.1.1");
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].detector, Detector::Ipv6);
  EXPECT_EQ(got[0].length, 14u);
  EXPECT_EQ(got[1].detector, Detector::Ipv4);
  // A card number inside an IBAN: the IBAN wins.
  got = scan(det, "DE89 3704 0044 0532 0130 00");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].detector, Detector::Iban);
  // Several kinds, in offset order, no overlaps.
  const std::string text =
      "mail bob@example.com, card 4111 1111 1111 1111, ssn 123-45-6789, call +1 415 555 2671, host 10.0.0.1, "
      "key AKIAIOSFODNN7EXAMPLE";
  got = scan(det, text);
  ASSERT_EQ(got.size(), 6u);
  const Detector expected[] = {Detector::Email, Detector::Card, Detector::Ssn, Detector::Phone, Detector::Ipv4,
                               Detector::AwsKey};
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].detector, expected[i]) << i;
    if (i > 0) {
      EXPECT_GE(got[i].offset, got[i - 1].offset + got[i - 1].length);
    }
  }
}

TEST(Detect, Utf8AroundMatches) {
  const Detectors det;
  const std::string text = "Käufer™: 4111111111111111 — bezahlt. Straße 5, E-Mail: müller@example.de «10.0.0.1»";
  auto got = scan(det, text);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].detector, Detector::Card);
  EXPECT_EQ(text.substr(got[0].offset, got[0].length), "4111111111111111");
  EXPECT_EQ(got[1].detector, Detector::Email);
  EXPECT_EQ(text.substr(got[1].offset, got[1].length), "müller@example.de");
  EXPECT_EQ(got[2].detector, Detector::Ipv4);
  EXPECT_EQ(text.substr(got[2].offset, got[2].length), "10.0.0.1");
  // Invalid UTF-8 around a value does not hide it.
  got = scan(det, std::string("\xff\xfe 123-45-6789 \xc3"));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].detector, Detector::Ssn);
}

TEST(Detect, EnabledSetRestrictsResults) {
  const Detectors cards(only(Detector::Card));
  EXPECT_EQ(cards.enabled(), only(Detector::Card));
  EXPECT_FALSE(cards.any("bob@example.com 123-45-6789"));
  EXPECT_TRUE(cards.any("bob@example.com 4111111111111111"));
  const Detectors none{DetectorSet()};
  EXPECT_FALSE(none.any("bob@example.com 4111111111111111"));
}

TEST(Detect, AnyStopsAtFirst) {
  const Detectors det;
  EXPECT_TRUE(det.any("x 123-45-6789 y bob@example.com"));
  EXPECT_TRUE(det.any(kJwt));
  EXPECT_FALSE(det.any("version 1.2.3.4.5 id 123456789 at 12:30:45 on 2024-01-15"));
}

TEST(Detect, HugeInputCompletes) {
  std::string text;
  text.reserve(10u << 20);
  const std::string prose =
      "The quick brown fox paid 1,234.56 on 2024-03-15 for order 123456789 (version 1.2.3); ";
  std::size_t planted = 0;
  while (text.size() < (10u << 20)) {
    text += prose;
    if (text.size() % 4096 < prose.size()) {
      text += "contact alice@example.com ";
      ++planted;
    }
  }
  const Detectors det;
  std::vector<Match> out;
  det.find(text, out);
  EXPECT_EQ(out.size(), planted);
  for (const auto& m : out) EXPECT_EQ(m.detector, Detector::Email);
}

TEST(Detect, AdversarialInputsComplete) {
  const Detectors det;
  std::vector<Match> out;
  det.find(std::string(1u << 20, '7'), out);
  EXPECT_TRUE(out.empty());
  std::string s;
  for (std::size_t i = 0; i < (1u << 20); ++i) s += "@.:-1"[i % 5];
  det.find(s, out);
  s.assign(1u << 20, 'A');
  for (std::size_t i = 0; i < s.size(); i += 7) s[i] = '0' + static_cast<char>(i % 10);
  det.find(s, out);  // one run far too long to be a token
  EXPECT_TRUE(out.empty());
  s.clear();
  while (s.size() < (1u << 20)) s += "-----BEGIN PRIVATE KEY-----\n";
  out.clear();
  det.find(s, out);
  ASSERT_EQ(out.size(), 1u);  // no END: the first block runs to the end
  EXPECT_EQ(out[0].length, s.size());
}

}  // namespace
}  // namespace gh::masking
