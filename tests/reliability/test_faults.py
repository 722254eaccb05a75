"""Faults: a damaged bundle, a prompt that fails verification, an inference error on one request (issue 7)."""

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from bench.reliability.images import encode, png, scene
from bench.reliability.scenario import BASE
from bench.reliability.server import ServerExited
from contract.bundle import MANIFEST, sha256_file, write_prompt
from service.settings import Settings
from tests.live_server import LiveServer

REFUSE_LIMIT_S = 30.0  # a damaged bundle must stop the start, not hang it; measured ~2 s


def flip_last_byte(path: Path) -> None:
    """Change the last byte: the file still parses (npy, ONNX tail) but no longer matches its hash."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate_and_rehash(bundle: Path, relpath: str) -> None:
    """A corrupt file whose manifest hash was updated to match: only the loader can catch it."""
    path = bundle / relpath
    path.write_bytes(path.read_bytes()[:1000])
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["files"][relpath] = sha256_file(path)
    (bundle / MANIFEST).write_text(json.dumps(manifest))


DAMAGE: dict[str, tuple[Callable[[Path], None], str, str]] = {  # name: (damage, file named, words in the error)
    "tampered-backbone": (lambda b: flip_last_byte(b / "backbone.onnx"), "backbone.onnx", "sha256 mismatch"),
    "missing-classifier": (lambda b: (b / "classifier.onnx").unlink(), "classifier.onnx", "is missing"),
    "corrupt-classifier-rehashed": (
        lambda b: truncate_and_rehash(b, "classifier.onnx"),
        "classifier.onnx",
        "INVALID_PROTOBUF",
    ),
    "unreadable-manifest": (lambda b: (b / MANIFEST).write_text("{"), MANIFEST, "unreadable manifest"),
}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_damaged_bundle_is_refused_at_start_naming_the_file(serve, bundle_copy, name):
    damage, filename, words = DAMAGE[name]
    damage(bundle_copy)
    started = time.monotonic()
    with pytest.raises(ServerExited) as info:
        serve(bundle_copy)
    assert time.monotonic() - started < REFUSE_LIMIT_S
    assert info.value.returncode != 0
    log = info.value.log
    error_lines = [line for line in log.splitlines() if str(bundle_copy / filename) in line and words in line]
    assert error_lines, log[-3000:]
    assert "Application startup failed" in log


def test_prompt_failing_verification_is_not_loaded_and_the_others_work(serve, bundle_copy):
    flip_last_byte(bundle_copy / "prompts" / "snow.npy")  # hash mismatch
    np.save(bundle_copy / "prompts" / "fog.npy", np.load(bundle_copy / "prompts" / "haze.npy"))  # not in the manifest
    server = serve(bundle_copy)

    assert server.client.get("/readyz").json()["ready"] is True
    info = server.client.get("/v1/degradations").json()
    assert [t["name"] for t in info["tasks"]] == ["haze", "rain", "raindrop"]
    assert info["unavailable"] == ["fog", "snow"]
    refused = server.restore(png(), degradation="snow")
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "unknown_degradation"
    assert "valid: auto, haze, rain, raindrop" in refused.json()["error"]["message"]
    for task in ("haze", "rain", "raindrop"):
        assert server.restore(png(), degradation=task).status_code == 200
    auto = server.restore(png(seed=4))
    assert auto.status_code == 200 and "snow" not in auto.headers["x-degradation"]
    admin = server.client.post("/admin/reload-prompts").json()
    assert admin["unavailable"] == ["fog", "snow"]
    log = server.log()
    assert "prompt snow not loaded" in log and "snow.npy: sha256 mismatch" in log
    assert "prompt fog not loaded" in log and "not listed in manifest.json" in log


POISON = np.array([13, 37, 201], np.float32) / 255  # top-left pixel that makes the injected backbone fail


def test_inference_error_fails_only_its_own_request(tiny_bundle):
    """A backbone failure injected in-process (the batcher's run_batch wrapped) for one poisoned image.

    max_delay_ms is long so the poisoned tile shares a batch with healthy ones: the batch fails,
    is retried one item at a time, and only the poisoned request gets the 500.
    """
    server = LiveServer(Settings(**{**BASE, "bundle_path": tiny_bundle, "max_delay_ms": 300})).start()
    try:
        batcher = server.app.state.batcher
        backbone = batcher.run_batch
        batches: list[tuple[int, int]] = []  # (size, poisoned items)

        def failing_backbone(images: np.ndarray, prompts: np.ndarray) -> np.ndarray:
            poisoned = int(np.isclose(images[:, :, 0, 0], POISON, atol=1e-6).all(axis=1).sum())  # images (N, 3, H, W)
            batches.append((len(images), poisoned))
            if poisoned:
                raise RuntimeError("injected backbone failure")
            return backbone(images, prompts)

        batcher.run_batch = failing_backbone
        bad = scene(48, 48, seed=9)
        bad[0, 0] = np.round(POISON * 255)
        uploads = [png(48, 48, seed=i) for i in range(3)] + [encode(bad)]
        with ThreadPoolExecutor(len(uploads)) as pool:
            responses = list(pool.map(lambda data: server.restore(data, degradation="rain"), uploads))

        assert [r.status_code for r in responses] == [200, 200, 200, 500], [r.text[:200] for r in responses]
        assert responses[-1].json()["error"]["code"] == "inference_error"
        assert any(size > 1 and poisoned == 1 for size, poisoned in batches), batches  # it did share a batch
        assert server.restore(png(), degradation="rain").status_code == 200
    finally:
        server.stop()


def test_non_finite_prompt_is_refused_not_served_as_black_image(serve, bundle_copy):
    dim = np.load(bundle_copy / "prompts" / "haze.npy").size
    write_prompt(bundle_copy, "fog", np.full(dim, np.nan, np.float32))  # its hash is in the manifest
    server = serve(bundle_copy)
    response = server.restore(png(), degradation="fog")
    assert response.status_code == 422, "served with a NaN prompt"  # refused at load: an unknown weather
    assert server.restore(png(), degradation="rain").status_code == 200
