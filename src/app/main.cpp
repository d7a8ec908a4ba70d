// gatehouse: serve | check | explain | test-policy | hash-password | audit | login | token | whoami | psql |
// approvals | request-access | grants | version
#include <malloc.h>
#include <sys/resource.h>
#include <termios.h>
#include <unistd.h>

#include <sys/stat.h>

#include <csignal>
#include <tuple>
#include <cstdio>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>
#include <asio.hpp>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "admin/admin_server.h"
#include "app/admin_wiring.h"
#include "app/approvals_app.h"
#include "app/approvals_cli.h"
#include "app/audit_cli.h"
#include "app/login_cli.h"
#include "app/logging.h"
#include "app/discover.h"
#include "app/policy_tools.h"
#include "audit/trail.h"
#include "base/metrics.h"
#include "config/config.h"
#include "identity/scram.h"
#include "proxy/runtime.h"
#include "proxy/server.h"

namespace {

constexpr const char* kVersion = "0.1.0";

void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// An error found after loading `cfg` from `path`, as loading errors read: "FILE:LINE: key: ..."
// when it names a key read from the file, else "FILE: ...".
std::string config_error(const gh::config::Config& cfg, const std::string& path, const std::string& message) {
  auto located = gh::config::locate(cfg, message);
  return located == message ? path + ": " + message : located;
}

int cmd_check(const std::string& path) {
  spdlog::set_level(spdlog::level::warn);  // check reports the issuers' keys itself
  auto cfg = gh::config::load_file(path);
  if (!cfg) {
    std::cerr << "error: " << cfg.error().message << "\n";
    return 2;
  }
  auto shared = std::make_shared<const gh::config::Config>(std::move(*cfg));
  auto rt = gh::proxy::build_runtime(shared);
  if (!rt) {
    std::cerr << "error: " << config_error(*shared, path, rt.error().message) << "\n";
    return 2;
  }
  if (auto a = gh::audit::Trail::check((*rt)->config->audit); !a) {
    std::cerr << "error: " << path << ": " << a.error().message << "\n";
    return 2;
  }
  // Each OIDC issuer: can its keys be fetched now? (A warning, not an error: the IdP may be
  // reachable from the proxy's host only.)
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (const auto& keys : (*rt)->issuer_keys) {
    auto st = keys->status();
    while (st.fetches == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      st = keys->status();
    }
    if (st.fetches == 0)
      std::cerr << "warning: oidc issuer " << keys->config().issuer << ": no answer yet from its discovery/JWKS\n";
    else if (!st.last_error.empty())
      std::cerr << "warning: oidc issuer " << keys->config().issuer << ": " << st.last_error << "\n";
    else
      std::cout << "oidc issuer " << keys->config().issuer << ": " << st.keys << " signing key(s)\n";
  }
  std::cout << path << ": ok (" << (*rt)->config->targets.size() << " target(s), " << (*rt)->config->users.size()
            << " static user(s), " << (*rt)->config->oidc.issuers.size() << " OIDC issuer(s))\n";
  return 0;
}

std::string read_password() {
  std::string pw;
  if (isatty(STDIN_FILENO)) {
    termios old{};
    tcgetattr(STDIN_FILENO, &old);
    termios quiet = old;
    quiet.c_lflag &= ~tcflag_t(ECHO);
    tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
    std::cerr << "Password: " << std::flush;
    std::getline(std::cin, pw);
    tcsetattr(STDIN_FILENO, TCSANOW, &old);
    std::cerr << "\n";
  } else {
    std::getline(std::cin, pw);
  }
  return pw;
}

int cmd_hash_password(std::uint32_t iterations) {
  const std::string pw = read_password();
  if (pw.empty()) {
    std::cerr << "error: empty password\n";
    return 2;
  }
  std::cout << gh::identity::ScramVerifier::make(pw, iterations).to_string() << "\n";
  return 0;
}

// What identifies a file's content cheaply: modification time and size (0s when missing).
struct FileStamp {
  std::int64_t mtime_ns = 0;
  std::int64_t size = 0;
  bool operator==(const FileStamp&) const = default;
};

std::vector<FileStamp> stamp(const std::vector<std::string>& files) {
  std::vector<FileStamp> out;
  for (const auto& f : files) {
    struct stat st {};
    if (::stat(f.c_str(), &st) == 0)
      out.push_back({std::int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec, std::int64_t(st.st_size)});
    else
      out.push_back({});
  }
  return out;
}

int cmd_serve(const std::string& path) {
  // A SIGHUP before the handlers below are in place (opening the trail and the stores takes a
  // while) would end the process by default (found by adversarial testing: a reload right after
  // start killed it). Until then it is ignored: the configuration is read fresh anyway.
  std::signal(SIGHUP, SIG_IGN);
  auto loaded = gh::config::load_file(path);
  if (!loaded) {
    std::cerr << "error: " << loaded.error().message << "\n";
    return 2;
  }
  auto cfg = std::make_shared<const gh::config::Config>(std::move(*loaded));
  gh::app::setup_logging(cfg->log);
  auto rt = gh::proxy::build_runtime(cfg);
  if (!rt) {
    spdlog::critical("{}", config_error(*cfg, path, rt.error().message));
    return 2;
  }
  raise_fd_limit();
  const unsigned threads = cfg->threads ? cfg->threads : std::max(1u, std::thread::hardware_concurrency());
  gh::Metrics metrics(threads);
  // The audit trail opens before the proxy listens: with audit on, nothing runs unrecorded.
  std::unique_ptr<gh::audit::Trail> trail;
  if (cfg->audit.enabled) {
    auto t = gh::audit::Trail::open(cfg->audit);
    if (!t) {
      spdlog::critical("audit: {}", t.error().message);
      return 2;
    }
    trail = std::move(*t);
    if (cfg->audit.checkpoint_key_file.empty())
      spdlog::warn("audit: no audit.checkpoint.key_file: the chain is not signed, so someone who can rewrite the "
                   "whole store could recompute it undetected; make a key with `gatehouse audit keygen`");
    spdlog::info("audit: node \"{}\", default durability {}", trail->node(),
                 cfg->audit.durability == gh::config::AuditDurability::Required ? "required" : "buffered");
  } else {
    spdlog::warn("audit is off (audit.enabled: false): statements are not recorded");
  }
  gh::proxy::Server server(*rt, metrics);
  server.set_audit(trail.get());
  // Approval requests and access grants: the proxy holds statements on them and the admin API
  // decides them, so the store opens before either starts, like the audit trail.
  auto approvals = gh::app::open_approvals(*cfg, trail.get(), trail ? trail->node() : cfg->audit.node);
  if (!approvals) {
    spdlog::critical("{}", approvals.error().message);
    return 2;
  }
  server.set_approvals(approvals->get());

  // Signals are handled on their own small loop; the workers never see them.
  asio::io_context signals_io;
  asio::signal_set signals(signals_io, SIGTERM, SIGINT, SIGHUP);
  std::signal(SIGPIPE, SIG_IGN);

  if (auto r = server.start(); !r) {
    spdlog::critical("{}", r.error().message);
    return 1;
  }
  gh::admin::AdminServer admin(
      gh::app::admin_hooks(server, metrics, trail.get(), approvals->get(), gh::app::audit_store_path(*cfg)));
  if (cfg->admin.port != 0) {
    if (auto r = admin.start(cfg->admin.address, cfg->admin.port); !r) {
      spdlog::critical("{}", r.error().message);
      server.shutdown();
      server.wait();
      return 1;
    }
  }

  // Reload: on SIGHUP, and when a file the configuration was read from changes (checked every
  // 2 s). A file that fails to load or validate leaves the running configuration in place.
  std::vector<std::string> watched = cfg->files;
  std::vector<FileStamp> stamps = stamp(watched);
  auto reload = [&](const char* why) {
    auto audit_reload = [&](const std::string& error) {
      if (!trail) return;
      gh::audit::Event e;
      e.type = gh::audit::EventType::Reload;
      e.time = std::chrono::system_clock::now();
      e.outcome = error.empty() ? "ok" : "error";
      e.message = error;
      e.fields = {{"trigger", why}, {"file", path}};
      trail->submit(std::move(e));
    };
    // What is read now counts as seen, also when it fails: the watcher reports a change once,
    // not again after a SIGHUP already did (found by adversarial testing: reported twice).
    stamps = stamp(watched);
    auto next = gh::config::load_file(path);
    if (!next) {
      spdlog::error("reload failed ({}), keeping the running configuration: {}", why, next.error().message);
      audit_reload(next.error().message);
      return;
    }
    auto next_cfg = std::make_shared<const gh::config::Config>(std::move(*next));
    auto nrt = gh::proxy::build_runtime(next_cfg);
    if (!nrt) {
      const auto located = gh::config::locate(*next_cfg, nrt.error().message);
      spdlog::error("reload failed ({}), keeping the running configuration: {}", why, located);
      audit_reload(located);
      return;
    }
    audit_reload("");
    {
      // Sockets, threads, the audit trail, the approvals service and the log sink are made once,
      // at start: a change to them is said, not silently ignored (found by adversarial testing:
      // a changed port, sink path, checkpoint key or webhook list had no effect and no warning).
      const auto& n = *(*nrt)->config;
      std::vector<std::string> fixed;
      if (n.listen.address != cfg->listen.address || n.listen.port != cfg->listen.port) fixed.push_back("listen");
      if (n.threads != cfg->threads) fixed.push_back("threads");
      if (n.admin.address != cfg->admin.address || n.admin.port != cfg->admin.port) fixed.push_back("admin.address/port");
      const auto& a = n.audit;
      const auto& o = cfg->audit;
      auto sinks = [](const gh::config::Audit& x) {
        std::vector<std::tuple<int, std::string, bool, std::string, std::string, std::uint64_t, std::uint32_t>> v;
        for (const auto& k : x.sinks) v.emplace_back(int(k.type), k.path, k.fsync, k.dsn, k.table, k.max_size, k.keep);
        return v;
      };
      if (a.enabled != o.enabled) fixed.push_back("audit.enabled");
      if (sinks(a) != sinks(o)) fixed.push_back("audit.sinks");
      if (a.node != o.node) fixed.push_back("audit.node");
      if (a.spool_dir != o.spool_dir || a.spool_max_size != o.spool_max_size) fixed.push_back("audit.spool");
      if (a.queue_size != o.queue_size || a.flush_interval != o.flush_interval || a.max_text != o.max_text ||
          a.parameters != o.parameters)
        fixed.push_back("audit.queue_size/flush_interval/max_text/parameters");
      if (a.checkpoint_interval != o.checkpoint_interval || a.checkpoint_key_file != o.checkpoint_key_file ||
          a.checkpoint_algorithm != o.checkpoint_algorithm)
        fixed.push_back("audit.checkpoint");
      if (a.retention_max_age != o.retention_max_age || a.retention_max_records != o.retention_max_records)
        fixed.push_back("audit.retention");
      const auto& p = n.approvals;
      const auto& q = cfg->approvals;
      auto hooks = [](const gh::config::Approvals& x) {
        std::vector<std::tuple<std::string, std::string, int>> v;
        for (const auto& h : x.webhooks) v.emplace_back(h.url, h.secret, int(h.format));
        return v;
      };
      if (p.store != q.store || p.store_dsn != q.store_dsn) fixed.push_back("approvals.store");
      if (hooks(p) != hooks(q)) fixed.push_back("approvals.webhooks");
      if (p.rerun_window != q.rerun_window || p.pending_ttl != q.pending_ttl ||
          p.break_glass_groups != q.break_glass_groups || p.max_grant != q.max_grant)
        fixed.push_back("approvals.rerun_window/pending_ttl/break_glass_groups/max_grant");
      if (n.log.format != cfg->log.format) fixed.push_back("log.format");
      if (!fixed.empty())
        spdlog::warn("reload: {} changed in {}, which takes effect only at restart; still running as started "
                     "(the rest of the new configuration applies now)",
                     fmt::join(fixed, ", "), path);
    }
    watched = (*nrt)->config->files;
    stamps = stamp(watched);
    server.reload(*nrt);
    gh::app::set_level((*nrt)->config->log.level);
    spdlog::info("configuration reloaded from {} ({})", path, why);
  };

  asio::steady_timer watch_timer(signals_io);
  std::function<void()> watch;
  watch = [&] {
    watch_timer.expires_after(std::chrono::seconds(2));
    watch_timer.async_wait([&](const std::error_code& ec) {
      if (ec) return;
      if (auto now = stamp(watched); now != stamps) {
        stamps = now;  // a broken file is reported once, not every 2 s
        reload("file changed");
      }
      watch();
    });
  };
  watch();

  std::function<void()> wait_signal;
  wait_signal = [&] {
    signals.async_wait([&](const std::error_code& ec, int sig) {
      if (ec) return;
      if (sig == SIGHUP) {
        reload("SIGHUP");
        wait_signal();
        return;
      }
      spdlog::info("received {}", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      server.shutdown();
      watch_timer.cancel();
      wait_signal();
    });
  };
  wait_signal();
  std::thread signal_thread([&] { signals_io.run(); });
  server.wait();
  signals_io.stop();
  signal_thread.join();
  admin.stop();
  if (trail) trail->close();  // the Stop record and a final signed checkpoint
  spdlog::info("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // A fixed mmap threshold: glibc raises it after each large block is freed (up to 32 MiB), and
  // from then on blocks of that size come from the thread arenas, which keep them after they are
  // freed: a few multi-megabyte statements or parameters left the proxy at its peak size for
  // good (RSS 22 -> 112 MiB after five 30 MB Bind parameters, never given back). Setting it
  // turns the adjustment off, so blocks over 256 KiB are mapped and unmapped (ADR 0003).
  ::mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  CLI::App app{"Gatehouse: an identity-aware access proxy for PostgreSQL"};
  app.require_subcommand(1);
  std::string config_path;

  auto* serve = app.add_subcommand("serve", "Run the proxy");
  serve->add_option("-c,--config", config_path, "YAML configuration file")->required();
  auto* check = app.add_subcommand("check", "Validate a configuration file and exit");
  check->add_option("-c,--config", config_path, "YAML configuration file")->required();
  std::uint32_t iterations = 4096;
  auto* hash = app.add_subcommand("hash-password",
                                  "Read a password from stdin and print a SCRAM-SHA-256 verifier for `users[].password`");
  hash->add_option("--iterations", iterations, "PBKDF2 iterations")->check(CLI::Range(4096u, 10000000u));
  auto* version = app.add_subcommand("version", "Print the version");

  gh::app::IdentityArgs who;
  std::string target, database, address, sql_text;
  bool json = false;
  auto* explain = app.add_subcommand("explain", "Show the policy decision for one statement, and why");
  explain->add_option("-c,--config", config_path, "YAML configuration file")->required();
  explain->add_option("--identity", who.subject, "who runs it: a static user's name or any subject")->required();
  explain->add_option("--email", who.email, "the identity's email");
  explain->add_option("--groups", who.groups, "groups (comma-separated); default: the static user's groups")
      ->delimiter(',');
  explain->add_option("--kind", who.kind, "human or agent")->check(CLI::IsMember({"human", "agent"}));
  explain->add_option("--target", target, "target name from the configuration")->required();
  explain->add_option("--database", database, "database name the client asks for (for a \"*\" target)");
  explain->add_option("--address", address, "client IP address");
  explain->add_flag("--json", json, "print the decision and the analysis as JSON");
  explain->add_option("sql", sql_text, "the SQL text")->required();

  std::vector<std::string> case_files;
  auto* test_policy = app.add_subcommand(
      "test-policy", "Run policy test files (cases only) against the configuration's policy; exit 1 if any fails");
  test_policy->add_option("-c,--config", config_path, "YAML configuration file")->required();
  test_policy->add_option("files", case_files, "policy test files (YAML with `cases:`)")->required();

  gh::app::DiscoverArgs disc;
  auto* discover = app.add_subcommand(
      "discover", "Sample a target's tables with the content detectors and suggest a classification");
  discover->add_option("-c,--config", disc.config_path, "YAML configuration file")->required();
  discover->add_option("--target", disc.target, "target name from the configuration")->required();
  discover->add_option("--database", disc.database, "database (for a target that passes the client's name through)");
  discover->add_option("--login", disc.login, "the target login (user) to read as; default: the first");
  discover->add_option("--sample", disc.sample, "rows read per table (default 1000)")->check(CLI::Range(1, 1000000));
  discover->add_option("--threshold", disc.threshold, "share of sampled values that must be detected (default 0.5)")
      ->check(CLI::Range(0.01, 1.0));
  discover->add_option("--format", disc.format, "table, yaml or json")->check(CLI::IsMember({"table", "yaml", "json"}));

  gh::app::add_audit_commands(app);
  gh::app::add_login_commands(app);
  gh::app::add_approvals_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; a usage error (a missing --config, an unknown option) is 2,
    // as every other configuration error.
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  if (auto rc = gh::app::run_audit_command()) return *rc;
  if (auto rc = gh::app::run_login_command()) return *rc;
  if (auto rc = gh::app::run_approvals_command()) return *rc;
  if (*serve) return cmd_serve(config_path);
  if (*check) return cmd_check(config_path);
  if (*hash) return cmd_hash_password(iterations);
  if (*explain) return gh::app::cmd_explain(config_path, who, target, database, address, sql_text, json);
  if (*test_policy) return gh::app::cmd_test_policy(config_path, case_files);
  if (*discover) return gh::app::cmd_discover(disc);
  if (*version) {
    std::cout << "gatehouse " << kVersion << "\n";
    return 0;
  }
  return 1;
}
