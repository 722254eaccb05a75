"""The inference form of the blocks (model.blocks.inference_form): same outputs, other ops."""

from dataclasses import replace

import pytest
import torch

from model.blocks import FusedNAFBlock, LayerNorm2d, NAFBlock, inference_form
from model.net import NET_VARIANTS, TAPNet
from tests.conftest import make_tiny_model


def randomized(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random (norm affines and residual scales included), so folding them is tested."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return module.eval()


@pytest.mark.parametrize("global_attention", [False, True])
def test_fused_block_matches_the_block(global_attention):
    block = randomized(NAFBlock(16, global_attention))
    x = torch.randn(2, 16, 9, 13) * 3 + 1  # a mean far from 0: the norm must centre it
    with torch.no_grad():
        ref, got = block(x), FusedNAFBlock(block)(x)
    assert torch.allclose(got, ref, atol=1e-5, rtol=1e-5)


def test_inference_form_replaces_every_block_and_norm_and_keeps_the_outputs():
    model = make_tiny_model()
    fused = inference_form(model)
    kinds = {type(m) for m in fused.modules()}
    assert NAFBlock not in kinds and LayerNorm2d not in kinds
    assert NAFBlock in {type(m) for m in model.modules()}  # the original is left alone
    lq = torch.rand(3, 3, 40, 56)
    prompt = model.task_vectors()[torch.tensor([0, 1, 2])].detach()
    with torch.no_grad():
        assert (fused(lq, prompt) - model(lq, prompt)).abs().max() <= 1e-5


def test_inference_form_of_the_first_architecture():
    model = randomized(TAPNet(replace(NET_VARIANTS["tiny"], arch=1)))
    lq, prompt = torch.rand(1, 3, 32, 48), model.task_vectors()[:1].detach()
    with torch.no_grad():
        ref = model(lq, prompt)
        assert (inference_form(model)(lq, prompt) - ref).abs().max() <= 1e-5 * ref.abs().max()
