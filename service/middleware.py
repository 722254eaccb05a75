"""ASGI guard for POST /restore: cheap refusals before the body is read, and request metrics.

Order: API key (401) -> content type (415, or 422 with no body) -> Content-Length (413)
-> a queue that could not take the request's tiles (503 + Retry-After, before the body is read:
service/shedding.py), else its tiles are reserved until the response ends -> the body is counted
while it streams in (413 as soon as it passes the limit), so an oversized upload is never
buffered whole. The arrival time is kept in the request state: the
request deadline counts from it, not from when the body was parsed.
"""

import time

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import metrics
from service.deps import API_KEY_HEADER, check_api_key
from service.errors import ApiError, error_response
from service.settings import Settings
from service.shedding import EdgeQueue, tiles_at_least

RESTORE_PATH = "/restore"


class RestoreGuard:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.edge = EdgeQueue()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != RESTORE_PATH:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        scope.setdefault("state", {})["arrived"] = started
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        reserved = 0
        try:
            headers = Headers(scope=scope)
            tiles = tiles_at_least(_content_length(headers), self.settings.tile_size)
            error = self._precheck(headers) or self._overloaded(scope, tiles)
            if error is not None:
                if error.reason:
                    metrics.REJECTIONS.labels(reason=error.reason).inc()
                response = error_response(error.status_code, error.code, str(error.detail), error.headers)
                await response(scope, receive, send_status)
            else:
                self.edge.reserve(tiles)
                reserved = tiles
                await self.app(scope, self._limited(receive), send_status)
        finally:
            self.edge.release(reserved)
            label = scope.get("state", {}).get("degradation_label", "invalid")
            metrics.REQUESTS.labels(degradation=label, status_class=metrics.status_class(status)).inc()
            if status < 300:
                metrics.REQUEST_DURATION.observe(time.perf_counter() - started)

    def _precheck(self, headers: Headers) -> ApiError | None:
        error = check_api_key(self.settings, headers.get(API_KEY_HEADER))
        if error is not None:
            return error
        content_type = headers.get("content-type")
        length = headers.get("content-length")
        if not content_type:
            if length in (None, "0"):
                return ApiError(
                    422,
                    "bad_request",
                    "empty request: send multipart/form-data with an 'image' file field",
                    reason="bad_request",
                )
            return ApiError(
                415, "unsupported_media_type", "missing Content-Type: send multipart/form-data", reason="bad_request"
            )
        if content_type.split(";")[0].strip().lower() != "multipart/form-data":
            return ApiError(
                415,
                "unsupported_media_type",
                f"Content-Type {content_type.split(';')[0]!r} is not supported: send multipart/form-data "
                "with an 'image' file field",
                reason="bad_request",
            )
        limit = self.settings.max_upload_bytes
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                return ApiError(400, "bad_request", "invalid Content-Length header", reason="bad_request")
            if size > limit:
                return too_large(size, limit)
        return None

    def _overloaded(self, scope: Scope, tiles: int) -> ApiError | None:
        batcher = getattr(scope["app"].state, "batcher", None)
        if batcher is None:
            return None
        reason = batcher.saturated() or self.edge.why_full(batcher.in_flight, batcher.capacity, tiles)
        if reason is None:
            return None
        retry = {"Retry-After": str(self.settings.retry_after_s)}
        return ApiError(503, "queue_full", f"{reason}; retry later", reason="queue_full", headers=retry)

    def _limited(self, receive: Receive) -> Receive:
        limit = self.settings.max_upload_bytes
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise too_large(received, limit)
            return message

        return counted


def _content_length(headers: Headers) -> int | None:
    """Content-Length as a number; None when absent or malformed (_precheck refuses the latter)."""
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return None


def too_large(size: int, limit: int) -> ApiError:
    return ApiError(
        413, "too_large", f"upload is larger than the limit of {limit} bytes (got {size}+)", reason="too_large"
    )
