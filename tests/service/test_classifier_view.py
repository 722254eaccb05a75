"""The classifier view: what auto mode shows the classifier, for new bundles and old ones."""

import json
import shutil

import numpy as np
import pytest

from service.classifier_view import LONGER_SIDE, SQUARE, ClassifierView
from service.engine import Engine
from service.settings import Settings


def test_longer_side_keeps_the_aspect_ratio_and_never_enlarges():
    view = ClassifierView(LONGER_SIDE, 512)
    assert view.shape(1280, 2560) == (256, 512)
    assert view.shape(600, 900) == (341, 512)
    assert view.shape(321, 481) == (321, 481)  # smaller photos are shown as they are
    assert view.shape(3, 5000) == (1, 512)


def test_square_is_the_old_squash():
    assert ClassifierView(SQUARE, 128).shape(600, 900) == (128, 128)


def test_bad_views_are_refused():
    with pytest.raises(ValueError, match="unknown classifier view"):
        ClassifierView("crop", 128)
    with pytest.raises(ValueError, match=">= 16"):
        ClassifierView(LONGER_SIDE, 8)


def test_manifest_without_a_view_means_the_old_square():
    assert ClassifierView.from_manifest({}) == ClassifierView(SQUARE, 128)
    manifest = {"classifier_view": LONGER_SIDE, "classifier_input_size": 384}
    assert ClassifierView.from_manifest(manifest) == ClassifierView(LONGER_SIDE, 384)


class ShapeSpy:
    """Stands in for the classifier session and records the input shapes it is given."""

    def __init__(self, session) -> None:
        self.session, self.shapes = session, []

    def run(self, names, feeds):
        self.shapes.append(feeds["image"].shape)
        return self.session.run(names, feeds)


def engine_for(bundle, changes: dict, drop: tuple[str, ...] = ()) -> Engine:
    """An engine on `bundle` after its manifest gets `changes` and loses the `drop` keys."""
    manifest_path = bundle / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) | changes
    manifest_path.write_text(json.dumps({k: v for k, v in manifest.items() if k not in drop}))
    return Engine(Settings(bundle_path=bundle, device="cpu", intra_op_threads=1, tile_size=64, tile_overlap=16))


@pytest.mark.parametrize(
    ("changes", "drop", "expected"),
    [
        ({"classifier_view": LONGER_SIDE, "classifier_input_size": 48}, (), (1, 3, 30, 48)),
        ({"classifier_view": SQUARE, "classifier_input_size": 32}, (), (1, 3, 32, 32)),
        # a bundle from before classifier_view existed still squashes
        ({"classifier_input_size": 128}, ("classifier_view",), (1, 3, 128, 128)),
    ],
)
def test_engine_shows_the_classifier_the_bundles_view(tiny_bundle, tmp_path, changes, drop, expected):
    bundle = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    engine = engine_for(bundle, changes, drop)
    spy = ShapeSpy(engine.classifier)
    engine.classifier = spy
    probabilities = engine.classify(np.random.default_rng(0).random((60, 96, 3), dtype=np.float32))
    assert spy.shapes == [expected]
    assert sum(probabilities.values()) == pytest.approx(1.0)
