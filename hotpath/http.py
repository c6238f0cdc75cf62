"""Selects the upstream response decoder: compiled ``hotpath._http`` when built,
the h11-based twin ``hotpath._http_py`` otherwise or when ``EDGE_NO_EXTENSIONS=1``.
"""

from __future__ import annotations

from hotpath._select import load

_impl, COMPILED = load("hotpath._http", "hotpath._http_py")

ResponseDecoder = _impl.ResponseDecoder
HTTPDecodeError = _impl.HTTPDecodeError

__all__ = ["COMPILED", "HTTPDecodeError", "ResponseDecoder"]
