"""Shared fixtures: tiny random models and tiny exported bundles, built by the tests themselves."""

import os
from pathlib import Path

import pytest

# Tiny tensors gain nothing from more threads, and on a shared 2-core machine extra OpenMP
# threads spin against other jobs (measured 10-50x slower). Set before torch is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def make_tiny_model(seed: int = 0, tasks: tuple[str, ...] | None = None):
    """A tiny TAPNet whose zero-initialized scales are randomized, so every part has an effect."""
    import torch

    from model.net import NET_VARIANTS, TAPNet

    torch.manual_seed(seed)
    cfg = NET_VARIANTS["tiny"]
    if tasks is not None:
        from dataclasses import replace

        cfg = replace(cfg, tasks=tasks)
    model = TAPNet(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("beta", "gamma", "scale")):
                p.normal_(0.0, 0.2)
    return model.eval()


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
