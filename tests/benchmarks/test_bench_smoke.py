"""`python -m benchmarks --smoke` end to end: every report section and every results key exists.

Runs the real bench (a real factory search, real contenders, real subprocess cold starts) in its
smallest mode into a temporary folder. Timings are never asserted — only that each measurement
produced numbers and that the report says what it measured.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

SECTIONS = [
    "## Headline",
    "## Machine and settings",
    "## Datasets",
    "## 1. Single record latency",
    "## 2. Batch throughput",
    "## 3. Cold start and memory",
    "## 4. Artifact size",
    "## 5. Pareto front and quality under budget",
    "## 6. Outbox and central ingest",
    "## Notes",
]
CONTENDERS = {"edgeseg", "flaml_predict", "sklearn_pipeline", "native_booster", "skl2onnx_default"}


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench_reports")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--datasets", "retail", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = Path(proc.stdout.strip().splitlines()[-1])
    assert folder.parent == out
    assert re.fullmatch(r"\d{8}T\d{6}Z(-\d+)?", folder.name), folder.name
    return folder


def test_report_files_exist(report_dir: Path) -> None:
    for name in ("report.md", "report.html", "results.json", "headline.md", "latency.png", "pareto_retail.png"):
        assert (report_dir / name).is_file(), name
        assert (report_dir / name).stat().st_size > 0, name
    assert (report_dir / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_has_every_section_in_order(report_dir: Path) -> None:
    text = (report_dir / "report.md").read_text(encoding="utf-8")
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == SECTIONS
    html = (report_dir / "report.html").read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f"<h2>{section[3:]}</h2>" in html, section
    assert '<img src="latency.png"' in html


def test_results_json_has_every_measurement(report_dir: Path) -> None:
    results = json.loads((report_dir / "results.json").read_text(encoding="utf-8"))
    assert set(results) >= {"meta", "machine", "datasets", "edge_runtime", "central_ingest", "plots"}
    assert results["meta"]["mode"] == "smoke"
    assert results["meta"]["seeds"]["search"] == 0
    machine = results["machine"]
    assert machine["cpu_model"] and machine["cpu_count"] >= 1
    assert machine["libraries"]["onnxruntime"] and machine["libraries"]["flaml"]
    # The report says which threads each path ran with, as recorded by this run.
    assert [row[0] for row in results["meta"]["threads"]] == [
        "edgeseg single record",
        "edgeseg batch",
        "skl2onnx default graph",
        "native booster",
        "FLAML / sklearn",
    ]

    retail = results["datasets"]["retail"]
    assert retail["status"] == "ok", retail.get("note")
    assert set(retail["single_record"]) == CONTENDERS
    for name, stats in retail["single_record"].items():
        assert 0 < stats["p50_us"] <= stats["p99_us"] <= stats["p99_9_us"], name
    assert retail["single_record"]["edgeseg"]["ratio_p50"] == 1.0
    assert set(retail["batch"]) == {"1000", "10000", "100000"}
    for rows, measured in retail["batch"].items():
        assert set(measured) == CONTENDERS
        assert all(m["rows"] == int(rows) and m["rows_per_s"] > 0 for m in measured.values())
    assert set(retail["cold_start"]) == {"edgeseg", "sklearn_pickle", "flaml_pickle", "empty_interpreter"}
    for path, cold in retail["cold_start"].items():
        assert "error" not in cold, (path, cold)
        assert cold["peak_rss_mb"] > 0 and cold["first_result_ms"] > 0
    sizes = retail["sizes"]
    assert sizes["onnx_bytes"] == retail["build"]["onnx_bytes"]
    assert sizes["artifact_bytes"] > sizes["onnx_bytes"] > 0
    assert sizes["pickle_pipeline_bytes"] > 0 and sizes["pickle_flaml_automl_bytes"] > 0

    # The contenders that run the very same model must agree with edgeseg.
    assert retail["agreement"]["edgeseg_batch_vs_single"] == 1.0
    assert retail["agreement"]["sklearn_pipeline"] == 1.0
    assert retail["agreement"]["skl2onnx_default"] == 1.0

    pareto = retail["pareto"]
    assert pareto["trials"] and pareto["chosen_index"] in {t["index"] for t in pareto["trials"]}
    assert set(pareto["front_latency"]) <= {t["index"] for t in pareto["trials"]}
    budget = retail["quality_under_budget"]
    assert [r["latency_budget_us"] for r in budget["rows"]] == [10.0, 25.0, 50.0, 100.0]
    for row in budget["rows"]:
        assert row["model"] or row["note"].startswith("no model")
    main = next(r for r in budget["rows"] if r["latency_budget_us"] == 50.0)
    assert main["model"] and math.isclose(main["test_quality"], retail["build"]["test_quality"])
    assert 0.0 <= budget["unconstrained_flaml"]["test_quality"] <= 1.0
    # Unconstrained FLAML searches the very learners the budgeted build searched.
    assert retail["flaml"]["learners"] == retail["build"]["learners"]
    assert set(retail["build"]["learners"]) >= {"lgbm", "xgboost"}

    for external in ("edge_runtime", "central_ingest"):
        assert results[external]["status"] in {"ok", "pending", "failed"}


def test_headline_snippet_is_markdown_tables(report_dir: Path) -> None:
    text = (report_dir / "headline.md").read_text(encoding="utf-8")
    assert text.startswith("### Benchmark headline (smoke run, ")
    assert "| edgeseg edge runtime |" in text
    assert "| none (unconstrained FLAML) |" in text
