"""One error, two dialects: statuses, types and retry hints."""

from __future__ import annotations

import orjson
import pytest

from edge.errors import (
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    UpstreamStatus,
    UpstreamTimeout,
    render,
)


def test_client_errors_in_both_shapes() -> None:
    status, headers, body = render(InvalidRequest("bad", param="model"), "openai", "req_1")
    assert status == 400 and (b"x-should-retry", b"false") in headers
    assert orjson.loads(body) == {
        "error": {"message": "bad", "type": "invalid_request_error", "param": "model", "code": None}
    }
    status, _, body = render(PayloadTooLarge("big"), "anthropic", "req_2")
    assert status == 413
    assert orjson.loads(body) == {
        "type": "error",
        "error": {"type": "request_too_large", "message": "big"},
        "request_id": "req_2",
    }
    assert (
        orjson.loads(render(NotFound("x", code="model_not_found"), "openai", "r")[2])["error"][
            "code"
        ]
        == "model_not_found"
    )


@pytest.mark.parametrize(
    ("upstream", "status", "openai_type", "anthropic_type", "retry"),
    [
        (400, 400, "invalid_request_error", "invalid_request_error", False),
        (401, 502, "server_error", "api_error", False),
        (403, 502, "server_error", "api_error", False),
        (429, 429, "requests", "rate_limit_error", True),
        (500, 502, "server_error", "api_error", True),
        (503, 503, "server_error", "overloaded_error", True),
        (529, 503, "server_error", "overloaded_error", True),
        (504, 504, "timeout", "timeout_error", True),
    ],
)
def test_provider_statuses_are_re_expressed(
    upstream: int, status: int, openai_type: str, anthropic_type: str, retry: bool
) -> None:
    err = UpstreamStatus(upstream, "m", headers=[(b"retry-after", b"3")])
    s, headers, body = render(err, "openai", "r")
    assert s == status and orjson.loads(body)["error"]["type"] == openai_type
    assert (b"retry-after", b"3") in headers
    assert ((b"x-should-retry", b"false") in headers) is not retry
    assert orjson.loads(render(err, "anthropic", "r")[2])["error"]["type"] == anthropic_type


def test_gateway_timeout() -> None:
    s, headers, _ = render(UpstreamTimeout("slow"), "anthropic", "r")
    assert s == 504 and (b"x-should-retry", b"false") not in headers


def test_anthropic_error_kinds_get_openai_codes() -> None:
    from edge.dialects import anthropic

    body = b'{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}'
    err = anthropic.error_from_upstream(400, body, [])
    assert orjson.loads(render(err, "openai", "r")[2])["error"]["code"] == "context_length_exceeded"
    body = b'{"type":"error","error":{"type":"invalid_request_error","message":"Output blocked by content filtering policy"}}'
    assert anthropic.error_from_upstream(400, body, []).code == "content_filter"
