"""Soak: thousands of restores of mixed sizes, formats and degradations; resident memory must stay flat.

Every (size, input format, output) combination is sent once, concurrently, as warm-up, so
onnxruntime's arena and per-shape plans, Pillow's codecs and the thread pool reach their
working size. RSS is then read after every request; it swings by about +-5 % with the
buffers of the requests in flight, so growth compares the medians of the second and the last
fifth of those readings rather than two single readings. The first fifth is left out: the
allocator still settles there (measured with architecture 2: 183 MB in the first fifth, then
198-201 MB in the four others). The medians of all five fifths show the shape: a leak climbs
steadily, allocator arenas settling level off.

Run: python -m bench.reliability.soak [--requests 3000] [--bundle artifacts/default]
"""

import argparse
import asyncio
import io
import itertools
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image

from bench.reliability.scenario import bundle_for, serve
from bench.reliability.server import ServerProcess, rss_mb
from training.scenes import draw_city_scene, to_uint8

# 128-px tiles keep the work per request small on a shared 2-core machine; the two largest
# sizes are tiled (up to 12 tiles), the others run whole.
SETTINGS: dict[str, object] = {
    "device": "cpu",
    "tile_size": 128,
    "tile_overlap": 16,
    "max_batch": 8,
    "max_delay_ms": 5,
    "queue_size": 512,  # the concurrent warm-up is admitted whole, as when this soak was first measured
    "intra_op_threads": 1,
    "prompt_reload_interval_s": 0,
}
SIZES = ((24, 32), (64, 64), (100, 150), (128, 128), (200, 300), (300, 400))  # (height, width)
INPUT_FORMATS = ("PNG", "JPEG")
OUTPUTS = ("png", "jpeg", "webp", "json")  # "json": Accept: application/json (PNG inside)
DEGRADATIONS = ("auto", "rain", "raindrop", "haze", "snow")
MAX_GROWTH = 0.05


@dataclass(frozen=True)
class SoakReport:
    requests: int
    warmup_requests: int
    failures: list[str]  # "status: body" of every non-200
    rss_start_mb: float  # right after the server was ready
    rss_fifths_mb: list[float]  # median over each fifth of the requests after warm-up
    rss_max_mb: float
    wall_s: float

    @property
    def rss_warm_mb(self) -> float:
        """The second fifth: the first still holds the allocator's settling after the warm-up."""
        return self.rss_fifths_mb[1]

    @property
    def rss_end_mb(self) -> float:
        return self.rss_fifths_mb[-1]

    @property
    def growth(self) -> float:
        """Relative RSS growth from the settled level (second fifth) to the end (last fifth)."""
        return self.rss_end_mb / self.rss_warm_mb - 1.0


def photo(height: int, width: int, fmt: str, seed: int) -> bytes:
    """The procedural scene with sensor noise: compresses like a photo, not like flat colour or pure noise."""
    buf = io.BytesIO()
    Image.fromarray(to_uint8(draw_city_scene(height, width, seed, noise=0.03))).save(buf, format=fmt)
    return buf.getvalue()


def _request(payload: bytes, degradation: str, output: str) -> dict:
    """httpx keyword arguments for one POST /restore."""
    if output == "json":
        return {
            "files": {"image": ("in", payload)},
            "data": {"degradation": degradation},
            "headers": {"Accept": "application/json"},
        }
    return {"files": {"image": ("in", payload)}, "data": {"degradation": degradation, "format": output}}


async def _run(url: str, requests: list[dict], concurrency: int, on_done: Callable[[], None]) -> list[str]:
    """Send `requests` with `concurrency` in flight, calling `on_done` after each; returns the failures."""
    failures: list[str] = []
    queue = iter(requests)
    async with httpx.AsyncClient(base_url=url, timeout=120.0) as client:

        async def worker() -> None:
            for kwargs in queue:
                response = await client.post("/restore", **kwargs)
                if response.status_code != 200:
                    failures.append(f"{response.status_code}: {response.text[:200]}")
                on_done()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failures


def soak(
    server: ServerProcess, requests: int, concurrency: int = 4, seed: int = 0, timeout_s: float = 3600
) -> SoakReport:
    """Warm up on every combination, then `requests` (>= 5) random ones; RSS read from /proc meanwhile."""
    if requests < 5:
        raise ValueError("a soak needs at least 5 requests: RSS is compared between fifths")
    rng = random.Random(seed)
    payloads = {
        (size, fmt): [photo(*size, fmt, seed=s) for s in range(3)]
        for size, fmt in itertools.product(SIZES, INPUT_FORMATS)
    }
    warmup = [
        _request(variants[0], "rain", output) for variants, output in itertools.product(payloads.values(), OUTPUTS)
    ]
    keys = list(payloads)
    mixed = [
        _request(rng.choice(payloads[rng.choice(keys)]), rng.choice(DEGRADATIONS), rng.choice(OUTPUTS))
        for _ in range(requests)
    ]
    rss_start = server.rss_mb()
    warm: list[float] = []
    measured: list[float] = []
    started = time.monotonic()
    failures = asyncio.run(
        asyncio.wait_for(_run(server.url, warmup, concurrency, lambda: warm.append(rss_mb(server.pid))), timeout_s)
    )
    failures += asyncio.run(
        asyncio.wait_for(_run(server.url, mixed, concurrency, lambda: measured.append(rss_mb(server.pid))), timeout_s)
    )
    bounds = [round(i * len(measured) / 5) for i in range(6)]
    fifths = [statistics.median(measured[start:end]) for start, end in itertools.pairwise(bounds)]
    return SoakReport(
        requests, len(warmup), failures, rss_start, fifths, max(warm + measured), time.monotonic() - started
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--bundle", type=Path, help="default: a tiny random model exported to a temp dir")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tap-soak-") as tmp:
        with serve(bundle_for(args.bundle, Path(tmp)), Path(tmp) / "server.log", SETTINGS) as server:
            report = soak(server, args.requests, args.concurrency)
    print(
        f"{report.requests} requests (+{report.warmup_requests} warm-up) in {report.wall_s:.0f} s, "
        f"{len(report.failures)} failures; RSS {report.rss_start_mb:.0f} MB at start, then medians per fifth "
        f"{', '.join(f'{mb:.0f}' for mb in report.rss_fifths_mb)} MB (max {report.rss_max_mb:.0f}): "
        f"{report.growth:+.1%} (limit {MAX_GROWTH:+.0%})"
    )


if __name__ == "__main__":
    main()
