"""One restore, start to finish: pre-process -> decide -> process (whole or tiled) -> post-process.

Shared by the HTTP route and the in-process CLI. CPU-heavy steps (decode, tiling, blending,
encode) run in worker threads; backbone work goes through the batcher.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from contract.flat_guard import FlatGuard
from service import imaging, metrics, tiling
from service.batcher import Batcher, DeadlineExceeded
from service.engine import AUTO, Decision, Engine
from service.settings import Settings

FLAT_GUARD = FlatGuard()  # what evaluation measures too (tap-train evaluate, bench.quality)
# The guard runs on one thread of its own: one guard's temporaries at a time, always from the same
# malloc arena. Run on the shared pool, concurrent requests grew resident memory by ~7 % over a
# 300-request soak (tests/reliability/test_soak.py); the guard is a small share of a restore.
GUARD_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tap-flat-guard")


@dataclass(frozen=True)
class Restored:
    data: bytes
    fmt: str
    decision: Decision
    width: int
    height: int
    tiles: int
    timings_ms: dict[str, float]
    strength: float


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


def with_mirrors(parts: list[np.ndarray]) -> list[np.ndarray]:
    """(3, H, W) tiles, then their left-right mirror images: one batch for the flip ensemble."""
    return parts + [np.ascontiguousarray(p[:, :, ::-1]) for p in parts]


def merge_mirrors(outputs: list[np.ndarray]) -> list[np.ndarray]:
    """Outputs of `with_mirrors` tiles -> each tile's mean of its own and its mirror's restoration.

    The network is not exactly mirror-equivariant; averaging the two cancels part of each
    pass's error (streaks that one pass leaves, the other often removes).
    """
    half = len(outputs) // 2
    pairs = zip(outputs[:half], outputs[half:], strict=True)
    return [(own + mirrored[:, :, ::-1]) * np.float32(0.5) for own, mirrored in pairs]


def toward_input(lq: np.ndarray, restored: np.ndarray, strength: float) -> np.ndarray:
    """lq + strength * (restored - lq): the restoration blended back toward the photo."""
    if strength == 1.0:
        return restored
    return lq + np.float32(strength) * (restored - lq)


class Pipeline:
    def __init__(self, engine: Engine, batcher: Batcher, settings: Settings) -> None:
        self.engine = engine
        self.batcher = batcher
        self.settings = settings

    def resolve(self, degradation: str) -> Decision | None:
        """Validate the requested degradation before any decoding; None means auto."""
        return None if degradation == AUTO else self.engine.resolve(degradation)

    async def restore(
        self,
        data: bytes,
        degradation: str = AUTO,
        fmt: str = "png",
        quality: int | None = None,
        started: float | None = None,
        ensemble: bool | None = None,
        strength: float | None = None,
    ) -> Restored:
        """Raises UnknownDegradation, imaging.ImageError, QueueFull, DeadlineExceeded, InferenceError.

        `ensemble` (None: the settings' `flip_ensemble`) restores every tile and its mirror image.
        `strength` (None: the settings' `default_strength`) blends the blended tiles back toward
        the photo; 0 runs no backbone and returns the photo as decoded.
        """
        s = self.settings
        started = time.perf_counter() if started is None else started
        deadline = started + s.request_timeout_s
        ensemble = s.flip_ensemble if ensemble is None else ensemble
        strength = s.default_strength if strength is None else strength
        decision = self.resolve(degradation)
        width, height = imaging.open_image(data, s.max_pixels).size  # header only: cheap refusals first
        tiles = self.plan(height, width) * (2 if ensemble else 1)
        timings: dict[str, float] = {}
        with self.batcher.admit(tiles) as ticket:
            t0 = time.perf_counter()
            decoded = await asyncio.to_thread(imaging.decode, data, s.max_pixels)
            timings["decode"] = _ms(time.perf_counter() - t0)
            metrics.INPUT_MEGAPIXELS.observe(decoded.width * decoded.height / 1e6)
            if decision is None:
                t0 = time.perf_counter()
                probabilities = await asyncio.to_thread(self.engine.classify, decoded.rgb)
                decision = self.engine.decide(probabilities)
                timings["classify"] = _ms(time.perf_counter() - t0)
                metrics.AUTO_DECISIONS.labels(degradation="mixture" if decision.mixture else decision.label).inc()
            untouched = decision.clean or strength == 0
            if untouched:
                ticket.release()
                rgb = decoded.rgb
            else:
                metrics.TILES_PER_REQUEST.observe(tiles)
                restored = await self._process(decoded.rgb, decision, deadline, timings, ensemble)
                ticket.release()
                if s.flat_guard:
                    t0 = time.perf_counter()
                    loop = asyncio.get_running_loop()
                    restored = await loop.run_in_executor(GUARD_THREAD, FLAT_GUARD.apply, decoded.rgb, restored)
                    timings["guard"] = _ms(time.perf_counter() - t0)
                rgb = await asyncio.to_thread(toward_input, decoded.rgb, restored, strength)
                metrics.MEGAPIXELS_RESTORED.inc(decoded.width * decoded.height / 1e6)
        t0 = time.perf_counter()
        data_out = await asyncio.to_thread(imaging.encode, rgb, decoded.extras, fmt, quality or s.default_quality)
        timings["encode"] = _ms(time.perf_counter() - t0)
        timings["total"] = _ms(time.perf_counter() - started)
        work = 0 if untouched else tiles
        return Restored(data_out, fmt, decision, decoded.width, decoded.height, work, timings, strength)

    def plan(self, height: int, width: int) -> int:
        """Work items for an image; refuses shapes whose tiles would cover far more than max_pixels.

        A 1 x 40M strip is within max_pixels but every tile is mostly padding (a side is padded
        to the 16-px grid: 16x the work).
        """
        s = self.settings
        align = self.engine.pad_multiple
        if tiling.needs_tiling(height, width, s.tile_size):
            padded = tiling.padded_length(height, s.tile_size, s.tile_overlap, align) * tiling.padded_length(
                width, s.tile_size, s.tile_overlap, align
            )
            limit = 2 * max(s.max_pixels, s.tile_size**2)
            if padded > limit:
                raise imaging.ImageTooLarge(
                    f"a {width}x{height} image is too elongated: its tiles would cover {padded} pixels (limit {limit})"
                )
        return tiling.count_tiles(height, width, s.tile_size, s.tile_overlap, align)

    async def _process(
        self, rgb: np.ndarray, decision: Decision, deadline: float, timings: dict, ensemble: bool = False
    ) -> np.ndarray:
        """(H, W, 3) -> restored (H, W, 3): whole when it fits a tile, else tiled and blended;
        with `ensemble`, every tile's restoration is averaged with its mirror image's."""
        s = self.settings
        height, width, _ = rgb.shape
        prompt = self.engine.prompt_vector(decision.weights)
        chw = rgb.transpose(2, 0, 1)  # (3, H, W) view
        tiled = tiling.needs_tiling(height, width, s.tile_size)
        if tiled:
            align = self.engine.pad_multiple
            parts, boxes = await asyncio.to_thread(tiling.split, chw, s.tile_size, s.tile_overlap, align)
        else:
            parts, boxes = [np.ascontiguousarray(chw)], [(0, 0)]
        if ensemble:
            parts = await asyncio.to_thread(with_mirrors, parts)
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise DeadlineExceeded("deadline passed before inference")
        job = await self.batcher.run(parts, prompt, remaining)
        timings["queue"] = _ms(job.queue_wait_s)
        timings["inference"] = _ms(job.inference_s)
        outputs = job.future.result()
        if ensemble:
            outputs = await asyncio.to_thread(merge_mirrors, outputs)
        if tiled:
            t0 = time.perf_counter()
            out = await asyncio.to_thread(tiling.untile, outputs, boxes, height, width, s.tile_overlap)
            timings["blend"] = _ms(time.perf_counter() - t0)
        else:
            out = outputs[0]
        return out.transpose(1, 2, 0)  # (H, W, 3)


@contextlib.asynccontextmanager
async def local_pipeline(settings: Settings) -> AsyncIterator[Pipeline]:
    """An in-process pipeline (engine + running batcher) without HTTP, for the CLI and scripts."""
    engine = await asyncio.to_thread(Engine, settings)
    batcher = Batcher(
        engine.run_backbone, settings.max_batch, settings.max_delay_ms / 1000, settings.queue_size, engine.workers
    )
    batcher.start()
    try:
        yield Pipeline(engine, batcher, settings)
    finally:
        await batcher.close()
