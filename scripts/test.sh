#!/usr/bin/env bash
# The project's one test command: installs what the tests need (idempotently), then runs the format
# check, clippy with -D warnings, the whole test suite (the disk-full test mounts a small tmpfs, so
# it runs as root, as CI does) with the store suite on SQLite and on a PostgreSQL server of its own,
# the server's integration suite once more on PostgreSQL, every fuzz target briefly, and
# schemathesis over the OpenAPI document. `.ci/run` calls exactly this. About 15 minutes on two cores from a cold cache, most of it
# building (see BENCHMARKS.md, "Test suite").
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
cargo --version
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done

step "test dependencies from PyPI (idempotent)"
# PyJWT verifies our mandates in the interoperability test: a real JWT library, in another language;
# rfc8785 (Trail of Bits' JCS) reproduces the digest an approval is bound to.
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore 'PyJWT[crypto]>=2.9,<3' 'rfc8785>=0.1.4,<0.2'
python3 -c 'import jwt, cryptography; print("PyJWT", jwt.__version__, "cryptography", cryptography.__version__)'

step "MCP SDKs and reference servers for the gateway's interoperability tests (idempotent)"
# The official Python SDK (PyPI) and TypeScript SDK and server-everything (npm), pinned, under target/interop.
./scripts/interop-setup.sh

step "Chromium for the console's browser tests (Debian's chromium, idempotent; playwright-core drives it)"
# playwright-core comes from npm with the MCP SDKs below (tests/interop/mcp/package.json); it downloads
# no browser of its own: the tests point it at /usr/bin/chromium.
if ! command -v chromium >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
fi
chromium --headless --no-sandbox --disable-gpu --version 2>/dev/null || dpkg-query -W chromium

step "openssl for the authorization flow's tests (Debian's openssl, idempotent)"
# The OAuth tests serve a client's metadata document over real HTTPS with `openssl s_server`, from a
# certificate they make with `openssl req`.
if ! command -v openssl >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssl
fi
openssl version

step "PostgreSQL for the tests (scripts/postgres.sh; Debian's postgresql, idempotent)"
# A cluster of the suite's own (/tmp/mandate-pg, 127.0.0.1:55432), never the system one, removed
# when this script exits, however it exits (with every database the tests created in it). Each test creates a database of its own there;
# MANDATE_REQUIRE_POSTGRES=1 makes a missing server a failure rather than a skipped test.
trap './scripts/postgres.sh destroy || true' EXIT
./scripts/postgres.sh start
MANDATE_TEST_POSTGRES_URL="$(./scripts/postgres.sh url)"
export MANDATE_TEST_POSTGRES_URL MANDATE_REQUIRE_POSTGRES=1

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
mkdir -p target
cargo test --workspace --locked 2>&1 | tee target/test-output.log

step "the server's integration suite on PostgreSQL (each test server on a database of its own)"
MANDATE_TEST_BACKEND=postgres cargo test -p mandate-server --locked --tests 2>&1 | tee -a target/test-output.log

step "fuzz targets, briefly (scripts/fuzz.sh; cargo-fuzz from crates.io)"
./scripts/fuzz.sh "${FUZZ_SECONDS:-10}"

step "schemathesis over /openapi.json (scripts/schemathesis.sh; schemathesis from PyPI)"
./scripts/schemathesis.sh "${SCHEMATHESIS_EXAMPLES:-20}"

# One closing line for whoever reads the end of this output: the cargo tests passed and failed.
passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' target/test-output.log | awk '{s += $4} END {print s + 0}')
failed=$(grep -Eo '[0-9]+ failed' target/test-output.log | awk '{s += $1} END {print s + 0}')
echo "tests: ${passed} passed, ${failed} failed"
