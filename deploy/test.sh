#!/usr/bin/env bash
# Installs what the suite needs, builds every variant and runs every test:
#   1. Release build: unit tests and the end-to-end suites (the real binary between sipp
#      peers, a real Prometheus server), benchmarks built; the fail2ban filter on its
#      sample log
#   2. ASan+UBSan build of the unit tests
#   3. TSan build of the sharded runtime tests (cross-shard rings, shard group)
#   4. libFuzzer (clang, ASan+UBSan) on the SIP parser, the call engine and the config
#      parser, bounded time
# Ends with one line "summary: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
fuzz_seconds=${B2BUA_FUZZ_SECONDS:-60}

deploy/install-deps.sh

export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
passed=0
failed=0
run_ctest() {  # run_ctest BUILD_DIR LABEL
  local log
  log=$(mktemp)
  set +e
  ctest --test-dir "$1" --output-on-failure -j "$(nproc)" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  set -e
  local line total bad
  line=$(grep -E "tests passed, [0-9]+ tests failed out of [0-9]+" "$log" | tail -1 || true)
  if [ -n "$line" ]; then
    total=$(sed -E 's/.*out of ([0-9]+).*/\1/' <<<"$line")
    bad=$(sed -E 's/.*, ([0-9]+) tests failed.*/\1/' <<<"$line")
    passed=$((passed + total - bad))
    failed=$((failed + bad))
  elif [ "$rc" -ne 0 ]; then
    failed=$((failed + 1))
  fi
  rm -f "$log"
  echo "== $2: ctest exit $rc"
}

echo "== release build"
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release
run_ctest build/release release

echo "== fail2ban filter on its sample log"
if deploy/fail2ban/test-filter.sh; then
  passed=$((passed + 1))
else
  echo "== fail2ban filter: FAILED"
  failed=$((failed + 1))
fi

echo "== ASan+UBSan build"
cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DB2BUA_SANITIZE=address \
  -DB2BUA_BUILD_BENCH=OFF >/dev/null
cmake --build build/asan
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  run_ctest build/asan asan

run_gtest() {  # run_gtest BINARY LABEL: a GoogleTest binary run directly
  local log
  log=$(mktemp)
  set +e
  "$1" --gtest_brief=1 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  set -e
  local ok bad
  ok=$(sed -nE 's/^\[  PASSED  \] ([0-9]+) tests?.*/\1/p' "$log" | tail -1)
  bad=$(sed -nE 's/^ *([0-9]+) FAILED TESTS?.*/\1/p' "$log" | tail -1)
  passed=$((passed + ${ok:-0}))
  failed=$((failed + ${bad:-0}))
  if [ "$rc" -ne 0 ] && [ -z "$bad" ]; then failed=$((failed + 1)); fi
  rm -f "$log"
  echo "== $2: exit $rc"
}

echo "== TSan build of the sharded runtime"
cmake -S . -B build/tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DB2BUA_SANITIZE=thread \
  -DB2BUA_BUILD_BENCH=OFF >/dev/null
cmake --build build/tsan --target runtime_tests
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 run_gtest build/tsan/tests/runtime_tests tsan

echo "== libFuzzer: the SIP parser and the call engine (${fuzz_seconds}s each), the config"
CXX=clang++-14 cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DB2BUA_SANITIZE=address -DB2BUA_BUILD_FUZZ=ON -DB2BUA_BUILD_TESTS=OFF \
  -DB2BUA_BUILD_BENCH=OFF >/dev/null
cmake --build build/fuzz --target sip_parser_fuzz call_engine_fuzz config_fuzz
# run_fuzzer NAME SECONDS SEED_DIR...: a fresh corpus seeded from the tree; any crash fails.
run_fuzzer() {
  local name=$1 seconds=$2
  shift 2
  local corpus
  corpus=$(mktemp -d)
  set +e
  "build/fuzz/$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="build/fuzz/$name-" "$corpus" "$@" \
    > "build/fuzz/$name.log" 2>&1
  local rc=$?
  set -e
  rm -rf "$corpus"
  grep -E "^(stat::number_of_executed_units|Done )" "build/fuzz/$name.log" || true
  if [ "$rc" -eq 0 ]; then
    echo "== fuzz $name: no crash"
    passed=$((passed + 1))
  else
    tail -40 "build/fuzz/$name.log"
    echo "== fuzz $name: FAILED (exit $rc, artifacts in build/fuzz/)"
    failed=$((failed + 1))
  fi
}
run_fuzzer sip_parser_fuzz "$fuzz_seconds" "$root/tests/data/sip" \
  "$root/tests/data/rfc4475" "$root/tests/data/rfc5118"
run_fuzzer call_engine_fuzz "$fuzz_seconds" "$root/tests/data/fuzz/call_engine"
run_fuzzer config_fuzz $(( (fuzz_seconds + 1) / 2 )) "$root/tests/data/fuzz/config"

echo "summary: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
