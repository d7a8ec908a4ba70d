#!/bin/sh
# Installs the Debian 12 packages Gatehouse needs to build, test, demo and benchmark.
# Only what is missing is installed.
set -eu
PKGS="build-essential cmake pkg-config libasio-dev libssl-dev libyaml-cpp-dev libspdlog-dev libfmt-dev
libcli11-dev libexpected-dev libre2-dev libcpp-httplib-dev nlohmann-json3-dev libpg-query-dev libgtest-dev libgmock-dev libbenchmark-dev
postgresql postgresql-contrib postgresql-client pgbouncer python3 python3-psycopg python3-pytest python3-asyncpg python3-yaml openssl curl
clang-14 libclang-rt-14-dev libsqlite3-dev sqlite3 libzstd-dev zstd python3-zstandard libpq-dev openjdk-17-jdk-headless libpostgresql-jdbc-java
chromium firefox-esr"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "installing:$missing"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
  # Debian starts a cluster on install; Gatehouse's demo and tests use their own.
  $SUDO sh -c 'command -v pg_ctlcluster >/dev/null && pg_ctlcluster 15 main stop 2>/dev/null || true'
fi

# Node.js packages for the OpenID Connect provider of the tests and demo (tests/oidc), pinned by its
# package-lock.json. Debian 12's nodejs (18) is too old for oidc-provider 9: Node.js >= 20.19 is
# expected on the machine (e.g. NodeSource). Skipped when the lock file has not changed since the
# last install.
OIDC_DIR="$(cd "$(dirname "$0")/.." && pwd)/tests/oidc"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "warning: Node.js/npm not found; the OIDC tests (tests/oidc) need Node.js >= 20.19" >&2
elif ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
  echo "warning: Node.js $(node --version) is too old for the OIDC tests (tests/oidc need >= 20.19)" >&2
elif ! cmp -s "$OIDC_DIR/package-lock.json" "$OIDC_DIR/node_modules/.installed-lock.json" 2>/dev/null; then
  echo "installing tests/oidc node modules"
  npm ci --prefix "$OIDC_DIR" --no-audit --no-fund --loglevel=error >/dev/null
  cp "$OIDC_DIR/package-lock.json" "$OIDC_DIR/node_modules/.installed-lock.json"
fi

# npm packages of one directory, pinned by its package-lock.json; skipped when the lock file has not
# changed since the last install.
npm_ci() {
  dir="$(cd "$(dirname "$0")/.." && pwd)/$1"
  if command -v npm >/dev/null 2>&1 && ! cmp -s "$dir/package-lock.json" "$dir/node_modules/.installed-lock.json" 2>/dev/null; then
    echo "installing $1 node modules"
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >/dev/null
    cp "$dir/package-lock.json" "$dir/node_modules/.installed-lock.json"
  fi
}
# Node.js PostgreSQL client libraries the end-to-end tests run through the proxy (node-postgres, postgres.js).
npm_ci tests/clients
# playwright-core, which drives Debian's chromium through the web console
# (tests/e2e/test_console_browser.py), pinned to the release whose bundled Chromium matches Debian
# 12's; puppeteer-core, which drives Debian's firefox-esr over WebDriver BiDi (24.x: 25 needs
# Node.js >= 22.12). Neither downloads a browser.
npm_ci tests/console
# Vite and TypeScript for the web console (`npm run build` in web/ writes web/dist, which CMake
# embeds into the binary).
npm_ci web
