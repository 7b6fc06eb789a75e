"""Protocol version and negotiation (sageLLM protocol v0.1).

No protocol type carries a version field, so the version never travels on the wire by itself;
endpoints exchange it out of band and call :func:`negotiate_version`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "CURRENT_VERSION",
    "PROTOCOL_MAJOR",
    "PROTOCOL_MINOR",
    "PROTOCOL_VERSION",
    "ProtocolVersion",
    "negotiate_version",
]

PROTOCOL_VERSION = "0.1"
PROTOCOL_MAJOR = 0
PROTOCOL_MINOR = 1

_VERSION_RE = re.compile(r"([0-9]+)\.([0-9]+)")


@dataclass(frozen=True, order=True)
class ProtocolVersion:
    """A ``MAJOR.MINOR`` protocol version; ordered by (major, minor).

    Attributes:
        major: Incompatible changes bump it.
        minor: Backward-compatible additions bump it.
    """

    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> ProtocolVersion:
        """Parses ``"M.m"``.

        Args:
            text: Version string such as ``"0.1"``.

        Returns:
            The version.

        Raises:
            ValueError: ``text`` is not two dot-separated decimal integers.

        Examples:
            >>> ProtocolVersion.parse("0.1")
            ProtocolVersion(major=0, minor=1)
        """
        match = _VERSION_RE.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"invalid protocol version {text!r}, expected 'MAJOR.MINOR'")
        return cls(int(match.group(1)), int(match.group(2)))

    def is_compatible_with(self, other: ProtocolVersion) -> bool:
        """Whether an implementation of ``self`` can serve a peer that requires ``other``.

        True when the majors match and ``self.minor >= other.minor``.
        """
        return self.major == other.major and self.minor >= other.minor

    def __str__(self) -> str:
        """``"MAJOR.MINOR"``."""
        return f"{self.major}.{self.minor}"


CURRENT_VERSION = ProtocolVersion(PROTOCOL_MAJOR, PROTOCOL_MINOR)


def negotiate_version(client_version: str) -> ProtocolVersion:
    """Agrees on a protocol version with a client.

    Args:
        client_version: The version the client requires, ``"M.m"``.

    Returns:
        :data:`CURRENT_VERSION` when the client's version has the same major and is not newer.

    Raises:
        ValueError: Malformed version, or a version this implementation cannot serve.
    """
    client = ProtocolVersion.parse(client_version)
    if not CURRENT_VERSION.is_compatible_with(client):
        raise ValueError(
            f"Protocol version mismatch: server supports {CURRENT_VERSION}, "
            f"client requires {client}"
        )
    return CURRENT_VERSION
