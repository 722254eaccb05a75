"""GET / (the web page for people) and GET /static/{name} (its files), kept out of the OpenAPI schema."""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from service.errors import ApiError

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"

# The page loads only its own files; blob: URLs hold the uploaded photo and the result.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",  # revalidate (ETag) so a redeploy is seen at once
}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)


@router.get("/static/{name}")
async def static_file(name: str) -> FileResponse:
    """Only plain files directly inside static/: `name` cannot hold '/', and '..' resolves outside."""
    path = (STATIC_DIR / name).resolve()
    if path.parent != STATIC_DIR or not path.is_file():
        raise ApiError(404, "not_found", f"no static file {name!r}")
    return FileResponse(path, headers=PAGE_HEADERS)
