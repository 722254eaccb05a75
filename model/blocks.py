"""NAFNet-style building blocks: activation-free gated blocks plus down/up sampling.

Every op here exports to ONNX with dynamic N, H, W (no adaptive pooling other than a
global mean, no data-dependent control flow).
"""

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.Module):
    """Layer norm over channels of an (N, C, H, W) map.

    Channels-last `F.layer_norm` exports as one LayerNormalization node, which onnxruntime
    fuses; the written-out mean/variance form cost ~30 % of CPU inference time in ReduceMeans.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        y = F.layer_norm(x.permute(0, 2, 3, 1), (c,), self.weight.view(c), self.bias.view(c), self.eps)
        return y.permute(0, 3, 1, 2)


class SimpleGate(nn.Module):
    """Split channels in half and multiply: the nonlinearity of NAFNet."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=1)
        return x1 * x2


class NAFBlock(nn.Module):
    """Gated conv block with simplified channel attention and a gated FFN.

    The residual scales start at zero, so a freshly built block is the identity.
    """

    def __init__(self, channels: int, dw_expand: int = 2, ffn_expand: int = 2) -> None:
        super().__init__()
        dw = channels * dw_expand
        ffn = channels * ffn_expand
        self.norm1 = LayerNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, dw, 1)
        self.dwconv = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.gate = SimpleGate()
        self.sca = nn.Conv2d(dw // 2, dw // 2, 1)
        self.conv3 = nn.Conv2d(dw // 2, channels, 1)
        self.norm2 = LayerNorm2d(channels)
        self.conv4 = nn.Conv2d(channels, ffn, 1)
        self.conv5 = nn.Conv2d(ffn // 2, channels, 1)
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.gate(self.dwconv(self.conv1(self.norm1(x))))
        y = y * self.sca(y.mean((2, 3), keepdim=True))
        x = x + self.conv3(y) * self.beta
        y = self.conv5(self.gate(self.conv4(self.norm2(x))))
        return x + y * self.gamma


def stage(channels: int, depth: int) -> nn.Module:
    """`depth` NAF blocks in a row, or the identity when depth is 0."""
    return nn.Sequential(*(NAFBlock(channels) for _ in range(depth))) if depth else nn.Identity()


class Downsample(nn.Module):
    """Halve resolution, double channels (a 2x2 stride-2 conv = pixel-unshuffle + 1x1 conv)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 2, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double resolution, halve channels (1x1 conv then pixel shuffle)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 2, 1, bias=False)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))
