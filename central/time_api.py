"""``GET /api/v1/time?device=&nonce=``: the central server's clock, signed, for boxes whose network
blocks NTP (docs/PROTOCOL.md, "Time from the central server"; protocol/time_sync.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response
from sqlalchemy import select

from central import db
from central.auth import CentralDep
from protocol import time_sync

router = APIRouter(prefix="/api/v1", tags=["boxes"])


@router.get("/time", response_class=Response)
def signed_time(central: CentralDep, device: Annotated[str, Query(max_length=64)],
                nonce: Annotated[str, Query(max_length=128)]) -> Response:  # fmt: skip
    """The server's clock for ``device``'s question ``nonce``, as a signed compact JWS."""
    with central.engine.connect() as conn:
        known = conn.execute(select(db.devices.c.removed_at).where(db.devices.c.id == device)).first()
    if known is None:
        raise HTTPException(404, f"no box {device}")
    if known.removed_at is not None:
        raise HTTPException(410, f"box {device} was removed from service")
    try:
        token = time_sync.sign_time_answer(device, nonce, central.clock(), central.key.private,
                                           kid=central.key.kid)  # fmt: skip
    except time_sync.TimeRefused as refused:
        raise HTTPException(400, "; ".join(map(str, refused.problems))) from None
    return Response(str(token), media_type=time_sync.CONTENT_TYPE, headers={"Cache-Control": "no-store"})
