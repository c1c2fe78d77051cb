"""Lazy re-exports for package ``__init__`` modules (PEP 562).

A package lists ``name -> defining module`` once; a name's module is imported the first time the name is
used, so importing a package (or a light module inside it, such as its ``cli``) does not load every library
the package's stages need.
"""

from __future__ import annotations

import importlib
import sys
import types
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


class _ExportsOverSubmodules(types.ModuleType):
    """A package whose public exports keep their names when a same-named submodule is imported.

    Importing ``pkg.name`` makes the import system run ``setattr(pkg, "name", <module pkg.name>)``, which
    would hide an exported *function* ``pkg.name`` defined in that submodule (``models.emmeans``). That
    one binding is skipped; ``from pkg.name import x`` and ``sys.modules["pkg.name"]`` are unaffected.
    """

    _export_names: frozenset[str] = frozenset()

    def __setattr__(self, name: str, value: Any) -> None:
        if (
            name in self._export_names
            and isinstance(value, types.ModuleType)
            and value.__name__ == f"{self.__name__}.{name}"
        ):
            return
        super().__setattr__(name, value)


def keep_exports_over_submodules(package: str, names: Mapping[str, str]) -> None:
    """Make the exports of ``package`` whose name is also a submodule's win over that submodule.

    Parameters
    ----------
    package
        The package's ``__name__``.
    names
        Its exports (``name -> defining module``); only those defined in the submodule ``package.name``
        itself are protected.
    """
    module = sys.modules[package]
    protected = frozenset(n for n, mod in names.items() if mod == f"{package}.{n}")
    module.__class__ = _ExportsOverSubmodules
    module._export_names = protected  # type: ignore[attr-defined]
