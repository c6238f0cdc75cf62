"""State that outlives a request and is shared: jobs, the spend ledger, budgets, rollouts.

Two backends with the same calls (``State``, in ``edge.state.types``):
``EmbeddedState`` (SQLite under ``EDGE_STATE_DIR``, shared by the workers of
one instance; the default) and ``RedisState`` (``EDGE_REDIS_URL``, shared by
every instance). ``open_state`` picks one.
"""

from __future__ import annotations

from edge.state.embedded import EmbeddedState
from edge.state.redis_state import RedisState
from edge.state.types import State


def open_state(state_dir: str, redis_url: str = "") -> State:
    """The configured backend; a Redis that cannot be reached raises ``StateUnavailable``."""
    if redis_url:
        state = RedisState(redis_url)
        state.ping()
        return state
    return EmbeddedState(state_dir)


__all__ = ["open_state"]
