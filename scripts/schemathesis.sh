#!/usr/bin/env bash
# Schemathesis (PyPI) against a real `mandate serve`, from its own /openapi.json: every operation with
# generated inputs, checking that no request gets a 5xx and that no operation that declares
# authentication answers without it. Installs schemathesis into a virtual environment of its own
# under target/ (idempotent). Takes about a minute.
#
# Usage: scripts/schemathesis.sh [MAX_EXAMPLES]   (default 25 per operation)
set -euo pipefail
cd "$(dirname "$0")/.."
MAX_EXAMPLES="${1:-25}"
VENV=target/schemathesis-venv
if [ ! -x "$VENV/bin/schemathesis" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'schemathesis>=4.3,<5'
fi
cargo build --quiet -p mandate-cli
DATA="$(mktemp -d)"
LOG="$DATA/serve.log"
ADMIN="schemathesis-admin-token-0123456789"
MANDATE_ADMIN_TOKEN="$ADMIN" "${CARGO_TARGET_DIR:-target}/debug/mandate" serve --demo --listen 127.0.0.1:0 --data-dir "$DATA/data" >"$DATA/banner" 2>"$LOG" &
PID=$!
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 1 100); do
  URL="$(grep -o 'http://127.0.0.1:[0-9]*' "$DATA/banner" | head -n 1 || true)"
  [ -n "$URL" ] && break
  sleep 0.1
done
[ -n "$URL" ] || { cat "$LOG"; echo "the server did not start" >&2; exit 1; }
printf '==> schemathesis against %s (%s examples per operation)\n' "$URL" "$MAX_EXAMPLES"
"$VENV/bin/schemathesis" run "$URL/openapi.json" \
  --checks not_a_server_error,ignored_auth \
  --max-examples "$MAX_EXAMPLES" \
  --header "Authorization: Bearer $ADMIN" \
  --suppress-health-check all \
  --no-color
