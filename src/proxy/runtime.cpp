#include "proxy/runtime.h"

#include <sys/stat.h>

#include <spdlog/spdlog.h>

#include "identity/static_users.h"
#include "identity/token_auth.h"
#include "net/stream.h"

namespace gh::proxy {

identity::KeyRegistry& key_registry() {
  static identity::KeyRegistry registry([](bool is_error, const std::string& m) {
    if (is_error)
      spdlog::warn("oidc: {}", m);
    else
      spdlog::info("oidc: {}", m);
  });
  return registry;
}

Result<std::shared_ptr<const Runtime>> build_runtime(std::shared_ptr<const config::Config> cfg) {
  auto rt = std::make_shared<Runtime>();
  std::vector<identity::StaticUser> users;
  for (const auto& u : cfg->users) users.push_back(identity::StaticUser{u.name, u.verifier, u.groups});
  auto static_users = std::make_unique<identity::StaticUserAuthenticator>(std::move(users));
  identity::TokenLoginOptions options;
  options.allow_loopback_plaintext = cfg->oidc.allow_loopback_plaintext;
  rt->issuer_keys = key_registry().use(cfg->oidc.issuers);
  auto login = std::make_unique<identity::LoginAuthenticator>(std::move(static_users), cfg->oidc.issuers,
                                                              rt->issuer_keys, options);
  rt->login = login.get();
  rt->authenticator = std::move(login);
  if (cfg->tls.mode != config::ClientTlsMode::Disable) {
    auto ctx = net::make_server_tls(cfg->tls.cert_file, cfg->tls.key_file, cfg->tls.tls13_only, cfg->tls.ciphers);
    if (!ctx) return tl::unexpected(ctx.error());
    rt->client_tls = *ctx;
    // PostgreSQL refuses a key file others can read; say so here (found by adversarial testing:
    // a world-readable key passed check, start and reload without a word).
    struct stat st {};
    if (::stat(cfg->tls.key_file.c_str(), &st) == 0 && (st.st_mode & 077) != 0)
      spdlog::warn("tls.key_file {} can be read by other users (mode {:o}): make it readable by the proxy's user "
                   "only (chmod 600)",
                   cfg->tls.key_file, st.st_mode & 0777);
  }
  for (std::size_t i = 0; i < cfg->targets.size(); ++i) {
    const auto& t = cfg->targets[i];
    if (t.backend.tls == config::BackendTlsMode::Disable) continue;
    auto ctx = net::make_client_tls(t.backend.tls == config::BackendTlsMode::VerifyFull ? t.backend.ca_file : "");
    if (!ctx)
      return tl::unexpected(Error{"", "targets[" + std::to_string(i) + "].backend.ca_file (target \"" + t.name +
                                          "\"): " + ctx.error().message});
    rt->backend_tls[t.name] = *ctx;
  }
  rt->config = std::move(cfg);
  return std::shared_ptr<const Runtime>(std::move(rt));
}

}  // namespace gh::proxy
