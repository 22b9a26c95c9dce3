"""``GET /dashboard``: server-rendered HTML for head office (admin token via Basic or Bearer)."""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from central.api.deps import DashboardAdminDep, SessionDep, SettingsDep
from central.api.responses import error
from central.dashboard import build_view
from central.services import models
from central.services.errors import NotFound
from edge_runtime.artifact import CARD_FILE, CARD_HTML_FILE

router = APIRouter(tags=["dashboard"])

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def make_environment() -> Environment:
    return Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]))


@dataclass
class MixFilters:
    """The segment mix's query parameters, shared by the page and its CSV export."""

    store: str | None = None
    since: str | None = None  # YYYY-MM-DD, inclusive
    until: str | None = None  # YYYY-MM-DD, inclusive
    bucket: str = "day"  # hour, day or week


FiltersDep = Annotated[MixFilters, Depends()]
_PAGE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: error("since or until is not a date YYYY-MM-DD, or bucket is not hour, day or week"),
    401: error("the admin token is needed (HTTP Basic password or bearer)"),
}


@router.get("/dashboard", response_class=HTMLResponse, responses=_PAGE_ERRORS)
def dashboard(
    request: Request, session: SessionDep, settings: SettingsDep, _admin: DashboardAdminDep, filters: FiltersDep
) -> HTMLResponse:
    """The page; ``store``, ``since``/``until`` (YYYY-MM-DD) and ``bucket`` (hour/day/week) filter the mix."""
    try:
        view = _view(session, settings, filters)
    except ValueError as exc:  # in the page's own media type: a browser shows it
        return HTMLResponse(f"<p>{html.escape(str(exc))}</p>", status_code=400)
    template = request.app.state.templates.get_template("dashboard.html")
    return HTMLResponse(template.render(view=view))


def _view(session: Any, settings: Any, f: MixFilters) -> Any:
    """The view model; ValueError naming a malformed date or bucket (an empty field is no filter)."""
    return build_view(
        session, threshold=settings.drift_psi_threshold, min_customers=settings.small_cell_k,
        store=f.store or None, since=f.since or None, until=f.until or None, bucket=f.bucket,
    )  # fmt: skip


class CSVResponse(PlainTextResponse):
    media_type = "text/csv"


@router.get("/dashboard/mix.csv", response_class=CSVResponse, responses=_PAGE_ERRORS)
def mix_csv(session: SessionDep, settings: SettingsDep, _admin: DashboardAdminDep, filters: FiltersDep) -> CSVResponse:
    """The segment mix the page shows with the same filters, one row per bucket x store x segment
    (cells under the small-cell threshold are left out, as on the page)."""
    try:
        view = _view(session, settings, filters)
    except ValueError as exc:
        return CSVResponse(f"error\n{exc}\n", status_code=400)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([filters.bucket, "store", "segment", "results", "share_of_bucket_store"])
    totals: dict[tuple[str, str], int] = {}
    for b, s, _, n in view.mix_rows:
        totals[(b, s)] = totals.get((b, s), 0) + n
    rank = {name: i for i, (name, _) in enumerate(view.segments)}
    for b, s, segment, n in sorted(view.mix_rows, key=lambda row: (row[0], row[1], rank.get(row[2], len(rank)))):
        writer.writerow([b, view.store_labels.get(s, s), segment, n, f"{n / totals[(b, s)]:.4f}"])
    headers = {"Content-Disposition": 'attachment; filename="segment_mix.csv"'}
    return CSVResponse(out.getvalue(), headers=headers)


@router.get(
    "/dashboard/models/{name}/{version}/card",
    responses={401: error("the admin token is needed"), 404: error("no such model or card")},
)
def model_card(name: str, version: str, session: SessionDep, _admin: DashboardAdminDep) -> Response:
    """A registered model's card (card.html, else card.md), for the analyst reading the page.

    The card is the factory's, uploaded by an admin but not signed: it is served with a policy
    that lets it run no script and load nothing but its own inline images and styles.
    """
    model_version = f"{name}/{version}"
    for file_name, media_type in ((CARD_HTML_FILE, "text/html"), (CARD_FILE, "text/plain")):
        try:
            entry = models.get_model_file(session, model_version, file_name)
        except NotFound:
            continue
        policy = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
        return Response(
            entry.content, media_type=f"{media_type}; charset=utf-8", headers={"Content-Security-Policy": policy}
        )
    raise HTTPException(status_code=404, detail=f"model {model_version} has no card")
