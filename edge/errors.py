"""The gateway's error hierarchy, rendered in the caller's dialect at one boundary.

    EdgeError                      status  OpenAI type            Anthropic type
     +- InvalidRequest             400     invalid_request_error  invalid_request_error
     |   +- MalformedJSON          400
     |   +- OverCostCap            400     (a request over its tier's block threshold, sync)
     +- Unauthorized               401     invalid_request_error  authentication_error
     +- Forbidden                  403     invalid_request_error  permission_error
     |   +- TierForbidden          403     (a tier above the key's entitlement)
     +- NotFound                   404     invalid_request_error  not_found_error
     +- MethodNotAllowed           405     invalid_request_error  invalid_request_error
     +- RequestTimeout             408     invalid_request_error  timeout_error
     +- PayloadTooLarge            413     invalid_request_error  request_too_large
     +- UnsupportedMediaType       415     invalid_request_error  invalid_request_error
     +- UpgradeRequired            426     invalid_request_error  invalid_request_error
     +- HeadersTooLarge            431     invalid_request_error  invalid_request_error
     +- OverBudget                 429     insufficient_quota     rate_limit_error
     +- RateLimited                429     requests               rate_limit_error
     +- Shed                       429     requests               rate_limit_error
         (admission: the tier is over capacity, or a provider's quota is spent; retry-after)
     +- ServiceUnavailable         503     server_error           overloaded_error
     |   +- PoolSaturated          503     (the gateway's own connections to a provider all busy)
     +- UpstreamError              502     server_error           api_error
         +- UpstreamUnavailable    503     server_error           overloaded_error
         +- UpstreamTimeout        504     timeout                timeout_error
         +- UpstreamStatus         the provider's status and error, re-expressed

Handlers raise; ``render`` turns any of them into status, headers and body.
``x-should-retry: false`` goes on errors a retry cannot fix (client errors and
decisions of the gateway), so the SDKs do not multiply them.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import orjson

ErrorDialect = Literal["openai", "anthropic"]  # the shape of an error body


class EdgeError(Exception):
    status: ClassVar[int] = 500
    openai_type: ClassVar[str] = "server_error"
    anthropic_type: ClassVar[str] = "api_error"
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or []

    def status_code(self) -> int:
        return self.status

    def types(self) -> tuple[str, str]:
        return self.openai_type, self.anthropic_type


class InvalidRequest(EdgeError):
    status = 400
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"


class MalformedJSON(InvalidRequest):
    pass


class OverCostCap(InvalidRequest):
    """The request's estimate is over its tier's block threshold and it did not ask to run
    asynchronously: a retry of the same request cannot help."""


class Unauthorized(EdgeError):
    status = 401
    openai_type = "invalid_request_error"
    anthropic_type = "authentication_error"


class Forbidden(EdgeError):
    status = 403
    openai_type = "invalid_request_error"
    anthropic_type = "permission_error"


class TierForbidden(Forbidden):
    """The request asked for a tier above its key's entitlement."""


class NotFound(EdgeError):
    status = 404
    openai_type = "invalid_request_error"
    anthropic_type = "not_found_error"


class MethodNotAllowed(EdgeError):
    status = 405
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"


class RequestTimeout(EdgeError):
    status = 408
    openai_type = "invalid_request_error"
    anthropic_type = "timeout_error"


class PayloadTooLarge(EdgeError):
    status = 413
    openai_type = "invalid_request_error"
    anthropic_type = "request_too_large"


class UnsupportedMediaType(EdgeError):
    status = 415
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"


class UpgradeRequired(EdgeError):
    """A protocol upgrade the gateway does not speak (a WebSocket on ``/v1/responses``):
    clients such as Codex fall back to HTTP at once on a 426, with no retries."""

    status = 426
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"


class HeadersTooLarge(EdgeError):
    status = 431
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"


class OverBudget(EdgeError):
    """The key's spend budget is used up for the period: a 429 the SDKs raise as their
    rate-limit error, told not to retry (``retry-after`` says when the period turns),
    like a provider's own ``insufficient_quota``."""

    status = 429
    openai_type = "insufficient_quota"
    anthropic_type = "rate_limit_error"


class RateLimited(EdgeError):
    """Too many calls of a gateway route from one key (``retry-after`` says when to retry)."""

    status = 429
    openai_type = "requests"
    anthropic_type = "rate_limit_error"
    retryable = True


class Shed(EdgeError):
    """The request's tier is over capacity in this worker, or the provider quota it needs is
    spent until a reset: a 429 in the shape of a provider's rate limit, with ``retry-after``
    (the SDKs retry it after that long)."""

    status = 429
    openai_type = "requests"
    anthropic_type = "rate_limit_error"
    retryable = True


class ServiceUnavailable(EdgeError):
    status = 503
    openai_type = "server_error"
    anthropic_type = "overloaded_error"
    retryable = True


class PoolSaturated(ServiceUnavailable):
    """Every connection the gateway may open to a provider stayed busy until the wait's
    deadline: the gateway's own limit, so no verdict on the provider (its breaker never
    hears of it)."""


class UpstreamError(EdgeError):
    """The provider could not be reached or failed (502)."""

    status = 502
    openai_type = "server_error"
    anthropic_type = "api_error"
    retryable = True


class UpstreamUnavailable(UpstreamError):
    status = 503
    anthropic_type = "overloaded_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    openai_type = "timeout"
    anthropic_type = "timeout_error"


# A provider's own error status, re-expressed: 4xx keep their status (they are
# the caller's to fix) except 401/403, which mean the gateway's provider key
# was refused (502: an operator's problem); 429 keeps Retry-After; 5xx
# become 502, overload 503, timeout 504.
_ANTHROPIC_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_OPENAI_BY_STATUS = {429: "requests", 503: "server_error", 504: "timeout"}


class UpstreamStatus(UpstreamError):
    """The provider answered with an error status before any byte reached the caller."""

    def __init__(
        self,
        upstream_status: int,
        message: str,
        *,
        provider_type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.detail = ""  # what the provider said, for the operator's log only
        if upstream_status in (401, 403):
            # its text may quote the gateway's own key (masked, but prefix and last digits):
            # the caller learns only that it was refused; the log keeps the provider's words
            self.detail, message = (
                message,
                (
                    "the provider refused the gateway's credentials; the operator has been told "
                    "(see the gateway's log)"
                ),
            )
            code = param = None
        super().__init__(message, code=code, param=param, headers=headers)
        self.upstream_status = upstream_status
        self.provider_type = provider_type

    def status_code(self) -> int:
        s = self.upstream_status
        if s in (401, 403):
            return 502  # the provider refused the gateway's credentials: not the caller's key, not the caller's fault
        if 400 <= s < 500:
            return s
        if s in (503, 529):
            return 503
        if s == 504:
            return 504
        return 502

    def types(self) -> tuple[str, str]:
        s = self.upstream_status
        status = self.status_code()
        if status == 502:
            return "server_error", "api_error"
        anthropic_type = _ANTHROPIC_BY_STATUS.get(s) or _ANTHROPIC_BY_STATUS.get(
            status, "api_error"
        )
        if 400 <= s < 500 and s != 429:
            openai_type = "invalid_request_error"
        else:
            openai_type = _OPENAI_BY_STATUS.get(status, "server_error")
        return openai_type, anthropic_type

    @property
    def retryable_status(self) -> bool:
        return self.upstream_status in (408, 409, 429) or self.upstream_status >= 500


def render(
    err: EdgeError, dialect: ErrorDialect, request_id: str
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, extra headers and JSON body for ``err`` in ``dialect``."""
    status = err.status_code()
    openai_type, anthropic_type = err.types()
    body: dict[str, Any]
    if dialect == "anthropic":
        body = {
            "type": "error",
            "error": {"type": anthropic_type, "message": err.message},
            "request_id": request_id,
        }
    else:
        body = {
            "error": {
                "message": err.message,
                "type": openai_type,
                "param": err.param,
                "code": err.code,
            }
        }
    headers = list(err.headers)
    retryable = err.retryable_status if isinstance(err, UpstreamStatus) else err.retryable
    if not retryable:
        headers.append((b"x-should-retry", b"false"))
    return status, headers, orjson.dumps(body)
