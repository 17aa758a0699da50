#!/usr/bin/env bash
# Fuzzes every parser of outside input (tests/fuzz_parsers.rs): config
# files, webhook headers and payloads (and habd's webhook endpoint over
# HTTP), tag objects and OpenPGP keys and signatures, registry manifests and
# indexes, node RPC answers. HAB_FUZZ_CASES inputs per parser (100000 unless
# set; the HTTP test runs a twentieth), in a release build, each parser in a
# process of its own so its peak memory is its own. Prints one table:
# inputs run, panics (must be 0), peak RSS. HAB_FUZZ_SEED replays a run.
# Needs GnuPG (bash scripts/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v gpg >/dev/null || { echo "fuzz: gpg is missing: run bash scripts/setup.sh" >&2; exit 1; }
export HAB_FUZZ_CASES=${HAB_FUZZ_CASES:-100000}
# rpgp's errors capture a backtrace when RUST_BACKTRACE is set: resolving
# one per malformed signature would be most of the time and memory.
export RUST_LIB_BACKTRACE=0
cargo test --release --locked --test fuzz_parsers --no-run
out=$(mktemp)
trap 'rm -f "$out"' EXIT
rows="" notes="" failed=0
tests=$(cargo test -q --release --locked --test fuzz_parsers -- --list 2>/dev/null | sed -n 's/: test$//p')
for t in $tests; do
    start=$(date +%s)
    echo "fuzz: $t ($HAB_FUZZ_CASES inputs)" >&2
    cargo test -q --release --locked --test fuzz_parsers -- --exact "$t" --nocapture >"$out" 2>&1 || failed=1
    secs=$(($(date +%s) - start))
    # fuzz <parser>: <inputs> inputs, <panics> panics, peak RSS <N> MiB
    rows+=$(sed -n "s/^fuzz \([^:]*\): \([0-9]*\) inputs, \([0-9]*\) panics, peak RSS \([0-9]*\) MiB\$/| \1 | \2 | \3 | \4 MiB | $secs s |/p" "$out")$'\n'
    notes+="$t:$(sed -n 's/^  reached://p' "$out")"$'\n'
    if [ "$failed" != 0 ]; then cat "$out"; break; fi
done
echo
echo "| parser | inputs | panics | peak RSS | time |"
echo "|---|---:|---:|---:|---:|"
printf '%s' "$rows"
echo
printf '%s' "$notes"
exit "$failed"
