"""Placement: which replica of a cluster runs each server, by rendezvous hashing.

Rendezvous (highest random weight) hashing: each replica id gets a weight for `(tenant, server)`
from a hash of the three, and the replica of the highest weight runs the server. Every replica
computes the same answer from the same live set, with no coordination; when a replica joins it
takes about 1/n of the servers, each from whichever replica had it, and when one leaves only its
own servers move, each to the replica that ranks second for it.

Pure functions: safe to use from any thread.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping


def weight(replica: str, tenant: str, server: str) -> int:
    """The weight of `replica` for server `server` of `tenant`: 64 bits of a BLAKE2b hash of the
    three, the same in every process (unlike `hash`, which Python salts per process)."""
    # Each part's length first, so no two different triples ever hash the same text.
    text = f"{len(replica)}:{replica}/{len(tenant)}:{tenant}/{len(server)}:{server}"
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(replicas: Iterable[str], tenant: str, server: str) -> str | None:
    """The replica, of `replicas`, that runs server `server` of `tenant` (None: no replica).

    Equal weights (all but impossible) go to the greater replica id, so the answer never depends on
    the order of `replicas`.
    """
    best: tuple[int, str] | None = None
    for replica in replicas:
        candidate = (weight(replica, tenant, server), replica)
        if best is None or candidate > best:
            best = candidate
    return best[1] if best is not None else None


def assign(replicas: Collection[str], servers: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The owner of each `(tenant, server)` of `servers` among `replicas` (which must not be empty)."""
    if not replicas:
        raise ValueError("no replica to place servers on")
    placed = {}
    for tenant, server in servers:
        chosen = owner(replicas, tenant, server)
        assert chosen is not None
        placed[(tenant, server)] = chosen
    return placed


def share(
    replica: str, replicas: Collection[str], servers: Mapping[str, Iterable[str]]
) -> dict[str, frozenset[str]]:
    """Per tenant of `servers` (tenant -> its server names), the servers `replica` runs when the
    live replicas are `replicas` (`replica` counts as live even if it is not among them)."""
    live = {*replicas, replica}
    return {
        tenant: frozenset(s for s in names if owner(live, tenant, s) == replica)
        for tenant, names in servers.items()
    }
