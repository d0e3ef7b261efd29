#!/usr/bin/env bash
# Installs the dependencies, builds the release binary and starts the B2BUA on its embedded
# default configuration: SIP on 127.0.0.1:5060 (UDP), metrics on http://127.0.0.1:9464/metrics.
# Extra arguments go to the binary (see `b2bua --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release --target b2bua
exec build/release/b2bua/b2bua "$@"
