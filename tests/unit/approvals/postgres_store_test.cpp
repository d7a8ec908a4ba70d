// The PostgreSQL approvals store against a real server, and two Services sharing it the way two
// proxy nodes do. Skipped unless GH_TEST_PG_DSN names a superuser connection (the tests make
// and drop their own tables and end backends), e.g.
//   GH_TEST_PG_DSN='host=127.0.0.1 port=5432 user=postgres password=... dbname=postgres'
// tests/e2e/test_approvals_postgres.py runs them against the e2e cluster and fails on a skip.
//
// Changes reach the other node asynchronously, so these tests wait, each wait with a deadline.
#include <libpq-fe.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "approvals/approvals.h"
#include "people.h"

namespace gh::approvals {
namespace {

using namespace std::chrono_literals;

const char* test_dsn() { return std::getenv("GH_TEST_PG_DSN"); }

// A direct connection for checking what the store did.
struct Db {
  PGconn* c = PQconnectdb(test_dsn());
  Db() { PQsetNoticeProcessor(c, [](void*, const char*) {}, nullptr); }
  ~Db() { PQfinish(c); }
  std::vector<std::vector<std::string>> rows(const std::string& sql) {
    PGresult* r = PQexec(c, sql.c_str());
    EXPECT_TRUE(PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK)
        << sql << ": " << PQresultErrorMessage(r);
    std::vector<std::vector<std::string>> out;
    for (int i = 0; i < PQntuples(r); ++i) {
      out.emplace_back();
      for (int j = 0; j < PQnfields(r); ++j) out.back().emplace_back(PQgetvalue(r, i, j));
    }
    PQclear(r);
    return out;
  }
  std::string one(const std::string& sql) {
    auto r = rows(sql);
    return r.empty() || r[0].empty() ? "" : r[0][0];
  }
};

// Polls `done` until it holds or the deadline passes.
bool eventually(const std::function<bool()>& done, std::chrono::milliseconds deadline = 10s) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

using test::person;

const Person kAlice = person("alice", "alice@example.com", {"eng"});
const Person kBob = person("bob", "bob@example.com", {"dba"});
const Person kCarol = person("carol", "carol@example.com", {"dba"});

Request held_statement(std::string statement = "DELETE FROM orders WHERE id = 42") {
  Request r;
  r.requester = kAlice;
  r.target = "prod";
  r.database = "app";
  r.statement = std::move(statement);
  r.rule = "review-deletes";
  r.reviewer_groups = {"dba"};
  return r;
}

AccessRequest writer_access() {
  AccessRequest a;
  a.requester = kAlice;
  a.target = "prod";
  a.role = "writer";
  a.reason = "incident 42";
  a.duration_s = 600;
  a.reviewer_groups = {"dba"};
  return a;
}

// What one node's listeners heard.
struct Heard {
  std::mutex m;
  std::vector<std::string> events;  // "<id>:<state>"
  void add(const Request* r, const AccessRequest* a) {
    std::lock_guard g(m);
    if (r) events.push_back(r->id + ":" + std::string(state_name(r->state)));
    if (a) events.push_back(a->id + ":" + std::string(state_name(a->state)));
  }
  int count(const std::string& event) {
    std::lock_guard g(m);
    return int(std::count(events.begin(), events.end(), event));
  }
};

class ApprovalsPostgres : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!test_dsn())
      GTEST_SKIP() << "set GH_TEST_PG_DSN to a superuser libpq connection string to run the PostgreSQL approvals "
                      "store tests";
  }

  void TearDown() override {
    if (!test_dsn()) return;
    services_.clear();
    Db db;
    db.rows("DROP TABLE IF EXISTS \"" + prefix_ + "approval_requests\", \"" + prefix_ + "access_requests\"");
  }

  std::unique_ptr<Store> store() {
    auto s = open_postgres_store(test_dsn(), prefix_);
    EXPECT_TRUE(s) << s.error().message;
    return s ? std::move(*s) : nullptr;
  }

  // One proxy node: its own store (own connections) on the shared tables.
  Service& node(const std::string& name, std::function<TimeUs()> clock = {}) {
    Settings s;
    s.node = name;
    s.clock = std::move(clock);
    services_.push_back(std::make_unique<Service>(store(), std::move(s)));
    return *services_.back();
  }

  // The backend of the listener thread of the store(s) on this test's tables.
  std::vector<std::string> listener_pids() {
    Db db;
    std::vector<std::string> out;
    for (auto& row : db.rows("SELECT pid FROM pg_stat_activity WHERE query = 'LISTEN \"" + prefix_ + "approvals\"'"))
      out.push_back(row[0]);
    return out;
  }

  std::string prefix_ = "ghapt_" + std::to_string(::getpid()) + "_" + std::to_string(++counter_) + "_";
  static inline int counter_ = 0;
  std::vector<std::unique_ptr<Service>> services_;
};

TEST_F(ApprovalsPostgres, RoundTripsRecordsFiltersAndOrder) {
  auto s = store();
  ASSERT_TRUE(s);
  Request r = held_statement("UPDATE t SET x = 'Zo\xC3\xAB' WHERE y = '\xFF'");
  r.id = "apr_one";
  r.created_us = 1000;
  r.parameters = {std::string("42"), std::nullopt};
  r.match_key = match_key(r.statement, r.parameters);
  r.votes.push_back(Vote{kBob, false, "not now", 1500, false});
  r.state = State::Rejected;
  ASSERT_TRUE(s->put(r)) << s->put(r).error().message;

  auto got = s->get("apr_one");
  ASSERT_TRUE(got && *got) << (got ? "missing" : got.error().message);
  EXPECT_EQ((*got)->revision, 1);
  EXPECT_EQ((*got)->state, State::Rejected);
  EXPECT_EQ((*got)->statement, "UPDATE t SET x = 'Zo\xC3\xAB' WHERE y = '\xEF\xBF\xBD'");  // invalid UTF-8 -> U+FFFD
  EXPECT_EQ((*got)->match_key, r.match_key);
  ASSERT_EQ((*got)->parameters.size(), 2u);
  EXPECT_FALSE((*got)->parameters[1]);
  ASSERT_EQ((*got)->votes.size(), 1u);
  EXPECT_EQ((*got)->votes[0].reviewer.subject, "bob");
  EXPECT_EQ((*got)->votes[0].comment, "not now");
  auto missing = s->get("apr_none");
  ASSERT_TRUE(missing);
  EXPECT_FALSE(*missing);

  // A put must name the revision it read: a stale one is a conflict, not an overwrite.
  Request stale = r;  // revision 0: "new", but apr_one exists
  stale.state = State::Approved;
  auto c = s->put(stale);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().sqlstate, kConflict);
  EXPECT_NE(c.error().message.find("approvals store (PostgreSQL): approval request apr_one was changed by another node"),
            std::string::npos)
      << c.error().message;
  Request next = **got;
  next.waiting = true;
  ASSERT_TRUE(s->put(next));
  EXPECT_EQ((*s->get("apr_one"))->revision, 2);
  EXPECT_FALSE(s->put(next));  // revision 1 again

  // Two more, one created in the same microsecond as another: newest first, then insertion order.
  Request r2 = held_statement("SELECT 2");
  r2.id = "apr_two", r2.created_us = 2000, r2.requester = kBob, r2.target = "staging";
  r2.match_key = match_key(r2.statement, {});
  Request r3 = held_statement("SELECT 3");
  r3.id = "apr_three", r3.created_us = 2000;
  r3.match_key = match_key(r3.statement, {});
  ASSERT_TRUE(s->put(r2));
  ASSERT_TRUE(s->put(r3));
  auto ids = [](const Result<std::vector<Request>>& rs) {
    std::vector<std::string> out;
    EXPECT_TRUE(rs) << rs.error().message;
    if (rs)
      for (const auto& x : *rs) out.push_back(x.id);
    return out;
  };
  Filter all;
  EXPECT_EQ(ids(s->list(all)), (std::vector<std::string>{"apr_three", "apr_two", "apr_one"}));
  Filter f;
  f.state = State::Pending;
  EXPECT_EQ(ids(s->list(f)), (std::vector<std::string>{"apr_three", "apr_two"}));
  f = {};
  f.requester = "alice@example.com";
  EXPECT_EQ(ids(s->list(f)), (std::vector<std::string>{"apr_three", "apr_one"}));
  f.requester = "bob";
  EXPECT_EQ(ids(s->list(f)), (std::vector<std::string>{"apr_two"}));
  f = {};
  f.target = "prod";
  f.match_key = r.match_key;
  EXPECT_EQ(ids(s->list(f)), (std::vector<std::string>{"apr_one"}));
  f = {};
  f.limit = 1;
  EXPECT_EQ(ids(s->list(f)), (std::vector<std::string>{"apr_three"}));
  f.limit = std::numeric_limits<std::size_t>::max();
  EXPECT_EQ(ids(s->list(f)).size(), 3u);

  AccessRequest a = writer_access();
  a.id = "acc_one";
  a.created_us = 3000;
  a.state = State::Approved;
  a.expires_us = 9000;
  ASSERT_TRUE(s->put_access(a));
  auto ga = s->get_access("acc_one");
  ASSERT_TRUE(ga && *ga);
  EXPECT_EQ((*ga)->role, "writer");
  EXPECT_EQ((*ga)->expires_us, 9000);
  EXPECT_EQ((*ga)->revision, 1);
  Filter af;
  af.state = State::Approved;
  af.requester = "alice";
  af.target = "prod";
  auto la = s->list_access(af);
  ASSERT_TRUE(la);
  ASSERT_EQ(la->size(), 1u);
  EXPECT_EQ((*la)[0].id, "acc_one");
  EXPECT_FALSE(s->put_access(a));  // stale revision

  // The tables and indexes the filters use.
  Db db;
  const auto idx = db.one("SELECT string_agg(indexdef, ';') FROM pg_indexes WHERE tablename LIKE '" + prefix_ + "%'");
  EXPECT_NE(idx.find("(state, created_us)"), std::string::npos) << idx;
  EXPECT_NE(idx.find("(requester_subject, target, match_key)"), std::string::npos) << idx;
  EXPECT_NE(idx.find("(requester_subject, target)"), std::string::npos) << idx;
}

TEST_F(ApprovalsPostgres, EveryPutNotifiesInItsTransaction) {
  auto s = store();
  ASSERT_TRUE(s);
  Db db;
  db.rows("LISTEN \"" + prefix_ + "approvals\"");
  Request r = held_statement();
  r.id = "apr_n1";
  ASSERT_TRUE(s->put(r));
  AccessRequest a = writer_access();
  a.id = "acc_n1";
  ASSERT_TRUE(s->put_access(a));
  ASSERT_FALSE(s->put_access(a));  // a conflict changes nothing and announces nothing
  std::vector<std::string> got;
  ASSERT_TRUE(eventually([&] {
    PQconsumeInput(db.c);
    while (PGnotify* n = PQnotifies(db.c)) {
      got.push_back(n->extra);
      PQfreemem(n);
    }
    return got.size() >= 2;
  }));
  db.rows("SELECT 1");  // anything a third notification would have arrived before
  PQconsumeInput(db.c);
  while (PGnotify* n = PQnotifies(db.c)) {
    got.push_back(n->extra);
    PQfreemem(n);
  }
  EXPECT_EQ(got, (std::vector<std::string>{"request:apr_n1", "access:acc_n1"}));
}

TEST_F(ApprovalsPostgres, WatcherOnOneNodeFiresWhenAnotherNodeDecides) {
  Service& a = node("node-a");
  Service& b = node("node-b");
  Heard heard_a_all, heard_a_local, heard_b_local;
  a.on_change([&](const Request* r, const AccessRequest* x) { heard_a_all.add(r, x); });
  a.on_change([&](const Request* r, const AccessRequest* x) { heard_a_local.add(r, x); }, Service::Changes::Local);
  b.on_change([&](const Request* r, const AccessRequest* x) { heard_b_local.add(r, x); }, Service::Changes::Local);

  auto r = a.submit(held_statement());
  ASSERT_TRUE(r) << r.error().message;
  std::mutex m;
  std::condition_variable cv;
  std::vector<Request> fired;
  const auto token = a.watch(r->id, [&](const Request& x) {
    std::lock_guard g(m);
    fired.push_back(x);
    cv.notify_all();
  });

  // Node B sees the request (it was stored, not just kept in node A's memory).
  auto on_b = b.get(r->id);
  ASSERT_TRUE(on_b && *on_b);
  EXPECT_EQ((*on_b)->node, "node-a");
  auto d = b.decide(r->id, kBob, true, "");
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->state, State::Approved);

  {
    std::unique_lock g(m);
    ASSERT_TRUE(cv.wait_for(g, 10s, [&] { return !fired.empty(); })) << "node A's watcher did not fire";
    EXPECT_EQ(fired[0].state, State::Approved);
    ASSERT_EQ(fired[0].votes.size(), 1u);
    EXPECT_EQ(fired[0].votes[0].reviewer.subject, "bob");
  }
  const std::string approved = r->id + ":approved";
  ASSERT_TRUE(eventually([&] { return heard_a_all.count(approved) == 1; }));
  EXPECT_EQ(heard_a_local.count(approved), 0);  // another node's change: not audited here
  EXPECT_EQ(heard_b_local.count(approved), 1);  // ... but by the node that made it

  // Node A consumes it (as the session it released would): node B hears that, node A says it
  // once, and nothing is announced twice, however the notifications arrive.
  auto consumed = a.consume(r->id);
  ASSERT_TRUE(consumed && *consumed);
  const std::string consumed_event = r->id + ":consumed";
  EXPECT_EQ(heard_a_all.count(consumed_event), 1);
  EXPECT_EQ(heard_a_local.count(consumed_event), 1);
  a.unwatch(token);

  // A later remote change of the same request reaches A again (consume on B is refused: it is
  // consumed already, so nothing changes and nothing is heard).
  auto again = b.consume(r->id);
  ASSERT_TRUE(again);
  EXPECT_FALSE(*again);
  std::this_thread::sleep_for(200ms);  // time for a (wrong) duplicate to arrive
  EXPECT_EQ(heard_a_all.count(approved), 1);
  EXPECT_EQ(heard_a_all.count(consumed_event), 1);
  std::lock_guard g(m);
  EXPECT_EQ(fired.size(), 1u);
}

TEST_F(ApprovalsPostgres, TwoNodesDecidingAtOnceGiveOneDecision) {
  Service& a = node("node-a");
  Service& b = node("node-b");
  for (int round = 0; round < 10; ++round) {
    auto r = a.submit(held_statement());
    ASSERT_TRUE(r) << r.error().message;
    tl::expected<Request, DecideError> on_a, on_b;
    std::thread ta([&] { on_a = a.decide(r->id, kBob, true, ""); });
    std::thread tb([&] { on_b = b.decide(r->id, kCarol, false, "no"); });
    ta.join();
    tb.join();
    ASSERT_NE(bool(on_a), bool(on_b)) << "round " << round << ": exactly one decision";
    const auto& loser = on_a ? on_b : on_a;
    EXPECT_EQ(loser.error().kind, DecideError::Kind::NotPending) << loser.error().message;
    auto stored = b.get(r->id);
    ASSERT_TRUE(stored && *stored);
    EXPECT_EQ((*stored)->votes.size(), 1u);
    EXPECT_EQ((*stored)->state, on_a ? State::Approved : State::Rejected);

    if (on_a) {  // approved: the two nodes race to run it; it runs once
      Result<bool> ca, cb;
      std::thread tc([&] { ca = a.consume(r->id); });
      std::thread td([&] { cb = b.consume(r->id); });
      tc.join();
      td.join();
      ASSERT_TRUE(ca && cb);
      EXPECT_NE(*ca, *cb) << "round " << round << ": consumed exactly once";
    }
  }
}

TEST_F(ApprovalsPostgres, GrantApprovedOnOneNodeIsActiveOnTheOtherPromptly) {
  // Node A's clock stands still, so its grant cache never ages out: only the notification can
  // tell it about the grant.
  const TimeUs frozen = now_us();
  Service& a = node("node-a", [frozen] { return frozen; });
  Service& b = node("node-b");
  ASSERT_TRUE(eventually([&] { return listener_pids().size() == 2; })) << "both nodes listen";
  EXPECT_TRUE(a.active_roles("alice", "prod", frozen).empty());  // cached: no grants

  auto req = b.request_access(writer_access());
  ASSERT_TRUE(req) << req.error().message;
  auto d = b.decide_access(req->id, kBob, true, "");
  ASSERT_TRUE(d) << d.error().message;
  const auto approved_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(eventually([&] { return a.active_roles("alice", "prod", frozen) == std::vector<std::string>{"writer"}; },
                         1s))
      << "node A did not see the grant within 1 s";
  const auto took = std::chrono::steady_clock::now() - approved_at;
  RecordProperty("grant_visible_after_ms",
                 int(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
  EXPECT_TRUE(a.active_roles("bob", "prod", frozen).empty());

  auto rv = b.revoke(req->id, kCarol, "done");
  ASSERT_TRUE(rv) << rv.error().message;
  EXPECT_TRUE(eventually([&] { return a.active_roles("alice", "prod", frozen).empty(); }, 1s))
      << "node A still grants a revoked role";
}

TEST_F(ApprovalsPostgres, ListenerSurvivesItsBackendBeingTerminated) {
  Service& a = node("node-a");
  Service& b = node("node-b");
  ASSERT_TRUE(eventually([&] { return listener_pids().size() == 2; })) << "both nodes listen";

  auto decided_on_b_fires_on_a = [&](const char* when) {
    auto r = a.submit(held_statement());
    ASSERT_TRUE(r) << r.error().message;
    std::atomic<bool> fired{false};
    const auto token = a.watch(r->id, [&](const Request&) { fired = true; });
    auto d = b.decide(r->id, kBob, true, "");
    ASSERT_TRUE(d) << d.error().message;
    EXPECT_TRUE(eventually([&] { return fired.load(); })) << when << ": node A's watcher did not fire";
    a.unwatch(token);
  };
  decided_on_b_fires_on_a("before");

  // End every listener backend; the stores reconnect (with backoff) and listen again.
  Db db;
  const auto before = listener_pids();
  db.rows("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN \"" + prefix_ +
          "approvals\"'");
  ASSERT_TRUE(eventually([&] {
    auto now = listener_pids();
    if (now.size() != 2) return false;
    for (const auto& p : now)
      if (std::find(before.begin(), before.end(), p) != before.end()) return false;
    return true;
  })) << "the listeners did not come back";
  decided_on_b_fires_on_a("after the listener was terminated");

  // A decision made while node A is not listening is found by the re-read after reconnecting.
  auto r = a.submit(held_statement());
  ASSERT_TRUE(r);
  std::atomic<bool> fired{false};
  const auto token = a.watch(r->id, [&](const Request&) { fired = true; });
  db.rows("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN \"" + prefix_ +
          "approvals\"'");
  ASSERT_TRUE(b.decide(r->id, kBob, true, ""));
  EXPECT_TRUE(eventually([&] { return fired.load(); })) << "a decision made while not listening was lost";
  a.unwatch(token);

  // The query connections come back too: the first call after losing one fails with a clear
  // error, the next reconnects.
  db.rows("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'gatehouse-approvals' "
          "AND query LIKE '%\"" + prefix_ + "approval_requests\"%'");
  auto first = a.get(r->id);
  if (!first) {
    EXPECT_NE(first.error().message.find("approvals store (PostgreSQL): "), std::string::npos);
  }
  auto second = a.get(r->id);
  ASSERT_TRUE(second && *second) << (second ? "missing" : second.error().message);
  EXPECT_EQ((*second)->state, State::Approved);
}

TEST_F(ApprovalsPostgres, RefusesBadPrefixesAndNamesAnUnreachableServer) {
  auto bad = open_postgres_store(test_dsn(), "gh-x");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("letters, digits and '_' only"), std::string::npos);
  EXPECT_FALSE(open_postgres_store(test_dsn(), std::string(33, 'x')));
  auto syntax = open_postgres_store("host=127.0.0.1 port", "gh_");
  ASSERT_FALSE(syntax);
  EXPECT_NE(syntax.error().message.find("approvals store (PostgreSQL): invalid connection string"), std::string::npos);

  // Lazy: opening succeeds; the first use names the server and the reason, never the password.
  auto down = open_postgres_store("host=127.0.0.1 port=1 user=u password=hunter2 dbname=d connect_timeout=2", "gh_");
  ASSERT_TRUE(down);
  auto r = (*down)->get("apr_x");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().sqlstate, "08006");
  EXPECT_NE(r.error().message.find("approvals store (PostgreSQL): cannot connect to 127.0.0.1:1/d"), std::string::npos)
      << r.error().message;
  EXPECT_EQ(r.error().message.find("hunter2"), std::string::npos);
}

}  // namespace
}  // namespace gh::approvals
