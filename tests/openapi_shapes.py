"""Check a JSON answer against the zuora-sdk model its OpenAPI operation declares.

zuora-sdk's ``from_dict`` accepts almost anything (it neither refuses unknown keys nor checks
types), so "the SDK parsed it" proves little. :func:`assert_model_shape` is the strict reading: every
key the answer carries must be a field of the model (by its JSON name), and every value must have
the type the model declares: strings, booleans, integers, numbers, ``YYYY-MM-DD`` dates, ISO
datetimes, the enumeration's values, lists and nested models checked the same way.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import re
import typing
from typing import Any

from pydantic import BaseModel

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def assert_model_shape(data: Any, model: type[BaseModel], path: str = "$") -> None:
    assert isinstance(data, dict), f"{path}: expected an object for {model.__name__}, got {data!r}"
    by_alias = {(f.alias or name): f for name, f in model.model_fields.items() if name != "additional_properties"}
    for key, value in data.items():
        assert key in by_alias, f"{path}.{key}: not a field of {model.__name__}"
        _check(value, by_alias[key].annotation, f"{path}.{key}")


def _check(value: Any, annotation: Any, path: str) -> None:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _check(value, typing.get_args(annotation)[0], path)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return
        failures = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check(value, option, path)
            except AssertionError as exc:
                failures.append(str(exc))
        raise AssertionError(f"{path}: {value!r} fits none of {options}: {failures}")
    if origin in (list, typing.List):
        assert isinstance(value, list), f"{path}: expected a list, got {value!r}"
        (item,) = typing.get_args(annotation)
        for index, element in enumerate(value):
            _check(element, item, f"{path}[{index}]")
        return
    if origin in (dict, typing.Dict):
        assert isinstance(value, dict), f"{path}: expected an object, got {value!r}"
        return
    if annotation is Any:
        return
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return assert_model_shape(value, annotation, path)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        assert value in {m.value for m in annotation}, f"{path}: {value!r} is not one of {annotation.__name__}"
        return
    if annotation is bool:
        assert isinstance(value, bool), f"{path}: expected a boolean, got {value!r}"
    elif annotation is int:
        assert isinstance(value, int) and not isinstance(value, bool), f"{path}: expected an integer, got {value!r}"
    elif annotation in (float, decimal.Decimal):
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{path}: expected a number, got {value!r}"
    elif annotation is str:
        assert isinstance(value, str), f"{path}: expected a string, got {value!r}"
    elif annotation is dt.date:
        assert isinstance(value, str) and _DATE.match(value), f"{path}: expected YYYY-MM-DD, got {value!r}"
    elif annotation is dt.datetime:
        assert isinstance(value, str) and dt.datetime.fromisoformat(value), f"{path}: expected a datetime, got {value!r}"
    else:
        raise AssertionError(f"{path}: the checker does not know {annotation!r}")
