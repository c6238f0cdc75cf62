"""The simulated ``POST /v1/embeddings``: OpenAI's checks, deterministic vectors, its usage.

A vector depends only on the model, the input and the dimensions: unit
length, its components drawn from a generator seeded by their hash, and
rounded to float32, so the ``float`` and ``base64`` (little-endian float32,
as the openai SDK decodes it) answers carry the same numbers. Native
dimensions: 3072 for a ``-large`` model, 1536 otherwise; ``dimensions``
shortens them (re-normalised, as OpenAI does). Usage follows the
simulator's own token rule (``generate.text_tokens``) for strings, and
counts token ids as given.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import struct
from dataclasses import dataclass
from typing import Any

import orjson

from edge.simulate.generate import InvalidRequest, text_tokens

MAX_ITEMS = 2048
MAX_INPUT_TOKENS = 8192
MAX_TOTAL_TOKENS = 300_000


@dataclass(frozen=True, slots=True)
class EmbedAsk:
    model: str
    inputs: tuple[str | tuple[int, ...], ...]
    dimensions: int
    base64: bool


def native_dimensions(model: str) -> int:
    return 3072 if "large" in model else 1536


def tokens_of(item: str | tuple[int, ...]) -> int:
    return text_tokens(item) if isinstance(item, str) else len(item)


def _ids(item: Any, where: str) -> tuple[int, ...]:
    if (
        not isinstance(item, list)
        or not item
        or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in item)
    ):
        raise InvalidRequest(f"'{where}' must be a non-empty array of token ids", "input")
    return tuple(item)


def read(body: Any) -> EmbedAsk:
    """The request checked as OpenAI does, or ``InvalidRequest`` naming the field."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", None)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("you must provide a model parameter", "model")
    given = body.get("input")
    inputs: list[str | tuple[int, ...]]
    if isinstance(given, str):
        inputs = [given]
    elif isinstance(given, list) and given and isinstance(given[0], int):
        inputs = [_ids(given, "input")]
    elif isinstance(given, list) and given:
        if len(given) > MAX_ITEMS:
            raise InvalidRequest(f"'input' must have at most {MAX_ITEMS} items", "input")
        inputs = [g if isinstance(g, str) else _ids(g, f"input[{i}]") for i, g in enumerate(given)]
    else:
        raise InvalidRequest("'input' must be a non-empty string or array", "input")
    for item in inputs:
        if item == "":
            raise InvalidRequest("'input' cannot contain an empty string", "input")
        if tokens_of(item) > MAX_INPUT_TOKENS:
            raise InvalidRequest(
                f"This model's maximum context length is {MAX_INPUT_TOKENS} tokens", "input"
            )
    if sum(tokens_of(i) for i in inputs) > MAX_TOTAL_TOKENS:
        raise InvalidRequest(f"at most {MAX_TOTAL_TOKENS} tokens per request", "input")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise InvalidRequest("'encoding_format' must be 'float' or 'base64'", "encoding_format")
    native = native_dimensions(model)
    dims = body.get("dimensions")
    if dims is None:
        dims = native
    elif isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= native:
        raise InvalidRequest(f"'dimensions' must be an integer from 1 to {native}", "dimensions")
    return EmbedAsk(model, tuple(inputs), dims, encoding == "base64")


def vector(model: str, item: str | tuple[int, ...], dimensions: int) -> bytes:
    """One input's embedding as little-endian float32 bytes, unit length."""
    h = hashlib.blake2b(digest_size=8)
    h.update(model.encode())
    h.update(b"\x00")
    h.update(item.encode() if isinstance(item, str) else orjson.dumps(item))
    rng = random.Random(int.from_bytes(h.digest(), "little"))
    values = [rng.gauss(0.0, 1.0) for _ in range(native_dimensions(model))][:dimensions]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return struct.pack(f"<{dimensions}f", *(v / norm for v in values))


def answer(ask: EmbedAsk) -> tuple[bytes, int]:
    """The response body and its prompt tokens."""
    data = []
    for i, item in enumerate(ask.inputs):
        packed = vector(ask.model, item, ask.dimensions)
        embedding: str | tuple[float, ...] = (
            base64.b64encode(packed).decode()
            if ask.base64
            else struct.unpack(f"<{ask.dimensions}f", packed)
        )
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    tokens = sum(tokens_of(item) for item in ask.inputs)
    body = {
        "object": "list",
        "data": data,
        "model": ask.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return orjson.dumps(body), tokens
