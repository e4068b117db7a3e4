"""Bulk API 1.0's three wire formats: XML, JSON and CSV, in and out.

Salesforce's Bulk API 1.0 (``/services/async``) speaks XML by default: job and batch descriptions are
``<jobInfo>`` / ``<batchInfo>`` documents in the ``http://www.force.com/2009/06/asyncapi/dataload``
namespace, and errors are ``<error><exceptionCode/><exceptionMessage/></error>``. A client may use
JSON instead (simple-salesforce does). Batches carry records as XML ``<sObjects>``, CSV or a JSON
array, as the job's ``contentType`` says; their results come back in the same format. Sources: the
Bulk API 1.0 guide's "Create a Job", "Add a Batch to a Job", "Get Batch Results", "JobInfo",
"BatchInfo" and "Errors" pages (``../shared/reference/salesforce.md`` §3.5 and §6, D:b1res, D:b1job,
D:b1err), whose examples these shapes follow element for element.

This module only translates: records become the header-and-rows form the DML engine takes (XML and
CSV as CSV cells, JSON as JSON values), and results, infos and errors become documents. What the
records mean is :mod:`sandbox.salesforce.dml`'s business; jobs and batches are
:mod:`sandbox.salesforce.bulk1`'s.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Iterable
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

from defusedxml import ElementTree as SafeET

from sandbox.salesforce.dml import json_rows
from sandbox.salesforce.values import NULL_TOKEN

NS = "http://www.force.com/2009/06/asyncapi/dataload"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
_XSI_NIL = f"{{{XSI}}}nil"

#: Job description fields in the order Salesforce writes them (JobInfo).
JOB_FIELDS = (
    "id", "operation", "object", "createdById", "createdDate", "systemModstamp", "state",
    "externalIdFieldName", "concurrencyMode", "contentType", "numberBatchesQueued", "numberBatchesInProgress",
    "numberBatchesCompleted", "numberBatchesFailed", "numberBatchesTotal", "numberRecordsProcessed",
    "numberRetries", "apiVersion", "numberRecordsFailed", "totalProcessingTime", "apiActiveProcessingTime",
    "apexProcessingTime",
)
#: Batch description fields in Salesforce's order (BatchInfo).
BATCH_FIELDS = (
    "id", "jobId", "state", "stateMessage", "createdDate", "systemModstamp", "numberRecordsProcessed",
    "numberRecordsFailed", "totalProcessingTime", "apiActiveProcessingTime", "apexProcessingTime",
)
MEDIA_TYPES = {"XML": "application/xml", "JSON": "application/json", "CSV": "text/csv"}
CSV_RESULT_HEADER = ("Id", "Success", "Created", "Error")


class WireError(ValueError):
    """A document that cannot be read; the message says why, in Salesforce's words where it has them."""


def wire_format(content_type: str, accept: str, job_content_type: str | None) -> str:
    """``"JSON"`` or ``"XML"``: how to describe jobs and batches (and errors) to this request.

    A request that sends or asks for JSON gets JSON; one that sends or asks for XML gets XML; a request
    that says neither (a ``GET``, a CSV batch) gets its job's format: JSON for a JSON job, else XML,
    Bulk API 1.0's default.
    """
    sent, wanted = content_type.lower(), accept.lower()
    for header in (sent, wanted):
        if "json" in header:
            return "JSON"
        if "xml" in header:
            return "XML"
    return "JSON" if job_content_type == "JSON" else "XML"


# -- documents out -------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _element(tag: str, fields: Iterable[str], values: dict[str, Any], attributes: str = "") -> str:
    inner = "".join(
        f"<{name}>{escape(_text(values[name]))}</{name}>" for name in fields if values.get(name) is not None
    )
    return f"<{tag}{attributes}>{inner}</{tag}>"


def _document(body: str) -> str:
    return '<?xml version="1.0" encoding="UTF-8"?>' + body


def job_document(job: dict[str, Any], fmt: str) -> str:
    """A JobInfo as JSON (every field, nulls included) or XML (set fields, in Salesforce's order)."""
    if fmt == "JSON":
        return json.dumps(job, separators=(",", ":"))
    return _document(_element("jobInfo", JOB_FIELDS, job, f' xmlns="{NS}"'))


def batch_document(batch: dict[str, Any], fmt: str) -> str:
    if fmt == "JSON":
        return json.dumps(batch, separators=(",", ":"))
    return _document(_element("batchInfo", BATCH_FIELDS, batch, f' xmlns="{NS}"'))


def batch_list_document(batches: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "JSON":
        return json.dumps({"batchInfo": batches}, separators=(",", ":"))
    items = "".join(_element("batchInfo", BATCH_FIELDS, batch) for batch in batches)
    return _document(f'<batchInfoList xmlns="{NS}">{items}</batchInfoList>')


def error_document(code: str, message: str, fmt: str) -> str:
    if fmt == "JSON":
        return json.dumps({"exceptionCode": code, "exceptionMessage": message}, separators=(",", ":"))
    return _document(
        f'<error xmlns="{NS}"><exceptionCode>{escape(code)}</exceptionCode>'
        f"<exceptionMessage>{escape(message)}</exceptionMessage></error>"
    )


def results_document(results: list[dict[str, Any]], content_type: str) -> str:
    """A DML batch's results (``{"id", "success", "created", "errors"}`` each) in the job's format.

    CSV is ``"Id","Success","Created","Error"`` with the error as ``CODE:message:fields --``; XML is
    ``<results><result><id/><success/><created/>[<errors>...]</result>...``.
    """
    if content_type == "JSON":
        return json.dumps(results, separators=(",", ":"))
    if content_type == "CSV":
        out = io.StringIO()
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(CSV_RESULT_HEADER)
        for result in results:
            error = result["errors"][0] if result["errors"] else None
            text = f"{error['statusCode']}:{error['message']}:{','.join(error['fields'])} --" if error else ""
            writer.writerow([result["id"] or "", _text(result["success"]), _text(result["created"]), text])
        return out.getvalue()
    items = []
    for result in results:
        errors = "".join(
            "<errors>" + "".join(f"<fields>{escape(f)}</fields>" for f in error["fields"])
            + f"<message>{escape(error['message'])}</message><statusCode>{error['statusCode']}</statusCode></errors>"
            for error in result["errors"]
        )
        identifier = f"<id>{result['id']}</id>" if result["id"] else ""
        items.append(f"<result>{errors}{identifier}<success>{_text(result['success'])}</success>"
                     f"<created>{_text(result['created'])}</created></result>")
    return _document(f'<results xmlns="{NS}">{"".join(items)}</results>')


def result_list_document(result_ids: list[str], fmt: str) -> str:
    """The ids of a query batch's result sets: a JSON array or ``<result-list>``."""
    if fmt == "JSON":
        return json.dumps(result_ids)
    items = "".join(f"<result>{rid}</result>" for rid in result_ids)
    return _document(f'<result-list xmlns="{NS}">{items}</result-list>')


def xml_query_records(records: Iterable[tuple[dict[str, Any], dict[tuple[str, ...], str]]]) -> Iterable[str]:
    """A query result as ``<queryResult>``, streamed: each item is a REST-shaped record (nesting,
    parent nulls) and its cells by field path (the text Bulk CSV would show)."""
    yield _document(f'<queryResult xmlns="{NS}" xmlns:xsi="{XSI}">')
    for record, cells in records:
        yield '<records xsi:type="sObject">' + _xml_fields(record, cells, ()) + "</records>"
    yield "</queryResult>"


def _xml_fields(record: dict[str, Any], cells: dict[tuple[str, ...], str], prefix: tuple[str, ...]) -> str:
    parts = [f"<type>{escape(record['attributes']['type'])}</type>"]
    for name, value in record.items():
        if name == "attributes":
            continue
        if isinstance(value, dict):
            parts.append(f'<{name} xsi:type="sObject">{_xml_fields(value, cells, prefix + (name,))}</{name}>')
        elif value is None:
            parts.append(f'<{name} xsi:nil="true"/>')
        else:
            parts.append(f"<{name}>{escape(cells.get(prefix + (name,), _text(value)))}</{name}>")
    return "".join(parts)


# -- documents in --------------------------------------------------------------------------------


def _parse_xml(body: bytes, what: str) -> ET.Element:
    try:
        return SafeET.fromstring(body)
    except Exception as exc:  # defusedxml raises several types for hostile or broken XML
        raise WireError(f"Unable to parse {what}: {exc}") from None


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def read_job_request(body: bytes, fmt: str, what: str = "the job description") -> dict[str, Any]:
    """A JobInfo request body (``<jobInfo>`` or a JSON object) as a dict of its fields."""
    if fmt == "JSON":
        try:
            payload = json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError):
            raise WireError(f"Failed to parse {what} as JSON") from None
        if not isinstance(payload, dict):
            raise WireError(f"{what[0].upper()}{what[1:]} must be a JSON object")
        return payload
    root = _parse_xml(body, what)
    if _local(root.tag) != "jobInfo":
        raise WireError(f"Unable to parse {what}: the root element must be jobInfo, not {_local(root.tag)}")
    return {_local(child.tag): (child.text or "").strip() for child in root}


def json_records(body: bytes) -> tuple[list[str], list[list[Any]]]:
    """A JSON batch: headers and rows of JSON values (absent keys are left alone)."""
    try:
        records = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WireError(f"InvalidBatch : Failed to parse JSON: {exc}") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise WireError("InvalidBatch : A batch is a JSON array of records")
    return json_rows(records)


def csv_records(body: bytes) -> tuple[list[str], list[list[str]]]:
    """A CSV batch: its header and rows of cells (blank lines are not records)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(f"InvalidBatch : Failed to read the CSV as UTF-8: {exc}") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=False)
    header = next(reader, None)
    if not header:
        raise WireError("InvalidBatch : The CSV batch has no header row")
    return header, [row for row in reader if row]


def xml_records(body: bytes) -> tuple[list[str], list[list[str]]]:
    """An XML batch (``<sObjects><sObject>...``) as CSV-like cells: a relationship
    ``<Rel__r><sObject><Ext__c>v</Ext__c></sObject></Rel__r>`` is the column ``Rel__r.Ext__c``,
    ``xsi:nil="true"`` (or an empty element) sets null, an absent field is left alone."""
    try:
        root = _parse_xml(body, "the batch")
    except WireError as exc:
        raise WireError(f"InvalidBatch : {exc}") from None
    if _local(root.tag) != "sObjects":
        raise WireError(f"InvalidBatch : The root element must be sObjects, not {_local(root.tag)}")
    records: list[dict[str, str]] = []
    for item in root:
        if _local(item.tag) != "sObject":
            raise WireError(f"InvalidBatch : Unexpected element {_local(item.tag)}; expected sObject")
        record: dict[str, str] = {}
        for element in item:
            name = _local(element.tag)
            nested = [child for child in element if _local(child.tag) == "sObject"]
            if nested:
                for child in nested[0]:
                    record[f"{name}.{_local(child.tag)}"] = _xml_cell(child)
            else:
                record[name] = _xml_cell(element)
        records.append(record)
    headers: dict[str, None] = {}
    for record in records:
        headers.update(dict.fromkeys(record))
    names = list(headers)
    return names, [[record.get(name, "") for name in names] for record in records]


def _xml_cell(element: ET.Element) -> str:
    if element.get(_XSI_NIL) == "true" or not (element.text or "").strip():
        return NULL_TOKEN
    return element.text
