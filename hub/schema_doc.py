"""Generate the configuration reference (docs/configuration.md) from the configuration's JSON
Schema, as `hub.config_schema` generates it from the model (`schemas/config.schema.json`).

`python -m hub.schema_doc > docs/configuration.md`; a test checks the committed file is current.
Runs in the process that calls it; no state.
"""

from __future__ import annotations

import json
from typing import Any

from hub import config_schema

_SECTIONS = [
    ("Top level", None, ""),
    ("`auth`", "AuthConfig", "auth."),
    ("A tenant: `tenants.<tenant>`", "TenantConfig", "tenants.<tenant>."),
    ("Quotas: `tenants.<tenant>.quotas`", "Quotas", "tenants.<tenant>.quotas."),
    ("A server: `tenants.<tenant>.servers.<server>`", "ServerConfig", "tenants.<tenant>.servers.<server>."),
    ("Tool filter: `...servers.<server>.tools`", "ToolFilter", "...tools."),
    ("`gateway`", "GatewayConfig", "gateway."),
    ("`orchestrator`", "OrchestratorConfig", "orchestrator."),
    (
        "Sandbox: `orchestrator.sandbox`, `tenants.<tenant>.sandbox`, `...servers.<server>.sandbox`",
        "SandboxConfig",
        "...sandbox.",
    ),
    ("A bind: `...sandbox.binds[]`", "SandboxBind", "...binds[]."),
    ("Resource limits: `...sandbox.limits`", "LimitsConfig", "...limits."),
    ("`audit`", "AuditConfig", "audit."),
    ("`cluster`", "ClusterConfig", "cluster."),
]

_INTRO = """# Configuration reference

Generated from the configuration model (`hub/config_model.py`, `hub/config_sandbox.py`,
`hub/config_cluster.py`) through its JSON Schema (`schemas/config.schema.json`) by
`python -m hub.schema_doc`; do not edit by hand.

A configuration is YAML or JSON. Validate one with `python -m hub check --config PATH`.

- Every string may use `${VAR}` and `${VAR:-default}` (`$$` is a literal `$`); the default also
  applies when the variable is set but empty. An unset variable without a default is an error
  naming the field. Expansion yields strings: numbers and booleans must be written literally.
- Names of tenants and servers match `[A-Za-z0-9_-]{1,32}`; a catalog id is `<server>.<name>`.
- Secrets (`env`, `headers`, `api_keys`, `admin_keys`) are shown as `********` in every output.
- Unknown keys are errors. Relative paths in `data_dir`, `plugins_dir` and a server's `cwd` are
  relative to the folder of the configuration file, so a configuration works whatever folder the
  hub starts in. A server without `cwd` runs in its tenant's home when sandboxed (the default),
  else in the hub's working directory; its arguments are passed as written.
- A server's `command` of `python` or `python3` means the interpreter running the hub, so servers
  written in Python run with the hub's packages whether or not its virtualenv is activated.
"""


def _type(spec: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in spec:
        name = spec["$ref"].rsplit("/", 1)[-1]
        target = defs[name]
        return _type(target, defs) if "type" in target or "enum" in target else f"`{name}`"
    if "enum" in spec:
        return " \\| ".join(f"`{v}`" for v in spec["enum"])
    kind = spec.get("type", "any")
    kinds = kind if isinstance(kind, list) else [kind]
    return " \\| ".join(("mapping" if k == "object" else k) for k in kinds)


def _description(spec: dict[str, Any], defs: dict[str, Any]) -> str:
    text = spec.get("description", "")
    if not text and "$ref" in spec:
        text = defs[spec["$ref"].rsplit("/", 1)[-1]].get("description", "")
    for bound, word in (("minimum", "≥"), ("maximum", "≤"), ("exclusiveMinimum", ">")):
        if bound in spec:
            text = f"{text} {word} {spec[bound]}.".strip()
    if "pattern" in spec:
        text = f"{text} Matches `{spec['pattern']}`.".strip()
    return text.replace("|", "\\|")


def render() -> str:
    """The whole reference as markdown."""
    schema = config_schema.generate()
    defs = schema["$defs"]
    out = [_INTRO]
    for title, name, prefix in _SECTIONS:
        props = (defs[name] if name else schema)["properties"]
        out.append(f"\n## {title}\n\n| key | type | default | description |\n|---|---|---|---|")
        for key, spec in props.items():
            default = (
                json.dumps(spec["default"]) if "default" in spec else "required" if key == "tenants" else ""
            )
            out.append(f"| `{prefix}{key}` | {_type(spec, defs)} | {default} | {_description(spec, defs)} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render(), end="")
