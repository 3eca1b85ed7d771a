"""The OpenAPI operations of the built-in OAuth 2.1 authorization server (`auth.server`).

These routes speak OAuth, not the hub's REST dialect: their answers and errors are the OAuth
shapes (RFC 6749, 7009, 7591, 8414), written by the `mcp` SDK's handlers (`web.oauth_server`), so
each operation describes its answer inline. All are public (OAuth's own client authentication
applies) and 404 while `auth.server.enabled` is false. Runs on the web loop, when
`GET /openapi.json` builds the document.
"""

from __future__ import annotations

from typing import Any

from web.openapi_ops import json_response, op, query, raw_response

_FORM = "application/x-www-form-urlencoded"
_OBJECT: dict[str, Any] = {"type": "object"}


def _form(description: str, *fields: str) -> dict[str, Any]:
    properties = {name: {"type": "string"} for name in fields}
    schema = {"type": "object", "properties": properties}
    return {"required": True, "description": description, "content": {_FORM: {"schema": schema}}}


def _oauth(operation_id: str, summary: str, ok: dict[str, Any], **more: Any) -> dict[str, Any]:
    return op(operation_id, summary, "oauth", ok, (404,), public=True, **more)


def _authorize() -> dict[str, Any]:
    params = [
        query(name, {"type": "string"}, what, required)
        for name, what, required in (
            ("response_type", "`code`.", True),
            ("client_id", "A registered client's id, or the https URL of its metadata document.", True),
            ("redirect_uri", "One of the client's redirect URIs.", False),
            ("code_challenge", "PKCE S256 challenge.", True),
            ("code_challenge_method", "`S256`.", False),
            ("state", "Returned as is.", False),
            ("scope", "Space-separated scopes of `auth.scopes`.", False),
            ("resource", "RFC 8707: one of the hub's resource URLs (else `invalid_target`).", False),
        )
    ]
    found = raw_response("Not used: the answer is a 302 to the login page, or to the client with an error.")
    return {
        "get": _oauth(
            "oauthAuthorize", "Start an authorization (redirects to the login page)", found, parameters=params
        ),
        "post": _oauth("oauthAuthorizeForm", "The same, as a form", found, body=_form("The same fields.")),
    }


def oauth_server_paths() -> dict[str, Any]:
    """The authorization server's paths."""
    token = json_response(
        "Tokens (`access_token`, `refresh_token`, `expires_in`, `scope`), or an OAuth error (400, 401).",
        _OBJECT,
    )
    login_page = raw_response("The login and consent page (HTML).", "text/html")
    login_body = _form("The login form.", "request", "csrf", "username", "password", "action")
    return {
        "/.well-known/oauth-authorization-server": {
            "get": _oauth(
                "oauthMetadata",
                "Authorization server metadata (RFC 8414)",
                json_response("The metadata.", _OBJECT),
            )
        },
        "/authorize": _authorize(),
        "/token": {
            "post": _oauth(
                "oauthToken",
                "Exchange a code or a refresh token",
                token,
                body=_form(
                    "RFC 6749 token request.",
                    "grant_type",
                    "code",
                    "code_verifier",
                    "redirect_uri",
                    "refresh_token",
                    "client_id",
                    "client_secret",
                    "scope",
                    "resource",
                ),
            )
        },
        "/register": {
            "post": _oauth(
                "oauthRegister",
                "Register a client (RFC 7591)",
                json_response("201: the client (its id, and a secret unless it asked for `none`).", _OBJECT),
                body={"required": True, "content": {"application/json": {"schema": _OBJECT}}},
            )
        },
        "/revoke": {
            "post": _oauth(
                "oauthRevoke",
                "Revoke a token (RFC 7009)",
                raw_response("Revoked (or unknown)."),
                body=_form(
                    "RFC 7009 revocation request.", "token", "token_type_hint", "client_id", "client_secret"
                ),
            )
        },
        "/oauth/jwks.json": {
            "get": _oauth(
                "oauthJwks",
                "The public keys access tokens are signed with",
                json_response("A JWK Set.", _OBJECT),
            )
        },
        "/oauth/login": {
            "get": _oauth(
                "oauthLoginPage",
                "The login and consent page",
                login_page,
                parameters=[query("request", {"type": "string"}, "The pending authorization.", True)],
            ),
            "post": _oauth(
                "oauthLogin",
                "Sign in and allow (302 to the client), or deny",
                login_page,
                body=login_body,
                description="A wrong password shows the page again (401); 5 a minute per user and address, "
                "then 429; a user who may not grant what is asked: 403.",
            ),
        },
    }
