"""The two implementations of a hot-path module, as pytest parameters: its pure twin, and the
compiled module when it is built (a skipped parameter when not, so the gap shows)."""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

import pytest


def twins(
    compiled: str, pure: ModuleType, pure_id: str = "pure"
) -> tuple[list[Any], ModuleType | None]:
    """(the parameters, the compiled module or None)."""
    try:
        module: ModuleType | None = importlib.import_module(compiled)
    except ImportError:
        module = None
    params = [pytest.param(pure, id=pure_id)]
    params.append(
        pytest.param(module, id="compiled")
        if module is not None
        else pytest.param(
            None, id="compiled", marks=pytest.mark.skip(reason=f"{compiled} is not built")
        )
    )
    return params, module


def check_selected(
    selector: ModuleType, attr: str, pure: ModuleType, compiled: ModuleType | None
) -> None:
    """A normal build selects the compiled module (``EDGE_NO_EXTENSIONS=1``: the twin), and a
    build that silently lost an extension fails here instead of running slow."""
    if os.environ.get("EDGE_NO_EXTENSIONS") == "1":
        assert selector.COMPILED is False
        assert getattr(selector, attr) is getattr(pure, attr)
        return
    assert compiled is not None, (
        f"{selector.__name__} did not load its compiled module: run `make build`"
    )
    assert selector.COMPILED is True
    assert getattr(selector, attr) is getattr(compiled, attr)
