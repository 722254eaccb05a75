"""The service over real HTTP on loopback, with a tiny bundle exported by the test session."""

import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from bench.reliability.corpus import BAD_INPUTS, GOOD_ODDITIES
from bench.reliability.images import decode, encode, png, scene
from contract.bundle import write_json_atomic, write_prompt
from contract.flat_guard import FlatGuard

TASKS = ["haze", "rain", "raindrop", "snow"]


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"]
    return body["error"]


# ---- endpoints ------------------------------------------------------------------------------


def test_health_ready_and_degradations(server):
    assert server.client.get("/healthz").json() == {"status": "ok"}
    ready = server.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert ready.json()["execution_provider"] == "CPUExecutionProvider"
    info = server.client.get("/v1/degradations").json()
    assert [t["name"] for t in info["tasks"]] == TASKS
    assert all(t["prompt_dim"] == info["prompt_dim"] and t["auto"] for t in info["tasks"])
    assert info["model_version"] == "tiny-test" and info["classes"][-1] == "clean"


def test_openapi_documents_every_error_with_the_error_model(server):
    spec = server.client.get("/openapi.json").json()
    responses = spec["paths"]["/restore"]["post"]["responses"]
    for status in ("401", "413", "415", "422", "503", "504"):
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith("/ErrorResponse")
    assert {"image/png", "image/jpeg", "image/webp", "application/json"} <= set(responses["200"]["content"])
    operation = spec["paths"]["/restore"]["post"]
    query = next(p for p in operation["parameters"] if p["name"] == "degradation")
    assert query["schema"]["enum"] == ["auto", *TASKS]  # the loaded prompts, for /docs and fuzzers
    assert "security" not in operation  # no API key configured: anonymous calls are the contract
    assert server.client.get("/docs").status_code == 200


@pytest.mark.parametrize("task", TASKS)
def test_every_degradation_restores(server, task):
    r = server.restore(png(40, 56), degradation=task)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert r.headers["x-degradation"] == task and r.headers["x-model-version"] == "tiny-test"
    assert "x-degradation-confidence" not in r.headers and float(r.headers["x-processing-time-ms"]) > 0
    out = decode(r.content)
    assert out.size == (56, 40) and out.mode == "RGB"


def test_degradation_as_query_parameter(server):
    r = server.client.post("/restore?degradation=haze", files={"image": ("a.png", png(), "image/png")})
    assert r.status_code == 200 and r.headers["x-degradation"] == "haze"


@pytest.mark.parametrize(
    ("accept", "form", "expected"),
    [
        ("image/jpeg", {}, "JPEG"),
        ("image/webp", {}, "WEBP"),
        ("image/png;q=0.5, image/webp", {}, "WEBP"),
        (None, {"format": "jpeg", "quality": "70"}, "JPEG"),
        ("image/png", {"format": "webp"}, "WEBP"),  # the parameter wins
        ("*/*", {}, "PNG"),
    ],
)
def test_output_formats(server, accept, form, expected):
    headers = {"Accept": accept} if accept else None
    r = server.restore(png(), degradation="rain", headers=headers, **form)
    assert r.status_code == 200, r.text
    assert decode(r.content).format == expected
    assert r.headers["content-type"] == f"image/{expected.lower()}"


def test_json_reply(server):
    r = server.restore(png(40, 50), degradation="snow", format="webp", headers={"Accept": "application/json"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["degradation"] == "snow" and body["format"] == "webp" and body["media_type"] == "image/webp"
    assert (body["width"], body["height"], body["tiles"], body["model_version"]) == (50, 40, 1, "tiny-test")
    assert body["confidence"] is None and body["probabilities"] is None and body["mixture"] is None
    assert {"decode", "queue", "inference", "encode", "total"} <= set(body["timings_ms"])
    assert decode(base64.b64decode(body["image_base64"])).size == (50, 40)


# ---- auto mode ------------------------------------------------------------------------------


def test_auto_mode_follows_the_rule(server):
    r = server.restore(png(48, 48, seed=3), headers={"Accept": "application/json"})
    assert r.status_code == 200
    body = r.json()
    p = body["probabilities"]
    assert set(p) == {*TASKS, "clean"} and sum(p.values()) == pytest.approx(1.0)
    weathers = sorted(TASKS, key=p.get, reverse=True)
    top, second = weathers[0], weathers[1]
    if p["clean"] >= 0.6:
        expected = "clean"
    elif p[second] >= 0.3 and p[top] - p[second] <= 0.2:
        expected = f"{top}+{second}"
    else:
        expected = top
    assert body["degradation"] == expected == r.headers["x-degradation"]
    assert float(r.headers["x-degradation-confidence"]) == pytest.approx(body["confidence"], abs=1e-4)


def test_auto_clean_returns_the_photo_untouched(start_server, tiny_bundle):
    srv = start_server(tiny_bundle, clean_threshold=0.0)
    rgb = scene(40, 60, seed=5)
    before = srv.metric("tap_auto_decisions_total", degradation="clean")
    r = srv.restore(encode(rgb))
    assert r.status_code == 200 and r.headers["x-degradation"] == "clean"
    np.testing.assert_array_equal(np.asarray(decode(r.content)), rgb)
    assert srv.metric("tap_auto_decisions_total", degradation="clean") == before + 1


def test_the_bundles_calibrated_rule_decides_and_says_why(start_server, bundle_copy):
    """A manifest's auto_rule and classifier_temperature are what the service applies; settings
    override single thresholds; the reason travels in the JSON body and a header."""
    manifest_path = bundle_copy / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest |= {"auto_rule": {"clean_threshold": 1.0, "min_weather_prob": 1.0}, "classifier_temperature": 0.5}
    write_json_atomic(manifest_path, manifest)
    srv = start_server(bundle_copy)
    auto = srv.client.get("/v1/degradations").json()["auto"]
    assert auto == {
        "clean_threshold": 1.0,
        "min_weather_prob": 1.0,
        "mixture_min_prob": 0.3,
        "mixture_margin": 0.2,
        "temperature": 0.5,
    }
    r = srv.restore(png(seed=7), headers={"Accept": "application/json"})
    body = r.json()
    assert body["degradation"] == "clean" and body["reason"].startswith("not sure: the likeliest weather")
    assert r.headers["x-degradation-reason"] == body["reason"]
    overridden = start_server(bundle_copy, min_weather_prob=0.0)
    assert overridden.client.get("/v1/degradations").json()["auto"]["min_weather_prob"] == 0.0
    assert overridden.restore(png(seed=7), headers={"Accept": "application/json"}).json()["degradation"] != "clean"


def test_auto_mixture_is_announced(start_server, tiny_bundle):
    srv = start_server(tiny_bundle, clean_threshold=1.0, mixture_min_prob=0.0, mixture_margin=1.0)
    r = srv.restore(png(seed=6), headers={"Accept": "application/json"})
    body = r.json()
    mixture = body["mixture"]
    assert len(mixture) == 2 and sum(mixture.values()) == pytest.approx(1.0)
    assert body["degradation"] == "+".join(mixture) == r.headers["x-degradation"]
    assert r.headers["x-degradation-mixture"].count("=") == 2
    assert srv.metric("tap_auto_decisions_total", degradation="mixture") >= 1


# ---- tiling and batching --------------------------------------------------------------------


def test_tiled_output_matches_the_whole_image(server, tiny_bundle):
    """150x200 in 64-px tiles (16-px overlap) vs one whole-image run of the same backbone.

    Tiles sit on the backbone's 16-px grid (off-grid tiles differ by up to 255 levels: the
    stride-2 stem is not shift-equivariant). The blocks' global channel mean still makes
    tiles differ a little everywhere. Measured (8-bit levels, 3 images x 2 tasks): away from
    the overlaps <= 1 (once 2), inside them <= 2, mean 0.17. Bounds below leave a margin.
    """
    rgb = scene(150, 200, seed=1)
    r = server.restore(encode(rgb), degradation="rain", headers={"Accept": "application/json"})
    assert r.json()["tiles"] == 12
    tiled = np.asarray(decode(base64.b64decode(r.json()["image_base64"])), np.float32) / 255
    session = ort.InferenceSession(str(tiny_bundle / "backbone.onnx"), providers=["CPUExecutionProvider"])
    x = (rgb.astype(np.float32) / 255).transpose(2, 0, 1)[None]
    prompt = np.load(tiny_bundle / "prompts" / "rain.npy")[None]
    whole = session.run(None, {"image": x, "prompt": prompt})[0][0].transpose(1, 2, 0)
    whole = FlatGuard().apply(rgb.astype(np.float32) / 255, whole)  # the service guards the blended whole
    whole = np.round(np.clip(whole, 0, 1) * 255) / 255
    diff = np.abs(tiled - whole).max(axis=2)
    # Tile starts on this grid: y in {0, 48, 96} (+64), x in {0, 48, 96, 144} (+64) -> overlap bands.
    seam = np.zeros(diff.shape, bool)
    for start in (48, 96):
        seam[start : start + 16, :] = True
        seam[:, start : start + 16] = True
    seam[:, 144:160] = True
    assert diff[~seam].max() <= 2 / 255 + 1e-6
    assert diff.max() <= 4 / 255 + 1e-6
    assert diff.mean() < 0.5 / 255


def _sky_over_scene(seed: int = 5) -> np.ndarray:
    """64x64, one tile: a flat grey sky over the lower third of the drawn scene."""
    rgb = scene(64, 64, seed=seed)
    rgb[:40] = 200
    return rgb


def test_flat_guard_is_what_the_service_applies_and_a_setting_turns_it_off(server, start_server, tiny_bundle):
    """The reply is contract.flat_guard applied to the backbone's output (on by default), and the
    bare output with TAP_FLAT_GUARD=false; the untrained tiny network paints structure into the
    sky, which the guard takes out."""
    rgb = _sky_over_scene()
    session = ort.InferenceSession(str(tiny_bundle / "backbone.onnx"), providers=["CPUExecutionProvider"])
    prompt = np.load(tiny_bundle / "prompts" / "rain.npy")[None]
    photo = rgb.astype(np.float32) / 255
    bare = session.run(None, {"image": photo.transpose(2, 0, 1)[None], "prompt": prompt})[0][0].transpose(1, 2, 0)
    guarded = FlatGuard().apply(photo, bare)

    def levels(image: np.ndarray) -> np.ndarray:
        return np.round(np.clip(image, 0, 1) * 255) / 255

    on, _ = _restore_json(server, rgb)
    off, _ = _restore_json(start_server(tiny_bundle, flat_guard=False), rgb)
    assert np.abs(on - levels(guarded)).max() <= 1 / 255 + 1e-6
    assert np.abs(off - levels(bare)).max() <= 1 / 255 + 1e-6
    sky = (slice(0, 12), slice(0, 64))  # its windows (33 px) stay inside the sky
    assert off[sky].std(axis=(0, 1)).max() > 2 * on[sky].std(axis=(0, 1)).max()


def _restore_json(srv, rgb: np.ndarray, **fields) -> tuple[np.ndarray, dict]:
    r = srv.restore(encode(rgb), degradation="rain", headers={"Accept": "application/json"}, **fields)
    assert r.status_code == 200, r.text
    body = r.json()
    return np.asarray(decode(base64.b64decode(body["image_base64"])), np.float32) / 255, body


def test_flip_ensemble_averages_the_photo_and_its_mirror(server, tiny_bundle):
    """ensemble=true: mean of f(x) and mirror(f(mirror(x))), one backbone item each, then the
    flat-region guard (mirror-symmetric too), so the reply is exactly as mirror-symmetric as that
    mean is."""
    rgb = scene(48, 64, seed=3)  # fits one 64-px tile
    plain, body_plain = _restore_json(server, rgb)
    both, body_both = _restore_json(server, rgb, ensemble="true")
    assert (body_plain["tiles"], body_both["tiles"]) == (1, 2)
    session = ort.InferenceSession(str(tiny_bundle / "backbone.onnx"), providers=["CPUExecutionProvider"])
    prompt = np.load(tiny_bundle / "prompts" / "rain.npy")[None]
    x = (rgb.astype(np.float32) / 255).transpose(2, 0, 1)[None]
    own = session.run(None, {"image": x, "prompt": prompt})[0][0]
    mirrored = session.run(None, {"image": np.ascontiguousarray(x[..., ::-1]), "prompt": prompt})[0][0][..., ::-1]
    mean = ((own + mirrored) / 2).transpose(1, 2, 0)
    expected = np.round(np.clip(FlatGuard().apply(rgb.astype(np.float32) / 255, mean), 0, 1) * 255) / 255
    assert np.abs(both - expected).max() <= 1 / 255 + 1e-6  # the 8-bit rounding of the mean
    assert np.abs(both - plain).max() > 2 / 255  # the untrained network is far from mirror-equivariant
    mirror_of_reply, _ = _restore_json(server, np.ascontiguousarray(rgb[:, ::-1]), ensemble="true")
    assert np.abs(mirror_of_reply[:, ::-1] - both).max() <= 1 / 255 + 1e-6


def test_flip_ensemble_doubles_the_tiles_and_keeps_tiling(server):
    rgb = scene(100, 120, seed=4)  # 2 x 3 tiles of 64 px, 16 px overlap
    plain, body_plain = _restore_json(server, rgb)
    both, body_both = _restore_json(server, rgb, ensemble="true")
    assert body_plain["tiles"] == 6 and body_both["tiles"] == 12
    assert both.shape == plain.shape == (100, 120, 3)
    assert np.abs(both - plain).mean() < 0.1  # the same photo, restored a little differently


def test_flip_ensemble_default_comes_from_settings_and_a_request_overrides_it(start_server, tiny_bundle):
    srv = start_server(tiny_bundle, flip_ensemble=True)
    rgb = scene(48, 48, seed=5)
    assert _restore_json(srv, rgb)[1]["tiles"] == 2
    assert _restore_json(srv, rgb, ensemble="false")[1]["tiles"] == 1
    r = srv.client.post(
        "/restore", params={"degradation": "rain", "ensemble": "false"}, files={"image": ("a.png", encode(rgb))}
    )
    assert r.status_code == 200 and r.headers["x-degradation"] == "rain"
    assert_error(srv.restore(encode(rgb), degradation="rain", ensemble="maybe"), 422, "bad_request")


def _backbone(bundle, rgb: np.ndarray, task: str = "rain") -> np.ndarray:
    """(H, W, 3) float output of the bundle's backbone on one whole image, unclipped."""
    session = ort.InferenceSession(str(bundle / "backbone.onnx"), providers=["CPUExecutionProvider"])
    x = (rgb.astype(np.float32) / 255).transpose(2, 0, 1)[None]
    prompt = np.load(bundle / "prompts" / f"{task}.npy")[None]
    return session.run(None, {"image": x, "prompt": prompt})[0][0].transpose(1, 2, 0)


def test_strength_blends_the_restoration_toward_the_photo(server, tiny_bundle):
    """strength=s: input + s * (restored - input), after the backbone, reported back."""
    rgb = scene(48, 64, seed=6)  # fits one 64-px tile
    x = rgb.astype(np.float32) / 255
    restored = _backbone(tiny_bundle, rgb)
    for s in (0.25, 0.5, 1.0):
        out, body = _restore_json(server, rgb, strength=str(s))
        expected = np.round(np.clip(x + s * (restored - x), 0, 1) * 255) / 255
        assert np.abs(out - expected).max() <= 1 / 255 + 1e-6, s  # the 8-bit rounding
        assert body["strength"] == s and body["tiles"] == 1
    assert np.abs(_restore_json(server, rgb, strength="0.5")[0] - x).max() > 2 / 255  # not the input


def test_strength_zero_returns_the_photo_bit_for_bit_without_the_backbone(server):
    data = encode(scene(100, 120, seed=7))  # tiled: 6 tiles at strength > 0
    r = server.restore(data, degradation="rain", strength="0")
    assert r.status_code == 200, r.text
    assert r.headers["x-strength"] == "0" and r.headers["x-degradation"] == "rain"
    assert np.array_equal(np.asarray(decode(r.content)), scene(100, 120, seed=7))
    body = server.restore(data, degradation="rain", strength="0", headers={"Accept": "application/json"}).json()
    assert body["tiles"] == 0 and body["strength"] == 0.0
    gray16 = encode(Image.fromarray(np.arange(400, dtype=np.uint16).reshape(20, 20) * 100))
    r = server.client.post(
        "/restore", params={"degradation": "haze", "strength": "0"}, files={"image": ("g.png", gray16)}
    )
    assert r.status_code == 200, r.text
    assert np.array_equal(np.asarray(decode(r.content)), np.asarray(decode(gray16)))  # 16-bit values kept


def test_strength_as_query_parameter_and_tiled(server):
    rgb = scene(100, 120, seed=8)
    full, _ = _restore_json(server, rgb)
    r = server.client.post(
        "/restore",
        params={"degradation": "rain", "strength": "0.5"},
        files={"image": ("a.png", encode(rgb))},
        headers={"Accept": "application/json"},
    )
    assert r.status_code == 200 and r.headers["x-strength"] == "0.5"
    half = np.asarray(decode(base64.b64decode(r.json()["image_base64"])), np.float32) / 255
    x = rgb.astype(np.float32) / 255
    assert np.abs(half - (x + 0.5 * (full - x))).max() <= 1 / 255 + 1e-6  # blended after the tiles


@pytest.mark.parametrize("value", ["1.5", "-0.1", "strong", "nan", "inf"])
def test_strength_out_of_range_or_not_a_number_is_a_422(server, value):
    error = assert_error(server.restore(png(), degradation="rain", strength=value), 422, "bad_request")
    assert "strength" in error["message"]
    r = server.client.post("/restore", params={"strength": value}, files={"image": ("a.png", png())})
    assert "strength" in assert_error(r, 422, "bad_request")["message"]


def test_strength_default_comes_from_settings_and_a_request_overrides_it(start_server, tiny_bundle):
    srv = start_server(tiny_bundle, default_strength=0.0)
    rgb = scene(48, 48, seed=9)
    r = srv.restore(encode(rgb), degradation="rain")
    assert r.headers["x-strength"] == "0" and np.array_equal(np.asarray(decode(r.content)), rgb)
    out, body = _restore_json(srv, rgb, strength="1")
    assert body["strength"] == 1.0 and body["tiles"] == 1 and np.abs(out - rgb / 255).max() > 2 / 255


def _batch_counts(srv) -> tuple[float, float]:
    return srv.metric("tap_batch_size_count"), srv.metric("tap_batch_size_bucket", le="1.0")


def test_concurrent_requests_are_batched_together(server):
    """Images that fit one tile are one work item each, so a batch > 1 holds several requests."""
    total_before, single_before = _batch_counts(server)
    images = [png(48, 48, seed=i) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda data: server.restore(data, degradation="rain"), images))
    assert all(r.status_code == 200 for r in responses)
    total_after, single_after = _batch_counts(server)
    batches = total_after - total_before
    assert batches < 8  # fewer runs than requests
    assert batches - (single_after - single_before) >= 1  # at least one run with > 1 request


# ---- overload and deadlines -----------------------------------------------------------------


def wait_until_busy(srv, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while srv.client.get("/readyz").json()["tiles_in_flight"] == 0:
        assert time.monotonic() < deadline, "the big request never started"
        time.sleep(0.005)


def test_queue_overflow_gives_503_with_retry_after(start_server, tiny_bundle):
    srv = start_server(tiny_bundle, queue_size=4, max_batch=2, retry_after_s=3)
    big = encode(scene(640, 640, seed=2))  # 169 tiles: admitted alone, busy for a while
    before = srv.metric("tap_rejections_total", reason="queue_full")
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("big", srv.restore(big, degradation="rain")))
    worker.start()
    wait_until_busy(srv)
    t0 = time.monotonic()
    r = srv.restore(png(), degradation="rain")
    assert time.monotonic() - t0 < 2  # refused at once, not queued
    assert_error(r, 503, "queue_full")
    assert r.headers["retry-after"] == "3"
    assert srv.client.get("/healthz").status_code == 200  # health stays responsive under load
    worker.join(60)
    assert result["big"].status_code == 200
    assert srv.metric("tap_rejections_total", reason="queue_full") == before + 1
    assert srv.restore(png(), degradation="rain").status_code == 200  # capacity came back


def test_deadline_gives_504(start_server, tiny_bundle):
    srv = start_server(tiny_bundle, request_timeout_s=0.05, max_batch=1)
    r = srv.restore(encode(scene(640, 640, seed=2)), degradation="rain")
    assert_error(r, 504, "deadline_exceeded")
    assert srv.client.get("/readyz").json()["tiles_in_flight"] == 0  # withdrawn tiles freed


# ---- bad inputs (issue 7) -------------------------------------------------------------------


@pytest.mark.parametrize("name", list(GOOD_ODDITIES))
def test_odd_but_valid_images_are_restored(server, name):
    data, (mode, size) = GOOD_ODDITIES[name]
    content_type = "text/plain" if "text/plain" in name else "application/octet-stream"
    r = server.restore(data, filename=f"{name}.bin", content_type=content_type, degradation="haze")
    assert r.status_code == 200, r.text
    out = decode(r.content)
    assert (out.mode, out.size) == (mode, size)


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_inputs_get_their_documented_error(server, name):
    send, status, code, reason = BAD_INPUTS[name]
    before = server.metric("tap_rejections_total", reason=reason)
    error = assert_error(send(server), status, code)
    if name.endswith("degradation"):
        assert "valid: auto, haze, rain, raindrop, snow" in error["message"]
    assert server.metric("tap_rejections_total", reason=reason) == before + 1
    assert server.restore(png(), degradation="rain").status_code == 200  # still serving


def test_unknown_route_and_method_are_json(server):
    assert_error(server.client.get("/nope"), 404, "not_found")
    assert_error(server.client.get("/restore"), 405, "method_not_allowed")


# ---- run-time prompts, readiness, access ----------------------------------------------------


def test_prompt_added_at_run_time_is_usable_without_restart(start_server, bundle_copy):
    srv = start_server(bundle_copy)
    assert_error(srv.restore(png(), degradation="fog"), 422, "unknown_degradation")
    write_prompt(bundle_copy, "fog", 0.5 * np.load(bundle_copy / "prompts" / "haze.npy"))
    r = srv.restore(png(), degradation="fog")
    assert r.status_code == 200 and r.headers["x-degradation"] == "fog"
    tasks = {t["name"]: t for t in srv.client.get("/v1/degradations").json()["tasks"]}
    assert tasks["fog"]["auto"] is False and tasks["rain"]["auto"] is True


def test_prompts_are_rescanned_periodically(start_server, bundle_copy):
    srv = start_server(bundle_copy, prompt_reload_interval_s=0.1)
    engine = srv.app.state.engine
    write_prompt(bundle_copy, "mist", 0.3 * np.load(bundle_copy / "prompts" / "haze.npy"))
    deadline = time.monotonic() + 10
    while "mist" not in engine.tasks:  # no request touches the engine: only the background scan
        assert time.monotonic() < deadline, "periodic re-scan never picked the prompt up"
        time.sleep(0.05)
    assert srv.restore(png(), degradation="mist").status_code == 200


def test_readyz_reports_cuda_fallback(start_server, tiny_bundle):
    srv = start_server(tiny_bundle, device="cuda")
    r = srv.client.get("/readyz")
    body = r.json()
    if body["execution_provider"] == "CUDAExecutionProvider":
        pytest.skip("a CUDA device is present")
    assert r.status_code == 503 and body["ready"] is False
    assert "device=cuda" in body["reasons"][0] and body["error"]["code"] == "not_ready"
    assert srv.client.get("/healthz").status_code == 200


def test_api_key_guards_restore_and_admin(start_server, tiny_bundle):
    srv = start_server(tiny_bundle, api_key="s3cret", cors_origins="https://app.example")
    before = srv.metric("tap_rejections_total", reason="unauthorized")
    assert_error(srv.restore(png()), 401, "unauthorized")
    assert_error(srv.restore(png(), headers={"X-API-Key": "wrong"}), 401, "unauthorized")
    assert_error(srv.client.post("/admin/reload-prompts"), 401, "unauthorized")
    assert srv.metric("tap_rejections_total", reason="unauthorized") == before + 3
    assert srv.client.get("/openapi.json").json()["paths"]["/restore"]["post"]["security"]
    ok = srv.restore(png(), degradation="rain", headers={"X-API-Key": "s3cret"})
    assert ok.status_code == 200
    admin = srv.client.post("/admin/reload-prompts", headers={"X-API-Key": "s3cret"})
    assert admin.status_code == 200 and admin.json()["tasks"] == TASKS
    assert srv.client.get("/healthz").status_code == 200 and srv.client.get("/metrics").status_code == 200
    preflight = srv.client.options(
        "/restore", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    )
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"


def test_metrics_exposes_every_documented_series(server):
    text = server.client.get("/metrics").text
    for name in [
        "tap_requests_total",
        "tap_request_duration_seconds_bucket",
        "tap_queue_wait_seconds_bucket",
        "tap_inference_duration_seconds_bucket",
        "tap_batch_size_bucket",
        "tap_queue_depth",
        "tap_tiles_per_request_bucket",
        "tap_input_megapixels_bucket",
        "tap_rejections_total",
        "tap_auto_decisions_total",
        "tap_megapixels_restored_total",
        "tap_model_info",
        "process_resident_memory_bytes",
    ]:
        assert f"\n{name}" in text, name
    assert 'execution_provider="CPUExecutionProvider"' in text and 'model_version="tiny-test"' in text
    for reason in ("too_large", "bad_image", "queue_full", "deadline", "unauthorized", "bad_request"):
        assert f'tap_rejections_total{{reason="{reason}"}}' in text
