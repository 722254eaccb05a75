"""Where the training data lives: one home for `../shared/data`, overridable with TAP_DATA.

Paths stay as written (relative to the repository root, the working directory of every command)
so that configs saved beside checkpoints read as before; `shared_data_dir()` resolves them for
code that runs from elsewhere (benchmarks, tests).
"""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = os.environ.get("TAP_DATA", "../shared/data")


def data_path(*parts: str) -> str:
    """A path under the data root, as a config string: data_path("clean") -> "../shared/data/clean"."""
    return str(Path(DATA_ROOT, *parts))


def shared_data_dir() -> Path:
    """The data root as an absolute path (a relative TAP_DATA is taken from the repository root)."""
    return (REPO / DATA_ROOT).resolve()
