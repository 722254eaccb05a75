"""One APIRouter per area: restore, health, metrics, admin."""
