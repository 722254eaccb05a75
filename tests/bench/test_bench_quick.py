"""The engine-speed and roofline benchmarks run end to end on a tiny model and write their tables.

No timing assertions: timings belong in bench/results, not in tests.
"""

import argparse
import re
from pathlib import Path

import pytest

pytest.importorskip("torch")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """--bundle/--checkpoint arguments of one tiny model, exported once for both benchmarks."""
    from bench.common import prepare_shared

    folder = tmp_path_factory.mktemp("bench-model")
    bundle, ckpt = prepare_shared(argparse.Namespace(checkpoint=None, variant="tiny", seed=0), folder)
    return ["--bundle", str(bundle), "--checkpoint", str(ckpt), "--threads", "1"]


def table(text: str, first_column: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the Markdown table whose first column is `first_column`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_column} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return [cell.strip() for cell in lines[start].strip("|").split("|")], rows


def test_engine_speed_writes_its_tables(tiny: list[str], tmp_path: Path) -> None:
    from bench import engine_speed

    argv = [
        "--out-dir",
        str(tmp_path),
        "--cases",
        "1x32,2x32",
        "--photo",
        "100x60",
        "--tile",
        "32",
        "--overlap",
        "8",
        "--tile-batch",
        "4",
        "--sweep",
        "1x32",
        "--repeats",
        "1",
        "--min-repeats",
        "1",
    ]
    report = engine_speed.main(tiny + argv)

    text = report.path.read_text()
    header, rows = table(text, "case")
    assert header == ["case", "ORT ms", "eager ms", "ORT MP/s", "eager MP/s", "ORT / eager", "rounds", "note"]
    assert [r[0] for r in rows] == ["1×32²", "2×32²", "0.0-MP photo 100×60, tiled"]
    assert "tiles of 32²" in rows[2][-1]
    header, rows = table(text, "session options")
    assert header == ["session options", "ms", "MP/s", "speed vs service"]
    assert len(rows) == len(engine_speed.SWEEP)
    parity = float(re.search(r"max \|ORT − eager\| (\S+) ", text).group(1))
    assert parity < 1e-4  # the same weights on both engines
    assert "target ≥ 2×" in report.headlines[0]
    assert (tmp_path / "engine_speed.png").stat().st_size > 0


def test_roofline_writes_its_tables(tiny: list[str], tmp_path: Path) -> None:
    from bench import roofline

    report = roofline.main(tiny + ["--out-dir", str(tmp_path), "--size", "64", "--gemm", "64", "--repeats", "1"])

    text = report.path.read_text()
    header, rows = table(text, "kind")
    assert header == ["kind", "GFLOP / MP", "share"]
    assert rows[-1][0] == "**total (conv + matmul)**" and float(rows[-1][1].strip("*")) > 0
    header, rows = table(text, "what")
    assert header == ["what", "GFLOP/s", "of practical peak", "of theoretical"]
    assert len(rows) == 4
    header, rows = table(text, "op type")
    assert header == ["op type", "ms", "share of node time", "nodes"]
    assert any(r[0] == "Conv" or r[0].endswith("Conv") for r in rows)
    assert "Theoretical peak:" in text and "FLOPs/cycle" in text
    assert (tmp_path / "roofline.png").stat().st_size > 0


def test_flop_count_splits_the_total_by_kind() -> None:
    from bench.roofline import count_flops
    from training.random_model import random_model

    total, kinds = count_flops(random_model("tiny"), 32)
    assert total > 0
    assert sum(kinds.values()) == pytest.approx(total)
    assert kinds["1×1 conv"] > 0 and kinds["3×3 depthwise conv"] > 0


def test_classifier_view_bench_times_both_views(tiny: list[str], tmp_path: Path) -> None:
    import json
    import shutil

    from bench import classifier_view

    bundle = Path(shutil.copytree(tiny[1], tmp_path / "bundle"))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest |= {"classifier_view": "patches", "classifier_input_size": 64, "classifier_max_side": 256}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    argv = ["--bundle", str(bundle), "--quick", "--repeats", "1", "--threads", "1", "--out-dir", str(tmp_path)]
    report = classifier_view.main(argv)
    header, rows = table(report.path.read_text(), "photo")
    assert header[:2] == ["photo", "views"]
    # 480 x 640 and 864 x 1152 shrunk to a longer side of 256, then cut into 64-px squares
    assert [(r[0], r[1]) for r in rows] == [("0.3 MP", str(3 * 4)), ("1 MP", str(3 * 4))]
    assert all(float(r[2]) > 0 and float(r[3]) > 0 for r in rows)
    assert "patch view costs up to" in report.headlines[0]


def test_flip_ensemble_bench_scores_both_modes_through_the_service(tiny: list[str], tmp_path: Path) -> None:
    from bench import flip_ensemble
    from bench.common import SHARED_DATA

    if not (SHARED_DATA / "validation" / "rain100h").is_dir():
        pytest.skip(f"no validation data under {SHARED_DATA}")
    report = flip_ensemble.main(["--bundle", tiny[1], "--quick", "--threads", "1", "--out-dir", str(tmp_path)])
    header, rows = table(report.path.read_text(), "set")
    assert header == ["set", "images", "one pass", "flip ensemble", "gain (dB)", "time"]
    names = [r[0] for r in rows]
    assert names[:2] == ["rain100h-dev", "sots-indoor-dev"] and names[2:] == [
        f"synthetic {t}" for t in ("rain", "raindrop", "haze", "snow")
    ]
    for _, images, one, both, gain, ratio in rows:
        assert int(images) in (2, 4)
        psnr_one, psnr_both = float(one.split(" / ")[0]), float(both.split(" / ")[0])
        assert float(gain) == pytest.approx(psnr_both - psnr_one, abs=0.011)
        assert float(ratio.rstrip("x")) > 0
    header, alternatives = table(report.path.read_text(), "ensemble")
    assert header == ["ensemble", "rain100h-dev", "sots-indoor-dev"]
    assert [r[0] for r in alternatives] == list(flip_ensemble.ALTERNATIVES)
    for column in (1, 2):  # the bare engine agrees with the service's pipeline on what both offer
        one, both = (float(rows[column - 1][k].split(" / ")[0]) for k in (2, 3))
        assert float(alternatives[0][column]) == pytest.approx(one, abs=0.011)
        assert float(alternatives[1][column]) == pytest.approx(both, abs=0.011)


def test_cpu_fast_path_bench_compares_every_variant(tmp_path: Path) -> None:
    """--quick on a random tiny model: exported, quantized on drawn scenes, served by real servers."""
    from bench import cpu_fast_path

    argv = ["--quick", "--variant", "tiny", "--out-dir", str(tmp_path), "--concurrency", "4"]
    report = cpu_fast_path.main(argv)
    text = report.path.read_text()
    assert "avx" in text or "asimd" in text or "none" in text  # the CPU flags line
    _, exact = table(text, "graph")
    assert all(float(row[1]) <= 1e-4 for row in exact)  # both fp32 graphs match eager PyTorch
    _, speed = table(text, "input")
    assert [row[1] for row in speed][:2] == ["fp32, plain form (as shipped before)", "fp32, exact rewrite"]
    assert len(speed) == 4 and all(row[3].endswith("×") for row in speed)
    _, served = table(text, "concurrency")
    assert len(served) == 3 and all(float(row[2]) > 0 for row in served)
    header, quality = table(text, "set")
    assert len(header) == 5 and any(row[0].startswith("synthetic rain") for row in quality)


def _tiny_data(root: Path) -> Path:
    """The folders bench.quality reads, filled with drawn scenes (no dataset needed)."""
    import numpy as np
    from PIL import Image

    from tests.training.test_metrics import sky_over_scene

    def save(folder: Path, name: str, image) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / name)

    for k in range(12):
        save(root / "clean", f"c{k}.png", sky_over_scene(48, 64, seed=k))
        save(root / "weather-photos" / "clear", f"sky_{k}.png", sky_over_scene(48, 64, seed=20 + k))
    for folder in ("rain100h", "sots-indoor"):
        for k in range(2):
            gt = sky_over_scene(48, 64, seed=40 + k)
            save(root / "validation" / folder / "target", f"{k}.png", gt)
            save(root / "validation" / folder / "input", f"{k}.png", (0.7 * gt + 60).astype(np.uint8))
    save(root / "real" / "haze", "fog.png", (0.5 * sky_over_scene(48, 64, seed=60) + 110).astype(np.uint8))
    save(root / "real" / "rain", "rain.png", sky_over_scene(48, 64, seed=61))
    streaks = np.zeros((64, 48), np.uint8)
    streaks[:, ::5] = 230
    save(root / "rain-streaks", "layer.png", streaks)
    return root


def test_quality_bench_reports_the_do_no_harm_section(tiny: list[str], tmp_path: Path) -> None:
    from bench import quality

    data = _tiny_data(tmp_path / "data")
    out = tmp_path / "out"
    argv = ["--checkpoint", tiny[3], "--data", str(data), "--quick", "--synthetic", "1", "--threads", "1"]
    report = quality.main([*argv, "--out-dir", str(out)])
    text = report.path.read_text()
    header, rows = table(text, "photos")
    assert header[:4] == ["photos", "prompt", "N", "PSNR-RGB"]
    assert [r[:2] for r in rows] == [["clear", p] for p in ("rain", "raindrop", "haze", "snow", "auto")] + [
        ["haze", "haze"],
        ["rain", "rain"],
    ]
    assert "clean in, clean out (rain/raindrop/snow) worst" in report.headlines[1]
    assert "blotch worst" in report.headlines[1]
    assert not list(out.glob("**/*.png"))  # previews show dataset photos: never kept by the bench
    assert "| synthetic-v2/raindrop | raindrop |" in text  # v2's weather beside v1's


def test_flat_guard_bench_times_the_guard_against_the_backbone(tiny: list[str], tmp_path: Path) -> None:
    from bench import flat_guard

    bundle = tiny[tiny.index("--bundle") + 1]
    flat_guard.main(["--bundle", bundle, "--sizes", "96x64,160x120", "--repeats", "1", "--out-dir", str(tmp_path)])
    header, rows = table((tmp_path / "flat_guard.md").read_text(), "step")
    assert header == ["step", "photo", "s", "s per MP", "vs backbone"]
    assert [r[:2] for r in rows] == [
        ["backbone (service engine, whole photo)", "96x64"],
        ["flat-region guard", "96x64"],
        ["flat-region guard", "160x120"],
    ]
    assert float(rows[1][4]) > 0 and rows[2][4] == "–"


def test_op_profile_traces_every_node_time_to_a_module(tiny: list[str], tmp_path: Path) -> None:
    from bench import op_profile

    bundle = tiny[tiny.index("--bundle") + 1]
    results = op_profile.main(
        ["--bundle", bundle, "--size", "64", "--warmup", "1", "--runs", "2", "--out-dir", str(tmp_path)]
    )
    by_module = results["backbone"]["module"]
    for module in ("stem.intro", "encoders.0", "middle", "prompts.levels.0", "decoders.2", "head.refine", "head.out"):
        assert by_module[module] > 0, module
    # the blocked-layout convs and reorders onnxruntime makes are traced back to their modules
    assert by_module[op_profile.ONNXRUNTIME_OWN] < 0.1 * sum(by_module.values())
    header, rows = table((tmp_path / "op_profile.md").read_text(), "module")
    assert header == ["module", "ms", "share"] and {"stem.intro", "head.out"} <= {r[0] for r in rows}
