"""Draw a Grafana dashboard's panel layout (gridPos rectangles, titles, queries) as a PNG.

A picture for the README that needs no running Grafana and stays true to the JSON:
    python docker/grafana/render_layout.py  # -> docs/dashboard_layout.png
"""

import argparse
import json
import re
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
GRID_COLUMNS = 24  # Grafana's grid width
ROW_HEIGHT = 0.55  # one grid row (30 px in Grafana) relative to one column (~1/24 of the width)
LINE_HEIGHT = 0.32  # one caption line, in the same units
COLORS = {"stat": "#dbeafe", "timeseries": "#dcfce7", "piechart": "#fef3c7"}
GPU_ONLY_COLOR = "#e5e7eb"
METRIC = re.compile(r"\b(?:tap|process)_[a-z_]+")
SERIES_SUFFIX = re.compile(r"_(?:bucket|sum|count)$")


def metric_names(panel: dict) -> list[str]:
    """Metrics a panel queries, histogram series folded into their family name."""
    names = []
    for target in panel["targets"]:
        for name in METRIC.findall(target["expr"]):
            family = SERIES_SUFFIX.sub("", name)
            if family not in names:
                names.append(family)
    return names


def render(dashboard: dict, out: Path) -> None:
    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    fig, ax = plt.subplots(figsize=(16, 16 * rows * ROW_HEIGHT / GRID_COLUMNS + 0.8), dpi=110)
    ax.set_xlim(0, GRID_COLUMNS)
    ax.set_ylim(rows * ROW_HEIGHT, 0)  # Grafana's y grows downwards
    ax.axis("off")
    for panel in panels:
        g = panel["gridPos"]
        x, y, w, h = g["x"], g["y"] * ROW_HEIGHT, g["w"], g["h"] * ROW_HEIGHT
        gpu_only = panel.get("description", "").startswith("GPU only")
        color = GPU_ONLY_COLOR if gpu_only else COLORS.get(panel["type"], "#f3f4f6")
        ax.add_patch(
            FancyBboxPatch(
                (x + 0.08, y + 0.06),
                w - 0.16,
                h - 0.12,
                boxstyle="round,pad=0,rounding_size=0.15",
                facecolor=color,
                edgecolor="#6b7280",
                linewidth=1,
            )
        )
        ax.text(x + 0.3, y + 0.35, panel["title"], fontsize=11, fontweight="bold", va="top")
        width_chars = max(12, int(w * 5.2))
        legends = [t["legendFormat"] for t in panel["targets"] if t.get("legendFormat")]
        lines = [panel["type"] + (" \u00b7 GPU only" if gpu_only else "")]
        lines += textwrap.wrap(", ".join(metric_names(panel)), width_chars, break_long_words=False)
        if legends:
            lines += textwrap.wrap("series: " + ", ".join(legends), width_chars, break_long_words=False)
        max_lines = int((h - 0.95) / LINE_HEIGHT)
        ax.text(
            x + 0.3, y + 0.95, "\n".join(lines[:max_lines]), fontsize=8.5, color="#374151", va="top", linespacing=1.4
        )
    ax.set_title(
        f"Grafana dashboard \u201c{dashboard['title']}\u201d (uid {dashboard['uid']}): panel layout",
        fontsize=13,
        loc="left",
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dashboard", nargs="?", type=Path, default=ROOT / "docker/grafana/dashboards/tap-restore.json")
    parser.add_argument("-o", "--out", type=Path, default=ROOT / "docs/dashboard_layout.png")
    args = parser.parse_args()
    render(json.loads(args.dashboard.read_text()), args.out)
    print(args.out)


if __name__ == "__main__":
    main()
