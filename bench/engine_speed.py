"""Engine speed: onnxruntime (CPU EP, the service's own session) vs PyTorch eager, same weights.

Batch 1 and 8 at 256², 512² and 1024², and a 12-MP photo cut into the service's fixed-size
tiles. The two engines alternate within every round; the table gives medians and the median
of per-round ratios. A sweep of session options at one size shows what onnxruntime's speed
comes from (graph optimizations, NCHWc layout, threads, spinning). Target: ORT >= 2x eager.

Run: python -m bench.engine_speed [--quick] [--bundle artifacts/default [--checkpoint W]]
"""

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench.common import (
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

NAME = "engine_speed"
TARGET = 2.0  # onnxruntime / eager throughput on CPU
FULL_CASES = "1x256,8x256,1x512,8x512,1x1024,8x1024"
QUICK_CASES = "1x256,8x256,1x512"
Level = ort.GraphOptimizationLevel
SWEEP: dict[str, dict] = {  # one change each from service/engine.py's options
    "service (ENABLE_ALL: fusions + NCHWc layout)": {},
    "ENABLE_EXTENDED (no NCHWc layout)": {"level": Level.ORT_ENABLE_EXTENDED},
    "ENABLE_BASIC (constant folding, simple fusions)": {"level": Level.ORT_ENABLE_BASIC},
    "DISABLE_ALL (graph as exported)": {"level": Level.ORT_DISABLE_ALL},
    "no thread spinning (allow_spinning=0)": {"config": {"session.intra_op.allow_spinning": "0"}},
    "enable_mem_pattern=False": {"mem_pattern": False},
    "1 intra-op thread": {"threads": 1},
    "ORT_PARALLEL execution": {"parallel": True},
}


@dataclass(frozen=True)
class Case:
    """One workload: batches run back to back; `megapixels` counts image pixels, not tile padding."""

    label: str
    batches: list[np.ndarray]  # (N, 3, H, W) float32
    prompts: list[np.ndarray]  # (N, D) float32
    megapixels: float
    note: str = ""

    def head(self) -> "Case":
        """The first batch alone: enough to warm up (all batches of a case share a shape) and check parity."""
        return Case(self.label, self.batches[:1], self.prompts[:1], 0.0)


def image_case(batch: int, size: int, vectors: np.ndarray) -> Case:
    images = np.stack([draw_city_scene(size, size, seed=i).transpose(2, 0, 1) for i in range(batch)])  # (N, 3, S, S)
    prompts = vectors[np.arange(batch) % len(vectors)]  # mixed tasks in one batch, as the service allows
    return Case(f"{batch}×{size}²", [images], [prompts], batch * size * size / 1e6)


def photo_case(
    height: int, width: int, tile: int, overlap: int, tile_batch: int, align: int, prompt: np.ndarray
) -> Case:
    """A photo through the service's tiling: fixed-size tiles in batches (split/blend not timed)."""
    chw = draw_city_scene(height, width).transpose(2, 0, 1)
    tiles, _ = tiling.split(chw, tile, overlap, align)
    batches = [np.stack(tiles[i : i + tile_batch]) for i in range(0, len(tiles), tile_batch)]
    prompts = [np.tile(prompt, (len(b), 1)) for b in batches]
    mp = height * width / 1e6
    inflation = len(tiles) * tile * tile / 1e6 / mp
    note = f"{len(tiles)} tiles of {tile}² (overlap {overlap}) in batches of {tile_batch}: {inflation:.2f}× the pixels"
    return Case(f"{mp:.1f}-MP photo {width}×{height}, tiled", batches, prompts, mp, note)


def ort_session(
    path: str,
    threads: int,
    level: Level = Level.ORT_ENABLE_ALL,
    config: dict | None = None,
    mem_pattern: bool = True,
    parallel: bool = False,
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = threads if parallel else 1
    options.graph_optimization_level = level
    options.enable_mem_pattern = mem_pattern
    options.execution_mode = ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL
    for key, value in (config or {}).items():  # e.g. session.intra_op.allow_spinning
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def ort_runner(session: ort.InferenceSession, case: Case) -> Callable[[], list]:
    feeds = [{"image": b, "prompt": p} for b, p in zip(case.batches, case.prompts, strict=True)]
    return lambda: [session.run(None, feed)[0] for feed in feeds]


def eager_runner(graph, case: Case) -> Callable[[], list]:
    import torch

    pairs = [(torch.from_numpy(b), torch.from_numpy(p)) for b, p in zip(case.batches, case.prompts, strict=True)]

    def run() -> list:
        with torch.inference_mode():
            return [graph(b, p).numpy() for b, p in pairs]

    return run


def compare(
    case: Case, session: ort.InferenceSession, graph, max_repeats: int, min_repeats: int, budget_s: float
) -> tuple[list[str], tuple[str, float, float, float], float]:
    """ORT vs eager on one case: table row, (label, ORT MP/s, eager MP/s, ratio), max |ORT - eager|."""
    (got,), (ref,) = ort_runner(session, case.head())(), eager_runner(graph, case.head())()  # also the warm-up
    runs = {"ort": ort_runner(session, case), "eager": eager_runner(graph, case)}
    times = interleaved(runs, max_repeats, min_repeats=min_repeats, budget_s=budget_s, warmup=0)
    ort_s, eager_s = median(times["ort"]), median(times["eager"])
    ratio = paired_ratio(times["eager"], times["ort"])
    print(
        f"{case.label}: ort {case.megapixels / ort_s:.3f} MP/s, eager {case.megapixels / eager_s:.3f} MP/s", flush=True
    )
    row = [
        case.label,
        f"{ort_s * 1e3:.0f}",
        f"{eager_s * 1e3:.0f}",
        f"{case.megapixels / ort_s:.3f}",
        f"{case.megapixels / eager_s:.3f}",
        f"**{ratio:.2f}×**",
        str(len(times["ort"])),
        case.note,
    ]
    return row, (case.label, case.megapixels / ort_s, case.megapixels / eager_s, ratio), float(np.abs(got - ref).max())


def sweep(
    service_session: ort.InferenceSession,
    path: str,
    case: Case,
    threads: int,
    max_repeats: int,
    min_repeats: int,
    budget_s: float,
) -> list[list[str]]:
    """Table rows: each SWEEP session against the service's own, interleaved on one case."""
    runs = {}
    for name, change in SWEEP.items():
        session = ort_session(path, **{"threads": threads, **change}) if change else service_session
        runs[name] = ort_runner(session, case)
    times = interleaved(runs, max_repeats, min_repeats=min_repeats, budget_s=budget_s)
    base = next(iter(SWEEP))
    return [
        [
            name,
            f"{median(times[name]) * 1e3:.1f}",
            f"{case.megapixels / median(times[name]):.3f}",
            f"{paired_ratio(times[base], times[name]):.2f}×",
        ]
        for name in SWEEP
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_speed", description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    defaults = Settings.model_fields
    parser.add_argument("--cases", help=f"BATCHxSIZE list (default {FULL_CASES}; --quick {QUICK_CASES})")
    parser.add_argument("--photo", help="WxH of the tiled photo (default 4000x3000; --quick 800x600); 'none' skips")
    parser.add_argument("--tile", type=int, default=defaults["tile_size"].default, help="tile side (service default)")
    parser.add_argument("--overlap", type=int, default=defaults["tile_overlap"].default, help="tile overlap")
    parser.add_argument("--tile-batch", type=int, default=defaults["max_batch"].default, help="tiles per run")
    parser.add_argument(
        "--sweep", help="BATCHxSIZE of the session-option sweep (default 1x512; --quick 1x256); 'none' skips"
    )
    parser.add_argument("--repeats", type=int, help="most rounds per case (default 7; --quick 3)")
    parser.add_argument("--min-repeats", type=int, default=3, help="fewest rounds per case")
    parser.add_argument("--budget-s", type=float, help="stop adding rounds after this (default 60; --quick 10)")
    return parser


def main(argv: list[str] | None = None) -> Report:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    quick = args.quick
    cases_arg = args.cases or (QUICK_CASES if quick else FULL_CASES)
    photo_arg = args.photo or ("800x600" if quick else "4000x3000")
    sweep_arg = args.sweep or ("1x256" if quick else "1x512")
    repeats = args.repeats or (3 if quick else 7)
    budget_s = args.budget_s if args.budget_s is not None else (10.0 if quick else 60.0)

    import torch

    from training.export import BackboneGraph

    torch.set_num_threads(args.threads)
    watch = CpuWatch()
    with model_under_test(args) as model:
        engine = service_engine(model.bundle, args.threads)
        session = engine.backbone
        providers = session.get_providers()
        if providers[0] != "CPUExecutionProvider":
            raise SystemExit(f"expected the CPU execution provider, onnxruntime runs {providers}")
        graph = BackboneGraph(model.eager).eval()
        vectors = np.stack([engine.prompts[t] for t in engine.tasks])

        cases = [image_case(*map(int, spec.split("x")), vectors) for spec in cases_arg.split(",")]
        if photo_arg != "none":
            h, w = parse_size(photo_arg)
            cases.append(photo_case(h, w, args.tile, args.overlap, args.tile_batch, engine.pad_multiple, vectors[0]))
        rows, results, parity = [], [], 0.0
        for case in cases:
            row, result, diff = compare(case, session, graph, repeats, args.min_repeats, budget_s)
            rows.append(row)
            results.append(result)
            parity = max(parity, diff)
        sweep_rows, sweep_label = [], ""
        if sweep_arg != "none":
            case = image_case(*map(int, sweep_arg.split("x")), vectors)
            sweep_label = case.label
            path = str(engine.bundle.path("backbone"))
            sweep_rows = sweep(session, path, case, args.threads, repeats, args.min_repeats, budget_s)

    ratios = [r for *_, r in results]
    met = sum(r >= TARGET for r in ratios)
    verdict = "met" if met == len(ratios) else "NOT met" if met == 0 else "partly met"
    headline = (
        f"ORT / eager throughput {min(ratios):.2f}×–{max(ratios):.2f}× (target ≥ {TARGET:g}×: {verdict}, "
        f"{met} of {len(ratios)} cases)"
    )
    header = machine_lines(args.threads, watch, command_line("bench.engine_speed", argv))
    header += [
        f"- Model: {model.description}; onnxruntime providers {providers}, session options as service/engine.py "
        f"(ENABLE_ALL, intra-op {args.threads}, inter-op 1); eager: PyTorch `BackboneGraph`, eval, inference_mode",
        f"- Same weights: max |ORT − eager| {parity:.1e} (on the first batch of every case)",
        "- Times are medians over rounds in which the engines alternate; ratio = median of per-round "
        "eager/ORT; MP/s counts image pixels (for the photo: the photo's, not the tiles')",
    ]
    columns = ["case", "ORT ms", "eager ms", "ORT MP/s", "eager MP/s", "ORT / eager", "rounds", "note"]
    body = [
        "## Throughput",
        "",
        md_table(columns, rows, "lrrrrrrl"),
        "",
        f"**{headline}**",
    ]
    if sweep_rows:
        body += [
            "",
            f"## onnxruntime session options at {sweep_label}",
            "",
            "Each row changes one option from the service's session; ratio = median per-round time of the "
            "service session / this one (> 1: faster than the service).",
            "",
            md_table(["session options", "ms", "MP/s", "speed vs service"], sweep_rows),
        ]
    plot = _plot(results, args.out_dir)
    body += ["", f"![ORT vs eager]({plot.name})"]
    path = write_markdown(args.out_dir, NAME, "Engine speed: onnxruntime vs PyTorch eager (CPU)", header, body)
    return Report(NAME, path, [headline])


def _plot(results: list[tuple[str, float, float, float]], out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    path = plot_path(out_dir, NAME)
    labels = [r[0] for r in results]
    x = np.arange(len(results))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(results)), 3.6))
    ax.bar(x - 0.2, [r[1] for r in results], 0.4, label="onnxruntime (CPU EP)")
    ax.bar(x + 0.2, [r[2] for r in results], 0.4, label="PyTorch eager")
    for xi, r in zip(x, results, strict=True):
        ax.annotate(f"{r[3]:.2f}×", (xi, max(r[1], r[2])), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("megapixels / s")
    ax.set_ylim(0, 1.2 * max(max(r[1], r[2]) for r in results))  # room for the ratio labels
    ax.legend(fontsize=8, loc="upper left")
    return save_figure(fig, path)


if __name__ == "__main__":
    main()
