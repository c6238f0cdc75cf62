"""Selects the SSE scanner: the compiled ``hotpath._sse`` when it is built,
the pure twin ``hotpath._sse_py`` otherwise or when ``EDGE_NO_EXTENSIONS=1``.

Chosen once at import; ``COMPILED`` tells which one won.
"""

from __future__ import annotations

from hotpath._select import load

_impl, COMPILED = load("hotpath._sse", "hotpath._sse_py")

SSEScanner = _impl.SSEScanner
SSEError = _impl.SSEError
DEFAULT_MAX_EVENT_BYTES: int = _impl.DEFAULT_MAX_EVENT_BYTES

__all__ = ["COMPILED", "DEFAULT_MAX_EVENT_BYTES", "SSEError", "SSEScanner"]
