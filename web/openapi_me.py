"""The operations of `/api/me/...` in the OpenAPI document (beside `web.openapi_paths`, which
`web.openapi` joins them with): the caller's own credentials for per_user servers. Runs on the web
loop, when `GET /openapi.json` builds the document.
"""

from __future__ import annotations

from typing import Any

from web.openapi_ops import JSON, TENANT_QUERY, op, path_param, raw_response, returns

_SERVER = path_param("server", "A per_user server of the caller's tenant.")
_SHOWN = "Which variables of the server's `user_env` the caller has set (never their values)."
_TENANT = {
    **TENANT_QUERY,
    "description": "An admin key's tenant (default `default`); a tenant key may name only its own.",
}
_ABOUT = (
    "The caller is the user its key acts for (the key's `subject`, else its id) or its token's "
    "subject. A server that is not an enabled per_user server of the caller's tenant is 404; a "
    "caller that acts for no user (an open hub) is 403 `user_required`. Values are stored "
    "encrypted (AES-256-GCM, key from `HUB_SECRET_KEY`) and never returned: 500 "
    "`credentials_unreadable` when they no longer decrypt (the key changed: DELETE, then set them again)."
)


def me_paths() -> dict[str, Any]:
    """`/api/me/credentials/{server}`: GET, PUT and DELETE."""
    body = {
        "required": True,
        "description": "Variables of the server's `user_env` and their values (merged with what is set).",
        "content": {
            JSON: {
                "schema": {
                    "type": "object",
                    "additionalProperties": {"type": "string", "minLength": 1},
                    "minProperties": 1,
                }
            }
        },
    }
    params = [_SERVER, _TENANT]
    page = raw_response("The page (HTML); it asks for the user's key and calls the API above.", "text/html")
    return {
        "/me/credentials/{server}": {
            "get": op(
                "getMyCredentialsPage",
                "A page where I set my variables",
                "me",
                page,
                public=True,
                parameters=[_SERVER],
                description="Public: the page holds no data. It asks for the user's key (kept in the "
                "tab's sessionStorage), shows which variables are set and takes new values in password "
                "fields, never prefilled. Tool errors and URL-mode elicitations point users here.",
            )
        },
        "/me/me.js": {
            "get": op(
                "getMyCredentialsScript",
                "The script of that page",
                "me",
                raw_response("The script (JavaScript).", "text/javascript"),
                public=True,
            )
        },
        "/api/me/credentials/{server}": {
            "get": op(
                "getMyCredentials",
                "Which of my variables are set",
                "me",
                returns("Credentials", _SHOWN),
                (404, 500),
                params,
                description=_ABOUT,
            ),
            "put": op(
                "setMyCredentials",
                "Set my variables",
                "me",
                returns("Credentials", _SHOWN),
                (404, 500),
                params,
                body,
                description="A name the server does not declare in `user_env` is 400. Stops the caller's "
                "running instance of the server: the next call starts one with the new values. " + _ABOUT,
            ),
            "delete": op(
                "forgetMyCredentials",
                "Forget my variables",
                "me",
                returns("Credentials", _SHOWN),
                (404,),
                params,
                description="Forgets every value (even those that no longer decrypt) and stops the "
                "caller's running instance. " + _ABOUT,
            ),
        },
    }
