"""Does the restoration itself help auto mode decide? (issue 29, "measure whether it beats the
classifier alone; keep it only if it does")

The cue: each prompt restores a small view of the photo (longer side `--view`, 256 px), and how
much it changes the view (mean |ΔY|, grey levels) is one number per weather. Fog is what the haze
prompt changes a lot; a clear photo is what no prompt changes much. Combined with the classifier
as a correction of its photo-level log-probabilities, z = s + W f + b (f: the standardised log
changes, W and b fitted by L2-regularised cross-entropy), the classes without real photos
(raindrop, snow) keep their own scores unless the cue moves them.

Both deciders then go through the same protocol the shipped calibration uses
(`training.auto_mode`): a temperature fitted on the dev split of weather-photos, the rule's
thresholds chosen there so that >= 95 % of clear photos stay untouched, and the decisions of the
service's rule counted on the dev split and on `../shared/data/real`. W and b are fitted without
seeing the photo they decide: 5-fold cross-validation over the dev split (out-of-fold scores),
and on all dev photos for `real`. The cost is timed against the 1-MP restore it would precede.

Run: python -m bench.restoration_cue [--checkpoint W] [--view 256] [--quick]
"""

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.common import (
    BUNDLE_WEIGHTS,
    DEFAULT_BUNDLE,
    RESULTS,
    SHARED_DATA,
    CpuWatch,
    Report,
    available_cpus,
    command_line,
    machine_lines,
    md_table,
    write_markdown,
)

NAME = "restoration_cue"
FOLDS = 5
L2 = 0.05


def cue(model, rgb: np.ndarray, view: int) -> np.ndarray:
    """(T,) log1p of the mean |ΔY| (grey levels) each prompt makes on the photo's small view."""
    import torch

    from training.datasets import to_tensor
    from training.image_files import fit_longer_side
    from training.metrics import quantize, rgb_to_y

    small = fit_longer_side(rgb, view)
    x = to_tensor(small)[None].expand(len(model.tasks), -1, -1, -1)
    with torch.no_grad():
        out = model(x, model.task_vectors())
    y_in = rgb_to_y(small)
    outputs = quantize(out.permute(0, 2, 3, 1).numpy())
    changes = [np.abs(rgb_to_y(o) - y_in).mean() for o in outputs]
    return np.log1p(np.asarray(changes, dtype=np.float64))


def fit_correction(s: np.ndarray, f: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """W (C, F) and b (C,) minimising the cross-entropy of softmax(s + f W^T + b) + L2 |W|^2."""
    import torch

    s_t, f_t = torch.tensor(s), torch.tensor(f)
    y = torch.tensor(labels)
    w = torch.zeros(s.shape[1], f.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(s.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(s_t + f_t @ w.t() + b, y) + L2 * w.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach().numpy(), b.detach().numpy()


def corrected(scores, f: np.ndarray, w: np.ndarray, b: np.ndarray):
    """PhotoScores whose log-probabilities carry the cue."""
    s = np.stack([p.mean_log_probs for p in scores]) + f @ w.T + b
    s = s - np.log(np.exp(s - s.max(1, keepdims=True)).sum(1, keepdims=True)) - s.max(1, keepdims=True)
    return [replace(p, mean_log_probs=row) for p, row in zip(scores, s, strict=True)]


def out_of_fold(scores, f: np.ndarray) -> list:
    """Each dev photo scored by a correction fitted on the other folds (folds by position, stable)."""
    s = np.stack([p.mean_log_probs for p in scores])
    labels = np.array([p.label for p in scores])
    fold = np.arange(len(scores)) % FOLDS
    result = list(scores)
    for k in range(FOLDS):
        w, b = fit_correction(s[fold != k], f[fold != k], labels[fold != k])
        held = np.flatnonzero(fold == k)
        for i, p in zip(held, corrected([scores[i] for i in held], f[held], w, b), strict=True):
            result[i] = p
    return result


def shares_row(model, name: str, dev, real) -> list[str]:
    """Calibrate on dev as `tap-train calibrate` does; then the share right per folder."""
    from training.auto_mode import choose_rule, decisions, fit_temperature, right_shares
    from training.weather_photos import decision_is_right

    temperature = fit_temperature(dev)
    rule = choose_rule(model, dev, temperature, model.cfg.auto_rule)
    dev_shares = right_shares(dev, decisions(model, dev, rule, temperature))
    real_labels = decisions(model, real, rule, temperature)
    real_right = sum(decision_is_right(s.folder, label) for s, label in zip(real, real_labels, strict=True))
    cells = [f"{dev_shares.get(f, float('nan')):.0%}" for f in ("rain", "fog", "clear", "snow-scene")]
    return [name, *cells, f"{real_right}/{len(real)}", f"T {temperature:.2f}, clean ≥ {rule.clean_threshold:g}"]


def main(argv: list[str] | None = None) -> Report:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.restoration_cue", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_BUNDLE / BUNDLE_WEIGHTS)
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="folder with weather-photos/ and real/")
    parser.add_argument("--view", type=int, default=256, help="longer side of the view each prompt restores")
    parser.add_argument("--quick", action="store_true", help="the first 4 photos of each folder")
    parser.add_argument("--threads", type=int, default=available_cpus())
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import torch

    from model.checkpoint import load_model
    from training.auto_mode import REAL_FOLDERS, score_photos
    from training.datasets import read_rgb
    from training.image_files import list_images
    from training.weather_photos import FOLDER_CLASS, labelled_photos

    torch.set_num_threads(args.threads)
    watch = CpuWatch()
    model = load_model(args.checkpoint)[0].eval()
    dev_folders = labelled_photos(args.data / "weather-photos", "dev")
    real_root = args.data / "real"
    real_folders = {f: list_images(real_root / f) for f in REAL_FOLDERS if (real_root / f).is_dir()}
    if args.quick:
        dev_folders = {k: v[:4] for k, v in dev_folders.items()}
        real_folders = {k: v[:4] for k, v in real_folders.items()}
    dev = score_photos(model, dev_folders, FOLDER_CLASS)
    real = score_photos(model, real_folders, {f: f for f in real_folders})
    started = time.perf_counter()
    f_dev = np.stack([cue(model, read_rgb(p), args.view) for paths in dev_folders.values() for p in paths])
    cue_seconds = (time.perf_counter() - started) / len(f_dev)
    f_real = np.stack([cue(model, read_rgb(p), args.view) for paths in real_folders.values() for p in paths])
    mean, std = f_dev.mean(0), f_dev.std(0) + 1e-6
    f_dev, f_real = (f_dev - mean) / std, (f_real - mean) / std

    s_dev = np.stack([p.mean_log_probs for p in dev])
    w, b = fit_correction(s_dev, f_dev, np.array([p.label for p in dev]))
    with_cue = f"classifier + restoration cue (view {args.view} px)"
    rows = [
        shares_row(model, "classifier alone", dev, real),
        shares_row(model, with_cue, out_of_fold(dev, f_dev), corrected(real, f_real, w, b)),
    ]
    megapixel = torch.rand(1, 3, 1024, 1024)
    with torch.no_grad():
        model(megapixel, model.task_vectors()[:1])
        started = time.perf_counter()
        model(megapixel, model.task_vectors()[:1])
    restore_seconds = time.perf_counter() - started

    weight_rows = [[c, *(f"{v:+.2f}" for v in r)] for c, r in zip(model.classes, w, strict=True)]
    header = machine_lines(args.threads, watch, command_line("bench.restoration_cue", argv))
    photos = f"dev split of `{args.data / 'weather-photos'}` and `{real_root}`"
    header.append(f"- Checkpoint: `{args.checkpoint}`; {photos}")
    body = [
        "Share decided right per weather-photos folder (dev split) and on `real/`, each decider "
        "calibrated on the dev split as `tap-train calibrate` does (≥ 95 % of clear photos untouched). "
        f"The cue's correction is fitted out of fold ({FOLDS} folds) on dev, on all of dev for `real/`.",
        "",
        md_table(["decider", "rain", "fog", "clear untouched", "snow-scene untouched", "real right", "rule"], rows),
        "",
        f"Cost (PyTorch eager, {args.threads} threads): the cue {cue_seconds * 1000:.0f} ms per photo "
        f"(4 prompts at {args.view} px), a 1-MP restore {restore_seconds * 1000:.0f} ms: "
        f"{cue_seconds / restore_seconds:.0%} of it. The classifier's own budget is 10 % of a 1-MP restore.",
        "",
        "Correction weights W (rows: classes; columns: the change under each prompt, standardised):",
        "",
        md_table(["class", *model.tasks], weight_rows),
    ]
    path = write_markdown(args.out_dir, NAME, "Restoration cue for auto mode", header, body)
    return Report(NAME, path, [f"{r[0]}: rain {r[1]}, fog {r[2]}, clear {r[3]}, real {r[5]}" for r in rows])


if __name__ == "__main__":
    main()
