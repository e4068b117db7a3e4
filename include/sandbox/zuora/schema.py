"""The Zuora tenant's objects and fields, loaded from ``schema.yaml``.

One declarative table drives everything that must agree on names: the SQLite tables (Data Query
sees lower-cased names), ZOQL and ``describe``, the actions API's validation, the generator and the
callout event names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

FIELD_TYPES = ("id", "string", "integer", "decimal", "boolean", "date", "datetime", "picklist")
SYSTEM_FIELDS = ("Id", "CreatedById", "CreatedDate", "UpdatedById", "UpdatedDate")
_FIELD_KEYS = {"type", "length", "values", "references", "required", "createable", "updateable", "unique"}
_OBJECT_KEYS = {"label", "events", "fields"}


class TenantSchemaError(ValueError):
    """The schema file is wrong; the message names the object and the field."""


@dataclass
class ZField:
    """One field of a Zuora object."""

    name: str
    type: str
    length: int = 0
    values: list[str] = field(default_factory=list)
    references: str | None = None
    required: bool = False
    createable: bool = True
    updateable: bool = True
    unique: bool = False
    system: bool = False

    @property
    def column(self) -> str:
        """The Data Query (and SQLite) column name."""
        return self.name.lower()


@dataclass
class ZObject:
    """One Zuora object: its fields in order, its table, its callout event names."""

    name: str
    label: str
    events: dict[str, str]
    fields: dict[str, ZField]

    def __post_init__(self) -> None:
        self._by_lower = {name.lower(): f for name, f in self.fields.items()}

    @property
    def table(self) -> str:
        return self.name.lower()

    def field(self, name: str) -> ZField | None:
        """The field called ``name``; Zuora field names are case-insensitive."""
        return self._by_lower.get(name.lower())


class TenantSchema:
    """All objects of the tenant, by (case-insensitive) name or table name."""

    def __init__(self, objects: dict[str, ZObject]):
        self.objects = objects
        self._by_lower = {name.lower(): obj for name, obj in objects.items()}

    def get(self, name: str) -> ZObject | None:
        return self._by_lower.get(name.lower())


def load_schema(document: dict[str, Any] | None = None) -> TenantSchema:
    """The tenant schema from ``document`` (default: the ``schema.yaml`` shipped here)."""
    if document is None:
        text = resources.files("sandbox.zuora").joinpath("schema.yaml").read_text(encoding="utf-8")
        document = yaml.safe_load(text)
    objects: dict[str, ZObject] = {}
    for name, spec in (document.get("objects") or {}).items():
        where = f"object {name}"
        if not isinstance(spec, dict) or set(spec) - _OBJECT_KEYS:
            raise TenantSchemaError(f"{where}: expected a mapping with keys {sorted(_OBJECT_KEYS)}")
        fields = {
            "Id": ZField("Id", "id", createable=False, updateable=False, system=True),
        }
        for field_name, attrs in (spec.get("fields") or {}).items():
            fields[field_name] = _field(field_name, attrs, f"{where}, field {field_name}")
        fields["CreatedById"] = ZField("CreatedById", "id", createable=False, updateable=False, system=True)
        fields["CreatedDate"] = ZField("CreatedDate", "datetime", createable=False, updateable=False, system=True)
        fields["UpdatedById"] = ZField("UpdatedById", "id", createable=False, updateable=False, system=True)
        fields["UpdatedDate"] = ZField("UpdatedDate", "datetime", createable=False, updateable=False, system=True)
        events = spec.get("events") or {}
        if set(events) != {"create", "update", "delete"}:
            raise TenantSchemaError(f"{where}: events must name create, update and delete")
        objects[name] = ZObject(name, str(spec.get("label") or name), dict(events), fields)
    for obj in objects.values():
        for f in obj.fields.values():
            if f.references and f.references not in objects:
                raise TenantSchemaError(f"object {obj.name}, field {f.name}: references unknown object {f.references}")
    return TenantSchema(objects)


def _field(name: str, attrs: Any, where: str) -> ZField:
    if name in SYSTEM_FIELDS:
        raise TenantSchemaError(f"{where}: system fields are added automatically")
    if not isinstance(attrs, dict) or set(attrs) - _FIELD_KEYS:
        raise TenantSchemaError(f"{where}: expected a mapping with keys from {sorted(_FIELD_KEYS)}")
    ftype = attrs.get("type")
    if ftype not in FIELD_TYPES:
        raise TenantSchemaError(f"{where}: type {ftype!r} is not one of {list(FIELD_TYPES)}")
    if ftype == "picklist" and not attrs.get("values"):
        raise TenantSchemaError(f"{where}: a picklist needs values")
    return ZField(
        name=name,
        type=ftype,
        length=int(attrs.get("length", 255 if ftype in ("string", "picklist") else 0)),
        values=[str(v) for v in attrs.get("values") or []],
        references=attrs.get("references"),
        required=bool(attrs.get("required", False)),
        createable=bool(attrs.get("createable", True)),
        updateable=bool(attrs.get("updateable", True)),
        unique=bool(attrs.get("unique", False)),
    )
