"""Secrets of a configuration: `Secret` (a key) and `SecretMap` (an environment, HTTP headers).

Both print as `********`; the real value is only reachable through `reveal()`, which the runtime
calls where it hands the value to a child process or an upstream. `redact` masks such values in
text the hub did not write itself. Pure data: safe to use from any thread.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

MASK = "********"


class Secret:
    """A secret string: prints as `********`; `reveal()` gives the value.

    Compared in constant time, so key checks do not leak a prefix through timing.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value. Call only where the value leaves for its legitimate use."""
        return self._value

    def matches(self, candidate: str) -> bool:
        """Whether `candidate` equals the secret, compared in constant time."""
        import hmac

        return hmac.compare_digest(self._value.encode(), candidate.encode())

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and self.matches(other._value)

    def __hash__(self) -> int:
        return hash(self._value)


class SecretMap(Mapping[str, str]):
    """An immutable name → secret value mapping (environment, headers).

    Iterating and indexing give the real values (the runtime needs them to start children); `repr`,
    `str` and `masked()` show the names with every value as `********`.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, str] | None = None) -> None:
        self._data = dict(data or {})

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def masked(self) -> dict[str, str]:
        """The names, each mapped to `********`: what output and logs may show."""
        return dict.fromkeys(self._data, MASK)

    def reveal(self) -> dict[str, str]:
        """A plain copy with the real values, for a child process environment or HTTP headers."""
        return dict(self._data)

    def __repr__(self) -> str:
        return f"SecretMap({self.masked()!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretMap) and self._data == other._data

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._data.items())))


_REDACT_MIN = 4  # shorter values are no secret, and masking them would garble ordinary words


def redact(text: str, *maps: SecretMap) -> str:
    """`text` with every value of `maps` (of 4 characters or more) shown as `********`: for text
    the hub did not write itself, such as a server's stderr, which may echo its environment."""
    values = {v for secrets in maps for v in secrets.values() if len(v) >= _REDACT_MIN}
    for value in sorted(values, key=len, reverse=True):  # a value inside a longer one: the longer first
        text = text.replace(value, MASK)
    return text
