"""mkdocs hook: the reference tables of the docs, generated at build time from the code, so
that no copy is kept by hand.

A page holds a marker on a line of its own; the build replaces it with the table:

    <!-- generated: settings -->   every service setting: env name, type, default, description,
                                   read from the pydantic fields of `service.settings.Settings`
                                   and its groups
    <!-- generated: statuses -->   every HTTP status an error can get, its `error` codes and
                                   when, from `service.errors.STATUS` and the classes' docstrings

`python scripts/docs_hooks.py settings|statuses` prints a table.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import AliasChoices, BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[1]
ENV_PREFIX = "ACTSERVE_"
MARKER = re.compile(r"^<!-- generated: (\w+) -->$", re.M)


# --------------------------------------------------------------------------- settings


def settings_rows() -> list[dict[str, str]]:
    """One row per setting: env name, group, type, default, description (fields in the
    models' order: the top-level values, then each group's)."""
    from service.settings import Settings

    rows = []
    groups: dict[str, type[BaseModel]] = {}
    for name, info in Settings.model_fields.items():
        model = _model_of(info.annotation)
        if model is not None:
            groups[name] = model
            continue
        rows.append(_row(_env_name(name, info, {}), "", name, info))
    for group, model in groups.items():
        renamed: dict[str, str] = getattr(model, "flat_names", {}) or {}
        for name, info in model.model_fields.items():
            rows.append(_row(_env_name(name, info, renamed), group, name, info))
    return rows


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _env_name(name: str, info: FieldInfo, renamed: dict[str, str]) -> str:
    """The field's `ACTSERVE_*` name: its alias when it has one, else the group's flat name
    for it, else its own name."""
    alias = info.validation_alias or info.alias
    if isinstance(alias, AliasChoices):
        alias = next((a for a in alias.choices if isinstance(a, str)), None)
    if isinstance(alias, str):
        return alias.upper() if alias.upper().startswith(ENV_PREFIX) else ENV_PREFIX + alias.upper()
    return ENV_PREFIX + renamed.get(name, name).upper()


def _row(env: str, group: str, name: str, info: FieldInfo) -> dict[str, str]:
    return {
        "env": env,
        "group": group,
        "type": _type_name(info.annotation),
        "default": _default(name, info),
        "description": (info.description or "").strip(),
    }


def _type_name(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        named = [_type_name(a) for a in args if a is not type(None)]
        return " | ".join(named) + (" (optional)" if type(None) in args else "")
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (list, tuple, set, frozenset):
        inner = [a for a in args if a is not Ellipsis]
        return f"list of {_type_name(inner[0]) if inner else 'values'}"
    if hasattr(annotation, "__metadata__"):  # Annotated
        return _type_name(get_args(annotation)[0])
    if annotation is SecretStr:
        return "secret"
    if isinstance(annotation, type):
        return {"Path": "path", "bool": "bool", "int": "int", "float": "float", "str": "text"}.get(
            annotation.__name__, annotation.__name__
        )
    return str(annotation)


def _default(name: str, info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = info.default_factory()
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if value is None:
        return "unset"
    if isinstance(value, Path):
        try:
            return f"`{value.resolve().relative_to(ROOT)}`"
        except ValueError:
            return f"`{value}`"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) if value else "none"
    if isinstance(value, int) and name.endswith("_bytes"):
        for unit, size in (("MiB", 2**20), ("KiB", 2**10)):
            if value >= size and value % size == 0:
                return f"{value:,} ({value // size:,} {unit})"
    if isinstance(value, int):
        return f"{value:,}" if value >= 100_000 else str(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def settings_table() -> str:
    lines = ["| variable | type | default | meaning |", "|---|---|---|---|"]
    for row in settings_rows():
        cells = [f"`{row['env']}`", row["type"], row["default"], row["description"]]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- statuses


def status_rows() -> list[tuple[int, str, str]]:
    """(status, `error` code, when) for every error the service raises on purpose and every
    store error `errors.STATUS` maps, by status and code (the classes sharing a code
    described together)."""
    from service import errors

    classes = [*_subclasses(errors.ServiceError), *errors.STATUS]
    described: dict[tuple[int, str], list[str]] = {}
    for cls in classes:
        if cls in (errors.ServiceError, errors.RequestError):
            continue  # the bases: every error a request can get has its own class
        error = cls.__new__(cls)
        whens = described.setdefault((errors.status_for(error), errors.code_for(error)), [])
        when = _first_sentence(cls.__doc__ or "")
        if when and when not in whens:
            whens.append(when)
    return [(status, code, "; ".join(whens)) for (status, code), whens in sorted(described.items())]


def _subclasses(cls: type) -> list[type]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_subclasses(sub))
    return found


def _first_sentence(doc: str) -> str:
    text = " ".join(doc.split())
    first = text.split(". ")[0].rstrip(".")
    return first[:1].lower() + first[1:] if first else ""


def status_table() -> str:
    lines = ["| status | `error` | when |", "|---:|---|---|"]
    for status, code, when in status_rows():
        lines.append(f"| {status} | `{code}` | {_cell(when)} |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# ------------------------------------------------------------------------ the mkdocs hook

TABLES = {"settings": settings_table, "statuses": status_table}


def render(markdown: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in TABLES:
            raise ValueError(f"unknown generated table {name!r} (known: {', '.join(TABLES)})")
        return TABLES[name]()

    return MARKER.sub(replace, markdown)


def on_page_markdown(markdown: str, **_: Any) -> str:
    return render(markdown)


if __name__ == "__main__":
    print(TABLES[sys.argv[1]]())
