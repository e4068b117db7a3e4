"""Fault injection, driven through the admin API, so tests can prove the sync recovers.

Request faults hit the next N requests that match a method and a path pattern: an HTTP error
(5xx, 503 with ``Retry-After``, or any Salesforce error body), a dropped connection, or a slow
answer. Record rules reject chosen records inside DML with a chosen error code, e.g.
``UNABLE_TO_LOCK_ROW`` once, or a validation rule for as long as it is installed.
"""

from __future__ import annotations

import itertools
import re
import threading
from dataclasses import asdict, dataclass
from typing import Any

from sandbox.salesforce.dml import RowError
from sandbox.salesforce.schema import SObjectDef

REQUEST_FAULT_KINDS = ("status", "drop", "slow", "invalid_session")


class FaultSpecError(ValueError):
    """An admin request describes a fault the sandbox cannot inject."""


@dataclass
class RequestFault:
    """Applies to the next ``count`` matching requests (``None``: until removed)."""

    id: int
    kind: str
    count: int | None = 1
    method: str | None = None
    path: str | None = None
    status: int = 503
    error_code: str = "SERVER_UNAVAILABLE"
    message: str = "Server temporarily unavailable, please retry"
    retry_after: int | None = None
    delay_seconds: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        return not self.path or re.search(self.path, path) is not None


@dataclass
class RecordRule:
    """Rows of ``object`` whose ``field`` equals ``value`` fail with ``error_code``."""

    id: int
    object: str
    field: str
    value: str
    error_code: str = "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    message: str = "Rejected by a sandbox validation rule"
    operations: list[str] | None = None
    times: int | None = None

    def matches(self, obj: SObjectDef, operation: str, values: dict[str, Any]) -> bool:
        if obj.name.lower() != self.object.lower():
            return False
        if self.operations and operation not in self.operations:
            return False
        for name, value in values.items():
            if name.lower() == self.field.lower():
                return value is not None and str(value).lower() == self.value.lower()
        return False


class Faults:
    """The installed faults; thread-safe, in memory (a restart clears them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.request_faults: list[RequestFault] = []
        self.record_rules: list[RecordRule] = []
        self.bulk_delay_seconds = 0.0

    def add(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Install a fault from its admin-API description; returns it with its id."""
        spec = dict(spec)
        kind = spec.pop("kind", None) or spec.pop("type", None)
        with self._lock:
            if kind in REQUEST_FAULT_KINDS:
                fault = self._build(RequestFault, kind=kind, **spec)
                if kind == "invalid_session":
                    fault.status, fault.error_code, fault.message = 401, "INVALID_SESSION_ID", "Session expired or invalid"
                self.request_faults.append(fault)
                return asdict(fault)
            if kind in ("record_error", "lock_row"):
                if kind == "lock_row":
                    spec.setdefault("error_code", "UNABLE_TO_LOCK_ROW")
                    spec.setdefault("message", "unable to obtain exclusive access to this record or 1 records")
                    spec.setdefault("times", 1)
                for required in ("object", "field", "value"):
                    if required not in spec:
                        raise FaultSpecError(f"a {kind} fault needs '{required}'")
                rule = self._build(RecordRule, **spec)
                self.record_rules.append(rule)
                return asdict(rule)
            if kind == "bulk_delay":
                self.bulk_delay_seconds = float(spec.get("seconds", 0))
                return {"kind": kind, "seconds": self.bulk_delay_seconds}
        allowed = list(REQUEST_FAULT_KINDS) + ["record_error", "lock_row", "bulk_delay"]
        raise FaultSpecError(f"unknown fault kind {kind!r}; one of {allowed}")

    def _build(self, cls, **spec):
        try:
            return cls(id=next(self._ids), **spec)
        except TypeError as exc:
            raise FaultSpecError(f"bad fault description: {exc}") from None

    def clear(self) -> None:
        with self._lock:
            self.request_faults.clear()
            self.record_rules.clear()
            self.bulk_delay_seconds = 0.0

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "request_faults": [asdict(f) for f in self.request_faults],
                "record_rules": [asdict(r) for r in self.record_rules],
                "bulk_delay_seconds": self.bulk_delay_seconds,
            }

    def take_request_fault(self, method: str, path: str) -> RequestFault | None:
        """The first fault matching this request, used up by one."""
        if not self.request_faults:
            return None
        with self._lock:
            for fault in self.request_faults:
                if fault.matches(method, path):
                    if fault.count is not None:
                        fault.count -= 1
                        if fault.count <= 0:
                            self.request_faults.remove(fault)
                    return fault
        return None

    def check_record(self, obj: SObjectDef, operation: str, values: dict[str, Any]) -> RowError | None:
        """The error for a row that a record rule rejects, else ``None``."""
        if not self.record_rules:
            return None
        with self._lock:
            for rule in self.record_rules:
                if rule.matches(obj, operation, values):
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times <= 0:
                            self.record_rules.remove(rule)
                    message = rule.message
                    if rule.error_code == "UNABLE_TO_LOCK_ROW" and values.get("Id"):
                        message = f"{message}: {values['Id']}"
                    return RowError(rule.error_code, message, [] if rule.field == "Id" else [rule.field])
        return None
