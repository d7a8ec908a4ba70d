#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "approvals/approvals.h"
#include "people.h"
#include "store/sqlite.h"

namespace gh::approvals {
namespace {

constexpr TimeUs kSecond = 1'000'000;
constexpr TimeUs kStart = 1'700'000'000 * kSecond;

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char tmpl[] = "/tmp/gh-approvals-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

using test::person;

const Person kAlice = person("alice", "alice@example.com", {"eng"});
const Person kBob = person("bob", "bob@example.com", {"dba"});
const Person kCarol = person("carol", "carol@example.com", {"dba", "eng"});
const Person kMallory = person("mallory", "mallory@example.com", {"eng"});
const Person kOncall = person("oncall", "oncall@example.com", {"breakglass"});

class ApprovalsTest : public ::testing::Test {
 protected:
  std::unique_ptr<Service> open(const std::string& name = "approvals.db") {
    auto store = open_sqlite_store(dir_.file(name));
    EXPECT_TRUE(store) << store.error().message;
    Settings s;
    s.node = "n1";
    s.rerun_window = std::chrono::seconds(600);
    s.pending_ttl = std::chrono::seconds(3600);
    s.break_glass_groups = {"breakglass"};
    s.max_grant = std::chrono::seconds(86400);
    s.clock = [c = clock_] { return c->load(); };
    return std::make_unique<Service>(std::move(*store), std::move(s));
  }

  void SetUp() override { service_ = open(); }

  void advance(TimeUs us) { *clock_ += us; }
  TimeUs now() const { return clock_->load(); }

  Request submit(int approvals_required = 1, std::vector<std::string> reviewers = {"dba"},
                 std::vector<std::optional<std::string>> params = {std::string("42")}) {
    Request r;
    r.requester = kAlice;
    r.target = "prod";
    r.database = "app";
    r.statement = "DELETE FROM orders WHERE id = $1";
    r.parameters = std::move(params);
    r.rule = "review-deletes";
    r.reviewer_groups = std::move(reviewers);
    r.approvals_required = approvals_required;
    auto s = service_->submit(r);
    EXPECT_TRUE(s) << s.error().message;
    return *s;
  }

  AccessRequest ask_access(std::int64_t duration_s = 60) {
    AccessRequest a;
    a.requester = kAlice;
    a.target = "prod";
    a.role = "writer";
    a.reason = "incident 42";
    a.duration_s = duration_s;
    a.reviewer_groups = {"dba"};
    auto r = service_->request_access(a);
    EXPECT_TRUE(r) << r.error().message;
    return *r;
  }

  State state_of(const std::string& id) {
    auto r = service_->get(id);
    EXPECT_TRUE(r && *r);
    return (*r)->state;
  }

  TempDir dir_;
  std::shared_ptr<std::atomic<TimeUs>> clock_ = std::make_shared<std::atomic<TimeUs>>(kStart);
  std::unique_ptr<Service> service_;
};

TEST(MatchKey, FramesStatementAndParametersUnambiguously) {
  const auto k = match_key("SELECT $1", {std::string("a")});
  EXPECT_EQ(k.size(), 64u);
  EXPECT_EQ(k.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(k, match_key("SELECT $1", {std::string("a")}));
  EXPECT_NE(k, match_key("SELECT $1", {std::string("b")}));
  EXPECT_NE(match_key("SELECT $1", {std::nullopt}), match_key("SELECT $1", {std::string("")}));
  EXPECT_NE(match_key("SELECT $1", {std::nullopt}), match_key("SELECT $1", {std::string("N")}));
  EXPECT_NE(match_key("ab", {}), match_key("a", {std::string("b")}));
  EXPECT_NE(match_key("x", {std::string("1:a")}), match_key("x", {std::string("1"), std::string("a")}));
  EXPECT_NE(match_key("x", {}), match_key("x", {std::nullopt}));
}

TEST(States, NamesRoundTrip) {
  for (State s : {State::Pending, State::Approved, State::Rejected, State::Cancelled, State::Expired, State::Consumed})
    EXPECT_EQ(parse_state(state_name(s)), s);
  EXPECT_EQ(state_name(State::Approved), "approved");
  EXPECT_FALSE(parse_state("bogus"));
}

TEST_F(ApprovalsTest, SubmitFillsIdTimeNodeAndState) {
  const Request r = submit();
  ASSERT_EQ(r.id.size(), 24u);
  EXPECT_EQ(r.id.substr(0, 4), "apr_");
  EXPECT_EQ(r.id.find_first_not_of("abcdefghijklmnopqrstuvwxyz234567", 4), std::string::npos);
  EXPECT_EQ(r.state, State::Pending);
  EXPECT_EQ(r.created_us, now());
  EXPECT_EQ(r.node, "n1");
  EXPECT_EQ(r.match_key, match_key(r.statement, r.parameters));
  EXPECT_NE(submit().id, r.id);

  auto got = service_->get(r.id);
  ASSERT_TRUE(got && *got);
  EXPECT_EQ((*got)->statement, r.statement);
  EXPECT_EQ((*got)->parameters, r.parameters);
  EXPECT_EQ((*got)->requester.email, "alice@example.com");
  EXPECT_EQ((*got)->reviewer_groups, std::vector<std::string>{"dba"});
}

TEST_F(ApprovalsTest, UnknownIdIsNotFound) {
  auto d = service_->decide("apr_nope", kBob, true, "");
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().kind, DecideError::Kind::NotFound);
  auto g = service_->get("apr_nope");
  ASSERT_TRUE(g);
  EXPECT_FALSE(*g);
}

TEST_F(ApprovalsTest, NoSelfApprovalBySubject) {
  const Request r = submit(1, {});
  Person me = kAlice;
  me.email.clear();
  auto d = service_->decide(r.id, me, true, "");
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().kind, DecideError::Kind::SelfApproval);
  EXPECT_NE(d.error().message.find("no one approves their own request"), std::string::npos);
  EXPECT_EQ(state_of(r.id), State::Pending);
}

TEST_F(ApprovalsTest, NoSelfApprovalByEmail) {
  const Request r = submit(1, {});
  auto d = service_->decide(r.id, person("alice-other-login", "Alice@Example.com", {"dba"}), true, "");
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().kind, DecideError::Kind::SelfApproval);
  // Two people without email are not the same person.
  Request anon;
  anon.requester = person("svc-1", "", {});
  anon.target = "prod";
  anon.statement = "SELECT 1";
  auto s = service_->submit(anon);
  ASSERT_TRUE(s);
  EXPECT_TRUE(service_->decide(s->id, person("svc-2", "", {}), true, ""));
}

TEST_F(ApprovalsTest, ReviewerMustBeInAReviewerGroup) {
  const Request r = submit(1, {"dba", "security"});
  auto d = service_->decide(r.id, kMallory, true, "");
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().kind, DecideError::Kind::NotAReviewer);
  EXPECT_NE(d.error().message.find("dba, security"), std::string::npos) << d.error().message;
  auto ok = service_->decide(r.id, kBob, true, "looks fine");
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->state, State::Approved);
  EXPECT_FALSE(ok->votes.at(0).break_glass);
}

TEST_F(ApprovalsTest, AnyoneMayReviewWhenNoGroupsAreSet) {
  const Request r = submit(1, {});
  auto ok = service_->decide(r.id, kMallory, true, "");
  ASSERT_TRUE(ok);
  EXPECT_FALSE(ok->votes.at(0).break_glass);
}

TEST_F(ApprovalsTest, BreakGlassApprovesAndIsFlagged) {
  const Request r = submit();
  auto d = service_->decide(r.id, kOncall, true, "outage");
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->state, State::Approved);
  ASSERT_EQ(d->votes.size(), 1u);
  EXPECT_TRUE(d->votes[0].break_glass);
  auto stored = service_->get(r.id);
  EXPECT_TRUE((*stored)->votes.at(0).break_glass);
}

TEST_F(ApprovalsTest, TwoApprovalsRequired) {
  const Request r = submit(2);
  auto first = service_->decide(r.id, kBob, true, "");
  ASSERT_TRUE(first);
  EXPECT_EQ(first->state, State::Pending);
  EXPECT_EQ(first->decided_us, 0);
  advance(5 * kSecond);
  auto second = service_->decide(r.id, kCarol, true, "");
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_EQ(second->state, State::Approved);
  EXPECT_EQ(second->decided_us, now());
  EXPECT_EQ(second->rerun_until_us, now() + 600 * kSecond);
  EXPECT_EQ(second->votes.size(), 2u);
  EXPECT_EQ(state_of(r.id), State::Approved);
}

TEST_F(ApprovalsTest, RejectionDecidesAtOnce) {
  const Request r = submit(2);
  auto d = service_->decide(r.id, kBob, false, "use a WHERE clause");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->state, State::Rejected);
  EXPECT_EQ(d->decided_us, now());
  EXPECT_EQ(d->votes.at(0).comment, "use a WHERE clause");
  auto late = service_->decide(r.id, kCarol, true, "");
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().kind, DecideError::Kind::NotPending);
  EXPECT_EQ(late.error().message, "request " + r.id + " is already rejected");
}

TEST_F(ApprovalsTest, SecondVoteBySameReviewerIsRefused) {
  const Request r = submit(2);
  ASSERT_TRUE(service_->decide(r.id, kBob, true, ""));
  Person bob_again = kBob;
  bob_again.email = "bob@elsewhere.example";
  auto d = service_->decide(r.id, bob_again, true, "");
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().kind, DecideError::Kind::AlreadyVoted);
  EXPECT_EQ(state_of(r.id), State::Pending);
}

TEST_F(ApprovalsTest, OnePersonWithTwoIdentitiesVotesOnce) {
  // Found by adversarial testing: bob's second account (another subject, his email in other
  // case) was counted as a second reviewer, so the two-person rule passed with one person.
  const Request r = submit(2);
  ASSERT_TRUE(service_->decide(r.id, kBob, true, ""));
  Person bob_second = kBob;
  bob_second.subject = "bob-second-account";
  for (char& c : bob_second.email) c = char(std::toupper(static_cast<unsigned char>(c)));
  auto d = service_->decide(r.id, bob_second, true, "");
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().kind, DecideError::Kind::AlreadyVoted);
  EXPECT_EQ(state_of(r.id), State::Pending);
  ASSERT_TRUE(service_->decide(r.id, kCarol, true, ""));  // a second person still can
  EXPECT_EQ(state_of(r.id), State::Approved);
}

TEST_F(ApprovalsTest, ConsumeOnce) {
  const Request r = submit();
  EXPECT_EQ(service_->consume(r.id), false);  // pending
  ASSERT_TRUE(service_->decide(r.id, kBob, true, ""));
  EXPECT_EQ(service_->consume(r.id), true);
  EXPECT_EQ(service_->consume(r.id), false);
  EXPECT_EQ(state_of(r.id), State::Consumed);
  EXPECT_EQ(service_->consume("apr_unknown"), false);
}

TEST_F(ApprovalsTest, TakeRerunWithinWindowOnce) {
  const Request r = submit();
  ASSERT_TRUE(service_->decide(r.id, kBob, true, ""));
  advance(599 * kSecond);
  auto t = service_->take_rerun("alice", "prod", r.match_key);
  ASSERT_TRUE(t);
  ASSERT_TRUE(*t);
  EXPECT_EQ((*t)->id, r.id);
  EXPECT_EQ((*t)->state, State::Consumed);
  EXPECT_EQ(state_of(r.id), State::Consumed);
  auto again = service_->take_rerun("alice", "prod", r.match_key);
  ASSERT_TRUE(again);
  EXPECT_FALSE(*again);
}

TEST_F(ApprovalsTest, TakeRerunOutsideWindow) {
  const Request r = submit();
  ASSERT_TRUE(service_->decide(r.id, kBob, true, ""));
  advance(601 * kSecond);
  auto t = service_->take_rerun("alice", "prod", r.match_key);
  ASSERT_TRUE(t);
  EXPECT_FALSE(*t);
  EXPECT_EQ(state_of(r.id), State::Approved);
}

TEST_F(ApprovalsTest, TakeRerunOnlyForSameIdentityTargetAndParameters) {
  const Request r = submit();
  ASSERT_TRUE(service_->decide(r.id, kBob, true, ""));
  auto other_person = service_->take_rerun("bob", "prod", r.match_key);
  ASSERT_TRUE(other_person);
  EXPECT_FALSE(*other_person);
  // The requester's email is not the subject.
  EXPECT_FALSE(*service_->take_rerun("alice@example.com", "prod", r.match_key));
  EXPECT_FALSE(*service_->take_rerun("alice", "staging", r.match_key));
  const auto other_params = match_key(r.statement, {std::string("43")});
  EXPECT_FALSE(*service_->take_rerun("alice", "prod", other_params));
  EXPECT_TRUE(*service_->take_rerun("alice", "prod", r.match_key));
}

TEST_F(ApprovalsTest, TakeRerunSkipsARequestASessionIsWaitingOn) {
  const Request r = submit();
  service_->set_waiting(r.id, true);
  EXPECT_TRUE((*service_->get(r.id))->waiting);
  ASSERT_TRUE(service_->decide(r.id, kBob, true, ""));
  EXPECT_FALSE(*service_->take_rerun("alice", "prod", r.match_key));
  service_->set_waiting(r.id, false);
  EXPECT_TRUE(*service_->take_rerun("alice", "prod", r.match_key));
}

TEST_F(ApprovalsTest, CancelFiresWatcherAndKeepsVotes) {
  const Request r = submit(2);
  ASSERT_TRUE(service_->decide(r.id, kBob, true, ""));
  std::vector<Request> fired;
  service_->watch(r.id, [&](const Request& x) { fired.push_back(x); });
  ASSERT_TRUE(service_->cancel(r.id, "client cancelled the query"));
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].state, State::Cancelled);
  EXPECT_EQ(fired[0].closed_reason, "client cancelled the query");
  auto got = service_->get(r.id);
  EXPECT_EQ((*got)->state, State::Cancelled);
  EXPECT_EQ((*got)->votes.size(), 1u);
  EXPECT_EQ((*got)->closed_reason, "client cancelled the query");
  // Not pending any more: a no-op, and nothing fires again.
  EXPECT_TRUE(service_->cancel(r.id, "again"));
  EXPECT_EQ((*service_->get(r.id))->closed_reason, "client cancelled the query");
  EXPECT_EQ(fired.size(), 1u);
  EXPECT_FALSE(service_->cancel("apr_unknown", "x"));
}

// The woken session changes the record again on its own thread (not waiting, consumed); the
// change that woke it must reach the listeners (the audit trail) first, or the audit records a
// decision after the run it allowed (seen in CI as an approval recorded twice).
TEST_F(ApprovalsTest, ListenersHearADecisionBeforeItsWaiterWakes) {
  const Request r = submit();
  std::vector<std::string> order;
  service_->on_change([&](const Request* x, const AccessRequest*) {
    if (x) order.push_back(std::string(state_name(x->state)));
  });
  service_->watch(r.id, [&](const Request&) { order.push_back("woken"); });
  ASSERT_TRUE(service_->decide(r.id, kBob, true, ""));
  EXPECT_EQ(order, (std::vector<std::string>{"approved", "woken"}));
}

TEST_F(ApprovalsTest, WatcherFiresOnceOnDecision) {
  const Request r = submit(2);
  int fired = 0;
  State seen = State::Pending;
  service_->watch(r.id, [&](const Request& x) {
    ++fired;
    seen = x.state;
  });
  ASSERT_TRUE(service_->decide(r.id, kBob, true, ""));
  EXPECT_EQ(fired, 0);  // still pending
  ASSERT_TRUE(service_->decide(r.id, kCarol, true, ""));
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(seen, State::Approved);
  EXPECT_TRUE(*service_->consume(r.id));
  EXPECT_EQ(fired, 1);
}

TEST_F(ApprovalsTest, WatchOnDecidedRequestFiresAtOnce) {
  const Request r = submit();
  ASSERT_TRUE(service_->decide(r.id, kBob, false, "no"));
  int fired = 0;
  const auto caller = std::this_thread::get_id();
  std::thread::id on;
  const auto token = service_->watch(r.id, [&](const Request& x) {
    ++fired;
    on = std::this_thread::get_id();
    EXPECT_EQ(x.state, State::Rejected);
  });
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(on, caller);
  service_->unwatch(token);  // harmless
}

TEST_F(ApprovalsTest, UnwatchThenDecideDoesNotFire) {
  const Request r = submit();
  int fired = 0;
  const auto token = service_->watch(r.id, [&](const Request&) { ++fired; });
  service_->unwatch(token);
  ASSERT_TRUE(service_->decide(r.id, kBob, true, ""));
  EXPECT_EQ(fired, 0);
}

TEST_F(ApprovalsTest, CallbackMayUnwatchItself) {
  const Request r = submit();
  std::uint64_t token = 0;
  int fired = 0;
  token = service_->watch(r.id, [&](const Request&) {
    ++fired;
    service_->unwatch(token);
  });
  ASSERT_TRUE(service_->decide(r.id, kBob, true, ""));
  EXPECT_EQ(fired, 1);
}

TEST_F(ApprovalsTest, UnwatchWaitsForARunningCallback) {
  const Request r = submit();
  std::mutex m;
  std::condition_variable cv;
  bool entered = false, release = false;
  std::atomic<bool> finished{false};
  const auto token = service_->watch(r.id, [&](const Request&) {
    std::unique_lock lock(m);
    entered = true;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
    finished = true;
  });
  std::thread decider([&] { ASSERT_TRUE(service_->decide(r.id, kBob, true, "")); });
  {
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return entered; });
  }
  std::atomic<bool> finished_when_unwatched{false};
  std::thread session_end([&] {
    service_->unwatch(token);
    finished_when_unwatched = finished.load();
  });
  std::this_thread::yield();
  {
    std::lock_guard lock(m);
    release = true;
  }
  cv.notify_all();
  session_end.join();
  decider.join();
  EXPECT_TRUE(finished_when_unwatched);
}

TEST_F(ApprovalsTest, ConcurrentDecisionsDecideOnce) {
  for (int round = 0; round < 20; ++round) {
    const Request r = submit();
    std::atomic<int> fired{0};
    service_->watch(r.id, [&](const Request&) { ++fired; });
    std::atomic<int> ready{0};
    tl::expected<Request, DecideError> a, b;
    auto run = [&](const Person& who, tl::expected<Request, DecideError>& out) {
      ++ready;
      while (ready.load() < 2) std::this_thread::yield();
      out = service_->decide(r.id, who, true, "");
    };
    std::thread ta(run, std::cref(kBob), std::ref(a));
    std::thread tb(run, std::cref(kCarol), std::ref(b));
    ta.join();
    tb.join();
    EXPECT_NE(bool(a), bool(b)) << "round " << round;
    const auto& refused = a ? b : a;
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().kind, DecideError::Kind::NotPending);
    EXPECT_EQ(fired.load(), 1);
    auto got = service_->get(r.id);
    EXPECT_EQ((*got)->votes.size(), 1u);
  }
}

TEST_F(ApprovalsTest, PendingRequestsExpire) {
  const Request r = submit();
  const Request later = [&] {
    advance(1800 * kSecond);
    return submit();
  }();
  std::vector<State> fired;
  service_->watch(r.id, [&](const Request& x) { fired.push_back(x.state); });
  advance(1800 * kSecond);  // r is 3600 s old
  Filter pending;
  pending.state = State::Pending;
  auto list = service_->list(pending);
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ(list->at(0).id, later.id);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0], State::Expired);
  auto got = service_->get(r.id);
  EXPECT_EQ((*got)->state, State::Expired);
  EXPECT_EQ((*got)->decided_us, r.created_us + 3600 * kSecond);
  EXPECT_EQ((*got)->closed_reason, "not decided within 1 h");
  auto d = service_->decide(r.id, kBob, true, "");
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().kind, DecideError::Kind::NotPending);
  EXPECT_NE(d.error().message.find("expired"), std::string::npos);

  // Expiry is also noticed by decide and get alone.
  advance(1800 * kSecond);
  auto d2 = service_->decide(later.id, kBob, true, "");
  ASSERT_FALSE(d2);
  EXPECT_EQ(d2.error().kind, DecideError::Kind::NotPending);
}

TEST_F(ApprovalsTest, ListFiltersNewestFirst) {
  const Request a = submit();
  advance(kSecond);
  const Request b = submit();
  advance(kSecond);
  Request other;
  other.requester = kMallory;
  other.target = "staging";
  other.statement = "DROP TABLE t";
  auto c = service_->submit(other);
  ASSERT_TRUE(c);
  ASSERT_TRUE(service_->decide(b.id, kBob, true, ""));

  auto all = service_->list(Filter{});
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ(all->at(0).id, c->id);
  EXPECT_EQ(all->at(1).id, b.id);
  EXPECT_EQ(all->at(2).id, a.id);

  Filter f;
  f.requester = "alice@example.com";
  EXPECT_EQ(service_->list(f)->size(), 2u);
  f.requester = "alice";
  f.state = State::Approved;
  ASSERT_EQ(service_->list(f)->size(), 1u);
  EXPECT_EQ(service_->list(f)->at(0).id, b.id);
  Filter t;
  t.target = "staging";
  ASSERT_EQ(service_->list(t)->size(), 1u);
  Filter limited;
  limited.limit = 2;
  EXPECT_EQ(service_->list(limited)->size(), 2u);
}

TEST_F(ApprovalsTest, ChangeListenersSeeEveryChange) {
  std::vector<std::string> seen;
  service_->on_change([&](const Request* r, const AccessRequest* a) {
    if (r) seen.push_back(r->id + ":" + std::string(state_name(r->state)));
    if (a) seen.push_back(a->id + ":" + std::string(state_name(a->state)));
  });
  const Request r = submit();
  ASSERT_TRUE(service_->decide(r.id, kBob, true, ""));
  const AccessRequest a = ask_access();
  EXPECT_EQ(seen, (std::vector<std::string>{r.id + ":pending", r.id + ":approved", a.id + ":pending"}));
}

TEST_F(ApprovalsTest, AccessRequestIsValidated) {
  AccessRequest a;
  a.requester = kAlice;
  a.target = "prod";
  a.role = "writer";
  a.duration_s = 0;
  auto r = service_->request_access(a);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("duration"), std::string::npos);
  a.duration_s = 86401;
  EXPECT_FALSE(service_->request_access(a));
  a.duration_s = 86400;
  EXPECT_TRUE(service_->request_access(a));
  a.role.clear();
  EXPECT_FALSE(service_->request_access(a));
  a.role = "writer";
  a.target.clear();
  EXPECT_FALSE(service_->request_access(a));
}

TEST_F(ApprovalsTest, AccessGrantIsActiveUntilItExpires) {
  const AccessRequest a = ask_access(60);
  EXPECT_EQ(a.id.substr(0, 4), "acc_");
  EXPECT_EQ(a.id.size(), 24u);
  EXPECT_EQ(a.state, State::Pending);
  EXPECT_TRUE(service_->active_roles("alice", "prod", now()).empty());

  auto self = service_->decide_access(a.id, kAlice, true, "");
  ASSERT_FALSE(self);
  EXPECT_EQ(self.error().kind, DecideError::Kind::SelfApproval);
  auto outsider = service_->decide_access(a.id, kMallory, true, "");
  ASSERT_FALSE(outsider);
  EXPECT_EQ(outsider.error().kind, DecideError::Kind::NotAReviewer);

  advance(10 * kSecond);
  auto d = service_->decide_access(a.id, kBob, true, "");
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->state, State::Approved);
  EXPECT_EQ(d->decided_us, now());
  EXPECT_EQ(d->expires_us, now() + 60 * kSecond);

  EXPECT_EQ(service_->active_roles("alice", "prod", now()), std::vector<std::string>{"writer"});
  EXPECT_EQ(service_->active_roles("alice", "prod", now() + 59 * kSecond), std::vector<std::string>{"writer"});
  EXPECT_TRUE(service_->active_roles("alice", "prod", now() + 60 * kSecond).empty());
  EXPECT_TRUE(service_->active_roles("alice", "staging", now()).empty());
  EXPECT_TRUE(service_->active_roles("bob", "prod", now()).empty());

  advance(60 * kSecond);
  auto got = service_->get_access(a.id);
  ASSERT_TRUE(got && *got);
  EXPECT_EQ((*got)->state, State::Expired);
  EXPECT_TRUE(service_->active_roles("alice", "prod", now()).empty());
  auto late = service_->revoke(a.id, kBob, "too late");
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().kind, DecideError::Kind::NotPending);
}

TEST_F(ApprovalsTest, RevokedGrantIsGoneAtOnce) {
  const AccessRequest a = ask_access(3600);
  ASSERT_TRUE(service_->decide_access(a.id, kBob, true, ""));
  EXPECT_EQ(service_->active_roles("alice", "prod", now()), std::vector<std::string>{"writer"});
  // The requester may drop their own grant.
  auto r = service_->revoke(a.id, kAlice, "done early");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->state, State::Cancelled);
  EXPECT_EQ(r->revoked_by, "alice@example.com");
  EXPECT_EQ(r->revoke_reason, "done early");
  EXPECT_EQ(r->revoked_us, now());
  EXPECT_TRUE(service_->active_roles("alice", "prod", now()).empty());
  auto again = service_->revoke(a.id, kBob, "");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().kind, DecideError::Kind::NotPending);
  EXPECT_FALSE(service_->revoke("acc_unknown", kBob, ""));
}

TEST_F(ApprovalsTest, RejectedOrPendingAccessGrantsNothing) {
  const AccessRequest a = ask_access();
  auto pending_revoke = service_->revoke(a.id, kBob, "");
  ASSERT_FALSE(pending_revoke);
  EXPECT_EQ(pending_revoke.error().kind, DecideError::Kind::NotPending);
  auto d = service_->decide_access(a.id, kBob, false, "not during the freeze");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->state, State::Rejected);
  EXPECT_EQ(d->expires_us, 0);
  EXPECT_TRUE(service_->active_roles("alice", "prod", now()).empty());
}

TEST_F(ApprovalsTest, GrantCacheSeesAnotherServiceOnTheSameStore) {
  auto other = open();
  const AccessRequest a = ask_access(3600);
  EXPECT_TRUE(other->active_roles("alice", "prod", now()).empty());  // cached now
  ASSERT_TRUE(service_->decide_access(a.id, kBob, true, ""));
  EXPECT_TRUE(other->active_roles("alice", "prod", now()).empty());  // still fresh
  advance(2 * kSecond);
  EXPECT_EQ(other->active_roles("alice", "prod", now()), std::vector<std::string>{"writer"});
}

TEST_F(ApprovalsTest, RequestsSurviveReopeningTheStore) {
  const Request r = submit(2, {"dba"}, {std::nullopt, std::string("x")});
  ASSERT_TRUE(service_->decide(r.id, kOncall, true, "night"));
  const Request done = submit();
  ASSERT_TRUE(service_->decide(done.id, kBob, true, ""));
  const AccessRequest a = ask_access(3600);
  ASSERT_TRUE(service_->decide_access(a.id, kBob, true, ""));
  service_.reset();

  service_ = open();
  auto got = service_->get(r.id);
  ASSERT_TRUE(got && *got);
  EXPECT_EQ((*got)->state, State::Pending);
  EXPECT_EQ((*got)->parameters, (std::vector<std::optional<std::string>>{std::nullopt, std::string("x")}));
  ASSERT_EQ((*got)->votes.size(), 1u);
  EXPECT_TRUE((*got)->votes[0].break_glass);
  EXPECT_EQ((*got)->votes[0].comment, "night");
  EXPECT_EQ((*got)->approvals_required, 2);
  EXPECT_EQ((*got)->match_key, r.match_key);
  ASSERT_TRUE(service_->decide(r.id, kBob, true, ""));
  EXPECT_TRUE(*service_->take_rerun("alice", "prod", done.match_key));
  EXPECT_EQ(service_->list(Filter{})->size(), 2u);
  EXPECT_EQ(service_->active_roles("alice", "prod", now()), std::vector<std::string>{"writer"});
  auto acc = service_->get_access(a.id);
  ASSERT_TRUE(acc && *acc);
  EXPECT_EQ((*acc)->role, "writer");
  EXPECT_EQ((*acc)->reason, "incident 42");
}

TEST_F(ApprovalsTest, DamagedRecordIsAnErrorNotACrash) {
  const Request r = submit();
  {
    auto db = store::SqliteDb::open(dir_.file("approvals.db"));
    ASSERT_TRUE(db);
    ASSERT_TRUE(db->exec("UPDATE approval_requests SET json = '{\"id\": 5}'"));
  }
  auto got = service_->get(r.id);
  ASSERT_FALSE(got);
  EXPECT_NE(got.error().message.find("damaged"), std::string::npos) << got.error().message;
  auto d = service_->decide(r.id, kBob, true, "");
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().kind, DecideError::Kind::Store);
}

TEST(SqliteStore, OpenFailureSaysWhere) {
  auto s = open_sqlite_store("/nonexistent-dir/approvals.db");
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("/nonexistent-dir/approvals.db"), std::string::npos) << s.error().message;
}

}  // namespace
}  // namespace gh::approvals
