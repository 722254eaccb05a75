"""Service settings from `TAP_*` environment variables; built in the app lifespan, never at import."""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Everything an operator can tune. Example: `TAP_DEVICE=cuda TAP_MAX_BATCH=16`."""

    model_config = SettingsConfigDict(env_prefix="TAP_", extra="ignore")

    bundle_path: Path = Path("artifacts/default")
    device: Literal["auto", "cuda", "cpu"] = "auto"  # auto: CUDA when onnxruntime can run it, else CPU
    # fp16 needs backbone_fp16 in the bundle (GPU). int8 (CPU only) runs backbone_int8 on CPUs with
    # VNNI/AMX and backbone_int8_rr elsewhere, chosen from /proc/cpuinfo (service/cpu_features.py).
    precision: Literal["fp32", "fp16", "int8"] = "fp32"

    # Images larger than tile_size on either side are cut into tiles of tile_size (shorter along a
    # side shorter than a tile: service/tiling.py). 768/192: tiles agree with the whole photo to
    # >= 44.6 dB on 1-3 MP photos and scenes, every prompt (tap-default-20261201.6); 512/96 left a
    # dense-haze photo at 34.0 dB, its tiles visible as patches (bench/results/tile_consistency.md).
    # A 12-MP photo: 35 tiles covering 1.72x its pixels, 1.11x the time of 512/96 (70 tiles, 1.53x)
    # and 1.8x the bench's peak memory (bench/results/tiles-768/).
    tile_size: int = Field(768, ge=16, le=4096)
    tile_overlap: int = Field(192, ge=0)

    # Dynamic batching. queue_size counts *tiles* admitted and not yet finished
    # (waiting or running); a request that would exceed it gets 503 + Retry-After.
    max_batch: int = Field(8, ge=1, le=256)
    max_delay_ms: float = Field(5.0, ge=0)
    queue_size: int = Field(64, ge=1)  # 64 tiles of 768^2 = 37.7 MP in flight at most (1.8 12-MP photos)
    retry_after_s: int = Field(1, ge=1)
    request_timeout_s: float = Field(60.0, gt=0)  # deadline per request, from arrival -> 504

    max_upload_bytes: int = Field(25 * 1024 * 1024, ge=1)  # -> 413
    max_pixels: int = Field(40_000_000, ge=1)  # width x height after decoding the header -> 413

    # CPU throughput: `workers` backbone sessions run batches from the batcher's queue in parallel.
    # 0 = auto: one per available CPU on the CPU provider (one intra-op thread each), one on CUDA.
    # intra_op_threads 0 = onnxruntime's default (all physical cores) for a single worker, 1 for several.
    workers: int = Field(0, ge=0, le=64)
    intra_op_threads: int = Field(0, ge=0)
    inter_op_threads: int = Field(1, ge=0)

    # Auto mode (contract.auto_rule): clean when p(clean) >= clean_threshold or the likeliest
    # weather has p < min_weather_prob; a mixture of the two likeliest weathers when the
    # runner-up has >= mixture_min_prob and trails the top one by <= mixture_margin
    # (mixture_margin < 0 disables mixtures). Unset: the bundle's calibrated rule.
    clean_threshold: float | None = Field(None, ge=0, le=1)
    min_weather_prob: float | None = Field(None, ge=0, le=1)
    mixture_min_prob: float | None = Field(None, ge=0, le=1)
    mixture_margin: float | None = Field(None, le=1)

    api_key: SecretStr | None = None  # when set, X-API-Key is required on restore and admin routes
    cors_origins: Annotated[list[str], NoDecode] = []  # comma-separated or JSON list
    prompt_reload_interval_s: float = Field(10.0, ge=0)  # 0 disables the periodic re-scan
    warmup: bool = True
    default_quality: int = Field(90, ge=1, le=100)
    # Requests that don't say: also restore each tile's mirror image and average the two
    # (`ensemble` on POST /restore). +0.12-0.39 dB PSNR-Y on every validation set for twice the
    # backbone work (bench/results/flip_ensemble.md).
    flip_ensemble: bool = False
    # Requests that don't say: how far the output moves from the photo toward the restoration
    # (`strength` on POST /restore): output = input + strength * (restored - input). 0 returns
    # the photo untouched; below 1 is the user's guard against over-restoration.
    default_strength: float = Field(1.0, ge=0, le=1)
    # Where the photo is flat (a clear sky, dense haze), the restoration may only be a local
    # contrast stretch of it (contract.flat_guard): no blotches painted in. On tap-default-20261204.3
    # it took the worst blotch on clear dev photos under rain/snow from 3.8/3.1 to 1.4/1.3, real
    # haze's from 146 to 50, and SOTS-indoor-dev up 0.16 dB, the other sets within 0.02
    # (bench/results/quality.md against bench/results/before-flat-guard/).
    flat_guard: bool = True

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_means_none(cls, value: object) -> object:
        """TAP_API_KEY="" would otherwise demand a key that nothing can match."""
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _check_int8_on_cpu(self) -> "Settings":
        if self.precision == "int8" and self.device == "cuda":
            raise ValueError("precision=int8 runs on the CPU only: use device=cpu (or auto), or fp16 on a GPU")
        return self

    @model_validator(mode="after")
    def _check_tiles(self) -> "Settings":
        if 2 * self.tile_overlap >= self.tile_size:
            raise ValueError(f"tile_overlap ({self.tile_overlap}) must be < half of tile_size ({self.tile_size})")
        return self
