"""Placeholder: filled in by the generator work."""

from __future__ import annotations


def generate_tenant(tenant, *, accounts: int, seed: int) -> None:
    raise NotImplementedError("the tenant generator is not written yet")
