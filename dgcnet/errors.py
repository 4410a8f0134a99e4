"""The project's one error type, and the hint for a missing optional dependency."""
from __future__ import annotations

import importlib
from types import ModuleType


class DgcnetError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits non-zero."""


def install_hint(extra: str) -> str:
    """How to install an extra, for a package install and for a source checkout."""
    return f"pip install 'dgcnet[{extra}]' (in a source checkout: pip install -e '.[{extra}]')"


def import_optional(module: str, extra: str) -> ModuleType:
    """Import a module of an optional extra, or fail with one line saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DgcnetError(f"{module} is not installed; install the extra: {install_hint(extra)}") from None
