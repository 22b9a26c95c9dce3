"""`python -m benchmarks --render DIR`: a results.json becomes the same report, in Markdown and HTML.

Re-renders the committed sample run (no search, no timing: a few seconds of plotting), so a change
to the report code shows here before a multi-minute bench run would show it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from benchmarks.__main__ import main

SAMPLE = Path(__file__).resolve().parents[2] / "benchmarks" / "reports" / "sample"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("render")
    shutil.copy(SAMPLE / "results.json", folder / "results.json")
    assert main(["--render", str(folder)]) == 0
    return folder


def _h2(markdown: str) -> list[str]:
    return [line[3:] for line in markdown.splitlines() if line.startswith("## ")]


def test_render_keeps_the_sample_reports_sections_and_numbers(rendered: Path) -> None:
    sample = (SAMPLE / "report.md").read_text(encoding="utf-8")
    text = (rendered / "report.md").read_text(encoding="utf-8")
    assert _h2(text) == _h2(sample)
    # The headline's numbers are formatted as in the committed report users read.
    edge_row = next(line for line in sample.splitlines() if line.startswith("| edgeseg edge runtime | 12.4 |"))
    assert edge_row in text.splitlines()
    for plot in ("latency.png", "throughput.png", "coldstart.png", "pareto_retail.png"):
        assert (rendered / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plot


def test_markdown_and_html_carry_the_same_sections_and_table_rows(rendered: Path) -> None:
    text = (rendered / "report.md").read_text(encoding="utf-8")
    page = (rendered / "report.html").read_text(encoding="utf-8")
    assert re.findall(r"<h2>(.*?)</h2>", page) == _h2(text)
    markdown_rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert page.count("<tr>") == len(markdown_rows)
    assert page.count("<img ") == text.count("![")


def test_render_of_a_folder_without_results_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--render", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'results.json'} does not exist\n"
