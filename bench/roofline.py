"""Distance to the limit: FLOPs per megapixel, and onnxruntime's GFLOP/s against two ceilings.

Work: conv and matmul FLOPs (2 x MACs) of the backbone at 512², counted by
torch.utils.flop_counter.FlopCounterMode and split by conv kind with forward hooks
(element-wise work - norms, gates, adds - is not counted). Ceilings, measured in the same
run and interleaved with the model: a 2048² float32 matrix multiply on all cores (numpy
and torch, best of several: the practical peak) and cores x clock x FLOPs/cycle from
/proc/cpuinfo (the theoretical peak). An onnxruntime profile says where the time goes.
Target: >= 30 % of the practical peak at 512² on CPU.

Run: python -m bench.roofline [--quick] [--bundle artifacts/default [--checkpoint W]]
"""

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench.common import (
    CpuWatch,
    Report,
    add_common_args,
    available_cpus,
    command_line,
    cpu_info,
    interleaved,
    machine_lines,
    md_table,
    median,
    model_under_test,
    plot_path,
    save_figure,
    service_engine,
    write_markdown,
)
from training.scenes import draw_city_scene

NAME = "roofline"
TARGET = 0.30  # of the practical peak
GEMM = 2048
TOP_OPS = 10


def count_flops(model, size: int) -> tuple[float, dict[str, float]]:
    """FLOPs of one (1, 3, size, size) forward pass: total, and by kind of work."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    kinds: Counter[str] = Counter()

    def hook(conv: torch.nn.Conv2d, _inputs: tuple, out: torch.Tensor) -> None:
        kh, kw = conv.kernel_size
        macs = out.numel() * conv.in_channels // conv.groups * kh * kw
        if conv.groups > 1 and conv.groups == conv.in_channels:
            kinds[f"{kh}×{kw} depthwise conv"] += 2 * macs
        elif (kh, kw) == (1, 1):
            kinds["1×1 conv"] += 2 * macs
        else:
            kinds["dense k×k conv (stem, down, head)"] += 2 * macs

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    image = torch.from_numpy(draw_city_scene(size, size).transpose(2, 0, 1)[None].copy())
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model(image, model.task_vectors()[:1])
    finally:
        for handle in handles:
            handle.remove()
    total = float(counter.get_total_flops())
    conv = sum(kinds.values())
    kinds["matmul (prompt attention, linear)"] = total - conv
    return total, dict(kinds)


def theoretical_peak(cpus: int) -> tuple[float, str]:
    """GFLOP/s = CPUs × clock × fp32 FLOPs/cycle/core, and how that was derived."""
    info = cpu_info()
    flags = set(info.get("flags", "").split())
    vendor, family = info.get("vendor_id", ""), int(info.get("cpu family", "0"))
    lanes = 16 if "avx512f" in flags else 8 if "avx" in flags else 4
    fma = 2 if "fma" in flags else 1
    pipes = 2  # two FMA/vector-multiply pipes per core on x86 since Haswell and Zen 2
    why = [f"{'AVX-512' if lanes == 16 else 'AVX' if lanes == 8 else 'SSE'} ({lanes} fp32 lanes)"]
    if vendor == "AuthenticAMD" and family in (0x17, 0x19) and lanes == 16:
        lanes = 8  # Zen 4 executes 512-bit ops on 256-bit units: no gain in peak FLOPs
        why.append("but AMD family 0x19 (Zen 3/4) runs them on 256-bit units (8 lanes)")
    elif vendor == "AuthenticAMD" and family == 0x17:
        why.append("AMD family 0x17 (Zen 1/2; Zen 1 would be half)")
    per_cycle = lanes * fma * pipes
    why.append(f"× {fma} (FMA) × {pipes} pipes = {per_cycle} FLOPs/cycle/core")
    clock_mhz, clock_src = float(info.get("cpu MHz", "0") or 0), "/proc/cpuinfo 'cpu MHz' (nominal under a VM)"
    max_freq = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if max_freq.is_file():
        clock_mhz, clock_src = int(max_freq.read_text()) / 1000, "cpufreq cpuinfo_max_freq (boost)"
    peak = cpus * clock_mhz / 1000 * per_cycle
    text = f"{cpus} CPUs × {clock_mhz / 1000:.2f} GHz ({clock_src}) × {per_cycle} FLOPs/cycle: " + ", ".join(why)
    return peak, text


def profile_ops(bundle_file: str, threads: int, feeds: dict) -> tuple[list[tuple[str, float, int]], float]:
    """onnxruntime's own per-node timings of one run, by op type: [(op, ms, nodes)], and the run's ms."""
    options = ort.SessionOptions()  # as service/engine.py, plus profiling
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = os.path.join(tmp, "ort")
        session = ort.InferenceSession(bundle_file, options, providers=["CPUExecutionProvider"])
        for _ in range(2):  # the first run allocates; keep the second
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    run = [e for e in events if e.get("name") == "model_run"][-1]
    ops: Counter[str] = Counter()
    nodes: Counter[str] = Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= run["ts"]:
            ops[e["args"]["op_name"]] += e["dur"] / 1e3
            nodes[e["args"]["op_name"]] += 1
    return [(op, ms, nodes[op]) for op, ms in ops.most_common()], run["dur"] / 1e3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.roofline", description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--size", type=int, default=512, help="image side for FLOPs and achieved GFLOP/s")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--gemm", type=int, default=GEMM, help="matrix side of the practical-peak multiply")
    parser.add_argument("--repeats", type=int, help="rounds (default 7; --quick 4)")
    return parser


def main(argv: list[str] | None = None) -> Report:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    repeats = args.repeats or (4 if args.quick else 7)

    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    from training.export import BackboneGraph

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads, user_api="blas")
    watch = CpuWatch()
    with model_under_test(args) as model:
        flops_image, kinds = count_flops(model.eager, args.size)
        mp_image = args.size * args.size / 1e6
        flops_mp = flops_image / mp_image
        engine = service_engine(model.bundle, args.threads)
        images = np.stack([draw_city_scene(args.size, args.size, i).transpose(2, 0, 1) for i in range(args.batch)])
        feeds = {"image": images, "prompt": np.tile(engine.prompts[engine.tasks[0]], (args.batch, 1))}
        torch_parity = BackboneGraph(model.eager).eval()
        with torch.inference_mode():
            ref = torch_parity(torch.from_numpy(images), torch.from_numpy(feeds["prompt"])).numpy()
        parity = float(np.abs(engine.backbone.run(None, feeds)[0] - ref).max())

        rng = np.random.default_rng(0)
        a, b = (rng.random((args.gemm, args.gemm), dtype=np.float32) for _ in range(2))
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        runs = {
            "onnxruntime": lambda: engine.backbone.run(None, feeds),
            "numpy": lambda: a @ b,
            "torch": lambda: ta @ tb,
        }
        times = interleaved(runs, repeats, min_repeats=repeats)
        ops, run_ms = profile_ops(str(engine.bundle.path("backbone")), args.threads, feeds)

    gemm_flops = 2 * args.gemm**3
    blas = {name: gemm_flops / min(times[name]) / 1e9 for name in ("numpy", "torch")}
    practical = max(blas.values())
    achieved = flops_image * args.batch / median(times["onnxruntime"]) / 1e9
    theoretical, derivation = theoretical_peak(args.threads)
    share = achieved / practical
    verdict = "met" if share >= TARGET else "NOT met"
    label = f"{args.batch}×{args.size}²"
    headline = (
        f"ORT at {label}: {achieved:.1f} GFLOP/s = {share:.0%} of the practical peak {practical:.1f} GFLOP/s, "
        f"{achieved / theoretical:.0%} of theoretical {theoretical:.0f} (target ≥ {TARGET:.0%}: {verdict}); "
        f"{flops_mp / 1e9:.1f} GFLOP/MP"
    )

    blas_info = "; ".join(
        f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture', '?')} kernels, {i.get('num_threads')} "
        "threads)"
        for i in threadpool_info()
        if i.get("user_api") == "blas"
    )
    coretype = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    header = machine_lines(args.threads, watch, command_line("bench.roofline", argv))
    header += [
        f"- Model: {model.description}; ORT session as service/engine.py (ENABLE_ALL, intra-op {args.threads}); "
        f"max |ORT − eager| {parity:.1e}",
        f"- BLAS behind numpy: {blas_info or '?'}" + (f"; {coretype} set (slows current OpenBLAS)" if coretype else ""),
        f"- Theoretical peak: {derivation}",
    ]
    work_rows = [[kind, f"{f / mp_image / 1e9:.2f}", f"{f / flops_image:.0%}"] for kind, f in kinds.items()]
    work_rows.append(["**total (conv + matmul)**", f"**{flops_mp / 1e9:.2f}**", "100%"])
    ceiling_rows = [
        [
            f"onnxruntime, model at {label} (median)",
            f"{achieved:.1f}",
            f"**{share:.0%}**",
            f"{achieved / theoretical:.0%}",
        ],
        *[
            [f"{name} {args.gemm}² fp32 matmul (best)", f"{g:.1f}", f"{g / practical:.0%}", f"{g / theoretical:.0%}"]
            for name, g in blas.items()
        ],
        ["theoretical (cores × clock × FLOPs/cycle)", f"{theoretical:.1f}", f"{theoretical / practical:.0%}", "100%"],
    ]
    node_ms = sum(ms for _, ms, _ in ops)
    op_rows = [[op, f"{ms:.1f}", f"{ms / node_ms:.0%}", str(n)] for op, ms, n in ops[:TOP_OPS]]
    rest = ops[TOP_OPS:]
    if rest:
        op_rows.append(
            [
                f"{len(rest)} other op types",
                f"{sum(ms for _, ms, _ in rest):.1f}",
                f"{sum(ms for _, ms, _ in rest) / node_ms:.0%}",
                str(sum(n for *_, n in rest)),
            ]
        )
    conv_ms = sum(ms for op, ms, _ in ops if "Conv" in op)
    conv_flops = sum(f for kind, f in kinds.items() if "conv" in kind) * args.batch
    conv_rate = conv_flops / (conv_ms / 1e3) / 1e9 if conv_ms else 0.0
    conv_line = (
        f"Conv nodes alone run at {conv_rate:.1f} GFLOP/s ({conv_rate / practical:.0%} of the practical peak) in "
        f"{conv_ms / node_ms:.0%} of the node time; the other {1 - conv_ms / node_ms:.0%} goes to ops with "
        f"{1 - conv_flops / (flops_image * args.batch):.0%} of the counted FLOPs (norms, layout reorders, "
        "element-wise)."
    )
    body = [
        f"## Work per megapixel (FLOPs = 2 × MACs, at {args.size}²)",
        "",
        md_table(["kind", "GFLOP / MP", "share"], work_rows),
        "",
        "## Achieved vs ceilings",
        "",
        md_table(["what", "GFLOP/s", "of practical peak", "of theoretical"], ceiling_rows),
        "",
        f"**{headline}**",
        "",
        f"## Where onnxruntime's time goes ({label}, one profiled run: {run_ms:.0f} ms, {node_ms:.0f} ms in nodes)",
        "",
        "Reorder* ops convert between NCHW and the NCHWc blocked layout that ORT's x86 conv kernels use; "
        "the channel norms are a C→1 conv, a broadcast Add and a MatMul (model.blocks.ConvChannelNorm).",
        "",
        md_table(["op type", "ms", "share of node time", "nodes"], op_rows),
        "",
        conv_line,
    ]
    plot = _plot(
        {"ORT model": achieved, **{f"{k} matmul": v for k, v in blas.items()}}, theoretical, practical, args.out_dir
    )
    body += ["", f"![GFLOP/s against the ceilings]({plot.name})"]
    path = write_markdown(args.out_dir, NAME, "Distance to the limit (CPU)", header, body)
    return Report(NAME, path, [headline])


def _plot(bars: dict[str, float], theoretical: float, practical: float, out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    path = plot_path(out_dir, NAME)
    fig, ax = plt.subplots(figsize=(6.4, 2.8))
    ax.barh(list(bars), list(bars.values()), color=["tab:blue"] + ["tab:gray"] * (len(bars) - 1))
    ax.axvline(theoretical, color="tab:red", linestyle="--", label=f"theoretical {theoretical:.0f}")
    ax.axvline(TARGET * practical, color="tab:green", linestyle=":", label=f"target {TARGET:.0%} of practical")
    ax.set_xlabel(f"GFLOP/s ({available_cpus()} CPUs)")
    ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path)


if __name__ == "__main__":
    main()
