"""POST /restore and GET /v1/degradations."""

import base64
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Header, Query, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field

from service import imaging
from service.batcher import DeadlineExceeded, InferenceError, QueueFull
from service.deps import EngineDep, PipelineDep, SettingsDep, require_api_key
from service.engine import AUTO, UnknownDegradation
from service.errors import ApiError, error_responses
from service.pipeline import Restored

router = APIRouter(tags=["restore"])

OutputFormat = Literal["png", "jpeg", "jpg", "webp"]
JSON_TYPE = "application/json"
IMAGE_TYPES = {media: fmt for fmt, media in imaging.MEDIA_TYPES.items()}


class RestoreResult(BaseModel):
    """The JSON form of a restore (Accept: application/json)."""

    image_base64: str = Field(description="The restored image, base64-encoded.")
    format: Literal["png", "jpeg", "webp"]
    media_type: str
    degradation: str = Field(description="Used: a task, 'clean' (returned untouched) or 'a+b' (mixture).")
    confidence: float | None = Field(description="Auto mode: probability of the decision (sum for a mixture).")
    probabilities: dict[str, float] | None = Field(description="Auto mode: classifier probability per class.")
    mixture: dict[str, float] | None = Field(description="Prompt weights when a mixture was used.")
    reason: str | None = Field(None, description="Auto mode: why it decided so, in one line (why untouched, say).")
    timings_ms: dict[str, float]
    model_version: str
    width: int
    height: int
    tiles: int = Field(
        description="Backbone work items: 1 when the image was sent whole, 0 when clean or at strength 0; doubled "
        "with `ensemble`."
    )
    strength: float = Field(description="Used: the output is input + strength * (restored - input).")

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "image_base64": "iVBORw0KGgo...",
                    "format": "png",
                    "media_type": "image/png",
                    "degradation": "rain+haze",
                    "confidence": 0.82,
                    "probabilities": {"rain": 0.45, "raindrop": 0.05, "haze": 0.37, "snow": 0.03, "clean": 0.10},
                    "mixture": {"rain": 0.55, "haze": 0.45},
                    "reason": "rain (p = 0.45) and haze (p = 0.37) are both likely",
                    "timings_ms": {
                        "decode": 4.1,
                        "classify": 2.0,
                        "queue": 1.2,
                        "inference": 35.0,
                        "encode": 9.8,
                        "total": 53.0,
                    },
                    "model_version": "2025-06-01",
                    "width": 640,
                    "height": 480,
                    "tiles": 6,
                    "strength": 1.0,
                }
            ]
        }
    }


class TaskInfo(BaseModel):
    name: str
    prompt_dim: int
    auto: bool = Field(description="Whether auto mode can choose it (the classifier knows it).")


class AutoSettings(BaseModel):
    """The auto-mode rule in force: the bundle's calibrated rule, with any settings overrides."""

    clean_threshold: float
    min_weather_prob: float
    mixture_min_prob: float
    mixture_margin: float
    temperature: float = Field(description="Calibration temperature of the classifier's pooled log-probabilities.")


class Degradations(BaseModel):
    model_version: str
    prompt_dim: int
    tasks: list[TaskInfo]
    classes: list[str] = Field(description="Classifier classes (auto mode): tasks + 'clean'.")
    unavailable: list[str] = Field(description="Prompt files present but not loaded (failed verification).")
    auto: AutoSettings


def negotiate(accept: str | None, fmt: str | None) -> tuple[bool, str]:
    """(reply as JSON?, image format) from the Accept header and the `format` parameter.

    JSON only when application/json is asked for at least as strongly as any image type;
    the image format is `format` if given, else the preferred image/* type, else PNG.
    """
    json_q, best_image, best_q, wildcard_q = 0.0, None, 0.0, 0.0
    for part in (accept or "").split(","):
        media, *params = [p.strip() for p in part.split(";")]
        media = media.lower()
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if media in (JSON_TYPE, "application/*"):
            json_q = max(json_q, q)
        elif media in IMAGE_TYPES and q > best_q:
            best_image, best_q = IMAGE_TYPES[media], q
        elif media in ("image/*", "*/*"):
            wildcard_q = max(wildcard_q, q)
    as_json = json_q > 0 and json_q >= max(best_q, wildcard_q)
    if fmt is not None:
        return as_json, "jpeg" if fmt == "jpg" else fmt
    return as_json, best_image or "png"


def _headers(result: Restored, model_version: str) -> dict[str, str]:
    decision = result.decision
    headers = {
        "X-Degradation": decision.label,
        "X-Model-Version": model_version,
        "X-Processing-Time-Ms": f"{result.timings_ms['total']:.1f}",
        "X-Strength": f"{result.strength:g}",
    }
    if decision.confidence is not None:
        headers["X-Degradation-Confidence"] = f"{decision.confidence:.4f}"
    if decision.reason:
        headers["X-Degradation-Reason"] = decision.reason
    if decision.mixture:
        headers["X-Degradation-Mixture"] = ",".join(f"{t}={w:.4f}" for t, w in decision.mixture.items())
    return headers


IMAGE_RESPONSE = {
    "description": "The restored image (PNG, JPEG or WebP), or JSON when Accept: application/json.",
    "content": {media: {"schema": {"type": "string", "format": "binary"}} for media in imaging.MEDIA_TYPES.values()},
    "headers": {
        "X-Degradation": {
            "description": "Used degradation: task, 'clean', or 'a+b' mixture.",
            "schema": {"type": "string"},
        },
        "X-Degradation-Confidence": {"description": "Auto mode only.", "schema": {"type": "string"}},
        "X-Degradation-Mixture": {"description": "Mixture weights, 'rain=0.6,haze=0.4'.", "schema": {"type": "string"}},
        "X-Model-Version": {"schema": {"type": "string"}},
        "X-Processing-Time-Ms": {"schema": {"type": "string"}},
        "X-Strength": {"description": "The strength used, 0-1.", "schema": {"type": "string"}},
    },
}


@router.post(
    "/restore",
    summary="Remove rain, raindrops, haze or snow from a photo",
    response_model=RestoreResult,
    responses={200: IMAGE_RESPONSE, **error_responses(400, 401, 413, 415, 422, 500, 503, 504)},
    dependencies=[Depends(require_api_key)],
)
async def restore(
    request: Request,
    pipeline: PipelineDep,
    settings: SettingsDep,
    image: Annotated[UploadFile, File(description="The photo: PNG, JPEG, WebP, GIF (first frame), BMP or TIFF.")],
    # Optional parameters are typed without `| None` so the schema has no null: multipart and
    # query strings cannot carry one. Absent -> the None default (FastAPI doesn't validate it).
    degradation_form: Annotated[str, Form(alias="degradation", max_length=64, examples=["auto", "rain"])] = None,
    format_form: Annotated[OutputFormat, Form(alias="format")] = None,
    quality_form: Annotated[int, Form(alias="quality", ge=1, le=100)] = None,
    ensemble_form: Annotated[bool, Form(alias="ensemble")] = None,
    strength_form: Annotated[float, Form(alias="strength", ge=0, le=1)] = None,
    degradation_query: Annotated[
        str, Query(alias="degradation", max_length=64, description="'auto' (default) or a task name.")
    ] = None,
    format_query: Annotated[OutputFormat, Query(alias="format", description="Overrides Accept.")] = None,
    quality_query: Annotated[int, Query(alias="quality", ge=1, le=100, description="JPEG/WebP.")] = None,
    ensemble_query: Annotated[
        bool,
        Query(
            alias="ensemble",
            description="Also restore the mirror image and average the two: a little better, twice the work. "
            "Absent: the service's TAP_FLIP_ENSEMBLE (default false).",
        ),
    ] = None,
    strength_query: Annotated[
        float,
        Query(
            alias="strength",
            ge=0,
            le=1,
            description="How far to move from the photo toward the restoration: output = input + strength * "
            "(restored - input); 0 returns the photo untouched. Absent: the service's TAP_DEFAULT_STRENGTH "
            "(default 1).",
        ),
    ] = None,
    accept: Annotated[str, Header(description="image/png, image/jpeg, image/webp or application/json")] = None,
) -> Response:
    """Restore one photo. `degradation=auto` lets the classifier choose: a confidently clean
    photo comes back untouched, and two likely weathers are restored with a mixture of their
    prompts (`X-Degradation: rain+haze`)."""
    started = getattr(request.state, "arrived", None) or time.perf_counter()  # set by RestoreGuard
    degradation = degradation_form or degradation_query or AUTO
    as_json, fmt = negotiate(accept, format_form or format_query)
    quality = quality_form or quality_query
    ensemble = ensemble_form if ensemble_form is not None else ensemble_query
    strength = strength_form if strength_form is not None else strength_query
    engine = pipeline.engine
    try:
        pipeline.resolve(degradation)
        request.state.degradation_label = degradation
        data = await image.read()
        result = await pipeline.restore(data, degradation, fmt, quality, started, ensemble, strength)
    except UnknownDegradation as exc:
        raise ApiError(422, "unknown_degradation", str(exc), reason="bad_request") from exc
    except imaging.ImageTooLarge as exc:
        raise ApiError(413, exc.code, str(exc), reason="too_large") from exc
    except imaging.ImageError as exc:
        raise ApiError(exc.status, exc.code, str(exc), reason="bad_image") from exc
    except QueueFull as exc:
        retry = {"Retry-After": str(settings.retry_after_s)}
        raise ApiError(503, "queue_full", f"{exc}; retry later", reason="queue_full", headers=retry) from exc
    except DeadlineExceeded as exc:
        message = f"deadline of {settings.request_timeout_s:g} s exceeded: {exc}"
        raise ApiError(504, "deadline_exceeded", message, reason="deadline") from exc
    except InferenceError as exc:
        raise ApiError(500, "inference_error", str(exc)) from exc
    headers = _headers(result, engine.model_version)
    if as_json:
        body = RestoreResult(
            image_base64=base64.b64encode(result.data).decode("ascii"),
            format=result.fmt,
            media_type=imaging.MEDIA_TYPES[result.fmt],
            degradation=result.decision.label,
            confidence=result.decision.confidence,
            probabilities=result.decision.probabilities,
            mixture=result.decision.mixture,
            reason=result.decision.reason or None,
            timings_ms=result.timings_ms,
            model_version=engine.model_version,
            width=result.width,
            height=result.height,
            tiles=result.tiles,
            strength=result.strength,
        )
        return Response(body.model_dump_json(), media_type=JSON_TYPE, headers=headers)
    return Response(result.data, media_type=imaging.MEDIA_TYPES[result.fmt], headers=headers)


@router.get("/v1/degradations", summary="Tasks this model can remove", response_model=Degradations)
async def degradations(engine: EngineDep) -> Degradations:
    engine.refresh_prompts()
    prompts = engine.prompts  # one snapshot: a reload swaps the whole dict
    auto = set(engine.auto_tasks)
    return Degradations(
        model_version=engine.model_version,
        prompt_dim=engine.bundle.prompt_dim,
        tasks=[TaskInfo(name=t, prompt_dim=int(prompts[t].size), auto=t in auto) for t in sorted(prompts)],
        classes=engine.classes,
        unavailable=sorted(engine.prompt_errors),
        auto=AutoSettings(**engine.auto_rule.to_dict(), temperature=engine.classifier_view.temperature),
    )
