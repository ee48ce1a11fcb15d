"""API keys with scopes on the routes that need them; each key has its own rate limit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from store.api_keys import KeyInfo

if TYPE_CHECKING:
    from service.state import Service

_BEARER = HTTPBearer(auto_error=False, description="`Authorization: Bearer lsk_…`")
_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="or `X-API-Key: lsk_…`")


async def authorize(service: Service, scope: str, presented: str | None) -> KeyInfo:
    """The caller's live key if it has ``scope`` (or ``admin``) and is within its rate limit; else the
    401, 403 or 429 to answer."""
    key = await service.keys.check(presented) if presented else None
    if key is None:
        raise HTTPException(401, "a valid API key is required", headers={"WWW-Authenticate": "Bearer"})
    if scope not in key.scopes and "admin" not in key.scopes:
        raise HTTPException(403, f"this key lacks the scope {scope!r}")
    wait = service.limiter.take(key.key_id)
    if wait:
        raise HTTPException(429, "rate limit exceeded", headers={"Retry-After": str(max(1, round(wait)))})
    return key


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key sent as ``Authorization: Bearer …`` or ``X-API-Key`` (what the dependency reads, without
    its per-request parsing: the hot routes call this with the request's headers)."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials:
            return credentials.strip()
    return headers.get("x-api-key")


# How the routes that read the key themselves (``presented_key``) document it in the OpenAPI schema.
SECURITY = [{"HTTPBearer": []}, {"APIKeyHeader": []}]


def require(scope: str) -> Any:
    """A dependency: the caller's live key has ``scope`` (or ``admin``) and is within its rate limit."""

    async def dependency(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
        header: Annotated[str | None, Security(_HEADER)],
    ) -> KeyInfo:
        return await authorize(request.app.state.service, scope, bearer.credentials if bearer is not None else header)

    return Depends(dependency)
