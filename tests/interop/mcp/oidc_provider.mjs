// An OpenID Provider for the console's sign-in tests: panva's `oidc-provider` (npm, an OpenID
// Certified implementation), with its development login and consent pages (any login, any password).
// It signs ID tokens with a fresh RSA key (RS256) whose public JWKS it writes to `jwks_out`, for
// Mandate's `[oidc] jwks_file`, and puts `email` and `groups` in them.
//
//     node oidc_provider.mjs '{"client_id": "...", "client_secret": "...", "redirect_uri": "...",
//                              "jwks_out": "path", "groups": {"alice@example.org": ["..."]}}'
//
// Prints `{"issuer", "authorization_endpoint", "token_endpoint"}` as one JSON line once it listens.
import http from "node:http";
import crypto from "node:crypto";
import fs from "node:fs";
import Provider from "oidc-provider";

const spec = JSON.parse(process.argv[2]);
const { privateKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: "jwk" }), kid: "test-rsa-1", use: "sig", alg: "RS256" };
fs.writeFileSync(spec.jwks_out, JSON.stringify({ keys: [{ kty: jwk.kty, n: jwk.n, e: jwk.e, kid: jwk.kid, use: "sig", alg: "RS256" }] }));

const server = http.createServer();
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const issuer = `http://127.0.0.1:${server.address().port}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: spec.client_id, client_secret: spec.client_secret, redirect_uris: [spec.redirect_uri],
    grant_types: ["authorization_code"], response_types: ["code"], token_endpoint_auth_method: "client_secret_basic",
  }],
  jwks: { keys: [jwk] },
  claims: { openid: ["sub"], email: ["email", "email_verified"], groups: ["groups"] },
  // The claims in the ID token itself, as the IdPs Mandate works with are configured to do.
  conformIdTokenClaims: false,
  findAccount: async (_ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, email: id, email_verified: true, groups: spec.groups?.[id] ?? [] }),
  }),
  features: { devInteractions: { enabled: true } },
});
provider.on("server_error", (_ctx, e) => process.stderr.write(`oidc-provider: ${e?.stack ?? e}\n`));
server.on("request", provider.callback());
console.log(JSON.stringify({ issuer, authorization_endpoint: `${issuer}/auth`, token_endpoint: `${issuer}/token` }));
