"""An MCP client written with the official Python SDK (`mcp` from PyPI), which adds a DPoP proof to
every request through an auth hook on its HTTP client, for the gateway's interoperability tests.

    python dpop_client.py '<json>'

The JSON names the gateway `url`, the mandate `token`, the agent's Ed25519 private key as a
base64url `seed`, the negotiation `mode` (`auto` speaks 2026-07-28 with a gateway that offers it;
`legacy` opens a 2025-11-25 session), and the `steps` to run in order, each `{"list": true}`,
`{"call": name, "arguments": {...}, "meta": {...}}`, `{"resources": true}`, `{"read": uri}`,
`{"prompts": true}` or `{"prompt": name, "arguments": {...}}`. It prints one JSON line: each step's outcome
(`{"tools": [...]}`, `{"result": {...}}` or `{"error": {"code", "message", "data"}}`), and the
protocol version negotiated.
"""

import asyncio
import base64
import hashlib
import json
import sys
import time
import uuid

import httpx2
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class DPoPAuth(httpx2.Auth):
    """`Authorization: DPoP <mandate>` and a fresh proof (RFC 9449) bound to each request."""

    def __init__(self, token: str, seed: str):
        self.token = token
        self.key = Ed25519PrivateKey.from_private_bytes(base64.urlsafe_b64decode(seed + "=="))
        x = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(x)}
        self.ath = b64url(hashlib.sha256(token.encode()).digest())

    def auth_flow(self, request):
        htu = str(request.url).split("?")[0].split("#")[0]
        claims = {"jti": str(uuid.uuid4()), "htm": request.method, "htu": htu, "iat": int(time.time()), "ath": self.ath}
        proof = jwt.encode(claims, self.key, algorithm="EdDSA", headers={"typ": "dpop+jwt", "jwk": self.jwk})
        request.headers["Authorization"] = f"DPoP {self.token}"
        request.headers["DPoP"] = proof
        yield request


async def main(spec: dict) -> dict:
    # No token: a client that has no mandate (what a shadow agent looks like to the gateway).
    auth = DPoPAuth(spec["token"], spec["seed"]) if spec.get("token") else None
    http = httpx2.AsyncClient(auth=auth, timeout=30)
    out = {"steps": []}
    if auth is None:
        try:
            async with Client(streamable_http_client(spec["url"], http_client=http), mode=spec.get("mode", "auto")):
                pass
        except BaseException as e:  # noqa: BLE001 - the refusal is the outcome being reported
            out["connect_error"] = repr(e)[:500]
        return out
    async with Client(streamable_http_client(spec["url"], http_client=http), mode=spec.get("mode", "auto")) as client:
        session = client.session
        out["protocol_version"] = getattr(session, "protocol_version", None) or str(
            getattr(getattr(session, "discover_result", None), "supported_versions", None)
            or getattr(getattr(session, "initialize_result", None), "protocol_version", None))
        out["modern"] = getattr(session, "discover_result", None) is not None
        for step in spec["steps"]:
            try:
                if step.get("list"):
                    listed = await client.list_tools()
                    out["steps"].append({"tools": [t.name for t in listed.tools]})
                elif step.get("resources"):
                    listed = await client.list_resources()
                    out["steps"].append({"resources": [str(r.uri) for r in listed.resources]})
                elif "read" in step:
                    result = await client.read_resource(step["read"])
                    out["steps"].append({"result": result.model_dump(mode="json", by_alias=True, exclude_none=True)})
                elif step.get("prompts"):
                    listed = await client.list_prompts()
                    out["steps"].append({"prompts": [p.name for p in listed.prompts]})
                elif "prompt" in step:
                    result = await client.get_prompt(step["prompt"], step.get("arguments"))
                    out["steps"].append({"result": result.model_dump(mode="json", by_alias=True, exclude_none=True)})
                else:
                    result = await client.call_tool(step["call"], step.get("arguments", {}), meta=step.get("meta"))
                    out["steps"].append({"result": result.model_dump(mode="json", by_alias=True, exclude_none=True)})
            except MCPError as e:
                err = e.error
                out["steps"].append({"error": {"code": err.code, "message": err.message, "data": err.data}})
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))))
