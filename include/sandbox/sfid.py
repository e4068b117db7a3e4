"""Salesforce record Ids: making them, checking them, and the 15 → 18 character form.

A Salesforce Id is a 3-character key prefix naming the object, 12 base-62 characters, and (in the
18-character form) a 3-character suffix that encodes the case of the first 15 so the Id survives
case-insensitive systems. Clients check and compare Ids, so the sandbox makes real ones.
"""

from __future__ import annotations

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ALNUM = frozenset(_BASE62)


def base62(number: int, width: int) -> str:
    """Fixed-width base-62 digits of ``number`` (most significant first)."""
    if number < 0 or number >= 62**width:
        raise ValueError(f"{number} does not fit in {width} base-62 digits")
    digits = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        digits.append(_BASE62[rest])
    return "".join(reversed(digits))


def checksum_suffix(id15: str) -> str:
    """The 3-character suffix of the 18-character form of ``id15``."""
    suffix = []
    for start in (0, 5, 10):
        bits = 0
        for offset, char in enumerate(id15[start : start + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << offset
        suffix.append(_SUFFIX_ALPHABET[bits])
    return "".join(suffix)


def make_id(key_prefix: str, body: str) -> str:
    """An 18-character Id from a 3-character key prefix and a 12-character body."""
    if len(key_prefix) != 3 or len(body) != 12:
        raise ValueError("an Id is a 3-character prefix and a 12-character body")
    id15 = key_prefix + body
    return id15 + checksum_suffix(id15)


def org_record_id(key_prefix: str, counter: int) -> str:
    """The Id of the ``counter``-th record the sandbox creates for an object.

    The fourth character is ``0`` for records the org creates itself; seeded records use ``Z``
    (see :func:`seeded_record_id`), so the two never collide.
    """
    return make_id(key_prefix, "0" + base62(counter, 11))


def seeded_record_id(key_prefix: str, seed: int, index: int) -> str:
    """The Id of the ``index``-th record of a tenant generated from ``seed``."""
    return make_id(key_prefix, "Z" + base62(seed % 62**3, 3) + base62(index + 1, 8))


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
