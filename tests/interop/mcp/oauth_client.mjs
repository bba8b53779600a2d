// A stock MCP client, the official TypeScript SDK (`@modelcontextprotocol/sdk` from npm) with its
// own OAuth support, connects to Mandate's gateway with no token: it is refused with 401, finds
// Mandate as the authorization server from the gateway's protected resource metadata, identifies
// itself by its client ID metadata document and sends the human to the authorization endpoint. There
// a human, in Debian's Chromium driven by playwright-core, signs in and grants a mandate on the
// consent page; the SDK exchanges the code (PKCE) and connects again with the mandate, lists the
// tools and calls them. With `dpop_seed`, a fetch hook adds a DPoP proof at the token endpoint and on
// every gateway request, so the mandate is bound to that key; without it the client is exactly stock
// and gets a bearer mandate where the organisation allows one.
//
//     node oauth_client.mjs '{"url": ".../mcp/erp", "client_id": "https://.../client.json",
//                             "redirect": "http://127.0.0.1:9/callback", "human_key": "mnd_...",
//                             "agent": "...", "category": "...", "purpose": "...",
//                             "calls": [{"call": "read_ledger", "arguments": {...}}], "dpop_seed": "..."}'
//
// Prints what it saw as one JSON line.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { launch } from "./browser.mjs";
import crypto from "node:crypto";
import { dpopSigner } from "./dpop.mjs";

const spec = JSON.parse(process.argv[2]);
const out = { steps: [] };

// Everything the SDK asks its provider to keep, kept in memory for one run.
class Provider {
  constructor() {
    this.stored = {};
    this.sentState = `st-${crypto.randomUUID()}`;
  }
  get redirectUrl() { return spec.redirect; }
  get clientMetadataUrl() { return spec.client_id; }
  get clientMetadata() {
    return { client_name: "Stock MCP client", redirect_uris: [spec.redirect], grant_types: ["authorization_code"],
      response_types: ["code"], token_endpoint_auth_method: "none" };
  }
  state() { return this.sentState; }
  clientInformation() { return this.stored.client; }
  saveClientInformation(info) { this.stored.client = info; }
  tokens() { return this.stored.tokens; }
  saveTokens(tokens) { this.stored.tokens = tokens; }
  saveCodeVerifier(verifier) { this.stored.verifier = verifier; }
  codeVerifier() { return this.stored.verifier; }
  redirectToAuthorization(url) { this.authorizationUrl = url; }
}

// The optional DPoP hook (RFC 9449): a proof for the token endpoint, and for each gateway request a
// proof bound to the access token, sent as `Authorization: DPoP`.
let fetchHook;
if (spec.dpop_seed) {
  const proof = dpopSigner(spec.dpop_seed);
  fetchHook = async (url, init = {}) => {
    const headers = new Headers(init.headers || {});
    const method = (init.method || "GET").toUpperCase();
    const target = String(url);
    const auth = headers.get("Authorization");
    if (target.endsWith("/oauth/token")) {
      headers.set("DPoP", proof(method, target));
    } else if (auth?.startsWith("Bearer ")) {
      const token = auth.slice(7);
      headers.set("Authorization", `DPoP ${token}`);
      headers.set("DPoP", proof(method, target, token));
    }
    return fetch(url, { ...init, headers });
  };
}

const provider = new Provider();
const transportFor = () => new StreamableHTTPClientTransport(new URL(spec.url), { authProvider: provider, fetch: fetchHook });

// 1. No token: the SDK is refused, discovers the authorization server and asks for the browser.
let transport = transportFor();
try {
  await new Client({ name: "stock-oauth-client", version: "1.0.0" }).connect(transport);
  out.connected_without_mandate = true;
} catch (e) {
  out.first_error = e instanceof UnauthorizedError ? "unauthorized" : String(e?.message ?? e);
}
if (!provider.authorizationUrl) {
  console.log(JSON.stringify(out));
  process.exit(0);
}
out.authorization_url = provider.authorizationUrl.href;

// 2. The human, in a browser: signs in, sees the consent page, grants.
const browser = await launch();
let callback;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  await page.goto(out.authorization_url);
  out.login_url = page.url();
  await page.fill("#credential", spec.human_key);
  await Promise.all([page.waitForSelector("#consent", { timeout: 15000 }), page.click("form.signin button[type=submit]")]);
  out.consent = await page.locator("#client").innerText();
  out.offered_tools = await page.locator("#tools input[name=tool]").evaluateAll((boxes) =>
    boxes.map((b) => ({ tool: b.value, checked: b.checked })));
  await page.selectOption("select[name=agent]", spec.agent);
  await page.fill("input[name=purpose]", spec.purpose);
  await page.selectOption("select[name=category]", spec.category);
  if (spec.shots) await page.screenshot({ path: `${spec.shots}/consent.png`, fullPage: true });
  // The client's redirect URI has no listener here: the request the browser makes to it is the answer.
  const sent = page.waitForRequest((r) => r.url().startsWith(spec.redirect), { timeout: 15000 });
  await page.click("#grant").catch(() => {});
  callback = new URL((await sent).url());
} finally {
  await browser.close();
}
out.callback = Object.fromEntries(callback.searchParams);
out.state_matches = callback.searchParams.get("state") === provider.sentState;

// 3. The SDK exchanges the code (with its PKCE verifier) and connects again with the mandate.
await transport.finishAuth(callback.searchParams.get("code"));
out.token_type = provider.stored.tokens?.token_type ?? null;
out.access_token = provider.stored.tokens?.access_token ?? null;
transport = transportFor();
const client = new Client({ name: "stock-oauth-client", version: "1.0.0" });
await client.connect(transport);
out.protocol_version = transport.protocolVersion ?? null;
out.tools = (await client.listTools()).tools.map((t) => t.name);
for (const step of spec.calls ?? []) {
  try {
    out.steps.push({ result: await client.callTool({ name: step.call, arguments: step.arguments ?? {} }) });
  } catch (e) {
    out.steps.push({ error: { code: e.code ?? null, message: String(e.message ?? e), data: e.data ?? null } });
  }
}
await transport.terminateSession().catch(() => {});
await client.close();
console.log(JSON.stringify(out));
