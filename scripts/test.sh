#!/usr/bin/env bash
# The project's one test command: installs what the tests need (idempotently), then runs the format
# check, clippy with -D warnings, and the whole test suite. `.ci/run` calls exactly this.
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

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked
