"""The one exception hierarchy of the service.

Every failure a client can see is a `ServiceError`: a stable `code`, an HTTP `status`, a human
`message` and optional `details`. The same object becomes the JSON error body of an HTTP answer
and the `error` frame of a websocket, so both speak one language.

    ServiceError
    ├── BadRequest            400 bad_request
    ├── Unauthorized          401 unauthorized
    ├── Forbidden             403 forbidden
    ├── NotFound              404 not_found
    ├── MethodNotAllowed      405 method_not_allowed
    ├── Conflict              409 conflict
    ├── PreconditionFailed    412 precondition_failed
    ├── PayloadTooLarge       413 payload_too_large
    ├── ValidationFailed      422 validation_error
    ├── RateLimited           429 rate_limited (+ Retry-After)
    ├── CursorExpired         410 cursor_expired (websocket resume)
    ├── PaymentsUnavailable   503 payments_unavailable
    └── Unavailable           503 unavailable
"""

from __future__ import annotations

from typing import Any, ClassVar


class ServiceError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    default_message: ClassVar[str] = "internal error"

    def __init__(self, message: str | None = None, *, details: list[dict[str, Any]] | None = None) -> None:
        self.message = message or self.default_message
        self.details = details
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(ServiceError):
    status, code, default_message = 400, "bad_request", "bad request"


class Unauthorized(ServiceError):
    status, code, default_message = 401, "unauthorized", "a valid bearer token is required"


class Forbidden(ServiceError):
    status, code, default_message = 403, "forbidden", "not allowed"


class NotFound(ServiceError):
    status, code, default_message = 404, "not_found", "not found"


class MethodNotAllowed(ServiceError):
    status, code, default_message = 405, "method_not_allowed", "method not allowed"

    def __init__(self, message: str | None = None, allow: str = "") -> None:
        super().__init__(message)
        self.allow = allow

    def headers(self) -> dict[str, str]:
        return {"Allow": self.allow} if self.allow else {}  # RFC 9110: a 405 names the methods that work


class Conflict(ServiceError):
    status, code, default_message = 409, "conflict", "conflict"


class PreconditionFailed(ServiceError):
    status, code, default_message = 412, "precondition_failed", "the resource has changed"


class PayloadTooLarge(ServiceError):
    status, code, default_message = 413, "payload_too_large", "request body is larger than 2 MiB"


class ValidationFailed(ServiceError):
    status, code, default_message = 422, "validation_error", "invalid input"


class RateLimited(ServiceError):
    status, code, default_message = 429, "rate_limited", "too many requests"

    def __init__(self, retry_after: float, message: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after + 0.999))

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class CursorExpired(ServiceError):
    status, code, default_message = 410, "cursor_expired", "the cursor is too old to replay; resubscribe without since"


class PaymentsUnavailable(ServiceError):
    status, code, default_message = 503, "payments_unavailable", "payments are not configured"


class Unavailable(ServiceError):
    status, code, default_message = 503, "unavailable", "the service is temporarily unavailable"


BY_STATUS: dict[int, type[ServiceError]] = {
    cls.status: cls
    for cls in (BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, Conflict,
                PreconditionFailed, PayloadTooLarge, ValidationFailed, Unavailable)
}  # fmt: skip
