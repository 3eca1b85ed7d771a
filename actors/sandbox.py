"""The sandbox of a stdio server: bubblewrap (`bwrap`) in front of its command.

A sandboxed server is spawned as `bwrap OPTIONS -- COMMAND ARGS` (still by vfork(), see
`actors.upstream.process`). bwrap gives it its own PID, IPC and UTS namespaces (it sees and can signal only
its own processes; bwrap's init is their pid 1, and when it ends the kernel kills them all), no
capabilities, a new session, and `--die-with-parent`, which replaces `setpriv --pdeathsig` as the
parent-death signal: the outer bwrap, then its init, then everything inside dies with the hub.

What the server sees of the filesystem, bound in this order (a later mount covers an earlier one):

1. read-only: the system folders (`/usr`, `/etc`, `/bin`, `/lib*`, as symlinks where the host
   has them so), and the hub's interpreter (`sys.prefix`, `sys.base_prefix`) and, when the hub
   runs from a source checkout, its own packages (so `command: python` and `python -m
   hub.demo_sqlite` run);
2. a fresh `/proc` (its own processes only), a minimal `/dev`, a private `/tmp`;
3. its `binds`, and its `cwd` read-write (unless it lies in a read-only root of step 1); read-only
   roots of step 1 that such a bind covers are bound again, so the interpreter never becomes
   writable through a bind of a folder around it;
4. masks over whatever the server must never see but a bind would show: the configuration file,
   the data directories (logs, catalog caches, every tenant's home), the audit log, the hub's
   home, and secrets of `/etc` (`shadow`, `sudoers`, SSH host keys...: a hub run as root would
   otherwise read them, as owner, even without capabilities);
5. its tenant's home, `<data_dir>/homes/<tenant>`, read-write: its `HOME`, and its working
   directory when it has no `cwd`;
6. everything else read-only (`--remount-ro /`): a write outside its home, `/tmp` and rw binds
   fails.

Whether this host can sandbox at all is probed once per process (`host_support`): the same
options on `true`. Nothing here runs on a particular thread; `sandbox_for` may block for that
first probe (tens of milliseconds).
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from actors.limits import CgroupTree
from hub import timeouts
from hub.config import SandboxConfig

log = logging.getLogger(__name__)

BWRAP_ENV_VAR = "MCP_HUB_BWRAP"  # the bubblewrap executable; `bwrap` on PATH by default

_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
# Files of /etc a server never needs; readable by a hub that runs as root (their owner).
_ETC_SECRETS = (
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssl/private",
    "/etc/security/opasswd",
    "/etc/ssh/ssh_host_*key",
)
# Files of /etc that may be symlinks out of /etc (systemd-resolved's resolv.conf): their targets
# are bound read-only too, or name resolution breaks inside.
_ETC_LINKS = ("/etc/resolv.conf", "/etc/hosts", "/etc/localtime", "/etc/nsswitch.conf")
_HUB_PACKAGES = ("hub", "actors", "web", "schemas")


class SandboxError(Exception):
    """A server cannot start in its sandbox as configured (a bind is missing, its command is not
    visible inside...)."""


class SandboxRefused(SandboxError):
    """The server requires a sandbox (`sandbox.required`) that this host cannot give."""


# --------------------------------------------------------------------------- the host


@dataclass(frozen=True)
class SandboxSupport:
    """Whether this host can sandbox servers, and with what (or why not)."""

    available: bool
    detail: str  # "bubblewrap 0.8.0 (/usr/bin/bwrap)", or the reason it is unavailable
    bwrap: str | None = None


def host_support() -> SandboxSupport:
    """Whether bubblewrap works here (probed once per executable: `$MCP_HUB_BWRAP`, else `bwrap`)."""
    return _probe(os.environ.get(BWRAP_ENV_VAR) or "bwrap")


@functools.cache
def _probe(name: str) -> SandboxSupport:
    bwrap = shutil.which(name)
    true = shutil.which("true")
    if bwrap is None or true is None:
        why = f"bubblewrap ({name}) is not installed (Debian: apt-get install bubblewrap)"
        support = SandboxSupport(False, why)
    else:
        support = _try(bwrap, true)
    return support


def _try(bwrap: str, true: str) -> SandboxSupport:
    """Run `true` in a sandbox made like a server's (network none, a home, a mask)."""
    try:
        version = subprocess.run(
            [bwrap, "--version"], capture_output=True, text=True, timeout=timeouts.SANDBOX_PROBE
        )
        with tempfile.TemporaryDirectory(prefix="mcp-hub-sandbox-probe-") as scratch:
            site = SandboxSite(homes=scratch, hidden=(os.path.join(scratch, "hidden"),))
            os.mkdir(os.path.join(scratch, "hidden"))
            policy = SandboxConfig(network="none", binds=())
            argv = _plan(bwrap, site, "probe", policy, scratch).wrap(true, (), None)
            trial = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeouts.SANDBOX_PROBE, stdin=subprocess.DEVNULL
            )
    except (OSError, subprocess.SubprocessError, SandboxError) as exc:
        return SandboxSupport(False, f"{bwrap} failed to run: {exc}", bwrap)
    if trial.returncode != 0:
        why = (trial.stderr.strip().splitlines() or [f"exit code {trial.returncode}"])[-1]
        return SandboxSupport(False, f"{bwrap} cannot create a sandbox here: {why}", bwrap)
    return SandboxSupport(True, f"{version.stdout.strip() or 'bubblewrap'} ({bwrap})", bwrap)


# --------------------------------------------------------------------------- the hub's side


@dataclass(frozen=True)
class SandboxSite:
    """What every sandbox of one hub shares: where tenant homes live, and what no server may see.

    `hidden` lists absolute paths (files or folders): the hub's data directories first (nothing
    inside them may be bound), then other files (configuration, audit log, the hub's home).
    """

    homes: str
    hidden: tuple[str, ...]
    private: tuple[str, ...] = ()  # of `hidden`, the data directories
    cgroups: CgroupTree | None = field(default=None, compare=False)  # None: rlimits only

    @classmethod
    def of_hub(
        cls,
        data_dirs: Iterable[str | os.PathLike[str]],
        files: Iterable[str | None],
        cgroups: CgroupTree | None = None,
    ) -> SandboxSite:
        """The site of a hub whose data lives in `data_dirs` (the first holds the homes), whose
        `files` (configuration, audit log; None: none) servers must not read, and whose servers'
        resource limits are held by `cgroups` (`actors.limits`)."""
        dirs = [os.path.abspath(d) for d in data_dirs]
        others = [os.path.abspath(f) for f in files if f and os.path.exists(f)]
        home = os.path.expanduser("~")
        hidden = [*dirs, *others, *([home] if home != "/" else [])]
        return cls(os.path.join(dirs[0], "homes"), tuple(dict.fromkeys(hidden)), tuple(dirs), cgroups)

    def home(self, tenant: str) -> str:
        """Tenant `tenant`'s home (created on first use, readable by the hub's user only).

        Raises:
            SandboxError: it cannot be created.
        """
        path = os.path.join(self.homes, tenant)
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as exc:
            why = f"cannot create the home of tenant {tenant!r}, {path}: {exc.strerror}"
            raise SandboxError(why) from None
        return path


# --------------------------------------------------------------------------- one server


@dataclass(frozen=True)
class _Mount:
    kind: str  # "ro", "rw", "symlink", "tmpfs", "proc", "dev", "mask-file"
    dest: str
    source: str = ""

    def argv(self) -> tuple[str, ...]:
        if self.kind in ("ro", "rw"):
            return ("--ro-bind" if self.kind == "ro" else "--bind", self.source, self.dest)
        if self.kind == "symlink":
            return ("--symlink", self.source, self.dest)
        if self.kind == "mask-file":  # a device on a nodev mount: opening it fails (EACCES)
            return ("--ro-bind", "/dev/null", self.dest)
        return (f"--{self.kind}", self.dest)

    def covers(self, path: str) -> bool:
        return _under(path, self.dest)


@dataclass(frozen=True)
class Sandbox:
    """One server's sandbox: the bwrap argv in front of its command, and what it shows."""

    options: tuple[str, ...]  # bwrap and its options, up to the command
    home: str
    mounts: tuple[_Mount, ...]
    cwd: str  # its working directory inside (its cwd, else its home)

    @property
    def environment(self) -> dict[str, str]:
        """The base layer of its environment: HOME and TMPDIR as the sandbox has them (the tenant's
        and the server's `env` still override them)."""
        return {"HOME": self.home, "TMPDIR": "/tmp"}

    def shows(self, path: str) -> bool:
        """Whether host path `path` (absolute) is visible inside, as itself."""
        for candidate in dict.fromkeys((os.path.abspath(path), os.path.realpath(path))):
            last = next((m for m in reversed(self.mounts) if m.covers(candidate)), None)
            if last is None or last.kind not in ("ro", "rw", "symlink"):
                return False
        return True

    def wrap(self, executable: str, args: Sequence[str], cwd: str | None) -> list[str]:
        """The argv that runs `executable ARGS` (as `Popen` would, from `cwd`) in this sandbox.

        Raises:
            SandboxError: the executable would not be visible inside.
        """
        where = os.path.join(cwd, executable) if cwd is not None else executable
        if not self.shows(os.path.abspath(where)):
            raise SandboxError(
                f"command {where} is not visible in the sandbox: bind its folder (sandbox.binds) or "
                "install it under a system folder"
            )
        return [*self.options, "--chdir", self.cwd, "--", executable, *args]


def sandbox_for(
    site: SandboxSite | None, tenant: str, policy: SandboxConfig, cwd: str | None
) -> Sandbox | None:
    """The sandbox a server of `tenant` starts in, or None when it runs unsandboxed (the sandbox is
    disabled, or the host cannot sandbox and the server does not require it: warned once).

    Raises:
        SandboxRefused: the server requires a sandbox this host cannot give.
        SandboxError: the sandbox cannot be built as configured (a bind is missing...).
    """
    if site is None or not policy.enabled:
        return None
    support = host_support()
    if not support.available or support.bwrap is None:
        if policy.required:
            raise SandboxRefused(
                f"not started: sandbox.required is true and this host cannot sandbox: {support.detail}"
            )
        _warn_unsandboxed(support)
        return None
    return _plan(support.bwrap, site, tenant, policy, cwd)


_warned = threading.Event()


def _warn_unsandboxed(support: SandboxSupport) -> None:
    if not _warned.is_set():
        _warned.set()
        log.warning(
            "stdio servers run UNSANDBOXED (%s); set sandbox.required: true to refuse to start them instead",
            support.detail,
        )


def _plan(bwrap: str, site: SandboxSite, tenant: str, policy: SandboxConfig, cwd: str | None) -> Sandbox:
    """The sandbox of one start of a server (the steps of the module docstring, in order).

    Raises:
        SandboxError: a bind is missing or inside the hub's data, or the home cannot be made.
    """
    home = site.home(tenant)
    readonly = _readonly_roots()
    mounts = [*readonly, _Mount("proc", "/proc"), _Mount("dev", "/dev"), _Mount("tmpfs", "/tmp")]
    # A hub installed under /tmp (a CI checkout, a throwaway venv) is seen again over the private /tmp.
    over_tmp = _again(readonly, [_Mount("tmpfs", "/tmp")])
    bound = _binds(site, home, policy, cwd, readonly)
    mounts += [*over_tmp, *bound]
    mounts += _again(readonly, [*over_tmp, *bound])
    # (What does not exist is not masked: a mask would create it, through a rw bind on the host.)
    masks = [_mask(path) for path in _hidden(site) if os.path.lexists(path) and _shown(path, mounts)]
    mounts += masks
    mounts += _again(readonly, masks)
    mounts.append(_Mount("rw", home, home))
    options = [bwrap, "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    if policy.network == "none":
        options.append("--unshare-net")
    options += ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    for mount in mounts:
        options += mount.argv()
    for mask in masks:
        if mask.kind == "tmpfs":
            options += ["--remount-ro", mask.dest]
    options += ["--remount-ro", "/"]
    return Sandbox(tuple(options), home, tuple(mounts), cwd if cwd is not None else home)


def _again(readonly: Sequence[_Mount], covering: Sequence[_Mount]) -> list[_Mount]:
    """The read-only binds of `readonly` that a mount of `covering` hides, to be bound again after it."""
    return [m for m in readonly if m.kind == "ro" and any(_under(m.dest, c.dest) for c in covering)]


def _binds(
    site: SandboxSite, home: str, policy: SandboxConfig, cwd: str | None, readonly: Sequence[_Mount]
) -> list[_Mount]:
    """The server's `binds`, and its `cwd` read-write unless a read-only root already shows it.

    Raises:
        SandboxError: a bind does not exist, or lies inside the hub's data (outside the home).
    """
    binds = {b.path: b.mode for b in policy.binds}
    if cwd is not None and cwd not in binds and not any(_under(cwd, m.dest) for m in readonly):
        binds = {cwd: "rw", **binds}
    for path in binds:
        if not os.path.exists(path):
            raise SandboxError(f"sandbox bind {path} does not exist")
        if any(_under(path, private) for private in site.private) and not _under(path, home):
            raise SandboxError(
                f"sandbox bind {path} is inside the hub's data directory, which servers never see"
            )
    return [_Mount(mode, path, path) for path, mode in binds.items()]


@functools.cache
def _readonly_roots() -> tuple[_Mount, ...]:
    """The read-only part of every sandbox: system folders, the hub's interpreter and packages."""
    mounts: list[_Mount] = []
    for path in _SYSTEM:
        if os.path.islink(path):
            mounts.append(_Mount("symlink", path, os.readlink(path)))
        elif os.path.isdir(path):
            mounts.append(_Mount("ro", path, path))
    targets = [os.path.realpath(link) for link in _ETC_LINKS]
    for path in [*(t for t in targets if os.path.exists(t)), *_interpreter_folders()]:
        if not any(_under(path, m.dest) for m in mounts if m.kind == "ro"):
            mounts.append(_Mount("ro", path, path))
    return tuple(mounts)


def _interpreter_folders() -> list[str]:
    """The hub's interpreter (its prefixes) and, from a source checkout (`pip install -e`, not
    under a prefix), its own packages: sorted, the folders that exist."""
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    for name in _HUB_PACKAGES:
        spec = importlib.util.find_spec(name)
        prefixes.update((spec.submodule_search_locations or ()) if spec else ())
    return [path for path in sorted(os.path.abspath(p) for p in prefixes) if os.path.isdir(path)]


def _hidden(site: SandboxSite) -> list[str]:
    secrets = [p for pattern in _ETC_SECRETS for p in sorted(glob.glob(pattern))]
    return [*site.hidden, *secrets]


def _shown(path: str, mounts: Sequence[_Mount]) -> bool:
    """Whether `path` is visible through `mounts` (so far), and so needs a mask."""
    last = next((m for m in reversed(mounts) if m.covers(path)), None)
    return last is not None and last.kind in ("ro", "rw")


def _mask(path: str) -> _Mount:
    return _Mount("tmpfs", path) if os.path.isdir(path) else _Mount("mask-file", path)


def _under(path: str, root: str) -> bool:
    """Whether `path` is `root` or inside it (both absolute and normalised)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def sandbox_group(pid: int) -> int | None:
    """The process group of what runs inside the sandbox that bwrap `pid` started (its init, pid 1
    inside, leads it), or None if it cannot be found (not started yet, or already gone).

    Signals sent to bwrap itself are not passed on: a SIGTERM meant for the server goes here.
    """
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None
