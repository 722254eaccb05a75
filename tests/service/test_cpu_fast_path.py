"""CPU fast path: the INT8 backbone chosen from the CPU's flags, and parallel engine workers."""

import threading

import numpy as np
import pytest

from bench.reliability.images import png
from contract.bundle import BundleError
from service import cpu_features
from service.engine import Engine
from service.settings import Settings

AVX2_EPYC = "fpu vme avx avx2 fma f16c bmi2"  # Zen 3: no VNNI
AVX512_EPYC = AVX2_EPYC + " avx512f avx512bw avx512_bf16 avx512_vnni"  # Zen 4
XEON_AMX = AVX2_EPYC + " avx512f avx512_vnni amx_bf16 amx_tile amx_int8"


@pytest.mark.parametrize(
    "line,expected",
    [
        (f"flags\t\t: {AVX2_EPYC}", "backbone_int8_rr"),
        (f"flags\t\t: {AVX512_EPYC}", "backbone_int8"),
        (f"flags\t\t: {XEON_AMX}", "backbone_int8"),
        ("Features\t: fp asimd evtstrm aes crc32 asimddp", "backbone_int8"),
        ("Features\t: fp asimd evtstrm", "backbone_int8_rr"),
        ("model name\t: unknown", "backbone_int8_rr"),
    ],
)
def test_int8_file_chosen_from_cpuinfo(tmp_path, line, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\n{line}\n\nprocessor\t: 1\nflags\t\t: avx512_vnni\n")
    assert cpu_features.int8_backbone_key(cpu_features.cpu_flags(cpuinfo)) == expected


def test_unreadable_cpuinfo_means_the_safe_file(tmp_path):
    assert cpu_features.int8_backbone_key(cpu_features.cpu_flags(tmp_path / "missing")) == "backbone_int8_rr"


def engine_for(bundle, **settings) -> Engine:
    base = {"bundle_path": bundle, "device": "cpu", "tile_size": 64, "tile_overlap": 16, "warmup": False}
    return Engine(Settings(**{**base, **settings}))


@pytest.mark.parametrize("flags,expected", [(AVX2_EPYC, "backbone_int8_rr.onnx"), (XEON_AMX, "backbone_int8.onnx")])
def test_int8_engine_runs_the_file_for_its_cpu(tiny_int8_bundle, monkeypatch, flags, expected):
    monkeypatch.setattr(cpu_features, "cpu_flags", lambda: frozenset(flags.split()))
    engine = engine_for(tiny_int8_bundle, precision="int8", workers=1)
    assert engine.backbone_file == expected
    assert engine.backbone._model_path.endswith(expected)
    image = np.random.default_rng(0).random((2, 3, 48, 64), dtype=np.float32)
    prompts = np.stack([engine.prompts["rain"], engine.prompts["haze"]])
    got = engine.run_backbone(image, prompts)
    ref = engine_for(tiny_int8_bundle, workers=1).run_backbone(image, prompts)
    assert got.shape == ref.shape and np.isfinite(got).all()
    assert 10 * np.log10(1 / np.mean((got - ref) ** 2)) >= 30.0


def test_int8_on_this_cpu_uses_the_flags_of_proc_cpuinfo(tiny_int8_bundle):
    engine = engine_for(tiny_int8_bundle, precision="int8")
    assert engine.backbone_file == f"{cpu_features.int8_backbone_key(cpu_features.cpu_flags())}.onnx"


def test_int8_without_int8_files_is_refused_with_the_command(tiny_bundle):
    with pytest.raises(BundleError, match="tap-train quantize"):
        engine_for(tiny_bundle, precision="int8")


def test_int8_is_cpu_only():
    with pytest.raises(ValueError, match="CPU only"):
        Settings(precision="int8", device="cuda")


def test_workers_run_batches_in_parallel_and_agree(tiny_bundle):
    engine = engine_for(tiny_bundle, workers=3)
    assert len(engine.backbones) == 3 and len({id(s) for s in engine.backbones}) == 3
    rng = np.random.default_rng(1)
    batches = [rng.random((1, 3, 48, 64), dtype=np.float32) for _ in range(6)]
    prompt = engine.prompts["rain"][None]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = engine.run_backbone(batches[i], prompt)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    single = engine_for(tiny_bundle, workers=1)
    for i, batch in enumerate(batches):
        assert np.abs(results[i] - single.run_backbone(batch, prompt)).max() <= 1e-5


def test_auto_workers_one_per_cpu_with_one_thread(tiny_bundle):
    import os

    engine = engine_for(tiny_bundle)
    assert engine.workers == len(os.sched_getaffinity(0))


def test_readyz_names_the_int8_file_and_workers_and_restores(start_server, tiny_int8_bundle):
    server = start_server(tiny_int8_bundle, precision="int8", workers=2)
    ready = server.client.get("/readyz").json()
    expected = f"{cpu_features.int8_backbone_key(cpu_features.cpu_flags())}.onnx"
    assert ready["ready"] and ready["precision"] == "int8"
    assert ready["backbone_file"] == expected and ready["workers"] == 2
    response = server.restore(png(80, 96), degradation="rain")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
