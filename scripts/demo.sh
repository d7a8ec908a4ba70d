#!/bin/sh
# `make demo`: a throwaway PostgreSQL 15 with sample PII, a real OpenID Connect provider, and
# Gatehouse in front of the database. Prints how people (device flow) and an agent (client
# credentials) connect with their tokens; Ctrl-C stops everything and removes the temp data.
#   scripts/demo.sh              interactive demo
#   scripts/demo.sh --check      start, run the printed scenarios through the proxy, stop (for CI)
#   scripts/demo.sh --no-oidc    without the OpenID Connect provider (no Node.js needed)
# Debian's python3 (not a venv's): it has psycopg from python3-psycopg.
cd "$(dirname "$0")/.." || exit 1
exec /usr/bin/python3 scripts/demo.py "$@"
