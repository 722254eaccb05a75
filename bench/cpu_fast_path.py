"""CPU fast path (issue 31): the exact fp32 rewrite against the graph form bundles shipped before,
INT8 against fp32, parallel engine workers against one session, with the roofline figure and the
quality of each variant.

One process, every comparison interleaved round by round (medians and per-round ratios), so a
shared machine slows every variant alike; the header says how busy it was. The plain graph form
is exported here from the same weights (`export_backbone(..., fused=False)`: what
tap-default-20261203 shipped), the other variants are the bundle's own files.

Run: python -m bench.cpu_fast_path [--quick] [--bundle artifacts/default]
"""

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench.common import (
    SHARED_DATA,
    CpuWatch,
    Report,
    add_common_args,
    command_line,
    cpu_info,
    interleaved,
    machine_lines,
    md_table,
    median,
    model_under_test,
    paired_ratio,
    write_markdown,
)
from bench.roofline import count_flops, theoretical_peak
from bench.service_overhead import Server, drive, jpeg
from contract.bundle import INT8_KEYS, load_bundle
from service import cpu_features
from training.scenes import draw_city_scene

NAME = "cpu_fast_path"
SHOWN_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "asimddp")
TASK = "rain"


def session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """As service/engine.py builds it (all graph optimizations), `threads` intra-op threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def graphs(bundle: Path, plain: Path) -> dict[str, Path]:
    """The variants: the plain form, the bundle's fp32 (fused) and both INT8 files."""
    manifest = load_bundle(bundle).manifest
    files = {"fp32, plain form (as shipped before)": plain, "fp32, exact rewrite": bundle / "backbone.onnx"}
    for key in INT8_KEYS:
        files[f"int8 ({manifest[key]['file']})"] = bundle / manifest[key]["file"]
    return files


def parity(eager, files: dict[str, Path], prompt: np.ndarray) -> dict[str, float]:
    """Max abs difference of each fp32 graph from eager PyTorch (clamped as the graph is)."""
    import torch

    image = np.random.default_rng(0).random((2, 3, 123, 157), dtype=np.float32)
    prompts = np.repeat(prompt[None], 2, 0)
    with torch.no_grad():
        ref = eager(torch.from_numpy(image), torch.from_numpy(prompts)).clamp(0, 1).numpy()
    feeds = {"image": image, "prompt": prompts}
    return {name: float(np.abs(session(path).run(None, feeds)[0] - ref).max()) for name, path in files.items()}


def speed_rows(eager, files: dict[str, Path], prompt: np.ndarray, sizes: list[int], repeats: int) -> list[list[str]]:
    """One thread per session: ms, ratio to the plain form and to the fp32 rewrite, GFLOP/s, % of peak."""
    peak, _ = theoretical_peak(1)
    names = list(files)
    sessions = {name: session(path) for name, path in files.items()}
    rows = []
    for size in sizes:
        feeds = {"image": draw_city_scene(size, size).transpose(2, 0, 1)[None].copy(), "prompt": prompt[None]}
        runs = {name: (lambda s=sessions[name], f=feeds: s.run(None, f)) for name in names}
        times = interleaved(runs, repeats, min_repeats=repeats)
        flops = count_flops(eager, size)[0]
        for name in names:
            gflops = flops / median(times[name]) / 1e9
            rows.append(
                [
                    f"{size}²",
                    name,
                    f"{median(times[name]) * 1e3:.0f}",
                    f"{paired_ratio(times[names[0]], times[name]):.2f}×",
                    f"{paired_ratio(times[names[1]], times[name]):.2f}×",
                    f"{gflops:.1f}",
                    f"{gflops / peak:.0%}",
                ]
            )
    return rows


def throughput_rows(bundle: Path, args: argparse.Namespace, log_dir: Path) -> tuple[list[list[str]], str]:
    """requests/s through real servers: today's default (one session, all threads) vs workers."""
    h, w = (96, 128) if args.quick else (480, 640)
    tiles = {"tile_size": 64, "tile_overlap": 16} if args.quick else {}
    tiles["max_batch"] = args.max_batch  # every server alike; 8 tiles x 2 sessions x 3 servers ran out of memory
    configs = {
        "one session, onnxruntime's threads (today's default)": {"workers": 1, "intra_op_threads": 0},
        "workers: one session of 1 thread per CPU": {"workers": 0},
        "workers + int8": {"workers": 0, "precision": "int8"},
    }
    bodies = [jpeg(draw_city_scene(h, w, seed=i, noise=0.02)) for i in range(4)]
    servers = {
        name: Server(bundle, log_dir, f"s{i}", prompt_reload_interval_s=0, **tiles, **cfg)
        for i, (name, cfg) in enumerate(configs.items())
    }
    rows = []
    try:
        for server in servers.values():
            server.wait_ready()
        for concurrency in args.concurrency:
            requests = concurrency * args.requests_per_client
            load = (bodies, concurrency, requests)
            runs = {name: (lambda s=s, a=load: asyncio.run(drive(s.url, *a))) for name, s in servers.items()}
            times = interleaved(runs, args.repeats, min_repeats=args.repeats)
            base = next(iter(configs))
            for name in configs:
                rows.append(
                    [
                        str(concurrency),
                        name,
                        f"{requests / median(times[name]):.2f}",
                        f"{paired_ratio(times[base], times[name]):.2f}×",
                    ]
                )
    finally:
        for server in servers.values():
            server.stop()
    return rows, f"{len(bodies)} JPEG photos of {w}×{h} (drawn scenes), weather named ({TASK})"


def synthetic_quality(files: dict[str, Path], bundle: Path, clean_dir: Path, per_task: int) -> list[list[str]]:
    """Mean PSNR-Y on synthetic weather (v1 generators on held-out photos) per variant and weather."""
    from training.evaluate import held_out_photos, synthetic_samples
    from training.metrics import psnr, quantize, rgb_to_y

    tasks = load_bundle(bundle).manifest["tasks"]
    photos = held_out_photos(clean_dir)
    sessions = {name: session(path) for name, path in files.items()}
    rows = []
    for index, task in enumerate(tasks):
        samples = synthetic_samples(photos, index, task, per_task, seed=0)
        prompt = np.load(bundle / "prompts" / f"{task}.npy")[None]
        cells = []
        for s in sessions.values():
            scores = []
            for sample in samples:
                image = (sample.lq.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
                out = quantize(s.run(None, {"image": image, "prompt": prompt})[0][0].transpose(1, 2, 0))
                scores.append(psnr(rgb_to_y(out), rgb_to_y(sample.gt)))
            cells.append(f"{np.mean(scores):.2f}")
        rows.append([f"synthetic {task}, {len(samples)}", *cells])
    return rows


def manifest_quality(bundle: Path, names: list[str]) -> list[list[str]]:
    """The validation sets and real photos, as `tap-train quantize` measured them into the manifest."""
    quality = load_bundle(bundle).manifest["int8"]["quality"]
    rows = []
    for name, q in quality.items():
        if name == "real_vs_fp32":
            cells = ["(reference)", "(reference)"] + [
                f"{q[k]['median_psnr_y']:.1f} / {q[k]['worst_psnr_y']:.1f} dB from fp32" for k in INT8_KEYS
            ]
            rows.append([f"real photos, {q['n']} (longer side {q['longer_side']}): median / worst", *cells])
            continue
        fp32 = q["psnr_y_backbone"]
        cells = [f"{fp32:.2f}", f"{fp32:.2f}"] + [
            f"{q[f'psnr_y_{k}']:.2f} ({q[f'psnr_y_{k}'] - fp32:+.2f})" for k in INT8_KEYS
        ]
        rows.append([f"{name}, {q['n']} ({q['task']})", *cells])
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_fast_path", description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--sizes", type=int, nargs="+", help="square input sides (default 512 768; --quick 64)")
    parser.add_argument("--repeats", type=int, help="interleaved rounds (default 5; --quick 2)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--max-batch", type=int, default=2, help="the servers' TAP_MAX_BATCH (all alike)")
    parser.add_argument(
        "--requests-per-client",
        type=int,
        help="requests each client sends per timed round (default 4: at 2, the ratios at concurrency 4 moved by "
        "±0.1 between runs; --quick 1)",
    )
    parser.add_argument("--synthetic", type=int, help="synthetic images per weather (default 4; --quick 1)")
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="clean/ for synthetic weather")
    return parser


def main(argv: list[str] | None = None) -> Report:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.sizes = args.sizes or ([64] if args.quick else [512, 768])
    args.repeats = args.repeats or (2 if args.quick else 5)
    args.requests_per_client = args.requests_per_client or (1 if args.quick else 4)
    per_task = args.synthetic if args.synthetic is not None else (1 if args.quick else 4)
    watch = CpuWatch()
    with model_under_test(args) as model, tempfile.TemporaryDirectory(prefix="tap-fast-") as tmp:
        from training.export import export_backbone
        from training.quantize import default_job, drawn_data, quantize_bundle

        data = args.data
        if "int8" not in load_bundle(model.bundle).manifest:  # a random model exported here
            data = drawn_data(Path(tmp) / "data")
            quantize_bundle(model.bundle, default_job(data, folders=("clean",), crops_per_folder=4, crop=48))
        plain = Path(tmp) / "plain.onnx"
        export_backbone(model.eager, plain, fused=False)
        files = graphs(model.bundle, plain)
        prompt = np.load(model.bundle / "prompts" / f"{TASK}.npy")
        worst = parity(model.eager, dict(list(files.items())[:2]), prompt)
        speed = speed_rows(model.eager, files, prompt, args.sizes, args.repeats)
        throughput, inputs = throughput_rows(model.bundle, args, Path(tmp))
        quality = manifest_quality(model.bundle, list(files))
        quality += synthetic_quality(files, model.bundle, data / "clean", per_task)
        description = model.description
    flags = set(cpu_info().get("flags", cpu_info().get("Features", "")).split())
    chosen = cpu_features.int8_backbone_key(frozenset(flags))
    header = machine_lines(1, watch, command_line("bench.cpu_fast_path", argv))
    header += [
        f"- CPU flags that matter here: {', '.join(f for f in SHOWN_FLAGS if f in flags) or 'none'}; "
        f"`TAP_PRECISION=int8` runs `{chosen}.onnx` on this CPU",
        f"- Model: {description}",
        f"- Peak for the roofline: {theoretical_peak(1)[1]}",
    ]
    body = [
        "## Exactness",
        "",
        md_table(["graph", "max abs vs eager PyTorch"], [[k, f"{v:.1e}"] for k, v in worst.items()]),
        "",
        "## Speed, one session of one thread (median ms; ratio = per-round median; GFLOP/s of the fp32 work)",
        "",
        md_table(
            ["input", "variant", "ms", "vs plain fp32", "vs fp32 rewrite", "GFLOP/s", "of peak"], speed, "llrrrrr"
        ),
        "",
        f"## Service throughput (requests/s, {inputs}; real uvicorn servers, max_batch {args.max_batch}, interleaved)",
        "",
        md_table(["concurrency", "configuration", "requests/s", "vs today's default"], throughput, "rlrr"),
        "",
        "## Quality (PSNR-Y dB; validation sets and real photos from the manifest, measured by `tap-train quantize`)",
        "",
        md_table(["set", *files], quality, "l" + "r" * len(files)),
    ]
    path = write_markdown(args.out_dir, NAME, "CPU fast path: exact rewrite, INT8, engine workers", header, body)
    at = [r for r in speed if r[0] == f"{args.sizes[-1]}²"]
    headline = ", ".join(f"{r[1]} {r[3]}" for r in at[1:]) + f" vs the plain fp32 form at {args.sizes[-1]}²"
    return Report(NAME, path, [headline])


if __name__ == "__main__":
    main()
