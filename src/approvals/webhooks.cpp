#include "approvals/webhooks.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <unordered_set>

#include "identity/http.h"

namespace gh::approvals {
namespace {

using Json = nlohmann::json;
using Level = NotifierOptions::Level;

constexpr std::size_t kSlackText = 3000;       // Block Kit: a section's text, a context element
constexpr std::size_t kSlackStatement = 2800;  // statement bytes in the code block
constexpr std::size_t kSlackFallback = 300;    // the notification's one line

std::string rfc3339(TimeUs us) {
  std::time_t s = static_cast<std::time_t>(us / 1'000'000);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Json time_or_null(TimeUs us) { return us ? Json(rfc3339(us)) : Json(nullptr); }

std::string dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

Json person_json(const Person& p) {
  return Json{{"subject", p.subject}, {"email", p.email}, {"groups", p.groups}, {"kind", p.kind}};
}

Json votes_json(const std::vector<Vote>& votes) {
  Json out = Json::array();
  for (const auto& v : votes)
    out.push_back(Json{{"reviewer", person_json(v.reviewer)},
                       {"approve", v.approve},
                       {"comment", v.comment},
                       {"time", time_or_null(v.time_us)},
                       {"break_glass", v.break_glass}});
  return out;
}

std::string link(const std::string& base, const std::string& id) { return base + "/approvals/" + id; }

// At most `n` bytes, not splitting a UTF-8 sequence.
std::string_view cut(std::string_view s, std::size_t n) {
  if (s.size() <= n) return s;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

// Slack mrkdwn: &, < and > are control characters and must be sent as entities. Appends as much
// of `s` as fits in `limit` bytes (escaped); true when all of it did.
bool append_escaped(std::string& out, std::string_view s, std::size_t limit) {
  const std::size_t start = out.size();
  for (std::size_t i = 0; i < s.size();) {
    std::size_t len = 1;
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0xF0)
      len = 4;
    else if (c >= 0xE0)
      len = 3;
    else if (c >= 0xC0)
      len = 2;
    len = std::min(len, s.size() - i);
    std::string_view piece = s.substr(i, len);
    if (piece == "&")
      piece = "&amp;";
    else if (piece == "<")
      piece = "&lt;";
    else if (piece == ">")
      piece = "&gt;";
    if (out.size() - start + piece.size() > limit) return false;
    out += piece;
    i += len;
  }
  return true;
}

std::string esc(std::string_view s, std::size_t limit = 500) {
  std::string out;
  if (!append_escaped(out, s, limit)) out += "…";
  return out;
}

// Inside an inline code span a backtick would end it.
std::string code(std::string_view s) {
  std::string v = esc(s, 200);
  std::replace(v.begin(), v.end(), '`', '\'');
  return "`" + v + "`";
}

std::string title_of(const std::string& event) {
  static const std::pair<const char*, const char*> kTitles[] = {
      {"approval.pending", "Approval needed"}, {"approval.approved", "Approved"},
      {"approval.rejected", "Rejected"},       {"approval.cancelled", "Cancelled"},
      {"approval.expired", "Expired"},         {"access.pending", "Access requested"},
      {"access.approved", "Access granted"},   {"access.rejected", "Access request rejected"},
      {"access.revoked", "Access revoked"},    {"access.expired", "Access expired"}};
  for (const auto& [e, t] : kTitles)
    if (event == e) return t;
  return event;
}

std::string deciders(const std::vector<Vote>& votes) {
  std::string approved, rejected;
  for (const auto& v : votes) {
    auto& list = v.approve ? approved : rejected;
    list += (list.empty() ? "" : ", ") + v.reviewer.display() + (v.break_glass ? " (break-glass)" : "");
  }
  std::string out;
  if (!approved.empty()) out += "Approved by " + esc(approved);
  if (!rejected.empty()) {
    out += (out.empty() ? "" : " · ") + ("Rejected by " + esc(rejected));
    for (auto it = votes.rbegin(); it != votes.rend(); ++it)
      if (!it->approve && !it->comment.empty()) {
        out += ": " + esc(it->comment);
        break;
      }
  }
  return out;
}

std::string hex(const unsigned char* p, std::size_t n) {
  static const char* d = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (std::size_t i = 0; i < n; ++i) {
    out += d[p[i] >> 4];
    out += d[p[i] & 15];
  }
  return out;
}

std::string delivery_id() {  // a random (version 4) UUID
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) {
    static std::atomic<std::uint64_t> n{0};
    std::uint64_t x = static_cast<std::uint64_t>(now_us()) ^ (++n << 48);
    for (int i = 0; i < 16; ++i) b[i] = static_cast<unsigned char>(x >> (8 * (i % 8)) ^ i);
  }
  b[6] = static_cast<unsigned char>((b[6] & 0x0F) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3F) | 0x80);
  std::string h = hex(b, sizeof b);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" + h.substr(20);
}

}  // namespace

std::optional<std::string> webhook_event(const Request* r, const AccessRequest* a) {
  if (r) {
    switch (r->state) {
      case State::Pending:
        return "approval.pending";
      case State::Approved:
        return "approval.approved";
      case State::Rejected:
        return "approval.rejected";
      case State::Cancelled:
        return "approval.cancelled";
      case State::Expired:
        return "approval.expired";
      case State::Consumed:
        return std::nullopt;  // it ran: the audit trail has it
    }
  } else if (a) {
    switch (a->state) {
      case State::Pending:
        return "access.pending";
      case State::Approved:
        return "access.approved";
      case State::Rejected:
        return "access.rejected";
      case State::Cancelled:
        return "access.revoked";
      case State::Expired:
        return "access.expired";
      case State::Consumed:
        return std::nullopt;
    }
  }
  return std::nullopt;
}

TimeUs event_time_us(const Request* r, const AccessRequest* a) {
  if (r) return r->state == State::Pending ? r->created_us : r->decided_us;
  if (!a) return 0;
  if (a->state == State::Pending) return a->created_us;
  if (a->state == State::Cancelled && a->revoked_us) return a->revoked_us;
  if (a->state == State::Expired && a->expires_us) return a->expires_us;
  return a->decided_us;
}

std::string json_payload(const std::string& event, const std::string& delivery, TimeUs time_us, const Request* r,
                         const AccessRequest* a, const std::string& console_base) {
  Json j{{"event", event}, {"delivery", delivery}, {"time", rfc3339(time_us ? time_us : now_us())}};
  if (r) {
    Json params = Json::array();
    for (const auto& p : r->parameters) params.push_back(p ? Json(*p) : Json(nullptr));
    j["request"] = Json{{"id", r->id},
                        {"state", std::string(state_name(r->state))},
                        {"requester", person_json(r->requester)},
                        {"target", r->target},
                        {"environment", r->environment},
                        {"database", r->database},
                        {"statement", r->statement},
                        {"parameters", std::move(params)},
                        {"fingerprint", r->fingerprint},
                        {"rule", r->rule},
                        {"reason", r->reason},
                        {"justification", r->justification},
                        {"reviewer_groups", r->reviewer_groups},
                        {"approvals_required", r->approvals_required},
                        {"votes", votes_json(r->votes)},
                        {"created", time_or_null(r->created_us)},
                        {"decided", time_or_null(r->decided_us)},
                        {"closed_reason", r->closed_reason},
                        {"node", r->node},
                        {"console_url", link(console_base, r->id)}};
  } else if (a) {
    j["access_request"] = Json{{"id", a->id},
                               {"state", std::string(state_name(a->state))},
                               {"requester", person_json(a->requester)},
                               {"target", a->target},
                               {"role", a->role},
                               {"reason", a->reason},
                               {"duration_s", a->duration_s},
                               {"reviewer_groups", a->reviewer_groups},
                               {"approvals_required", a->approvals_required},
                               {"votes", votes_json(a->votes)},
                               {"created", time_or_null(a->created_us)},
                               {"decided", time_or_null(a->decided_us)},
                               {"expires", time_or_null(a->expires_us)},
                               {"revoked_by", a->revoked_by},
                               {"revoke_reason", a->revoke_reason},
                               {"revoked", time_or_null(a->revoked_us)},
                               {"console_url", link(console_base, a->id)}};
  }
  return dump(j);
}

std::string slack_payload(const std::string& event, const Request* r, const AccessRequest* a,
                          const std::string& console_base) {
  const std::string title = title_of(event);
  auto section = [](std::string text) {
    return Json{{"type", "section"}, {"text", {{"type", "mrkdwn"}, {"text", std::move(text)}}}};
  };
  Json blocks = Json::array();
  std::string fallback, id;
  std::vector<std::string> context;
  if (r) {
    id = r->id;
    std::string head = "*" + title + "* for " + code(r->target);
    if (!r->environment.empty()) head += " (" + esc(r->environment, 100) + ")";
    head += " by " + esc(r->requester.display(), 200);
    if (r->requester.kind == "agent") head += " (agent)";
    std::string line2;
    if (!r->rule.empty()) line2 = "Rule " + code(r->rule);
    if (!r->reason.empty()) line2 += (line2.empty() ? "" : ": ") + esc(r->reason);
    if (r->state == State::Pending && r->approvals_required > 1)
      line2 += (line2.empty() ? "" : " · ") + std::to_string(r->approvals_required) + " approvals required";
    if (!line2.empty()) head += "\n" + line2;
    if (auto d = deciders(r->votes); !d.empty()) head += "\n" + d;
    if (!r->closed_reason.empty() && r->state != State::Approved) head += "\n" + esc(r->closed_reason);
    blocks.push_back(section(std::string(cut(head, kSlackText))));

    // A code block cannot contain ``` (it would end it early).
    std::string stmt = r->statement;
    for (std::size_t p; (p = stmt.find("```")) != std::string::npos;) stmt.replace(p, 3, "`\u200b``");
    std::string text = "```\n";
    const bool whole = append_escaped(text, stmt, kSlackStatement);
    text += "\n```";
    if (!whole)
      text += "\n_truncated: " + std::to_string(r->statement.size()) + " bytes in all; the console shows it whole_";
    blocks.push_back(section(std::move(text)));

    if (!r->justification.empty()) context.push_back("*Justification:* " + esc(r->justification, 1000));
    if (!r->parameters.empty())
      context.push_back(std::to_string(r->parameters.size()) + " bind parameter" +
                        (r->parameters.size() == 1 ? "" : "s") + " (shown in the console)");
    if (!r->database.empty()) context.push_back("database " + code(r->database));

    std::string one_line = r->statement;
    std::replace_if(
        one_line.begin(), one_line.end(), [](char c) { return c == '\n' || c == '\r' || c == '\t'; }, ' ');
    fallback = title + ": " + r->requester.display() + " on " + r->target + ": " + one_line;
  } else if (a) {
    id = a->id;
    std::string head = "*" + title + "*: role " + code(a->role) + " on " + code(a->target) + " for " +
                       esc(a->requester.display(), 200);
    if (a->requester.kind == "agent") head += " (agent)";
    head += ", " + std::to_string(a->duration_s / 60) + " min";
    if (!a->reason.empty()) head += "\n*Reason:* " + esc(a->reason, 1000);
    if (auto d = deciders(a->votes); !d.empty()) head += "\n" + d;
    if (a->state == State::Approved && a->expires_us) head += "\nUntil " + rfc3339(a->expires_us);
    if (a->state == State::Cancelled && !a->revoked_by.empty()) {
      head += "\nRevoked by " + esc(a->revoked_by, 200);
      if (!a->revoke_reason.empty()) head += ": " + esc(a->revoke_reason);
    }
    blocks.push_back(section(std::string(cut(head, kSlackText))));
    fallback = title + ": " + a->role + " on " + a->target + " for " + a->requester.display();
  } else {
    return {};
  }
  if (!context.empty()) {
    Json elements = Json::array();
    for (auto& c : context) elements.push_back(Json{{"type", "mrkdwn"}, {"text", std::string(cut(c, kSlackText))}});
    blocks.push_back(Json{{"type", "context"}, {"elements", std::move(elements)}});
  }
  blocks.push_back(section("<" + esc(link(console_base, id), 1000) + "|Open in Gatehouse>"));
  std::string text;
  if (!append_escaped(text, fallback, kSlackFallback)) text += "…";
  return dump(Json{{"text", std::move(text)}, {"blocks", std::move(blocks)}});
}

std::string webhook_signature(std::string_view secret, std::int64_t timestamp, std::string_view body) {
  std::string msg = std::to_string(timestamp);
  msg += '.';
  msg.append(body);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
            reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), mac, &len))
    return {};
  return "sha256=" + hex(mac, len);
}

std::optional<std::chrono::seconds> parse_retry_after(std::string_view v, std::int64_t now_s) {
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
  if (v.empty()) return std::nullopt;
  if (std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    if (v.size() > 9) return std::chrono::seconds(999'999'999);
    return std::chrono::seconds(std::stoll(std::string(v)));
  }
  std::tm tm{};  // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
  const std::string s(v);
  const char* end = strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (!end || *end) return std::nullopt;
  return std::chrono::seconds(std::max<std::int64_t>(0, static_cast<std::int64_t>(timegm(&tm)) - now_s));
}

// ---- the Notifier

namespace {

struct Event {
  std::string name;
  TimeUs time_us = 0;
  std::optional<Request> request;
  std::optional<AccessRequest> access;
};

}  // namespace

struct Notifier::Impl {
  struct Lane {
    WebhookTarget target;
    std::deque<std::shared_ptr<const Event>> queue;
    bool busy = false;
    std::condition_variable cv;
    std::thread thread;
  };

  std::string console_base;
  NotifierOptions opt;
  mutable std::mutex mu;
  std::condition_variable idle;     // a lane went empty and not busy
  std::condition_variable stop_cv;  // ends waits between attempts
  bool stopping = false;
  std::vector<std::unique_ptr<Lane>> lanes;
  // Events already queued ("<id> <event>"): a request stays pending through votes and the
  // waiting flag, and each of those is a change; only the first is an event.
  std::unordered_set<std::string> seen;
  std::deque<std::string> seen_order;
  Stats stats;

  void log(Level level, const std::string& msg) const {
    if (opt.log) opt.log(level, msg);
  }

  void count(std::uint64_t Stats::*field) {
    std::lock_guard lock(mu);
    ++(stats.*field);
  }

  // Between attempts; false when the Notifier is stopping.
  bool wait(std::chrono::milliseconds d) {
    if (opt.wait) return opt.wait(d);
    std::unique_lock lock(mu);
    return !stop_cv.wait_for(lock, d, [&] { return stopping; });
  }

  void run(Lane& lane) {
    for (;;) {
      std::shared_ptr<const Event> ev;
      {
        std::unique_lock lock(mu);
        lane.busy = false;
        idle.notify_all();
        lane.cv.wait(lock, [&] { return stopping || !lane.queue.empty(); });
        if (stopping) return;
        ev = std::move(lane.queue.front());
        lane.queue.pop_front();
        lane.busy = true;
      }
      deliver(lane.target, *ev);
    }
  }

  void deliver(const WebhookTarget& t, const Event& ev) {
    const std::string delivery = delivery_id();
    const Request* r = ev.request ? &*ev.request : nullptr;
    const AccessRequest* a = ev.access ? &*ev.access : nullptr;
    const std::string body = t.format == WebhookTarget::Format::Slack
                                 ? slack_payload(ev.name, r, a, console_base)
                                 : json_payload(ev.name, delivery, ev.time_us, r, a, console_base);
    const std::string what =
        "webhook " + t.url + ": " + ev.name + " " + (r ? r->id : a->id) + " (delivery " + delivery + ")";
    identity::http::Options ho;
    ho.timeout = opt.timeout;
    ho.ca_file = opt.ca_file;
    ho.max_body = 64 * 1024;
    for (int attempt = 1;; ++attempt) {
      const std::int64_t ts = now_us() / 1'000'000;
      ho.headers = {{"User-Agent", "Gatehouse-Webhook"},
                    {"X-Gatehouse-Event", ev.name},
                    {"X-Gatehouse-Delivery", delivery},
                    {"X-Gatehouse-Timestamp", std::to_string(ts)}};
      if (!t.secret.empty()) ho.headers.emplace_back("X-Gatehouse-Signature", webhook_signature(t.secret, ts, body));
      auto res = identity::http::post_body(t.url, body, "application/json", ho);
      count(&Stats::attempts);
      std::string why;
      std::optional<std::chrono::seconds> retry_after;
      if (res && res->status >= 200 && res->status < 300) {
        count(&Stats::delivered);
        log(Level::Debug, what + " delivered (HTTP " + std::to_string(res->status) + ")");
        return;
      }
      if (res) {
        why = "HTTP " + std::to_string(res->status);
        if (res->status != 429 && res->status < 500) {
          count(&Stats::failed);
          log(Level::Warn, what + " refused with " + why + ", not retried" + snippet(res->body));
          return;
        }
        retry_after = parse_retry_after(res->retry_after, ts);
      } else {
        why = res.error().message;
      }
      if (attempt >= opt.max_attempts) {
        count(&Stats::failed);
        log(Level::Error, what + " not delivered after " + std::to_string(attempt) + " attempts: " + why);
        return;
      }
      auto delay = opt.first_backoff * (1LL << std::min(attempt - 1, 20));
      if (retry_after) delay = std::chrono::duration_cast<std::chrono::milliseconds>(*retry_after);
      delay = std::min<std::chrono::milliseconds>(delay, opt.max_delay);
      log(Level::Info, what + " attempt " + std::to_string(attempt) + " failed (" + why + "); retrying in " +
                           std::to_string(delay.count()) + " ms");
      if (!wait(delay)) {
        count(&Stats::dropped);
        return;
      }
    }
  }

  static std::string snippet(const std::string& body) {
    if (body.empty()) return {};
    std::string s(cut(body, 200));
    for (auto& c : s)
      if (c == '\n' || c == '\r') c = ' ';
    return ": " + s;
  }
};

Notifier::Notifier(std::vector<WebhookTarget> targets, std::string console_base, NotifierOptions opt)
    : impl_(std::make_unique<Impl>()) {
  impl_->console_base = std::move(console_base);
  if (opt.max_attempts < 1) opt.max_attempts = 1;
  if (opt.queue_limit < 1) opt.queue_limit = 1;
  impl_->opt = std::move(opt);
  for (auto& t : targets) {
    auto lane = std::make_unique<Impl::Lane>();
    lane->target = std::move(t);
    lane->busy = true;  // until its thread is waiting
    impl_->lanes.push_back(std::move(lane));
  }
  for (auto& lane : impl_->lanes) lane->thread = std::thread([impl = impl_.get(), l = lane.get()] { impl->run(*l); });
}

Notifier::~Notifier() {
  std::uint64_t abandoned = 0;
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
    for (auto& lane : impl_->lanes) {
      abandoned += lane->queue.size();
      lane->queue.clear();
      lane->cv.notify_all();
    }
    impl_->stats.dropped += abandoned;
    impl_->stop_cv.notify_all();
  }
  for (auto& lane : impl_->lanes)
    if (lane->thread.joinable()) lane->thread.join();
  if (abandoned)
    impl_->log(Level::Warn, "webhooks: " + std::to_string(abandoned) + " queued events not sent at shutdown");
}

void Notifier::notify(const Request* r, const AccessRequest* a) {
  auto name = webhook_event(r, a);
  if (!name || impl_->lanes.empty()) return;
  auto ev = std::make_shared<Event>();
  ev->name = std::move(*name);
  ev->time_us = event_time_us(r, a);
  std::string key = (r ? r->id : a->id) + " " + ev->name;
  if (r) ev->request = *r;
  if (a) ev->access = *a;
  std::vector<std::pair<std::string, std::uint64_t>> drops;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping || !impl_->seen.insert(key).second) return;
    impl_->seen_order.push_back(std::move(key));
    // Enough memory to recognise repeats of every event still queued, and then some.
    while (impl_->seen_order.size() > 2 * impl_->opt.queue_limit + 1000) {
      impl_->seen.erase(impl_->seen_order.front());
      impl_->seen_order.pop_front();
    }
    for (auto& lane : impl_->lanes) {
      if (lane->queue.size() >= impl_->opt.queue_limit) {
        lane->queue.pop_front();
        const auto n = ++impl_->stats.dropped;
        if (n == 1 || n % 1000 == 0) drops.emplace_back(lane->target.url, n);
      }
      lane->queue.push_back(ev);
      ++impl_->stats.queued;
      lane->cv.notify_one();
    }
  }
  for (const auto& [url, n] : drops)
    impl_->log(Level::Warn, "webhook " + url + ": queue full (" + std::to_string(impl_->opt.queue_limit) +
                                " events), the oldest event was dropped (" + std::to_string(n) + " dropped so far)");
}

Notifier::Stats Notifier::stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->stats;
}

bool Notifier::flush(std::chrono::milliseconds timeout) {
  std::unique_lock lock(impl_->mu);
  return impl_->idle.wait_for(lock, timeout, [&] {
    return std::all_of(impl_->lanes.begin(), impl_->lanes.end(),
                       [](const auto& l) { return l->queue.empty() && !l->busy; });
  });
}

}  // namespace gh::approvals
