"""Service overhead: restored megapixels/s through HTTP vs the bare engine on the same images.

A real uvicorn server per configuration (a subprocess on loopback): dynamic batching on
(the service's max_batch) and off (max_batch 1), driven by an async httpx load generator at
concurrency 1, 4 and 16. The bare engine restores the same decoded images in-process with
the same tiling and session (split -> session.run -> blend): no HTTP, codecs or batcher.
All windows alternate round by round. Targets: HTTP >= 0.85 x bare at concurrency >= 4,
and batching beating no batching.

Run: python -m bench.service_overhead [--quick] [--bundle artifacts/default]
"""

import argparse
import asyncio
import io
import itertools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from bench.common import (
    REPO,
    CpuWatch,
    Report,
    add_common_args,
    command_line,
    interleaved,
    machine_lines,
    md_table,
    median,
    model_under_test,
    paired_ratio,
    parse_size,
    plot_path,
    save_figure,
    service_engine,
    write_markdown,
)
from service import tiling
from service.settings import Settings
from training.scenes import draw_city_scene

NAME = "service_overhead"
TARGET_VS_BARE = 0.85
CONCURRENCY = (1, 4, 16)
TASK = "rain"  # a given task: auto mode would add the classifier, which the bare engine does not run
JPEG_QUALITY = 90
START_TIMEOUT_S = 300


@dataclass
class Window:
    """One configuration's measurement callable and what it observed across rounds."""

    run: Callable[[], None]
    megapixels: float
    latencies_s: list[float] = field(default_factory=list)
    batch_sizes: list[float] = field(default_factory=list)


class Server:
    """`uvicorn --factory service.app:create_app` in a subprocess, configured by TAP_* variables."""

    def __init__(self, bundle: Path, log_dir: Path, name: str, **settings: object) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "TAP_BUNDLE_PATH": str(bundle)}
        env.update({f"TAP_{k.upper()}": str(v) for k, v in settings.items()})
        self.log = log_dir / f"{name}.log"
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "service.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"server not ready after {START_TIMEOUT_S} s:\n{self.log.read_text()[-3000:]}")

    def batch_stats(self) -> tuple[float, float]:
        """(sum, count) of the tap_batch_size histogram: tiles per backbone run."""
        values = {}
        for line in httpx.get(f"{self.url}/metrics", timeout=30).text.splitlines():
            name, _, value = line.partition(" ")
            if name in ("tap_batch_size_sum", "tap_batch_size_count"):
                values[name] = float(value)
        return values.get("tap_batch_size_sum", 0.0), values.get("tap_batch_size_count", 0.0)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def drive(url: str, bodies: list[bytes], concurrency: int, requests: int) -> list[float]:
    """`requests` restores over `concurrency` connections; per-request latencies (s). Fails on any non-200."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    counter = itertools.count()
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def worker() -> None:
            while (i := next(counter)) < requests:
                t0 = time.perf_counter()
                response = await client.post(
                    "/restore",
                    params={"degradation": TASK, "format": "jpeg", "quality": JPEG_QUALITY},
                    files={"image": (f"photo{i}.jpg", bodies[i % len(bodies)], "image/jpeg")},
                )
                if response.status_code != 200:
                    raise RuntimeError(f"POST /restore -> {response.status_code}: {response.text[:300]}")
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def http_window(
    server: Server, bodies: list[bytes], megapixels: list[float], concurrency: int, requests: int
) -> Window:
    window = Window(lambda: None, sum(megapixels[i % len(megapixels)] for i in range(requests)))

    def run() -> None:
        before = server.batch_stats()
        window.latencies_s += asyncio.run(drive(server.url, bodies, concurrency, requests))
        after = server.batch_stats()
        window.batch_sizes.append((after[0] - before[0]) / max(after[1] - before[1], 1))

    window.run = run
    return window


def bare_window(engine, images: list[np.ndarray], tile: int, overlap: int, batch: int) -> Window:
    """In-process, the engine's best case: all images' tiles packed into full batches, then blended.

    The same tiling and session as the service, without HTTP, codecs or the batcher; packing
    across images is what the batcher does at high concurrency.
    """
    prompt, align = engine.prompts[TASK], engine.pad_multiple
    window = Window(lambda: None, sum(img.shape[0] * img.shape[1] for img in images) / 1e6)

    def run() -> None:
        t0 = time.perf_counter()
        splits = [tiling.split(rgb.transpose(2, 0, 1), tile, overlap, align) for rgb in images]
        tiles = [t for parts, _ in splits for t in parts]
        outputs = []
        for i in range(0, len(tiles), batch):
            chunk = np.stack(tiles[i : i + batch])  # (B, 3, tile, tile)
            outputs += list(engine.run_backbone(chunk, np.tile(prompt, (len(chunk), 1))))
        for rgb, (parts, boxes) in zip(images, splits, strict=True):
            tiling.untile(outputs[: len(parts)], boxes, rgb.shape[0], rgb.shape[1], overlap)
            outputs = outputs[len(parts) :]
        window.latencies_s.append((time.perf_counter() - t0) / len(images))

    window.run = run
    return window


def jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.round(rgb * 255).astype(np.uint8)).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.service_overhead", description=__doc__.split("\n\n")[0])
    add_common_args(parser, eager=False)
    parser.add_argument("--image", help="WxH of the uploaded photos (default 640x480; --quick 320x240)")
    parser.add_argument("--images", type=int, default=4, help="distinct photos, sent in turn")
    parser.add_argument(
        "--requests",
        type=int,
        help="requests per window at concurrency 1 (default 8; --quick 3); "
        "at concurrency c: max(this, 2c) (--quick: max(this, c))",
    )
    parser.add_argument("--rounds", type=int, help="rounds of all windows (default 5; --quick 3)")
    parser.add_argument("--tile", type=int, default=Settings.model_fields["tile_size"].default)
    parser.add_argument("--overlap", type=int, default=Settings.model_fields["tile_overlap"].default)
    parser.add_argument(
        "--max-batch",
        type=int,
        default=Settings.model_fields["max_batch"].default,
        help="the batching-on server's max_batch (off: 1)",
    )
    return parser


def main(argv: list[str] | None = None) -> Report:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    height, width = parse_size(args.image or ("320x240" if args.quick else "640x480"))
    per_c1 = args.requests or (3 if args.quick else 8)
    per_conn = 1 if args.quick else 2  # requests per connection at high concurrency: more = less ramp-down
    rounds = args.rounds or (3 if args.quick else 5)

    watch = CpuWatch()
    base = {
        "device": "cpu",
        "tile_size": args.tile,
        "tile_overlap": args.overlap,
        "intra_op_threads": args.threads,
        "prompt_reload_interval_s": 0,
        "queue_size": 1_000_000,
        "request_timeout_s": 3600,
    }
    with model_under_test(args, need_eager=False) as model, tempfile.TemporaryDirectory() as logs:
        bodies = [jpeg(draw_city_scene(height, width, seed, noise=0.02)) for seed in range(args.images)]
        decoded = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.float32) / 255.0 for b in bodies]
        megapixels = [img.shape[0] * img.shape[1] / 1e6 for img in decoded]
        servers = {
            "on": Server(model.bundle, Path(logs), "on", max_batch=args.max_batch, **base),
            "off": Server(model.bundle, Path(logs), "off", max_batch=1, **base),
        }
        try:
            for server in servers.values():
                server.wait_ready()
            engine = service_engine(model.bundle, args.threads, tile_size=args.tile, tile_overlap=args.overlap)
            tiles = tiling.count_tiles(height, width, args.tile, args.overlap, engine.pad_multiple)
            windows = {"bare": bare_window(engine, decoded, args.tile, args.overlap, args.max_batch)}
            for c in CONCURRENCY:
                for mode, server in servers.items():
                    windows[f"{mode}@{c}"] = http_window(server, bodies, megapixels, c, max(per_c1, per_conn * c))
            for key in ("bare", *(f"{mode}@{max(CONCURRENCY)}" for mode in servers)):  # warm-up: every batch shape
                windows[key].run()
                windows[key].latencies_s.clear()
                windows[key].batch_sizes.clear()
            times = interleaved({k: w.run for k, w in windows.items()}, rounds, min_repeats=rounds, warmup=0)
        finally:
            for server in servers.values():
                server.stop()

    mps = {k: [windows[k].megapixels / t for t in ts] for k, ts in times.items()}  # per round
    bare_mps = median(mps["bare"])
    packed = args.images * tiles / -(-args.images * tiles // args.max_batch)  # tiles per run, full batches
    rows = [
        [
            "bare engine (in-process, full batches)",
            "–",
            f"{bare_mps:.3f}",
            "1.00",
            f"{median(windows['bare'].latencies_s) * 1e3:.0f}",
            f"{packed:.1f}",
        ]
    ]
    vs_bare: dict[str, float] = {}
    labels = {"on": f"HTTP, batching on (max_batch {args.max_batch})", "off": "HTTP, batching off (max_batch 1)"}
    for mode, label in labels.items():
        for c in CONCURRENCY:
            key = f"{mode}@{c}"
            vs_bare[key] = paired_ratio(mps[key], mps["bare"])
            rows.append(
                [
                    label,
                    str(c),
                    f"{median(mps[key]):.3f}",
                    f"{vs_bare[key]:.2f}",
                    f"{median(windows[key].latencies_s) * 1e3:.0f}",
                    f"{median(windows[key].batch_sizes):.1f}",
                ]
            )
    high = [c for c in CONCURRENCY if c >= 4]
    worst = min(vs_bare[f"on@{c}"] for c in high)
    batching = {c: paired_ratio(mps[f"on@{c}"], mps[f"off@{c}"]) for c in high}
    headlines = [
        "HTTP (batching on) / bare engine at concurrency ≥ 4: "
        + ", ".join(f"{vs_bare[f'on@{c}']:.2f} (c={c})" for c in high)
        + f" (target ≥ {TARGET_VS_BARE}: {'met' if worst >= TARGET_VS_BARE else 'NOT met'})",
        "batching on / off: "
        + ", ".join(f"{r:.2f}× (c={c})" for c, r in batching.items())
        + f" (target > 1: {'met' if min(batching.values()) > 1 else 'NOT met'})",
    ]
    header = machine_lines(args.threads, watch, command_line("bench.service_overhead", argv))
    header += [
        "- The servers and the load generator are this benchmark's own processes, not other load",
        f"- Model: {model.description}; server: uvicorn subprocess on loopback, TAP_DEVICE=cpu, "
        f"intra-op {args.threads}, tiles {args.tile}² (overlap {args.overlap}), max_delay_ms "
        f"{Settings.model_fields['max_delay_ms'].default:g}",
        f"- Requests: {args.images} distinct {width}×{height} JPEG photos (q{JPEG_QUALITY}) → degradation={TASK}, "
        f"JPEG out; {tiles} tiles each; the load generator shares this machine's CPUs with the server",
        f"- {rounds} rounds; each window sends max({per_c1}, {per_conn}c) requests; MP/s = image megapixels / "
        "window wall time (median over rounds); vs bare = median per-round ratio; latency = median per request "
        "(bare: window / images)",
    ]
    body = [
        md_table(["configuration", "concurrency", "MP/s", "vs bare", "latency ms", "tiles per run"], rows),
        "",
        *[f"**{h}**" + "  " for h in headlines],
    ]
    plot = _plot({k: median(v) for k, v in mps.items()}, args.out_dir)
    body += ["", f"![throughput vs concurrency]({plot.name})"]
    path = write_markdown(args.out_dir, NAME, "Service overhead: HTTP vs bare engine (CPU)", header, body)
    return Report(NAME, path, headlines)


def _plot(mps: dict[str, float], out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    path = plot_path(out_dir, NAME)
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    for mode, label in (("on", "HTTP, batching on"), ("off", "HTTP, batching off")):
        ax.plot(CONCURRENCY, [mps[f"{mode}@{c}"] for c in CONCURRENCY], marker="o", label=label)
    ax.axhline(mps["bare"], color="black", linestyle="--", label="bare engine")
    ax.axhline(TARGET_VS_BARE * mps["bare"], color="tab:green", linestyle=":", label=f"{TARGET_VS_BARE} × bare")
    ax.set_xscale("log", base=2)
    ax.set_xticks(CONCURRENCY, [str(c) for c in CONCURRENCY])
    ax.set_xlabel("concurrent requests")
    ax.set_ylabel("restored megapixels / s")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


if __name__ == "__main__":
    main()
