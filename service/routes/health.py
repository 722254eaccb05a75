"""GET /healthz (the process is alive) and GET /readyz (it should take traffic)."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from service.errors import ErrorDetail

router = APIRouter(tags=["health"])


class Alive(BaseModel):
    status: str = "ok"


class Readiness(BaseModel):
    ready: bool
    reasons: list[str] = Field(description="Why not ready; empty when ready.")
    model_version: str | None
    requested_device: str
    execution_provider: str | None = Field(description="What onnxruntime actually runs.")
    precision: str
    backbone_file: str | None = Field(description="The backbone file that runs (int8: chosen by CPU flags).")
    workers: int = Field(description="Backbone sessions running batches in parallel.")
    warmed_up: bool
    tiles_in_flight: int
    tiles_queued: int
    error: ErrorDetail | None = Field(None, description="Set when not ready (code 'not_ready').")


@router.get("/healthz", response_model=Alive, summary="Liveness: the event loop answers")
async def healthz() -> Alive:
    return Alive()


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: bundle loaded, warmed up, on the configured execution provider",
    responses={503: {"model": Readiness, "description": "Not ready; `reasons` says why."}},
)
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    settings = state.settings
    engine = getattr(state, "engine", None)
    batcher = getattr(state, "batcher", None)
    reasons = ["model bundle not loaded"] if engine is None else engine.readiness()
    if getattr(state, "shutting_down", False):
        reasons.append("shutting down")
    body = Readiness(
        ready=not reasons,
        reasons=reasons,
        model_version=engine.model_version if engine else None,
        requested_device=settings.device,
        execution_provider=engine.execution_provider if engine else None,
        precision=settings.precision,
        backbone_file=engine.backbone_file if engine else None,
        workers=engine.workers if engine else 0,
        warmed_up=bool(engine and engine.warmed),
        tiles_in_flight=batcher.in_flight if batcher else 0,
        tiles_queued=batcher.queued if batcher else 0,
        error=ErrorDetail(code="not_ready", message="; ".join(reasons)) if reasons else None,
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)
