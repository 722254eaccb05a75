"""run_evaluation on tiny data: the numbers match direct computation, and the files say what they should."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model.checkpoint import save_weights
from tests.conftest import make_tiny_model
from training import evaluate
from training.cli import main
from training.datasets import read_rgb, to_tensor
from training.evaluate import run_evaluation
from training.metrics import image_metrics, quantize
from training.synth import apply

H, W = 48, 64
CLEAN_PHOTOS = 17  # with training's holdout_every=11, photos 5 and 16 are held out
PER_TASK = 2


def photo(seed: int) -> np.ndarray:
    """A tiny stand-in photo: colour gradients plus detail (uint8)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:H, 0:W] / np.array([H, W])[:, None, None]
    base = np.stack([ys, xs, 1 - ys * xs], -1) * rng.uniform(0.4, 1.0, 3) + rng.normal(0, 0.05, (H, W, 3))
    return quantize(base)


def write_paired(root: Path, task: str, count: int, seed: int) -> Path:
    for sub in ("input", "target"):
        (root / sub).mkdir(parents=True)
    for k in range(count):
        gt = photo(seed + k)
        lq = quantize(apply(task, gt / 255.0, np.random.default_rng(k), 0.6))
        Image.fromarray(lq).save(root / "input" / f"{k}.png")
        Image.fromarray(gt).save(root / "target" / f"{k}.png")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    clean = root / "clean"
    clean.mkdir()
    for k in range(CLEAN_PHOTOS):
        Image.fromarray(photo(k)).save(clean / f"{k:02d}.png")
    return {
        "clean": clean,
        "rain": write_paired(root / "rainset", "rain", 3, seed=100),
        "haze": write_paired(root / "hazeset", "haze", 2, seed=200),
    }


@pytest.fixture(scope="module")
def model():
    return make_tiny_model()


@pytest.fixture(scope="module")
def evaluated(data: dict[str, Path], model, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("eval")
    results = run_evaluation(
        model,
        clean_dir=data["clean"],
        synthetic_per_task=PER_TASK,
        paired=[(0, data["rain"]), (2, data["haze"])],
        out_dir=out,
        seed=0,
    )
    return results, out


def direct_given_task(model, lq: np.ndarray, task: str) -> np.ndarray:
    with torch.no_grad():
        pred = model(to_tensor(lq)[None], model.prompt_for([task]))
    return quantize(pred[0].permute(1, 2, 0).numpy())


def test_writes_report_metrics_and_grid(evaluated: tuple[dict, Path]) -> None:
    results, out = evaluated
    assert json.loads((out / "metrics.json").read_text()) == results
    report = (out / "report.md").read_text()
    assert "| dataset | task | method | PSNR-Y | SSIM-Y | PSNR-RGB | N |" in report
    for task in ("rain", "raindrop", "haze", "snow"):
        for method in ("input", "given task", "auto"):
            assert f"| synthetic/{task} | {task} | {method} |" in report
    assert "| rainset | rain | given task |" in report and "| hazeset | haze | auto |" in report
    assert "| true \\ predicted | rain | raindrop | haze | snow | clean | N |" in report
    assert "Accuracy: weather images" in report


def test_dark_channel_prior_row_only_for_haze(evaluated: tuple[dict, Path]) -> None:
    datasets = evaluated[0]["datasets"]
    with_dcp = {name for name, d in datasets.items() if "dark channel prior" in d["methods"]}
    assert with_dcp == {"synthetic/haze", "hazeset"}


def test_paired_numbers_match_direct_computation(evaluated: tuple[dict, Path], data: dict[str, Path], model) -> None:
    methods = evaluated[0]["datasets"]["rainset"]["methods"]
    names = sorted((data["rain"] / "input").iterdir())
    pairs = [(read_rgb(p), read_rgb(data["rain"] / "target" / p.name)) for p in names]
    expected = {
        "input": [image_metrics(lq, gt) for lq, gt in pairs],
        "given task": [image_metrics(direct_given_task(model, lq, "rain"), gt) for lq, gt in pairs],
    }
    for method, per_image in expected.items():
        assert methods[method]["n"] == len(pairs)
        for key in ("psnr_y", "ssim_y", "psnr_rgb"):
            assert methods[method][key] == pytest.approx(np.mean([m[key] for m in per_image]), rel=1e-9)


def test_confusion_matrix_counts_every_image(evaluated: tuple[dict, Path]) -> None:
    results = evaluated[0]
    auto = results["auto"]
    assert auto["classes"] == ["rain", "raindrop", "haze", "snow", "clean"]
    assert [sum(row) for row in auto["confusion"]] == [PER_TASK] * 4 + [2]  # 2 held-out clean photos
    hits = sum(auto["confusion"][i][i] for i in range(5))
    assert auto["accuracy"] == pytest.approx(hits / (4 * PER_TASK + 2))
    assert auto["n_weather"] == 4 * PER_TASK and auto["n_clean"] == 2
    for name, n in (("rainset", 3), ("hazeset", 2)):
        assert sum(results["datasets"][name]["auto_predictions"].values()) == n


def test_grid_has_a_row_per_example_and_stays_small(evaluated: tuple[dict, Path]) -> None:
    path = evaluated[1] / "grid.png"
    rows = 4 * PER_TASK + 2 + 2  # synthetic tasks, then up to GRID_PER_DATASET per paired set
    with Image.open(path) as grid:
        assert grid.height == evaluate.HEADER + rows * (evaluate.LABEL + H + evaluate.PAD)
        assert grid.width == evaluate.PAD + 4 * (W + evaluate.PAD)
    assert path.stat().st_size < evaluate.GRID_MAX_BYTES


def test_grid_shrinks_to_the_byte_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluate, "GRID_MAX_BYTES", 40_000)
    noise = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)  # incompressible
    evaluate.save_grid([evaluate.GridRow(f"row {i}", [noise] * 4) for i in range(3)], tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size <= 40_000


def test_auto_mode_returns_clean_predictions_untouched(data: dict[str, Path], tmp_path: Path) -> None:
    model = make_tiny_model()
    model.classify = lambda image: torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0]]).expand(len(image), -1)
    results = run_evaluation(
        model, clean_dir=data["clean"], synthetic_per_task=0, paired=[(0, data["rain"])], out_dir=tmp_path
    )
    methods = results["datasets"]["rainset"]["methods"]
    assert methods["auto"] == methods["input"]
    assert results["datasets"]["rainset"]["auto_predictions"]["clean"] == 3


def test_without_synthetic_there_is_no_confusion_and_no_clean_dir(data: dict[str, Path], tmp_path: Path) -> None:
    results = run_evaluation(
        make_tiny_model(),
        clean_dir=tmp_path / "absent",
        synthetic_per_task=0,
        paired=[(2, data["haze"])],
        out_dir=tmp_path,
        size=32,
    )
    assert results["auto"] is None and list(results["datasets"]) == ["hazeset"]
    report = (tmp_path / "report.md").read_text()
    assert "no confusion matrix" in report and "longer side at most 32 px" in report


def test_synthetic_validation_is_deterministic_in_the_seed(data: dict[str, Path], model, tmp_path: Path) -> None:
    def inputs(seed: int, out: str) -> dict:
        results = run_evaluation(
            model, clean_dir=data["clean"], synthetic_per_task=1, paired=[], out_dir=tmp_path / out, seed=seed
        )
        return {name: d["methods"]["input"] for name, d in results["datasets"].items()}

    assert inputs(0, "a") == inputs(0, "b")
    assert inputs(0, "a") != inputs(1, "c")


def test_nothing_to_evaluate_is_an_error(data: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to evaluate"):
        run_evaluation(make_tiny_model(), clean_dir=data["clean"], synthetic_per_task=0, paired=[], out_dir=tmp_path)


def test_cli_evaluate_end_to_end(data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = tmp_path / "model.safetensors"
    save_weights(make_tiny_model(), ckpt)
    out = tmp_path / "report"
    argv = [
        "evaluate",
        str(ckpt),
        "--out",
        str(out),
        "--synthetic",
        "2",
        "--clean-dir",
        str(data["clean"]),
        "--paired",
        f"rain={data['rain']}",
        "--json",
        str(tmp_path / "results.json"),
    ]
    assert main(argv) == 0
    assert "# Evaluation report" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"report.md", "metrics.json", "grid.png"}
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["datasets"]["rainset"]["methods"]["given task"]["n"] == 3


def test_task_without_generator_is_evaluated_on_paired_data_only(data: dict[str, Path], tmp_path: Path) -> None:
    model = make_tiny_model(tasks=("rain", "fog"))  # fog: added with add-task, no synthetic generator
    results = run_evaluation(
        model, clean_dir=data["clean"], synthetic_per_task=1, paired=[(1, data["haze"])], out_dir=tmp_path
    )
    assert list(results["datasets"]) == ["synthetic/rain", "hazeset"]
    assert results["datasets"]["hazeset"]["task"] == "fog"
    assert [sum(row) for row in results["auto"]["confusion"]] == [1, 0, 2]


def test_compare_tables_several_runs(tmp_path, capsys):
    from training.cli import main as tap_train

    def result(psnr: float, acc: float) -> dict:
        methods = {"given task": {"psnr_y": psnr, "ssim_y": 0.5, "psnr_rgb": psnr - 1, "n": 2}}
        return {
            "datasets": {"rain100h": {"methods": methods}},
            "auto": {"accuracy_weather": acc, "accuracy_clean": 1.0},
        }

    for name, psnr, acc in (("a", 20.0, 0.5), ("b", 22.5, 0.75)):
        (tmp_path / f"{name}.json").write_text(json.dumps(result(psnr, acc)))
    with_real = result(22.5, 0.75) | {
        "real": {
            "auto_accuracy": 0.25,
            "grid": {"given task": {"median": 1.01, "worst": 1.2}},
            "held_out_clean": {"n": 35, "untouched": 20, "decisions": {"clean": 20, "rain": 15}},
        }
    }
    (tmp_path / "b.json").write_text(json.dumps(with_real))
    out = tmp_path / "table.md"
    assert (
        tap_train(["compare", f"low-rank={tmp_path / 'a.json'}", f"full={tmp_path / 'b.json'}", "--out", str(out)]) == 0
    )
    table = out.read_text()
    assert "| low-rank | 20.00 / 0.500 | 20.00 | 0.500 | 1.000 | – | – | – |" in table
    assert "| full | 22.50 / 0.500 | 22.50 | 0.750 | 1.000 | 0.250 | 20 / 35 | 1.010 / 1.200 |" in table
    assert table in capsys.readouterr().out


def test_synthetic_v2_rows_beside_v1_and_out_of_the_confusion(data: dict[str, Path], model, tmp_path: Path) -> None:
    streaks = tmp_path / "streaks"
    streaks.mkdir()
    layer = np.zeros((64, 48), np.uint8)
    layer[:, ::6] = 220
    Image.fromarray(layer).save(streaks / "layer.png")
    kwargs = {"clean_dir": data["clean"], "synthetic_per_task": 1, "paired": [], "seed": 0}
    plain = run_evaluation(model, out_dir=tmp_path / "v1", **kwargs)
    both = run_evaluation(model, out_dir=tmp_path / "v2", synthetic_v2_streaks=streaks, **kwargs)
    tasks = ["rain", "raindrop", "haze", "snow"]
    assert sorted(both["datasets"]) == sorted([f"synthetic/{t}" for t in tasks] + [f"synthetic-v2/{t}" for t in tasks])
    for t in tasks:  # v1 rows unchanged by asking for v2; v2 is other weather on the same photos
        assert both["datasets"][f"synthetic/{t}"] == plain["datasets"][f"synthetic/{t}"]
        assert (
            both["datasets"][f"synthetic-v2/{t}"]["methods"]["input"]
            != plain["datasets"][f"synthetic/{t}"]["methods"]["input"]
        )
    assert both["auto"]["confusion"] == plain["auto"]["confusion"]
    report = (tmp_path / "v2" / "report.md").read_text()
    assert "| synthetic-v2/raindrop | raindrop | given task |" in report
    assert "Auto-mode predictions on paired sets" not in report
