"""Training and evaluation data: every dataset yields {"lq", "gt", "task"}.

- SyntheticWeather: on-the-fly pairs from a folder of clean photos (random crops,
  scale jitter, flips, task sampling, optional stacked weathers).
- PairedFolder: DIR/input and DIR/target with the same file names, one task per folder.
- ListFile: AllWeather-style lists (one input path a line; target path derived).
- DepthHaze: RESIDE-style haze on indoor photos with their real depth maps.
- RainOnPhotos: the rain of real additive-rain pairs added onto the clean training photos.
- LabelledPhotos: real photos labelled by weather, without clean references (auto-mode classifier).
- WeightedMix: draws each item from one of those sources with a configured probability, and
  saves a configured share of the inputs as JPEG (synth/camera.py).
`task` indexes the class list: the tasks, then `clean` last.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from training import synth
from training.config import DataConfig
from training.errors import DataError
from training.image_files import list_images, list_pairs, read_pair, read_rgb
from training.synth.assets import DepthBank, RainLayerBank, StreakBank
from training.synth.camera import check_quality, jpeg
from training.synth.flat import paint_flat_region
from training.synth.haze import depth_haze, photo_with_depth
from training.synth.rain import add_rain_layer
from training.weather_photos import FOLDER_CLASS, labelled_photos, split_files

__all__ = ["DataError", "DepthHaze", "ListFile", "PairedFolder", "RainOnPhotos", "SyntheticWeather", "WeightedMix"]


def split_clean(files: Sequence[Path], holdout_every: int, split: str) -> list[Path]:
    """Deterministic train/val split of clean photos: every Nth (sorted) is validation."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    held = {i for i in range(len(files)) if holdout_every and i % holdout_every == holdout_every // 2}
    return [f for i, f in enumerate(files) if (i in held) == (split == "val")]


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 or float -> (3, H, W) float32 in 0..1."""
    arr = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def random_crop(images: list[np.ndarray], size: int, rng: np.random.Generator, scale: float = 1.0) -> list[np.ndarray]:
    """Same crop from each image: a (size/scale)-square region resized to size, random flip."""
    h, w = images[0].shape[:2]
    region = min(int(round(size / scale)), h, w)
    top = int(rng.integers(0, h - region + 1))
    left = int(rng.integers(0, w - region + 1))
    flip = rng.random() < 0.5
    out = []
    for img in images:
        patch = img[top : top + region, left : left + region]
        if region != size:
            patch = np.asarray(Image.fromarray(patch).resize((size, size), Image.Resampling.BICUBIC))
        out.append(patch[:, ::-1] if flip else patch)
    return out


def random_photo_crop(images: Sequence[np.ndarray], crop: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop (scale jitter 0.5-1 where the photo is large enough, flip) of a random photo, float32."""
    img = images[int(rng.integers(len(images)))]
    scale = float(rng.uniform(0.5, 1.0)) if min(img.shape[:2]) >= 2 * crop else 1.0
    (patch,) = random_crop([img], crop, rng, scale)
    return patch.astype(np.float32) / 255.0


def task_probabilities(weights: Sequence[float], count: int) -> np.ndarray | None:
    """Per-task sampling probabilities from data.synthetic_task_weights; None (no weights) = uniform."""
    if not weights:
        return None
    if len(weights) != count or min(weights) < 0 or sum(weights) <= 0:
        raise DataError(f"synthetic_task_weights needs {count} weights >= 0 with a positive sum, got {list(weights)}")
    return np.asarray(weights, np.float64) / float(sum(weights))


def draw_task(rng: np.random.Generator, count: int, probs: np.ndarray | None) -> int:
    """A task index: uniform as always without weights (the same rng draw: older mixtures unchanged)."""
    return int(rng.integers(count)) if probs is None else int(rng.choice(count, p=probs))


class EpochSampled(Dataset):
    """A source drawn on the fly: item `index` of epoch `epoch` is `sample(rng)` with an rng seeded
    by (seed, epoch, index), so it is the same in any DataLoader worker and on any rerun."""

    seed: int
    length: int
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        return self.sample(np.random.default_rng([self.seed, self.epoch, index]))

    def sample(self, rng: np.random.Generator) -> dict:
        raise NotImplementedError


class SyntheticWeather(EpochSampled):
    """Clean crops degraded on the fly; deterministic for (seed, epoch, index)."""

    def __init__(
        self,
        clean_dir: Path,
        tasks: Sequence[str],
        crop: int,
        length: int,
        split: str = "train",
        holdout_every: int = 11,
        severity: tuple[float, float] = (0.1, 1.0),
        clean_prob: float = 0.1,
        mixed_prob: float = 0.0,
        seed: int = 0,
        generators: Mapping[str, synth.WeatherFn] | None = None,
        version: int = 1,
        streaks_dir: Path | None = None,
        task_weights: Sequence[float] = (),
        flat_prob: float = 0.0,
        files: Sequence[Path] | None = None,
        haze_floor: float = 0.0,
    ) -> None:
        if generators is None:  # v2 rain composites rendered streak layers, read once here
            streaks = StreakBank.load(Path(streaks_dir)) if version >= 2 and streaks_dir else None
            generators = synth.generators(version, streaks, haze_floor)
        unknown = sorted(set(tasks) - set(generators))
        if unknown:
            raise DataError(f"no synthetic generator for task(s) {unknown}; known: {list(generators)}")
        self.generators = generators
        if files is None:  # given: photos chosen by the caller (the weather-photos train split)
            files = split_clean(list_images(Path(clean_dir)), holdout_every, split)
        if not files:
            raise DataError(f"no {split} images in {clean_dir}")
        self.images = [read_rgb(f) for f in files]
        self.files = files
        self.tasks = list(tasks)
        self.crop, self.length, self.severity = crop, length, severity
        self.clean_prob, self.mixed_prob, self.seed = clean_prob, mixed_prob, seed
        self.flat_prob = flat_prob
        self.task_probs = task_probabilities(task_weights, len(self.tasks))
        self.epoch = 0

    def sample(self, rng: np.random.Generator) -> dict:
        """One pair drawn with `rng` (WeightedMix calls this with its own per-index rng)."""
        gt = random_photo_crop(self.images, self.crop, rng)
        if self.flat_prob > 0 and rng.random() < self.flat_prob:  # no draw at 0: older mixtures unchanged
            gt = paint_flat_region(gt, rng)
        if rng.random() < self.clean_prob:
            return {"lq": to_tensor(gt), "gt": to_tensor(gt), "task": len(self.tasks)}
        task = draw_task(rng, len(self.tasks), self.task_probs)
        lq, gt = synth.apply_pair(self.tasks[task], gt, rng, float(rng.uniform(*self.severity)), self.generators)
        if rng.random() < self.mixed_prob:
            other = self.tasks[int(rng.integers(len(self.tasks)))]
            lq = synth.apply(other, lq, rng, float(rng.uniform(*self.severity)) * 0.5, self.generators)
        return {"lq": to_tensor(lq), "gt": to_tensor(gt), "task": task}


class PairedFolder(Dataset):
    """DIR/input/NAME and DIR/target/NAME pairs for one task; crop=None yields whole images."""

    def __init__(self, root: Path, task_index: int, crop: int | None = None, seed: int = 0) -> None:
        self.pairs = list_pairs(root)
        self.task_index, self.crop, self.seed = task_index, crop, seed

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        lq_path, gt_path = self.pairs[index]
        lq, gt = read_pair(lq_path, gt_path)
        if self.crop is not None:
            rng = np.random.default_rng([self.seed, index, torch.randint(1 << 30, ()).item()])
            lq, gt = random_crop([lq, gt], self.crop, rng)
        return {"lq": to_tensor(lq), "gt": to_tensor(gt), "task": self.task_index, "name": lq_path.name}

    def sample(self, rng: np.random.Generator, scale: tuple[float, float] = (0.6, 1.1)) -> dict:
        """A random pair as a random crop (scale jitter, flip) of self.crop: few pairs, many crops.

        Decoded pairs are kept (a few dozen real pairs fit in memory; each worker fills its own).
        """
        index = int(rng.integers(len(self.pairs)))
        cache = self.__dict__.setdefault("_decoded", {})
        if index not in cache:
            cache[index] = read_pair(*self.pairs[index])
        lq, gt = cache[index]
        crop = self.crop or min(lq.shape[:2])
        lq, gt = random_crop([lq, gt], crop, rng, float(rng.uniform(*scale)))
        return {"lq": to_tensor(lq), "gt": to_tensor(gt), "task": self.task_index}


class ListFile(PairedFolder):
    """AllWeather-style list: one input path a line (relative to the list's folder).

    The target path replaces the `input_dir` path component with `target_dir` (AllWeather
    keeps inputs in input/ and ground truths in gt/).
    """

    def __init__(
        self,
        list_path: Path,
        task_index: int,
        crop: int | None = None,
        input_dir: str = "input",
        target_dir: str = "gt",
        seed: int = 0,
    ) -> None:
        list_path = Path(list_path)
        if not list_path.is_file():
            raise DataError(f"list file not found: {list_path}")
        lines = [ln.strip() for ln in list_path.read_text().splitlines() if ln.strip()]
        if not lines:
            raise DataError(f"list file is empty: {list_path}")
        self.pairs = []
        for line in lines:
            lq = (list_path.parent / line).resolve()
            parts = list(lq.parts)
            if input_dir not in parts:
                raise DataError(f"{list_path}: {line!r} has no '{input_dir}' folder to derive the target from")
            parts[len(parts) - 1 - parts[::-1].index(input_dir)] = target_dir
            gt = Path(*parts)
            for path in (lq, gt):
                if not path.is_file():
                    raise DataError(f"{list_path}: file not found: {path}")
            self.pairs.append((lq, gt))
        self.task_index, self.crop, self.seed = task_index, crop, seed


class DepthHaze(EpochSampled):
    """Indoor photos hazed through their real depth as RESIDE's ITS was made (see v2/haze.py).

    Depth maps are read once (320x240, a few dozen MB for 700); photos are decoded per item.
    """

    def __init__(
        self,
        root: Path,
        task_index: int,
        crop: int,
        length: int,
        severity: tuple[float, float] = (0.0, 1.0),
        seed: int = 0,
    ) -> None:
        self.bank = DepthBank.load(Path(root))
        self.task_index, self.crop, self.length = task_index, crop, length
        self.severity, self.seed, self.epoch = severity, seed, 0

    def sample(self, rng: np.random.Generator) -> dict:
        index = int(rng.integers(len(self.bank.images)))
        try:
            img, depth = photo_with_depth(read_rgb(self.bank.images[index]), self.bank.depths[index])
        except ValueError as e:
            raise DataError(f"{self.bank.images[index]}: {e}") from None
        scale = float(rng.uniform(0.5, 1.0)) if min(img.shape[:2]) >= 2 * self.crop else 1.0
        gt_u8, depth = random_crop([img, np.ascontiguousarray(depth)], self.crop, rng, scale)
        gt = gt_u8.astype(np.float32) / 255.0
        lq = depth_haze(gt, np.ascontiguousarray(depth), rng, float(rng.uniform(*self.severity)))
        return {"lq": to_tensor(lq), "gt": to_tensor(gt), "task": self.task_index}


class RainOnPhotos:
    """Rain lifted off real pairs (RainLayerBank) added onto clean training photos.

    The 18 `train/rain-heavy` pairs, cropped as they are, are 18 backgrounds the network can learn
    by heart (it restores them ~3 dB better than Rain100H-dev); their rain on the other photos
    makes it learn the rain. Same clip(clean + S) as the pairs were made; the layer is cropped
    with scale jitter and flipped on its own, its strength jittered.
    """

    def __init__(
        self,
        bank: RainLayerBank,
        images: Sequence[np.ndarray],
        task_index: int,
        crop: int,
        scale: tuple[float, float] = (0.6, 1.1),
        strength: tuple[float, float] = (0.75, 1.1),
    ) -> None:
        if not images:
            raise DataError("rain layers need clean photos to fall on: none were given")
        self.bank, self.images, self.task_index, self.crop = bank, images, task_index, crop
        self.scale, self.strength = scale, strength

    def sample(self, rng: np.random.Generator) -> dict:
        gt = random_photo_crop(self.images, self.crop, rng)
        layer = self.bank.layers[int(rng.integers(len(self.bank.layers)))]
        (rain,) = random_crop([layer], self.crop, rng, float(rng.uniform(*self.scale)))
        lq = add_rain_layer(gt, rain, float(rng.uniform(*self.strength)))
        return {"lq": to_tensor(lq), "gt": to_tensor(gt), "task": self.task_index}


class LabelledPhotos:
    """Random crops of real photos labelled by weather (the weather-photos train split), each
    folder drawn equally often. No clean reference exists, so lq == gt and the label is the
    folder's (ClassifierStep relabels only items whose lq differs from gt). With probability
    `synthetic_prob` a clean-labelled crop gets synthetic weather of a random task (gt stays the
    crop): falling snow over lying snow, drops over real skies."""

    def __init__(
        self,
        root: Path,
        tasks: Sequence[str],
        crop: int,
        generators: Mapping[str, synth.WeatherFn],
        synthetic_prob: float = 0.0,
        severity: tuple[float, float] = (0.1, 1.0),
        task_weights: Sequence[float] = (),
    ) -> None:
        classes = [*tasks, "clean"]
        missing = sorted(set(FOLDER_CLASS.values()) - set(classes))
        if missing:
            raise DataError(f"weather-photos labels {missing} are not classes of this model ({classes})")
        photos = labelled_photos(Path(root), "train")
        self.folders = [(classes.index(FOLDER_CLASS[f]), [read_rgb(p) for p in paths]) for f, paths in photos.items()]
        self.tasks, self.crop, self.generators = list(tasks), crop, generators
        self.synthetic_prob, self.severity = synthetic_prob, severity
        self.task_probs = task_probabilities(task_weights, len(self.tasks))

    def sample(self, rng: np.random.Generator) -> dict:
        label, images = self.folders[int(rng.integers(len(self.folders)))]
        gt = random_photo_crop(images, self.crop, rng)
        if label == len(self.tasks) and rng.random() < self.synthetic_prob:
            task = draw_task(rng, len(self.tasks), self.task_probs)
            lq = synth.apply(self.tasks[task], gt, rng, float(rng.uniform(*self.severity)), self.generators)
            return {"lq": to_tensor(lq), "gt": to_tensor(gt), "task": task}
        return {"lq": to_tensor(gt), "gt": to_tensor(gt), "task": label}


class Source(Protocol):
    def sample(self, rng: np.random.Generator) -> dict: ...


class WeightedMix(Dataset):
    """Each item comes from source k with probability weights[k] / sum(weights).

    Deterministic per (seed, epoch, index): the item's rng picks the source, then the source
    draws its pair from the same rng. Picklable (the sources are plain datasets).
    """

    def __init__(
        self,
        sources: Sequence[Source],
        weights: Sequence[float],
        length: int,
        seed: int = 0,
        jpeg_prob: float = 0.0,
        jpeg_quality: tuple[int, int] = (40, 95),
    ) -> None:
        if len(sources) != len(weights) or not sources:
            raise ValueError(f"need one weight per source: {len(sources)} sources, {len(weights)} weights")
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"source weights must be >= 0 with a positive sum, got {list(weights)}")
        if not 0 <= jpeg_prob <= 1:
            raise ValueError(f"data.jpeg_prob must be in [0, 1], got {jpeg_prob}")
        if jpeg_prob > 0:
            check_quality(jpeg_quality)
        self.sources = list(sources)
        self.probs = np.asarray(weights, dtype=np.float64) / float(sum(weights))
        self.length, self.seed, self.epoch = length, seed, 0
        self.jpeg_prob, self.jpeg_quality = jpeg_prob, jpeg_quality

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        for source in self.sources:
            if hasattr(source, "set_epoch"):
                source.set_epoch(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index, 1])  # 1: not the synthetic set's stream
        item = self.sources[int(rng.choice(len(self.sources), p=self.probs))].sample(rng)
        if self.jpeg_prob > 0 and rng.random() < self.jpeg_prob:  # no draw at 0: older mixtures unchanged
            item["lq"] = to_tensor(jpeg(item["lq"].permute(1, 2, 0).numpy(), rng, self.jpeg_quality))
        return item


def parse_sources(entries: Sequence[str], tasks: Sequence[str]) -> list[tuple[int, Path]]:
    """['rain=/data/rain100h', ...] -> [(task index, path)]; unknown tasks are errors."""
    sources = []
    for entry in entries:
        task, sep, path = entry.partition("=")
        if not sep:
            raise DataError(f"data source {entry!r} must look like task=PATH")
        if task not in tasks:
            raise DataError(f"unknown task {task!r} in {entry!r}; known: {list(tasks)}")
        sources.append((list(tasks).index(task), Path(path)))
    return sources


def rain_on_photos(d: DataConfig, tasks: Sequence[str], synthetic: SyntheticWeather | None) -> RainOnPhotos:
    """RainOnPhotos on the synthetic set's photos, already decoded (without them it has none)."""
    images = synthetic.images if synthetic is not None else []
    return RainOnPhotos(RainLayerBank.load(Path(d.rain_layers_dir)), images, list(tasks).index("rain"), d.crop)


def synthetic_options(d: DataConfig, seed: int) -> dict:
    """SyntheticWeather's keyword arguments as `d` describes them (callers override single ones)."""
    return {
        "length": d.samples_per_epoch,
        "split": "train",
        "holdout_every": d.holdout_every,
        "severity": (d.severity_min, d.severity_max),
        "clean_prob": d.clean_prob,
        "mixed_prob": d.mixed_prob,
        "seed": seed,
        "version": d.synth_version,
        "streaks_dir": Path(d.streaks_dir) if d.streaks_dir else None,
        "task_weights": d.synthetic_task_weights,
        "flat_prob": d.flat_prob,
        "haze_floor": d.haze_transmission_floor,
    }


def clear_photos(
    d: DataConfig, tasks: Sequence[str], seed: int, synthetic: SyntheticWeather | None
) -> SyntheticWeather:
    """The weather-photos train split of `d.clear_photos_folders` as a clean source: untouched with
    probability `d.clear_photos_identity_prob` (a clear sky must come back as it is), else under
    synthetic weather as the clean photos are. Never the dev split."""
    root = Path(d.clear_photos_dir)
    unknown = sorted(set(d.clear_photos_folders) - {f for f, c in FOLDER_CLASS.items() if c == "clean"})
    if unknown:
        raise DataError(f"data.clear_photos_folders {unknown} are not clean-labelled weather-photos folders")
    files = [p for folder in d.clear_photos_folders for p in split_files(root / folder, "train")]
    options = synthetic_options(d, seed) | {
        "clean_prob": d.clear_photos_identity_prob,
        "generators": synthetic.generators if synthetic is not None else None,
        "files": files,
    }
    return SyntheticWeather(root, tasks, d.crop, **options)


def training_mixture(d: DataConfig, tasks: Sequence[str], seed: int, synthetic: SyntheticWeather | None) -> WeightedMix:
    """Data engine v2: `synthetic` (built by the caller), depth haze, real pairs, paired folders
    and list files, each drawn with its configured weight; a zero weight leaves a source out."""
    if len(d.real_pair_weights) != len(d.real_pairs):
        raise DataError(f"data.real_pair_weights needs one weight per data.real_pairs entry: {d.real_pairs}")
    sources: list[Source] = []
    weights: list[float] = []

    def add(weight: float, make) -> None:
        if weight > 0:
            sources.append(make())
            weights.append(weight)

    if synthetic is not None:
        add(d.synthetic_weight, lambda: synthetic)
    if d.depth_dir and "haze" in tasks:
        severity = (d.severity_min, d.severity_max)
        haze = list(tasks).index("haze")
        add(
            d.depth_haze_weight, lambda: DepthHaze(Path(d.depth_dir), haze, d.crop, d.samples_per_epoch, severity, seed)
        )
    if d.rain_layers_dir and "rain" in tasks:
        add(d.rain_layer_weight, lambda: rain_on_photos(d, tasks, synthetic))
    if d.weather_photos_dir:
        generators = synthetic.generators if synthetic is not None else synth.generators(d.synth_version)
        severity = (d.severity_min, d.severity_max)
        add(
            d.weather_photos_weight,
            lambda: LabelledPhotos(
                Path(d.weather_photos_dir),
                tasks,
                d.crop,
                generators,
                d.weather_photos_synthetic_prob,
                severity,
                d.synthetic_task_weights,
            ),
        )
    if d.clear_photos_dir:
        add(d.clear_photos_weight, lambda: clear_photos(d, tasks, seed, synthetic))
    real = [entry for entry in d.real_pairs if entry.partition("=")[0] in tasks]  # add-task models may lack one
    real_weights = [w for entry, w in zip(d.real_pairs, d.real_pair_weights, strict=True) if entry in real]
    for (index, path), weight in zip(parse_sources(real, tasks), real_weights, strict=True):
        add(weight, lambda index=index, path=path: PairedFolder(path, index, d.crop, seed))
    for index, path in parse_sources(d.paired, tasks):
        add(d.paired_weight, lambda index=index, path=path: PairedFolder(path, index, d.crop, seed))
    for index, path in parse_sources(d.lists, tasks):
        add(d.paired_weight, lambda index=index, path=path: ListFile(path, index, d.crop, seed=seed))
    if not sources:
        raise ValueError("no training data: every source is off or has weight 0")
    quality = (d.jpeg_quality_min, d.jpeg_quality_max)
    return WeightedMix(sources, weights, d.samples_per_epoch, seed, d.jpeg_prob, quality)
