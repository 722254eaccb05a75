"""Synthetic weather: degrade a clean photo into the (lq, gt) pairs the model learns from.

`apply(task, clean, rng, severity)` dispatches to one pure generator per weather
(rain.py, raindrop.py, haze.py, snow.py); `preview_sheet` draws them side by side.
"""

from training.synth.registry import GENERATORS, TASKS, VERSIONS, WeatherFn, apply, generators
from training.synth.sheet import preview_sheet

__all__ = ["GENERATORS", "TASKS", "VERSIONS", "WeatherFn", "apply", "generators", "preview_sheet"]
