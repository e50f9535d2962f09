"""``GET /api/v1/reports/broadcasts``: the broadcast report (central.reports) as JSON or CSV."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Response

from central import reports
from central.auth import CentralDep, ScopeDep

router = APIRouter(prefix="/api/v1", tags=["reports"])


@router.get("/reports/broadcasts", response_model=None)
def broadcasts(
    central: CentralDep,
    scope: ScopeDep,
    start: Annotated[date, Query(alias="from", description="first day, YYYY-MM-DD (the boxes' zone)")],
    end: Annotated[date, Query(alias="to", description="last day, included")],
    group_by: Annotated[str, Query(pattern="^[a-z0-9_-]{1,32}$", description="a unit level")] = "commune",
    format: Literal["json", "csv"] = "json",
    lang: Literal["en", "vi"] = "en",
) -> Response | dict[str, Any]:
    """Per unit: occurrences scheduled, completed, interrupted, failed, missed (with reasons), skipped,
    emergency, scheduled and played minutes and their ratio, for the boxes the caller sees.
    ``format=csv`` answers UTF-8 with a BOM and CRLF line ends (column headings in ``lang``)."""
    try:
        rows = reports.broadcasts(
            central.engine, scope, start, end, group_by, central.clock(), central.config.box_timezone,
            kept_days=central.config.retention.playlog_days,
        )  # fmt: skip
    except reports.ReportError as error:
        raise HTTPException(422, str(error)) from None
    if format == "csv":
        name = f"bao-cao-phat-thanh-{start.isoformat()}-{end.isoformat()}-{group_by}.csv"
        return Response(reports.as_csv(rows, lang), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip
    return {"from": start.isoformat(), "to": end.isoformat(), "group_by": group_by, "units": rows}
