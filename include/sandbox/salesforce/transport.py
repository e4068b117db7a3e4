"""What every API endpoint shares: Salesforce's error shapes, authentication and API counting.

REST and Bulk API 2.0 answer errors as a JSON array ``[{"message", "errorCode", "fields"}]``;
Bulk API 1.0 answers an ``error`` document (``exceptionCode``, ``exceptionMessage``; XML or JSON, see
:mod:`sandbox.salesforce.bulk1_wire`) and reports a bad session with HTTP 400, not 401. Every authenticated request counts against the org's daily allowance.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sandbox.salesforce.org import Org


class SfHttpError(Exception):
    """An error answer: HTTP status, Salesforce error code, message and fields."""

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(payload, separators=(",", ":")),
        status_code=status,
        media_type="application/json;charset=UTF-8",
        headers=headers,
    )


def rest_error_response(exc: SfHttpError) -> Response:
    body: dict[str, Any] = {"message": exc.message, "errorCode": exc.code}
    if exc.fields is not None:
        body["fields"] = exc.fields
    return json_response([body], exc.status)


def org_of(request: Request) -> Org:
    return request.app.state.org


def authenticate(request: Request, *, bulk_v1: bool = False) -> str:
    """The user of the request's session; counts the request against the daily allowance."""
    org = org_of(request)
    if bulk_v1:
        token = request.headers.get("x-sfdc-session", "")
    else:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("bearer", "oauth"):
            token = ""
    user = org.sessions.user_for(token.strip()) if token else None
    if user is None:
        if bulk_v1:
            raise SfHttpError(400, "InvalidSessionId", "Invalid session id")
        raise SfHttpError(401, "INVALID_SESSION_ID", "Session expired or invalid")
    allowed, _used, _max = org.usage.record()
    if not allowed:
        if bulk_v1:
            raise SfHttpError(403, "ExceededQuota", "TotalRequests Limit exceeded.")
        raise SfHttpError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
    return user


async def read_json(request: Request) -> Any:
    """The request body as JSON, or Salesforce's JSON_PARSER_ERROR."""
    body = await request.body()
    try:
        return json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise SfHttpError(400, "JSON_PARSER_ERROR", f"Unexpected character in the request body: {exc}") from None


def check_version(version: str) -> str:
    """The API version from a ``vNN.N`` path segment (``NOT_FOUND`` if it is not one)."""
    try:
        number = float(version)
    except ValueError:
        raise SfHttpError(404, "NOT_FOUND", "The requested resource does not exist") from None
    if number < 20 or number > 70:
        raise SfHttpError(404, "NOT_FOUND", "The requested resource does not exist")
    return version
