#!/bin/sh
# `make demo`: a throwaway PostgreSQL 15 with sample PII and Gatehouse in front of it.
# Prints the psql command to connect; Ctrl-C stops everything and removes the temp data.
#   scripts/demo.sh            interactive demo
#   scripts/demo.sh --check    start, run one query through the proxy, stop (for CI)
# Debian's python3 (not a venv's): it has psycopg from python3-psycopg.
cd "$(dirname "$0")/.." || exit 1
exec /usr/bin/python3 scripts/demo.py "$@"
