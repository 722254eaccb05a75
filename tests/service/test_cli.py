"""`tap-restore restore`: folders in-process, files against a running server."""

import numpy as np
import pytest
from PIL import Image

from bench.reliability.images import encode, scene
from service.cli import main


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    (root / "a.png").write_bytes(encode(scene(40, 50, seed=1)))
    (root / "sub" / "b.jpg").write_bytes(encode(scene(70, 90, seed=2), "JPEG"))
    (root / "notes.txt").write_text("not an image")
    return root


def test_restore_folder_in_process(photos, tiny_bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("TAP_DEVICE", "cpu")
    monkeypatch.setenv("TAP_INTRA_OP_THREADS", "1")
    out = tmp_path / "out"
    code = main(["restore", str(photos), "-o", str(out), "--bundle", str(tiny_bundle), "--degradation", "rain"])
    assert code == 0
    assert Image.open(out / "in" / "a.png").size == (50, 40)
    assert Image.open(out / "in" / "sub" / "b.png").size == (90, 70)
    assert not list(out.rglob("*.txt"))


def test_restore_files_against_a_server(photos, server, tmp_path):
    out = tmp_path / "out"
    code = main(["restore", str(photos / "a.png"), "-o", str(out), "--url", server.url, "--format", "jpeg"])
    assert code == 0
    assert Image.open(out / "a.jpg").format == "JPEG"


def test_ensemble_flag_reaches_the_server(photos, server, tmp_path):
    before = server.metric("tap_tiles_per_request_sum")
    argv = ["restore", str(photos / "a.png"), "-o", str(tmp_path / "out"), "--url", server.url, "--degradation", "rain"]
    code = main([*argv, "--ensemble"])
    assert code == 0
    assert server.metric("tap_tiles_per_request_sum") == before + 2  # the photo and its mirror


def test_strength_reaches_the_server_and_the_in_process_pipeline(photos, server, tiny_bundle, tmp_path, monkeypatch):
    """--strength 0: the photo comes back as it went in, both ways; out of range is a usage error."""
    monkeypatch.setenv("TAP_DEVICE", "cpu")
    monkeypatch.setenv("TAP_INTRA_OP_THREADS", "1")
    source = photos / "a.png"
    remote, local = tmp_path / "remote", tmp_path / "local"
    argv = ["restore", str(source), "--degradation", "rain", "--strength", "0"]
    assert main([*argv, "-o", str(remote), "--url", server.url]) == 0
    assert main([*argv, "-o", str(local), "--bundle", str(tiny_bundle)]) == 0
    for out in (remote, local):
        assert np.array_equal(np.asarray(Image.open(out / "a.png")), np.asarray(Image.open(source)))
    assert (
        main(
            [
                "restore",
                str(source),
                "-o",
                str(local / "full"),
                "--url",
                server.url,
                "--degradation",
                "rain",
                "--strength",
                "1",
            ]
        )
        == 0
    )
    assert not np.array_equal(np.asarray(Image.open(local / "full" / "a.png")), np.asarray(Image.open(source)))
    for bad in ("1.5", "-1", "nan", "much"):
        with pytest.raises(SystemExit) as exc:
            main([*argv[:-1], bad, "-o", str(tmp_path / "bad"), "--url", server.url])
        assert exc.value.code == 2


def test_a_bad_file_fails_alone(photos, server, tmp_path):
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    code = main(["restore", str(photos), "-o", str(tmp_path / "out"), "--url", server.url])
    assert code == 1
    assert len(list((tmp_path / "out").rglob("*.png"))) == 2
