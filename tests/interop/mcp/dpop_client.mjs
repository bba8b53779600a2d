// An MCP client written with the official TypeScript SDK (`@modelcontextprotocol/sdk` from npm),
// which adds a DPoP proof to every request through a custom fetch, for the gateway's
// interoperability tests. It speaks 2025-11-25 (initialize and Mcp-Session-Id).
//
//     node dpop_client.mjs '<json>'
//
// Same input and output as dpop_client.py: `url`, `token`, `seed` (base64url Ed25519 private key)
// and `steps`; one JSON line out.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { dpopSigner } from "./dpop.mjs";

const spec = JSON.parse(process.argv[2]);
const proof = dpopSigner(spec.seed);

async function dpopFetch(url, init = {}) {
  const headers = new Headers(init.headers || {});
  const method = (init.method || "GET").toUpperCase();
  headers.set("Authorization", `DPoP ${spec.token}`);
  headers.set("DPoP", proof(method, url, spec.token));
  return fetch(url, { ...init, headers });
}

const out = { steps: [] };
const client = new Client({ name: "interop-ts-client", version: "1.0.0" });
const transport = new StreamableHTTPClientTransport(new URL(spec.url), { fetch: dpopFetch });
await client.connect(transport);
out.protocol_version = transport.protocolVersion ?? null;
out.session = transport.sessionId ?? null;
for (const step of spec.steps) {
  try {
    if (step.list) {
      const listed = await client.listTools();
      out.steps.push({ tools: listed.tools.map((t) => t.name) });
    } else if (step.resources) {
      const listed = await client.listResources();
      out.steps.push({ resources: listed.resources.map((r) => r.uri) });
    } else if (step.read !== undefined) {
      out.steps.push({ result: await client.readResource({ uri: step.read }) });
    } else if (step.prompts) {
      const listed = await client.listPrompts();
      out.steps.push({ prompts: listed.prompts.map((p) => p.name) });
    } else if (step.prompt !== undefined) {
      out.steps.push({ result: await client.getPrompt({ name: step.prompt, arguments: step.arguments ?? {} }) });
    } else {
      const params = { name: step.call, arguments: step.arguments ?? {} };
      if (step.meta) params._meta = step.meta;
      out.steps.push({ result: await client.callTool(params) });
    }
  } catch (e) {
    out.steps.push({ error: { code: e.code ?? null, message: String(e.message ?? e), data: e.data ?? null } });
  }
}
await transport.terminateSession().catch(() => {});
await client.close();
console.log(JSON.stringify(out));
