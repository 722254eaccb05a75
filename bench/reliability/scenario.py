"""What every reliability scenario starts from: a bundle, and a server with the tests' settings.

Its own module so that run.py (every scenario) and the scenario modules that run alone
(soak.py) import it, not each other.
"""

from pathlib import Path

from bench.reliability.server import ServerProcess
from tests.service.conftest import BASE


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
    """A server with the tests' settings: tests/service BASE plus the scenario's own."""
    return ServerProcess(bundle, log, {**BASE, **(scenario or {})}, env=env)
