"""Selects the stream chunk reader: the compiled ``hotpath._chunk`` when it is built, the pure
twin ``hotpath._chunk_py`` otherwise or when ``EDGE_NO_EXTENSIONS=1``.

Chosen once at import; ``COMPILED`` tells which one won.
"""

from __future__ import annotations

from hotpath._select import load

_impl, COMPILED = load("hotpath._chunk", "hotpath._chunk_py")

quoted_text = _impl.quoted_text

__all__ = ["COMPILED", "quoted_text"]
