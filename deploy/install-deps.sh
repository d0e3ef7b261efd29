#!/usr/bin/env bash
# Installs every Debian 12 package the B2BUA needs to build, test and benchmark.
# Idempotent: packages already present are not fetched again.
set -euo pipefail

packages=(
  # build tools
  cmake ninja-build ccache g++ pkg-config
  # libraries of the design card
  libboost1.81-all-dev prometheus-cpp-dev libabsl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # fuzzing (libFuzzer, ASan/UBSan/TSan runtimes)
  clang-14 libclang-rt-14-dev
  # reference SIP parsers measured beside ours in bench/
  libosip2-dev libsofia-sip-ua-dev
  # picohttpparser, which Debian ships only inside this Perl module: bench/ measures what
  # splitting the same header blocks costs a fast HTTP/1 parser
  libhttp-parser-xs-perl
  # real SIP peers for the integration tests
  sip-tester python3
  # config files with line-numbered errors (see README)
  libyaml-cpp-dev
  # SIP over TLS (RFC 3261 26): Asio's ssl::stream over OpenSSL 3
  libssl-dev
  # asynchronous RFC 3263 resolution; a real DNS server for its tests
  libc-ares-dev dnsmasq-base
  # the Prometheus server scraping the exporter in the integration tests
  prometheus
  # fail2ban-regex tests the filter shipped in deploy/fail2ban (test-filter.sh)
  fail2ban
  # SIP scanners (svmap, svwar) the edge must stay silent to (tests/integration/test_edge.py)
  sipvicious
  # the cluster: dialogs kept in Redis (hiredis, async, on each shard's io_context) so that
  # another instance can take a call over; Kamailio's dispatcher as the front (deploy/cluster,
  # tests/integration/test_cluster.py) and as the load reference in bench/sipp
  libhiredis-dev redis-server kamailio
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The tests start their own redis-server on a free loopback port; a system one the package
# may have started is not needed.
if [[ " ${missing[*]} " == *" redis-server "* ]] && command -v systemctl >/dev/null 2>&1 &&
    systemctl is-active --quiet redis-server 2>/dev/null; then
  $SUDO systemctl disable --now redis-server || true
fi
# Only fail2ban-regex is wanted here: a fail2ban service the package may have started
# would watch this machine's own logins (its sshd jail is on by default).
if [[ " ${missing[*]} " == *" fail2ban "* ]] && command -v systemctl >/dev/null 2>&1 &&
    systemctl is-active --quiet fail2ban 2>/dev/null; then
  $SUDO systemctl disable --now fail2ban || true
fi
