#!/usr/bin/env bash
# The README's second command: format check, clippy with warnings denied, and
# every test (unit and integration, against real git daemon, GnuPG, SQLite
# and HTTP on 127.0.0.1). Runs scripts/setup.sh first (a no-op when all is there).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --locked 2>&1 | tee "$log"
# One closing line over all test binaries.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f; if (p == 0) exit 1 }' "$log"
