"""Contact sheet of the generators: one row per photo, clean then each weather light and heavy."""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from training.synth.registry import TASKS, apply

SEVERITIES = (0.2, 0.9)
PAD = 4  # pixels between tiles
HEADER = 18  # pixels of label row above the tiles


def sheet_columns() -> list[tuple[str, float | None]]:
    """(task, severity) per column; the first column is the clean photo."""
    return [("clean", None)] + [(task, s) for task in TASKS for s in SEVERITIES]


def preview_sheet(clean_images: list[np.ndarray], out_path: Path, seed: int = 0) -> None:
    """Write a labelled PNG; every tile gets its own seeded rng, so a sheet is reproducible.

    Tiles are placed top-left in cells as large as the largest image.
    """
    columns = sheet_columns()
    cell_h = max(img.shape[0] for img in clean_images)
    cell_w = max(img.shape[1] for img in clean_images)
    width = len(columns) * (cell_w + PAD) + PAD
    height = HEADER + len(clean_images) * (cell_h + PAD) + PAD
    sheet = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for col, (task, severity) in enumerate(columns):
        label = task if severity is None else f"{task} {severity:.1f}"
        draw.text((PAD + col * (cell_w + PAD), 3), label, fill=(235, 235, 235), font=font)
    for row, clean in enumerate(clean_images):
        for col, (task, severity) in enumerate(columns):
            if severity is None:
                tile = clean
            else:
                rng = np.random.default_rng([seed, row, col])
                tile = apply(task, clean, rng, severity)
            pixels = Image.fromarray(np.round(np.clip(tile, 0, 1) * 255).astype(np.uint8))
            sheet.paste(pixels, (PAD + col * (cell_w + PAD), HEADER + PAD + row * (cell_h + PAD)))
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_path, optimize=True)
