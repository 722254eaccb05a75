"""Shared fixtures: tiny random models and tiny exported bundles, built by the tests themselves."""

import os
from pathlib import Path

import pytest

from training.data_root import shared_data_dir

# Tiny tensors gain nothing from more threads, and on a shared 2-core machine extra OpenMP
# threads spin against other jobs (measured 10-50x slower). Set before torch is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")

SHARED_DATA = shared_data_dir()


def make_tiny_model(seed: int = 0, tasks: tuple[str, ...] | None = None):
    """The tiny variant with randomized residual scales (training.random_model), so every part has an effect."""
    from training.random_model import random_model

    return random_model("tiny", seed, tasks)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny exported bundle (fp32 only), shared read-only by the session; copy it to modify."""
    pytest.importorskip("torch")
    from training.export import export_bundle

    out = tmp_path_factory.mktemp("bundle") / "tiny"
    return export_bundle(make_tiny_model(), out, model_version="tiny-test")


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the tiny bundle for tests that modify or damage it."""
    import shutil

    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_int8_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny bundle with both INT8 backbones, calibrated and measured on drawn scenes."""
    import shutil

    from training.quantize import default_job, drawn_data, quantize_bundle

    root = tmp_path_factory.mktemp("int8")
    bundle = Path(shutil.copytree(tiny_bundle, root / "bundle"))
    job = default_job(drawn_data(root / "data"), folders=("clean",), crops_per_folder=4, crop=32)
    quantize_bundle(bundle, job)
    return bundle
