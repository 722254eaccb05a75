"""The do-no-harm section of `tap-train evaluate`: clean in, clean out and the blotch measure."""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contract.flat_guard import FlatGuard
from model.checkpoint import save_weights
from tests.conftest import make_tiny_model
from tests.training.test_metrics import sky_over_scene
from training.cli import main
from training.datasets import to_tensor
from training.metrics import fine_structure_change, flat_structure, psnr, rgb_to_y
from training.no_harm import AUTO, WORST_PREVIEWS, save_preview
from training.real_photos import restore_with
from training.weather_photos import is_dev

H, W = 60, 80


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """clear/: 12 sky photos, some in the dev split by name; haze/: 2 hazy ones; rain/: 3 bright-streaked."""
    root = tmp_path_factory.mktemp("no-harm")
    clear, haze, rain = root / "clear", root / "haze", root / "rain"
    for folder in (clear, haze, rain):
        folder.mkdir()
    for k in range(12):
        Image.fromarray(sky_over_scene(H, W, seed=k)).save(clear / f"sky_{k}.png")
    for k in range(2):
        hazy = np.clip(0.5 * sky_over_scene(H, W, seed=20 + k) + 0.5 * 220, 0, 255).astype(np.uint8)
        Image.fromarray(hazy).save(haze / f"fog_{k}.png")
    for k in range(3):
        streaked = sky_over_scene(H, W, seed=30 + k)
        streaked[:, ::7] = 250
        Image.fromarray(streaked).save(rain / f"rain_{k}.png")
    return {"clear": clear, "haze": haze, "rain": rain}


@pytest.fixture(scope="module")
def evaluated(folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, Path]:
    tmp = tmp_path_factory.mktemp("eval")
    ckpt = tmp / "model.safetensors"
    save_weights(make_tiny_model(), ckpt)
    out = tmp / "report"
    argv = ["evaluate", str(ckpt), "--out", str(out), "--synthetic", "0", "--json", str(tmp / "results.json")]
    argv += ["--no-harm-clear", str(folders["clear"]), "--no-harm-haze", str(folders["haze"])]
    argv += ["--no-harm-rain", str(folders["rain"])]
    assert main(argv) == 0
    return json.loads((tmp / "results.json").read_text()), out, ckpt


def test_every_prompt_and_auto_on_the_dev_split(evaluated, folders) -> None:
    results, out, _ = evaluated
    clear = results["no_harm"]["clear"]["prompts"]
    dev = sorted(p.name for p in folders["clear"].iterdir() if is_dev(p.name))
    assert 0 < len(dev) < 12  # the fixture's names put some photos in each split
    assert list(clear) == ["rain", "raindrop", "haze", "snow", AUTO]
    for d in clear.values():
        assert sorted(d["photos"]) == dev and d["n"] == len(dev)
        assert d["psnr_rgb"]["worst"] == min(p["psnr_rgb"] for p in d["photos"].values())
        assert d["blotch"]["worst"] == max(p["blotch"] for p in d["photos"].values())
    assert sum(clear[AUTO]["decisions"].values()) == len(dev)
    assert list(results["no_harm"]["haze"]["prompts"]) == ["haze"]
    assert results["no_harm"]["haze"]["prompts"]["haze"]["n"] == 2
    rain = results["no_harm"]["rain"]["prompts"]["rain"]
    assert rain["n"] == 3 and rain["brightness"]["worst"] == min(p["brightness"] for p in rain["photos"].values())
    assert rain["fine_change"]["median"] == np.median([p["fine_change"] for p in rain["photos"].values()])
    report = (out / "report.md").read_text()
    assert "## Do no harm" in report and "| clear | rain |" in report and "| haze | haze | 2 |" in report
    assert "| rain | rain | 3 |" in report


def test_numbers_match_direct_computation(evaluated, folders) -> None:
    from model.checkpoint import load_model

    results, _, ckpt = evaluated
    model = load_model(ckpt)[0].eval()
    name = next(p.name for p in sorted(folders["clear"].iterdir()) if is_dev(p.name))
    lq = np.asarray(Image.open(folders["clear"] / name).convert("RGB"))
    pred = restore_with(model, to_tensor(lq)[None], {"snow": 1.0}, FlatGuard())  # the CLI guards, as the service
    assert results["settings"]["flat_guard"] == dataclasses.asdict(FlatGuard())
    got = results["no_harm"]["clear"]["prompts"]["snow"]["photos"][name]
    assert got["psnr_rgb"] == pytest.approx(psnr(pred, lq))
    assert got["blotch"] == pytest.approx(flat_structure(lq, pred).score)
    assert got["brightness"] == pytest.approx(float(rgb_to_y(pred).mean() - rgb_to_y(lq).mean()))
    assert got["fine_change"] == pytest.approx(fine_structure_change(lq, pred)) and got["fine_change"] > 0
    assert math.isfinite(got["psnr_rgb"]) and got["blotch"] > 1.0  # an untrained model does change the photo


def test_previews_of_the_worst_photos_only(evaluated) -> None:
    results, out, _ = evaluated
    for prompt, d in results["no_harm"]["clear"]["prompts"].items():
        saved = {p.stem for p in (out / "no_harm" / "clear" / prompt).iterdir()}
        assert Path(d["worst_psnr_photo"]).stem in saved and Path(d["worst_blotch_photo"]).stem in saved
        assert len(saved) <= min(d["n"], 2 * WORST_PREVIEWS)
        preview = Image.open(next((out / "no_harm" / "clear" / prompt).iterdir()))
        assert preview.size == (2 * W, H)  # input | output


def test_preview_outlines_a_block_that_rounded_to_one_pixel(tmp_path: Path) -> None:
    """The last row of blocks can be one working pixel tall, which rounds to an empty box."""
    lq = np.full((40, 60, 3), 128, np.uint8)
    save_preview(tmp_path / "p.png", lq, lq, (39, 10, 39, 30))
    assert Image.open(tmp_path / "p.png").size == (120, 40)
