"""TLS to providers: a real HTTPS upstream (the simulator with a certificate made for the test)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.procs import ROOT, Proc, start, start_gateway
from tests.server.conftest import GW_KEY, POLICY


@pytest.fixture(scope="module")
def tls_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, Path]]:
    if shutil.which("openssl") is None:
        pytest.skip(
            "openssl is not installed: the TLS upstream test needs it to make a certificate"
        )
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    profile = os.path.join(ROOT, "tests/simulate/profile.toml")
    proc = start(
        [
            "simulate",
            "--port",
            "0",
            "--profile",
            profile,
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
        ],
        ready=r"https://[\d.]+:(\d+)",
    )
    yield proc, cert
    proc.stop()


def test_gateway_speaks_tls_to_providers(tls_sim: tuple[Proc, Path]) -> None:
    sim, cert = tls_sim
    https = f"https://127.0.0.1:{sim.port}"
    gw = start_gateway(https, POLICY, {"EDGE_KEYS": GW_KEY, "EDGE_UPSTREAM_CA_FILE": str(cert)})
    try:
        oa = openai.OpenAI(base_url=gw.url + "/v1", api_key=GW_KEY, max_retries=0)
        r = oa.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Repeat after me: over TLS"}]
        )
        assert r.choices[0].message.content == "over TLS"
        an = anthropic.Anthropic(base_url=gw.url, api_key=GW_KEY, max_retries=0)
        with an.messages.stream(
            model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        ) as s:
            assert "".join(s.text_stream)
    finally:
        gw.stop()


def test_an_untrusted_provider_certificate_is_refused(tls_sim: tuple[Proc, Path]) -> None:
    sim, _ = tls_sim
    gw = start_gateway(f"https://127.0.0.1:{sim.port}", POLICY, {"EDGE_KEYS": GW_KEY})
    try:
        r = httpx.post(
            gw.url + "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
            headers={"authorization": f"Bearer {GW_KEY}"},
        )
        assert r.status_code == 502 and "TLS" in r.json()["error"]["message"]
    finally:
        gw.stop()
