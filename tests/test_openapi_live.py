"""The OpenAPI document against a live hub: schemathesis sends generated requests to every operation
of a real `python -m hub serve` and checks each answer: never a 5xx, a status the document lists,
a body its schema accepts, the content type and headers (`Retry-After`, `WWW-Authenticate`) it
documents.

The hub has an admin key (which the requests carry: negative cases may spoil it), test servers that
do real work (tools, prompts, resources, an MCP App with a `ui://` view, an on_demand server, an
unreachable one) and the example app. Valid parameter values are steered to those real names (in a
copy of the document; the answers are checked against the hub's own), so positive cases reach real
tenants, servers, tools and files and negative cases send everything else. Every operation runs,
reload and stops included (stops last); cases are derandomized, so every run sends the same.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from conftest import SERVERS_DIR, binds, server
from helpers.registry import ServedRegistry, serve_registry
from helpers.served import ACME_KEY, ADMIN_KEY, start_hub, stop_hub, write_config
from schemathesis.checks import CHECKS as REGISTERED
from schemathesis.checks import load_all_checks

load_all_checks()  # (registers the OpenAPI checks, which are then found by their CLI names)
CHECKS = REGISTERED.get_by_names(
    [
        "not_a_server_error",
        "status_code_conformance",
        "response_schema_conformance",
        "content_type_conformance",
        "response_headers_conformance",
    ]
)
# The MCP facade speaks the MCP specification's Streamable HTTP, whose errors are JSON-RPC bodies
# (not the REST `Error`, which tests/test_openapi.py requires of every documented error): there,
# only that it never fails with a 5xx (the facade's own tests check the protocol).
MCP_CHECKS = REGISTERED.get_by_names(["not_a_server_error"])
MAX_EXAMPLES = 6  # per operation and mode: the whole test takes under a minute or so on 2 cores
# The values valid data takes for each parameter, by where and name: real tenants, servers, tools,
# prompts and files, so that positive cases do real work (negative cases send anything else).
REAL = {
    ("path", "tenant"): ["default", "beta"],
    ("path", "tenant_id"): ["default"],
    ("path", "server"): ["a", "b", "g"],  # (not `down`: each start would wait out its startup_timeout)
    ("path", "name"): ["a.echo", "b.echo", "a.fail"],  # tools (prompts: PROMPTS)
    ("path", "app_id"): ["sql-console", "ui:default:g.greet"],
    ("path", "path"): ["admin.js", "index.html"],
    ("path", "file"): ["host.js", "host.css"],
    ("path", "tool"): ["greet"],
    ("query", "tenant"): ["default", "beta"],
    ("query", "uri"): ["test://info", "test://echo/hi"],
}
PROMPTS = ["a.greet", "b.greet"]
# The arguments of the test server's tool `echo {text}` and prompt `greet {name}`.
TOOL_ARGUMENTS = {
    "type": "object",
    "properties": {"text": {"type": "string"}},
    "required": ["text"],
    "additionalProperties": False,
}
PROMPT_ARGUMENTS = {**TOOL_ARGUMENTS, "properties": {"name": {"type": "string"}}, "required": ["name"]}
UI_SERVER = str(SERVERS_DIR / "uiserver.py")
PLUGINS = Path(__file__).resolve().parent.parent / "plugins" / "examples"


def _tenants() -> dict[str, Any]:
    return {
        "default": {
            "api_keys": [ACME_KEY],
            "servers": {
                "a": server("--template"),
                # an MCP App (tool `greet` with a `ui://` view): /ui/... hosts it, /api/apps lists it
                "g": {"command": "python", "args": [UI_SERVER], "sandbox": binds(SERVERS_DIR)},
            },
        },
        "beta": {
            "servers": {
                "b": server(lifecycle="on_demand"),
                "down": {"transport": "http", "url": "http://127.0.0.1:9/mcp"},
            }
        },
    }


def _steered(document: dict[str, Any]) -> dict[str, Any]:
    """`document` with the real values as the only valid ones of its parameters and bodies (a copy:
    the answers are checked against the hub's own document, which this changes nowhere else)."""
    document = copy.deepcopy(document)
    for path, item in document["paths"].items():
        prompt = "/prompts/" in path
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                values = REAL.get((parameter["in"], parameter["name"]))
                if values:
                    values = PROMPTS if prompt and parameter["name"] == "name" else values
                    parameter["schema"] = {"type": "string", "enum": values}
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:
                body["schema"] = PROMPT_ARGUMENTS if prompt else TOOL_ARGUMENTS
    return document


def _last_the_stops(operation: Any) -> int:
    """Stops go last, so that calls before them meet running servers; and after them, what may
    remove tenants and servers from the configuration (the configuration editor, a restore)."""
    if operation.path.startswith("/api/admin/tenants") and operation.method.upper() in ("PUT", "DELETE"):
        return 2
    if operation.path.startswith("/api/admin/restore"):
        return 2
    return 1 if operation.path.endswith("/stop") else 0


def _exercise(operation: Any, session: requests.Session, failures: list[str]) -> Counter[int]:
    """Send the generated cases of `operation` (positive, then negative data); each failed check is
    added to `failures` with the request that caused it. Returns how many answers had each status."""
    statuses: Counter[int] = Counter()
    mcp = "mcp" in operation.definition.raw.get("tags", [])
    for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
        label = f"{operation.label} ({mode.value})"

        def send(case: schemathesis.Case, label: str = label) -> None:
            response = case.call(session=session, timeout=30)
            statuses[response.status_code] += 1
            try:
                case.validate_response(response, checks=MCP_CHECKS if mcp else CHECKS)
            except (AssertionError, schemathesis.errors.FailureGroup) as failed:  # list all, not the first
                found = failed.exceptions if isinstance(failed, BaseExceptionGroup) else [failed]
                failures.extend(f"{label} {failure}\n    {case.as_curl_command()}" for failure in found)

        run = hypothesis.settings(
            max_examples=MAX_EXAMPLES,
            derandomize=True,  # the same cases on every run: CI is reproducible
            database=None,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        )(hypothesis.given(operation.as_strategy(generation_mode=mode))(lambda case: send(case)))
        try:
            run()
        except hypothesis.errors.Unsatisfiable:  # nothing to make invalid: an operation with no input
            assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
    return statuses


@pytest.fixture
def registry() -> Iterator[ServedRegistry]:
    """A test MCP registry: the marketplace's routes never ask the real one."""
    with serve_registry() as served:
        yield served


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_every_operation_answers_as_documented(tmp_path: Path, registry: ServedRegistry) -> None:
    registries = [{"url": registry.url, "name": "test"}]
    config = write_config(tmp_path, _tenants(), auth={"admin_keys": [ADMIN_KEY]}, registries=registries)
    served = start_hub(config, tmp_path, env={"MCP_HUB_PLUGINS_DIR": str(PLUGINS)})
    try:
        assert served.post("/api/tenants/default/start", key=ADMIN_KEY).status == 200
        document = served.get("/openapi.json").body
        schema = schemathesis.openapi.from_dict(_steered(document))
        schema.config.update(base_url=served.url)
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        failures: list[str] = []
        answered = {}
        for operation in sorted((r.ok() for r in schema.get_all_operations()), key=_last_the_stops):
            answered[operation.label] = _exercise(operation, session, failures)
        print("\n".join(f"{label}: {dict(statuses)}" for label, statuses in answered.items()))
        assert not failures, f"{len(failures)} failed checks:\n" + "\n".join(failures)
        assert len(answered) == sum(len(item) for item in document["paths"].values())
        for label in ("POST /api/tools/{name}/call", "GET /api/servers", "GET /api/tenants/{tenant}"):
            assert answered[label][200], f"{label}: no case did real work ({dict(answered[label])})"
    finally:
        assert stop_hub(served) == 0, served.log()[-3000:]
    assert "Traceback" not in served.log(), served.log()[-5000:]  # nothing failed quietly either
