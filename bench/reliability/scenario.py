"""What every reliability scenario starts from: a bundle, and a server with the tests' settings.

Its own module so that run.py (every scenario) and the scenario modules that run alone
(soak.py) import it, not each other.
"""

from pathlib import Path

from bench.reliability.server import ServerProcess

# The tests' settings, small and fast on a shared 2-core box: 64-px tiles, one ORT thread each.
# The corpus (bench/reliability/corpus.py) expects its limits: 2 MB uploads, 10 MP.
BASE: dict[str, object] = {
    "device": "cpu",
    "tile_size": 64,
    "tile_overlap": 16,
    "max_batch": 8,
    "max_delay_ms": 20,
    "intra_op_threads": 1,
    "inter_op_threads": 1,
    "max_upload_bytes": 2_000_000,
    "max_pixels": 10_000_000,
    "prompt_reload_interval_s": 0,
}


def bundle_for(path: Path | None, folder: Path) -> Path:
    """`path`, or a tiny random model exported into `folder` (as the tests' tiny_bundle)."""
    if path is not None:
        return path
    from training.export import export_bundle
    from training.random_model import random_model

    return export_bundle(random_model("tiny"), folder / "bundle", model_version="tiny-bench")


def serve(
    bundle: Path, log: Path, scenario: dict[str, object] | None = None, env: dict[str, str] | None = None
) -> ServerProcess:
    """A server with the tests' settings: BASE plus the scenario's own."""
    return ServerProcess(bundle, log, {**BASE, **(scenario or {})}, env=env)
