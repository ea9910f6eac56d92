"""REST API under ``/train-tools/v1/``, mounted on the WebUI's (or the standalone) FastAPI app.

Routes added to the WebUI's app in ``on_app_started`` are not covered by
``--api-auth`` (only the WebUI's own ``Api.add_api_route`` adds it), so every
route here depends on ``require_auth``, built from the same credentials.
"""

# No `from __future__ import annotations` here: FastAPI reads the route annotations at runtime.
import secrets
from collections.abc import Callable

from lora_ext.errors import LoraExtError
from lora_ext.host import Host

PREFIX = "/train-tools/v1"


def parse_credentials(api_auth: str | None) -> dict[str, str]:
    """``"user:pass,user2:pass2"`` (the WebUI's ``--api-auth`` format) → {user: password}."""
    credentials: dict[str, str] = {}
    for item in (api_auth or "").split(","):
        if ":" in item:
            user, password = item.strip().split(":", 1)
            credentials[user] = password
    return credentials


def auth_dependency(credentials: dict[str, str]):
    """A FastAPI dependency: HTTP Basic against ``credentials``; open when there are none."""
    from fastapi import Depends, HTTPException, status
    from fastapi.security import HTTPBasic, HTTPBasicCredentials

    basic = HTTPBasic(auto_error=False)

    def require_auth(given: HTTPBasicCredentials | None = Depends(basic)) -> None:
        if not credentials:
            return
        if given is not None and given.username in credentials:
            if secrets.compare_digest(given.password, credentials[given.username]):
                return
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Incorrect username or password",
            headers={"WWW-Authenticate": "Basic"},
        )

    return require_auth


def build_router(host_provider: Callable[[], Host], credentials: dict[str, str]):
    """The API router; every route requires auth when credentials are set."""
    from fastapi import APIRouter, Depends, HTTPException

    router = APIRouter(prefix=PREFIX, dependencies=[Depends(auth_dependency(credentials))])

    @router.get("/host")
    def host_info() -> dict:
        try:
            info = host_provider().info
        except LoraExtError as error:
            raise HTTPException(status_code=409, detail=error.one_line()) from error
        return {
            "name": info.name,
            "family": info.family,
            "prediction": info.prediction,
            "naming": info.naming,
            "short_hash": info.short_hash,
            "is_demo": info.is_demo,
        }

    return router
