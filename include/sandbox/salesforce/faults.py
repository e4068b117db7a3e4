"""Fault injection in the Salesforce sandbox, driven through the admin API.

Request faults (:mod:`sandbox.request_faults`) hit the next N matching requests; the Salesforce
presets are ``invalid_session`` (401 ``INVALID_SESSION_ID``). Record rules reject chosen records
inside DML with a chosen error code: ``lock_row`` gives ``UNABLE_TO_LOCK_ROW`` once,
``record_error`` acts like a validation rule for as long as it is installed. ``bulk_delay`` keeps
Bulk 2.0 jobs and Bulk 1.0 batches ``InProgress`` for a while, so tests can watch or abort them.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import asdict, dataclass
from typing import Any

from sandbox.request_faults import FaultSpecError, RequestFaults
from sandbox.salesforce.dml import RowError
from sandbox.salesforce.schema import SObjectDef

__all__ = ["Faults", "FaultSpecError", "RecordRule"]

PRESETS = {
    "invalid_session": {"status": 401, "error_code": "INVALID_SESSION_ID", "message": "Session expired or invalid"},
}


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
    """Request faults, record rules and the Bulk delay; thread-safe, in memory."""

    def __init__(self) -> None:
        self.requests = RequestFaults(PRESETS)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.record_rules: list[RecordRule] = []
        self.bulk_delay_seconds = 0.0

    def add(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Install a fault from its admin-API description; returns it with its id."""
        spec = dict(spec)
        kind = spec.pop("kind", None) or spec.pop("type", None)
        if kind in ("record_error", "lock_row"):
            if kind == "lock_row":
                spec.setdefault("error_code", "UNABLE_TO_LOCK_ROW")
                spec.setdefault("message", "unable to obtain exclusive access to this record or 1 records")
                spec.setdefault("times", 1)
            for required in ("object", "field", "value"):
                if required not in spec:
                    raise FaultSpecError(f"a {kind} fault needs '{required}'")
            with self._lock:
                try:
                    rule = RecordRule(id=next(self._ids), **spec)
                except TypeError as exc:
                    raise FaultSpecError(f"bad fault description: {exc}") from None
                self.record_rules.append(rule)
            return asdict(rule)
        if kind == "bulk_delay":
            self.bulk_delay_seconds = float(spec.get("seconds", 0))
            return {"kind": kind, "seconds": self.bulk_delay_seconds}
        if kind not in self.requests.kinds():
            allowed = self.requests.kinds() + ["record_error", "lock_row", "bulk_delay"]
            raise FaultSpecError(f"unknown fault kind {kind!r}; one of {allowed}")
        return self.requests.add(kind, spec)

    def clear(self) -> None:
        self.requests.clear()
        with self._lock:
            self.record_rules.clear()
            self.bulk_delay_seconds = 0.0

    def describe(self) -> dict[str, Any]:
        with self._lock:
            rules = [asdict(r) for r in self.record_rules]
        return {"request_faults": self.requests.describe(), "record_rules": rules,
                "bulk_delay_seconds": self.bulk_delay_seconds}

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
