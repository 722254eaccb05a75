"""Engine: providers, prompts re-scanned at run time, the auto-mode rule."""

from dataclasses import replace

import numpy as np
import pytest

from contract.auto_rule import AutoRule
from contract.bundle import BundleError, write_prompt
from service.engine import CPU, Engine, UnknownDegradation
from service.settings import Settings

TASKS = ["rain", "raindrop", "haze", "snow"]


def probs(**p: float) -> dict[str, float]:
    full = {t: 0.0 for t in [*TASKS, "clean"]}
    full.update(p)
    return full


RULE = AutoRule(clean_threshold=0.6, mixture_min_prob=0.3, mixture_margin=0.2)


def test_confident_clean_returns_untouched_and_says_why():
    d = RULE.decide(probs(clean=0.7, rain=0.3), TASKS)
    assert d.clean and d.label == "clean" and d.weights == {}
    assert d.reason == "nothing to remove: p(clean) = 0.70 >= 0.60"


def test_unsure_clean_still_restores_with_the_top_weather_without_a_floor():
    d = RULE.decide(probs(clean=0.5, rain=0.4, haze=0.1), TASKS)
    assert d.label == "rain" and d.weights == {"rain": 1.0} and d.confidence == 0.4


def test_a_weather_below_the_floor_abstains_to_clean():
    rule = replace(RULE, min_weather_prob=0.45)
    d = rule.decide(probs(clean=0.3, rain=0.4, haze=0.3), TASKS)
    assert d.clean and d.reason == "not sure: the likeliest weather, rain, has p = 0.40 < 0.45"
    assert rule.decide(probs(clean=0.3, rain=0.5, haze=0.2), TASKS).label == "rain"


def test_two_close_weathers_make_a_mixture():
    d = RULE.decide(probs(rain=0.45, haze=0.35, clean=0.2), TASKS)
    assert d.label == "rain+haze"
    assert d.mixture == pytest.approx({"rain": 0.45 / 0.8, "haze": 0.35 / 0.8})
    assert d.confidence == pytest.approx(0.8)
    assert d.reason == "rain (p = 0.45) and haze (p = 0.35) are both likely"


def test_runner_up_too_weak_or_too_far_gives_one_weather():
    assert RULE.decide(probs(rain=0.5, haze=0.25, clean=0.25), TASKS).label == "rain"  # below min prob
    assert RULE.decide(probs(rain=0.65, haze=0.32), TASKS).label == "rain"  # margin 0.33 > 0.2


def test_negative_margin_disables_mixtures():
    assert replace(RULE, mixture_margin=-1).decide(probs(rain=0.4, haze=0.4), TASKS).mixture is None


def test_classes_without_a_prompt_are_not_chosen():
    assert RULE.decide(probs(snow=0.9, rain=0.1), ["rain"]).label == "rain"


def test_rule_from_a_manifest_keeps_defaults_refuses_unknown_keys_and_takes_overrides():
    rule = AutoRule.from_dict({"min_weather_prob": 0.5})
    assert rule == AutoRule(min_weather_prob=0.5) and AutoRule.from_dict(None) == AutoRule()
    assert rule.overridden(clean_threshold=0.9, min_weather_prob=None) == AutoRule(0.9, 0.5)
    with pytest.raises(ValueError, match="unknown auto rule keys"):
        AutoRule.from_dict({"clean_treshold": 0.5})
    with pytest.raises(ValueError, match="min_weather_prob"):
        AutoRule(min_weather_prob=1.5)


@pytest.fixture(scope="module")
def engine(tiny_bundle) -> Engine:
    return Engine(Settings(bundle_path=tiny_bundle, device="cpu", intra_op_threads=1, tile_size=64, tile_overlap=16))


def test_engine_runs_on_cpu_and_classifies(engine):
    assert engine.execution_provider == CPU
    assert engine.readiness() == ["not warmed up yet"]
    engine.warmup()
    assert engine.readiness() == []
    p = engine.classify(np.random.default_rng(0).random((50, 70, 3), dtype=np.float32))
    assert list(p) == engine.classes and sum(p.values()) == pytest.approx(1.0)


def test_mixture_prompt_is_the_weighted_sum(engine):
    vec = engine.prompt_vector({"rain": 0.25, "haze": 0.75})
    np.testing.assert_allclose(vec, 0.25 * engine.prompts["rain"] + 0.75 * engine.prompts["haze"], rtol=1e-6)
    assert vec.dtype == np.float32


def test_names_are_validated(engine):
    with pytest.raises(UnknownDegradation, match="invalid degradation name"):
        engine.resolve("../rain")
    with pytest.raises(UnknownDegradation, match="valid: auto, haze, rain, raindrop, snow"):
        engine.resolve("fog")


def test_prompt_written_at_run_time_is_found(bundle_copy):
    engine = Engine(Settings(bundle_path=bundle_copy, device="cpu", intra_op_threads=1))
    assert engine.refresh_prompts() is False  # nothing changed
    write_prompt(bundle_copy, "fog", 0.5 * engine.prompts["haze"])
    assert engine.refresh_prompts() is True
    assert "fog" in engine.tasks and "fog" not in engine.auto_tasks  # the classifier doesn't know it
    assert engine.resolve("fog").weights == {"fog": 1.0}


def test_a_tampered_prompt_is_skipped_and_the_rest_serve(bundle_copy):
    (bundle_copy / "prompts" / "snow.npy").write_bytes(b"tampered")
    engine = Engine(Settings(bundle_path=bundle_copy, device="cpu"))
    assert "snow" in engine.prompt_errors and engine.tasks == ["haze", "rain", "raindrop"]
    assert "snow" not in engine.auto_tasks


def test_a_tampered_model_file_is_refused_by_name(bundle_copy):
    with (bundle_copy / "backbone.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="backbone.onnx: sha256 mismatch"):
        Engine(Settings(bundle_path=bundle_copy, device="cpu"))


def test_requested_cuda_without_a_gpu_is_not_ready(tiny_bundle):
    engine = Engine(Settings(bundle_path=tiny_bundle, device="cuda", warmup=False))
    if engine.execution_provider != CPU:
        pytest.skip("a CUDA device is present")
    engine.warmed = True
    assert any("device=cuda" in reason for reason in engine.readiness())


def test_fp16_without_an_fp16_backbone_is_refused(tiny_bundle):
    with pytest.raises(BundleError, match="backbone_fp16"):
        Engine(Settings(bundle_path=tiny_bundle, device="cpu", precision="fp16"))


def test_settings_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TAP_BUNDLE_PATH", str(tmp_path))
    monkeypatch.setenv("TAP_MAX_BATCH", "16")
    monkeypatch.setenv("TAP_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("TAP_API_KEY", "s3cret")
    s = Settings()
    assert s.bundle_path == tmp_path and s.max_batch == 16
    assert s.cors_origins == ["https://a.example", "https://b.example"]
    assert s.api_key.get_secret_value() == "s3cret" and "s3cret" not in repr(s)
    with pytest.raises(ValueError, match="tile_overlap"):
        Settings(tile_size=64, tile_overlap=32)
