"""How auto mode shows a whole photo to the classifier: one definition for training and serving.

The classifier sees weather at the scale it was trained on. Bundles up to tap-default-20261201
squash every photo to a 128-px square, where a 1000-px photo's rain streaks are sub-pixel; newer
ones keep the aspect ratio and shrink the longer side to `size` (never enlarging), so streaks,
flakes and drops keep roughly the size they have in the training views.
"""

from dataclasses import dataclass

SQUARE = "square"
LONGER_SIDE = "longer_side"
VIEW_MODES = (SQUARE, LONGER_SIDE)


@dataclass(frozen=True)
class ClassifierView:
    mode: str = LONGER_SIDE
    size: int = 768

    def __post_init__(self) -> None:
        if self.mode not in VIEW_MODES:
            raise ValueError(f"unknown classifier view {self.mode!r}; known: {', '.join(VIEW_MODES)}")
        if self.size < 16:
            raise ValueError(f"classifier view size must be >= 16, got {self.size}")

    def shape(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) the classifier sees for a photo of this size."""
        if self.mode == SQUARE:
            return self.size, self.size
        scale = min(1.0, self.size / max(height, width))
        return max(1, round(height * scale)), max(1, round(width * scale))

    @classmethod
    def from_manifest(cls, manifest: dict) -> "ClassifierView":
        """Bundles written before `classifier_view` existed squash photos to a square."""
        return cls(manifest.get("classifier_view", SQUARE), int(manifest.get("classifier_input_size", 128)))
