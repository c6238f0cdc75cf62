"""The client's own deadline, read from the request's headers.

The official SDKs send their timeouts: ``x-stainless-read-timeout`` (both,
seconds, Python ``str()`` of a float: ``"600"``, ``"12.0"``) and, from the
Anthropic SDK, ``x-stainless-timeout`` (seconds, or the literal
``NOT_GIVEN`` on streams); any client may send ``x-edge-deadline-ms`` (a
total deadline in milliseconds). A read timeout bounds the whole answer of
a non-streamed request (the client reads nothing until it is whole) and
each gap of a stream (the wait for the first token included: the gateway
sends no byte before it); ``x-edge-deadline-ms`` bounds the whole request.

What a header says is a deadline the client enforces itself: the gateway
aims a margin before it (10% of it, between 50 ms and 1 s) so that its own
timeout error, in the caller's dialect, arrives before the client gives
up. The SDKs' headers are theirs, not the caller's: a value that is not a
positive number (``NOT_GIVEN``, ``None``, garbage) is ignored. The
gateway's own header is the caller's: a bad value is a 400 naming it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edge.errors import InvalidRequest

MAX_S = 86400.0  # a day: longer is no deadline the gateway can act on


@dataclass(frozen=True, slots=True)
class ClientDeadline:
    """Seconds from the request's arrival, the margin already taken off; None: not set."""

    read_s: float | None = None  # the SDK's read timeout: whole answer, or each stream gap
    total_s: float | None = None  # x-edge-deadline-ms: the whole request


def margin(seconds: float) -> float:
    """What the gateway aims for: a margin before the client's own deadline."""
    return max(seconds / 2, seconds - min(1.0, max(0.05, 0.1 * seconds)))


def _seconds(raw: bytes | None) -> float | None:
    """An SDK's timeout header as seconds; None when absent or not a positive number."""
    if raw is None:
        return None
    try:
        value = float(raw.decode("latin-1").strip())
    except ValueError:
        return None  # NOT_GIVEN, None, anything else an SDK may print
    if not math.isfinite(value) or value <= 0:
        return None
    return min(value, MAX_S)


def client_deadline(headers: dict[bytes, bytes]) -> ClientDeadline | None:
    """The deadline a request's headers ask for, or None (raises ``InvalidRequest`` on a bad
    ``x-edge-deadline-ms``)."""
    read_raw = headers.get(b"x-stainless-read-timeout")
    all_raw = headers.get(b"x-stainless-timeout")
    raw = headers.get(b"x-edge-deadline-ms")
    if read_raw is None and all_raw is None and raw is None:
        return None  # (most requests: no deadline of their own)
    reads = [s for s in (_seconds(read_raw), _seconds(all_raw)) if s is not None]
    total = None
    if raw is not None:
        text = raw.decode("latin-1").strip()
        try:
            ms = float(text)
        except ValueError:
            ms = -1.0
        if not math.isfinite(ms) or ms <= 0:
            raise InvalidRequest(
                f"x-edge-deadline-ms: expected a positive number of milliseconds, got {text!r}",
                param="x-edge-deadline-ms",
            )
        total = margin(min(ms / 1000.0, MAX_S))
    if not reads and total is None:
        return None
    return ClientDeadline(margin(min(reads)) if reads else None, total)
