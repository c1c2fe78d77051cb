"""Lazy re-exports for package ``__init__`` modules (PEP 562).

A package lists ``name -> defining module`` once; a name's module is imported the first time the name is
used, so importing a package (or a light module inside it, such as its ``cli``) does not load every library
the package's stages need.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Build ``__getattr__`` and ``__dir__`` for ``package`` from ``{name: module}``.

    Parameters
    ----------
    package
        The package's ``__name__`` (used in the ``AttributeError`` message).
    exports
        Public name -> fully qualified module that defines it.
    namespace
        The package's ``globals()``; a resolved name is cached there, so later lookups cost nothing.
    """

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module hook PEP 562 names
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
