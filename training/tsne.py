"""t-SNE evidence of task modelling: how each model separates weathers, with and without contrastive terms.

Two feature types per model, on held-out synthetic images (deterministic in the seed):
- encoder: the degradation encoder's embedding of the 128-px view (what auto mode decides on);
- prompted: the decoder's features under the image's own task prompt, mean-pooled at every
  prompted level and concatenated (each level unit-normalized, so every level counts equally).
  Clean photos get the mean task vector, the neutral prompt.
Panel titles carry the silhouette score in the original feature space (cosine), a number that
does not depend on the t-SNE layout.
"""

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from sklearn.manifold import TSNE
from sklearn.metrics import silhouette_score

from model.encoder import encoder_view
from model.net import TAPNet
from training import synth
from training.datasets import to_tensor
from training.evaluate import Sample, held_out_photos, synthetic_samples

CROP = 128  # held-out crops, the size prompt-tuning trains on

FEATURE_TITLES = {
    "encoder": "degradation encoder embedding",
    "prompted": "prompted decoder features (own-task prompt)",
}


def tsne_samples(model: TAPNet, clean_dir: Path, per_task: int, seed: int) -> list[Sample]:
    """per_task degraded crops per task with a generator, plus up to per_task clean crops."""
    photos = held_out_photos(clean_dir, CROP)
    samples = [
        s
        for t, task in enumerate(model.tasks)
        if task in synth.GENERATORS
        for s in synthetic_samples(photos, t, task, per_task, seed)
    ]
    clean = len(model.tasks)
    return samples + [Sample(f"#{k}", p, p, clean) for k, p in enumerate(photos[:per_task])]


@torch.no_grad()
def sample_features(model: TAPNet, samples: list[Sample]) -> dict[str, np.ndarray]:
    """(N, E) encoder embeddings and (N, sum of level channels) prompted features."""
    model.eval()
    pooled: list[torch.Tensor] = []
    hooks = [
        level.register_forward_hook(lambda _m, _args, out: pooled.append(F.normalize(out.mean((2, 3)), dim=1)))
        for level in model.prompts.levels
    ]
    vectors = model.task_vectors()
    prompts = torch.cat([vectors, vectors.mean(0, keepdim=True)])  # row per class; clean: neutral prompt
    encoder, prompted = [], []
    try:
        for s in samples:
            lq = to_tensor(s.lq)[None]
            encoder.append(model.embed(encoder_view(lq, model.cfg.view)))
            pooled.clear()
            model(lq, prompts[s.task][None])
            prompted.append(torch.cat(pooled, dim=1))
    finally:
        for hook in hooks:
            hook.remove()
    return {"encoder": torch.cat(encoder).numpy(), "prompted": torch.cat(prompted).numpy()}


def project(features: np.ndarray, seed: int) -> np.ndarray:
    """2-D t-SNE; perplexity ~n/3 for small sets (sklearn needs it below n), 30 for large ones."""
    perplexity = float(np.clip((len(features) - 1) / 3, 2.0, 30.0))
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)


def separation(features: np.ndarray, labels: np.ndarray) -> float | None:
    """Cosine silhouette score of the classes, or None where it is undefined."""
    if not 2 <= len(np.unique(labels)) < len(labels):
        return None
    return float(silhouette_score(features, labels, metric="cosine"))


def plot_tsne(models: dict[str, TAPNet], *, clean_dir: Path, out_path: Path, per_task: int = 40, seed: int = 0) -> None:
    """One PNG: a row per model, a panel per feature type, points coloured by class."""
    if per_task < 1:
        raise ValueError(f"per_task must be at least 1, got {per_task}")
    names = list(dict.fromkeys(c for model in models.values() for c in model.classes))
    palette = dict(zip(names, (f"C{i % 10}" for i in range(len(names))), strict=True))
    fig = Figure(figsize=(5.5 * len(FEATURE_TITLES), 4.5 * len(models)), layout="constrained")
    axes = fig.subplots(len(models), len(FEATURE_TITLES), squeeze=False)
    for row, (label, model) in enumerate(models.items()):
        samples = tsne_samples(model, Path(clean_dir), per_task, seed)
        if len(samples) < 3:
            raise ValueError(f"{label}: t-SNE needs at least 3 images, got {len(samples)}")
        classes = np.array([s.task for s in samples])
        for col, (kind, features) in enumerate(sample_features(model, samples).items()):
            xy = project(features, seed)
            ax = axes[row, col]
            for c, name in enumerate(model.classes):
                chosen = classes == c
                if chosen.any():
                    ax.scatter(xy[chosen, 0], xy[chosen, 1], s=14, color=palette[name], label=name)
            score = separation(features, classes)
            suffix = "" if score is None else f"\nsilhouette {score:.2f}"
            ax.set_title(f"{label}: {FEATURE_TITLES[kind]}{suffix}", fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
    handles = {h.get_label(): h for ax in axes.flat for h in ax.collections}
    fig.legend(list(handles.values()), list(handles), loc="outside right center", title="class")
    fig.suptitle(f"t-SNE of held-out synthetic images ({per_task} per class, seed {seed})")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
