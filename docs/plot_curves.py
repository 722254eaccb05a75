"""Plot learning curves (loss and training PSNR against samples seen) from runs' metrics.csv.

Usage: python docs/plot_curves.py LABEL=runs/x/pretrain/metrics.csv [...] --out docs/learning_curves.png
Samples seen = step x batch size (read from the run's config.yaml beside metrics.csv). A run that
continues another one's weights from scratch (init=, its steps counted from 0) is placed after it
with LABEL=PATH@SAMPLES, SAMPLES being what the earlier run had seen.
"""

import argparse
import csv
from pathlib import Path

import yaml


def read_run(path: Path) -> tuple[list[float], list[float], list[float]]:
    """(samples seen, loss, psnr) of one run's metrics.csv; a resumed run's repeated steps keep the last."""
    batch = yaml.safe_load((path.parent / "config.yaml").read_text())["data"]["batch_size"]
    rows: dict[int, dict] = {}
    with path.open() as f:
        for row in csv.reader(f):
            if row and row[0] != "step":
                rows[int(row[0])] = row
    steps = sorted(rows)
    return [s * batch for s in steps], [float(rows[s][2]) for s in steps], [float(rows[s][3]) for s in steps]


def smooth(values: list[float], k: int = 9) -> list[float]:
    half = k // 2
    return [
        sum(values[max(0, i - half) : i + half + 1]) / len(values[max(0, i - half) : i + half + 1])
        for i in range(len(values))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="label=path/to/metrics.csv")
    parser.add_argument("--out", default="docs/learning_curves.png")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(10, 3.8))
    for entry in args.runs:
        label, _, spec = entry.partition("=")
        path, _, start = spec.partition("@")
        samples, loss, psnr = read_run(Path(path))
        samples = [s + int(start or 0) for s in samples]
        ax_loss.plot(samples, smooth(loss), label=label)
        ax_psnr.plot(samples, smooth(psnr), label=label)
    ax_loss.set(xlabel="training samples seen (thousands)", ylabel="Charbonnier loss (smoothed)", yscale="log")
    ax_psnr.set(xlabel="training samples seen (thousands)", ylabel="training-batch PSNR, dB (smoothed)")
    thousands = matplotlib.ticker.FuncFormatter(lambda x, _: f"{x / 1000:g}")
    for ax in (ax_loss, ax_psnr):
        ax.xaxis.set_major_formatter(thousands)
    ax_psnr.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
