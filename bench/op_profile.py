"""Where a backbone's CPU time goes: onnxruntime's profiler, one thread, node times by module and op.

The speed tables (bench/results/cpu_fast_path.md) say how fast each graph is; this says why. Each
node onnxruntime ran is traced back to the module that exported it (the exporter's `namespace`
metadata), through the optimized graph onnxruntime writes: its blocked-layout convs and the
reorders and transposes it inserts keep tensor names of the source graph on one side. Nodes with
no such name on either side are counted as onnxruntime's own. Warm-up runs are left out; times are
per run, averaged over the profiled runs.

Run: python -m bench.op_profile [--bundle artifacts/default] [--keys backbone backbone_int8] [--size 768]
"""

import argparse
import json
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from bench.common import (
    DEFAULT_BUNDLE,
    REPO,
    RESULTS,
    CpuWatch,
    command_line,
    first_prompt,
    machine_lines,
    md_table,
    write_markdown,
)
from contract.bundle import load_bundle
from service import cpu_features
from training.quantize import FP32_MODULES, namespace
from training.scenes import draw_city_scene

NAME = "op_profile"
ONNXRUNTIME_OWN = "inserted by onnxruntime"
PARTS = ("intro", "down", "up", "refine", "out")  # the stem's and the head's parts, in data-flow order
# A module label: the backbone's stage (stem, encoders.0, ..., head.refine) or a prompt level.
MODULE = re.compile(
    rf"model\.(backbone\.(?:stem|middle|head|[a-z]+\.\d+)(?:\.(?:{'|'.join(PARTS)}))?|prompts\.levels\.\d+)"
)


def module_labels(path: Path) -> dict[str, str]:
    """Source node names and the tensors they write -> the module that exported them. Nodes added
    after export (the quantizer's Q/DQ pairs) carry no namespace: they take their input's module."""
    labels = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:  # in topological order
        found = MODULE.findall(namespace(node))
        label = (
            found[-1].removeprefix("backbone.")
            if found
            else next((labels[i] for i in node.input if i in labels), "other")
        )
        for name in (node.name, *node.output):
            labels[name] = label
    return labels


def optimized_labels(optimized: Path, source: dict[str, str]) -> dict[str, str]:
    """Node names of onnxruntime's optimized graph -> module, by the first source name found among
    the node's own name (a blocked-layout conv is its source output's name + `_nchwc`), its
    outputs, then its inputs (weights excluded)."""
    graph = onnx.load(str(optimized), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    labels = {}
    for node in graph.node:
        own = [node.name, node.name.removesuffix("_nchwc")]
        names = [*own, *node.output, *(i for i in node.input if i not in weights)]
        labels[node.name] = next((source[n] for n in names if n in source), ONNXRUNTIME_OWN)
    return labels


def profile(path: Path, image: np.ndarray, prompt: np.ndarray, warmup: int, runs: int, tmp: Path) -> dict:
    """One-thread session with profiling: per-run model time and node times by module and op."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp / f"{path.stem}.optimized.onnx")
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp / path.stem)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(warmup + runs):
        session.run(None, {"image": image, "prompt": prompt})
    events = json.loads(Path(session.end_profiling()).read_text())
    labels = optimized_labels(Path(options.optimized_model_filepath), module_labels(path))
    model_runs = [e["dur"] / 1e3 for e in events if e.get("name") == "model_run"][warmup:]
    nodes = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    nodes = nodes[len(nodes) // (warmup + runs) * warmup :]
    by_module, by_op, by_node = Counter(), Counter(), Counter()
    for event in nodes:
        name, op, ms = event["name"].removesuffix("_kernel_time"), event["args"]["op_name"], event["dur"] / 1e3 / runs
        module = labels.get(name, ONNXRUNTIME_OWN)
        by_module[module] += ms
        by_op[op] += ms
        by_node[(name, op, module)] += ms
    return {"run_ms": float(np.median(model_runs)), "module": by_module, "op": by_op, "node": by_node}


def share_rows(times: Counter, total: float, keys: Iterable) -> list[list[str]]:
    return [[str(k), f"{times[k]:.1f}", f"{times[k] / total:.0%}"] for k in keys]


def stage_order(label: str) -> tuple:
    """Data-flow order: stem, each encoder level then its down, middle, prompt levels, each up then
    its decoder, head."""
    stages = [("stem",), ("encoders", "downs"), ("middle",), ("prompts.levels",), ("ups", "decoders"), ("head",)]
    last = label.rpartition(".")[2]
    level = int(last) if last.isdigit() else 0
    part = PARTS.index(last) if last in PARTS else -1
    for group, names in enumerate(stages):
        for within, name in enumerate(names):
            if label.startswith(name):
                return (group, level, within, part, label)
    return (len(stages), 0, 0, 0, label)


def report_section(key: str, file: str, result: dict, top: int) -> list[str]:
    total = sum(result["module"].values())
    modules = sorted(result["module"], key=stage_order)
    scopes = [m.removeprefix("model.backbone.") for m in FP32_MODULES]
    kept = {m for m in modules if "int8" in key and any(m == s or m.startswith(f"{s}.") for s in scopes)}
    module_rows = share_rows(result["module"], total, modules)
    for row in module_rows:
        row[0] += " (fp32)" if row[0] in kept else ""
    nodes = result["node"].most_common(top)
    fp32 = sum(result["module"][m] for m in kept)
    kept_line = [f"The modules INT8 keeps in fp32 took {fp32:.0f} ms ({fp32 / total:.0%}).", ""] if fp32 else []
    return [
        f"## `{file}` (`{key}`): {result['run_ms']:.0f} ms a run (median), {total:.0f} ms in nodes",
        "",
        *kept_line,
        md_table(["module", "ms", "share"], module_rows, "lrr"),
        "",
        md_table(
            ["op type", "ms", "share"],
            share_rows(result["op"], total, [k for k, _ in result["op"].most_common(top)]),
            "lrr",
        ),
        "",
        md_table(
            ["node (as onnxruntime runs it)", "op type", "module", "ms"],
            [[f"`{name}`", op, module, f"{ms:.1f}"] for (name, op, module), ms in nodes],
            "lllr",
        ),
        "",
    ]


def main(argv: list[str] | None = None) -> dict[str, dict]:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.op_profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    parser.add_argument("--keys", nargs="+", help="manifest keys (default: backbone and this CPU's INT8 file)")
    parser.add_argument("--size", type=int, default=768, help="square input side")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--top", type=int, default=12, help="rows of the op and node tables")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    watch = CpuWatch()
    loaded = load_bundle(args.bundle)
    int8 = cpu_features.int8_backbone_key(cpu_features.cpu_flags())
    keys = args.keys or ["backbone", *([int8] if int8 in loaded.manifest else [])]
    image = draw_city_scene(args.size, args.size).transpose(2, 0, 1)[None].copy()
    prompt = first_prompt(args.bundle)[None]
    results, body = {}, []
    with tempfile.TemporaryDirectory(prefix="tap-profile-") as tmp:
        for key in keys:
            results[key] = profile(loaded.path(key), image, prompt, args.warmup, args.runs, Path(tmp))
            body += report_section(key, loaded.manifest[key]["file"], results[key], args.top)
    header = machine_lines(1, watch, command_line("bench.op_profile", argv))
    shown = args.bundle.resolve().relative_to(REPO) if args.bundle.resolve().is_relative_to(REPO) else args.bundle
    header.append(
        f"- Input: a drawn {args.size}² scene, the first prompt; {args.warmup} warm-up runs left out, "
        f"{args.runs} profiled (times per run); bundle `{shown}` ({loaded.manifest['model_version']})"
    )
    write_markdown(args.out_dir, NAME, "Where the backbone's CPU time goes (onnxruntime's profiler)", header, body)
    return results


if __name__ == "__main__":
    main()
