"""Locust users for the SLO benchmark: both dialects, streaming or not, tiers L0/L1/L2.

Each request is named by its tier, so locust's table is per tier. Streaming
requests also report their time to first token as a request of type
``TTFT`` (the gateway starts its answer at the first content token, so the
arrival of the response head is the TTFT). A stream that ends with an error
event counts as a failure, like an error status. Run by ``bench/slo.py``:

    locust -f bench/locustfile.py --headless -u 40 -r 40 -t 60s --host http://127.0.0.1:8080
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from locust import between, events, task
from locust.contrib.fasthttp import FastHttpUser

KEY = os.environ.get("EDGE_BENCH_KEY", "sk-bench")
PROMPTS = [
    "Summarise the refund policy for a customer in two sentences.",
    "Draft a short reply: the parcel is delayed by two days.",
    "Tag this ticket: card declined at checkout, customer retried twice.",
    "Rewrite for clarity: the report has been generated and is attached.",
    "Is this transaction risky? 3 cards, 2 countries, 10 minutes.",
]
TIERS = (("L0", 2), ("L1", 5), ("L2", 3))


class GatewayUser(FastHttpUser):
    wait_time = between(0.1, 0.6)
    abstract = True

    def _tier(self) -> str:
        return random.choices([t for t, _ in TIERS], [w for _, w in TIERS])[0]

    def _send(self, path: str, body: dict[str, Any], headers: dict[str, str], stream: bool) -> None:
        tier = self._tier()
        headers = {**headers, "x-edge-tier": tier, "content-type": "application/json"}
        if not stream:
            with self.client.post(
                path, json=body, headers=headers, name=tier, catch_response=True
            ) as resp:
                if resp.status_code != 200:
                    resp.failure(f"HTTP {resp.status_code}")
            return
        start = time.perf_counter()
        with self.client.post(
            path, json=body, headers=headers, name=tier, stream=True, catch_response=True
        ) as resp:
            ttft_ms = (time.perf_counter() - start) * 1000
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
                return
            tail = b""
            for chunk in resp.iter_content(65536, decode_content=False):
                tail = (tail + (chunk if isinstance(chunk, bytes) else chunk.encode()))[-4096:]
                if b'"error"' in tail or b"event: error" in tail:
                    resp.failure("the stream ended with an error event")
                    break
            resp.request_meta["response_time"] = (time.perf_counter() - start) * 1000
            events.request.fire(
                request_type="TTFT",
                name=tier,
                response_time=ttft_ms,
                response_length=0,
                exception=None,
                context={},
            )


class OpenAIUser(GatewayUser):
    weight = 3

    @task
    def chat(self) -> None:
        stream = random.random() < 0.6
        body: dict[str, Any] = {
            "model": "auto",
            "messages": [{"role": "user", "content": random.choice(PROMPTS)}],
            "stream": stream,
        }
        self._send("/v1/chat/completions", body, {"authorization": f"Bearer {KEY}"}, stream)


class AnthropicUser(GatewayUser):
    weight = 2

    @task
    def message(self) -> None:
        stream = random.random() < 0.6
        body: dict[str, Any] = {
            "model": "auto",
            "max_tokens": 256,
            "messages": [{"role": "user", "content": random.choice(PROMPTS)}],
            "stream": stream,
        }
        headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
        self._send("/v1/messages", body, headers, stream)
