#!/usr/bin/env bash
# Load harness: sipp callers and callees around sipp alone (the ceiling), the b2bua with 1
# and 2 shards, and Kamailio, under the basic, redirect and long workloads, on 127.0.0.1.
# Prints a markdown report and saves it as bench/sipp/results-<date>.md.
#
#   bench/sipp/run.sh                      # rates 500,1000,2000,4000 cps, 10 s each; long N=20000
#   bench/sipp/run.sh --full               # long workload with N=100000
#   bench/sipp/run.sh --rate 1000 --calls 20000 --targets b2bua-2,kamailio --workloads basic
#   bench/sipp/run.sh --smoke              # proves it runs: 200 cps for 2 s, long N=500
#   bench/sipp/run.sh --help               # every option
#
# Installs what it needs first (Debian packages sip-tester and kamailio; nothing when they
# are there) and builds build/release/b2bua/b2bua when it is missing. B2BUA_BINARY (or
# --binary) measures another binary. See bench/README.md, "Load harness (sipp)".
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

need=()
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
{ command -v kamailio && command -v kamcmd; } >/dev/null 2>&1 || need+=(kamailio)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if ((${#need[@]})); then
  echo "run.sh: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y --no-install-recommends "${need[@]}" >&2 ||
    { as_root apt-get update >&2 &&
      as_root apt-get install -y --no-install-recommends "${need[@]}" >&2; }
  # The package may start its own kamailio service on port 5060 (Debian's default config):
  # it would take CPU from the measurement. The harness runs its own instances.
  if [[ " ${need[*]} " == *" kamailio "* ]] && command -v systemctl >/dev/null 2>&1 &&
      systemctl is-active --quiet kamailio 2>/dev/null; then
    echo "run.sh: stopping and disabling the kamailio service the package started" >&2
    as_root systemctl disable --now kamailio >&2 || true
  fi
fi

binary="${B2BUA_BINARY:-$repo/build/release/b2bua/b2bua}"
wants_b2bua=1
for arg in "$@"; do
  case "$arg" in
    --help|-h) wants_b2bua=0 ;;
  esac
done
if ((wants_b2bua)) && [ ! -x "$binary" ] && [ -z "${B2BUA_BINARY:-}" ]; then
  echo "run.sh: building $binary" >&2
  if [ ! -f "$repo/build/release/build.ninja" ]; then
    cmake -S "$repo" -B "$repo/build/release" -G Ninja -DCMAKE_BUILD_TYPE=Release >&2
  fi
  # Other jobs on the machine build too: one build at a time.
  flock /tmp/b2bua-build.lock ninja -C "$repo/build/release" b2bua >&2
fi

exec python3 "$here/loadtest.py" --binary "$binary" "$@"
