#!/bin/sh
# Installs the Debian 12 packages Gatehouse needs to build, test, demo and benchmark.
# Only what is missing is installed.
set -eu
PKGS="build-essential cmake pkg-config libasio-dev libssl-dev libyaml-cpp-dev libspdlog-dev libfmt-dev
libcli11-dev libexpected-dev libcpp-httplib-dev nlohmann-json3-dev libpg-query-dev libgtest-dev libgmock-dev libbenchmark-dev
postgresql postgresql-contrib postgresql-client pgbouncer python3 python3-psycopg python3-pytest openssl curl
clang-14 libclang-rt-14-dev libsqlite3-dev sqlite3 libpq-dev"
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
