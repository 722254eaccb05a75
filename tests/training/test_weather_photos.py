"""The fixed dev/train split of weather-photos."""

import hashlib

import pytest
from PIL import Image

from training.weather_photos import is_dev, split_files


def test_dev_is_one_in_five_by_the_hash_of_the_bare_name(tmp_path):
    names = [f"mwd_{i}.jpg" for i in range(200)]
    for name in names:
        Image.new("RGB", (4, 4)).save(tmp_path / name)
    dev = split_files(tmp_path, "dev")
    train = split_files(tmp_path, "train")
    assert sorted(p.name for p in dev + train) == sorted(names)
    assert {p.name for p in dev} == {n for n in names if int(hashlib.sha256(n.encode()).hexdigest(), 16) % 5 == 0}
    assert 20 < len(dev) < 60 and all(is_dev(p.name) for p in dev)
    with pytest.raises(ValueError, match="split"):
        split_files(tmp_path, "val")
