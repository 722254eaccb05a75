"""NAFNet-style building blocks: activation-free gated blocks plus down/up sampling.

Every op here exports to ONNX with dynamic N, H, W. Architecture 2 blocks see only a local
neighbourhood (no global pooling), so a photo restored in tiles matches it restored whole,
and upsample with bilinear interpolation, so a flat input gives a flat output (no stride grid).
The architecture-1 variants (global channel attention, pixel-shuffle upsampling) remain so that
checkpoints of the first bundled model still load.
"""

import copy

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


# ---- inference form: the same function, in ops that keep onnxruntime's blocked conv layout ----


def _conv(weight: torch.Tensor, bias: torch.Tensor | None, groups: int = 1, padding: int = 0) -> nn.Conv2d:
    """A Conv2d holding the given (detached) weights."""
    out, inp, k = weight.shape[0], weight.shape[1] * groups, weight.shape[-1]
    conv = nn.Conv2d(inp, out, k, padding=padding, groups=groups, bias=bias is not None)
    conv.weight.data.copy_(weight)
    if bias is not None:
        conv.bias.data.copy_(bias)
    return conv


def _halves(conv: nn.Conv2d) -> tuple[nn.Conv2d, nn.Conv2d]:
    """The two convs giving the first and the second half of `conv`'s output channels."""
    half = conv.out_channels // 2
    groups = max(1, conv.groups // 2)  # depthwise: each half sees its own half of the inputs
    w, b, pad = conv.weight.detach(), conv.bias.detach(), conv.padding[0]
    return _conv(w[:half], b[:half], groups, pad), _conv(w[half:], b[half:], groups, pad)


def _after_norm(norm: LayerNorm2d, conv: nn.Conv2d) -> nn.Conv2d:
    """`conv` with the norm's per-channel affine folded in: conv(w * z + b) = conv'(z)."""
    w, b = norm.weight.detach().flatten(), norm.bias.detach().flatten()
    weight = conv.weight.detach()
    return _conv(weight * w.view(1, -1, 1, 1), conv.bias.detach() + weight.flatten(1) @ b, conv.groups)


def _scaled(conv: nn.Conv2d, scale: nn.Parameter) -> nn.Conv2d:
    """`conv` followed by a per-channel scale: conv(y) * s = conv'(y)."""
    s = scale.detach().flatten()
    return _conv(conv.weight.detach() * s.view(-1, 1, 1, 1), conv.bias.detach() * s, conv.groups)


class ConvChannelNorm(nn.Module):
    """Layer norm over channels, without affine, in ops that keep onnxruntime's fast paths.

    A LayerNormalization node over channels needs a transpose to channels-last and back around it.
    Here the channel mean is a C -> 1 conv with weights -1/C (a GEMV in the conv layout) added
    with a 1-channel broadcast: in INT8 its equal weights quantize exactly and the add stays a
    QLinearAdd (onnxruntime has no quantized Sub). The variance is the channel mean of the squares
    as a (1, C) x (C, H*W) MatMul: a conv there needed its input reordered to the blocked layout
    first, once per norm (bench/results/cpu_fast_path.md), and INT8 keeps it fp32 (8 bits cannot
    span a variance's range).
    """

    def __init__(self, channels: int, eps: float) -> None:
        super().__init__()
        self.register_buffer("negative_average", torch.full((1, channels, 1, 1), -1.0 / channels))
        self.register_buffer("average_row", torch.full((1, channels), 1.0 / channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        centered = x + F.conv2d(x, self.negative_average)  # (N, C, H, W) + (N, 1, H, W)
        squares = (centered * centered).reshape(n, c, h * w)
        var = torch.matmul(self.average_row, squares).reshape(n, 1, h, w)
        return centered * torch.rsqrt(var + self.eps)


class AffineConvNorm(ConvChannelNorm):
    """LayerNorm2d's inference form where no conv follows to take its affine."""

    def __init__(self, norm: LayerNorm2d) -> None:
        super().__init__(norm.weight.shape[1], norm.eps)
        self.weight, self.bias = nn.Parameter(norm.weight.detach().clone()), nn.Parameter(norm.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * self.weight + self.bias


class FusedNAFBlock(nn.Module):
    """NAFBlock's inference form: the same outputs within float rounding, in fewer layout changes.

    The gate's two halves come from two half-width convs (no Split), the norms' affines are
    folded into the 1x1 convs after them and the residual scales into the convs before them.
    """

    def __init__(self, block: NAFBlock) -> None:
        super().__init__()
        channels = block.norm1.weight.shape[1]
        self.norm1 = ConvChannelNorm(channels, block.norm1.eps)
        self.conv1_a, self.conv1_b = _halves(_after_norm(block.norm1, block.conv1))
        self.dw_a, self.dw_b = _halves(block.dwconv)
        self.sca = copy.deepcopy(block.sca)
        self.conv3 = _scaled(block.conv3, block.beta)
        self.norm2 = ConvChannelNorm(channels, block.norm2.eps)
        self.conv4_a, self.conv4_b = _halves(_after_norm(block.norm2, block.conv4))
        self.conv5 = _scaled(block.conv5, block.gamma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.norm1(x)
        x = x + self.conv3(self.sca(self.dw_a(self.conv1_a(z)) * self.dw_b(self.conv1_b(z))))
        z = self.norm2(x)
        return x + self.conv5(self.conv4_a(z) * self.conv4_b(z))


def inference_form(module: nn.Module) -> nn.Module:
    """A copy of `module` with every NAFBlock and LayerNorm2d in its inference form.

    Exact up to float rounding (tests/model/test_blocks.py); exported graphs use it because
    onnxruntime's CPU convs then stay in their blocked layout (bench/results/cpu_fast_path.md).
    """
    module = copy.deepcopy(module)
    _swap_in(module)
    return module


def _swap_in(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, NAFBlock):
            setattr(module, name, FusedNAFBlock(child))
        elif isinstance(child, LayerNorm2d):
            setattr(module, name, AffineConvNorm(child))
        else:
            _swap_in(child)
