"""The operations of pinned tools in the OpenAPI document (beside `web.openapi_paths`, which
`web.openapi` joins them with). Runs on the web loop, when `GET /openapi.json` builds the document.
"""

from __future__ import annotations

from typing import Any

from web.openapi_ops import JSON, SERVER, TENANT, op, returns

_ABOUT = (
    'Pinned tools (docs/security.md, "Pinned tools"): the digests of the server\'s approved tools, '
    "whether what it shows now differs (`state`), the tools `pinning: enforce` holds, and the diff "
    "per tool with each changed field before and after."
)
_BODY = {
    "required": False,
    "description": "Optionally, the `digest` of the diff the admin saw: if the server shows another "
    "catalog since, nothing changes and the answer is 412.",
    "content": {
        JSON: {
            "schema": {
                "type": "object",
                "properties": {"digest": {"type": "string"}},
                "additionalProperties": False,
            }
        }
    },
}


def _decision(action: str, summary: str, description: str) -> dict[str, Any]:
    return {
        "post": op(
            f"{action}Pins",
            summary,
            "servers",
            returns("Pins", "The server's pins after the decision."),
            (404, 409, 412),
            [TENANT, SERVER],
            _BODY,
            description=description + " Admin key only (another key: 404). Audited with who.",
        )
    }


def pins_paths() -> dict[str, Any]:
    """`/api/servers/{tenant}/{server}/pins` and its approve and reject."""
    return {
        "/api/servers/{tenant}/{server}/pins": {
            "get": op(
                "getPins",
                "A server's pinned tools and their pending diff",
                "servers",
                returns("Pins", "The pins, the state and the diff."),
                (404,),
                [TENANT, SERVER],
                description=_ABOUT + " An admin key, or a key of the tenant (which sees only the "
                "tools its grants allow).",
            )
        },
        "/api/servers/{tenant}/{server}/pins/approve": _decision(
            "approve",
            "Approve a server's changed tools",
            "Pin the catalog the server shows now: its held tools are listed and callable at once "
            "(clients hear `list_changed`). 409 `nothing_pending` if it shows what is pinned already.",
        ),
        "/api/servers/{tenant}/{server}/pins/reject": _decision(
            "reject",
            "Reject a server's changed tools",
            "Keep the pins: the changed tools stay held (under `enforce`) until the server shows the "
            "approved tools again; the state says `rejected` until it shows yet another catalog.",
        ),
    }
