"""Random TAPNets for tests and benchmarks: deterministic, and no block left as the identity."""

import torch

from training.random_model import RESIDUAL_SCALES, random_model


def test_the_same_seed_gives_the_same_weights_and_another_seed_other_ones():
    a, b, c = random_model(seed=1).state_dict(), random_model(seed=1).state_dict(), random_model(seed=2).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_every_residual_scale_is_randomized():
    scales = [p for name, p in random_model().named_parameters() if name.endswith(RESIDUAL_SCALES)]
    assert scales and all(bool((p != 0).all()) for p in scales)


def test_tasks_replace_the_variants_own():
    model = random_model(tasks=("rain", "fog"))
    assert model.tasks == ["rain", "fog"] and not model.training
