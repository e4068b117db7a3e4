"""Salesforce DML on the sandbox store: insert, update, upsert, delete and hardDelete.

Every write path (REST sObject calls, composite collections, Bulk API 1.0 batches and Bulk API 2.0
jobs) goes through :class:`DmlEngine`, so they agree on every rule: required fields, field types,
external-id matching, relationship columns (``Parent__r.Ext__c``), unique values, the recycle bin,
master-detail cascades and per-record rejection rules. Work is done a chunk of rows at a time with
set-based SQL, so a million-row Bulk job takes seconds.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from sandbox.salesforce.schema import FieldDef, Schema, SObjectDef
from sandbox.salesforce.store import Store, quote
from sandbox.salesforce.values import (
    NOT_SET,
    FieldValueError,
    converter,
    csv_reader_for,
    json_reader_for,
    now_stored,
)

OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
_AUDIT_FIELDS = ("CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "SystemModstamp")
_PENDING = object()  # a relationship value not resolved yet


@dataclass
class RowError:
    """One Salesforce error: ``statusCode``, message and the fields involved."""

    code: str
    message: str
    fields: list[str] = field(default_factory=list)

    def bulk_text(self) -> str:
        """The ``sf__Error`` cell of a Bulk API result: ``CODE:message:fields --``."""
        return f"{self.code}:{self.message}:{','.join(self.fields)} --"


@dataclass
class RowResult:
    """The outcome of one input row."""

    id: str | None = None
    created: bool = False
    errors: list[RowError] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return not self.errors


@dataclass
class Column:
    """One input column: which field it writes and how its raw values are read.

    A relationship column (``Parent__r.Ext__c``) writes the reference field ``field`` with the
    Id of the ``target`` record whose ``target_field`` equals the cell. A column naming no field
    has ``error`` set; rows that give it a value fail with that error.
    """

    header: str
    field: FieldDef | None
    read: Callable[[Any], Any]
    target: SObjectDef | None = None
    target_field: FieldDef | None = None
    error: RowError | None = None
    text_limit: int = 0  # CSV text cells up to this length are stored as they are


class _RowFailed(Exception):
    def __init__(self, error: RowError):
        self.error = error


class _RollBack(Exception):
    """Raised inside the transaction to undo an allOrNone request that had failures."""


def _invalid_field_error(obj: SObjectDef, name: str) -> RowError:
    return RowError("INVALID_FIELD", f"No such column '{name}' on sobject of type {obj.name}", [])


def plan_columns(schema: Schema, obj: SObjectDef, headers: Sequence[str], source: str) -> list[Column]:
    """Columns for ``headers`` of an upload to ``obj``; ``source`` is ``"csv"`` or ``"json"``."""
    reader_for = csv_reader_for if source == "csv" else json_reader_for
    columns: list[Column] = []
    for header in headers:
        name = header.strip() if source == "csv" else header
        if "." in name:
            columns.append(_relationship_column(schema, obj, header, name, source))
            continue
        f = obj.field(name)
        if f is None:
            columns.append(Column(header, None, _identity, error=_invalid_field_error(obj, name)))
        else:
            plain_text = source == "csv" and f.type in ("string", "textarea", "phone", "url", "picklist")
            columns.append(Column(header, f, reader_for(f), text_limit=f.length if plain_text else 0))
    return columns


def _identity(value: Any) -> Any:
    return value


def _relationship_column(schema: Schema, obj: SObjectDef, header: str, name: str, source: str) -> Column:
    type_prefix, _, path = name.rpartition(":")
    rel_name, _, key_name = path.partition(".")
    ref = obj.relationship(rel_name)
    if ref is None or "." in key_name:
        return Column(header, None, _identity, error=_invalid_field_error(obj, name))
    target = schema.get(ref.reference_to[0])
    if type_prefix:
        message = "type is not needed for non polymorphic foreign key reference"
        return Column(header, ref, _identity, error=RowError("INVALID_FIELD", message, [ref.name]))
    key = target.field(key_name) if target else None
    if key is None or not key.is_key:
        message = (
            f"The relationship field {name} must use an External ID or indexed field of {ref.reference_to[0]}"
        )
        return Column(header, ref, _identity, error=RowError("INVALID_FIELD", message, [ref.name]))
    convert = converter(key)

    def read(raw: Any) -> Any:
        if raw is NOT_SET or (source == "csv" and raw == ""):
            return NOT_SET
        if raw is None or (source == "csv" and raw == "#N/A"):
            return None
        try:
            return convert(raw)
        except FieldValueError as exc:
            raise FieldValueError(exc.code, exc.message, [ref.name]) from None

    return Column(header, ref, read, target=target, target_field=key)


def flatten_json_record(record: dict[str, Any]) -> dict[str, Any]:
    """A JSON record with nested relationship objects written as ``Rel__r.Ext__c`` keys."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if key == "attributes":
            continue
        if isinstance(value, dict):
            for sub_key, sub_value in value.items():
                if sub_key != "attributes":
                    flat[f"{key}.{sub_key}"] = sub_value
        else:
            flat[key] = value
    return flat


def json_rows(records: Iterable[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Headers and aligned rows for JSON records whose keys differ; absent keys are NOT_SET."""
    flat = [flatten_json_record(r) for r in records]
    headers: dict[str, None] = {}
    for record in flat:
        headers.update(dict.fromkeys(record))
    names = list(headers)
    return names, [[record.get(name, NOT_SET) for name in names] for record in flat]


def _refused_operation(obj: SObjectDef, operation: str) -> RowError | None:
    """Why ``operation`` is not allowed on ``obj`` at all (a read-only object), or ``None``.

    The code is the SOAP StatusCode for "the specified type is not valid for the operation".
    """
    verbs = {"insert": ("inserted", obj.createable), "update": ("updated", obj.updateable),
             "upsert": ("upserted", obj.createable and obj.updateable),
             "delete": ("deleted", obj.deletable), "hardDelete": ("deleted", obj.deletable)}
    verb, allowed = verbs[operation]
    if allowed:
        return None
    return RowError("INVALID_TYPE_FOR_OPERATION", f"entity type cannot be {verb}: {obj.label}")


RecordCheck = Callable[[SObjectDef, str, dict[str, Any]], "RowError | None"]


class DmlEngine:
    """Applies one operation to a chunk of rows, as one transaction, with per-row results."""

    def __init__(self, store: Store, record_check: RecordCheck | None = None):
        self.store = store
        self.schema: Schema = store.schema
        self.record_check = record_check

    def execute(
        self,
        obj: SObjectDef,
        operation: str,
        columns: Sequence[Column],
        rows: Sequence[Sequence[Any]],
        *,
        user_id: str,
        external_id_field: str | None = None,
        all_or_none: bool = False,
    ) -> list[RowResult]:
        """Run ``operation`` for ``rows`` (each aligned with ``columns``) and return one result per row."""
        results = [RowResult() for _ in rows]
        refused = _refused_operation(obj, operation)
        if refused is not None:
            for result in results:
                result.errors.append(refused)
            return results
        values = self._read_rows(columns, rows, results, operation)
        with self.store.write() as conn:
            try:
                conn.execute("SAVEPOINT dml")
                self._resolve_relationships(conn, columns, values, results)
                self._check_references(conn, obj, values, results)
                if operation in ("delete", "hardDelete"):
                    self._delete(conn, obj, values, results, hard=operation == "hardDelete")
                else:
                    self._save(conn, obj, operation, values, results, user_id, external_id_field)
                if all_or_none and any(r.errors for r in results):
                    raise _RollBack
                conn.execute("RELEASE dml")
            except _RollBack:
                conn.execute("ROLLBACK TO dml")
                conn.execute("RELEASE dml")
                for result in results:
                    if not result.errors:
                        result.id = None
                        result.created = False
                        result.errors.append(
                            RowError(
                                "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                                "Record rolled back because not all records were valid and the request "
                                "was using AllOrNone header",
                            )
                        )
            except BaseException:
                conn.execute("ROLLBACK TO dml")
                conn.execute("RELEASE dml")
                raise
        return results

    # -- reading -----------------------------------------------------------------------------

    @staticmethod
    def _read_rows(
        columns: Sequence[Column], rows: Sequence[Sequence[Any]], results: list[RowResult], operation: str
    ) -> list[dict[str, Any] | None]:
        """Each row's field values (``None`` for a failed row); relationship values as tuples."""
        values: list[dict[str, Any] | None] = []
        specs = [
            (c, c.read, c.field.name if c.field else None, c.target is not None, c.text_limit) for c in columns
        ]
        for index, row in enumerate(rows):
            row_values: dict[str, Any] = {}
            try:
                if len(row) != len(columns):
                    raise _RowFailed(
                        RowError("INVALID_FIELD", f"Wrong number of columns: expected {len(columns)}, got {len(row)}")
                    )
                for (column, read, name, is_relationship, text_limit), raw in zip(specs, row):
                    if text_limit and raw and len(raw) <= text_limit and raw != "#N/A":
                        row_values[name] = raw  # the common case, a plain CSV text cell: no call
                        continue
                    value = read(raw)
                    if value is NOT_SET:
                        continue
                    if column.error is not None:
                        raise _RowFailed(column.error)
                    if name in row_values:
                        raise _RowFailed(RowError(
                            "INVALID_FIELD",
                            f"Cannot specify both an external ID reference {column.field.relationship_name} "
                            f"and a salesforce id, {name}",
                            [name],
                        ))
                    if is_relationship and value is not None:
                        row_values[name] = (_PENDING, column, value)
                    else:
                        row_values[name] = value
            except FieldValueError as exc:
                results[index].errors.append(RowError(exc.code, exc.message, exc.fields))
                values.append(None)
                continue
            except _RowFailed as exc:
                results[index].errors.append(exc.error)
                values.append(None)
                continue
            values.append(row_values)
        return values

    # -- lookups -----------------------------------------------------------------------------

    @staticmethod
    def _match(conn: sqlite3.Connection, obj: SObjectDef, key: FieldDef, keys: Iterable[Any], deleted: bool = False):
        """``{folded key: [(rowid, Id, IsDeleted, key), ...]}`` for records whose ``key`` is in ``keys``."""
        keys = list(keys)
        if not keys:
            return {}
        collate = "" if key.case_sensitive or key.type not in ("string", "email") else " COLLATE NOCASE"
        deleted_filter = "" if deleted else " AND IsDeleted = 0"
        sql = (
            f"SELECT rowid, Id, IsDeleted, {quote(key.name)} FROM {quote(obj.name)} "
            f"WHERE {quote(key.name)}{collate} IN (SELECT value FROM json_each(?)){deleted_filter}"
        )
        fold = _folder(key)
        found: dict[Any, list[tuple]] = {}
        for row in conn.execute(sql, (json.dumps(keys),)):
            found.setdefault(fold(row[3]), []).append(row)
        return found

    def _resolve_relationships(
        self, conn: sqlite3.Connection, columns: Sequence[Column], values: list, results: list[RowResult]
    ) -> None:
        for column in columns:
            if column.target is None or column.error is not None:
                continue
            name = column.field.name
            wanted = {
                v[name][2]
                for v in values
                if v is not None and isinstance(v.get(name), tuple) and v[name][1] is column
            }
            if not wanted:
                continue
            fold = _folder(column.target_field)
            found = self._match(conn, column.target, column.target_field, wanted)
            for index, row_values in enumerate(values):
                if row_values is None:
                    continue
                pending = row_values.get(name)
                if not (isinstance(pending, tuple) and pending[1] is column):
                    continue
                key = pending[2]
                matches = found.get(fold(key), [])
                if len(matches) == 1:
                    row_values[name] = matches[0][1]
                    continue
                target, key_field = column.target.name, column.target_field.name
                if matches:
                    error = RowError(
                        "DUPLICATE_EXTERNAL_ID",
                        f"Foreign key external ID: {key} matched more than one record for field {key_field} "
                        f"in entity {target}",
                        [name],
                    )
                else:
                    error = RowError(
                        "INVALID_FIELD",
                        f"Foreign key external ID: {key} not found for field {key_field} in entity {target}",
                        [name],
                    )
                results[index].errors.append(error)
                values[index] = None

    def _check_references(
        self, conn: sqlite3.Connection, obj: SObjectDef, values: list, results: list[RowResult]
    ) -> None:
        """Reference fields given as Ids must name a live record of the right object."""
        for f in obj.fields.values():
            if f.type != "reference":
                continue
            target = self.schema.get(f.reference_to[0])
            ids = {
                v[f.name]
                for v in values
                if v is not None and isinstance(v.get(f.name), str)
            }
            if not ids:
                continue
            rows = conn.execute(
                f"SELECT Id, IsDeleted FROM {quote(target.name)} WHERE Id IN (SELECT value FROM json_each(?))",
                (json.dumps(sorted(ids)),),
            ).fetchall()
            state = dict(rows)
            for index, row_values in enumerate(values):
                if row_values is None or not isinstance(row_values.get(f.name), str):
                    continue
                ref = row_values[f.name]
                if ref in state and not state[ref]:
                    continue
                if not ref.startswith(target.key_prefix):
                    error = RowError("MALFORMED_ID", f"{f.label}: id value of incorrect type: {ref}", [f.name])
                elif ref in state:
                    error = RowError("ENTITY_IS_DELETED", "entity is deleted", [f.name])
                else:
                    error = RowError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [f.name])
                results[index].errors.append(error)
                values[index] = None

    def _check_rules(
        self, obj: SObjectDef, operation: str, values: list, results: list[RowResult], targets: list | None = None
    ) -> None:
        if self.record_check is None:
            return
        for index, row_values in enumerate(values):
            if row_values is None:
                continue
            if targets is not None and targets[index] is not None:
                row_values = {**row_values, "Id": targets[index][1]}
            error = self.record_check(obj, operation, row_values)
            if error is not None:
                results[index].errors.append(error)
                values[index] = None

    # -- insert / update / upsert ------------------------------------------------------------

    def _save(
        self,
        conn: sqlite3.Connection,
        obj: SObjectDef,
        operation: str,
        values: list,
        results: list[RowResult],
        user_id: str,
        external_id_field: str | None,
    ) -> None:
        targets: list[Any] = [None] * len(values)  # existing (rowid, Id) to update, or None to create
        if operation == "insert":
            for index, row_values in enumerate(values):
                if row_values is not None and "Id" in row_values:
                    self._fail(values, results, index, RowError(
                        "INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call", ["Id"]))
        elif operation == "update" or (operation == "upsert" and external_id_field.lower() == "id"):
            self._find_by_id(conn, obj, operation, values, results, targets)
        elif operation == "upsert":
            self._find_by_external_id(conn, obj, obj.field(external_id_field), values, results, targets)
        self._check_rules(obj, operation, values, results, targets)
        self._check_writable(obj, values, results, targets)
        self._check_required(obj, values, results, targets)
        skip = external_id_field if operation == "upsert" else None  # already matched, one row per key
        self._check_unique(conn, obj, values, results, targets, skip)
        now = now_stored()
        creates = [i for i, v in enumerate(values) if v is not None and targets[i] is None]
        updates = [i for i, v in enumerate(values) if v is not None and targets[i] is not None]
        if creates:
            self._insert(conn, obj, [values[i] for i in creates], [results[i] for i in creates], user_id, now)
        if updates:
            self._update(conn, obj, [(targets[i], values[i]) for i in updates], user_id, now)
            for i in updates:
                results[i].id = targets[i][1]
                results[i].created = False

    @staticmethod
    def _fail(values: list, results: list[RowResult], index: int, error: RowError) -> None:
        results[index].errors.append(error)
        values[index] = None

    def _find_by_id(self, conn, obj, operation, values, results, targets) -> None:
        wanted: dict[str, list[int]] = {}
        for index, row_values in enumerate(values):
            if row_values is None:
                continue
            raw = row_values.pop("Id", None)
            if raw is None:
                if operation == "update":
                    self._fail(values, results, index, RowError(
                        "MISSING_ARGUMENT", "Id not specified in an update call", []))
                continue  # upsert on Id without an Id creates
            wanted.setdefault(raw, []).append(index)
        found = {
            row[1]: row
            for row in conn.execute(
                f"SELECT rowid, Id, IsDeleted FROM {quote(obj.name)} WHERE Id IN (SELECT value FROM json_each(?))",
                (json.dumps(list(wanted)),),
            )
        }
        for record_id, indexes in wanted.items():
            for index in indexes:
                results[index].id = record_id  # failed rows still name their record (sf__Id)
            row = found.get(record_id)
            if len(indexes) > 1:
                error = RowError("DUPLICATE_VALUE", f"Duplicate id in list: {record_id}", [])
            elif row is None:
                error = RowError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
                if operation == "upsert" and record_id.startswith(obj.key_prefix):
                    error = RowError("NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {record_id}", [])
            elif row[2]:
                error = RowError("ENTITY_IS_DELETED", "entity is deleted", [])
            else:
                targets[indexes[0]] = row[:2]
                continue
            for index in indexes:
                self._fail(values, results, index, error)

    def _find_by_external_id(self, conn, obj, key: FieldDef, values, results, targets) -> None:
        fold = _folder(key)
        wanted: dict[Any, list[int]] = {}
        for index, row_values in enumerate(values):
            if row_values is None:
                continue
            value = row_values.get(key.name)
            if value is None:
                self._fail(values, results, index, RowError(
                    "MISSING_ARGUMENT", f"{key.name} not specified", [key.name]))
                continue
            wanted.setdefault(fold(value), []).append(index)
        found = self._match(conn, obj, key, [values[ix[0]][key.name] for ix in wanted.values()])
        for folded, indexes in wanted.items():
            matches = found.get(folded, [])
            if len(indexes) > 1:
                error = RowError(
                    "DUPLICATE_VALUE", f"Duplicate external id specified: {values[indexes[0]][key.name]}", [key.name]
                )
            elif len(matches) > 1:
                ids = ", ".join(m[1] for m in matches)
                error = RowError(
                    "DUPLICATE_EXTERNAL_ID",
                    f"{key.name}: more than one record found for external id field: [{ids}]",
                    [key.name],
                )
            else:
                if matches:
                    targets[indexes[0]] = matches[0][:2]
                    results[indexes[0]].id = matches[0][1]
                continue
            for index in indexes:
                self._fail(values, results, index, error)

    def _check_writable(self, obj, values, results, targets) -> None:
        for index, row_values in enumerate(values):
            if row_values is None:
                continue
            creating = targets[index] is None
            bad = [
                name
                for name in row_values
                if not (obj.fields[name].createable if creating else obj.fields[name].updateable)
            ]
            if bad:
                verb = "create" if creating else "update"
                self._fail(values, results, index, RowError(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to {verb} fields: {', '.join(bad)}. Please check the security settings of this "
                    "field and verify that it is read/write for your profile or permission set.",
                    bad,
                ))

    def _check_required(self, obj, values, results, targets) -> None:
        required = [f for f in obj.fields.values() if f.required]
        for index, row_values in enumerate(values):
            if row_values is None:
                continue
            if targets[index] is None:
                missing = [f.name for f in required if row_values.get(f.name) is None]
            else:
                # Updates may not clear a required field.
                missing = [f.name for f in required if f.name in row_values and row_values[f.name] is None]
            if missing:
                self._fail(values, results, index, RowError(
                    "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing))

    def _check_unique(self, conn, obj, values, results, targets, skip: str | None) -> None:
        for f in obj.fields.values():
            if not f.unique or f.name == skip:
                continue
            fold = _folder(f)
            seen: dict[Any, int] = {}
            for index, row_values in enumerate(values):
                if row_values is None or row_values.get(f.name) is None:
                    continue
                key = fold(row_values[f.name])
                if key in seen:
                    self._fail(values, results, index, RowError(
                        "DUPLICATE_VALUE",
                        f"duplicate value found: {f.name} duplicates value on record with id: <unknown>",
                        [f.name],
                    ))
                else:
                    seen[key] = index
            if not seen:
                continue
            existing = self._match(conn, obj, f, [values[i][f.name] for i in seen.values()])
            for key, index in seen.items():
                own = targets[index][1] if targets[index] is not None else None
                others = [m for m in existing.get(key, []) if m[1] != own]
                if others:
                    self._fail(values, results, index, RowError(
                        "DUPLICATE_VALUE",
                        f"duplicate value found: {f.name} duplicates value on record with id: {others[0][1]}",
                        [f.name],
                    ))

    def _insert(self, conn, obj: SObjectDef, rows: list[dict], results: list[RowResult], user_id: str, now: str):
        ids = self.store.allocate_ids(obj.key_prefix, len(rows))
        present: set[str] = set()
        for row_values in rows:
            present.update(row_values)
        # Only the columns this chunk sets, has defaults for, or stamps: fewer values to bind.
        fields = [
            f for f in obj.fields.values()
            if f.name in present or f.name in _AUDIT_FIELDS or f.name in ("Id", "IsDeleted", "OwnerId")
            or f.type == "boolean" or f.default_value is not None
        ]
        position = {f.name: i for i, f in enumerate(fields)}
        base: list[Any] = []
        for f in fields:
            if f.name in ("CreatedDate", "LastModifiedDate", "SystemModstamp"):
                base.append(now)
            elif f.name in ("CreatedById", "LastModifiedById", "OwnerId"):
                base.append(user_id)
            elif f.type == "boolean":
                base.append(int(bool(f.default_value)))
            else:
                base.append(f.default_value)
        booleans = {f.name for f in fields if f.type == "boolean"}
        id_position = position["Id"]
        records = []
        for record_id, row_values, result in zip(ids, rows, results):
            record = base[:]
            for name, value in row_values.items():
                if value is None and name in booleans:
                    value = 0  # a checkbox set to null is unchecked
                record[position[name]] = value
            record[id_position] = record_id
            records.append(record)
            result.id = record_id
            result.created = True
        names = ", ".join(quote(f.name) for f in fields)
        placeholders = ", ".join("?" * len(fields))
        conn.executemany(f"INSERT INTO {quote(obj.name)} ({names}) VALUES ({placeholders})", records)

    def _update(self, conn, obj: SObjectDef, pairs: list[tuple], user_id: str, now: str) -> None:
        booleans = {f.name for f in obj.fields.values() if f.type == "boolean"}
        groups: dict[tuple[str, ...], list[list[Any]]] = {}
        for (rowid, _record_id), row_values in pairs:
            names = tuple(row_values)
            params = [0 if (row_values[n] is None and n in booleans) else row_values[n] for n in names]
            params += [now, user_id, now, rowid]
            groups.setdefault(names, []).append(params)
        for names, params in groups.items():
            assignments = ", ".join(f"{quote(n)} = ?" for n in names)
            if assignments:
                assignments += ", "
            conn.executemany(
                f"UPDATE {quote(obj.name)} SET {assignments}LastModifiedDate = ?, LastModifiedById = ?, "
                f"SystemModstamp = ? WHERE rowid = ?",
                params,
            )

    # -- delete ------------------------------------------------------------------------------

    def _delete(self, conn, obj: SObjectDef, values: list, results: list[RowResult], hard: bool) -> None:
        wanted: dict[str, list[int]] = {}
        for index, row_values in enumerate(values):
            if row_values is None:
                continue
            record_id = row_values.get("Id")
            if record_id is None:
                self._fail(values, results, index, RowError("MISSING_ARGUMENT", "Id not specified", []))
                continue
            wanted.setdefault(record_id, []).append(index)
            results[index].id = record_id
        state = dict(
            conn.execute(
                f"SELECT Id, IsDeleted FROM {quote(obj.name)} WHERE Id IN (SELECT value FROM json_each(?))",
                (json.dumps(list(wanted)),),
            ).fetchall()
        )
        for record_id, indexes in wanted.items():
            if len(indexes) > 1:
                error = RowError("DUPLICATE_VALUE", f"Duplicate id in list: {record_id}", [])
            elif record_id not in state:
                error = RowError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
            elif state[record_id]:
                error = RowError("ENTITY_IS_DELETED", "entity is deleted", [])
            else:
                continue
            for index in indexes:
                self._fail(values, results, index, error)
        self._check_rules(obj, "hardDelete" if hard else "delete", values, results)
        doomed = []
        for index, row_values in enumerate(values):
            if row_values is not None:
                doomed.append(row_values["Id"])
                results[index].id = row_values["Id"]
        if doomed:
            self.cascade_delete(conn, obj, doomed, hard, now_stored())

    def cascade_delete(self, conn: sqlite3.Connection, obj: SObjectDef, ids: list[str], hard: bool, now: str) -> None:
        """Delete ``ids`` of ``obj``: master-detail children go too, lookups to them are cleared."""
        ids_json = json.dumps(ids)
        for rel in obj.child_relationships:
            child = self.schema.get(rel.child)
            column = quote(rel.field)
            if rel.cascade_delete:
                live = "" if hard else " AND IsDeleted = 0"
                child_ids = [
                    row[0]
                    for row in conn.execute(
                        f"SELECT Id FROM {quote(child.name)} WHERE {column} IN (SELECT value FROM json_each(?)){live}",
                        (ids_json,),
                    )
                ]
                if child_ids:
                    self.cascade_delete(conn, child, child_ids, hard, now)
            else:
                conn.execute(
                    f"UPDATE {quote(child.name)} SET {column} = NULL, SystemModstamp = ? "
                    f"WHERE {column} IN (SELECT value FROM json_each(?))",
                    (now, ids_json),
                )
        if hard:
            conn.execute(f"DELETE FROM {quote(obj.name)} WHERE Id IN (SELECT value FROM json_each(?))", (ids_json,))
        else:
            conn.execute(
                f"UPDATE {quote(obj.name)} SET IsDeleted = 1, LastModifiedDate = ?, SystemModstamp = ? "
                f"WHERE Id IN (SELECT value FROM json_each(?))",
                (now, now, ids_json),
            )


def _folder(f: FieldDef) -> Callable[[Any], Any]:
    """How key values of ``f`` compare: text keys ignore case unless the field is case-sensitive."""
    if f.type in ("string", "email") and not f.case_sensitive:
        return lambda value: value.lower() if isinstance(value, str) else value
    if f.type in ("double", "currency", "percent"):
        from decimal import Decimal

        return lambda value: Decimal(value) if value is not None else None
    return lambda value: value
