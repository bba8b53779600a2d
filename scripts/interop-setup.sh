#!/usr/bin/env bash
# Installs, idempotently, the MCP software written by others that the gateway's interoperability
# tests run against: the official Python SDK (`mcp` from PyPI) into target/interop/venv, and the
# official TypeScript SDK and the reference server `@modelcontextprotocol/server-everything` (npm)
# into target/interop/node. Versions are pinned in tests/interop/mcp/{requirements.txt,package.json}
# (and package-lock.json). Nothing is fetched when the installed versions already match.
set -euo pipefail
cd "$(dirname "$0")/.."
root=target/interop
mkdir -p "$root"

want_py=$(sha256sum tests/interop/mcp/requirements.txt | cut -d' ' -f1)
if [[ ! -x "$root/venv/bin/python" || "$(cat "$root/venv/.installed" 2>/dev/null)" != "$want_py" ]]; then
  python3 -m venv "$root/venv"
  "$root/venv/bin/pip" install --quiet --disable-pip-version-check -r tests/interop/mcp/requirements.txt
  echo "$want_py" > "$root/venv/.installed"
fi
"$root/venv/bin/python" -c 'import importlib.metadata as m; print("python mcp", m.version("mcp"))'

js_hash() { { cat tests/interop/mcp/package.json; cat tests/interop/mcp/package-lock.json 2>/dev/null || true; } | sha256sum | cut -d' ' -f1; }
want_js=$(js_hash)
if [[ ! -d "$root/node/node_modules" || "$(cat "$root/node/.installed" 2>/dev/null)" != "$want_js" ]]; then
  rm -rf "$root/node"
  mkdir -p "$root/node"
  cp tests/interop/mcp/package.json "$root/node/"
  if [[ -f tests/interop/mcp/package-lock.json ]]; then
    cp tests/interop/mcp/package-lock.json "$root/node/"
    (cd "$root/node" && npm ci --no-audit --no-fund --loglevel=error)
  else
    (cd "$root/node" && npm install --no-audit --no-fund --loglevel=error)
    cp "$root/node/package-lock.json" tests/interop/mcp/
  fi
  js_hash > "$root/node/.installed"
fi
node -e 'console.log("typescript sdk", require("./'"$root"'/node/node_modules/@modelcontextprotocol/sdk/package.json").version)'
# Node resolves packages next to the script, so the clients run from beside node_modules.
cp tests/interop/mcp/*.mjs "$root/node/"
