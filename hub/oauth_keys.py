"""The built-in authorization server's signing key: made once, kept, published as a JWKS.

An ES256 (P-256) key, generated with `cryptography` the first time the server needs it and kept in
`data_dir/oauth/signing-key.pem` (mode 0600, created atomically: two hubs starting on one data
folder end up with the same key), then reused at every start, so tokens minted before a restart
still verify after it. Its public half is published at `/oauth/jwks.json` (`public_jwks`), with
`kid` its RFC 7638 thumbprint. PyJWT signs and checks the tokens.

Pure functions and an immutable key: any thread.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hub.oauth_store import create_private, private_folder

KEY_FILE = "signing-key.pem"
ALGORITHM = "ES256"


@dataclass(frozen=True)
class SigningKey:
    """The private key, its public JWK and its `kid`."""

    private: ec.EllipticCurvePrivateKey
    kid: str
    jwk: dict[str, str]

    def sign(self, claims: dict[str, Any]) -> str:
        """A JWT of `claims`, signed (header `kid`, `typ: at+jwt`, RFC 9068)."""
        return jwt.encode(
            claims, self.private, algorithm=ALGORITHM, headers={"kid": self.kid, "typ": "at+jwt"}
        )

    def verify(self, token: str, issuer: str) -> dict[str, Any]:
        """The claims of a token this key signed for `issuer`, checked (signature, `iss`, `exp`,
        `nbf`; not `aud`: the resource server checks that).

        Raises:
            jwt.InvalidTokenError: it is not one, or no longer valid.
        """
        return jwt.decode(
            token,
            self.private.public_key(),
            algorithms=[ALGORITHM],
            issuer=issuer,
            options={"verify_aud": False, "require": ["exp", "iss", "sub"]},
        )


def load_signing_key(folder: Path) -> SigningKey:
    """The key kept in `folder` (made and kept there first, if there is none)."""
    path = private_folder(folder) / KEY_FILE
    if not path.exists():
        fresh = ec.generate_private_key(ec.SECP256R1())
        pem = fresh.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        create_private(path, pem)
    private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(private, ec.EllipticCurvePrivateKey) or private.curve.name != "secp256r1":
        raise ValueError(f"{path} is not a P-256 (ES256) private key")
    public = jwt.algorithms.ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    core = {name: str(public[name]) for name in ("crv", "kty", "x", "y")}
    kid = _b64url(hashlib.sha256(json.dumps(core, separators=(",", ":"), sort_keys=True).encode()).digest())
    return SigningKey(private, kid, {**core, "kid": kid, "use": "sig", "alg": ALGORITHM})


def jwks_of(key: SigningKey) -> dict[str, Any]:
    """The JWK Set that publishes `key`'s public half."""
    return {"keys": [dict(key.jwk)]}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
