"""The object mapping: which Zuora rows become which Salesforce records, as validated data.

``mapping.yaml`` beside this module is the default (``docs/operations.md``, "What is synced, and
the rules"). A user file named by the
``ZUORA_SYNC_MAPPING`` environment variable is merged over it: objects, fields, links and lookups are added
or replaced, and a field set to ``null`` is dropped, so custom fields need no Python. The mapping
is checked when the DAGs are parsed: every problem names the file, the object and the field. The
Salesforce side is checked again against ``describe`` by the preflight task, before anything is
written.

Every task process parses its DAG file, so it loads the mapping too. Checking the Data Query
expressions and joins needs sqlglot (importing it alone takes about 0.15 s), so a mapping that
passed once is remembered on disk (:data:`CACHE_ENV`): the same files, checked by the same code
and sqlglot, are not checked again. A changed file, module or sqlglot is checked in full.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from zuora_sync.vocabulary import Scope

log = logging.getLogger(__name__)

MAPPING_ENV = "ZUORA_SYNC_MAPPING"
#: Where mappings that passed their checks are remembered (default ``$XDG_CACHE_HOME/zuora_sync``,
#: else ``~/.cache/zuora_sync``). Only successes are kept, and only the tables the joins read.
CACHE_ENV = "ZUORA_SYNC_CACHE_DIR"
SCOPES = tuple(scope.value for scope in Scope)
_OBJECT_KEYS = {
    "from", "joins", "changes_with", "account", "depends_on", "salesforce", "key", "keep", "fields", "links",
    "lookups", "second_pass", "on_delete", "flag",
}
_SF_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_SF_RELATIONSHIP = re.compile(r"^[A-Za-z][A-Za-z0-9_]*\.[A-Za-z][A-Za-z0-9_]*$")
_ALIAS = re.compile(r"^[a-z_][a-z0-9_]*$")


class MappingError(ValueError):
    """The mapping is wrong; the message names the file, the object and the field."""


@dataclass(frozen=True)
class Column:
    """One Salesforce column of the staged CSV and the Data Query expression that fills it."""

    salesforce: str      # a field (``Name``) or a relationship column (``Parent__r.Ext__c``)
    expression: str      # Data Query SQL over the object's aliases
    optional: bool = False   # a lookup left empty while its target is not in Salesforce (not a parent)

    @property
    def is_relationship(self) -> bool:
        return "." in self.salesforce

    @property
    def field(self) -> str:
        """The field (``Name``), or for a relationship column the relationship (``Parent__r``)."""
        return self.salesforce.split(".", 1)[0]


@dataclass
class ObjectMapping:
    """How one Zuora object (a Data Query table) is written to one Salesforce object."""

    name: str
    scope: str
    table: str
    salesforce: str
    key: str
    columns: list[Column]
    second_pass: list[Column] = field(default_factory=list)
    joins: dict[str, str] = field(default_factory=dict)
    join_tables: dict[str, str] = field(default_factory=dict)   # alias -> the Data Query table it joins
    changes_with: list[str] = field(default_factory=list)
    account: str | None = None
    depends_on: list[str] = field(default_factory=list)
    keep: str | None = None
    on_delete: str = "delete"
    flag: str | None = None

    @property
    def aliases(self) -> list[str]:
        return [self.table, *self.joins]

    @cached_property
    def key_column(self) -> Column:
        return next(c for c in self.columns if c.salesforce == self.key)

    @property
    def upsert_header(self) -> list[str]:
        """The staged upsert files' header: the columns, then the delete flag for a flagged object."""
        return [c.salesforce for c in self.columns] + ([self.flag] if self.on_delete == "flag" else [])


@dataclass
class Mapping:
    """All object mappings, in load order per scope (parents before children)."""

    objects: dict[str, ObjectMapping]
    scopes: dict[str, list[str]]
    source: str

    def scope_objects(self, scope: str) -> list[ObjectMapping]:
        return [self.objects[name] for name in self.scopes[scope]]

    def get(self, name: str) -> ObjectMapping:
        try:
            return self.objects[name]
        except KeyError:
            raise MappingError(f"{self.source}: no object named {name}; known: {sorted(self.objects)}") from None

    def related(self, obj: ObjectMapping) -> dict[str, ObjectMapping]:
        """The ``changes_with`` aliases of ``obj`` that join another mapped object of its scope, alias → object.

        A row of ``obj`` is read again while such a related record is being retried after a
        rejection: once that record is in Salesforce, the row's lookup to it can be written
        (``docs/operations.md``, "Lookups").
        """
        by_table = {o.table: o for o in self.objects.values() if o.scope == obj.scope}
        return {alias: by_table[obj.join_tables[alias]] for alias in obj.changes_with
                if obj.join_tables.get(alias) in by_table}


def _default_text() -> str:
    return resources.files("zuora_sync").joinpath("mapping.yaml").read_text(encoding="utf-8")


def default_document() -> dict[str, Any]:
    return yaml.safe_load(_default_text())


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``: objects and their fields/links added or replaced; ``null`` drops one."""
    merged = copy.deepcopy(base)
    if "scopes" in extra:
        merged["scopes"] = {**merged.get("scopes", {}), **extra["scopes"]}
    for name, spec in (extra.get("objects") or {}).items():
        target = merged.setdefault("objects", {}).setdefault(name, {})
        for key, value in (spec or {}).items():
            if key in ("fields", "links", "lookups", "second_pass", "joins") and isinstance(value, dict):
                section = dict(target.get(key) or {})
                for item, expression in value.items():
                    if expression is None:
                        section.pop(item, None)
                    else:
                        section[item] = expression
                target[key] = section
            else:
                target[key] = value
    return merged


def load_mapping(path: str | os.PathLike | None = None) -> Mapping:
    """The default mapping, with the user's file (argument, or ``$ZUORA_SYNC_MAPPING``) merged over it.

    Every task of a session asks for the mapping, several times: the result is kept per content
    of the two files (parsing and validating costs tens of milliseconds each time), so an edited
    file is read again. Treat the returned mapping as read-only: it is shared.
    """
    path = path or os.environ.get(MAPPING_ENV) or None
    if not path:
        return _load(_default_text(), None, None)
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"{source}: cannot read the mapping file: {exc.strerror}") from None
    return _load(_default_text(), source, text)


@functools.lru_cache(maxsize=16)
def _load(default_text: str, source: str | None, text: str | None) -> Mapping:
    document = yaml.safe_load(default_text)
    if source is not None:
        try:
            extra = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise MappingError(f"{source}: not valid YAML: {exc}") from None
        if not isinstance(extra, dict):
            raise MappingError(f"{source}: a mapping file is a YAML mapping with an 'objects' key")
        document = merge(document, extra)
    checked = _checked_file(default_text, text)
    joins = _read_checked(checked)
    mapping = build_mapping(document, source or "zuora_sync/mapping.yaml", checked_joins=joins)
    if joins is None and checked is not None:
        _write_checked(checked, {f"{o.name}.{alias}": table for o in mapping.objects.values()
                                 for alias, table in o.join_tables.items()})
    return mapping


def _checked_file(default_text: str, text: str | None) -> Path | None:
    """Where the checks of these mapping texts are remembered: named by a digest of the texts, this
    module's code and sqlglot's version. None when no cache directory can be named."""
    from importlib.metadata import version

    try:
        base = os.environ.get(CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "zuora_sync"
        code = Path(__file__).read_bytes()
    except (OSError, RuntimeError):
        return None
    digest = hashlib.sha256()
    for part in (code, version("sqlglot").encode(), default_text.encode(), (text or "").encode()):
        digest.update(hashlib.sha256(part).digest())
    return Path(base) / f"mapping-checked-{digest.hexdigest()[:40]}.json"


def _read_checked(path: Path | None) -> dict[str, str] | None:
    """The join tables of a mapping that passed its checks, or None (never checked, or unreadable)."""
    if path is None:
        return None
    try:
        joins = json.loads(path.read_text(encoding="utf-8"))["joins"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return joins if isinstance(joins, dict) and all(isinstance(v, str) for v in joins.values()) else None


def _write_checked(path: Path, joins: dict[str, str]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(json.dumps({"joins": joins}, sort_keys=True), encoding="utf-8")
        os.replace(partial, path)  # whole or absent: a concurrent reader never sees half a file
    except OSError as exc:
        log.debug("Not remembering the mapping's checks in %s: %s", path, exc)


def build_mapping(document: dict[str, Any], source: str, *, checked_joins: dict[str, str] | None = None) -> Mapping:
    """Validate ``document`` and build the :class:`Mapping`.

    :param checked_joins: when this very document passed every check before (:func:`_load`
        remembers it), the tables its joins read (``{"Object.alias": table}``): the checks that need
        sqlglot (expressions, joins) are then skipped; all others run.
    """
    scopes = document.get("scopes") or {}
    objects_doc = document.get("objects") or {}
    if not isinstance(objects_doc, dict) or not objects_doc:
        raise MappingError(f"{source}: 'objects' must map object names to their mappings")
    if set(scopes) != set(SCOPES):
        raise MappingError(f"{source}: 'scopes' must list the objects of {list(SCOPES)}")
    scope_of = {}
    for scope, names in scopes.items():
        for name in names or []:
            if name not in objects_doc:
                raise MappingError(f"{source}: scope {scope} names object {name}, which is not mapped")
            scope_of[name] = scope
    objects = {}
    for name, spec in objects_doc.items():
        if name not in scope_of:
            raise MappingError(f"{source}: object {name} is in no scope; add it to 'scopes'")
        objects[name] = _build_object(name, spec, scope_of[name], f"{source}: object {name}", checked_joins)
    for obj in objects.values():
        for parent in obj.depends_on:
            if parent not in objects or objects[parent].scope != obj.scope:
                raise MappingError(f"{source}: object {obj.name}, depends_on: {parent} is not an object of scope {obj.scope}")
    ordered = {scope: _load_order([objects[n] for n in names], source) for scope, names in scopes.items()}
    return Mapping(objects, ordered, source)


def _load_order(objects: list[ObjectMapping], source: str) -> list[str]:
    """Parents before children (a topological order that keeps the file's order among equals)."""
    done: list[str] = []
    pending = list(objects)
    while pending:
        ready = [o for o in pending if all(p in done for p in o.depends_on)]
        if not ready:
            raise MappingError(f"{source}: depends_on forms a cycle among {[o.name for o in pending]}")
        done.append(ready[0].name)
        pending.remove(ready[0])
    return done


def _build_object(name: str, spec: Any, scope: str, where: str, checked_joins: dict[str, str] | None) -> ObjectMapping:
    if not isinstance(spec, dict):
        raise MappingError(f"{where}: expected a mapping")
    unknown = set(spec) - _OBJECT_KEYS
    if unknown:
        raise MappingError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_OBJECT_KEYS)}")
    for required in ("from", "salesforce", "key", "fields"):
        if not spec.get(required):
            raise MappingError(f"{where}: '{required}' is required")
    table = str(spec["from"]).lower()
    if not _ALIAS.match(table):
        raise MappingError(f"{where}: 'from' must be a Data Query table name, got {spec['from']!r}")
    joins, join_tables = {}, {}
    for alias, clause in (spec.get("joins") or {}).items():
        if not _ALIAS.match(str(alias)) or alias == table:
            raise MappingError(f"{where}, join {alias}: an alias is a lower-case name other than '{table}'")
        known = (checked_joins or {}).get(f"{name}.{alias}")
        join_tables[str(alias)] = known or _check_join(str(clause), alias, f"{where}, join {alias}")
        joins[str(alias)] = str(clause)
    aliases = {table, *joins}
    check = checked_joins is None
    salesforce = str(spec["salesforce"])
    if not _SF_FIELD.match(salesforce):
        raise MappingError(f"{where}: 'salesforce' must be an sObject API name, got {salesforce!r}")
    columns = _columns(spec.get("fields"), aliases, f"{where}, field", check, relationships=False)
    columns += _columns(spec.get("links"), aliases, f"{where}, link", check, relationships=True)
    columns += _columns(spec.get("lookups"), aliases, f"{where}, lookup", check, relationships=True, optional=True)
    # Second-pass links point at records of the same load (the hierarchy's parent): optional lookups.
    second = [Column(c.salesforce, c.expression, optional=c.is_relationship)
              for c in _columns(spec.get("second_pass"), aliases, f"{where}, second_pass", check, relationships=True)]
    names = [c.salesforce.lower() for c in columns + second]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise MappingError(f"{where}, field {duplicates[0]}: mapped twice")
    written = {}
    for column in columns + second:
        other = written.setdefault(column.field.lower(), column.salesforce)
        if other != column.salesforce:
            raise MappingError(f"{where}, field {column.field}: written by both {other} and {column.salesforce}")
    key = str(spec["key"])
    if key not in [c.salesforce for c in columns if not c.is_relationship]:
        raise MappingError(f"{where}, field {key}: the key must also be one of the fields (the Zuora Id)")
    for alias in spec.get("changes_with") or []:
        if alias not in joins:
            raise MappingError(f"{where}, changes_with: {alias} is not a join alias")
    account = spec.get("account")
    if account is not None and account not in aliases:
        raise MappingError(f"{where}, account: {account} is not one of the aliases {sorted(aliases)}")
    keep = spec.get("keep")
    if keep is not None and check:
        _check_expression(str(keep), aliases, f"{where}, keep")
    on_delete = spec.get("on_delete", "delete")
    if on_delete not in ("delete", "flag"):
        raise MappingError(f"{where}, on_delete: must be 'delete' or 'flag'")
    flag = spec.get("flag")
    if on_delete == "flag" and not flag:
        raise MappingError(f"{where}, flag: on_delete 'flag' needs the checkbox field to set")
    if flag and str(flag).lower() in names:
        raise MappingError(f"{where}, field {flag}: the flag field is set by the sync; do not map it")
    return ObjectMapping(
        name=name, scope=scope, table=table, salesforce=salesforce, key=key, columns=columns,
        second_pass=second, joins=joins, join_tables=join_tables, changes_with=list(spec.get("changes_with") or []), account=account,
        depends_on=[str(p) for p in spec.get("depends_on") or []], keep=str(keep) if keep is not None else None,
        on_delete=on_delete, flag=str(flag) if flag else None,
    )


def _columns(section: Any, aliases: set[str], where: str, check: bool, relationships: bool,
             optional: bool = False) -> list[Column]:
    if section is None:
        return []
    if not isinstance(section, dict):
        raise MappingError(f"{where}s: expected a mapping of Salesforce field to expression")
    columns = []
    for sf_name, expression in section.items():
        sf_name = str(sf_name)
        pattern = _SF_RELATIONSHIP if relationships and "." in sf_name else _SF_FIELD
        if not pattern.match(sf_name):
            raise MappingError(f"{where} {sf_name}: not a Salesforce field or relationship column name")
        if expression is None or str(expression).strip() == "":
            raise MappingError(f"{where} {sf_name}: needs a Data Query expression")
        if check:
            _check_expression(str(expression), aliases, f"{where} {sf_name}")
        if optional and "." not in sf_name:
            raise MappingError(f"{where} {sf_name}: a lookup is a relationship column (Relationship__r.External_Id__c)")
        columns.append(Column(sf_name, str(expression), optional=optional))
    return columns


def _check_expression(text: str, aliases: set[str], where: str) -> None:
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

    try:
        node = sqlglot.parse_one(text, read="trino", into=exp.Condition)
    except (ParseError, TokenError) as exc:
        raise MappingError(f"{where}: not a valid Data Query expression ({_first_line(exc)})") from None
    for column in node.find_all(exp.Column):
        if not column.table:
            raise MappingError(f"{where}: qualify {column.name} with its alias (one of {sorted(aliases)})")
        if column.table not in aliases:
            raise MappingError(f"{where}: unknown alias {column.table}; known: {sorted(aliases)}")


def _check_join(text: str, alias: str, where: str) -> str:
    """Check one JOIN clause; returns the (lower-case) table it joins."""
    import sqlglot
    from sqlglot.errors import ParseError, TokenError

    try:
        statement = sqlglot.parse_one(f"SELECT 1 FROM base {text}", read="trino")
    except (ParseError, TokenError) as exc:
        raise MappingError(f"{where}: not a valid JOIN clause ({_first_line(exc)})") from None
    joins = statement.args.get("joins") or []
    if len(joins) != 1 or joins[0].this.alias_or_name != alias:
        raise MappingError(f"{where}: expected one JOIN whose table or alias is {alias}")
    return joins[0].this.name.lower()


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
