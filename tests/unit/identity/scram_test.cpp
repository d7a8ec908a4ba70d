#include "identity/scram.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace gh::identity {
namespace {

// RFC 7677 section 3.
constexpr const char* kClientNonce = "rOprNGfwEbeRWgbNEkqO";
constexpr const char* kServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
constexpr const char* kSaltB64 = "W22ZaJ0SNY7soEsUEjb6gQ==";
constexpr const char* kClientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
constexpr const char* kServerFirst =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
constexpr const char* kClientFinal =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr const char* kServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
// Keys for "pencil" with the RFC salt, computed independently (Python hashlib/hmac).
constexpr const char* kPencilVerifier =
    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

ScramVerifier pencil() { return ScramVerifier::make_with_salt("pencil", *base64_decode(kSaltB64), 4096); }

TEST(ScramVerifier, MakeWithSaltMatchesIndependentComputation) {
  EXPECT_EQ(pencil().to_string(), kPencilVerifier);
}

TEST(ScramVerifier, ParseToStringRoundTrip) {
  auto v = ScramVerifier::parse(kPencilVerifier);
  ASSERT_TRUE(v) << v.error().message;
  EXPECT_EQ(v->iterations, 4096u);
  EXPECT_EQ(v->salt, *base64_decode(kSaltB64));
  EXPECT_EQ(v->stored_key.size(), 32u);
  EXPECT_EQ(v->server_key.size(), 32u);
  EXPECT_EQ(v->to_string(), kPencilVerifier);

  const auto made = ScramVerifier::make("secret", 4096);
  EXPECT_EQ(made.salt.size(), 16u);
  auto reparsed = ScramVerifier::parse(made.to_string());
  ASSERT_TRUE(reparsed);
  EXPECT_EQ(reparsed->salt, made.salt);
  EXPECT_EQ(reparsed->stored_key, made.stored_key);
  EXPECT_EQ(reparsed->server_key, made.server_key);
  EXPECT_NE(ScramVerifier::make("secret", 4096).salt, made.salt);  // random salt
}

TEST(ScramVerifier, RejectsBadStrings) {
  const std::string keys = "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";
  const std::vector<std::string> bad = {
      "",
      "md5abcdef",
      "SCRAM-SHA-1$4096:W22ZaJ0SNY7soEsUEjb6gQ==$" + keys,
      "SCRAM-SHA-256$",
      "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==",
      "SCRAM-SHA-256$4096W22ZaJ0SNY7soEsUEjb6gQ==$" + keys,
      "SCRAM-SHA-256$0:W22ZaJ0SNY7soEsUEjb6gQ==$" + keys,
      "SCRAM-SHA-256$-1:W22ZaJ0SNY7soEsUEjb6gQ==$" + keys,
      "SCRAM-SHA-256$ 4096:W22ZaJ0SNY7soEsUEjb6gQ==$" + keys,
      "SCRAM-SHA-256$4096x:W22ZaJ0SNY7soEsUEjb6gQ==$" + keys,
      "SCRAM-SHA-256$99999999999999999999:W22ZaJ0SNY7soEsUEjb6gQ==$" + keys,
      "SCRAM-SHA-256$4096:$" + keys,
      "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ=$" + keys,
      "SCRAM-SHA-256$4096:W22ZaJ0SNY7s!EsUEjb6gQ==$" + keys,
      "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=",
      "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$AAAA:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
      "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:AAAA",
      "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$" + keys + "x",
  };
  for (const auto& s : bad) EXPECT_FALSE(ScramVerifier::parse(s)) << s;
}

TEST(Base64, EncodeDecode) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("n,,"), "biws");
  EXPECT_EQ(base64_decode(""), std::string());
  EXPECT_EQ(base64_decode("Zg=="), std::string("f"));
  EXPECT_EQ(base64_decode("Zm8="), std::string("fo"));
  EXPECT_EQ(base64_decode("Zm9v"), std::string("foo"));
  const std::string binary("\x00\xff\x10\x80\x00", 5);
  EXPECT_EQ(base64_decode(base64_encode(binary)), binary);
}

TEST(Base64, RejectsInvalid) {
  for (const char* s : {"Z", "Zg=", "Zg", "Z===", "====", "Zg==Zg==", "Z!==", " Zm9v", "Zm9v ", "Zm9v\n", "Zm=v", "=Zm9"})
    EXPECT_FALSE(base64_decode(s)) << s;
}

TEST(SecureEqual, Compares) {
  EXPECT_TRUE(secure_equal("", ""));
  EXPECT_TRUE(secure_equal("abc", "abc"));
  EXPECT_FALSE(secure_equal("abc", "abd"));
  EXPECT_FALSE(secure_equal("abc", "abcd"));
}

TEST(ScramServer, Rfc7677Vector) {
  ScramServer server(pencil(), kServerNonce);
  auto first = server.handle_client_first(kClientFirst);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(*first, kServerFirst);
  auto final_msg = server.handle_client_final(kClientFinal);
  ASSERT_TRUE(final_msg) << final_msg.error().message;
  EXPECT_EQ(*final_msg, kServerFinal);
}

TEST(ScramClient, Rfc7677Vector) {
  ScramClient client("pencil", kClientNonce, "user");
  EXPECT_EQ(client.client_first(), kClientFirst);
  auto final_msg = client.handle_server_first(kServerFirst);
  ASSERT_TRUE(final_msg) << final_msg.error().message;
  EXPECT_EQ(*final_msg, kClientFinal);
  auto ok = client.handle_server_final(kServerFinal);
  EXPECT_TRUE(ok) << ok.error().message;
}

TEST(ScramClient, RepeatedLoginsWithSameSaltUseCacheCorrectly) {
  // The second and later exchanges hit the SaltedPassword cache; results must not change, and
  // a different password with the same salt must not hit the first one's entry.
  for (int i = 0; i < 3; ++i) {
    ScramClient client("pencil", kClientNonce, "user");
    client.client_first();
    auto final_msg = client.handle_server_first(kServerFirst);
    ASSERT_TRUE(final_msg);
    EXPECT_EQ(*final_msg, kClientFinal);
  }
  ScramClient other("pencil2", kClientNonce, "user");
  other.client_first();
  auto wrong = other.handle_server_first(kServerFirst);
  ASSERT_TRUE(wrong);
  EXPECT_NE(*wrong, kClientFinal);
}

TEST(ScramClient, DefaultClientFirstHasEmptyUsername) {
  ScramClient client("pw");
  const auto first = client.client_first();
  ASSERT_EQ(first.rfind("n,,n=,r=", 0), 0u) << first;
  EXPECT_EQ(first.size(), std::string("n,,n=,r=").size() + 24);  // 18 random bytes in base64
}

TEST(ScramClient, EscapesUsername) {
  ScramClient client("pw", "abc", "a,b=c");
  EXPECT_EQ(client.client_first(), "n,,n=a=2Cb=3Dc,r=abc");
}

struct Outcome {
  bool ok = false;
  std::string sqlstate;
};

Outcome round_trip(const std::string& verifier_password, const std::string& client_password) {
  ScramServer server(ScramVerifier::make(verifier_password, 4096));
  ScramClient client(client_password);
  auto sfirst = server.handle_client_first(client.client_first());
  if (!sfirst) return {false, sfirst.error().sqlstate};
  auto cfinal = client.handle_server_first(*sfirst);
  if (!cfinal) return {false, cfinal.error().sqlstate};
  auto sfinal = server.handle_client_final(*cfinal);
  if (!sfinal) return {false, sfinal.error().sqlstate};
  auto done = client.handle_server_final(*sfinal);
  if (!done) return {false, done.error().sqlstate};
  return {true, ""};
}

TEST(Scram, RoundTripWithRandomNonces) {
  EXPECT_TRUE(round_trip("correct horse", "correct horse").ok);
  EXPECT_TRUE(round_trip("", "").ok);
  EXPECT_TRUE(round_trip("pässwörd,=\x01", "pässwörd,=\x01").ok);  // raw bytes, no SASLprep
}

TEST(Scram, WrongPasswordFails) {
  const auto r = round_trip("correct horse", "correct horsf");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.sqlstate, "28P01");
}

TEST(ScramServer, TamperedNonceFails) {
  ScramServer server(pencil(), kServerNonce);
  ASSERT_TRUE(server.handle_client_first(kClientFirst));
  std::string tampered = kClientFinal;
  tampered.replace(tampered.find("hvYD"), 4, "hvYE");
  auto r = server.handle_client_final(tampered);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().sqlstate, "08P01");
}

TEST(ScramServer, TamperedChannelBindingFails) {
  for (const char* cbind : {"eSws", "cD10bHMtdW5pcXVlLCw=", "", "biws="}) {
    ScramServer server(pencil(), kServerNonce);
    ASSERT_TRUE(server.handle_client_first(kClientFirst));
    std::string tampered = kClientFinal;
    tampered.replace(2, 4, cbind);
    auto r = server.handle_client_final(tampered);
    ASSERT_FALSE(r) << cbind;
    EXPECT_EQ(r.error().sqlstate, "08P01");
  }
}

TEST(ScramServer, YFlagNeedsMatchingChannelBinding) {
  ScramServer server(pencil(), kServerNonce);
  ASSERT_TRUE(server.handle_client_first("y,,n=user,r=rOprNGfwEbeRWgbNEkqO"));
  // The RFC proof was made with c=biws; with the y flag the client must send eSws.
  auto r = server.handle_client_final(kClientFinal);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().sqlstate, "08P01");
}

TEST(ScramServer, TamperedProofFails) {
  ScramServer server(pencil(), kServerNonce);
  ASSERT_TRUE(server.handle_client_first(kClientFirst));
  std::string tampered = kClientFinal;
  tampered.replace(tampered.find("p=dHzb"), 6, "p=dHzc");
  auto r = server.handle_client_final(tampered);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().sqlstate, "28P01");
}

TEST(ScramServer, ProofCannotBeReplayedInSameExchange) {
  ScramServer server(pencil(), kServerNonce);
  ASSERT_TRUE(server.handle_client_first(kClientFirst));
  ASSERT_TRUE(server.handle_client_final(kClientFinal));
  EXPECT_FALSE(server.handle_client_final(kClientFinal));
  EXPECT_FALSE(server.handle_client_first(kClientFirst));
}

TEST(ScramServer, MalformedClientFirstFails) {
  const std::vector<std::string> bad = {
      "",
      "n",
      "n,",
      "x,,n=user,r=abc",
      "p=tls-server-end-point,,n=user,r=abc",
      "n,a=admin,n=user,r=abc",
      "n,x,n=user,r=abc",
      "n,,m=ext,n=user,r=abc",
      "n,,n=user",
      "n,,n=user,",
      "n,,n=user,r=",
      "n,,n=user,x=abc",
      "n,,r=abc",
      "n,,n=user,r=a b",
      "n,,n=user,r=ab\x01",
      "n,,n=user,r=abc,garbage",
      "n,,n=user,r=abc,1=x",
      std::string("n,,n=user,r=ab\0c", 16),
      "n,,user,r=abc",
  };
  for (const auto& s : bad) {
    ScramServer server(pencil());
    auto r = server.handle_client_first(s);
    ASSERT_FALSE(r) << s;
    EXPECT_EQ(r.error().sqlstate, "08P01") << s;
  }
}

TEST(ScramServer, ChannelBindingRequestGetsClearError) {
  ScramServer server(pencil());
  auto r = server.handle_client_first("p=tls-server-end-point,,n=,r=abc");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("channel binding"), std::string::npos) << r.error().message;
}

TEST(ScramServer, AcceptsExtensionsAndIgnoresUsername) {
  ScramServer server(pencil(), "SRV");
  auto r = server.handle_client_first("n,,n=whoever,r=abc,x=ext");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, "r=abcSRV,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
}

TEST(ScramServer, MalformedClientFinalFails) {
  const std::string nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
  const std::string proof = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
  const std::vector<std::string> bad = {
      "",
      "c=biws",
      "c=biws,r=" + nonce,
      "c=biws,r=" + nonce + ",",
      "r=" + nonce + ",c=biws,p=" + proof,
      "c=biws,r=" + nonce + ",p=",
      "c=biws,r=" + nonce + ",p=AAAA",
      "c=biws,r=" + nonce + ",p=" + proof.substr(1),
      "c=biws,r=" + nonce + ",p=" + proof + ",",
      "c=biws,r=" + nonce + ",p=" + proof + ",x=y",
      "c=biws,r=" + nonce + ",p=" + proof + "garbage",
      "c=biws,r=" + nonce + ",garbage,p=" + proof,
      "c=biws,r=" + nonce + "x,p=" + proof,
      "c=biws,r=,p=" + proof,
      std::string("c=biws,r=") + nonce + std::string(",p=\0", 4) + proof,
  };
  for (const auto& s : bad) {
    ScramServer server(pencil(), kServerNonce);
    ASSERT_TRUE(server.handle_client_first(kClientFirst));
    auto r = server.handle_client_final(s);
    ASSERT_FALSE(r) << s;
    EXPECT_EQ(r.error().sqlstate, "08P01") << s;
  }
}

TEST(ScramServer, FinalBeforeFirstFails) {
  ScramServer server(pencil());
  EXPECT_FALSE(server.handle_client_final(kClientFinal));
}

TEST(ScramServer, IgnoresExtensionBeforeProof) {
  // Extensions between r= and p= are allowed; they are part of the signed message, so the
  // RFC proof no longer verifies, but the message must parse up to the proof check.
  ScramServer server(pencil(), kServerNonce);
  ASSERT_TRUE(server.handle_client_first(kClientFirst));
  std::string with_ext = kClientFinal;
  with_ext.insert(with_ext.find(",p="), ",x=ext");
  auto r = server.handle_client_final(with_ext);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().sqlstate, "28P01");
}

TEST(ScramClient, MalformedServerFirstFails) {
  const std::vector<std::string> bad = {
      "",
      "r=rOprNGfwEbeRWgbNEkqO",  // server added nothing
      "r=XOprNGfwEbeRWgbNEkqOsrv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
      "r=rOprNGfwEbeRWgbNEkqOsrv,s=W22ZaJ0SNY7soEsUEjb6gQ==",
      "r=rOprNGfwEbeRWgbNEkqOsrv,s=!!!,i=4096",
      "r=rOprNGfwEbeRWgbNEkqOsrv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
      "r=rOprNGfwEbeRWgbNEkqOsrv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1",
      "r=rOprNGfwEbeRWgbNEkqOsrv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=abc",
      "r=rOprNGfwEbeRWgbNEkqOsrv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=100000001",
      "r=rOprNGfwEbeRWgbNEkqOsrv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,",
      "r=rOprNGfwEbeRWgbNEkqOsrv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,x=y",
      "s=W22ZaJ0SNY7soEsUEjb6gQ==,r=rOprNGfwEbeRWgbNEkqOsrv,i=4096",
      "e=other-error",
  };
  for (const auto& s : bad) {
    ScramClient client("pencil", kClientNonce);
    client.client_first();
    auto r = client.handle_server_first(s);
    ASSERT_FALSE(r) << s;
    EXPECT_EQ(r.error().sqlstate, "08P01") << s;
  }
}

TEST(ScramClient, ServerFinalChecks) {
  auto prepared = [] {
    ScramClient c("pencil", kClientNonce, "user");
    c.client_first();
    EXPECT_TRUE(c.handle_server_first(kServerFirst));
    return c;
  };
  {
    auto c = prepared();
    auto r = c.handle_server_final("v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("server signature"), std::string::npos);
  }
  {
    auto c = prepared();
    auto r = c.handle_server_final("e=invalid-proof");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().sqlstate, "28P01");
    EXPECT_NE(r.error().message.find("invalid-proof"), std::string::npos);
  }
  const std::vector<std::string> bad = {"", "v=", "v=AAAA", "x=abc", std::string(kServerFinal) + ",",
                                       std::string(kServerFinal) + "x"};
  for (const auto& s : bad) {
    auto c = prepared();
    EXPECT_FALSE(c.handle_server_final(s)) << s;
  }
  {
    ScramClient c("pencil", kClientNonce, "user");  // no exchange yet
    EXPECT_FALSE(c.handle_server_final(kServerFinal));
    EXPECT_FALSE(c.handle_server_first(kServerFirst));
  }
}

TEST(Md5, PasswordResponse) {
  // python3: 'md5' + md5(md5(b'secretpostgres').hexdigest().encode() + bytes([1,2,3,4])).hexdigest()
  EXPECT_EQ(md5_password_response("postgres", "secret", std::string("\x01\x02\x03\x04", 4)),
            "md5bb41a296aab6baccb36ff243a562abff");
}

}  // namespace
}  // namespace gh::identity
