"""The dashboard for a head-office analyst (issue 14, item 6), in headless Chromium like
test_central_dashboard.py: shares printed on the mix bars, classes in their natural order with
zero-count classes kept in the legend, store and date filters, weekly buckets, a CSV of what is
shown, which model each store runs with its card, and a PSI scale that is not all full width.
Screenshots go to test-artifacts/central_dashboard_analyst*.png.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import pytest
from central_helpers import ADMIN_TOKEN, MODEL_VERSION, require
from test_central_dashboard import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, populated_central  # noqa: F401

pytestmark = pytest.mark.slow


def test_the_analyst_reads_shares_filters_exports_and_opens_the_card(populated_central) -> None:  # noqa: F811
    sync_playwright = require("playwright.sync_api", "playwright==1.65.2").sync_playwright
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} not installed (bash scripts/ci_system_deps.sh installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    central, devices = populated_central
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                http_credentials={"username": "analyst", "password": ADMIN_TOKEN},
                viewport={"width": 1280, "height": 900},
            )
            page = context.new_page()
            page.goto(f"{central.url}/dashboard")
            # classes of the registered model, natural tier order, zero-count ones kept
            legend = page.locator("#segment-mix .legend span").all_inner_texts()
            assert legend == ["low", "mid", "high"], legend
            shares = page.locator("#segment-mix svg text.share").all_text_contents()
            assert shares and all(s.endswith("%") for s in shares)
            assert "%" in page.locator("#segment-mix table .stack").first.inner_text()
            # PSI bars: on a square-root scale of the largest PSI, so not every bar is full width
            widths = page.locator("#drift .psi").evaluate_all("els => els.map(e => e.style.width)")
            assert len(widths) >= 2 and len(set(widths)) == len(widths), widths
            assert "threshold" in page.locator("#drift thead").inner_text()
            # which model each store runs, with a link to its card
            models = page.locator("#store-models tbody tr")
            assert models.count() == 2
            page.screenshot(path=str(ARTIFACTS / "central_dashboard_analyst.png"), full_page=True)
            # filter: one store, a date range, weekly buckets
            page.select_option("#filters select[name=store]", "york")
            page.fill("#filters input[name=since]", "2026-11-25")
            page.fill("#filters input[name=until]", "2026-11-26")
            page.select_option("#filters select[name=bucket]", "week")
            page.click("#filters button")
            assert "store=york" in page.url and "bucket=week" in page.url
            heading = page.locator("#segment-mix h2").inner_text()
            assert heading == "Segment mix over time (20 results)", heading
            assert page.locator("#segment-mix svg text.day").all_text_contents() == ["11-23"]  # the week's Monday
            page.screenshot(path=str(ARTIFACTS / "central_dashboard_analyst_filtered.png"), full_page=True)
            href = page.locator("#csv").get_attribute("href")
            assert href is not None
            exported = context.request.get(f"{central.url}{href}")
            assert exported.status == 200 and exported.headers["content-type"].startswith("text/csv")
            rows = list(csv.DictReader(io.StringIO(exported.text())))
            assert {r["store"] for r in rows} == {"york"} and sum(int(r["results"]) for r in rows) == 20
            assert [r["week"] for r in rows] == ["2026-11-23"] * len(rows)
            # the same filter per hour: the same 20 results, each bar an hour of a day
            page.select_option("#filters select[name=bucket]", "hour")
            page.click("#filters button")
            assert "bucket=hour" in page.url
            assert page.locator("#segment-mix h2").inner_text() == "Segment mix over time (20 results)"
            hours = page.locator("#segment-mix svg text.day").all_text_contents()
            assert hours and all(re.fullmatch(r"11-2[56] \d\d:00", h) for h in hours), hours
            refused = context.request.get(f"{central.url}/dashboard?since=yesterday")
            assert refused.status == 400 and "since must be a date YYYY-MM-DD" in refused.text()
            card = context.request.get(f"{central.url}/dashboard/models/{MODEL_VERSION}/card")
            assert card.status in (200, 404)  # the test artifact may carry no card
            if card.status == 200:
                assert "script-src" not in card.headers["content-security-policy"]
                assert card.headers["content-security-policy"].startswith("default-src 'none'")
        finally:
            browser.close()
