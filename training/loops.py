"""The training stages (four step modules). Each stage is a small step module (what one batch costs) and
which parameters train; `fit` is the one loop they share.

Stage 1 pretrain:    backbone on all weathers mixed, no task information (zero prompt).
Stage 2 prompt-tune: backbone frozen; prompt factors, task cores and encoder train with
                     restoration + InfoNCE + prompt-relatedness losses.
add-task:            only one new task core trains; every other output stays bit-identical.
tune-classifier:     only the degradation encoder and key projection train (auto mode gets its
                     own budget and batch size; restoration stays bit-identical).
"""

import csv
import json
import logging
import math
import random
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler, RandomSampler
from tqdm import tqdm

from model.checkpoint import load_model, save_weights
from model.encoder import encoder_view
from model.net import NET_VARIANTS, NetConfig, TAPNet
from training.config import ClassifierConfig, TrainConfig, save_config, to_dict
from training.datasets import (
    ListFile,
    PairedFolder,
    SyntheticWeather,
    parse_sources,
    synthetic_options,
    training_mixture,
)
from training.distributed import World, init_distributed, shutdown_distributed
from training.losses import batch_psnr, charbonnier, image_psnr, info_nce, prompt_similarity, relatedness_loss
from training.train_state import load_train_state, save_train_state

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
STATE_FILE = "train_state.safetensors"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda requested but CUDA is not available")
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX512-BF16 or AMX): there autocast is a speed-up,
    elsewhere oneDNN emulates bf16 and it is a slow-down."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def autocast_for(device: torch.device, enabled: bool):
    """bf16 autocast where the hardware has it (CUDA, bf16 CPUs), else a no-op context.

    Convolutions and matmuls run in bf16; losses, norms and the optimizer stay in fp32.
    """
    if enabled and (device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def masked_charbonnier(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Restoration loss over the rows where mask is set (all parameters stay in the graph for DDP)."""
    per_image = torch.sqrt((pred - gt).pow(2) + 1e-6).flatten(1).mean(1)
    return (per_image * mask).sum() / mask.sum().clamp_min(1)


class PretrainStep(nn.Module):
    """Stage 1: restore every weather with no prompt (the prompt levels are still identity)."""

    def __init__(self, model: TAPNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, lq: torch.Tensor, gt: torch.Tensor, task: torch.Tensor) -> tuple:
        pred = self.model(lq, lq.new_zeros(len(lq), self.model.prompt_dim))
        return charbonnier(pred, gt), pred, {}


class PromptTuneStep(nn.Module):
    """Stage 2: task prompts + contrastive alignment; `clean` rows train only the encoder, or with
    loss.identity_under_prompts also restoration to themselves under a random task's prompt.

    With contrastive=False the encoder still learns to classify (auto mode needs it), but
    against detached keys, so the contrastive terms do not shape the prompts.
    """

    def __init__(self, model: TAPNet, relatedness: torch.Tensor, cfg: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("relatedness", relatedness)
        self.loss_cfg = cfg.loss
        unknown = set(cfg.loss.identity_tasks) - set(model.tasks)
        if unknown:
            raise ValueError(f"loss.identity_tasks names unknown tasks {sorted(unknown)}; the model has {model.tasks}")
        names = cfg.loss.identity_tasks or model.tasks
        self.identity_tasks = torch.tensor([model.tasks.index(t) for t in names])

    def forward(self, lq: torch.Tensor, gt: torch.Tensor, task: torch.Tensor) -> tuple:
        vectors = self.model.task_vectors()  # (T, D)
        degraded = task < len(vectors)
        prompt_task = task.clamp(max=len(vectors) - 1)
        restored = degraded.float()
        if self.loss_cfg.identity_under_prompts:  # clean rows: a random task's prompt, target = input
            choice = self.identity_tasks[torch.randint(len(self.identity_tasks), task.shape)].to(task.device)
            prompt_task = torch.where(degraded, task, choice)
            restored = torch.ones_like(restored)
        pred = self.model(lq, vectors[prompt_task])
        restoration = masked_charbonnier(pred, gt, restored)
        keys = self.model.keys(vectors if self.loss_cfg.contrastive else vectors.detach())
        logits = self.model.embed(encoder_view(lq, self.model.cfg.view)) @ keys.t() / self.model.keys.temperature
        nce = info_nce(logits, task)
        loss = restoration + self.loss_cfg.nce_weight * nce
        stats = {"nce": nce.detach(), "acc": (logits.argmax(1) == task).float().mean()}
        if self.loss_cfg.contrastive:
            rel = relatedness_loss(vectors, self.relatedness)
            loss = loss + self.loss_cfg.relatedness_weight * rel
            stats["rel"] = rel.detach()
        return loss, pred, stats


class AddTaskStep(nn.Module):
    """add-task: restoration and InfoNCE for the new task, through its core only."""

    def __init__(self, model: TAPNet, task: str, nce_weight: float) -> None:
        super().__init__()
        self.model = model
        self.task_index = model.tasks.index(task)
        self.nce_weight = nce_weight

    def forward(self, lq: torch.Tensor, gt: torch.Tensor, task: torch.Tensor) -> tuple:
        vectors = self.model.task_vectors()
        pred = self.model(lq, vectors[self.task_index].expand(len(lq), -1))
        embedding = self.model.embed(encoder_view(lq, self.model.cfg.view))
        logits = embedding @ self.model.keys(vectors).t() / self.model.keys.temperature
        nce = info_nce(logits, torch.full_like(task, self.task_index))
        return charbonnier(pred, gt) + self.nce_weight * nce, pred, {"nce": nce.detach()}


def classifier_views(lq: torch.Tensor, gt: torch.Tensor, view: ClassifierConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the same random square of train_view·s px (s log-uniform in [1, max_shrink]) from
    lq and gt, resized to train_view: weather at the scales shrunk whole photos show it."""
    side = min(lq.shape[-2:])
    out_lq, out_gt = [], []
    for a, b in zip(lq, gt, strict=True):
        shrink = math.exp(float(torch.empty(()).uniform_(0, math.log(view.max_shrink))))
        size = min(side, round(view.train_view * shrink))
        top = int(torch.randint(lq.shape[-2] - size + 1, ()))
        left = int(torch.randint(lq.shape[-1] - size + 1, ()))
        pair = torch.stack([a, b])[:, :, top : top + size, left : left + size]
        if size != view.train_view:
            square = (view.train_view, view.train_view)
            pair = F.interpolate(pair, size=square, mode="bilinear", antialias=True, align_corners=False)
        out_lq.append(pair[0])
        out_gt.append(pair[1])
    return torch.stack(out_lq), torch.stack(out_gt)


def invisible_weather(lq: torch.Tensor, gt: torch.Tensor, visible_psnr: float) -> torch.Tensor:
    """(N,) True where a weather view is within visible_psnr dB of its clean view. Views equal to
    their "clean" view are not: they are clean crops (already labelled so) or real photos without
    a clean reference (LabelledPhotos), whose label stands."""
    changed = (lq != gt).flatten(1).any(1)
    return changed & (image_psnr(lq.float(), gt.float()) >= visible_psnr)


def labelled_views(
    lq: torch.Tensor, gt: torch.Tensor, task: torch.Tensor, view: ClassifierConfig, clean: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Classifier views of a batch and their labels: weather that vanishes in its view is `clean`."""
    views, clean_views = classifier_views(lq, gt, view)
    if view.visible_psnr > 0:
        task = torch.where(invisible_weather(views, clean_views, view.visible_psnr), clean, task)
    return views, task


class ClassifierStep(nn.Module):
    """tune-classifier: InfoNCE against fixed task keys on classifier views (ClassifierConfig);
    no restoration (pred is the input)."""

    def __init__(self, model: TAPNet, view: ClassifierConfig) -> None:
        super().__init__()
        self.model = model
        self.view = view
        self.clean = len(model.tasks)

    def forward(self, lq: torch.Tensor, gt: torch.Tensor, task: torch.Tensor) -> tuple:
        views, task = labelled_views(lq, gt, task, self.view, self.clean)
        keys = self.model.keys(self.model.task_vectors().detach())
        logits = self.model.embed(views) @ keys.t() / self.model.keys.temperature
        loss = info_nce(logits, task)
        stats = {"acc": (logits.argmax(1) == task).float().mean(), "clean": (task == self.clean).float().mean()}
        return loss, lq, stats


def synthetic_from(cfg: TrainConfig, tasks: list[str], **overrides) -> SyntheticWeather:
    """The synthetic training set that cfg.data describes, with per-use overrides."""
    d = cfg.data
    return SyntheticWeather(Path(d.clean_dir), tasks, d.crop, **(synthetic_options(d, cfg.seed) | overrides))


def build_training_set(cfg: TrainConfig, tasks: list[str], synthetic: bool = True) -> Dataset:
    """Synthetic pairs from clean photos, plus any paired folders and list files.

    Data engine v2 mixes every source by its configured weight (datasets.training_mixture);
    v1 concatenates them as before, bit-identical.
    """
    d = cfg.data
    if d.synth_version not in (1, 2):
        raise ValueError(f"data.synth_version must be 1 or 2, got {d.synth_version}")
    if d.synth_version == 2:
        return training_mixture(d, tasks, cfg.seed, synthetic_from(cfg, tasks) if synthetic else None)
    parts: list[Dataset] = [synthetic_from(cfg, tasks)] if synthetic else []
    parts += [PairedFolder(path, idx, d.crop, cfg.seed) for idx, path in parse_sources(d.paired, tasks)]
    parts += [ListFile(path, idx, d.crop, seed=cfg.seed) for idx, path in parse_sources(d.lists, tasks)]
    if not parts:
        raise ValueError("no training data: give data.clean_dir, data.paired or data.lists")
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


def make_loader(dataset: Dataset, cfg: TrainConfig, world: World) -> DataLoader:
    """Shuffled batches. A dataset shorter than an epoch (a few real pairs: random crops, so no two
    draws are alike) is drawn with replacement up to `samples_per_epoch`: with 4 pairs and batch 8 an
    epoch would otherwise hold no batch at all, and with 18 it would restart the workers every 2 steps."""
    gen = torch.Generator().manual_seed(cfg.seed)
    epoch = max(cfg.data.samples_per_epoch, cfg.data.batch_size * world.size)
    if world.size > 1:
        sampler = DistributedSampler(dataset, world.size, world.rank, shuffle=True, seed=cfg.seed, drop_last=True)
        if len(dataset) < epoch:
            raise ValueError(f"{len(dataset)} items is less than an epoch ({epoch}) for DDP; use a longer dataset")
    elif len(dataset) < epoch:
        sampler = RandomSampler(dataset, replacement=True, num_samples=epoch, generator=gen)
    else:
        sampler = RandomSampler(dataset, generator=gen)
    return DataLoader(
        dataset,
        batch_size=cfg.data.batch_size,
        sampler=sampler,
        num_workers=cfg.data.workers,
        drop_last=True,
        generator=gen,
        persistent_workers=False,
    )


def batches(loader: DataLoader, first_epoch: int = 0):
    """Endless iteration; each pass is a new epoch for samplers and synthetic datasets.

    A resumed run starts at epoch `first_epoch` (its step count), so it does not replay the
    crops it already trained on.
    """
    epoch = first_epoch
    while True:
        for holder in (loader.sampler, loader.dataset, *getattr(loader.dataset, "datasets", [])):
            if hasattr(holder, "set_epoch"):
                holder.set_epoch(epoch)
        yield from loader
        epoch += 1


def lr_lambda(cfg: TrainConfig):
    """Linear warm-up, then cosine decay to min_lr (as a factor of lr)."""
    o = cfg.optim

    def factor(step: int) -> float:
        if step < o.warmup_steps:
            return (step + 1) / o.warmup_steps
        progress = min(1.0, (step - o.warmup_steps) / max(1, cfg.steps - o.warmup_steps))
        return (o.min_lr + 0.5 * (o.lr - o.min_lr) * (1 + math.cos(math.pi * progress))) / o.lr

    return factor


def fit(
    step_module: nn.Module,
    params: list[nn.Parameter],
    dataset: Dataset,
    cfg: TrainConfig,
    out_dir: Path,
    stage: str,
    resume: bool = False,
    extra_meta: dict | None = None,
) -> TAPNet:
    """The shared training loop: AdamW + warm-up/cosine, bf16 autocast (CUDA and bf16 CPUs), DDP under torchrun,
    tqdm progress, CSV metrics, resumable safetensors checkpoints."""
    device = resolve_device(cfg.device)
    world = init_distributed(device)
    model: TAPNet = step_module.model
    if cfg.threads and device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    step_module.to(device)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    step_module.to(memory_format=memory_format)
    optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, betas=cfg.optim.betas, weight_decay=cfg.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    step = 0
    state_path = out_dir / STATE_FILE
    if resume and state_path.is_file():
        model.load_state_dict(load_model(out_dir / MODEL_FILE)[0].state_dict())
        step = load_train_state(state_path, optimizer, scheduler)
        log.info("resumed %s at step %d", out_dir, step)
    runner = DistributedDataParallel(step_module) if world.size > 1 else step_module
    amp = autocast_for(device, cfg.amp)
    meta = {"stage": stage, "config": to_dict(cfg), **(extra_meta or {})}
    if world.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
    csv_file = (out_dir / "metrics.csv").open("a", newline="") if world.is_main else None
    writer = csv.writer(csv_file) if csv_file else None
    bar = tqdm(total=cfg.steps, initial=step, desc=stage, disable=not world.is_main, dynamic_ncols=True)
    data = batches(make_loader(dataset, cfg, world), first_epoch=step)
    step_module.train()
    tick, seen = time.perf_counter(), 0
    while step < cfg.steps:
        batch = next(data)
        lq, gt = (batch[k].to(device, memory_format=memory_format, non_blocking=True) for k in ("lq", "gt"))
        task = batch["task"].to(device, non_blocking=True)
        with amp:
            loss, pred, stats = runner(lq, gt, task)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        optimizer.step()
        scheduler.step()
        step += 1
        seen += len(lq) * world.size
        if world.is_main and (step % cfg.log_every == 0 or step == cfg.steps):
            rate = seen / (time.perf_counter() - tick)
            row = {"loss": loss.item(), "psnr": batch_psnr(pred.float(), gt).item(), "img_s": rate}
            row |= {k: float(v) for k, v in stats.items()}
            bar.set_postfix({k: f"{v:.3g}" for k, v in row.items()})
            if csv_file.tell() == 0:
                writer.writerow(["step", "lr", *row])
            writer.writerow([step, f"{scheduler.get_last_lr()[0]:.3g}", *(f"{v:.5g}" for v in row.values())])
            csv_file.flush()
            tick, seen = time.perf_counter(), 0
        bar.update(1)
        if world.is_main and (step % cfg.save_every == 0 or step == cfg.steps):
            save_weights(model, out_dir / MODEL_FILE, meta | {"step": step})
            save_train_state(state_path, optimizer, scheduler, step)
    bar.close()
    if csv_file:
        csv_file.close()
    if world.size > 1:
        check_replicas(model, out_dir, world)
    shutdown_distributed()
    # Back to the default layout: channels-last weights pick other conv kernels (last-bit differences).
    return model.cpu().to(memory_format=torch.contiguous_format).eval().requires_grad_(False)


def check_replicas(model: TAPNet, out_dir: Path, world: World) -> None:
    """After DDP training every rank must hold the same weights; record and enforce it."""
    import torch.distributed as dist

    flat = torch.cat([p.detach().float().flatten().cpu() for p in model.parameters()])
    checksum = torch.tensor([flat.sum().item(), flat.abs().sum().item(), flat.pow(2).sum().item()], dtype=torch.float64)
    gathered = [torch.zeros_like(checksum) for _ in range(world.size)]
    dist.all_gather(gathered, checksum)
    if world.is_main:
        (out_dir / "replica_checksums.json").write_text(json.dumps([g.tolist() for g in gathered]))
    if any(not torch.equal(g, gathered[0]) for g in gathered):
        raise RuntimeError(f"DDP replicas diverged: {[g.tolist() for g in gathered]}")


def pretrain(cfg: TrainConfig, out_dir: Path, resume: bool = False) -> TAPNet:
    seed_everything(cfg.seed)
    if resume and (out_dir / MODEL_FILE).is_file():
        model = load_model(out_dir / MODEL_FILE)[0]  # the run's own architecture, whatever today's defaults
    elif cfg.init:
        model = with_fresh_prompts(load_model(Path(cfg.init))[0])
    else:
        model = TAPNet(NET_VARIANTS[cfg.variant])
    params = model.freeze_for("pretrain")
    dataset = build_training_set(cfg, model.tasks)
    return fit(PretrainStep(model), params, dataset, cfg, out_dir, "pretrain", resume)


@torch.no_grad()
def measure_relatedness(model: TAPNet, cfg: TrainConfig) -> torch.Tensor:
    """R[i, j]: cosine similarity of the shifts that weathers i and j cause in the pretrained
    backbone's bottleneck features (degraded minus clean, pooled, averaged over images)."""
    model.eval()
    n_tasks = len(model.tasks)
    batch = cfg.data.batch_size
    dataset = synthetic_from(
        cfg,
        model.tasks,
        length=n_tasks * batch * cfg.loss.relatedness_batches,
        clean_prob=0.0,
        mixed_prob=0.0,
        seed=cfg.seed + 1,
    )
    sums = torch.zeros(n_tasks, model.backbone.level_channels(model.cfg)[0])  # (T, C) of the bottleneck
    counts = torch.zeros(n_tasks)
    for b in DataLoader(dataset, batch_size=batch):
        shift = model.bottleneck_features(b["lq"]) - model.bottleneck_features(b["gt"])  # (B, C)
        sums.index_add_(0, b["task"], shift)
        counts += torch.bincount(b["task"], minlength=n_tasks)
    shifts = sums / counts.clamp_min(1)[:, None]
    # Centered, so R says how weathers differ from the average weather, not that all degrade.
    return prompt_similarity(shifts - shifts.mean(0, keepdim=True))


def with_fresh_prompts(trained: TAPNet, net_cfg: NetConfig | None = None) -> TAPNet:
    """`trained`'s backbone in a fresh network (of its architecture, or `net_cfg`): prompt levels
    back to the identity that stage 1 trains under, and a fresh encoder. A stage-1 checkpoint
    comes through unchanged in effect; a bundle's or stage 2's weights (trained prompt levels
    change the output even under a zero prompt) can then seed more stage-1 training."""
    model = TAPNet(net_cfg or trained.cfg)
    model.load_state_dict({k: v for k, v in trained.state_dict().items() if k.startswith("backbone.")}, strict=False)
    return model


def with_prompt_architecture(pretrained: TAPNet, cfg: TrainConfig) -> TAPNet:
    """A fresh network with cfg's prompt architecture, carrying the pretrained backbone."""
    p = cfg.prompt
    return with_fresh_prompts(
        pretrained, replace(pretrained.cfg, prompt_mode=p.mode, prompt_tokens=p.tokens, prompt_rank=p.rank)
    )


def prompt_tune(cfg: TrainConfig, out_dir: Path, resume: bool = False) -> TAPNet:
    """Stage 2 from a stage-1 checkpoint (cfg.init). Saves R beside the checkpoint."""
    if not cfg.init:
        raise ValueError("prompt-tune needs the pretrained checkpoint: --init PATH/model.safetensors")
    seed_everything(cfg.seed)
    model = with_prompt_architecture(load_model(Path(cfg.init))[0], cfg)
    relatedness = measure_relatedness(model, cfg)
    table = {"tasks": model.tasks, "R": [[round(v, 4) for v in row] for row in relatedness.tolist()]}
    log.info("measured task relatedness R:\n%s", format_matrix(model.tasks, relatedness))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "relatedness.json").write_text(json.dumps(table, indent=2))
    params = model.freeze_for("prompt-tune")
    dataset = build_training_set(cfg, model.tasks)
    step = PromptTuneStep(model, relatedness, cfg)
    return fit(step, params, dataset, cfg, out_dir, "prompt-tune", resume, {"relatedness": table})


def tune_classifier(cfg: TrainConfig, out_dir: Path, resume: bool = False) -> TAPNet:
    """Train the auto-mode classifier alone on a prompt-tuned model (cfg.init)."""
    if not cfg.init:
        raise ValueError("tune-classifier needs a prompt-tuned checkpoint: --init PATH/model.safetensors")
    seed_everything(cfg.seed)
    model = load_model(Path(cfg.init))[0]
    view = cfg.classifier
    if view.train_view > cfg.data.crop:
        raise ValueError(f"classifier.train_view ({view.train_view}) must be <= data.crop ({cfg.data.crop})")
    model.cfg = replace(
        model.cfg, classifier_view=view.view_mode, classifier_size=view.view_size, classifier_max_side=view.max_side
    )
    if view.encoder_blocks and view.encoder_blocks != model.cfg.encoder_blocks:
        model.rebuild_encoder(view.encoder_blocks)
        log.info("fresh degradation encoder with residual blocks %s", list(view.encoder_blocks))
    params = model.freeze_for("classifier")
    dataset = build_training_set(cfg, model.tasks)
    return fit(ClassifierStep(model, view), params, dataset, cfg, out_dir, "tune-classifier", resume)


def load_generator(spec: str):
    """'package.module:function' -> a weather generator `(image, rng, severity) -> image`."""
    import importlib

    module, sep, name = spec.partition(":")
    if not sep:
        raise ValueError(f"generator {spec!r} must look like package.module:function")
    return getattr(importlib.import_module(module), name)


def add_task(
    cfg: TrainConfig,
    out_dir: Path,
    task: str,
    paired: list[Path],
    generator: str | None = None,
    existing: bool = False,
) -> TAPNet:
    """Teach a trained model a new weather from paired folders and/or a synthetic generator.

    `existing=True` (tap-train tune-core) re-tunes a weather the model already has, e.g. on a
    few real pairs: again only that weather's core trains, so every other task stays bit-identical.
    """
    command = "tune-core" if existing else "add-task"
    if not cfg.init:
        raise ValueError(f"{command} needs a prompt-tuned checkpoint: --init PATH/model.safetensors")
    if not paired and not generator:
        raise ValueError(f"{command} needs --data DIR (paired input/target folders) or --generator MODULE:FUNC")
    seed_everything(cfg.seed)
    model = load_model(Path(cfg.init))[0]
    if not existing:
        model.add_task(task)
    elif task not in model.tasks:
        raise KeyError(f"tune-core: the model has no task {task!r}; known: {model.tasks} (add it with add-task)")
    params = model.freeze_for("add-task", task)
    index = model.tasks.index(task)
    d = cfg.data
    parts: list[Dataset] = [PairedFolder(path, index, d.crop, cfg.seed) for path in paired]
    if generator:
        parts.append(
            synthetic_from(cfg, [task], clean_prob=0.0, mixed_prob=0.0, generators={task: load_generator(generator)})
        )
    dataset = parts[0] if len(parts) == 1 else ConcatDataset(parts)
    step = AddTaskStep(model, task, cfg.loss.nce_weight)
    meta = {"tuned_task" if existing else "added_task": task}
    model = fit(step, params, dataset, cfg, out_dir, command, extra_meta=meta)
    save_prompt_core(model, task, out_dir)
    return model


def save_prompt_core(model: TAPNet, task: str, out_dir: Path) -> Path:
    """The new task's core alone (kilobytes): what a weather costs to ship."""
    from safetensors.torch import save_file

    path = out_dir / "prompts" / f"{task}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"core": model.prompts.cores[task].detach().clone()}, str(path))
    return path


def format_matrix(names: list[str], matrix: torch.Tensor) -> str:
    head = " " * 10 + "".join(f"{n:>10}" for n in names)
    rows = [f"{n:>10}" + "".join(f"{v:10.3f}" for v in row) for n, row in zip(names, matrix.tolist(), strict=True)]
    return "\n".join([head, *rows])
