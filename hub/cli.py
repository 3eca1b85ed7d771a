"""The command line: `python -m hub [serve|stdio|check|hash-password|backup|restore]`, also
installed as `mcp-hub`.

Exit codes (README, "Command line"): 0 success, 2 usage or configuration error, 1 runtime failure.
Runs on the main thread.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

import hub
from hub.config import (
    CONFIG_ENV_VAR,
    DEFAULT_CONFIG_PATH,
    HubConfig,
    config_path_origin,
    find_config_path,
    load_config,
)
from hub.errors import ConfigError, ConfigUnreadable
from hub.listeners import ListenError, parse_port
from hub.log import LEVELS, setup_logging

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2
_COMMANDS = ("serve", "stdio", "check", "hash-password", "backup", "restore")
KEY_ENV_VAR = "MCP_HUB_KEY"  # the stdio facade's key (`hub stdio --key`)

_CONFIG_HELP = f"configuration file (YAML or JSON); default ${CONFIG_ENV_VAR}, else ./{DEFAULT_CONFIG_PATH}"

_EPILOG = (
    "With no command, `serve` runs. Environment: MCP_HUB_CONFIG, MCP_HUB_PLUGINS_DIR, LOG_LEVEL; "
    "for `serve`, MCP_HUB_HOST, MCP_HUB_PORT, MCP_HUB_MCP_PORT, MCP_HUB_WS_PORT; for `serve` and "
    "`stdio`, MCP_HUB_EVENT_LOOP=asyncio (asyncio's loop instead of uvloop's)."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcp-hub",
        description="MCP Hub: run and supervise many MCP servers for many tenants, and present each "
        "tenant's servers as one catalog over REST, WebSocket and MCP.",
        epilog=_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {hub.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the service (the default command)",
        description="Run the hub: REST, WebSocket and MCP over HTTP. Each of --host and the ports "
        "comes from its flag, else its environment variable, else the configuration file.",
    )
    _add_common(serve)
    serve.add_argument("--host", help="address to bind (default $MCP_HUB_HOST, else gateway.host)")
    serve.add_argument(
        "--port",
        metavar="N",
        type=_port(extra=False),
        help="port of every route; 0: any free port (default $MCP_HUB_PORT, else gateway.port)",
    )
    serve.add_argument(
        "--mcp-port",
        metavar="N|off",
        type=_port(extra=True),
        help="extra listener for /mcp and /health; 0 or off: none "
        "(default $MCP_HUB_MCP_PORT, else gateway.mcp_port)",
    )
    serve.add_argument(
        "--ws-port",
        metavar="N|off",
        type=_port(extra=True),
        help="extra listener for the app WebSocket and /health; 0 or off: none "
        "(default $MCP_HUB_WS_PORT, else gateway.websocket_port)",
    )
    serve.add_argument("--reload", action="store_true", help="re-apply the config file when it changes")

    stdio = commands.add_parser(
        "stdio",
        help="serve one tenant (or one server of it) as an MCP server on stdin/stdout",
        description="MCP over stdin/stdout for Claude Desktop and other stdio "
        "clients. Stdout carries protocol bytes only; logs go to stderr.",
    )
    _add_common(stdio)
    stdio.add_argument("--tenant", default="default", help="tenant to serve (default: %(default)s)")
    stdio.add_argument(
        "--server",
        metavar="NAME",
        help="serve only this server of the tenant, under its own tool, prompt and resource names "
        "(default: every server of the tenant, as <server>__<name>)",
    )
    stdio.add_argument(
        "--key",
        default=os.environ.get(KEY_ENV_VAR),  # (set but empty: a key that matches none, refused)
        help="act with this key of the tenant: its client then sees and calls only what the key "
        f"may (its allow/deny); an unknown key or another tenant's is refused. Default ${KEY_ENV_VAR}, "
        "which keeps the key out of the process list (prefer it). Without either: everything of the tenant",
    )

    check = commands.add_parser(
        "check",
        help="validate a configuration file",
        description="Validate a configuration: print a one-line summary and exit 0, "
        "or print every problem as `path: message` and exit 2.",
    )
    check.add_argument("--config", metavar="PATH", help=_CONFIG_HELP)

    _add_backup(commands)
    commands.add_parser(
        "hash-password",
        help="print the hash of a password, for auth.server.users.<name>.password_hash",
        description="Read a password (a prompt that does not echo it, or the first line of stdin when it "
        "is not a terminal) and print its scrypt hash, for a user of the built-in authorization server "
        "(auth.server.users.<name>.password_hash). The password itself is never stored.",
    )
    return parser


def _add_backup(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`backup` and `restore` (`hub.backup_cli`)."""
    backup = commands.add_parser(
        "backup",
        help="archive the configuration file and the data (credentials, catalogs, pins, OAuth)",
        description="Write one tar.gz archive (mode 0600: it holds secrets) of the configuration file, "
        "exactly as it is, and of orchestrator.data_dir's pins/, catalogs/, credentials/ (still "
        "encrypted) and oauth/. Not logs, homes or the audit log.",
    )
    backup.add_argument("-o", "--output", metavar="FILE", required=True, help="the archive to write")
    backup.add_argument("--config", metavar="PATH", help=_CONFIG_HELP)
    restore = commands.add_parser(
        "restore",
        help="restore a backup: the configuration file and the data",
        description="Check the whole archive and its configuration (as `check` does, here) first; then "
        "write the configuration file to --config (or where the hub looks for it) and the data into the "
        "data_dir it names. Nothing is changed on any error.",
    )
    restore.add_argument("archive", metavar="FILE", help="a backup archive (tar.gz)")
    restore.add_argument("--config", metavar="PATH", help=_CONFIG_HELP)
    restore.add_argument(
        "--force",
        action="store_true",
        help="replace an existing configuration file and data folders that are not empty",
    )


def _port(extra: bool) -> Callable[[str], int]:
    """An argparse type: a port from 0 to 65535, or (`extra`) `off`, which is 0."""

    def parse(text: str) -> int:
        try:
            return parse_port(text, extra)
        except ListenError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help=_CONFIG_HELP)
    parser.add_argument(
        "--log-level",
        choices=LEVELS,
        type=str.upper,
        help="DEBUG, INFO, WARNING, ERROR or CRITICAL (default $LOG_LEVEL, else INFO)",
    )


def _load(path_arg: str | None, tenant: str | None = None, keys: bool = False) -> HubConfig | None:
    """Load the config (only `tenant`'s part, if given) or print every problem to stderr and return None."""
    path = find_config_path(path_arg)
    try:
        return load_config(path, tenant=tenant, keys=keys)
    except ConfigUnreadable as exc:
        print(f"mcp-hub: {exc.problems[0]}", file=sys.stderr)
        print(f"  tried {path.absolute()}, from {config_path_origin(path_arg)}", file=sys.stderr)
        print(f"  name the configuration file with --config PATH or {CONFIG_ENV_VAR}=PATH", file=sys.stderr)
        return None
    except ConfigError as exc:
        print(
            f"{path}: invalid configuration ({len(exc.problems)} problem"
            f"{'' if len(exc.problems) == 1 else 's'}):",
            file=sys.stderr,
        )
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def _check(args: argparse.Namespace) -> int:
    from hub.credentials import startup_problems

    config = _load(args.config)
    if config is None:
        return EXIT_USAGE
    unstorable = startup_problems(config)  # (per_user servers' values need HUB_SECRET_KEY)
    if unstorable:
        print(f"{config.source}: invalid configuration:", *unstorable, sep="\n  ", file=sys.stderr)
        return EXIT_USAGE
    for warning in config.warnings():
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{config.source}: OK: {config.summary()}")
    print(_sandbox_line(config))
    print(_limits_line(config))
    return EXIT_OK


def _limits_line(config: HubConfig) -> str:
    """What enforces servers' resource limits on this host, and which of this configuration's it
    cannot."""
    from actors.limits import limit_support

    support = limit_support()
    unenforced = support.unenforced(config)
    if not unenforced:
        return f"limits: {support.detail}"
    return f"limits: {support.detail}; NOT enforced on this host: {', '.join(unenforced)} (docs/security.md)"


def _sandbox_line(config: HubConfig) -> str:
    """Whether this host can sandbox stdio servers, and what that means for this configuration's."""
    from actors.sandbox import host_support

    support = host_support()
    if support.available:
        return f"sandbox: available ({support.detail})"
    servers = [
        s for t in config.tenants.values() for s in t.servers.values() if s.transport == "stdio" and s.enabled
    ]
    required = sum(1 for s in servers if s.sandbox.enabled and s.sandbox.required)
    unsandboxed = sum(1 for s in servers if s.sandbox.enabled and not s.sandbox.required)
    return (
        f"sandbox: UNAVAILABLE on this host: {support.detail}; {required} stdio server(s) require it "
        f"and will not start, {unsandboxed} will run unsandboxed (docs/security.md)"
    )


def _setup(args: argparse.Namespace, tenant: str | None = None, keys: bool = False) -> HubConfig | None:
    """Logging, then the configuration (only `tenant`'s part, if given, with its keys if `keys`);
    None (after saying why on stderr) if either is wrong."""
    try:
        setup_logging(args.log_level)
    except ValueError as exc:
        print(f"mcp-hub: {exc}", file=sys.stderr)
        return None
    return _load(args.config, tenant, keys)


def _serve(args: argparse.Namespace) -> int:
    from hub import service

    config = _setup(args)
    return EXIT_USAGE if config is None else service.run(args, config)


def _stdio(args: argparse.Namespace) -> int:
    from hub import stdio

    config = _setup(args, tenant=args.tenant, keys=args.key is not None)
    return EXIT_USAGE if config is None else stdio.run(config, args.tenant, args.server, args.key)


def _hash_password() -> int:
    """`hash-password`: the hash of a password read without echo (or from stdin), on stdout."""
    import getpass

    from hub.passwords import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("mcp-hub: the two passwords differ", file=sys.stderr)
            return EXIT_USAGE
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("mcp-hub: an empty password cannot be used", file=sys.stderr)
        return EXIT_USAGE
    print(hash_password(password))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*_COMMANDS, "-h", "--help", "--version"):
        argv.insert(0, "serve")
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help/--version
        return int(exc.code or 0)
    if args.command == "check":
        return _check(args)
    if args.command == "hash-password":
        return _hash_password()
    if args.command in ("backup", "restore"):
        from hub import backup_cli

        if args.command == "backup":
            return backup_cli.run_backup(args.config, args.output)
        return backup_cli.run_restore(args.archive, args.config, args.force)
    if args.command == "serve":
        return _serve(args)
    return _stdio(args)
