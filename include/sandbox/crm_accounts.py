"""The Salesforce Accounts that a generated Zuora tenant points at through ``CrmId``.

Both sandboxes call these functions, so ``--accounts N --seed K`` on each side makes a
consistent pair: the Salesforce sandbox pre-creates exactly the Accounts whose Ids the Zuora
tenant of the same size and seed stores as CRM Ids.
"""

from __future__ import annotations

from sandbox.sfid import seeded_record_id

ACCOUNT_KEY_PREFIX = "001"

_NAME_STEMS = (
    "Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay", "Soylent",
    "Tyrell", "Cyberdyne", "Wonka", "Aperture", "Massive", "Oscorp", "Pied Piper",
)
_NAME_KINDS = ("Corp", "Inc", "GmbH", "Ltd", "Labs", "Group", "Systems", "Partners")


def crm_account_id(seed: int, index: int) -> str:
    """The Salesforce Account Id of the ``index``-th (0-based) account of tenant ``seed``."""
    return seeded_record_id(ACCOUNT_KEY_PREFIX, seed, index)


def crm_account_name(seed: int, index: int) -> str:
    """A readable, deterministic company name for that Account."""
    stem = _NAME_STEMS[(index * 7 + seed) % len(_NAME_STEMS)]
    kind = _NAME_KINDS[(index + seed * 3) % len(_NAME_KINDS)]
    return f"{stem} {kind} {index + 1:06d}"


def crm_account_number(seed: int, index: int) -> str:
    """The ``AccountNumber`` of that Account (the Zuora tenant's account numbers match it)."""
    return f"A{seed:03d}{index + 1:08d}"
