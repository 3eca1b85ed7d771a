"""The hub as an OAuth 2.1 resource server: JWT access tokens of configured issuers, beside the keys.

Each test runs a real hub (`python -m hub serve`) and a real authorization server of its own: a
small HTTP server in this process that publishes its JWKS (and its metadata, for discovery), whose
RSA and EC keys are made with `cryptography`, and whose tokens are minted with PyJWT.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from conftest import server
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from helpers.apps import close, connect, make_plugins, until
from helpers.facade import MODES, http_facade
from helpers.served import ACME_KEY, ADMIN_KEY, ServedHub, start_hub, stop_hub, write_config
from mcp.shared.auth import ProtectedResourceMetadata

PRM = "/.well-known/oauth-protected-resource"
DOWN = "http://127.0.0.1:9"
SCOPES = {"tools": {"description": "call every tool"}, "echo": {"allow": ["a.echo"]}}


class JwksIssuer:
    """An authorization server: `/jwks` (and `/other/jwks`) publish its keys, its metadata says where
    (RFC 8414 at the root, OpenID Connect's under `/other`, a second issuer); `mint` signs tokens."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {"k1": rsa.generate_private_key(public_exponent=65537, key_size=2048)}
        self.published = ["k1"]  # the kids `/jwks` serves
        self.other = {"e1": ec.generate_private_key(ec.SECP256R1())}
        self.fetches: list[str] = []
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.fetches.append(self.path)
                body = issuer.document(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(body).encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def document(self, path: str) -> Any:
        if path == "/.well-known/oauth-authorization-server":
            return {"issuer": self.url, "jwks_uri": f"{self.url}/jwks"}
        if path == "/other/.well-known/openid-configuration":
            return {"issuer": f"{self.url}/other", "jwks_uri": f"{self.url}/other/jwks"}
        if path == "/jwks":
            return {"keys": [jwk(self.keys[kid], kid) for kid in self.published]}
        if path == "/other/jwks":
            return {"keys": [jwk(key, kid) for kid, key in self.other.items()]}
        return None

    def rotate(self) -> None:
        """A new key replaces the old one in the published set."""
        self.keys["k2"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.published = ["k2"]

    def mint(self, kid: str = "k1", alg: str = "RS256", **claims: Any) -> str:
        now = time.time()
        payload = {"iss": self.url, "sub": "alice", "tenant": "acme", "scope": "tools", "iat": now}
        payload |= {"exp": now + 300, **claims}
        key = self.keys[kid] if kid in self.keys else self.other[kid]
        return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, alg, headers={"kid": kid})

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.thread.join(10)


def jwk(key: Any, kid: str) -> dict[str, Any]:
    """The public JWK of a private key."""
    algorithm = (
        jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else jwt.algorithms.ECAlgorithm
    )
    return {**json.loads(algorithm.to_jwk(key.public_key())), "kid": kid, "use": "sig"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(token: str, header: dict[str, Any], secret: bytes | None) -> str:
    """`token`'s claims under another header, HMAC-signed with `secret` (None: no signature)."""
    body = f"{b64(json.dumps(header).encode())}.{token.split('.')[1]}"
    signature = b64(hmac.new(secret, body.encode(), hashlib.sha256).digest()) if secret is not None else ""
    return f"{body}.{signature}"


@pytest.fixture
def issuer() -> Iterator[JwksIssuer]:
    serving = JwksIssuer()
    yield serving
    serving.close()


@pytest.fixture
def oauth_hub(serve: Any, issuer: JwksIssuer, tmp_path: Path) -> ServedHub:
    """A hub of tenants `acme` (a key too) and `beta`, trusting the test's two issuers: the root one
    (discovered by RFC 8414, tenant from claim `tenant`) and `/other` (its `jwks_uri` discovered by
    OpenID Connect; every token in `beta`, for a configured audience); and one that is down."""
    hub = serve(
        {
            "acme": {"api_keys": [ACME_KEY], "servers": {"a": server()}},
            "beta": {"servers": {"b": server()}},
        },
        auth={
            "admin_keys": [ADMIN_KEY],
            "scopes": SCOPES,
            "issuers": [
                {"issuer": issuer.url, "tenant_claim": "tenant"},
                {
                    "issuer": f"{issuer.url}/other",
                    "tenant": "beta",
                    "audience": "api://hub",
                    "subject_claim": "uid",
                },
                {"issuer": DOWN, "jwks_uri": f"{DOWN}/jwks", "tenant": "acme"},  # nothing listens there
            ],
        },
        gateway={"plugins_dir": str(make_plugins(tmp_path))},
    )
    for tenant in ("acme", "beta"):
        assert hub.post(f"/api/tenants/{tenant}/start", key=ADMIN_KEY).status == 200
    return hub


def initialize(hub: ServedHub, path: str, token: str | None) -> Any:
    """A 2025-11-25 `initialize` POST to an MCP endpoint."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    headers = {"Accept": "application/json, text/event-stream"}
    return hub.request("POST", path, body, key=token, headers=headers)


def challenge(answer: Any) -> str:
    assert answer.status == 401, answer.text
    return answer.headers["WWW-Authenticate"]


# --------------------------------------------------------------------------- accepted


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_token_calls_tools_over_rest_mcp_and_websockets_beside_the_keys(
    oauth_hub: ServedHub, issuer: JwksIssuer
) -> None:
    hub = oauth_hub
    for_hub, for_mcp = issuer.mint(aud=hub.url), issuer.mint(aud=f"{hub.url}/mcp", sub="bob")
    called = hub.post("/api/tools/a.echo/call", {"text": "by token"}, key=for_hub)
    assert called.status == 200 and called.body["structured_content"] == {"text": "by token"}
    assert {t["tenant"] for t in hub.get("/api/tools", key=for_hub).body["tools"]} == {"acme"}
    # A token for /mcp is for that endpoint only (RFC 8707): not for the REST API.
    assert "another audience" in hub.get("/api/tools", key=for_mcp).body["error"]["message"]
    for mode in MODES:
        for token in (for_mcp, for_hub):  # the endpoint's resource, or the hub's URL itself
            async with http_facade(f"{hub.url}/mcp", mode, key=token) as client:
                assert "a__echo" in {t.name for t in (await client.list_tools()).tools}
                result = await client.call_tool("a__echo", {"text": f"mcp {mode}"})
                assert result.structured_content == {"text": f"mcp {mode}"} and not result.is_error
    # The other issuer's tokens: its configured audience, its tenant (beta), its subject claim.
    other = issuer.mint("e1", "ES256", iss=f"{issuer.url}/other", aud="api://hub", uid="carol", sub=None)
    assert hub.post("/api/tools/b.echo", {"text": "beta"}, key=other).body["structured_content"] == {
        "text": "beta"
    }
    # Keys work as before, beside tokens.
    assert hub.post("/api/tools/a.echo", {"text": "key"}, key=ACME_KEY).status == 200
    async with http_facade(f"{hub.url}/mcp", "2026-07-28", key=ACME_KEY) as client:
        assert not (await client.call_tool("a__echo", {"text": "key"})).is_error
    # The app WebSocket gateway takes a token (`?token=`, as a browser sends it).
    ws = await connect(hub, "hello", "acme", key=for_hub)
    ws.write_message(
        json.dumps(
            {"type": "tool_call", "id": 1, "data": {"tool_name": "a.echo", "arguments": {"text": "ws"}}}
        )
    )
    assert (await until(ws, "tool_result", 1))["data"]["structured_content"] == {"text": "ws"}
    await close(ws)
    # A connection lives as long as its token: accepted within the 30 s of leeway past its expiry,
    # it is closed (1008) at its first frame after that.
    ws = await connect(hub, "hello", "acme", key=issuer.mint(aud=hub.url, exp=time.time() - 27))
    deadline = time.monotonic() + 20
    while ws.close_code is None and time.monotonic() < deadline:
        ws.write_message(json.dumps({"type": "ping"}))
        await asyncio.wait_for(ws.read_message(), 10)
    assert ws.close_code == 1008 and "no longer valid" in (ws.close_reason or "")
    await close(ws)
    # A token is never an admin: the admin socket is 404 to it, as to a tenant key.
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}
    upgrade["Sec-WebSocket-Key"] = b64(uuid.uuid4().bytes) + "=="
    assert hub.request("GET", f"/ws/admin?token={for_hub}", headers=upgrade).status == 404
    # The caller is named by a hash of its subject (an external issuer's user: `<issuer>#<sub>`, so
    # two issuers' "alice" are two users), never by the token; no token is in the log.
    stop_hub(hub)
    log = hub.log()
    alice, carol = f"{issuer.url}#alice".encode(), f"{issuer.url}/other#carol".encode()
    assert f"key=acme:token:{hashlib.sha256(alice).hexdigest()[:12]}" in log
    assert f"key=beta:token:{hashlib.sha256(carol).hexdigest()[:12]}" in log
    for token in (for_hub, for_mcp, other):
        assert token not in log and token.split(".")[2] not in log


# --------------------------------------------------------------------------- refused


def test_refused_tokens_are_401_with_a_challenge_naming_the_resource_metadata(
    oauth_hub: ServedHub, issuer: JwksIssuer
) -> None:
    hub = oauth_hub
    aud = f"{hub.url}/mcp"
    good = issuer.mint(aud=aud)
    header, _, signature = good.split(".")
    public_pem = (
        issuer.keys["k1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    beta_claims = b64(
        json.dumps({**jwt.decode(good, options={"verify_signature": False}), "tenant": "beta"}).encode()
    )
    refused = {
        "another audience": issuer.mint(aud=f"{hub.url}/tenants/acme/mcp"),
        "is not one this hub trusts": issuer.mint(aud=aud, iss="http://127.0.0.1:9/evil"),
        "expired": issuer.mint(aud=aud, iat=time.time() - 600, exp=time.time() - 120),
        "not valid yet": issuer.mint(aud=aud, nbf=time.time() + 300),
        "bad signature": f"{header}.{beta_claims}.{signature}",  # claims changed after signing
        "'none' is not accepted": forged(good, {"alg": "none", "typ": "JWT"}, None),
        "'HS256' is not accepted": forged(good, {"alg": "HS256", "kid": "k1"}, public_pem),
        "that its issuer does not publish": issuer.mint(aud=aud, iss=f"{issuer.url}/other"),
        "no subject": issuer.mint(aud=aud, sub=None),
        "tenant 'nobody' is not one of this hub's": issuer.mint(aud=aud, tenant="nobody"),
        "has no 'exp' claim": issuer.mint(aud=aud, exp=None),
        "could not be fetched": issuer.mint(aud=aud, iss=DOWN),
        "invalid key": "not-a-token",
    }
    metadata = f'resource_metadata="{hub.url}{PRM}/mcp"'
    for reason, token in refused.items():
        answer = initialize(hub, "/mcp", token)
        told = challenge(answer)
        assert metadata in told and 'error="invalid_token"' in told, (reason, told)
        assert reason in answer.body["error"]["message"] and answer.body["error"]["code"] == "unauthorized", (
            reason,
            answer.body,
        )
        assert reason in told, (reason, told)
    assert (
        'error="invalid_token"' not in (told := challenge(initialize(hub, "/mcp", None))) and metadata in told
    )
    # Every surface: REST names the hub's own metadata, a tenant's endpoint its own.
    assert f'resource_metadata="{hub.url}{PRM}"' in challenge(hub.get("/api/tools", key=refused["expired"]))
    tenant_metadata = f'resource_metadata="{hub.url}{PRM}/tenants/acme/mcp"'
    assert tenant_metadata in challenge(initialize(hub, "/tenants/acme/mcp", None))
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}
    upgrade["Sec-WebSocket-Key"] = b64(uuid.uuid4().bytes) + "=="
    answer = hub.request("GET", f"/ws/app/hello/acme?token={refused['expired']}", headers=upgrade)
    assert "expired" in answer.body["error"]["message"] and "invalid_token" in challenge(answer)
    stop_hub(hub)
    log = hub.log()
    for token in refused.values():
        assert token not in log and not any(len(part) > 20 and part in log for part in token.split("."))


def test_a_token_of_tenant_a_is_404_on_tenant_b_like_a_key(oauth_hub: ServedHub, issuer: JwksIssuer) -> None:
    hub = oauth_hub
    own = issuer.mint(aud=f"{hub.url}/tenants/acme/mcp")
    assert initialize(hub, "/tenants/acme/mcp", own).status == 200
    for path in ("/tenants/beta/mcp", "/tenants/beta/servers/b/mcp", "/tenants/nosuch/mcp"):
        answer = initialize(hub, path, issuer.mint(aud=f"{hub.url}{path}"))
        assert answer.status == 404 and answer.body["error"]["code"] == "not_found", (path, answer.text)
    token = issuer.mint(aud=hub.url)
    for method, path in (
        ("GET", "/api/tenants/beta"),
        ("GET", "/api/servers/beta/b"),
        ("POST", "/api/servers/beta/b/stop"),
        ("GET", "/api/tools?tenant=beta"),
        ("POST", "/api/tools/b.echo?tenant=beta"),
    ):
        answer = hub.request(method, path, {} if method == "POST" else None, key=token)
        missing = hub.request(
            method, path.replace("beta", "nosuch"), {} if method == "POST" else None, key=token
        )
        assert answer.status == missing.status == 404, (method, path, answer.text)
        assert answer.body["error"]["code"] == missing.body["error"]["code"] == "not_found"
    assert hub.get("/api/servers/beta/b", key=ADMIN_KEY).body["state"] == "running"  # never touched


def test_a_rotated_key_is_fetched_once_and_unknown_kids_do_not_hammer_the_issuer(
    oauth_hub: ServedHub, issuer: JwksIssuer
) -> None:
    hub = oauth_hub
    old = issuer.mint(aud=hub.url)
    assert hub.get("/api/tools", key=old).status == 200
    # Discovered once (RFC 8414 metadata, then the JWKS), then cached.
    assert hub.get("/api/tools", key=old).status == 200
    assert issuer.fetches.count("/.well-known/oauth-authorization-server") == 1
    assert issuer.fetches.count("/jwks") == 1
    issuer.rotate()
    new = issuer.mint("k2", aud=hub.url)
    assert hub.get("/api/tools", key=new).status == 200  # an unknown kid: the JWKS again
    assert issuer.fetches.count("/jwks") == 2
    answer = hub.get("/api/tools", key=old)  # its key is gone from the issuer's set
    assert answer.status == 401 and "does not publish" in answer.body["error"]["message"]
    for _ in range(5):  # made-up kids within 30 s of the last refetch: refused from the cache
        forged_kid = forged(new, {"alg": "RS256", "kid": uuid.uuid4().hex}, b"x")
        assert hub.get("/api/tools", key=forged_kid).status == 401
    assert issuer.fetches.count("/jwks") == 2
    assert hub.get("/api/tools", key=new).status == 200


# --------------------------------------------------------------------------- metadata


def test_protected_resource_metadata(oauth_hub: ServedHub, issuer: JwksIssuer) -> None:
    hub = oauth_hub
    expected = {
        "authorization_servers": [issuer.url, f"{issuer.url}/other", DOWN],
        "scopes_supported": sorted(SCOPES),  # (in the configuration's order)
        "bearer_methods_supported": ["header"],
    }
    for path in ("", "/mcp", "/tenants/beta/mcp", "/tenants/acme/servers/a/mcp"):
        answer = hub.get(PRM + path)  # no key needed
        assert answer.status == 200 and answer.body == {"resource": hub.url + path, **expected}, answer.text
        assert ProtectedResourceMetadata.model_validate(answer.body).authorization_servers  # the SDK's model
    # A tenant or server it does not have is described all the same: the public document does not
    # tell anyone which tenants exist.
    nosuch = hub.get(PRM + "/tenants/nosuch/mcp")
    assert nosuch.status == 200 and nosuch.body == {"resource": hub.url + "/tenants/nosuch/mcp", **expected}
    assert hub.get(PRM + "/tenants/acme/servers/b/mcp").status == 200
    for path in ("/tenants/acme", "/api/tools"):
        assert hub.get(PRM + path).status == 404, path
    # The resource a token is for, as the metadata names it.
    resource = hub.get(PRM + "/tenants/acme/servers/a/mcp").body["resource"]
    assert initialize(hub, "/tenants/acme/servers/a/mcp", issuer.mint(aud=resource)).status == 200


def test_public_url_names_the_resources_and_no_oauth_means_no_metadata(tmp_path: Path) -> None:
    public = "https://hub.example.com"
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    config = write_config(
        tmp_path / "one",
        {"acme": {"servers": {}}},
        auth={"admin_keys": [ADMIN_KEY], "server": {"enabled": True}},
        gateway={"public_url": public},
    )
    built_in = start_hub(config, tmp_path / "one")
    try:
        answer = built_in.get(PRM + "/tenants/acme/mcp")
        assert answer.body == {
            "resource": f"{public}/tenants/acme/mcp",
            "authorization_servers": [public],  # the built-in server's issuer: the hub's URL
            "bearer_methods_supported": ["header"],
        }
        assert f'resource_metadata="{public}{PRM}"' in challenge(built_in.get("/api/tools"))
    finally:
        assert stop_hub(built_in) == 0
    config = write_config(
        tmp_path / "two", {"acme": {"api_keys": [ACME_KEY]}}, auth={"admin_keys": [ADMIN_KEY]}
    )
    keyed = start_hub(config, tmp_path / "two")
    try:
        assert keyed.get(PRM).status == 404 and keyed.get(PRM + "/mcp").status == 404
        assert challenge(keyed.get("/api/tools")) == 'Bearer realm="mcp-hub"'
        assert keyed.get("/api/tools", key=ACME_KEY).status == 200
    finally:
        assert stop_hub(keyed) == 0
