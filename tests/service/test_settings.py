"""Settings from the environment: parsing and the guards against silent misconfiguration."""

import pytest
from pydantic import ValidationError

from service.settings import Settings


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("TAP_MAX_BATCH", "16")
    monkeypatch.setenv("TAP_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("TAP_API_KEY", "s3cret")
    settings = Settings()
    assert settings.max_batch == 16
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.api_key.get_secret_value() == "s3cret"


def test_empty_api_key_means_no_key(monkeypatch):
    monkeypatch.setenv("TAP_API_KEY", "  ")
    assert Settings().api_key is None


def test_overlap_must_leave_room_in_the_tile():
    with pytest.raises(ValidationError, match="tile_overlap"):
        Settings(tile_size=64, tile_overlap=32)


def test_default_strength_is_one_and_must_be_a_fraction(monkeypatch):
    assert Settings().default_strength == 1.0
    monkeypatch.setenv("TAP_DEFAULT_STRENGTH", "0.7")
    assert Settings().default_strength == 0.7
    monkeypatch.setenv("TAP_DEFAULT_STRENGTH", "1.2")
    with pytest.raises(ValidationError, match="default_strength"):
        Settings()
