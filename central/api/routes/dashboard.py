"""``GET /dashboard``: server-rendered HTML for head office (admin token via Basic or Bearer)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from central.api.deps import DashboardAdminDep, SessionDep, SettingsDep
from central.api.responses import error
from central.dashboard import build_view

router = APIRouter(tags=["dashboard"])

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def make_environment() -> Environment:
    return Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]))


@router.get(
    "/dashboard",
    response_class=HTMLResponse,
    responses={401: error("the admin token is needed (HTTP Basic password or bearer)")},
)
def dashboard(request: Request, session: SessionDep, settings: SettingsDep, _admin: DashboardAdminDep) -> HTMLResponse:
    view = build_view(session, threshold=settings.drift_psi_threshold, min_customers=settings.small_cell_k)
    template = request.app.state.templates.get_template("dashboard.html")
    return HTMLResponse(template.render(view=view))
