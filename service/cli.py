"""`tap-restore serve` and `tap-restore restore PATH... -o OUT` (in-process or against --url)."""

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

from tqdm import tqdm

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
SUFFIX = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}


def collect(paths: list[Path], out_dir: Path, fmt: str) -> list[tuple[Path, Path]]:
    """(source, destination) pairs: files as given, folders walked; folder layout kept under out_dir."""
    pairs = []
    for path in paths:
        if path.is_dir():
            for src in sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
                pairs.append((src, out_dir / path.name / src.relative_to(path).with_suffix(SUFFIX[fmt])))
        elif path.is_file():
            pairs.append((path, out_dir / path.with_suffix(SUFFIX[fmt]).name))
        else:
            raise SystemExit(f"not found: {path}")
    return pairs


async def _restore_local(pairs, args) -> int:
    from service.pipeline import local_pipeline
    from service.settings import Settings

    overrides = {"request_timeout_s": 1e9, "queue_size": 1 << 30}
    if args.bundle:
        overrides["bundle_path"] = args.bundle
    gate = asyncio.Semaphore(args.jobs)
    failures = 0
    async with local_pipeline(Settings(**overrides)) as pipeline:
        with tqdm(total=len(pairs), unit="img", desc="restore") as bar:

            async def one(src: Path, dst: Path) -> None:
                nonlocal failures
                async with gate:
                    try:
                        result = await pipeline.restore(
                            src.read_bytes(),
                            args.degradation,
                            args.format,
                            args.quality,
                            ensemble=args.ensemble,
                            strength=args.strength,
                        )
                        dst.parent.mkdir(parents=True, exist_ok=True)
                        dst.write_bytes(result.data)
                        bar.set_postfix_str(f"{src.name}: {result.decision.label}")
                    except Exception as exc:  # report and go on with the other files
                        failures += 1
                        tqdm.write(f"{src}: {exc}", file=sys.stderr)
                    bar.update()

            await asyncio.gather(*(one(src, dst) for src, dst in pairs))
    return failures


def _restore_remote(pairs, args) -> int:
    import httpx

    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    params = {"degradation": args.degradation, "format": args.format}
    if args.quality:
        params["quality"] = args.quality
    if args.ensemble is not None:
        params["ensemble"] = str(args.ensemble).lower()
    if args.strength is not None:
        params["strength"] = args.strength
    failures = 0
    with httpx.Client(base_url=args.url.rstrip("/"), headers=headers, timeout=args.timeout) as client:
        for src, dst in tqdm(pairs, unit="img", desc="restore"):
            for _ in range(10):
                response = client.post("/restore", params=params, files={"image": (src.name, src.read_bytes())})
                if response.status_code != 503:
                    break
                time.sleep(float(response.headers.get("Retry-After", "1")))
            if response.status_code == 200:
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_bytes(response.content)
            else:
                failures += 1
                tqdm.write(f"{src}: HTTP {response.status_code} {response.text[:300]}", file=sys.stderr)
    return failures


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def cmd_restore(args) -> int:
    pairs = collect(args.paths, args.out, args.format)
    if not pairs:
        print("no images found", file=sys.stderr)
        return 1
    failures = _restore_remote(pairs, args) if args.url else asyncio.run(_restore_local(pairs, args))
    print(f"{len(pairs) - failures}/{len(pairs)} restored into {args.out}", file=sys.stderr)
    return 1 if failures else 0


def cmd_serve(args) -> int:
    import uvicorn

    from service.app import create_app
    from service.settings import Settings

    overrides = {}
    if args.bundle:
        overrides["bundle_path"] = args.bundle
    if args.device:
        overrides["device"] = args.device
    app = create_app(Settings(**overrides))
    # uvicorn drains, then re-raises the SIGTERM it caught; exit 0 then, as orchestrators expect.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # One process per GPU: the batcher, queue bound and metrics all live in this process.
    uvicorn.run(app, host=args.host, port=args.port, workers=1, log_level=args.log_level, timeout_graceful_shutdown=30)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tap-restore", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service (settings: TAP_* environment variables)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--bundle", type=Path, help="artifact bundle folder (overrides TAP_BUNDLE_PATH)")
    serve.add_argument("--device", choices=["auto", "cuda", "cpu"], help="overrides TAP_DEVICE")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=cmd_serve)

    restore = sub.add_parser("restore", help="restore files or folders")
    restore.add_argument("paths", nargs="+", type=Path)
    restore.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    restore.add_argument("--degradation", default="auto", help="auto (default) or a task name")
    restore.add_argument("--format", choices=sorted(SUFFIX), default="png")
    restore.add_argument("--quality", type=int, help="JPEG/WebP quality 1-100")
    restore.add_argument(
        "--ensemble",
        action=argparse.BooleanOptionalAction,
        help="also restore each mirror image and average (twice the work); default: the service's TAP_FLIP_ENSEMBLE",
    )
    restore.add_argument(
        "--strength",
        type=fraction,
        help="0-1: output = input + strength * (restored - input); 0 returns the photo untouched; "
        "default: the service's TAP_DEFAULT_STRENGTH (1)",
    )
    restore.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8000; default: in-process")
    restore.add_argument("--api-key", default=os.environ.get("TAP_API_KEY"), help="for --url (default $TAP_API_KEY)")
    restore.add_argument("--bundle", type=Path, help="in-process: bundle folder (overrides TAP_BUNDLE_PATH)")
    restore.add_argument("--jobs", type=int, default=4, help="in-process: images in flight (they batch together)")
    restore.add_argument("--timeout", type=float, default=300.0, help="--url: seconds per request")
    restore.set_defaults(func=cmd_restore)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
