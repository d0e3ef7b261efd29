#!/usr/bin/env bash
# Installs the dependencies, builds the release binaries and starts the product on its
# embedded default configuration. Extra arguments go to the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release --target sip-parse
# The call-handling runtime is not built yet: until it is, this runs the message checker
# on the sample messages shipped in tests/data/sip.
if [ $# -eq 0 ]; then set -- tests/data/sip/*.sip; fi
exec build/release/proto/sip-parse "$@"
