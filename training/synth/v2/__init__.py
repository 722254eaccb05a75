"""Data engine v2 generators: weather calibrated on real photos (issue 12); v1 stays the baseline."""

from training.synth.v2 import haze, rain, raindrop, snow

__all__ = ["haze", "rain", "raindrop", "snow"]
