#!/usr/bin/env bash
# The README's second command: format check, clippy with warnings denied, and
# every test (unit and integration, against real git daemon, GnuPG, SQLite
# and HTTP on 127.0.0.1). Runs scripts/setup.sh first (a no-op when all is there).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
