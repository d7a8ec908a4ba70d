#include "proxy/cancel_registry.h"

#include <gtest/gtest.h>

namespace gh::proxy {
namespace {

CancelRoute route(std::uint32_t pid, std::uint32_t secret, std::string target) {
  CancelRoute r;
  r.backend_key = {pid, secret};
  r.target = std::move(target);
  return r;
}

TEST(CancelRegistry, GivesTheServersProcessIdWithASecretOfItsOwn) {
  CancelRegistry reg;
  const auto key = reg.add(route(4242, 777, "prod"));
  EXPECT_EQ(key.process_id, 4242u);
  EXPECT_NE(key.secret_key, 777u);  // the server's secret never reaches the client
  auto found = reg.find(4242, key.secret_key);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->target, "prod");
  EXPECT_EQ(found->backend_key.secret_key, 777u);
  EXPECT_FALSE(reg.find(4242, 777));  // the server's own secret does not work at the proxy
  EXPECT_FALSE(reg.find(4242, key.secret_key ^ 1));
  reg.remove(key);
  EXPECT_FALSE(reg.find(4242, key.secret_key));
}

TEST(CancelRegistry, EqualProcessIdsOfDifferentServersStayApart) {
  CancelRegistry reg;
  const auto a = reg.add(route(100, 1, "a"));
  const auto b = reg.add(route(100, 2, "b"));
  ASSERT_EQ(a.process_id, 100u);
  ASSERT_EQ(b.process_id, 100u);
  ASSERT_NE(a.secret_key, b.secret_key);
  EXPECT_EQ(reg.find(100, a.secret_key)->target, "a");
  EXPECT_EQ(reg.find(100, b.secret_key)->target, "b");
  reg.remove(a);
  EXPECT_FALSE(reg.find(100, a.secret_key));
  EXPECT_EQ(reg.find(100, b.secret_key)->target, "b");
}

TEST(CancelRegistry, AServerWithoutBackendKeyDataGetsAnIdOfTheProxys) {
  CancelRegistry reg;
  const auto k1 = reg.add(route(0, 0, "x"));
  const auto k2 = reg.add(route(0, 0, "y"));
  EXPECT_NE(k1.process_id, 0u);
  EXPECT_NE(k1.process_id, k2.process_id);
  EXPECT_EQ(reg.find(k1.process_id, k1.secret_key)->target, "x");
  EXPECT_EQ(reg.find(k2.process_id, k2.secret_key)->target, "y");
}

}  // namespace
}  // namespace gh::proxy
