"""Synthetic weather: degrade a clean photo into the (lq, gt) pairs the model learns from.

The modules here are today's generators (data engine v2): rain.py (rendered streak layers),
raindrop.py, haze.py (true depth where it exists), snow.py, and flat.py (flat skies painted into
clean photos). `generators(2, bank)` returns them; `v1/` keeps the first generators bit-identical
as the ablation baseline (`GENERATORS`, `data.synth_version=1`). Shared drawing helpers live in
common.py, the assets the generators read (streak layers, depth maps) in assets.py.
`apply(task, clean, rng, severity, generators)` degrades one photo (`apply_pair`
also returns its training target); `preview_sheet` draws them side
by side.
"""

from training.synth.registry import GENERATORS, TASKS, VERSIONS, WeatherFn, apply, apply_pair, generators
from training.synth.sheet import preview_sheet

__all__ = ["GENERATORS", "TASKS", "VERSIONS", "WeatherFn", "apply", "apply_pair", "generators", "preview_sheet"]
