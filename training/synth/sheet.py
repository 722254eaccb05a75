"""Contact sheet of the generators: one row per photo, clean then each weather light and heavy.

Optional rows of real weather photos below (one row per weather, for local comparison only:
the shared real photos may not be published).
"""

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from training.synth.registry import GENERATORS, TASKS, WeatherFn, apply

SEVERITIES = (0.2, 0.9)
PAD = 4  # pixels between tiles
HEADER = 18  # pixels of label row above the tiles


def sheet_columns() -> list[tuple[str, float | None]]:
    """(task, severity) per column; the first column is the clean photo."""
    return [("clean", None)] + [(task, s) for task in TASKS for s in SEVERITIES]


def preview_sheet(
    clean_images: list[np.ndarray],
    out_path: Path,
    seed: int = 0,
    generators: Mapping[str, WeatherFn] = GENERATORS,
    real: Mapping[str, list[np.ndarray]] | None = None,
) -> None:
    """Write a labelled PNG; every tile gets its own seeded rng, so a sheet is reproducible.

    Tiles are placed top-left in cells as large as the largest image. `real` maps a weather
    to photos shown in a row of their own under the synthetic rows, labelled "real <weather>".
    """
    columns = sheet_columns()
    real_rows = [(task, photos[: len(columns)]) for task, photos in (real or {}).items() if photos]
    everything = clean_images + [p for _, photos in real_rows for p in photos]
    cell_h = max(img.shape[0] for img in everything)
    cell_w = max(img.shape[1] for img in everything)
    width = len(columns) * (cell_w + PAD) + PAD
    rows = len(clean_images) + len(real_rows)
    height = HEADER + rows * (cell_h + PAD) + PAD
    sheet = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for col, (task, severity) in enumerate(columns):
        label = task if severity is None else f"{task} {severity:.1f}"
        draw.text((PAD + col * (cell_w + PAD), 3), label, fill=(235, 235, 235), font=font)

    def paste(tile: np.ndarray, row: int, col: int) -> tuple[int, int]:
        pixels = Image.fromarray(np.round(np.clip(tile, 0, 1) * 255).astype(np.uint8))
        corner = (PAD + col * (cell_w + PAD), HEADER + PAD + row * (cell_h + PAD))
        sheet.paste(pixels, corner)
        return corner

    for row, clean in enumerate(clean_images):
        for col, (task, severity) in enumerate(columns):
            if severity is None:
                tile = clean
            else:
                rng = np.random.default_rng([seed, row, col])
                tile = apply(task, clean, rng, severity, generators)
            paste(tile, row, col)
    for offset, (task, photos) in enumerate(real_rows):
        for col, photo in enumerate(photos):
            x, y = paste(photo, len(clean_images) + offset, col)
            draw.text((x + 3, y + 3), f"real {task}", fill=(255, 255, 0), font=font)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_path, optimize=True)
