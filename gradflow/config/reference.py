"""The reference table of every config key, written from the tables' own field metadata."""

from __future__ import annotations

import json
from typing import Any

from gradflow.config.fields import MAX_RANGE_NUM
from gradflow.config.tables import COMMANDS, MAX_STORE_BYTES, MAX_VARIANTS, TABLES, Derived, Required, keys, users
from gradflow.flow.memory import format_bytes


def _literal(value: Any) -> str:
    if isinstance(value, (Required, Derived)):
        return str(value) if isinstance(value, Required) else value.how
    return f"`{json.dumps(value)}`"


def _default(defaults: dict[str, Any]) -> str:
    """One default, or each with the commands it is for (in command order)."""
    by_text: dict[str, list[str]] = {}
    for command, value in defaults.items():
        by_text.setdefault(_literal(value), []).append(command)
    if len(by_text) == 1:
        return next(iter(by_text))
    return "; ".join(f"{', '.join(commands)}: {text}" for text, commands in by_text.items())


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def reference_markdown() -> str:
    """Every key of every table as a markdown table: table, key, type, default (per command where it
    differs), the commands that use it, and its meaning.

    Example:
      >>> print(reference_markdown().splitlines()[2])
      | table | key | type | default | used by | meaning |
    """
    lines = [
        ("`sweep` is `gradflow sweep` and `gradflow run`. A key that may be \"a list\" may also be a range "
         f"`{{start, stop, num[, log]}}` (at most {MAX_RANGE_NUM:,} values); every list is a dimension of the results "
         "(in `[model]`, `[data]` and `[train]`: one compile per value), and its values are distinct. A config holds "
         f"at most {MAX_VARIANTS:,} variants and a store of at most {format_bytes(MAX_STORE_BYTES)}, checked before "
         "any work."),
        "",
        "| table | key | type | default | used by | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for name, table in TABLES.items():
        for f in keys(table):
            used = users(f)
            cells = (f"`[{name}]`", f"`{f.name}`", f.metadata["rule"].type, _default(f.metadata["defaults"]),
                     "all" if used == COMMANDS else ", ".join(used), f.metadata["meaning"])
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"
