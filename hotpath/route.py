"""Selects the routing decision: compiled ``hotpath._route`` when built, the pure twin
``hotpath._route_py`` otherwise or when ``EDGE_NO_EXTENSIONS=1``. Constants
(states, strategies, actions, capability bits) come from the twin.
"""

from __future__ import annotations

from hotpath import _route_py as _constants
from hotpath._select import load

_impl, COMPILED = load("hotpath._route", "hotpath._route_py")

CandidateTable = _impl.CandidateTable
decide = _impl.decide

CLOSED, HALF_OPEN, OPEN = _constants.CLOSED, _constants.HALF_OPEN, _constants.OPEN
QUALITY, VALUE, LATENCY = _constants.QUALITY, _constants.VALUE, _constants.LATENCY
OK, WARN, DEGRADE, BLOCK = _constants.OK, _constants.WARN, _constants.DEGRADE, _constants.BLOCK
DEGRADE_MODEL, DEGRADE_MAX_TOKENS = _constants.DEGRADE_MODEL, _constants.DEGRADE_MAX_TOKENS
CAP_TOOLS, CAP_VISION, CAP_JSON = _constants.CAP_TOOLS, _constants.CAP_VISION, _constants.CAP_JSON
CAP_THINKING, CAP_LOGPROBS = _constants.CAP_THINKING, _constants.CAP_LOGPROBS
CAP_MULTI_N, CAP_SEED, CAP_TOP_K = _constants.CAP_MULTI_N, _constants.CAP_SEED, _constants.CAP_TOP_K
CAP_STOP_MANY, CAP_SERVER_TOOLS = _constants.CAP_STOP_MANY, _constants.CAP_SERVER_TOOLS
CAP_CACHE, CAP_PREFILL = _constants.CAP_CACHE, _constants.CAP_PREFILL
CAP_DOCUMENTS = _constants.CAP_DOCUMENTS

__all__ = ["COMPILED", "CandidateTable", "decide"]
