"""Degradation encoder: the auto-mode classifier, aligned with task keys by InfoNCE."""

import torch
import torch.nn.functional as F
from torch import nn

from service.classifier_view import ClassifierView


def encoder_view(image: torch.Tensor, view: ClassifierView) -> torch.Tensor:
    """Resize a batch as the service resizes a whole photo for the classifier."""
    size = view.shape(*image.shape[-2:])
    if tuple(image.shape[-2:]) == size:
        return image
    return F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)


class DegradationEncoder(nn.Module):
    """Small strided CNN -> (mean, std) global pooling -> unit-norm embedding.

    Std pooling keeps contrast statistics that haze and veiling change; both poolings are
    global, so any input size exports and runs.
    """

    def __init__(self, widths: tuple[int, ...], embed_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in widths:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GELU()]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(2 * c_in, 2 * c_in), nn.GELU(), nn.Linear(2 * c_in, embed_dim))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        f = self.features(image * 2 - 1)
        mu = f.mean((2, 3))
        std = (f - mu[:, :, None, None]).pow(2).mean((2, 3)).add(1e-6).sqrt()
        return F.normalize(self.head(torch.cat([mu, std], dim=1)), dim=1)


class TaskKeys(nn.Module):
    """Task keys derived from prompt vectors, plus a learned key for the `clean` class."""

    def __init__(self, prompt_dim: int, embed_dim: int, temperature: float) -> None:
        super().__init__()
        self.proj = nn.Linear(prompt_dim, embed_dim)
        self.clean = nn.Parameter(torch.randn(embed_dim) * 0.1)
        self.temperature = temperature

    def forward(self, task_vectors: torch.Tensor) -> torch.Tensor:
        """(T, D) -> (T + 1, E) unit keys; the last row is `clean`."""
        keys = torch.cat([self.proj(task_vectors), self.clean[None]], dim=0)
        return F.normalize(keys, dim=1)
