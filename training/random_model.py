"""Deterministic random TAPNets for tests and benchmarks: no trained weights needed.

The residual scales start at zero, so every block of a fresh TAPNet is the identity: outputs
would not depend on most weights, and onnxruntime could fold work away. Randomizing them
gives every part an effect and the compute path of a trained model.
"""

from dataclasses import replace

import torch

from model.net import NET_VARIANTS, TAPNet

RESIDUAL_SCALES = ("beta", "gamma", "scale")  # parameter name endings of the zero-initialized scales


def random_model(variant: str = "tiny", seed: int = 0, tasks: tuple[str, ...] | None = None) -> TAPNet:
    """A NET_VARIANTS[variant] TAPNet (with `tasks` instead, if given) in eval mode, the same for the same seed."""
    torch.manual_seed(seed)
    cfg = NET_VARIANTS[variant] if tasks is None else replace(NET_VARIANTS[variant], tasks=tasks)
    model = TAPNet(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(RESIDUAL_SCALES):
                p.normal_(0.0, 0.2)
    return model.eval()
