"""The weather registry: task name -> pure generator `(image, rng, severity) -> image`.

`GENERATORS` is data engine v1 (`synth/v1/`), kept bit-identical as the ablation baseline;
`generators(2, bank)` is v2 (issue 12; the modules of `synth/`), whose rain composites the rendered
streak layers of `bank`.
"""

from collections.abc import Callable, Mapping

import numpy as np

from training.synth import haze, rain, raindrop, snow
from training.synth.assets import StreakBank
from training.synth.v1 import haze as haze_v1
from training.synth.v1 import rain as rain_v1
from training.synth.v1 import raindrop as raindrop_v1
from training.synth.v1 import snow as snow_v1

WeatherFn = Callable[[np.ndarray, np.random.Generator, float], np.ndarray]

GENERATORS: dict[str, WeatherFn] = {
    "rain": rain_v1.rain,
    "raindrop": raindrop_v1.raindrop,
    "haze": haze_v1.haze,
    "snow": snow_v1.snow,
}
TASKS: tuple[str, ...] = tuple(GENERATORS)
VERSIONS = (1, 2)


def generators(version: int, streaks: StreakBank | None = None, haze_floor: float = 0.0) -> dict[str, WeatherFn]:
    """The generators of data engine `version`; v2 rain is procedural only without `streaks`, and v2
    haze keeps in its target the haze under a transmission of `haze_floor` (0: none kept)."""
    if version == 1:
        return dict(GENERATORS)
    if version == 2:
        return {
            "rain": rain.StreakRain(streaks),
            "raindrop": raindrop.raindrop,
            "haze": haze.FlooredHaze(haze_floor) if haze_floor > 0 else haze.haze,
            "snow": snow.snow,
        }
    raise ValueError(f"unknown synthetic data version {version}; known: {', '.join(map(str, VERSIONS))}")


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
    image = checked(task, clean, severity, generators)
    return generators[task](image, rng, float(severity))


def apply_pair(
    task: str,
    clean: np.ndarray,
    rng: np.random.Generator,
    severity: float,
    generators: Mapping[str, WeatherFn] = GENERATORS,
) -> tuple[np.ndarray, np.ndarray]:
    """(degraded, target) for training: `apply`'s image, and the generator's own target where it has
    one (`pair`, e.g. haze that keeps what nothing can see through), else the clean image itself."""
    image = checked(task, clean, severity, generators)
    pair = getattr(generators[task], "pair", None)
    if pair is None:
        return generators[task](image, rng, float(severity)), image
    return pair(image, rng, float(severity))


def checked(task: str, clean: np.ndarray, severity: float, generators: Mapping[str, WeatherFn]) -> np.ndarray:
    """`clean` as float32 once task, severity and shape are known to be valid."""
    if task not in generators:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(generators)}")
    if not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must be in [0, 1], got {severity}")
    if clean.ndim != 3 or clean.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {clean.shape}")
    return np.asarray(clean, dtype=np.float32)
