"""Placeholder: filled in by the dataquery work (routes and, where needed, a background worker)."""

from __future__ import annotations


def routes() -> list:
    return []
