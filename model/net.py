"""TAPNet: backbone + low-rank prompt bank + degradation encoder, and its size variants."""

from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch import nn

from contract.auto_rule import AutoRule
from contract.classifier_view import LONGER_SIDE, SQUARE, ClassifierView
from model.blocks import BilinearUpsample, Downsample, NAFBlock, ShuffleUpsample, stage
from model.encoder import DegradationEncoder, TaskKeys, encoder_views
from model.prompts import PromptBank

CLEAN_CLASS = "clean"
DEFAULT_TASKS = ("rain", "raindrop", "haze", "snow")
STAGES = ("pretrain", "prompt-tune", "add-task", "classifier")
ARCHITECTURES = (1, 2)  # 1: the first bundled model (global attention, pixel shuffle); 2: local, bilinear


@dataclass(frozen=True)
class NetConfig:
    """Everything needed to rebuild the network; saved in every checkpoint."""

    arch: int = 2
    width: int = 32
    full_res_width: int = 16  # arch 2: the full-resolution stem and refinement block
    enc_blocks: tuple[int, ...] = (1, 1, 2)
    middle_blocks: int = 4
    dec_blocks: tuple[int, ...] = (1, 1, 1)
    prompt_tokens: int = 16
    prompt_rank: int = 8
    prompt_mode: str = "lowrank"  # "full": dense per-task prompts (ablation)
    encoder_widths: tuple[int, ...] = (16, 32, 64, 128)
    encoder_blocks: tuple[int, ...] = ()  # residual blocks after each encoder conv; () = none
    embed_dim: int = 64
    temperature: float = 0.07
    tasks: tuple[str, ...] = field(default=DEFAULT_TASKS)
    # How a whole photo is shown to the encoder (contract.classifier_view); tune-classifier sets it.
    classifier_view: str = LONGER_SIDE
    classifier_size: int = 768
    classifier_max_side: int = 1024
    # Auto mode's calibration (tap-train calibrate): the photo-level temperature and the rule's
    # thresholds (contract.auto_rule.AutoRule); the defaults are those of uncalibrated bundles.
    classifier_temperature: float = 1.0
    auto_clean_threshold: float = 0.6
    auto_min_weather_prob: float = 0.0
    auto_mixture_min_prob: float = 0.3
    auto_mixture_margin: float = 0.2

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.arch}; this code builds {ARCHITECTURES}")
        _ = self.view, self.auto_rule  # raise on a bad view or rule

    @property
    def pad_multiple(self) -> int:
        """Input sides are padded to this: stem (2) times one halving per encoder level."""
        return 2 ** (len(self.enc_blocks) + 1)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "NetConfig":
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown NetConfig fields: {sorted(unknown)}")
        tuples = {k: tuple(v) for k, v in data.items() if isinstance(v, list)}
        # Checkpoints written before `arch` existed are the first architecture; before
        # `classifier_view` existed, the encoder saw photos squashed to a 128-px square.
        return cls(**{"arch": 1, "classifier_view": SQUARE, "classifier_size": 128, **data, **tuples})

    @property
    def view(self) -> ClassifierView:
        return ClassifierView(
            self.classifier_view, self.classifier_size, self.classifier_max_side, self.classifier_temperature
        )

    @property
    def auto_rule(self) -> AutoRule:
        return AutoRule(
            self.auto_clean_threshold, self.auto_min_weather_prob, self.auto_mixture_min_prob, self.auto_mixture_margin
        )


NET_VARIANTS: dict[str, NetConfig] = {
    "default": NetConfig(),
    "tiny": NetConfig(
        width=8,
        full_res_width=4,
        enc_blocks=(1, 1, 1),
        middle_blocks=1,
        dec_blocks=(1, 1, 1),
        prompt_tokens=4,
        prompt_rank=4,
        encoder_widths=(8, 16),
        embed_dim=16,
    ),
}


def mirror_tail(length: int, multiple: int, device: torch.device) -> torch.Tensor:
    """The indices that follow 0..length-1 back and forth over the side (symmetric reflection, edge
    sample repeated) up to the next multiple of `multiple`: valid down to a 1-pixel side."""
    forth = torch.arange(length, device=device)
    # `multiple` periods (the side, then the side backwards) cover any pad below `multiple`;
    # a `%` by the symbolic side would not export to ONNX.
    pad = (multiple - length % multiple) % multiple
    return torch.cat([forth, forth.flip(0)]).repeat(multiple)[length : length + pad]


def mirror_pad(image: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad (N, C, H, W) at the bottom/right to multiples of `multiple` with its mirror image.

    Training crops are multiples of the stride, so the backbone never learns what padding looks
    like: repeated edge pixels (replicate padding) turn a rain streak crossing the border into a
    flat smear, and a band of rain 2-3x the pad wide was left unrestored (Rain100H-dev, 481x321
    padded by 15: 21.73 dB with edge padding, 23.35 with this). Mirrored pixels look like photo.
    """
    h, w = image.shape[-2:]
    # Only the pad is gathered, then joined on: a Gather of the whole photo cost onnxruntime ~3 % of
    # a 512² restore on one thread, a Concat is a copy.
    image = torch.cat([image, image.index_select(-2, mirror_tail(h, multiple, image.device))], -2)
    return torch.cat([image, image.index_select(-1, mirror_tail(w, multiple, image.device))], -1)


class HalfResStem(nn.Conv2d):
    """Architecture 1: a 2x2 stride-2 conv straight from the image; no full-resolution features."""

    def __init__(self, width: int) -> None:
        super().__init__(3, width, 2, stride=2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return super().forward(x), x


class HalfResHead(nn.Sequential):
    """Architecture 1: 3x3 conv to 12 channels, pixel shuffle to the full-resolution residual."""

    def __init__(self, width: int) -> None:
        super().__init__(nn.Conv2d(width, 12, 3, padding=1), nn.PixelShuffle(2))

    def forward(self, feat: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
        for layer in self:
            feat = layer(feat)
        return feat


class FullResStem(nn.Module):
    """Architecture 2: a 3x3 conv at full resolution (kept as a skip), then 2x2 stride-2 down."""

    def __init__(self, full_width: int, width: int) -> None:
        super().__init__()
        self.intro = nn.Conv2d(3, full_width, 3, padding=1)
        self.down = Downsample(full_width, width)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        full = self.intro(x)  # (N, fw, H, W)
        return self.down(full), full


class FullResHead(nn.Module):
    """Architecture 2: bilinear up to full resolution, add the stem's features, one gated block
    there (it multiplies full-resolution detail by decoder guidance: what removing a one-pixel
    streak needs), then a 3x3 conv to the residual."""

    def __init__(self, width: int, full_width: int) -> None:
        super().__init__()
        self.up = BilinearUpsample(width, full_width)
        self.refine = NAFBlock(full_width)
        self.out = nn.Conv2d(full_width, 3, 3, padding=1)

    def forward(self, feat: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
        return self.out(self.refine(self.up(feat) + full))


class Backbone(nn.Module):
    """Conv encoder-decoder, stride 16: stem to 1/2 resolution, three halvings, a middle stage,
    three decoders with skips, and a head back to a full-resolution residual."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        w = cfg.width
        local = cfg.arch >= 2
        self.stem = FullResStem(cfg.full_res_width, w) if local else HalfResStem(w)
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        for depth in cfg.enc_blocks:
            self.encoders.append(stage(w, depth, global_attention=not local))
            self.downs.append(Downsample(w))
            w *= 2
        self.middle = stage(w, cfg.middle_blocks, global_attention=not local)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for depth in cfg.dec_blocks:
            self.ups.append(BilinearUpsample(w) if local else ShuffleUpsample(w))
            w //= 2
            self.decoders.append(stage(w, depth, global_attention=not local))
        self.head = FullResHead(w, cfg.full_res_width) if local else HalfResHead(w)

    def level_channels(self, cfg: NetConfig) -> list[int]:
        """Channels at each prompted point: after the middle, then after each decoder."""
        deepest = cfg.width * 2 ** len(cfg.enc_blocks)
        return [deepest // 2**i for i in range(len(cfg.dec_blocks) + 1)]


class TAPNet(nn.Module):
    """Restores `lq` under per-image prompt vectors; classifies degradations for auto mode."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        if len(cfg.enc_blocks) != len(cfg.dec_blocks):
            raise ValueError("enc_blocks and dec_blocks must have the same length")
        self.cfg = cfg
        self.backbone = Backbone(cfg)
        channels = self.backbone.level_channels(cfg)
        self.prompts = PromptBank(channels, cfg.prompt_tokens, cfg.prompt_rank, list(cfg.tasks), cfg.prompt_mode)
        self.encoder = DegradationEncoder(cfg.encoder_widths, cfg.embed_dim, cfg.encoder_blocks)
        self.keys = TaskKeys(self.prompts.prompt_dim, cfg.embed_dim, cfg.temperature)

    @property
    def tasks(self) -> list[str]:
        return self.prompts.tasks

    @property
    def classes(self) -> list[str]:
        return [*self.tasks, CLEAN_CLASS]

    @property
    def prompt_dim(self) -> int:
        return self.prompts.prompt_dim

    def task_vectors(self, tasks: list[str] | None = None) -> torch.Tensor:
        return self.prompts.task_vectors(tasks)

    def prompt_for(self, tasks: list[str]) -> torch.Tensor:
        """(N, D) prompt vectors for a list of task names, one per image."""
        unknown = sorted(set(tasks) - set(self.tasks))
        if unknown:
            raise KeyError(f"unknown task(s) {unknown}; known: {self.tasks}")
        return self.prompts.task_vectors(tasks)

    def forward(self, lq: torch.Tensor, prompt_vec: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in 0..1, (N, D) -> (N, 3, H, W); any H, W (padded, then cropped)."""
        h, w = lq.shape[-2:]
        x, full, feat, skips = self._encode(lq)
        bb = self.backbone
        prompts = self.prompts.split(prompt_vec)
        feat = self.prompts.levels[0](feat, prompts[0])
        levels = zip(bb.ups, bb.decoders, reversed(skips), self.prompts.levels[1:], prompts[1:], strict=True)
        for up, dec, skip, level, prompt in levels:
            feat = level(dec(up(feat) + skip), prompt)
        return (bb.head(feat, full) + x)[:, :, :h, :w]

    def _encode(self, lq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Padded input, full-resolution stem features, bottleneck features and skips (the
        prompt-free half of the backbone)."""
        x = mirror_pad(lq, self.cfg.pad_multiple)
        bb = self.backbone
        feat, full = bb.stem(x)
        skips = []
        for enc, down in zip(bb.encoders, bb.downs, strict=True):
            feat = enc(feat)
            skips.append(feat)
            feat = down(feat)
        return x, full, bb.middle(feat), skips

    def bottleneck_features(self, lq: torch.Tensor) -> torch.Tensor:
        """Globally pooled bottleneck features (N, C): used to measure task relatedness."""
        return self._encode(lq)[2].mean((2, 3))

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        """Unit-norm degradation embeddings (N, E)."""
        return self.encoder(image)

    def classify(self, image: torch.Tensor) -> torch.Tensor:
        """Logits (N, T + 1) over tasks then `clean`."""
        return self.class_logits(self.embed(image))

    def class_logits(self, embedding: torch.Tensor) -> torch.Tensor:
        """Logits (N, T + 1) of unit embeddings against the task keys and the `clean` key."""
        keys = self.keys(self.prompts.task_vectors())
        return embedding @ keys.t() / self.keys.temperature

    @torch.no_grad()
    def photo_probabilities(self, photo: torch.Tensor) -> np.ndarray:
        """Auto mode's class probabilities (T + 1,) for one photo (1, 3, H, W), seen as the service sees it."""
        logits = self.classify(encoder_views(photo, self.cfg.view))
        return self.cfg.view.pool(logits.double().cpu().numpy())

    def rebuild_encoder(self, blocks: tuple[int, ...]) -> None:
        """A freshly initialised degradation encoder with `blocks` residual blocks per level (cfg too,
        so the checkpoint rebuilds the same network)."""
        self.cfg = replace(self.cfg, encoder_blocks=tuple(blocks))
        self.encoder = DegradationEncoder(self.cfg.encoder_widths, self.cfg.embed_dim, self.cfg.encoder_blocks)

    def add_task(self, task: str) -> None:
        """A new task core, started from the mean of the existing ones (a neutral prompt)."""
        init = self.prompts.task_vectors().detach().mean(0) if self.tasks else None
        self.prompts.add_task(task, init)
        self.cfg = replace(self.cfg, tasks=tuple(self.tasks))

    def stage_parameters(self, stage_name: str, task: str | None = None) -> dict[str, nn.Parameter]:
        """Named parameters that train in a stage.

        pretrain: the backbone. prompt-tune: task-general prompt factors and interaction,
        all task cores, the degradation encoder and key projection. add-task: one task core.
        classifier: the encoder and key projection alone (restoration stays bit-identical).
        """
        named = dict(self.named_parameters())
        if stage_name == "pretrain":
            return {k: p for k, p in named.items() if k.startswith("backbone.")}
        if stage_name == "prompt-tune":
            return {k: p for k, p in named.items() if k.startswith(("prompts.", "encoder.", "keys."))}
        if stage_name == "classifier":
            return {k: p for k, p in named.items() if k.startswith(("encoder.", "keys."))}
        if stage_name == "add-task":
            if task not in self.tasks:
                raise KeyError(f"unknown task {task!r}; known: {self.tasks}")
            return {f"prompts.cores.{task}": self.prompts.cores[task]}
        raise ValueError(f"unknown stage {stage_name!r}; expected one of {STAGES}")

    def freeze_for(self, stage_name: str, task: str | None = None) -> list[nn.Parameter]:
        """Set requires_grad for a stage and return the trainable parameters."""
        trainable = self.stage_parameters(stage_name, task)
        for p in self.parameters():
            p.requires_grad_(False)
        for p in trainable.values():
            p.requires_grad_(True)
        return list(trainable.values())

    def parameter_budget(self) -> dict[str, int]:
        """Parameter counts by part, as reported by `tap-train model-info`."""

        def count(prefix: str) -> int:
            return sum(p.numel() for k, p in self.named_parameters() if k.startswith(prefix))

        cores = count("prompts.cores.")
        return {
            "backbone": count("backbone."),
            "task-general prompt factors": count("prompts.levels."),
            "task cores (all tasks)": cores,
            "task core (one task)": self.prompt_dim,
            "degradation encoder + keys": count("encoder.") + count("keys."),
            "total": sum(p.numel() for p in self.parameters()),
        }
