"""Plain type labels in ``--help``: ``PATH``, ``TEXT``, ``INTEGER``, nothing for a flag.

Typer 0.29 labels every option with its Python annotation (``<bool>``, ``<list[Path]>``, ``<str>``), which
reads as noise to a clinic's analyst. :func:`install` replaces the label a parameter shows in help with the
click convention; a parameter's own ``metavar`` still wins. ``tests/test_cli_startup.py`` checks every
command's help, so a Typer release that changes these internals fails a test instead of the help.
"""

from __future__ import annotations

import re
from typing import Any

from typer import core

_LABELS = {
    "str": "TEXT",
    "path": "PATH",
    "file": "FILE",
    "directory": "DIR",
    "int": "INTEGER",
    "int range": "INTEGER",
    "float": "NUMBER",
    "float range": "NUMBER",
    "datetime": "DATE",
}


def plain_label(label: str | None, *, is_flag: bool = False) -> str | None:
    """The click-style label for a Typer type label such as ``<list[Path]>`` (``None`` for a flag)."""
    if label is None or is_flag:
        return None
    inner = label[1:-1] if label.startswith("<") and label.endswith(">") else label
    listed = re.fullmatch(r"list\[(.*)\]", inner)
    if listed:
        inner = listed.group(1)
    if inner == "bool":
        return None
    if "|" in inner:
        return f"[{inner}]"
    return _LABELS.get(inner.lower(), inner.upper())


def install() -> None:
    """Make Typer's options and arguments show plain labels in help (idempotent)."""
    if getattr(core, "_sciatica_plain_labels", False):
        return

    def option_label(self: Any, ctx: Any) -> str | None:
        if self.metavar is not None:
            return str(self.metavar)
        return plain_label(self.display_type(ctx), is_flag=bool(self.is_flag or self.count))

    def argument_label(self: Any, ctx: Any) -> str | None:
        if self.metavar is not None:  # the argument's name is already its label (FILE, PATH)
            return None
        return plain_label(self.display_type(ctx))

    core.TyperOption.display_type_rich = option_label  # type: ignore[method-assign]
    core.TyperArgument.display_type_rich = argument_label  # type: ignore[method-assign]
    core._sciatica_plain_labels = True  # type: ignore[attr-defined]
