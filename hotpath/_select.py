"""Chooses between a compiled module and its pure-Python twin, once, at import.

``EDGE_NO_EXTENSIONS=1`` forces every twin. Otherwise a compiled module that
fails to import falls back to its twin; the ``COMPILED`` flag each selector
exports lets tests fail loudly when a normal build silently lost an extension.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

FORCE_PURE = os.environ.get("EDGE_NO_EXTENSIONS", "") == "1"


def load(compiled: str, pure: str) -> tuple[ModuleType, bool]:
    """Return the module to use and whether it is the compiled one."""
    if not FORCE_PURE:
        try:
            return importlib.import_module(compiled), True
        except ImportError:
            pass
    return importlib.import_module(pure), False
