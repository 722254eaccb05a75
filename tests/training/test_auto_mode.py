"""Auto mode on real photos: the weather-photos split, the real-photo source, the view bank,
calibration, and the same decisions in training's report and in the service's engine."""

import numpy as np
import pytest
import torch
from PIL import Image

from model.checkpoint import load_model, save_weights
from service.engine import Engine
from service.settings import Settings
from tests.conftest import make_tiny_model
from tests.training.test_loops import changed, tiny_overrides
from training import synth
from training.auto_mode import (
    CLEAR_UNTOUCHED_MIN,
    PhotoScore,
    calibrate,
    decisions,
    expected_calibration_error,
    fit_temperature,
    right_shares,
    weather_photo_scores,
)
from training.classifier_bank import split_encoder, tune_classifier_bank
from training.cli import main as tap_train
from training.config import load_config
from training.datasets import LabelledPhotos
from training.export import export_bundle
from training.scenes import draw_city_scene, to_uint8
from training.weather_photos import FOLDER_CLASS, decision_is_right, is_dev

CLASSES = ["rain", "raindrop", "haze", "snow", "clean"]


def test_decisions_count_as_right_per_folder():
    assert decision_is_right("rain", "raindrop") and decision_is_right("rain", "haze+rain")
    assert decision_is_right("fog", "haze") and not decision_is_right("fog", "clean")
    assert decision_is_right("snow-scene", "clean") and not decision_is_right("snow-scene", "snow")
    assert not decision_is_right("clear", "haze")


def test_labelled_photos_keep_the_folder_label_and_never_draw_dev_photos(weather_photos):
    generators = synth.generators(2)
    source = LabelledPhotos(weather_photos, CLASSES[:4], 32, generators)
    assert sorted(len(images) for _, images in source.folders) == [3, 3, 3, 3]
    rng = np.random.default_rng(0)
    items = [source.sample(rng) for _ in range(40)]
    assert {int(it["task"]) for it in items} == {0, 2, 4}  # rain, haze (fog), clean (clear, snow-scene)
    assert all(torch.equal(it["lq"], it["gt"]) for it in items)  # no clean reference: the label stands
    weathered = LabelledPhotos(weather_photos, CLASSES[:4], 32, generators, synthetic_prob=1.0)
    items = [weathered.sample(rng) for _ in range(40)]
    synthetic = [it for it in items if not torch.equal(it["lq"], it["gt"])]
    assert synthetic and all(int(it["task"]) < 4 for it in synthetic)  # weather over clean photos is weather


def test_bank_training_changes_only_the_upper_classifier(weather_photos, tiny_clean_dir, tmp_path):
    base = make_tiny_model().eval()
    save_weights(base, tmp_path / "init.safetensors")
    real = [f"data.weather_photos_dir={weather_photos}", "data.weather_photos_weight=1"]
    bank = ["classifier.bank_size=24", "classifier.frozen_levels=1", "classifier.bank_epochs=2"]
    args = ["tune-classifier", "--init", str(tmp_path / "init.safetensors"), "--out", str(tmp_path / "run")]
    assert tap_train(args + tiny_overrides(tiny_clean_dir) + real + bank) == 0
    tuned = load_model(tmp_path / "run" / "model.safetensors")[0]
    diff = changed(base, tuned)
    assert diff and all(k.startswith(("encoder.", "keys.")) for k in diff)
    cut = len(split_encoder(base, 1)[0])  # the frozen first level: encoder.features.0 .. cut-1
    assert not [k for k in diff if k.startswith("encoder.features.") and int(k.split(".")[2]) < cut]
    lq = torch.rand(2, 3, 40, 56)
    with torch.no_grad():  # restoration bit-identical
        assert torch.equal(base(lq, base.prompt_for(["rain", "haze"])), tuned(lq, tuned.prompt_for(["rain", "haze"])))
    bad = ["classifier.bank_size=8", "classifier.frozen_levels=2", f"init={tmp_path / 'init.safetensors'}"]
    cfg = load_config(None, tiny_overrides(tiny_clean_dir) + real + bad)
    with pytest.raises(ValueError, match="frozen_levels must be in"):
        tune_classifier_bank(cfg, tmp_path / "bad")


def test_fit_temperature_recovers_the_temperature_that_made_the_labels():
    rng = np.random.default_rng(0)
    scores = []
    for k in range(3000):
        logits = rng.normal(0, 3, 5)
        p = np.exp(logits / 2.5) / np.exp(logits / 2.5).sum()  # the truth: 2.5x softer than the logits say
        scores.append(PhotoScore("x", f"{k}", int(rng.choice(5, p=p)), logits))
    temperature = fit_temperature(scores)
    assert temperature == pytest.approx(2.5, rel=0.12)
    assert expected_calibration_error(scores, temperature) < expected_calibration_error(scores, 1.0) / 3


def test_calibration_keeps_clear_photos_untouched(weather_photos, tmp_path):
    model = make_tiny_model()
    dev = weather_photo_scores(model, weather_photos, "dev")
    assert len(dev) == 8 and {s.folder for s in dev} == set(FOLDER_CLASS)
    calibrated, report = calibrate(model, dev)
    assert report["temperature"]["after"] == calibrated.cfg.classifier_temperature
    assert report["nll"]["after"] <= report["nll"]["before"] + 1e-9
    labels = decisions(calibrated, dev, calibrated.cfg.auto_rule, calibrated.cfg.classifier_temperature)
    assert right_shares(dev, labels)["clear"] >= CLEAR_UNTOUCHED_MIN


@pytest.mark.slow
def test_training_report_and_service_engine_decide_alike(weather_photos, tmp_path):
    """A calibrated model, exported: the engine's rule, temperature and decisions are the report's."""
    model = make_tiny_model()
    model, _ = calibrate(model, weather_photo_scores(model, weather_photos, "dev"))
    bundle = export_bundle(model, tmp_path / "bundle", model_version="calibrated")
    engine = Engine(Settings(bundle_path=bundle, device="cpu", intra_op_threads=1, tile_size=64, tile_overlap=16))
    assert engine.auto_rule == model.cfg.auto_rule
    assert engine.classifier_view.temperature == model.cfg.classifier_temperature
    for path in sorted(weather_photos.glob("*/*.png")):
        rgb = np.asarray(Image.open(path), dtype=np.float32) / 255
        served = engine.classify(rgb)
        trained = model.photo_probabilities(torch.from_numpy(rgb.transpose(2, 0, 1).copy())[None])
        assert np.abs(np.array([served[c] for c in model.classes]) - trained).max() < 1e-4
        expected = model.cfg.auto_rule.decide(dict(zip(model.classes, trained.tolist(), strict=True)), model.tasks)
        assert engine.decide(served).label == expected.label


def test_auto_mode_command_counts_the_services_decisions(weather_photos, tiny_clean_dir, tmp_path, capsys):
    model = make_tiny_model()
    save_weights(model, tmp_path / "model.safetensors")
    out = tmp_path / "auto.md"
    args = ["auto-mode", str(tmp_path / "model.safetensors"), "--weather-photos", str(weather_photos)]
    assert tap_train([*args, "--synthetic-clean-dir", str(tiny_clean_dir), "--out", str(out)]) == 0
    report = out.read_text()
    assert report in capsys.readouterr().out
    right = 0
    for path in sorted(weather_photos.glob("*/*.png")):
        if not is_dev(path.name):
            continue
        x = torch.from_numpy(np.asarray(Image.open(path)).transpose(2, 0, 1) / 255.0).float()[None]
        p = model.photo_probabilities(x)
        label = model.cfg.auto_rule.decide(dict(zip(model.classes, p.tolist(), strict=True)), model.tasks).label
        right += decision_is_right(path.parent.name, label)
    assert f"All: {right}/8 right." in report
    assert "| snow-scene | 2 |" in report and "Expected calibration error" in report
    assert "synthetic weather, 8 per task" in report and "All: " in report.split("synthetic weather")[1]


def test_synthetic_task_weights_draw_only_the_weighted_tasks(tiny_clean_dir):
    from training.datasets import DataError, SyntheticWeather

    def tasks_drawn(weights) -> set[int]:
        data = SyntheticWeather(tiny_clean_dir, CLASSES[:4], 16, 40, clean_prob=0.0, task_weights=weights)
        return {int(data[i]["task"]) for i in range(40)}

    assert tasks_drawn([1.0, 1.0, 0.0, 0.0]) == {0, 1}
    assert tasks_drawn([]) == {0, 1, 2, 3}  # uniform, as before the option existed
    with pytest.raises(DataError, match="4 weights"):
        tasks_drawn([1.0, 0.0])


def test_restoration_cue_bench_compares_both_deciders(weather_photos, tmp_path):
    from bench import restoration_cue

    real = tmp_path / "data" / "real"
    for folder in ("rain", "haze"):
        (real / folder).mkdir(parents=True)
        for k in range(2):
            Image.fromarray(to_uint8(draw_city_scene(40, 56, seed=k))).save(real / folder / f"{k}.png")
    (tmp_path / "data" / "weather-photos").symlink_to(weather_photos)
    save_weights(make_tiny_model().eval(), tmp_path / "tiny.safetensors")
    argv = ["--checkpoint", str(tmp_path / "tiny.safetensors"), "--data", str(tmp_path / "data"), "--view", "32"]
    report = restoration_cue.main([*argv, "--threads", "1", "--out-dir", str(tmp_path / "out")])
    text = report.path.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| classifier")]
    assert [r.split("|")[1].strip() for r in rows] == ["classifier alone", "classifier + restoration cue (view 32 px)"]
    assert all(r.split("|")[6].strip().endswith("/4") for r in rows)  # the 4 real photos, each decider
    assert "% of it" in text and len(report.headlines) == 2
