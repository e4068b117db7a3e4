"""Request bodies the web app reads itself: capped in size, then parsed as one JSON object.

``POST /events`` and ``PUT /settings`` read their bodies here rather than through FastAPI, so a
client cannot make the API server hold more than the route's limit in memory (a too-large body is
refused by its ``Content-Length`` before anything is read, or as soon as more than the limit has
arrived), and a malformed body is a 400 with a reason, never a 500.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request


class Refused(Exception):
    """A request answered with an error status and a reason (never containing a secret)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing (413) more than ``limit`` bytes by Content-Length or by what arrives."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise Refused(400, "Content-Length is not a number") from None
        if size > limit:
            raise Refused(413, f"body of {size} bytes is larger than the {limit} bytes allowed")
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise Refused(413, f"body is larger than the {limit} bytes allowed")
        chunks.append(chunk)
    return b"".join(chunks)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The JSON object in ``body`` (UTF-8, strict JSON: no NaN or Infinity), or :class:`Refused` (400)."""
    if not body.strip():
        raise Refused(400, "empty body: a JSON object is expected")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "body is not UTF-8 text") from None
    try:
        payload = json.loads(text, parse_constant=_no_constants)
    except ValueError as exc:  # also a number beyond Python's 4300-digit conversion limit
        raise Refused(400, f"body is not valid JSON: {exc}") from None
    except RecursionError:  # a deeply nested array fits in a few KiB
        raise Refused(400, "body is nested too deeply") from None
    if not isinstance(payload, dict):
        raise Refused(400, f"body must be a JSON object, not {type(payload).__name__}")
    return payload


__all__ = ["Refused", "parse_json_object", "read_body"]
