"""Bearer tokens: ``POST /api/v1/auth/token`` (OAuth2 password form) and the scope of each request.

A token is a random string handed out once; the database keeps only its SHA-256, and it expires
after ``TOKEN_LIFETIME``.  Every login, good, bad or throttled (central.login_throttle), is in the
audit log; :func:`authenticate` is the one sign-in the API and the pages share.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm

from central import login_throttle, registry
from central.access import Scope
from central.context import Central
from central.login_throttle import Throttled
from central.passwords import new_secret, spend_like_a_verify, verify_password
from foundation.errors import LoaError

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


class WrongPassword(LoaError, PermissionError):
    """No such user, or not its password (one answer for both: it tells a guesser nothing)."""

    def __init__(self) -> None:
        super().__init__("wrong user name or password")


def address_of(request: Request) -> str:
    """The client's address (behind a reverse proxy, the one uvicorn's proxy headers give)."""
    return request.client.host if request.client is not None else "unknown"


def authenticate(central: Central, name: str, password: str, address: str, via: str) -> registry.User:
    """The user whose password this is; Throttled after too many wrong ones, else WrongPassword.
    Each outcome is audited (``login``, ``login.failed``, ``login.throttled``), with the address."""
    name, now = name[:128], central.clock()
    detail = {"address": address}
    try:
        login_throttle.check(central.engine, name, address, now)
    except Throttled as refused:
        registry.record_audit(central.engine, name, "login.throttled", via, detail | {"reason": str(refused)})
        raise
    found = registry.user_with_hash(central.engine, name)
    if found is None:
        spend_like_a_verify(password)
    if found is None or not verify_password(found[1], password):
        login_throttle.failed(central.engine, name, address, now)
        registry.record_audit(central.engine, name, "login.failed", via, detail)
        raise WrongPassword()
    login_throttle.succeeded(central.engine, name)
    registry.record_audit(central.engine, found[0].name, "login", via, detail)
    return found[0]


@router.post("/auth/token")
def login(
    central: CentralDep, request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()]
) -> dict[str, Any]:
    """A bearer token for ``username`` and ``password`` (form fields), valid 12 hours; 429 with
    ``Retry-After`` after too many wrong passwords for the name or from the address."""
    try:
        user = authenticate(central, form.username, form.password, address_of(request), "api")
    except WrongPassword as wrong:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(wrong),
                            headers={"WWW-Authenticate": "Bearer"}) from None  # fmt: skip
    except Throttled as refused:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, str(refused),
                            headers={"Retry-After": str(refused.wait_s)}) from None  # fmt: skip
    token = new_secret(32)
    registry.add_token(central.engine, user.id, token, "login", central.clock() + TOKEN_LIFETIME)
    return {"access_token": token, "token_type": "bearer", "expires_in": int(TOKEN_LIFETIME.total_seconds()),
            "role": user.role, "unit": user.unit}  # fmt: skip
