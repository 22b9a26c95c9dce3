"""The dashboard in headless Chromium (Debian's package driven by Playwright's Python API).

Central runs under uvicorn with devices, results over three days, a drift report with a flag
and outcomes; the page must show them without fetching anything but central itself. A full-page
screenshot is kept in test-artifacts/central_dashboard.png.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from central_helpers import (
    ADMIN_TOKEN,
    MODEL_VERSION,
    make_result,
    require,
    sqlite_central,
    upload_body,
)

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def populated_central(tmp_path, central_signing_key, test_artifact):  # type: ignore[no-untyped-def]
    central = sqlite_central(tmp_path, central_signing_key[1])
    central.start()
    try:
        central.call("POST", "/v1/models", upload_body(test_artifact))
        devices = [central.call("POST", "/v1/devices", {"store": s}) for s in ("leeds", "york")]
        segments = ["high", "mid", "low"]
        for d, device in enumerate(devices):
            results = [
                make_result(
                    i + 1,
                    customer_ref=f"{d}-{i}",
                    segment=segments[(i // 3 + d) % 3],
                    classified_at=f"2026-11-{24 + i % 3}T10:00:00Z",
                )
                for i in range(30)
            ]
            body = {"device_id": device["id"], "results": results, "backlog": 5 * d}
            central.call("POST", "/v1/results:batch", body, token=device["token"])
        central.call(
            "POST",
            "/v1/drift",
            {
                "device_id": devices[0]["id"],
                "model_version": MODEL_VERSION,
                "histograms": {"recency_days": [30, 40, 20, 10], "country": [10, 60, 20, 10]},
            },
            token=devices[0]["token"],
        )
        outcomes = [{"customer_ref": f"0-{i}", "actual_segment": "high"} for i in range(6)]
        central.call("POST", "/v1/outcomes", {"outcomes": outcomes})
        yield central, devices
    finally:
        central.kill()


def test_dashboard_renders_devices_mix_drift_and_accuracy(populated_central) -> None:
    sync_playwright = require("playwright.sync_api", "playwright==1.65.2").sync_playwright
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} not installed (bash scripts/ci_system_deps.sh installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)

    central, devices = populated_central
    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            anonymous = browser.new_context()
            refused = anonymous.request.get(f"{central.url}/dashboard")
            assert (refused.status, refused.json()) == (
                401, {"detail": "the dashboard needs the admin token"}
            )  # fmt: skip
            assert refused.headers["www-authenticate"] == 'Basic realm="edgeseg"'
            anonymous.close()
            context = browser.new_context(
                http_credentials={"username": "head-office", "password": ADMIN_TOKEN},
                viewport={"width": 1280, "height": 900},
            )
            page = context.new_page()
            page.on("request", lambda request: requested.append(request.url))
            response = page.goto(f"{central.url}/dashboard")
            assert response is not None and response.status == 200
            assert page.title() == "edgeseg — head office"

            rows = page.locator("#devices tbody tr")
            assert rows.count() == 2
            first = rows.nth(0).locator("td").all_inner_texts()
            assert first[:3] == [devices[0]["id"], "leeds", "active"]
            assert first[4:8] == ["0", "—", "30", "30"]  # backlog, outbox epoch (legacy ""), acked, results
            assert first[8] == MODEL_VERSION
            assert rows.nth(1).locator("td").all_inner_texts()[4] == "5"

            assert page.locator("#segment-mix h2").inner_text() == "Segment mix over time (60 results)"
            bars = page.locator("#segment-mix svg rect")
            assert bars.count() >= 3
            assert page.locator("#segment-mix svg text.day").all_text_contents() == [
                "11-24", "11-25", "11-26"
            ]  # fmt: skip
            assert page.locator("#drift .flag").first.inner_text() == "drift: country"
            assert "Accuracy 50.0% over 6 customers with an outcome." in page.locator("#accuracy p").inner_text()
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "central_dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
    # Nothing but central itself was fetched: no CDN, no fonts, no scripts from elsewhere.
    assert requested and all(url.startswith(central.url) for url in requested)
