"""Request faults both sandboxes inject through their admin APIs: errors, drops, slowness.

A fault applies to the next ``count`` requests (``None``: until removed) whose method and path
match. ``status`` answers an error (the sandbox renders the body in its own API's shape), ``drop``
closes the connection without an answer, ``slow`` delays the answer. Each sandbox adds presets:
named faults that are a ``status`` fault with its own defaults (an expired session, a rate limit).
"""

from __future__ import annotations

import contextlib
import itertools
import re
import threading
from dataclasses import asdict, dataclass, fields
from typing import Any

BASE_KINDS = ("status", "drop", "slow")


class FaultSpecError(ValueError):
    """An admin request describes a fault the sandbox cannot inject."""


@dataclass
class RequestFault:
    """One installed fault; ``preset`` names the preset it came from, if any."""

    id: int
    kind: str
    count: int | None = 1
    method: str | None = None
    path: str | None = None
    status: int = 503
    error_code: Any = "SERVER_UNAVAILABLE"
    message: str = "Server temporarily unavailable, please retry"
    retry_after: int | None = None
    delay_seconds: float = 0.0
    preset: str | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        return not self.path or re.search(self.path, path) is not None


_FIELD_NAMES = {f.name for f in fields(RequestFault)} - {"id", "kind", "preset"}


class RequestFaults:
    """The installed request faults; thread-safe, in memory (a restart clears them)."""

    def __init__(self, presets: dict[str, dict[str, Any]] | None = None):
        self.presets = presets or {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.faults: list[RequestFault] = []

    def kinds(self) -> list[str]:
        return list(BASE_KINDS) + list(self.presets)

    def add(self, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Install a fault of ``kind`` (a base kind or a preset) described by ``spec``."""
        unknown = set(spec) - _FIELD_NAMES
        if unknown:
            raise FaultSpecError(f"unknown fault attributes {sorted(unknown)}; allowed: {sorted(_FIELD_NAMES)}")
        attributes: dict[str, Any] = {}
        preset = None
        if kind in self.presets:
            preset, attributes = kind, dict(self.presets[kind])
            kind = attributes.pop("kind", "status")
        elif kind not in BASE_KINDS:
            raise FaultSpecError(f"unknown fault kind {kind!r}; one of {self.kinds()}")
        attributes.update(spec)
        if kind == "status" and not 400 <= int(attributes.get("status", 503)) <= 599:
            raise FaultSpecError("a status fault answers a 4xx or 5xx status")
        with self._lock:
            fault = RequestFault(id=next(self._ids), kind=kind, preset=preset, **attributes)
            self.faults.append(fault)
        return asdict(fault)

    def take(self, method: str, path: str) -> RequestFault | None:
        """The first fault matching this request, used up by one."""
        if not self.faults:
            return None
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    if fault.count is not None:
                        fault.count -= 1
                        if fault.count <= 0:
                            self.faults.remove(fault)
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self.faults]


def drop_connection(send: Any) -> None:
    """Close the TCP connection without an answer, as a network failure would."""
    # uvicorn hands the app the bound ``send`` of its request cycle, which holds the transport.
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise ConnectionAbortedError("injected fault: connection dropped")
    with contextlib.suppress(Exception):
        transport.abort()
