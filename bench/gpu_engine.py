"""GPU engine benchmark: onnxruntime's CUDA execution provider in fp32 and fp16, and TensorRT
when onnxruntime lists it and it initializes: 1080p and 4K latency, and throughput over a
batch sweep of fixed-size tiles. Timings include the host<->device copies, as in the service.

Fails loudly when CUDA is asked for but onnxruntime runs on the CPU. `--provider cpu` runs
the same logic on the CPU, to test it without a GPU. Writes bench/results/gpu.md.

Run: bash bench/gpu.sh [--quick] [--bundle artifacts/default]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench.common import (
    CpuWatch,
    Report,
    add_common_args,
    command_line,
    first_prompt,
    machine_lines,
    md_table,
    median,
    model_under_test,
    parse_size,
    write_markdown,
)
from service.engine import CPU, CUDA, CUDA_OPTIONS
from training.scenes import draw_city_scene

NAME = "gpu"
TRT = "TensorrtExecutionProvider"
LATENCY_SIZES = "1920x1080,3840x2160"
FULL_BATCHES = "1,2,4,8,16,32,64,128"
QUICK_BATCHES = "1,4,16,64"


@dataclass(frozen=True)
class Candidate:
    label: str
    model_key: str  # manifest key: backbone or backbone_fp16
    providers: list  # onnxruntime's providers argument: names or (name, options)

    @property
    def wanted(self) -> str:
        first = self.providers[0]
        return first if isinstance(first, str) else first[0]


class ProviderMissing(RuntimeError):
    """The session does not run on the execution provider that was asked for."""


def gpu_name() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown (nvidia-smi failed: {exc})"
    return out.replace("\n", "; ")


def candidates(provider: str, has_fp16: bool, trt_dir: Path, trt: bool) -> list[Candidate]:
    if provider == "cpu":
        first = [CPU]
        found = [Candidate("CPU fp32", "backbone", first)]
        return found + ([Candidate("CPU fp16", "backbone_fp16", first)] if has_fp16 else [])
    cuda = [(CUDA, CUDA_OPTIONS), CPU]
    found = [Candidate("CUDA fp32", "backbone", cuda)]
    if has_fp16:
        found.append(Candidate("CUDA fp16", "backbone_fp16", cuda))
    if trt and TRT in ort.get_available_providers():
        options = {
            "trt_fp16_enable": True,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(trt_dir),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(trt_dir),
        }
        found.append(Candidate("TensorRT (fp16 allowed)", "backbone", [(TRT, options), *cuda]))
    return found


def open_session(path: Path, candidate: Candidate, threads: int) -> ort.InferenceSession:
    """A session on the candidate's first provider, or ProviderMissing (onnxruntime falls back silently)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads  # CPU work: all of it with --provider cpu, host-side ops on a GPU
    session = ort.InferenceSession(str(path), options, providers=candidate.providers)
    if session.get_providers()[0] != candidate.wanted:
        raise ProviderMissing(
            f"{candidate.label}: asked for {candidate.wanted}, onnxruntime runs {session.get_providers()}"
        )
    return session


def timed(session: ort.InferenceSession, feeds: dict, repeats: int, warmup: int = 3) -> tuple[list[float], np.ndarray]:
    """Seconds per run (after warm-up: cuDNN algorithm search, TensorRT engine build) and the last output."""
    for _ in range(warmup):
        out = session.run(None, feeds)[0]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = session.run(None, feeds)[0]
        times.append(time.perf_counter() - t0)
    return times, out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_engine", description=__doc__.split("\n\n")[0])
    add_common_args(parser, eager=False)
    parser.add_argument("--provider", choices=("cuda", "cpu"), default="cuda", help="cpu: test the logic here")
    parser.add_argument("--no-tensorrt", action="store_true", help="skip TensorRT even when onnxruntime lists it")
    parser.add_argument("--latency", default=LATENCY_SIZES, help="WxH list of whole images for latency")
    parser.add_argument("--tile", type=int, default=512, help="tile side of the throughput sweep")
    parser.add_argument("--batches", help=f"throughput batch sizes (default {FULL_BATCHES}; --quick {QUICK_BATCHES})")
    parser.add_argument("--repeats", type=int, help="timed runs per point (default 20; --quick 5)")
    return parser


def main(argv: list[str] | None = None) -> Report:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    repeats = args.repeats or (5 if args.quick else 20)
    batches = [int(b) for b in (args.batches or (QUICK_BATCHES if args.quick else FULL_BATCHES)).split(",")]
    sizes = [parse_size(s) for s in args.latency.split(",")]
    if args.provider == "cuda":
        if CUDA not in ort.get_available_providers():
            raise SystemExit(
                f"CUDA requested but this onnxruntime offers {ort.get_available_providers()}: install onnxruntime-gpu"
            )
        if hasattr(ort, "preload_dlls"):
            try:
                ort.preload_dlls()  # CUDA/cuDNN from the nvidia-* wheels, when installed
            except Exception as exc:  # the session check below fails loudly if CUDA is really missing
                print(f"onnxruntime.preload_dlls failed: {exc}", file=sys.stderr)
    card = gpu_name() if args.provider == "cuda" else "none (--provider cpu: a logic test, not GPU numbers)"

    watch = CpuWatch()
    latency_rows, sweep_rows, notes, best = [], [], [], {}
    with model_under_test(args, need_eager=False, fp16=True) as model, tempfile.TemporaryDirectory() as trt_dir:
        from contract.bundle import load_bundle

        bundle = load_bundle(model.bundle)
        prompt = first_prompt(model.bundle)[None]  # (1, D)
        has_fp16 = "backbone_fp16" in bundle.manifest
        if not has_fp16:
            notes.append("The bundle has no backbone_fp16.onnx (export with --fp16): fp16 rows skipped.")
        reference: dict[tuple[int, int], np.ndarray] = {}
        for cand in candidates(args.provider, has_fp16, Path(trt_dir), not args.no_tensorrt):
            try:
                session = open_session(bundle.path(cand.model_key), cand, args.threads)
            except ProviderMissing as exc:
                if cand.wanted == CUDA:
                    raise SystemExit(
                        f"FAILED: {exc}. Check the CUDA/cuDNN libraries (pip install "
                        "'onnxruntime-gpu[cuda,cudnn]') and the driver (nvidia-smi)."
                    ) from exc
                notes.append(f"{cand.label}: not used ({exc})")
                continue
            except Exception as exc:  # TensorRT may fail to build for reasons of its own
                notes.append(f"{cand.label}: failed to initialize: {str(exc).splitlines()[0][:300]}")
                continue
            cells = []
            for h, w in sizes:
                feeds = {"image": draw_city_scene(h, w).transpose(2, 0, 1)[None].copy(), "prompt": prompt}
                times, out = timed(session, feeds, repeats)
                fidelity = f"{psnr(out, reference[(h, w)]):.1f}" if (h, w) in reference else "reference"
                reference.setdefault((h, w), out)
                cells.append(f"{median(times) * 1e3:.1f} / {np.percentile(times, 90) * 1e3:.1f} ({fidelity})")
                print(f"{cand.label} {w}×{h}: {median(times) * 1e3:.1f} ms", flush=True)
            latency_rows.append([cand.label, *cells])
            for batch in batches:
                feeds = {
                    "image": np.stack(
                        [draw_city_scene(args.tile, args.tile, i).transpose(2, 0, 1) for i in range(batch)]
                    ),
                    "prompt": np.repeat(prompt, batch, axis=0),
                }
                try:
                    times, _ = timed(session, feeds, repeats, warmup=2)
                except Exception as exc:  # out of memory ends this candidate's sweep
                    sweep_rows.append([cand.label, str(batch), "–", "–", str(exc).splitlines()[0][:80]])
                    break
                mps = batch * args.tile**2 / 1e6 / median(times)
                best[cand.label] = max(best.get(cand.label, (0.0, 0)), (mps, batch))
                sweep_rows.append([cand.label, str(batch), f"{median(times) * 1e3:.1f}", f"{mps:.1f}", ""])
                print(f"{cand.label} batch {batch}: {mps:.1f} MP/s", flush=True)

    first = latency_rows[0][0]
    header = machine_lines(args.threads, watch, command_line("bench.gpu_engine", argv))
    header += [
        f"- GPU: **{card}**",
        f"- Model: {model.description}; CUDA options {CUDA_OPTIONS} (as service/engine.py); numpy in and out, "
        "so every run includes the host↔device copies",
        f"- {repeats} timed runs per point after warm-up (cuDNN algorithm search, TensorRT engine builds)",
    ]
    size_cols = [f"{w}×{h} ms p50 / p90 (PSNR vs {first}, dB)" for h, w in sizes]
    body = [
        "## Latency, one whole image",
        "",
        md_table(["engine", *size_cols], latency_rows),
        "",
        f"## Throughput, batches of {args.tile}² tiles",
        "",
        md_table(["engine", "batch", "ms per batch", "MP/s", "note"], sweep_rows, "lrrrl"),
        "",
        *[f"- {n}" for n in notes],
    ]
    headlines = [
        f"{args.provider.upper()} ({card}): "
        + ", ".join(f"{label} max {mps:.1f} MP/s at batch {b}" for label, (mps, b) in best.items())
    ]
    path = write_markdown(args.out_dir, NAME, f"GPU engine: onnxruntime on {card}", header, body)
    return Report(NAME, path, headlines)


if __name__ == "__main__":
    main()
