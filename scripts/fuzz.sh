#!/bin/sh
# Builds the libFuzzer targets with clang-14 into build-fuzz and runs the SQL analyzer target
# for N seconds (default 30) over tests/fuzz/corpus/sql, then the masking rewriter (DataRow and
# COPY) for half as long over tests/fuzz/corpus/masking_row. Exits non-zero when the fuzzer finds a
# crash, a leak, undefined behaviour or a timeout; the input is left in build-fuzz/artifacts/
# (add it to the corpus once fixed).
#   scripts/fuzz.sh [seconds]
set -eu
SECONDS_TO_RUN=${1:-30}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD="$ROOT/build-fuzz"
if ! command -v clang++-14 >/dev/null 2>&1; then
  echo "fuzz.sh: clang++-14 is needed (apt-get install clang-14 libclang-rt-14-dev)" >&2
  exit 2
fi
CC=clang-14 CXX=clang++-14 cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DGATEHOUSE_FUZZ=ON -DGATEHOUSE_TESTS=OFF -DGATEHOUSE_BENCH=OFF >/dev/null
cmake --build "$BUILD" -j2 --target sql_analyzer_fuzz masking_row_fuzz
mkdir -p "$BUILD/artifacts"
# New inputs go to a scratch directory: the corpus in the repo changes only by hand.
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
"$BUILD/sql_analyzer_fuzz" -max_total_time="$SECONDS_TO_RUN" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -dict="$ROOT/tests/fuzz/sql.dict" -artifact_prefix="$BUILD/artifacts/" -print_final_stats=1 \
  "$SCRATCH" "$ROOT/tests/fuzz/corpus/sql"
SCRATCH2=$(mktemp -d)
trap 'rm -rf "$SCRATCH" "$SCRATCH2"' EXIT
"$BUILD/masking_row_fuzz" -max_total_time="$(( (SECONDS_TO_RUN + 1) / 2 ))" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$BUILD/artifacts/" -print_final_stats=1 "$SCRATCH2" "$ROOT/tests/fuzz/corpus/masking_row"
