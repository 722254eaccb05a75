"""tune-classifier on a bank of views: the auto-mode classifier trained in minutes on a CPU.

The views are drawn once from the configured mixture (real photos labelled by weather beside
synthetic weather; ClassifierConfig says how a view is cut, exactly as tune-classifier cuts it),
and stored as 8-bit images. The encoder's first `frozen_levels` levels (learnt on synthetic
weather: edges, streaks, contrast) run once over the bank; the levels above them, the pooled
head and the key projection then train for many epochs on the cached features. A run of the
plain loop (`tune-classifier`) cost ~5 s a step on two busy cores; this trains in minutes (2.5 min here).
Restoration stays bit-identical: only encoder and key parameters change.
"""

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from model.checkpoint import load_model, save_weights
from model.net import TAPNet
from training.config import TrainConfig, save_config, to_dict
from training.loops import autocast_for, build_training_set, labelled_views, lr_lambda, seed_everything

log = logging.getLogger(__name__)

BANK_FILE = "view_bank.pt"
TRAINING_ONLY = ("frozen_levels", "bank_epochs")  # classifier settings that leave the bank as it was


@dataclass
class ViewBank:
    views: torch.Tensor  # (N, 3, V, V) uint8
    labels: torch.Tensor  # (N,) class index; the last class is `clean`


def draw_bank(cfg: TrainConfig, tasks: list[str], count: int, batch: int = 32) -> ViewBank:
    """`count` classifier views from the configured training mixture, relabelled as
    ClassifierStep relabels them (weather that vanishes in its view is `clean`)."""
    dataset = build_training_set(cfg, tasks)
    clean = len(tasks)
    views, labels = [], []
    for start in range(0, count, batch):
        items = [dataset[i] for i in range(start, min(count, start + batch))]
        lq = torch.stack([it["lq"] for it in items])
        gt = torch.stack([it["gt"] for it in items])
        task = torch.tensor([int(it["task"]) for it in items])
        view, task = labelled_views(lq, gt, task, cfg.classifier, clean)
        views.append((view.clamp(0, 1) * 255).round().to(torch.uint8))
        labels.append(task)
    return ViewBank(torch.cat(views), torch.cat(labels))


def cached_bank(cfg: TrainConfig, tasks: list[str], count: int, path: Path) -> ViewBank:
    """draw_bank, kept in the run folder: a rerun with the same data and view config reuses it."""
    view = {k: v for k, v in to_dict(cfg)["classifier"].items() if k not in TRAINING_ONLY}
    key = repr((to_dict(cfg)["data"], view, cfg.seed, tasks, count))
    if path.is_file():
        saved = torch.load(path)
        if saved["key"] == key:
            return ViewBank(saved["views"], saved["labels"])
    bank = draw_bank(cfg, tasks, count)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"key": key, "views": bank.views, "labels": bank.labels}, path)
    return bank


def split_encoder(model: TAPNet, frozen_levels: int) -> tuple[nn.Sequential, nn.Sequential]:
    """The encoder's feature layers cut after `frozen_levels` strided convs (with their blocks)."""
    layers = list(model.encoder.features)
    starts = [i for i, layer in enumerate(layers) if isinstance(layer, nn.Conv2d) and layer.stride == (2, 2)]
    if not 0 <= frozen_levels < len(starts):
        raise ValueError(f"frozen_levels must be in [0, {len(starts) - 1}], got {frozen_levels}")
    cut = starts[frozen_levels]
    return nn.Sequential(*layers[:cut]), nn.Sequential(*layers[cut:])


@torch.no_grad()
def frozen_features(lower: nn.Sequential, bank: ViewBank, batch: int = 64) -> torch.Tensor:
    """The lower levels' output over the bank (fp16, to halve the memory)."""
    out = [lower(bank.views[i : i + batch].float() / 255 * 2 - 1).half() for i in range(0, len(bank.views), batch)]
    return torch.cat(out)


def upper_logits(model: TAPNet, upper: nn.Sequential, feats: torch.Tensor) -> torch.Tensor:
    """Logits over classes from cached lower-level features (DegradationEncoder.forward's top half)."""
    return model.class_logits(model.encoder.pooled_embedding(upper(feats.float())))


def tune_classifier_bank(cfg: TrainConfig, out_dir: Path) -> TAPNet:
    """Fine-tune cfg.init's classifier on a bank of cfg.classifier.bank_size views, the first
    cfg.classifier.frozen_levels levels frozen, for bank_epochs passes at data.batch_size;
    saves model.safetensors."""
    if not cfg.init:
        raise ValueError("tune-classifier needs a prompt-tuned checkpoint: --init PATH/model.safetensors")
    seed_everything(cfg.seed)
    model = load_model(Path(cfg.init))[0].eval()
    view = cfg.classifier
    bank_size, frozen_levels, epochs, batch = view.bank_size, view.frozen_levels, view.bank_epochs, cfg.data.batch_size
    model.cfg = replace(
        model.cfg, classifier_view=view.view_mode, classifier_size=view.view_size, classifier_max_side=view.max_side
    )
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    lower, upper = split_encoder(model, frozen_levels)
    bank = cached_bank(cfg, model.tasks, bank_size, out_dir / BANK_FILE)
    log.info("view bank: %d views, per class %s", len(bank.labels), torch.bincount(bank.labels).tolist())
    feats = frozen_features(lower, bank)
    params = model.freeze_for("classifier")
    for p in lower.parameters():
        p.requires_grad_(False)
    params = [p for p in params if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    steps = max(1, math.ceil(epochs * len(feats) / batch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(replace(cfg, steps=steps)))
    gen = torch.Generator().manual_seed(cfg.seed)
    upper.train()
    order = torch.randperm(len(feats), generator=gen)
    cursor = 0
    for step in range(steps):
        if cursor + batch > len(order):
            order, cursor = torch.randperm(len(feats), generator=gen), 0
        idx = order[cursor : cursor + batch]
        cursor += batch
        with autocast_for(torch.device("cpu"), cfg.amp):
            logits = upper_logits(model, upper, feats[idx]).float()
        loss = F.cross_entropy(logits, bank.labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        optimizer.step()
        scheduler.step()
        if (step + 1) % cfg.log_every == 0 or step + 1 == steps:
            acc = (logits.argmax(1) == bank.labels[idx]).float().mean().item()
            lr = scheduler.get_last_lr()[0]
            log.info("step %d/%d loss %.4f acc %.3f lr %.2e", step + 1, steps, loss.item(), acc, lr)
        if (step + 1) % cfg.save_every == 0:
            save_weights(model, out_dir / "model.safetensors", {"stage": "tune-classifier-bank", "step": step + 1})
    model.eval().requires_grad_(False)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / "config.yaml")
    meta = {"stage": "tune-classifier-bank", "config": to_dict(cfg), "bank_size": bank_size}
    save_weights(model, out_dir / "model.safetensors", meta | {"frozen_levels": frozen_levels, "epochs": epochs})
    return model
