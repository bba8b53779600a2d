"""Verifies a Mandate token offline with PyJWT, using only the server's published JWKS.

Usage: verify_mandate.py JWKS_URL TOKEN ISSUER AUDIENCE
Prints the verified claims as JSON on success; exits non-zero with the reason otherwise.
This is the interoperability check of SPEC.md: any standard JWT library verifies a mandate.
"""
import json
import sys

import jwt  # PyJWT, with the `cryptography` backend for EdDSA


def main() -> int:
    jwks_url, token, issuer, audience = sys.argv[1:5]
    client = jwt.PyJWKClient(jwks_url)
    signing_key = client.get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        signing_key.key,
        algorithms=["EdDSA"],
        issuer=issuer,
        audience=audience,
        options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]},
    )
    header = jwt.get_unverified_header(token)
    print(json.dumps({"header": header, "claims": claims}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except jwt.PyJWTError as e:
        print(f"refused: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(3)
