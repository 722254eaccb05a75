"""Regenerate docs/before_after.png: drawn scenes under each synthetic weather, restored by a
bundle with the weather named (and what auto mode would pick), through the service's pipeline.

The shared datasets may not be published, so the scenes are procedural (training/scenes.py).
Usage: python docs/make_figures.py [--bundle artifacts/default] [--out docs/before_after.png]
"""

import argparse
import asyncio
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from service.pipeline import local_pipeline
from service.settings import Settings
from training import synth
from training.scenes import draw_city_scene, to_uint8

WEATHERS = (("rain", 0.6), ("raindrop", 0.6), ("haze", 0.6), ("snow", 0.6))
LABEL_H = 22


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buf, format="PNG")
    return buf.getvalue()


def labelled(image: Image.Image, text: str) -> Image.Image:
    tile = Image.new("RGB", (image.width, image.height + LABEL_H), (24, 24, 24))
    tile.paste(image, (0, LABEL_H))
    ImageDraw.Draw(tile).text((6, 5), text, fill=(235, 235, 235))
    return tile


async def render(bundle: Path, out: Path, size: tuple[int, int]) -> None:
    rows = []
    async with local_pipeline(Settings(bundle_path=bundle, request_timeout_s=1e9)) as pipeline:
        for i, (weather, severity) in enumerate(WEATHERS):
            clean = draw_city_scene(*size, seed=10 + i)
            degraded = synth.apply(weather, clean, np.random.default_rng(i), severity)
            result = await pipeline.restore(png_bytes(degraded), weather)
            auto = (await pipeline.restore(png_bytes(degraded), "auto")).decision
            restored = Image.open(io.BytesIO(result.data)).convert("RGB")
            rows.append(
                [
                    labelled(Image.fromarray(to_uint8(degraded)), f"input: synthetic {weather}"),
                    labelled(restored, f"degradation={weather}  (auto would pick {auto.label}, {auto.confidence:.0%})"),
                    labelled(Image.fromarray(to_uint8(clean)), "clean scene"),
                ]
            )
    w, h = rows[0][0].size
    sheet = Image.new("RGB", (3 * w + 8, len(rows) * (h + 4)), (24, 24, 24))
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            sheet.paste(tile, (c * (w + 4), r * (h + 4)))
    sheet.save(out, optimize=True)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, default=Path("artifacts/default"))
    parser.add_argument("--out", type=Path, default=Path("docs/before_after.png"))
    args = parser.parse_args()
    asyncio.run(render(args.bundle, args.out, (240, 360)))


if __name__ == "__main__":
    main()
