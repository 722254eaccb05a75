"""NAFNet-style building blocks: activation-free gated blocks plus down/up sampling.

Every op here exports to ONNX with dynamic N, H, W. Architecture 2 blocks see only a local
neighbourhood (no global pooling), so a photo restored in tiles matches it restored whole,
and upsample with bilinear interpolation, so a flat input gives a flat output (no stride grid).
The architecture-1 variants (global channel attention, pixel-shuffle upsampling) remain so that
checkpoints of the first bundled model still load.
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


class GlobalChannelAttention(nn.Conv2d):
    """NAFNet's simplified channel attention (architecture 1): scales channels by a 1x1 conv of
    their mean over the whole input, which is why tiles of a photo disagree with the whole."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * super().forward(x.mean((2, 3), keepdim=True))


class NAFBlock(nn.Module):
    """Gated conv block (depthwise 3x3 + gate) and a gated FFN.

    `global_attention` adds architecture 1's channel attention. The residual scales start at
    zero, so a freshly built block is the identity.
    """

    def __init__(self, channels: int, global_attention: bool = False, dw_expand: int = 2, ffn_expand: int = 2) -> None:
        super().__init__()
        dw = channels * dw_expand
        ffn = channels * ffn_expand
        self.norm1 = LayerNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, dw, 1)
        self.dwconv = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.gate = SimpleGate()
        self.sca = GlobalChannelAttention(dw // 2) if global_attention else nn.Identity()
        self.conv3 = nn.Conv2d(dw // 2, channels, 1)
        self.norm2 = LayerNorm2d(channels)
        self.conv4 = nn.Conv2d(channels, ffn, 1)
        self.conv5 = nn.Conv2d(ffn // 2, channels, 1)
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.sca(self.gate(self.dwconv(self.conv1(self.norm1(x)))))
        x = x + self.conv3(y) * self.beta
        y = self.conv5(self.gate(self.conv4(self.norm2(x))))
        return x + y * self.gamma


def stage(channels: int, depth: int, global_attention: bool = False) -> nn.Module:
    """`depth` NAF blocks in a row, or the identity when depth is 0."""
    if not depth:
        return nn.Identity()
    return nn.Sequential(*(NAFBlock(channels, global_attention) for _ in range(depth)))


class Downsample(nn.Module):
    """Halve resolution: a 2x2 stride-2 conv (= pixel-unshuffle + 1x1 conv), `out` channels."""

    def __init__(self, channels: int, out: int | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, out or channels * 2, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ShuffleUpsample(nn.Module):
    """Architecture 1: 1x1 conv then pixel shuffle. Each of the 4 output phases has its own
    weights, so a flat input comes back with a periodic pattern until training removes it."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 2, 1, bias=False)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


class BilinearUpsample(nn.Module):
    """Double resolution to `out` channels: 1x1 conv at low resolution, then bilinear x2.

    The two commute (both linear, interpolation weights sum to 1), so the conv runs on a
    quarter of the pixels; a constant input stays constant, so no pattern at the stride.
    """

    def __init__(self, channels: int, out: int | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, out or channels // 2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.conv(x), scale_factor=2.0, mode="bilinear", align_corners=False)
