"""docker-compose.yaml as Compose reads it: the YAML with its variables interpolated.

Shared by the static checks (``tests/test_compose.py``) and the test that runs the file's
production shape as local processes (``tests/production/``), so both read the file the same way.
Compose's interpolation is reproduced (``$$``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
``${VAR:?error}``, ``${VAR:+alt}``); nested defaults fail rather than being guessed.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yaml"


_TOKEN = re.compile(r"\$\$|\$\{([^}]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_EXPRESSION = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:-|-|:\?|\?|:\+|\+)(.*))?", re.S)


def interpolate(text: str, env: dict[str, str]) -> str:
    """``text`` as Compose passes it on, with ``env`` as the shell and .env variables."""

    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        if match.group(2):
            return env.get(match.group(2), "")
        expression = _EXPRESSION.fullmatch(match.group(1))
        assert expression, f"unsupported interpolation ${{{match.group(1)}}}"
        name, operator, argument = expression.groups()
        assert argument is None or not re.search(r"[${]", argument), (
            f"${{{match.group(1)}}}: nested interpolation or braces in a default are not checked here; keep defaults plain")
        value = env.get(name)
        if operator is None:
            return value or ""
        if operator == ":-":
            return value if value else argument
        if operator == "-":
            return value if value is not None else argument
        if operator in (":+", "+"):
            return argument if (value if operator == ":+" else value is not None) else ""
        assert value, f"{name} is required: {argument}"
        return value

    return _TOKEN.sub(one, text)


def resolve(node, env: dict[str, str]):
    """Every string in ``node`` (YAML data) interpolated."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(item, env) for item in node]
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    return node


def load(env: dict[str, str] | None = None) -> dict:
    """The file with anchors and merge keys resolved and ``env`` as the shell and .env variables."""
    return resolve(yaml.safe_load(COMPOSE_FILE.read_text()), env or {})
