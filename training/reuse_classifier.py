"""Carry a trained auto-mode classifier over to a model whose prompts were tuned again.

The classifier is the degradation encoder, the learned `clean` key and a linear map from each
task's prompt vector to its key. A new backbone needs new prompts (stage 2), which moves every
task vector; a fresh classifier costs 25-40 min of training and its real-photo accuracy varies by
a few photos from run to run. The encoder never looks at the backbone, so it is kept as it is;
the map is solved again, with the least change to its weights, so that each new task vector
lands on the old key: auto mode then decides exactly as the old model did.
"""

from dataclasses import replace

import torch

from model.net import TAPNet

MUST_MATCH = ("tasks", "embed_dim", "temperature")  # what the keys are made of and compared with
COPIED = (  # the classifier's shape and view, and its calibration: the same decisions, so the same rule
    "encoder_widths",
    "encoder_blocks",
    "classifier_view",
    "classifier_size",
    "classifier_max_side",
    "classifier_temperature",
    "auto_clean_threshold",
    "auto_min_weather_prob",
    "auto_mixture_min_prob",
    "auto_mixture_margin",
)


def reuse_classifier(model: TAPNet, donor: TAPNet) -> TAPNet:
    """`model` with `donor`'s encoder, clean key, view and a key map re-solved for `model`'s prompts."""
    mismatched = [f for f in MUST_MATCH if getattr(model.cfg, f) != getattr(donor.cfg, f)]
    if mismatched:
        raise ValueError(f"the classifier's model differs in {mismatched}: its keys cannot be carried over")
    model.cfg = replace(model.cfg, **{f: getattr(donor.cfg, f) for f in COPIED})
    model.rebuild_encoder(donor.cfg.encoder_blocks)  # the donor's shape, widths included; weights below
    with torch.no_grad():
        model.encoder.load_state_dict(donor.encoder.state_dict())
        model.keys.clean.copy_(donor.keys.clean)
        old_keys = donor.keys.proj(donor.prompts.task_vectors())  # (T, E), before normalising
        vectors = model.prompts.task_vectors()  # (T, D)
        proj = donor.keys.proj
        residual = old_keys - proj(vectors)  # what the donor's map gets wrong for the new vectors
        model.keys.proj.weight.copy_(proj.weight + residual.t() @ torch.linalg.pinv(vectors).t())
        model.keys.proj.bias.copy_(proj.bias)
        error = (model.keys.proj(vectors) - old_keys).abs().max().item()
    if error > 1e-4 * max(1.0, old_keys.abs().max().item()):
        raise ValueError(f"the new task vectors are not independent: keys off by {error:.2e}")
    return model
