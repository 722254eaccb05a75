"""Degradation encoder: the auto-mode classifier, aligned with task keys by InfoNCE."""

import torch
import torch.nn.functional as F
from torch import nn

from contract.classifier_view import ClassifierView


def encoder_view(image: torch.Tensor, view: ClassifierView) -> torch.Tensor:
    """Resize a batch as the service resizes a whole photo for the classifier."""
    size = view.shape(*image.shape[-2:])
    if tuple(image.shape[-2:]) == size:
        return image
    return F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)


def encoder_views(photo: torch.Tensor, view: ClassifierView) -> torch.Tensor:
    """The batch of views the service shows the classifier for one photo (1, 3, H, W)."""
    resized = encoder_view(photo, view)
    boxes = view.boxes(*resized.shape[-2:])
    return torch.cat([resized[..., t : t + h, left : left + w] for t, left, h, w in boxes])


class ResidualBlock(nn.Module):
    """Depthwise 3x3, pointwise expand x2, GELU, pointwise back; starts as the identity.

    Gives the encoder depth (thin streaks against texture need more than one nonlinearity per
    scale) and a wider receptive field for a quarter of a dense 3x3 conv's parameters.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels),
            nn.Conv2d(channels, 2 * channels, 1),
            nn.GELU(),
            nn.Conv2d(2 * channels, channels, 1),
        )
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DegradationEncoder(nn.Module):
    """Small strided CNN -> (mean, std) global pooling -> unit-norm embedding.

    Each stride-2 conv is followed by `blocks[i]` residual blocks (none: the first bundled
    encoders, four plain convs). Std pooling keeps contrast statistics that haze and veiling
    change; both poolings are global, so any input size exports and runs.
    """

    def __init__(self, widths: tuple[int, ...], embed_dim: int, blocks: tuple[int, ...] = ()) -> None:
        super().__init__()
        if blocks and len(blocks) != len(widths):
            raise ValueError(f"encoder_blocks {blocks} needs one count per width {widths}")
        layers: list[nn.Module] = []
        c_in = 3
        for c, depth in zip(widths, blocks or (0,) * len(widths), strict=True):
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GELU()]
            layers += [ResidualBlock(c) for _ in range(depth)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(2 * c_in, 2 * c_in), nn.GELU(), nn.Linear(2 * c_in, embed_dim))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.pooled_embedding(self.features(image * 2 - 1))

    def pooled_embedding(self, f: torch.Tensor) -> torch.Tensor:
        """Unit embeddings from the last level's feature maps (N, C, h, w): mean/std pooling, head."""
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
