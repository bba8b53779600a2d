// DPoP proofs (RFC 9449) with an Ed25519 key, for the interoperability scripts: the proof a client
// adds to each request, bound to the access token (`ath`) when it has one.
import crypto from "node:crypto";

const b64url = (buf) => Buffer.from(buf).toString("base64url");

/// A signer for the Ed25519 key whose raw 32-byte seed is `seed` (base64url).
export function dpopSigner(seed) {
  // PKCS#8 wrapping of a raw Ed25519 seed.
  const pkcs8 = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), Buffer.from(seed, "base64url")]);
  const key = crypto.createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" });
  const jwk = { kty: "OKP", crv: "Ed25519", x: crypto.createPublicKey(key).export({ format: "jwk" }).x };
  return (method, url, token) => {
    const claims = { jti: crypto.randomUUID(), htm: method, htu: String(url).split("?")[0].split("#")[0], iat: Math.floor(Date.now() / 1000) };
    if (token) claims.ath = b64url(crypto.createHash("sha256").update(token).digest());
    const input = `${b64url(JSON.stringify({ typ: "dpop+jwt", alg: "EdDSA", jwk }))}.${b64url(JSON.stringify(claims))}`;
    return `${input}.${b64url(crypto.sign(null, Buffer.from(input), key))}`;
  };
}
