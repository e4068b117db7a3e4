"""The sandbox org's metadata: objects, fields and relationships, loaded from declarative YAML.

``schema.yaml`` beside this module holds the Zuora 360 objects and the standard objects the sync
touches. Extra files (``--schema``, or fields added through the admin API) are merged on top, so a
user can add the custom fields their mapping needs without touching code. This module validates the
files, adds the system fields every Salesforce object has, and renders ``describe`` results with
Salesforce's JSON keys.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

FIELD_TYPES = {
    # type: (soapType, sortable/filterable)
    "id": "tns:ID",
    "reference": "tns:ID",
    "string": "xsd:string",
    "textarea": "xsd:string",
    "email": "xsd:string",
    "phone": "xsd:string",
    "url": "xsd:string",
    "picklist": "xsd:string",
    "boolean": "xsd:boolean",
    "int": "xsd:int",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
}
TEXT_TYPES = frozenset({"string", "textarea", "email", "phone", "url", "picklist"})
DECIMAL_TYPES = frozenset({"double", "currency", "percent"})
SYSTEM_FIELDS = (
    "Id", "IsDeleted", "OwnerId", "CreatedDate", "CreatedById", "LastModifiedDate",
    "LastModifiedById", "SystemModstamp",
)
_FIELD_KEYS = {
    "type", "label", "length", "precision", "scale", "nillable", "externalId", "unique",
    "caseSensitive", "idLookup", "defaultValue", "picklistValues", "referenceTo",
    "relationshipName", "childRelationshipName", "masterDetail", "reparentable", "updateable",
    "createable",
}
_OBJECT_KEYS = {"label", "labelPlural", "keyPrefix", "custom", "fields", "createable", "updateable", "deletable", "owned"}


class SchemaError(ValueError):
    """A schema file is wrong; the message names the file, the object and the field."""


@dataclass
class FieldDef:
    """One field of an sObject, with the attributes ``describe`` reports."""

    name: str
    type: str
    label: str
    custom: bool = False
    length: int = 0
    precision: int = 0
    scale: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    external_id: bool = False
    unique: bool = False
    case_sensitive: bool = False
    id_lookup: bool = False
    defaulted_on_create: bool = False
    default_value: Any = None
    picklist_values: list[str] = field(default_factory=list)
    reference_to: list[str] = field(default_factory=list)
    relationship_name: str | None = None
    child_relationship_name: str | None = None
    master_detail: bool = False
    name_field: bool = False

    @property
    def required(self) -> bool:
        """Must be given on create (Salesforce's REQUIRED_FIELD_MISSING)."""
        return not self.nillable and self.createable and not self.defaulted_on_create

    @property
    def is_key(self) -> bool:
        """Can be used to find a record: an external id, a unique field, or an id lookup."""
        return self.external_id or self.id_lookup or self.unique

    def describe(self) -> dict[str, Any]:
        """This field as a DescribeFieldResult."""
        is_text = self.type in TEXT_TYPES or self.type in ("id", "reference")
        return {
            "aggregatable": self.type not in ("textarea",),
            "aiPredictionField": False,
            "autoNumber": False,
            "byteLength": self.length * 3 if is_text else 0,
            "calculated": False,
            "calculatedFormula": None,
            "cascadeDelete": self.master_detail,
            "caseSensitive": self.case_sensitive,
            "compoundFieldName": None,
            "controllerName": None,
            "createable": self.createable,
            "custom": self.custom,
            "defaultValue": self.default_value if self.type != "boolean" else bool(self.default_value),
            "defaultValueFormula": None,
            "defaultedOnCreate": self.defaulted_on_create,
            "dependentPicklist": False,
            "deprecatedAndHidden": False,
            "digits": 9 if self.type == "int" else 0,
            "displayLocationInDecimal": False,
            "encrypted": False,
            "externalId": self.external_id,
            "extraTypeInfo": None,
            "filterable": self.type != "textarea",
            "filteredLookupInfo": None,
            "formulaTreatNullNumberAsZero": False,
            "groupable": self.type not in DECIMAL_TYPES and self.type not in ("textarea", "datetime"),
            "highScaleNumber": False,
            "htmlFormatted": False,
            "idLookup": self.id_lookup,
            "inlineHelpText": None,
            "label": self.label,
            "length": self.length if is_text else 0,
            "mask": None,
            "maskType": None,
            "name": self.name,
            "nameField": self.name_field,
            "namePointing": False,
            "nillable": self.nillable,
            "permissionable": self.nillable and self.custom,
            "picklistValues": [
                {"active": True, "defaultValue": False, "label": value, "validFor": None, "value": value}
                for value in self.picklist_values
            ],
            "polymorphicForeignKey": False,
            "precision": self.precision,
            "queryByDistance": False,
            "referenceTargetField": None,
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "relationshipOrder": 0 if self.master_detail else None,
            "restrictedDelete": False,
            "restrictedPicklist": False,
            "scale": self.scale,
            "searchPrefilterable": self.type == "reference",
            "soapType": FIELD_TYPES[self.type],
            "sortable": self.type != "textarea",
            "type": self.type,
            "unique": self.unique,
            "updateable": self.updateable,
            "writeRequiresMasterRead": False,
        }


@dataclass
class ChildRelationship:
    """A reference from ``child`` (its field ``field``) to the object that holds this entry."""

    child: str
    field: str
    relationship_name: str | None
    cascade_delete: bool

    def describe(self) -> dict[str, Any]:
        return {
            "cascadeDelete": self.cascade_delete,
            "childSObject": self.child,
            "deprecatedAndHidden": False,
            "field": self.field,
            "junctionIdListNames": [],
            "junctionReferenceTo": [],
            "relationshipName": self.relationship_name,
            "restrictedDelete": False,
        }


@dataclass
class SObjectDef:
    """One sObject: its fields in declaration order and the references that point at it."""

    name: str
    label: str
    label_plural: str
    key_prefix: str
    custom: bool
    fields: dict[str, FieldDef]
    child_relationships: list[ChildRelationship] = field(default_factory=list)
    # Whether the API may create, update or delete records at all (setup objects such as
    # Organization may only be read).
    createable: bool = True
    updateable: bool = True
    deletable: bool = True

    def __post_init__(self) -> None:
        self._by_lower = {name.lower(): f for name, f in self.fields.items()}
        self._by_relationship = {
            f.relationship_name.lower(): f for f in self.fields.values() if f.relationship_name
        }

    def field(self, name: str) -> FieldDef | None:
        """The field called ``name`` (API names are case-insensitive), or ``None``."""
        return self._by_lower.get(name.lower())

    def relationship(self, name: str) -> FieldDef | None:
        """The reference field whose relationship name is ``name``, or ``None``."""
        return self._by_relationship.get(name.lower())

    @property
    def is_detail(self) -> bool:
        """The object is the detail side of a master-detail relationship (it has no owner)."""
        return any(f.master_detail for f in self.fields.values())

    def urls(self, version: str) -> dict[str, str]:
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {
            "compactLayouts": f"{base}/describe/compactLayouts",
            "rowTemplate": f"{base}/{{ID}}",
            "approvalLayouts": f"{base}/describe/approvalLayouts",
            "defaultValues": f"{base}/defaultValues?recordTypeId&fields",
            "listviews": f"{base}/listviews",
            "describe": f"{base}/describe",
            "quickActions": f"{base}/quickActions",
            "layouts": f"{base}/describe/layouts",
            "sobject": base,
        }

    def describe_global_entry(self, version: str) -> dict[str, Any]:
        """The entry for this object in the global describe."""
        return {
            "activateable": False,
            "associateEntityType": None,
            "associateParentEntity": None,
            "createable": self.createable,
            "custom": self.custom,
            "customSetting": False,
            "deepCloneable": False,
            "deletable": self.deletable,
            "deprecatedAndHidden": False,
            "feedEnabled": False,
            "hasSubtypes": False,
            "isInterface": False,
            "isSubtype": False,
            "keyPrefix": self.key_prefix,
            "label": self.label,
            "labelPlural": self.label_plural,
            "layoutable": True,
            "mergeable": self.name == "Account",
            "mruEnabled": True,
            "name": self.name,
            "queryable": True,
            "replicateable": True,
            "retrieveable": True,
            "searchable": True,
            "triggerable": True,
            "undeletable": self.deletable,
            "updateable": self.updateable,
            "urls": {
                key: value
                for key, value in self.urls(version).items()
                if key in ("compactLayouts", "rowTemplate", "defaultValues", "describe", "sobject")
            },
        }

    def describe(self, version: str) -> dict[str, Any]:
        """This object as a DescribeSObjectResult (``GET sobjects/X/describe``)."""
        result = self.describe_global_entry(version)
        result.update(
            {
                "actionOverrides": [],
                "childRelationships": [rel.describe() for rel in self.child_relationships],
                "compactLayoutable": True,
                "defaultImplementation": None,
                "extendedBy": None,
                "extendsInterfaces": None,
                "fields": [f.describe() for f in self.fields.values()],
                "implementedBy": None,
                "implementsInterfaces": None,
                "listviewable": None,
                "lookupLayoutable": None,
                "namedLayoutInfos": [],
                "networkScopeFieldName": None,
                "recordTypeInfos": [
                    {
                        "active": True,
                        "available": True,
                        "defaultRecordTypeMapping": True,
                        "developerName": "Master",
                        "master": True,
                        "name": "Master",
                        "recordTypeId": "012000000000000AAA",
                        "urls": {"layout": f"/services/data/v{version}/sobjects/{self.name}/describe/layouts/012000000000000AAA"},
                    }
                ],
                "searchLayoutable": True,
                "sobjectDescribeOption": "FULL",
                "supportedScopes": [{"label": "All " + self.label_plural.lower(), "name": "everything"}],
                "urls": self.urls(version),
            }
        )
        return result


class Schema:
    """All objects of the org, looked up case-insensitively by API name or key prefix."""

    def __init__(self, objects: dict[str, SObjectDef]):
        self.objects = objects
        self._by_lower = {name.lower(): obj for name, obj in objects.items()}
        self._by_prefix = {obj.key_prefix: obj for obj in objects.values()}

    def get(self, name: str) -> SObjectDef | None:
        return self._by_lower.get(name.lower())

    def by_key_prefix(self, prefix: str) -> SObjectDef | None:
        return self._by_prefix.get(prefix)

    def describe_global(self, version: str) -> dict[str, Any]:
        return {
            "encoding": "UTF-8",
            "maxBatchSize": 200,
            "sobjects": [obj.describe_global_entry(version) for obj in self.objects.values()],
        }


def builtin_schema_document() -> dict[str, Any]:
    """The schema shipped with the sandbox (``schema.yaml``)."""
    text = resources.files("sandbox.salesforce").joinpath("schema.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def read_schema_file(path: str | Path) -> dict[str, Any]:
    """A user's schema file, checked to be a YAML or JSON mapping with ``objects``."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SchemaError(f"{path}: cannot read the schema file: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise SchemaError(f"{path}: not valid YAML/JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("objects"), dict):
        raise SchemaError(f"{path}: a schema file is a mapping with an 'objects' mapping at the top")
    return document


def merge_documents(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with the objects and fields of ``extra`` added (or replacing those of the same name)."""
    merged = copy.deepcopy(base)
    for name, obj in (extra.get("objects") or {}).items():
        if not isinstance(obj, dict):
            raise SchemaError(f"object {name}: expected a mapping")
        target = merged["objects"].setdefault(name, {})
        for key, value in obj.items():
            if key == "fields":
                target.setdefault("fields", {}).update(value or {})
            else:
                target[key] = value
    return merged


def build_schema(document: dict[str, Any], source: str = "schema") -> Schema:
    """Validate a schema document and build the :class:`Schema`, adding system fields."""
    objects: dict[str, SObjectDef] = {}
    for name, spec in document["objects"].items():
        objects[name] = _build_object(name, spec, source)
    prefixes: dict[str, str] = {}
    for obj in objects.values():
        if obj.key_prefix in prefixes:
            raise SchemaError(
                f"{source}: objects {prefixes[obj.key_prefix]} and {obj.name} share key prefix {obj.key_prefix}"
            )
        prefixes[obj.key_prefix] = obj.name
    if "User" not in objects:
        raise SchemaError(f"{source}: the schema needs a User object (records have owners)")
    for obj in objects.values():
        for f in obj.fields.values():
            for target in f.reference_to:
                parent = objects.get(target)
                if parent is None:
                    raise SchemaError(
                        f"{source}: object {obj.name}, field {f.name}: referenceTo names unknown object {target}"
                    )
                if f.name in ("OwnerId", "CreatedById", "LastModifiedById"):
                    continue
                parent.child_relationships.append(
                    ChildRelationship(obj.name, f.name, f.child_relationship_name, f.master_detail)
                )
    return Schema(objects)


def _build_object(name: str, spec: Any, source: str) -> SObjectDef:
    where = f"{source}: object {name}"
    if not isinstance(spec, dict):
        raise SchemaError(f"{where}: expected a mapping")
    unknown = set(spec) - _OBJECT_KEYS
    if unknown:
        raise SchemaError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_OBJECT_KEYS)}")
    prefix = str(spec.get("keyPrefix", ""))
    if len(prefix) != 3 or not prefix.isalnum():
        raise SchemaError(f"{where}: keyPrefix must be 3 letters or digits, got {prefix!r}")
    custom = bool(spec.get("custom", name.endswith("__c")))
    if custom != name.endswith("__c"):
        raise SchemaError(f"{where}: custom objects, and only they, have names ending in __c")
    declared = spec.get("fields") or {}
    if not isinstance(declared, dict):
        raise SchemaError(f"{where}: fields must be a mapping of field name to attributes")
    fields: dict[str, FieldDef] = {}
    has_master = any(isinstance(f, dict) and f.get("masterDetail") for f in declared.values())
    owned = bool(spec.get("owned", True)) and not has_master
    for system in _system_fields(name, owned=owned):
        fields[system.name] = system
    for field_name, attrs in declared.items():
        if field_name in SYSTEM_FIELDS:
            raise SchemaError(f"{where}, field {field_name}: system fields are added automatically")
        fields[field_name] = _build_field(field_name, attrs, f"{where}, field {field_name}")
    if "Name" in fields:
        fields["Name"].name_field = True
    label = str(spec.get("label") or name)
    return SObjectDef(
        name=name,
        label=label,
        label_plural=str(spec.get("labelPlural") or label + "s"),
        key_prefix=prefix,
        custom=custom,
        fields=fields,
        createable=bool(spec.get("createable", True)),
        updateable=bool(spec.get("updateable", True)),
        deletable=bool(spec.get("deletable", True)),
    )


def _build_field(name: str, attrs: Any, where: str) -> FieldDef:
    if not isinstance(attrs, dict):
        raise SchemaError(f"{where}: expected a mapping of attributes")
    unknown = set(attrs) - _FIELD_KEYS
    if unknown:
        raise SchemaError(f"{where}: unknown attributes {sorted(unknown)}; allowed: {sorted(_FIELD_KEYS)}")
    ftype = attrs.get("type")
    if ftype not in FIELD_TYPES or ftype == "id":
        allowed = sorted(t for t in FIELD_TYPES if t != "id")
        raise SchemaError(f"{where}: type {ftype!r} is not one of {allowed}")
    if not attrs.get("label"):
        raise SchemaError(f"{where}: a label is required")
    custom = name.endswith("__c")
    if not custom and not name.isidentifier():
        raise SchemaError(f"{where}: not a valid field API name")
    definition = FieldDef(
        name=name,
        type=ftype,
        label=str(attrs["label"]),
        custom=custom,
        nillable=bool(attrs.get("nillable", True)),
        createable=bool(attrs.get("createable", True)),
        updateable=bool(attrs.get("updateable", True)),
        external_id=bool(attrs.get("externalId", False)),
        unique=bool(attrs.get("unique", False)),
        case_sensitive=bool(attrs.get("caseSensitive", False)),
        id_lookup=bool(attrs.get("idLookup", False)),
        default_value=attrs.get("defaultValue"),
        picklist_values=[str(v) for v in attrs.get("picklistValues") or []],
    )
    if ftype in TEXT_TYPES:
        definition.length = int(attrs.get("length") or (32768 if ftype == "textarea" else 255))
    elif "length" in attrs:
        raise SchemaError(f"{where}: length applies to text fields only")
    if ftype in DECIMAL_TYPES:
        definition.precision = int(attrs.get("precision", 18))
        definition.scale = int(attrs.get("scale", 2))
        if not 0 <= definition.scale <= definition.precision <= 18:
            raise SchemaError(f"{where}: need 0 <= scale <= precision <= 18")
    if ftype == "boolean":
        # Checkboxes are never null in Salesforce: unset means false.
        definition.nillable = False
        definition.defaulted_on_create = True
        definition.default_value = bool(attrs.get("defaultValue", False))
    elif definition.default_value is not None:
        definition.defaulted_on_create = True
    if definition.external_id or definition.unique:
        definition.id_lookup = True
        if ftype not in ("string", "email", "int", "double"):
            raise SchemaError(f"{where}: external id and unique fields must be text, email or number")
    if ftype == "reference":
        targets = attrs.get("referenceTo")
        if not isinstance(targets, list) or len(targets) != 1:
            raise SchemaError(f"{where}: referenceTo must list exactly one object")
        definition.reference_to = [str(targets[0])]
        definition.length = 18
        rel = attrs.get("relationshipName")
        if not rel:
            raise SchemaError(f"{where}: a reference needs a relationshipName")
        if custom and not str(rel).endswith("__r"):
            raise SchemaError(f"{where}: the relationship name of a custom field ends in __r")
        definition.relationship_name = str(rel)
        definition.child_relationship_name = attrs.get("childRelationshipName")
        if attrs.get("masterDetail"):
            definition.master_detail = True
            definition.nillable = False
            definition.updateable = bool(attrs.get("reparentable", True))
    else:
        for key in ("referenceTo", "relationshipName", "childRelationshipName", "masterDetail", "reparentable"):
            if key in attrs:
                raise SchemaError(f"{where}: {key} applies to reference fields only")
    return definition


def _system_fields(object_name: str, owned: bool) -> list[FieldDef]:
    """The fields every object has; detail objects of a master-detail have no owner."""

    def audit(name: str, ftype: str, label: str, **extra: Any) -> FieldDef:
        return FieldDef(
            name=name, type=ftype, label=label, nillable=False, createable=False,
            updateable=False, defaulted_on_create=True, **extra,
        )

    fields = [
        FieldDef(
            name="Id", type="id", label="Record ID" if object_name.endswith("__c") else f"{object_name} ID",
            length=18, nillable=False, createable=False, updateable=False, id_lookup=True,
            defaulted_on_create=True,
        ),
        audit("IsDeleted", "boolean", "Deleted", default_value=False),
    ]
    if owned and object_name != "User":
        fields.append(
            FieldDef(
                name="OwnerId", type="reference", label="Owner ID", length=18, nillable=False,
                defaulted_on_create=True, reference_to=["User"], relationship_name="Owner",
            )
        )
    fields += [
        audit("CreatedDate", "datetime", "Created Date"),
        audit("CreatedById", "reference", "Created By ID", length=18, reference_to=["User"],
              relationship_name="CreatedBy"),
        audit("LastModifiedDate", "datetime", "Last Modified Date"),
        audit("LastModifiedById", "reference", "Last Modified By ID", length=18, reference_to=["User"],
              relationship_name="LastModifiedBy"),
        audit("SystemModstamp", "datetime", "System Modstamp"),
    ]
    return fields
