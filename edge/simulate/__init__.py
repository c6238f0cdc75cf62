"""Simulated OpenAI and Anthropic providers that speak the real wire protocols.

Used by ``llm-edge simulate``, by ``llm-edge serve`` when no provider key is
set, and by the test suite and benchmarks. See ``server.py`` for the routes
and ``behaviour.py`` for the latency and fault knobs.
"""
