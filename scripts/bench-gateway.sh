#!/usr/bin/env bash
# The MCP gateway benchmark, and the `## Gateway` section of BENCHMARKS.md.
#
# One run, one client (crates/mandate-load, `gateway` mode), one fast upstream (`mandate-load
# upstream`: a Streamable HTTP MCP server whose tool answers at once), four phases per level of
# 1, 16 and 64 concurrent sessions:
#   engine   Mandate's Engine::decide in process, alone (the baseline the targets name);
#   direct   the upstream, called directly;
#   mandate  through `mandate serve`'s gateway (MCP 2026-07-28, a DPoP proof per call);
#   relay    the upstream through a TCP relay (`mandate-load relay`): the floor, what one more
#            hop costs with no HTTP parsing and no decision;
#   proxy    the upstream through an HTTP proxy built from the gateway's parts (`mandate-load
#            proxy`: axum in, hyper's client out): the HTTP floor, no authentication, no decision;
#   peer     through IBM ContextForge (`mcp-contextforge-gateway` from PyPI, on SQLite), which this
#            script installs into target/bench-gateway/cf-venv and starts.
# Added latency = the gateway's percentile minus the direct call's. Targets: Mandate's added p50 at
# most 1.5x the engine's p50, its added p99 at most 3x the engine's p99... (see the section), and an
# added p50 at least 20x lower than ContextForge's. Exits 1 when a target is missed (after writing).
#
# Usage: [GATEWAY_SESSIONS=1,16,64] [GATEWAY_SECONDS=6] [GATEWAY_ROUNDS=3] scripts/bench-gateway.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=target/bench-gateway
mkdir -p "$root"
SESSIONS="${GATEWAY_SESSIONS:-1,16,64}"
SECONDS_PER_PHASE="${GATEWAY_SECONDS:-6}"
ROUNDS="${GATEWAY_ROUNDS:-3}"

printf '==> cargo build --release -p mandate-cli -p mandate-load\n'
cargo build --release -p mandate-cli -p mandate-load

# ContextForge, pinned, from PyPI (it needs Python < 3.14; this machine's is 3.11).
if [[ ! -x "$root/cf-venv/bin/mcpgateway" ]]; then
  python3 -m venv "$root/cf-venv"
  "$root/cf-venv/bin/pip" install --quiet --disable-pip-version-check 'mcp-contextforge-gateway==1.0.7'
fi
cf_version=$("$root/cf-venv/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp-contextforge-gateway"))')

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# Starts `mandate-load <args...>` in the background and waits for the endpoint it prints first,
# which it leaves in $root/<name>.url.
start_helper() {
  local name=$1; shift
  target/release/mandate-load "$@" > "$root/$name.url" &
  pids+=($!)
  for _ in $(seq 50); do [[ -s "$root/$name.url" ]] && break; sleep 0.1; done
  [[ -s "$root/$name.url" ]] || { echo "mandate-load $* printed no endpoint" >&2; exit 1; }
  echo "$name: $(head -1 "$root/$name.url")"
}

# The fast upstream; the floor, the same upstream through a relay that only copies bytes; the HTTP
# floor, the same upstream through a proxy of the gateway's parts, without its work.
start_helper upstream upstream
upstream=$(head -1 "$root/upstream.url")
start_helper relay relay "$upstream"
relay=$(head -1 "$root/relay.url")
start_helper proxy proxy "$upstream"
proxy=$(head -1 "$root/proxy.url")

# ContextForge on a fresh SQLite database, its UI off, rate limiting off (its default of 100
# requests a minute would be what is measured), loopback upstreams allowed.
cf_dir=$(mktemp -d "$PWD/$root/cf-XXXXXX")
cf_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export JWT_SECRET_KEY="bench-jwt-secret-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export AUTH_ENCRYPTION_SECRET="bench-enc-secret-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export PLATFORM_ADMIN_EMAIL=admin@example.org PLATFORM_ADMIN_PASSWORD='Bench-admin-password-1!'
export DATABASE_URL="sqlite:///$cf_dir/mcp.db" SSRF_ALLOW_LOCALHOST=true RATE_LIMITING_ENABLED=false
export MCPGATEWAY_UI_ENABLED=false MCPGATEWAY_ADMIN_API_ENABLED=true LOG_LEVEL=ERROR
(cd "$cf_dir" && exec "$PWD/../cf-venv/bin/mcpgateway" --host 127.0.0.1 --port "$cf_port" > "$cf_dir/cf.log" 2>&1) &
pids+=($!)
cf="http://127.0.0.1:$cf_port"
for _ in $(seq 600); do curl -fsS "$cf/health" > /dev/null 2>&1 && break; sleep 0.2; done
cf_token=$("$root/cf-venv/bin/python" -m mcpgateway.utils.create_jwt_token --username "$PLATFORM_ADMIN_EMAIL" --exp 120 --secret "$JWT_SECRET_KEY" 2>/dev/null | tail -1)
curl -fsS -X POST "$cf/gateways" -H "Authorization: Bearer $cf_token" -H 'Content-Type: application/json' \
  -d "{\"name\": \"fast\", \"url\": \"$upstream\", \"transport\": \"STREAMABLEHTTP\"}" > "$cf_dir/gateway.json"
tool_id=$(curl -fsS "$cf/tools" -H "Authorization: Bearer $cf_token" | python3 -c 'import json,sys; t=[x for x in json.load(sys.stdin) if x.get("originalName", x.get("name","")).endswith("echo")]; print(t[0]["id"])')
peer_tool=$(curl -fsS "$cf/tools" -H "Authorization: Bearer $cf_token" | python3 -c 'import json,sys; t=[x for x in json.load(sys.stdin) if x.get("originalName", x.get("name","")).endswith("echo")]; print(t[0]["name"])')
server_id=$(curl -fsS -X POST "$cf/servers" -H "Authorization: Bearer $cf_token" -H 'Content-Type: application/json' \
  -d "{\"server\": {\"name\": \"bench\", \"associated_tools\": [\"$tool_id\"]}}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo "ContextForge $cf_version at $cf, server $server_id, tool $peer_tool"

CMD=(target/release/mandate-load gateway --server target/release/mandate --upstream "$upstream"
  --relay "$relay" --proxy "$proxy" --peer "$cf/servers/$server_id/mcp" --peer-tool "$peer_tool" --sessions "$SESSIONS"
  --duration "$SECONDS_PER_PHASE" --rounds "$ROUNDS" --warmup 1 --data-parent "$root" --json "$root/results.json")
printf '==> %s\n' "${CMD[*]}"
PEER_TOKEN="$cf_token" "${CMD[@]}"

python3 - "$cf_version" "${CMD[*]}" <<'PY'
import datetime, json, subprocess, sys
sys.path.insert(0, "scripts")
from benchmarks_md import write_section

cf_version, command = sys.argv[1:3]
phases = json.load(open("target/bench-gateway/results.json"))
levels = sorted({p["sessions"] for p in phases})
by = {(p["target"], p["sessions"]): p for p in phases}
rows = ["| sessions | target | calls/s | p50 ms | p99 ms | added p50 ms | added p99 ms | errors | Mandate CPU µs per call |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
verdicts = []
for n in levels:
    d = by.get(("direct", n))
    for t in ["engine", "direct", "relay", "proxy", "mandate", "peer"]:
        p = by.get((t, n))
        if not p:
            continue
        added = lambda k: "" if t in ("engine", "direct") or not d else f"{(p[k] - d[k]) / 1000:.3f}"
        cpu = ""
        if t == "engine" and p["throughput"]:
            cpu = f"{p['this_cores'] / p['throughput'] * 1e6:.0f} (with its client)"
        elif t == "mandate" and p["throughput"]:
            cpu = f"{p['server_cores'] / p['throughput'] * 1e6:.0f}"
        rows.append(f"| {n} | {t} | {p['throughput']:,.0f} | {p['p50_us'] / 1000:.3f} | {p['p99_us'] / 1000:.3f} | {added('p50_us')} | {added('p99_us')} | {p['errors']} | {cpu} |")
    e, m, c = by.get(("engine", n)), by.get(("mandate", n)), by.get(("peer", n))
    if d and e and m:
        a50, a99 = m["p50_us"] - d["p50_us"], m["p99_us"] - d["p99_us"]
        r50, r99 = a50 / max(e["p50_us"], 1), a99 / max(e["p99_us"], 1)
        line = f"{n} sessions: Mandate adds {a50 / 1000:.3f} ms at p50 ({r50:.2f}x the engine's {e['p50_us'] / 1000:.3f} ms; target at most 1.5x) and {a99 / 1000:.3f} ms at p99 ({r99:.2f}x the engine's p99 {e['p99_us'] / 1000:.3f} ms; target at most 3x)"
        ok = r50 <= 1.5 and r99 <= 3.0
        if c:
            pa50 = c["p50_us"] - d["p50_us"]
            ratio = pa50 / max(a50, 1)
            line += f"; ContextForge adds {pa50 / 1000:.3f} ms at p50, {ratio:.0f}x Mandate's (target at least 20x)"
            ok = ok and ratio >= 20
        for floor, what in (("relay", "the relay floor"), ("proxy", "the HTTP proxy floor")):
            r = by.get((floor, n))
            if r:
                f50 = r["p50_us"] - d["p50_us"]
                line += f"; {what} adds {f50 / 1000:.3f} ms at p50 ({f50 / max(e['p50_us'], 1):.2f}x the engine's)"
        verdicts.append((ok, line))
verdict = "PASS" if verdicts and all(ok for ok, _ in verdicts) else "FAIL"
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
text = f"""## Gateway

**{verdict}** ({now}). `scripts/bench-gateway.sh`, which ran:

    {command}

The same client (`mandate-load gateway`) calls the same fast upstream (`mandate-load upstream`, a
Streamable HTTP MCP server whose `echo` answers at once) directly, through Mandate's gateway
(`/mcp/fast`, MCP 2026-07-28, a DPoP proof signed before each call's clock starts, the decision
durable before the call is forwarded), through a TCP relay that only copies bytes (`mandate-load
relay`, in a process of its own on a Tokio runtime like Mandate's: the floor, what one more hop
costs any gateway on this machine before it parses a byte), through an HTTP proxy built from the
gateway's own parts (`mandate-load proxy`: axum and hyper's server in, hyper's HTTP/1.1 client
out, no authentication, no decision, no ledger: the HTTP floor), and through IBM ContextForge
{cf_version} (from PyPI, on SQLite, rate limiting and UI off, MCP 2025-11-25 sessions with its JWT),
one phase after the other at each level, beside the engine's own `Engine::decide` in process,
alone, on a database of its own on the same disk (the baseline of the targets). The engine, direct
and Mandate phases and the two floors take turns (`--rounds`): each round gives each of them an
equal slice of the measured seconds above, after 1 s of warm-up, and each row's percentiles are
over all its rounds' calls, so the baseline and the gateway are measured in the same stretch of
time on this shared machine, whose speed drifts by up to a third within a minute. ContextForge,
seconds per call under load, runs once after the rounds for the whole duration. One keep-alive
connection and one call in flight per session. Added = the gateway's percentile minus the direct
call's, at the same level.

{chr(10).join(rows)}

{chr(10).join(('- ' + ('pass: ' if ok else 'FAIL: ') + line) for ok, line in verdicts)}

How to read it. The targets compare the gateway's added latency with the engine's own decision
in process; the gateway's call is that decision plus an HTTP request in, one out to the upstream and
the answer back. With one session nothing queues and the comparison is the gateway's own cost. With
16 and 64 sessions this two-core machine is saturated: the client, the upstream and Mandate share
the two cores, so latency is queueing, set by the CPU each call costs everything on the machine
(Mandate's share is the last column; the engine phase has no HTTP at all). ContextForge is measured
through the same client, upstream and sessions.
"""
write_section("gateway", text)
print(text)
sys.exit(0 if verdict == "PASS" else 1)
PY
