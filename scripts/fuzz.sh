#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default 15), starting from its committed corpus.
# New inputs go to a scratch directory, so the committed corpus changes only when you copy into it.
# Installs cargo-fuzz from crates.io when it is missing (idempotent). Exits non-zero on the first
# crash, leaving the input in fuzz/artifacts/<target>/.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_EACH="${1:-15}"
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(token_decode proof_verify canonical_arguments patterns ledger_verify jsonrpc_frames)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version '^0.13'
fi
# The address sanitizer needs a nightly compiler; this project builds on stable only.
FUZZ=(cargo fuzz run --sanitizer none --release)
cargo fuzz build --sanitizer none --release 2>&1 | tail -n 3
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in "${TARGETS[@]}"; do
  mkdir -p "$scratch/$target"
  printf '==> fuzz %s for %ss\n' "$target" "$SECONDS_EACH"
  "${FUZZ[@]}" "$target" "$scratch/$target" "corpus/$target" -- \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 2>&1 |
    grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::new_units_added|==[0-9]+==|thread .* panicked|SUMMARY|artifact_prefix)' || true
  # cargo fuzz exits non-zero on a crash; `set -o pipefail` carries it through grep's `|| true` only
  # for grep, so check the artifacts directly.
  if compgen -G "artifacts/$target/crash-*" >/dev/null; then
    echo "==> $target crashed; the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
echo "==> fuzz: ${#TARGETS[@]} targets ran ${SECONDS_EACH}s each without a crash"
