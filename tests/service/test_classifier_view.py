"""The classifier view: what auto mode shows the classifier, for new bundles and old ones."""

import dataclasses
import json
import shutil

import numpy as np
import pytest

from contract.classifier_view import LONGER_SIDE, PATCHES, SQUARE, ClassifierView
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


def test_patches_cover_the_photo_evenly_with_squares_of_the_view_size():
    view = ClassifierView(PATCHES, 256, max_side=1024)
    assert view.shape(3000, 4000) == (768, 1024)  # larger photos are shrunk to the training photos' size
    assert view.shape(321, 481) == (321, 481)
    boxes = view.boxes(600, 900)
    assert len(boxes) == 3 * 4  # as few as cover 600 x 900
    assert {(h, w) for _, _, h, w in boxes} == {(256, 256)}
    assert sorted({t for t, _, _, _ in boxes}) == [0, 172, 344]  # first at the top edge, last at the bottom
    assert sorted({left for _, left, _, _ in boxes}) == [0, 215, 429, 644]
    covered = np.zeros((600, 900), bool)
    for t, left, h, w in boxes:
        covered[t : t + h, left : left + w] = True
    assert covered.all()


def test_patches_of_a_thin_photo_are_squares_of_its_shorter_side():
    boxes = ClassifierView(PATCHES, 256).boxes(100, 300)
    assert boxes == [(0, 0, 100, 100), (0, 100, 100, 100), (0, 200, 100, 100)]


def test_whole_photo_views_are_one_box():
    assert ClassifierView(LONGER_SIDE, 512).boxes(341, 512) == [(0, 0, 341, 512)]


def test_pool_is_a_softmax_for_one_view_and_a_geometric_mean_for_several():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    softmax = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert np.allclose(ClassifierView().pool(logits[:1]), softmax[0])
    geometric = np.sqrt(softmax[0] * softmax[1])
    assert np.allclose(ClassifierView().pool(logits), geometric / geometric.sum())
    # a patch that is sure of nothing moves the photo less than one that is sure
    assert ClassifierView().pool(np.array([[9.0, 0, 0], [0, 0.5, 0]])).argmax() == 0


def test_bad_views_are_refused():
    with pytest.raises(ValueError, match="unknown classifier view"):
        ClassifierView("crop", 128)
    with pytest.raises(ValueError, match=">= 16"):
        ClassifierView(LONGER_SIDE, 8)
    with pytest.raises(ValueError, match="max_side"):
        ClassifierView(PATCHES, 256, max_side=200)


def test_manifest_without_a_view_means_the_old_square():
    assert ClassifierView.from_manifest({}) == ClassifierView(SQUARE, 128)
    manifest = {"classifier_view": LONGER_SIDE, "classifier_input_size": 384}
    assert ClassifierView.from_manifest(manifest) == ClassifierView(LONGER_SIDE, 384)
    manifest = {"classifier_view": PATCHES, "classifier_input_size": 256, "classifier_max_side": 512}
    assert ClassifierView.from_manifest(manifest) == ClassifierView(PATCHES, 256, 512)


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
        # 60 x 96 shrunk to 40 x 64, then 2 x 3 patches of 24 px in one batch
        ({"classifier_view": PATCHES, "classifier_input_size": 24, "classifier_max_side": 64}, (), (6, 3, 24, 24)),
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


def test_engine_and_the_torch_model_see_a_photo_alike_in_patches(tiny_bundle, tmp_path):
    """Evaluation (torch) and the service (onnxruntime) must give auto mode the same probabilities."""
    import torch

    from tests.conftest import make_tiny_model
    from training.datasets import to_tensor

    bundle = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    engine = engine_for(bundle, {"classifier_view": PATCHES, "classifier_input_size": 32, "classifier_max_side": 128})
    model = make_tiny_model()  # seeded: the weights tiny_bundle was exported from
    model.cfg = dataclasses.replace(model.cfg, classifier_view=PATCHES, classifier_size=32, classifier_max_side=128)
    # 8-bit values (the engine quantizes) and no resize: both cut the same 3 x 4 patches
    photo = (np.random.default_rng(1).integers(0, 256, (70, 100, 3)) / 255).astype(np.float32)
    served = engine.classify(photo)
    evaluated = model.eval().photo_probabilities(to_tensor(photo)[None])
    assert np.allclose(np.log([served[c] for c in model.classes]), np.log(evaluated), atol=1e-3)
    whole = torch.softmax(model.classify(to_tensor(photo)[None]).detach().double(), 1)[0].numpy()
    assert not np.allclose(np.log(evaluated), np.log(whole), atol=1e-3)  # patches were used, not the whole photo
