"""Request dependencies: the objects the lifespan built, and the optional API key."""

import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from service.engine import Engine
from service.errors import ApiError
from service.pipeline import Pipeline
from service.settings import Settings

API_KEY_HEADER = "X-API-Key"
api_key_header = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="Required on restore and admin routes when TAP_API_KEY is set."
)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_pipeline(request: Request) -> Pipeline:
    return request.app.state.pipeline


def check_api_key(settings: Settings, presented: str | None) -> ApiError | None:
    """None when the key is not required or matches; the 401 to raise otherwise."""
    if settings.api_key is None:
        return None
    expected = settings.api_key.get_secret_value().encode()
    if presented is not None and hmac.compare_digest(presented.encode(), expected):
        return None
    message = f"missing or wrong {API_KEY_HEADER} header"
    return ApiError(401, "unauthorized", message, reason="unauthorized", headers={"WWW-Authenticate": "APIKey"})


def require_api_key(request: Request, key: Annotated[str | None, Security(api_key_header)]) -> None:
    error = check_api_key(request.app.state.settings, key)
    if error is not None:
        raise error


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
