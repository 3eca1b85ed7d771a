"""The pieces every operation of the OpenAPI document is built from: the error answers, the
parameters that recur, and `op`, which writes one operation.

Conventions: every error answers `{"error": {"code", "message"}}` (the `Error` schema) through the
reusable responses of `components.responses`; every operation needs a bearer key (`bearer`, applied
globally) except the public ones, which override it with `security: []`. Runs on the web loop, when
`GET /openapi.json` builds the document.
"""

from __future__ import annotations

from typing import Any

JSON = "application/json"

# status -> (component name, description); every one answers the `Error` schema
ERRORS: dict[int, tuple[str, str]] = {
    400: (
        "BadRequest",
        "Malformed JSON (also: nested over 128 levels, `NaN`, an integer over 4,300 digits), text "
        "that is not valid Unicode (a lone surrogate), a bad parameter, or arguments that fail the "
        "tool's `inputSchema`.",
    ),
    401: ("Unauthorized", "Missing or wrong key (`Authorization: Bearer <key>`), or a refused access token."),
    404: ("NotFound", "Unknown, or belongs to another tenant (never told apart)."),
    409: (
        "NotRunning",
        "The server exists but is not running (`server_not_running`); or, for a tool call with an "
        "`Idempotency-Key`, the same call was received before and its tool is not marked read-only or "
        "idempotent, so it is not run twice (`duplicate_call`); or, for a configuration edit, the file "
        "was edited by hand since the hub read it (`config_changed_on_disk`) or cannot be written "
        "(`config_read_only`); or the tool changed since an admin approved it and `pinning: enforce` "
        "holds it (`tool_pending_approval`); or an approval of pinned tools that are as approved "
        "already (`nothing_pending`).",
    ),
    412: (
        "PreconditionFailed",
        "`If-Match` names a configuration other than the one the hub serves: it changed since it was "
        "read; or the tools an admin approves or rejects changed again since the `digest` they name "
        "(`precondition_failed`).",
    ),
    422: (
        "IdempotencyKeyReused",
        "The `Idempotency-Key` was used for another call (another tool or other arguments).",
    ),
    413: ("PayloadTooLarge", "The body is larger than `gateway.max_body_bytes`."),
    429: ("QuotaExceeded", "A tenant quota or rate limit was hit; retry after `Retry-After` seconds."),
    502: ("UpstreamError", "The MCP server failed, died or broke the protocol."),
    503: (
        "Unavailable",
        "The hub is shutting down and takes no new work (`shutting_down`), or holds as many "
        "connections as `gateway.max_connections` / `max_connections_per_client` allow "
        "(`too_many_connections`).",
    ),
    403: (
        "OriginNotAllowed",
        "A request with an `Origin` that is neither the hub's own nor in `gateway.allowed_origins`; "
        "or (`user_required`) a user's own credentials asked by a caller that acts for no user.",
    ),
    500: (
        "CredentialsUnavailable",
        "Per-user credentials cannot be read: `HUB_SECRET_KEY` is not set (`no_secret_key`) or is not "
        "the one they were stored with (`credentials_unreadable`; docs/security.md).",
    ),
    421: (
        "HostNotAllowed",
        "A `Host` the hub does not answer to: not loopback, the bound address or in "
        "`gateway.allowed_hosts` (a guard against DNS rebinding).",
    ),
    431: ("HeadersTooLarge", "The request's header block is larger than 64 KiB."),
    504: ("Timeout", "The MCP server did not answer within the call timeout."),
}

# errors every authenticated operation can answer, and what the MCP servers add when asked
AUTH = (401, 503)
UPSTREAM = (409, 429, 502, 504)
# what the edge answers on every route before any handler (web/edge.py, web/sizes.py)
EDGE = (403, 421, 431)


def ref(name: str) -> dict[str, Any]:
    """A reference to the component schema `name` (a type of `web.responses`)."""
    return {"$ref": f"#/components/schemas/{name}"}


# --------------------------------------------------------------------------- operation helpers


def json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON answer of `schema`."""
    return {"description": description, "content": {JSON: {"schema": schema}}}


def returns(component: str, description: str) -> dict[str, Any]:
    """A JSON answer of the component schema `component`."""
    return json_response(description, ref(component))


def raw_response(description: str, media_type: str = "*/*") -> dict[str, Any]:
    """An answer that is not JSON: a page, a file, a text format."""
    return {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}


def path_param(name: str, description: str) -> dict[str, Any]:
    """A required path parameter (a string)."""
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    """A query parameter."""
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


TENANT = path_param("tenant", "Tenant name.")
SERVER = path_param("server", "Server name within the tenant.")
TENANT_QUERY = query("tenant", {"type": "string"}, "Only this tenant (must be visible to the key, else 404).")
SESSION = {
    "name": "Mcp-Hub-Session",
    "in": "header",
    "required": False,
    "description": "A client session id of your choice (1-128 visible ASCII characters), scoped to the key: "
    "calls of a `per_session` server then run on that session's own instance (started by its first call, "
    "stopped after `idle_timeout` or by `DELETE /api/sessions/{session}`). Without it, the server's "
    "shared instance answers.",
    "schema": {"type": "string"},
}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "A key unique to this call (1-255 printable ASCII characters; a Structured Field "
    'string, `"..."`, is taken without its quotes; a UUID does), remembered per tenant for 10 minutes, '
    "so that this request may be sent again safely: by the client, or by a load balancer whose replica "
    "died before answering (config/haproxy.cfg sends such keyed requests to another replica). Sent "
    "again, the same call runs again if its tool is annotated `readOnlyHint` or `idempotentHint`, and "
    "is answered 409 `duplicate_call` otherwise (it may already have run); the key with another call "
    "is 422 `idempotency_key_reused`. A call that failed before reaching its server (400, 404, 409 "
    "`server_not_running`, 429, 503) does not keep its key.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
TOOL_CALL_HEADERS = (SESSION, IDEMPOTENCY_KEY)
MCP_IDEMPOTENCY_KEY = {
    **IDEMPOTENCY_KEY,
    "description": "On a POST whose body is one `tools/call`, as on `POST /api/tools/{name}`: a key unique "
    "to this call, remembered per tenant for 10 minutes, so that the request may be sent again safely "
    "(MCP clients send none: config/haproxy.cfg sets one, a UUID, on a tool call that carries none). "
    "Sent again, the same call runs again if its tool is annotated `readOnlyHint` or `idempotentHint`; "
    "otherwise it is answered with a tool result with `isError` whose text begins `duplicate_call: ` "
    "(it may already have run), and the key with another call with one beginning "
    "`idempotency_key_reused: `; a bad key is a JSON-RPC error -32602 (HTTP 400 in 2026-07-28). "
    "Ignored on every other request.",
}
FACADE_TENANT = query(
    "tenant",
    {"type": "string"},
    "The tenant served: an admin key may name any (default `default`); a tenant key is "
    "served its own and may name only that one (another, existing or not, is 404).",
)


def mcp_parameters(method: str, tenant: bool, server: bool) -> list[dict[str, Any]]:
    """The parameters of a facade endpoint's `method`: its tenant (in the path if `tenant`, else
    `?tenant=`) and server (if `server`), and a POST's `Idempotency-Key`."""
    where = ([TENANT, SERVER] if server else [TENANT]) if tenant else [FACADE_TENANT]
    return [*where, *([MCP_IDEMPOTENCY_KEY] if method == "post" else [])]


WAIT = query(
    "wait",
    {"type": "string", "enum": ["true", "false"], "default": "true"},
    "`false` answers at once instead of waiting until the server runs or has failed.",
)
APP = path_param("app_id", "App id (its folder name).")
TOKEN = query("token", {"type": "string"}, "The key, for a browser that cannot send a header.")
# (a request that is not a WebSocket upgrade is answered 400)
WEBSOCKET = {
    "description": "Switching to the WebSocket protocol (101): JSON text frames `{type, id?, data}`."
}


def op(
    operation_id: str,
    summary: str,
    tag: str,
    ok: dict[str, Any],
    errors: tuple[int, ...] = (),
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    public: bool = False,
    description: str | None = None,
) -> dict[str, Any]:
    """One operation: a 200 answer `ok`, the listed error statuses, and (unless `public`) 401."""
    codes = set(errors) | set(EDGE) | ({503} if public else set(AUTH))
    if body is not None:
        codes |= {400, 413}
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if description:
        operation["description"] = description
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
    operation["responses"] = {"200": ok} | {
        str(code): {"$ref": f"#/components/responses/{ERRORS[code][0]}"} for code in sorted(codes)
    }
    if public:
        operation["security"] = []
    return operation


def arguments_body(description: str, values: dict[str, Any] | None = None) -> dict[str, Any]:
    """An optional JSON object body of arguments (each of schema `values`, default any)."""
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": values if values is not None else True,
    }
    return {"required": False, "description": description, "content": {JSON: {"schema": schema}}}


def error_response(status: int) -> dict[str, Any]:
    """The reusable response (`components.responses`) of error status `status`."""
    description = ERRORS[status][1]
    response = json_response(description, ref("Error"))
    if status == 429:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before trying again.",
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    if status == 401:
        response["headers"] = {
            "WWW-Authenticate": {
                "description": '`Bearer realm="mcp-hub"`; with OAuth configured, also '
                "`resource_metadata` (the URL of the protected resource metadata of the path, RFC "
                '9728) and, when a credential was sent, `error="invalid_token"` and '
                "`error_description`.",
                "schema": {"type": "string"},
            }
        }
    return response
