"""Selects the latency sketch: compiled ``hotpath._sketch`` when built, the pure twin
``hotpath._sketch_py`` otherwise or when ``EDGE_NO_EXTENSIONS=1``.
"""

from __future__ import annotations

from hotpath._select import load

_impl, COMPILED = load("hotpath._sketch", "hotpath._sketch_py")

LatencySketch = _impl.LatencySketch

__all__ = ["COMPILED", "LatencySketch"]
