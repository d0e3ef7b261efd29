#!/usr/bin/env bash
# Tests the fail2ban filter b2bua.conf on sample.log with fail2ban-regex: exactly the
# expected lines match, every other line is missed, and the sources fail2ban would ban
# are exactly the expected ones (IPv6 without its brackets). Exit 0 when all holds, 1 on a
# mismatch, 2 when fail2ban-regex is missing (Debian package fail2ban; see
# deploy/install-deps.sh).
#
# The filter includes fail2ban's own common.conf, which fail2ban-regex looks for next to
# the filter: both are copied into a throw-away config directory, as they would sit in
# /etc/fail2ban/filter.d. F2B_COMMON overrides where common.conf is read from.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
common=${F2B_COMMON:-/etc/fail2ban/filter.d/common.conf}

expected_lines=16
expected_matched=7
expected_missed=9
expected_ips="203.0.113.7 2001:db8::7 203.0.113.8 203.0.113.10 2001:db8:0:1::2a 203.0.113.11 2001:db8::1:0:0:1"

if ! command -v fail2ban-regex >/dev/null; then
  echo "test-filter: fail2ban-regex not found (apt-get install fail2ban)" >&2
  exit 2
fi
if [ ! -r "$common" ]; then
  echo "test-filter: $common not found (set F2B_COMMON)" >&2
  exit 2
fi

config=$(mktemp -d)
trap 'rm -rf "$config"' EXIT
mkdir "$config/filter.d"
cp "$common" "$here/b2bua.conf" "$config/filter.d/"

report=$(fail2ban-regex --config="$config" --print-all-missed "$here/sample.log" b2bua)
summary=$(grep -E '^Lines: ' <<<"$report" || true)
ips=$(fail2ban-regex --config="$config" --out=ip "$here/sample.log" b2bua | tr '\n' ' ')
ips=${ips% }

want="Lines: $expected_lines lines, 0 ignored, $expected_matched matched, $expected_missed missed"
status=0
if [ "$summary" != "$want" ]; then
  echo "test-filter: FAIL: fail2ban-regex says '$summary', expected '$want'" >&2
  echo "$report" >&2
  status=1
fi
if [ "$ips" != "$expected_ips" ]; then
  echo "test-filter: FAIL: sources '$ips', expected '$expected_ips'" >&2
  status=1
fi
if [ "$status" -eq 0 ]; then
  echo "test-filter: ok: $summary; sources $ips"
fi
exit "$status"
