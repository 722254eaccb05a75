"""The weather registry: task name -> pure generator `(image, rng, severity) -> image`."""

from collections.abc import Callable, Mapping

import numpy as np

from training.synth.haze import haze
from training.synth.rain import rain
from training.synth.raindrop import raindrop
from training.synth.snow import snow

WeatherFn = Callable[[np.ndarray, np.random.Generator, float], np.ndarray]

GENERATORS: dict[str, WeatherFn] = {
    "rain": rain,
    "raindrop": raindrop,
    "haze": haze,
    "snow": snow,
}
TASKS: tuple[str, ...] = tuple(GENERATORS)


def apply(
    task: str,
    clean: np.ndarray,
    rng: np.random.Generator,
    severity: float,
    generators: Mapping[str, WeatherFn] = GENERATORS,
) -> np.ndarray:
    """Degrade an (H, W, 3) float image in [0, 1] with `task` weather; returns a new float32 array.

    Severity 0 is light, 1 heavy. The same rng state always gives the same output. `generators`
    extends the registry for one caller (add-task with a user's generator) without mutating it.
    """
    if task not in generators:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(generators)}")
    if not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must be in [0, 1], got {severity}")
    if clean.ndim != 3 or clean.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {clean.shape}")
    image = np.asarray(clean, dtype=np.float32)
    return generators[task](image, rng, float(severity))
