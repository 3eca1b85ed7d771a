"""Edit the configuration file through the API: add, change and remove tenants and servers.

An edit is made on the file's own text, not on the loaded model: the file is read again, parsed
round-trip (ruamel.yaml: its comments, key order, quoting and indentation kept; a JSON file is
rewritten as indented JSON), the one tenant or server is changed, the new text is checked exactly
as `hub check` checks a file (`parse_config`, then the credentials' start-up problems), written
atomically over the file, and applied through `Hub.reload` (unchanged servers keep their process).
`${VAR}` references stay references: the file never gets the values the hub expanded.

Guards (docs/operations.md, "Editing the configuration through the API"):
- the ETag is the digest of the text the running configuration was read from
  (`HubConfig.digest`); an `If-Match` naming another is `PreconditionFailed` (412): someone else
  edited it since the client looked;
- a file whose text is no longer that one was edited by hand and not reloaded: the hand edit
  wins, nothing is written (`ConfigChangedOnDisk`, 409);
- a hub without a file, in a cluster, or whose file cannot be written refuses (`ConfigReadOnly`).

Secrets: the raw views the API shows (`raw_tenant`, `raw_server`) mask every value of `env`,
`headers` and each tenant key as `********` (a bare `${VAR}` reference is shown: it holds no
secret); a `********` sent back in an edit keeps the value the file has there.

Every edit is one audit line naming who made it. Runs on the caller's thread (a web executor
thread, a test); edits are serialised by the editor's lock.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ruamel.yaml import YAML
from ruamel.yaml.util import load_yaml_guess_indent

from hub.config import MASK, HubConfig, parse_config, text_digest
from hub.errors import (
    BadRequest,
    ConfigChangedOnDisk,
    ConfigError,
    ConfigReadOnly,
    NotFound,
    PreconditionFailed,
)

if TYPE_CHECKING:
    from hub.permissions import Who
    from hub.runtime import Hub

_SECRET_FIELDS = ("env", "headers")  # a server's (a tenant's: env and its api_keys)
_NESTED_KEY = re.compile(r"^ +[^\s#-][^:#]*:(\s|$)")  # an indented mapping key (not in a sequence item)
_REFERENCE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")
_EDITORS: weakref.WeakKeyDictionary[Hub, ConfigEditor] = weakref.WeakKeyDictionary()
_EDITORS_LOCK = threading.Lock()


@dataclass(frozen=True)
class Edit:
    """What an edit did: the configuration's new ETag, whether it created the tenant or server,
    and the reload's summary (`Hub.reload`)."""

    etag: str
    created: bool
    reload: dict[str, Any]


def editor(hub: Hub) -> ConfigEditor:
    """The editor of `hub`'s configuration file (one per hub)."""
    with _EDITORS_LOCK:
        if hub not in _EDITORS:
            _EDITORS[hub] = ConfigEditor(hub)
        return _EDITORS[hub]


def etag_header(digest: str | None) -> str:
    """The `ETag` header value of a configuration digest."""
    return f'"{digest or ""}"'


class ConfigEditor:
    """Edits one hub's configuration file; see the module docstring."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ views

    def etag(self) -> str:
        """The ETag of the configuration the hub serves."""
        return etag_header(self._hub.config.digest)

    def changed_on_disk(self) -> bool:
        """Whether the file's text is no longer the one the hub serves (a hand edit not reloaded)."""
        try:
            return text_digest(self._path().read_text(encoding="utf-8")) != self._hub.config.digest
        except (ConfigReadOnly, OSError, UnicodeDecodeError):
            return False

    def raw_tenants(self) -> dict[str, Any]:
        """Every tenant as the file has it, secrets masked."""
        doc = self._document(self._read())
        return {str(name): _masked_tenant(tenant) for name, tenant in (doc.get("tenants") or {}).items()}

    def raw_tenant(self, tenant: str) -> dict[str, Any]:
        """Tenant `tenant` as the file has it, secrets masked (NotFound if it has none)."""
        return _masked_tenant(_tenant_node(self._document(self._read()), tenant))

    def raw_server(self, tenant: str, server: str) -> dict[str, Any]:
        """Server `server` of `tenant` as the file has it, secrets masked."""
        return _masked_server(
            _server_node(_tenant_node(self._document(self._read()), tenant), tenant, server)
        )

    # ------------------------------------------------------------------ edits

    def put_server(
        self, tenant: str, name: str, spec: Any, *, if_match: str | None = None, who: Who | None = None
    ) -> Edit:
        """Add server `name` to `tenant`, or change it to `spec` (its raw mapping, as in the file)."""
        spec = _mapping(spec, "the server")

        def change(doc: Any) -> bool:
            servers = _servers_node(_tenant_node(doc, tenant))
            old = servers.get(name)
            _update(servers, name, _unmasked_server(spec, old))
            return old is None

        return self._edit(change, if_match, who, "put_server", tenant=tenant, server=name)

    def delete_server(
        self, tenant: str, name: str, *, if_match: str | None = None, who: Who | None = None
    ) -> Edit:
        """Remove server `name` of `tenant` (its process is stopped)."""

        def change(doc: Any) -> bool:
            tenant_node = _tenant_node(doc, tenant)
            _server_node(tenant_node, tenant, name)
            del tenant_node["servers"][name]
            return False

        return self._edit(change, if_match, who, "delete_server", tenant=tenant, server=name)

    def put_tenant(
        self, tenant: str, spec: Any, *, if_match: str | None = None, who: Who | None = None
    ) -> Edit:
        """Add tenant `tenant`, or change it to `spec`; without a `servers` key in `spec` the
        tenant keeps its servers."""
        spec = _mapping(spec, "the tenant")

        def change(doc: Any) -> bool:
            tenants = doc.get("tenants")
            if not isinstance(tenants, dict):
                raise ConfigError(["tenants: the configuration has no tenants mapping to add to"])
            old = tenants.get(tenant)
            new = _unmasked_tenant(spec, old)
            if "servers" not in new and isinstance(old, dict) and "servers" in old:
                new["servers"] = old["servers"]
            _update(tenants, tenant, new)
            return old is None

        return self._edit(change, if_match, who, "put_tenant", tenant=tenant)

    def delete_tenant(self, tenant: str, *, if_match: str | None = None, who: Who | None = None) -> Edit:
        """Remove tenant `tenant` (its servers are stopped)."""

        def change(doc: Any) -> bool:
            _tenant_node(doc, tenant)
            del doc["tenants"][tenant]
            return False

        return self._edit(change, if_match, who, "delete_tenant", tenant=tenant)

    # ------------------------------------------------------------------ the file

    def _edit(
        self, change: Callable[[Any], bool], if_match: str | None, who: Who | None, action: str, **what: str
    ) -> Edit:
        """Read, check, change, validate, write and apply; one audit line, whatever the outcome."""
        hub = self._hub
        with self._lock:
            try:
                path = self._path()
                _check_if_match(if_match, hub.config.digest)
                text = self._read()
                if text_digest(text) != hub.config.digest:
                    raise ConfigChangedOnDisk(
                        f"{path} was edited by hand since the hub read it: the file wins and was not "
                        "written; reload it (POST /api/admin/reload or SIGHUP), then edit again"
                    )
                doc = self._document(text)
                created = change(doc)
                new_text = _dump(doc, text, path)
                config = _validated(new_text, hub.config, path)
                _write_atomically(path, new_text)
                summary = hub.reload(config)
            except Exception as exc:
                hub.audit.record_change(who, action, **what, outcome=getattr(exc, "code", "error"))
                raise
            hub.audit.record_change(who, action, **what, outcome="created" if created else "ok")
            return Edit(etag_header(config.digest), created, summary)

    def _path(self) -> Path:
        """The file to edit, links followed; `ConfigReadOnly` when there is none to edit."""
        hub = self._hub
        source = hub.config.source
        if hub.cluster is not None:
            raise ConfigReadOnly(
                "in a cluster each replica reads its own copy of the configuration (docs/cluster.md): "
                "edit the file every replica reads, then reload"
            )
        if not source or source.startswith("<") or hub.config.digest is None:
            raise ConfigReadOnly("the hub was not started from a configuration file: there is none to edit")
        path = Path(source).resolve()
        if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
            raise ConfigReadOnly(f"{source} cannot be written by the hub: it is read-only")
        return path

    def _read(self) -> str:
        path = self._path()
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigReadOnly(f"{path} cannot be read: {exc}") from None

    def _document(self, text: str) -> Any:
        """The file's text as a round-trip document (a mapping)."""
        try:
            doc = _yaml(text).load(text)
        except Exception as exc:  # (ruamel's errors have no common public base worth naming)
            raise ConfigChangedOnDisk(f"{self._hub.config.source} cannot be parsed any more: {exc}") from None
        if not isinstance(doc, dict):
            raise ConfigChangedOnDisk(f"{self._hub.config.source} is no longer a mapping")
        return doc


# --------------------------------------------------------------------------- helpers


def _check_if_match(if_match: str | None, digest: str | None) -> None:
    """Raise `PreconditionFailed` unless `if_match` (a header value; None: none sent) names `digest`."""
    if if_match is None or if_match.strip() == "*":
        return
    tags = {tag.strip().removeprefix("W/").strip('"') for tag in if_match.split(",")}
    if digest not in tags:
        raise PreconditionFailed(
            "the configuration changed since you read it (If-Match does not name its current ETag): "
            "read it again and redo your change"
        )


def _yaml(text: str) -> YAML:
    """A round-trip YAML reader and writer that keeps `text`'s indentation."""
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # (never re-wrap a long line)
    try:
        _, sequence, offset = load_yaml_guess_indent(text)  # (of the first block sequence)
    except Exception:
        sequence, offset = None, None
    offset = offset or 0
    yaml.indent(mapping=_mapping_indent(text), sequence=sequence or offset + 2, offset=offset)
    yaml.representer.add_representer(
        type(None), lambda rep, _data: rep.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    return yaml


def _mapping_indent(text: str) -> int:
    """How far `text` indents a nested mapping's keys (2 when it has none)."""
    indents = [len(line) - len(line.lstrip(" ")) for line in text.splitlines() if _NESTED_KEY.match(line)]
    return min(indents, default=2)


def _dump(doc: Any, old_text: str, path: Path) -> str:
    """The document as text: YAML as the file was written, JSON for a `.json` file."""
    if path.suffix.lower() == ".json":
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    out = io.StringIO()
    _yaml(old_text).dump(doc, out)
    return out.getvalue()


def _validated(text: str, current: HubConfig, path: Path) -> HubConfig:
    """`text` checked as `hub check` checks a file (`ConfigError` with every problem)."""
    from hub.credentials import startup_problems

    config = parse_config(text, source=current.source, base=path.parent)
    problems = startup_problems(config)
    if problems:
        raise ConfigError(problems)
    return config


def _write_atomically(path: Path, text: str) -> None:
    """Replace `path`'s content with `text` at once, keeping its mode."""
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _mapping(spec: Any, what: str) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise BadRequest(f"{what} must be a JSON object (its configuration, as in the file)")
    return dict(spec)


def _tenant_node(doc: Any, tenant: str) -> Any:
    node = (doc.get("tenants") or {}).get(tenant) if isinstance(doc.get("tenants"), dict) else None
    if not isinstance(node, dict):
        raise NotFound(f"no tenant '{tenant}' in the configuration file")
    return node


def _servers_node(tenant_node: Any) -> Any:
    if not isinstance(tenant_node.get("servers"), dict):
        tenant_node["servers"] = {}
    return tenant_node["servers"]


def _server_node(tenant_node: Any, tenant: str, server: str) -> Any:
    node = (tenant_node.get("servers") or {}).get(server)
    if not isinstance(node, dict):
        raise NotFound(f"no server '{server}' in tenant '{tenant}' in the configuration file")
    return node


def _update(parent: Any, key: str, new: dict[str, Any]) -> None:
    """Make `parent[key]` equal `new`, changing only what differs (so unchanged lines keep their
    comments and order); a new key goes at the end."""
    old = parent.get(key)
    if not isinstance(old, dict):
        parent[key] = new
        return
    for name in [k for k in old if k not in new]:
        del old[name]
    for name, value in new.items():
        if name in old and isinstance(old[name], dict) and isinstance(value, dict):
            _update(old, name, value)
        elif name not in old or _plain(old[name]) != _plain(value):
            old[name] = value


def _plain(value: Any) -> Any:
    """`value` (a round-trip node or plain data) as plain data, for comparing."""
    return json.loads(json.dumps(value, default=str))


# --------------------------------------------------------------------------- masking


def _mask(value: Any) -> Any:
    return value if isinstance(value, str) and _REFERENCE.match(value) else MASK


def _masked_server(node: Any) -> dict[str, Any]:
    out = _plain(node)
    for field in _SECRET_FIELDS:
        if isinstance(out.get(field), dict):
            out[field] = {k: _mask(v) for k, v in out[field].items()}
    return dict(out)


def _masked_tenant(node: Any) -> dict[str, Any]:
    out = _plain(node)
    if isinstance(out.get("env"), dict):
        out["env"] = {k: _mask(v) for k, v in out["env"].items()}
    if isinstance(out.get("api_keys"), list):
        out["api_keys"] = [_masked_key(key) for key in out["api_keys"]]
    if isinstance(out.get("servers"), dict):
        out["servers"] = {name: _masked_server(server) for name, server in out["servers"].items()}
    return dict(out)


def _masked_key(key: Any) -> Any:
    if isinstance(key, dict) and "key" in key:
        return {**key, "key": _mask(key["key"])}
    return _mask(key) if isinstance(key, str) else key


def _unmasked(values: Any, old: Any, where: str) -> Any:
    """`values` (a mapping sent back) with each `********` replaced by the value `old` has there."""
    if not isinstance(values, dict):
        return values
    out = {}
    for name, value in values.items():
        if value == MASK:
            if not isinstance(old, dict) or name not in old:
                raise BadRequest(f"{where}.{name}: '{MASK}' is how the API hides a secret: send its value")
            value = old[name]
        out[name] = value
    return out


def _unmasked_server(spec: dict[str, Any], old: Any, where: str = "server") -> dict[str, Any]:
    out = dict(spec)
    for field in _SECRET_FIELDS:
        if field in out:
            before = old.get(field) if isinstance(old, dict) else None
            out[field] = _unmasked(out[field], before, f"{where}.{field}")
    return out


def _unmasked_tenant(spec: dict[str, Any], old: Any) -> dict[str, Any]:
    old = old if isinstance(old, dict) else {}
    out = dict(spec)
    if "env" in out:
        out["env"] = _unmasked(out["env"], old.get("env"), "tenant.env")
    if isinstance(out.get("api_keys"), list):
        before = old.get("api_keys") if isinstance(old.get("api_keys"), list) else []
        out["api_keys"] = [_unmasked_key(key, before, i) for i, key in enumerate(out["api_keys"])]
    if isinstance(out.get("servers"), dict):
        servers = old.get("servers") if isinstance(old.get("servers"), dict) else {}
        out["servers"] = {
            name: _unmasked_server(server, servers.get(name), f"servers.{name}")
            if isinstance(server, dict)
            else server
            for name, server in out["servers"].items()
        }
    return out


def _unmasked_key(key: Any, before: list[Any], index: int) -> Any:
    """Key `index` of a tenant's `api_keys` sent back: a `********` is the key at that place."""
    old = before[index] if index < len(before) else None
    old_key = old.get("key") if isinstance(old, dict) else old
    if key == MASK or (isinstance(key, dict) and key.get("key") == MASK):
        if not isinstance(old_key, str):
            raise BadRequest(f"tenant.api_keys.{index}: '{MASK}' is how the API hides a key: send the key")
        return {**key, "key": old_key} if isinstance(key, dict) else old_key
    return key
