"""Read, verify and extend the artifact bundle: the contract between training and serving.

Layout (docs/architecture.md): manifest.json, backbone.onnx, classifier.onnx, optional
backbone_fp16.onnx, optional backbone_int8.onnx and backbone_int8_rr.onnx (quantized from
backbone.onnx, whose hash the manifest's "int8" entry names), prompts/<task>.npy. Every file
is listed in manifest["files"] with its sha256. This module is numpy-only so the service and the exporter share it.
"""

import hashlib
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PROMPT_DIR = "prompts"
INT8_KEYS = ("backbone_int8", "backbone_int8_rr")  # 8-bit weights (VNNI/AMX), 7-bit weights (reduce_range)
MODEL_KEYS = ("backbone", "classifier", "backbone_fp16", *INT8_KEYS)
TASK_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")

log = logging.getLogger(__name__)


class BundleError(ValueError):
    """A bundle that must not be served; the message names the offending file."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prompt_relpath(task: str) -> str:
    if not TASK_NAME.fullmatch(task):
        raise BundleError(f"invalid task name {task!r}: use lowercase letters, digits, '-' or '_'")
    return f"{PROMPT_DIR}/{task}.npy"


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its folder and parsed manifest."""

    root: Path
    manifest: dict

    @property
    def model_version(self) -> str:
        return self.manifest["model_version"]

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def prompt_dim(self) -> int:
        return int(self.manifest["prompt_dim"])

    def path(self, key: str) -> Path:
        """Path of a model file by manifest key (MODEL_KEYS)."""
        entry = self.manifest.get(key)
        if entry is None:
            raise BundleError(f"{self.root / MANIFEST}: bundle has no {key!r} model")
        return self.root / entry["file"]


def read_manifest(root: Path) -> dict:
    path = root / MANIFEST
    if not path.is_file():
        raise BundleError(f"{path}: manifest not found (is {root} an artifact bundle?)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: unreadable manifest: {exc}") from exc
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(f"{path}: format_version {version!r} is not supported (expected {FORMAT_VERSION})")
    return manifest


def verify_file(root: Path, manifest: dict, relpath: str) -> Path:
    """Check one file exists and matches its manifest hash."""
    path = root / relpath
    expected = manifest.get("files", {}).get(relpath)
    if expected is None:
        raise BundleError(f"{path}: not listed in {MANIFEST} 'files'")
    if not path.is_file():
        raise BundleError(f"{path}: file listed in {MANIFEST} is missing")
    actual = sha256_file(path)
    if actual != expected:
        raise BundleError(f"{path}: sha256 mismatch (manifest {expected[:12]}…, file {actual[:12]}…)")
    return path


def load_bundle(root: Path) -> Bundle:
    """Verify the manifest and every model file; prompts are verified one by one later."""
    root = Path(root)
    manifest = read_manifest(root)
    for key in MODEL_KEYS:
        if key in manifest:
            verify_file(root, manifest, manifest[key]["file"])
    if any(key in manifest for key in INT8_KEYS):
        source = manifest.get("int8", {}).get("source", {})
        if source.get("sha256") != manifest["files"].get(manifest["backbone"]["file"]):
            raise BundleError(
                f"{root / MANIFEST}: the int8 backbones were quantized from another {manifest['backbone']['file']} "
                f"(re-run `tap-train quantize {root}`)"
            )
    return Bundle(root=root, manifest=manifest)


def load_prompts(bundle: Bundle) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Load every verified prompt file; a bad one is reported and skipped, not fatal.

    The manifest is re-read so prompts added at run time (see `write_prompt`) are found.
    Returns (prompts by task, error message by task).
    """
    manifest = read_manifest(bundle.root)
    prompts: dict[str, np.ndarray] = {}
    errors: dict[str, str] = {}
    for path in sorted((bundle.root / PROMPT_DIR).glob("*.npy")):
        task = path.stem
        try:
            verify_file(bundle.root, manifest, prompt_relpath(task))
            vec = np.load(path, allow_pickle=False)
            if vec.dtype != np.float32 or vec.shape != (bundle.prompt_dim,):
                raise BundleError(f"{path}: expected float32 [{bundle.prompt_dim}], got {vec.dtype} {list(vec.shape)}")
            if not np.isfinite(vec).all():
                raise BundleError(f"{path}: prompt has NaN or infinite values")
            prompts[task] = vec
        except (BundleError, ValueError, OSError) as exc:
            errors[task] = str(exc)
            log.error("prompt %s not loaded: %s", task, exc)
    return prompts, errors


def write_json_atomic(path: Path, data: dict) -> None:
    """Write then rename, so a reader never sees half a manifest."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".manifest-")
    os.fchmod(fd, 0o644)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def write_prompt(root: Path, task: str, vector: np.ndarray) -> Path:
    """Add (or replace) a task's prompt vector in a bundle, with its hash entry.

    No re-export: the backbone takes the prompt as an input.
    """
    manifest = read_manifest(root)
    vec = np.asarray(vector, dtype=np.float32).reshape(-1)
    if vec.shape != (int(manifest["prompt_dim"]),):
        raise BundleError(f"prompt for {task!r} has {vec.size} values, bundle expects {manifest['prompt_dim']}")
    relpath = prompt_relpath(task)
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vec)
    manifest.setdefault("files", {})[relpath] = sha256_file(path)
    manifest.setdefault("prompts", {})[task] = relpath
    write_json_atomic(root / MANIFEST, manifest)
    return path
