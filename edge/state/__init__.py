"""State that outlives a request and is shared: jobs, the spend ledger, budgets, rollouts.

Two backends with the same calls (``State``, in ``edge.state.types``):
``EmbeddedState`` (SQLite under ``EDGE_STATE_DIR``, shared by the workers of
one instance; the default) and ``RedisState`` (``EDGE_REDIS_URL``, shared by
every instance). ``open_state`` picks one; ``wait_ms`` bounds how long any call
of the handle may wait (a lock, a round trip): short for the event loop
(``EDGE_STATE_WAIT_MS``), longer for a handle used from a thread or a tool.
"""

from __future__ import annotations

from edge.state.embedded import EmbeddedState
from edge.state.redis_state import RedisState
from edge.state.types import State

WAIT_MS = 2000.0  # tools and background threads: wait for a lock rather than fail


def open_state(state_dir: str, redis_url: str = "", wait_ms: float = WAIT_MS) -> State:
    """The configured backend; a Redis that cannot be reached raises ``StateUnavailable``."""
    if redis_url:
        state = RedisState(redis_url, wait_ms=wait_ms)
        state.ping()
        return state
    return EmbeddedState(state_dir, wait_ms=wait_ms)


__all__ = ["open_state"]
