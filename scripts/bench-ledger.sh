#!/usr/bin/env bash
# Runs the ledger benchmark (crates/mandate-store/benches/ledger.rs) and writes the `## Ledger` section
# of BENCHMARKS.md (between its markers; the other sections are left as they are): durable appends
# with group commit against one fsync per event, and verification against a plain scan of the same
# rows, each pair measured in the same run, with PASS/FAIL lines for the targets of issue 6. Exits 1
# when a target is missed (after writing the file), like scripts/bench.sh. Takes about a minute on
# two cores, plus the build.
#
# Usage: scripts/bench-ledger.sh
# LEDGER_BENCH_SECONDS sets each append run's length (default 3). The database lives under
# target/tmp: its file system decides what an fsync costs, so keep target/ on the disk a server would
# use, not on tmpfs.
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_CMD=(cargo bench -p mandate-store --bench ledger)
# As scripts/bench.sh: a higher priority where allowed, so that other jobs weigh less on the run.
NICE="${BENCH_NICE:--10}"
PREFIX=()
if nice -n "$NICE" true 2>/dev/null && [ "$(nice -n "$NICE" nice)" = "$(($(nice) + NICE))" ]; then
  PREFIX=(nice -n "$NICE")
fi
mkdir -p target
OUT="target/bench-ledger.md"

# Build first, so that the measured run is only the benchmark.
cargo bench -p mandate-store --bench ledger --no-run
printf '==> %s\n' "${PREFIX[*]} ${BENCH_CMD[*]}"
"${PREFIX[@]}" "${BENCH_CMD[@]}" > "$OUT"

python3 - "$OUT" "${BENCH_CMD[*]}" "${PREFIX[*]}" <<'PY'
"""Wraps the section the benchmark printed with the details of the run and writes it into BENCHMARKS.md."""
import datetime
import os
import subprocess
import sys

out_path, command, prefix = sys.argv[1], sys.argv[2], sys.argv[3]

sys.path.insert(0, "scripts")  # this script runs from the repository root
from benchmarks_md import write_section  # noqa: E402


def sh(*args):
    try:
        return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


with open(out_path, encoding="utf-8") as f:
    body = f.read().strip()
if not body.startswith("## Ledger"):
    sys.exit(f"the benchmark printed no `## Ledger` section; see {out_path}")
cpu = "unknown"
with open("/proc/cpuinfo", encoding="utf-8") as f:
    for line in f:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
load_avg = " ".join(f"{x:.2f}" for x in os.getloadavg())
priority = f"`{prefix}`" if prefix else "normal (raising it was not allowed)"
text = f"""{body}

### Run

- Command: `scripts/bench-ledger.sh`, which ran `{command}` (prints this section).
- Date: {now}. Machine: `nproc` = {sh("nproc")}, CPU `{cpu}`; load average at the end: {load_avg}. Priority: {priority}.
- Toolchain: `{sh("rustc", "--version")}`; profile `bench` (release, `overflow-checks = true`).
- Source: `crates/mandate-store/benches/ledger.rs`; commit `{sh("git", "rev-parse", "--short", "HEAD")}`.
"""

write_section("ledger", text)
verdicts = [line for line in body.splitlines() if line.startswith("**PASS**") or line.startswith("**FAIL**")]
print("\n==> wrote the Ledger section of BENCHMARKS.md:\n" + "\n".join(verdicts))
sys.exit(1 if any(v.startswith("**FAIL**") for v in verdicts) else 0)
PY
