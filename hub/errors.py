"""The one error hierarchy of MCP Hub.

Every failure a user can see is a `HubError` subclass carrying a snake_case `code` and the HTTP
status it maps to. The web layer maps them to HTTP once and the MCP facade to MCP errors once;
nothing else decides how an error looks on the wire. Messages never contain secrets.
"""

from __future__ import annotations


class HubError(Exception):
    """Base of every error MCP Hub reports to a user.

    Attributes:
        code: stable snake_case identifier, used in JSON error bodies.
        status: HTTP status the error maps to.
        message: human text, safe to show (no secret ever goes in it).
    """

    code = "hub_error"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(HubError):
    """The configuration is invalid; `problems` lists every `path: message` found, sorted."""

    code = "invalid_config"
    status = 400

    def __init__(self, problems: list[str] | tuple[str, ...]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid configuration:\n" + "\n".join(self.problems))


class ConfigUnreadable(ConfigError):
    """The configuration file cannot be read at all (missing, a folder, no permission, not UTF-8)."""


class BadRequest(HubError):
    """Malformed input: JSON, frames, or arguments that fail a tool's input schema."""

    code = "bad_request"
    status = 400


class BackupInvalid(BadRequest):
    """A backup archive that cannot be restored as it is: an unknown format or version, a member
    that is not a regular file under the allowed folders, or one that differs from its manifest."""

    code = "invalid_backup"


class RestoreRefused(HubError):
    """A restore that would replace what is there without `--force`, or that a running hub cannot
    apply (another data_dir, a cluster's replica): nothing was changed."""

    code = "restore_refused"
    status = 409


class NotFound(HubError):
    """Unknown tenant, server, tool, resource or prompt, or one of another tenant (never told apart)."""

    code = "not_found"
    status = 404


class NotRunning(HubError):
    """The server exists but is not running, so it cannot answer."""

    code = "server_not_running"
    status = 409


class ToolPendingApproval(HubError):
    """A tool held by pinning (`pinning: enforce`): it changed since an admin approved its server's
    tools (docs/security.md, "Pinned tools")."""

    code = "tool_pending_approval"
    status = 409


class NothingPending(HubError):
    """An approval or rejection of pinned tools when the server's tools have not changed."""

    code = "nothing_pending"
    status = 409


class DuplicateCall(HubError):
    """A tool call whose `Idempotency-Key` was already used for the same call, of a tool that does
    not say a second run is harmless: it may have run already, and is not run twice."""

    code = "duplicate_call"
    status = 409


class IdempotencyKeyReused(HubError):
    """An `Idempotency-Key` already used for another call (another tool, or other arguments)."""

    code = "idempotency_key_reused"
    status = 422


class QuotaExceeded(HubError):
    """A tenant quota or rate limit was hit; `retry_after` says when to try again (seconds)."""

    code = "quota_exceeded"
    status = 429

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamError(HubError):
    """The MCP server failed, died or broke the protocol while answering."""

    code = "upstream_error"
    status = 502


class ServerStopped(UpstreamError):
    """A call in flight failed because its server was stopped (by request, a rebalance, a
    reload): the same `upstream_error`; a cluster may try a harmless call again elsewhere."""


class CallTimeout(HubError):
    """The MCP server did not answer within the call timeout."""

    code = "timeout"
    status = 504


class ShuttingDown(HubError):
    """The hub is stopping and takes no new work."""

    code = "shutting_down"
    status = 503


class Unauthorized(HubError):
    """A missing or wrong key."""

    code = "unauthorized"
    status = 401


class PayloadTooLarge(HubError):
    """The request body is larger than `gateway.max_body_bytes`."""

    code = "payload_too_large"
    status = 413


class HostNotAllowed(HubError):
    """The request's `Host` is not one the hub answers to (a guard against DNS rebinding)."""

    code = "host_not_allowed"
    status = 421


class OriginNotAllowed(HubError):
    """A browser request from an origin that is neither the hub's own nor in `gateway.allowed_origins`."""

    code = "origin_not_allowed"
    status = 403


class TooManySessions(QuotaExceeded):
    """A key or tenant holds as many MCP sessions as the gateway allows."""

    code = "too_many_sessions"


class MalformedJson(BadRequest):
    """Text that is not JSON the hub takes: a syntax error, not UTF-8, `NaN` or `Infinity`, a number
    out of range, nesting too deep (a JSON-RPC parse error on the MCP facade)."""


class NotJson(MalformedJson):
    """Not JSON at all: a syntax error, or bytes that are not UTF-8."""


class InvalidText(BadRequest):
    """A string that is not valid Unicode text (a lone surrogate, JSON `"\\ud800"`): no UTF-8 writer,
    the hub's own write to a server included, can encode it."""


class HeadersTooLarge(HubError):
    """The request's header block is larger than the hub reads (`web.sizes.MAX_HEADER_BYTES`)."""

    code = "headers_too_large"
    status = 431


class UserRequired(HubError):
    """A per_user server was called by no user (an open hub, stdio without a key)."""

    code = "user_required"
    status = 403


class CredentialsUnreadable(HubError):
    """Stored per-user credentials do not decrypt with this `HUB_SECRET_KEY` (it was changed)."""

    code = "credentials_unreadable"
    status = 500


class NoSecretKey(HubError):
    """Per-user credentials are used but `HUB_SECRET_KEY` is missing or shorter than 32 characters."""

    code = "no_secret_key"
    status = 500


class CredentialsMissing(NotRunning):
    """A per_user server's user has not set every variable it declares (`user_env`): it cannot run
    for them yet (a tool call answers it as a tool error naming what to set and where)."""

    code = "credentials_missing"


class PreconditionFailed(HubError):
    """An edit's `If-Match` names a configuration other than the one the hub serves: someone else
    changed it since the client read it. (Also an approval or rejection of pinned tools whose
    `digest` the server's tools no longer show: they changed again since the admin looked.)"""

    code = "precondition_failed"
    status = 412


class ConfigChangedOnDisk(HubError):
    """The configuration file was edited by hand since the hub read it: the hand edit wins, the
    hub does not write over it (reload it, then edit again)."""

    code = "config_changed_on_disk"
    status = 409


class ConfigReadOnly(HubError):
    """The configuration cannot be edited through the API (no file, a cluster, a read-only file)."""

    code = "config_read_only"
    status = 409


class ServerExists(HubError):
    """An install names a server its tenant already has (remove it first, or choose another name)."""

    code = "server_exists"
    status = 409


class RegistryUnreachable(UpstreamError):
    """An MCP registry did not answer as the registry API says (down, too slow, not its shape)."""

    code = "registry_unavailable"
