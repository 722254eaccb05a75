"""Admin routes (X-API-Key when configured): re-scan the bundle for prompt files now."""

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from service.deps import EngineDep, require_api_key
from service.errors import error_responses

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_api_key)])


class PromptReload(BaseModel):
    reloaded: bool = Field(description="False when the manifest had not changed.")
    tasks: list[str]
    unavailable: list[str]


@router.post("/reload-prompts", response_model=PromptReload, responses=error_responses(401))
async def reload_prompts(engine: EngineDep) -> PromptReload:
    """Prompts are also re-scanned every TAP_PROMPT_RELOAD_INTERVAL_S and on an unknown name."""
    reloaded = engine.refresh_prompts()
    return PromptReload(reloaded=reloaded, tasks=engine.tasks, unavailable=sorted(engine.prompt_errors))
