"""The built-in OAuth 2.1 authorization server (`auth.server`), against a real served hub.

The flows are driven as a client and a browser would: httpx for the client's requests, the login
form fetched and submitted like a browser (its cookie, its hidden fields). Tokens are checked with
PyJWT against the JWKS the hub publishes. Client ID Metadata Documents are tested on the provider
itself (`get_client`), fetching from an http server of the test with the test-only `allow_http`:
the served hub fetches https documents only, and so does the SDK's client ask (its
`client_metadata_url` must be https). The end-to-end test drives the `mcp` SDK's own
`OAuthClientProvider` through discovery, registration, login and a tool call on `/mcp`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2 as httpx
import jwt
import pytest
from conftest import ROOT, config_of, server
from helpers.facade import MODES
from helpers.served import ServedHub, start_hub, stop_hub, write_config
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)
from pydantic import AnyUrl

from hub.oauth_cimd import ClientDocuments
from hub.oauth_provider import HubOAuthProvider
from hub.passwords import hash_password, verify_password

ALICE_PASSWORD = "correct horse battery staple"
BOB_PASSWORD = "bob's own password"
REDIRECT = "http://127.0.0.1:9/callback"  # never fetched: the test reads the redirect's Location
# a cheap scrypt cost for the tests (the hash string carries its own parameters)
ALICE_HASH = hash_password(ALICE_PASSWORD, n=2**10)
BOB_HASH = hash_password(BOB_PASSWORD, n=2**10)


def auth_section(**server_settings: Any) -> dict[str, Any]:
    return {
        "admin_keys": ["admin-key-0123456789"],
        "scopes": {"read": {"allow": ["a.echo"]}, "all": {}},
        "server": {
            "enabled": True,
            "users": {
                "alice": {"password_hash": ALICE_HASH, "tenant": "acme"},
                "bob": {"password_hash": BOB_HASH, "tenant": "beta", "scopes": ["read"]},
            },
            **server_settings,
        },
    }


TENANTS = {"acme": {"servers": {"a": server()}}, "beta": {"servers": {"b": server()}}}


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[ServedHub]:
    served = start_hub(write_config(tmp_path, TENANTS, auth=auth_section()), tmp_path)
    yield served
    assert stop_hub(served) == 0


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def register(http: httpx.Client, url: str, **metadata: Any) -> dict[str, Any]:
    body = {"redirect_uris": [REDIRECT], "client_name": "Test Client", **metadata}
    answer = http.post(f"{url}/register", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


def login_page(http: httpx.Client, url: str, client_id: str, **params: str) -> tuple[str, dict[str, str]]:
    """Start an authorization (as the client's browser): the login page and its hidden fields."""
    query = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "state": "st-1"}
    answer = http.get(f"{url}/authorize", params={**query, **params})
    assert answer.status_code == 302, answer.text
    page = http.get(answer.headers["Location"])
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page.text))
    return page.text, fields


def sign_in(
    http: httpx.Client, url: str, fields: dict[str, str], user: str, password: str, action: str = "allow"
) -> httpx.Response:
    form = {**fields, "username": user, "password": password, "action": action}
    return http.post(f"{url}/oauth/login", data=form)


def authorize(
    http: httpx.Client,
    url: str,
    client: dict[str, Any],
    user: str = "alice",
    password: str = ALICE_PASSWORD,
    **params: str,
) -> tuple[str, str]:
    """A full authorization: `(code, code_verifier)`."""
    verifier, challenge = pkce()
    _, fields = login_page(http, url, client["client_id"], code_challenge=challenge, **params)
    answer = sign_in(http, url, fields, user, password)
    assert answer.status_code == 302, answer.text
    target = urlsplit(answer.headers["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == REDIRECT
    query = parse_qs(target.query)
    assert query["state"] == ["st-1"] and query["iss"] == [url]
    return query["code"][0], verifier


def token(http: httpx.Client, url: str, client: dict[str, Any], **form: str) -> httpx.Response:
    auth = {"client_id": client["client_id"], "client_secret": client.get("client_secret") or ""}
    return http.post(f"{url}/token", data={**auth, **form})


def exchange(
    http: httpx.Client, url: str, client: dict[str, Any], code: str, verifier: str
) -> httpx.Response:
    """The token endpoint's answer to `code` (redeemed with its PKCE `verifier`)."""
    form = {"code": code, "code_verifier": verifier, "redirect_uri": REDIRECT}
    return token(http, url, client, grant_type="authorization_code", **form)


def claims_of(http: httpx.Client, url: str, access_token: str) -> dict[str, Any]:
    """The claims of a token, its signature checked against the hub's published JWKS."""
    jwks = http.get(f"{url}/oauth/jwks.json").json()
    kid = jwt.get_unverified_header(access_token)["kid"]
    key = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == kid))
    return jwt.decode(access_token, key, algorithms=["ES256"], issuer=url, options={"verify_aud": False})


# --------------------------------------------------------------------------- metadata, registration


def test_metadata_document_and_jwks(hub: ServedHub) -> None:
    with httpx.Client(timeout=30) as http:
        meta = http.get(f"{hub.url}/.well-known/oauth-authorization-server").json()
        jwks = http.get(f"{hub.url}/oauth/jwks.json").json()
    assert meta["issuer"] == hub.url
    for name, path in (
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("registration_endpoint", "/register"),
        ("revocation_endpoint", "/revoke"),
        ("jwks_uri", "/oauth/jwks.json"),
    ):
        assert meta[name] == hub.url + path
    assert meta["client_id_metadata_document_supported"] is True
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert set(meta["grant_types_supported"]) == {"authorization_code", "refresh_token"}
    assert set(meta["scopes_supported"]) == {"read", "all"}
    assert "none" in meta["token_endpoint_auth_methods_supported"]
    # reached as localhost, the hub is that issuer (as the resource server names it)
    local = hub.url.replace("127.0.0.1", "localhost")
    with httpx.Client(timeout=30) as http:
        assert http.get(f"{local}/.well-known/oauth-authorization-server").json()["issuer"] == local
    [key] = jwks["keys"]
    assert key["kty"] == "EC" and key["crv"] == "P-256" and key["alg"] == "ES256" and key["kid"]
    assert "d" not in key  # the public half only


def test_the_mcp_listener_serves_it_as_its_own_issuer(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    served = start_hub(
        write_config(tmp_path, TENANTS, auth=auth_section()), tmp_path, "--mcp-port", str(port)
    )
    try:
        other = f"http://127.0.0.1:{port}"
        with httpx.Client(timeout=30) as http:
            meta = http.get(f"{other}/.well-known/oauth-authorization-server").json()
            assert meta["issuer"] == other and meta["authorization_endpoint"] == f"{other}/authorize"
            code, verifier = authorize(http, other, register(http, other, token_endpoint_auth_method="none"))
            assert code and verifier
    finally:
        assert stop_hub(served) == 0


def test_disabled_server_has_no_routes(tmp_path: Path) -> None:
    auth = {"admin_keys": ["admin-key-0123456789"]}
    served = start_hub(write_config(tmp_path, TENANTS, auth=auth), tmp_path)
    try:
        for path in ("/.well-known/oauth-authorization-server", "/oauth/jwks.json", "/oauth/login"):
            assert served.get(path).status == 404
        assert served.post("/register", {"redirect_uris": [REDIRECT]}).status == 404
    finally:
        assert stop_hub(served) == 0


def test_dynamic_registration_is_kept(hub: ServedHub, tmp_path: Path) -> None:
    with httpx.Client(timeout=30) as http:
        client = register(http, hub.url)
        public = register(http, hub.url, token_endpoint_auth_method="none")
        refused = http.post(f"{hub.url}/register", json={"redirect_uris": [REDIRECT], "scope": "nope"})
    assert client["client_id"] and client["client_secret"] and client["redirect_uris"] == [REDIRECT]
    assert "client_secret" not in public
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_client_metadata"
    folder = tmp_path / "data" / "oauth"
    kept = json.loads((folder / "clients.json").read_text())
    assert set(kept) == {client["client_id"], public["client_id"]}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("clients.json", "signing-key.pem"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600


# --------------------------------------------------------------------------- the code flow


def test_code_flow_with_pkce_then_refresh_and_revocation(hub: ServedHub) -> None:
    resource = f"{hub.url}/mcp"
    with httpx.Client(timeout=30) as http:
        client = register(http, hub.url)
        page, _ = login_page(http, hub.url, client["client_id"], code_challenge=pkce()[1], scope="read")
        assert "Test Client" in page and "read" in page and REDIRECT in page  # the consent names them
        code, verifier = authorize(http, hub.url, client, scope="read all", resource=resource)
        wrong = token(
            http,
            hub.url,
            client,
            grant_type="authorization_code",
            code=code,
            code_verifier="x" * 50,
            redirect_uri=REDIRECT,
        )
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
        answer = exchange(http, hub.url, client, code, verifier)
        assert answer.status_code == 200, answer.text
        tokens = answer.json()
        assert exchange(http, hub.url, client, code, verifier).json()["error"] == "invalid_grant"  # one use
        claims = claims_of(http, hub.url, tokens["access_token"])
        assert claims["iss"] == hub.url and claims["sub"] == "alice" and claims["aud"] == resource
        assert claims["tenant"] == "acme" and claims["client_id"] == client["client_id"]
        assert claims["scope"] == "read all" and tokens["scope"] == "read all"
        assert (
            claims["exp"] - claims["iat"] == 3600 == tokens["expires_in"] and claims["nbf"] <= claims["iat"]
        )
        assert claims["jti"]

        refreshed = token(
            http, hub.url, client, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
        )
        assert refreshed.status_code == 200, refreshed.text
        new = refreshed.json()
        assert new["refresh_token"] != tokens["refresh_token"]
        assert claims_of(http, hub.url, new["access_token"])["aud"] == resource
        again = token(
            http, hub.url, client, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
        )
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"  # rotated

        # Revoking the access token revokes the refresh token minted with it.
        auth = {"client_id": client["client_id"], "client_secret": client["client_secret"]}
        assert http.post(f"{hub.url}/revoke", data={**auth, "token": new["access_token"]}).status_code == 200
        gone = token(http, hub.url, client, grant_type="refresh_token", refresh_token=new["refresh_token"])
        assert gone.status_code == 400 and gone.json()["error"] == "invalid_grant"
    log = hub.log()
    for secret in (ALICE_PASSWORD, tokens["refresh_token"], new["refresh_token"], client["client_secret"]):
        assert secret not in log


def test_scopes_are_limited_to_the_users(hub: ServedHub) -> None:
    with httpx.Client(timeout=30) as http:
        client = register(http, hub.url, token_endpoint_auth_method="none")
        code, verifier = authorize(http, hub.url, client, "bob", BOB_PASSWORD, scope="read all")
        tokens = exchange(http, hub.url, client, code, verifier).json()
        claims = claims_of(http, hub.url, tokens["access_token"])
        assert claims["scope"] == "read" and claims["tenant"] == "beta" and claims["aud"] == hub.url
        # bob may grant "read" only: asked for "all" alone, he is told so
        _, fields = login_page(http, hub.url, client["client_id"], code_challenge=pkce()[1], scope="all")
        refused = sign_in(http, hub.url, fields, "bob", BOB_PASSWORD)
        assert refused.status_code == 403 and "may grant none of the scopes asked (all)" in refused.text
        # a refresh token revoked (by the public client: its id only, RFC 7009) no longer works
        auth = {"client_id": client["client_id"]}
        revoked = http.post(f"{hub.url}/revoke", data={**auth, "token": tokens["refresh_token"]})
        assert revoked.status_code == 200
        gone = token(http, hub.url, client, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
        assert gone.status_code == 400 and gone.json()["error"] == "invalid_grant"


def test_a_user_removed_by_a_reload_gets_no_more_tokens(hub: ServedHub, tmp_path: Path) -> None:
    with httpx.Client(timeout=30) as http:
        client = register(http, hub.url)
        code, verifier = authorize(http, hub.url, client, "bob", BOB_PASSWORD)
        tokens = exchange(http, hub.url, client, code, verifier).json()
        auth = auth_section()
        del auth["server"]["users"]["bob"]
        write_config(tmp_path, TENANTS, auth=auth)
        assert hub.post("/api/admin/reload", key="admin-key-0123456789").status == 200
        refused = token(
            http, hub.url, client, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
        )
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
        _, fields = login_page(http, hub.url, client["client_id"], code_challenge=pkce()[1])
        assert sign_in(http, hub.url, fields, "bob", BOB_PASSWORD).status_code == 401


def test_deny_returns_access_denied(hub: ServedHub) -> None:
    with httpx.Client(timeout=30) as http:
        client = register(http, hub.url)
        _, fields = login_page(http, hub.url, client["client_id"], code_challenge=pkce()[1])
        login_page(http, hub.url, client["client_id"], code_challenge=pkce()[1])  # another tab's sign-in
        answer = sign_in(http, hub.url, fields, "", "", action="deny")  # the first tab's form still works
    assert answer.status_code == 302
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["error"] == ["access_denied"] and query["state"] == ["st-1"]


def test_a_browser_signs_in_and_is_sent_back_to_the_client(hub: ServedHub, browser: Any) -> None:
    """Headless Chromium fills the login form and gets back to the client with a code (the MCP
    Inspector's CLI sign-in failed here: under the page's former `Referrer-Policy: no-referrer` a
    browser posts the form with `Origin: null`, which the edge refused with 403)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    back = f"{hub.url}/health"  # any page that answers: the browser must get there with the code
    with httpx.Client(timeout=30) as http:
        client = register(http, hub.url, redirect_uris=[back])
        verifier, challenge = pkce()
        query = {
            "response_type": "code",
            "client_id": client["client_id"],
            "redirect_uri": back,
            "state": "st-b",
        }
        browser.get(str(httpx.URL(f"{hub.url}/authorize", params={**query, "code_challenge": challenge})))
        WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.NAME, "password"))
        browser.find_element(By.NAME, "username").send_keys("alice")
        browser.find_element(By.NAME, "password").send_keys(ALICE_PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "button[value=allow]").click()
        WebDriverWait(browser, 30).until(lambda d: d.current_url.startswith(back))
        returned = parse_qs(urlsplit(browser.current_url).query)
        assert returned["state"] == ["st-b"] and returned["iss"] == [hub.url]
        form = {"grant_type": "authorization_code", "code": returned["code"][0], "code_verifier": verifier}
        answer = token(http, hub.url, client, **form, redirect_uri=back)
        assert answer.status_code == 200, answer.text
        assert claims_of(http, hub.url, answer.json()["access_token"])["sub"] == "alice"


def test_wrong_password_is_shown_and_rate_limited(hub: ServedHub) -> None:
    with httpx.Client(timeout=30) as http:
        client = register(http, hub.url)
        _, fields = login_page(http, hub.url, client["client_id"], code_challenge=pkce()[1])
        for _ in range(5):
            wrong = sign_in(http, hub.url, fields, "alice", "not it")
            assert wrong.status_code == 401 and "Wrong user or password." in wrong.text
            assert 'name="password"' in wrong.text and 'value="alice"' in wrong.text  # the form again
        limited = sign_in(http, hub.url, fields, "alice", ALICE_PASSWORD)  # even the right one, now
        assert limited.status_code == 429 and "Too many failed sign-ins" in limited.text
        assert 0 < int(limited.headers["Retry-After"]) <= 60
        unknown = sign_in(http, hub.url, fields, "mallory", "x")
        assert unknown.status_code == 401 and "Wrong user or password." in unknown.text
        # the CSRF token must come with the form and its cookie
        http.cookies.clear()
        stale = sign_in(http, hub.url, fields, "mallory", "x")
        assert stale.status_code == 400 and "stale" in stale.text
    assert "not it" not in hub.log()


def test_resource_of_another_server_or_tenant_is_refused(hub: ServedHub) -> None:
    with httpx.Client(timeout=30) as http:
        client = register(http, hub.url)
        for resource in (
            "https://elsewhere.example/mcp",
            f"{hub.url}/api/tools",
            f"{hub.url}/tenants/a/b/mcp",
        ):
            query = {"response_type": "code", "client_id": client["client_id"], "redirect_uri": REDIRECT}
            answer = http.get(
                f"{hub.url}/authorize",
                params={**query, "state": "s", "code_challenge": pkce()[1], "resource": resource},
            )
            assert answer.status_code == 302
            error = parse_qs(urlsplit(answer.headers["Location"]).query)
            assert error["error"] == ["invalid_target"] and urlsplit(answer.headers["Location"]).port == 9
        # a resource of beta: alice (of acme) may not grant it
        _, fields = login_page(
            http,
            hub.url,
            client["client_id"],
            code_challenge=pkce()[1],
            resource=f"{hub.url}/tenants/beta/mcp",
        )
        refused = sign_in(http, hub.url, fields, "alice", ALICE_PASSWORD)
        assert refused.status_code == 403 and "cannot give access to tenant beta" in refused.text
        # a tenant that does not exist: told only to a signed-in user, like one of another's
        nope = f"{hub.url}/tenants/nope/mcp"
        _, fields = login_page(http, hub.url, client["client_id"], code_challenge=pkce()[1], resource=nope)
        refused = sign_in(http, hub.url, fields, "alice", ALICE_PASSWORD)
        assert refused.status_code == 403 and "cannot give access to tenant nope" in refused.text
        code, verifier = authorize(http, hub.url, client, resource=f"{hub.url}/tenants/acme/servers/a/mcp")
        access = exchange(http, hub.url, client, code, verifier).json()["access_token"]
        assert claims_of(http, hub.url, access)["aud"] == f"{hub.url}/tenants/acme/servers/a/mcp"


def test_signing_key_and_refresh_tokens_survive_a_restart(tmp_path: Path) -> None:
    config = write_config(tmp_path, TENANTS, auth=auth_section())
    first = start_hub(config, tmp_path)
    try:
        with httpx.Client(timeout=30) as http:
            client = register(http, first.url)
            code, verifier = authorize(http, first.url, client)
            tokens = exchange(http, first.url, client, code, verifier).json()
            kid = http.get(f"{first.url}/oauth/jwks.json").json()["keys"][0]["kid"]
    finally:
        assert stop_hub(first) == 0
    second = start_hub(config, tmp_path, "--port", first.url.rsplit(":", 1)[1])  # the same issuer
    try:
        with httpx.Client(timeout=30) as http:
            assert http.get(f"{second.url}/oauth/jwks.json").json()["keys"][0]["kid"] == kid
            assert claims_of(http, second.url, tokens["access_token"])["sub"] == "alice"
            refreshed = token(
                http, second.url, client, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
            )
            assert refreshed.status_code == 200, refreshed.text
    finally:
        assert stop_hub(second) == 0


# --------------------------------------------------------------------------- end to end


class _Memory:
    """The `TokenStorage` of the SDK's client: in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class _Browser:
    """The user's browser: follows the authorization URL, submits the login form, and hands the
    redirect's code to the client's callback."""

    def __init__(self) -> None:
        self.result: asyncio.Future[AuthorizationCodeResult] = asyncio.get_running_loop().create_future()
        self.pages: list[str] = []

    async def redirect(self, url: str) -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            answer = await http.get(url)
            assert answer.status_code == 302, answer.text
            page = await http.get(answer.headers["Location"])
            self.pages.append(page.text)
            fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page.text))
            form = {**fields, "username": "alice", "password": ALICE_PASSWORD, "action": "allow"}
            signed = await http.post(str(page.url.copy_with(query=None)), data=form)
        assert signed.status_code == 302, signed.text
        query = parse_qs(urlsplit(signed.headers["Location"]).query)
        self.result.set_result(
            AuthorizationCodeResult(code=query["code"][0], state=query["state"][0], iss=query["iss"][0])
        )

    async def callback(self) -> AuthorizationCodeResult:
        return await self.result


@pytest.mark.parametrize("mode", MODES)
def test_the_sdk_oauth_client_signs_in_and_calls_a_tool(tmp_path: Path, mode: str) -> None:
    served = start_hub(write_config(tmp_path, TENANTS, auth=auth_section()), tmp_path)
    try:
        assert served.post("/api/tenants/acme/start", key="admin-key-0123456789").status == 200

        async def run() -> None:
            browser, storage = _Browser(), _Memory()
            metadata = OAuthClientMetadata(redirect_uris=[AnyUrl(REDIRECT)], client_name="SDK client")
            auth = OAuthClientProvider(
                f"{served.url}/mcp", metadata, storage, browser.redirect, browser.callback
            )
            async with (
                httpx.AsyncClient(auth=auth, timeout=30) as http,
                Client(
                    streamable_http_client(f"{served.url}/mcp", http_client=http), mode=mode, cache=None
                ) as client,
            ):
                result = await client.call_tool("a__echo", {"text": "signed in"})
            assert result.structured_content == {"text": "signed in"} and not result.is_error
            assert "SDK client" in browser.pages[0]  # the consent named the client
            assert storage.tokens is not None and storage.client is not None
            with httpx.Client(timeout=30) as sync:
                claims = claims_of(sync, served.url, storage.tokens.access_token)
            assert (
                claims["sub"] == "alice"
                and claims["tenant"] == "acme"
                and claims["aud"] == f"{served.url}/mcp"
            )

        asyncio.run(run())
    finally:
        assert stop_hub(served) == 0


def test_its_tokens_work_on_rest_until_a_reload_disables_it(hub: ServedHub, tmp_path: Path) -> None:
    with httpx.Client(timeout=30) as http:
        client = register(http, hub.url)
        code, verifier = authorize(http, hub.url, client)  # no resource: a token for the whole hub
        access = exchange(http, hub.url, client, code, verifier).json()["access_token"]
        assert hub.get("/api/tenants/acme", key=access).status == 200
        assert hub.get("/api/tenants/beta", key=access).status == 404  # alice's tenant is acme
        write_config(tmp_path, TENANTS, auth=auth_section(enabled=False))
        assert hub.post("/api/admin/reload", key="admin-key-0123456789").status == 200
        assert hub.get("/api/tenants/acme", key=access).status == 401
        assert http.get(f"{hub.url}/oauth/jwks.json").status_code == 404


# --------------------------------------------------------------------------- client metadata documents


class _Documents(BaseHTTPRequestHandler):
    documents: dict[str, bytes] = {}
    hits: list[str] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        body = self.documents.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body or b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def documents() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Documents)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Documents.hits.clear()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def test_client_id_metadata_document(documents: str, tmp_path: Path) -> None:
    good, liar, big = f"{documents}/good.json", f"{documents}/liar.json", f"{documents}/big.json"
    _Documents.documents = {
        "/good.json": json.dumps(
            {"client_id": good, "client_name": "CIMD app", "redirect_uris": [REDIRECT]}
        ).encode(),
        "/liar.json": json.dumps({"client_id": good, "redirect_uris": [REDIRECT]}).encode(),
        "/big.json": json.dumps({"client_id": big, "redirect_uris": [REDIRECT], "x": "y" * 70_000}).encode(),
    }
    config = config_of(TENANTS, auth=auth_section())
    issuer = "http://127.0.0.1:1"

    async def run() -> None:
        provider = HubOAuthProvider(
            lambda: config, lambda: issuer, tmp_path / "oauth", ClientDocuments(allow_http=True)
        )
        client = await provider.get_client(good)
        assert client is not None and client.client_id == good and client.client_name == "CIMD app"
        assert [str(u) for u in client.redirect_uris or ()] == [REDIRECT]
        assert client.token_endpoint_auth_method == "none" and client.client_secret is None
        assert (
            await provider.get_client(good) is not None and _Documents.hits.count("/good.json") == 1
        )  # cached
        assert await provider.get_client(liar) is None  # its client_id is another URL
        assert await provider.get_client(big) is None  # over 64 KiB
        assert await provider.get_client(f"{documents}/missing.json") is None
        served = HubOAuthProvider(lambda: config, lambda: issuer, tmp_path / "oauth")  # what a served hub has
        assert await served.get_client(good) is None  # http, and a loopback host: never fetched
        assert _Documents.hits.count("/good.json") == 1

    asyncio.run(run())


def test_an_issuer_that_is_not_https_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, TENANTS, auth=auth_section())
    for flags, issuer in ((["--host", "0.0.0.0"], "http://0.0.0.0"), ([], "http://hub.example.com")):
        if not flags:
            text = config.read_text().replace("gateway:", "gateway:\n  public_url: http://hub.example.com", 1)
            config.write_text(text)
        done = subprocess.run(
            [sys.executable, "-m", "hub", "serve", "--config", str(config), "--port", "0", *flags],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2
        assert f"its issuer would be {issuer}: an OAuth issuer must be https" in done.stderr


# --------------------------------------------------------------------------- hash-password


def test_hash_password_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hub", "hash-password"],
        input="s3cret pass\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    printed = done.stdout.strip()
    assert re.fullmatch(r"scrypt\$32768\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+", printed)
    assert verify_password(printed, "s3cret pass") and not verify_password(printed, "s3cret pas")
    assert "s3cret" not in printed
    empty = subprocess.run(
        [sys.executable, "-m", "hub", "hash-password"],
        input="\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert empty.returncode == 2 and "empty password" in empty.stderr
    usage = subprocess.run(
        [sys.executable, "-m", "hub", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert "hash-password" in usage.stdout
