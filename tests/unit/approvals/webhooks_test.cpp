// Webhook payloads, signatures and the delivery policy. Delivery tests talk to a real
// cpp-httplib server on 127.0.0.1 (port chosen by the kernel); waits between attempts are
// recorded through NotifierOptions::wait instead of slept, so nothing here depends on timing.
#include "approvals/webhooks.h"
#include "people.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

namespace gh::approvals {
namespace {

using Json = nlohmann::json;
using namespace std::chrono_literals;

constexpr TimeUs kT = 1'700'000'000'000'000;  // 2023-11-14T22:13:20Z
const std::string kConsole = "https://gatehouse.example.com";

using test::person;

Request pending_request(std::string id = "apr_aaaaaaaaaaaaaaaaaaaa") {
  Request r;
  r.id = std::move(id);
  r.requester = person("alice", "alice@example.com", {"eng"});
  r.target = "prod";
  r.environment = "production";
  r.database = "app";
  r.statement = "UPDATE accounts SET plan = $1 WHERE id = $2";
  r.parameters = {std::string("pro"), std::nullopt};
  r.fingerprint = "f00";
  r.rule = "review-writes";
  r.reason = "writes on production need a review";
  r.justification = "INC-42: customer upgrade";
  r.reviewer_groups = {"dba"};
  r.approvals_required = 2;
  r.created_us = kT;
  r.node = "gh-1";
  return r;
}

AccessRequest access_request() {
  AccessRequest a;
  a.id = "acc_bbbbbbbbbbbbbbbbbbbb";
  a.requester = person("agent-7", "", {"agents"});
  a.requester.kind = "agent";
  a.target = "prod";
  a.role = "writer";
  a.reason = "backfill";
  a.duration_s = 1800;
  a.created_us = kT;
  return a;
}

// ---- events and payloads

TEST(WebhookEvent, NamesEveryStateWorthSending) {
  Request r = pending_request();
  EXPECT_EQ(webhook_event(&r, nullptr), "approval.pending");
  r.state = State::Approved;
  EXPECT_EQ(webhook_event(&r, nullptr), "approval.approved");
  r.state = State::Rejected;
  EXPECT_EQ(webhook_event(&r, nullptr), "approval.rejected");
  r.state = State::Cancelled;
  EXPECT_EQ(webhook_event(&r, nullptr), "approval.cancelled");
  r.state = State::Expired;
  EXPECT_EQ(webhook_event(&r, nullptr), "approval.expired");
  r.state = State::Consumed;
  EXPECT_EQ(webhook_event(&r, nullptr), std::nullopt);

  AccessRequest a = access_request();
  EXPECT_EQ(webhook_event(nullptr, &a), "access.pending");
  a.state = State::Approved;
  EXPECT_EQ(webhook_event(nullptr, &a), "access.approved");
  a.state = State::Rejected;
  EXPECT_EQ(webhook_event(nullptr, &a), "access.rejected");
  a.state = State::Cancelled;
  EXPECT_EQ(webhook_event(nullptr, &a), "access.revoked");
  a.state = State::Expired;
  EXPECT_EQ(webhook_event(nullptr, &a), "access.expired");
  EXPECT_EQ(webhook_event(nullptr, nullptr), std::nullopt);
}

TEST(WebhookPayload, JsonRequestShape) {
  Request r = pending_request();
  r.state = State::Rejected;
  r.decided_us = kT + 60'000'000;
  Vote v;
  v.reviewer = person("bob", "bob@example.com", {"dba"});
  v.approve = false;
  v.comment = "not during business hours";
  v.time_us = kT + 60'000'000;
  v.break_glass = true;
  r.votes = {v};
  auto j = Json::parse(json_payload("approval.rejected", "d-1", event_time_us(&r, nullptr), &r, nullptr, kConsole));
  EXPECT_EQ(j["event"], "approval.rejected");
  EXPECT_EQ(j["delivery"], "d-1");
  EXPECT_EQ(j["time"], "2023-11-14T22:14:20Z");
  EXPECT_FALSE(j.contains("access_request"));
  const auto& q = j["request"];
  EXPECT_EQ(q["id"], r.id);
  EXPECT_EQ(q["state"], "rejected");
  EXPECT_EQ(q["requester"],
            (Json{{"subject", "alice"}, {"email", "alice@example.com"}, {"groups", {"eng"}}, {"kind", "human"}}));
  EXPECT_EQ(q["target"], "prod");
  EXPECT_EQ(q["environment"], "production");
  EXPECT_EQ(q["statement"], r.statement);
  EXPECT_EQ(q["parameters"], (Json{"pro", nullptr}));
  EXPECT_EQ(q["rule"], "review-writes");
  EXPECT_EQ(q["reason"], r.reason);
  EXPECT_EQ(q["justification"], r.justification);
  EXPECT_EQ(q["approvals_required"], 2);
  ASSERT_EQ(q["votes"].size(), 1u);
  EXPECT_EQ(q["votes"][0]["reviewer"]["email"], "bob@example.com");
  EXPECT_EQ(q["votes"][0]["approve"], false);
  EXPECT_EQ(q["votes"][0]["comment"], "not during business hours");
  EXPECT_EQ(q["votes"][0]["time"], "2023-11-14T22:14:20Z");
  EXPECT_EQ(q["votes"][0]["break_glass"], true);
  EXPECT_EQ(q["created"], "2023-11-14T22:13:20Z");
  EXPECT_EQ(q["console_url"], kConsole + "/approvals/" + r.id);
}

TEST(WebhookPayload, JsonAccessShape) {
  AccessRequest a = access_request();
  a.state = State::Cancelled;
  a.decided_us = kT + 1'000'000;
  a.expires_us = kT + 1'801'000'000;
  a.revoked_by = "carol@example.com";
  a.revoke_reason = "done early";
  a.revoked_us = kT + 600'000'000;
  auto j = Json::parse(json_payload("access.revoked", "d-2", event_time_us(nullptr, &a), nullptr, &a, kConsole));
  EXPECT_EQ(j["event"], "access.revoked");
  EXPECT_EQ(j["time"], "2023-11-14T22:23:20Z");  // when it was revoked
  EXPECT_FALSE(j.contains("request"));
  const auto& q = j["access_request"];
  EXPECT_EQ(q["id"], a.id);
  EXPECT_EQ(q["state"], "cancelled");
  EXPECT_EQ(q["requester"]["kind"], "agent");
  EXPECT_EQ(q["role"], "writer");
  EXPECT_EQ(q["duration_s"], 1800);
  EXPECT_EQ(q["revoked_by"], "carol@example.com");
  EXPECT_EQ(q["revoke_reason"], "done early");
  EXPECT_EQ(q["expires"], "2023-11-14T22:43:21Z");
  EXPECT_EQ(q["console_url"], kConsole + "/approvals/" + a.id);
}

std::vector<std::string> all_texts(const Json& slack) {
  std::vector<std::string> out;
  for (const auto& b : slack["blocks"]) {
    if (b.contains("text")) out.push_back(b["text"]["text"]);
    if (b.contains("elements"))
      for (const auto& e : b["elements"]) out.push_back(e["text"]);
  }
  return out;
}

TEST(WebhookPayload, SlackShape) {
  Request r = pending_request();
  r.statement = "DELETE FROM t WHERE a < 3 AND b > 4 -- & more";
  auto j = Json::parse(slack_payload("approval.pending", &r, nullptr, kConsole));
  ASSERT_TRUE(j["text"].is_string());
  EXPECT_NE(j["text"].get<std::string>().find("Approval needed"), std::string::npos);
  EXPECT_NE(j["text"].get<std::string>().find("&lt; 3"), std::string::npos);
  const auto& b = j["blocks"];
  ASSERT_EQ(b.size(), 4u);
  EXPECT_EQ(b[0]["type"], "section");
  EXPECT_EQ(b[0]["text"]["type"], "mrkdwn");
  const std::string head = b[0]["text"]["text"];
  EXPECT_EQ(head.rfind("*Approval needed* for `prod` (production) by alice@example.com", 0), 0u) << head;
  EXPECT_NE(head.find("Rule `review-writes`"), std::string::npos) << head;
  EXPECT_NE(head.find("2 approvals required"), std::string::npos) << head;
  EXPECT_EQ(b[1]["type"], "section");
  EXPECT_EQ(b[1]["text"]["text"], "```\nDELETE FROM t WHERE a &lt; 3 AND b &gt; 4 -- &amp; more\n```");
  EXPECT_EQ(b[2]["type"], "context");
  EXPECT_EQ(b[2]["elements"][0]["type"], "mrkdwn");
  EXPECT_EQ(b[2]["elements"][0]["text"], "*Justification:* INC-42: customer upgrade");
  EXPECT_EQ(b[2]["elements"][1]["text"], "2 bind parameters (shown in the console)");
  EXPECT_EQ(b[3]["type"], "section");
  EXPECT_EQ(b[3]["text"]["text"], "<" + kConsole + "/approvals/" + r.id + "|Open in Gatehouse>");
  // Bind parameter values are not sent to Slack.
  EXPECT_EQ(j.dump().find("\"pro\""), std::string::npos);
}

TEST(WebhookPayload, SlackDecisionAndAccess) {
  Request r = pending_request();
  r.state = State::Rejected;
  Vote v;
  v.reviewer = person("bob", "bob@example.com", {"dba"});
  v.comment = "use the batch job";
  r.votes = {v};
  auto j = Json::parse(slack_payload("approval.rejected", &r, nullptr, kConsole));
  const std::string head = j["blocks"][0]["text"]["text"];
  EXPECT_EQ(head.rfind("*Rejected* for `prod`", 0), 0u) << head;
  EXPECT_NE(head.find("Rejected by bob@example.com: use the batch job"), std::string::npos) << head;

  AccessRequest a = access_request();
  auto k = Json::parse(slack_payload("access.pending", nullptr, &a, kConsole));
  ASSERT_EQ(k["blocks"].size(), 2u);
  EXPECT_EQ(k["blocks"][0]["text"]["text"],
            "*Access requested*: role `writer` on `prod` for agent-7 (agent), 30 min\n*Reason:* backfill");
  EXPECT_EQ(k["blocks"][1]["text"]["text"], "<" + kConsole + "/approvals/" + a.id + "|Open in Gatehouse>");
}

TEST(WebhookPayload, SlackTruncatesLongTextWithinBlockKitLimits) {
  Request r = pending_request();
  r.statement = "SELECT '";
  for (int i = 0; i < 3000; ++i) r.statement += "é<";  // 2 + 1 bytes, "<" escaped to 4
  r.statement += "```'";
  r.justification = std::string(5000, 'j');
  r.reason = std::string(5000, 'r');
  auto j = Json::parse(slack_payload("approval.pending", &r, nullptr, kConsole));  // throws on invalid UTF-8
  for (const auto& t : all_texts(j)) EXPECT_LE(t.size(), 3000u);
  const std::string code = j["blocks"][1]["text"]["text"];
  EXPECT_EQ(code.rfind("```\nSELECT 'é&lt;é&lt;", 0), 0u);
  EXPECT_NE(code.find("\n```\n_truncated: " + std::to_string(r.statement.size()) + " bytes in all"), std::string::npos);
  EXPECT_LE(j["text"].get<std::string>().size(), 304u);
}

TEST(WebhookPayload, SlackCodeBlockCannotBeClosedByTheStatement) {
  Request r = pending_request();
  r.statement = "SELECT 1 -- ``` *bold*";
  auto j = Json::parse(slack_payload("approval.pending", &r, nullptr, kConsole));
  const std::string code = j["blocks"][1]["text"]["text"];
  EXPECT_EQ(code.find("```", 3), code.size() - 3) << code;
}

TEST(WebhookSignature, KnownVector) {
  // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac s3cret
  EXPECT_EQ(webhook_signature("s3cret", 1700000000, R"({"a":1})"),
            "sha256=1698a50bc74d1ff1db85c4e0a5297c2ad9fdba245d5737cdb789e4cc6e098940");
  EXPECT_NE(webhook_signature("s3cret", 1700000001, R"({"a":1})"),
            webhook_signature("s3cret", 1700000000, R"({"a":1})"));
}

TEST(WebhookRetryAfter, SecondsAndHttpDates) {
  EXPECT_EQ(parse_retry_after("3", 0), 3s);
  EXPECT_EQ(parse_retry_after(" 120 ", 0), 120s);
  EXPECT_EQ(parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", 1700000000), 30s);
  EXPECT_EQ(parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", 1800000000), 0s);  // in the past
  EXPECT_EQ(parse_retry_after("", 0), std::nullopt);
  EXPECT_EQ(parse_retry_after("soon", 0), std::nullopt);
}

// ---- delivery against a real HTTP server

struct Received {
  std::string event, delivery, timestamp, signature, content_type, body;
};

class Receiver {
 public:
  struct Answer {
    Answer(int s = 200, std::string ra = {}) : status(s), retry_after(std::move(ra)) {}
    int status;
    std::string retry_after;
  };

  Receiver() {
    server_.Post("/hook", [this](const httplib::Request& req, httplib::Response& res) {
      Answer a;
      {
        std::unique_lock lock(mu_);
        got_.push_back({req.get_header_value("X-Gatehouse-Event"), req.get_header_value("X-Gatehouse-Delivery"),
                        req.get_header_value("X-Gatehouse-Timestamp"), req.get_header_value("X-Gatehouse-Signature"),
                        req.get_header_value("Content-Type"), req.body});
        cv_.notify_all();
        if (!script_.empty()) {
          a = script_.front();
          script_.pop_front();
        }
        cv_.wait(lock, [&] { return !held_; });
      }
      res.status = a.status;
      if (!a.retry_after.empty()) res.set_header("Retry-After", a.retry_after);
      res.set_content(a.status < 300 ? "ok" : "no", "text/plain");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");  // listening from here on; accepts once the thread runs
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // stop() before the accept loop began would be ignored (and join() would wait forever).
    while (!server_.is_running()) std::this_thread::yield();
  }
  ~Receiver() {
    release();
    server_.stop();
    thread_.join();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }
  void script(std::vector<Answer> answers) {
    std::lock_guard lock(mu_);
    script_.assign(answers.begin(), answers.end());
  }
  void hold() {
    std::lock_guard lock(mu_);
    held_ = true;
  }
  void release() {
    std::lock_guard lock(mu_);
    held_ = false;
    cv_.notify_all();
  }
  void wait_for_requests(std::size_t n) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return got_.size() >= n; });
  }
  std::vector<Received> got() {
    std::lock_guard lock(mu_);
    return got_;
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Answer> script_;
  std::vector<Received> got_;
  bool held_ = false;
};

struct Recorder {
  std::mutex mu;
  std::vector<std::chrono::milliseconds> waits;
  std::vector<std::string> logs;

  NotifierOptions options() {
    NotifierOptions o;
    o.wait = [this](std::chrono::milliseconds d) {
      std::lock_guard lock(mu);
      waits.push_back(d);
      return true;
    };
    o.log = [this](NotifierOptions::Level, const std::string& m) {
      std::lock_guard lock(mu);
      logs.push_back(m);
    };
    return o;
  }
  bool logged(const std::string& part) {
    std::lock_guard lock(mu);
    for (const auto& l : logs)
      if (l.find(part) != std::string::npos) return true;
    return false;
  }
};

TEST(WebhookDelivery, RetriesServerErrorsWithBackoffAndSignsEachAttempt) {
  Receiver rx;
  rx.script({{500}, {502}, {200}});
  Recorder rec;
  {
    Notifier n({{rx.url(), "s3cret", WebhookTarget::Format::Json}}, kConsole, rec.options());
    Request r = pending_request();
    n.notify(&r, nullptr);
    ASSERT_TRUE(n.flush(30s));
    auto s = n.stats();
    EXPECT_EQ(s.delivered, 1u);
    EXPECT_EQ(s.attempts, 3u);
    EXPECT_EQ(s.failed, 0u);
  }
  EXPECT_EQ(rec.waits, (std::vector<std::chrono::milliseconds>{1000ms, 2000ms}));
  auto got = rx.got();
  ASSERT_EQ(got.size(), 3u);
  for (const auto& g : got) {
    EXPECT_EQ(g.event, "approval.pending");
    EXPECT_EQ(g.delivery, got[0].delivery);  // the same delivery, attempted three times
    EXPECT_EQ(g.content_type, "application/json");
    EXPECT_EQ(g.signature, webhook_signature("s3cret", std::stoll(g.timestamp), g.body));
    auto j = Json::parse(g.body);
    EXPECT_EQ(j["delivery"], g.delivery);
    EXPECT_EQ(j["request"]["id"], "apr_aaaaaaaaaaaaaaaaaaaa");
  }
  EXPECT_EQ(got[0].delivery.size(), 36u);
}

TEST(WebhookDelivery, ClientErrorsAreNotRetried) {
  Receiver rx;
  rx.script({{400}});
  Recorder rec;
  Notifier n({{rx.url(), "", WebhookTarget::Format::Slack}}, kConsole, rec.options());
  Request r = pending_request();
  n.notify(&r, nullptr);
  ASSERT_TRUE(n.flush(30s));
  auto s = n.stats();
  EXPECT_EQ(s.attempts, 1u);
  EXPECT_EQ(s.failed, 1u);
  EXPECT_EQ(s.delivered, 0u);
  EXPECT_TRUE(rec.waits.empty());
  EXPECT_TRUE(rec.logged("refused with HTTP 400, not retried: no"));
  auto got = rx.got();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].signature, "");  // no secret, no signature
  EXPECT_TRUE(Json::parse(got[0].body).contains("blocks"));
}

TEST(WebhookDelivery, HonoursRetryAfter) {
  Receiver rx;
  rx.script({{429, "3"}, {503, "0"}, {429}, {200}});
  Recorder rec;
  Notifier n({{rx.url(), "k", WebhookTarget::Format::Json}}, kConsole, rec.options());
  AccessRequest a = access_request();
  n.notify(nullptr, &a);
  ASSERT_TRUE(n.flush(30s));
  EXPECT_EQ(n.stats().delivered, 1u);
  EXPECT_EQ(n.stats().attempts, 4u);
  // Retry-After 3, Retry-After 0, then the backoff of a third attempt.
  EXPECT_EQ(rec.waits, (std::vector<std::chrono::milliseconds>{3000ms, 0ms, 4000ms}));
  EXPECT_EQ(rx.got()[0].event, "access.pending");
}

TEST(WebhookDelivery, GivesUpAfterMaxAttempts) {
  Receiver rx;
  rx.script({{500}, {500}, {500}, {500}, {500}, {500}});
  Recorder rec;
  auto opt = rec.options();
  opt.first_backoff = 10ms;
  Notifier n({{rx.url(), "", WebhookTarget::Format::Json}}, kConsole, std::move(opt));
  Request r = pending_request();
  n.notify(&r, nullptr);
  ASSERT_TRUE(n.flush(30s));
  EXPECT_EQ(n.stats().attempts, 5u);
  EXPECT_EQ(n.stats().failed, 1u);
  EXPECT_EQ(rec.waits, (std::vector<std::chrono::milliseconds>{10ms, 20ms, 40ms, 80ms}));
  EXPECT_TRUE(rec.logged("not delivered after 5 attempts: HTTP 500"));
}

TEST(WebhookDelivery, ConnectionErrorsAreRetried) {
  std::string url;
  {
    Receiver gone;  // a port that was just free: nothing listens there any more
    url = gone.url();
  }
  Recorder rec;
  auto opt = rec.options();
  opt.max_attempts = 2;
  Notifier n({{url, "", WebhookTarget::Format::Json}}, kConsole, std::move(opt));
  Request r = pending_request();
  n.notify(&r, nullptr);
  ASSERT_TRUE(n.flush(30s));
  EXPECT_EQ(n.stats().attempts, 2u);
  EXPECT_EQ(n.stats().failed, 1u);
  EXPECT_EQ(rec.waits.size(), 1u);
}

TEST(WebhookDelivery, InOrderPerWebhookAndOnlyEvents) {
  Receiver rx;
  rx.script({{500}});  // the first event is retried; the others wait behind it
  Recorder rec;
  Notifier n({{rx.url(), "", WebhookTarget::Format::Json}}, kConsole, rec.options());
  std::vector<std::string> sent;
  for (int i = 0; i < 10; ++i) {
    Request r = pending_request("apr_" + std::to_string(i));
    n.notify(&r, nullptr);
    n.notify(&r, nullptr);  // a later change while still pending (a vote, the waiting flag): not an event
    sent.push_back(r.id + " approval.pending");
    r.state = State::Approved;
    n.notify(&r, nullptr);
    sent.push_back(r.id + " approval.approved");
    r.state = State::Consumed;
    n.notify(&r, nullptr);  // not an event
  }
  ASSERT_TRUE(n.flush(30s));
  auto got = rx.got();
  ASSERT_EQ(got.size(), sent.size() + 1);
  std::vector<std::string> order;
  for (std::size_t i = 1; i < got.size(); ++i)
    order.push_back(Json::parse(got[i].body)["request"]["id"].get<std::string>() + " " + got[i].event);
  EXPECT_EQ(order, sent);
  EXPECT_EQ(n.stats().delivered, sent.size());
}

TEST(WebhookDelivery, FullQueueDropsTheOldestWithAWarning) {
  Receiver rx;
  rx.hold();
  Recorder rec;
  auto opt = rec.options();
  opt.queue_limit = 2;
  Notifier n({{rx.url(), "", WebhookTarget::Format::Json}}, kConsole, std::move(opt));
  Request first = pending_request("apr_first");
  n.notify(&first, nullptr);
  rx.wait_for_requests(1);  // in flight, held by the receiver: the queue is empty again
  for (int i = 0; i < 5; ++i) {
    Request r = pending_request("apr_" + std::to_string(i));
    n.notify(&r, nullptr);
  }
  EXPECT_EQ(n.stats().dropped, 3u);
  EXPECT_TRUE(rec.logged("queue full (2 events), the oldest event was dropped (1 dropped so far)"));
  rx.release();
  ASSERT_TRUE(n.flush(30s));
  auto got = rx.got();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(Json::parse(got[1].body)["request"]["id"], "apr_3");
  EXPECT_EQ(Json::parse(got[2].body)["request"]["id"], "apr_4");
}

TEST(WebhookDelivery, EachWebhookHasItsOwnQueue) {
  Receiver slow, fast;
  slow.hold();
  Recorder rec;
  Notifier n({{slow.url(), "", WebhookTarget::Format::Json}, {fast.url(), "", WebhookTarget::Format::Slack}}, kConsole,
             rec.options());
  Request r = pending_request();
  n.notify(&r, nullptr);
  r.state = State::Approved;
  n.notify(&r, nullptr);
  fast.wait_for_requests(2);  // while the slow receiver still holds the first
  EXPECT_EQ(fast.got()[1].event, "approval.approved");
  slow.release();
  ASSERT_TRUE(n.flush(30s));
  EXPECT_EQ(slow.got().size(), 2u);
  EXPECT_EQ(n.stats().delivered, 4u);
}

}  // namespace
}  // namespace gh::approvals
