"""The only code that knows the checkpoint format: safetensors weights + JSON config in metadata."""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from model.net import NetConfig, TAPNet

FORMAT = "tap-restore/checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into this architecture."""


def save_weights(model: TAPNet, path: Path, extra: dict | None = None) -> None:
    """Weights only (no optimizer), so a checkpoint alone rebuilds the model."""
    meta = {"format": FORMAT, "net": json.dumps(model.cfg.to_dict()), "extra": json.dumps(extra or {})}
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=meta)


def read_metadata(path: Path) -> dict:
    from safetensors import safe_open

    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a tap-restore checkpoint (format {meta.get('format')!r})")
    return meta


def load_model(path: Path, map_location: str = "cpu") -> tuple[TAPNet, dict]:
    """Rebuild the network from a checkpoint; returns (model, extra metadata)."""
    meta = read_metadata(path)
    cfg = NetConfig.from_dict(json.loads(meta["net"]))
    model = TAPNet(cfg)
    load_state(model, load_file(str(path), device=map_location), path)
    return model, json.loads(meta.get("extra", "{}"))


def load_state(model: TAPNet, state: dict[str, torch.Tensor], source: Path) -> None:
    """Strict load with a message that says what does not match."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in own.keys() & state.keys() if own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{source}: checkpoint does not match this architecture "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]}, shape mismatch {shapes[:5]})"
        )
    model.load_state_dict(state)
