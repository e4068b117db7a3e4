"""ZOQL over the tenant's store: ``POST /v1/action/query``, ``/v1/action/queryMore`` and describe.

These are the calls the sync's ZOQL path makes, answered in Zuora's shapes (reference §2.2;
zuora-sdk's ``ProxyActionqueryResponse`` / ``FaultResponse`` models):

* ``query`` parses the ZOQL (:mod:`sandbox.zuora.zoql_parser`), checks object and fields against
  the schema, compiles the filter to SQL and runs it read-only on the object's table. The answer
  is ``{"records": [...], "size": N, "done": bool[, "queryLocator": "<32 hex>-<offset>"]}``:
  ``size`` is the whole result's count (Zuora's queryMore example: ``"size": 252070`` next to
  ``"queryLocator": "...-4000"``), pages hold 2,000 records or ``conf.batchSize`` (1-2000).
  Records carry ``Id`` (Zuora returns it even when not selected) and the selected fields spelled
  as the schema spells them; null fields are omitted; deleted records never appear.
* A result larger than a page gets a cursor: the ordered ids of the whole result are stored in
  ``_cursors`` on the first call, so later pages come from that snapshot (a record changed
  meanwhile shows its current values; one deleted meanwhile is skipped). The locator encodes the
  offset, so asking again for the same locator (a retry) returns the same page. A cursor expires
  after 15 minutes without use ("Zuora expires queryMore cursors after 15 minutes").
* Errors are HTTP 400 ``{"FaultCode": ..., "FaultMessage": ...}`` (zuora-sdk maps action/query's
  400 to ``FaultResponse`` with exactly these keys; guardian/support-service-lambdas parses the
  same body): ``MALFORMED_QUERY`` for syntax and unsupported constructs, ``INVALID_TYPE`` for an
  unknown object (``invalid type specified: X``), ``INVALID_FIELD`` for an unknown field
  (``invalid field for query: Account.foo``, the text zendesk/iron_bank matches), ``INVALID_VALUE``
  for a value that does not fit its field and for an unknown or expired query locator (Zuora's
  ErrorCode enumeration has no locator code; its InvalidQueryLocatorFault carries INVALID_VALUE).

Semantics: string comparisons are case-sensitive ("explicit string values are case-sensitive",
ZOQL docs), ``like`` takes ``%`` and ``_`` wildcards (``\\%`` for a literal one), ``and`` binds
tighter than ``or``, ``= null`` / ``!= null`` mean ``is null`` / ``is not null``, quotes around
numbers and booleans are optional.

Time zone: Zuora renders datetimes in the tenant's time zone with its offset
(``2024-01-01T02:00:00.000-08:00``) and reads a datetime literal without an offset in that zone;
one with an offset is converted (Zuora's "DateTime field behavior after changing your time zone").
The default is Zuora system time, Pacific (America/Los_Angeles, so -08:00 in winter, -07:00 in
summer); a tenant may set another IANA zone with ``store.set_setting("time_zone", "Europe/Paris")``.
The store keeps UTC; conversion happens only here. A date literal against a datetime field means
midnight in the tenant's zone.

``GET /v1/describe/{Object}`` (and ``/v1/describe``, the object list tap-zuora reads) returns
Zuora's XML (shape from zendesk/iron_bank's recorded fixtures and Zuora's API reference). Zuora
serves it as ``text/xml``; zuora-sdk's ``DescribeApi.get_describe`` declares ``str`` but sends
``Accept: application/json`` and refuses any content type other than JSON or ``text/plain``, so
a client that does not accept XML gets the same document as ``text/plain``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Callable
from zoneinfo import ZoneInfo

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.sqlite_store import quote
from sandbox.zuora.schema import TenantSchema, ZField, ZObject
from sandbox.zuora.store import TenantStore
from sandbox.zuora.timezone import tenant_time_zone
from sandbox.zuora.zoql_parser import (
    COMPARISON_OPS,
    And,
    Condition,
    Literal,
    Or,
    ZoqlSyntaxError,
    parse,
)

PAGE_SIZE = 2000
CURSOR_IDLE_SECONDS = 15 * 60
_BLOCK = 2000  # ids per stored snapshot block

# Row ids in _cursors: a header per cursor and its id blocks, in ranges of their own (other
# features may keep cursors in the same table).
_HEADER = "zoql:"
_BLOCKS = "zoql-ids:"
_LOCATOR = re.compile(r"([0-9a-f]{32})-([0-9]+)")

_TEXT_TYPES = ("id", "string", "picklist")
_DESCRIBE_TYPES = {"id": "text", "string": "text"}  # the rest keep their names (picklist, date, ...)


class ZoqlFault(Exception):
    """A call-level fault: HTTP 400 ``{"FaultCode": code, "FaultMessage": message}``."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def body(self) -> dict[str, str]:
        return {"FaultCode": self.code, "FaultMessage": self.message}


# -- values: literal → stored form, stored form → JSON ----------------------------------------------

_DATETIME_LITERAL = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6})\d*)?)?(Z|[+-]\d{2}:?\d{2})?)?"
)


def _parse_datetime(text: str, tz: ZoneInfo) -> tuple[dt.datetime, bool]:
    """An aware datetime from a ZOQL literal, and whether it had a time part.

    No offset means the tenant's zone; a date alone means its midnight there.
    """
    m = _DATETIME_LITERAL.fullmatch(text.strip())
    if m is None:
        raise ValueError(text)
    y, mo, d, h, mi, s, frac, offset = m.groups()
    micro = int((frac or "0").ljust(6, "0"))
    value = dt.datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), micro)
    if offset is None:
        return value.replace(tzinfo=tz), h is not None
    if offset == "Z":
        return value.replace(tzinfo=dt.timezone.utc), True
    sign = -1 if offset[0] == "-" else 1
    hours, minutes = int(offset[1:3]), int(offset[-2:])
    return value.replace(tzinfo=dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))), True


def _stored_datetime(value: dt.datetime) -> str:
    # Fractions are kept: "… 00:00:00" sorts before "… 00:00:00.500000", as the instants do.
    utc = value.astimezone(dt.timezone.utc)
    text = utc.strftime("%Y-%m-%d %H:%M:%S")
    return text + (f".{utc.microsecond:06d}" if utc.microsecond else "")


def _stored_value(f: ZField, literal: Literal, tz: ZoneInfo) -> Any:
    """``literal`` in the stored form of field ``f``; ``ValueError`` when it does not fit."""
    kind, value = literal.kind, literal.value
    if f.type in _TEXT_TYPES:
        if kind == "string":
            return value
        if kind == "number":
            return str(value)
        raise ValueError(value)
    if f.type in ("integer", "decimal"):
        number = Decimal(str(value).strip()) if kind in ("string", "number") else None
        if number is None or not number.is_finite():
            raise ValueError(value)
        return int(number) if f.type == "integer" and number == number.to_integral_value() else float(number)
    if f.type == "boolean":
        if kind == "boolean":
            return int(value)
        if kind == "string" and value.strip().lower() in ("true", "false"):
            return int(value.strip().lower() == "true")
        raise ValueError(value)
    if kind != "string":
        raise ValueError(value)
    moment, has_time = _parse_datetime(value, tz)
    if f.type == "date":
        # A datetime against a date field counts by its calendar day in the tenant's zone.
        return (moment.astimezone(tz) if has_time else moment).date().isoformat()
    return _stored_datetime(moment)


def renderer(f: ZField, tz: ZoneInfo) -> Callable[[Any], Any]:
    """How a stored value of ``f`` appears in a ZOQL record."""
    if f.type == "datetime":
        def render(value: str) -> str:
            moment = dt.datetime.fromisoformat(value).replace(tzinfo=dt.timezone.utc)
            return moment.astimezone(tz).isoformat(timespec="milliseconds")
        return render
    if f.type == "boolean":
        return bool
    if f.type == "integer":
        return int
    if f.type == "decimal":
        return float
    return str


def _glob(pattern: str) -> str:
    """A ZOQL like pattern (``%``, ``_``, backslash escapes) as a case-sensitive SQLite GLOB."""
    out, chars = [], iter(pattern)
    for ch in chars:
        if ch == "\\":
            ch = next(chars, "\\")
            out.append(f"[{ch}]" if ch in "*?[" else ch)
        elif ch == "%":
            out.append("*")
        elif ch == "_":
            out.append("?")
        else:
            out.append(f"[{ch}]" if ch in "*?[" else ch)
    return "".join(out)


# -- compiling ----------------------------------------------------------------------------------------


@dataclass
class CompiledQuery:
    """A checked query: its object, the fields a record carries (Id first) and the SQL filter."""

    obj: ZObject
    fields: list[ZField]
    where_sql: str
    params: list[Any]

    def ids_sql(self) -> str:
        """All matching live ids, in a stable order (insertion order)."""
        where = f" AND ({self.where_sql})" if self.where_sql else ""
        return f"SELECT id FROM {quote(self.obj.table)} WHERE deleted = 0{where} ORDER BY rowid"


def _field(obj: ZObject, name: str) -> ZField:
    f = obj.field(name)
    if f is None:
        raise ZoqlFault("INVALID_FIELD", f"invalid field for query: {obj.name}.{name}")
    return f


Resolver = Callable[[str], "tuple[ZField, str]"]


def condition_sql(node: Condition | And | Or, obj: ZObject, tz: ZoneInfo, params: list[Any],
                  resolve: Resolver | None = None) -> str:
    """The SQL of a ZOQL filter on ``obj``; ``resolve`` maps a field name to its field and SQL
    column (Export ZOQL passes one that knows joined objects; by default, ``obj``'s own columns)."""
    if resolve is None:
        def resolve(name: str) -> tuple[ZField, str]:
            found = _field(obj, name)
            return found, quote(found.column)
    if isinstance(node, (And, Or)):
        joiner = " AND " if isinstance(node, And) else " OR "
        return joiner.join(f"({condition_sql(item, obj, tz, params, resolve)})" for item in node.items)
    f, column = resolve(node.field)
    literal = node.value
    if node.op == "is null" or (literal is not None and literal.kind == "null" and node.op == "="):
        return f"{column} IS NULL"
    if node.op == "is not null" or (literal is not None and literal.kind == "null" and node.op == "!="):
        return f"{column} IS NOT NULL"
    if literal.kind == "null":
        raise ZoqlFault("INVALID_VALUE", f"null can only be compared with = or != ({f.name} {node.op} null)")
    if literal.kind == "field":
        if obj.field(str(literal.value)) is not None:
            raise ZoqlFault("MALFORMED_QUERY", f"You have an error in your ZOQL syntax: comparison between "
                                               f"two fields is not supported ({f.name} {node.op} {literal.value})")
        raise ZoqlFault("MALFORMED_QUERY", f"You have an error in your ZOQL syntax: unexpected token "
                                           f"'{literal.value}' at column {literal.column} (quote string values)")
    if node.op == "like":
        if f.type not in _TEXT_TYPES:
            raise ZoqlFault("INVALID_VALUE", f"like is only supported on text fields, not {f.name}")
        params.append(_glob(str(literal.value)))
        return f"{column} GLOB ?"
    if f.type == "boolean" and node.op not in ("=", "!="):
        raise ZoqlFault("INVALID_VALUE", f"{f.name} is a boolean: only = and != apply")
    try:
        params.append(_stored_value(f, literal, tz))
    except (ValueError, InvalidOperation):
        raise ZoqlFault("INVALID_VALUE", f"invalid value for {obj.name}.{f.name}: {literal.value}") from None
    assert node.op in COMPARISON_OPS
    return f"{column} {node.op} ?"


def compile_query(schema: TenantSchema, text: str, tz: ZoneInfo) -> CompiledQuery:
    """Parse and check ``text`` against ``schema``; raises :class:`ZoqlFault`."""
    try:
        query = parse(text)
    except ZoqlSyntaxError as exc:
        raise ZoqlFault("MALFORMED_QUERY", exc.message) from None
    obj = schema.get(query.object)
    if obj is None:
        raise ZoqlFault("INVALID_TYPE", f"invalid type specified: {query.object}")
    fields = [obj.fields["Id"]]
    for name in query.fields:
        f = _field(obj, name)
        if f not in fields:
            fields.append(f)
    params: list[Any] = []
    where_sql = condition_sql(query.where, obj, tz, params) if query.where is not None else ""
    return CompiledQuery(obj, fields, where_sql, params)


# -- running and paging ---------------------------------------------------------------------------------


def _records(store: TenantStore, obj: ZObject, fields: list[ZField], ids: list[str], tz: ZoneInfo) -> list[dict]:
    """The records of ``ids`` in that order; ones deleted since the snapshot are skipped."""
    if not ids:
        return []
    columns = ", ".join(quote(f.column) for f in fields)
    rows = {
        row[0]: row
        for row in store.conn().execute(
            f"SELECT {columns} FROM {quote(obj.table)} "
            "WHERE deleted = 0 AND id IN (SELECT value FROM json_each(?))", (json.dumps(ids),))
    }
    renderers = [(f.name, renderer(f, tz)) for f in fields]
    return [
        {name: render(value) for (name, render), value in zip(renderers, rows[i]) if value is not None}
        for i in ids if i in rows
    ]


def _purge_expired(conn, now: float) -> None:
    cutoff = now - CURSOR_IDLE_SECONDS
    stale = [
        row[0][len(_HEADER):]
        for row in conn.execute("SELECT id, spec FROM _cursors WHERE id > ? AND id < ?",
                                (_HEADER, _HEADER[:-1] + ";"))
        if json.loads(row[1])["last_used"] < cutoff
    ]
    for cursor_id in stale:
        conn.execute("DELETE FROM _cursors WHERE id = ?", (_HEADER + cursor_id,))
        conn.execute("DELETE FROM _cursors WHERE id > ? AND id < ?",
                     (f"{_BLOCKS}{cursor_id}:", f"{_BLOCKS}{cursor_id};"))


def run_query(store: TenantStore, schema: TenantSchema, text: str, batch: int) -> dict[str, Any]:
    """One ``action/query`` answer; stores a cursor when the result is larger than ``batch``."""
    tz = tenant_time_zone(store)
    compiled = compile_query(schema, text, tz)
    ids = [row[0] for row in store.conn().execute(compiled.ids_sql(), compiled.params)]
    total = len(ids)
    result: dict[str, Any] = {
        "records": _records(store, compiled.obj, compiled.fields, ids[:batch], tz),
        "size": total,
        "done": total <= batch,
    }
    if total > batch:
        cursor_id = secrets.token_hex(16)
        now = time.time()
        header = {"object": compiled.obj.name, "fields": [f.name for f in compiled.fields], "total": total,
                  "batch": batch, "created": now, "last_used": now}
        with store.write() as conn:
            _purge_expired(conn, now)
            conn.execute("INSERT INTO _cursors(id, created, spec) VALUES (?, ?, ?)",
                         (_HEADER + cursor_id, now, json.dumps(header)))
            conn.executemany(
                "INSERT INTO _cursors(id, created, spec) VALUES (?, ?, ?)",
                ((f"{_BLOCKS}{cursor_id}:{n:09d}", now, json.dumps(ids[start:start + _BLOCK]))
                 for n, start in enumerate(range(0, total, _BLOCK))),
            )
        result["queryLocator"] = f"{cursor_id}-{batch}"
    return result


def run_query_more(store: TenantStore, schema: TenantSchema, locator: str, batch: int | None) -> dict[str, Any]:
    """One ``action/queryMore`` answer: the page of the snapshot that ``locator`` points at."""
    invalid = ZoqlFault("INVALID_VALUE", f"invalid query locator: {locator}")
    m = _LOCATOR.fullmatch(locator.strip())
    if m is None:
        raise invalid
    cursor_id, offset = m.group(1), int(m.group(2))
    row = store.conn().execute("SELECT spec FROM _cursors WHERE id = ?", (_HEADER + cursor_id,)).fetchone()
    if row is None:
        raise invalid
    header = json.loads(row[0])
    now = time.time()
    if now - header["last_used"] > CURSOR_IDLE_SECONDS:
        with store.write() as conn:
            _purge_expired(conn, now)
        raise ZoqlFault("INVALID_VALUE", f"invalid query locator: {locator} (the cursor expired)")
    total = header["total"]
    if offset <= 0 or offset >= total:
        raise invalid
    batch = batch or header["batch"]
    first, last = offset // _BLOCK, (min(offset + batch, total) - 1) // _BLOCK
    ids: list[str] = []
    for (block_text,) in store.conn().execute(
        "SELECT spec FROM _cursors WHERE id >= ? AND id <= ? ORDER BY id",
        (f"{_BLOCKS}{cursor_id}:{first:09d}", f"{_BLOCKS}{cursor_id}:{last:09d}"),
    ):
        ids.extend(json.loads(block_text))
    start = offset - first * _BLOCK
    page_ids = ids[start:start + batch]
    header["last_used"] = now
    with store.write() as conn:
        conn.execute("UPDATE _cursors SET spec = ? WHERE id = ?", (json.dumps(header), _HEADER + cursor_id))
    obj = schema.get(header["object"])
    tz = tenant_time_zone(store)
    fields = [obj.fields[name] for name in header["fields"]]
    following = offset + batch
    result: dict[str, Any] = {
        "records": _records(store, obj, fields, page_ids, tz),
        "size": total,
        "done": following >= total,
    }
    if following < total:
        result["queryLocator"] = f"{cursor_id}-{following}"
    return result


# -- HTTP -------------------------------------------------------------------------------------------------


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")), status_code=status,
                    media_type="application/json; charset=utf-8")


def _fault(exc: ZoqlFault) -> Response:
    return _json(exc.body(), 400)


async def _request_body(request: Request, allowed: set[str]) -> dict[str, Any] | Response:
    """The JSON object sent, or the response refusing it."""
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return _fault(ZoqlFault("INVALID_VALUE", "the request body must be a JSON object"))
    # Zuora ignores unknown fields unless rejectUnknownFields=true (API reference, both calls).
    if request.query_params.get("rejectUnknownFields", "").lower() == "true" and set(body) - allowed:
        return _json({"message": "Error - unrecognised fields"}, 400)
    return body


def _batch_size(conf: Any) -> int | None:
    """``conf.batchSize`` (1-2000; more means 2000), ``None`` when not given."""
    if conf is None:
        return None
    size = conf.get("batchSize") if isinstance(conf, dict) else "?"
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ZoqlFault("INVALID_VALUE", f"batchSize must be an integer from 1 to 2000, not {size}")
    return min(size, PAGE_SIZE)


async def action_query(request: Request) -> Response:
    body = await _request_body(request, {"conf", "queryString"})
    if isinstance(body, Response):
        return body
    tenant = request.app.state.tenant
    text = body.get("queryString")
    try:
        if not isinstance(text, str):
            raise ZoqlFault("MALFORMED_QUERY", "queryString is required")
        batch = _batch_size(body.get("conf")) or PAGE_SIZE
        result = await run_in_threadpool(run_query, tenant.store, tenant.schema, text, batch)
    except ZoqlFault as exc:
        return _fault(exc)
    return _json(result)


async def action_query_more(request: Request) -> Response:
    body = await _request_body(request, {"conf", "queryLocator"})
    if isinstance(body, Response):
        return body
    tenant = request.app.state.tenant
    locator = body.get("queryLocator")
    try:
        if not isinstance(locator, str):
            raise ZoqlFault("INVALID_VALUE", "queryLocator is required")
        batch = _batch_size(body.get("conf"))
        result = await run_in_threadpool(run_query_more, tenant.store, tenant.schema, locator, batch)
    except ZoqlFault as exc:
        return _fault(exc)
    return _json(result)


# -- describe ---------------------------------------------------------------------------------------------


def label(name: str) -> str:
    """``BillToId`` → ``Bill To Id``; runs of capitals (``UOM``, ``SKU``) stay together."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name).replace("_", " ")


def _text(parent: ET.Element, tag: str, value: Any = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    if value is not None:
        element.text = str(value).lower() if isinstance(value, bool) else str(value)
    return element


def describe_object(obj: ZObject, base_url: str) -> str:
    """Zuora's describe XML for ``obj``: every field with its type, options and contexts."""
    root = ET.Element("object", href=f"{base_url}/v1/describe/{obj.name}")
    _text(root, "name", obj.name)
    _text(root, "label", obj.label)
    fields = _text(root, "fields")
    for f in obj.fields.values():
        field = _text(fields, "field")
        _text(field, "name", f.name)
        _text(field, "label", label(f.name))
        _text(field, "selectable", True)
        _text(field, "createable", f.createable)
        _text(field, "updateable", f.updateable)
        _text(field, "filterable", True)
        _text(field, "custom", f.name.endswith("__c"))
        _text(field, "maxlength", f.length if f.type in ("string", "picklist") and f.length else None)
        _text(field, "required", f.required)
        _text(field, "type", _DESCRIBE_TYPES.get(f.type, f.type))
        if f.values:
            options = _text(field, "options")
            for value in f.values:
                _text(options, "option", value)
        contexts = _text(field, "contexts")
        _text(contexts, "context", "soap")
        _text(contexts, "context", "export")
    related = related_objects(obj)
    if related:
        objects = _text(root, "related-objects")
        for name, f in related.items():
            element = ET.SubElement(objects, "object", href=f"{base_url}/v1/describe/{f.references}")
            _text(element, "name", name)
            _text(element, "label", label(f.name[:-2]))
    return _xml_document(root)


def related_objects(obj: ZObject) -> dict[str, ZField]:
    """The objects ``obj`` joins to, by Zuora's names, and the reference field of each:
    ``BillToId`` → ``BillToContact``, ``ParentId`` → ``ParentAccount``, ``AccountId`` → ``Account``."""
    related = {}
    for f in obj.fields.values():
        if f.references and f.name.endswith("Id"):
            stem = f.name[:-2]
            related[stem if stem.endswith(f.references) else stem + f.references] = f
    return related


def describe_objects(schema: TenantSchema, base_url: str) -> str:
    """The list of describable objects (``GET /v1/describe``)."""
    root = ET.Element("objects")
    for obj in schema.objects.values():
        element = ET.SubElement(root, "object", href=f"{base_url}/v1/describe/{obj.name}")
        _text(element, "name", obj.name)
        _text(element, "label", obj.label)
    return _xml_document(root)


def _xml_document(root: ET.Element) -> str:
    ET.indent(root, space="   ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _xml_response(request: Request, document: str) -> Response:
    accept = request.headers.get("accept", "").lower()
    takes_xml = not accept or "xml" in accept or "*/*" in accept or "text/*" in accept
    media_type = "text/xml; charset=utf-8" if takes_xml else "text/plain; charset=utf-8"
    return Response(document, media_type=media_type)


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def describe(request: Request) -> Response:
    tenant = request.app.state.tenant
    name = request.path_params["object"]
    obj = tenant.schema.get(name)
    if obj is None:
        # The tenant's usual REST error shape; the app imports this module, so import it late.
        from sandbox.zuora.app import error_body, json_response

        return json_response(error_body(404, 50000040, f"Object {name} is not found"), 404)
    return _xml_response(request, describe_object(obj, _base_url(request)))


async def describe_all(request: Request) -> Response:
    return _xml_response(request, describe_objects(request.app.state.tenant.schema, _base_url(request)))


def routes() -> list[Route]:
    return [
        Route("/v1/action/query", action_query, methods=["POST"]),
        Route("/v1/action/queryMore", action_query_more, methods=["POST"]),
        Route("/v1/describe", describe_all, methods=["GET"]),
        Route("/v1/describe/{object}", describe, methods=["GET"]),
    ]
