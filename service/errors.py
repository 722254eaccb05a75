"""The one error shape of the API, {"error": {"code", "message"}}, and the handlers that produce it.

status  code                    when
400     bad_request             malformed multipart body, bad Content-Length
401     unauthorized            TAP_API_KEY set and X-API-Key missing or wrong (restore, admin)
404/405 not_found/method_not_allowed
413     too_large               upload over max_upload_bytes (Content-Length or streamed), image over
                                max_pixels (header check, before decoding: decompression bombs), or
                                an image so elongated that its tiles would cover > 2 x max_pixels
415     unsupported_media_type  request not multipart/form-data; file not PNG/JPEG/WebP/GIF/BMP/TIFF
422     bad_request             missing 'image' field (or empty request), bad format/quality/...
422     unknown_degradation     malformed (path characters) or unknown degradation; lists valid ones
422     bad_image               empty file, corrupt or truncated image
500     inference_error         the backbone failed on this request (others in its batch are retried)
500     internal_error          anything unexpected (logged)
503     queue_full              tiles in flight would exceed queue_size, or shutting down; Retry-After
504     deadline_exceeded       not done within request_timeout_s of arrival
/readyz answers 503 with its own body (plus error.code 'not_ready') when not ready.
"""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from service import metrics

log = logging.getLogger(__name__)

CODES_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "bad_request",
    500: "internal_error",
    503: "unavailable",
    504: "deadline_exceeded",
}


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. 'too_large', 'queue_full'.")
    message: str = Field(description="What went wrong and how to fix it.")


class ErrorResponse(BaseModel):
    error: ErrorDetail

    model_config = {
        "json_schema_extra": {"examples": [{"error": {"code": "too_large", "message": "image is 50000x50000 ..."}}]}
    }


class ApiError(HTTPException):
    """An error with its JSON code; `reason` (a metrics.REJECTION_REASONS value) counts it as a rejection."""

    def __init__(
        self, status: int, code: str, message: str, *, reason: str | None = None, headers: dict | None = None
    ) -> None:
        super().__init__(status_code=status, detail=message, headers=headers)
        self.code = code
        self.reason = reason


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    body = ErrorResponse(error=ErrorDetail(code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def error_responses(*statuses: int) -> dict:
    """OpenAPI `responses` entries declaring the error model for these statuses."""
    described = {
        400: "Malformed request body.",
        401: "Missing or wrong X-API-Key.",
        413: "Upload or image too large (bytes, pixels, decompression bomb).",
        415: "Not multipart/form-data, or the file is not a supported image.",
        422: "Invalid parameters, unknown degradation, or a corrupt/truncated/empty image.",
        500: "Inference failed for this request.",
        503: "Queue full or shutting down; retry after Retry-After seconds.",
        504: "The request's deadline passed before it finished.",
    }
    return {s: {"model": ErrorResponse, "description": described.get(s, "Error.")} for s in statuses}


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "header", "path")]
        where = ".".join(loc) or "request"
        msg = err.get("msg", "invalid")
        if err.get("type") == "missing":
            msg = "field required"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts) or "invalid request"


async def _api_error(request: Request, exc: HTTPException) -> JSONResponse:
    if isinstance(exc, ApiError):
        if exc.reason:
            metrics.REJECTIONS.labels(reason=exc.reason).inc()
        return error_response(exc.status_code, exc.code, str(exc.detail), exc.headers)
    code = CODES_BY_STATUS.get(exc.status_code, "error")
    if exc.status_code in (400, 413):
        metrics.REJECTIONS.labels(reason="bad_request" if exc.status_code == 400 else "too_large").inc()
    return error_response(exc.status_code, code, str(exc.detail), exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    metrics.REJECTIONS.labels(reason="bad_request").inc()
    return error_response(422, "bad_request", _validation_message(exc))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal error; see the server log")


def install(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
