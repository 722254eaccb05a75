"""Restoration, contrastive (InfoNCE) and prompt-relatedness losses, and PSNR for logging."""

import torch
import torch.nn.functional as F


def charbonnier(pred: torch.Tensor, gt: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Smooth L1: robust to the outliers that heavy streaks leave in the residual."""
    return torch.sqrt((pred - gt).pow(2) + eps * eps).mean()


def image_psnr(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """(N,) PSNR (dB) of each image, on values clamped to 0..1 (at most 100 dB)."""
    mse = (pred.detach().clamp(0, 1) - gt).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1.0 / mse)


def batch_psnr(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean PSNR (dB) over the batch, on values clamped to 0..1."""
    return image_psnr(pred, gt).mean()


def info_nce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """InfoNCE over task keys: each image's own key is the positive, the other keys negatives."""
    return F.cross_entropy(logits, labels)


def prompt_similarity(task_vectors: torch.Tensor) -> torch.Tensor:
    """Cosine similarity (T, T) between task prompt vectors."""
    v = F.normalize(task_vectors, dim=1)
    return v @ v.t()


def relatedness_loss(task_vectors: torch.Tensor, relatedness: torch.Tensor) -> torch.Tensor:
    """Pull the off-diagonal prompt similarities toward the measured relatedness R."""
    sim = prompt_similarity(task_vectors)
    off = ~torch.eye(len(sim), dtype=torch.bool, device=sim.device)
    return (sim - relatedness.to(sim))[off].pow(2).mean()
