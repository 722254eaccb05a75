"""Training configuration: dataclasses, overridable from a YAML file and `--key=value` flags.

Unknown keys are errors, so a typo never silently trains the wrong thing. The resolved
config is saved beside every checkpoint.
"""

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from training.data_root import data_path


@dataclass
class DataConfig:
    clean_dir: str = data_path("clean")
    crop: int = 128
    batch_size: int = 8
    workers: int = 1
    samples_per_epoch: int = 4096
    severity_min: float = 0.1
    severity_max: float = 1.0
    clean_prob: float = 0.1  # share of untouched crops: teaches identity and the `clean` class
    mixed_prob: float = 0.0  # share of crops with two weathers stacked (labelled by the first)
    holdout_every: int = 11  # every Nth clean photo (sorted) is synthetic validation, never trained on
    paired: list[str] = field(default_factory=list)  # "task=DIR" with DIR/input and DIR/target
    lists: list[str] = field(default_factory=list)  # "task=FILE" AllWeather-style list files
    # Data engine (issue 12). 1: the original generators, synthetic + paired + lists concatenated
    # (today's training data, bit-identical; the ablation baseline). 2: realistic generators and
    # the weighted mixture below; every option from here on applies to version 2 only.
    synth_version: int = 2
    streaks_dir: str = data_path("rain-streaks")  # rendered streak layers for rain ("" = procedural only)
    depth_dir: str = data_path("rgbd-indoor")  # image/ + depth/ for RESIDE-style haze ("" = none)
    # Real pairs, mixed in by weight: random crops with scale jitter and flips, so 18 pairs are
    # seen often enough to matter but never as the same crop twice.
    real_pairs: list[str] = field(
        default_factory=lambda: [
            f"rain={data_path('train', 'rain-heavy')}",
            f"raindrop={data_path('train', 'raindrop')}",
        ]
    )
    # Sampling weights: an item comes from a source with probability weight / sum of weights.
    # Defaults: synthetic 1.0 (~83%), depth haze 0.12 (~10%), rain-heavy 0.06 (~5%: ~11 crops per pair
    # per 4096-sample epoch), raindrop 0.02 (~2%), each data.paired / data.lists entry 0.1.
    synthetic_weight: float = 1.0
    depth_haze_weight: float = 0.12
    real_pair_weights: list[float] = field(default_factory=lambda: [0.06, 0.02])  # one per real_pairs entry
    paired_weight: float = 0.1  # each data.paired / data.lists entry, in version 2
    # The rain of these additive-rain pairs (input = clip(target + S)), lifted off and added onto
    # the clean training photos (datasets.RainOnPhotos); 0 leaves the source out.
    rain_layers_dir: str = data_path("train", "rain-heavy")
    rain_layer_weight: float = 0.0
    # Share of version-2 inputs (any source) saved as an 8-bit JPEG of quality in
    # [jpeg_quality_min, jpeg_quality_max] before the network sees them, as a camera does after the
    # weather (training/synth/camera.py). 0 keeps the mixture bit-identical to before it existed.
    jpeg_prob: float = 0.0
    jpeg_quality_min: int = 40
    jpeg_quality_max: int = 95
    # Real photos labelled by weather (training/weather_photos.py; its train split only), for the
    # auto-mode classifier: `rain/`, `fog/` (haze), `clear/` and `snow-scene/` (clean). Each folder is
    # drawn equally often; a clean-labelled photo gets synthetic weather with probability
    # weather_photos_synthetic_prob (falling snow over lying snow, drops over a sky). "" or weight 0: off.
    weather_photos_dir: str = ""
    weather_photos_weight: float = 0.0
    weather_photos_synthetic_prob: float = 0.0
    # Do no harm (issue 30). flat_prob: share of synthetic-weather crops with a flat region (sky, wall)
    # painted into the clean photo before the weather (training/synth/flat.py). clear_photos_*: the
    # train split of weather-photos' clear folders as one more clean source, returned untouched with
    # probability clear_photos_identity_prob and otherwise under synthetic weather like data.clean_dir.
    flat_prob: float = 0.0
    clear_photos_dir: str = ""
    clear_photos_folders: list[str] = field(default_factory=lambda: ["clear"])
    clear_photos_weight: float = 0.0
    clear_photos_identity_prob: float = 0.5
    # Synthetic weather's task mix, one weight per task (rain, raindrop, haze, snow); empty = uniform
    # (the same draws as before it existed). The classifier's real photos have rain and fog, not
    # raindrops or falling snow: weight the synthetic set toward what the real set lacks.
    synthetic_task_weights: list[float] = field(default_factory=list)
    # Dense haze (issue 30): where the outdoor proxy's transmission is under this floor, the target
    # keeps the haze (the input dehazed at the floor) instead of inventing the scene behind it, which
    # taught dark smudges in dense grey skies. 0 = clean targets (as before); depth haze is unchanged.
    haze_transmission_floor: float = 0.0


@dataclass
class OptimConfig:
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.0
    warmup_steps: int = 100
    grad_clip: float = 1.0
    betas: tuple[float, float] = (0.9, 0.9)


@dataclass
class LossConfig:
    contrastive: bool = True  # InfoNCE (image embedding <-> task key) + prompt relatedness
    nce_weight: float = 0.05
    relatedness_weight: float = 0.05
    relatedness_batches: int = 8  # batches per task used to measure R
    # Stage 2: `clean` rows (lq == gt) also train restoration, each under a random task's prompt, so
    # every prompt learns to leave clean content alone (issue 30); False: they train the encoder only.
    identity_under_prompts: bool = False
    # The tasks whose prompts the identity rows use (drawn uniformly among them); empty = every task.
    identity_tasks: list[str] = field(default_factory=list)


@dataclass
class PromptConfig:
    """Prompt architecture: a stage-2 choice, applied on top of the pretrained backbone."""

    mode: str = "lowrank"  # lowrank: G + U S[t] V;  full: G + dense per-task tokens
    tokens: int = 16
    rank: int = 8


@dataclass
class ClassifierConfig:
    """tune-classifier: how photos are shown to the degradation encoder.

    Inference (saved into the model, so export and the service use the same;
    `contract.classifier_view`): `view_mode` `patches` cuts the photo, its longer side shrunk to
    `max_side`, into squares of `view_size` px and averages their log-probabilities;
    `longer_side` shows the whole photo with its longer side shrunk to `view_size` (never
    enlarged). Training: each `data.crop` crop yields a random square of `train_view`·s px, s
    log-uniform in [1, max_shrink], resized to `train_view`, so weather is seen at the range of
    scales the inference view produces. A weather crop whose view stays within `visible_psnr` dB
    of its clean view (e.g. out-of-focus drops that vanish) is labelled `clean`: auto mode returns
    such photos untouched, and labelling them as weather teaches the classifier to call clean
    photos weather. 0 turns the relabelling off.

    `encoder_blocks` (one count per encoder level), when it differs from the checkpoint's, replaces
    its encoder with a freshly initialised one that has that many residual blocks after each
    strided conv; empty (or equal) keeps the checkpoint's encoder and fine-tunes it.
    """

    view_mode: str = "longer_side"
    view_size: int = 768
    max_side: int = 1024
    train_view: int = 160
    max_shrink: float = 2.0
    visible_psnr: float = 30.0
    encoder_blocks: tuple[int, ...] = ()
    # bank_size > 0: train on a bank of that many views drawn once (training/classifier_bank.py),
    # the encoder's first `frozen_levels` levels frozen and run once, for `bank_epochs` passes at
    # data.batch_size; `steps` is then unused.
    bank_size: int = 0
    frozen_levels: int = 2
    bank_epochs: float = 10.0


@dataclass
class TrainConfig:
    variant: str = "default"
    steps: int = 2000
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # bf16 autocast on CUDA and on CPUs with native bf16 (AVX512-BF16 / AMX); else fp32
    channels_last: bool = True  # NHWC activations and weights (oneDNN and cuDNN both prefer it)
    threads: int = 0  # torch intra-op threads on CPU; 0 = torch default (one per core)
    log_every: int = 20
    save_every: int = 500
    init: str = ""  # weights to start from (a model.safetensors); stage-specific meaning
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)


def _coerce(value: typing.Any, kind: typing.Any, key: str) -> typing.Any:
    """Convert a YAML/CLI value to the field's declared type."""
    origin = typing.get_origin(kind)
    if kind is bool:
        if isinstance(value, str):
            if value.lower() not in {"true", "false", "1", "0", "yes", "no"}:
                raise ValueError(f"{key}: expected a boolean, got {value!r}")
            return value.lower() in {"true", "1", "yes"}
        return bool(value)
    if kind in (int, float, str):
        return kind(value)
    if origin in (list, tuple):
        items = value.split(",") if isinstance(value, str) else list(value)
        items = [i for i in items if i != ""]
        inner = typing.get_args(kind)[0]
        converted = [_coerce(i, inner, key) for i in items]
        return tuple(converted) if origin is tuple else converted
    raise TypeError(f"{key}: unsupported config type {kind}")


def _apply(obj: typing.Any, updates: dict, prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    for key, value in updates.items():
        name = f"{prefix}{key}"
        if key not in hints:
            known = ", ".join(f"{prefix}{k}" for k in hints)
            raise KeyError(f"unknown config key {name!r}; known: {known}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"{name}: expected a mapping")
            _apply(current, value, prefix=f"{name}.")
        else:
            setattr(obj, key, _coerce(value, hints[key], name))


def parse_overrides(pairs: list[str]) -> dict:
    """['data.crop=64', 'steps=10'] -> nested dict."""
    nested: dict = {}
    for pair in pairs:
        key, sep, value = pair.removeprefix("--").partition("=")
        if not sep:
            raise ValueError(f"override {pair!r} must look like key=value")
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def load_config(
    yaml_path: Path | None = None, overrides: list[str] | None = None, base: TrainConfig | None = None
) -> TrainConfig:
    """Defaults <- YAML file (after the file it `extends`) <- command-line overrides."""
    cfg = base or TrainConfig()
    if yaml_path is not None:
        _apply_yaml(cfg, Path(yaml_path))
    _apply(cfg, parse_overrides(overrides or []))
    return cfg


def _apply_yaml(cfg: TrainConfig, path: Path, chain: tuple[Path, ...] = ()) -> None:
    """One YAML file onto cfg. `extends: other.yaml` (relative to the file) is applied first, so a
    stage that differs from another in a few keys says only those."""
    path = path.resolve()
    if path in chain:
        raise ValueError(f"config files extend each other in a cycle: {' -> '.join(map(str, (*chain, path)))}")
    data = yaml.safe_load(path.read_text()) or {}
    parent = data.pop("extends", None)
    if parent is not None:
        _apply_yaml(cfg, path.parent / str(parent), (*chain, path))
    _apply(cfg, data)


def to_dict(cfg: TrainConfig) -> dict:
    data = dataclasses.asdict(cfg)

    def listify(node: typing.Any) -> typing.Any:
        if isinstance(node, dict):
            return {k: listify(v) for k, v in node.items()}
        return list(node) if isinstance(node, tuple) else node

    return listify(data)


def save_config(cfg: TrainConfig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
