"""create_app(settings) builds the FastAPI app; the lifespan builds the engine and the batcher.

Run: `tap-restore serve` or `uvicorn --factory service.app:create_app` (one worker per GPU).
"""

import asyncio
import contextlib
import copy
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from PIL import Image

from service import errors
from service.batcher import Batcher
from service.engine import Engine
from service.middleware import RestoreGuard
from service.pipeline import Pipeline
from service.routes import admin, health, metrics, restore, ui
from service.settings import Settings

log = logging.getLogger(__name__)

DESCRIPTION = """
Removes rain streaks, raindrops, haze and snow from photos with one small all-in-one
model steered by per-weather prompt vectors (TAP).

Errors are always JSON: `{"error": {"code": "...", "message": "..."}}`.
`503` responses carry `Retry-After`. With `TAP_API_KEY` set, send `X-API-Key` on
`/restore` and `/admin/*`.
"""


async def _reload_prompts_every(engine: Engine, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.to_thread(engine.refresh_prompts)
        except Exception:  # a bad scan must not stop future scans
            log.exception("prompt re-scan failed")


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    Image.MAX_IMAGE_PIXELS = settings.max_pixels  # Pillow's own bomb check (imaging checks first)
    engine = await asyncio.to_thread(Engine, settings)
    if settings.warmup:
        await asyncio.to_thread(engine.warmup)
    else:
        engine.warmed = True
    batcher = Batcher(
        engine.run_backbone, settings.max_batch, settings.max_delay_ms / 1000.0, settings.queue_size, engine.workers
    )
    batcher.start()
    app.state.engine, app.state.batcher = engine, batcher
    app.state.pipeline = Pipeline(engine, batcher, settings)
    app.state.shutting_down = False
    reload_task = None
    if settings.prompt_reload_interval_s > 0:
        reload_task = asyncio.create_task(_reload_prompts_every(engine, settings.prompt_reload_interval_s))
    log.info(
        "serving %s on %s (%s), tasks: %s",
        engine.model_version,
        engine.execution_provider,
        settings.precision,
        ", ".join(engine.tasks),
    )
    try:
        yield
    finally:
        app.state.shutting_down = True
        if reload_task is not None:
            reload_task.cancel()
        await batcher.close(drain_timeout_s=settings.request_timeout_s)
        log.info("stopped")


def _openapi(app: FastAPI, base: dict) -> dict:
    """The generated schema, adjusted to what this instance does right now.

    No API key configured -> no security requirement (the routes accept anonymous calls).
    `degradation` -> an enum of 'auto' and the loaded prompts, so /docs offers a drop-down
    and fuzzers generate valid names; unknown names still get a 422 listing the valid ones.
    """
    schema = copy.deepcopy(base)
    if app.state.settings.api_key is None:
        schema.get("components", {}).pop("securitySchemes", None)
        for path in schema["paths"].values():
            for operation in path.values():
                operation.pop("security", None)
    engine = getattr(app.state, "engine", None)
    if engine is not None:
        names = ["auto", *engine.tasks]
        operation = schema["paths"]["/restore"]["post"]
        params = [p["schema"] for p in operation.get("parameters", []) if p["name"] == "degradation"]
        ref = operation["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
        body = schema["components"]["schemas"][ref]["properties"].get("degradation")
        for param in [*params, body]:
            if param is not None:
                param["enum"] = names
    return schema


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; `settings` default to the TAP_* environment, read now (not at import)."""
    settings = settings or Settings()
    app = FastAPI(
        title="tap-restore",
        summary="Adverse-weather removal: rain, raindrops, haze, snow",
        description=DESCRIPTION,
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    errors.install(app)
    for router in (restore.router, health.router, metrics.router, admin.router, ui.router):
        app.include_router(router)
    base_openapi = app.openapi
    app.openapi = lambda: _openapi(app, base_openapi())
    app.add_middleware(RestoreGuard, settings=settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Content-Type", "Accept"],
            expose_headers=[
                "X-Degradation",
                "X-Degradation-Confidence",
                "X-Degradation-Mixture",
                "X-Model-Version",
                "X-Processing-Time-Ms",
                "Retry-After",
            ],
        )
    return app
