"""The mapping checked against the Salesforce org, before a session writes anything.

Every mapped field must exist and be writable, every relationship column must name a
relationship whose target field is an external id (or id lookup), the upsert key must be an
external id and a delete flag a checkbox. All problems are reported at once, each naming the
mapping file, the object and the field (``docs/operations.md``, "Preflight").

What passes is what the other tasks need to know of the org: each column's Salesforce type (the
extract converts values with it) and each lookup (:class:`~zuora_sync.lookups.Lookup`: its target
object, and whether Salesforce requires it), which decides which missing targets cost a row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zuora_sync.lookups import Lookup
from zuora_sync.mapping import Mapping

__all__ = ["Preflight", "check_mapping"]


@dataclass
class Preflight:
    """The outcome of :func:`check_mapping`.

    :ivar types: ``{object: {column: Salesforce type}}``.
    :ivar lookups: ``{object: [Lookup.as_dict(), ...]}``.
    :ivar problems: what does not fit, one sentence each; empty when the mapping fits.
    """

    types: dict[str, dict[str, str]] = field(default_factory=dict)
    lookups: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def as_xcom(self) -> dict[str, Any]:
        return {"types": self.types, "lookups": self.lookups}


def check_mapping(mapping: Mapping, objects: list[str], describe: Callable[[str], dict]) -> Preflight:
    """Check ``objects`` of ``mapping`` against the org.

    :param describe: the REST ``describe`` of an sObject (``{"fields": [...]}``); an exception
        means the object is missing or not accessible, and becomes a problem.
    """
    result = Preflight()
    described: dict[str, dict[str, Any] | None] = {}

    def fields_of(name: str) -> dict[str, Any] | None:
        if name not in described:
            try:
                described[name] = {f["name"].lower(): f for f in describe(name)["fields"]}
            except Exception as exc:  # noqa: BLE001 - the object itself is missing or not accessible
                result.problems.append(f"{name}: cannot describe it in Salesforce ({exc})")
                described[name] = None
        return described[name]

    for name in objects:
        obj = mapping.get(name)
        fields = fields_of(obj.salesforce)
        if fields is None:
            continue
        where = f"{mapping.source}: object {name} → {obj.salesforce}"
        column_types: dict[str, str] = {}
        object_lookups: list[dict[str, Any]] = []
        key = fields.get(obj.key.lower())
        if key is None or not (key.get("externalId") or key.get("idLookup")):
            result.problems.append(f"{where}, field {obj.key}: the upsert key must be an external id field")
        by_relationship = {(f.get("relationshipName") or "").lower(): f for f in fields.values()
                           if f.get("relationshipName")}
        for column in obj.columns + obj.second_pass:
            info = (by_relationship if column.is_relationship else fields).get(column.field.lower())
            if info is None:
                what = "relationship" if column.is_relationship else "field"
                result.problems.append(f"{where}, field {column.salesforce}: no such {what} in Salesforce")
                continue
            if not (info.get("createable") and info.get("updateable")) and column.salesforce != obj.key:
                result.problems.append(f"{where}, field {info['name']}: not writable (createable and updateable)")
            if not column.is_relationship:
                column_types[column.salesforce] = info.get("type", "string")
                continue
            target_name = (info.get("referenceTo") or ["?"])[0]
            target_field = column.salesforce.split(".")[1]
            target = fields_of(target_name)
            target_info = (target or {}).get(target_field.lower())
            if target is not None and (target_info is None or not (target_info.get("externalId")
                                                                   or target_info.get("idLookup"))):
                result.problems.append(f"{where}, field {column.salesforce}: {target_field} is not an external id "
                                       f"of {target_name}")
            column_types[column.salesforce] = "string"
            # A parent link is required by the mapping, a master-detail one by Salesforce too.
            object_lookups.append(Lookup(column.salesforce, target_name,
                                         required=not (column.optional and info.get("nillable", True))).as_dict())
        if obj.flag:
            flag = fields.get(obj.flag.lower())
            if flag is None or flag.get("type") != "boolean":
                result.problems.append(f"{where}, field {obj.flag}: the delete flag must be a checkbox field")
        result.types[name] = column_types
        result.lookups[name] = object_lookups
    return result
