"""Bearer tokens: ``POST /api/v1/auth/token`` (OAuth2 password form) and the scope of each request.

A token is a random string handed out once; the database keeps only its SHA-256, and it expires
after ``TOKEN_LIFETIME``.  Every login, good or bad, is in the audit log.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm

from central import registry
from central.access import Scope
from central.context import Central
from central.passwords import new_secret, spend_like_a_verify, verify_password

TOKEN_LIFETIME = timedelta(hours=12)
TOKEN_URL = "/api/v1/auth/token"

router = APIRouter(prefix="/api/v1", tags=["auth"])
_bearer = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


def central_of(request: Request) -> Central:
    central: Central = request.app.state.central
    return central


CentralDep = Annotated[Central, Depends(central_of)]


def scope_of(central: CentralDep, token: Annotated[str | None, Depends(_bearer)]) -> Scope:
    """The signed-in user and what it reaches; 401 without a valid token."""
    user = registry.user_for_token(central.engine, token, central.clock()) if token else None
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "sign in first: POST /api/v1/auth/token with username and password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Scope(user, registry.all_units(central.engine))


ScopeDep = Annotated[Scope, Depends(scope_of)]


@router.post("/auth/token")
def login(central: CentralDep, form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> dict[str, Any]:
    """A bearer token for ``username`` and ``password`` (form fields), valid 12 hours."""
    found = registry.user_with_hash(central.engine, form.username)
    if found is None:
        spend_like_a_verify(form.password)
    if found is None or not verify_password(found[1], form.password):
        registry.record_audit(central.engine, form.username[:128], "login.failed", "api", {})
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong user name or password",
                            headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    user = found[0]
    token = new_secret(32)
    registry.add_token(central.engine, user.id, token, "login", central.clock() + TOKEN_LIFETIME)
    registry.record_audit(central.engine, user.name, "login", "api", {})
    return {"access_token": token, "token_type": "bearer", "expires_in": int(TOKEN_LIFETIME.total_seconds()),
            "role": user.role, "unit": user.unit}  # fmt: skip
