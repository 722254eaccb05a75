"""What every benchmark shares: the model under test, interleaved timing, a contamination
watch, the machine description that heads every table, and Markdown output.

Timings on a shared 2-core machine drift with other load, so candidates are measured
round-robin in one process and compared by medians and per-round ratios, and every
table says how busy the rest of the machine was while it was measured.
"""

import argparse
import contextlib
import importlib.metadata
import os
import platform
import resource
import shlex
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from training.data_root import shared_data_dir

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SHARED_DATA = shared_data_dir()  # ../shared/data, or TAP_DATA
DEFAULT_BUNDLE = REPO / "artifacts" / "default"
BUNDLE_WEIGHTS = "weights.safetensors"  # a bundle may carry its checkpoint; eager PyTorch needs it
BUSY_OTHERS_LIMIT = 0.2  # CPUs kept busy by other processes above which a table is flagged
PAUSE_S = 0.05  # between timed calls: lets the last engine's spinning worker threads go to sleep


@dataclass
class Report:
    """What a benchmark hands to run_all: its Markdown file and one-line findings."""

    name: str
    path: Path
    headlines: list[str]


@dataclass
class Model:
    """The model under test: eager PyTorch (None when not needed) and a bundle with the same weights."""

    eager: object | None  # TAPNet; typed loosely so the service-only benchmarks need no torch
    bundle: Path
    description: str


# ---- machine -------------------------------------------------------------------------------


def available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_info() -> dict[str, str]:
    """The first processor's fields from /proc/cpuinfo ('model name', 'cpu MHz', 'flags', ...)."""
    info: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                if info:
                    break
                continue
            key, _, value = line.partition(":")
            info[key.strip()] = value.strip()
    return info


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_lines(threads: int, watch: "CpuWatch", command: str) -> list[str]:
    """The header of every table: hardware, software, threads, commit, and how busy the machine was."""
    cpu = cpu_info()
    flags = set(cpu.get("flags", "").split())
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "AVX" if "avx" in flags else "SSE"
    ort_dist = next((d for d in ("onnxruntime-gpu", "onnxruntime") if version(d)), "onnxruntime")
    software = [f"Python {platform.python_version()}", f"numpy {np.__version__}", f"{ort_dist} {version(ort_dist)}"]
    if torch_version := version("torch"):
        software.append(f"torch {torch_version}")
    commit = _git("rev-parse", "--short", "HEAD") or "?"
    code = ("bench", "contract", "model", "service", "training", ":!bench/results")  # results are not code
    dirty = " (+ uncommitted changes)" if _git("status", "--porcelain", "--", *code) else ""
    return [
        f"- Machine: {cpu.get('model name', platform.processor() or '?')}, {available_cpus()} CPUs available "
        f"({platform.machine()}, {simd}{' + FMA' if 'fma' in flags else ''}), {os.getloadavg()[0]:.1f} "
        "load average (1 min) before the run",
        f"- Software: {', '.join(software)}; threads: {threads} (onnxruntime intra-op, torch)",
        f"- Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit}{dirty}, `{command}`",
        f"- {watch.verdict()}",
    ]


class CpuWatch:
    """CPU time that *other* processes took while a benchmark ran: the contamination of its timings.

    Busy time of the whole machine (/proc/stat, steal included) minus this process and its
    children (servers the benchmark started count as its own).
    """

    def __init__(self) -> None:
        self.t0, self.busy0, self.own0 = time.perf_counter(), _machine_busy_s(), _own_cpu_s()

    def others(self) -> float:
        """Average number of CPUs other processes kept busy so far."""
        wall = time.perf_counter() - self.t0
        other = (_machine_busy_s() - self.busy0) - (_own_cpu_s() - self.own0)
        return max(0.0, other / wall) if wall > 0 else 0.0

    def verdict(self) -> str:
        others = self.others()
        if others > BUSY_OTHERS_LIMIT:
            return (
                f"Other processes kept {others:.2f} of {available_cpus()} CPUs busy during the run: "
                "**CONTAMINATED, timings are not reliable**"
            )
        return f"Other processes kept {others:.2f} of {available_cpus()} CPUs busy during the run: quiet"


def _machine_busy_s() -> float:
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    """This process, reaped children, and live descendants (their /proc stat)."""
    usage = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    total = sum(u.ru_utime + u.ru_stime for u in usage)
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        times[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    mine = {os.getpid()}
    grew = True
    while grew:
        children = {pid for pid, ppid in parents.items() if ppid in mine} - mine
        grew = bool(children)
        mine |= children
    return total + sum(times[pid] for pid in mine - {os.getpid()})


# ---- timing --------------------------------------------------------------------------------


def interleaved(
    runs: dict[str, Callable[[], object]],
    max_repeats: int,
    *,
    min_repeats: int = 3,
    budget_s: float = float("inf"),
    warmup: int = 1,
) -> dict[str, list[float]]:
    """Seconds per call of each candidate, measured round-robin with the order rotated each round.

    Drift and other load then hit every candidate alike. Rounds stop at `max_repeats`, or
    earlier once `budget_s` is spent and `min_repeats` rounds are done.
    """
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    start = time.perf_counter()
    for r in range(max_repeats):
        if r >= min_repeats and time.perf_counter() - start > budget_s:
            break
        for name in names[r % len(names) :] + names[: r % len(names)]:
            time.sleep(PAUSE_S)
            t0 = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of numerator/denominator: robust to load that drifts between rounds."""
    return statistics.median(n / d for n, d in zip(numerator, denominator, strict=True))


# ---- model under test ----------------------------------------------------------------------


def add_common_args(parser: argparse.ArgumentParser, eager: bool = True) -> None:
    parser.add_argument("--quick", action="store_true", help="reduced sizes and repeats (a minute or so)")
    parser.add_argument("--threads", type=int, default=available_cpus(), help="onnxruntime intra-op and torch threads")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help="where the Markdown (and PNG) go")
    group = parser.add_argument_group("model under test (default: random weights, exported to a temp dir)")
    example = DEFAULT_BUNDLE.relative_to(REPO)
    group.add_argument("--bundle", type=Path, help=f"an exported bundle instead, e.g. {example}")
    help_ckpt = "weights (.safetensors) to export" + (
        f"; with --bundle, the same weights for eager PyTorch (default BUNDLE/{BUNDLE_WEIGHTS})" if eager else ""
    )
    group.add_argument("--checkpoint", type=Path, help=help_ckpt)
    group.add_argument("--variant", default="default", help="NET_VARIANTS entry for random weights")
    group.add_argument("--seed", type=int, default=0, help="seed of the random weights")


@contextlib.contextmanager
def model_under_test(args: argparse.Namespace, need_eager: bool = True, fp16: bool = False) -> Iterator[Model]:
    """The eager model and a bundle holding the same weights; a bundle exported here lives until exit."""
    if args.bundle is not None:
        ckpt = args.checkpoint or args.bundle / BUNDLE_WEIGHTS
        eager = None
        if need_eager:
            if not ckpt.is_file():
                raise SystemExit(
                    f"--bundle {args.bundle}: eager PyTorch needs the bundle's own weights; no {ckpt}: "
                    "pass --checkpoint WEIGHTS.safetensors (or drop --bundle to export random weights)"
                )
            from model.checkpoint import load_model

            eager = load_model(ckpt)[0].eval()
        from contract.bundle import read_manifest

        what = f"bundle `{args.bundle}` (model_version {read_manifest(args.bundle)['model_version']})"
        yield Model(eager, args.bundle, what + (f", eager weights `{ckpt}`" if need_eager else ""))
        return
    from training.export import export_bundle

    model, source = source_model(args)
    with tempfile.TemporaryDirectory(prefix="tap-bench-") as tmp:
        bundle = export_bundle(model, Path(tmp) / "bundle", model_version=source, fp16=fp16)
        yield Model(model if need_eager else None, bundle, f"{source}, exported to a temporary bundle")


def source_model(args: argparse.Namespace):
    """(TAPNet, description): --checkpoint's weights, else deterministic random ones."""
    if args.checkpoint is not None:
        from model.checkpoint import load_model

        return load_model(args.checkpoint)[0].eval(), f"checkpoint {args.checkpoint.name}"
    from training.random_model import random_model

    return random_model(args.variant, args.seed), f"random {args.variant} weights, seed {args.seed}"


def prepare_shared(args: argparse.Namespace, folder: Path) -> tuple[Path, Path]:
    """Export once for several benchmarks: (bundle, checkpoint) in `folder`, the same weights."""
    from model.checkpoint import save_weights
    from training.export import export_bundle

    model, source = source_model(args)
    ckpt = folder / BUNDLE_WEIGHTS
    save_weights(model, ckpt)
    return export_bundle(model, folder / "bundle", model_version=source), ckpt


def service_engine(bundle: Path, threads: int, **settings: object):
    """The service's own Engine (its session options, CPU provider), as production builds it."""
    from service.engine import Engine
    from service.settings import Settings

    base = {"device": "cpu", "intra_op_threads": threads, "prompt_reload_interval_s": 0}
    return Engine(Settings(bundle_path=bundle, **{**base, **settings}))


def first_prompt(bundle: Path) -> np.ndarray:
    """(D,) float32: the first task's prompt vector in the bundle."""
    return np.load(sorted((bundle / "prompts").glob("*.npy"))[0])


# ---- inputs --------------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    """'4000x3000' -> (height 3000, width 4000); '512' -> (512, 512)."""
    w, _, h = text.lower().partition("x")
    return (int(h or w), int(w))


# ---- output --------------------------------------------------------------------------------


def md_table(header: list[str], rows: list[list[str]], align: str = "") -> str:
    """`align`: one letter per column, l or r; default: the first left, the rest right."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    return "\n".join("| " + " | ".join(r) + " |" for r in [header, rule, *rows])


def command_line(module: str, argv: list[str]) -> str:
    return " ".join(["python -m", module, *(shlex.quote(a) for a in argv)])


def write_markdown(out_dir: Path, name: str, title: str, header: list[str], body: list[str]) -> Path:
    """bench/results/<name>.md: title, machine header, sections; printed as well."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.md"
    text = "\n".join([f"# {title}", "", *header, "", *body]).rstrip() + "\n"
    path.write_text(text)
    print(text, flush=True)
    return path


def save_figure(fig, path: Path) -> Path:
    """Lay out, write and close a matplotlib figure (closed, so repeated runs do not pile up figures)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_path(out_dir: Path, name: str) -> Path:
    """Where a benchmark's PNG goes; matplotlib switched to a non-interactive backend."""
    import matplotlib

    matplotlib.use("Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir / f"{name}.png"
