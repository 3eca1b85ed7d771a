"""The OpenAPI document (`web.openapi.document`) is valid OpenAPI 3.1, matches `web.app.ROUTES`, and
real answers of a running hub match the schemas it names for them."""

from __future__ import annotations

import itertools
import re
from typing import Any

import jsonschema
import pytest
from conftest import SERVERS_DIR, binds, server
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from web.app import ROUTES
from web.openapi import document

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PUBLIC = {
    "/",
    "/health",
    "/openapi.json",
    "/ui-host/{file}",
    "/admin/{path}",
    "/.well-known/oauth-protected-resource",
    "/.well-known/oauth-protected-resource/mcp",
    "/.well-known/oauth-protected-resource/tenants/{tenant}/mcp",
    "/.well-known/oauth-protected-resource/tenants/{tenant}/servers/{server}/mcp",
    # the built-in authorization server's (OAuth's own client authentication applies)
    "/.well-known/oauth-authorization-server",
    "/authorize",
    "/token",
    "/register",
    "/revoke",
    "/oauth/jwks.json",
    "/oauth/login",
    "/me/credentials/{server}",
    "/me/me.js",
}
ONLY_DOCUMENTED: set[str] = set()  # paths documented without a handler in web.app.ROUTES


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return document("9.9.9")


def _expand(pattern: str) -> list[str]:
    """The literal path shapes a route pattern matches: `(a|b)` alternatives become separate paths,
    each `([^/]+)` group a `{}` placeholder."""
    pattern = pattern.replace("([^/]+)", "{}").replace("(.+)", "{}").removesuffix("/?")
    parts = re.split(r"\(([^()]*\|[^()]*)\)", pattern)
    literals, choices = parts[0::2], [p.split("|") for p in parts[1::2]]
    out = []
    for picked in itertools.product(*choices):
        path = literals[0] + "".join(c + lit for c, lit in zip(picked, literals[1:], strict=True))
        assert "(" not in path and "\\" not in path, f"unexpanded regex in {pattern!r}"
        out.append(path)
    return out


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(p, m, op) for p, item in doc["paths"].items() for m, op in item.items() if m in HTTP_METHODS]


def _resolve(doc: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in obj:
        ref = obj["$ref"]
        assert ref.startswith("#/"), ref
        obj = doc
        for key in ref[2:].split("/"):
            obj = obj[key]
    return obj


def test_expand_helper() -> None:
    assert _expand(r"/api/x/([^/]+)/(start|stop)") == ["/api/x/{}/start", "/api/x/{}/stop"]
    assert _shape("/api/servers/{tenant}/{server}") == "/api/servers/{}/{}"


# --------------------------------------------------------------------------- (a) validity


def test_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["version"] == "9.9.9"
    validate(doc, cls=OpenAPIV31SpecValidator)
    validate(doc)  # the default (detected from `openapi`) agrees


def test_document_is_fresh_each_call() -> None:
    first = document("1")
    first["paths"].clear()
    assert document("1")["paths"]


def test_operation_ids_are_unique(doc: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in _operations(doc)]
    assert len(ids) == len(set(ids))


def test_path_parameters_match_templates(doc: dict[str, Any]) -> None:
    for path, method, op in _operations(doc):
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"\{([^}]+)\}", path)), f"{method.upper()} {path}"


# --------------------------------------------------------------------------- (b) routes


def test_every_route_is_documented_with_its_methods(doc: dict[str, Any]) -> None:
    by_shape = {_shape(p): p for p in doc["paths"]}
    assert len(by_shape) == len(doc["paths"]), "two documented paths have the same shape"
    for pattern, handler in ROUTES:
        methods = {m.lower() for m in handler.allowed_methods()}
        assert methods, f"{handler.__name__} implements no method"
        for path in _expand(pattern):
            assert path in by_shape, f"route {pattern!r} ({handler.__name__}): {path} is not documented"
            documented = {m for m in doc["paths"][by_shape[path]] if m in HTTP_METHODS}
            assert documented == methods, f"{by_shape[path]}: documented {documented}, implemented {methods}"


def test_every_documented_path_has_a_route(doc: dict[str, Any]) -> None:
    routed = {path for pattern, _ in ROUTES for path in _expand(pattern)}
    for path in doc["paths"]:
        if path in ONLY_DOCUMENTED:
            continue
        assert _shape(path) in routed, f"{path} is documented but no route serves it"


def test_named_templates_and_queries(doc: dict[str, Any]) -> None:
    paths = doc["paths"]

    def query(path: str, method: str) -> dict[str, dict[str, Any]]:
        return {p["name"]: p for p in paths[path][method].get("parameters", []) if p["in"] == "query"}

    for expected in (
        "/api/tenants/{tenant}",
        "/api/tenants/{tenant}/start",
        "/api/tenants/{tenant}/stop",
        "/api/servers/{tenant}/{server}/restart",
        "/api/tools/{name}/call",
        "/api/tools/{name}",
        "/api/tenants/{tenant}/prompts/{name}",
    ):
        assert expected in paths
    assert query("/api/tenants/{tenant}/resources/read", "get")["uri"]["required"] is True
    assert query("/api/tenants/{tenant}/resources/read", "get")["server"]["required"] is False
    assert "tail" in query("/api/servers/{tenant}/{server}/logs", "get")
    for path in ("/api/tenants", "/api/tools", "/api/servers"):
        assert "tenant" in query(path, "get")
    for path in ("/api/tools/{name}/call", "/api/tools/{name}"):
        assert "tenant" in query(path, "post")
        body = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body["type"] == "object"
        assert _resolve(doc, paths[path]["post"]["responses"]["200"])["content"]["application/json"][
            "schema"
        ] == {"$ref": "#/components/schemas/ToolResult"}
    for action in ("start", "restart"):
        assert "wait" in query(f"/api/servers/{{tenant}}/{{server}}/{action}", "post")
    assert "wait" in query("/api/tenants/{tenant}/start", "post")
    assert "wait" not in query("/api/servers/{tenant}/{server}/stop", "post")
    assert list(paths["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]


# --------------------------------------------------------------------------- (c) errors and security


def test_every_error_response_uses_the_error_schema(doc: dict[str, Any]) -> None:
    error = {"$ref": "#/components/schemas/Error"}
    for path, method, op in _operations(doc):
        errors = {code: r for code, r in op["responses"].items() if code[0] in "45"}
        assert errors, f"{method.upper()} {path} documents no error"
        assert "503" in errors, f"{method.upper()} {path}: every request can meet a draining hub"
        for code, response in errors.items():
            content = _resolve(doc, response).get("content", {})
            assert list(content) == ["application/json"], f"{method.upper()} {path} {code}"
            assert content["application/json"]["schema"] == error, f"{method.upper()} {path} {code}"


def test_error_schema_and_reusable_responses(doc: dict[str, Any]) -> None:
    components = doc["components"]
    schema = components["schemas"]["Error"]
    assert schema["required"] == ["error"]
    assert set(schema["properties"]["error"]["required"]) == {"code", "message"}
    responses = components["responses"]
    codes = {"400", "401", "403", "404", "409", "412", "413", "421", "422", "429", "431"}
    codes |= {"500", "502", "503", "504"}
    refs = {
        op["responses"][c]["$ref"] for _, _, op in _operations(doc) for c in op["responses"] if c in codes
    }
    assert {r.rsplit("/", 1)[1] for r in refs} == set(responses)
    assert "Retry-After" in responses["QuotaExceeded"]["headers"]
    for _, _, op in _operations(doc):
        if "429" in op["responses"]:
            assert op["responses"]["429"] == {"$ref": "#/components/responses/QuotaExceeded"}
    # A tool call documents its Idempotency-Key header and the answers it adds (409, 422).
    for path in ("/api/tools/{name}", "/api/tools/{name}/call"):
        call = doc["paths"][path]["post"]
        headers = {p["name"] for p in call["parameters"] if p["in"] == "header"}
        assert {"Idempotency-Key", "Mcp-Hub-Session"} <= headers and {"409", "422"} <= set(call["responses"])


def test_component_schemas(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert set(schemas["ToolResult"]["properties"]) == {"tool", "is_error", "content", "structured_content"}
    assert set(schemas["Tool"]["properties"]) == {
        "name",
        "tenant",
        "server",
        "title",
        "description",
        "input_schema",
        "output_schema",
    }
    status = schemas["ServerStatus"]
    assert {"state", "pid", "restarts", "last_error", "type", "enabled", "description"} <= set(
        status["required"]
    )
    assert "tool_names" in status["properties"] and "tool_names" not in status["required"]
    assert set(schemas["Tenant"]["properties"]) == {
        "name",
        "description",
        "quotas",
        "hidden_tools",
        "servers",
    }


def test_components_are_the_response_types(doc: dict[str, Any]) -> None:
    from web.openapi_schemas import COMPONENTS

    assert set(doc["components"]["schemas"]) == set(COMPONENTS)
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            refs.extend([node["$ref"]] if isinstance(node.get("$ref"), str) else [])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert refs
    for ref in refs:  # every reference resolves (none to a type written inline)
        assert _resolve(doc, {"$ref": ref}), ref


def test_security(doc: dict[str, Any]) -> None:
    assert doc["security"] == [{"bearer": []}]
    assert doc["components"]["securitySchemes"]["bearer"] == {
        **doc["components"]["securitySchemes"]["bearer"],
        "type": "http",
        "scheme": "bearer",
    }
    for path, method, op in _operations(doc):
        if path in PUBLIC:
            assert op.get("security") == [], f"{method.upper()} {path} must be public"
            assert "401" not in op["responses"]
        else:
            assert "security" not in op, f"{method.upper()} {path} must use the global bearer"
            assert "401" in op["responses"], f"{method.upper()} {path} must document 401"


def test_public_flags_agree_with_handlers(doc: dict[str, Any]) -> None:
    public_routes = {path for pattern, h in ROUTES if h.public for path in _expand(pattern)}
    assert public_routes == {_shape(p) for p in PUBLIC - ONLY_DOCUMENTED}


# --------------------------------------------------------------------------- (d) real answers


def _answer_schema(doc: dict[str, Any], path: str, method: str, status: str = "200") -> dict[str, Any]:
    """The JSON Schema the document names for an answer, made standalone (its `$ref`s resolve
    against the document's components)."""
    response = _resolve(doc, doc["paths"][path][method]["responses"][status])
    return {**response["content"]["application/json"]["schema"], "components": doc["components"]}


@pytest.mark.slow
def test_real_answers_match_their_schemas(served: Any) -> None:
    greeter = {"command": "python", "args": [str(SERVERS_DIR / "uiserver.py")], "sandbox": binds(SERVERS_DIR)}
    tenant = {"servers": {"t": server("--template"), "ps": server(per_session=True), "g": greeter}}
    hub = served({"default": tenant})
    doc = hub.get("/openapi.json").body
    session = {"Mcp-Hub-Session": "alpha"}  # a session instance of `ps`, listed in /api/servers
    assert hub.request("POST", "/api/tools/ps.echo", {"text": "hi"}, headers=session).status == 200
    asked = [
        ("GET", "/", "/", None),
        ("GET", "/health", "/health", None),
        ("GET", "/api/tenants", "/api/tenants", None),
        ("GET", "/api/tenants/default", "/api/tenants/{tenant}", None),
        ("GET", "/api/servers", "/api/servers", None),
        ("GET", "/api/servers/default/t", "/api/servers/{tenant}/{server}", None),
        ("GET", "/api/tools", "/api/tools", None),
        ("GET", "/api/tenants/default/resources", "/api/tenants/{tenant}/resources", None),
        ("GET", "/api/tenants/default/prompts", "/api/tenants/{tenant}/prompts", None),
        ("POST", "/api/tools/t.echo", "/api/tools/{name}", {"text": "hi"}),
        ("POST", "/api/tools/t.fail/call", "/api/tools/{name}/call", {}),
        ("GET", "/api/servers/default/t/logs", "/api/servers/{tenant}/{server}/logs", None),
        ("GET", "/api/apps", "/api/apps", None),  # an MCP App: the greeter's tool `greet`
        ("GET", "/api/apps/ui:default:g.greet", "/api/apps/{app_id}", None),
    ]
    for method, url, path, body in asked:
        answer = hub.request(method, url, body)
        assert answer.status == 200, (url, answer.text)
        jsonschema.validate(answer.body, _answer_schema(doc, path, method.lower()))
    servers = {s["server"]: s for s in hub.get("/api/servers").body["servers"]}
    assert servers["ps"]["instances"], "the session instance is listed (and so was checked)"
    assert hub.post("/api/tools/t.fail/call", {}).body["is_error"] is True
    missing = hub.get("/api/tenants/nope")
    assert missing.status == 404
    jsonschema.validate(missing.body, _answer_schema(doc, "/api/tenants/{tenant}", "get", "404"))
    wrong = {**hub.get("/api/tenants/default").body, "hidden_tools": "none"}
    with pytest.raises(jsonschema.ValidationError):  # the schemas do reject a wrong answer
        jsonschema.validate(wrong, _answer_schema(doc, "/api/tenants/{tenant}", "get"))
