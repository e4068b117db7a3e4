"""The REST API under ``/services/data``: versions, limits, describe, sObject rows, upsert by
external id, SOQL query/queryAll/queryMore (and a query's column metadata, ``columns=true``) and
composite sObject collections (create, update, upsert, delete, retrieve by GET or by POST with
``{"ids", "fields"}``) and composite batch (``POST composite/batch``: up to 25 independent GET
subrequests — queries and describes — in one request, counted as one API request as Salesforce does).

Handlers read the body on the event loop and do database work in the thread pool. Every write goes
through the shared :class:`~sandbox.salesforce.dml.DmlEngine`, so REST and Bulk agree on rules.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.salesforce.dml import RowError, RowResult, json_rows, plan_columns
from sandbox.salesforce.org import API_VERSIONS, Org
from sandbox.salesforce.query import CompiledQuery, QueryError, column_metadata, compile_query
from sandbox.salesforce.schema import SObjectDef
from sandbox.salesforce.store import quote
from sandbox.salesforce.transport import (
    SfHttpError,
    authenticate,
    check_version,
    json_response,
    org_of,
    read_json,
    rest_error_response,
)
from sandbox.salesforce.values import to_json
from sandbox.sfid import normalize_id

QUERY_BATCH_DEFAULT = 2000
COMPOSITE_LIMIT = 200
RETRIEVE_LIMIT = 2000  # composite/sobjects/{type} POST retrieves up to 2,000 records
CURSOR_TTL_SECONDS = 15 * 60 * 4


def rest_endpoint(handler: Callable) -> Callable:
    """Wrap a handler: check the version, authenticate, and answer errors in REST's shape."""

    async def endpoint(request: Request) -> Response:
        try:
            version = check_version(request.path_params.get("version", "59.0"))
            user = authenticate(request)
            return await handler(request, org_of(request), version, user)
        except SfHttpError as exc:
            return rest_error_response(exc)

    return endpoint


def _sobject(org: Org, name: str) -> SObjectDef:
    obj = org.schema.get(name)
    if obj is None:
        raise SfHttpError(404, "NOT_FOUND", "The requested resource does not exist")
    return obj


def _first_error(result: RowResult) -> SfHttpError:
    error = result.errors[0]
    status = 404 if error.code == "NOT_FOUND" else 400
    return SfHttpError(status, error.code, error.message, error.fields)


# -- versions, resources, limits --------------------------------------------------------------


async def versions(request: Request) -> Response:
    return json_response(
        [{"label": f"API {v}", "url": f"/services/data/v{v}", "version": v} for v in API_VERSIONS]
    )


@rest_endpoint
async def resources(request: Request, org: Org, version: str, user: str) -> Response:
    base = f"/services/data/v{version}"
    names = ("sobjects", "query", "queryAll", "limits", "composite", "jobs")
    return json_response({name: f"{base}/{name}" for name in names})


@rest_endpoint
async def limits(request: Request, org: Org, version: str, user: str) -> Response:
    used, maximum = org.usage.snapshot()
    jobs = org.store.conn().execute("SELECT COUNT(*) FROM _bulk_jobs").fetchone()[0]
    return json_response(
        {
            "DailyApiRequests": {"Max": maximum, "Remaining": max(maximum - used, 0)},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": max(15000 - jobs, 0)},
            "DailyBulkV2QueryFileStorageMB": {"Max": 976562, "Remaining": 976562},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
            "DataStorageMB": {"Max": 1024, "Remaining": 1024},
            "FileStorageMB": {"Max": 1024, "Remaining": 1024},
            "SingleEmail": {"Max": 15, "Remaining": 15},
        }
    )


# -- describe -----------------------------------------------------------------------------------


@rest_endpoint
async def describe_global(request: Request, org: Org, version: str, user: str) -> Response:
    return json_response(org.schema.describe_global(version))


# -- sObject rows -------------------------------------------------------------------------------


@rest_endpoint
async def sobject_root(request: Request, org: Org, version: str, user: str) -> Response:
    obj = _sobject(org, request.path_params["sobject"])
    if request.method == "GET":
        return json_response({"objectDescribe": obj.describe_global_entry(version), "recentItems": []})
    body = await read_json(request)
    if not isinstance(body, dict):
        raise SfHttpError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
    result = await run_in_threadpool(_write_one, org, obj, "insert", body, user, None)
    if result.errors:
        raise _first_error(result)
    return json_response({"id": result.id, "success": True, "errors": []}, 201)


def _write_one(org: Org, obj: SObjectDef, operation: str, record: dict, user: str, ext: str | None) -> RowResult:
    headers, rows = json_rows([record])
    columns = plan_columns(org.schema, obj, headers, "json")
    for column in columns:
        if column.error is not None and column.field is None:
            raise SfHttpError(400, column.error.code, column.error.message, [])
    return org.engine.execute(obj, operation, columns, rows, user_id=user, external_id_field=ext)[0]


@rest_endpoint
async def sobject_path(request: Request, org: Org, version: str, user: str) -> Response:
    obj = _sobject(org, request.path_params["sobject"])
    segments = [s for s in request.path_params["rest"].split("/") if s != ""]
    if segments == ["describe"] and request.method == "GET":
        return json_response(obj.describe(version))
    if len(segments) == 1:
        return await _by_id(request, org, obj, segments[0], version, user)
    if len(segments) >= 2:
        # simple-salesforce does not escape the value, so it may itself contain slashes.
        return await _by_external_id(request, org, obj, segments[0], "/".join(segments[1:]), version, user)
    raise SfHttpError(404, "NOT_FOUND", "The requested resource does not exist")


def _record_json(org: Org, obj: SObjectDef, rowid_or_id: str, version: str, fields: list[str] | None) -> dict | None:
    wanted = [obj.field(name) for name in fields] if fields else list(obj.fields.values())
    if any(f is None for f in wanted):
        bad = [name for name, f in zip(fields or [], wanted) if f is None]
        raise SfHttpError(400, "INVALID_FIELD", f"No such column '{bad[0]}' on sobject of type {obj.name}")
    columns = ", ".join(quote(f.name) for f in wanted)
    row = org.store.conn().execute(
        f"SELECT Id, IsDeleted, {columns} FROM {quote(obj.name)} WHERE Id = ?", (rowid_or_id,)
    ).fetchone()
    if row is None or row[1]:
        return None
    record: dict[str, Any] = {
        "attributes": {"type": obj.name, "url": f"/services/data/v{version}/sobjects/{obj.name}/{row[0]}"}
    }
    for f, value in zip(wanted, row[2:]):
        record[f.name] = to_json(f, value)
    return record


def _records_json(org: Org, obj: SObjectDef, ids: list[str], version: str, fields: list[str]) -> list[dict | None]:
    """Records of ``obj`` by Id, in the order asked, ``None`` for an Id that is malformed, of another
    object, deleted or unknown (sObject Collections retrieve); an unknown field is ``INVALID_FIELD``."""
    wanted = [obj.field(name) for name in fields]
    bad = [name for name, f in zip(fields, wanted) if f is None]
    if bad:
        raise SfHttpError(400, "INVALID_FIELD", f"No such column '{bad[0]}' on sobject of type {obj.name}")
    normalized = [normalize_id(str(i)) if isinstance(i, str) else None for i in ids]
    columns = ", ".join(quote(f.name) for f in wanted)
    found = {
        row[0]: row
        for row in org.store.conn().execute(
            f"SELECT Id, {columns} FROM {quote(obj.name)} WHERE IsDeleted = 0 AND Id IN (SELECT value FROM json_each(?))",
            (json.dumps([i for i in normalized if i]),),
        )
    }
    records: list[dict | None] = []
    for record_id in normalized:
        row = found.get(record_id)
        if row is None:
            records.append(None)
            continue
        record: dict[str, Any] = {
            "attributes": {"type": obj.name, "url": f"/services/data/v{version}/sobjects/{obj.name}/{row[0]}"}
        }
        record.update({f.name: to_json(f, value) for f, value in zip(wanted, row[1:])})
        records.append(record)
    return records


async def _by_id(request: Request, org: Org, obj: SObjectDef, raw_id: str, version: str, user: str) -> Response:
    record_id = normalize_id(raw_id)
    if record_id is None or not record_id.startswith(obj.key_prefix):
        raise SfHttpError(
            404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {raw_id}"
        )
    if request.method == "GET":
        fields = request.query_params.get("fields")
        names = [f.strip() for f in fields.split(",")] if fields else None
        record = await run_in_threadpool(_record_json, org, obj, record_id, version, names)
        if record is None:
            raise SfHttpError(404, "NOT_FOUND", "The requested resource does not exist")
        return json_response(record)
    if request.method == "PATCH":
        body = await read_json(request)
        if not isinstance(body, dict):
            raise SfHttpError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
        result = await run_in_threadpool(_write_one, org, obj, "update", {**body, "Id": record_id}, user, None)
    elif request.method == "DELETE":
        result = await run_in_threadpool(_write_one, org, obj, "delete", {"Id": record_id}, user, None)
    else:
        raise SfHttpError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed.")
    if result.errors:
        error = result.errors[0]
        if error.code in ("INVALID_CROSS_REFERENCE_KEY", "ENTITY_IS_DELETED"):
            status = 404
        else:
            status = 400
        raise SfHttpError(status, error.code, error.message, error.fields)
    return Response(status_code=204)


def _matches_by_external_id(org: Org, obj: SObjectDef, field_name: str, value: str) -> list[str]:
    f = obj.field(field_name)
    if f is None or (not f.is_key and f.name != "Id"):
        raise SfHttpError(
            404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {field_name}"
        )
    collate = " COLLATE NOCASE" if f.type in ("string", "email") and not f.case_sensitive else ""
    rows = org.store.conn().execute(
        f"SELECT Id FROM {quote(obj.name)} WHERE {quote(f.name)}{collate} = ? AND IsDeleted = 0", (value,)
    ).fetchall()
    return [r[0] for r in rows]


async def _by_external_id(
    request: Request, org: Org, obj: SObjectDef, field_name: str, value: str, version: str, user: str
) -> Response:
    f = obj.field(field_name)
    matches = await run_in_threadpool(_matches_by_external_id, org, obj, field_name, value)
    if len(matches) > 1 and request.method != "PATCH":
        urls = [f"/services/data/v{version}/sobjects/{obj.name}/{m}" for m in matches]
        return json_response(urls, 300)
    if request.method == "GET":
        if not matches:
            raise SfHttpError(404, "NOT_FOUND", "The requested resource does not exist")
        fields = request.query_params.get("fields")
        names = [x.strip() for x in fields.split(",")] if fields else None
        record = await run_in_threadpool(_record_json, org, obj, matches[0], version, names)
        return json_response(record)
    if request.method == "DELETE":
        if not matches:
            raise SfHttpError(404, "NOT_FOUND", "The requested resource does not exist")
        result = await run_in_threadpool(_write_one, org, obj, "delete", {"Id": matches[0]}, user, None)
        if result.errors:
            raise _first_error(result)
        return Response(status_code=204)
    if request.method != "PATCH":
        raise SfHttpError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed.")
    body = await read_json(request)
    if not isinstance(body, dict):
        raise SfHttpError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
    if len(matches) > 1:
        urls = [f"/services/data/v{version}/sobjects/{obj.name}/{m}" for m in matches]
        return json_response(urls, 300)
    update_only = request.query_params.get("updateOnly", "").lower() == "true"
    if update_only and not matches:
        raise SfHttpError(404, "NOT_FOUND", "The requested resource does not exist")
    record = {k: v for k, v in body.items() if k.lower() != f.name.lower()}
    if f.name == "Id":
        record["Id"] = value
    else:
        record[f.name] = value
    result = await run_in_threadpool(_write_one, org, obj, "upsert", record, user, f.name)
    if result.errors:
        error = result.errors[0]
        if error.code == "DUPLICATE_EXTERNAL_ID":
            return json_response([f"/services/data/v{version}/sobjects/{obj.name}/{m}" for m in matches], 300)
        raise _first_error(result)
    body_out = {"id": result.id, "success": True, "errors": [], "created": result.created}
    if result.created:
        return json_response(body_out, 201)
    if float(version) < 46:
        return Response(status_code=204)
    return json_response(body_out, 200)


# -- query ---------------------------------------------------------------------------------------


def _batch_size(request: Request) -> int:
    options = request.headers.get("sforce-query-options", "")
    for part in options.split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "batchsize" and value.strip().isdigit():
            return min(max(int(value), 200), 2000)
    return QUERY_BATCH_DEFAULT


def _page(org: Org, compiled: CompiledQuery, rowids: list[int], version: str) -> list[dict]:
    conn = org.store.conn()
    rows = {row[0]: row[1:] for row in conn.execute(compiled.rows_by_rowid_sql(), (json.dumps(rowids),))}
    return [compiled.json_record(rows[r], version) for r in rowids if r in rows]


def _run_query(org: Org, text: str, include_deleted: bool, version: str, batch: int) -> dict[str, Any]:
    try:
        compiled = compile_query(org.schema, text, include_deleted)
    except QueryError as exc:
        raise SfHttpError(400, exc.code, exc.message) from None
    conn = org.store.conn()
    if compiled.count_only:
        total = conn.execute(compiled.count_sql(), compiled.params).fetchone()[0]
        return {"totalSize": total, "done": True, "records": []}
    if compiled.is_aggregate:
        row = conn.execute(compiled.aggregate_sql(), compiled.params).fetchone()
        record = {"attributes": {"type": "AggregateResult"}}
        record.update({key: value for (key, _), value in zip(compiled.counts, row)})
        return {"totalSize": 1, "done": True, "records": [record]}
    rowids = [r[0] for r in conn.execute(compiled.rowids_sql(), compiled.params)]
    total = len(rowids)
    records = _page(org, compiled, rowids[:batch], version)
    result: dict[str, Any] = {"totalSize": total, "done": total <= batch, "records": records}
    if total > batch:
        cursor_id = "01g" + secrets.token_hex(8)
        now = time.time()
        spec = json.dumps({"q": text, "all": include_deleted, "batch": batch, "total": total})
        with org.store.write() as wconn:
            wconn.execute("DELETE FROM _cursor_rows WHERE cursor_id IN "
                          "(SELECT id FROM _query_cursors WHERE created < ?)", (now - CURSOR_TTL_SECONDS,))
            wconn.execute("DELETE FROM _query_cursors WHERE created < ?", (now - CURSOR_TTL_SECONDS,))
            wconn.execute("INSERT INTO _query_cursors(id, created, spec) VALUES (?, ?, ?)", (cursor_id, now, spec))
            wconn.executemany(
                "INSERT INTO _cursor_rows(cursor_id, seq, rid) VALUES (?, ?, ?)",
                ((cursor_id, seq, rid) for seq, rid in enumerate(rowids[batch:], start=batch)),
            )
        result["nextRecordsUrl"] = f"/services/data/v{version}/query/{cursor_id}-{batch}"
    return result


def _query_more(org: Org, locator: str, version: str) -> dict[str, Any]:
    cursor_id, _, offset_text = locator.rpartition("-")
    conn = org.store.conn()
    row = conn.execute("SELECT spec FROM _query_cursors WHERE id = ?", (cursor_id,)).fetchone()
    if row is None or not offset_text.isdigit():
        raise SfHttpError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
    spec = json.loads(row[0])
    offset, batch, total = int(offset_text), spec["batch"], spec["total"]
    compiled = compile_query(org.schema, spec["q"], spec["all"])
    rowids = [
        r[0]
        for r in conn.execute(
            "SELECT rid FROM _cursor_rows WHERE cursor_id = ? AND seq >= ? AND seq < ? ORDER BY seq",
            (cursor_id, offset, offset + batch),
        )
    ]
    done = offset + batch >= total
    result: dict[str, Any] = {"totalSize": total, "done": done, "records": _page(org, compiled, rowids, version)}
    if not done:
        result["nextRecordsUrl"] = f"/services/data/v{version}/query/{cursor_id}-{offset + batch}"
    return result


@rest_endpoint
async def query(request: Request, org: Org, version: str, user: str) -> Response:
    include_deleted = request.url.path.rstrip("/").endswith("queryAll")
    text = request.query_params.get("q")
    if not text:
        raise SfHttpError(400, "MALFORMED_QUERY", "A query string must be provided with the q parameter")
    if request.query_params.get("columns", "").lower() == "true":
        # The query's columns instead of its rows (what query editors ask before running a query).
        return json_response(await run_in_threadpool(_columns, org, text, include_deleted))
    result = await run_in_threadpool(_run_query, org, text, include_deleted, version, _batch_size(request))
    return json_response(result)


def _columns(org: Org, text: str, include_deleted: bool) -> dict[str, Any]:
    try:
        compiled = compile_query(org.schema, text, include_deleted)
    except QueryError as exc:
        raise SfHttpError(400, exc.code, exc.message) from None
    return column_metadata(org.schema, compiled)


@rest_endpoint
async def query_more(request: Request, org: Org, version: str, user: str) -> Response:
    result = await run_in_threadpool(_query_more, org, request.path_params["locator"], version)
    return json_response(result)


# -- composite sObject collections -----------------------------------------------------------------


def _save_result(result: RowResult, with_created: bool) -> dict[str, Any]:
    if result.success:
        out: dict[str, Any] = {"id": result.id, "success": True, "errors": []}
    else:
        # A failed SaveResult has no id, even when the request named the record.
        out = {"success": False, "errors": [
            {"statusCode": e.code, "message": e.message, "fields": e.fields} for e in result.errors
        ]}
    if with_created:
        out["created"] = result.created if result.success else False
    return out


def _composite_write(
    org: Org, operation: str, groups: list[tuple[SObjectDef, list[int], list[dict]]], count: int,
    user: str, all_or_none: bool, ext: str | None,
) -> list[RowResult]:
    results: list[RowResult | None] = [None] * count
    with org.store.write() as conn:
        conn.execute("SAVEPOINT composite")
        for obj, indexes, records in groups:
            headers, rows = json_rows(records)
            columns = plan_columns(org.schema, obj, headers, "json")
            chunk = org.engine.execute(obj, operation, columns, rows, user_id=user, external_id_field=ext)
            for index, result in zip(indexes, chunk):
                results[index] = result
        if all_or_none and any(r.errors for r in results):
            conn.execute("ROLLBACK TO composite")
            for result in results:
                if not result.errors:
                    result.id, result.created = None, False
                    result.errors.append(RowError(
                        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                        "Record rolled back because not all records were valid and the request was using "
                        "AllOrNone header",
                    ))
        conn.execute("RELEASE composite")
    return results


def _group_by_type(org: Org, records: list[Any], default_type: str | None) -> list[tuple[SObjectDef, list[int], list[dict]]]:
    """Consecutive records of one type form a chunk; Salesforce allows at most ten chunks."""
    groups: list[tuple[SObjectDef, list[int], list[dict]]] = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise SfHttpError(400, "JSON_PARSER_ERROR", "Each record must be a JSON object")
        type_name = (record.get("attributes") or {}).get("type") or default_type
        if not type_name:
            raise SfHttpError(400, "INVALID_TYPE", "Must send a concrete entity type.")
        obj = org.schema.get(type_name)
        if obj is None:
            raise SfHttpError(400, "INVALID_TYPE", f"sObject type '{type_name}' is not supported.")
        if groups and groups[-1][0] is obj:
            groups[-1][1].append(index)
            groups[-1][2].append(record)
        else:
            groups.append((obj, [index], [record]))
    if len(groups) > 10:
        raise SfHttpError(400, "INVALID_BATCH_REQUEST", "Too many type changes in the request: at most 10 chunks")
    return groups


@rest_endpoint
async def composite_sobjects(request: Request, org: Org, version: str, user: str) -> Response:
    segments = [s for s in request.path_params.get("rest", "").split("/") if s]
    if request.method == "DELETE":
        ids = [i for i in request.query_params.get("ids", "").split(",") if i]
        all_or_none = request.query_params.get("allOrNone", "false").lower() == "true"
        if len(ids) > COMPOSITE_LIMIT:
            raise _too_many()
        records = []
        for raw in ids:
            record_id = normalize_id(raw)
            obj = org.schema.by_key_prefix(record_id[:3]) if record_id else None
            if obj is None:
                raise SfHttpError(400, "MALFORMED_ID", f"malformed id {raw}")
            records.append({"attributes": {"type": obj.name}, "Id": record_id})
        groups = _group_by_type(org, records, None)
        results = await run_in_threadpool(_composite_write, org, "delete", groups, len(records), user, all_or_none, None)
        return json_response([_save_result(r, False) for r in results])
    if request.method == "GET":
        if len(segments) != 1:
            raise SfHttpError(404, "NOT_FOUND", "The requested resource does not exist")
        obj = _sobject(org, segments[0])
        ids = [i for i in request.query_params.get("ids", "").split(",") if i]
        names = [f.strip() for f in request.query_params.get("fields", "Id").split(",") if f.strip()]
        return json_response(await run_in_threadpool(_records_json, org, obj, ids, version, names))
    body = await read_json(request)
    if request.method == "POST" and len(segments) == 1:
        return json_response(await run_in_threadpool(_retrieve, org, _sobject(org, segments[0]), body, version))
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise SfHttpError(400, "JSON_PARSER_ERROR", "Expected a JSON object with a 'records' array")
    records = body["records"]
    if len(records) > COMPOSITE_LIMIT:
        raise _too_many()
    all_or_none = bool(body.get("allOrNone", False))
    if request.method == "POST" and not segments:
        operation, ext, default_type = "insert", None, None
    elif request.method == "PATCH" and not segments:
        operation, ext, default_type = "update", None, None
        for record in records:
            if isinstance(record, dict) and "id" in record and "Id" not in record:
                record["Id"] = record.pop("id")
    elif request.method == "PATCH" and len(segments) == 2:
        obj = _sobject(org, segments[0])
        ext_field = obj.field(segments[1])
        if ext_field is None or not (ext_field.is_key or ext_field.name == "Id"):
            raise SfHttpError(404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {segments[1]}")
        operation, ext, default_type = "upsert", ext_field.name, obj.name
    else:
        raise SfHttpError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed.")
    groups = _group_by_type(org, records, default_type)
    results = await run_in_threadpool(_composite_write, org, operation, groups, len(records), user, all_or_none, ext)
    return json_response([_save_result(r, operation == "upsert") for r in results])


def _retrieve(org: Org, obj: SObjectDef, body: Any, version: str) -> list[dict | None]:
    """``POST composite/sobjects/{type}`` with ``{"ids": [...], "fields": [...]}``: up to 2,000 records."""
    if not isinstance(body, dict) or not isinstance(body.get("ids"), list) or not isinstance(body.get("fields"), list):
        raise SfHttpError(400, "JSON_PARSER_ERROR", "Expected a JSON object with 'ids' and 'fields' arrays")
    ids, fields = body["ids"], body["fields"]
    if not ids or not fields or not all(isinstance(f, str) for f in fields):
        raise SfHttpError(400, "INVALID_FIELD", "Both 'ids' and 'fields' need at least one value")
    if len(ids) > RETRIEVE_LIMIT:
        raise SfHttpError(
            400, "EXCEEDED_ID_LIMIT", f"record limit reached. cannot submit more than {RETRIEVE_LIMIT} records into this call"
        )
    return _records_json(org, obj, ids, version, [f.strip() for f in fields])


def _too_many() -> SfHttpError:
    return SfHttpError(
        400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records into this call"
    )


# -- composite batch ---------------------------------------------------------------------------

BATCH_LIMIT = 25  # subrequests per composite batch


def _batch_subrequest(org: Org, sub: Any) -> dict[str, Any]:
    """One subrequest of a composite batch → ``{"statusCode", "result"}`` (an error: a list of errors)."""
    from urllib.parse import parse_qs, urlsplit

    try:
        if not isinstance(sub, dict) or not isinstance(sub.get("url"), str) or not isinstance(sub.get("method"), str):
            raise SfHttpError(400, "INVALID_BATCH_REQUEST", "Each batch request needs a 'method' and a 'url'")
        parts = urlsplit(sub["url"])
        path = parts.path.strip("/")
        if path.startswith("services/data/"):
            path = path[len("services/data/"):]
        segments = path.split("/")
        version = check_version(segments[0][1:] if segments[0].startswith("v") else "")
        rest = segments[1:]
        if sub["method"].upper() != "GET":
            raise SfHttpError(405, "METHOD_NOT_ALLOWED",
                              f"HTTP Method '{sub['method']}' not allowed: this sandbox's composite batch runs GET subrequests")
        if rest and rest[0] in ("query", "queryAll") and len(rest) == 1:
            text = (parse_qs(parts.query).get("q") or [""])[0]
            if not text:
                raise SfHttpError(400, "MALFORMED_QUERY", "A query string must be provided with the q parameter")
            result: Any = _run_query(org, text, rest[0] == "queryAll", version, QUERY_BATCH_DEFAULT)
        elif len(rest) == 3 and rest[0] == "sobjects" and rest[2] == "describe":
            result = _sobject(org, rest[1]).describe(version)
        elif rest == ["limits"]:
            used, maximum = org.usage.snapshot()
            result = {"DailyApiRequests": {"Max": maximum, "Remaining": max(maximum - used, 0)}}
        else:
            raise SfHttpError(404, "NOT_FOUND", "The requested resource does not exist")
        return {"statusCode": 200, "result": result}
    except SfHttpError as exc:
        error: dict[str, Any] = {"errorCode": exc.code, "message": exc.message}
        if exc.fields is not None:
            error["fields"] = exc.fields
        return {"statusCode": exc.status, "result": [error]}


@rest_endpoint
async def composite_batch(request: Request, org: Org, version: str, user: str) -> Response:
    """``POST composite/batch``: ``{"batchRequests": [{"method", "url"}], "haltOnError"}`` →
    ``{"hasErrors", "results": [{"statusCode", "result"}]}``, in order; one API request in all.

    With ``haltOnError``, the subrequests after a failed one are not run (412,
    ``BATCH_PROCESSING_HALTED``), as Salesforce answers.
    """
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("batchRequests"), list) or not body["batchRequests"]:
        raise SfHttpError(400, "JSON_PARSER_ERROR", "Expected a JSON object with a non-empty 'batchRequests' array")
    subs = body["batchRequests"]
    if len(subs) > BATCH_LIMIT:
        raise SfHttpError(400, "INVALID_BATCH_REQUEST", f"A batch can contain at most {BATCH_LIMIT} subrequests")
    halt = bool(body.get("haltOnError", False))

    def run() -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        halted = False
        for sub in subs:
            if halted:
                results.append({"statusCode": 412, "result": [
                    {"errorCode": "BATCH_PROCESSING_HALTED", "message": "Batch processing halted per request"}]})
                continue
            results.append(_batch_subrequest(org, sub))
            halted = halt and results[-1]["statusCode"] >= 400
        return results

    results = await run_in_threadpool(run)
    return json_response({"hasErrors": any(r["statusCode"] >= 400 for r in results), "results": results})


def routes() -> list[Route]:
    base = "/services/data/v{version}"
    return [
        Route("/services/data", versions, methods=["GET"]),
        Route(base, resources, methods=["GET"]),
        Route(base + "/limits", limits, methods=["GET"]),
        Route(base + "/sobjects", describe_global, methods=["GET"]),
        Route(base + "/sobjects/{sobject}", sobject_root, methods=["GET", "POST"]),
        Route(base + "/sobjects/{sobject}/{rest:path}", sobject_path, methods=["GET", "PATCH", "DELETE", "POST"]),
        Route(base + "/query", query, methods=["GET"]),
        Route(base + "/queryAll", query, methods=["GET"]),
        Route(base + "/query/{locator}", query_more, methods=["GET"]),
        Route(base + "/queryAll/{locator}", query_more, methods=["GET"]),
        Route(base + "/composite/batch", composite_batch, methods=["POST"]),
        Route(base + "/composite/sobjects", composite_sobjects, methods=["POST", "PATCH", "DELETE"]),
        Route(base + "/composite/sobjects/{rest:path}", composite_sobjects, methods=["GET", "POST", "PATCH"]),
    ]
