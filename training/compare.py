"""Side-by-side table of several `tap-train evaluate` results (ablations, model versions)."""

import json
from pathlib import Path


def _cell(methods: dict, method: str) -> str:
    m = methods.get(method)
    return f"{m['psnr_y']:.2f} / {m['ssim_y']:.3f}" if m else "–"


def compare_table(runs: dict[str, dict], method: str = "given task") -> str:
    """Markdown: one row per run; PSNR-Y / SSIM-Y per dataset for `method`, auto-mode accuracy
    (synthetic weather, clean crops, real photos), whole held-out clean photos returned untouched by
    the service's rule, and the real photos' grid score (median / worst of the labelled weather's
    outputs) where the run evaluated real photos."""
    datasets = list(next(iter(runs.values()))["datasets"])
    header = [
        "run",
        *datasets,
        "mean PSNR-Y",
        "auto acc. (weather)",
        "auto acc. (clean)",
        "auto acc. (real)",
        "clean untouched (whole)",
        "grid (real)",
    ]
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    for label, results in runs.items():
        cells, psnrs = [], []
        for name in datasets:
            methods = results["datasets"].get(name, {}).get("methods", {})
            cells.append(_cell(methods, method))
            if method in methods:
                psnrs.append(methods[method]["psnr_y"])
        auto = results.get("auto") or {}
        accuracy = [auto.get("accuracy_weather"), auto.get("accuracy_clean")]
        mean = f"{sum(psnrs) / len(psnrs):.2f}" if psnrs else "–"
        real = results.get("real") or {}
        accuracy.append(real.get("auto_accuracy"))
        acc = [f"{a:.3f}" if a is not None else "–" for a in accuracy]
        clean = real.get("held_out_clean")
        acc.append(f"{clean['untouched']} / {clean['n']}" if clean else "–")
        grid = real.get("grid", {}).get("given task")
        grid_cell = f"{grid['median']:.3f} / {grid['worst']:.3f}" if grid else "–"
        lines.append("| " + " | ".join([label, *cells, mean, *acc, grid_cell]) + " |")
    return "\n".join(lines) + "\n"


def load_runs(entries: list[str]) -> dict[str, dict]:
    """['label=path/to/metrics.json', ...] -> {label: results}."""
    runs = {}
    for entry in entries:
        label, sep, path = entry.partition("=")
        if not sep:
            raise ValueError(f"run {entry!r} must look like label=path/to/metrics.json")
        runs[label] = json.loads(Path(path).read_text())
    return runs
