"""Salesforce record Ids: making them, checking them, and the 15 → 18 character form.

A Salesforce Id is a 3-character key prefix naming the object, 12 base-62 characters, and (in the
18-character form) a 3-character suffix that encodes the case of the first 15 so the Id survives
case-insensitive systems. Clients check and compare Ids, so the sandbox makes real ones.
"""

from __future__ import annotations

import functools

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ALNUM = frozenset(_BASE62)
_UPPER_FLAGS = str.maketrans({c: ("1" if c.isupper() else "0") for c in _BASE62})


def checksum_suffix(id15: str) -> str:
    """The 3-character suffix of the 18-character form of ``id15``."""
    # Each 5-character block gives one suffix character: bit i is set when character i is upper case.
    flags = id15.translate(_UPPER_FLAGS)
    return (
        _SUFFIX_ALPHABET[int(flags[4::-1], 2)]
        + _SUFFIX_ALPHABET[int(flags[9:4:-1], 2)]
        + _SUFFIX_ALPHABET[int(flags[14:9:-1], 2)]
    )


def make_id(key_prefix: str, body: str) -> str:
    """An 18-character Id from a 3-character key prefix and a 12-character body."""
    if len(key_prefix) != 3 or len(body) != 12:
        raise ValueError("an Id is a 3-character prefix and a 12-character body")
    id15 = key_prefix + body
    return id15 + checksum_suffix(id15)


def org_record_id(key_prefix: str, counter: int) -> str:
    """The Id of the ``counter``-th record the sandbox creates for an object.

    The body is ``0`` and eleven decimal digits: still a valid Id, and cheap to make by the
    million. Seeded records have ``Z`` as the fourth character (see :func:`seeded_record_id`),
    so the two never collide.
    """
    return _with_suffix(f"{key_prefix}0{counter:011d}")


def seeded_record_id(key_prefix: str, seed: int, index: int) -> str:
    """The Id of the ``index``-th (0-based) record of a tenant generated from ``seed``."""
    if not 0 <= index < 10**8 - 1:
        raise ValueError("a seeded tenant has fewer than 100 million records of one object")
    return _with_suffix(f"{key_prefix}Z{seed % 1000:03d}{index + 1:08d}")


def _with_suffix(id15: str) -> str:
    # Only the prefix and the fourth character can be upper case in these bodies, so the
    # suffix depends on them alone: compute it once per prefix.
    suffix = _SUFFIX_CACHE.get(id15[:4])
    if suffix is None:
        suffix = _SUFFIX_CACHE[id15[:4]] = checksum_suffix(id15[:4] + "0" * 11)
    return id15 + suffix


_SUFFIX_CACHE: dict[str, str] = {}


@functools.lru_cache(maxsize=65536)
def normalize_id(value: str) -> str | None:
    """The 18-character form of a well-formed 15- or 18-character Id, else ``None``.

    An 18-character Id whose suffix does not match its first 15 characters is malformed.
    """
    if len(value) not in (15, 18) or not _ALNUM.issuperset(value):
        return None
    id15 = value[:15]
    suffix = checksum_suffix(id15)
    if len(value) == 18 and value[15:].upper() != suffix:
        return None
    return id15 + suffix
