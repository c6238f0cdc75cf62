# llm-edge: build the Cython hot path in a builder, run on a slim image as a non-root user.
#   docker build -t llm-edge .
#   docker run -p 8080:8080 -e OPENAI_API_KEY -e ANTHROPIC_API_KEY -e EDGE_KEYS=sk-... llm-edge
# Every setting is an environment variable (docs/CONFIG.md).

FROM python:3.11-slim AS builder
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py constraints.txt README.md ./
COPY hotpath ./hotpath
COPY edge ./edge
COPY gold ./gold
RUN python -m venv /opt/edge \
    && /opt/edge/bin/pip install --no-cache-dir -c constraints.txt setuptools cython \
    && /opt/edge/bin/pip install --no-cache-dir -c constraints.txt --no-build-isolation . \
    && /opt/edge/bin/python -c "import hotpath.sse, hotpath.http, hotpath.tokens, hotpath.sketch, hotpath.route as r; assert all(m.COMPILED for m in (hotpath.sse, hotpath.http, hotpath.tokens, hotpath.sketch, r))"

FROM python:3.11-slim
RUN useradd --system --create-home --home-dir /var/lib/edge --uid 10001 edge
COPY --from=builder /opt/edge /opt/edge
COPY --from=builder /src/gold /opt/edge/gold
ENV PATH=/opt/edge/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    EDGE_HOST=0.0.0.0 \
    EDGE_PORT=8080 \
    EDGE_STATE_DIR=/var/lib/edge/state \
    EDGE_GOLD_SET=/opt/edge/gold/starter.jsonl
# EDGE_WORKERS defaults to the CPUs the container may use (see the entrypoint below)
USER edge
WORKDIR /var/lib/edge
VOLUME ["/var/lib/edge/state"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('EDGE_PORT', '8080'), timeout=2)"
ENTRYPOINT ["/bin/sh", "-c", "export EDGE_WORKERS=${EDGE_WORKERS:-$(nproc)}; exec llm-edge serve \"$@\"", "--"]
