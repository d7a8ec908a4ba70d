// Glob, NamePattern, Cidr, TimeWindow: the compiled pieces of conditions.
#include <gtest/gtest.h>

#include "policy/address.h"
#include "policy/glob.h"
#include "policy/time_window.h"

namespace gh::policy {
namespace {

bool glob(const char* pattern, const char* text, bool fold = false) {
  auto g = Glob::parse(pattern, fold);
  EXPECT_TRUE(g) << pattern;
  return g && g->matches(text);
}

TEST(Glob, Shapes) {
  EXPECT_TRUE(glob("*", ""));
  EXPECT_TRUE(glob("**", "anything"));
  EXPECT_TRUE(glob("orders", "orders"));
  EXPECT_FALSE(glob("orders", "orders2"));
  EXPECT_TRUE(glob("ord*", "orders"));
  EXPECT_FALSE(glob("ord*", "xorders"));
  EXPECT_TRUE(glob("*@example.com", "bob@example.com"));
  EXPECT_FALSE(glob("*@example.com", "bob@example.org"));
  EXPECT_TRUE(glob("a*b*c", "aXXbYYc"));
  EXPECT_TRUE(glob("a*b*c", "abc"));
  EXPECT_FALSE(glob("a*b*c", "acb"));
  EXPECT_TRUE(glob("t?st", "test"));
  EXPECT_FALSE(glob("t?st", "tst"));
  EXPECT_TRUE(glob("*a*a*a*a*b", std::string(200, 'a').append("b").c_str()));
  EXPECT_FALSE(glob("*a*a*a*a*b", std::string(200, 'a').c_str()));
}

TEST(Glob, CaseFolding) {
  EXPECT_FALSE(glob("*@Example.com", "bob@example.com"));
  EXPECT_TRUE(glob("*@Example.com", "BOB@EXAMPLE.COM", true));
  EXPECT_TRUE(glob("Bob@example.com", "bob@EXAMPLE.com", true));
  EXPECT_TRUE(glob("B?b*", "bOB@x", true));
}

TEST(Glob, RejectsWhatItDoesNotSupport) {
  EXPECT_FALSE(Glob::parse(""));
  auto g = Glob::parse("user[12]");
  ASSERT_FALSE(g);
  EXPECT_NE(g.error().message.find("bad glob"), std::string::npos);
  EXPECT_FALSE(Glob::parse("a{b,c}"));
  EXPECT_FALSE(Glob::parse("a\\*"));
}

TEST(NamePattern, Parts) {
  auto p = NamePattern::parse("*.*.ssn", 1, 3, "x");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->size(), 3);
  EXPECT_TRUE(p->last().matches("ssn"));
  EXPECT_TRUE(p->part(0).matches("billing"));
  auto bad = NamePattern::parse("a..b", 1, 3, "x");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("empty part"), std::string::npos);
  auto too_many = NamePattern::parse("a.b.c", 1, 2, "schema.table or table");
  ASSERT_FALSE(too_many);
  EXPECT_NE(too_many.error().message.find("expected schema.table or table"), std::string::npos);
  EXPECT_FALSE(NamePattern::parse("a.b[", 1, 2, "x"));
}

bool in(const char* cidr, const char* address) {
  auto c = Cidr::parse(cidr);
  EXPECT_TRUE(c) << cidr << ": " << (c ? "" : c.error().message);
  auto a = IpAddress::parse(address);
  EXPECT_TRUE(a) << address;
  return c && a && c->contains(*a);
}

TEST(Cidr, V4AndV6) {
  EXPECT_TRUE(in("10.0.0.0/8", "10.200.3.4"));
  EXPECT_FALSE(in("10.0.0.0/8", "11.0.0.1"));
  EXPECT_TRUE(in("192.168.1.0/25", "192.168.1.127"));
  EXPECT_FALSE(in("192.168.1.0/25", "192.168.1.128"));
  EXPECT_TRUE(in("192.168.1.5", "192.168.1.5"));
  EXPECT_FALSE(in("192.168.1.5", "192.168.1.6"));
  EXPECT_TRUE(in("0.0.0.0/0", "8.8.8.8"));
  EXPECT_FALSE(in("0.0.0.0/0", "::1"));
  EXPECT_TRUE(in("10.0.0.0/8", "::ffff:10.1.2.3"));
  EXPECT_TRUE(in("2001:db8::/32", "2001:db8:1::5"));
  EXPECT_FALSE(in("2001:db8::/32", "2001:db9::5"));
  EXPECT_TRUE(in("::1", "::1"));
  EXPECT_TRUE(in("::/0", "10.0.0.1"));  // every address, IPv4 ones included
  EXPECT_TRUE(in("fe80::/10", "fe80::1%eth0"));
}

TEST(Cidr, Errors) {
  for (const char* bad : {"10.0.0.0/33", "10.0.0/8", "10.0.0.0/", "10.0.0.0/x", "::/129", "host.example.com",
                          "10.1.0.0/8", "fe80::1%eth0/64", ""}) {
    auto c = Cidr::parse(bad);
    ASSERT_FALSE(c) << bad;
    EXPECT_NE(c.error().message.find("bad CIDR"), std::string::npos) << c.error().message;
  }
  EXPECT_FALSE(IpAddress::parse(""));
  EXPECT_FALSE(IpAddress::parse("/tmp/.s.PGSQL.5432"));
}

std::chrono::system_clock::time_point at(int y, unsigned m, unsigned d, int hh, int mm) {
  using namespace std::chrono;
  return sys_days{year{y} / month{m} / day{d}} + hours{hh} + minutes{mm};
}

TEST(TimeWindow, DaysAndHours) {
  // 2024-05-06 is a Monday.
  auto w = TimeWindow::make(*TimeWindow::parse_days("mon-fri"), 9 * 60, 18 * 60, 0);
  ASSERT_TRUE(w);
  EXPECT_TRUE(w->contains(at(2024, 5, 6, 9, 0)));
  EXPECT_TRUE(w->contains(at(2024, 5, 10, 17, 59)));
  EXPECT_FALSE(w->contains(at(2024, 5, 10, 18, 0)));
  EXPECT_FALSE(w->contains(at(2024, 5, 6, 8, 59)));
  EXPECT_FALSE(w->contains(at(2024, 5, 11, 12, 0)));  // Saturday
  EXPECT_EQ(w->describe(), "mon,tue,wed,thu,fri 09:00-18:00 UTC");
}

TEST(TimeWindow, FixedOffset) {
  // 09:00-18:00 at UTC+02:00 is 07:00-16:00 UTC.
  auto w = TimeWindow::make(0x1f, 9 * 60, 18 * 60, *TimeWindow::parse_offset("+02:00"));
  ASSERT_TRUE(w);
  EXPECT_TRUE(w->contains(at(2024, 5, 6, 7, 0)));
  EXPECT_FALSE(w->contains(at(2024, 5, 6, 16, 0)));
  // Monday 00:30 at UTC-05:00 is Sunday 19:30 local: outside mon-fri.
  auto west = TimeWindow::make(0x1f, 0, 24 * 60, *TimeWindow::parse_offset("-05:00"));
  EXPECT_FALSE(west->contains(at(2024, 5, 6, 0, 30)));
  EXPECT_TRUE(west->contains(at(2024, 5, 6, 5, 0)));
  EXPECT_EQ(west->describe(), "mon,tue,wed,thu,fri 00:00-24:00 UTC-05:00");
}

TEST(TimeWindow, WrapsMidnight) {
  auto w = TimeWindow::make(*TimeWindow::parse_days("fri"), 22 * 60, 6 * 60, 0);
  ASSERT_TRUE(w);
  EXPECT_TRUE(w->contains(at(2024, 5, 10, 23, 0)));   // Friday night
  EXPECT_TRUE(w->contains(at(2024, 5, 11, 5, 59)));   // Saturday morning, Friday's window
  EXPECT_FALSE(w->contains(at(2024, 5, 11, 23, 0)));  // Saturday night
  EXPECT_FALSE(w->contains(at(2024, 5, 10, 5, 0)));   // Friday morning belongs to Thursday
}

TEST(TimeWindow, Parsing) {
  EXPECT_EQ(*TimeWindow::parse_days("weekend"), 0x60);
  EXPECT_EQ(*TimeWindow::parse_days("sat-mon"), 0x61);
  EXPECT_EQ(*TimeWindow::parse_days("all"), 0x7f);
  EXPECT_FALSE(TimeWindow::parse_days("monday"));
  EXPECT_FALSE(TimeWindow::parse_days("mon-xyz"));
  EXPECT_EQ(*TimeWindow::parse_hours("00:00-24:00"), (std::pair<int, int>{0, 1440}));
  for (const char* bad : {"9-17", "09:00", "09:00-09:00", "25:00-26:00", "09:60-10:00", "24:00-01:00"}) {
    auto h = TimeWindow::parse_hours(bad);
    ASSERT_FALSE(h) << bad;
    EXPECT_NE(h.error().message.find("bad time window"), std::string::npos);
  }
  EXPECT_EQ(*TimeWindow::parse_offset("UTC"), 0);
  EXPECT_EQ(*TimeWindow::parse_offset("-05:30"), -330);
  EXPECT_EQ(*TimeWindow::parse_offset("+0200"), 120);
  EXPECT_FALSE(TimeWindow::parse_offset("Europe/Paris"));
  EXPECT_FALSE(TimeWindow::parse_offset("+15:00"));
}

}  // namespace
}  // namespace gh::policy
