"""Datasets: synthetic pairs, paired folders, AllWeather-style lists, and their errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from training.datasets import DataError, ListFile, PairedFolder, SyntheticWeather, parse_sources, split_clean

TASKS = ["rain", "raindrop", "haze", "snow"]


def test_synthetic_pairs_are_deterministic_and_labelled(tiny_clean_dir):
    ds = SyntheticWeather(tiny_clean_dir, TASKS, crop=32, length=16, clean_prob=0.25, seed=3)
    a, b = ds[5], ds[5]
    assert torch.equal(a["lq"], b["lq"]) and torch.equal(a["gt"], b["gt"])
    assert a["lq"].shape == (3, 32, 32) and a["lq"].dtype == torch.float32
    labels = [ds[i]["task"] for i in range(16)]
    assert set(labels) <= set(range(len(TASKS) + 1))
    for i in range(16):
        item = ds[i]
        assert (item["task"] == len(TASKS)) == torch.equal(item["lq"], item["gt"])
    ds.set_epoch(1)
    assert not torch.equal(ds[5]["gt"], a["gt"]) or not torch.equal(ds[5]["lq"], a["lq"])


def test_train_and_val_split_are_disjoint(tiny_clean_dir):
    files = sorted(tiny_clean_dir.iterdir())
    train, val = split_clean(files, 4, "train"), split_clean(files, 4, "val")
    assert set(train).isdisjoint(val)
    assert sorted(train + val) == files
    assert len(val) == 3


def test_paired_folder_whole_and_cropped(tiny_paired_dir):
    ds = PairedFolder(tiny_paired_dir, task_index=2)
    item = ds[0]
    assert item["lq"].shape == item["gt"].shape == (3, 72, 96)
    assert item["task"] == 2 and item["name"] == "p0.png"
    cropped = PairedFolder(tiny_paired_dir, task_index=2, crop=32)[1]
    assert cropped["lq"].shape == (3, 32, 32)


def test_paired_folder_errors_name_the_path(tmp_path, tiny_paired_dir):
    with pytest.raises(DataError, match="not found"):
        PairedFolder(tmp_path / "nope", 0)
    (tmp_path / "empty" / "input").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        PairedFolder(tmp_path / "empty", 0)
    broken = tmp_path / "broken"
    (broken / "input").mkdir(parents=True)
    (broken / "target").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(broken / "input" / "a.png")
    with pytest.raises(DataError, match="missing target.*a.png"):
        PairedFolder(broken, 0)
    (broken / "target" / "a.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot read image"):
        PairedFolder(broken, 0)[0]


def test_list_file_derives_targets(tmp_path):
    for sub in ("input", "gt"):
        (tmp_path / "allweather" / sub).mkdir(parents=True)
        Image.fromarray(np.full((20, 24, 3), 100, np.uint8)).save(tmp_path / "allweather" / sub / "im1.png")
    listing = tmp_path / "train.txt"
    listing.write_text("allweather/input/im1.png\n\n")
    ds = ListFile(listing, task_index=1)
    assert len(ds) == 1 and ds[0]["gt"].shape == (3, 20, 24)
    listing.write_text("allweather/input/missing.png\n")
    with pytest.raises(DataError, match="missing.png"):
        ListFile(listing, task_index=1)
    listing.write_text("")
    with pytest.raises(DataError, match="empty"):
        ListFile(listing, task_index=1)


def test_sources_reject_unknown_tasks():
    assert parse_sources(["haze=/d"], TASKS)[0][0] == 2
    with pytest.raises(DataError, match="unknown task 'fog'"):
        parse_sources(["fog=/d"], TASKS)
    with pytest.raises(DataError, match="task=PATH"):
        parse_sources(["/d"], TASKS)


def test_synthetic_rejects_unknown_generator(tiny_clean_dir):
    with pytest.raises(DataError, match="no synthetic generator"):
        SyntheticWeather(tiny_clean_dir, ["fog"], crop=32, length=4)
