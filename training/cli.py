"""`tap-train`: a thin command-line layer over training, evaluation and export."""

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from training.config import DataConfig, load_config
from training.data_root import data_path

RESTORATION_BUDGET = 2_750_000  # TAP's restoration network: backbone + prompts
CLASSIFIER_BUDGET = 1_000_000  # the auto-mode classifier's own budget (issue 29)


def _config(args: argparse.Namespace):
    cfg = load_config(args.config, args.overrides)
    if getattr(args, "init", None):
        cfg.init = str(args.init)
    return cfg


def cmd_model_info(args: argparse.Namespace) -> None:
    from model.checkpoint import load_model
    from model.net import NET_VARIANTS, TAPNet

    if args.checkpoint:  # a trained model: its encoder may have been rebuilt by tune-classifier
        model, what = load_model(Path(args.checkpoint))[0], f"checkpoint {args.checkpoint}"
    else:
        model, what = TAPNet(NET_VARIANTS[args.variant]), f"TAPNet variant '{args.variant}'"
    budget = model.parameter_budget()
    total = budget["total"]
    print(f"{what} (tasks: {', '.join(model.tasks)}; prompt vector D={model.prompt_dim})")
    print(f"{'part':<32}{'parameters':>12}{'share':>9}")
    for part, count in budget.items():
        print(f"{part:<32}{count:>12,}{count / total:>9.2%}")
    classifier = budget["degradation encoder + keys"]
    restoration = total - classifier
    for what, count, limit in (
        ("restoration network (backbone + prompts)", restoration, RESTORATION_BUDGET),
        ("auto-mode classifier (encoder + keys)", classifier, CLASSIFIER_BUDGET),
    ):
        print(f"budget, {what}: {count:,} of {limit:,} ({'within' if count <= limit else 'OVER'})")
    print(f"one task's prompt vector = {model.prompt_dim / restoration:.3%} of the restoration network (limit 0.5%)")


def training_photo_crops(clean_dir: Path, n: int, size: int) -> list:
    """n square crops (size x size, float 0..1) spread over the training photos, never held-out ones."""
    import numpy as np
    from PIL import Image

    from training.config import DataConfig
    from training.datasets import list_images, split_clean

    files = split_clean(list_images(clean_dir), DataConfig().holdout_every, "train")
    crops = []
    for path in files[:: max(1, len(files) // n)][:n]:
        with Image.open(path) as img:
            img = img.convert("RGB")
            side = min(img.size)
            img = img.crop((0, 0, side, side)).resize((size, size), Image.Resampling.BICUBIC)
            crops.append(np.asarray(img, dtype=np.float32) / 255.0)
    return crops


def real_weather_crops(real_dir: Path, size: int, per_task: int) -> dict:
    """Centre crops of the real weather photos, real_dir/<task>/*, at most per_task each."""
    import numpy as np
    from PIL import Image

    from training.datasets import list_images
    from training.synth import TASKS

    real = {}
    for task in TASKS:
        if not (real_dir / task).is_dir():
            continue
        real[task] = []
        for path in list_images(real_dir / task)[:per_task]:
            with Image.open(path) as img:
                img = img.convert("RGB")
                side = min(img.size)
                left, top = (img.width - side) // 2, (img.height - side) // 2
                img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)
                real[task].append(np.asarray(img, dtype=np.float32) / 255.0)
    return real


def cmd_preview_synth(args: argparse.Namespace) -> None:
    from training.scenes import draw_city_scene
    from training.synth import generators, preview_sheet
    from training.synth.assets import StreakBank

    real = None
    if args.real_dir:
        if Path(args.out).resolve().is_relative_to(Path("docs").resolve()):
            raise ValueError("real photos may not be published: write a --real-dir sheet outside docs/")
        real = real_weather_crops(Path(args.real_dir), args.size, per_task=9)
    if args.procedural:
        crops = [draw_city_scene(args.size, args.size, seed=i) for i in range(args.n)]
    else:
        crops = training_photo_crops(Path(args.clean_dir), args.n, args.size)
    streaks = StreakBank.load(Path(args.streaks_dir)) if args.version >= 2 and args.streaks_dir else None
    preview_sheet(crops, Path(args.out), seed=args.seed, generators=generators(args.version, streaks), real=real)
    print(f"wrote {args.out}")


def cmd_pretrain(args: argparse.Namespace) -> None:
    from training.loops import pretrain

    pretrain(_config(args), Path(args.out), resume=args.resume)


def cmd_prompt_tune(args: argparse.Namespace) -> None:
    from training.loops import prompt_tune

    prompt_tune(_config(args), Path(args.out), resume=args.resume)


def cmd_tune_classifier(args: argparse.Namespace) -> None:
    from training.classifier_bank import tune_classifier_bank
    from training.loops import tune_classifier

    cfg = _config(args)
    if cfg.classifier.bank_size > 0:
        tune_classifier_bank(cfg, Path(args.out))
    else:
        tune_classifier(cfg, Path(args.out), resume=args.resume)


def cmd_add_task(args: argparse.Namespace) -> None:
    from training.loops import add_task

    add_task(_config(args), Path(args.out), args.name, [Path(p) for p in args.data], args.generator)


def cmd_tune_core(args: argparse.Namespace) -> None:
    from training.loops import add_task

    add_task(_config(args), Path(args.out), args.name, [Path(p) for p in args.data], args.generator, existing=True)


def cmd_reuse_classifier(args: argparse.Namespace) -> None:
    from model.checkpoint import load_model, save_weights
    from training.reuse_classifier import reuse_classifier

    model, extra = load_model(Path(args.checkpoint))
    donor = load_model(Path(args.classifier))[0]
    out = Path(args.out) / "model.safetensors"
    save_weights(reuse_classifier(model, donor), out, extra | {"classifier_from": str(args.classifier)})
    print(f"wrote {out}: {args.checkpoint} with the auto-mode classifier of {args.classifier}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from contract.flat_guard import FlatGuard
    from model.checkpoint import load_model
    from training.datasets import parse_sources
    from training.evaluate import run_evaluation

    model, extra = load_model(Path(args.checkpoint))
    paired = parse_sources(args.paired, model.tasks)
    # The held-out photos are the ones the checkpoint's own run held out, not today's defaults.
    trained = {**dataclasses.asdict(DataConfig()), **extra.get("config", {}).get("data", {})}
    results = run_evaluation(
        model,
        clean_dir=Path(args.clean_dir or trained["clean_dir"]),
        synthetic_per_task=args.synthetic,
        paired=paired,
        out_dir=Path(args.out),
        seed=args.seed,
        size=args.size,
        holdout_every=int(trained["holdout_every"]),
        real=_path(args.real),
        no_harm_clear=_path(args.no_harm_clear),
        no_harm_haze=_path(args.no_harm_haze),
        no_harm_rain=_path(args.no_harm_rain),
        synthetic_v2_streaks=Path(args.streaks_dir or trained["streaks_dir"]) if args.synthetic_v2 else None,
        flat_guard=None if args.no_flat_guard else FlatGuard(),
    )
    report_path = Path(args.out) / "report.md"
    if args.weather_photos:  # auto mode's confusion on the weather-photos dev split (and --real)
        from training.auto_mode import auto_mode_report

        auto = auto_mode_report(model, Path(args.weather_photos), _path(args.real))
        report_path.write_text(report_path.read_text() + "\n" + auto + "\n")
    print(report_path.read_text())
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def cmd_calibrate(args: argparse.Namespace) -> None:
    from model.checkpoint import load_model, save_weights
    from training.auto_mode import calibrate, weather_photo_scores

    model, extra = load_model(Path(args.checkpoint))
    model, report = calibrate(model, weather_photo_scores(model, Path(args.weather_photos), "dev"))
    out = Path(args.out)
    save_weights(model, out / "model.safetensors", extra | {"calibration": report})
    (out / "calibration.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


def cmd_auto_mode(args: argparse.Namespace) -> None:
    from model.checkpoint import load_model
    from training.auto_mode import auto_mode_report

    model = load_model(Path(args.checkpoint))[0]
    report = auto_mode_report(model, _path(args.weather_photos), _path(args.real), _path(args.synthetic_clean_dir))
    print(report)
    if args.out:
        Path(args.out).write_text(report + "\n")


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def cmd_compare(args: argparse.Namespace) -> None:
    from training.compare import compare_table, load_runs

    runs = load_runs(args.runs)
    args.method = args.method or ["given task"]
    text = "".join(f"\n{method}: PSNR-Y / SSIM-Y\n\n" + compare_table(runs, method) for method in args.method)
    if args.out:
        Path(args.out).write_text(text)
    print(text)


def cmd_tsne(args: argparse.Namespace) -> None:
    from model.checkpoint import load_model
    from training.tsne import plot_tsne

    models = {args.label: load_model(Path(args.checkpoint))[0]}
    if args.compare:
        models[args.compare_label] = load_model(Path(args.compare))[0]
    plot_tsne(models, clean_dir=Path(args.clean_dir), out_path=Path(args.out), per_task=args.per_task, seed=args.seed)
    print(f"wrote {args.out}")


def cmd_export(args: argparse.Namespace) -> None:
    from model.checkpoint import load_model
    from training.export import export_bundle

    ckpt_dir = Path(args.checkpoint_dir)
    model, extra = load_model(ckpt_dir / "model.safetensors")
    metrics = json.loads(Path(args.metrics).read_text()) if args.metrics else {}
    recipe = {"checkpoint": extra}
    if args.recipe:
        recipe["description"] = Path(args.recipe).read_text()
    version = args.model_version or Path(args.out).name
    out = export_bundle(
        model,
        Path(args.out),
        model_version=version,
        recipe=recipe,
        metrics=metrics,
        fp16=args.fp16,
        triton_dir=Path(args.triton) if args.triton else None,
        weights=ckpt_dir / "model.safetensors",
        int8=_int8_job(args) if args.int8 else None,
    )
    manifest = json.loads((out / "manifest.json").read_text())
    print(f"exported {out}: parity max |diff| {manifest['parity_max_abs_diff']}")


def cmd_replace_classifier(args: argparse.Namespace) -> None:
    from model.checkpoint import load_model
    from training.export import replace_classifier

    checkpoint = Path(args.checkpoint_dir) / "model.safetensors"
    model, extra = load_model(checkpoint)
    recipe = {"checkpoint": extra} | ({"description": Path(args.recipe).read_text()} if args.recipe else {})
    out = replace_classifier(
        model,
        Path(args.bundle),
        model_version=args.model_version,
        weights=checkpoint,
        metrics=json.loads(Path(args.metrics).read_text()) if args.metrics else None,
        recipe=recipe,
    )
    manifest = json.loads((out / "manifest.json").read_text())
    print(f"{out}: {manifest['model_version']}, new classifier; parity max |diff| {manifest['parity_max_abs_diff']}")


def _int8_job(args: argparse.Namespace):
    from training.quantize import default_job

    folders = {"folders": tuple(args.folders)} if args.folders else {}
    job = default_job(Path(args.data), crops_per_folder=args.crops, crop=args.crop, **folders)
    if args.paired:
        paired = tuple((Path(d), t) for t, _, d in (e.partition("=") for e in args.paired))
        job = dataclasses.replace(job, paired=paired)
    return job


def cmd_quantize(args: argparse.Namespace) -> None:
    from training.quantize import quantize_bundle

    int8 = quantize_bundle(Path(args.bundle), _int8_job(args))
    for name, q in int8["quality"].items():
        print(f"{name}: {json.dumps(q)}")
    print(f"added backbone_int8.onnx and backbone_int8_rr.onnx to {args.bundle}")


def int8_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=data_path(), help="calibration folders, validation/ and real/ under it")
    p.add_argument("--crops", type=int, default=3, help="calibration crops per folder (each under every prompt)")
    p.add_argument("--crop", type=int, default=192, help="calibration crop side")
    p.add_argument("--folders", nargs="+", help="calibration folders under DATA (default: training.quantize's)")
    p.add_argument("--paired", action="append", default=[], help="task=DIR quality sets (default: DATA/validation)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tap-train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("model-info", help="print the parameter budget table")
    p.add_argument("--variant", default="default")
    p.add_argument("--checkpoint", help="count a trained model's weights (.safetensors) instead of a variant")
    p.set_defaults(func=cmd_model_info)

    p = sub.add_parser("preview-synth", help="contact sheet of the synthetic weathers")
    p.add_argument("--out", default="docs/synth_sheet.png")
    p.add_argument("--clean-dir", default=data_path("clean"))
    p.add_argument("--procedural", action="store_true", help="drawn scenes instead of photos (publishable)")
    p.add_argument("--version", type=int, default=2, help="data engine: 1 (baseline) or 2")
    p.add_argument("--streaks-dir", default=data_path("rain-streaks"), help="v2 rain layers ('' = procedural)")
    p.add_argument("--real-dir", help="also rows of real weather photos, DIR/<task>/ (local viewing only)")
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--size", type=int, default=192)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_preview_synth)

    def training_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", required=True, help="run folder (checkpoint, config.yaml, metrics.csv)")
        p.add_argument("--config", type=Path, help="YAML file of config overrides")
        p.add_argument("--resume", action="store_true", help="continue from the run folder's train state")
        p.add_argument("overrides", nargs="*", help="config overrides: key=value (e.g. steps=100 data.crop=64)")

    p = sub.add_parser("pretrain", help="stage 1: backbone on all weathers mixed")
    training_args(p)
    p.add_argument("--init", help="start from these weights instead of random")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("prompt-tune", help="stage 2: prompts + encoder, backbone frozen")
    training_args(p)
    p.add_argument("--init", required=True, help="stage-1 model.safetensors")
    p.set_defaults(func=cmd_prompt_tune)

    p = sub.add_parser("tune-classifier", help="auto mode: only the degradation encoder and keys train")
    training_args(p)
    p.add_argument("--init", required=True, help="prompt-tuned model.safetensors")
    p.set_defaults(func=cmd_tune_classifier)

    for name, func, text in (
        ("add-task", cmd_add_task, "teach a new weather: only its task core trains"),
        ("tune-core", cmd_tune_core, "re-tune one existing weather's core (e.g. on a few real pairs)"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("name")
        training_args(p)
        p.add_argument("--init", required=True, help="prompt-tuned model.safetensors")
        p.add_argument("--data", action="append", default=[], help="paired folder with input/ and target/")
        p.add_argument("--generator", help="synthetic generator as package.module:function")
        p.set_defaults(func=func)

    p = sub.add_parser("reuse-classifier", help="keep a trained classifier for re-tuned prompts (keys re-solved)")
    p.add_argument("checkpoint", help="model.safetensors whose backbone and prompts to keep")
    p.add_argument("--classifier", required=True, help="model.safetensors whose auto-mode classifier to keep")
    p.add_argument("--out", required=True, help="run folder for the combined model.safetensors")
    p.set_defaults(func=cmd_reuse_classifier)

    p = sub.add_parser("evaluate", help="PSNR/SSIM per task, auto-mode confusion, report + grid")
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True)
    p.add_argument("--clean-dir", help="clean photos for synthetic validation (default: the checkpoint's own)")
    p.add_argument("--real", help="real weather photos, one subfolder per weather (label = folder name)")
    p.add_argument("--weather-photos", help="weather-photos folder: auto mode's confusion on its dev split")
    p.add_argument("--no-harm-clear", help="clear photos (e.g. weather-photos/clear): its dev split, every prompt")
    p.add_argument("--no-harm-haze", help="real haze photos: the blotch measure under `haze`")
    p.add_argument("--no-harm-rain", help="real rain photos: the blotch measure and brightness change under `rain`")
    p.add_argument("--synthetic", type=int, default=8, help="synthetic validation images per task (0: none)")
    p.add_argument(
        "--synthetic-v2",
        action="store_true",
        help="also the same photos under data engine v2's weather (what training draws), as synthetic-v2/<task> rows",
    )
    p.add_argument("--streaks-dir", help="rendered streak layers for v2 rain (default: the checkpoint's own)")
    p.add_argument("--paired", action="append", default=[], help="task=DIR with input/ and target/")
    p.add_argument("--size", type=int, default=0, help="resize longer side to this for speed (0: full size)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-flat-guard",
        action="store_true",
        help="measure the bare network, without the service's flat-region guard (contract.flat_guard)",
    )
    p.add_argument("--json", help="also write the results here")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("calibrate", help="auto mode: fit the temperature and the rule's thresholds on real photos")
    p.add_argument("checkpoint", help="model.safetensors whose classifier to calibrate")
    p.add_argument("--weather-photos", required=True, help="weather-photos folder (its dev split is used)")
    p.add_argument("--out", required=True, help="run folder for the calibrated model.safetensors")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("auto-mode", help="auto mode's confusion matrices on real photos, as the service decides")
    p.add_argument("checkpoint")
    p.add_argument("--weather-photos", help="weather-photos folder (its dev split is used)")
    p.add_argument("--real", help="real weather photos, one subfolder per weather")
    p.add_argument("--synthetic-clean-dir", help="also synthetic weather on these clean photos' held-out split")
    p.add_argument("--out", help="also write the Markdown here")
    p.set_defaults(func=cmd_auto_mode)

    p = sub.add_parser("compare", help="side-by-side table of several evaluate results")
    p.add_argument("runs", nargs="+", help="label=path/to/metrics.json")
    p.add_argument("--method", action="append", default=[], help="'given task' (default), 'auto', 'input'")
    p.add_argument("--out", help="also write the Markdown here")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("tsne", help="t-SNE of encoder embeddings and prompted features per task")
    p.add_argument("checkpoint")
    p.add_argument("--out", default="docs/tsne.png")
    p.add_argument("--label", default="contrastive on")
    p.add_argument("--compare", help="second checkpoint, e.g. trained without the contrastive terms")
    p.add_argument("--compare-label", default="contrastive off")
    p.add_argument("--clean-dir", default=data_path("clean"))
    p.add_argument("--per-task", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_tsne)

    p = sub.add_parser("replace-classifier", help="a bundle's new version with another auto-mode classifier")
    p.add_argument("checkpoint_dir", help="run folder whose model.safetensors restores as the bundle does")
    p.add_argument("--bundle", required=True, help="bundle to update in place (backbones and prompts kept)")
    p.add_argument("--model-version", required=True)
    p.add_argument("--metrics", help="JSON file of metrics to merge into the manifest's")
    p.add_argument("--recipe", help="text file describing how the model was trained")
    p.set_defaults(func=cmd_replace_classifier)

    p = sub.add_parser("export", help="ONNX artifact bundle from a run folder")
    p.add_argument("checkpoint_dir")
    p.add_argument("--out", required=True, help="artifacts/<version>")
    p.add_argument("--model-version")
    p.add_argument("--fp16", action="store_true", help="also write an fp16 backbone for GPUs")
    p.add_argument("--triton", help="also write a Triton model repository here")
    p.add_argument("--metrics", help="JSON file of validation metrics to record in the manifest")
    p.add_argument("--recipe", help="text file describing how the model was trained")
    p.add_argument("--int8", action="store_true", help="also add the INT8 CPU backbones (as `quantize` does)")
    int8_args(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("quantize", help="add the INT8 CPU backbones to an existing bundle, in place")
    p.add_argument("bundle")
    int8_args(p)
    p.set_defaults(func=cmd_quantize)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (FileNotFoundError, KeyError, ValueError, RuntimeError) as exc:
        print(f"tap-train {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
