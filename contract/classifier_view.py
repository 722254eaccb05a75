"""How auto mode shows a whole photo to the classifier: one definition for training and serving.

The classifier sees weather at the scale it was trained on. Bundles up to tap-default-20261201
squash every photo to a 128-px square, where a 1000-px photo's rain streaks are sub-pixel; later
ones keep the aspect ratio and shrink the longer side to `size` (never enlarging). `patches`
goes one step further: the photo (its longer side shrunk to `max_side`, the size of the training
photos) is cut into squares of `size` px on an even grid, the squares the classifier was trained
on, and their class log-probabilities are averaged. Thin real streaks that a whole-photo view
shrinks away stay visible, and one patch's mistake is outvoted by the others.
"""

from dataclasses import dataclass

import numpy as np

SQUARE = "square"
LONGER_SIDE = "longer_side"
PATCHES = "patches"
VIEW_MODES = (SQUARE, LONGER_SIDE, PATCHES)


@dataclass(frozen=True)
class ClassifierView:
    mode: str = LONGER_SIDE
    size: int = 768
    max_side: int = 1024  # patches only: photos larger than this are shrunk to it first
    temperature: float = 1.0  # calibration: the pooled log-probabilities are divided by it

    def __post_init__(self) -> None:
        if self.mode not in VIEW_MODES:
            raise ValueError(f"unknown classifier view {self.mode!r}; known: {', '.join(VIEW_MODES)}")
        if self.size < 16:
            raise ValueError(f"classifier view size must be >= 16, got {self.size}")
        if not self.temperature > 0:
            raise ValueError(f"classifier temperature must be > 0, got {self.temperature}")
        if self.mode == PATCHES and self.max_side < self.size:
            raise ValueError(f"classifier max_side ({self.max_side}) must be >= the patch size ({self.size})")

    def shape(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) the photo is resized to before the classifier sees it (or its patches)."""
        if self.mode == SQUARE:
            return self.size, self.size
        limit = self.max_side if self.mode == PATCHES else self.size
        scale = min(1.0, limit / max(height, width))
        return max(1, round(height * scale)), max(1, round(width * scale))

    def boxes(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """(top, left, height, width) of each view cut from the resized photo of this size.

        One box covering it all, except for `patches`: squares of `size` (the shorter side when
        that is smaller), as few as cover the photo, spread evenly from edge to edge.
        """
        if self.mode != PATCHES:
            return [(0, 0, height, width)]
        side = min(self.size, height, width)
        tops = np.linspace(0, height - side, -(-height // side)).round().astype(int)
        lefts = np.linspace(0, width - side, -(-width // side)).round().astype(int)
        return [(int(t), int(left), side, side) for t in tops for left in lefts]

    @staticmethod
    def mean_log_probs(logits: np.ndarray) -> np.ndarray:
        """(C,) the mean over a photo's views (N, C) of their class log-probabilities."""
        z = np.asarray(logits, np.float64)
        z = z - z.max(axis=1, keepdims=True)
        return (z - np.log(np.exp(z).sum(axis=1, keepdims=True))).mean(axis=0)

    def pool(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities of a photo from its views' logits (N, C): the
        renormalised geometric mean of the views' probabilities (a softmax for one view),
        sharpened or softened by the calibration temperature."""
        scaled = self.mean_log_probs(logits) / self.temperature
        p = np.exp(scaled - scaled.max())
        return p / p.sum()

    @classmethod
    def from_manifest(cls, manifest: dict) -> "ClassifierView":
        """Bundles written before `classifier_view` existed squash photos to a square."""
        return cls(
            manifest.get("classifier_view", SQUARE),
            int(manifest.get("classifier_input_size", 128)),
            int(manifest.get("classifier_max_side", cls.max_side)),
            float(manifest.get("classifier_temperature", 1.0)),
        )
